// Validates ScaledObjects against KEDA's own API types: the validators that the npm package
// @kubernetes-models/keda generates from github.com/kedacore/keda's v1alpha1 Go types
// (required fields, types, integer formats). It does not reject unknown fields, which is why
// deploy/checks/schemas/scaledobject.schema.json also exists.
//
//   python3 deploy/checks/validate.py scaled-objects deploy/k8s \
//     | node deploy/checks/keda.mjs NODE_MODULES_DIR
//
// NODE_MODULES_DIR is where scripts/test-deploy.sh installed the package. The objects come as
// a JSON array on stdin (Python parses the YAML). Exit 1 when any object is invalid.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node keda.mjs NODE_MODULES_DIR < scaled-objects.json");
  process.exit(2);
}

// Imported by file URL so that this script need not live beside its node_modules.
const modelPath = join(modules, "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js");
const { ScaledObject } = await import(pathToFileURL(modelPath).href);

const objects = JSON.parse(readFileSync(0, "utf8"));
if (!Array.isArray(objects) || objects.length === 0) {
  console.log("  no ScaledObject to check");
  console.log("keda-api-types: 1 problem(s)");
  process.exit(1);
}

let problems = 0;
for (const object of objects) {
  const name = `ScaledObject/${object?.metadata?.name ?? "?"}`;
  try {
    new ScaledObject(object).validate();
  } catch (error) {
    problems += 1;
    console.log(`  ${name}: ${error.message}`);
  }
}
if (problems > 0) {
  console.log(`keda-api-types: ${problems} problem(s)`);
  process.exit(1);
}
console.log(`keda-api-types: ${objects.length} ScaledObject(s) valid against KEDA's v1alpha1 API types`);
