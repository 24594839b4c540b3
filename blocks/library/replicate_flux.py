"""ReplicateFluxAdvancedModelBlock (AutoGPT blocks/replicate/flux_advanced.py): Flux models on Replicate.

Like AutoGPT it uses the `replicate` package's Client (its `base_url` argument points it elsewhere):
a prediction is created with POST `<base>/v1/models/<owner>/<name>/predictions` (no `Prefer: wait`),
then GET `<base>/v1/predictions/<id>` is polled until the status is succeeded, failed or canceled.
The output's first file URL (or the text) is the result. Like AutoGPT's run_replicate_with_retry, a
failed attempt is retried, up to 3 attempts with 2 s then 4 s between them; unlike it, answers that
no retry can change (401, 403, 404, 422) are not retried.

Base URL and token: blocks/provider_http.py (credential JSON `base_url`, AGENTFLOW_REPLICATE_BASE_URL,
https://api.replicate.com); every request is address-checked. At run time the environment may also set
AGENTFLOW_REPLICATE_POLL_INTERVAL (seconds between polls, default 0.5), AGENTFLOW_REPLICATE_RETRY_DELAY
(the first retry's delay, default 2) and AGENTFLOW_REPLICATE_MAX_WAIT (seconds a prediction may run
before it is canceled and the block fails, without another attempt; default 900).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import httpx
from pydantic import Field

from blocks.provider_http import (
    ProviderCalls,
    ProviderEndpoint,
    ProviderError,
    RequestRefused,
    mock_credentials,
    mock_wire,
    private_address_self_test,
    resolve_endpoint,
)
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    CredentialsField,
    RetryPolicy,
    RunContext,
)

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.replicate.com"
REQUEST_TIMEOUT = httpx.Timeout(30.0, connect=10.0, pool=10.0)
MAX_ATTEMPTS = 3
# Answers a retry cannot change: the user has to fix the token or the input first.
FINAL_STATUSES = frozenset({400, 401, 403, 404, 422})
POLL_INTERVAL_VAR = "AGENTFLOW_REPLICATE_POLL_INTERVAL"
RETRY_DELAY_VAR = "AGENTFLOW_REPLICATE_RETRY_DELAY"
MAX_WAIT_VAR = "AGENTFLOW_REPLICATE_MAX_WAIT"


class ReplicateFluxModelName(StrEnum):
    FLUX_SCHNELL = "Flux Schnell"
    FLUX_PRO = "Flux Pro"
    FLUX_PRO1_1 = "Flux Pro 1.1"

    @property
    def api_name(self) -> str:
        return {
            ReplicateFluxModelName.FLUX_SCHNELL: "black-forest-labs/flux-schnell",
            ReplicateFluxModelName.FLUX_PRO: "black-forest-labs/flux-pro",
            ReplicateFluxModelName.FLUX_PRO1_1: "black-forest-labs/flux-1.1-pro",
        }[self]


class ImageType(StrEnum):
    WEBP = "webp"
    JPG = "jpg"
    PNG = "png"


TEST_CREDENTIALS = mock_credentials(
    "01234567-89ab-cdef-0123-456789abcdef",
    "replicate",
    "Mock Replicate API key",
    {"api_key": "mock-replicate-api-key", "base_url": DEFAULT_BASE_URL},
)


def _float_env(name: str, default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(name, "")))
    except ValueError:
        return default


def extract_result(output: Any) -> str:
    """AutoGPT's _helper.extract_result: the first file's URL, joined text, or a message."""
    from replicate.helpers import FileOutput

    if isinstance(output, list) and output:
        first = output[0]
        if isinstance(first, FileOutput):
            return first.url
        if isinstance(first, str):
            return "".join(str(part) for part in output)
        if isinstance(first, dict):
            return str(first)
        logger.error("Replicate answered an output type that is neither a file nor text: %r", type(first))
        return "Unable to process result. Please contact us with the models and inputs used"
    if isinstance(output, FileOutput):
        return output.url
    if isinstance(output, str):
        return output
    logger.error("Replicate answered no output")
    return "No output received"


def _describe(exc: BaseException) -> str:
    from replicate.exceptions import ReplicateError

    if isinstance(exc, ReplicateError):
        parts = [f"HTTP {exc.status}" if exc.status else "", exc.title or "", exc.detail or ""]
        return ": ".join(p for p in parts if p) or "error answer"
    return f"{type(exc).__name__}: {exc}"


class FakeReplicate:
    """Self-test wire for the Replicate blocks: a prediction that succeeds on its first poll with `output`."""

    def __init__(self, output: Any = None) -> None:
        self.output = (
            output if output is not None else ["https://replicate.com/output/generated-image-url.jpg"]
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer mock-replicate-api-key":
            return httpx.Response(
                401, json={"title": "Unauthenticated", "detail": "bad token", "status": 401}
            )
        base = {"id": "p1", "model": "mock/model", "version": "v", "error": None, "input": {}}
        if request.method == "POST":
            given = json.loads(request.content)["input"]
            return httpx.Response(201, json={**base, "status": "starting", "input": given, "output": None})
        return httpx.Response(200, json={**base, "status": "succeeded", "output": self.output})


REPLICATE_CREDENTIALS = (CredentialsField("credentials", provider="replicate", type="api_key"),)
# Replicate's failures (its circuit breaker), not a refused token or a prediction the model failed.
REPLICATE_FAILURES = (
    "Replicate request failed: HTTP 5",
    "HTTP 429",
    "cannot reach Replicate",
    "did not finish",
)


def replicate_credentials_input() -> Any:
    return Field(
        default=None,
        description='A Replicate credential reference: {"id": ..., "provider": "replicate", "type": "api_key"}',
    )


class ReplicatePredictions(ProviderCalls):
    """Mixin for the Replicate blocks: the endpoint, and one prediction run to its end by the `replicate`
    package's Client on the address-checked transport."""

    @staticmethod
    def replicate_endpoint(ctx: RunContext) -> ProviderEndpoint:
        endpoint = resolve_endpoint(ctx, "replicate", DEFAULT_BASE_URL)
        if not endpoint.api_key.get_secret_value():
            raise ProviderError("the replicate credential has no API token")
        return endpoint

    async def finished_prediction(
        self, ctx: RunContext, endpoint: ProviderEndpoint, model: str, params: dict[str, Any]
    ) -> tuple[Any, Any]:
        """Create the prediction and poll it until it ends (canceled after AGENTFLOW_REPLICATE_MAX_WAIT);
        the prediction and the client (for `transform_output`). Whether it succeeded is the caller's to
        say."""
        from replicate.client import Client
        from replicate.exceptions import ReplicateError

        client = Client(
            api_token=endpoint.api_key.get_secret_value(),
            base_url=endpoint.base_url,
            timeout=REQUEST_TIMEOUT,
            transport=self.checked_transport(ctx),
            trust_env=False,
        )
        client.poll_interval = _float_env(POLL_INTERVAL_VAR, client.poll_interval)
        owner, name = model.split("/", 1)
        try:
            # AutoGPT: client.async_run(model, input=..., wait=False), which does these two steps.
            prediction = await client.models.predictions.async_create(model=(owner, name), input=params)
            max_wait = _float_env(MAX_WAIT_VAR, 900.0)
            try:
                await asyncio.wait_for(prediction.async_wait(), timeout=max_wait)
            except TimeoutError:
                await self._cancel(prediction)
                raise ProviderError(
                    f"Replicate prediction {prediction.id} did not finish within {max_wait:g}s; it was canceled",
                    retryable=False,
                ) from None
        except ReplicateError as exc:
            raise ProviderError(
                f"Replicate request failed: {_describe(exc)}", retryable=exc.status not in FINAL_STATUSES
            ) from exc
        except RequestRefused:
            raise
        except httpx.HTTPError as exc:
            raise ProviderError(f"cannot reach Replicate at {endpoint.base_url}: {_describe(exc)}") from exc
        finally:
            # Closes the transport too. (The package has no public close for its async client.)
            await client._async_client.aclose()
        return prediction, client

    @staticmethod
    async def _cancel(prediction: Any) -> None:
        try:
            await prediction.async_cancel()
        except Exception as exc:  # best effort: the attempt fails either way
            logger.warning("could not cancel Replicate prediction %s: %s", prediction.id, _describe(exc))


