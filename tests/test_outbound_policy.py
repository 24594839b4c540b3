"""The one outbound-connection policy (blocks/outbound) under hostile DNS and hostile redirects.

DNS rebinding: a name that answers an allowed address when it is checked and 127.0.0.1 when a client
resolves it again at connect time must never reach the server on 127.0.0.1 (the "victim"), whatever the
client: httpx (sync and async), aiohttp, requests (googlemaps), httplib2 (google-api-python-client),
the openai client of the LLM blocks, and the e2b SDK. `RebindingDNS` plays that name as the system
resolver (socket.getaddrinfo, which httpx, requests and the blocks' default resolver use); the e2b SDK
resolves names with its own (Rust) resolver, so there the checked answer comes from the block's resolver
hook and the name is `localhost`, which any other resolver answers with 127.0.0.1.

Nothing here connects outside loopback (the autouse `loopback_only` guard refuses and reports any other
target). The allowed answer is the loopback alias CHECKED_ADDRESS (127.0.0.2): the policies and blocks
under test are given the address rule `blocked_except_alias` (`OutboundPolicy(is_blocked=...)`, a block's
`_is_blocked`), which is `is_blocked_address` except that this one alias passes as public, while
127.0.0.1 stays refused. A harmless "checked" server listens on CHECKED_ADDRESS at the victim's port:
a client pinned to the checked address reaches it; a client that resolves the name again reaches the
victim. Public addresses (PUBLIC_TEST_ADDRESS) appear only as data for the address rule.

Redirects: a redirect to another origin drops Authorization and every header that came from a
credential (observed by a local server); a redirect to a private address is refused; a host-scoped
credential with an empty host scope is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from support_blocks import credential, run_block
from support_e2b import E2B_TEST_KEY, E2BStyleServer
from support_google import GMAIL_TOKEN, GmailStyleServer
from support_google_maps import TEST_MAPS_KEY, GoogleMapsStyleServer
from support_servers import RecordingServer, ScriptedLLMServer, StandInHandler
from test_google_maps import _self_signed

from blocks.library.code_executor import ExecuteCodeBlock
from blocks.library.gmail import GmailReadBlock
from blocks.library.google_maps import GoogleMapsSearchBlock
from blocks.library.http import SendAuthenticatedWebRequestBlock
from blocks.library.llm import AITextGeneratorBlock
from blocks.outbound import (
    PUBLIC_TEST_ADDRESS,
    CheckedAsyncTransport,
    CheckedTransport,
    IPAddress,
    OutboundPolicy,
    RequestRefused,
    checked_aiohttp_resolver,
    checked_async_client,
    checked_proxy,
    fixed_resolve,
    headers_for_next_hop,
    is_blocked_address,
)

REBOUND_HOST = "rebind.test"
CHECKED_ADDRESS = "127.0.0.2"  # stands for a public address under `blocked_except_alias`
VICTIM_ADDRESS = "127.0.0.1"


def blocked_except_alias(ip: IPAddress) -> bool:
    """The tests' address rule: `is_blocked_address`, except that the loopback alias CHECKED_ADDRESS
    passes as public (so an allowed connection stays on this machine); 127.0.0.1 is still refused."""
    return ip != ipaddress.ip_address(CHECKED_ADDRESS) and is_blocked_address(ip)


def _policy(**kwargs: Any) -> OutboundPolicy:
    return OutboundPolicy(is_blocked=blocked_except_alias, **kwargs)


# --- the guard: no test here connects outside loopback ------------------------------------------------
_REAL_GETADDRINFO = socket.getaddrinfo  # taken before any test replaces it


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:  # a name: socket.connect resolves it with the system resolver
        try:
            infos = _REAL_GETADDRINFO(host, None)
        except OSError:
            return False
        return bool(infos) and all(_is_loopback(str(info[4][0])) for info in infos)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every connect() in this process (any thread: the checked proxy's too) to anything but a loopback
    address (127.0.0.0/8, ::1) or a Unix socket is refused and reported: the test then fails, even when
    the code under test swallowed the refusal. (The e2b SDK's own Rust sockets are not Python sockets;
    its connections go to the checked proxy on 127.0.0.1, which connects with Python sockets.)"""
    attempts: list[str] = []

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        if _is_loopback(str(address[0])):
            return True
        attempts.append(repr(address))
        return False

    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(sock: socket.socket, address: Any) -> None:
        if not allowed(sock, address):
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"test guard: {address!r} is not loopback")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        return real_connect_ex(sock, address) if allowed(sock, address) else errno.ECONNREFUSED

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield attempts
    assert attempts == [], f"connections outside loopback were attempted: {attempts}"


