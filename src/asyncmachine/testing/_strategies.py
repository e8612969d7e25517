"""
Hypothesis strategies: state names, schemas and mutations, and how to apply a mutation.

Everything shrinks toward the simple case: fewer states, empty relation lists, no
flags, ``add`` mutations with no args.
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeAlias

from hypothesis import strategies as st

import asyncmachine as am

__all__ = (
    "ADD_ERR_MESSAGE",
    "KINDS",
    "MutationTuple",
    "SchemaDict",
    "apply_mutation",
    "mutations",
    "schema_state_names",
    "schemas",
    "state_names",
)

#: A schema in dict form: state name -> the mapping form of :class:`am.State`.
SchemaDict: TypeAlias = dict[str, dict[str, Any]]
#: ``(kind, states, args)``, as drawn by :func:`mutations`.
MutationTuple: TypeAlias = tuple[str, tuple[str, ...], dict[str, object]]

#: Mutation kinds :func:`mutations` knows, with their default weights.
KINDS: Final[Mapping[str, int]] = {
    "add": 7,
    "remove": 4,
    "set": 4,
    "toggle": 2,
    "add_err": 1,
    "can_add": 1,
    "can_remove": 1,
}
#: The message of the ``RuntimeError`` an ``add_err`` mutation adds.
ADD_ERR_MESSAGE: Final = "add_err from asyncmachine.testing"

_RESERVED: Final = frozenset({"Any", am.EXCEPTION})
#: State names with a meaning in the core (spec S4).
SPECIAL_NAMES: Final = (
    "Start",
    "Ready",
    "Disposing",
    "MachineRestored",
    "Heartbeat",
    "Healthcheck",
)


def _letters(n: int) -> list[str]:
    if n <= 26:
        return list(string.ascii_uppercase[:n])
    return [f"S{i}" for i in range(n)]


def state_names(
    *, min_size: int = 1, max_size: int = 8, special: bool = False
) -> st.SearchStrategy[list[str]]:
    """
    Lists of distinct valid state names (``[A-Z][A-Za-z0-9]*``, never ``Any`` or
    ``Exception``).

    Args:
        min_size: the fewest names.
        max_size: the most names.
        special: also draw names the core treats specially (``Start``,
            ``MachineRestored``, ``Heartbeat``, ...; spec S4).
    """
    name: st.SearchStrategy[str] = st.from_regex(r"\A[A-Z][A-Za-z0-9]{0,7}\Z").filter(
        lambda n: n not in _RESERVED
    )
    if special:
        name = st.one_of(name, st.sampled_from(SPECIAL_NAMES))
    return st.lists(name, min_size=min_size, max_size=max_size, unique=True)


def schemas(
    *,
    min_states: int = 1,
    max_states: int = 8,
    density: float = 0.3,
    names: st.SearchStrategy[list[str]] | None = None,
    auto: bool = True,
    multi: bool = True,
    cycles: bool = True,
    contradictions: bool = True,
    exception_refs: bool = True,
) -> st.SearchStrategy[SchemaDict]:
    """
    Valid schemas in dict form: ``{"A": {"auto": ..., "require": [...], ...}}``.

    Every state gets all six keys (``auto``, ``multi``, ``require``, ``add``,
    ``remove``, ``after``), like the conformance corpus. Relation lists are ordered
    (order matters, spec S1) and may name the state itself.

    Args:
        min_states: the fewest user states (``Exception`` is not counted).
        max_states: the most user states.
        density: how full relation lists get: each list names at most
            ``ceil(density * n)`` states (``0 <= density <= 1``; 0 means no
            relations).
        names: a strategy of name lists (default: ``A``, ``B``, ``C``, ...; try
            :func:`state_names`).
        auto: draw auto states.
        multi: draw multi states.
        cycles: allow Require cycles (self-``require`` included), which switch off
            Require ordering (spec S10); without them ``require`` only points to
            earlier states.
        contradictions: allow contradictory relations: self-``remove``, a state that
            adds and removes the same state (N2), and require-remove conflicts (the
            machine then starts in Exception, spec S9).
        exception_refs: relations may name ``Exception`` (spec DEV-16).
    """
    if not 0 <= density <= 1:
        raise ValueError(f"density must be between 0 and 1, got {density}")
    if not 1 <= min_states <= max_states:
        raise ValueError(
            f"need 1 <= min_states <= max_states, got {min_states}, {max_states}"
        )
    name_lists = names if names is not None else _letter_lists(min_states, max_states)
    flag = st.integers(0, 3).map(lambda x: x == 3)  # 1 in 4; shrinks to False
    no = st.just(False)

    @st.composite
    def build(draw: st.DrawFn) -> SchemaDict:
        ns = draw(name_lists)
        if not ns:
            ns = ["A"]
        k = math.ceil(density * len(ns))
        extra = [am.EXCEPTION] if exception_refs else []

        def rel(pool: Sequence[str]) -> list[str]:
            if not pool or not k:
                return []
            return draw(st.lists(st.sampled_from(pool), max_size=k, unique=True))

        schema: SchemaDict = {}
        for i, n in enumerate(ns):
            others = [x for x in ns if x != n]
            require = rel([*ns, *extra] if cycles else [*ns[:i], *extra])
            add = rel([*others, *extra])
            if contradictions:
                remove = rel([*ns, *extra])
            else:
                remove = rel(
                    [x for x in [*others, *extra] if x not in require and x not in add]
                )
            after = rel([*ns, *extra])
            schema[n] = {
                "auto": draw(flag if auto else no),
                "multi": draw(flag if multi else no),
                "require": require,
                "add": add,
                "remove": remove,
                "after": after,
            }
        return schema

    return build()


def _letter_lists(lo: int, hi: int) -> st.SearchStrategy[list[str]]:
    return st.integers(lo, hi).map(_letters)


def schema_state_names(schema: am.SchemaLike | type[am.Schema]) -> list[str]:
    """The user states of *schema* followed by ``Exception`` (if it is not in it)."""
    if isinstance(schema, type) and issubclass(schema, am.Schema):
        names = schema.state_names()
    else:
        names = list(schema)
    return names if am.EXCEPTION in names else [*names, am.EXCEPTION]


_DEFAULT_ARGS: Final[st.SearchStrategy[dict[str, object]]] = st.one_of(
    st.just({}),
    st.dictionaries(
        st.sampled_from(("n", "id")), st.integers(0, 9), min_size=1, max_size=2
    ),
)


def mutations(
    schema: am.SchemaLike | type[am.Schema],
    *,
    kinds: Sequence[str] | None = None,
    max_states: int = 3,
    args: st.SearchStrategy[Mapping[str, object]] | None = None,
) -> st.SearchStrategy[MutationTuple]:
    """
    Mutations for machines of *schema*: ``(kind, states, args)`` tuples.

    Apply one with :func:`apply_mutation`. ``states`` may be empty and may repeat a
    name (the machine de-duplicates), and may name ``Exception``.

    Args:
        schema: a schema in dict form (or a typed :class:`am.Schema` class).
        kinds: the kinds to draw, from ``add``, ``remove``, ``set``, ``toggle``,
            ``add_err``, ``can_add``, ``can_remove`` (default: all of them, ``add``
            the most often). ``add_err`` has zero or one state: ``add_err(err)`` or
            ``add_err_state(state, err)``.
        max_states: the most states one mutation calls.
        args: a strategy of args mappings (default: mostly empty, else small ints
            under ``n``/``id``).
    """
    chosen = list(KINDS) if kinds is None else list(kinds)
    unknown = [k for k in chosen if k not in KINDS]
    if unknown or not chosen:
        raise ValueError(f"unknown or no mutation kinds: {unknown or chosen}")
    weighted = [k for k in chosen for _ in range(KINDS[k] if kinds is None else 1)]
    pool = schema_state_names(schema)
    arg_strategy: st.SearchStrategy[Mapping[str, object]] = (
        args if args is not None else _DEFAULT_ARGS
    )
    kind_st = st.sampled_from(weighted)
    names = st.sampled_from(pool)

    @st.composite
    def build(draw: st.DrawFn) -> MutationTuple:
        kind = draw(kind_st)
        size = 1 if kind == "add_err" else max_states
        states = tuple(draw(st.lists(names, max_size=size)))
        return kind, states, dict(draw(arg_strategy))

    return build()


def apply_mutation(mach: am.Machine, mutation: MutationTuple) -> am.Result:
    """
    Apply a mutation drawn by :func:`mutations` to *mach*; return its result.

    ``add_err`` adds ``RuntimeError(ADD_ERR_MESSAGE)``.
    """
    kind, states, args = mutation
    a = args or None
    if kind == "add_err":
        err = RuntimeError(ADD_ERR_MESSAGE)
        if states:
            return mach.add_err_state(states[0], err, a)
        return mach.add_err(err, a)
    if kind not in KINDS:
        raise ValueError(f"unknown mutation kind {kind!r}")
    method = getattr(mach, kind)
    result: am.Result = method(list(states), a)
    return result
