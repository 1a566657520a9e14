/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_archive extractor: creates accepted entries beneath a root directory fd without ever
 * following a symlink, so a hostile archive (or a hostile tree already there) cannot redirect a
 * write outside the root. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "cleanup.h"

struct dir_mode {
    char *path;
    uint32_t mode;
};

struct cdn_archive_extractor {
    int root_fd;
    /* The parent directory of the last entry, kept open: archives list siblings together. */
    char *parent_path;
    int parent_fd;
    /* The file being written. */
    int file_fd;
    char *file_path;
    uint32_t file_mode;
    int64_t file_mtime;
    struct dir_mode *dirs; /* modes applied at finish, deepest first */
    size_t n_dirs, dirs_cap;
};

int cdn_archive_extractor_new(int root_dirfd, struct cdn_archive_extractor **out, cdn_err **err) {
    struct cdn_archive_extractor *x = calloc(1, sizeof(*x));
    if (!x)
        return cdn_err_set(err, ENOMEM, "out of memory");
    x->parent_fd = x->file_fd = -1;
    x->root_fd = openat(root_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (x->root_fd < 0) {
        int e = errno;
        free(x);
        return cdn_err_set(err, e, "extraction root: %s", strerror(e));
    }
    *out = x;
    return 0;
}

void cdn_archive_extractor_free(struct cdn_archive_extractor *x) {
    if (!x)
        return;
    safe_close(x->root_fd);
    safe_close(x->parent_fd);
    safe_close(x->file_fd);
    free(x->parent_path);
    free(x->file_path);
    for (size_t i = 0; i < x->n_dirs; i++)
        free(x->dirs[i].path);
    free(x->dirs);
    free(x);
}

void cdn_archive_extractor_freep(struct cdn_archive_extractor **x) {
    cdn_archive_extractor_free(*x);
    *x = NULL;
}

/* Opens (creating as needed) the directory at relative path dir, one component at a time with
 * O_NOFOLLOW: a symlink anywhere on the way fails with ELOOP/ENOTDIR instead of being followed.
 * Returns a new fd. */
static int open_dir_beneath(int root_fd, const char *dir, cdn_err **err) {
    _cleanup_close_ int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return cdn_err_set(err, errno, "dup: %m");
    _cleanup_free_ char *copy = strdup(dir);
    if (!copy)
        return cdn_err_set(err, ENOMEM, "out of memory");
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        if (mkdirat(fd, c, 0700) < 0 && errno != EEXIST)
            return cdn_err_set(err, errno, "mkdir '%s' in '%s': %m", c, dir);
        int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0)
            return cdn_err_set(err, errno == ELOOP ? EPERM : errno,
                               "'%s' in '%s' is not a directory (%m); not following it", c, dir);
        safe_close(fd);
        fd = next;
    }
    return TAKE_FD(fd);
}

/* Splits path into its parent (opened, cached) and last name. */
static int open_parent(struct cdn_archive_extractor *x, const char *path, const char **name,
                       cdn_err **err) {
    const char *slash = strrchr(path, '/');
    size_t plen = slash ? (size_t)(slash - path) : 0;
    *name = slash ? slash + 1 : path;
    if (x->parent_fd >= 0 && strlen(x->parent_path) == plen &&
        memcmp(x->parent_path, path, plen) == 0)
        return x->parent_fd;
    _cleanup_free_ char *parent = strndup(path, plen);
    if (!parent)
        return cdn_err_set(err, ENOMEM, "out of memory");
    int fd =
        plen ? open_dir_beneath(x->root_fd, parent, err) : fcntl(x->root_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0)
        return plen ? fd : cdn_err_set(err, errno, "dup: %m");
    safe_close(x->parent_fd);
    free(x->parent_path);
    x->parent_fd = fd;
    x->parent_path = TAKE_PTR(parent);
    return fd;
}

/* Removes what is at name unless it is a directory (which is kept and reused). */
static int clear_name(int dirfd, const char *name, bool *is_dir, cdn_err **err) {
    struct stat st;
    *is_dir = false;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : cdn_err_set(err, errno, "stat: %m");
    if (S_ISDIR(st.st_mode)) {
        *is_dir = true;
        return 0;
    }
    if (unlinkat(dirfd, name, 0) < 0)
        return cdn_err_set(err, errno, "replacing the existing entry: %m");
    return 0;
}

