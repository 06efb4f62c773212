"""A real HTTP server on 127.0.0.1 that speaks the OpenAI image-edit API, for tests.

It checks every request as the real API would (key, model, prompt, each reference image a
valid PNG within ``reference_px``) and answers with a real PNG as ``b64_json`` plus a
``usage`` block, or with the failure a test asks for. Requests are recorded so a test can
look at what petwatch actually sent.

    with FakeOpenAI(reference_px=256) as server:
        server.then("rate_limit", "ok")          # one-shot behaviours, in order
        settings = load(openai_base_url=server.base_url, openai_api_key=server.api_key)
        ...
        assert server.requests[-1].prompt.startswith(...)

Behaviours: ok, safety, bad_request, unauthorized, forbidden, not_found, rate_limit, quota,
server_error, hang (no answer for ``hang_seconds``), slow (ok, after ``hang_seconds``),
garbage (200 without an image).
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import io
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageDraw

BEHAVIOURS = frozenset(
    {
        "ok",
        "safety",
        "bad_request",
        "unauthorized",
        "forbidden",
        "not_found",
        "rate_limit",
        "quota",
        "server_error",
        "hang",
        "slow",
        "garbage",
    }
)
MAX_IMAGES = 16  # the API's limit on reference images
SAFETY_REASON = "Your request was rejected by the safety system: the image may depict a real person."


@dataclass
class ReferenceImage:
    filename: str
    content_type: str
    data: bytes
    width: int = 0
    height: int = 0


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    fields: dict[str, str] = field(default_factory=dict)
    images: list[ReferenceImage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what the real API would refuse
    behaviour: str = ""

    @property
    def prompt(self) -> str:
        return self.fields.get("prompt", "")

    @property
    def model(self) -> str:
        return self.fields.get("model", "")


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server`` (or start()/stop()); base_url ends in /v1."""

    def __init__(
        self,
        *,
        api_key: str = "sk-test-petwatch",
        reference_px: int = 1024,
        models: frozenset[str] | None = frozenset({"gpt-image-1.5"}),
        mode: str = "ok",
        hang_seconds: float = 30.0,
    ) -> None:
        self.api_key = api_key
        self.reference_px = reference_px
        self.models = models  # None accepts any model name
        self.mode = mode  # the behaviour once the one-shot queue is empty
        self.hang_seconds = hang_seconds
        self.requests: list[RecordedRequest] = []
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- control -------------------------------------------------------------------------
    def then(self, *behaviours: str) -> FakeOpenAI:
        """Answer the next requests with these behaviours, one each, then with ``mode``."""
        for behaviour in behaviours:
            _check_behaviour(behaviour)
        with self._lock:
            self._queue.extend(behaviours)
        return self

    def set_mode(self, mode: str) -> None:
        _check_behaviour(mode)
        self.mode = mode

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def problems(self) -> list[str]:
        """Every protocol problem seen in any request; a test asserts this is empty."""
        return [problem for request in self.requests for problem in request.problems]

    def start(self) -> FakeOpenAI:
        _check_behaviour(self.mode)
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers in "hang"
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- used by the handler -------------------------------------------------------------
    def _next_behaviour(self) -> str:
        with self._lock:
            return self._queue.popleft() if self._queue else self.mode

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)


