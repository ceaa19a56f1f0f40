// A loss's parameters as form inputs, generated from its JSON schema in GET /losses: a checkbox
// for a boolean, a list for an enum, a text field for anything else (numbers as typed, other
// values as JSON). Defaults are shown; what the user types is sent as typed, so that the server
// judges it and its own message is shown beside the field.

const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;

function kind(schema) {
  if (schema.enum) return "enum";
  if (schema.type === "boolean") return "boolean";
  if (schema.type === "number" || schema.type === "integer") return "number";
  return "json";
}

let counter = 0;

export class ParamsForm {
  /** ``onChange`` after each edit; ``onReset`` after the Defaults button reset every field. */
  constructor(loss, onChange, onReset = () => {}) {
    this.name = loss.name;
    this.fields = new Map();
    this.element = document.createElement("fieldset");
    this.element.className = "params";
    const legend = document.createElement("legend");
    legend.textContent = `${loss.name} parameters`;
    this.element.append(legend);
    const about = document.createElement("p");
    about.className = "help";
    about.textContent = loss.summary;
    this.element.append(about);
    const reset = document.createElement("button");
    reset.type = "button";
    reset.className = "reset";
    reset.textContent = "Defaults";
    reset.setAttribute("aria-label", `${loss.name}: every parameter to its default`);
    reset.addEventListener("click", () => {
      for (const field of this.fields.values()) this.set(field.input.name, field.schema.default);
      onReset();
      onChange();
    });
    if (Object.keys(loss.params.properties || {}).length) about.append(" ", reset);
    this.error = document.createElement("p");
    this.error.className = "field-error";
    this.element.append(this.error);
    const properties = loss.params.properties || {};
    if (!Object.keys(properties).length) about.textContent += " No parameters.";
    for (const [name, schema] of Object.entries(properties)) {
      this.fields.set(name, this.field(name, schema));
    }
    this.element.addEventListener("input", onChange);
    this.element.addEventListener("change", onChange);
  }

  field(name, schema) {
    const id = `param-${++counter}`;
    const type = kind(schema);
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = name;
    let input;
    if (type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = schema.default === true;
    } else if (type === "enum") {
      input = document.createElement("select");
      for (const value of schema.enum) input.append(new Option(JSON.stringify(value), JSON.stringify(value)));
      input.value = JSON.stringify(schema.default);
    } else {
      input = document.createElement("input");
      input.inputMode = type === "number" ? "decimal" : "text";
      input.spellcheck = false;
      input.value = type === "number" ? String(schema.default) : JSON.stringify(schema.default);
    }
    input.id = id;
    input.name = name;
    const help = document.createElement("small");
    help.id = `${id}-help`;
    help.textContent = `${schema.description || ""} (default ${JSON.stringify(schema.default)})`;
    const error = document.createElement("span");
    error.className = "field-error";
    error.id = `${id}-error`;
    input.setAttribute("aria-describedby", `${help.id} ${error.id}`);
    const row = document.createElement("div");
    row.className = `param ${type}`;
    row.append(label, input, help, error);
    this.element.append(row);
    return { input, type, schema, error, initial: this.text(input, type) };
  }

  text(input, type) {
    return type === "boolean" ? String(input.checked) : input.value.trim();
  }

  /** The parameters to send: every field that differs from its default, parsed as typed. */
  values() {
    const params = {};
    for (const [name, { input, type, initial }] of this.fields) {
      const text = this.text(input, type);
      if (text === initial || text === "") continue;
      if (type === "boolean") params[name] = input.checked;
      else if (type === "enum") params[name] = JSON.parse(text);
      else if (type === "number") params[name] = NUMBER.test(text) ? Number(text) : text;
      else {
        try {
          params[name] = JSON.parse(text);
        } catch {
          params[name] = text;
        }
      }
    }
    return params;
  }

  has(name) {
    return this.fields.has(name);
  }

  set(name, value) {
    const field = this.fields.get(name);
    if (!field) return;
    if (field.type === "boolean") field.input.checked = value;
    else field.input.value = field.type === "number" ? String(value) : JSON.stringify(value);
    field.error.textContent = "";
  }

  /** The server's errors for this loss: under their fields, or the whole form's. */
  showErrors(errors) {
    this.clearErrors();
    for (const { loc, msg } of errors) {
      const field = this.fields.get(loc[3]);
      const target = field ? field.error : this.error;
      target.textContent = target.textContent ? `${target.textContent}; ${msg}` : msg;
      if (field) field.input.setAttribute("aria-invalid", "true");
    }
  }

  clearErrors() {
    this.error.textContent = "";
    for (const { input, error } of this.fields.values()) {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
  }
}
