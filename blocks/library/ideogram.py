"""IdeogramModelBlock (AutoGPT blocks/ideogram.py): text-to-image on Ideogram's REST API.

Model V_3: POST `<base>/v1/ideogram-v3/generate` with JSON {prompt, aspect_ratio ("1x1"...), magic_prompt,
style_type, seed?, negative_prompt?}. Older models: POST `<base>/generate` with JSON {"image_request":
{prompt, model, aspect_ratio, magic_prompt_option, style_type (V_2 and later), seed?, negative_prompt?,
color_palette? (V_2, V_2_TURBO)}}. Either answers {"data": [{"url": ...}, ...]}; the block yields the first
image URL. With upscale "AI Upscale" it then downloads that image and POSTs it to `<base>/upscale`
(multipart: image_request="{}", image_file) and yields the upscaled image's URL. Header `Api-Key`.

Base URL and key: blocks/provider_http.py (credential JSON `base_url`, AGENTFLOW_IDEOGRAM_BASE_URL,
https://api.ideogram.ai); every request, the image download included, is address-checked.

One difference from AutoGPT: a color palette goes inside `image_request`, where Ideogram's legacy API
reads it (AutoGPT sends it beside `image_request`, where it is ignored).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

import httpx
from pydantic import Field

from blocks.provider_http import (
    TRANSPORT_FAILURES,
    ProviderCalls,
    ProviderEndpoint,
    ProviderError,
    RequestRefused,
    answer_detail,
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

DEFAULT_BASE_URL = "https://api.ideogram.ai"
REQUEST_TIMEOUT = httpx.Timeout(120.0, connect=15.0)
MAX_IMAGE_BYTES = 50_000_000


class IdeogramModelName(StrEnum):
    V3 = "V_3"
    V2 = "V_2"
    V1 = "V_1"
    V1_TURBO = "V_1_TURBO"
    V2_TURBO = "V_2_TURBO"


class MagicPromptOption(StrEnum):
    AUTO = "AUTO"
    ON = "ON"
    OFF = "OFF"


class StyleType(StrEnum):
    AUTO = "AUTO"
    GENERAL = "GENERAL"
    REALISTIC = "REALISTIC"
    DESIGN = "DESIGN"
    RENDER_3D = "RENDER_3D"
    ANIME = "ANIME"


class ColorPalettePreset(StrEnum):
    NONE = "NONE"
    EMBER = "EMBER"
    FRESH = "FRESH"
    JUNGLE = "JUNGLE"
    MAGIC = "MAGIC"
    MELON = "MELON"
    MOSAIC = "MOSAIC"
    PASTEL = "PASTEL"
    ULTRAMARINE = "ULTRAMARINE"


class AspectRatio(StrEnum):
    ASPECT_10_16 = "ASPECT_10_16"
    ASPECT_16_10 = "ASPECT_16_10"
    ASPECT_9_16 = "ASPECT_9_16"
    ASPECT_16_9 = "ASPECT_16_9"
    ASPECT_3_2 = "ASPECT_3_2"
    ASPECT_2_3 = "ASPECT_2_3"
    ASPECT_4_3 = "ASPECT_4_3"
    ASPECT_3_4 = "ASPECT_3_4"
    ASPECT_1_1 = "ASPECT_1_1"
    ASPECT_1_3 = "ASPECT_1_3"
    ASPECT_3_1 = "ASPECT_3_1"


class UpscaleOption(StrEnum):
    AI_UPSCALE = "AI Upscale"
    NO_UPSCALE = "No Upscale"


# "ASPECT_16_9" -> "16x9", the V3 endpoint's spelling.
V3_ASPECT_RATIOS = {
    ratio.value: ratio.value.removeprefix("ASPECT_").replace("_", "x") for ratio in AspectRatio
}
# style_type is sent only to these models; color palettes only to the V_2 family.
STYLE_MODELS = frozenset({"V_2", "V_2_TURBO", "V_3"})
PALETTE_MODELS = frozenset({"V_2", "V_2_TURBO"})

TEST_CREDENTIALS = mock_credentials(
    "01234567-89ab-cdef-0123-456789abcdef",
    "ideogram",
    "Mock Ideogram API key",
    {"api_key": "mock-ideogram-api-key", "base_url": DEFAULT_BASE_URL},
)


def _status_error(response: httpx.Response) -> ProviderError:
    """AutoGPT's messages for a refused Ideogram request."""
    detail = f"HTTP {response.status_code}: {answer_detail(response)}"
    if response.status_code == 401:
        return ProviderError("Invalid or expired API key. Please check your Ideogram API credentials.")
    if response.status_code in (400, 422):
        return ProviderError(f"Invalid request parameters: {detail}")
    if response.status_code < 500:
        return ProviderError(f"Client error: {detail}")
    return ProviderError(f"Ideogram server error: {detail}")


