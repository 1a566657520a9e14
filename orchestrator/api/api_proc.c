/* SPDX-License-Identifier: Apache-2.0 */
/* Background processes over the API: ListProcesses and ProcessLogs read the sandbox's evidence
 * folder (so they answer for a stopped sandbox too; a following ProcessLogs runs on a thread of
 * its own until the process ends or the client goes away); KillProcess is a job for the worker.
 * Output stored in the ring was redacted before it was written. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "cleanup.h"

#define LOG_CHUNK (256u << 10)

/* A record (procs/<handle>.json) as a message; its strings borrowed from rec. */
static Cordon__V1__Process *proc_msg(json_t *rec) {
    Cordon__V1__Process *m = calloc(1, sizeof(*m));
    json_t *argv = json_object_get(rec, "argv");
    if (!m)
        return NULL;
    cordon__v1__process__init(m);
    m->handle = (char *)(json_string_value(json_object_get(rec, "handle")) ?: "");
    m->state = (char *)(json_string_value(json_object_get(rec, "state")) ?: "");
    m->n_argv = json_array_size(argv);
    m->argv = m->n_argv ? calloc(m->n_argv, sizeof(char *)) : NULL;
    for (size_t i = 0; m->argv && i < m->n_argv; i++)
        m->argv[i] = (char *)(json_string_value(json_array_get(argv, i)) ?: "");
    if (!m->argv)
        m->n_argv = 0;
    m->exit_code = (int32_t)json_integer_value(json_object_get(rec, "exit_code"));
    m->signal = (int32_t)json_integer_value(json_object_get(rec, "signal"));
    m->started_unix_ms = json_integer_value(json_object_get(rec, "started_unix_ms"));
    m->ended_unix_ms = json_integer_value(json_object_get(rec, "ended_unix_ms"));
    m->output_bytes = (uint64_t)json_integer_value(json_object_get(rec, "output_bytes"));
    m->dropped_bytes = (uint64_t)json_integer_value(json_object_get(rec, "dropped_bytes"));
    return m;
}

static void proc_msg_free(Cordon__V1__Process *m) {
    if (m)
        free(m->argv);
    free(m);
}

/* The caller's sandbox's evidence folder, or the call failed. */
static int evidence_of(struct api_call *c, const char *id, char *dir, size_t n) {
    struct cdn_store_sandbox sb;
    if (api_call_sandbox(c, id, &sb) < 0)
        return -ENOENT;
    cdn_store_sandbox_clear(&sb);
    return cdn_sched_evidence_dir(c->api->o.sched, id, dir, n);
}

struct list {
    Cordon__V1__ListProcessesResponse resp;
    json_t *recs; /* keeps the strings the messages borrow */
};

static int add(void *ud, json_t *rec) {
    struct list *l = ud;
    Cordon__V1__Process **v = realloc(l->resp.processes, (l->resp.n_processes + 1) * sizeof(*v));
    Cordon__V1__Process *m = v ? proc_msg(rec) : NULL;
    if (v)
        l->resp.processes = v;
    if (!m)
        return -ENOMEM;
    json_array_append(l->recs, rec);
    l->resp.processes[l->resp.n_processes++] = m;
    return 0;
}

