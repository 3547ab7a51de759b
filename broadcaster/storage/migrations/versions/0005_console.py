"""console sign-in: why a session ended; indexes for throttling and housekeeping

Revision ID: 0005
Revises: 0004

Sign-in throttling counts recent failures per source address as well as per account, and old
attempts are purged by age; without these indexes both would scan the whole table.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Why a session ended (signed_out, idle, too_old, disabled), for the sign-in page to say.
    op.add_column("sessions", sa.Column("ended_reason", sa.String(length=16), nullable=True))
    op.create_index(
        "ix_sign_in_attempts_source_address",
        "sign_in_attempts",
        ["source_address"],
        unique=False,
    )
    op.create_index("ix_sign_in_attempts_at", "sign_in_attempts", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sign_in_attempts_at", table_name="sign_in_attempts")
    op.drop_index("ix_sign_in_attempts_source_address", table_name="sign_in_attempts")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("ended_reason")
