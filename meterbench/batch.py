"""`meterbench batch`: re-verify many recorded sessions, summarise, compare with an earlier batch.

Each session is verified by the same code as `meterbench run` (one worker
process per job, models loaded once per worker). Finished sessions are written
as they complete, so an interrupted batch keeps what it finished; the summary is
rewritten after every session. Output order never depends on `--jobs`. A
session that takes longer than the per-session timeout (a hang, e.g. a damaged
file) has its worker killed and is listed as failed; a worker that dies is
replaced; the first Ctrl-C stops the batch at once, keeping what was finished.

With ``cluster=ADDRESS`` (``--cluster``) the same sessions are verified on the workers of a running
Dask distributed scheduler instead, one task per session, with the same reports and summary byte for
byte. The workers must run the same meterbench (checked: :func:`engine_identity`) and see the session
and output folders at the same paths (a shared filesystem; checked per session).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import get_context
from multiprocessing.connection import wait
from pathlib import Path

from meterbench.errors import ConfigError
from meterbench.progress import ProgressFn
from meterbench.verify.report import atomic_write_text, clean_for_json

__all__ = ["find_sessions", "run_batch", "compare_summaries", "configuration_hash", "engine_identity"]

SUMMARY_FIELDS = (
    "session",
    "path",
    "status",
    "instrument",
    "point",
    "flow_rate",
    "error_pct",
    "mpe_pct",
    "uncertainty_pct",
    "verdict",
    "reason",
    "model_hashes",
    "configuration_hash",
)
#: An error change larger than this (%-points) is listed by --compare.
COMPARE_ERROR_TOLERANCE_PCT = 0.005
#: Default wall-clock limit for verifying one session (s): a standard session takes ~1-2 min on one core.
DEFAULT_SESSION_TIMEOUT_S = 1800.0
#: Time a new worker may take to start (import, load models) before its first session's clock runs (s).
WORKER_START_ALLOWANCE_S = 120.0
_STARTED = "started"
#: Time `--cluster` waits for its scheduler to answer and for a first worker to join (s).
CLUSTER_CONNECT_TIMEOUT_S = 10.0


def find_sessions(paths: list[Path]) -> list[Path]:
    """Every folder holding a session.json under the given paths, sorted, without repeats."""
    found: set[Path] = set()
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or folder")
        if (path / "session.json").is_file():
            found.add(path.resolve())
        found.update(p.parent.resolve() for p in path.rglob("session.json"))
    return sorted(found)


def configuration_hash(options=None) -> str:
    """SHA-256 over the calibration tables and the reading options (default ones unless given):
    what a verdict depends on besides the session and the models."""
    from meterbench.verify.water_meter import ReadingOptions

    digest = hashlib.sha256()
    data_dir = Path(__file__).resolve().parent / "calibration" / "data"
    for table in sorted(data_dir.glob("*.json")):
        digest.update(table.name.encode())
        digest.update(table.read_bytes())
    digest.update(json.dumps(dataclasses.asdict(options or ReadingOptions()), sort_keys=True).encode())
    return digest.hexdigest()


_worker_readers = None


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which lets running sessions finish and keeps them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _verify_one(session_dir: str, out_dir: str, options=None) -> dict:
    """Worker: verify one session, write its reports, return its summary rows (runs in a subprocess)."""
    global _worker_readers
    from meterbench.session.reader import load_session
    from meterbench.verify.report import write_reports
    from meterbench.verify.run import RegisterReaders, _provenance_notes, verify_session

    started = time.perf_counter()
    try:
        session = load_session(Path(session_dir))
        if session.manifest["bench_kind"] == "water-meter" and _worker_readers is None:
            _worker_readers = RegisterReaders()
        report, figures = verify_session(session, options, readers=_worker_readers)
        write_reports(report, Path(out_dir), figures, _provenance_notes())
    except Exception as exc:  # a failing session is reported, the batch goes on
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return {
            "path": session_dir,
            "status": "failed",
            "reason": f"{type(exc).__name__}: {first_line}",
            "seconds": time.perf_counter() - started,
        }
    return {
        "path": session_dir,
        "status": "done",
        "session": report["session"],
        "verdict": report["verdict"],
        "report": clean_for_json(report),
        "seconds": time.perf_counter() - started,
    }


def _worker_main(conn, options) -> None:
    """A worker process: verify each (session, out) it is sent until it gets None or its pipe closes."""
    _ignore_sigint()
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(_STARTED)  # the session's time limit runs from here, not from the worker's start-up
        conn.send(_verify_one(*task, options))


class _Worker:
    """One worker process and the session it is verifying (None when idle); killable."""

    def __init__(self, context, options) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child, options), daemon=True)
        self.process.start()
        child.close()
        self.task: Path | None = None
        self.deadline = math.inf

    def give(self, session: Path, out_dir: Path, timeout_s: float) -> None:
        self.conn.send((str(session), str(out_dir)))
        self.task, self.deadline = session, time.monotonic() + timeout_s + WORKER_START_ALLOWANCE_S

    def outcome(self, timeout_s: float) -> tuple[dict, bool] | None:
        """(result, worker still usable) once the task ended, died or ran out of time; else None."""
        assert self.task is not None
        failed = {"path": str(self.task), "status": "failed", "seconds": None}
        while self.conn.poll():
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                self.process.join(5)
                return {**failed, "reason": f"worker died (exit code {self.process.exitcode})"}, False
            if message != _STARTED:
                return message, True
            self.deadline = time.monotonic() + timeout_s
        if not self.process.is_alive():
            self.process.join(5)
            return {**failed, "reason": f"worker died (exit code {self.process.exitcode})"}, False
        if time.monotonic() > self.deadline:
            self.kill()
            return {
                **failed,
                "reason": f"timed out after {timeout_s:g} s: worker killed (stuck on a damaged file?)",
            }, False
        return None

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()

    def stop(self) -> None:
        """Let an idle worker exit; kill it if it does not within 2 s."""
        if self.process.is_alive() and self.task is None:
            with contextlib.suppress(OSError):  # BrokenPipeError included
                self.conn.send(None)
            self.process.join(2)
        self.kill()


def _verify_locally(
    sessions: list[Path],
    names: dict[Path, str],
    out_dir: Path,
    options,
    jobs: int,
    timeout_s: float,
    finished: Callable[[Path, dict], None],
) -> None:
    """Verify every session in ``jobs`` local worker processes; ``finished(path, result)`` as each ends."""
    context = get_context("spawn")
    queue = list(sessions)
    workers = [_Worker(context, options) for _ in range(max(1, min(jobs, len(sessions))))]
    try:
        for worker in workers:
            if queue:
                path = queue.pop(0)
                worker.give(path, out_dir / names[path], timeout_s)
        while any(w.task is not None for w in workers):
            busy = [w for w in workers if w.task is not None]
            next_deadline = min(w.deadline for w in busy) - time.monotonic()
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=max(0.0, min(next_deadline, 1.0)))
            for index, worker in enumerate(workers):
                ended = worker.outcome(timeout_s) if worker.task is not None else None
                if ended is None:
                    continue
                result, usable = ended
                task, worker.task = worker.task, None
                finished(task, result)
                if not usable:
                    worker.kill()
                    worker = workers[index] = _Worker(context, options)
                if queue:
                    path = queue.pop(0)
                    worker.give(path, out_dir / names[path], timeout_s)
    finally:
        for worker in workers:
            worker.stop()


@functools.cache
def engine_identity() -> dict[str, str]:
    """What a report depends on besides the session, the reading options and the models' inputs: the
    meterbench version, a SHA-256 over every file of the package in use (code, models, calibration
    tables), and the versions of Python and the numeric libraries. Computed once per process.

    Two processes with equal identities write the same report bytes for the same session (the
    revision is one of them: reports record it); `batch --cluster` refuses a worker whose identity differs."""
    import cv2
    import numpy
    import onnxruntime
    import scipy

    from meterbench import __version__, source_revision

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return {
        "meterbench": __version__,
        "files_sha256": digest.hexdigest(),
        "python": ".".join(map(str, sys.version_info[:3])),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "opencv": cv2.__version__,
        "onnxruntime": onnxruntime.__version__,
        "revision": source_revision() or "unknown",
    }


def dask_setup(worker) -> None:
    """Dask preload hook (``dask worker ADDRESS --preload meterbench.batch``): import the verification
    code and compute :func:`engine_identity` as the worker starts, so a batch does not wait for them."""
    import meterbench.verify.run  # noqa: F401  (imported for its start-up cost)

    engine_identity()
    _undo_nanny_malloc_trim()


#: glibc mallopt parameters, and its largest mmap threshold on 64-bit (bytes)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX = -1, -3, 32 << 20


@functools.cache
def _undo_nanny_malloc_trim() -> bool:
    """Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (to hand memory back to the OS),
    which also pins glibc's mmap threshold at 128 KiB: every decoded frame (0.7 MB) is then mmapped and
    faulted in anew. Measured on one water-meter session: 7x the page faults, +1-2 s system time, about
    +20 % wall, so `batch --cluster` lost to `--jobs`. Give the worker a plain process's large thresholds
    (the memory a verification holds is bounded anyway). True when set; glibc only, once per process."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
        and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _MMAP_THRESHOLD_MAX)
    )


