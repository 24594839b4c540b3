"""The restricted Jinja environment user templates run in, and the budget that bounds one render.

AutoGPT's TextFormatter caps (`**` operands, sequence repetition, range()) plus limits on what a
template can make the process do: every loop iteration and every call (function, method, macro,
filter; a macro call counts CALL_STEPS) is a step of the render's `RenderBudget`, which stops the
render with `TemplateLimitError` once it has taken MAX_STEPS steps, passed its deadline or been
cancelled; calls nest at most
MAX_CALL_DEPTH deep (recursive macros); a string the template builds (filters, methods, `~`, `+`,
`%`, the output itself) holds at most MAX_OUTPUT_CHARS characters, a list or dict it builds at most
MAX_ITEMS items; widths and counts that would build more (`center(10**9)`, `'%999999999d'`,
`replace` or `join` that multiply) are refused before anything is allocated.

What this guarantees: a render stops itself at its first step after the deadline or a cancel.
Between two steps runs at most one template expression on values within those caps, so the delay is
bounded, not zero (e.g. sorting a large list given as input). No Dagster; starts no thread.
"""

from __future__ import annotations

import functools
import re
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

from jinja2 import BaseLoader, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import SandboxedEnvironment

# AutoGPT's caps.
MAX_EXPONENT = 1000
MAX_RANGE = 10_000
MAX_SEQUENCE_REPEAT = 10_000
# This platform's: see the module docstring and the README.
MAX_STEPS = 500_000
MAX_CALL_DEPTH = 50
CALL_STEPS = 10  # steps a macro call or a recursive loop's `loop(...)` counts for
MAX_OUTPUT_CHARS = 10_000_000
MAX_ITEMS = 1_000_000
MAX_INT_BITS = 100_000  # an int product larger than this (about 30,000 digits) is refused
RENDER_TIMEOUT_SECONDS = 10.0

_DIGITS = re.compile(r"\d+")


class TemplateLimitError(Exception):
    """A render went over one of the limits; the message names it. Not a ValueError, so that no
    filter's own `except ValueError` can swallow it."""


