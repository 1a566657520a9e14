/* SPDX-License-Identifier: Apache-2.0 */
/* What the files of cdn_task share (internal). */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

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
    bool owned;            /* the owner mark is written */
    struct cdn_warm *warm; /* a warm VM to boot into (cdn_session_set_warm) */
    bool host_lost;        /* its host stopped answering: close makes no call to it */
    char *warm_dir;        /* its folder once adopted (removed at close) */
    bool paused;           /* its VM suspended, or saved (task_pause.c) */
    char *saved;           /* the saved memory's file while it is on disk */
    uint64_t paused_at_ms;
};

/* One line to the spec's on_notice (cdn_logf's formatting). */
#define task_notice(spec, ...) cdn_logf((spec)->on_notice, (spec)->ud, __VA_ARGS__)
bool task_cancelled(const struct cdn_task_spec *spec);

/* A new sandbox id (16 hex digits); a folder made with its parents, then chmod'ed to mode. */
int task_new_id(char id[17], cdn_err **err);
int task_make_dir(const char *path, mode_t mode, cdn_err **err);

/* A VM up to its agent's hello (task_vmup.c), for a session's boot and for warm VMs. */
struct task_vm_req {
    const char *state_dir, *images_dir, *kernel_args, *uri, *accel;
    const char *id, *dir; /* the domain is cordon-<id>; its socket and console go in dir */
    bool devbox;
    unsigned memory_mib, vcpus; /* 0: the image's default, 1 */
    bool serial;                /* the agent's channel on virtio-serial even where vsock works */
    const char *clone_of;       /* a saved guest (a template) to clone instead of booting */
    const char *clone_disk;     /* devbox: the template's disk, copied for the clone */
    int boot_timeout_ms;
    volatile sig_atomic_t *cancel;
    void (*on_notice)(void *ud, const char *line);
    void *ud;
};
struct task_vm_up {
    struct cdn_vm_host *host;
    struct cdn_vm *vm;
    struct cdn_channel *ch;
    char *overlay;                 /* devbox: the VM's disk */
    const char *accel, *transport; /* static strings */
    unsigned memory_mib, vcpus;
    uint64_t create_ms, boot_ms;
};
/* On failure u holds what got that far: task_vm_down it. */
int task_vm_up(const struct task_vm_req *q, struct task_vm_up *u, cdn_err **err);
void task_vm_down(struct task_vm_up *u);
/* For a host that stopped answering, where any call could wait forever: u's local parts freed,
 * its VM and connection left to the host (cdn_vm_abandon). */
void task_vm_abandon(struct task_vm_up *u);
/* A warm VM's parts move to u and its folder's path to *dir; w is freed (task_warm.c). */
void task_warm_release(struct cdn_warm *w, struct task_vm_up *u, char **dir, uint64_t *idle_ms);

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
