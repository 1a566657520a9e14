/* SPDX-License-Identifier: Apache-2.0 */
/* The rules' verdict on a host and port (no DNS), and the classes of addresses that are refused
 * unless a rule names them. */
#include <arpa/inet.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "egress.h"
#include "eg_internal.h"

/* Lowercases host into out, drops IPv6 brackets and one trailing dot; false if it is neither an
 * address literal nor a valid DNS name. */
bool eg_normalize(const char *host, char *out, size_t size) {
    size_t n = strnlen(host, 300);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    if (n > 0 && host[n - 1] == '.')
        n--;
    if (n == 0 || n >= size || n > 253)
        return false;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(host[i] >= 'A' && host[i] <= 'Z' ? host[i] - 'A' + 'a' : host[i]);
    out[n] = '\0';
    struct in6_addr a6;
    if (inet_pton(AF_INET6, out, &a6) == 1)
        return true;
    size_t label = 0;
    for (size_t i = 0; i < n; i++) {
        char c = out[i];
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') ||
            ++label > 63)
            return false;
    }
    return label > 0;
}

/* Parses "a.b.c.d", "a.b.c.d/n", "v6", "v6/n" into family, bytes and prefix length. */
static bool parse_net(const char *s, int *family, uint8_t addr[16], unsigned *prefix) {
    char buf[80];
    if (strlen(s) >= sizeof(buf))
        return false;
    strcpy(buf, s);
    char *slash = strchr(buf, '/');
    unsigned bits = 0;
    if (slash) {
        *slash = '\0';
        if (sscanf(slash + 1, "%u", &bits) != 1)
            return false;
    }
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        *prefix = slash ? bits : 32;
        return *prefix <= 32;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = AF_INET6;
        *prefix = slash ? bits : 128;
        return *prefix <= 128;
    }
    return false;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits) {
    unsigned whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, whole) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

bool eg_rule_names_address(const char *rule_host) {
    int family;
    uint8_t a[16];
    unsigned p;
    return parse_net(rule_host, &family, a, &p);
}

bool eg_rule_covers_address(const char *rule_host, int family, const uint8_t *addr) {
    int rf;
    uint8_t ra[16];
    unsigned p;
    return parse_net(rule_host, &rf, ra, &p) && rf == family && prefix_eq(ra, addr, p);
}

static bool host_matches(const char *rule_host, const char *host) {
    int family;
    uint8_t a[16];
    unsigned p;
    if (parse_net(rule_host, &family, a, &p)) { /* an address or a CIDR: literals only */
        uint8_t h[16];
        int hf = inet_pton(AF_INET, host, h) == 1    ? AF_INET
                 : inet_pton(AF_INET6, host, h) == 1 ? AF_INET6
                                                     : 0;
        return hf == family && prefix_eq(a, h, p);
    }
    return fnmatch(rule_host, host, 0) == 0;
}

static bool port_matches(const struct cdn_egress_rule *r, uint16_t port) {
    if (r->nports == 0)
        return port == 80 || port == 443;
    for (size_t i = 0; i < r->nports; i++)
        if (r->ports[i] == port)
            return true;
    return false;
}

static int eg_decide(const struct cdn_egress_rules *rules, const char *host, uint16_t port,
                     struct cdn_egress_attempt *a) {
    a->allowed = false;
    a->purpose[0] = '\0';
    for (size_t i = 0; i < rules->n; i++) {
        const struct cdn_egress_rule *r = &rules->v[i];
        if (!host_matches(r->host, host) || !port_matches(r, port))
            continue;
        snprintf(a->rule, sizeof(a->rule), "%s", r->where ? r->where : "network.egress.rules");
        snprintf(a->purpose, sizeof(a->purpose), "%s", r->purpose ? r->purpose : "");
        a->allowed = r->allow;
        if (!r->allow)
            snprintf(a->why, sizeof(a->why), "egress to %.200s:%u denied by %s%s%.300s", host, port,
                     a->rule, r->reason ? ": " : "", r->reason ? r->reason : "");
        return (int)i;
    }
    snprintf(a->rule, sizeof(a->rule), "network.egress.default");
    a->allowed = rules->default_allow;
    if (!a->allowed)
        snprintf(a->why, sizeof(a->why),
                 "egress to %.200s:%u denied by network.egress.default (deny): no rule allows this "
                 "host and port",
                 host, port);
    return -1;
}

int cdn_egress_decide(const struct cdn_egress_rules *rules, const char *host, uint16_t port,
                      struct cdn_egress_attempt *a) {
    char h[256];
    a->port = port;
    if (!eg_normalize(host, h, sizeof(h))) {
        snprintf(a->host, sizeof(a->host), "%.200s", host);
        a->allowed = false;
        snprintf(a->rule, sizeof(a->rule), "cordon.host");
        snprintf(a->why, sizeof(a->why), "egress to '%.200s' refused: not a host name or address",
                 host);
        return -1;
    }
    snprintf(a->host, sizeof(a->host), "%s", h);
    return eg_decide(rules, h, port, a);
}

static const char *class4(const uint8_t *b) {
    uint32_t v = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    static const struct {
        uint32_t net;
        unsigned bits;
        const char *name;
    } nets[] = {
        {0x00000000, 8, "unspecified"},     {0x0a000000, 8, "private"},
        {0x64400000, 10, "shared (CGNAT)"}, {0x7f000000, 8, "loopback"},
        {0xa9fe0000, 16, "link-local"},     {0xac100000, 12, "private"},
        {0xc0000000, 24, "reserved"},       {0xc0a80000, 16, "private"},
        {0xc6120000, 15, "benchmarking"},   {0xe0000000, 4, "multicast"},
        {0xf0000000, 4, "reserved"},
    };
    for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++) {
        uint32_t mask = nets[i].bits ? ~0u << (32 - nets[i].bits) : 0;
        if ((v & mask) == nets[i].net)
            return nets[i].name;
    }
    return NULL;
}

const char *cdn_egress_address_class(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET)
        return class4((const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr);
    if (sa->sa_family != AF_INET6)
        return "not IP";
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t zero[16], mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff},
                                   nat64[12] = {0x00, 0x64, 0xff, 0x9b};
    if (!memcmp(b, zero, 15) && (b[15] == 0 || b[15] == 1))
        return b[15] ? "loopback" : "unspecified";
    if (!memcmp(b, mapped, 12) || !memcmp(b, nat64, 12)) /* an IPv4 address inside */
        return class4(b + 12);
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
        return "link-local";
    if ((b[0] & 0xfe) == 0xfc)
        return "private";
    if (b[0] == 0xff)
        return "multicast";
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
        return "documentation";
    return NULL;
}
