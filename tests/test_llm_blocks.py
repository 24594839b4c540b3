"""LLM and Jina-style blocks against the local servers (tests/support_servers.py), and the real AutoGPT
exports whose blocks are now all supported, on the reference engine and as compiled Dagster jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from pydantic import SecretStr
from support_airtable import AIRTABLE_TOKEN, AirtableServer
from support_airtable import WORKSPACE_ID as AIRTABLE_WORKSPACE_ID
from support_blocks import run_block, secret_free
from support_discord import TEST_DISCORD_TOKEN
from support_e2b import E2B_TEST_KEY, E2BStyleServer, domain_finder_llm_rules, script_domain_finder
from support_firecrawl import FIRECRAWL_KEY, FirecrawlServer
from support_google import (
    GMAIL_TOKEN,
    SUPPORT_AGENT_EXPORT,
    SUPPORT_DOCS_URL,
    SUPPORT_ESCALATION_EMAIL,
    USER_EMAIL,
    GmailStyleServer,
    meeting_prep_rules,
    newsletter_rules,
    support_agent_rules,
    support_ticket,
)
from support_google_maps import TEST_MAPS_KEY, GoogleMapsStyleServer, ceo_finder_rules
from support_media import (
    IDEOGRAM_KEY,
    MEDIUM_AUTHOR_ID,
    MEDIUM_KEY,
    REPLICATE_KEY,
    IdeogramServer,
    MediumServer,
    ReplicateServer,
)
from support_revid import REVID_KEY, RevidStyleServer, video_generator_rules
from support_seo import (
    DATAFORSEO_LOGIN,
    DATAFORSEO_PASSWORD,
    SEO_WRITER_BLOG,
    SEO_WRITER_EXPORT,
    WORDPRESS_TOKEN,
    DataForSeoServer,
    WordPressServer,
    script_seo_writer_programs,
    seo_writer_rules,
    with_local_wordpress,
)
from support_servers import JinaStyleServer, ScriptedLLMServer
from support_youtube import YouTubeStyleServer, script_search_answers

from agent_defs.engine import ReferenceEngine, RunOptions, RunStatus
from agent_defs.graph import Graph, load_graph_file
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.paths import shared_dir
from agent_defs.store.kv_data import SqliteKeyValueStore
from blocks import REGISTRY, BlockType, Credentials, RunContext
from blocks.library.basic import StoreValueBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.jina_search import ExtractWebsiteContentBlock, SearchTheWebBlock
from blocks.library.llm import (
    AIConversationBlock,
    AIListGeneratorBlock,
    AIStructuredResponseGeneratorBlock,
    AITextGeneratorBlock,
)
from blocks.library.maths import CalculatorBlock
from blocks.library.smart_decision_maker import SmartDecisionMakerBlock
from blocks.library.time_blocks import CountdownTimerBlock

API_KEY = "sk-test-SECRET-4711-do-not-leak"
JINA_KEY = "jina-SECRET-0815-do-not-leak"
LLM_CRED_ID = "11111111-1111-4111-8111-111111111111"
JINA_CRED_ID = "22222222-2222-4222-8222-222222222222"
WEBSHARE_CRED_ID = "44444444-4444-4444-8444-444444444444"
WEBSHARE_PASSWORD = "webshare-SECRET-2342-do-not-leak"
IDEOGRAM_CRED_ID = "1de06a00-0000-4000-8000-000000000001"
REPLICATE_CRED_ID = "7e911ca7-0000-4000-8000-000000000002"
MEDIUM_CRED_ID = "3ed10300-0000-4000-8000-000000000003"
MAPS_CRED_ID = "33333333-3333-4333-8333-333333333333"
DISCORD_CRED_ID = "d15c0bd0-0000-4000-8000-000000000004"
E2B_CRED_ID = "e2b0e2b0-0000-4000-8000-000000000005"
GOOGLE_CRED_ID = "9009e000-0000-4000-8000-000000000006"
REVID_CRED_ID = "4e71d000-0000-4000-8000-000000000007"
DATAFORSEO_CRED_ID = "df05e000-0000-4000-8000-000000000008"
WORDPRESS_CRED_ID = "3b9e5000-0000-4000-8000-000000000009"
FIRECRAWL_CRED_ID = "f12ec7a0-0000-4000-8000-00000000000a"
AIRTABLE_CRED_ID = "a1b7ab1e-0000-4000-8000-00000000000b"
EXPORTS_DIR = shared_dir() / "autogpt-agents"
AUTOGPT_NAMES: dict[str, str] = json.loads((EXPORTS_DIR / "_block_ids.json").read_text(encoding="utf-8"))
EXPORTS = sorted(p for p in EXPORTS_DIR.glob("*.json") if p.name != "_block_ids.json")


class Resolver:
    """The run's user's stored credentials, as the platform's store would hand them to the engine."""

    def __init__(self, llm_secret: str = API_KEY) -> None:
        self.by_id = {
            LLM_CRED_ID: Credentials(LLM_CRED_ID, "openai", "api_key", SecretStr(llm_secret), "local", "LLM"),
            JINA_CRED_ID: Credentials(JINA_CRED_ID, "jina", "api_key", SecretStr(JINA_KEY), "local", "Jina"),
            WEBSHARE_CRED_ID: Credentials(
                WEBSHARE_CRED_ID,
                "webshare_proxy",
                "user_password",
                SecretStr(json.dumps({"username": "agentflow-test", "password": WEBSHARE_PASSWORD})),
                "local",
                "Webshare",
            ),
            IDEOGRAM_CRED_ID: Credentials(
                IDEOGRAM_CRED_ID, "ideogram", "api_key", SecretStr(IDEOGRAM_KEY), "local", "Ideogram"
            ),
            REPLICATE_CRED_ID: Credentials(
                REPLICATE_CRED_ID, "replicate", "api_key", SecretStr(REPLICATE_KEY), "local", "Replicate"
            ),
            MEDIUM_CRED_ID: Credentials(
                MEDIUM_CRED_ID, "medium", "api_key", SecretStr(MEDIUM_KEY), "local", "Medium"
            ),
            MAPS_CRED_ID: Credentials(
                MAPS_CRED_ID, "google_maps", "api_key", SecretStr(TEST_MAPS_KEY), "local", "Maps"
            ),
            DISCORD_CRED_ID: Credentials(
                DISCORD_CRED_ID, "discord", "api_key", SecretStr(TEST_DISCORD_TOKEN), "local", "Discord bot"
            ),
            E2B_CRED_ID: Credentials(E2B_CRED_ID, "e2b", "api_key", SecretStr(E2B_TEST_KEY), "local", "E2B"),
            GOOGLE_CRED_ID: Credentials(
                GOOGLE_CRED_ID, "google", "oauth2", SecretStr(GMAIL_TOKEN), "local", "Google (Gmail)"
            ),
            REVID_CRED_ID: Credentials(
                REVID_CRED_ID, "revid", "api_key", SecretStr(REVID_KEY), "local", "revid"
            ),
            DATAFORSEO_CRED_ID: Credentials(
                DATAFORSEO_CRED_ID,
                "dataforseo",
                "user_password",
                SecretStr(json.dumps({"username": DATAFORSEO_LOGIN, "password": DATAFORSEO_PASSWORD})),
                "local",
                "DataForSEO",
            ),
            WORDPRESS_CRED_ID: Credentials(
                WORDPRESS_CRED_ID, "wordpress", "oauth2", SecretStr(WORDPRESS_TOKEN), "local", "WordPress.com"
            ),
            FIRECRAWL_CRED_ID: Credentials(
                FIRECRAWL_CRED_ID, "firecrawl", "api_key", SecretStr(FIRECRAWL_KEY), "local", "Firecrawl"
            ),
            AIRTABLE_CRED_ID: Credentials(
                AIRTABLE_CRED_ID, "airtable", "api_key", SecretStr(AIRTABLE_TOKEN), "local", "Airtable"
            ),
        }

    def resolve(self, credential_id: str, user_id: str) -> Credentials:
        return self.by_id[credential_id]


