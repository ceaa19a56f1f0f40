// Charts with uPlot (a global from its vendored IIFE build): the curves' three synchronised
// charts and the data's histograms, each as wide as its box. Legends show the exact numbers
// under the cursor; a focused chart moves its cursor with the arrow keys (Home and End jump to
// the ends).

const uPlot = globalThis.uPlot;
const COLORS = ["#1f6fb4", "#c62828", "#2e7d32", "#7b1fa2", "#e65100", "#00838f", "#6d4c41", "#ad1457"];
export const color = (i) => COLORS[i % COLORS.length];
const exact = (_, v) => (v == null ? "–" : String(v));
const KINDS = [
  ["value", "loss l"],
  ["gradient", "gradient ∂l/∂x"],
  ["hessian", "Hessian diagonal ∂²l/∂x²"],
];

function height(width) {
  return Math.round(Math.min(260, Math.max(160, width * 0.45)));
}

function keyboard(plot, box, label) {
  box.tabIndex = 0;
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", `${label}; arrow keys move the cursor and the legend shows its values`);
  box.addEventListener("keydown", (event) => {
    const n = plot.data[0].length;
    const steps = { ArrowLeft: -1, ArrowRight: 1, PageDown: -10, PageUp: 10 };
    let idx = plot.cursor.idx ?? Math.floor(n / 2);
    if (event.key in steps) idx = Math.min(n - 1, Math.max(0, idx + steps[event.key]));
    else if (event.key === "Home") idx = 0;
    else if (event.key === "End") idx = n - 1;
    else return;
    event.preventDefault();
    const left = plot.valToPos(plot.data[0][idx], "x");
    plot.setCursor({ left, top: plot.bbox.height / devicePixelRatio / 2 }, true, true);
  });
}

/** One chart in ``parent``: x and one series per ``series`` entry ({label, values, color}). */
export function chart(parent, title, x, xLabel, series, extra = {}) {
  const figure = document.createElement("figure");
  const caption = document.createElement("figcaption");
  caption.textContent = title;
  const box = document.createElement("div");
  figure.append(caption, box);
  parent.append(figure);
  const width = Math.max(240, parent.clientWidth - 4);
  const options = {
    width,
    height: height(width),
    scales: { x: { time: false } },
    axes: [{ label: xLabel, size: 40 }, { size: 60 }],
    series: [
      { label: xLabel, value: exact },
      ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, value: exact, ...s.options })),
    ],
    legend: { live: true },
    ...extra,
  };
  const plot = new uPlot(options, [x, ...series.map((s) => s.values)], box);
  keyboard(plot, box, title);
  new ResizeObserver(() => {
    const wide = Math.max(240, box.clientWidth - 4);
    if (Math.abs(plot.width - wide) > 1) plot.setSize({ width: wide, height: height(wide) });
  }).observe(box);
  return plot;
}

/** The curves: value, gradient and Hessian of each loss against x, cursors in step. */
export class Curves {
  constructor(container) {
    this.container = container;
    this.plots = [];
  }

  draw(x, xLabel, losses) {
    this.clear();
    const cursor = { sync: { key: "curves", scales: ["x", null] } };
    for (const [kind, title] of KINDS) {
      const series = losses.map((loss, i) => ({ label: loss.label, values: loss[kind], color: color(i) }));
      this.plots.push(chart(this.container, title, x, xLabel, series, { cursor }));
    }
  }

  clear() {
    for (const plot of this.plots) plot.destroy();
    this.plots = [];
    this.container.replaceChildren();
  }
}

/** A histogram of ``values`` (finite ones) in ``bins`` bins, as bars. */
export function histogram(parent, title, values, colour, bins = 40) {
  let [low, high] = [Infinity, -Infinity];
  for (const v of values) {
    if (Number.isFinite(v)) [low, high] = [Math.min(low, v), Math.max(high, v)];
  }
  if (low > high) [low, high] = [0, 1];
  const width = high > low ? (high - low) / bins : 1;
  const counts = new Array(bins).fill(0);
  for (const v of values) {
    if (Number.isFinite(v)) counts[Math.min(bins - 1, Math.floor((v - low) / width))]++;
  }
  const edges = counts.map((_, i) => low + i * width);
  const bars = uPlot.paths.bars({ align: 1, size: [1, Infinity] });
  const series = [{ label: "samples", values: counts, color: colour, options: { fill: `${colour}66`, paths: bars, width: 1 } }];
  return chart(parent, title, edges, "per-sample loss (bin start)", series, {
    scales: { x: { time: false, range: [low, low + bins * width] } },
  });
}
