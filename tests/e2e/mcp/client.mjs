// SPDX-License-Identifier: Apache-2.0
// A real MCP client cordon did not write (the official TypeScript SDK) against `cordon mcp`:
// lists the tools, creates a sandbox on the test's repository, runs commands, writes and reads a
// file (progress reported while a command writes), reads the diff, is refused by the policy with
// the rule named, cancels a long command and
// checks that nothing of it is left in the guest, then destroys the sandbox; or, with ADDR
// own:STATE:IMAGES, a short round on the daemon the server starts itself. Prints one line per
// step; exits non-zero at the first failure. Usage: node client.mjs CORDON ADDR REPO POLICY
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [cordon, addr, repo, policy] = process.argv.slice(2);
function fail(msg) {
  console.log("FAIL " + msg);
  process.exit(1);
}
function ok(msg) {
  console.log("ok " + msg);
}
function text(r) {
  return r.content.map((c) => c.text).join("\n");
}

// ADDR "own:STATE:IMAGES": no cordond to talk to; the server starts one of its own there.
const own = addr.startsWith("own:");
const [, ownState, ownImages] = addr.split(":");
const env = { ...process.env }; // the sanitizers' options reach the server too (the SDK passes few)
if (own) delete env.CORDON_ADDR;
const transport = new StdioClientTransport({
  command: cordon,
  args: own
    ? ["mcp", "--state", ownState, "--images", ownImages, "--accel", "tcg", "--repo", repo, "--policy", policy]
    : ["mcp", "--addr", addr, "--repo", repo, "--policy", policy],
  stderr: "inherit",
  env,
});
const client = new Client({ name: "cordon-test", version: "1.0.0" });
await client.connect(transport);
ok("initialized: server " + JSON.stringify(client.getServerVersion()));

const { tools } = await client.listTools();
const names = tools.map((t) => t.name).sort();
for (const want of ["diff", "exec", "list_dir", "read_file", "sandbox_create", "sandbox_destroy", "write_file"])
  if (!names.includes(want)) fail("tools/list lacks " + want + ": " + names);
for (const t of tools)
  if (t.inputSchema?.type !== "object") fail(t.name + " has no object input schema");
ok("tools/list: " + names.join(", "));

const created = await client.callTool({ name: "sandbox_create", arguments: {} });
if (created.isError) fail("sandbox_create: " + text(created));
const sid = created.structuredContent.sandbox_id;
ok("sandbox_create: " + text(created));

if (own) { // the short round: a sandbox on the server's own daemon, a command, the end
  const r = await client.callTool({ name: "exec", arguments: { sandbox_id: sid, argv: ["echo", "own daemon"] } });
  if (r.isError || r.structuredContent.stdout !== "own daemon\n") fail("exec on its own daemon: " + text(r));
  ok("exec on the server's own daemon");
  const g = await client.callTool({ name: "sandbox_destroy", arguments: { sandbox_id: sid } });
  if (g.isError || g.structuredContent.state !== "stopped") fail("sandbox_destroy: " + text(g));
  ok("sandbox_destroy: " + text(g) + " (its own daemon does not gate)");
  await client.close();
  process.exit(0);
}

const ran = await client.callTool({
  name: "exec",
  arguments: { sandbox_id: sid, command: "echo hi; echo changed >> README; echo err >&2; exit 3" },
});
if (ran.isError || ran.structuredContent.exit_code !== 3 || ran.structuredContent.stdout !== "hi\n" ||
    ran.structuredContent.stderr !== "err\n")
  fail("exec: " + JSON.stringify(ran));
ok("exec: exit 3, stdout and stderr apart");

// A secret in a call (cordond's CORDON_MCP_TEST_TOKEN): redacted in what comes back.
const secret = process.env.CORDON_MCP_TEST_TOKEN;
if (secret) {
  const r = await client.callTool({ name: "exec", arguments: { sandbox_id: sid, argv: ["echo", secret] } });
  if (r.isError || r.structuredContent.stdout !== "[REDACTED:mcp-token]\n") fail("a secret: " + text(r));
  ok("a secret's value comes back redacted");
}

// Progress: a command that writes for a few seconds reports its output as it goes (a write
// every 1.5 s: more than the server's one report a second, whatever the jitter; 300 bytes each:
// output is held back by the secrets' redaction only while it could still be one, a few bytes).
const seen = [];
const slow = await client.callTool(
  {
    name: "exec",
    arguments: {
      sandbox_id: sid,
      command: "for i in 1 2 3; do head -c 299 /dev/zero | tr '\\0' a; echo; sleep 1.5; done",
    },
  },
  undefined,
  { onprogress: (p) => seen.push(p), timeout: 120000 },
);
if (slow.isError || slow.structuredContent.stdout !== ("a".repeat(299) + "\n").repeat(3) || seen.length < 2 ||
    !(seen[seen.length - 1].progress > seen[0].progress))
  fail("progress: " + JSON.stringify(seen) + " " + text(slow));
