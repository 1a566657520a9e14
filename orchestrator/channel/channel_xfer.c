/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_channel transfers: files and directory trees, in chunks under credit. What comes back from
 * the guest is bounded (max_bytes, archive limits) and a tree is unpacked only by the refusing
 * archive reader. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "archive.h"
#include "channel_int.h"
#include "cleanup.h"

#define PUT_CHUNK_BYTES (256u * 1024u)

int cdn_channel_file_write(struct cdn_channel *ch, const char *path, uint32_t mode,
                           const void *data, size_t len, int timeout_ms, cdn_err **err) {
    uint64_t deadline = chan_deadline(ch, timeout_ms);
    CordonAgent__FileWrite fw = CORDON_AGENT__FILE_WRITE__INIT;
    fw.path = (char *)path;
    fw.mode = mode;
    fw.make_parents = true; /* as a file manager would: missing folders are made (0755) */
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_FILE_WRITE;
    env.file_write = &fw;
    struct hstream *s;
    int r = chan_open_stream(ch, HS_FILE_WRITE, &env, &s, err);
    if (r < 0)
        return r;
    r = chan_send_data(ch, s, CORDON_AGENT__ENVELOPE__BODY_FILE_DATA, data, len, true, deadline,
                       err);
    if (r >= 0)
        r = chan_finish_stream(ch, s, deadline, "file_write", err);
    chan_stream_release(ch, s);
    return r < 0 ? cdn_err_prefix(err, "writing '%s'", path) : 0;
}

struct read_ctx {
    cdn_data_fn fn;
    void *ud;
    uint64_t max, got;
    bool too_big;
    bool sink_failed;
};

static int on_file_data(void *ud, int fd, const uint8_t *p, size_t n) {
    (void)fd;
    struct read_ctx *rc = ud;
    if (rc->max && n > rc->max - rc->got) {
        rc->too_big = true;
        return -1;
    }
    rc->got += n;
    if (rc->fn(rc->ud, p, n) < 0) {
        rc->sink_failed = true;
        return -1;
    }
    return 0;
}

int cdn_channel_file_read(struct cdn_channel *ch, const char *path, uint64_t max_bytes,
                          cdn_data_fn on_data, void *ud, int timeout_ms, cdn_err **err) {
    uint64_t deadline = chan_deadline(ch, timeout_ms);
    struct read_ctx rc = {.fn = on_data, .ud = ud, .max = max_bytes};
    CordonAgent__FileRead fr = CORDON_AGENT__FILE_READ__INIT;
    fr.path = (char *)path;
    fr.max_bytes = max_bytes ? max_bytes + 1 : 0; /* one byte more tells "too big" from "fits" */
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_FILE_READ;
    env.file_read = &fr;
    struct hstream *s;
    int r = chan_open_stream(ch, HS_FILE_READ, &env, &s, err);
    if (r < 0)
        return r;
    s->on_data = on_file_data;
    s->ud = &rc;
    r = chan_finish_stream(ch, s, deadline, "file_read", err);
    chan_stream_release(ch, s);
    if (r >= 0 && rc.too_big)
        r = cdn_err_set(err, EFBIG, "%s: '%s' is larger than %llu bytes", ch->name, path,
                        (unsigned long long)max_bytes);
    else if (r >= 0 && rc.sink_failed)
        r = cdn_err_set(err, EIO, "%s: reading '%s': the receiver failed", ch->name, path);
    return r;
}

