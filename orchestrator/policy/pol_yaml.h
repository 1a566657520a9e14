/* SPDX-License-Identifier: Apache-2.0 */
/* A policy file as a tree of positioned nodes (internal to cdn_policy). libyaml does the YAML;
 * this layer refuses what a policy never needs and an attacker could use: aliases and anchors
 * (billion-laughs), tags, several documents, keys that are not plain scalars, duplicate keys,
 * and anything past fixed bounds on size, depth and node count. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "policy.h"

enum pnode_type { PN_SCALAR, PN_MAP, PN_SEQ };

struct pnode {
    enum pnode_type type;
    unsigned line, col;  /* 1-based */
    char *scalar;        /* PN_SCALAR */
    bool plain;          /* an unquoted scalar (may be a number, a boolean, null) */
    struct pnode **kids; /* PN_MAP: key, value, key, value...; PN_SEQ: items */
    size_t n;
};

#define POL_MAX_BYTES CDN_POLICY_MAX_BYTES
#define POL_MAX_DEPTH 32
#define POL_MAX_NODES 100000

/* Errors read "NAME:LINE:COL: message". */
int pol_yaml_parse(const char *name, const char *data, size_t len, struct pnode **root,
                   cdn_err **err);
void pnode_free(struct pnode *n);
void pnode_freep(struct pnode **n);
