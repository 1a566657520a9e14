/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_sched share (internal). */
#pragma once

#include <pthread.h>
#include <signal.h>

#include "clock.h"
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
    char handle[16]; /* a background process's (sched_proc.c), once detached */
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
    int64_t expires_ms;           /* under mu once it runs (extend moves it) */
    bool persist;                 /* a session */
    volatile sig_atomic_t cancel; /* interrupts a boot or transfer in progress */
    int wake;                     /* eventfd: jobs queued, a decision, a stop */
    pthread_t thread;
    bool running;            /* the worker thread exists */
    struct job *booting_for; /* the job a deferred boot runs for (its notices go there) */
    /* what placing it weighs */
    int priority;   /* higher first, within its tenant's share */
    unsigned vcpus; /* what it takes from its host */
    uint64_t memory_mib;
    uint64_t seq;          /* creation order */
    int host;              /* index in sched->hosts while running, else -1 */
    int64_t started_ms;    /* when its worker began */
    bool host_lost;        /* its host stopped answering (under mu) */
    struct cdn_warm *warm; /* the warm VM taken for it when it was placed (its worker's then) */
    /* under sched->mu */
    enum cdn_sandbox_state state;
    struct job *queue, *queue_tail;     /* submitted, not yet taken by the worker */
    struct preview_conn *preview_queue; /* accepted by a preview, not yet relayed */
    bool stop, remove;
    char *stop_reason;
    struct sbx *next;
};

/* A libvirt host sandboxes are placed on: what it offers, what its sandboxes hold. */
struct sched_host {
    char *uri; /* NULL: the local system URI */
    unsigned weight;
    struct cdn_vm_host *conn; /* kept open: keeps the daemons cordond started up */
    unsigned vcpu_cap;        /* its CPUs times the overcommit */
    uint64_t memory_cap_mib;  /* its memory less the reserve */
    /* under mu */
    unsigned used_vcpus, running;
    uint64_t used_mib;
    bool down; /* stopped answering: drained, nothing placed on it */
    int64_t checked_ms;
    struct host_probe *probe; /* a drained host's reconnection in progress (the ticker's) */
};

/* A tenant's quotas and its share of the running slots. */
struct sched_tenant {
    char *name;
    unsigned max_running, max_queued, weight;
    /* under mu, recounted by each pick */
    unsigned running, queued;
    uint64_t last_start; /* the pick counter when one of its sandboxes last started */
};

struct cdn_sched {
    struct cdn_sched_opts o;
    char *state_dir, *images_dir, *policies_dir, *default_policy, *uri, *accel;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* a worker ended */
    struct sbx *live;    /* QUEUED (in memory) and running sandboxes */
    unsigned running;
    bool closing;
    pthread_t ticker;     /* TTLs and queued starts */
    int64_t retention_ms; /* the ticker's last retention sweep (wall clock); at start too */
    int tick_wake;
    char *daemon_dir; /* pid files of the libvirt daemons cordond starts */
    struct sched_host *hosts;
    size_t n_hosts;
    struct sched_tenant *tenants; /* configured ones first, then those seen */
    size_t n_tenants, cap_tenants;
    uint64_t seq, picks;
    unsigned queued_total;
    double hold_ms_avg;       /* how long a sandbox holds its slot, averaged (0: none ended yet) */
    struct sched_pool *pools; /* the warm pool, per image (sched_pool.c) */
    size_t n_pools;
    pthread_t pool_thread;
    pthread_cond_t pool_cond;  /* a warm VM was taken, or closing */
    pthread_mutex_t tpl_mu;    /* the pools' templates: which is free, cloning one, their lists */
    pthread_mutex_t review_mu; /* one review decision at a time */
    bool pool_running;
    volatile sig_atomic_t pool_cancel;
};

