"""Dagster instance storage tuned for agent runs (plugged in through dagster.yaml, never patched)."""
