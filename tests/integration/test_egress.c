/* SPDX-License-Identifier: Apache-2.0 */
/* The egress path without a VM: a real cordon-agent (its proxy on a loopback port), the host's
 * channel with cdn_egress behind it, and real HTTP servers on 127.0.0.2; the clients are plain
 * sockets speaking to the proxy as curl does (CONNECT, and absolute http:// requests). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "egress.h"
#include "harness.h"
#include "httpd.h"
#include "policy.h"
#include "test.h"

struct hooks {
    struct cdn_egress *eg;
    char decisions[16][1000]; /* "decision rule why" */
    unsigned n_decided, n_ended;
    uint64_t last_down;
};

static int h_open(void *ud, const char *host, uint16_t port, bool tunnel, void **token, char *why,
                  size_t size) {
    struct hooks *h = ud;
    struct cdn_egress_attempt *a = calloc(1, sizeof(*a));
    int fd = cdn_egress_open(h->eg, host, port, tunnel, a);
    snprintf(why, size, "%s", a->why);
    *token = a;
    return fd;
}

static void h_decided(void *ud, void *token) {
    struct hooks *h = ud;
    struct cdn_egress_attempt *a = token;
    if (h->n_decided < 16)
        snprintf(h->decisions[h->n_decided], sizeof(h->decisions[0]), "%s %.160s %.760s",
                 !a->allowed ? "denied"
                 : a->error  ? "failed"
                             : "allowed",
                 a->rule, a->why);
    h->n_decided++;
}

static void h_ended(void *ud, void *token, uint64_t up, uint64_t down) {
    struct hooks *h = ud;
    (void)up;
    h->last_down = down;
    h->n_ended++;
    free(token);
}

struct client {
    uint16_t proxy;
    char request[512];
    char follow[256]; /* sent after a 200 to a CONNECT */
    char head[2048];  /* the response head (the tunnel's own, after a CONNECT) */
    char body[512];
    uint64_t body_bytes;
    atomic_bool done;
};

static size_t read_head(int fd, char *out, size_t size, char *extra, size_t *extra_len) {
    size_t got = 0;
    *extra_len = 0;
    while (got < size - 1) {
        ssize_t n = recv(fd, out + got, size - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        out[got] = '\0';
        char *end = strstr(out, "\r\n\r\n");
        if (end) {
            size_t hl = (size_t)(end + 4 - out);
            *extra_len = got - hl;
            memcpy(extra, out + hl, *extra_len);
            out[hl] = '\0';
            return hl;
        }
    }
    return 0;
}

static void *client_run(void *arg) {
    struct client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(c->proxy)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    struct timeval tv = {.tv_sec = 60};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        send(fd, c->request, strlen(c->request), MSG_NOSIGNAL);
        static char extra[4096];
        size_t extra_len;
        read_head(fd, c->head, sizeof(c->head), extra, &extra_len);
        if (c->follow[0] && strstr(c->head, " 200 ")) {
            send(fd, c->follow, strlen(c->follow), MSG_NOSIGNAL);
            read_head(fd, c->head, sizeof(c->head), extra, &extra_len);
        }
        memcpy(c->body, extra, extra_len < sizeof(c->body) - 1 ? extra_len : sizeof(c->body) - 1);
        c->body_bytes = extra_len;
        static char buf[256 * 1024];
        for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) {
            if (c->body_bytes < sizeof(c->body) - 1)
                memcpy(c->body + c->body_bytes, buf,
                       (size_t)n < sizeof(c->body) - 1 - c->body_bytes
                           ? (size_t)n
                           : sizeof(c->body) - 1 - c->body_bytes);
            c->body_bytes += (uint64_t)n;
        }
    }
    close(fd);
    atomic_store(&c->done, true);
    return NULL;
}

/* Runs one client against the proxy while this thread pumps the channel. */
static void through_proxy(struct cdn_channel *ch, struct client *c, long *peak_rss) {
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, client_run, c), 0);
    uint64_t deadline = th_now_ms() + 120000;
    while (!atomic_load(&c->done) && th_now_ms() < deadline) {
        cdn_err *err = NULL;
        ASSERT_OK(cdn_channel_poll(ch, 50, &err), err);
        if (peak_rss) {
            long r = th_rss_kib();
            if (r > *peak_rss)
                *peak_rss = r;
        }
    }
    pthread_join(th, NULL);
    ASSERT_TRUE(atomic_load(&c->done));
    /* the stream's last frames (eof both ways) */
    for (int i = 0; i < 10; i++) {
        cdn_err *err = NULL;
        ASSERT_OK(cdn_channel_poll(ch, 20, &err), err);
    }
}

