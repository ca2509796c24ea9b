"""Record a bench session folder (format version 1), crash-safe while it is written.

The layout is specified in docs/session-format.md:

```
SESSION/session.json                 manifest, rewritten atomically (tmp + fsync + os.replace)
SESSION/cameras/<id>.mp4             kind="video": compact, finalised only by close()
SESSION/cameras/<id>/000000.jpg      kind="images": one file per frame, each renamed into place
SESSION/cameras/<id>.csv             frame_index,t_s  (one flushed row per frame)
SESSION/devices/<id>.jsonl           one flushed JSON line per device event
SESSION/traces/<name>.csv            helmet-impact bench: one drop's trace, written whole and hashed
SESSION/truth.json                   simulated sessions only
```

Every append is flushed to the operating system at once, so a kill -9 of the
recording process loses at most the line or frame being written; ``os.fsync``
(protection against power loss) runs at most every ``fsync_interval_s`` and on
close. Times ``t_s`` are seconds on the session clock (since
``start_time_utc``); the recorder does not invent them, except through
:meth:`SessionRecorder.now_s` for live benches.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from meterbench.errors import SessionError
from meterbench.session.format import FORMAT_NAME, FORMAT_VERSION, schema_problems
from meterbench.session.integrity import CHAIN_FIELD, HASHES_FILE, HASHES_FORMAT, chain_seed, hash_files, line_digest

__all__ = [
    "CameraWriter",
    "DeviceLog",
    "SessionRecorder",
    "write_json_atomic",
    "write_text_atomic",
    "write_texts_atomic",
]

_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DEFAULT_FSYNC_INTERVAL_S = 0.2


def _check_id(what: str, value: str) -> str:
    """Return ``value`` if it is a file-name-safe id, else raise ValueError naming ``what``."""
    if not isinstance(value, str) or not _ID_PATTERN.match(value):
        raise ValueError(
            f"{what}: expected an id of letters, digits, '.', '_', '-' "
            f"(not starting with '.', '_' or '-'), got {value!r}"
        )
    return value


def _json_default(value: Any) -> Any:
    """Turn NumPy scalars and arrays into plain JSON values; refuse anything else."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__} {value!r}")


def _fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or new file in it survives power loss."""
    with contextlib.suppress(OSError):  # some file systems do not allow it; best effort
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_texts_atomic(files: dict[Path, str]) -> None:
    """Write several text files as a unit: each to an unpredictable temporary name beside it
    (created exclusively, so a planted file or symlink is never written through), fsynced,
    then all renamed into place and the folders fsynced.

    A failure while writing (disk full, an error) leaves none of them and removes the
    temporary files; a reader or a crash sees each file either old or new, never partial.
    """
    pending: list[tuple[Path, Path]] = []
    try:
        for path, text in files.items():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            pending.append((Path(tmp), path))
            with open(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, path in pending:
        os.replace(tmp, path)
    for folder in {path.parent for path in files}:
        _fsync_dir(folder)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`write_texts_atomic`)."""
    write_texts_atomic({path: text})


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (see `write_text_atomic`); NaN/inf refused."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=_json_default, allow_nan=False)
    write_text_atomic(path, text + "\n")


class _SyncedAppendFile:
    """A text file opened for appending: every write goes to the OS at once, fsync at most every interval.

    Unbuffered (one ``os.write`` loop per write), so no hidden buffer can reach the disk later. A
    write that fails (disk full, I/O error) is undone: the file is truncated back to the end of the
    last complete write, the error is remembered in ``failure`` and raised. The file stays usable:
    once space is freed, later writes append after the last good one, so the file never holds a
    partial record in the middle. Not thread-safe on its own: callers hold their own lock.
    """

    def __init__(self, path: Path, fsync_interval_s: float) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size  # bytes of complete writes so far
        self._fsync_interval_s = fsync_interval_s
        self._last_fsync = time.monotonic()
        self._dirty = False
        self.failure: OSError | None = None
        self.failures = 0

    def write(self, text: str) -> None:
        if self._fd is None:
            raise ValueError(f"{self.path.name}: file is closed")
        data = memoryview(text.encode("utf-8"))
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            with contextlib.suppress(OSError):  # a truncation frees space: it works on a full disk
                os.ftruncate(self._fd, self._size)
            self.failure, self.failures = self.failure or exc, self.failures + 1
            raise
        self._size += len(data)
        self._dirty = True
        now = time.monotonic()
        if now - self._last_fsync >= self._fsync_interval_s:
            self.sync(now)

    def sync(self, now: float | None = None) -> None:
        if self._dirty and self._fd is not None:
            with contextlib.suppress(OSError):  # best effort: the data is already with the OS
                os.fsync(self._fd)
            self._dirty = False
        self._last_fsync = time.monotonic() if now is None else now

    def close(self) -> None:
        if self._fd is not None:
            self.sync()
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None


