/* SPDX-License-Identifier: Apache-2.0 */
/* agent_archive: the agent unpacks with the same refusing reader the host uses, so a tree the
 * host sends cannot place anything outside its destination either. */
#include "archive_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive.h"
#include "cleanup.h"

#define MAX_EXCLUDES 256u

struct archive_put {
    struct agent_stream stream;
    struct cdn_archive_extractor *x;
    struct cdn_archive_reader *r;
    uint64_t bytes;
};

struct archive_get {
    struct agent_stream stream;
    struct cdn_archive_writer *w;
};

static int open_dir(const char *path, bool create, cdn_err **err) {
    if (!path || !path[0])
        return cdn_err_set(err, EINVAL, "archive path is empty");
    if (create) {
        _cleanup_free_ char *copy = strdup(path);
        if (!copy)
            return cdn_err_set(err, ENOMEM, "out of memory");
        for (char *s = strchr(copy + 1, '/');; s = strchr(s + 1, '/')) {
            if (s)
                *s = '\0';
            if (mkdir(copy, 0755) < 0 && errno != EEXIST)
                return cdn_err_set(err, errno, "mkdir '%s': %m", copy);
            if (!s)
                break;
            *s = '/';
        }
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return cdn_err_set(err, errno, "open '%s': %m", path);
    return fd;
}

static CordonAgent__ErrorCode code_for(int e) {
    switch (e) {
    case EPERM: return CORDON_AGENT__ERROR_CODE__ERROR_REFUSED;
    case EFBIG: return CORDON_AGENT__ERROR_CODE__ERROR_REFUSED;
    case ENOENT:
    case ENOTDIR: return CORDON_AGENT__ERROR_CODE__ERROR_NOT_FOUND;
    case EINVAL:
    case EBADMSG: return CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST;
    default: return CORDON_AGENT__ERROR_CODE__ERROR_IO;
    }
}

static void fail(struct agent_stream *s, cdn_err *err) {
    agent_conn_send_error(s->conn, s->id, code_for(cdn_err_code(err)), "%s", cdn_err_msg(err));
    agent_conn_close_stream(s->conn, s);
}

/* ---- ArchivePut ---- */

static void put_destroy(struct agent_stream *s) {
    struct archive_put *p = (struct archive_put *)s;
    cdn_archive_reader_free(p->r);
    cdn_archive_extractor_free(p->x);
    free(p);
}

static void put_on_frame(struct agent_stream *s, const cdn_envelope *env) {
    struct archive_put *p = (struct archive_put *)s;
    _cleanup_err_ cdn_err *err = NULL;
    if (env->body_case != CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA) {
        agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "%s is not valid on an archive_put stream",
                              cdn_frame_body_name(env->body_case));
        return;
    }
    const ProtobufCBinaryData *d = &env->archive_data->data;
    if (cdn_archive_reader_feed(p->r, d->data, d->len, &err) < 0)
        return fail(s, err);
    p->bytes += d->len;
    agent_conn_consumed(s->conn, s, d->len);
    if (!env->archive_data->eof)
        return;
    if (cdn_archive_reader_finish(p->r, &err) < 0 || cdn_archive_extractor_finish(p->x, &err) < 0)
        return fail(s, err);
    CordonAgent__Done done = CORDON_AGENT__DONE__INIT;
    done.bytes = p->bytes;
    done.entries = cdn_archive_reader_entries(p->r);
    cdn_envelope out = CORDON_AGENT__ENVELOPE__INIT;
    out.body_case = CORDON_AGENT__ENVELOPE__BODY_DONE;
    out.done = &done;
    agent_conn_send(s->conn, s->id, &out);
    agent_conn_close_stream(s->conn, s);
}

static void put_on_writable(struct agent_stream *s) { (void)s; }

static const struct agent_stream_ops put_ops = {
    .on_frame = put_on_frame, .on_writable = put_on_writable, .destroy = put_destroy};

