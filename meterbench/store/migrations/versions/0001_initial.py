"""The first schema: runs, reference standards, instruments, points, certificates.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("report_sha256", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(200), nullable=False),
        sa.Column("bench_kind", sa.String(40), nullable=False),
        sa.Column("bench_id", sa.String(200)),
        sa.Column("technician_id", sa.String(200)),
        sa.Column("test_date", sa.Date),
        sa.Column("month", sa.String(7)),
        sa.Column("start_time_utc", sa.String(40)),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("simulated", sa.Boolean, nullable=False),
        sa.Column("decision_rule", sa.String(40)),
        sa.Column("software", sa.String(100)),
        sa.Column("git_revision", sa.String(200)),
        sa.Column("source_path", sa.Text),
        sa.Column("ingested_at_utc", sa.String(40), nullable=False),
        sa.Column("report_json", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("report_sha256", name="uq_runs_report_sha256"),
    )
    op.create_index("ix_runs_bench_id_test_date", "runs", ["bench_id", "test_date"])
    op.create_index("ix_runs_month", "runs", ["month"])
    op.create_table(
        "reference_standards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("standard_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_reference_standards"),
        sa.UniqueConstraint("standard_id", name="uq_reference_standards_standard_id"),
    )
    op.create_table(
        "run_reference_standards",
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("standard_pk", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "standard_pk", name="pk_run_reference_standards"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_run_reference_standards_run_id_runs"
        ),
        sa.ForeignKeyConstraint(
            ["standard_pk"],
            ["reference_standards.id"],
            name="fk_run_reference_standards_standard_pk_reference_standards",
        ),
    )
    op.create_table(
        "instruments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("instrument_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("meter_type", sa.String(300)),
        sa.Column("serial", sa.String(200)),
        sa.Column("lot", sa.String(200)),
        sa.Column("accuracy_class", sa.String(40)),
        sa.Column("capacity_l", sa.Float),
        sa.Column("capacity_class", sa.String(40)),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_instruments"),
        sa.UniqueConstraint("run_id", "instrument_id", name="uq_instruments_run_id_instrument_id"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_instruments_run_id_runs"),
    )
    op.create_index("ix_instruments_serial", "instruments", ["serial"])
    op.create_index("ix_instruments_meter_type_lot", "instruments", ["meter_type", "lot"])
    op.create_table(
        "points",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("instrument_pk", sa.Integer, nullable=False),
        sa.Column("ordinal", sa.Integer, nullable=False),
        sa.Column("bench_kind", sa.String(40), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("flow_rate", sa.Float),
        sa.Column("reference_volume", sa.Float),
        sa.Column("indicated_volume", sa.Float),
        sa.Column("error_pct", sa.Float),
        sa.Column("mpe_pct", sa.Float),
        sa.Column("uncertainty_pct", sa.Float),
        sa.Column("verdict", sa.String(20), nullable=False),
        sa.Column("water_temperature_c", sa.Float),
        sa.Column("pressure_bar", sa.Float),
        sa.Column("meter_type", sa.String(300)),
        sa.Column("lot", sa.String(200)),
        sa.PrimaryKeyConstraint("id", name="pk_points"),
        sa.UniqueConstraint("instrument_pk", "ordinal", name="uq_points_instrument_pk_ordinal"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_points_run_id_runs"),
        sa.ForeignKeyConstraint(
            ["instrument_pk"], ["instruments.id"], ondelete="CASCADE", name="fk_points_instrument_pk_instruments"
        ),
    )
    op.create_index("ix_points_run_id", "points", ["run_id"])
    op.create_index("ix_points_instrument_pk_name", "points", ["instrument_pk", "name"])
    op.create_index("ix_points_curve", "points", ["meter_type", "lot", "name", "error_pct"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("verification_code", sa.String(20), nullable=False),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("number", sa.String(100)),
        sa.Column("instrument_id", sa.String(100)),
        sa.Column("verdict", sa.String(20)),
        sa.Column("report_sha256", sa.String(64), nullable=False),
        sa.Column("record_json", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_certificates"),
        sa.UniqueConstraint("verification_code", name="uq_certificates_verification_code"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE", name="fk_certificates_run_id_runs"),
    )


def downgrade() -> None:
    for table in ("certificates", "points", "instruments", "run_reference_standards", "reference_standards", "runs"):
        op.drop_table(table)
