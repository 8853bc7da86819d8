// Validates an OpenRPC document against the OpenRPC meta-schema
// (@open-rpc/meta-schema) with Ajv, and checks that every JSON Schema in it
// compiles.
//
//   node openrpc.mjs DOCUMENT.json
//
// Prints one line per check and exits 0 when all pass; otherwise prints
// `failed: <what>` on stderr and exits 1.
import { readFileSync } from 'node:fs';
import jsonSchemaMeta from '@json-schema-tools/meta-schema';
import metaSchema from '@open-rpc/meta-schema';
import { Ajv } from 'ajv';

const [path] = process.argv.slice(2);
if (!path) {
  console.error('usage: node openrpc.mjs DOCUMENT.json');
  process.exit(2);
}

try {
  const doc = JSON.parse(readFileSync(path, 'utf8'));
  // Both meta-schemas name their dialect by a URL Ajv does not know; their
  // keywords are draft-07's, which Ajv speaks by default. The OpenRPC one
  // refers to the JSON Schema one (for every `schema` field) by its $id,
  // with and without the trailing slash.
  const bare = ({ $schema: _dialect, ...schema }) => schema;
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  const { $id: _id, ...jsonSchema } = bare(jsonSchemaMeta.jsonSchema);
  ajv.addSchema(jsonSchema, 'https://meta.json-schema.tools');
  ajv.addSchema(jsonSchema, 'https://meta.json-schema.tools/');
  const validate = ajv.compile(bare(metaSchema.openrpcDocument));
  if (!validate(doc)) {
    throw new Error(`the document does not fit the OpenRPC meta-schema: ${ajv.errorsText(validate.errors)}`);
  }
  console.log(`ok: OpenRPC ${doc.openrpc} document with ${doc.methods.length} methods fits the meta-schema`);
  const strict = new Ajv({ strict: true, allErrors: true });
  for (const m of doc.methods) {
    for (const p of m.params) {
      strict.compile(p.schema);
    }
    strict.compile(m.result.schema);
  }
  console.log('ok: every param and result schema compiles in strict mode');
} catch (e) {
  console.error(`failed: ${e.message}`);
  process.exit(1);
}
