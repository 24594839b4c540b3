"""`agentflow metrics` against a known set of runs: the endpoint runs as its own process, reads the
runs other processes recorded in a Dagster home (SQLite) and the request queue in a real Redis, and
every value it reports is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from prometheus_client.parser import text_string_to_metric_families
from support_processes import free_port, stop_process_group

from agent_defs.engine import EngineLimits, ReferenceEngine, RunOptions
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from agent_defs.jobs.compiler import compile_graph
from agent_defs.requests import RequestQueue
from bench.graphs import export
from blocks.library.io import AgentOutputBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.time_blocks import CountdownTimerBlock
from blocks.library.xml_parser import XMLParserBlock

BIN = Path(sys.executable).parent
XML_ID = XMLParserBlock.id


def _adder() -> Graph:
    b = GraphBuilder("metrics adder")
    calc = b.node(CalculatorBlock, node_id="calc", operation="Add", a=1, b=2)
    out = b.node(AgentOutputBlock, node_id="out", name="sum")
    b.link(calc, "result", out, "value")
    return b.build()


def _xml(text: str, name: str) -> Graph:
    """XMLParser -> parsed / error outputs, next to an independent Calculator."""
    b = GraphBuilder(name)
    xml = b.node(XMLParserBlock, node_id="xml", input_xml=text)
    parsed = b.node(AgentOutputBlock, node_id="parsed", name="parsed")
    err = b.node(AgentOutputBlock, node_id="err", name="error")
    calc = b.node(CalculatorBlock, node_id="calc", operation="Multiply", a=2, b=3)
    out = b.node(AgentOutputBlock, node_id="out", name="product")
    b.link(xml, "parsed_xml", parsed, "value").link(xml, "error", err, "value")
    b.link(calc, "result", out, "value")
    return b.build()


def _runaway() -> Graph:
    """A loop stopped by the execution cap: the run FAILS in Dagster."""
    b = GraphBuilder("metrics runaway")
    start = b.node(CalculatorBlock, node_id="start", operation="Add", a=0, b=0)
    inc = b.node(CalculatorBlock, node_id="inc", operation="Add", b=1)
    b.link(start, "result", inc, "a").link(inc, "result", inc, "a")
    return b.build()


def _expected(graph: Graph, limits: EngineLimits) -> Counter[tuple[str, str]]:
    """What the reference engine (the definition the compiled job agrees with) executes."""
    result = ReferenceEngine(limits=limits).run_sync(graph, {}, RunOptions(run_id="expected"))
    return Counter((e.block_name, e.status.value) for e in result.executions)


@dataclass
class Scraped:
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def has(self, name: str) -> bool:
        return any(key[0] == name for key in self.samples)

    def labelled(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def _scrape(port: int) -> Scraped:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scraped(samples)


class MetricsServer:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(BIN / "agentflow"), "metrics", "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"metrics server did not start: {log_path.read_text()}") from None
                time.sleep(0.2)

    def scrape(self) -> Scraped:
        return _scrape(self.port)

    def stop(self) -> None:
        stop_process_group(self.process)


@dataclass
class Setup:
    env: dict[str, str]
    home: Path
    root: Path
    expected: Counter[tuple[str, str]]
    finished_runs: int
    statuses: Counter[str]
    queue_depth: int
    dead_letters: int
    server: MetricsServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("metrics")
    prefix = f"metrics{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "AGENTFLOW_DAGSTER_HOME": str(root / "home"),
        "AGENTFLOW_REDIS_URL": "redis://127.0.0.1:6379/0",
        "AGENTFLOW_REDIS_PREFIX": prefix,
    }
    env.pop("DAGSTER_PG_URL", None)
    home = subprocess.run(
        [sys.executable, "-m", "agent_defs.instance"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    env["DAGSTER_HOME"] = home

    limits = EngineLimits()
    capped = EngineLimits(max_node_executions=3)
    # (graph, limits, fused, times). The runaway is fused: the engine's cap then bounds the whole run,
    # as in the reference engine (per-node compilation applies it to each step's engine run).
    runs: list[tuple[Graph, EngineLimits, bool, int]] = [
        (_adder(), limits, False, 2),
        (_xml("<<bad", "metrics bad xml"), limits, False, 2),
        (_xml("<a>1</a>", "metrics good xml"), limits, False, 1),
        (_runaway(), capped, True, 1),
    ]
    expected: Counter[tuple[str, str]] = Counter()
    statuses: Counter[str] = Counter()
    with DagsterInstance.from_config(home) as instance:
        for graph, graph_limits, fused, times in runs:
            job = compile_graph(graph, fused=fused, engine=ReferenceEngine(limits=graph_limits))
            for _ in range(times):
                result = job.execute_in_process(instance=instance, raise_on_error=False)
                statuses["SUCCESS" if result.success else "FAILURE"] += 1
                for key, n in _expected(graph, graph_limits).items():
                    expected[key] += n
    assert statuses == {"SUCCESS": 5, "FAILURE": 1}

    client = redis.Redis(decode_responses=True)
    queue = RequestQueue(client, prefix)
    for text in ("not json", '{"graph_id": 1}'):
        queue.enqueue_raw(text)
    for delivery in queue.read("metrics-test", count=10):
        assert delivery.error is not None
        queue.dead_letter(delivery, delivery.error)
    for i in range(3):
        queue.enqueue({"request_id": f"r{i}", "graph_id": "g", "user_id": "u", "inputs": {}})

    server = MetricsServer(env, root / "metrics.log")
    try:
        yield Setup(env, Path(home), root, expected, sum(statuses.values()), statuses, 3, 2, server)
    finally:
        server.stop()
        for key in client.keys(f"{prefix}:*"):
            client.delete(key)
        client.close()


def test_node_executions_count_what_the_runs_did(setup: Setup) -> None:
    scraped = setup.server.scrape()
    found = {
        (dict(labels)["block_type"], dict(labels)["status"]): value
        for labels, value in scraped.labelled("node_executions_total").items()
    }
    assert found == {key: float(n) for key, n in setup.expected.items()}
    # The known figures, spelled out: 2 bad XML runs failed their parser, 1 good one parsed.
    assert found[("XMLParserBlock", "FAILED")] == 2
    assert found[("XMLParserBlock", "COMPLETED")] == 1
    # adder x2 (1 each), bad xml x2 (1 each), good xml (1): 5 Calculator executions, plus the loop's.
    loop = setup.expected[("CalculatorBlock", "COMPLETED")] - 5
    assert loop >= 1
    assert found[("CalculatorBlock", "COMPLETED")] == 5 + loop


def test_block_error_rate_of_the_failing_block(setup: Setup) -> None:
    scraped = setup.server.scrape()
    assert scraped.value("block_error_rate", block_id=XML_ID, block_name="XMLParserBlock") == pytest.approx(
        2 / 3
    )
    assert scraped.value("block_error_rate", block_id=CalculatorBlock.id, block_name="CalculatorBlock") == 0
    assert scraped.value("block_error_rate", block_id=AgentOutputBlock.id, block_name="AgentOutputBlock") == 0


def test_run_gauges_and_duration_histogram(setup: Setup) -> None:
    scraped = setup.server.scrape()
    assert scraped.value("execution_manager_pool_size") == 4
    assert scraped.value("execution_manager_active_runs") == 0
    assert scraped.value("execution_manager_utilization_ratio") == 0
    assert scraped.value("execution_manager_queued_runs") == 0
    assert scraped.value("execution_duration_seconds_count") == setup.finished_runs == 6
    assert scraped.value("execution_duration_seconds_bucket", le="+Inf") == setup.finished_runs
    # Durations are real start-to-end times of those runs, read from the run storage.
    with DagsterInstance.from_config(str(setup.home)) as instance:
        records = instance.get_run_records()
        total = sum(r.end_time - r.start_time for r in records)
        le_1s = sum(r.end_time - r.start_time <= 1.0 for r in records)
    assert scraped.value("execution_duration_seconds_sum") == pytest.approx(total)
    assert scraped.value("execution_duration_seconds_bucket", le="1.0") == le_1s
    assert scraped.value("execution_runs_total", status="SUCCESS") == setup.statuses["SUCCESS"]
    assert scraped.value("execution_runs_total", status="FAILURE") == setup.statuses["FAILURE"]


def test_queue_and_dead_letter_depth(setup: Setup) -> None:
    scraped = setup.server.scrape()
    assert scraped.value("agentflow_redis_up") == 1
    assert scraped.value("agentflow_request_queue_depth") == setup.queue_depth
    assert scraped.value("agentflow_dead_letter_depth") == setup.dead_letters


def test_scrapes_are_stable_each_run_read_once(setup: Setup) -> None:
    """A second scrape (the cached path) reports the same totals as the first."""
    first = setup.server.scrape()
    second = setup.server.scrape()
    assert first.labelled("node_executions_total") == second.labelled("node_executions_total")
    assert first.value("execution_duration_seconds_count") == second.value("execution_duration_seconds_count")


def test_a_new_metrics_process_reports_the_same_values(setup: Setup) -> None:
    """Nothing is accumulated in the endpoint: a second replica (or a restart) agrees."""
    other = MetricsServer(setup.env, setup.root / "metrics2.log")
    try:
        a, b = setup.server.scrape(), other.scrape()
    finally:
        other.stop()
    for name in ("node_executions_total", "block_error_rate", "execution_duration_seconds_count"):
        assert a.labelled(name) == b.labelled(name)


def test_a_redis_outage_leaves_the_queue_gauges_out(setup: Setup) -> None:
    env = {**setup.env, "AGENTFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    server = MetricsServer(env, setup.root / "metrics-no-redis.log")
    try:
        scraped = server.scrape()
    finally:
        server.stop()
    assert scraped.value("agentflow_redis_up") == 0
    assert not scraped.has("agentflow_request_queue_depth")
    assert not scraped.has("agentflow_dead_letter_depth")
    assert scraped.value("execution_duration_seconds_count") == setup.finished_runs
    # The failure is logged as a JSON line naming its source.
    lines = [json.loads(line) for line in (setup.root / "metrics-no-redis.log").read_text().splitlines()]
    assert any(line.get("source") == "redis" and line["level"] == "ERROR" for line in lines)


def _waiting_graph(seconds: int) -> dict[str, Any]:
    b = GraphBuilder("metrics waiter", graph_id=f"metrics-waiter-{uuid.uuid4().hex[:6]}")
    timer = b.node(CountdownTimerBlock, node_id="wait", seconds=seconds, input_message="woke")
    out = b.node(AgentOutputBlock, node_id="out", name="done")
    b.link(timer, "output_message", out, "value")
    return export(b.build())


def test_a_run_in_another_process_is_active_then_counted(setup: Setup) -> None:
    """A run executing in a separate process is an active run while it runs (utilization 1/4), and
    its node executions and duration are counted once it has finished."""
    before = setup.server.scrape()
    path = setup.root / "waiter.json"
    path.write_text(json.dumps(_waiting_graph(seconds=12)))
    worker = subprocess.Popen(
        [str(BIN / "agentflow"), "run", str(path), "--engine", "dagster", "--user", "metrics-user"],
        env=setup.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        with DagsterInstance.from_config(str(setup.home)) as instance:
            while not instance.get_runs_count(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, "the run never started"
                time.sleep(0.2)
        during = setup.server.scrape()
        out, err = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, out + err
    assert during.value("execution_manager_active_runs") == 1
    assert during.value("execution_manager_utilization_ratio") == 0.25
    after = setup.server.scrape()
    assert after.value("execution_manager_active_runs") == 0
    assert (
        after.value("execution_duration_seconds_count")
        == before.value("execution_duration_seconds_count") + 1
    )
    for block in ("CountdownTimerBlock", "AgentOutputBlock"):
        was = before.labelled("node_executions_total").get(
            (("block_type", block), ("status", "COMPLETED")), 0.0
        )
        assert after.value("node_executions_total", block_type=block, status="COMPLETED") == was + 1
    # The run worker wrote one JSON line per node execution, with the run's ids, on stderr.
    nodes = [json.loads(line) for line in err.splitlines() if '"agentflow.node"' in line]
    assert {n["node_id"] for n in nodes} == {"wait", "out"}
    assert all(n["user_id"] == "metrics-user" and n["run_id"] for n in nodes)


def test_output_cache_hits_and_misses_are_exported(setup: Setup) -> None:
    from agent_defs.resilience.cache import OutputCache

    client = redis.Redis(decode_responses=False)
    cache = OutputCache(client, setup.env["AGENTFLOW_REDIS_PREFIX"])
    engine = ReferenceEngine(cache=cache)
    graph = _xml(f"<a>{uuid.uuid4().hex}</a>", "metrics cached xml")  # XMLParser is cacheable
    before = cache.counts()
    for _ in range(3):  # one miss, then two hits
        assert engine.run_sync(graph).status.value == "COMPLETED"
    after = cache.counts()
    assert (after["misses"] - before["misses"], after["hits"] - before["hits"]) == (1, 2)
    scraped = setup.server.scrape()
    assert scraped.value("agentflow_output_cache_hits_total") == after["hits"]
    assert scraped.value("agentflow_output_cache_misses_total") == after["misses"]
    client.close()
