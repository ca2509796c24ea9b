"""The lab's register: numbers under two concurrent processes, the audit log's tamper evidence, crash safety."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from meterbench.certificates import LabRegister, audit_problems, audit_verify, load_private_key, load_public_key

from .conftest import WATER_SESSION, LabFixture, make_lab, require_cert

require_cert()

ROUNDS = 3


@pytest.mark.slow
def test_two_concurrent_certify_processes_never_share_a_number(lab, water_run, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from meterbench.certificates import certify_run
        out = Path(sys.argv[1])
        for i in range({ROUNDS}):
            for c in certify_run(Path({str(water_run)!r}), Path({str(lab.key)!r}), Path({str(lab.toml)!r}),
                                 out / str(i), technician_id="tech-01", session_dir=Path({str(WATER_SESSION)!r})):
                print(c.number, c.verification_code, flush=True)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path / f"p{n}")], stdout=subprocess.PIPE, text=True)
        for n in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    numbers = [int(line.split()[0]) for out in outputs for line in out.splitlines()]
    per_process = [[int(line.split()[0]) for line in out.splitlines()] for out in outputs]
    assert all(len(n) == 2 * ROUNDS for n in per_process)
    assert sorted(numbers) == list(range(1, 4 * ROUNDS + 1))  # consecutive, none twice, none skipped
    codes = [line.split()[1] for out in outputs for line in out.splitlines()]
    assert len(set(codes)) == len(codes)
    lines, intact = audit_verify(lab.register / "audit.jsonl", lab.pub, lab.toml)
    assert intact and lines == [f"intact: {lines[0].split()[1]} entries, {4 * ROUNDS} certificates issued; "
                                "checked hash chain and signatures"]  # fmt: skip


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory, water_run_master: Path) -> tuple[LabFixture, Path]:
    """A lab (keys, LAB.toml) and, apart, a register in which it issued 4 certificates (the run twice), once."""
    from meterbench.certificates import certify_run

    folder = tmp_path_factory.mktemp("master")
    lab = make_lab(folder / "lab")
    run = Path(shutil.copytree(water_run_master, folder / "run"))
    for out in ("a", "b"):
        certify_run(run, lab.key, lab.toml, run / out, technician_id="tech-01")
    return lab, Path(shutil.move(lab.register, folder / "issued-register"))


@pytest.fixture
def lab(master, tmp_path: Path) -> LabFixture:
    """A private copy of the master lab (same key), with no register: overrides conftest's (a new key each)."""
    source = master[0]
    folder = Path(shutil.copytree(source.folder, tmp_path / "lab"))  # copy2 keeps lab.key at 0600
    return LabFixture(folder, folder / "keys/lab.key", folder / "keys/lab.pub", folder / "LAB.toml", source.fingerprint)


@pytest.fixture
def issued_log(master, lab) -> Path:
    """The lab's register with the 4 certificates issued."""
    shutil.copytree(master[1], lab.register)
    return lab.register / "audit.jsonl"


def test_audit_log_records_issues_and_config_changes(lab, water_run, issued_log):
    from meterbench.certificates import certify_run

    entries = LabRegister(lab.register).read_entries()
    events = [e.event for e in entries]
    assert events.count("certificate-issued") == 4 and events.count("certificate-number-reserved") == 4
    first_seen = {e.what for e in entries if e.event == "config-first-seen"}
    assert {"lab file", "signing key", "software", "model digit_wheel", "table water_meter"} <= first_seen
    assert "config-changed" not in events  # the same configuration the second time
    lab.write_toml(lab.toml.read_text(encoding="utf-8").replace("hall 0", "hall 1"))
    certify_run(water_run, lab.key, lab.toml, water_run / "c", technician_id="tech-01")
    [changed] = [e for e in LabRegister(lab.register).read_entries() if e.event == "config-changed"]
    assert changed.what == "lab file" and changed.old_hash != changed.new_hash
    line = json.loads(issued_log.read_text(encoding="utf-8").splitlines()[-1])
    assert line["who"].startswith("tech-01 (os user ")


