/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_task: a sandbox's session (a fresh VM, its commands through its agent, its result taken
 * and diffed on the host, a teardown that runs on every path) and the policy's gate before each
 * command. cordond's scheduler drives it; `cordon run` goes through cordond too. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "approval.h"
#include "archive.h"
#include "channel.h"
#include "err.h"
#include "policy.h"
#include "workspace.h"

struct cdn_evidence;
struct cdn_warm;

struct cdn_task_spec {
    const char *state_dir;  /* tasks/<id>/ is created here (console log kept as evidence) */
    const char *images_dir; /* kernel/vmlinux and <image>.cpio.lz4 */
    const char *image;      /* "minimal" */
    const char *uri;        /* libvirt URI, NULL for qemu:///system */
    unsigned memory_mib, vcpus;
    const char *accel;       /* "auto" (default: KVM if a probe boot proved it), "kvm" or "tcg" */
    const char *kernel_args; /* appended to the guest kernel's command line, may be NULL */
    int boot_timeout_ms;     /* until the agent's hello */
    uint32_t timeout_ms;     /* the commands' timeout (0: none), enforced in the guest */
    const char *workdir;     /* the commands' default folder (NULL: /workspace or /) */
    uint64_t output_limit;   /* per fd, 0: none */
    void *ud;
    /* Called once with a one-line notice worth showing (e.g. the fall back to TCG). */
    void (*on_notice)(void *ud, const char *line);
    /* Set from a signal handler to tear the task down now (the call returns -EINTR). */
    volatile sig_atomic_t *cancel;

    /* A repository to work on (NULL: none): mirrored, checked out at ref and uploaded to
     * /workspace (the command's default folder); its result is diffed on the host. */
    const char *repo, *ref;
    struct cdn_archive_limits result_limits; /* what /workspace may bring back (0: defaults) */
    const char *const *artifacts;            /* globs: matching guest files go to the evidence */
    size_t n_artifacts;
    uint64_t artifact_max_bytes, artifacts_max_total; /* 0: 64 MiB each, 256 MiB in all */

    /* The policy (NULL: not gated): its limits bound the options above (larger ones are
     * refused) and fill the unset ones; cdn_gate_check decides each command by it. */
    uint64_t disk_max_bytes;          /* the task's overlay may not grow past this (0: no limit) */
    const struct cdn_rlimit *rlimits; /* for the commands (the policy's max_processes) */
    size_t n_rlimits;
    const struct cdn_policy *policy;
    const char *policy_sha256; /* of the policy's text, for the audit trail (NULL: unknown) */
};

struct cdn_task_result {
    char id[17];
    char vm[32];
    const char *accel;     /* "kvm" or "tcg" */
    const char *transport; /* "vsock" or "serial" */
    char *console;         /* path of the kept console log; caller frees */
    struct cdn_exec_result exec;
    uint64_t create_ms; /* libvirt's domain creation alone (QEMU started, guest not yet run) */
    uint64_t boot_ms;   /* domain creation to the agent's hello */
    char *evidence;     /* tasks/<id>/evidence; caller frees */
    bool has_repo, changed;
    char base[41], result[41]; /* the base commit and the task branch's commit */
    char branch[80];
    struct cdn_diff_stats diff;
    uint64_t total_ms; /* boot and command (the teardown follows) */
};

/* A sandbox: the same task, kept alive between commands (cordond's unit of work). Open prepares
 * the folder, the evidence and the workspace (no VM yet); boot starts the VM and uploads the
 * workspace; commands run concurrently; the result can be taken any number of times (each take a
 * commit on the task branch, diffed against the base); close destroys the VM and saves the
 * evidence. spec (and everything it points to) must outlive the session. With id set the
 * sandbox's folder is tasks/<id> (a fresh id otherwise). */
struct cdn_session;
int cdn_session_open(const struct cdn_task_spec *spec, const char *id, struct cdn_session **out,
                     cdn_err **err);
int cdn_session_boot(struct cdn_session *s, cdn_err **err);
/* Destroys the VM (if any), copies its console log and saves the manifest (error, when not NULL,
 * recorded as the sandbox's). The evidence and the worktree stay on disk. With out, the session's
 * result moves there (cdn_task_result_free it). */
