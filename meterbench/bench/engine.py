"""`meterbench bench`: run a live test sequence from BENCH.toml and verify what it recorded.

For each point of the plan: set the flow, wait until it holds within its window,
flying start (the controller latches the reference totaliser), pass the test
volume, flying stop, next. Everything (totaliser lines, controller messages,
camera frames) goes into a session folder as it arrives; at the end
``run_session`` computes the report from that folder, so a live run and
``meterbench run`` on its session give the same report. Ctrl-C, SIGTERM or a
device failure puts the valves in the safe state (inlet closed, bypass open,
set point 0), closes the session with the reason in session.json and raises
``BenchStopped`` saying what happened.

Each run gets its own folder ``OUT/<run id>/`` (``session/``, ``bench.json``,
``report.json``, ``report.html``); the run id is ``<session_id>-<UTC start>``
(``-2``, ``-3``, ... when two runs start in the same second), so nothing is ever
overwritten and a fixed ``session_id`` never stops a restarted service. The
output folder is checked before any device is opened, and so is its free space
(``[bench] min_free_disk_mb``).

What the bench controller says over MQTT is checked against the reference
totaliser (``meterbench.bench.plausibility``): telemetry with an implausible
temperature or flow is refused; the volume of a point is passed by the
totaliser's own lines, from the line the flying start latched; a latch answer
that disagrees with its totaliser line, or whose command got a second,
conflicting answer, voids the attempt (the point is repeated, then recorded as
invalid and the sequence goes on). What the run found goes into session.json
for ``meterbench run`` (see docs/devices.md, "What a live bench records"):

- ``security``: ``{"mqtt": "tls" | "insecure" | "simulated"}``
- ``warnings``: bench-level warnings (an insecure broker, refused messages, invalid points)
- ``bench_points``: per point name ``{"status": "ok" | "suspect" | "invalid", "reasons": [...],
  "attempts": n, "start": latch, "stop": latch}`` (a latch: cmd_id, t_s, reference_volume_l,
  reference_seq, totaliser_volume_l); a point not "ok" must not pass
- ``stop``: ``{"reason", "valves", "safe_state", "free_disk_mb"}`` when the run did not complete

Disk full and other faults stop the run like a device failure: free space
below ``[bench] stop_free_disk_mb`` or any write into the session that fails
(the recorder undoes a failed write, so nothing acknowledged is lost). A
reserve file (``RESERVE_BYTES``) kept beside the session while it records is
deleted first, so session.json, bench.json and hashes.json can still be written.

The devices come ready-made from :func:`meterbench.bench.factory.open_devices`:
this module does not know whether the bench is real or simulated.

With ``feed`` (a :class:`meterbench.web.live.BenchFeed`, `meterbench bench --serve`) the run is
published to the live view as it goes: each frame is offered to the feed (it keeps the latest,
never queues), flying starts and stops, voided attempts and warnings are published when they
happen, the verdicts from the report.json written at the end. Publishing never blocks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from meterbench.bench.config import BenchConfig, PointPlan, load_bench_config
from meterbench.bench.factory import BenchDevices, PreparedDevices, open_devices, prepare_devices
from meterbench.bench.plausibility import SUSTAINED_REFUSALS, Latch, Plausibility, check_latch
from meterbench.errors import DeviceError, OutputError
from meterbench.session import SessionRecorder, write_text_atomic


class BenchFeed(Protocol):
    """What the run tells the live view as it goes (``meterbench.web.live.BenchFeed`` is the one there
    is; the bench does not import the web side). Every call returns at once: the feed queues or drops."""

    def announce(self, manifest: dict[str, Any], config: Any) -> None: ...
    def offer_frame(self, camera_id: str, frame: Any, t_s: float) -> None: ...
    def start(
        self, session_dir: Path, manifest: dict[str, Any], reference: Any, controller: Any, clock: Callable[[], float]
    ) -> None: ...
    def stop(self) -> None: ...
    def phase(self, phase: str, **fields: Any) -> None: ...
    def point(
        self, name: str, phase: str, t_s: float, start_l: float | None, stop_l: float | None = None, **extra: Any
    ) -> None: ...
    def warning(self, message: str, instrument: str | None = None) -> None: ...
    def report(self, run_dir: Path) -> None: ...


__all__ = ["BenchFeed", "BenchStopped", "StepFn", "claim_run_dir", "print_step", "run_bench"]

L_PER_M3 = 1000.0
S_PER_H = 3600.0
SETTLE_AFTER_SAFE_S = 0.5
"""Time (s) given to the last frames and lines after the safe state, before the session closes."""
MB = 1e6
RESERVE_BYTES = 4 * 1024 * 1024
"""Space held beside the session while it records, freed when the run stops, for its last files (bytes)."""
RESERVE_NAME = ".meterbench-reserve"
DISK_CHECK_INTERVAL_S = 0.5
"""Free space is checked at most this often during a run (s)."""

_LOG = logging.getLogger("meterbench.bench")

StepFn = Callable[[str], None]
"""Called with one line per step of the sequence ("Q3: flying start at reference 2.5010 L")."""


class BenchStopped(DeviceError):
    """The sequence stopped before its end (signal, device failure, disk); the flow is safe."""


class _DiskSpaceLow(DeviceError):
    """Free space fell below ``stop_free_disk_mb``, or a write into the session failed."""


def free_disk_mb(path: Path) -> float:
    """Free space (MB, 10^6 bytes) available to this user on the file system holding ``path``."""
    return shutil.disk_usage(path).free / MB


class _Reserve:
    """A file of ``RESERVE_BYTES`` held while the session records; ``release()`` frees it (idempotent)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / RESERVE_NAME
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            except OSError:  # a file system without fallocate: real blocks all the same
                os.pwrite(fd, bytes(RESERVE_BYTES), 0)
        except OSError:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def print_step(line: str) -> None:
    """The default step printer: the line on stderr, unless the log already shows bench steps."""
    if not _LOG.isEnabledFor(logging.INFO):
        print(f"meterbench bench: {line}", file=sys.stderr, flush=True)