def test_the_guard_refuses_connections_outside_loopback(loopback_only: list[str]) -> None:
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError, match="test guard"):
        sock.connect((PUBLIC_TEST_ADDRESS, 9))
    with socket.socket() as sock:
        assert sock.connect_ex(("10.0.0.7", 9)) == errno.ECONNREFUSED
    assert loopback_only == [repr((PUBLIC_TEST_ADDRESS, 9)), repr(("10.0.0.7", 9))]
    loopback_only.clear()  # expected here


class RebindingDNS:
    """The first answer for REBOUND_HOST is CHECKED_ADDRESS (what a check sees); every later one is
    127.0.0.1 (what a client that resolves the name again would connect to)."""

    def __init__(self) -> None:
        self.lookups = 0
        self._lock = threading.Lock()

    def answer(self) -> str:
        with self._lock:
            self.lookups += 1
            return CHECKED_ADDRESS if self.lookups == 1 else VICTIM_ADDRESS


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> RebindingDNS:
    rebinding = RebindingDNS()
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        return real(rebinding.answer() if name == REBOUND_HOST else host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return rebinding


class _Recorder(StandInHandler):
    """Records every request; `/start` redirects to the server's `redirect_to`, anything else is answered
    with the server's `status`."""

    def _handle(self) -> None:
        server: Recorder = self.server.owner  # type: ignore[attr-defined]
        server.record({"path": self.path, "headers": self.header_dict(), "body": self.read_body()})
        if self.path.startswith("/start") and server.redirect_to:
            self.send_data(302, b"", "text/plain", {"Location": server.redirect_to})
        else:
            self.send_json(server.status, {"ok": True, "path": self.path})

    do_GET = do_POST = _handle


class Recorder(RecordingServer):
    def __init__(self, address: tuple[str, int] = (VICTIM_ADDRESS, 0), status: int = 200) -> None:
        super().__init__(_Recorder, address)
        self.redirect_to = ""
        self.status = status

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])


@pytest.fixture
def local() -> Iterator[Recorder]:
    server = Recorder()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def other() -> Iterator[Recorder]:
    server = Recorder()
    server.start()
    yield server
    server.stop()


@contextmanager
def checked_server(port: int, status: int = 200) -> Iterator[Recorder]:
    """The harmless server at the checked address (CHECKED_ADDRESS), on the victim's port."""
    server = Recorder((CHECKED_ADDRESS, port), status)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the address rule ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "64:ff9b::a00:7",  # NAT64 of 10.0.0.7
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo, client 10.0.0.1
    ],
)
def test_non_public_addresses_are_blocked_also_inside_ipv6(address: str) -> None:
    assert is_blocked_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [PUBLIC_TEST_ADDRESS, "2606:4700::1111", "64:ff9b::5db8:d70e"])
def test_public_addresses_pass(address: str) -> None:
    assert not is_blocked_address(ipaddress.ip_address(address))


# --- DNS rebinding, client by client -------------------------------------------------------------------
def test_the_rebinding_name_reaches_the_local_server_without_the_policy(
    dns: RebindingDNS, local: Recorder
) -> None:
    """The stage of the tests below is real: once checked, a client resolving again lands on 127.0.0.1;
    and the tests' rule lets the checked answer through but not that one."""
    assert not blocked_except_alias(ipaddress.ip_address(CHECKED_ADDRESS))
    assert blocked_except_alias(ipaddress.ip_address(VICTIM_ADDRESS))
    assert blocked_except_alias(ipaddress.ip_address("127.0.0.3")) and blocked_except_alias(
        ipaddress.ip_address("::1")
    )
    assert dns.answer() == CHECKED_ADDRESS  # the check's lookup
    assert httpx.get(f"http://{REBOUND_HOST}:{local.port}/", trust_env=False).status_code == 200
    assert len(local.requests) == 1


