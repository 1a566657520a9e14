/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_channel: the host's end of the host<->guest channel. Everything the guest sends is
 * bounded (frame size, per-stream credit) and every wait has a deadline; a guest that breaks the
 * protocol is cut off and the channel reports why. Not thread-safe: one owner drives it. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "archive.h"
#include "err.h"
#include "frame.h" /* CDN_DIR_* */

struct cdn_channel;

struct cdn_channel_opts {
    const char *name;          /* for messages, e.g. "vm cordon-3f2a" (default "agent") */
    uint32_t max_frame_bytes;  /* largest frame we accept (default 1 MiB) */
    uint32_t stream_window;    /* bytes a stream may send before we grant more (default 4 MiB) */
    uint32_t protocol_version; /* 0: CDN_PROTOCOL_VERSION (tests set others) */
    int handshake_timeout_ms;  /* default 10 s */
    int default_timeout_ms;    /* used by calls given timeout 0 (default 60 s) */
    /* When set (e.g. from a SIGINT handler), every wait of every call ends within 100 ms with
     * -EINTR; the channel is then only good for freeing. NULL: never. */
    volatile sig_atomic_t *cancel;
};

/* Takes ownership of fd (a connected stream socket, serial port or pipe pair's socket) and
 * performs the handshake. */
int cdn_channel_open(int fd, const struct cdn_channel_opts *opts, struct cdn_channel **out,
                     cdn_err **err);
void cdn_channel_free(struct cdn_channel *ch);
void cdn_channel_freep(struct cdn_channel **ch);
const char *cdn_channel_peer_version(const struct cdn_channel *ch);
bool cdn_channel_peer_has(const struct cdn_channel *ch, const char *capability);
/* The fd to poll when driving many streams with cdn_channel_poll. */
int cdn_channel_fd(const struct cdn_channel *ch);
/* Waits up to timeout_ms for traffic and handles what arrived (output callbacks run here). */
int cdn_channel_poll(struct cdn_channel *ch, int timeout_ms, cdn_err **err);
/* The same, also waking when wake_fd is readable (it returns 1 then; the caller drains it). */
int cdn_channel_poll_wake(struct cdn_channel *ch, int wake_fd, int timeout_ms, cdn_err **err);
int cdn_channel_ping(struct cdn_channel *ch, int timeout_ms, cdn_err **err);
/* Repeats our Hello (same session: the agent resets nothing) with the host's clock and fresh
 * entropy, for a guest that stood still (resumed from a pause), and waits until it was taken. */
int cdn_channel_reseed(struct cdn_channel *ch, int timeout_ms, cdn_err **err);
/* Asks the agent to stop (killing its commands if kill_processes) and waits for its answer. */
int cdn_channel_shutdown(struct cdn_channel *ch, bool kill_processes, int timeout_ms,
                         cdn_err **err);

/* ---- exec ---- */

struct cdn_rlimit {
    int resource; /* CordonAgent__Rlimit */
    uint64_t soft, hard;
};

struct cdn_exec_spec {
    const char *const *argv;
    size_t argc;
    const char *const *env; /* KEY=VALUE */
    size_t envc;
    const char *cwd;
    uint32_t timeout_ms; /* enforced in the guest; 0: none */
    bool pty;
    uint32_t pty_rows, pty_cols;
    bool stdin_pipe;
    uint64_t output_limit; /* per fd; 0: none */
    const struct cdn_rlimit *rlimits;
    size_t n_rlimits;
    bool clear_env;
    bool as_user; /* run as uid/gid/groups instead of the agent's own user */
    uint32_t uid, gid;
    const uint32_t *groups;
    size_t n_groups;
};

struct cdn_exec_result {
    uint32_t pid;
    int exit_code; /* exit status, or 128 + signal */
    int signal;
    bool timed_out;
    bool output_truncated;
    uint64_t user_ms, sys_ms, max_rss_kib, duration_ms;
    uint64_t stdout_bytes, stderr_bytes;
};

/* Receives output as it arrives (fd 1 or 2); a negative return cancels the command. */
typedef int (*cdn_output_fn)(void *ud, int fd, const uint8_t *data, size_t len);

int cdn_channel_exec_start(struct cdn_channel *ch, const struct cdn_exec_spec *spec,
                           cdn_output_fn on_output, void *ud, uint64_t *stream, cdn_err **err);
/* Sends stdin bytes (waiting for the agent's credit, up to timeout_ms). */
int cdn_channel_exec_stdin(struct cdn_channel *ch, uint64_t stream, const void *data, size_t len,
                           int timeout_ms, cdn_err **err);
int cdn_channel_exec_stdin_close(struct cdn_channel *ch, uint64_t stream, cdn_err **err);
int cdn_channel_exec_signal(struct cdn_channel *ch, uint64_t stream, int signo, cdn_err **err);
/* 1 if the command has finished (its result is ready for cdn_channel_exec_wait), else 0. */
int cdn_channel_exec_done(struct cdn_channel *ch, uint64_t stream);
/* Waits for the exit and releases the stream. On timeout the command is cancelled (its process
 * group killed) and -ETIMEDOUT returned. */
int cdn_channel_exec_wait(struct cdn_channel *ch, uint64_t stream, int timeout_ms,
                          struct cdn_exec_result *res, cdn_err **err);
