"""gate evidence kept per station: the gates' rows of each item, refreshed from newer records

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_S = sqlmodel.sql.sqltypes.AutoString
_T = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    # Empty at first: a station's first gate check builds its rows (review/evidence_cache.py).
    op.create_table(
        "gate_evidence_row",
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("day", _S(length=10), nullable=True),
        sa.Column("human_label", _S(length=64), nullable=True),
        sa.Column("model_label", _S(length=64), nullable=True),
        sa.Column("adjudicated_label", _S(length=64), nullable=True),
        sa.Column("ground_truth", _S(length=64), nullable=True),
        sa.Column("reference_label", _S(length=64), nullable=True),
        sa.Column("evidence", sa.Integer(), nullable=False),
        sa.Column("uniform", sa.Integer(), nullable=False),
        sa.Column("paired", sa.Integer(), nullable=False),
        sa.Column("shown", sa.Boolean(), nullable=True),
        sa.Column("blind", sa.Boolean(), nullable=True),
        sa.Column("audit", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("score_bin", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"]),
        sa.PrimaryKeyConstraint("station_id", "item_id"),
    )
    op.create_table(
        "gate_evidence_mark",
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("basis", _S(length=200), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("prediction_id", sa.Integer(), nullable=False),
        sa.Column("human_decision_id", sa.Integer(), nullable=False),
        sa.Column("disposition_id", sa.Integer(), nullable=False),
        sa.Column("adjudication_id", sa.Integer(), nullable=False),
        sa.Column("built_at", _T(), nullable=False),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"]),
        sa.PrimaryKeyConstraint("station_id"),
    )


def downgrade() -> None:
    op.drop_table("gate_evidence_mark")
    op.drop_table("gate_evidence_row")
