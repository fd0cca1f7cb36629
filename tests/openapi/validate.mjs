// Validates an OpenAPI document (YAML) against the OpenAPI 3.1 schema and
// resolves every $ref. Prints the paths it describes, "METHOD PATH" a line.
// Usage: node validate.mjs docs/openapi.yaml
import { readFileSync } from "node:fs";
import SwaggerParser from "@apidevtools/swagger-parser";
import YAML from "yaml";

const doc = YAML.parse(readFileSync(process.argv[2], "utf8"));
try {
  const api = await SwaggerParser.validate(doc);
  for (const [path, item] of Object.entries(api.paths))
    for (const m of ["get", "put", "post", "delete", "patch", "head", "options"])
      if (item[m]) console.log(`${m.toUpperCase()} ${path}`);
} catch (err) {
  console.error(`openapi: ${err.message}`);
  process.exit(1);
}
