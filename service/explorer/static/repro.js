// The curl command and the Python client call that give the page's numbers. A key, when one is
// in use, is read from $LOSSD_API_KEY rather than written into the command.

/** ``text`` as one single-quoted shell word. */
export function shellQuote(text) {
  return `'${String(text).replaceAll("'", "'\\''")}'`;
}

/** A JSON value as a Python literal. */
export function pyLiteral(value) {
  if (value === null) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (Array.isArray(value)) return `[${value.map(pyLiteral).join(", ")}]`;
  if (typeof value === "object") {
    return `{${Object.entries(value).map(([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v)}`).join(", ")}}`;
  }
  if (typeof value === "number" && Number.isInteger(value)) return String(value);
  return JSON.stringify(value);
}

const AUTH = `-H "Authorization: Bearer $LOSSD_API_KEY"`;

function client(url, keyed) {
  const head = keyed ? ["import os", ""] : [];
  const made = keyed ? `Client(${JSON.stringify(url)}, api_key=os.environ["LOSSD_API_KEY"])` : `Client(${JSON.stringify(url)})`;
  return [...head, "import numpy as np", "from lossd_client import Client", "", `client = ${made}`];
}

const identifier = (name) => name.replace(/\W/g, "_");

/** curl of the curves' request: POST /loss with the sweep as JSON. */
export function curlCurves(url, body, keyed) {
  const parts = ["curl -s -X POST", shellQuote(url), "-H 'Content-Type: application/json'"];
  if (keyed) parts.push(AUTH);
  parts.push("-d", shellQuote(JSON.stringify(body)));
  return parts.join(" ");
}

/** The Python client's calls for the curves: the sweep with numpy, one evaluate per loss. */
export function pythonCurves(url, sweep, losses, keyed) {
  const column = sweep.rank1 ? "" : `[:, ${sweep.k}]`;
  const lines = [...client(url, keyed), ...sweep.python];
  for (const { name, params } of losses) {
    const v = identifier(name);
    lines.push(
      `${v} = client.evaluate(${JSON.stringify(name)}, predictions, targets, params=${pyLiteral(params)},`,
      `    reduction="sum", gradient=True, hessian=True)`,
      `print(${v}.per_sample, ${v}.gradient${column}, ${v}.hessian${column})  # value, gradient, Hessian`,
    );
  }
  return lines.join("\n");
}

/** curl of one request over the whole files (.npy only: curl sends them as they are). */
export function curlData(url, files, losses, keyed) {
  const options = { losses, reduction: "mean" };
  const parts = ["curl -s", shellQuote(url)];
  if (keyed) parts.push(AUTH);
  parts.push(`-F predictions=@${shellQuote(files[0].name)}`, `-F targets=@${shellQuote(files[1].name)}`);
  parts.push(`--form-string ${shellQuote(`options=${JSON.stringify(options)}`)}`);
  return parts.join(" ");
}

function load(source) {
  if (source.name.toLowerCase().endsWith(".npy")) return `np.load(${JSON.stringify(source.name)})`;
  const skip = source.header ? ", skiprows=1" : "";
  return `np.loadtxt(${JSON.stringify(source.name)}, delimiter=","${skip})`;
}

/** The Python client's calls for the files: each loss's mean over them. */
export function pythonData(url, sources, losses, keyed) {
  const lines = [...client(url, keyed), `predictions = ${load(sources[0])}`, `targets = ${load(sources[1])}`];
  for (const { name, params } of losses) {
    lines.push(`print(${JSON.stringify(name)}, client.evaluate(${JSON.stringify(name)}, predictions, targets, params=${pyLiteral(params)}).value)`);
  }
  return lines.join("\n");
}

/** A titled, copyable block of code. */
export function snippet(title, code) {
  const figure = document.createElement("figure");
  figure.className = "snippet";
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "Copy";
  button.setAttribute("aria-label", `Copy: ${title}`);
  const pre = document.createElement("pre");
  pre.tabIndex = 0;
  const text = document.createElement("code");
  text.textContent = code;
  pre.append(text);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code);
    } catch {
      getSelection().selectAllChildren(text); // no clipboard (plain http): selected, to copy by hand
      button.textContent = "Selected: press Ctrl+C";
      return;
    }
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = "Copy"), 1500);
  });
  caption.append(" ", button);
  figure.append(caption, pre);
  return figure;
}