def _identity_difference(there: dict[str, str], here: dict[str, str]) -> str:
    """'' when two engine identities match; else what differs, one clause per field."""
    width = {"files_sha256": 12}  # a hash is told apart by its first digits; a revision is shown whole
    return "; ".join(
        f"{k} {str(there.get(k))[: width.get(k)]} there, {here[k][: width.get(k)]} here"
        for k in here
        if there.get(k) != here[k]
    )


def _verify_on_cluster_worker(session_dir: str, out_dir: str, options, identity: dict, marker: str, token: str) -> dict:
    """Dask task: check that this worker is the same engine and sees the batch's folders, then verify
    one session like a local worker does (its models stay loaded in the worker process)."""
    _undo_nanny_malloc_trim()  # also on a worker started without the preload
    failed = {"path": session_dir, "status": "failed", "seconds": None}
    difference = _identity_difference(engine_identity(), identity)
    if difference:
        return {**failed, "reason": f"worker on {socket.gethostname()}: a different meterbench: {difference}"}
    try:
        seen = Path(marker).read_text()
    except OSError:
        seen = None
    if seen != token:
        return {
            **failed,
            "reason": f"worker on {socket.gethostname()} does not see the output folder {Path(marker).parent} "
            "(batch --cluster needs the sessions and the output folder on a filesystem shared at the same paths)",
        }
    if not (Path(session_dir) / "session.json").is_file():
        return {
            **failed,
            "reason": f"worker on {socket.gethostname()} does not see {session_dir}/session.json "
            "(batch --cluster needs the sessions on a filesystem shared at the same paths)",
        }
    return _verify_one(session_dir, out_dir, options)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: " + (str(exc).strip().splitlines() or [""])[0]


