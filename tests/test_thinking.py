import pytest

from codegen_site.llm import Delta, ThinkSplitter


def split(chunks):
    splitter = ThinkSplitter()
    out = []
    for chunk in chunks:
        out.extend(splitter.feed(chunk))
    out.extend(splitter.flush())
    merged = {"content": "", "thinking": ""}
    for delta in out:
        merged[delta.kind] += delta.text
    return merged, out


TEXT = "Intro <think>step one, step two</think>The answer is 42."


@pytest.mark.parametrize("cut", range(1, len(TEXT)))
def test_tag_cut_at_every_position(cut):
    merged, _ = split([TEXT[:cut], TEXT[cut:]])
    assert merged == {"content": "Intro The answer is 42.", "thinking": "step one, step two"}


def test_one_character_chunks():
    merged, _ = split(list(TEXT))
    assert merged == {"content": "Intro The answer is 42.", "thinking": "step one, step two"}


def test_angle_brackets_that_are_not_tags_pass_through():
    merged, _ = split(["if a <", "b and c <th", "ing> d"])
    assert merged == {"content": "if a <b and c <thing> d", "thinking": ""}


def test_unclosed_think_stays_thinking_and_trailing_partial_tag_is_flushed():
    merged, _ = split(["<think>still going </thi"])
    assert merged == {"content": "", "thinking": "still going </thi"}


def test_text_is_not_held_back_longer_than_needed():
    splitter = ThinkSplitter()
    assert splitter.feed("hello <t") == [Delta("content", "hello ")]
    assert splitter.feed("able>") == [Delta("content", "<table>")]
