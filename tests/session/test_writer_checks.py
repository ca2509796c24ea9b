"""The writer checks what it writes with the schemas the reader enforces (session/format.py)."""

from __future__ import annotations

import json

import pytest

from meterbench.errors import SessionError
from meterbench.session import SessionRecorder
from tests.session.session_helpers import water_meter_manifest


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"bench_kind": "gas-meter"}, "session.json: bench_kind: expected one of"),
        ({"session_id": "has space"}, "session.json: session_id: expected an id of letters"),
        ({"test_plan": {"points": "Q3"}}, "session.json: test_plan.points: expected"),
    ],
)
def test_a_manifest_the_reader_refuses_is_never_written(tmp_path, change, problem):
    with pytest.raises(SessionError) as info:
        SessionRecorder.create(tmp_path / "s", {**water_meter_manifest(), **change})
    assert any(line.startswith(problem) for line in info.value.problems), info.value.problems
    assert not (tmp_path / "s").exists()  # checked before anything is created


def test_a_bad_manifest_update_leaves_session_json_as_it_was(tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest())
    before = (tmp_path / "s" / "session.json").read_bytes()
    with pytest.raises(SessionError, match="end_time_utc: expected a UTC time"):
        recorder.update_manifest({"end_time_utc": "yesterday"})
    assert (tmp_path / "s" / "session.json").read_bytes() == before
    assert "end_time_utc" not in recorder.manifest


def test_an_unwritable_parsed_value_keeps_the_raw_line(tmp_path):
    manifest = water_meter_manifest()
    recorder = SessionRecorder.create(tmp_path / "s", manifest)
    log = recorder.device_log("ref-meter", "serial-totaliser")
    log.append(1.0, "$TOT,1,1,0.0001,1.0,20.00*00\r\n", {"volume_l": float("nan")})
    log.append(1.1, "good", {"volume_l": 0.0002})
    recorder.close()
    lines = (tmp_path / "s" / "devices" / "ref-meter.jsonl").read_text().splitlines()
    first = json.loads(lines[0], parse_constant=lambda name: pytest.fail(f"{name} written"))
    assert first["raw"] == "$TOT,1,1,0.0001,1.0,20.00*00\r\n" and first["parsed"] is None
    assert first["error"].startswith("recorder: parsed value not recordable")
    assert json.loads(lines[1])["parsed"] == {"volume_l": 0.0002}


def test_truth_that_the_reader_would_refuse_is_not_written(tmp_path):
    recorder = SessionRecorder.create(tmp_path / "s", water_meter_manifest())
    with pytest.raises(SessionError, match="truth.json: instruments"):
        recorder.write_truth({"instruments": "M1"})
    assert not (tmp_path / "s" / "truth.json").exists()
    recorder.close()


def test_atomic_writes_never_follow_a_planted_temporary_file(tmp_path):
    from meterbench.session import write_texts_atomic

    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("report.json.tmp", ".report.json.tmp", "report.html.tmp"):
        (out / name).symlink_to(target)
    write_texts_atomic({out / "report.json": "{}\n", out / "report.html": "<p>r</p>\n"})
    assert target.read_text() == "keep me"
    assert (out / "report.json").read_text() == "{}\n" and not (out / "report.json").is_symlink()
    assert sorted(p.name for p in out.iterdir() if not p.is_symlink()) == ["report.html", "report.json"]


def test_a_failed_pair_write_leaves_neither_file(tmp_path):
    from meterbench.session import write_texts_atomic

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FileNotFoundError):
        write_texts_atomic({out / "report.json": "{}\n", tmp_path / "missing" / "report.html": "x"})
    assert list(out.iterdir()) == []  # report.json not written alone, no temporary file left