class EngineWithCredentials(ReferenceEngine):
    """Keeps the test's credentials resolver when a compiled op plugs in platform services without one."""

    def with_services(
        self,
        observer_factory: Any,
        credentials: Any,
        pricing: Any = None,
        breakers: Any = None,
        cache: Any = None,
        kv_store: Any = None,
    ) -> ReferenceEngine:
        # The test's own store wins, so each run starts empty whatever the instance holds.
        return EngineWithCredentials(
            self.registry,
            self.limits,
            self.resolve_graph,
            observer_factory,
            credentials or self.credentials,
            pricing,
            breakers,
            cache,
            self.kv_store or kv_store,
        )


@pytest.fixture
def servers(
    llm_server: ScriptedLLMServer,
    jina_server: JinaStyleServer,
    youtube_server: YouTubeStyleServer,
    google_maps_server: GoogleMapsStyleServer,
    ideogram_server: IdeogramServer,
    replicate_server: ReplicateServer,
    medium_server: MediumServer,
    e2b_server: E2BStyleServer,
    gmail_server: GmailStyleServer,
    revid_server: RevidStyleServer,
    dataforseo_server: DataForSeoServer,
    wordpress_server: WordPressServer,
    firecrawl_server: FirecrawlServer,
    airtable_server: AirtableServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[ScriptedLLMServer, JinaStyleServer]]:
    llm_server.reset()
    google_maps_server.reset()
    monkeypatch.setenv("AGENTFLOW_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AGENTFLOW_LLM_API_KEY", API_KEY)
    monkeypatch.setenv("AGENTFLOW_LLM_TIMEOUT", "5")
    monkeypatch.setenv("AGENTFLOW_JINA_BASE_URL", jina_server.url)
    youtube_server.reset()
    script_search_answers(llm_server)
    monkeypatch.setenv("AGENTFLOW_YOUTUBE_BASE_URL", youtube_server.url)
    monkeypatch.setenv("AGENTFLOW_WEBSHARE_PROXY_URL", youtube_server.url)  # it answers as a proxy too
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_BASE_URL", google_maps_server.url)
    # The googlemaps client retries 5xx answers for up to this long (60 s by default).
    monkeypatch.setenv("AGENTFLOW_GOOGLE_MAPS_RETRY_TIMEOUT", "1")
    for media in (ideogram_server, replicate_server, medium_server):
        media.reset()
    monkeypatch.setenv("AGENTFLOW_IDEOGRAM_BASE_URL", ideogram_server.url)
    monkeypatch.setenv("AGENTFLOW_REPLICATE_BASE_URL", replicate_server.url)
    monkeypatch.setenv("AGENTFLOW_REPLICATE_POLL_INTERVAL", "0.01")
    monkeypatch.setenv("AGENTFLOW_REPLICATE_RETRY_DELAY", "0")
    monkeypatch.setenv("AGENTFLOW_MEDIUM_BASE_URL", medium_server.url)
    monkeypatch.setenv("AGENTFLOW_MEDIUM_AUTHOR_ID", MEDIUM_AUTHOR_ID)
    monkeypatch.setenv("AGENTFLOW_ALLOW_PRIVATE_ADDRESSES", "1")
    script_domain_finder(e2b_server)
    script_seo_writer_programs(e2b_server)
    dataforseo_server.reset()
    wordpress_server.reset()
    monkeypatch.setenv("AGENTFLOW_DATAFORSEO_BASE_URL", dataforseo_server.url)
    monkeypatch.setenv("AGENTFLOW_WORDPRESS_BASE_URL", wordpress_server.url)
    firecrawl_server.reset()
    airtable_server.reset()
    monkeypatch.setenv("AGENTFLOW_FIRECRAWL_API_URL", firecrawl_server.url)
    monkeypatch.setenv("AGENTFLOW_FIRECRAWL_POLL_INTERVAL", "0.01")
    monkeypatch.setenv("AGENTFLOW_AIRTABLE_BASE_URL", airtable_server.url)
    monkeypatch.setenv("AGENTFLOW_E2B_API_URL", e2b_server.url)
    monkeypatch.setenv("AGENTFLOW_E2B_SANDBOX_URL", e2b_server.url)
    gmail_server.reset()
    revid_server.reset()
    monkeypatch.setenv("AGENTFLOW_GOOGLE_API_URL", gmail_server.url)
    monkeypatch.setenv("AGENTFLOW_REVID_BASE_URL", revid_server.url)
    monkeypatch.setenv("AGENTFLOW_REVID_POLL_INTERVAL", "0.01")
    yield llm_server, jina_server
    llm_server.reset()
    gmail_server.reset()  # drops mail a test delivered (GmailStyleServer.add_message)


