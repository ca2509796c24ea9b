"""Helmet impacts: the ``impacts`` table (one row per impact of a helmet-impact run), filled from the stored runs.

Helmet-impact runs stored before this revision (their points rows only) get their impacts from the
exact report.json kept in ``runs.report_json``, in the same transaction as the table.

Revision ID: 0003
Revises: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _columns() -> list[sa.Column]:
    """The table's columns as created here (new objects each call: a Column belongs to one table)."""
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("instrument_pk", sa.Integer, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("serial", sa.String(200)),
        sa.Column("model", sa.String(300)),
        sa.Column("size", sa.String(40)),
        sa.Column("lot", sa.String(200)),
        sa.Column("profile", sa.String(40)),
        sa.Column("site", sa.String(40)),
        sa.Column("anvil", sa.String(40)),
        sa.Column("conditioning", sa.String(40)),
        sa.Column("velocity_m_s", sa.Float),
        sa.Column("peak_g", sa.Float),
        sa.Column("hic", sa.Float),
        sa.Column("dwell_150_ms", sa.Float),
        sa.Column("dwell_200_ms", sa.Float),
        sa.Column("peak_limit_g", sa.Float),
        sa.Column("margin_peak_pct", sa.Float),
        sa.Column("margin_hic_pct", sa.Float),
        sa.Column("margin_dwell_150_pct", sa.Float),
        sa.Column("margin_dwell_200_pct", sa.Float),
        sa.Column("void", sa.Boolean, nullable=False),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("certifiable", sa.Boolean),
    ]


def upgrade() -> None:
    op.create_table(
        "impacts",
        *_columns(),
        sa.PrimaryKeyConstraint("id", name="pk_impacts"),
        sa.UniqueConstraint("instrument_pk", "ordinal", name="uq_impacts_instrument_pk_ordinal"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_impacts_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["instrument_pk"], ["instruments.id"], ondelete="CASCADE", name="fk_impacts_instrument_pk_instruments"
        ),
    )
    op.create_index("ix_impacts_run_id", "impacts", ["run_id"])
    op.create_index("ix_impacts_model_lot", "impacts", ["model", "lot"])
    op.create_index("ix_impacts_lot", "impacts", ["lot"])
    _backfill()


def _backfill() -> None:
    """Impacts of the helmet-impact runs already stored, from their exact report.json."""
    from meterbench.store._helmets import HELMET_BENCH_KIND, impact_rows

    connection = op.get_bind()
    runs = sa.table("runs", sa.column("id"), sa.column("bench_kind"), sa.column("report_json"))
    instruments = sa.table(
        "instruments", sa.column("id"), sa.column("run_id"), sa.column("instrument_id"), sa.column("lot")
    )
    table = sa.table("impacts", *(sa.column(c.name) for c in _columns() if c.name != "id"))
    stored = connection.execute(sa.select(runs.c.id, runs.c.report_json).where(runs.c.bench_kind == HELMET_BENCH_KIND))
    for run_id, report_json in stored.all():
        helmets = connection.execute(
            sa.select(instruments.c.instrument_id, instruments.c.id, instruments.c.lot).where(
                instruments.c.run_id == run_id
            )
        ).all()
        pks = {helmet_id: pk for helmet_id, pk, _ in helmets}
        lots = {helmet_id: lot for helmet_id, _, lot in helmets if lot is not None}
        rows = [
            {k: v for k, v in row.items() if k in table.c} | {"run_id": run_id, "instrument_pk": pks[helmet_id]}
            for helmet_id, row in impact_rows(json.loads(report_json), lots)
        ]
        if rows:
            connection.execute(sa.insert(table), rows)


def downgrade() -> None:
    op.drop_table("impacts")