def _connect(address: str, connect_timeout_s: float):
    """A Dask client of the scheduler at ``address`` with at least one worker whose engine is this one."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise ConfigError(
            "batch --cluster: needs Dask distributed (pip install 'meterbench[cluster]'): " + _first_line(exc)
        ) from None
    try:
        client = Client(address, timeout=connect_timeout_s, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"batch --cluster: no Dask scheduler answered at {address} within {connect_timeout_s:g} s "
            f"({_first_line(exc)})"
        ) from None
    try:
        try:
            client.wait_for_workers(1, timeout=connect_timeout_s)
        except TimeoutError:
            raise ConfigError(
                f"batch --cluster: the scheduler at {address} has no worker "
                f"(none joined within {connect_timeout_s:g} s)"
            ) from None
        with ThreadPoolExecutor(1) as pool:  # the workers' identities while this process computes its own
            theirs = pool.submit(client.run, engine_identity, on_error="return")
            here = engine_identity()
            identities = theirs.result()
        for worker, there in sorted(identities.items()):
            if isinstance(there, BaseException):
                raise ConfigError(
                    f"batch --cluster: worker {worker} cannot run meterbench ({_first_line(there)}): "
                    "install the same meterbench there"
                )
            difference = _identity_difference(there, here)
            if difference:
                raise ConfigError(
                    f"batch --cluster: worker {worker} runs a different meterbench ({difference}): its reports "
                    "could differ from this engine's; install the same meterbench there"
                )
    except BaseException:
        client.close()
        raise
    return client


def _cluster_result(future, path: Path, address: str) -> dict:
    """A finished task's result, or the session listed as failed with the reason."""
    from distributed import KilledWorker

    try:
        return future.result()
    except KilledWorker:
        import dask

        tries = dask.config.get("distributed.scheduler.allowed-failures") + 1
        reason = f"worker died while verifying it, {tries} times (on {address}; a session that crashes its worker?)"
    except Exception as exc:  # e.g. the task could not be unpickled on its worker
        reason = f"on the cluster: {_first_line(exc)}"
    return {"path": str(path), "status": "failed", "reason": reason, "seconds": None}


