"""Block SDK and standard blocks. Importing this package builds the registry, so a malformed block
or a duplicate id fails loudly here."""

from blocks.registry import BlockRegistry, load_standard_library
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockCost,
    BlockDefinitionError,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    BlockType,
    CostType,
    Credentials,
    CredentialsField,
    KeyValueStore,
    OutgoingLink,
    RetryPolicy,
    RunContext,
    TokenRate,
)

REGISTRY: BlockRegistry = load_standard_library()

__all__ = [
    "REGISTRY",
    "Block",
    "BlockCategory",
    "BlockCost",
    "BlockDefinitionError",
    "BlockInput",
    "BlockOutput",
    "BlockRegistry",
    "BlockSelfTest",
    "BlockType",
    "CostType",
    "Credentials",
    "CredentialsField",
    "KeyValueStore",
    "OutgoingLink",
    "RetryPolicy",
    "RunContext",
    "TokenRate",
]
