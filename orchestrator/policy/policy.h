/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_policy: what a task may run, how big it may get, and (parsed now, enforced by later work)
 * what it may reach, install, hold and expose. Written in YAML by a person (docs/policy.md),
 * parsed with libyaml, refused with FILE:LINE:COL and a hint on any mistake; never half-read.
 *
 * Commands are decided on the host before an Exec reaches the guest: each simple command in a
 * shell string is matched against the rules in order; anything that cannot be analysed
 * statically gets the `unanalysable` action; the strictest decision of the parts wins. This
 * gates what the agent asks for. What a command then does is contained by the VM and the network
 * policy, not by argv matching. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The largest policy (and cordond configuration) file read. */
#define CDN_POLICY_MAX_BYTES (1u << 20)

struct cdn_policy;

/* Ordered by strictness: the decision of several parts is the largest. */
enum cdn_policy_action { CDN_POLICY_ALLOW = 0, CDN_POLICY_APPROVE = 1, CDN_POLICY_DENY = 2 };
const char *cdn_policy_action_name(enum cdn_policy_action a);

/* 0: not set by the policy. */
struct cdn_policy_limits {
    unsigned cpus, memory_mib, disk_mib, wall_seconds, command_timeout_seconds, max_processes;
    uint64_t output_bytes, max_files_returned, max_bytes_returned;
};

int cdn_policy_parse(const char *name, const char *data, size_t len, struct cdn_policy **out,
                     cdn_err **err);
int cdn_policy_load(const char *path, struct cdn_policy **out, cdn_err **err);
void cdn_policy_free(struct cdn_policy *p);
void cdn_policy_freep(struct cdn_policy **p);
const struct cdn_policy_limits *cdn_policy_limits(const struct cdn_policy *p);
const char *cdn_policy_name(const struct cdn_policy *p);

/* One simple command of a request and what the policy says of it. */
struct cdn_policy_part {
    char **argv; /* words as the shell would pass them (quotes removed); may be empty */
    size_t argc;
    enum cdn_policy_action action;
    char *rule;   /* "commands.rules[2] (line 14)", "commands.default", "commands.unanalysable" */
    char *reason; /* the rule's reason, or why the part could not be analysed */
};

struct cdn_policy_decision {
    enum cdn_policy_action action; /* the strictest of the parts */
    struct cdn_policy_part *parts;
    size_t n;
};

/* Decides an Exec's argv. `sh -c STRING` (bash, dash, zsh; -c, -lc, -ec...) is split into its
 * simple commands, recursively; wrappers (env, nice, nohup, timeout, time, command, exec,
 * stdbuf) are looked through; sudo is decided itself and for what it runs. */
int cdn_policy_decide(const struct cdn_policy *p, const char *const *argv, size_t argc,
                      struct cdn_policy_decision *d, cdn_err **err);
void cdn_policy_decision_free(struct cdn_policy_decision *d);
