// Improve: analyse a folder (POST /improve/analyze) into a sortable, filterable issues table;
// run an improvement of one issue without writing (POST /improve/run?stream=true,
// auto_write false), review its diff and validation, Accept (POST /improve/apply) or Reject;
// queue issues and watch the queue live (GET /improve/queue/events); past reports
// (?report=<id> opens one). Each issue's row carries the state of its change.
"use strict";

(function () {
  const { api, stream, el, showError, formatTime } = CG;
  const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
  const $ = (id) => document.getElementById(id);
  const table = $("issues").querySelector("tbody");
  const filters = { severity: $("filter-severity"), type: $("filter-type"), file: $("filter-file") };

  let issues = [];
  let sort = { key: "severity", descending: false };
  let proposal = null;
  let proposalKey = null;
  let runController = null;
  // What happened to each issue's change on this page: running, proposed, applied, rejected, restored, failed.
  const issueStates = new Map();
  const issueKey = (issue) => `${issue.file}:${issue.line}:${issue.type}:${issue.message}`;

  // --- analysis and the issues table ------------------------------------------------------
  async function analyse(event) {
    if (event) event.preventDefault();
    const button = $("analyze");
    button.disabled = true;
    $("analyze-state").textContent = "Analysing…";
    $("analyze-error").hidden = true;
    try {
      const report = await api("POST", "/improve/analyze", {
        path: $("analyze-path").value || ".", include_linter: $("analyze-linter").checked, use_llm: $("analyze-llm").checked,
      });
      $("analyze-state").textContent = `Done in ${report.duration.toFixed(1)} s.`;
      showReport(Object.assign({ id: report.report_id, path: $("analyze-path").value || ".", totals: report,
        created_at: new Date().toISOString() }, report));
      loadReports();
    } catch (error) {
      $("analyze-state").textContent = "";
      showError($("analyze-error"), error, analyse);
    } finally {
      button.disabled = false;
    }
  }

  function showReport(report) {
    $("report").hidden = false;
    $("report-title").textContent = `Report ${report.id} · ${report.path}`;
    $("report-meta").textContent = formatTime(report.created_at);
    const totals = report.totals || report;
    const bySeverity = {};
    for (const issue of report.issues) bySeverity[issue.severity] = (bySeverity[issue.severity] || 0) + 1;
    const figures = [["files", totals.total_files], ["lines", totals.total_lines], ["functions", totals.total_functions],
      ["classes", totals.total_classes], ["avg complexity", Number(totals.avg_complexity).toFixed(2)],
      ["issues", report.matching_issues ?? report.issues.length],
      ...Object.keys(SEVERITY_RANK).filter((s) => bySeverity[s]).map((s) => [s, bySeverity[s]])];
    $("totals").replaceChildren(...figures.map(([label, value]) => el("span", {}, el("strong", { text: String(value) }), " " + label)));
    $("suggestions").replaceChildren(...(report.suggestions || []).map((s) =>
      el("li", {}, el("strong", { text: s.title }), ` — ${s.description} `, el("span", { class: "muted", text: `(effort ${s.estimated_effort})` }))));
    issues = report.issues;
    fillFilter(filters.severity, Object.keys(SEVERITY_RANK).filter((s) => bySeverity[s]));
    fillFilter(filters.type, [...new Set(issues.map((i) => i.type))].sort());
    renderIssues();
  }

  function fillFilter(select, values) {
    const keep = select.value;
    select.replaceChildren(el("option", { value: "", text: "all" }), ...values.map((v) => el("option", { value: v, text: v })));
    select.value = values.includes(keep) ? keep : "";
  }

  function renderIssues() {
    const file = filters.file.value.trim().toLowerCase();
    const shown = issues.filter((issue) =>
      (!filters.severity.value || issue.severity === filters.severity.value) &&
      (!filters.type.value || issue.type === filters.type.value) &&
      (!file || issue.file.toLowerCase().includes(file)));
    const value = (issue) => sort.key === "severity" ? SEVERITY_RANK[issue.severity] ?? 9
      : sort.key === "file" ? `${issue.file}:${String(issue.line).padStart(8, "0")}` : issue[sort.key];
    shown.sort((a, b) => {
      const order = value(a) < value(b) ? -1 : value(a) > value(b) ? 1 : 0;
      return sort.descending ? -order : order;
    });
    for (const button of $("issues").querySelectorAll("th button")) {
      const on = button.dataset.sort === sort.key;
      button.parentElement.setAttribute("aria-sort", on ? (sort.descending ? "descending" : "ascending") : "none");
      button.textContent = button.textContent.replace(/ [▲▼]$/, "") + (on ? (sort.descending ? " ▼" : " ▲") : "");
    }
    $("issue-count").textContent = `${shown.length} of ${issues.length} shown`;
    table.replaceChildren(...shown.map(issueRow));
    if (!shown.length) table.append(el("tr", {}, el("td", { colspan: 5, class: "muted", text: issues.length ? "No issue matches the filters." : "No issues found." })));
  }

  function issueRow(issue) {
    const where = `${issue.file}:${issue.line}`;
    const improve = el("button", { type: "button", class: "small primary", text: "Improve", "aria-label": `Improve ${where}` });
    improve.addEventListener("click", () => runImprovement(issue, row));
    const queueIt = el("button", { type: "button", class: "small", text: "Queue", "aria-label": `Queue ${where}` });
    queueIt.addEventListener("click", () => queueIssue(issue, queueIt));
    const state = issueStates.get(issueKey(issue));
    const row = el("tr", { "data-key": issueKey(issue), class: proposalKey === issueKey(issue) ? "selected" : "" },
      el("td", { class: "severity" }, el("span", { class: "badge " + issue.severity, text: issue.severity })),
      el("td", { class: "type", text: issue.type }),
      el("td", { class: "file" }, el("a", { href: `/ui/files?path=${encodeURIComponent(issue.file)}#L${issue.line}`, text: where })),
      el("td", { class: "message" }, issue.message, issue.suggestion ? el("div", { class: "muted small", text: issue.suggestion }) : null),
      el("td", { class: "actions" }, el("div", { class: "row" }, improve, queueIt,
        el("span", { class: "badge issue-state " + (state || ""), hidden: !state, text: state || "" }))));
    return row;
  }

  // The issue's row (if shown) and the proposal's badge say the same state.
  function setIssueState(key, state) {
    if (!key) return;
    issueStates.set(key, state);
    const row = [...table.querySelectorAll("tr[data-key]")].find((tr) => tr.dataset.key === key);
    const badge = row && row.querySelector(".issue-state");
    if (badge) { badge.textContent = state; badge.className = "badge issue-state " + state; badge.hidden = false; }
  }

  function runRequest(issue) {
    return { file_path: issue.file, auto_write: false,
      issue: { message: issue.message + (issue.suggestion ? `\nSuggestion: ${issue.suggestion}` : ""),
        severity: issue.severity, issue_type: issue.type, line: issue.line } };
  }

  // --- one improvement: proposal, review, accept or reject --------------------------------
  const STEPS = { read: "Reading the file", generate: "Generating the change", validate: "Validating the change",
    retry: "Trying again", write: "Writing the file" };
  // The step in progress, with its time so far and, when the stream says them, the tokens
  // generated so far (a `progress` event, or `tokens` on a step).
  const live = { step: null, attempt: null, of: null, tokens: null, started: 0, timer: null };

  function showLive() {
    const seconds = Math.round((Date.now() - live.started) / 1000);
    const parts = [STEPS[live.step] || live.step];
    if (live.attempt) parts.push(`attempt ${live.attempt}${live.of ? " of " + live.of : ""}`);
    parts.push(`${seconds} s`);
    if (live.tokens !== null && live.tokens !== undefined) parts.push(`${live.tokens} tokens so far`);
    $("proposal-live-text").textContent = parts.join(" · ");
    $("proposal-live").hidden = false;
  }

  function liveStep(data) {
    const same = data.step === live.step && (data.attempt || null) === live.attempt;
    if (!same) Object.assign(live, { step: data.step, attempt: data.attempt || null, tokens: null, started: Date.now() });
    if (data.max_attempts) live.of = data.max_attempts;
    if (typeof data.tokens === "number") live.tokens = data.tokens;
    clearInterval(live.timer);
    live.timer = setInterval(showLive, 1000);
    showLive();
    return !same;
  }

  function endLive(keep) {
    clearInterval(live.timer);
    live.timer = null;
    if (!keep) $("proposal-live").hidden = true;
    else $("proposal-live").querySelector("progress").hidden = true;
    live.step = null;
  }

  async function runImprovement(issue, row) {
    if (runController) runController.abort();
    for (const selected of table.querySelectorAll("tr.selected")) selected.classList.remove("selected");
    if (row) row.classList.add("selected");
    resetProposal(`${issue.file}:${issue.line} — ${issue.message}`);
    proposalKey = issueKey(issue);
    setState("running");
    runController = new AbortController();
    const mine = runController;
    const steps = [];
    let finished = false;
    let inView = false;
    try {
      await stream("POST", "/improve/run?stream=true", runRequest(issue), (event, data) => {
        if (event === "step" || event === "progress") {
          const next = liveStep(data);
          // the live step in view once, as the run starts (the card grows below the fold on a phone)
          if (!inView) { inView = true; $("proposal-live").scrollIntoView({ block: "center" }); }
          if (next && event === "step") {
            steps.push(data.step + (data.attempt ? ` (attempt ${data.attempt})` : ""));
            $("proposal-steps").textContent = steps.join(" → ");
          }
        } else if (event === "validation") {
          showValidation(data.output);
        } else if (event === "done") {
          finished = true;
          endLive(false);
          showProposal(data);
        } else if (event === "error") {
          throw new CG.ApiError(data.status, data.detail);
        }
      }, mine.signal);
      if (!finished) throw new CG.ApiError(0, "The run ended before its result arrived.");
    } catch (error) {
      if (runController === mine || error.name !== "AbortError") endLive(true);
      if (error.name === "AbortError" && runController === mine) setState("stopped");
      else if (error.name !== "AbortError") {
        setState("failed");
        showError($("proposal-error"), error, () => runImprovement(issue, row));
      }
    } finally {
      if (runController === mine) runController = null;
    }
  }

  function resetProposal(what) {
    proposal = null;
    proposalKey = null;
    endLive(false);
    $("proposal").hidden = false;
    $("proposal-issue").textContent = what;
    $("proposal-steps").textContent = "";
    $("proposal-error").hidden = true;
    $("proposal-diff").hidden = true;
    $("proposal-validation").hidden = true;
    $("proposal-backups").hidden = true;
    $("proposal-note").hidden = true;
    $("accept").hidden = true;
    $("reject").hidden = true;
    $("proposal").scrollIntoView({ block: "nearest" });
  }

  function setState(state) {
    $("proposal-state").textContent = state;
    $("proposal-state").className = "badge " + state;
    setIssueState(proposalKey, state);
  }

  function showValidation(output) {
    $("proposal-validation").hidden = false;
    $("proposal-validation").querySelector("pre").textContent = output || "(no output)";
  }

  function showProposal(result) {
    proposal = result;
    setState(result.status);
    if (result.diff) Backups.renderDiff($("proposal-diff"), result.diff);
    showValidation(result.validation_output);
    if (result.error) { $("proposal-error").textContent = result.error; $("proposal-error").hidden = false; }
    const open = result.status === "proposed";
    $("accept").hidden = !open;
    $("reject").hidden = !open;
    if (result.status === "applied") showBackups(result.file_path);
  }

  async function accept() {
    if (!proposal) return;
    $("accept").disabled = true;
    try {
      const result = await api("POST", "/improve/apply", { run_id: proposal.run_id });
      proposal = result;
      setState("applied");
      $("accept").hidden = true;
      $("reject").hidden = true;
      showBackups(result.file_path);
      // beside the buttons: a commit on the user's branch (git), or why it was only a write with a backup
      const note = $("proposal-note");
      note.replaceChildren(result.commit
        ? `Committed as ${result.commit.slice(0, 10)} on your branch. `
        : `Written with a backup. ${result.git_reason || ""} `);
      if (result.change_id) note.append(el("a", { href: `/ui/changes?change=${result.change_id}`, text: "Undo it from Changes" }));
      note.hidden = false;
    } catch (error) {
      showError($("proposal-error"), error);
    } finally {
      $("accept").disabled = false;
    }
  }

  function reject() {
    setState("rejected");
    $("accept").hidden = true;
    $("reject").hidden = true;
    $("proposal-diff").hidden = true;
    proposal = null;
  }

  // After Accept: the file's backups, newest first; the first "before improvement" one holds
  // the content the change replaced. A restore takes the change out (or, for another backup,
  // puts other content in): the badge no longer says "applied".
  async function showBackups(path) {
    $("proposal-backups").hidden = false;
    $("backups-file").textContent = path;
    $("backup-diff").hidden = true;
    const key = proposalKey;
    const backups = await Backups.show(path, { rows: $("backup-rows"), announce: $("backup-message"), diff: $("backup-diff"),
      onRestored: (result, backup) => {
        if (proposalKey !== key) return;
        setState("restored");
        const undone = backup.id === appliedBackup;
        $("proposal-note").textContent = undone
          ? "Restored: the file is back to its content before this improvement; the change is no longer in it."
          : `Restored backup ${backup.id} (${Backups.why(backup.reason)}): the file may no longer hold this change.`;
        $("proposal-note").hidden = false;
      } });
    const before = backups.find((backup) => backup.reason === "improve");
    appliedBackup = before ? before.id : null;
  }
  let appliedBackup = null;

  // --- the queue ------------------------------------------------------------------------------
  const tasks = new Map();

  async function queueIssue(issue, button) {
    button.disabled = true;
    try {
      const added = await api("POST", "/improve/queue/add", runRequest(issue));
      button.textContent = "Queued";
      const request = runRequest(issue);
      tasks.set(added.task_id, { task_id: added.task_id, file_path: issue.file, issue: request.issue,
        status: added.status, step: "", progress: 0, created_at: new Date().toISOString() });
      renderTasks();
    } catch (error) {
      button.disabled = false;
      showError($("queue-error"), error);
    }
  }

  function renderTasks() {
    const rows = [...tasks.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
    $("queue-tasks").replaceChildren(...rows.map(taskView));
    if (!rows.length) $("queue-tasks").append(el("li", { class: "muted", text: "No tasks. Queue an issue from the table." }));
  }

  // A queued run: where, what the issue is, its status, step and attempts, its result.
  function taskView(task) {
    const issue = task.issue || {};
    const where = task.file_path + (issue.line ? ":" + issue.line : "");
    const message = String(issue.message || "").split("\nSuggestion:")[0];
    const review = task.result && task.result.status === "proposed"
      ? el("button", { type: "button", class: "small", text: "Review", "aria-label": `Review the change to ${where}`, onclick: () => {
        resetProposal(`${where} — ${message}`);
        showProposal(task.result);
      } }) : null;
    const result = task.result && task.result.status && task.result.status !== task.status ? task.result.status : "";
    const details = [task.step ? `step: ${task.step}` : "", task.attempts ? `attempt ${task.attempts}` : "",
      task.finished_at ? "finished " + formatTime(task.finished_at) : task.created_at ? "queued " + formatTime(task.created_at) : ""];
    return el("li", { class: "attempt task", "data-task": task.task_id },
      el("div", { class: "row" },
        el("a", { href: `/ui/files?path=${encodeURIComponent(task.file_path)}${issue.line ? "#L" + issue.line : ""}`, class: "mono", text: where }),
        el("span", { class: "badge status " + task.status, text: task.status }),
        result ? el("span", { class: "badge result " + result, text: result }) : null,
        el("span", { class: "spacer" }), review),
      el("p", { class: "task-issue" },
        issue.severity ? el("span", { class: "badge " + issue.severity, text: issue.severity }) : null, " ",
        issue.issue_type ? el("span", { class: "muted small", text: issue.issue_type + " · " }) : null,
        el("span", { class: "issue-message", text: message })),
      el("p", { class: "muted small task-meta", text: details.filter(Boolean).join(" · ") }),
      el("progress", { max: 1, value: task.progress || 0, "aria-label": `Progress of ${where}` }),
      task.error ? el("p", { class: "error small", text: task.error }) : null);
  }

  function showQueueStatus(status) {
    $("queue-state").textContent = status.running ? "running" : "stopped";
    $("queue-state").className = "badge " + (status.running ? "running" : "cancelled");
    $("queue-counts").textContent = `${status.pending} pending · ${status.in_progress} in progress · ` +
      `${status.completed} completed · ${status.failed} failed · ${status.cancelled} cancelled`;
  }

  async function loadQueue() {
    try {
      const status = await api("GET", "/improve/queue/status");
      showQueueStatus(status);
      tasks.clear();
      for (const task of status.tasks) tasks.set(task.task_id, task);
      renderTasks();
    } catch (error) {
      showError($("queue-error"), error, loadQueue);
    }
  }

  // The feed reconnects after a pause when the server ends it or the connection drops.
  async function followQueue() {
    for (;;) {
      try {
        await stream("GET", "/improve/queue/events", undefined, (event, data) => {
          if (event === "status") showQueueStatus(data);
          else if (event === "task") { tasks.set(data.task_id, data); renderTasks(); }
        });
      } catch (_) { /* dropped: try again below */ }
      await new Promise((resolve) => setTimeout(resolve, 3000));
    }
  }

  async function queueAction(action) {
    try {
      await api("POST", `/improve/queue/${action}`);
      await loadQueue();
    } catch (error) {
      showError($("queue-error"), error);
    }
  }

  // --- past reports ---------------------------------------------------------------------------
  async function loadReports() {
    try {
      const reports = await api("GET", "/improve/reports?limit=20");
      $("reports").replaceChildren(...reports.map((report) => el("li", { class: "attempt" },
        el("button", { type: "button", class: "link", text: `#${report.id} ${report.path}`, onclick: () => openReport(report.id) }),
        el("span", { class: "muted small", text: ` · ${formatTime(report.created_at)} · ${report.issue_count} issues` }))));
      if (!reports.length) $("reports").append(el("li", { class: "muted", text: "No analyses yet." }));
    } catch (error) {
      showError($("reports"), error, loadReports);
    }
  }

  async function openReport(id) {
    try {
      showReport(await api("GET", `/improve/reports/${id}?limit=10000`));
      $("report").scrollIntoView({ block: "start" });
    } catch (error) {
      showError($("analyze-error"), error);
    }
  }

  $("analyze-form").addEventListener("submit", analyse);
  for (const control of Object.values(filters)) control.addEventListener("input", renderIssues);
  for (const button of $("issues").querySelectorAll("th button")) {
    button.addEventListener("click", () => {
      sort = { key: button.dataset.sort, descending: sort.key === button.dataset.sort ? !sort.descending : false };
      renderIssues();
    });
  }
  $("accept").addEventListener("click", accept);
  $("reject").addEventListener("click", reject);
  $("queue-start").addEventListener("click", () => queueAction("start"));
  $("queue-stop").addEventListener("click", () => queueAction("stop"));
  $("queue-clear").addEventListener("click", () => queueAction("clear"));
  document.addEventListener("keydown", (event) => { if (event.key === "Escape" && runController) runController.abort(); });

  loadReports();
  loadQueue().then(followQueue);
  const wanted = new URLSearchParams(location.search).get("report");
  if (wanted && /^\d+$/.test(wanted)) openReport(Number(wanted));
})();
