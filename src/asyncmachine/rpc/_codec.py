"""
The msgpack codec of ``amrp/1``: the only module of asyncmachine that imports msgpack.

A value may travel on the wire when it is built only from ``None``, ``bool``, ``int``
(in msgpack's range, ``-2**63`` to ``2**64 - 1``), ``float``, ``str``, ``bytes``,
``list`` (a ``tuple`` encodes as a list) and ``dict`` with ``str`` keys, nested at most
:data:`MAX_DEPTH` containers deep. Anything else is refused: by :func:`packb` with
:exc:`TypeError` before a byte is produced, and by :func:`unpackb` with
:exc:`~asyncmachine.rpc.RemoteProtocolError` (code ``proto``). Decoding never returns
an extension type, a timestamp or a ``bytes`` map key.
"""

from __future__ import annotations

from typing import NoReturn

# msgpack ships neither stubs nor py.typed; this module pins down every type it returns.
import msgpack  # type: ignore[import-untyped]

from ._errors import RemoteProtocolError

__all__ = ("MAX_DEPTH", "packb", "unpackb")

#: Most containers (lists and maps) a value may nest, counting the outermost one. A
#: frame uses two levels itself (the frame array and its body map).
MAX_DEPTH = 100

_INT_MIN = -(1 << 63)
_INT_MAX = (1 << 64) - 1
_SCALARS = (bool, int, float, str, bytes)


class _ExtTypeRejected(Exception):
    """Raised by the ext hook; never leaves this module."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _reject_ext(code: int, data: bytes) -> NoReturn:
    raise _ExtTypeRejected(code)


#: Exact types that need no further look (the common case, checked by identity).
_PLAIN: frozenset[type] = frozenset({str, float, bytes, bool, type(None)})


def _check_encodable(obj: object) -> None:
    # Iterative on purpose: a self-referencing list reaches MAX_DEPTH along its first
    # path and fails at once, without recursion. Scalars of the exact plain types are
    # settled inline, so only containers and unusual values go through the stack.
    stack: list[tuple[object, int]] = [(obj, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        value, depth = pop()
        t = type(value)
        if t in _PLAIN:
            continue
        if t is dict:
            if depth > MAX_DEPTH:
                msg = f"value nests more than {MAX_DEPTH} lists/maps"
                raise TypeError(msg)
            for key, item in value.items():  # type: ignore[attr-defined]
                if type(key) is not str and not isinstance(key, str):
                    msg = f"map keys must be str, got {type(key).__name__}"
                    raise TypeError(msg)
                ti = type(item)
                if ti in _PLAIN or (ti is int and _INT_MIN <= item <= _INT_MAX):
                    continue
                push((item, depth + 1))
            continue
        if t is list or t is tuple:
            if depth > MAX_DEPTH:
                msg = f"value nests more than {MAX_DEPTH} lists/maps"
                raise TypeError(msg)
            for item in value:  # type: ignore[attr-defined]
                ti = type(item)
                if ti in _PLAIN or (ti is int and _INT_MIN <= item <= _INT_MAX):
                    continue
                push((item, depth + 1))
            continue
        # ints out of range, subclasses of the allowed types, and everything else
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT_MIN <= value <= _INT_MAX:
                msg = f"int {value} is outside the msgpack range [-2**63, 2**64 - 1]"
                raise TypeError(msg)
            continue
        if isinstance(value, _SCALARS):
            continue
        if isinstance(value, (list, tuple, dict)) and depth > MAX_DEPTH:
            msg = f"value nests more than {MAX_DEPTH} lists/maps"
            raise TypeError(msg)
        if isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    msg = f"map keys must be str, got {type(key).__name__}"
                    raise TypeError(msg)
                push((item, depth + 1))
        else:
            msg = f"cannot encode a value of type {type(value).__name__!r}"
            raise TypeError(msg)


def _check_decoded(obj: object) -> None:
    # msgpack only produces exact types, so identity checks settle most values.
    stack: list[tuple[object, int]] = [(obj, 1)]
    pop = stack.pop
    push = stack.append
    while stack:
        value, depth = pop()
        t = type(value)
        if t is list or t is dict:
            if depth > MAX_DEPTH:
                msg = f"msgpack value nests more than {MAX_DEPTH} arrays/maps"
                raise RemoteProtocolError(msg, "proto")
            if t is dict:
                for key, item in value.items():  # type: ignore[attr-defined]
                    if type(key) is not str:
                        msg = (
                            f"msgpack map key of type {type(key).__name__} "
                            "(must be str)"
                        )
                        raise RemoteProtocolError(msg, "proto")
                    ti = type(item)
                    if ti in _PLAIN or ti is int:
                        continue
                    push((item, depth + 1))
            else:
                for item in value:  # type: ignore[attr-defined]
                    ti = type(item)
                    if ti in _PLAIN or ti is int:
                        continue
                    push((item, depth + 1))
        elif t in _PLAIN or t is int:
            continue
        else:
            # msgpack.Timestamp: ext type -1 bypasses ext_hook.
            msg = f"msgpack value of type {t.__name__} is not allowed"
            raise RemoteProtocolError(msg, "proto")


def packb(obj: object) -> bytes:
    """
    Encode *obj* as msgpack (``use_bin_type=True``).

    Args:
        obj: a value built only from the allowed types (see the module docstring).

    Returns:
        The encoded bytes.

    Raises:
        TypeError: if *obj* holds a value that cannot travel (a set, an arbitrary
            object, a non-``str`` map key, an int outside msgpack's range, a ``str``
            that is not valid Unicode, or nesting deeper than :data:`MAX_DEPTH`).
    """
    _check_encodable(obj)
    try:
        data: bytes = msgpack.packb(obj, use_bin_type=True)
    except (ValueError, OverflowError) as exc:
        # e.g. a str with lone surrogates (UnicodeEncodeError)
        msg = f"cannot encode value: {exc}"
        raise TypeError(msg) from exc
    return data


def unpackb(data: bytes | bytearray) -> object:
    """
    Decode exactly one msgpack value from *data*.

    Args:
        data: the complete encoded value, nothing before or after it.

    Returns:
        The decoded value, built only from the allowed types; arrays decode as lists.

    Raises:
        RemoteProtocolError: (code ``proto``) if *data* is not exactly one valid
            msgpack value of the allowed types: truncated, trailing bytes, invalid
            UTF-8, extension types, timestamps, non-``str`` map keys or nesting deeper
            than :data:`MAX_DEPTH`.
    """
    try:
        obj: object = msgpack.unpackb(
            data, raw=False, strict_map_key=True, ext_hook=_reject_ext
        )
    except _ExtTypeRejected as exc:
        msg = f"msgpack extension type {exc.code} is not allowed"
        raise RemoteProtocolError(msg, "proto") from None
    except msgpack.ExtraData:
        msg = "trailing bytes after the msgpack value"
        raise RemoteProtocolError(msg, "proto") from None
    except (
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        msgpack.UnpackException,
    ) as exc:
        # OutOfData, FormatError, StackError, UnicodeDecodeError, bad map keys, ...
        msg = f"malformed msgpack ({type(exc).__name__}: {exc})"
        raise RemoteProtocolError(msg, "proto") from None
    _check_decoded(obj)
    return obj