def _check_behaviour(behaviour: str) -> None:
    if behaviour not in BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; one of {sorted(BEHAVIOURS)}")


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._reply_error(HTTPStatus.NOT_FOUND, "not found", "invalid_request_error", None)

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server_fake
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = RecordedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()})
        if self.path.rstrip("/") != "/v1/images/edits":
            request.problems.append(f"unexpected path {self.path}")
            fake._record(request)
            self._reply_error(HTTPStatus.NOT_FOUND, f"unknown path {self.path}", "invalid_request_error", None)
            return
        _parse_multipart(request, self.headers.get("Content-Type", ""), body)
        _check_edit_request(request, fake)
        request.behaviour = fake._next_behaviour()
        fake._record(request)

        if request.headers.get("authorization") != f"Bearer {fake.api_key}":
            self._reply_error(
                HTTPStatus.UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_request_error",
                "invalid_api_key",
            )
            return
        if fake.models is not None and request.model not in fake.models:
            self._reply_error(
                HTTPStatus.NOT_FOUND,
                f"The model '{request.model}' does not exist.",
                "invalid_request_error",
                "model_not_found",
            )
            return
        if request.problems:
            self._reply_error(
                HTTPStatus.BAD_REQUEST,
                "fake server: " + "; ".join(request.problems),
                "invalid_request_error",
                None,
            )
            return
        self._behave(request)

    def _behave(self, request: RecordedRequest) -> None:
        fake = self.server_fake
        behaviour = request.behaviour
        if behaviour == "ok":
            self._reply_json(HTTPStatus.OK, _image_response(request))
        elif behaviour == "safety":
            self._reply_error(
                HTTPStatus.BAD_REQUEST,
                SAFETY_REASON,
                "image_generation_user_error",
                "moderation_blocked",
            )
        elif behaviour == "bad_request":
            self._reply_error(
                HTTPStatus.BAD_REQUEST,
                "Invalid value for 'size'.",
                "invalid_request_error",
                "invalid_value",
            )
        elif behaviour == "unauthorized":
            self._reply_error(
                HTTPStatus.UNAUTHORIZED,
                "Incorrect API key provided.",
                "invalid_request_error",
                "invalid_api_key",
            )
        elif behaviour == "forbidden":
            self._reply_error(
                HTTPStatus.FORBIDDEN,
                "Your organization must be verified to use the model `gpt-image-1.5`.",
                "invalid_request_error",
                None,
            )
        elif behaviour == "not_found":
            self._reply_error(
                HTTPStatus.NOT_FOUND,
                "The model does not exist.",
                "invalid_request_error",
                "model_not_found",
            )
        elif behaviour == "rate_limit":
            self._reply_error(
                HTTPStatus.TOO_MANY_REQUESTS,
                "Rate limit reached for images per minute.",
                "requests",
                "rate_limit_exceeded",
            )
        elif behaviour == "quota":
            self._reply_error(
                HTTPStatus.TOO_MANY_REQUESTS,
                "You exceeded your current quota.",
                "insufficient_quota",
                "insufficient_quota",
            )
        elif behaviour == "server_error":
            self._reply_error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "The server had an error processing your request.",
                "server_error",
                None,
            )
        elif behaviour == "hang":
            fake._stopping.wait(fake.hang_seconds)
            self.close_connection = True
        elif behaviour == "slow":
            fake._stopping.wait(fake.hang_seconds)
            self._reply_json(HTTPStatus.OK, _image_response(request))
        elif behaviour == "garbage":
            self._reply_json(
                HTTPStatus.OK,
                {"created": 0, "data": [{"b64_json": base64.b64encode(b"not a png").decode()}]},
            )

    def _reply_json(self, status: HTTPStatus, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reply_error(self, status: HTTPStatus, message: str, kind: str, code: str | None) -> None:
        self._reply_json(status, {"error": {"message": message, "type": kind, "param": None, "code": code}})


def _parse_multipart(request: RecordedRequest, content_type: str, body: bytes) -> None:
    if not content_type.startswith("multipart/form-data"):
        request.problems.append(f"expected multipart/form-data, got {content_type or 'no content type'}")
        return
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if part.get_filename() is not None or name in ("image", "image[]"):
            request.images.append(ReferenceImage(part.get_filename() or "", part.get_content_type(), payload))
        elif name:
            request.fields[name] = payload.decode("utf-8")


def _check_edit_request(request: RecordedRequest, fake: FakeOpenAI) -> None:
    if not request.model:
        request.problems.append("no model")
    if not request.prompt.strip():
        request.problems.append("no prompt")
    if not request.images:
        request.problems.append("no reference image")
    if len(request.images) > MAX_IMAGES:
        request.problems.append(f"{len(request.images)} images; at most {MAX_IMAGES}")
    for number, image in enumerate(request.images, 1):
        if not image.data.startswith(b"\x89PNG\r\n\x1a\n"):
            request.problems.append(f"image {number} ({image.filename}) is not a PNG")
            continue
        try:
            with Image.open(io.BytesIO(image.data)) as opened:
                image.width, image.height = opened.size
                opened.verify()
        except Exception as error:  # noqa: BLE001 - any decode failure is the finding
            request.problems.append(f"image {number} ({image.filename}) is not a valid PNG: {error}")
            continue
        if max(image.width, image.height) > fake.reference_px:
            request.problems.append(
                f"image {number} ({image.filename}) is {image.width}x{image.height}, over {fake.reference_px} px"
            )


def _image_response(request: RecordedRequest) -> dict:
    size = request.fields.get("size", "auto")
    width, height = (int(side) for side in size.split("x")) if "x" in size else (1024, 1024)
    image = Image.new("RGB", (width, height), (250, 240, 200))
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, width - 40, height - 40), outline=(20, 20, 20), width=8)
    draw.line((width // 2, 40, width // 2, height - 40), fill=(20, 20, 20), width=8)
    out = io.BytesIO()
    image.save(out, "PNG")
    image_tokens = 1000 * len(request.images)
    text_tokens = max(1, len(request.prompt) // 4)
    return {
        "created": 1_700_000_000,
        "data": [{"b64_json": base64.b64encode(out.getvalue()).decode()}],
        "size": f"{width}x{height}",
        "quality": request.fields.get("quality", "medium"),
        "output_format": "png",
        "usage": {
            "input_tokens": image_tokens + text_tokens,
            "input_tokens_details": {"image_tokens": image_tokens, "text_tokens": text_tokens},
            "output_tokens": 1056,
            "output_tokens_details": {"image_tokens": 1056, "text_tokens": 0},
            "total_tokens": image_tokens + text_tokens + 1056,
        },
    }
