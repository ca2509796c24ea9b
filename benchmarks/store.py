"""Store benchmark: ingest >= 10,000 test points into SQLite (target <= 10 s) and the dashboard
queries over 1,000,000 points on PostgreSQL (target <= 2 s each).

The reports are synthetic report.json files with the simulated bench's error model
(meterbench.sim.store_reports), not real runs. The SQLite case times ``ingest_paths`` end to end
(reading, checking each report with report_problems, one transaction per run). The PostgreSQL case
bulk-loads copies of a pool of checked synthetic runs with COPY (new session ids, serials, dates and
lots per copy), then times each question. It starts its own PostgreSQL (Debian's binaries) unless
--pg-url is given.

    /tmp/venv/bin/python benchmarks/store.py [--sqlite-points 10000] [--pg-points 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meterbench.sim.store_reports import synthetic_report, synthetic_report_text  # noqa: E402
from meterbench.store import Store, ingest_paths  # noqa: E402
from meterbench.store import _query as query  # noqa: E402


def sqlite_ingest(target_points: int, workdir: Path) -> None:
    folders, points, index = [], 0, 0
    while points < target_points:
        run = workdir / "runs" / f"run-{index:06d}"
        run.mkdir(parents=True)
        text = synthetic_report_text(index)
        (run / "report.json").write_text(text, encoding="utf-8")
        points += text.count('"error_pct"')
        folders.append(run)
        index += 1
    url = f"sqlite:///{workdir / 'store.sqlite'}"
    start = time.perf_counter()
    import meterbench.certificates  # noqa: F401  (start-up cost, paid once per command: shown apart)

    print(f"import of the report checks (certificates, calibration): {time.perf_counter() - start:.2f} s")
    start = time.perf_counter()
    results, refused = ingest_paths(url, [workdir / "runs"])
    elapsed = time.perf_counter() - start
    stored = sum(r.points for r in results if r.status == "stored")
    assert not refused and stored == points, (refused[:3], stored, points)
    print(
        f"sqlite ingest: {len(folders)} runs, {stored} points in {elapsed:.2f} s "
        f"({stored / elapsed:.0f} points/s; target <= 10 s)"
    )
    start = time.perf_counter()
    results, _ = ingest_paths(url, [workdir / "runs"])
    print(f"sqlite second ingest (all 'already stored'): {time.perf_counter() - start:.2f} s")


def _copy(cursor, table: str, columns: list[str], rows) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def pg_bulk_load(url: str, target_points: int, pool_size: int = 400) -> int:
    """Copies of ``pool_size`` synthetic runs until ``target_points`` points; the number of points loaded."""
    pool = [synthetic_report(i) for i in range(pool_size)]
    Store(url).close()  # schema
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    run_id = instrument_id = point_id = 0
    day0 = dt.date(2024, 1, 1)
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        run_rows, instrument_rows, point_rows = [], [], []
        copy_index = 0
        while point_id < target_points:
            for report in pool:
                run_id += 1
                day = day0 + dt.timedelta(days=(run_id * 7) % 1000)
                run_rows.append(
                    (
                        run_id,
                        f"{run_id:064x}",
                        f"{report['session']}-c{copy_index}",
                        report["bench_kind"],
                        report["bench_id"],
                        report["technician_id"],
                        day,
                        day.strftime("%Y-%m"),
                        f"{day.isoformat()}T09:00:00Z",
                        report["verdict"],
                        True,
                        "simple",
                        "bench",
                        "",
                        "2026-01-01T00:00:00Z",
                        "{}",
                    )
                )
                for instrument in report["instruments"]:
                    instrument_id += 1
                    serial = (
                        instrument["serial"]
                        if instrument["serial"].startswith("CHECK")
                        else f"{instrument['serial']}-c{copy_index}"
                    )
                    lot = f"{instrument.get('lot')}-{copy_index % 25}" if instrument.get("lot") else None
                    capacity = instrument.get("nominal_volume_l")
                    from meterbench.store import capacity_class

                    instrument_rows.append(
                        (
                            instrument_id,
                            run_id,
                            instrument["id"],
                            instrument["kind"],
                            instrument["type"],
                            serial,
                            lot,
                            None,
                            capacity,
                            capacity_class(capacity),
                            instrument["verdict"],
                        )
                    )
                    for ordinal, p in enumerate(instrument["points"]):
                        point_id += 1
                        point_rows.append(
                            (
                                point_id,
                                run_id,
                                instrument_id,
                                ordinal,
                                report["bench_kind"],
                                p["name"],
                                p["flow_rate"],
                                p["reference_volume"],
                                p["indicated_volume"],
                                p["error_pct"],
                                p["mpe_pct"],
                                p["uncertainty_pct"],
                                p["verdict"],
                                20.0,
                                instrument["type"],
                                lot,
                            )
                        )
            copy_index += 1
        _copy(
            cursor,
            "runs",
            [
                "id",
                "report_sha256",
                "session_id",
                "bench_kind",
                "bench_id",
                "technician_id",
                "test_date",
                "month",
                "start_time_utc",
                "verdict",
                "simulated",
                "decision_rule",
                "software",
                "source_path",
                "ingested_at_utc",
                "report_json",
            ],
            run_rows,
        )
        _copy(
            cursor,
            "instruments",
            [
                "id",
                "run_id",
                "instrument_id",
                "kind",
                "meter_type",
                "serial",
                "lot",
                "accuracy_class",
                "capacity_l",
                "capacity_class",
                "verdict",
            ],
            instrument_rows,
        )
        _copy(
            cursor,
            "points",
            [
                "id",
                "run_id",
                "instrument_pk",
                "ordinal",
                "bench_kind",
                "name",
                "flow_rate",
                "reference_volume",
                "indicated_volume",
                "error_pct",
                "mpe_pct",
                "uncertainty_pct",
                "verdict",
                "water_temperature_c",
                "meter_type",
                "lot",
            ],
            point_rows,
        )
        standards = {s for r in pool for s in r["reference_standard_ids"]}
        _copy(cursor, "reference_standards", ["id", "standard_id"], enumerate(sorted(standards), 1))
        ids = {s: i for i, s in enumerate(sorted(standards), 1)}
        links = [(rid, ids[pool[(rid - 1) % pool_size]["reference_standard_ids"][0]]) for rid in range(1, run_id + 1)]
        _copy(cursor, "run_reference_standards", ["run_id", "standard_pk"], links)
        for table in ("runs", "instruments", "points", "reference_standards"):
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        connection.commit()
        connection.autocommit = True
        cursor.execute("VACUUM ANALYZE")
    return point_id


def pg_queries(url: str) -> None:
    with Store(url) as store, store.engine.connect() as connection:
        timings = []
        cases = [("error-curves", lambda: query.error_curves(connection))]
        cases += [(f"rates --by {key}", lambda key=key: query.rates(connection, key)) for key in query.RATE_GROUPS]
        cases += [
            ("history --serial CHECK-bench-A", lambda: query.history(connection, "CHECK-bench-A")),
            ("drift", lambda: query.drift(connection)),
            ("tanks", lambda: query.tanks(connection)),
        ]
        for name, run in cases:
            start = time.perf_counter()
            rows = run()
            timings.append(time.perf_counter() - start)
            print(f"  {name}: {timings[-1]:.2f} s ({len(rows)} rows)")
        print(f"slowest query {max(timings):.2f} s (target <= 2 s each)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sqlite-points", type=int, default=10_000)
    parser.add_argument("--pg-points", type=int, default=1_000_000, help="0: skip the PostgreSQL case")
    parser.add_argument("--pg-url", help="an empty PostgreSQL database (default: start one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.sqlite_points:
            sqlite_ingest(args.sqlite_points, Path(folder))
    if args.pg_points:
        server = None
        url = args.pg_url
        if url is None:
            from meterbench.testing.postgres import PostgresServer

            server = PostgresServer(timeout_s=120).start()
            url = server.url
        try:
            start = time.perf_counter()
            loaded = pg_bulk_load(url, args.pg_points)
            print(f"postgresql: {loaded} points bulk-loaded (COPY) in {time.perf_counter() - start:.1f} s")
            pg_queries(url)
        finally:
            if server is not None:
                server.remove()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
