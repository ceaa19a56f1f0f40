// lossd's API as the page uses it: every request carries the pasted key, an error answer is a
// Problem with the server's own message, 503s are waited out, and binary bodies are framed as
// the README's "binary framing" (a JSON header, then the arrays' little-endian bytes).
// Paths are relative to the page (/explore): "losses" is /losses, behind any prefix too.

const HEADER_LENGTH = "Inference-Header-Content-Length";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
let key = "";

export function setKey(value) {
  key = value.trim();
}

export function hasKey() {
  return key !== "";
}

/** An error answer (problem+json): status, code, detail and errors as the server sent them. */
export class Problem extends Error {
  constructor(status, doc) {
    super(doc.detail || doc.title || `HTTP ${status}`);
    this.status = status;
    this.code = doc.code || "";
    this.errors = doc.errors || [];
  }
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** One exchange with the server (XMLHttpRequest: it reports upload progress); the status, a
 * header reader and the body's bytes. A connection that breaks is an Error with ``cut`` set. */
function exchange(path, { method = "GET", headers = {}, body = null, onUpload = null }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.responseType = "arraybuffer";
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    if (onUpload) xhr.upload.onprogress = (event) => onUpload(event.loaded, event.total);
    xhr.onload = () => resolve({ status: xhr.status, header: (name) => xhr.getResponseHeader(name), body: xhr.response });
    xhr.onerror = () => reject(Object.assign(new Error(`${method} ${path}: the connection broke`), { cut: true }));
    xhr.send(body);
  });
}

/** A request relative to the page, with the key; a 503 is retried after its Retry-After. */
export async function request(path, init = {}, onWait = () => {}) {
  for (let attempt = 0; ; attempt++) {
    const answer = await exchange(path, init);
    if (answer.status >= 200 && answer.status < 300) return answer;
    let doc;
    try {
      doc = JSON.parse(decoder.decode(answer.body));
    } catch {
      doc = { detail: `HTTP ${answer.status}` };
    }
    if (answer.status === 503 && attempt < 300) {
      onWait(doc.detail || "the server is busy");
      const wait = Number(answer.header("Retry-After") || 1);
      await sleep(1000 * Math.min(Math.max(wait, 0.2), 5));
      continue;
    }
    throw new Problem(answer.status, doc);
  }
}

const json = (answer) => JSON.parse(decoder.decode(answer.body));

export async function catalogue(onWait) {
  return json(await request("losses", {}, onWait)).losses;
}

/** POST /loss with a JSON body. */
export async function evaluateJson(body, onWait) {
  const init = { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  return json(await request("loss", init, onWait)).results;
}

/** The binary framing's JSON header: ``doc`` with each of ``arrays`` ({dtype, shape, bytes: a
 * Blob}) described, and the answer asked in the framing too. */
export function framedHeader(doc, arrays) {
  const described = { ...doc, array_format: "binary" };
  for (const [name, array] of Object.entries(arrays)) {
    described[name] = { dtype: array.dtype, shape: array.shape, binary_data_size: array.bytes.size };
  }
  return encoder.encode(JSON.stringify(described));
}

/** POST /loss in the binary framing; the results, their arrays as typed arrays in place of
 * their descriptions. ``onUpload(bytes sent, body bytes)`` follows the upload. */
export async function evaluateFramed(doc, arrays, { onWait, onUpload } = {}) {
  const header = framedHeader(doc, arrays);
  const init = {
    method: "POST",
    headers: { "Content-Type": "application/octet-stream", [HEADER_LENGTH]: String(header.length) },
    body: new Blob([header, ...Object.values(arrays).map((a) => a.bytes)]),
    onUpload,
  };
  const answer = await request("loss", init, onWait);
  const raw = answer.body;
  const length = Number(answer.header(HEADER_LENGTH));
  const results = JSON.parse(decoder.decode(new Uint8Array(raw, 0, length))).results;
  let offset = length;
  for (const result of results) {
    for (const [field, spec] of Object.entries(result)) {
      if (spec === null || typeof spec !== "object" || !("binary_data_size" in spec)) continue;
      const bytes = raw.slice(offset, offset + spec.binary_data_size); // a copy: aligned
      offset += spec.binary_data_size;
      result[field] = spec.dtype === "float32" ? new Float32Array(bytes) : new Float64Array(bytes);
    }
  }
  return results;
}

/** The correctly rounded sum of ``values``, as Python's math.fsum (Shewchuk's partials, with
 * its half-even correction): the chunks' sums add up to the bits one request's sum has. */
export function fsum(values) {
  const partials = [];
  let special = 0;
  for (let x of values) {
    if (!Number.isFinite(x)) {
      special += x;
      continue;
    }
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    if (x !== 0) partials.push(x);
  }
  if (special !== 0 || Number.isNaN(special)) return special;
  let n = partials.length;
  let hi = 0;
  let lo = 0;
  if (n > 0) {
    hi = partials[--n];
    while (n > 0) {
      const x = hi;
      const y = partials[--n];
      hi = x + y;
      lo = y - (hi - x);
      if (lo !== 0) break;
    }
    if (n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0))) {
      const y = lo * 2;
      const x = hi + y;
      if (y === x - hi) hi = x;
    }
  }
  return hi;
}
