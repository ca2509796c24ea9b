"""The reader's side of tamper evidence: each device log's hash chain and hashes.json are checked when the
session is read; what cannot be trusted is named (file:line), never used, and given as an EvidenceGap."""

from __future__ import annotations

import json
import math
from pathlib import Path

from meterbench.protocols import format_totaliser_line
from meterbench.session import EvidenceGap, load_session
from tests.session.session_helpers import FPS, record_session

LOG = "devices/ref-meter.jsonl"


def _lines(folder: Path) -> list[str]:
    return (folder / LOG).read_text().splitlines()


def _write(folder: Path, lines: list[str]) -> None:
    (folder / LOG).write_text("\n".join(lines) + "\n")


def test_a_closed_recording_reads_without_a_warning(tmp_path):
    session = load_session(record_session(tmp_path / "s"))
    assert len(session.device_events("ref-meter")) == 25
    assert session.device_gaps("ref-meter") == [] and session.warnings == [] and session.tampered == []


def test_a_line_changed_in_raw_and_parsed_alike_is_found_by_the_chain(tmp_path):
    """Re-parsing cannot see it (raw and parsed agree): the next line's prev can."""
    folder = record_session(tmp_path / "s")
    (folder / "hashes.json").unlink()  # the chain alone
    lines = _lines(folder)
    event = json.loads(lines[9])  # line 10: the totaliser line of index 9, t_s 0.9123 s
    event["raw"] = format_totaliser_line(9, 91, 0.091, 2400.0, 20.12).decode()  # its checksum made anew
    event["parsed"].update(pulses=91, volume_l=0.091)
    lines[9] = json.dumps(event)
    _write(folder, lines)
    session = load_session(folder)
    events = session.device_events("ref-meter")
    reason = f"{LOG}:11: hash chain broken (line 10 was changed, or lines removed); line 10 not used"
    assert session.warnings == [reason]
    assert events[9].parsed is None and events[9].error == reason  # kept raw, never used
    assert all(e.parsed is not None for i, e in enumerate(events[:24]) if i != 9)
    assert session.device_gaps("ref-meter") == [EvidenceGap(8 / FPS + 0.0123, 10 / FPS + 0.0123, reason)]


def test_a_log_of_another_device_is_not_used_at_all(tmp_path):
    folder = record_session(tmp_path / "s")
    (folder / "hashes.json").unlink()
    (folder / "devices" / "controller.jsonl").write_bytes((folder / LOG).read_bytes())  # swapped in
    session = load_session(folder)
    session.device_events("controller")
    whole = [g for g in session.device_gaps("controller") if (g.t_from_s, g.t_to_s) == (-math.inf, math.inf)]
    assert [g.reason for g in whole] == [
        "devices/controller.jsonl:1: hash chain broken (line 0 was changed, or lines removed): no line of the log "
        "is used"
    ]


def test_a_change_after_close_is_found_by_hashes_json(tmp_path):
    """The last line is beyond the chain (no line after it): hashes.json names the file, and no line of it
    is trusted; a changed session.json means no verdict at all."""
    folder = record_session(tmp_path / "s")
    lines = _lines(folder)
    lines[-1] = lines[-1].replace("no $ start", "no $ start!")
    _write(folder, lines)
    session = load_session(folder)
    assert session.warnings == [f"{LOG}: changed since the session was closed"]
    session.device_events("ref-meter")
    assert session.device_gaps("ref-meter") == [
        EvidenceGap(-math.inf, math.inf, f"{LOG}: changed since the session was closed (hashes.json)")
    ]
    assert session.tampered == []
    manifest = json.loads((folder / "session.json").read_text())
    manifest["instruments"][0]["accuracy_class"] = 1
    (folder / "session.json").write_text(json.dumps(manifest))
    assert load_session(folder).tampered == [
        "session.json: changed since the session was closed (hashes.json): no verdict is given"
    ]


def test_an_older_recording_without_chain_or_hashes_still_loads(tmp_path):
    folder = record_session(tmp_path / "s")
    (folder / "hashes.json").unlink()
    for log in (folder / "devices").glob("*.jsonl"):
        events = [json.loads(line) for line in log.read_text().splitlines()]
        log.write_text("".join(json.dumps({k: v for k, v in e.items() if k != "prev"}) + "\n" for e in events))
    session = load_session(folder)
    assert len(session.device_events("ref-meter")) == 25 and session.device_gaps("ref-meter") == []
    assert session.warnings == []


def test_an_unusable_hashes_json_is_a_warning(tmp_path):
    folder = record_session(tmp_path / "s")
    (folder / "hashes.json").write_text('{"format": "meterbench-session-hashes", "files": {"a": "xyz"}}')
    session = load_session(folder)
    assert session.warnings == [
        'hashes.json: expected {"format": \'meterbench-session-hashes\', "files": {path: sha256 hex}}; '
        "the files are not checked against it"
    ]
