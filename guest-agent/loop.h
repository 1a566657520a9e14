/* SPDX-License-Identifier: Apache-2.0 */
/* agent_loop: the agent's single epoll loop; every source carries its own dispatch function. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

struct agent_loop;

/* Embedded in the struct that owns the fd; the loop never closes it. */
struct agent_source {
    int fd;
    void (*dispatch)(struct agent_source *src, uint32_t events);
};

typedef void (*agent_signal_fn)(void *ud, int signo);

/* Blocks SIGCHLD, SIGTERM, SIGINT and SIGHUP (delivered through a signalfd) and ignores SIGPIPE. */
int agent_loop_new(struct agent_loop **out, cdn_err **err);
void agent_loop_free(struct agent_loop *l);
void agent_loop_freep(struct agent_loop **l);
int agent_loop_add(struct agent_loop *l, struct agent_source *src, uint32_t events);
int agent_loop_mod(struct agent_loop *l, struct agent_source *src, uint32_t events);
void agent_loop_del(struct agent_loop *l, struct agent_source *src);
void agent_loop_on_signal(struct agent_loop *l, agent_signal_fn fn, void *ud);
/* Runs until agent_loop_stop; returns the code passed to it. */
int agent_loop_run(struct agent_loop *l);
void agent_loop_stop(struct agent_loop *l, int code);
/* Restores the signal mask and dispositions a child should start with (call after fork). */
void agent_loop_reset_signals_in_child(void);
/* CLOCK_MONOTONIC in milliseconds (the project's one clock). */
#include "clock.h"
#define agent_now_ms cdn_now_ms
