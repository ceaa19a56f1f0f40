// Typed arrays on lossd's wire: packed arrays ({dtype, shape, data: base64}) inside JSON, and
// the binary framing (a JSON header, then the arrays' raw bytes), both little-endian and
// C-ordered. No dependency: runs in Node and in browsers alike.

/** The typed arrays lossd reads: float64, float32 and int32 (class-index targets). */
export type NumericArray = Float64Array | Float32Array | Int32Array;
/** The typed arrays lossd answers with: the compute dtype, float64 or float32. */
export type FloatArray = Float64Array | Float32Array;
/** (N,) or (N, C). */
/** (N,), (N, C), or (N, T, C) (ctc's log-probabilities). */
export type Shape = [number] | [number, number] | [number, number, number];

/** An array with its shape: `data` holds the elements in C order (row after row). */
export interface Tensor<A extends NumericArray = NumericArray> {
  data: A;
  shape: Shape;
}

/** What an argument of `evaluate` may be: JSON lists, a typed array (rank 1) or a Tensor. */
export type ArrayInput = number[] | number[][] | NumericArray | Tensor;

export type Dtype = "float64" | "float32" | "int32";

/** A packed array as lossd reads and writes it inside JSON. */
export interface Packed {
  dtype: Dtype;
  shape: number[];
  data: string;
}

/** An array field of a binary-framed header; its bytes follow the header. */
export interface Framed {
  dtype: Dtype;
  shape: number[];
  binary_data_size: number;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The dtype lossd calls a typed array's element type. */
export function dtypeOf(data: NumericArray): Dtype {
  if (data instanceof Float64Array) return "float64";
  if (data instanceof Float32Array) return "float32";
  return "int32";
}

/** A typed array (rank 1) or a Tensor as a Tensor; JSON lists as a float64 Tensor. */
export function asTensor(input: ArrayInput): Tensor {
  if (Array.isArray(input)) {
    const rows = input as (number | number[])[];
    if (rows.length > 0 && Array.isArray(rows[0])) {
      const matrix = rows as number[][];
      const columns = matrix[0]?.length ?? 0;
      if (matrix.some((row) => row.length !== columns)) {
        throw new RangeError("rows of a rank-2 array must all have the same length");
      }
      return { data: Float64Array.from(matrix.flat()), shape: [matrix.length, columns] };
    }
    return { data: Float64Array.from(rows as number[]), shape: [rows.length] };
  }
  if (ArrayBuffer.isView(input)) {
    return { data: input, shape: [input.length] };
  }
  const size = input.shape.reduce((a, b) => a * b, 1);
  if (size !== input.data.length) {
    throw new RangeError(`shape [${input.shape}] holds ${size} elements, data has ${input.data.length}`);
  }
  return input;
}

/** The little-endian bytes of a typed array (a view of it on a little-endian host). */
export function littleEndianBytes(data: NumericArray): Uint8Array {
  if (LITTLE_ENDIAN) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const out = new DataView(new ArrayBuffer(data.byteLength));
  data.forEach((value, k) => {
    if (data instanceof Float64Array) out.setFloat64(8 * k, value, true);
    else if (data instanceof Float32Array) out.setFloat32(4 * k, value, true);
    else out.setInt32(4 * k, value, true);
  });
  return new Uint8Array(out.buffer);
}

/** A typed array of `dtype` from little-endian bytes (copied, so always aligned). */
export function fromLittleEndian(bytes: Uint8Array, dtype: "float64" | "float32"): FloatArray {
  const size = dtype === "float64" ? 8 : 4;
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`${bytes.byteLength} bytes are not a whole number of ${dtype} values`);
  }
  // a copy of exactly these bytes: `bytes` may be a view into a larger buffer (Node's Buffer
  // pool), whose `slice` is another view, not a copy
  const copy = new ArrayBuffer(bytes.byteLength);
  new Uint8Array(copy).set(bytes);
  if (LITTLE_ENDIAN) return dtype === "float64" ? new Float64Array(copy) : new Float32Array(copy);
  const view = new DataView(copy);
  const count = bytes.byteLength / size;
  if (dtype === "float64") return Float64Array.from({ length: count }, (_, k) => view.getFloat64(8 * k, true));
  return Float32Array.from({ length: count }, (_, k) => view.getFloat32(4 * k, true));
}

/** An array as a packed array: `{dtype, shape, data}` with the base64 of its bytes. */
export function pack(input: NumericArray | Tensor): Packed {
  const tensor = asTensor(input);
  return {
    dtype: dtypeOf(tensor.data),
    shape: [...tensor.shape],
    data: toBase64(littleEndianBytes(tensor.data)),
  };
}

/** A packed array of an answer (float64 or float32) as a Tensor. */
export function unpack(packed: { dtype: string; shape: number[]; data: string }): Tensor<FloatArray> {
  const dtype = floatDtype(packed.dtype);
  return { data: fromLittleEndian(fromBase64(packed.data), dtype), shape: packed.shape as Shape };
}

/**
 * A request in the binary framing: `document` as the JSON header with each of `arrays` written
 * `{dtype, shape, binary_data_size}` (and each of `inputs` under the member `inputs`), then the
 * arrays' bytes in that order. Send `body` with
 * `Content-Type: application/octet-stream` and `Inference-Header-Content-Length: headerLength`.
 */
