"""deliveries: the claim index ends with id, so a claim reads its rows in order

Revision ID: 0006
Revises: 0005

A worker claims a target's oldest due deliveries first (next_attempt_at, then id). With id in the
index, each state's due rows come out of the index already in that order and a claim reads only
the rows it takes; without it, a 100,000-person list released at one instant was sorted whole on
every claim (PostgreSQL's btree does not end with the row id the way SQLite's does).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index("ix_deliveries_due")
        batch_op.create_index(
            "ix_deliveries_due", ["target", "state", "next_attempt_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_index("ix_deliveries_due")
        batch_op.create_index(
            "ix_deliveries_due", ["target", "state", "next_attempt_at"], unique=False
        )
