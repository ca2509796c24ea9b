"""Shortest Q3/Q2/Q1 verification sequence for a DN15 meter (issue 3 target).

DN15, Q3 = 2.5 m³/h, R = 100, class 2, water 20 °C: per point, the smallest
bench volume whose reading uncertainty (start + stop reading, each d/√12,
expanded k = 2) stays <= 1/10 of the MPE, for several register reading
resolutions d, with 30 s settling per point. The second block adds an assumed
timing uncertainty of a flying reading (u_t per reading, vs the reference
latch) and a 10 s minimum run, to show what limits the sequence in practice.

Run: python benchmarks/test_plan.py   (not a pytest file: it has no tests)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone, uninstalled

from meterbench.calibration import (  # noqa: E402
    TestPlan,
    format_test_plan,
    plan_test_volumes,
    water_meter_flows,
)

RESOLUTIONS_L = (0.1, 0.01, 0.001, 0.0005)
LAB_REFERENCE_MIN = 21.0  # the modelled lab's water-meter test time, reading by eye / camera at rest


def _summary(label: str, plans: dict[float, TestPlan]) -> list[str]:
    lines = [
        label,
        f"{'d (L)':>8} {'Q3 V (L)':>9} {'Q2 V (L)':>9} {'Q1 V (L)':>9} {'total (s)':>10} {'total (min)':>11}",
    ]
    for d, plan in plans.items():
        q3, q2, q1 = plan.points
        lines.append(
            f"{d:>8g} {q3.volume_l:>9g} {q2.volume_l:>9g} {q1.volume_l:>9g} "
            f"{plan.total_duration_s:>10.0f} {plan.total_duration_s / 60:>11.1f}"
        )
    return lines


def main() -> None:
    flows = water_meter_flows(2.5, 100)
    print(
        f"DN15 Q3 = 2.5 m3/h R = 100 class 2: Q1 = {flows.q1:g}, Q2 = {flows.q2:g}, "
        f"Q4 = {flows.q4:g} m3/h; reference meter U = 0.1 % (k=2); 30 s settling per point\n"
    )
    pure = {d: plan_test_volumes(flows, 2, reading_resolution_l=d) for d in RESOLUTIONS_L}
    for d, plan in pure.items():
        print(f"reading resolution d = {d:g} L")
        print(format_test_plan(plan), end="\n\n")
    practical = {
        d: plan_test_volumes(flows, 2, reading_resolution_l=d, timing_u_s=0.01, min_duration_s=10.0)
        for d in RESOLUTIONS_L
    }
    for line in _summary("resolution only (issue 3 criterion):", pure):
        print(line)
    print()
    for line in _summary("with timing u = 10 ms per flying reading and >= 10 s runs (assumed):", practical):
        print(line)
    print(f"\nlab reference: {LAB_REFERENCE_MIN:g} min per test (reading by eye / camera at rest)")


if __name__ == "__main__":
    main()
