"""A local mail submission server (aiosmtpd) plus a provider-style message log over HTTP.

The SMTP server runs on the test's own event loop (loop.create_server on 127.0.0.1, port 0)
rather than in aiosmtpd's Controller thread: no race for a "free" port, no state shared across
threads, and stop() can cut connections that a fault is holding open.

SMTP behaviour the adapter relies on:
- AUTH PLAIN/LOGIN without TLS (the emulator's stand-in for STARTTLS + AUTH); MAIL before a
  successful AUTH → 530 5.7.0; wrong credentials → 535 5.7.8.
- RCPT: bad syntax → 501 5.1.3; a domain under .invalid → 550 5.1.1 (user unknown).
- DATA: the message is queued and "250 2.0.0 Ok: queued as <id>" answered, Postfix style.

Faults (Emulator.add_fault, matched against the path "/smtp/<COMMAND>" and method "SMTP"):
- rate_limit → 451 4.7.1 "... try again in N seconds" at MAIL (nothing queued);
- server_error → 421 4.3.2 for status 503, else 451 4.3.0, at MAIL; outage → 421 4.3.2;
- commit_then_error → at the end of DATA the message is queued, then the connection drops
  before the 250 reply (the classic duplicate-mail window);
- timeout → at the end of DATA, no answer for `delay` seconds, then the connection drops;
- reset → at the end of DATA the connection drops at once.
A fault picked up at MAIL that belongs to DATA waits for that connection's DATA.

HTTP message log: GET /v1/messages?message_id=<id>[&to=<address>] (basic auth, same account)
→ {"messages": [{"message_id", "queue_id", "to", "from", "subject", "accepted_at"}]}.

Effects: "post" {id: Message-ID, text: the plain-text part, to, reply_to: In-Reply-To, subject,
html, queue_id, from}.
"""

from __future__ import annotations

import asyncio
import base64
import email
import hmac
import itertools
import logging
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any, ClassVar, Final, cast

from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.email import EmailChannel, EmailSettings, check_address
from channels.emulators.base import Emulator, Fault, FaultKind

__all__ = ["EMULATOR", "PASSWORD", "USERNAME", "SmtpEmulator"]

USERNAME: Final = "alerts@county.example.gov"
PASSWORD: Final = "smtp-emulator-password-7d41c9"  # noqa: S105 (the emulator's own)
FROM_ADDRESS: Final = "alerts@county.example.gov"
HOSTNAME: Final = "smtp.emulator.test"
_DATA_FAULTS: Final = frozenset({FaultKind.commit_then_error, FaultKind.timeout, FaultKind.reset})


