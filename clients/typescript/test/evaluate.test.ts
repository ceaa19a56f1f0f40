// The package against a live lossd at LOSSD_URL (tests/test_clients.py starts one and runs this):
// every transport, typed arrays in and out, errors, the raw API client, and the types that must
// refuse what the server would refuse. Any mismatch throws, and node exits 1.
import { Buffer } from "node:buffer";

import {
  API_VERSION,
  Client,
  type Evaluation,
  LossdError,
  type LossParams,
  type Tensor,
  type Transport,
  decodeFramed,
  encodeFramed,
  evaluate,
  pack,
  unpack,
} from "../src/index.js";
import { portableFromBase64, portableToBase64 } from "../src/arrays.js";

const baseUrl: string = process.env.LOSSD_URL ?? "";
if (!baseUrl) throw new Error("set LOSSD_URL to the server's base URL");
const lossd = new Client(baseUrl);
let passed = 0;

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`mismatch: ${what}`);
}

function close(a: number | null | undefined, b: number, rel = 1e-12): boolean {
  return a !== null && a !== undefined && Math.abs(a - b) <= rel * Math.max(1, Math.abs(b));
}

function allClose(actual: ArrayLike<number> | null | undefined, expected: number[], rel = 1e-12): boolean {
  return !!actual && actual.length === expected.length && expected.every((e, k) => close(actual[k], e, rel));
}

// huber on (2, 2), delta 1, with the gradient: README's first example
const predictions: Tensor = { data: new Float64Array([0.5, 2.0, 1.0, -1.0]), shape: [2, 2] };
const targets: Tensor = { data: new Float64Array([0.0, 0.0, 1.0, 1.0]), shape: [2, 2] };

async function everyTransportGivesTheSameAnswer(): Promise<void> {
  const answers: Evaluation<"huber">[] = [];
  for (const transport of ["packed", "binary", "json"] satisfies Transport[]) {
    const result = await lossd.evaluate("huber", predictions, targets, {
      params: { delta: 1.0 },
      gradient: true,
      transport,
    });
    check(result.loss === "huber" && result.value === 0.78125, `${transport}: value ${result.value}`);
    check(result.n === 2 && result.weight_sum === 2, `${transport}: n, weight_sum`);
    check(result.per_sample instanceof Float64Array, `${transport}: per_sample is a Float64Array`);
    check(allClose(result.per_sample, [0.8125, 0.75]), `${transport}: per_sample ${result.per_sample}`);
    const gradient = result.gradient;
    check(gradient?.shape.join() === "2,2", `${transport}: gradient shape ${gradient?.shape}`);
    check(allClose(gradient?.data, [0.125, 0.25, 0.0, -0.25]), `${transport}: gradient ${gradient?.data}`);
    check(result.hessian === null, `${transport}: no hessian asked for`);
    check(result.params.delta === 1, `${transport}: params ${JSON.stringify(result.params)}`);
    answers.push(result);
  }
  const [first, ...others] = answers;
  for (const other of others) {
    check(String(other.per_sample) === String(first?.per_sample), "transports agree to the last bit");
  }
  passed++;
}

async function float32InFloat32Out(): Promise<void> {
  const p = new Float32Array([0.5, 2.0, 1.0, -1.0]);
  const t = new Float32Array([0.0, 0.0, 1.0, 1.0]);
  for (const transport of ["binary", "packed"] satisfies Transport[]) {
    const result = await lossd.evaluate("mse", p, t, { dtype: "float32", gradient: true, hessian: true, transport });
    check(result.per_sample instanceof Float32Array, `${transport}: float32 answers`);
    check(close(result.value, 2.0625, 1e-6), `${transport}: mse ${result.value}`);
    check(allClose(result.gradient?.data, [0.25, 1.0, 0.0, -1.0], 1e-6), `${transport}: gradient`);
    check(allClose(result.hessian?.data, [0.5, 0.5, 0.5, 0.5], 1e-6), `${transport}: hessian`);
  }
  passed++;
}

