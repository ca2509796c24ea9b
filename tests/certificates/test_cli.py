"""The keygen / certify / verify / audit commands: what they print and their exit status."""

from __future__ import annotations

import re
import stat
import subprocess
import sys

from meterbench.cli import main

from .conftest import PLACEHOLDER, SAMPLE_LAB, WATER_SESSION, require_cert

require_cert()


def test_keygen_writes_a_private_key_only_its_owner_can_read_and_never_overwrites(tmp_path, capsys):
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 0
    out = capsys.readouterr().out
    fingerprint = re.search(r"fingerprint ([0-9a-f]{32})", out).group(1)
    assert stat.S_IMODE((tmp_path / "keys" / "lab.key").stat().st_mode) == 0o600
    from meterbench.certificates import load_public_key

    assert load_public_key(tmp_path / "keys" / "lab.pub").fingerprint == fingerprint
    before = (tmp_path / "keys" / "lab.key").read_bytes()
    assert main(["keygen", "--out", str(tmp_path / "keys")]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"meterbench keygen: {tmp_path / 'keys' / 'lab.key'}: exists "
        "(a lab key is never overwritten; choose another --out)\n"
    )
    assert (tmp_path / "keys" / "lab.key").read_bytes() == before


def test_a_private_key_readable_by_others_is_refused(lab, water_run, capsys):
    lab.key.chmod(0o644)
    assert main(["certify", str(water_run), "--key", str(lab.key), "--lab", str(lab.toml)]) == 2
    assert capsys.readouterr().err == (
        f"meterbench certify: {lab.key}: private key readable by others (mode 0644; expected 0600)\n"
    )


def test_certify_prints_the_codes_and_verify_exits_0_or_1(lab, water_run, capsys):
    args = ["certify", str(water_run), "--key", str(lab.key), "--lab", str(lab.toml), "--technician", "tech-01",
            "--session", str(WATER_SESSION)]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and re.fullmatch(r"\S{5}-\S{5}-\S  certificate 1, instrument M1: pass", out[0])
    code = out[1].split()[0]
    assert main(["verify", "--code", code, "--lab", str(lab.toml)]) == 0
    assert capsys.readouterr().out.startswith("valid: certificate 2, instrument S/N SIM-0002, verdict fail")
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    assert main(["verify", "--code", typo, "--lab", str(lab.toml)]) == 1
    assert capsys.readouterr().out == (
        "NOT valid: code checksum wrong or malformed: check character does not match (a mistyped character?)\n"
    )
    assert main(["verify", str(water_run / "certificate-1.pdf"), "--public-key", str(lab.pub)]) == 0
    assert capsys.readouterr().out.startswith("valid: certificate 1")
    (water_run / "certificate-1.json").write_text("{}", encoding="utf-8")
    assert main(["verify", str(water_run / "certificate-1.pdf"), "--public-key", str(lab.pub)]) == 1
    assert "NOT valid: certificate-1.json: not a certificate record" in capsys.readouterr().out
    assert main(["audit", "verify", str(lab.register / "audit.jsonl"), "--lab", str(lab.toml)]) == 0
    assert capsys.readouterr().out.startswith("intact: ")


def test_verify_needs_a_file_or_a_code(capsys):
    # (--code with --db: tests/store/test_cli.py)
    assert main(["verify"]) == 2
    assert capsys.readouterr().err == "meterbench verify: expected a FILE or --code CODE (one of them)\n"


def test_bad_lab_file_is_one_line_and_exit_2_on_the_real_command_line(lab, water_run):
    lab.toml.write_text(SAMPLE_LAB.read_text(encoding="utf-8").replace('name = "王', 'nam = "王'), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "meterbench", "certify", str(water_run), "--key", str(lab.key), "--lab", str(lab.toml)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"meterbench certify: {lab.toml}: technicians[0].nam: unknown key (expected one of id, name)",
        f"meterbench certify: {lab.toml}: technicians[0].name: missing (expected a non-empty string)",
    ]
    assert PLACEHOLDER in SAMPLE_LAB.read_text(encoding="utf-8")
