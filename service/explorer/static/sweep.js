// The sweep of each family: one row of predictions with its element k swept over x, against a
// fixed target the user chooses. The arrays are built as the Python snippet builds them with
// numpy (np.linspace, then one addition), so both send the same numbers.

export const FAMILIES = {
  regression: {
    target: ["Target y", "3"],
    help: "x is the residual ŷ − y of element k: ŷ_k = y_k + x. One value: (N,) arrays; several: (N, C) rows.",
    axes: { residual: { label: "residual ŷ − y", from: -2.5, to: 2.5, row: "3", logits: null } },
  },
  binary: {
    target: ["Target y (0 or 1, or soft)", "1"],
    help: "x is the prediction of element k: a probability, or a logit (from_logits). One value: (N,) arrays.",
    axes: {
      probability: { label: "predicted probability p", from: 0.001, to: 0.999, row: "0.5", logits: false },
      logit: { label: "logit z", from: -6, to: 6, row: "0", logits: true },
    },
  },
  multiclass: {
    target: ["Target class", "0"],
    classIndex: true,
    help: "x is logit k of a row of C logits; the others stay fixed. Targets are class indices.",
    axes: { logit: { label: "logit z_k", from: -6, to: 6, row: "0, 0, 0", logits: true } },
  },
  distribution: {
    target: ["Target distribution", "0.6, 0.3, 0.1"],
    help: "x is logit k of the predicted distribution's row; the others stay fixed.",
    axes: { logit: { label: "logit z_k", from: -6, to: 6, row: "0, 0, 0", logits: true } },
  },
  overlap: {
    target: ["Target mask", "1, 0, 1, 1"],
    help: "x is element k of the predicted mask (a probability, or a logit with from_logits); the others stay fixed.",
    axes: {
      probability: { label: "predicted p_k", from: 0.001, to: 0.999, row: "0.8, 0.2, 0.7, 0.9", logits: false },
      logit: { label: "logit z_k", from: -6, to: 6, row: "1.5, -1.5, 1, 2", logits: true },
    },
  },
};

export const MAX_POINTS = 10001;

function numbers(text, what) {
  const parts = String(text).split(",").map((s) => s.trim());
  const values = parts.map(Number);
  if (parts.some((s) => s === "") || values.some((v) => !Number.isFinite(v))) {
    throw new Error(`${what}: expected numbers separated by commas, got "${text}"`);
  }
  return values;
}

function integer(text, what, low, high) {
  const value = Number(text);
  if (!Number.isInteger(value) || value < low || value > high) {
    throw new Error(`${what}: expected an integer from ${low} to ${high}, got "${text}"`);
  }
  return value;
}

/** x as numpy's linspace computes it: i·step + start, the last point exactly ``stop``. */
export function linspace(start, stop, n) {
  const step = (stop - start) / (n - 1);
  return Array.from({ length: n }, (_, i) => (i === n - 1 ? stop : i * step + start));
}

/** A Python float literal of ``v`` that reads back as the same double. */
export function pyFloat(v) {
  return Number.isInteger(v) && Math.abs(v) < 1e16 ? `${v}.0` : String(v);
}

/** The sweep's arrays and how to build them in Python, from the form's texts. */
export function build(family, axisName, form) {
  const spec = FAMILIES[family];
  const axis = spec.axes[axisName];
  const row = numbers(form.row, "Prediction row");
  const width = row.length;
  const k = integer(form.index, "Swept element k", 0, width - 1);
  const n = integer(form.points, "Points", 2, MAX_POINTS);
  const [from, to] = [numbers(form.from, "From"), numbers(form.to, "To")].map((v) => v[0]);
  const x = linspace(from, to, n);
  const rank1 = width === 1 && family !== "multiclass";
  const target = spec.classIndex
    ? integer(form.target, "Target class", 0, width - 1)
    : numbers(form.target, spec.target[0]);
  if (!spec.classIndex && target.length !== width) {
    throw new Error(`${spec.target[0]} has ${target.length} values, the prediction row ${width}`);
  }
  const residual = family === "regression";
  const swept = (xi) => (residual ? target[k] + xi : xi);
  let predictions;
  let targets;
  if (rank1) {
    predictions = x.map(swept);
    targets = x.map(() => target[0]);
  } else {
    predictions = x.map((xi) => row.map((v, j) => (j === k ? swept(xi) : v)));
    targets = x.map(() => (spec.classIndex ? target : target.slice()));
  }
  const list = (values) => `[${values.map(pyFloat).join(", ")}]`;
  const python = [`x = np.linspace(${pyFloat(from)}, ${pyFloat(to)}, ${n})  # ${axis.label}`];
  if (spec.classIndex) python.push(`targets = np.full(${n}, ${target})  # class indices`);
  else if (rank1) python.push(`targets = np.full(${n}, ${pyFloat(target[0])})`);
  else python.push(`targets = np.tile(${list(target)}, (${n}, 1))`);
  if (rank1) {
    python.push(`predictions = ${residual ? "targets + x" : "x"}`);
  } else {
    python.push(`predictions = np.tile(${list(row)}, (${n}, 1))`);
    python.push(`predictions[:, ${k}] = ${residual ? `targets[:, ${k}] + x` : "x"}`);
  }
  return { x, predictions, targets, k, rank1, label: axis.label, python };
}
