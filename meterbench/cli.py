"""Command line of meterbench: parse arguments, call the packages, print.

No logic lives here beyond argument handling; every command calls one function
of a package and prints what it returns. A user error (a
:class:`~meterbench.errors.MeterbenchError`, or an OSError from a file or device)
is one line on stderr and exit status 2; anything else is a bug in meterbench:
its traceback is printed and the exit status is 3.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import traceback
from pathlib import Path

from meterbench.errors import EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, ConfigError, MeterbenchError

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none (required options, None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.required:
            return action.help or ""
        return super()._get_help_string(action) or ""


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _print_summary(report: dict) -> None:
    """The verdicts and the warnings (grouped, counted) on stderr, as the HTML report shows them."""
    from meterbench.verify import summary_lines

    for line in summary_lines(report):
        print(line, file=sys.stderr)


def _cmd_read_crops(args: argparse.Namespace, kind: str) -> int:
    from meterbench.models import DigitReader, read_crop_files

    failed = 0
    reader = DigitReader(ocr=True) if getattr(args, "ocr", False) else None  # ConfigError without the OCR model
    for result in read_crop_files(args.images, kind=kind, batch_size=args.batch_size, reader=reader):
        if result.error:
            failed += 1
            print(f"meterbench {kind}s: {result.path}: {result.error}", file=sys.stderr)
            continue
        if args.json:
            fields = {"value": round(result.value, 3), "confidence": round(result.confidence, 4)}
            print(json.dumps({"path": result.path, **fields, "readable": result.readable}))
        else:
            verdict = "readable" if result.readable else f"unreadable: {result.reason}"
            print(f"{result.path}\t{result.value:.2f}\t{result.confidence:.3f}\t{verdict}")
    return 1 if failed else 0


def _cmd_digits(args: argparse.Namespace) -> int:
    return _cmd_read_crops(args, "digit")


def _cmd_dials(args: argparse.Namespace) -> int:
    return _cmd_read_crops(args, "dial")


def _cmd_read(args: argparse.Namespace) -> int:
    from meterbench.models import DialReader, DigitReader
    from meterbench.vision import RegisterLayout
    from meterbench.vision.read_images import read_image_files

    layout = RegisterLayout.load(args.layout)  # ConfigError naming the file and field
    dial_reader = DialReader() if any(e.kind == "dial" for e in layout.elements) else None
    overlay_dir = None
    if args.overlay:
        stems = [Path(p).stem for p in args.images]
        twice = sorted({s for s in stems if stems.count(s) > 1})
        if twice:
            raise ConfigError(f"--overlay: expected photos with distinct names, got {twice[0]!r} twice")
        overlay_dir = Path(args.overlay)
        try:
            overlay_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--overlay: {overlay_dir}: cannot be created: {exc.strerror or exc}") from None
    for record in read_image_files(args.images, layout, DigitReader(), dial_reader, overlay_dir):
        if args.json:
            print(json.dumps(record, allow_nan=False))
        else:
            volume = f"{record['volume_l']:.4f}" if record["ok"] else "-"
            print(f"{record['path']}\t{volume}\t{'ok' if record['ok'] else record['reason']}")
    return 0


def _registers(items: list[str] | None) -> dict[str, Path]:
    """--register ID=LAYOUT.json (repeatable) as {meter id: layout path}."""
    out = {}
    for item in items or ():
        meter, sep, path = item.partition("=")
        if not sep or not meter or not path:
            raise ConfigError(f"--register: expected METER=LAYOUT.json (e.g. M1=taught.json), got {item!r}")
        out[meter] = Path(path)
    return out


def _cmd_simulate(args: argparse.Namespace) -> int:
    from meterbench.progress import terminal_progress
    from meterbench.sim import PROFILES, simulate_tank, simulate_water_meter

    if args.profile not in PROFILES:  # checked here: importing the simulator for --help would take a second
        raise ConfigError(f"--profile: expected one of {', '.join(PROFILES)}, got {args.profile!r}")
    if args.bench_kind == "water-meter":
        path = simulate_water_meter(
            Path(args.out),
            seed=args.seed,
            meters=args.meters,
            profile=args.profile,
            fps=args.fps,
            progress=terminal_progress("simulate", "camera"),
            markers=not args.markerless,
            render_style=args.render_style,
            fixture_seed=args.fixture_seed,
            registers=_registers(args.register),
            **_simulated_lab_ids(args),
        )
    elif args.bench_kind == "helmet":
        from meterbench.sim.helmet import simulate_helmet

        try:
            path = simulate_helmet(Path(args.out), seed=args.seed)
        except FileExistsError as exc:
            raise ConfigError(f"--out: {exc}") from None
    else:
        path = simulate_tank(Path(args.out), seed=args.seed, runs=args.runs, **_simulated_lab_ids(args))
    print(path)
    return 0


def _simulated_lab_ids(args: argparse.Namespace) -> dict[str, str | None]:
    """`simulate --bench-id/--technician-id/--standard-id` (None: the simulator's defaults, marked "sim")."""
    return {"bench_id": args.bench_id, "technician_id": args.technician_id, "standard_id": args.standard_id}


def _lab_check(args: argparse.Namespace):
    """`run --lab [--key]`: the report check (traceability against LAB.toml, and with --key the audit
    trail of the configuration the run saw), loaded before the work so a bad file fails first; or None."""
    if args.lab is None:
        if args.key is not None:
            raise ConfigError("--key: needs --lab LAB.toml (the register whose audit log it signs)")
        return None
    from meterbench import certificates as cert

    lab, lab_bytes = cert.load_lab(Path(args.lab))
    key = cert.load_private_key(Path(args.key)) if args.key is not None else None
    if key is not None:
        cert.check_lab_key(lab, key, "--key")

    def check(report: dict) -> dict:
        checked = cert.lab_traceability(report, lab, cert.sha256_hex(lab_bytes))
        if key is not None:
            entries = cert.log_run_configuration(lab, lab_bytes, key, checked)
            changed = ", ".join(f"{e.what} ({e.event})" for e in entries) or "nothing new"
            print(f"audit log {lab.records}: {changed}", file=sys.stderr)
        return checked

    return check


def _cmd_run(args: argparse.Namespace) -> int:
    from meterbench.progress import terminal_progress
    from meterbench.verify import check_report_folder, run_session

    check_report_folder(Path(args.out), Path(args.session))  # before the work: never overwrite, never fail late
    check = _lab_check(args)
    report = run_session(
        Path(args.session),
        Path(args.out),
        _reading_options(args),
        progress=terminal_progress("run", "meter"),
        check=check,
    )
    print(f"{report['session']}: {report['verdict']} -> {Path(args.out) / 'report.json'}")
    _print_summary(report)
    return 0


def _reading_options(args: argparse.Namespace):
    """The water-meter reading options `run` / `batch` were given (None: the defaults)."""
    if not getattr(args, "count_unread_turns", False):
        return None
    from meterbench.verify.water_meter import ReadingOptions

    return ReadingOptions(count_unread_turns=True)


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--count-unread-turns",
        action="store_true",
        help="water meters: where an element is never read (a reflection) but carries during a point, count its "
        "advance from the turnovers of the elements below instead of leaving the point inconclusive; assumes its "
        "carry / gear train is sound, and report.json says so per point (default: inconclusive)",
    )


