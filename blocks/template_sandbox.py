"""The restricted Jinja environment user templates run in, wired to the limits of one render
(`blocks/template_limits.py`).

AutoGPT's TextFormatter caps (`**` operands, sequence repetition, range()) plus limits on what a
template can make the process do: every loop iteration and every call (function, method, macro,
filter; a macro call counts CALL_STEPS) is a step of the render's `RenderBudget`, which stops the
render with `TemplateLimitError` once it has taken MAX_STEPS steps, passed its deadline or been
cancelled; calls nest at most MAX_CALL_DEPTH deep (recursive macros); a string the template builds (filters, methods, `~`, `+`,
`%`, the output itself) holds at most MAX_OUTPUT_CHARS characters, a list or dict it builds at most
MAX_ITEMS items; widths and counts that would build more (`center(10**9)`, `'%999999999d'`,
`replace` or `join` that multiply) are refused before anything is allocated.

What this guarantees: a render stops itself at its first step after the deadline or a cancel.
Between two steps runs at most one template expression on values within those caps, so the delay is
bounded, not zero (e.g. sorting a large list given as input). No Dagster; starts no thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import BaseLoader, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import SandboxedEnvironment

from blocks.template_limits import (
    CALL_STEPS,
    MAX_CALL_DEPTH,
    MAX_EXPONENT,
    MAX_INT_BITS,
    MAX_RANGE,
    MAX_SEQUENCE_REPEAT,
    TemplateLimitError,
    check_format_string,
    check_growth,
    check_size,
    check_size_estimate,
    check_width,
    current_budget,
    estimated_chars,
    takes_widths_from_arguments,
)


def _format_filter(value: Any, format_string: str | None = None) -> Any:
    """AutoGPT's `format` filter: printf-style number formatting, e.g. {{ x | format('%.2f') }}."""
    check_format_string(format_string, "format", printf=True)
    return format_string % float(value) if format_string else value


def _safe_range(*args: int) -> range:
    result = range(*args)
    if len(result) > MAX_RANGE:
        raise OverflowError(f"range() too large ({len(result)} items, max {MAX_RANGE})")
    return result


def _checked_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that counts as a step, refuses growth beyond the caps and checks what it built."""
    pass_arg = getattr(func, "jinja_pass_arg", None)
    skip = 1 if pass_arg is not None else 0  # the context/environment Jinja passes first

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        current_budget().step()
        value, rest = (args[skip], args[skip + 1 :]) if len(args) > skip else (None, ())
        check_growth(name, value, rest, kwargs, method=False)
        return check_size(func(*args, **kwargs), f"the {name} filter's result")

    return checked


def _bound_name(obj: Any) -> tuple[Any, str] | None:
    """(the object, the method's name) for a bound method of a built-in value, else None."""
    wrapped = getattr(obj, "__wrapped__", obj)  # the sandbox wraps str.format
    owner = getattr(wrapped, "__self__", None)
    if isinstance(owner, str | bytes | list | dict | set):
        return owner, getattr(wrapped, "__name__", "")
    return None


_ITER_FILTER = "_checked_iter"


class _BudgetCodeGenerator(CodeGenerator):
    """Every `~` goes through `environment.checked_concat`: its parts are sized before the join."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # CodeGenerator.visit_Concat, with the parts sized before they are joined.
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.checked_concat({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class RestrictedEnvironment(SandboxedEnvironment):
    """The Jinja sandbox with AutoGPT's caps and this platform's render budget (module docstring)."""

    code_generator_class = _BudgetCodeGenerator
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def __init__(self, autoescape: bool) -> None:
        super().__init__(loader=BaseLoader(), autoescape=autoescape, finalize=self.finalize_output)
        self.globals.clear()
        self.globals["range"] = _safe_range
        for name in ("pprint", "tojson", "urlize", "xmlattr"):
            self.filters.pop(name, None)
        self.filters["format"] = _format_filter
        self.filters = {name: _checked_filter(name, func) for name, func in self.filters.items()}
        self.filters[_ITER_FILTER] = self.checked_iter

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every `{% for %}` iterates through `checked_iter`, so that each iteration is a step: as a
        filter node, a direct call rather than one through the sandbox's `call` (the hot path)."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            checked = nodes.Filter(loop.iter, _ITER_FILTER, [], [], None, None)
            loop.iter = checked.set_lineno(loop.iter.lineno)
        return tree

    @staticmethod
    def checked_iter(iterable: Iterable[Any]) -> Iterator[Any]:
        budget = current_budget()
        for item in iterable:
            budget.step()
            yield item

    @staticmethod
    def concat(parts: Iterable[str]) -> str:  # type: ignore[override]
        """Joins what a macro, a `{% set %}` block or a filter block rendered: sized first."""
        parts = list(parts)
        check_size_estimate(sum(map(len, parts)), "a macro's or block's rendered text")
        return "".join(parts)

    @staticmethod
    def checked_concat(join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        check_size_estimate(sum(estimated_chars(part) for part in parts), "a `~` concatenation")
        return check_size(join(parts), "a `~` concatenation")

    @staticmethod
    def finalize_output(value: Any) -> Any:
        """Every `{{ ... }}` value, before it becomes text: sized first (a list of a thousand
        references to one large value is small, its text is not)."""
        if not isinstance(value, str):
            check_size_estimate(estimated_chars(value), "a `{{ ... }}` value's text")
        return value

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        current_budget().step()
        if operator == "**":
            for operand, what in ((right, "Exponent"), (left, "Base")):
                if isinstance(operand, int | float) and abs(operand) > MAX_EXPONENT:
                    raise OverflowError(f"{what} too large for exponentiation (max {MAX_EXPONENT})")
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_SEQUENCE_REPEAT
                ):
                    raise OverflowError(f"Sequence repeat too large (max {MAX_SEQUENCE_REPEAT} items)")
                if isinstance(seq, str | list | tuple) and isinstance(count, int) and count > 0:
                    check_size_estimate(estimated_chars(seq) * count, f"a repetition of {count:,}")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_INT_BITS
            ):
                raise TemplateLimitError(f"a product of more than {MAX_INT_BITS:,} bits")
        elif operator == "%" and isinstance(left, str):
            check_format_string(left, "%", printf=True)
            if takes_widths_from_arguments(left, printf=True):
                for arg in right if isinstance(right, tuple) else (right,):
                    check_width(arg, "% formatting: a width of")
        return check_size(super().call_binop(context, operator, left, right), f"the result of `{operator}`")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        # A macro or recursive-loop call costs what about ten loop iterations do.
        budget.step(CALL_STEPS if isinstance(__obj, Macro | LoopContext) else 1)
        if __obj is pow and len(args) >= 2:
            for operand in args[:2]:
                if isinstance(operand, int | float) and abs(operand) > MAX_EXPONENT:
                    raise OverflowError(f"pow() operand too large (max {MAX_EXPONENT})")
        bound = _bound_name(__obj)
        if bound is not None:
            check_growth(bound[1], bound[0], args, kwargs)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's `loop(items)`
            args = (__self.checked_iter(args[0]), *args[1:])
        if budget.depth >= MAX_CALL_DEPTH:
            what = f"macro {__obj.name!r}" if isinstance(__obj, Macro) else "calls"
            raise TemplateLimitError(f"{what} nested more than {MAX_CALL_DEPTH} deep (recursion)")
        budget.depth += 1
        try:
            result = super().call(__context, __obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        if bound is not None:
            check_size(bound[0], f"the {type(bound[0]).__name__} grown by {bound[1]}()")
        return check_size(result, "a call's result")
