// A file's backups (GET /files/backups?path=): each labelled by why it was taken, with its
// size, a short content hash, its diff against the file and Restore; what a Restore did shows
// in its own row, beside the button. Used by the Files and Improve pages.
"use strict";

const Backups = (function () {
  const { api, el, formatTime, formatSize } = CG;
  // A backup holds the content a change replaced: it is named by that change.
  const REASONS = { improve: "before improvement", restore: "before restore", write: "before write" };
  const why = (reason) => REASONS[reason] || (reason ? "before " + reason : "");

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

  // Fills `rows` (a tbody) with the backups of `path` and resolves to them. `options`:
  // diff (a <pre>), announce (a live region), onRestored(result, backup) after a restore,
  // done ({id, text}: a line shown in that backup's row).
  async function show(path, options) {
    const { rows } = options;
    rows.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "Loading…" })));
    try {
      const { backups } = await api("GET", "/files/backups?path=" + encodeURIComponent(path));
      rows.replaceChildren(...backups.map((backup) => row(backup, path, options)));
      if (!backups.length) rows.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: "No backups of this file." })));
      return backups;
    } catch (error) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: 5, class: "error", text: error.detail || String(error) })));
      return [];
    }
  }

  function say(options, text) {
    if (options.announce) options.announce.textContent = text;
  }

  function row(backup, path, options) {
    const status = el("span", { class: "row-status small" });
    const done = options.done && options.done.id === backup.id ? options.done : null;
    if (done) { status.textContent = done.text; status.classList.add("ok"); }
    const failed = (error) => {
      status.textContent = error.detail || String(error);
      status.className = "row-status small error";
      say(options, status.textContent);
    };
    const label = `backup ${backup.id}, ${why(backup.reason)}, ${formatTime(backup.created_at)}`;
    const showDiff = el("button", { type: "button", class: "small", text: "Diff", "aria-label": "Diff of " + label });
    showDiff.addEventListener("click", async () => {
      try {
        const result = await api("GET", "/files/diff?backup_id=" + backup.id);
        if (!result.changed) { options.diff.hidden = false; options.diff.textContent = "The file is the same as this backup."; }
        else renderDiff(options.diff, result.diff);
        options.diff.setAttribute("aria-label", `Changes from backup ${backup.id} (${why(backup.reason)}) to the file now`);
      } catch (error) { failed(error); }
    });
    const restore = el("button", { type: "button", class: "small", text: "Restore", "aria-label": "Restore " + label });
    restore.addEventListener("click", async () => {
      restore.disabled = true;
      try {
        const result = await api("POST", "/files/restore", { backup_id: backup.id });
        const text = "Restored" + (result.backup_id ? ` · what it replaced is backup ${result.backup_id}` : "");
        say(options, `Restored backup ${backup.id} into ${backup.path}.`);
        // The list gains the backup the restore took; this row keeps the confirmation.
        await show(path, Object.assign({}, options, { done: { id: backup.id, text } }));
        const again = options.rows.querySelector(`tr[data-backup="${backup.id}"] button.restore`);
        if (again) again.focus();
        if (options.onRestored) options.onRestored(result, backup);
      } catch (error) {
        restore.disabled = false;
        failed(error);
      }
    });
    restore.classList.add("restore");
    const hash = (backup.sha256 || "").slice(0, 8);
    return el("tr", { "data-backup": backup.id, "data-reason": backup.reason, class: done ? "restored" : "" },
      el("td", { "data-label": "Taken", text: formatTime(backup.created_at) }),
      el("td", { "data-label": "Why", class: "why", text: why(backup.reason) }),
      el("td", { "data-label": "Size", class: "size", text: formatSize(backup.size) }),
      el("td", { "data-label": "Content" }, el("code", { class: "hash", title: "SHA-256 " + (backup.sha256 || ""), text: hash })),
      el("td", { class: "actions" }, el("div", { class: "row" }, showDiff, restore, status)));
  }

  return { show, renderDiff, why };
})();
