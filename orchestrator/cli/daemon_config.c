/* SPDX-License-Identifier: Apache-2.0 */
/* cordond's configuration: defaults, then a YAML file (errors name FILE:LINE:COL), then flags. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "daemon.h"
#include "fsutil.h"
#include "pol_yaml.h"
#include "policy.h"

#define MAX_HOSTS 16
#define MAX_TENANTS 4096

void cli_daemon_config_defaults(struct cli_daemon_config *c) {
    *c = (struct cli_daemon_config){.socket = "/run/cordon/cordond.sock",
                                    .socket_mode = 0660,
                                    .state_dir = cli_default_state(),
                                    .images_dir = cli_default_images(),
                                    .policies_dir = access("/etc/cordon/policies", R_OK) == 0
                                                        ? "/etc/cordon/policies"
                                                        : "policies",
                                    .default_policy = "default-deny",
                                    .accel = "auto",
                                    .max_running = 4,
                                    .max_queued = 1000,
                                    .boot_timeout_s = 60,
                                    .default_ttl_s = 3600,
                                    .max_ttl_s = 86400,
                                    .session_max_ttl_s = 7 * 86400,
                                    .pause_to_disk_s = 600,
                                    .process_log_mib = 8,
                                    .approval_timeout_s = 3600};
}

static int as_uint(const char *file, const struct pnode *v, const char *key, unsigned max,
                   unsigned *out, cdn_err **err) {
    char *end;
    errno = 0;
    unsigned long n = v->type == PN_SCALAR && v->plain ? strtoul(v->scalar, &end, 0) : 0;
    if (v->type != PN_SCALAR || !v->plain || !*v->scalar || *end || errno || n > max)
        return cdn_err_set(err, EINVAL, "%s:%u:%u: %s must be a number from 0 to %u", file, v->line,
                           v->col, key, max);
    *out = (unsigned)n;
    return 0;
}

static void free_tenants(struct cli_daemon_config *c) {
    for (size_t i = 0; c->own_tenants && i < c->n_tenants; i++)
        free((char *)c->own_tenants[i].name);
    free(c->own_tenants);
    c->own_tenants = NULL;
    c->tenants = NULL;
    c->n_tenants = 0;
}

static void free_hosts(struct cli_daemon_config *c) {
    for (size_t i = 0; c->own_hosts && i < c->n_hosts; i++)
        free((char *)c->own_hosts[i].uri);
    free(c->own_hosts);
    c->own_hosts = NULL;
    c->hosts = NULL;
    c->n_hosts = 0;
}

static void free_pools(struct cli_daemon_config *c) {
    for (size_t i = 0; c->own_pools && i < c->n_pools; i++)
        free((char *)c->own_pools[i].image);
    free(c->own_pools);
    c->own_pools = NULL;
    c->pools = NULL;
    c->n_pools = 0;
}

void cli_daemon_config_release(struct cli_daemon_config *c) {
    free_hosts(c);
    free_tenants(c);
    free_pools(c);
}

/* warm_pool: {minimal: 2, devbox: 1} */
static int load_pools(struct cli_daemon_config *c, const char *path, const struct pnode *v,
                      cdn_err **err) {
    if (v->type != PN_MAP || v->n / 2 > 2)
        return cdn_err_set(err, EINVAL, "%s:%u:%u: warm_pool is a map of images to counts", path,
                           v->line, v->col);
    free_pools(c);
    struct cdn_sched_pool *p = calloc(v->n / 2 + 1, sizeof(*p));
    if (!p)
        return cdn_err_set(err, ENOMEM, "out of memory");
    c->pools = c->own_pools = p;
    c->n_pools = v->n / 2;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const struct pnode *k = v->kids[i];
        if (strcmp(k->scalar, "minimal") != 0 && strcmp(k->scalar, "devbox") != 0)
            return cdn_err_set(err, EINVAL, "%s:%u:%u: no image '%s' (minimal, devbox)", path,
                               k->line, k->col, k->scalar);
        if (!(p[i / 2].image = strdup(k->scalar)))
            return cdn_err_set(err, ENOMEM, "out of memory");
        int r = as_uint(path, v->kids[i + 1], k->scalar, 64, &p[i / 2].size, err);
        if (r < 0)
            return r;
    }
    return 0;
}

