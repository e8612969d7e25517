"""The msgpack codec: what may travel, and how malformed input is refused."""

from __future__ import annotations

import math

import msgpack  # type: ignore[import-untyped]  # no stubs; only used to craft input
import pytest
from hypothesis import given, strategies as st

from asyncmachine.rpc._codec import MAX_DEPTH, packb, unpackb
from asyncmachine.rpc._errors import RemoteProtocolError


def _nest(depth: int) -> object:
    value: object = 0
    for _ in range(depth - 1):
        value = [value]
    return [value] if depth else value


class TestPackb:
    @pytest.mark.parametrize(
        "value",
        [
            pytest.param(None, id="nil"),
            pytest.param(True, id="bool"),
            pytest.param(-(1 << 63), id="int-min"),
            pytest.param((1 << 64) - 1, id="int-max"),
            pytest.param(1.5, id="float"),
            pytest.param("zażółć", id="str"),
            pytest.param(b"\x00\xff", id="bytes"),
            pytest.param([1, "a", None, [b"x"]], id="list"),
            pytest.param({"a": {"b": [1, 2.0]}, "": None}, id="map"),
        ],
    )
    def test_round_trip(self, value: object) -> None:
        assert unpackb(packb(value)) == value

    def test_tuple_encodes_as_list(self) -> None:
        assert unpackb(packb((1, (2, 3)))) == [1, [2, 3]]

    def test_bytes_use_bin_type(self) -> None:
        """Bytes go out as msgpack bin (0xc4), so they come back as bytes, not str."""
        assert packb(b"ab") == b"\xc4\x02ab"
        assert packb("ab") == b"\xa2ab"

    def test_bool_is_not_an_int(self) -> None:
        assert unpackb(packb([True, 1])) == [True, 1]
        assert type(unpackb(packb(True))) is bool

    def test_int_subclass_encodes_as_int(self) -> None:
        class Code(int):
            pass

        assert unpackb(packb(Code(5))) == 5

    @pytest.mark.parametrize(
        ("value", "match"),
        [
            pytest.param({1, 2}, "type 'set'", id="set"),
            pytest.param(object(), "type 'object'", id="object"),
            pytest.param(bytearray(b"x"), "type 'bytearray'", id="bytearray"),
            pytest.param({1: "a"}, "map keys must be str", id="int-key"),
            pytest.param({b"k": "a"}, "map keys must be str", id="bytes-key"),
            pytest.param({"a": [{None: 1}]}, "map keys must be str", id="nested-key"),
            pytest.param(1 << 64, "outside the msgpack range", id="int-too-big"),
            pytest.param(
                -(1 << 63) - 1, "outside the msgpack range", id="int-too-small"
            ),
            pytest.param(["\ud800"], "cannot encode value", id="lone-surrogate"),
            pytest.param(_nest(MAX_DEPTH + 1), "nests more than", id="too-deep"),
        ],
    )
    def test_refuses(self, value: object, match: str) -> None:
        with pytest.raises(TypeError, match=match):
            packb(value)

    def test_max_depth_is_allowed(self) -> None:
        assert unpackb(packb(_nest(MAX_DEPTH))) == _nest(MAX_DEPTH)

    def test_self_reference_fails_fast(self) -> None:
        loop: list[object] = []
        loop.append(loop)
        loop.append(loop)
        with pytest.raises(TypeError, match="nests more than"):
            packb(loop)


class TestUnpackb:
    @pytest.mark.parametrize(
        ("data", "match"),
        [
            pytest.param(b"", "malformed msgpack", id="empty"),
            pytest.param(b"\x92\x01", "malformed msgpack", id="truncated"),
            pytest.param(b"\x01\x02", "trailing bytes", id="trailing"),
            pytest.param(b"\xc1", "malformed msgpack", id="reserved-byte"),
            pytest.param(b"\xa2\xff\xfe", "malformed msgpack", id="bad-utf8"),
            pytest.param(b"\xdd\xff\xff\xff\xff", "malformed msgpack", id="huge-array"),
            pytest.param(b"\xd4\x05\x00", "extension type 5", id="ext"),
            pytest.param(b"\x81\x01\x02", "malformed msgpack", id="int-key"),
            pytest.param(b"\x81\xc4\x01k\x02", "map key of type bytes", id="bytes-key"),
            pytest.param(b"\x91" * 2000 + b"\x00", "malformed msgpack", id="stack"),
        ],
    )
    def test_refuses(self, data: bytes, match: str) -> None:
        with pytest.raises(RemoteProtocolError, match=match) as info:
            unpackb(data)
        assert info.value.code == "proto"

    def test_refuses_timestamp(self) -> None:
        """Timestamps (ext -1) bypass msgpack's ext_hook; they are refused anyway."""
        data = msgpack.packb([msgpack.Timestamp(1, 0)])
        with pytest.raises(RemoteProtocolError, match="type Timestamp"):
            unpackb(data)

    def test_refuses_bytes_key_deep_inside(self) -> None:
        data = msgpack.packb({"a": [{"b": {b"k": 1}}]}, use_bin_type=True)
        with pytest.raises(RemoteProtocolError, match="map key of type bytes"):
            unpackb(data)

    def test_refuses_nesting_beyond_max_depth(self) -> None:
        data = b"\x91" * MAX_DEPTH + b"\x00"
        assert unpackb(data) == _nest(MAX_DEPTH)
        with pytest.raises(RemoteProtocolError, match="nests more than"):
            unpackb(b"\x91" + data)

    def test_accepts_bytearray(self) -> None:
        assert unpackb(bytearray(b"\x92\x01\xa1x")) == [1, "x"]


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


def _normalise(value: object) -> object:
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    return value


@given(_values)
def test_round_trip_property(value: object) -> None:
    """Every allowed value survives a round trip, tuples turning into lists."""
    assert unpackb(packb(value)) == _normalise(value)


def test_nan_round_trips() -> None:
    out = unpackb(packb(math.nan))
    assert isinstance(out, float)
    assert math.isnan(out)
