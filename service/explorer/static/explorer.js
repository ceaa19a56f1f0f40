// The explorer page: the catalogue from GET /losses, the chosen losses' parameter forms, the
// sweep, and one POST /loss per redraw. window.explorer exposes what is plotted (lastData), the
// last error and the files' results, and idle() (a promise of the next quiet moment), for tests.

import * as api from "./api.js";
import { Curves } from "./charts.js";
import { DEFAULT_LIMITS, evaluateFiles, openSource, render } from "./data.js";
import { ParamsForm } from "./params.js";
import { curlCurves, curlData, pythonCurves, pythonData, snippet } from "./repro.js";
import { FAMILIES, build } from "./sweep.js";

const $ = (id) => document.getElementById(id);
const explorer = {
  lastData: null,
  lastError: null,
  data: null,
  snippets: {},
  limits: { ...DEFAULT_LIMITS }, // the server's, as far as the page knows: lowered by its 413s
};
window.explorer = explorer;

const forms = new Map(); // loss name -> ParamsForm, kept when the family changes
const chosen = new Map(); // family -> chosen loss names
const sources = [null, null];
let catalogue = [];
let family = "";
let axis = "";
let timer = null;
let running = 0;
let ticket = 0;
let waiters = [];
const curves = new Curves($("charts"));
explorer.plotted = () => curves.plots.map((plot) => plot.data); // [x, loss 1, loss 2, ...] each

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

const waiting = (detail) => status(`Waiting for the server: ${detail}`);

function settle() {
  if (timer === null && running === 0) waiters.splice(0).forEach((done) => done());
}

explorer.idle = () => new Promise((done) => (waiters.push(done), settle()));

function schedule(delay = 150) {
  clearTimeout(timer);
  timer = setTimeout(() => {
    timer = null;
    running++;
    redraw().finally(() => (running--, settle()));
  }, delay);
}

function losses() {
  return (chosen.get(family) || []).map((name) => ({ name, params: forms.get(name).values() }));
}

function showProblem(error, names) {
  explorer.lastError = { status: error.status, code: error.code, detail: error.message, errors: error.errors };
  const code = error.code ? `${error.status} ${error.code}: ` : "";
  status(code + error.message, true);
  for (const [k, name] of names.entries()) {
    forms.get(name).showErrors((error.errors || []).filter((e) => e.loc[0] === "losses" && e.loc[1] === k));
  }
}

function fields() {
  return Object.fromEntries(["target", "row", "index", "from", "to", "points"].map((id) => [id, $(id).value]));
}

