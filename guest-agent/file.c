/* SPDX-License-Identifier: Apache-2.0 */
/* agent_file: a FileRead streams a file's bytes under credit; a FileWrite receives chunks into a
 * temp file beside the target and renames it into place at eof, so a reader of the path never
 * sees a half-written file. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

#define MAX_PATH_BYTES 4096u

struct file_read {
    struct agent_stream stream;
    int fd;
    uint64_t left; /* bytes still to send; UINT64_MAX: to the end */
};

struct file_write {
    struct agent_stream stream;
    int fd;
    char *path; /* final path */
    char *tmp;  /* temp path, NULL when writing in place */
    uint64_t bytes;
};

static bool path_ok(struct agent_conn *c, uint64_t id, const char *path) {
    size_t n = strnlen(path, MAX_PATH_BYTES + 1);
    if (n == 0 || n > MAX_PATH_BYTES) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "path is empty or longer than %u bytes", MAX_PATH_BYTES);
        return false;
    }
    return true;
}

static CordonAgent__ErrorCode code_for(int e) {
    return e == ENOENT || e == ENOTDIR ? CORDON_AGENT__ERROR_CODE__ERROR_NOT_FOUND
                                       : CORDON_AGENT__ERROR_CODE__ERROR_IO;
}

/* ---- FileRead ---- */

static void read_destroy(struct agent_stream *s) {
    struct file_read *r = (struct file_read *)s;
    safe_close(r->fd);
    free(r);
}

/* Sends chunks while credit and room last; the last chunk carries eof. */
static void read_pump(struct agent_stream *s) {
    struct file_read *r = (struct file_read *)s;
    struct agent_conn *c = s->conn;
    for (;;) {
        size_t room = agent_conn_send_room(c, s);
        if (room == 0)
            return; /* on_writable brings us back */
        if (room > r->left)
            room = (size_t)r->left;
        struct cdn_frame_data_slot slot;
        uint8_t *buf =
            agent_conn_data_begin(c, s, CORDON_AGENT__ENVELOPE__BODY_FILE_DATA, 0, room, &slot);
        if (!buf)
            return;
        ssize_t n = room ? read(r->fd, buf, room) : 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            agent_conn_send_error(c, s->id, CORDON_AGENT__ERROR_CODE__ERROR_IO, "read: %s",
                                  strerror(errno));
            agent_conn_close_stream(c, s);
            return;
        }
        r->left -= (uint64_t)n;
        bool eof = n == 0 || r->left == 0;
        agent_conn_data_end(c, s, &slot, (size_t)n, eof);
        if (eof) {
            agent_conn_close_stream(c, s);
            return;
        }
    }
}

static void read_on_frame(struct agent_stream *s, const cdn_envelope *env) {
    agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                          "%s is not valid on a file_read stream",
                          cdn_frame_body_name(env->body_case));
}

static const struct agent_stream_ops read_ops = {
    .on_frame = read_on_frame, .on_writable = read_pump, .destroy = read_destroy};

void agent_file_read_open(struct agent_conn *c, uint64_t id, const CordonAgent__FileRead *req) {
    if (!path_ok(c, id, req->path))
        return;
    _cleanup_close_ int fd = open(req->path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        agent_conn_send_error(c, id, code_for(errno), "open '%s': %s", req->path, strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "'%s' is not a regular file", req->path);
        return;
    }
    if (req->offset && lseek(fd, (off_t)req->offset, SEEK_SET) < 0) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_IO, "seek '%s': %s", req->path,
                              strerror(errno));
        return;
    }
    struct file_read *r = calloc(1, sizeof(*r));
    if (!r) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    r->fd = TAKE_FD(fd);
    r->left = req->max_bytes ? req->max_bytes : UINT64_MAX;
    agent_conn_add_stream(c, &r->stream, id, &read_ops);
    read_pump(&r->stream);
}

/* ---- FileWrite ---- */

static void write_destroy(struct agent_stream *s) {
    struct file_write *w = (struct file_write *)s;
    safe_close(w->fd);
    if (w->tmp) /* not renamed: an aborted write leaves the old file as it was */
        unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    free(w);
}

static void write_fail(struct file_write *w, int e, const char *what) {
    struct agent_conn *c = w->stream.conn;
    agent_conn_send_error(c, w->stream.id, code_for(e), "%s '%s': %s", what, w->path, strerror(e));
    agent_conn_close_stream(c, &w->stream);
}

static void write_finish(struct file_write *w) {
    struct agent_conn *c = w->stream.conn;
    if (fsync(w->fd) < 0)
        return write_fail(w, errno, "fsync");
    if (w->tmp) {
        if (rename(w->tmp, w->path) < 0)
            return write_fail(w, errno, "rename into");
        free(w->tmp);
        w->tmp = NULL;
    }
    CordonAgent__Done d = CORDON_AGENT__DONE__INIT;
    d.bytes = w->bytes;
    d.entries = 1;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_DONE;
    env.done = &d;
    agent_conn_send(c, w->stream.id, &env);
    agent_conn_close_stream(c, &w->stream);
}

static void write_on_frame(struct agent_stream *s, const cdn_envelope *env) {
    struct file_write *w = (struct file_write *)s;
    if (env->body_case != CORDON_AGENT__ENVELOPE__BODY_FILE_DATA) {
        agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "%s is not valid on a file_write stream",
                              cdn_frame_body_name(env->body_case));
        return;
    }
    const uint8_t *p = env->file_data->data.data;
    size_t n = env->file_data->data.len;
    for (size_t done = 0; done < n;) {
        ssize_t k = write(w->fd, p + done, n - done);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return write_fail(w, errno, "write");
        done += (size_t)k;
    }
    w->bytes += n;
    agent_conn_consumed(s->conn, s, n);
    if (env->file_data->eof)
        write_finish(w);
}

static void write_on_writable(struct agent_stream *s) { (void)s; }

static const struct agent_stream_ops write_ops = {
    .on_frame = write_on_frame, .on_writable = write_on_writable, .destroy = write_destroy};

static int make_parents(const char *path) {
    _cleanup_free_ char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    for (char *s = strchr(copy + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(copy, 0755) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    return 0;
}

void agent_file_write_open(struct agent_conn *c, uint64_t id, const CordonAgent__FileWrite *req) {
    if (!path_ok(c, id, req->path))
        return;
    if (req->make_parents) {
        int r = make_parents(req->path);
        if (r < 0) {
            agent_conn_send_error(c, id, code_for(-r), "creating parents of '%s': %s", req->path,
                                  strerror(-r));
            return;
        }
    }
    struct file_write *w = calloc(1, sizeof(*w));
    if (w)
        w->fd = -1;
    if (!w || !(w->path = strdup(req->path))) {
        free(w);
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    mode_t mode = req->mode ? (mode_t)(req->mode & 07777) : 0644;
    agent_conn_add_stream(c, &w->stream, id, &write_ops);
    if (req->offset == 0) {
        if (asprintf(&w->tmp, "%s.cordon-tmp-%" PRIu64, req->path, id) < 0) {
            w->tmp = NULL;
            return write_fail(w, ENOMEM, "temp name for");
        }
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (w->fd < 0) {
            int e = errno;
            free(w->tmp);
            w->tmp = NULL;
            return write_fail(w, e, "create temp for");
        }
        fchmod(w->fd, mode); /* not subject to the umask */
        return;
    }
    w->fd = open(req->path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    if (w->fd < 0)
        return write_fail(w, errno, "open");
    if (lseek(w->fd, (off_t)req->offset, SEEK_SET) < 0)
        return write_fail(w, errno, "seek");
}
