"""certify and verify on a real run: files, contents, signatures, tampering, bad input, traceability."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from meterbench.certificates import (
    LabRegister,
    audit_verify,
    certify_run,
    check_record_bytes,
    load_public_key,
    verify_code,
    verify_file,
)
from meterbench.errors import ConfigError, SessionError

from .conftest import WATER_SESSION, edit_report, require_cert

require_cert()


def _certify(lab, run: Path, out: Path | None = None, **kwargs):
    kwargs.setdefault("technician_id", "tech-01")
    kwargs.setdefault("session_dir", WATER_SESSION)
    return certify_run(run, lab.key, lab.toml, out, **kwargs)


def _lines(verdicts) -> list[str]:
    return [v.line for v in verdicts]


def test_certify_writes_a_signed_certificate_per_instrument_that_verifies(lab, water_run, tmp_path):
    out = tmp_path / "certs"
    issued = _certify(lab, water_run, out)
    assert [(c.number, c.instrument_id, c.verdict) for c in issued] == [(1, "M1", "pass"), (2, "M2", "fail")]
    assert sorted(p.name for p in out.iterdir()) == [
        f"certificate-{n}.{ext}" for n in (1, 2) for ext in ("html", "json", "pdf")
    ]
    record = json.loads((out / "certificate-2.json").read_text(encoding="utf-8"))
    assert record["verification_code"] == issued[1].verification_code
    assert re.fullmatch(r"[0-9A-Z]{5}-[0-9A-Z]{5}-[0-9A-Z*~$=U]", record["verification_code"])
    assert record["key_fingerprint"] == lab.fingerprint
    assert record["report_sha256"] == __import__("hashlib").sha256((water_run / "report.json").read_bytes()).hexdigest()
    cert = record["certificate"]
    assert cert["number"] == 2 and cert["verdict"] == "fail"
    assert cert["instrument"]["serial"] == "SIM-0002" and cert["instrument"]["temperature_class"] == "T30"
    assert cert["bench"]["id"] == "sim-bench" and cert["technician"]["id"] == "tech-01"
    assert cert["reference_standards"][0]["calibration_certificate"] == "CAL-EXAMPLE-2026-001 (fictitious)"
    assert [p["verdict"] for p in cert["points"]] == ["fail", "pass", "pass"]
    # The certificate carries the report's figures unchanged (the reading itself may differ in the last
    # digits between CPUs: ONNX Runtime picks other kernels, so compare with this run's report).
    report = json.loads((water_run / "report.json").read_text(encoding="utf-8"))
    (m2,) = [i for i in report["instruments"] if i["id"] == "M2"]
    assert [p["error_pct"] for p in cert["points"]] == [p["error_pct"] for p in m2["points"]]
    assert cert["points"][0]["error_pct"] == pytest.approx(3.42356, abs=2e-5)
    assert cert["points"][0]["water_temperature_c"] == pytest.approx(19.606703, abs=1e-9)
    assert cert["points"][0]["water_pressure_bar"] is None  # not recorded by the bench: said so, not invented
    assert cert["session"]["simulated"] is True
    assert set(cert["software"]["tables"]) >= {"water_meter", "decision"}
    assert set(cert["software"]["models"]) == {"digit_wheel", "pointer_dial"}
    assert "ILAC-G8" in cert["decision_rule"]["statement"]
    for name in ("certificate-1.pdf", "certificate-1.html", "certificate-1.json", "certificate-2.pdf"):
        lines = _lines(verify_file(out / name, lab.pub))
        assert len(lines) == 1 and lines[0].startswith("valid: certificate "), (name, lines)
    assert _lines(verify_file(out / "certificate-2.json", lab.pub)) == [
        "valid: certificate 2, instrument S/N SIM-0002, verdict fail, issued "
        f"{cert['issued_utc'][:10]} by 示範水量計檢定實驗室 Example Water-Meter Verification Lab (fictitious) "
        "(SIMULATED session, not a real test)"
    ]
    # the lab's register: its copy, the code look-up (lab file names the key), audit log intact
    assert verify_code(issued[0].verification_code.lower().replace("-", " "), lab.toml).valid
    assert (lab.register / "certificates" / "certificate-2.json").read_bytes() == (
        out / "certificate-2.json"
    ).read_bytes()
    assert LabRegister(lab.register).problems(load_public_key(lab.pub).verify) == []


def test_default_out_is_the_run_folder_and_report_json_verifies_against_its_records(lab, water_run):
    _certify(lab, water_run)
    lines = _lines(verify_file(water_run / "report.json", lab.pub))
    assert [line.split(",")[0] for line in lines] == ["valid: certificate 1", "valid: certificate 2"]
    edit_report(water_run, lambda r: r.__setitem__("warnings", ["added later"]))
    lines = _lines(verify_file(water_run / "report.json", lab.pub))
    assert len(lines) == 2 and all(line.startswith("NOT valid: report changed since signing") for line in lines)


def test_wrong_public_key_and_no_key_are_not_valid(lab, water_run, tmp_path):
    from meterbench.certificates import generate_keys

    _certify(lab, water_run)
    other = generate_keys(tmp_path / "other")
    record = water_run / "certificate-1.json"
    [line] = _lines(verify_file(record, tmp_path / "other" / "lab.pub"))
    assert (
        line
        == f"NOT valid: certificate-1.json: signed by key {lab.fingerprint}, not by the trusted key {other.fingerprint}"
    )
    [line] = _lines(verify_file(record))
    assert line.startswith(f"NOT valid: certificate-1.json: unknown key {lab.fingerprint}")


def test_flipping_any_byte_of_a_record_is_caught(lab, water_run):
    _certify(lab, water_run, instrument_ids=["M1"])
    raw = (water_run / "certificate-1.json").read_bytes()
    key = load_public_key(lab.pub)
    assert check_record_bytes(raw, key)[1] == ""
    reasons: dict[str, int] = {}
    for i in range(len(raw)):
        flipped = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
        _, reason = check_record_bytes(flipped, key)
        assert reason, f"byte {i} ({raw[i : i + 1]!r}) flipped: still valid"
        reasons[reason.split(" (")[0][:40]] = reasons.get(reason.split(" (")[0][:40], 0) + 1
    assert len(raw) > 4000
    assert any(r.startswith("verification code does not match") for r in reasons)
    assert any(r.startswith("signature mismatch") for r in reasons)


def test_a_changed_field_names_its_reason(lab, water_run):
    _certify(lab, water_run, instrument_ids=["M2"])
    path = water_run / "certificate-1.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    record["certificate"]["verdict"] = "pass"
    path.write_text(json.dumps(record), encoding="utf-8")
    [line] = _lines(verify_file(path, lab.pub))
    assert line == (
        "NOT valid: certificate-1.json: verification code does not match the record's contents "
        "(the record was changed after sealing)"
    )


def test_every_97th_byte_of_the_pdf_and_html_flipped_is_caught(lab, water_run, tmp_path):
    _certify(lab, water_run, instrument_ids=["M1"])
    for suffix in (".pdf", ".html"):
        original = (water_run / f"certificate-1{suffix}").read_bytes()
        tampered = tmp_path / f"certificate-1{suffix}"
        (tmp_path / "certificate-1.json").write_bytes((water_run / "certificate-1.json").read_bytes())
        positions = range(0, len(original), 97)
        for i in positions:
            tampered.write_bytes(original[:i] + bytes([original[i] ^ 0xFF]) + original[i + 1 :])
            [verdict] = verify_file(tampered, lab.pub)
            assert not verdict.valid and "NOT valid" in verdict.line, (suffix, i)
        tampered.write_bytes(original)
        assert verify_file(tampered, lab.pub)[0].valid
        assert len(positions) > (250 if suffix == ".pdf" else 60)
    pdf = water_run / "certificate-1.pdf"
    pdf.write_bytes(pdf.read_bytes() + b"\n%%EOF\n")  # an appended (incremental-update style) change
    [line] = _lines(verify_file(pdf, lab.pub))
    assert line.startswith("NOT valid: record and PDF disagree: certificate-1.pdf is not the document signed in")


def test_pdf_contains_the_certificate_text_with_an_embedded_cjk_font(lab, water_run):
    from pypdf import PdfReader

    [issued] = _certify(lab, water_run, instrument_ids=["M2"])
    reader = PdfReader(water_run / "certificate-1.pdf")
    text = "".join(page.extract_text() for page in reader.pages)
    for expected in (
        "示範水量計檢定實驗室",
        "王小明",
        "SIM-0002",
        issued.verification_code,
        "SIMULATED SESSION",
        "FAIL",
        "3.42",
        "CAL-EXAMPLE-2026-001",
        "2027-06-30",
        "ILAC-G8",
        "sim-water-meter-seed1-short",
    ):
        assert expected in text, expected
    fonts = set()
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descriptor = font.get("/FontDescriptor")
            if descriptor is not None:
                descriptor = descriptor.get_object()
                assert "/FontFile2" in descriptor  # TrueType outlines embedded (a subset), not a reference
                fonts.add(str(font["/BaseFont"]))
    assert fonts and all("UMing" in name or "WenQuanYi" in name or "Droid" in name for name in fonts), fonts
    # and the embedded font has a glyph for every character printed (no tofu boxes)
    from reportlab.pdfbase.ttfonts import TTFontFile

    from meterbench.certificates import find_cjk_font

    path, index = find_cjk_font()
    glyphs = TTFontFile(str(path), subfontIndex=index).charToGlyph
    printed = set(text) - set(" \n\t")
    assert not {c for c in printed if ord(c) not in glyphs}, "characters without a glyph"
    assert {"示", "範", "驗", "王"} <= printed


def test_html_states_the_same_blocks_as_the_pdf(lab, water_run):
    import html

    from pypdf import PdfReader

    from meterbench.certificates import certificate_blocks

    _certify(lab, water_run, instrument_ids=["M1"])
    record = json.loads((water_run / "certificate-1.json").read_text(encoding="utf-8"))
    page = html.unescape((water_run / "certificate-1.html").read_text(encoding="utf-8"))
    pdf_text = "".join(p.extract_text() for p in PdfReader(water_run / "certificate-1.pdf").pages)
    squeezed = re.sub(r"\s+", "", pdf_text)
    blocks = certificate_blocks(record)
    assert len(blocks) >= 10
    for block in blocks:
        for cell in [block.title, block.text, *block.header, *(c for row in block.rows for c in row)]:
            assert cell in page, cell
            assert re.sub(r"\s+", "", cell) in squeezed, cell


TANK_BENCH = """
[[benches]]
id = "tank-bench-1"
reference_standards = ["ref-meter-2"]

