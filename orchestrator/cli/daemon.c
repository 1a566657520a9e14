/* SPDX-License-Identifier: Apache-2.0 */
/* cordond's parts put together (its configuration: daemon_config.c): the store, the
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
                                .max_queued_total = c->max_queued_total,
                                .tenant_max_running = c->tenant_max_running,
                                .tenants = c->tenants,
                                .n_tenants = c->n_tenants,
                                .hosts = c->hosts,
                                .n_hosts = c->n_hosts,
                                .pools = c->pools,
                                .n_pools = c->n_pools,
                                .warm_no_clone = c->warm_no_clone,
                                .cpu_overcommit = c->cpu_overcommit,
                                .memory_reserve_mib = c->memory_reserve_mib,
                                .host_check_ms = (int64_t)c->host_check_s * 1000,
                                .boot_timeout_ms = (int)c->boot_timeout_s * 1000,
                                .default_ttl_s = c->default_ttl_s,
                                .max_ttl_s = c->max_ttl_s,
                                .session_max_ttl_s = c->session_max_ttl_s,
                                .pause_to_disk_s = c->pause_to_disk_s,
                                .process_log_bytes = (uint64_t)c->process_log_mib << 20,
                                .no_review_gate = c->no_review_gate,
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
