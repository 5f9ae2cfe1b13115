// Code search: index a folder (POST /rag/index) while /rag/status is polled for its progress;
// search (POST /rag/search) and show each chunk at path:line, matches marked, linked to the file.
"use strict";

(function () {
  const { api, el, escapeHtml, showError, formatTime } = CG;
  const $ = (id) => document.getElementById(id);
  let polling = null;
  let indexing = false;

  function showStatus(status) {
    const parts = [`Index ${status.status}`, `${status.documents} chunks`, `${status.files} files`];
    if (status.roots && status.roots.length) parts.push("from " + status.roots.join(", "));
    if (status.last_indexed) parts.push("last indexed " + formatTime(status.last_indexed));
    if (status.embedding_provider) parts.push(`embeddings: ${status.embedding_provider}${status.embedding_model ? " " + status.embedding_model : ""}`);
    $("rag-status").textContent = parts.join(" · ");
    if (status.error) $("rag-status").append(el("span", { class: "error", text: " · " + status.error }));
    const progress = status.progress;
    // A poll answered after the run ended must not put its progress back.
    if (indexing && status.status === "indexing" && progress && progress.files_total) {
      $("index-progress").hidden = false;
      $("index-progress").max = progress.files_total;
      $("index-progress").value = progress.files_done;
      $("index-state").textContent = `Indexing ${progress.path}: ${progress.files_done} of ${progress.files_total} files`;
    }
    return status;
  }

  async function refreshStatus() {
    try { return showStatus(await api("GET", "/rag/status")); } catch (_) { return null; }
  }

  async function index(event) {
    event.preventDefault();
    const path = $("index-path").value || ".";
    $("index").disabled = true;
    $("index-error").hidden = true;
    $("index-state").textContent = "Indexing…";
    $("index-progress").hidden = false;
    $("index-progress").removeAttribute("value");
    indexing = true;
    polling = setInterval(refreshStatus, 700);
    try {
      const result = await api("POST", "/rag/index?path=" + encodeURIComponent(path));
      $("index-state").textContent = `Indexed ${result.path}: ${result.files} files (${result.chunks} chunks) embedded, ` +
        `${result.skipped} unchanged, ${result.removed} removed, in ${result.seconds.toFixed(1)} s.`;
    } catch (error) {
      $("index-state").textContent = "";
      showError($("index-error"), error);
    } finally {
      indexing = false;
      clearInterval(polling);
      $("index-progress").hidden = true;
      $("index").disabled = false;
      refreshStatus();
    }
  }

  function terms(query) {
    return [...new Set(query.toLowerCase().match(/[a-z_][a-z0-9_]{2,}/g) || [])];
  }

  function marked(text, words) {
    const html = escapeHtml(text);
    if (!words.length) return html;
    const pattern = new RegExp("(" + words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|") + ")", "gi");
    // Only outside entities: the words are letters, digits and underscores.
    return html.replace(pattern, "<mark>$1</mark>");
  }

  function hitView(hit, words) {
    const link = `/ui/files?path=${encodeURIComponent(hit.path)}&line=${hit.start_line}`;
    const lines = hit.content.split("\n");
    const gutter = el("div", { class: "gutter" }, lines.map((_, i) => el("span", { class: "line", text: String(hit.start_line + i) })));
    const source = el("div", { class: "src" });
    source.innerHTML = lines.map((line) => `<span class="line">${marked(line, words) || " "}</span>`).join("");
    return el("article", { class: "hit" },
      el("header", {}, el("a", { href: link, class: "mono", text: `${hit.path}:${hit.start_line}` }),
        hit.symbol ? el("code", { text: hit.symbol }) : null,
        el("span", { class: "muted small", text: `lines ${hit.start_line}–${hit.end_line} · score ${hit.score.toFixed(3)}` })),
      el("pre", { class: "numbered mono" }, gutter, source));
  }

  async function search(event) {
    event.preventDefault();
    const query = $("query").value;
    if (!query.trim()) return;
    $("search-error").hidden = true;
    $("search-count").textContent = "Searching…";
    try {
      const hits = await api("POST", "/rag/search", { query, mode: $("mode").value });
      const words = terms(query);
      $("search-count").textContent = hits.length ? `${hits.length} chunks` : "Nothing found. Is the folder indexed?";
      $("hits").replaceChildren(...hits.map((hit) => hitView(hit, words)));
    } catch (error) {
      $("search-count").textContent = "";
      showError($("search-error"), error);
    }
  }

  $("index-form").addEventListener("submit", index);
  $("search-form").addEventListener("submit", search);
  refreshStatus();
})();
