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
The prediction runs on Replicate through the `replicate` package's Client, by the mixin
ReplicatePredictions it shares with blocks/library/replicate_flux.py (one attempt: AutoGPT's
client.async_run(..., wait=False), i.e. create the prediction, then poll it). The first output file's URL (or the output text) is `image_url`; an
empty output is the error "Image generation returned an empty result."

Base URL and token: blocks/provider_http.py (credential JSON `base_url`, AGENTFLOW_REPLICATE_BASE_URL,
https://api.replicate.com); every request is address-checked. AGENTFLOW_REPLICATE_POLL_INTERVAL and
AGENTFLOW_REPLICATE_MAX_WAIT apply as to the Flux block.

One difference from AutoGPT's newest version: the image is not copied into a user workspace; the
block yields the URL Replicate answers (as AutoGPT did before it had workspaces).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

from pydantic import Field

from blocks.library.replicate_flux import (
    REPLICATE_CREDENTIALS,
    REPLICATE_FAILURES,
    TEST_CREDENTIALS,
    FakeReplicate,
    ReplicatePredictions,
    replicate_credentials_input,
)
from blocks.provider_http import (
    ProviderEndpoint,
    ProviderError,
    RequestRefused,
    mock_wire,
    private_address_self_test,
)
from blocks.sdk import (
    Block,
    BlockCategory,
    BlockInput,
    BlockOutput,
    BlockSelfTest,
    RetryPolicy,
    RunContext,
)


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


class AIImageGeneratorBlock(ReplicatePredictions, Block):
    id = "ed1ae7a0-b770-4089-b520-1f0005fad19a"
    description = "Generate images using various AI models through a unified interface"
    categories = frozenset({BlockCategory.AI})
    credentials = REPLICATE_CREDENTIALS
    repeated_output_pins = frozenset()
    # One attempt, as AutoGPT.
    retry_policy = RetryPolicy(attempts=1, retry_on_errors=REPLICATE_FAILURES)

    class Input(BlockInput):
        credentials: Any = replicate_credentials_input()
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
            mocks=mock_wire(lambda: FakeReplicate("https://replicate.delivery/generated-image.webp")),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        BlockSelfTest(
            input={"prompt": "x"},
            output=[("error", "Image generation returned an empty result.")],
            mocks=mock_wire(lambda: FakeReplicate([])),
            credentials={"credentials": TEST_CREDENTIALS},
        ),
        private_address_self_test({"prompt": "x"}, {"credentials": TEST_CREDENTIALS}),
    )

    async def run(self, input: Input, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        try:
            endpoint = self.replicate_endpoint(ctx)
        except ProviderError as exc:
            yield "error", str(exc)
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
        from replicate.helpers import transform_output

        prediction, client = await self.finished_prediction(ctx, endpoint, model, params)
        if prediction.status == "failed":
            # replicate's ModelError, whose text is the prediction's error.
            raise ProviderError(str(prediction.error or f"Prediction {prediction.id} failed"))
        if prediction.status == "canceled":
            raise ProviderError(f"Prediction {prediction.id} was canceled")
        return transform_output(prediction.output, client)
