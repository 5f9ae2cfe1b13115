// Files: the workspace tree (GET /files/tree, a level at a time), a read-only view with
// line numbers (GET /files/read), the file's backups. ?path=… opens a file, with the tree
// opened down to it; #L20 (or ?line=20) marks a line, and a click on a line number marks
// another, so the address can be shared.
"use strict";

(function () {
  const { api, el, showError, highlight, copyText } = CG;
  const $ = (id) => document.getElementById(id);
  const tree = $("tree");
  const treeError = $("tree-error");
  const title = $("file-path");
  const view = $("file-view");
  const fileError = $("file-error");
  const copyButton = $("copy-file");
  const copyLink = $("copy-line-link");
  let current = { path: null, content: "", line: null };

  async function listing(path) {
    return api("GET", "/files/tree?depth=1&path=" + encodeURIComponent(path || "."));
  }

  function entryView(entry) {
    const item = el("li");
    if (entry.kind === "dir") {
      const toggle = el("button", { type: "button", "aria-expanded": "false", "data-dir": entry.path, text: "▸ " + entry.name + "/" });
      let loaded = null;
      // Opens (or with open false, closes) the folder; resolves once its entries are listed.
      toggle.expand = async (open) => {
        toggle.setAttribute("aria-expanded", String(open));
        toggle.textContent = (open ? "▾ " : "▸ ") + entry.name + "/";
        if (!open) { if (loaded) loaded.hidden = true; return; }
        if (!loaded) {
          loaded = el("ul", { class: "tree" });
          item.append(loaded);
          try {
            const dir = await listing(entry.path);
            loaded.append(...(dir.children || []).map(entryView));
            if (!(dir.children || []).length) loaded.append(el("li", { class: "muted", text: "(empty)" }));
          } catch (error) {
            loaded.append(el("li", { class: "error", text: error.detail || String(error) }));
          }
        }
        loaded.hidden = false;
      };
      toggle.addEventListener("click", () => toggle.expand(toggle.getAttribute("aria-expanded") !== "true"));
      item.append(toggle);
    } else {
      const open = el("button", { type: "button", "data-path": entry.path, text: entry.name,
        title: entry.size !== null ? entry.size + " bytes" : entry.kind });
      open.addEventListener("click", () => openFile(entry.path));
      item.append(open);
      markCurrent(open);
    }
    return item;
  }

  function markCurrent(button) {
    const on = button.dataset.path === current.path;
    button.classList.toggle("current", on);
    if (on) button.setAttribute("aria-current", "true"); else button.removeAttribute("aria-current");
  }

  async function loadTree() {
    try {
      const root = await listing(".");
      tree.replaceChildren(...(root.children || []).map(entryView));
      if (!(root.children || []).length) tree.append(el("li", { class: "muted", text: "The workspace is empty." }));
      treeError.hidden = true;
    } catch (error) {
      tree.replaceChildren();
      showError(treeError, error, loadTree);
    }
  }

  // Opens the folders down to `path` and shows its entry as the current one.
  async function reveal(path) {
    const parts = path.split("/");
    for (let depth = 1; depth < parts.length; depth++) {
      const dir = parts.slice(0, depth).join("/");
      const toggle = [...tree.querySelectorAll("button[data-dir]")].find((button) => button.dataset.dir === dir);
      if (!toggle) return;
      if (toggle.getAttribute("aria-expanded") !== "true") await toggle.expand(true);
    }
    // Scrolled into view inside the tree's own box only: the page stays at the marked line.
    const button = [...tree.querySelectorAll("button[data-path]")].find((b) => b.dataset.path === path);
    const box = tree.closest(".tree-box");
    if (button && box && box.scrollHeight > box.clientHeight) {
      const offset = button.getBoundingClientRect().top - box.getBoundingClientRect().top;
      box.scrollTop += offset - box.clientHeight / 2;
    }
  }

  function numbered(content, language) {
    const lines = content.split("\n");
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    const gutter = el("div", { class: "gutter" }, lines.map((_, index) =>
      el("a", { href: `#L${index + 1}`, id: `L${index + 1}`, text: String(index + 1), "aria-label": `Line ${index + 1}` })));
    const source = el("div", { class: "src" });
    // Highlighted whole, then split per line so a string or comment over lines keeps its colour per line.
    const html = highlight(lines.join("\n"), language).split("\n");
    let open = "";
    source.append(...html.map((lineHtml, index) => {
      const line = el("span", { class: "line", "data-line": index + 1 });
      const opened = open + lineHtml;
      const spans = (opened.match(/<span[^>]*>/g) || []).length - (opened.match(/<\/span>/g) || []).length;
      line.innerHTML = opened + "</span>".repeat(Math.max(0, spans)) || " ";
      open = spans > 0 ? (opened.match(/<span[^>]*>/g) || []).slice(-spans).join("") : "";
      return line;
    }));
    return [gutter, source];
  }

  // The address says the file and the marked line: ?path=…#L20 (a ?line= becomes the #L form).
  function setAddress() {
    const url = new URL(location.href);
    if (current.path) url.searchParams.set("path", current.path); else url.searchParams.delete("path");
    url.searchParams.delete("line");
    url.hash = current.line ? `L${current.line}` : "";
    history.replaceState(null, "", url);
  }

  function markLine(line, scroll) {
    current.line = line;
    for (const marked of view.querySelectorAll(".target")) marked.classList.remove("target");
    for (const marked of view.querySelectorAll("[aria-current]")) marked.removeAttribute("aria-current");
    const target = line && view.querySelector(`.line[data-line="${line}"]`);
    if (target) {
      target.classList.add("target");
      const number = $("L" + line);
      number.classList.add("target");
      number.setAttribute("aria-current", "true");
      if (scroll) target.scrollIntoView({ block: "center" });
    }
    copyLink.hidden = !target;
    if (target) copyLink.textContent = `Copy link to line ${line}`;
    setAddress();
  }

  async function openFile(path, line) {
    fileError.hidden = true;
    title.textContent = path;
    current = { path, content: "", line: null };
    for (const button of tree.querySelectorAll("button[data-path]")) markCurrent(button);
    try {
      const file = await api("GET", "/files/read?path=" + encodeURIComponent(path));
      current.content = file.content;
      const language = /\.(py|pyi)$/.test(path) ? "python" : (path.split(".").pop() || "");
      view.replaceChildren(...numbered(file.content, language));
      view.hidden = false;
      copyButton.hidden = false;
      $("file-hint").hidden = false;
      markLine(line || null, true);
      showBackups(path);
    } catch (error) {
      view.hidden = true;
      copyButton.hidden = true;
      copyLink.hidden = true;
      $("file-hint").hidden = true;
      $("file-backups").hidden = true;
      setAddress();
      showError(fileError, error, () => openFile(path, line));
    }
  }

  // After a restore the view shows the restored content; the backups list keeps its confirmation.
  async function reread(path) {
    try {
      const file = await api("GET", "/files/read?path=" + encodeURIComponent(path));
      current.content = file.content;
      const language = /\.(py|pyi)$/.test(path) ? "python" : (path.split(".").pop() || "");
      view.replaceChildren(...numbered(file.content, language));
      markLine(current.line, false);
    } catch (error) {
      showError(fileError, error);
    }
  }

  function showBackups(path) {
    $("file-backups").hidden = false;
    $("backup-diff").hidden = true;
    Backups.show(path, { rows: $("backup-rows"), announce: $("backup-message"), diff: $("backup-diff"),
      onRestored: () => reread(path) });
  }

  const lineOfHash = () => { const match = location.hash.match(/^#L(\d+)$/); return match ? Number(match[1]) : null; };

  // A click on a line number changes only the hash: mark that line, keep the file.
  window.addEventListener("hashchange", () => {
    const line = lineOfHash();
    if (line && current.path) markLine(line, false);
  });
  copyButton.addEventListener("click", () => copyText(current.content, copyButton));
  copyLink.addEventListener("click", () => copyText(location.href, copyLink));
  $("reload-tree").addEventListener("click", loadTree);

  const params = new URLSearchParams(location.search);
  const path = params.get("path");
  const treeLoaded = loadTree();
  if (path) {
    openFile(path, lineOfHash() || Number(params.get("line")) || null);
    treeLoaded.then(() => reveal(path));
  }
})();
