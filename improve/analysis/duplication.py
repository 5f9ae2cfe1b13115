"""Repeated blocks across files (and far apart in one file), from the per-file fingerprints.

Each file brings the line numbers of its normalised lines and one hash per window of
`window` consecutive normalised lines. A window hash seen at two places that do not
overlap marks both as duplicated; consecutive marked windows merge into one block, and
each block becomes one issue naming another place it appears."""

from __future__ import annotations

from collections import Counter
from itertools import chain

Issue = list


def duplicate_blocks(files: list[tuple[str, dict]], window: int, large_block: int) -> dict[str, list[Issue]]:
    """files: (relative path, fingerprints {"lines", "hashes"}) -> issues per path."""
    counts = Counter(chain.from_iterable(fp["hashes"] for _, fp in files))
    repeated = {value for value, count in counts.items() if count > 1}
    if not repeated:
        return {}
    places: dict[int, list[tuple[int, int]]] = {}
    for index, (_, fp) in enumerate(files):
        for position, value in enumerate(fp["hashes"]):
            if value in repeated:
                places.setdefault(value, []).append((index, position))

    def elsewhere(value: int, index: int, position: int) -> tuple[int, int] | None:
        for other in places[value]:
            if other[0] != index or abs(other[1] - position) >= window:
                return other
        return None

    found: dict[str, list[Issue]] = {}
    for index, (path, fp) in enumerate(files):
        hashes, lines = fp["hashes"], fp["lines"]
        position = 0
        while position < len(hashes):
            partner = elsewhere(hashes[position], index, position) if hashes[position] in repeated else None
            if partner is None:
                position += 1
                continue
            start = position
            while position + 1 < len(hashes) and hashes[position + 1] in repeated and \
                    elsewhere(hashes[position + 1], index, position + 1) is not None:
                position += 1
            first, last = lines[start], lines[position + window - 1]
            other_path, other_fp = files[partner[0]]
            size = last - first + 1
            found.setdefault(path, []).append([
                first, "duplication", "medium" if size >= large_block else "low",
                f"Lines {first}-{last} repeat code also at {other_path}:{other_fp['lines'][partner[1]]}",
                "Move the shared code into one function or module and call it from both places",
            ])
            position += 1
    return found