class _WithoutLegacyLoginDataWarning(logging.Filter):
    """aiosmtpd sets its own deprecated `Session.login_data` on every AUTH and then warns
    about it, once per authenticated session: thousands of lines of noise in a fan-out."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Session.login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_WithoutLegacyLoginDataWarning())


@dataclass(frozen=True)
class _Command:
    """What a fault is matched against for an SMTP command: Fault.matches reads .method, .path."""

    method: str
    path: str


def _plain_text(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    if part is None:
        return ""
    text = str(cast(EmailMessage, part).get_content())
    # MIME text travels with CRLF line ends and always ends in a line break: undo both so the
    # record is the text the sender composed.
    text = text.replace("\r\n", "\n")
    return text[:-1] if text.endswith("\n") else text


def _html(message: EmailMessage) -> str | None:
    part = message.get_body(("html",))
    return None if part is None else str(cast(EmailMessage, part).get_content())


class SmtpEmulator(Emulator):
    name: ClassVar[str] = "email"
    sample_recipient: ClassVar[str | None] = "resident@example.org"

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.smtp_port = 0
        self._server: asyncio.Server | None = None
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self._data_faults: dict[int, Fault] = {}  # id(session) -> fault waiting for DATA
        self._queue_ids = itertools.count(0x1A2B3C)
        super().__init__()

    # --- wiring --------------------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
    ) -> Target:
        settings = EmailSettings(
            name=name,
            mode=mode,
            timeout_seconds=timeout_seconds,
            host="127.0.0.1",
            port=self.smtp_port,
            security="none",
            username=USERNAME,
            from_address=FROM_ADDRESS,
            from_name="County Emergency Alerts",
            local_hostname="broadcaster.test",
            message_log_url=f"{self.url}/v1",
        )
        password = PASSWORD if valid_credentials else "not-the-password"
        return Target(settings=settings, credentials={"password": SecretStr(password)})

    def channel(self, target: Target) -> Channel:
        return EmailChannel(target)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/v1/messages", self._message_log)

    def reset_state(self) -> None:
        self.messages.clear()
        self._data_faults.clear()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        url = await super().start(host, port)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, host, 0)
        self.smtp_port = self._server.sockets[0].getsockname()[1]
        return url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for connection in list(self._connections):
                if isinstance(connection.transport, asyncio.Transport):
                    connection.transport.abort()
            await self._server.wait_closed()
            self._server = None
        await super().stop()

    def _protocol(self) -> SMTP:
        # Authentication is enforced in handle_MAIL rather than with auth_required=True, which
        # aiosmtpd answers with a warning when TLS is not required as well.
        connection = SMTP(
            self,
            hostname=HOSTNAME,
            ident="Crisis Broadcaster SMTP emulator",
            authenticator=self._authenticate,
            auth_require_tls=False,
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(connection)
        return connection

    # --- SMTP ----------------------------------------------------------------------------------

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            hmac.compare_digest(auth_data.login, USERNAME.encode())
            & hmac.compare_digest(auth_data.password, PASSWORD.encode())
        )
        # handled=False makes aiosmtpd answer 535 itself; the default (True) answers nothing.
        return AuthResult(success=bool(ok), handled=False)

    def _take(self, command: str) -> Fault | None:
        fault = self._take_fault(cast(web.Request, _Command("SMTP", f"/smtp/{command}")))
        if fault is not None:
            self.record("fault", fault=fault.kind.value, method="SMTP", path=f"/smtp/{command}")
        return fault

    @staticmethod
    def _refusal(fault: Fault) -> str:
        if fault.kind is FaultKind.rate_limit:
            return (
                "451 4.7.1 Rate limit exceeded for this account: "
                f"try again in {round(fault.retry_after)} seconds"
            )
        if fault.kind is FaultKind.outage or fault.status == 503:
            return "421 4.3.2 Service not available, closing transmission channel"
        return "451 4.3.0 Temporary server error: try again later"

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        fault = self._take("MAIL")
        if fault is not None and fault.kind in _DATA_FAULTS:
            self._data_faults[id(session)] = fault
        elif fault is not None:
            return self._refusal(fault)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            address = check_address(address)
        except ValueError:
            return "501 5.1.3 Bad recipient address syntax"
        if address.lower().endswith(".invalid"):
            return (
                f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual "
                "mailbox table"
            )
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        fault = self._data_faults.pop(id(session), None) or self._take("DATA")
        if fault is not None and fault.kind not in _DATA_FAULTS:
            return self._refusal(fault)
        if fault is not None and fault.kind is FaultKind.timeout:
            await asyncio.sleep(fault.delay)
        queued = None
        if fault is None or fault.kind is FaultKind.commit_then_error:
            queued = self._queue(envelope)
        if fault is not None:
            await self._drop(server)
        return f"250 2.0.0 Ok: queued as {queued}"

    async def _drop(self, server: SMTP) -> None:
        """Cut the connection without an answer; aiosmtpd then cancels this handler."""
        if isinstance(server.transport, asyncio.Transport):
            server.transport.abort()
        await asyncio.Event().wait()

    def _queue(self, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=default_policy)
        queue_id = f"{next(self._queue_ids):X}"
        message_id = str(message.get("Message-ID") or f"<{queue_id}@{HOSTNAME}>")
        in_reply_to = message.get("In-Reply-To")
        entry = {
            "message_id": message_id,
            "queue_id": queue_id,
            "to": list(envelope.rcpt_tos),
            "from": envelope.mail_from,
            "subject": str(message.get("Subject", "")),
            "accepted_at": datetime.now(UTC).isoformat(),
        }
        self.messages.append(entry)
        self.record(
            "post",
            id=message_id,
            text=_plain_text(message),
            to=", ".join(envelope.rcpt_tos),
            reply_to=str(in_reply_to) if in_reply_to else None,
            subject=entry["subject"],
            html=_html(message),
            queue_id=queue_id,
            **{"from": envelope.mail_from},
        )
        return queue_id

    # --- HTTP message log ----------------------------------------------------------------------

    async def _message_log(self, request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return web.json_response(
                {"errors": [{"message": "authentication failed"}]},
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="message log"'},
            )
        message_id = request.query.get("message_id")
        to = request.query.get("to")
        found = [
            entry
            for entry in self.messages
            if (message_id is None or entry["message_id"] == message_id)
            and (to is None or to in entry["to"])
        ]
        return web.json_response({"messages": found})


EMULATOR = SmtpEmulator
