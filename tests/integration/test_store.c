/* SPDX-License-Identifier: Apache-2.0 */
/* cordond's store on a real SQLite file: tenants see only their own sandboxes, state changes
 * and their events are one, final states stay final, acknowledged writes survive a kill -9 of
 * the writer, and a restart marks sandboxes whose VM died with the old daemon as failed. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "store.h"
#include "test.h"

static int count_cb(void *ud, const struct cdn_store_sandbox *sb) {
    (void)sb;
    (*(int *)ud)++;
    return 0;
}

struct evlog {
    int n;
    enum cdn_sandbox_state last;
};
static int event_cb(void *ud, const struct cdn_store_event *ev) {
    struct evlog *l = ud;
    l->n++;
    l->last = ev->state;
    return 0;
}

TEST(tenants_states_and_events) {
    _cleanup_free_ char *dir = th_tmpdir();
    char path[4300];
    snprintf(path, sizeof(path), "%s/cordon.db", dir);
    struct cdn_store *s = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_store_open(path, &s, &err), err);
    struct cdn_store_sandbox a = {.tenant = "uid:1000", .repo = "/r", .image = "minimal"};
    struct cdn_store_sandbox b = {.tenant = "uid:1001", .image = "devbox"};
    ASSERT_OK(cdn_store_sandbox_create(s, &a, &err), err);
    ASSERT_OK(cdn_store_sandbox_create(s, &b, &err), err);
    struct cdn_store_sandbox got;
    ASSERT_OK(cdn_store_sandbox_get(s, "uid:1000", a.id, &got, &err), err);
    ASSERT_STREQ(got.repo, "/r");
    ASSERT_EQ(got.state, CDN_SANDBOX_QUEUED);
    cdn_store_sandbox_clear(&got);
    /* another tenant's sandbox does not exist for you */
    ASSERT_FAILS(cdn_store_sandbox_get(s, "uid:1001", a.id, &got, &err), err, "no sandbox");
    ASSERT_EQ(cdn_err_code(err), ENOENT);
    cdn_err_free(err);
    err = NULL;
    ASSERT_FAILS(cdn_store_sandbox_set_state(s, "uid:1001", a.id, CDN_SANDBOX_READY, NULL, &err),
                 err, "no sandbox");
    cdn_err_free(err);
    err = NULL;
    int n = 0;
    ASSERT_OK(cdn_store_sandbox_list(s, "uid:1000", 0, count_cb, &n, &err), err);
    ASSERT_EQ(n, 1);
    ASSERT_OK(cdn_store_sandbox_set_state(s, "uid:1000", a.id, CDN_SANDBOX_BOOTING, NULL, &err),
              err);
    ASSERT_OK(cdn_store_sandbox_set_state(s, "uid:1000", a.id, CDN_SANDBOX_READY, NULL, &err), err);
    ASSERT_OK(cdn_store_sandbox_set_state(s, "uid:1000", a.id, CDN_SANDBOX_STOPPED, NULL, &err),
              err);
    ASSERT_FAILS(cdn_store_sandbox_set_state(s, "uid:1000", a.id, CDN_SANDBOX_READY, NULL, &err),
                 err, "is stopped already");
    cdn_err_free(err);
    err = NULL;
    struct evlog l = {0};
    ASSERT_OK(cdn_store_events(s, "uid:1000", NULL, 0, event_cb, &l, &err), err);
    ASSERT_EQ(l.n, 4); /* created, booting, ready, stopped: the refused move logged nothing */
    ASSERT_EQ(l.last, CDN_SANDBOX_STOPPED);
    l = (struct evlog){0};
    ASSERT_OK(cdn_store_events(s, "uid:1001", NULL, 0, event_cb, &l, &err), err);
    ASSERT_EQ(l.n, 1);
    n = 0;
    ASSERT_OK(cdn_store_sandbox_list(s, NULL, 1u << CDN_SANDBOX_QUEUED, count_cb, &n, &err), err);
    ASSERT_EQ(n, 1);
    ASSERT_FAILS(cdn_store_sandbox_delete(s, "uid:1001", a.id, &err), err, "no sandbox");
    cdn_err_free(err);
    err = NULL;
    ASSERT_OK(cdn_store_sandbox_delete(s, "uid:1000", a.id, &err), err);
    cdn_store_close(s);
    th_rmtree(dir);
}

TEST_T(acknowledged_writes_survive_kill_9_and_a_restart_fails_lost_vms, 120) {
    _cleanup_free_ char *dir = th_tmpdir();
    char path[4300];
    snprintf(path, sizeof(path), "%s/cordon.db", dir);
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) { /* a writer acknowledging each sandbox once its create returned */
        close(p[0]);
        struct cdn_store *s = NULL;
        cdn_err *err = NULL;
        if (cdn_store_open(path, &s, &err) < 0)
            _exit(2);
        for (int i = 0;; i++) {
            struct cdn_store_sandbox sb = {.tenant = "uid:7", .image = "minimal"};
            if (cdn_store_sandbox_create(s, &sb, &err) < 0)
                _exit(3);
            if (i % 3 == 1)
                cdn_store_sandbox_set_state(s, "uid:7", sb.id, CDN_SANDBOX_READY, NULL, NULL);
            if (write(p[1], sb.id, 16) != 16)
                _exit(4);
        }
    }
    close(p[1]);
    char ids[200][17];
    int acked = 0;
    while (acked < 200 && read(p[0], ids[acked], 16) == 16)
        ids[acked++][16] = '\0';
    kill(pid, SIGKILL); /* mid-write, most likely */
    waitpid(pid, NULL, 0);
    close(p[0]);
    ASSERT_EQ(acked, 200);
    struct cdn_store *s = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_store_open(path, &s, &err), err);
    for (int i = 0; i < acked; i++) {
        struct cdn_store_sandbox got;
        ASSERT_OK(cdn_store_sandbox_get(s, "uid:7", ids[i], &got, &err), err);
        cdn_store_sandbox_clear(&got);
    }
    /* the restart: READY ones lost their VM and are failed; queued ones wait */
    int reaped = 0;
    int marked = cdn_store_recover(s, count_cb, &reaped, &err);
    ASSERT_OK(marked, err);
    ASSERT_TRUE(marked >= 66);
    ASSERT_EQ(reaped, marked);
    int ready = 0, queued = 0, failed = 0;
    ASSERT_OK(cdn_store_sandbox_list(s, "uid:7", 1u << CDN_SANDBOX_READY, count_cb, &ready, &err),
              err);
    ASSERT_OK(cdn_store_sandbox_list(s, "uid:7", 1u << CDN_SANDBOX_QUEUED, count_cb, &queued, &err),
              err);
    ASSERT_OK(cdn_store_sandbox_list(s, "uid:7", 1u << CDN_SANDBOX_FAILED, count_cb, &failed, &err),
              err);
    ASSERT_EQ(ready, 0);
    ASSERT_EQ(failed, marked);
    ASSERT_TRUE(queued >= 133);
    struct cdn_store_sandbox got;
    ASSERT_OK(cdn_store_sandbox_get(s, "uid:7", ids[1], &got, &err), err);
    ASSERT_EQ(got.state, CDN_SANDBOX_FAILED);
    ASSERT_CONTAINS(got.error, "cordond restarted");
    cdn_store_sandbox_clear(&got);
    cdn_store_close(s);
    th_rmtree(dir);
}
