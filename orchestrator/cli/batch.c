/* SPDX-License-Identifier: Apache-2.0 */
/* cordon batch FILE.jsonl: many tasks through cordond, a task a line. Each becomes a sandbox
 * (labelled with the batch and the task's id), its commands run in order, the sandbox stopped
 * (its result taken) and one line appended to the results file (written and synced before the
 * next). A batch run again resumes: a task with a result is skipped, and a task whose sandbox
 * exists without a result (the previous run died while it ran) is recorded as interrupted and
 * never run a second time. A live progress line on a terminal, a line per task otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "exec_stream.h"
#include "fsutil.h"
#include "policy.h"
#include "remote.h"

#define MAX_TASKS 100000u
#define MAX_COMMANDS 64u
#define MAX_PARALLEL 256u
#define TAIL_BYTES 2048u
#define BATCH_FILE_MAX (256u << 20)

struct task {
    char *id;
    json_t *spec; /* the line */
    char *policy_text;
    bool skip; /* a result exists already */
};

struct batch {
    struct cli_remote r;
    const char *file, *results_path, *name;
    unsigned parallel, approval_wait_s, retries;
    int priority; /* a task's when it gives none */
    struct task *tasks;
    size_t n;
    pthread_mutex_t mu;
    size_t next;                                  /* the next task to start */
    size_t done, failed, running, skipped, total; /* for the progress line */
    int results_fd;
    bool tty;
    uint64_t t0;
};

static void usage(FILE *f) {
    fputs(
        "usage: cordon batch [OPTIONS] FILE.jsonl\n"
        "\n"
        "Runs a task a line through cordond: {\"id\": \"t1\", \"repo\": URL|PATH, \"ref\": REF,\n"
        "\"policy\": FILE | \"policy_name\": NAME, \"image\": \"minimal\"|\"devbox\",\n"
        "\"commands\": [[\"make\"], [\"make\", \"test\"]] | \"command\": \"shell string\",\n"
        "\"artifacts\": [GLOB...], \"timeout\": SECONDS, \"env\": [\"K=V\"...], \"priority\": N} "
        "(all\n"
        "optional but a command; id defaults to the line number). Each result is a line of the\n"
        "results file; running the batch again resumes it, never running a task twice.\n"
        "\n"
        "  --parallel N         tasks at once (default 4; the daemon's max_running still applies)\n"
        "  --results FILE       where results go (default FILE.jsonl's name + .results.jsonl)\n"
        "  --name NAME          the batch's label (default FILE's name)\n"
        "  --approval-wait S    how long a command may wait for a person (default: not at "
        "all)\n"
        "  --priority N         the tasks' priority among yours, -1000..1000 (default 0; a\n"
        "                       line's \"priority\" wins)\n"
        "  --retries N          a task whose sandbox failed for reasons outside it (its host\n"
        "                       stopped answering) runs again in a new one, N times (default 2)\n"
        "A full daemon queue is waited out (it says how long).\n" CLI_REMOTE_USAGE,
        f);
}

/* ---- the file ---- */

static int bad_line(const char *file, size_t line, const char *what) {
    fprintf(stderr, "cordon batch: %s:%zu: %s\n", file, line, what);
    return -1;
}

static bool string_array(json_t *a, size_t max) {
    size_t i;
    json_t *v;
    if (!json_is_array(a) || json_array_size(a) > max)
        return false;
    json_array_foreach(a, i, v) if (!json_is_string(v)) return false;
    return true;
}

