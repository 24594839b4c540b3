"""agentflow: AutoGPT-style agent graphs on Dagster.

Importing this package imports no Dagster; the code location lives in `agent_defs.definitions`.
"""
