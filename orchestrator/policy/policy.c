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
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return cdn_err_set(err, errno, "%s: %m", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return cdn_err_set(err, errno, "%s: %m", path);
    if (!S_ISREG(st.st_mode))
        return cdn_err_set(err, EINVAL, "%s: not a regular file", path);
    if (st.st_size > POL_MAX_BYTES)
        return cdn_err_set(err, EFBIG, "%s: the policy is over %u bytes", path, POL_MAX_BYTES);
    _cleanup_free_ char *data = malloc((size_t)st.st_size + 1);
    if (!data)
        return cdn_err_set(err, ENOMEM, "out of memory");
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return cdn_err_set(err, errno, "%s: %m", path);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return cdn_policy_parse(path, data, got, out, err);
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
