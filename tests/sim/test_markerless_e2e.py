"""Issue 11 item 6 end to end, as a user would, without fiducials: a bench fixture's first run is
simulated (`simulate --markerless --fixture-seed`: camera shift, small rotation, slow drift,
changing light); `layout propose` makes the layout from the run's reference photo; `layout teach
--layout` teaches it on that first run; a second run of another meter under the same fixture,
recorded with the taught layout (`--register M1=taught.json`), is verified by `run` and `batch`:
every point within 0.05 %-points of the truth, 0 wrong verdicts, and the corrections it is read
with were taught from another run (never the verified one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meterbench.cli import main

# the bench fixture is 7 (--fixture-seed): register type, camera and reference photo of position M1
TEACH_FPS = 4.0  # frames/s of the first run: teaching needs frames all over the turns, not their rate
FPS = 10.0  # the verified run: at Q3 the 1 L/turn dial turns slowly enough between frames to be read


def _errors(report: dict) -> dict[str, float | None]:
    return {p["name"]: p.get("error_pct") for p in report["instruments"][0]["points"]}


@pytest.mark.slow
def test_propose_teach_run_and_batch_without_fiducials(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    sim = ["simulate", "water-meter", "--meters", "1", "--profile", "short", "--markerless"]
    assert main([*sim, "--out", str(first), "--seed", "1", "--fps", str(TEACH_FPS), "--fixture-seed", "7"]) == 0
    proposed, taught = tmp_path / "proposed.json", tmp_path / "taught.json"
    photo = first / "cameras" / "cam-M1-reference.png"
    # the simulated register: m³ wheels (1000 L a step of the lowest black one), dials of 0.1 and 0.01 L
    args = ["layout", "propose", str(photo), "--out", str(proposed), "--wheel-litres", "1000"]
    assert main([*args, "--dial-litres", "0.1,0.01", "--overlay", str(tmp_path / "overlay.png")]) == 0
    truth_register = json.loads((first / "session.json").read_text())["instruments"][0]["register"]
    drafted = json.loads(proposed.read_text())
    assert [(e["name"], e["litres_per_turn"]) for e in drafted["elements"]] == [
        (e["name"], e["litres_per_turn"]) for e in truth_register["elements"]
    ]
    assert (
        main(["layout", "teach", str(first), "--instrument", "M1", "--layout", str(proposed), "--out", str(taught)])
        == 0
    )
    block = json.loads(taught.read_text())["taught"]
    first_id = json.loads((first / "session.json").read_text())["session_id"]
    assert block["session_id"] == first_id and block["frames_used"] > 100

    again = ["--out", str(second), "--seed", "5", "--fps", str(FPS), "--fixture-seed", "7"]
    assert main([*sim, *again, "--register", f"M1={taught}"]) == 0
    manifest = json.loads((second / "session.json").read_text())
    register = manifest["instruments"][0]["register"]
    assert manifest["session_id"] != first_id and register["taught"]["session_id"] == first_id
    assert (second / register["reference"]["image"]).read_bytes() == photo.read_bytes()  # the fixture's photo
    assert main(["run", str(second), "--out", str(tmp_path / "run")]) == 0
    assert main(["batch", str(second), "--out", str(tmp_path / "batch")]) == 0
    run = json.loads((tmp_path / "run" / "report.json").read_text())
    batched = json.loads(next((tmp_path / "batch").rglob("report.json")).read_text())
    truth = json.loads((second / "truth.json").read_text())["instruments"][0]
    true_errors = {p["name"]: p["true_error_pct"] for p in truth["points"]}
    for report in (run, batched):
        (meter,) = report["instruments"]
        assert meter["verdict"] == truth["true_verdict"]
        assert [p["verdict"] for p in meter["points"]] == [p["true_verdict"] for p in truth["points"]]
        errors = _errors(report)
        assert max(abs(errors[name] - true) for name, true in true_errors.items()) <= 0.05, (errors, true_errors)
        assert not any("taught from this very session" in (p["reason"] or "") for p in meter["points"])
    assert _errors(batched) == _errors(run)
