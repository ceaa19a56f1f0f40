// TypeScript types of lossd's API from its OpenAPI spec, with openapi-typescript: the one
// generator of the repository's TypeScript, used by this package's build and by the raw
// generated-client test (tests/clients/ts, run by tests/test_clients.py).
//
//   node scripts/generate.mjs [spec] [output]
//
// spec defaults to the repository's committed openapi/openapi.json and output to
// src/generated/lossd.ts (both relative to this package); arguments are relative to the working
// directory. Besides the types it writes src/generated/version.ts (next to the output), the
// spec's info.version: the version of lossd the types describe.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import openapiTS, { COMMENT_HEADER, astToString } from "openapi-typescript";

const here = dirname(fileURLToPath(import.meta.url));
const [specArg, outputArg] = process.argv.slice(2);
const spec = specArg ? resolve(specArg) : resolve(here, "../../../openapi/openapi.json");
const output = outputArg ? resolve(outputArg) : resolve(here, "../src/generated/lossd.ts");

const document = JSON.parse(await readFile(spec, "utf8"));
// defaultNonNullable false: request fields with a default stay optional (a default would make
// them required in the generated types, so every request would have to send every option).
const ast = await openapiTS(document, { defaultNonNullable: false, silent: true });
await mkdir(dirname(output), { recursive: true });
await writeFile(output, COMMENT_HEADER + astToString(ast));
const version = JSON.stringify(document.info.version);
await writeFile(
  resolve(dirname(output), "version.ts"),
  `${COMMENT_HEADER}/** The version of lossd (info.version of its spec) these types describe. */\n` +
    `export const API_VERSION = ${version};\n`,
);
console.log(`${spec} -> ${output}`);
