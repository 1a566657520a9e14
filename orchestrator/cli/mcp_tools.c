/* SPDX-License-Identifier: Apache-2.0 */
/* cordon mcp's tools, each a call (or a few) to cordond on a connection of its own (kept open for
 * the next call once it is done), recorded on
 * the sandbox's audit trail (RecordToolCall: the tool and its arguments; cordond redacts the
 * sandbox's secrets). A failure a model can act on (the policy rule that refused, a limit, a path
 * refused, a sandbox that is gone) is a tool result with isError; JSON-RPC errors are kept for
 * the protocol itself. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "cleanup.h"
#include "clock.h"
#include "mcp.h"

#define OUTPUT_CAP (256u << 10) /* per stream, in a result */
#define FILE_CAP (1u << 20)
#define WRITE_CAP (8u << 20)

static json_t *schema(const char *props_json, const char *required_json) {
    json_error_t je;
    json_t *props = json_loads(props_json, 0, &je);
    json_t *req = json_loads(required_json, 0, &je);
    return json_pack("{s:s, s:o, s:o, s:b}", "type", "object", "properties", props, "required", req,
                     "additionalProperties", 0);
}

#define SANDBOX_ID                                                                                 \
    "\"sandbox_id\": {\"type\": \"string\", \"description\": \"from sandbox_create\"}"

json_t *mcp_tools_list(void) {
    json_t *tools = json_array();
    json_array_append_new(
        tools,
        json_pack("{s:s, s:s, s:o}", "name", "sandbox_create", "description",
                  "Create a sandbox (a microVM under a policy) on a repository at a ref, its "
                  "checkout in /workspace; waits until it is ready. Returns its sandbox_id.",
                  "inputSchema",
                  schema("{\"repo\": {\"type\": \"string\", \"description\": \"URL or path on "
                         "cordond's host (default: the server's --repo)\"}, \"ref\": {\"type\": "
                         "\"string\"}, \"image\": {\"type\": \"string\", \"enum\": [\"minimal\", "
                         "\"devbox\"]}, \"policy\": {\"type\": \"string\", \"description\": \"one "
                         "of cordond's policies by name (default: the server's)\"}}",
                         "[]")));
    json_array_append_new(
        tools,
        json_pack("{s:s, s:s, s:o}", "name", "exec", "description",
                  "Run a command in the sandbox (cwd /workspace unless given): argv, or a shell "
                  "command line. The sandbox's policy decides it first; a refusal names the "
                  "rule. Returns its exit code, stdout and stderr (each cut at 256 KiB, marked).",
                  "inputSchema",
                  schema("{" SANDBOX_ID ", \"argv\": {\"type\": \"array\", \"items\": {\"type\": "
                         "\"string\"}, \"minItems\": 1}, \"command\": {\"type\": \"string\", "
                         "\"description\": \"run by sh -c\"}, \"cwd\": {\"type\": \"string\"}, "
                         "\"timeout_seconds\": {\"type\": \"integer\", \"minimum\": 1}}",
                         "[\"sandbox_id\"]")));
    json_array_append_new(
        tools, json_pack("{s:s, s:s, s:o}", "name", "read_file", "description",
                         "Read a text file from the sandbox (a path relative to /workspace, or "
                         "absolute), up to 1 MiB.",
                         "inputSchema",
                         schema("{" SANDBOX_ID ", \"path\": {\"type\": \"string\"}}",
                                "[\"sandbox_id\", \"path\"]")));
    json_array_append_new(
        tools,
        json_pack("{s:s, s:s, s:o}", "name", "list_dir", "description",
                  "List a folder in the sandbox (relative to /workspace, or absolute; default "
                  "/workspace): each entry's name, type (file, dir, symlink, other), size and "
                  "mode, in name order, symlinks not followed. Says when there are more than "
                  "max_entries (default 1000).",
                  "inputSchema",
                  schema("{" SANDBOX_ID ", \"path\": {\"type\": \"string\"}, \"max_entries\": "
                         "{\"type\": \"integer\", \"minimum\": 1, \"maximum\": 10000}}",
                         "[\"sandbox_id\"]")));
    json_array_append_new(
        tools, json_pack("{s:s, s:s, s:o}", "name", "write_file", "description",
                         "Write a text file in the sandbox (replaced whole; folders made), up "
                         "to 8 MiB.",
                         "inputSchema",
                         schema("{" SANDBOX_ID ", \"path\": {\"type\": \"string\"}, \"content\": "
                                "{\"type\": \"string\"}}",
                                "[\"sandbox_id\", \"path\", \"content\"]")));
    json_array_append_new(
        tools, json_pack("{s:s, s:s, s:o}", "name", "diff", "description",
                         "The change so far: /workspace diffed against the base commit by the "
                         "host (a git patch and its size).",
                         "inputSchema", schema("{" SANDBOX_ID "}", "[\"sandbox_id\"]")));
    json_array_append_new(
        tools, json_pack("{s:s, s:s, s:o}", "name", "preview_open", "description",
                         "Expose a guest port the policy lists (previews.ports) on 127.0.0.1 of "
                         "the host; returns the address.",
                         "inputSchema",
                         schema("{" SANDBOX_ID ", \"port\": {\"type\": \"integer\", \"minimum\": "
                                "1, \"maximum\": 65535}}",
                                "[\"sandbox_id\", \"port\"]")));
    json_array_append_new(
        tools, json_pack("{s:s, s:s, s:o}", "name", "sandbox_destroy", "description",
                         "Stop the sandbox: its VM destroyed, its result taken (a change waits "
                         "for a person's review), its evidence kept.",
                         "inputSchema", schema("{" SANDBOX_ID "}", "[\"sandbox_id\"]")));
    return tools;
}

