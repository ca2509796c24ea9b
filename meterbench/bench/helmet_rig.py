"""A live helmet rig: the DAQ's drop folder recorded into a helmet-impact session (docs/helmets.md).

The DAQ writes each drop's trace into a folder, ``<name>.csv`` (or ``.tdms``), and **then** a
marker ``<name>.done``: a JSON object with the drop's session.json entry (an impact: ``helmet``,
``anvil``, ``velocity_m_s``, optional ``site``, ``conditioning``, ``out_of_chamber_s``,
``time_utc``; a reference drop: ``"kind": "reference_drop"``, ``when`` before/after, optional
``day``, ``velocity_m_s``). The marker is the completeness signal: a trace is never read before
its marker exists (size stability would be a guess: a DAQ may pause mid-file longer than any
window), and it carries what the trace file cannot (which helmet, site, the light gate's velocity).
A marker that does not parse is waited for while younger than MARKER_SETTLE_S (being written), then refused.

Each complete drop is parsed (``parse_trace`` of the very bytes recorded) and recorded by
``SessionRecorder.add_trace`` (atomic, SHA-256 in session.json); its two files are then moved into
``recorded/`` of the drop folder. A bad drop (marker not JSON or not an object, no trace beside it,
an unreadable trace, an entry the schema refuses, a name recorded already) is moved into
``refused/`` with a one-line reason on stderr, and the rig goes on. SIGTERM, SIGINT or the stop
file (default ``<folder>/STOP``) close the session (end time, ``stopped_reason``, hashes.json)
after the drops already complete.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from meterbench.errors import ConfigError, SessionError
from meterbench.session.traces import TraceError, parse_trace
from meterbench.session.writer import SessionRecorder

__all__ = ["MARKER_SUFFIX", "RigConfig", "load_rig_config", "watch_drop_folder"]

MARKER_SUFFIX = ".done"
TRACE_SUFFIXES = (".csv", ".tdms")
STOP_FILE = "STOP"
MARKER_SETTLE_S = 2.0
"""A marker that does not parse is refused only once unchanged this long (s): the DAQ may be writing it."""
_SESSION_KEYS = {
    "session_id",
    "profile",
    "bench_id",
    "technician_id",
    "peak_u_rel_pct",
    "fs_hz",
    "sensitivity_mv_per_g",
}
_HELMET_KEYS = {"id", "model", "size", "lot", "serial"}
_MAX_MARKER_BYTES = 64 * 1024


@dataclass(frozen=True)
class RigConfig:
    """RIG.toml: the session's identity and helmets, and how to read traces without a time column."""

    path: Path
    manifest: dict[str, Any]
    fs_hz: float | None = None
    sensitivity_mv_per_g: float | None = None