def _unreached(outcome: Any, local: RecordingServer) -> None:
    assert local.requests == [], f"the local server was reached: {outcome!r}"


def test_httpx_transports_connect_to_the_checked_address(dns: RebindingDNS, local: Recorder) -> None:
    url = f"http://{REBOUND_HOST}:{local.port}/"

    async def go() -> Any:
        async with checked_async_client(_policy(), timeout=5) as client:
            try:
                first = await client.get(url)
                second = await client.get(url)  # the same client: no second lookup
            except httpx.HTTPError as exc:
                return exc
            return first, second

    with checked_server(local.port) as checked:
        outcome = asyncio.run(go())
    _unreached(outcome, local)
    assert dns.lookups == 1
    assert not isinstance(outcome, Exception) and [r.status_code for r in outcome] == [200, 200], outcome
    assert [r["headers"]["host"] for r in checked.requests] == [f"{REBOUND_HOST}:{local.port}"] * 2
    # The synchronous transport (client libraries in a worker thread): a fresh lookup, now 127.0.0.1, is
    # refused rather than connected to.
    with (
        httpx.Client(transport=CheckedTransport(_policy()), timeout=5) as client,
        pytest.raises(RequestRefused, match=r"127\.0\.0\.1"),
    ):
        client.get(url)
    _unreached(None, local)


def test_aiohttp_through_the_checked_resolver_connects_to_the_checked_address(
    dns: RebindingDNS, local: Recorder
) -> None:
    import aiohttp

    async def go() -> Any:
        connector = aiohttp.TCPConnector(
            resolver=checked_aiohttp_resolver(_policy()), force_close=True, use_dns_cache=False
        )
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            outcomes = []
            for _ in range(2):  # the second connection resolves again: 127.0.0.1, refused
                try:
                    async with session.get(
                        f"http://{REBOUND_HOST}:{local.port}/", timeout=aiohttp.ClientTimeout(total=5)
                    ) as response:
                        outcomes.append(response.status)
                except (aiohttp.ClientError, TimeoutError, RequestRefused) as exc:
                    outcomes.append(exc)
            return outcomes

    with checked_server(local.port) as checked:
        outcomes = asyncio.run(go())
    _unreached(outcomes, local)
    # The first connection went to the checked address; the second resolved again: 127.0.0.1, refused.
    assert outcomes[0] == 200 and len(checked.requests) == 1, outcomes
    assert isinstance(outcomes[1], RequestRefused) and "127.0.0.1" in str(outcomes[1])


def test_https_to_a_pinned_address_keeps_the_server_name(tmp_path: Path) -> None:
    """The checked transport connects to the address, and TLS still names (and verifies) the host."""
    cert, key = _self_signed(tmp_path, "api.pinned.test")
    server = Recorder()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    names: list[str] = []
    context.sni_callback = lambda sock, name, ctx: names.append(str(name))
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    try:

        async def go() -> httpx.Response:
            inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=str(cert)))
            policy = OutboundPolicy(fixed_resolve("127.0.0.1"), allow_private=True)
            async with checked_async_client(policy, timeout=5, inner=inner) as client:
                return await client.get(f"https://api.pinned.test:{server.port}/x")

        assert asyncio.run(go()).json() == {"ok": True, "path": "/x"}
        assert names == ["api.pinned.test"]
        assert server.requests[0]["headers"]["host"] == f"api.pinned.test:{server.port}"
    finally:
        server.stop()