async function eachFamilyWithItsParams(): Promise<void> {
  // the spec's binary example: logits, so from_logits
  const bce = await evaluate("binary_cross_entropy", [2.0, -1.0, 0.5], [1, 0, 1], {
    baseUrl,
    params: { from_logits: true },
  });
  check(close(bce.value, 0.3047555609137674), `binary_cross_entropy ${bce.value}`);
  // class-index targets as int32, logits, label smoothing: the spec's multiclass example
  const logits: Tensor = { data: new Float64Array([2.0, 0.5, -1.0, 0.1, 0.2, 3.0]), shape: [2, 3] };
  const ce = await lossd.evaluate("cross_entropy", logits, new Int32Array([0, 2]), {
    params: { from_logits: true, label_smoothing: 0.1 },
    transport: "binary",
  });
  check(close(ce.value, 0.3454563805893112), `cross_entropy ${ce.value}`);
  check(ce.params.label_smoothing === 0.1 && ce.params.ignore_index === null, "cross_entropy params");
  // weights enter the reductions: 0.25 + 1 + 2·4
  const weighted = await lossd.evaluate("mse", [0.5, 2.0, -1.0], [0.0, 1.0, 1.0], {
    sample_weight: [1, 1, 2],
    reduction: "sum",
  });
  check(weighted.value === 9.25 && weighted.weight_sum === 4, `weighted sum ${weighted.value}`);
  passed++;
}

async function errorsAreLossdErrors(): Promise<void> {
  try {
    await lossd.evaluate("mse", [1, 2], [1, 2, 3]);
    check(false, "a shape mismatch is refused");
  } catch (error) {
    check(error instanceof LossdError, `a LossdError, not ${String(error)}`);
    const problem = error as LossdError;
    check(problem.status === 422 && problem.code === "shape_mismatch", `${problem.status} ${problem.code}`);
    check(problem.problem?.errors?.[0]?.loc.includes("targets") === true, "the problem names targets");
  }
  try {
    await lossd.evaluate("msee" as "mse", [1], [1]);
    check(false, "an unknown loss is refused");
  } catch (error) {
    check(error instanceof LossdError && error.status === 404 && error.code === "unknown_loss", String(error));
  }
  passed++;
}

async function theWholeApiIsTyped(): Promise<void> {
  const { data, response } = await lossd.api.GET("/losses/{name}", { params: { path: { name: "huber" } } });
  check(response.status === 200 && data?.name === "huber" && data.family === "regression", "GET /losses/huber");
  // the client's version is the server's: both come from the same source tree
  const meta = await lossd.api.GET("/v2");
  check(meta.data?.version === API_VERSION, `server ${meta.data?.version}, client ${API_VERSION}`);
  passed++;
}

function packingRoundTrips(): void {
  const values = new Float64Array([0, -0, 1.5, -2.25, 1e-300, 1.7976931348623157e308, Math.PI]);
  const packed = pack(values);
  check(packed.dtype === "float64" && packed.shape.join() === "7", "pack: dtype and shape");
  check(packed.data === Buffer.from(values.buffer).toString("base64"), "pack: little-endian base64");
  check(String(unpack(packed).data) === String(values), "unpack(pack(x)) is x");
  for (let size = 0; size < 10; size++) {
    const bytes = Uint8Array.from({ length: size }, (_, k) => (k * 97 + 13) & 255);
    const text = Buffer.from(bytes).toString("base64");
    check(portableToBase64(bytes) === text, `portable base64 of ${size} bytes`);
    check(String(portableFromBase64(text)) === String(bytes), `portable base64 back, ${size} bytes`);
  }
  const { body, headerLength } = encodeFramed({ loss: "x" }, { gradient: { data: new Float64Array([1, 2, 3, 4]), shape: [2, 2] } });
  const decoded = decodeFramed(body, headerLength) as { loss: string; gradient: Tensor };
  check(decoded.loss === "x" && decoded.gradient.shape.join() === "2,2", "framing round trip");
  check(String(decoded.gradient.data) === "1,2,3,4", "framed bytes round trip");
  passed++;
}

