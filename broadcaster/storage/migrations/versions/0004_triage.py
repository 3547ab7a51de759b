"""triage tables and columns

Revision ID: 0004
Revises: 0003

Columns added to reports, incidents and report_replies carry no foreign key, so SQLite adds them
with a plain ALTER TABLE: a foreign key would make batch mode rebuild `reports`, and dropping the
old table would cascade-delete every reply.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("reports", sa.Column("target", sa.String(length=200), nullable=True))
    op.add_column("reports", sa.Column("url", sa.Text(), nullable=True))
    op.add_column("reports", sa.Column("duplicate_of", sa.BigInteger(), nullable=True))
    op.add_column("reports", sa.Column("escalation_error", sa.Text(), nullable=True))
    op.create_index("ix_reports_received_at", "reports", ["received_at"], unique=False)

    op.add_column("incidents", sa.Column("place", sa.String(length=255), nullable=True))
    op.add_column("incidents", sa.Column("last_report_at", sa.DateTime(timezone=True)))
    op.add_column("incidents", sa.Column("rumour_alert_id", sa.BigInteger(), nullable=True))

    op.add_column("report_replies", sa.Column("language", sa.String(length=16), nullable=True))
    op.add_column("report_replies", sa.Column("approved_by", sa.BigInteger(), nullable=True))
    op.add_column("report_replies", sa.Column("sent_at", sa.DateTime(timezone=True)))
    op.add_column("report_replies", sa.Column("error", sa.Text(), nullable=True))

    op.create_table(
        "report_views",
        sa.Column("report_id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_report_views_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_report_views_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("report_id", "user_id", name=op.f("pk_report_views")),
    )


def downgrade() -> None:
    op.drop_table("report_views")
    with op.batch_alter_table("report_replies") as batch:
        for name in ("error", "sent_at", "approved_by", "language"):
            batch.drop_column(name)
    with op.batch_alter_table("incidents") as batch:
        for name in ("rumour_alert_id", "last_report_at", "place"):
            batch.drop_column(name)
    op.drop_index("ix_reports_received_at", table_name="reports")
    with op.batch_alter_table("reports") as batch:
        for name in ("escalation_error", "duplicate_of", "url", "target"):
            batch.drop_column(name)
