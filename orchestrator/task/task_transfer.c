/* SPDX-License-Identifier: Apache-2.0 */
/* The task's transfers. What comes back from the guest passes the bounded archive reader first;
 * the sinks here add the task's own rules on top (no .git in a result, artifacts by glob with
 * caps), decided on the host from the entries as they arrive. */
#include "task_transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "evidence.h"
#include "workspace.h"

void task_result_limits_fill(struct cdn_archive_limits *l) {
    if (!l->max_total_bytes)
        l->max_total_bytes = TASK_RESULT_DEFAULT_BYTES;
    if (!l->max_entries)
        l->max_entries = TASK_RESULT_DEFAULT_ENTRIES;
    cdn_archive_limits_fill(l);
}

int task_upload_workspace(struct cdn_channel *ch, const char *worktree, int timeout_ms,
                          cdn_err **err) {
    _cleanup_close_ int fd = open(worktree, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cdn_err_set(err, errno, "opening the worktree %s: %m", worktree);
    uint64_t entries = 0;
    int r =
        cdn_channel_archive_put(ch, fd, NULL, 0, TASK_GUEST_WORKSPACE, timeout_ms, &entries, err);
    return r < 0 ? cdn_err_prefix(err, "uploading the workspace") : 0;
}

/* ---- the result: the extractor behind a filter refusing .git ---- */

struct no_git {
    struct cdn_archive_sink inner;
};

static bool has_git_component(const char *path) {
    for (const char *p = path; p; p = strchr(p, '/')) {
        if (*p == '/')
            p++;
        if (strncmp(p, ".git", 4) == 0 && (p[4] == '/' || p[4] == '\0'))
            return true;
    }
    return false;
}

static int no_git_entry(void *ud, const struct cdn_archive_entry *e, cdn_err **err) {
    struct no_git *f = ud;
    if (has_git_component(e->path))
        return cdn_err_set(err, EPERM, "refused entry '%s': the guest may not return a .git",
                           e->path);
    return f->inner.entry(f->inner.ud, e, err);
}
static int no_git_data(void *ud, const uint8_t *p, size_t n, cdn_err **err) {
    struct no_git *f = ud;
    return f->inner.data(f->inner.ud, p, n, err);
}
static int no_git_end(void *ud, cdn_err **err) {
    struct no_git *f = ud;
    return f->inner.entry_end(f->inner.ud, err);
}

int task_collect_workspace(struct cdn_channel *ch, const char *result_dir,
                           const struct cdn_archive_limits *limits,
                           struct cdn_workspace_listing *listing, int timeout_ms, cdn_err **err) {
    _cleanup_close_ int fd = open(result_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cdn_err_set(err, errno, "opening %s: %m", result_dir);
    _cleanup_(cdn_archive_extractor_freep) struct cdn_archive_extractor *x = NULL;
    int r = cdn_archive_extractor_new(fd, &x, err);
    if (r < 0)
        return r;
    struct cdn_archive_sink extract;
    cdn_archive_extractor_sink(x, &extract);
    struct cdn_workspace_recorder rec;
    struct no_git f;
    cdn_workspace_recorder_init(&rec, listing, &extract, &f.inner);
    struct cdn_archive_sink sink = {no_git_entry, no_git_data, no_git_end, &f};
    const char *excludes[] = {".git"};
    uint64_t entries = 0;
    r = cdn_channel_archive_get_sink(ch, TASK_GUEST_WORKSPACE, excludes, 1, &sink, limits,
                                     timeout_ms, &entries, err);
    if (r >= 0)
        r = cdn_archive_extractor_finish(x, err);
    return r < 0 ? cdn_err_prefix(err, "collecting the workspace") : 0;
}

/* ---- artifacts ---- */

struct art_pull {
    struct cdn_evidence *ev;
    const char *pattern; /* relative to the fetched root */
    const char *prefix;  /* the fetched root, for naming */
    const struct task_artifact_caps *caps;
    uint64_t *total;
    bool open;
    uint64_t size;
};

static int art_entry(void *ud, const struct cdn_archive_entry *e, cdn_err **err) {
    struct art_pull *a = ud;
    a->open = false;
    if (e->type != CDN_ARCHIVE_FILE || fnmatch(a->pattern, e->path, FNM_PATHNAME) != 0)
        return 0;
    if (e->size > a->caps->max_each)
        return cdn_err_set(err, EFBIG, "artifact '%s' is %llu bytes, over the %llu-byte cap",
                           e->path, (unsigned long long)e->size,
                           (unsigned long long)a->caps->max_each);
    if (*a->total + e->size > a->caps->max_total)
        return cdn_err_set(err, EFBIG,
                           "artifact '%s' would take artifacts over their %llu-byte total cap",
                           e->path, (unsigned long long)a->caps->max_total);
    *a->total += e->size;
    char name[8400];
    snprintf(name, sizeof(name), "%s%s%s", a->prefix, *a->prefix ? "/" : "", e->path);
    int r = cdn_evidence_artifact_begin(a->ev, name, err);
    if (r < 0)
        return r;
    a->open = true;
    return 0;
}

static int art_data(void *ud, const uint8_t *p, size_t n, cdn_err **err) {
    struct art_pull *a = ud;
    return a->open ? cdn_evidence_artifact_data(a->ev, p, n, err) : 0;
}

static int art_end(void *ud, cdn_err **err) {
    struct art_pull *a = ud;
    if (!a->open)
        return 0;
    a->open = false;
    return cdn_evidence_artifact_end(a->ev, err);
}

/* Splits an absolute pattern such as "/w/logs/x*.txt" into the folder to fetch ("/w/logs") and
 * the pattern below it ("x*.txt"). */
static int split_glob(const char *cwd, const char *glob, char root[4200], char pattern[4200],
                      cdn_err **err) {
    char full[4200];
    int n = glob[0] == '/' ? snprintf(full, sizeof(full), "%s", glob)
                           : snprintf(full, sizeof(full), "%s/%s", cwd, glob);
    if (n < 0 || (size_t)n >= sizeof(full))
        return cdn_err_set(err, ENAMETOOLONG, "artifact pattern '%s' is too long", glob);
    if (strstr(full, "/../") || strstr(full, "/./") || strstr(full, "//"))
        return cdn_err_set(err, EINVAL, "artifact pattern '%s' must not hold '.', '..' or '//'",
                           glob);
    const char *magic = strpbrk(full, "*?[");
    size_t cut = magic ? (size_t)(magic - full) : strlen(full);
    while (cut > 0 && full[cut] != '/')
        cut--;
    /* full[cut] is the '/' before the first component holding a wildcard (or the last one) */
    snprintf(pattern, 4200, "%s", full + cut + 1);
    if (cut == 0)
        snprintf(root, 4200, "/");
    else
        snprintf(root, 4200, "%.*s", (int)cut, full);
    if (!*pattern)
        return cdn_err_set(err, EINVAL, "artifact pattern '%s' names a folder, not files", glob);
    return 0;
}

int task_pull_artifacts(struct cdn_channel *ch, struct cdn_evidence *ev, const char *cwd,
                        const char *const *globs, size_t n, const struct task_artifact_caps *caps,
                        const struct cdn_archive_limits *limits, int timeout_ms, cdn_err **err) {
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        char root[4200], pattern[4200];
        int r = split_glob(cwd, globs[i], root, pattern, err);
        if (r < 0)
            return r;
        /* Artifacts are named by their path below the command's folder when under it. */
        size_t cl = strlen(cwd);
        const char *prefix = cl > 1 && strncmp(root, cwd, cl) == 0 && (root[cl] == '/' || !root[cl])
                                 ? root + cl + (root[cl] == '/')
                                 : root + 1;
        struct art_pull a = {
            .ev = ev, .pattern = pattern, .prefix = prefix, .caps = caps, .total = &total};
        struct cdn_archive_sink sink = {art_entry, art_data, art_end, &a};
        uint64_t entries = 0;
        r = cdn_channel_archive_get_sink(ch, root, NULL, 0, &sink, limits, timeout_ms, &entries,
                                         err);
        if (r < 0)
            return cdn_err_prefix(err, "artifacts '%s'", globs[i]);
    }
    return 0;
}
