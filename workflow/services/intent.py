"""Decide what a /workflow request is before any LLM call: a greeting, a request
for help, a general question (chat) or a coding task (the TDD pipeline).

A deterministic keyword heuristic: cheap, testable, and wrong only in ways the
user can fix by rephrasing ("write a function that ...")."""

from __future__ import annotations

import re

from workflow.config import configured
from workflow.models import Intent

GREETING, HELP, CHAT, CODE = Intent.GREETING, Intent.HELP, Intent.CHAT, Intent.CODE

_GREETING_WORDS = {
    "hi", "hello", "hey", "hiya", "howdy", "greetings", "yo", "sup", "morning", "evening", "afternoon",
    "good", "thanks", "thank", "you", "thx", "there", "bye", "goodbye", "ok", "okay",
    "привет", "здравствуй", "здравствуйте", "добрый", "доброе", "день", "утро", "вечер", "хай", "салют",
    "спасибо", "пока", "ку",
}
_GREETING_OPENERS = ("hi", "hello", "hey", "hiya", "howdy", "greetings", "good morning", "good evening",
                     "good afternoon", "thanks", "thank you", "привет", "здравствуй", "добрый", "доброе",
                     "хай", "салют", "спасибо")
_HELP_PATTERNS = (
    r"^/?help\b", r"^помощь\b", r"^/?справка\b", r"\bwhat can you do\b", r"\bhow do i use (you|this)\b",
    r"\bwhat are you\b", r"\bwho are you\b", r"\bhow does this (work|service work)\b",
    r"что ты умеешь", r"что ты можешь", r"кто ты\b", r"как (тобой|этим) пользоваться", r"^помоги\s*[?!.]*$",
    r"^(help me|помоги мне)\s*[?!.]*$",
)
# Verbs that ask for code to be produced or changed.
_CODE_VERBS = (
    "write", "implement", "create", "build", "make", "generate", "code up", "develop", "fix", "refactor",
    "add a", "add an", "convert", "parse", "sort", "compute", "calculate", "design", "program",
    "напиши", "написать", "реализуй", "реализовать", "создай", "создать", "сделай", "сделать",
    "сгенерируй", "разработай", "исправь", "перепиши", "посчитай", "вычисли", "отсортируй", "добавь",
)
# Things code is made of.
_CODE_NOUNS = (
    "function", "class", "method", "script", "program", "module", "algorithm", "decorator", "generator",
    "parser", "regex", "api", "endpoint", "cli", "test", "code", "snippet", "implementation", "def ",
    "функци", "класс", "метод", "скрипт", "программ", "модул", "алгоритм", "декоратор", "генератор",
    "парсер", "регуляр", "код", "тест",
)
_QUESTION_OPENERS = (
    "what", "why", "how", "when", "where", "which", "who", "is ", "are ", "does", "do ", "can ", "could ",
    "should", "explain", "describe", "tell me", "compare", "difference",
    "что", "почему", "зачем", "как ", "когда", "где", "какой", "какая", "какие", "кто", "объясни",
    "расскажи", "опиши", "в чем", "в чём", "чем ", "сравни", "разница",
)
_CODE_MARKERS = re.compile(r"```|^\s*(def|class|import|from)\s+\w", re.MULTILINE)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def classify_intent(task: str) -> str:
    text = " ".join((task or "").split()).lower()
    words = _words(text)
    if not words:
        return CHAT
    if any(re.search(pattern, text) for pattern in _HELP_PATTERNS):
        return HELP
    if len(words) <= 5 and text.startswith(_GREETING_OPENERS) and all(w in _GREETING_WORDS for w in words):
        return GREETING
    if _CODE_MARKERS.search(task):
        return CODE
    has_verb = any(re.search(rf"(^|\W){re.escape(verb)}", text) for verb in _CODE_VERBS)
    has_noun = any(noun in text for noun in _CODE_NOUNS)
    # "Can you write a function that ...?" is still a request for code.
    if has_verb and has_noun:
        return CODE
    is_question = text.endswith("?") or text.startswith(_QUESTION_OPENERS)
    if is_question:
        return CHAT
    if has_verb or has_noun:
        return CODE
    return CHAT


def _russian(task: str) -> bool:
    return bool(re.search(r"[а-яё]", task.lower()))


def template_answer(intent_kind: str, task: str) -> str:
    """Canned answers for greetings and help: instant and the same every time."""
    if intent_kind == GREETING:
        if _russian(task):
            return ("Привет! Я CodeGen AI. Опишите задачу на программирование (например, «Напиши функцию "
                    "факториала») — я составлю план, напишу тесты и код и проверю его в песочнице.")
        return ("Hello! I'm CodeGen AI. Describe a coding task (for example \"Write a function that checks "
                "whether a string is a palindrome\") and I'll plan it, write pytest tests, write the code "
                "and check it in a sandbox.")
    repairs = configured().max_repairs
    if _russian(task):
        return ("Я работаю по TDD: 1) план, 2) поиск по проиндексированному коду (если есть индекс RAG), "
                f"3) pytest-тесты, 4) код, 5) проверка в песочнице и до {repairs} попыток исправления, если тесты "
                "падают. Сформулируйте задачу: «Напиши функцию …». На общие вопросы я отвечаю как чат.")
    return ("I work test-first: 1) a plan, 2) research in the indexed codebase (when a RAG index exists), "
            f"3) pytest tests, 4) the code, 5) a sandbox run of the tests, with up to {repairs} repair rounds while "
            "they fail. "
            "Ask for code like \"Write a function that ...\"; general programming questions get a chat answer. "
            "Pass the returned session_id with the next task to build on the previous code.")
