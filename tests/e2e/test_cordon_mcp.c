/* SPDX-License-Identifier: Apache-2.0 */
/* cordon mcp driven by a client cordon did not write: the official MCP TypeScript SDK
 * (tests/e2e/mcp/client.mjs, installed by `make deps`) lists the tools and works in a real
 * sandbox on a test repository (commands, files, the diff, a refusal naming its rule, an
 * approval it cannot wait for, a cancelled long command leaving nothing in the guest); every
 * tool call is on the sandbox's audit trail, a secret in its arguments redacted. Then a short round
 * against the daemon the server starts itself when it is given none. Then malformed input on the
 * raw pipe: bad JSON, a request that is not one, an unknown method, a line over the limit, bad
 * arguments; each gets its JSON-RPC error and the server keeps answering. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "cordon_cli.h"
#include "cordond.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

/* Runs a command line, its output echoed to the test's log; its exit status and output. */
static int run(const char *cmd, char **out) {
    FILE *p = popen(cmd, "r");
    if (!p)
        FAIL("popen %s", cmd);
    size_t cap = 1 << 16, n = 0;
    char *buf = calloc(1, cap);
    for (size_t k; (k = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += k;
        if (cap - n < 4096 && !(buf = realloc(buf, cap *= 2)))
            FAIL("out of memory");
    }
    buf[n] = '\0';
    int st = pclose(p);
    fputs(buf, stdout);
    *out = buf;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

TEST_T(an_mcp_client_works_in_a_sandbox_through_cordon_mcp, 600) {
    _cleanup_free_ char *dir = th_tmpdir();
    char sock[4300], addr[4400], repo[4300], pol[4300], daemons[4300], root[4096];
    snprintf(sock, sizeof(sock), "%s/cordond.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    snprintf(repo, sizeof(repo), "%s/repo", dir);
    snprintf(pol, sizeof(pol), "%s/policy.yaml", dir);
    snprintf(daemons, sizeof(daemons), "%s/run", dir);
    if (!getcwd(root, sizeof(root)))
        FAIL("getcwd");
    th_sh("git init -q -b main %s && cd %s && printf 'one\\n' > README && git add . && "
          "git -c user.name=t -c user.email=t@t commit -qm init",
          repo, repo);
    th_write_file(pol,
                  "version: 1\ncommands:\n  default: allow\n  unanalysable: allow\n  rules:\n"
                  "    - match: \"sudo **\"\n      action: deny\n      reason: no root\n"
                  "    - match: \"rm **\"\n      action: approve\n"
                  "      reason: deletions need a person\n"
                  "secrets:\n  - {name: mcp-token, from: env:CORDON_MCP_TEST_TOKEN, env: TOKEN,\n"
                  "     expose_to: [\"echo **\"]}\n",
                  0644);
    /* cordond reads it; the client uses it in a call: the trail must not hold it */
    setenv("CORDON_MCP_TEST_TOKEN", "tok-8c1e5f0b9d2a", 1);
    struct cdn_vm_host *h = th_host_hold(daemons);
    pid_t daemon = th_cordond_start(dir, sock, "tcg", NULL);

    char cmd[20000];
    snprintf(cmd, sizeof(cmd), "node %s/tests/e2e/mcp/client.mjs %s %s %s %s 2>&1", root,
             th_cordon_bin(), addr, repo, pol);
    _cleanup_free_ char *out = NULL;
    int code = run(cmd, &out);
    if (code != 0)
        FAIL("the SDK client failed (exit %d)", code);
    const char *line = strstr(out, "SANDBOX ");
    ASSERT_TRUE(line != NULL);
    char sid[17];
    snprintf(sid, sizeof(sid), "%.16s", line + 8);
    char trail[4500];
    snprintf(trail, sizeof(trail), "%s/daemon/tasks/%s/evidence/audit.jsonl", dir, sid);
    _cleanup_free_ char *audit = th_read_file(trail);
    ASSERT_CONTAINS(audit, "\"event\":\"tool.call\"");
    ASSERT_CONTAINS(audit, "\"client\":\"mcp\"");
    ASSERT_CONTAINS(audit, "\"tool\":\"write_file\"");
    ASSERT_CONTAINS(audit, "\"tool\":\"list_dir\"");
    ASSERT_CONTAINS(audit, "\"command\":\"echo hi; echo changed >> README;");
    ASSERT_CONTAINS(audit, "\"by\":\"tenant uid:0\"");
    ASSERT_TRUE(strstr(audit, "tok-8c1e5f0b9d2a") == NULL); /* the tool call's arguments too */
    ASSERT_CONTAINS(audit, "\"argv\":[\"echo\",\"[REDACTED:mcp-token]\"]");

    /* No daemon to talk to: the server starts one of its own, ended with it. */
    snprintf(cmd, sizeof(cmd), "node %s/tests/e2e/mcp/client.mjs %s own:%s/own:%s %s %s 2>&1", root,
             th_cordon_bin(), dir, getenv("CORDON_IMAGES"), repo, pol);
    _cleanup_free_ char *own_out = NULL;
    if ((code = run(cmd, &own_out)) != 0)
        FAIL("the SDK client against the server's own daemon failed (exit %d)", code);
    ASSERT_CONTAINS(own_out, "ok exec on the server's own daemon");

    /* Malformed input on the raw pipe; the server answers each and goes on. */
    char in[4400], resp[4400];
    snprintf(in, sizeof(in), "%s/in.jsonl", dir);
    snprintf(resp, sizeof(resp), "%s/out.jsonl", dir);
    th_sh("{ echo 'not json'; echo '[1,2]'; "
          "echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"resources/list\"}'; "
          "head -c 9000000 /dev/zero | tr '\\0' x; echo; "
          "echo '{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":"
          "{\"name\":\"exec\",\"arguments\":\"x\"}}'; "
          "echo '{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{}}'; "
          "echo '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}'; "
          "echo '{\"jsonrpc\":\"2.0\",\"id\":\"p\",\"method\":\"ping\"}'; } > %s",
          in);
    th_sh("%s mcp --addr %s < %s > %s", th_cordon_bin(), addr, in, resp);
    _cleanup_free_ char *answers = th_read_file(resp);
    fputs(answers, stdout);
    ASSERT_CONTAINS(answers, "\"code\":-32700");
    ASSERT_CONTAINS(answers, "\"code\":-32600,\"message\":\"invalid request");
    ASSERT_CONTAINS(answers, "\"id\":1,\"error\":{\"code\":-32601");
    ASSERT_CONTAINS(answers, "over the 8388608-byte limit");
    ASSERT_CONTAINS(answers, "\"id\":2,\"result\":{\"content\":[{\"type\":\"text\",\"text\":"
                             "\"arguments must be an object\"}],\"isError\":true}");
    ASSERT_CONTAINS(answers, "\"id\":3,\"error\":{\"code\":-32602");
    ASSERT_CONTAINS(answers, "\"id\":\"p\",\"result\":{}");
    int lines = 0;
    for (const char *p = answers; (p = strchr(p, '\n')); p++)
        lines++;
    ASSERT_EQ(lines, 7); /* one answer each; none for the notification */

    th_cordond_stop(daemon);
    th_assert_no_cordon_domains(h);
    th_host_release();
    th_rmtree(dir);
}
