"""Compiles a stored graph version into a Dagster job (one op per node where exact, region ops else).

Every op runs its node(s) with the reference engine (`GraphPart`), so the compiled job and the
engine agree by construction; what the compiler decides is only where the step boundaries are.
"""

import hashlib
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from dagster import Any as DagsterAny
from dagster import (
    DagsterEventType,
    DependencyDefinition,
    Failure,
    GraphDefinition,
    In,
    JobDefinition,
    MultiDependencyDefinition,
    NodeInvocation,
    Nothing,
    OpDefinition,
    OpExecutionContext,
    Out,
    Output,
    colored_console_logger,
    in_process_executor,
    mem_io_manager,
)

from agent_defs.compile.mode import choose_compile
from agent_defs.compile.plan import CompilePlan, OpKind, OpPlan, identifier, plan_compile, reference_order
from agent_defs.engine import EngineLimits, GraphPart, ReferenceEngine, RunOptions, RunResult, RunStatus
from agent_defs.graph.io_nodes import recorded_output
from agent_defs.graph.model import Graph, Link
from agent_defs.jobs.run_config import RUN_RESOURCE_KEY, AgentRunParams, job_config_mapping
from agent_defs.jobs.services import SERVICES_RESOURCE_KEY, PlatformServices
from agent_defs.logs import log_node_executions
from blocks import REGISTRY

log = logging.getLogger(__name__)

START_OP = "agentflow_start"
SUMMARY_OP = "agentflow_run_summary"
TAG_PREFIX = "agentflow/"
MAX_METADATA_CHARS = 4_000
DETAILS_KEY = "agentflow_details"


class PinValues(NamedTuple):
    """What travels on a Dagster edge: the link's source (so a region's inbox can route it) and every
    value that pin yielded, in order (one, unless the pin is a repeated one feeding a region), each
    with its place in the run: (the source node's place in the reference engine's order, its
    production order within the step). A region sorts its inputs by it, so it receives them as the
    reference engine routes them (interleaved across pins and sources), not grouped per pin, nor in
    whatever order Dagster ran the steps."""

    source_id: str
    source_name: str
    values: tuple[Any, ...]
    order: tuple[tuple[int, int], ...]


def job_name(graph: Graph) -> str:
    return identifier(f"{graph.name}_v{graph.version}", "graph")


