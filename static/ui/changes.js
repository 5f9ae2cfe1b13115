// Changes: a change to the project from one instruction (POST /improve/change?stream=true,
// auto_apply false) with its steps live; each file's diff with line numbers and syntax colour,
// inline or side by side, every hunk accepted or rejected (and every file at once), or a file's new
// content edited by hand before applying (sent as `edits`; the server marks it edited, not tested
// again); the evidence (each test before and after, ruff); Apply of the accepted files and hunks
// (POST /improve/change/{id}/apply {files, hunks, edits}) and Undo (…/undo), their result beside the
// buttons, a 409 explained there; the history (GET /improve/changes) with each change's state and Undo.
"use strict";

(function () {
  const { api, stream, el, showError, formatTime } = CG;
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  const LANGUAGES = { py: "python", js: "js", mjs: "js", ts: "js", json: "js", sh: "shell", bash: "shell",
    java: "js", c: "js", h: "js", cpp: "js", go: "js", rs: "rust" };
  const STEP_LABELS = { context: "Reading the context", generate: "Asking the model", apply: "Applying the edits",
    validate: "Running the tests and ruff", repair: "Asking for a repair", commit: "Committing on its branch",
    apply_change: "Applying to your files" };

  let current = null;          // the change shown (the API's reply)
  let accepted = new Map();    // path -> Set of accepted hunk indexes
  let edits = new Map();       // path -> the user's own new content, replacing the proposal's
  let view = localStorage.getItem("changes.view") === "split" ? "split" : "inline";
  let controller = null;
  let historyOffset = 0;

  // --- proposing ---------------------------------------------------------------------------
  function pathsOf(text) {
    return text.split(/[\s,]+/).map((part) => part.trim()).filter(Boolean);
  }

  async function propose(event) {
    if (event) event.preventDefault();
    const instruction = $("instruction").value;
    if (!instruction.trim()) { $("instruction").focus(); return; }
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    resetChange(instruction);
    $("propose").disabled = true;
    $("stop").hidden = false;
    $("propose-state").textContent = "Working…";
    let finished = false;
    try {
      await stream("POST", "/improve/change?stream=true",
        { instruction, paths: pathsOf($("paths").value), auto_apply: false }, (name, data) => {
          if (name === "step") addStep(STEP_LABELS[data.step] || data.step, data.attempt);
          else if (name === "plan") noteStep(planText(data));
          else if (name === "edit") noteStep(editText(data), data.applied === false ? "bad" : "");
          else if (name === "validation") {
            noteStep(`Attempt ${data.attempt}: ${data.passed ? "the tests and ruff pass" : "not proven"}`,
              data.passed ? "ok" : "bad");
          } else if (name === "done") {
            finished = true;
            endSteps();
            show(data);
            if (data.change_id) history.replaceState(null, "", `?change=${data.change_id}`);
            loadHistory();
          } else if (name === "error") {
            throw new CG.ApiError(data.status, data.detail);
          }
        }, mine.signal);
      if (!finished) throw new CG.ApiError(0, "The stream ended before the change arrived.");
      $("propose-state").textContent = "";
    } catch (error) {
      endSteps();
      if (error.name === "AbortError") {
        $("propose-state").textContent = "Stopped.";
        setState("stopped");
      } else {
        $("propose-state").textContent = "";
        setState("failed");
        showError($("change-error"), error, () => propose());
      }
    } finally {
      if (controller === mine) controller = null;
      $("propose").disabled = false;
      $("stop").hidden = true;
    }
  }

  function planText(plan) {
    return contextText(plan.context, plan.left_out_files || (plan.left_out || []).map((path) => ({ path })), plan.budget) +
      (plan.git ? " (git workspace)" : "");
  }

  // What the model read, against the share of its window the files could take, and what did not fit.
  function contextText(context, leftOut, budget) {
    const files = context || [];
    const used = files.reduce((sum, file) => sum + (file.tokens || 0), 0);
    let text = `Context: ${files.length} file${files.length === 1 ? "" : "s"}`;
    if (budget) text += ` (${used.toLocaleString()} of ${budget.files_tokens.toLocaleString()} tokens the model's window leaves for files)`;
    const left = leftOut || [];
    if (left.length) {
      const named = left.slice(0, 5).map((file) => file.tokens ? `${file.path} (${file.tokens.toLocaleString()} tokens)` : file.path);
      text += `; left out, over the budget: ${named.join(", ")}` + (left.length > 5 ? ` and ${left.length - 5} more` : "");
    }
    return text;
  }

  function editText(edit) {
    if (edit.applied === false) return `Attempt ${edit.attempt}: an edit did not apply — ${edit.error || ""}`;
    return `Edited ${edit.path} (${edit.status}, ${edit.format === "whole" ? "whole file" : "search/replace"})`;
  }

  function resetChange(instruction) {
    current = null;
    accepted = new Map();
    edits = new Map();
    $("change").hidden = false;
    $("change-instruction").textContent = instruction;
    $("change-steps").replaceChildren();
    $("change-steps").hidden = false;
    $("change-error").hidden = true;
    $("change-files").replaceChildren();
    $("evidence").hidden = true;
    $("apply-bar").hidden = true;
    $("apply-result").replaceChildren();
    setState("running");
  }

  function setState(state) {
    $("change-state").textContent = state;
    $("change-state").className = "badge " + state;
  }

  function addStep(text, attempt) {
    endSteps();
    const item = el("li", { class: "running" }, el("progress", { "aria-label": "Working" }),
      el("span", { text: text + (attempt && attempt > 1 ? ` (attempt ${attempt})` : "") }));
    $("change-steps").append(item);
  }

  function noteStep(text, kind) {
    $("change-steps").append(el("li", { class: "note " + (kind || "") , text }));
  }

  function endSteps() {
    for (const item of $("change-steps").querySelectorAll("li.running")) {
      item.classList.remove("running");
      item.classList.add("done");
      const bar = item.querySelector("progress");
      if (bar) bar.remove();
    }
  }

  // --- showing a change ----------------------------------------------------------------------
  function show(change) {
    current = change;
    accepted = new Map(change.files.map((file) => [file.path, new Set(file.hunks.map((_, index) => index))]));
    edits = new Map();
    $("change").hidden = false;
    $("change-instruction").textContent = change.instruction;
    setState(change.state);
    if (change.error) { $("change-error").replaceChildren(el("span", { text: change.error })); $("change-error").hidden = false; }
    else $("change-error").hidden = true;
    renderFiles();
    renderEvidence(change.evidence || {});
    renderActions();
  }

  function renderFiles() {
    const box = $("change-files");
    box.replaceChildren();
    if (!current) return;
    const open = current.state === "proposed";
    for (const file of current.files) box.append(fileBlock(file, open));
    if (!current.files.length && current.state !== "running") {
      box.append(el("p", { class: "muted", text: "No file changes." }));
    }
  }

  function languageOf(path) {
    const ext = (path.split(".").pop() || "").toLowerCase();
    return LANGUAGES[ext] || (ext === path ? "" : ext);
  }

  function fileBlock(file, open) {
    const chosen = accepted.get(file.path);
    const added = file.hunks.reduce((sum, hunk) => sum + hunk.lines.filter((line) => line.startsWith("+")).length, 0);
    const removed = file.hunks.reduce((sum, hunk) => sum + hunk.lines.filter((line) => line.startsWith("-")).length, 0);
    const editing = open && edits.has(file.path);
    const box = el("input", { type: "checkbox", class: "accept-file", "aria-label": `Accept every hunk of ${file.path}` });
    box.checked = editing || (chosen.size === file.hunks.length && chosen.size > 0);
    box.indeterminate = !editing && chosen.size > 0 && chosen.size < file.hunks.length;
    box.disabled = !open || editing;
    box.addEventListener("change", () => {
      accepted.set(file.path, new Set(box.checked ? file.hunks.map((_, index) => index) : []));
      renderFiles();
      renderActions();
    });
    const applied = ["applied", "undone"].includes(current.state) && current.applied_files && current.applied_files.includes(file.path);
    const section = el("section", { class: "change-file", "data-path": file.path },
      el("header", { class: "file-head" },
        el("label", { class: "inline" }, box, el("span", { class: "visually-hidden", text: "Accept file" })),
        el("span", { class: "file-path mono", text: file.path }),
        el("span", { class: "badge " + (file.status === "added" ? "passed" : "proposed"), text: file.status }),
        applied ? el("span", { class: "badge " + current.state, text: current.state }) : null,
        file.edited ? el("span", { class: "badge edited", title: "Applied with your own edit of the proposal (not tested again)", text: "edited" }) : null,
        editing ? el("span", { class: "badge edited", text: "your edit" }) : null,
        file.uncommitted ? el("span", { class: "badge failed", title: "The file had uncommitted edits when the change was made; commit them before applying", text: "uncommitted work" }) : null,
        el("span", { class: "spacer" }),
        el("span", { class: "small counts" }, el("span", { class: "ok", text: `+${added}` }), " ", el("span", { class: "bad", text: `−${removed}` })),
        el("span", { class: "muted small hunk-count", text: editing ? "your edit replaces the hunks" : open ? `${chosen.size} of ${file.hunks.length} hunks accepted` : `${file.hunks.length} hunk${file.hunks.length === 1 ? "" : "s"}` }),
        open ? el("button", { type: "button", class: "small edit-file", "aria-pressed": String(editing),
          "aria-label": editing ? `Discard your edit of ${file.path}` : `Edit ${file.path} before applying`,
          text: editing ? "Discard edit" : "✎ Edit", onclick: () => toggleEdit(file) }) : null));
    if (editing) {
      section.append(editBlock(file));
      return section;
    }
    const language = languageOf(file.path);
    file.hunks.forEach((hunk, index) => section.append(hunkBlock(file, hunk, index, open, language)));
    return section;
  }

  // Editing a file before applying: its whole proposed content in a text box; what the user types is
  // applied instead of the proposal (the hunks' choices set aside until the edit is discarded).
  function toggleEdit(file) {
    if (edits.has(file.path)) edits.delete(file.path);
    else edits.set(file.path, file.proposed);
    renderFiles();
    renderActions();
    if (edits.has(file.path)) {
      const box = $("change-files").querySelector(`.change-file[data-path="${CSS.escape(file.path)}"] textarea.edit-content`);
      if (box) box.focus();
    }
  }

  function editBlock(file) {
    const lines = (edits.get(file.path).match(/\n/g) || []).length + 1;
    const area = el("textarea", { class: "mono edit-content", spellcheck: "false", rows: String(Math.min(30, Math.max(6, lines))),
      "aria-label": `New content of ${file.path}`, oninput: (event) => edits.set(file.path, event.target.value) });
    area.value = edits.get(file.path);
    return el("div", { class: "edit-box" },
      el("p", { class: "muted small", text: "Your text is written instead of the proposal. The tests are not run again: the change records this file as edited by you." }),
      area);
  }

  function hunkBlock(file, hunk, index, open, language) {
    const chosen = accepted.get(file.path);
    const isAccepted = chosen.has(index);
    const toggle = (accept) => () => {
      if (accept) chosen.add(index); else chosen.delete(index);
      renderFiles();
      renderActions();
    };
    const label = `hunk ${index + 1} of ${file.path}`;
    const head = el("div", { class: "hunk-head" },
      el("code", { class: "hunk-header", text: hunk.header }),
      el("span", { class: "spacer" }),
      open ? el("div", { class: "segmented", role: "group", "aria-label": `Decision on ${label}` },
        el("button", { type: "button", class: "small accept-hunk", "aria-pressed": String(isAccepted), "aria-label": `Accept ${label}`, text: "✓ Accept", onclick: toggle(true) }),
        el("button", { type: "button", class: "small reject-hunk", "aria-pressed": String(!isAccepted), "aria-label": `Reject ${label}`, text: "✗ Reject", onclick: toggle(false) })) : null);
    const left = !open && file.applied_hunks && current.state !== "proposed" && !file.applied_hunks.includes(index);
    if (left) head.append(el("span", { class: "badge rejected", text: "not applied" }));
    const body = view === "split" ? splitTable(hunk, language) : inlineTable(hunk, language);
    return el("div", { class: "hunk " + (open ? (isAccepted ? "accepted" : "rejected") : left ? "rejected" : ""), "data-index": String(index) }, head,
      el("div", { class: "hunk-body" }, body));
  }

  function codeCell(text, language, cls) {
    const cell = el("td", { class: "code " + (cls || "") });
    cell.innerHTML = CG.highlight(text, language) || "&#8203;";
    return cell;
  }

  function number(value) {
    return el("td", { class: "ln", text: value === null ? "" : String(value) });
  }

  // Each line of the hunk with its numbers in the old and new file.
  function numbered(hunk) {
    let old = hunk.old_lines === 0 ? hunk.old_start + 1 : hunk.old_start;
    let now = hunk.new_lines === 0 ? hunk.new_start + 1 : hunk.new_start;
    const rows = [];
    for (const line of hunk.lines) {
      const sign = line[0];
      const text = line.slice(1);
      if (sign === "\\") { rows.push({ kind: "note", text: line }); continue; }
      if (sign === "-") rows.push({ kind: "del", old: old++, now: null, text });
      else if (sign === "+") rows.push({ kind: "add", old: null, now: now++, text });
      else rows.push({ kind: "ctx", old: old++, now: now++, text });
    }
    return rows;
  }

  function inlineTable(hunk, language) {
    const table = el("table", { class: "difftable unified" });
    for (const row of numbered(hunk)) {
      if (row.kind === "note") { table.append(el("tr", { class: "note" }, el("td", { colspan: "3", class: "muted small", text: row.text }))); continue; }
      const sign = row.kind === "add" ? "+" : row.kind === "del" ? "-" : " ";
      const tr = el("tr", { class: row.kind }, number(row.old), number(row.now), codeCell(row.text, language));
      tr.lastChild.dataset.sign = sign;
      table.append(tr);
    }
    return table;
  }

  function splitTable(hunk, language) {
    const table = el("table", { class: "difftable sbs" });
    const rows = numbered(hunk).filter((row) => row.kind !== "note");
    let index = 0;
    while (index < rows.length) {
      if (rows[index].kind === "ctx") {
        const row = rows[index++];
        table.append(el("tr", { class: "ctx" }, number(row.old), codeCell(row.text, language), number(row.now), codeCell(row.text, language)));
        continue;
      }
      const dels = [];
      const adds = [];
      while (index < rows.length && rows[index].kind === "del") dels.push(rows[index++]);
      while (index < rows.length && rows[index].kind === "add") adds.push(rows[index++]);
      for (let k = 0; k < Math.max(dels.length, adds.length); k++) {
        const left = dels[k];
        const right = adds[k];
        table.append(el("tr", {},
          number(left ? left.old : null), left ? codeCell(left.text, language, "del") : el("td", { class: "code empty" }),
          number(right ? right.now : null), right ? codeCell(right.text, language, "add") : el("td", { class: "code empty" })));
      }
    }
    return table;
  }

  function setView(next) {
    view = next;
    localStorage.setItem("changes.view", next);
    $("view-inline").setAttribute("aria-pressed", String(next === "inline"));
    $("view-split").setAttribute("aria-pressed", String(next === "split"));
    renderFiles();
  }

  // --- evidence ------------------------------------------------------------------------------
  function outcomeBadge(outcome) {
    return outcome ? el("span", { class: "badge " + outcome, text: outcome }) : el("span", { class: "muted", text: "—" });
  }

  function renderEvidence(evidence) {
    const tests = evidence.tests || [];
    const attempts = evidence.attempts || [];
    $("evidence").hidden = !tests.length && !attempts.length && !evidence.ruff;
    $("evidence-context").textContent = evidence.context ? contextText(evidence.context, evidence.left_out_files, evidence.budget) : "";
    const edited = evidence.edited_by_user || [];
    $("evidence-edited").hidden = !edited.length;
    $("evidence-edited").textContent = edited.length
      ? `Edited by you before applying, not tested again: ${edited.map((item) => item.path).join(", ")}` : "";
    const box = $("evidence-tests");
    box.replaceChildren();
    if (tests.length) {
      const body = el("tbody");
      for (const run of tests) {
        const before = new Map((run.before || []).map((test) => [test.name, test.outcome]));
        const after = new Map((run.after || []).map((test) => [test.name, test.outcome]));
        const broken = new Set(run.broken || []);
        for (const name of new Set([...before.keys(), ...after.keys()])) {
          body.append(el("tr", { class: broken.has(name) ? "broken" : "" },
            el("td", { class: "mono test-name", text: name }), el("td", {}, outcomeBadge(before.get(name))),
            el("td", {}, outcomeBadge(after.get(name)))));
        }
      }
      box.append(el("div", { class: "table-wrap" }, el("table", { class: "evidence-tests" },
        el("thead", {}, el("tr", {}, el("th", { text: "Test" }), el("th", { text: "Before" }), el("th", { text: "After" }))), body)));
    } else {
      box.append(el("p", { class: "muted small", text: evidence.improvement_run
        ? "An improvement from the Improve page: its validation (the module imports, the covering tests before and after) is in the output below."
        : "No test covers the changed files." }));
    }
    const ruff = evidence.ruff || [];
    $("evidence-ruff").replaceChildren(el("strong", { text: "ruff: " }), ruff.length
      ? el("span", { class: "bad", text: ruff.map((item) => `${item.path}:${item.line}: ${item.code} ${item.message}`).join("; ") })
      : el("span", { class: "ok", text: "no new errors in the changed files" }));
    const last = attempts[attempts.length - 1];
    const output = last && (last.output || (last.validation && last.validation.output));
    $("evidence-output").hidden = !output;
    if (output) $("evidence-output").querySelector("pre").textContent = output;
  }

  // --- apply and undo ------------------------------------------------------------------------
  function selection() {
    const files = [];
    const hunks = {};
    const edited = {};
    for (const file of current.files) {
      if (edits.has(file.path)) {
        files.push(file.path);
        edited[file.path] = edits.get(file.path);
        continue;
      }
      const chosen = accepted.get(file.path) || new Set();
      if (!chosen.size) continue;
      files.push(file.path);
      if (chosen.size < file.hunks.length) hunks[file.path] = [...chosen].sort((a, b) => a - b);
    }
    return { files, hunks, edits: edited };
  }

  function renderActions() {
    if (!current) return;
    const state = current.state;
    $("apply-bar").hidden = !["proposed", "applied", "undone"].includes(state);
    $("apply").hidden = state !== "proposed";
    $("undo").hidden = state !== "applied";
    if (state === "proposed") {
      const { files } = selection();
      $("apply").disabled = !files.length;
      const plain = current.files.filter((file) => !edits.has(file.path));
      const total = plain.reduce((sum, file) => sum + file.hunks.length, 0);
      const chosen = plain.reduce((sum, file) => sum + (accepted.get(file.path) || new Set()).size, 0);
      const edited = edits.size ? ` (${edits.size} edited by you)` : "";
      $("apply").textContent = (chosen === total ? "Apply" : `Apply ${chosen} of ${total} hunks`) + edited;
      if (!files.length) resultNote("Nothing accepted: accept a hunk or a file to apply it.", "muted");
      else if (!$("apply-result").dataset.kept) $("apply-result").replaceChildren();
    }
  }

  function resultNote(text, cls, kept) {
    $("apply-result").replaceChildren(el("span", { class: cls || "", text }));
    if (kept) $("apply-result").dataset.kept = "1"; else delete $("apply-result").dataset.kept;
  }

  function explain(error, action) {
    if (error.status === 409) {
      const hint = action === "apply"
        ? "A file of the change was edited since the proposal (or holds uncommitted work): commit or undo that work, or propose the change again."
        : "Later work depends on this change (its files changed since it was applied): undo that work first.";
      $("apply-result").replaceChildren(el("span", { class: "error conflict" }, el("strong", { text: "Conflict: " }), error.detail),
        el("span", { class: "muted", text: " " + hint }));
    } else {
      showError($("apply-result"), error, () => (action === "apply" ? applyChange() : undoChange($("undo"), current.change_id, $("apply-result"))));
      $("apply-result").firstChild.classList.add("error");
    }
    $("apply-result").dataset.kept = "1";
  }

  async function applyChange() {
    const { files, hunks, edits: edited } = selection();
    if (!files.length) return;
    const button = $("apply");
    button.disabled = true;
    resultNote("Applying…", "muted", true);
    try {
      const body = { files };
      if (Object.keys(hunks).length) body.hunks = hunks;
      if (Object.keys(edited).length) body.edits = edited;
      const result = await api("POST", `/improve/change/${current.change_id}/apply`, body);
      const parts = files.map((path) => edited[path] !== undefined ? `${path} (your edit)`
        : hunks[path] ? `${path} (${hunks[path].length} of ${result.files.find((file) => file.path === path).hunks.length} hunks)` : path);
      show(result);
      const where = result.git && result.git.applied_commit ? ` — commit ${result.git.applied_commit.slice(0, 10)} on ${result.git.applied_branch}` : " — with backups";
      resultNote(`✓ Applied ${parts.join(", ")}${where}`, "ok applied-note", true);
      loadHistory();
    } catch (error) {
      button.disabled = false;
      explain(error, "apply");
    }
  }

  async function undoChange(button, changeId, target) {
    button.disabled = true;
    target.replaceChildren(el("span", { class: "muted", text: "Undoing…" }));
    try {
      const result = await api("POST", `/improve/change/${changeId}/undo`);
      if (current && current.change_id === changeId) show(result);
      const where = result.git && result.git.undo_commit ? ` — revert commit ${result.git.undo_commit.slice(0, 10)}` : "";
      const message = `✓ Undone: ${result.applied_files.join(", ")} as before${where}`;
      if (current && current.change_id === changeId) resultNote(message, "ok undone-note", true);
      if (target !== $("apply-result")) target.replaceChildren(el("span", { class: "ok", text: message }));
      await loadHistory();
      if (target !== $("apply-result")) {
        const row = $("history").querySelector(`li[data-id="${changeId}"] .row-result`);
        if (row) row.replaceChildren(el("span", { class: "ok", text: message }));
      }
    } catch (error) {
      button.disabled = false;
      if (target === $("apply-result")) explain(error, "undo");
      else if (error.status === 409) {
        target.replaceChildren(el("span", { class: "error" }, el("strong", { text: "Conflict: " }), error.detail));
      } else showError(target, error, () => undoChange(button, changeId, target));
    }
  }

  // --- history ---------------------------------------------------------------------------------
  async function loadHistory(more) {
    const list = $("history");
    if (!more) historyOffset = 0;
    try {
      const rows = await api("GET", `/improve/changes?limit=${PAGE}&offset=${historyOffset}`);
      if (!more) list.replaceChildren();
      historyOffset += rows.length;
      $("history-more").hidden = rows.length < PAGE;
      if (!more && !rows.length) list.append(el("li", { class: "muted", text: "No changes yet." }));
      for (const row of rows) list.append(historyRow(row));
    } catch (error) {
      const item = el("li", { class: "error" });
      showError(item, error, () => loadHistory(more));
      if (!more) list.replaceChildren(item); else list.append(item);
    }
  }

  function historyRow(row) {
    const result = el("span", { class: "row-result small", role: "status" });
    const undo = row.state === "applied"
      ? el("button", { type: "button", class: "small", text: "Undo", "aria-label": `Undo: ${row.instruction.split("\n")[0]}` })
      : null;
    if (undo) undo.addEventListener("click", () => undoChange(undo, row.change_id, result));
    const open = el("button", { type: "button", class: "link history-open", text: row.instruction.split("\n")[0] || "(no instruction)",
      title: "Show this change", onclick: () => openChange(row.change_id) });
    return el("li", { "data-id": row.change_id, class: current && current.change_id === row.change_id ? "active" : "" },
      el("div", { class: "history-main" }, el("span", { class: "badge " + row.state, text: row.state }), open),
      el("div", { class: "history-meta muted small" },
        el("span", { text: formatTime(row.created_at) }),
        el("span", { class: "mono", text: row.files.join(", ") || "no files" }),
        row.error ? el("span", { class: "bad", text: row.error.split("\n")[0].slice(0, 160) }) : null),
      el("div", { class: "history-actions" }, undo, result));
  }

  async function openChange(changeId) {
    try {
      resetChange("");
      $("change-steps").hidden = true;
      const change = await api("GET", `/improve/change/${changeId}`);
      show(change);
      history.replaceState(null, "", `?change=${changeId}`);
      for (const item of $("history").children) item.classList.toggle("active", item.dataset.id === changeId);
      $("change").scrollIntoView({ block: "start" });
    } catch (error) {
      setState("failed");
      showError($("change-error"), error, () => openChange(changeId));
    }
  }

  // --- wiring -----------------------------------------------------------------------------------
  $("propose-form").addEventListener("submit", propose);
  $("stop").addEventListener("click", () => { if (controller) controller.abort(); });
  $("instruction").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) propose(event);
  });
  $("view-inline").addEventListener("click", () => setView("inline"));
  $("view-split").addEventListener("click", () => setView("split"));
  $("apply").addEventListener("click", applyChange);
  $("undo").addEventListener("click", () => undoChange($("undo"), current.change_id, $("apply-result")));
  $("history-refresh").addEventListener("click", () => loadHistory());
  $("history-more").addEventListener("click", () => loadHistory(true));
  setView(view);
  loadHistory();
  const wanted = new URLSearchParams(location.search).get("change");
  if (wanted) openChange(wanted);
})();
