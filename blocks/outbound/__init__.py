"""The one outbound-connection policy every block follows (no Dagster here).

Every connection a block opens, whatever the client (httpx, requests, httplib2, aiohttp, the openai and
e2b SDKs), resolves its host once, checks every resolved address (`addresses.py`: private, loopback,
link-local, reserved, multicast and other non-public addresses, also inside IPv6, are refused unless
the operator allows private addresses), connects to that exact address while keeping the TLS server
name and the Host header, re-checks every redirect hop, and drops every credential-bearing header when
a redirect leaves the origin (`redirects.py`). Adapters: `transports.py` (httpx, sync and async, and
the client given to the openai SDK), `clients.py` (httplib2, requests, aiohttp), `proxy.py` (a checked
forward proxy for SDKs with their own connections: e2b).
"""

from blocks.outbound.addresses import (
    ALLOW_PRIVATE_HINT,
    PRIVATE_TEST_ADDRESS,
    PUBLIC_TEST_ADDRESS,
    AddressRule,
    ConnectsOut,
    IPAddress,
    OutboundPolicy,
    RequestRefused,
    Resolver,
    default_port,
    fixed_resolve,
    is_blocked_address,
    normalise_url,
    origin_of,
    pin_to_checked_address,
    system_resolve,
)
from blocks.outbound.clients import (
    HttpxAsHttplib2,
    checked_aiohttp_resolver,
    pinned_adapter_class,
    pinned_requests_session,
)
from blocks.outbound.proxy import CheckedProxy, checked_proxy
from blocks.outbound.redirects import CREDENTIAL_HEADERS, headers_for_next_hop, same_origin
from blocks.outbound.transports import (
    CheckedAsyncTransport,
    CheckedTransport,
    PinnedAddresses,
    checked_async_client,
)

__all__ = [
    "ALLOW_PRIVATE_HINT",
    "CREDENTIAL_HEADERS",
    "PRIVATE_TEST_ADDRESS",
    "PUBLIC_TEST_ADDRESS",
    "AddressRule",
    "CheckedAsyncTransport",
    "CheckedProxy",
    "CheckedTransport",
    "ConnectsOut",
    "HttpxAsHttplib2",
    "IPAddress",
    "OutboundPolicy",
    "PinnedAddresses",
    "RequestRefused",
    "Resolver",
    "checked_aiohttp_resolver",
    "checked_async_client",
    "checked_proxy",
    "default_port",
    "fixed_resolve",
    "headers_for_next_hop",
    "is_blocked_address",
    "normalise_url",
    "origin_of",
    "pin_to_checked_address",
    "pinned_adapter_class",
    "pinned_requests_session",
    "same_origin",
    "system_resolve",
]
