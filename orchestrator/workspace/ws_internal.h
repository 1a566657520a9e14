/* SPDX-License-Identifier: Apache-2.0 */
/* The workspace's state, shared by its files (internal to cdn_workspace). */
#pragma once

#include <git2.h>

struct cdn_workspace {
    git_repository *repo; /* the worktree's repository */
    char *url;
    char *path;
    char *branch;
    char base[GIT_OID_HEXSZ + 1];
};
