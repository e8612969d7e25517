"""
Replicants: mirror a parent and re-serve the mirror, so machines form trees.

A replicant is a :class:`Client` of its parent plus a :class:`Server` whose source is
the client's :class:`NetMach` (rpc.md 6.15). Reads are answered locally at every level;
writes and remote waits from downstream become upstream calls (the parent's reply
updates the mirror, and so the downstream reply, before it is sent).

Rules:

- Cycles are refused: the client sends its mirror's id in HELLO ``via``; a server whose
  lineage (its source and everything that source mirrors) contains it answers ERROR
  ``cycle``, which the replicant raises as :class:`CycleError`.
- While the upstream is down the mirror keeps its last clock and is marked stale
  (``netmach.up`` is False, and ``up: false`` travels downstream); on reconnect the
  parent sends a full clock, which reaches the children as a delta, or as a full
  clock when the root's lineage changed (a new epoch).
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Self

from ._client import Client
from ._netmach import NetMach
from ._server import Server

__all__ = ("Replicant",)


class Replicant:
    """
    Mirror the machine served at *parent_addr* and serve the mirror on *listen*.

    Args:
        parent_addr: ``(host, port)`` of the parent (a server or another replicant).
        listen: ``(host, port)`` to serve on; port 0 picks a free one (``rep.addr``).
        token: the parent's token; also required from this replicant's own clients
            unless *serve_token* is given.
        push_interval: push interval of the re-served mirror (seconds).
        id: the replicant's client id (random by default).
        ssl_context: TLS context for the upstream connection.
        serve_token: the token this replicant's clients must present.
        serve_ssl_context: TLS context for serving.
        client_options: further :class:`Client` options (timeouts, retry policies).
    """

    def __init__(
        self,
        parent_addr: tuple[str, int],
        *,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        token: str | None = None,
        push_interval: float | None = 0.25,
        id: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        serve_token: str | None = None,
        serve_ssl_context: ssl.SSLContext | None = None,
        **client_options: object,
    ) -> None:
        self.parent_addr = parent_addr
        self.listen = listen
        self.token = token
        self.push_interval = push_interval
        self.serve_token = serve_token if serve_token is not None else token
        self.serve_ssl_context = serve_ssl_context
        self.client = Client(
            parent_addr,
            token=token,
            ssl_context=ssl_context,
            id=id,
            **client_options,  # type: ignore[arg-type]
        )
        # The mirror's id travels upstream in HELLO `via` (cycle detection).
        self.client.via = (f"rnm-{self.client.id}", *self.client.via)
        self._server: Server | None = None

    @property
    def netmach(self) -> NetMach:
        """The mirror of the parent's machine (also what this replicant serves)."""
        return self.client.netmach

    @property
    def server(self) -> Server:
        """The server re-serving the mirror."""
        if self._server is None:
            raise RuntimeError("the replicant is not running")
        return self._server

    @property
    def addr(self) -> tuple[str, int]:
        """The ``(host, port)`` this replicant serves on."""
        return self.server.addr

    async def __aenter__(self) -> Self:
        await self.client.__aenter__()
        try:
            server = Server(
                self.client.netmach,
                self.listen[0],
                self.listen[1],
                token=self.serve_token,
                ssl_context=self.serve_ssl_context,
                push_interval=self.push_interval,
            )
            await server.__aenter__()
        except BaseException as exc:
            await self.client.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._server = server
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        server = self._server
        self._server = None
        try:
            if server is not None:
                await server.__aexit__(exc_type, exc, tb)
        finally:
            await self.client.__aexit__(exc_type, exc, tb)
        return None
