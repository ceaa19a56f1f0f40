// A small typed client over lossd's generated API types: `evaluate(name, predictions, targets,
// options)` with the loss's name checked against the spec's canonical names and its params
// against that loss's own parameter schema, arrays sent as typed arrays (packed base64 or the
// binary framing), and problem+json errors thrown as LossdError.
import createClient, { type Client as ApiClient } from "openapi-fetch";

import {
  type ArrayInput,
  type FloatArray,
  type NumericArray,
  type Shape,
  type Tensor,
  asTensor,
  decodeFramed,
  encodeFramed,
  pack,
  unpack,
} from "./arrays.js";
import type { components, paths } from "./generated/lossd.js";

type Schemas = components["schemas"];
type LossRequest = Schemas["LossRequest"];

/** The canonical loss names (the spec's LossName). Aliases are a server-side convenience the
 * types leave out: the server answers under the canonical name either way. */
export type LossName = Schemas["LossName"];
/** Every loss's parameters, by canonical name (the spec's LossParamsByName). */
export type LossParamsByName = Schemas["LossParamsByName"];
/** The parameters of loss `N`: only the keys that loss takes, with their types. */
export type LossParams<N extends LossName> = LossParamsByName[N];
/** An RFC 9457 problem document with lossd's stable `code`. */
export type Problem = Schemas["Problem"];

/**
 * How `evaluate` moves arrays: `packed` (default) sends and receives base64 inside JSON;
 * `binary` the binary framing (raw bytes, no base64: the fastest for large batches); `json`
 * plain JSON lists (what a proxy that inspects bodies can read).
 */
export type Transport = "packed" | "binary" | "json";

export interface EvaluateOptions<N extends LossName> {
  /** The loss's own parameters; what is not sent takes its default. */
  params?: LossParams<N>;
  /** (N,) non-negative weights of the samples in the reductions. */
  sample_weight?: number[] | NumericArray | Tensor;
  reduction?: NonNullable<LossRequest["reduction"]>;
  reduce_over?: NonNullable<LossRequest["reduce_over"]>;
  per_sample?: boolean;
  gradient?: boolean;
  hessian?: boolean;
  /** The loss's extra named arrays by name (`gaussian_nll`'s `var`, `margin_ranking`'s
   * `input2`, `triplet_margin`'s `positive` and `negative`, `ctc`'s lengths). */
  inputs?: Record<string, ArrayInput>;
  /** Also answer the gradient with respect to each differentiable extra input. */
  input_gradients?: boolean;
  /** The compute dtype, float64 unless sent. */
  dtype?: NonNullable<LossRequest["dtype"]>;
  transport?: Transport;
  signal?: AbortSignal;
}

/** A loss evaluated on one batch; arrays are typed arrays of the compute dtype. */
export interface Evaluation<N extends LossName = LossName> {
  loss: N;
  reduction: "mean" | "sum" | "none";
  reduce_over: "samples" | "elements";
  /** The reduced loss; null for reduction `none`. */
  value: number | null;
  /** The normaliser of the mean: Σ weights (× class weights where the loss has them). */
  weight_sum: number;
  n: number;
  /** (N,) losses, one per sample; null with `per_sample: false`. */
  per_sample: FloatArray | null;
  /** The gradient of the reduced value, of the predictions' shape; null unless asked for. */
  gradient: Tensor<FloatArray> | null;
  /** The diagonal of the Hessian, of the predictions' shape; null unless asked for. */
  hessian: Tensor<FloatArray> | null;
  /** The parameters in force, defaults filled in. */
  params: LossParams<N>;
  /** The gradients with respect to the extra inputs, by name, each of its input's shape; null
   * unless `input_gradients` was asked for. */
  input_gradients: Record<string, Tensor<FloatArray>> | null;
}

/** An error answer of lossd (problem+json), or an answer that is not lossd's at all. */
export class LossdError extends Error {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly problem: Problem | null;

  constructor(status: number, problem: Problem | null, text: string) {
    const code = problem?.code ?? "http_error";
    const detail = problem?.detail ?? text.slice(0, 500);
    super(`${status} ${code}: ${detail}`);
    this.name = "LossdError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    this.problem = problem;
  }
}

export interface ClientOptions {
  /** Sent as `Authorization: Bearer <key>` to a server with LOSSD_API_KEYS. */
  apiKey?: string;
  headers?: Record<string, string>;
  /** The fetch to use (default: the global one of Node 18+ and browsers). */
  fetch?: typeof fetch;
}

const HEADER_LENGTH = "Inference-Header-Content-Length";
const ARRAY_FIELDS = ["per_sample", "gradient", "hessian"] as const;

export class Client {
  readonly baseUrl: string;
  /** Every route of the API, typed from the spec (openapi-fetch): `api.GET("/losses")`. */
  readonly api: ApiClient<paths, "application/json" | "application/problem+json">;
  readonly #headers: Record<string, string>;
  readonly #fetch: typeof fetch;

  constructor(baseUrl = "http://127.0.0.1:8000", options: ClientOptions = {}) {
    this.baseUrl = baseUrl.replace(/\/+$/, "");
    const auth: Record<string, string> = options.apiKey ? { Authorization: `Bearer ${options.apiKey}` } : {};
    this.#headers = { ...options.headers, ...auth };
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
    this.api = createClient<paths, "application/json" | "application/problem+json">({
      baseUrl: this.baseUrl,
      headers: this.#headers,
      fetch: this.#fetch,
    });
  }

