"""model registry: who registered a model version (its artifact is in the station's store)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 04:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("registered_by", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_model_version_registered_by", "operator", ["registered_by"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_constraint("fk_model_version_registered_by", type_="foreignkey")
        batch_op.drop_column("registered_by")
