"""What the server takes in from clients, checked before any route runs: the Host rule against
DNS rebinding, the body limit, and image uploads read from a multipart form or a raw body.
"""

from __future__ import annotations

import ipaddress
import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

from img2num.config import ServeConfig

# Names a client may give an image are echoed back, never used as paths; cut to this length.
NAME_CHARS = 200

log = logging.getLogger(__name__)


def host_allowed(host: str | None, config: ServeConfig) -> bool:
    """Whether a request's `Host` header names this server, by the rule of `config.allowed_hosts`.

    A server on a loopback address answers only loopback names (localhost, 127.x.x.x, [::1],
    with any port) and the names allowed; one on any other address answers every name unless
    names are given; "*" allows every name.

    Args:
        host: The Host header (None when the request has none, as HTTP/1.0 allows; browsers
            always send one, so such a request is no rebinding attack and is answered).
        config: The server's address and allowed names.
    """
    allowed = config.allowed_hosts
    if "*" in (allowed or ()) or (allowed is None and not is_loopback(config.host)) or host is None:
        return True
    name = _without_port(host)
    return is_loopback(name) or name in {item.lower().rstrip(".") for item in allowed or ()}


def _without_port(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def is_loopback(name: str) -> bool:
    """Whether a host name or address is this machine's loopback: localhost, 127.x.x.x or ::1."""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostCheck:
    """ASGI middleware answering 421 to a request whose Host header `host_allowed` refuses, so
    that a web page elsewhere whose name is made to point at 127.0.0.1 cannot use the server."""

    def __init__(self, app, config: ServeConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = dict(scope["headers"]).get(b"host")
        host = None if host is None else host.decode("latin-1")
        if host_allowed(host, self.config):
            return await self.app(scope, receive, send)
        shown = host.replace("\r", " ").replace("\n", " ")[:NAME_CHARS]
        names = ", ".join(self.config.allowed_hosts or ())
        if is_loopback(self.config.host):
            answers = "localhost, 127.x.x.x, [::1]" + (f" and {names}" if names else "")
        else:
            answers = names
        message = f"Host {shown} is not allowed: this server answers only {answers}; allow more names with --allowed-hosts"
        return await JSONResponse({"error": message}, 421)(scope, receive, send)


class BodyLimit:
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


async def read_uploads(request: Request, config: ServeConfig) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in a request: every file part of a multipart form, or the
    raw body as one image named by the `name` query parameter. Names are cut to `NAME_CHARS`.

    Raises:
        HTTPException: 400 for a malformed form or more files than `config.max_images`, 422
            for a request without an image.
        ClientDisconnect: The client went away before its body was complete.
    """
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        uploads = await _read_form(request, content_type, config)
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
    return [(request.query_params.get("name", "image")[:NAME_CHARS], body)]


async def _read_form(request: Request, content_type: str, config: ServeConfig) -> list[tuple[str, bytes]]:
    """The file parts of a multipart form, read with python-multipart's streaming parser.

    Starlette's own form reader refuses a part header over 4 KB (a long file name) with a bare
    400; here a part header may be as long as the body limit allows, and the name is cut."""
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise HTTPException(400, "malformed multipart form: its Content-Type names no boundary")
    uploads: list[tuple[str, bytes]] = []
    part: dict = {}
    counts = {"files": 0, "fields": 0}

    def on_part_begin() -> None:
        part.update(headers=[], field=bytearray(), value=bytearray(), data=bytearray(), file=None)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"].append((bytes(part["field"]).lower(), bytes(part["value"])))
        part["field"], part["value"] = bytearray(), bytearray()

    def on_headers_finished() -> None:
        disposition = next((value for field, value in part["headers"] if field == b"content-disposition"), b"")
        _, params = parse_options_header(disposition)
        if b"filename" not in params:  # a plain field: not an image, but bounded all the same
            counts["fields"] += 1
            if counts["fields"] > config.max_images:
                raise HTTPException(400, f"more than {config.max_images} fields in one request (option --max-images)")
            return
        counts["files"] += 1
        if counts["files"] > config.max_images:
            raise HTTPException(400, f"more than {config.max_images} files in one request (option --max-images)")
        part["file"] = (_text(params[b"filename"]) or _text(params.get(b"name", b"")))[:NAME_CHARS]

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part["file"] is not None:
            part["data"] += data[start:end]

    def on_part_end() -> None:
        if part["file"] is not None:
            uploads.append((part["file"], bytes(part["data"])))

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
    }
    try:
        parser = MultipartParser(boundary, callbacks, max_header_size=config.max_upload_bytes)
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except FormParserError as error:
        raise HTTPException(400, f"malformed multipart form ({str(error).splitlines()[0] if str(error) else 'unreadable'})") from None
    return uploads


def _text(value: bytes) -> str:
    """A header parameter as text: UTF-8, as browsers send file names, else Latin-1."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def disconnected(request: Request, error: ClientDisconnect) -> None:
    """Note in one log line that a client went away mid-request (no answer can reach it)."""
    client = request.client
    where = f" ({client.host}:{client.port})" if client else ""
    log.warning("img2num: a client disconnected before its request was complete%s", where)
