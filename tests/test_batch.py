"""Batch re-verification: many sessions, summaries, failures kept apart, comparison, determinism."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meterbench.batch import compare_summaries, find_sessions, run_batch

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> Path:
    """A folder with the two shipped samples and one session whose manifest is broken."""
    root = tmp_path_factory.mktemp("sessions")
    shutil.copytree(SAMPLES / "water-meter-short", root / "bench-a" / "water-meter-short")
    shutil.copytree(SAMPLES / "tank-sim-seed2", root / "bench-b" / "tank-sim-seed2")
    broken = root / "bench-b" / "broken"
    shutil.copytree(SAMPLES / "tank-sim-seed2", broken)
    (broken / "session.json").write_text('{"format": "meterbench-session", "format_version": 1')
    return root


@pytest.fixture(scope="module")
def batch_one(sessions, tmp_path_factory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("batch1")
    return run_batch([sessions], out, jobs=1), out


def test_find_sessions_walks_folders(sessions):
    found = find_sessions([sessions])
    assert [p.name for p in found] == ["water-meter-short", "broken", "tank-sim-seed2"]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_sessions([sessions / "nowhere"])


def test_failed_session_is_reported_and_the_others_go_on(batch_one):
    status, out = batch_one
    assert status == 1  # one session could not be verified
    summary = json.loads((out / "summary.json").read_text())
    by_status = {s["path"].split("/")[-1]: s["status"] for s in summary["sessions"]}
    assert by_status == {"water-meter-short": "done", "broken": "failed", "tank-sim-seed2": "done"}
    failed = next(s for s in summary["sessions"] if s["status"] == "failed")
    assert "session.json" in failed["reason"]
    assert (out / "water-meter-short" / "report.json").is_file()
    assert (out / "tank-sim-seed2" / "report.html").is_file()
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert {r["point"] for r in rows if r["session"] == "sim-water-meter-seed1-short"} == {"Q3", "Q2", "Q1"}
    assert all(r["configuration_hash"] for r in rows if r["status"] == "done")


@pytest.mark.slow
def test_jobs_do_not_change_a_byte(sessions, batch_one, tmp_path):
    _, out_one = batch_one
    assert run_batch([sessions], tmp_path, jobs=2) == 1
    for name in ("water-meter-short", "tank-sim-seed2"):
        assert (tmp_path / name / "report.json").read_bytes() == (out_one / name / "report.json").read_bytes()
    assert (tmp_path / "summary.csv").read_bytes() == (out_one / "summary.csv").read_bytes()


def test_compare_lists_changed_verdicts_and_errors():
    old = [
        {"session": "s", "instrument": "M1", "point": "Q3", "verdict": "pass", "error_pct": 0.5},
        {"session": "s", "instrument": "M1", "point": "Q2", "verdict": "pass", "error_pct": 1.0},
        {"session": "s", "instrument": "M1", "point": "Q1", "verdict": "pass", "error_pct": 1.0},
    ]
    new = [
        {"session": "s", "instrument": "M1", "point": "Q3", "verdict": "pass", "error_pct": 0.503},
        {"session": "s", "instrument": "M1", "point": "Q2", "verdict": "fail", "error_pct": 1.0},
        {"session": "s", "instrument": "M1", "point": "Q1", "verdict": "pass", "error_pct": 1.02},
    ]
    changes = compare_summaries(new, old)
    assert [(c["point"], c["change"]) for c in changes] == [("Q2", "verdict"), ("Q1", "error")]


def test_cli_compare_against_an_earlier_batch(sessions, batch_one, tmp_path):
    _, out_one = batch_one
    old = tmp_path / "old"
    shutil.copytree(out_one, old)
    summary = json.loads((old / "summary.json").read_text())
    row = next(r for r in summary["points"] if r.get("point") == "R1")
    row["verdict"] = "fail" if row["verdict"] != "fail" else "pass"
    (old / "summary.json").write_text(json.dumps(summary))
    tank = sessions / "bench-b" / "tank-sim-seed2"  # the quick session: the comparison is what is tested
    result = subprocess.run(
        [sys.executable, "-m", "meterbench", "batch", str(tank), "--out", str(tmp_path / "new"), "--compare", str(old)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"changed: {row['session']} {row['instrument']} R1" in result.stdout
    assert "1 points changed" in result.stdout


def test_ctrl_c_keeps_what_was_finished(tmp_path):
    import os
    import signal
    import time

    root = tmp_path / "sessions"
    for k in range(4):
        shutil.copytree(SAMPLES / "tank-sim-seed2", root / f"tank-{k}")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meterbench", "batch", str(root), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "summary.json").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C does: the whole process group
    _, stderr = proc.communicate(timeout=120)
    summary = json.loads((out / "summary.json").read_text())
    finished = [s for s in summary["sessions"] if s["status"] == "done"]
    assert finished, "the session finished before Ctrl-C must be kept"
    for session in finished:
        assert (out / Path(session["path"]).name / "report.json").is_file()
    if proc.returncode == 130:  # interrupted before the last session: said so, summary marked incomplete
        assert "interrupted" in stderr
        assert summary["complete"] is False
    else:  # the batch won the race and finished everything
        assert proc.returncode == 0 and summary["complete"] is True


def test_configuration_hash_follows_the_reading_options():
    from meterbench.batch import configuration_hash
    from meterbench.verify.water_meter import ReadingOptions

    assert configuration_hash() == configuration_hash(ReadingOptions())
    assert configuration_hash(ReadingOptions(track_interval_s=0.5)) != configuration_hash()


def test_a_session_over_its_time_limit_is_killed_and_listed_as_failed(tmp_path):
    root = tmp_path / "sessions"
    shutil.copytree(SAMPLES / "water-meter-short", root / "slow")  # takes several seconds to verify
    shutil.copytree(SAMPLES / "tank-sim-seed2", root / "tank")
    out = tmp_path / "out"
    started = time.monotonic()
    status = run_batch([root], out, jobs=1, timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert status == 1
    summary = {Path(s["path"]).name: s for s in json.loads((out / "summary.json").read_text())["sessions"]}
    assert summary["slow"]["status"] == "failed"
    assert summary["slow"]["reason"].startswith("timed out after 1 s: worker killed")
    # the next session runs in a fresh worker and is verified in full
    assert summary["tank"]["status"] == "done" and (out / "tank" / "report.json").is_file()
    assert not (out / "slow" / "report.json").exists()
    assert elapsed < 60


def test_a_batch_timeout_must_be_positive(tmp_path):
    from meterbench.errors import ConfigError

    with pytest.raises(ConfigError, match="batch: timeout: expected a number of seconds > 0"):
        run_batch([SAMPLES], tmp_path, timeout_s=0)


_FRAME_ALLOCATIONS = """
import resource, sys
import numpy as np
from meterbench.batch import _undo_nanny_malloc_trim
undone = _undo_nanny_malloc_trim() if sys.argv[1] == "undo" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(300):  # decoded frames: 640 x 360 x 3 bytes each, allocated and freed in turn
    frame = np.ones((360, 640, 3), np.uint8)
    del frame
print(undone, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_a_dask_worker_allocates_frames_like_a_plain_process():
    """Under the nanny's MALLOC_TRIM_THRESHOLD_=65536 every frame buffer was mmapped and faulted in anew
    (300 frames: ~50,000 page faults; +20 % per session); undone, they come from the heap as without it."""
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    runs = {}
    for mode in ("keep", "undo"):
        done = subprocess.run(
            [sys.executable, "-c", _FRAME_ALLOCATIONS, mode], env=env, capture_output=True, text=True, check=True
        )
        undone, faults = done.stdout.split()
        runs[mode] = (undone == "True", int(faults))
    assert runs["keep"][0] is False and runs["undo"][0] is True
    assert runs["keep"][1] > 300 * 100  # each frame faulted in page by page (169 pages)
    assert runs["undo"][1] < 300 * 5, runs
