"""Partner destinations inside our own network are refused before any connection is made, unless
the target allows private destinations; the connection goes to the address that was checked."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from ipaddress import ip_address
from typing import Any

import pytest
from pydantic import SecretStr

from approvals.alert import Status
from channels.base import AmbiguousError, PermanentError, Target, TargetMode, TransientError
from channels.netguard import (
    DestinationRefused,
    GuardedResolver,
    check_destination,
    guarded_session,
    refusal_reason,
    request,
)
from channels.webhook import WebhookChannel, WebhookSettings
from tests.channels import samples

REFUSED = {
    "127.0.0.1": "loopback",
    "127.8.9.10": "loopback",
    "10.1.2.3": "private",
    "172.16.0.1": "private",
    "192.168.1.10": "private",
    "169.254.169.254": "link-local",  # cloud metadata
    "0.0.0.0": "unspecified",
    "224.0.0.1": "multicast",
    "240.0.0.1": "reserved",
    "100.64.0.1": "not publicly routable",  # carrier-grade NAT
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "fd12:3456:789a::1": "private",  # IPv6 unique local (ULA)
    "fc00::1": "private",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "::ffff:127.0.0.1": "loopback (IPv4 127.0.0.1 inside IPv6)",
    "::ffff:10.0.0.1": "private (IPv4 10.0.0.1 inside IPv6)",
    "::ffff:169.254.169.254": "link-local (IPv4 169.254.169.254 inside IPv6)",
    "2002:7f00:1::": "loopback (IPv4 127.0.0.1 inside IPv6)",  # 6to4
    "64:ff9b::a00:1": "private (IPv4 10.0.0.1 inside IPv6)",  # NAT64
}
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize(("address", "reason"), REFUSED.items())
def test_non_public_addresses_are_refused_with_the_reason(address: str, reason: str) -> None:
    assert refusal_reason(ip_address(address)) == reason


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "https://[::1]/hook",
        "http://[fd00::5]/",
        "http://[::ffff:192.168.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://127.1/",
        "http://0x7f.0.0.1/",
    ],
)
def test_ip_literal_urls_are_refused_before_any_lookup(url: str) -> None:
    with pytest.raises(DestinationRefused) as caught:
        check_destination(url, allow_private=False, target="partner")
    message = caught.value.message
    assert "target 'partner'" in message
    assert "allow_private_destinations" in message


@pytest.mark.parametrize("url", ["ftp://partner.example/x", "partner.example/hook", "http:///x"])
def test_only_http_urls_with_a_host(url: str) -> None:
    with pytest.raises(DestinationRefused, match="http"):
        check_destination(url, allow_private=True, target="partner")


def test_allowed_private_and_public_urls_pass() -> None:
    assert check_destination("http://127.0.0.1:9/x", allow_private=True, target="t").port == 9
    assert check_destination("https://8.8.8.8/x", allow_private=False, target="t").host == "8.8.8.8"
    # Names are judged when they are resolved.
    assert check_destination("https://partner.example/x", allow_private=False, target="t")


# --- resolving names -----------------------------------------------------------------------------


def _answers(*addresses: str) -> Any:
    async def getaddrinfo(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        infos: list[tuple[Any, ...]] = []
        for address in addresses:
            if ":" in address:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return infos

    return getaddrinfo


async def test_a_public_name_resolves_to_numeric_checked_addresses() -> None:
    resolver = GuardedResolver(
        allow_private=False, target="t", getaddrinfo=_answers("93.184.216.34", "2606:2800::1")
    )
    results = await resolver.resolve("partner.example", 443)
    assert [r["host"] for r in results] == ["93.184.216.34", "2606:2800::1"]
    # Numeric results: aiohttp connects to these exact addresses and never looks the name up
    # again, so a second DNS answer cannot swap in another address (rebinding).
    assert all(r["flags"] & socket.AI_NUMERICHOST for r in results)
    assert all(r["hostname"] == "partner.example" for r in results)


@pytest.mark.parametrize(
    "answers",
    [
        ("10.0.0.7",),
        ("93.184.216.34", "127.0.0.1"),  # one public answer does not launder a private one
        ("fd00::7",),
        ("::ffff:192.168.1.1",),
        ("fe80::1",),
    ],
)
async def test_a_name_with_any_private_answer_is_refused(answers: tuple[str, ...]) -> None:
    resolver = GuardedResolver(allow_private=False, target="t", getaddrinfo=_answers(*answers))
    with pytest.raises(DestinationRefused, match=r"partner\.example \(which resolves to"):
        await resolver.resolve("partner.example", 443)


async def test_private_answers_pass_when_the_target_allows_them() -> None:
    resolver = GuardedResolver(allow_private=True, target="t", getaddrinfo=_answers("10.0.0.7"))
    [result] = await resolver.resolve("intranet.example", 80)
    assert result["host"] == "10.0.0.7"


async def test_localhost_through_the_event_loops_resolver_is_refused() -> None:
    resolver = GuardedResolver(allow_private=False, target="t")
    with pytest.raises(DestinationRefused, match="loopback"):
        await resolver.resolve("localhost", 80, family=socket.AF_UNSPEC)


async def test_a_name_without_addresses_is_a_lookup_failure() -> None:
    resolver = GuardedResolver(allow_private=False, target="t", getaddrinfo=_answers())
    with pytest.raises(OSError, match="no IPv4 or IPv6"):
        await resolver.resolve("empty.example", 80)


# --- nothing connects ----------------------------------------------------------------------------


class _Listener:
    """A TCP server that only counts connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[_Listener]:
    server = _Listener()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_session_refuses_localhost_before_connecting(listener: _Listener) -> None:
    session = guarded_session(allow_private=False, target="t", timeout_seconds=2.0)
    url = check_destination(f"http://localhost:{listener.port}/", allow_private=False, target="t")
    try:
        with pytest.raises(DestinationRefused, match="loopback"):
            await request(session, "POST", url, where="t", write=True, body=b"{}")
    finally:
        await session.close()
    assert listener.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_webhook_channel_refuses_loopback_unless_allowed(
    listener: _Listener, host: str
) -> None:
    def channel(allow: bool) -> WebhookChannel:
        settings = WebhookSettings(
            name="partner",
            mode=TargetMode.exercise,
            url=f"http://{host}:{listener.port}/hook",
            timeout_seconds=2.0,
            allow_private_destinations=allow,
        )
        return WebhookChannel(Target(settings, {"signing_secret": SecretStr("s3cret-value")}))

    strict = channel(allow=False)
    [post] = strict.render(samples.version(status=Status.exercise))
    try:
        with pytest.raises(PermanentError, match="loopback"):
            await strict.publish(post, "k:1")
    finally:
        await strict.aclose()
    assert listener.connections == 0
    # The same target with private destinations allowed does connect (the listener hangs up,
    # so the outcome is ambiguous; what matters is that the connection was made).
    lenient = channel(allow=True)
    try:
        with pytest.raises((AmbiguousError, TransientError)):
            await lenient.publish(post, "k:1")
    finally:
        await lenient.aclose()
    assert listener.connections >= 1
