"""Indexes for the dashboard queries over a million points (PostgreSQL: index-only scans).

- error curves: ``ix_points_curve`` (meter_type, lot, name, error_pct) is replaced by a partial index
  over the points the curves summarise (not tanks, E present) that also carries mpe_pct and
  flow_rate (INCLUDE, PostgreSQL): the GROUP BY reads the index alone, in group order, no sort.
  (EXPLAIN ANALYZE on 1,000,000 points: figures in docs/store.md.)
- drift: ``ix_points_instrument_pk_name`` also carries error_pct and run_id (INCLUDE, PostgreSQL):
  the check meters' points are index-only lookups instead of a scan of all points.

On SQLite INCLUDE does not exist: the indexes keep their key columns (the curve index is partial).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_CURVE_POINTS = sa.text("bench_kind <> 'tank' AND error_pct IS NOT NULL")


def upgrade() -> None:
    op.drop_index("ix_points_curve", table_name="points")
    op.create_index(
        "ix_points_curve_partial",
        "points",
        ["meter_type", "lot", "name", "error_pct"],
        postgresql_include=["mpe_pct", "flow_rate"],
        postgresql_where=_CURVE_POINTS,
        sqlite_where=_CURVE_POINTS,
    )
    op.drop_index("ix_points_instrument_pk_name", table_name="points")
    op.create_index(
        "ix_points_instrument_pk_name", "points", ["instrument_pk", "name"], postgresql_include=["error_pct", "run_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_points_instrument_pk_name", table_name="points")
    op.create_index("ix_points_instrument_pk_name", "points", ["instrument_pk", "name"])
    op.drop_index("ix_points_curve_partial", table_name="points")
    op.create_index("ix_points_curve", "points", ["meter_type", "lot", "name", "error_pct"])
