/* SPDX-License-Identifier: Apache-2.0 */
/* bench/mcp: what `cordon mcp` adds to a tool call. One cordond, one sandbox (minimal image,
 * every command allowed), and in one process run:
 *   (a) tools/call exec `true` and tools/call list_dir /etc, written to a running
 *       `cordon mcp --addr` on its stdin and read back from its stdout: the JSON-RPC decoding, a
 *       connection to cordond of the call's own, the tool call recorded on the audit trail
 *       (RecordToolCall), the call itself, the result as JSON;
 *   (b) the baselines: the same Exec and ListDir through the gRPC API on a connection kept open.
 * The batches alternate, so both see the same host load; each figure is a median over RUNS
 * batches of BATCH calls. Goal: (a) adds at most 1 ms to (b): next to a model's seconds per
 * turn, the protocol's cost stays out of sight. (The ratio is reported too: for a call as short
 * as list_dir's 0.6 ms, the audit record, a round trip of its own before the call, doubles it.)
 * Writes bench/results/mcp.json. */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api_client.h"
#include "bench.h"
#include "cleanup.h"
#include "cordon_cli.h"
#include "cordond.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

#define RUNS 11
#define BATCH 10
#define GOAL_ADDED_MS 1.0

static const char allow_all[] = "version: 1\ncommands:\n  default: allow\n";

/* ---- a JSON-RPC client of cordon mcp, on its pipes ---- */

struct mcp {
    pid_t pid;
    FILE *in;  /* its stdin */
    FILE *out; /* its stdout */
    long next_id;
};