class ReplicateFluxAdvancedModelBlock(ReplicatePredictions, Block):
    id = "90f8c45e-e983-4644-aa0b-b4ebe2f531bc"
    description = "This block runs Flux models on Replicate with advanced settings."
    categories = frozenset({BlockCategory.AI, BlockCategory.MULTIMEDIA})
    credentials = REPLICATE_CREDENTIALS
    repeated_output_pins = frozenset()
    # The block retries by itself (AutoGPT's loop); for the engine one attempt.
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=REPLICATE_FAILURES)

    class Input(BlockInput):
        credentials: Any = replicate_credentials_input()
        prompt: str = Field(description="Text prompt for image generation", title="Prompt")
        replicate_model_name: ReplicateFluxModelName = Field(
            default=ReplicateFluxModelName.FLUX_SCHNELL,
            description="The name of the Image Generation Model, i.e Flux Schnell",
            title="Image Generation Model",
        )
        seed: int | None = Field(default=None, description="Random seed. Set for reproducible generation")
        steps: int = Field(default=25, description="Number of diffusion steps")
        guidance: float = Field(
            default=3,
            description=(
                "Controls the balance between adherence to the text prompt and image quality/diversity. "
                "Higher values make the output more closely match the prompt but may reduce overall image quality."
            ),
        )
        interval: float = Field(
            default=2,
            description=(
                "Interval is a setting that increases the variance in possible outputs. "
                "Setting this value low will ensure strong prompt following with more consistent outputs."
            ),
        )
        aspect_ratio: str = Field(default="1:1", description="Aspect ratio for the generated image")
        output_format: ImageType = Field(
            default=ImageType.WEBP, description="File format of the output image"
        )
        output_quality: int = Field(
            default=80,
            description="Quality when saving the output images, from 0 to 100. Not relevant for .png outputs",
        )
        safety_tolerance: int = Field(
            default=2, description="Safety tolerance, 1 is most strict and 5 is most permissive"
        )

    class Output(BlockOutput):
        result: str = Field(description="Generated output")

    self_tests = (
        BlockSelfTest(
            input={
                "replicate_model_name": "Flux Schnell",
                "prompt": "A beautiful landscape painting of a serene lake at sunrise",
                "output_format": "png",
            },
            output=[("result", "https://replicate.com/output/generated-image-url.jpg")],
            mocks=mock_wire(FakeReplicate),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        private_address_self_test({"prompt": "x"}, {"credentials": TEST_CREDENTIALS}),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        # AutoGPT picks a random seed when none is given.
        seed = input.seed if input.seed is not None else int.from_bytes(os.urandom(4), "big")
        try:
            endpoint = self.replicate_endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        params = {
            "prompt": input.prompt,
            "seed": seed,
            "steps": input.steps,
            "guidance": input.guidance,
            "interval": input.interval,
            "aspect_ratio": input.aspect_ratio,
            "output_format": input.output_format.value,
            "output_quality": input.output_quality,
            "safety_tolerance": input.safety_tolerance,
        }
        try:
            result = await self.run_with_retry(ctx, endpoint, input.replicate_model_name.api_name, params)
        except (ProviderError, RequestRefused) as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        yield "result", result

    async def run_with_retry(
        self, ctx: RunContext, endpoint: ProviderEndpoint, model: str, params: dict[str, Any]
    ) -> str:
        delay = _float_env(RETRY_DELAY_VAR, 2.0)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return await self.run_model(ctx, endpoint, model, params)
            except RequestRefused:
                raise
            except ProviderError as exc:
                if not exc.retryable or attempt == MAX_ATTEMPTS:
                    raise
                logger.warning(
                    "Replicate attempt %d failed: %s; retrying in %gs",
                    attempt,
                    endpoint.scrub(str(exc)),
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")  # pragma: no cover

    async def run_model(
        self, ctx: RunContext, endpoint: ProviderEndpoint, model: str, params: dict[str, Any]
    ) -> str:
        """One attempt: create the prediction, poll it to the end, return its result."""
        from replicate.helpers import transform_output

        prediction, client = await self.finished_prediction(ctx, endpoint, model, params)
        if prediction.status == "failed":
            raise ProviderError(f"Replicate prediction failed: {prediction.error or 'no error given'}")
        if prediction.status == "canceled":
            raise ProviderError(f"Replicate prediction {prediction.id} was canceled")
        return extract_result(transform_output(prediction.output, client))
