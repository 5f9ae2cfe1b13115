"""The settings the chat app reads, as typed sections (codegen_site.core.sections): [chat],
[persistence], and of [rag] the number of code chunks an @codebase question takes. Converted
once per config version, so nothing here casts a raw config value."""

from __future__ import annotations

from dataclasses import dataclass

from codegen_site.core.sections import section


@dataclass(frozen=True)
class ChatSection:
    system_prompt: str          # sent first in every conversation; "" sends none
    max_message_chars: int      # the longest user message accepted
    max_history_items: int      # the most history items a client may send


@dataclass(frozen=True)
class PersistenceSection:
    max_context_messages: int   # stored messages sent back to the model with a question (newest kept)


@dataclass(frozen=True)
class CodebaseSection:
    top_k: int                  # code index chunks given to the model for an @codebase question


def chat_settings() -> ChatSection:
    return section(ChatSection, "chat")


def persistence_settings() -> PersistenceSection:
    return section(PersistenceSection, "persistence")


def codebase_settings() -> CodebaseSection:
    return section(CodebaseSection, "rag")
