/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_approval: what a command waiting for a person is made of: its status, its id, the
 * policy's decision as the request, the evidence and the API show it. The requests themselves
 * are cordond's (its store): `cordon approvals`, `cordon approve ID`, `cordon deny ID` and the
 * API's ListApprovals and Decide reach them. A request is decided once: the first decision
 * stands. */
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

/* A fresh request id: 16 hex digits from the kernel's random source. */
int cdn_approval_new_id(char id[17], cdn_err **err);
