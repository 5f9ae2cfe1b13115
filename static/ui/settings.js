// Settings: a form built from GET /config, each field with its help, range and unit from the
// OpenAPI schema (/api/schema); Save (kept in view) sends the changed fields with PATCH /config,
// shows what happened beside itself and each refused field's message next to the field.
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
    improve_change: "Changes from one instruction", defaults: "defaults (any provider)", lm_studio: "lm_studio", embedded: "embedded", ollama_models: "ollama" };
  // Shown, never sent: the environment sets them.
  const READ_ONLY = ["workspace"];
  const readOnly = (name) => READ_ONLY.includes(name.split(".")[0]);
  // Shown first; the rest follow in the server's order.
  const ORDER = ["llm", "ollama", "openai_compatible", "models", "embeddings", "logging"];
  let loaded = {};
  let fieldSchemas = {};

  // --- help from the schema -----------------------------------------------------------------
  // Each setting's help, range and unit (x-unit) come from the schema.
  const unitOf = (name) => (fieldSchemas[name] || {})["x-unit"] || "";

  // name ("ollama.timeout") → that property's schema, $refs followed.
  function flattenSchema(schema) {
    const components = (schema.components || {}).schemas || {};
    const deref = (node) => {
      let seen = 0;
      while (node && seen++ < 10) {
        if (node.$ref) node = Object.assign({}, components[node.$ref.split("/").pop()], node.description ? { description: node.description } : {});
        else if (node.allOf && node.allOf.length === 1) node = Object.assign({}, deref(node.allOf[0]), node.description ? { description: node.description } : {});
        else break;
      }
      return node || {};
    };
    const out = {};
    const walk = (node, prefix) => {
      for (const [key, property] of Object.entries(deref(node).properties || {})) {
        const name = prefix ? `${prefix}.${key}` : key;
        const resolved = deref(property);
        if (resolved.properties) walk(resolved, name);
        else out[name] = resolved;
      }
    };
    walk(components.ConfigView || components.PatchedEditableConfig || {}, "");
    return out;
  }

  async function loadSchema() {
    try {
      fieldSchemas = flattenSchema(await api("GET", "/api/schema?format=json"));
    } catch (_) { fieldSchemas = {}; /* the form still works, without the help */ }
  }

  const number = (value) => Number(value).toLocaleString("en");

  function helpText(name) {
    const schema = fieldSchemas[name] || {};
    const unit = unitOf(name);
    const parts = [];
    // drf-spectacular appends an enum's values to its description: the select shows them already.
    const description = (schema.description || "").split(/\n*\* `/)[0].trim();
    if (description) parts.push(description.replace(/\.?$/, "."));
    const low = schema.minimum ?? schema.exclusiveMinimum;
    const high = schema.maximum ?? schema.exclusiveMaximum;
    if (low !== undefined && high !== undefined) parts.push(`${number(low)}–${number(high)}${unit ? " " + unit : ""}.`);
    else if (low !== undefined) parts.push(`At least ${number(low)}${unit ? " " + unit : ""}.`);
    else if (high !== undefined) parts.push(`At most ${number(high)}${unit ? " " + unit : ""}.`);
    else if (unit) parts.push(`In ${unit}.`);
    if (schema.pattern && schema.pattern.startsWith("^https?://")) parts.push("An http:// or https:// address.");
    if (name.endsWith("api_key")) parts.push("Left blank, the saved key stays.");
    return parts.join(" ");
  }

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
    const schema = fieldSchemas[name] || {};
    const help = helpText(name);
    let control;
    if (choices[name]) {
      control = el("select", { id, name }, choices[name].map((choice) => el("option", { value: choice, text: choice })));
      control.value = value;
    } else if (Array.isArray(value)) {
      // A list setting is edited as its items separated by commas.
      control = el("input", { id, name, type: "text", value: value.join(", "), autocomplete: "off" });
    } else if (typeof value === "number") {
      control = el("input", { id, name, type: "number", value: String(value), inputmode: schema.type === "integer" ? "numeric" : "decimal",
        step: schema.type === "integer" ? "1" : "any", min: schema.minimum ?? null, max: schema.maximum ?? null });
    } else {
      control = el("input", { id, name, type: name.endsWith("api_key") ? "password" : "text", value: value ?? "",
        list: name === "embeddings.model" ? "embedding-model-names" : name.startsWith("models.") ? "model-names" : null,
        autocomplete: "off", placeholder: name.endsWith("api_key") ? "unchanged" : null, readonly: readOnly(name),
        title: readOnly(name) ? "Set by the environment (CODEGEN_WORKSPACE_ROOT); needs a restart" : null });
    }
    control.dataset.kind = Array.isArray(value) ? "list" : typeof value;
    const described = [help ? id + "-help" : null, id + "-error"].filter(Boolean).join(" ");
    control.setAttribute("aria-describedby", described);
    // "memory mb" → "memory (MB)"; "max tokens" and "chunk lines" say their unit already.
    const unit = typeof value === "number" ? unitOf(name) : "";
    let label = name.split(".").pop().replaceAll("_", " ");
    if (unit) label = label.replace(/ (mb|kb|bytes|chars)$/, "");
    if (unit && !label.endsWith(unit)) label += ` (${unit})`;
    return el("label", { "data-field": name }, el("span", { text: label }), control,
      help ? el("span", { class: "help muted small", id: id + "-help", text: help }) : null,
      el("span", { class: "field-error", id: id + "-error", hidden: true }));
  }

  function section(name, value, depth) {
    const box = el("fieldset", { "data-section": name },
      el("legend", { text: LABELS[depth ? name.split(".").pop() : name] || name.split(".").pop() }));
    const leaves = el("div", { class: "grid-form" });
    const nested = [];
    for (const [key, item] of Object.entries(value)) {
      const full = `${name}.${key}`;
      if (item && typeof item === "object" && !Array.isArray(item)) nested.push(section(full, item, depth + 1));
      else leaves.append(input(full, item));
    }
    if (name === "openai_compatible") leaves.append(input("openai_compatible.api_key", ""));
    if (leaves.children.length) box.append(leaves);
    box.append(...nested);
    return box;
  }

  async function load() {
    try {
      const [config] = await Promise.all([api("GET", "/config"), schemaLoaded]);
      loaded = flatten(config, "", {});
      loaded["openai_compatible.api_key"] = "";
      const names = ORDER.filter((key) => key in config).concat(Object.keys(config).filter((key) => !ORDER.includes(key)));
      fields.replaceChildren(...names.map((key) => section(key, config[key], 0)));
      errorLine.hidden = true;
    } catch (error) {
      showError(errorLine, error, load);
    }
  }

  // The model fields offer the chat models; the embeddings field offers every name.
  async function loadModels() {
    try {
      const models = await api("GET", "/models?details=true");
      const chat = CG.chatModels(models, loaded["embeddings.model"]);
      document.getElementById("model-names").replaceChildren(...chat.map((n) => el("option", { value: n })));
      document.getElementById("embedding-model-names").replaceChildren(...CG.modelNames(models).map((n) => el("option", { value: n })));
    } catch (_) { /* the provider is down: names are typed by hand */ }
  }

  function changes() {
    const patch = {};
    for (const control of form.querySelectorAll("[name]")) {
      const name = control.name;
      if (readOnly(name)) continue;
      let value = control.value;
      if (control.dataset.kind === "number") value = value.trim() === "" ? value : Number(value);
      if (control.dataset.kind === "list") {
        value = value.split(",").map((item) => item.trim()).filter(Boolean);
        if (JSON.stringify(value) === JSON.stringify(loaded[name])) continue;
      }
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
        errorLine.textContent = placed === 1 ? "Not saved: one field was refused (its message is beside it)."
          : `Not saved: ${placed} fields were refused (each message is beside its field).`;
        errorLine.hidden = false;
        const first = form.querySelector("[aria-invalid]");
        if (first) first.focus();
      }
    }
  }

  form.addEventListener("submit", save);
  // A result beside Save is about the last Save: an edit after it clears it.
  form.addEventListener("input", () => { message.hidden = true; });
  document.getElementById("settings-reset").addEventListener("click", () => { clearErrors(); message.hidden = true; load(); });
  const schemaLoaded = loadSchema();
  load().then(loadModels);
})();
