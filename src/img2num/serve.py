"""Serving a trained run over HTTP: a FastAPI app whose requests are decoded on worker threads
and micro-batched into model calls, the web page at `/`, and a uvicorn server on the loopback
address unless told otherwise. What clients send is checked in `img2num.intake`.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from img2num import intervals
from img2num.batching import MicroBatcher, QueueFull
from img2num.bundle import Run
from img2num.config import PREDICT_BATCH_SIZE, ServeConfig
from img2num.engines import engine_run
from img2num.errors import Img2NumError
from img2num.intake import BodyLimit, HostCheck, disconnected, host_allowed, is_loopback, read_uploads
from img2num.startup import __version__

# Threads that decode uploads: never the event loop's, which must stay free to answer (a small
# PNG may hold 25 million pixels), and few, so that decoded images bound the memory.
DECODE_THREADS = min(4, os.cpu_count() or 1)
# Interval levels the web page asks for, the first the run's calibration can give.
_PAGE_LEVELS = (0.9, 0.8, 0.5)

__all__ = ["Predictor", "create_app", "host_allowed", "multipart_body", "serve", "serving"]


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
        self.decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="img2num-decode")

    def warm_up(self) -> None:
        """Compile the model for every batch shape a call can take: powers of two up to
        `max_batch`, as `Run.predict` pads them up to `PREDICT_BATCH_SIZE`; so no request waits
        for a compilation."""
        largest = min(self.config.max_batch, PREDICT_BATCH_SIZE)
        size = 1
        while True:
            self.run.predict(np.zeros((size, *self.spec.shape), self.spec.dtype))
            if size >= largest:
                break
            size = min(2 * size, largest)

    def decode(self, uploads: list[tuple[str, bytes]]) -> list[np.ndarray | str]:
        """Each upload as the model's input image, or the reason it cannot be used. An image
        whose header shows too many pixels, or a size or band (page) count the run cannot
        take, is refused before its pixels are decoded, as `img2num predict` refuses a file."""
        from img2num.data.conforming import BadImage, conform
        from img2num.data.images import read_image_bytes

        out: list[np.ndarray | str] = []
        for _, data in uploads:
            try:
                out.append(conform(read_image_bytes(data, self.config.max_pixels, self.spec), self.spec))
            except BadImage as error:
                # The pixel limit is the server's option here, not Pillow's setting.
                message = str(error).replace("over Pillow's limit", "over the limit")
                out.append(message.replace("(PIL.Image.MAX_IMAGE_PIXELS)", "(option --max-pixels)"))
        return out

    async def decode_off_loop(self, uploads: list[tuple[str, bytes]]) -> list[np.ndarray | str]:
        """`decode` on one of the decoding threads, awaited by the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.decoder, self.decode, uploads)

    def interval_level(self) -> float | None:
        """The level the web page asks for: the first of `_PAGE_LEVELS` the run's calibration
        can give, or None when it has none."""
        for level in _PAGE_LEVELS if self.run.calibration is not None else ():
            try:
                self.run.interval(np.zeros(0), level)
                return level
            except Img2NumError:
                continue
        return None

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
            "intervals": None
            if self.interval_level() is None
            else {"level": self.interval_level(), "calibration_images": len(run.calibration.scores)},
            "versions": {"img2num": __version__, "keras": keras.__version__, "backend": keras.backend.backend()},
            "trained_with": {key: run.config.get(f"{key}_version") for key in ("img2num", "keras")}
            | {"backend": run.config.get("backend")},
            "limits": asdict(self.config),
        }

    def close(self) -> None:
        self.batcher.close()
        self.decoder.shutdown(wait=True, cancel_futures=True)


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
    run = engine_run(run, config.engine)
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
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)
    app.add_middleware(HostCheck, config=config)  # added last, so it runs first

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        return JSONResponse({"error": str(error.detail)}, error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def client_gone(request, error: ClientDisconnect):
        disconnected(request, error)  # one log line; the answer reaches nobody
        return JSONResponse({"error": "the client disconnected"}, 400)

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
        level = _interval_level(request.query_params.get("interval"), run)
        uploads = await read_uploads(request, config)
        decoded = await predictor.decode_off_loop(uploads)
        good = [item for item in decoded if not isinstance(item, str)]
        bounds: dict[str, list] = {}
        if good:
            try:
                future = predictor.batcher.submit(np.stack(good))
            except QueueFull as error:
                raise HTTPException(503, str(error), headers={"Retry-After": "1"}) from None
            predictions = await asyncio.wrap_future(future)
            if level is not None:
                _, lower, upper = run.interval(predictions, level)
                bounds = {"lower": _finite(lower.tolist()), "upper": _finite(upper.tolist())}
        values = iter(_finite(np.asarray(predictions, np.float64).tolist()) if good else [])
        shares = {key: iter(items) for key, items in bounds.items()}
        results = []
        for (name, _), item in zip(uploads, decoded):
            if isinstance(item, str):
                results.append({"file": name, "error": item})
            else:
                results.append({"file": name, "prediction": next(values)} | {key: next(share) for key, share in shares.items()})
        answer = {"run": run_name(run), "model": run.model_name, "units": run_units(run, config)}
        answer |= ({"interval": level} if level is not None else {}) | {"results": results}
        if good:
            return answer
        first = results[0]
        summary = f"{first['file']}: {first['error']}" if len(results) == 1 else f"none of the {len(results)} images could be used"
        return JSONResponse({"error": summary, **answer}, 422)

    return app


def _interval_level(text: str | None, run: Run) -> float | None:
    """The `interval` query parameter as a level the run can give, or None when absent.

    Raises:
        HTTPException: 422 naming the problem: not a level, no calibration, or a level too
            close to 1 for the calibration's size.
    """
    if text is None:
        return None
    try:
        level = float(text)
    except ValueError:
        level = text
    try:
        intervals.check_level(level)
        intervals.require(run.calibration, None)  # no server path in the answer
        run.interval(np.zeros(0), level)
    except Img2NumError as error:
        raise HTTPException(422, str(error)) from None
    return float(level)


# The page loads nothing from elsewhere: scripts, styles and images come from this server or
# from the files the user chose (blob: URLs).
_PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' blob: data:; connect-src 'self'"
)

_PREDICT_BODY_DOC = {
    "parameters": [
        {"name": "interval", "in": "query", "required": False, "schema": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
         "description": "A level such as 0.9: each prediction also gets `lower` and `upper`, from the run's calibration."},
        {"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "The name of an image sent as the raw body, echoed in the answer."},
    ],
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
        "200": {"description": "One result per image, in order: `prediction` (with `lower` and `upper` "
                "when `?interval=` is given) or `error`."},
        "400": {"description": "A malformed form, or more files than the limit."},
        "421": {"description": "A Host header this server does not answer (see --allowed-hosts)."},
        "413": {"description": "Body over the upload limit."},
        "422": {"description": "No image could be used (`results` says why for each), or a bad `interval`."},
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
        run = engine_run(run, config.engine)
        server = _uvicorn_server(create_app(run, config), config)
    except BaseException:
        sock.close()
        raise
    height, width, channels = run.preprocessing.input_shape
    print(f"img2num: serving run {run_name(run)} ({run.model_name}, {height}x{width}x{channels}) at {_url(sock)}/", flush=True)
    if is_loopback(config.host):
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
