"""`batch --cluster` with local Dask workers against the local pool `--jobs N` (issue 14).

Simulates (or reuses) N sessions, starts a Dask scheduler and W one-thread workers on 127.0.0.1
(separate processes, as `dask scheduler` / `dask worker` would be on a lab's machines), then times:
- `--jobs W`, the local pool (its worker processes start with the batch);
- `--cluster` on workers that have just joined (their first batch; with `--preload meterbench.batch`,
  the default here, they imported the verification code as they started);
- `--cluster` again on the same workers (a long-running cluster, the way a lab keeps one);
and checks that every report.json, report.html, summary.csv and summary.json is byte-identical.
Target: the cluster at least as fast as `--jobs W`. Usage:

    python benchmarks/batch_cluster.py --sessions 8 --kind tank
    python benchmarks/batch_cluster.py --sessions 4 --kind water-meter --keep /tmp/wm-sessions
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from meterbench.batch import find_sessions, run_batch
from meterbench.sim import simulate_tank, simulate_water_meter
from meterbench.testing import LocalDaskCluster


def _simulate(root: Path, kind: str, count: int, seed0: int) -> list[Path]:
    folders = find_sessions([root]) if root.exists() else []
    for k in range(len(folders), count):  # sessions already there are used as they are
        folder = root / f"{kind}-{seed0 + k}"
        if kind == "tank":
            simulate_tank(folder, seed=seed0 + k)
        else:
            simulate_water_meter(folder, seed=seed0 + k, meters=2, profile="short")
        folders.append(folder)
    return folders[:count]


def _differences(a: Path, b: Path) -> list[str]:
    """Relative paths of files that differ or exist on one side only."""
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    differ = sorted(str(p) for p in files_a ^ files_b)
    return differ + sorted(str(p) for p in files_a & files_b if (a / p).read_bytes() != (b / p).read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--kind", choices=("tank", "water-meter"), default="tank")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers (one thread each) and --jobs")
    parser.add_argument("--seed0", type=int, default=300)
    parser.add_argument("--keep", help="folder holding the simulated sessions (made if missing)")
    parser.add_argument(
        "--no-preload", action="store_true", help="start the workers without --preload meterbench.batch"
    )
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="meterbench-cluster-sessions-"))
    started = time.perf_counter()
    folders = _simulate(root, args.kind, args.sessions, args.seed0)
    print(f"{len(folders)} {args.kind} sessions in {root} ({time.perf_counter() - started:.1f} s to simulate)")
    work = Path(tempfile.mkdtemp(prefix="meterbench-cluster-bench-"))
    started = time.perf_counter()
    preload = () if args.no_preload else ("meterbench.batch",)
    cluster = LocalDaskCluster(work / "dask", workers=args.workers, preload=preload).start()
    print(
        f"scheduler and {args.workers} workers (preload: {', '.join(preload) or 'none'}) up in "
        f"{time.perf_counter() - started:.1f} s at {cluster.address}"
    )
    walls: dict[str, float] = {}
    try:
        for label, kwargs in (
            (f"--jobs {args.workers}", {"jobs": args.workers}),
            ("--cluster, first batch", {"cluster": cluster.address}),
            ("--cluster, workers warm", {"cluster": cluster.address}),
        ):
            started = time.perf_counter()
            status = run_batch(folders, work / label.replace(" ", "_").replace(",", ""), **kwargs)
            walls[label] = time.perf_counter() - started
            print(f"{label}: {walls[label]:.2f} s wall, exit {status}")
    finally:
        cluster.stop()
    local, *clustered = (work / label.replace(" ", "_").replace(",", "") for label in walls)
    for label, out in zip(list(walls)[1:], clustered, strict=True):
        differing = _differences(local, out)
        print(
            f"{label}: {walls[list(walls)[0]] / walls[label]:.2f}x the speed of --jobs {args.workers}; "
            f"output byte-identical: {not differing}" + (f" (differs: {', '.join(differing[:5])})" if differing else "")
        )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