def test_every_edit_deletion_and_swap_of_audit_lines_is_caught(lab, issued_log):
    key = load_public_key(lab.pub)
    data = issued_log.read_bytes()
    assert audit_problems(data, key.verify) == []
    lines = data.splitlines(keepends=True)
    assert len(lines) >= 18
    for i, line in enumerate(lines):
        entry = json.loads(line)
        entry["time_utc"] = entry["time_utc"].replace("Z", "+00:00")  # a plausible edit of one field
        edited = b"".join(lines[:i] + [json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"]
                          + lines[i + 1 :])  # fmt: skip
        assert audit_problems(edited, key.verify), f"edit of line {i + 1} not caught"
        deleted = b"".join(lines[:i] + lines[i + 1 :])
        if i < len(lines) - 1:  # deleting the last line: caught against the stored records (below)
            assert audit_problems(deleted, key.verify), f"deletion of line {i + 1} not caught"
        if i < len(lines) - 1:
            swapped = b"".join(lines[:i] + [lines[i + 1], lines[i]] + lines[i + 2 :])
            assert audit_problems(swapped, key.verify), f"swap of lines {i + 1}, {i + 2} not caught"
        flipped = bytearray(data)
        flipped[sum(len(x) for x in lines[:i]) + len(line) // 2] ^= 0x01
        assert audit_problems(bytes(flipped), key.verify), f"byte flip in line {i + 1} not caught"


def test_a_rewritten_chain_needs_the_key_and_a_cut_off_end_is_found_from_the_records(lab, issued_log):
    from meterbench.certificates._register import _entry_hash

    lines = issued_log.read_bytes().splitlines(keepends=True)
    entries = [json.loads(x) for x in lines]
    entries[3]["who"] = "somebody else"
    prev = entries[2]["hash"]
    for entry in entries[3:]:  # the forger recomputes the whole chain, but has no private key
        entry["prev"] = prev
        entry["hash"] = prev = _entry_hash(entry)
    forged = b"".join(json.dumps(e, sort_keys=True, separators=(",", ":")).encode() + b"\n" for e in entries)
    assert audit_problems(forged) == []  # the chain alone cannot tell
    assert audit_problems(forged, load_public_key(lab.pub).verify)[0] == (
        "line 4: signature does not match (not written with the lab's key)"
    )
    issued_log.write_bytes(b"".join(lines[:-1]))  # the last certificate-issued line removed
    report, intact = audit_verify(issued_log, lab.pub, lab.toml)
    assert not intact
    assert any("certificate-4.json: stored record not in the audit log as issued" in line for line in report)


def test_a_torn_last_line_is_cut_off_and_recorded_and_numbering_goes_on(lab, water_run, issued_log):
    from meterbench.certificates import certify_run

    with issued_log.open("ab") as f:
        f.write(b'{"seq":99,"event":"certif')  # a crash in the middle of a write
    lines, intact = audit_verify(issued_log, lab.pub)
    assert not intact and "incomplete last line" in lines[0]
    [issued, _] = certify_run(water_run, lab.key, lab.toml, water_run / "d", technician_id="tech-01")
    assert issued.number == 5
    entries = LabRegister(lab.register).read_entries()
    assert [e.event for e in entries].count("torn-write-discarded") == 1
    assert audit_verify(issued_log, lab.pub, lab.toml)[1]


def test_certify_refuses_a_damaged_log_and_writes_nothing(lab, water_run, issued_log):
    from meterbench.certificates import certify_run
    from meterbench.errors import OutputError

    lines = issued_log.read_bytes().splitlines(keepends=True)
    issued_log.write_bytes(b"".join([lines[1], lines[0], *lines[2:]]))
    with pytest.raises(OutputError, match=r"audit.jsonl: the audit log is damaged \(line 1: seq 2"):
        certify_run(water_run, lab.key, lab.toml, water_run / "e", technician_id="tech-01")
    assert not (water_run / "e").exists() or not any((water_run / "e").iterdir())


def test_audit_entries_are_signed_by_the_lab_key(lab, issued_log):
    key = load_private_key(lab.key)
    entry = json.loads(issued_log.read_text(encoding="utf-8").splitlines()[0])
    import base64

    assert key.public.verify(base64.b64decode(entry["signature"]), entry["hash"].encode())


@pytest.mark.parametrize(
    "line",
    [b"[1, 2]", b"NaN", b'{"seq": 1}', b"\xff\xfe", b"{}" * 3],
)
def test_a_hostile_audit_line_is_reported_never_an_exception(lab, issued_log, line):
    lines = issued_log.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[4])
    entry["details"] = []  # the right keys, a wrong type
    lines[4] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    issued_log.write_bytes(b"".join(lines[:6] + [line + b"\n"] + lines[6:]))
    report, intact = audit_verify(issued_log, lab.pub, lab.toml)
    assert not intact
    assert any(r.startswith("NOT intact: ") and ": line 7: " in r for r in report)
    assert any(": line 5: " in r for r in report)
