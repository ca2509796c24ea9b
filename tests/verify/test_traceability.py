"""`meterbench run SESSION --out DIR --lab LAB.toml [--key KEY]`: traceability and the configuration audit trail.

A reference standard the session names (``reference_instruments[].standard_id``, else its bench's in the
lab file) that is past its calibration due date on the test date, or unknown to the lab file, makes every
point inconclusive with that reason; with --key the configuration the run saw (lab file, software,
models, tables) is logged in the lab's signed audit log when it differs from the last seen.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from meterbench import cli, source_revision
from meterbench.calibration import table_sha256
from meterbench.sim import simulate_tank

REPO = Path(__file__).resolve().parents[2]
SAMPLE_LAB = REPO / "samples" / "LAB.toml"
TANK_SAMPLE = REPO / "samples" / "tank-sim-seed2"  # an old session: names its bench (tank-bench-1) only


@pytest.fixture(scope="module")
def tank_session(tmp_path_factory) -> Path:
    """`meterbench simulate tank --runs 2 --technician-id tech-01 --standard-id ref-meter-1` (seed 3)."""
    folder = tmp_path_factory.mktemp("traceability") / "tank"
    args = ["simulate", "tank", "--out", str(folder), "--seed", "3", "--runs", "2"]
    assert cli.main([*args, "--technician-id", "tech-01", "--standard-id", "ref-meter-1"]) == 0
    return folder


def test_simulate_names_the_ids_it_is_given_and_marks_its_defaults(tank_session, tmp_path):
    manifest = json.loads((tank_session / "session.json").read_text(encoding="utf-8"))
    assert (manifest["bench_id"], manifest["technician_id"]) == ("tank-bench-1", "tech-01")
    assert [r["standard_id"] for r in manifest["reference_instruments"]] == ["ref-meter-1"]
    default = json.loads((simulate_tank(tmp_path / "d", seed=3, runs=1) / "session.json").read_text(encoding="utf-8"))
    assert default["technician_id"] == "sim-technician"
    assert [r["standard_id"] for r in default["reference_instruments"]] == ["sim-reference-standard"]


def _lab(
    folder: Path,
    due: str = "2027-06-30",
    standard_id: str = "ref-meter-1",
    fingerprint: str | None = None,
    u_pct: float = 0.02,
):
    """The sample lab file with its reference standard's due date, id and U (%, k = 2) changed; 0.02 % is the
    U the simulated tank bench's reference meter states (session.json), so its budgets are not understated."""
    folder.mkdir(parents=True, exist_ok=True)
    text = SAMPLE_LAB.read_text(encoding="utf-8").replace("due_date = 2027-06-30", f"due_date = {due}")
    assert "expanded_uncertainty_pct = 0.1 " in text
    text = text.replace("expanded_uncertainty_pct = 0.1 ", f"expanded_uncertainty_pct = {u_pct} ")
    text = text.replace('id = "ref-meter-1"', f'id = "{standard_id}"').replace(
        'reference_standards = ["ref-meter-1"]', f'reference_standards = ["{standard_id}"]'
    )
    if fingerprint:
        text = text.replace("0" * 32, fingerprint)
    path = folder / "LAB.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(session: Path, out: Path, *extra: str) -> dict:
    assert cli.main(["run", str(session), "--out", str(out), *extra]) == 0
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def _verdicts(report: dict) -> list:
    return [report["verdict"]] + [(i["verdict"], [p["verdict"] for p in i["points"]]) for i in report["instruments"]]


def test_the_report_records_the_ids_and_the_software_identity(tank_session, tmp_path):
    report = _run(tank_session, tmp_path / "plain")
    assert report["bench_id"] == "tank-bench-1" and report["technician_id"] == "tech-01"
    assert report["reference_standard_ids"] == ["ref-meter-1"]
    assert report["test_date"] == "2026-11-27"
    assert report["git_revision"] == source_revision()
    data = REPO / "meterbench" / "calibration" / "data"
    assert report["tables"] == {p.stem: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(data.glob("*.json"))}
    assert report["tables"] == table_sha256()
    assert "lab_traceability" not in report  # no --lab: nothing checked, nothing claimed