class RenderBudget:
    """What one render may still spend. `cancelled` is set from another thread to stop it."""

    __slots__ = ("cancelled", "deadline", "depth", "steps", "timeout")

    def __init__(self, timeout: float = RENDER_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.steps = 0
        self.depth = 0
        self.cancelled = False

    def step(self, weight: int = 1) -> None:
        self.steps += weight
        if self.steps > MAX_STEPS:
            raise TemplateLimitError(
                f"more than {MAX_STEPS:,} steps (loop iterations and calls) in one render"
            )
        if self.cancelled:
            raise TemplateLimitError("the render was cancelled (the node timed out or was stopped)")
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the render took longer than {self.timeout:g} s")


_local = threading.local()


def current_budget() -> RenderBudget:
    """The budget of the render running on this thread (`use_budget`). Outside such a render, a
    fresh one each time: only the size caps then hold."""
    budget: RenderBudget | None = getattr(_local, "budget", None)
    return budget if budget is not None else RenderBudget()


def use_budget(budget: RenderBudget | None) -> None:
    _local.budget = budget


def check_size(value: Any, what: str) -> Any:
    """`value`, if it is within the caps on built strings and containers."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_OUTPUT_CHARS:
            raise TemplateLimitError(f"{what} would be {len(value):,} characters (max {MAX_OUTPUT_CHARS:,})")
    elif isinstance(value, list | tuple | dict | set) and len(value) > MAX_ITEMS:
        raise TemplateLimitError(f"{what} would hold {len(value):,} items (max {MAX_ITEMS:,})")
    return value


def _check_width(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_OUTPUT_CHARS:
        shown = f"{value:,}" if value.bit_length() < 64 else "a number that large"
        raise TemplateLimitError(f"{what} {shown} is over the text limit ({MAX_OUTPUT_CHARS:,} characters)")


_WIDTH_DIGITS = len(str(MAX_OUTPUT_CHARS))


# A printf conversion: its width and precision are groups 1 and 2.
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\d*|\*)(?:\.(\d*|\*))?[hlL]?[a-zA-Z%]")


def _format_specs(text: str, printf: bool) -> Iterable[str]:
    """The parts of a format string that say how wide a field is: '%9.2f' or '{:>9}'."""
    if printf:
        for match in _PRINTF_SPEC.finditer(text):
            yield from (group for group in match.groups() if group)
        return
    try:
        yield from (spec for _, _, spec, _ in string.Formatter().parse(text) if spec)
    except ValueError:
        return  # malformed: the format call itself says so


def _check_format_string(text: Any, what: str, printf: bool) -> None:
    """Widths and precisions written into a format string ('%999999999d', '{:>999999999}')."""
    if isinstance(text, str):
        for spec in _format_specs(text, printf):
            for digits in _DIGITS.findall(spec):
                if len(digits) >= _WIDTH_DIGITS:  # int() of thousands of digits would itself fail
                    _check_width(int(digits[:20]), f"{what}: a width or precision of")


def _length(value: Any) -> int:
    return len(value) if isinstance(value, Sized) else 0


# Methods and filters whose int arguments are output widths: refused above the text limit.
_WIDTH_TAKERS = frozenset({"center", "ljust", "rjust", "zfill"})


def _takes_widths_from_arguments(text: Any, printf: bool) -> bool:
    """Whether a format string reads a width from its arguments ('%*d', '{:{}}')."""
    marker = "*" if printf else "{"
    return isinstance(text, str) and any(marker in spec for spec in _format_specs(text, printf))


# Filters that turn their whole value into text: its text is estimated before they run.
_TEXT_FILTERS = frozenset(
    {"string", "e", "escape", "forceescape", "safe", "urlencode", "striptags", "title", "upper", "lower"}
    | {"capitalize", "trim", "wordwrap", "indent", "center", "replace", "truncate", "wordcount"}
)


def _check_growth(
    name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any], method: bool = True
) -> None:
    """Refuse, before they run, the string operations whose result would exceed the text limit
    (`value` is the method's object, or the filter's input when not `method`)."""
    if not method and name in _TEXT_FILTERS and not isinstance(value, str):
        check_size_estimate(estimated_chars(value), f"the text of the {name} filter's input")
    if name in _WIDTH_TAKERS:
        for arg in (*args, *kwargs.values()):
            _check_width(arg, f"{name}(): a width of")
    elif name in ("format", "format_map") and isinstance(value, str):
        _check_format_string(value, name, printf=False)
        if _takes_widths_from_arguments(value, printf=False):
            mapping = args[0] if name == "format_map" and args and isinstance(args[0], dict) else {}
            for arg in (*args, *kwargs.values(), *mapping.values()):
                _check_width(arg, f"{name}(): a width of")
    elif name == "replace" and len(args) >= 2 and isinstance(value, str):
        old, new = str(args[0]), str(args[1])
        count = len(value) + 1 if old == "" else value.count(old)
        check_size_estimate(len(value) + count * max(len(new) - len(old), 0), f"{name}()")
    elif name == "join":  # the filter: items|join(separator); the method: separator.join(items)
        items, separator = (args[0] if args else (), value) if method else (value, args[0] if args else "")
        joined = estimated_chars(items) + _length(items) * len(str(separator))
        check_size_estimate(joined, f"{name}()")
    elif name == "indent" and isinstance(value, str):
        width = args[0] if args else kwargs.get("width", 4)
        per_line = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        check_size_estimate(len(value) + (value.count("\n") + 1) * per_line, f"{name}()")
    elif name == "expandtabs" and isinstance(value, str):
        size = args[0] if args else kwargs.get("tabsize", 8)
        check_size_estimate(len(value) + value.count("\t") * (size if isinstance(size, int) else 8), name)
    elif name == "slice" and args and isinstance(args[0], int) and args[0] > MAX_ITEMS:
        raise TemplateLimitError(f"{name}() into {args[0]:,} parts (max {MAX_ITEMS:,})")


def estimated_chars(value: Any) -> int:
    """About how many characters `str(value)` would be, without building it; stops counting once
    over the text limit (and after 2 * MAX_ITEMS values, so a list holding itself ends too)."""
    total, visited, stack = 0, 0, [value]
    while stack and total <= MAX_OUTPUT_CHARS and visited < 2 * MAX_ITEMS:
        item = stack.pop()
        visited += 1
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 * len(item)
            stack.extend(item)
        else:
            total += 8
    return total


def check_size_estimate(size: int, what: str) -> None:
    if size > MAX_OUTPUT_CHARS:
        raise TemplateLimitError(f"{what} would be at least {size:,} characters (max {MAX_OUTPUT_CHARS:,})")


def _format_filter(value: Any, format_string: str | None = None) -> Any:
    """AutoGPT's `format` filter: printf-style number formatting, e.g. {{ x | format('%.2f') }}."""
    _check_format_string(format_string, "format", printf=True)
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
        _check_growth(name, value, rest, kwargs, method=False)
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
            _check_format_string(left, "%", printf=True)
            if _takes_widths_from_arguments(left, printf=True):
                for arg in right if isinstance(right, tuple) else (right,):
                    _check_width(arg, "% formatting: a width of")
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
            _check_growth(bound[1], bound[0], args, kwargs)
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