int cdn_channel_exec(struct cdn_channel *ch, const struct cdn_exec_spec *spec,
                     cdn_output_fn on_output, void *ud, int timeout_ms, struct cdn_exec_result *res,
                     cdn_err **err);

/* ---- files and trees ---- */

/* Replaces path in the guest atomically with data (mode 0: 0644); missing parent folders are
 * made (0755). */
int cdn_channel_file_write(struct cdn_channel *ch, const char *path, uint32_t mode,
                           const void *data, size_t len, int timeout_ms, cdn_err **err);
/* Streams up to max_bytes (0: all) of path to on_data; fails past max_bytes. */
typedef int (*cdn_data_fn)(void *ud, const uint8_t *data, size_t len);
int cdn_channel_file_read(struct cdn_channel *ch, const char *path, uint64_t max_bytes,
                          cdn_data_fn on_data, void *ud, int timeout_ms, cdn_err **err);
/* Sends the tree under src_dirfd, unpacked into dest in the guest. */
int cdn_channel_archive_put(struct cdn_channel *ch, int src_dirfd, const char *const *excludes,
                            size_t n_excludes, const char *dest, int timeout_ms, uint64_t *entries,
                            cdn_err **err);
/* Fetches the guest tree under src through the bounded reader into sink (to hash, list or
 * store entries as they arrive); a refused entry cancels the transfer and names the entry. */
int cdn_channel_archive_get_sink(struct cdn_channel *ch, const char *src,
                                 const char *const *excludes, size_t n_excludes,
                                 const struct cdn_archive_sink *sink,
                                 const struct cdn_archive_limits *limits, int timeout_ms,
                                 uint64_t *entries, cdn_err **err);
/* The same, extracting beneath dest_dirfd (never following a symlink while doing so). */
int cdn_channel_archive_get(struct cdn_channel *ch, const char *src, const char *const *excludes,
                            size_t n_excludes, int dest_dirfd,
                            const struct cdn_archive_limits *limits, int timeout_ms,
                            uint64_t *entries, cdn_err **err);

/* ---- folders ---- */

enum cdn_dir_type { CDN_DIR_OTHER, CDN_DIR_FILE, CDN_DIR_DIR, CDN_DIR_SYMLINK };

struct cdn_dir_entry {
    char *name; /* 1..255 bytes, no '/'; the guest's bytes, not necessarily UTF-8 */
    enum cdn_dir_type type;
    uint64_t size;
    uint32_t mode; /* permission bits */
    int64_t mtime_ns;
    char *link_target; /* a symlink's (up to 4096 bytes), else NULL */
};

struct cdn_dir_listing {
    struct cdn_dir_entry *entries; /* sorted bytewise by name, no two alike */
    size_t n;
    bool truncated; /* the folder holds more (total) than are listed */
    uint64_t total;
};
void cdn_dir_listing_free(struct cdn_dir_listing *l);
/* Lists the folder path in the guest: up to max_entries (0: CDN_DIR_DEFAULT_ENTRIES; at most
 * CDN_DIR_MAX_ENTRIES) of its entries in name order, without following symlinks. Errors: -ENOENT,
 * -EINVAL (not a folder, a bad request), others from the guest. */
int cdn_channel_list_dir(struct cdn_channel *ch, const char *path, uint32_t max_entries,
                         int timeout_ms, struct cdn_dir_listing **out, cdn_err **err);

/* ---- egress: the network connections the guest's programs ask the agent's proxy for ---- */

struct cdn_channel_egress {
    /* On a worker thread: decide host:port and, if allowed, connect. Returns the connected socket
     * (non-blocking), -EPERM when refused (the guest's program gets a 403 with why), or another
     * -errno (a 502). *token is handed back to decided and ended, which runs exactly once. */
    int (*open)(void *ud, const char *host, uint16_t port, bool tunnel, void **token, char *why,
                size_t why_size);
    /* On the channel's thread, when the verdict reaches the guest. */
    void (*decided)(void *ud, void *token);
    /* On the channel's thread, when the attempt is over: bytes guest->upstream and back. */
    void (*ended)(void *ud, void *token, uint64_t bytes_up, uint64_t bytes_down);
    void *ud;
};
/* A preview connection: fd (a connected client socket, non-blocking; taken) relayed to the
 * guest's 127.0.0.1:port on a PortForward stream, driven by the polls like egress; ended(token,
 * bytes to the guest, bytes from it, error or NULL) runs once on the channel's thread when it is
 * over (also when the guest refused it: nothing listens there). */
int cdn_channel_forward(struct cdn_channel *ch, int fd, uint16_t port, void *token,
                        void (*ended)(void *token, uint64_t to_guest, uint64_t from_guest,
                                      const char *error),
                        cdn_err **err);
/* Ends the preview connection of token now (its client's socket closed, the guest told; its
 * ended runs with why). Nothing when it has ended already. */
void cdn_channel_forward_abort(struct cdn_channel *ch, void *token, const char *why);
/* Without hooks every egress stream is refused ("this sandbox has no network"). Set once, before
 * the first poll that may carry egress. */
void cdn_channel_set_egress(struct cdn_channel *ch, const struct cdn_channel_egress *hooks);
