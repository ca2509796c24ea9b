"""BENCH.toml: read it, validate it against the shipped JSON Schema, cross-check it.

One loader serves ``meterbench bench`` and ``meterbench doctor``, so both agree on
what a valid configuration is. The schema (``schemas/bench-config-v1.json``)
refuses unknown keys (a typo is never silently ignored), wrong types and values
outside physical sanity bounds; this module adds what a schema cannot say:
NaN/infinity anywhere, ids that must be unique or must name another table, and
the rules of ``"sim"`` (the simulated peer of a ``[simulator]`` table). Every
problem names the file and the field; all are raised at once as one
:class:`BenchConfigError` (a :class:`~meterbench.errors.ConfigError`).
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meterbench.devices.mqtt import MqttConfig
from meterbench.errors import ConfigError
from meterbench.session import reference_image_path, schema_problems
from meterbench.vision import RegisterLayout, default_register_layout
from meterbench.vision.layout import layout_file_register

__all__ = [
    "BENCH_SCHEMA",
    "SIM",
    "DEFAULT_MIN_FREE_DISK_MB",
    "DEFAULT_STOP_FREE_DISK_MB",
    "MQTT_SECURITY",
    "BenchConfig",
    "BenchConfigError",
    "Disturbance",
    "PointPlan",
    "SequenceOptions",
    "SimulatorConfig",
    "load_bench_config",
]

BENCH_SCHEMA = Path(__file__).resolve().parent / "schemas" / "bench-config-v1.json"
"""JSON Schema of BENCH.toml (version 1), shipped with the package."""

SIM = "sim"
"""A device ``port`` or camera ``source`` with this value is the simulator's (needs ``[simulator]``)."""

DEFAULT_MIN_FREE_DISK_MB = 2000.0
"""A run does not start with less free space than this under --out (MB = 10^6 bytes): ~1 h of 3 cameras."""
DEFAULT_STOP_FREE_DISK_MB = 500.0
"""A run stops cleanly (valves safe, session closed) when free space falls below this (MB)."""
MQTT_SECURITY = ("tls", "insecure", "simulated")
"""``BenchConfig.mqtt_security``: TLS with a CA and a login or client certificate; ``insecure = true``
(a real bench without them, said in session.json and the report); the simulator's private broker."""

# tables whose items are named in messages by their id (or name): "devices[0] (ref-meter)"
_NAMED_ITEMS = re.compile(r"^(devices|instruments|cameras|reference_instruments|test_plan\.points)\[(\d+)\]")


