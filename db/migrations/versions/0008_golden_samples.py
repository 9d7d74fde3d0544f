"""golden samples registered from real labelled images

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 02:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "golden_sample",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("set_name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("image_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("image_path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source_path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("added_by", sa.Integer(), nullable=True),
        sa.Column("added_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["added_by"], ["operator.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("set_name", "image_sha256", name="uq_golden_set_image"),
    )
    with op.batch_alter_table("golden_sample", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_golden_sample_set_name"), ["set_name"])


def downgrade() -> None:
    op.drop_table("golden_sample")
