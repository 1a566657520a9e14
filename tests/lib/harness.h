/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers: a real cordon-agent process on the far end of a socketpair, temp dirs, memory
 * readings, and a collector for command output. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "channel.h"
#include "frame.h"

struct th_agent {
    pid_t pid;
    int host_fd; /* our end; handed to cdn_channel_open by th_channel */
};

/* Path of the agent binary under test ($CORDON_AGENT, else build/asan/bin/cordon-agent). */
const char *th_agent_path(void);
/* Starts the agent with --fd on one end of a socketpair; extra args (NULL-terminated) follow. */
void th_agent_spawn(struct th_agent *a, const char *const *extra_args);
/* Spawns an agent and opens a channel to it (asserting success). */
struct cdn_channel *th_channel(struct th_agent *a, const struct cdn_channel_opts *opts);
/* Waits up to timeout_ms for the agent to exit; returns its wait status, or -1 if it did not
 * (then it is killed). */
int th_agent_wait(struct th_agent *a, int timeout_ms);
void th_agent_kill(struct th_agent *a);

/* Whether something accepts connections on the unix socket at path. */
bool th_unix_answers(const char *path);

/* A fresh directory under $TMPDIR, removed with th_rmtree. */
char *th_tmpdir(void);
void th_rmtree(const char *path);
/* Resident set size of this process, in KiB. */
long th_rss_kib(void);
/* From /proc: a process's parent (0 if it is gone) and its name (false if it is gone). */
pid_t th_proc_ppid(pid_t pid);
bool th_proc_comm(pid_t pid, char *out, size_t size);
/* Its start time in clock ticks since boot (field 22 of /proc/PID/stat), 0 if it is gone. */
unsigned long long th_proc_start_time(pid_t pid);
uint64_t th_now_ms(void);
double th_now_s(void);
/* Median of v (sorted in place). */
double th_median(double *v, size_t n);

/* Collects output per fd (1, 2), for cdn_output_fn. */
struct th_output {
    struct cdn_buf fd[3];
};
int th_collect(void *ud, int fd, const uint8_t *data, size_t len);
/* NUL-terminated view of what fd received. */
const char *th_output_str(struct th_output *o, int fd);
void th_output_free(struct th_output *o);

/* Runs argv (NULL-terminated) with default spec; collects output; asserts the call succeeds. */
struct cdn_exec_result th_run(struct cdn_channel *ch, struct th_output *out,
                              const char *const *argv);

/* Runs a shell command built from fmt; fails the test (or benchmark) if it does not exit 0. */
void th_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes a file (creating parents) or asserts. */
void th_write_file(const char *path, const char *content, mode_t mode);
char *th_read_file(const char *path);

/* Raw frames, for tests that play a misbehaving peer. */
void th_send_env(int fd, cdn_envelope *env);
void th_send_bytes(int fd, const void *p, size_t n);
/* Next envelope from fd within timeout_ms: 1 (set *env, valid until the next call), 0 on
 * timeout, -1 on EOF or framing error. */
int th_recv_env(int fd, struct cdn_frame_decoder *dec, int timeout_ms, cdn_envelope **env);
