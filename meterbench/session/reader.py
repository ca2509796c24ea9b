"""Read and validate a recorded session folder (format version 1).

``load_session(path)`` checks session.json against the JSON Schema
``schemas/session-v1.json`` plus cross-file rules, and raises
:class:`SessionError` listing one line per problem (file, field, what was
expected). Damage that a crash can leave (a truncated last log line, a frame
cut short, a video shorter than its frame-time CSV) is not an error: the
damaged item is skipped, a ``file:line`` warning goes to ``Session.warnings``,
and everything before it stays readable. Format: docs/session-format.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from meterbench.errors import SessionError
from meterbench.session.format import load_json, schema_problems, short
from meterbench.session.integrity import hash_files

__all__ = ["load_session", "Session", "DeviceEvent", "CameraSource"]

_FRAME_TIMES_HEADER = "frame_index,t_s"
TRUTH_FILE = "truth.json"  # simulated sessions only: what really happened (never an input of a verdict)
_MAX_FORWARD_DECODE = 48  # frames: beyond this a video reader seeks instead of decoding on


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
    camera_ids = {c.get("id") for _, c in cameras}
    device_ids = {d.get("id") for _, d in devices}
    for key, i, unit in units:
        camera = unit.get("camera")
        if isinstance(camera, str) and camera not in camera_ids:
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
    problems += _file_problems(folder, cameras, devices)
    return problems


def _bench_kind_problems(
    manifest: dict[str, Any], units: list[tuple[str, int, dict]], points: list[tuple[int, dict]]
) -> list[str]:
    """A water-meter bench tests water meters only, a tank bench tanks only."""
    bench_kind = manifest.get("bench_kind")
    if bench_kind not in ("water-meter", "tank"):
        return []  # reported by the schema
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


def _file_problems(folder: Path, cameras: list[tuple[int, dict]], devices: list[tuple[int, dict]]) -> list[str]:
    """Every file or folder the manifest names must exist inside the session folder."""
    wanted: list[tuple[str, Any, bool]] = []  # (field path, relpath, is_dir)
    for i, camera in cameras:
        wanted += [
            (f"cameras[{i}].video", camera.get("video"), False),
            (f"cameras[{i}].images", camera.get("images"), True),
            (f"cameras[{i}].frame_times", camera.get("frame_times"), False),
        ]
    wanted += [(f"devices[{i}].log", device.get("log"), False) for i, device in devices]
    problems = []
    for where, relpath, is_dir in wanted:
        if not isinstance(relpath, str) or relpath.startswith("/") or ".." in relpath.split("/"):
            continue  # absent, or reported by the schema
        target = folder / relpath
        exists = target.is_dir() if is_dir else target.is_file()
        if not exists:
            what = "folder" if is_dir else "file"
            problems.append(f"session.json: {where}: {what} {short(relpath)} not found in the session folder")
    return problems


def _truth_problems(truth: Any, manifest: dict[str, Any]) -> list[str]:
    problems = schema_problems("truth.json", truth, "truth-v1.json")
    if problems:
        return problems
    known = {u.get("id") for key in ("instruments", "tanks") for _, u in _items(manifest, key)}
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
    if not isinstance(t_s, int | float) or isinstance(t_s, bool) or not math.isfinite(t_s):
        return f"t_s: expected a finite number of seconds, got {short(t_s, 30)}"
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


def _read_device_log(path: Path, label: str, warnings: list[str]) -> list[DeviceEvent]:
    """Every well-formed event line of a JSONL log, in file order; bad lines become warnings."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    ends_clean = data.endswith(b"\n") or not data
    if ends_clean:
        lines.pop()  # the empty piece after the last newline
    events = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last_unterminated = number == len(lines) and not ends_clean
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            why = "truncated last line (cut by a crash?)" if is_last_unterminated else "not valid JSON"
            warnings.append(f"{label}:{number}: skipped: {why}")
            continue
        event = _event_from_line(obj)
        if isinstance(event, str):
            warnings.append(f"{label}:{number}: skipped: {event}")
            continue
        events.append(event)
    return events


# ---------------------------------------------------------------- cameras


def _read_frame_times(path: Path, label: str, warnings: list[str]) -> np.ndarray:
    """Capture times (s) of frames 0, 1, ... from ``frame_index,t_s`` rows.

    Reading stops at the first bad row (warning): indices must count up from 0
    and times increase strictly, so only the common good prefix is trusted. A
    last row without its newline is cut short by a crash and never used.
    """
    text = path.read_bytes().decode("utf-8", errors="replace")
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


