/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_session: a sandbox's life outside its VM. Before any VM boots: the task folder, the owner
 * mark, the evidence bundle and, with a repository, the workspace at its base commit (a ref that
 * does not exist fails here). After: the result taken (committed and diffed on the host), and at
 * close the console log and the manifest saved whatever happened before. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "fsutil.h"
#include "clock.h"
#include "task_gc.h"
#include "task_internal.h"

int task_make_dir(const char *path, mode_t mode, cdn_err **err) {
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

int task_new_id(char id[17], cdn_err **err) {
    uint8_t raw[8];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return cdn_err_set(err, errno, "getrandom: %m");
    for (int i = 0; i < 8; i++)
        snprintf(id + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

static bool valid_id(const char *id) {
    size_t n = strlen(id);
    return n == 16 && strspn(id, "0123456789abcdef") == n;
}

/* The extracted guest tree is scratch: the worktree holds the result once it is committed, and a
 * refused transfer's partial tree is no evidence. It is emptied before each take. */
static int reset_tree(const char *path, cdn_err **err) {
    cdn_rmtree(path);
    return mkdir(path, 0700) < 0 ? cdn_err_set(err, errno, "mkdir %s: %m", path) : 0;
}

static int prepare(struct cdn_session *t, cdn_err **err) {
    const struct cdn_task_spec *spec = t->spec;
    struct cdn_task_result *res = &t->res;
    const char *image = spec->image ? spec->image : "minimal";
    cdn_evidence_fact(t->ev, "image", image);
    cdn_evidence_fact(t->ev, "vm", res->vm);
    if (spec->policy) {
        cdn_evidence_fact(t->ev, "policy", cdn_policy_name(spec->policy));
        /* What cdn_task_retention applies to the folder once the task is over. */
        const struct cdn_policy_retention *rt = cdn_policy_retention(spec->policy);
        if (rt->evidence_days)
            cdn_evidence_fact_int(t->ev, "retention_evidence_days", rt->evidence_days);
        if (rt->workspace_set)
            cdn_evidence_fact_int(t->ev, "retention_workspace_days", rt->workspace_days);
    }
    cdn_evidence_event(t->ev, "task.created",
                       json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?}", "task", res->id, "image",
                                 image, "repo", spec->repo, "ref", spec->ref, "policy",
                                 spec->policy ? cdn_policy_name(spec->policy) : NULL,
                                 "policy_sha256", spec->policy_sha256));
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
    if (asprintf(&t->result_dir, "%s/result", t->dir) < 0) {
        t->result_dir = NULL;
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

int cdn_session_open(const struct cdn_task_spec *spec, const char *id, struct cdn_session **out,
                     cdn_err **err) {
    const char *image = spec->image ? spec->image : "minimal";
    /* minimal: the initramfs is the whole guest. devbox: the same initramfs mounts a Debian root
     * from the task's overlay of devbox.qcow2 and switches to it. */
    bool devbox = strcmp(image, "devbox") == 0;
    if (!devbox && strcmp(image, "minimal") != 0)
        return cdn_err_set(err, EINVAL, "unknown image '%s' (available: minimal, devbox)", image);
    if (id && !valid_id(id))
        return cdn_err_set(err, EINVAL, "'%s' is not a sandbox id (16 hex digits)", id);
    _cleanup_(cdn_session_closep) struct cdn_session *t = calloc(1, sizeof(*t));
    if (!t)
        return cdn_err_set(err, ENOMEM, "out of memory");
    t->spec = spec;
    t->devbox = devbox;
    t->t0 = cdn_now_ms();
    int r;
    if (id)
        snprintf(t->res.id, sizeof(t->res.id), "%s", id);
    else if ((r = task_new_id(t->res.id, err)) < 0)
        return r;
    snprintf(t->res.vm, sizeof(t->res.vm), "cordon-%s", t->res.id);
    _cleanup_free_ char *tasks = NULL;
    if (asprintf(&tasks, "%s/tasks", spec->state_dir) < 0 ||
        asprintf(&t->dir, "%s/%s", tasks, t->res.id) < 0) {
        t->dir = NULL;
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    /* QEMU (an unprivileged user under libvirt) opens the task's disk: it must be able to pass
     * through the state folder. */
    if ((r = task_make_dir(spec->state_dir, 0711, err)) < 0 ||
        (r = task_make_dir(tasks, 0711, err)) < 0 || (r = task_make_dir(t->dir, 0711, err)) < 0)
        return r;
    if ((r = cdn_task_owner_write(t->dir, err)) < 0)
        return r;
    t->owned = true;
    if ((r = cdn_evidence_open(t->dir, t->res.id, &t->ev, err)) < 0)
        return r;
    t->res.evidence = strdup(cdn_evidence_dir(t->ev));
    if ((r = task_secrets_load(t, err)) < 0 || (r = prepare(t, err)) < 0) {
        cdn_session_close(TAKE_PTR(t), cdn_err_msg(*err), NULL);
        return r;
    }
    *out = TAKE_PTR(t);
    return 0;
}

int cdn_session_boot(struct cdn_session *s, cdn_err **err) { return task_vm_boot(s, err); }

void cdn_session_set_warm(struct cdn_session *s, struct cdn_warm *w) {
    cdn_warm_free(s->warm);
    s->warm = w;
}

const struct cdn_task_result *cdn_session_info(const struct cdn_session *s) { return &s->res; }
struct cdn_evidence *cdn_session_evidence(struct cdn_session *s) {
    return s->ev;
}
struct cdn_channel *cdn_session_channel(struct cdn_session *s) {
    return s->ch;
}
const char *cdn_session_cwd(const struct cdn_session *s) { return s->cwd; }
const struct cdn_redactor *cdn_session_redactor(const struct cdn_session *s) { return s->redactor; }

/* The dependencies the task changed: for each manifest or lockfile the patch touches, its
 * version at the base commit against what came back. */
static void record_dependencies(struct cdn_session *t, const char *patch, size_t len) {
    json_t *all = json_array();
    const char *p = patch, *end = patch + len;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        char line[4200];
        if (n > 13 && n < sizeof(line) && !strncmp(p, "diff --git a/", 13)) {
            memcpy(line, p + 13, n - 13);
            line[n - 13] = '\0';
            char *b = strstr(line, " b/");
            if (b) {
                *b = '\0';
                const char *oldp = line, *newp = b + 3;
                const char *mgr = cdn_deps_manager(newp);
                if (mgr && !strstr(oldp, "..") && !strstr(newp, "..")) {
                    char c[8400];
                    snprintf(c, sizeof(c), "%s/%s", t->result_dir, newp);
                    char *old_text = NULL, *new_text = NULL;
                    size_t ol = 0, nl2 = 0;
                    cdn_workspace_read_base(t->ws, oldp, 64u << 20, &old_text, &ol);
                    cdn_read_file(c, 64u << 20, &new_text, &nl2, NULL);
                    json_t *ch = cdn_deps_changes(newp, old_text, ol, new_text, nl2);
                    if (ch && json_array_size(ch))
                        json_array_append_new(all, json_pack("{s:s, s:s, s:o}", "file", newp,
                                                             "manager", mgr, "changes", ch));
                    else
                        json_decref(ch);
                    free(old_text);
                    free(new_text);
                }
            }
        }
        p = nl ? nl + 1 : end;
    }
    cdn_evidence_dependencies(t->ev, all);
}

/* The guest's tree becomes a commit on the task branch; its patch and stats go to the evidence. */
static int commit_result(struct cdn_session *t, const char *what, cdn_err **err) {
    struct cdn_task_result *res = &t->res;
    /* The message names the task and what ran (shortened: the manifest has it whole). */
    char message[1024];
    snprintf(message, sizeof(message),
             "cordon task %s\n\nThe tree the command left in /workspace, taken and diffed by the "
             "host.\n\nCommand: %.700s%s\n",
             res->id, what, strlen(what) > 700 ? "..." : "");
    _cleanup_(cdn_workspace_result_free) struct cdn_workspace_result wr = {0};
    int r = cdn_workspace_commit_tree(t->ws, t->result_dir, &t->listing, message, &wr, err);
    if (r < 0)
        return r;
    res->changed = wr.changed;
    res->diff = wr.stats;
    snprintf(res->result, sizeof(res->result), "%s", wr.sha);
    cdn_evidence_fact(t->ev, "result", wr.sha);
    r = cdn_evidence_diff(t->ev, &wr.stats, wr.patch, wr.patch_len, err);
    if (r >= 0)
        record_dependencies(t, wr.patch, wr.patch_len);
    return r;
}

int cdn_session_take_result(struct cdn_session *s, const char *what, cdn_err **err) {
    int r = 0;
    if (s->ws) {
        if ((r = reset_tree(s->result_dir, err)) < 0 || (r = task_vm_collect(s, err)) < 0)
            return r;
    }
    if ((r = task_vm_artifacts(s, err)) < 0)
        return r;
    return s->ws ? commit_result(s, what, err) : 0;
}

void cdn_session_close(struct cdn_session *t, const char *error, struct cdn_task_result *out) {
    if (!t)
        return;
    task_vm_release(t);
    size_t loaded = 0;
    for (size_t i = 0; t->secrets && i < t->nsecrets; i++)
        loaded += t->secrets[i].assign != NULL;
    if (t->ev) {
        /* The console is complete now that the VM is gone. */
        cdn_err *e = NULL;
        if (t->res.console && access(t->res.console, F_OK) == 0 &&
            cdn_evidence_copy(t->ev, t->res.console, "console.log", &e) < 0 && !error)
            error = cdn_err_msg(e);
        if (error)
            cdn_evidence_fact(t->ev, "error", error);
        cdn_evidence_fact_int(t->ev, "total_ms", (long long)(cdn_now_ms() - t->t0));
        cdn_evidence_event(
            t->ev, "task.closed",
            json_pack("{s:s?, s:I}", "error", error, "secrets_wiped", (json_int_t)loaded));
        cdn_err *save_err = NULL;
        cdn_evidence_sync(t->ev, NULL); /* the logs and the trail, before their manifest */
        char keys[4300];
        snprintf(keys, sizeof(keys), "%s/keys", t->spec->state_dir);
        if (cdn_evidence_seal(t->ev, keys, &save_err) < 0) { /* unsigned, but saved */
            cdn_evidence_limit_hit(t->ev, "evidence.seal", cdn_err_msg(save_err));
            cdn_err_free(TAKE_PTR(save_err));
            cdn_evidence_save(t->ev, &save_err);
        }
        cdn_err_free(save_err);
        cdn_err_free(e);
    }
    if (t->result_dir) {
        cdn_rmtree(t->result_dir);
        free(t->result_dir);
    }
    cdn_workspace_listing_free(&t->listing);
    cdn_workspace_freep(&t->ws);
    cdn_evidence_freep(&t->ev);
    task_secrets_scrub(t); /* the evidence's last write was redacted with them */
    if (t->owned)
        cdn_task_owner_clear(t->dir);
    free(t->dir);
    cdn_warm_free(t->warm); /* handed over but never booted into */
    if (t->warm_dir) {      /* the warm VM's own folder: its console is in the evidence now */
        cdn_task_owner_clear(t->warm_dir);
        cdn_rmtree(t->warm_dir);
        free(t->warm_dir);
    }
    if (out)
        *out = t->res;
    else
        cdn_task_result_free(&t->res);
    free(t);
}

void cdn_session_closep(struct cdn_session **s) {
    cdn_session_close(*s, NULL, NULL);
    *s = NULL;
}
