/* SPDX-License-Identifier: Apache-2.0 */
/* The parsed policy and the shell splitter (internal to cdn_policy). */
#pragma once

#include "policy.h"
#include "pol_yaml.h"

struct pol_rule {
    char *program; /* glob on the program: its basename, or the whole path if it has a '/' */
    char **args;   /* globs, one per argument; a last "**" matches any remaining ones */
    size_t nargs;
    bool any_args; /* no `args` given: any arguments */
    enum cdn_policy_action action;
    char *reason;
    unsigned line;
};

struct pol_secret {
    struct cdn_policy_secret pub;
    char *name, *from, *env;
    struct pol_rule *expose; /* expose_to patterns (action unused) */
};

struct cdn_policy {
    char *name;
    struct pol_rule *rules;
    size_t nrules;
    enum cdn_policy_action dflt, unanalysable;
    struct cdn_policy_limits limits;
    struct cdn_egress_rules egress;
    struct cdn_policy_packages packages;
    struct pol_secret *secrets;
    size_t nsecrets;
    struct cdn_policy_review review; /* its strings owned here */
    struct cdn_policy_retention retention;
    uint16_t preview_ports[64]; /* previews.ports */
    size_t n_preview_ports;
};

void pol_rule_clear(struct pol_rule *r);
bool pol_rule_matches(const struct pol_rule *r, const char *const *argv, size_t argc);

/* Fills p from the tree, or fails with NAME:LINE:COL. */
int pol_schema_apply(const char *name, const struct pnode *root, struct cdn_policy *p,
                     cdn_err **err);

/* ---- the shell splitter ---- */
struct pol_simple {
    char **argv;
    size_t argc;
    char *unanalysable; /* why not, or NULL */
    bool heredoc;       /* a here-doc feeds it (unanalysable if the program is a shell) */
    bool piped;         /* its stdin is the previous command's output */
};
struct pol_split {
    struct pol_simple *v;
    size_t n;
};
/* Splits a shell string into simple commands (`&&`, `||`, `;`, `|`, `&`, newlines, subshells,
 * groups, if/while/for bodies). Never fails on content: what it cannot follow becomes a part
 * marked unanalysable. Fails only on memory. */
int pol_shell_split(const char *s, struct pol_split *out);
void pol_split_free(struct pol_split *s);
