/* SPDX-License-Identifier: Apache-2.0 */
/* Internals shared by the channel's files (core, exec, transfers); not part of the API. */
#pragma once

#include "buf.h"
#include "channel.h"
#include "credit.h"
#include "frame.h"

struct pollfd;

enum hstream_kind {
    HS_EXEC,
    HS_FILE_READ,
    HS_FILE_WRITE,
    HS_ARCHIVE_PUT,
    HS_ARCHIVE_GET,
    HS_PING,
    HS_LIST_DIR
};

/* Called for each data frame's bytes (Output: fd 1/2; FileData, ArchiveData: fd 0). */
typedef int (*hstream_data_fn)(void *ud, int fd, const uint8_t *data, size_t len);

struct hstream {
    uint64_t id;
    enum hstream_kind kind;
    hstream_data_fn on_data;
    void *ud;
    struct cdn_credit recv; /* what the agent may still send us */
    uint64_t send_credit;   /* bytes we may still send */
    bool data_eof;          /* FileData/ArchiveData with eof seen */
    bool done;              /* terminal message (Exit, Done, Error) seen */
    bool cancelled;         /* we cancelled it; the agent will confirm */
    bool released;          /* its owner let go: freed when it ends (a tombstone until then) */
    cdn_err *err;           /* the stream's error, if it ended with one */
    uint32_t pid;
    struct cdn_exec_result exit;
    uint64_t done_bytes, done_entries;
    uint32_t want_entries;           /* HS_LIST_DIR: the most asked for */
    struct cdn_dir_listing *listing; /* and its answer, checked */
    struct hstream *next;
};

struct chan_egress;
/* Most egress connections (open or being decided) a channel carries at once. */
#define CHAN_EGRESS_MAX 64

struct cdn_channel {
    struct cdn_channel_opts opts;
    struct chan_egress *egress; /* NULL until the agent opens its first egress stream */
    struct cdn_channel_egress egress_hooks;
    bool has_egress_hooks;
    char *name;
    int fd;
    struct cdn_frame_decoder *dec;
    struct cdn_buf out;
    cdn_err *fault; /* set once the channel is unusable; every call reports it */
    uint64_t next_id;
    size_t n_tombstones; /* released streams the agent has not ended yet */
    bool shutdown_sent;
    bool shutdown_acked;
    struct hstream *streams;
    /* from the agent's Hello */
    bool hello_seen;
    uint64_t session; /* our Hello's, echoed by the agent */
    uint32_t peer_version;
    char *peer_software;
    char **peer_caps;
    size_t n_peer_caps;
    uint32_t peer_max_frame;
    uint32_t peer_window;
};

uint64_t chan_deadline(const struct cdn_channel *ch, int timeout_ms);
int chan_remaining_ms(uint64_t deadline);
int chan_fail(struct cdn_channel *ch, cdn_err **err);
struct hstream *chan_stream_new(struct cdn_channel *ch, enum hstream_kind kind);
struct hstream *chan_stream_find(struct cdn_channel *ch, uint64_t id);
void chan_stream_release(struct cdn_channel *ch, struct hstream *s);
/* Queues env on stream id and writes what the socket takes. */
int chan_send(struct cdn_channel *ch, uint64_t id, cdn_envelope *env, cdn_err **err);
/* Sends len bytes as data frames of kind on s, waiting for credit; eof on the last frame. */
int chan_send_data(struct cdn_channel *ch, struct hstream *s, CordonAgent__Envelope__BodyCase kind,
                   const uint8_t *data, size_t len, bool eof, uint64_t deadline, cdn_err **err);
/* Handles traffic until s is done or the deadline passes (then -ETIMEDOUT). */
int chan_wait_done(struct cdn_channel *ch, struct hstream *s, uint64_t deadline, const char *what,
                   cdn_err **err);
/* A new stream of kind opened with the request env (released again if it cannot be sent). */
int chan_open_stream(struct cdn_channel *ch, enum hstream_kind kind, cdn_envelope *env,
                     struct hstream **out, cdn_err **err);
/* chan_wait_done, then the stream's own error (the agent's Error) if it ended with one. */
int chan_finish_stream(struct cdn_channel *ch, struct hstream *s, uint64_t deadline,
                       const char *what, cdn_err **err);
/* Cancels s (the agent kills what it runs); s stays until the agent confirms. */
void chan_cancel(struct cdn_channel *ch, struct hstream *s, const char *why);
int chan_pump(struct cdn_channel *ch, int timeout_ms, cdn_err **err);

/* The channel is unusable from here on; the first reason is the one reported. Returns -code. */
int chan_fault(struct cdn_channel *ch, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* An Error on stream id (ending it, from our side). */
void chan_send_error(struct cdn_channel *ch, uint64_t id, CordonAgent__ErrorCode code,
                     const char *msg);
/* n bytes received on stream id were consumed: a Credit goes back when worthwhile. */
void chan_grant(struct cdn_channel *ch, uint64_t id, struct cdn_credit *recv, size_t n);
/* Writes what the socket takes of the queued output (a failure is a fault). */
int chan_flush(struct cdn_channel *ch);

/* ---- folders (channel_dir.c) ---- */
/* A DirListing on s: checked against what was asked (a lie is a guest fault) and kept. */
int chan_dir_listing(struct cdn_channel *ch, struct hstream *s, const CordonAgent__DirListing *l);

/* ---- egress (channel_egress.c): the streams the agent opens ---- */
/* A frame on an even stream. */
int chan_egress_frame(struct cdn_channel *ch, const cdn_envelope *env);
/* The fds the pump must watch for egress (decisions arriving, upstream sockets), at most max. */
size_t chan_egress_pollfds(struct cdn_channel *ch, struct pollfd *p, size_t max);
void chan_egress_events(struct cdn_channel *ch, const struct pollfd *p, size_t n);
/* Ends every egress connection (recorded through the hooks) and waits for pending decisions. */
void chan_egress_free(struct cdn_channel *ch);

/* The next stream id of ours (odd, increasing). */
uint64_t chan_next_stream_id(struct cdn_channel *ch);
/* Whether an odd stream id is a preview's (open, or ended lately: its late frames are dropped). */
bool chan_egress_owns(struct cdn_channel *ch, uint64_t id);
