/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_frame: the wire codec of the host<->guest channel (4-byte big-endian length + Envelope). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent.pb-c.h"
#include "buf.h"
#include "err.h"

typedef CordonAgent__Envelope cdn_envelope;

#define CDN_PROTOCOL_VERSION 1u
#define CDN_FRAME_HEADER_BYTES 4u
#define CDN_FRAME_DEFAULT_MAX (1u << 20)
/* Smallest max_frame_bytes either side may negotiate: room for a useful data chunk. */
#define CDN_FRAME_MIN_MAX 4096u

/* ListDir's bounds, the same on both sides: entries asked for (0 means the default), a name's
 * bytes, a symlink target's bytes. */
#define CDN_DIR_DEFAULT_ENTRIES 1000u
#define CDN_DIR_MAX_ENTRIES 10000u
#define CDN_DIR_NAME_MAX 255u
#define CDN_DIR_TARGET_MAX 4096u

/* Appends one frame holding env to out. Fails with -EMSGSIZE if the encoding exceeds
 * max_frame_bytes. */
int cdn_frame_encode(struct cdn_buf *out, const cdn_envelope *env, uint32_t max_frame_bytes,
                     cdn_err **err);

/* Data messages, built in place so payload bytes are read straight into the output buffer:
 * cdn_frame_data_begin reserves a frame for up to max_payload bytes (-ENOMEM if it cannot) and
 * says in slot where they go; cdn_frame_data_end finishes it with the n bytes actually written
 * there (n may be 0). kind is one of the Envelope body cases Output, StdinData, FileData or
 * ArchiveData; fd is used by Output only, eof by FileData and ArchiveData only. No other frame may
 * be appended between the two calls. The frame is valid protobuf: lengths use fixed 5-byte varints.
 */
struct cdn_frame_data_slot {
    uint8_t *payload;   /* where the payload goes; valid until the buffer is next changed */
    size_t frame_start; /* offsets into the buffer, filled in by cdn_frame_data_end */
    size_t body_len_at;
    size_t data_len_at;
    bool has_eof;
};
int cdn_frame_data_begin(struct cdn_buf *out, CordonAgent__Envelope__BodyCase kind, uint64_t stream,
                         uint32_t fd, size_t max_payload, struct cdn_frame_data_slot *slot);
void cdn_frame_data_end(struct cdn_buf *out, const struct cdn_frame_data_slot *slot, size_t n,
                        bool eof);
/* Appends only the head of a data frame that declares n payload bytes (no eof); the caller must
 * send exactly those n bytes itself right after it (e.g. with sendfile). */
int cdn_frame_data_header(struct cdn_buf *out, CordonAgent__Envelope__BodyCase kind,
                          uint64_t stream, uint32_t fd, size_t n);
/* Frame bytes a data message of max_payload bytes takes at most, header included. */
size_t cdn_frame_data_overhead(void);

/* Incremental decoder. Reads go straight into its buffer (space/commit) or are copied (feed). */
struct cdn_frame_decoder;

int cdn_frame_decoder_new(uint32_t max_frame_bytes, struct cdn_frame_decoder **out);
void cdn_frame_decoder_free(struct cdn_frame_decoder *d);
void cdn_frame_decoder_freep(struct cdn_frame_decoder **d);
/* Room for at least min bytes of input; returns -ENOMEM or 0 with *p, *n set. */
int cdn_frame_decoder_space(struct cdn_frame_decoder *d, size_t min, uint8_t **p, size_t *n);
void cdn_frame_decoder_commit(struct cdn_frame_decoder *d, size_t n);
int cdn_frame_decoder_feed(struct cdn_frame_decoder *d, const void *data, size_t n);
/* Decodes the next whole frame. Returns 1 and sets *env (owned by the decoder, valid until the
 * next call on it), 0 when more input is needed, -EMSGSIZE when a length exceeds the maximum or is
 * zero (the stream can no longer be framed: every later call fails the same way), -EBADMSG when a
 * frame's payload is not a valid Envelope (that frame is skipped; decoding can go on). The data
 * bytes of Output, StdinData, FileData and ArchiveData point into the decoder's input buffer. */
int cdn_frame_decoder_next(struct cdn_frame_decoder *d, cdn_envelope **env, cdn_err **err);
/* Decodes one frame's payload (no length prefix) with the decoder's memory; *env is valid until
 * the next call on the decoder, and data messages' bytes point into payload, which must stay
 * untouched as long. Returns 1, or -EBADMSG if payload is not a valid Envelope. */
int cdn_frame_decode(struct cdn_frame_decoder *d, const uint8_t *payload, size_t len,
                     cdn_envelope **env, cdn_err **err);
/* Bytes received but not yet decoded. */
size_t cdn_frame_decoder_pending(const struct cdn_frame_decoder *d);

/* Human name of an envelope body case, for messages ("exec", "output", ...). */
const char *cdn_frame_body_name(CordonAgent__Envelope__BodyCase c);