class DeviceLog:
    """Append-only JSON Lines log of one device's raw events: ``devices/<device_id>.jsonl``.

    Thread-safe: MQTT callbacks and serial reader threads may append at once;
    ``seq`` numbers (from 0) follow the order of the lines in the file. Each line carries the
    hash of the one before it (``prev``, session/integrity.py).
    """

    def __init__(self, path: Path, device_id: str, fsync_interval_s: float) -> None:
        self.path = path
        self.device_id = device_id
        self._file = _SyncedAppendFile(path, fsync_interval_s)
        self._lock = threading.Lock()
        self._next_seq = 0
        self._previous_digest = chain_seed(device_id)

    @property
    def count(self) -> int:
        """Number of events appended so far (each one acknowledged: its line is with the OS)."""
        return self._next_seq

    @property
    def failure(self) -> OSError | None:
        """The first write that failed (disk full...); that event was not recorded and raised OSError."""
        return self._file.failure

    def append(
        self,
        t_s: float,
        raw: str | bytes,
        parsed: dict | None = None,
        error: str | None = None,
        topic: str | None = None,
    ) -> int:
        """Append one event received at ``t_s`` (s, session clock); return its ``seq``.

        ``raw`` is the line or payload as received: text is stored as ``"raw"``,
        bytes as ``"raw"`` when they are valid UTF-8, else base64 in ``"raw_b64"``.
        ``parsed`` is what the device layer made of it, ``error`` why it made nothing.
        An OSError (disk full) means the event was not recorded: the file is left as it was
        before the call and later appends can go on once there is space again.
        """
        t_s = float(t_s)
        if not math.isfinite(t_s):
            raise ValueError(f"devices/{self.device_id}.jsonl: t_s: expected a finite number of seconds, got {t_s!r}")
        raw_field = _raw_field(raw, self.device_id)
        if parsed is not None and not isinstance(parsed, dict):
            raise ValueError(
                f"devices/{self.device_id}.jsonl: parsed: expected a dict or None, got {type(parsed).__name__}"
            )
        if error is not None and not isinstance(error, str):
            raise ValueError(
                f"devices/{self.device_id}.jsonl: error: expected a str or None, got {type(error).__name__}"
            )
        with self._lock:
            if self._file.closed:
                raise ValueError(f"devices/{self.device_id}.jsonl: log is closed")
            seq = self._next_seq
            event: dict[str, Any] = {"seq": seq, "t_s": t_s, **raw_field, "parsed": parsed, "error": error}
            if topic is not None:
                event["topic"] = str(topic)
            event[CHAIN_FIELD] = self._previous_digest
            line = _event_line(event, self.device_id)
            self._file.write(line + "\n")
            self._previous_digest = line_digest(line.encode("utf-8"))
            self._next_seq = seq + 1
        return seq

    def sync(self) -> None:
        """fsync now (e.g. at a test-point boundary)."""
        with self._lock:
            self._file.sync()

    def close(self) -> None:
        """fsync and close; later appends raise ValueError."""
        with self._lock:
            self._file.close()


def _event_line(event: dict[str, Any], device_id: str) -> str:
    """One JSON line the reader accepts (device-event-v1.json): a ``parsed`` value that cannot be
    written as strict JSON (NaN, an object of the wrong type) is dropped with the reason in
    ``error``, so the raw bytes are always kept."""
    try:
        line = json.dumps(event, separators=(",", ":"), default=_json_default, allow_nan=False)
        problems = schema_problems(f"devices/{device_id}.jsonl", json.loads(line), "device-event-v1.json")
    except (TypeError, ValueError) as exc:
        problems = [str(exc)]
    if not problems:
        return line
    why = "; ".join(problems)[:200]
    event = {**event, "parsed": None, "error": f"recorder: parsed value not recordable ({why}); was: {event['error']}"}
    return json.dumps(event, separators=(",", ":"), default=_json_default, allow_nan=False)


