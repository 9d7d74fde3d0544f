"""stage timings: how long each item spent in each stage from capture to the screen

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 18:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL for the items recorded before (not measured); a plain ADD COLUMN, no table copy
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_ms", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("item", schema=None) as batch_op:
        batch_op.drop_column("stage_ms")
