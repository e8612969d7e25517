"""
State definitions, schema normalization and the Require topology.

Rules (``spec/machine.md`` section 1, rule ids in brackets):

- Relation lists are ordered tuples; a ``set``/``frozenset`` is stored sorted, so the
  hash seed never changes behaviour [S1]. Duplicates are dropped, first one kept [S2].
- ``Exception`` is added (multi, no relations) when the schema lacks it, *before*
  normalization, so relations naming it survive [S3, DEV-16].
- Normalization [N1-N6] runs per state: self-``remove`` dropped, ``add`` beats
  ``remove``, self-``after`` dropped, unknown ``add``/``remove``/``after`` entries
  dropped, ``require`` never cleaned. A state that both requires and removes the same
  state is a *require-remove conflict*: it is reported, not raised [N4, S9].
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from .._errors import SchemaError

__all__ = (
    "EXCEPTION",
    "RELATIONS",
    "State",
    "normalize_schema",
    "require_topology",
    "resolve_names",
)

EXCEPTION: Final = "Exception"
RELATIONS: Final = ("add", "require", "remove", "after")
_STATE_KEYS: Final = frozenset(
    {"auto", "multi", "require", "add", "remove", "after", "tags"}
)
_NAME_RE: Final = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_RESERVED: Final = frozenset({"Any"})


def _dedupe(xs: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(xs))


def _names_tuple(field: str, value: Iterable[str] | str) -> tuple[str, ...]:
    """Turn a relation argument into an ordered, de-duplicated tuple of names [S1, S2]."""
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, set | frozenset):
        items = list(value)
        if not all(isinstance(x, str) for x in items):
            raise SchemaError(f"{field!r} must list state names (str), got {value!r}")
        items = sorted(items)  # type: ignore[type-var]  # all str, checked above
    else:
        try:
            items = list(value)
        except TypeError:
            raise SchemaError(
                f"{field!r} must be an iterable of state names, got {value!r}"
            ) from None
    for x in items:
        if not isinstance(x, str):
            raise SchemaError(f"{field!r} must list state names (str), got {x!r}")
    return _dedupe(items)  # type: ignore[arg-type]  # all str, checked above


class State:
    """
    The definition of one state: its flags and its relations to other states.

    A frozen value object; relation arguments take any iterable of names (a single
    ``str`` counts as one name). A ``set``/``frozenset`` is stored sorted so the order
    never depends on the hash seed.

    Args:
        auto: try to activate this state after every transition that changed a tick.
        multi: calling the state while active activates it again (tick +2).
        require: states that must be active for this one to be active.
        add: states this one also tries to activate.
        remove: states this one deactivates and blocks.
        after: states whose handlers run before this state's handlers.
        tags: free-form metadata, unused by the core.
    """

    __slots__ = ("add", "after", "auto", "multi", "remove", "require", "tags")

    auto: bool
    multi: bool
    require: tuple[str, ...]
    add: tuple[str, ...]
    remove: tuple[str, ...]
    after: tuple[str, ...]
    tags: tuple[str, ...]

    def __init__(
        self,
        *,
        auto: bool = False,
        multi: bool = False,
        require: Iterable[str] | str = (),
        add: Iterable[str] | str = (),
        remove: Iterable[str] | str = (),
        after: Iterable[str] | str = (),
        tags: Iterable[str] | str = (),
    ) -> None:
        if not isinstance(auto, bool):
            raise SchemaError(f"'auto' must be a bool, got {auto!r}")
        if not isinstance(multi, bool):
            raise SchemaError(f"'multi' must be a bool, got {multi!r}")
        setattr_ = object.__setattr__
        setattr_(self, "auto", auto)
        setattr_(self, "multi", multi)
        setattr_(self, "require", _names_tuple("require", require))
        setattr_(self, "add", _names_tuple("add", add))
        setattr_(self, "remove", _names_tuple("remove", remove))
        setattr_(self, "after", _names_tuple("after", after))
        setattr_(self, "tags", _names_tuple("tags", tags))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"State is frozen, cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"State is frozen, cannot delete {name!r}")

    def _key(self) -> tuple[object, ...]:
        return (
            self.auto,
            self.multi,
            self.require,
            self.add,
            self.remove,
            self.after,
            self.tags,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        parts = []
        if self.auto:
            parts.append("auto=True")
        if self.multi:
            parts.append("multi=True")
        for field in ("require", "add", "remove", "after", "tags"):
            value = getattr(self, field)
            if value:
                parts.append(f"{field}={list(value)!r}")
        return f"State({', '.join(parts)})"

    def __reduce__(self) -> tuple[object, ...]:
        return (_make_state, self._key())

    def replace(self, **changes: object) -> State:
        """Return a copy with the given fields changed (same keywords as the constructor)."""
        fields = self.to_dict()
        for key in changes:
            if key not in _STATE_KEYS:
                raise SchemaError(f"unknown State field {key!r}")
        fields.update(changes)
        return State(**fields)  # type: ignore[arg-type]  # validated by __init__

    def to_dict(self) -> dict[str, object]:
        """The mapping form of this state (lists for relations), JSON-friendly."""
        return {
            "auto": self.auto,
            "multi": self.multi,
            "require": list(self.require),
            "add": list(self.add),
            "remove": list(self.remove),
            "after": list(self.after),
            "tags": list(self.tags),
        }


def _make_state(
    auto: bool,
    multi: bool,
    require: tuple[str, ...],
    add: tuple[str, ...],
    remove: tuple[str, ...],
    after: tuple[str, ...],
    tags: tuple[str, ...],
) -> State:
    return State(
        auto=auto,
        multi=multi,
        require=require,
        add=add,
        remove=remove,
        after=after,
        tags=tags,
    )


def _to_state(name: str, value: object) -> State:
    if isinstance(value, State):
        return value
    if isinstance(value, Mapping):
        unknown = sorted(str(k) for k in value if k not in _STATE_KEYS)
        if unknown:
            raise SchemaError(
                f"state {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"valid keys are {', '.join(sorted(_STATE_KEYS))}"
            )
        try:
            return State(**value)
        except SchemaError as exc:
            raise SchemaError(f"state {name!r}: {exc}") from None
    raise SchemaError(
        f"state {name!r}: definition must be am.State or a mapping, "
        f"got {type(value).__name__}"
    )


def check_name(name: object) -> str:
    """Validate one state name [S5, S6] and return it."""
    if not isinstance(name, str):
        raise SchemaError(f"state names must be str, got {name!r}")
    if name in _RESERVED:
        raise SchemaError(f"state name {name!r} is reserved (global handlers use it)")
    if not _NAME_RE.match(name):
        raise SchemaError(
            f"invalid state name {name!r}: names must match [A-Z][A-Za-z0-9]* "
            "(handler names join state names with '_')"
        )
    return name


def normalize_schema(
    schema: Mapping[str, State | Mapping[str, object]],
) -> tuple[dict[str, State], list[str]]:
    """
    Validate and normalize a user schema.

    Returns:
        The normalized schema (``Exception`` included, input order kept) and the list of
        require-remove conflict messages (empty when there are none).

    Raises:
        SchemaError: bad names, unknown keys or values that are not states.
    """
    if not isinstance(schema, Mapping):
        raise SchemaError(f"a schema must be a mapping, got {type(schema).__name__}")
    states: dict[str, State] = {}
    for name, value in schema.items():
        states[check_name(name)] = _to_state(name, value)
    if EXCEPTION not in states:
        states[EXCEPTION] = State(multi=True)  # [S3]

    known = states.keys()
    out: dict[str, State] = {}
    conflicts: list[str] = []
    for name, st in states.items():
        remove = [r for r in st.remove if r != name]  # N1
        add: list[str] = []
        for a in st.add:  # N2
            if a in remove:
                remove.remove(a)
            # An unknown name that was also in `remove` is dropped here too: Go keeps
            # it and would panic while resolving it.
            if a in known:
                add.append(a)
        after = [a for a in st.after if a != name]  # N3
        clash = [r for r in st.require if r in remove]  # N4
        if clash:
            conflicts.append(
                f"state {name!r}: require-remove conflict, "
                f"it both requires and removes {', '.join(map(repr, clash))}"
            )
        remove = [r for r in remove if r in known]  # N5
        after = [a for a in after if a in known]
        if (
            tuple(add) == st.add
            and tuple(remove) == st.remove
            and tuple(after) == st.after
        ):
            out[name] = st
        else:
            out[name] = st.replace(add=add, remove=remove, after=after)
    return out, conflicts


def resolve_names(
    schema: Mapping[str, State], names: Iterable[str] | None
) -> list[str]:
    """
    The machine's state order: alphabetical [S7] or an explicit permutation [S8].

    Raises:
        SchemaError: *names* is not a permutation of every state (Exception included).
    """
    if names is None:
        return sorted(schema)
    if isinstance(names, str):
        raise SchemaError("names= must be a list of state names, not a str")
    order = list(names)
    seen: set[str] = set()
    dups = []
    for n in order:
        if n in seen:
            dups.append(n)
        seen.add(n)
    unknown = [n for n in order if n not in schema]
    missing = [n for n in schema if n not in seen]
    problems = []
    if unknown:
        problems.append(f"unknown {', '.join(map(repr, unknown))}")
    if dups:
        problems.append(f"duplicated {', '.join(map(repr, dups))}")
    if missing:
        problems.append(f"missing {', '.join(map(repr, missing))}")
    if problems:
        raise SchemaError(
            "names= must list every state exactly once (Exception included): "
            + "; ".join(problems)
        )
    return order


def require_topology(
    schema: Mapping[str, State], state_names: Iterable[str]
) -> list[str]:
    """
    Post-order DFS over the Require graph; ``[]`` when the graph has a cycle [S10].

    Sources are visited in *state_names* order and neighbours in ``require`` order, so
    required states come before the states that require them [DEV-1].
    """
    graph: dict[str, tuple[str, ...]] = {}
    for name in state_names:
        req = schema[name].require
        if req:
            graph[name] = req
    order: list[str] = []
    done: set[str] = set()
    on_stack: set[str] = set()
    # Iterative DFS: huge schemas must not hit the recursion limit (13.5).
    for root in graph:
        if root in done:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        on_stack.add(root)
        while stack:
            node, i = stack[-1]
            edges = graph.get(node, ())
            if i < len(edges):
                stack[-1] = (node, i + 1)
                nxt = edges[i]
                if nxt in on_stack:
                    return []
                if nxt not in done:
                    on_stack.add(nxt)
                    stack.append((nxt, 0))
            else:
                stack.pop()
                on_stack.discard(node)
                done.add(node)
                order.append(node)
    return order