def test_an_expired_standard_makes_every_point_inconclusive_and_a_valid_one_keeps_the_verdicts(tank_session, tmp_path):
    plain = _run(tank_session, tmp_path / "plain")
    assert plain["verdict"] in ("pass", "fail")  # conclusive without a lab check, so the marking is seen
    valid = _run(tank_session, tmp_path / "valid", "--lab", str(_lab(tmp_path / "lab-valid")))
    assert _verdicts(valid) == _verdicts(plain)
    assert valid["instruments"] == plain["instruments"]
    assert valid["lab_traceability"]["reference_standards"] == {"ref-meter-1": "2027-06-30"}
    assert valid["lab_traceability"]["problems"] == [] and valid["lab_traceability"]["named_by"] == "the session"
    due_that_day = _run(tank_session, tmp_path / "due", "--lab", str(_lab(tmp_path / "lab-due", "2026-11-27")))
    assert _verdicts(due_that_day) == _verdicts(plain)  # due on the test day: still valid that day

    expired = _run(tank_session, tmp_path / "expired", "--lab", str(_lab(tmp_path / "lab-old", "2026-11-26")))
    reason = (
        "reference standard ref-meter-1 (serial REF-0001, calibration certificate CAL-EXAMPLE-2026-001 "
        "(fictitious)) past its calibration due date 2026-11-26 on the test date 2026-11-27"
    )
    assert expired["verdict"] == "inconclusive"
    points = [p for i in expired["instruments"] for p in i["points"]]
    assert len(points) == 2 and all(i["verdict"] == "inconclusive" for i in expired["instruments"])
    assert [(p["verdict"], p["reason"]) for p in points] == [("inconclusive", reason)] * 2
    assert [p["error_pct"] for p in points] == [p["error_pct"] for i in plain["instruments"] for p in i["points"]]
    assert expired["lab_traceability"]["problems"] == [reason]


def test_a_standard_less_accurate_than_the_run_assumed_makes_its_points_inconclusive(tank_session, tmp_path):
    report = _run(tank_session, tmp_path / "out", "--lab", str(_lab(tmp_path / "lab", u_pct=0.1)))
    assert report["verdict"] == "inconclusive"
    reasons = [(p["name"], p["verdict"], p["reason"]) for i in report["instruments"] for p in i["points"]]
    why = (
        "the run took the reference's standard uncertainty as 0.01 %, below the calibration certificates' "
        "0.05 % (U / k): its U is understated"
    )
    assert reasons == [("R1", "inconclusive", why), ("R2", "inconclusive", why)]
    assert report["lab_traceability"]["problems"] == [f"instrument T1 point {n}: {why}" for n in ("R1", "R2")]


def test_a_standard_unknown_to_the_lab_file_makes_every_point_inconclusive(tank_session, tmp_path):
    lab = _lab(tmp_path / "lab", standard_id="ref-meter-7")
    report = _run(tank_session, tmp_path / "out", "--lab", str(lab))
    assert report["verdict"] == "inconclusive"
    assert {p["reason"] for i in report["instruments"] for p in i["points"]} == {
        f"reference standard ref-meter-1 (named by the session) is not in {lab} [[reference_standards]]: not traceable"
    }


def test_an_old_session_is_checked_with_its_benchs_standards(tmp_path):
    lab = _lab(tmp_path / "lab", "2026-01-31")
    lab.write_text(lab.read_text(encoding="utf-8").replace('id = "sim-bench"', 'id = "tank-bench-1"'), encoding="utf-8")
    report = _run(TANK_SAMPLE, tmp_path / "out", "--lab", str(lab))
    assert report["reference_standard_ids"] == [] and report["technician_id"] is None
    assert report["lab_traceability"]["named_by"] == f"bench tank-bench-1 in {lab}"
    reasons = {p["reason"] for i in report["instruments"] for p in i["points"]}
    assert reasons == {
        "reference standard ref-meter-1 (serial REF-0001, calibration certificate CAL-EXAMPLE-2026-001 "
        "(fictitious)) past its calibration due date 2026-01-31 on the test date 2026-11-27"
    }
    assert report["verdict"] == "inconclusive"


def test_a_session_naming_no_standard_of_a_bench_the_lab_lacks_keeps_its_verdicts_with_a_warning(tmp_path):
    plain = _run(TANK_SAMPLE, tmp_path / "plain")
    lab = _lab(tmp_path / "lab", "2026-01-31")  # its bench is sim-bench: nothing names a standard
    report = _run(TANK_SAMPLE, tmp_path / "out", "--lab", str(lab))
    assert _verdicts(report) == _verdicts(plain)
    assert report["warnings"][-1] == (
        f"{lab}: the session names no reference standard and its bench 'tank-bench-1' is not in the lab file: "
        "traceability not checked"
    )
    assert report["lab_traceability"]["problems"] == [] and report["lab_traceability"]["reference_standards"] == {}