void cdn_session_close(struct cdn_session *s, const char *error, struct cdn_task_result *out);
void cdn_session_closep(struct cdn_session **s);
const struct cdn_task_result *cdn_session_info(const struct cdn_session *s);
struct cdn_evidence *cdn_session_evidence(struct cdn_session *s);
struct cdn_channel *cdn_session_channel(struct cdn_session *s); /* NULL before boot */
/* The secrets' redactor, for what else leaves the sandbox (NULL: no secrets). */
struct cdn_redactor;
const struct cdn_redactor *cdn_session_redactor(const struct cdn_session *s);
/* The commands' default folder in the guest (/workspace with a repository). */
const char *cdn_session_cwd(const struct cdn_session *s);
/* One command, its output tee'd to the evidence and to fn. Several may run at once; the caller
 * polls, and finishes each (its exit recorded, the command freed). */
struct cdn_session_cmd;
int cdn_session_cmd_start(struct cdn_session *s, const struct cdn_exec_spec *x, cdn_output_fn fn,
                          void *ud, struct cdn_session_cmd **out, cdn_err **err);
bool cdn_session_cmd_done(struct cdn_session *s, const struct cdn_session_cmd *c);
/* A command run in the background: its output (still redacted) goes to fn only, not to the
 * evidence's logs (its owner keeps it: a bounded ring); its start and exit are recorded. */
void cdn_session_cmd_detach(struct cdn_session *s, struct cdn_session_cmd *c);
int cdn_session_cmd_signal(struct cdn_session *s, struct cdn_session_cmd *c, int signo,
                           cdn_err **err);
/* Takes the exit (waiting up to timeout_ms) or, with failed set, records the command as failed. */
int cdn_session_cmd_finish(struct cdn_session *s, struct cdn_session_cmd *c, int timeout_ms,
                           struct cdn_exec_result *res, cdn_err **err);
/* The channel polled once (up to timeout_ms, or until wake_fd, when >= 0, is readable: 1 is
 * returned then), and the disk limit checked (-EFBIG past it). */
int cdn_session_poll(struct cdn_session *s, int wake_fd, int timeout_ms, cdn_err **err);
/* /workspace (and the spec's artifacts) out of the guest, committed and diffed on the host:
 * res->result, res->diff and the evidence's diff.patch are updated. what names the command(s)
 * in the commit message. */
int cdn_session_take_result(struct cdn_session *s, const char *what, cdn_err **err);

/* The policy's decision on argv, recorded in ev: 0 to allow, -EPERM (denied, with the reason) or
 * 1 when a person must decide: *id is a new request's, *pending the request to record (its
 * argv and parts: cdn_gate_pending_request) and later settle. */
struct cdn_gate_pending;
int cdn_gate_check(const struct cdn_policy *p, struct cdn_evidence *ev, const char *const *argv,
                   size_t argc, char id[17], struct cdn_gate_pending **pending, cdn_err **err);
/* {"argv": [...], "parts": [...], ...}: borrowed. */
const json_t *cdn_gate_pending_request(const struct cdn_gate_pending *g);
/* How a pending approval ended, recorded in the evidence; -EPERM unless approved. Frees p. */
int cdn_gate_settle(struct cdn_gate_pending *p, struct cdn_evidence *ev, const char *id,
                    enum cdn_approval_status st, const char *by, cdn_err **err);

/* The policy's limits folded into s (an option over the policy's is refused with -EPERM naming
 * it; unset ones take the policy's); nproc holds the process rlimit s then points to. */
int cdn_task_apply_limits(struct cdn_task_spec *s, struct cdn_rlimit *nproc, cdn_err **err);
/* Writes stdin to a command started with stdin_pipe, then closes it. */
int cdn_session_cmd_stdin(struct cdn_session *s, struct cdn_session_cmd *c, const void *data,
                          size_t len, cdn_err **err);

/* Replaces a running sandbox's egress rules (UpdatePolicy); recorded in the evidence with who
 * and the new policy's SHA-256. Connections already open are not touched. */
int cdn_session_set_egress(struct cdn_session *s, const struct cdn_egress_rules *rules,
                           const char *by, const char *policy_sha256, cdn_err **err);

/* A session's pauses (by: who asked, for the audit trail). pause suspends the VM where it is;
 * save writes its memory to disk and ends the domain (from running or paused; the caller makes
 * sure no command is running: their streams end with the channel); resume brings either back,
 * the guest's clock set from the host's. reset releases the VM and puts the workspace back at
 * the base commit (the result recorded as discarded); cdn_session_boot then starts a fresh VM. */