@pytest.fixture
def instant_timers(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds each CountdownTimer was asked to wait, recorded instead of slept (the Automated
    Support Agent waits 15 s after each of its documentation tools)."""
    waits: list[float] = []

    async def record(self: CountdownTimerBlock, seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(CountdownTimerBlock, "_sleep", record)
    return waits


def assert_no_key(outputs: Any) -> None:
    assert secret_free(
        outputs,
        IDEOGRAM_KEY,
        REPLICATE_KEY,
        MEDIUM_KEY,
        API_KEY,
        JINA_KEY,
        WEBSHARE_PASSWORD,
        TEST_MAPS_KEY,
        E2B_TEST_KEY,
        GMAIL_TOKEN,
        REVID_KEY,
        DATAFORSEO_PASSWORD,
        WORDPRESS_TOKEN,
        FIRECRAWL_KEY,
        AIRTABLE_TOKEN,
    )


# --- single blocks ------------------------------------------------------------------------------------
def test_text_generation_from_the_environment(servers: Any) -> None:
    llm, _ = servers
    llm.script("capital of France", {"content": "Paris."})
    outputs = run_block(
        AITextGeneratorBlock(),
        {"prompt": "The capital of {{ country }}?", "prompt_values": {"country": "France"}},
    )
    assert outputs[0] == ("response", "Paris.")
    assert outputs[1][0] == "prompt" and outputs[1][1][-1]["content"] == "The capital of France?"
    (request,) = llm.requests
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["body"]["model"] == "gpt-4o"


def test_text_generation_with_a_json_credential_and_model_mapping(
    servers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm, _ = servers
    monkeypatch.delenv("AGENTFLOW_LLM_BASE_URL")
    monkeypatch.delenv("AGENTFLOW_LLM_API_KEY")
    secret = json.dumps({"api_key": "sk-cred-key", "base_url": llm.base_url, "models": {"*": "local-model"}})
    cred = Credentials("c", "openai", "api_key", SecretStr(secret), "local")
    outputs = run_block(
        AITextGeneratorBlock(), {"prompt": "hi", "model": "gpt-5-mini-2025-08-07"}, {"credentials": cred}
    )
    assert outputs[0] == ("response", "Answer to: hi")
    assert llm.requests[0]["body"]["model"] == "local-model"
    assert llm.requests[0]["headers"]["authorization"] == "Bearer sk-cred-key"


def test_structured_response_retries_a_malformed_answer(servers: Any) -> None:
    llm, _ = servers
    llm.script(
        "Describe the cat",
        {"content": "Sure! {not json at all"},
        {"content": 'Here: {json_tag}{"name": "Tom", "colour": "grey"}</json_output>'},
    )
    block = AIStructuredResponseGeneratorBlock()
    data = {"prompt": "Describe the cat", "expected_format": {"name": "its name", "colour": "its colour"}}
    ctx = RunContext()
    outputs = run_block(block, data, ctx=ctx)
    assert outputs[0] == ("response", {"name": "Tom", "colour": "grey"})
    assert len(llm.requests) == 2
    feedback = llm.requests[1]["body"]["messages"][-1]["content"]
    assert "did not contain a parseable JSON object" in feedback
    stats = ctx.stats
    assert stats["llm_call_count"] == 2 and stats["llm_retry_count"] == 1
    assert stats["input_token_count"] > 0 and stats["output_token_count"] > 0
    assert_no_key(outputs)


def test_provider_error_is_a_clear_error_without_the_key(servers: Any) -> None:
    llm, _ = servers
    llm.script("boom", {"status": 500, "body": {"error": {"message": f"internal failure (key {API_KEY})"}}})
    outputs = run_block(AITextGeneratorBlock(), {"prompt": "boom", "retry": 2})
    assert [pin for pin, _ in outputs] == ["error"]
    assert "HTTP 500" in outputs[0][1] and "internal failure" in outputs[0][1]
    assert len(llm.requests) == 2  # AutoGPT retries provider errors
    assert_no_key(outputs)


def test_timeout_is_a_clear_error(servers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    llm, _ = servers
    monkeypatch.setenv("AGENTFLOW_LLM_TIMEOUT", "0.3")
    llm.script("slow", {"delay": 1.5, "content": "too late"})
    outputs = run_block(AITextGeneratorBlock(), {"prompt": "slow", "retry": 1})
    assert [pin for pin, _ in outputs] == ["error"]
    assert "timed out after 0.3s" in outputs[0][1]
    assert_no_key(outputs)


def test_malformed_answers_to_the_end_are_a_clear_error(servers: Any) -> None:
    llm, _ = servers
    llm.script("Describe the dog", {"content": "I will not answer in JSON."})
    data = {"prompt": "Describe the dog", "expected_format": {"name": "its name"}, "retry": 3}
    outputs = run_block(AIStructuredResponseGeneratorBlock(), data)
    assert [pin for pin, _ in outputs] == ["error"]
    assert "after 3 attempt(s)" in outputs[0][1] and "json_output" in outputs[0][1]
    assert len(llm.requests) == 3
    assert_no_key(outputs)


def test_list_generator_and_conversation(servers: Any) -> None:
    llm, _ = servers
    llm.script("fruits", {"content": '{json_tag}{"list": ["apple", "pear"]}</json_output>'})
    outputs = run_block(AIListGeneratorBlock(), {"focus": "fruits"})
    assert [o for o in outputs if o[0] != "prompt"] == [
        ("generated_list", ["apple", "pear"]),
        ("list_item", "apple"),
        ("list_item", "pear"),
    ]
    llm.script("Where was it played", {"content": "In Arlington."})
    messages = [{"role": "user", "content": "Who won?"}, {"role": "user", "content": "Where was it played?"}]
    outputs = run_block(AIConversationBlock(), {"messages": messages})
    assert outputs[0] == ("response", "In Arlington.")


def test_jina_blocks_against_the_local_server(servers: Any) -> None:
    _, jina = servers
    cred = {"credentials": Credentials("j", "jina", "api_key", SecretStr(JINA_KEY), "local")}
    outputs = run_block(SearchTheWebBlock(), {"query": "agent graphs"}, cred)
    assert outputs[0][0] == "results" and "Result 1 for agent graphs" in outputs[0][1]
    assert jina.requests[-1]["headers"]["authorization"] == f"Bearer {JINA_KEY}"
    outputs = run_block(ExtractWebsiteContentBlock(), {"url": "https://example.com/a"}, cred)
    assert outputs == [
        (
            "content",
            "Title: Page\nURL Source: https://example.com/a\nMarkdown Content:\nThe content of https://example.com/a.",
        )
    ]
    outputs = run_block(SearchTheWebBlock(), {"query": "fail"}, cred)
    assert outputs[0][0] == "error" and "HTTP 500" in outputs[0][1]
    assert_no_key(outputs)


def test_jina_refuses_loopback_unless_allowed(servers: Any) -> None:
    async def go() -> list[tuple[str, Any]]:
        block = SearchTheWebBlock()
        return [o async for o in block.run(block.make_input({"query": "x"}), RunContext())]

    outputs = asyncio.run(go())
    assert outputs[0][0] == "error" and "allow_private_addresses" in outputs[0][1]


# --- cost ------------------------------------------------------------------------------------------
def _structured_graph(model: str) -> Graph:
    b = GraphBuilder("structured cost")
    b.node(
        AIStructuredResponseGeneratorBlock,
        node_id="gen",
        prompt="Describe the cat",
        model=model,
        expected_format={"name": "its name"},
        credentials={"id": LLM_CRED_ID},
    )
    b.node(AgentOutputBlock, node_id="out", name="cat")
    b.link("gen", "response", "out", "value")
    return b.build()


@pytest.mark.parametrize(
    ("model", "rate_in", "rate_out"),
    [("gpt-4o", 375, 1500), ("claude-sonnet-4-5-20250929", 450, 2250), ("not-a-priced-model", 0, 0)],
)
def test_llm_node_cost_is_its_tokens_at_the_models_rate_retries_included(
    servers: Any, model: str, rate_in: int, rate_out: int
) -> None:
    llm, _ = servers
    llm.script(
        "Describe the cat",
        {"content": "Sure! {not json at all"},
        {"content": 'Here: {json_tag}{"name": "Tom"}</json_output>'},
    )
    result = EngineWithCredentials(credentials=Resolver()).run_sync(
        _structured_graph(model), {}, RunOptions(settings={"allow_private_addresses": True})
    )
    assert result.status is RunStatus.COMPLETED, result.error
    (gen,) = [e for e in result.executions if e.node_id == "gen"]
    assert gen.error is None, gen.error
    stats = gen.summary()["stats"]
    assert stats["llm_call_count"] == 2 and stats["llm_retry_count"] == 1
    # Both calls' tokens, as the local server counted them (its usage block), are in the stats...
    usages = [u for u in llm.usages if "Describe the cat" in u["prompt"]]
    assert len(usages) == 2
    assert stats["input_token_count"] == sum(u["prompt_tokens"] for u in usages)
    assert stats["output_token_count"] == sum(u["completion_tokens"] for u in usages)
    # ...and the cost is those tokens at the model's rate, rounded up; an unpriced model is free.
    expected = -(
        -(stats["input_token_count"] * rate_in + stats["output_token_count"] * rate_out) // 1_000_000
    )
    assert gen.cost == expected
    assert (gen.cost > 0) == (rate_in > 0)


def test_operator_token_prices_replace_the_built_in_ones(servers: Any, tmp_path: Path) -> None:
    from agent_defs.jobs.services import load_pricing

    table = tmp_path / "costs.json"
    block_id = AIStructuredResponseGeneratorBlock.id
    table.write_text(
        json.dumps({block_id: [{"amount": 7, "type": "tokens", "token_rate": {"input": 1e6, "output": 0}}]})
    )
    llm, _ = servers
    llm.script("Describe the cat", {"content": 'Here: {json_tag}{"name": "Tom"}</json_output>'})
    engine = EngineWithCredentials(credentials=Resolver(), pricing=load_pricing(table))
    result = engine.run_sync(
        _structured_graph("gpt-4o"), {}, RunOptions(settings={"allow_private_addresses": True})
    )
    (gen,) = [e for e in result.executions if e.node_id == "gen"]
    (usage,) = [u for u in llm.usages if "Describe the cat" in u["prompt"]]
    assert gen.cost == usage["prompt_tokens"] > 0  # one credit per input token, as configured

    table.write_text(json.dumps({block_id: [{"amount": 1, "type": "tokens", "token_rate": {"in": 1}}]}))
    with pytest.raises(ValueError, match=r"AGENTFLOW_BLOCK_COSTS=.*not a block cost table"):
        load_pricing(table)


# --- SmartDecisionMaker in a graph --------------------------------------------------------------------
def tool_graph() -> Graph:
    """AutoGPT's tool loop: the decision maker's feedback pins are linked only from the loop itself,
    so its first execution must start without them (AutoGPT's get_missing_links)."""
    b = GraphBuilder("sdm tools")
    b.node(AgentInputBlock, node_id="task", name="task")
    b.node(SmartDecisionMakerBlock, node_id="sdm", credentials={"id": LLM_CRED_ID})
    b.node(CalculatorBlock, node_id="calc", operation="Add")
    b.node(AgentOutputBlock, node_id="out_answer", name="answer")
    b.node(AgentOutputBlock, node_id="out_sum", name="sum")
    b.link("task", "result", "sdm", "prompt", static=True)
    b.link("sdm", "tools_^_calculatorblock_~_a", "calc", "a")
    b.link("sdm", "tools_^_calculatorblock_~_b", "calc", "b")
    b.link("calc", "result", "sdm", "last_tool_output")
    b.link("calc", "result", "out_sum", "value")
    b.link("sdm", "conversations", "sdm", "conversation_history")
    b.link("sdm", "finished", "out_answer", "value")
    return b.build()


def test_smart_decision_maker_routes_tool_calls_and_loops_back(servers: Any) -> None:
    llm, _ = servers
    llm.script(
        "Add 2 and 3",
        {"tool_calls": [{"id": "call_add", "name": "calculatorblock", "arguments": {"a": 2, "b": 3}}]},
        {"content": "The sum is 5."},
    )
    graph = tool_graph()
    assert validate_graph(graph) == []
    result = ReferenceEngine(credentials=Resolver()).run_sync(
        graph, {"task": "Add 2 and 3"}, RunOptions(settings={"allow_private_addresses": True})
    )
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.node_error_count == 0, [e.error for e in result.executions if e.error]
    assert result.outputs == {"sum": [5], "answer": ["The sum is 5."]}
    assert result.execution_counts()["sdm"] == 2
    # Token counts reach each node execution's stats (and from there its Dagster metadata).
    sdm_stats = [e.summary()["stats"] for e in result.executions if e.node_id == "sdm"]
    assert [s.get("llm_call_count") for s in sdm_stats] == [1, 1]
    assert all(s.get("input_token_count", 0) > 0 and s.get("output_token_count", 0) > 0 for s in sdm_stats)
    first, second = (r["body"] for r in llm.requests)
    assert first["tools"][0]["function"]["name"] == "calculatorblock"
    assert set(first["tools"][0]["function"]["parameters"]["properties"]) == {"a", "b"}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": "call_add", "content": "5"} or any(
        m.get("role") == "tool" and m.get("tool_call_id") == "call_add" for m in second["messages"]
    )
    assert_no_key(result.to_json())


def test_smart_decision_maker_waits_like_autogpt() -> None:
    """AutoGPT's readiness: a pending tool call waits for its output; a tool output waits for the
    conversation it answers; otherwise the feedback pins are not waited for."""
    sdm = SmartDecisionMakerBlock()
    call = {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {}}]}
    answered = [call, {"role": "tool", "tool_call_id": "c1", "content": "5"}]
    assert sdm.optional_link_pins == {"conversation_history", "last_tool_output"}
    assert sdm.missing_inputs({"prompt": "p"}) == frozenset()
    assert sdm.missing_inputs({"conversation_history": "[]"}) == frozenset()
    assert sdm.missing_inputs({"conversation_history": [call]}) == {"last_tool_output"}
    assert sdm.missing_inputs({"conversation_history": [call], "last_tool_output": 5}) == frozenset()
    assert sdm.missing_inputs({"last_tool_output": 5}) == {"conversation_history"}
    assert sdm.missing_inputs({"conversation_history": answered, "last_tool_output": 5}) == {
        "conversation_history"
    }