[[reference_standards]]
id = "ref-meter-2"
serial = "REF-0002"
calibration_certificate = "CAL-EXAMPLE-2026-002 (fictitious)"
expanded_uncertainty_pct = 0.02
coverage_factor = 2
due_date = 2027-01-31
"""


def test_tank_certificate_states_nominal_volume_and_material(lab, tank_run):
    lab.write_toml(lab.toml.read_text(encoding="utf-8") + TANK_BENCH)
    with pytest.raises(ConfigError, match=r"--bench: bench 'tank-bench', but report.json records bench 'tank-bench-1'"):
        certify_run(tank_run, lab.key, lab.toml, technician_id="tech-01", bench_id="tank-bench")
    [issued] = certify_run(tank_run, lab.key, lab.toml, technician_id="tech-01")  # the bench report.json records
    record = json.loads((tank_run / "certificate-1.json").read_text(encoding="utf-8"))
    assert record["certificate"]["bench"]["id"] == "tank-bench-1"
    assert record["certificate"]["reference_standards"][0]["id"] == "ref-meter-2"  # that bench's, in LAB.toml
    assert record["certificate"]["instrument"]["nominal_volume_l"] == 20.0
    assert record["certificate"]["instrument"]["material"] == "stainless-steel"
    assert issued.verdict == record["certificate"]["verdict"] == "fail"
    assert record["certificate"]["points"][0]["water_temperature_c"] == pytest.approx(18.121637, abs=1e-9)
    assert verify_file(tank_run / "certificate-1.pdf", lab.pub)[0].valid


# ---------------------------------------------------------------- bad input: one line, nothing written


def _nothing_written(lab, out: Path) -> None:
    assert not lab.register.exists()
    assert not out.exists() or not any(out.glob("certificate-*"))


def test_key_that_does_not_match_the_lab_fingerprint_is_refused(lab, water_run, tmp_path):
    from meterbench.certificates import generate_keys

    other = generate_keys(tmp_path / "other")
    with pytest.raises(ConfigError) as caught:
        certify_run(water_run, tmp_path / "other" / "lab.key", lab.toml, tmp_path / "out", technician_id="tech-01")
    assert str(caught.value) == (
        f"{tmp_path / 'other' / 'lab.key'}: key fingerprint {other.fingerprint} does not match {lab.toml} "
        f"[lab] key_fingerprint {lab.fingerprint} (wrong key or wrong lab file)"
    )
    _nothing_written(lab, tmp_path / "out")


def test_run_dir_without_report_is_refused(lab, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SessionError, match=r"empty/report.json: missing \(expected a report.json"):
        certify_run(tmp_path / "empty", lab.key, lab.toml, technician_id="tech-01")
    _nothing_written(lab, tmp_path / "empty")


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda r: r["instruments"][1].__setitem__("verdict", "pass"),
            "instruments[1].verdict: 'pass' does not combine its points' verdicts (expected 'fail')",
        ),
        (
            lambda r: r["instruments"][1]["points"][0].__setitem__("verdict", "pass"),
            "instruments[1].points[0].verdict: 'pass' does not follow from E, MPE and U under the simple rule",
        ),
        (
            lambda r: r["instruments"][1]["points"][0].__setitem__("error_pct", 1.5),
            "instruments[1].points[0].error_pct: 1.5 is not (indicated - reference) / reference = 3.423",
        ),
    ],
)
def test_a_tampered_report_is_refused(lab, water_run, change, expected):
    edit_report(water_run, change)
    with pytest.raises(SessionError) as caught:
        _certify(lab, water_run, session_dir=None)
    assert expected in str(caught.value)
    _nothing_written(lab, water_run)


def test_a_session_that_is_not_the_one_the_report_hashed_is_refused(lab, water_run, tank_run):
    from .conftest import TANK_SESSION

    with pytest.raises(SessionError, match="not the session.json this report verified"):
        _certify(lab, water_run, session_dir=TANK_SESSION)
    _nothing_written(lab, water_run)


def test_a_simulated_session_is_never_certified_as_a_real_one(lab, water_run):
    edit_report(water_run, lambda r: r.__setitem__("simulated", False))
    with pytest.raises(SessionError, match=r"the session is simulated but its report.json says simulated = False"):
        _certify(lab, water_run)
    _nothing_written(lab, water_run)


def test_a_real_session_has_no_simulated_mark(lab, water_run):
    from pypdf import PdfReader

    edit_report(water_run, lambda r: r.__setitem__("simulated", False))  # as a real run's report reads
    _certify(lab, water_run, session_dir=None, instrument_ids=["M1"])
    text = "".join(p.extract_text() for p in PdfReader(water_run / "certificate-1.pdf").pages)
    assert "SIMULATED" not in text and "SIMULATED" not in (water_run / "certificate-1.html").read_text("utf-8")
    assert "simulated no" in re.sub(r"\s+", " ", text)
    assert "SIMULATED" not in verify_file(water_run / "certificate-1.json", lab.pub)[0].line


def test_unknown_technician_or_none_named_is_refused(lab, water_run):
    with pytest.raises(ConfigError, match=r"--technician: technician 'nobody' is not in .*LAB.toml"):
        _certify(lab, water_run, technician_id="nobody")
    text = lab.toml.read_text(encoding="utf-8") + '\n[[technicians]]\nid = "tech-02"\nname = "Second"\n'
    lab.write_toml(text)
    with pytest.raises(ConfigError, match=r"--technician: which technician\? expected one of tech-01, tech-02"):
        _certify(lab, water_run, technician_id=None)
    _nothing_written(lab, water_run)


def test_reference_standard_past_its_due_date_is_refused_with_the_reason(lab, water_run):
    lab.write_toml(lab.toml.read_text(encoding="utf-8").replace("due_date = 2027-06-30", "due_date = 2026-11-26"))
    with pytest.raises(ConfigError) as caught:
        _certify(lab, water_run)
    assert str(caught.value) == (
        f"{lab.toml}: reference standard ref-meter-1 (serial REF-0001, calibration certificate "
        "CAL-EXAMPLE-2026-001 (fictitious)) was past its calibration due date 2026-11-26 on the test date "
        "2026-11-27: the run's points are inconclusive, not certified"
    )
    _nothing_written(lab, water_run)
    lab.write_toml(lab.toml.read_text(encoding="utf-8").replace("due_date = 2026-11-26", "due_date = 2026-11-27"))
    assert len(_certify(lab, water_run)) == 2  # due on the test day itself: still valid that day


def test_a_run_that_understated_the_reference_uncertainty_is_refused(lab, water_run):
    text = lab.toml.read_text(encoding="utf-8").replace(
        "expanded_uncertainty_pct = 0.1", "expanded_uncertainty_pct = 0.2"
    )
    lab.write_toml(text)
    with pytest.raises(
        ConfigError,
        match=r"point Q3: the run took the reference's standard uncertainty as 0.05 %, "
        r"below the calibration certificates' 0.1 % \(U / k\)",
    ):
        _certify(lab, water_run)
    _nothing_written(lab, water_run)


def test_an_existing_certificate_file_is_never_overwritten_and_the_number_stays_a_visible_gap(lab, water_run):
    from meterbench.certificates import register_gaps

    (water_run / "certificate-1.pdf").write_bytes(b"someone else's")
    with pytest.raises(Exception, match="certificate-1.pdf: cannot write the certificate: File exists"):
        _certify(lab, water_run, instrument_ids=["M1"])
    assert (water_run / "certificate-1.pdf").read_bytes() == b"someone else's"
    assert not (water_run / "certificate-1.json").exists() and not (water_run / "certificate-1.html").exists()
    (water_run / "certificate-1.pdf").unlink()
    [issued] = _certify(lab, water_run, instrument_ids=["M1"])
    assert issued.number == 2  # 1 was reserved: never reused
    entries = LabRegister(lab.register).read_entries()
    [reserved] = [e.seq for e in entries if e.event == "certificate-number-reserved" and e.details["number"] == 1]
    assert register_gaps(entries) == [f"certificate number 1: reserved (audit seq {reserved}) but never issued"]
    assert [e.details["number"] for e in entries if e.event == "certificate-issued"] == [2]


def test_an_issue_time_before_the_test_is_refused(lab, water_run):
    with pytest.raises(ConfigError, match=r"issue time 2026-11-26T23:00:00Z is before the test started"):
        _certify(lab, water_run, issued_utc="2026-11-26T23:00:00Z")
    _nothing_written(lab, water_run)
    [first, _] = _certify(lab, water_run, issued_utc="2026-11-28T08:00:00+08:00")
    record = json.loads((water_run / "certificate-1.json").read_text(encoding="utf-8"))
    assert record["certificate"]["issued_utc"] == "2026-11-28T00:00:00Z" and first.number == 1


def test_a_retired_key_still_verifies_what_it_signed_before_its_retirement_day(lab, water_run, tmp_path):
    """Key rotation: the old key listed in [lab] previous_keys counts for certificates issued before it retired."""
    from meterbench.certificates import generate_keys

    _certify(lab, water_run, instrument_ids=["M1"], issued_utc="2026-11-30T10:00:00Z")
    old = lab.fingerprint
    new = generate_keys(tmp_path / "new-keys").fingerprint
    text = lab.toml.read_text(encoding="utf-8").replace(old, new)
    text = text.replace(
        'place = "Fictional City"',
        f'place = "Fictional City"\nprevious_keys = [{{fingerprint = "{old}", retired = 2026-12-01}}]',
    )
    lab.toml.write_text(text, encoding="utf-8")
    certify_run(
        water_run,
        tmp_path / "new-keys" / "lab.key",
        lab.toml,
        technician_id="tech-01",
        session_dir=WATER_SESSION,
        instrument_ids=["M2"],
        issued_utc="2026-12-02T10:00:00Z",
    )
    for number in (1, 2):
        [verdict] = verify_file(water_run / f"certificate-{number}.json", lab_path=lab.toml)
        assert verdict.valid, verdict.line
    assert verify_code(
        json.loads((water_run / "certificate-1.json").read_text("utf-8"))["verification_code"], lab.toml
    ).valid
    lines, intact = audit_verify(lab.register / "audit.jsonl", lab_path=lab.toml)
    assert intact, lines
    # the same old key's signature on something it signed on or after its retirement day does not count
    lab.toml.write_text(text.replace("retired = 2026-12-01", "retired = 2026-11-30"), encoding="utf-8")
    [verdict] = verify_file(water_run / "certificate-1.json", lab_path=lab.toml)
    assert (
        verdict.line == f"NOT valid: certificate-1.json: signed by key {old}, retired on 2026-11-30 (issued 2026-11-30)"
    )
    # dropped from previous_keys (compromised): its certificates are no longer valid
    lab.toml.write_text(
        lab.toml.read_text("utf-8").replace(f'\nprevious_keys = [{{fingerprint = "{old}", retired = 2026-11-30}}]', ""),
        encoding="utf-8",
    )
    [verdict] = verify_file(water_run / "certificate-1.json", lab_path=lab.toml)
    assert verdict.line == f"NOT valid: certificate-1.json: signed by key {old}, not by the trusted key {new}"
