"""Pick a model tier from the task text: simple, medium or complex.

A cheap, deterministic heuristic (no LLM call): size of the request, code it
carries, and words that signal design-level or multi-part work."""

from __future__ import annotations

import re

TIERS = ("simple", "medium", "complex")

COMPLEX_MARKERS = (
    "architecture", "architect", "distributed", "concurren", "multithread", "thread-safe", "async",
    "optimi", "performance", "refactor", "scalab", "microservice", "security", "compiler", "interpreter",
    "parser", "database schema", "migration", "design a", "design an", "system design", "end-to-end",
    "full application", "framework", "protocol", "state machine", "cache", "transaction",
    "архитектур", "распредел", "многопоточ", "параллел", "оптимиз", "рефактор", "масштаб", "безопасност",
    "компилятор", "интерпретатор", "парсер", "протокол", "транзакц",
)
SIMPLE_MARKERS = (
    "hello", "hi ", "explain", "what is", "what's", "rename", "typo", "print", "reverse", "sum of",
    "factorial", "fibonacci", "is even", "is odd", "palindrome", "max of", "min of", "convert",
    "привет", "объясни", "что такое", "факториал", "сумм", "переверн", "палиндром",
)


def classify_task(text: str) -> str:
    lowered = (text or "").lower()
    words = re.findall(r"\w+", lowered)
    code_lines = lowered.count("\n")
    complex_hits = sum(marker in lowered for marker in COMPLEX_MARKERS)
    simple_hits = sum(marker in lowered for marker in SIMPLE_MARKERS)
    # Numbered or bulleted requirement lists signal multi-part work.
    list_items = len(re.findall(r"^\s*(?:\d+[.)]|[-*•])\s+", text or "", flags=re.MULTILINE))

    score = len(words) / 60 + code_lines / 40 + complex_hits + list_items / 4 - simple_hits * 0.5
    if complex_hits >= 2 or score >= 2.0:
        return "complex"
    # Short requests are simple when they name a routine job or are a few words.
    if complex_hits == 0 and list_items < 2 and (len(words) <= 6 or (simple_hits and len(words) <= 20)):
        return "simple"
    return "medium"
