// Shared by every page: JSON calls with the CSRF token, a server-sent-events reader over
// fetch (POST bodies, abortable), the live status line from /health, a small Markdown
// renderer that escapes HTML first, code highlighting and copy buttons.
"use strict";

const CG = (function () {
  const csrfToken = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  async function errorFrom(response) {
    let detail = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && body.detail) detail = body.detail;
    } catch (_) { /* not JSON: keep the status line */ }
    return new ApiError(response.status, detail);
  }

  function requestInit(method, body, signal) {
    const headers = { "Accept": "application/json" };
    if (method !== "GET") headers["X-CSRFToken"] = csrfToken();
    const init = { method, headers, credentials: "same-origin", signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return init;
  }

  // JSON in, JSON out; a non-2xx answer throws ApiError carrying the server's `detail`.
  async function api(method, path, body, signal) {
    const response = await fetch(path, requestInit(method, body, signal));
    if (response.status === 401 && document.body.dataset.loginNeeded !== undefined) {
      window.location = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    }
    if (!response.ok) throw await errorFrom(response);
    if (response.status === 204) return null;
    return response.json();
  }

  // Reads a text/event-stream answer, calling onEvent(name, data) per frame (data parsed as
  // JSON). Resolves when the stream ends; rejects with AbortError when `signal` aborts it.
  async function stream(method, path, body, onEvent, signal) {
    const init = requestInit(method, body, signal);
    // JSON too: errors before a stream starts come as JSON, and some views negotiate.
    init.headers["Accept"] = "text/event-stream, application/json";
    const response = await fetch(path, init);
    if (!response.ok) throw await errorFrom(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let name = "message";
    let data = [];
    const dispatch = () => {
      if (data.length) {
        const text = data.join("\n");
        let value = text;
        try { value = JSON.parse(text); } catch (_) { /* plain text data */ }
        onEvent(name, value);
      }
      name = "message";
      data = [];
    };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      // Lines end at CR, LF or CRLF (the SSE spec); a last unfinished line waits for more.
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") dispatch();
        else if (line.startsWith(":")) continue;
        else {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let rest = colon < 0 ? "" : line.slice(colon + 1);
          if (rest.startsWith(" ")) rest = rest.slice(1);
          if (field === "event") name = rest;
          else if (field === "data") data.push(rest);
        }
      }
    }
    dispatch();
  }

  // --- small DOM helpers ------------------------------------------------------------------
  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key in node && typeof value !== "string") node[key] = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Worth trying again: the network or the server failed, or a limit was hit. A 4xx answer
  // (a missing file, a refused value) says the same the next time, so it gets no Retry.
  function retryable(error) {
    const status = error && error.status;
    return !status || status >= 500 || status === 429 || status === 408;
  }

  function showError(container, error, retry) {
    container.replaceChildren(el("span", { text: error.detail || error.message || String(error) }));
    if (retry && retryable(error)) {
      container.append(" ", el("button", { type: "button", class: "retry", text: "Retry", onclick: retry }));
    }
    container.hidden = false;
  }

  function copyText(text, button) {
    const done = () => {
      if (!button) return;
      const label = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1200);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
    } else {
      fallbackCopy(text, done);
    }
  }

  function fallbackCopy(text, done) {
    const area = el("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    try { document.execCommand("copy"); } catch (_) { /* nothing more to try */ }
    area.remove();
    done();
  }

  function download(name, text) {
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  // --- syntax highlighting ----------------------------------------------------------------
  const KEYWORDS = {
    python: "False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case self",
    js: "break case catch class const continue debugger default delete do else export extends false finally for function if import in instanceof let new null of return static super switch this throw true try typeof undefined var void while with yield async await",
    shell: "if then else elif fi for while do done case esac function in export local return echo cd",
  };
  const LANGUAGE = { py: "python", python: "python", python3: "python", js: "js", javascript: "js", ts: "js",
    typescript: "js", json: "js", java: "js", c: "js", cpp: "js", go: "js", rust: "js", sh: "shell",
    bash: "shell", shell: "shell", console: "shell" };

  function highlight(code, language) {
    const kind = LANGUAGE[(language || "").toLowerCase()] || (language ? "js" : "python");
    const words = new Set(KEYWORDS[kind].split(" "));
    const comment = kind === "js" ? String.raw`\/\/[^\n]*|\/\*[\s\S]*?\*\/` : String.raw`#[^\n]*`;
    const strings = String.raw`"""[\s\S]*?"""|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|` + "`(?:\\\\.|[^`\\\\])*`";
    const pattern = new RegExp(`(${comment})|(${strings})|(\\b\\d[\\d_]*(?:\\.\\d+)?(?:e[+-]?\\d+)?\\b)|(@[\\w.]+)|([A-Za-z_$][\\w$]*)`, "g");
    let html = "";
    let last = 0;
    for (const match of code.matchAll(pattern)) {
      html += escapeHtml(code.slice(last, match.index));
      const [token, isComment, isString, isNumber, isDecorator, word] = match;
      let cls = null;
      if (isComment) cls = "tok-comment";
      else if (isString) cls = "tok-string";
      else if (isNumber) cls = "tok-number";
      else if (isDecorator) cls = "tok-decorator";
      else if (word && words.has(word)) cls = "tok-keyword";
      else if (word && /^[A-Z]/.test(word) && kind !== "shell") cls = "tok-type";
      html += cls ? `<span class="${cls}">${escapeHtml(token)}</span>` : escapeHtml(token);
      last = match.index + token.length;
    }
    return html + escapeHtml(code.slice(last));
  }

  // A <pre> with highlighted code and a copy button.
  function codeBlock(code, language) {
    const pre = el("pre", { class: "code" });
    const inner = el("code", { class: language ? "language-" + language : "" });
    inner.innerHTML = highlight(code, language);
    pre.append(inner);
    return wrapCode(pre, () => code, language);
  }

  function wrapCode(pre, textOf, language) {
    const copy = el("button", { type: "button", class: "copy", text: "Copy", title: "Copy the code" });
    copy.addEventListener("click", () => copyText(textOf(), copy));
    return el("div", { class: "codeblock" }, el("div", { class: "codebar" }, el("span", { class: "muted", text: language || "" }), copy), pre);
  }

  // --- Markdown (a safe subset): the text is escaped before any markup is added -----------
  function inline(text) {
    return text.split(/(`+[^`]*`+)/).map((part) => {
      if (/^`+[^`]*`+$/.test(part) && part.length > 1) {
        return "<code>" + escapeHtml(part.replace(/^`+|`+$/g, "")) + "</code>";
      }
      let html = escapeHtml(part);
      html = html.replace(/\[([^\]]+)\]\(((?:https?:\/\/|\/)[^\s)]*)\)/g,
        (_, label, href) => `<a href="${href}" rel="noopener noreferrer" target="_blank">${label}</a>`);
      html = html.replace(/\*\*([^*]+)\*\*|__([^_]+)__/g, (_, a, b) => `<strong>${a || b}</strong>`);
      html = html.replace(/(^|[^\w*])\*([^*\s][^*]*)\*(?!\w)|(^|\W)_([^_\s][^_]*)_(?!\w)/g,
        (_, p1, a, p2, b) => `${p1 || p2 || ""}<em>${a || b}</em>`);
      return html;
    }).join("");
  }

  // Returns a DocumentFragment. An unclosed fence (a stream still arriving) shows as code.
  function renderMarkdown(text) {
    const fragment = document.createDocumentFragment();
    const lines = String(text).split("\n");
    let paragraph = [];
    let list = null;
    const flushParagraph = () => {
      if (paragraph.length) {
        const p = el("p");
        p.innerHTML = paragraph.map(inline).join("<br>");
        fragment.append(p);
        paragraph = [];
      }
    };
    const flushList = () => { if (list) { fragment.append(list); list = null; } };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      const fence = line.match(/^\s*(```+|~~~+)\s*([\w+#.-]*)/);
      if (fence) {
        flushParagraph(); flushList();
        const body = [];
        let j = i + 1;
        while (j < lines.length && !lines[j].trim().startsWith(fence[1])) body.push(lines[j++]);
        fragment.append(codeBlock(body.join("\n"), fence[2]));
        i = j;
        continue;
      }
      const heading = line.match(/^(#{1,6})\s+(.*)$/);
      const bullet = line.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/);
      if (heading) {
        flushParagraph(); flushList();
        const h = el("h" + Math.min(6, heading[1].length + 2));
        h.innerHTML = inline(heading[2]);
        fragment.append(h);
      } else if (bullet) {
        flushParagraph();
        const tag = /\d/.test(bullet[1]) ? "ol" : "ul";
        if (!list || list.tagName.toLowerCase() !== tag) { flushList(); list = el(tag); }
        const item = el("li");
        item.innerHTML = inline(bullet[2]);
        list.append(item);
      } else if (/^\s*>/.test(line)) {
        flushParagraph(); flushList();
        const quote = el("blockquote");
        quote.innerHTML = inline(line.replace(/^\s*>\s?/, ""));
        fragment.append(quote);
      } else if (!line.trim()) {
        flushParagraph(); flushList();
      } else {
        flushList();
        paragraph.push(line);
      }
    }
    flushParagraph(); flushList();
    return fragment;
  }

  // Renders at most once per frame, however fast chunks arrive; after() runs once it is drawn.
  function renderer(target, render, after) {
    let pending = false;
    let text = "";
    const draw = () => { target.replaceChildren(render(text)); if (after) after(); };
    return {
      set(value) {
        text = value;
        if (pending) return;
        pending = true;
        requestAnimationFrame(() => { pending = false; draw(); });
      },
      now(value) { text = value; draw(); },
    };
  }

  // --- the status line ----------------------------------------------------------------------
  let modelReadAt = 0;
  // The model changes only through the settings, which call this with force: /config is read
  // on load, then at most every 30 s; /health on every call.
  async function refreshStatus(force = true) {
    const dot = document.querySelector("#status .dot");
    if (!dot) return;
    try {
      const health = await api("GET", "/health");
      document.getElementById("status-provider").textContent = health.llm_provider;
      document.getElementById("status-available").textContent = health.llm_available ? "available" : "not answering";
      dot.dataset.state = health.llm_available ? "ok" : "bad";
      document.getElementById("status").dataset.provider = health.llm_provider;
      // Not logged in yet (the login page): /config would only answer 401.
      if (document.body.dataset.loggedOut !== undefined) return;
      if (!force && Date.now() - modelReadAt < 30000) return;
      modelReadAt = Date.now();
      try {
        const config = await api("GET", "/config");
        const table = Object.assign({}, config.models.defaults, config.models[health.llm_provider] || {});
        document.getElementById("status-model").textContent = table.medium || "";
      } catch (_) { /* not logged in yet: the provider is enough */ }
    } catch (error) {
      dot.dataset.state = "bad";
      document.getElementById("status-available").textContent = "server not answering";
    }
  }

  function startStatus() {
    refreshStatus();
    setInterval(() => { if (!document.hidden) refreshStatus(false); }, 5000);
    document.addEventListener("visibilitychange", () => { if (!document.hidden) refreshStatus(false); });
    const toggle = document.querySelector(".nav-toggle");
    if (toggle) {
      toggle.addEventListener("click", () => {
        const open = document.body.classList.toggle("nav-open");
        toggle.setAttribute("aria-expanded", String(open));
      });
    }
  }

  // --- models ------------------------------------------------------------------------------
  const bareModel = (name) => String(name || "").replace(/:latest$/, "");
  const modelName = (entry) => typeof entry === "string" ? entry : entry && (entry.name || entry.id || entry.model);

  // Is a /models entry an embedding model? A provider that reports what a model can do
  // ({name, capabilities} or {name, families}) is believed; a bare name is one when it is
  // the embeddings model of the settings.
  function isEmbeddingModel(entry, embeddingsModel) {
    if (entry && typeof entry === "object") {
      const details = entry.details || {};
      const capabilities = entry.capabilities || details.capabilities;
      const families = entry.families || details.families;
      if (Array.isArray(capabilities) && capabilities.length) return !capabilities.some((c) => c === "completion" || c === "chat");
      if (Array.isArray(families) && families.length) return families.some((f) => /bert|embed/i.test(f));
    }
    return Boolean(embeddingsModel) && bareModel(modelName(entry)) === bareModel(embeddingsModel);
  }

  // The names of /models' answer (a list, or {models: [...]}) that are chat models.
  function chatModels(models, embeddingsModel) {
    const entries = Array.isArray(models) ? models : (models && models.models) || [];
    return entries.filter((entry) => modelName(entry) && !isEmbeddingModel(entry, embeddingsModel)).map(modelName);
  }

  function modelNames(models) {
    const entries = Array.isArray(models) ? models : (models && models.models) || [];
    return entries.map(modelName).filter(Boolean);
  }

  // Enter sends, Shift+Enter adds a line, Esc stops.
  function keyboard(textarea, send, stop) {
    textarea.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && stop) stop();
    });
  }

  // crypto.randomUUID exists only in secure contexts; a page served over plain HTTP on a LAN address is not one.
  function uuid4() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  function formatSize(bytes) {
    if (bytes === null || bytes === undefined) return "";
    if (bytes < 1024) return bytes + " B";
    const units = ["KB", "MB", "GB"];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
    return (value < 10 ? value.toFixed(1) : Math.round(value)) + " " + units[unit];
  }

  function formatTime(iso) {
    if (!iso) return "";
    const when = new Date(iso);
    return when.toLocaleString(undefined, { dateStyle: "short", timeStyle: "short" });
  }

  document.addEventListener("DOMContentLoaded", startStatus);

  return { api, stream, ApiError, el, escapeHtml, showError, copyText, download, highlight, codeBlock, wrapCode,
    renderMarkdown, renderer, keyboard, formatTime, formatSize, refreshStatus, uuid4, retryable,
    chatModels, modelNames };
})();
