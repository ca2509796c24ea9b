"""The quality engineer's questions over the store; each returns JSON-ready rows (lists of dicts).

- ``error_curves``: per meter type, lot and test point: n, median error, quartiles, min/max, MPE.
- ``rates``: pass / fail / inconclusive of instruments per type, lot, bench, technician or month,
  each share with its Wilson 95 % interval.
- ``history``: every run of one serial, with its points.
- ``drift``: I-MR charts of repeated check meters per bench and per reference standard.
- ``tanks``: tanks per capacity class: verdict counts with Wilson intervals, median error.
Medians and quartiles are computed by PostgreSQL (percentile_cont) or, on SQLite, here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from ._schema import CURVE_POINTS, instruments, points, reference_standards, run_reference_standards, runs
from ._stats import imr_chart, quantile, wilson_interval

QUESTIONS = ("error-curves", "rates", "history", "drift", "tanks", "helmets")
RATE_GROUPS = {
    "type": instruments.c.meter_type,
    "lot": instruments.c.lot,
    "bench": runs.c.bench_id,
    "technician": runs.c.technician_id,
    "month": runs.c.month,
}
VERDICTS = ("pass", "fail", "inconclusive")


def _is_postgres(connection) -> bool:
    return connection.dialect.name == "postgresql"


def error_curves(connection, meter_type: str | None = None, lot: str | None = None) -> list[dict[str, Any]]:
    """Per (meter type, lot, point name): n, median, q1, q3, min, max of error_pct (%) and the MPE (%)."""
    keys = (points.c.meter_type, points.c.lot, points.c.name)  # copies of the instrument's: no join, no sort
    where = [CURVE_POINTS]  # the partial index's predicate as written there (bound values would hide it)
    if meter_type is not None:
        where.append(points.c.meter_type == meter_type)
    if lot is not None:
        where.append(points.c.lot == lot)
    joined = points
    rows: list[dict[str, Any]] = []
    if _is_postgres(connection):
        from sqlalchemy import literal_column, text
        from sqlalchemy.dialects.postgresql import ARRAY
        from sqlalchemy.types import Float as FloatType

        connection.execute(text("SET LOCAL work_mem = '64MB'"))  # the quantiles' sort in memory
        connection.execute(text("SET LOCAL jit = off"))  # compiling costs more than it saves here
        e = points.c.error_pct
        quartiles = func.percentile_cont(literal_column("ARRAY[0.25, 0.5, 0.75]")).within_group(e)
        query = (
            select(
                *keys,
                func.count().label("n"),
                quartiles.cast(ARRAY(FloatType)).label("quartiles"),
                func.min(e),
                func.max(e),
                func.max(points.c.mpe_pct),
                func.avg(points.c.flow_rate),
            )
            .select_from(joined)
            .where(and_(*where))
            .group_by(*keys)
        )
        for t, lt, name, n, (q1, median, q3), lo, hi, mpe, flow in connection.execute(query):
            rows.append(_curve_row(t, lt, name, n, median, q1, q3, lo, hi, mpe, flow))
    else:
        groups: dict[tuple, list[float]] = defaultdict(list)
        extra: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
        query = select(*keys, points.c.error_pct, points.c.mpe_pct, points.c.flow_rate).select_from(joined)
        for t, lt, name, e, mpe, flow in connection.execute(query.where(and_(*where))):
            groups[(t, lt, name)].append(e)
            stats = extra[(t, lt, name)]
            stats[0] = max(stats[0], mpe or 0.0)
            stats[1] += flow or 0.0
            stats[2] += 1
        for (t, lt, name), values in groups.items():
            values.sort()
            mpe, flow_sum, count = extra[(t, lt, name)]
            rows.append(
                _curve_row(
                    t,
                    lt,
                    name,
                    len(values),
                    quantile(values, 0.5),
                    quantile(values, 0.25),
                    quantile(values, 0.75),
                    values[0],
                    values[-1],
                    mpe,
                    flow_sum / count,
                )
            )
    return sorted(rows, key=lambda r: (str(r["meter_type"]), str(r["lot"]), -(r["mean_flow_rate"] or 0), r["point"]))


def _curve_row(t, lt, name, n, median, q1, q3, lo, hi, mpe, flow) -> dict[str, Any]:
    return {
        "meter_type": t,
        "lot": lt,
        "point": name,
        "n": int(n),
        "median_error_pct": float(median),
        "q1_error_pct": float(q1),
        "q3_error_pct": float(q3),
        "min_error_pct": float(lo),
        "max_error_pct": float(hi),
        "mpe_pct": float(mpe) if mpe is not None else None,
        "mean_flow_rate": float(flow) if flow is not None else None,
    }


def _rate_row(key: str, value: Any, counts: dict[str, int]) -> dict[str, Any]:
    n = sum(counts.values())
    row: dict[str, Any] = {key: value, "n": n}
    for verdict in VERDICTS:
        k = counts.get(verdict, 0)
        low, high = wilson_interval(k, n)
        row[verdict] = {"count": k, "rate": k / n if n else None, "wilson95": [low, high]}
    return row


def rates(connection, by: str = "type", kind: str | None = None) -> list[dict[str, Any]]:
    """Instrument verdict rates per ``by`` (type, lot, bench, technician, month) with Wilson 95 % intervals."""
    if by not in RATE_GROUPS:
        raise ValueError(f"by: expected one of {', '.join(RATE_GROUPS)}, got {by!r}")
    column = RATE_GROUPS[by]
    query = (
        select(column, instruments.c.verdict, func.count())
        .select_from(instruments.join(runs, instruments.c.run_id == runs.c.id))
        .group_by(column, instruments.c.verdict)
    )
    if kind is not None:
        query = query.where(instruments.c.kind == kind)
    counts: dict[Any, dict[str, int]] = defaultdict(dict)
    for value, verdict, count in connection.execute(query):
        counts[value][verdict] = int(count)
    return [_rate_row(by, value, c) for value, c in sorted(counts.items(), key=lambda kv: str(kv[0]))]


def history(connection, serial: str) -> list[dict[str, Any]]:
    """Every run of the instrument with this serial, oldest first, with its points."""
    query = (
        select(
            runs.c.id,
            runs.c.session_id,
            runs.c.test_date,
            runs.c.start_time_utc,
            runs.c.bench_id,
            runs.c.technician_id,
            instruments.c.id,
            instruments.c.instrument_id,
            instruments.c.meter_type,
            instruments.c.lot,
            instruments.c.verdict,
        )
        .select_from(instruments.join(runs, instruments.c.run_id == runs.c.id))
        .where(instruments.c.serial == serial)
        .order_by(runs.c.start_time_utc, runs.c.id)
    )
    rows = connection.execute(query).all()
    point_rows: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if rows:
        found = connection.execute(
            select(
                points.c.instrument_pk,
                points.c.name,
                points.c.error_pct,
                points.c.uncertainty_pct,
                points.c.mpe_pct,
                points.c.verdict,
            )
            .select_from(points.join(instruments, points.c.instrument_pk == instruments.c.id))
            .where(instruments.c.serial == serial)
            .order_by(points.c.instrument_pk, points.c.ordinal)
        )
        for pk, n, e, u, m, v in found:
            point_rows[pk].append({"name": n, "error_pct": e, "uncertainty_pct": u, "mpe_pct": m, "verdict": v})
    return [
        {
            "session": session,
            "test_date": day.isoformat() if day else None,
            "start_time_utc": start,
            "bench_id": bench,
            "technician_id": technician,
            "instrument": iid,
            "meter_type": mtype,
            "lot": lot,
            "verdict": verdict,
            "points": point_rows[pk],
        }
        for _, session, day, start, bench, technician, pk, iid, mtype, lot, verdict in rows
    ]


def drift(connection, min_runs: int = 5) -> list[dict[str, Any]]:
    """I-MR charts of check meters: series of one serial's error at one point, tested >= ``min_runs`` times,
    per bench and per reference standard, in test order (start time, then run)."""
    serials = (
        connection.execute(
            select(instruments.c.serial)
            .where(instruments.c.serial.is_not(None))
            .group_by(instruments.c.serial)
            .having(func.count() >= min_runs)
        )
        .scalars()
        .all()
    )
    if not serials:
        return []
    if _is_postgres(connection):
        series = _drift_series_sql(connection, serials, min_runs)
    else:
        series = _drift_series_python(connection, serials, min_runs)
    charts = []
    for (scope, who, serial, name), times, values in sorted(series, key=lambda s: tuple(map(str, s[0]))):
        chart = imr_chart(values)
        charts.append(
            {
                "scope": scope,
                "id": who,
                "serial": serial,
                "point": name,
                "n": len(values),
                "times": list(times),
                "values": list(chart.values),
                "centre": chart.centre,
                "mr_bar": chart.mr_bar,
                "ucl": chart.ucl,
                "lcl": chart.lcl,
                "mr_ucl": chart.mr_ucl,
                "out_of_control": list(chart.out_of_control),
            }
        )
    return charts


def _check_points(serials: list[str]):
    """The check meters' points with their run: point id, run id, bench, start time ('' if none), serial, name, E."""
    return (
        select(
            points.c.id.label("point_id"),
            points.c.run_id,
            runs.c.bench_id,
            func.coalesce(runs.c.start_time_utc, "").label("start"),
            instruments.c.serial,
            points.c.name,
            points.c.error_pct,
        )
        .select_from(
            points.join(instruments, points.c.instrument_pk == instruments.c.id).join(
                runs, points.c.run_id == runs.c.id
            )
        )
        .where(points.c.error_pct.is_not(None), instruments.c.serial.in_(serials))
    )


