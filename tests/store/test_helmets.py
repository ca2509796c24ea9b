"""Helmet-impact runs in the store (SQLite and PostgreSQL): impacts rows as in report.json, migration 0003
fills runs stored before it, `db query helmets --by model|lot` equal to figures computed here from the reports."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from tests.conftest import require_module
from tests.store.conftest import write_runs

require_module("sqlalchemy", "store")

from sqlalchemy import func, select  # noqa: E402

from meterbench.cli import main  # noqa: E402
from meterbench.store import Store, ingest_paths  # noqa: E402
from meterbench.store._schema import impacts  # noqa: E402

Z = 1.959963984540054


@pytest.fixture(scope="module")
def helmet_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two helmet-impact run folders: the CLI's seed-0 session (FMVSS 218, models SIM-FF1 and SIM-FF2) and
    a UN R22 session of a third model (a HIC limit, no dwell limit)."""
    from meterbench.sim.helmet import SimDrop, simulate_helmet

    base = tmp_path_factory.mktemp("helmets")
    assert main(["simulate", "helmet", "--out", str(base / "s0"), "--seed", "0"]) == 0
    r22 = [
        SimDrop(h, site, peak, ms, velocity_m_s=7.5, model="SIM-OF3")
        for h, site, peak, ms in (
            ("H1", "front", 240.0, 2.8),
            ("H1", "rear", 262.0, 2.6),
            ("H2", "front", 290.0, 2.5),
            ("H2", "left", 205.0, 3.0),
        )
    ]
    simulate_helmet(base / "s1", seed=1, drops=r22, profile="un-r22-06")
    runs = []
    for k in range(2):
        assert main(["run", str(base / f"s{k}"), "--out", str(base / f"r{k}")]) == 0
        runs.append(base / f"r{k}")
    return runs


def _impacts_of(runs: list[Path]) -> list[dict]:
    """Every impact of the runs' reports, as read here: helmet fields and the impact's details."""
    out = []
    for run in runs:
        report = json.loads((run / "report.json").read_text(encoding="utf-8"))
        for helmet in report["instruments"]:
            for point in helmet["points"]:
                out.append({"helmet": helmet, "point": point, "details": point["details"]})
    return out


def _wilson(k: int, n: int) -> list[float]:
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return [0.0 if k == 0 else centre - half, 1.0 if k == n else centre + half]


def test_helmet_runs_store_one_impacts_row_per_impact_as_reported(
    store_url: str, tmp_path: Path, helmet_runs: list[Path]
) -> None:
    meters = write_runs(tmp_path / "meters", 2)  # water-meter runs: no impacts
    results, refused = ingest_paths(store_url, [*helmet_runs, *meters])
    assert refused == [] and [r.status for r in results] == ["stored"] * 4
    again, _ = ingest_paths(store_url, helmet_runs)
    assert [r.status for r in again] == ["already stored"] * 2
    expected = _impacts_of(helmet_runs)
    with Store(store_url) as store, store.engine.connect() as connection:
        rows = connection.execute(
            select(impacts).order_by(impacts.c.run_id, impacts.c.instrument_pk, impacts.c.ordinal)
        )
        rows = rows.all()
    assert len(rows) == len(expected) == 14 + 4
    for row, impact in zip(rows, expected, strict=True):
        helmet, point, details = impact["helmet"], impact["point"], impact["details"]
        margins = details.get("margins") or {}

        def pct(criterion: str, margins=margins) -> float | None:
            m = margins.get(criterion)
            return None if m is None else m["margin"] / m["limit"] * 100

        assert (row.name, row.serial, row.model, row.size, row.lot, row.profile) == (
            point["name"],
            helmet["serial"],
            helmet["model"],
            helmet["size"],
            helmet["lot"],
            helmet["profile"],
        )
        assert (row.site, row.anvil, row.conditioning, row.velocity_m_s) == (
            details["site"],
            details["anvil"],
            details["conditioning"],
            details["velocity_m_s"],
        )
        assert (row.peak_g, row.hic, row.dwell_150_ms, row.dwell_200_ms) == (
            details["peak_g"],
            details["hic"],
            details["dwell_ms"].get("150"),
            details["dwell_ms"].get("200"),
        )
        got = (row.margin_peak_pct, row.margin_hic_pct, row.margin_dwell_150_pct, row.margin_dwell_200_pct)
        want = (pct("peak_g"), pct("hic"), pct("dwell_150_ms"), pct("dwell_200_ms"))
        assert [g is None for g in got] == [w is None for w in want]
        assert [g for g in got if g is not None] == pytest.approx([w for w in want if w is not None], abs=1e-9)
        assert (row.verdict, row.void, row.certifiable) == (point["verdict"], "void" in details, details["certifiable"])
    r22 = [r for r in rows if r.profile == "un-r22-06"]  # a HIC margin, no dwell
    assert len(r22) == 4 and all(r.margin_hic_pct is not None and r.margin_dwell_150_pct is None for r in r22)


