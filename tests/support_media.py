"""Local stand-ins for Ideogram, Replicate and Medium on 127.0.0.1, speaking each wire protocol.

Every answer is deterministic (derived from the request); every request is recorded in `requests` as
{"method", "path", "headers" (lower-case names), "body"} and a server's key is checked like the
provider checks it.

`IdeogramServer` (header `Api-Key`):
  POST /v1/ideogram-v3/generate  JSON (or form) {prompt, aspect_ratio, ...}
  POST /generate                 JSON {"image_request": {prompt, model, ...}}
  POST /upscale                  multipart image_request + image_file
  GET  /images/<name>.png        the image a URL in an answer points at
  -> {"created": ..., "data": [{"url": "<server>/images/<hash>.png", "prompt", "resolution", "seed", ...}]}
  A wrong key: 401. A prompt containing "server-fail": 500 whose body echoes the key it was sent.

`ReplicateServer` (header `Authorization: Bearer <token>`):
  POST /v1/models/<owner>/<name>/predictions  -> 201, a prediction in status "starting"
  GET  /v1/predictions/<id>                   -> "processing", then "succeeded" after `polls_to_finish`
  POST /v1/predictions/<id>/cancel            -> "canceled"
  Output: a list of one https://replicate.delivery/... URL for flux-schnell, the URL alone for the others.
  A prompt containing "fail-prediction" ends "failed" with an error; "never-finish" stays "processing".
  A wrong token: 401 (problem details JSON).

`MediumServer` (header `Authorization: Bearer <token>`):
  POST /v1/users/<authorId>/posts  JSON {title, content, contentFormat, tags, ...}
  -> 201 {"data": {id, title, authorId, tags, url, canonicalUrl, publishStatus, publishedAt, license, licenseUrl}}
  A wrong token: 401 {"errors": [{"message": "Token was invalid.", "code": 6003}]}; another author's id: 403.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from support_servers import RecordingServer, StandInHandler


def _png(width: int = 2, height: int = 2) -> bytes:
    """A small valid PNG (grey pixels), the image every URL in an Ideogram answer serves."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG_IMAGE = _png()


# The keys each server accepts (and the tests' credentials hold): never in any output.
IDEOGRAM_KEY = "ideogram-SECRET-2718-do-not-leak"
REPLICATE_KEY = "r8_SECRET-3141-do-not-leak"
MEDIUM_KEY = "medium-SECRET-1618-do-not-leak"
MEDIUM_AUTHOR_ID = "1a2b3c4d5e6f"


def _digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Handler(StandInHandler):
    """Reads the body (JSON, form or multipart), records the request and asks the server to answer."""

    def _handle(self) -> None:
        server: _MediaServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.read_body()
        headers = self.header_dict()
        body = _parse_body(headers.get("content-type", ""), raw)
        path = self.path.split("?", 1)[0]
        server.record({"method": self.command, "path": path, "headers": headers, "body": body})
        status, payload, content_type = server.answer(self.command, path, headers, body)
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_data(status, data, content_type)

    do_GET = _handle
    do_POST = _handle


def _parse_body(content_type: str, raw: bytes) -> Any:
    if not raw:
        return None
    if content_type.startswith("application/json"):
        return json.loads(raw)
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            fields[str(name)] = (
                {"filename": filename, "size": len(payload), "content_type": part.get_content_type()}
                if filename
                else payload.decode()
            )
        return fields
    if content_type.startswith("application/x-www-form-urlencoded"):
        from urllib.parse import parse_qsl

        return dict(parse_qsl(raw.decode()))
    return raw.decode(errors="replace")


class _MediaServer(RecordingServer):
    def __init__(self, key: str) -> None:
        super().__init__(_Handler)
        self.key = key

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, Any, str]:  # pragma: no cover - every server overrides it
        raise NotImplementedError


