"""Email through aiosmtplib against the aiosmtpd emulator: rendering, Message-IDs from keys, SMTP
replies and dropped connections mapped to the error tree, reconciliation and threaded retraction."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace

import aiosmtplib
import pytest
from pydantic import ValidationError

from approvals.alert import EXERCISE_MARKING, AlertContent, MsgType, Status
from channels.base import (
    AlertVersion,
    AmbiguousError,
    AuthError,
    PermanentError,
    Post,
    Receipt,
    Target,
    TargetMode,
    TransientError,
)
from channels.email import (
    EmailChannel,
    EmailSettings,
    _map_smtp_error,
    check_address,
    message_id_for,
    render_email,
)
from channels.emulators.base import Fault, FaultKind
from channels.emulators.email import PASSWORD, SmtpEmulator
from tests.channels import samples

RESIDENT = "resident@example.org"


@pytest.fixture
async def emulator() -> AsyncIterator[SmtpEmulator]:
    emulator = SmtpEmulator()
    await emulator.start()
    yield emulator
    await emulator.stop()


def _target(emulator: SmtpEmulator, **settings: object) -> Target:
    base = emulator.target("county-email", TargetMode.live, timeout_seconds=1.0)
    return replace(base, settings=base.settings.model_copy(update=settings))


@pytest.fixture
async def mail(emulator: SmtpEmulator) -> AsyncIterator[EmailChannel]:
    channel = EmailChannel(_target(emulator))
    yield channel
    await channel.aclose()


def _version(**kwargs: object) -> AlertVersion:
    return samples.version(channels=("email",), **kwargs)  # type: ignore[arg-type]


def _with_headline(version: AlertVersion, headline: str) -> AlertVersion:
    info = version.content.infos[0].model_copy(update={"headline": headline})
    content = version.content.model_copy(update={"infos": (info, *version.content.infos[1:])})
    return replace(version, content=AlertContent.model_validate(content.model_dump()))


# --- rendering -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "subject"),
    [
        ({}, "Evacuate Riverside now: levee failure"),
        ({"status": Status.exercise}, f"{EXERCISE_MARKING} Evacuate Riverside now: levee failure"),
        ({"status": Status.test}, f"{EXERCISE_MARKING} Evacuate Riverside now: levee failure"),
        ({"msg_type": MsgType.update}, "UPDATE: Evacuate Riverside now: levee failure"),
        ({"msg_type": MsgType.cancel}, "CANCELLED: All clear: cancel the Riverside evacuation"),
        (
            {"msg_type": MsgType.cancel, "status": Status.exercise},
            f"{EXERCISE_MARKING} CANCELLED: All clear: cancel the Riverside evacuation",
        ),
    ],
)
def test_subject(kwargs: dict[str, object], subject: str) -> None:
    post = render_email(_version(**kwargs))
    assert post.subject == subject
    marked = kwargs.get("status") in (Status.exercise, Status.test)
    assert post.text.startswith(EXERCISE_MARKING) is marked
    assert (EXERCISE_MARKING in (post.html or "")) is marked


def test_every_language_is_in_one_email_primary_first() -> None:
    post = render_email(_version(languages=("es-US", "en-US", "zh-CN")))
    assert post.language == "es-US"
    assert post.subject == "Evacúe Riverside ahora: falla del dique"
    positions = [post.text.index(h) for h in ("Evacúe", "Evacuate", "立即撤离")]
    assert positions == sorted(positions)
    assert '<section lang="zh-CN">' in (post.html or "")
    assert post.extra["languages"] == ["es-US", "en-US", "zh-CN"]


def test_html_is_escaped_and_plain_text_is_not() -> None:
    post = render_email(_with_headline(_version(), 'Flood <script>alert("x")</script> & mud'))
    assert "<script>" not in (post.html or "")
    assert "&lt;script&gt;" in (post.html or "")
    assert "&amp; mud" in (post.html or "")
    assert 'Flood <script>alert("x")</script> & mud' in post.text


def test_message_ids_follow_the_key() -> None:
    assert message_id_for("d:1", "county.example.gov") == message_id_for(
        "d:1", "county.example.gov"
    )
    assert message_id_for("d:1", "county.example.gov") != message_id_for(
        "d:2", "county.example.gov"
    )
    assert message_id_for("d:1", "county.example.gov").endswith("@county.example.gov>")


def test_a_password_is_never_sent_in_clear_over_the_network(emulator: SmtpEmulator) -> None:
    fields = emulator.target().settings.model_dump()
    with pytest.raises(ValidationError, match="in clear"):
        EmailSettings.model_validate({**fields, "host": "smtp.county.example.gov"})
    EmailSettings.model_validate({**fields, "host": "smtp.county.example.gov", "username": None})
    EmailSettings.model_validate(
        {**fields, "host": "smtp.county.example.gov", "security": "starttls"}
    )


@pytest.mark.parametrize(
    "address", ["resident", "a@b", "two@@example.org", "space in@example.org", "ünï@example.org"]
)
def test_addresses_we_refuse(address: str) -> None:
    with pytest.raises(ValueError, match="is not an email address"):
        check_address(address)


# --- sending -------------------------------------------------------------------------------------


async def test_the_email_on_the_wire(emulator: SmtpEmulator, mail: EmailChannel) -> None:
    [post] = mail.render(_version(languages=("en-US", "fr-CA")))
    receipt = await mail.publish(post, "delivery-7:1", recipient=RESIDENT)
    [effect] = emulator.effects_of("post")
    assert effect.data["text"] == post.text
    assert effect.data["html"].replace("\r\n", "\n").rstrip("\n") == (post.html or "").rstrip("\n")
    assert effect.data["subject"] == post.subject
    assert effect.data["to"] == RESIDENT
    assert (
        effect.data["id"]
        == receipt.external_id
        == message_id_for("delivery-7:1", "county.example.gov")
    )
    assert receipt.extra["queue_id"] == effect.data["queue_id"]
    assert receipt.extra["smtp_reply"].startswith("250 2.0.0")


async def test_retraction_is_threaded_under_the_original(
    emulator: SmtpEmulator, mail: EmailChannel
) -> None:
    [post] = mail.render(_version())
    original = await mail.publish(post, "d:1", recipient=RESIDENT)
    done = await mail.retract(original, _version(number=2, msg_type=MsgType.cancel))
    correction = emulator.effects_of("post")[-1]
    assert correction.data["reply_to"] == original.external_id
    assert correction.data["subject"].startswith("CANCELLED: All clear")
    assert correction.data["to"] == RESIDENT
    assert done.external_id != original.external_id
    again = await mail.retract(original, _version(number=2, msg_type=MsgType.cancel))
    assert again.external_id == done.external_id  # same cancel, same Message-ID


async def test_a_receipt_without_a_recipient_cannot_be_retracted(mail: EmailChannel) -> None:
    receipt = Receipt(channel="email", target="county-email", external_id="<x@y>")
    with pytest.raises(PermanentError, match="which address"):
        await mail.retract(receipt, _version(number=2, msg_type=MsgType.cancel))


@pytest.mark.parametrize(
    ("recipient", "code"),
    [("nobody@county.invalid", "550")],
)
async def test_a_refused_recipient_is_permanent(
    emulator: SmtpEmulator, mail: EmailChannel, recipient: str, code: str
) -> None:
    [post] = mail.render(_version())
    with pytest.raises(PermanentError) as caught:
        await mail.publish(post, "d:1", recipient=recipient)
    assert caught.value.code == code
    assert "User unknown" in str(caught.value)
    assert emulator.effects_of("post") == []


async def test_a_malformed_recipient_never_reaches_the_server(
    emulator: SmtpEmulator, mail: EmailChannel
) -> None:
    [post] = mail.render(_version())
    with pytest.raises(PermanentError, match="fix the contact"):
        await mail.publish(post, "d:1", recipient="resident at example.org")
    assert emulator.effects == []


async def test_wrong_password_is_an_auth_error_without_the_password(
    emulator: SmtpEmulator,
) -> None:
    mail = EmailChannel(emulator.target("bad", valid_credentials=False))
    [post] = mail.render(_version())
    with pytest.raises(AuthError) as caught:
        await mail.publish(post, "d:1", recipient=RESIDENT)
    assert caught.value.code == "535"
    assert "not-the-password" not in str(caught.value) and PASSWORD not in str(caught.value)
    with pytest.raises(AuthError, match="message log refused"):
        await mail.find_published(post, "d:1", recipient=RESIDENT)
    await mail.aclose()


async def test_no_auth_when_the_server_requires_it_is_an_auth_error(
    emulator: SmtpEmulator,
) -> None:
    mail = EmailChannel(_target(emulator, username=None))
    [post] = mail.render(_version())
    with pytest.raises(AuthError) as caught:
        await mail.publish(post, "d:1", recipient=RESIDENT)
    assert caught.value.code == "530"


async def test_starttls_required_but_not_offered_stops_the_target(
    emulator: SmtpEmulator,
) -> None:
    # The emulator offers no STARTTLS: sending the password in clear would be worse than failing.
    mail = EmailChannel(_target(emulator, security="starttls"))
    [post] = mail.render(_version())
    with pytest.raises(AuthError, match="cannot secure or authenticate"):
        await mail.publish(post, "d:1", recipient=RESIDENT)
    assert emulator.effects_of("post") == []


async def test_an_unreachable_server_is_transient(emulator: SmtpEmulator) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mail = EmailChannel(_target(emulator, port=port))
    [post] = mail.render(_version())
    with pytest.raises(TransientError) as caught:
        await mail.publish(post, "d:1", recipient=RESIDENT)
    assert not isinstance(caught.value, AmbiguousError)


@pytest.mark.parametrize(
    ("fault", "reply"),
    [
        (Fault(FaultKind.rate_limit, retry_after=42), 451),
        (Fault(FaultKind.server_error, status=500), 451),
        (Fault(FaultKind.server_error, status=503), 421),
        (Fault(FaultKind.server_error, path="/smtp/DATA", status=500), 451),
    ],
)
async def test_temporary_replies_are_transient_never_ambiguous(
    emulator: SmtpEmulator, mail: EmailChannel, fault: Fault, reply: int
) -> None:
    # A 4xx reply, even to DATA, is the server saying it did not take the message.
    emulator.add_fault(fault)
    [post] = mail.render(_version())
    with pytest.raises(TransientError) as caught:
        await mail.publish(post, "d:1", recipient=RESIDENT)
    assert not isinstance(caught.value, AmbiguousError)
    assert caught.value.status == reply
    if fault.kind is FaultKind.rate_limit:
        assert caught.value.retry_after == 42
    assert emulator.effects_of("post") == []
    await mail.publish(post, "d:1", recipient=RESIDENT)  # the fault was used up: it goes now
    assert len(emulator.effects_of("post")) == 1


async def test_lost_after_data_is_ambiguous_and_the_message_log_settles_it(
    emulator: SmtpEmulator, mail: EmailChannel
) -> None:
    emulator.add_fault(Fault(FaultKind.commit_then_error))
    [post] = mail.render(_version())
    with pytest.raises(AmbiguousError, match="may have been accepted"):
        await mail.publish(post, "d:1", recipient=RESIDENT)
    found = await mail.find_published(post, "d:1", recipient=RESIDENT)
    assert found is not None
    assert found.external_id == emulator.effects_of("post")[0].data["id"]
    assert await mail.find_published(post, "d:1", recipient="other@example.org") is None
    assert await mail.find_published(post, "d:2", recipient=RESIDENT) is None


async def test_without_a_message_log_reconciliation_says_none_and_warns(
    emulator: SmtpEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    mail = EmailChannel(_target(emulator, message_log_url=None))
    [post] = mail.render(_version())
    await mail.publish(post, "d:1", recipient=RESIDENT)
    with caplog.at_level(logging.WARNING, logger="channels.email"):
        assert await mail.find_published(post, "d:1", recipient=RESIDENT) is None
    assert "may be sent twice" in caplog.text


async def test_message_log_outage_is_transient(emulator: SmtpEmulator, mail: EmailChannel) -> None:
    emulator.add_fault(Fault(FaultKind.rate_limit, method="GET", retry_after=9))
    post = Post(text="x", subject="x")
    with pytest.raises(TransientError) as caught:
        await mail.find_published(post, "d:1", recipient=RESIDENT)
    assert caught.value.retry_after == 9


def test_a_certificate_that_does_not_verify_stops_the_target() -> None:
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed: Hostname mismatch")
    error = aiosmtplib.SMTPConnectError("Error connecting to smtp.example.org on port 465")
    error.__cause__ = cause
    mapped = _map_smtp_error(error, "connect", "email target 'x'")
    assert isinstance(mapped, AuthError)
    assert "did not verify" in str(mapped)
