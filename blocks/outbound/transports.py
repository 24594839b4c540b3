"""httpx transports that connect only to checked addresses (sync and async), and clients built on them.

Each transport resolves a host once (per transport), checks every address, and sends each request to
the checked address; the Host header keeps the name (httpx sets it from the original URL) and so does
the TLS server name (`sni_hostname`). `only_origin` refuses any request to another origin (an SDK
that must talk to one API only). Redirects are never followed here: the clients have
`follow_redirects=False`; a caller that follows them re-enters the transport, so every hop is checked.
"""

from __future__ import annotations

import asyncio
import threading

import httpx

from blocks.outbound.addresses import OutboundPolicy, RequestRefused, origin_of

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=15.0)


class PinnedAddresses:
    """The checked address of each (host, port) one client talks to: resolved once, then reused."""

    def __init__(self, policy: OutboundPolicy, only_origin: httpx.URL | None = None) -> None:
        self.policy = policy
        self._only = origin_of(only_origin) if only_origin is not None else None
        self._pinned: dict[tuple[str, str, int], tuple[httpx.URL, str | None]] = {}
        self._lock = threading.Lock()

    def _key(self, url: httpx.URL) -> tuple[str, str, int]:
        key = origin_of(url)
        if self._only is not None and key != self._only:
            scheme, host, port = self._only
            raise RequestRefused(
                f"refusing to request {url.scheme}://{url.netloc.decode('ascii')}: this client only "
                f"requests {scheme}://{host}:{port}"
            )
        return key

    def _apply(self, url: httpx.URL, pinned: tuple[httpx.URL, str | None]) -> tuple[httpx.URL, str | None]:
        target, sni = pinned
        return url.copy_with(host=target.host), sni

    async def pin(self, url: httpx.URL) -> tuple[httpx.URL, str | None]:
        key = self._key(url)
        with self._lock:
            known = self._pinned.get(key)
        if known is None:
            known = await self.policy.pin(url.copy_with(path="/", query=None, fragment=None))
            with self._lock:
                known = self._pinned.setdefault(key, known)
        return self._apply(url, known)

    def pin_blocking(self, url: httpx.URL) -> tuple[httpx.URL, str | None]:
        """`pin` from synchronous code (a worker thread with no running event loop)."""
        key = self._key(url)
        with self._lock:
            known = self._pinned.get(key)
        if known is not None:
            return self._apply(url, known)
        return asyncio.run(self.pin(url))


def _pinned_request(request: httpx.Request, target: httpx.URL, sni: str | None) -> httpx.Request:
    request.url = target  # the Host header was set from the original URL
    if sni:
        request.extensions = {**request.extensions, "sni_hostname": sni}
    return request


class CheckedAsyncTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        policy: OutboundPolicy | PinnedAddresses,
        inner: httpx.AsyncBaseTransport | None = None,
        only_origin: httpx.URL | None = None,
    ) -> None:
        self.pins = policy if isinstance(policy, PinnedAddresses) else PinnedAddresses(policy, only_origin)
        self._inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target, sni = await self.pins.pin(request.url)
        return await self._inner.handle_async_request(_pinned_request(request, target, sni))

    async def aclose(self) -> None:
        await self._inner.aclose()


class CheckedTransport(httpx.BaseTransport):
    """The synchronous twin, for client libraries that run in a worker thread."""

    def __init__(
        self,
        policy: OutboundPolicy | PinnedAddresses,
        inner: httpx.BaseTransport | None = None,
        only_origin: httpx.URL | None = None,
    ) -> None:
        self.pins = policy if isinstance(policy, PinnedAddresses) else PinnedAddresses(policy, only_origin)
        self._inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target, sni = self.pins.pin_blocking(request.url)
        return self._inner.handle_request(_pinned_request(request, target, sni))

    def close(self) -> None:
        self._inner.close()


def checked_async_client(
    policy: OutboundPolicy,
    timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
    inner: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client for one execution: checked and pinned, no redirects, no environment proxies.
    It is what the openai SDK gets as `http_client`."""
    return httpx.AsyncClient(
        transport=CheckedAsyncTransport(policy, inner),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