class BenchConfigError(ConfigError):
    """BENCH.toml is not valid; ``problems`` holds one line per problem (file and field named)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class PointPlan:
    """One test point: name, flow (m³/h), test volume (L), flow window (± %)."""

    name: str
    flow_rate_m3h: float
    volume_l: float
    window_pct: float = 2.5


@dataclass(frozen=True)
class SequenceOptions:
    """Timing of the sequence (s) and the stability rule."""

    stable_hold_s: float = 2.0
    stable_timeout_s: float = 60.0
    command_timeout_s: float = 5.0
    device_timeout_s: float = 5.0
    point_timeout_factor: float = 3.0
    out_of_window_s: float = 1.0
    max_point_attempts: int = 2


@dataclass(frozen=True)
class Disturbance:
    """A simulated flow upset: the flow is multiplied by ``factor`` for ``duration_s`` s,
    ``after_start_s`` s after each flying start."""

    after_start_s: float
    duration_s: float
    factor: float


@dataclass(frozen=True)
class SimulatorConfig:
    """``[simulator]``: the simulated bench peer (seed, true error of each meter in %, upsets).

    ``markerless``: its cameras show the registers without fiducials (a fixed camera, the meter
    shifted, slightly rotated and drifting since a reference photo taken as the run starts, the
    light changing); the drift grows over ``markerless_drift_s`` s (None: the test plan's flow time).
    """

    seed: int = 0
    true_error_pct: tuple[float, ...] = ()
    disturbances: tuple[Disturbance, ...] = ()
    markerless: bool = False
    markerless_drift_s: float | None = None


@dataclass(frozen=True)
class BenchConfig:
    """BENCH.toml, validated and cross-checked.

    ``session_base`` is the configured ``[bench] session_id`` (or ``bench-<id>``): each run's
    id is made unique from it (see ``meterbench.bench.engine``). ``devices``, ``cameras``,
    ``instruments`` and ``reference_instruments`` are the tables as written (named
    registers expanded to their layout); ``mqtt`` has ``bench_id`` filled in.
    """

    path: Path
    bench_id: str
    session_base: str
    mqtt: dict[str, Any]
    devices: list[dict[str, Any]]
    instruments: list[dict[str, Any]]
    reference_instruments: list[dict[str, Any]]
    cameras: list[dict[str, Any]]
    points: list[PointPlan]
    decision_rule: str = "simple"
    options: SequenceOptions = field(default_factory=SequenceOptions)
    simulator: SimulatorConfig | None = None
    mqtt_security: str = "tls"  # one of MQTT_SECURITY
    min_free_disk_mb: float = DEFAULT_MIN_FREE_DISK_MB
    stop_free_disk_mb: float = DEFAULT_STOP_FREE_DISK_MB
    reference_images: dict[str, Any] = field(default_factory=dict)
    """camera id -> reference photo (BGR) of a marker-free layout file, copied into each session."""
    technician_id: str | None = None
    """``[bench] technician_id``: the technician running the bench (a lab file's technician id), written
    into every session; ``reference_instruments[].standard_id`` name the lab file's reference standards."""

    @property
    def reference_device_id(self) -> str:
        """Id of the device that paces the test volume (``reference_instruments[0].device``)."""
        return self.reference_instruments[0]["device"]


def load_bench_config(path: Path | str) -> BenchConfig:
    """Read, validate and cross-check BENCH.toml; raise BenchConfigError listing every problem."""
    path = Path(path)
    label = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BenchConfigError([f"{label}: cannot be read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise BenchConfigError([f"{label}: not UTF-8 text (byte {exc.start})"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise BenchConfigError([f"{label}: not valid TOML: {exc}"]) from exc
    problems = _non_finite(data, label)
    named = tuple(p.split(": expected")[0] + ":" for p in problems)  # each non-finite field named once
    # an absolute schema path is read as is by schema_problems
    problems += [p for p in schema_problems(label, data, str(BENCH_SCHEMA)) if not named or not p.startswith(named)]
    if problems:
        raise BenchConfigError(_name_items(problems, data, label))
    problems = _cross_check(data, label)
    instruments = [dict(inst) for inst in data["instruments"]]
    reference_images = {}
    for i, inst in enumerate(instruments):
        inst["register"], register_problem, photo = _register(inst["register"], path.parent, inst["camera"])
        if register_problem:
            problems.append(f"{label}: instruments[{i}].register: {register_problem}")
        elif photo is not None:
            reference_images[inst["camera"]] = photo
            if _renders_markerless(data, inst["camera"]):
                problems.append(
                    f"{label}: instruments[{i}].register: a marker-free layout file (a real photo); with "
                    "[simulator] markerless = true the simulator can only render scenes it generated "
                    '(name a register it renders, e.g. "default-fine", or a layout file with markers)'
                )
    if problems:
        raise BenchConfigError(_name_items(problems, data, label))
    bench = data["bench"]
    simulator = data.get("simulator")
    mqtt = {key: value for key, value in data["mqtt"].items() if key != "insecure"}
    min_free_disk_mb = float(bench.get("min_free_disk_mb", DEFAULT_MIN_FREE_DISK_MB))
    return BenchConfig(
        path=path,
        bench_id=bench["id"],
        session_base=bench.get("session_id", f"bench-{bench['id']}"),
        mqtt={"bench_id": bench["id"], **mqtt},
        devices=data["devices"],
        instruments=instruments,
        reference_instruments=data["reference_instruments"],
        cameras=data.get("cameras", []),
        points=[PointPlan(**p) for p in data["test_plan"]["points"]],
        decision_rule=bench.get("decision_rule", "simple"),
        options=SequenceOptions(**bench.get("sequence", {})),
        mqtt_security=_mqtt_security(data),
        min_free_disk_mb=min_free_disk_mb,
        stop_free_disk_mb=float(bench.get("stop_free_disk_mb", min(DEFAULT_STOP_FREE_DISK_MB, min_free_disk_mb))),
        reference_images=reference_images,
        technician_id=bench.get("technician_id"),
        simulator=None
        if simulator is None
        else SimulatorConfig(
            seed=simulator.get("seed", 0),
            true_error_pct=tuple(simulator.get("true_error_pct", [0.0] * len(instruments))),
            disturbances=tuple(Disturbance(**d) for d in simulator.get("disturbances", [])),
            markerless=simulator.get("markerless", False),
            markerless_drift_s=simulator.get("markerless_drift_s"),
        ),
    )


def _non_finite(value: Any, label: str, where: str = "") -> list[str]:
    """NaN and infinities anywhere (TOML allows them; no bench quantity can be one)."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{label}: {where}: expected a finite number, got {value}"]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _non_finite(item, label, f"{where}.{key}".lstrip("."))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _non_finite(item, label, f"{where}[{i}]")]
    return []


def _name_items(problems: list[str], data: dict, label: str) -> list[str]:
    """``file: devices[0].baudrate: ...`` -> ``file: devices[0] (ref-meter).baudrate: ...``."""
    prefix = f"{label}: "
    named = []
    for problem in problems:
        rest = problem[len(prefix) :] if problem.startswith(prefix) else None
        match = _NAMED_ITEMS.match(rest or "")
        if match is not None and not rest[match.end() :].startswith(" ("):  # not named yet
            table = data.get("test_plan", {}) if match.group(1) == "test_plan.points" else data
            items = table.get(match.group(1).split(".")[-1]) if isinstance(table, dict) else None
            index = int(match.group(2))
            item = items[index] if isinstance(items, list) and index < len(items) else None
            name = item.get("id", item.get("name")) if isinstance(item, dict) else None
            if isinstance(name, str) and name:
                problem = f"{prefix}{match.group(0)} ({name}){rest[match.end() :]}"
        named.append(problem)
    return named


def _register(value: str | dict, base_dir: Path, camera_id: str) -> tuple[dict, str | None, Any]:
    """A register table, the default layout a name like "default-dials" stands for, or a layout
    file ("LAYOUT.json", relative to BENCH.toml); with the problem (None) and, for a marker-free
    layout file, its reference photo (the register then names the session's copy of it)."""
    if isinstance(value, str) and value.endswith(".json"):
        try:  # a taught layout keeps its `taught` block (its offsets are applied in the verification)
            register, photo = layout_file_register(base_dir / value, reference_image_path(camera_id))
        except ValueError as exc:
            return {}, str(exc), None
        return register, None, photo
    if isinstance(value, str):  # the schema allows only the names of default layouts
        return default_register_layout(value.removeprefix("default-")), None, None
    try:
        RegisterLayout.from_dict(value)
    except ValueError as exc:
        return value, str(exc), None
    return value, None, None


def _renders_markerless(data: dict, camera_id: str) -> bool:
    """Whether the simulator renders camera ``camera_id`` without fiducials."""
    simulator = data.get("simulator") or {}
    sources = {c.get("id"): c.get("source") for c in data.get("cameras", [])}
    return bool(simulator.get("markerless")) and sources.get(camera_id) == SIM


def _duplicates(items: list[dict], key: str) -> list[str]:
    values = [item[key] for item in items]
    return sorted({value for value in values if values.count(value) > 1})


def _cross_check(data: dict, label: str) -> list[str]:
    """What the schema cannot say: unique ids, references between tables, the rules of "sim"."""
    problems = []
    cameras = data.get("cameras", [])
    for table, items, key in (
        ("devices", data["devices"], "id"),
        ("instruments", data["instruments"], "id"),
        ("cameras", cameras, "id"),
        ("reference_instruments", data["reference_instruments"], "id"),
        ("test_plan.points", data["test_plan"]["points"], "name"),
    ):
        for duplicate in _duplicates(items, key):
            problems.append(f"{label}: {table}: {key} {duplicate!r} is used more than once")
    devices = {d["id"]: d for d in data["devices"]}
    for i, reference in enumerate(data["reference_instruments"]):
        if reference["device"] not in devices:
            problems.append(
                f"{label}: reference_instruments[{i}].device: expected the id of one of the [[devices]] "
                f"({', '.join(devices)}), got {reference['device']!r}"
            )
    pacing = devices.get(data["reference_instruments"][0]["device"])
    if pacing is not None and pacing["kind"] == "modbus" and "volume_l" not in {f["name"] for f in pacing["fields"]}:
        problems.append(
            f"{label}: devices: {pacing['id']}: the reference device paces the test volume, "
            "so its fields need one named 'volume_l'"
        )
    camera_ids = {c["id"] for c in cameras}
    for i, inst in enumerate(data["instruments"]):
        if inst["camera"] not in camera_ids:
            problems.append(
                f"{label}: instruments[{i}].camera: expected the id of one of the [[cameras]] "
                f"({', '.join(sorted(camera_ids)) or 'none'}), got {inst['camera']!r}"
            )
    bench = data["bench"]
    minimum = bench.get("min_free_disk_mb", DEFAULT_MIN_FREE_DISK_MB)
    stop = bench.get("stop_free_disk_mb", min(DEFAULT_STOP_FREE_DISK_MB, minimum))
    if stop > minimum:
        problems.append(
            f"{label}: bench.stop_free_disk_mb: expected at most bench.min_free_disk_mb ({minimum:g} MB), got {stop:g}"
        )
    return problems + _check_simulated(data, label) + _check_security(data, label)


def _mqtt_security(data: dict) -> str:
    """One of MQTT_SECURITY for a validated config."""
    if data.get("simulator") is not None:
        return "simulated"
    return "tls" if _mqtt_secure(data["mqtt"]) else "insecure"


def _mqtt_secure(mqtt: dict) -> bool:
    """TLS with a CA (verified) and a login or a client certificate (``MqttConfig.secure``)."""
    settings = {key: value for key, value in mqtt.items() if key != "insecure"}
    return MqttConfig.from_dict({"bench_id": "check", **settings}).secure


def _check_security(data: dict, label: str) -> list[str]:
    """A real bench's broker needs TLS and credentials, or an explicit ``insecure = true``."""
    mqtt = data["mqtt"]
    if data.get("simulator") is not None:
        if "insecure" in mqtt:
            return [f"{label}: mqtt.insecure: not used with a [simulator] (its private broker); remove it"]
        return []
    if _mqtt_secure(mqtt) or mqtt.get("insecure") is True:
        return []
    missing = [
        text
        for text, absent in (
            ("tls_ca (the bench CA)", not mqtt.get("tls_ca")),
            ("username/password or tls_cert/tls_key", "username" not in mqtt and not mqtt.get("tls_cert")),
            ("tls_insecure = false", bool(mqtt.get("tls_insecure", False))),
        )
        if absent
    ]
    return [
        f"{label}: mqtt: the bench controller's broker must be authenticated (TLS with a CA and a login or client "
        f"certificate); missing {', '.join(missing)}. Set insecure = true to run without (recorded and reported)"
    ]


def _check_simulated(data: dict, label: str) -> list[str]:
    """``"sim"`` ports and sources and mqtt port 0 need a [simulator], and a [simulator] needs them right."""
    problems = []
    simulated = [f"devices[{i}] ({d['id']})" for i, d in enumerate(data["devices"]) if d["port"] == SIM]
    simulated += [f"cameras[{i}] ({c['id']})" for i, c in enumerate(data.get("cameras", [])) if c["source"] == SIM]
    simulator = data.get("simulator")
    if simulator is None:
        if simulated:
            problems.append(f'{label}: {", ".join(simulated)}: "{SIM}" needs a [simulator] table, and there is none')
        if data["mqtt"].get("port") == 0:
            problems.append(f"{label}: mqtt.port: 0 (the simulator's broker) needs a [simulator] table; there is none")
        return problems
    if data["mqtt"].get("port") != 0:
        got = data["mqtt"].get("port", "none")
        problems.append(f"{label}: mqtt.port: with a [simulator], expected 0 (its private broker), got {got}")
    for kind in ("serial-totaliser", "modbus"):
        ids = [d["id"] for d in data["devices"] if d["kind"] == kind and d["port"] == SIM]
        if len(ids) > 1:
            problems.append(f'{label}: devices: {", ".join(ids)}: the simulator serves one "{SIM}" {kind}')
    watched = {inst["camera"] for inst in data["instruments"]}
    for i, camera in enumerate(data.get("cameras", [])):
        if camera["source"] == SIM and camera["id"] not in watched:
            problems.append(
                f"{label}: cameras[{i}].source: a simulated camera must be the camera of one of the [[instruments]]"
            )
    errors = simulator.get("true_error_pct")
    if errors is not None and len(errors) != len(data["instruments"]):
        problems.append(
            f"{label}: simulator.true_error_pct: expected one error per instrument "
            f"({len(data['instruments'])}), got {len(errors)}"
        )
    return problems
