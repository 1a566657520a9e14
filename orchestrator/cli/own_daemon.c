/* SPDX-License-Identifier: Apache-2.0 */
/* A client process's own cordond (own_daemon.h). */
#include "own_daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "task_gc.h"

static void quiet(void *ud, const char *line) { (void)ud, (void)line; }

int cli_own_daemon_start(const struct cli_own_daemon_opts *o, struct cli_own_daemon *od,
                         cdn_err **err) {
    struct cli_daemon_config c;
    cli_daemon_config_defaults(&c);
    if (o->state)
        c.state_dir = o->state;
    if (o->images)
        c.images_dir = o->images;
    c.uri = o->uri;
    if (o->accel)
        c.accel = o->accel;
    c.default_policy = o->default_policy;
    c.max_running = 1;
    c.boot_timeout_s = o->boot_timeout_s ? o->boot_timeout_s : 60;
    c.default_ttl_s = c.max_ttl_s = 30 * 86400; /* the client's own timeouts bound it */
    c.no_review_gate = true; /* its store goes with the process: its user is the reviewer */
    if (o->approval_timeout_s)
        c.approval_timeout_s = o->approval_timeout_s;
    c.log = quiet; /* what matters comes back through the calls */
    char runs[4096];
    snprintf(runs, sizeof(runs), "%s/runs", c.state_dir);
    if ((mkdir(c.state_dir, 0711) < 0 && errno != EEXIST) ||
        (mkdir(runs, 0700) < 0 && errno != EEXIST))
        return cdn_err_set(err, errno, "mkdir %s: %m", runs);
    snprintf(od->dir, sizeof(od->dir), "%s/XXXXXX", runs);
    if (!mkdtemp(od->dir))
        return cdn_err_set(err, errno, "mkdtemp %s: %m", od->dir);
    snprintf(od->sock_dir, sizeof(od->sock_dir), "%s", od->dir);
    if (strlen(od->dir) + strlen("/cordond.sock") >= 100) { /* a unix socket's path is short */
        snprintf(od->sock_dir, sizeof(od->sock_dir), "/tmp/cordon-run-XXXXXX");
        if (!mkdtemp(od->sock_dir))
            return cdn_err_set(err, errno, "mkdtemp %s: %m", od->sock_dir);
    }
    char sock[4300], db[4300], addr_file[4300];
    snprintf(sock, sizeof(sock), "%s/cordond.sock", od->sock_dir);
    snprintf(db, sizeof(db), "%s/cordond.db", od->dir);
    snprintf(od->addr, sizeof(od->addr), "unix:%s", sock);
    c.socket = sock;
    c.socket_mode = 0600;
    c.db = db;
    int r = cli_daemon_start(&c, &od->d, err);
    if (r < 0)
        return r;
    if ((r = cdn_task_owner_write(od->dir, err)) < 0) /* for `cordon gc`, should it be killed */
        return r;
    snprintf(addr_file, sizeof(addr_file), "%s/addr", od->dir);
    _cleanup_fclose_ FILE *f = fopen(addr_file, "we");
    if (!f || fprintf(f, "%s\n", od->addr) < 0)
        return cdn_err_set(err, errno, "writing %s: %m", addr_file);
    return 0;
}

void cli_own_daemon_stop(struct cli_own_daemon *od) {
    cli_daemon_stopp(&od->d);
    if (!od->dir[0])
        return;
    static const char *const files[] = {"addr", "cordond.sock", "cordond.db", "cordond.db-wal",
                                        "cordond.db-shm"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char p[4400];
        snprintf(p, sizeof(p), "%s/%s", i == 1 ? od->sock_dir : od->dir, files[i]);
        unlink(p);
    }
    if (strcmp(od->sock_dir, od->dir) != 0)
        rmdir(od->sock_dir);
    cdn_task_owner_clear(od->dir); /* the mark, then the folder */
}
