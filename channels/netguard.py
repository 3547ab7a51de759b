"""Outbound HTTP to partner systems without reaching inside our own network.

A webhook or CAP hub URL is typed in by an administrator, and a partner controls its own DNS.
Either could point the service at 127.0.0.1, the cloud metadata address 169.254.169.254, or a
database on the private network (server-side request forgery). So, unless a target's settings
allow private destinations:

- a URL whose host is an IP literal is checked before any request (`check_destination`);
- a host name is resolved by `GuardedResolver` with the event loop's getaddrinfo, and refused if
  ANY answer is loopback, private, link-local, multicast, reserved, unspecified or otherwise not
  publicly routable (IPv4 inside IPv6, as IPv4-mapped, 6to4 or NAT64, is judged by the IPv4);
- the connection goes to the checked addresses themselves: the resolver hands aiohttp numeric
  results, so no second lookup can swap in another address (DNS rebinding);
- redirects are never followed (`request` sends allow_redirects=False), proxies from the
  environment are not used (trust_env=False).

A refusal is `DestinationRefused`, a PermanentError: retrying cannot make the address public.
`request` also maps transport failures onto the ChannelError tree: nothing sent is transient;
a write that may have reached the partner is ambiguous.
"""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from multidict import CIMultiDictProxy
from yarl import URL

from channels.base import AmbiguousError, ChannelError, PermanentError, TransientError

__all__ = [
    "MAX_ANSWER_BYTES",
    "Answer",
    "DestinationRefused",
    "GuardedResolver",
    "check_destination",
    "guarded_session",
    "refusal_reason",
    "request",
    "safe_url",
]

IPAddress = IPv4Address | IPv6Address
GetAddrInfo = Callable[..., Awaitable[list[tuple[Any, ...]]]]

# Partner answers are read up to this size: enough for any receipt or error, bounded so a
# misbehaving partner cannot fill our memory.
MAX_ANSWER_BYTES: Final = 1 << 20

_NAT64: Final = ip_network("64:ff9b::/96")  # RFC 6052 well-known prefix: last 32 bits are IPv4
# Hosts made only of numbers, e.g. "2130706433", "127.1", "0x7f.1": socket libraries read these
# as IPv4 addresses in legacy forms, so they must be judged as addresses, never looked up.
_NUMERIC_HOST: Final = re.compile(r"(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?", re.I)
_NUMERIC_FLAGS: Final = socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
_ADDRCONFIG: Final = socket.AI_ADDRCONFIG & getattr(socket, "AI_MASK", -1)


