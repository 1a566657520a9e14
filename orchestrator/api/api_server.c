/* SPDX-License-Identifier: Apache-2.0 */
/* The gRPC server: listeners, the completion queue's thread, and who each call's tenant is.
 * gRPC core's own unix listener does not say who connected, so cordond accepts on its unix
 * socket itself, reads the peer's credentials (SO_PEERCRED), and hands the connection to gRPC
 * with grpc_server_add_channel_from_fd; the calls on it name the fd as their peer ("fd:N"). */
#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "api_client.h"
#include "api_internal.h"
#include "cleanup.h"

#define PENDING_REQUESTS 16

/* ---- tenants ---- */

static void peer_set(struct cdn_api *a, int fd, unsigned uid) {
    pthread_mutex_lock(&a->peers_mu);
    size_t i = 0;
    while (i < a->n_peers && a->peers[i].fd != fd)
        i++;
    if (i == a->n_peers) {
        if (a->n_peers == a->cap_peers) {
            size_t cap = a->cap_peers ? 2 * a->cap_peers : 16;
            struct api_peer *p = realloc(a->peers, cap * sizeof(*p));
            if (!p) {
                pthread_mutex_unlock(&a->peers_mu);
                return;
            }
            a->peers = p;
            a->cap_peers = cap;
        }
        a->n_peers++;
    }
    a->peers[i] = (struct api_peer){.fd = fd, .uid = uid};
    pthread_mutex_unlock(&a->peers_mu);
}

static bool peer_uid(struct cdn_api *a, int fd, unsigned *uid) {
    pthread_mutex_lock(&a->peers_mu);
    bool found = false;
    for (size_t i = 0; i < a->n_peers && !found; i++)
        if (a->peers[i].fd == fd) {
            *uid = a->peers[i].uid;
            found = true;
        }
    pthread_mutex_unlock(&a->peers_mu);
    return found;
}

/* The client certificate's subject over TLS; the unix peer's uid otherwise. */
static bool tenant_of(struct cdn_api *a, struct api_call *c) {
    grpc_auth_context *ctx = grpc_call_auth_context(c->call);
    if (ctx) {
        grpc_auth_property_iterator it =
            grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_SUBJECT_PROPERTY_NAME);
        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
        bool ok = p && p->value_length > 0 && p->value_length < sizeof(c->tenant) - 6;
        if (ok)
            snprintf(c->tenant, sizeof(c->tenant), "x509:%.*s", (int)p->value_length, p->value);
        grpc_auth_context_release(ctx);
        if (ok)
            return true;
    }
    char *peer = grpc_call_get_peer(c->call);
    int fd = -1;
    unsigned uid;
    bool ok = peer && sscanf(peer, "fd:%d", &fd) == 1 && peer_uid(a, fd, &uid);
    gpr_free(peer);
    if (ok)
        snprintf(c->tenant, sizeof(c->tenant), "uid:%u", uid);
    return ok;
}

/* ---- calls arriving ---- */

static void request_call(struct cdn_api *a) {
    struct api_call *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->api = a;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->drained, NULL);
    c->refs = 1;
    c->t_new = (struct api_tag){c, TAG_NEW};
    c->t_recv = (struct api_tag){c, TAG_RECV};
    c->t_write = (struct api_tag){c, TAG_WRITE};
    c->t_close = (struct api_tag){c, TAG_CLOSE};
    c->t_final = (struct api_tag){c, TAG_FINAL};
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    grpc_metadata_array_init(&c->trailing);
    if (grpc_server_request_call(a->server, &c->call, &c->details, &c->md, a->cq, a->cq,
                                 &c->t_new) != GRPC_CALL_OK)
        api_call_unref(c);
}

static void on_new_call(struct cdn_api *a, struct api_call *c) {
    size_t n = GRPC_SLICE_LENGTH(c->details.method);
    snprintf(c->method, sizeof(c->method), "%.*s", (int)(n < sizeof(c->method) ? n : 0),
             (const char *)GRPC_SLICE_START_PTR(c->details.method));
    /* The close batch holds a reference until the call is over. */
    c->refs = 2;
    grpc_op op;
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled_flag;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK)
        c->refs = 1;
    if (!tenant_of(a, c)) {
        api_call_finish(c, GRPC_STATUS_UNAUTHENTICATED,
                        "cordond cannot tell who you are (no peer credentials or certificate)");
        return;
    }
    api_call_recv(c);
}

