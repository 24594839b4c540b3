"""A checked forward proxy for SDKs that open their own connections and cannot be handed a transport
(the e2b SDK: a Rust HTTP client with its own DNS resolver). The SDK is given `CheckedProxy.url` as
its proxy; every connection it asks for is resolved once through the execution's OutboundPolicy,
checked, and opened to that checked address:

- `CONNECT host:port` (https): a tunnel to the checked address; TLS runs end to end between the SDK
  and the server, with the original host name (server name and certificate check untouched);
- an absolute-form request (`GET http://host:port/path`): sent to the checked address in origin form,
  with `Connection: close` (one request per connection, so each request's host is checked).

A refused connection is answered 403 with the reason, which is also kept in `refusals` so the block can
report it (the SDK's own error text may not carry it). The proxy listens on 127.0.0.1 on a free port,
for one execution, and is closed with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

import httpx

from blocks.outbound.addresses import OutboundPolicy, RequestRefused

MAX_REQUEST_HEAD = 64 * 1024
CONNECT_TIMEOUT = 15.0
_HOP_BY_HOP = ("proxy-", "connection:", "keep-alive:")


def _authority(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RequestRefused(f"refusing to tunnel to {target!r}: not host:port")
    return host.strip("[]"), int(port)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            if sink.can_write_eof():
                sink.write_eof()


class CheckedProxy:
    def __init__(self, policy: OutboundPolicy, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.policy = policy
        self.connect_timeout = connect_timeout
        self.refusals: list[str] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CheckedProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_REQUEST_HEAD)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)

    def _refuse(self, writer: asyncio.StreamWriter, status: str, reason: str) -> None:
        body = reason.encode("utf-8", "replace")
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ip = await self.policy.checked_address(host, port)
        return await asyncio.wait_for(asyncio.open_connection(str(ip), port), self.connect_timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                method, target, version = head.split("\r\n", 1)[0].split(" ", 2)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                return
            try:
                if method.upper() == "CONNECT":
                    up_reader, upstream = await self._open(*_authority(target))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    url = httpx.URL(target)
                    if url.scheme != "http" or not url.host:
                        raise RequestRefused(f"refusing to proxy {target!r}: not an absolute http URL")
                    up_reader, upstream = await self._open(url.host, url.port or 80)
                    headers = [
                        line
                        for line in head.split("\r\n")[1:]
                        if line and not line.lower().startswith(_HOP_BY_HOP)
                    ]
                    path = url.raw_path.decode("ascii") or "/"
                    upstream.write(
                        "\r\n".join(
                            [f"{method} {path} {version}", *headers, "Connection: close", "", ""]
                        ).encode("latin-1")
                    )
            except RequestRefused as exc:
                self.refusals.append(str(exc))
                self._refuse(writer, "403 Forbidden", str(exc))
                return
            except (OSError, TimeoutError, httpx.InvalidURL) as exc:
                self._refuse(
                    writer, "502 Bad Gateway", f"cannot connect to {target}: {type(exc).__name__}: {exc}"
                )
                return
            await writer.drain()
            sending = asyncio.ensure_future(_pipe(reader, upstream))
            await _pipe(up_reader, writer)  # the answer ends the exchange
            sending.cancel()
            with contextlib.suppress(BaseException):
                await sending
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()
            self._writers.discard(writer)
