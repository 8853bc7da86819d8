// Drives `forge-sidecar mcp` with the official TypeScript MCP SDK client,
// the way a third-party agent does, and checks the bridge's schemas with Ajv
// in strict mode (the mode that refuses unknown formats and keywords).
//
//   node check.mjs FORGE_SIDECAR_BINARY SOCKET
//
// Prints one line per check and exits 0 when all pass; otherwise prints
// `failed: <what>` on stderr and exits 1.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { Ajv } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';

const [bin, socket] = process.argv.slice(2);
if (!bin || !socket) {
  console.error('usage: node check.mjs FORGE_SIDECAR_BINARY SOCKET');
  process.exit(2);
}

const strict = { strict: true, allErrors: true };
const fail = (what) => {
  throw new Error(what);
};
const text = (result) =>
  result.content
    .filter((c) => c.type === 'text')
    .map((c) => c.text)
    .join('');

async function main() {
  const transport = new StdioClientTransport({
    command: bin,
    args: ['mcp', '--socket', socket],
    stderr: 'inherit',
  });
  // The SDK checks every structured result against the tool's outputSchema;
  // with this validator it does so with a strict Ajv too.
  const client = new Client(
    { name: 'forge-sidecar-ts-check', version: '1.0.0' },
    { jsonSchemaValidator: new AjvJsonSchemaValidator(new Ajv(strict)) },
  );
  await client.connect(transport);
  try {
    console.log(`connected: ${client.getServerVersion()?.name}`);

    const { tools } = await client.listTools();
    let compiled = 0;
    const validators = new Map();
    for (const tool of tools) {
      for (const [kind, schema] of [
        ['inputSchema', tool.inputSchema],
        ['outputSchema', tool.outputSchema],
      ]) {
        if (!schema) fail(`${tool.name} has no ${kind}`);
        let validate;
        for (const ajv of [new Ajv(strict), new Ajv2020(strict)]) {
          try {
            validate = ajv.compile(schema);
          } catch (e) {
            fail(`${tool.name}.${kind} does not compile (${ajv.constructor.name}, strict): ${e.message}`);
          }
        }
        if (kind === 'outputSchema') validators.set(tool.name, validate);
        compiled += 1;
      }
    }
    console.log(`tools: ${tools.length}; schemas compiled with Ajv strict (draft-07, 2020-12): ${compiled}`);

    const issue = await client.callTool({ name: 'read_issue', arguments: { number: 17 } });
    if (issue.isError) fail(`read_issue failed: ${text(issue)}`);
    const validate = validators.get('read_issue');
    if (!validate(issue.structuredContent)) {
      fail(`read_issue result does not match its outputSchema: ${JSON.stringify(validate.errors)}`);
    }
    if (issue.structuredContent.number !== 17) fail(`read_issue returned #${issue.structuredContent.number}`);
    console.log('read_issue #17: structuredContent matches the outputSchema');

    const denied = await client.callTool({
      name: 'post_comment',
      arguments: { number: 500, body: 'hi from the TypeScript SDK' },
    });
    if (denied.isError !== true) fail(`post_comment on #500 was not refused: ${JSON.stringify(denied)}`);
    if (!text(denied).startsWith('scope_denied: ')) fail(`post_comment on #500: ${text(denied)}`);
    console.log(`post_comment #500: isError, ${text(denied).split(':')[0]}`);
  } finally {
    await client.close();
  }
}

main().then(
  () => console.log('ok'),
  (e) => {
    console.error(`failed: ${e.message}`);
    process.exit(1);
  },
);
