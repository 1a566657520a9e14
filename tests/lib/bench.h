/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark helper: the end of a benchmark's run. */
#pragma once

#include <jansson.h>

/* Adds "date" and "host" (kernel release) to root and writes it to $BENCH_OUT (else
 * bench/results/NAME.json); takes root. Then releases the libvirt host the run held and removes
 * its folder dir unless $BENCH_KEEP is set. Fails the benchmark if the file cannot be written. */
void th_bench_finish(json_t *root, const char *name, const char *dir);
/* How many times needle occurs in the file at path (0 if it cannot be read): a daemon's log. */
unsigned th_log_count(const char *path, const char *needle);

/* `true` in sandbox id through cordond's Exec (waiting up to timeout_ms, a boot included): fails
 * the benchmark unless it exits 0. */
struct cdn_client;
void th_bench_exec_true(struct cdn_client *c, const char *id, int timeout_ms);
/* A sandbox created (create: a CreateSandboxRequest) and its first `true` run: the ms between,
 * id its id. And one deleted. Each fails the benchmark on an error. */
struct ProtobufCMessage;
double th_bench_start(struct cdn_client *c, const struct ProtobufCMessage *create, char id[17]);
void th_bench_delete(struct cdn_client *c, const char *id);
