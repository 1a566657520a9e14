/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_frame: frame encoding, in-place data frames, and the bounded incremental decoder. */
#include "frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "frame_inplace.h"

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

int cdn_frame_encode(struct cdn_buf *out, const cdn_envelope *env, uint32_t max_frame_bytes,
                     cdn_err **err) {
    size_t size = protobuf_c_message_get_packed_size(&env->base);
    if (size > max_frame_bytes)
        return cdn_err_set(err, EMSGSIZE, "%s frame of %zu bytes exceeds the %u-byte maximum",
                           cdn_frame_body_name(env->body_case), size, max_frame_bytes);
    if (cdn_buf_reserve(out, CDN_FRAME_HEADER_BYTES + size) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory queueing a %zu-byte frame", size);
    uint8_t *p = cdn_buf_tail(out);
    put_be32(p, (uint32_t)size);
    protobuf_c_message_pack(&env->base, p + CDN_FRAME_HEADER_BYTES);
    cdn_buf_advance(out, CDN_FRAME_HEADER_BYTES + size);
    return 0;
}

/* ---- in-place data frames ----
 * Layout: be32 length | 0x08 varint(stream) | tag(body) len5 | [0x08 fd] | 0x0a len5 | data
 *         | [0x10 0x01 when eof]. Lengths are 5-byte varints (0x80-padded), which every protobuf
 * parser accepts, so they can be filled in after the payload has been read in place. */

#define LEN5 5u
/* 4 (frame) + 11 (stream) + 2 (body tag) + 5 + 2 (fd) + 1 (data tag) + 5 + 2 (eof). */
#define DATA_OVERHEAD_MAX 32u

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static void put_len5(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)((v & 0x7f) | 0x80);
        v >>= 7;
    }
    p[4] = (uint8_t)(v & 0x7f);
}

size_t cdn_frame_data_overhead(void) { return DATA_OVERHEAD_MAX; }

int cdn_frame_data_begin(struct cdn_buf *out, CordonAgent__Envelope__BodyCase kind, uint64_t stream,
                         uint32_t fd, size_t max_payload, struct cdn_frame_data_slot *slot) {
    if (max_payload > UINT32_MAX - DATA_OVERHEAD_MAX ||
        cdn_buf_reserve(out, DATA_OVERHEAD_MAX + max_payload) < 0)
        return -ENOMEM;
    uint8_t *base = out->data;
    size_t at = out->tail;
    struct cdn_frame_data_slot pd = {.frame_start = at};
    at += CDN_FRAME_HEADER_BYTES;
    base[at++] = 0x08;
    at += put_varint(base + at, stream);
    at += put_varint(base + at, ((uint64_t)kind << 3) | 2);
    pd.body_len_at = at;
    at += LEN5;
    if (kind == CORDON_AGENT__ENVELOPE__BODY_OUTPUT) {
        base[at++] = 0x08;
        at += put_varint(base + at, fd);
        base[at++] = 0x12; /* Output.data is field 2 */
    } else {
        base[at++] = 0x0a; /* data is field 1 of StdinData, FileData, ArchiveData */
    }
    pd.data_len_at = at;
    at += LEN5;
    pd.has_eof = kind == CORDON_AGENT__ENVELOPE__BODY_FILE_DATA ||
                 kind == CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA ||
                 kind == CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA;
    pd.payload = base + at;
    *slot = pd;
    return 0;
}

/* Fills the three lengths of a data frame whose payload is n bytes and which ends at `end`. */
static void put_lengths(uint8_t *base, const struct cdn_frame_data_slot *pd, size_t n, size_t end) {
    put_len5(base + pd->data_len_at, (uint32_t)n);
    put_len5(base + pd->body_len_at, (uint32_t)(end - (pd->body_len_at + LEN5)));
    put_be32(base + pd->frame_start, (uint32_t)(end - pd->frame_start - CDN_FRAME_HEADER_BYTES));
}

void cdn_frame_data_end(struct cdn_buf *out, const struct cdn_frame_data_slot *slot, size_t n,
                        bool eof) {
    uint8_t *base = out->data;
    size_t end = slot->data_len_at + LEN5 + n;
    if (slot->has_eof && eof) {
        base[end++] = 0x10;
        base[end++] = 0x01;
    }
    put_lengths(base, slot, n, end);
    out->tail = end;
}