def _verify_on_cluster(
    client,
    address: str,
    sessions: list[Path],
    names: dict[Path, str],
    out_dir: Path,
    options,
    timeout_s: float,
    connect_timeout_s: float,
    finished: Callable[[Path, dict], None],
) -> None:
    """Verify every session as one Dask task each with ``client`` (of the scheduler at ``address``, closed
    at the end); ``finished(path, result)``
    as each ends. As many tasks run at once as the workers have threads, so a session's time limit runs
    from its submission. A worker that dies mid-task has its session retried by the scheduler on another
    worker (Dask's allowed-failures; then the session is listed as failed); a session over its time
    limit is cancelled and its worker process ended (as the local pool kills its worker; a nanny
    restarts it)."""
    from distributed import wait

    out_dir = out_dir.resolve()
    token = secrets.token_hex(16)
    marker = out_dir / f".meterbench-cluster-{token}"  # a worker that cannot read it does not share the folder
    atomic_write_text(marker, token)
    identity = engine_identity()
    pending: dict = {}  # future -> (session, deadline)
    queue = list(sessions)
    no_worker_since: float | None = None
    try:
        while queue or pending:
            threads = sum(client.nthreads().values())
            while queue and len(pending) < max(1, threads):
                path = queue.pop(0)
                future = client.submit(
                    _verify_on_cluster_worker,
                    str(path),
                    str(out_dir / names[path]),
                    options,
                    identity,
                    str(marker),
                    token,
                    key=f"meterbench-batch-{token}-{len(sessions) - len(queue)}",
                    pure=False,
                )
                pending[future] = (path, time.monotonic() + timeout_s)
            next_deadline = min(deadline for _, deadline in pending.values()) - time.monotonic()
            with contextlib.suppress(TimeoutError), client.as_current():
                wait(list(pending), timeout=max(0.05, min(next_deadline, 1.0)), return_when="FIRST_COMPLETED")
            for future in [f for f in pending if f.done()]:
                path, _ = pending.pop(future)
                finished(path, _cluster_result(future, path, address))
            now = time.monotonic()
            for future, (path, deadline) in list(pending.items()):
                if now > deadline:
                    finished(path, _end_timed_out_task(client, future, path, timeout_s))
                    del pending[future]
            no_worker_since = None if threads else (no_worker_since or now)
            if no_worker_since is not None and now - no_worker_since > connect_timeout_s:
                reason = f"no worker left on the cluster at {address} for {connect_timeout_s:g} s"
                for path in [p for p, _ in pending.values()] + queue:
                    finished(path, {"path": str(path), "status": "failed", "reason": reason, "seconds": None})
                pending.clear()
                queue.clear()
    finally:
        with contextlib.suppress(Exception):  # a scheduler that went away: nothing left to cancel
            client.cancel(list(pending))
        marker.unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            client.close()


async def _end_worker_process() -> None:
    """Run on a Dask worker (in its event loop, so the stuck task thread cannot delay it): exit at once."""
    os._exit(1)


