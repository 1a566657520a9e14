/* SPDX-License-Identifier: Apache-2.0 */
/* Frame codec: round trips, partial input, in-place data frames, and every framing violation. */
#include <errno.h>

#include "cleanup.h"
#include "frame.h"
#include "test.h"

static void encode_exec(struct cdn_buf *b, uint64_t stream, const char *arg) {
    char *argv[] = {(char *)"echo", (char *)arg};
    CordonAgent__Exec x = CORDON_AGENT__EXEC__INIT;
    x.n_argv = 2;
    x.argv = argv;
    x.timeout_ms = 1234;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.stream = stream;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EXEC;
    env.exec = &x;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_frame_encode(b, &env, CDN_FRAME_DEFAULT_MAX, &err), err);
}

TEST(round_trip_byte_by_byte) {
    struct cdn_buf b = {0};
    encode_exec(&b, 7, "hello");
    encode_exec(&b, 9, "world");
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(CDN_FRAME_DEFAULT_MAX, &d), 0);
    int got = 0;
    for (size_t i = 0; i < cdn_buf_len(&b); i++) {
        ASSERT_EQ(cdn_frame_decoder_feed(d, cdn_buf_head(&b) + i, 1), 0);
        cdn_envelope *env;
        cdn_err *err = NULL;
        int r = cdn_frame_decoder_next(d, &env, &err);
        ASSERT_TRUE(r >= 0);
        if (r == 1) {
            ASSERT_EQ(env->body_case, CORDON_AGENT__ENVELOPE__BODY_EXEC);
            ASSERT_EQ(env->stream, got == 0 ? 7 : 9);
            ASSERT_STREQ(env->exec->argv[1], got == 0 ? "hello" : "world");
            ASSERT_EQ(env->exec->timeout_ms, 1234);
            got++;
        }
    }
    ASSERT_EQ(got, 2);
    ASSERT_EQ(cdn_frame_decoder_pending(d), 0);
    cdn_buf_free(&b);
}

TEST(many_frames_in_one_read) {
    struct cdn_buf b = {0};
    for (int i = 0; i < 100; i++)
        encode_exec(&b, (uint64_t)i * 2 + 1, "x");
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(4096, &d), 0);
    ASSERT_EQ(cdn_frame_decoder_feed(d, cdn_buf_head(&b), cdn_buf_len(&b)), 0);
    cdn_envelope *env;
    cdn_err *err = NULL;
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(cdn_frame_decoder_next(d, &env, &err), 1);
        ASSERT_EQ(env->stream, (uint64_t)i * 2 + 1);
    }
    ASSERT_EQ(cdn_frame_decoder_next(d, &env, &err), 0);
    cdn_buf_free(&b);
}

/* The in-place data frames use padded varints: protobuf-c must decode them to the same values. */
TEST(data_frames_decode_with_protobuf_c) {
    static const CordonAgent__Envelope__BodyCase kinds[] = {
        CORDON_AGENT__ENVELOPE__BODY_OUTPUT, CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA,
        CORDON_AGENT__ENVELOPE__BODY_FILE_DATA, CORDON_AGENT__ENVELOPE__BODY_ARCHIVE_DATA};
    static const size_t sizes[] = {0, 1, 127, 128, 16383, 16384, 300000};
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(CDN_FRAME_DEFAULT_MAX, &d), 0);
    for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
        for (size_t si = 0; si < ELEMENTSOF(sizes); si++) {
            struct cdn_buf b = {0};
            struct cdn_frame_data_slot slot;
            uint64_t stream = 0x123456789ull + si;
            ASSERT_EQ(cdn_frame_data_begin(&b, kinds[k], stream, 2, sizes[si] + 10, &slot), 0);
            for (size_t i = 0; i < sizes[si]; i++)
                slot.payload[i] = (uint8_t)(i * 7 + k);
            cdn_frame_data_end(&b, &slot, sizes[si], si % 2 == 1);
            ASSERT_EQ(cdn_frame_decoder_feed(d, cdn_buf_head(&b), cdn_buf_len(&b)), 0);
            cdn_envelope *env;
            cdn_err *err = NULL;
            ASSERT_EQ(cdn_frame_decoder_next(d, &env, &err), 1);
            ASSERT_EQ(env->stream, stream);
            ASSERT_EQ(env->body_case, kinds[k]);
            const ProtobufCBinaryData *data = NULL;
            bool eof = false;
            switch (kinds[k]) {
            case CORDON_AGENT__ENVELOPE__BODY_OUTPUT:
                ASSERT_EQ(env->output->fd, 2);
                data = &env->output->data;
                break;
            case CORDON_AGENT__ENVELOPE__BODY_STDIN_DATA: data = &env->stdin_data->data; break;
            case CORDON_AGENT__ENVELOPE__BODY_FILE_DATA:
                data = &env->file_data->data;
                eof = env->file_data->eof;
                ASSERT_EQ(eof, si % 2 == 1);
                break;
            default:
                data = &env->archive_data->data;
                eof = env->archive_data->eof;
                ASSERT_EQ(eof, si % 2 == 1);
                break;
            }
            ASSERT_EQ(data->len, sizes[si]);
            for (size_t i = 0; i < sizes[si]; i++)
                if (data->data[i] != (uint8_t)(i * 7 + k))
                    FAIL("byte %zu differs", i);
            cdn_buf_free(&b);
        }
    }
}

