/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task_gc: cleans up after tasks whose cordon process died without tearing down (SIGKILL, a
 * crash, a power cut). A live task's folder holds an `owner` file naming its process (pid and
 * start time, so a reused pid is not mistaken for it); a clean teardown removes it. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "err.h"

struct cdn_vm_host;

/* Marks a task folder as owned by the calling process. */
int cdn_task_owner_write(const char *task_dir, cdn_err **err);
/* Removes the mark (the task was torn down), and the folder if nothing else is in it. */
void cdn_task_owner_clear(const char *task_dir);

struct cdn_task_gc_report {
    unsigned tasks;   /* dead tasks cleaned up */
    unsigned domains; /* their domains that were still running, destroyed */
    unsigned files;   /* sockets and overlays removed (console logs stay: evidence) */
    unsigned runs;    /* dead `cordon run`s' own daemons' folders (STATE/runs/X) removed */
};

/* For every folder under STATE/tasks whose owner is dead: destroys its domain cordon-<id> if it
 * still runs (and, for a warm pool's clone, the domain its `clone-of` file names), removes its
 * agent socket and overlay disk, and drops the mark; also removes the folders of dead KVM probes
 * and of dead `cordon run`s' own daemons (STATE/runs/X: a private store, a socket, an address).
 * What live processes own is never touched. */
int cdn_task_gc(const char *state_dir, struct cdn_vm_host *h, struct cdn_task_gc_report *rep,
                cdn_err **err);

/* Retention, for the folders of finished tasks (torn down, or their owner dead): a task whose
 * policy set retention has it in its manifest (retention_evidence_days, retention_workspace_days);
 * aged from the manifest's last write, past workspace_days its worktree is removed, past
 * evidence_days its whole folder (evidence included). A result awaiting review keeps both. Live
 * tasks are never touched; tasks without retention are kept. removed: the ids whose folders went
 * (for the caller's records). */
struct cdn_task_retention_report {
    unsigned workspaces, folders;
    char **removed;
    size_t n_removed;
};
int cdn_task_retention(const char *state_dir, int64_t now_s, struct cdn_task_retention_report *rep,
                       cdn_err **err);
void cdn_task_retention_report_clear(struct cdn_task_retention_report *rep);
