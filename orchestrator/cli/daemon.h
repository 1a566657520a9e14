/* SPDX-License-Identifier: Apache-2.0 */
/* cordond as a part: started by the cordond binary, and embedded in `cordon run` (on a private
 * socket and store) when it is given no daemon's address. */
#pragma once

#include "cli.h"
#include "err.h"
#include "scheduler.h"

struct cli_daemon_config {
    const char *socket; /* unix socket (NULL: none) */
    unsigned socket_mode;
    const char *listen; /* host:port for TLS (NULL: none) */
    const char *tls_cert, *tls_key, *tls_client_ca;
    const char *state_dir, *images_dir, *policies_dir, *default_policy, *accel, *uri;
    unsigned max_running, max_queued, boot_timeout_s, default_ttl_s, max_ttl_s, approval_timeout_s;
    unsigned max_queued_total, tenant_max_running, cpu_overcommit, memory_reserve_mib, host_check_s;
    unsigned session_max_ttl_s, pause_to_disk_s; /* sessions (persist) */
    unsigned process_log_mib;                    /* a background process's output ring */
    bool no_review_gate;                /* `cordon run`'s own daemon: results never await review */
    const struct cdn_sched_host *hosts; /* none: one, uri */
    size_t n_hosts;
    const struct cdn_sched_tenant *tenants;
    size_t n_tenants;
    struct cdn_sched_host *own_hosts; /* what the file's lists allocated */
    struct cdn_sched_tenant *own_tenants;
    const struct cdn_sched_pool *pools; /* warm_pool */
    size_t n_pools;
    struct cdn_sched_pool *own_pools;
    bool warm_no_clone;                      /* warm_clone: never */
    const char *db;                          /* the store (NULL: STATE/cordond.db) */
    void (*log)(void *ud, const char *line); /* NULL: cli_daemon_log */
};

void cli_daemon_config_defaults(struct cli_daemon_config *c);
/* Settings from a YAML file over c; errors name FILE:LINE:COL. */
int cli_daemon_config_load(struct cli_daemon_config *c, const char *path, cdn_err **err);

/* Frees what loading allocated for its lists. */
void cli_daemon_config_release(struct cli_daemon_config *c);

struct cli_daemon;
int cli_daemon_start(const struct cli_daemon_config *c, struct cli_daemon **out, cdn_err **err);
void cli_daemon_stop(struct cli_daemon *d);
void cli_daemon_stopp(struct cli_daemon **d);
void cli_daemon_log(void *ud, const char *line);
