/* SPDX-License-Identifier: Apache-2.0 */
/* Bare mirrors under STATE/repos: one per repository URL, named after it and a hash of it, cloned
 * into a temporary name and renamed (a crash leaves no half mirror), fetched with pruning when it
 * exists. Concurrent tasks on one repository serialise on a lock file beside the mirror. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "ws_git.h"

int ws_git_err(cdn_err **err, const char *fmt, ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const git_error *e = git_error_last();
    return cdn_err_set(err, EIO, "%s: %s", what, e && e->message ? e->message : "libgit2 error");
}

void ws_git_init(void) {
    static bool done;
    if (!done) {
        git_libgit2_init();
        /* Trees are written from index entries whose blobs libgit2 itself checked out or just
         * wrote: looking each of them up again made writing a 10 000-file tree take 175 ms. */
        git_libgit2_opts(GIT_OPT_ENABLE_STRICT_OBJECT_CREATION, 0);
        done = true;
    }
}

/* "<last path part, sanitised>-<16 hex of SHA-256(url)>.git" */
static void mirror_name(const char *url, char *out, size_t size) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(url, strlen(url), md, &len, EVP_sha256(), NULL);
    const char *base = strrchr(url, '/');
    base = base && base[1] ? base + 1 : url;
    char clean[48];
    size_t n = 0;
    for (const char *p = base; *p && n < sizeof(clean) - 1; p++)
        clean[n++] = (char)((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'
                                ? *p
                                : '_');
    clean[n] = '\0';
    int w = snprintf(out, size, "%s-", clean);
    for (unsigned i = 0; i < 8 && w > 0 && (size_t)w + 2 < size; i++)
        w += snprintf(out + w, size - (size_t)w, "%02x", md[i]);
    snprintf(out + w, size - (size_t)w, ".git");
}

/* Every ref of the origin, as it is there (a mirror, like `git clone --mirror`). */
static int mirror_remote(git_remote **out, git_repository *repo, const char *name, const char *url,
                         void *payload) {
    (void)payload;
    return git_remote_create_with_fetchspec(out, repo, name, url, "+refs/*:refs/*");
}

static int clone_mirror(const char *url, const char *path, cdn_err **err) {
    char tmp[4400];
    snprintf(tmp, sizeof(tmp), "%s.tmp-%d", path, (int)getpid());
    git_clone_options o = GIT_CLONE_OPTIONS_INIT;
    o.bare = 1;
    o.remote_cb = mirror_remote;
    o.checkout_opts.checkout_strategy = GIT_CHECKOUT_NONE;
    _cleanup_(git_repository_freep) git_repository *repo = NULL;
    if (git_clone(&repo, url, tmp, &o) < 0)
        return ws_git_err(err, "mirroring %s", url);
    git_config *cfg = NULL;
    if (git_repository_config(&cfg, repo) == 0) {
        git_config_set_bool(cfg, "remote.origin.mirror", 1);
        git_config_free(cfg);
    }
    if (rename(tmp, path) < 0)
        return cdn_err_set(err, errno, "renaming the new mirror %s: %m", path);
    return 0;
}

static int fetch_mirror(const char *url, const char *path, cdn_err **err) {
    _cleanup_(git_repository_freep) git_repository *repo = NULL;
    _cleanup_(git_remote_freep) git_remote *remote = NULL;
    if (git_repository_open_bare(&repo, path) < 0)
        return ws_git_err(err, "opening the mirror %s", path);
    if (git_remote_lookup(&remote, repo, "origin") < 0)
        return ws_git_err(err, "mirror %s has no origin", path);
    git_fetch_options fo = GIT_FETCH_OPTIONS_INIT;
    fo.prune = GIT_FETCH_PRUNE;
    fo.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
    if (git_remote_fetch(remote, NULL, &fo, "cordon: fetch") < 0)
        return ws_git_err(err, "fetching %s into %s", url, path);
    return 0;
}

/* The mirror's HEAD follows the origin's default branch (a mirror refspec leaves it unset). */
static int follow_head(const char *url, const char *path, cdn_err **err) {
    _cleanup_(git_repository_freep) git_repository *repo = NULL;
    _cleanup_(git_remote_freep) git_remote *remote = NULL;
    if (git_repository_open_bare(&repo, path) < 0 || git_remote_lookup(&remote, repo, "origin") < 0)
        return ws_git_err(err, "opening the mirror %s", path);
    git_remote_callbacks cb = GIT_REMOTE_CALLBACKS_INIT;
    git_buf head = GIT_BUF_INIT;
    int r = 0;
    if (git_remote_connect(remote, GIT_DIRECTION_FETCH, &cb, NULL, NULL) < 0)
        return ws_git_err(err, "connecting to %s", url);
    if (git_remote_default_branch(&head, remote) == 0 &&
        git_repository_set_head(repo, head.ptr) < 0)
        r = ws_git_err(err, "setting the mirror's HEAD to %s", head.ptr);
    git_buf_dispose(&head);
    git_remote_disconnect(remote);
    return r;
}

int ws_mirror_sync(const char *repos_dir, const char *url, char **path_out, cdn_err **err) {
    if (mkdir(repos_dir, 0700) < 0 && errno != EEXIST)
        return cdn_err_set(err, errno, "mkdir %s: %m", repos_dir);
    char name[128], path[4300], lock[4400];
    mirror_name(url, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", repos_dir, name);
    snprintf(lock, sizeof(lock), "%s.lock", path);
    _cleanup_close_ int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lfd < 0)
        return cdn_err_set(err, errno, "opening %s: %m", lock);
    while (flock(lfd, LOCK_EX) < 0)
        if (errno != EINTR)
            return cdn_err_set(err, errno, "locking %s: %m", lock);
    struct stat st;
    int r = stat(path, &st) == 0 ? fetch_mirror(url, path, err) : clone_mirror(url, path, err);
    if (r < 0 || (r = follow_head(url, path, err)) < 0)
        return r;
    *path_out = strdup(path);
    return *path_out ? 0 : cdn_err_set(err, ENOMEM, "out of memory");
}
