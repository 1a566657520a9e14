/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_sched: cordond's sandboxes. Each one created is recorded QUEUED in the store (so a restart
 * resumes the queue) and started when a slot is free: at most max_running at once, each tenant
 * within its quotas, on the libvirt host with the most free capacity (weighted) that can hold
 * its vCPUs and memory. Between tenants the slots are shared fairly (the tenant holding the
 * smallest share of running sandboxes for its weight goes next); within a tenant, higher
 * priority first, then oldest. A full queue refuses with a retry hint. A running sandbox is a
 * worker thread owning its session (VM, channel, workspace, evidence). Work for a sandbox arrives
 * as jobs (a command, a file in or out, its diff), queued until it is READY and run by its worker;
 * commands run concurrently, each decided by the sandbox's policy first (a denial ends the job, an
 * approval parks it until someone decides). Results come back through the job's callbacks, on the
 * worker's thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "channel.h"
#include "err.h"
#include "store.h"
#include "workspace.h"

struct cdn_sched;

/* A libvirt host: qemu:///system, qemu+ssh://..., qemu+tls://..., qemu+unix:///...?socket=... */
struct cdn_sched_host {
    const char *uri;
    unsigned weight; /* 0: 1 */
};

/* A tenant's quotas (0: the daemon's defaults). */
struct cdn_sched_tenant {
    const char *name;
    unsigned max_running, max_queued, weight;
};

/* Warm VMs kept booted for an image (its default shape), handed to new sandboxes. */
struct cdn_sched_pool {
    const char *image;
    unsigned size;
};

struct cdn_sched_opts {
    const char *state_dir;       /* tasks/, repos/, run/ (libvirt daemons) */
    const char *images_dir;      /* kernel/vmlinux, minimal.cpio.lz4, devbox.qcow2 */
    const char *policies_dir;    /* named policies: <name>.yaml */
    const char *default_policy;  /* when a request names none (NULL: "default-deny"; "none":
                                  * its commands are not gated, for `cordon run`'s own daemon) */
    const char *uri;             /* libvirt URI (NULL: qemu:///system) */
    const char *accel;           /* "auto", "kvm" or "tcg" */
    struct cdn_store *store;     /* the caller's; outlives the scheduler */
    unsigned max_running;        /* VMs at once (0: 4) */
    unsigned max_queued;         /* QUEUED sandboxes per tenant (0: 1000) */
    unsigned max_queued_total;   /* QUEUED sandboxes in all (0: 10000) */
    unsigned tenant_max_running; /* running sandboxes per tenant (0: max_running) */
    const struct cdn_sched_tenant *tenants; /* per-tenant quotas and weights */
    size_t n_tenants;
    const struct cdn_sched_host *hosts; /* none: one, uri */
    size_t n_hosts;
    const struct cdn_sched_pool *pools; /* the warm pool (none: every sandbox boots cold) */
    size_t n_pools;
    bool warm_no_clone;          /* warm VMs always boot (default: cloned from a template saved
                                  * per image and host, where cloning is faster than booting) */
    unsigned cpu_overcommit;     /* vCPUs placed per host CPU (0: 16: idle sandboxes cost none) */
    unsigned memory_reserve_mib; /* of each host's memory, kept back (0: 1024) */
    int64_t host_check_ms;       /* how often hosts are asked whether they answer (0: 2000); one
                                  * that does not is drained: its sandboxes fail (saying so: a
                                  * batch retries them elsewhere), nothing more is placed on it
                                  * until it answers again */
    int boot_timeout_ms;         /* 0: 60 s */
    uint32_t default_ttl_s;      /* 0: 1 hour */
    uint32_t max_ttl_s;          /* 0: 24 hours */
    uint32_t session_max_ttl_s;  /* a session's (persist) ttl and extensions (0: 7 days) */
    uint32_t pause_to_disk_s;    /* a session paused in memory this long is saved to disk (0:
                                  * 600 s) */
    uint64_t process_log_bytes;  /* a background process's output kept on disk (0: 8 MiB) */
    bool no_review_gate;         /* results never wait for a review (`cordon run`'s own daemon:
                                  * its user reads the diff it prints) */
    uint32_t approval_timeout_s; /* 0: 1 hour */
    void (*log)(void *ud, const char *line);
    void *log_ud;
};

/* Opens the scheduler: sandboxes the store says were running are marked FAILED (their VMs went
 * with the old daemon; leftovers are reaped), commands left running are marked interrupted, and
 * QUEUED ones are started as slots allow. */
int cdn_sched_open(const struct cdn_sched_opts *opts, struct cdn_sched **out, cdn_err **err);
/* Stops every running sandbox (its result taken, STOPPED "cordond stopped") and frees. */
void cdn_sched_free(struct cdn_sched *s);
void cdn_sched_freep(struct cdn_sched **s);

struct cdn_sched_limits {
    unsigned cpus, memory_mib, disk_mib, wall_seconds, command_timeout_seconds, max_processes;
    uint64_t output_bytes, max_files_returned, max_bytes_returned;
    unsigned max_depth_returned;
};

