"""certify takes the software identity and who tested with what from report.json when the run recorded them.

report.json of `meterbench run` records ``git_revision``, ``tables`` (SHA-256 of each shipped table),
``bench_id``, ``technician_id``, ``reference_standard_ids`` and ``test_date``; a report without them
(an older meterbench) is certified with the installed copy's revision and tables, labelled so.
"""

from __future__ import annotations

import json

import pytest

from meterbench import source_revision
from meterbench.calibration import table_sha256
from meterbench.certificates import certify_run, report_problems
from meterbench.errors import ConfigError, SessionError

from .conftest import edit_report, require_cert

require_cert()

OTHER_TABLES = {"water_meter": "a" * 64, "decision": "b" * 64}


def _record(run, number: int = 1) -> dict:
    return json.loads((run / f"certificate-{number}.json").read_text(encoding="utf-8"))


def test_the_run_records_what_certify_needs(water_run):
    report = json.loads((water_run / "report.json").read_text(encoding="utf-8"))
    assert report["git_revision"] == source_revision()
    assert report["tables"] == table_sha256() and len(report["tables"]) == 6
    assert report["bench_id"] == "sim-bench"  # the sample session names its bench only (an old session)
    assert report["technician_id"] is None and report["reference_standard_ids"] == []
    assert report["test_date"] == "2026-11-27"
    assert report["software"].startswith("meterbench ")  # the contract's keys are unchanged


def test_certify_prefers_the_recorded_software_identity(lab, water_run):
    def recorded(report):
        report["git_revision"] = "0123abcd (the run's)"
        report["tables"] = OTHER_TABLES

    edit_report(water_run, recorded)
    certify_run(water_run, lab.key, lab.toml, technician_id="tech-01", instrument_ids=["M1"])
    software = _record(water_run)["certificate"]["software"]
    assert software["git_revision"] == "0123abcd (the run's)"
    assert software["tables"] == OTHER_TABLES  # not the installed tables
    assert software["note"] == "version, git revision, models and tables as recorded by the run (report.json)"


def test_an_old_report_is_certified_with_the_installed_identity_labelled_so(lab, water_run):
    def old(report):
        for key in ("git_revision", "tables", "technician_id", "reference_standard_ids", "test_date"):
            del report[key]

    edit_report(water_run, old)
    certify_run(water_run, lab.key, lab.toml, technician_id="tech-01", instrument_ids=["M1"])
    software = _record(water_run)["certificate"]["software"]
    assert software["tables"] == table_sha256()
    assert software["git_revision"] == (source_revision() or software["git_revision"])
    assert "as installed at certification" in software["note"]


def test_the_recorded_technician_and_standards_are_used_and_a_contradicting_option_refused(lab, water_run):
    text = lab.toml.read_text(encoding="utf-8")
    text += '\n[[technicians]]\nid = "tech-02"\nname = "Second"\n'
    text = text.replace('reference_standards = ["ref-meter-1"]', 'reference_standards = ["ref-meter-1", "ref-meter-9"]')
    text += (
        '\n[[reference_standards]]\nid = "ref-meter-9"\nserial = "REF-9"\ncalibration_certificate = "CAL-9"\n'
        "expanded_uncertainty_pct = 0.05\ncoverage_factor = 2.0\ndue_date = 2027-01-01\n"
    )
    lab.write_toml(text)

    def named(report):
        report["technician_id"] = "tech-02"
        report["reference_standard_ids"] = ["ref-meter-9"]

    edit_report(water_run, named)
    with pytest.raises(ConfigError, match=r"^--technician: technician 'tech-01', but report.json records technician "):
        certify_run(water_run, lab.key, lab.toml, technician_id="tech-01")
    with pytest.raises(ConfigError, match=r"^--reference: ref-meter-1, but report.json records the reference "):
        certify_run(water_run, lab.key, lab.toml, reference_ids=["ref-meter-1"])
    assert not list(water_run.glob("certificate-*"))
    certify_run(water_run, lab.key, lab.toml, instrument_ids=["M2"])  # two technicians in the lab: the recorded one
    cert = _record(water_run)["certificate"]
    assert cert["technician"]["id"] == "tech-02"
    assert [s["id"] for s in cert["reference_standards"]] == ["ref-meter-9"]  # the run's, not the bench's two


def test_recorded_keys_of_the_wrong_shape_are_report_problems(water_run):
    report = json.loads((water_run / "report.json").read_text(encoding="utf-8"))
    assert report_problems(report) == []
    bad = {**report, "tables": {"water_meter": "not-a-hash"}, "test_date": "2026-11-28", "technician_id": 7}
    assert report_problems(bad) == [
        "report.json: technician_id: expected a non-empty string or null, got 7",
        "report.json: tables: expected {table name: SHA-256 hex}, got {'water_meter': 'not-a-hash'}",
        "report.json: test_date: '2026-11-28' is not the UTC date of start_time_utc (the report was changed)",
    ]


def test_a_run_with_an_edited_test_date_is_not_certified(lab, water_run):
    edit_report(water_run, lambda report: report.update(test_date="2026-11-20"))
    with pytest.raises(SessionError, match="test_date: '2026-11-20' is not the UTC date of start_time_utc"):
        certify_run(water_run, lab.key, lab.toml, technician_id="tech-01")
