// lossd-client: a typed client of lossd generated from its OpenAPI spec (openapi/openapi.json).
export {
  Client,
  type ClientOptions,
  type EvaluateOptions,
  type Evaluation,
  LossdError,
  type LossName,
  type LossParams,
  type LossParamsByName,
  type Problem,
  type Transport,
  evaluate,
} from "./client.js";
export {
  type ArrayInput,
  type Dtype,
  type FloatArray,
  type Framed,
  type NumericArray,
  type Packed,
  type Shape,
  type Tensor,
  asTensor,
  decodeFramed,
  encodeFramed,
  fromBase64,
  pack,
  toBase64,
  unpack,
} from "./arrays.js";
export { API_VERSION } from "./generated/version.js";
/** The generated types of every path, operation and schema, for use with `Client.api`. */
export type { components, operations, paths } from "./generated/lossd.js";
