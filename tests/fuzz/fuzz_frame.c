/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the frame decoder, fed the input in pieces whose sizes come from the input,
 * so partial reads and every framing path are exercised. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    struct cdn_frame_decoder *d = NULL;
    /* A small maximum makes "oversized" reachable. */
    if (cdn_frame_decoder_new(data[0] & 1 ? 4096 : 65536, &d) < 0)
        return 0;
    size_t at = 1;
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
                return 0;
            }
            if (r == 0)
                break;
        }
    }
    cdn_frame_decoder_free(d);
    return 0;
}
