"""The Block SDK: what a block is, and the typed contracts the engine and the blocks share.

No Dagster here: blocks run the same inside the reference engine, a region op or a fused op.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, ValidationError

from blocks.conversion import PinConversionError, convert_input


class BlockDefinitionError(TypeError):
    """A block class is malformed; raised when its module is imported."""


class BlockInputError(ValueError):
    """A node's merged input does not fit its block's Input model; names every offending pin."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems  # (pin, message)
        super().__init__("; ".join(f"pin {pin!r}: {msg}" for pin, msg in problems))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the engine retries a failed execution attempt of a block (a node may override the numbers
    in its stored metadata, `agentflow.retry`).

    An attempt fails when the block raises, yields `error`, yields one of `retry_on_pins` (e.g. an
    HTTP block's `server_error`) or runs past its timeout. It is retried, after an exponential backoff
    (`backoff_seconds * 2**n`, capped at `max_backoff_seconds`, then spread by +-`jitter` as a fraction),
    only when the failure is transient: an exception of one of `retry_on` types, an error text
    containing one of `retry_on_errors` (case-insensitive), a `retry_on_pins` yield, or a timeout
    (`retry_timeouts`). With more than one attempt, an attempt's yields are held back and routed only
    once it is final, so a retried node fires its links once. The same classification tells a circuit
    breaker which failures are the provider's.
    """

    attempts: int = 1
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    jitter: float = 0.1
    retry_on: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)
    retry_on_errors: tuple[str, ...] = ()
    retry_on_pins: frozenset[str] = frozenset()
    retry_timeouts: bool = True
    # Every failure is transient (what a node's `agentflow.retry` means on a block without a policy).
    retry_all: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be at least 1, not {self.attempts}")
        if self.backoff_seconds < 0 or self.max_backoff_seconds < 0:
            raise ValueError("RetryPolicy backoff seconds must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"RetryPolicy.jitter is a fraction between 0 and 1, not {self.jitter}")

    def delay(self, retry: int, random: Callable[[], float]) -> float:
        """Seconds to wait before retry number `retry` (1 = the first retry); `random` gives [0, 1)."""
        base = min(self.max_backoff_seconds, self.backoff_seconds * (2 ** (retry - 1)))
        return max(0.0, base * (1 + self.jitter * (2 * random() - 1)))

    def is_transient(self, error: str | None, exc: BaseException | None = None) -> bool:
        if self.retry_all:
            return True
        if exc is not None and isinstance(exc, self.retry_on):
            return True
        if error:
            lowered = error.lower()
            return any(marker.lower() in lowered for marker in self.retry_on_errors)
        return False


class BlockType(StrEnum):
    STANDARD = "Standard"
    INPUT = "Input"
    OUTPUT = "Output"
    NOTE = "Note"
    AGENT = "Agent"
    AI = "AI"


class BlockCategory(StrEnum):
    BASIC = "BASIC"
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"
    TEXT = "TEXT"
    LOGIC = "LOGIC"
    DATA = "DATA"
    AGENT = "AGENT"
    AI = "AI"
    SEARCH = "SEARCH"
    DEVELOPER_TOOLS = "DEVELOPER_TOOLS"
    SOCIAL = "SOCIAL"
    MULTIMEDIA = "MULTIMEDIA"


class CostType(StrEnum):
    RUN = "run"  # a flat amount per execution
    BYTE = "byte"  # amount per byte of input
    SECOND = "second"  # amount per second of wall time
    # Per token the block reports in its stats (input_token_count, output_token_count), at
    # `token_rate`; `amount` when it reports none. Charged after the node ran, retries included.
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class TokenRate:
    """Credits per 1,000,000 tokens."""

    input: float
    output: float


@dataclass(frozen=True, slots=True)
class BlockCost:
    amount: int
    type: CostType = CostType.RUN
    # Applies only when this is a subset of the node's input (empty, None and "" compare equal).
    filter: Mapping[str, Any] = field(default_factory=dict)
    token_rate: TokenRate | None = None  # for CostType.TOKENS

    def __post_init__(self) -> None:
        if self.type is CostType.TOKENS and self.token_rate is None:
            raise ValueError("a TOKENS block cost needs a token_rate")


@dataclass(frozen=True, slots=True)
class CredentialsField:
    """A block input that takes a credentials *reference*; the value is resolved just before `run`."""

    input_name: str
    provider: str
    type: str = "api_key"  # api_key | oauth2 | user_password | host_scoped
    # The block can run without one (e.g. it falls back to operator-configured settings): a node
    # with no reference then runs with no credential instead of failing.
    optional: bool = False
    # The environment variable holding the operator's secret such a node uses instead: the engine
    # redacts it from the node's outputs and errors as it does a resolved credential.
    env_fallback: str = ""


@dataclass(frozen=True, slots=True)
class Credentials:
    id: str
    provider: str
    type: str
    secret: SecretStr
    owner_user_id: str
    title: str = ""


class BlockInput(BaseModel):
    """Base of every block's Input model. Unknown keys (UI leftovers in exports) are ignored."""

    model_config = ConfigDict(extra="ignore", arbitrary_types_allowed=True)


class BlockOutput(BaseModel):
    """Base of every block's Output model: every block has an `error` pin."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    error: str = Field(default="", description="Error message if the block failed")


class SubgraphRunner(Protocol):
    """Runs another stored graph for a sub-agent node and streams its outputs."""

    def __call__(
        self, graph_id: str, graph_version: int, inputs: Mapping[str, Any], ctx: RunContext
    ) -> AsyncIterator[tuple[str, Any]]: ...


async def _no_subgraphs(
    graph_id: str, graph_version: int, inputs: Mapping[str, Any], ctx: RunContext
) -> AsyncIterator[tuple[str, Any]]:
    raise RuntimeError("this run has no sub-graph runner; AgentExecutor needs one")
    yield  # pragma: no cover - makes this an async generator


class KeyValueStore(Protocol):
    """Values a user's runs keep between runs (AutoGPT's execution KV data), by user and key."""

    async def get(self, user_id: str, key: str) -> Any | None: ...

    async def put(self, user_id: str, key: str, value: Any, node_exec_id: str) -> Any:
        """Store `value` (JSON) under the key, replacing what was there; returns what was stored."""
        ...


@dataclass(frozen=True, slots=True)
class OutgoingLink:
    """One link leaving the node, with what the block may know of its sink (SmartDecisionMaker offers
    each sink node to the model as a tool)."""

    source_pin: str
    sink_node_id: str
    sink_pin: str
    sink_block: Block
    sink_input_default: Mapping[str, Any]
    # For a sub-agent sink: the sub-graph's name and description ("" when unknown).
    sink_graph_name: str = ""
    sink_graph_description: str = ""


@dataclass(slots=True)
class RunContext:
    """What a block may know about the execution it runs in. Typed, so no **kwargs travel."""

    user_id: str = "local"
    graph_id: str = ""
    graph_version: int = 0
    run_id: str = ""
    node_id: str = ""
    node_exec_id: str = ""
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    run_subgraph: SubgraphRunner = _no_subgraphs
    # Operator switches a block must obey (e.g. whether private addresses may be called).
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Counters the block reports about its own work (AutoGPT's NodeExecutionStats names, e.g.
    # llm_call_count, llm_retry_count, input_token_count, output_token_count); the engine records
    # them with the node execution.
    stats: dict[str, float] = field(default_factory=dict)
    # The links out of this node (only for blocks with `needs_outgoing_links`; empty otherwise).
    outgoing_links: Sequence[OutgoingLink] = ()
    # Durable per-user values (PersistInformation / RetrieveInformation); None: this run has none.
    kv_store: KeyValueStore | None = None


def pydantic_to_data(value: Any) -> Any:
    """`value` with pydantic models (at the top or in lists) as dicts, like AutoGPT's
    `convert_pydantic_to_json`; anything else is returned as it is."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list) and any(isinstance(v, BaseModel | list) for v in value):
        return [pydantic_to_data(v) for v in value]
    return value


