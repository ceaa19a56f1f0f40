// A typed lossd client generated from openapi/openapi.json (openapi-typescript + openapi-fetch),
// run against the live server at LOSSD_URL by tests/test_clients.py. Any mismatch exits 1.
import createClient from "openapi-fetch";

import type { components, paths } from "./generated/lossd.js";

type Problem = components["schemas"]["Problem"];
type LossName = components["schemas"]["LossName"];

const baseUrl = process.env.LOSSD_URL;
if (!baseUrl) {
  throw new Error("set LOSSD_URL to the server's base URL");
}
// JSON answers and problem+json errors: /loss also answers application/octet-stream (the binary
// framing, with array_format "binary"), which this client never asks for.
const lossd = createClient<paths, "application/json" | "application/problem+json">({ baseUrl });

function check(ok: boolean, what: string): void {
  if (!ok) {
    throw new Error(`mismatch: ${what}`);
  }
}

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b));
}

async function evaluateMse(): Promise<void> {
  const { data, error, response } = await lossd.POST("/loss/{name}", {
    // The spec's names are the canonical ones (an enum); the server resolves aliases too.
    params: { path: { name: "MSELoss" as LossName } },
    body: {
      predictions: [0.5, 2.0, -1.0],
      targets: [0.0, 1.0, 1.0],
      reduction: "mean",
      gradient: true,
    },
  });
  check(response.status === 200 && error === undefined, `POST /loss/MSELoss: ${response.status}`);
  if (data === undefined) throw new Error("no body");
  // (0.25 + 1 + 4) / 3; gradient 2 (p - y) / 3
  check(data.loss === "mse", `loss ${data.loss}`);
  check(data.value !== null && close(data.value, 5.25 / 3), `value ${data.value}`);
  check(data.n === 3 && data.weight_sum === 3, `n ${data.n}, weight_sum ${data.weight_sum}`);
  const perSample = data.per_sample;
  check(Array.isArray(perSample) && perSample.length === 3, "per_sample is a list of 3");
  const expected = [1 / 3, 2 / 3, -4 / 3];
  const gradient = data.gradient as number[];
  check(expected.every((g, i) => close(gradient[i] ?? NaN, g)), `gradient ${gradient}`);
}

async function listCatalogue(): Promise<void> {
  const { data, response } = await lossd.GET("/losses");
  check(response.status === 200 && data !== undefined, `GET /losses: ${response.status}`);
  const names = (data?.losses ?? []).map((entry) => entry.name);
  // LOSSD_LOSSES: the registry's names in order, passed in by the Python test
  const registry = (process.env.LOSSD_LOSSES ?? "").split(",");
  check(names.join(",") === registry.join(","), `catalogue ${names} != registry ${registry}`);
  check(names.length === registry.length, `${registry.length} losses, got ${names.length}`);
  const huber = data?.losses.find((entry) => entry.name === "huber");
  check(huber?.family === "regression" && huber.gradient, "huber is a regression loss");
}

async function readProblem(): Promise<void> {
  const { data, error, response } = await lossd.POST("/loss/{name}", {
    params: { path: { name: "mse" } },
    body: { predictions: [1.0, 2.0], targets: [1.0, 2.0, 3.0] },
  });
  check(data === undefined && error !== undefined, "a 422 has an error and no data");
  check(response.status === 422, `status ${response.status}`);
  check(
    (response.headers.get("content-type") ?? "").startsWith("application/problem+json"),
    `content type ${response.headers.get("content-type")}`,
  );
  const problem: Problem | undefined = error;
  check(problem?.status === 422, `problem.status ${problem?.status}`);
  check(problem?.code === "shape_mismatch", `problem.code ${problem?.code}`);
  check(typeof problem?.detail === "string" && problem.detail.length > 0, "problem.detail");
  const loc = problem?.errors?.[0]?.loc ?? [];
  check(loc.includes("targets"), `errors[0].loc ${JSON.stringify(loc)}`);
}

async function typesAreChecked(): Promise<void> {
  // The types are real: tsc rejects a reduction the spec does not allow, an unknown route and
  // an unknown loss.
  // (Never sent: the condition is false at run time.)
  if (false as boolean) {
    // @ts-expect-error "median" is not a reduction
    await lossd.POST("/loss/{name}", { params: { path: { name: "mse" } }, body: { predictions: [1], targets: [1], reduction: "median" } });
    // @ts-expect-error there is no GET /loss
    await lossd.GET("/loss");
    // @ts-expect-error "msee" is not a loss name
    await lossd.GET("/losses/{name}", { params: { path: { name: "msee" } } });
  }
}

await evaluateMse();
await listCatalogue();
await readProblem();
await typesAreChecked();
console.log("typescript client: 3 checks passed");
