/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_approval: status names, request ids, and the policy's decision as a request's parts. */
#include "approval.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>

static const char *const names[] = {"pending", "approved", "denied", "expired"};

const char *cdn_approval_status_name(enum cdn_approval_status s) {
    return (unsigned)s < 4 ? names[s] : "unknown";
}

json_t *cdn_approval_parts_json(const struct cdn_policy_decision *d) {
    json_t *parts = json_array();
    for (size_t i = 0; i < d->n; i++) {
        json_t *a = json_array();
        for (size_t j = 0; j < d->parts[i].argc; j++)
            json_array_append_new(a, json_string(d->parts[i].argv[j]));
        json_array_append_new(parts, json_pack("{s:o, s:s, s:s, s:s?}", "argv", a, "action",
                                               cdn_policy_action_name(d->parts[i].action), "rule",
                                               d->parts[i].rule, "reason", d->parts[i].reason));
    }
    return parts;
}

int cdn_approval_new_id(char id[17], cdn_err **err) {
    unsigned char rnd[8];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        return cdn_err_set(err, errno ? errno : EIO, "getrandom: %m");
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    return 0;
}