int cdn_frame_data_header(struct cdn_buf *out, CordonAgent__Envelope__BodyCase kind,
                          uint64_t stream, uint32_t fd, size_t n) {
    struct cdn_frame_data_slot slot;
    int r = cdn_frame_data_begin(out, kind, stream, fd, 0, &slot);
    if (r < 0)
        return r;
    if (n > UINT32_MAX - DATA_OVERHEAD_MAX)
        return -EMSGSIZE;
    size_t data_at = slot.data_len_at + LEN5;
    put_lengths(out->data, &slot, n, data_at + n);
    out->tail = data_at;
    return 0;
}

/* ---- decoder ----
 * protobuf-c allocates every unpacked message through our arena: one bump region reset per
 * frame, so decoding does not churn the heap, and a frame's worst-case expansion beyond the
 * region falls back to tracked malloc blocks freed at the next reset. */

struct arena_block {
    struct arena_block *next;
    max_align_t payload[];
};

struct cdn_frame_decoder {
    uint32_t max_frame_bytes;
    bool broken;
    struct cdn_buf in;
    uint8_t *region;
    size_t region_cap;
    size_t region_used;
    struct arena_block *extra;
    ProtobufCAllocator alloc;
};

static void *arena_alloc(void *ud, size_t size) {
    struct cdn_frame_decoder *d = ud;
    size_t aligned = (size + 15u) & ~(size_t)15u;
    if (aligned >= size && d->region_cap - d->region_used >= aligned) {
        void *p = d->region + d->region_used;
        d->region_used += aligned;
        return p;
    }
    if (size > SIZE_MAX - sizeof(struct arena_block))
        return NULL;
    struct arena_block *b = malloc(sizeof(*b) + size);
    if (!b)
        return NULL;
    b->next = d->extra;
    d->extra = b;
    return b->payload;
}

static void arena_free(void *ud, void *p) {
    (void)ud;
    (void)p; /* released all at once by arena_reset */
}

static void arena_reset(struct cdn_frame_decoder *d) {
    d->region_used = 0;
    while (d->extra) {
        struct arena_block *next = d->extra->next;
        free(d->extra);
        d->extra = next;
    }
}

int cdn_frame_decoder_new(uint32_t max_frame_bytes, struct cdn_frame_decoder **out) {
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->max_frame_bytes = max_frame_bytes;
    /* A data frame unpacks to its bytes plus a few small structs. */
    d->region_cap = (size_t)max_frame_bytes + 4096;
    d->region = malloc(d->region_cap);
    if (!d->region)
        return -ENOMEM;
    d->alloc = (ProtobufCAllocator){.alloc = arena_alloc, .free = arena_free, .allocator_data = d};
    *out = TAKE_PTR(d);
    return 0;
}

void cdn_frame_decoder_free(struct cdn_frame_decoder *d) {
    if (!d)
        return;
    arena_reset(d);
    free(d->region);
    cdn_buf_free(&d->in);
    free(d);
}

void cdn_frame_decoder_freep(struct cdn_frame_decoder **d) {
    cdn_frame_decoder_free(*d);
    *d = NULL;
}

int cdn_frame_decoder_space(struct cdn_frame_decoder *d, size_t min, uint8_t **p, size_t *n) {
    arena_reset(d);
    if (cdn_buf_reserve(&d->in, min) < 0)
        return -ENOMEM;
    *p = cdn_buf_tail(&d->in);
    *n = cdn_buf_room(&d->in);
    return 0;
}

void cdn_frame_decoder_commit(struct cdn_frame_decoder *d, size_t n) { cdn_buf_advance(&d->in, n); }

int cdn_frame_decoder_feed(struct cdn_frame_decoder *d, const void *data, size_t n) {
    arena_reset(d);
    return cdn_buf_append(&d->in, data, n);
}

size_t cdn_frame_decoder_pending(const struct cdn_frame_decoder *d) { return cdn_buf_len(&d->in); }

