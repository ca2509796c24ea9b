"""Helmet-impact sessions through the common loader and writer: schema, trace hashes, refusals."""

import hashlib
import json

import numpy as np
import pytest

from meterbench.cli import main
from meterbench.errors import SessionError
from meterbench.session import SessionRecorder, load_session
from meterbench.sim import simulate_helmet


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    return simulate_helmet(tmp_path_factory.mktemp("helmet") / "s", seed=1)


def _copy(recorded, tmp_path):
    import shutil

    return shutil.copytree(recorded, tmp_path / "s")


def test_loader_reads_a_recorded_helmet_session_and_hashes_every_trace(recorded):
    with load_session(recorded) as session:
        assert session.bench_kind == "helmet-impact" and session.simulated
        assert [h["id"] for h in session.helmets] == ["H1", "H2", "H3", "H4", "H5"]
        assert len(session.impacts) == 14 and session.instruments == [] and session.test_plan_points == []
        entry = session.impacts[0]
        data = (recorded / entry["trace"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert (entry["fs_hz"], entry["units"]) == (20000.0, "g")
        trace = session.trace(entry)
        assert trace.accel_g.shape == (1000, 3) and trace.fs_hz == 20000.0
        hashes = session.file_hashes()
        traces = session.impacts + session.reference_drops
        assert len(session.reference_drops) == 12 and set(hashes) == {"session.json"} | {i["trace"] for i in traces}
        assert hashes[entry["trace"]] == entry["sha256"]
        assert session.warnings == [] and session.tampered == []
    recorded_files = json.loads((recorded / "hashes.json").read_text())["files"]
    assert recorded_files["traces/H1-front.csv"] == entry["sha256"]


@pytest.mark.parametrize("damage", ["edit", "truncate"])
def test_a_changed_or_truncated_trace_refuses_the_session_in_one_line(recorded, tmp_path, capsys, damage):
    folder = _copy(recorded, tmp_path)
    path = folder / "traces/H2-rear.csv"
    data = path.read_bytes()
    if damage == "edit":  # one digit of one sample
        at = data.index(b"\n", 5000) + 12
        data = data[:at] + (b"1" if data[at : at + 1] != b"1" else b"2") + data[at + 1 :]
    else:
        data = data[: len(data) // 2]
    path.write_bytes(data)
    with pytest.raises(SessionError) as caught:
        load_session(folder)
    assert caught.value.problems == [
        f"traces/H2-rear.csv: changed or truncated since it was recorded ({len(data)} bytes, SHA-256 differs "
        'from session.json\'s for impacts[5] "H2-rear"); the session is not verified'
    ]
    assert main(["run", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "traces/H2-rear.csv: changed or truncated" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_trace_rehashed_into_session_json_is_caught_by_hashes_json(recorded, tmp_path):
    folder = _copy(recorded, tmp_path)
    manifest = json.loads((folder / "session.json").read_text())
    entry = manifest["impacts"][0]
    data = (folder / entry["trace"]).read_bytes().replace(b"\n0.001,", b"\n0.001,9", 1)
    (folder / entry["trace"]).write_bytes(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "session.json").write_text(json.dumps(manifest))
    with pytest.raises(
        SessionError, match=r"^traces/H1-front.csv: changed since the session was closed \(hashes.json\)"
    ):
        load_session(folder)


def test_missing_trace_and_missing_fields_are_session_json_errors(recorded, tmp_path):
    folder = _copy(recorded, tmp_path)
    (folder / "traces/H1-rear.csv").unlink()
    with pytest.raises(SessionError) as caught:
        load_session(folder)
    assert caught.value.problems == [
        'session.json: impacts[1].trace: file "traces/H1-rear.csv" not found in the session folder'
    ]
    manifest = json.loads((folder / "session.json").read_text())
    del manifest["impacts"][2]["sha256"]
    manifest["helmets"].append({"id": "H1", "model": "X"})
    (folder / "session.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "profile"}))
    with pytest.raises(SessionError) as caught:
        load_session(folder)
    assert caught.value.problems[:2] == [
        "session.json: impacts[2].sha256: missing (expected the SHA-256 of the trace file (64 lowercase hex digits))",
        "session.json: profile: missing (expected the name of a helmet standard profile "
        '(helmet.json, e.g. "fmvss-218"))',
    ]


def test_recorder_checks_a_drop_before_writing_its_trace(tmp_path):
    manifest = {
        "session_id": "h",
        "bench_kind": "helmet-impact",
        "profile": "fmvss-218",
        "helmets": [{"id": "H1", "model": "M"}],
        "impacts": [],
    }
    accel = np.zeros((100, 3))
    with SessionRecorder.create(tmp_path / "s", manifest) as rec:
        with pytest.raises(SessionError, match=r"impacts\[0\]\.anvil: missing"):
            rec.add_trace("impacts", {"name": "d1", "helmet": "H1", "velocity_m_s": 6.0}, accel, fs_hz=20000.0)
        assert not (tmp_path / "s/traces/d1.csv").exists()
        listed = rec.add_trace(
            "impacts", {"name": "d1", "helmet": "H1", "anvil": "flat", "velocity_m_s": 6.0}, accel, fs_hz=20000.0
        )
        with pytest.raises(ValueError, match="'d1': a drop of this name is recorded already"):
            rec.add_trace("reference_drops", {"name": "d1", "when": "before"}, accel, fs_hz=20000.0)
    assert listed["sha256"] == hashlib.sha256((tmp_path / "s/traces/d1.csv").read_bytes()).hexdigest()
    with load_session(tmp_path / "s") as session:
        assert np.array_equal(session.trace(session.impacts[0]).accel_g, accel)


def test_a_session_json_changed_after_closing_gives_no_verdict(recorded, tmp_path):
    from meterbench.verify import verify_helmet_session

    folder = _copy(recorded, tmp_path)
    manifest = json.loads((folder / "session.json").read_text())
    manifest["impacts"][1]["velocity_m_s"] = 6.0  # H1-rear, a quiet edit
    (folder / "session.json").write_text(json.dumps(manifest))
    report = verify_helmet_session(folder)
    points = [p for helmet in report["instruments"] for p in helmet["points"]]
    assert len(points) == 14 and {p["verdict"] for p in points} == {"inconclusive"}
    assert (
        points[0]["reason"] == "session.json: changed since the session was closed (hashes.json): no verdict is given"
    )
    assert report["verdict"] == "inconclusive"
