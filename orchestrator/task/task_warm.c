/* SPDX-License-Identifier: Apache-2.0 */
/* Warm VMs: booted ahead of any sandbox, each in a folder of its own, until one session takes
 * it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "clock.h"
#include "fsutil.h"
#include "task_gc.h"
#include "task_internal.h"

struct cdn_warm {
    char id[17];
    char *dir; /* tasks/<id>, owner-marked */
    char *image;
    struct task_vm_up up;
    uint64_t ready_ms; /* cdn_now_ms() when the agent answered */
};

int cdn_warm_boot(const struct cdn_warm_spec *spec, struct cdn_warm **out, cdn_err **err) {
    const char *image = spec->image ? spec->image : "minimal";
    bool devbox = strcmp(image, "devbox") == 0;
    if (!devbox && strcmp(image, "minimal") != 0)
        return cdn_err_set(err, EINVAL, "unknown image '%s' (available: minimal, devbox)", image);
    struct cdn_warm *w = calloc(1, sizeof(*w));
    if (!w || !(w->image = strdup(image))) {
        free(w);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    int r = task_new_id(w->id, err);
    if (r == 0 && asprintf(&w->dir, "%s/tasks/%s", spec->state_dir, w->id) < 0) {
        w->dir = NULL;
        r = cdn_err_set(err, ENOMEM, "out of memory");
    }
    /* QEMU (unprivileged under libvirt) passes through to the folder: 0711 all the way. */
    if (r == 0)
        r = task_make_dir(w->dir, 0711, err);
    if (r == 0)
        r = cdn_task_owner_write(w->dir, err);
    if (r == 0) {
        struct task_vm_req q = {.state_dir = spec->state_dir,
                                .images_dir = spec->images_dir,
                                .uri = spec->uri,
                                .accel = spec->accel,
                                .id = w->id,
                                .dir = w->dir,
                                .devbox = devbox,
                                .boot_timeout_ms = spec->boot_timeout_ms,
                                .cancel = spec->cancel,
                                .on_notice = spec->on_notice,
                                .ud = spec->ud};
        r = task_vm_up(&q, &w->up, err);
    }
    if (r < 0) {
        cdn_warm_free(w);
        return r;
    }
    w->ready_ms = cdn_now_ms();
    *out = w;
    return 0;
}

bool cdn_warm_alive(struct cdn_warm *w) { return w->up.vm && cdn_vm_running(w->up.vm); }
const char *cdn_warm_image(const struct cdn_warm *w) { return w->image; }
unsigned cdn_warm_memory_mib(const struct cdn_warm *w) { return w->up.memory_mib; }
uint64_t cdn_warm_boot_ms(const struct cdn_warm *w) { return w->up.boot_ms; }

void cdn_warm_free(struct cdn_warm *w) {
    if (!w)
        return;
    task_vm_down(&w->up);
    if (w->dir) {
        cdn_task_owner_clear(w->dir);
        cdn_rmtree(w->dir);
    }
    free(w->dir);
    free(w->image);
    free(w);
}

void task_warm_release(struct cdn_warm *w, struct task_vm_up *u, char **dir, uint64_t *idle_ms) {
    *u = w->up;
    w->up = (struct task_vm_up){0};
    *idle_ms = cdn_now_ms() - w->ready_ms;
    free(*dir);
    *dir = TAKE_PTR(w->dir);
    cdn_warm_free(w);
}
