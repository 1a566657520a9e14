/* SPDX-License-Identifier: Apache-2.0 */
/* agent_archive: ArchivePut (unpack a tar stream from the host with the bounded reader) and
 * ArchiveGet (stream a directory tree to the host as tar, under credit). */
#pragma once

#include "conn.h"

void agent_archive_put_open(struct agent_conn *c, uint64_t id, const CordonAgent__ArchivePut *req);
void agent_archive_get_open(struct agent_conn *c, uint64_t id, const CordonAgent__ArchiveGet *req);
