"""One test per execution rule of DESIGN.md, each on a small hand-built graph."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import Field

from agent_defs.engine import (
    EngineLimits,
    ExecStatus,
    InsufficientBalanceError,
    ReferenceEngine,
    RunControl,
    RunOptions,
    RunStatus,
)
from agent_defs.engine.costs import block_usage_cost, cost_filter_matches
from agent_defs.graph.builder import GraphBuilder
from blocks import (
    REGISTRY,
    Block,
    BlockCost,
    BlockInput,
    BlockOutput,
    BlockRegistry,
    CostType,
    RunContext,
)
from blocks.library.agent import AgentExecutorBlock
from blocks.library.basic import StoreValueBlock
from blocks.library.io import AgentInputBlock, AgentOutputBlock
from blocks.library.iteration import StepThroughItemsBlock
from blocks.library.maths import CalculatorBlock
from blocks.library.text import FillTextTemplateBlock


# --- blocks that exist only in these tests ---------------------------------------------------------
class FailingBlock(Block):
    id = "00000000-0000-4000-8000-000000000001"
    description = "Raises, or yields an error, on demand."

    class Input(BlockInput):
        value: Any = None
        mode: str = "raise"

    class Output(BlockOutput):
        output: Any = None

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        if input.mode == "raise":
            raise ValueError(f"cannot handle {input.value!r}")
        if input.mode == "yield":
            yield "error", f"refused {input.value!r}"
            return
        yield "output", input.value


class GateBlock(Block):
    """Yields once, then waits until the test's gate opens: proves downstream ran before it finished."""

    id = "00000000-0000-4000-8000-000000000002"
    description = "Yields, then waits for a gate."
    gates: dict[str, asyncio.Event] = {}

    class Input(BlockInput):
        gate: str

    class Output(BlockOutput):
        output: Any = None

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "output", "first"
        await asyncio.wait_for(self.gates[input.gate].wait(), timeout=10)
        yield "output", "second"


class OpenGateBlock(Block):
    id = "00000000-0000-4000-8000-000000000003"
    description = "Opens a gate of GateBlock."

    class Input(BlockInput):
        value: Any
        gate: str

    class Output(BlockOutput):
        output: Any = None

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        GateBlock.gates[input.gate].set()
        yield "output", input.value


class ConcurrencyProbeBlock(Block):
    """Records how many probes run at the same time."""

    id = "00000000-0000-4000-8000-000000000004"
    description = "Sleeps briefly, counting concurrent runs."
    running = 0
    peak = 0

    class Input(BlockInput):
        value: Any = None

    class Output(BlockOutput):
        output: Any = None

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        cls = ConcurrencyProbeBlock
        cls.running += 1
        cls.peak = max(cls.peak, cls.running)
        try:
            await asyncio.sleep(0.01)
        finally:
            cls.running -= 1
        yield "output", input.value


class SleepBlock(Block):
    id = "00000000-0000-4000-8000-000000000005"
    description = "Sleeps, then yields."
    started = 0

    class Input(BlockInput):
        seconds: float = Field(default=30.0)

    class Output(BlockOutput):
        output: Any = None

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        SleepBlock.started += 1
        await asyncio.sleep(input.seconds)
        yield "output", "woke"


class CostlyBlock(Block):
    id = "00000000-0000-4000-8000-000000000006"
    description = "Has costs with a filter."
    costs = (
        BlockCost(amount=5, filter={"model": "big"}),
        BlockCost(amount=1),
    )

    class Input(BlockInput):
        model: str = ""
        value: Any = None

    class Output(BlockOutput):
        output: Any = None

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        yield "output", input.value


TEST_BLOCKS = (FailingBlock, GateBlock, OpenGateBlock, ConcurrencyProbeBlock, SleepBlock, CostlyBlock)
REGISTRY_WITH_TEST_BLOCKS = BlockRegistry([*(type(b) for b in REGISTRY), *TEST_BLOCKS])


def engine(**limits: int) -> ReferenceEngine:
    return ReferenceEngine(registry=REGISTRY_WITH_TEST_BLOCKS, limits=EngineLimits(**limits))


def graph_input(b: GraphBuilder, name: str, value: Any = None) -> str:
    return b.node(AgentInputBlock, node_id=f"in_{name}", name=name, value=value)