ok("progress: " + seen.map((p) => p.message).join(", "));

const wrote = await client.callTool({
  name: "write_file",
  arguments: { sandbox_id: sid, path: "docs/notes.txt", content: "from mcp\n" },
});
if (wrote.isError) fail("write_file: " + text(wrote));
const read = await client.callTool({ name: "read_file", arguments: { sandbox_id: sid, path: "docs/notes.txt" } });
if (read.isError || read.structuredContent.content !== "from mcp\n") fail("read_file: " + JSON.stringify(read));
ok("write_file then read_file: the same text");

const listed = await client.callTool({ name: "list_dir", arguments: { sandbox_id: sid, path: "docs" } });
const notes = listed.structuredContent?.entries?.find((e) => e.name === "notes.txt");
if (listed.isError || listed.structuredContent.path !== "/workspace/docs" || !notes ||
    notes.type !== "file" || notes.size !== 9 || !text(listed).includes("notes.txt"))
  fail("list_dir docs: " + JSON.stringify(listed));
const top = await client.callTool({ name: "list_dir", arguments: { sandbox_id: sid, max_entries: 1 } });
const tops = top.structuredContent?.entries ?? [];
if (top.isError || tops.length !== 1 || !top.structuredContent.truncated ||
    !(top.structuredContent.total > 1) || !text(top).includes("max_entries"))
  fail("list_dir /workspace, max_entries 1: " + JSON.stringify(top));
const nodir = await client.callTool({ name: "list_dir", arguments: { sandbox_id: sid, path: "no/such" } });
if (!nodir.isError || !text(nodir).includes("/workspace/no/such") || !text(nodir).includes("No such file"))
  fail("list_dir of a missing folder: " + JSON.stringify(nodir));
ok("list_dir: docs/notes.txt (file, 9 bytes), /workspace cut at max_entries 1 of " +
   top.structuredContent.total + ", a missing folder is a tool error naming it");

const d = await client.callTool({ name: "diff", arguments: { sandbox_id: sid } });
if (d.isError || !text(d).includes("+changed") || !text(d).includes("docs/notes.txt") ||
    d.structuredContent.files_changed !== 2)
  fail("diff: " + text(d));
ok("diff: " + text(d).split("\n")[0]);

const denied = await client.callTool({ name: "exec", arguments: { sandbox_id: sid, argv: ["sudo", "id"] } });
if (!denied.isError || !text(denied).includes("commands.rules[0]") || !text(denied).includes("no root"))
  fail("a denied command: " + text(denied));
ok("refused with the rule: " + text(denied));

const asked = await client.callTool({ name: "exec", arguments: { sandbox_id: sid, command: "rm -rf /tmp/x" } });
if (!asked.isError || !text(asked).startsWith("waiting for approval") || asked.structuredContent?.decision !== "approve")
  fail("an approval: " + text(asked));
ok("approval: " + text(asked).slice(0, 80) + "...");

const bad = await client.callTool({ name: "exec", arguments: { sandbox_id: sid } });
if (!bad.isError) fail("exec without a command was accepted");
try {
  await client.callTool({ name: "no_such_tool", arguments: {} });
  fail("an unknown tool was accepted");
} catch (e) {
  ok("unknown tool: a protocol error (" + e.message + ")");
}

// A long command cancelled by the client: killed in the guest, nothing left.
const ac = new AbortController();
const long = client.callTool(
  { name: "exec", arguments: { sandbox_id: sid, command: "exec sleep 300" } },
  undefined,
  { signal: ac.signal },
);
await new Promise((r) => setTimeout(r, 1500));
ac.abort();
try {
  await long;
  fail("the cancelled call returned");
} catch (e) {
  ok("cancelled: " + e.message);
}
let left = "";
for (let i = 0; i < 20; i++) {
  const ps = await client.callTool({ name: "exec", arguments: { sandbox_id: sid, command: "pgrep -x sleep; true" } });
  left = ps.structuredContent.stdout;
  if (left === "") break;
  await new Promise((r) => setTimeout(r, 250));
}
if (left !== "") fail("the cancelled command is still running: " + left);
ok("no process of the cancelled command left in the guest");

const gone = await client.callTool({ name: "sandbox_destroy", arguments: { sandbox_id: sid } });
if (gone.isError || gone.structuredContent.state !== "awaiting_review") fail("sandbox_destroy: " + text(gone));
ok("sandbox_destroy: " + text(gone));
console.log("SANDBOX " + sid);
await client.close();
