"""Fixtures of the store tests: the same tests on SQLite and on a real PostgreSQL (Debian's binaries).

PostgreSQL is skipped with the reason where its server binaries are missing, a failure under CI
(which installs Debian's postgresql). One server serves the session; each test gets its own database.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_module

_counter = itertools.count()


def require_postgres():
    """The PostgresServer class when Debian's PostgreSQL server is installed: skipped where not, a CI failure."""
    from meterbench.testing.postgres import PostgresServer, postgres_bin_dir

    if postgres_bin_dir() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing: CI installs Debian's postgresql", pytrace=False)
        pytest.skip("PostgreSQL server not installed (apt-get install -y postgresql)")
    return PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator:
    """One PostgreSQL server on a free loopback port for the test session (run as nobody under root)."""
    require_module("sqlalchemy", "store")
    server = require_postgres()().start()
    try:
        yield server
    finally:
        server.remove()


def new_postgres_database(server) -> str:
    """A fresh database on ``server``; its URL."""
    from sqlalchemy import create_engine, text

    name = f"store_test_{os.getpid()}_{next(_counter)}"
    engine = create_engine(server.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return server.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An empty store's URL: a SQLite file, or a new database on the session's PostgreSQL; own spool folder."""
    require_module("sqlalchemy", "store")
    monkeypatch.setenv("MB_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.delenv("MB_DB_URL", raising=False)
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return new_postgres_database(request.getfixturevalue("postgres_server"))


def write_runs(folder: Path, count: int, start: int = 0, meters: int = 3) -> list[Path]:
    """``count`` run folders of synthetic reports (the simulator's error model) under ``folder``."""
    from meterbench.sim.store_reports import synthetic_report_text

    runs = []
    for index in range(start, start + count):
        run = folder / f"run-{index:04d}"
        run.mkdir(parents=True)
        (run / "report.json").write_text(synthetic_report_text(index, meters=meters), encoding="utf-8")
        runs.append(run)
    return runs


def report_of(run: Path) -> dict:
    return json.loads((run / "report.json").read_text(encoding="utf-8"))
