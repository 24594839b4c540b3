"""One large graph never stops the code location (issue 11, defect 4).

A linear graph of a few thousand nodes validates and runs on the reference engine, but Dagster's
job construction recurses once per op along a dependency chain: per node, it raised RecursionError
when the code location loaded (whether 1,600-2,400 nodes did depended on the process). Graphs deeper
than the documented limit are compiled fused; any graph whose job still cannot be built is reported
and skipped, and every other graph loads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance

from agent_defs.compile.mode import DEFAULT_MAX_OP_DEPTH, MAX_OP_DEPTH_ENV, choose_compile, op_depth
from agent_defs.compile.plan import OpKind, plan_compile
from agent_defs.engine import EngineLimits, ReferenceEngine
from agent_defs.graph import load_graph_file
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from agent_defs.jobs.catalog import PreflightCache
from agent_defs.jobs.compiler import SUMMARY_OP, TAG_PREFIX, compile_graph
from agent_defs.jobs.results import read_run_summary
from agent_defs.paths import agents_dir
from agent_defs.store.directory import DirectoryGraphStore
from bench.graphs import export
from blocks.library.io import AgentNumberInputBlock, AgentOutputBlock
from blocks.library.maths import CalculatorBlock

BIN = Path(sys.executable).parent
BEYOND_LIMIT = 3_000  # nodes: per node, the code location failed to load for most hash seeds
# Per node, Dagster's walk (over its ops in set order, by memory address) recurses along runs of the
# chain that grow with the graph: 10,000 nodes overflowed in every process tried (22 of 22), 3,000
# in most.
UNBUILDABLE = 10_000
CHAIN_ID = "1a7e0000-0000-4000-8000-00000000c4a1"


def chain(nodes: int, name: str = "Long chain") -> Graph:
    """Input x -> (nodes - 2) calculators adding 1 -> output `total`: a per-node job `nodes` ops deep."""
    b = GraphBuilder(name, graph_id=CHAIN_ID)
    prev = b.node(AgentNumberInputBlock, node_id="x", name="x", value=0)
    pin = "result"
    for i in range(nodes - 2):
        step = b.node(CalculatorBlock, node_id=f"add{i}", operation="Add", b=1)
        b.link(prev, pin, step, "a")
        prev, pin = step, "result"
    out = b.node(AgentOutputBlock, node_id="out", name="total")
    b.link(prev, pin, out, "value")
    return b.build()


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as ephemeral:
        yield ephemeral


def test_op_depth_is_the_longest_chain_and_the_limit_chooses_the_mode() -> None:
    graph = chain(10)
    assert op_depth(plan_compile(graph)) == 10
    assert not choose_compile(graph, depth_limit=10).fused
    deep = choose_compile(graph, depth_limit=9)
    assert deep.fused and [op.kind for op in deep.plan.ops] == [OpKind.FUSED]
    assert "10 ops deep, over the limit of 9 (AGENTFLOW_MAX_OP_DEPTH)" in deep.fused_because
    # A region counts once, however many nodes it runs: count_to_n is its inputs, then one region.
    assert op_depth(plan_compile(load_graph_file(agents_dir() / "count_to_n.json"))) == 2


def test_a_graph_at_the_limit_runs_as_one_op_per_node(instance: DagsterInstance) -> None:
    graph = chain(DEFAULT_MAX_OP_DEPTH)
    job = compile_graph(graph, console_log_level="WARNING", depth_limit=DEFAULT_MAX_OP_DEPTH)
    assert job.tags[f"{TAG_PREFIX}compile_mode"] == "per_node"
    assert len(job.graph.nodes) == DEFAULT_MAX_OP_DEPTH + 1  # and the summary
    run = job.execute_in_process(run_config={"inputs": {"x": 1}}, instance=instance)
    summary = read_run_summary(instance, run.run_id)
    assert summary["outputs"] == {"total": [float(DEFAULT_MAX_OP_DEPTH - 1)]}
    assert sum(summary["node_execution_counts"].values()) == DEFAULT_MAX_OP_DEPTH


def test_a_graph_beyond_the_limit_is_compiled_fused_and_agrees_with_the_engine(
    instance: DagsterInstance,
) -> None:
    graph = chain(BEYOND_LIMIT)
    job = compile_graph(graph, console_log_level="WARNING", depth_limit=DEFAULT_MAX_OP_DEPTH)
    assert job.tags[f"{TAG_PREFIX}compile_mode"] == "fused"
    assert [n.name for n in job.graph.nodes if n.name != SUMMARY_OP] == ["Long_chain_fused"]
    assert f"{BEYOND_LIMIT:,} ops deep" in (job.description or "")
    run = job.execute_in_process(run_config={"inputs": {"x": 5}}, instance=instance)
    summary = read_run_summary(instance, run.run_id)
    reference = ReferenceEngine(limits=EngineLimits()).run_sync(graph, {"x": 5})
    assert summary["outputs"] == reference.outputs == {"total": [float(BEYOND_LIMIT + 3)]}
    assert summary["node_execution_counts"] == reference.execution_counts()


def test_validate_says_which_graphs_are_compiled_fused(tmp_path: Path) -> None:
    (tmp_path / "deep.json").write_text(json.dumps(export(chain(DEFAULT_MAX_OP_DEPTH + 1))), encoding="utf-8")
    shutil.copy(agents_dir() / "count_to_n.json", tmp_path / "count_to_n.json")
    proc = subprocess.run(
        [BIN / "agentflow", "validate", tmp_path], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    deep = lines.index(f"OK   {tmp_path / 'deep.json'} ('Long chain' v1)")
    assert lines[deep + 1] == (
        "  - its Dagster job is compiled fused (one op, reference engine): its per-node job would be "
        f"{DEFAULT_MAX_OP_DEPTH + 1} ops deep, over the limit of {DEFAULT_MAX_OP_DEPTH} "
        "(AGENTFLOW_MAX_OP_DEPTH) that Dagster's job construction handles"
    )
    assert sum("compiled fused" in line for line in lines) == 1  # count_to_n is not
    bad = subprocess.run(
        [BIN / "agentflow", "validate", tmp_path],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, MAX_OP_DEPTH_ENV: "deep"},
    )
    assert bad.returncode != 0 and "AGENTFLOW_MAX_OP_DEPTH='deep': not a whole number" in bad.stderr


# --- the real code location, in its own process (`dagster job list -m agent_defs`) ------------------


def store_with_a_long_chain(root: Path, nodes: int) -> Path:
    agents = root / "agents"
    agents.mkdir()
    shutil.copy(agents_dir() / "count_to_n.json", agents / "count_to_n.json")
    (agents / "long_chain.json").write_text(json.dumps(export(chain(nodes))), encoding="utf-8")
    (root / "home").mkdir()
    return agents


def list_jobs(root: Path, **env: str) -> tuple[list[str], str]:
    """The job names the code location lists, and everything it printed."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTFLOW_", "DAGSTER_"))}
    variables.update(AGENTFLOW_AGENTS_DIR=str(root / "agents"), DAGSTER_HOME=str(root / "home"), **env)
    proc = subprocess.run(
        [BIN / "dagster", "job", "list", "-m", "agent_defs"],
        capture_output=True,
        text=True,
        env=variables,
        timeout=180,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    jobs = [
        line.removeprefix("Job: ").strip() for line in proc.stdout.splitlines() if line.startswith("Job: ")
    ]
    return sorted(jobs), output


@pytest.mark.parametrize("seed", ["0", "1"])  # both failed to load before
def test_the_code_location_loads_a_graph_beyond_the_limit_fused(tmp_path: Path, seed: str) -> None:
    store_with_a_long_chain(tmp_path, BEYOND_LIMIT)
    jobs, output = list_jobs(tmp_path, PYTHONHASHSEED=seed)
    assert jobs == ["Count_to_N_v1", "Long_chain_v1"], output
    assert f"graph 'Long chain' ({CHAIN_ID} v1) compiled fused" in output, output
    assert "Traceback" not in output and "RecursionError" not in output, output


def test_a_graph_whose_job_cannot_be_built_is_skipped_and_the_others_load(tmp_path: Path) -> None:
    agents = store_with_a_long_chain(tmp_path, UNBUILDABLE)
    # A limit past what Dagster handles: the per-node build of the long chain raises RecursionError.
    jobs, output = list_jobs(tmp_path, **{MAX_OP_DEPTH_ENV: "100000"})
    assert jobs == ["Count_to_N_v1"], output
    report = next((line for line in output.splitlines() if "Long chain" in line), "")
    assert (
        f"graph skipped: graph 'Long chain' ({CHAIN_ID} v1): cannot be compiled (job not built): " in report
    )
    assert "RecursionError: maximum recursion depth exceeded" in report, output
    hint = f"it can still run on the reference engine: `agentflow run {agents / 'long_chain.json'}`"
    assert hint in report, output
    assert "Traceback" not in output, output
    # ...and the command it names does run it.
    proc = subprocess.run(
        [BIN / "agentflow", "run", agents / "long_chain.json", "--input", "x=1", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home")},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1])["outputs"] == {"total": [float(UNBUILDABLE - 1)]}


def test_a_stale_preflight_cache_cannot_stop_the_code_location(tmp_path: Path) -> None:
    """The cache vouches for the long chain under a limit Dagster cannot build: the job Dagster asks
    for is built fused instead, and the code location still loads every graph."""
    store_with_a_long_chain(tmp_path, UNBUILDABLE)
    cache = PreflightCache(tmp_path / "home" / PreflightCache.FILE_NAME, depth_limit=100_000)
    for ref in DirectoryGraphStore(tmp_path / "agents").refs():
        cache.put(ref, [])
    cache.save()
    jobs, output = list_jobs(tmp_path, **{MAX_OP_DEPTH_ENV: "100000"})
    assert jobs == ["Count_to_N_v1", "Long_chain_v1"], output
    assert f"graph 'Long chain' ({CHAIN_ID} v1): job not built (RecursionError" in output, output
    assert "compiled fused instead" in output, output