def _number(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{path}: session.{key}: expected a positive number, got {value!r}")
    return float(value)


def load_rig_config(path: Path) -> RigConfig:
    """Read RIG.toml (``[session]`` profile required; ``[[helmets]]`` id and model required);
    ConfigError naming the file and key for anything else."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not TOML ({exc})") from None
    unknown = sorted(set(data) - {"session", "helmets"})
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(unknown)} (expected [session], [[helmets]])")
    session = data.get("session")
    if not isinstance(session, dict) or not isinstance(session.get("profile"), str):
        raise ConfigError(f'{path}: session.profile: expected a helmet.json profile name, e.g. "fmvss-218"')
    unknown = sorted(set(session) - _SESSION_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: session: unknown key(s) {', '.join(unknown)} (expected {', '.join(sorted(_SESSION_KEYS))})"
        )
    helmets = data.get("helmets")
    if not isinstance(helmets, list) or not helmets:
        raise ConfigError(f"{path}: helmets: expected at least one [[helmets]] table with id and model")
    for i, helmet in enumerate(helmets):
        missing = [k for k in ("id", "model") if not isinstance(helmet.get(k), str)]
        extra = sorted(set(helmet) - _HELMET_KEYS)
        if missing or extra:
            raise ConfigError(
                f"{path}: helmets[{i}]: "
                + (f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(extra)}")
            )
    fs_hz = _number(path, "fs_hz", session["fs_hz"]) if "fs_hz" in session else None
    sensitivity = (
        _number(path, "sensitivity_mv_per_g", session["sensitivity_mv_per_g"])
        if "sensitivity_mv_per_g" in session
        else None
    )
    now = datetime.now(UTC)
    manifest = {
        "session_id": session.get("session_id", f"helmet-rig-{now:%Y%m%dT%H%M%SZ}"),
        "bench_kind": "helmet-impact",
        "start_time_utc": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "profile": session["profile"],
        "helmets": [dict(h) for h in helmets],
        "impacts": [],
        **{k: session[k] for k in ("bench_id", "technician_id", "peak_u_rel_pct") if k in session},
    }
    return RigConfig(path, manifest, fs_hz, sensitivity)


@dataclass
class _Watch:
    """What the rig did: drops recorded and refused (name -> reason), why it stopped."""

    recorded: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    stopped_reason: str = ""


class _MarkerPending(Exception):
    """A marker that is not JSON yet but may still be being written (younger than MARKER_SETTLE_S)."""


def _marker_entry(marker: Path, settled: bool = False) -> tuple[str, dict[str, Any]]:
    """(session.json key, entry) a marker describes; SessionError (one line) when it is not one.

    A marker that does not parse is taken as still being written while it changed less than
    MARKER_SETTLE_S ago (_MarkerPending), unless ``settled`` (the rig is stopping)."""
    stat = marker.stat()
    raw = marker.read_bytes()[: _MAX_MARKER_BYTES + 1]
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        if not settled and time.time() - stat.st_mtime < MARKER_SETTLE_S:
            raise _MarkerPending from None
        raise SessionError(f"{marker.name}: not JSON ({exc})") from None
    if not isinstance(entry, dict):
        raise SessionError(f"{marker.name}: expected a JSON object (the drop's session.json entry)")
    kind = entry.pop("kind", "impact")
    if kind not in ("impact", "reference_drop"):
        raise SessionError(f"{marker.name}: kind: expected 'impact' or 'reference_drop', got {kind!r}")
    stem = marker.name[: -len(MARKER_SUFFIX)]
    if entry.setdefault("name", stem) != stem:
        raise SessionError(f"{marker.name}: name: {entry['name']!r} is not the file's name {stem!r}")
    taken = sorted({"trace", "fs_hz", "units", "sha256"} & set(entry))
    if taken:
        raise SessionError(f"{marker.name}: {', '.join(taken)}: set by the recorder from the trace, not the marker")
    return ("impacts" if kind == "impact" else "reference_drops"), entry


def _record_drop(recorder: SessionRecorder, config: RigConfig, marker: Path, settled: bool) -> str:
    """Record the drop of one marker; its name. SessionError/TraceError/ValueError say why not."""
    key, entry = _marker_entry(marker, settled)
    traces = [
        marker.with_name(entry["name"] + s) for s in TRACE_SUFFIXES if marker.with_name(entry["name"] + s).is_file()
    ]
    if len(traces) != 1:
        found = "none" if not traces else " and ".join(p.name for p in traces)
        raise SessionError(f"{marker.name}: expected one trace {entry['name']}.csv or .tdms beside it, found {found}")
    helmets = {h["id"] for h in recorder.manifest["helmets"]}
    if key == "impacts" and entry.get("helmet") not in helmets:
        raise SessionError(
            f"{marker.name}: helmet: {entry.get('helmet')!r} is not a helmet of {config.path.name} "
            f"(expected one of {', '.join(sorted(helmets))})"
        )
    data = traces[0].read_bytes()
    sensitivity = entry.get("sensitivity_mv_per_g", config.sensitivity_mv_per_g)
    trace = parse_trace(data, traces[0].name, config.fs_hz, sensitivity)  # refuses an unreadable trace
    if trace.units == "V":
        entry["sensitivity_mv_per_g"] = sensitivity
    recorder.add_trace(key, entry, fs_hz=trace.fs_hz, units=trace.units, data=data, suffix=traces[0].suffix.lower())
    return str(entry["name"])


def _move(files: list[Path], folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for path in files:
        if path.exists():
            path.replace(folder / path.name)


def _complete_markers(folder: Path) -> list[Path]:
    """The markers in the folder in the order the DAQ wrote them (modification time, then name)."""
    found = []
    for path in folder.glob(f"*{MARKER_SUFFIX}"):
        try:
            found.append((path.stat().st_mtime_ns, path.name, path))
        except FileNotFoundError:  # moved away meanwhile
            continue
    return [path for _, _, path in sorted(found)]


def watch_drop_folder(
    folder: Path,
    config: RigConfig,
    out: Path,
    *,
    stop_file: Path | None = None,
    poll_s: float = 0.2,
    stop: threading.Event | None = None,
    log: TextIO = sys.stderr,
    on_drop: Callable[[str], None] | None = None,
) -> _Watch:
    """Record every complete drop appearing in ``folder`` into a new session ``out`` until ``stop``
    is set, SIGTERM/SIGINT arrives (when called in the main thread) or ``stop_file`` exists; then
    close the session. Returns what was recorded and refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--watch {folder}: not a folder (the DAQ's drop folder)")
    stop_file = Path(stop_file) if stop_file is not None else folder / STOP_FILE
    if stop_file.exists():
        raise ConfigError(f"{stop_file}: the stop file exists already (from an earlier run?): remove it first")
    stop = stop or threading.Event()
    signals: dict[int, Any] = {}
    reason: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        reason.append(signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signals = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    watch = _Watch()
    try:
        with SessionRecorder.create(out, dict(config.manifest)) as recorder:
            print(f"helmet rig: recording {folder}/*{MARKER_SUFFIX} into {out}", file=log, flush=True)
            while True:
                stopping = stop.is_set() or stop_file.exists()
                for marker in _complete_markers(folder):
                    stem = marker.name[: -len(MARKER_SUFFIX)]
                    files = [marker, *(marker.with_name(stem + s) for s in TRACE_SUFFIXES)]
                    try:
                        name = _record_drop(recorder, config, marker, settled=stopping)
                    except _MarkerPending:
                        continue
                    except (SessionError, TraceError, ValueError, OSError) as exc:
                        why = " ".join(str(exc).split("\n"))
                        watch.refused[stem] = why
                        print(f"helmet rig: refused {stem}: {why}", file=log, flush=True)
                        _move(files, folder / "refused")
                        continue
                    _move(files, folder / "recorded")
                    watch.recorded.append(name)
                    print(f"helmet rig: recorded {name}", file=log, flush=True)
                    if on_drop is not None:
                        on_drop(name)
                if stopping:
                    break
                stop.wait(poll_s)
            watch.stopped_reason = reason[0] if reason else ("stop file" if stop_file.exists() else "stopped")
            recorder.update_manifest(
                {
                    "end_time_utc": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "stopped_reason": watch.stopped_reason,
                    "exit_status": "success",
                }
            )
    finally:
        for signum, handler in signals.items():
            signal.signal(signum, handler)
    print(
        f"helmet rig: {out}: {len(watch.recorded)} drop(s) recorded, {len(watch.refused)} refused "
        f"({watch.stopped_reason})",
        file=log,
        flush=True,
    )
    return watch
