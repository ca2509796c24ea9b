"""Tamper evidence: the device logs' hash chain and hashes.json written at close."""

from __future__ import annotations

import json

from meterbench.session import SessionRecorder
from meterbench.session.integrity import chain_breaks, file_sha256, hash_files, hash_mismatches
from tests.session.session_helpers import water_meter_manifest


def _record(folder):
    with SessionRecorder.create(folder, water_meter_manifest()) as recorder:
        log = recorder.device_log("ref-meter", "serial-totaliser")
        for i in range(5):
            log.append(0.1 * i, f"$TOT,{i}\r\n", {"volume_l": 0.5 * i})
    return folder / "devices" / "ref-meter.jsonl"


def test_close_writes_the_hash_of_every_file(tmp_path):
    log = _record(tmp_path / "s")
    recorded = json.loads((tmp_path / "s" / "hashes.json").read_text())
    assert recorded["format"] == "meterbench-session-hashes" and recorded["algorithm"] == "sha256"
    assert set(recorded["files"]) == {"session.json", "devices/ref-meter.jsonl"}
    assert recorded["files"]["devices/ref-meter.jsonl"] == file_sha256(log)
    assert hash_mismatches(tmp_path / "s", recorded["files"]) == []


def test_an_edited_line_breaks_the_chain_at_the_next_line(tmp_path):
    log = _record(tmp_path / "s")
    lines = log.read_bytes().splitlines()
    assert chain_breaks(lines, "ref-meter", "devices/ref-meter.jsonl") == []
    edited = lines[:2] + [lines[2].replace(b'"volume_l":1.0', b'"volume_l":1.1')] + lines[3:]
    assert edited != lines
    assert chain_breaks(edited, "ref-meter", "devices/ref-meter.jsonl") == [
        "devices/ref-meter.jsonl:4: hash chain broken (line 3 was changed, or lines removed)"
    ]
    removed = lines[:1] + lines[2:]
    assert chain_breaks(removed, "ref-meter", "log") == [
        "log:2: hash chain broken (line 1 was changed, or lines removed)"
    ]
    assert chain_breaks(lines, "flow-computer", "log")[0].startswith("log:1: hash chain broken")  # swapped logs


def test_changes_after_close_are_named(tmp_path):
    log = _record(tmp_path / "s")
    recorded = hash_files(tmp_path / "s")
    log.write_bytes(log.read_bytes().replace(b'"volume_l":2.0', b'"volume_l":2.5'))  # the last line
    (tmp_path / "s" / "devices" / "extra.jsonl").write_text("{}\n")
    assert hash_mismatches(tmp_path / "s", recorded) == [
        "devices/ref-meter.jsonl: changed since the session was closed",
        "devices/extra.jsonl: added after the session was closed",
    ]
