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
    for (size_t i = 0; i < p->nrules; i++)
        pol_rule_clear(&p->rules[i]);
    free(p->rules);
    cdn_egress_rules_free(&p->egress);
    for (size_t i = 0; i < p->nsecrets; i++) {
        struct pol_secret *sec = &p->secrets[i];
        for (size_t j = 0; j < sec->pub.n_expose; j++)
            pol_rule_clear(&sec->expose[j]);
        free(sec->expose);
        free(sec->name);
        free(sec->from);
        free(sec->env);
    }
    free(p->secrets);
    free((char *)p->review.branch);
    free((char *)p->review.remote);
    free((char *)p->review.credentials);
    for (size_t i = 0; i < p->review.n_approvers; i++)
        free((char *)p->review.approvers[i]);
    free((char **)p->review.approvers);
    free(p->name);
    free(p);
}

const struct cdn_policy_retention *cdn_policy_retention(const struct cdn_policy *p) {
    return &p->retention;
}

bool cdn_policy_preview_allowed(const struct cdn_policy *p, unsigned port) {
    for (size_t i = 0; p && i < p->n_preview_ports; i++)
        if (p->preview_ports[i] == port)
            return true;
    return false;
}

void cdn_policy_preview_ports(const struct cdn_policy *p, char *out, size_t size) {
    size_t n = p ? p->n_preview_ports : 0;
    snprintf(out, size, "%s", n ? "" : "none");
    for (size_t i = 0, len = 0; i < n && len < size; i++)
        len += (size_t)snprintf(out + len, size - len, "%s%u", i ? ", " : "", p->preview_ports[i]);
}

const struct cdn_policy_review *cdn_policy_review(const struct cdn_policy *p) { return &p->review; }

void pol_rule_clear(struct pol_rule *r) {
    free(r->program);
    for (size_t j = 0; j < r->nargs; j++)
        free(r->args[j]);
    free(r->args);
    free(r->reason);
}

const struct cdn_egress_rules *cdn_policy_egress(const struct cdn_policy *p) { return &p->egress; }

const struct cdn_policy_packages *cdn_policy_packages(const struct cdn_policy *p) {
    return &p->packages;
}

size_t cdn_policy_secret_count(const struct cdn_policy *p) { return p->nsecrets; }

const struct cdn_policy_secret *cdn_policy_secret(const struct cdn_policy *p, size_t i) {
    return i < p->nsecrets ? &p->secrets[i].pub : NULL;
}

void cdn_egress_rules_free(struct cdn_egress_rules *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].host);
        free(r->v[i].purpose);
        free(r->v[i].reason);
        free(r->v[i].where);
    }
    free(r->v);
    *r = (struct cdn_egress_rules){0};
}

static int dup_or_null(const char *s, char **out) {
    *out = s ? strdup(s) : NULL;
    return !s || *out ? 0 : -ENOMEM;
}

int cdn_egress_rules_copy(const struct cdn_egress_rules *from, struct cdn_egress_rules *to) {
    *to = (struct cdn_egress_rules){.default_allow = from->default_allow};
    if (!(to->v = calloc(from->n + 1, sizeof(*to->v))))
        return -ENOMEM;
    for (size_t i = 0; i < from->n; i++) {
        const struct cdn_egress_rule *a = &from->v[i];
        struct cdn_egress_rule *b = &to->v[i];
        *b = *a;
        b->host = b->purpose = b->reason = b->where = NULL;
        to->n++;
        if (dup_or_null(a->host, &b->host) < 0 || dup_or_null(a->purpose, &b->purpose) < 0 ||
            dup_or_null(a->reason, &b->reason) < 0 || dup_or_null(a->where, &b->where) < 0) {
            cdn_egress_rules_free(to);
            return -ENOMEM;
        }
    }
    return 0;
}

void cdn_policy_freep(struct cdn_policy **p) {
    cdn_policy_free(*p);
    *p = NULL;
}

const struct cdn_policy_limits *cdn_policy_limits(const struct cdn_policy *p) { return &p->limits; }
const char *cdn_policy_name(const struct cdn_policy *p) { return p->name; }