def _end_timed_out_task(client, future, path: Path, timeout_s: float) -> dict:
    """Cancel a session over its time limit and end the worker process stuck on it."""
    workers = [w for w, keys in client.processing().items() if future.key in keys]
    client.cancel([future])
    if workers:
        client.run(_end_worker_process, workers=workers, wait=False)
    where = f"its worker {workers[0]} ended" if workers else "cancelled"
    return {
        "path": str(path),
        "status": "failed",
        "reason": f"timed out after {timeout_s:g} s: {where} (stuck on a damaged file?)",
        "seconds": None,
    }


def _unique_names(sessions: list[Path]) -> dict[Path, str]:
    names: dict[Path, str] = {}
    used: set[str] = set()
    for path in sessions:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name) or "session"
        name, n = base, 2
        while name in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name)
        names[path] = name
    return names


def _summary_rows(result: dict, config_hash: str) -> list[dict]:
    if result["status"] != "done":
        return [{"session": "", "path": result["path"], "status": result["status"], "reason": result["reason"]}]
    report = result["report"]
    models = ";".join(f"{k}={v[:12]}" for k, v in sorted(report.get("models", {}).items()))
    rows = []
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            rows.append(
                {
                    "session": report["session"],
                    "path": result["path"],
                    "status": "done",
                    "instrument": instrument["id"],
                    "point": point["name"],
                    "flow_rate": point.get("flow_rate"),
                    "error_pct": point.get("error_pct"),
                    "mpe_pct": point.get("mpe_pct"),
                    "uncertainty_pct": point.get("uncertainty_pct"),
                    "verdict": point["verdict"],
                    "reason": point.get("reason", ""),
                    "model_hashes": models,
                    "configuration_hash": config_hash,
                }
            )
    return rows


def _write_summary(
    out_dir: Path, results: dict[Path, dict], order: list[Path], config_hash: str, interrupted: bool
) -> None:
    rows = [row for path in order if path in results for row in _summary_rows(results[path], config_hash)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k, "")) for k in SUMMARY_FIELDS})
    atomic_write_text(out_dir / "summary.csv", buffer.getvalue())
    sessions = [{k: v for k, v in results[p].items() if k not in ("report", "seconds")} for p in order if p in results]
    summary = {
        "sessions": sessions,
        "points": rows,
        "configuration_hash": config_hash,
        "complete": not interrupted and len(results) == len(order),
        "sessions_total": len(order),
        "sessions_failed": sum(r["status"] != "done" for r in results.values()),
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(clean_for_json(summary), indent=2) + "\n")


def compare_summaries(
    new_rows: list[dict], old_rows: list[dict], tolerance_pct: float = COMPARE_ERROR_TOLERANCE_PCT
) -> list[dict]:
    """Points whose verdict changed or whose error moved by more than ``tolerance_pct``."""

    def key(row: dict) -> tuple:
        return (row.get("session"), row.get("instrument"), row.get("point"))

    old = {key(r): r for r in old_rows if r.get("point")}
    changes = []
    for row in new_rows:
        if not row.get("point"):
            continue
        before = old.get(key(row))
        if before is None:
            changes.append({**_change_keys(row), "change": "new point"})
            continue
        e_new, e_old = row.get("error_pct"), before.get("error_pct")
        moved = (e_new is None) != (e_old is None) or (
            e_new is not None and e_old is not None and abs(float(e_new) - float(e_old)) > tolerance_pct
        )
        if row.get("verdict") != before.get("verdict") or moved:
            changes.append(
                {
                    **_change_keys(row),
                    "old_verdict": before.get("verdict"),
                    "new_verdict": row.get("verdict"),
                    "old_error_pct": e_old,
                    "new_error_pct": e_new,
                    "change": "verdict" if row.get("verdict") != before.get("verdict") else "error",
                }
            )
    return changes


def _change_keys(row: dict) -> dict:
    return {"session": row.get("session"), "instrument": row.get("instrument"), "point": row.get("point")}