async function redraw() {
  const mine = ++ticket;
  const names = chosen.get(family) || [];
  names.forEach((name) => forms.get(name).clearErrors());
  if (!names.length) {
    curves.clear();
    status("Choose a loss to plot.");
    return;
  }
  let sweep;
  try {
    sweep = build(family, axis, fields());
  } catch (error) {
    explorer.lastError = { detail: error.message };
    status(error.message, true);
    return;
  }
  const body = {
    losses: losses(),
    predictions: sweep.predictions,
    targets: sweep.targets,
    reduction: "sum",
    gradient: true,
    hessian: true,
  };
  let results;
  try {
    results = await api.evaluateJson(body, waiting);
  } catch (error) {
    if (mine === ticket) error instanceof api.Problem ? showProblem(error, names) : status(String(error), true);
    return;
  }
  if (mine !== ticket) return; // a later redraw is on its way
  const column = (array) => (sweep.rank1 ? array : array.map((row) => row[sweep.k]));
  const named = (params) => Object.entries(params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ");
  const plotted = results.map((result, i) => ({
    name: result.loss,
    label: result.loss + (named(body.losses[i].params) ? ` (${named(body.losses[i].params)})` : ""),
    params: body.losses[i].params,
    value: result.per_sample,
    gradient: column(result.gradient),
    hessian: column(result.hessian),
  }));
  curves.draw(sweep.x, sweep.label, plotted);
  explorer.lastError = null;
  explorer.lastData = { family, axis, x: sweep.x, k: sweep.k, rank1: sweep.rank1, request: body, losses: plotted };
  status(`${plotted.length} loss${plotted.length > 1 ? "es" : ""} over ${sweep.x.length} points: one POST /loss.`);
  const url = new URL("loss", document.baseURI).href;
  const base = new URL(".", document.baseURI).href.replace(/\/$/, "");
  explorer.snippets.curl = curlCurves(url, body, api.hasKey());
  explorer.snippets.python = pythonCurves(base, sweep, plotted, api.hasKey());
  showSnippets();
}

function showSnippets() {
  const { curl, python, dataCurl, dataPython } = explorer.snippets;
  const blocks = [];
  if (curl) blocks.push(snippet("The curves: curl (its per_sample, gradient and hessian)", curl));
  if (python) blocks.push(snippet("The curves: Python client", python));
  if (dataCurl) blocks.push(snippet("Your files: curl (one request: the files must fit in one)", dataCurl));
  if (dataPython) blocks.push(snippet("Your files: Python client", dataPython));
  $("snippets").replaceChildren(...blocks);
}

function applyLogits(names) {
  const logits = FAMILIES[family].axes[axis].logits;
  if (logits === null) return;
  for (const name of names) forms.get(name).set("from_logits", logits);
}

function chooseAxis(name) {
  axis = name;
  $("axis").value = name;
  const spec = FAMILIES[family].axes[name];
  $("row").value = spec.row;
  $("from").value = String(spec.from);
  $("to").value = String(spec.to);
  $("index").value = "0";
  $("points").value = "201";
  applyLogits(chosen.get(family));
  schedule(0);
}

function showForms() {
  const names = chosen.get(family);
  $("params").replaceChildren(...names.map((name) => forms.get(name).element));
}

function chooseFamily(name) {
  family = name;
  $("family").value = name;
  const spec = FAMILIES[name];
  const members = catalogue.filter((loss) => loss.family === name);
  if (!chosen.has(name)) chosen.set(name, [members[0].name]);
  const boxes = members.map((loss) => {
    const label = document.createElement("label");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.value = loss.name;
    box.checked = chosen.get(name).includes(loss.name);
    label.title = loss.summary;
    label.append(box, ` ${loss.name}`);
    return label;
  });
  const legend = document.createElement("legend");
  legend.textContent = "Losses to compare";
  $("losses").replaceChildren(legend, ...boxes);
  $("axis").replaceChildren(...Object.keys(spec.axes).map((a) => new Option(a, a)));
  $("axis-field").hidden = Object.keys(spec.axes).length < 2;
  $("target-label").textContent = spec.target[0];
  $("target").value = spec.target[1];
  $("sweep-help").textContent = spec.help;
  showForms();
  chooseAxis(Object.keys(spec.axes)[0]);
}

$("losses").addEventListener("change", () => {
  const names = [...$("losses").querySelectorAll("input:checked")].map((box) => box.value);
  const added = names.filter((name) => !chosen.get(family).includes(name));
  chosen.set(family, names);
  applyLogits(added);
  showForms();
  schedule(0);
});
$("family").addEventListener("change", () => chooseFamily($("family").value));
$("axis").addEventListener("change", () => chooseAxis($("axis").value));
$("sweep").addEventListener("input", () => schedule());
$("sweep").addEventListener("submit", (event) => event.preventDefault());

// --- the files ---------------------------------------------------------------------------------

async function pick(slot, file) {
  explorer.data = null;
  running++;
  try {
    sources[slot] = file ? await openSource(file) : null;
    const ready = sources.every(Boolean);
    $("evaluate").disabled = !ready;
    if (ready) await evaluate();
  } catch (error) {
    sources[slot] = null;
    status(error.message, true);
  } finally {
    running--;
    settle();
  }
}

let evaluation = 0;

async function evaluate() {
  const progress = $("progress");
  const chosenLosses = losses();
  if (!chosenLosses.length) return status("Choose a loss first.", true);
  const mine = ++evaluation; // a later evaluation (other files, other losses) supersedes this one
  running++;
  progress.hidden = false;
  progress.value = 0;
  $("evaluate").disabled = true;
  try {
    const files = [...sources];
    const results = await evaluateFiles(files, chosenLosses, {
      limits: explorer.limits,
      onProgress: (done, total) => {
        if (mine === evaluation) [progress.max, progress.value] = [Math.max(total, 1), done];
      },
      onWait: waiting,
    });
    if (mine !== evaluation) return;
    await render($("data-results"), files, results);
    explorer.lastError = null;
    explorer.data = results.map(({ perSample, ...rest }) => rest);
    status(`Your files: ${results[0].n} rows in ${results[0].requests} request(s).`);
    const url = new URL("loss", document.baseURI).href;
    const base = new URL(".", document.baseURI).href.replace(/\/$/, "");
    const npy = files.every((s) => s.name.toLowerCase().endsWith(".npy"));
    explorer.snippets.dataCurl = npy ? curlData(url, files, chosenLosses, api.hasKey()) : "";
    explorer.snippets.dataPython = pythonData(base, files, chosenLosses, api.hasKey());
    showSnippets();
  } catch (error) {
    if (mine !== evaluation) return;
    explorer.lastError = { status: error.status, code: error.code, detail: error.message };
    status(error.code ? `${error.status} ${error.code}: ${error.message}` : error.message, true);
  } finally {
    $("evaluate").disabled = false;
    running--;
    settle();
  }
}

const inputs = ["predictions", "targets"].map((name) => $(`${name}-file`));

/** Files dropped on a box: one is that box's; two are both, the targets the one whose name
 * says so (target, label, y_...), else the second. */
function dropped(slot, files) {
  let chosenFiles = [[slot, files[0]]];
  if (files.length >= 2) {
    const targets = /target|label|truth|^y[._-]/i.test(files[0].name) ? 0 : 1;
    chosenFiles = [[0, files[1 - targets]], [1, files[targets]]];
  }
  for (const [at, file] of chosenFiles) {
    const list = new DataTransfer();
    list.items.add(file);
    inputs[at].files = list.files;
    pick(at, file);
  }
}

for (const [slot, input] of inputs.entries()) {
  const drop = input.closest(".drop");
  input.addEventListener("change", () => pick(slot, input.files[0]));
  drop.addEventListener("dragover", (event) => (event.preventDefault(), drop.classList.add("over")));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) dropped(slot, [...event.dataTransfer.files]);
  });
}
// A file dropped beside the boxes must not replace the page with itself.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
$("evaluate").addEventListener("click", evaluate);