static int remember_dir(struct cdn_archive_extractor *x, const char *path, uint32_t mode,
                        cdn_err **err) {
    if (x->n_dirs == x->dirs_cap) {
        size_t cap = x->dirs_cap ? x->dirs_cap * 2 : 32;
        struct dir_mode *d = realloc(x->dirs, cap * sizeof(*d));
        if (!d)
            return cdn_err_set(err, ENOMEM, "out of memory");
        x->dirs = d;
        x->dirs_cap = cap;
    }
    char *p = strdup(path);
    if (!p)
        return cdn_err_set(err, ENOMEM, "out of memory");
    x->dirs[x->n_dirs++] = (struct dir_mode){p, mode};
    return 0;
}

static int on_entry(void *ud, const struct cdn_archive_entry *e, cdn_err **err) {
    struct cdn_archive_extractor *x = ud;
    const char *name;
    int dirfd = open_parent(x, e->path, &name, err);
    if (dirfd < 0)
        return dirfd;
    bool is_dir;
    switch (e->type) {
    case CDN_ARCHIVE_DIR:
        if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
            return cdn_err_set(err, errno, "mkdir: %m");
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            return cdn_err_set(err, errno, "stat: %m");
        if (!S_ISDIR(st.st_mode))
            return cdn_err_set(err, EEXIST, "a non-directory is already there");
        return remember_dir(x, e->path, e->mode, err);
    case CDN_ARCHIVE_SYMLINK: {
        int ret = clear_name(dirfd, name, &is_dir, err);
        if (ret < 0)
            return ret;
        if (is_dir)
            return cdn_err_set(err, EEXIST, "a directory is already there");
        if (symlinkat(e->link, dirfd, name) < 0)
            return cdn_err_set(err, errno, "symlink: %m");
        return 0;
    }
    case CDN_ARCHIVE_FILE: {
        int ret = clear_name(dirfd, name, &is_dir, err);
        if (ret < 0)
            return ret;
        if (is_dir)
            return cdn_err_set(err, EEXIST, "a directory is already there");
        int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
            return cdn_err_set(err, errno, "create: %m");
        safe_close(x->file_fd);
        x->file_fd = fd;
        x->file_mode = e->mode;
        x->file_mtime = e->mtime;
        return 0;
    }
    }
    return cdn_err_set(err, EINVAL, "unknown entry type");
}

static int on_data(void *ud, const uint8_t *p, size_t n, cdn_err **err) {
    struct cdn_archive_extractor *x = ud;
    while (n > 0) {
        ssize_t w = write(x->file_fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return cdn_err_set(err, errno, "write: %m");
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int on_entry_end(void *ud, cdn_err **err) {
    struct cdn_archive_extractor *x = ud;
    if (x->file_fd < 0)
        return 0;
    _cleanup_close_ int fd = TAKE_FD(x->file_fd);
    if (fchmod(fd, x->file_mode) < 0)
        return cdn_err_set(err, errno, "chmod: %m");
    struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_sec = x->file_mtime}};
    if (futimens(fd, ts) < 0)
        return cdn_err_set(err, errno, "set mtime: %m");
    return 0;
}

void cdn_archive_extractor_sink(struct cdn_archive_extractor *x, struct cdn_archive_sink *sink) {
    *sink = (struct cdn_archive_sink){
        .entry = on_entry, .data = on_data, .entry_end = on_entry_end, .ud = x};
}

static int cmp_depth_desc(const void *a, const void *b) {
    const struct dir_mode *da = a, *db = b;
    size_t la = strlen(da->path), lb = strlen(db->path);
    return la < lb ? 1 : la > lb ? -1 : 0;
}

int cdn_archive_extractor_finish(struct cdn_archive_extractor *x, cdn_err **err) {
    x->parent_fd = safe_close(x->parent_fd);
    if (x->n_dirs > 1)
        qsort(x->dirs, x->n_dirs, sizeof(*x->dirs), cmp_depth_desc);
    for (size_t i = 0; i < x->n_dirs; i++) {
        _cleanup_close_ int fd = open_dir_beneath(x->root_fd, x->dirs[i].path, err);
        if (fd < 0)
            return cdn_err_prefix(err, "directory '%s'", x->dirs[i].path);
        if (fchmod(fd, x->dirs[i].mode) < 0)
            return cdn_err_set(err, errno, "directory '%s': chmod: %m", x->dirs[i].path);
    }
    return 0;
}
