"""State schemas of the RPC machines (names as in the Go original, rpc.md 1.11)."""

from __future__ import annotations

from typing import Final

from .._core._schema import State

__all__ = ("CLIENT_SCHEMA", "SERVER_SCHEMA", "SESSION_SCHEMA", "STATE_SOURCE_SCHEMA")

#: Mix into a served machine's schema so clients can flag their errors on it.
STATE_SOURCE_SCHEMA: Final = {"ErrOnClient": State(require=["Exception"])}

_ERRORS: Final = {
    "ErrNetwork": State(require=["Exception"]),
    "ErrNetworkTimeout": State(require=["Exception"]),
    "ErrRpc": State(require=["Exception"]),
    "ErrDelivery": State(require=["Exception"]),
}

_CONN_GROUP: Final = ("Connecting", "Connected", "Disconnecting", "Disconnected")


def _excl(name: str, group: tuple[str, ...]) -> list[str]:
    return [s for s in group if s != name]


#: The client's own machine (``client.mach``).
CLIENT_SCHEMA: Final = {
    "Start": State(),
    "Connecting": State(require=["Start"], remove=_excl("Connecting", _CONN_GROUP)),
    "Connected": State(
        require=["Start"], remove=[*_excl("Connected", _CONN_GROUP), "RetryingConn"]
    ),
    "Disconnecting": State(remove=_excl("Disconnecting", _CONN_GROUP)),
    "Disconnected": State(remove=_excl("Disconnected", _CONN_GROUP)),
    "Handshaking": State(require=["Start", "Connected"], remove=["HandshakeDone"]),
    "HandshakeDone": State(require=["Start", "Connected"], remove=["Handshaking"]),
    "Ready": State(auto=True, require=["HandshakeDone"]),
    "RetryingCall": State(require=["Start"]),
    "CallRetryFailed": State(remove=["RetryingCall"]),
    "RetryingConn": State(require=["Start"]),
    "ConnRetryFailed": State(remove=["Start"]),
    "ServerPayload": State(multi=True, require=["Connected"]),
    "MetricSync": State(multi=True),
    **_ERRORS,
}

#: The listener's machine (``server.mach``).
SERVER_SCHEMA: Final = {
    "Start": State(),
    "Ready": State(require=["Start"]),
    "ClientConnected": State(multi=True, require=["Start"]),
    "HasClients": State(require=["Start"]),
    **_ERRORS,
}

#: One machine per client session (``session.mach``).
SESSION_SCHEMA: Final = {
    "Start": State(),
    "ClientConnected": State(require=["Start"]),
    "Handshaking": State(require=["ClientConnected"], remove=["HandshakeDone"]),
    "HandshakeDone": State(require=["ClientConnected"], remove=["Handshaking"]),
    "Ready": State(auto=True, require=["HandshakeDone"]),
    "MetricSync": State(multi=True),
    **_ERRORS,
}
