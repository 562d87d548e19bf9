"""Memory planning: buffers whose lifetimes do not overlap share bytes of one arena.

Liveness is computed once per plan (it does not depend on sizes): a *storage* is a buffer
slot together with every slot aliasing it (views, in-place updates); it is live from the step
that first writes it to the last step that reads any of its aliases (or to the end, for
function results). For each set of concrete sizes the planner places storages in the arena by
best fit, biggest first, so that two storages live at the same time never overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

from .plan import Plan

ALIGN = 64  # bytes: a cache line, and what AVX-512 loads like


@dataclass(frozen=True)
class Storage:
    root: int                # the slot that owns the bytes
    members: tuple[int, ...]  # root and every slot aliasing it
    start: int               # first step writing it
    end: int                 # last step reading it (len(steps) for results)
    external: bool           # aliases an input/weight/constant: not in the arena


def storage_root(plan: Plan, slot: int) -> int:
    while plan.slots[slot].alias_of is not None:
        slot = plan.slots[slot].alias_of
    return slot


def liveness(plan: Plan) -> list[Storage]:
    """Storages with their live ranges, in slot order of their roots."""
    roots: dict[int, list[int]] = {}
    for s in plan.slots:
        roots.setdefault(storage_root(plan, s.index), []).append(s.index)
    first_write: dict[int, int] = {}
    last_read: dict[int, int] = {}
    for i, step in enumerate(plan.steps):
        for o in step.outputs:
            r = storage_root(plan, o)
            first_write.setdefault(r, i)
            last_read[r] = max(last_read.get(r, i), i)
        for v in step.inputs:
            r = storage_root(plan, v)
            last_read[r] = max(last_read.get(r, -1), i)
    end = len(plan.steps)
    for v in plan.outputs:
        last_read[storage_root(plan, v)] = end
    out = []
    for r, members in roots.items():
        slot = plan.slots[r]
        external = slot.kind != "buffer"
        start = -1 if external else first_write.get(r, 0)
        out.append(Storage(r, tuple(members), start, last_read.get(r, start), external))
    return out


def overlaps(a: Storage, b: Storage) -> bool:
    return a.start <= b.end and b.start <= a.end


def place(storages: list[Storage], nbytes: dict[int, int]) -> tuple[dict[int, int], int]:
    """Arena offsets for the non-external storages given their sizes; returns (offsets, arena size).

    Biggest first; each goes to the lowest aligned offset that does not collide with an already
    placed storage whose live range overlaps it.
    """
    todo = sorted((s for s in storages if not s.external), key=lambda s: (-nbytes[s.root], s.start))
    placed: list[tuple[Storage, int, int]] = []  # (storage, offset, size)
    offsets: dict[int, int] = {}
    top = 0
    for s in todo:
        size = _aligned(max(nbytes[s.root], 1))
        busy = sorted((off, off + sz) for t, off, sz in placed if overlaps(s, t))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, _aligned(hi))
        offsets[s.root] = off
        placed.append((s, off, size))
        top = max(top, off + size)
    return offsets, top


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