/* hosts: [{uri: qemu:///system, weight: 2}, ...] */
static int load_hosts(struct cli_daemon_config *c, const char *path, const struct pnode *v,
                      cdn_err **err) {
    if (v->type != PN_SEQ || !v->n || v->n > MAX_HOSTS)
        return cdn_err_set(err, EINVAL, "%s:%u:%u: hosts is a list of 1 to %d hosts", path, v->line,
                           v->col, MAX_HOSTS);
    struct cdn_sched_host *h = calloc(v->n, sizeof(*h));
    if (!h)
        return cdn_err_set(err, ENOMEM, "out of memory");
    free_hosts(c); /* a second file's list replaces the first's */
    c->hosts = c->own_hosts = h;
    c->n_hosts = v->n;
    for (size_t i = 0; i < v->n; i++) {
        const struct pnode *e = v->kids[i];
        if (e->type != PN_MAP)
            return cdn_err_set(err, EINVAL, "%s:%u:%u: a host is a map {uri, weight}", path,
                               e->line, e->col);
        for (size_t j = 0; j + 1 < e->n; j += 2) {
            const struct pnode *k = e->kids[j], *val = e->kids[j + 1];
            int r;
            if (strcmp(k->scalar, "uri") == 0) {
                if (val->type != PN_SCALAR || !*val->scalar || strlen(val->scalar) > 1024)
                    return cdn_err_set(err, EINVAL, "%s:%u:%u: uri must be a libvirt URI", path,
                                       val->line, val->col);
                if (!(h[i].uri = strdup(val->scalar)))
                    return cdn_err_set(err, ENOMEM, "out of memory");
            } else if (strcmp(k->scalar, "weight") == 0) {
                if ((r = as_uint(path, val, "weight", 1000, &h[i].weight, err)) < 0)
                    return r;
            } else {
                return cdn_err_set(err, EINVAL, "%s:%u:%u: unknown host setting '%s' (uri, weight)",
                                   path, k->line, k->col, k->scalar);
            }
        }
        if (!h[i].uri)
            return cdn_err_set(err, EINVAL, "%s:%u:%u: this host has no uri", path, e->line,
                               e->col);
        for (size_t j = 0; j < i; j++)
            if (strcmp(h[j].uri, h[i].uri) == 0)
                return cdn_err_set(err, EINVAL, "%s:%u:%u: host %s is listed twice", path, e->line,
                                   e->col, h[i].uri);
    }
    return 0;
}

