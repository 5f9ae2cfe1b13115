// Settings: a form built from GET /config; Save sends the changed fields with PATCH /config
// and shows each refused field's message next to it.
"use strict";

(function () {
  const { api, el, showError } = CG;
  const form = document.getElementById("settings-form");
  const fields = document.getElementById("settings-fields");
  const message = document.getElementById("settings-message");
  const errorLine = document.getElementById("settings-error");
  const choices = JSON.parse(document.getElementById("setting-choices").textContent);
  const LABELS = { llm: "LLM", ollama: "Ollama", openai_compatible: "LM Studio (OpenAI-compatible)", models: "Models per task complexity",
    embeddings: "Embeddings", logging: "Logging", workspace: "Workspace (read-only)", workflow: "Workflow", rag: "Code search", sandbox: "Sandbox limits",
    defaults: "defaults (any provider)", lm_studio: "lm_studio", embedded: "embedded", ollama_models: "ollama" };
  // Shown, never sent: the environment sets them.
  const READ_ONLY = ["workspace"];
  const readOnly = (name) => READ_ONLY.includes(name.split(".")[0]);
  // Shown first; the rest follow in the server's order.
  const ORDER = ["llm", "ollama", "openai_compatible", "models", "embeddings", "logging"];
  let loaded = {};

  function flatten(object, prefix, out) {
    for (const [key, value] of Object.entries(object)) {
      const name = prefix ? `${prefix}.${key}` : key;
      if (value && typeof value === "object" && !Array.isArray(value)) flatten(value, name, out);
      else out[name] = value;
    }
    return out;
  }

  function input(name, value) {
    const id = "setting-" + name.replaceAll(".", "-");
    let control;
    if (choices[name]) {
      control = el("select", { id, name }, choices[name].map((choice) => el("option", { value: choice, text: choice })));
      control.value = value;
    } else if (typeof value === "number") {
      control = el("input", { id, name, type: "number", step: "any", value: String(value) });
    } else {
      control = el("input", { id, name, type: name.endsWith("api_key") ? "password" : "text", value: value ?? "",
        list: name.startsWith("models.") || name === "embeddings.model" ? "model-names" : null,
        autocomplete: "off", placeholder: name.endsWith("api_key") ? "unchanged" : null, readonly: readOnly(name),
        title: readOnly(name) ? "Set by the environment (CODEGEN_WORKSPACE_ROOT); needs a restart" : null });
    }
    control.dataset.kind = typeof value;
    const label = name.split(".").pop().replaceAll("_", " ");
    return el("label", { "data-field": name }, el("span", { text: label }), control,
      el("span", { class: "field-error", id: id + "-error", hidden: true }));
  }

  function section(name, value, depth) {
    const box = el("fieldset", { "data-section": name },
      el("legend", { text: LABELS[depth ? name.split(".").pop() : name] || name.split(".").pop() }));
    const leaves = el("div", { class: "grid-form" });
    const nested = [];
    for (const [key, item] of Object.entries(value)) {
      const full = `${name}.${key}`;
      if (item && typeof item === "object") nested.push(section(full, item, depth + 1));
      else leaves.append(input(full, item));
    }
    if (name === "openai_compatible") leaves.append(input("openai_compatible.api_key", ""));
    if (leaves.children.length) box.append(leaves);
    box.append(...nested);
    return box;
  }

  async function load() {
    try {
      const config = await api("GET", "/config");
      loaded = flatten(config, "", {});
      loaded["openai_compatible.api_key"] = "";
      const names = ORDER.filter((key) => key in config).concat(Object.keys(config).filter((key) => !ORDER.includes(key)));
      fields.replaceChildren(...names.map((key) => section(key, config[key], 0)));
      errorLine.hidden = true;
    } catch (error) {
      showError(errorLine, error, load);
    }
  }

  async function loadModels() {
    try {
      const models = await api("GET", "/models");
      const names = Array.isArray(models) ? models : (models.models || []);
      document.getElementById("model-names").replaceChildren(...names.map((n) => el("option", { value: n })));
    } catch (_) { /* the provider is down: names are typed by hand */ }
  }

  function changes() {
    const patch = {};
    for (const control of form.querySelectorAll("[name]")) {
      const name = control.name;
      if (readOnly(name)) continue;
      let value = control.value;
      if (control.dataset.kind === "number") value = value.trim() === "" ? value : Number(value);
      if (name.endsWith("api_key") && value === "") continue;
      if (value === loaded[name]) continue;
      let target = patch;
      const keys = name.split(".");
      for (const key of keys.slice(0, -1)) target = target[key] = target[key] || {};
      target[keys[keys.length - 1]] = value;
    }
    return patch;
  }

  // "llm: provider: \"x\" is not a valid choice.; models: lm_studio: simple: …" → per field.
  function fieldErrors(detail) {
    const known = new Set(Object.keys(loaded));
    const found = [];
    for (const part of detail.split(/;\s+(?=[a-z_]+: )/)) {
      const pieces = part.split(": ");
      let key = pieces[0];
      let used = 1;
      while (used < pieces.length - 1 && [...known].some((name) => name === `${key}.${pieces[used]}` || name.startsWith(`${key}.${pieces[used]}.`))) {
        key += "." + pieces[used++];
      }
      found.push([key, pieces.slice(used).join(": ")]);
    }
    return found;
  }

  function clearErrors() {
    for (const node of form.querySelectorAll(".field-error")) { node.hidden = true; node.textContent = ""; }
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
    errorLine.hidden = true;
  }

  async function save(event) {
    event.preventDefault();
    clearErrors();
    message.hidden = true;
    const patch = changes();
    if (!Object.keys(patch).length) {
      message.textContent = "Nothing changed.";
      message.hidden = false;
      return;
    }
    try {
      const saved = await api("PATCH", "/config", patch);
      message.textContent = saved.message;
      message.hidden = false;
      await load();
      CG.refreshStatus();
      loadModels();
    } catch (error) {
      let placed = 0;
      if (error.status === 400) {
        for (const [key, text] of fieldErrors(error.detail)) {
          const slot = document.getElementById("setting-" + key.replaceAll(".", "-") + "-error");
          if (!slot) continue;
          slot.textContent = text;
          slot.hidden = false;
          document.getElementById("setting-" + key.replaceAll(".", "-")).setAttribute("aria-invalid", "true");
          placed++;
        }
      }
      if (!placed) showError(errorLine, error);
      else {
        const first = form.querySelector("[aria-invalid]");
        if (first) first.focus();
      }
    }
  }

  form.addEventListener("submit", save);
  document.getElementById("settings-reset").addEventListener("click", () => { clearErrors(); message.hidden = true; load(); });
  load();
  loadModels();
})();
