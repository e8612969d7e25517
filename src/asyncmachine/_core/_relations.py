"""
Target-state resolution: what a mutation makes of the called states.

Theory of operation (``spec/machine.md`` section 3; rule ids in brackets). The input is
the mutation type, its called states, the states active before, and the *starting
list* (``add``: called + active; ``remove``: active - called; ``set``: called). List
order is part of the result everywhere:

1. [R1] de-duplicate (first occurrence wins: for ``add`` the called position wins).
2. [R2] follow ``add`` one level. An active non-multi state does not re-imply its
   ``add``; in a ``remove`` mutation, ``add`` targets being removed are skipped.
3. [R3] drop states with an unmet ``require``, repeated until stable.
4. [R4] remove-blocking, walking from the end: a state is blocked when some state of
   the list removes it and that remover is not blocked itself. So of two states that
   remove each other, the *earlier* survives (called beats active).
5. [R5, R6] follow ``add`` again from the survivors (reversed), drop what they remove.
6. [R7] reverse back, drop unmet requires again.
7. [R8] sort: stable by Require topology, then Go's exact SliceStable with the After
   comparator (it is not a strict weak order, so the algorithm itself matters).

Add is followed exactly twice (R2 and R6), so A->B->C->D started at A stops at C: a
kept quirk of the Go original. The tables are built once per schema.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from ._schema import State, require_topology
from ._sort import go_stable_sort

__all__ = ("LogFn", "Relations")

#: ``log(level, message)``: receives the resolver's reasoning (R3, R4 log lines).
LogFn = Callable[[int, str], None]

_INSERTION_MAX = 20


class Relations:
    """Per-schema relation tables and the resolver that uses them."""

    __slots__ = (
        "add",
        "after",
        "auto_names",
        "has_after",
        "multi",
        "plans",
        "remove",
        "removed_by",
        "require",
        "topo_key",
        "topology",
    )

    def __init__(self, schema: Mapping[str, State], state_names: Sequence[str]) -> None:
        self.require: dict[str, tuple[str, ...]] = {}
        self.add: dict[str, tuple[str, ...]] = {}
        self.remove: dict[str, frozenset[str]] = {}
        self.after: dict[str, frozenset[str]] = {}
        removed_by: dict[str, list[str]] = {}
        for name in state_names:
            st = schema[name]
            if st.require:
                self.require[name] = st.require
            if st.add:
                self.add[name] = st.add
            if st.remove:
                self.remove[name] = frozenset(st.remove)
                for r in st.remove:
                    removed_by.setdefault(r, []).append(name)
            if st.after:
                self.after[name] = frozenset(st.after)
        self.removed_by: dict[str, tuple[str, ...]] = {
            k: tuple(v) for k, v in removed_by.items()
        }
        self.multi: frozenset[str] = frozenset(
            n for n in state_names if schema[n].multi
        )
        #: Auto states in state-name order [A1, DEV-2].
        self.auto_names: tuple[str, ...] = tuple(
            n for n in state_names if schema[n].auto
        )
        self.has_after = bool(self.after)
        self.topology: list[str] = require_topology(schema, state_names)
        self.topo_key: dict[str, int] = {n: i for i, n in enumerate(self.topology)}
        #: A cache owned by the machine: resolved mutations of this schema.
        self.plans: dict[
            tuple[object, ...],
            tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]],
        ] = {}

    # -- resolution -----------------------------------------------------------------

    def resolve(
        self,
        is_remove: bool,
        called: Sequence[str],
        before: Iterable[str],
        to_set: Iterable[str],
        log: LogFn | None = None,
        is_auto: bool = False,
    ) -> list[str]:
        """
        Return the ordered target states for a mutation [R1-R8].

        *log*, when given, receives ``[reject]`` and ``[rel:remove]`` lines.
        """
        before_set = before if isinstance(before, set | frozenset) else set(before)
        s = list(dict.fromkeys(to_set))  # R1
        if self.add:
            s = list(dict.fromkeys(self._follow_add(is_remove, called, before_set, s)))
        s = self._drop_unmet(s, log, is_auto)  # R3
        if self.remove:
            kept = self._remove_blocking(s, log, before_set)  # R4 (reversed order)
            rm = self.remove
            # R5: what the survivors remove; kept as the survivors' own sets (few
            # of them) rather than their union (up to every state in the schema).
            removes = [r for r in (rm.get(k) for k in kept) if r]
            if self.add:
                kept = self._follow_add(is_remove, called, before_set, kept)
            if removes:
                kept = [x for x in kept if not any(x in r for r in removes)]
            kept = list(dict.fromkeys(kept))  # R6
            kept.reverse()
            target = self._drop_unmet(kept, log, is_auto)  # R7
        else:
            # Without remove relations R4-R6 keep every state; R6 only re-follows add.
            if self.add:
                kept = list(reversed(s))
                kept = list(
                    dict.fromkeys(self._follow_add(is_remove, called, before_set, kept))
                )
                kept.reverse()
                target = self._drop_unmet(kept, log, is_auto)
            else:
                target = s
        self.sort_states(target)  # R8
        return target

    def _follow_add(
        self,
        is_remove: bool,
        called: Sequence[str],
        before: set[str] | frozenset[str],
        states: list[str],
    ) -> list[str]:
        """Follow ``add`` one level [R2]."""
        add = self.add
        multi = self.multi
        out = list(states)
        seen: set[str] = set()
        for name in states:
            adds = add.get(name)
            if not adds:
                continue
            if name in before and name not in multi:
                continue
            if name in seen:
                continue
            if is_remove:
                adds = tuple(a for a in adds if a not in called)
                if not adds:
                    continue
            out.extend(adds)
            seen.add(name)
        return out

    def _drop_unmet(
        self, states: list[str], log: LogFn | None = None, is_auto: bool = False
    ) -> list[str]:
        """Drop states whose ``require`` is unmet, until stable [R3, R7]."""
        require = self.require
        if not require:
            return states
        while True:
            present = set(states)
            ok = [
                x
                for x in states
                if x not in require or all(r in present for r in require[x])
            ]
            if len(ok) == len(states):
                return ok
            if log is not None:
                for x in states:
                    missing = [r for r in require.get(x, ()) if r not in present]
                    if missing:
                        kind = "reject:auto" if is_auto else "reject"
                        level = 4 if is_auto else 3
                        log(level, f"[{kind}] {x}(-{' -'.join(missing)})")
            states = ok

    def _remove_blocking(
        self,
        s: list[str],
        log: LogFn | None = None,
        before: set[str] | frozenset[str] = frozenset(),
    ) -> list[str]:
        """Remove-blocking walk from the end [R4]; the result is in reversed order."""
        removed_by = self.removed_by
        present = set(s)
        blocked: set[str] = set()
        kept: list[str] = []
        rm = self.remove
        for name in reversed(s):
            removers = removed_by.get(name)
            if not removers:
                blocked_now = False
            elif len(removers) > len(s):
                # a big exclusive group: scan the (short) list, not the removers
                blocked_now = any(b not in blocked and name in rm.get(b, ()) for b in s)
            else:
                blocked_now = any(b in present and b not in blocked for b in removers)
            if blocked_now:
                if log is not None:
                    by = [
                        b for b in removers or () if b in present and b not in blocked
                    ]
                    level = 3 if name in before else 4
                    log(level, f"[rel:remove] {name} by {' '.join(by)}")
                blocked.add(name)
            else:
                kept.append(name)
        return kept

    # -- ordering -------------------------------------------------------------------

    def _after_less(self, x: str, y: str) -> bool:
        after = self.after
        ay = after.get(y)
        if ay is None or x not in ay:
            return False
        ax = after.get(x)
        return ax is None or y not in ax

    def sort_states(self, states: list[str]) -> None:
        """Sort in place: Require topology, then After [R8]."""
        if len(states) < 2:
            return
        if self.topo_key:
            key = self.topo_key.get
            states.sort(key=lambda s: key(s, -1))
        if self.has_after:
            less = self._after_less
            if len(states) <= _INSERTION_MAX:
                for i in range(1, len(states)):
                    j = i
                    while j > 0 and less(states[j], states[j - 1]):
                        states[j], states[j - 1] = states[j - 1], states[j]
                        j -= 1
            else:
                go_stable_sort(states, less)