def _cmd_bench(args: argparse.Namespace) -> int:
    from meterbench.bench import run_bench

    if args.serve is None:
        _bench_done(args, run_bench(Path(args.config), Path(args.out)))
        return 0
    from meterbench.web import EventPublisher
    from meterbench.web.live import BenchFeed
    from meterbench.web.server import parse_bind, start_server

    host, port = parse_bind(args.serve)
    publisher = EventPublisher()
    server = start_server(publisher, host, port)
    print(f"live view: {server.url}/ (technician), {server.url}/display (customer)", flush=True)
    try:
        _bench_done(args, run_bench(Path(args.config), Path(args.out), feed=BenchFeed(publisher)))
        _keep_serving(args.exit_after_s)
    finally:
        server.stop()
    return 0


def _cmd_helmet_rig(args: argparse.Namespace) -> int:
    from meterbench.bench.helmet_rig import load_rig_config, watch_drop_folder

    config = load_rig_config(Path(args.config))
    stop_file = Path(args.stop_file) if args.stop_file else None
    watch_drop_folder(Path(args.watch), config, Path(args.out), stop_file=stop_file, poll_s=args.poll_s)
    print(args.out, flush=True)
    return 0


def _bench_done(args: argparse.Namespace, report: dict) -> None:
    """What `meterbench bench` prints (and stores, with --db) once the run is verified."""
    print(f"{report['session']}: {report['verdict']}", flush=True)
    _print_summary(report)
    if args.db:
        from meterbench.store import ingest_or_queue

        run_dir = Path(report.get("bench", {}).get("run_dir") or args.out)  # the run's own folder under --out
        print(ingest_or_queue(args.db, run_dir).message)