struct shell {
    const char *cmd;
    int status;
    atomic_bool done;
};

static void *shell_run(void *arg) {
    struct shell *sh = arg;
    sh->status = system(sh->cmd);
    atomic_store(&sh->done, true);
    return NULL;
}

/* Runs a real client (curl, python) as a shell command while this thread pumps the channel. */
static int client_program(struct cdn_channel *ch, const char *cmd) {
    struct shell sh = {.cmd = cmd};
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, shell_run, &sh), 0);
    uint64_t deadline = th_now_ms() + 60000;
    while (!atomic_load(&sh.done) && th_now_ms() < deadline) {
        cdn_err *err = NULL;
        ASSERT_OK(cdn_channel_poll(ch, 50, &err), err);
    }
    pthread_join(th, NULL);
    return sh.status;
}

static uint16_t free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    socklen_t len = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

TEST_T(egress_is_decided_by_rules_relayed_and_recorded, 240) {
    struct th_httpd *web = th_httpd_start("127.0.0.2");
    struct th_httpd *other = th_httpd_start("127.0.0.3");
    uint16_t port = th_httpd_port(web), proxy = free_port(), tls_port = free_port();
    char policy[1024];
    snprintf(
        policy, sizeof(policy),
        "version: 1\n"
        "network:\n"
        "  egress:\n"
        "    rules:\n"
        "      - {host: 127.0.0.2, ports: [%u, %u], purpose: packages, reason: the test registry}\n"
        "      - {host: localhost, ports: [%u], purpose: api}\n"
        "      - {host: '*', ports: [%u], purpose: docs}\n",
        port, tls_port, port, th_httpd_port(other));
    struct cdn_policy *pol = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_policy_parse("egress.yaml", policy, strlen(policy), &pol, &err), err);
    struct hooks h = {0};
    ASSERT_OK(cdn_egress_new(cdn_policy_egress(pol), &h.eg, &err), err);

    char listen[64];
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", proxy);
    const char *extra[] = {"--egress-proxy", listen, NULL};
    struct th_agent a;
    th_agent_spawn(&a, extra);
    struct cdn_channel_opts opts = {.name = "egress"};
    struct cdn_channel *ch = NULL;
    ASSERT_OK(cdn_channel_open(a.host_fd, &opts, &ch, &err), err);
    struct cdn_channel_egress hk = {
        .open = h_open, .decided = h_decided, .ended = h_ended, .ud = &h};
    cdn_channel_set_egress(ch, &hk);

    /* allowed: a CONNECT tunnel, then a plain request (rewritten to origin form) */
    struct client c = {.proxy = proxy};
    snprintf(c.request, sizeof(c.request), "CONNECT 127.0.0.2:%u HTTP/1.1\r\nHost: x\r\n\r\n",
             port);
    snprintf(c.follow, sizeof(c.follow), "GET /tunnel HTTP/1.1\r\nHost: 127.0.0.2\r\n\r\n");
    through_proxy(ch, &c, NULL);
    ASSERT_TRUE(strstr(c.head, "HTTP/1.1 200 OK") != NULL);
    ASSERT_STREQ(c.body, "hello from 127.0.0.2\n");

    struct client p = {.proxy = proxy};
    snprintf(p.request, sizeof(p.request),
             "GET http://127.0.0.2:%u/plain?q=1 HTTP/1.1\r\nHost: 127.0.0.2\r\n"
             "Proxy-Connection: keep-alive\r\n\r\n",
             port);
    through_proxy(ch, &p, NULL);
    ASSERT_STREQ(p.body, "hello from 127.0.0.2\n");
    ASSERT_TRUE(strncmp(th_httpd_last_head(web), "GET /plain?q=1 HTTP/1.1\r\n", 25) == 0);
    ASSERT_TRUE(strstr(th_httpd_last_head(web), "Proxy-Connection") == NULL);
    ASSERT_TRUE(strstr(th_httpd_last_head(web), "Connection: close") != NULL);
    ASSERT_EQ(th_httpd_requests(web), 2u);

    /* real clients: curl (plain and, through CONNECT, HTTPS to openssl s_server) and Python's
     * urllib, each told only the proxy's address */
    _cleanup_free_ char *tmp = th_tmpdir();
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout k.pem -out c.pem "
             "-days 1 -subj /CN=127.0.0.2 >/dev/null 2>&1 && "
             "(openssl s_server -accept 127.0.0.2:%u -cert c.pem -key k.pem -www -quiet "
             ">/dev/null 2>&1 & echo $! > s_server.pid) && sleep 0.5",
             tmp, tls_port);
    ASSERT_EQ(system(cmd), 0);
    snprintf(cmd, sizeof(cmd),
             "curl -sS --max-time 20 -x http://127.0.0.1:%u http://127.0.0.2:%u/curl > %s/plain && "
             "curl -sS --max-time 20 -k -x http://127.0.0.1:%u https://127.0.0.2:%u/ > %s/tls && "
             "http_proxy=http://127.0.0.1:%u /usr/bin/python3 -c \"import urllib.request; "
             "print(urllib.request.urlopen('http://127.0.0.2:%u/py').read().decode(), end='')\" "
             "> %s/py",
             proxy, port, tmp, proxy, tls_port, tmp, proxy, port, tmp);
    int st = client_program(ch, cmd);
    snprintf(cmd, sizeof(cmd), "kill $(cat %s/s_server.pid)", tmp);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(st, 0);
    char path[4400];
    snprintf(path, sizeof(path), "%s/plain", tmp);
    _cleanup_free_ char *plain = th_read_file(path);
    ASSERT_STREQ(plain, "hello from 127.0.0.2\n");
    snprintf(path, sizeof(path), "%s/tls", tmp);
    _cleanup_free_ char *tls = th_read_file(path);
    ASSERT_CONTAINS(tls, "s_server");
    snprintf(path, sizeof(path), "%s/py", tmp);
    _cleanup_free_ char *py = th_read_file(path);
    ASSERT_STREQ(py, "hello from 127.0.0.2\n");
    th_rmtree(tmp);
    unsigned seen = h.n_decided;

    /* refused at once with a 403 naming the rule: a host no rule names, a port no rule names,
     * a loopback address reached through a glob rule, a name resolving to loopback */
    struct {
        const char *target;
        uint16_t port;
        const char *want;
    } denied[] = {
        {"denied.invalid", 443, "network.egress.default"},
        {"127.0.0.2", 1, "network.egress.default"},
        {"127.0.0.3", 0, "127.0.0.3:"}, /* port filled below: the '*' rule, but loopback */
        {"localhost", 0, "is a loopback address"},
    };
    denied[2].port = th_httpd_port(other);
    denied[3].port = port;
    unsigned before = th_httpd_requests(web) + th_httpd_requests(other);
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        struct client d = {.proxy = proxy};
        snprintf(d.request, sizeof(d.request), "CONNECT %s:%u HTTP/1.1\r\n\r\n", denied[i].target,
                 denied[i].port);
        uint64_t t0 = th_now_ms();
        through_proxy(ch, &d, NULL);
        printf("  %s:%u -> %.40s (%llu ms): %s", denied[i].target, denied[i].port, d.head,
               (unsigned long long)(th_now_ms() - t0), d.body);
        ASSERT_TRUE(strncmp(d.head, "HTTP/1.1 403 Forbidden", 22) == 0);
        ASSERT_TRUE(strstr(d.body, denied[i].want) != NULL);
    }
    ASSERT_EQ(th_httpd_requests(web) + th_httpd_requests(other), before);
    ASSERT_EQ(seen, 5u); /* two raw clients, three real ones */
    ASSERT_TRUE(strstr(h.decisions[seen], "denied network.egress.default") != NULL);
    ASSERT_TRUE(strstr(h.decisions[seen + 2], "denied network.egress.rules[2]") != NULL);
    ASSERT_TRUE(strstr(h.decisions[seen + 3], "denied network.egress.rules[1]") != NULL);

    /* 100 MiB through a tunnel: host memory bounded by the window, not the download */
    long rss0 = th_rss_kib(), peak = rss0;
    struct client big = {.proxy = proxy};
    snprintf(big.request, sizeof(big.request), "CONNECT 127.0.0.2:%u HTTP/1.1\r\n\r\n", port);
    snprintf(big.follow, sizeof(big.follow), "GET /bytes/104857600 HTTP/1.1\r\nHost: x\r\n\r\n");
    uint64_t t0 = th_now_ms();
    through_proxy(ch, &big, &peak);
    double s = (double)(th_now_ms() - t0) / 1000.0;
    printf("  100 MiB through the proxy in %.2f s (%.0f MiB/s); host RSS %ld -> peak %ld KiB\n", s,
           100.0 / s, rss0, peak);
    ASSERT_EQ(big.body_bytes, 104857600ull);
    ASSERT_LE(peak - rss0, 32 * 1024);
    ASSERT_EQ(h.n_ended, h.n_decided);
    ASSERT_EQ(h.n_decided, seen + 5);
    ASSERT_TRUE(h.last_down > 104857600ull);

    cdn_channel_free(ch);
    th_agent_kill(&a);
    cdn_egress_free(h.eg);
    cdn_policy_free(pol);
    th_httpd_stop(web);
    th_httpd_stop(other);
}
