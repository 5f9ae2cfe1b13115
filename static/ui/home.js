// Home: the first steps with their state. Index the workspace (POST /rag/index, progress and
// state from /rag/status) and analyse it (POST /improve/analyze; the last analysis from
// /improve/reports, linked to the Improve page).
"use strict";

(function () {
  const { api, el, showError, formatTime } = CG;
  const $ = (id) => document.getElementById(id);
  let indexing = false;

  function indexState(status) {
    const line = $("home-index-state");
    line.classList.remove("error");
    if (status.status === "indexing" && status.progress && status.progress.files_total) {
      $("home-index-progress").hidden = false;
      $("home-index-progress").max = status.progress.files_total;
      $("home-index-progress").value = status.progress.files_done;
      line.textContent = `Indexing ${status.progress.path}: ${status.progress.files_done} of ${status.progress.files_total} files…`;
    } else if (status.status === "indexing") {
      line.textContent = "Indexing…";
    } else if (status.status === "ready" || (status.documents && status.status !== "error")) {
      line.replaceChildren(`Indexed: ${status.files} files, ${status.documents} chunks` +
        (status.roots && status.roots.length ? ` from ${status.roots.join(", ")}` : "") +
        (status.last_indexed ? ` · last indexed ${formatTime(status.last_indexed)}` : "") + ". ",
      el("a", { href: "/ui/search", text: "Search it" }));
      $("home-index").textContent = "Index again";
    } else if (status.status === "error") {
      line.textContent = "The last indexing failed: " + (status.error || "unknown error");
      line.classList.add("error");
    } else {
      line.textContent = "Not indexed yet.";
    }
  }

  async function readIndex() {
    try {
      const status = await api("GET", "/rag/status");
      // a poll answered after the run ended must not put its progress back
      if (!indexing && status.status === "indexing") return status;
      indexState(status);
      return status;
    } catch (error) {
      showError($("home-index-state"), error);
      return null;
    }
  }

  async function index() {
    const button = $("home-index");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    indexing = true;
    $("home-index-state").textContent = "Indexing…";
    $("home-index-progress").hidden = false;
    $("home-index-progress").removeAttribute("value");
    const poll = setInterval(readIndex, 700);
    try {
      await api("POST", "/rag/index?path=.");
      indexing = false;
      clearInterval(poll);
      await readIndex();
    } catch (error) {
      showError($("home-index-state"), error, index);
    } finally {
      indexing = false;
      clearInterval(poll);
      $("home-index-progress").hidden = true;
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  function reportLine(report, prefix) {
    const issues = report.issue_count ?? (report.issues ? report.issues.length : 0);
    $("home-analyse-state").replaceChildren(
      `${prefix} #${report.id} of ${report.path}: ${issues} issue${issues === 1 ? "" : "s"}` +
      (report.created_at ? ` · ${formatTime(report.created_at)}` : "") + ". ",
      el("a", { href: `/ui/improve?report=${report.id}`, id: "home-report-link", text: "Open the report" }));
    $("home-analyse").textContent = "Analyse again";
  }

  async function readReports() {
    try {
      const [last] = await api("GET", "/improve/reports?limit=1");
      if (last) reportLine(last, "Last analysis");
      else $("home-analyse-state").textContent = "Not analysed yet.";
    } catch (error) {
      showError($("home-analyse-state"), error, readReports);
    }
  }

  async function analyse() {
    const button = $("home-analyse");
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    $("home-analyse-state").textContent = "Analysing…";
    try {
      const report = await api("POST", "/improve/analyze", { path: "." });
      reportLine({ id: report.report_id, path: ".", issue_count: report.issues.length,
        created_at: new Date().toISOString() }, `Done in ${report.duration.toFixed(1)} s: analysis`);
    } catch (error) {
      showError($("home-analyse-state"), error, analyse);
    } finally {
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  $("home-index").addEventListener("click", index);
  $("home-analyse").addEventListener("click", analyse);
  readIndex();
  readReports();
})();