def graph_output(b: GraphBuilder, name: str) -> str:
    return b.node(AgentOutputBlock, node_id=f"out_{name}", name=name)


# --- rule 1: readiness --------------------------------------------------------------------------------
def test_rule1_node_waits_for_every_linked_pin_even_optional_ones() -> None:
    b = GraphBuilder("readiness")
    x = graph_input(b, "x", 1)
    never = b.node(FailingBlock, mode="pass")  # its `error` pin never fires
    store = b.node(StoreValueBlock, node_id="store")
    b.link(x, "result", store, "input").link(never, "error", store, "data")  # `data` is optional
    out = graph_output(b, "out")
    b.link(store, "output", out, "value")
    result = engine().run_sync(b.build())
    assert result.status is RunStatus.COMPLETED
    assert "store" not in result.execution_counts()
    assert result.outputs == {}


def test_rule1_starting_nodes_and_merged_input_validation() -> None:
    b = GraphBuilder("start")
    calc = b.node(CalculatorBlock, node_id="calc", operation="Add", a=2, b=3)  # no links: starts at once
    # Starts, input invalid: no operation of that name (text into a number pin would be converted).
    bad = b.node(CalculatorBlock, node_id="bad", operation="Modulo", a=2, b=3)
    out = graph_output(b, "sum")
    b.link(calc, "result", out, "value")
    result = engine().run_sync(b.build())
    assert result.outputs == {"sum": [5.0]}
    assert bad not in result.execution_counts()
    assert [s.node_id for s in result.skipped] == ["bad"]
    assert "pin 'operation'" in result.skipped[0].reason


# --- rule 2: FIFO queues per pin ---------------------------------------------------------------------
def test_rule2_values_pair_in_arrival_order_and_are_consumed_once() -> None:
    b = GraphBuilder("fifo")
    xs = b.node(StepThroughItemsBlock, node_id="xs", items=[1, 2, 3])
    ys = b.node(StepThroughItemsBlock, node_id="ys", items=[10, 20])
    add = b.node(CalculatorBlock, node_id="add", operation="Add")
    out = graph_output(b, "sums")
    b.link(xs, "item", add, "a").link(ys, "item", add, "b").link(add, "result", out, "value")
    result = engine().run_sync(b.build())
    assert result.outputs["sums"] == [11.0, 22.0]  # the third x waits for a y that never comes
    assert result.execution_counts()["add"] == 2


# --- rule 3: static links ----------------------------------------------------------------------------
def test_rule3_static_value_is_reused_and_back_fills_waiting_executions() -> None:
    b = GraphBuilder("static")
    items = b.node(StepThroughItemsBlock, node_id="items", items=[1, 2, 3])
    # The static value comes late (three hops), after all three items are waiting for it.
    seed = b.node(CalculatorBlock, node_id="seed", operation="Add", a=50, b=0)
    hop = b.node(CalculatorBlock, node_id="hop", operation="Add", b=50)
    store = b.node(StoreValueBlock, node_id="store")
    add = b.node(CalculatorBlock, node_id="add", operation="Add")
    out = graph_output(b, "sums")
    b.link(seed, "result", hop, "a").link(hop, "result", store, "input")
    b.link(items, "item", add, "a").link(store, "output", add, "b")  # static: StoreValue is static_output
    b.link(add, "result", out, "value")
    result = engine().run_sync(b.build())
    assert sorted(result.outputs["sums"]) == [101.0, 102.0, 103.0]
    assert result.execution_counts()["add"] == 3


def test_rule3_is_static_flag_makes_any_link_static() -> None:
    b = GraphBuilder("static flag")
    items = b.node(StepThroughItemsBlock, node_id="items", items=[1, 2, 3])
    ten = b.node(CalculatorBlock, node_id="ten", operation="Add", a=10, b=0)
    add = b.node(CalculatorBlock, node_id="add", operation="Add")
    out = graph_output(b, "sums")
    b.link(items, "item", add, "a").link(ten, "result", add, "b", static=True).link(
        add, "result", out, "value"
    )
    assert sorted(engine().run_sync(b.build()).outputs["sums"]) == [11.0, 12.0, 13.0]

    plain = GraphBuilder("not static")
    items = plain.node(StepThroughItemsBlock, node_id="items", items=[1, 2, 3])
    ten = plain.node(CalculatorBlock, node_id="ten", operation="Add", a=10, b=0)
    add = plain.node(CalculatorBlock, node_id="add", operation="Add")
    out = graph_output(plain, "sums")
    plain.link(items, "item", add, "a").link(ten, "result", add, "b").link(add, "result", out, "value")
    assert engine().run_sync(plain.build()).outputs["sums"] == [11.0]


