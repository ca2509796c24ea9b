"""certify on helmet-impact runs (`meterbench simulate helmet` -> `meterbench run`): one certificate per
helmet with its impacts, the profile's limits and their provenance, the rig checks; refused when the
day's rig check failed or is missing, or the report was changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from meterbench.certificates import certify_run, verify_code, verify_file
from meterbench.errors import ConfigError, SessionError

from .conftest import edit_report, make_lab, require_cert

require_cert()

HELMET_LAB = """
[[benches]]
id = "helmet-rig"
name = "helmet impact rig (simulated)"
location = "hall 1"
reference_standards = ["accel-1"]

[[reference_standards]]
id = "accel-1"
description = "headform accelerometer channel (simulated)"
serial = "ACC-0001"
calibration_certificate = "CAL-EXAMPLE-2026-077 (fictitious)"
expanded_uncertainty_pct = {u}
coverage_factor = 2.0
due_date = 2027-06-30
"""


def _helmet_lab(folder: Path, accelerometer_u_pct: float = 1.5):
    """The sample lab plus a helmet rig whose reference standard is the accelerometer (U of peak g)."""
    lab = make_lab(folder)
    lab.toml.write_text(lab.toml.read_text(encoding="utf-8") + HELMET_LAB.format(u=accelerometer_u_pct), "utf-8")
    return lab


def _simulated_run(root: Path, **kwargs) -> tuple[Path, Path]:
    from meterbench.sim.helmet import simulate_helmet
    from meterbench.verify import run_session

    session = simulate_helmet(root / "session", seed=0, **kwargs)
    run_session(session, root / "run")
    return session, root / "run"


@pytest.fixture(scope="module")
def helmet_master(tmp_path_factory) -> tuple[Path, Path]:
    """(session, run) of `meterbench simulate helmet --seed 0` verified, once for the module."""
    return _simulated_run(tmp_path_factory.mktemp("helmet"))


@pytest.fixture
def helmet_run(helmet_master, tmp_path) -> tuple[Path, Path]:
    session, run = helmet_master
    return session, Path(shutil.copytree(run, tmp_path / "run"))


def _certify(lab, run: Path, session: Path | None, out: Path | None = None, **kwargs):
    return certify_run(
        run, lab.key, lab.toml, out, bench_id="helmet-rig", technician_id="tech-01", session_dir=session, **kwargs
    )


def _nothing_written(lab, out: Path) -> None:
    assert not lab.register.exists()
    assert not out.exists() or not any(out.glob("certificate-*"))


def test_a_certificate_per_helmet_with_its_impacts_limits_and_rig_checks_that_verifies(helmet_run, tmp_path):
    session, run = helmet_run
    lab = _helmet_lab(tmp_path / "lab")
    out = tmp_path / "certs"
    issued = _certify(lab, run, session, out)
    assert [(c.number, c.instrument_id, c.verdict) for c in issued] == [
        (1, "H1", "pass"),
        (2, "H2", "fail"),
        (3, "H3", "inconclusive"),
        (4, "H4", "inconclusive"),
        (5, "H5", "pass"),
    ]
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    h2 = next(i for i in report["instruments"] if i["id"] == "H2")
    record = json.loads((out / "certificate-2.json").read_text(encoding="utf-8"))
    cert = record["certificate"]
    assert cert["instrument"] == {
        "id": "H2", "kind": "helmet", "serial": "SIM-H2", "model": "SIM-FF1", "size": "medium",
        "lot": "L2026-11", "profile": "fmvss-218",
    }  # fmt: skip
    assert cert["reference_standards"][0]["id"] == "accel-1" and cert["bench"]["id"] == "helmet-rig"
    points = cert["points"]
    assert [p["name"] for p in points] == ["H2-front", "H2-rear", "H2-left"]
    assert [p["verdict"] for p in points] == ["fail", "inconclusive", "fail"]
    for mine, theirs in zip(points, h2["points"], strict=True):  # the report's figures, unchanged
        for key in ("peak_g", "hic", "hic15", "hic36", "dwell_ms", "velocity_m_s", "t_peak_ms", "margins"):
            assert mine[key] == theirs["details"][key], key
    assert points[0]["peak_g"] == pytest.approx(407.3, abs=0.05) and points[0]["velocity_m_s"] == 6.0
    assert set(points[0]["dwell_ms"]) == {"150", "200"} and points[0]["peak_u_rel_pct"] == 1.5
    limits = cert["helmet"]["limits"]
    assert limits["peak_max_g"] == {
        "value": 400.0, "provenance": "SRC", "source": "49 CFR 571.218 S5.1(a)", "confirmed": True,
    }  # fmt: skip
    assert limits["dwell_limits_ms"]["value"] == {"200": 2.0, "150": 4.0}
    (check,) = cert["helmet"]["rig_checks"]
    assert check["day"] == "2026-11-27" and check["certifiable"] is True and len(check["after"]["peaks_g"]) == 6
    assert cert["helmet"]["model"]["model"] == "SIM-FF1" and cert["helmet"]["model"]["verdict"] == "fail"
    assert cert["decision_rule"]["name"] == "guard-band" and "peak x (1 + U)" in cert["decision_rule"]["statement"]
    assert any(w.startswith("[MEM] helmet.peak_u_rel_pct = 1.5") for w in cert["warnings"])
    for name in ("certificate-2.json", "certificate-2.pdf", "certificate-2.html"):
        (verdict,) = verify_file(out / name, lab.pub)
        assert verdict.valid and verdict.line.startswith("valid: certificate 2, instrument S/N SIM-H2, verdict fail")
    lines = [v.line for v in verify_file(run / "report.json", lab_path=lab.toml)]  # the register's records
    assert [line.split(",")[0] for line in lines] == [f"valid: certificate {n}" for n in range(1, 6)]
    assert verify_code(issued[0].verification_code, lab.toml).valid
    page = (out / "certificate-2.html").read_text(encoding="utf-8")
    for text in (
        "Test certificate (helmet impact) 2",
        "Limits of the standard profile fmvss-218",
        "[SRC] from the standard",
        "&gt; 200 g (ms)",
        "407.3",
        "Rig checks",
        "SIM-FF1: FAIL",
    ):
        assert text in page, text  # fmt: skip


def test_mem_limits_are_shown_as_such(tmp_path):
    from meterbench.sim.helmet import SimDrop

    drops = [SimDrop("H1", site, 200.0, 5.0) for site in ("front", "rear")]
    session, run = _simulated_run(tmp_path, drops=drops, profile="cns-2396")
    lab = _helmet_lab(tmp_path / "lab")
    (issued,) = _certify(lab, run, session, tmp_path / "certs")
    assert issued.verdict == "pass"
    cert = json.loads((tmp_path / "certs/certificate-1.json").read_text(encoding="utf-8"))["certificate"]
    assert cert["helmet"]["limits"]["peak_max_g"]["value"] == 300.0
    assert {v["provenance"] for v in cert["helmet"]["limits"].values()} == {"MEM"}
    assert any("[MEM] helmet.profiles.cns-2396.peak_max_g" in w for w in cert["warnings"])
    page = (tmp_path / "certs/certificate-1.html").read_text(encoding="utf-8")
    assert page.count("[MEM] recalled, not confirmed from the standard&#x27;s text") == 6


@pytest.mark.parametrize(
    ("rig", "expected"),
    [
        ("drift", "rig check 2026-11-27: after: rig check failed: reference peak(s) 437.5, 442.8, 435.1 g"),
        ("missing", "rig check 2026-11-27: rig check missing: no reference drops after the impacts of 2026-11-27"),
    ],
)
def test_a_day_whose_rig_check_failed_or_is_missing_is_refused(tmp_path, rig, expected):
    session, run = _simulated_run(tmp_path, rig=rig)
    lab = _helmet_lab(tmp_path / "lab")
    with pytest.raises(SessionError) as caught:
        _certify(lab, run, session, tmp_path / "certs")
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and expected in lines[0] and lines[0].endswith("that day's impacts are not certifiable")
    _nothing_written(lab, tmp_path / "certs")


def test_a_failed_rig_check_edited_into_a_pass_is_refused(tmp_path):
    session, run = _simulated_run(tmp_path, rig="drift")

    def passed(report):
        for check in report["rig_checks"]:
            check["certifiable"] = check["after"]["ok"] = True
        for point in (p for i in report["instruments"] for p in i["points"]):
            point["details"]["certifiable"] = True

    edit_report(run, passed)
    lab = _helmet_lab(tmp_path / "lab")
    with pytest.raises(SessionError) as caught:
        _certify(lab, run, None, tmp_path / "certs")
    assert str(caught.value).splitlines() == [
        f"{run}/report.json: rig_checks[0]: certifiable, but its after series is not a passing rig check "
        "(rig check failed: reference peak(s) 437.5, 442.8, 435.1 g not in 380.0-425.0 g)"
    ]
    _nothing_written(lab, tmp_path / "certs")


def _point(report, name):
    return next(p for i in report["instruments"] for p in i["points"] if p["name"] == name)


def _raise_peak(report):  # H1-front passes at 299.9 g: make it read 399 g, still "pass"
    point = _point(report, "H1-front")
    point["details"]["peak_g"] = point["details"]["margins"]["peak_g"]["value"] = 399.0


def _impact_on_another_day(report):
    _point(report, "H5-rear")["details"]["test_day"] = "2026-11-28"


def _void_passes(report):
    _point(report, "H4-rear")["verdict"] = "pass"
    next(i for i in report["instruments"] if i["id"] == "H4")["verdict"] = "pass"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_raise_peak, "instruments[0].points[0].verdict: 'pass' does not follow from peak 399.0 g"),
        (
            lambda r: _point(r, "H1-front")["details"]["margins"]["peak_g"].__setitem__("limit", 450.0),
            "instruments[0].points[0].details.margins.peak_g: value 299.889437 / limit 450.0 are not the impact's",
        ),
        (
            lambda r: r["profile_values"]["peak_max_g"].__setitem__("value", 450.0),
            "profile_values.peak_max_g: 450.0 [SRC] is not helmet.json's 400.0 [SRC] for fmvss-218",
        ),
        (_impact_on_another_day, "instruments[4].points[1]: test day '2026-11-28' has no passing rig check"),
        (_void_passes, "instruments[3].points[1].verdict: 'pass' for a void impact (void: out of the hot"),
        (
            lambda r: _point(r, "H1-rear")["details"].__setitem__("velocity_m_s", 6.35),
            "instruments[0].points[1].verdict: 'pass' at 6.35 m/s on the flat anvil, outside the profile's window",
        ),
        (
            lambda r: r["helmet_models"][1].__setitem__("verdict", "pass"),
            "helmet_models[1].verdict: 'pass' does not combine its helmets' (expected 'inconclusive')",
        ),
    ],
)
def test_a_tampered_helmet_report_is_refused(helmet_run, tmp_path, change, expected):
    session, run = helmet_run
    lab = _helmet_lab(tmp_path / "lab")
    edit_report(run, change)
    with pytest.raises(SessionError) as caught:
        _certify(lab, run, None, tmp_path / "certs")
    lines = str(caught.value).splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
    _nothing_written(lab, tmp_path / "certs")


def test_a_run_whose_u_of_peak_is_below_the_accelerometer_certificate_is_refused(helmet_run, tmp_path):
    session, run = helmet_run
    lab = _helmet_lab(tmp_path / "lab", accelerometer_u_pct=2.0)
    with pytest.raises(ConfigError) as caught:
        _certify(lab, run, session, tmp_path / "certs")
    assert "point H1-front: the run took the reference's standard uncertainty as 0.75 %, below the calibration " \
        "certificates' 1 % (U / k): its U is understated" in str(caught.value)  # fmt: skip
    _nothing_written(lab, tmp_path / "certs")
