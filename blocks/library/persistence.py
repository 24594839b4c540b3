"""PersistInformationBlock and RetrieveInformationBlock (AutoGPT blocks/persistence.py): values a
user's runs keep between runs, in the run's `RunContext.kv_store`.

Scope "within_agent" keys the value by graph (all runs of this agent), "across_agents" by user only
(AutoGPT's `agent#<graph id>#<key>` and `global#<key>`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field

from blocks.sdk import Block, BlockCategory, BlockInput, BlockOutput, BlockSelfTest, KeyValueStore, RunContext

StorageScope = Literal["within_agent", "across_agents"]
NO_STORE = "this run has no key-value store (the platform configured none)"


def storage_key(key: str, scope: StorageScope, graph_id: str) -> str:
    return f"global#{key}" if scope == "across_agents" else f"agent#{graph_id}#{key}"


class _MemoryStore:
    """The self-tests' store: a dict."""

    def __init__(self, data: dict[tuple[str, str], Any] | None = None) -> None:
        self.data = dict(data or {})

    async def get(self, user_id: str, key: str) -> Any | None:
        return self.data.get((user_id, key))

    async def put(self, user_id: str, key: str, value: Any, node_exec_id: str) -> Any:
        self.data[(user_id, key)] = value
        return value


class _KeyValueBlock(Block):
    """What both blocks share: the run's store (self-tests replace `_store`). Abstract: no id."""

    def _store(self, ctx: RunContext) -> KeyValueStore | None:
        return ctx.kv_store


class PersistInformationBlock(_KeyValueBlock):
    id = "1d055e55-a2b9-4547-8311-907d05b0304d"
    description = "Saves a key-value pair that persists across runs (read it back with RetrieveInformation)."
    categories = frozenset({BlockCategory.DATA})

    class Input(BlockInput):
        key: str = Field(description="Key to store the information under")
        value: Any = Field(description="Value to store")
        scope: StorageScope = Field(
            default="within_agent",
            description="within_agent: shared by all runs of this agent; across_agents: by all agents of the user",
        )

    class Output(BlockOutput):
        value: Any = Field(description="Value that was stored")

    self_tests = (
        BlockSelfTest(
            input={"key": "theme", "value": {"theme": "dark"}},
            output=[("value", {"theme": "dark"})],
            mocks={"_store": lambda ctx: _MemoryStore()},
        ),
        BlockSelfTest(
            input={"key": "theme", "value": 1},
            output=[("error", lambda e: "no key-value store" in e)],
            mocks={"_store": lambda ctx: None},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        store = self._store(ctx)
        if store is None:
            yield "error", NO_STORE
            return
        key = storage_key(input.key, input.scope, ctx.graph_id)
        yield "value", await store.put(ctx.user_id, key, input.value, ctx.node_exec_id)


class RetrieveInformationBlock(_KeyValueBlock):
    id = "d8710fc9-6e29-481e-a7d5-165eb16f8471"
    description = "Reads back a value PersistInformation saved in this or an earlier run."
    categories = frozenset({BlockCategory.DATA})
    static_output = True

    class Input(BlockInput):
        key: str = Field(description="Key to retrieve the information for")
        scope: StorageScope = Field(
            default="within_agent",
            description="within_agent: shared by all runs of this agent; across_agents: by all agents of the user",
        )
        default_value: Any = Field(default=None, description="Default value to return if key is not found")

    class Output(BlockOutput):
        value: Any = Field(description="Retrieved value or default value")

    self_tests = (
        BlockSelfTest(
            input={"key": "theme", "default_value": "light"},
            output=[("value", "light")],
            mocks={"_store": lambda ctx: _MemoryStore()},
        ),
        BlockSelfTest(
            input={"key": "theme", "scope": "across_agents", "default_value": "light"},
            output=[("value", "dark")],
            mocks={"_store": lambda ctx: _MemoryStore({("local", "global#theme"): "dark"})},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        store = self._store(ctx)
        if store is None:
            yield "error", NO_STORE
            return
        stored = await store.get(ctx.user_id, storage_key(input.key, input.scope, ctx.graph_id))
        yield "value", stored if stored is not None else input.default_value
