"""``--mode serve``: an HTTP prediction service (FastAPI on uvicorn) with a page to try it.

Endpoints (``/openapi.json`` describes them):

- ``POST /predict``: one or many images, as ``multipart/form-data`` files
  (any field name) or one image as the raw body (``image/*`` or
  ``application/octet-stream``). Answers ``{"predictions": [...]}``, one
  entry per image in the order sent: ``file``, ``class``, ``confidence``,
  ``uncertain``, ``top_k`` (``[{"class", "confidence"}]``), or ``file`` and
  ``error`` for an image that could not be read. HTTP 200 when at least one
  image was predicted, 422 when none could be read, 400 for an empty or
  malformed request or too many files, 413 for a body over
  ``serve_max_mb``, 415 for another content type, 503 when the queue is
  full (retry after a second).
- ``GET /health``: ``{"status": "ready", ...}`` with the weights' SHA-256;
  no token needed (for load balancers).
- ``GET /metadata``: class names in output order, input size, colour mode,
  model, temperature, limits.
- ``GET /``: a page where a person chooses or drops images and sees the top
  classes; self-contained (no network), like every answer here.

Answers equal ``--mode predict``'s for the same files: the same decoding
(:func:`mnist_folders.data.images.load_image`), runtime, temperature,
``invert`` and ``min_confidence`` (:func:`mnist_folders.serve.prediction.rank`).
On an exported runtime the process never imports TensorFlow.

With ``$MNIST_FOLDERS_TOKEN`` set, every endpoint but ``/health`` requires
``Authorization: Bearer <token>`` (or HTTP Basic with the token as password,
which a browser asks for on the page): HTTP 401 otherwise. No request value
is ever used as a file path.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import io
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from ..data.images import CHANNELS, ImageReadError, load_image
from ..errors import SettingError
from ..names import display
from ..settings import Setting
from .batcher import Batcher, Overloaded
from .live_model import LiveModel
from .prediction import TOP_K, rank

TOKEN_ENV = "MNIST_FOLDERS_TOKEN"
PAGE = Path(__file__).with_name("page.html")
RAW_TYPES = ("image/", "application/octet-stream")
DECODERS = max(2, os.cpu_count() or 2)  # requests whose uploads are decoded at once
QUEUE_IMAGES = 4096  # images waiting for the model, at most; beyond: HTTP 503
GRACE_SECONDS = 30  # on SIGTERM: how long requests in flight may take to finish
# An idle connection is kept this long: longer than clients keep theirs (httpx 5 s, as uvicorn's default was),
# so that a client never sends a request on a connection the server is closing (bench/serve_load.py saw it).
KEEP_ALIVE_SECONDS = 75
# A strict policy for the page: its own inline script and style, images from the files a person chose.
PAGE_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob:; "
               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets HTTP 413, by its Content-Length before
    anything is read, else (a chunked body) as soon as the bytes read pass the limit; a bad Content-Length
    gets 400."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await _send_error(send, 400, "invalid Content-Length")
            if int(length) > self.max_bytes:
                return await _send_error(send, 413, self._too_large())
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # raised inside the app: its error handler answers
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> str:
        return f"request body over {self.max_bytes / 2**20:g} MiB (serve_max_mb)"


async def _send_error(send, status: int, message: str, headers: tuple = ()) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": body})


class TokenCheck:
    """ASGI middleware: with a token, every path but ``/health`` needs ``Authorization: Bearer <token>``
    or HTTP Basic with the token as password (compared in constant time); HTTP 401 otherwise."""

    OPEN = ("/health",)

    def __init__(self, app, token: str | None):
        self.app, self.token = app, (token or "").encode()

    def _allowed(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        if scheme.lower() == b"bearer":
            return hmac.compare_digest(value.strip(), self.token)
        if scheme.lower() == b"basic":
            try:
                password = base64.b64decode(value.strip(), validate=True).partition(b":")[2]
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(password, self.token)
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.token or scope["path"] in self.OPEN:
            return await self.app(scope, receive, send)
        if self._allowed(dict(scope["headers"]).get(b"authorization", b"")):
            return await self.app(scope, receive, send)
        # The page asks the browser for the token (HTTP Basic); programs send it as a bearer token.
        challenge = b'Basic realm="mnist_folders", charset="UTF-8"' if scope["path"] == "/" else b"Bearer"
        await _send_error(send, 401, f"missing or wrong token (set by {TOKEN_ENV} on the server)",
                          ((b"www-authenticate", challenge),))


def decode_uploads(blobs: list[tuple[str, bytes]], setting: Setting) -> tuple[np.ndarray, list[int], dict]:
    """Decode ``(name, bytes)`` uploads as ``--mode predict`` decodes files: ``(N, H, W, C)`` uint8 of the
    readable ones, their positions in ``blobs``, and ``{position: reason}`` for the others."""
    height, width = setting.input_shape[:2]
    images = np.zeros((len(blobs), height, width, CHANNELS[setting.color_mode]), dtype=np.uint8)
    kept, failed = [], {}
    for i, (_, data) in enumerate(blobs):
        if not data:
            failed[i] = "empty file"
            continue
        try:
            images[len(kept)] = load_image(io.BytesIO(data), height, width, setting.color_mode,
                                           setting.resize_method)
            kept.append(i)
        except ImageReadError as exc:
            failed[i] = str(exc)
    return images[: len(kept)], kept, failed


def make_app(setting: Setting, live: LiveModel, token: str | None = None):
    """The ASGI application: FastAPI routes inside the body-size and token middleware.

    ``setting``: the model's Setting (input size, colour mode, ``min_confidence``, the ``serve_*``
    limits); ``live``: the model to answer with.
    """
    def run(images: np.ndarray) -> tuple[np.ndarray, dict]:
        loaded = live.refresh()  # between two batches: a new model is swapped in whole
        return loaded.predictor.probabilities(images), {"weights_sha256": loaded.weights_sha256,
                                                        "class_names": loaded.predictor.class_names}

    batcher = Batcher(run, setting.serve_batch, setting.serve_wait_ms / 1000.0, QUEUE_IMAGES)
    # Requests decode one at a time each, DECODERS at once: an image just under Pillow's decompression-bomb
    # limit (89 million pixels) takes about 270 MB decoded, so 40 requests at once (anyio's default threads)
    # could take 10 GB.
    decoders = anyio.CapacityLimiter(DECODERS)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await batcher.start()
        yield
        await batcher.stop()

    # No /docs or /redoc: their pages load scripts from a CDN. /openapi.json is served.
    app = FastAPI(title="mnist_folders", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Image classification with a model trained by mnist_folders.")

    @app.exception_handler(HTTPException)
    async def http_error(_request, exc: HTTPException):  # one JSON shape for every error: {"error": ...}
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):  # e.g. a query parameter of the wrong type
        first = (exc.errors() or [{}])[0]
        return JSONResponse({"error": f"invalid request: {first.get('msg', 'malformed')}"}, status_code=400)

    image_body = {"schema": {"type": "string", "format": "binary"}}
    predict_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
        "image/*": image_body, "application/octet-stream": image_body}}}

    @app.post("/predict", openapi_extra=predict_body,
              summary="Classify one or many images (multipart files, or one image as the body)")
    async def predict(request: Request):
        blobs = await _uploads(request, setting)
        images, kept, failed = await anyio.to_thread.run_sync(decode_uploads, blobs, setting, limiter=decoders)
        answers: list[dict] = [{"file": blobs[i][0], "error": failed[i]} for i in range(len(blobs)) if i in failed]
        weights = None
        if len(kept):
            try:
                rows, info = await batcher.submit(images)
            except Overloaded as exc:
                raise HTTPException(503, f"busy: {exc}; retry later", headers={"Retry-After": "1"}) from None
            weights = info["weights_sha256"]
            ranked = rank(rows, info["class_names"], [blobs[i][0] for i in kept],
                          setting.min_confidence)
            by_position = dict(zip(kept, (_answer(p) for p in ranked)))
            by_position.update({i: {"file": blobs[i][0], "error": failed[i]} for i in failed})
            answers = [by_position[i] for i in range(len(blobs))]
        return JSONResponse({"predictions": answers, "weights_sha256": weights},
                            status_code=200 if len(kept) else 422)

    @app.get("/health", summary="Ready or not; which model answers")
    async def health():
        loaded = await run_in_threadpool(live.refresh)
        return {"status": "ready", "model": setting.model, "runtime": live.runtime,
                "weights_sha256": loaded.weights_sha256, "update_pending": live.pending,
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(loaded.loaded_at))}

    @app.get("/metadata", summary="Classes in output order, input size, colour mode, model, temperature")
    async def metadata():
        loaded = live.current
        height, width, channels = setting.input_shape
        return {"classes": [display(name) for name in loaded.predictor.class_names], "model": setting.model,
                "runtime": live.runtime,
                "input": {"height": height, "width": width, "channels": channels,
                          "color_mode": setting.color_mode, "resize_method": setting.resize_method,
                          "invert": setting.invert},
                "temperature": loaded.temperature, "min_confidence": setting.min_confidence, "top_k": TOP_K,
                "weights_sha256": loaded.weights_sha256,
                "limits": {"max_files": setting.serve_max_files, "max_request_bytes": _max_bytes(setting),
                           "max_batch": setting.serve_batch, "max_wait_ms": setting.serve_wait_ms}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"), headers={"Content-Security-Policy": PAGE_POLICY})

    wrapped = BodyLimit(TokenCheck(app, token), _max_bytes(setting))
    wrapped.batcher = batcher  # its counters, for the line serve() ends with
    return wrapped


def _max_bytes(setting: Setting) -> int:
    return int(setting.serve_max_mb * 2**20)


def _answer(p) -> dict:
    # A class folder named with undecodable bytes ("caf\udce9") is no UTF-8 JSON: "caf\\xe9", as predict prints.
    return {"file": p.path, "class": display(p.class_name), "confidence": p.confidence, "uncertain": p.uncertain,
            "top_k": [{"class": display(name), "confidence": value} for name, value in p.top_k]}


async def _uploads(request, setting: Setting) -> list[tuple[str, bytes]]:
    """The request's images as ``(name, bytes)``: multipart files (their file names, never used as paths),
    or the raw body (named ``body``). Raises HTTPException 400/415 for a request that holds none."""

    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=setting.serve_max_files, max_fields=setting.serve_max_files)
        except HTTPException as exc:  # too many files or fields, a malformed body
            if exc.status_code == 413:
                raise
            if "too many" in str(exc.detail).lower():
                raise HTTPException(400, f"too many files or fields: at most {setting.serve_max_files} per "
                                         "request (serve_max_files)") from None
            raise HTTPException(400, f"malformed multipart body: {exc.detail}") from None
        files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise HTTPException(400, "no file in the multipart body (send images as file fields)")
        blobs = [(file.filename or f"file {i + 1}", await file.read()) for i, file in enumerate(files)]
        await form.close()
        return blobs
    if kind.startswith(RAW_TYPES):
        body = await request.body()
        if not body:
            raise HTTPException(400, "empty body: send an image")
        return [("body", body)]
    raise HTTPException(415, f"content type {kind or 'missing'}: send multipart/form-data files, or one image "
                             "as image/* or application/octet-stream")


def read_token(environ: dict | None = None) -> str | None:
    """``$MNIST_FOLDERS_TOKEN`` stripped, or None when unset or empty."""
    token = (environ if environ is not None else os.environ).get(TOKEN_ENV, "").strip()
    return token or None


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6).

    Raises:
        SettingError: the host name does not resolve.
        OSError: the port is taken or not allowed (named in the message).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise SettingError(f"host {host!r}: not an address of this machine ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"{host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    return sock


def serve(setting: Setting, log: Callable[[str], None] = print) -> dict:
    """Answer HTTP requests with the model of ``setting.model_path`` until SIGTERM or Ctrl-C.

    The runtime is ``setting.runtime`` (``auto``: the ONNX export when it is
    current, else Keras, said in one line). On SIGTERM or Ctrl-C the server
    stops taking connections, finishes the requests in flight (up to
    :data:`GRACE_SECONDS`) and returns ``{"images": ..., "batches": ...}``:
    the images predicted and the forward passes that took them.

    Raises:
        CheckpointError: no trained model, or no current export for an exported runtime.
        SettingError: ``host`` does not resolve.
        OSError: the port is taken.
    """
    import uvicorn

    from .prediction import choose_runtime

    runtime = choose_runtime(setting, warn=log)
    if runtime == "keras" and setting.runtime == "auto":
        log("no current export/model.onnx: serving with Keras (TensorFlow); run --mode export to serve "
            "without it")
    live = LiveModel(setting, runtime, log)
    token = read_token()
    app = make_app(setting, live, token)
    sock = bind(setting.host, setting.port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=GRACE_SECONDS, server_header=False,
                            timeout_keep_alive=KEEP_ALIVE_SECONDS)
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    log(f"serving {display(setting.model_path)} ({setting.model}, {runtime}, weights "
        f"{live.current.weights_sha256[:12]}) at http://{shown}:{port}/ ; Ctrl-C or SIGTERM stops")
    if not _loopback(host):
        log(f"listening on {host}: anyone who reaches this machine on port {port} can use the model"
            + ("" if token else f" (set {TOKEN_ENV} to require a token)"))
    # uvicorn handles SIGTERM and SIGINT itself (stop taking connections, finish the requests in flight),
    # then raises the signal again for the handler it found: here one that lets serve() return normally.
    stopped: list[int] = []
    previous = {s: signal.signal(s, lambda number, _frame: stopped.append(number))
                for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run(sockets=[sock])
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        sock.close()
    return {"images": app.batcher.images, "batches": app.batcher.batches}


def _loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