def claim_run_dir(out_dir: Path, base: str, started_utc: datetime | None = None) -> Path:
    """Create and return ``out_dir/<base>-<UTC start>/`` (``-2``, ``-3``... if taken): one run's folder.

    Never returns an existing folder (the folder is created atomically, so two runs at once
    get two folders). Raises OutputError when ``out_dir`` is a file or cannot be written.
    """
    stamp = (started_utc or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out {out_dir}: is a file, expected a folder for the run folders")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--out {out_dir}: cannot create the folder: {exc.strerror or exc}") from exc
    for n in range(1, 1000):
        run_dir = out_dir / (f"{base}-{stamp}" if n == 1 else f"{base}-{stamp}-{n}")
        try:
            run_dir.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"--out {out_dir}: cannot create a run folder in it: {exc.strerror or exc}") from exc
        return run_dir
    raise OutputError(f"--out {out_dir}: 999 runs named {base}-{stamp} already; choose another --out")


def _security_warnings(cfg: BenchConfig) -> list[str]:
    """What session.json ``warnings`` starts with: an unauthenticated broker on a real bench."""
    if cfg.mqtt_security != "insecure":
        return []
    return [
        f"mqtt: the bench controller's broker {cfg.mqtt.get('host', '127.0.0.1')}:{cfg.mqtt.get('port', 1883)} "
        "is not authenticated (insecure = true in BENCH.toml): any client on it could send telemetry and events"
    ]


