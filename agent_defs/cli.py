"""The `agentflow` command line: validate, run, import and inspect agent graphs.

Every failure is a one-line message and a non-zero exit; no traceback reaches the user.
"""

from __future__ import annotations

import argparse
import json
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


def check_graph_file(path: Path) -> tuple[Graph | None, list[GraphProblem]]:
    """(the graph or None, every problem with it): what the loader reports and, when the rest of the
    graph could be read, what validation finds in that rest, so that one check reports everything."""
    from agent_defs.graph import GraphLoadError, load_graph_file
    from agent_defs.graph.validation import validate_graph

    try:
        graph = load_graph_file(path)
    except GraphLoadError as exc:
        if exc.graph is None:
            return None, list(exc.problems)
        return None, [*exc.problems, *validate_graph(exc.graph, broken_nodes=exc.broken_nodes)]
    return graph, validate_graph(graph)


def cmd_validate(args: argparse.Namespace) -> int:
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
    return worst


def parse_input_value(raw: str) -> Any:
    """NAME=VALUE values are JSON when they parse as JSON, else plain strings."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _collect_inputs(args: argparse.Namespace) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if args.inputs_json:
        try:
            given = json.loads(args.inputs_json)
        except json.JSONDecodeError as exc:
            raise CliError(f"--inputs-json is not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(given, dict):
            raise CliError(f"--inputs-json must be a JSON object, got {type(given).__name__}")
        inputs.update(given)
    for item in args.input or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise CliError(f"--input {item!r}: expected NAME=VALUE")
        inputs[name] = parse_input_value(value)
    return inputs


def cmd_run(args: argparse.Namespace) -> int:
    from agent_defs.engine import EngineLimits, ReferenceEngine, RunOptions
    from agent_defs.graph.io_nodes import graph_input_names

    path = Path(args.path)
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    graph, problems = check_graph_file(path)
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
        return _run_on_dagster(graph, inputs, args)
    engine = ReferenceEngine(limits=EngineLimits(max_node_executions=args.max_node_executions))
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


def _run_on_dagster(graph: Any, inputs: dict[str, Any], args: argparse.Namespace) -> int:
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
            result = compile_graph(graph, console_log_level="WARNING").execute_in_process(
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
    run.add_argument("--max-node-executions", type=int, default=100_000, metavar="N")
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

    blocks = sub.add_parser("blocks", help="list every block with its pins")
    blocks.add_argument("--json", action="store_true")
    blocks.set_defaults(func=cmd_blocks)
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