def test_requests_through_googlemaps_connect_to_the_checked_address(
    dns: RebindingDNS, google_maps_server: GoogleMapsStyleServer
) -> None:
    google_maps_server.reset()
    port = google_maps_server.httpd.server_address[1]
    secret = json.dumps({"api_key": TEST_MAPS_KEY, "base_url": f"http://{REBOUND_HOST}:{port}"})
    block = GoogleMapsSearchBlock()
    block._is_blocked = blocked_except_alias  # type: ignore[method-assign]
    with checked_server(port) as checked:
        outputs = run_block(block, {"query": "pubs"}, credential("google_maps", secret), allow_private=False)
    _unreached(outputs, google_maps_server)
    assert dns.lookups == 1
    assert checked.requests and checked.requests[0]["headers"]["host"] == f"{REBOUND_HOST}:{port}", outputs


def test_httplib2_through_the_gmail_client_connects_to_the_checked_address(
    dns: RebindingDNS, gmail_server: GmailStyleServer
) -> None:
    gmail_server.reset()
    port = gmail_server.httpd.server_address[1]
    secret = json.dumps({"access_token": GMAIL_TOKEN, "base_url": f"http://{REBOUND_HOST}:{port}"})
    block = GmailReadBlock()
    block._is_blocked = blocked_except_alias  # type: ignore[method-assign]
    with checked_server(port, status=503) as checked:
        outputs = run_block(
            block, {"query": "in:inbox"}, credential("google", secret, "oauth2"), allow_private=False
        )
    _unreached(outputs, gmail_server)
    assert outputs[0][0] == "error"
    assert checked.requests and checked.requests[0]["headers"]["host"] == f"{REBOUND_HOST}:{port}", outputs


def test_the_llm_blocks_openai_client_connects_to_the_checked_address(
    dns: RebindingDNS, llm_server: ScriptedLLMServer
) -> None:
    llm_server.reset()
    port = llm_server.httpd.server_address[1]
    secret = json.dumps(
        {"api_key": "sk-rebind-0000", "base_url": f"http://{REBOUND_HOST}:{port}/v1", "timeout": 5}
    )
    block = AITextGeneratorBlock()
    block._is_blocked = blocked_except_alias  # type: ignore[method-assign]
    with checked_server(port, status=503) as checked:  # a retryable failure: the block tries again
        outputs = run_block(
            block, {"prompt": "hello", "retry": 2}, credential("openai", secret), allow_private=False
        )
    _unreached(outputs, llm_server)
    assert [pin for pin, _ in outputs] == ["error"]
    assert [r["path"] for r in checked.requests] == ["/v1/chat/completions"], outputs
    # The retry resolved afresh, got 127.0.0.1, and was refused with the policy's reason.
    assert "127.0.0.1" in outputs[0][1] and "allow_private_addresses" in outputs[0][1]


def test_the_e2b_sdk_connects_only_to_checked_addresses(e2b_server: E2BStyleServer) -> None:
    """The block's resolver answers the checked address for `localhost`; the SDK, resolving `localhost`
    itself, would reach the stand-in on 127.0.0.1. Through the checked proxy it never does: it reaches
    the checked address."""
    e2b_server.reset()
    port = e2b_server.httpd.server_address[1]
    url = f"http://localhost:{port}"
    secret = json.dumps({"api_key": E2B_TEST_KEY, "api_url": url, "sandbox_url": url})
    block = ExecuteCodeBlock()
    block._resolve = fixed_resolve(CHECKED_ADDRESS)  # type: ignore[method-assign]
    block._is_blocked = blocked_except_alias  # type: ignore[method-assign]
    with checked_server(port, status=503) as checked:
        outputs = run_block(block, {"code": "print(1)"}, credential("e2b", secret), allow_private=False)
    _unreached(outputs, e2b_server)
    assert [pin for pin, _ in outputs] == ["error"]
    assert checked.requests and checked.requests[0]["headers"]["host"] == f"localhost:{port}", outputs
    # And a resolver that answers the loopback address is refused with the policy's reason.
    block._resolve = fixed_resolve("127.0.0.1")  # type: ignore[method-assign]
    [(pin, error)] = run_block(block, {"code": "print(1)"}, credential("e2b", secret), allow_private=False)
    assert pin == "error" and "127.0.0.1" in error and "allow_private_addresses" in error
    _unreached(error, e2b_server)