def _truncate(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= MAX_METADATA_CHARS else text[: MAX_METADATA_CHARS - 3] + "..."


def _execution_metadata(result: RunResult, output_nodes: frozenset[str]) -> dict[str, Any]:
    """This op's node executions, and the graph outputs they recorded stamped with their start time
    (so the summary can order outputs from several ops as they happened)."""
    executions = [
        {
            **e.summary(),
            "block_id": e.block_id,  # for the metrics' block_error_rate{block_id,block_name}
            "outputs": [[pin, value] for pin, value in e.outputs],
            "ended_at": e.ended_at,
        }
        for e in result.executions
    ]
    return {
        "node_executions": executions,
        "skipped": [
            {"node_id": s.node_id, "block": s.block_name, "reason": s.reason} for s in result.skipped
        ],
        # Each AgentOutput execution that started records the value that reached it, as the engine does.
        "graph_outputs": [
            [e.started_at, *recorded_output(e.input_data or {})]
            for e in result.executions
            if e.node_id in output_nodes and e.started_at
        ],
    }


class _OpRunner:
    """The compute function of one op: deliver the inputs, run the part, yield what left it."""

    def __init__(
        self, graph: Graph, op: OpPlan, engine: ReferenceEngine, output_nodes: frozenset[str], rank: int
    ) -> None:
        self.graph = graph
        self.op = op
        self.rank = rank  # its node's place in the reference engine's order (node ops)
        self.engine = engine
        self.output_nodes = output_nodes & op.nodes
        self.inbound_by_source: dict[tuple[str, str], list[Link]] = {}
        for link in op.inbound:
            self.inbound_by_source.setdefault((link.source_id, link.source_name), []).append(link)

    def deliveries(self, inputs: Mapping[str, Any]) -> list[tuple[Link, Any]]:
        if self.op.kind is OpKind.NODE:
            return [(link, inputs[name].values[0]) for name, link in self.op.inputs.items() if name in inputs]
        produced: list[tuple[tuple[int, int], list[Link], Any]] = []
        for item in inputs.get("inbox", []):
            if isinstance(item, PinValues):
                links = self.inbound_by_source.get((item.source_id, item.source_name), [])
                produced.extend(zip(item.order, (links,) * len(item.values), item.values, strict=True))
        produced.sort(key=lambda entry: entry[0])  # stable: one pin's values keep their order
        return [(link, value) for _, links, value in produced for link in links]

    def __call__(self, context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Output[Any]]:
        params: AgentRunParams = getattr(context.resources, RUN_RESOURCE_KEY)
        services: PlatformServices = getattr(context.resources, SERVICES_RESOURCE_KEY)
        # Node execution ids (`<run>/<op>:<n>`) are stable across a retried step: charges are keyed by them.
        options = RunOptions(
            run_id=f"{context.run_id}/{self.op.name}",
            user_id=params.user_id,
            input_masks=params.input_masks,
            settings=services.settings,
        )
        part = GraphPart(self.op.nodes, self.deliveries(inputs))
        engine = services.engine_for(self.engine, context.run_id)
        budget = services.execution_budget(self.engine.limits.max_node_executions)
        result = engine.run_sync(self.graph, params.inputs, options, part=part, budget=budget)
        details = _execution_metadata(result, self.output_nodes)
        _log_executions(context, result, completed=self.op.kind is not OpKind.NODE)
        # ...and one JSON line per node execution on stderr (agent_defs/logs.py), for the compute logs.
        log_node_executions(
            result.executions,
            run_id=context.run_id,
            user_id=params.user_id,
            graph_id=self.graph.id,
            graph_version=self.graph.version,
            step=self.op.name,
        )
        if result.status is not RunStatus.COMPLETED:
            if result.stopped_by:
                context.instance.add_run_tags(context.run_id, {f"{TAG_PREFIX}stopped_by": result.stopped_by})
            raise Failure(
                description=f"{self.op.name}: {result.status.value}: {result.error}",
                metadata={"node_executions": _truncate(details["node_executions"])},
            )
        # Several links from one (node, pin) share its output: take each yielded value once.
        fired: dict[str, list[tuple[Any, tuple[int, int]]]] = {}
        first_link: dict[str, str] = {}
        for link, value, seq in result.outbound:
            produced = (self.rank, seq)
            output_name = self.op.outputs[(link.source_id, link.source_name)]
            if first_link.setdefault(output_name, link.id) == link.id:
                fired.setdefault(output_name, []).append((value, produced))
        metadata = {
            "node_executions": len(result.executions),
            "node_errors": result.node_error_count,
            "cost": result.cost,
            "walltime_ms": round(sum(e.walltime for e in result.executions) * 1000, 3),
            "input_bytes": sum(e.input_size for e in result.executions),
            "output_bytes": sum(e.output_size for e in result.executions),
            # The summary step reads this back from the event log.
            DETAILS_KEY: json.dumps(details, default=str),
        }
        # The step's metadata rides on its first output; `result` is yielded only when no pin fired,
        # so a node op costs Dagster the same events as a hand-written op.
        for (source_id, source_name), output_name in self.op.outputs.items():
            if output_name in fired:
                pin_values, produced = zip(*fired[output_name], strict=True)
                values = PinValues(source_id, source_name, pin_values, produced)
                yield Output(values, output_name, metadata=metadata)
                metadata = {}
        if metadata:
            yield Output(None, "result", metadata=metadata)


LOG_BATCH = 50


def _log_executions(context: OpExecutionContext, result: RunResult, completed: bool) -> None:
    """Failures are logged one event each; completed executions of region and fused steps in
    batches (each log line is a stored event, and a fused step may run thousands of nodes). A node
    step's single execution is in its output metadata instead."""
    batch: list[str] = []
    for execution in result.executions:
        line = (
            f"node {execution.node_id} ({execution.block_name}) {execution.status.value} "
            f"in {execution.walltime * 1000:.1f} ms, in {execution.input_size} B, "
            f"out {execution.output_size} B, cost {execution.cost}"
        )
        if execution.error is not None:
            context.log.error(f"{line}: {execution.error}")
            continue
        if not completed:
            continue
        batch.append(line)
        if len(batch) == LOG_BATCH:
            context.log.info("\n".join(batch))
            batch = []
    if batch:
        context.log.info("\n".join(batch))
    for skipped in result.skipped:
        context.log.warning(f"node {skipped.node_id} ({skipped.block_name}) not run: {skipped.reason}")


def _details_in_run(context: OpExecutionContext) -> list[dict[str, Any]]:
    records = context.instance.get_records_for_run(
        context.run_id, of_type=DagsterEventType.STEP_OUTPUT, limit=1_000_000
    ).records
    found = []
    for record in records:
        event = record.event_log_entry.dagster_event
        entry = event.step_output_data.metadata.get(DETAILS_KEY) if event is not None else None
        if entry is not None:
            found.append(json.loads(entry.value))
    return found


def _summary_op() -> OpDefinition:
    def summarize(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Output[Any]]:
        outputs: list[tuple[float, str, Any]] = []
        counts: dict[str, int] = {}
        failed: dict[str, int] = {}
        errors = executions = 0
        for details in _details_in_run(context):
            outputs.extend(tuple(item) for item in details["graph_outputs"])  # type: ignore[misc]
            for e in details["node_executions"]:
                if e["status"] in ("COMPLETED", "FAILED"):
                    counts[e["node_id"]] = counts.get(e["node_id"], 0) + 1
                    executions += 1
                    if e["status"] == "FAILED":
                        errors += 1
                        failed[e["node_id"]] = failed.get(e["node_id"], 0) + 1
        graph_outputs: dict[str, list[Any]] = {}
        for _, name, value in sorted(outputs, key=lambda item: item[0]):
            graph_outputs.setdefault(name, []).append(value)
        context.instance.add_run_tags(context.run_id, {f"{TAG_PREFIX}node_error_count": str(errors)})
        if errors:
            context.log.error(
                f"{errors} node execution(s) failed; the run goes on as AutoGPT's does (rule 6)"
            )
        yield Output(
            graph_outputs,
            "outputs",
            metadata={
                "graph_outputs": json.dumps(graph_outputs, default=str),
                "node_executions": executions,
                "node_execution_counts": json.dumps(counts),
                "failed_nodes": json.dumps(failed),
                "node_error_count": errors,
            },
        )

    return OpDefinition(
        name=SUMMARY_OP,
        ins={"results": In(Nothing)},
        outs={"outputs": Out(DagsterAny)},
        compute_fn=summarize,
        description="Collects the graph's outputs (name -> list) and its node error count.",
        tags={f"{TAG_PREFIX}kind": "summary"},
    )


def _start_op() -> OpDefinition:
    def start(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Output[Any]]:
        yield Output(None, "go")

    return OpDefinition(
        name=START_OP,
        outs={"go": Out(DagsterAny)},  # Any: region inboxes (Any fan-ins) depend on it too
        compute_fn=start,
        description="Always runs, so that region and summary steps run even when no input fired.",
    )


# Op definitions are shared by every node of the same shape (block, input and output names), in
# every job: building and snapshotting 20,000 distinct definitions for 1,000 graphs is what makes a
# code location slow. The node (alias) and its job say which runner a step uses.
_SHARED_OPS: dict[tuple[str, ...], OpDefinition] = {}
_RUNNERS: dict[tuple[str, str], _OpRunner] = {}
_ANY_IN = In(DagsterAny)
_OPTIONAL_OUT = Out(DagsterAny, is_required=False)
_RESULT_OUT = Out(Nothing, is_required=False, description="yielded when no pin fired, to carry the metadata")


def _run_compiled_op(context: OpExecutionContext, inputs: Mapping[str, Any]) -> Iterator[Output[Any]]:
    runner = _RUNNERS[(context.job_name, context.op_handle.name)]
    yield from runner(context, inputs)


def _shared_op(graph: Graph, op: OpPlan) -> OpDefinition:
    outputs = tuple(sorted(op.outputs.values()))
    if op.kind is OpKind.NODE:
        (node_id,) = op.nodes
        block_id = graph.nodes_by_id[node_id].block_id
        block = REGISTRY.get(block_id)
        assert block is not None
        inputs = tuple(sorted(op.inputs))
        key = ("node", block_id, *inputs, "->", *outputs)
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:8]
        name = f"{identifier(block.name.removesuffix('Block'))}_{digest}"
        description = f"Runs one {block.name} node with the reference engine."
    else:
        inputs = ("inbox",) if op.inbound else ()
        key = ("region", *inputs)
        name = "agentflow_region_with_inbox" if inputs else "agentflow_region"
        description = "Runs a region of the graph (several nodes) with the reference engine."
    shared = _SHARED_OPS.get(key)
    if shared is None:
        outs = {output: _OPTIONAL_OUT for output in outputs}
        outs["result"] = _RESULT_OUT
        shared = OpDefinition(
            name=name,
            ins={i: _ANY_IN for i in inputs},
            outs=outs,
            compute_fn=_run_compiled_op,
            required_resource_keys={RUN_RESOURCE_KEY, SERVICES_RESOURCE_KEY},
            description=description,
        )
        _SHARED_OPS[key] = shared
    return shared


