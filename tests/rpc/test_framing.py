"""Length-prefixed framing: encoding, splitting, bounds and shape checks."""

from __future__ import annotations

import struct

import msgpack  # type: ignore[import-untyped]  # no stubs; only used to craft input
import pytest

from asyncmachine.rpc._errors import FrameTooLarge, RemoteProtocolError
from asyncmachine.rpc._framing import (
    HEADER_SIZE,
    MAX_FRAME,
    MAX_FRAME_LIMIT,
    FrameDecoder,
    check_max_frame,
    encode_frame,
)


def raw(payload: bytes) -> bytes:
    """A frame with a correct length prefix around arbitrary *payload*."""
    return struct.pack(">I", len(payload)) + payload


def packed(obj: object) -> bytes:
    """A frame around msgpack *obj*, packed without any of our checks."""
    return raw(msgpack.packb(obj, use_bin_type=True))


PING = encode_frame(8, 1, 0, {"t": 1}, max_frame=MAX_FRAME)
SYNC = encode_frame(5, 2, 0, {}, max_frame=MAX_FRAME)
RESULT = encode_frame(9, 3, 7, {"res": 1, "data": "x" * 300}, max_frame=MAX_FRAME)
STREAM = PING + SYNC + RESULT
FRAMES = [
    (8, 1, 0, {"t": 1}),
    (5, 2, 0, {}),
    (9, 3, 7, {"res": 1, "data": "x" * 300}),
]


def drain(decoder: FrameDecoder) -> list[tuple[int, int, int, dict[str, object]]]:
    out = []
    while (frame := decoder.next_frame()) is not None:
        out.append(frame)
    return out


class TestEncodeFrame:
    def test_exact_bytes(self) -> None:
        """Big-endian uint32 length of the msgpack payload, then the payload."""
        expected = bytes.fromhex("00000008 94 08 01 00 81 a1 74 01")
        assert encode_frame(8, 1, 0, {"t": 1}, max_frame=MAX_FRAME) == expected

    def test_length_counts_payload_only(self) -> None:
        (length,) = struct.unpack(">I", RESULT[:HEADER_SIZE])
        assert length == len(RESULT) - HEADER_SIZE

    def test_too_large(self) -> None:
        size = len(PING) - HEADER_SIZE
        assert encode_frame(8, 1, 0, {"t": 1}, max_frame=size) == PING
        with pytest.raises(FrameTooLarge, match="exceeds the peer's max frame") as info:
            encode_frame(8, 1, 0, {"t": 1}, max_frame=size - 1)
        assert info.value.code == "too_big"

    def test_refuses_unencodable_body(self) -> None:
        with pytest.raises(TypeError, match="type 'set'"):
            encode_frame(4, 1, 0, {"a": {1}}, max_frame=MAX_FRAME)


