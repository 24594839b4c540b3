"""Templates (FillTextTemplate, AgentOutput's format) cannot burn unbounded CPU or memory: each attack
fails its node with an error naming the limit, and a node's timeout really stops a runaway render."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from support_blocks import run_block

from agent_defs.engine import ExecStatus, ReferenceEngine, RunOptions
from agent_defs.graph.builder import GraphBuilder
from blocks.library.io import AgentOutputBlock
from blocks.library.text import FillTextTemplateBlock
from blocks.templating import render_template_async

FILL = FillTextTemplateBlock()

# (template, what the error must say): the attacks first, then the other ways to grow.
ATTACKS = {
    "nested range loops": (
        "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}",
        "more than 500,000 steps",
    ),
    "exponential macro": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "more than 500,000 steps",
    ),
    "center(10**9)": ("{{ 'x'|center(10**9) }}", "center(): a width of 1,000,000,000"),
    "str.center method": ("{{ 'x'.center(10**9) }}", "center(): a width of 1,000,000,000"),
    "infinite macro recursion": (
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
        "nested more than 50",
    ),
    "format width": ("{{ '{:>999999999}'.format(1) }}", "width or precision of 999,999,999"),
    "format width argument": ("{{ '{:>{}}'.format(1, 10**9) }}", "width of 1,000,000,000"),
    "printf width": ("{{ '%999999999d' % 1 }}", "width or precision of 999,999,999"),
    "printf width argument": ("{{ '%*d' % (10**9, 1) }}", "a width of 1,000,000,000"),
    "format filter width": ("{{ 1|format('%999999999d') }}", "width or precision of 999,999,999"),
    "~ doubling": (
        "{% set a = 'xxxxxxxxxxxxxxxx' %}" + "{% set a = a ~ a ~ a ~ a %}" * 16 + "{{ a|length }}",
        "a `~` concatenation would be at least 16,777,216 characters",
    ),
    "replace growth": (
        "{{ ('x' * 10000)|replace('x', 'y' * 10000) }}",
        "replace() would be at least 100,000,000",
    ),
    "join growth": ("{{ range(10000)|join('x' * 10000) }}", "join() would be at least 100,000,008"),
    "list doubling": (
        "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}",
        "the list grown by extend() would hold 1,048,576 items",
    ),
    "int squaring": (
        "{% set l = [7] %}{% for i in range(40) %}{{ l.append(l[-1] * l[-1]) }}{% endfor %}",
        "a product of more than 100,000 bits",
    ),
    "slice into parts": ("{{ [1]|slice(10**9)|list }}", "slice() into 1,000,000,000 parts"),
    "macro output size": (
        "{% macro m() %}{% for i in range(10000) %}{{ big }}{% endfor %}{% endmacro %}{{ m()|length }}",
        "a macro's or block's rendered text would be at least 50,000,000 characters",
    ),
    "set block size": (
        "{% set x %}{% for i in range(10000) %}{{ big }}{% endfor %}{% endset %}{{ x|length }}",
        "a macro's or block's rendered text would be at least 50,000,000 characters",
    ),
    "repeated references": (
        "{{ [big] * 5000 }}",
        "a repetition of 5,000 would be at least 25,010,000 characters",
    ),
    "printed list of references": (
        "{% set l = [] %}{% for i in range(3000) %}{{ l.append(big) or '' }}{% endfor %}{{ l }}",
        "a `{{ ... }}` value's text would be",
    ),
    "joined references": (
        "{% set l = [] %}{% for i in range(3000) %}{{ l.append(big) or '' }}{% endfor %}{{ l|join }}",
        "join() would be at least 10,001,000 characters",
    ),
    "output size": (
        "{% for i in range(10000) %}{{ big }}{% endfor %}",
        "the rendered text is over 10,000,000 characters",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_fails_the_node_naming_the_limit(name: str) -> None:
    template, message = ATTACKS[name]
    started = time.perf_counter()
    outputs = run_block(FILL, {"values": {"big": "y" * 5_000}, "format": template})
    print(f"{name}: {time.perf_counter() - started:.2f} s")
    assert len(outputs) == 1 and outputs[0][0] == "error", outputs
    assert outputs[0][1].startswith("template stopped: ") and message in outputs[0][1], outputs[0][1]


def test_agent_output_fails_on_a_runaway_format_and_ordinary_templates_still_render() -> None:
    block = AgentOutputBlock()
    runaway = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    outputs = run_block(block, {"name": "out", "value": 1, "format": runaway})
    assert outputs == [
        ("error", "template stopped: more than 500,000 steps (loop iterations and calls) in one render")
    ]
    # An ordinary template error keeps AutoGPT's "Error: ..." text, and good ones render.
    assert run_block(block, {"name": "x", "value": 2, "format": "{{ x }}!"}) == [("output", "2!")]
    listed = run_block(
        FILL,
        {
            "values": {"items": ["a", "b"]},
            "format": "{% for i in items %}{{ loop.index }}{{ i }}{% endfor %}",
        },
    )
    assert listed == [("output", "1a2b")]
    # Large numbers that are not widths are formatted as before.
    numbers = "{{ 'id %d' % n }} {{ 'id {}'.format(n) }} {{ 'Order 123456789012: {}'.format(1) }}"
    assert run_block(FILL, {"values": {"n": 12345678901}, "format": numbers}) == [
        ("output", "id 12345678901 id 12345678901 Order 123456789012: 1")
    ]


def _slow_template_graph(timeout_seconds: float) -> GraphBuilder:
    """A template whose every loop iteration sorts 100,000 numbers: within every limit per step,
    about half a minute in all on a 2-core machine."""
    numbers = list(range(100_000))
    random.Random(11).shuffle(numbers)
    b = GraphBuilder("Slow template")
    fill = b.node(
        FillTextTemplateBlock,
        node_id="fill",
        values={"numbers": numbers},
        format="{% for i in range(2000) %}{{ (numbers|sort)[0] }}{% endfor %}",
    )
    b.metadata(fill, agentflow={"timeout_seconds": timeout_seconds})
    out = b.node(AgentOutputBlock, node_id="out", name="text")
    err = b.node(AgentOutputBlock, node_id="err", name="error")
    b.link(fill, "output", out, "value").link(fill, "error", err, "value")
    return b


def test_a_node_timeout_stops_a_runaway_render() -> None:
    started = time.perf_counter()
    result = ReferenceEngine().run_sync(_slow_template_graph(2).build(), {}, RunOptions())
    print(
        f"a node with a 2 s timeout around a runaway template ended after {time.perf_counter() - started:.2f} s"
    )
    (fill,) = [e for e in result.executions if e.node_id == "fill"]
    assert fill.status is ExecStatus.FAILED and "timed out after 2 s (timeout_seconds)" in (fill.error or "")
    assert "text" not in result.outputs and result.outputs["error"] == [fill.error]


def test_a_cancelled_render_stops_in_its_worker_thread() -> None:
    seen: list[int] = []
    template = (
        "{% for i in range(10000) %}{% for j in range(40) %}{{ seen.append(j) }}{% endfor %}{% endfor %}"
    )

    async def cancel_after_a_moment() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(render_template_async(template, {"seen": seen}), timeout=0.05)
        await asyncio.sleep(0.3)  # the worker notices the cancel at its next step
        stopped_at = len(seen)
        await asyncio.sleep(0.3)
        assert len(seen) == stopped_at, "the render went on after it was cancelled"

    asyncio.run(cancel_after_a_moment())
    assert 0 < len(seen) < 400_000
