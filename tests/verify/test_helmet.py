"""`meterbench run` on simulated helmet-impact sessions: verdicts and features against truth.json."""

import base64
import hashlib
import json
import re

import pytest

from meterbench.cli import main
from meterbench.errors import SessionError
from meterbench.sim import simulate_helmet
from meterbench.verify import run_session, verify_helmet_session

# measured over seeds 0-9: peak 0.17 %, HIC 0.23 %, dwell 0.003 ms off the noiseless pulse's features
PEAK_REL_TOL, HIC_REL_TOL, DWELL_ABS_TOL_MS = 0.004, 0.005, 0.01


def _points(report: dict) -> dict[str, dict]:
    return {p["name"]: p for helmet in report["instruments"] for p in helmet["points"]}


def _truth(folder) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads((folder / "truth.json").read_text())["impacts"]}


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_run_gives_truths_verdicts_and_features(tmp_path, seed):
    folder = simulate_helmet(tmp_path / "s", seed=seed)
    report = run_session(folder, tmp_path / "out")
    assert json.loads((tmp_path / "out/report.json").read_text())["verdict"] == report["verdict"] == "fail"
    page = (tmp_path / "out/report.html").read_text()
    plots = [base64.b64decode(s).decode() for s in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)]
    assert len(plots) == 14 and all(p.startswith("<svg") and "peak limit 400 g" in p for p in plots)
    assert "150 g: at most 4 ms above" in plots[0] and "200 g: at most 2 ms above" in plots[0]
    assert "H2 H2-front: fail, peak" in page  # each plot's caption
    truth, points = _truth(folder), _points(report)
    assert set(points) == set(truth)
    for name, point in points.items():
        true = truth[name]
        if point["verdict"] != "inconclusive":
            assert point["verdict"] == true["verdict"], name
        if true["clipped"] or true["dead_channel"]:
            continue
        details = point["details"]
        assert details["peak_g"] == pytest.approx(true["peak_g"], rel=PEAK_REL_TOL), name
        assert details["hic"] == pytest.approx(true["hic"], rel=HIC_REL_TOL), name
        for level in ("150", "200"):
            assert details["dwell_ms"][level] == pytest.approx(true["dwell_ms"][level], abs=DWELL_ABS_TOL_MS), name
    near = {n: points[n]["verdict"] for n in truth if truth[n]["near_limit"]}
    assert near == {"H1-left": "pass", "H2-front": "fail", "H2-rear": "inconclusive"}  # 1.9 % off, 0.75 % off
    assert "within U of the limit: peak_g" in points["H2-rear"]["reason"]
    assert points["H2-front"]["details"]["margins"]["peak_g"]["margin"] == pytest.approx(
        400.0 - points["H2-front"]["details"]["peak_g"]
    )
    assert points["H3-front"]["verdict"] == "inconclusive"
    assert points["H3-front"]["reason"].startswith("velocity out of window: 6.350 m/s not in 5.8-6.2 m/s")
    assert points["H3-rear"]["verdict"] == "inconclusive" and "trace clipped" in points["H3-rear"]["reason"]
    assert points["H3-left"]["verdict"] == "inconclusive" and points["H3-left"]["reason"] == "dead channel(s) 1"
    assert points["H4-rear"]["verdict"] == "inconclusive"
    assert points["H4-rear"]["reason"].startswith("void: out of the hot conditioning 4.60 min before the drop > 4 min")
    assert "(measured: pass;" in points["H4-rear"]["reason"] and points["H4-rear"]["details"]["void"]
    assert points["H5-rear"]["verdict"] == "pass"  # 3.83 min out: within 4 min
    verdicts = {h["id"]: h["verdict"] for h in report["instruments"]}
    assert verdicts == {"H1": "pass", "H2": "fail", "H3": "inconclusive", "H4": "inconclusive", "H5": "pass"}
    models = {m["model"]: m for m in report["helmet_models"]}
    assert {m: v["verdict"] for m, v in models.items()} == {"SIM-FF1": "fail", "SIM-FF2": "inconclusive"}
    assert models["SIM-FF2"]["impacts"] == {"pass": 3, "fail": 0, "inconclusive": 1, "void": 1}
    assert models["SIM-FF2"]["helmets"] == ["H4", "H5"]
    assert report["profile_values"]["max_minutes_out_of_chamber"]["provenance"] == "SRC"
    h1 = report["instruments"][0]
    assert (h1["kind"], h1["model"], h1["serial"], h1["profile"]) == ("helmet", "SIM-FF1", "SIM-H1", "fmvss-218")
    assert report["bench_kind"] == "helmet-impact" and report["simulated"] is True
    assert "traces/H1-front.csv" in report["inputs"]
    assert any(w.startswith("[MEM] helmet.peak_u_rel_pct") for w in report["warnings"])
    assert not any("cns-13371" in w for w in report["warnings"])  # only this session's profile


