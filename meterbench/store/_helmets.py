"""Helmet impacts in the store: the ``impacts`` rows of a helmet-impact report.json, and ``helmets``.

Each impact's features (peak g, HIC, dwell above 150 / 200 g, velocity) and its margin to each
limit of its profile in % of the limit ((limit - value) / limit · 100, < 0: over the limit) come
from the report's ``details`` as ``meterbench run`` wrote them (checked by ``report_problems``).
``helmets`` groups them by helmet model or lot (docs/store.md says what the failure share is and is not).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from ._query import _rate_row
from ._schema import column_number, column_text, impacts
from ._stats import quantile, wilson_interval

HELMET_BENCH_KIND = "helmet-impact"
HELMET_GROUPS = {"model": impacts.c.model, "lot": impacts.c.lot}
_MARGINS = {  # report's margins criterion -> impacts column
    "peak_g": "margin_peak_pct",
    "hic": "margin_hic_pct",
    "dwell_150_ms": "margin_dwell_150_pct",
    "dwell_200_ms": "margin_dwell_200_pct",
}


def _margin_pct(margin: Any) -> float | None:
    """(limit - value) / limit in % of one report margin {value, limit, margin}; None when absent."""
    if not isinstance(margin, Mapping):
        return None
    limit, value = column_number(margin.get("limit")), column_number(margin.get("value"))
    if limit is None or value is None or limit == 0:
        return None
    return (limit - value) / limit * 100.0


def impact_rows(report: Mapping[str, Any], lots: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """(helmet id, row without run_id / instrument_pk) of every impact of a helmet-impact report."""
    if report.get("bench_kind") != HELMET_BENCH_KIND:
        return []
    rows = []
    for helmet in report.get("instruments") or []:
        helmet_id = str(helmet.get("id"))
        for ordinal, point in enumerate(helmet.get("points") or []):
            details = point.get("details") or {}
            dwell = details.get("dwell_ms") or {}
            margins = details.get("margins") or {}
            row = {
                "ordinal": ordinal,
                "name": str(point.get("name", ordinal)),
                "serial": column_text(helmet.get("serial")),
                "model": column_text(helmet.get("model")),
                "size": column_text(helmet.get("size")),
                "lot": lots.get(helmet_id),
                "profile": column_text(helmet.get("profile", report.get("profile"))),
                "site": column_text(details.get("site")),
                "anvil": column_text(details.get("anvil")),
                "conditioning": column_text(details.get("conditioning")),
                "velocity_m_s": column_number(details.get("velocity_m_s")),
                "peak_g": column_number(details.get("peak_g")),
                "hic": column_number(details.get("hic")),
                "dwell_150_ms": column_number(dwell.get("150")),
                "dwell_200_ms": column_number(dwell.get("200")),
                "peak_limit_g": column_number((margins.get("peak_g") or {}).get("limit")),
                "void": bool(details.get("void")),
                "verdict": str(point.get("verdict")),
                "certifiable": details["certifiable"] if isinstance(details.get("certifiable"), bool) else None,
            }
            row.update({column: _margin_pct(margins.get(criterion)) for criterion, column in _MARGINS.items()})
            rows.append((helmet_id, row))
    return rows


def insert_impacts(
    connection, run_id: int, report: Mapping[str, Any], lots: Mapping[str, str], helmet_pks: Mapping[str, int]
) -> int:
    """Insert a helmet-impact run's impacts (inside the caller's transaction); how many."""
    from sqlalchemy import insert

    rows = [
        dict(row, run_id=run_id, instrument_pk=helmet_pks[helmet_id]) for helmet_id, row in impact_rows(report, lots)
    ]
    if rows:
        connection.execute(insert(impacts), rows)
    return len(rows)


def _judged(void: bool, certifiable: bool | None, margins: list[float | None]) -> bool:
    """An impact judged against its limits: margins computed (readable, unclipped, all channels, velocity
    in the window), not void, and its day's rig check passed."""
    return margins[0] is not None and not void and certifiable is not False


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    values = sorted(values)
    return {
        "median": quantile(values, 0.5),
        "q1": quantile(values, 0.25),
        "q3": quantile(values, 0.75),
        "min": values[0],
        "max": values[-1],
    }


def helmets(connection, by: str = "model") -> list[dict[str, Any]]:
    """Per helmet model or lot: impact verdict counts with Wilson 95 % intervals, median / quartiles /
    range of peak (g) and HIC over the judged impacts, the smallest margin to the peak limit (%) and
    the share of judged impacts over a limit (any of peak, HIC, dwell) with its Wilson 95 % interval."""
    if by not in HELMET_GROUPS:
        raise ValueError(f"by: expected one of {', '.join(HELMET_GROUPS)}, got {by!r}")
    query = select(
        HELMET_GROUPS[by],
        impacts.c.verdict,
        impacts.c.void,
        impacts.c.certifiable,
        impacts.c.peak_g,
        impacts.c.hic,
        *(impacts.c[column] for column in _MARGINS.values()),
    )
    groups: dict[Any, list] = defaultdict(list)
    for key, *rest in connection.execute(query):
        groups[key].append(rest)
    out = []
    for key, rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
        counts: dict[str, int] = defaultdict(int)
        judged = []
        for verdict, void, certifiable, peak, hic, *margins in rows:
            counts[verdict] += 1
            if _judged(void, certifiable, margins):
                judged.append((peak, hic, margins))
        row = _rate_row(by, key, counts)
        over = sum(any(m is not None and m < 0 for m in margins) for _, _, margins in judged)
        row.update(
            {
                "void": sum(bool(r[1]) for r in rows),
                "judged": len(judged),
                "peak_g": _spread([p for p, _, _ in judged if p is not None]),
                "hic": _spread([h for _, h, _ in judged if h is not None]),
                "min_margin_peak_pct": min((m[0] for _, _, m in judged), default=None),
                "failure_probability": {
                    "over_limit": over,
                    "of": len(judged),
                    "estimate": over / len(judged) if judged else None,
                    "wilson95": list(wilson_interval(over, len(judged))),
                },
            }
        )
        out.append(row)
    return out