static int check_task(struct batch *b, struct task *t, size_t line) {
    static const char *const keys[] = {"id",    "repo",     "ref",     "policy",    "policy_name",
                                       "image", "commands", "command", "artifacts", "timeout",
                                       "env",   "priority", NULL};
    const char *k;
    json_t *v;
    char msg[256];
    if (!json_is_object(t->spec))
        return bad_line(b->file, line, "a task is a JSON object");
    json_object_foreach(t->spec, k, v) {
        bool known = false;
        for (const char *const *w = keys; *w && !known; w++)
            known = !strcmp(*w, k);
        if (!known) {
            snprintf(msg, sizeof(msg), "unknown key '%.60s'", k);
            return bad_line(b->file, line, msg);
        }
    }
    json_t *cmds = json_object_get(t->spec, "commands"), *cmd = json_object_get(t->spec, "command");
    if (!!cmds == !!cmd)
        return bad_line(b->file, line, "give \"commands\" (a list of argv lists) or \"command\"");
    if (cmd && (!json_is_string(cmd) || !json_string_length(cmd)))
        return bad_line(b->file, line, "\"command\" must be a non-empty string");
    size_t i;
    if (cmds) {
        if (!json_is_array(cmds) || !json_array_size(cmds) || json_array_size(cmds) > MAX_COMMANDS)
            return bad_line(b->file, line, "\"commands\" must be a list of 1 to 64 argv lists");
        json_array_foreach(
            cmds, i, v) if (!string_array(v, 4096) ||
                            !json_array_size(
                                v)) return bad_line(b->file, line,
                                                    "each command is a non-empty list of strings");
    }
    static const char *const strings[] = {"id",          "repo",  "ref", "policy",
                                          "policy_name", "image", NULL};
    for (const char *const *s = strings; *s; s++)
        if ((v = json_object_get(t->spec, *s)) && (!json_is_string(v) || !json_string_length(v))) {
            snprintf(msg, sizeof(msg), "\"%s\" must be a non-empty string", *s);
            return bad_line(b->file, line, msg);
        }
    if (json_object_get(t->spec, "policy") && json_object_get(t->spec, "policy_name"))
        return bad_line(b->file, line, "give \"policy\" or \"policy_name\", not both");
    if ((v = json_object_get(t->spec, "artifacts")) && !string_array(v, 256))
        return bad_line(b->file, line, "\"artifacts\" must be a list of globs");
    if ((v = json_object_get(t->spec, "env")) && !string_array(v, CLI_EXEC_MAX_ENV))
        return bad_line(b->file, line, "\"env\" must be a list of K=V strings");
    if ((v = json_object_get(t->spec, "timeout")) &&
        (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 604800))
        return bad_line(b->file, line, "\"timeout\" must be 1 to 604800 seconds");
    if ((v = json_object_get(t->spec, "priority")) &&
        (!json_is_integer(v) || json_integer_value(v) < -1000 || json_integer_value(v) > 1000))
        return bad_line(b->file, line, "\"priority\" must be -1000 to 1000");
    const char *id = json_string_value(json_object_get(t->spec, "id"));
    if (id && (strlen(id) > 128 || strpbrk(id, "\n\r\t")))
        return bad_line(b->file, line, "\"id\" is at most 128 characters on one line");
    char fallback[32];
    snprintf(fallback, sizeof(fallback), "line-%zu", line);
    if (!(t->id = strdup(id ? id : fallback)))
        return bad_line(b->file, line, "out of memory");
    const char *pol = json_string_value(json_object_get(t->spec, "policy"));
    if (pol) { /* read and checked now: a mistake stops the batch before anything runs */
        cdn_err *e = NULL;
        struct cdn_policy *p = NULL;
        size_t len;
        if (cdn_policy_load(pol, &p, &e) < 0 ||
            cdn_read_file(pol, CDN_POLICY_MAX_BYTES, &t->policy_text, &len, &e) < 0) {
            int r = bad_line(b->file, line, cdn_err_msg(e));
            cdn_err_free(e);
            cdn_policy_free(p);
            return r;
        }
        cdn_policy_free(p);
    }
    return 0;
}

static int load(struct batch *b) {
    _cleanup_free_ char *text = NULL;
    size_t len;
    cdn_err *e = NULL;
    if (cdn_read_file(b->file, BATCH_FILE_MAX, &text, &len, &e) < 0) {
        fprintf(stderr, "cordon batch: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        return -1;
    }
    size_t line = 0;
    for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        line++;
        if (strspn(p, " \t\r") == strlen(p) || p[strspn(p, " \t")] == '#')
            continue;
        if (b->n >= MAX_TASKS)
            return bad_line(b->file, line, "more than 100000 tasks");
        struct task *v = realloc(b->tasks, (b->n + 1) * sizeof(*v));
        if (!v)
            return bad_line(b->file, line, "out of memory");
        b->tasks = v;
        struct task *t = &b->tasks[b->n++];
        *t = (struct task){0};
        json_error_t je;
        if (!(t->spec = json_loads(p, JSON_REJECT_DUPLICATES, &je))) {
            char msg[256];
            snprintf(msg, sizeof(msg), "column %d: %s", je.column, je.text);
            return bad_line(b->file, line, msg);
        }
        if (check_task(b, t, line) < 0)
            return -1;
        for (size_t i = 0; i + 1 < b->n; i++)
            if (!strcmp(b->tasks[i].id, t->id))
                return bad_line(b->file, line, "this id is used by an earlier line");
    }
    if (b->n == 0) {
        fprintf(stderr, "cordon batch: %s has no tasks\n", b->file);
        return -1;
    }
    return 0;
}

