// Code search: index a folder (POST /rag/index) while /rag/status is polled for its progress;
// search (POST /rag/search) and show each chunk with its best-matching line marked and linked
// (path:line opens the file there), the query's identifiers and words marked as whole words.
"use strict";

(function () {
  const { api, el, showError, formatTime } = CG;
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

  // The query's identifiers and words, less the words every question has.
  const STOP_WORDS = new Set(("a an and any are as at be been by can could do does did for from has have how i if in into is " +
    "it its me my of on or our should so than that the their them then there these this those to was we were what when " +
    "where which while who whom why will with would you your").split(" "));

  function terms(query) {
    const words = (query.match(/[A-Za-z_][A-Za-z0-9_]*/g) || [])
      .filter((word) => word.length > 1 && !STOP_WORDS.has(word.toLowerCase()));
    return [...new Set(words.map((word) => word.toLowerCase()))];
  }

  // Whole identifiers only: "result" marks `result`, not `results` or `get_result`.
  function termPattern(words) {
    if (!words.length) return null;
    const alternatives = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|");
    return new RegExp(`(?<![A-Za-z0-9_])(${alternatives})(?![A-Za-z0-9_])`, "gi");
  }

  // A line as text nodes with its matches in <mark> (nothing is parsed as HTML).
  function markedLine(text, pattern) {
    const line = el("span", { class: "line" });
    if (!pattern || !text) { line.textContent = text || " "; return line; }
    text.split(pattern).forEach((part, index) => {
      if (!part) return;
      line.append(index % 2 ? el("mark", { text: part }) : document.createTextNode(part));
    });
    return line;
  }

  // The line of the chunk that matches the query best: the most different terms, then the
  // most matches, then the first; null when no line matches. The server's own `line` wins
  // when it gives one.
  function bestLine(hit, lines, pattern) {
    if (Number.isInteger(hit.line) && hit.line >= hit.start_line && hit.line <= hit.end_line) return hit.line;
    let best = null;
    let bestScore = 0;
    lines.forEach((text, index) => {
      const found = pattern ? text.match(pattern) || [] : [];
      const score = new Set(found.map((m) => m.toLowerCase())).size * 1000 + found.length;
      if (score > bestScore) { best = hit.start_line + index; bestScore = score; }
    });
    return best;
  }

  function hitView(hit, words) {
    const pattern = termPattern(words);
    const lines = hit.content.split("\n");
    const best = bestLine(hit, lines, pattern);
    const line = best || hit.start_line;
    const link = `/ui/files?path=${encodeURIComponent(hit.path)}#L${line}`;
    // One grid row per line (number, text): a long line wraps and its number stays beside it.
    const rows = lines.flatMap((text, i) => {
      const number = hit.start_line + i;
      const mark = number === best ? " best" : "";
      const view = markedLine(text, pattern);
      view.className += mark;
      view.dataset.line = number;
      return [el("span", { class: "n" + mark, "aria-hidden": "true", text: String(number) }), view];
    });
    return el("article", { class: "hit" },
      el("header", {}, el("a", { href: link, class: "mono", text: `${hit.path}:${line}`, title: `Open ${hit.path} at line ${line}` }),
        hit.symbol ? el("code", { text: hit.symbol }) : null,
        el("span", { class: "muted small", text: `lines ${hit.start_line}–${hit.end_line} · score ${hit.score.toFixed(3)}` })),
      el("pre", { class: "hit-lines mono" }, rows));
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
