"""Command line of meterbench: parse arguments, call the pipelines, print.

No logic lives here beyond argument handling; every command calls one function
of a package and prints what it returns.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


class CommandError(Exception):
    """A command could not complete; its message is the one-line reason printed."""


def _cmd_read_crops(args: argparse.Namespace, kind: str) -> int:
    from meterbench.models import read_crop_files

    failed = 0
    for result in read_crop_files(args.images, kind=kind, batch_size=args.batch_size):
        if result.error:
            failed += 1
            print(f"meterbench {kind}s: {result.path}: {result.error}", file=sys.stderr)
            continue
        if args.json:
            print(
                json.dumps(
                    {"path": result.path, "value": round(result.value, 3), "confidence": round(result.confidence, 4)}
                )
            )
        else:
            print(f"{result.path}\t{result.value:.2f}\t{result.confidence:.3f}")
    return 1 if failed else 0


def _cmd_digits(args: argparse.Namespace) -> int:
    return _cmd_read_crops(args, "digit")


def _cmd_dials(args: argparse.Namespace) -> int:
    return _cmd_read_crops(args, "dial")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from meterbench.sim import simulate_tank, simulate_water_meter

    if args.bench_kind == "water-meter":
        path = simulate_water_meter(
            Path(args.out), seed=args.seed, meters=args.meters, profile=args.profile, fps=args.fps
        )
    else:
        path = simulate_tank(Path(args.out), seed=args.seed, runs=args.runs)
    print(path)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from meterbench.verify import run_session

    report = run_session(Path(args.session), Path(args.out))
    print(f"{report['session']}: {report['verdict']} -> {Path(args.out) / 'report.json'}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from meterbench.bench import run_bench

    report = run_bench(Path(args.config), Path(args.out))
    print(f"{report['session']}: {report['verdict']}")
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from meterbench.batch import run_batch

    return run_batch(
        [Path(p) for p in args.paths],
        Path(args.out),
        jobs=args.jobs,
        compare=Path(args.compare) if args.compare else None,
    )


def _cmd_doctor(args: argparse.Namespace) -> int:
    from meterbench.health import doctor

    return doctor(config=Path(args.config) if args.config else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meterbench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="log lines on stdout: text, or one JSON object per line (services)",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True)

    for name, func, what in (
        ("digits", _cmd_digits, "digit-wheel crops"),
        ("dials", _cmd_dials, "red pointer sub-dial crops"),
    ):
        p = sub.add_parser(name, help=f"read {what}: value in [0, 10) and confidence")
        p.add_argument("images", nargs="+", help="image files, one crop each")
        p.add_argument("--json", action="store_true", help="one JSON object per line")
        p.add_argument("--batch-size", type=int, default=64)
        p.set_defaults(func=func)

    p = sub.add_parser("simulate", help="write a simulated bench session folder")
    p.add_argument("bench_kind", choices=["water-meter", "tank"])
    p.add_argument("--out", required=True, help="session folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--meters", type=int, default=3, help="water-meter: meters in series")
    p.add_argument("--runs", type=int, default=3, help="tank: fill-read-drain runs")
    p.add_argument("--fps", type=float, default=10.0, help="water-meter: camera frame rate (frames/s)")
    p.add_argument(
        "--profile", default="standard", help="water-meter: 'standard' (full plan) or 'short' (small volumes)"
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("run", help="verify a recorded session: report.json + human report")
    p.add_argument("session")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("bench", help="run a live test sequence from a bench config")
    p.add_argument("--config", required=True, help="BENCH.toml")
    p.add_argument("--out", required=True)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("batch", help="re-verify many recorded sessions")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--compare", help="earlier batch output folder to compare against")
    p.set_defaults(func=_cmd_batch)

    p = sub.add_parser("doctor", help="check the installation and the bench's devices")
    p.add_argument("--config", help="BENCH.toml whose devices to check")
    p.set_defaults(func=_cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from meterbench.logs import configure_logging

    configure_logging(args.log_format, args.log_level, stream=sys.stderr if args.log_format == "text" else None)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"meterbench {args.command}: interrupted", file=sys.stderr)
        return 130
    except (CommandError, ValueError, OSError) as exc:
        print(f"meterbench {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
