/* SPDX-License-Identifier: Apache-2.0 */
/* cordon mcp: a Model Context Protocol server over stdio (JSON-RPC 2.0, one message per line), so
 * an agent works in a sandbox through tools while cordond applies the same policy, approvals and
 * evidence as to the CLI. The main thread reads and answers; each tools/call runs on a thread of
 * its own with its own connection to cordond, so a long command can be cancelled
 * (notifications/cancelled) and reports progress while other requests are answered. A line over
 * MCP_LINE_MAX, malformed JSON, a bad request or an unknown method is answered with a JSON-RPC
 * error and the server goes on; stdout carries protocol messages only (logs go to stderr). */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "mcp.h"
#include "mcp_rpc.h"
#include "own_daemon.h"

#define MCP_LINE_MAX (8u << 20)
#define MCP_MAX_CALLS 64

/* Protocol revisions spoken, newest first: the client's is used when known, else the newest. */
static const char *const revisions[] = {"2025-06-18", "2025-03-26", "2024-11-05"};

struct call {
    struct mcp *m;
    json_t *id, *params;
    volatile sig_atomic_t cancel;
    pthread_t thread;
    bool done; /* under m->mu */
    struct call *next;
};

static void write_msg(struct mcp *m, json_t *msg) {
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!text)
        return;
    pthread_mutex_lock(&m->out_mu);
    fputs(text, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&m->out_mu);
    free(text);
}

void mcp_reply(struct mcp *m, json_t *id, json_t *result) {
    write_msg(m, json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result));
}

void mcp_error(struct mcp *m, json_t *id, int code, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    write_msg(m, json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id",
                           id ? id : json_null(), "error", "code", code, "message", msg));
}

void mcp_notify(struct mcp *m, const char *method, json_t *params) {
    write_msg(m,
              json_pack("{s:s, s:s, s:o}", "jsonrpc", "2.0", "method", method, "params", params));
}

static void initialize(struct mcp *m, json_t *id, json_t *params) {
    const char *want = json_string_value(json_object_get(params, "protocolVersion"));
    const char *rev = revisions[0];
    for (size_t i = 0; want && i < sizeof(revisions) / sizeof(revisions[0]); i++)
        if (strcmp(want, revisions[i]) == 0)
            rev = revisions[i];
    m->initialized = true;
    mcp_reply(m, id,
              json_pack("{s:s, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:s}", "protocolVersion", rev,
                        "capabilities", "tools", "listChanged", 0, "serverInfo", "name", "cordon",
                        "title", "cordon sandboxes", "version", "0.1.0", "instructions",
                        "Each tool works in a cordon sandbox: a microVM under a policy. Create "
                        "one with sandbox_create (or use the one this server was started "
                        "with), run commands with exec, look around with list_dir, move files "
                        "with read_file and write_file, read your change with diff, end it "
                        "with sandbox_destroy. "
                        "A refused command says which policy rule refused it."));
}

static void *call_thread(void *arg) {
    struct call *c = arg;
    mcp_tools_call(c->m, c->id, c->params, &c->cancel);
    pthread_mutex_lock(&c->m->mu);
    c->done = true;
    pthread_mutex_unlock(&c->m->mu);
    return NULL;
}

/* Calls that ended are joined and freed. */
static void reap(struct mcp *m, bool all) {
    for (;;) {
        struct call *done = NULL;
        pthread_mutex_lock(&m->mu);
        for (struct call **pp = &m->calls; *pp; pp = &(*pp)->next)
            if ((*pp)->done || all) {
                done = *pp;
                *pp = done->next;
                m->n_calls--;
                break;
            }
        pthread_mutex_unlock(&m->mu);
        if (!done)
            return;
        pthread_join(done->thread, NULL);
        json_decref(done->id);
        json_decref(done->params);
        free(done);
    }
}

