"""Serving a trained run over HTTP: a FastAPI app whose requests are micro-batched into one model
call, the web page at `/`, limits on what clients send, and a uvicorn server on the loopback
address unless told otherwise.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from img2num.batching import MicroBatcher, QueueFull
from img2num.bundle import Run, as_run
from img2num.config import LOOPBACK, PREDICT_BATCH_SIZE, ServeConfig
from img2num.errors import Img2NumError
from img2num.startup import __version__

# Names a client may give an image are echoed back, never used as paths; cut to this length.
_NAME_CHARS = 200
# Uploads up to this size are decoded on the event loop (well under a millisecond); larger ones
# on a worker thread, so that they do not hold up other requests.
_INLINE_DECODE_BYTES = 64 * 1024


class Predictor:
    """A run ready to serve: decoding as `img2num predict` decodes, a warmed model and its batcher.

    Args:
        run: The trained run.
        config: Limits and batching.
    """

    def __init__(self, run: Run, config: ServeConfig) -> None:
        self.run, self.config = run, config
        self.spec = run.preprocessing.image_spec()
        self.warm_up()
        self.batcher = MicroBatcher(run.predict, config.max_batch, config.batch_wait_ms / 1000, config.queue_size)

    def warm_up(self) -> None:
        """Compile the model for every batch shape a call can take: powers of two up to the
        largest batch (`max_batch`, or one request's `max_images`), as `Run.predict` pads them
        up to `PREDICT_BATCH_SIZE`; so no request waits for a compilation."""
        largest = min(max(self.config.max_batch, self.config.max_images), PREDICT_BATCH_SIZE)
        size = 1
        while True:
            self.run.predict(np.zeros((size, *self.spec.shape), self.spec.dtype))
            if size >= largest:
                break
            size = min(2 * size, largest)

    def decode(self, uploads: list[tuple[str, bytes]]) -> list[np.ndarray | str]:
        """Each upload as the model's input image, or the reason it cannot be used."""
        from img2num.data.images import BadImage, conform, read_image_bytes

        out: list[np.ndarray | str] = []
        for _, data in uploads:
            try:
                out.append(conform(read_image_bytes(data, self.config.max_pixels), self.spec))
            except BadImage as error:
                # The pixel limit is the server's option here, not Pillow's setting.
                message = str(error).replace("over Pillow's limit", "over the limit")
                out.append(message.replace("(PIL.Image.MAX_IMAGE_PIXELS)", "(option --max-pixels)"))
        return out

    def info(self) -> dict:
        """What `/info` answers: the run, its input, training metrics, versions and limits."""
        import keras

        run, (height, width, channels) = self.run, self.run.preprocessing.input_shape
        return {
            "run": run_name(run),
            "model": run.model_name,
            "units": run_units(run, self.config),
            "input": {
                "height": height,
                "width": width,
                "channels": channels,
                "dtype": run.preprocessing.input_dtype,
                "resize": run.preprocessing.resize,
            },
            "metrics": _finite(run.metrics),
            "epochs": len(run.history),
            "versions": {"img2num": __version__, "keras": keras.__version__, "backend": keras.backend.backend()},
            "trained_with": {key: run.config.get(f"{key}_version") for key in ("img2num", "keras")}
            | {"backend": run.config.get("backend")},
            "limits": asdict(self.config),
        }

    def close(self) -> None:
        self.batcher.close()


def run_name(run: Run) -> str:
    """The name a run is known by: its folder's name, else its model's."""
    return run.path.name if run.path is not None else run.model_name


def run_units(run: Run, config: ServeConfig | None = None) -> str | None:
    """What the predicted number is measured in: `--units` when given, else the run's own
    `units` entry when its configuration has one, else None."""
    if config is not None and config.units:
        return config.units
    units = run.config.get("units")
    return units if isinstance(units, str) else None


def _finite(value):
    """`value` with NaN and infinities as None: JSON has no such numbers (a diverged model
    predicts them; R^2 is NaN on constant labels)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def create_app(run: Run | str | Path, config: ServeConfig | None = None):
    """The FastAPI application serving a run; the model is loaded and compiled here, once.

    Endpoints: `POST /predict` (multipart image files, or one image as the raw body), `GET
    /health`, `GET /info`, the web page at `/`, and FastAPI's `/docs` and `/openapi.json`.

    Args:
        run: A `Run` or the path of a run folder.
        config: Limits and batching (the host and port are not used here).

    Returns:
        A `fastapi.FastAPI` application, for uvicorn or any ASGI server.

    Raises:
        Img2NumError: The run cannot be read.
    """
    config = config or ServeConfig()
    run = as_run(run)
    predictor = Predictor(run, config)
    page = resources.files("img2num").joinpath("static/index.html").read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app):
        yield
        predictor.close()

    app = FastAPI(
        title=f"img2num: {run_name(run)}",
        version=__version__,
        description=f"Predict a number from an image with the run {run_name(run)} (model {run.model_name}).",
        lifespan=lifespan,
    )
    app.state.predictor = predictor
    app.add_middleware(_BodyLimit, limit=config.max_upload_bytes)

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, error: RequestValidationError):
        return JSONResponse({"error": "; ".join(str(item.get("msg")) for item in error.errors())}, 422)

    @app.exception_handler(Exception)
    async def internal_error(request, error: Exception):
        # The traceback goes to the server's log, never into the answer.
        return JSONResponse({"error": f"internal error ({type(error).__name__}); see the server's log"}, 500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_POLICY})

    @app.get("/health", summary="Is the server up, and how busy")
    async def health() -> dict:
        batcher = predictor.batcher
        return {"status": "ok", "waiting": batcher.waiting, "model_calls": batcher.calls, "images": batcher.images}

    @app.get("/info", summary="The run: model, input, training metrics, versions, limits")
    async def info() -> dict:
        return predictor.info()

    @app.post("/predict", summary="Predict one number per image", openapi_extra=_PREDICT_BODY_DOC)
    async def predict(request: Request):
        uploads = await _read_uploads(request, config)
        if sum(len(data) for _, data in uploads) <= _INLINE_DECODE_BYTES:
            decoded = predictor.decode(uploads)
        else:
            decoded = await run_in_threadpool(predictor.decode, uploads)
        good = [item for item in decoded if not isinstance(item, str)]
        values: list[float] = []
        if good:
            try:
                future = predictor.batcher.submit(np.stack(good))
            except QueueFull as error:
                raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
            values = _finite([float(value) for value in await asyncio.wrap_future(future)])
        results, next_value = [], iter(values)
        for (name, _), item in zip(uploads, decoded):
            if isinstance(item, str):
                results.append({"file": name, "error": item})
            else:
                results.append({"file": name, "prediction": next(next_value)})
        answer = {"run": run_name(run), "model": run.model_name, "units": run_units(run, config), "results": results}
        if good:
            return answer
        first = results[0]
        summary = f"{first['file']}: {first['error']}" if len(results) == 1 else f"none of the {len(results)} images could be used"
        return JSONResponse({"error": summary, **answer}, 422)

    return app


async def _read_uploads(request: Request, config: ServeConfig) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in a request: every file part of a multipart form, or the
    raw body as one image named by the `name` query parameter."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=config.max_images, max_fields=config.max_images)
        try:
            uploads = [
                ((item.filename or key)[:_NAME_CHARS], await item.read())
                for key, item in form.multi_items()
                if isinstance(item, UploadFile)
            ]
        finally:
            await form.close()
        if not uploads:
            raise HTTPException(422, "no image file in the form: send each image as a file part (curl -F file=@photo.png)")
        return uploads
    body = await request.body()
    if not body:
        raise HTTPException(
            422,
            "empty request: send image files as a multipart form (curl -F file=@photo.png) "
            "or one image as the body (curl --data-binary @photo.png)",
        )
    return [(request.query_params.get("name", "image")[:_NAME_CHARS], body)]


class _BodyLimit:
    """ASGI middleware answering 413 to a body over `limit` bytes: at once when Content-Length
    says so, else as soon as the streamed body passes it (nothing past it is kept)."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body over the upload limit of {self.limit} bytes (option --max-upload-mb)"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await JSONResponse({"error": too_large}, 413, headers={"Connection": "close"})(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Raised inside the route, so FastAPI's handler answers it as JSON.
                    raise HTTPException(413, too_large)
            return message

        return await self.app(scope, limited_receive, send)


# The page loads nothing from elsewhere: scripts, styles and images come from this server or
# from the files the user chose (blob: URLs).
_PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'"
)

_PREDICT_BODY_DOC = {
    "requestBody": {
        "required": True,
        "description": "Image files as a multipart form (any field name, one file part per image), "
        "or one image as the raw body (any content type; `?name=` names it in the answer).",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {"description": "One result per image, in order: `prediction` or `error`."},
        "400": {"description": "A malformed form, or more files than the limit."},
        "413": {"description": "Body over the upload limit."},
        "422": {"description": "No image could be used; `results` says why for each."},
        "503": {"description": "The queue is full; try again."},
    },
}


def _listen(config: ServeConfig) -> socket.socket:
    """A TCP socket bound to the configured address and listening, so that connections that
    arrive before the server runs wait in the backlog rather than being refused."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            config.host, config.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise Img2NumError(f"cannot listen on {config.host}:{config.port} ({error})") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: without it, Nagle's algorithm holds the answer's body
        # back until the client's delayed ACK, some 40 ms per request.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as error:
        sock.close()
        raise Img2NumError(f"cannot listen on {config.host}:{config.port} ({error})") from None
    return sock


def _uvicorn_server(app, config: ServeConfig):
    import uvicorn

    settings = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level="warning",
        access_log=False,
        limit_concurrency=config.max_connections,
        timeout_keep_alive=5,
    )
    return uvicorn.Server(settings)


def _url(sock) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def serve(run: Run | str | Path, config: ServeConfig | None = None) -> None:
    """Serve a run over HTTP until interrupted (Ctrl-C), printing where at start.

    Args:
        run: A `Run` or the path of a run folder.
        config: Address, limits and batching; the default listens on 127.0.0.1:8000.

    Raises:
        Img2NumError: The run cannot be read, or the address cannot be bound.
    """
    config = config or ServeConfig()
    sock = _listen(config)  # before loading the run: a taken port fails at once
    try:
        run = as_run(run)
        server = _uvicorn_server(create_app(run, config), config)
    except BaseException:
        sock.close()
        raise
    height, width, channels = run.preprocessing.input_shape
    print(f"img2num: serving run {run_name(run)} ({run.model_name}, {height}x{width}x{channels}) at {_url(sock)}/", flush=True)
    if config.host in (LOOPBACK, "localhost", "::1"):
        print("img2num: listening on the loopback address: only this machine can connect (--host 0.0.0.0 to open it)", flush=True)
    else:
        print(f"img2num: listening on {config.host}: other machines can connect; the API has no authentication", flush=True)
    print("img2num: the page is at /, the API documentation at /docs; Ctrl-C stops", flush=True)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has finished the open requests and raises Ctrl-C again: a normal stop
    print("img2num: stopped", flush=True)


@contextmanager
def serving(run: Run | str | Path, config: ServeConfig | None = None) -> Iterator[str]:
    """Serve a run from a background thread for the duration of a `with` block.

    Args:
        run: A `Run` or the path of a run folder.
        config: Address, limits and batching; use port 0 for a free port.

    Yields:
        The server's base URL, such as `http://127.0.0.1:8000`.
    """
    config = config or ServeConfig()
    sock = _listen(config)
    try:
        server = _uvicorn_server(create_app(run, config), config)
    except BaseException:
        sock.close()
        raise
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="img2num-server", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise Img2NumError(f"the server at {_url(sock)} did not start")
            time.sleep(0.01)
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def multipart_body(files: list[tuple[str, bytes]], field: str = "file") -> tuple[bytes, str]:
    """Encode image files as a multipart form, for clients with only the standard library.

    Returns:
        The body and its Content-Type header.
    """
    boundary = f"img2num-{secrets.token_hex(16)}"
    parts = []
    for name, data in files:
        safe = name.replace('"', "_").replace("\r", "_").replace("\n", "_")
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{safe}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts += [header.encode(), data, b"\r\n"]
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
