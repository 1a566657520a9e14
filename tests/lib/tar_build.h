/* SPDX-License-Identifier: Apache-2.0 */
/* Test helper: ustar entries written by hand into a buffer (hostile names, links, sizes). */
#pragma once

#include <stddef.h>

#include "buf.h"

/* One entry: type '0' file, '2' symlink, '5' directory, ...; data may be NULL (zeros). */
void th_tar_add(struct cdn_buf *b, const char *name, char type, const char *link, const char *data,
                size_t size);
/* A pax header setting the next entry's path. */
void th_tar_pax_path(struct cdn_buf *b, const char *path);
/* The end-of-archive marker (two zero blocks). */
void th_tar_end(struct cdn_buf *b);
