"""A CAP alert hub (a national aggregator) that refuses anything but valid CAP 1.2.

POST /alerts               bearer or basic auth; application/cap+xml (or application/xml,
                           text/xml); no DTDs; validated against the official OASIS XSD with
                           lxml, and Update/Cancel must carry references. Invalid: 400
                           {"error": "invalid_cap", "message": <the validation error>}. Valid:
                           201 {"identifier", "url", "received_at"}. The identical message sent
                           again: 200 with the same answer, nothing recorded; another message
                           under a used identifier: 409.
GET  /alerts/{identifier}  the stored CAP XML, or 404.

Unauthenticated: 401 with WWW-Authenticate. Rate limited: 429 with Retry-After (seconds).
The public cannot answer through a hub, so no replies are generated.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, ClassVar, Final
from urllib.parse import quote

from aiohttp import web
from lxml import etree  # lxml ships no type information
from pydantic import SecretStr

from channels.base import Channel, Target, TargetMode
from channels.cap import CAP_MEDIA_TYPE, CAP_NAMESPACE
from channels.cap_channel import CapChannel, CapSettings
from channels.emulators.base import Emulator

__all__ = ["EMULATOR", "CapHubEmulator", "cap_schema"]

TOKEN: Final = "hub_tok_4f2d9a61c0b84e7e"  # noqa: S105 (the emulator's own test token)
USERNAME: Final = "county-eoc"
PASSWORD: Final = "hub_pw_8c1e7b3a"  # noqa: S105 (the emulator's own test password)
WRONG: Final = "hub_revoked_00000000"  # rejected on purpose
MAX_BODY_BYTES: Final = 5 << 20
_ACCEPTED_TYPES: Final = frozenset({CAP_MEDIA_TYPE, "application/xml", "text/xml"})
_CAP: Final = f"{{{CAP_NAMESPACE}}}"


def _safe_parser() -> Any:
    # No entity expansion, no network, no DTD loading: a hub parses XML from strangers.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@cache
def cap_schema() -> Any:
    """The official CAP 1.2 XSD (channels/schemas/CAP-v1.2.xsd), loaded once."""
    data = resources.files("channels").joinpath("schemas/CAP-v1.2.xsd").read_bytes()
    return etree.XMLSchema(etree.fromstring(data, _safe_parser()))


@dataclass(frozen=True)
class _Stored:
    document: bytes
    answer: dict[str, str]


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status, headers=headers)


def _problem(body: bytes) -> tuple[str | None, Any]:
    """(what is wrong with this CAP document or None, the parsed root)."""
    try:
        root = etree.fromstring(body, _safe_parser())
    except etree.XMLSyntaxError as error:
        return f"not well-formed XML: {error}", None
    if root.getroottree().docinfo.doctype:
        return "DOCTYPE declarations are not accepted", None
    schema = cap_schema()
    if not schema.validate(root):
        first = schema.error_log[0]
        return f"line {first.line}: {first.message}", None
    msg_type = root.findtext(f"{_CAP}msgType")
    if msg_type in ("Update", "Cancel") and not (root.findtext(f"{_CAP}references") or "").strip():
        return f"an {msg_type} must name the messages it replaces in <references>", None
    return None, root


class CapHubEmulator(Emulator):
    name: ClassVar[str] = "cap"

    def __init__(self) -> None:
        super().__init__()
        self.stored: dict[str, _Stored] = {}

    # --- wiring --------------------------------------------------------------------------------

    def target(
        self,
        name: str = "test",
        mode: TargetMode = TargetMode.live,
        *,
        valid_credentials: bool = True,
        timeout_seconds: float = 10.0,
        basic: bool = False,
    ) -> Target:
        """A bearer-token target; `basic=True` for HTTP basic auth instead."""
        settings = CapSettings(
            name=name,
            mode=mode,
            base_url=self.url,
            auth="basic" if basic else "bearer",
            username=USERNAME if basic else None,
            timeout_seconds=timeout_seconds,
            # The emulator listens on 127.0.0.1: without this the channel refuses it (netguard).
            allow_private_destinations=True,
        )
        secret = (PASSWORD if basic else TOKEN) if valid_credentials else WRONG
        return Target(settings, {"secret": SecretStr(secret)})

    def channel(self, target: Target) -> Channel:
        return CapChannel(target)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/alerts", self._receive)
        router.add_get("/alerts/{identifier}", self._fetch)

    # --- the hub's own answers -----------------------------------------------------------------

    def rate_limited(self, request: web.Request, retry_after: float) -> web.StreamResponse:
        return _error(
            429,
            "rate_limited",
            "Too many messages from this sender; slow down.",
            **{"Retry-After": str(round(retry_after))},
        )

    def server_error(self, request: web.Request, status: int) -> web.StreamResponse:
        return _error(status, "server_error", "The hub could not process the message.")

    async def generate_replies(
        self, count: int, text: str | None, to: str | None
    ) -> list[dict[str, Any]]:
        raise web.HTTPNotImplemented(text="a CAP hub carries no public replies")

    def reset_state(self) -> None:
        self.stored.clear()

    # --- routes --------------------------------------------------------------------------------

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(value.encode(), TOKEN.encode())
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(decoded, f"{USERNAME}:{PASSWORD}".encode())
        return False

    def _unauthorized(self) -> web.Response:
        return _error(
            401,
            "unauthorized",
            "Valid credentials are required.",
            **{"WWW-Authenticate": 'Bearer realm="cap-hub", Basic realm="cap-hub"'},
        )

    async def _receive(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        if request.content_type not in _ACCEPTED_TYPES:
            return _error(415, "unsupported_media_type", f"Send {CAP_MEDIA_TYPE}.")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _error(413, "too_large", "CAP messages are limited to 5 MiB.")
        body = await request.read()
        problem, root = _problem(body)
        if problem is not None:
            return _error(400, "invalid_cap", f"The message is not valid CAP 1.2: {problem}")
        identifier = str(root.findtext(f"{_CAP}identifier"))
        earlier = self.stored.get(identifier)
        if earlier is not None:
            if earlier.document != body:
                return _error(
                    409,
                    "duplicate_identifier",
                    f"A different message with identifier {identifier} was already received; "
                    "every message needs its own identifier.",
                )
            return web.json_response(earlier.answer, status=200)
        answer = {
            "identifier": identifier,
            "url": f"{self.url}/alerts/{quote(identifier, safe='')}",
            "received_at": datetime.now(UTC).isoformat(),
        }
        self.stored[identifier] = _Stored(body, answer)
        self.record(
            "post",
            id=identifier,
            text=body.decode("utf-8"),
            key=identifier,
            reply_to=None,
            msg_type=root.findtext(f"{_CAP}msgType"),
            references=root.findtext(f"{_CAP}references"),
        )
        return web.json_response(answer, status=201)

    async def _fetch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        stored = self.stored.get(request.match_info["identifier"])
        if stored is None:
            return _error(404, "not_found", "No message with this identifier.")
        return web.Response(body=stored.document, content_type=CAP_MEDIA_TYPE, charset="utf-8")


EMULATOR = CapHubEmulator