# --- Ideogram -----------------------------------------------------------------------------------------
class IdeogramServer(_MediaServer):
    def __init__(self, key: str = IDEOGRAM_KEY) -> None:
        super().__init__(key)

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, str]:
        if method == "GET" and path.startswith("/images/") and path.endswith(".png"):
            return 200, PNG_IMAGE, "image/png"
        if method != "POST" or path not in ("/v1/ideogram-v3/generate", "/generate", "/upscale"):
            return 404, {"detail": "Not Found"}, "application/json"
        if headers.get("api-key") != self.key:
            return 401, {"detail": "Invalid API key"}, "application/json"
        if path == "/upscale":
            image = (body or {}).get("image_file") if isinstance(body, dict) else None
            if not isinstance(image, dict) or not image.get("size"):
                return 400, {"detail": "image_file is required"}, "application/json"
            name = f"upscaled-{_digest(image)}"
            return 200, self._images(name, prompt="", resolution="2048x2048", seed=1), "application/json"
        request = (body or {}).get("image_request", body) if isinstance(body, dict) else None
        if not isinstance(request, dict) or not request.get("prompt"):
            return 422, {"detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}, "application/json"
        prompt = str(request["prompt"])
        if "server-fail" in prompt:
            return 500, {"detail": f"internal failure for key {headers.get('api-key')}"}, "application/json"
        seed = request.get("seed") if isinstance(request.get("seed"), int) else int(_digest(prompt)[:6], 16)
        name = _digest(path, request)
        return 200, self._images(name, prompt=prompt, resolution="1024x1024", seed=seed), "application/json"

    def _images(self, name: str, prompt: str, resolution: str, seed: int) -> dict[str, Any]:
        return {
            "created": "2024-07-19T00:00:00Z",
            "data": [
                {
                    "url": f"{self.url}/images/{name}.png",
                    "prompt": prompt,
                    "resolution": resolution,
                    "is_image_safe": True,
                    "seed": seed,
                    "style_type": "GENERAL",
                }
            ],
        }


# --- Replicate ----------------------------------------------------------------------------------------
class ReplicateServer(_MediaServer):
    def __init__(self, key: str = REPLICATE_KEY, polls_to_finish: int = 2) -> None:
        super().__init__(key)
        self.polls_to_finish = polls_to_finish
        self.predictions: dict[str, dict[str, Any]] = {}
        self._polls: dict[str, int] = {}

    def _reset_state(self) -> None:
        self.predictions.clear()
        self._polls.clear()

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, str]:
        problem = "application/problem+json"
        if headers.get("authorization") != f"Bearer {self.key}":
            return (
                401,
                {
                    "title": "Unauthenticated",
                    "detail": "You did not pass a valid authentication token",
                    "status": 401,
                },
                problem,
            )
        parts = path.strip("/").split("/")
        if (
            method == "POST"
            and len(parts) == 5
            and parts[:2] == ["v1", "models"]
            and parts[4] == "predictions"
        ):
            return self._create(f"{parts[2]}/{parts[3]}", body)
        if len(parts) >= 3 and parts[:2] == ["v1", "predictions"]:
            with self._lock:
                prediction = self.predictions.get(parts[2])
                if prediction is None:
                    return 404, {"title": "Not found", "detail": "Not found.", "status": 404}, problem
                if method == "GET" and len(parts) == 3:
                    self._advance(prediction)
                    return 200, dict(prediction), "application/json"
                if method == "POST" and parts[3:] == ["cancel"]:
                    if prediction["status"] not in ("succeeded", "failed"):
                        prediction["status"] = "canceled"
                    return 200, dict(prediction), "application/json"
        return 404, {"title": "Not found", "detail": f"no route {method} {path}", "status": 404}, problem

    def _create(self, model: str, body: Any) -> tuple[int, Any, str]:
        given = body.get("input") if isinstance(body, dict) else None
        if not isinstance(given, dict) or not given.get("prompt"):
            return (
                422,
                {"title": "Input validation failed", "detail": "- input: prompt is required", "status": 422},
                "application/problem+json",
            )
        with self._lock:
            number = len(self.predictions) + 1
            prediction_id = f"p{number:03d}{_digest(model, given)[:10]}"
            self.predictions[prediction_id] = {
                "id": prediction_id,
                "model": model,
                "version": "hidden",
                "status": "starting",
                "input": given,
                "output": None,
                "logs": "",
                "error": None,
                "metrics": {},
                "created_at": "2024-07-19T00:00:00.000Z",
                "started_at": None,
                "completed_at": None,
                "urls": {
                    "get": f"{self.url}/v1/predictions/{prediction_id}",
                    "cancel": f"{self.url}/v1/predictions/{prediction_id}/cancel",
                },
            }
            self._polls[prediction_id] = 0
            return 201, dict(self.predictions[prediction_id]), "application/json"

    def _advance(self, prediction: dict[str, Any]) -> None:
        """One poll: starting -> processing -> (after polls_to_finish polls) succeeded or failed."""
        if prediction["status"] in ("succeeded", "failed", "canceled"):
            return
        self._polls[prediction["id"]] += 1
        prompt = str(prediction["input"].get("prompt"))
        prediction["status"] = "processing"
        prediction["started_at"] = "2024-07-19T00:00:01.000Z"
        prediction["logs"] = f"Using seed: {prediction['input'].get('seed')}\n"
        if self._polls[prediction["id"]] < self.polls_to_finish or "never-finish" in prompt:
            return
        prediction["completed_at"] = "2024-07-19T00:00:05.000Z"
        if "fail-prediction" in prompt:
            prediction["status"] = "failed"
            prediction["error"] = "Prediction failed: the model could not handle this prompt"
            return
        extension = prediction["input"].get("output_format") or "webp"
        url = f"https://replicate.delivery/agentflow-test/{_digest(prediction['input'])}/out-0.{extension}"
        prediction["status"] = "succeeded"
        prediction["output"] = [url] if prediction["model"].endswith("flux-schnell") else url
        prediction["metrics"] = {"predict_time": 1.5}


