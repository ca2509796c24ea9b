"""evaluate_tank_session on small simulated sessions, against truth.json."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from meterbench.session import load_session
from meterbench.sim import simulate_tank
from meterbench.verify.tank import evaluate_tank_session, tank_figures


@pytest.fixture(scope="module")
def failing_tank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seed 3: tank error about -0.17 %, beyond the 0.1 % (one division) MPE."""
    return simulate_tank(tmp_path_factory.mktemp("tank") / "s3", seed=3, runs=2)


def _truth(folder: Path) -> dict[str, float]:
    truth = json.loads((folder / "truth.json").read_text())
    return {p["name"]: p["true_error_pct"] for p in truth["instruments"][0]["points"]}


def _edited_copy(folder: Path, tmp_path: Path, **tank_fields: object) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "session.json").read_text())
    manifest["tanks"][0].update(tank_fields)
    (copy / "session.json").write_text(json.dumps(manifest))
    return copy


def test_errors_match_truth_and_verdicts_are_right(failing_tank: Path) -> None:
    session = load_session(failing_tank)
    [tank] = evaluate_tank_session(session)
    truth = _truth(failing_tank)
    assert tank["id"] == "T1" and tank["kind"] == "tank"
    assert [p["name"] for p in tank["points"]] == ["R1", "R2"]
    for point in tank["points"]:
        assert abs(point["error_pct"] - truth[point["name"]]) < 0.02
        assert point["verdict"] == ("fail" if abs(truth[point["name"]]) > point["mpe_pct"] else "pass")
        assert point["mpe_pct"] == pytest.approx(0.1)
        assert 0 < point["uncertainty_pct"] < point["mpe_pct"] / 3
        assert point["reference_volume"] == pytest.approx(20.0, abs=0.1)
        assert point["flow_rate"] == pytest.approx(2.4)
        assert point["details"]["frames_read"] >= 3
    assert tank["verdict"] == "fail"
    assert any("configurable default" in w for w in tank["warnings"])


def test_figures_show_each_run(failing_tank: Path) -> None:
    session = load_session(failing_tank)
    instruments = evaluate_tank_session(session)
    figures = tank_figures(session, instruments)
    assert len(figures["T1"]) == 2
    assert all(src.startswith("data:image/png;base64,") for src in figures["T1"].values())
    crop = instruments[0]["points"][0]["_figure"]
    assert crop.ndim == 3 and crop.dtype == np.uint8


def test_short_drain_makes_the_run_inconclusive(failing_tank: Path, tmp_path: Path) -> None:
    session = load_session(_edited_copy(failing_tank, tmp_path, drain_time_s=90.0))
    [tank] = evaluate_tank_session(session)
    assert {p["verdict"] for p in tank["points"]} == {"inconclusive"}
    assert "needs 90 s" in tank["points"][0]["reason"]
    assert math.isnan(tank["points"][0]["error_pct"])
    assert tank["verdict"] == "inconclusive"


def test_unsettled_surface_is_not_read(failing_tank: Path, tmp_path: Path) -> None:
    session = load_session(_edited_copy(failing_tank, tmp_path, settle_time_s=0.4))
    [tank] = evaluate_tank_session(session)
    assert tank["points"][0]["verdict"] == "inconclusive"
    assert "inconsistent" in tank["points"][0]["reason"]


def test_bad_tank_field_is_a_one_line_error(failing_tank: Path, tmp_path: Path) -> None:
    session = load_session(_edited_copy(failing_tank, tmp_path, material="glass"))
    with pytest.raises(ValueError, match=r"tanks\[0\]\.material: .*'glass'"):
        evaluate_tank_session(session)
