/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_policy: what a task may run, how big it may get, what it may reach (network.egress),
 * install (packages) and hold (secrets). Written in YAML by a person (docs/policy.md),
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

/* The review section: what a sandbox's result needs before it leaves, and where it goes. */
enum cdn_review_merge {
    CDN_REVIEW_NONE,   /* an approval is recorded; nothing is pushed */
    CDN_REVIEW_BRANCH, /* merged into a branch of the sandbox's repository (a path on the host) */
    CDN_REVIEW_PUSH,   /* the task branch pushed to a remote */
};
struct cdn_policy_review {
    bool required; /* a result with changes waits for a person (default true) */
    enum cdn_review_merge merge;
    const char *branch;      /* BRANCH: the branch merged into (NULL: the ref it started from);
                              * PUSH: the remote branch (NULL: cordon/<id>) */
    const char *remote;      /* PUSH: the remote's URL or path (NULL: the sandbox's repository) */
    const char *credentials; /* a secret's name: its value is the remote's token (https) */
    const char *const *approvers; /* who may decide (NULL: the sandbox's tenant) */
    size_t n_approvers;
};
const struct cdn_policy_review *cdn_policy_review(const struct cdn_policy *p);
/* retention: how long a finished task's evidence and its worktree are kept (0: not set: kept). */
struct cdn_policy_retention {
    unsigned evidence_days, workspace_days;
    bool workspace_set; /* workspace_days given (0: the worktree goes as soon as the task ends) */
};
const struct cdn_policy_retention *cdn_policy_retention(const struct cdn_policy *p);
/* Whether previews.ports lists a guest port (none listed: no previews). */
bool cdn_policy_preview_allowed(const struct cdn_policy *p, unsigned port);
/* previews.ports as text, e.g. "3000, 5173" ("none"). */
void cdn_policy_preview_ports(const struct cdn_policy *p, char *out, size_t size);
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

/* ---- network.egress: what the guest may reach through the host (orchestrator/egress) ---- */

#define CDN_EGRESS_MAX_PORTS 32

struct cdn_egress_rule {
    char *host; /* a glob on the name ('*' spans labels), an address literal, or a CIDR */
    uint16_t ports[CDN_EGRESS_MAX_PORTS];
    size_t nports;   /* 0: 80 and 443 */
    char *purpose;   /* "packages", "docs", "api" or NULL */
    bool allow;      /* action: allow (else deny) */
    bool private_ok; /* may reach private, loopback and link-local addresses */
    char *reason;    /* NULL if none */
    unsigned line;   /* in the policy file (0: given through the API) */
    char *where;     /* "network.egress.rules[2] (line 40)" */
};

struct cdn_egress_rules {
    struct cdn_egress_rule *v;
    size_t n;
    bool default_allow; /* network.egress.default (deny unless set) */
};

/* The policy's egress rules (never NULL; empty and default deny when the policy has none). */
const struct cdn_egress_rules *cdn_policy_egress(const struct cdn_policy *p);
int cdn_egress_rules_copy(const struct cdn_egress_rules *from, struct cdn_egress_rules *to);
void cdn_egress_rules_free(struct cdn_egress_rules *r);

/* ---- packages ---- */

enum cdn_pkg_manager {
    CDN_PKG_NPM,
    CDN_PKG_PNPM,
    CDN_PKG_YARN,
    CDN_PKG_PIP,
    CDN_PKG_CARGO,
    CDN_PKG_GO,
    CDN_PKG_APT,
    CDN_PKG_COUNT
};
const char *cdn_pkg_manager_name(enum cdn_pkg_manager m);
/* The manager argv runs when it installs, adds, updates or fetches packages (npm/pnpm/yarn
 * install|i|add|ci|update, pip install|download, cargo install|add|update|fetch, go get|install|mod
 * download, apt/apt-get install|update|upgrade; `python -m pip` too), else -1. *scripts_capable:
 * one of npm/pnpm/yarn, whose packages may run lifecycle scripts. */
int cdn_pkg_manager_of(const char *const *argv, size_t argc, bool *scripts_capable);

struct cdn_policy_packages {
    bool set[CDN_PKG_COUNT]; /* packages.managers names it */
    enum cdn_policy_action action[CDN_PKG_COUNT];
    unsigned line[CDN_PKG_COUNT];
    bool scripts_denied; /* packages.lifecycle_scripts: deny */
};
const struct cdn_policy_packages *cdn_policy_packages(const struct cdn_policy *p);

/* ---- secrets ---- */

struct cdn_policy_secret {
    const char *name;
    const char *from; /* env:NAME or file:/path */
    const char *env;  /* the variable a command sees it as */
    size_t n_expose;  /* patterns of commands it is given to (at least one) */
    bool optional;    /* absent on the host: the task runs without it (else it fails) */
    unsigned line;
};
size_t cdn_policy_secret_count(const struct cdn_policy *p);
const struct cdn_policy_secret *cdn_policy_secret(const struct cdn_policy *p, size_t i);
/* True when every simple command of a decided request (d, from cdn_policy_decide) matches one
 * of secret i's expose_to patterns; an unanalysable part never does. */
bool cdn_policy_secret_exposed(const struct cdn_policy *p, size_t i,
                               const struct cdn_policy_decision *d);