def test_a_static_tool_output_into_a_looping_decision_maker_is_refused() -> None:
    b = GraphBuilder("sdm static tool output")
    b.node(AgentInputBlock, node_id="task", name="task")
    b.node(SmartDecisionMakerBlock, node_id="sdm", credentials={"id": LLM_CRED_ID})
    b.node(CalculatorBlock, node_id="calc", operation="Add")
    b.node(StoreValueBlock, node_id="keep")
    b.link("task", "result", "sdm", "prompt")
    b.link("sdm", "tools_^_calculatorblock_~_a", "calc", "a")
    b.link("sdm", "tools_^_calculatorblock_~_b", "calc", "b")
    b.link("calc", "result", "keep", "input")
    b.link("keep", "output", "sdm", "last_tool_output")  # StoreValue's links are static
    b.link("sdm", "conversations", "sdm", "conversation_history")
    (problem,) = validate_graph(b.build())
    assert (problem.node or "").startswith("sdm") and problem.pin == "last_tool_output"
    assert "static link" in problem.message and "conversation_history" in problem.message
    # The same loop with the tool's own (non-static) output is fine.
    assert validate_graph(tool_graph()) == []


def test_smart_decision_maker_loop_as_a_compiled_job(servers: Any) -> None:
    llm, _ = servers
    llm.script(
        "Add 2 and 3",
        {"tool_calls": [{"id": "call_add", "name": "calculatorblock", "arguments": {"a": 2, "b": 3}}]},
        {"content": "The sum is 5."},
    )
    job = compile_graph(tool_graph(), engine=EngineWithCredentials(credentials=Resolver()))
    with DagsterInstance.ephemeral() as instance:
        run = job.execute_in_process(
            run_config={"inputs": {"task": "Add 2 and 3"}}, instance=instance, raise_on_error=False
        )
        summary = read_run_summary(instance, run.run_id)
    assert summary["status"] == "COMPLETED", summary
    assert summary["outputs"] == {"sum": [5], "answer": ["The sum is 5."]}
    assert summary["node_error_count"] == 0
    assert_no_key(summary)