def test_an_unreadable_trace_costs_only_its_impact(tmp_path):
    folder = simulate_helmet(tmp_path / "s", seed=3)
    manifest = json.loads((folder / "session.json").read_text())
    entry = manifest["impacts"][3]  # H1-right: a trace file intact (its hash recorded) but not a trace
    data = b"not,a,trace\n"
    (folder / entry["trace"]).write_bytes(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "session.json").write_text(json.dumps(manifest))
    (folder / "hashes.json").unlink()
    points = _points(verify_helmet_session(folder))
    assert points["H1-right"]["verdict"] == "inconclusive"
    assert points["H1-right"]["reason"].startswith("trace unreadable: traces/H1-right.csv: columns not,a,trace")
    assert points["H1-front"]["verdict"] == "pass"  # the others keep their verdicts


def test_a_configured_chamber_limit_voids_more_and_a_void_fail_is_no_fail(tmp_path):
    folder = simulate_helmet(tmp_path / "s", seed=5)
    manifest = json.loads((folder / "session.json").read_text())
    manifest["helmet_table"] = {"profiles": {"fmvss-218": {"max_minutes_out_of_chamber": 3.0}}}
    by_name = {i["name"]: i for i in manifest["impacts"]}
    by_name["H2-front"].update(conditioning="cold", out_of_chamber_s=200.0)  # a fail, 3.33 min out
    by_name["H2-left"].update(conditioning="cold")  # a fail with no timer
    (folder / "session.json").write_text(json.dumps(manifest))
    (folder / "hashes.json").unlink()  # an edited session stands as an unclosed recording
    report = verify_helmet_session(folder)
    points = _points(report)
    assert points["H5-rear"]["reason"].startswith("void: out of the cold conditioning 3.83 min before the drop > 3 min")
    assert points["H5-front"]["verdict"] == "pass"  # 2.33 min
    assert points["H2-front"]["verdict"] == "inconclusive" and "(measured: fail;" in points["H2-front"]["reason"]
    assert points["H2-left"]["reason"].startswith("void: no conditioning timer (out_of_chamber_s) recorded")
    verdicts = {h["id"]: h["verdict"] for h in report["instruments"]}
    assert verdicts["H2"] == "inconclusive" and verdicts["H5"] == "inconclusive"  # not fail, not pass
    assert report["profile_values"]["max_minutes_out_of_chamber"]["provenance"] == "CFG"
    assert any(
        w.startswith("[CFG] helmet.profiles.fmvss-218.max_minutes_out_of_chamber = 3.0") for w in report["warnings"]
    )
    assert {m["model"]: m["verdict"] for m in report["helmet_models"]} == {
        "SIM-FF1": "inconclusive",
        "SIM-FF2": "inconclusive",
    }


def test_bad_session_json_is_a_one_line_user_error(tmp_path, capsys):
    folder = simulate_helmet(tmp_path / "s", seed=0)
    manifest = json.loads((folder / "session.json").read_text())
    manifest["impacts"][2]["helmet"] = "H9"
    (folder / "session.json").write_text(json.dumps(manifest))
    with pytest.raises(
        SessionError, match=r"impacts\[2\]\.helmet: expected the id of an entry of helmets\[\], got \"H9\""
    ):
        verify_helmet_session(folder)
    assert main(["run", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
