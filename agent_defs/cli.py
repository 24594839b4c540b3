"""The `agentflow` command line: validate, run, import and inspect agent graphs.

Every failure is a one-line message and a non-zero exit; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_defs.graph import Graph, GraphProblem
    from agent_defs.store import GraphStore

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 1."""


def _graph_files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.json") if not p.name.startswith("_"))
            if not found:
                raise CliError(f"{path}: no graph files (*.json) in this directory")
            yield from found
        elif path.exists():
            yield path
        else:
            raise CliError(f"{path}: no such file or directory")


def check_graph_file(
    path: Path, max_subagent_depth: int | None = None
) -> tuple[Graph | None, list[GraphProblem]]:
    """(the graph or None, every problem with it): what the loader reports and, when the rest of the
    graph could be read, what validation finds in that rest, so that one check reports everything.
    `max_subagent_depth`: deeper sub-agent chains are refused (default: the environment's limit)."""
    from agent_defs.graph import GraphLoadError, load_graph_file
    from agent_defs.graph.validation import validate_graph

    try:
        graph = load_graph_file(path)
    except GraphLoadError as exc:
        if exc.graph is None:
            return None, list(exc.problems)
        found = validate_graph(
            exc.graph, broken_nodes=exc.broken_nodes, max_subagent_depth=max_subagent_depth
        )
        return None, [*exc.problems, *found]
    return graph, validate_graph(graph, max_subagent_depth=max_subagent_depth)


def cmd_validate(args: argparse.Namespace) -> int:
    from agent_defs.compile.mode import CompileModeError, choose_compile, max_op_depth

    try:
        depth_limit = max_op_depth()
    except CompileModeError as exc:
        raise CliError(str(exc)) from None
    worst = EXIT_OK
    for path in _graph_files(args.paths):
        graph, problems = check_graph_file(path)
        title = f"{graph.name!r} v{graph.version}" if graph is not None else "unreadable"
        if problems:
            worst = EXIT_FAILED
            print(f"FAIL {path} ({title}): {len(problems)} problem{'s' * (len(problems) != 1)}")
            for problem in problems:
                print(f"  - {problem}")
        else:
            print(f"OK   {path} ({title})")
            if graph is not None and (fused_because := choose_compile(graph, depth_limit).fused_because):
                print(f"  - its Dagster job is compiled fused (one op, reference engine): {fused_because}")
    return worst


def parse_input_value(raw: str) -> Any:
    """NAME=VALUE values are JSON when they parse as JSON, else plain strings (NaN and Infinity are
    not JSON, though Python's parser takes them: such a value stays text, as in a graph export)."""
    from agent_defs.graph.loader import non_finite_numbers

    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return raw if any(non_finite_numbers(value)) else value


