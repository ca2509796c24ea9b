"""The store's tables (SQLAlchemy Core): runs, their instruments, test points, certificates, reference standards.

One row per run (a report.json, keyed by the SHA-256 of its bytes), per instrument of a run
(a meter or tank with its type, serial and lot), per test point (error, uncertainty, MPE, verdict
and the conditions; ``bench_kind`` says which bench measured it, so another kind of measurement,
helmet impacts, gets its own table beside ``points`` without changing these: ``impacts``), per certificate
(``verification_code`` unique) and per reference standard (linked to the runs that used it).
The Alembic migrations under ``migrations/`` create exactly this schema (a test compares them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("report_sha256", String(64), nullable=False, unique=True),
    Column("session_id", String(200), nullable=False),
    Column("bench_kind", String(40), nullable=False),
    Column("bench_id", String(200)),
    Column("technician_id", String(200)),
    Column("test_date", Date),
    Column("month", String(7)),  # YYYY-MM of test_date: the rates' month grouping
    Column("start_time_utc", String(40)),
    Column("verdict", String(20), nullable=False),
    Column("simulated", Boolean, nullable=False),
    Column("decision_rule", String(40)),
    Column("software", String(100)),
    Column("git_revision", String(200)),
    Column("source_path", Text),  # where it was ingested from (for people; not a key)
    Column("ingested_at_utc", String(40), nullable=False),
    Column("report_json", Text, nullable=False),  # the exact report.json text (its SHA-256 is report_sha256)
)

reference_standards = Table(
    "reference_standards",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("standard_id", String(200), nullable=False, unique=True),
)

run_reference_standards = Table(
    "run_reference_standards",
    metadata,
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("standard_pk", ForeignKey("reference_standards.id"), primary_key=True),
)

instruments = Table(
    "instruments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("instrument_id", String(100), nullable=False),  # the id within the session ("M1", "T1")
    Column("kind", String(40), nullable=False),
    Column("meter_type", String(300)),
    Column("serial", String(200)),
    Column("lot", String(200)),
    Column("accuracy_class", String(40)),
    Column("capacity_l", Float),  # tanks: nominal volume, L
    Column("capacity_class", String(40)),
    Column("verdict", String(20), nullable=False),
    UniqueConstraint("run_id", "instrument_id"),
    Index(None, "serial"),
    Index(None, "meter_type", "lot"),
)

points = Table(
    "points",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("instrument_pk", ForeignKey("instruments.id", ondelete="CASCADE"), nullable=False),
    Column("ordinal", Integer, nullable=False),  # position in the instrument's list of points
    Column("bench_kind", String(40), nullable=False),
    Column("name", String(100), nullable=False),
    Column("flow_rate", Float),  # m3/h (tanks: L/s as recorded)
    Column("reference_volume", Float),  # L
    Column("indicated_volume", Float),  # L
    Column("error_pct", Float),  # %
    Column("mpe_pct", Float),  # %
    Column("uncertainty_pct", Float),  # expanded U, %
    Column("verdict", String(20), nullable=False),
    Column("water_temperature_c", Float),
    Column("pressure_bar", Float),
    Column("meter_type", String(300)),  # the instrument's, copied: the error curves read points alone
    Column("lot", String(200)),  # the instrument's, copied (same reason)
    UniqueConstraint("instrument_pk", "ordinal"),
    Index(None, "run_id"),
    # drift: a check meter's points by instrument, read from the index alone on PostgreSQL (revision 0002)
    Index(None, "instrument_pk", "name", postgresql_include=["error_pct", "run_id"]),
)

CURVE_POINTS = text("bench_kind <> 'tank' AND error_pct IS NOT NULL")
"""The points the error curves summarise (the partial index's predicate; the query states it word for word)."""

# error curves: points in (type, lot, point, error) order, the other columns they need alongside on
# PostgreSQL: one index-only scan, no sort, no table read (revision 0002; replaces ix_points_curve)
Index(
    "ix_points_curve_partial",
    points.c.meter_type,
    points.c.lot,
    points.c.name,
    points.c.error_pct,
    postgresql_include=["mpe_pct", "flow_rate"],
    postgresql_where=CURVE_POINTS,
    sqlite_where=CURVE_POINTS,
)

certificates = Table(
    "certificates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("verification_code", String(20), nullable=False, unique=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("number", String(100)),
    Column("instrument_id", String(100)),
    Column("verdict", String(20)),
    Column("report_sha256", String(64), nullable=False),
    Column("record_json", Text, nullable=False),  # the exact record file text (re-verified on lookup)
)

Index(None, runs.c.bench_id, runs.c.test_date)
Index(None, runs.c.month)

impacts = Table(
    "impacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("instrument_pk", ForeignKey("instruments.id", ondelete="CASCADE"), nullable=False),
    Column("ordinal", Integer, nullable=False),  # position in the helmet's list of impacts
    Column("name", String(100), nullable=False),
    Column("serial", String(200)),  # the helmet's, copied (as points copy type and lot): no join to group
    Column("model", String(300)),
    Column("size", String(40)),
    Column("lot", String(200)),
    Column("profile", String(40)),  # the standard profile the limits come from (fmvss-218, un-r22-06, ...)
    Column("site", String(40)),
    Column("anvil", String(40)),
    Column("conditioning", String(40)),
    Column("velocity_m_s", Float),
    Column("peak_g", Float),
    Column("hic", Float),
    Column("dwell_150_ms", Float),  # cumulative time above 150 g, ms
    Column("dwell_200_ms", Float),
    Column("peak_limit_g", Float),
    Column("margin_peak_pct", Float),  # (limit - value) / limit, %: < 0 over the limit; NULL not judged
    Column("margin_hic_pct", Float),
    Column("margin_dwell_150_pct", Float),
    Column("margin_dwell_200_pct", Float),
    Column("void", Boolean, nullable=False),  # conditioning timer exceeded: no verdict whatever the trace says
    Column("verdict", String(20), nullable=False),
    Column("certifiable", Boolean),  # the day's rig check passed
    UniqueConstraint("instrument_pk", "ordinal"),
    Index(None, "run_id"),
    Index(None, "model", "lot"),
    Index(None, "lot"),
)
"""Helmet impacts (revision 0003): one row per impact of a helmet-impact run, beside its ``points`` row."""


def column_text(value: Any) -> str | None:
    """A report value as a text column's value (None stays NULL)."""
    return None if value is None else str(value)


def column_number(value: Any) -> float | None:
    """A report value as a number column's value: a JSON number, else NULL (a bool is no number)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