# --- Medium -------------------------------------------------------------------------------------------
class MediumServer(_MediaServer):
    def __init__(self, key: str = MEDIUM_KEY, author_id: str = MEDIUM_AUTHOR_ID) -> None:
        super().__init__(key)
        self.author_id = author_id

    def answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any, str]:
        parts = path.strip("/").split("/")
        if method != "POST" or len(parts) != 4 or parts[:2] != ["v1", "users"] or parts[3] != "posts":
            return 404, {"errors": [{"message": "Not found", "code": 6000}]}, "application/json"
        if headers.get("authorization") != f"Bearer {self.key}":
            return 401, {"errors": [{"message": "Token was invalid.", "code": 6003}]}, "application/json"
        if parts[2] != self.author_id:
            return (
                403,
                {"errors": [{"message": "You cannot publish posts for that user.", "code": 6027}]},
                "application/json",
            )
        if not isinstance(body, dict) or not body.get("title") or not body.get("content"):
            return (
                400,
                {"errors": [{"message": "title and content are required", "code": 2004}]},
                "application/json",
            )
        if body.get("contentFormat") not in ("html", "markdown"):
            return 400, {"errors": [{"message": "Invalid contentFormat.", "code": 6025}]}, "application/json"
        post_id = _digest(parts[2], body)[:12]
        slug = "-".join(str(body["title"]).lower().split())[:60]
        status = body.get("publishStatus") or "public"
        licence = body.get("license") or "all-rights-reserved"
        return (
            201,
            {
                "data": {
                    "id": post_id,
                    "title": body["title"],
                    "authorId": parts[2],
                    "tags": body.get("tags") or [],
                    "url": f"https://medium.com/@agentflow/{slug}-{post_id}",
                    "canonicalUrl": body.get("canonicalUrl") or "",
                    "publishStatus": status,
                    "publishedAt": 1721347200000 if status == "public" else 0,
                    "license": licence,
                    "licenseUrl": f"https://medium.com/policy/{licence}",
                }
            },
            "application/json",
        )
