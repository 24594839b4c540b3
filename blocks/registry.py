"""The block registry: every concrete Block of the standard library, by id."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator

from blocks.sdk import Block, BlockDefinitionError


class BlockRegistry:
    def __init__(self, classes: Iterable[type[Block]]) -> None:
        self._by_id: dict[str, Block] = {}
        for cls in classes:
            existing = self._by_id.get(cls.id)
            if existing is not None:
                raise BlockDefinitionError(
                    f"duplicate block id {cls.id}: {type(existing).__qualname__} and {cls.__qualname__}"
                )
            self._by_id[cls.id] = cls()

    def get(self, block_id: str) -> Block | None:
        return self._by_id.get(block_id)

    def __contains__(self, block_id: object) -> bool:
        return block_id in self._by_id

    def __iter__(self) -> Iterator[Block]:
        return iter(sorted(self._by_id.values(), key=lambda b: b.name))

    def __len__(self) -> int:
        return len(self._by_id)


def _concrete_subclasses(base: type[Block]) -> Iterator[type[Block]]:
    for sub in base.__subclasses__():
        if "id" in sub.__dict__:
            yield sub
        yield from _concrete_subclasses(sub)


def load_standard_library() -> BlockRegistry:
    """Import every module under blocks.library and register the blocks they define."""
    import blocks.library as library

    for module in pkgutil.iter_modules(library.__path__):
        importlib.import_module(f"{library.__name__}.{module.name}")
    prefix = f"{library.__name__}."
    return BlockRegistry(c for c in _concrete_subclasses(Block) if c.__module__.startswith(prefix))
