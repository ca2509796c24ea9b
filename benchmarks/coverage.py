"""Coverage of the stated uncertainty: simulated sessions with known truth -> meterbench's verify.

For every point, E is the engine's error, E_true the simulator's `true_error_pct`
(what a perfect reading gives against the same reference count) and U the
stated expanded uncertainty (k = 2). Prints:

- coverage: the share of points with |E - E_true| <= U (issue 10 wants 93-99.5 %);
- stated / observed spread: median(U/2) over the RMS of E - E_true;
- the same two with the budget *without* the reference meter's component
  (U_reading): E_true is taken against the reference's own count, so
  E - E_true cannot contain the reference's error and cannot test that
  component; what it tests is the rest (register reading, temperature);
- per bench kind / profile and per finest register element.

Usage (several minutes; --jobs 2 only when the machine is free):

    python benchmarks/coverage.py --jobs 2 [--keep DIR] [--quick]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: (bench kind, profile, first seed, sessions, meters or runs): >= 200 water-meter points in all.
PLAN = (
    ("water-meter", "short", 200, 12, 3),  # 108 points
    ("water-meter", "standard", 300, 6, 4),  # 72 points
    ("water-meter", "coarse", 400, 2, 3),  # 18 points
    ("water-meter", "standard", 40, 1, 4),  # 12 points, three of them near the MPE
    ("tank", "tank", 500, 20, 2),  # 40 points
)
QUICK_PLAN = (("water-meter", "short", 200, 2, 3), ("tank", "tank", 500, 3, 2))


@dataclass(frozen=True)
class PointRow:
    """One verified point against its truth (errors and uncertainties in %-points)."""

    group: str  # bench kind / profile
    session: str
    instrument: str
    point: str
    element: str  # finest register element read ("" for a tank)
    verdict: str
    error_pct: float
    true_error_pct: float
    u_expanded_pct: float  # stated U, k = 2
    u_reference_pct: float  # the reference meter's standard uncertainty component
    near_mpe: str

    @property
    def delta_pct(self) -> float:
        return self.error_pct - self.true_error_pct

    @property
    def u_reading_expanded_pct(self) -> float:
        """U (k = 2) of the budget without the reference component."""
        return 2.0 * math.sqrt(max((self.u_expanded_pct / 2.0) ** 2 - self.u_reference_pct**2, 0.0))


def _reference_u_pct(point: dict) -> float:
    components = point["details"]["uncertainty_budget"]["components"]
    return math.sqrt(sum(c["u_pct"] ** 2 for c in components if c["name"].startswith("reference")))


def _session_rows(job: tuple[str, str, int, int, str]) -> list[PointRow]:
    """Simulate one session (unless kept), verify it, and return its points against the truth."""
    from meterbench.session.reader import load_session
    from meterbench.sim import simulate_tank, simulate_water_meter
    from meterbench.verify.run import verify_session

    kind, profile, seed, size, folder_name = job
    folder = Path(folder_name)
    if not (folder / "session.json").exists():
        if kind == "tank":
            simulate_tank(folder, seed=seed, runs=size)
        else:
            simulate_water_meter(folder, seed=seed, meters=size, profile=profile)
    session = load_session(folder)
    report, _ = verify_session(session)
    truth = {(i["id"], p["name"]): p for i in session.truth["instruments"] for p in i["points"]}
    near_run = (session.truth.get("near_mpe") or {}).get("run") if kind == "tank" else None
    rows = []
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            true = truth[(instrument["id"], point["name"])]
            near = true.get("near_mpe") or (session.truth["near_mpe"]["kind"] if point["name"] == near_run else "")
            rows.append(
                PointRow(
                    f"{kind}/{profile}",
                    folder.name,
                    instrument["id"],
                    point["name"],
                    point.get("details", {}).get("finest_element", ""),
                    point["verdict"],
                    float(point["error_pct"]),
                    float(true["true_error_pct"]),
                    float(point["uncertainty_pct"]),
                    _reference_u_pct(point) if "details" in point else math.nan,
                    near or "",
                )
            )
    return rows


def _summary(label: str, rows: list[PointRow]) -> str:
    """Coverage and spread ratios over the decided points (an inconclusive point's U is not used
    for a verdict, and one coarse fallback reading would dominate the RMS)."""
    measured = [r for r in rows if math.isfinite(r.error_pct) and r.verdict != "inconclusive"]
    if not measured:
        return f"{label:<28} no measured points"
    delta = np.array([r.delta_pct for r in measured])
    u = np.array([r.u_expanded_pct for r in measured])
    u_reading = np.array([r.u_reading_expanded_pct for r in measured])
    rms = float(np.sqrt(np.mean(delta**2)))
    covered = float(np.mean(np.abs(delta) <= u)) * 100
    covered_reading = float(np.mean(np.abs(delta) <= u_reading)) * 100
    return (
        f"{label:<28} n {len(measured):>3}  RMS(E-Et) {rms:.4f}  max {np.max(np.abs(delta)):.4f}  "
        f"| U: cover {covered:5.1f} %  median(U/2)/RMS {np.median(u) / 2 / rms:5.2f}  "
        f"| U_reading: cover {covered_reading:5.1f} %  median(U_r/2)/RMS {np.median(u_reading) / 2 / rms:5.2f}"
    )


def _groups(rows: list[PointRow], key) -> Iterable[tuple[str, list[PointRow]]]:
    names = sorted({key(r) for r in rows})
    return [(name, [r for r in rows if key(r) == name]) for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1, help="sessions simulated and verified at once (default 1)")
    parser.add_argument("--keep", help="folder to keep (and reuse) the simulated sessions in (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="a few sessions only, to try the script")
    args = parser.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="meterbench-coverage-"))
    root.mkdir(parents=True, exist_ok=True)
    jobs = [
        (kind, profile, seed, size, str(root / f"{profile}-{seed}-{size}"))
        for kind, profile, seed0, sessions, size in (QUICK_PLAN if args.quick else PLAN)
        for seed in range(seed0, seed0 + sessions)
    ]
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        rows = [row for rows in pool.map(_session_rows, jobs) for row in rows]

    inconclusive = [r for r in rows if r.verdict == "inconclusive"]
    print(f"points: {len(rows)} in {len(jobs)} sessions ({root}); inconclusive: {len(inconclusive)}")
    print("coverage of |E - E_true| <= U (k=2) and stated / observed spread (%-points), decided points:")
    print(_summary("all water-meter", [r for r in rows if r.group.startswith("water-meter")]))
    print(_summary("all tank", [r for r in rows if r.group.startswith("tank")]))
    for name, group in _groups(rows, lambda r: r.group):
        print(_summary(name, group))
    for name, group in _groups([r for r in rows if r.element], lambda r: f"{r.group.split('/')[1]} {r.element}"):
        print(_summary(name, group))
    for name, group in _groups([r for r in rows if r.element], lambda r: f"{r.group.split('/')[1]} {r.point}"):
        print(_summary(name, group))
    near = [r for r in rows if r.near_mpe]
    print(f"near-MPE points: {len(near)}")
    for r in near:
        print(
            f"   {r.session} {r.instrument} {r.point} {r.near_mpe:<12} true {r.true_error_pct:+.5f} "
            f"read {r.error_pct:+.5f} U {r.u_expanded_pct:.4f} -> {r.verdict}"
        )
    worst = sorted(rows, key=lambda r: -abs(r.delta_pct) / max(r.u_expanded_pct, 1e-12))[:8]
    print("largest |E - E_true| / U:")
    for r in worst:
        print(
            f"   {r.session} {r.instrument} {r.point} {r.element:<8} E-Et {r.delta_pct:+.4f} U {r.u_expanded_pct:.4f} "
            f"U_reading {r.u_reading_expanded_pct:.4f}"
        )


if __name__ == "__main__":
    main()
