"""Running one block outside an engine, and the checks the block tests share.

`run_block` runs a block as the engine would route its outputs (each validated against its pin);
`credential` builds the `credentials` input a block receives once the engine resolved the reference;
`secret_free` says whether none of the given secrets shows up anywhere in a value (outputs, errors).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from pydantic import SecretStr

from blocks import Credentials, RunContext


def run_block(
    block: Any,
    data: dict[str, Any],
    credentials: dict[str, Credentials] | None = None,
    allow_private: bool = True,
    ctx: RunContext | None = None,
) -> list[tuple[str, Any]]:
    """The block's validated outputs. Private addresses are allowed by default: the stand-in servers
    listen on 127.0.0.1. `ctx` carries anything else a test needs (e.g. a key-value store)."""

    async def go() -> list[tuple[str, Any]]:
        context = ctx or RunContext()
        context.node_exec_id = f"test-{id(data)}"  # PersistInformation keys what it writes by it
        context.credentials = credentials or {}
        context.settings = {"allow_private_addresses": allow_private}
        return [
            (pin, block.validate_output(pin, value))
            async for pin, value in block.run(block.make_input(data), context)
        ]

    return asyncio.run(go())


def credential(
    provider: str, secret: str, kind: str = "api_key", cred_id: str = "", title: str = ""
) -> dict[str, Credentials]:
    """A block's resolved `credentials` input, owned by the local user."""
    return {
        "credentials": Credentials(
            cred_id or f"{provider}-cred", provider, kind, SecretStr(secret), "local", title
        )
    }


def secret_free(value: Any, *secrets: str) -> bool:
    """No secret appears in `value` as JSON (non-JSON values by their str())."""
    text = json.dumps(value, default=str)
    return not any(secret in text for secret in secrets)
