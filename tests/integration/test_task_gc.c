/* SPDX-License-Identifier: Apache-2.0 */
/* The sweep for dead tasks against tasks being set up: a folder whose owner mark is being written
 * while another sandbox's boot sweeps is never taken for a dead task's (the mark is written aside
 * and renamed in). Fails on a mark written in place, where a sweep can read it empty. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
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