class TestFrameDecoder:
    def test_one_chunk_many_frames(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(STREAM)
        assert drain(decoder) == FRAMES
        assert decoder.buffered == 0

    def test_byte_by_byte(self) -> None:
        decoder = FrameDecoder()
        out = []
        for i in range(len(STREAM)):
            decoder.feed(STREAM[i : i + 1])
            out.extend(drain(decoder))
        assert out == FRAMES

    @pytest.mark.parametrize("cut", [1, 3, 4, 5, len(PING), len(PING) + 2, 200])
    def test_split_anywhere(self, cut: int) -> None:
        decoder = FrameDecoder()
        decoder.feed(STREAM[:cut])
        first = drain(decoder)
        consumed = complete = 0
        for frame in (PING, SYNC, RESULT):
            if consumed + len(frame) > cut:
                break
            consumed += len(frame)
            complete += 1
        assert first == FRAMES[:complete]
        assert decoder.buffered == cut - consumed
        decoder.feed(STREAM[cut:])
        assert first + drain(decoder) == FRAMES

    def test_partial_header_needs_data(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(PING[:3])
        assert decoder.next_frame() is None
        assert decoder.buffered == 3

    def test_buffered_is_the_incomplete_tail(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(PING + SYNC[:5])
        assert drain(decoder) == FRAMES[:1]
        assert decoder.buffered == 5

    def test_accepts_memoryview_and_bytearray(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(memoryview(PING))
        decoder.feed(bytearray(SYNC))
        assert drain(decoder) == FRAMES[:2]

    def test_zero_length(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(b"\x00\x00\x00\x00")
        with pytest.raises(RemoteProtocolError, match="frame length is 0") as info:
            decoder.next_frame()
        assert info.value.code == "proto"

    def test_oversize_refused_before_the_body(self) -> None:
        """Only the 4 header bytes are needed to refuse an oversized frame."""
        decoder = FrameDecoder(max_frame=16)
        decoder.feed(struct.pack(">I", 17))
        with pytest.raises(RemoteProtocolError, match="17 bytes exceeds") as info:
            decoder.next_frame()
        assert info.value.code == "too_big"
        assert decoder.buffered == HEADER_SIZE

    def test_huge_length_refused(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(b"\xff\xff\xff\xff")
        with pytest.raises(
            RemoteProtocolError, match="4294967295 bytes exceeds max frame"
        ):
            decoder.next_frame()

    def test_exactly_max_frame_is_accepted(self) -> None:
        size = len(PING) - HEADER_SIZE
        decoder = FrameDecoder(max_frame=size)
        decoder.feed(PING)
        assert decoder.next_frame() == FRAMES[0]

    def test_incomplete_frame_stays_bounded(self) -> None:
        """A frame trickling in never makes the buffer exceed 4 + max_frame."""
        max_frame = 64
        frame = encode_frame(8, 1, 0, {"t": "x" * 50}, max_frame=max_frame)
        decoder = FrameDecoder(max_frame=max_frame)
        for i in range(len(frame) - 1):
            decoder.feed(frame[i : i + 1])
            assert decoder.next_frame() is None
            assert decoder.buffered <= HEADER_SIZE + max_frame
        decoder.feed(frame[-1:])
        assert decoder.next_frame() is not None

    def test_error_is_repeated_and_does_not_consume(self) -> None:
        decoder = FrameDecoder()
        decoder.feed(packed([1, 2, 3]) + PING)
        for _ in range(2):
            with pytest.raises(RemoteProtocolError, match="array of 3"):
                decoder.next_frame()

    @pytest.mark.parametrize(
        ("frame", "match"),
        [
            pytest.param(packed({"k": 1}), "got dict", id="map"),
            pytest.param(packed(7), "got int", id="int"),
            pytest.param(packed([1, 1, 0]), "array of 3", id="three-items"),
            pytest.param(packed([1, 1, 0, {}, 0]), "array of 5", id="five-items"),
            pytest.param(packed(["1", 1, 0, {}]), "kind must be", id="str-kind"),
            pytest.param(packed([True, 1, 0, {}]), "kind must be", id="bool-kind"),
            pytest.param(packed([1.0, 1, 0, {}]), "kind must be", id="float-kind"),
            pytest.param(packed([1, -1, 0, {}]), "seq must be", id="negative-seq"),
            pytest.param(packed([1, 1, None, {}]), "re must be", id="nil-re"),
            pytest.param(packed([1, 1, 0, []]), "body must be a map", id="list-body"),
            pytest.param(packed([1, 1, 0, None]), "body must be a map", id="nil-body"),
            pytest.param(packed([1, 1, 0, {1: 2}]), "malformed", id="int-key"),
            pytest.param(raw(b"\x94\x01\x01\x00\x80\x00"), "trailing", id="trailing"),
            pytest.param(raw(b"\x94\x01\x01\x00"), "malformed", id="truncated-array"),
            pytest.param(raw(b"\xd4\x01\x00"), "extension type", id="ext"),
        ],
    )
    def test_shape_errors(self, frame: bytes, match: str) -> None:
        decoder = FrameDecoder()
        decoder.feed(frame)
        with pytest.raises(RemoteProtocolError, match=match) as info:
            decoder.next_frame()
        assert info.value.code == "proto"


class TestMaxFrame:
    @pytest.mark.parametrize("value", [1, MAX_FRAME, MAX_FRAME_LIMIT])
    def test_valid(self, value: int) -> None:
        assert check_max_frame(value) == value
        assert FrameDecoder(value).max_frame == value

    @pytest.mark.parametrize("value", [0, -1, MAX_FRAME_LIMIT + 1, True])
    def test_invalid(self, value: int) -> None:
        with pytest.raises(ValueError, match="max_frame must be"):
            FrameDecoder(value)

    def test_defaults(self) -> None:
        assert MAX_FRAME == 1 << 20
        assert MAX_FRAME_LIMIT == 64 << 20
        assert FrameDecoder().max_frame == MAX_FRAME
