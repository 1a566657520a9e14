/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_policy: loading (bounded read, libyaml tree, schema) and the parsed policy's lifetime. */
#include "policy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "pol_internal.h"

const char *cdn_policy_action_name(enum cdn_policy_action a) {
    return a == CDN_POLICY_ALLOW ? "allow" : a == CDN_POLICY_APPROVE ? "approve" : "deny";
}

int cdn_policy_parse(const char *name, const char *data, size_t len, struct cdn_policy **out,
                     cdn_err **err) {
    *out = NULL;
    _cleanup_(pnode_freep) struct pnode *root = NULL;
    int r = pol_yaml_parse(name, data, len, &root, err);
    if (r < 0)
        return r;
    _cleanup_(cdn_policy_freep) struct cdn_policy *p = calloc(1, sizeof(*p));
    if (!p || !(p->name = strdup(name)))
        return cdn_err_set(err, ENOMEM, "out of memory");
    if ((r = pol_schema_apply(name, root, p, err)) < 0)
        return r; /* never a partial policy */
    *out = TAKE_PTR(p);
    return 0;
}

int cdn_policy_load(const char *path, struct cdn_policy **out, cdn_err **err) {
    _cleanup_free_ char *data = NULL;
    size_t got;
    int r = cdn_read_file(path, POL_MAX_BYTES, &data, &got, err);
    return r < 0 ? r : cdn_policy_parse(path, data, got, out, err);
}

void cdn_policy_free(struct cdn_policy *p) {
    if (!p)
        return;
    for (size_t i = 0; i < p->nrules; i++) {
        free(p->rules[i].program);
        for (size_t j = 0; j < p->rules[i].nargs; j++)
            free(p->rules[i].args[j]);
        free(p->rules[i].args);
        free(p->rules[i].reason);
    }
    free(p->rules);
    free(p->name);
    free(p);
}

void cdn_policy_freep(struct cdn_policy **p) {
    cdn_policy_free(*p);
    *p = NULL;
}

const struct cdn_policy_limits *cdn_policy_limits(const struct cdn_policy *p) { return &p->limits; }
const char *cdn_policy_name(const struct cdn_policy *p) { return p->name; }