struct cdn_sched_create {
    const char *repo, *ref;  /* repo NULL or "": no workspace */
    const char *policy_text; /* a policy's YAML, or */
    const char *policy_name; /* one of policies_dir's (neither: the default policy) */
    const char *image;       /* NULL: "minimal" */
    struct cdn_sched_limits limits;
    const char *labels_json;        /* {"k":"v",...} or NULL */
    uint32_t ttl_s;                 /* 0: the default */
    const char *const *kernel_args; /* words appended to the guest kernel's command line */
    size_t n_kernel_args;
    const char *const *artifacts; /* globs: matching guest files go to the evidence at the end */
    size_t n_artifacts;
    uint64_t max_artifact_bytes; /* per artifact (0: 64 MiB) */
    uint32_t boot_timeout_s;     /* 0: the daemon's (which also caps it) */
    bool defer_boot;   /* the VM boots for the first job the policy lets through (READY before) */
    int priority;      /* -1000..1000, higher first among the tenant's queued sandboxes */
    bool persist;      /* a session: pausable, resettable, extendable, listed with its owner */
    const char *owner; /* the session's (NULL or "": the tenant) */
};
/* Validates and queues a sandbox. Errors: -EINVAL (a bad request; for a policy, its
 * policy:LINE:COL message), -ENOENT (no such named policy), -EDQUOT (over the policy's limits,
 * or more than any host holds), -EAGAIN (the tenant's or the daemon's queue is full: try again
 * in *retry_ms, which is set then). out is the stored record (clear it). */
int cdn_sched_create(struct cdn_sched *s, const char *tenant, const struct cdn_sched_create *req,
                     struct cdn_store_sandbox *out, uint32_t *retry_ms, cdn_err **err);

/* The scheduler's view: per host, per tenant. */
struct cdn_sched_host_stats {
    const char *uri;
    unsigned weight, vcpu_cap, used_vcpus, running;
    uint64_t memory_cap_mib, used_mib;
    bool down;
};
struct cdn_sched_stats {
    unsigned running, queued;
    size_t n_hosts;
    struct cdn_sched_host_stats hosts[16];
};
void cdn_sched_stats(struct cdn_sched *s, struct cdn_sched_stats *out);

/* POLICY: data/len is a policy's YAML whose network.egress replaces the sandbox's egress rules
 * (path: who asked); needs no VM. PAUSE (to_disk), RESUME, RESET and EXTEND (ttl_s) are a
 * session's (path: who asked); an ephemeral sandbox refuses them (-EBADFD). */
enum cdn_job_kind {
    CDN_JOB_EXEC,
    CDN_JOB_WRITE,
    CDN_JOB_READ,
    CDN_JOB_DIFF,
    CDN_JOB_POLICY,
    CDN_JOB_PAUSE,
    CDN_JOB_RESUME,
    CDN_JOB_RESET,
    CDN_JOB_EXTEND,
    CDN_JOB_KILL,          /* a background process (path: its handle) gets signo */
    CDN_JOB_PREVIEW_OPEN,  /* a guest port (port) exposed on 127.0.0.1:host_port or a socket */
    CDN_JOB_PREVIEW_CLOSE, /* and closed (its connections ended) */
    CDN_JOB_NOTE,          /* an event on the audit trail: data/len its JSON fields, path who */
    CDN_JOB_LIST,          /* the folder path's entries (max_entries of them) */
};
const char *cdn_job_kind_name(enum cdn_job_kind k);

struct cdn_job_result {
    struct cdn_exec_result exec;
    uint64_t bytes; /* WRITE */
    /* DIFF */
    char base[41], result[41];
    char *patch;
    size_t patch_len;
    struct cdn_diff_stats stats;
    /* POLICY */
    char policy_sha256[65];
    size_t egress_rules;
    /* PAUSE, RESUME, RESET, EXTEND, KILL */
    char sandbox_id[17];
    /* EXEC with detach, KILL */
    char handle[16];
    /* PREVIEW_OPEN: where to connect ("127.0.0.1:PORT" or "unix:PATH"); and the guest port */
    char address[4200];
    uint16_t port;
    /* LIST: borrowed for the length of done */
    const struct cdn_dir_listing *listing;
};

/* The job's owner's side. Every callback runs on the sandbox's worker thread. */
struct cdn_job_ops {
    /* EXEC: output (fd 1, 2); READ: the file's bytes (fd 0). < 0 cancels the job. */
    int (*data)(void *ud, int fd, const uint8_t *p, size_t n);
    /* EXEC: the policy asked for approval (approval is its stored request; borrowed). */
    void (*pending)(void *ud, const char *approval_id);
    /* Exactly once, last: rc 0 (res filled) or < 0 with e. Errors: -EPERM (denied, not
     * approved), -ETIMEDOUT (the command's timeout; res filled), -ECANCELED (the sandbox
     * stopped), -ENOTCONN (the sandbox failed), others from the guest. */
    void (*done)(void *ud, int rc, const cdn_err *e, const struct cdn_job_result *res);
    /* true once the owner went away (the client hung up): the job is cancelled. */
    bool (*abandoned)(void *ud);
    /* A line worth showing (e.g. the fall back to TCG while the VM boots for this job). */
    void (*notice)(void *ud, const char *line);
};

