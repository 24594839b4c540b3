"""Platform services around node executions (credits, live events). No Dagster."""