static void *cq_loop(void *arg) {
    struct cdn_api *a = arg;
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(a->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            return NULL;
        if (ev.type != GRPC_OP_COMPLETE || !ev.tag)
            continue;
        struct api_tag *t = ev.tag;
        if (t->kind == TAG_NEW) {
            if (!ev.success) { /* the server is shutting down */
                api_call_unref(t->c);
                continue;
            }
            request_call(a);
            on_new_call(a, t->c);
            continue;
        }
        api_call_on_tag(t, ev.success);
    }
}

/* ---- the unix socket ---- */

static void *accept_loop(void *arg) {
    struct cdn_api *a = arg;
    grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
    for (;;) {
        struct pollfd p[2] = {{.fd = a->listen_fd, .events = POLLIN},
                              {.fd = a->stop_pipe[0], .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            continue;
        struct ucred cred;
        socklen_t len = sizeof(cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
            close(fd);
            continue;
        }
        peer_set(a, fd, cred.uid);
        grpc_server_add_channel_from_fd(a->server, fd, creds);
    }
    grpc_server_credentials_release(creds);
    return NULL;
}

static int listen_unix(struct cdn_api *a, cdn_err **err) {
    const char *path = a->o.unix_path;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return cdn_err_set(err, ENAMETOOLONG, "socket path %s is too long", path);
    strcpy(sa.sun_path, path);
    /* A socket left by a cordond that died: nobody answers on it. */
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(probe);
        return cdn_err_set(err, EADDRINUSE, "another cordond is serving on %s", path);
    }
    if (probe >= 0)
        close(probe);
    unlink(path);
    a->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (a->listen_fd < 0)
        return cdn_err_set(err, errno, "socket: %m");
    mode_t old = umask(0177);
    int r = bind(a->listen_fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (r < 0)
        return cdn_err_set(err, errno, "bind %s: %m", path);
    if (chmod(path, a->o.socket_mode ? a->o.socket_mode : 0660) < 0)
        return cdn_err_set(err, errno, "chmod %s: %m", path);
    if (listen(a->listen_fd, 128) < 0)
        return cdn_err_set(err, errno, "listen %s: %m", path);
    return 0;
}

static int listen_tls(struct cdn_api *a, cdn_err **err) {
    if (!a->o.tls_cert || !a->o.tls_key || !a->o.tls_client_ca)
        return cdn_err_set(err, EINVAL,
                           "TCP (%s) needs tls_cert, tls_key and tls_client_ca: cordond serves "
                           "TCP only with TLS and client certificates",
                           a->o.tcp_addr);
    _cleanup_free_ char *cert = cdn_read_pem(a->o.tls_cert, err);
    if (!cert)
        return -EINVAL;
    _cleanup_free_ char *key = cdn_read_pem(a->o.tls_key, err);
    if (!key)
        return -EINVAL;
    _cleanup_free_ char *ca = cdn_read_pem(a->o.tls_client_ca, err);
    if (!ca)
        return -EINVAL;
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    grpc_server_credentials *creds = grpc_ssl_server_credentials_create_ex(
        ca, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    if (!creds)
        return cdn_err_set(err, EINVAL, "the TLS files (%s, %s, %s) are not usable", a->o.tls_cert,
                           a->o.tls_key, a->o.tls_client_ca);
    int port = grpc_server_add_http2_port(a->server, a->o.tcp_addr, creds);
    grpc_server_credentials_release(creds);
    if (port == 0)
        return cdn_err_set(err, EADDRINUSE, "cannot listen on %s", a->o.tcp_addr);
    a->tcp = true;
    return 0;
}

/* gRPC's own log lines go to cordond's log, errors only. */
static struct cdn_api *log_target;
static void grpc_log_hook(gpr_log_func_args *args) {
    if (log_target && args->severity == GPR_LOG_SEVERITY_ERROR)
        api_log(log_target, "grpc: %s", args->message);
}

int cdn_api_start(const struct cdn_api_opts *opts, struct cdn_api **out, cdn_err **err) {
    _cleanup_(cdn_api_stopp) struct cdn_api *a = calloc(1, sizeof(*a));
    if (!a)
        return cdn_err_set(err, ENOMEM, "out of memory");
    a->o = *opts;
    a->listen_fd = -1;
    a->stop_pipe[0] = a->stop_pipe[1] = -1;
    pthread_mutex_init(&a->peers_mu, NULL);
    pthread_mutex_init(&a->watch_mu, NULL);
    pthread_cond_init(&a->watch_cond, NULL);
    log_target = a;
    gpr_set_log_function(grpc_log_hook);
    grpc_init();
    grpc_arg args[] = {
        {.type = GRPC_ARG_INTEGER,
         .key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
         .value.integer = 8 << 20},
    };
    grpc_channel_args cargs = {.num_args = 1, .args = args};
    a->server = grpc_server_create(&cargs, NULL);
    a->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(a->server, a->cq, NULL);
    int r;
    if (opts->tcp_addr && (r = listen_tls(a, err)) < 0)
        return r;
    if (opts->unix_path && (r = listen_unix(a, err)) < 0)
        return r;
    if (pipe2(a->stop_pipe, O_CLOEXEC) < 0)
        return cdn_err_set(err, errno, "pipe: %m");
    grpc_server_start(a->server);
    for (int i = 0; i < PENDING_REQUESTS; i++)
        request_call(a);
    cdn_store_on_event(opts->store, api_watch_notify, a);
    if (pthread_create(&a->cq_thread, NULL, cq_loop, a) != 0)
        return cdn_err_set(err, EAGAIN, "cannot start the API's thread");
    a->cq_running = true;
    if (pthread_create(&a->watch_thread, NULL, api_watch_thread, a) != 0)
        return cdn_err_set(err, EAGAIN, "cannot start the API's thread");
    a->watch_running = true;
    if (a->listen_fd >= 0) {
        if (pthread_create(&a->accept_thread, NULL, accept_loop, a) != 0)
            return cdn_err_set(err, EAGAIN, "cannot start the API's thread");
        a->accept_running = true;
    }
    *out = TAKE_PTR(a);
    return 0;
}

void cdn_api_drain(struct cdn_api *a) {
    if (!a || !a->server || a->stopping)
        return;
    if (a->accept_running) {
        if (write(a->stop_pipe[1], "x", 1) < 0) {
            /* the thread sees the pipe closed below anyway */
        }
        pthread_join(a->accept_thread, NULL);
        a->accept_running = false;
    }
    if (a->listen_fd >= 0) {
        close(a->listen_fd);
        a->listen_fd = -1;
        unlink(a->o.unix_path);
    }
    pthread_mutex_lock(&a->watch_mu);
    a->stopping = true;
    pthread_cond_broadcast(&a->watch_cond);
    pthread_mutex_unlock(&a->watch_mu);
    if (a->watch_running) {
        pthread_join(a->watch_thread, NULL);
        a->watch_running = false;
    }
    cdn_store_on_event(a->o.store, NULL, NULL);
    grpc_server_shutdown_and_notify(a->server, a->cq, NULL);
    grpc_server_cancel_all_calls(a->server);
}

void cdn_api_stop(struct cdn_api *a) {
    if (!a)
        return;
    if (a->server) {
        cdn_api_drain(a);
        if (a->cq_running) {
            grpc_completion_queue_shutdown(a->cq);
            pthread_join(a->cq_thread, NULL);
        }
        grpc_server_destroy(a->server);
        grpc_completion_queue_destroy(a->cq);
        grpc_shutdown();
    }
    if (a->listen_fd >= 0)
        close(a->listen_fd);
    for (int i = 0; i < 2; i++)
        if (a->stop_pipe[i] >= 0)
            close(a->stop_pipe[i]);
    pthread_mutex_destroy(&a->peers_mu);
    pthread_mutex_destroy(&a->watch_mu);
    pthread_cond_destroy(&a->watch_cond);
    free(a->peers);
    if (log_target == a)
        log_target = NULL;
    free(a);
}

void cdn_api_stopp(struct cdn_api **a) {
    cdn_api_stop(*a);
    *a = NULL;
}
