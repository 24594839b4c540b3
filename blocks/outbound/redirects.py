"""What follows a redirect: the headers that may be sent to the next hop.

A redirect that leaves the origin (scheme, host or port changes) drops every header that carries a
credential: Authorization, Proxy-Authorization and Cookie, and every header whose name the caller
says came from a credential (e.g. a host-scoped credential's X-Api-Key), whatever its name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

import httpx

from blocks.outbound.addresses import origin_of

CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return origin_of(a) == origin_of(b)


def headers_for_next_hop(
    headers: Mapping[str, str],
    current: httpx.URL,
    following: httpx.URL,
    credential_headers: Collection[str] = (),
) -> dict[str, str]:
    """`headers` as they may go to `following` after a redirect from `current`."""
    if same_origin(current, following):
        return dict(headers)
    dropped = CREDENTIAL_HEADERS | {name.lower() for name in credential_headers}
    return {name: value for name, value in headers.items() if name.lower() not in dropped}
