// The TypeScript SDK's MCP client against a streamable-HTTP server: node ts_client.mjs NODE_MODULES URL
// Lists the tools, calls trigger-long-running-operation {duration: 4, steps: 4}, reads the job with
// get-job-result until it ends (recording progress), and prints one JSON report on stdout.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [nodeModules, url] = process.argv.slice(2);
const sdk = (p) => import(pathToFileURL(join(nodeModules, "@modelcontextprotocol/sdk/dist/esm", p)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");

const client = new Client({ name: "ts-sdk-client", version: "1.0.0" });
await client.connect(new StreamableHTTPClientTransport(new URL(url)));
const tools = (await client.listTools()).tools.map((t) => t.name);
const began = Date.now();
const call = await client.callTool({ name: "trigger-long-running-operation", arguments: { duration: 4, steps: 4 } });
const answeredMs = Date.now() - began;
const jobId = call.structuredContent.jobId;
const progress = [];
let job;
const deadline = Date.now() + 30000;
for (;;) {
  const read = await client.callTool({ name: "get-job-result", arguments: { jobId } });
  job = read.structuredContent;
  if (job.status === "running" && job.progress != null) progress.push(job.progress);
  if (["completed", "failed", "cancelled"].includes(job.status) || Date.now() > deadline) break;
  await new Promise((resolve) => setTimeout(resolve, 250));
}
// A refusal is an isError result whose structuredContent is {error: {...}}; this SDK validates structuredContent
// against the tool's outputSchema even when isError is set (and throws McpError -32602 when it does not match),
// so the advertised outputSchema admits the error shape. A throw is recorded, for the test to show.
const attempt = async (name, args) => {
  try {
    return await client.callTool({ name, arguments: args });
  } catch (error) {
    return { thrown: String(error) };
  }
};
const refused = await attempt("echo", { mesage: "hi" });
const refusedRead = await attempt("get-job-result", { jobId: "no-such-job" });
const jobs = (await client.callTool({ name: "list-jobs", arguments: {} })).structuredContent.jobs.map((j) => j.id);
console.log(JSON.stringify({ tools, answeredMs, jobId, progress, job, refused, refusedRead, jobs }));
await client.close();
