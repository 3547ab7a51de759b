"""telegram_updates: a Telegram bot's updates, kept before getUpdates is told to forget them

Revision ID: 0007
Revises: 0006

getUpdates has a single queue per bot and forgets what an offset confirms. Reconciliation needs
the automatic forwards of our channel posts, the inbound poller needs the comments, and several
processes read the one queue: each keeps what it reads here before confirming it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "telegram_updates",
        sa.Column("target", sa.String(length=200), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("post_id", sa.BigInteger(), nullable=True),
        sa.Column("group_message_id", sa.BigInteger(), nullable=True),
        sa.Column("text_digest", sa.String(length=64), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("kept_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "update_id", name=op.f("pk_telegram_updates")),
    )
    op.create_index("ix_telegram_updates_text", "telegram_updates", ["target", "text_digest"])
    op.create_index(
        "ix_telegram_updates_group_message", "telegram_updates", ["target", "group_message_id"]
    )
    op.create_index("ix_telegram_updates_kept_at", "telegram_updates", ["kept_at"])


def downgrade() -> None:
    op.drop_table("telegram_updates")
