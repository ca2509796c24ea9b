"""db ingest on SQLite and PostgreSQL: rows as in the reports, idempotent, refusals, migrations = schema."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tests.conftest import require_module
from tests.store.conftest import report_of, write_runs

require_module("sqlalchemy", "store")

from sqlalchemy import func, select  # noqa: E402

from meterbench.store import Store, error_curves, history, ingest_paths, rates, tanks  # noqa: E402
from meterbench.store._schema import instruments, points, runs  # noqa: E402


def _count(url: str, table) -> int:
    with Store(url) as store, store.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(table)).scalar_one()


def test_ingest_stores_every_point_once_and_a_second_ingest_stores_nothing(store_url: str, tmp_path: Path) -> None:
    folders = write_runs(tmp_path / "batch", 14)
    expected_points = sum(len(i["points"]) for f in folders for i in report_of(f)["instruments"])
    results, refused = ingest_paths(store_url, [tmp_path / "batch"])  # a batch folder: searched
    assert refused == []
    assert [r.status for r in results] == ["stored"] * 14
    assert sum(r.points for r in results) == expected_points == _count(store_url, points)
    again, _ = ingest_paths(store_url, [folders[0], folders[1] / "report.json", tmp_path / "batch"])
    assert {r.status for r in again} == {"already stored"} and len(again) == 14  # the same run named twice: once
    assert _count(store_url, runs) == 14 and _count(store_url, points) == expected_points


def test_stored_rows_carry_the_report_and_its_sha256(store_url: str, tmp_path: Path) -> None:
    [run] = write_runs(tmp_path, 1, start=3)
    raw = (run / "report.json").read_bytes()
    ingest_paths(store_url, [run])
    report = json.loads(raw)
    with Store(store_url) as store, store.engine.connect() as connection:
        row = connection.execute(select(runs)).one()
        first = connection.execute(select(points).order_by(points.c.id)).first()
        meters = connection.execute(select(instruments).order_by(instruments.c.id)).all()
    import hashlib

    assert row.report_sha256 == hashlib.sha256(raw).hexdigest()
    assert row.report_json.encode() == raw
    assert (row.bench_id, row.technician_id, row.month) == (report["bench_id"], report["technician_id"], "2026-01")
    point = report["instruments"][0]["points"][0]
    assert (first.name, first.error_pct, first.mpe_pct, first.uncertainty_pct, first.verdict) == (
        point["name"],
        point["error_pct"],
        point["mpe_pct"],
        point["uncertainty_pct"],
        point["verdict"],
    )
    assert first.bench_kind == "water-meter" and first.water_temperature_c == 20.0
    assert [m.serial for m in meters] == [i["serial"] for i in report["instruments"]]
    assert meters[0].lot == "LOT-000"


def test_queries_agree_with_the_reports(store_url: str, tmp_path: Path) -> None:
    folders = write_runs(tmp_path, 21)
    ingest_paths(store_url, folders)
    reports = [report_of(f) for f in folders]
    meters = [(r, i) for r in reports for i in r["instruments"] if i["kind"] == "water-meter"]
    with Store(store_url) as store, store.engine.connect() as connection:
        curves = error_curves(connection)
        by_bench = rates(connection, "bench")
        tank_rows = tanks(connection)
        serial = meters[0][1]["serial"]
        story = history(connection, serial)
    key = (meters[0][1]["type"], meters[0][1]["lot"], "Q1")
    errors = sorted(
        p["error_pct"] for _, i in meters if (i["type"], i["lot"]) == key[:2] for p in i["points"] if p["name"] == "Q1"
    )
    [curve] = [c for c in curves if (c["meter_type"], c["lot"], c["point"]) == key]
    assert curve["n"] == len(errors)
    assert curve["median_error_pct"] == pytest.approx(statistics.median(errors), abs=1e-9)
    assert curve["min_error_pct"] == errors[0] and curve["max_error_pct"] == errors[-1]
    bench_a = next(r for r in by_bench if r["bench"] == "bench-A")
    verdicts = [i["verdict"] for r in reports if r["bench_id"] == "bench-A" for i in r["instruments"]]
    assert bench_a["n"] == len(verdicts)
    assert bench_a["fail"]["count"] == verdicts.count("fail")
    low, high = bench_a["pass"]["wilson95"]
    assert low <= bench_a["pass"]["rate"] <= high
    tank_count = sum(1 for r in reports for i in r["instruments"] if i["kind"] == "tank")
    assert sum(row["n"] for row in tank_rows) == tank_count == 3  # reports 6, 13, 20
    assert [s["instrument"] for s in story] == ["M1"] and story[0]["points"][0]["name"] == "Q3"


def test_corrupt_foreign_and_edited_reports_are_refused_with_the_file_named(store_url: str, tmp_path: Path) -> None:
    good, corrupt, foreign, edited = write_runs(tmp_path, 4)
    (corrupt / "report.json").write_text('{"format": "meterbench-report", "instruments": [', encoding="utf-8")
    (foreign / "report.json").write_text('{"name": "someone else\'s file"}', encoding="utf-8")
    report = report_of(edited)
    point = report["instruments"][0]["points"][0]
    point["error_pct"] = point["mpe_pct"] * 3  # a pass that no longer follows from its numbers
    (edited / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    results, refused = ingest_paths(store_url, [good, corrupt, foreign, edited])
    assert [r.status for r in results] == ["stored"]
    assert len(refused) == 3 and all("\n" not in line for line in refused)
    assert refused[0].startswith(f"{corrupt / 'report.json'}: not valid JSON")
    assert refused[1] == f"{foreign / 'report.json'}: format: expected 'meterbench-report' (a meterbench report.json)"
    assert refused[2].startswith(f"{edited / 'report.json'}: instruments[0].points[0]")
    assert _count(store_url, runs) == 1


def test_migrations_create_exactly_the_declared_schema(store_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from meterbench.store import metadata, schema_revision

    with Store(store_url) as store:
        assert schema_revision(store.engine) == "0003"
        with store.engine.connect() as connection:
            diffs = compare_metadata(MigrationContext.configure(connection), metadata)
    assert diffs == []


def test_sqlite_store_is_wal_with_foreign_keys(tmp_path: Path) -> None:
    with Store(f"sqlite:///{tmp_path / 's.sqlite'}") as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_two_benches_storing_the_same_runs_at_once_store_each_once(store_url: str, tmp_path: Path) -> None:
    import threading

    folders = write_runs(tmp_path / "runs", 8)
    Store(store_url).close()  # the schema exists before the race
    outcomes: list[list[str]] = []
    start = threading.Barrier(2)

    def bench() -> None:
        start.wait()
        results, refused = ingest_paths(store_url, folders)
        assert refused == []
        outcomes.append([r.status for r in results])

    threads = [threading.Thread(target=bench) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(outcomes) == 2
    for k in range(8):  # each run: stored by one bench, "already stored" for the other
        assert sorted(o[k] for o in outcomes) == ["already stored", "stored"]
    expected_points = sum(len(i["points"]) for f in folders for i in report_of(f)["instruments"])
    assert _count(store_url, runs) == 8 and _count(store_url, points) == expected_points