# --- rule 4: streaming outputs -------------------------------------------------------------------------
def test_rule4_each_yield_starts_a_downstream_execution_at_once() -> None:
    GateBlock.gates["g1"] = asyncio.Event()
    b = GraphBuilder("streaming")
    gate = b.node(GateBlock, node_id="gate", gate="g1")
    opener = b.node(OpenGateBlock, node_id="opener", gate="g1")
    out = graph_output(b, "seen")
    b.link(gate, "output", opener, "value").link(opener, "output", out, "value")
    # If routing waited for GateBlock to finish, the gate would never open (it times out and fails).
    result = engine().run_sync(b.build())
    assert result.node_error_count == 0
    assert result.outputs["seen"] == ["first", "second"]
    assert result.execution_counts() == {"gate": 1, "opener": 2, "out_seen": 2}


# --- rule 5: dynamic pins ------------------------------------------------------------------------------
def test_rule5_dynamic_source_pins_extract_and_missing_paths_fire_nothing() -> None:
    b = GraphBuilder("dynamic source")
    obj = graph_input(b, "obj", {"user": {"name": "Ada"}, "tags": ["a", "b"]})
    name, tag, missing, whole = (graph_output(b, n) for n in ("name", "tag", "missing", "whole"))
    b.link(obj, "result_#_user_#_name", name, "value")
    b.link(obj, "result_#_tags_$_1", tag, "value")
    b.link(obj, "result_#_nope", missing, "value")
    b.link(obj, "result", whole, "value")
    result = engine().run_sync(b.build())
    assert result.outputs["name"] == ["Ada"]
    assert result.outputs["tag"] == ["b"]
    assert "missing" not in result.outputs
    assert result.outputs["whole"] == [{"user": {"name": "Ada"}, "tags": ["a", "b"]}]


def test_rule5_dynamic_sink_pins_merge_into_the_base_input() -> None:
    b = GraphBuilder("dynamic sink")
    who = graph_input(b, "who", "Ada")
    what = graph_input(b, "what", "engines")
    text = b.node(FillTextTemplateBlock, node_id="text", format="{{ who }} likes {{ what }}")
    out = graph_output(b, "text")
    b.link(who, "result", text, "values_#_who").link(what, "result", text, "values_#_what")
    b.link(text, "output", out, "value")
    assert engine().run_sync(b.build()).outputs["text"] == ["Ada likes engines"]


# --- rule 6: errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["raise", "yield"])
def test_rule6_failed_node_fires_error_pin_and_run_completes(mode: str) -> None:
    b = GraphBuilder("errors")
    x = graph_input(b, "x", 7)
    fail = b.node(FailingBlock, node_id="fail", mode=mode)
    fine = b.node(StoreValueBlock, node_id="fine")
    err_out, ok_out = graph_output(b, "error"), graph_output(b, "ok")
    b.link(x, "result", fail, "value").link(fail, "error", err_out, "value")
    b.link(x, "result", fine, "input").link(fine, "output", ok_out, "value")
    result = engine().run_sync(b.build())
    assert result.status is RunStatus.COMPLETED
    assert result.node_error_count == 1
    assert result.failed_nodes() == {"fail": 1}
    assert result.outputs["ok"] == [7]
    assert result.outputs["error"] == ["cannot handle 7" if mode == "raise" else "refused 7"]


def test_rule6_insufficient_balance_stops_the_run_as_failed() -> None:
    class Broke:
        def before_node(self, execution: Any, block: Block) -> None:
            if block.name == "CalculatorBlock":
                raise InsufficientBalanceError("user u1 has 0 credits left")

        def on_output(self, execution: Any, pin: str, value: Any) -> None:
            pass

        def after_node(self, execution: Any, block: Block) -> None:
            pass

    b = GraphBuilder("broke")
    calc = b.node(CalculatorBlock, node_id="calc", operation="Add", a=1, b=1)
    out = graph_output(b, "sum")
    b.link(calc, "result", out, "value")
    eng = ReferenceEngine(observer_factory=lambda graph, options: Broke())
    result = eng.run_sync(b.build())
    assert result.status is RunStatus.FAILED
    assert "0 credits" in (result.error or "")
    assert result.outputs == {}