/* ---- results ---- */

static struct task *find(struct batch *b, const char *id) {
    for (size_t i = 0; id && i < b->n; i++)
        if (!strcmp(b->tasks[i].id, id))
            return &b->tasks[i];
    return NULL;
}

/* Appends one result line (under mu), synced before it counts. */
static void record(struct batch *b, json_t *res, bool ok) {
    char *line = json_dumps(res, JSON_COMPACT | JSON_SORT_KEYS);
    pthread_mutex_lock(&b->mu);
    if (line) {
        size_t n = strlen(line);
        line[n] = '\n';
        if (write(b->results_fd, line, n + 1) != (ssize_t)(n + 1) || fdatasync(b->results_fd) < 0)
            fprintf(stderr, "cordon batch: writing %s: %m\n", b->results_path);
        line[n] = '\0';
    }
    b->done++;
    b->failed += !ok;
    if (!b->tty)
        fprintf(stderr, "cordon batch: %s %s (%zu/%zu)\n",
                json_string_value(json_object_get(res, "id")),
                json_string_value(json_object_get(res, "state")), b->done + b->skipped, b->total);
    pthread_mutex_unlock(&b->mu);
    free(line);
    json_decref(res);
}

/* Marks the tasks the results file already holds; a torn last line (a crash mid-write) is
 * dropped and the file cut back to its last whole line. */
static int read_results(struct batch *b) {
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    cdn_err *e = NULL;
    if (cdn_read_file(b->results_path, BATCH_FILE_MAX, &text, &len, &e) < 0) {
        int absent = cdn_err_code(e) == ENOENT;
        cdn_err_free(e);
        return absent ? 0 : -1;
    }
    size_t whole = 0;
    for (char *p = text, *nl; p < text + len; p = nl + 1) {
        if (!(nl = memchr(p, '\n', (size_t)(text + len - p))))
            break;
        *nl = '\0';
        whole = (size_t)(nl + 1 - text);
        json_t *j = json_loads(p, 0, NULL);
        struct task *t = find(b, json_string_value(json_object_get(j, "id")));
        if (t && !t->skip) {
            t->skip = true;
            b->skipped++;
        }
        json_decref(j);
    }
    if (whole < len && truncate(b->results_path, (off_t)whole) < 0)
        return -1;
    return 0;
}

/* A task whose sandbox exists but has no result was running when an earlier run died: it is
 * recorded as interrupted (its sandbox stopped), not run again. */