# --- the real exports ---------------------------------------------------------------------------------
def _all_graphs(graph: Graph) -> Iterator[Graph]:
    yield graph
    for sub in graph.sub_graphs:
        yield from _all_graphs(sub)


def _unsupported(graph: Graph) -> set[str]:
    return {
        AUTOGPT_NAMES.get(n.block_id, n.block_id)
        for g in _all_graphs(graph)
        for n in g.nodes
        if REGISTRY.get(n.block_id) is None
    }


def _runnable(path: Path) -> bool:
    graph = load_graph_file(path)
    return not _unsupported(graph) and not validate_graph(graph)


def with_credential_references(graph: Graph) -> Graph:
    """The export as a user's stored graph: AutoGPT strips credential references from exports."""
    ref = {"openai": {"id": LLM_CRED_ID}, "jina": {"id": JINA_CRED_ID}, "google_maps": {"id": MAPS_CRED_ID}}
    ref["webshare_proxy"] = {"id": WEBSHARE_CRED_ID}
    ref.update(
        {
            "ideogram": {"id": IDEOGRAM_CRED_ID},
            "replicate": {"id": REPLICATE_CRED_ID},
            "medium": {"id": MEDIUM_CRED_ID},
            "discord": {"id": DISCORD_CRED_ID},
            "e2b": {"id": E2B_CRED_ID},
            "google": {"id": GOOGLE_CRED_ID},
            "revid": {"id": REVID_CRED_ID},
            "dataforseo": {"id": DATAFORSEO_CRED_ID},
            "wordpress": {"id": WORDPRESS_CRED_ID},
            "firecrawl": {"id": FIRECRAWL_CRED_ID},
            "airtable": {"id": AIRTABLE_CRED_ID},
        }
    )

    def node(n: Any) -> Any:
        block = REGISTRY.get(n.block_id)
        fields = block.credentials if block is not None else ()
        if not fields:
            return n
        defaults = dict(n.input_default)
        for f in fields:
            defaults[f.input_name] = ref[f.provider]
        return dataclasses.replace(n, input_default=defaults)

    return dataclasses.replace(
        graph,
        nodes=tuple(node(n) for n in graph.nodes),
        sub_graphs=tuple(with_credential_references(s) for s in graph.sub_graphs),
    )