# --- rule 7: cycles and the execution cap -----------------------------------------------------------------
def test_rule7_loops_end_when_a_branch_stops_and_runaway_loops_hit_the_cap() -> None:
    from blocks.library.branching import ConditionBlock

    b = GraphBuilder("loop")
    start = b.node(CalculatorBlock, node_id="start", operation="Add", a=0, b=0)
    inc = b.node(CalculatorBlock, node_id="inc", operation="Add", b=1)
    below = b.node(ConditionBlock, node_id="below", operator="<", value2=4)
    out = graph_output(b, "final")
    b.link(start, "result", inc, "a").link(inc, "result", below, "value1")
    b.link(below, "yes_output", inc, "a").link(below, "no_output", out, "value")
    result = engine().run_sync(b.build())
    assert result.status is RunStatus.COMPLETED
    assert result.execution_counts()["inc"] == 4
    assert result.outputs["final"] == [4]

    runaway = GraphBuilder("runaway")
    start = runaway.node(CalculatorBlock, node_id="start", operation="Add", a=0, b=0)
    inc = runaway.node(CalculatorBlock, node_id="inc", operation="Add", b=1)
    runaway.link(start, "result", inc, "a").link(inc, "result", inc, "a")
    result = engine(max_node_executions=50).run_sync(runaway.build())
    assert result.status is RunStatus.FAILED
    assert "50 node executions" in (result.error or "")
    assert sum(result.execution_counts().values()) <= 50


# --- rule 8: graph inputs and list-valued outputs --------------------------------------------------------
def test_rule8_inputs_by_name_defaults_and_none_values() -> None:
    b = GraphBuilder("io")
    given = graph_input(b, "given", "default-1")
    defaulted = graph_input(b, "defaulted", "default-2")
    empty = graph_input(b, "empty")  # no value at all: AgentInput yields nothing
    for name, node in (("given", given), ("defaulted", defaulted), ("empty", empty)):
        out = graph_output(b, name)
        b.link(node, "result", out, "value")
    items = b.node(StepThroughItemsBlock, node_id="items", items=["a", "b"])
    many = graph_output(b, "many")
    b.link(items, "item", many, "value")
    result = engine().run_sync(b.build(), {"given": "from-run"})
    assert result.outputs == {"given": ["from-run"], "defaulted": ["default-2"], "many": ["a", "b"]}


# --- rule 9: sub-agents -----------------------------------------------------------------------------------
def _child_graph(graph_id: str = "child", version: int = 3) -> Any:
    c = GraphBuilder("Shout", graph_id=graph_id, version=version)
    word = graph_input(c, "word")
    text = c.node(FillTextTemplateBlock, node_id="shout", format="{{ w | upper }}!")
    out = graph_output(c, "shouted")
    c.link(word, "result", text, "values_#_w").link(text, "output", out, "value")
    return c.build()


def _parent_with(child: Any, executor_graph_id: str) -> Any:
    p = GraphBuilder("Parent")
    word = graph_input(p, "word", "hello")
    agent = p.node(
        AgentExecutorBlock,
        node_id="agent",
        graph_id=executor_graph_id,
        graph_version=3,
        user_id="someone-else",
        input_schema={"properties": {"word": {"type": "string"}}, "required": ["word"]},
        output_schema={"properties": {"shouted": {"type": "string"}}},
    )
    out = graph_output(p, "result")
    p.link(word, "result", agent, "word").link(agent, "shouted", out, "value")
    p.sub_graph(child)
    return p.build()


def test_rule9_sub_agent_runs_child_and_yields_its_outputs() -> None:
    result = engine().run_sync(_parent_with(_child_graph(), "child"))
    assert result.status is RunStatus.COMPLETED, result.error
    assert result.outputs == {"result": ["HELLO!"]}


def test_rule9_sub_agent_found_by_version_and_interface_when_graph_id_matches_nothing() -> None:
    # As in real exports: the node's graph_id is the author's library copy, not the sub-graph's id.
    result = engine().run_sync(_parent_with(_child_graph(graph_id="stored-under-another-id"), "exported-id"))
    assert result.outputs == {"result": ["HELLO!"]}


