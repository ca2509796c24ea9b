"""Read and validate a recorded session folder (format version 1).

``load_session(path)`` checks session.json against the JSON Schema
``schemas/session-v1.json`` plus cross-file rules, and raises
:class:`SessionError` listing one line per problem (file, field, what was
expected). Damage that a crash can leave (a truncated last log line, a frame
cut short, a video shorter than its frame-time CSV) is not an error: the
damaged item is skipped, a ``file:line`` warning goes to ``Session.warnings``,
and everything before it stays readable. Files are read only when they are
regular files inside the session folder and within their size cap, their
SHA-256 taken from the very bytes read (:meth:`Session.file_hashes`). Device
lines are re-parsed from ``raw`` (:mod:`meterbench.protocols`) and their hash
chain and ``hashes.json`` checked; lines that cannot be trusted are not used
and the stretch of time they cover is an :class:`EvidenceGap`.
Format: docs/session-format.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from meterbench import protocols
from meterbench.errors import SessionError
from meterbench.session.format import (
    MAX_MANIFEST_BYTES,
    UnsafeFile,
    open_inside,
    parse_json,
    read_inside,
    read_json_bytes,
    schema_problems,
    short,
)
from meterbench.session.integrity import HASHES_FILE, HASHES_FORMAT, chain_breaks, hash_mismatches
from meterbench.session.traces import Trace, parse_trace

__all__ = ["load_session", "Session", "DeviceEvent", "CameraSource", "EvidenceGap"]

_FRAME_TIMES_HEADER = "frame_index,t_s"
TRUTH_FILE = "truth.json"  # simulated sessions only: what really happened (never an input of a verdict)
_MAX_FORWARD_DECODE = 48  # frames: beyond this a video reader seeks instead of decoding on
MAX_DEVICE_LOG_BYTES = 2 * 2**30
"""A device log larger than this (2 GiB) is not read (warning; its device gives no events)."""
MAX_FRAME_TIMES_BYTES = 256 * 2**20
"""A frame-time CSV larger than this (256 MiB, ~10 million rows) is not read (its camera has no frames)."""
MAX_IMAGE_BYTES = 64 * 2**20
"""An image frame larger than this (64 MiB) is not read (the frame is unusable)."""
MAX_VIDEO_BYTES = 64 * 2**30
"""A video larger than this (64 GiB) is not read (its camera has no frames)."""
MAX_TRACE_BYTES = 256 * 2**20
"""An impact trace larger than this (256 MiB) is not read (the session is refused)."""
MAX_HASHES_BYTES = 256 * 2**20
"""hashes.json larger than this (256 MiB) is not read (warning: files not checked)."""
MAX_ABS_T_S = 1e9
"""|t_s| of a device line above this (1e9 s, 31 years) is no session time: the line is skipped."""
MQTT_KINDS = ("mqtt", "controller")
"""Device kinds whose lines are MQTT messages (re-parsed by topic); "serial-totaliser" and "modbus" are
re-parsed too. Lines of any other kind are used as recorded (a warning says so)."""
REPARSED_KINDS = ("serial-totaliser", "modbus", *MQTT_KINDS)
_HASH_CHUNK_BYTES = 1 << 20
_CHANGED = "changed since the session was closed (hashes.json)"
_ADDED = "not listed in hashes.json (added after the session was closed)"


@dataclass(frozen=True)
class DeviceEvent:
    """One line of ``devices/<id>.jsonl``: ``t_s`` in s on the session clock.

    ``raw`` is text (``"raw"`` in the file) or bytes (decoded from ``"raw_b64"``).
    """

    seq: int
    t_s: float
    raw: str | bytes
    parsed: dict[str, Any] | None
    error: str | None
    topic: str | None = None


@dataclass(frozen=True)
class EvidenceGap:
    """A stretch of a device log that cannot be trusted, from ``t_from_s`` to ``t_to_s`` (s, session
    clock; -inf/inf when the whole log is concerned): a hash-chain break, a line whose ``parsed``
    disagrees with its ``raw``, a log changed since the session was closed or not readable.
    A point whose evidence lies in it is inconclusive with ``reason``."""

    t_from_s: float
    t_to_s: float
    reason: str

    def overlaps(self, t0_s: float, t1_s: float) -> bool:
        """Whether the gap touches [t0_s, t1_s] (s)."""
        return self.t_from_s <= t1_s and t0_s <= self.t_to_s


# ---------------------------------------------------------------- cross-checks


def _items(manifest: Any, key: str) -> list[tuple[int, dict[str, Any]]]:
    """(index, entry) of the object entries of manifest list ``key`` (others are schema errors)."""
    value = manifest.get(key) if isinstance(manifest, dict) else None
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, dict)]


def _duplicates(label: str, entries: list[tuple[str, Any]], what: str) -> list[str]:
    """Problems for repeated values among (field path, value) pairs."""
    first_seen: dict[Any, str] = {}
    problems = []
    for where, value in entries:
        if not isinstance(value, str):
            continue
        if value in first_seen:
            problems.append(f"{label}: {where}: duplicate {what} {short(value)} (also {first_seen[value]})")
        else:
            first_seen[value] = where
    return problems


def _cross_problems(manifest: dict[str, Any], folder: Path) -> list[str]:
    """Rules the schema cannot express: references, uniqueness, files, bench kind."""
    label = "session.json"
    cameras = _items(manifest, "cameras")
    devices = _items(manifest, "devices")
    units = [("instruments", i, e) for i, e in _items(manifest, "instruments")]
    units += [("tanks", i, e) for i, e in _items(manifest, "tanks")]
    plan = manifest.get("test_plan")
    points = _items(plan, "points")
    problems = _duplicates(label, [(f"cameras[{i}].id", c.get("id")) for i, c in cameras], "camera id")
    problems += _duplicates(label, [(f"devices[{i}].id", d.get("id")) for i, d in devices], "device id")
    problems += _duplicates(label, [(f"{k}[{i}].id", u.get("id")) for k, i, u in units], "instrument id")
    problems += _duplicates(label, [(f"test_plan.points[{i}].name", p.get("name")) for i, p in points], "point name")
    camera_ids = {c.get("id") for _, c in cameras if isinstance(c.get("id"), str)}  # others: schema errors
    device_ids = {d.get("id") for _, d in devices if isinstance(d.get("id"), str)}
    closed = os.path.lexists(folder / HASHES_FILE)
    for key, i, unit in units:
        camera = unit.get("camera")
        if isinstance(camera, str) and camera not in camera_ids and closed:
            # an unclosed recording (killed before that camera's writer opened) is read: its camera has no frames
            problems.append(
                f"{label}: {key}[{i}].camera: expected the id of an entry of cameras[], got {short(camera)}"
            )
    for i, ref in _items(manifest, "reference_instruments"):
        device = ref.get("device")
        if isinstance(device, str) and device not in device_ids:
            problems.append(
                f"{label}: reference_instruments[{i}].device: expected the id of an "
                f"entry of devices[], got {short(device)}"
            )
    problems += _bench_kind_problems(manifest, units, points)
    problems += _helmet_problems(manifest)
    problems += _file_problems(folder, cameras, devices, units, _trace_entries(manifest))
    return problems


def _trace_entries(manifest: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(field path, entry) of every recorded trace of a helmet-impact session: impacts, then reference drops."""
    return [(f"{key}[{i}]", entry) for key in ("impacts", "reference_drops") for i, entry in _items(manifest, key)]