def test_migration_0003_fills_impacts_of_helmet_runs_stored_before_it(store_url: str, helmet_runs: list[Path]) -> None:
    from alembic import command

    from meterbench.store import schema_revision
    from meterbench.store._engine import _MIGRATE_LOCK, alembic_config

    ingest_paths(store_url, helmet_runs[:2])
    columns = [c for c in impacts.c if c.name != "id"]
    with Store(store_url) as store:
        with store.engine.connect() as connection:
            before = connection.execute(select(*columns).order_by(impacts.c.instrument_pk, impacts.c.ordinal)).all()
        with _MIGRATE_LOCK, store.engine.begin() as connection:
            command.downgrade(alembic_config(connection), "0002")
        assert schema_revision(store.engine) == "0002"
    with Store(store_url) as store, store.engine.connect() as connection:  # opening upgrades: 0003 backfills
        assert schema_revision(store.engine) == "0003"
        after = connection.execute(select(*columns).order_by(impacts.c.instrument_pk, impacts.c.ordinal)).all()
    assert len(before) == 18 and after == before


@pytest.mark.parametrize("by", ["model", "lot"])
def test_db_query_helmets_equals_the_figures_of_the_reports(
    store_url: str, helmet_runs: list[Path], by: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(["db", "ingest", *map(str, helmet_runs), "--db", store_url]) == 0
    capsys.readouterr()
    assert main(["db", "query", "helmets", "--by", by, "--json", "--db", store_url]) == 0
    rows = json.loads(capsys.readouterr().out)
    groups: dict[str, list[dict]] = {}
    for impact in _impacts_of(helmet_runs):
        groups.setdefault(impact["helmet"][by], []).append(impact)
    assert [r[by] for r in rows] == sorted(groups)
    assert len(rows) == (3 if by == "model" else 1)
    for row in rows:
        group = groups[row[by]]
        assert row["n"] == len(group)
        for verdict in ("pass", "fail", "inconclusive"):
            k = sum(i["point"]["verdict"] == verdict for i in group)
            assert row[verdict]["count"] == k
            assert row[verdict]["wilson95"] == pytest.approx(_wilson(k, len(group)), abs=1e-12)
        judged = [
            i["details"]
            for i in group
            if i["details"].get("margins") and "void" not in i["details"] and i["details"]["certifiable"]
        ]
        over = sum(any(m["value"] > m["limit"] for m in d["margins"].values()) for d in judged)
        assert row["judged"] == len(judged) and row["failure_probability"]["over_limit"] == over
        assert row["failure_probability"]["estimate"] == pytest.approx(over / len(judged))
        assert row["failure_probability"]["wilson95"] == pytest.approx(_wilson(over, len(judged)), abs=1e-12)
        margins = [
            (d["margins"]["peak_g"]["limit"] - d["peak_g"]) / d["margins"]["peak_g"]["limit"] * 100 for d in judged
        ]
        assert row["min_margin_peak_pct"] == pytest.approx(min(margins), abs=1e-9)
        for feature in ("peak_g", "hic"):
            values = sorted(d[feature] for d in judged)
            q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
            assert row[feature] == pytest.approx(
                {"median": median, "q1": q1, "q3": q3, "min": values[0], "max": values[-1]}, abs=1e-9
            )
        assert row["void"] == sum("void" in i["details"] for i in group)
    if by == "model":  # the figures themselves, as read off the reports: SIM-FF1 2 of 7 judged over 400 g
        ff1 = rows[0]
        assert (ff1["model"], ff1["n"], ff1["judged"], ff1["failure_probability"]["over_limit"]) == (
            "SIM-FF1",
            10,
            7,
            2,
        )
        assert ff1["min_margin_peak_pct"] == pytest.approx(-10.04, abs=0.01)  # H2-left 440.2 g
    with Store(store_url) as store, store.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(impacts)).scalar_one() == 18


def test_db_query_rates_refuses_by_model_in_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("MB_SPOOL_DIR", str(tmp_path / "spool"))
    assert main(["db", "query", "rates", "--by", "model", "--db", str(tmp_path / "s.sqlite")]) == 2
    assert capsys.readouterr().err.strip() == (
        "meterbench db: db query rates: --by model is for helmets (rates: --by type)"
    )
