"""BENCH.toml: the shipped schema and the cross-checks refuse what the bench cannot run, naming file and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from meterbench.bench import BENCH_SCHEMA, BenchConfigError, load_bench_config
from meterbench.errors import ConfigError
from meterbench.vision import RegisterLayout

ROOT = Path(__file__).parents[2]
SAMPLE = ROOT / "samples" / "sim-bench.toml"


def _variant(tmp_path: Path, old: str, new: str, count: int = 1) -> Path:
    text = SAMPLE.read_text()
    assert old in text, old
    path = tmp_path / "bench.toml"
    path.write_text(text.replace(old, new, count))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(BenchConfigError) as caught:
        load_bench_config(path)
    assert isinstance(caught.value, ConfigError)
    assert "\n" not in str(caught.value)  # one line for the command line
    return caught.value.problems


def test_sample_loads_with_its_plan_devices_and_simulator():
    cfg = load_bench_config(SAMPLE)
    assert [(p.name, p.flow_rate_m3h, p.volume_l) for p in cfg.points] == [("Q3", 2.4, 5.0), ("Q2", 0.042, 0.5)]
    assert [d["kind"] for d in cfg.devices] == ["serial-totaliser", "modbus"]
    assert cfg.reference_device_id == "ref-meter"
    assert cfg.simulator is not None and cfg.simulator.true_error_pct == (-0.4, 2.6)
    assert cfg.session_base == "live-sim-bench" and cfg.mqtt["bench_id"] == "sim1"
    assert RegisterLayout.from_dict(cfg.instruments[0]["register"]).finest.litres_per_turn == pytest.approx(0.1)


def test_schema_is_shipped_and_a_valid_json_schema():
    schema = json.loads(BENCH_SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"bench/schemas/*.json"' in pyproject


@pytest.mark.parametrize("name", ["default-dials", "default-wheels", "default-fine", "default-fine-wheels"])
def test_every_named_register_of_the_schema_is_a_layout(tmp_path, name):
    cfg = load_bench_config(_variant(tmp_path, 'register = "default-fine"', f'register = "{name}"'))
    assert RegisterLayout.from_dict(cfg.instruments[0]["register"]).elements


def test_wrong_type_names_file_device_and_field(tmp_path):
    path = _variant(tmp_path, "baudrate = 115200", 'baudrate = "fast"')
    assert _problems(path) == [
        f'{path}: devices[0] (ref-meter).baudrate: expected an integer baud rate, 50..4000000 (bit/s), got "fast"'
    ]


def test_typo_key_in_devices_is_refused_not_ignored(tmp_path):
    path = _variant(tmp_path, "silence_s = 2.0", "silense_s = 2.0")
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: devices[0] (ref-meter).silense_s: unknown key (expected one of baudrate, id")


@pytest.mark.parametrize(
    ("old", "new", "field", "expected"),
    [
        ("q3_m3h = 2.5", "q3_m3h = nan", "instruments[0] (M1).q3_m3h", "expected a finite number, got nan"),
        ("q3_m3h = 2.5", "q3_m3h = 1e308", "instruments[0] (M1).q3_m3h", "expected a permanent flow Q3 > 0 and"),
        ("volume_l = 5.0", "volume_l = inf", "test_plan.points[0] (Q3).volume_l", "expected a finite number, got inf"),
        ("window_pct = 5.0", "window_pct = -inf", "test_plan.points[0] (Q3).window_pct", "expected a finite number"),
        ("seed = 1", "seed = 9223372036854775807", "simulator.seed", "expected an integer >= 0 <= 4294967295"),
        ("slave = 1", "slave = 1.5", "devices[1] (flow-computer).slave", "expected an integer"),
        ("fps = 10.0", "fps = 1e300", "cameras[0] (cam-M1).fps", "expected a number > 0 <= 1000"),
    ],
)
def test_non_finite_and_overflowing_numbers_are_refused_once_with_field(tmp_path, old, new, field, expected):
    path = _variant(tmp_path, old, new)
    (problem,) = _problems(path)
    assert problem.startswith(f"{path}: {field}: {expected}"), problem


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("\n[simulator]\n", "\n[simulatr]\n", "simulatr: unknown key (expected one of bench, cameras, devices,"),
        ('session_id = "live-sim-bench"', 'session_id = "../escape"', "bench.session_id: expected an id of letters"),
        (
            'camera = "cam-M2"',
            'camera = "cam-M9"',
            "instruments[1] (M2).camera: expected the id of one of the [[cameras]]",
        ),
        ('device = "ref-meter"', 'device = "nope"', "reference_instruments[0] (ref).device: expected the id of one of"),
        ("true_error_pct = [-0.4, 2.6]", "true_error_pct = [-0.4]", "simulator.true_error_pct: expected one error per"),
        ('id = "flow-computer"', 'id = "ref-meter"', "devices: id 'ref-meter' is used more than once"),
        ('register = "default-fine"', 'register = "default-fin"', 'instruments[0] (M1).register: expected one of "'),
        ("port = 0 ", "port = 1883 ", "mqtt.port: with a [simulator], expected 0 (its private broker), got 1883"),
    ],
)
def test_cross_checks_name_the_field(tmp_path, old, new, expected):
    problems = _problems(_variant(tmp_path, old, new))
    assert any(p.split(": ", 1)[1].startswith(expected) for p in problems), problems


def test_sim_without_simulator_lists_every_simulated_part(tmp_path):
    text = SAMPLE.read_text()
    start, end = text.index("\n[simulator]\n"), text.index("\n[mqtt]\n")
    path = tmp_path / "bench.toml"
    path.write_text(text[:start] + text[end:].replace("port = 0 ", "port = 0\ninsecure = true "))
    problems = _problems(path)
    assert problems == [
        f'{path}: devices[0] (ref-meter), devices[1] (flow-computer), cameras[0] (cam-M1), cameras[1] (cam-M2): "sim" '
        "needs a [simulator] table, and there is none",
        f"{path}: mqtt.port: 0 (the simulator's broker) needs a [simulator] table; there is none",
    ]


def test_all_problems_are_reported_at_once(tmp_path):
    path = _variant(tmp_path, "baudrate = 115200", "baudrat = 115200")
    path.write_text(path.read_text().replace("interval_s = 0.2", 'interval_s = "fast"'))
    problems = _problems(path)
    assert len(problems) == 2
    assert "devices[0] (ref-meter).baudrat: unknown key" in problems[0]
    assert 'devices[1] (flow-computer).interval_s: expected a number > 0 <= 3600, got "fast"' in problems[1]


def test_unreadable_and_bad_toml_are_config_errors(tmp_path):
    assert _problems(tmp_path / "missing.toml")[0].startswith(f"{tmp_path / 'missing.toml'}: cannot be read")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bench\n")
    assert _problems(bad)[0].startswith(f"{bad}: not valid TOML")


def test_bench_command_refuses_a_bad_config_in_one_line_before_any_output(tmp_path):
    path = _variant(tmp_path, "baudrate = 115200", 'baudrate = "fast"')
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "meterbench", "bench", "--config", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "devices[0] (ref-meter).baudrate: expected an integer baud rate" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


# -- authenticated bench control and disk space ------------------------------------------------

_REAL_MQTT = """[mqtt]
host = "127.0.0.1"
port = 8883
"""


def _real_bench(tmp_path: Path, mqtt: str, bench_extra: str = "") -> Path:
    """The sample as a real bench: no [simulator], real port names, the [mqtt] given."""
    text = SAMPLE.read_text()
    start, end = text.index("\n[simulator]\n"), text.index("\n[[devices]]\n")
    text = text[:start] + "\n" + mqtt + text[end:]
    text = text.replace('port = "sim"', 'port = "/dev/ttyUSB0"').replace('source = "sim"', 'source = "0"')
    text = "\n".join(line for line in text.splitlines() if not line.startswith(("min_free", "stop_free")))
    text = text.replace('decision_rule = "simple"', 'decision_rule = "simple"\n' + bench_extra)
    path = tmp_path / "bench.toml"
    path.write_text(text)
    return path


def test_a_real_bench_needs_an_authenticated_broker_or_says_insecure(tmp_path):
    problems = _problems(_real_bench(tmp_path, _REAL_MQTT))
    assert problems == [
        f"{tmp_path / 'bench.toml'}: mqtt: the bench controller's broker must be authenticated (TLS with a CA and a "
        "login or client certificate); missing tls_ca (the bench CA), username/password or tls_cert/tls_key. "
        "Set insecure = true to run without (recorded and reported)"
    ]
    login_only = _REAL_MQTT + 'username = "meterbench"\npassword = "x"\n'
    assert "missing tls_ca (the bench CA)." in _problems(_real_bench(tmp_path, login_only))[0]
    unverified = login_only + 'tls_ca = "/etc/ssl/ca.pem"\ntls_insecure = true\n'
    assert "missing tls_insecure = false." in _problems(_real_bench(tmp_path, unverified))[0]
    for secure in (login_only + 'tls_ca = "/etc/ssl/ca.pem"\n', _REAL_MQTT + 'tls_ca = "c"\ntls_cert = "m.crt"\n'):
        assert load_bench_config(_real_bench(tmp_path, secure)).mqtt_security == "tls"
    insecure = load_bench_config(_real_bench(tmp_path, _REAL_MQTT + "insecure = true\n"))
    assert insecure.mqtt_security == "insecure" and "insecure" not in insecure.mqtt
    assert load_bench_config(SAMPLE).mqtt_security == "simulated"
    explicit = _variant(tmp_path, "port = 0 ", "port = 0\ninsecure = true ")
    assert _problems(explicit) == [
        f"{explicit}: mqtt.insecure: not used with a [simulator] (its private broker); remove it"
    ]


def test_free_disk_limits_are_configured_and_cross_checked(tmp_path):
    default = load_bench_config(_real_bench(tmp_path, _REAL_MQTT + "insecure = true\n"))
    assert (default.min_free_disk_mb, default.stop_free_disk_mb) == (2000.0, 500.0)
    assert (load_bench_config(SAMPLE).min_free_disk_mb, load_bench_config(SAMPLE).stop_free_disk_mb) == (200, 50)
    small = load_bench_config(_real_bench(tmp_path, _REAL_MQTT + "insecure = true\n", "min_free_disk_mb = 100"))
    assert (small.min_free_disk_mb, small.stop_free_disk_mb) == (100.0, 100.0)
    crossed = _real_bench(tmp_path, _REAL_MQTT + "insecure = true\n", "min_free_disk_mb = 100\nstop_free_disk_mb = 200")
    assert _problems(crossed) == [
        f"{crossed}: bench.stop_free_disk_mb: expected at most bench.min_free_disk_mb (100 MB), got 200"
    ]
    negative = _real_bench(tmp_path, _REAL_MQTT + "insecure = true\n", "min_free_disk_mb = -1")
    assert "bench.min_free_disk_mb: expected a number of MB, 0..10000000, got -1" in _problems(negative)[0]


def test_the_technician_and_the_reference_standards_are_named_by_the_lab_files_ids(tmp_path):
    from meterbench.bench.engine import _manifest
    from meterbench.session.format import schema_problems

    path = _variant(
        tmp_path, 'session_id = "live-sim-bench"', 'session_id = "live-sim-bench"\ntechnician_id = "tech-01"'
    )
    path.write_text(
        path.read_text().replace('device = "ref-meter"', 'device = "ref-meter"\nstandard_id = "ref-meter-1"', 1)
    )
    cfg = load_bench_config(path)
    assert cfg.technician_id == "tech-01" and cfg.reference_instruments[0]["standard_id"] == "ref-meter-1"
    manifest = _manifest(cfg, "live-1")  # what the bench writes into every session it records
    assert (manifest["bench_id"], manifest["technician_id"]) == ("sim1", "tech-01")
    assert manifest["reference_instruments"][0]["standard_id"] == "ref-meter-1"
    full = {**manifest, "format": "meterbench-session", "format_version": 1, "start_time_utc": "2026-11-27T09:00:00Z"}
    assert schema_problems("session.json", {**full, "cameras": [], "devices": []}, "session-v1.json") == []
    assert "technician_id" not in _manifest(load_bench_config(SAMPLE), "live-1")  # not configured: not invented
    bad = _variant(tmp_path, 'session_id = "live-sim-bench"', 'session_id = "live-sim-bench"\ntechnician_id = "a b"')
    assert _problems(bad) == [
        f"{bad}: bench.technician_id: expected an id of letters, digits, '.', '_', '-' (starting with a letter "
        'or digit), got "a b"'
    ]
