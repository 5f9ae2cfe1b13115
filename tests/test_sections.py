"""Typed config sections: built from the merged config, converted once, rebuilt when it changes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from codegen_site.core.sections import build, section


@dataclass(frozen=True)
class Inner:
    name: str
    limit: float


@dataclass(frozen=True)
class Outer:
    count: int
    ratio: float
    enabled: bool
    names: tuple[str, ...]
    inner: Inner
    optional: int | None = None


def test_a_section_is_converted_once_and_follows_a_config_change(set_config):
    set_config({"typed_example": {"count": 3, "ratio": 2, "enabled": True, "names": ["a", "b"],
                                  "inner": {"name": "x", "limit": 5}, "unknown": 1}})
    first = section(Outer, "typed_example")
    assert first == Outer(3, 2.0, True, ("a", "b"), Inner("x", 5.0))
    assert isinstance(first.ratio, float) and isinstance(first.inner.limit, float)
    assert section(Outer, "typed_example") is first
    set_config({"typed_example": {"count": 4}})
    assert section(Outer, "typed_example").count == 4


@pytest.mark.parametrize("values, message", [
    ({"count": "3"}, "count must be int"),
    ({"count": True}, "count must be int"),
    ({"enabled": 1}, "enabled must be bool"),
    ({"ratio": "fast"}, "ratio must be float"),
])
def test_a_value_of_the_wrong_type_is_refused_with_its_name(values, message):
    good = {"count": 1, "ratio": 1.0, "enabled": False, "names": [], "inner": {"name": "n", "limit": 1}}
    with pytest.raises(TypeError, match=message):
        build(Outer, {**good, **values}, "example")


def test_a_missing_setting_is_named():
    with pytest.raises(KeyError, match="example.inner"):
        build(Outer, {"count": 1, "ratio": 1.0, "enabled": False, "names": []}, "example")
