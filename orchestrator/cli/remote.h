/* SPDX-License-Identifier: Apache-2.0 */
/* What the CLI's client subcommands share: where cordond is (--addr, $CORDON_ADDR, the default
 * socket), TLS files, --json, turning a failed call into a message and an exit code, and the
 * sandbox as text or JSON. */
#pragma once

#include <getopt.h>
#include <signal.h>
#include <jansson.h>
#include <stdbool.h>

#include "api_client.h"
#include "buf.h"
#include "cli.h"

struct cli_remote {
    const char *addr; /* NULL: $CORDON_ADDR, else the default socket */
    const char *tls_cert, *tls_key, *tls_ca, *tls_server_name;
    bool json;
};

/* getopt_long entries for the options above (use their values, 0x100.., as they are). */
enum {
    CLI_OPT_ADDR = 0x100,
    CLI_OPT_TLS_CERT,
    CLI_OPT_TLS_KEY,
    CLI_OPT_TLS_CA,
    CLI_OPT_TLS_NAME,
    CLI_OPT_JSON
};
#define CLI_REMOTE_LONGOPTS                                                                        \
    {"addr", required_argument, NULL, CLI_OPT_ADDR},                                               \
        {"tls-cert", required_argument, NULL, CLI_OPT_TLS_CERT},                                   \
        {"tls-key", required_argument, NULL, CLI_OPT_TLS_KEY},                                     \
        {"tls-ca", required_argument, NULL, CLI_OPT_TLS_CA},                                       \
        {"tls-server-name", required_argument, NULL, CLI_OPT_TLS_NAME}, {                          \
        "json", no_argument, NULL, CLI_OPT_JSON                                                    \
    }
#define CLI_REMOTE_USAGE                                                                           \
    "  --addr ADDR        cordond's address: unix:/PATH (default $CORDON_ADDR, else\n"             \
    "                     " CDN_CLIENT_DEFAULT_ADDR ") or HOST:PORT (mutual TLS)\n"                \
    "  --tls-cert F, --tls-key F, --tls-ca F   the client certificate, its key and the CA\n"       \
    "                     for HOST:PORT ($CORDON_TLS_CERT, $CORDON_TLS_KEY, $CORDON_TLS_CA)\n"     \
    "  --tls-server-name N  the name the daemon's certificate carries (default: HOST)\n"           \
    "  --json             print JSON instead of text\n"

void cli_remote_init(struct cli_remote *r);
/* Takes one of the options above: true when c was one. */
bool cli_remote_option(struct cli_remote *r, int c, const char *arg);
/* For a subcommand with no options of its own: parses the ones above (optind: the first other
 * argument); -h prints usage (what comes before "options:") and exits 0; < 0 on bad usage. */
int cli_remote_parse(int argc, char **argv, struct cli_remote *r, const char *usage);
/* Set by SIGINT, SIGTERM or SIGHUP once cli_catch_interrupts ran: what the client's long calls
 * watch to cancel themselves (no SA_RESTART: a wait wakes). */
extern volatile sig_atomic_t cli_interrupted;
void cli_catch_interrupts(void);
/* Whether an address was given (--addr or $CORDON_ADDR). */
bool cli_remote_given(const struct cli_remote *r);
/* Whether a daemon is the place to ask: an address was given, or the default socket exists. */
bool cli_remote_wanted(const struct cli_remote *r);
/* Connects (lazily; the first call finds out); prints and returns < 0 on failure. */
int cli_remote_open(const char *cmd, const struct cli_remote *r, struct cdn_client **out);
/* Connects and makes one unary call: 0 with *resp, else the failure printed and its exit code. */
/* A call answered with a Sandbox: printed as JSON with --json, else by print; the exit code. */
int cli_remote_sandbox_call(const char *cmd, const struct cli_remote *r, const char *method,
                            const ProtobufCMessage *req, int timeout_ms,
                            void (*print)(const Cordon__V1__Sandbox *sb));
/* The same with its own deadline (a call that may boot or restore a VM). */
int cli_remote_unary_timeout(const char *cmd, const struct cli_remote *r, const char *method,
                             const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
                             int timeout_ms);
int cli_remote_unary(const char *cmd, const struct cli_remote *r, const char *method,
                     const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                     ProtobufCMessage **resp);
/* Prints "cordon CMD: message" and returns the exit code for the error: 126 refused, 124 deadline,
 * 130 interrupted, 125 otherwise. */
int cli_remote_fail(const char *cmd, int rc, cdn_err *err);

const char *cli_state_name(Cordon__V1__SandboxState s);
/* Polls GetSandbox until id leaves QUEUED and BOOTING: 0 once READY; -EIO (FAILED, its error),
 * -EBADFD (stopped), -ETIMEDOUT (timeout_s passed; 0: no limit) or -EINTR (cli_interrupted)
 * with err. With last, the last record read is left there (the caller frees it). */
int cli_sandbox_wait(struct cdn_client *c, const char *id, unsigned timeout_s,
                     Cordon__V1__Sandbox **last, cdn_err **err);
int cli_state_parse(const char *name, Cordon__V1__SandboxState *out);
json_t *cli_sandbox_json(const Cordon__V1__Sandbox *s);
void cli_sandbox_print(const Cordon__V1__Sandbox *s);
json_t *cli_approval_json(const Cordon__V1__Approval *a);
/* A folder's entry (dir_cmd.c): its type as a word, and as JSON (name, type, size, mode as
 * "0644", mtime_unix_ns, a symlink's link_target). */
const char *cli_entry_type_name(Cordon__V1__EntryType t);
json_t *cli_dir_entry_json(const Cordon__V1__DirEntry *e);
/* Output as a JSON string. Output that is not UTF-8 (binary) cannot be one: its bytes >= 0x80
 * become '?' and *lossy says so. */
json_t *cli_output_json(struct cdn_buf *b, bool *lossy);
/* "ID:PATH" split in place (true); false when s is a local path (no ':' before any '/'). */
bool cli_remote_target(char *s, char **id, char **path);
/* A guest path as the API takes it, allocated: a relative one (or "") under /workspace. NULL: no
 * memory. (Never cut short: a path too long is the guest's to refuse, not ours to shorten.) */
char *cli_guest_path(const char *path);
/* Prints j (compact) on a line of its own and frees it. */
void cli_json_print(json_t *j);
