/* SPDX-License-Identifier: Apache-2.0 */
/* agent_dir: ListDir, answered at once with one DirListing (or an Error) that ends the stream. */
#pragma once

#include "conn.h"

void agent_dir_list(struct agent_conn *c, uint64_t id, const CordonAgent__ListDir *req);
