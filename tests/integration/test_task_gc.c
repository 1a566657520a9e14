/* SPDX-License-Identifier: Apache-2.0 */
/* The sweep for dead tasks against tasks being set up, and the policies' retention: a folder whose
 * owner mark is being written while another sandbox's boot sweeps is never taken for a dead task's
 * (the mark is written aside and renamed in). Fails on a mark written in place, where a sweep can
 * read it empty. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "task_gc.h"
#include "test.h"

struct sweeper {
    const char *state;
    atomic_bool stop;
    unsigned swept;
};

static void *sweep(void *arg) {
    struct sweeper *sw = arg;
    while (!atomic_load(&sw->stop)) {
        struct cdn_task_gc_report rep;
        cdn_err *err = NULL;
        if (cdn_task_gc(sw->state, NULL, &rep, &err) < 0)
            cdn_err_free(err);
        sw->swept += rep.tasks;
    }
    return NULL;
}

TEST_T(a_task_being_set_up_is_never_swept, 120) {
    _cleanup_free_ char *state = th_tmpdir();
    char tasks[4300];
    snprintf(tasks, sizeof(tasks), "%s/tasks", state);
    ASSERT_EQ(mkdir(tasks, 0711), 0);
    struct sweeper sw = {.state = state};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, sweep, &sw), 0);
    unsigned lost = 0;
    for (int i = 0; i < 2000; i++) {
        char dir[4400], ev[4500];
        snprintf(dir, sizeof(dir), "%s/%016x", tasks, i);
        ASSERT_EQ(mkdir(dir, 0711), 0);
        cdn_err *err = NULL;
        ASSERT_OK(cdn_task_owner_write(dir, &err), err);
        snprintf(ev, sizeof(ev), "%s/evidence", dir);
        if (mkdir(ev, 0755) < 0 && errno == ENOENT)
            lost++; /* the folder was swept away under the task */
        else
            rmdir(ev);
        cdn_task_owner_clear(dir);
    }
    atomic_store(&sw.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    ASSERT_EQ(lost, 0);
    ASSERT_EQ(sw.swept, 0); /* every owner was alive: nothing is a dead task */
    th_rmtree(state);
}

/* A finished task's folder: its manifest (text) written days_old days ago, a worktree, and a live
 * owner mark (ours) when owned. */
static void task(const char *state, const char *id, const char *manifest, int days_old,
                 bool owned) {
    char dir[4400], path[4500];
    snprintf(dir, sizeof(dir), "%s/tasks/%s", state, id);
    th_sh("mkdir -p %s/evidence %s/workspace && echo x > %s/workspace/README", dir, dir, dir);
    snprintf(path, sizeof(path), "%s/evidence/manifest.json", dir);
    th_write_file(path, manifest, 0644);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= (time_t)days_old * 86400;
    t[1] = t[0];
    ASSERT_EQ(utimensat(AT_FDCWD, path, t, 0), 0);
    if (owned) {
        cdn_err *err = NULL;
        ASSERT_OK(cdn_task_owner_write(dir, &err), err);
    }
}

static bool exists(const char *state, const char *id, const char *sub) {
    char path[4500];
    snprintf(path, sizeof(path), "%s/tasks/%s%s", state, id, sub);
    return access(path, F_OK) == 0;
}

TEST(retention_removes_worktrees_and_folders_past_their_days_only) {
    _cleanup_free_ char *state = th_tmpdir();
    task(state, "00000000000000a1", "{\"retention_evidence_days\": 30}", 31, false);
    task(state, "00000000000000a2",
         "{\"retention_evidence_days\": 30, \"retention_workspace_days\": 0}", 0, false);
    task(state, "00000000000000a3",
         "{\"retention_evidence_days\": 1, \"retention_workspace_days\": 0, \"review\": "
         "\"awaiting\"}",
         10, false);
    task(state, "00000000000000a4", "{}", 900, false);                             /* none */
    task(state, "00000000000000a5", "{\"retention_evidence_days\": 1}", 10, true); /* live */
    struct cdn_task_retention_report rep;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_task_retention(state, (int64_t)time(NULL), &rep, &err), err);
    ASSERT_EQ(rep.folders, 1);
    ASSERT_EQ(rep.workspaces, 1);
    ASSERT_EQ(rep.n_removed, 1);
    ASSERT_STREQ(rep.removed[0], "00000000000000a1");
    ASSERT_TRUE(!exists(state, "00000000000000a1", ""));
    ASSERT_TRUE(exists(state, "00000000000000a2", "/evidence/manifest.json"));
    ASSERT_TRUE(!exists(state, "00000000000000a2", "/workspace"));
    ASSERT_TRUE(exists(state, "00000000000000a3", "/workspace/README")); /* awaits review */
    ASSERT_TRUE(exists(state, "00000000000000a4", "/workspace/README"));
    ASSERT_TRUE(exists(state, "00000000000000a5", "/workspace/README"));
    cdn_task_retention_report_clear(&rep);
    char dir[4400];
    snprintf(dir, sizeof(dir), "%s/tasks/00000000000000a5", state);
    cdn_task_owner_clear(dir);
    th_rmtree(state);
}