def _raw_field(raw: str | bytes, device_id: str) -> dict[str, str]:
    """``{"raw": text}`` or ``{"raw_b64": base64}`` for a received line or payload."""
    if isinstance(raw, str):
        return {"raw": raw}
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        try:
            return {"raw": data.decode("utf-8")}
        except UnicodeDecodeError:
            return {"raw_b64": base64.b64encode(data).decode("ascii")}
    raise ValueError(f"devices/{device_id}.jsonl: raw: expected str or bytes, got {type(raw).__name__}")


class CameraWriter:
    """Write one camera's frames into the session, with their capture times.

    ``kind="video"``: ``cameras/<id>.mp4`` (fourcc mp4v), compact; readable only
    after :meth:`close` (an mp4 cut by a crash is lost), so use it for sessions
    written in one go (the simulator). ``kind="images"``: one file per frame,
    ``cameras/<id>/NNNNNN.<image_format>``, each written to a tmp file and
    renamed into place before its CSV row is written: crash-safe, for live benches.
    Both append ``frame_index,t_s`` to ``cameras/<id>.csv``.
    """

    def __init__(
        self,
        session_dir: Path,
        camera_id: str,
        fps: float,
        size_wh: tuple[int, int],
        *,
        kind: Literal["video", "images"],
        image_format: str,
        quality: int,
        fsync_interval_s: float,
    ) -> None:
        self.camera_id = camera_id
        self.kind = kind
        self.fps = float(fps)
        self.size_wh = (int(size_wh[0]), int(size_wh[1]))
        self.image_format = image_format
        self.frame_count = 0
        self.failure: OSError | None = None  # the first frame that could not be stored (disk full...)
        self._last_t_s = -math.inf
        self._lock = threading.Lock()
        self._fsync_interval_s = fsync_interval_s
        cameras = session_dir / "cameras"
        self.csv_path = cameras / f"{camera_id}.csv"
        self._csv = _SyncedAppendFile(self.csv_path, fsync_interval_s)
        self._csv.write("frame_index,t_s\n")
        self._video: Any = None
        if kind == "video":
            import cv2

            self.media_relpath = f"cameras/{camera_id}.mp4"
            self._video = cv2.VideoWriter(
                str(session_dir / self.media_relpath), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self.size_wh, True
            )
            if not self._video.isOpened():
                raise OSError(f"{self.media_relpath}: OpenCV could not open an mp4v video writer")
        else:
            self.media_relpath = f"cameras/{camera_id}"
            self._image_dir = session_dir / self.media_relpath
            self._image_dir.mkdir()
            self._encode_params = _encode_params(image_format, quality)
            self._last_dir_sync = time.monotonic()

    def manifest_entry(self) -> dict[str, Any]:
        """The ``cameras[]`` entry of session.json describing this camera."""
        entry: dict[str, Any] = {
            "id": self.camera_id,
            "video" if self.kind == "video" else "images": self.media_relpath,
            "frame_times": f"cameras/{self.camera_id}.csv",
            "fps": self.fps,
            "width": self.size_wh[0],
            "height": self.size_wh[1],
        }
        if self.kind == "images":
            entry["image_format"] = self.image_format
        return entry

    def write(self, frame: np.ndarray, t_s: float) -> int:
        """Write one frame (H×W×3 BGR or H×W grey uint8) captured at ``t_s`` (s); return its index.

        Times must be strictly increasing; the frame size must be ``size_wh``.
        """
        import cv2

        t_s = float(t_s)
        frame = self._checked_frame(frame)
        with self._lock:
            if self._csv.closed:
                raise ValueError(f"cameras/{self.camera_id}: writer is closed")
            if not (math.isfinite(t_s) and t_s > self._last_t_s):
                raise ValueError(
                    f"cameras/{self.camera_id}.csv: t_s: expected a finite time "
                    f"> previous frame's {self._last_t_s!r} s, got {t_s!r}"
                )
            index = self.frame_count
            try:
                if self._video is not None:
                    bgr = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                    self._video.write(bgr)
                else:
                    self._write_image(frame, index)
                self._csv.write(f"{index},{t_s!r}\n")
            except OSError as exc:  # not stored: no CSV row, the next frame takes this index
                self.failure = self.failure or exc
                raise
            self.frame_count = index + 1
            self._last_t_s = t_s
        return index

    def _checked_frame(self, frame: np.ndarray) -> np.ndarray:
        width, height = self.size_wh
        ok = (
            isinstance(frame, np.ndarray)
            and frame.dtype == np.uint8
            and (frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3))
            and frame.shape[:2] == (height, width)
        )
        if not ok:
            raise ValueError(
                f"cameras/{self.camera_id}: frame: expected uint8 of shape "
                f"({height}, {width}[, 3]), got {getattr(frame, 'dtype', '?')} "
                f"{getattr(frame, 'shape', '?')}"
            )
        return np.ascontiguousarray(frame)

    def _write_image(self, frame: np.ndarray, index: int) -> None:
        import cv2

        ok, encoded = cv2.imencode(f".{self.image_format}", frame, self._encode_params)
        if not ok:
            raise OSError(f"cameras/{self.camera_id}: could not encode frame {index} as {self.image_format}")
        final = self._image_dir / f"{index:06d}.{self.image_format}"
        tmp = final.with_name(final.name + ".tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(encoded.tobytes())
        except OSError:
            tmp.unlink(missing_ok=True)  # a partial frame file would only take space
            raise
        os.replace(tmp, final)
        now = time.monotonic()
        if now - self._last_dir_sync >= self._fsync_interval_s:
            _fsync_dir(self._image_dir)
            self._last_dir_sync = now

    def sync(self) -> None:
        """fsync the frame-time CSV and the image folder now."""
        with self._lock:
            if not self._csv.closed:
                self._csv.sync()
                if self.kind == "images":
                    _fsync_dir(self._image_dir)

    def close(self) -> None:
        """Finalise the video (if any), fsync the CSV and the image folder."""
        with self._lock:
            if self._video is not None:
                self._video.release()
                self._video = None
            elif self.kind == "images" and not self._csv.closed:
                _fsync_dir(self._image_dir)
            self._csv.close()


def _encode_params(image_format: str, quality: int) -> list[int]:
    import cv2

    if image_format == "jpg":
        if not 1 <= int(quality) <= 100:
            raise ValueError(f"quality: expected 1..100 for jpg, got {quality!r}")
        return [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    if image_format == "png":
        return [cv2.IMWRITE_PNG_COMPRESSION, 1]
    raise ValueError(f"image_format: expected 'jpg' or 'png', got {image_format!r}")


def reference_image_path(camera_id: str) -> str:
    """Where a session keeps the reference photo of a camera's marker-free register layout."""
    return f"cameras/{camera_id}-reference.png"


def _encode_png(image: np.ndarray, camera_id: str) -> bytes:
    import cv2

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(
            f"reference_images[{camera_id!r}]: expected an H×W[×3] uint8 image, got {type(image).__name__}"
        )
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"reference_images[{camera_id!r}]: cannot be encoded as PNG")
    return data.tobytes()


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` via a synced temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class SessionRecorder:
    """Writer of one session folder; create it with :meth:`SessionRecorder.create`.

    Use as a context manager: leaving it closes every log and camera; leaving
    it on an exception also records ``stopped_reason`` in session.json.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], fsync_interval_s: float) -> None:
        self.path = path
        self._manifest = manifest
        self._fsync_interval_s = fsync_interval_s
        self._lock = threading.RLock()
        self._device_logs: dict[str, DeviceLog] = {}
        self._camera_writers: dict[str, CameraWriter] = {}
        # entries given to create(): listed in session.json only once their files exist
        self._pending = {key: {e["id"]: e for e in manifest.pop(key, [])} for key in ("cameras", "devices")}
        manifest["cameras"], manifest["devices"] = [], []
        self._closed = False
        self._t0_monotonic = time.monotonic()

    @classmethod
    def create(
        cls,
        out_dir: str | os.PathLike[str],
        manifest: dict[str, Any],
        *,
        fsync_interval_s: float = _DEFAULT_FSYNC_INTERVAL_S,
        reference_images: dict[str, np.ndarray] | None = None,
    ) -> SessionRecorder:
        """Create the session folder ``out_dir`` and write ``manifest`` as session.json.

        Refuses an existing non-empty folder. Fills ``format``, ``format_version``
        and (if absent) ``start_time_utc`` = now. Entries of ``cameras`` and
        ``devices`` given here are templates: each appears in session.json
        only when its writer is opened, so session.json never names a file
        that does not exist yet.
        ``reference_images`` (camera id -> BGR image): the reference photos of
        marker-free register layouts, written as ``cameras/<camera_id>-reference.png``
        before session.json (whose layouts name them) so the session stays self-contained.
        ``fsync_interval_s`` bounds what a power loss may cost (a kill -9 costs
        at most the line being written, whatever it is).
        """
        path = Path(out_dir)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise FileExistsError(f"{path}: session folder exists and is not empty; choose a new folder")
        if not isinstance(manifest, dict):
            raise ValueError(f"manifest: expected a dict, got {type(manifest).__name__}")
        manifest = json.loads(json.dumps(manifest, default=_json_default))  # own, plain copy
        for key, expected in (("format", FORMAT_NAME), ("format_version", FORMAT_VERSION)):
            if manifest.setdefault(key, expected) != expected:
                raise ValueError(f"manifest: {key}: expected {expected!r}, got {manifest[key]!r}")
        manifest.setdefault(
            "start_time_utc", datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        )
        for key in ("cameras", "devices"):
            entries = manifest.get(key, [])
            if not (isinstance(entries, list) and all(isinstance(e, dict) and "id" in e for e in entries)):
                raise ValueError(f"manifest: {key}: expected a list of objects with an 'id', got {entries!r}")
        if fsync_interval_s < 0:
            raise ValueError(f"fsync_interval_s: expected >= 0 s, got {fsync_interval_s!r}")
        problems = schema_problems("session.json", {**manifest, "cameras": [], "devices": []}, "session-v1.json")
        if problems:  # checked before anything is created
            raise SessionError(problems, path)
        encoded = {
            _check_id("reference_images", camera_id): _encode_png(image, camera_id)
            for camera_id, image in (reference_images or {}).items()
        }
        (path / "cameras").mkdir(parents=True, exist_ok=True)
        (path / "devices").mkdir(exist_ok=True)
        for camera_id, data in encoded.items():
            _write_bytes_atomic(path / reference_image_path(camera_id), data)
        recorder = cls(path, manifest, fsync_interval_s)
        recorder._write_manifest()
        _fsync_dir(path)
        return recorder

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the manifest as last written."""
        with self._lock:
            return json.loads(json.dumps(self._manifest))

    def now_s(self) -> float:
        """Seconds since this recorder was created (monotonic): a session clock for live benches."""
        return time.monotonic() - self._t0_monotonic

    def update_manifest(self, changes: dict[str, Any]) -> None:
        """Merge ``changes`` into session.json (top-level keys) and rewrite it atomically.

        ``format``, ``format_version``, ``cameras`` and ``devices`` are kept by
        the recorder itself and cannot be changed here.
        """
        managed = sorted(set(changes) & {"format", "format_version", "cameras", "devices"})
        if managed:
            raise ValueError(
                f"update_manifest: {', '.join(managed)}: kept by the recorder "
                "(open a camera_writer / device_log instead)"
            )
        with self._lock:
            plain = json.loads(json.dumps(changes, default=_json_default))
            self._write_manifest({**self._manifest, **plain})

    def _write_manifest(self, manifest: dict[str, Any] | None = None) -> None:
        """Check ``manifest`` (default: the current one) against session-v1.json, then write it.

        The recorder never writes a session.json that the reader would refuse: a manifest that
        fails the schema raises SessionError and the file on disk stays as it was.
        """
        manifest = self._manifest if manifest is None else manifest
        problems = schema_problems("session.json", manifest, "session-v1.json")
        if problems:
            raise SessionError(problems, self.path)
        write_json_atomic(self.path / "session.json", manifest)
        self._manifest = manifest
        if self._closed:  # changed after close (e.g. the stop reason): the hashes follow
            self._write_hashes()

    def _publish(self, key: str, entry: dict[str, Any]) -> None:
        """Add ``entry`` (merged over its create() template, if any) to manifest list ``key``."""
        template = self._pending[key].pop(entry["id"], {})
        if key == "cameras":  # a camera has either video or images, never both
            template = {k: v for k, v in template.items() if k not in ("video", "images")}
        self._write_manifest({**self._manifest, key: [*self._manifest[key], template | entry]})

    def device_log(self, device_id: str, kind: str | None = None) -> DeviceLog:
        """The log of ``device_id`` (created on first call, then listed in session.json ``devices``).

        ``kind`` (e.g. "serial-totaliser", "mqtt") is required unless the
        manifest given to create() lists the device with one.
        """
        _check_id("device_id", device_id)
        with self._lock:
            self._check_open()
            if device_id in self._device_logs:
                return self._device_logs[device_id]
            kind = kind or self._pending["devices"].get(device_id, {}).get("kind")
            if not kind:
                raise ValueError(
                    f"device_log({device_id!r}): kind: expected a device kind "
                    "(e.g. 'serial-totaliser', 'mqtt'); the manifest given to create() has none"
                )
            relpath = f"devices/{device_id}.jsonl"
            log = DeviceLog(self.path / relpath, device_id, self._fsync_interval_s)
            self._device_logs[device_id] = log
            self._publish("devices", {"id": device_id, "kind": kind, "log": relpath})
            return log

    def camera_writer(
        self,
        camera_id: str,
        fps: float,
        size_wh: tuple[int, int],
        *,
        kind: Literal["video", "images"] = "video",
        image_format: str = "jpg",
        quality: int = 90,
    ) -> CameraWriter:
        """A writer for ``camera_id`` at ``fps`` (frames/s, nominal) and ``size_wh`` (px).

        Lists the camera in session.json ``cameras`` (merged over the entry
        of the same id given to create(), if any). One writer per camera.
        """
        _check_id("camera_id", camera_id)
        if kind not in ("video", "images"):
            raise ValueError(f"camera_writer: kind: expected 'video' or 'images', got {kind!r}")
        if not (math.isfinite(float(fps)) and fps > 0):
            raise ValueError(f"camera_writer: fps: expected a number > 0, got {fps!r}")
        if len(size_wh) != 2 or min(int(v) for v in size_wh) < 1:
            raise ValueError(f"camera_writer: size_wh: expected (width, height) > 0 px, got {size_wh!r}")
        if kind == "images":
            _encode_params(image_format, quality)  # validate before creating anything
        with self._lock:
            self._check_open()
            if camera_id in self._camera_writers:
                raise ValueError(f"camera_writer: camera {camera_id!r} already has a writer")
            writer = CameraWriter(
                self.path,
                camera_id,
                fps,
                size_wh,
                kind=kind,
                image_format=image_format,
                quality=quality,
                fsync_interval_s=self._fsync_interval_s,
            )
            self._camera_writers[camera_id] = writer
            self._publish("cameras", writer.manifest_entry())
            return writer

    @property
    def write_failure(self) -> str | None:
        """The first write into the session that failed (disk full, I/O error), named by file; None if none.

        A failed write records nothing (the file is left as before it), so the session stays
        readable; a live bench stops on it.
        """
        with self._lock:
            failed = [(f"devices/{i}.jsonl", log.failure) for i, log in self._device_logs.items()]
            failed += [(f"cameras/{i}", w.failure) for i, w in self._camera_writers.items()]
        for where, failure in failed:
            if failure is not None:
                return f"{where}: {failure.strerror or failure}"
        return None

    def acknowledged(self) -> dict[str, int]:
        """Records written so far: events per device log (``devices/<id>``) and frames per camera (``cameras/<id>``)."""
        with self._lock:
            counts = {f"devices/{i}": log.count for i, log in self._device_logs.items()}
            counts.update({f"cameras/{i}": w.frame_count for i, w in self._camera_writers.items()})
        return counts

    def sync(self) -> None:
        """fsync every open device log and camera now (e.g. at a test-point boundary).

        Appends fsync by themselves at most every ``fsync_interval_s``, but only
        when something is appended: a log that goes quiet waits for this call,
        close(), or the kernel's own write-back (typically ≤ 30 s).
        """
        with self._lock:
            for log in self._device_logs.values():
                log.sync()
            for writer in self._camera_writers.values():
                writer.sync()

    def add_trace(
        self,
        key: Literal["impacts", "reference_drops"],
        entry: dict[str, Any],
        accel: np.ndarray | None = None,
        *,
        fs_hz: float,
        units: str = "g",
        data: bytes | None = None,
        suffix: str = ".csv",
    ) -> dict[str, Any]:
        """Record one drop of a helmet-impact bench: write its trace as ``traces/<name><suffix>``
        (``accel`` (N,) or (N, 3) in ``units`` as CSV, or the DAQ file's own ``data`` bytes, e.g.
        a TDMS file), then list ``entry`` with ``trace``, ``fs_hz``, ``units`` and the file's
        ``sha256`` under session.json ``key``. The reader refuses the session if the trace later
        differs from that hash. Returns the entry as listed."""
        from meterbench.session.traces import trace_csv_text

        if key not in ("impacts", "reference_drops"):
            raise ValueError(f"add_trace: key: expected 'impacts' or 'reference_drops', got {key!r}")
        if (accel is None) == (data is None):
            raise ValueError("add_trace: expected exactly one of accel (samples) or data (the DAQ file's bytes)")
        name = _check_id(f"{key}[].name", str(entry.get("name")))
        relpath = f"traces/{name}{suffix}"
        if data is None:
            data = trace_csv_text(relpath, accel, fs_hz, units).encode("utf-8")
        with self._lock:
            self._check_open()
            taken = {e.get("name") for k in ("impacts", "reference_drops") for e in self._manifest.get(k, [])}
            if name in taken:
                raise ValueError(f"add_trace: {name!r}: a drop of this name is recorded already")
            listed = {**entry, "trace": relpath, "fs_hz": float(fs_hz), "units": units}
            listed["sha256"] = hashlib.sha256(data).hexdigest()
            plain = json.loads(json.dumps(listed, default=_json_default))
            manifest = {**self._manifest, key: [*self._manifest.get(key, []), plain]}
            problems = schema_problems("session.json", manifest, "session-v1.json")
            if problems:  # checked before the trace is written
                raise SessionError(problems, self.path)
            (self.path / "traces").mkdir(exist_ok=True)
            _write_bytes_atomic(self.path / relpath, data)
            self._write_manifest(manifest)
            return plain

    def write_truth(self, truth: dict[str, Any]) -> None:
        """Write truth.json (simulated sessions only) atomically."""
        if not isinstance(truth, dict):
            raise ValueError(f"truth: expected a dict, got {type(truth).__name__}")
        problems = schema_problems("truth.json", json.loads(json.dumps(truth, default=_json_default)), "truth-v1.json")
        if problems:
            raise SessionError(problems, self.path)
        write_json_atomic(self.path / "truth.json", truth)
        if self._closed:
            self._write_hashes()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: session recorder is closed")

    def close(self) -> None:
        """Close (fsync) every device log and camera writer. Idempotent.

        Cameras and devices given to create() but never opened are named in
        session.json ``not_recorded`` ({"cameras": [ids], "devices": [ids]}).
        """
        with self._lock:
            if self._closed:
                return
            unopened = {key: sorted(ids) for key, ids in self._pending.items() if ids}
            if unopened:
                self.update_manifest({"not_recorded": unopened})
            for log in self._device_logs.values():
                log.close()
            for writer in self._camera_writers.values():
                writer.close()
            self._closed = True
            _fsync_dir(self.path / "devices")
            _fsync_dir(self.path / "cameras")
            self._write_hashes()

    def _write_hashes(self) -> None:
        """hashes.json: the SHA-256 of every file as closed (tamper evidence, ready to be signed).

        No clock time in it: the same recording gives the same bytes (simulate --seed N twice)."""
        hashes = {
            "format": HASHES_FORMAT,
            "algorithm": "sha256",
            "session_id": self._manifest.get("session_id"),
            "files": hash_files(self.path),
        }
        write_json_atomic(self.path / HASHES_FILE, hashes)

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc_type is not None and "stopped_reason" not in self._manifest:
                self.update_manifest({"stopped_reason": f"{exc_type.__name__}: {exc}"})
        finally:
            self.close()
