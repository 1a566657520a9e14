/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_store: cordond's durable state in SQLite (WAL): sandboxes, their commands, the approvals
 * their commands wait for, and an event log. Every change that is acknowledged has been committed,
 * so after a kill -9 and a restart nothing acknowledged is lost; a state change and its event are
 * one transaction. Every read and write of a sandbox names its tenant: another tenant's sandbox
 * does not exist (-ENOENT). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "approval.h"
#include "err.h"

struct cdn_store;

/* The values match cordon.v1.SandboxState. */
enum cdn_sandbox_state {
    CDN_SANDBOX_QUEUED = 1,
    CDN_SANDBOX_BOOTING = 2,
    CDN_SANDBOX_READY = 3,
    CDN_SANDBOX_STOPPING = 4,
    CDN_SANDBOX_STOPPED = 5,
    CDN_SANDBOX_FAILED = 6,
    CDN_SANDBOX_PAUSED = 7,          /* a session's VM suspended (in memory) or saved to disk */
    CDN_SANDBOX_AWAITING_REVIEW = 8, /* its VM gone, its result waiting for a person's decision */
};
const char *cdn_sandbox_state_name(enum cdn_sandbox_state s);

int cdn_store_open(const char *path, struct cdn_store **out, cdn_err **err);
void cdn_store_close(struct cdn_store *s);
void cdn_store_closep(struct cdn_store **s);

struct cdn_store_sandbox {
    char id[17];
    char *tenant, *repo, *ref, *image, *policy, *labels_json, *error, *base, *result;
    char *spec_json;         /* what starting it needs (limits, ttl, the policy's name) */
    char *accel, *transport; /* once booted */
    char *host;              /* the libvirt URI it was placed on */
    bool retryable;          /* it failed for reasons outside it (its host was lost) */
    bool persist;            /* a session: kept past its commands, pausable, with an owner */
    char *owner;             /* who a session is for (NULL: its tenant) */
    char *paused;            /* PAUSED: "memory" or "disk" (else NULL) */
    char *review;            /* "awaiting", "approved", "rejected" (NULL: none asked) */
    char *reviewed_by, *review_comment;
    char *published; /* where an approved result went ("pushed to ...", "merged ...") */
    enum cdn_sandbox_state state;
    int64_t created_ms, expires_ms;
};
void cdn_store_sandbox_clear(struct cdn_store_sandbox *sb);

/* Inserts sb (state QUEUED, a new id written to sb->id) and its first event. */
int cdn_store_sandbox_create(struct cdn_store *s, struct cdn_store_sandbox *sb, cdn_err **err);
/* tenant NULL: any tenant's (the daemon's own lookups). */
int cdn_store_sandbox_get(struct cdn_store *s, const char *tenant, const char *id,
                          struct cdn_store_sandbox *out, cdn_err **err);
/* Moves a sandbox to `to` (error may be NULL) and logs the event; refuses moves out of a final
 * state (STOPPED, FAILED) with -EINVAL. */
int cdn_store_sandbox_set_state(struct cdn_store *s, const char *tenant, const char *id,
                                enum cdn_sandbox_state to, const char *error, cdn_err **err);
/* Calls fn for each of the tenant's sandboxes (all tenants' when tenant is NULL) whose state is
 * in states_mask (bit 1 << state; 0: any), oldest first. fn returning < 0 stops the walk. */
typedef int (*cdn_store_sandbox_fn)(void *ud, const struct cdn_store_sandbox *sb);
int cdn_store_sandbox_list(struct cdn_store *s, const char *tenant, unsigned states_mask,
                           cdn_store_sandbox_fn fn, void *ud, cdn_err **err);
int cdn_store_sandbox_delete(struct cdn_store *s, const char *tenant, const char *id,
                             cdn_err **err);

/* Sets the non-NULL ones of a sandbox's base, result, accel and transport. */
int cdn_store_sandbox_update(struct cdn_store *s, const char *id, const char *base,
                             const char *result, const char *accel, const char *transport,
                             cdn_err **err);

/* Where a sandbox runs (host NULL: unchanged), and whether its failure is the host's. */
int cdn_store_sandbox_set_host(struct cdn_store *s, const char *id, const char *host,
                               bool retryable, cdn_err **err);

