/* SPDX-License-Identifier: Apache-2.0 */
/* The cordon CLI's subcommands: each parses its own arguments and returns the process exit code. */
#pragma once

#include <stdint.h>

/* Exit codes besides a command's own: */
#define CLI_EXIT_TIMEOUT 124 /* the command hit --timeout (as timeout(1)) */
#define CLI_EXIT_FAILURE 125 /* cordon could not run it (bad usage, boot failure, ...) */
#define CLI_EXIT_REFUSED 126 /* the policy refused it, or nobody approved it */
#define CLI_EXIT_INTERRUPTED 130

int cli_run(int argc, char **argv);
int cli_batch(int argc, char **argv);
int cli_gc(int argc, char **argv);
int cli_show(int argc, char **argv);
int cli_diff(int argc, char **argv);
int cli_policy(int argc, char **argv);
int cli_audit(int argc, char **argv);
/* Through cordond (remote.h): */
int cli_create(int argc, char **argv);
int cli_ls(int argc, char **argv);
/* cordon ls ID:PATH: a folder in a sandbox (max entries, 0: the daemon's default) */
struct cli_remote;
int cli_ls_dir(const struct cli_remote *r, char *target, uint32_t max);
int cli_stop(int argc, char **argv);
/* pause, resume, reset, extend (argv[0] says which) */
int cli_session(int argc, char **argv);
/* background processes */
int cli_ps(int argc, char **argv);
int cli_logs(int argc, char **argv);
int cli_kill(int argc, char **argv);
/* the review gate */
int cli_review(int argc, char **argv);
/* previews */
int cli_preview(int argc, char **argv);
/* the MCP server */
int cli_mcp(int argc, char **argv);
int cli_rm(int argc, char **argv);
int cli_exec(int argc, char **argv);
int cli_cp(int argc, char **argv);
int cli_events(int argc, char **argv);
int cli_show_remote(int argc, char **argv);
int cli_diff_remote(int argc, char **argv);
/* Through cordond, or the daemons of the state folder's `cordon run`s: */
int cli_approvals(int argc, char **argv);
int cli_approve(int argc, char **argv);
int cli_deny(int argc, char **argv);

/* An evidence manifest (evidence/manifest.json) for a person. */
struct json_t;
void cli_manifest_print(struct json_t *m);

/* Defaults shared by the subcommands: $CORDON_IMAGES, else the installed images, else
 * ./build/images; $CORDON_STATE, else /var/lib/cordon. */
const char *cli_default_images(void);
const char *cli_default_state(void);