class CameraSource:
    """Frames of one recorded camera, video or image folder, with their capture times (s).

    ``frame_times`` and ``frame_count`` cover only frames that have both a
    good CSV row and media; ``read`` gives None (plus a warning) for a frame
    that cannot be decoded. ``problems`` lists what was wrong with the CSV or
    the media when the camera was opened (also in the session's warnings), so a
    pipeline can say why a camera has no frames.
    """

    def __init__(self, folder: Path, entry: dict[str, Any], warnings: list[str]) -> None:
        self.camera_id: str = entry["id"]
        self.entry = entry
        self.fps = float(entry["fps"])
        self.size_wh = (int(entry["width"]), int(entry["height"]))
        self._folder = folder
        self._warnings = warnings
        self._warned: set[str] = set()
        csv_rel = entry["frame_times"]
        self.problems: list[str] = []
        times = _read_frame_times(folder / csv_rel, csv_rel, self.problems)
        self._capture: Any = None
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

    def _open_video(self, times: np.ndarray) -> np.ndarray:
        import cv2

        capture = cv2.VideoCapture(str(self._folder / self.media))
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
            data = (self._folder / relpath).read_bytes()
        except OSError as exc:
            self._warn_once(f"{relpath}: cannot be read ({exc.strerror or exc}); frame not used")
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


# ---------------------------------------------------------------- session


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
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.truth = truth  # None when absent or invalid (then a warning says why)
        self.warnings = warnings
        self._has_truth_file = truth is not None if has_truth_file is None else has_truth_file
        self._cameras: dict[str, CameraSource] = {}
        self._events: dict[str, list[DeviceEvent]] = {}

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
        """ "water-meter" or "tank"."""
        return self.manifest["bench_kind"]

    @property
    def instruments(self) -> list[dict[str, Any]]:
        """Entries of session.json ``instruments`` (water meters; tanks may also appear)."""
        return self.manifest["instruments"]

    @property
    def tanks(self) -> list[dict[str, Any]]:
        """Entries of session.json ``tanks`` ([] when absent)."""
        return self.manifest.get("tanks", [])

    @property
    def reference_instruments(self) -> list[dict[str, Any]]:
        return self.manifest.get("reference_instruments", [])

    @property
    def test_plan_points(self) -> list[dict[str, Any]]:
        return self.manifest["test_plan"]["points"]

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
        """The frames of ``camera_id`` (opened once, then cached)."""
        if camera_id not in self._cameras:
            entry = self._entry("cameras", camera_id)
            self._cameras[camera_id] = CameraSource(self.path, entry, self.warnings)
        return self._cameras[camera_id]

    def device_events(self, device_id: str) -> list[DeviceEvent]:
        """Every readable event of ``device_id`` in file order (bad lines skipped, warned)."""
        if device_id not in self._events:
            relpath = self._entry("devices", device_id)["log"]
            self._events[device_id] = _read_device_log(self.path / relpath, relpath, self.warnings)
        return list(self._events[device_id])

    def file_hashes(self) -> dict[str, str]:
        """SHA-256 (hex) of every input file of the session folder, keyed by relative path with '/'.

        truth.json is not an input (only simulations have it, for comparison) and is not listed,
        nor is hashes.json (the recorder's own hashes of the files, session/integrity.py).
        """
        return {path: digest for path, digest in hash_files(self.path).items() if path != TRUTH_FILE}

    def close(self) -> None:
        """Release open video decoders."""
        for camera in self._cameras.values():
            camera.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_session(path: str | Path) -> Session:
    """Open and validate the session folder ``path`` (or its session.json).

    Raises SessionError with one line per problem in session.json. An
    invalid truth.json does not block verifying the session (truth is only
    for comparison): its problems become warnings and ``Session.truth`` is
    None. Damaged logs and frames are found later, as warnings.
    """
    folder = Path(path)
    if folder.name == "session.json" and folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise SessionError([f"{folder}: not a session folder (no such directory)"], folder)
    manifest, problems = load_json(folder / "session.json", "session.json")
    if problems:
        raise SessionError(problems, folder)
    problems = schema_problems("session.json", manifest, "session-v1.json")
    if isinstance(manifest, dict):
        problems += _cross_problems(manifest, folder)
    if problems:
        raise SessionError(problems, folder)
    truth, warnings = None, []
    has_truth_file = (folder / TRUTH_FILE).exists()
    if has_truth_file:
        truth, truth_problems = load_json(folder / TRUTH_FILE, TRUTH_FILE)
        if not truth_problems:
            truth_problems = _truth_problems(truth, manifest)
        if truth_problems:
            truth = None
            warnings = [f"{problem} (truth.json not used)" for problem in truth_problems]
    return Session(folder, manifest, truth, warnings, has_truth_file=has_truth_file)