def _inputs(graph: Graph, path: Path) -> dict[str, Any]:
    from test_autogpt_exports import inputs_for

    return {
        **inputs_for(graph, json.loads(path.read_text(encoding="utf-8"))),
        **EXPORT_INPUTS.get(path.name, {}),
    }


# Graph inputs that must be real values for an export's provider calls to succeed (a recipient Gmail accepts).
EXPORT_INPUTS: dict[str, dict[str, Any]] = {
    "agent_00fdd42c-a14c-4d19-a567-65374ea0e87f.json": {"Your Email Address": "reader@example.com"},
    "agent_415b7352-0dc6-4214-9d87-0ad3751b711d.json": {"Your email address": USER_EMAIL},
    SEO_WRITER_EXPORT: {"blog_url": f"https://{SEO_WRITER_BLOG}/"},
    # Airtable refuses a workspace id that does not start with "wsp" (tests/support_airtable.py); the
    # threshold is typed as text, as the builder's untyped input sends it.
    SUPPORT_AGENT_EXPORT: {
        "Airtable Workspace ID": AIRTABLE_WORKSPACE_ID,
        "Documentation URL": SUPPORT_DOCS_URL,
        "Company Tone": "Friendly",
        "Confidence Threshold": "70",
        "Escalation Email": SUPPORT_ESCALATION_EMAIL,
        "Email Signature": "Best regards,\nAcme Support",
    },
}