export function encodeFramed(
  document: Record<string, unknown>,
  arrays: Record<string, NumericArray | Tensor>,
  inputs: Record<string, NumericArray | Tensor> = {},
): { body: Uint8Array; headerLength: number } {
  const header: Record<string, unknown> = { ...document };
  const chunks: Uint8Array[] = [];
  const frame = (input: NumericArray | Tensor): Framed => {
    const tensor = asTensor(input);
    const bytes = littleEndianBytes(tensor.data);
    chunks.push(bytes);
    return { dtype: dtypeOf(tensor.data), shape: [...tensor.shape], binary_data_size: bytes.byteLength };
  };
  for (const [field, input] of Object.entries(arrays)) header[field] = frame(input);
  // a loss's extra named arrays: the member `inputs`, their bytes after the top-level arrays'
  const framedInputs = Object.fromEntries(Object.entries(inputs).map(([name, input]) => [name, frame(input)]));
  if (Object.keys(framedInputs).length > 0) header.inputs = framedInputs;
  const head = new TextEncoder().encode(JSON.stringify(header));
  const body = new Uint8Array(head.byteLength + chunks.reduce((n, c) => n + c.byteLength, 0));
  body.set(head, 0);
  let offset = head.byteLength;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return { body, headerLength: head.byteLength };
}

/**
 * An answer in the binary framing: the JSON header (its first `headerLength` bytes), each of
 * its `{dtype, shape, binary_data_size}` fields replaced by the Tensor its bytes hold, in the
 * order the header lists them. Fields nested in a list (POST /loss's `results`) are walked too.
 */
export function decodeFramed(body: Uint8Array, headerLength: number): Record<string, unknown> {
  if (headerLength > body.byteLength) {
    throw new RangeError(`header length ${headerLength} is past the body's ${body.byteLength} bytes`);
  }
  const document = JSON.parse(new TextDecoder().decode(body.subarray(0, headerLength))) as Record<string, unknown>;
  let offset = headerLength;
  const walk = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(walk);
    if (node === null || typeof node !== "object") return node;
    const record = node as Record<string, unknown>;
    if (typeof record.binary_data_size === "number" && typeof record.dtype === "string") {
      const size = record.binary_data_size;
      const data = fromLittleEndian(body.subarray(offset, offset + size), floatDtype(record.dtype));
      offset += size;
      return { data, shape: record.shape as Shape } satisfies Tensor<FloatArray>;
    }
    return Object.fromEntries(Object.entries(record).map(([key, value]) => [key, walk(value)]));
  };
  const decoded = walk(document) as Record<string, unknown>;
  if (offset !== body.byteLength) {
    throw new RangeError(`the header's arrays take ${offset - headerLength} bytes, the body has ${body.byteLength - headerLength}`);
  }
  return decoded;
}

function floatDtype(dtype: string): "float64" | "float32" {
  if (dtype === "float64" || dtype === "float32") return dtype;
  throw new RangeError(`lossd answers float64 or float32 arrays, not ${dtype}`);
}

// Standard base64 (RFC 4648, with padding): Node's Buffer where there is one (native, fast on
// large arrays), otherwise plain code that runs in any browser, without a string of one
// character per byte as btoa needs.
interface NodeBuffer {
  from(buffer: ArrayBufferLike, byteOffset: number, length: number): { toString(encoding: "base64"): string };
  from(text: string, encoding: "base64"): Uint8Array;
}
const nodeBuffer = (globalThis as { Buffer?: NodeBuffer }).Buffer;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const CODES = new Uint8Array(128).fill(255);
for (let k = 0; k < ALPHABET.length; k++) CODES[ALPHABET.charCodeAt(k)] = k;

/** Standard base64 of `bytes`. */
export function toBase64(bytes: Uint8Array): string {
  if (nodeBuffer) return nodeBuffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
  return portableToBase64(bytes);
}

/** `toBase64` without Buffer (what browsers run; exported for its test under Node). */
export function portableToBase64(bytes: Uint8Array): string {
  const parts: string[] = [];
  const CHUNK = 3 * 16384; // whole 3-byte groups per string piece
  for (let start = 0; start < bytes.length; start += CHUNK) {
    const end = Math.min(start + CHUNK, bytes.length);
    let piece = "";
    for (let k = start; k < end; k += 3) {
      const a = bytes[k] ?? 0;
      const b = bytes[k + 1] ?? 0;
      const c = bytes[k + 2] ?? 0;
      const n = (a << 16) | (b << 8) | c;
      piece += ALPHABET[(n >> 18) & 63]! + ALPHABET[(n >> 12) & 63]!;
      piece += k + 1 < end ? ALPHABET[(n >> 6) & 63]! : "=";
      piece += k + 2 < end ? ALPHABET[n & 63]! : "=";
    }
    parts.push(piece);
  }
  return parts.join("");
}

/** The bytes of standard base64 text (padding required, as lossd writes it). */
export function fromBase64(text: string): Uint8Array {
  if (nodeBuffer) return nodeBuffer.from(text, "base64");
  return portableFromBase64(text);
}

/** `fromBase64` without Buffer (what browsers run; exported for its test under Node). */
export function portableFromBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0) throw new RangeError("base64 text length is not a multiple of 4");
  const padding = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - padding);
  let o = 0;
  for (let k = 0; k < text.length; k += 4) {
    let n = 0;
    for (let j = 0; j < 4; j++) {
      const ch = text.charCodeAt(k + j);
      const code = ch === 61 ? 0 : ch < 128 ? CODES[ch]! : 255; // 61: "="
      if (code === 255) throw new RangeError(`not base64: ${JSON.stringify(text[k + j])}`);
      n = (n << 6) | code;
    }
    if (o < out.length) out[o++] = (n >> 16) & 255;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  return out;
}