def test_a_bad_lab_file_or_a_key_without_a_lab_is_one_line_and_nothing_is_written(tank_session, tmp_path, capsys):
    lab = _lab(tmp_path / "lab")
    lab.write_text(lab.read_text(encoding="utf-8").replace("due_date = 2027-06-30", 'due_date = "2027-06-30"'))
    assert cli.main(["run", str(tank_session), "--out", str(tmp_path / "a"), "--lab", str(lab)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"meterbench run: {lab}: reference_standards[0].due_date: expected a TOML date (YYYY-MM-DD, unquoted), "
        'got "2027-06-30"'
    ]
    assert cli.main(["run", str(tank_session), "--out", str(tmp_path / "b"), "--key", str(tmp_path / "k")]) == 2
    assert capsys.readouterr().err.strip() == (
        "meterbench run: --key: needs --lab LAB.toml (the register whose audit log it signs)"
    )
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_with_a_key_the_configuration_the_runs_saw_is_in_the_signed_audit_log(tank_session, tmp_path, capsys):
    pytest.importorskip("cryptography")
    from meterbench.certificates import LabRegister, generate_keys, load_public_key

    public = generate_keys(tmp_path / "keys")
    key, pub = tmp_path / "keys" / "lab.key", load_public_key(tmp_path / "keys" / "lab.pub")
    lab = _lab(tmp_path / "lab", fingerprint=public.fingerprint)
    register = LabRegister(tmp_path / "lab" / "LAB-records")
    _run(tank_session, tmp_path / "r1", "--lab", str(lab), "--key", str(key))
    first = register.read_entries()
    assert [e.event for e in first] == ["config-first-seen"] * len(first)
    assert [e.what for e in first] == ["lab file", "signing key", "software"] + [
        f"table {name}" for name in sorted(table_sha256())
    ]  # a tank run reads with no model
    assert first[0].new_hash == hashlib.sha256(lab.read_bytes()).hexdigest()
    assert first[0].details["seen_by"] == "meterbench run" and first[0].details["session"] == "sim-tank-seed3"
    assert "audit log" in capsys.readouterr().err

    _run(tank_session, tmp_path / "r2", "--lab", str(lab), "--key", str(key))
    assert len(register.read_entries()) == len(first)  # nothing changed: nothing logged

    old_hash = first[0].new_hash
    lab.write_text(lab.read_text(encoding="utf-8") + "\n# a comment is a change of the file\n", encoding="utf-8")
    _run(tank_session, tmp_path / "r3", "--lab", str(lab), "--key", str(key))
    [changed] = register.read_entries()[len(first) :]
    assert (changed.event, changed.what, changed.old_hash) == ("config-changed", "lab file", old_hash)
    assert changed.new_hash == hashlib.sha256(lab.read_bytes()).hexdigest()
    assert register.problems(pub.verify) == []  # chained and signed like certify's entries
    log = (register.folder / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(log[-1])["who"].startswith("tech-01 (os user ")


def test_a_key_that_is_not_the_lab_files_is_refused_before_the_work_and_nothing_is_written(tmp_path, capsys):
    pytest.importorskip("cryptography")
    from meterbench.certificates import generate_keys

    public = generate_keys(tmp_path / "keys")
    lab = _lab(tmp_path / "lab")  # the placeholder fingerprint: not this key's
    out = tmp_path / "out"
    missing = tmp_path / "no-session-here"  # the key is checked before the session is read
    assert (
        cli.main(["run", str(missing), "--out", str(out), "--lab", str(lab), "--key", str(tmp_path / "keys/lab.key")])
        == 2
    )
    assert capsys.readouterr().err.strip() == (
        f"meterbench run: --key: key fingerprint {public.fingerprint} does not match {lab} [lab] key_fingerprint "
        f"{'0' * 32} (wrong key or wrong lab file)"
    )
    assert not out.exists() and not (tmp_path / "lab" / "LAB-records").exists()


def test_the_runs_ids_carry_to_the_certificate_without_options(tank_session, tmp_path):
    from tests.certificates.conftest import make_lab, require_cert

    require_cert()
    from meterbench.certificates import certify_run

    lab = make_lab(tmp_path / "lab")
    lab.write_toml(_lab(tmp_path / "lab-text").read_text(encoding="utf-8"))
    text = lab.toml.read_text(encoding="utf-8").replace('id = "sim-bench"', 'id = "tank-bench-1"')
    lab.write_toml(text + '\n[[technicians]]\nid = "tech-02"\nname = "Second"\n')  # two: the run says which
    run = tmp_path / "run"
    _run(tank_session, run, "--lab", str(lab.toml), "--key", str(lab.key))
    [issued] = certify_run(run, lab.key, lab.toml, session_dir=tank_session)
    cert = json.loads((run / f"certificate-{issued.number}.json").read_text(encoding="utf-8"))["certificate"]
    assert (cert["bench"]["id"], cert["technician"]["id"]) == ("tank-bench-1", "tech-01")
    assert [s["id"] for s in cert["reference_standards"]] == ["ref-meter-1"]
    assert cert["software"]["note"] == "version, git revision, models and tables as recorded by the run (report.json)"
