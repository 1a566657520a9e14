/* SPDX-License-Identifier: Apache-2.0 */
/* Warm VMs: booted ahead of any sandbox, or cloned from a template (a warm VM saved once), each in
 * a folder of its own, until one session takes it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    bool cloned;
    bool for_sandbox;  /* cloned for the sandbox that takes it: it waited for that */
    uint64_t ready_ms; /* cdn_now_ms() when the agent answered */
};

struct cdn_warm_template {
    char id[17];
    char *dir;   /* tasks/<id>, owner-marked: the saved guest and its disk */
    char *saved; /* dir/guest.save */
    char *disk;  /* devbox: the saved guest's disk (dir/disk.qcow2) */
    char *image;
    char *vm;                 /* its domain's name, which each clone runs under */
    struct cdn_vm_host *host; /* where it was saved (kept: to ask whether a clone runs) */
    uint64_t boot_ms, save_ms;
};

static int image_ok(const char *image, cdn_err **err) {
    if (!image)
        return cdn_err_set(err, EINVAL, "a warm VM needs an image (minimal, devbox)");
    if (strcmp(image, "devbox") != 0 && strcmp(image, "minimal") != 0)
        return cdn_err_set(err, EINVAL, "unknown image '%s' (available: minimal, devbox)", image);
    return 0;
}

/* A new id and its folder, tasks/<id>, owner-marked. QEMU (unprivileged under libvirt) passes
 * through to the folder: 0711 all the way. */
static int new_folder(const char *state_dir, char id[17], char **dir, cdn_err **err) {
    int r = task_new_id(id, err);
    if (r == 0 && asprintf(dir, "%s/tasks/%s", state_dir, id) < 0) {
        *dir = NULL;
        r = cdn_err_set(err, ENOMEM, "out of memory");
    }
    if (r == 0)
        r = task_make_dir(*dir, 0711, err);
    if (r == 0)
        r = cdn_task_owner_write(*dir, err);
    return r;
}

static void drop_folder(char *dir) {
    if (dir) {
        cdn_task_owner_clear(dir);
        cdn_rmtree(dir);
    }
    free(dir);
}

static struct task_vm_req vm_req(const struct cdn_warm_spec *spec, const char *id,
                                 const char *dir) {
    return (struct task_vm_req){.state_dir = spec->state_dir,
                                .images_dir = spec->images_dir,
                                .uri = spec->uri,
                                .accel = spec->accel,
                                .id = id,
                                .dir = dir,
                                .devbox = strcmp(spec->image, "devbox") == 0,
                                .boot_timeout_ms = spec->boot_timeout_ms,
                                .cancel = spec->cancel,
                                .on_notice = spec->on_notice,
                                .ud = spec->ud};
}

/* A clone's first command: QEMU restored from a file starts with an empty translation cache
 * (TCG), and the first command through the agent paid ~100 ms more than in a booted VM
 * (bench/warm); one `true` here pays it before a sandbox waits on it. */
static int warm_exec(struct cdn_warm *w, cdn_err **err) {
    const char *argv[] = {"true"};
    struct cdn_exec_spec x = {.argv = argv, .argc = 1};
    struct cdn_exec_result res;
    int r = cdn_channel_exec(w->up.ch, &x, NULL, NULL, 10000, &res, err);
    if (r == 0 && res.exit_code != 0)
        r = cdn_err_set(err, EIO, "`true` in a fresh clone exited %d", res.exit_code);
    return r < 0 ? cdn_err_prefix(err, "warming a clone") : 0;
}

