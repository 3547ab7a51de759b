"""Publish CAP 1.2 XML to an alert hub or partner aggregator (e.g. a national alert hub).

One alert version is one CAP document, whatever its length or number of languages (CAP carries
every language as its own <info>). The hub's API, relative to the target's base_url:

    POST {base_url}/alerts               the CAP XML (application/cap+xml); 201 when accepted,
                                         400 with the validation error when the XML is refused
    GET  {base_url}/alerts/{identifier}  200 with the stored CAP XML, or 404

with HTTP basic or bearer authentication. CAP identifiers are unique, and the hub keeps one
message per identifier: re-sending the identical message answers with the first receipt
(idempotent), a different message under a used identifier is refused with 409. So a retry can
never publish twice, and `find_published` asks the hub for the identifier.

Cancel and correct: CAP's own way, a new message (msgType Cancel or Update) whose <references>
names the original; the hub and every system downstream replace the original with it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal
from urllib.parse import quote

import aiohttp
from pydantic import field_validator, model_validator
from yarl import URL

from approvals.alert import MsgType
from channels.base import (
    AlertVersion,
    AuthError,
    Channel,
    CountMethod,
    Limits,
    PermanentError,
    Post,
    Receipt,
    RetractMethod,
    Target,
    TargetSettings,
)
from channels.cap import CAP_MEDIA_TYPE, cap_document
from channels.netguard import Answer, check_destination, guarded_session, request, safe_url
from channels.webhook import IDEMPOTENCY_HEADER, http_failure

__all__ = ["CapChannel", "CapSettings"]

SECRET_NAME: Final = "secret"  # noqa: S105 (the credential's name, not a secret)


class CapSettings(TargetSettings):
    """A CAP hub. Credential `secret`: the bearer token, or the basic-auth password."""

    base_url: str  # the hub's API root, e.g. "https://hub.example.gov/api/v1"
    auth: Literal["bearer", "basic"] = "bearer"
    username: str | None = None  # for basic auth
    # Only for hubs on our own network (and the local emulator): see channels/netguard.py.
    allow_private_destinations: bool = False

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url {value!r} must be a full http:// or https:// URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_auth(self) -> CapSettings:
        if self.auth == "basic" and not self.username:
            raise ValueError("auth = 'basic' needs a username (the password is the secret)")
        if self.username is not None and ":" in self.username:
            raise ValueError(f"username {self.username!r} cannot contain ':' (HTTP basic auth)")
        if self.auth == "bearer" and self.username is not None:
            raise ValueError("username is only for auth = 'basic'; a bearer token needs none")
        return self


class CapChannel(Channel):
    name: ClassVar[str] = "cap"
    limits: ClassVar[Limits] = Limits(
        max_length=None,
        counted_by=CountMethod.unlimited,
        idempotency_keys=True,  # the hub keeps one message per CAP identifier (see above)
        retract=RetractMethod.cap_cancel,
    )
    settings_model: ClassVar[type[TargetSettings]] = CapSettings
    credential_names: ClassVar[tuple[str, ...]] = (SECRET_NAME,)

    def __init__(self, target: Target) -> None:
        super().__init__(target)
        if not isinstance(target.settings, CapSettings):
            raise TypeError(
                f"target '{target.name}' has {type(target.settings).__name__}; the cap channel "
                "needs CapSettings"
            )
        self.settings: CapSettings = target.settings
        self._http: aiohttp.ClientSession | None = None

    def render(self, version: AlertVersion) -> list[Post]:
        text = cap_document(version).decode("utf-8")
        return [
            Post(
                text=text,
                length=len(text),
                language=version.content.infos[0].language,
                extra={"identifier": version.identifier},
            )
        ]

    # --- HTTP ------------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"CAP hub target '{self.target.name}' ({safe_url(URL(self.settings.base_url))})"

    def _alert_url(self, identifier: str | None = None) -> str:
        url = f"{self.settings.base_url}/alerts"
        return url if identifier is None else f"{url}/{quote(identifier, safe='')}"

    def _secret(self) -> str:
        secret = self.target.credentials.get(SECRET_NAME)
        if secret is None or not secret.get_secret_value():
            raise AuthError(
                f"{self._where}: no {SECRET_NAME} is configured; give the target the hub's "
                f"{'password' if self.settings.auth == 'basic' else 'token'}"
            )
        return secret.get_secret_value()

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = guarded_session(
                allow_private=self.settings.allow_private_destinations,
                target=self.target.name,
                timeout_seconds=self.settings.timeout_seconds,
            )
        return self._http

    async def _call(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        body: bytes | None = None,
        write: bool,
        missing_ok: bool = False,
    ) -> Answer:
        destination = check_destination(
            url, allow_private=self.settings.allow_private_destinations, target=self.target.name
        )
        secret = self._secret()
        if self.settings.auth == "basic":
            # RFC 7617 by hand: aiohttp.BasicAuth is deprecated and its replacement is 3.14+.
            pair = f"{self.settings.username}:{secret}".encode()
            authorization = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            authorization = f"Bearer {secret}"
        answer = await request(
            self._session(),
            method,
            destination,
            where=self._where,
            write=write,
            body=body,
            headers={**headers, "Authorization": authorization},
        )
        if not (200 <= answer.status < 300 or (missing_ok and answer.status == 404)):
            hidden = [secret, authorization.split(" ", 1)[-1]]
            raise http_failure(answer, where=self._where, write=write, secrets=hidden)
        return answer

    def _receipt(self, identifier: str, answer: Answer) -> Receipt:
        try:
            data = json.loads(answer.body)
        except ValueError:
            data = None
        url = data.get("url") if isinstance(data, dict) else None
        return Receipt(
            channel=self.name,
            target=self.target.name,
            external_id=identifier,  # the CAP identifier is the message's id at every hub
            url=str(url) if url else self._alert_url(identifier),
            posted_at=datetime.now(UTC),
            extra={"identifier": identifier},
        )

    @staticmethod
    def _identifier(post: Post) -> str:
        identifier = post.extra.get("identifier")
        if not identifier:
            raise PermanentError("this post was not rendered by the cap channel: no identifier")
        return str(identifier)

    # --- the contract ----------------------------------------------------------------------

    async def publish(
        self,
        post: Post,
        key: str,
        *,
        reply_to: Receipt | None = None,
        recipient: str | None = None,
    ) -> Receipt:
        if recipient is not None:
            raise PermanentError(
                f"{self._where}: the cap channel publishes to its hub; it takes no recipient"
            )
        identifier = self._identifier(post)
        headers = {"Content-Type": CAP_MEDIA_TYPE, "Accept": "application/json"}
        if key.isascii() and key.isprintable() and " " not in key:
            headers[IDEMPOTENCY_HEADER] = key  # for hubs that also honour keys; harmless else
        answer = await self._call(
            "POST", self._alert_url(), headers, body=post.text.encode("utf-8"), write=True
        )
        return self._receipt(identifier, answer)

    async def find_published(
        self, post: Post, key: str, *, recipient: str | None = None
    ) -> Receipt | None:
        identifier = self._identifier(post)
        answer = await self._call(
            "GET",
            self._alert_url(identifier),
            {"Accept": CAP_MEDIA_TYPE},
            write=False,
            missing_ok=True,
        )
        return None if answer.status == 404 else self._receipt(identifier, answer)

    async def retract(self, receipt: Receipt, cancel: AlertVersion) -> Receipt:
        content = cancel.content
        if content.msg_type is MsgType.alert:
            raise PermanentError(
                f"{self._where}: {cancel.identifier} is a new Alert; CAP retracts with an Update "
                "or a Cancel that references the original"
            )
        referenced = {reference.split(",")[1] for reference in content.references}
        if receipt.external_id not in referenced:
            raise PermanentError(
                f"{self._where}: {content.msg_type.value} {cancel.identifier} does not reference "
                f"{receipt.external_id}, the message it should replace; add it to references"
            )
        [post] = self.render(cancel)
        return await self.publish(post, f"retract:{cancel.identifier}")

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
