/* SPDX-License-Identifier: Apache-2.0 */
/* agent_file: FileRead and FileWrite streams (chunked, credit-bounded, atomic replace). */
#pragma once

#include "conn.h"

void agent_file_read_open(struct agent_conn *c, uint64_t id, const CordonAgent__FileRead *req);
void agent_file_write_open(struct agent_conn *c, uint64_t id, const CordonAgent__FileWrite *req);