def _cmd_replay(args: argparse.Namespace) -> int:
    import tempfile

    from meterbench.web import EventPublisher
    from meterbench.web.replay import replay_session
    from meterbench.web.server import parse_bind, start_server

    host, port = parse_bind(args.serve)
    publisher = EventPublisher()
    server = start_server(publisher, host, port)
    print(f"live view: {server.url}/ (technician), {server.url}/display (customer)", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="meterbench-replay-") as scratch:
            out = Path(args.out) if args.out else Path(scratch) / "report"
            certificates = Path(args.certificates) if args.certificates else None
            report = replay_session(Path(args.session), out, args.speed, publisher, certificates=certificates)
            where = f" -> {out / 'report.json'}" if args.out else ""
            print(f"{report['session']}: {report['verdict']}{where}", flush=True)
            _print_summary(report)
            _keep_serving(args.exit_after_s)
    finally:
        server.stop()
    return 0


def _keep_serving(exit_after_s: float | None) -> None:
    """Keep the live view up after the run: until Ctrl-C, or ``exit_after_s`` seconds."""
    import time

    deadline = None if exit_after_s is None else time.monotonic() + exit_after_s
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.2)


def _cmd_batch(args: argparse.Namespace) -> int:
    from meterbench.batch import run_batch

    if args.cluster and args.jobs is not None:
        raise ConfigError("batch: --jobs is for local worker processes; with --cluster the workers' threads decide")
    return run_batch(
        [Path(p) for p in args.paths],
        Path(args.out),
        jobs=args.jobs or 1,
        compare=Path(args.compare) if args.compare else None,
        options=_reading_options(args),
        progress=_batch_progress(args.db, Path(args.out)),
        timeout_s=args.timeout,
        cluster=args.cluster,
        connect_timeout_s=args.connect_timeout,
    )


def _batch_progress(db: str | None, out_dir: Path):
    """batch's progress bar; with --db it first stores each run folder as it finishes (store.storing_progress)."""
    from meterbench.progress import terminal_progress

    progress = terminal_progress("batch", "session")
    if not db:
        return progress
    from meterbench.store import storing_progress

    return storing_progress(db, out_dir, progress)


def _store_trust(args: argparse.Namespace):
    if not (getattr(args, "lab", None) or getattr(args, "public_key", None)):
        return None
    from meterbench.certificates import load_lab, trusted_key

    lab = load_lab(Path(args.lab))[0] if args.lab else None
    return trusted_key(Path(args.public_key) if args.public_key else None, lab)


def _cmd_db_ingest(args: argparse.Namespace) -> int:
    from meterbench.store import ingest_paths

    results, refused = ingest_paths(args.db, [Path(p) for p in args.paths], _store_trust(args))
    for result in results:
        print(result.message)
    for line in refused:
        print(f"refused: {line}", file=sys.stderr)
    stored = sum(r.status == "stored" for r in results)
    queued = sum(r.status == "queued" for r in results)
    print(
        f"{stored} stored, {sum(r.status == 'already stored' for r in results)} already stored, {queued} queued, "
        f"{len(refused)} refused"
    )
    return EXIT_USER_ERROR if refused else (1 if queued else 0)


def _cmd_db_flush(args: argparse.Namespace) -> int:
    from meterbench.store import flush, queued

    results = flush(args.db, _store_trust(args))
    for result in results:
        print(result.message)
    print(f"{len(results)} sent, {len(queued(args.db))} still queued")
    return 0


def _cmd_db_query(args: argparse.Namespace) -> int:
    from meterbench import store

    with store.Store(args.db) as db, db.engine.connect() as connection:
        if args.question == "error-curves":
            rows = store.error_curves(connection, args.type, args.lot)
        elif args.question == "rates":
            if args.by == "model":
                raise ConfigError("db query rates: --by model is for helmets (rates: --by type)")
            rows = store.rates(connection, args.by or "type")
        elif args.question == "history":
            if not args.serial:
                raise ConfigError("db query history: give --serial SERIAL")
            rows = store.history(connection, args.serial)
        elif args.question == "drift":
            rows = store.drift(connection, args.min_runs)
        elif args.question == "helmets":
            if (args.by or "model") not in store.HELMET_GROUPS:
                raise ConfigError(f"db query helmets: --by: expected model or lot, got {args.by!r}")
            rows = store.helmets(connection, args.by or "model")
        else:
            rows = store.tanks(connection)
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
    else:
        for row in rows:
            print(" ".join(f"{k}={v}" for k, v in row.items() if k not in ("points", "values", "times")))
    return 0