static void start_call(struct mcp *m, json_t *id, json_t *params) {
    reap(m, false);
    struct call *c = m->n_calls < MCP_MAX_CALLS ? calloc(1, sizeof(*c)) : NULL;
    if (!c) {
        mcp_error(m, id, -32000, "%d tool calls are running already", MCP_MAX_CALLS);
        return;
    }
    c->m = m;
    c->id = json_incref(id);
    c->params = json_incref(params);
    pthread_mutex_lock(&m->mu); /* linked before it runs: a cancellation finds it */
    if (pthread_create(&c->thread, NULL, call_thread, c) != 0) {
        pthread_mutex_unlock(&m->mu);
        mcp_error(m, id, -32603, "cannot start a thread for the call");
        json_decref(c->id);
        json_decref(c->params);
        free(c);
        return;
    }
    c->next = m->calls;
    m->calls = c;
    m->n_calls++;
    pthread_mutex_unlock(&m->mu);
}

/* notifications/cancelled: the call with that request id stops (its command is killed). */
static void cancel_call(struct mcp *m, json_t *params) {
    json_t *rid = json_object_get(params, "requestId");
    pthread_mutex_lock(&m->mu);
    for (struct call *c = m->calls; c && rid; c = c->next)
        if (json_equal(c->id, rid))
            c->cancel = 1;
    pthread_mutex_unlock(&m->mu);
}

static void handle(struct mcp *m, const char *line, size_t len) {
    struct mcp_msg msg;
    enum mcp_kind kind = mcp_decode(line, len, &msg);
    const char *method = msg.method;
    json_t *id = msg.id, *params = msg.params;
    if (kind == MCP_PARSE_ERROR) {
        mcp_error(m, NULL, -32700, "%s", msg.why);
    } else if (kind == MCP_INVALID) {
        mcp_error(m, id, -32600, "%s", msg.why);
    } else if (kind == MCP_RESPONSE) {
        /* this server sends no requests, so nothing waits for one */
    } else if (kind == MCP_NOTIFICATION) { /* never answered */
        if (strcmp(method, "notifications/cancelled") == 0)
            cancel_call(m, params);
    } else if (strcmp(method, "initialize") == 0) {
        initialize(m, id, params);
    } else if (strcmp(method, "ping") == 0) {
        mcp_reply(m, id, json_object());
    } else if (strcmp(method, "tools/list") == 0) {
        mcp_reply(m, id, json_pack("{s:o}", "tools", mcp_tools_list()));
    } else if (strcmp(method, "tools/call") == 0) {
        if (!json_is_string(json_object_get(params, "name")))
            mcp_error(m, id, -32602, "tools/call needs params.name");
        else
            start_call(m, id, params);
    } else {
        mcp_error(m, id, -32601,
                  "method '%.200s' is not served here (initialize, ping, tools/list, tools/call)",
                  method);
    }
    json_decref(msg.root);
}

static void usage(FILE *f) {
    fputs(
        "usage: cordon mcp [--repo URL|PATH] [--ref REF] [--policy FILE | --policy-name NAME]\n"
        "                  [--image NAME] [--approval-wait S] [OPTIONS]\n"
        "\n"
        "A Model Context Protocol server on stdin/stdout (JSON-RPC 2.0, one message per line)\n"
        "whose tools work in cordond's sandboxes: sandbox_create, exec, read_file, list_dir,\n"
        "write_file, diff, preview_open, sandbox_destroy. --repo, --ref, --policy and --image are\n"
        "sandbox_create's defaults. A command the policy sends to a person waits for a\n"
        "decision up to --approval-wait seconds (default 0: the tool says so at once).\n"
        "Without --addr or $CORDON_ADDR it starts a cordond of its own (as cordon run does;\n"
        "--state, --images, --accel, --uri are its), ending with the server; its sandboxes\n"
        "get the default-deny policy unless one is given.\n"
        "See docs/mcp.md for registering it with agents.\n\noptions:\n" CLI_REMOTE_USAGE,
        f);
}