# Exports whose graphs parse their LLM answers (the scripted server's default answers do not fit):
# rules scripted afresh before each run.
EXPORT_LLM_SCRIPTS: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {
    "agent_6e16e65a-ad34-4108-b4fd-4a23fced5ea2.json": ceo_finder_rules(),
    "agent_b6f6f0d3-49f4-4e3b-8155-ffe9141b32c0.json": domain_finder_llm_rules(),
    "agent_00fdd42c-a14c-4d19-a567-65374ea0e87f.json": newsletter_rules(),
    "agent_415b7352-0dc6-4214-9d87-0ad3751b711d.json": meeting_prep_rules(),
    "agent_a03b0d8c-4751-43d6-a54e-c3b7856ba4e3.json": video_generator_rules(),
    SEO_WRITER_EXPORT: seo_writer_rules(),
    SUPPORT_AGENT_EXPORT: support_agent_rules(),
}

# Exports whose work starts from mail the default mailbox lacks (tests/support_google.py): delivered
# afresh before each run, as a run may label it processed; the servers fixture restores the mailbox.
EXPORT_MAIL: dict[str, list[Callable[[], tuple[str, str, list[str], EmailMessage]]]] = {
    SUPPORT_AGENT_EXPORT: [support_ticket],
}


def deliver_export_mail(path: Path, gmail: GmailStyleServer) -> None:
    letters = EXPORT_MAIL.get(path.name)
    if letters:
        gmail.reset()
        for letter in letters:
            gmail.add_message(*letter())


