"""The outbound policy for client libraries that do not speak httpx: httplib2 (google-api-python-client),
requests (googlemaps, youtube-transcript-api) and aiohttp (discord.py). Each is imported on first use.
"""

from __future__ import annotations

import functools
import socket
from typing import Any

import httpx

from blocks.outbound.addresses import OutboundPolicy


class HttpxAsHttplib2:
    """The part of httplib2.Http's interface that googleapiclient and google-auth-httplib2 call,
    carried over an httpx client (give it one on a CheckedTransport: every request is then checked and
    pinned). Redirects are not followed."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        redirections: int = 5,
        connection_type: Any = None,
    ) -> tuple[Any, bytes]:
        import httplib2

        response = self._client.request(method, uri, content=body, headers=headers)
        info: dict[str, str] = dict(response.headers.items())
        info["status"] = str(response.status_code)
        return httplib2.Response(info), response.content

    def close(self) -> None:
        self._client.close()


@functools.cache
def pinned_adapter_class() -> type[Any]:
    """The requests adapter for URLs already pinned to a checked address (OutboundPolicy.pin): https
    connections to the address keep the original host's TLS server name and certificate check.
    (A class made on first use: requests is imported only by the blocks that need it.)"""
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        def __init__(self, server_hostname: str | None = None, **kwargs: Any) -> None:
            self.server_hostname = server_hostname
            super().__init__(**kwargs)

        def build_connection_pool_key_attributes(
            self, request: Any, verify: Any, cert: Any = None
        ) -> tuple[dict[str, Any], dict[str, Any]]:
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
            if self.server_hostname and host_params.get("scheme") == "https":
                pool_kwargs["server_hostname"] = self.server_hostname
                pool_kwargs["assert_hostname"] = self.server_hostname
            return host_params, pool_kwargs

    return PinnedAdapter


def pinned_requests_session(server_hostname: str | None) -> Any:
    """A requests session for pinned URLs: no environment proxies (nor .netrc), the pinned adapter."""
    import requests

    session = requests.Session()
    session.trust_env = False
    if server_hostname:
        session.mount("https://", pinned_adapter_class()(server_hostname))
    return session


def checked_aiohttp_resolver(policy: OutboundPolicy) -> Any:
    """An aiohttp resolver (for a TCPConnector) that resolves through the policy: every connection
    the client opens goes to the one checked address of its host."""
    from aiohttp.abc import AbstractResolver, ResolveResult

    class CheckedResolver(AbstractResolver):
        async def resolve(
            self, host: str, port: int = 0, family: int = socket.AF_INET
        ) -> list[ResolveResult]:
            ip = await policy.checked_address(host, port)
            return [
                ResolveResult(
                    hostname=host,
                    host=str(ip),
                    port=port,
                    family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]

        async def close(self) -> None:
            return None

    return CheckedResolver()