def _first_url(response: httpx.Response, what: str) -> str:
    try:
        url = response.json()["data"][0]["url"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ProviderError(f"{what}: the answer has no image URL: {response.text[:300]!r}") from None
    if not isinstance(url, str) or not url:
        raise ProviderError(f"{what}: the answer has no image URL (was the image flagged as unsafe?)")
    return url


class _FakeIdeogram:
    """Self-test wire: answers generate, upscale and image downloads like Ideogram."""

    def __init__(self, status: int = 200) -> None:
        self.status = status

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, content=b"\x89PNG fake", headers={"Content-Type": "image/png"})
        if request.headers.get("Api-Key") != "mock-ideogram-api-key":
            return httpx.Response(401, json={"detail": "Unauthorized"})
        if self.status != 200:
            return httpx.Response(self.status, json={"detail": "boom for mock-ideogram-api-key"})
        name = "upscaled" if request.url.path == "/upscale" else "generated"
        return httpx.Response(
            200, json={"data": [{"url": f"https://ideogram.ai/api/images/test-{name}.png"}]}
        )


class IdeogramModelBlock(ProviderCalls, Block):
    id = "6ab085e2-20b3-4055-bc3e-08036e01eca6"
    description = "This block runs Ideogram models with both simple and advanced settings."
    categories = frozenset({BlockCategory.AI, BlockCategory.MULTIMEDIA})
    credentials = (CredentialsField("credentials", provider="ideogram", type="api_key"),)
    repeated_output_pins = frozenset()
    # One attempt (as AutoGPT); these failures are Ideogram's and count towards its circuit breaker,
    # a refused key or prompt does not.
    retry_policy = RetryPolicy(
        attempts=1, retry_on_errors=("Ideogram server error", "HTTP 429", *TRANSPORT_FAILURES)
    )

    class Input(BlockInput):
        credentials: Any = Field(
            default=None,
            description='An Ideogram credential reference: {"id": ..., "provider": "ideogram", "type": "api_key"}',
        )
        prompt: str = Field(description="Text prompt for image generation", title="Prompt")
        ideogram_model_name: IdeogramModelName = Field(
            default=IdeogramModelName.V3,
            description="The name of the Image Generation Model, e.g., V_3",
            title="Image Generation Model",
        )
        aspect_ratio: AspectRatio = Field(
            default=AspectRatio.ASPECT_1_1, description="Aspect ratio for the generated image"
        )
        upscale: UpscaleOption = Field(
            default=UpscaleOption.NO_UPSCALE, description="Upscale the generated image", title="Upscale Image"
        )
        magic_prompt_option: MagicPromptOption = Field(
            default=MagicPromptOption.AUTO, description="Whether to use MagicPrompt for enhancing the request"
        )
        seed: int | None = Field(default=None, description="Random seed. Set for reproducible generation")
        style_type: StyleType = Field(
            default=StyleType.AUTO, description="Style type to apply, applicable for V_2 and above"
        )
        negative_prompt: str | None = Field(
            default=None, description="Description of what to exclude from the image"
        )
        color_palette_name: ColorPalettePreset = Field(
            default=ColorPalettePreset.NONE, description="Color palette preset name, choose 'None' to skip"
        )
        custom_color_palette: list[str] | None = Field(
            default=None,
            description=(
                "Only available for model version V_2 or V_2_TURBO. Provide one or more color hex codes "
                "(e.g., ['#000030', '#1C0C47', '#9900FF', '#4285F4', '#FFFFFF']) to define a custom color "
                "palette. Only used if 'color_palette_name' is 'NONE'."
            ),
        )

    class Output(BlockOutput):
        result: str = Field(description="Generated image URL")

    self_tests = (
        BlockSelfTest(
            input={
                "ideogram_model_name": "V_2",
                "prompt": "A futuristic cityscape at sunset",
                "custom_color_palette": ["#000030", "#1C0C47", "#9900FF", "#4285F4", "#FFFFFF"],
            },
            output=[("result", "https://ideogram.ai/api/images/test-generated.png")],
            mocks=mock_wire(_FakeIdeogram),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"prompt": "A futuristic cityscape at sunset", "upscale": "AI Upscale"},
            output=[("result", "https://ideogram.ai/api/images/test-upscaled.png")],
            mocks=mock_wire(_FakeIdeogram),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"prompt": "x"},
            output=[("error", lambda e: "Ideogram server error: HTTP 503" in e and "mock-ideogram" not in e)],
            mocks=mock_wire(lambda: _FakeIdeogram(503)),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        private_address_self_test({"prompt": "x"}, {"credentials": TEST_CREDENTIALS}),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = resolve_endpoint(ctx, "ideogram", DEFAULT_BASE_URL)
        except ProviderError as exc:
            yield "error", str(exc)
            return
        try:
            async with self.client(ctx, REQUEST_TIMEOUT) as client:
                result = await self.generate(client, endpoint, input)
                if input.upscale == UpscaleOption.AI_UPSCALE:
                    result = await self.upscale(client, endpoint, result)
        except (ProviderError, RequestRefused) as exc:
            yield "error", endpoint.scrub(str(exc))
            return
        yield "result", result

    async def generate(self, client: httpx.AsyncClient, endpoint: ProviderEndpoint, input: Input) -> str:
        model = input.ideogram_model_name.value
        body: dict[str, Any]
        if model == IdeogramModelName.V3:
            what, path = "Failed to fetch image with V3 endpoint", "/v1/ideogram-v3/generate"
            body = {
                "prompt": input.prompt,
                "aspect_ratio": V3_ASPECT_RATIOS.get(input.aspect_ratio.value, "1x1"),
                "magic_prompt": input.magic_prompt_option.value,
                "style_type": input.style_type.value,
            }
            if input.seed is not None:
                body["seed"] = input.seed
            if input.negative_prompt:
                body["negative_prompt"] = input.negative_prompt
        else:
            what, path = "Failed to fetch image with legacy endpoint", "/generate"
            request: dict[str, Any] = {
                "prompt": input.prompt,
                "model": model,
                "aspect_ratio": input.aspect_ratio.value,
                "magic_prompt_option": input.magic_prompt_option.value,
            }
            if model in STYLE_MODELS:
                request["style_type"] = input.style_type.value
            if input.seed is not None:
                request["seed"] = input.seed
            if input.negative_prompt:
                request["negative_prompt"] = input.negative_prompt
            if model in PALETTE_MODELS:
                if input.color_palette_name != ColorPalettePreset.NONE:
                    request["color_palette"] = {"name": input.color_palette_name.value}
                elif input.custom_color_palette:
                    request["color_palette"] = {
                        "members": [{"color_hex": color} for color in input.custom_color_palette]
                    }
            body = {"image_request": request}
        response = await self._call(
            client, "POST", endpoint.url(path), what, headers=self._headers(endpoint), json=body
        )
        return _first_url(response, what)

    async def upscale(self, client: httpx.AsyncClient, endpoint: ProviderEndpoint, image_url: str) -> str:
        what = "Failed to upscale image"
        image = await self._call(client, "GET", image_url, what)
        if len(image.content) > MAX_IMAGE_BYTES:
            raise ProviderError(f"{what}: the image is larger than {MAX_IMAGE_BYTES} bytes")
        response = await self._call(
            client,
            "POST",
            endpoint.url("/upscale"),
            what,
            headers={"Api-Key": endpoint.api_key.get_secret_value()},
            data={"image_request": "{}"},
            files={"image_file": ("image.png", image.content, "image/png")},
        )
        return _first_url(response, what)

    @staticmethod
    def _headers(endpoint: ProviderEndpoint) -> dict[str, str]:
        return {"Api-Key": endpoint.api_key.get_secret_value(), "Content-Type": "application/json"}

    @staticmethod
    async def _call(
        client: httpx.AsyncClient, method: str, url: str, what: str, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await client.request(method, url, **kwargs)
        except RequestRefused:
            raise
        except httpx.HTTPError as exc:
            raise ProviderError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise _status_error(response)
        return response