ExpectedOutput = Any  # a literal, a type (isinstance check) or a predicate (value -> bool)


@dataclass(frozen=True)
class BlockSelfTest:
    """One self-test case: run with `input`, expect exactly `output`, in order.

    `mocks` replaces attributes of the block instance (its I/O helpers) for the duration of the test.
    """

    input: Mapping[str, Any]
    output: Sequence[tuple[str, ExpectedOutput]]
    mocks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)
    # Resolved credentials by input pin, as the engine would hand them to the block.
    credentials: Mapping[str, Credentials] = field(default_factory=dict)


def _is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except (ValueError, AttributeError, TypeError):
        return False


class Block:
    """Base of every block. Subclasses declare class attributes; `run` is an async generator.

    The class is checked when it is defined, so a malformed block fails loudly at import.
    A class without an `id` is abstract (a shared base for a family of blocks).
    """

    id: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str]
    categories: ClassVar[frozenset[BlockCategory]] = frozenset({BlockCategory.BASIC})
    Input: ClassVar[type[BlockInput]]
    Output: ClassVar[type[BlockOutput]]
    block_type: ClassVar[BlockType] = BlockType.STANDARD
    # Every link out of a static-output block is static (rule 3).
    static_output: ClassVar[bool] = False
    # Output pins that may yield more than once per execution; None means any pin may. The compiler
    # gives a node its own Dagster op only when it knows the node's pins fire at most once.
    repeated_output_pins: ClassVar[frozenset[str] | None] = None
    costs: ClassVar[Sequence[BlockCost]] = ()
    # Whether a failed execution's charge is given back (e.g. a provider call that failed before any
    # work was billed to us); the ledger records a compensating entry, never an edit.
    refund_on_failure: ClassVar[bool] = False
    credentials: ClassVar[Sequence[CredentialsField]] = ()
    # --- resilience (DESIGN.md, "resilience") ------------------------------------------------------
    # Retries of a failed attempt; a node's metadata `agentflow.retry` may override the numbers.
    retry_policy: ClassVar[RetryPolicy | None] = None
    # Cancel an attempt that runs longer; a node's metadata `agentflow.timeout_seconds` overrides it.
    timeout_seconds: ClassVar[float | None] = None
    # The external provider a circuit breaker guards (None: the first credentials field's provider,
    # or no breaker). `breaker_key` may narrow it per input (e.g. per host).
    provider: ClassVar[str | None] = None
    # A pure block: an identical earlier execution's outputs may be reused (within a TTL). With
    # `cache_requires_opt_in` (LLM calls) only on nodes whose metadata says `agentflow.cache: true`.
    cacheable: ClassVar[bool] = False
    cache_requires_opt_in: ClassVar[bool] = False
    cache_ttl_seconds: ClassVar[float] = 3600.0
    self_tests: ClassVar[Sequence[BlockSelfTest]] = ()
    # --- readiness (AutoGPT's get_missing_links / get_missing_input overrides) ------------------------
    # Linked input pins an execution may start without (a loop's feedback pins: the first execution
    # cannot wait for a value the node itself causes). `missing_inputs` then decides.
    optional_link_pins: ClassVar[frozenset[str]] = frozenset()
    # The engine fills `RunContext.outgoing_links` for this block.
    needs_outgoing_links: ClassVar[bool] = False

    _output_adapters: ClassVar[dict[str, TypeAdapter[Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "id" not in cls.__dict__:
            return
        _check_block_class(cls)
        cls.name = cls.__dict__.get("name", cls.__name__)
        cls._output_adapters = {pin: TypeAdapter(f.annotation) for pin, f in cls.Output.model_fields.items()}

    def run(self, input: Any, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        raise NotImplementedError

    def breaker_key(self, input: Any) -> str | None:
        """The circuit breaker this execution goes through: the provider, unless a block narrows it."""
        if self.provider is not None:
            return self.provider
        return self.credentials[0].provider if self.credentials else None

    def link_problems(self, static_by_pin: Mapping[str, bool]) -> Sequence[tuple[str, str]]:
        """(pin, message) for each way the node's incoming links are wired that the block cannot run
        with; `static_by_pin` names every linked pin, True when a static link feeds it."""
        return ()

    def missing_inputs(self, data: Mapping[str, Any]) -> frozenset[str]:
        """Pins an execution must still wait for, given its merged input (defaults, values so far,
        mask), once every linked pin outside `optional_link_pins` has a value. Empty: ready."""
        return frozenset()

    @property
    def has_custom_readiness(self) -> bool:
        """Whether this block starts by rules other than "every linked pin has a value"."""
        return bool(self.optional_link_pins) or type(self).missing_inputs is not Block.missing_inputs

    def make_input(self, data: Mapping[str, Any]) -> BlockInput:
        """Validate a node execution's merged input (defaults, pin values, mask) into the Input model.

        As AutoGPT's `validate_exec` does, each value is first converted to its pin's annotated type
        (blocks/conversion.py: "2.5" -> 2.5 and "abc" -> 0 for a number pin, True -> "true" for a text
        pin, a scalar -> [scalar] for a list pin, ...), then the model validates. A pin given None
        takes its own default, as in AutoGPT, whose input check and `Block.execute` leave None values
        out; a required pin given None is missing, so the input is refused.
        """
        data = {k: v for k, v in data.items() if v is not None}
        try:
            converted = convert_input(self.Input, data)
        except PinConversionError as exc:
            raise BlockInputError([(exc.pin, str(exc))]) from None
        try:
            return self.Input.model_validate(converted)
        except ValidationError as exc:
            raise BlockInputError(_describe_validation_error(exc)) from None

    # --- pins -----------------------------------------------------------------------------------
    # Overridden by blocks whose pins depend on the node (AgentExecutor): the defaults describe the
    # static Input/Output models.
    def input_pins(self, input_default: Mapping[str, Any]) -> Mapping[str, str | None]:
        """Input pin name -> declared JSON type (None when any value is accepted)."""
        return self._static_input_pins

    def output_pins(self, input_default: Mapping[str, Any]) -> Mapping[str, str | None]:
        return self._static_output_pins

    def required_inputs(self, input_default: Mapping[str, Any]) -> frozenset[str]:
        return frozenset(n for n, f in self.Input.model_fields.items() if f.is_required())

    def validate_output(self, pin: str, value: Any) -> Any:
        """Check a yielded value against the Output model; returns the value to route: plain data, with
        pydantic models as dicts (AutoGPT's executor routes `convert_pydantic_to_json` of each output)."""
        adapter = self._output_adapters.get(pin)
        if adapter is None:
            raise ValueError(f"block {self.name} yielded undeclared output pin {pin!r}")
        return pydantic_to_data(adapter.validate_python(value))

    @property
    def _static_input_pins(self) -> Mapping[str, str | None]:
        return _pin_types(self.Input)

    @property
    def _static_output_pins(self) -> Mapping[str, str | None]:
        return _pin_types(self.Output)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "categories": sorted(c.value for c in self.categories),
            "block_type": self.block_type.value,
            "static_output": self.static_output,
            "inputs": {
                name: {"type": typ, "required": f.is_required()}
                for (name, typ), f in zip(
                    _pin_types(self.Input).items(), self.Input.model_fields.values(), strict=True
                )
            },
            "outputs": dict(_pin_types(self.Output)),
            "costs": [
                {"amount": c.amount, "type": c.type.value, "filter": dict(c.filter)} for c in self.costs
            ],
            "credentials": [
                {"input": c.input_name, "provider": c.provider, "type": c.type} for c in self.credentials
            ],
        }


_JSON_TYPE_BY_SCHEMA = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "array": "array",
    "object": "object",
}

_pin_type_cache: dict[type[BaseModel], dict[str, str | None]] = {}


def _pin_types(model: type[BaseModel]) -> dict[str, str | None]:
    """Pin name -> JSON type of a model's fields (None when it accepts several or any type)."""
    cached = _pin_type_cache.get(model)
    if cached is not None:
        return cached
    schema = model.model_json_schema()
    result: dict[str, str | None] = {}
    for name, prop in schema.get("properties", {}).items():
        result[name] = schema_json_type(prop, schema.get("$defs", {}))
    _pin_type_cache[model] = result
    return result


def schema_json_type(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> str | None:
    """The single JSON type a JSON-schema property admits, ignoring null; None if several or any."""
    if "$ref" in prop:
        target = defs.get(str(prop["$ref"]).rsplit("/", 1)[-1], {})
        return schema_json_type(target, defs)
    if "enum" in prop and "type" not in prop:
        kinds = {type(v).__name__ for v in prop["enum"]}
        return "string" if kinds == {"str"} else None
    if "anyOf" in prop:
        kinds = {schema_json_type(p, defs) for p in prop["anyOf"] if p.get("type") != "null"}
        return kinds.pop() if len(kinds) == 1 else None
    typ = prop.get("type")
    if isinstance(typ, str):
        return _JSON_TYPE_BY_SCHEMA.get(typ)
    return None


def _check_block_class(cls: type[Block]) -> None:
    where = f"block class {cls.__module__}.{cls.__qualname__}"
    problems: list[str] = []
    if not isinstance(cls.__dict__.get("id"), str) or not _is_uuid(cls.id):
        problems.append(f"id {cls.__dict__.get('id')!r} is not a UUID string")
    if not isinstance(getattr(cls, "description", None), str) or not cls.description.strip():
        problems.append("has no description")
    inp = getattr(cls, "Input", None)
    out = getattr(cls, "Output", None)
    if not (isinstance(inp, type) and issubclass(inp, BlockInput)):
        problems.append("Input is not a BlockInput subclass")
    if not (isinstance(out, type) and issubclass(out, BlockOutput)):
        problems.append("Output is not a BlockOutput subclass")
    if not inspect.isasyncgenfunction(cls.__dict__.get("run", getattr(cls, "run", None))):
        problems.append("run is not an async generator function (async def run(...): ... yield)")
    if not all(isinstance(c, BlockCategory) for c in cls.categories):
        problems.append("categories must be BlockCategory members")
    if problems:
        raise BlockDefinitionError(f"{where}: " + "; ".join(problems))
    input_fields = inp.model_fields  # type: ignore[union-attr]
    output_fields = out.model_fields  # type: ignore[union-attr]
    for cost in cls.costs:
        if not isinstance(cost, BlockCost):
            problems.append(f"cost {cost!r} is not a BlockCost")
            continue
        unknown = set(cost.filter) - set(input_fields)
        if unknown:
            problems.append(f"cost filter names unknown input pins {sorted(unknown)}")
    for cred in cls.credentials:
        if cred.input_name not in input_fields:
            problems.append(f"credentials field {cred.input_name!r} is not an input pin")
    # Blocks with node-dependent output pins (sub-agents) cannot be checked here.
    fixed_outputs = cls.output_pins is Block.output_pins
    for i, case in enumerate(cls.self_tests):
        for pin, _ in case.output if fixed_outputs else ():
            if pin not in output_fields:
                problems.append(f"self-test {i} expects undeclared output pin {pin!r}")
    if problems:
        raise BlockDefinitionError(f"{where}: " + "; ".join(problems))


def _describe_validation_error(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = err.get("loc") or ("<input>",)
        pin = str(loc[0]) + "".join(f"[{part!r}]" for part in loc[1:])
        got = err.get("input")
        shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
        message = err["msg"] if err["type"] == "missing" else f"{err['msg']} (got {shown})"
        problems.append((pin, message))
    return problems