/* ---- results ---- */

static void result(struct mcp *m, json_t *id, bool error, json_t *structured, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void result(struct mcp *m, json_t *id, bool error, json_t *structured, const char *fmt,
                   ...) {
    char *text = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    json_t *content = json_pack("[{s:s, s:s}]", "type", "text", "text", text ? text : "");
    if (!content) /* not UTF-8: said so instead */
        content = json_pack("[{s:s, s:s}]", "type", "text", "text",
                            "(the result is not valid UTF-8 text)");
    json_t *r = json_pack("{s:o, s:b}", "content", content, "isError", error);
    if (structured)
        json_object_set_new(r, "structuredContent", structured);
    mcp_reply(m, id, r);
    free(text);
}

static void failed(struct mcp *m, json_t *id, int rc, cdn_err *e, const char *what) {
    result(m, id, true, NULL, "%s: %s", what, e ? cdn_err_msg(e) : strerror(-rc));
    cdn_err_free(e);
}

/* A unary call to cordond: its answer (the caller frees it), or NULL with the failure answered
 * as what's. */
static ProtobufCMessage *ask(struct mcp *m, struct cdn_client *c, json_t *id, const char *what,
                             const char *method, const ProtobufCMessage *q,
                             const ProtobufCMessageDescriptor *d, int timeout_ms) {
    ProtobufCMessage *resp = NULL;
    cdn_err *e = NULL;
    int rc = cdn_client_call(c, method, q, d, &resp, timeout_ms, &e);
    if (rc < 0) {
        failed(m, id, rc, e, what);
        return NULL;
    }
    return resp;
}

/* The call on the sandbox's audit trail (best effort: a failure is logged, the tool runs). */
static void record(struct cdn_client *c, const char *sandbox, const char *tool, json_t *args) {
    Cordon__V1__RecordToolCallRequest q = CORDON__V1__RECORD_TOOL_CALL_REQUEST__INIT;
    _cleanup_free_ char *text = json_dumps(args ? args : json_object(), JSON_COMPACT);
    q.sandbox_id = (char *)sandbox;
    q.client = (char *)"mcp";
    q.tool = (char *)tool;
    q.arguments_json = text ? text : (char *)"{}";
    ProtobufCMessage *resp = NULL;
    cdn_err *e = NULL;
    if (cdn_client_call(c, "RecordToolCall", &q.base,
                        &cordon__v1__record_tool_call_response__descriptor, &resp, 30000, &e) < 0)
        fprintf(stderr, "cordon mcp: recording %s on sandbox %s: %s\n", tool, sandbox,
                cdn_err_msg(e));
    else
        protobuf_c_message_free_unpacked(resp, NULL);
    cdn_err_free(e);
}

/* ---- the tools ---- */

static void sandbox_create(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a) {
    Cordon__V1__CreateSandboxRequest q = CORDON__V1__CREATE_SANDBOX_REQUEST__INIT;
    const char *repo = json_string_value(json_object_get(a, "repo"));
    const char *ref = json_string_value(json_object_get(a, "ref"));
    const char *image = json_string_value(json_object_get(a, "image"));
    const char *policy = json_string_value(json_object_get(a, "policy"));
    q.repo = (char *)(repo ? repo : m->repo ? m->repo : "");
    q.ref = (char *)(ref ? ref : m->ref ? m->ref : "");
    q.image = (char *)(image ? image : m->image ? m->image : "");
    if (policy || m->policy_name) {
        q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_NAME;
        q.policy_name = (char *)(policy ? policy : m->policy_name);
    } else if (m->policy_text) {
        q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
        q.policy_text = m->policy_text;
    }
    q.labels = NULL;
    ProtobufCMessage *resp = ask(m, c, id, "sandbox_create", "CreateSandbox", &q.base,
                                 &cordon__v1__sandbox__descriptor, 60000);
    if (!resp)
        return;
    char sid[17];
    snprintf(sid, sizeof(sid), "%s", ((Cordon__V1__Sandbox *)resp)->id);
    protobuf_c_message_free_unpacked(resp, NULL);
    record(c, sid, "sandbox_create", a);
    Cordon__V1__Sandbox *sb = NULL;
    cdn_err *e = NULL;
    int rc = cli_sandbox_wait(c, sid, 300, &sb, &e);
    if (rc < 0) {
        if (sb)
            protobuf_c_message_free_unpacked(&sb->base, NULL);
        return failed(m, id, rc, e, "sandbox_create");
    }
    result(m, id, false,
           json_pack("{s:s, s:s, s:s, s:s}", "sandbox_id", sid, "image", sb->image, "repo",
                     sb->repo, "base_commit", sb->base_commit),
           "sandbox %s is ready (image %s%s%s%s%.12s); its checkout is in /workspace", sid,
           sb->image, *sb->repo ? ", " : "", sb->repo, *sb->repo ? " at " : "", sb->base_commit);
    protobuf_c_message_free_unpacked(&sb->base, NULL);
}

struct exec_ctx {
    struct mcp *m;
    json_t *token; /* progress token, or NULL */
    struct cdn_buf out[3];
    bool truncated[3], exited;
    uint64_t bytes;
    uint64_t last_progress_ms;
    Cordon__V1__Exit exit;
    char approval[64], rule[512];
};

static int on_event(void *ud, const ProtobufCMessage *msg) {
    struct exec_ctx *x = ud;
    const Cordon__V1__ExecEvent *ev = (const Cordon__V1__ExecEvent *)msg;
    switch (ev->event_case) {
    case CORDON__V1__EXEC_EVENT__EVENT_OUTPUT: {
        int fd = ev->output->fd == 2 ? 2 : 1;
        size_t n = ev->output->data.len, room = OUTPUT_CAP - cdn_buf_len(&x->out[fd]);
        if (n > room)
            x->truncated[fd] = true;
        if (cdn_buf_append(&x->out[fd], ev->output->data.data, n < room ? n : room) < 0)
            return -ENOMEM;
        x->bytes += n;
        uint64_t now = cdn_now_ms();
        if (x->token && now - x->last_progress_ms >= 1000) { /* at most one a second */
            x->last_progress_ms = now;
            char what[64];
            snprintf(what, sizeof(what), "%llu bytes of output", (unsigned long long)x->bytes);
            mcp_notify(x->m, "notifications/progress",
                       json_pack("{s:O, s:I, s:s}", "progressToken", x->token, "progress",
                                 (json_int_t)x->bytes, "message", what));
        }
        return 0;
    }
    case CORDON__V1__EXEC_EVENT__EVENT_APPROVAL_PENDING: {
        const Cordon__V1__Approval *a = ev->approval_pending->approval;
        if (a) {
            snprintf(x->approval, sizeof(x->approval), "%s", a->id);
            for (size_t i = 0; i < a->n_parts; i++)
                if (strcmp(a->parts[i]->action, "approve") == 0)
                    snprintf(x->rule, sizeof(x->rule), "%s%s%s", a->parts[i]->rule,
                             *a->parts[i]->reason ? ": " : "", a->parts[i]->reason);
        }
        return 0;
    }
    case CORDON__V1__EXEC_EVENT__EVENT_EXIT:
        x->exit = *ev->exit;
        x->exited = true;
        return 0;
    default: return 0;
    }
}

static json_t *text_of(struct cdn_buf *b) {
    json_t *s = json_stringn((const char *)cdn_buf_head(b), cdn_buf_len(b));
    return s ? s : json_sprintf("(%zu bytes, not UTF-8)", cdn_buf_len(b));
}

static void exec(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a, json_t *token,
                 volatile sig_atomic_t *cancel) {
    const char *sid = json_string_value(json_object_get(a, "sandbox_id"));
    json_t *argv = json_object_get(a, "argv");
    const char *cmd = json_string_value(json_object_get(a, "command"));
    if (!sid || (!!cmd == json_is_array(argv)) ||
        (json_is_array(argv) && json_array_size(argv) == 0))
        return result(m, id, true, NULL,
                      "exec needs sandbox_id and either argv (a non-empty array of strings) or "
                      "command (a string)");
    record(c, sid, "exec", a);
    size_t n = cmd ? 3 : json_array_size(argv);
    _cleanup_free_ char **v = calloc(n + 1, sizeof(char *));
    if (!v)
        return result(m, id, true, NULL, "out of memory");
    if (cmd) {
        v[0] = (char *)"sh";
        v[1] = (char *)"-c";
        v[2] = (char *)cmd;
    }
    for (size_t i = 0; !cmd && i < n; i++)
        if (!(v[i] = (char *)json_string_value(json_array_get(argv, i))))
            return result(m, id, true, NULL, "argv[%zu] is not a string", i);
    Cordon__V1__ExecRequest q = CORDON__V1__EXEC_REQUEST__INIT;
    q.sandbox_id = (char *)sid;
    q.argv = v;
    q.n_argv = n;
    q.cwd = (char *)(json_string_value(json_object_get(a, "cwd")) ?: "");
    q.timeout_seconds = (uint32_t)json_integer_value(json_object_get(a, "timeout_seconds"));
    if (m->approval_wait_s)
        q.approval_wait_seconds = m->approval_wait_s;
    else
        q.no_approval_wait = true; /* a model is not a person: say so at once */
    struct exec_ctx x = {.m = m, .token = token};
    cdn_err *e = NULL;
    int rc = cdn_client_stream(c, "Exec", &q.base, &cordon__v1__exec_event__descriptor, on_event,
                               &x, cancel, 0, &e);
    if (*cancel) { /* the client gave up: the command was killed with the call; no answer */
        cdn_err_free(e);
    } else if (rc < 0 && x.approval[0]) {
        result(m, id, true,
               json_pack("{s:s, s:s, s:s}", "decision", "approve", "approval", x.approval, "rule",
                         x.rule),
               "waiting for approval: the policy sends this command to a person (%s; request "
               "%s), and nobody approved it within this call (%s). Ask the user to approve "
               "commands like it, or do the work another way.",
               x.rule, x.approval, e ? cdn_err_msg(e) : "refused");
        cdn_err_free(e);
    } else if (rc < 0 && !x.exited) {
        failed(m, id, rc, e, rc == -EPERM ? "refused by the sandbox's policy" : "exec");
    } else {
        cdn_err_free(e);
        int code = x.exit.signal ? 128 + x.exit.signal : x.exit.exit_code;
        bool cut = x.truncated[1] || x.truncated[2] || x.exit.output_truncated;
        json_t *st = json_pack("{s:i, s:i, s:b, s:b, s:o, s:o}", "exit_code", code, "signal",
                               x.exit.signal, "timed_out", x.exit.timed_out, "output_truncated",
                               cut, "stdout", text_of(&x.out[1]), "stderr", text_of(&x.out[2]));
        result(m, id, false, st, "exit code %d%s%s\n--- stdout ---\n%.*s\n--- stderr ---\n%.*s",
               code, x.exit.timed_out ? " (timed out: its process group was killed)" : "",
               cut ? " (output cut: only the first 256 KiB of each stream are here)" : "",
               (int)cdn_buf_len(&x.out[1]), (const char *)cdn_buf_head(&x.out[1]),
               (int)cdn_buf_len(&x.out[2]), (const char *)cdn_buf_head(&x.out[2]));
    }
    for (int i = 0; i < 3; i++)
        cdn_buf_free(&x.out[i]);
}

static int read_chunk(void *ud, const ProtobufCMessage *msg) {
    const Cordon__V1__FileChunk *ch = (const Cordon__V1__FileChunk *)msg;
    return cdn_buf_append(ud, ch->data.data, ch->data.len) < 0 ? -ENOMEM : 0;
}

static void read_file(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a) {
    const char *sid = json_string_value(json_object_get(a, "sandbox_id"));
    const char *p = json_string_value(json_object_get(a, "path"));
    if (!sid || !p || !*p)
        return result(m, id, true, NULL, "read_file needs sandbox_id and path");
    record(c, sid, "read_file", a);
    _cleanup_free_ char *path = cli_guest_path(p);
    if (!path)
        return result(m, id, true, NULL, "out of memory");
    Cordon__V1__ReadFileRequest q = CORDON__V1__READ_FILE_REQUEST__INIT;
    q.sandbox_id = (char *)sid;
    q.path = path;
    q.max_bytes = FILE_CAP + 1;
    struct cdn_buf b = {0};
    cdn_err *e = NULL;
    int rc = cdn_client_stream(c, "ReadFile", &q.base, &cordon__v1__file_chunk__descriptor,
                               read_chunk, &b, NULL, 300000, &e);
    if (rc < 0) {
        cdn_buf_free(&b);
        return failed(m, id, rc, e, path);
    }
    size_t len = cdn_buf_len(&b);
    json_t *text = json_stringn((const char *)cdn_buf_head(&b), len > FILE_CAP ? FILE_CAP : len);
    if (!text)
        result(m, id, true, NULL, "%s is not a text file (%zu bytes that are not UTF-8)", path,
               len);
    else
        result(m, id, false,
               json_pack("{s:s, s:o, s:b}", "path", path, "content", text, "truncated",
                         len > FILE_CAP),
               "%.*s%s", (int)(len > FILE_CAP ? FILE_CAP : len), (const char *)cdn_buf_head(&b),
               len > FILE_CAP ? "\n(cut at 1 MiB)" : "");
    cdn_buf_free(&b);
}

/* One line per entry, as `ls -l` would say it: type, size, mode, name (a folder's with '/', a
 * symlink's with its target). */
static void entry_line(FILE *f, const Cordon__V1__DirEntry *e) {
    bool dir = e->type == CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_DIR;
    bool link = e->type == CORDON__V1__ENTRY_TYPE__ENTRY_TYPE_SYMLINK;
    fprintf(f, "%-7s %10llu %04o %s%s%s%s\n", cli_entry_type_name(e->type),
            (unsigned long long)e->size, e->mode & 07777, e->name, dir ? "/" : "",
            link ? " -> " : "", link ? e->link_target : "");
}

static void list_dir(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a) {
    const char *sid = json_string_value(json_object_get(a, "sandbox_id"));
    const char *p = json_string_value(json_object_get(a, "path"));
    json_t *max = json_object_get(a, "max_entries");
    json_int_t n = max ? json_integer_value(max) : 1000;
    if (!sid || n < 1 || n > 10000)
        return result(m, id, true, NULL, "list_dir needs sandbox_id (and max_entries 1-10000)");
    record(c, sid, "list_dir", a);
    _cleanup_free_ char *path = cli_guest_path(p ? p : "");
    if (!path)
        return result(m, id, true, NULL, "out of memory");
    Cordon__V1__ListDirRequest q = CORDON__V1__LIST_DIR_REQUEST__INIT;
    q.sandbox_id = (char *)sid;
    q.path = path;
    q.max_entries = (uint32_t)n;
    ProtobufCMessage *resp =
        ask(m, c, id, path, "ListDir", &q.base, &cordon__v1__list_dir_response__descriptor, 60000);
    if (!resp)
        return;
    const Cordon__V1__ListDirResponse *l = (const Cordon__V1__ListDirResponse *)resp;
    json_t *entries = json_array();
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (f)
        fprintf(f, "%s: %llu entr%s\n", path, (unsigned long long)l->total,
                l->total == 1 ? "y" : "ies");
    for (size_t i = 0; i < l->n_entries; i++) {
        json_array_append_new(entries, cli_dir_entry_json(l->entries[i]));
        if (f)
            entry_line(f, l->entries[i]);
    }
    if (f && l->truncated)
        fprintf(f, "(only the first %zu by name: ask for more with max_entries, up to 10000)\n",
                l->n_entries);
    if (f)
        fclose(f);
    result(m, id, false,
           json_pack("{s:s, s:o, s:b, s:I}", "path", path, "entries", entries, "truncated",
                     l->truncated, "total", (json_int_t)l->total),
           "%s", text ? text : "");
    protobuf_c_message_free_unpacked(resp, NULL);
}

struct upload {
    Cordon__V1__WriteFileChunk chunk;
    bool sent;
};

static int next_chunk(void *ud, const ProtobufCMessage **msg) {
    struct upload *u = ud;
    if (u->sent)
        return 0;
    u->sent = true;
    *msg = &u->chunk.base;
    return 1;
}

static void write_file(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a) {
    const char *sid = json_string_value(json_object_get(a, "sandbox_id"));
    const char *p = json_string_value(json_object_get(a, "path"));
    json_t *content = json_object_get(a, "content");
    if (!sid || !p || !*p || !json_is_string(content))
        return result(m, id, true, NULL, "write_file needs sandbox_id, path and content");
    size_t len = json_string_length(content);
    if (len > WRITE_CAP)
        return result(m, id, true, NULL, "content of %zu bytes is over the 8 MiB this tool takes",
                      len);
    /* The audit trail gets the path and the size, not the whole content. */
    json_t *noted =
        json_pack("{s:s, s:s, s:I}", "sandbox_id", sid, "path", p, "bytes", (json_int_t)len);
    record(c, sid, "write_file", noted);
    json_decref(noted);
    _cleanup_free_ char *path = cli_guest_path(p);
    if (!path)
        return result(m, id, true, NULL, "out of memory");
    struct upload u = {.chunk = CORDON__V1__WRITE_FILE_CHUNK__INIT};
    u.chunk.sandbox_id = (char *)sid;
    u.chunk.path = path;
    u.chunk.data = (ProtobufCBinaryData){.len = len, .data = (uint8_t *)json_string_value(content)};
    ProtobufCMessage *resp = NULL;
    cdn_err *e = NULL;
    int rc = cdn_client_upload(c, "WriteFile", next_chunk, &u,
                               &cordon__v1__write_file_response__descriptor, &resp, 300000, &e);
    if (rc < 0)
        return failed(m, id, rc, e, path);
    protobuf_c_message_free_unpacked(resp, NULL);
    result(m, id, false, json_pack("{s:s, s:I}", "path", path, "bytes", (json_int_t)len),
           "wrote %zu bytes to %s", len, path);
}

static void diff(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a) {
    const char *sid = json_string_value(json_object_get(a, "sandbox_id"));
    if (!sid)
        return result(m, id, true, NULL, "diff needs sandbox_id");
    record(c, sid, "diff", a);
    Cordon__V1__GetDiffRequest q = CORDON__V1__GET_DIFF_REQUEST__INIT;
    q.sandbox_id = (char *)sid;
    ProtobufCMessage *resp =
        ask(m, c, id, "diff", "GetDiff", &q.base, &cordon__v1__diff__descriptor, 600000);
    if (!resp)
        return;
    const Cordon__V1__Diff *d = (const Cordon__V1__Diff *)resp;
    size_t len = d->patch.len > FILE_CAP ? FILE_CAP : d->patch.len;
    result(m, id, false,
           json_pack("{s:s, s:s, s:i, s:i, s:i}", "base_commit", d->base_commit, "result_commit",
                     d->result_commit, "files_changed", (int)d->files_changed, "insertions",
                     (int)d->insertions, "deletions", (int)d->deletions),
           "%u files changed, %u insertions(+), %u deletions(-)%s\n%.*s", d->files_changed,
           d->insertions, d->deletions, d->patch.len > FILE_CAP ? " (patch cut at 1 MiB)" : "",
           (int)len, (const char *)d->patch.data);
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void preview_open(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a) {
    const char *sid = json_string_value(json_object_get(a, "sandbox_id"));
    json_int_t port = json_integer_value(json_object_get(a, "port"));
    if (!sid || port < 1 || port > 65535)
        return result(m, id, true, NULL, "preview_open needs sandbox_id and port (1-65535)");
    record(c, sid, "preview_open", a);
    Cordon__V1__OpenPreviewRequest q = CORDON__V1__OPEN_PREVIEW_REQUEST__INIT;
    q.sandbox_id = (char *)sid;
    q.port = (uint32_t)port;
    ProtobufCMessage *resp = ask(m, c, id, "preview_open", "OpenPreview", &q.base,
                                 &cordon__v1__preview__descriptor, 60000);
    if (!resp)
        return;
    const Cordon__V1__Preview *p = (const Cordon__V1__Preview *)resp;
    result(m, id, false, json_pack("{s:s, s:i}", "address", p->address, "port", (int)p->port),
           "guest port %u is at %s on the host", p->port, p->address);
    protobuf_c_message_free_unpacked(resp, NULL);
}

static void sandbox_destroy(struct mcp *m, struct cdn_client *c, json_t *id, json_t *a) {
    const char *sid = json_string_value(json_object_get(a, "sandbox_id"));
    if (!sid)
        return result(m, id, true, NULL, "sandbox_destroy needs sandbox_id");
    record(c, sid, "sandbox_destroy", a);
    Cordon__V1__CancelRequest q = CORDON__V1__CANCEL_REQUEST__INIT;
    q.id = (char *)sid;
    ProtobufCMessage *resp = ask(m, c, id, "sandbox_destroy", "Cancel", &q.base,
                                 &cordon__v1__sandbox__descriptor, 300000);
    if (!resp)
        return;
    const Cordon__V1__Sandbox *sb = (const Cordon__V1__Sandbox *)resp;
    result(m, id, false,
           json_pack("{s:s, s:s}", "sandbox_id", sid, "state", cli_state_name(sb->state)),
           "sandbox %s is %s%s", sid, cli_state_name(sb->state),
           sb->state == CORDON__V1__SANDBOX_STATE__AWAITING_REVIEW
               ? ": its change waits for a person's review"
               : "");
    protobuf_c_message_free_unpacked(resp, NULL);
}

/* A connection to cordond for one call: an idle one (gRPC reconnects it if cordond went away
 * meanwhile), else a new one. Kept open between calls, a call costs no connection setup. */
static int conn_take(struct mcp *m, struct cdn_client **out) {
    pthread_mutex_lock(&m->mu);
    *out = m->n_idle ? m->idle[--m->n_idle] : NULL;
    pthread_mutex_unlock(&m->mu);
    return *out ? 0 : cli_remote_open("mcp", &m->r, out);
}

/* Back to the idle ones after a call that ran its course (one cancelled midway is closed). */
static void conn_give(struct mcp *m, struct cdn_client *c, bool cancelled) {
    pthread_mutex_lock(&m->mu);
    if (!cancelled && m->n_idle < ELEMENTSOF(m->idle)) {
        m->idle[m->n_idle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    cdn_client_free(c);
}

void mcp_tools_close(struct mcp *m) {
    pthread_mutex_lock(&m->mu);
    while (m->n_idle)
        cdn_client_free(m->idle[--m->n_idle]);
    pthread_mutex_unlock(&m->mu);
}

void mcp_tools_call(struct mcp *m, json_t *id, json_t *params, volatile sig_atomic_t *cancel) {
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *args = json_object_get(params, "arguments");
    json_t *token = json_object_get(json_object_get(params, "_meta"), "progressToken");
    if (args && !json_is_object(args)) {
        result(m, id, true, NULL, "arguments must be an object");
        return;
    }
    _cleanup_(json_decrefp) json_t *empty = json_object();
    if (!args)
        args = empty;
    struct cdn_client *c = NULL;
    if (conn_take(m, &c) < 0) {
        result(m, id, true, NULL, "cordond does not answer (see the server's stderr)");
        return;
    }
    if (!strcmp(name, "sandbox_create"))
        sandbox_create(m, c, id, args);
    else if (!strcmp(name, "exec"))
        exec(m, c, id, args, token, cancel);
    else if (!strcmp(name, "read_file"))
        read_file(m, c, id, args);
    else if (!strcmp(name, "list_dir"))
        list_dir(m, c, id, args);
    else if (!strcmp(name, "write_file"))
        write_file(m, c, id, args);
    else if (!strcmp(name, "diff"))
        diff(m, c, id, args);
    else if (!strcmp(name, "preview_open"))
        preview_open(m, c, id, args);
    else if (!strcmp(name, "sandbox_destroy"))
        sandbox_destroy(m, c, id, args);
    else
        mcp_error(m, id, -32602,
                  "unknown tool '%.100s' (sandbox_create, exec, read_file, list_dir, write_file, "
                  "diff, preview_open, sandbox_destroy)",
                  name);
    conn_give(m, c, *cancel);
}
