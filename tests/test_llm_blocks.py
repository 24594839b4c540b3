"""LLM and Jina-style blocks against the local servers (tests/support_servers.py), and the real AutoGPT
exports whose blocks are now all supported, on the reference engine and as compiled Dagster jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance
from pydantic import SecretStr
from support_servers import JinaStyleServer, ScriptedLLMServer

from agent_defs.engine import ReferenceEngine, RunOptions, RunStatus
from agent_defs.graph import Graph, load_graph_file
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.paths import shared_dir
from blocks import REGISTRY, Credentials, RunContext
from blocks.library.basic import UniversalTypeConverterBlock
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

API_KEY = "sk-test-SECRET-4711-do-not-leak"
JINA_KEY = "jina-SECRET-0815-do-not-leak"
LLM_CRED_ID = "11111111-1111-4111-8111-111111111111"
JINA_CRED_ID = "22222222-2222-4222-8222-222222222222"
EXPORTS_DIR = shared_dir() / "autogpt-agents"
AUTOGPT_NAMES: dict[str, str] = json.loads((EXPORTS_DIR / "_block_ids.json").read_text(encoding="utf-8"))
EXPORTS = sorted(p for p in EXPORTS_DIR.glob("*.json") if p.name != "_block_ids.json")


class Resolver:
    """The run's user's stored credentials, as the platform's store would hand them to the engine."""

    def __init__(self, llm_secret: str = API_KEY) -> None:
        self.by_id = {
            LLM_CRED_ID: Credentials(LLM_CRED_ID, "openai", "api_key", SecretStr(llm_secret), "local", "LLM"),
            JINA_CRED_ID: Credentials(JINA_CRED_ID, "jina", "api_key", SecretStr(JINA_KEY), "local", "Jina"),
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
    ) -> ReferenceEngine:
        return EngineWithCredentials(
            self.registry,
            self.limits,
            self.resolve_graph,
            observer_factory,
            credentials or self.credentials,
            pricing,
            breakers,
            cache,
        )


@pytest.fixture
def servers(
    llm_server: ScriptedLLMServer, jina_server: JinaStyleServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ScriptedLLMServer, JinaStyleServer]]:
    llm_server.reset()
    monkeypatch.setenv("AGENTFLOW_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("AGENTFLOW_LLM_API_KEY", API_KEY)
    monkeypatch.setenv("AGENTFLOW_LLM_TIMEOUT", "5")
    monkeypatch.setenv("AGENTFLOW_JINA_BASE_URL", jina_server.url)
    monkeypatch.setenv("AGENTFLOW_ALLOW_PRIVATE_ADDRESSES", "1")
    yield llm_server, jina_server
    llm_server.reset()


def run_block(
    block: Any,
    data: dict[str, Any],
    credentials: dict[str, Credentials] | None = None,
    ctx: RunContext | None = None,
) -> list[tuple[str, Any]]:
    async def go() -> list[tuple[str, Any]]:
        context = ctx or RunContext()
        context.node_exec_id = f"test-{id(data)}"
        context.credentials = credentials or {}
        context.settings = {"allow_private_addresses": True}
        return [
            (pin, block.validate_output(pin, value))
            async for pin, value in block.run(block.make_input(data), context)
        ]

    return asyncio.run(go())


def assert_no_key(outputs: Any) -> None:
    text = json.dumps(outputs, default=str)
    assert API_KEY not in text and JINA_KEY not in text


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


# --- SmartDecisionMaker in a graph --------------------------------------------------------------------
def tool_graph() -> Graph:
    b = GraphBuilder("sdm tools")
    b.node(AgentInputBlock, node_id="task", name="task")
    b.node(SmartDecisionMakerBlock, node_id="sdm", credentials={"id": LLM_CRED_ID})
    b.node(UniversalTypeConverterBlock, node_id="seed_history", value="[]", type="list")
    b.node(UniversalTypeConverterBlock, node_id="seed_output", value="", type="string")
    b.node(CalculatorBlock, node_id="calc", operation="Add")
    b.node(AgentOutputBlock, node_id="out_answer", name="answer")
    b.node(AgentOutputBlock, node_id="out_sum", name="sum")
    b.link("task", "result", "sdm", "prompt")
    b.link("seed_history", "value", "sdm", "conversation_history")
    b.link("seed_output", "value", "sdm", "last_tool_output")
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
    ref = {"openai": {"id": LLM_CRED_ID}, "jina": {"id": JINA_CRED_ID}}

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

    return inputs_for(graph, json.loads(path.read_text(encoding="utf-8")))


RUNNABLE = [p for p in EXPORTS if _runnable(p)]


def test_report_which_exports_run_and_what_the_others_lack() -> None:
    blocked = {p.name: sorted(_unsupported(load_graph_file(p))) for p in EXPORTS if p not in RUNNABLE}
    print(f"\n{len(RUNNABLE)} of {len(EXPORTS)} exports runnable: {[p.name for p in RUNNABLE]}")
    for name, missing in blocked.items():
        print(f"  {name}: {missing or 'validation problems'}")
    assert len(RUNNABLE) >= 3


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_runnable_export_end_to_end(path: Path, servers: Any, instance: DagsterInstance) -> None:
    graph = with_credential_references(load_graph_file(path))
    inputs = _inputs(graph, path)
    reference = EngineWithCredentials(credentials=Resolver()).run_sync(
        graph, inputs, RunOptions(settings={"allow_private_addresses": True})
    )
    assert reference.status is RunStatus.COMPLETED, reference.error
    assert reference.outputs, (
        f"{path.name}: no outputs; errors: {[e.error for e in reference.executions if e.error]}"
    )
    llm_nodes = [e for e in reference.executions if REGISTRY.get(e.block_id).credentials]  # type: ignore[union-attr]
    assert all(e.error is None for e in llm_nodes), [e.error for e in llm_nodes if e.error]
    assert_no_key(reference.to_json())

    job = compile_graph(
        graph, engine=EngineWithCredentials(credentials=Resolver()), console_log_level="ERROR"
    )
    run = job.execute_in_process(run_config={"inputs": inputs}, instance=instance, raise_on_error=False)
    compiled = read_run_summary(instance, run.run_id)
    assert compiled["status"] == "COMPLETED", compiled
    assert compiled["outputs"], compiled
    assert set(compiled["outputs"]) == set(reference.outputs)
    assert compiled["node_error_count"] == reference.node_error_count
    assert_no_key(compiled)
