"""A store that is locked, read-only or goes away: the run is queued (never lost), sent later, never doubled."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import require_module
from tests.store.conftest import new_postgres_database, report_of, write_runs

require_module("sqlalchemy", "store")

from sqlalchemy import func, select  # noqa: E402

from meterbench.store import Store, flush, ingest_paths, queued  # noqa: E402
from meterbench.store._schema import points, runs  # noqa: E402


def _counts(url: str) -> tuple[int, int]:
    with Store(url) as store, store.engine.connect() as connection:
        return (
            connection.execute(select(func.count()).select_from(runs)).scalar_one(),
            connection.execute(select(func.count()).select_from(points)).scalar_one(),
        )


def _points(folders: list[Path]) -> int:
    return sum(len(i["points"]) for f in folders for i in report_of(f)["instruments"])


@pytest.fixture
def spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MB_SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path / "spool"


def test_a_locked_sqlite_store_queues_the_run_and_flush_sends_it_once(tmp_path: Path, spool: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    Store(url).close()  # created
    folders = write_runs(tmp_path / "runs", 3)
    holder = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    try:
        results, refused = ingest_paths(url, folders, timeout_s=0.3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert refused == [] and [r.status for r in results] == ["queued"] * 3
    assert "database is locked" in results[0].message and str(spool) in results[0].message
    assert len(queued(url)) == 3
    again, _ = ingest_paths(url, folders[:1], timeout_s=0.3)  # store back: the spool goes first, then this run
    assert [r.status for r in again] == ["stored", "stored", "stored", "already stored"]
    assert queued(url) == [] and _counts(url) == (3, _points(folders))
    assert flush(url) == []


def test_a_read_only_store_file_queues_the_run(tmp_path: Path, spool: Path) -> None:
    path = tmp_path / "store.sqlite"
    Store(f"sqlite:///{path}").close()
    path.chmod(0o444)
    url = f"sqlite:///file:{path}?mode=ro&uri=true"  # read-only even for root, whom file modes do not stop
    [run] = write_runs(tmp_path / "runs", 1)
    results, _ = ingest_paths(url, [run], timeout_s=0.3)
    assert [r.status for r in results] == ["queued"]
    assert "readonly database" in results[0].message
    [entry] = queued(url)
    assert (entry / "report.json").read_bytes() == (run / "report.json").read_bytes()  # a copy: never lost


def test_queueing_the_same_run_twice_keeps_one_entry(tmp_path: Path, spool: Path) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none"  # nothing listens on port 9
    [run] = write_runs(tmp_path / "runs", 1)
    for _ in range(2):
        results, _ = ingest_paths(url, [run], timeout_s=1)
        assert [r.status for r in results] == ["queued"]
        assert "127.0.0.1" in results[0].message and "unavailable" in results[0].message
    assert len(queued(url)) == 1
    assert not list(spool.rglob(".incoming-*"))  # no half-written entry left behind


@pytest.mark.slow
def test_postgres_going_away_mid_ingest_loses_and_doubles_nothing(postgres_server, tmp_path: Path, spool) -> None:
    url = new_postgres_database(postgres_server)
    folders = write_runs(tmp_path / "runs", 60)
    Store(url).close()

    def stop_after_first_run() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _counts(url)[0] == 0:
            time.sleep(0.01)
        postgres_server.stop("immediate")  # the server goes away while the ingest goes on

    stopper = threading.Thread(target=stop_after_first_run)
    stopper.start()
    try:
        results, refused = ingest_paths(url, folders, timeout_s=1)
    finally:
        stopper.join()
        postgres_server.start()
    statuses = [r.status for r in results]
    assert refused == [] and len(results) == 60
    assert statuses.count("queued") >= 1 and statuses.count("stored") >= 1
    assert set(statuses) <= {"stored", "queued"}
    stored_now = _counts(url)
    assert stored_now[0] == statuses.count("stored")  # the interrupted run's transaction left nothing
    sent = flush(url)
    assert len(sent) == statuses.count("queued") and queued(url) == []
    assert _counts(url) == (60, _points(folders))
    again, _ = ingest_paths(url, folders)
    assert {r.status for r in again} == {"already stored"} and _counts(url) == (60, _points(folders))
