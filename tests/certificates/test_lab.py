"""LAB.toml: the sample parses; each bad field is one line naming the file and the field."""

from __future__ import annotations

import datetime as dt

import pytest

from meterbench.certificates import load_lab
from meterbench.errors import ConfigError

from .conftest import SAMPLE_LAB, require_cert

require_cert()


def test_sample_lab_file_parses_with_its_chinese_name_and_dated_reference(lab):
    parsed, raw = load_lab(lab.toml)
    assert parsed.name.startswith("示範水量計檢定實驗室")
    assert parsed.key_fingerprint == lab.fingerprint
    assert parsed.records == lab.folder / "LAB-records"
    standard = parsed.reference_standards["ref-meter-1"]
    assert standard.due_date == dt.date(2027, 6, 30)
    assert standard.standard_uncertainty_pct == pytest.approx(0.05, abs=1e-12)
    assert parsed.benches["sim-bench"].reference_standards == ("ref-meter-1",)
    assert parsed.technicians["tech-01"].name.startswith("王小明")
    assert raw == lab.toml.read_bytes()


def _edited(lab, old: str, new: str) -> str:
    text = lab.toml.read_text(encoding="utf-8")
    assert old in text
    lab.toml.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_lab(lab.toml)
    return str(caught.value)


@pytest.mark.parametrize(
    "old, new, expected",
    [
        (
            'accreditation_number = "EXAMPLE-0000 (fictitious)"\n',
            "",
            "lab.accreditation_number: missing (expected a non-empty string)",
        ),
        (
            "due_date = 2027-06-30",
            'due_date = "2027-06-30"',
            'reference_standards[0].due_date: expected a TOML date (YYYY-MM-DD, unquoted), got "2027-06-30"',
        ),
        (
            "due_date = 2027-06-30",
            "due_date = 2027-06-30T00:00:00Z",
            "reference_standards[0].due_date: expected a TOML date (YYYY-MM-DD, unquoted), got a datetime",
        ),
        (
            "expanded_uncertainty_pct = 0.1",
            "expanded_uncertainty_pct = -0.1",
            "reference_standards[0].expanded_uncertainty_pct",
        ),
        (
            "expanded_uncertainty_pct = 0.1",
            "expanded_uncertainty_pct = nan",
            "reference_standards[0].expanded_uncertainty_pct: expected a finite number, got nan",
        ),
        (
            'reference_standards = ["ref-meter-1"]',
            'reference_standards = ["ref-meter-9"]',
            "benches[0].reference_standards[0]: 'ref-meter-9' is not a [[reference_standards]] id",
        ),
        ('place = "Fictional City"', 'plaice = "Fictional City"', "lab.plaice: unknown key"),
        (
            'place = "Fictional City"',
            'previous_keys = [{fingerprint = "' + "ab" * 16 + '", retired = "2026-01-01"}]',
            'lab.previous_keys[0].retired: expected a TOML date (YYYY-MM-DD, unquoted), got "2026-01-01"',
        ),
        (
            'place = "Fictional City"',
            'previous_keys = [{fingerprint = "xyz", retired = 2026-01-01}]',
            "lab.previous_keys[0].fingerprint: expected the 32 hex digits printed by `meterbench keygen`",
        ),
        (
            "[[reference_standards]]",
            '[[technicians]]\nid = "tech-01"\nname = "Other"\n\n[[reference_standards]]',
            "technicians[1].id: 'tech-01' is used twice",
        ),
    ],
)
def test_a_bad_field_is_one_line_naming_the_file_and_field(lab, old, new, expected):
    message = _edited(lab, old, new)
    assert message.count("\n") == 0, message
    assert message.startswith(f"{lab.toml}: ")
    assert expected in message


def test_key_fingerprint_must_be_32_hex_digits(lab):
    message = _edited(lab, f'key_fingerprint = "{lab.fingerprint}"', 'key_fingerprint = "abc"')
    assert (
        message == f"{lab.toml}: lab.key_fingerprint: expected the 32 hex digits printed by `meterbench keygen` "
        '(colons allowed), got "abc"'
    )


def test_not_toml_and_missing_file_are_one_line(tmp_path):
    bad = tmp_path / "LAB.toml"
    bad.write_text("[lab\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"LAB.toml: not valid TOML"):
        load_lab(bad)
    with pytest.raises(ConfigError, match=r"nope.toml: cannot be read"):
        load_lab(tmp_path / "nope.toml")
    assert SAMPLE_LAB.is_file()
