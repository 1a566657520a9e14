/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the frame decoder. The first byte picks the mode:
 * - framing: the rest is fed in pieces whose sizes come from the input, so partial reads and
 *   every framing path (oversized, zero, garbage payloads) are exercised;
 * - differential: the rest is one payload; whenever the in-place data-frame decoder accepts it,
 *   protobuf-c must accept it too and agree on every field. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "frame_inplace.h"

static void *plain_alloc(void *ud, size_t size) {
    (void)ud;
    return calloc(1, size);
}

static void same_bytes(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    if (a->len != b->len || (a->len && memcmp(a->data, b->data, a->len) != 0))
        abort();
}

static void differential(const uint8_t *payload, size_t len) {
    cdn_envelope *fast = NULL; /* two calloc'd structs: the envelope and its body */
    if (!cdn_frame_decode_in_place(payload, len, plain_alloc, NULL, &fast))
        return;
    cdn_envelope *ref = (cdn_envelope *)protobuf_c_message_unpack(
        &cordon_agent__envelope__descriptor, NULL, len, payload);
    if (!ref)
        abort(); /* accepted in place, rejected by protobuf-c */
    if (ref->stream != fast->stream || ref->body_case != fast->body_case)
        abort();
    void *body = NULL;
    switch (fast->body_case) {
    case CORDON_AGENT__ENVELOPE__BODY_OUTPUT:
        if (ref->output->fd != fast->output->fd)
            abort();
        same_bytes(&ref->output->data, &fast->output->data);
        body = fast->output;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA:
        same_bytes(&ref->stdin_data->data, &fast->stdin_data->data);
        body = fast->stdin_data;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_FILE_DATA:
        if (ref->file_data->eof != fast->file_data->eof)
            abort();
        same_bytes(&ref->file_data->data, &fast->file_data->data);
        body = fast->file_data;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA:
        if (ref->archive_data->eof != fast->archive_data->eof)
            abort();
        same_bytes(&ref->archive_data->data, &fast->archive_data->data);
        body = fast->archive_data;
        break;
    case CORDON_AGENT__ENVELOPE__BODY_EGRESS_DATA:
        if (ref->egress_data->eof != fast->egress_data->eof)
            abort();
        same_bytes(&ref->egress_data->data, &fast->egress_data->data);
        body = fast->egress_data;
        break;
    default: abort(); /* the in-place decoder only takes data messages */
    }
    protobuf_c_message_free_unpacked(&ref->base, NULL);
    free(body);
    free(fast);
}

static void framing(const uint8_t *data, size_t size, uint32_t max) {
    struct cdn_frame_decoder *d = NULL;
    if (cdn_frame_decoder_new(max, &d) < 0)
        return;
    size_t at = 0;
    while (at < size) {
        size_t piece = (size_t)(data[at] % 64) + 1;
        at++;
        if (piece > size - at)
            piece = size - at;
        cdn_frame_decoder_feed(d, data + at, piece);
        at += piece;
        for (;;) {
            cdn_envelope *env = NULL;
            cdn_err *err = NULL;
            int r = cdn_frame_decoder_next(d, &env, &err);
            cdn_err_free(err);
            if (r == 1) {
                /* Touch what a consumer would: the body name and a re-encode. */
                (void)cdn_frame_body_name(env->body_case);
                struct cdn_buf out = {0};
                cdn_frame_encode(&out, env, 1u << 20, NULL);
                cdn_buf_free(&out);
                continue;
            }
            if (r == -EMSGSIZE) {
                cdn_frame_decoder_free(d);
                return;
            }
            if (r == 0)
                break;
        }
    }
    cdn_frame_decoder_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    if (data[0] & 2)
        differential(data + 1, size - 1);
    else
        framing(data + 1, size - 1, data[0] & 1 ? 4096 : 65536); /* small max: oversize reachable */
    return 0;
}
