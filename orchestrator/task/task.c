/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task: one task end to end. Before any VM boots: the task folder, the evidence bundle and,
 * with a repository, the workspace at its base commit (a ref that does not exist fails here).
 * Then the task's time in its VM (task_vm.c). After the VM is gone: the result tree committed and
 * diffed on the host, the console log added to the evidence, and the manifest saved, whatever
 * happened before (evidence gathered up to a failure is kept). */
#include "task.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "task_gc.h"
#include "task_internal.h"

static int make_dir(const char *path, mode_t mode, cdn_err **err) {
    _cleanup_free_ char *copy = strdup(path);
    if (!copy)
        return cdn_err_set(err, ENOMEM, "out of memory");
    for (char *s = strchr(copy + 1, '/');; s = strchr(s + 1, '/')) {
        if (s)
            *s = '\0';
        if (mkdir(copy, mode) < 0 && errno != EEXIST)
            return cdn_err_set(err, errno, "mkdir %s: %m", copy);
        if (!s)
            break;
        *s = '/';
    }
    /* libvirt's QEMU runs unprivileged: it must be able to pass through to the task folder. */
    return chmod(path, mode) < 0 ? cdn_err_set(err, errno, "chmod %s: %m", path) : 0;
}

static int new_id(char id[17], cdn_err **err) {
    uint8_t raw[8];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return cdn_err_set(err, errno, "getrandom: %m");
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

void task_notice(const struct cdn_task_spec *spec, const char *fmt, ...) {
    if (!spec->on_notice)
        return;
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    spec->on_notice(spec->ud, line);
}

bool task_cancelled(const struct cdn_task_spec *spec) { return spec->cancel && *spec->cancel; }

static void owner_clear(const char **dir) { cdn_task_owner_clear(*dir); }

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* The extracted guest tree is scratch: the worktree holds the result once it is committed, and a
 * refused transfer's partial tree is no evidence. */
static void remove_tree(char **path) {
    if (*path)
        nftw(*path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(*path);
}

/* The guest's tree becomes a commit on the task branch; its patch and stats go to the evidence. */
static int take_result(struct task_ctx *t, cdn_err **err) {
    struct cdn_task_result *res = t->res;
    /* The message names the task and what ran (shortened: the manifest has it whole). */
    char message[1024], cmd[700] = "";
    size_t used = 0;
    for (size_t i = 0; i < t->spec->argc && used + 1 < sizeof(cmd); i++) {
        int n = snprintf(cmd + used, sizeof(cmd) - used, "%s%s", i ? " " : "", t->spec->argv[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used >= sizeof(cmd))
        memcpy(cmd + sizeof(cmd) - 4, "...", 4);
    snprintf(message, sizeof(message),
             "cordon task %s\n\nThe tree the command left in /workspace, taken and diffed by the "
             "host.\n\nCommand: %s\n",
             res->id, cmd);
    _cleanup_(cdn_workspace_result_free) struct cdn_workspace_result wr = {0};
    int r = cdn_workspace_commit_tree(t->ws, t->result_dir, &t->listing, message, &wr, err);
    if (r < 0)
        return r;
    res->changed = wr.changed;
    res->diff = wr.stats;
    snprintf(res->result, sizeof(res->result), "%s", wr.sha);
    cdn_evidence_fact(t->ev, "result", wr.sha);
    return cdn_evidence_diff(t->ev, &wr.stats, wr.patch, wr.patch_len, err);
}

static int prepare(struct task_ctx *t, cdn_err **err) {
    const struct cdn_task_spec *spec = t->spec;
    struct cdn_task_result *res = t->res;
    const char *image = spec->image ? spec->image : "minimal";
    cdn_evidence_fact(t->ev, "image", image);
    cdn_evidence_fact(t->ev, "vm", res->vm);
    if (!spec->repo) {
        t->cwd = spec->workdir;
        return 0;
    }
    char wt[4300];
    snprintf(wt, sizeof(wt), "%s/workspace", t->dir);
    struct cdn_workspace_opts wo = {.state_dir = spec->state_dir,
                                    .repo = spec->repo,
                                    .ref = spec->ref,
                                    .dir = wt,
                                    .task_id = res->id};
    cdn_evidence_fact(t->ev, "repo", spec->repo);
    cdn_evidence_fact(t->ev, "ref", spec->ref ? spec->ref : "HEAD");
    int r = cdn_workspace_open(&wo, &t->ws, err);
    if (r < 0)
        return r;
    res->has_repo = true;
    snprintf(res->base, sizeof(res->base), "%s", cdn_workspace_base(t->ws));
    snprintf(res->result, sizeof(res->result), "%s", res->base);
    snprintf(res->branch, sizeof(res->branch), "%s", cdn_workspace_branch(t->ws));
    cdn_evidence_fact(t->ev, "repo_url", cdn_workspace_url(t->ws));
    cdn_evidence_fact(t->ev, "base", res->base);
    cdn_evidence_fact(t->ev, "branch", res->branch);
    t->cwd = spec->workdir ? spec->workdir : "/workspace";
    return 0;
}

int cdn_task_run(const struct cdn_task_spec *given, struct cdn_task_result *res, cdn_err **err) {
    *res = (struct cdn_task_result){0};
    /* The options as the policy bounds them: what the rest of the task uses. */
    struct cdn_task_spec eff = *given;
    const struct cdn_task_spec *spec = &eff;
    struct cdn_rlimit nproc;
    int r = task_apply_limits(&eff, &nproc, err);
    if (r < 0)
        return r;
    struct task_ctx t = {.spec = spec, .res = res, .t0 = cdn_now_ms()};
    r = new_id(res->id, err);
    if (r < 0)
        return r;
    snprintf(res->vm, sizeof(res->vm), "cordon-%s", res->id);
    const char *image = spec->image ? spec->image : "minimal";
    /* minimal: the initramfs is the whole guest. devbox: the same initramfs mounts a Debian root
     * from the task's overlay of devbox.qcow2 and switches to it. */
    t.devbox = strcmp(image, "devbox") == 0;
    if (!t.devbox && strcmp(image, "minimal") != 0)
        return cdn_err_set(err, EINVAL, "unknown image '%s' (available: minimal, devbox)", image);
    _cleanup_free_ char *tasks = NULL, *dir = NULL;
    _cleanup_free_ char *result_dir = NULL;
    if (asprintf(&tasks, "%s/tasks", spec->state_dir) < 0 ||
        asprintf(&dir, "%s/%s", tasks, res->id) < 0 || asprintf(&result_dir, "%s/result", dir) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    /* QEMU (an unprivileged user under libvirt) opens the task's disk: it must be able to pass
     * through the state folder. */
    if ((r = make_dir(spec->state_dir, 0711, err)) < 0 || (r = make_dir(tasks, 0711, err)) < 0 ||
        (r = make_dir(dir, 0711, err)) < 0)
        return r;
    t.dir = dir;
    /* Declared first, so the mark goes only after everything else has. */
    if ((r = cdn_task_owner_write(dir, err)) < 0)
        return r;
    _cleanup_(owner_clear) const char *owned = dir;
    _cleanup_(cdn_evidence_freep) struct cdn_evidence *ev = NULL;
    if ((r = cdn_evidence_open(dir, res->id, &ev, err)) < 0)
        return r;
    t.ev = ev;
    res->evidence = strdup(cdn_evidence_dir(ev));
    _cleanup_(cdn_workspace_freep) struct cdn_workspace *ws = NULL;
    _cleanup_(remove_tree) char *scratch = NULL;
    r = prepare(&t, err);
    ws = t.ws;
    if (spec->policy)
        cdn_evidence_fact(ev, "policy", cdn_policy_name(spec->policy));
    if (r >= 0 && ws) {
        t.result_dir = result_dir;
        if (mkdir(result_dir, 0700) < 0)
            r = cdn_err_set(err, errno, "mkdir %s: %m", result_dir);
        else
            scratch = strdup(result_dir); /* declared after it: freed first */
    }
    if (r >= 0)
        r = task_gate(&t, err);
    if (r >= 0)
        r = task_in_vm(&t, err);
    if (r >= 0 && ws)
        r = take_result(&t, err);
    /* Whatever happened: the console (complete now that the VM is gone) and the manifest. */
    cdn_err *ev_err = NULL;
    if (res->console && access(res->console, F_OK) == 0 &&
        cdn_evidence_copy(ev, res->console, "console.log", &ev_err) < 0 && r >= 0) {
        *err = TAKE_PTR(ev_err);
        r = -EIO;
    }
    cdn_err_free(ev_err);
    ev_err = NULL;
    if (r < 0)
        cdn_evidence_fact(ev, "error", cdn_err_msg(*err));
    cdn_evidence_fact_int(ev, "total_ms", (long long)(cdn_now_ms() - t.t0));
    if (cdn_evidence_save(ev, &ev_err) < 0 && r >= 0) {
        *err = TAKE_PTR(ev_err);
        r = -EIO;
    }
    cdn_err_free(ev_err);
    cdn_workspace_listing_free(&t.listing);
    return r;
}

void cdn_task_result_free(struct cdn_task_result *res) {
    free(res->console);
    free(res->evidence);
    res->console = res->evidence = NULL;
}