int cdn_channel_archive_put(struct cdn_channel *ch, int src_dirfd, const char *const *excludes,
                            size_t n_excludes, const char *dest, int timeout_ms, uint64_t *entries,
                            cdn_err **err) {
    uint64_t deadline = chan_deadline(ch, timeout_ms);
    _cleanup_(cdn_archive_writer_freep) struct cdn_archive_writer *w = NULL;
    int r = cdn_archive_writer_new(src_dirfd, excludes, n_excludes, &w, err);
    if (r < 0)
        return r;
    _cleanup_free_ uint8_t *buf = malloc(PUT_CHUNK_BYTES);
    if (!buf)
        return cdn_err_set(err, ENOMEM, "out of memory");
    CordonAgent__ArchivePut ap = CORDON_AGENT__ARCHIVE_PUT__INIT;
    ap.path = (char *)dest;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_PUT;
    env.archive_put = &ap;
    struct hstream *s;
    r = chan_open_stream(ch, HS_ARCHIVE_PUT, &env, &s, err);
    if (r < 0)
        return r;
    for (bool eof = false; !eof && r >= 0;) {
        ssize_t n = cdn_archive_writer_fill(w, buf, PUT_CHUNK_BYTES, 0, &eof, err);
        if (n < 0) {
            r = (int)n;
            break;
        }
        r = chan_send_data(ch, s, CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA, buf, (size_t)n, eof,
                           deadline, err);
    }
    if (r >= 0)
        r = chan_finish_stream(ch, s, deadline, "archive_put", err);
    if (r >= 0 && entries)
        *entries = s->done_entries;
    chan_stream_release(ch, s);
    return r < 0 ? cdn_err_prefix(err, "sending a tree to '%s'", dest) : 0;
}

struct get_ctx {
    struct cdn_archive_reader *reader;
    cdn_err *err; /* why the reader refused */
};

static int on_archive_data(void *ud, int fd, const uint8_t *p, size_t n) {
    (void)fd;
    struct get_ctx *g = ud;
    return cdn_archive_reader_feed(g->reader, p, n, &g->err);
}

int cdn_channel_archive_get_sink(struct cdn_channel *ch, const char *src,
                                 const char *const *excludes, size_t n_excludes,
                                 const struct cdn_archive_sink *sink,
                                 const struct cdn_archive_limits *limits, int timeout_ms,
                                 uint64_t *entries, cdn_err **err) {
    uint64_t deadline = chan_deadline(ch, timeout_ms);
    _cleanup_(cdn_archive_reader_freep) struct cdn_archive_reader *reader = NULL;
    if (cdn_archive_reader_new(limits, sink, &reader) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    struct get_ctx g = {.reader = reader};
    CordonAgent__ArchiveGet ag = CORDON_AGENT__ARCHIVE_GET__INIT;
    ag.path = (char *)src;
    ag.n_excludes = n_excludes;
    ag.excludes = (char **)excludes;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_GET;
    env.archive_get = &ag;
    struct hstream *s;
    int r = chan_open_stream(ch, HS_ARCHIVE_GET, &env, &s, err);
    if (r < 0)
        return r;
    s->on_data = on_archive_data;
    s->ud = &g;
    r = chan_finish_stream(ch, s, deadline, "archive_get", err);
    chan_stream_release(ch, s);
    if (g.err) { /* the reader (or the sink) refused: that is the error that matters */
        r = cdn_err_set(err, cdn_err_code(g.err), "%s: %s", ch->name, cdn_err_msg(g.err));
        cdn_err_free(g.err);
        return r;
    }
    if (r >= 0)
        r = cdn_archive_reader_finish(reader, err);
    if (r >= 0 && entries)
        *entries = cdn_archive_reader_entries(reader);
    return r < 0 ? cdn_err_prefix(err, "fetching '%s'", src) : 0;
}

int cdn_channel_archive_get(struct cdn_channel *ch, const char *src, const char *const *excludes,
                            size_t n_excludes, int dest_dirfd,
                            const struct cdn_archive_limits *limits, int timeout_ms,
                            uint64_t *entries, cdn_err **err) {
    _cleanup_(cdn_archive_extractor_freep) struct cdn_archive_extractor *x = NULL;
    int r = cdn_archive_extractor_new(dest_dirfd, &x, err);
    if (r < 0)
        return r;
    struct cdn_archive_sink sink;
    cdn_archive_extractor_sink(x, &sink);
    r = cdn_channel_archive_get_sink(ch, src, excludes, n_excludes, &sink, limits, timeout_ms,
                                     entries, err);
    if (r >= 0)
        r = cdn_archive_extractor_finish(x, err);
    return r;
}
