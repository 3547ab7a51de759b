"""dispatcher tables and columns

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recipient", sa.String(length=320), nullable=True))
        batch_op.add_column(
            sa.Column("parts_done", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("part_receipts", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reconcile_part", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "superseded_by",
                sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                nullable=True,
            )
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_superseded_by_alert_versions"),
            "alert_versions",
            ["superseded_by"],
            ["id"],
        )
        batch_op.create_index(
            "ix_deliveries_due", ["target", "state", "next_attempt_at"], unique=False
        )
        batch_op.create_index("ix_deliveries_updated_at", ["updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_updated_at")
        batch_op.drop_index("ix_deliveries_due")
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_superseded_by_alert_versions"), type_="foreignkey"
        )
        batch_op.drop_column("superseded_by")
        batch_op.drop_column("reconcile_part")
        batch_op.drop_column("part_receipts")
        batch_op.drop_column("parts_done")
        batch_op.drop_column("recipient")
