"""`batch --cluster`: the same reports and summary as the local pool, on a real Dask scheduler and two
worker processes on 127.0.0.1 started here; a worker killed mid-session, a stuck session, a worker with
another meterbench, an unreachable scheduler."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from meterbench.batch import run_batch
from meterbench.testing import LocalDaskCluster, free_tcp_port
from tests.conftest import require_module

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_module("distributed", "cluster")
    local = LocalDaskCluster(tmp_path_factory.mktemp("dask"), workers=2).start()
    yield local
    local.stop()


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> Path:
    """Two small tank sessions and one whose manifest is broken (a failure must be the same too)."""
    root = tmp_path_factory.mktemp("sessions")
    for name in ("tank-a", "tank-b"):
        shutil.copytree(SAMPLES / "tank-sim-seed2", root / name)
    shutil.copytree(SAMPLES / "tank-sim-seed2", root / "broken")
    (root / "broken" / "session.json").write_text('{"format": "meterbench-session", "format_version": 1')
    return root


def _kill_a_worker_mid_session(address: str, killed: list[int], stop: threading.Event) -> None:
    """Kill -9 the first worker process seen verifying a session of the batch (its nanny restarts it)."""
    from distributed import Client

    with Client(address, timeout=10, set_as_default=False) as client:
        while not stop.is_set():
            busy = [
                w for w, keys in client.processing().items() if any(k.startswith("meterbench-batch-") for k in keys)
            ]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.02)


def test_cluster_writes_the_bytes_of_the_local_pool_even_when_a_worker_dies(cluster, sessions, tmp_path):
    local = tmp_path / "local"
    assert run_batch([sessions], local, jobs=2) == 1  # the broken session fails in both

    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_worker_mid_session, args=(cluster.address, killed, stop), daemon=True)
    killer.start()
    try:
        status = run_batch([sessions], tmp_path / "cluster", cluster=cluster.address)
    finally:
        stop.set()
        killer.join(15)
    assert killed, "no worker was seen verifying a session"
    assert status == 1

    out = tmp_path / "cluster"
    for name in ("summary.csv", "summary.json", "tank-a/report.json", "tank-a/report.html", "tank-b/report.json"):
        assert (out / name).read_bytes() == (local / name).read_bytes(), name
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in local.iterdir())  # no marker left
    summary = json.loads((out / "summary.json").read_text())
    assert [(Path(s["path"]).name, s["status"]) for s in summary["sessions"]] == [
        ("broken", "failed"),
        ("tank-a", "done"),
        ("tank-b", "done"),
    ]  # the killed worker's session was verified again, once, on the other worker


def test_a_stuck_session_is_ended_and_listed_as_failed(cluster, tmp_path):
    root = tmp_path / "sessions"
    shutil.copytree(SAMPLES / "water-meter-short", root / "slow")  # takes far longer than 2 s to verify
    started = time.monotonic()
    status = run_batch([root], tmp_path / "out", cluster=cluster.address, timeout_s=2.0)
    assert status == 1
    assert time.monotonic() - started < 20
    (session,) = json.loads((tmp_path / "out" / "summary.json").read_text())["sessions"]
    assert session["status"] == "failed"
    assert session["reason"].startswith("timed out after 2 s: its worker tcp://127.0.0.1:")
    assert not (tmp_path / "out" / "slow" / "report.json").exists()


def test_a_worker_with_another_meterbench_is_refused(cluster, sessions, tmp_path, capsys):
    from meterbench.cli import main

    foreign = tmp_path / "foreign"
    shutil.copytree(Path(__file__).resolve().parents[1] / "meterbench", foreign / "meterbench")
    with (foreign / "meterbench" / "calibration" / "__init__.py").open("a") as module:
        module.write("\n# an edit: another engine\n")
    worker = cluster.add_worker({"PYTHONPATH": str(foreign)})
    try:
        status = main(["batch", str(sessions / "tank-a"), "--out", str(tmp_path / "out"), "--cluster", cluster.address])
    finally:
        cluster.stop_worker(worker)
    assert status == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "runs a different meterbench (files_sha256 " in line and "install the same meterbench there" in line
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_worker_that_does_not_share_the_folders_fails_that_session(tmp_path):
    from meterbench.batch import _verify_on_cluster_worker, engine_identity

    marker = tmp_path / "out" / ".meterbench-cluster-x"  # as a worker on another filesystem sees it: absent
    result = _verify_on_cluster_worker(
        str(SAMPLES / "tank-sim-seed2"), str(tmp_path / "out" / "t"), None, engine_identity(), str(marker), "x"
    )
    assert result["status"] == "failed"
    assert "does not see the output folder" in result["reason"] and "shared at the same paths" in result["reason"]
    assert not (tmp_path / "out").exists()  # nothing written where the batch would not find it


def test_an_unreachable_scheduler_is_one_line_and_exit_2_within_the_connect_timeout(tmp_path, capsys):
    from meterbench.cli import main

    require_module("distributed", "cluster")
    address = f"tcp://127.0.0.1:{free_tcp_port()}"  # nothing listens there
    started = time.monotonic()
    args = ["batch", str(SAMPLES / "tank-sim-seed2"), "--out", str(tmp_path / "out"), "--cluster", address]
    assert main([*args, "--connect-timeout", "2"]) == 2
    assert time.monotonic() - started < 6  # the 2 s timeout and importing Dask
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"meterbench batch: batch --cluster: no Dask scheduler answered at {address} within 2 s")
    assert not (tmp_path / "out").exists()


def test_jobs_and_cluster_together_are_refused(tmp_path):
    from meterbench.cli import main

    assert main(["batch", str(SAMPLES), "--out", str(tmp_path), "--jobs", "2", "--cluster", "tcp://127.0.0.1:1"]) == 2