def _helmet_problems(manifest: dict[str, Any]) -> list[str]:
    """A helmet-impact session: unique helmet ids and drop names, every impact's helmet listed, no
    water meter or tank; the other kinds carry no helmets, impacts or reference drops."""
    label = "session.json"
    helmets = _items(manifest, "helmets")
    drops = _trace_entries(manifest)
    if manifest.get("bench_kind") != "helmet-impact":
        return [
            f"{label}: {key}: only a helmet-impact bench has {key} (bench_kind is {short(manifest.get('bench_kind'))})"
            for key in ("helmets", "impacts", "reference_drops")
            if key in manifest
        ]
    problems = _duplicates(label, [(f"helmets[{i}].id", h.get("id")) for i, h in helmets], "helmet id")
    problems += _duplicates(label, [(f"{where}.name", d.get("name")) for where, d in drops], "impact name")
    problems += [
        f"{label}: {key}: expected none on a helmet-impact bench (bench_kind), got {len(manifest[key])}"
        for key in ("instruments", "tanks")
        if manifest.get(key)
    ]
    helmet_ids = {h.get("id") for _, h in helmets}
    for i, impact in _items(manifest, "impacts"):
        helmet = impact.get("helmet")
        if isinstance(helmet, str) and helmet not in helmet_ids:
            problems.append(
                f"{label}: impacts[{i}].helmet: expected the id of an entry of helmets[], got {short(helmet)}"
            )
    return problems


def _bench_kind_problems(
    manifest: dict[str, Any], units: list[tuple[str, int, dict]], points: list[tuple[int, dict]]
) -> list[str]:
    """A water-meter bench tests water meters only, a tank bench tanks only."""
    bench_kind = manifest.get("bench_kind")
    if bench_kind not in ("water-meter", "tank"):
        return []  # reported by the schema, or a helmet-impact bench (_helmet_problems)
    label = "session.json"
    kinds = [(key, i, "tank" if key == "tanks" else unit.get("kind")) for key, i, unit in units]
    problems = [
        f"{label}: {key}[{i}].kind: expected {short(bench_kind)} on a "
        f"{short(bench_kind)} bench (bench_kind), got {short(kind)}"
        for key, i, kind in kinds
        if kind in ("water-meter", "tank") and kind != bench_kind
    ]
    if not any(kind == bench_kind for _, _, kind in kinds):
        where = "instruments" if bench_kind == "water-meter" else "tanks"
        problems.append(
            f"{label}: {where}: expected at least one {short(bench_kind)} (bench_kind is {short(bench_kind)}), got none"
        )
    if bench_kind == "water-meter":
        for i, point in points:
            for field in ("flow_rate_m3h", "volume_l"):
                if field not in point:
                    problems.append(
                        f"{label}: test_plan.points[{i}].{field}: missing (expected "
                        "a number > 0 on a water-meter bench)"
                    )
    return problems


