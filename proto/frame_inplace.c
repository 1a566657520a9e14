/* SPDX-License-Identifier: Apache-2.0 */
/* In-place decoding of data frames: bulk output and archive bytes are the channel's hot path, and
 * protobuf-c would copy every payload once more. Only the simplest well-formed shapes are taken
 * here; everything else is left to protobuf-c, and the fuzz target checks that both agree. */
#include "frame_inplace.h"

#include <string.h>

struct cursor {
    const uint8_t *p, *end;
};

static bool varint(struct cursor *c, uint64_t *v) {
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64 && c->p < c->end; shift += 7) {
        uint8_t b = *c->p++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return true;
        }
    }
    return false; /* truncated, or longer than 10 bytes */
}

static bool length_delimited(struct cursor *c, struct cursor *inner) {
    uint64_t n;
    if (!varint(c, &n) || n > (uint64_t)(c->end - c->p))
        return false;
    *inner = (struct cursor){c->p, c->p + n};
    c->p += n;
    return true;
}

/* The body of one of the four data messages: fields (data, and fd or eof), each at most once. */
struct data_body {
    ProtobufCBinaryData data;
    uint32_t fd;
    bool eof;
};

static bool parse_body(struct cursor c, CordonAgent__Envelope__BodyCase kind, struct data_body *b) {
    bool output = kind == CORDON_AGENT__ENVELOPE__BODY_OUTPUT;
    bool has_eof = kind == CORDON_AGENT__ENVELOPE__BODY_FILE_DATA ||
                   kind == CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA ||
                   kind == CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA;
    uint32_t data_field = output ? 2 : 1;
    bool seen_data = false, seen_scalar = false;
    *b = (struct data_body){0};
    while (c.p < c.end) {
        uint64_t tag, v;
        if (!varint(&c, &tag))
            return false;
        uint64_t field = tag >> 3, wire = tag & 7;
        if (field == data_field && wire == 2 && !seen_data) {
            struct cursor d;
            if (!length_delimited(&c, &d))
                return false;
            b->data = (ProtobufCBinaryData){.len = (size_t)(d.end - d.p), .data = (uint8_t *)d.p};
            seen_data = true;
        } else if (((output && field == 1) || (has_eof && field == 2)) && wire == 0 &&
                   !seen_scalar) {
            if (!varint(&c, &v))
                return false;
            if (output)
                b->fd = (uint32_t)v;
            else
                b->eof = v != 0;
            seen_scalar = true;
        } else {
            return false;
        }
    }
    return true;
}

static bool is_data_kind(uint64_t field) {
    return field == CORDON_AGENT__ENVELOPE__BODY_OUTPUT ||
           field == CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA ||
           field == CORDON_AGENT__ENVELOPE__BODY_FILE_DATA ||
           field == CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA ||
           field == CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA;
}

bool cdn_frame_decode_in_place(const uint8_t *payload, size_t len,
                               void *(*alloc)(void *ud, size_t size), void *ud,
                               cdn_envelope **out) {
    struct cursor c = {payload, payload + len}, body = {0};
    uint64_t stream = 0;
    CordonAgent__Envelope__BodyCase kind = CORDON_AGENT__ENVELOPE__BODY__NOT_SET;
    bool seen_stream = false;
    while (c.p < c.end) {
        uint64_t tag;
        if (!varint(&c, &tag))
            return false;
        uint64_t field = tag >> 3, wire = tag & 7;
        if (field == 1 && wire == 0 && !seen_stream) {
            if (!varint(&c, &stream))
                return false;
            seen_stream = true;
        } else if (is_data_kind(field) && wire == 2 &&
                   kind == CORDON_AGENT__ENVELOPE__BODY__NOT_SET) {
            if (!length_delimited(&c, &body))
                return false;
            kind = (CordonAgent__Envelope__BodyCase)field;
        } else {
            return false;
        }
    }
    struct data_body b;
    if (kind == CORDON_AGENT__ENVELOPE__BODY__NOT_SET || !parse_body(body, kind, &b))
        return false;
    cdn_envelope *env = alloc(ud, sizeof(*env));
    if (!env)
        return false;
    cordon_agent__envelope__init(env);
    env->stream = stream;
    env->body_case = kind;
    switch (kind) {
    case CORDON_AGENT__ENVELOPE__BODY_OUTPUT:
        if (!(env->output = alloc(ud, sizeof(*env->output))))
            return false;
        cordon_agent__output__init(env->output);
        env->output->fd = b.fd;
        env->output->data = b.data;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA:
        if (!(env->stdin_data = alloc(ud, sizeof(*env->stdin_data))))
            return false;
        cordon_agent__stdin_data__init(env->stdin_data);
        env->stdin_data->data = b.data;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_FILE_DATA:
        if (!(env->file_data = alloc(ud, sizeof(*env->file_data))))
            return false;
        cordon_agent__file_data__init(env->file_data);
        env->file_data->data = b.data;
        env->file_data->eof = b.eof;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA:
        if (!(env->egress_data = alloc(ud, sizeof(*env->egress_data))))
            return false;
        cordon_agent__egress_data__init(env->egress_data);
        env->egress_data->data = b.data;
        env->egress_data->eof = b.eof;
        break;
    default:
        if (!(env->archive_data = alloc(ud, sizeof(*env->archive_data))))
            return false;
        cordon_agent__archive_data__init(env->archive_data);
        env->archive_data->data = b.data;
        env->archive_data->eof = b.eof;
        break;
    }
    *out = env;
    return true;
}
