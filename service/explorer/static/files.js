// A dropped file as rows to send: .npy (read a chunk at a time when its dtype is one lossd takes,
// little-endian and C-ordered: the bytes go as they are) or .csv (numbers, an optional header
// line; one column is (N,), several (N, C), as the Python client reads them).

const SERVER_DTYPES = { f8: "float64", f4: "float32", f2: "float16", i8: "int64", i4: "int32" };
const READERS = {
  f8: "getFloat64", f4: "getFloat32", i8: "getBigInt64", i4: "getInt32", i2: "getInt16",
  i1: "getInt8", u8: "getBigUint64", u4: "getUint32", u2: "getUint16", u1: "getUint8",
  b1: "getUint8",
};

function half(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Element ``i`` of ``view`` as a number. */
function element(view, i, code, size, little) {
  if (code === "f2") return half(view.getUint16(i * size, little));
  const value = view[READERS[code]](i * size, little);
  return typeof value === "bigint" ? Number(value) : value;
}

/** A source of rows: ``bytes(start, stop)`` in ``dtype``, ``row(i)`` as numbers. */
class Source {
  constructor(file, shape, dtype, itemsize, read) {
    this.file = file;
    this.name = file.name;
    this.shape = shape;
    this.rows = shape[0];
    this.width = shape.length === 2 ? shape[1] : 1;
    this.dtype = dtype;
    this.rowBytes = this.width * itemsize;
    this.itemsize = itemsize;
    this.read = read; // (byte offset, byte length) -> Blob
  }

  /** Rows ``start`` to ``stop`` as a Blob: a slice of the file itself when it is sent as it
   * is, so that the browser streams it from disk. */
  bytes(start, stop) {
    return this.read(start * this.rowBytes, (stop - start) * this.rowBytes);
  }

  async row(i) {
    const view = new DataView(await this.bytes(i, i + 1).arrayBuffer());
    const code = Object.keys(SERVER_DTYPES).find((c) => SERVER_DTYPES[c] === this.dtype);
    return Array.from({ length: this.width }, (_, j) => element(view, j, code, this.itemsize, true));
  }
}

const inMemory = (buffer) => (offset, length) => new Blob([new Uint8Array(buffer, offset, length)]);

async function npy(file) {
  const head = new DataView(await file.slice(0, 12).arrayBuffer());
  const magic = String.fromCharCode(...new Uint8Array(head.buffer, 1, 5));
  if (head.byteLength < 10 || head.getUint8(0) !== 0x93 || magic !== "NUMPY") {
    throw new Error(`${file.name}: not a .npy file`);
  }
  const major = head.getUint8(6);
  const start = major === 1 ? 10 : 12;
  const length = major === 1 ? head.getUint16(8, true) : head.getUint32(8, true);
  const text = await file.slice(start, start + length).text();
  const descr = /'descr':\s*'([<>|=])([a-z])(\d+)'/.exec(text);
  const fortran = /'fortran_order':\s*True/.test(text);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(text);
  if (!descr || !shapeText) throw new Error(`${file.name}: a .npy dtype lossd cannot read`);
  const shape = shapeText[1].split(",").filter((s) => s.trim()).map(Number);
  if (shape.length < 1 || shape.length > 2) {
    throw new Error(`${file.name}: shape (${shape}); lossd takes (N,) or (N, C)`);
  }
  const [, order, kind, size] = descr;
  const code = `${kind}${size}`;
  const little = order !== ">";
  const offset = start + length;
  const count = shape.reduce((a, b) => a * b, 1);
  if (little && SERVER_DTYPES[code] && !(fortran && shape.length === 2)) {
    const read = (at, bytes) => file.slice(offset + at, offset + at + bytes);
    return new Source(file, shape, SERVER_DTYPES[code], Number(size), read);
  }
  if (!READERS[code] && code !== "f2") {
    throw new Error(`${file.name}: dtype ${order}${code} is not a number type lossd takes`);
  }
  // Anything else (big-endian, Fortran order, bool and small integers) as float64 in C order.
  const view = new DataView(await file.slice(offset, offset + count * Number(size)).arrayBuffer());
  const out = new Float64Array(count);
  const [rows, width] = [shape[0], shape[1] || 1];
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < width; j++) {
      const at = fortran ? j * rows + i : i * width + j;
      out[i * width + j] = element(view, at, code, Number(size), little);
    }
  }
  return new Source(file, shape, "float64", 8, inMemory(out.buffer));
}

async function csv(file) {
  const lines = (await file.text()).split(/\r?\n/);
  while (lines.length && lines[lines.length - 1].trim() === "") lines.pop();
  const isNumber = (s) => s.trim() !== "" && !Number.isNaN(Number(s));
  const first = lines.length && !isNumber(lines[0].split(",")[0]) ? 1 : 0; // a header line
  const width = lines.length > first ? lines[first].split(",").length : 1;
  const rows = lines.length - first;
  const out = new Float64Array(rows * width);
  for (let i = 0; i < rows; i++) {
    const fields = lines[first + i].split(",");
    if (fields.length !== width || !fields.every(isNumber)) {
      throw new Error(`${file.name}, line ${first + i + 1}: expected ${width} numbers`);
    }
    fields.forEach((field, j) => (out[i * width + j] = Number(field)));
  }
  const shape = width === 1 ? [rows] : [rows, width];
  const source = new Source(file, shape, "float64", 8, inMemory(out.buffer));
  source.header = first === 1;
  return source;
}

/** The file as a Source, by its suffix. */
export async function openSource(file) {
  const suffix = file.name.toLowerCase().split(".").pop();
  if (suffix === "npy") return npy(file);
  if (suffix === "csv") return csv(file);
  throw new Error(`${file.name}: not a .npy or .csv file`);
}