def _drift_series_sql(connection, serials: list[str], min_runs: int) -> list[tuple]:
    """PostgreSQL: each series grouped and ordered by the server (array_agg ... ORDER BY start, run, E):
    one row per chart instead of one per point. Start times compare as code points (COLLATE "C"),
    as Python compares them."""
    from sqlalchemy import literal, text, union_all

    connection.execute(text("SET LOCAL jit = off"))
    # inlined in both scopes: each then reads the check meters' points from the index (nested loop);
    # materialised, the planner scanned all points for it (1.43 s against 1.03 s, best of 5, load ~9)
    base = _check_points(serials).cte("check_points").prefix_with("NOT MATERIALIZED")
    order = (base.c.start.collate("C"), base.c.run_id, base.c.error_pct)

    def grouped(scope: str, who, joined):
        return (
            select(
                literal(scope).label("scope"),
                who.label("who"),
                base.c.serial,
                base.c.name,
                func.array_agg(aggregate_order_by(base.c.start, *order)).label("times"),
                func.array_agg(aggregate_order_by(base.c.error_pct, *order)).label("values"),
            )
            .select_from(joined)
            .group_by(who, base.c.serial, base.c.name)
            .having(func.count() >= min_runs)
        )

    by_standard = base.join(run_reference_standards, run_reference_standards.c.run_id == base.c.run_id).join(
        reference_standards, reference_standards.c.id == run_reference_standards.c.standard_pk
    )
    query = union_all(
        grouped("bench", base.c.bench_id, base),
        grouped("reference_standard", reference_standards.c.standard_id, by_standard),
    )
    return [
        ((scope, who, serial, name), times, values)
        for scope, who, serial, name, times, values in connection.execute(query)
    ]