/* A session's expiry moved (extend). */
int cdn_store_sandbox_set_expiry(struct cdn_store *s, const char *id, int64_t expires_ms,
                                 cdn_err **err);
/* Where a paused session's memory is ("memory", "disk"; NULL once it runs again). */
int cdn_store_sandbox_set_paused(struct cdn_store *s, const char *id, const char *where,
                                 cdn_err **err);

/* Its review: awaiting, or decided (by, comment) and where it went (NULL ones cleared). */
int cdn_store_sandbox_set_review(struct cdn_store *s, const char *id, const char *review,
                                 const char *by, const char *comment, const char *published,
                                 cdn_err **err);

/* A sandbox's commands: recorded when they start, completed with how they ended ("exited",
 * "failed", "denied", "cancelled", "timed_out"). After a restart, commands left running are
 * marked "interrupted". */
int cdn_store_command_begin(struct cdn_store *s, const char *sandbox, const char *argv_json,
                            int64_t *cmd_id, cdn_err **err);
int cdn_store_command_end(struct cdn_store *s, int64_t cmd_id, const char *state, int exit_code,
                          int signo, cdn_err **err);
int cdn_store_commands_interrupted(struct cdn_store *s, cdn_err **err);

/* fn is called (from whichever thread committed) after every committed event of tenant. */
void cdn_store_on_event(struct cdn_store *s, void (*fn)(void *ud, const char *tenant), void *ud);

struct cdn_store_event {
    uint64_t id;
    const char *sandbox_id;
    int64_t unix_ms;
    enum cdn_sandbox_state state;
    const char *message;
};
typedef int (*cdn_store_event_fn)(void *ud, const struct cdn_store_event *ev);
/* The tenant's (NULL: every tenant's) events after after_id (optionally of one sandbox), in
 * order. */
int cdn_store_events(struct cdn_store *s, const char *tenant, const char *sandbox_id,
                     uint64_t after_id, cdn_store_event_fn fn, void *ud, cdn_err **err);

/* The newest event's id (0: none yet). */
int cdn_store_last_event_id(struct cdn_store *s, uint64_t *id, cdn_err **err);

/* After a restart: sandboxes left BOOTING, READY, STOPPING or PAUSED lost their VM with the old
 * daemon; each is marked FAILED ("cordond restarted"), a session paused on disk STOPPED (its
 * result was taken when it paused), and its id passed to fn (to reap its domain).
 * QUEUED ones stay queued; approvals still pending expire (their commands are gone). Returns how
 * many sandboxes were marked. */
int cdn_store_recover(struct cdn_store *s, cdn_store_sandbox_fn fn, void *ud, cdn_err **err);

/* A command waiting for a person: the policy's decision (parts) on argv, then how it ended. The
 * first decision stands. Like sandboxes, another tenant's approval does not exist (-ENOENT). */
struct cdn_store_approval {
    char id[17], sandbox[17];
    char *tenant, *argv_json, *parts_json, *decided_by;
    enum cdn_approval_status status;
    int64_t requested_ms, decided_ms;
};
void cdn_store_approval_clear(struct cdn_store_approval *a);
/* Records a pending request (a's id, sandbox, tenant, argv_json, parts_json). */
int cdn_store_approval_add(struct cdn_store *s, const struct cdn_store_approval *a, cdn_err **err);
/* tenant NULL: any tenant's. */
int cdn_store_approval_get(struct cdn_store *s, const char *tenant, const char *id,
                           struct cdn_store_approval *out, cdn_err **err);
/* Decides a pending request (to: approved, denied or expired; by names the decider). Errors:
 * -ENOENT, -EALREADY (decided already: the message says how and by whom). */
int cdn_store_approval_decide(struct cdn_store *s, const char *tenant, const char *id,
                              enum cdn_approval_status to, const char *by, cdn_err **err);
/* The tenant's (NULL: all) requests, of one sandbox (NULL: all), oldest first; pending ones only
 * unless include_decided. fn returning < 0 stops the walk. */
typedef int (*cdn_store_approval_fn)(void *ud, const struct cdn_store_approval *a);
int cdn_store_approval_list(struct cdn_store *s, const char *tenant, const char *sandbox,
                            bool include_decided, cdn_store_approval_fn fn, void *ud,
                            cdn_err **err);