class DestinationRefused(PermanentError):
    """The destination is inside our own network and the target does not allow that; nothing
    was sent."""


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal_reason(address: IPAddress) -> str | None:
    """Why `address` is not a public destination ("loopback", "private", ...), or None."""
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal_reason(embedded)
            return None if inner is None else f"{inner} (IPv4 {embedded} inside IPv6)"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("site-local", isinstance(address, IPv6Address) and address.is_site_local),
        # Shared (100.64.0.0/10), benchmarking, documentation and the like.
        ("not publicly routable", not address.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


def _refused(target: str, host: str, address: str, reason: str) -> DestinationRefused:
    seen = host if host == address else f"{host} (which resolves to {address})"
    return DestinationRefused(
        f"target '{target}': refusing to connect to {seen}: it is a {reason} address, inside "
        "our own network, not a partner's. Fix the URL; or, only if this partner really is on "
        "your own network, set allow_private_destinations = true for this target",
        code="destination_refused",
    )


def safe_url(url: URL) -> str:
    """`url` without user info, query or fragment: fit for error messages and logs (partner
    URLs sometimes carry a token in the query)."""
    bare = url.with_query(None).with_fragment(None)
    return str(bare.with_user(None) if bare.absolute else bare)


def check_destination(url: str, *, allow_private: bool, target: str) -> URL:
    """`url` parsed, if it is an http(s) URL this target may call; else DestinationRefused.
    Host names are checked later, when `GuardedResolver` resolves them."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DestinationRefused(
            f"target '{target}': {safe_url(parsed)!r} is not an http:// or https:// URL with a "
            "host; fix the URL in the target's settings",
            code="destination_refused",
        )
    if allow_private:
        return parsed
    host = parsed.host
    try:
        address = ip_address(host)
    except ValueError:
        if _NUMERIC_HOST.fullmatch(host):
            raise _refused(target, host, host, "legacy numeric (not canonical IP)") from None
        return parsed
    reason = refusal_reason(address)
    if reason is not None:
        raise _refused(target, host, host, reason)
    return parsed


class GuardedResolver(AbstractResolver):
    """Resolves with the event loop's getaddrinfo and refuses names with a non-public address.

    The results are numeric, so aiohttp connects to exactly the addresses checked here."""

    def __init__(
        self, *, allow_private: bool, target: str, getaddrinfo: GetAddrInfo | None = None
    ) -> None:
        self.allow_private = allow_private
        self.target = target
        self._getaddrinfo = getaddrinfo  # tests answer for names no DNS server knows

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        lookup = self._getaddrinfo or asyncio.get_running_loop().getaddrinfo
        infos = await lookup(host, port, type=socket.SOCK_STREAM, family=family, flags=_ADDRCONFIG)
        results: list[ResolveResult] = []
        for info_family, _type, proto, _name, sockaddr in infos:
            if info_family not in (socket.AF_INET, socket.AF_INET6):
                continue
            numeric = str(sockaddr[0])
            if not self.allow_private:
                reason = refusal_reason(ip_address(numeric))
                if reason is not None:
                    # One bad answer refuses the name: a partner has no reason to mix them, and
                    # a rebinding attacker does.
                    raise _refused(self.target, host, numeric, reason)
            if info_family == socket.AF_INET6 and len(sockaddr) > 3 and sockaddr[3]:
                numeric = f"{numeric}%{sockaddr[3]}"  # a link-local address needs its scope
            results.append(
                ResolveResult(
                    hostname=host,
                    host=numeric,
                    port=int(sockaddr[1]),
                    family=info_family,
                    proto=proto,
                    flags=_NUMERIC_FLAGS,
                )
            )
        if not results:
            raise OSError(f"{host} has no IPv4 or IPv6 address")
        return results

    async def close(self) -> None:
        """Nothing to release: lookups run on the event loop's executor."""


def guarded_session(
    *, allow_private: bool, target: str, timeout_seconds: float
) -> aiohttp.ClientSession:
    """A session whose every connection goes through `GuardedResolver` (call inside a loop)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private=allow_private, target=target),
        # Look the name up for every request: each request is then checked against a fresh
        # answer, and a cache buys nothing at alert rates.
        use_dns_cache=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        trust_env=False,  # an environment proxy would connect on our behalf, unchecked
        headers={"User-Agent": "crisis-broadcaster"},
    )


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes  # at most MAX_ANSWER_BYTES

    def excerpt(self, limit: int = 300) -> str:
        """The start of the body as text, for an error message a person reads."""
        return self.body[:limit].decode("utf-8", "replace").strip()


async def request(
    session: aiohttp.ClientSession,
    method: str,
    url: URL,
    *,
    where: str,
    write: bool,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """One request, never redirected, with transport failures mapped onto ChannelError.

    `where` names the target for messages; `write` says whether the request may have had an
    effect at the partner once sent (a POST), which makes a lost answer ambiguous."""
    try:
        async with session.request(
            method, url, data=body, headers=headers, allow_redirects=False
        ) as response:
            data = await response.content.read(MAX_ANSWER_BYTES)
            return Answer(response.status, response.headers, data)
    except ChannelError:
        raise  # DestinationRefused from the resolver
    except aiohttp.InvalidURL:
        raise PermanentError(
            f"{where}: {safe_url(url)!r} is not a URL aiohttp will call; fix the target's URL",
            code="invalid_url",
        ) from None
    except aiohttp.ClientConnectorCertificateError:
        raise PermanentError(
            f"{where}: the TLS certificate of {url.host} is not valid; the partner must fix it",
            code="tls_certificate",
        ) from None
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
        # Never connected, so nothing was sent: safe to try again.
        raise TransientError(
            f"{where}: could not connect to {url.host}:{url.port} ({type(error).__name__})",
            code="connect",
        ) from None
    except (TimeoutError, aiohttp.ClientError) as error:
        message = f"{where}: the connection was lost or timed out ({type(error).__name__})"
        if write:
            raise AmbiguousError(
                message + " after the request was sent; it may have been delivered",
                code="lost",
            ) from None
        raise TransientError(message, code="lost") from None