def _manifest(cfg: BenchConfig, session_id: str) -> dict:
    return {
        "security": {"mqtt": cfg.mqtt_security},
        "warnings": _security_warnings(cfg),
        "session_id": session_id,
        "bench_kind": "water-meter",
        "instruments": cfg.instruments,
        "tanks": [],
        "reference_instruments": cfg.reference_instruments,
        "test_plan": {
            "points": [{"name": p.name, "flow_rate_m3h": p.flow_rate_m3h, "volume_l": p.volume_l} for p in cfg.points]
        },
        "decision_rule": cfg.decision_rule,
        "bench": {"config": cfg.path.name, "bench_id": cfg.bench_id, "live": True},
        "bench_id": cfg.bench_id,  # the lab file's bench, technician and reference standards (standard_id)
        **({"technician_id": cfg.technician_id} if cfg.technician_id else {}),
    }


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt like Ctrl-C (main thread only), restored after."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Bench:
    """The steps of the sequence on the devices of one run."""

    def __init__(
        self,
        cfg: BenchConfig,
        devices: BenchDevices,
        recorder: SessionRecorder,
        on_step: StepFn | None,
        feed: BenchFeed | None = None,
    ):
        self.cfg = cfg
        self.devices = devices
        self.recorder = recorder
        self.controller = devices.controller
        self.reference = devices.reference
        self.clock = recorder.now_s
        self.on_step = on_step
        self.feed = feed
        self.log: list[str] = []
        self.started_t_s = self.clock()
        self.plausibility = Plausibility(self.reference, self.clock)
        self.controller.add_check(self.plausibility)
        self.points: dict[str, dict[str, Any]] = {}  # session.json bench_points
        self.warnings: list[str] = list(recorder.manifest.get("warnings", []))
        self._disk_checked_t_s = -1e9

    def say(self, text: str) -> None:
        """One step: into the sequence log (session.json, bench.json), the log, and ``on_step``."""
        t_s = self.clock()
        line = f"{t_s:9.3f} s  {text}"
        self.log.append(line)
        _LOG.info(text, extra={"t_s": round(t_s, 3), "bench_id": self.cfg.bench_id})
        if self.on_step is not None:
            self.on_step(line.strip())

    def check_devices(self) -> None:
        """Raise DeviceError when a device has failed (silent reference, dead camera)."""
        t = self.clock()
        last = self.reference.last_t_s
        if t - (self.started_t_s if last is None else last) > self.cfg.options.device_timeout_s:
            raise DeviceError(
                f"reference device {self.reference.name}: no valid reading for {self.cfg.options.device_timeout_s:g} s"
            )
        self.check_disk()  # first: a full disk also fails the cameras, and is the cause to name
        for camera in self.devices.cameras:
            if camera.error or camera.finished.is_set():
                raise DeviceError(camera.error or f"camera {camera.camera_id}: stopped giving frames")
        refused = self.plausibility.refusals
        last_telemetry_t_s = self.controller.telemetry_t_s or self.started_t_s
        if refused and t - last_telemetry_t_s > self.cfg.options.device_timeout_s:
            raise DeviceError(
                f"controller: every telemetry message refused for {self.cfg.options.device_timeout_s:g} s; "
                f"the last: {refused[-1][2]}"
            )

    def check_disk(self) -> None:
        """Raise _DiskSpaceLow when a write into the session failed or free space is below the stop limit."""
        failure = self.recorder.write_failure
        if failure is not None:
            raise _DiskSpaceLow(f"session: a write failed ({failure}); nothing after it was recorded")
        t = self.clock()
        if t - self._disk_checked_t_s < DISK_CHECK_INTERVAL_S:
            return
        self._disk_checked_t_s = t
        free = free_disk_mb(self.recorder.path)
        if free < self.cfg.stop_free_disk_mb:
            raise _DiskSpaceLow(
                f"disk space low: {free:.1f} MB free under {self.recorder.path}, "
                f"below bench.stop_free_disk_mb = {self.cfg.stop_free_disk_mb:g} MB"
            )

    def wait_stable(self, point: PointPlan) -> None:
        """Wait until telemetry flow stays within ±window of the set point for the hold time."""
        opts = self.cfg.options
        lo, hi = (point.flow_rate_m3h * (1 + s * point.window_pct / 100) for s in (-1, 1))
        deadline = self.clock() + opts.stable_timeout_s
        since: float | None = None
        while self.clock() < deadline:
            got = self.controller.wait_telemetry(self.controller.telemetry_t_s or -1e9, 1.0)
            self.check_devices()
            if got is None:
                continue
            t, telemetry = got
            if lo <= telemetry["flow_m3h"] <= hi:
                since = t if since is None else since
                if t - since >= opts.stable_hold_s:
                    self.say(
                        f"{point.name}: flow stable at {telemetry['flow_m3h']:.4g} m3/h "
                        f"(±{point.window_pct:g} % for {opts.stable_hold_s:g} s)"
                    )
                    return
            else:
                since = None
        raise DeviceError(
            f"point {point.name}: flow not stable within ±{point.window_pct:g} % "
            f"of {point.flow_rate_m3h:g} m3/h after {opts.stable_timeout_s:g} s"
        )

    def run_point(self, point: PointPlan) -> None:
        """Set flow, wait stable, flying start, pass the volume, flying stop.

        A flow leaving its window during the point ends that attempt (flying stop)
        and the point is run again from stable flow; run_session uses the last
        start/stop pair. After ``max_point_attempts`` the sequence stops.
        """
        opts = self.cfg.options
        self.controller.set_flow(point.flow_rate_m3h).wait(opts.command_timeout_s)
        self.say(f"{point.name}: flow set point {point.flow_rate_m3h:g} m3/h, test volume {point.volume_l:g} L")
        record = self.points.setdefault(point.name, {"status": "ok", "reasons": [], "attempts": 0})
        latch_problems: list[str] = []
        for attempt in range(1, opts.max_point_attempts + 1):
            self.wait_stable(point)
            record["attempts"] = attempt
            outcome = self._pass_volume(point, record)
            if outcome is None:
                self._judge_point(point.name)
                return
            why = f"flow left ±{point.window_pct:g} %" if outcome == "flow" else outcome
            self.say(f"{point.name}: attempt {attempt} void, {why}")
            if self.feed is not None:
                self.feed.point(point.name, "void", self.clock(), None, reason=why)
            if outcome == "flow":
                continue
            latch_problems.append(outcome)
        if not latch_problems:
            raise DeviceError(f"point {point.name}: flow did not hold its window in {opts.max_point_attempts} attempts")
        # the controller's answers cannot be trusted for this point: record it as invalid, go on
        self._mark(point.name, "invalid", f"{len(latch_problems)} attempts void: {latch_problems[-1]}")

    def _mark(self, name: str, status: str, reason: str) -> None:
        """Mark point ``name`` "suspect" or "invalid" (never upgraded back) with a reason; into session.json."""
        record = self.points.setdefault(name, {"status": "ok", "reasons": [], "attempts": 0})
        rank = ("ok", "suspect", "invalid")
        if rank.index(status) > rank.index(record["status"]):
            record["status"] = status
        if reason not in record["reasons"]:
            record["reasons"].append(reason)
            warning = f"point {name}: {status}: {reason}"
            self.warnings.append(warning)
            self.say(warning)
            if self.feed is not None:
                self.feed.warning(warning)
        self._save_points()

    def _save_points(self) -> None:
        self.recorder.update_manifest({"bench_points": self.points, "warnings": self.warnings})

    def _judge_point(self, name: str) -> None:
        """After a point: late conflicting answers to its latches, sustained implausible telemetry."""
        record = self.points[name]
        for which in ("start", "stop"):
            latch = record.get(which)
            if latch is not None and self.controller.conflicting(f"point_{which}", latch["cmd_id"]):
                self._mark(
                    name,
                    "invalid",
                    f"point_{which} (cmd_id {latch['cmd_id']}) got a second, conflicting answer: "
                    "another client answers on the controller's topic",
                )
        if "start" in record and "stop" in record:
            refused = self.plausibility.refused_between(record["start"]["t_s"], record["stop"]["t_s"])
            for quantity, reasons in sorted(refused.items()):
                if len(reasons) >= SUSTAINED_REFUSALS:
                    self._mark(
                        name,
                        "suspect",
                        f"{len(reasons)} telemetry messages refused during the point, {quantity} implausible "
                        f"(the first: {reasons[0]})",
                    )
        self._save_points()

    def _latch(self, action: str, point: PointPlan) -> Latch:
        sent_t_s = self.clock()
        answered = self.controller.latch(action, point.name, self.cfg.options.command_timeout_s)
        return check_latch(self.reference, action, sent_t_s, answered)

    def _in_window(self, point: PointPlan) -> bool:
        flow = (self.controller.telemetry or {}).get("flow_m3h", point.flow_rate_m3h)
        return abs(flow - point.flow_rate_m3h) <= point.flow_rate_m3h * point.window_pct / 100

    def _pass_volume(self, point: PointPlan, record: dict[str, Any]) -> str | None:
        """Flying start, wait for the test volume, flying stop: None when done; "flow" when the flow left
        its window for more than ``out_of_window_s``; else why a latch answer is not trusted.

        The volume is passed by the totaliser's own lines from the line the start latched, never by
        a number received over MQTT.
        """
        opts = self.cfg.options
        start = self._latch("start", point)
        record.pop("stop", None)
        record["start"] = start.to_dict()
        if start.problem is not None or start.totaliser_volume_l is None:
            self._latch("stop", point)  # close the point the controller opened
            return start.problem or "no totaliser volume at the flying start"
        start_l = start.totaliser_volume_l
        self.say(f"{point.name}: flying start at reference {start_l:.4f} L")
        if self.feed is not None:
            self.feed.point(point.name, "running", start.t_s, start_l)
        flow_l_s = point.flow_rate_m3h * L_PER_M3 / S_PER_H
        deadline = self.clock() + opts.point_timeout_factor * point.volume_l / flow_l_s + 10.0
        out_since: float | None = None
        while True:
            line = self.reference.wait_for_reading(self.reference.last_t_s or -1e9, 0.5)
            self.check_devices()
            if line is not None and line["volume_l"] - start_l >= point.volume_l:
                break
            if self._in_window(point):
                out_since = None
            else:
                out_since = self.clock() if out_since is None else out_since
                if self.clock() - out_since > opts.out_of_window_s:
                    self._latch("stop", point)
                    return "flow"
            if self.clock() > deadline:
                raise DeviceError(f"point {point.name}: {point.volume_l:g} L not passed in time")
        stop = self._latch("stop", point)
        record["stop"] = stop.to_dict()
        if stop.problem is not None or stop.totaliser_volume_l is None:
            return stop.problem or "no totaliser volume at the flying stop"
        for which, latch in (("start", start), ("stop", stop)):
            if self.controller.conflicting(f"point_{which}", latch.cmd_id):
                return f"point_{which} (cmd_id {latch.cmd_id}) got a second, conflicting answer"
        self.say(f"{point.name}: flying stop, {stop.totaliser_volume_l - start_l:.4f} L")
        if self.feed is not None:
            self.feed.point(point.name, "stopped", stop.t_s, start_l, stop.totaliser_volume_l)
        return None

    def open_flow_path(self) -> None:
        """Valves for a run: outlet open, inlet open, bypass closed."""
        timeout = self.cfg.options.command_timeout_s
        for valve, state in (("outlet", "open"), ("inlet", "open"), ("bypass", "closed")):
            self.controller.set_valve(valve, state).wait(timeout)

    def run_sequence(self) -> None:
        """Open the flow path and run every point of the plan."""
        self.open_flow_path()
        for point in self.cfg.points:
            self.run_point(point)
        for name in self.points:  # a conflicting answer may come late
            self._judge_point(name)
        self.say("sequence complete")

    def safe_state(self) -> list[str]:
        """Flow set point 0, inlet closed, bypass open; return what could not be done."""
        failures = []
        for action in (
            lambda: self.controller.set_flow(0.0),
            lambda: self.controller.set_valve("inlet", "closed"),
            lambda: self.controller.set_valve("bypass", "open"),
        ):
            try:
                action().wait(self.cfg.options.command_timeout_s)
            except (DeviceError, ValueError, OSError) as exc:
                failures.append(str(exc))
        return failures

    def stop_record(self, reason: str, failures: list[str]) -> dict[str, Any]:
        """session.json ``stop``: why, the valves as the last telemetry showed them, the safe state, free space."""
        free: float | None = None
        with contextlib.suppress(OSError):
            free = round(free_disk_mb(self.recorder.path), 1)
        return {
            "reason": reason,
            "valves": (self.controller.telemetry or {}).get("valves"),
            "valves_t_s": self.controller.telemetry_t_s,
            "safe_state": "confirmed" if not failures else "NOT confirmed: " + "; ".join(failures),
            "free_disk_mb": free,
        }

    def summary(self) -> dict[str, Any]:
        """bench.json: the sequence log and what each device counted."""
        return {
            "log": self.log,
            "devices": {r.name: dict(vars(r.counts)) for r in self.devices.readers},
            "controller": dict(vars(self.controller.counts)),
            "cameras": {c.camera_id: vars(c.counts) for c in self.devices.cameras},
            "unrecorded": {r.name: r.unrecorded for r in self.devices.readers},
            "points": self.points,
            "warnings": self.warnings,
        }