  /** Evaluate loss `name` on one batch: the reduced value, per-sample losses and, when asked
   * for, the gradient and the diagonal Hessian with respect to the predictions. `targets` is
   * null for a loss that takes none (`triplet_margin`). */
  async evaluate<N extends LossName>(
    name: N,
    predictions: ArrayInput,
    targets: ArrayInput | null,
    options: EvaluateOptions<N> = {},
  ): Promise<Evaluation<N>> {
    const { params, sample_weight, inputs = {}, transport = "packed", signal, ...rest } = options;
    const document: Record<string, unknown> = { ...rest };
    if (params !== undefined) document.params = params;
    const arrays: Record<string, Tensor> = { predictions: asTensor(predictions) };
    if (targets !== null) arrays.targets = asTensor(targets);
    if (sample_weight !== undefined) arrays.sample_weight = asTensor(sample_weight);
    const extra = Object.fromEntries(Object.entries(inputs).map(([key, input]) => [key, asTensor(input)]));
    const headers: Record<string, string> = { ...this.#headers, Accept: "application/json" };
    let body: Uint8Array | string;
    if (transport === "binary") {
      document.array_format = "binary";
      const framed = encodeFramed(document, arrays, extra);
      body = framed.body;
      headers["Content-Type"] = "application/octet-stream";
      headers[HEADER_LENGTH] = String(framed.headerLength);
      headers.Accept = "application/octet-stream";
    } else {
      document.array_format = transport === "packed" ? "packed" : "list";
      const write = (tensor: Tensor): unknown => (transport === "packed" ? pack(tensor) : toLists(tensor));
      for (const [field, tensor] of Object.entries(arrays)) document[field] = write(tensor);
      if (Object.keys(extra).length > 0) {
        document.inputs = Object.fromEntries(Object.entries(extra).map(([key, tensor]) => [key, write(tensor)]));
      }
      body = JSON.stringify(document);
      headers["Content-Type"] = "application/json";
    }
    const init: RequestInit = { method: "POST", headers, body: body as BodyInit };
    if (signal !== undefined) init.signal = signal;
    const response = await this.#fetch(`${this.baseUrl}/loss/${encodeURIComponent(name)}`, init);
    if (!response.ok) throw await errorOf(response);
    const result =
      transport === "binary"
        ? decodeFramed(new Uint8Array(await response.arrayBuffer()), Number(response.headers.get(HEADER_LENGTH)))
        : ((await response.json()) as Record<string, unknown>);
    return evaluation<N>(result, options.dtype ?? "float64");
  }
}

/** `new Client(baseUrl, options).evaluate(name, predictions, targets, options)` in one call. */
export async function evaluate<N extends LossName>(
  name: N,
  predictions: ArrayInput,
  targets: ArrayInput | null,
  options: EvaluateOptions<N> & ClientOptions & { baseUrl?: string } = {},
): Promise<Evaluation<N>> {
  const { baseUrl, apiKey, headers, fetch: fetcher, ...evaluateOptions } = options;
  const clientOptions: ClientOptions = {};
  if (apiKey !== undefined) clientOptions.apiKey = apiKey;
  if (headers !== undefined) clientOptions.headers = headers;
  if (fetcher !== undefined) clientOptions.fetch = fetcher;
  return new Client(baseUrl, clientOptions).evaluate(name, predictions, targets, evaluateOptions);
}

type Lists = number[] | Lists[];

function toLists(tensor: Tensor): Lists {
  const nest = (flat: number[], shape: number[]): Lists => {
    const [rows = 0, ...rest] = shape;
    if (rest.length === 0) return flat;
    const width = rest.reduce((a, b) => a * b, 1);
    return Array.from({ length: rows }, (_, i) => nest(flat.slice(i * width, (i + 1) * width), rest));
  };
  return nest(Array.from(tensor.data), [...tensor.shape]);
}

/** One answer array, whichever way it came (lists, packed, framed), as a typed-array Tensor. */
function tensorOf(value: unknown, dtype: string): Tensor<FloatArray> | null {
  if (Array.isArray(value)) {
    const shape: number[] = [];
    for (let node: unknown = value; Array.isArray(node); node = node[0]) shape.push(node.length);
    const flat = (value as unknown[]).flat(shape.length) as number[];
    const data = dtype === "float32" ? Float32Array.from(flat) : Float64Array.from(flat);
    return { data, shape: shape as Shape };
  }
  if (value !== null && typeof value === "object" && "data" in value) {
    const data = (value as { data: unknown }).data;
    return typeof data === "string"
      ? unpack(value as { dtype: string; shape: number[]; data: string })
      : (value as Tensor<FloatArray>);
  }
  return null;
}

/** An answer's arrays, whichever way they came (lists, packed, framed), as typed arrays. */
function evaluation<N extends LossName>(result: Record<string, unknown>, dtype: string): Evaluation<N> {
  const out = { ...result } as Record<string, unknown>;
  for (const field of ARRAY_FIELDS) {
    const tensor = tensorOf(result[field], dtype);
    out[field] = field === "per_sample" ? (tensor?.data ?? null) : tensor;
  }
  const sent = result.input_gradients;
  out.input_gradients =
    sent !== null && typeof sent === "object"
      ? Object.fromEntries(Object.entries(sent).map(([key, value]) => [key, tensorOf(value, dtype)]))
      : null;
  return out as unknown as Evaluation<N>;
}

async function errorOf(response: Response): Promise<LossdError> {
  const text = await response.text();
  let problem: Problem | null = null;
  if ((response.headers.get("content-type") ?? "").startsWith("application/problem+json")) {
    try {
      problem = JSON.parse(text) as Problem;
    } catch {
      problem = null;
    }
  }
  return new LossdError(response.status, problem, text);
}
