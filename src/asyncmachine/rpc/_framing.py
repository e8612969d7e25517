"""
Length-prefixed frames of ``amrp/1``: bytes in, ``(kind, seq, re, body)`` tuples out.

Theory of operation
===================

A frame is a 4-byte big-endian unsigned length followed by that many bytes of msgpack,
which must decode to an array ``[kind, seq, re, body]``::

    +----------------------+--------------------------------------------+
    | length: uint32 (BE)  | msgpack array [kind, seq, re, body]        |
    +----------------------+--------------------------------------------+

This module knows the shape of a frame and nothing of its meaning: which kinds exist,
who may send them and how ``seq``/``re`` progress is :mod:`._protocol`'s business.

Rules the decoder lives by:

1. A length of 0 is fatal (``proto``); a length above the receiver's ``max_frame`` is
   fatal (``too_big``) and is reported as soon as the 4 header bytes are buffered,
   *before* any of the body arrives. The body of a refused frame is never buffered on
   purpose, so a peer cannot make us hold more than we agreed to.
2. Invariant: once :meth:`FrameDecoder.next_frame` has returned ``None``, the buffer
   holds at most one incomplete frame, i.e. fewer than ``4 + max_frame`` bytes. The
   transport is expected to feed one read's worth of bytes, then drain frames until
   ``None``, so memory per connection is bounded by ``4 + max_frame`` plus one read.
3. A frame is decoded only once all of it is buffered, in one call of
   :func:`._codec.unpackb`: msgpack's own limits scale with that length, so a lying
   array or string header inside the frame cannot allocate more than the frame.
4. Decoding errors do not consume the frame: calling :meth:`~FrameDecoder.next_frame`
   again raises the same error. The decoder has no other error state; the connection
   above it makes errors sticky.
5. The shape check is strict: exactly 4 items; ``kind``, ``seq`` and ``re`` are
   non-negative ints (``bool`` is not an int here); ``body`` is a map. The codec has
   already guaranteed that every map key anywhere in the frame is a ``str``.

Encoding mirrors this: :func:`encode_frame` packs the array and refuses
(:exc:`~asyncmachine.rpc.FrameTooLarge`) a payload above the *peer's* ``max_frame``.
"""

from __future__ import annotations

import struct
from typing import Final

from ._codec import packb, unpackb
from ._errors import FrameTooLarge, RemoteProtocolError

__all__ = (
    "HEADER_SIZE",
    "MAX_FRAME",
    "MAX_FRAME_LIMIT",
    "FrameDecoder",
    "check_max_frame",
    "encode_frame",
)

#: Default largest frame payload (msgpack bytes, excluding the 4-byte header): 1 MiB.
MAX_FRAME: Final = 1 << 20
#: Largest ``max_frame`` either side may configure or announce: 64 MiB.
MAX_FRAME_LIMIT: Final = 64 << 20
#: Size of the length prefix.
HEADER_SIZE: Final = 4

_HEADER = struct.Struct(">I")

#: A decoded frame: ``(kind, seq, re, body)``.
Frame = tuple[int, int, int, dict[str, object]]


def check_max_frame(max_frame: int) -> int:
    """
    Validate a ``max_frame`` setting.

    Args:
        max_frame: the proposed limit in bytes.

    Returns:
        *max_frame*, unchanged.

    Raises:
        ValueError: unless ``1 <= max_frame <= MAX_FRAME_LIMIT``.
    """
    if (
        not isinstance(max_frame, int)
        or isinstance(max_frame, bool)
        or not 1 <= max_frame <= MAX_FRAME_LIMIT
    ):
        msg = f"max_frame must be an int in [1, {MAX_FRAME_LIMIT}], got {max_frame!r}"
        raise ValueError(msg)
    return max_frame


def encode_frame(
    kind: int, seq: int, re: int, body: dict[str, object], *, max_frame: int
) -> bytes:
    """
    Encode one frame, length prefix included.

    Args:
        kind: the frame kind code.
        seq: the frame's sequence number.
        re: the ``seq`` of the frame this one answers, or 0.
        body: the body map.
        max_frame: the receiver's limit on the msgpack payload, in bytes.

    Returns:
        ``length (4 bytes, big-endian) + msgpack([kind, seq, re, body])``.

    Raises:
        TypeError: if *body* holds a value msgpack cannot carry (see :mod:`._codec`).
        FrameTooLarge: if the payload is longer than *max_frame*.
    """
    payload = packb([kind, seq, re, body])
    if len(payload) > max_frame:
        msg = (
            f"frame of {len(payload)} bytes exceeds the peer's max frame "
            f"of {max_frame} bytes"
        )
        raise FrameTooLarge(msg)
    return _HEADER.pack(len(payload)) + payload


def _is_uint(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_shape(obj: object) -> Frame:
    if not isinstance(obj, list) or len(obj) != 4:
        what = f"array of {len(obj)}" if isinstance(obj, list) else type(obj).__name__
        msg = f"a frame must be an array [kind, seq, re, body], got {what}"
        raise RemoteProtocolError(msg, "proto")
    kind, seq, re, body = obj
    for name, value in (("kind", kind), ("seq", seq), ("re", re)):
        if not _is_uint(value):
            msg = f"frame {name} must be a non-negative int, got {value!r:.40}"
            raise RemoteProtocolError(msg, "proto")
    if not isinstance(body, dict):
        msg = f"frame body must be a map, got {type(body).__name__}"
        raise RemoteProtocolError(msg, "proto")
    return kind, seq, re, body


class FrameDecoder:
    """
    Split a byte stream into frames, holding at most one incomplete frame.

    Args:
        max_frame: the largest payload accepted, in bytes (``1..MAX_FRAME_LIMIT``).

    Raises:
        ValueError: if *max_frame* is out of range.
    """

    __slots__ = ("_buf", "_max_frame", "_pos")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._max_frame = check_max_frame(max_frame)
        self._buf = bytearray()
        # Invariant: self._pos <= len(self._buf); bytes before it are consumed.
        self._pos = 0

    @property
    def max_frame(self) -> int:
        """The largest payload this decoder accepts, in bytes."""
        return self._max_frame

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """
        Append received bytes; nothing is parsed until :meth:`next_frame`.

        Args:
            data: the next bytes of the stream (may be empty).
        """
        self._buf += data

    def _compact(self) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0

    def next_frame(self) -> Frame | None:
        """
        Return the next complete frame, or ``None`` if more bytes are needed.

        Returns:
            ``(kind, seq, re, body)``, or ``None``.

        Raises:
            RemoteProtocolError: (code ``too_big``) if the next frame's length exceeds
                :attr:`max_frame`, before its body is received; (code ``proto``) for
                a zero length, bytes that are not exactly one allowed msgpack value,
                or a value that is not ``[kind, seq, re, body]`` as described in the
                module docstring.
        """
        available = len(self._buf) - self._pos
        if available < HEADER_SIZE:
            self._compact()
            return None
        (length,) = _HEADER.unpack_from(self._buf, self._pos)
        if length == 0:
            msg = "frame length is 0"
            raise RemoteProtocolError(msg, "proto")
        if length > self._max_frame:
            msg = (
                f"frame of {length} bytes exceeds max frame of {self._max_frame} bytes"
            )
            raise RemoteProtocolError(msg, "too_big")
        end = self._pos + HEADER_SIZE + length
        if len(self._buf) < end:
            self._compact()
            return None
        frame = _check_shape(unpackb(self._buf[self._pos + HEADER_SIZE : end]))
        if end == len(self._buf):
            self._buf.clear()
            self._pos = 0
        else:
            self._pos = end
        return frame
