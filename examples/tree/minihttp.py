"""
A minimal HTTP/1.1 server and keep-alive client on anyio, enough for the tree demo.

Not a general HTTP implementation: GET/HEAD only, no request bodies beyond a small
``Content-Length``, no chunked encoding, bounded header size. It exists so the demo
needs no web framework; answers come from memory, so one node serves thousands of
requests per second.

(Named ``minihttp`` rather than ``http``: the scripts in this directory run with it on
``sys.path``, where ``http.py`` would shadow the standard library.)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self
from urllib.parse import parse_qs, urlsplit

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

__all__ = ("HttpClient", "HttpError", "Request", "Response", "json_response", "serve")

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 30.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request line: method, path and query parameters."""

    method: str
    path: str
    query: dict[str, list[str]]

    def param(self, name: str, default: str = "") -> str:
        """The first value of query parameter *name*."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(frozen=True, slots=True)
class Response:
    """A response: status, body and content type."""

    status: int
    body: bytes
    content_type: str = "application/json"


def json_response(value: object, status: int = 200) -> Response:
    """*value* as a compact JSON response."""
    return Response(status, json.dumps(value, separators=(",", ":")).encode())


Handler = Callable[[Request], Response]


class HttpError(Exception):
    """A malformed or failed HTTP exchange."""


def _encode(resp: Response, *, keep_alive: bool, head_only: bool = False) -> bytes:
    reason = _REASONS.get(resp.status, "Unknown")
    head = (
        f"HTTP/1.1 {resp.status} {reason}\r\n"
        f"Content-Type: {resp.content_type}\r\n"
        f"Content-Length: {len(resp.body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
        "\r\n"
    ).encode("latin-1")
    return head if head_only else head + resp.body


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HttpError(f"malformed header line {line!r}")
        out[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return out


async def _serve_conn(stream: ByteStream, handler: Handler) -> None:
    reader = BufferedByteReceiveStream(stream)
    async with stream:
        while True:
            try:
                with anyio.fail_after(IDLE_TIMEOUT):
                    head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
                lines = head.split(b"\r\n")
                method_b, target_b, version_b = lines[0].split(b" ", 2)
                headers = _headers(lines[1:])
                length = int(headers.get("content-length", "0"))
                if not 0 <= length <= MAX_BODY:
                    raise HttpError("request body too large")
                if length:
                    await reader.receive_exactly(length)
            except (
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.DelimiterNotFound,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                OSError,
                TimeoutError,
                ValueError,
                HttpError,
            ):
                return
            method = method_b.decode("latin-1")
            version = version_b.decode("latin-1")
            conn = headers.get("connection", "").lower()
            keep_alive = (
                conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
            )
            if method not in ("GET", "HEAD"):
                resp = Response(405, b"only GET and HEAD\n", "text/plain")
            else:
                url = urlsplit(target_b.decode("latin-1"))
                req = Request(method, url.path or "/", parse_qs(url.query))
                try:
                    resp = handler(req)
                except Exception as exc:  # noqa: BLE001 - a bug costs one request
                    resp = Response(500, f"{exc!r}\n".encode(), "text/plain")
            try:
                await stream.send(
                    _encode(resp, keep_alive=keep_alive, head_only=method == "HEAD")
                )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return
            if not keep_alive:
                return


async def _accept(listener: SocketListener, handler: Handler) -> None:
    async with anyio.create_task_group() as tg:
        while True:
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError):
                await anyio.sleep(0.1)  # EMFILE and friends: never spin
                continue
            tg.start_soon(_serve_conn, stream, handler)


async def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve *handler* on ``host:port`` until cancelled; reports the bound port."""
    multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
    listeners = [lst for lst in multi.listeners if isinstance(lst, SocketListener)]
    async with multi:
        bound = int(listeners[0].extra(SocketAttribute.local_address)[1])
        task_status.started(bound)
        async with anyio.create_task_group() as tg:
            for lst in listeners:
                tg.start_soon(_accept, lst, handler)


class HttpClient:
    """
    One keep-alive connection to ``host:port`` that reconnects when needed.

    Use as ``async with HttpClient(host, port) as c: status, body = await c.get("/")``.
    """

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self._stream: ByteStream | None = None
        self._reader: BufferedByteReceiveStream | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection (the next request opens a new one)."""
        stream, self._stream, self._reader = self._stream, None, None
        if stream is not None:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await stream.aclose()

    async def get(self, path: str) -> tuple[int, bytes]:
        """``GET path``: the status and the body.

        Raises:
            HttpError: the connection failed or the reply was malformed (the
                connection is closed; the next call reconnects).
        """
        try:
            with anyio.fail_after(self.timeout):
                return await self._get(path)
        except HttpError:
            await self.aclose()
            raise
        except (
            OSError,
            TimeoutError,
            ValueError,
            anyio.EndOfStream,
            anyio.IncompleteRead,
            anyio.DelimiterNotFound,
            anyio.BrokenResourceError,
            anyio.ClosedResourceError,
        ) as exc:
            await self.aclose()
            raise HttpError(f"GET {path} on :{self.port}: {exc!r}") from exc

    async def get_json(self, path: str) -> object:
        """``GET path`` and decode a 200 JSON reply."""
        status, body = await self.get(path)
        if status != 200:
            raise HttpError(f"GET {path} on :{self.port}: status {status}")
        return json.loads(body)

    async def _get(self, path: str) -> tuple[int, bytes]:
        if self._stream is None:
            self._stream = await anyio.connect_tcp(self.host, self.port)
            self._reader = BufferedByteReceiveStream(self._stream)
        stream, reader = self._stream, self._reader
        assert reader is not None
        await stream.send(
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        )
        head = await reader.receive_until(b"\r\n\r\n", MAX_HEAD)
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"malformed status line {lines[0]!r}")
        status = int(parts[1])
        headers = _headers(lines[1:])
        if "content-length" not in headers:
            raise HttpError("reply without Content-Length")
        body = await reader.receive_exactly(int(headers["content-length"]))
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, body