def _check_free_space(run_dir: Path, cfg: BenchConfig) -> None:
    """Refuse to start with less than ``min_free_disk_mb`` free under the run folder (removed again)."""
    free = free_disk_mb(run_dir)
    if free < cfg.min_free_disk_mb:
        run_dir.rmdir()
        raise OutputError(
            f"--out {run_dir.parent}: {free:.0f} MB free, below bench.min_free_disk_mb = {cfg.min_free_disk_mb:g} MB "
            f"({cfg.path}); free some space or lower it"
        )


def run_bench(
    config_path: Path, out_dir: Path, *, on_step: StepFn | None = print_step, feed: BenchFeed | None = None
) -> dict:
    """Run the bench described by ``config_path`` into a new run folder under ``out_dir``.

    The run folder (see :func:`claim_run_dir`) holds ``session/``, ``bench.json``,
    ``report.json`` and ``report.html``. ``on_step`` gets one line per step (devices
    opened, flow set, stable, flying start, flying stop, verdict; default: stderr;
    None: silent). Returns the report (as ``run_session`` writes it) plus ``"bench"``:
    device counts, the sequence log and ``"run_dir"``. Raises ConfigError/OutputError
    before any device is opened (an unauthenticated broker without ``insecure = true``,
    too little free space), and BenchStopped (flow made safe, session closed, the stop
    in session.json) when stopped. ``feed``: the live view's (see the module's docstring).
    """
    prepared = prepare_devices(load_bench_config(Path(config_path)))  # the config as the session records it
    cfg = prepared.config
    run_dir = claim_run_dir(Path(out_dir), cfg.session_base)
    _check_free_space(run_dir, cfg)
    session_dir = run_dir / "session"
    reserve = _Reserve(run_dir)
    try:
        summary, stopped, failures, bench = _record_run(prepared, run_dir, session_dir, reserve, on_step, feed)
    finally:
        reserve.release()
    try:
        write_text_atomic(run_dir / "bench.json", json.dumps(summary, indent=2) + "\n")
        not_written = ""
    except OSError as exc:
        if stopped is None:
            raise
        not_written = f"; bench.json not written: {exc.strerror or exc}"
    if stopped is not None:
        unsafe = "; safe state NOT confirmed: " + "; ".join(failures) if failures else "; valves set to safe state"
        if bench is None:
            unsafe = "; no flow was started"
        if feed is not None:
            feed.phase("stopped", stop_reason=stopped, current_point=None)
        raise BenchStopped(f"stopped: {stopped}{unsafe}; session saved in {session_dir}{not_written}")
    from meterbench.verify import run_session

    if feed is not None:
        feed.phase("verifying", current_point=None)
    report = run_session(session_dir, run_dir)
    if feed is not None:
        feed.report(run_dir)
    report["bench"] = summary
    _say_verdict(report, run_dir, on_step)
    return report


