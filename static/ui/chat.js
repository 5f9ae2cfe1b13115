// Chat: conversations (list, open, rename, delete, search), answers streamed from
// POST /chat/stream and rendered as Markdown, reasoning apart, stop, retry, model picker.
"use strict";

(function () {
  const { api, stream, el, renderMarkdown, renderer, showError, formatTime } = CG;
  const list = document.getElementById("conversations");
  const search = document.getElementById("conversation-search");
  const messages = document.getElementById("messages");
  const empty = document.getElementById("chat-empty");
  const form = document.getElementById("chat-form");
  const input = document.getElementById("chat-input");
  const sendButton = document.getElementById("send");
  const stopButton = document.getElementById("stop");
  const picker = document.getElementById("model-picker");
  const listError = document.getElementById("conversations-error");

  let conversationId = new URLSearchParams(location.search).get("c");
  let conversations = [];
  let controller = null;

  function setConversation(id) {
    conversationId = id;
    const url = new URL(location.href);
    if (id) url.searchParams.set("c", id); else url.searchParams.delete("c");
    history.replaceState(null, "", url);
    for (const item of list.children) item.classList.toggle("active", item.dataset.id === id);
  }

  // --- the conversation list -------------------------------------------------------------
  async function loadConversations() {
    try {
      conversations = await api("GET", "/conversations?limit=500");
      listError.hidden = true;
      renderList();
    } catch (error) {
      showError(listError, error, loadConversations);
    }
  }

  // A refresh (after every answer) waits while a title is being edited.
  function renderList(force) {
    if (force !== true && list.querySelector("input.rename")) return;
    const words = search.value.trim().toLowerCase();
    const shown = conversations.filter((c) => !words || (c.title || "").toLowerCase().includes(words));
    list.replaceChildren(...shown.map(listItem));
    if (!shown.length) list.append(el("li", { class: "muted", text: words ? "No title matches." : "No conversations yet." }));
  }

  function listItem(conversation) {
    const item = el("li", { "data-id": conversation.id, class: conversation.id === conversationId ? "active" : "" });
    const open = el("button", { type: "button", class: "open", title: "Open" },
      el("span", { class: "title", text: conversation.title || "(untitled)" }),
      el("span", { class: "muted small", text: `${formatTime(conversation.created_at)} · ${conversation.message_count} messages` }));
    open.addEventListener("click", () => openConversation(conversation.id));
    const rename = el("button", { type: "button", class: "icon", title: "Rename", "aria-label": "Rename", text: "✎" });
    rename.addEventListener("click", () => startRename(item, conversation));
    const remove = el("button", { type: "button", class: "icon", title: "Delete", "aria-label": "Delete", text: "×" });
    remove.addEventListener("click", () => deleteConversation(conversation));
    item.append(open, el("span", { class: "actions" }, rename, remove));
    return item;
  }

  function startRename(item, conversation) {
    const field = el("input", { type: "text", class: "rename", value: conversation.title, "aria-label": "New title" });
    const error = el("span", { class: "error small" });
    const save = async () => {
      try {
        const saved = await api("PATCH", `/conversations/${conversation.id}`, { title: field.value });
        // The list may have been read again meanwhile: update the entry it holds now.
        for (const entry of conversations) if (entry.id === saved.id) entry.title = saved.title;
        renderList(true);
      } catch (failure) {
        error.textContent = failure.detail || String(failure);
      }
    };
    field.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); save(); }
      if (event.key === "Escape") { event.stopPropagation(); renderList(true); }
    });
    item.replaceChildren(el("div", { class: "stack" }, field, error));
    field.focus();
    field.select();
  }

  async function deleteConversation(conversation) {
    if (!confirm(`Delete “${conversation.title}” and its messages?`)) return;
    try {
      await api("DELETE", `/conversations/${conversation.id}`);
      if (conversation.id === conversationId) newConversation();
      await loadConversations();
    } catch (error) {
      showError(listError, error);
    }
  }

  // --- messages ----------------------------------------------------------------------------
  function messageView(role, text, thinking, meta) {
    const body = el("div", { class: "body" });
    const reasoning = el("details", { class: "reasoning", hidden: !thinking },
      el("summary", { text: "Reasoning" }), el("pre", { text: thinking || "" }));
    const view = el("article", { class: `message ${role}` },
      el("header", { class: "muted small", text: role === "user" ? "You" : "Assistant" + (meta ? " · " + meta : "") }),
      reasoning, body, el("p", { class: "error", hidden: true }));
    if (role === "user") body.textContent = text;
    else body.replaceChildren(renderMarkdown(text || ""));
    messages.append(view);
    empty.hidden = true;
    return view;
  }

  // The code chunks an @codebase answer drew on, each linked to the file at its line.
  function sourcesView(sources) {
    return el("details", { class: "sources", open: true }, el("summary", { text: "Sources" }),
      el("ul", {}, sources.map((source) => el("li", {},
        el("a", { href: `/ui/files?path=${encodeURIComponent(source.path)}&line=${source.start_line}`,
          class: "mono", text: `${source.path}:${source.start_line}-${source.end_line}` }),
        source.symbol ? " " : null, source.symbol ? el("code", { text: source.symbol }) : null))));
  }

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  async function openConversation(id) {
    stop();
    try {
      const conversation = await api("GET", `/conversations/${id}`);
      messages.replaceChildren(empty);
      for (const message of conversation.messages) {
        if (message.role === "system") continue;
        const meta = message.role === "assistant" ? [message.model, message.finished ? "" : "unfinished"].filter(Boolean).join(" · ") : "";
        messageView(message.role, message.content, message.thinking, meta);
      }
      empty.hidden = conversation.messages.length > 0;
      setConversation(id);
      scrollDown();
    } catch (error) {
      if (error.status === 404) { newConversation(); return; }
      showError(listError, error, () => openConversation(id));
    }
  }

  function newConversation() {
    stop();
    messages.replaceChildren(empty);
    empty.hidden = false;
    setConversation(null);
    input.focus();
  }

  function busy(on) {
    stopButton.hidden = !on;
    sendButton.disabled = on;
  }

  async function ask(text, answerView) {
    const body = answerView.querySelector(".body");
    const reasoning = answerView.querySelector(".reasoning");
    const errorLine = answerView.querySelector(".error");
    const header = answerView.querySelector("header");
    const content = renderer(body, renderMarkdown);
    let answer = "";
    let thinking = "";
    errorLine.hidden = true;
    answerView.classList.add("streaming");
    controller = new AbortController();
    const mine = controller;
    busy(true);
    // A new conversation gets its id here, so a stopped first answer still belongs to it.
    if (!conversationId) setConversation(CG.uuid4());
    const request = { message: text, conversation_id: conversationId };
    if (picker.value) request.model = picker.value;
    try {
      await stream("POST", "/chat/stream", request, (event, data) => {
        if (event === "content") { answer += data; content.set(answer); scrollDown(); }
        else if (event === "thinking") {
          thinking += data;
          reasoning.hidden = false;
          reasoning.querySelector("pre").textContent = thinking;
        } else if (event === "done") {
          header.textContent = "Assistant · " + data.model;
          setConversation(data.conversation_id);
          if (data.sources && data.sources.length) answerView.append(sourcesView(data.sources));
        } else if (event === "error") {
          if (data.conversation_id) setConversation(data.conversation_id);
          throw new CG.ApiError(data.status, data.detail);
        }
      }, mine.signal);
      content.now(answer);
    } catch (error) {
      content.now(answer);
      if (error.name === "AbortError") {
        header.textContent = "Assistant · stopped";
        answerView.classList.add("stopped");
      } else {
        showError(errorLine, error, () => {
          answerView.remove();
          const retried = messageView("assistant", "", "");
          ask(text, retried);
        });
      }
    } finally {
      answerView.classList.remove("streaming");
      if (controller === mine) { controller = null; busy(false); }
      loadConversations();
    }
  }

  function send() {
    const text = input.value;
    if (!text.trim() || controller) return;
    input.value = "";
    messageView("user", text);
    const answerView = messageView("assistant", "", "");
    scrollDown();
    ask(text, answerView);
  }

  function stop() {
    if (controller) controller.abort();
  }

  async function loadModels() {
    try {
      const models = await api("GET", "/models");
      const names = Array.isArray(models) ? models : (models.models || []);
      for (const name of names) picker.append(el("option", { value: name, text: name }));
    } catch (error) {
      picker.append(el("option", { disabled: true, text: "models unavailable: " + (error.detail || error) }));
    }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  stopButton.addEventListener("click", stop);
  document.getElementById("new-chat").addEventListener("click", newConversation);
  search.addEventListener("input", () => renderList(true));
  CG.keyboard(input, send, stop);

  loadConversations();
  loadModels();
  if (conversationId) openConversation(conversationId);
})();