def _cmd_db_report(args: argparse.Namespace) -> int:
    from meterbench.store import Store, write_dashboard

    with Store(args.db) as db, db.engine.connect() as connection:
        print(write_dashboard(connection, Path(args.out)))
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from meterbench.health import doctor

    return doctor(config=Path(args.config) if args.config else None)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from meterbench.certificates import generate_keys

    key = generate_keys(Path(args.out))
    print(f"{Path(args.out) / 'lab.key'} (private, mode 0600), {Path(args.out) / 'lab.pub'}")
    print(f"fingerprint {key.fingerprint}  (put it in LAB.toml [lab] key_fingerprint)")
    return 0


def _cmd_certify(args: argparse.Namespace) -> int:
    from meterbench.certificates import certify_run

    issued = certify_run(
        Path(args.run_dir),
        Path(args.key),
        Path(args.lab),
        Path(args.out) if args.out else None,
        bench_id=args.bench,
        technician_id=args.technician,
        reference_ids=args.reference,
        session_dir=Path(args.session) if args.session else None,
        instrument_ids=args.instrument,
    )
    for cert in issued:
        print(f"{cert.verification_code}  certificate {cert.number}, instrument {cert.instrument_id}: {cert.verdict}")
        print(f"  {', '.join(str(p) for p in cert.files)}", file=sys.stderr)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from meterbench.certificates import verify_code, verify_file

    if (args.file is None) == (args.code is None):
        raise ConfigError("expected a FILE or --code CODE (one of them)")
    if args.db:
        if args.code is None:
            raise ConfigError("--db: give --code CODE (the store resolves verification codes)")
        from meterbench.store import verify_code_in_store

        verdict = verify_code_in_store(args.code, args.db, _store_trust(args))
        print(verdict.line)
        return 0 if verdict.valid else 1
    lab = Path(args.lab) if args.lab else None
    key = Path(args.public_key) if args.public_key else None
    verdicts = [verify_code(args.code, lab, key)] if args.code is not None else verify_file(Path(args.file), key, lab)
    for verdict in verdicts:
        print(verdict.line)
    return 0 if all(v.valid for v in verdicts) else 1


def _cmd_audit_verify(args: argparse.Namespace) -> int:
    from meterbench.certificates import audit_verify

    lines, intact = audit_verify(
        Path(args.log), Path(args.public_key) if args.public_key else None, Path(args.lab) if args.lab else None
    )
    for line in lines:
        print(line)
    return 0 if intact else 1


def _cmd_layout_propose(args: argparse.Namespace) -> int:
    from meterbench.vision.propose import parse_dial_litres, write_proposal

    dial_litres = parse_dial_litres(args.dial_litres) if args.dial_litres is not None else None
    proposal = write_proposal(
        Path(args.image),
        Path(args.out),
        overlay_path=Path(args.overlay) if args.overlay else None,
        wheel_litres=args.wheel_litres,
        dial_litres=dial_litres,
        text=args.text_detector,
    )
    for note in proposal.notes:
        print(f"layout propose: {note}", file=sys.stderr)
    for line in proposal.unsure_lines():
        print(f"layout propose: unsure: {line}", file=sys.stderr)
    print(f"{args.out}: {len(proposal.elements)} elements, {len(proposal.unsure_lines())} unsure")
    return 0


def _cmd_layout_teach(args: argparse.Namespace) -> int:
    from meterbench.verify.teach import teach_session

    layout = Path(args.layout) if args.layout else None
    result = teach_session(Path(args.session), args.instrument, Path(args.out), layout_path=layout)
    for e in result.elements:
        state = "applied" if e.applied else "not applied"
        print(
            f"{e.name}: offset {e.offset_steps:+.3f} step ({state}; {e.frames} frames, "
            f"SE {e.standard_error_steps:.3f}; {e.reason})",
            file=sys.stderr,
        )
    print(f"{args.out}: taught from {result.frames_used} of {result.frames_read} frames")
    return 0


