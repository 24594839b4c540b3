"""Reference engine cost per node execution (input validation included).

Run: .venv/bin/python -m bench.engine_bench [--repeat N]
Prints microseconds per node execution for a 1,000-node chain, a 10,000-iteration loop and a
1,000-item StepThroughItems fan-out. It prints figures only; it never asserts timings.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from agent_defs.engine import EngineLimits, ReferenceEngine
from agent_defs.graph.builder import GraphBuilder
from agent_defs.graph.model import Graph
from blocks.library.branching import ConditionBlock
from blocks.library.io import AgentOutputBlock
from blocks.library.iteration import StepThroughItemsBlock
from blocks.library.maths import CalculatorBlock


def chain(length: int = 1_000) -> Graph:
    b = GraphBuilder("chain")
    prev = b.node(CalculatorBlock, node_id="n0", operation="Add", a=0, b=1)
    for i in range(1, length):
        node = b.node(CalculatorBlock, node_id=f"n{i}", operation="Add", b=1)
        b.link(prev, "result", node, "a")
        prev = node
    return b.build()


def loop(iterations: int = 10_000) -> Graph:
    b = GraphBuilder("loop")
    start = b.node(CalculatorBlock, node_id="start", operation="Add", a=0, b=0)
    inc = b.node(CalculatorBlock, node_id="inc", operation="Add", b=1)
    below = b.node(ConditionBlock, node_id="below", operator="<", value2=iterations)
    out = b.node(AgentOutputBlock, node_id="out", name="final")
    b.link(start, "result", inc, "a").link(inc, "result", below, "value1")
    b.link(below, "yes_output", inc, "a").link(below, "no_output", out, "value")
    return b.build()


def fan_out(items: int = 1_000) -> Graph:
    b = GraphBuilder("fan-out")
    step = b.node(StepThroughItemsBlock, node_id="step", items=list(range(items)))
    double = b.node(CalculatorBlock, node_id="double", operation="Multiply", b=2)
    out = b.node(AgentOutputBlock, node_id="out", name="doubled")
    b.link(step, "item", double, "a").link(double, "result", out, "value")
    return b.build()


def measure(name: str, make: Callable[[], Graph], repeat: int) -> None:
    graph = make()
    engine = ReferenceEngine(limits=EngineLimits(max_node_executions=1_000_000))
    best = float("inf")
    executions = 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = engine.run_sync(graph)
        elapsed = time.perf_counter() - started
        executions = sum(result.execution_counts().values())
        assert result.status.value == "COMPLETED", result.error
        best = min(best, elapsed)
    print(f"{name:<34} {executions:>7} node executions  {best * 1e6 / executions:7.1f} us/node execution")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3, help="report the best of N runs")
    args = parser.parse_args()
    measure("chain of 1,000 nodes", chain, args.repeat)
    measure("loop of 10,000 iterations", loop, args.repeat)
    measure("StepThroughItems fan-out of 1,000", fan_out, args.repeat)


if __name__ == "__main__":
    main()