// --- start: the key, then the catalogue ------------------------------------------------------

async function start() {
  running++;
  try {
    // a sweep sends predictions and targets only: the losses that take extra inputs (or no
    // targets) are for the API and the clients, not for these curves
    catalogue = (await api.catalogue(waiting)).filter(
      (loss) => !(loss.inputs || []).length && loss.targets.length,
    );
    for (const loss of catalogue) {
      forms.set(loss.name, new ParamsForm(loss, () => schedule(), () => applyLogits([loss.name])));
    }
    const families = Object.keys(FAMILIES).filter((f) => catalogue.some((loss) => loss.family === f));
    $("family").replaceChildren(...families.map((f) => new Option(f, f)));
    status("");
    chooseFamily(families[0]);
  } catch (error) {
    const keyed = error.status === 401;
    status(keyed ? `${error.message}: paste a key above.` : String(error.message), true);
    explorer.lastError = { status: error.status, code: error.code, detail: error.message };
  } finally {
    running--;
    settle();
  }
}

$("key").value = sessionStorage.getItem("lossd-key") || "";
api.setKey($("key").value);
$("key").addEventListener("change", () => {
  api.setKey($("key").value);
  sessionStorage.setItem("lossd-key", $("key").value.trim());
  if (catalogue.length) schedule(0);
  else explorer.ready = start();
});
explorer.ready = start();
