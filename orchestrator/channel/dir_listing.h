/* SPDX-License-Identifier: Apache-2.0 */
/* A guest's answer to ListDir, checked before it is believed (the types are in channel.h). */
#pragma once

#include "channel.h"
#include "frame.h"

/* 0 with *out (a copy the caller frees); -EPROTO with *why saying what the listing got wrong
 * (asked for at most want entries); -ENOMEM. */
int cdn_dir_listing_check(const CordonAgent__DirListing *l, uint32_t want,
                          struct cdn_dir_listing **out, const char **why);
