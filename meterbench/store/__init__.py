"""meterbench.store: the central results store (SQLAlchemy 2 + Alembic; SQLite by default, PostgreSQL by URL).

Runs (report.json), their instruments and test points, certificate records and reference
standards go in by ``ingest`` (idempotent by the report's SHA-256, one transaction per run);
runs that cannot reach the store wait in a local spool (``_spool``) until the next ingest or flush.
``_query`` answers the quality engineer's questions (``_helmets``: helmet impacts by model or lot),
``_dashboard`` draws them as one HTML file, ``_stats`` holds the pure statistics (Wilson
intervals, I-MR control limits). Needs the [store] extra.
"""

from ._dashboard import render_dashboard, write_dashboard
from ._deliver import flush, ingest_or_queue, ingest_paths, storing_progress
from ._engine import (
    DB_URL_ENV,
    StoreUnavailableError,
    create_store_engine,
    default_db_url,
    migrate,
    resolve_db_url,
    safe_url,
    schema_revision,
)
from ._helmets import HELMET_GROUPS, helmets, impact_rows
from ._ingest import CAPACITY_CLASSES_L, IngestResult, Store, capacity_class, find_reports, load_run, parse_run
from ._query import QUESTIONS, RATE_GROUPS, drift, error_curves, history, rates, tanks
from ._schema import metadata
from ._spool import SPOOL_ENV, queued, spool_dir
from ._stats import IMRChart, imr_chart, quantile, wilson_interval
from ._verify import verify_code_in_store

__all__ = [
    "CAPACITY_CLASSES_L",
    "DB_URL_ENV",
    "HELMET_GROUPS",
    "IMRChart",
    "IngestResult",
    "QUESTIONS",
    "RATE_GROUPS",
    "SPOOL_ENV",
    "Store",
    "StoreUnavailableError",
    "capacity_class",
    "create_store_engine",
    "default_db_url",
    "drift",
    "error_curves",
    "find_reports",
    "flush",
    "helmets",
    "history",
    "impact_rows",
    "imr_chart",
    "ingest_or_queue",
    "storing_progress",
    "ingest_paths",
    "load_run",
    "metadata",
    "migrate",
    "parse_run",
    "quantile",
    "queued",
    "rates",
    "render_dashboard",
    "resolve_db_url",
    "safe_url",
    "schema_revision",
    "spool_dir",
    "tanks",
    "verify_code_in_store",
    "wilson_interval",
    "write_dashboard",
]
