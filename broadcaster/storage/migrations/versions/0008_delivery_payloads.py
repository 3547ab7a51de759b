"""delivery_payloads: one frozen payload per rendering, referenced by its deliveries

Revision ID: 0008
Revises: 0007

Every delivery carried its own JSON copy of the rendered posts: a 100,000-person SMS list wrote
100,000 copies of the same few hundred bytes at release, every claim read them back, and every
update of a row rewrote them. Now a release writes each distinct rendering once and its
deliveries reference it. Existing rows are moved: one payload row per distinct (version,
payload) pair.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# Lightweight views of the tables as they are during the move (not the schema module's, which
# follows the head revision).
_deliveries = sa.table(
    "deliveries",
    sa.column("id", _BIG_ID),
    sa.column("version_id", _BIG_ID),
    sa.column("payload", sa.JSON()),
    sa.column("payload_id", _BIG_ID),
)
_payloads = sa.table(
    "delivery_payloads",
    sa.column("id", _BIG_ID),
    sa.column("version_id", _BIG_ID),
    sa.column("payload", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    op.create_table(
        "delivery_payloads",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("version_id", _BIG_ID, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["alert_versions.id"],
            name=op.f("fk_delivery_payloads_version_id_alert_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_payloads")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_delivery_payloads_version_id", "delivery_payloads", ["version_id"], unique=False
    )
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("payload_id", _BIG_ID, nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_payload_id_delivery_payloads"),
            "delivery_payloads",
            ["payload_id"],
            ["id"],
        )
    _move_payloads_out()
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_column("payload")


def _move_payloads_out() -> None:
    """One payload row per distinct (version, payload text); each delivery pointed at its own."""
    connection = op.get_bind()
    text = sa.cast(_deliveries.c.payload, sa.Text)
    distinct = connection.execute(
        sa.select(_deliveries.c.version_id, text)
        # SQLAlchemy wrote a Python None as JSON null: such a row had no payload either.
        .where(_deliveries.c.payload.is_not(None), text != "null")
        .group_by(_deliveries.c.version_id, text)
    ).all()
    now = datetime.now(UTC)
    for version_id, payload in distinct:
        payload_id = connection.execute(
            _payloads.insert()
            .values(version_id=version_id, payload=json.loads(payload), created_at=now)
            .returning(_payloads.c.id)
        ).scalar_one()
        connection.execute(
            _deliveries.update()
            .where(_deliveries.c.version_id == version_id, text == payload)
            .values(payload_id=payload_id)
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
    connection = op.get_bind()
    found = connection.execute(
        sa.select(_payloads.c.id, sa.cast(_payloads.c.payload, sa.Text))
    ).all()
    for payload_id, payload in found:
        connection.execute(
            _deliveries.update()
            .where(_deliveries.c.payload_id == payload_id)
            .values(payload=json.loads(payload))
        )
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_payload_id_delivery_payloads"), type_="foreignkey"
        )
        batch_op.drop_column("payload_id")
    op.drop_index("ix_delivery_payloads_version_id", table_name="delivery_payloads")
    op.drop_table("delivery_payloads")
