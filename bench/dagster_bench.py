"""Dagster-side figures: compiled per-node overhead against a hand-written job of the same shape,
fused mode, and code-location load time with many stored graphs.

Run: .venv/bin/python -m bench.dagster_bench [--postgres URL] [--skip-load]
Prints figures only; it never asserts timings. Needs nothing running for SQLite; --postgres takes a
database URL whose tables it may create (a fresh database is best).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from dagster import DagsterInstance, in_process_executor, job, mem_io_manager, op

from agent_defs.engine import EngineLimits, ReferenceEngine
from agent_defs.graph.builder import GraphBuilder
from agent_defs.instance import prepare_dagster_home
from agent_defs.jobs.compiler import compile_graph
from agent_defs.paths import project_root
from bench.graphs import write_graphs
from blocks.library.maths import CalculatorBlock


def calculator_chain(length: int):
    b = GraphBuilder(f"bench chain {length}")
    prev = b.node(CalculatorBlock, node_id="n0", operation="Add", a=0, b=1)
    for i in range(1, length):
        node = b.node(CalculatorBlock, node_id=f"n{i}", operation="Add", b=1)
        b.link(prev, "result", node, "a")
        prev = node
    return b.build()


def hand_written_chain(length: int):
    """The same shape written by hand: N ops, each adding one, in-process, in-memory IO."""

    @op
    def first() -> float:
        return 1.0

    ops = [first]
    for i in range(1, length):

        @op(name=f"add_{i}")
        def add(value: float) -> float:
            return value + 1

        ops.append(add)

    @job(
        name=f"hand_written_chain_{length}",
        executor_def=in_process_executor,
        resource_defs={"io_manager": mem_io_manager},
    )
    def chain() -> None:
        value = ops[0]()
        for step in ops[1:]:
            value = step(value)

    return chain


def best_run_seconds(run: Callable[[], bool], repeat: int) -> float:
    run()  # warm-up: imports, first-use caches
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        assert run()
        best = min(best, time.perf_counter() - started)
    return best


def per_node_overhead(instance: DagsterInstance, label: str, repeat: int) -> None:
    totals: dict[int, tuple[float, float]] = {}
    for length in (10, 100):
        compiled = compile_graph(calculator_chain(length), console_log_level="ERROR")
        hand = hand_written_chain(length)
        quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}

        def run_compiled(job=compiled) -> bool:
            return job.execute_in_process(instance=instance).success

        def run_hand(job=hand, config=quiet) -> bool:
            return job.execute_in_process(instance=instance, run_config=config).success

        compiled_s = best_run_seconds(run_compiled, repeat)
        hand_s = best_run_seconds(run_hand, repeat)
        print(
            f"{label:<31} chain of {length:>3}: compiled {compiled_s * 1000 / length:6.1f} ms/node, "
            f"hand-written {hand_s * 1000 / length:6.1f} ms/node, ratio {compiled_s / hand_s:4.2f}"
        )
        totals[length] = (compiled_s, hand_s)
    # The slope between the two lengths is the cost of one more node, without the fixed per-run
    # cost (run start, the summary step) that the short chain spreads over only ten nodes.
    compiled_slope = (totals[100][0] - totals[10][0]) / 90
    hand_slope = (totals[100][1] - totals[10][1]) / 90
    print(
        f"{label:<31} marginal cost of one node: compiled {compiled_slope * 1000:5.1f} ms, "
        f"hand-written {hand_slope * 1000:5.1f} ms, ratio {compiled_slope / hand_slope:4.2f}"
    )


def fused(instance: DagsterInstance, repeat: int) -> None:
    length = 1_000
    graph = calculator_chain(length)
    engine = ReferenceEngine(limits=EngineLimits(max_node_executions=10 * length))
    fused_job = compile_graph(graph, fused=True, engine=engine, console_log_level="ERROR")
    seconds = best_run_seconds(lambda: fused_job.execute_in_process(instance=instance).success, repeat)
    print(f"fused chain of {length}: {seconds * 1000 / length:.3f} ms per node execution, events included")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job_count(port: int) -> int:
    query = "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = json.load(response)
    nodes = data["data"]["repositoriesOrError"].get("nodes", [])
    return sum(len(n["jobs"]) for n in nodes)


def _time_listing(env: dict[str, str], count: int, label: str) -> None:
    """Seconds from starting dagster-webserver until GraphQL lists every job."""
    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(project_root() / "workspace.yaml"),
        ],
        env=env,
        cwd=project_root(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        listed = 0
        while time.perf_counter() - started < 300:
            try:
                listed = _job_count(port)
            except OSError:
                listed = 0
            if listed >= count:
                break
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        print(
            f"code location with {count:>5} graphs of ~20 nodes ({label}): all {listed} jobs listed after {elapsed:.1f} s"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)


def load_time(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        agents = Path(tmp) / "agents"
        write_graphs(agents, count)
        env = {
            **os.environ,
            "AGENTFLOW_AGENTS_DIR": str(agents),
            "AGENTFLOW_DAGSTER_HOME": str(Path(tmp) / "home"),
        }
        env.pop("DAGSTER_PG_URL", None)
        home = subprocess.run(
            [sys.executable, "-m", "agent_defs.instance"], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        env["DAGSTER_HOME"] = home
        for start in ("first start", "restart"):
            _time_listing(env, count, start)
        one = f"Bench_graph_{count - 1}_v1"
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", f"import agent_defs; agent_defs.agentflow.get_job({one!r})"],
            env=env,
            cwd=project_root(),
            check=True,
            capture_output=True,
        )
        print(
            f"  loading one job in a fresh process (what a run worker does): {time.perf_counter() - started:.2f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", metavar="URL", help="also measure on a dagster-postgres instance")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # The project's own instance config (dagster.yaml) on its embedded default, SQLite.
        os.environ.pop("DAGSTER_PG_URL", None)
        os.environ["AGENTFLOW_DAGSTER_HOME"] = tmp
        prepare_dagster_home()
        with DagsterInstance.get() as sqlite:
            per_node_overhead(sqlite, "SQLite (agentflow instance)", args.repeat)
            fused(sqlite, args.repeat)
    if args.postgres:
        with tempfile.TemporaryDirectory() as tmp:
            stock = {"storage": {"postgres": {"postgres_url": args.postgres}}}
            with DagsterInstance.local_temp(tmp, overrides=stock) as postgres:
                per_node_overhead(postgres, "Postgres (stock dagster-postgres)", args.repeat)
        with tempfile.TemporaryDirectory() as tmp:
            # The project's own instance config: dagster.yaml plus the pooled event log storage.
            os.environ.update(DAGSTER_PG_URL=args.postgres, AGENTFLOW_DAGSTER_HOME=tmp)
            prepare_dagster_home()
            with DagsterInstance.get() as postgres:
                per_node_overhead(postgres, "Postgres (agentflow instance)", args.repeat)
    if not args.skip_load:
        for count in (100, 1_000):
            load_time(count)


if __name__ == "__main__":
    main()
