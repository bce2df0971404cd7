// Validates custom resources against their CRDs' OpenAPI schemas, compiled into
// the @kubernetes-models packages (npm, pinned, installed by validate_schemas.py
// into <repo>/.cache/deploy-schemas/npm).
//
//   node crd_validate.mjs NPM_DIR < [{"apiVersion": ..., "kind": ..., ...}, ...]
//
// Prints a JSON array with one entry per input object: null when it is valid,
// else the validator's message, or "no schema" for a kind this file does not know.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const npmDir = process.argv[2];
const MODELS = {
  "kafka.strimzi.io/v1beta2": ["strimzi-kafka-operator", "kafka.strimzi.io/v1beta2"],
  "kafka.strimzi.io/v1": ["strimzi-kafka-operator", "kafka.strimzi.io/v1"],
  "monitoring.coreos.com/v1": ["prometheus-operator", "monitoring.coreos.com/v1"],
};

async function model(apiVersion, kind) {
  const where = MODELS[apiVersion];
  if (!where) return null;
  const file = join(npmDir, "node_modules", "@kubernetes-models", where[0], where[1], "index.js");
  const mod = await import(pathToFileURL(file).href);
  return mod[kind] || null;
}

const docs = JSON.parse(readFileSync(0, "utf8"));
const out = [];
for (const doc of docs) {
  const Model = await model(doc.apiVersion, doc.kind);
  if (!Model) {
    out.push("no schema");
    continue;
  }
  try {
    new Model(doc).validate();
    out.push(null);
  } catch (e) {
    out.push(String(e.message || e));
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