def _drift_series_python(connection, serials: list[str], min_runs: int) -> list[tuple]:
    """SQLite (no ordered aggregates here): the points of both scopes in one pass, grouped and ordered here."""
    base = _check_points(serials).subquery()
    joined = base.outerjoin(run_reference_standards, run_reference_standards.c.run_id == base.c.run_id).outerjoin(
        reference_standards, reference_standards.c.id == run_reference_standards.c.standard_pk
    )
    query = select(*base.c, reference_standards.c.standard_id).select_from(joined)
    scoped: dict[tuple, dict[int, tuple]] = defaultdict(dict)  # a point used with k standards comes k times
    for point_id, run_id, bench, start, serial, name, error, standard in connection.execute(query):
        scoped[("bench", bench, serial, name)][point_id] = (start, run_id, error)
        if standard is not None:
            scoped[("reference_standard", standard, serial, name)][point_id] = (start, run_id, error)
    series = []
    for key, by_point in scoped.items():
        if len(by_point) >= min_runs:
            items = sorted(by_point.values())
            series.append((key, [start for start, _, _ in items], [error for _, _, error in items]))
    return series


def tanks(connection) -> list[dict[str, Any]]:
    """Tanks per capacity class: verdict counts with Wilson 95 % intervals and the median error (%)."""
    counts: dict[Any, dict[str, int]] = defaultdict(dict)
    query = (
        select(instruments.c.capacity_class, instruments.c.verdict, func.count())
        .where(instruments.c.kind == "tank")
        .group_by(instruments.c.capacity_class, instruments.c.verdict)
    )
    for klass, verdict, count in connection.execute(query):
        counts[klass][verdict] = int(count)
    errors: dict[Any, list[float]] = defaultdict(list)
    query = (
        select(instruments.c.capacity_class, points.c.error_pct)
        .select_from(points.join(instruments, points.c.instrument_pk == instruments.c.id))
        .where(instruments.c.kind == "tank", points.c.error_pct.is_not(None))
    )
    for klass, error in connection.execute(query):
        errors[klass].append(error)
    out = []
    for klass, c in sorted(counts.items(), key=lambda kv: str(kv[0])):
        row = _rate_row("capacity_class", klass, c)
        values = sorted(errors.get(klass, []))
        row["median_error_pct"] = quantile(values, 0.5) if values else None
        out.append(row)
    return out
