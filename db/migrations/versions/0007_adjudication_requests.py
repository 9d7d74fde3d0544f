"""adjudication requests (truth sample, disagreements, challenges) and why each adjudication was chosen

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 01:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "adjudication_request",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("operator_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"]),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_version.id"]),
        sa.ForeignKeyConstraint(["operator_id"], ["operator.id"]),
        sa.ForeignKeyConstraint(["station_id"], ["station.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("adjudication_request", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_adjudication_request_item_id"), ["item_id"])
        batch_op.create_index(batch_op.f("ix_adjudication_request_station_id"), ["station_id"])
    # Adjudications made before this revision were chosen by disagreement (the review window's
    # list): that is what they are marked as.
    with op.batch_alter_table("adjudication", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "chosen_for",
                sqlmodel.sql.sqltypes.AutoString(length=32),
                nullable=False,
                server_default="disagreement",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("adjudication", schema=None) as batch_op:
        batch_op.drop_column("chosen_for")
    op.drop_table("adjudication_request")
