// Validates the output of `helm template` against the Kubernetes API schemas (kubernetes-models), and the KEDA and
// prometheus-operator CRD schemas (their @kubernetes-models companions).
//
//   node validate.mjs rendered.yaml     (or the YAML on standard input)
//   node validate.mjs --to-json values.yaml   prints one YAML document as JSON (the tests read values.yaml this way)
//
// Prints one JSON object: { "objects": [...every document as JSON...], "problems": [{ index, kind, name, source, message }] }
// and exits 0 whether or not there are problems (the caller asserts on them); exit 2 means the validator itself failed.
//
// Strict like `kubectl --validate=strict`: besides types, formats, enums and required fields, a field that the schema
// does not know is a problem. The compiled validators read every property they know from the object they check, so the
// object is wrapped in proxies that record which keys were read; a key that no validator read is unknown. Objects that
// the schema treats as maps (labels, resource quantities, ConfigMap data) are enumerated by the validator, which marks
// all their keys as read.
import { readFileSync } from "node:fs";
import { parseDocument } from "yaml";

/** apiVersion -> module prefix of the package that holds its models. */
function modulePath(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  if (group === "keda.sh") return `@kubernetes-models/keda/keda.sh/${version}/${kind}`;
  if (group === "monitoring.coreos.com") return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/${version}/${kind}`;
  return group === "" ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`;
}

const models = new Map();
async function modelFor(apiVersion, kind) {
  const path = modulePath(apiVersion, kind);
  if (!models.has(path)) {
    let ctor = null;
    try {
      const mod = await import(path);
      ctor = mod[kind] ?? null;
    } catch {
      ctor = null;
    }
    models.set(path, ctor);
  }
  return models.get(path);
}

/** Runs the model's validator over proxies of `data`; returns the schema errors and the paths of unknown fields. */
function validateStrict(Model, data) {
  const reads = new Map(); // object -> keys the validator read
  const visited = []; // [path, object]
  const wrap = (value, path) => {
    if (value === null || typeof value !== "object") return value;
    let keys = reads.get(value);
    if (!keys) {
      keys = new Set();
      reads.set(value, keys);
      visited.push([path, value]);
    }
    return new Proxy(value, {
      get(target, key, receiver) {
        const v = Reflect.get(target, key, receiver);
        if (typeof key !== "string") return v;
        keys.add(key);
        return Object.prototype.hasOwnProperty.call(target, key) ? wrap(v, `${path}/${key}`) : v;
      },
      has(target, key) {
        if (typeof key === "string") keys.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        const all = Reflect.ownKeys(target);
        for (const k of all) if (typeof k === "string") keys.add(k);
        return all;
      },
    });
  };
  let schemaError = null;
  try {
    Model.prototype.validate.call(wrap(data, ""));
  } catch (e) {
    schemaError = e.message ?? String(e);
  }
  const unknown = [];
  if (schemaError === null) {
    for (const [path, value] of visited) {
      if (Array.isArray(value)) continue;
      for (const key of Object.keys(value)) if (!reads.get(value).has(key)) unknown.push(`${path}/${key}`);
    }
  }
  return { schemaError, unknown };
}

async function main() {
  if (process.argv[2] === "--to-json") {
    const doc = parseDocument(readFileSync(process.argv[3], "utf8"), { version: "1.1", uniqueKeys: true });
    if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join("; "));
    process.stdout.write(JSON.stringify(doc.toJS()));
    return;
  }
  const file = process.argv[2];
  const text = file && file !== "-" ? readFileSync(file, "utf8") : readFileSync(0, "utf8");
  const objects = [];
  const problems = [];
  let index = 0;
  // One chunk per document (helm separates them with a line "---" and heads each with "# Source: <template>").
  for (const chunk of text.split(/^---[ \t]*$/m)) {
    const source = /^# Source:\s*(\S+)/m.exec(chunk)?.[1] ?? "";
    // Kubernetes reads manifests as YAML 1.1 (yes/no/on/off are booleans there): parse them the same way.
    const doc = parseDocument(chunk, { version: "1.1", uniqueKeys: true, prettyErrors: true });
    if (doc.errors.length > 0) {
      problems.push({ index, kind: "", name: "", source, message: `YAML: ${doc.errors.map((e) => e.message).join("; ")}` });
      index++;
      continue;
    }
    const data = doc.toJS({ maxAliasCount: 0 });
    if (data === null || data === undefined) continue; // an empty document (a template that rendered nothing)
    const kind = data.kind ?? "";
    const name = data.metadata?.name ?? "";
    const report = (message) => problems.push({ index, kind, name, source, message });
    objects.push(data);
    if (typeof data !== "object" || Array.isArray(data)) report("document is not an object");
    else if (!data.apiVersion || !kind) report("apiVersion and kind are required");
    else {
      const Model = await modelFor(data.apiVersion, kind);
      if (!Model) report(`no schema for ${data.apiVersion} ${kind}`);
      else {
        const { schemaError, unknown } = validateStrict(Model, data);
        if (schemaError) report(`schema: ${schemaError}`);
        for (const path of unknown) report(`unknown field ${path}`);
      }
    }
    index++;
  }
  process.stdout.write(JSON.stringify({ objects, problems }));
}

main().catch((e) => {
  process.stderr.write(`validator failed: ${e?.stack ?? e}\n`);
  process.exit(2);
});
