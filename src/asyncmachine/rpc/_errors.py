"""
Exceptions of :mod:`asyncmachine.rpc`.

Every error derives from :class:`RpcError` (itself an ``am.AsyncMachineError``). Each
family also inherits the builtin it resembles (``ConnectionError``, ``TimeoutError``).
"""

from __future__ import annotations

from .._errors import AsyncMachineError

__all__ = (
    "AuthError",
    "CycleError",
    "DestinationMismatch",
    "FrameTooLarge",
    "LocalProtocolError",
    "NoConsumer",
    "NotConnected",
    "OutcomeUnknown",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "RemoteTimeout",
    "RpcConnectionError",
    "RpcError",
    "SchemaMismatch",
    "VersionMismatch",
    "WaitInterrupted",
)


class RpcError(AsyncMachineError):
    """Base class of every aRPC error."""


class ProtocolError(RpcError):
    """
    The byte stream broke the protocol; the connection cannot go on.

    Attributes:
        code: the protocol error code sent to (or received from) the peer
            (``proto``, ``too_big``, ``version``, ...).
    """

    def __init__(self, msg: str, code: str = "proto") -> None:
        super().__init__(msg)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We were asked to send something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol does not allow."""


class FrameTooLarge(LocalProtocolError):
    """An outgoing frame exceeds the peer's maximum frame size; nothing was sent."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, "too_big")


class RpcConnectionError(RpcError, ConnectionError):
    """The server could not be reached, or the connection was lost for good."""


class NotConnected(RpcConnectionError):
    """The operation needs a live, handshaken connection."""


class AuthError(RpcError):
    """The server refused the token (or the client id)."""


class VersionMismatch(RpcError):
    """Client and server share no protocol version."""


class SchemaMismatch(RpcError):
    """The schemas of the two sides do not match (strict schema policy)."""


class CycleError(RpcError):
    """A replicant would connect to itself through its chain."""


class RemoteTimeout(RpcError, TimeoutError):
    """A remote call got no answer in time (its outcome is unknown)."""


class OutcomeUnknown(RpcError):
    """The server restarted while a request was in flight; it may or may not have run."""


class WaitInterrupted(RpcError):
    """The connection was lost while a remote wait was pending."""


class DestinationMismatch(RpcError):
    """A payload names a different client than the connected one."""


class NoConsumer(RpcError):
    """The client has no consumer for payloads."""


class RemoteError(RpcError):
    """
    An error reported by the other side.

    Attributes:
        code: the remote error code.
    """

    def __init__(self, msg: str, code: str = "internal") -> None:
        super().__init__(msg)
        self.code = code
