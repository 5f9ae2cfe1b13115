// Workflow: POST /workflow?stream=true; plan, tests and code fill as they stream, each
// validation run is listed with its output (failed runs folded; at the end the program kept
// comes first, marked), the verdict says what it rests on (tests by origin, edge inputs,
// other candidates, broken variants), the final code can be copied or downloaded. A question
// gets an answer, without the plan, tests and code panes.
"use strict";

(function () {
  const { stream, el, renderMarkdown, renderer, showError, codeBlock, highlight } = CG;
  const form = document.getElementById("workflow-form");
  const task = document.getElementById("task");
  const runButton = document.getElementById("run");
  const stopButton = document.getElementById("stop");
  const newSession = document.getElementById("new-session");
  const sessionLine = document.getElementById("session");
  const errorLine = document.getElementById("workflow-error");
  const attempts = document.getElementById("attempts");
  const verdict = document.getElementById("verdict");
  const finalCard = document.getElementById("final");
  const answerCard = document.getElementById("answer-card");
  const $ = (id) => document.getElementById(id);

  let sessionId = null;
  let controller = null;
  let finalCode = "";

  const stages = {};
  for (const name of ["plan", "tests", "code"]) {
    const target = document.getElementById(name);
    stages[name] = {
      text: "", thinking: "", target,
      state: document.getElementById(name + "-state"),
      reasoning: document.getElementById(name + "-thinking"),
      view: name === "plan" ? renderer(target, renderMarkdown)
        : renderer(target, (text) => { const span = el("span"); span.innerHTML = highlight(text, "python"); return span; }),
    };
  }
  const answer = { text: "", view: renderer(document.getElementById("answer"), renderMarkdown) };

  function setStage(name, text) {
    const stage = stages[name];
    stage.text = text;
    stage.view.set(text);
  }

  function mark(name, state) {
    const badge = stages[name].state;
    badge.textContent = state;
    badge.className = "badge " + state;
  }

  function reset() {
    for (const name of Object.keys(stages)) {
      setStage(name, "");
      stages[name].thinking = "";
      stages[name].reasoning.hidden = true;
      stages[name].state.textContent = "";
      stages[name].state.className = "badge";
    }
    answer.text = "";
    answer.view.now("");
    answerCard.hidden = true;
    attempts.replaceChildren();
    runs = [];
    $("attempts-note").hidden = true;
    $("panes").hidden = false;
    $("validation-card").hidden = false;
    verdict.textContent = "";
    verdict.className = "badge";
    $("evidence").hidden = true;
    finalCard.hidden = true;
    errorLine.hidden = true;
  }

  // Every validation run so far: {data, view}.
  let runs = [];

  function attemptView(data) {
    const passed = data.passed;
    const counts = data.tests_passed !== undefined ? ` · ${data.tests_passed} passed, ${data.tests_failed} failed` : "";
    const view = el("li", { class: "attempt " + (passed ? "passed" : "failed") },
      el("div", { class: "row" },
        el("strong", { text: `Attempt ${data.attempt}` + (data.candidate ? ` · candidate ${data.candidate}` : "") }),
        el("span", { class: "badge " + (passed ? "passed" : "failed"), text: passed ? "pass" : "fail" }),
        el("span", { class: "badge kept-badge", hidden: true, text: "kept" }),
        el("span", { class: "muted small", text: counts.replace(/^ · /, "") })),
      data.edit ? el("div", { class: "muted small edit", text: "Edited without the model: " + data.edit }) : null,
      // folded: the verdict line says enough until the reader opens one
      el("details", {},
        el("summary", { text: passed ? "Output" : "Output (failed)" }), el("pre", { class: "mono", text: data.output || "(no output)" })));
    runs.push({ data, view });
    return view;
  }

  // The run whose program is the final code: the one `done` names (chosen_run, the 1-based
  // place of its validation event; or chosen_attempt and chosen_candidate), when the server
  // sends them; else the last run with the final output.
  function keptRun(result) {
    if (Number.isInteger(result.chosen_run) && runs[result.chosen_run - 1]) return runs[result.chosen_run - 1];
    if (result.chosen_attempt !== undefined) {
      const named = runs.filter(({ data }) => data.attempt === result.chosen_attempt &&
        (result.chosen_candidate === undefined || data.candidate === result.chosen_candidate));
      if (named.length) return named[named.length - 1];
    }
    const same = runs.filter(({ data }) => data.output === result.validation_output);
    return same.length ? same[same.length - 1] : null;
  }

  function showKept(result) {
    const kept = keptRun(result);
    if (!kept) return;
    kept.view.classList.add("kept");
    kept.view.setAttribute("aria-label", "The program kept");
    kept.view.querySelector(".kept-badge").hidden = false;
    kept.view.querySelector("details").open = true;
    attempts.prepend(kept.view);
    $("attempts-note").hidden = runs.length < 2;
  }

  function onEvent(event, data) {
    const chunk = data && typeof data === "object" ? data.content || "" : String(data || "");
    if (event in stages) {
      if (stages[event].state.textContent !== "writing") mark(event, "writing");
      setStage(event, stages[event].text + chunk);
    } else if (event.endsWith("_thinking") && event.replace("_thinking", "") in stages) {
      const stage = stages[event.replace("_thinking", "")];
      stage.thinking += chunk;
      stage.reasoning.hidden = false;
      stage.reasoning.querySelector("pre").textContent = stage.thinking;
    } else if (event === "content" || event === "thinking") {
      asQuestion();
      if (event === "thinking") return;
      answer.text += chunk;
      answer.view.set(answer.text);
    } else if (event === "validation") {
      if (attempts.querySelector(".placeholder")) attempts.replaceChildren();
      attempts.append(attemptView(data));
      mark("code", data.passed ? "passed" : "failed");
    } else if (event === "repair") {
      mark("code", "repairing");
      setStage("code", "");
    } else if (event === "done") {
      finish(data);
    } else if (event === "error") {
      throw new CG.ApiError(data.status, data.detail);
    }
  }

  // A question (or a greeting) is answered, not planned: no stages, no validation.
  function asQuestion() {
    answerCard.hidden = false;
    $("panes").hidden = true;
    $("validation-card").hidden = true;
    for (const name of Object.keys(stages)) {
      stages[name].state.textContent = "";
      stages[name].state.className = "badge";
    }
  }

  const VERDICTS = {
    passed: ["passed", "passed"], passed_examples_only: ["passed its examples only", "weak"],
    failed: ["failed", "failed"], out_of_time: ["out of time", "failed"], unverified: ["unverified", "weak"],
  };
  const ORIGINS = { task: "task example", llm: "model-written test", probe: "edge input", smoke: "smoke test" };

  function plural(count, word) { return `${count} ${word}${count === 1 ? "" : "s"}`; }

  // What the verdict rests on: the tests by origin, then the checks beyond them and, when the
  // evidence is weak, why.
  function showEvidence(found) {
    const box = $("evidence");
    box.hidden = !found;
    if (!found) return;
    const parts = Object.entries(found.tests || {}).filter(([, count]) => count.ran)
      .map(([origin, count]) => `${count.passed} of ${plural(count.ran, ORIGINS[origin] || origin)}`);
    $("evidence-summary").textContent = "Rests on: " + (parts.length ? parts.join(", ") : "no test") +
      ` (${found.passed} of ${found.ran} passed).`;
    const checks = [];
    const mutants = found.mutants || {};
    if (mutants.tried) {
      checks.push(`Broken variants of the program rejected by the tests: ${mutants.rejected} of ${mutants.tried}` +
        (mutants.equivalent ? ` (${mutants.equivalent} behave the same on every input tried)` : "") + ".");
    }
    const agreement = found.agreement || {};
    if (agreement.candidates) {
      checks.push(`Other candidates compared: ${agreement.candidates}; same answer on ` +
        `${plural(agreement.agreed, "edge input")}.`);
    }
    if (found.crashes && found.crashes.length) checks.push("Crashes: " + found.crashes.join("; ") + ".");
    $("evidence-checks").replaceChildren(...checks.map((text) => el("li", { text })));
    $("evidence-reasons").replaceChildren(...(found.reasons || []).map((text) => el("li", { text: "Weak: " + text })));
  }

  function finish(result) {
    sessionId = result.session_id;
    sessionLine.textContent = "Session " + sessionId;
    newSession.hidden = false;
    if (result.intent_kind !== "code") {
      asQuestion();
      answer.view.now(result.content || answer.text);
      return;
    }
    for (const name of ["plan", "tests", "code"]) {
      stages[name].view.now(result[name] || "");
      stages[name].text = result[name] || "";
      if (stages[name].state.textContent === "writing") mark(name, "done");
    }
    const passed = result.validation_passed;
    const [said, tone] = VERDICTS[result.verdict] || (passed ? VERDICTS.passed : VERDICTS.failed);
    verdict.textContent = said;
    verdict.className = "badge " + tone;
    showEvidence(result.evidence);
    if (!attempts.children.length || attempts.querySelector(".placeholder")) {
      attempts.replaceChildren(attemptView({ attempt: result.attempts || 1, passed, output: result.validation_output }));
    }
    showKept(result);
    finalCode = result.code || "";
    document.getElementById("final-code").replaceChildren(codeBlock(finalCode, "python"));
    finalCard.hidden = !finalCode;
  }

  async function run() {
    const text = task.value;
    if (!text.trim() || controller) return;
    reset();
    controller = new AbortController();
    const mine = controller;
    runButton.disabled = true;
    stopButton.hidden = false;
    mark("plan", "waiting");
    const body = { task: text };
    if (sessionId) body.session_id = sessionId;
    try {
      await stream("POST", "/workflow?stream=true", body, onEvent, mine.signal);
    } catch (error) {
      if (error.name === "AbortError") {
        errorLine.replaceChildren("Stopped.");
        errorLine.hidden = false;
      } else {
        showError(errorLine, error, run);
      }
    } finally {
      for (const name of Object.keys(stages)) {
        if (["writing", "waiting", "repairing"].includes(stages[name].state.textContent)) mark(name, "stopped");
      }
      controller = null;
      runButton.disabled = false;
      stopButton.hidden = true;
    }
  }

  function stop() { if (controller) controller.abort(); }

  form.addEventListener("submit", (event) => { event.preventDefault(); run(); });
  stopButton.addEventListener("click", stop);
  newSession.addEventListener("click", () => {
    sessionId = null;
    sessionLine.textContent = "";
    newSession.hidden = true;
    reset();
    task.focus();
  });
  // The same task (or an edited one) again; the session's previous code goes with it.
  document.getElementById("again").addEventListener("click", () => {
    window.scrollTo({ top: 0 });
    run();
  });
  document.getElementById("download").addEventListener("click", () => CG.download("solution.py", finalCode));
  CG.keyboard(task, run, stop);
})();
