/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_egress: the rules of one sandbox (replaceable while it runs), and an attempt from the
 * guest's request to a connected socket: decide, resolve on the host, check every address,
 * connect with a deadline. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "eg_internal.h"

#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define MAX_ADDRESSES 8

struct cdn_egress {
    pthread_mutex_t mu;
    struct cdn_egress_rules rules;
    int connect_timeout_ms;
};

int cdn_egress_new(const struct cdn_egress_rules *rules, struct cdn_egress **out, cdn_err **err) {
    struct cdn_egress *e = calloc(1, sizeof(*e));
    if (!e)
        return cdn_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    e->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
    if (rules && cdn_egress_rules_copy(rules, &e->rules) < 0) {
        cdn_egress_free(e);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    *out = e;
    return 0;
}

void cdn_egress_free(struct cdn_egress *e) {
    if (!e)
        return;
    cdn_egress_rules_free(&e->rules);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

void cdn_egress_freep(struct cdn_egress **e) {
    cdn_egress_free(*e);
    *e = NULL;
}

int cdn_egress_set_rules(struct cdn_egress *e, const struct cdn_egress_rules *rules,
                         cdn_err **err) {
    struct cdn_egress_rules copy;
    if (cdn_egress_rules_copy(rules, &copy) < 0)
        return cdn_err_set(err, ENOMEM, "out of memory");
    pthread_mutex_lock(&e->mu);
    struct cdn_egress_rules old = e->rules;
    e->rules = copy;
    pthread_mutex_unlock(&e->mu);
    cdn_egress_rules_free(&old);
    return 0;
}

void cdn_egress_set_connect_timeout(struct cdn_egress *e, int ms) {
    e->connect_timeout_ms = ms > 0 ? ms : DEFAULT_CONNECT_TIMEOUT_MS;
}

static void fmt_addr(const struct sockaddr *sa, char *out, size_t size) {
    char ip[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
        snprintf(out, size, "%s:%u", ip, port);
    } else {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        port = ntohs(s6->sin6_port);
        snprintf(out, size, "[%s]:%u", ip, port);
    }
}

/* A non-blocking connect that finishes within timeout_ms. */
static int connect_one(const struct addrinfo *ai, int timeout_ms) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return -e;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    if (n == 0)
        soerr = ETIMEDOUT;
    else if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr) {
        close(fd);
        return -soerr;
    }
    return fd;
}

struct addrinfo_owner {
    struct addrinfo *ai;
};
static void addrinfo_cleanup(struct addrinfo_owner *o) {
    if (o->ai)
        freeaddrinfo(o->ai);
}

int cdn_egress_open(struct cdn_egress *e, const char *host, uint16_t port, bool tunnel,
                    struct cdn_egress_attempt *a) {
    *a = (struct cdn_egress_attempt){.port = port, .tunnel = tunnel, .t0_ms = cdn_now_ms()};
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->at_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    char rule_host[256] = "";
    bool private_ok = false;
    pthread_mutex_lock(&e->mu);
    int idx = cdn_egress_decide(&e->rules, host, port, a);
    if (idx >= 0) {
        snprintf(rule_host, sizeof(rule_host), "%s", e->rules.v[idx].host);
        private_ok = e->rules.v[idx].private_ok;
    }
    int timeout_ms = e->connect_timeout_ms;
    pthread_mutex_unlock(&e->mu);
    if (!a->allowed)
        return -EPERM;
    if (port == 0) {
        a->allowed = false;
        snprintf(a->why, sizeof(a->why), "egress to %s:0 refused: port 0", a->host);
        return -EPERM;
    }

    /* Only now, for an allowed name, does a DNS query leave the host. */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    char service[8];
    snprintf(service, sizeof(service), "%u", port);
    _cleanup_(addrinfo_cleanup) struct addrinfo_owner res = {0};
    int g = getaddrinfo(a->host, service, &hints, &res.ai);
    if (g != 0) {
        a->error = g == EAI_SYSTEM ? errno : EHOSTUNREACH;
        snprintf(a->why, sizeof(a->why), "egress to %.200s:%u: the host cannot resolve it: %s",
                 a->host, port, gai_strerror(g));
        return -a->error;
    }
    bool named = rule_host[0] && eg_rule_names_address(rule_host);
    int last = EHOSTUNREACH, tried = 0;
    char refused[160] = "";
    for (const struct addrinfo *ai = res.ai; ai && tried < MAX_ADDRESSES; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        const char *cls = cdn_egress_address_class(ai->ai_addr);
        const uint8_t *raw = ai->ai_family == AF_INET
                                 ? (const uint8_t *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                                 : ((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr.s6_addr;
        bool explicit_ok = named && eg_rule_covers_address(rule_host, ai->ai_family, raw);
        if (cls && !private_ok && !explicit_ok) {
            char where[64];
            fmt_addr(ai->ai_addr, where, sizeof(where));
            snprintf(refused, sizeof(refused), "%s is a %s address", where, cls);
            continue;
        }
        tried++;
        int fd = connect_one(ai, timeout_ms);
        if (fd >= 0) {
            fmt_addr(ai->ai_addr, a->address, sizeof(a->address));
            return fd;
        }
        last = -fd;
    }
    if (!tried) {
        a->allowed = false;
        snprintf(a->why, sizeof(a->why),
                 "egress to %.200s:%u refused: %s, and %s does not name it (private: true, or the "
                 "address or its CIDR as the host)",
                 a->host, port, refused[0] ? refused : "no usable address", a->rule);
        return -EPERM;
    }
    a->error = last;
    snprintf(a->why, sizeof(a->why), "egress to %.200s:%u allowed by %s, but connecting failed: %s",
             a->host, port, a->rule, strerror(last));
    return -last;
}

json_t *cdn_egress_attempt_json(const struct cdn_egress_attempt *a, uint64_t bytes_up,
                                uint64_t bytes_down, uint64_t duration_ms) {
    char at[40];
    time_t sec = (time_t)(a->at_ms / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t n = strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(at + n, sizeof(at) - n, ".%03dZ", (int)(a->at_ms % 1000));
    const char *decision = !a->allowed ? "denied" : a->error ? "failed" : "allowed";
    return json_pack("{s:s, s:s, s:i, s:s, s:s*, s:s, s:s, s:s*, s:s*, s:I, s:I, s:I}", "at", at,
                     "host", a->host, "port", (int)a->port, "kind", a->tunnel ? "connect" : "http",
                     "purpose", a->purpose[0] ? a->purpose : NULL, "rule", a->rule, "decision",
                     decision, "address", a->address[0] ? a->address : NULL, "why",
                     a->why[0] ? a->why : NULL, "bytes_up", (json_int_t)bytes_up, "bytes_down",
                     (json_int_t)bytes_down, "duration_ms", (json_int_t)duration_ms);
}
