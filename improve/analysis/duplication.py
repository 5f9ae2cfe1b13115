"""Repeated blocks across files (and far apart in one file), from the per-file fingerprints.

Each file brings the line numbers of its normalised lines and one hash per window of
`window` consecutive normalised lines. A window hash seen at two places that do not
overlap marks both as duplicated; consecutive marked windows merge into one block, and
each block becomes one issue naming another place it appears."""

from __future__ import annotations

from collections import Counter
from itertools import chain

from improve.analysis.checks import unpack

Issue = list


def _places(files: list[tuple[str, dict]]) -> dict[int, list[tuple[int, int]]]:
    """Window hash -> (file index, window position) of every hash seen more than once."""
    counts = Counter(chain.from_iterable(fp["hashes"] for _, fp in files))
    repeated = {value for value, count in counts.items() if count > 1}
    places: dict[int, list[tuple[int, int]]] = {}
    for index, (_, fp) in enumerate(files):
        for position, value in enumerate(fp["hashes"]):
            if value in repeated:
                places.setdefault(value, []).append((index, position))
    return places


def _runs(marked: dict[int, tuple[int, int]]) -> list[tuple[int, int, tuple[int, int]]]:
    """(first, last window position, partner of the first) of each run of consecutive marked windows."""
    runs = []
    positions = sorted(marked)
    start = previous = positions[0]
    for position in positions[1:] + [None]:
        if position is None or position != previous + 1:
            runs.append((start, previous, marked[start]))
            start = position
        previous = position
    return runs


def duplicate_blocks(packed: list[tuple[str, dict]], window: int, large_block: int) -> dict[str, list[Issue]]:
    """packed: (relative path, fingerprints as `checks.fingerprints` packs them) -> issues per path."""
    files = [(path, {"lines": unpack("I", fp["lines"]), "hashes": unpack("q", fp["hashes"])}) for path, fp in packed]
    # file index -> {window position: another place with the same window}; another place is
    # another file, or this one without overlap.
    marked: dict[int, dict[int, tuple[int, int]]] = {}
    for occurrences in _places(files).values():
        for index, position in occurrences:
            partner = next((other for other in occurrences
                            if other[0] != index or abs(other[1] - position) >= window), None)
            if partner is not None:
                marked.setdefault(index, {})[position] = partner
    found: dict[str, list[Issue]] = {}
    for index in sorted(marked):
        path, fp = files[index]
        for start, end, (other_index, other_position) in _runs(marked[index]):
            first, last = fp["lines"][start], fp["lines"][end + window - 1]
            other_path, other_fp = files[other_index]
            found.setdefault(path, []).append([
                first, "duplication", "medium" if last - first + 1 >= large_block else "low",
                f"Lines {first}-{last} repeat code also at {other_path}:{other_fp['lines'][other_position]}",
                "Move the shared code into one function or module and call it from both places",
            ])
    return found
