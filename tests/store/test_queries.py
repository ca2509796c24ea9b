"""The drift and error-curve questions on SQLite (grouped here) and PostgreSQL (grouped by the server):
the same answers, computed independently from the reports."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from tests.conftest import require_module

require_module("sqlalchemy", "store")

from meterbench.sim.store_reports import synthetic_report  # noqa: E402
from meterbench.store import Store, drift, error_curves, ingest_paths  # noqa: E402

CHECK_RUNS = (0, 15, 30, 45, 60, 75)  # the synthetic series' bench-A runs that test CHECK-bench-A


def _check_meter_runs(folder: Path) -> list[dict]:
    """Six bench-A runs with its check meter; run 30 used both reference standards, run 45 started at
    the same time as run 60 (ties go in ingest order: run 45 first)."""
    reports = [synthetic_report(i) for i in CHECK_RUNS]
    reports[2]["reference_standard_ids"] = ["REF-MAG-01", "REF-MAG-02"]
    reports[3]["start_time_utc"], reports[3]["test_date"] = reports[4]["start_time_utc"], reports[4]["test_date"]
    for index, report in zip(CHECK_RUNS, reports, strict=True):
        run = folder / f"run-{index:04d}"
        run.mkdir(parents=True)
        (run / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    return reports


def _check_q3(report: dict) -> float:
    [meter] = [i for i in report["instruments"] if i["serial"] == "CHECK-bench-A"]
    return next(p["error_pct"] for p in meter["points"] if p["name"] == "Q3")


def test_drift_series_order_scopes_and_limits(store_url: str, tmp_path: Path) -> None:
    reports = _check_meter_runs(tmp_path / "runs")
    results, refused = ingest_paths(store_url, sorted((tmp_path / "runs").iterdir()))
    assert refused == [] and [r.status for r in results] == ["stored"] * 6
    with Store(store_url) as store, store.engine.connect() as connection:
        charts = drift(connection, min_runs=3)
    q3 = {(c["scope"], c["id"]): c for c in charts if c["serial"] == "CHECK-bench-A" and c["point"] == "Q3"}
    assert set(q3) == {("bench", "bench-A"), ("reference_standard", "REF-MAG-01"), ("reference_standard", "REF-MAG-02")}
    by_start = sorted(range(6), key=lambda k: (reports[k]["start_time_utc"], k))  # a stable sort: 45 before 60
    assert by_start == [0, 1, 2, 3, 4, 5]
    bench = q3[("bench", "bench-A")]
    expected = [_check_q3(reports[k]) for k in by_start]
    assert bench["values"] == expected and bench["n"] == 6  # run 30 once, though it used two standards
    assert bench["times"] == [reports[k]["start_time_utc"] for k in by_start]
    centre = sum(expected) / 6
    mr_bar = sum(abs(b - a) for a, b in zip(expected, expected[1:], strict=False)) / 5
    assert bench["centre"] == pytest.approx(centre, abs=1e-12)
    assert (bench["ucl"], bench["lcl"]) == pytest.approx((centre + 2.66 * mr_bar, centre - 2.66 * mr_bar), abs=1e-12)
    assert bench["mr_ucl"] == pytest.approx(3.267 * mr_bar, abs=1e-12)
    assert q3[("reference_standard", "REF-MAG-01")]["values"] == [_check_q3(reports[k]) for k in (0, 2, 4)]
    assert q3[("reference_standard", "REF-MAG-02")]["values"] == [_check_q3(reports[k]) for k in (1, 2, 3, 5)]
    assert [(c["scope"], c["id"], c["point"]) for c in charts] == sorted(
        (c["scope"], c["id"], c["point"]) for c in charts
    )
    with Store(store_url) as store, store.engine.connect() as connection:
        assert drift(connection, min_runs=7) == []
        four = drift(connection, min_runs=4)
    assert {(c["scope"], c["id"]) for c in four} == {("bench", "bench-A"), ("reference_standard", "REF-MAG-02")}


def test_error_curves_quartiles_match_the_reports(store_url: str, tmp_path: Path) -> None:
    reports = _check_meter_runs(tmp_path / "runs")
    ingest_paths(store_url, sorted((tmp_path / "runs").iterdir()))
    with Store(store_url) as store, store.engine.connect() as connection:
        curves = error_curves(connection)
        only = error_curves(connection, meter_type=reports[0]["instruments"][0]["type"], lot="LOT-000")
    meters = [i for r in reports for i in r["instruments"] if i["kind"] == "water-meter"]
    keys = {(i["type"], i["lot"], p["name"]) for i in meters for p in i["points"]}
    assert {(c["meter_type"], c["lot"], c["point"]) for c in curves} == keys
    assert {(c["meter_type"], c["lot"]) for c in only} == {(reports[0]["instruments"][0]["type"], "LOT-000")}
    for curve in curves:
        key = (curve["meter_type"], curve["lot"], curve["point"])
        errors = sorted(p["error_pct"] for i in meters for p in i["points"] if (i["type"], i["lot"], p["name"]) == key)
        q1, median, q3 = statistics.quantiles(errors, n=4, method="inclusive") if len(errors) > 1 else errors * 3
        assert curve["n"] == len(errors)
        assert (curve["q1_error_pct"], curve["median_error_pct"], curve["q3_error_pct"]) == pytest.approx(
            (q1, median, q3), abs=1e-12
        )
        assert (curve["min_error_pct"], curve["max_error_pct"]) == (errors[0], errors[-1])