def _node_tags(graph: Graph, op: OpPlan) -> dict[str, str]:
    nodes = graph.nodes_by_id
    ordered = sorted(op.nodes)
    return {
        f"{TAG_PREFIX}kind": op.kind.value,
        f"{TAG_PREFIX}node_id": ",".join(ordered),
        f"{TAG_PREFIX}block_id": ",".join(sorted({nodes[n].block_id for n in ordered})),
    }


def compile_graph(
    graph: Graph,
    fused: bool | None = None,
    engine: ReferenceEngine | None = None,
    console_log_level: str = "INFO",
    name: str | None = None,
    depth_limit: int | None = None,
) -> JobDefinition:
    """The Dagster job for one stored graph version (named `name`, else from the graph).

    `fused` forces a mode; by default the graph's stored setting and its depth choose it (against
    `depth_limit`, else the environment's)."""
    from agent_defs.graph.io_nodes import block_type_of
    from blocks import BlockType

    description = graph.description or graph.name
    if fused is None:
        choice = choose_compile(graph, depth_limit)
        plan, fused = choice.plan, choice.fused
        if choice.fused_because:
            log.warning("%s compiled fused (one op, reference engine): %s", graph.ref, choice.fused_because)
            description = f"{description}\n\nCompiled fused: {choice.fused_because}."
    else:
        plan = plan_compile(graph, fused=fused)
    engine = engine or ReferenceEngine(limits=EngineLimits.from_env())
    output_nodes = frozenset(n.id for n in graph.nodes if block_type_of(n) is BlockType.OUTPUT)
    name = name or job_name(graph)
    order = reference_order(graph)
    needs_start = _needs_start(plan)
    deps = _dependencies(plan, needs_start)
    invocations: dict[NodeInvocation, dict[str, Any]] = {}
    node_defs: dict[str, OpDefinition] = {}
    for op in plan.ops:
        definition = _shared_op(graph, op)
        node_defs[definition.name] = definition
        rank = min(order[node_id] for node_id in op.nodes) if op.nodes else 0
        _RUNNERS[(name, op.name)] = _OpRunner(graph, op, engine, output_nodes, rank)
        invocations[NodeInvocation(definition.name, alias=op.name, tags=_node_tags(graph, op))] = deps.get(
            op.name, {}
        )
    if needs_start:
        node_defs[START.name] = START
        invocations[NodeInvocation(START.name)] = {}
    node_defs[SUMMARY.name] = SUMMARY
    start = [DependencyDefinition(START_OP, "go")] if needs_start else []
    # Every output of every op: Dagster skips a fan-in only when all its sources were skipped, and a
    # run whose last ops never became ready (their inputs never fired) must still be summarised.
    summary_sources = start + [
        DependencyDefinition(op.name, output)
        for op in plan.ops
        for output in ("result", *sorted(set(op.outputs.values())))
    ]
    invocations[NodeInvocation(SUMMARY.name)] = {"results": MultiDependencyDefinition(summary_sources)}
    graph_def = GraphDefinition(
        name=name,
        node_defs=list(node_defs.values()),
        dependencies=invocations,
        description=description,
    )
    return graph_def.to_job(
        config=job_config_mapping(graph, console_log_level),
        executor_def=in_process_executor,
        resource_defs={
            "io_manager": mem_io_manager,
            RUN_RESOURCE_KEY: RUN_PARAMS,
            SERVICES_RESOURCE_KEY: SERVICES,
        },
        logger_defs={"console": colored_console_logger},
        tags={
            f"{TAG_PREFIX}graph_id": graph.id,
            f"{TAG_PREFIX}graph_version": str(graph.version),
            f"{TAG_PREFIX}compile_mode": "fused" if fused else "per_node",
        },
    )