function typesRefuseWhatTheServerRefuses(): void {
  // Never run (the condition is false at run time): tsc must reject each marked line.
  if (false as boolean) {
    // @ts-expect-error "msee" is no loss
    void lossd.evaluate("msee", [1], [1]);
    // @ts-expect-error huber takes delta, not from_logits
    void lossd.evaluate("huber", [1], [1], { params: { from_logits: true } });
    // @ts-expect-error delta is a number
    void lossd.evaluate("huber", [1], [1], { params: { delta: "1" } });
    // @ts-expect-error mse takes no parameters
    void lossd.evaluate("mse", [1], [1], { params: { delta: 1 } });
    // @ts-expect-error "median" is not a reduction
    void lossd.evaluate("mse", [1], [1], { reduction: "median" });
    // @ts-expect-error multi_margin's p is 1 or 2
    const p: LossParams<"multi_margin"> = { p: 3 };
    void p;
  }
  passed++;
}

// gaussian_nll with inputs.var and its gradient, on every transport; triplet_margin without
// targets; ctc's rank-3 log-probabilities with integer lengths
async function extraInputsTargetlessAndRank3(): Promise<void> {
  const mu = [0.5, 2.0, -1.0];
  const y = [0.0, 1.5, -1.0];
  const variance = [1.0, 0.25, 4.0];
  // torch's GaussianNLLLoss (full false): ½(log v + (μ − y)²/v); its derivative in v
  const want = mu.map((m, i) => 0.5 * (Math.log(variance[i]!) + (m - y[i]!) ** 2 / variance[i]!));
  const wantVar = mu.map((m, i) => (0.5 * (1 / variance[i]! - (m - y[i]!) ** 2 / variance[i]! ** 2)) / 3);
  for (const transport of ["packed", "binary", "json"] satisfies Transport[]) {
    const result = await lossd.evaluate("gaussian_nll", mu, y, {
      inputs: { var: variance },
      input_gradients: true,
      transport,
    });
    check(allClose(result.per_sample, want), `${transport}: gaussian_nll per_sample ${result.per_sample}`);
    const gradient = result.input_gradients?.var;
    check(gradient?.shape.join() === "3", `${transport}: input gradient shape ${gradient?.shape}`);
    check(allClose(gradient?.data, wantVar), `${transport}: gradient of inputs.var ${gradient?.data}`);
  }
  const plain = await lossd.evaluate("gaussian_nll", mu, y, { inputs: { var: variance } });
  check(plain.input_gradients === null, "no input_gradients unless asked for");
  for (const transport of ["packed", "binary", "json"] satisfies Transport[]) {
    const triplet = await lossd.evaluate("triplet_margin", [[0.0, 0.0]], null, {
      inputs: { positive: [[3.0, 4.0]], negative: [[0.0, 1.0]] },
      reduction: "sum",
      transport,
    });
    // max(d(a, p) − d(a, n) + 1, 0) with torch's eps 1e-6 added to each difference
    const d = (u: number, v: number): number => Math.hypot(u + 1e-6, v + 1e-6);
    check(close(triplet.value, d(-3, -4) - d(0, -1) + 1), `${transport}: triplet_margin ${triplet.value}`);
  }
  // ctc, one sample, T = 2 steps of log(0.6, 0.4), log(0.3, 0.7), label [1]: −log(0.6·0.7 +
  // 0.4·0.7 + 0.4·0.3) over the alignments (0, 1), (1, 1), (1, 0)
  const logProbs: Tensor = { data: new Float64Array([0.6, 0.4, 0.3, 0.7].map(Math.log)), shape: [1, 2, 2] };
  for (const transport of ["packed", "binary", "json"] satisfies Transport[]) {
    const ctc = await lossd.evaluate("ctc", logProbs, [[1]], {
      inputs: { input_lengths: new Int32Array([2]), target_lengths: new Int32Array([1]) },
      gradient: true,
      transport,
    });
    check(close(ctc.value, -Math.log(0.6 * 0.7 + 0.4 * 0.7 + 0.4 * 0.3)), `${transport}: ctc ${ctc.value}`);
    check(ctc.gradient?.shape.join() === "1,2,2", `${transport}: ctc gradient shape ${ctc.gradient?.shape}`);
  }
  passed++;
}

await everyTransportGivesTheSameAnswer();
await float32InFloat32Out();
await eachFamilyWithItsParams();
await errorsAreLossdErrors();
await theWholeApiIsTyped();
await extraInputsTargetlessAndRank3();
packingRoundTrips();
typesRefuseWhatTheServerRefuses();
console.log(`lossd-client: ${passed} checks passed`);
