/* SPDX-License-Identifier: Apache-2.0 */
/* th_httpd: see httpd.h. */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test.h"

struct route {
    char path[256], type[64];
    char *body;
    size_t len;
};

struct th_httpd {
    struct route routes[16];
    size_t n_routes;
    int fd;
    uint16_t port;
    char addr[64];
    pthread_t th;
    atomic_bool stop;
    atomic_uint requests;
    pthread_mutex_t mu;
    char last[4096];
};

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void serve(struct th_httpd *h, int c) {
    char head[4096];
    size_t got = 0;
    struct pollfd p = {.fd = c, .events = POLLIN};
    while (got < sizeof(head) - 1 && poll(&p, 1, 10000) == 1) {
        ssize_t n = recv(c, head + got, sizeof(head) - 1 - got, 0);
        if (n <= 0)
            return;
        got += (size_t)n;
        head[got] = '\0';
        if (strstr(head, "\r\n\r\n"))
            break;
    }
    if (!strstr(head, "\r\n\r\n"))
        return;
    pthread_mutex_lock(&h->mu);
    snprintf(h->last, sizeof(h->last), "%s", head);
    pthread_mutex_unlock(&h->mu);
    atomic_fetch_add(&h->requests, 1);
    unsigned long long size = 0;
    char hdr[256];
    char path[256] = "";
    pthread_mutex_lock(&h->mu); /* routes are added before requests come; held while serving */
    size_t n_routes = h->n_routes;
    pthread_mutex_unlock(&h->mu);
    if (sscanf(head, "GET %255[^ ?]", path) == 1)
        for (size_t i = 0; i < n_routes; i++)
            if (!strcmp(path, h->routes[i].path)) {
                snprintf(hdr, sizeof(hdr),
                         "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nContent-Type: %s\r\n"
                         "Connection: close\r\n\r\n",
                         h->routes[i].len, h->routes[i].type);
                send_all(c, hdr, strlen(hdr));
                send_all(c, h->routes[i].body, h->routes[i].len);
                return;
            }
    if (sscanf(head, "GET /bytes/%llu", &size) == 1) {
        snprintf(hdr, sizeof(hdr),
                 "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\nContent-Type: "
                 "application/octet-stream\r\nConnection: close\r\n\r\n",
                 size);
        send_all(c, hdr, strlen(hdr));
        static char chunk[256 * 1024];
        if (!chunk[1])
            for (size_t i = 0; i < sizeof(chunk); i++)
                chunk[i] = (char)('a' + i % 26);
        while (size) {
            size_t n = size < sizeof(chunk) ? (size_t)size : sizeof(chunk);
            ssize_t w = send(c, chunk, n, MSG_NOSIGNAL);
            if (w <= 0)
                return;
            size -= (size_t)w;
        }
        return;
    }
    char body[128];
    snprintf(body, sizeof(body), "hello from %s\n", h->addr);
    snprintf(hdr, sizeof(hdr),
             "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nContent-Type: text/plain\r\n"
             "Connection: close\r\n\r\n",
             strlen(body));
    send_all(c, hdr, strlen(hdr));
    send_all(c, body, strlen(body));
}

static void *loop(void *arg) {
    struct th_httpd *h = arg;
    while (!atomic_load(&h->stop)) {
        struct pollfd p = {.fd = h->fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        int c = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve(h, c);
        shutdown(c, SHUT_WR);
        close(c);
    }
    return NULL;
}

struct th_httpd *th_httpd_start(const char *addr) {
    struct th_httpd *h = calloc(1, sizeof(*h));
    ASSERT_TRUE(h != NULL);
    snprintf(h->addr, sizeof(h->addr), "%s", addr);
    pthread_mutex_init(&h->mu, NULL);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    ASSERT_EQ(inet_pton(AF_INET, addr, &sa.sin_addr), 1);
    h->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ASSERT_EQ(bind(h->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ASSERT_EQ(listen(h->fd, 64), 0);
    socklen_t len = sizeof(sa);
    getsockname(h->fd, (struct sockaddr *)&sa, &len);
    h->port = ntohs(sa.sin_port);
    ASSERT_EQ(pthread_create(&h->th, NULL, loop, h), 0);
    return h;
}

uint16_t th_httpd_port(const struct th_httpd *h) { return h->port; }
unsigned th_httpd_requests(const struct th_httpd *h) { return atomic_load(&h->requests); }

const char *th_httpd_last_head(struct th_httpd *h) {
    pthread_mutex_lock(&h->mu);
    pthread_mutex_unlock(&h->mu);
    return h->last;
}

void th_httpd_route(struct th_httpd *h, const char *path, const char *type, const void *body,
                    size_t len) {
    pthread_mutex_lock(&h->mu);
    ASSERT_TRUE(h->n_routes < 16);
    struct route *r = &h->routes[h->n_routes];
    snprintf(r->path, sizeof(r->path), "%s", path);
    snprintf(r->type, sizeof(r->type), "%s", type);
    r->body = malloc(len ? len : 1);
    memcpy(r->body, body, len);
    r->len = len;
    h->n_routes++;
    pthread_mutex_unlock(&h->mu);
}

void th_httpd_stop(struct th_httpd *h) {
    if (!h)
        return;
    atomic_store(&h->stop, true);
    pthread_join(h->th, NULL);
    for (size_t i = 0; i < h->n_routes; i++)
        free(h->routes[i].body);
    close(h->fd);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