int cdn_frame_decoder_next(struct cdn_frame_decoder *d, cdn_envelope **env, cdn_err **err) {
    arena_reset(d);
    if (d->broken)
        return cdn_err_set(err, EMSGSIZE, "channel framing was lost earlier");
    size_t avail = cdn_buf_len(&d->in);
    if (avail < CDN_FRAME_HEADER_BYTES)
        return 0;
    uint32_t len = get_be32(cdn_buf_head(&d->in));
    if (len == 0 || len > d->max_frame_bytes) {
        d->broken = true;
        return cdn_err_set(err, EMSGSIZE, "frame length %u is %s (maximum %u bytes)", len,
                           len ? "over the limit" : "zero", d->max_frame_bytes);
    }
    if (avail - CDN_FRAME_HEADER_BYTES < len)
        return 0;
    const uint8_t *payload = cdn_buf_head(&d->in) + CDN_FRAME_HEADER_BYTES;
    /* Consuming only moves the head: the payload stays where it is until the next call. */
    cdn_buf_consume(&d->in, CDN_FRAME_HEADER_BYTES + (size_t)len);
    return cdn_frame_decode(d, payload, len, env, err);
}

int cdn_frame_decode(struct cdn_frame_decoder *d, const uint8_t *payload, size_t len,
                     cdn_envelope **env, cdn_err **err) {
    arena_reset(d);
    if (cdn_frame_decode_in_place(payload, len, arena_alloc, d, env))
        return 1;
    arena_reset(d);
    ProtobufCMessage *m =
        protobuf_c_message_unpack(&cordon_agent__envelope__descriptor, &d->alloc, len, payload);
    if (!m)
        return cdn_err_set(err, EBADMSG, "a %zu-byte frame is not a valid Envelope", len);
    *env = (cdn_envelope *)m;
    return 1;
}

const char *cdn_frame_body_name(CordonAgent__Envelope__BodyCase c) {
    switch (c) {
    case CORDON_AGENT__ENVELOPE__BODY_HELLO: return "hello";
    case CORDON_AGENT__ENVELOPE__BODY_PING: return "ping";
    case CORDON_AGENT__ENVELOPE__BODY_PONG: return "pong";
    case CORDON_AGENT__ENVELOPE__BODY_EXEC: return "exec";
    case CORDON_AGENT__ENVELOPE__BODY_STARTED: return "started";
    case CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA: return "stdin_data";
    case CORDON_AGENT__ENVELOPE__BODY_STDIN_CLOSE: return "stdin_close";
    case CORDON_AGENT__ENVELOPE__BODY_SIGNAL: return "signal";
    case CORDON_AGENT__ENVELOPE__BODY_OUTPUT: return "output";
    case CORDON_AGENT__ENVELOPE__BODY_EXIT: return "exit";
    case CORDON_AGENT__ENVELOPE__BODY_FILE_READ: return "file_read";
    case CORDON_AGENT__ENVELOPE__BODY_FILE_WRITE: return "file_write";
    case CORDON_AGENT__ENVELOPE__BODY_FILE_DATA: return "file_data";
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_PUT: return "archive_put";
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_GET: return "archive_get";
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA: return "archive_data";
    case CORDON_AGENT__ENVELOPE__BODY_DONE: return "done";
    case CORDON_AGENT__ENVELOPE__BODY_CREDIT: return "credit";
    case CORDON_AGENT__ENVELOPE__BODY_ERROR: return "error";
    case CORDON_AGENT__ENVELOPE__BODY_SHUTDOWN: return "shutdown";
    case CORDON_AGENT__ENVELOPE__BODY_LIST_DIR: return "list_dir";
    case CORDON_AGENT__ENVELOPE__BODY_DIR_LISTING: return "dir_listing";
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_OPEN: return "egress_open";
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_READY: return "egress_ready";
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA: return "egress_data";
    case CORDON_AGENT__ENVELOPE__BODY_PORT_FORWARD: return "port_forward";
    case CORDON_AGENT__ENVELOPE__BODY_PORT_FORWARD_READY: return "port_forward_ready";
    default: return "unknown";
    }
}
