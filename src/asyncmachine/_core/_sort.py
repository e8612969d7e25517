"""
A port of Go's ``sort.SliceStable`` (insertion sort over blocks of 20, then SymMerge).

The After comparator is not a strict weak order, so the exact algorithm decides handler
order; ``spec/machine.md`` appendix A. Any other stable sort gives different results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ("go_stable_sort",)

T = TypeVar("T")
_BLOCK = 20


def go_stable_sort(data: list[T], less: Callable[[T, T], bool]) -> None:
    """Sort *data* in place exactly as Go's ``sort.SliceStable`` would."""
    n = len(data)
    bs = _BLOCK
    a, b = 0, bs
    while b <= n:
        _insertion(data, a, b, less)
        a = b
        b += bs
    _insertion(data, a, n, less)
    while bs < n:
        a, b = 0, 2 * bs
        while b <= n:
            _sym_merge(data, a, a + bs, b, less)
            a = b
            b += 2 * bs
        m = a + bs
        if m < n:
            _sym_merge(data, a, m, n, less)
        bs *= 2


def _insertion(d: list[T], a: int, b: int, less: Callable[[T, T], bool]) -> None:
    for i in range(a + 1, b):
        j = i
        while j > a and less(d[j], d[j - 1]):
            d[j], d[j - 1] = d[j - 1], d[j]
            j -= 1


def _sym_merge(
    d: list[T], a: int, m: int, b: int, less: Callable[[T, T], bool]
) -> None:
    if m - a == 1:  # insert d[a] into d[m:b]
        i, j = m, b
        while i < j:
            h = (i + j) // 2
            if less(d[h], d[a]):
                i = h + 1
            else:
                j = h
        for k in range(a, i - 1):
            d[k], d[k + 1] = d[k + 1], d[k]
        return
    if b - m == 1:  # insert d[m] into d[a:m]
        i, j = a, m
        while i < j:
            h = (i + j) // 2
            if not less(d[m], d[h]):
                i = h + 1
            else:
                j = h
        for k in range(m, i, -1):
            d[k], d[k - 1] = d[k - 1], d[k]
        return
    mid = (a + b) // 2
    n = mid + m
    if m > mid:
        start, r = n - b, mid
    else:
        start, r = a, m
    p = n - 1
    while start < r:
        c = (start + r) // 2
        if not less(d[p - c], d[c]):
            start = c + 1
        else:
            r = c
    end = n - start
    if start < m < end:
        _rotate(d, start, m, end)
    if a < start < mid:
        _sym_merge(d, a, start, mid, less)
    if mid < end < b:
        _sym_merge(d, mid, end, b, less)


def _swap_range(d: list[T], a: int, b: int, n: int) -> None:
    for i in range(n):
        d[a + i], d[b + i] = d[b + i], d[a + i]


def _rotate(d: list[T], a: int, m: int, b: int) -> None:
    i, j = m - a, b - m
    while i != j:
        if i > j:
            _swap_range(d, m - i, m, j)
            i -= j
        else:
            _swap_range(d, m - i, m + j - i, i)
            j -= i
    _swap_range(d, m - i, m, i)