int cdn_session_pause(struct cdn_session *s, const char *by, cdn_err **err);
int cdn_session_save(struct cdn_session *s, const char *by, cdn_err **err);
int cdn_session_resume(struct cdn_session *s, const char *by, cdn_err **err);
int cdn_session_reset(struct cdn_session *s, const char *by, cdn_err **err);
bool cdn_session_paused(const struct cdn_session *s);
bool cdn_session_saved(const struct cdn_session *s);

/* A policy secret's value from where it says (env:NAME of this process, or file:/path); the
 * caller wipes (explicit_bzero) and frees it. */
int cdn_task_secret_read(const struct cdn_policy_secret *sec, char **value, size_t *len,
                         cdn_err **err);

void cdn_task_result_free(struct cdn_task_result *res);

/* A warm VM: booted for an image with the image's default shape (its memory, 1 vCPU, no extra
 * kernel arguments), agent ready, no workspace, no policy, no session. One session takes it
 * (cdn_session_set_warm: its boot is then the workspace's upload) and it is never handed out
 * again: the session's close destroys it. Its folder is tasks/<id>, owner-marked like a task's,
 * so a dead daemon's warm VMs are reaped by cdn_task_gc. */
struct cdn_warm_spec {
    const char *state_dir, *images_dir, *image, *uri, *accel;
    int boot_timeout_ms;
    volatile sig_atomic_t *cancel;
    void (*on_notice)(void *ud, const char *line);
    void *ud;
};
struct cdn_warm;
int cdn_warm_boot(const struct cdn_warm_spec *spec, struct cdn_warm **out, cdn_err **err);
/* Whether its VM still runs (a warm VM that died is freed, not handed out). */
bool cdn_warm_alive(struct cdn_warm *w);
const char *cdn_warm_image(const struct cdn_warm *w);
unsigned cdn_warm_memory_mib(const struct cdn_warm *w);
uint64_t cdn_warm_boot_ms(const struct cdn_warm *w);
/* Whether it was cloned from a template rather than booted. */
bool cdn_warm_cloned(const struct cdn_warm *w);
/* Cloned for the sandbox that takes it (the pool had none ready): its start waited for it. */
void cdn_warm_set_for_sandbox(struct cdn_warm *w);
bool cdn_warm_for_sandbox(const struct cdn_warm *w);
/* Destroys its VM and removes its folder. NULL is fine. */
void cdn_warm_free(struct cdn_warm *w);
/* Its host stopped answering: its folder removed and w freed making no call to the host (its
 * VM is left there: see cdn_vm_abandon). NULL is fine. */
void cdn_warm_abandon(struct cdn_warm *w);
/* The session boots into w (taken; freed with the session if it never boots). The session's
 * spec must ask for w's image and shape: memory, vCPUs and kernel arguments as w has them. */
void cdn_session_set_warm(struct cdn_session *s, struct cdn_warm *w);
/* The session's host stopped answering (its scheduler drained it): its close then makes no call
 * to that host, which could wait forever, and leaves the VM to it. */
void cdn_session_host_lost(struct cdn_session *s);

/* A template: a warm VM booted once (on virtio-serial) and saved with its agent connected
 * (libvirt's save image, and its disk for devbox), in an owner-marked folder of its own. Warm VMs
 * of its image are then cloned from it (libvirt's restore, in a folder of their own on a copy of
 * its disk) instead of booted; each clone gets the host's clock and fresh entropy from the
 * channel's hello. libvirt restores a saved guest under its own name only: a clone runs as the
 * template's domain, so one clone of a template runs at a time (cdn_warm_template_in_use), and
 * the dead-daemon sweep (cdn_task_gc) reaps it with the template's folder. Clones share the
 * template's kernel memory layout (KASLR). */
struct cdn_warm_template;
int cdn_warm_template_make(const struct cdn_warm_spec *spec, struct cdn_warm_template **out,
                           cdn_err **err);
int cdn_warm_clone(const struct cdn_warm_spec *spec, const struct cdn_warm_template *t,
                   struct cdn_warm **out, cdn_err **err);
/* Whether a clone of it runs now (its domain exists). */
bool cdn_warm_template_in_use(const struct cdn_warm_template *t);
/* The template's cold boot to its agent's hello, and its save. */
uint64_t cdn_warm_template_boot_ms(const struct cdn_warm_template *t);
uint64_t cdn_warm_template_save_ms(const struct cdn_warm_template *t);
/* Removes the saved guest and its folder. NULL is fine. */
void cdn_warm_template_free(struct cdn_warm_template *t);
void cdn_warm_template_freep(struct cdn_warm_template **t);