void api_list_processes(struct api_call *c) {
    Cordon__V1__ListProcessesRequest *q =
        (void *)api_call_decode(c, &cordon__v1__list_processes_request__descriptor);
    if (!q)
        return;
    char dir[4300];
    if (evidence_of(c, q->sandbox_id, dir, sizeof(dir)) >= 0) {
        struct list l = {.recs = json_array()};
        cordon__v1__list_processes_response__init(&l.resp);
        cdn_err *e = NULL;
        int r = cdn_sched_procs(dir, add, &l, &e);
        if (r < 0)
            api_call_fail(c, r, e);
        else if (api_call_send_last(c, &l.resp.base) < 0)
            api_call_finish(c, GRPC_STATUS_CANCELLED, "the call ended");
        cdn_err_free(e);
        for (size_t i = 0; i < l.resp.n_processes; i++)
            proc_msg_free(l.resp.processes[i]);
        free(l.resp.processes);
        json_decref(l.recs);
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- ProcessLogs ---- */

struct logs {
    struct api_call *c;
    char dir[4300], handle[16];
    bool follow;
};

static int send_output(void *ud, const uint8_t *p, size_t n) {
    struct logs *l = ud;
    while (n) { /* in messages of at most LOG_CHUNK; waits for a slow reader */
        size_t k = n < LOG_CHUNK ? n : LOG_CHUNK;
        Cordon__V1__Output out = CORDON__V1__OUTPUT__INIT;
        out.fd = 1;
        out.data = (ProtobufCBinaryData){.len = k, .data = (uint8_t *)p};
        Cordon__V1__ExecEvent ev = CORDON__V1__EXEC_EVENT__INIT;
        ev.event_case = CORDON__V1__EXEC_EVENT__EVENT_OUTPUT;
        ev.output = &out;
        if (api_call_send_wait(l->c, &ev.base, 60000) < 0)
            return -ECANCELED;
        p += k;
        n -= k;
    }
    return 0;
}

static bool gone(void *ud) { return api_call_gone(((struct logs *)ud)->c); }

static void *logs_thread(void *arg) {
    struct logs *l = arg;
    struct api_call *c = l->c;
    json_t *rec = NULL;
    cdn_err *e = NULL;
    int r = cdn_sched_proc_logs(l->dir, l->handle, l->follow, send_output, gone, l, &rec, &e);
    const char *state = json_string_value(json_object_get(rec, "state"));
    if (r < 0) {
        api_call_fail(c, r, e);
    } else if (state && strcmp(state, "running") != 0) { /* ended: how, last */
        Cordon__V1__Exit x = CORDON__V1__EXIT__INIT;
        x.exit_code = (int32_t)json_integer_value(json_object_get(rec, "exit_code"));
        x.signal = (int32_t)json_integer_value(json_object_get(rec, "signal"));
        x.output_truncated = json_integer_value(json_object_get(rec, "dropped_bytes")) > 0;
        Cordon__V1__ExecEvent ev = CORDON__V1__EXEC_EVENT__INIT;
        ev.event_case = CORDON__V1__EXEC_EVENT__EVENT_EXIT;
        ev.exit = &x;
        if (api_call_send_last(c, &ev.base) < 0)
            api_call_finish(c, GRPC_STATUS_CANCELLED, "the call ended");
    } else {
        api_call_finish(c, GRPC_STATUS_OK, NULL);
    }
    json_decref(rec);
    cdn_err_free(e);
    api_call_unref(c);
    free(l);
    return NULL;
}

void api_process_logs(struct api_call *c) {
    Cordon__V1__ProcessLogsRequest *q =
        (void *)api_call_decode(c, &cordon__v1__process_logs_request__descriptor);
    if (!q)
        return;
    struct logs *l = calloc(1, sizeof(*l));
    if (!l) {
        api_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    } else if (evidence_of(c, q->sandbox_id, l->dir, sizeof(l->dir)) < 0) {
        free(l);
    } else {
        l->c = c;
        snprintf(l->handle, sizeof(l->handle), "%.15s", q->handle);
        l->follow = q->follow;
        if (api_call_on_thread(c, logs_thread, l) < 0)
            free(l);
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- KillProcess ---- */

static void kill_done(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res) {
    struct api_call *c = ud;
    char dir[4300] = "";
    json_t *rec = NULL;
    if (rc >= 0)
        cdn_sched_evidence_dir(c->api->o.sched, res->sandbox_id, dir, sizeof(dir));
    if (rc < 0) {
        api_call_fail(c, rc, e);
    } else {
        char path[4400];
        snprintf(path, sizeof(path), "%s/procs/%s.json", dir, res->handle);
        json_error_t je;
        rec = json_load_file(path, 0, &je);
        Cordon__V1__Process *m = rec ? proc_msg(rec) : NULL;
        if (!m || api_call_send_last(c, &m->base) < 0)
            api_call_finish(c, m ? GRPC_STATUS_CANCELLED : GRPC_STATUS_INTERNAL,
                            m ? "the call ended" : "process %s has no record", res->handle);
        proc_msg_free(m);
    }
    json_decref(rec);
    api_call_unref(c);
}

static const struct cdn_job_ops kill_ops = {.done = kill_done};

void api_kill_process(struct api_call *c) {
    Cordon__V1__KillProcessRequest *q =
        (void *)api_call_decode(c, &cordon__v1__kill_process_request__descriptor);
    if (!q)
        return;
    int signo = q->signal ? (int)q->signal : SIGTERM;
    if (signo < 1 || signo > 64) {
        api_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "signal %d is not one", signo);
    } else {
        struct cdn_job_spec spec = {.kind = CDN_JOB_KILL, .path = q->handle, .signo = signo};
        api_submit(c, q->sandbox_id, &spec, &kill_ops);
    }
    protobuf_c_message_free_unpacked(&q->base, NULL);
}