TEST(oversized_length_breaks_framing_for_good) {
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(4096, &d), 0);
    const uint8_t hdr[] = {0x00, 0x00, 0x10, 0x01}; /* 4097 */
    ASSERT_EQ(cdn_frame_decoder_feed(d, hdr, sizeof(hdr)), 0);
    cdn_envelope *env;
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_frame_decoder_next(d, &env, &err), err, "frame length 4097 is over the limit");
    ASSERT_EQ(cdn_frame_decoder_next(d, &env, &err), -EMSGSIZE);
    cdn_err_free(err);
}

TEST(zero_length_is_a_framing_violation) {
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(4096, &d), 0);
    const uint8_t hdr[] = {0, 0, 0, 0};
    ASSERT_EQ(cdn_frame_decoder_feed(d, hdr, sizeof(hdr)), 0);
    cdn_envelope *env;
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_frame_decoder_next(d, &env, &err), err, "is zero");
    cdn_err_free(err);
}

TEST(garbage_payload_is_skipped_and_decoding_goes_on) {
    struct cdn_buf b = {0};
    const uint8_t garbage[] = {0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 0xff};
    cdn_buf_append(&b, garbage, sizeof(garbage));
    encode_exec(&b, 3, "after");
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(4096, &d), 0);
    ASSERT_EQ(cdn_frame_decoder_feed(d, cdn_buf_head(&b), cdn_buf_len(&b)), 0);
    cdn_envelope *env;
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_frame_decoder_next(d, &env, &err), err, "not a valid Envelope");
    ASSERT_EQ(cdn_frame_decoder_next(d, &env, &err), 1);
    ASSERT_STREQ(env->exec->argv[1], "after");
    cdn_err_free(err);
    cdn_buf_free(&b);
}

TEST(truncated_frame_waits_for_more) {
    struct cdn_buf b = {0};
    encode_exec(&b, 5, "partial");
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(4096, &d), 0);
    ASSERT_EQ(cdn_frame_decoder_feed(d, cdn_buf_head(&b), cdn_buf_len(&b) - 1), 0);
    cdn_envelope *env;
    cdn_err *err = NULL;
    ASSERT_EQ(cdn_frame_decoder_next(d, &env, &err), 0);
    ASSERT_EQ(cdn_frame_decoder_pending(d), cdn_buf_len(&b) - 1);
    cdn_buf_free(&b);
}

TEST(encode_refuses_frames_over_the_maximum) {
    struct cdn_buf b = {0};
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *argv[] = {big};
    CordonAgent__Exec x = CORDON_AGENT__EXEC__INIT;
    x.n_argv = 1;
    x.argv = argv;
    cdn_envelope env = CORDON_AGENT__ENVELOPE__INIT;
    env.body_case = CORDON_AGENT__ENVELOPE__BODY_EXEC;
    env.exec = &x;
    cdn_err *err = NULL;
    ASSERT_FAILS(cdn_frame_encode(&b, &env, 4096, &err), err, "exceeds the 4096-byte maximum");
    ASSERT_EQ(cdn_buf_len(&b), 0);
    cdn_err_free(err);
    cdn_buf_free(&b);
}

/* A data frame with a field this build does not know (a newer peer) still decodes, through
 * protobuf-c instead of in place, with the same result. */
TEST(data_frame_with_unknown_field_decodes_the_same) {
    /* Envelope{stream=5, output{fd=2, data="abc", field 15 = 7}} */
    const uint8_t payload[] = {0x08, 0x05, 0x52, 0x09, 0x08, 0x02, 0x12,
                               0x03, 'a',  'b',  'c',  0x78, 0x07};
    uint8_t frame[4 + sizeof(payload)] = {0, 0, 0, sizeof(payload)};
    memcpy(frame + 4, payload, sizeof(payload));
    _cleanup_(cdn_frame_decoder_freep) struct cdn_frame_decoder *d = NULL;
    ASSERT_EQ(cdn_frame_decoder_new(4096, &d), 0);
    ASSERT_EQ(cdn_frame_decoder_feed(d, frame, sizeof(frame)), 0);
    cdn_envelope *env;
    cdn_err *err = NULL;
    ASSERT_EQ(cdn_frame_decoder_next(d, &env, &err), 1);
    ASSERT_EQ(env->stream, 5);
    ASSERT_EQ(env->body_case, CORDON_AGENT__ENVELOPE__BODY_OUTPUT);
    ASSERT_EQ(env->output->fd, 2);
    ASSERT_EQ(env->output->data.len, 3);
    ASSERT_TRUE(memcmp(env->output->data.data, "abc", 3) == 0);
}
