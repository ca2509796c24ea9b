"""Fuzzing campaign over everything `meterbench run` reads (issue 16, item 7): session.json, device
lines of each kind (serial totaliser, MQTT, Modbus), frame-time CSVs, path fields and the verify
stage's use of the device events. Each campaign has a fixed example count (derandomized, so a run is
repeatable) and the whole file takes well under a minute; ``test_campaign_size`` checks the total.

The only outcomes allowed are a Session (with warnings), a SessionError naming what is wrong, or an
inconclusive point with its reason: any other exception is a crash, and a SIGALRM after
``HANG_LIMIT_S`` turns a hang (a FIFO read, an endless file) into a failure.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterbench import protocols
from meterbench.errors import SessionError
from meterbench.session import load_session
from meterbench.session.format import UnsafeFile, open_inside
from meterbench.session.reader import EvidenceGap, _read_device_log, _read_frame_times
from meterbench.verify.results import Inconclusive
from meterbench.verify.water_meter import PointTiming, ReadingOptions, UntrustedEvidence, point_timings, reference_track
from tests.session.session_helpers import record_session, totaliser_line, water_meter_manifest

HANG_LIMIT_S = 120
INPUTS: Counter[str] = Counter()
"""Inputs tried per campaign (each hypothesis example counts its inputs)."""


def _settings(examples: int):
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(autouse=True)
def _no_hang():
    def hung(signum, frame):
        raise AssertionError(f"hang: a fuzz test ran more than {HANG_LIMIT_S} s")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_LIMIT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- values

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -1, 1e308, 1e-308, 1.3e250, 2**53, "", "Q3", "abc", "../x", "/etc/passwd", "cam-M1"]),
    st.text(max_size=12),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
# Number-ish texts that are not JSON numbers Python's json would take quietly
_HOSTILE_NUMBERS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "9" * 5000, "[" * 5000])


def _paths(obj, prefix=()):
    """Every (path, value) inside a JSON value."""
    yield prefix, obj
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            yield from _paths(value, (*prefix, index))


def _set(obj, path, value):
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


# ---------------------------------------------------------------- session.json


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return record_session(tmp_path_factory.mktemp("fuzz") / "s", kind="images")


_MANIFEST = json.loads(json.dumps(water_meter_manifest()))
_MANIFEST_PATHS = [p for p, _ in _paths(_MANIFEST) if p]


def _load(folder: Path) -> None:
    """load_session: a Session or a SessionError, nothing else."""
    try:
        session = load_session(folder)
    except SessionError as exc:
        assert exc.problems and all(isinstance(p, str) and "\n" not in p for p in exc.problems)
        return
    for camera_id in session.camera_ids:
        list(session.camera(camera_id).iter_frames())
    for device_id in session.device_ids:
        session.device_events(device_id)
    session.close()


@_settings(1500)
@given(edits=st.lists(st.tuples(st.sampled_from(_MANIFEST_PATHS), _VALUES), min_size=1, max_size=3), data=st.data())
def test_session_json_edits_never_crash(recorded, tmp_path_factory, edits, data):
    manifest = json.loads((recorded / "session.json").read_text())
    for path, value in edits:
        try:
            _set(manifest, path, value)
        except (KeyError, IndexError, TypeError):
            continue
    text = json.dumps(manifest)
    if data.draw(st.booleans()):  # a hostile number in place of a value
        text = text.replace("2.5", data.draw(_HOSTILE_NUMBERS), 1)
    (recorded / "session.json").write_text(text)
    try:
        _load(recorded)
    finally:
        (recorded / "session.json").write_text(json.dumps(_recorded_manifest(recorded)))
    INPUTS["session.json"] += 1


_ORIGINAL_MANIFESTS: dict[Path, dict] = {}


def _recorded_manifest(folder: Path) -> dict:
    return _ORIGINAL_MANIFESTS[folder]


@pytest.fixture(scope="module", autouse=True)
def _remember(recorded):
    _ORIGINAL_MANIFESTS[recorded] = json.loads((recorded / "session.json").read_text())
    (recorded / "hashes.json").unlink()  # the edits below are not changes since close, they are the input
    yield


@_settings(1500)
@given(raw=st.binary(max_size=300))
def test_session_json_bytes_never_crash(recorded, raw):
    (recorded / "session.json").write_bytes(raw)
    try:
        _load(recorded)
    finally:
        (recorded / "session.json").write_text(json.dumps(_recorded_manifest(recorded)))
    INPUTS["session.json bytes"] += 1


# ---------------------------------------------------------------- device lines


def _totaliser_event(seq: int) -> dict:
    line = totaliser_line(seq)
    return {"seq": seq, "t_s": seq * 0.1, "raw": line.decode(), "parsed": protocols.parse_totaliser_line(line)[0]}


def _mqtt_event(seq: int) -> dict:
    payload = {"event": "point_stop", "point": "Q3", "reference_volume_l": 1.5, "reference_seq": 3, "cmd_id": 2}
    return {
        "seq": seq,
        "t_s": seq * 0.1,
        "raw": json.dumps(payload),
        "parsed": payload,
        "topic": "bench/b1/event",
    }


def _modbus_event(seq: int) -> dict:
    frame = protocols.with_crc(bytes([1, 4, 4, 0x44, 0x9A, 0x52, 0x00]))
    return {"seq": seq, "t_s": seq * 0.1, "raw": frame.hex(" "), "parsed": {"volume_l": 1234.5625}}


_TEMPLATES = {"serial-totaliser": _totaliser_event, "mqtt": _mqtt_event, "modbus": _modbus_event}


def _line_strategy(kind: str):
    template = _TEMPLATES[kind](1)
    fields = [p for p, _ in _paths(template) if p]

    @st.composite
    def line(draw):
        event = copy.deepcopy(template)
        event["error"] = None
        for _ in range(draw(st.integers(0, 3))):
            path = draw(st.sampled_from(fields))
            with contextlib.suppress(KeyError, IndexError, TypeError):
                _set(event, path, draw(_VALUES))
        text = json.dumps(event, default=str)
        choice = draw(st.integers(0, 9))
        if choice == 0:
            text = text.replace("1", draw(_HOSTILE_NUMBERS), 1)
        elif choice == 1:
            text = text[: draw(st.integers(0, len(text)))]  # cut short
        elif choice == 2:
            text = draw(st.text(max_size=80))
        return text.encode("utf-8", "surrogatepass")

    return line()


@pytest.mark.parametrize("kind", sorted(_TEMPLATES))
def test_device_lines_never_crash(kind):
    @_settings(1500)
    @given(lines=st.lists(_line_strategy(kind), min_size=1, max_size=4))
    def campaign(lines):
        data = b"\n".join([json.dumps({**_TEMPLATES[kind](0), "error": None}).encode(), *lines]) + b"\n"
        warnings: list[str] = []
        events, gaps = _read_device_log(data, "devices/x.jsonl", "x", kind, warnings)
        assert all(isinstance(w, str) and "\n" not in w for w in warnings)
        assert all(isinstance(g, EvidenceGap) and g.t_from_s <= g.t_to_s for g in gaps)
        for event in events:
            assert isinstance(event.seq, int) and math.isfinite(event.t_s)
            assert event.parsed is None or isinstance(event.parsed, dict)
        INPUTS[f"device line {kind}"] += len(lines)

    campaign()


@_settings(3000)
@given(line=st.one_of(st.binary(max_size=90), st.builds(lambda s: b"$TOT," + s, st.binary(max_size=60))))
def test_totaliser_parser_never_raises(line):
    parsed, error = protocols.parse_totaliser_line(line)
    assert (parsed is None) != (error is None)
    if parsed is not None:  # what it accepts is what the line says: written again, it reads the same
        assert protocols.parse_totaliser_line(protocols.format_totaliser_line(**parsed)) == (parsed, None)
    INPUTS["totaliser line"] += 1


# ---------------------------------------------------------------- frame-time CSVs


_ROW = st.one_of(
    st.builds(lambda i, t: f"{i},{t!r}", st.integers(-2, 30), st.floats(allow_nan=True, allow_infinity=True)),
    st.text(alphabet="0123456789,.-eE naif", max_size=30),
    st.sampled_from(["9" * 5000 + ",1", "1," + "9" * 400, ""]),
)


@_settings(3000)
@given(
    rows=st.lists(_ROW, max_size=8), header=st.sampled_from(["frame_index,t_s", "frame_index,t", ""]), end=st.booleans()
)
def test_frame_time_csv_never_crashes(rows, header, end):
    text = "\n".join([header, *rows]) + ("\n" if end else "")
    warnings: list[str] = []
    times = _read_frame_times(text.encode(), "cameras/c.csv", warnings)
    assert times.ndim == 1 and all(math.isfinite(t) for t in times)
    assert all(b > a for a, b in zip(times, times[1:], strict=False))
    INPUTS["frame-time CSV"] += 1


# ---------------------------------------------------------------- path fields


@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory) -> Path:
    """A folder with a regular file, a FIFO, a link to /dev/zero, a link out, a link loop, a folder."""
    root = tmp_path_factory.mktemp("paths")
    outside = root / "outside.txt"
    outside.write_text("outside")
    folder = root / "session"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.txt").write_text("inside")
    os.mkfifo(folder / "fifo")
    os.symlink("/dev/zero", folder / "zero")
    os.symlink(outside, folder / "out")
    os.symlink("loop", folder / "loop")
    os.symlink("ok.txt", folder / "inner-link")
    return folder


_PATH_PARTS = st.sampled_from(["ok.txt", "fifo", "zero", "out", "loop", "inner-link", "sub", "..", ".", "", "x", "/"])


@_settings(2000)
@given(parts=st.lists(_PATH_PARTS, min_size=1, max_size=4))
def test_paths_open_only_regular_files_inside(hostile_folder, parts):
    relpath = "/".join(parts)
    try:
        with open_inside(hostile_folder, relpath, 1000) as f:
            assert f.read() == b"inside"  # ok.txt, directly or by the inner link: nothing else opens
    except UnsafeFile as exc:
        assert "\n" not in str(exc)
    INPUTS["path field"] += 1


@_settings(600)
@given(path=st.one_of(st.lists(_PATH_PARTS, min_size=1, max_size=3).map("/".join), st.text(max_size=20)))
def test_manifest_paths_never_crash_or_hang(recorded, path):
    manifest = copy.deepcopy(_recorded_manifest(recorded))
    field = "frame_times" if len(path) % 2 else "images"
    manifest["cameras"][0][field] = path
    (recorded / "session.json").write_text(json.dumps(manifest))
    try:
        _load(recorded)
    finally:
        (recorded / "session.json").write_text(json.dumps(_recorded_manifest(recorded)))
    INPUTS["path field"] += 1


# ---------------------------------------------------------------- what verify makes of the events


class _Events:
    """The part of a Session the reference track and the latch timing read."""

    def __init__(self, events: dict[str, list]) -> None:
        self.manifest = {
            "reference_instruments": [{"id": "ref", "kind": "pulse-totaliser", "device": "ref-meter"}],
            "devices": [{"id": "ref-meter", "kind": "serial-totaliser"}, {"id": "controller", "kind": "mqtt"}],
        }
        self._events = events

    def device_events(self, device_id):
        return list(self._events[device_id])

    def device_gaps(self, device_id):
        return []


_EVENT_PAYLOAD = st.fixed_dictionaries(
    {"event": st.sampled_from(["point_start", "point_stop", "fault"]), "point": st.one_of(st.just("Q3"), _VALUES)},
    optional={"reference_volume_l": _VALUES, "reference_seq": _VALUES},
)


@_settings(1000)
@given(
    volumes=st.lists(_VALUES, min_size=0, max_size=8),
    times=st.lists(st.floats(-1e12, 1e13), min_size=8, max_size=8),
    latches=st.lists(_EVENT_PAYLOAD, max_size=4),
)
def test_reference_track_and_latches_never_crash(volumes, times, latches):
    from meterbench.session import DeviceEvent

    reference = [DeviceEvent(i, times[i], "", {"seq": i, "volume_l": v}, None) for i, v in enumerate(volumes)]
    controller = [DeviceEvent(i, float(i), "", payload, None, "bench/b/event") for i, payload in enumerate(latches)]
    session = _Events({"ref-meter": reference, "controller": controller})
    try:
        track, problems, gaps = reference_track(session)
        assert all(b > a for a, b in zip(track.t_s, track.t_s[1:], strict=False))
        assert all(b >= a for a, b in zip(track.volume_l, track.volume_l[1:], strict=False))
    except Inconclusive as exc:
        assert exc.reason
    timings = point_timings(session, ["Q3"])
    timing = timings["Q3"]
    assert isinstance(timing, PointTiming)
    assert all(isinstance(p, str) for p in timing.problems)
    UntrustedEvidence().reasons(timing, ReadingOptions())
    INPUTS["verify events"] += len(volumes) + len(latches)


def test_campaign_size():
    """The whole campaign: at least 20,000 inputs (when every campaign above ran)."""
    campaigns = {
        "session.json",
        "session.json bytes",
        "frame-time CSV",
        "path field",
        "totaliser line",
        "verify events",
    }
    campaigns |= {f"device line {kind}" for kind in _TEMPLATES}
    if not campaigns <= set(INPUTS):
        pytest.skip(f"not every campaign ran: {sorted(campaigns - set(INPUTS))}")
    print(f"\nfuzzed inputs: {sum(INPUTS.values())} ({dict(INPUTS)})")
    assert sum(INPUTS.values()) >= 20000
