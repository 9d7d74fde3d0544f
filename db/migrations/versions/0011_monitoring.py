"""monitoring: embeddings on predictions, drift references, drift checks and alarms

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 07:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.add_column(sa.Column("embedding", sa.JSON(), nullable=True))
    op.create_table(
        "drift_reference",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("level_change_id", sa.Integer(), nullable=True),
        sa.Column("stage_versions", sa.JSON(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("first_item_id", sa.Integer(), nullable=True),
        sa.Column("last_item_id", sa.Integer(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"]),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_version.id"]),
        sa.ForeignKeyConstraint(["level_change_id"], ["level_change.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("drift_reference", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drift_reference_station_id"), ["station_id"])
    op.create_table(
        "monitor_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("reference_id", sa.Integer(), nullable=True),
        sa.Column("check", _S(length=64), nullable=False),
        sa.Column("first_item_id", sa.Integer(), nullable=True),
        sa.Column("last_item_id", sa.Integer(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("warn", sa.Float(), nullable=True),
        sa.Column("fail", sa.Float(), nullable=True),
        sa.Column("verdict", _S(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("evaluated_at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"]),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_version.id"]),
        sa.ForeignKeyConstraint(["reference_id"], ["drift_reference.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("monitor_check", schema=None) as batch_op:
        batch_op.create_index("ix_monitor_check_station_id", ["station_id", "id"])
    op.create_table(
        "alarm",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("check", _S(length=64), nullable=False),
        sa.Column("severity", _S(length=16), nullable=False),
        sa.Column("message", _S(), nullable=False),
        sa.Column("statistic", sa.Float(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("monitor_check_id", sa.Integer(), nullable=True),
        sa.Column("level_change_id", sa.Integer(), nullable=True),
        sa.Column("opened_at", _T(), nullable=False),
        sa.Column("closed_at", _T(), nullable=True),
        sa.Column("closed_reason", _S(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"]),
        sa.ForeignKeyConstraint(["monitor_check_id"], ["monitor_check.id"]),
        sa.ForeignKeyConstraint(["level_change_id"], ["level_change.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("alarm", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alarm_station_id"), ["station_id"])


def downgrade() -> None:
    op.drop_table("alarm")
    op.drop_table("monitor_check")
    op.drop_table("drift_reference")
    with op.batch_alter_table("prediction", schema=None) as batch_op:
        batch_op.drop_column("embedding")
