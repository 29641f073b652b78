"""Byte ranges, and coalescing many of them into few reads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteRange:
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def merge_ranges(ranges: list[ByteRange], *, max_gap: int = 0) -> list[tuple[ByteRange, list[int]]]:
    """Coalesce ranges that touch (or lie within `max_gap` bytes) into fewer reads.

    Returns the merged ranges, each with the indices of the input ranges it covers, so a
    caller can slice every original range back out of one read.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i].offset)
    merged: list[tuple[ByteRange, list[int]]] = []
    start = end = -1
    members: list[int] = []
    for i in order:
        r = ranges[i]
        if members and r.offset <= end + max_gap:
            end = max(end, r.end)
            members.append(i)
            continue
        if members:
            merged.append((ByteRange(start, end - start), members))
        start, end, members = r.offset, r.end, [i]
    if members:
        merged.append((ByteRange(start, end - start), members))
    return merged