/* tenants: {NAME: {max_running, max_queued, weight}, ...} */
static int load_tenants(struct cli_daemon_config *c, const char *path, const struct pnode *v,
                        cdn_err **err) {
    if (v->type != PN_MAP || v->n / 2 > MAX_TENANTS)
        return cdn_err_set(err, EINVAL, "%s:%u:%u: tenants is a map of at most %d tenants", path,
                           v->line, v->col, MAX_TENANTS);
    struct cdn_sched_tenant *t = calloc(v->n / 2 + 1, sizeof(*t));
    if (!t)
        return cdn_err_set(err, ENOMEM, "out of memory");
    free_tenants(c);
    c->tenants = c->own_tenants = t;
    c->n_tenants = v->n / 2;
    for (size_t i = 0; i + 1 < v->n; i += 2) {
        const struct pnode *name = v->kids[i], *q = v->kids[i + 1];
        struct cdn_sched_tenant *one = &t[i / 2];
        if (!*name->scalar || strlen(name->scalar) > 255)
            return cdn_err_set(err, EINVAL, "%s:%u:%u: a tenant's name is 1 to 255 bytes", path,
                               name->line, name->col);
        if (!(one->name = strdup(name->scalar)))
            return cdn_err_set(err, ENOMEM, "out of memory");
        if (q->type != PN_MAP)
            return cdn_err_set(err, EINVAL,
                               "%s:%u:%u: tenant %s is a map {max_running, max_queued, weight}",
                               path, q->line, q->col, name->scalar);
        for (size_t j = 0; j + 1 < q->n; j += 2) {
            const struct pnode *k = q->kids[j], *val = q->kids[j + 1];
            unsigned *dst = strcmp(k->scalar, "max_running") == 0  ? &one->max_running
                            : strcmp(k->scalar, "max_queued") == 0 ? &one->max_queued
                            : strcmp(k->scalar, "weight") == 0     ? &one->weight
                                                                   : NULL;
            if (!dst)
                return cdn_err_set(err, EINVAL,
                                   "%s:%u:%u: unknown tenant setting '%s' (max_running, "
                                   "max_queued, weight)",
                                   path, k->line, k->col, k->scalar);
            int r = as_uint(path, val, k->scalar, 1000000, dst, err);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

int cli_daemon_config_load(struct cli_daemon_config *c, const char *path, cdn_err **err) {
    _cleanup_free_ char *buf = NULL;
    size_t n;
    int r = cdn_read_file(path, CDN_POLICY_MAX_BYTES, &buf, &n, err);
    if (r < 0)
        return r;
    _cleanup_(pnode_freep) struct pnode *root = NULL;
    r = pol_yaml_parse(path, buf, n, &root, err);
    if (r < 0)
        return r;
    if (!root)
        return 0; /* an empty file: the defaults */
    if (root->type != PN_MAP)
        return cdn_err_set(err, EINVAL, "%s:%u:%u: the configuration is a map of settings", path,
                           root->line, root->col);
    static const struct {
        const char *key;
        size_t str_off; /* offsetof a const char * field, or SIZE_MAX */
        size_t num_off; /* offsetof an unsigned field, or SIZE_MAX */
        unsigned max;
    } keys[] = {
#define S(k, f) {k, offsetof(struct cli_daemon_config, f), SIZE_MAX, 0}
#define N(k, f, m)                                                                                 \
    { k, SIZE_MAX, offsetof(struct cli_daemon_config, f), m }
        S("socket", socket),
        N("socket_mode", socket_mode, 0777),
        S("listen", listen),
        S("tls_cert", tls_cert),
        S("tls_key", tls_key),
        S("tls_client_ca", tls_client_ca),
        S("state_dir", state_dir),
        S("images_dir", images_dir),
        S("policies_dir", policies_dir),
        S("default_policy", default_policy),
        S("accel", accel),
        S("libvirt_uri", uri),
        N("max_running", max_running, 1024),
        N("max_queued", max_queued, 1000000),
        N("max_queued_total", max_queued_total, 10000000),
        N("tenant_max_running", tenant_max_running, 1024),
        N("cpu_overcommit", cpu_overcommit, 64),
        N("memory_reserve_mib", memory_reserve_mib, 1u << 30),
        N("host_check_seconds", host_check_s, 3600),
        N("boot_timeout_seconds", boot_timeout_s, 3600),
        N("default_ttl_seconds", default_ttl_s, 30 * 86400),
        N("max_ttl_seconds", max_ttl_s, 30 * 86400),
        N("session_max_ttl_seconds", session_max_ttl_s, 365 * 86400),
        N("pause_to_disk_after_seconds", pause_to_disk_s, 30 * 86400),
        N("process_log_mib", process_log_mib, 4096),
        N("approval_timeout_seconds", approval_timeout_s, 30 * 86400),
#undef S
#undef N
    };
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        const struct pnode *k = root->kids[i], *v = root->kids[i + 1];
        if (strcmp(k->scalar, "hosts") == 0) {
            if ((r = load_hosts(c, path, v, err)) < 0)
                return r;
            continue;
        }
        if (strcmp(k->scalar, "warm_pool") == 0) {
            if ((r = load_pools(c, path, v, err)) < 0)
                return r;
            continue;
        }
        if (strcmp(k->scalar, "warm_clone") == 0) {
            bool never = v->type == PN_SCALAR && strcmp(v->scalar, "never") == 0;
            if (!never && !(v->type == PN_SCALAR && strcmp(v->scalar, "auto") == 0))
                return cdn_err_set(err, EINVAL, "%s:%u:%u: warm_clone is auto or never", path,
                                   v->line, v->col);
            c->warm_no_clone = never;
            continue;
        }
        if (strcmp(k->scalar, "tenants") == 0) {
            if ((r = load_tenants(c, path, v, err)) < 0)
                return r;
            continue;
        }
        size_t j = 0;
        while (j < sizeof(keys) / sizeof(keys[0]) && strcmp(keys[j].key, k->scalar) != 0)
            j++;
        if (j == sizeof(keys) / sizeof(keys[0]))
            return cdn_err_set(err, EINVAL, "%s:%u:%u: unknown setting '%s'", path, k->line, k->col,
                               k->scalar);
        if (keys[j].num_off != SIZE_MAX) {
            if ((r = as_uint(path, v, k->scalar, keys[j].max,
                             (unsigned *)((char *)c + keys[j].num_off), err)) < 0)
                return r;
            continue;
        }
        if (v->type != PN_SCALAR)
            return cdn_err_set(err, EINVAL, "%s:%u:%u: %s must be a string", path, v->line, v->col,
                               k->scalar);
        /* The strings live as long as the process: the configuration is read once. */
        char *val = strdup(v->scalar);
        if (!val)
            return cdn_err_set(err, ENOMEM, "out of memory");
        *(const char **)((char *)c + keys[j].str_off) = val;
    }
    return 0;
}
