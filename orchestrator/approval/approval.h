/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_approval: commands waiting for a person. A task whose command the policy sends to
 * approval writes a request to STATE/approvals/<id>.json; anyone with access to the state folder
 * can list the pending ones and decide (`cordon approvals`, `cordon approve ID`, `cordon deny
 * ID`; later the daemon's API). A request is decided once: the first decision stands. Files are
 * replaced atomically under a lock, so concurrent deciders cannot both win. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "err.h"
#include "policy.h"

enum cdn_approval_status {
    CDN_APPROVAL_PENDING,
    CDN_APPROVAL_APPROVED,
    CDN_APPROVAL_DENIED,
    CDN_APPROVAL_EXPIRED, /* nobody decided in time: treated as denied */
};
const char *cdn_approval_status_name(enum cdn_approval_status s);

/* A decision's parts as JSON (argv, action, rule, reason): as requests and the evidence show
 * them. Caller decrefs. */
json_t *cdn_approval_parts_json(const struct cdn_policy_decision *d);

/* Writes a pending request for task's argv with the policy's decision; *id gets its id. */
int cdn_approval_request(const char *state_dir, const char *task, const char *const *argv,
                         size_t argc, const struct cdn_policy_decision *d, char id[17],
                         cdn_err **err);
/* The request's current status, and who decided it (caller frees *by, NULL while pending). */
int cdn_approval_get(const char *state_dir, const char *id, enum cdn_approval_status *st, char **by,
                     cdn_err **err);
/* The request as stored (id, task, argv, parts, status, requested, decided_by, decided); caller
 * decrefs. -ENOENT when there is none. */
int cdn_approval_load(const char *state_dir, const char *id, json_t **out, cdn_err **err);
/* Decides a pending request (approved or denied, by `by`); fails naming the current status
 * if it was already decided. */
int cdn_approval_decide(const char *state_dir, const char *id, enum cdn_approval_status to,
                        const char *by, cdn_err **err);
/* The requests, oldest first (only pending ones unless all); caller decrefs. */
int cdn_approval_list(const char *state_dir, bool all, json_t **out, cdn_err **err);
/* "user@host (tty)" for the person running this process. */
void cdn_approval_whoami(char *out, size_t size);
