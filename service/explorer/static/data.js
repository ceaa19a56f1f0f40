// The user's files: each chosen loss over all their rows. Files larger than one request are
// sent in pieces as the Python client splits a batch (its Job.rows_per_piece: the server's
// limits, whole 4096-row summation blocks), each piece asked for its sum, and the sums merged
// as it merges them: mean = Σ sum_i / Σ weight_sum_i, both sums correctly rounded (fsum). The
// page's value is then the client's, bit for bit. Then the per-sample losses' histogram and
// the 20 worst samples of each loss.

import { Problem, evaluateFramed, framedHeader, fsum } from "./api.js";
import { color, histogram } from "./charts.js";
import { openSource } from "./files.js";

const BLOCK_ROWS = 4096; // the server sums rows in blocks of this many (service/reductions.py)
const WORST = 20;
const CUT_FLOOR_BYTES = 1 << 16; // a broken upload larger than this is taken for a refusal
// The server's defaults (LOSSD_MAX_ELEMENTS, LOSSD_MAX_BODY_BYTES): it does not publish its
// limits, so the page, as the Python client, starts from these and lowers them on a 413.
export const DEFAULT_LIMITS = { maxElements: 33_554_432, maxBodyBytes: 268_435_456 };

/** The most rows one request may carry under ``limits``: whole blocks when that is one or more. */
export function pieceRows(sources, doc, limits) {
  const widest = Object.fromEntries(
    ["predictions", "targets"].map((name, i) => [
      name,
      { dtype: sources[i].dtype, shape: sources[i].shape.map(() => 2 ** 63), bytes: { size: 2 ** 63 } },
    ]),
  );
  const room = limits.maxBodyBytes - framedHeader(doc, widest).length - 64;
  const rowBytes = sources.reduce((total, s) => total + s.rowBytes, 0);
  const width = Math.max(...sources.map((s) => s.width));
  const rows = Math.max(1, Math.min(Math.floor(limits.maxElements / width), Math.floor(room / Math.max(rowBytes, 1))));
  return rows >= BLOCK_ROWS ? rows - (rows % BLOCK_ROWS) : rows;
}

/** Lower ``limits`` after the server refused a piece of ``rows`` rows and ``size`` bytes (or
 * the connection broke while a large one was sent): whether a smaller piece is worth a try. */
function lowered(error, limits, rows, size, elements) {
  if (rows <= 1) return false;
  const named = (pattern) => Number(pattern.exec(error.message)?.[1] ?? NaN);
  if (error instanceof Problem && error.code === "too_many_elements") {
    const limit = named(/has more than (\d+) elements/);
    limits.maxElements = Math.min(limits.maxElements, limit || Math.floor(elements / 2));
  } else if (error instanceof Problem && error.code === "payload_too_large") {
    const limit = named(/larger than (\d+) bytes/);
    limits.maxBodyBytes = Math.min(limits.maxBodyBytes, limit || Math.floor(size / 2));
  } else if ((error instanceof Problem && error.code === "memory_budget") || (error.cut && size > CUT_FLOOR_BYTES)) {
    limits.maxBodyBytes = Math.min(limits.maxBodyBytes, Math.floor(size / 2));
  } else {
    return false;
  }
  return true;
}

/** The ``count`` largest values (NaNs skipped) as [row, value], largest first; ties by row. */
export function worst(values, count = WORST) {
  const top = [];
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (Number.isNaN(v) || (top.length === count && v <= top[count - 1][1])) continue;
    let at = top.length;
    while (at > 0 && top[at - 1][1] < v) at--;
    top.splice(at, 0, [i, v]);
    if (top.length > count) top.pop();
  }
  return top;
}