def _needs_start(plan: CompilePlan) -> bool:
    """A step with no inputs always runs; without one, the summary's fan-in could be wholly skipped."""
    regions_with_inputs = any(op.kind is not OpKind.NODE and op.inbound for op in plan.ops)
    always_runs = any(not op.inbound for op in plan.ops)
    return regions_with_inputs or not always_runs


def _dependencies(plan: CompilePlan, with_start: bool) -> dict[str, dict[str, Any]]:
    deps: dict[str, dict[str, Any]] = {}
    for op in plan.ops:
        if op.kind is OpKind.NODE:
            deps[op.name] = {
                name: DependencyDefinition(plan.op_of_node[link.source_id], _output_of(plan, link))
                for name, link in op.inputs.items()
            }
        elif op.inbound:
            # The start op keeps a region's fan-in from being skipped when none of its inputs fired.
            sources = [DependencyDefinition(START_OP, "go")] if with_start else []
            seen: set[tuple[str, str]] = set()
            for link in op.inbound:
                key = (plan.op_of_node[link.source_id], _output_of(plan, link))
                if key not in seen:
                    seen.add(key)
                    sources.append(DependencyDefinition(*key))
            deps[op.name] = {"inbox": MultiDependencyDefinition(sources)}
    return deps


def _output_of(plan: CompilePlan, link: Link) -> str:
    return plan.op(plan.op_of_node[link.source_id]).outputs[(link.source_id, link.source_name)]


# Identical in every job, so one definition each is shared by all of them (converting a resource
# class into a definition costs about 2 ms, per job if it were not shared).
START = _start_op()
SUMMARY = _summary_op()
RUN_PARAMS = AgentRunParams.configure_at_launch()
SERVICES = PlatformServices()
