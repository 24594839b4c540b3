"""Input defaults that do not fit their pins.

A node's `input_default` is checked the way the engine checks a node execution's input: merged with
its dynamic pins folded back, then validated by the block with AutoGPT's conversion (`make_input`:
a numeric string into a number pin, a number into a text pin, ... are fine). A default the engine
would refuse (wrong type that no conversion bridges, a value outside an enum) would leave the node
silently unrun, and one AutoGPT's conversion would replace by a made-up value (text that is no
number -> 0, a list -> its length) is a mistake in the export: validation refuses both, naming the
pin and what it takes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from blocks import Block, BlockType
from blocks.conversion import invented_values
from blocks.sdk import BlockInputError


def _used_defaults(input_default: Mapping[str, Any], overridden: frozenset[str]) -> dict[str, Any]:
    """The defaults a node execution runs with: a linked pin's value replaces its default."""
    return {k: v for k, v in input_default.items() if k not in overridden}


def default_problems(
    block: Block, input_default: Mapping[str, Any], linked: frozenset[str]
) -> Iterator[tuple[str, str]]:
    """(pin, message) for each default of a node that its block refuses; `linked` are the sink pin
    names of the node's incoming links (the block's `optional_link_pins` still use their default
    until a value arrives)."""
    if block.block_type is BlockType.NOTE:
        return
    # Imported here: the engine imports validation, which imports this module.
    from agent_defs.engine.dynamic_pins import DynamicPinError, merge

    try:
        given = merge(_used_defaults(input_default, linked - block.optional_link_pins))
    except DynamicPinError as exc:
        yield exc.pin, str(exc)
        return
    if not given:
        return
    reported: set[str] = set()
    try:
        block.make_input(given)
    except BlockInputError as exc:
        for pin, message in exc.problems:
            base = pin.split("[", 1)[0]
            # Missing required pins are reported on their own; checks across pins (no pin named)
            # depend on values that arrive at run time.
            if base in given:
                reported.add(base)
                yield base, f"default does not fit the pin{_declared(block, input_default, base)}: {message}"
    # A default that AutoGPT's conversion would replace by a made-up value ("abc" -> 0) runs, as a
    # linked value does, but in an export it is a mistake: refused here.
    for pin, message in invented_values(block.Input, given):
        if pin not in reported:
            yield pin, f"default does not fit the pin{_declared(block, input_default, pin)}: {message}"


def _declared(block: Block, input_default: Mapping[str, Any], pin: str) -> str:
    kind = block.input_pins(input_default).get(pin)
    return f" ({kind})" if kind else ""