def _cmd_impact(args: argparse.Namespace) -> int:
    from meterbench.calibration import analyse_impact
    from meterbench.session import read_trace

    trace = read_trace(args.trace, fs_hz=args.fs, sensitivity_mv_per_g=args.sensitivity)
    features = analyse_impact(trace.accel_g, trace.fs_hz, cfc=None if args.cfc == "none" else int(args.cfc))
    summary = features.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            shown = (
                ", ".join(f"{k} g: {v:.3f}" for k, v in value.items()) if isinstance(value, dict) else f"{value:.3f}"
            )
            print(f"{key}\t{shown}")
    warnings = [features.precondition_problem] if features.precondition_problem else []
    warnings += ["clipped: a channel is flat at its extreme"] if features.clipped else []
    warnings += [f"dead channel(s): {features.dead_channels}"] if features.dead_channels else []
    for warning in warnings:
        print(f"meterbench impact: {trace.source}: warning: {warning}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command; each argument has a help line and shows its default."""
    parser = argparse.ArgumentParser(
        prog="meterbench", description=__doc__.splitlines()[0], formatter_class=_HelpFormatter
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines: text on stderr, or one JSON object per line on stdout (services, journald)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="least severe log level shown",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func, what: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=what, description=what, formatter_class=_HelpFormatter)
        p.set_defaults(func=func)
        return p

    for name, func, what in (
        ("digits", _cmd_digits, "digit-wheel crops"),
        ("dials", _cmd_dials, "red pointer sub-dial crops"),
    ):
        p = command(name, func, f"read {what}: value in [0, 10) and confidence")
        p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, one crop each")
        p.add_argument("--json", action="store_true", help="one JSON object per line instead of tab-separated text")
        p.add_argument("--batch-size", type=_positive_int, default=64, help="crops per model call")
        if name == "digits":
            p.add_argument(
                "--ocr",
                action="store_true",
                help="OCR second opinion on whole digits (pip install --no-deps rapidocr-onnxruntime==1.4.4; slow)",
            )

    p = command("simulate", _cmd_simulate, "write a simulated bench session folder")
    p.add_argument("bench_kind", choices=["water-meter", "tank", "helmet"], help="what the simulated bench verifies")
    p.add_argument("--out", required=True, metavar="DIR", help="session folder to create")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same session")
    p.add_argument("--meters", type=_positive_int, default=3, help="water-meter: meters in series")
    p.add_argument("--runs", type=_positive_int, default=3, help="tank: fill-read-drain runs")
    p.add_argument("--fps", type=_positive_float, default=10.0, help="water-meter: camera frame rate (frames/s)")
    p.add_argument(
        "--profile",
        default="standard",
        help="water-meter: 'standard' (full plan), 'short' (small volumes, a few MB) "
        "or 'coarse' (ordinary registers, standard volumes)",
    )
    p.add_argument(
        "--markerless",
        action="store_true",
        help="water-meter: registers without ArUco markers, read against a reference photo kept in the session "
        "(the meter sits up to ±15 px and ±3° off it, drifts, and the light changes)",
    )
    p.add_argument(
        "--fixture-seed",
        type=int,
        metavar="N",
        help="water-meter, --markerless: another run under bench fixture N (each position's register type, "
        "camera and reference photo drawn from N alone; meters, run, motion and light from --seed)",
    )
    p.add_argument(
        "--register",
        action="append",
        metavar="METER=LAYOUT.json",
        help="water-meter, --markerless: record this marker-free layout of the fixture (layout propose or teach) "
        "as the meter's register, as a bench config naming it would (repeatable)",
    )
    p.add_argument(
        "--bench-id", metavar="ID", help="the lab file's bench id for session.json (default: the simulator's)"
    )
    p.add_argument(
        "--technician-id", metavar="ID", help="the lab file's technician id for session.json (default sim-technician)"
    )
    p.add_argument(
        "--standard-id",
        metavar="ID",
        help="the lab file's reference standard id of the reference meter (default sim-reference-standard)",
    )
    p.add_argument(
        "--render-style",
        choices=["classic", "varied"],
        default="classic",
        help="water-meter: how the registers are drawn: 'classic' (default) or 'varied' (TrueType digits, curved "
        "drums, a reflection over one element for the whole session, Bayer noise; needs Pillow)",
    )

    p = command("read", _cmd_read, "read register volumes (L) of photos with a layout (ArUco or reference photo)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photos of the register, one reading each")
    p.add_argument(
        "--layout", required=True, metavar="LAYOUT.json", help="register layout (markers, or a reference photo)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per photo: {"path", "ok", "volume_l", "reason", "elements"}',
    )
    p.add_argument(
        "--overlay",
        metavar="DIR",
        help="also draw each photo with its elements and readings into DIR/<photo>-read.png (green readable, "
        "orange not): to check a layout fixed by hand",
    )

    p = command("run", _cmd_run, "verify a recorded session: report.json + report.html")
    _add_reading_options(p)
    p.add_argument("session", metavar="SESSION", help="recorded session folder (holds session.json)")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for report.json and report.html: new or without reports (nothing is overwritten), "
        "outside the session",
    )
    p.add_argument(
        "--lab",
        metavar="LAB.toml",
        help="the lab file: a reference standard the session names that is unknown to it or past its due date "
        "on the test date makes every point inconclusive",
    )
    p.add_argument(
        "--key",
        metavar="KEYDIR/lab.key",
        help="with --lab: log the configuration the run saw (lab file, software, models, tables) in the lab's "
        "signed audit log when it changed",
    )

    p = command("bench", _cmd_bench, "run a live test sequence from a bench config")
    p.add_argument("--config", required=True, metavar="BENCH.toml", help="bench configuration (devices, plan)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the recorded session and its reports")
    p.add_argument("--db", metavar="URL", help="store the run in the central store when it finishes (queued if down)")
    p.add_argument("--serve", metavar="HOST:PORT", help="serve the live view while the bench runs (127.0.0.1:8080)")
    p.add_argument(
        "--exit-after-s", type=float, default=0.0, metavar="S", help="with --serve: keep serving S s after the run"
    )

    p = command("helmet-rig", _cmd_helmet_rig, "record a helmet rig's DAQ drop folder into a helmet-impact session")
    p.add_argument(
        "--watch", required=True, metavar="DIR", help="the DAQ's drop folder (<name>.csv|.tdms + <name>.done)"
    )
    p.add_argument("--config", required=True, metavar="RIG.toml", help="the session's profile and helmets")
    p.add_argument("--out", required=True, metavar="SESSION", help="new session folder to record into")
    p.add_argument("--stop-file", metavar="FILE", help="stop when this file appears (default: DIR/STOP); or SIGTERM")
    p.add_argument("--poll-s", type=_positive_float, default=0.2, metavar="S", help="how often to look (s)")

    p = command("replay", _cmd_replay, "verify a recorded session and play it back to the live view")
    p.add_argument("session", metavar="SESSION", help="recorded session folder")
    p.add_argument("--serve", required=True, metavar="HOST:PORT", help="where the live view listens (127.0.0.1:8080)")
    p.add_argument("--speed", type=_positive_float, default=1.0, help="playback speed, times real time")
    p.add_argument("--out", metavar="DIR", help="folder for report.json and report.html (default: a temporary one)")
    p.add_argument("--exit-after-s", type=float, metavar="S", help="stop S s after the playback (default: Ctrl-C)")
    p.add_argument(
        "--certificates",
        metavar="DIR",
        help="folder of `meterbench certify`: the session's certificates (code, QR) shown after the verdicts",
    )

    from meterbench.batch import CLUSTER_CONNECT_TIMEOUT_S, DEFAULT_SESSION_TIMEOUT_S

    p = command("batch", _cmd_batch, "re-verify many recorded sessions")
    _add_reading_options(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="session folders, or folders to search for them")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for one report folder per session and summary")
    p.add_argument("--jobs", type=_positive_int, help="sessions verified in parallel (local processes; default 1)")
    p.add_argument("--compare", metavar="DIR", help="earlier batch output folder to compare the verdicts against")
    p.add_argument("--db", metavar="URL", help="store each run in the central store as it finishes (queued if down)")
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_SESSION_TIMEOUT_S,
        metavar="S",
        help="wall-clock limit per session (s): a stuck session's worker is killed and the session listed as failed",
    )
    p.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="verify on the workers of this Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of local processes; "
        "they need the same meterbench and the sessions and --out on a filesystem shared at the same paths",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=CLUSTER_CONNECT_TIMEOUT_S,
        metavar="S",
        help="--cluster: time for the scheduler to answer and a worker to be there (s)",
    )

    p = command("keygen", _cmd_keygen, "make the lab's Ed25519 signing key pair (lab.key, lab.pub)")
    p.add_argument("--out", required=True, metavar="KEYDIR", help="folder for lab.key and lab.pub (never overwritten)")

    p = command("certify", _cmd_certify, "sign a certificate (PDF, HTML, JSON record) per instrument of a run")
    p.add_argument("run_dir", metavar="RUN_DIR", help="folder holding the run's report.json (meterbench run --out)")
    p.add_argument("--key", required=True, metavar="KEYDIR/lab.key", help="the lab's private key")
    p.add_argument("--lab", required=True, metavar="LAB.toml", help="the lab file (identity, benches, references)")
    p.add_argument("--out", metavar="DIR", help="folder for certificate-<number>.pdf|.html|.json (default: RUN_DIR)")
    p.add_argument("--session", metavar="SESSION", help="the run's session folder: bench, technician, identity")
    p.add_argument("--bench", metavar="ID", help="bench id of LAB.toml (default: the session's, or the only one)")
    p.add_argument("--technician", metavar="ID", help="technician id of LAB.toml (default: the session's)")
    p.add_argument(
        "--reference", action="append", metavar="ID", help="reference standard id (repeatable; default: the bench's)"
    )
    p.add_argument("--instrument", action="append", metavar="ID", help="certify only this instrument (repeatable)")

    p = command("verify", _cmd_verify, "check a certificate, its record, a report.json or a verification code")
    p.add_argument("file", nargs="?", metavar="FILE", help="certificate PDF/HTML, its JSON record, or a report.json")
    p.add_argument("--code", metavar="CODE", help="a verification code, looked up in the lab's register (--lab)")
    p.add_argument("--public-key", metavar="PUB", help="the lab's public key (lab.pub) to trust")
    p.add_argument("--lab", metavar="LAB.toml", help="the lab file: its register and the key it names")
    p.add_argument("--db", metavar="URL", help="with --code: resolve the code through the central store (db ingest)")

    p = command("audit", _cmd_audit_verify, "check the lab's hash-chained audit log")
    p.add_argument("action", choices=["verify"], help="what to do with the log")
    p.add_argument("log", metavar="LOG", help="audit.jsonl of the lab's register")
    p.add_argument("--public-key", metavar="PUB", help="the lab's public key: check every entry's signature too")
    p.add_argument("--lab", metavar="LAB.toml", help="the lab file: its key, and its stored records against the log")

    p = command("db", None, "the central results store: ingest runs, ask questions, draw the dashboard")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_help = (
        "store URL: sqlite:///FILE, a file path, or postgresql+psycopg://USER@HOST/DB (default: $MB_DB_URL, else "
        "~/.local/share/meterbench/store.sqlite)"
    )
    q = db_sub.add_parser(
        "ingest", help="store run folders, batch folders or report.json files", formatter_class=_HelpFormatter
    )
    q.set_defaults(func=_cmd_db_ingest)
    q.add_argument("paths", nargs="+", metavar="PATH", help="run folders, batch folders or report.json files")
    for action in ("flush",):
        r = db_sub.add_parser(
            action, help="send the runs queued while the store was down", formatter_class=_HelpFormatter
        )
        r.set_defaults(func=_cmd_db_flush)
    for parser_ in (q, r):
        parser_.add_argument("--db", metavar="URL", help=db_help)
        parser_.add_argument(
            "--lab", metavar="LAB.toml", help="the lab file: its key checks certificate records' signatures"
        )
        parser_.add_argument("--public-key", metavar="PUB", help="the lab's public key (instead of --lab)")
    q = db_sub.add_parser("query", help="answer a question over the store", formatter_class=_HelpFormatter)
    q.set_defaults(func=_cmd_db_query)
    q.add_argument("question", choices=["error-curves", "rates", "history", "drift", "tanks", "helmets"])
    q.add_argument("--db", metavar="URL", help=db_help)
    q.add_argument("--json", action="store_true", help="print the answer as JSON")
    q.add_argument(
        "--by",
        choices=["type", "lot", "bench", "technician", "month", "model"],
        help="rates: group (default type); helmets: model (default) or lot",
    )
    q.add_argument("--type", metavar="TYPE", help="error-curves: only this meter type")
    q.add_argument("--lot", metavar="LOT", help="error-curves: only this lot")
    q.add_argument("--serial", metavar="SERIAL", help="history: the meter's serial")
    q.add_argument("--min-runs", type=_positive_int, default=5, metavar="N", help="drift: tests of a check meter")
    q = db_sub.add_parser("report", help="write the HTML dashboard", formatter_class=_HelpFormatter)
    q.set_defaults(func=_cmd_db_report)
    q.add_argument("--db", metavar="URL", help=db_help)
    q.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and data.json")

    p = command("layout", None, "propose a register layout from a photo, or teach one from a bench run")
    layout_sub = p.add_subparsers(dest="layout_command", required=True, metavar="ACTION")
    q = layout_sub.add_parser(
        "propose", help="propose a marker-free layout from one photo of the register", formatter_class=_HelpFormatter
    )
    q.set_defaults(func=_cmd_layout_propose)
    q.add_argument("image", metavar="IMAGE", help="photo of the register, as the fixed camera sees it")
    q.add_argument(
        "--out", required=True, metavar="LAYOUT.json", help="layout to write; the photo is copied next to it"
    )
    q.add_argument("--overlay", metavar="OVERLAY.png", help="write the photo with the proposed elements drawn on it")
    q.add_argument(
        "--wheel-litres",
        type=_positive_float,
        metavar="L",
        help="litres of one step of the lowest black wheel (1000 for m³; default: assumed 1000)",
    )
    q.add_argument(
        "--dial-litres",
        metavar="L,L,...",
        help="litres of one division of each dial, coarse to fine (e.g. 100,10,1,0.1; default: assumed decades)",
    )
    q.add_argument(
        "--text-detector",
        action="store_true",
        help="also use the PP-OCRv4 text detector to find the counter ([ocr] extra: rapidocr-onnxruntime --no-deps)",
    )
    q = layout_sub.add_parser(
        "teach", help="teach a layout's element offsets from a recorded bench run", formatter_class=_HelpFormatter
    )
    q.set_defaults(func=_cmd_layout_teach)
    q.add_argument("session", metavar="SESSION", help="recorded session folder of the meter type's first run")
    q.add_argument("--instrument", required=True, metavar="ID", help="the instrument whose register to teach")
    q.add_argument("--out", required=True, metavar="LAYOUT.json", help="taught layout to write (never overwritten)")
    q.add_argument(
        "--layout",
        metavar="LAYOUT.json",
        help="teach this layout file (e.g. from layout propose on the fixture's photo) instead of the session's",
    )

    p = command("impact", _cmd_impact, "analyse one helmet drop trace: peak, HIC, HIC15, HIC36, dwell times")
    p.add_argument(
        "trace", metavar="TRACE", help="trace file: CSV (header line; accel_g or time_s,ax_g,ay_g,az_g) or TDMS"
    )
    p.add_argument("--fs", type=_positive_float, metavar="HZ", help="sample rate (default: from the time_s column)")
    p.add_argument(
        "--cfc", choices=["1000", "600", "180", "60", "none"], default="1000", help="SAE J211 channel filter class"
    )
    p.add_argument(
        "--sensitivity", type=_positive_float, metavar="MV_PER_G", help="accelerometer sensitivity, for traces in V"
    )
    p.add_argument("--json", action="store_true", help="one JSON object instead of text lines")

    p = command("doctor", _cmd_doctor, "check the installation and the bench's devices")
    p.add_argument("--config", metavar="BENCH.toml", help="bench configuration whose devices to check")
    return parser


def _user_error_lines(exc: BaseException) -> list[str]:
    """The one-line reason(s) of a user error: 'FILE: strerror' for a plain OSError, else the message."""
    if isinstance(exc, OSError) and not isinstance(exc, MeterbenchError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return [f"{where}{exc.strerror}"]
    return str(exc).splitlines() or [type(exc).__name__]


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (0 done, 2 user error, 3 internal error, 130 interrupted)."""
    args = build_parser().parse_args(argv)
    from meterbench.logs import configure_logging

    configure_logging(args.log_format, args.log_level, stream=sys.stderr if args.log_format == "text" else None)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"meterbench {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (MeterbenchError, OSError) as exc:
        for line in _user_error_lines(exc):
            print(f"meterbench {args.command}: {line}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception:
        traceback.print_exc()
        print(
            f"meterbench {args.command}: internal error (a bug in meterbench, not in your input); "
            f"please report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