static int parse(int argc, char **argv, struct mcp *m) {
    static const struct option longopts[] = {{"repo", required_argument, NULL, 'R'},
                                             {"ref", required_argument, NULL, 'r'},
                                             {"policy", required_argument, NULL, 'P'},
                                             {"policy-name", required_argument, NULL, 'N'},
                                             {"image", required_argument, NULL, 'i'},
                                             {"approval-wait", required_argument, NULL, 'a'},
                                             {"state", required_argument, NULL, 's'},
                                             {"images", required_argument, NULL, 'I'},
                                             {"accel", required_argument, NULL, 'A'},
                                             {"uri", required_argument, NULL, 'u'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_REMOTE_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    optind = 1;
    for (int c; (c = getopt_long(argc, argv, "h", longopts, NULL)) != -1;) {
        switch (c) {
        case 'R': m->repo = optarg; break;
        case 'r': m->ref = optarg; break;
        case 'i': m->image = optarg; break;
        case 'N': m->policy_name = optarg; break;
        case 'P': {
            FILE *f = fopen(optarg, "re");
            size_t n = 0;
            m->policy_text = f ? calloc(1, (1u << 20) + 1) : NULL;
            if (m->policy_text)
                n = fread(m->policy_text, 1, 1u << 20, f);
            if (f)
                fclose(f);
            if (!m->policy_text || n == 0) {
                fprintf(stderr, "cordon mcp: --policy %s: %s\n", optarg,
                        f ? "empty or unreadable" : strerror(errno));
                return -1;
            }
            break;
        }
        case 'a': {
            char *end;
            errno = 0;
            unsigned long v = strtoul(optarg, &end, 10);
            if (errno || *end || end == optarg || v > 7 * 86400) {
                fprintf(stderr, "cordon mcp: --approval-wait takes seconds (0-604800), not '%s'\n",
                        optarg);
                return -1;
            }
            m->approval_wait_s = (uint32_t)v;
            break;
        }
        case 's': m->own.state = optarg; break;
        case 'I': m->own.images = optarg; break;
        case 'A': m->own.accel = optarg; break;
        case 'u': m->own.uri = optarg; break;
        case 'h': usage(stdout); exit(0);
        default:
            if (cli_remote_option(&m->r, c, optarg))
                break;
            usage(stderr);
            return -1;
        }
    }
    return optind == argc ? 0 : -1;
}

int cli_mcp(int argc, char **argv) {
    struct mcp m = {0};
    cli_remote_init(&m.r);
    pthread_mutex_init(&m.mu, NULL);
    pthread_mutex_init(&m.out_mu, NULL);
    if (parse(argc, argv, &m) < 0) {
        free(m.policy_text);
        return CLI_EXIT_FAILURE;
    }
    signal(SIGPIPE, SIG_IGN);
    struct cli_own_daemon od = {0};
    if (!cli_remote_given(&m.r)) { /* a daemon of its own */
        cdn_err *e = NULL;
        m.own.default_policy = "default-deny";
        m.own.approval_timeout_s = m.approval_wait_s;
        if (cli_own_daemon_start(&m.own, &od, &e) < 0) {
            fprintf(stderr, "cordon mcp: starting its daemon: %s\n", cdn_err_msg(e));
            cdn_err_free(e);
            cli_own_daemon_stop(&od);
            free(m.policy_text);
            return CLI_EXIT_FAILURE;
        }
        m.r.addr = od.addr;
    }
    /* Lines of any length are read; one past the bound is answered and skipped. */
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        if (len > MCP_LINE_MAX)
            mcp_error(&m, NULL, -32600, "a message of %zu bytes is over the %u-byte limit", len,
                      MCP_LINE_MAX);
        else
            handle(&m, line, len);
        if (cap > 2 * MCP_LINE_MAX) { /* do not keep a huge buffer for the next lines */
            free(line);
            line = NULL;
            cap = 0;
        }
    }
    free(line);
    /* stdin closed: the client is gone; calls still running are cancelled. */
    pthread_mutex_lock(&m.mu);
    for (struct call *c = m.calls; c; c = c->next)
        c->cancel = 1;
    pthread_mutex_unlock(&m.mu);
    reap(&m, true);
    mcp_tools_close(&m);
    cli_own_daemon_stop(&od); /* its sandboxes stopped, their evidence kept */
    free(m.policy_text);
    pthread_mutex_destroy(&m.mu);
    pthread_mutex_destroy(&m.out_mu);
    return 0;
}
