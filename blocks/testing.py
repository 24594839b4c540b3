"""The generic block self-test: runs a block's own test cases and reports every mismatch."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from blocks.sdk import Block, BlockSelfTest, RunContext


def _matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, type):
        return isinstance(actual, expected)
    if callable(expected):
        return bool(expected(actual))
    return bool(expected == actual)


@contextlib.contextmanager
def _mocked(block: Block, mocks: dict[str, Any]) -> Iterator[None]:
    saved = {name: block.__dict__.get(name) for name in mocks}
    try:
        for name, fn in mocks.items():
            setattr(block, name, fn)
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                delattr(block, name)
            else:
                setattr(block, name, old)


async def collect_outputs(block: Block, case: BlockSelfTest) -> list[tuple[str, Any]]:
    data = block.Input.model_validate(dict(case.input))
    outputs: list[tuple[str, Any]] = []
    with _mocked(block, dict(case.mocks)):
        async for pin, value in block.run(
            data, RunContext(settings=case.settings, credentials=case.credentials)
        ):
            outputs.append((pin, block.validate_output(pin, value)))
    return outputs


def self_test_failures(block: Block) -> list[str]:
    """Every difference between a block's declared self-test outputs and what it yields."""
    failures: list[str] = []
    for index, case in enumerate(block.self_tests):
        where = f"{block.name} self-test {index}"
        try:
            actual = asyncio.run(collect_outputs(block, case))
        except Exception as exc:
            failures.append(f"{where}: raised {type(exc).__name__}: {exc}")
            continue
        for position, (expected, got) in enumerate(zip(case.output, actual, strict=False)):
            if expected[0] != got[0] or not _matches(expected[1], got[1]):
                failures.append(f"{where}: output {position} expected {expected!r}, got {got!r}")
        if len(actual) != len(case.output):
            failures.append(f"{where}: expected {len(case.output)} outputs, got {len(actual)}: {actual!r}")
    return failures