void agent_archive_put_open(struct agent_conn *c, uint64_t id, const CordonAgent__ArchivePut *req) {
    _cleanup_err_ cdn_err *err = NULL;
    _cleanup_close_ int dirfd = open_dir(req->path, true, &err);
    if (dirfd < 0) {
        agent_conn_send_error(c, id, code_for(cdn_err_code(err)), "archive_put: %s",
                              cdn_err_msg(err));
        return;
    }
    struct archive_put *p = calloc(1, sizeof(*p));
    if (!p) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    struct cdn_archive_limits lim = {0};
    if (req->limits)
        lim = (struct cdn_archive_limits){req->limits->max_total_bytes, req->limits->max_entries,
                                          req->limits->max_path_bytes, req->limits->max_depth};
    struct cdn_archive_sink sink;
    if (cdn_archive_extractor_new(dirfd, &p->x, &err) < 0) {
        agent_conn_send_error(c, id, code_for(cdn_err_code(err)), "archive_put: %s",
                              cdn_err_msg(err));
        free(p);
        return;
    }
    cdn_archive_extractor_sink(p->x, &sink);
    if (cdn_archive_reader_new(&lim, &sink, &p->r) < 0) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        put_destroy(&p->stream);
        return;
    }
    agent_conn_add_stream(c, &p->stream, id, &put_ops);
}

/* ---- ArchiveGet ---- */

static void get_destroy(struct agent_stream *s) {
    struct archive_get *g = (struct archive_get *)s;
    cdn_archive_writer_free(g->w);
    free(g);
}

/* File data of at least this size goes out with sendfile; smaller pieces are copied. */
#define SPLICE_MIN_BYTES (64u * 1024u)

/* Sends the tree as frames while credit and room last. Headers and small files are copied into
 * frames; a large file's bytes are spliced from the file straight into the channel. */
static void get_pump(struct agent_stream *s) {
    struct archive_get *g = (struct archive_get *)s;
    struct agent_conn *c = s->conn;
    for (;;) {
        size_t room = agent_conn_send_room(c, s);
        if (room == 0)
            return;
        _cleanup_err_ cdn_err *err = NULL;
        struct cdn_archive_chunk ch;
        int r = cdn_archive_writer_peek(g->w, &ch, &err);
        if (r < 0)
            return fail(s, err);
        bool splice = room >= SPLICE_MIN_BYTES;
        if (r > 0 && splice && ch.fd >= 0 && ch.len >= SPLICE_MIN_BYTES) {
            size_t n = ch.len < room ? (size_t)ch.len : room;
            if (agent_conn_data_splice(c, s, CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA, ch.fd,
                                       ch.offset, n) == 0) {
                if (cdn_archive_writer_advance(g->w, n, &err) < 0)
                    return fail(s, err);
                continue;
            }
            splice = false; /* could not start one: copy this time */
        }
        struct cdn_frame_data_slot slot;
        uint8_t *buf =
            agent_conn_data_begin(c, s, CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA, 0, room, &slot);
        if (!buf)
            return;
        bool complete;
        ssize_t n = cdn_archive_writer_fill(g->w, buf, room, splice ? SPLICE_MIN_BYTES : 0,
                                            &complete, &err);
        if (n < 0)
            return fail(s, err);
        agent_conn_data_end(c, s, &slot, (size_t)n, complete);
        if (complete) {
            agent_conn_close_stream(c, s);
            return;
        }
    }
}

static void get_on_frame(struct agent_stream *s, const cdn_envelope *env) {
    agent_conn_send_error(s->conn, s->id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                          "%s is not valid on an archive_get stream",
                          cdn_frame_body_name(env->body_case));
}

static const struct agent_stream_ops get_ops = {
    .on_frame = get_on_frame, .on_writable = get_pump, .destroy = get_destroy};

void agent_archive_get_open(struct agent_conn *c, uint64_t id, const CordonAgent__ArchiveGet *req) {
    _cleanup_err_ cdn_err *err = NULL;
    if (req->n_excludes > MAX_EXCLUDES) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_BAD_REQUEST,
                              "archive_get: %zu excludes (limit %u)", req->n_excludes,
                              MAX_EXCLUDES);
        return;
    }
    _cleanup_close_ int dirfd = open_dir(req->path, false, &err);
    if (dirfd < 0) {
        agent_conn_send_error(c, id, code_for(cdn_err_code(err)), "archive_get: %s",
                              cdn_err_msg(err));
        return;
    }
    struct archive_get *g = calloc(1, sizeof(*g));
    if (!g) {
        agent_conn_send_error(c, id, CORDON_AGENT__ERROR_CODE__ERROR_INTERNAL, "out of memory");
        return;
    }
    if (cdn_archive_writer_new(dirfd, (const char *const *)req->excludes, req->n_excludes, &g->w,
                               &err) < 0) {
        agent_conn_send_error(c, id, code_for(cdn_err_code(err)), "archive_get: %s",
                              cdn_err_msg(err));
        free(g);
        return;
    }
    agent_conn_add_stream(c, &g->stream, id, &get_ops);
    get_pump(&g->stream);
}
