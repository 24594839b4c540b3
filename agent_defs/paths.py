"""The one place that knows where the project lives on disk."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path


@cache
def project_root() -> Path:
    """The directory holding pyproject.toml (override with AGENTFLOW_ROOT for installed copies)."""
    override = os.environ.get("AGENTFLOW_ROOT")
    if override:
        return Path(override).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"no pyproject.toml above {here}; set AGENTFLOW_ROOT")


def agents_dir() -> Path:
    """Stored graphs (and `schedules/`) of the directory store; AGENTFLOW_AGENTS_DIR overrides."""
    override = os.environ.get("AGENTFLOW_AGENTS_DIR", "").strip()
    return Path(override).resolve() if override else project_root() / "agents"


def shared_dir() -> Path:
    """`shared/` sits beside the checkout (../shared); AGENTFLOW_SHARED overrides."""
    override = os.environ.get("AGENTFLOW_SHARED")
    return Path(override).resolve() if override else project_root().parent / "shared"