/** Each loss over the two sources: its mean, weight_sum, n and per-sample losses. */
export async function evaluateFiles(sources, losses, { limits, onProgress, onWait }) {
  const [predictions, targets] = sources;
  if (predictions.rows !== targets.rows) {
    throw new Error(`${predictions.name} has ${predictions.rows} rows, ${targets.name} ${targets.rows}`);
  }
  const n = predictions.rows;
  const doc = { losses, reduction: "sum", per_sample: true };
  const totals = losses.map(() => ({ sums: [], weights: [], perSample: new Float64Array(n), float32: false }));
  let requests = 0;
  for (let start = 0; start < n || requests === 0; ) {
    const stop = Math.min(n, start + pieceRows(sources, doc, limits));
    const array = (source) => ({
      dtype: source.dtype,
      shape: [stop - start, ...source.shape.slice(1)],
      bytes: source.bytes(start, stop),
    });
    const arrays = { predictions: array(predictions), targets: array(targets) };
    let results;
    try {
      results = await evaluateFramed(doc, arrays, {
        onWait,
        onUpload: (sent, size) => onProgress(start + ((stop - start) * sent) / Math.max(size, 1), n),
      });
    } catch (error) {
      const size = arrays.predictions.bytes.size + arrays.targets.bytes.size;
      const elements = (stop - start) * Math.max(predictions.width, targets.width);
      const rows = stop - start;
      if (lowered(error, limits, rows, size, elements) && pieceRows(sources, doc, limits) < rows) {
        continue; // the same rows again, in smaller pieces
      }
      throw error;
    }
    requests++;
    results.forEach((result, i) => {
      totals[i].sums.push(result.value);
      totals[i].weights.push(result.weight_sum);
      totals[i].perSample.set(result.per_sample, start);
      totals[i].float32 ||= result.per_sample instanceof Float32Array;
    });
    start = stop;
    onProgress(stop, n);
  }
  return totals.map((total, i) => {
    const weightSum = fsum(total.weights);
    let value = weightSum > 0 ? fsum(total.sums) / weightSum : 0;
    if (total.float32) value = Math.fround(value);
    return { name: losses[i].name, params: losses[i].params, value, weight_sum: weightSum, n, requests, perSample: total.perSample };
  });
}

function cell(row, text, header = false) {
  const element = document.createElement(header ? "th" : "td");
  element.textContent = text;
  row.append(element);
}

/** A table in a box that scrolls sideways when the table is wider than the page. */
function table(caption, head, rows) {
  const box = document.createElement("div");
  box.className = "scroll";
  const element = document.createElement("table");
  box.append(element);
  element.createCaption().textContent = caption;
  const top = element.createTHead().insertRow();
  head.forEach((text) => cell(top, text, true));
  const body = element.createTBody();
  for (const values of rows) {
    const row = body.insertRow();
    values.forEach((text) => cell(row, text));
  }
  return box;
}

// A row of the files, shortly: six significant digits, at most four values.
const short = (v) => (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6))));
const shown = (values) => values.slice(0, 4).map(short).join(", ") + (values.length > 4 ? ", …" : "");

/** The results: a summary table, then per loss its histogram and its worst samples. */
export async function render(container, sources, results) {
  container.replaceChildren();
  const summary = results.map((r) => [r.name, String(r.value), String(r.weight_sum), String(r.n), String(r.requests)]);
  container.append(table("Mean over the files (merged from the chunks)", ["loss", "value", "weight_sum", "n", "requests"], summary));
  const cards = document.createElement("div");
  cards.className = "cards";
  container.append(cards);
  for (const [i, result] of results.entries()) {
    const card = document.createElement("article");
    card.className = "card";
    const title = document.createElement("h3");
    title.textContent = result.name;
    card.append(title);
    cards.append(card);
    histogram(card, "per-sample losses", result.perSample, color(i));
    result.worst = worst(result.perSample);
    const rows = [];
    for (const [rank, [row, value]] of result.worst.entries()) {
      const [p, t] = await Promise.all(sources.map((s) => s.row(row)));
      rows.push([String(rank + 1), String(row), String(value), shown(p), shown(t)]);
    }
    card.append(table(`The ${WORST} worst samples`, ["#", "row", "loss", "prediction", "target"], rows));
  }
}

export { openSource };