def script_export_llm(path: Path, llm: ScriptedLLMServer) -> None:
    rules = EXPORT_LLM_SCRIPTS.get(path.name)
    if rules:
        llm.reset()
        for match, replies in rules:
            llm.script(match, *[dict(r) for r in replies])


def _discord_bot(path: Path) -> bool:
    """A Discord bot loop reads until no message comes (its last Read fails with a timeout): these run
    end to end in tests/test_discord_blocks.py, with scripted messages."""
    return any(
        n.block_id == READ_DISCORD_MESSAGES for g in _all_graphs(load_graph_file(path)) for n in g.nodes
    )


READ_DISCORD_MESSAGES = "df06086a-d5ac-4abb-9996-2ad0acb2eff7"
RUNNABLE = [p for p in EXPORTS if _runnable(p) and not _discord_bot(p)]


def test_report_which_exports_run_and_what_the_others_lack() -> None:
    discord = [p.name for p in EXPORTS if _runnable(p) and _discord_bot(p)]
    blocked = {p.name: sorted(_unsupported(load_graph_file(p))) for p in EXPORTS if not _runnable(p)}
    print(f"\n{len(RUNNABLE) + len(discord)} of {len(EXPORTS)} exports run end to end")
    print(f"  here: {[p.name for p in RUNNABLE]}")
    print(f"  in tests/test_discord_blocks.py (scripted bot messages): {discord}")
    for name, missing in blocked.items():
        print(f"  not runnable: {name}: {missing or 'validation problems'}")
    # Every export runs but testing_agent.json, whose Calculator has no inputs (AutoGPT refuses it too).
    assert set(blocked) == {"testing_agent.json"}, blocked
    assert len(discord) == 3, discord


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_runnable_export_end_to_end(
    path: Path,
    servers: Any,
    gmail_server: GmailStyleServer,
    instant_timers: list[float],
    instance: DagsterInstance,
    tmp_path: Path,
) -> None:
    graph = with_credential_references(load_graph_file(path))
    # The SEO writer's hard-coded WordPress.com URL (a SendWebRequest) goes to the local server.
    graph = with_local_wordpress(graph, os.environ["AGENTFLOW_WORDPRESS_BASE_URL"])
    inputs = _inputs(graph, path)
    llm, _ = servers
    deliver_export_mail(path, gmail_server)
    script_export_llm(path, llm)
    # Each run starts with an empty durable store (PersistInformation / RetrieveInformation).
    reference = EngineWithCredentials(
        credentials=Resolver(), kv_store=SqliteKeyValueStore(tmp_path / "reference_kv.sqlite")
    ).run_sync(graph, inputs, RunOptions(settings={"allow_private_addresses": True}))
    assert reference.status is RunStatus.COMPLETED, reference.error
    # An export without output nodes (Medium Blogger) shows its work in its last node's outputs.
    has_output_nodes = any(
        REGISTRY.get(n.block_id).block_type is BlockType.OUTPUT  # type: ignore[union-attr]
        for n in graph.nodes
    )
    assert reference.outputs or not has_output_nodes, (
        f"{path.name}: no outputs; errors: {[e.error for e in reference.executions if e.error]}"
    )
    llm_nodes = [e for e in reference.executions if REGISTRY.get(e.block_id).credentials]  # type: ignore[union-attr]
    assert all(e.error is None for e in llm_nodes), [e.error for e in llm_nodes if e.error]
    assert_no_key(reference.to_json())

    deliver_export_mail(path, gmail_server)
    script_export_llm(path, llm)
    engine = EngineWithCredentials(
        credentials=Resolver(), kv_store=SqliteKeyValueStore(tmp_path / "compiled_kv.sqlite")
    )
    job = compile_graph(graph, engine=engine, console_log_level="ERROR")
    run = job.execute_in_process(run_config={"inputs": inputs}, instance=instance, raise_on_error=False)
    compiled = read_run_summary(instance, run.run_id)
    assert compiled["status"] == "COMPLETED", compiled
    assert compiled["outputs"] or not has_output_nodes, compiled
    assert set(compiled["outputs"]) == set(reference.outputs)
    assert compiled["node_error_count"] == reference.node_error_count
    assert_no_key(compiled)