static int settle_interrupted(struct batch *b, struct cdn_client *c) {
    Cordon__V1__ListSandboxesRequest q = CORDON__V1__LIST_SANDBOXES_REQUEST__INIT;
    Cordon__V1__ListSandboxesRequest__LabelsEntry label =
        CORDON__V1__LIST_SANDBOXES_REQUEST__LABELS_ENTRY__INIT;
    label.key = "cordon.batch";
    label.value = (char *)b->name;
    Cordon__V1__ListSandboxesRequest__LabelsEntry *labels[] = {&label};
    q.labels = labels;
    q.n_labels = 1;
    ProtobufCMessage *m = NULL;
    cdn_err *e = NULL;
    if (cdn_client_call(c, "ListSandboxes", &q.base,
                        &cordon__v1__list_sandboxes_response__descriptor, &m, 30000, &e) < 0) {
        fprintf(stderr, "cordon batch: listing the batch's sandboxes: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        return -1;
    }
    Cordon__V1__ListSandboxesResponse *l = (Cordon__V1__ListSandboxesResponse *)m;
    for (size_t i = 0; i < l->n_sandboxes; i++) {
        const Cordon__V1__Sandbox *sb = l->sandboxes[i];
        const char *tid = NULL;
        for (size_t k = 0; k < sb->n_labels; k++)
            if (!strcmp(sb->labels[k]->key, "cordon.batch.task"))
                tid = sb->labels[k]->value;
        struct task *t = find(b, tid);
        if (!t || t->skip)
            continue;
        Cordon__V1__CancelRequest cq = CORDON__V1__CANCEL_REQUEST__INIT;
        cq.id = sb->id;
        ProtobufCMessage *cm = NULL;
        if (cdn_client_call(c, "Cancel", &cq.base, &cordon__v1__sandbox__descriptor, &cm, 0,
                            NULL) == 0)
            protobuf_c_message_free_unpacked(cm, NULL);
        t->skip = true;
        record(b,
               json_pack("{s:s, s:s, s:s, s:s}", "id", t->id, "sandbox", sb->id, "state",
                         "interrupted", "error",
                         "an earlier run of the batch stopped while this task ran; it is not run "
                         "twice"),
               false);
    }
    protobuf_c_message_free_unpacked(m, NULL);
    return 0;
}

/* ---- one task ---- */

static void add_tail(json_t *o, const char *key, struct cdn_buf *buf) {
    size_t n = cdn_buf_len(buf), from = n > TAIL_BYTES ? n - TAIL_BYTES : 0;
    struct cdn_buf tail = {0};
    cdn_buf_append(&tail, cdn_buf_head(buf) + from, n - from);
    bool lossy;
    json_object_set_new(o, key, cli_output_json(&tail, &lossy));
    cdn_buf_free(&tail);
}

/* One attempt at a task: its result line (NULL when the sandbox failed for reasons outside the
 * task and it should run again: *why says so). */
static json_t *attempt(struct batch *b, struct cdn_client *c, struct task *t, bool may_retry,
                       bool *ok_out, char *why, size_t why_size) {
    json_t *spec = t->spec;
    Cordon__V1__CreateSandboxRequest q = CORDON__V1__CREATE_SANDBOX_REQUEST__INIT;
    q.repo = (char *)(json_string_value(json_object_get(spec, "repo")) ?: "");
    q.ref = (char *)(json_string_value(json_object_get(spec, "ref")) ?: "");
    q.image = (char *)(json_string_value(json_object_get(spec, "image")) ?: "");
    if (t->policy_text) {
        q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
        q.policy_text = t->policy_text;
    } else if (json_object_get(spec, "policy_name")) {
        q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_NAME;
        q.policy_name = (char *)json_string_value(json_object_get(spec, "policy_name"));
    }
    Cordon__V1__CreateSandboxRequest__LabelsEntry l1 =
        CORDON__V1__CREATE_SANDBOX_REQUEST__LABELS_ENTRY__INIT;
    Cordon__V1__CreateSandboxRequest__LabelsEntry l2 = l1;
    l1.key = "cordon.batch";
    l1.value = (char *)b->name;
    l2.key = "cordon.batch.task";
    l2.value = t->id;
    Cordon__V1__CreateSandboxRequest__LabelsEntry *labels[] = {&l1, &l2};
    q.labels = labels;
    q.n_labels = 2;
    char *arts[256];
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(spec, "artifacts"), i, v) arts[q.n_artifacts++] =
        (char *)json_string_value(v);
    q.artifacts = arts;
    q.defer_boot = true; /* a refused first command costs no VM */

    json_t *pv = json_object_get(spec, "priority");
    q.priority = pv ? (int32_t)json_integer_value(pv) : b->priority;

    json_t *res = json_pack("{s:s}", "id", t->id), *cmds = json_array();
    json_object_set_new(res, "commands", cmds);
    ProtobufCMessage *m = NULL;
    cdn_err *err = NULL;
    int r;
    /* A full queue says when to come back: waited out, in slices (an interrupt ends it). */
    while ((r = cdn_client_call(c, "CreateSandbox", &q.base, &cordon__v1__sandbox__descriptor, &m,
                                60000, &err)) == -EAGAIN &&
           !cli_interrupted) {
        uint32_t wait = cdn_client_retry_after_ms(c);
        cdn_err_free(TAKE_PTR(err));
        for (uint32_t waited = 0; waited < wait && !cli_interrupted; waited += 100)
            usleep(100000);
    }
    char sid[64] = "";
    if (r >= 0) {
        snprintf(sid, sizeof(sid), "%s", ((Cordon__V1__Sandbox *)m)->id);
        protobuf_c_message_free_unpacked(m, NULL);
        json_object_set_new(res, "sandbox", json_string(sid));
        r = cli_sandbox_wait(c, sid, 0, NULL, &err);
    }
    bool ok = r >= 0;
    json_t *list = json_object_get(spec, "commands");
    size_t n = list ? json_array_size(list) : 1;
    for (size_t k = 0; ok && k < n; k++) {
        const char *argv[4096];
        Cordon__V1__ExecRequest x = CORDON__V1__EXEC_REQUEST__INIT;
        x.sandbox_id = sid;
        if (list) {
            json_array_foreach(json_array_get(list, k), i, v) argv[x.n_argv++] =
                json_string_value(v);
        } else {
            argv[0] = "sh";
            argv[1] = "-c";
            argv[2] = json_string_value(json_object_get(spec, "command"));
            x.n_argv = 3;
        }
        x.argv = (char **)argv;
        const char *env[CLI_EXEC_MAX_ENV];
        json_array_foreach(json_object_get(spec, "env"), i, v) env[x.n_env++] =
            json_string_value(v);
        x.env = (char **)env;
        x.timeout_seconds = (uint32_t)json_integer_value(json_object_get(spec, "timeout"));
        if (b->approval_wait_s)
            x.approval_wait_seconds = b->approval_wait_s;
        else
            x.no_approval_wait = true; /* nobody to ask: fail closed at once */
        struct cli_exec ex = {.cmd = "batch", .json = true, .quiet = true};
        r = cli_exec_stream(c, &x, &ex, &cli_interrupted, &err);
        json_t *one = json_object();
        if (r >= 0) {
            int code = cli_exec_code(&ex);
            json_object_set_new(one, "exit_code", json_integer(code));
            json_object_set_new(one, "ms", json_integer((json_int_t)ex.exit.duration_ms));
            add_tail(one, "stdout_tail", &ex.out[1]);
            add_tail(one, "stderr_tail", &ex.out[2]);
            ok = code == 0;
        } else {
            json_object_set_new(one, "error", json_string(cdn_err_msg(err)));
            ok = false;
        }
        json_array_append_new(cmds, one);
        cli_exec_free(&ex);
    }
    bool retry = false;
    if (sid[0]) { /* stopped: its result taken, its VM gone */
        Cordon__V1__CancelRequest cq = CORDON__V1__CANCEL_REQUEST__INIT;
        cq.id = sid;
        ProtobufCMessage *cm = NULL;
        cdn_err *ce = NULL;
        if (cdn_client_call(c, "Cancel", &cq.base, &cordon__v1__sandbox__descriptor, &cm, 0, &ce) ==
            0) {
            Cordon__V1__Sandbox *sb = (Cordon__V1__Sandbox *)cm;
            if (*sb->result_commit)
                json_object_set_new(res, "result_commit", json_string(sb->result_commit));
            if (*sb->base_commit)
                json_object_set_new(res, "base_commit", json_string(sb->base_commit));
            if (sb->state == CORDON__V1__SANDBOX_STATE__AWAITING_REVIEW)
                json_object_set_new(res, "review", json_string("awaiting"));
            if (sb->state == CORDON__V1__SANDBOX_STATE__FAILED) {
                ok = false;
                json_object_set_new(res, "error", json_string(sb->error));
                retry = sb->retryable && may_retry && !cli_interrupted;
                if (retry)
                    snprintf(why, why_size, "%s", sb->error);
            }
            if (*sb->host)
                json_object_set_new(res, "host", json_string(sb->host));
            protobuf_c_message_free_unpacked(cm, NULL);
        }
        cdn_err_free(ce);
    }
    if (r < 0 && !json_object_get(res, "error"))
        json_object_set_new(res, "error", json_string(cdn_err_msg(err)));
    json_object_set_new(res, "state",
                        json_string(cli_interrupted ? "interrupted"
                                    : ok            ? "passed"
                                                    : "failed"));
    cdn_err_free(err);
    *ok_out = ok;
    if (retry) {
        json_decref(res);
        return NULL;
    }
    return res;
}

