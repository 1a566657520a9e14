/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_evidence: what a reviewer gets for a task, in tasks/<id>/evidence/: manifest.json (facts,
 * each command with its outputs' sizes and SHA-256, the policy's decisions, the diff's stats,
 * artifacts, every limit that was hit), audit.jsonl, logs/<n>.stdout|stderr, diff.patch,
 * artifacts/, console.log, manifest.sig. The manifest and the patch are replaced atomically
 * (temporary file, fsync, rename), so a crash leaves the previous complete version. Every event
 * (a command started or ended, a decision, a file written, the diff, ...) is a line of the audit
 * trail, chained by SHA-256 and appended with one write before the call returns, so a crash of
 * the process loses nothing: cdn_evidence_load merges the manifest and the trail. At the end the
 * folder is synced (cdn_evidence_sync) and the manifest, with the trail's head, signed with the
 * host's Ed25519 key (cdn_evidence_seal); cdn_evidence_verify checks all of it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* What readers take in at most: a manifest, an audit trail. */
#define CDN_EVIDENCE_MANIFEST_MAX (256u << 20)
#define CDN_EVIDENCE_AUDIT_MAX (1u << 30)
/* The "prev" of an audit trail's first line. */
#define CDN_AUDIT_FIRST_PREV "0000000000000000000000000000000000000000000000000000000000000000"

struct cdn_evidence;
struct cdn_evidence_cmd;
struct cdn_diff_stats;

int cdn_evidence_open(const char *task_dir, const char *task_id, struct cdn_evidence **out,
                      cdn_err **err);
void cdn_evidence_free(struct cdn_evidence *ev);
void cdn_evidence_freep(struct cdn_evidence **ev);
const char *cdn_evidence_dir(const struct cdn_evidence *ev);
/* The task's secrets: from here on they are redacted from every audit line, the manifest and the
 * patch (borrowed: r must outlive the evidence's writes; the caller redacts command output). */
struct cdn_redactor;
void cdn_evidence_set_redactor(struct cdn_evidence *ev, const struct cdn_redactor *r);

/* Top-level facts: repo, ref, base, result, image, accel, transport, error, ... (NULL: removed) */
void cdn_evidence_fact(struct cdn_evidence *ev, const char *key, const char *value);
void cdn_evidence_fact_int(struct cdn_evidence *ev, const char *key, long long value);
/* Appends value (taking the reference) to the top-level array key, creating it. */
struct json_t;
void cdn_evidence_append(struct cdn_evidence *ev, const char *key, struct json_t *value);
/* The dependency changes of the latest diff (list taken: [{file, manager, changes: [{name, old,
 * new}]}]), replacing the previous ones, on the trail too. */
void cdn_evidence_dependencies(struct cdn_evidence *ev, struct json_t *list);
/* A limit that was hit: what (e.g. "result.max_entries") and the refusal's message. */
void cdn_evidence_limit_hit(struct cdn_evidence *ev, const char *what, const char *detail);

/* One command: its outputs go to logs/<n>.stdout and .stderr as they arrive, hashed on the way. */
int cdn_evidence_cmd_begin(struct cdn_evidence *ev, const char *const *argv, size_t argc,
                           const char *cwd, struct cdn_evidence_cmd **out, cdn_err **err);
/* fd 1 or 2; matches cdn_output_fn's shape so it can be called from the output callback. */
int cdn_evidence_cmd_output(struct cdn_evidence_cmd *c, int fd, const uint8_t *data, size_t len);
struct cdn_evidence_exit {
    int exit_code, signal;
    bool timed_out, truncated, failed; /* failed: no exit status (cordon's error is recorded) */
};
int cdn_evidence_cmd_end(struct cdn_evidence *ev, struct cdn_evidence_cmd *c,
                         const struct cdn_evidence_exit *x, cdn_err **err);

/* diff.patch (atomically) and the diff's stats in the manifest. */
int cdn_evidence_diff(struct cdn_evidence *ev, const struct cdn_diff_stats *st, const char *patch,
                      size_t len, cdn_err **err);

/* An artifact: artifacts/<name> (name relative, already checked by the archive reader), written
 * as it arrives, then listed with its size and SHA-256. */
int cdn_evidence_artifact_begin(struct cdn_evidence *ev, const char *name, cdn_err **err);
int cdn_evidence_artifact_data(struct cdn_evidence *ev, const uint8_t *p, size_t n, cdn_err **err);
int cdn_evidence_artifact_end(struct cdn_evidence *ev, cdn_err **err);

/* Copies a file into the evidence folder (e.g. the console log) under name. */
int cdn_evidence_copy(struct cdn_evidence *ev, const char *src, const char *name, cdn_err **err);
/* The SHA-256 of p as 64 hex digits. */
void cdn_sha256_hex(const void *p, size_t n, char hex[65]);
/* An event on the audit trail (fields taken; NULL: none), e.g. "file.written". */
void cdn_evidence_event(struct cdn_evidence *ev, const char *event, struct json_t *fields);
/* The end: the manifest saved with the trail's head and signed with the host's key
 * (keys_dir/host-ed25519.pem, made mode 0600 at first use; its public half .pub beside it) into
 * manifest.sig. */
int cdn_evidence_seal(struct cdn_evidence *ev, const char *keys_dir, cdn_err **err);
/* Checks a sealed folder: the signature with the public key at pubkey_path, then the trail
 * against the signed head. 0 with why "" when everything holds; 0 with why naming the first
 * fault ("audit.jsonl:3: edited ...", "manifest.sig: does not verify ..."); < 0 when it cannot
 * be checked (err). */
int cdn_evidence_verify(const char *dir, const char *pubkey_path, char *why, size_t size,
                        cdn_err **err);
/* The chain of an audit trail's bytes against the length and head a signed manifest recorded:
 * why "" when it holds, else the first fault. -ENOMEM only. */
int cdn_audit_check(const char *trail, size_t len, long long want_lines, const char *want_head,
                    char *why, size_t size);
/* Writes manifest.json now (atomically): everything so far, the trail's entries included. */
int cdn_evidence_save(struct cdn_evidence *ev, cdn_err **err);
/* Flushes the folder's filesystem to disk (for the end of a task: after it, even a power cut
 * keeps the evidence). */
int cdn_evidence_sync(struct cdn_evidence *ev, cdn_err **err);
/* The manifest of the evidence folder dir as a reader sees it: manifest.json with the audit
 * trail's later entries appended. Caller decrefs. */
struct json_t;
int cdn_evidence_load(const char *dir, struct json_t **out, cdn_err **err);

/* A sealed evidence folder (task_dir/evidence) opened again to record what happened after its
 * task (a review's decision): the manifest as saved, the trail continued from its last line;
 * cdn_evidence_seal it again after the events. */
int cdn_evidence_reopen(const char *task_dir, struct cdn_evidence **out, cdn_err **err);
/* What a reviewer reads before deciding, from a manifest (cdn_evidence_load's): base, result,
 * diff stats, every command with how it ended, the failed ones, the commands refused or not
 * approved, the approvals asked for and given, egress per destination (counts and bytes), the
 * dependency changes and the limits hit. Caller decrefs. */
struct json_t *cdn_evidence_review_summary(const struct json_t *manifest);

/* Writes data to path through a temporary file, fsync and rename. */
int cdn_write_atomic(const char *path, const void *data, size_t len, cdn_err **err);
