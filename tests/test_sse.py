"""SSE framing: token frames read back exactly as sent, whichever way a client splits lines."""

import json

import pytest

from codegen_site.core.errors import ServiceBusy
from codegen_site.core.sse import TOKENS, error_event, sse_frame, sse_stream, sse_text_frames
from codegen_site.llm import Delta
from tests.sse import parse_sse

AWKWARD = ["plain", "two\nlines", 'quote " and \\ backslash', "tab\tand\r\nCRLF", "ünïcødé ✓ 🐍",
           "line\u2028separator\u2029paragraph", "next\x85line", "form\x0cfeed", "nul\x00byte", "",
           " leading and trailing "]


@pytest.mark.parametrize("text", AWKWARD)
def test_a_token_frame_round_trips_even_through_splitlines(text):
    frame = sse_frame("content", text).decode()
    assert parse_sse(frame) == [("content", text)]
    # Line readers built on str.splitlines (httpx's aiter_lines is one) split at
    # more than CR/LF: the data field must still be one whole line.
    lines = [line for line in frame.splitlines() if line]
    assert lines[0] == "event: content" and len(lines) == 2
    assert json.loads(lines[1][len("data:"):]) == text


def test_error_details_with_line_separators_stay_on_one_line():
    frame = sse_frame("error", {"detail": "bad\u2028thing", "status": 502}).decode()
    assert len([line for line in frame.splitlines() if line]) == 2
    assert parse_sse(frame) == [("error", {"detail": "bad\u2028thing", "status": 502})]


def test_a_batch_is_the_same_bytes_as_its_frames_one_by_one():
    batch = [Delta("thinking" if i % 3 == 0 else "content", text) for i, text in enumerate(AWKWARD)]
    joined = b"".join(sse_frame(delta.kind, delta.text) for delta in batch)
    assert sse_text_frames(batch) == joined
    assert parse_sse(joined.decode()) == [(delta.kind, delta.text) for delta in batch]


def test_parse_sse_splits_lines_only_at_cr_and_lf():
    # What another server may send unescaped: per the SSE spec it is part of the data.
    assert parse_sse('event: content\r\ndata: "a\u2028b"\r\n\r\n') == [("content", "a\u2028b")]
    assert parse_sse("data: plain\rdata: more\r\r") == [("message", "plain\nmore")]


async def test_a_stream_of_events_is_framed_and_an_exception_ends_it_with_an_error_event():
    async def events():
        yield TOKENS, [Delta("thinking", "hm"), Delta("content", "Hi")]
        yield "plan", {"content": "step"}
        raise ServiceBusy("queue full")

    chunks = [chunk async for chunk in sse_stream(events())]
    assert len(chunks) == 3  # a token batch is one write
    assert parse_sse(b"".join(chunks).decode()) == [
        ("thinking", "hm"), ("content", "Hi"), ("plan", {"content": "step"}),
        ("error", {"detail": "queue full", "status": 429})]


async def test_a_stream_may_add_context_to_its_own_error_event():
    async def events():
        yield error_event(ServiceBusy(), conversation_id="abc")

    chunks = [chunk async for chunk in sse_stream(events())]
    assert parse_sse(b"".join(chunks).decode()) == [
        ("error", {"detail": ServiceBusy.default_detail, "status": 429, "conversation_id": "abc"})]


async def test_closing_the_stream_closes_the_event_generator():
    closed = []

    async def events():
        try:
            while True:
                yield "content", "x"
        finally:
            closed.append(True)

    stream = sse_stream(events())
    assert await anext(stream) == sse_frame("content", "x")
    await stream.aclose()
    assert closed == [True]