static int warm_up(const struct cdn_warm_spec *spec, const struct cdn_warm_template *t,
                   struct cdn_warm **out, cdn_err **err) {
    int r = image_ok(spec->image, err);
    if (r < 0)
        return r;
    struct cdn_warm *w = calloc(1, sizeof(*w));
    if (!w || !(w->image = strdup(spec->image))) {
        free(w);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    r = new_folder(spec->state_dir, w->id, &w->dir, err);
    if (r == 0) {
        struct task_vm_req q = vm_req(spec, w->id, w->dir);
        if (t) {
            q.clone_of = t->saved;
            q.clone_disk = t->disk;
            w->cloned = true;
            /* Written first: the clone runs as the template's domain, which a sweep after a
             * crash finds through this (cdn_task_gc). */
            char path[4200];
            snprintf(path, sizeof(path), "%s/clone-of", w->dir);
            r = cdn_write_atomic(path, t->id, strlen(t->id), err);
        }
        if (r == 0)
            r = task_vm_up(&q, &w->up, err);
    }
    if (r == 0 && t)
        r = warm_exec(w, err);
    if (r < 0) {
        cdn_warm_free(w);
        return r;
    }
    w->ready_ms = cdn_now_ms();
    *out = w;
    return 0;
}

int cdn_warm_boot(const struct cdn_warm_spec *spec, struct cdn_warm **out, cdn_err **err) {
    return warm_up(spec, NULL, out, err);
}

int cdn_warm_clone(const struct cdn_warm_spec *spec, const struct cdn_warm_template *t,
                   struct cdn_warm **out, cdn_err **err) {
    if (!spec->image || strcmp(spec->image, t->image) != 0)
        return cdn_err_set(err, EINVAL, "a template of %s cannot start a %s VM", t->image,
                           spec->image ? spec->image : "(none)");
    return warm_up(spec, t, out, err);
}

bool cdn_warm_alive(struct cdn_warm *w) { return w->up.vm && cdn_vm_running(w->up.vm); }
const char *cdn_warm_image(const struct cdn_warm *w) { return w->image; }
unsigned cdn_warm_memory_mib(const struct cdn_warm *w) { return w->up.memory_mib; }
uint64_t cdn_warm_boot_ms(const struct cdn_warm *w) { return w->up.boot_ms; }
bool cdn_warm_cloned(const struct cdn_warm *w) { return w->cloned; }
void cdn_warm_set_for_sandbox(struct cdn_warm *w) { w->for_sandbox = true; }
bool cdn_warm_for_sandbox(const struct cdn_warm *w) { return w->for_sandbox; }

static void warm_end(struct cdn_warm *w, bool abandon) {
    if (!w)
        return;
    if (abandon)
        task_vm_abandon(&w->up);
    else
        task_vm_down(&w->up);
    drop_folder(w->dir);
    free(w->image);
    free(w);
}

void cdn_warm_free(struct cdn_warm *w) { warm_end(w, false); }
void cdn_warm_abandon(struct cdn_warm *w) { warm_end(w, true); }

void task_warm_release(struct cdn_warm *w, struct task_vm_up *u, char **dir, uint64_t *idle_ms) {
    *u = w->up;
    w->up = (struct task_vm_up){0};
    *idle_ms = cdn_now_ms() - w->ready_ms;
    free(*dir);
    *dir = TAKE_PTR(w->dir);
    cdn_warm_free(w);
}

int cdn_warm_template_make(const struct cdn_warm_spec *spec, struct cdn_warm_template **out,
                           cdn_err **err) {
    int r = image_ok(spec->image, err);
    if (r < 0)
        return r;
    _cleanup_(cdn_warm_template_freep) struct cdn_warm_template *t = calloc(1, sizeof(*t));
    if (!t || !(t->image = strdup(spec->image)))
        return cdn_err_set(err, ENOMEM, "out of memory");
    if ((r = new_folder(spec->state_dir, t->id, &t->dir, err)) < 0)
        return r;
    if (asprintf(&t->saved, "%s/guest.save", t->dir) < 0) {
        t->saved = NULL;
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    /* Booted like any warm VM, on virtio-serial (a clone cannot keep a vsock CID), then saved
     * while its agent is connected: a clone's agent answers the next host that says hello. */
    struct task_vm_req q = vm_req(spec, t->id, t->dir);
    q.serial = true;
    struct task_vm_up u = {0};
    r = task_vm_up(&q, &u, err);
    uint64_t t0 = cdn_now_ms();
    if (r == 0 && (r = cdn_vm_save(u.vm, t->saved, err)) == 0) {
        t->save_ms = cdn_now_ms() - t0;
        t->boot_ms = u.boot_ms;
        t->disk = TAKE_PTR(u.overlay); /* kept: the clones copy it */
        if (!(t->vm = strdup(cdn_vm_name(u.vm))))
            r = cdn_err_set(err, ENOMEM, "out of memory");
        cdn_channel_freep(&u.ch); /* after the save: its agent never saw the host leave */
        cdn_vm_destroyp(&u.vm);
        t->host = TAKE_PTR(u.host);
    }
    task_vm_down(&u);
    if (r < 0)
        return cdn_err_prefix(err, "making a template of %s", spec->image);
    *out = TAKE_PTR(t);
    return 0;
}

uint64_t cdn_warm_template_boot_ms(const struct cdn_warm_template *t) { return t->boot_ms; }
bool cdn_warm_template_in_use(const struct cdn_warm_template *t) {
    return cdn_vm_host_has_domain(t->host, t->vm);
}
uint64_t cdn_warm_template_save_ms(const struct cdn_warm_template *t) { return t->save_ms; }

void cdn_warm_template_free(struct cdn_warm_template *t) {
    if (!t)
        return;
    drop_folder(t->dir); /* the saved guest and its disk with it */
    cdn_vm_host_close(t->host);
    free(t->vm);
    free(t->saved);
    free(t->disk);
    free(t->image);
    free(t);
}

void cdn_warm_template_freep(struct cdn_warm_template **t) {
    cdn_warm_template_free(*t);
    *t = NULL;
}
