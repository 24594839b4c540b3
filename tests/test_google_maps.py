"""GoogleMapsSearchBlock against the local Google Maps-style server (tests/support_google_maps.py):
paging, place details, errors without the key, time limits, the private-address rule and pinning, and
the two real exports that use it (run as exported, with the operator's environment keys).

Time: the googlemaps client retries 5xx answers and OVER_QUERY_LIMIT with growing sleeps until its
retry timeout (60 s by default); the fixture sets AGENTFLOW_GOOGLE_MAPS_RETRY_TIMEOUT=1, so a retry
test takes about a second, and every other test makes no retry at all.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support_blocks import credential as make_credential
from support_blocks import run_block
from support_google_maps import (
    TEST_MAPS_KEY,
    GoogleMapsStyleServer,
    _MapsHandler,
    ceo_finder_rules,
    expected_place,
)
from support_servers import ScriptedLLMServer

from agent_defs.engine import ReferenceEngine, RunOptions, RunStatus
from agent_defs.graph import load_graph_file
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.paths import shared_dir
from blocks import REGISTRY, Credentials, RunContext
from blocks.library.google_maps import DEFAULT_BASE_URL, GoogleMapsSearchBlock, Target, resolve_google_maps

EXPORTS = shared_dir() / "autogpt-agents"
LEAD_FINDER = EXPORTS / "agent_a548e507-09a7-4b30-909c-f63fcda10fff.json"
DECISION_MAKER = EXPORTS / "agent_6e16e65a-ad34-4108-b4fd-4a23fced5ea2.json"


@pytest.fixture
def maps(google_maps_server: GoogleMapsStyleServer, monkeypatch: pytest.MonkeyPatch) -> GoogleMapsStyleServer:
    google_maps_server.reset()
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_BASE_URL", google_maps_server.url)
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_RETRY_TIMEOUT", "1")
    for var in ("AGENTFLOW_GOOGLE_MAPS_API_KEY", "AGENTFLOW_GOOGLE_MAPS_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    return google_maps_server


def credential(secret: str) -> dict[str, Credentials]:
    return make_credential("google_maps", secret, cred_id="m")


def search(
    data: dict[str, Any],
    credentials: dict[str, Credentials] | None = None,
    allow_private: bool = True,
    block: GoogleMapsSearchBlock | None = None,
) -> list[tuple[str, Any]]:
    """The search block's outputs; with no credentials given, the server's key (`{}`: none at all)."""
    if credentials is None:
        credentials = credential(TEST_MAPS_KEY)
    return run_block(block or GoogleMapsSearchBlock(), data, credentials, allow_private)


def places(outputs: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    assert [pin for pin, _ in outputs] == ["place"] * len(outputs), outputs
    return [value for _, value in outputs]


def only_error(outputs: list[tuple[str, Any]]) -> str:
    assert [pin for pin, _ in outputs] == ["error"], outputs
    assert TEST_MAPS_KEY not in outputs[0][1]
    return str(outputs[0][1])


# --- searching ----------------------------------------------------------------------------------------
def test_the_block_is_autogpts() -> None:
    block = REGISTRY.get("f47ac10b-58cc-4372-a567-0e02b2c3d479")
    assert isinstance(block, GoogleMapsSearchBlock)
    described = block.describe()
    assert described["credentials"] == [
        {"input": "credentials", "provider": "google_maps", "type": "api_key"}
    ]
    assert set(described["inputs"]) == {"credentials", "query", "radius", "max_results"}
    assert described["outputs"] == {"error": "string", "place": "object"}
    assert block.make_input({"query": "q"}).model_dump(exclude={"credentials"}) == {
        "query": "q",
        "radius": 5000,
        "max_results": 20,
    }


def test_pages_through_the_text_search_and_fetches_each_places_details(maps: GoogleMapsStyleServer) -> None:
    outputs = search({"query": "coffee roasters", "radius": 1234, "max_results": 60})
    assert places(outputs) == [expected_place("coffee roasters", i) for i in range(1, 46)]
    searches = [r["params"] for r in maps.requests if r["path"].endswith("/textsearch/json")]
    assert len(searches) == 3  # 45 results: pages of 20, 20 and 5
    assert searches[0]["query"] == "coffee roasters" and searches[0]["radius"] == "1234"
    assert "pagetoken" not in searches[0] and all(s.get("pagetoken") for s in searches[1:])
    assert maps.paths().count("details") == 45
    assert {r["params"]["key"] for r in maps.requests} == {TEST_MAPS_KEY}
    # A place without phone or website (every third) gets "" like AutoGPT's .get(..., "").
    assert outputs[2][1]["phone"] == "" and outputs[2][1]["website"] == ""


def test_stops_at_max_results_mid_page(maps: GoogleMapsStyleServer) -> None:
    outputs = search({"query": "bakeries", "max_results": 25})
    assert places(outputs) == [expected_place("bakeries", i) for i in range(1, 26)]
    assert maps.paths() == ["textsearch"] + ["details"] * 20 + ["textsearch"] + ["details"] * 5


def test_fewer_results_than_asked_and_no_results(maps: GoogleMapsStyleServer) -> None:
    maps.counts["gyms"] = 4
    assert places(search({"query": "gyms", "max_results": 20})) == [
        expected_place("gyms", i) for i in range(1, 5)
    ]
    assert search({"query": "zero results here"}) == []  # AutoGPT yields nothing either


def test_input_limits_are_autogpts() -> None:
    block = GoogleMapsSearchBlock()
    for bad in ({"radius": 0}, {"radius": 50001}, {"max_results": 0}, {"max_results": 61}):
        with pytest.raises(ValueError):
            block.make_input({"query": "q", **bad})


# --- errors ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "key", "expected"),
    [
        ("cafes", "AIzaSomebodyElsesKey", "REQUEST_DENIED (The provided API key is invalid.)"),
        ("denied cafes", TEST_MAPS_KEY, "REQUEST_DENIED (This API project is not authorized"),
        ("broken details", TEST_MAPS_KEY, "the API answered NOT_FOUND"),
        ("redirect", TEST_MAPS_KEY, "HTTP Error: 302"),
        ("cafes", "not-a-maps-key", "Invalid API key provided."),
    ],
)
def test_api_errors_are_one_error_output(
    maps: GoogleMapsStyleServer, query: str, key: str, expected: str
) -> None:
    error = only_error(search({"query": query, "max_results": 5}, credential(key)))
    assert error.startswith("Google Maps search failed: ") and expected in error
    assert key not in error
    if query == "redirect":  # not followed
        assert maps.paths() == ["textsearch"]


def test_a_transport_error_names_the_endpoint_but_not_the_key(maps: GoogleMapsStyleServer) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), _MapsHandler)
    url = f"http://127.0.0.1:{closed.server_address[1]}"
    closed.server_close()
    secret = json.dumps({"api_key": TEST_MAPS_KEY, "base_url": url})
    error = only_error(search({"query": "cafes"}, credential(secret)))
    assert f"could not reach {url}" in error
    assert "key=***" in error  # requests names the URL, query string and all; the key is scrubbed


def test_server_errors_are_retried_only_until_the_retry_timeout(
    maps: GoogleMapsStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_RETRY_TIMEOUT", "0.4")
    for query in ("server error", "over limit"):
        maps.reset()
        started = time.monotonic()
        error = only_error(search({"query": query}))
        assert time.monotonic() - started < 5
        assert "no successful answer in time" in error and "0.4s retry timeout" in error
        assert len(maps.requests) >= 2  # retried


def test_a_slow_answer_hits_the_read_timeout(
    maps: GoogleMapsStyleServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_TIMEOUT", "0.2")
    maps.slow_seconds = 1.0
    started = time.monotonic()
    assert "no successful answer in time" in only_error(search({"query": "slow cafes"}))
    assert time.monotonic() - started < 1.0
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_TIMEOUT", "soon")
    assert "AGENTFLOW_GOOGLE_MAPS_TIMEOUT must be a number" in only_error(search({"query": "cafes"}))


# --- key and base URL ---------------------------------------------------------------------------------
def test_key_and_base_url_sources(maps: GoogleMapsStyleServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The operator's key serves a node without a credential...
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_API_KEY", TEST_MAPS_KEY)
    assert len(places(search({"query": "pubs", "max_results": 2}, credentials={}))) == 2
    # ...but never a node with one: the credential's key is used.
    error = only_error(search({"query": "pubs"}, credential("AIzaSomebodyElsesKey")))
    assert "The provided API key is invalid" in error
    # A JSON credential brings its own base URL (the environment's is not used).
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_BASE_URL", "http://192.0.2.1:9")
    secret = json.dumps({"api_key": TEST_MAPS_KEY, "base_url": maps.url + "/"})
    assert len(places(search({"query": "pubs", "max_results": 1}, credential(secret)))) == 1
    monkeypatch.delenv("AGENTFLOW_GOOGLE_MAPS_API_KEY")
    error = only_error(search({"query": "pubs"}, credentials={}))
    assert "no API key" in error and "AGENTFLOW_GOOGLE_MAPS_API_KEY" in error


def test_a_non_default_base_url_on_a_private_address_is_refused(maps: GoogleMapsStyleServer) -> None:
    error = only_error(search({"query": "pubs"}, allow_private=False))  # the environment's loopback URL
    assert "127.0.0.1" in error and "allow_private_addresses" in error
    secret = json.dumps({"api_key": TEST_MAPS_KEY, "base_url": "http://maps.internal.test"})
    block = GoogleMapsSearchBlock()
    block._resolve = _resolving_to("10.1.2.3")  # type: ignore[method-assign]
    error = only_error(search({"query": "pubs"}, credential(secret), allow_private=False, block=block))
    assert "maps.internal.test" in error and "10.1.2.3" in error
    assert maps.requests == []


def test_googles_own_base_url_is_used_by_default_and_pinned_like_any_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AGENTFLOW_GOOGLE_MAPS_BASE_URL", raising=False)
    block = GoogleMapsSearchBlock()
    made: list[Target] = []
    looked_up: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        looked_up.append(host)
        return ["142.250.74.10"]  # a public address

    class Client:
        def places(self, **kwargs: Any) -> dict[str, Any]:
            return {"status": "ZERO_RESULTS", "results": []}

    def make_client(endpoint: Any, target: Target) -> Any:
        made.append(target)
        return Client()

    block._resolve = resolve  # type: ignore[method-assign]
    block._make_client = make_client  # type: ignore[method-assign]
    assert search({"query": "pubs"}, allow_private=False, block=block) == []
    assert looked_up == ["maps.googleapis.com"]
    assert made == [Target("https://142.250.74.10", "maps.googleapis.com", "maps.googleapis.com")]
    # The real client for it: the pinned URL, the time limits, no redirects.
    endpoint = resolve_google_maps(RunContext(credentials=credential(TEST_MAPS_KEY)))
    assert endpoint.base_url == DEFAULT_BASE_URL
    client = GoogleMapsSearchBlock()._make_client(endpoint, made[0])
    assert client.base_url == "https://142.250.74.10"
    assert client.requests_kwargs["headers"]["Host"] == "maps.googleapis.com"
    assert client.timeout == (10.0, 30.0) and client.retry_timeout == datetime.timedelta(seconds=60)
    assert client.requests_kwargs["allow_redirects"] is False


def _resolving_to(address: str) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    return resolve


def test_a_host_name_is_pinned_to_its_checked_address(maps: GoogleMapsStyleServer) -> None:
    port = maps.httpd.server_address[1]
    secret = json.dumps({"api_key": TEST_MAPS_KEY, "base_url": f"http://maps.proxy.test:{port}"})
    block = GoogleMapsSearchBlock()
    block._resolve = _resolving_to("127.0.0.1")  # type: ignore[method-assign]
    assert len(places(search({"query": "pubs", "max_results": 2}, credential(secret), block=block))) == 2
    assert {r["headers"]["host"] for r in maps.requests} == {f"maps.proxy.test:{port}"}


# --- https to a pinned address: TLS server name and certificate of the original host -----------------
def _self_signed(tmp_path: Path, host: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / f"{host}.pem", tmp_path / f"{host}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_maps(tmp_path: Path) -> Iterator[tuple[GoogleMapsStyleServer, Path, list[str]]]:
    """A Google Maps-style server on https://127.0.0.1 with a certificate for maps.proxy.test (also
    trusted as its own CA), recording the TLS server names clients ask for."""
    cert, key = _self_signed(tmp_path, "maps.proxy.test")
    server = GoogleMapsStyleServer()
    names: list[str] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(str(name))
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    server.start()
    yield server, cert, names
    server.stop()


def _trusting(ca: Path) -> GoogleMapsSearchBlock:
    """The block, with its client trusting `ca` (the client always verifies certificates)."""
    block = GoogleMapsSearchBlock()
    original = block._make_client
    block._resolve = _resolving_to("127.0.0.1")  # type: ignore[method-assign]

    def make_client(endpoint: Any, target: Target) -> Any:
        client = original(endpoint, target)
        client.requests_kwargs["verify"] = str(ca)
        return client

    block._make_client = make_client  # type: ignore[method-assign]
    return block


def test_https_to_a_pinned_address_verifies_the_original_host(
    tls_maps: tuple[GoogleMapsStyleServer, Path, list[str]], tmp_path: Path
) -> None:
    server, ca, names = tls_maps
    port = server.httpd.server_address[1]
    secret = json.dumps({"api_key": TEST_MAPS_KEY, "base_url": f"https://maps.proxy.test:{port}"})
    outputs = search({"query": "pubs", "max_results": 2}, credential(secret), block=_trusting(ca))
    assert places(outputs) == [expected_place("pubs", i) for i in (1, 2)]
    assert set(names) == {"maps.proxy.test"}
    assert {r["headers"]["host"] for r in server.requests} == {f"maps.proxy.test:{port}"}
    # A certificate for another host is refused.
    other, _ = _self_signed(tmp_path, "other.test")
    secret = json.dumps({"api_key": TEST_MAPS_KEY, "base_url": f"https://other.test:{port}"})
    error = only_error(search({"query": "pubs"}, credential(secret), block=_trusting(other)))
    assert "could not reach https://other.test" in error


# --- the exports --------------------------------------------------------------------------------------
def _run_both_ways(path: Path, inputs: dict[str, Any], before: Any = None) -> tuple[Any, dict[str, Any]]:
    """The export as exported (no credential references: the operator's environment keys serve), on
    the reference engine and as a compiled Dagster job; `before()` runs before each."""
    from dagster import DagsterInstance

    graph = load_graph_file(path)
    if before is not None:
        before()
    reference = ReferenceEngine().run_sync(
        graph, inputs, RunOptions(settings={"allow_private_addresses": True})
    )
    if before is not None:
        before()
    with DagsterInstance.ephemeral() as instance:
        job = compile_graph(graph, console_log_level="ERROR")
        run = job.execute_in_process(run_config={"inputs": inputs}, instance=instance, raise_on_error=False)
        compiled = read_run_summary(instance, run.run_id)
    return reference, compiled


@pytest.fixture
def operator_env(maps: GoogleMapsStyleServer, monkeypatch: pytest.MonkeyPatch) -> GoogleMapsStyleServer:
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_API_KEY", TEST_MAPS_KEY)
    monkeypatch.setenv("AGENTFLOW_ALLOW_PRIVATE_ADDRESSES", "1")
    return maps


def test_lead_finder_export(operator_env: GoogleMapsStyleServer) -> None:
    inputs = {
        "What business type you want to look for?": "Coffee Roasters",
        "Where do you want to search?": "Leith",
    }
    reference, compiled = _run_both_ways(LEAD_FINDER, inputs)
    assert reference.status is RunStatus.COMPLETED, reference.error
    assert reference.node_error_count == 0, [e.error for e in reference.executions if e.error]
    expected = [expected_place("Coffee Roasters in Leith", i) for i in (1, 2, 3)]  # "Number of Results": 3

    def na(value: Any) -> str:  # an empty field takes the graph's "N/A" branch
        return str(value) if value not in ("", None) else "N/A"

    want = {
        "Name": [p["name"] for p in expected],
        "Address": [p["address"] for p in expected],
        "Phone Number": [na(p["phone"]) for p in expected],
        "Rating": [str(p["rating"]) for p in expected],
        "Number of Reviews": [str(p["reviews"]) for p in expected],
        "Website": [na(p["website"]) for p in expected],
    }
    assert {k: sorted(v) for k, v in reference.outputs.items()} == {k: sorted(v) for k, v in want.items()}
    assert compiled["status"] == "COMPLETED", compiled
    assert {k: sorted(v) for k, v in compiled["outputs"].items()} == {k: sorted(v) for k, v in want.items()}
    radius = {
        r["params"].get("radius") for r in operator_env.requests if r["path"].endswith("textsearch/json")
    }
    assert radius == {"50000"}  # the export's "Search Distance (metres)"
    everything = json.dumps([reference.to_json(), compiled], default=str)
    assert TEST_MAPS_KEY not in everything


def test_decision_maker_lead_finder_export(
    operator_env: GoogleMapsStyleServer,
    llm_server: ScriptedLLMServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTFLOW_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AGENTFLOW_LLM_API_KEY", "sk-test-maps-llm")
    monkeypatch.setenv("AGENTFLOW_LLM_TIMEOUT", "5")
    want = {"Results": [f"Name: Owner {i}\nPosition: CEO" for i in (1, 2, 3)]}
    asked: list[int] = []

    def script() -> None:
        # Each business: the CEO finder asks, calls its Web Search sub-agent, then answers.
        asked.append(sum("Who owns business" in json.dumps(r["body"]) for r in llm_server.requests))
        llm_server.reset()
        for match, replies in ceo_finder_rules():
            llm_server.script(match, *replies)

    reference, compiled = _run_both_ways(DECISION_MAKER, {}, script)
    script()
    assert asked[1:] == [6, 6]  # per business: its Web Search sub-agent's prompt, the answer after it
    assert reference.status is RunStatus.COMPLETED, reference.error
    assert reference.node_error_count == 0, [e.error for e in reference.executions if e.error]
    assert {k: sorted(v) for k, v in reference.outputs.items()} == want
    assert compiled["status"] == "COMPLETED", compiled
    assert {k: sorted(v) for k, v in compiled["outputs"].items()} == want
    searches = [r["params"] for r in operator_env.requests if r["path"].endswith("textsearch/json")]
    assert {(s["query"], s["radius"]) for s in searches} == {("coffee roasters in Edinburgh", "10000")}
    llm_server.reset()


def test_concurrent_searches_do_not_block_the_event_loop(maps: GoogleMapsStyleServer) -> None:
    """The client runs in a worker thread: two slow searches overlap instead of queueing."""
    maps.slow_seconds = 0.5
    block = GoogleMapsSearchBlock()

    async def both() -> list[list[tuple[str, Any]]]:
        async def one(query: str) -> list[tuple[str, Any]]:
            ctx = RunContext(
                settings={"allow_private_addresses": True}, credentials=credential(TEST_MAPS_KEY)
            )
            return [o async for o in block.run(block.make_input({"query": query, "max_results": 1}), ctx)]

        return list(await asyncio.gather(one("slow a"), one("slow b")))

    started = time.monotonic()
    a, b = asyncio.run(both())
    assert time.monotonic() - started < 0.95
    assert [pin for pin, _ in a + b] == ["place", "place"]
