// A file's backups (GET /files/backups?path=): each with its diff against the file and Restore.
// Used by the Files and Improve pages.
"use strict";

const Backups = (function () {
  const { api, el, showError, formatTime } = CG;

  // A unified diff as lines coloured by kind (the text is set, never parsed as HTML).
  function renderDiff(target, diff) {
    target.replaceChildren(...String(diff).split("\n").map((line) => {
      let kind = "";
      if (line.startsWith("+++") || line.startsWith("---")) kind = "meta";
      else if (line.startsWith("@@")) kind = "hunk";
      else if (line.startsWith("+")) kind = "add";
      else if (line.startsWith("-")) kind = "del";
      return el("span", { class: kind, text: line + (kind ? "" : "\n") });
    }));
    target.hidden = false;
  }

  // Fills `rows` (a tbody) with the backups of `path`; onRestored(result) after a restore.
  async function show(path, { rows, message, diff, onRestored }) {
    rows.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "Loading…" })));
    try {
      const { backups } = await api("GET", "/files/backups?path=" + encodeURIComponent(path));
      rows.replaceChildren(...backups.map((backup) => row(backup, { message, diff, onRestored })));
      if (!backups.length) rows.append(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "No backups of this file." })));
    } catch (error) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "error", text: error.detail || String(error) })));
    }
  }

  function row(backup, { message, diff, onRestored }) {
    const showDiff = el("button", { type: "button", class: "small", text: "Diff" });
    showDiff.addEventListener("click", async () => {
      try {
        const result = await api("GET", "/files/diff?backup_id=" + backup.id);
        if (!result.changed) { diff.hidden = false; diff.textContent = "The file is the same as this backup."; }
        else renderDiff(diff, result.diff);
      } catch (error) { showError(message, error); }
    });
    const restore = el("button", { type: "button", class: "small", text: "Restore" });
    restore.addEventListener("click", async () => {
      try {
        const result = await api("POST", "/files/restore", { backup_id: backup.id });
        message.textContent = `Restored backup ${backup.id} into ${backup.path}` +
          (result.backup_id ? ` (what it replaced is backup ${result.backup_id}).` : ".");
        message.hidden = false;
        message.classList.remove("error");
        if (onRestored) onRestored(result);
      } catch (error) { message.classList.add("error"); showError(message, error); }
    });
    return el("tr", { "data-backup": backup.id },
      el("td", { text: formatTime(backup.created_at) }), el("td", { text: backup.reason }),
      el("td", { text: backup.size + " B" }), el("td", { class: "row" }, showDiff, restore));
  }

  return { show, renderDiff };
})();
