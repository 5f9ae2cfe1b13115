// Chat: conversations (list, open, rename, delete, search; a drawer on a phone), answers
// streamed from POST /chat/stream and rendered as Markdown, reasoning apart, stop, retry,
// the chat models of /models, @codebase and file-name completion in the message box.
"use strict";

(function () {
  const { api, stream, el, renderMarkdown, renderer, showError, formatTime } = CG;
  const $ = (id) => document.getElementById(id);
  const list = $("conversations");
  const search = $("conversation-search");
  const messages = $("messages");
  const empty = $("chat-empty");
  const form = $("chat-form");
  const input = $("chat-input");
  const sendButton = $("send");
  const stopButton = $("stop");
  const picker = $("model-picker");
  const listError = $("conversations-error");
  const title = $("chat-title");
  const jump = $("jump-latest");

  let conversationId = new URLSearchParams(location.search).get("c");
  let conversations = [];
  let controller = null;

  function setConversation(id) {
    conversationId = id;
    const url = new URL(location.href);
    if (id) url.searchParams.set("c", id); else url.searchParams.delete("c");
    history.replaceState(null, "", url);
    for (const item of list.children) {
      item.classList.toggle("active", item.dataset.id === id);
      const open = item.querySelector(".open");
      if (open && item.dataset.id === id) open.setAttribute("aria-current", "true");
      else if (open) open.removeAttribute("aria-current");
    }
    showTitle();
  }

  function showTitle() {
    const known = conversations.find((c) => c.id === conversationId);
    title.textContent = conversationId ? (known && known.title) || "Conversation" : "New conversation";
  }

  // --- the list as a drawer at phone width ------------------------------------------------
  const toggle = $("conversations-toggle");
  const backdrop = $("drawer-backdrop");

  function setDrawer(open) {
    document.body.classList.toggle("drawer-open", open);
    toggle.setAttribute("aria-expanded", String(open));
    backdrop.hidden = !open;
    if (open) search.focus();
    else if (document.activeElement && $("conversations-panel").contains(document.activeElement)) toggle.focus();
  }

  toggle.addEventListener("click", () => setDrawer(!document.body.classList.contains("drawer-open")));
  $("close-drawer").addEventListener("click", () => setDrawer(false));
  backdrop.addEventListener("click", () => setDrawer(false));
  $("conversations-panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("drawer-open")) {
      event.stopPropagation();
      setDrawer(false);
    }
  });

  // --- the conversation list -------------------------------------------------------------
  async function loadConversations() {
    try {
      conversations = await api("GET", "/conversations?limit=500");
      listError.hidden = true;
      renderList();
      showTitle();
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
    const current = conversation.id === conversationId;
    const item = el("li", { "data-id": conversation.id, class: current ? "active" : "" });
    const open = el("button", { type: "button", class: "open", title: "Open", "aria-current": current ? "true" : null },
      el("span", { class: "title", text: conversation.title || "(untitled)" }),
      el("span", { class: "muted small", text: `${formatTime(conversation.created_at)} · ${conversation.message_count} messages` }));
    open.addEventListener("click", () => { setDrawer(false); openConversation(conversation.id); });
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
        showTitle();
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

  // --- following the newest message --------------------------------------------------------
  // The list follows the newest message while the reader is at its end; scrolling up stops
  // that (a button brings it back), scrolling back down to the end starts it again. Only a
  // move up counts: content growing under a scroll this page made is not the reader's doing.
  let following = true;
  let lastTop = 0;
  const atEnd = () => messages.scrollHeight - messages.scrollTop - messages.clientHeight < 24;

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
    lastTop = messages.scrollTop;
    following = true;
    jump.hidden = true;
  }

  function follow() {
    if (following) scrollDown();
  }

  messages.addEventListener("scroll", () => {
    const top = messages.scrollTop;
    if (atEnd()) following = true;
    else if (top < lastTop) following = false;
    lastTop = top;
    jump.hidden = following;
  }, { passive: true });
  jump.addEventListener("click", () => { scrollDown(); input.focus(); });
  // The list changes size with the window, a phone's keyboard, or a taller message box.
  if (window.ResizeObserver) new ResizeObserver(() => follow()).observe(messages);

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
        el("a", { href: `/ui/files?path=${encodeURIComponent(source.path)}#L${source.start_line}`,
          class: "mono", text: `${source.path}:${source.start_line}-${source.end_line}` }),
        source.symbol ? " " : null, source.symbol ? el("code", { text: source.symbol }) : null))));
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
      if (conversation.title) title.textContent = conversation.title;
      scrollDown();
      input.focus();
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
    setDrawer(false);
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
    const content = renderer(body, renderMarkdown, follow);
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
        if (event === "content") { answer += data; content.set(answer); }
        else if (event === "thinking") {
          thinking += data;
          reasoning.hidden = false;
          reasoning.querySelector("pre").textContent = thinking;
          follow();
        } else if (event === "done") {
          header.textContent = "Assistant · " + data.model;
          setConversation(data.conversation_id);
          if (data.sources && data.sources.length) { answerView.append(sourcesView(data.sources)); follow(); }
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
          scrollDown();
          ask(text, retried);
        });
        follow();
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
    closeMentions();
    messageView("user", text);
    const answerView = messageView("assistant", "", "");
    scrollDown();
    ask(text, answerView);
  }

  function stop() {
    if (controller) controller.abort();
  }

  // --- the model picker: chat models only (CG.chatModels) ------------------------------------
  // ?details=true asks for each model's capabilities; a server that answers with bare names
  // ignores it, and the embeddings model of the settings is left out instead.
  async function loadModels() {
    const [models, config] = await Promise.allSettled([api("GET", "/models?details=true"), api("GET", "/config")]);
    if (models.status === "rejected") {
      const error = models.reason;
      picker.append(el("option", { disabled: true, text: "models unavailable: " + (error.detail || error) }));
      return;
    }
    const embeddings = config.status === "fulfilled" && config.value.embeddings ? config.value.embeddings.model : "";
    for (const name of CG.chatModels(models.value, embeddings)) picker.append(el("option", { value: name, text: name }));
  }

  // --- @codebase and file names in the message box -------------------------------------------
  const mentionList = $("mention-list");
  const mentionStatus = $("mention-status");
  let files = null;
  let filesLoading = null;
  let options = [];
  let active = -1;

  function loadFiles() {
    if (filesLoading) return filesLoading;
    const flatten = (entry, out) => {
      for (const child of entry.children || []) {
        if (child.kind === "file") out.push(child.path);
        flatten(child, out);
      }
      return out;
    };
    filesLoading = api("GET", "/files/tree?depth=8")
      .catch(() => api("GET", "/files/tree"))
      .then((tree) => { files = flatten(tree, []); }, () => { files = []; })
      .then(() => updateMentions());
    return filesLoading;
  }

  // The @word before the caret, if there is one.
  function mentionAt() {
    const before = input.value.slice(0, input.selectionStart);
    const match = before.match(/(^|\s)@([\w./-]*)$/);
    return match ? { start: before.length - match[2].length - 1, end: input.selectionStart, query: match[2] } : null;
  }

  function suggestions(query) {
    const wanted = query.toLowerCase();
    const found = [];
    if ("codebase".startsWith(wanted)) found.push({ value: "@codebase", label: "@codebase", note: "ask about the indexed code" });
    if (wanted && files) {
      const scored = files.map((path) => {
        const lower = path.toLowerCase();
        const name = lower.split("/").pop();
        const rank = name.startsWith(wanted) ? 0 : lower.startsWith(wanted) ? 1 : lower.includes(wanted) ? 2 : -1;
        return { path, rank };
      }).filter((item) => item.rank >= 0);
      scored.sort((a, b) => a.rank - b.rank || a.path.length - b.path.length || a.path.localeCompare(b.path));
      for (const item of scored.slice(0, 8)) found.push({ value: item.path, label: item.path, note: "file" });
    }
    return found;
  }

  function renderMentions() {
    mentionList.replaceChildren(...options.map((option, index) => {
      const item = el("li", { role: "option", id: "mention-" + index, "aria-selected": String(index === active),
        class: index === active ? "active" : "" }, el("span", { class: "mono", text: option.label }), " ",
      el("span", { class: "muted small", text: option.note }));
      // mousedown, not click: the box keeps its focus and caret.
      item.addEventListener("mousedown", (event) => { event.preventDefault(); accept(index); });
      return item;
    }));
    mentionList.hidden = !options.length;
    if (options.length && active >= 0) input.setAttribute("aria-activedescendant", "mention-" + active);
    else input.removeAttribute("aria-activedescendant");
  }

  function updateMentions() {
    const mention = mentionAt();
    const before = options.length;
    options = mention ? suggestions(mention.query) : [];
    active = options.length ? Math.min(Math.max(active, 0), options.length - 1) : -1;
    renderMentions();
    if (options.length !== before) {
      mentionStatus.textContent = options.length ? `${options.length} suggestions; Tab or Enter takes one` : "";
    }
    if (mention && mention.query && files === null) loadFiles();
  }

  function closeMentions() {
    options = [];
    active = -1;
    renderMentions();
  }

  // @codebase goes in as typed; a file's path replaces its @word, and the message is made an
  // @codebase question when it is not one yet (the search finds the file by its path).
  function accept(index) {
    const mention = mentionAt();
    const option = options[index];
    if (!mention || !option) return;
    const value = input.value;
    let text = value.slice(0, mention.start) + option.value + " ";
    let rest = value.slice(mention.end).replace(/^\s+/, "");
    if (option.value !== "@codebase" && !/^\s*@codebase\b/.test(text + rest)) text = "@codebase " + text.replace(/^\s+/, "");
    input.value = text + rest;
    input.setSelectionRange(text.length, text.length);
    closeMentions();
    input.focus();
  }

  input.addEventListener("input", updateMentions);
  input.addEventListener("click", updateMentions);
  input.addEventListener("blur", () => closeMentions());
  // Before CG.keyboard's handler: with suggestions open, Enter and Tab take one, Esc closes them.
  input.addEventListener("keydown", (event) => {
    if (!options.length) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      active = (active + (event.key === "ArrowDown" ? 1 : -1) + options.length) % options.length;
      renderMentions();
    } else if ((event.key === "Enter" && !event.shiftKey) || event.key === "Tab") {
      event.preventDefault();
      event.stopImmediatePropagation();
      accept(Math.max(active, 0));
    } else if (event.key === "Escape") {
      event.stopPropagation();
      closeMentions();
    }
  });

  form.addEventListener("submit", (event) => { event.preventDefault(); send(); });
  stopButton.addEventListener("click", stop);
  $("new-chat").addEventListener("click", newConversation);
  search.addEventListener("input", () => renderList(true));
  CG.keyboard(input, send, stop);

  loadConversations();
  loadModels();
  if (conversationId) openConversation(conversationId);
  input.focus();
})();
