"""The simulated helmet-impact session: its folder, traces and truth."""

import json

import numpy as np
import pytest

from meterbench.calibration import analyse_impact
from meterbench.cli import main
from meterbench.session.traces import read_trace
from meterbench.sim import simulate_helmet


def test_session_folder_names_every_impact_and_its_trace(tmp_path):
    folder = simulate_helmet(tmp_path / "s", seed=1)
    manifest = json.loads((folder / "session.json").read_text())
    truth = json.loads((folder / "truth.json").read_text())
    assert manifest["bench_kind"] == "helmet-impact" and manifest["profile"] == "fmvss-218"
    assert [h["id"] for h in manifest["helmets"]] == ["H1", "H2", "H3", "H4", "H5"]
    assert [h["model"] for h in manifest["helmets"]] == ["SIM-FF1"] * 3 + ["SIM-FF2"] * 2
    assert all(h["model"] and h["size"] and h["lot"] and h["serial"] for h in manifest["helmets"])
    assert [i["name"] for i in manifest["impacts"]] == [t["name"] for t in truth["impacts"]]
    for impact in manifest["impacts"]:
        trace = read_trace(folder / impact["trace"], fs_hz=impact["fs_hz"])
        assert impact["trace"].startswith("traces/") and impact["units"] == "g"
        assert trace.fs_hz == 20000.0 and trace.accel_g.shape == (1000, 3)  # 3 axes, 50 ms
    verdicts = [t["verdict"] for t in truth["impacts"]]
    assert verdicts.count("pass") >= 4 and verdicts.count("fail") >= 3 and verdicts.count("inconclusive") == 2
    assert sum(t["near_limit"] for t in truth["impacts"]) == 3
    assert [t["name"] for t in truth["impacts"] if t["clipped"]] == ["H3-rear"]
    assert [i["name"] for i in manifest["impacts"] if not 5.8 <= i["velocity_m_s"] <= 6.2] == ["H3-front"]
    timed = {
        i["name"]: (i["conditioning"], i["out_of_chamber_s"]) for i in manifest["impacts"] if "out_of_chamber_s" in i
    }
    assert timed == {
        "H4-front": ("hot", 95.0),
        "H4-rear": ("hot", 276.0),
        "H5-front": ("cold", 140.0),
        "H5-rear": ("cold", 230.0),
    }
    assert [t["name"] for t in truth["impacts"] if t["void"]] == ["H4-rear"]  # 4.6 min > 4 min


def test_traces_carry_noise_offset_and_clipping_truth_is_the_clean_pulse(tmp_path):
    folder = simulate_helmet(tmp_path / "s", seed=2)
    manifest = json.loads((folder / "session.json").read_text())
    truth = {t["name"]: t for t in json.loads((folder / "truth.json").read_text())["impacts"]}
    clean = read_trace(folder / "traces/H1-front.csv").accel_g
    rest = clean[:200]
    assert 0.3 < float(np.std(rest[:, 0])) < 0.7  # 0.5 g rms noise
    assert np.any(np.abs(np.median(rest, axis=0)) > 0.05)  # an offset
    clipped = read_trace(folder / "traces/H3-rear.csv").accel_g
    assert float(clipped.max()) == 450.0 and analyse_impact(clipped, 20000.0).clipped
    assert truth["H3-rear"]["peak_g"] == pytest.approx(520.0, rel=2e-3)  # the pulse before the ADC
    assert truth["H1-left"]["peak_g"] == pytest.approx(392.5, rel=2e-3)
    assert manifest["impacts"][0]["fs_hz"] == 20000.0


def test_same_seed_same_session_other_seed_other_noise(tmp_path):
    a, b, c = (simulate_helmet(tmp_path / n, seed=s) for n, s in (("a", 4), ("b", 4), ("c", 5)))
    assert (a / "traces/H2-left.csv").read_bytes() == (b / "traces/H2-left.csv").read_bytes()
    assert (a / "traces/H2-left.csv").read_bytes() != (c / "traces/H2-left.csv").read_bytes()


def test_cli_simulate_helmet_refuses_a_folder_holding_a_session(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["simulate", "helmet", "--out", str(out), "--seed", "3"]) == 0
    before = (out / "session.json").read_bytes()
    assert main(["simulate", "helmet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a session already" in err[0]
    assert (out / "session.json").read_bytes() == before
