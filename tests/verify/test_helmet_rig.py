"""The helmet rig's own check: reference drops before and after each day's impacts (16 CFR 1203.17(b)(1))."""

import pytest

from meterbench.certificates._record import report_problems
from meterbench.sim import simulate_helmet
from meterbench.verify import verify_helmet_session
from meterbench.verify.report import render_report_html


def _points(report):
    return [p for helmet in report["instruments"] for p in helmet["points"]]


def test_passed_rig_checks_make_the_days_impacts_certifiable(tmp_path):
    report = verify_helmet_session(simulate_helmet(tmp_path / "s", seed=2))
    [check] = report["rig_checks"]
    assert check["day"] == "2026-11-27" and check["certifiable"] is True and report["certifiable"] is True
    for when in ("before", "after"):
        series = check[when]
        assert series["ok"] and [d["name"] for d in series["drops"]] == [f"ref-{when}-{k}" for k in range(1, 7)]
        assert all(392.0 < d["peak_g"] < 408.0 for d in series["drops"])  # 400 g +- 2 g noise, filtered
        assert series["reason"].startswith(f"{when}: rig check ok: last three ")
    assert all(p["details"]["certifiable"] is True for p in _points(report))
    assert not any("not certifiable" in p["reason"] for p in _points(report))
    assert not any(p.startswith("impacts") and "rig check" in p for p in report_problems(report))


@pytest.mark.parametrize(
    ("rig", "why"),
    [
        (
            "drift",
            r"after: rig check failed: reference peak\(s\) (4[34]\d\.\d(, )?){3} g not in 380.0-425.0 g",
        ),
        ("missing", r"rig check missing: no reference drops after the impacts of 2026-11-27"),
    ],
)
def test_a_failed_or_missing_rig_check_marks_the_days_verdicts_and_refuses_certificates(tmp_path, rig, why):
    import re

    report = verify_helmet_session(simulate_helmet(tmp_path / "s", seed=2, rig=rig))
    [check] = report["rig_checks"]
    assert check["certifiable"] is False and report["certifiable"] is False and re.fullmatch(why, check["reason"])
    assert check["before"]["ok"] is True  # the morning series was fine
    points = {p["name"]: p for p in _points(report)}
    assert points["H1-front"]["verdict"] == "pass" and points["H2-left"]["verdict"] == "fail"  # verdicts kept...
    for point in points.values():  # ...and marked
        assert point["details"]["certifiable"] is False and point["details"]["rig_check"] == check["reason"]
        assert point["reason"].endswith(f" [not certifiable: {check['reason']}]")
    assert report["warnings"][0] == f"rig check 2026-11-27: {check['reason']}: that day's impacts are not certifiable"
    helmets = {h["id"]: h for h in report["instruments"]}
    assert helmets["H1"]["warnings"] == [f"impacts of 2026-11-27 not certifiable: {check['reason']}"]
    assert f"report.json: rig check 2026-11-27: {check['reason']}: that day's impacts are not certifiable" in (
        report_problems(report)
    )
    page = render_report_html(report)
    assert "<h2>Rig checks (reference drops)</h2>" in page and "<td>NOT certifiable</td>" in page
    verdict = "FAILED" if rig == "drift" else "MISSING"
    assert "2026-11-27 before: ok</text>" in page and f"2026-11-27 after: {verdict}</text>" in page
    assert page.count('fill="#070"><title>ref-before-') == 6
    assert page.count('fill="#c00"><title>ref-after-') == (6 if rig == "drift" else 0)
    assert report["rig_check_limits"] == {"peak_window_g": [380.0, 425.0], "max_spread_g": 20.0}
    del report["rig_checks"]  # an edited report without its checks
    assert "report.json: rig_checks: missing (a helmet-impact run records its rig checks): not certifiable" in (
        report_problems(report)
    )


def test_certify_refuses_a_run_whose_rig_check_failed(tmp_path):
    from meterbench.certificates import certify_run
    from meterbench.errors import SessionError
    from meterbench.verify import run_session
    from tests.certificates.conftest import make_lab, require_cert

    require_cert()
    lab = make_lab(tmp_path / "lab")
    run = tmp_path / "run"
    run_session(simulate_helmet(tmp_path / "s", seed=2, rig="drift"), run)
    with pytest.raises(SessionError, match=r"rig check 2026-11-27: after: rig check failed: .*not certifiable"):
        certify_run(run, lab.key, lab.toml, run / "certs", technician_id="tech-01")
    assert not (run / "certs").exists() and sorted(p.name for p in run.iterdir()) == ["report.html", "report.json"]


def test_a_reference_drop_outside_its_velocity_fails_the_series(tmp_path):
    import json

    folder = simulate_helmet(tmp_path / "s", seed=2)
    manifest = json.loads((folder / "session.json").read_text())
    manifest["reference_drops"][1]["velocity_m_s"] = 5.56  # 2.2 % over 5.44 m/s
    (folder / "session.json").write_text(json.dumps(manifest))
    (folder / "hashes.json").unlink()  # an edited session stands as an unclosed recording
    [check] = verify_helmet_session(folder)["rig_checks"]
    assert check["certifiable"] is False and check["after"]["ok"] is True
    assert check["reason"] == (
        "before: rig check failed: reference drop(s) unusable: ref-before-2: velocity 5.560 m/s not 5.44 m/s +- 2 %"
    )
