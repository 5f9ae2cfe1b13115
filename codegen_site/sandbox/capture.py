"""A run's output as the caller gets it: the head and a tail ring, so pytest's summary at the
end stays visible however much the code printed before it."""

from __future__ import annotations


class Capture:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.tail_max = min(8192, cap // 4)
        self.head_max = cap - self.tail_max
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self.head_max - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if data:
            self.tail += data
            if len(self.tail) > self.tail_max:
                del self.tail[: len(self.tail) - self.tail_max]

    def text(self) -> str:
        if self.total <= self.cap:
            raw = bytes(self.head + self.tail)
            return raw.decode("utf-8", "replace")
        omitted = self.total - len(self.head) - len(self.tail)
        return (self.head.decode("utf-8", "replace")
                + f"\n[output truncated at {self.cap} bytes: {omitted} bytes omitted]\n"
                + self.tail.decode("utf-8", "replace"))
