"""AIImageGeneratorBlock (AutoGPT blocks/ai_image_generator_block.py): text-to-image through one
interface over several Replicate models.

Like AutoGPT: for every model but Recraft the style becomes a prompt prefix ("photorealistic of ..."),
then the model's parameters are built from the semantic size:
  Stable Diffusion 3.5 Medium  stability-ai/stable-diffusion-3.5-medium  aspect_ratio, webp, quality 90,
                               40 steps, cfg_scale 7
  Flux 1.1 Pro / Pro Ultra     black-forest-labs/flux-1.1-pro(-ultra)    width, height, aspect_ratio, jpg,
                               quality 90
  Recraft v3                   recraft-ai/recraft-v3                     size "WxH", style (native)
  Nano Banana Pro / 2          google/nano-banana-pro, google/nano-banana-2  aspect_ratio, resolution 2K,
                               jpg, safety_filter_level block_only_high
The prediction runs on Replicate through the `replicate` package's Client, set up as in
blocks/library/replicate_flux.py (one attempt: AutoGPT's client.async_run(..., wait=False), i.e. create
the prediction, then poll it). The first output file's URL (or the output text) is `image_url`; an
empty output is the error "Image generation returned an empty result."

Base URL and token: blocks/provider_http.py (credential JSON `base_url`, AGENTFLOW_REPLICATE_BASE_URL,
https://api.replicate.com); every request is address-checked. AGENTFLOW_REPLICATE_POLL_INTERVAL and
AGENTFLOW_REPLICATE_MAX_WAIT apply as to the Flux block.

One difference from AutoGPT's newest version: the image is not copied into a user workspace; the
block yields the URL Replicate answers (as AutoGPT did before it had workspaces).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import httpx
from pydantic import Field

from blocks.library.replicate_flux import (
    FINAL_STATUSES,
    MAX_WAIT_VAR,
    POLL_INTERVAL_VAR,
    REQUEST_TIMEOUT,
    TEST_CREDENTIALS,
    _describe,
    _float_env,
)
from blocks.provider_http import (
    ProviderCalls,
    ProviderEndpoint,
    ProviderError,
    RequestRefused,
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


class ImageSize(StrEnum):
    SQUARE = "square"
    LANDSCAPE = "landscape"
    PORTRAIT = "portrait"
    WIDE = "wide"
    TALL = "tall"


# Every model but Flux's pixel sizes and Recraft's "WxH" takes these aspect ratios.
SIZE_TO_RATIO = {
    ImageSize.SQUARE: "1:1",
    ImageSize.LANDSCAPE: "4:3",
    ImageSize.PORTRAIT: "3:4",
    ImageSize.WIDE: "16:9",
    ImageSize.TALL: "9:16",
}
SIZE_TO_FLUX_DIMENSIONS = {
    ImageSize.SQUARE: (1024, 1024),
    ImageSize.LANDSCAPE: (1365, 1024),
    ImageSize.PORTRAIT: (1024, 1365),
    ImageSize.WIDE: (1440, 810),
    ImageSize.TALL: (810, 1440),
}
SIZE_TO_RECRAFT_DIMENSIONS = {
    ImageSize.SQUARE: "1024x1024",
    ImageSize.LANDSCAPE: "1365x1024",
    ImageSize.PORTRAIT: "1024x1365",
    ImageSize.WIDE: "1536x1024",
    ImageSize.TALL: "1024x1536",
}


class ImageStyle(StrEnum):
    ANY = "any"
    REALISTIC = "realistic_image"
    REALISTIC_BW = "realistic_image/b_and_w"
    REALISTIC_HDR = "realistic_image/hdr"
    REALISTIC_NATURAL = "realistic_image/natural_light"
    REALISTIC_STUDIO = "realistic_image/studio_portrait"
    REALISTIC_ENTERPRISE = "realistic_image/enterprise"
    REALISTIC_HARD_FLASH = "realistic_image/hard_flash"
    REALISTIC_MOTION_BLUR = "realistic_image/motion_blur"
    DIGITAL_ART = "digital_illustration"
    PIXEL_ART = "digital_illustration/pixel_art"
    HAND_DRAWN = "digital_illustration/hand_drawn"
    GRAIN = "digital_illustration/grain"
    SKETCH = "digital_illustration/infantile_sketch"
    POSTER = "digital_illustration/2d_art_poster"
    POSTER_2 = "digital_illustration/2d_art_poster_2"
    HANDMADE_3D = "digital_illustration/handmade_3d"
    HAND_DRAWN_OUTLINE = "digital_illustration/hand_drawn_outline"
    ENGRAVING_COLOR = "digital_illustration/engraving_color"


STYLE_PROMPTS = {
    ImageStyle.REALISTIC: "photorealistic",
    ImageStyle.REALISTIC_BW: "black and white photograph",
    ImageStyle.REALISTIC_HDR: "HDR photograph",
    ImageStyle.REALISTIC_NATURAL: "natural light photograph",
    ImageStyle.REALISTIC_STUDIO: "studio portrait photograph",
    ImageStyle.REALISTIC_ENTERPRISE: "enterprise photograph",
    ImageStyle.REALISTIC_HARD_FLASH: "hard flash photograph",
    ImageStyle.REALISTIC_MOTION_BLUR: "motion blur photograph",
    ImageStyle.DIGITAL_ART: "digital art",
    ImageStyle.PIXEL_ART: "pixel art",
    ImageStyle.HAND_DRAWN: "hand drawn illustration",
    ImageStyle.GRAIN: "grainy digital illustration",
    ImageStyle.SKETCH: "sketchy illustration",
    ImageStyle.POSTER: "2D art poster",
    ImageStyle.POSTER_2: "alternate 2D art poster",
    ImageStyle.HANDMADE_3D: "handmade 3D illustration",
    ImageStyle.HAND_DRAWN_OUTLINE: "hand drawn outline illustration",
    ImageStyle.ENGRAVING_COLOR: "color engraving illustration",
}


class ImageGenModel(StrEnum):
    FLUX = "Flux 1.1 Pro"
    FLUX_ULTRA = "Flux 1.1 Pro Ultra"
    RECRAFT = "Recraft v3"
    SD3_5 = "Stable Diffusion 3.5 Medium"
    NANO_BANANA_PRO = "Nano Banana Pro"
    NANO_BANANA_2 = "Nano Banana 2"


def style_prefix(style: ImageStyle) -> str:
    text = STYLE_PROMPTS.get(style, "")
    return f"{text} of" if text else ""


def model_request(
    prompt: str, model: ImageGenModel, size: ImageSize, style: ImageStyle
) -> tuple[str, dict[str, Any]]:
    """The Replicate model and its input for one request (AutoGPT's generate_image)."""
    if model == ImageGenModel.RECRAFT:
        # Recraft takes the style natively.
        return "recraft-ai/recraft-v3", {
            "prompt": prompt,
            "size": SIZE_TO_RECRAFT_DIMENSIONS[size],
            "style": style.value,
        }
    styled = f"{style_prefix(style)} {prompt}".strip()
    if model == ImageGenModel.SD3_5:
        return "stability-ai/stable-diffusion-3.5-medium", {
            "prompt": styled,
            "aspect_ratio": SIZE_TO_RATIO[size],
            "output_format": "webp",
            "output_quality": 90,
            "steps": 40,
            "cfg_scale": 7.0,
        }
    if model in (ImageGenModel.FLUX, ImageGenModel.FLUX_ULTRA):
        width, height = SIZE_TO_FLUX_DIMENSIONS[size]
        name = "black-forest-labs/flux-1.1-pro" + ("-ultra" if model == ImageGenModel.FLUX_ULTRA else "")
        return name, {
            "prompt": styled,
            "width": width,
            "height": height,
            "aspect_ratio": SIZE_TO_RATIO[size],
            "output_format": "jpg",
            "output_quality": 90,
        }
    name = "google/nano-banana-pro" if model == ImageGenModel.NANO_BANANA_PRO else "google/nano-banana-2"
    return name, {
        "prompt": styled,
        "aspect_ratio": SIZE_TO_RATIO[size],
        "resolution": "2K",
        "output_format": "jpg",
        "safety_filter_level": "block_only_high",
    }


def first_url(output: Any) -> str | None:
    """AutoGPT's _run_client: the first file's URL, the first item, a file's URL, a text, or None."""
    from replicate.helpers import FileOutput

    if isinstance(output, list) and output:
        first = output[0]
        return first.url if isinstance(first, FileOutput) else first
    if isinstance(output, FileOutput):
        return output.url
    if isinstance(output, str):
        return output
    return None


class _FakeReplicate:
    """Self-test wire: a prediction that succeeds on its first poll; `output` is what it answers."""

    def __init__(self, output: Any) -> None:
        self.output = output

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Bearer mock-replicate-api-key":
            return httpx.Response(
                401, json={"title": "Unauthenticated", "detail": "bad token", "status": 401}
            )
        base = {"id": "p1", "model": "recraft-ai/recraft-v3", "version": "v", "error": None, "input": {}}
        if request.method == "POST":
            return httpx.Response(201, json={**base, "status": "starting", "output": None})
        return httpx.Response(200, json={**base, "status": "succeeded", "output": self.output})


def _public_resolve(address: str = "93.184.215.14") -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        return [address]

    return resolve


class AIImageGeneratorBlock(ProviderCalls, Block):
    id = "ed1ae7a0-b770-4089-b520-1f0005fad19a"
    description = "Generate images using various AI models through a unified interface"
    categories = frozenset({BlockCategory.AI})
    credentials = (CredentialsField("credentials", provider="replicate", type="api_key"),)
    repeated_output_pins = frozenset()
    # One attempt, as AutoGPT; these failures are Replicate's (its circuit breaker), not a refused
    # token or a prediction the model failed.
    retry_policy = RetryPolicy(
        attempts=1,
        retry_on_errors=(
            "Replicate request failed: HTTP 5",
            "HTTP 429",
            "cannot reach Replicate",
            "did not finish",
        ),
    )

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='A Replicate credential reference: {"id": ..., "provider": "replicate", "type": "api_key"}',
        )
        prompt: str = Field(description="Text prompt for image generation", title="Prompt")
        model: ImageGenModel = Field(
            default=ImageGenModel.SD3_5, description="The AI model to use for image generation", title="Model"
        )
        size: ImageSize = Field(
            default=ImageSize.SQUARE,
            description=(
                "Format of the generated image:\n- Square: Perfect for profile pictures, icons\n"
                "- Landscape: Traditional photo format\n- Portrait: Vertical photos, portraits\n"
                "- Wide: Cinematic format, desktop wallpapers\n- Tall: Mobile wallpapers, social media stories"
            ),
            title="Image Format",
        )
        style: ImageStyle = Field(
            default=ImageStyle.ANY, description="Visual style for the generated image", title="Image Style"
        )

    class Output(BlockOutput):
        image_url: str = Field(description="URL of the generated image")

    self_tests = (
        BlockSelfTest(
            input={
                "prompt": "An octopus using a laptop in a snowy forest with 'AutoGPT' clearly visible on the screen",
                "model": "Recraft v3",
                "size": "square",
                "style": "realistic_image",
            },
            output=[("image_url", "https://replicate.delivery/generated-image.webp")],
            mocks={
                "_resolve": _public_resolve(),
                "_transport": lambda: httpx.MockTransport(
                    _FakeReplicate("https://replicate.delivery/generated-image.webp")
                ),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"prompt": "x"},
            output=[("error", "Image generation returned an empty result.")],
            mocks={
                "_resolve": _public_resolve(),
                "_transport": lambda: httpx.MockTransport(_FakeReplicate([])),
            },
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"prompt": "x"},
            output=[("error", lambda e: "10.0.0.7" in e and "allow_private_addresses" in e)],
            mocks={"_resolve": _public_resolve("10.0.0.7")},
            credentials={"credentials": TEST_CREDENTIALS},
        ),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_endpoint(ctx, "replicate", DEFAULT_BASE_URL)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        if not endpoint.api_key.get_secret_value():
            yield "error", "the replicate credential has no API token"
            return
        model, params = model_request(input.prompt, input.model, input.size, input.style)
        try:
            url = first_url(await self.run_prediction(ctx, endpoint, model, params))
        except RequestRefused as exc:
            yield "error", str(exc)
            return
        except ProviderError as exc:
            # AutoGPT's two wrappings (generate_image around _run_client).
            message = f"Failed to generate image: Unexpected error during model execution: {exc}"
            yield "error", endpoint.scrub(message)
            return
        if url:
            yield "image_url", str(url)
        else:
            yield "error", "Image generation returned an empty result."

    async def run_prediction(
        self, ctx: RunContext, endpoint: ProviderEndpoint, model: str, params: dict[str, Any]
    ) -> Any:
        """Create the prediction, poll it to the end, return its output (files as FileOutput)."""
        from replicate.client import Client
        from replicate.exceptions import ReplicateError
        from replicate.helpers import transform_output

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
            prediction = await client.models.predictions.async_create(model=(owner, name), input=params)
            max_wait = _float_env(MAX_WAIT_VAR, 900.0)
            try:
                await asyncio.wait_for(prediction.async_wait(), timeout=max_wait)
            except TimeoutError:
                await self._cancel(prediction)
                raise ProviderError(
                    f"Replicate prediction {prediction.id} did not finish within {max_wait:g}s; it was canceled"
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
            # Closes the transport too (the package has no public close for its async client).
            await client._async_client.aclose()
        if prediction.status == "failed":
            # replicate's ModelError, whose text is the prediction's error.
            raise ProviderError(str(prediction.error or f"Prediction {prediction.id} failed"))
        if prediction.status == "canceled":
            raise ProviderError(f"Prediction {prediction.id} was canceled")
        return transform_output(prediction.output, client)

    @staticmethod
    async def _cancel(prediction: Any) -> None:
        try:
            await prediction.async_cancel()
        except Exception as exc:  # best effort: the attempt fails either way
            logger.warning("could not cancel Replicate prediction %s: %s", prediction.id, _describe(exc))
