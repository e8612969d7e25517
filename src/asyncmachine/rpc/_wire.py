"""
Schemas on the wire: the WELCOME form and the hash clients send back in HELLO.

Shared by the server (which sends a schema) and the client (which installs it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from .._core._schema import State
from ._events import StateSchema

__all__ = ("schema_from_wire", "schema_hash", "schema_to_wire")


def schema_hash(schema: Mapping[str, State]) -> str:
    """A short, order-independent hash of a schema (names and relations)."""
    canon = {name: st.to_dict() for name, st in sorted(schema.items())}
    raw = json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def schema_to_wire(schema: Mapping[str, State]) -> dict[str, StateSchema]:
    """The WELCOME form of a schema."""
    return {
        name: StateSchema(
            auto=st.auto,
            multi=st.multi,
            add=st.add,
            remove=st.remove,
            require=st.require,
            after=st.after,
            tags=st.tags,
        )
        for name, st in schema.items()
    }


def schema_from_wire(wire: Mapping[str, StateSchema]) -> dict[str, State]:
    """The schema a WELCOME carries, as :class:`State` objects."""
    return {
        name: State(
            auto=d.auto,
            multi=d.multi,
            add=d.add,
            remove=d.remove,
            require=d.require,
            after=d.after,
            tags=d.tags,
        )
        for name, d in wire.items()
    }
