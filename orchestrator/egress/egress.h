/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_egress: the host's half of the guest's network. The guest has no network device; each
 * connection its programs ask the agent's proxy for arrives here as a host name and a port. It is
 * decided by network.egress (first matching rule; default deny), and only when allowed is the
 * name resolved, on the host, so no DNS query ever leaves for a name no rule allows. Addresses
 * that are loopback, private, link-local or otherwise not public are refused unless the rule that
 * allowed the name says `private: true` or names the address (or its CIDR) itself. The rules of a
 * running sandbox can be replaced (cdn_egress_set_rules); every call is thread-safe. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "policy.h"

struct cdn_egress;
struct sockaddr;

/* One attempt: what was asked, what was decided and why, where it went. */
struct cdn_egress_attempt {
    char host[256]; /* as asked (lowercase, without brackets or a trailing dot) */
    uint16_t port;
    bool tunnel;      /* CONNECT (else one plain HTTP request) */
    bool allowed;     /* by the rules */
    int error;        /* 0, or why an allowed attempt failed (errno: resolve, connect) */
    char rule[160];   /* "network.egress.rules[1] (line 30)", "network.egress.default", ... */
    char purpose[16]; /* the allowing rule's purpose, or "" */
    char why[768];    /* for a refusal or failure: the text the guest's program sees */
    char address[64]; /* where the host connected ("" if nowhere) */
    int64_t at_ms;    /* wall clock, when asked */
    uint64_t t0_ms;   /* monotonic, when asked */
};

int cdn_egress_new(const struct cdn_egress_rules *rules, struct cdn_egress **out, cdn_err **err);
void cdn_egress_free(struct cdn_egress *e);
void cdn_egress_freep(struct cdn_egress **e);
/* Replaces the rules (copied); attempts already connected are not touched. */
int cdn_egress_set_rules(struct cdn_egress *e, const struct cdn_egress_rules *rules, cdn_err **err);
/* The connection timeout of each address tried (default 10 s). */
void cdn_egress_set_connect_timeout(struct cdn_egress *e, int ms);

/* The rules' verdict on host:port, with no DNS (a->host normalized, allowed, rule, purpose,
 * why). Returns the deciding rule's index, or -1 (the default, or a host that is not valid). */
int cdn_egress_decide(const struct cdn_egress_rules *rules, const char *host, uint16_t port,
                      struct cdn_egress_attempt *a);
/* Decides, resolves and connects; blocks (call it off the channel's thread). Returns the
 * connected socket (non-blocking, close-on-exec), or -EPERM when refused by the rules or by the
 * address check, or another -errno when an allowed connection could not be made; a says which. */
int cdn_egress_open(struct cdn_egress *e, const char *host, uint16_t port, bool tunnel,
                    struct cdn_egress_attempt *a);

/* "loopback", "private", "link-local", ... for an address that is not public, else NULL. */
const char *cdn_egress_address_class(const struct sockaddr *sa);

/* The record of an attempt (for the evidence): at, host, port, tunnel, purpose, rule,
 * decision (allowed, denied, failed), address, bytes each way, duration. */
struct json_t;
struct json_t *cdn_egress_attempt_json(const struct cdn_egress_attempt *a, uint64_t bytes_up,
                                       uint64_t bytes_down, uint64_t duration_ms);
