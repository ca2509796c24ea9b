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
output folder is checked before any device is opened.

The devices come ready-made from :func:`meterbench.bench.factory.open_devices`:
this module does not know whether the bench is real or simulated.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from meterbench.bench.config import BenchConfig, PointPlan, load_bench_config
from meterbench.bench.factory import BenchDevices, open_devices
from meterbench.errors import DeviceError, OutputError
from meterbench.session import SessionRecorder, write_text_atomic

__all__ = ["BenchStopped", "StepFn", "claim_run_dir", "print_step", "run_bench"]

L_PER_M3 = 1000.0
S_PER_H = 3600.0
SETTLE_AFTER_SAFE_S = 0.5
"""Time (s) given to the last frames and lines after the safe state, before the session closes."""

_LOG = logging.getLogger("meterbench.bench")

StepFn = Callable[[str], None]
"""Called with one line per step of the sequence ("Q3: flying start at reference 2.5010 L")."""


class BenchStopped(DeviceError):
    """The sequence stopped before its end (signal or device failure); the flow is safe."""


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


def _manifest(cfg: BenchConfig, session_id: str) -> dict:
    return {
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

    def __init__(self, cfg: BenchConfig, devices: BenchDevices, clock: Callable[[], float], on_step: StepFn | None):
        self.cfg = cfg
        self.devices = devices
        self.controller = devices.controller
        self.reference = devices.reference
        self.clock = clock
        self.on_step = on_step
        self.log: list[str] = []
        self.started_t_s = self.clock()

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
        for camera in self.devices.cameras:
            if camera.error or camera.finished.is_set():
                raise DeviceError(camera.error or f"camera {camera.camera_id}: stopped giving frames")

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
        for attempt in range(1, opts.max_point_attempts + 1):
            self.wait_stable(point)
            if self._pass_volume(point):
                return
            self.say(f"{point.name}: attempt {attempt} void, flow left ±{point.window_pct:g} %")
        raise DeviceError(f"point {point.name}: flow did not hold its window in {opts.max_point_attempts} attempts")

    def _in_window(self, point: PointPlan) -> bool:
        flow = (self.controller.telemetry or {}).get("flow_m3h", point.flow_rate_m3h)
        return abs(flow - point.flow_rate_m3h) <= point.flow_rate_m3h * point.window_pct / 100

    def _pass_volume(self, point: PointPlan) -> bool:
        """Flying start, wait for the test volume, flying stop; False if the flow left its
        window for more than ``out_of_window_s`` meanwhile."""
        opts = self.cfg.options
        _, start = self.controller.latch("start", point.name, opts.command_timeout_s)
        start_l = float(start["reference_volume_l"])
        self.say(f"{point.name}: flying start at reference {start_l:.4f} L")
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
                    self.controller.latch("stop", point.name, opts.command_timeout_s)
                    return False
            if self.clock() > deadline:
                raise DeviceError(f"point {point.name}: {point.volume_l:g} L not passed in time")
        _, stop = self.controller.latch("stop", point.name, opts.command_timeout_s)
        self.say(f"{point.name}: flying stop, {stop['reference_volume_l'] - start_l:.4f} L")
        return True

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
            except (DeviceError, ValueError) as exc:
                failures.append(str(exc))
        return failures

    def summary(self) -> dict[str, Any]:
        """bench.json: the sequence log and what each device counted."""
        return {
            "log": self.log,
            "devices": {r.name: dict(vars(r.counts)) for r in self.devices.readers},
            "controller": dict(vars(self.controller.counts)),
            "cameras": {c.camera_id: vars(c.counts) for c in self.devices.cameras},
        }


def run_bench(config_path: Path, out_dir: Path, *, on_step: StepFn | None = print_step) -> dict:
    """Run the bench described by ``config_path`` into a new run folder under ``out_dir``.

    The run folder (see :func:`claim_run_dir`) holds ``session/``, ``bench.json``,
    ``report.json`` and ``report.html``. ``on_step`` gets one line per step (devices
    opened, flow set, stable, flying start, flying stop, verdict; default: stderr;
    None: silent). Returns the report (as ``run_session`` writes it) plus ``"bench"``:
    device counts, the sequence log and ``"run_dir"``. Raises ConfigError/OutputError
    before any device is opened, and BenchStopped (flow made safe, session closed)
    when stopped.
    """
    cfg = load_bench_config(Path(config_path))
    run_dir = claim_run_dir(Path(out_dir), cfg.session_base)
    session_dir = run_dir / "session"
    stopped: str | None = None
    failures: list[str] = []
    summary: dict[str, Any] = {"run_dir": str(run_dir)}
    with ExitStack() as stack:
        recorder = SessionRecorder.create(session_dir, _manifest(cfg, run_dir.name))
        stack.callback(recorder.close)
        bench: _Bench | None = None
        devices: BenchDevices | None = None
        try:
            with _signals_raise():
                devices = open_devices(cfg, recorder, stack)
                bench = _Bench(cfg, devices, recorder.now_s, on_step)
                bench.say(
                    f"run {run_dir.name}: devices opened ({len(devices.readers)} reference, "
                    f"{len(devices.cameras)} cameras, controller {cfg.mqtt.get('host', '127.0.0.1')}); "
                    f"{len(cfg.points)} points"
                )
                bench.run_sequence()
        except KeyboardInterrupt as exc:
            stopped = f"interrupted ({exc or 'SIGINT'})"
        except DeviceError as exc:
            stopped = f"device failure: {exc}"
        if bench is not None:
            failures = bench.safe_state()
            time.sleep(SETTLE_AFTER_SAFE_S)  # let the last frames and lines of the safe state arrive
            summary.update(bench.summary())
        if stopped is not None:
            summary["safe_state_failures"] = failures
        recorder.update_manifest(
            {
                "stopped_reason": stopped or "completed",
                "exit_status": "success" if stopped is None else "abort",
                "bench_log": summary.get("log", []),
            }
        )
        if devices is not None:
            summary.update(devices.finish(recorder))
    write_text_atomic(run_dir / "bench.json", json.dumps(summary, indent=2) + "\n")
    if stopped is not None:
        unsafe = "; safe state NOT confirmed: " + "; ".join(failures) if failures else "; valves set to safe state"
        if bench is None:
            unsafe = "; no flow was started"
        raise BenchStopped(f"stopped: {stopped}{unsafe}; session saved in {session_dir}")
    from meterbench.verify import run_session

    report = run_session(session_dir, run_dir)
    report["bench"] = summary
    _say_verdict(report, run_dir, on_step)
    return report


def _say_verdict(report: dict, run_dir: Path, on_step: StepFn | None) -> None:
    """The last step: the overall verdict and where the report is (the command line lists each point's)."""
    counts = [p["verdict"] for inst in report["instruments"] for p in inst["points"]]
    tally = ", ".join(f"{counts.count(v)} {v}" for v in ("pass", "fail", "inconclusive") if v in counts)
    text = f"verdict {report['verdict']} ({tally}) -> {run_dir / 'report.json'}"
    _LOG.info(text, extra={"verdict": report["verdict"], "run_dir": str(run_dir)})
    if on_step is not None:
        on_step(text)