def _record_run(
    prepared: PreparedDevices,
    run_dir: Path,
    session_dir: Path,
    reserve: _Reserve,
    on_step: StepFn | None,
    feed: BenchFeed | None = None,
) -> tuple[dict[str, Any], str | None, list[str], _Bench | None]:
    """Open the devices, run the sequence, make the flow safe and close the session.

    Returns bench.json's content, the stop reason (None: completed), what the safe state could
    not do, and the bench (None when no device was opened).
    """
    cfg = prepared.config
    stopped: str | None = None
    failures: list[str] = []
    summary: dict[str, Any] = {"run_dir": str(run_dir)}
    recorder = SessionRecorder.create(session_dir, _manifest(cfg, run_dir.name), reference_images=cfg.reference_images)
    if feed is not None:
        feed.announce(recorder.manifest, cfg)
    bench: _Bench | None = None
    devices: BenchDevices | None = None
    with ExitStack() as stack:
        stack.callback(recorder.close)
        try:
            with _signals_raise():
                frame_tap = feed.offer_frame if feed is not None else None
                devices = open_devices(cfg, recorder, stack, prepared.camera_views, frame_tap)
                if feed is not None:
                    feed.start(session_dir, recorder.manifest, devices.reference, devices.controller, recorder.now_s)
                    stack.callback(feed.stop)
                bench = _Bench(cfg, devices, recorder, on_step, feed)
                bench.say(
                    f"run {run_dir.name}: devices opened ({len(devices.readers)} reference, "
                    f"{len(devices.cameras)} cameras, controller {cfg.mqtt.get('host', '127.0.0.1')}:"
                    f"{devices.controller.config.port}, mqtt {cfg.mqtt_security}); {len(cfg.points)} points"
                )
                bench.run_sequence()
        except KeyboardInterrupt as exc:
            stopped = f"interrupted ({exc or 'SIGINT'})"
        except _DiskSpaceLow as exc:
            stopped = f"disk: {exc}"
        except DeviceError as exc:
            stopped = f"device failure: {exc}"
        except OSError as exc:  # a write of the engine's own (session.json) failed: the disk, mostly
            stopped = f"disk: session: {exc.strerror or exc}"
        if stopped is not None and devices is not None:
            for camera in devices.cameras:  # no more frames: what is left of the disk is for the last files
                camera.stop()
        if stopped is not None:
            reserve.release()
        if bench is not None:
            failures = bench.safe_state()
            time.sleep(SETTLE_AFTER_SAFE_S)  # let the last frames and lines of the safe state arrive
            summary.update(bench.summary())
        if stopped is not None:
            summary["safe_state_failures"] = failures
        changes: dict[str, Any] = {
            "stopped_reason": stopped or "completed",
            "exit_status": "success" if stopped is None else "abort",
            "bench_log": summary.get("log", []),
        }
        if bench is not None:
            changes.update({"bench_points": bench.points, "warnings": bench.warnings})
        if stopped is not None:
            changes["stop"] = bench.stop_record(stopped, failures) if bench is not None else {"reason": stopped}
            summary["stop"] = changes["stop"]
        try:
            recorder.update_manifest(changes)
        except OSError as exc:
            if stopped is None:
                raise
            summary["session_json_not_updated"] = f"{exc.strerror or exc}"
        if devices is not None:
            summary.update(devices.finish(recorder))
    summary["recorded"] = recorder.acknowledged()  # once every device has stopped and the session is closed
    return summary, stopped, failures, bench


def _say_verdict(report: dict, run_dir: Path, on_step: StepFn | None) -> None:
    """The last step: the overall verdict and where the report is (the command line lists each point's)."""
    counts = [p["verdict"] for inst in report["instruments"] for p in inst["points"]]
    tally = ", ".join(f"{counts.count(v)} {v}" for v in ("pass", "fail", "inconclusive") if v in counts)
    text = f"verdict {report['verdict']} ({tally}) -> {run_dir / 'report.json'}"
    _LOG.info(text, extra={"verdict": report["verdict"], "run_dir": str(run_dir)})
    if on_step is not None:
        on_step(text)
