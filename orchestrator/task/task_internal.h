/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_task share (internal). */
#pragma once

#include <stdbool.h>

#include "egress.h"
#include "evidence.h"
#include "logf.h"
#include "task.h"
#include "vm.h"
#include "workspace.h"

/* A sandbox's resources, released by cdn_session_close in the reverse of the order they were
 * acquired: channel, VM (destroyed, socket removed), overlay, libvirt connection; then the
 * console copy, the manifest, the scratch tree, the workspace, the evidence and the owner mark. */
struct cdn_session {
    const struct cdn_task_spec *spec;
    struct cdn_task_result res;
    char *dir; /* tasks/<id> */
    bool devbox;
    struct cdn_evidence *ev;              /* always */
    struct cdn_workspace *ws;             /* NULL without a repository */
    char *result_dir;                     /* tasks/<id>/result, with a repository */
    struct cdn_workspace_listing listing; /* what came back into result_dir */
    const char *cwd; /* the commands' folder in the guest (NULL: the agent's) */
    uint64_t t0;
    char *overlay; /* the task's disk while the VM runs (devbox), else NULL */
    struct cdn_vm_host *host;
    struct cdn_vm *vm;
    struct cdn_channel *ch;
    struct cdn_egress *egress;     /* the network rules (made at boot, replaceable) */
    struct cdn_redactor *redactor; /* the secrets' forms (NULL: none) */
    struct task_secret *secrets;   /* "ENV=value" each, wiped at close */
    size_t nsecrets;
    bool owned; /* the owner mark is written */
};

/* One line to the spec's on_notice (cdn_logf's formatting). */
#define task_notice(spec, ...) cdn_logf((spec)->on_notice, (spec)->ud, __VA_ARGS__)
bool task_cancelled(const struct cdn_task_spec *spec);

/* The VM half of a session (task_vm.c): boot and the release of what it acquired. */
int task_vm_boot(struct cdn_session *s, cdn_err **err);
void task_vm_release(struct cdn_session *s);
/* The artifacts the spec names, into the evidence. */
int task_vm_artifacts(struct cdn_session *s, cdn_err **err);
int task_vm_collect(struct cdn_session *s, cdn_err **err);
struct task_secret {
    char *assign;
};
/* The policy's secrets read, their redactor made and handed to the evidence (task_secrets.c). */
int task_secrets_load(struct cdn_session *t, cdn_err **err);
/* Wipes and frees every copy of the secrets (after the evidence's last write). */
void task_secrets_scrub(struct cdn_session *t);
/* A command's environment: x's, then the secrets its parts all may see, then the variables that
 * disable install scripts when the policy says so (env NULL: x's own, unchanged). The entries
 * are borrowed: free only the array with task_cmd_env_free. */
struct task_cmd_env {
    const char **env;
    size_t envc;
};
int task_cmd_env(struct cdn_session *t, const struct cdn_exec_spec *x, struct task_cmd_env *out,
                 cdn_err **err);
void task_cmd_env_free(struct task_cmd_env *e);
/* The policy's egress rules behind the channel (task_egress.c). */
int task_egress_attach(struct cdn_session *s, cdn_err **err);
