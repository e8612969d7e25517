"""
aRPC: serve a machine over TCP, mirror it in other processes, mutate and wait remotely.

``async with am.rpc.serve(mach) as server:`` exposes a machine; ``async with
am.rpc.Client(server.addr) as client:`` mirrors it as ``client.netmach`` (local reads
and waits, remote mutations). The wire protocol is documented in ``docs/protocol.md``.
"""

from __future__ import annotations

from ._client import Client as Client, RetryPolicy as RetryPolicy
from ._errors import (
    AuthError as AuthError,
    CycleError as CycleError,
    DestinationMismatch as DestinationMismatch,
    FrameTooLarge as FrameTooLarge,
    LocalProtocolError as LocalProtocolError,
    NoConsumer as NoConsumer,
    NotConnected as NotConnected,
    OutcomeUnknown as OutcomeUnknown,
    ProtocolError as ProtocolError,
    RemoteError as RemoteError,
    RemoteProtocolError as RemoteProtocolError,
    RemoteTimeout as RemoteTimeout,
    RpcConnectionError as RpcConnectionError,
    RpcError as RpcError,
    SchemaMismatch as SchemaMismatch,
    VersionMismatch as VersionMismatch,
    WaitInterrupted as WaitInterrupted,
)
from ._events import Payload as Payload
from ._netmach import NetMach as NetMach
from ._replicant import Replicant as Replicant
from ._server import Server as Server, Session as Session, serve as serve
from ._states import (
    CLIENT_SCHEMA as CLIENT_SCHEMA,
    SERVER_SCHEMA as SERVER_SCHEMA,
    SESSION_SCHEMA as SESSION_SCHEMA,
    STATE_SOURCE_SCHEMA as STATE_SOURCE_SCHEMA,
)

__all__ = (
    "CLIENT_SCHEMA",
    "SERVER_SCHEMA",
    "SESSION_SCHEMA",
    "STATE_SOURCE_SCHEMA",
    "AuthError",
    "Client",
    "CycleError",
    "DestinationMismatch",
    "FrameTooLarge",
    "LocalProtocolError",
    "NetMach",
    "NoConsumer",
    "NotConnected",
    "OutcomeUnknown",
    "Payload",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "RemoteTimeout",
    "Replicant",
    "RetryPolicy",
    "RpcConnectionError",
    "RpcError",
    "SchemaMismatch",
    "Server",
    "Session",
    "VersionMismatch",
    "WaitInterrupted",
    "serve",
)
