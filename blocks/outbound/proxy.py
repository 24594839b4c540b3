"""A checked forward proxy for SDKs that open their own connections and cannot be handed a transport
(the e2b SDK: a Rust HTTP client with its own DNS resolver). The SDK is given `CheckedProxy.url_for
(policy)` as its proxy; every connection it asks for is resolved once through that OutboundPolicy,
checked, and opened to that checked address:

- `CONNECT host:port` (https): a tunnel to the checked address; TLS runs end to end between the SDK
  and the server, with the original host name (server name and certificate check untouched);
- an absolute-form request (`GET http://host:port/path`): sent to the checked address in origin form;
  request and answer both say `Connection: close` (one request per connection, so each request's host
  is checked, and the SDK's pool never reuses a connection the proxy closed).

One proxy serves the whole process, on 127.0.0.1 (a free port), from its own thread and event loop:
an SDK that caches a connection pool per proxy URL (e2b does, for the life of the process) then keeps
one pool per policy, not one per execution. Which policy applies is told by the proxy user name in the
URL (a random token per policy); a request without a known token is refused (407). A refused
connection is answered 403 with the reason, which is also kept (the last few per policy) so a block
can report it: the SDK's own error text may not carry it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import threading
from collections import deque

import httpx

from blocks.outbound.addresses import OutboundPolicy, RequestRefused

MAX_REQUEST_HEAD = 64 * 1024
CONNECT_TIMEOUT = 15.0
HEAD_TIMEOUT = 60.0  # an idle pooled connection that never sends a request is closed after this
KEPT_REFUSALS = 20
_HOP_BY_HOP = ("proxy-", "connection:", "keep-alive:")


def _authority(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RequestRefused(f"refusing to tunnel to {target!r}: not host:port")
    return host.strip("[]"), int(port)


def _proxy_user(head_lines: list[str]) -> str:
    for line in head_lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "proxy-authorization":
            scheme, _, encoded = value.strip().partition(" ")
            if scheme.lower() == "basic":
                with contextlib.suppress(ValueError):
                    return base64.b64decode(encoded).decode("utf-8", "replace").partition(":")[0]
    return ""


async def _relay_answer_head(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """The answer's head, saying `Connection: close` whatever the server said."""
    head = (await source.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    kept = [line for line in head[1:] if line and not line.lower().startswith(_HOP_BY_HOP)]
    sink.write("\r\n".join([head[0], *kept, "Connection: close", "", ""]).encode("latin-1"))


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
    def __init__(self, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._tokens: dict[OutboundPolicy, str] = {}
        self._policies: dict[str, OutboundPolicy] = {}
        self._refusals: dict[str, deque[tuple[int, str]]] = {}
        self._refused = 0
        # asyncio drops its own reference to a connection's task when the connection is lost; these keep
        # each one alive until it has closed both of its streams.
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._serve_forever, args=(started,), daemon=True)
        self._thread.start()
        started.wait()

    def _serve_forever(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_REQUEST_HEAD)
        )
        self.port = int(server.sockets[0].getsockname()[1])
        started.set()
        self._loop.run_forever()

    # --- what a block uses ------------------------------------------------------------------------
    def url_for(self, policy: OutboundPolicy) -> str:
        """The proxy URL that applies `policy` (the same URL for an equal policy)."""
        with self._lock:
            token = self._tokens.get(policy)
            if token is None:
                token = secrets.token_hex(16)
                self._tokens[policy] = token
                self._policies[token] = policy
                self._refusals[token] = deque(maxlen=KEPT_REFUSALS)
        return f"http://{token}:x@127.0.0.1:{self.port}"

    def refusal_mark(self) -> int:
        with self._lock:
            return self._refused

    def refusals_since(self, policy: OutboundPolicy, mark: int) -> list[str]:
        """The reasons of connections refused under `policy` after `refusal_mark()` gave `mark`."""
        with self._lock:
            token = self._tokens.get(policy, "")
            return [reason for seq, reason in self._refusals.get(token, ()) if seq > mark]

    # --- serving ----------------------------------------------------------------------------------
    def _note_refusal(self, token: str, reason: str) -> None:
        with self._lock:
            self._refused += 1
            if token in self._refusals:
                self._refusals[token].append((self._refused, reason))

    @staticmethod
    def _answer(writer: asyncio.StreamWriter, status: str, reason: str) -> None:
        body = reason.encode("utf-8", "replace")
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )

    async def _open(
        self, policy: OutboundPolicy, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        ip = await policy.checked_address(host, port)
        return await asyncio.wait_for(asyncio.open_connection(str(ip), port), self.connect_timeout)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # type: ignore[arg-type]
            task.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]
        upstream: asyncio.StreamWriter | None = None
        sending: asyncio.Future[None] | None = None
        try:
            try:
                head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)).decode("latin-1")
                lines = head.split("\r\n")
                method, target, version = lines[0].split(" ", 2)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, TimeoutError):
                return
            token = _proxy_user(lines[1:])
            with self._lock:
                policy = self._policies.get(token)
            if policy is None:
                self._answer(writer, "407 Proxy Authentication Required", "unknown proxy user")
                return
            try:
                if method.upper() == "CONNECT":
                    up_reader, upstream = await self._open(policy, *_authority(target))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                else:
                    url = httpx.URL(target)
                    if url.scheme != "http" or not url.host:
                        raise RequestRefused(f"refusing to proxy {target!r}: not an absolute http URL")
                    up_reader, upstream = await self._open(policy, url.host, url.port or 80)
                    headers = [
                        line for line in lines[1:] if line and not line.lower().startswith(_HOP_BY_HOP)
                    ]
                    path = url.raw_path.decode("ascii") or "/"
                    request_head = [f"{method} {path} {version}", *headers, "Connection: close", "", ""]
                    upstream.write("\r\n".join(request_head).encode("latin-1"))
            except RequestRefused as exc:
                self._note_refusal(token, str(exc))
                self._answer(writer, "403 Forbidden", str(exc))
                return
            except (OSError, TimeoutError, httpx.InvalidURL) as exc:
                self._answer(
                    writer, "502 Bad Gateway", f"cannot connect to {target}: {type(exc).__name__}: {exc}"
                )
                return
            await writer.drain()
            sending = asyncio.ensure_future(_pipe(reader, upstream))
            if method.upper() != "CONNECT":
                await _relay_answer_head(up_reader, writer)
            await _pipe(up_reader, writer)  # the answer ends the exchange
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if sending is not None:
                sending.cancel()
                with contextlib.suppress(BaseException):
                    await sending
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()


_shared: tuple[int, CheckedProxy] | None = None
_shared_lock = threading.Lock()


def checked_proxy() -> CheckedProxy:
    """The process's proxy, started on first use (and again in a forked child: its thread is gone)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] != os.getpid():
            _shared = (os.getpid(), CheckedProxy())
        return _shared[1]
