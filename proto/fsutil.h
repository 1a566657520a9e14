/* SPDX-License-Identifier: Apache-2.0 */
/* Host files: a whole (regular) file read into memory, bounded (policies, configuration,
 * certificates, patches); a folder removed with everything in it. */
#pragma once

#include <stddef.h>

#include "err.h"

/* *out gets the file's bytes and a terminating NUL (the caller frees it), *len their count.
 * Errors name the path: -errno (open, read), -EINVAL (not a regular file), -EFBIG (over max
 * bytes). */
int cdn_read_file(const char *path, size_t max, char **out, size_t *len, cdn_err **err);

/* Removes path and everything below it, never following a symlink (best effort: what cannot be
 * removed stays). */
void cdn_rmtree(const char *path);
