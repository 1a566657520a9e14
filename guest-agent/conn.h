/* SPDX-License-Identifier: Apache-2.0 */
/* agent_conn: the agent's end of the channel: framing, handshake, stream table, credits. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "credit.h"
#include "err.h"
#include "frame.h"
#include "loop.h"

struct agent_conn;
struct agent_stream;

struct agent_stream_ops {
    /* A frame for this stream (any body but Credit, which the connection handles). The envelope
     * is valid only during the call. Data frames were already checked against our credit. */
    void (*on_frame)(struct agent_stream *s, const cdn_envelope *env);
    /* Send credit or output room became available after agent_conn_send_room returned 0. */
    void (*on_writable)(struct agent_stream *s);
    /* The stream is closed (by its owner or because the connection ends): release everything,
     * including the struct embedding s. Processes still running are killed. */
    void (*destroy)(struct agent_stream *s);
};

/* Embedded in each stream implementation's struct; the connection owns the table of them. */
struct agent_stream {
    uint64_t id;
    const struct agent_stream_ops *ops;
    struct agent_conn *conn;
    uint64_t send_credit;   /* bytes we may still send to the host on this stream */
    struct cdn_credit recv; /* what the host may still send us */
    bool blocked;           /* waiting for send credit or output room */
    struct agent_stream *next;
};

struct agent_conn_opts {
    uint32_t max_frame_bytes; /* what we accept */
    uint32_t stream_window;   /* what each stream may send us before our first Credit */
    uint32_t max_streams;
    bool take_host_seed; /* set the clock and reseed the RNG from each host's hello (in a VM) */
};

struct agent_conn_handlers {
    /* A frame that opens a new stream (Exec, FileRead, FileWrite, ArchivePut, ArchiveGet): the
     * handler registers a stream with agent_conn_add_stream or answers with an Error on id. */
    void (*open)(void *ud, struct agent_conn *c, uint64_t id, const cdn_envelope *env);
    /* The host asked for Shutdown; Done is sent after this returns. */
    void (*shutdown)(void *ud, bool kill_processes);
    /* The channel is gone (hang-up, I/O error, framing lost); every stream is already closed.
     * The connection must not be freed from inside this call. */
    void (*closed)(void *ud);
    void *ud;
};

/* Takes ownership of fd. */
int agent_conn_new(struct agent_loop *loop, int fd, const struct agent_conn_opts *opts,
                   const struct agent_conn_handlers *handlers, struct agent_conn **out,
                   cdn_err **err);
/* Closes every stream (killing their processes) and the channel fd. */
void agent_conn_free(struct agent_conn *c);
bool agent_conn_closed(const struct agent_conn *c);
struct agent_loop *agent_conn_loop(struct agent_conn *c);

void agent_conn_add_stream(struct agent_conn *c, struct agent_stream *s, uint64_t id,
                           const struct agent_stream_ops *ops);
/* Opens a stream of our own (an even id, for egress): s joins the table like a host's stream.
 * Returns its id, or 0 when the channel is down or has no room (nothing registered). */
uint64_t agent_conn_open_stream(struct agent_conn *c, struct agent_stream *s,
                                const struct agent_stream_ops *ops);
/* The channel is up and the host has said hello. */
bool agent_conn_ready(const struct agent_conn *c);
/* Removes s from the table and destroys it. */
void agent_conn_close_stream(struct agent_conn *c, struct agent_stream *s);

/* Bytes of data s may send right now (credit, output room and the frame size all allow);
 * 0 marks it blocked until on_writable. */
size_t agent_conn_send_room(struct agent_conn *c, struct agent_stream *s);
/* Data frame in place: begin reserves up to max bytes (max <= send_room), end commits n. */
uint8_t *agent_conn_data_begin(struct agent_conn *c, struct agent_stream *s,
                               CordonAgent__Envelope__BodyCase kind, uint32_t fd, size_t max,
                               struct cdn_frame_data_slot *slot);
void agent_conn_data_end(struct agent_conn *c, struct agent_stream *s,
                         const struct cdn_frame_data_slot *slot, size_t n, bool eof);
/* A data frame of n bytes (n <= send_room) taken by the kernel from file fd at offset with
 * sendfile(2), so file bytes never pass through the agent's memory. Bytes past the file's end (it
 * shrank) are sent as zeros; an fd pair that cannot sendfile falls back to pread. The connection
 * keeps its own dup of fd. Returns -errno (nothing queued) if it cannot start. */
int agent_conn_data_splice(struct agent_conn *c, struct agent_stream *s,
                           CordonAgent__Envelope__BodyCase kind, int fd, uint64_t offset, size_t n);
/* Largest frame the host accepts (its Hello's max_frame_bytes), length prefix excluded. */
uint32_t agent_conn_peer_max_frame(const struct agent_conn *c);
/* Queues a control message on stream id. */
void agent_conn_send(struct agent_conn *c, uint64_t id, cdn_envelope *env);
void agent_conn_send_error(struct agent_conn *c, uint64_t id, CordonAgent__ErrorCode code,
                           const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The stream used n bytes of received data: grant the host more when worthwhile. */
void agent_conn_consumed(struct agent_conn *c, struct agent_stream *s, size_t n);
