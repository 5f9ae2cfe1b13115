"""Split model reasoning wrapped in <think>...</think> from the answer, chunk by chunk.

Tags may be cut anywhere across chunk boundaries ("<thi" + "nk>"), so the splitter
holds back only the shortest tail that could still grow into a tag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DeltaKind = Literal["content", "thinking"]

OPEN_TAG = "<think>"
CLOSE_TAG = "</think>"


@dataclass(frozen=True, slots=True)
class Delta:
    kind: DeltaKind
    text: str


def _partial_tag_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


class ThinkSplitter:
    def __init__(self) -> None:
        self._inside = False
        self._pending = ""

    def feed(self, chunk: str) -> list[Delta]:
        if not self._inside and not self._pending and "<" not in chunk:
            return [Delta("content", chunk)]  # the common case, kept cheap
        text = self._pending + chunk
        self._pending = ""
        deltas: list[Delta] = []
        while text:
            tag = CLOSE_TAG if self._inside else OPEN_TAG
            kind: DeltaKind = "thinking" if self._inside else "content"
            index = text.find(tag)
            if index >= 0:
                if index:
                    deltas.append(Delta(kind, text[:index]))
                text = text[index + len(tag):]
                self._inside = not self._inside
                continue
            held = _partial_tag_suffix(text, tag)
            emit = text[: len(text) - held]
            if emit:
                deltas.append(Delta(kind, emit))
            self._pending = text[len(text) - held:]
            break
        return deltas

    def flush(self) -> list[Delta]:
        """End of stream: whatever was held back is plain text of the current kind."""
        if not self._pending:
            return []
        kind: DeltaKind = "thinking" if self._inside else "content"
        pending, self._pending = self._pending, ""
        return [Delta(kind, pending)]
