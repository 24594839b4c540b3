"""Resilience around block executions: retry policies and timeouts (`policy`, used by the reference
engine), circuit breakers per external provider (`breaker`) and the output cache (`cache`), the last two
backed by Redis and shared by every run process. Only `policy` is imported by the engine; it needs no
Redis and no Dagster.
"""