def _collect_inputs(args: argparse.Namespace) -> dict[str, Any]:
    from agent_defs.graph.loader import non_finite_numbers

    inputs: dict[str, Any] = {}
    if args.inputs_json:
        try:
            given = json.loads(args.inputs_json)
        except json.JSONDecodeError as exc:
            raise CliError(f"--inputs-json is not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(given, dict):
            raise CliError(f"--inputs-json must be a JSON object, got {type(given).__name__}")
        for path, number in non_finite_numbers(given):
            raise CliError(f"--inputs-json: {path} is {number}, which is not a JSON number")
        inputs.update(given)
    for item in args.input or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--input {item!r}: expected NAME=VALUE")
        inputs[name] = parse_input_value(value)
    return inputs


def _whole_number(minimum: int) -> Any:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {raw!r}")
        return value

    return parse


def _engine_limits(args: argparse.Namespace) -> Any:
    """The environment's limits, with the command line's flags over them."""
    from dataclasses import replace

    from agent_defs.engine import EngineLimits

    try:
        limits = EngineLimits.from_env()
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.max_node_executions is not None:
        limits = replace(limits, max_node_executions=args.max_node_executions)
    if args.max_subagent_depth is not None:
        limits = replace(limits, max_subagent_depth=args.max_subagent_depth)
    return limits


def cmd_run(args: argparse.Namespace) -> int:
    from agent_defs.engine import ReferenceEngine, RunOptions
    from agent_defs.graph.io_nodes import graph_input_names

    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    limits = _engine_limits(args)
    graph, problems = check_graph_file(path, limits.max_subagent_depth)
    if problems or graph is None:
        raise CliError(f"{path} cannot run:\n" + "\n".join(f"  - {p}" for p in problems))
    inputs = _collect_inputs(args)
    known = graph_input_names(graph)
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise CliError(
            f"{graph.ref} has no input named {', '.join(map(repr, unknown))}; "
            f"its inputs are: {', '.join(map(repr, known)) or '(none)'}"
        )
    if args.engine == "dagster":
        return _run_on_dagster(graph, inputs, args, ReferenceEngine(limits=limits))
    from agent_defs.instance import prepare_dagster_home
    from agent_defs.store.env import DATABASE_VAR
    from agent_defs.store.kv_data import kv_store_for

    # The same durable values as the Dagster runs of this machine: the platform database, else a file
    # in the project's Dagster home.
    kv_store = kv_store_for(os.environ.get(DATABASE_VAR, ""), prepare_dagster_home())
    engine = ReferenceEngine(limits=limits, kv_store=kv_store)
    options = RunOptions(run_id=args.run_id, user_id=args.user)
    result = engine.run_sync(graph, inputs, options)
    if args.json:
        print(json.dumps(result.to_json(), default=str))
    else:
        print(f"{graph.ref}: {result.status.value}" + (f" ({result.error})" if result.error else ""))
        for name, values in result.outputs.items():
            for value in values:
                print(f"  {name} = {json.dumps(value, default=str)}")
        if result.node_error_count:
            print(f"  {result.node_error_count} node execution(s) failed:")
            for ex in result.executions:
                if ex.error is not None:
                    print(f"    - node {ex.node_id} ({ex.block_name}): {ex.error}")
        for skipped in result.skipped:
            print(f"  skipped node {skipped.node_id} ({skipped.block_name}): {skipped.reason}")
    return EXIT_OK if result.status.value == "COMPLETED" else EXIT_FAILED


def _run_on_dagster(graph: Any, inputs: dict[str, Any], args: argparse.Namespace, engine: Any) -> int:
    """Compile the graph and execute the job in this process, recorded in the project's instance."""
    from agent_defs.instance import prepare_dagster_home

    prepare_dagster_home()
    import logging

    from dagster import DagsterInstance, DagsterInvalidConfigError

    logging.getLogger("dagster").setLevel(logging.WARNING)  # the run's events are in the instance

    from agent_defs.jobs.compiler import compile_graph
    from agent_defs.jobs.results import read_run_summary

    with DagsterInstance.get() as instance:
        try:
            result = compile_graph(graph, engine=engine, console_log_level="WARNING").execute_in_process(
                instance=instance,
                run_config={"inputs": inputs, "user_id": args.user},
                raise_on_error=False,
            )
        except DagsterInvalidConfigError as exc:
            raise CliError(f"{graph.ref}: the inputs do not fit the job's run config:\n{exc}") from None
        summary = read_run_summary(instance, result.run_id)
    if args.json:
        print(json.dumps(summary, default=str))
    else:
        print(
            f"{graph.ref}: {summary['status']} (Dagster run {summary['run_id']}: {summary['dagster_status']})"
        )
        for name, values in summary["outputs"].items():
            for value in values:
                print(f"  {name} = {json.dumps(value, default=str)}")
        if summary["node_error_count"]:
            print(f"  {summary['node_error_count']} node execution(s) failed; see the run in the Dagster UI")
    return EXIT_OK if summary["status"] == "COMPLETED" else EXIT_FAILED


def cmd_blocks(args: argparse.Namespace) -> int:
    from blocks import REGISTRY

    described = [block.describe() for block in REGISTRY]
    if args.json:
        print(json.dumps(described, indent=2))
        return EXIT_OK
    for info in described:
        ins = ", ".join(
            f"{n}: {v['type'] or 'any'}{'' if v['required'] else '?'}" for n, v in info["inputs"].items()
        )
        outs = ", ".join(f"{n}: {t or 'any'}" for n, t in info["outputs"].items())
        print(f"{info['id']}  {info['name']}\n    in:  {ins}\n    out: {outs}")
    return EXIT_OK


def _store_for(args: argparse.Namespace) -> GraphStore:
    from agent_defs.store import DirectoryGraphStore, GraphStoreError, store_from_env

    if args.store_dir:
        return DirectoryGraphStore(Path(args.store_dir))
    try:
        return store_from_env()
    except GraphStoreError as exc:
        raise CliError(str(exc)) from None


def cmd_import(args: argparse.Namespace) -> int:
    from agent_defs.store import GraphStoreError

    store = _store_for(args)
    worst = EXIT_OK
    for path in _graph_files(args.paths):
        graph, problems = check_graph_file(path)
        if problems or graph is None:
            worst = EXIT_FAILED
            print(f"FAIL {path}: {len(problems)} problem{'s' * (len(problems) != 1)}, not stored")
            for problem in problems:
                print(f"  - {problem}")
            continue
        try:
            export = json.loads(path.read_text(encoding="utf-8"))  # the checked file, as exported
            ref = store.save(export)
        except GraphStoreError as exc:
            raise CliError(f"{path}: {exc}") from None
        except (OSError, ValueError) as exc:  # changed on disk since the check
            worst = EXIT_FAILED
            print(f"FAIL {path}: {exc}, not stored")
            continue
        print(f"stored {graph.name} {ref.graph_id} v{ref.version}" + (" (active)" if ref.active else ""))
    return worst


def cmd_graphs(args: argparse.Namespace) -> int:
    from agent_defs.store import GraphStoreError

    store = _store_for(args)
    try:
        refs, problems = store.refs(), store.problems()
    except GraphStoreError as exc:
        raise CliError(str(exc)) from None
    for ref in refs:
        print(f"{ref.graph_id}  v{ref.version}  {'active' if ref.active else '      '}  {ref.name}")
    if problems:
        print(f"{len(problems)} problem{'s' * (len(problems) != 1)} in the store:")
        for problem in problems:
            print(f"  - {problem}")
    return EXIT_FAILED if problems else EXIT_OK


def cmd_schedules(args: argparse.Namespace) -> int:
    """List stored schedules (with the job each runs, or why it is skipped), or add one."""
    from agent_defs.jobs.catalog import build_catalog
    from agent_defs.schedules.definitions import job_for_schedule, schedule_problems
    from agent_defs.schedules.store import StoredSchedule, load_schedules, save_schedule
    from agent_defs.store.env import store_from_env

    store = store_from_env()
    catalog = build_catalog(store)
    if args.action == "add":
        missing = [
            flag
            for flag, value in (
                ("NAME", args.name),
                ("--graph", args.graph),
                ("--cron", args.cron),
                ("--user", args.user),
            )
            if not value
        ]
        if missing:
            raise CliError(f"schedules add needs {', '.join(missing)}")
        try:
            schedule = StoredSchedule(
                name=args.name,
                cron=args.cron,
                timezone=args.timezone,
                graph_id=args.graph,
                graph_version=args.version,
                inputs=_collect_inputs(args),
                user_id=args.user,
            )
        except ValueError as exc:
            raise CliError(f"schedule {args.name!r}: {exc}") from None
        problems = schedule_problems(schedule, catalog, store)
        if problems:
            raise CliError("\n".join(problems))
        print(f"stored schedule {schedule.name} ({save_schedule(schedule)})")
        return EXIT_OK
    schedules, problems = load_schedules()
    for schedule in schedules:
        found = schedule_problems(schedule, catalog, store)
        target = "SKIPPED: " + "; ".join(found) if found else job_for_schedule(schedule, catalog)
        print(f"{schedule.name}  {schedule.cron} ({schedule.timezone})  user {schedule.user_id}  -> {target}")
    for problem in problems:
        print(f"SKIPPED: {problem}")
    return EXIT_OK


# --- credits and credentials ----------------------------------------------------------------------


def _positive_credits(raw: str) -> int:
    try:
        amount = int(raw)
    except ValueError:
        raise CliError(f"AMOUNT must be a whole number of credits, got {raw!r}") from None
    if amount <= 0:
        raise CliError(f"AMOUNT must be a positive number of credits, got {amount}")
    return amount


def cmd_credits_grant(args: argparse.Namespace) -> int:
    from agent_defs.credits import CreditError, ledger_from_env

    amount = _positive_credits(args.amount)
    try:
        with ledger_from_env() as ledger:
            balance = ledger.grant(args.user, amount, args.reason)
    except CreditError as exc:
        raise CliError(str(exc)) from None
    print(f"granted {amount} credits to {args.user}; balance {balance}")
    return EXIT_OK


def cmd_credits_balance(args: argparse.Namespace) -> int:
    from agent_defs.credits import CreditError, ledger_from_env

    try:
        with ledger_from_env() as ledger:
            balance = ledger.balance(args.user)
            recent = ledger.transactions(args.user, limit=args.limit)
    except CreditError as exc:
        raise CliError(str(exc)) from None
    print(f"{args.user}: balance {balance}")
    for tx in recent:
        when = tx.created_at.strftime("%Y-%m-%d %H:%M:%S")
        detail = "  ".join(part for part in (tx.reference, tx.description) if part)
        print(f"  {when}  {tx.kind.value:<7} {tx.amount:>+10}  -> {tx.balance_after:<10} {detail}".rstrip())
    return EXIT_OK


def _read_secret(args: argparse.Namespace) -> str:
    """The secret from an environment variable or stdin, never argv (argv is visible in `ps`)."""
    import getpass
    import os

    if args.secret_env:
        value = os.environ.get(args.secret_env, "")
        if not value:
            raise CliError(f"--secret-env {args.secret_env}: that environment variable is not set or empty")
        return value
    if sys.stdin is None:
        raise CliError("no secret: pipe it on stdin or name a variable with --secret-env")
    if sys.stdin.isatty():
        value = getpass.getpass("secret (not echoed): ")
    else:
        value = sys.stdin.read().rstrip("\r\n")  # `echo key |` adds a newline that is not the key's
    if not value:
        raise CliError("no secret: stdin was empty (pipe the value in, or use --secret-env VAR)")
    return value


def cmd_credentials_add(args: argparse.Namespace) -> int:
    from agent_defs.credentials import CredentialsError, credentials_store_from_env

    try:
        store = credentials_store_from_env()  # config errors before asking for the secret
        secret = _read_secret(args)
        with store:
            meta = store.add(args.user, args.provider, args.type, secret, args.title)
    except CredentialsError as exc:
        raise CliError(str(exc)) from None
    print(meta.id)
    return EXIT_OK


def cmd_credentials_list(args: argparse.Namespace) -> int:
    from agent_defs.credentials import CredentialsError, credentials_store_from_env

    try:
        with credentials_store_from_env() as store:
            metas = store.list(args.user)
    except CredentialsError as exc:
        raise CliError(str(exc)) from None
    if not metas:
        print(f"no credentials for user {args.user!r}")
    for meta in metas:  # metadata only: CredentialsMeta has no value to print
        created = meta.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{meta.id}  {meta.provider}  {meta.type}  {meta.title!r}  {created}")
    return EXIT_OK


def cmd_credentials_delete(args: argparse.Namespace) -> int:
    from agent_defs.credentials import CredentialsError, credentials_store_from_env

    try:
        with credentials_store_from_env() as store:
            store.delete(args.id, args.user)
    except CredentialsError as exc:
        raise CliError(str(exc)) from None
    print(f"deleted credential {args.id}")
    return EXIT_OK


def cmd_credentials_rotate(args: argparse.Namespace) -> int:
    from agent_defs.credentials import CredentialsError, credentials_store_from_env

    try:
        with credentials_store_from_env() as store:
            count = store.rotate()
    except CredentialsError as exc:
        raise CliError(str(exc)) from None
    print(f"re-encrypted {count} credential(s) with the newest key")
    return EXIT_OK


def _add_credit_commands(sub: Any) -> None:
    credits = sub.add_parser("credits", help="per-user credit ledger (AGENTFLOW_DATABASE_URL)")
    credits_sub = credits.add_subparsers(dest="credits_command", required=True)
    grant = credits_sub.add_parser("grant", help="add credits to a user's balance")
    grant.add_argument("user", metavar="USER")
    grant.add_argument("amount", metavar="AMOUNT", help="a positive whole number of credits")
    grant.add_argument("--reason", default="granted with the agentflow CLI", metavar="TEXT")
    grant.set_defaults(func=cmd_credits_grant)
    balance = credits_sub.add_parser("balance", help="a user's balance and latest transactions")
    balance.add_argument("user", metavar="USER")
    balance.add_argument("--limit", type=int, default=10, metavar="N", help="transactions shown (default 10)")
    balance.set_defaults(func=cmd_credits_balance)

    creds = sub.add_parser(
        "credentials",
        help="per-user credentials, encrypted (AGENTFLOW_DATABASE_URL, AGENTFLOW_CREDENTIALS_KEYS)",
    )
    creds_sub = creds.add_subparsers(dest="credentials_command", required=True)
    add = creds_sub.add_parser("add", help="store a credential read from stdin; prints its id")
    add.add_argument("user", metavar="USER")
    add.add_argument("provider", metavar="PROVIDER")
    add.add_argument("--title", required=True, metavar="T")
    add.add_argument(
        "--type", default="api_key", help="api_key (default), oauth2, user_password, host_scoped"
    )
    add.add_argument(
        "--secret-env", metavar="VAR", help="read the secret from this environment variable, not stdin"
    )
    add.set_defaults(func=cmd_credentials_add)
    list_ = creds_sub.add_parser("list", help="a user's credentials (never their values)")
    list_.add_argument("user", metavar="USER")
    list_.set_defaults(func=cmd_credentials_list)
    delete = creds_sub.add_parser("delete", help="delete one of a user's credentials")
    delete.add_argument("user", metavar="USER")
    delete.add_argument("id", metavar="ID")
    delete.set_defaults(func=cmd_credentials_delete)
    rotate = creds_sub.add_parser("rotate", help="re-encrypt every credential with the newest key")
    rotate.set_defaults(func=cmd_credentials_rotate)


# --- the Redis request queue (agent_defs.requests) ---------------------------------------------------


def _request_queue() -> Any:
    from agent_defs.requests import RequestQueue, prefix_from_env, redis_from_env

    return RequestQueue(redis_from_env(), prefix_from_env())


def _redis_error(exc: Exception) -> CliError:
    import redis

    from agent_defs.requests import redact_url, redis_url_from_env

    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        where = redact_url(redis_url_from_env())
        return CliError(f"cannot reach Redis at {where} (AGENTFLOW_REDIS_URL): {exc}")
    return CliError(f"Redis error: {exc}")


def cmd_enqueue(args: argparse.Namespace) -> int:
    import uuid

    import redis
    from pydantic import ValidationError

    from agent_defs.requests import ExecutionRequest, describe_validation_error

    try:
        request = ExecutionRequest(
            request_id=args.request_id if args.request_id is not None else uuid.uuid4().hex,
            graph_id=args.graph_id,
            graph_version=args.version,
            user_id=args.user,
            inputs=_collect_inputs(args),
            priority=args.priority,
        )
    except ValidationError as exc:
        raise CliError(f"invalid request: {describe_validation_error(exc)}") from None
    try:
        _request_queue().enqueue(request)
    except redis.exceptions.RedisError as exc:
        raise _redis_error(exc) from None
    print(request.request_id)  # the run's key: the run launched for it carries this id
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    import redis
    from pydantic import ValidationError

    from agent_defs.requests import CancelRequest, describe_validation_error

    try:
        cancel = CancelRequest(request_id=args.request_id, run_id=args.run_id)
    except ValidationError as exc:
        raise CliError(f"invalid cancel request: {describe_validation_error(exc)}") from None
    try:
        _request_queue().request_cancel(cancel)
    except redis.exceptions.RedisError as exc:
        raise _redis_error(exc) from None
    what = f"request {cancel.request_id}" if cancel.request_id is not None else f"run {cancel.run_id}"
    print(f"cancel requested for {what}")
    return EXIT_OK


def _add_queue_commands(sub: Any) -> None:
    enqueue = sub.add_parser(
        "enqueue", help="queue a run of a stored graph on Redis (AGENTFLOW_REDIS_URL); prints the request id"
    )
    enqueue.add_argument("graph_id", metavar="GRAPH_ID")
    enqueue.add_argument("--version", type=int, metavar="N", help="graph version (default: the active one)")
    enqueue.add_argument("--user", required=True, help="the user the run belongs to")
    enqueue.add_argument(
        "--input", action="append", metavar="NAME=VALUE", help="a graph input (JSON or text)"
    )
    enqueue.add_argument("--inputs-json", metavar="JSON", help="graph inputs as one JSON object")
    enqueue.add_argument("--request-id", metavar="ID", help="idempotency key (default: a new uuid)")
    enqueue.add_argument("--priority", type=int, default=0, metavar="P", help="higher runs first (default 0)")
    enqueue.set_defaults(func=cmd_enqueue)

    cancel = sub.add_parser("cancel", help="ask for a queued or running run to be stopped (via Redis)")
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("--request-id", metavar="ID", help="the request id the run was queued with")
    which.add_argument("--run-id", metavar="ID", help="the Dagster run id")
    cancel.set_defaults(func=cmd_cancel)


def cmd_metrics(args: argparse.Namespace) -> int:
    """Serve Prometheus metrics computed at scrape time from the Dagster instance (DAGSTER_HOME, else
    the project's home) and Redis (AGENTFLOW_REDIS_URL, AGENTFLOW_REDIS_PREFIX)."""
    import os

    from agent_defs.logs import configure_json_logging

    configure_json_logging()
    if not os.environ.get("DAGSTER_HOME"):
        from agent_defs.instance import prepare_dagster_home

        prepare_dagster_home()
    from dagster import DagsterInstance

    from agent_defs.metrics import build_registry, serve
    from agent_defs.requests import RequestQueue, prefix_from_env, redis_from_env

    def queue() -> RequestQueue:
        # Short timeouts: a Redis outage leaves the queue gauges out of one scrape, never hangs it.
        return RequestQueue(redis_from_env(socket_connect_timeout=2.0, socket_timeout=2.0), prefix_from_env())

    with DagsterInstance.get() as instance:
        try:
            serve(args.host, args.port, build_registry(instance, queue))
        except OSError as exc:
            raise CliError(f"cannot serve metrics on {args.host}:{args.port}: {exc}") from None
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentflow", description="AutoGPT-style agent graphs on Dagster")
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="check graph files; exit 1 if any is invalid")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="graph files or directories of them")
    validate.set_defaults(func=cmd_validate)

    run = sub.add_parser("run", help="run a graph with the reference engine")
    run.add_argument("path", metavar="PATH")
    run.add_argument("--input", action="append", metavar="NAME=VALUE", help="a graph input (JSON or text)")
    run.add_argument("--inputs-json", metavar="JSON", help="graph inputs as one JSON object")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")
    run.add_argument("--user", default="local", help="the user the run belongs to")
    run.add_argument("--run-id", default="local-run")
    run.add_argument(
        "--max-node-executions",
        type=_whole_number(1),
        metavar="N",
        help="node executions the run and all its sub-agents may start together "
        "(default: AGENTFLOW_MAX_NODE_EXECUTIONS, else 100000)",
    )
    run.add_argument(
        "--max-subagent-depth",
        type=_whole_number(0),
        metavar="N",
        help="how deep sub-agents may nest (default: AGENTFLOW_MAX_SUBAGENT_DEPTH, else 10)",
    )
    run.add_argument(
        "--engine",
        choices=("reference", "dagster"),
        default="reference",
        help="reference: the reference engine in this process; dagster: the compiled job, recorded in "
        "the project's Dagster instance",
    )
    run.set_defaults(func=cmd_run)

    store_help = "use the graph directory DIR instead of the configured store (AGENTFLOW_GRAPH_STORE)"
    import_ = sub.add_parser(
        "import", help="validate graph files and store the valid ones; exit 1 if any fails"
    )
    import_.add_argument("paths", nargs="+", metavar="PATH", help="graph files or directories of them")
    import_.add_argument("--store-dir", metavar="DIR", help=store_help)
    import_.set_defaults(func=cmd_import)

    graphs = sub.add_parser("graphs", help="list stored graph versions and what could not be read")
    graphs.add_argument("--store-dir", metavar="DIR", help=store_help)
    graphs.set_defaults(func=cmd_graphs)

    schedules = sub.add_parser("schedules", help="list stored schedules, or add one")
    schedules.add_argument("action", nargs="?", choices=("list", "add"), default="list")
    schedules.add_argument("name", nargs="?", help="schedule name (letters, digits, underscores)")
    schedules.add_argument("--graph", help="graph id")
    schedules.add_argument("--version", type=int, help="graph version (default: the active one)")
    schedules.add_argument("--cron", help="cron expression, e.g. '0 6 * * *'")
    schedules.add_argument("--timezone", default="UTC")
    schedules.add_argument("--user", help="the user the runs belong to")
    schedules.add_argument("--input", action="append", metavar="NAME=VALUE")
    schedules.add_argument("--inputs-json", metavar="JSON")
    schedules.set_defaults(func=cmd_schedules)

    blocks = sub.add_parser("blocks", help="list every block with its pins")
    blocks.add_argument("--json", action="store_true")
    blocks.set_defaults(func=cmd_blocks)
    metrics = sub.add_parser(
        "metrics", help="serve Prometheus metrics at /metrics (from the Dagster instance and Redis)"
    )
    metrics.add_argument("--port", type=int, required=True, metavar="N")
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    metrics.set_defaults(func=cmd_metrics)
    _add_credit_commands(sub)
    _add_queue_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the promise: no traceback reaches the user
        print(f"error: internal error ({type(exc).__name__}): {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