static void mcp_start(struct mcp *m, const char *addr) {
    int to[2], from[2];
    ASSERT_EQ(pipe2(to, O_CLOEXEC), 0);
    ASSERT_EQ(pipe2(from, O_CLOEXEC), 0);
    m->pid = fork();
    ASSERT_TRUE(m->pid >= 0);
    if (m->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        execl(th_cordon_bin(), "cordon", "mcp", "--addr", addr, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    m->in = fdopen(to[1], "w");
    m->out = fdopen(from[0], "r");
    ASSERT_TRUE(m->in && m->out);
}

/* Sends method(params) and returns the response's result (the caller decrefs it); a notification
 * on the way is skipped, an error fails the benchmark. */
static json_t *mcp_call(struct mcp *m, const char *method, json_t *params) {
    long id = ++m->next_id;
    json_t *req = json_pack("{s:s, s:I, s:s, s:o}", "jsonrpc", "2.0", "id", (json_int_t)id,
                            "method", method, "params", params);
    _cleanup_free_ char *line = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    ASSERT_TRUE(fprintf(m->in, "%s\n", line) > 0 && fflush(m->in) == 0);
    for (;;) {
        char *resp = NULL;
        size_t cap = 0;
        if (getline(&resp, &cap, m->out) < 0)
            FAIL("cordon mcp closed its stdout");
        json_error_t je;
        json_t *r = json_loads(resp, 0, &je);
        free(resp);
        if (!r)
            FAIL("cordon mcp wrote a line that is not JSON: %s", je.text);
        if (json_integer_value(json_object_get(r, "id")) != id) {
            json_decref(r);
            continue;
        }
        json_t *result = json_object_get(r, "result");
        if (!result)
            FAIL("%s: %s", method, json_dumps(r, JSON_COMPACT));
        json_incref(result);
        json_decref(r);
        return result;
    }
}

static void mcp_stop(struct mcp *m) {
    fclose(m->in); /* end of input: the server exits */
    int status;
    ASSERT_EQ(waitpid(m->pid, &status, 0), m->pid);
    fclose(m->out);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* One tools/call; fails the benchmark unless the tool succeeded. */
static void tool(struct mcp *m, const char *name, json_t *args) {
    json_t *r = mcp_call(m, "tools/call", json_pack("{s:s, s:o}", "name", name, "arguments", args));
    if (json_is_true(json_object_get(r, "isError")))
        FAIL("%s: %s", name, json_dumps(r, JSON_COMPACT));
    json_decref(r);
}

static double mcp_batch_ms(struct mcp *m, const char *sid, bool list) {
    double t0 = th_now_s();
    for (int k = 0; k < BATCH; k++) {
        if (list)
            tool(m, "list_dir", json_pack("{s:s, s:s}", "sandbox_id", sid, "path", "/etc"));
        else
            tool(m, "exec", json_pack("{s:s, s:[s]}", "sandbox_id", sid, "argv", "true"));
    }
    return (th_now_s() - t0) / BATCH * 1e3;
}

/* ---- the same calls through the API ---- */

static double api_batch_ms(struct cdn_client *c, const char *sid, bool list) {
    double t0 = th_now_s();
    for (int k = 0; k < BATCH; k++) {
        if (!list) {
            th_bench_exec_true(c, sid, 10000);
            continue;
        }
        Cordon__V1__ListDirRequest q = CORDON__V1__LIST_DIR_REQUEST__INIT;
        q.sandbox_id = (char *)sid;
        q.path = (char *)"/etc";
        ProtobufCMessage *resp = NULL;
        _cleanup_err_ cdn_err *err = NULL;
        ASSERT_OK(cdn_client_call(c, "ListDir", &q.base, &cordon__v1__list_dir_response__descriptor,
                                  &resp, 10000, &err),
                  err);
        protobuf_c_message_free_unpacked(resp, NULL);
    }
    return (th_now_s() - t0) / BATCH * 1e3;
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    alarm(1800); /* a deadline for the whole run: a wedged server cannot hold it for ever */
    _cleanup_free_ char *dir = th_tmpdir();
    char daemons[4300], sock[4300], addr[4400];
    snprintf(daemons, sizeof(daemons), "%s/run", dir);
    snprintf(sock, sizeof(sock), "%s/cordond.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    th_host_hold(daemons);
    pid_t daemon = th_cordond_start(dir, sock, "auto", NULL);
    struct cdn_client *c = NULL;
    _cleanup_err_ cdn_err *err = NULL;
    ASSERT_OK(cdn_client_open(&(struct cdn_client_opts){.addr = addr}, &c, &err), err);
    Cordon__V1__CreateSandboxRequest q = CORDON__V1__CREATE_SANDBOX_REQUEST__INIT;
    q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
    q.policy_text = (char *)allow_all;
    q.image = (char *)"minimal";
    char sid[17];
    th_bench_start(c, &q.base, sid);

    struct mcp m = {0};
    mcp_start(&m, addr);
    json_decref(mcp_call(&m, "initialize",
                         json_pack("{s:s, s:{}, s:{s:s, s:s}}", "protocolVersion", "2025-06-18",
                                   "capabilities", "clientInfo", "name", "bench", "version", "1")));
    fprintf(m.in, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
    fflush(m.in);
    /* warm both paths once */
    mcp_batch_ms(&m, sid, false);
    api_batch_ms(c, sid, false);

    double me[RUNS], ae[RUNS], ml[RUNS], al[RUNS];
    for (int i = 0; i < RUNS; i++) {
        me[i] = mcp_batch_ms(&m, sid, false);
        ae[i] = api_batch_ms(c, sid, false);
        ml[i] = mcp_batch_ms(&m, sid, true);
        al[i] = api_batch_ms(c, sid, true);
    }
    mcp_stop(&m);
    th_bench_delete(c, sid);
    cdn_client_free(c);
    th_cordond_stop(daemon);

    double mexec = th_median(me, RUNS), aexec = th_median(ae, RUNS);
    double mlist = th_median(ml, RUNS), alist = th_median(al, RUNS);
    printf("mcp benchmark: medians of %d batches of %d, minimal image\n", RUNS, BATCH);
    printf("  exec `true`  through cordon mcp %8.2f ms   through the API %8.2f ms   (+%.2f ms, "
           "%.2fx; goal <= +%.1f ms)\n",
           mexec, aexec, mexec - aexec, mexec / aexec, GOAL_ADDED_MS);
    printf("  list_dir     through cordon mcp %8.2f ms   through the API %8.2f ms   (+%.2f ms, "
           "%.2fx; goal <= +%.1f ms)\n",
           mlist, alist, mlist - alist, mlist / alist, GOAL_ADDED_MS);
    json_t *root = json_pack(
        "{s:s, s:i, s:i, s:f, s:{s:{s:s, s:f, s:f, s:f, s:f}, s:{s:s, s:f, s:f, s:f, s:f}}}",
        "benchmark", "mcp", "runs", RUNS, "batch", BATCH, "goal_added_ms", GOAL_ADDED_MS, "results",
        "exec_true", "unit", "ms", "cordon", mexec, "baseline", aexec, "ratio", mexec / aexec,
        "added_ms", mexec - aexec, "list_dir", "unit", "ms", "cordon", mlist, "baseline", alist,
        "ratio", mlist / alist, "added_ms", mlist - alist);
    th_bench_finish(root, "mcp", dir);
    return 0;
}
