/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_sched share (internal). */
#pragma once

#include <pthread.h>
#include <signal.h>

#include "logf.h"
#include "policy.h"
#include "scheduler.h"
#include "task.h"

struct job {
    struct cdn_job_spec spec; /* the strings and buffers below are the job's own */
    char **argv, **env;
    char *cwd, *path;
    uint8_t *buf;
    const struct cdn_job_ops *ops;
    void *ud;
    /* EXEC, while running */
    struct cdn_session_cmd *cmd;
    int64_t cmd_id;
    bool killed;
    /* EXEC, while waiting for a person */
    char approval[17];
    struct cdn_gate_pending *pending;
    int64_t waiting_since_ms;
    int decided; /* 0 pending, else the cdn_approval_status decided */
    char *decided_by;
    struct job *next;
};

struct sbx {
    char id[17];
    char *tenant;
    struct cdn_sched *sched;
    /* what the session runs with (its strings owned here) */
    struct cdn_task_spec spec;
    char *repo, *ref, *image, *kernel_args;
    char **artifacts;
    bool defer_boot;
    struct cdn_policy *policy; /* NULL: not gated (the "none" default policy) */
    char policy_sha256[65];    /* of its text, for the audit trail ("" without one) */
    struct cdn_rlimit nproc;
    int64_t expires_ms;
    volatile sig_atomic_t cancel; /* interrupts a boot or transfer in progress */
    int wake;                     /* eventfd: jobs queued, a decision, a stop */
    pthread_t thread;
    bool running;            /* the worker thread exists */
    struct job *booting_for; /* the job a deferred boot runs for (its notices go there) */
    /* under sched->mu */
    enum cdn_sandbox_state state;
    struct job *queue, *queue_tail; /* submitted, not yet taken by the worker */
    bool stop, remove;
    char *stop_reason;
    struct sbx *next;
};

struct cdn_sched {
    struct cdn_sched_opts o;
    char *state_dir, *images_dir, *policies_dir, *default_policy, *uri, *accel;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* a worker ended */
    struct sbx *live;    /* QUEUED (in memory) and running sandboxes */
    unsigned running;
    bool closing;
    pthread_t ticker; /* TTLs and queued starts */
    int tick_wake;
    struct cdn_vm_host *anchor; /* keeps the libvirt daemons cordond started up */
};

#define sched_log(s, ...) cdn_logf((s)->o.log, (s)->o.log_ud, __VA_ARGS__)
void sched_wake(int fd);
void job_free(struct job *j);
/* Ends a job that never ran. */
void job_fail(struct job *j, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The worker thread of a sandbox (sched_worker.c). */
void *sched_worker(void *arg);
/* A deleted sandbox's folder and record gone. */
int sched_remove(struct cdn_sched *s, const char *tenant, const char *id, cdn_err **err);
/* Frees a sandbox no longer in the live list. */
void sbx_free(struct sbx *b);
/* Starts queued sandboxes while slots are free (under mu). */
void sched_dispatch_locked(struct cdn_sched *s);
