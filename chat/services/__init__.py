"""Chat's writes and orchestration; reads are chat.selectors.

- context: what a turn sends to the model, fitted to its context window (system prompt, the newest
  history that fits, the @codebase chunks that fit), and `turn_budget`, the 413 for a question too long;
- turns: the turn's storage, the question before the model is asked and the answer after;
- replies: `reply` (the whole answer, POST /chat) and `turn_events` (the stream, /chat/stream);
- conversations: `update_conversation` (rename) and `delete_conversation`."""

from chat.services.context import turn_budget
from chat.services.conversations import delete_conversation, update_conversation
from chat.services.replies import reply, turn_events

__all__ = ["delete_conversation", "reply", "turn_budget", "turn_events", "update_conversation"]
