"""Rendering user templates (FillTextTemplate, AgentOutput's format, LLM prompt values) in the
restricted sandbox of `blocks/template_sandbox.py`, within a render budget.

`render_template_async` is what blocks await: the render runs in a worker thread, so the event loop
(and with it a node's timeout) is never blocked by it; when the awaiting task is cancelled (the node
timed out, the run was stopped) the render is told to stop and stops itself at its next step (a
thread cannot be killed). `render_template` renders on the calling thread, bounded the same way
except that nothing can cancel it before its own deadline.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError, nodes
from jinja2.sandbox import SecurityError

from blocks.template_limits import MAX_OUTPUT_CHARS, RenderBudget, TemplateLimitError, use_budget
from blocks.template_sandbox import RestrictedEnvironment


class TemplateStopped(ValueError):
    """A render went over a limit (steps, time, nesting, size) or was cancelled; the message names it."""


# Built once per module: one environment per escape mode.
_ENVIRONMENTS = {False: RestrictedEnvironment(False), True: RestrictedEnvironment(True)}


# A template made only of these (text, `{{ a.b }}`, `{% if %}` on comparisons) runs in time linear in
# its length with no call, loop or operator: the async path renders it inline, sparing the thread hop.
_INLINE_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Const,
    nodes.If,
    nodes.Compare,
    nodes.Operand,
    nodes.Not,
    nodes.And,
    nodes.Or,
    nodes.CondExpr,
)
# Sources longer than this are compiled in the worker thread too (parsing is linear in the length).
_INLINE_COMPILE_CHARS = 20_000


@lru_cache(maxsize=512)
def _compile_template(source: str, escape_html: bool) -> tuple[Template, bool]:
    """The compiled template, and whether it may render inline (`_INLINE_NODES`)."""
    environment = _ENVIRONMENTS[escape_html]
    tree = environment.parse(source)
    inline = all(isinstance(node, _INLINE_NODES) for node in (tree, *tree.find_all(nodes.Node)))
    return environment.from_string(tree), inline


def _render(source: str, values: dict[str, Any], escape_html: bool, budget: RenderBudget) -> str:
    use_budget(budget)
    try:
        template, _ = _compile_template(source, escape_html)
        parts: list[str] = []
        size = 0
        for chunk in template.root_render_func(template.new_context(dict(values))):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimitError(f"the rendered text is over {MAX_OUTPUT_CHARS:,} characters")
            parts.append(chunk)
        return "".join(parts)
    except TemplateLimitError as exc:
        raise TemplateStopped(f"template stopped: {exc}") from None
    except SecurityError as exc:
        raise ValueError(f"template refused by the sandbox: {exc}") from exc
    except (TemplateError, OverflowError) as exc:
        raise ValueError(f"template error: {exc}") from exc
    except RecursionError:
        raise ValueError("template error: nested too deep") from None
    except MemoryError:
        raise ValueError("template error: out of memory") from None
    finally:
        use_budget(None)


def render_template(source: str, values: dict[str, Any], escape_html: bool = False) -> str:
    """Render a user template on this thread, within a render budget; raises ValueError with a clear
    message on failure (a limit is named in it)."""
    return _render(source, values, escape_html, RenderBudget())


async def render_template_async(source: str, values: dict[str, Any], escape_html: bool = False) -> str:
    """`render_template` in a worker thread; cancelling the awaiting task stops the render."""
    budget = RenderBudget()
    if len(source) <= _INLINE_COMPILE_CHARS:
        try:
            _, inline = _compile_template(source, escape_html)
        except TemplateError:
            inline = True  # _render reports it
        if inline:
            return _render(source, values, escape_html, budget)
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, _render, source, values, escape_html, budget)
    except asyncio.CancelledError:
        budget.cancelled = True  # the worker raises TemplateLimitError at its next step
        raise
