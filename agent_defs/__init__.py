"""agentflow: AutoGPT-style agent graphs on Dagster.

`dagster ... -m agent_defs` finds the code location here, but importing this package imports no
Dagster: the repository is resolved on first access (PEP 562), so the graph model, validation, the
reference engine and the CLI stay Dagster-free.
"""

from typing import Any

_CODE_LOCATION = "agentflow"


def __getattr__(name: str) -> Any:
    if name == _CODE_LOCATION:
        from agent_defs.definitions import agentflow

        return agentflow
    raise AttributeError(f"module 'agent_defs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), _CODE_LOCATION])
