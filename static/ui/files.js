// Files: the workspace tree (GET /files/tree, a level at a time), a read-only view with
// line numbers (GET /files/read), the file's backups. ?path=…&line=… opens a file at a line.
"use strict";

(function () {
  const { api, el, showError, highlight, copyText } = CG;
  const tree = document.getElementById("tree");
  const treeError = document.getElementById("tree-error");
  const title = document.getElementById("file-path");
  const view = document.getElementById("file-view");
  const fileError = document.getElementById("file-error");
  const copyButton = document.getElementById("copy-file");
  let current = { path: null, content: "" };

  async function listing(path) {
    return api("GET", "/files/tree?depth=1&path=" + encodeURIComponent(path || "."));
  }

  function entryView(entry) {
    const item = el("li");
    if (entry.kind === "dir") {
      const toggle = el("button", { type: "button", "aria-expanded": "false", text: "▸ " + entry.name + "/" });
      let loaded = null;
      toggle.addEventListener("click", async () => {
        const open = toggle.getAttribute("aria-expanded") !== "true";
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
      });
      item.append(toggle);
    } else {
      const open = el("button", { type: "button", "data-path": entry.path, text: entry.name,
        title: entry.size !== null ? entry.size + " bytes" : entry.kind });
      open.addEventListener("click", () => openFile(entry.path));
      if (entry.path === current.path) open.classList.add("current");
      item.append(open);
    }
    return item;
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

  function numbered(content, language, target) {
    const lines = content.split("\n");
    if (lines.length > 1 && lines[lines.length - 1] === "") lines.pop();
    const gutter = el("div", { class: "gutter" }, lines.map((_, index) =>
      el("a", { href: `#L${index + 1}`, id: `L${index + 1}`, text: String(index + 1) })));
    const source = el("div", { class: "src" });
    // Highlighted whole, then split per line so a string or comment over lines keeps its colour per line.
    const html = highlight(lines.join("\n"), language).split("\n");
    let open = "";
    source.append(...html.map((lineHtml, index) => {
      const line = el("span", { class: "line" + (index + 1 === target ? " target" : ""), "data-line": index + 1 });
      const opened = open + lineHtml;
      const spans = (opened.match(/<span[^>]*>/g) || []).length - (opened.match(/<\/span>/g) || []).length;
      line.innerHTML = opened + "</span>".repeat(Math.max(0, spans)) || " ";
      open = spans > 0 ? (opened.match(/<span[^>]*>/g) || []).slice(-spans).join("") : "";
      return line;
    }));
    return [gutter, source];
  }

  async function openFile(path, line) {
    fileError.hidden = true;
    title.textContent = path;
    try {
      const file = await api("GET", "/files/read?path=" + encodeURIComponent(path));
      current = { path, content: file.content };
      const language = /\.(py|pyi)$/.test(path) ? "python" : (path.split(".").pop() || "");
      view.replaceChildren(...numbered(file.content, language, line));
      view.hidden = false;
      copyButton.hidden = false;
      const url = new URL(location.href);
      url.searchParams.set("path", path);
      if (line) url.searchParams.set("line", line); else url.searchParams.delete("line");
      history.replaceState(null, "", url);
      for (const button of tree.querySelectorAll("button[data-path]")) {
        button.classList.toggle("current", button.dataset.path === path);
      }
      if (line) {
        const target = view.querySelector(`.line[data-line="${line}"]`);
        if (target) target.scrollIntoView({ block: "center" });
      }
      document.getElementById("file-backups").hidden = false;
      document.getElementById("backup-diff").hidden = true;
      document.getElementById("backup-message").hidden = true;
      Backups.show(path, {
        rows: document.getElementById("backup-rows"),
        message: document.getElementById("backup-message"),
        diff: document.getElementById("backup-diff"),
        onRestored: () => openFile(path),
      });
    } catch (error) {
      view.hidden = true;
      showError(fileError, error, () => openFile(path, line));
    }
  }

  copyButton.addEventListener("click", () => copyText(current.content, copyButton));
  document.getElementById("reload-tree").addEventListener("click", loadTree);
  loadTree();
  const params = new URLSearchParams(location.search);
  if (params.get("path")) openFile(params.get("path"), Number(params.get("line")) || null);
})();
