/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_archive writer: walks a directory tree (beneath an fd, never following symlinks) and
 * produces a ustar stream, with pax headers for long names, pulled in caller-sized pieces. */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "archive.h"
#include "archive_tar.h"
#include "buf.h"
#include "cleanup.h"

/* One directory being walked: its fd, its sorted names, and where we are in them. */
struct frame {
    int dirfd;
    char **names;
    size_t n_names, next;
    size_t path_len; /* length of this directory's relative path in w->path (0 for the root) */
};

struct cdn_archive_writer {
    char **excludes;
    size_t n_excludes;
    struct frame *stack;
    size_t depth, stack_cap;
    char *path; /* relative path of the current entry */
    size_t path_cap;
    struct cdn_buf staged; /* headers and padding waiting to be read */
    int file_fd;           /* the regular file whose data is being streamed */
    uint64_t file_off;     /* where its next bytes are read from */
    uint64_t file_left;    /* data bytes still owed for it (zeros if it shrank) */
    uint64_t file_size;
    uint64_t entries;
    bool trailer_done;
};

static void frame_release(struct frame *f) {
    safe_close(f->dirfd);
    for (size_t i = 0; i < f->n_names; i++)
        free(f->names[i]);
    free(f->names);
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads and sorts a directory's names; takes ownership of dirfd. */
static int push_dir(struct cdn_archive_writer *w, int dirfd, size_t path_len, cdn_err **err) {
    _cleanup_close_ int fd = dirfd;
    if (w->depth == w->stack_cap) {
        size_t cap = w->stack_cap ? w->stack_cap * 2 : 16;
        struct frame *s = realloc(w->stack, cap * sizeof(*s));
        if (!s)
            return cdn_err_set(err, ENOMEM, "out of memory");
        w->stack = s;
        w->stack_cap = cap;
    }
    int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dup_fd < 0)
        return cdn_err_set(err, errno, "dup: %m");
    _cleanup_closedir_ DIR *d = fdopendir(dup_fd);
    if (!d) {
        safe_close(dup_fd);
        return cdn_err_set(err, errno, "'%.*s': opendir: %m", (int)path_len, w->path);
    }
    struct frame f = {.dirfd = -1, .path_len = path_len};
    size_t cap = 0;
    for (struct dirent *de; (errno = 0, de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (f.n_names == cap) {
            cap = cap ? cap * 2 : 32;
            char **names = realloc(f.names, cap * sizeof(*names));
            if (!names) {
                frame_release(&f);
                return cdn_err_set(err, ENOMEM, "out of memory");
            }
            f.names = names;
        }
        if (!(f.names[f.n_names] = strdup(de->d_name))) {
            frame_release(&f);
            return cdn_err_set(err, ENOMEM, "out of memory");
        }
        f.n_names++;
    }
    if (errno) {
        int e = errno;
        frame_release(&f);
        return cdn_err_set(err, e, "'%.*s': readdir: %s", (int)path_len, w->path, strerror(e));
    }
    if (f.n_names > 1)
        qsort(f.names, f.n_names, sizeof(*f.names), cmp_names);
    f.dirfd = TAKE_FD(fd);
    w->stack[w->depth++] = f;
    return 0;
}

int cdn_archive_writer_new(int root_dirfd, const char *const *excludes, size_t n_excludes,
                           struct cdn_archive_writer **out, cdn_err **err) {
    _cleanup_(cdn_archive_writer_freep) struct cdn_archive_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return cdn_err_set(err, ENOMEM, "out of memory");
    w->file_fd = -1;
    w->excludes = calloc(n_excludes + 1, sizeof(char *));
    if (!w->excludes)
        return cdn_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n_excludes; i++) {
        if (!(w->excludes[i] = strdup(excludes[i])))
            return cdn_err_set(err, ENOMEM, "out of memory");
        w->n_excludes++;
    }
    w->path_cap = 256;
    w->path = calloc(1, w->path_cap);
    if (!w->path)
        return cdn_err_set(err, ENOMEM, "out of memory");
    int fd = openat(root_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cdn_err_set(err, errno, "archive root: %m");
    int ret = push_dir(w, fd, 0, err);
    if (ret < 0)
        return ret;
    *out = TAKE_PTR(w);
    return 0;
}

void cdn_archive_writer_free(struct cdn_archive_writer *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->depth; i++)
        frame_release(&w->stack[i]);
    free(w->stack);
    for (size_t i = 0; i < w->n_excludes; i++)
        free(w->excludes[i]);
    free(w->excludes);
    free(w->path);
    safe_close(w->file_fd);
    cdn_buf_free(&w->staged);
    free(w);
}