/* The monotonic clock (cdn_now_ms) as the signed ms the scheduler's deadlines use. */
static inline int64_t sched_now_ms(void) { return (int64_t)cdn_now_ms(); }
/* The wall clock in ms since the epoch: what the store's and the evidence's times are in. */
static inline int64_t sched_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define sched_log(s, ...) cdn_logf((s)->o.log, (s)->o.log_ud, __VA_ARGS__)
void sched_wake(int fd);
void job_free(struct job *j);
/* Ends a job that never ran. */
void job_fail(struct job *j, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The worker thread of a sandbox (sched_worker.c): the only one touching its session. */
struct worker {
    struct sbx *b;
    struct cdn_sched *s;
    struct cdn_session *sess;
    struct job *waiting; /* for a person's decision */
    struct job *running; /* commands in the guest */
    bool booted;         /* a deferred sandbox boots for its first job */
    cdn_err *fatal;      /* the deferred boot failed: the sandbox fails */
    /* a session's pause (sched_session.c) */
    bool paused;              /* its VM suspended, or saved to disk */
    int64_t paused_ms;        /* since when */
    bool no_auto_save;        /* saving it to disk failed once: it stays in memory */
    unsigned procs;           /* background processes started (their handles' numbers) */
    struct preview *previews; /* open ones (sched_preview.c) */
};
void *sched_worker(void *arg);
/* The sandbox's state, in the store and in memory. */
void sched_set_state(struct worker *w, enum cdn_sandbox_state to, const char *error);
void sched_save_evidence(struct worker *w);
/* Its VM booted (a warm one when the pool has one; j, when it boots for a job, gets the
 * notices). */
int sched_boot(struct worker *w, struct job *j, cdn_err **e);
/* Running and waiting commands ended (why, e.g. "was reset"): killed, waiting up to wait_ms for
 * each one's exit, recorded cancelled. */
void sched_end_commands(struct worker *w, const char *why, int wait_ms);

/* Background processes (sched_proc.c). j has just started with detach: its client is answered
 * with a handle and its output goes to the ring from now on (the job stays on w->running). A KILL
 * job: the signal to the running process its path names. */
int sched_proc_detach(struct worker *w, struct job *j, cdn_err **e);
void sched_proc_kill(struct worker *w, struct job *j);

/* The review gate (sched_review.c): whether w's result waits for a person (its policy asks, it
 * changed the repository); and its waiting recorded (evidence, store) before its close. */
bool sched_review_gates(const struct worker *w);
void sched_review_await(struct worker *w);

/* Previews (sched_preview.c): PREVIEW_OPEN / PREVIEW_CLOSE jobs; the connections their threads
 * accepted, relayed (each worker turn); all of them closed (why: "paused", "stopped", ...). */
struct preview;
struct preview_conn;
void sched_preview_job(struct worker *w, struct job *j);
void sched_preview_relay(struct worker *w);
void sched_preview_close_all(struct worker *w, const char *why);

/* A session's jobs (sched_session.c): PAUSE, RESUME, RESET, EXTEND, answered through j. */
void sched_session_job(struct worker *w, struct job *j);
/* While paused: saved to disk once it has been paused long enough (the daemon's
 * pause_to_disk_s). */
void sched_session_tick(struct worker *w);
/* Before its teardown: a session paused in memory runs again (its result and its commands'
 * ends are taken as usual); false when there is no VM to take anything from (saved to disk:
 * its result was taken when it paused). */
bool sched_session_unpause(struct worker *w);
/* A deleted sandbox's folder and record gone. */
int sched_remove(struct cdn_sched *s, const char *tenant, const char *id, cdn_err **err);
/* Frees a sandbox no longer in the live list. */
void sbx_free(struct sbx *b);
/* Starts queued sandboxes while slots are free (under mu): placement and fair sharing,
 * sched_pick.c. */
void sched_dispatch_locked(struct cdn_sched *s);
/* The host with the most free memory (times its weight) that holds vcpus and memory_mib more
 * (-1: none now), under mu. */
int sched_place_locked(struct cdn_sched *s, unsigned vcpus, uint64_t memory_mib);
/* The memory an image's VM gets when the limits set none. */
unsigned sched_image_memory_mib(const char *image);
/* A tenant's record (created on first sight; NULL when out of memory), under mu. */
struct sched_tenant *sched_tenant(struct cdn_sched *s, const char *name);
/* The worker of b ended: its host's share given back, its hold time averaged (under mu). */
void sched_release_locked(struct cdn_sched *s, struct sbx *b);
/* How long a refused create should wait before trying again, in ms (under mu). */
uint32_t sched_retry_hint_ms(struct cdn_sched *s);
/* Hosts from the options, connected; their capacity read. */
int sched_hosts_open(struct cdn_sched *s, cdn_err **err);
void sched_hosts_close(struct cdn_sched *s);
/* Hosts that stopped answering are drained (ticker, not under mu). */
void sched_hosts_check(struct cdn_sched *s);
/* The warm pool (sched_pool.c): its thread started (none without pools), stopped and its VMs
 * destroyed. Under mu: a ready warm VM for b (its image and shape) on host, taken (its share of
 * the host released: b holds its own), or NULL; and a host with one (-1: none), where b fits
 * once it takes it even when the host has no other room. */
struct sched_pool;
int sched_pool_open(struct cdn_sched *s, cdn_err **err);
void sched_pool_close(struct cdn_sched *s);
struct cdn_warm *sched_pool_take_locked(struct cdn_sched *s, const struct sbx *b, int host);
int sched_pool_host_locked(struct cdn_sched *s, const struct sbx *b);
/* The host stopped answering (under mu): the pool's VMs there are dropped making no call to it
 * (cdn_vm_host_reap_left destroys them when it answers again). */
void sched_pool_host_lost_locked(struct cdn_sched *s, int host);
/* No warm VM was ready for b (placed, not under mu): a clone of a free template of its image on
 * its host, made now for it, or NULL (none free, cloning off, or it failed: b boots). */
struct cdn_warm *sched_pool_clone(struct cdn_sched *s, struct sbx *b);
/* b's VM failed: if its host does not answer either, the host is drained and b marked lost. */
void sched_host_suspect(struct cdn_sched *s, struct sbx *b);
/* Whether some host could ever hold b (its demand against the largest capacity). */
int sched_fits_somewhere(struct cdn_sched *s, unsigned vcpus, uint64_t memory_mib, cdn_err **err);
