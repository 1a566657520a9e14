/* SPDX-License-Identifier: Apache-2.0 */
/* Staging the guest's tree against the worktree's index without reading every file: the tree
 * left the host as an archive of the worktree and came back the same way, with sizes and mtimes
 * kept, so a file whose size, mtime (seconds) and type/exec bit equal its index entry's (recorded
 * at checkout) is the base's file and keeps its blob id; everything else is hashed and added
 * (new files only when not ignored), and entries with no file any more are removed. Like git's
 * own stat cache, but with nothing to be racy about: the checkout happened before the guest
 * existed. A guest that forges a file's size and mtime only keeps its change out of the commit:
 * what is reviewed is what is committed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ws_git.h"
#include "workspace.h"
#include "ws_internal.h"

struct walk {
    git_repository *repo;
    git_index *idx;
    bool *seen; /* per index position, as it was before the walk */
    size_t n;
    char **adds; /* paths to hash and add */
    size_t nadds, capadds;
    cdn_err **err;
};

static int push_add(struct walk *w, const char *rel) {
    if (w->nadds == w->capadds) {
        size_t cap = w->capadds ? w->capadds * 2 : 64;
        char **p = realloc(w->adds, cap * sizeof(*p));
        if (!p)
            return cdn_err_set(w->err, ENOMEM, "out of memory");
        w->adds = p;
        w->capadds = cap;
    }
    if (!(w->adds[w->nadds] = strdup(rel)))
        return cdn_err_set(w->err, ENOMEM, "out of memory");
    w->nadds++;
    return 0;
}

/* Symlinks are always hashed: the extractor does not carry their mtimes over, and they are few. */
static bool same_stat(const git_index_entry *e, const struct cdn_workspace_entry *f) {
    if (f->link || (uint32_t)f->size != e->file_size || (int64_t)e->mtime.seconds != f->mtime)
        return false;
    return e->mode == (f->exec ? GIT_FILEMODE_BLOB_EXECUTABLE : GIT_FILEMODE_BLOB);
}

static int visit_file(struct walk *w, const struct cdn_workspace_entry *f) {
    const char *rel = f->path;
    size_t pos;
    if (git_index_find(&pos, w->idx, rel) == 0) {
        const git_index_entry *e = git_index_get_byindex(w->idx, pos);
        if (pos < w->n)
            w->seen[pos] = true;
        return e && same_stat(e, f) ? 0 : push_add(w, rel);
    }
    int ignored = 0;
    if (git_ignore_path_is_ignored(&ignored, w->repo, rel) < 0)
        return ws_git_err(w->err, "checking whether %s is ignored", rel);
    return ignored ? 0 : push_add(w, rel);
}

/* An ignored folder is not entered unless the index tracks something inside it. */
static bool skip_folder(struct walk *w, const char *rel) {
    char slash[4200];
    snprintf(slash, sizeof(slash), "%s/", rel);
    int ignored = 0;
    if (git_ignore_path_is_ignored(&ignored, w->repo, slash) < 0 || !ignored)
        return false;
    size_t pos;
    return git_index_find_prefix(&pos, w->idx, slash) != 0;
}

static int walk_dir(struct walk *w, int dfd, char *rel, size_t len) {
    DIR *d = fdopendir(dfd);
    if (!d) {
        close(dfd);
        return cdn_err_set(w->err, errno, "reading the result folder %s: %m", rel);
    }
    int r = 0;
    for (struct dirent *e; r == 0 && (e = readdir(d));) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, ".git"))
            continue;
        size_t nl = strlen(name);
        if (len + nl + 2 > 4096) {
            r = cdn_err_set(w->err, ENAMETOOLONG, "result path %s/%s is too long", rel, name);
            break;
        }
        size_t sub = len ? len + 1 : 0;
        if (len)
            rel[len] = '/';
        memcpy(rel + sub, name, nl + 1);
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            r = cdn_err_set(w->err, errno, "result entry %s: %m", rel);
        else if (S_ISDIR(st.st_mode)) {
            if (!skip_folder(w, rel)) {
                int cfd = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                r = cfd < 0 ? cdn_err_set(w->err, errno, "result folder %s: %m", rel)
                            : walk_dir(w, cfd, rel, sub + nl);
            }
        } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
            struct cdn_workspace_entry f = {.path = rel,
                                            .link = S_ISLNK(st.st_mode),
                                            .exec = st.st_mode & S_IXUSR,
                                            .size = (uint64_t)st.st_size,
                                            .mtime = st.st_mtim.tv_sec};
            r = visit_file(w, &f);
        }
        rel[len] = '\0';
    }
    closedir(d);
    return r;
}

/* The listing the extraction recorded: the same facts as a walk, without a system call. */
static int visit_listing(struct walk *w, const struct cdn_workspace_listing *l) {
    for (size_t i = 0; i < l->n; i++) {
        const char *p = l->v[i].path;
        /* .git never counts, whatever the guest sent (the transfer refuses it anyway) */
        if (!strcmp(p, ".git") || !strncmp(p, ".git/", 5) || strstr(p, "/.git/"))
            continue;
        int r = visit_file(w, &l->v[i]);
        if (r < 0)
            return r;
    }
    return 0;
}

int ws_stage_tree(git_repository *repo, git_index *idx, const char *tree_dir,
                  const struct cdn_workspace_listing *listing, cdn_err **err) {
    struct walk w = {.repo = repo, .idx = idx, .n = git_index_entrycount(idx), .err = err};
    w.seen = calloc(w.n + 1, sizeof(bool));
    if (!w.seen)
        return cdn_err_set(err, ENOMEM, "out of memory");
    char rel[4200] = "";
    int r;
    if (listing)
        r = visit_listing(&w, listing);
    else {
        int fd = open(tree_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = fd < 0 ? cdn_err_set(err, errno, "opening %s: %m", tree_dir) : walk_dir(&w, fd, rel, 0);
    }
    /* Entries with no file left (gitlinks stay: their folders are not ours to judge). */
    char **removes = r == 0 ? calloc(w.n + 1, sizeof(char *)) : NULL;
    size_t nrem = 0;
    if (r == 0 && !removes)
        r = cdn_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; r == 0 && i < w.n; i++) {
        const git_index_entry *e = git_index_get_byindex(idx, i);
        if (!w.seen[i] && e && e->mode != GIT_FILEMODE_COMMIT &&
            !(removes[nrem++] = strdup(e->path)))
            r = cdn_err_set(err, ENOMEM, "out of memory");
    }
    for (size_t i = 0; r == 0 && i < nrem; i++)
        if (git_index_remove_bypath(idx, removes[i]) < 0)
            r = ws_git_err(err, "unstaging %s", removes[i]);
    for (size_t i = 0; r == 0 && i < w.nadds; i++)
        if (git_index_add_bypath(idx, w.adds[i]) < 0)
            r = ws_git_err(err, "staging %s", w.adds[i]);
    for (size_t i = 0; i < nrem; i++)
        free(removes[i]);
    free(removes);
    for (size_t i = 0; i < w.nadds; i++)
        free(w.adds[i]);
    free(w.adds);
    free(w.seen);
    return r;
}