static void run_task(struct batch *b, struct cdn_client *c, struct task *t) {
    uint64_t t0 = cdn_now_ms();
    json_t *res = NULL, *lost = json_array();
    bool ok = false;
    for (unsigned n = 0; !res; n++) {
        char why[1024] = "";
        res = attempt(b, c, t, n < b->retries, &ok, why, sizeof(why));
        if (!res) {
            json_array_append_new(lost, json_string(why));
            if (!b->tty)
                fprintf(stderr, "cordon batch: %s: runs again (%s)\n", t->id, why);
        }
    }
    if (json_array_size(lost))
        json_object_set(res, "retried", lost);
    json_decref(lost);
    json_object_set_new(res, "ms", json_integer((json_int_t)(cdn_now_ms() - t0)));
    record(b, res, ok);
}

struct worker {
    struct batch *b;
    pthread_t th;
    int rc;
};

static void *work(void *arg) {
    struct worker *w = arg;
    struct batch *b = w->b;
    _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
    if (cli_remote_open("batch", &b->r, &c) < 0) {
        w->rc = -1;
        return NULL;
    }
    for (;;) {
        pthread_mutex_lock(&b->mu);
        while (b->next < b->n && b->tasks[b->next].skip)
            b->next++;
        struct task *t = !cli_interrupted && b->next < b->n ? &b->tasks[b->next++] : NULL;
        if (t)
            b->running++;
        pthread_mutex_unlock(&b->mu);
        if (!t)
            return NULL;
        run_task(b, c, t);
        pthread_mutex_lock(&b->mu);
        b->running--;
        pthread_mutex_unlock(&b->mu);
    }
}

