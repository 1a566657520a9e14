/* SPDX-License-Identifier: Apache-2.0 */
/* cordond's parts put together: its configuration (a YAML file, then flags), the store, the
 * scheduler and the API, started in that order and stopped in the reverse one (the API drained
 * first, so no new work arrives while the sandboxes stop). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cleanup.h"
#include "fsutil.h"
#include "daemon.h"
#include "pol_yaml.h"
#include "scheduler.h"
#include "store.h"

struct cli_daemon {
    struct cdn_store *store;
    struct cdn_sched *sched;
    struct cdn_api *api;
};

void cli_daemon_log(void *ud, const char *line) {
    (void)ud;
    char at[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    fprintf(stderr, "%s cordond: %s\n", at, line);
}

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
        N("boot_timeout_seconds", boot_timeout_s, 3600),
        N("default_ttl_seconds", default_ttl_s, 30 * 86400),
        N("max_ttl_seconds", max_ttl_s, 30 * 86400),
        N("approval_timeout_seconds", approval_timeout_s, 30 * 86400),
#undef S
#undef N
    };
    for (size_t i = 0; i + 1 < root->n; i += 2) {
        const struct pnode *k = root->kids[i], *v = root->kids[i + 1];
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

static int mkdir_parent(const char *path) {
    _cleanup_free_ char *dir = strdup(path);
    if (!dir)
        return -ENOMEM;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    return mkdir(dir, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

int cli_daemon_start(const struct cli_daemon_config *c, struct cli_daemon **out, cdn_err **err) {
    _cleanup_(cli_daemon_stopp) struct cli_daemon *d = calloc(1, sizeof(*d));
    if (!d)
        return cdn_err_set(err, ENOMEM, "out of memory");
    if (mkdir(c->state_dir, 0711) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", c->state_dir);
    _cleanup_free_ char *db = c->db ? strdup(c->db) : NULL;
    if (!db && asprintf(&db, "%s/cordond.db", c->state_dir) < 0)
        db = NULL;
    if (!db)
        return cdn_err_set(err, ENOMEM, "out of memory");
    void (*log)(void *, const char *) = c->log ? c->log : cli_daemon_log;
    int r = cdn_store_open(db, &d->store, err);
    if (r < 0)
        return r;
    struct cdn_sched_opts so = {.state_dir = c->state_dir,
                                .images_dir = c->images_dir,
                                .policies_dir = c->policies_dir,
                                .default_policy = c->default_policy,
                                .uri = c->uri,
                                .accel = c->accel,
                                .store = d->store,
                                .max_running = c->max_running,
                                .max_queued = c->max_queued,
                                .boot_timeout_ms = (int)c->boot_timeout_s * 1000,
                                .default_ttl_s = c->default_ttl_s,
                                .max_ttl_s = c->max_ttl_s,
                                .approval_timeout_s = c->approval_timeout_s,
                                .log = log};
    if ((r = cdn_sched_open(&so, &d->sched, err)) < 0)
        return r;
    if (c->socket && mkdir_parent(c->socket) < 0)
        return cdn_err_set(err, errno, "creating the folder of %s: %m", c->socket);
    struct cdn_api_opts ao = {.unix_path = c->socket,
                              .socket_mode = c->socket_mode,
                              .tcp_addr = c->listen,
                              .tls_cert = c->tls_cert,
                              .tls_key = c->tls_key,
                              .tls_client_ca = c->tls_client_ca,
                              .sched = d->sched,
                              .store = d->store,
                              .log = log};
    if ((r = cdn_api_start(&ao, &d->api, err)) < 0)
        return r;
    *out = TAKE_PTR(d);
    return 0;
}

void cli_daemon_stop(struct cli_daemon *d) {
    if (!d)
        return;
    cdn_api_drain(d->api);
    cdn_sched_freep(&d->sched);
    cdn_api_stopp(&d->api);
    cdn_store_closep(&d->store);
    free(d);
}

void cli_daemon_stopp(struct cli_daemon **d) {
    cli_daemon_stop(*d);
    *d = NULL;
}
