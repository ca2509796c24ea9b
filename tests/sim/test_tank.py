"""Tank simulator: determinism, a valid session folder, truth consistent with the seeded tank."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from meterbench import calibration
from meterbench.devices.serial_totaliser import parse_totaliser_line
from meterbench.session import load_session
from meterbench.sim import simulate_tank
from meterbench.sim.tank import NEAR_BAND_PCT, sample_tank_error_pct
from meterbench.sim.tank_render import NeckRenderConditions, render_neck
from meterbench.vision import NeckScaleGeometry

PLAIN_CAMERA = NeckRenderConditions(noise_sigma=1.0)


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return simulate_tank(tmp_path_factory.mktemp("tank") / "s", seed=4, runs=1, conditions=PLAIN_CAMERA)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_the_same_folder(session_dir: Path, tmp_path: Path) -> None:
    again = simulate_tank(tmp_path / "again", seed=4, runs=1, conditions=PLAIN_CAMERA)
    assert _files(again) == _files(session_dir)


def test_session_loads_and_has_the_tank_bench_parts(session_dir: Path) -> None:
    session = load_session(session_dir)
    assert session.bench_kind == "tank"
    assert [t["id"] for t in session.tanks] == ["T1"]
    assert NeckScaleGeometry.from_dict(session.tanks[0]["scale"])
    assert session.camera("cam-T1").frame_count > 20
    lines = session.device_events("ref-meter")
    parsed, error = parse_totaliser_line(lines[5].raw.encode("latin-1"))
    assert error is None and parsed == lines[5].parsed
    events = [e.parsed for e in session.device_events("controller") if e.topic.endswith("/event")]
    kinds = [(e["event"], e.get("valve"), e.get("state")) for e in events]
    assert ("point_start", None, None) in kinds and ("point_stop", None, None) in kinds
    assert ("valve_set", "drain", "open") in kinds and ("valve_set", "slow_fill", "open") in kinds
    assert sum(p.stat().st_size for p in session_dir.rglob("*") if p.is_file()) < 3_000_000


def test_truth_matches_the_seeded_tank_error(session_dir: Path) -> None:
    truth = json.loads((session_dir / "truth.json").read_text())
    point = truth["instruments"][0]["points"][0]
    assert truth["tank_error_pct"] == pytest.approx(sample_tank_error_pct(np.random.default_rng(4), truth["mpe_pct"]))
    # both volumes at 20 °C: E = (V_nominal - V0) / (V0 + r), r the level at the reading
    v0_l = truth["tank_volume_at_nominal_mark_20c_l"]
    expected = (20.0 - v0_l) / (v0_l + point["true_level_ml"] / 1000) * 100
    assert point["true_error_pct"] == pytest.approx(expected, abs=1e-9)
    assert -200.0 < point["true_level_ml"] < 200.0
    again = calibration.tank_error(
        20.0 + point["true_level_ml"] / 1000,
        point["delivered_l"],
        point["meter_temperature_c"],
        point["tank_temperature_c"],
        "stainless-steel",
    )
    assert again.error_pct == pytest.approx(point["true_error_pct"], abs=1e-12)


def test_render_puts_the_meniscus_where_the_level_says() -> None:
    geometry = NeckScaleGeometry()
    low, high = (
        render_neck(level, geometry, NeckRenderConditions(noise_sigma=0.0)) for level in (0.0, geometry.ml_per_division)
    )
    column = low[:, int(geometry.glass_centre_x_px), 1].astype(float)
    row = int(geometry.zero_mark_y_px)
    assert column[row - 2] < column[row - 8] - 50  # dark meniscus band just above the mark
    assert not np.array_equal(low, high)


def test_runs_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runs: expected >= 1"):
        simulate_tank(tmp_path / "x", runs=0)


@pytest.mark.parametrize(("seed", "kind"), [(18, "at-mpe"), (24, "just-inside"), (29, "just-outside")])
def test_near_mpe_tanks_meet_their_target(tmp_path: Path, seed: int, kind: str) -> None:
    """A near-MPE tank: V0 is solved so that R1's true error is the target, and the stored volumes
    and level give it back (to float resolution); "at-mpe" is exactly at the MPE."""
    folder = simulate_tank(tmp_path / "near", seed=seed, runs=1, conditions=PLAIN_CAMERA)
    truth = json.loads((folder / "truth.json").read_text())
    point = truth["instruments"][0]["points"][0]
    mpe = truth["mpe_pct"]
    assert truth["near_mpe"] == {"run": "R1", "kind": kind, "true_error_pct": point["true_error_pct"]}
    v0_l = truth["tank_volume_at_nominal_mark_20c_l"]
    recomputed = (20.0 - v0_l) / (v0_l + point["true_level_ml"] / 1000) * 100
    assert recomputed == pytest.approx(point["true_error_pct"], abs=1e-9)
    distance = abs(point["true_error_pct"]) - mpe
    if kind == "at-mpe":
        assert distance == 0.0
    else:
        assert 0 < (distance if kind == "just-outside" else -distance) < NEAR_BAND_PCT