def _load_old_rows(compare: Path, sessions: list[Path]) -> list[dict]:
    """Rows of an earlier batch (its summary.json), or of the report.json files stored in the sessions."""
    summary = compare / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())["points"]
    rows = []
    for path in sessions:
        stored = path / "report.json"
        if stored.is_file():
            rows += _summary_rows({"status": "done", "path": str(path), "report": json.loads(stored.read_text())}, "")
    if not rows:
        raise FileNotFoundError(f"{compare}: no summary.json there and no report.json stored in the sessions")
    return rows


def _fmt_pct(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):+.4f}"


def run_batch(
    paths: list[Path],
    out_dir: Path,
    *,
    jobs: int = 1,
    compare: Path | None = None,
    options=None,
    progress: ProgressFn | None = None,
    timeout_s: float = DEFAULT_SESSION_TIMEOUT_S,
    cluster: str | None = None,
    connect_timeout_s: float = CLUSTER_CONNECT_TIMEOUT_S,
) -> int:
    """Re-verify every session under ``paths`` into ``out_dir``; exit status 0 only if all completed.

    ``options`` (a ReadingOptions) replaces the default reading options; its hash is in the summary.
    ``progress(done, total, session name)`` is called as each session finishes. A session not
    verified within ``timeout_s`` (s, wall clock) has its worker killed and is listed as failed.
    ``cluster`` (a Dask scheduler address, e.g. ``tcp://10.0.0.5:8786``) verifies on that cluster's
    workers instead of ``jobs`` local processes; a scheduler that does not answer within
    ``connect_timeout_s`` (s), or a worker with another meterbench, is a ConfigError.
    """
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise ConfigError(f"batch: timeout: expected a number of seconds > 0, got {timeout_s!r}")
    sessions = find_sessions(paths)
    if not sessions:
        raise FileNotFoundError("no session.json found under " + ", ".join(str(p) for p in paths))
    client = _connect(cluster, connect_timeout_s) if cluster is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    names = _unique_names(sessions)
    config_hash = configuration_hash(options)
    results: dict[Path, dict] = {}
    progress = progress or (lambda done, total, label: None)
    interrupted = False

    def finished(path: Path, result: dict) -> None:
        results[path] = result
        progress(len(results), len(sessions), names[path])
        _write_summary(out_dir, results, sessions, config_hash, interrupted=False)

    try:
        if client is None:
            _verify_locally(sessions, names, out_dir, options, jobs, timeout_s, finished)
        else:
            _verify_on_cluster(
                client, cluster, sessions, names, out_dir, options, timeout_s, connect_timeout_s, finished
            )
    except KeyboardInterrupt:
        interrupted = True
        print(
            f"\nmeterbench batch: interrupted; {len(results)} of {len(sessions)} sessions finished "
            f"and kept in {out_dir}",
            file=sys.stderr,
        )
    _write_summary(out_dir, results, sessions, config_hash, interrupted)

    failed = [r for r in results.values() if r["status"] != "done"]
    for result in failed:
        print(f"meterbench batch: {result['path']}: {result['reason']}", file=sys.stderr)
    verdicts = [r["verdict"] for r in results.values() if r["status"] == "done"]
    print(
        f"{len(results)} sessions verified: {verdicts.count('pass')} pass, {verdicts.count('fail')} fail, "
        f"{verdicts.count('inconclusive')} inconclusive, {len(failed)} failed to run -> {out_dir}"
    )
    if compare is not None:
        new_rows = json.loads((out_dir / "summary.json").read_text())["points"]
        changes = compare_summaries(new_rows, _load_old_rows(compare, sessions))
        atomic_write_text(out_dir / "compare.json", json.dumps(clean_for_json(changes), indent=2) + "\n")
        for change in changes:
            print(
                f"changed: {change['session']} {change['instrument']} {change['point']}: "
                f"{change.get('old_verdict')} -> {change.get('new_verdict')}, error "
                f"{_fmt_pct(change.get('old_error_pct'))} -> {_fmt_pct(change.get('new_error_pct'))} %"
            )
        print(f"{len(changes)} points changed against {compare}")
    if interrupted:
        return 130
    return 1 if failed else 0
