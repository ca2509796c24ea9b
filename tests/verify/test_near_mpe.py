"""The decision rule where it matters: simulated points just inside, exactly at and just outside the MPE.

Each session is run through `run_session` with its decision rule (the simulator writes
"simple"; a copy with "guard-band" is the same recording re-verified under the guarded
rule; for the long water-meter session the guarded verdicts are re-decided from the
engine's E and U, see its test). Point by point, against truth.json:

- the measured error E is within the engine's accuracy of the true error (a few
  thousandths of a %-point, far tighter than U);
- the verdict is the one the rule gives for E, MPE and U (written out here, not
  taken from `calibration.decide`);
- no point whose true error is beyond MPE + U passes, none within MPE - U fails;
- under the guarded rule a point whose true error is within U of the MPE (by more
  than the engine's accuracy) is inconclusive.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meterbench.sim import simulate_tank, simulate_water_meter
from meterbench.verify.run import run_session

#: Water-meter seed 40 with 4 meters: M2 Q1 just outside, M3 Q1 exactly at, M4 Q2 just inside the MPE.
WATER_METER_SEED, WATER_METER_METERS = 40, 4
#: Tank seeds whose run R1 is exactly at (18), just inside (24) and just outside (29) the MPE.
TANK_SEEDS = (18, 24, 29)
#: |E - E_true| bound (%-points): benchmarks/coverage.py measured max 0.0079 over 84 standard-profile
#: points (RMS 0.0030) and 0.0042 over 40 tank runs (RMS 0.0013); the bounds are 1.5x that, and
#: 9x (water meter) / 3.5x (tank) below U.
WATER_METER_TOLERANCE_PCT = 0.012
TANK_TOLERANCE_PCT = 0.006
NEAR_KINDS = {"just-inside", "at-mpe", "just-outside"}


def _with_rule(session: Path, rule: str, tmp: Path) -> Path:
    """A copy of the recorded session whose manifest asks for `rule`."""
    if rule == "simple":
        return session
    copy = tmp / f"{session.name}-{rule}"
    shutil.copytree(session, copy)
    manifest = json.loads((copy / "session.json").read_text())
    manifest["decision_rule"] = rule
    (copy / "session.json").write_text(json.dumps(manifest, indent=2))
    (copy / "hashes.json").unlink(missing_ok=True)  # else the edited session.json reads as tampered: no verdict
    return copy


def _expected_verdict(rule: str, error: float, mpe: float, u: float) -> str:
    """ILAC-G8 as docs/metrology.md states it; U > MPE/3 never occurs here (asserted)."""
    if rule == "simple":
        return "pass" if abs(error) <= mpe else "fail"
    if abs(error) <= mpe - u:
        return "pass"
    return "fail" if abs(error) > mpe + u else "inconclusive"


def _near_kind(truth: dict, instrument: dict, point: dict) -> str | None:
    if "near_mpe" in point:  # water meter: per point
        return point["near_mpe"]
    near = truth.get("near_mpe")  # tank: one run
    return near["kind"] if near and near["run"] == point["name"] else None


def _points(session: Path, out: Path) -> list[tuple[dict, dict, str | None]]:
    """(report point, truth point, near kind) for every point of the verified session."""
    report = run_session(session, out)
    truth = json.loads((session / "truth.json").read_text())
    truth_points = {(i["id"], p["name"]): (i, p) for i in truth["instruments"] for p in i["points"]}
    rows = []
    for instrument in report["instruments"]:
        for point in instrument["points"]:
            true_instrument, true_point = truth_points[(instrument["id"], point["name"])]
            rows.append((point, true_point, _near_kind(truth, true_instrument, true_point)))
    return rows


def _check(rows: list[tuple[dict, dict, str | None]], rule: str, tolerance: float) -> set[str]:
    """Assert the module's rules on every point; return the near-MPE kinds seen."""
    kinds = set()
    for point, true, near in rows:
        label = (point["name"], near, rule)
        error, mpe, u, true_error = (
            point["error_pct"],
            point["mpe_pct"],
            point["uncertainty_pct"],
            true["true_error_pct"],
        )
        assert u <= mpe / 3, label  # otherwise every rule says "inconclusive" and nothing is tested
        assert abs(error - true_error) <= tolerance, label
        assert point["verdict"] == _expected_verdict(rule, error, mpe, u), (label, error, mpe, u, point["reason"])
        if abs(true_error) > mpe + u:
            assert point["verdict"] != "pass", label
        if abs(true_error) < mpe - u:
            assert point["verdict"] != "fail", label
        if rule != "simple" and abs(abs(true_error) - mpe) < u - tolerance:
            assert point["verdict"] == "inconclusive", label
        if near is not None:
            kinds.add(near)
            if near == "at-mpe":
                assert abs(true_error) == mpe, label  # exactly at it, as truth.json says
            side = {"just-inside": -1, "at-mpe": 0, "just-outside": 1}[near]
            assert (abs(true_error) > mpe) - (abs(true_error) < mpe) == side, label
            assert 0 <= abs(abs(true_error) - mpe) < u, label  # within U of the MPE
    return kinds


@pytest.fixture(scope="module")
def water_meter_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("near") / f"wm-seed{WATER_METER_SEED}"
    return simulate_water_meter(folder, seed=WATER_METER_SEED, meters=WATER_METER_METERS, profile="standard")


@pytest.fixture(scope="module")
def tank_sessions(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("near-tank")
    return [simulate_tank(root / f"tank-seed{seed}", seed=seed, runs=2) for seed in TANK_SEEDS]


@pytest.fixture(scope="module")
def water_meter_rows(water_meter_session: Path, tmp_path_factory: pytest.TempPathFactory) -> list:
    """The 4-meter standard session verified once by the engine (simple rule): ~2 min of reading."""
    return _points(water_meter_session, tmp_path_factory.mktemp("near-out") / "out")


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["simple", "guard-band"])
def test_water_meter_decisions_near_the_mpe(water_meter_rows: list, rule: str) -> None:
    """E and U do not depend on the rule, so the guarded case re-decides the engine's own E, MPE and U
    (by the rule written out above) instead of reading the recording a second time; the engine's
    guarded path itself runs on the tank sessions below. What it still checks: the engine's E is
    close enough to the truth that every point within U of the MPE comes out inconclusive."""
    rows = water_meter_rows
    if rule != "simple":
        rows = [
            ({**p, "verdict": _expected_verdict(rule, p["error_pct"], p["mpe_pct"], p["uncertainty_pct"])}, t, n)
            for p, t, n in rows
        ]
    kinds = _check(rows, rule, WATER_METER_TOLERANCE_PCT)
    assert kinds == NEAR_KINDS


@pytest.mark.parametrize("rule", ["simple", "guard-band"])
def test_tank_decisions_near_the_mpe(tank_sessions: list[Path], rule: str, tmp_path: Path) -> None:
    kinds = set()
    for session in tank_sessions:
        kinds |= _check(_points(_with_rule(session, rule, tmp_path), tmp_path / session.name), rule, TANK_TOLERANCE_PCT)
    assert kinds == NEAR_KINDS