def _file_problems(
    folder: Path,
    cameras: list[tuple[int, dict]],
    devices: list[tuple[int, dict]],
    units: list[tuple[str, int, dict]] = (),
    traces: list[tuple[str, dict]] = (),
) -> list[str]:
    """Every file or folder the manifest names must exist in the session folder (a FIFO, a device,
    a link leading out or a file over its size cap is found when it is opened, and stays local
    to its camera or device)."""
    wanted: list[tuple[str, Any, bool]] = []  # (field path, relpath, is_dir)
    for i, camera in cameras:
        wanted += [
            (f"cameras[{i}].video", camera.get("video"), False),
            (f"cameras[{i}].images", camera.get("images"), True),
            (f"cameras[{i}].frame_times", camera.get("frame_times"), False),
        ]
    wanted += [(f"devices[{i}].log", device.get("log"), False) for i, device in devices]
    for key, i, unit in units:  # the reference photo of a marker-free register layout
        register = unit.get("register")
        reference = register.get("reference") if isinstance(register, dict) else None
        if isinstance(reference, dict):
            wanted.append((f"{key}[{i}].register.reference.image", reference.get("image"), False))
    wanted += [(f"{where}.trace", entry.get("trace"), False) for where, entry in traces]
    problems = []
    for where, relpath, is_dir in wanted:
        if not isinstance(relpath, str) or relpath.startswith("/") or ".." in relpath.split("/"):
            continue  # absent, or reported by the schema
        target = folder / relpath
        exists = target.is_dir() if is_dir else (os.path.lexists(target) and not target.is_dir())
        if not exists:
            what = "folder" if is_dir else "file"
            problems.append(f"session.json: {where}: {what} {short(relpath)} not found in the session folder")
    return problems


def _truth_problems(truth: Any, manifest: dict[str, Any]) -> list[str]:
    problems = schema_problems("truth.json", truth, "truth-v1.json")
    if problems:
        return problems
    if manifest.get("bench_kind") == "helmet-impact":
        names = {d.get("name") for _, d in _trace_entries(manifest)}
        return [
            f"truth.json: impacts[{i}].name: expected the name of an impact of session.json, got {short(item['name'])}"
            for i, item in enumerate(truth.get("impacts", []))
            if item["name"] not in names
        ]
    known = {
        u.get("id")
        for key in ("instruments", "tanks")
        for _, u in _items(manifest, key)
        if isinstance(u.get("id"), str)
    }
    return [
        f"truth.json: instruments[{i}].id: expected the id of an instrument of session.json, got {short(item['id'])}"
        for i, item in enumerate(truth["instruments"])
        if item["id"] not in known
    ]


# ---------------------------------------------------------------- device logs