def test_rule9_cancelling_the_parent_cancels_the_child() -> None:
    c = GraphBuilder("Sleeper", graph_id="sleeper", version=1)
    c.node(SleepBlock, node_id="sleep", seconds=30)
    p = GraphBuilder("Parent")
    p.node(AgentExecutorBlock, node_id="agent", graph_id="sleeper", graph_version=1)
    p.sub_graph(c.build())
    control = RunControl()
    SleepBlock.started = 0

    async def scenario() -> Any:
        task = asyncio.create_task(engine().run(p.build(), {}, RunOptions(), control))
        while SleepBlock.started == 0:
            await asyncio.sleep(0.01)
        control.cancel("stopped by test")
        result = await asyncio.wait_for(task, timeout=5)
        # The child's driver and its sleeping node must be gone too, not left running.
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return result, leftover

    result, leftover = asyncio.run(scenario())
    assert result.status is RunStatus.TERMINATED
    assert [e.status for e in result.executions] == [ExecStatus.TERMINATED]
    assert leftover == []


# --- node concurrency, cancellation, masks, costs, stats ---------------------------------------------------
@pytest.mark.parametrize("limit", [1, 3])
def test_node_concurrency_is_bounded_per_run(limit: int) -> None:
    b = GraphBuilder("parallel")
    for i in range(6):
        b.node(ConcurrencyProbeBlock, node_id=f"p{i}", value=i)
    ConcurrencyProbeBlock.peak = 0
    result = engine(node_concurrency=limit).run_sync(b.build())
    assert sum(result.execution_counts().values()) == 6
    assert ConcurrencyProbeBlock.peak == limit


def test_cancel_terminates_running_and_queued_executions() -> None:
    b = GraphBuilder("cancel")
    for i in range(3):
        b.node(SleepBlock, node_id=f"s{i}", seconds=30)
    control = RunControl()
    SleepBlock.started = 0

    async def scenario() -> Any:
        task = asyncio.create_task(engine(node_concurrency=1).run(b.build(), {}, RunOptions(), control))
        while SleepBlock.started == 0:
            await asyncio.sleep(0.01)
        control.cancel("user asked")
        return await asyncio.wait_for(task, timeout=5)

    result = asyncio.run(scenario())
    assert result.status is RunStatus.TERMINATED
    assert result.error == "user asked"
    assert sorted(e.status.value for e in result.executions) == ["TERMINATED"] * 3


def test_input_mask_overrides_node_input() -> None:
    b = GraphBuilder("mask")
    calc = b.node(CalculatorBlock, node_id="calc", operation="Add", a=1, b=1)
    out = graph_output(b, "sum")
    b.link(calc, "result", out, "value")
    result = engine().run_sync(b.build(), {}, RunOptions(input_masks={"calc": {"a": 40, "b": 2}}))
    assert result.outputs["sum"] == [42.0]


def test_cost_filters_and_recorded_node_stats() -> None:
    assert cost_filter_matches({"model": "big"}, {"model": "big", "other": 1})
    assert not cost_filter_matches({"model": "big"}, {"model": "small"})
    assert cost_filter_matches({"model": None}, {"model": ""})  # empty, None and "" are equal
    assert cost_filter_matches({"model": ""}, {})
    costly = REGISTRY_WITH_TEST_BLOCKS.get(CostlyBlock.id)
    assert costly is not None
    assert block_usage_cost(costly, {"model": "big"}) == 5
    assert block_usage_cost(costly, {"model": "tiny"}) == 1
    per_byte = BlockCost(amount=2, type=CostType.BYTE)
    assert per_byte.type is CostType.BYTE

    b = GraphBuilder("costs")
    big = b.node(CostlyBlock, node_id="big", model="big", value="x" * 10)
    small = b.node(CostlyBlock, node_id="small", value=1)
    out = graph_output(b, "out")
    b.link(big, "output", out, "value").link(small, "output", out, "value")
    result = engine().run_sync(b.build())
    by_node = {e.node_id: e for e in result.executions}
    assert by_node["big"].cost == 5 and by_node["small"].cost == 1
    assert result.cost == 6
    for ex in result.executions:
        assert ex.status is ExecStatus.COMPLETED
        assert ex.ended_at >= ex.started_at > 0
        assert ex.input_size > 0 and ex.output_size > 0
    assert by_node["big"].input_size > by_node["small"].input_size
