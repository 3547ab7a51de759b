"""The database schema for the whole design, as SQLAlchemy Core tables.

This module is the model Alembic migrations are written against; the migrations are what create
and change real databases. A test checks that a database upgraded to head matches these tables.

Conventions: integer surrogate keys; times are timezone-aware UTC; state columns hold the string
values of the enums that own them (approvals.workflow, broadcaster delivery and report states);
free-form structured content is JSON. Secrets are never stored: passwords and API tokens only as
hashes, channel credentials only in the environment.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from broadcaster.storage.types import UtcDateTime

# Named constraints keep Alembic migrations identical on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL, but INTEGER on SQLite so the column stays the rowid alias (autoincrement).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _created() -> Column[object]:
    return Column("created_at", UtcDateTime(), nullable=False)


# --- people and access -------------------------------------------------------------------------

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    # Chain-of-command rank; policy rules may require a minimum rank instead of a role.
    Column("rank", Integer, nullable=False, default=0),
    Column("password_hash", String(255)),  # argon2id; null = cannot sign in with a password
    Column("totp_secret", String(64)),  # base32 TOTP seed, set at enrolment
    Column("totp_last_step", BigInteger),  # last accepted TOTP time step, so a code is used once
    Column("active", Boolean, nullable=False, default=True),
    _created(),
    Column("updated_at", UtcDateTime()),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    # SHA-256 of the token: tokens carry 256 random bits, so a fast hash is enough.
    Column("token_hash", String(64), nullable=False, unique=True),
    Column(
        "prefix", String(16), nullable=False
    ),  # shown in listings so a person can tell tokens apart
    _created(),
    Column("expires_at", UtcDateTime()),
    Column("last_used_at", UtcDateTime()),
    Column("revoked_at", UtcDateTime()),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # SHA-256 of the cookie value
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    _created(),
    Column("last_seen_at", UtcDateTime(), nullable=False),
    Column("second_factor_at", UtcDateTime()),
    Column("source_address", String(64)),
    Column("ended_at", UtcDateTime()),
)

sign_in_attempts = Table(
    "sign_in_attempts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("username", String(64), nullable=False, index=True),
    Column("source_address", String(64)),
    Column("succeeded", Boolean, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)

# --- alerts and approvals ----------------------------------------------------------------------

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True),
    # Exercise or live, fixed when the alert is created: an exercise can never become Actual.
    Column("mode", String(16), nullable=False),
    Column("created_by", ForeignKey("users.id"), nullable=False),
    _created(),
    Column("current_version_id", BigInteger),  # the newest version; not a FK to avoid a cycle
)

alert_versions = Table(
    "alert_versions",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("alert_id", ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("state", String(32), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # CAP status: Actual, Exercise, ...
    Column("msg_type", String(16), nullable=False),  # CAP msgType: Alert, Update, Cancel
    Column("content", JSON, nullable=False),
    Column("content_hash", String(64), nullable=False),  # SHA-256 of the canonical content
    Column("author_id", ForeignKey("users.id"), nullable=False),
    Column("replaces_version_id", ForeignKey("alert_versions.id")),
    # CAP identity, assigned at release.
    Column("identifier", String(255), unique=True),
    Column("sender", String(255)),
    Column("sent_at", UtcDateTime()),
    Column("reject_reason", Text),
    # Workflow facts the approval rules need (see approvals.lifecycle.VersionRecord).
    Column("authors", JSON, nullable=False),  # everyone who wrote, edited or submitted it
    Column("rule", String(100)),  # the policy rule it was last checked against
    Column("replaces_went_out", Boolean, nullable=False, default=False),
    Column("replaced_channels", JSON),  # a Cancel may go only to these
    Column("prewritten_hash", String(64)),  # hash of an unedited pre-written cancel text
    Column("cap_reference", String(600)),  # CAP "sender,identifier,sent", set at release
    _created(),
    Column("updated_at", UtcDateTime()),
    Column("submitted_at", UtcDateTime()),
    Column("approved_at", UtcDateTime()),
    Column("released_at", UtcDateTime()),
    Column("expires_at", UtcDateTime()),
    UniqueConstraint("alert_id", "number", name="uq_alert_versions_alert_id_number"),
)

approvals = Table(
    "approvals",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "version_id",
        ForeignKey("alert_versions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("approver_id", ForeignKey("users.id"), nullable=False),
    Column("decision", String(16), nullable=False),  # approve or reject
    # The exact content the approver saw; it counts only while it equals the version's hash.
    Column("content_hash", String(64), nullable=False),
    Column("rule", String(100), nullable=False),  # the policy rule in force when they decided
    Column("reason", Text),
    Column("second_factor_at", UtcDateTime()),
    Column("decided_at", UtcDateTime(), nullable=False),
    Column("voided_at", UtcDateTime()),  # set when an edit changes the content
    Index("ix_approvals_version_id", "version_id"),
)

# --- delivery (the outbox) ---------------------------------------------------------------------

# The rendered posts of a release, frozen: one row per distinct rendering (a target, or one
# language of a list), which every delivery of it references (migration 0008). A 100,000-person
# list holds a handful, not 100,000 copies. Never changed or reused once written, so workers cache
# them by id; AUTOINCREMENT keeps SQLite from handing out a deleted row's id again.
delivery_payloads = Table(
    "delivery_payloads",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("version_id", ForeignKey("alert_versions.id"), nullable=False, index=True),
    Column("payload", JSON, nullable=False),  # {"posts": [...], "mode": "live" | "exercise"}
    _created(),
    sqlite_autoincrement=True,
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("version_id", ForeignKey("alert_versions.id"), nullable=False, index=True),
    Column("channel", String(32), nullable=False),
    Column("target", String(200), nullable=False),  # account, list or destination name from config
    Column("target_mode", String(16), nullable=False),  # live or exercise
    Column(
        "kind", String(16), nullable=False
    ),  # publish or retract (cancel/correct on the platform)
    Column("state", String(16), nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UtcDateTime()),
    Column("lease_owner", String(100)),
    Column("lease_expires_at", UtcDateTime()),
    Column("external_id", String(255)),
    Column("external_url", Text),
    Column("receipt", JSON),
    Column("last_error", Text),
    Column("retracts_delivery_id", ForeignKey("deliveries.id")),
    _created(),
    Column("updated_at", UtcDateTime()),
    Column("delivered_at", UtcDateTime()),
    Index("ix_deliveries_claim", "state", "next_attempt_at"),
    # Columns from here to the end of the table: migration 0003 (the dispatcher).
    # List channels: the phone number or address this delivery goes to (one row per person).
    Column("recipient", String(320)),
    # Thread parts confirmed so far and their receipts, so a crash mid-thread never re-posts one.
    Column("parts_done", Integer, nullable=False, default=0, server_default="0"),
    Column("part_receipts", JSON),
    # The part whose outcome is unknown (timeout, 5xx after sending, worker died): it is looked
    # up with find_published before anything is sent again.
    Column("reconcile_part", Integer),
    # A Cancel/Update released while this delivery could not simply be stopped (in flight or
    # unresolved): finish reconciling, but send nothing new.
    Column("superseded_by", ForeignKey("alert_versions.id")),
    # Ends with id: a claim reads each state's due rows in order (migration 0006).
    Index("ix_deliveries_due", "target", "state", "next_attempt_at", "id"),
    Index("ix_deliveries_updated_at", "updated_at"),
    # The posts to send, frozen at release (migration 0008; they were a JSON copy per row).
    Column("payload_id", ForeignKey("delivery_payloads.id")),
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "delivery_id", ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    Column("number", Integer, nullable=False),
    Column("worker", String(100), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("finished_at", UtcDateTime()),
    Column("outcome", String(16)),  # delivered, transient, permanent, auth, ambiguous, reconciled
    Column("error", Text),
    Column("retry_after_seconds", Float),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(100), primary_key=True),  # host:pid:random
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    Column("stopped_at", UtcDateTime()),
)

channel_state = Table(
    "channel_state",
    metadata,
    Column("channel", String(32), primary_key=True),
    Column("target", String(200), primary_key=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_by", ForeignKey("users.id")),
    Column("paused_at", UtcDateTime()),
    Column("pause_reason", Text),
    Column("inbound_cursor", String(255)),  # since_id or equivalent for polling sources
    Column("breaker_state", String(16), nullable=False, default="closed"),
    Column("breaker_opened_at", UtcDateTime()),
    Column("rate_reset_at", UtcDateTime()),  # the platform said: not before this
    Column("last_success_at", UtcDateTime()),
    Column("last_error", Text),
    Column("updated_at", UtcDateTime()),
)

# Every update a Telegram bot read through getUpdates, kept before Telegram is told to forget it
# (the next getUpdates' offset confirms everything before it). getUpdates has one queue per bot
# and cannot be re-read, so this table is what lets any process see what another confirmed: the
# inbound poller reads its comments here, and reconciliation searches the automatic forwards of
# our channel posts (broadcaster/telegram_inbox.py).
telegram_updates = Table(
    "telegram_updates",
    metadata,
    Column("target", String(200), primary_key=True),
    Column("update_id", BigInteger, primary_key=True),
    Column("body", JSON, nullable=False),  # the Update as the Bot API sent it
    # Set when the update is the automatic forward of one of our channel posts into the linked
    # discussion group: the post's id in the channel, the copy's id in the group, the post's
    # text (SHA-256 of the stripped text, to find it by) and when it was posted.
    Column("post_id", BigInteger),
    Column("group_message_id", BigInteger),
    Column("text_digest", String(64)),
    Column("posted_at", UtcDateTime()),
    Column("kept_at", UtcDateTime(), nullable=False),
    Index("ix_telegram_updates_text", "target", "text_digest"),
    Index("ix_telegram_updates_group_message", "target", "group_message_id"),
    Index("ix_telegram_updates_kept_at", "kept_at"),
)

# --- public reports and triage -----------------------------------------------------------------

incidents = Table(
    "incidents",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("title", String(300), nullable=False),
    Column("state", String(16), nullable=False),
    Column("report_count", Integer, nullable=False, default=0),
    Column("priority", Float, nullable=False, default=0.0),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("misinformation", Boolean, nullable=False, default=False),
    _created(),
    Column("updated_at", UtcDateTime()),
)

reports = Table(
    "reports",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("source", String(32), nullable=False),
    Column("external_id", String(255), nullable=False),
    Column("author_name", String(200)),
    Column("author_pseudonym", String(64), index=True),  # keyed hash of the platform's author id
    Column("contact", String(255)),
    Column("text", Text, nullable=False),
    Column("language", String(16)),
    Column("latitude", Float),
    Column("longitude", Float),
    Column("place", String(255)),
    Column("media", JSON),
    Column("in_reply_to", String(255)),  # platform id of the post it answers
    Column("alert_id", ForeignKey("alerts.id")),
    Column("incident_id", ForeignKey("incidents.id"), index=True),
    Column("state", String(16), nullable=False),
    Column("priority", Float, nullable=False, default=0.0),
    Column("priority_reasons", JSON),
    Column("assigned_to", ForeignKey("users.id")),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("acknowledged_at", UtcDateTime()),
    Column("escalated_at", UtcDateTime()),
    Column("resolved_at", UtcDateTime()),
    Column("updated_at", UtcDateTime()),
    # Idempotent ingestion: a replayed webhook or re-polled mention never makes a second report.
    UniqueConstraint("source", "external_id", name="uq_reports_source_external_id"),
    Index("ix_reports_queue", "state", "priority"),
)

report_replies = Table(
    "report_replies",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("report_id", ForeignKey("reports.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("author_id", ForeignKey("users.id"), nullable=False),
    Column("text", Text, nullable=False),
    Column("canned", String(100)),
    Column("state", String(16), nullable=False),
    Column("external_id", String(255)),
    _created(),
)

# --- audit -------------------------------------------------------------------------------------

audit_log = Table(
    "audit_log",
    metadata,
    # Append-only. seq orders the chain; each entry's hash covers its fields and prev_hash.
    Column("seq", BigId, primary_key=True),
    Column("at", UtcDateTime(), nullable=False),
    Column("actor", String(100), nullable=False),  # username, "system" or "public"
    Column("action", String(64), nullable=False, index=True),
    Column("subject", String(200)),  # e.g. "alert:12/version:3", "user:alice"
    Column("source_address", String(64)),
    Column("details", JSON),
    Column("content_hash", String(64)),  # the alert content hash the action concerned, if any
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False, unique=True),
)

# --- contacts ----------------------------------------------------------------------------------
# Distribution lists for the SMS and email channels (migration 0002_contacts). broadcaster.contacts
# reads and writes these tables.

contact_lists = Table(
    "contact_lists",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("description", Text),
    _created(),
    Column("updated_at", UtcDateTime()),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("list_id", ForeignKey("contact_lists.id", ondelete="CASCADE"), nullable=False),
    Column("phone", String(16), nullable=False),  # E.164: "+" and at most 15 digits
    Column("email", String(254)),
    # Where the contact lives, for "only people inside the alert area"; both or neither.
    Column("latitude", Float),
    Column("longitude", Float),
    Column("language", String(35)),  # BCP 47 tag; picks the SMS language for this person
    _created(),
    Column("updated_at", UtcDateTime()),
    # Also the index that finds a list's contacts (list_id leads).
    UniqueConstraint("list_id", "phone", name="uq_contacts_list_id_phone"),
)

# One row per phone number that replied STOP (or that Twilio reports as unsubscribed, 21610).
# Per number, not per list: STOP withdraws consent from the sender, and every list of this
# installation is sent from the same sender, so the number is out of all of them until START.
sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("phone", String(16), primary_key=True),
    Column("source", String(64), nullable=False),  # e.g. "keyword STOP", "twilio 21610"
    Column("opted_out_at", UtcDateTime(), nullable=False),
)


# --- dispatcher (migration 0003) ---------------------------------------------------------------
# The dispatcher's columns live in the `deliveries` table above (recipient, parts_done,
# part_receipts, reconcile_part, superseded_by and two indexes); broadcaster.dispatch owns them.


# --- triage (migration 0004) -------------------------------------------------------------------
# Columns added to the triage tables of 0001 (broadcaster/triage). Added columns carry no foreign
# key: on SQLite a new foreign key rebuilds the table, and rebuilding `reports` would cascade-delete
# its replies. The service keeps these references consistent itself.

# The configured target a report came in on: a reply goes back through that target's adapter.
reports.append_column(Column("target", String(200)))
reports.append_column(Column("url", Text))  # a link to the message on its platform
reports.append_column(Column("duplicate_of", BigInteger))  # the report this one repeats
# Why escalating it to the on-call target failed for good (a transient failure is retried).
reports.append_column(Column("escalation_error", Text))
# Purge by age (privacy retention) and the newest-first views read this.
Index("ix_reports_received_at", reports.c.received_at)

incidents.append_column(Column("place", String(255)))
incidents.append_column(Column("last_report_at", UtcDateTime()))
incidents.append_column(Column("rumour_alert_id", BigInteger))  # the rumour-control draft

report_replies.append_column(Column("language", String(16)))
report_replies.append_column(Column("approved_by", BigInteger))  # second person, when required
report_replies.append_column(Column("sent_at", UtcDateTime()))
report_replies.append_column(Column("error", Text))  # what the platform said when it failed

# Who has a report open right now ("viewing"): one row per person, refreshed while they look.
report_views = Table(
    "report_views",
    metadata,
    Column("report_id", ForeignKey("reports.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("seen_at", UtcDateTime(), nullable=False),
)


# --- console (migration 0005) ------------------------------------------------------------------
# Why a session ended (signed_out, idle, too_old, disabled): the sign-in page says so.
sessions.append_column(Column("ended_reason", String(16)))
# Sign-in throttling counts recent failures per source address, and purges attempts by age.
Index("ix_sign_in_attempts_source_address", sign_in_attempts.c.source_address)
Index("ix_sign_in_attempts_at", sign_in_attempts.c.at)