def _event_from_line(obj: Any) -> DeviceEvent | str:
    """A DeviceEvent from one decoded JSON line, or the reason it is not one."""
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {short(obj, 30)}"
    seq, t_s = obj.get("seq"), obj.get("t_s")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return f"seq: expected an integer >= 0, got {short(seq, 30)}"
    if not isinstance(t_s, int | float) or isinstance(t_s, bool) or not abs(t_s) <= MAX_ABS_T_S:
        return f"t_s: expected a finite number of seconds within ±{MAX_ABS_T_S:g}, got {short(t_s, 30)}"
    if ("raw" in obj) == ("raw_b64" in obj):
        return 'expected exactly one of the fields "raw" or "raw_b64"'
    if "raw" in obj:
        raw: str | bytes = obj["raw"]
        if not isinstance(raw, str):
            return f"raw: expected a string, got {short(raw, 30)}"
    else:
        try:
            raw = base64.b64decode(obj["raw_b64"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            return "raw_b64: expected base64 text"
    parsed, error, topic = obj.get("parsed"), obj.get("error"), obj.get("topic")
    if parsed is not None and not isinstance(parsed, dict):
        return f"parsed: expected an object or null, got {short(parsed, 30)}"
    if error is not None and not isinstance(error, str):
        return f"error: expected a string or null, got {short(error, 30)}"
    if topic is not None and not isinstance(topic, str):
        return f"topic: expected a string, got {short(topic, 30)}"
    return DeviceEvent(seq=seq, t_s=float(t_s), raw=raw, parsed=parsed, error=error, topic=topic)


def _raw_bytes(event: DeviceEvent) -> bytes | None:
    """The line or payload as received (serial text is latin-1, MQTT text UTF-8); None if it cannot be."""
    if isinstance(event.raw, bytes):
        return event.raw
    try:
        return event.raw.encode("latin-1")
    except UnicodeEncodeError:
        return event.raw.encode("utf-8")


def _mqtt_reparse(event: DeviceEvent) -> tuple[Any, str | None]:
    """What an MQTT line's raw payload gives on its topic: (value, None) or (None, why not)."""
    topic = event.topic or ""
    if event.raw in ("", b"") and not topic:  # the driver's own note (connection events)
        note = event.parsed
        ok = isinstance(note, dict) and set(note) == {"note"} and isinstance(note["note"], str)
        return (note, None) if ok else (None, "a connection note carries only {'note': text}")
    data = event.raw.encode("utf-8") if isinstance(event.raw, str) else event.raw
    payload, error = protocols.decode_payload(data)
    if error is not None:
        return None, error
    kind = topic.rsplit("/", 1)[-1]
    if kind == "telemetry":
        return protocols.parse_telemetry(payload)
    if kind == "event":
        return protocols.parse_event(payload)
    return payload, None  # commands sent and other topics: the payload itself


def _modbus_reparse(event: DeviceEvent) -> tuple[Any, str | None]:
    """A Modbus line's raw response (hex) must be a whole read-registers frame with a valid CRC.
    The values cannot be decoded again: session.json does not record the register map."""
    try:
        frame = bytes.fromhex(event.raw if isinstance(event.raw, str) else event.raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None, "raw is not a hex Modbus frame"
    if not protocols.check_crc(frame) or len(frame) < 5 or frame[2] != len(frame) - 5:
        return None, "raw is not a read-registers response with a valid CRC"
    return event.parsed, None


def _reparse(event: DeviceEvent, kind: str | None) -> str | None:
    """Why a line's recorded ``parsed`` is not what its ``raw`` gives (None when they agree, or when
    the line gives no value anyway or the device kind has no parser here)."""
    if event.parsed is None or event.error is not None:
        return None
    if kind == "serial-totaliser":
        raw = _raw_bytes(event)
        expected, error = protocols.parse_totaliser_line(raw) if raw is not None else (None, "raw is not bytes")
    elif kind in MQTT_KINDS:
        expected, error = _mqtt_reparse(event)
    elif kind == "modbus":
        expected, error = _modbus_reparse(event)
    else:
        return None
    if error is not None:
        return f"parsed {short(event.parsed, 40)} but raw gives no value ({error})"
    if expected != event.parsed:
        if not isinstance(expected, dict):
            return f"parsed disagrees with raw (raw gives {short(expected, 40)})"
        differ = sorted(
            short(k, 20) for k in set(expected) | set(event.parsed) if expected.get(k) != event.parsed.get(k)
        )
        return f"parsed disagrees with raw ({', '.join(differ)[:80]})"
    return None


def _break_line(message: str, label: str) -> int:
    """The line number of a ``chain_breaks`` message ("<label>:<line>: hash chain broken ...")."""
    match = re.match(re.escape(label) + r":(\d+):", message)
    return int(match.group(1)) if match else 1


def _gap_around(numbered: list[tuple[int, DeviceEvent]], line: int, reason: str) -> EvidenceGap:
    """The time span from the event before file line ``line`` to the event after it."""
    before = [e.t_s for n, e in numbered if n < line]
    after = [e.t_s for n, e in numbered if n > line]
    times = before[-1:] + after[:1]
    return EvidenceGap(min(times, default=-math.inf), max(times, default=math.inf), reason)


def _read_device_log(
    data: bytes, label: str, device_id: str, kind: str | None, warnings: list[str]
) -> tuple[list[DeviceEvent], list[EvidenceGap]]:
    """Every well-formed event line of a JSONL log in file order, and the stretches not to trust.

    Bad lines are skipped with a warning. A line whose ``parsed`` disagrees with its ``raw``, and the
    line before a hash-chain break (the one changed), are kept with ``parsed`` None and the reason in
    ``error`` (never used); each gives an :class:`EvidenceGap`. A break at the first line (the log
    of another device, or its first line changed) makes the whole log a gap.
    """
    lines = data.split(b"\n")
    ends_clean = data.endswith(b"\n") or not data
    if ends_clean:
        lines.pop()  # the empty piece after the last newline
    numbered: list[tuple[int, DeviceEvent]] = []
    suspect: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last_unterminated = number == len(lines) and not ends_clean
        try:
            obj = protocols.strict_json_loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, NaN, huge integers, deep nesting
            why = "truncated last line (cut by a crash?)" if is_last_unterminated else f"not valid JSON ({exc})"
            warnings.append(f"{label}:{number}: skipped: {why[:160]}")
            continue
        event = _event_from_line(obj)
        if isinstance(event, str):
            warnings.append(f"{label}:{number}: skipped: {event}")
            continue
        disagreement = _reparse(event, kind)
        if disagreement is not None:
            suspect[number] = f"{label}:{number}: {disagreement}; line not used"
        numbered.append((number, event))
    gaps = []
    for message in chain_breaks(lines, device_id, label):
        line = _break_line(message, label)
        if line <= 1:
            warnings.append(f"{message}: no line of the log is used")
            gaps.append(EvidenceGap(-math.inf, math.inf, f"{message}: no line of the log is used"))
        else:
            suspect.setdefault(line - 1, f"{message}; line {line - 1} not used")
    for line, reason in sorted(suspect.items()):
        warnings.append(reason)
        gaps.append(_gap_around(numbered, line, reason))
    events = [DeviceEvent(e.seq, e.t_s, e.raw, None, suspect[n], e.topic) if n in suspect else e for n, e in numbered]
    return events, gaps


# ---------------------------------------------------------------- cameras


def _read_frame_times(data: bytes, label: str, warnings: list[str]) -> np.ndarray:
    """Capture times (s) of frames 0, 1, ... from ``frame_index,t_s`` rows.

    Reading stops at the first bad row (warning): indices must count up from 0
    and times increase strictly, so only the common good prefix is trusted. A
    last row without its newline is cut short by a crash and never used.
    """
    text = data.decode("utf-8", errors="replace")
    rows = text.split("\n")
    ends_clean = text.endswith("\n") or not text
    if ends_clean:
        rows.pop()
    if not rows or rows[0].strip() != _FRAME_TIMES_HEADER:
        got = short(rows[0] if rows else "", 40)
        warnings.append(f"{label}:1: expected the header {_FRAME_TIMES_HEADER!r}, got {got}; no frames used")
        return np.zeros(0)
    times: list[float] = []
    for number, row in enumerate(rows[1:], start=2):
        if number == len(rows) and not ends_clean:  # "12,0.1" may be "12,0.15" cut short
            why = "truncated last row (cut by a crash?)"
        else:
            why = _frame_row_problem(row, len(times), times[-1] if times else -math.inf)
        if why is None:
            times.append(float(row.split(",")[1]))
            continue
        warnings.append(f"{label}:{number}: {why}; frames from index {len(times)} on are not used")
        break
    return np.asarray(times, dtype=np.float64)


def _frame_row_problem(row: str, expected_index: int, previous_t_s: float) -> str | None:
    if len(row) > 64:  # "1234567,12345.678901234567" is 26 characters
        return f"expected 'frame_index,t_s', got a row of {len(row)} characters"
    parts = row.strip().split(",")
    if len(parts) != 2:
        return f"expected 'frame_index,t_s', got {short(row, 40)}"
    try:
        index, t_s = int(parts[0]), float(parts[1])
    except ValueError:
        return f"expected an integer and a number, got {short(row, 40)}"
    if index != expected_index:
        return f"frame_index: expected {expected_index}, got {index}"
    if not (math.isfinite(t_s) and t_s > previous_t_s):
        return f"t_s: expected a finite time > {previous_t_s!r} s, got {parts[1]}"
    return None


def _image_is_complete(data: bytes, image_format: str) -> bool:
    """True when an encoded image ends where its format says (no cut tail)."""
    body = data.rstrip(b"\0")
    if image_format == "png":
        return data.startswith(b"\x89PNG") and body[-12:-8] == b"\0\0\0\0" and b"IEND" in body[-8:]
    return data.startswith(b"\xff\xd8") and body.endswith(b"\xff\xd9")


class _InputFiles:
    """Reads the files of one session folder safely (:func:`open_inside`), keeps the SHA-256 of the
    bytes read (the report's input hashes) and compares them with ``hashes.json`` when it exists."""

    def __init__(self, folder: Path, recorded: dict[str, str] | None) -> None:
        self.folder = folder
        self.recorded = recorded  # hashes.json "files", None without a (valid) hashes.json
        self.hashes: dict[str, str] = {}

    def _note(self, relpath: str, digest: str) -> str | None:
        """Remember the hash of ``relpath`` as read; why it differs from hashes.json, or None."""
        self.hashes[relpath] = digest
        if self.recorded is None:
            return None
        if relpath not in self.recorded:
            return f"{relpath}: {_ADDED}"
        return None if self.recorded[relpath] == digest else f"{relpath}: {_CHANGED}"

    def read(self, relpath: str, max_bytes: int) -> tuple[bytes, str | None]:
        """(bytes, tamper reason or None); UnsafeFile/OSError when it cannot be read safely."""
        data = read_inside(self.folder, relpath, max_bytes)
        return data, self._note(relpath, hashlib.sha256(data).hexdigest())

    def open_hashed(self, relpath: str, max_bytes: int) -> tuple[BinaryIO, str | None]:
        """An open regular file, hashed to its end and rewound (a video, read by the decoder from this
        very file: no other file can be swapped in after the hash), and the tamper reason or None."""
        f = open_inside(self.folder, relpath, max_bytes)
        digest = hashlib.sha256()
        while chunk := f.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
        f.seek(0)
        return f, self._note(relpath, digest.hexdigest())


class CameraSource:
    """Frames of one recorded camera, video or image folder, with their capture times (s).

    ``frame_times`` and ``frame_count`` cover only frames that have both a
    good CSV row and media; ``read`` gives None (plus a warning) for a frame
    that cannot be decoded. ``problems`` lists what was wrong with the CSV or
    the media when the camera was opened (also in the session's warnings), so a
    pipeline can say why a camera has no frames.
    """

    def __init__(self, files: _InputFiles, entry: dict[str, Any], warnings: list[str]) -> None:
        self.camera_id: str = entry["id"]
        self.entry = entry
        self.fps = float(entry["fps"])
        self.size_wh = (int(entry["width"]), int(entry["height"]))
        self._files = files
        self._folder = files.folder
        self._warnings = warnings
        self._warned: set[str] = set()
        csv_rel = entry["frame_times"]
        self.problems: list[str] = []
        times = self._frame_times(csv_rel)
        self._capture: Any = None
        self._video_file: BinaryIO | None = None
        self._next_position: int | None = None
        if "video" in entry:
            self.media = entry["video"]
            times = self._open_video(times)
        else:
            self.media = entry["images"]
            self._image_format = entry.get("image_format") or self._guess_image_format()
        warnings.extend(self.problems)
        self.frame_times: np.ndarray = times
        self.frame_times.flags.writeable = False

    @property
    def frame_count(self) -> int:
        """Number of usable frames."""
        return int(self.frame_times.size)

    def _frame_times(self, csv_rel: str) -> np.ndarray:
        try:
            data, changed = self._files.read(csv_rel, MAX_FRAME_TIMES_BYTES)
        except (UnsafeFile, OSError) as exc:
            self.problems.append(f"{csv_rel}: {exc}; no frames used")
            return np.zeros(0)
        if changed is not None:
            self.problems.append(f"{changed}; no frames used")
            return np.zeros(0)
        return _read_frame_times(data, csv_rel, self.problems)

    def _open_video(self, times: np.ndarray) -> np.ndarray:
        import cv2

        try:
            self._video_file, changed = self._files.open_hashed(self.media, MAX_VIDEO_BYTES)
        except (UnsafeFile, OSError) as exc:
            self.problems.append(f"{self.media}: {exc}; no frames used")
            return times[:0]
        if changed is not None:
            self.problems.append(f"{changed}; no frames used")
            return times[:0]
        by_descriptor = Path(f"/proc/self/fd/{self._video_file.fileno()}")
        capture = cv2.VideoCapture(str(by_descriptor if by_descriptor.exists() else self._folder / self.media))
        if not capture.isOpened():
            self.problems.append(f"{self.media}: cannot be opened as a video (unfinished recording?); no frames used")
            return times[:0]
        self._capture = capture
        self._next_position = 0
        video_frames = int(round(capture.get(cv2.CAP_PROP_FRAME_COUNT)))
        if video_frames != times.size:
            used = min(video_frames, times.size)
            self.problems.append(
                f"{self.media}: {video_frames} frames but "
                f"{self.entry['frame_times']} has {times.size} good rows; "
                f"using the first {used}"
            )
            times = times[:used]
        return times

    def _guess_image_format(self) -> str:
        for name in ("jpg", "png"):
            if (self._folder / self.media / f"000000.{name}").is_file():
                return name
        return "jpg"

    def _warn_once(self, text: str) -> None:
        if text not in self._warned:
            self._warned.add(text)
            self._warnings.append(text)

    def read(self, index: int) -> np.ndarray | None:
        """Frame ``index`` as H×W×3 BGR uint8, or None (with a warning) if it is damaged."""
        if not 0 <= index < self.frame_count:
            raise IndexError(f"camera {self.camera_id!r}: frame index {index} outside 0..{self.frame_count - 1}")
        frame = self._read_video(index) if self._capture is not None else self._read_image(index)
        if frame is not None and frame.shape[1::-1] != self.size_wh:
            self._warn_once(
                f"{self.media}: frame {index}: size {frame.shape[1]}x"
                f"{frame.shape[0]} px, session.json says {self.size_wh[0]}x"
                f"{self.size_wh[1]}; frame not used"
            )
            return None
        return frame

    def _read_video(self, index: int) -> np.ndarray | None:
        import cv2

        position = self._next_position
        if position is None or not 0 <= index - position <= _MAX_FORWARD_DECODE:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        else:
            for _ in range(index - position):
                self._capture.grab()
        ok, frame = self._capture.read()
        if not ok or frame is None:
            self._next_position = None  # position unknown: seek next time
            self._warn_once(f"{self.media}: frame {index} cannot be decoded; not used")
            return None
        self._next_position = index + 1
        return frame

    def _read_image(self, index: int) -> np.ndarray | None:
        import cv2

        relpath = f"{self.media}/{index:06d}.{self._image_format}"
        try:
            data, changed = self._files.read(relpath, MAX_IMAGE_BYTES)
        except UnsafeFile as exc:
            self._warn_once(f"{relpath}: {exc}; frame not used")
            return None
        except OSError as exc:
            self._warn_once(f"{relpath}: cannot be read ({exc.strerror or exc}); frame not used")
            return None
        if changed is not None:
            self._warn_once(f"{changed}; frame not used")
            return None
        if not _image_is_complete(data, self._image_format):
            self._warn_once(f"{relpath}: truncated or not a {self._image_format} file; frame not used")
            return None
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            self._warn_once(f"{relpath}: cannot be decoded; frame not used")
        return frame

    def iter_frames(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, float, np.ndarray | None]]:
        """Yield ``(index, t_s, frame or None)`` for ``indices`` (default: all, in order).

        Video is decoded sequentially; it seeks only for jumps back or far ahead.
        """
        for index in range(self.frame_count) if indices is None else indices:
            index = int(index)
            frame = self.read(index)
            yield index, float(self.frame_times[index]), frame

    def close(self) -> None:
        """Release the video decoder (if any)."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None
            self._next_position = None
        if self._video_file is not None:
            self._video_file.close()
            self._video_file = None


# ---------------------------------------------------------------- session


class NeverOpenedCamera(CameraSource):
    """A camera of an unclosed recording whose writer never opened (the recording stopped first):
    no frames, and ``problems`` says why, so its instrument is inconclusive instead of the session unreadable."""

    def __init__(self, camera_id: str, warnings: list[str]) -> None:
        self.camera_id = camera_id
        self.entry = {"id": camera_id, "frame_times": f"cameras/{camera_id}.csv"}
        self.fps = 0.0
        self.size_wh = (0, 0)
        self.media = f"cameras/{camera_id}"
        self._capture = None
        self._video_file = None
        self._warnings = warnings
        self._warned = set()
        self.problems = [
            f"camera {camera_id}: not in session.json cameras[]: the recording stopped before this camera "
            "opened (the session never closed); no frames"
        ]
        warnings.extend(self.problems)
        self.frame_times = np.zeros(0)
        self.frame_times.flags.writeable = False


class Session:
    """A validated session folder. Create it with :func:`load_session`."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        truth: dict[str, Any] | None,
        warnings: list[str],
        *,
        has_truth_file: bool | None = None,
        files: _InputFiles | None = None,
        tampered: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.truth = truth  # None when absent or invalid (then a warning says why)
        self.warnings = warnings
        self.tampered = list(tampered)
        """Why no verdict of this session can be trusted (session.json changed since it was closed)."""
        self._has_truth_file = truth is not None if has_truth_file is None else has_truth_file
        self._files = files or _InputFiles(path, None)
        self._cameras: dict[str, CameraSource] = {}
        self._events: dict[str, list[DeviceEvent]] = {}
        self._gaps: dict[str, list[EvidenceGap]] = {}

    @property
    def session_id(self) -> str:
        return self.manifest["session_id"]

    @property
    def simulated(self) -> bool:
        """True for a simulated session: it has a truth.json (even an invalid one) or session.json
        says so (a ``simulated`` or ``simulator`` entry, as the simulators write)."""
        return self._has_truth_file or bool(self.manifest.get("simulated") or self.manifest.get("simulator"))

    @property
    def bench_kind(self) -> str:
        """ "water-meter", "tank" or "helmet-impact"."""
        return self.manifest["bench_kind"]

    @property
    def instruments(self) -> list[dict[str, Any]]:
        """Entries of session.json ``instruments`` (water meters; tanks may also appear; [] on a helmet bench)."""
        return self.manifest.get("instruments", [])

    @property
    def helmets(self) -> list[dict[str, Any]]:
        """Entries of session.json ``helmets`` (helmet-impact bench; [] otherwise)."""
        return self.manifest.get("helmets", [])

    @property
    def impacts(self) -> list[dict[str, Any]]:
        """Entries of session.json ``impacts`` in recorded order (helmet-impact bench; [] otherwise)."""
        return self.manifest.get("impacts", [])

    @property
    def reference_drops(self) -> list[dict[str, Any]]:
        """Entries of session.json ``reference_drops``: the rig's own check drops ([] when none)."""
        return self.manifest.get("reference_drops", [])

    def trace(self, entry: dict[str, Any]) -> Trace:
        """The trace of an impact or reference drop of session.json, parsed from the very bytes whose
        SHA-256 was checked against the entry's ``sha256`` (and hashes.json).

        SessionError (one line) when the file changed since it was recorded; TraceError when it is
        intact but not a readable trace."""
        data = _checked_trace_bytes(self._files, entry, str(entry.get("name")))
        return parse_trace(data, entry["trace"], float(entry["fs_hz"]), entry.get("sensitivity_mv_per_g"))

    @property
    def tanks(self) -> list[dict[str, Any]]:
        """Entries of session.json ``tanks`` ([] when absent)."""
        return self.manifest.get("tanks", [])

    @property
    def reference_instruments(self) -> list[dict[str, Any]]:
        return self.manifest.get("reference_instruments", [])

    @property
    def bench_id(self) -> str | None:
        """session.json ``bench_id``: the bench that recorded it (a lab file's bench id), None when not named."""
        return self.manifest.get("bench_id")

    @property
    def technician_id(self) -> str | None:
        """session.json ``technician_id``: who ran the test (a lab file's technician id), None when not named."""
        return self.manifest.get("technician_id")

    @property
    def reference_standard_ids(self) -> list[str]:
        """The ``standard_id`` of each reference instrument that names one (lab file reference standards), in order."""
        ids = [r["standard_id"] for r in self.reference_instruments if "standard_id" in r]
        return list(dict.fromkeys(ids))

    @property
    def test_plan_points(self) -> list[dict[str, Any]]:
        """Entries of session.json ``test_plan.points`` ([] on a helmet-impact bench, which has impacts)."""
        return self.manifest.get("test_plan", {}).get("points", [])

    @property
    def camera_ids(self) -> list[str]:
        return [c["id"] for c in self.manifest["cameras"]]

    @property
    def device_ids(self) -> list[str]:
        return [d["id"] for d in self.manifest["devices"]]

    def _entry(self, key: str, item_id: str) -> dict[str, Any]:
        for entry in self.manifest[key]:
            if entry["id"] == item_id:
                return entry
        known = ", ".join(short(e["id"]) for e in self.manifest[key]) or "none"
        raise SessionError([f"session.json: {key}: no entry with id {short(item_id)} (known: {known})"], self.path)

    def camera(self, camera_id: str) -> CameraSource:
        """The frames of ``camera_id`` (opened once, then cached).

        In a recording that never closed (no hashes.json: killed), a camera an instrument names but
        ``cameras[]`` lacks never opened its writer: it has no frames, and its problem says so."""
        if camera_id not in self._cameras:
            if not self._closed and camera_id not in self.camera_ids and self._named_by_a_unit(camera_id):
                self._cameras[camera_id] = NeverOpenedCamera(camera_id, self.warnings)
            else:
                entry = self._entry("cameras", camera_id)
                self._cameras[camera_id] = CameraSource(self._files, entry, self.warnings)
        return self._cameras[camera_id]

    @property
    def _closed(self) -> bool:
        """Whether the recording was closed (it wrote hashes.json)."""
        return os.path.lexists(self.path / HASHES_FILE)

    def _named_by_a_unit(self, camera_id: str) -> bool:
        units = self.manifest.get("instruments", []) + self.manifest.get("tanks", [])
        return any(unit.get("camera") == camera_id for unit in units)

    def device_events(self, device_id: str) -> list[DeviceEvent]:
        """Every readable event of ``device_id`` in file order (bad lines skipped, warned; lines not
        to be trusted kept with ``parsed`` None and the reason in ``error``, see :meth:`device_gaps`)."""
        if device_id not in self._events:
            entry = self._entry("devices", device_id)
            relpath = entry["log"]
            events: list[DeviceEvent] = []
            try:
                data, changed = self._files.read(relpath, MAX_DEVICE_LOG_BYTES)
            except (UnsafeFile, OSError) as exc:
                reason = f"{relpath}: {exc}"
                self.warnings.append(reason)
                gaps = [EvidenceGap(-math.inf, math.inf, reason)]
            else:
                events, gaps = _read_device_log(data, relpath, device_id, entry.get("kind"), self.warnings)
                if entry.get("kind") not in REPARSED_KINDS:
                    self.warnings.append(
                        f"{relpath}: device kind {short(entry.get('kind'))} has no parser here: "
                        "its parsed values are used as recorded (raw not re-parsed)"
                    )
                if changed is not None:
                    self.warnings.append(f"{changed}: none of its lines is trusted")
                    gaps.append(EvidenceGap(-math.inf, math.inf, changed))
            self._events[device_id], self._gaps[device_id] = events, gaps
        return list(self._events[device_id])

    def device_gaps(self, device_id: str) -> list[EvidenceGap]:
        """The stretches of ``device_id``'s log that cannot be trusted (reads the log if not read yet)."""
        self.device_events(device_id)
        return list(self._gaps[device_id])

    def reference_image(self, relpath: str) -> np.ndarray:
        """The reference photo ``relpath`` of a marker-free register layout (BGR uint8), read like
        every input (inside the session, size cap, hashed, checked against hashes.json).

        SessionError naming the file when it cannot be read, was changed, or is not an image.
        """
        import cv2

        where = f"register.reference.image {short(relpath)}"
        if relpath.startswith("/") or ".." in relpath.split("/"):
            raise SessionError([f"{where}: expected a path inside the session folder"], self.path)
        try:
            data, changed = self._files.read(relpath, MAX_IMAGE_BYTES)
        except UnsafeFile as exc:
            raise SessionError([f"{where}: {exc}"], self.path) from None
        except OSError as exc:
            raise SessionError([f"{where}: cannot be read ({exc.strerror or exc})"], self.path) from None
        if changed is not None:
            raise SessionError([f"register.reference.image: {changed}; the register is not read against it"], self.path)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None:
            raise SessionError([f"{where}: not a readable PNG or JPEG image"], self.path)
        return image

    def file_hashes(self) -> dict[str, str]:
        """SHA-256 (hex) of every input file read so far, from the very bytes read, keyed by relative
        path with '/' (sorted): session.json, then each frame-time CSV, video, image frame and
        device log when it was read. truth.json is not an input (only simulations have it, for
        comparison) and is not listed, nor is hashes.json (the recorder's own hashes of the files).
        """
        return dict(sorted(self._files.hashes.items()))

    def close(self) -> None:
        """Release open video decoders."""
        for camera in self._cameras.values():
            camera.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _checked_trace_bytes(files: _InputFiles, entry: dict[str, Any], where: str) -> bytes:
    """The bytes of a recorded trace, their SHA-256 equal to the entry's ``sha256`` and to hashes.json;
    else SessionError, one line naming the file (a changed or truncated trace is never analysed)."""
    relpath = entry["trace"]
    try:
        data, changed = files.read(relpath, MAX_TRACE_BYTES)
    except UnsafeFile as exc:
        raise SessionError([f"{relpath}: {exc} (trace of {where})"], files.folder) from None
    except OSError as exc:
        raise SessionError(
            [f"{relpath}: cannot be read ({exc.strerror or exc}) (trace of {where})"], files.folder
        ) from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise SessionError(
            [
                f"{relpath}: changed or truncated since it was recorded ({len(data)} bytes, SHA-256 differs "
                f"from session.json's for {where}); the session is not verified"
            ],
            files.folder,
        )
    if changed is not None:
        raise SessionError([f"{changed}; the session is not verified"], files.folder)
    return data


def _recorded_hashes(folder: Path, warnings: list[str]) -> dict[str, str] | None:
    """hashes.json's ``files`` (relative path -> hex SHA-256), or None (absent or unusable: a warning)."""
    if not os.path.lexists(folder / HASHES_FILE):
        return None  # an older recording, or one that did not close: the hash chain is all there is
    data, problems = read_json_bytes(folder / HASHES_FILE, HASHES_FILE, MAX_HASHES_BYTES)
    recorded, problems = (None, problems) if problems else parse_json(data, HASHES_FILE)
    files = recorded.get("files") if isinstance(recorded, dict) else None
    if not problems and (
        recorded.get("format") != HASHES_FORMAT
        or not isinstance(files, dict)
        or not all(isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) for v in files.values())
    ):
        problems = [f'{HASHES_FILE}: expected {{"format": {HASHES_FORMAT!r}, "files": {{path: sha256 hex}}}}']
    if problems:
        warnings.extend(f"{problem}; the files are not checked against it" for problem in problems)
        return None
    return files


def load_session(path: str | Path) -> Session:
    """Open and validate the session folder ``path`` (or its session.json).

    Raises SessionError with one line per problem in session.json. An
    invalid truth.json does not block verifying the session (truth is only
    for comparison): its problems become warnings and ``Session.truth`` is
    None. With a hashes.json, every file that differs from it is a warning,
    and a changed session.json sets ``Session.tampered``. Damaged logs and
    frames are found later, as warnings.
    """
    folder = Path(path)
    if folder.name == "session.json" and not folder.is_dir():
        folder = folder.parent
    if not folder.is_dir():
        raise SessionError([f"{folder}: not a session folder (no such directory)"], folder)
    warnings: list[str] = []
    files = _InputFiles(folder, _recorded_hashes(folder, warnings))
    try:
        data, changed = files.read("session.json", MAX_MANIFEST_BYTES)
    except UnsafeFile as exc:
        raise SessionError([f"session.json: {exc}"], folder) from None
    except OSError as exc:
        raise SessionError([f"session.json: cannot be read: {exc.strerror or exc}"], folder) from None
    manifest, problems = parse_json(data, "session.json")
    if problems:
        raise SessionError(problems, folder)
    problems = schema_problems("session.json", manifest, "session-v1.json")
    if isinstance(manifest, dict):
        problems += _cross_problems(manifest, folder)
    if problems:
        raise SessionError(problems, folder)
    if files.recorded is not None:
        warnings.extend(hash_mismatches(folder, files.recorded))
    for where, entry in _trace_entries(manifest):  # a helmet bench's verdicts rest on its traces: check them all now
        _checked_trace_bytes(files, entry, f"{where} {short(entry['name'])}")
    truth = None
    has_truth_file = os.path.lexists(folder / TRUTH_FILE)
    if has_truth_file:
        truth_bytes, truth_problems = read_json_bytes(folder / TRUTH_FILE, TRUTH_FILE)
        if not truth_problems:
            truth, truth_problems = parse_json(truth_bytes, TRUTH_FILE)
        if not truth_problems:
            truth_problems = _truth_problems(truth, manifest)
        if truth_problems:
            truth = None
            warnings += [f"{problem} (truth.json not used)" for problem in truth_problems]
    tampered = [f"{changed}: no verdict is given"] if changed is not None else []
    return Session(folder, manifest, truth, warnings, has_truth_file=has_truth_file, files=files, tampered=tampered)