static void progress(struct batch *b, bool last) {
    pthread_mutex_lock(&b->mu);
    size_t done = b->done + b->skipped, total = b->total, running = b->running;
    size_t queued = total - done - running, failed = b->failed, ran = b->done;
    pthread_mutex_unlock(&b->mu);
    double min = (double)(cdn_now_ms() - b->t0) / 60000.0;
    double rate = min > 0 ? (double)ran / min : 0;
    char eta[32] = "?";
    if (rate > 0)
        snprintf(eta, sizeof(eta), "%.0fs", (double)(total - done) / rate * 60.0);
    char bar[31];
    size_t fill = total ? done * 30 / total : 30;
    for (size_t i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr,
            "\r\033[K[%s] %zu/%zu done, %zu running, %zu queued, %zu failed, %.1f/min, ETA %s%s",
            bar, done, total, running, queued, failed, rate, eta, last ? "\n" : "");
}

static int parse(int argc, char **argv, struct batch *b) {
    static const struct option opts[] = {{"parallel", required_argument, NULL, 'p'},
                                         {"results", required_argument, NULL, 'R'},
                                         {"name", required_argument, NULL, 'n'},
                                         {"approval-wait", required_argument, NULL, 'W'},
                                         {"priority", required_argument, NULL, 'P'},
                                         {"retries", required_argument, NULL, 'T'},
                                         {"help", no_argument, NULL, 'h'},
                                         CLI_REMOTE_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    b->parallel = 4;
    b->retries = 2;
    for (int c; (c = getopt_long(argc, argv, "", opts, NULL)) != -1;) {
        char *end;
        unsigned long v;
        switch (c) {
        case 'p':
        case 'W':
            v = strtoul(optarg, &end, 10);
            if (*end || end == optarg || v == 0 || v > (c == 'p' ? MAX_PARALLEL : 86400)) {
                fprintf(stderr, "cordon batch: %s: '%s' is out of range\n",
                        c == 'p' ? "--parallel" : "--approval-wait", optarg);
                return -1;
            }
            *(c == 'p' ? &b->parallel : &b->approval_wait_s) = (unsigned)v;
            break;
        case 'P':
        case 'T': {
            long n = strtol(optarg, &end, 10);
            bool prio = c == 'P';
            if (*end || end == optarg || (prio ? n < -1000 || n > 1000 : n < 0 || n > 100)) {
                fprintf(stderr, "cordon batch: %s: '%s' is out of range\n",
                        prio ? "--priority" : "--retries", optarg);
                return -1;
            }
            if (prio)
                b->priority = (int)n;
            else
                b->retries = (unsigned)n;
            break;
        }
        case 'R': b->results_path = optarg; break;
        case 'n': b->name = optarg; break;
        case 'h': usage(stdout); exit(0);
        default:
            if (cli_remote_option(&b->r, c, optarg))
                break;
            usage(stderr);
            return -1;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return -1;
    }
    b->file = argv[optind];
    return 0;
}

/* Resumes, runs and reports the loaded batch: the exit code. */
static int run_batch(struct batch *b) {
    if (read_results(b) < 0) {
        fprintf(stderr, "cordon batch: reading %s: %m\n", b->results_path);
        return CLI_EXIT_FAILURE;
    }
    b->results_fd = open(b->results_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (b->results_fd < 0) {
        fprintf(stderr, "cordon batch: %s: %m\n", b->results_path);
        return CLI_EXIT_FAILURE;
    }
    cli_catch_interrupts();
    signal(SIGPIPE, SIG_IGN);
    b->tty = isatty(2);
    {
        _cleanup_(cdn_client_freep) struct cdn_client *c = NULL;
        if (cli_remote_open("batch", &b->r, &c) < 0 || settle_interrupted(b, c) < 0)
            return CLI_EXIT_FAILURE;
    }
    size_t before = b->skipped;
    if (before)
        fprintf(stderr, "cordon batch: %zu of %zu tasks already have a result in %s\n", before,
                b->n, b->results_path);
    b->t0 = cdn_now_ms();
    static struct worker w[MAX_PARALLEL];
    unsigned nw = b->parallel < b->n ? b->parallel : (unsigned)b->n;
    for (unsigned i = 0; i < nw; i++) {
        w[i] = (struct worker){.b = b};
        if (pthread_create(&w[i].th, NULL, work, &w[i]) != 0)
            nw = i;
    }
    for (;;) {
        pthread_mutex_lock(&b->mu);
        bool finished =
            b->done + b->skipped >= b->total || (cli_interrupted && b->running == 0) || nw == 0;
        pthread_mutex_unlock(&b->mu);
        if (b->tty)
            progress(b, finished);
        if (finished)
            break;
        usleep(250000);
    }
    int rc = 0;
    for (unsigned i = 0; i < nw; i++) {
        pthread_join(w[i].th, NULL);
        rc |= w[i].rc;
    }
    fprintf(stderr,
            "cordon batch: %zu ran, %zu of them failed; %zu had a result already%s; "
            "results in %s\n",
            b->done, b->failed, before, cli_interrupted ? "; interrupted" : "", b->results_path);
    return cli_interrupted ? CLI_EXIT_INTERRUPTED : rc < 0 || b->failed ? 1 : 0;
}

int cli_batch(int argc, char **argv) {
    struct batch b = {.results_fd = -1};
    cli_remote_init(&b.r);
    if (parse(argc, argv, &b) < 0)
        return CLI_EXIT_FAILURE;
    _cleanup_free_ char *def_results = NULL, *def_name = NULL;
    const char *base = strrchr(b.file, '/') ? strrchr(b.file, '/') + 1 : b.file;
    size_t len = strlen(b.file);
    size_t ext = len > 6 && !strcmp(b.file + len - 6, ".jsonl") ? 6 : 0;
    if (!b.results_path &&
        asprintf(&def_results, "%.*s.results.jsonl", (int)(len - ext), b.file) > 0)
        b.results_path = def_results;
    if (!b.name && (def_name = strndup(base, strlen(base) - ext)))
        b.name = def_name;
    int code = CLI_EXIT_FAILURE;
    pthread_mutex_init(&b.mu, NULL);
    if (b.results_path && b.name && load(&b) == 0) {
        b.total = b.n;
        code = run_batch(&b);
    }
    if (b.results_fd >= 0)
        close(b.results_fd);
    for (size_t i = 0; i < b.n; i++) {
        free(b.tasks[i].id);
        free(b.tasks[i].policy_text);
        json_decref(b.tasks[i].spec);
    }
    free(b.tasks);
    pthread_mutex_destroy(&b.mu);
    return code;
}