void cdn_archive_writer_freep(struct cdn_archive_writer **w) {
    cdn_archive_writer_free(*w);
    *w = NULL;
}

uint64_t cdn_archive_writer_entries(const struct cdn_archive_writer *w) { return w->entries; }

static bool excluded(const struct cdn_archive_writer *w, const char *name, const char *relpath) {
    for (size_t i = 0; i < w->n_excludes; i++) {
        const char *pat = w->excludes[i];
        const char *subject = strchr(pat, '/') ? relpath : name;
        if (fnmatch(pat, subject, FNM_PATHNAME | FNM_PERIOD) == 0 ||
            fnmatch(pat, subject, FNM_PATHNAME) == 0)
            return true;
    }
    return false;
}

static int stage_pax(struct cdn_archive_writer *w, const char *key, const char *value,
                     cdn_err **err) {
    /* A record is "LEN key=value\n" where LEN counts itself: find the fixed point. */
    size_t body = strlen(key) + strlen(value) + 3, len = body + 1;
    for (;;) {
        char digits[24];
        size_t want = body + (size_t)snprintf(digits, sizeof(digits), "%zu", len);
        if (want == len)
            break;
        len = want;
    }
    _cleanup_free_ char *rec = NULL;
    if (asprintf(&rec, "%zu %s=%s\n", len, key, value) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    struct tar_header h = {0};
    snprintf(h.name, sizeof(h.name), "PaxHeader");
    tar_put_octal(h.mode, sizeof(h.mode), 0644);
    tar_put_octal(h.uid, sizeof(h.uid), 0);
    tar_put_octal(h.gid, sizeof(h.gid), 0);
    tar_put_octal(h.size, sizeof(h.size), len);
    tar_put_octal(h.mtime, sizeof(h.mtime), 0);
    h.typeflag = 'x';
    memcpy(h.magic, "ustar", 6);
    memcpy(h.version, "00", 2);
    tar_header_set_checksum(&h);
    size_t padded = (len + TAR_BLOCK - 1) / TAR_BLOCK * TAR_BLOCK;
    if (cdn_buf_append(&w->staged, &h, sizeof(h)) < 0 || cdn_buf_reserve(&w->staged, padded) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    memset(cdn_buf_tail(&w->staged), 0, padded);
    memcpy(cdn_buf_tail(&w->staged), rec, len);
    cdn_buf_advance(&w->staged, padded);
    return 0;
}

/* Fits path into ustar's prefix (155) + '/' + name (100) split; false if it cannot. */
static bool split_path(struct tar_header *h, const char *path) {
    size_t len = strlen(path);
    if (len <= sizeof(h->name)) {
        memcpy(h->name, path, len);
        return true;
    }
    for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
        size_t plen = (size_t)(s - path), nlen = len - plen - 1;
        if (plen <= sizeof(h->prefix) && nlen <= sizeof(h->name) && nlen > 0) {
            memcpy(h->prefix, path, plen);
            memcpy(h->name, s + 1, nlen);
            return true;
        }
    }
    return false;
}

static int stage_header(struct cdn_archive_writer *w, const struct stat *st, char type,
                        const char *link, cdn_err **err) {
    struct tar_header h = {0};
    _cleanup_free_ char *dir_path = NULL;
    const char *path = w->path;
    if (type == '5') {
        if (asprintf(&dir_path, "%s/", w->path) < 0)
            return cdn_err_set(err, ENOMEM, "out of memory");
        path = dir_path;
    }
    if (!split_path(&h, path)) {
        int ret = stage_pax(w, "path", path, err);
        if (ret < 0)
            return ret;
        memcpy(h.name, path, sizeof(h.name));
    }
    if (link && strlen(link) > sizeof(h.linkname)) {
        int ret = stage_pax(w, "linkpath", link, err);
        if (ret < 0)
            return ret;
    }
    if (link) /* a long target went into the pax header; the field keeps its first bytes */
        memcpy(h.linkname, link, strnlen(link, sizeof(h.linkname)));
    uint64_t size = type == '0' ? (uint64_t)st->st_size : 0;
    tar_put_octal(h.mode, sizeof(h.mode), st->st_mode & 0777);
    tar_put_octal(h.uid, sizeof(h.uid), 0);
    tar_put_octal(h.gid, sizeof(h.gid), 0);
    if (!tar_put_octal(h.size, sizeof(h.size), size)) {
        char digits[24];
        snprintf(digits, sizeof(digits), "%llu", (unsigned long long)size);
        int ret = stage_pax(w, "size", digits, err);
        if (ret < 0)
            return ret;
        tar_put_octal(h.size, sizeof(h.size), 0);
    }
    tar_put_octal(h.mtime, sizeof(h.mtime), st->st_mtime > 0 ? (uint64_t)st->st_mtime : 0);
    h.typeflag = type;
    memcpy(h.magic, "ustar", 6);
    memcpy(h.version, "00", 2);
    tar_header_set_checksum(&h);
    if (cdn_buf_append(&w->staged, &h, sizeof(h)) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    w->entries++;
    return 0;
}

static int set_path(struct cdn_archive_writer *w, size_t parent_len, const char *name,
                    cdn_err **err) {
    size_t need = parent_len + 1 + strlen(name) + 1;
    if (need > w->path_cap) {
        char *p = realloc(w->path, need * 2);
        if (!p)
            return cdn_err_set(err, ENOMEM, "out of memory");
        w->path = p;
        w->path_cap = need * 2;
    }
    size_t at = parent_len;
    if (parent_len)
        w->path[at++] = '/';
    strcpy(w->path + at, name);
    return 0;
}

/* Stages the next entry's header (and opens its data). Returns 1 if an entry was staged, 0 when
 * the walk is complete. */
static int next_entry(struct cdn_archive_writer *w, cdn_err **err) {
    while (w->depth > 0) {
        struct frame *f = &w->stack[w->depth - 1];
        if (f->next == f->n_names) {
            frame_release(f);
            w->depth--;
            continue;
        }
        const char *name = f->names[f->next++];
        int ret = set_path(w, f->path_len, name, err);
        if (ret < 0)
            return ret;
        if (excluded(w, name, w->path))
            continue;
        struct stat st;
        if (fstatat(f->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT) /* vanished while we walked */
                continue;
            return cdn_err_set(err, errno, "'%s': stat: %m", w->path);
        }
        if (S_ISDIR(st.st_mode)) {
            int fd = openat(f->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return cdn_err_set(err, errno, "'%s': open: %m", w->path);
            ret = stage_header(w, &st, '5', NULL, err);
            if (ret < 0) {
                safe_close(fd);
                return ret;
            }
            ret = push_dir(w, fd, strlen(w->path), err);
            return ret < 0 ? ret : 1;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[CDN_ARCHIVE_DEFAULT_PATH_BYTES + 1];
            ssize_t n = readlinkat(f->dirfd, name, target, sizeof(target) - 1);
            if (n < 0)
                return cdn_err_set(err, errno, "'%s': readlink: %m", w->path);
            if ((size_t)n == sizeof(target) - 1)
                return cdn_err_set(err, ENAMETOOLONG, "'%s': symlink target is too long", w->path);
            target[n] = '\0';
            ret = stage_header(w, &st, '2', target, err);
            return ret < 0 ? ret : 1;
        }
        if (!S_ISREG(st.st_mode))
            continue; /* sockets, FIFOs and devices are not archived */
        int fd = openat(f->dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
            return cdn_err_set(err, errno, "'%s': open: %m", w->path);
        ret = stage_header(w, &st, '0', NULL, err);
        if (ret < 0) {
            safe_close(fd);
            return ret;
        }
        if (st.st_size == 0) {
            safe_close(fd);
            return 1;
        }
        w->file_fd = fd;
        w->file_off = 0;
        w->file_left = w->file_size = (uint64_t)st.st_size;
        return 1;
    }
    return 0;
}

int cdn_archive_writer_peek(struct cdn_archive_writer *w, struct cdn_archive_chunk *chunk,
                            cdn_err **err) {
    for (;;) {
        if (cdn_buf_len(&w->staged) > 0) {
            *chunk = (struct cdn_archive_chunk){
                .bytes = cdn_buf_head(&w->staged), .fd = -1, .len = cdn_buf_len(&w->staged)};
            return 1;
        }
        if (w->file_left > 0) {
            *chunk = (struct cdn_archive_chunk){
                .fd = w->file_fd, .offset = w->file_off, .len = w->file_left};
            return 1;
        }
        if (w->trailer_done)
            return 0;
        int ret = next_entry(w, err);
        if (ret < 0)
            return ret;
        if (ret == 0) { /* the end-of-archive marker: two zero blocks */
            if (cdn_buf_reserve(&w->staged, 2 * TAR_BLOCK) < 0)
                return cdn_err_set(err, ENOMEM, "out of memory");
            memset(cdn_buf_tail(&w->staged), 0, 2 * TAR_BLOCK);
            cdn_buf_advance(&w->staged, 2 * TAR_BLOCK);
            w->trailer_done = true;
        }
    }
}

int cdn_archive_writer_advance(struct cdn_archive_writer *w, uint64_t n, cdn_err **err) {
    if (cdn_buf_len(&w->staged) > 0) {
        cdn_buf_consume(&w->staged, (size_t)n);
        return 0;
    }
    n = n < w->file_left ? n : w->file_left;
    w->file_off += n;
    w->file_left -= n;
    if (w->file_left > 0)
        return 0;
    /* The file is complete: pad its data to a whole block. */
    w->file_fd = safe_close(w->file_fd);
    size_t pad = (TAR_BLOCK - w->file_size % TAR_BLOCK) % TAR_BLOCK;
    if (cdn_buf_reserve(&w->staged, pad) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    memset(cdn_buf_tail(&w->staged), 0, pad);
    cdn_buf_advance(&w->staged, pad);
    return 0;
}

/* Copies a file chunk into p with pread. A file that shrinks while being read is completed with
 * zeros, one that grows is cut, so the stream always matches its header. */
static ssize_t read_file_chunk(struct cdn_archive_writer *w, const struct cdn_archive_chunk *ch,
                               uint8_t *p, size_t cap, cdn_err **err) {
    size_t want = ch->len < cap ? (size_t)ch->len : cap;
    ssize_t n;
    do
        n = pread(ch->fd, p, want, (off_t)ch->offset);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return cdn_err_set(err, errno, "'%s': read: %m", w->path);
    if (n == 0) { /* shrank */
        memset(p, 0, want);
        n = (ssize_t)want;
    }
    return n;
}

ssize_t cdn_archive_writer_fill(struct cdn_archive_writer *w, uint8_t *p, size_t cap,
                                uint64_t stop_before_file, bool *complete, cdn_err **err) {
    size_t done = 0;
    *complete = false;
    while (done < cap) {
        struct cdn_archive_chunk ch;
        int ret = cdn_archive_writer_peek(w, &ch, err);
        if (ret < 0)
            return ret;
        if (ret == 0) {
            *complete = true;
            break;
        }
        if (stop_before_file && ch.fd >= 0 && ch.len >= stop_before_file)
            break;
        size_t n;
        if (ch.fd < 0) {
            n = ch.len < cap - done ? (size_t)ch.len : cap - done;
            memcpy(p + done, ch.bytes, n);
        } else {
            ssize_t got = read_file_chunk(w, &ch, p + done, cap - done, err);
            if (got < 0)
                return got;
            n = (size_t)got;
        }
        ret = cdn_archive_writer_advance(w, n, err);
        if (ret < 0)
            return ret;
        done += n;
    }
    return (ssize_t)done;
}

ssize_t cdn_archive_writer_read(struct cdn_archive_writer *w, uint8_t *p, size_t cap,
                                cdn_err **err) {
    bool complete;
    return cdn_archive_writer_fill(w, p, cap, 0, &complete, err);
}
