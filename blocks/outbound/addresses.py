"""Which addresses an outbound connection may go to, and pinning a URL to a checked address.

A host is resolved once; every address it resolves to is checked (private, loopback, link-local,
multicast, reserved, unspecified and other non-global addresses are refused, also when carried inside
IPv6: IPv4-mapped, NAT64, 6to4, Teredo) unless the operator allows private addresses; the connection
then goes to one of those checked addresses, so a second DNS answer cannot swap the target.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> every address the host resolves to, as text. Self-tests and tests pass their own.
Resolver = Callable[[str, int], Awaitable[list[str]]]
# address -> True when a connection to it is refused (unless private addresses are allowed). The default
# is `is_blocked_address`; tests pass their own (e.g. one where a loopback alias stands for a public
# address, so that nothing a test connects to ever leaves the machine).
AddressRule = Callable[[IPAddress], bool]

PUBLIC_TEST_ADDRESS = "93.184.215.14"  # example.com's: a public address (data for checks: never connected to)
PRIVATE_TEST_ADDRESS = "10.0.0.7"
ALLOW_PRIVATE_HINT = "an operator may set allow_private_addresses to permit this"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RequestRefused(ValueError):
    """The URL may not be requested (bad scheme, unresolvable or non-public host, unscoped credential)."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, Teredo server side), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_blocked_address(ip: IPAddress) -> bool:
    """True for any address that is not a plain public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            return is_blocked_address(inner)
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def normalise_url(url: str) -> httpx.URL:
    """An http(s) URL with a host (no scheme means http), or RequestRefused naming what is wrong."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise RequestRefused(f"invalid URL {url!r}: {exc}") from exc
    if parsed.scheme not in ("http", "https"):
        raise RequestRefused(f"URL scheme {parsed.scheme!r} is not allowed; use http or https")
    if not parsed.host:
        raise RequestRefused(f"URL {url!r} has no host")
    return parsed


def default_port(scheme: str) -> int:
    return 443 if scheme in ("https", "wss") else 80


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, lower-case host, effective port): what "the same origin" compares."""
    return (url.scheme, url.host.lower(), url.port or default_port(url.scheme))


async def system_resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, from the system resolver."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def fixed_resolve(address: str = PUBLIC_TEST_ADDRESS) -> Resolver:
    """Name resolution for self-tests: every host resolves to `address`."""

    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    return resolve


@dataclass(frozen=True)
class OutboundPolicy:
    """How one block execution connects out: its resolver, whether private addresses are allowed
    (the operator's setting; `AGENTFLOW_ALLOW_PRIVATE_ADDRESSES` feeds `allow_private_addresses`) and
    which addresses are refused (`is_blocked_address`; tests give their own rule)."""

    resolve: Resolver = system_resolve
    allow_private: bool = False
    is_blocked: AddressRule = is_blocked_address

    @classmethod
    def for_settings(
        cls,
        settings: object,
        resolve: Resolver = system_resolve,
        is_blocked: AddressRule = is_blocked_address,
    ) -> OutboundPolicy:
        get = getattr(settings, "get", None)
        return cls(resolve, bool(get("allow_private_addresses")) if get is not None else False, is_blocked)

    async def checked_address(self, host: str, port: int) -> IPAddress:
        """Resolve `host` once and check every answer; the address to connect to (RequestRefused)."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [literal]
        else:
            try:
                addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await self.resolve(host, port)]
            except (OSError, UnicodeError, ValueError) as exc:
                raise RequestRefused(f"cannot resolve host {host!r}: {exc}") from exc
            if not addresses:
                raise RequestRefused(f"host {host!r} resolves to no address")
        if not self.allow_private:
            for ip in addresses:
                if self.is_blocked(ip):
                    raise RequestRefused(
                        f"refusing to request host {host!r}: it resolves to {ip}, a private, loopback, "
                        f"link-local or otherwise non-public address ({ALLOW_PRIVATE_HINT})"
                    )
        # One address, and IPv4 first: a pinned connection has no fallback to the next address, and a
        # name like localhost answers ::1 first while many servers listen on IPv4 only.
        return next((ip for ip in addresses if ip.version == 4), addresses[0])

    async def pin(self, url: httpx.URL) -> tuple[httpx.URL, str | None]:
        """`url` with its host replaced by a checked address, and the TLS server name to keep (https
        to a name); an IP literal URL is returned as it is."""
        ip = await self.checked_address(url.host, url.port or default_port(url.scheme))
        if url.host.strip("[]") == str(ip):
            return url, None
        return url.copy_with(host=str(ip)), url.host if url.scheme == "https" else None


async def pin_to_checked_address(
    url: httpx.URL, resolve: Resolver, allow_private: bool
) -> tuple[httpx.URL, str | None]:
    """`OutboundPolicy(resolve, allow_private).pin(url)`, for callers holding the two parts."""
    return await OutboundPolicy(resolve, allow_private).pin(url)


class ConnectsOut:
    """Mixed into a block (or a block's helper) that connects out: how its policy resolves names and
    which addresses it refuses. Tests replace these two seams on an instance
    (`block._resolve = fixed_resolve(...)`, `block._is_blocked = ...`)."""

    async def _resolve(self, host: str, port: int) -> list[str]:
        return await system_resolve(host, port)

    def _is_blocked(self, ip: IPAddress) -> bool:
        return is_blocked_address(ip)

    def outbound_policy(self, settings: object) -> OutboundPolicy:
        """The operator's policy (`allow_private_addresses` in `settings`) with this object's seams."""
        return OutboundPolicy.for_settings(settings, self._resolve, self._is_blocked)