struct cdn_job_spec {
    enum cdn_job_kind kind;
    /* EXEC */
    const char *const *argv;
    size_t argc;
    const char *const *env;
    size_t envc;
    const char *cwd;
    uint32_t timeout_s;
    const uint8_t *stdin_data;
    size_t stdin_len;
    uint32_t approval_wait_s; /* 0: the daemon's approval timeout (which also caps it) */
    bool no_approval_wait;    /* an approval request expires at once: nobody to ask */
    /* WRITE / READ / LIST */
    const char *path;
    uint32_t mode;
    const uint8_t *data;
    size_t len;
    uint64_t max_bytes;
    uint32_t max_entries; /* LIST; 0: CDN_DIR_DEFAULT_ENTRIES */
    /* PAUSE / EXTEND */
    bool to_disk;
    uint32_t ttl_s;
    /* EXEC in the background: done is called once it started, with res->handle; its output
     * goes to the sandbox's process ring (sched_proc.c). KILL: the signal. */
    bool detach;
    int signo;
    /* PREVIEW_OPEN / PREVIEW_CLOSE */
    uint16_t port, host_port; /* host_port 0: any free one */
    bool unix_socket;         /* a unix socket in the state folder instead of a TCP port */
};

/* Queues a job for tenant's sandbox id (copied: spec need not outlive the call). Errors:
 * -ENOENT (no such sandbox for this tenant), -EBADFD (the sandbox is stopped or failed: message
 * says which). On success ops->done will be called exactly once. */
int cdn_sched_submit(struct cdn_sched *s, const char *tenant, const char *id,
                     const struct cdn_job_spec *spec, const struct cdn_job_ops *ops, void *ud,
                     cdn_err **err);

/* Decides an approval of one of tenant's sandboxes (by names the decider). Errors: -ENOENT (no
 * such approval for this tenant), -EALREADY (decided already). */
int cdn_sched_decide(struct cdn_sched *s, const char *tenant, const char *approval_id, bool approve,
                     const char *by, cdn_err **err);

/* Stops a sandbox: queued ones never start; running ones have their commands killed, their
 * result taken and their VM destroyed (STOPPED). With remove, the record and its folder go too.
 * Errors: -ENOENT. */
int cdn_sched_stop(struct cdn_sched *s, const char *tenant, const char *id, bool remove,
                   cdn_err **err);

/* A person's decision on a sandbox AWAITING_REVIEW (by: the caller's identity). Who may decide:
 * the policy's review.approvers when it names any (of any tenant), else the sandbox's tenant.
 * Approving first does what review.merge says (a push, a merge; refused if it fails: the sandbox
 * still awaits review); then the decision, by and comment are recorded on its audit trail (its
 * evidence sealed again) and in the store, and it is STOPPED. Errors: -ENOENT (no such sandbox
 * for by), -EPERM (not an approver), -EALREADY (decided), -EBADFD (not awaiting review). */
int cdn_sched_review(struct cdn_sched *s, const char *by, const char *id, bool approve,
                     const char *comment, cdn_err **err);
/* The record (and its parsed policy, NULL without one) of a sandbox by may review or see: its
 * tenant's, or one whose policy's review.approvers names by. -ENOENT otherwise. */
struct cdn_policy;
int cdn_sched_review_get(struct cdn_sched *s, const char *by, const char *id,
                         struct cdn_store_sandbox *rec, struct cdn_policy **p, cdn_err **err);

/* The patch (diff.patch) in an evidence folder, NUL-terminated (empty before any result was
 * taken); -EFBIG when it is too large for one API message. */
int cdn_sched_read_patch(const char *evidence_dir, char **out, size_t *len, cdn_err **err);
/* A sandbox's background processes, from their records in its evidence folder (procs/): fn gets
 * each one's JSON record (handle, argv, state, exit_code, signal, started/ended_unix_ms,
 * output_bytes, dropped_bytes), in handle order. */
int cdn_sched_procs(const char *evidence_dir, int (*fn)(void *ud, json_t *rec), void *ud,
                    cdn_err **err);
/* Streams one's stored output (the ring: the older segment, then the current) to fn, then with
 * follow what it writes until it ended (*rec then holds its final record; caller decrefs), or
 * until stop() says so (checked every 100 ms). -ENOENT: no such handle. */
int cdn_sched_proc_logs(const char *evidence_dir, const char *handle, bool follow,
                        int (*fn)(void *ud, const uint8_t *p, size_t n), bool (*stop)(void *ud),
                        void *ud, json_t **rec, cdn_err **err);
/* The folder of a sandbox's evidence (whatever its state). */
int cdn_sched_evidence_dir(struct cdn_sched *s, const char *id, char *out, size_t size);
const char *cdn_sched_state_dir(const struct cdn_sched *s);