def test_the_sandbox_host_named_by_the_apis_answer_is_checked(
    e2b_server: E2BStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The API answers with a sandbox domain of its choosing: the hosts the SDK derives from it are
    resolved and checked by the policy like any other (here they do not resolve: refused)."""
    monkeypatch.delenv("AGENTFLOW_E2B_SANDBOX_URL")  # no sandbox URL: the SDK derives the hosts
    e2b_server.reset()
    e2b_server.answer_domain = "sandboxes.elsewhere.test"
    port = e2b_server.httpd.server_address[1]
    secret = json.dumps({"api_key": E2B_TEST_KEY, "api_url": f"http://e2b-api.test:{port}"})
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        if host == "e2b-api.test":
            return ["127.0.0.1"]
        raise OSError(f"no address for {host}")

    block = ExecuteCodeBlock()
    block._resolve = resolve  # type: ignore[method-assign]
    [(pin, error)] = run_block(block, {"code": "print(1)"}, credential("e2b", secret))
    assert e2b_server.created, "the API was reached through the policy"
    derived = [host for host in lookups if host.endswith(".sandboxes.elsewhere.test")]
    assert derived, lookups
    assert pin == "error" and f"cannot resolve host {derived[0]!r}" in error


def test_an_e2b_domain_that_is_not_a_host_name_is_refused(e2b_server: E2BStyleServer) -> None:
    e2b_server.reset()
    secret = json.dumps({"api_key": E2B_TEST_KEY, "domain": "evil.example/x?y=@127.0.0.1"})
    [(pin, error)] = run_block(
        ExecuteCodeBlock(),
        {"code": "print(1)"},
        credential("e2b", secret, cred_id="e2b-1"),
        allow_private=False,
    )
    assert pin == "error" and "credential e2b-1 (pin 'credentials')" in error and "not a host name" in error


def test_the_e2b_path_works_through_the_checked_proxy(e2b_server: E2BStyleServer) -> None:
    """With private addresses allowed (the stand-in is local), the whole session goes through the proxy."""
    e2b_server.reset()
    e2b_server.program("print(1)", {"stdout": ["1\n"]})
    secret = json.dumps({"api_key": E2B_TEST_KEY, "api_url": e2b_server.url, "sandbox_url": e2b_server.url})
    lookups: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    block = ExecuteCodeBlock()
    block._resolve = resolve  # type: ignore[method-assign]
    outputs = run_block(
        block, {"code": "print(1)"}, credential("e2b", secret.replace("127.0.0.1", "e2b.local"))
    )
    assert ("stdout_logs", "1\n") in outputs, outputs
    assert lookups and set(lookups) == {"e2b.local"}  # every connection was resolved by the policy
    assert e2b_server.created and {r["headers"]["host"].split(":")[0] for r in e2b_server.requests} == {
        "e2b.local"
    }


def test_repeated_executions_share_the_proxy_and_its_pools(e2b_server: E2BStyleServer) -> None:
    """The e2b SDK keeps a connection pool per proxy URL for the life of the process: one URL per
    policy, and pooled connections stay usable from one execution to the next."""
    e2b_server.reset()
    e2b_server.program("print(1)", {"stdout": ["1\n"]})
    secret = json.dumps({"api_key": E2B_TEST_KEY, "api_url": e2b_server.url, "sandbox_url": e2b_server.url})
    block = ExecuteCodeBlock()
    for _ in range(3):
        outputs = run_block(block, {"code": "print(1)"}, credential("e2b", secret))
        assert ("stdout_logs", "1\n") in outputs, outputs
    policy = OutboundPolicy(block._resolve, True)
    assert checked_proxy().url_for(policy) == checked_proxy().url_for(OutboundPolicy(block._resolve, True))
    assert checked_proxy().url_for(policy) != checked_proxy().url_for(OutboundPolicy(block._resolve, False))


def test_the_proxy_serves_only_its_policies(local: Recorder) -> None:
    """A client that does not name a policy (another process on the host) gets nothing through."""
    proxy_url = checked_proxy().url_for(OutboundPolicy(allow_private=True))
    anonymous = proxy_url.split("@", 1)[1]
    with httpx.Client(proxy=f"http://{anonymous}", trust_env=False, timeout=5) as client:
        assert client.get(f"{local.url}/x").status_code == 407
    assert local.requests == []
    with httpx.Client(proxy=proxy_url, trust_env=False, timeout=5) as client:
        assert client.get(f"{local.url}/x").json() == {"ok": True, "path": "/x"}
    [request] = local.requests
    assert "proxy-authorization" not in request["headers"]  # the token stays with the proxy


# --- redirects -------------------------------------------------------------------------------------------
SCOPED_SECRET = {"X-Api-Key": "sk-scoped-4242", "Authorization": "Bearer scoped-token-4242"}


def _authenticated(url: str, title: str = "127.0.0.1") -> list[tuple[str, Any]]:
    return run_block(
        SendAuthenticatedWebRequestBlock(),
        {"url": url, "method": "GET", "headers": {"X-Trace": "keep-me"}, "credentials": {"id": "hs"}},
        credential("http", json.dumps(SCOPED_SECRET), "host_scoped", cred_id="hs", title=title),
    )


def test_a_redirect_to_another_origin_drops_every_credential_header(local: Recorder, other: Recorder) -> None:
    local.redirect_to = f"http://127.0.0.1:{other.port}/landing"
    outputs = _authenticated(f"http://127.0.0.1:{local.port}/start")
    assert outputs == [("response", {"ok": True, "path": "/landing"})]
    [first] = local.requests
    assert first["headers"]["x-api-key"] == "sk-scoped-4242"
    [landed] = other.requests
    assert "x-api-key" not in landed["headers"] and "authorization" not in landed["headers"]
    assert landed["headers"]["x-trace"] == "keep-me"  # the user's own header goes on


def test_a_redirect_within_the_origin_keeps_the_credential_headers(local: Recorder) -> None:
    local.redirect_to = f"http://127.0.0.1:{local.port}/landing"
    assert _authenticated(f"http://127.0.0.1:{local.port}/start") == [
        ("response", {"ok": True, "path": "/landing"})
    ]
    assert [r["headers"]["x-api-key"] for r in local.requests] == ["sk-scoped-4242"] * 2


def test_an_empty_host_scope_is_refused_before_anything_is_sent(local: Recorder) -> None:
    [(pin, error)] = _authenticated(f"http://127.0.0.1:{local.port}/start", title="")
    assert pin == "error" and "credential hs (pin 'credentials') has no host scope" in error
    assert local.requests == []


def test_every_redirect_hop_is_checked_again() -> None:
    """A client following redirects through the checked transport: the hop to a name that resolves to a
    private address is refused before it is sent (the first hop's answer is the wire's, here)."""
    addresses = {"public.test": PUBLIC_TEST_ADDRESS, "internal.test": "10.0.0.7"}
    sent: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        return [addresses[host]]

    def wire(request: httpx.Request) -> httpx.Response:
        sent.append(str(request.url))
        return httpx.Response(302, headers={"Location": "http://internal.test/admin"})

    async def go() -> None:
        transport = CheckedAsyncTransport(OutboundPolicy(resolve), httpx.MockTransport(wire))
        async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
            await client.get("http://public.test/")

    with pytest.raises(RequestRefused, match=r"'internal\.test'.*10\.0\.0\.7"):
        asyncio.run(go())
    assert sent == [f"http://{PUBLIC_TEST_ADDRESS}/"]


def test_headers_for_the_next_hop() -> None:
    headers = {"Authorization": "a", "Cookie": "c", "X-Api-Key": "k", "Accept": "json"}
    here = httpx.URL("https://api.example.com/x")
    assert (
        headers_for_next_hop(headers, here, httpx.URL("https://API.example.com:443/y"), ["x-api-key"])
        == headers
    )
    for elsewhere in ("https://evil.example/", "http://api.example.com/", "https://api.example.com:8443/"):
        kept = headers_for_next_hop(headers, here, httpx.URL(elsewhere), ["X-API-KEY"])
        assert kept == {"Accept": "json"}, elsewhere
