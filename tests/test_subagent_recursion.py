"""Sub-agents that call themselves, directly or through others, and sub-agents nested very deep.

Validation refuses what it can see (naming the cycle); the engine and the compiled Dagster job bound
the rest at run time by a depth limit and one node-execution budget shared by a run and its sub-runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from agent_defs.engine import EngineLimits, ExecutionBudget, ReferenceEngine, RunStatus
from agent_defs.graph import Graph, load_graph_file
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.subagents import SubAgentReferenceError, resolve_sub_agent
from agent_defs.graph.validation import validate_graph
from agent_defs.jobs.catalog import build_catalog
from agent_defs.jobs.compiler import compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.paths import project_root
from agent_defs.store import DirectoryGraphStore
from bench.graphs import export
from blocks.library.agent import AgentExecutorBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.text import FillTextTemplateBlock

AGENTFLOW = Path(sys.executable).parent / "agentflow"
SCHEMAS = {
    "input_schema": {"properties": {"x": {"type": "string"}}, "required": ["x"]},
    "output_schema": {"properties": {"y": {"type": "string"}}},
}


def _graph(
    graph_id: str,
    calls: list[str] | None = None,
    name: str | None = None,
    version: int = 1,
    call_version: int = 1,
    label: str = "",
) -> GraphBuilder:
    """Input x -> (one AgentExecutor per id in `calls`, each fed x) -> output y; without calls,
    x is templated straight to y."""
    b = GraphBuilder(name or graph_id.upper(), graph_id=graph_id, version=version)
    x = b.node(AgentInputBlock, node_id="in", name="x")
    y = b.node(AgentOutputBlock, node_id="out", name="y")
    if not calls:
        text = b.node(FillTextTemplateBlock, node_id="text", format="<{{ x }}>")
        b.link(x, "result", text, "values_#_x").link(text, "output", y, "value")
    for i, target in enumerate(calls or []):
        call = b.node(
            AgentExecutorBlock,
            node_id=f"call{i}",
            label=label,
            graph_id=target,
            graph_version=call_version,
            **SCHEMAS,
        )
        b.link(x, "result", call, "x").link(call, "y", y, "value")
    return b


def _with(root: GraphBuilder, *subs: GraphBuilder) -> Graph:
    for sub in subs:
        root.sub_graph(sub.build())
    return root.build()


def self_calling() -> Graph:
    """A -> S, and S calls S (twice, so an unbounded run also grows exponentially)."""
    return _with(_graph("a", ["s"]), _graph("s", ["s", "s"]))


def mutual() -> Graph:
    """A -> B -> A: the sub-graph calls its parent (the top graph) back."""
    return _with(_graph("a", ["b"]), _graph("b", ["a"]))


def chain(depth: int) -> Graph:
    """g0 -> g1 -> ... -> g<depth>, every sub-graph listed flat in the top graph (as AutoGPT exports)."""
    root = _graph("g0", ["g1"])
    subs = [_graph(f"g{i}", [f"g{i + 1}"] if i < depth else None) for i in range(1, depth + 1)]
    return _with(root, *subs)


def _export(graph: Graph) -> dict[str, Any]:
    """The export of a graph whose sub-graphs call no further embedded ones (as AutoGPT writes it)."""
    return {**export(graph), "sub_graphs": [export(sub) for sub in graph.sub_graphs]}


def _messages(graph: Graph, **kwargs: Any) -> list[str]:
    return [str(p) for p in validate_graph(graph, **kwargs)]


# --- validation: recursion visible in the export is refused, the cycle named -------------------------
def test_validation_names_a_sub_graph_that_calls_itself() -> None:
    problems = _messages(self_calling())
    recursion = [p for p in problems if "sub-agent recursion" in p]
    assert recursion == [
        f"graph 'S' (s v1): node {node} (AgentExecutorBlock): sub-agent recursion: graph 'S' (s v1) calls "
        f"itself through node {node} (AgentExecutorBlock) -> graph 'S' (s v1)"
        for node in ("call0", "call1")  # each node closing a cycle is named
    ], problems


def test_validation_names_the_cycle_through_the_parent() -> None:
    problems = _messages(mutual())
    assert problems == [
        "graph 'A' (a v1): node call0 (AgentExecutorBlock): sub-agent recursion: graph 'A' (a v1) calls "
        "itself through node call0 (AgentExecutorBlock) -> graph 'B' (b v1) ; "
        "node call0 (AgentExecutorBlock) -> graph 'A' (a v1)"
    ], problems


def test_validation_names_a_three_graph_cycle_once() -> None:
    graph = _with(_graph("a", ["b"]), _graph("b", ["c"]), _graph("c", ["b"]))
    problems = _messages(graph)
    assert len(problems) == 1, problems
    assert "graph 'B' (b v1) calls itself through" in problems[0]
    assert "-> graph 'C' (c v1) ; node call0 (AgentExecutorBlock) -> graph 'B' (b v1)" in problems[0]


def test_a_chain_deeper_than_the_limit_is_refused_and_one_within_passes() -> None:
    assert _messages(chain(3), max_subagent_depth=3) == []
    problems = _messages(chain(4), max_subagent_depth=3)
    assert problems == [
        "graph 'G0' (g0 v1): node call0 (AgentExecutorBlock): sub-agents nest 4 levels deep "
        "(graph 'G0' (g0 v1) -> graph 'G1' (g1 v1) -> graph 'G2' (g2 v1) -> graph 'G3' (g3 v1) -> "
        "graph 'G4' (g4 v1)), more than the limit of 3 (AGENTFLOW_MAX_SUBAGENT_DEPTH)"
    ]


# --- which sub-graph a reference means ----------------------------------------------------------------
def test_an_unmatched_reference_is_refused_not_guessed() -> None:
    # Before: the only sub-graph of version 1 was taken, whatever its inputs and outputs.
    other = GraphBuilder("Other", graph_id="other")
    q = other.node(AgentInputBlock, node_id="in", name="q")
    r = other.node(AgentOutputBlock, node_id="out", name="r")
    other.link(q, "result", r, "value")
    graph = _with(_graph("a", ["exported-id"]), other)
    problems = _messages(graph)
    assert problems == [
        "graph 'A' (a v1): node call0 (AgentExecutorBlock): sub-agent graph exported-id v1 is not stored "
        "with this graph: no graph has that id, and no sub-graph of version 1 has its inputs ['x'] and "
        "outputs ['y'] (version 1: graph 'Other' (other v1))"
    ]
    result = ReferenceEngine().run_sync(graph, {"x": "hi"})
    assert result.outputs == {}
    assert [e.error for e in result.executions if e.error] == [problems[0].split("AgentExecutorBlock): ")[1]]


def test_a_reference_without_schemas_needs_the_exact_id() -> None:
    b = GraphBuilder("A", graph_id="a")
    b.node(AgentExecutorBlock, node_id="call", graph_id="nope", graph_version=1)
    graph = _with(b, _graph("s"))
    assert _messages(graph) == [
        "graph 'A' (a v1): node call (AgentExecutorBlock): sub-agent graph nope v1 is not stored with "
        "this graph, and the node has no input_schema/output_schema to identify a sub-graph by"
    ]


def test_an_ambiguous_reference_is_refused_unless_the_name_decides() -> None:
    twins = (_graph("t1", name="Twin one"), _graph("t2", name="Twin two"))
    graph = _with(_graph("a", ["exported-id"]), *twins)
    problems = _messages(graph)
    assert len(problems) == 1
    assert problems[0].endswith(
        "sub-agent graph exported-id v1 is ambiguous: no stored graph has that id, and "
        "graph 'Twin one' (t1 v1), graph 'Twin two' (t2 v1) all have version 1 with its inputs ['x'] "
        "and outputs ['y']; set the node's graph_id to the one meant"
    ), problems
    named = _with(_graph("a", ["exported-id"], label="Twin two"), *twins)
    assert _messages(named) == []
    node = named.nodes_by_id["call0"]
    assert resolve_sub_agent(named, node).id == "t2"


def test_every_autogpt_export_resolves_its_sub_agents_by_version_and_interface() -> None:
    """Real exports: no AgentExecutor graph_id matches a sub-graph id; version and interface do."""
    exports = sorted((project_root().parent / "shared" / "autogpt-agents").glob("*.json"))
    resolved = 0
    for path in exports:
        if path.name.startswith("_"):
            continue
        root = load_graph_file(path)
        for graph in (root, *root.sub_graphs):
            for node in graph.nodes:
                if node.block_id != AgentExecutorBlock.id:
                    continue
                target = resolve_sub_agent(root, node)
                assert target.version == node.input_default["graph_version"]
                assert target.id != node.input_default["graph_id"]
                resolved += 1
    assert resolved == 14


def test_a_wrong_version_is_not_taken_from_the_only_sub_graph() -> None:
    graph = _with(_graph("a", ["s"], call_version=2), _graph("s"))
    with pytest.raises(SubAgentReferenceError, match="no sub-graph of version 2"):
        resolve_sub_agent(graph, graph.nodes_by_id["call0"])


# --- run time: depth limit and one budget, on both engines --------------------------------------------
def test_reference_engine_stops_a_self_calling_sub_agent_at_the_depth_limit() -> None:
    engine = ReferenceEngine(limits=EngineLimits(max_subagent_depth=5))
    result = engine.run_sync(self_calling(), {"x": "hi"})
    assert result.status is RunStatus.FAILED
    assert result.stopped_by == "SubAgentDepthError"
    assert result.error is not None
    assert "would start sub-agent graph 'S' (s v1) at depth 6, deeper than max_subagent_depth 5" in (
        result.error
    )


def test_reference_engine_shares_one_budget_with_every_sub_run() -> None:
    """Before: each sub-agent run had its own cap, so 2 calls per level grew without bound."""
    engine = ReferenceEngine(limits=EngineLimits(max_node_executions=60, max_subagent_depth=1000))
    result = engine.run_sync(self_calling(), {"x": "hi"})
    assert result.status is RunStatus.FAILED
    assert result.stopped_by == "ExecutionCapError"
    assert "stopped after 60 node executions (max_node_executions, one budget" in (result.error or "")


def test_mutual_recursion_through_the_parent_is_bounded() -> None:
    engine = ReferenceEngine(limits=EngineLimits(max_subagent_depth=3))
    result = engine.run_sync(mutual(), {"x": "hi"})
    assert result.stopped_by == "SubAgentDepthError", result.error
    assert result.error == (
        "node call0 of graph 'B' (b v1) would start sub-agent graph 'A' (a v1) at depth 4, deeper than "
        "max_subagent_depth 3 (... graph 'B' (b v1) -> graph 'A' (a v1) -> graph 'B' (b v1) -> "
        "graph 'A' (a v1); a recursive sub-agent?)"
    )


def test_a_chain_within_the_limits_runs() -> None:
    result = ReferenceEngine(limits=EngineLimits(max_subagent_depth=4)).run_sync(chain(4), {"x": "hi"})
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs == {"y": ["<hi>"]}


@pytest.fixture(scope="module")
def instance() -> Any:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


@pytest.mark.parametrize(
    ("limits", "stopped_by"),
    [
        (EngineLimits(max_subagent_depth=4), "SubAgentDepthError"),
        (EngineLimits(max_node_executions=60, max_subagent_depth=1000), "ExecutionCapError"),
    ],
)
def test_compiled_job_bounds_recursion_too(
    instance: DagsterInstance, limits: EngineLimits, stopped_by: str
) -> None:
    job = compile_graph(self_calling(), engine=ReferenceEngine(limits=limits), console_log_level="ERROR")
    run = job.execute_in_process(run_config={"inputs": {"x": "hi"}}, instance=instance, raise_on_error=False)
    summary = read_run_summary(instance, run.run_id)
    assert summary["status"] == "FAILED", summary
    record = instance.get_run_by_id(run.run_id)
    assert record is not None
    assert record.tags.get("agentflow/stopped_by") == stopped_by


def test_compiled_job_steps_share_one_budget(instance: DagsterInstance) -> None:
    """Two sub-agent steps of one job, each within the budget alone, not both together."""
    root = GraphBuilder("Two calls", graph_id="two")
    x = root.node(AgentInputBlock, node_id="in", name="x")
    for i in range(2):
        call = root.node(AgentExecutorBlock, node_id=f"call{i}", graph_id="g1", graph_version=1, **SCHEMAS)
        out = root.node(AgentOutputBlock, node_id=f"out{i}", name=f"y{i}")
        root.link(x, "result", call, "x").link(call, "y", out, "value")
    graph = _with(root, _graph("g1", ["g2"]), _graph("g2"))
    spent = ExecutionBudget(100)
    alone = ReferenceEngine().run_sync(graph, {"x": "hi"}, budget=spent)
    assert alone.status is RunStatus.COMPLETED
    total = spent.used  # the run's 5 node executions and 2 x (3 in g1 + 3 in g2) in its sub-runs
    assert total == 5 + 2 * (3 + 3)
    # Twice with the exact budget: each run starts with a full one (the resource is shared by jobs).
    for budget, expected in ((total, "COMPLETED"), (total, "COMPLETED"), (total - 1, "FAILED")):
        engine = ReferenceEngine(limits=EngineLimits(max_node_executions=budget))
        job = compile_graph(graph, engine=engine, console_log_level="ERROR")
        run = job.execute_in_process(
            run_config={"inputs": {"x": "hi"}}, instance=instance, raise_on_error=False
        )
        assert read_run_summary(instance, run.run_id)["status"] == expected, budget


# --- the command line and the store ----------------------------------------------------------------
def _nested_text(depth: int) -> str:
    """g0 with g1 in its sub_graphs, g1 with g2 in its, ... written as text (json's encoder recurses)."""
    parts = []
    for i in range(depth + 1):
        body = json.dumps(export(_graph(f"g{i}", [f"g{i + 1}"] if i < depth else None).build()))
        parts.append(body[:-1] + (', "sub_graphs": [' if i < depth else ""))
    return "".join(parts) + "}" + "]}" * depth


def _agentflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(AGENTFLOW), *map(str, args)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_validate_reports_2000_deep_files_and_goes_on(tmp_path: Path) -> None:
    good = export(_graph("good").build())
    (tmp_path / "a_good.json").write_text(json.dumps(good))
    (tmp_path / "b_flat_2000.json").write_text(json.dumps(_export(chain(2000))))
    (tmp_path / "c_nested_2000.json").write_text(_nested_text(2000))
    (tmp_path / "d_nested_40.json").write_text(_nested_text(40))
    (tmp_path / "e_recursive.json").write_text(json.dumps(_export(mutual())))
    (tmp_path / "z_good.json").write_text(json.dumps(good))
    proc = _agentflow("validate", tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines if not line.startswith("  -")] == [
        f"OK   {tmp_path}/a_good.json",
        f"FAIL {tmp_path}/b_flat_2000.json",
        f"FAIL {tmp_path}/c_nested_2000.json",
        f"FAIL {tmp_path}/d_nested_40.json",
        f"FAIL {tmp_path}/e_recursive.json",
        f"OK   {tmp_path}/z_good.json",
    ], proc.stdout
    text = proc.stdout
    assert "sub-agents nest 2000 levels deep" in text
    assert f"file {tmp_path}/c_nested_2000.json: is nested too deeply to read" in text
    assert "graph 'G32' (g32 v1): 'sub_graphs' nest more than 32 levels deep" in text
    assert "sub-agent recursion: graph 'A' (a v1) calls itself through" in text


def test_import_refuses_recursion_and_the_store_skips_a_recursive_graph(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    path = tmp_path / "recursive.json"
    path.write_text(json.dumps(_export(self_calling())))
    proc = _agentflow("import", "--store-dir", store_dir, path)
    assert proc.returncode == 1
    assert "sub-agent recursion: graph 'S' (s v1) calls itself" in proc.stdout
    assert not store_dir.exists() or not list(store_dir.glob("*.json"))  # nothing stored
    # A recursive graph put into the store by hand is reported and skipped when the code location
    # loads; the good graph next to it still becomes a job.
    store_dir.mkdir(exist_ok=True)
    (store_dir / "recursive.json").write_text(json.dumps(_export(mutual())))
    (store_dir / "good.json").write_text(json.dumps(export(_graph("good").build())))
    catalog = build_catalog(DirectoryGraphStore(store_dir))
    assert [ref.graph_id for ref in catalog.refs.values()] == ["good"]
    assert any("sub-agent recursion: graph 'A' (a v1)" in p for p in catalog.problems), catalog.problems


def test_run_command_takes_the_limits(tmp_path: Path) -> None:
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(_export(chain(3))))
    refused = _agentflow("run", path, "--input", "x=hi", "--max-subagent-depth", "2")
    assert refused.returncode == 1
    assert "sub-agents nest 3 levels deep" in refused.stderr + refused.stdout
    ran = _agentflow("run", path, "--input", "x=hi", "--max-subagent-depth", "3", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads(ran.stdout)["outputs"] == {"y": ["<hi>"]}
    capped = _agentflow("run", path, "--input", "x=hi", "--max-node-executions", "5", "--json")
    assert capped.returncode == 1
    assert "stopped after 5 node executions" in json.loads(capped.stdout)["error"]
