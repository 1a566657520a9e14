/* SPDX-License-Identifier: Apache-2.0 */
/* cdn_vm over the libvirt C API. Ownership: a cdn_vm_host owns its virConnectPtr (and the daemons
 * it started); a cdn_vm owns its virDomainPtr. Domains are created transient with
 * VIR_DOMAIN_START_AUTODESTROY, so if cordon dies with one running, libvirt destroys it when the
 * connection drops: no VM outlives its owner. libvirt's errors are converted here, once. */
#include "vm.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <time.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "cleanup.h"
#include "clock.h"
#include "vm_daemon.h"
#include "vm_internal.h"
#include "vm_stream.h"

#define DAEMON_START_TIMEOUT_MS 20000

/* Library code never prints: libvirt's default handler would write every error to stderr. */
static void quiet_errors(void *ud, virErrorPtr e) {
    (void)ud;
    (void)e;
}

int vm_lv_err(cdn_err **err, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    virErrorPtr e = virGetLastError();
    return cdn_err_set(err, EIO, "%s: %s", what, e && e->message ? e->message : "libvirt error");
}

/* libvirt's keepalive needs an event loop: one thread of ours runs libvirt's default one, so a
 * host that stops answering (a hung daemon, a partitioned network) closes its connection within
 * seconds and every call waiting on it fails, instead of waiting forever. */
#define KEEPALIVE_INTERVAL_S 2
#define KEEPALIVE_COUNT 3
static pthread_once_t event_once = PTHREAD_ONCE_INIT;
static bool event_running;

static void *event_loop(void *arg) {
    (void)arg;
    for (;;)
        if (virEventRunDefaultImpl() < 0)
            usleep(100000);
    return NULL;
}

static void event_start(void) {
    if (virEventRegisterDefaultImpl() < 0)
        return;
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    event_running = pthread_create(&t, &a, event_loop, NULL) == 0;
    pthread_attr_destroy(&a);
}

/* A URI with a host (qemu+ssh://node/system, qemu+tcp://10.0.0.2/system, qemu://node/system)
 * reaches another machine; qemu:///system and qemu+unix:///system?socket=... stay on this one. */
static bool uri_is_remote(const char *uri) {
    const char *sep = strstr(uri, "://");
    if (!sep || sep[3] == '/' || sep[3] == '\0')
        return false;
    size_t scheme = (size_t)(sep - uri);
    return !(scheme >= 5 && strncmp(sep - 5, "+unix", 5) == 0);
}

static pthread_mutex_t abandoned_mu = PTHREAD_MUTEX_INITIALIZER;
static void **abandoned;
static size_t n_abandoned;

/* Guests left on hosts, by URI and name (under abandoned_mu). */
struct left_vm {
    char *uri, *name;
};
static struct left_vm *left;
static size_t n_left;

static void note_left(const struct cdn_vm *vm) {
    pthread_mutex_lock(&abandoned_mu);
    struct left_vm *grown = realloc(left, (n_left + 1) * sizeof(*grown));
    if (grown) {
        left = grown;
        left[n_left].uri = strdup(vm->host->uri);
        left[n_left].name = strdup(vm->name);
        if (left[n_left].uri && left[n_left].name)
            n_left++;
        else {
            free(left[n_left].uri);
            free(left[n_left].name);
        }
    }
    pthread_mutex_unlock(&abandoned_mu);
}

unsigned cdn_vm_host_reap_left(struct cdn_vm_host *h) {
    pthread_mutex_lock(&abandoned_mu);
    struct left_vm *mine = calloc(n_left ? n_left : 1, sizeof(*mine));
    size_t n_mine = 0, kept = 0;
    for (size_t i = 0; mine && i < n_left; i++) {
        if (strcmp(left[i].uri, h->uri) == 0)
            mine[n_mine++] = left[i];
        else
            left[kept++] = left[i];
    }
    if (mine)
        n_left = kept;
    pthread_mutex_unlock(&abandoned_mu);
    unsigned gone = 0;
    for (size_t i = 0; i < n_mine; i++) {
        gone += cdn_vm_host_destroy(h, mine[i].name, NULL) > 0;
        free(mine[i].uri);
        free(mine[i].name);
    }
    free(mine);
    return gone;
}

void vm_keep_forever(void *p) {
    if (!p)
        return;
    pthread_mutex_lock(&abandoned_mu);
    void **grown = realloc(abandoned, (n_abandoned + 1) * sizeof(*grown));
    if (grown) {
        abandoned = grown;
        abandoned[n_abandoned++] = p;
    }
    pthread_mutex_unlock(&abandoned_mu);
}

int cdn_vm_host_open(const struct cdn_vm_host_opts *opts, struct cdn_vm_host **out, cdn_err **err) {
    _cleanup_(cdn_vm_host_closep) struct cdn_vm_host *h = calloc(1, sizeof(*h));
    if (!h)
        return cdn_err_set(err, ENOMEM, "out of memory");
    h->uri = strdup(opts && opts->uri ? opts->uri : "qemu:///system");
    if (!h->uri)
        return cdn_err_set(err, ENOMEM, "out of memory");
    virSetErrorFunc(NULL, quiet_errors);
    pthread_once(&event_once, event_start);
    if (strcmp(h->uri, "qemu:///system") == 0 && !(opts && opts->no_start)) {
        const char *dir = opts && opts->daemon_dir ? opts->daemon_dir : "/run/cordon";
        int r = vm_daemons_ensure(&h->daemons, dir, DAEMON_START_TIMEOUT_MS, err);
        if (r < 0)
            return cdn_err_prefix(err, "starting libvirt");
    }
    h->conn = virConnectOpen(h->uri);
    if (!h->conn)
        return vm_lv_err(err, "connecting to %s", h->uri);
    h->remote = uri_is_remote(h->uri);
    if (event_running)
        virConnectSetKeepAlive(h->conn, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT);
    *out = TAKE_PTR(h);
    return 0;
}

void cdn_vm_host_close(struct cdn_vm_host *h) {
    if (!h)
        return;
    if (h->conn)
        virConnectClose(h->conn);
    vm_daemons_stop(&h->daemons);
    free(h->uri);
    free(h);
}

void cdn_vm_host_abandon(struct cdn_vm_host *h) {
    if (!h)
        return;
    vm_keep_forever(h->conn);
    vm_daemons_stop(&h->daemons);
    free(h->uri);
    free(h);
}

void cdn_vm_host_closep(struct cdn_vm_host **h) {
    cdn_vm_host_close(*h);
    *h = NULL;
}

bool cdn_vm_host_started_daemons(const struct cdn_vm_host *h) {
    return h->daemons.driver || h->daemons.started_virtlogd;
}

int cdn_vm_host_capacity(struct cdn_vm_host *h, struct cdn_vm_host_capacity *out, cdn_err **err) {
    virNodeInfo ni;
    if (virNodeGetInfo(h->conn, &ni) < 0)
        return vm_lv_err(err, "reading %s's CPUs and memory", h->uri);
    out->cpus = ni.cpus;
    out->memory_mib = (uint64_t)ni.memory / 1024; /* KiB */
    return 0;
}

bool cdn_vm_host_alive(struct cdn_vm_host *h) {
    if (!h->conn || virConnectIsAlive(h->conn) != 1)
        return false;
    virNodeInfo ni;
    return virNodeGetInfo(h->conn, &ni) == 0;
}

bool cdn_vm_host_connected(struct cdn_vm_host *h) {
    return h->conn && virConnectIsAlive(h->conn) == 1;
}

const char *cdn_vm_host_uri(const struct cdn_vm_host *h) { return h->uri; }

int cdn_vm_host_list(struct cdn_vm_host *h, char ***names, size_t *n, cdn_err **err) {
    virDomainPtr *doms = NULL;
    int count = virConnectListAllDomains(h->conn, &doms, 0);
    if (count < 0)
        return vm_lv_err(err, "listing domains on %s", h->uri);
    char **out = calloc((size_t)count + 1, sizeof(char *));
    size_t k = 0;
    for (int i = 0; i < count; i++) {
        const char *name = virDomainGetName(doms[i]);
        if (out && name && strncmp(name, "cordon-", 7) == 0)
            out[k++] = strdup(name);
        virDomainFree(doms[i]);
    }
    free(doms);
    if (!out)
        return cdn_err_set(err, ENOMEM, "out of memory");
    *names = out;
    *n = k;
    return 0;
}

bool cdn_vm_host_has_domain(struct cdn_vm_host *h, const char *name) {
    _cleanup_(virDomainFreep) virDomainPtr d = virDomainLookupByName(h->conn, name);
    return d && virDomainIsActive(d) == 1;
}

int cdn_vm_host_destroy(struct cdn_vm_host *h, const char *name, cdn_err **err) {
    _cleanup_(virDomainFreep) virDomainPtr d = virDomainLookupByName(h->conn, name);
    if (!d)
        return 0;
    if (virDomainDestroy(d) < 0)
        return vm_lv_err(err, "destroying %s", name);
    return 1;
}

/* libvirt resolves paths in its own daemon: hand it absolute ones, and say here what is missing. */
static int absolute(const char *id, const char *what, const char *path, char **out, cdn_err **err) {
    if (!path)
        return cdn_err_set(err, EINVAL, "vm cordon-%s: no %s given", id, what);
    *out = realpath(path, NULL);
    if (!*out)
        return cdn_err_set(err, errno, "vm cordon-%s: %s %s: %m", id, what, path);
    return 0;
}

/* The CID libvirt chose (<cid auto='yes' address='N'/>), from the live domain's XML. */
static int read_cid(struct cdn_vm *vm, cdn_err **err) {
    _cleanup_free_ char *xml = virDomainGetXMLDesc(vm->dom, 0);
    if (!xml)
        return vm_lv_err(err, "vm %s: reading its live XML", vm->name);
    const char *vsock = strstr(xml, "<vsock");
    const char *cid = vsock ? strstr(vsock, "<cid ") : NULL;
    const char *addr = cid ? strstr(cid, "address='") : NULL;
    const char *end = cid ? strchr(cid, '>') : NULL;
    if (!addr || !end || addr > end)
        return cdn_err_set(err, EIO, "vm %s: libvirt assigned no vsock CID", vm->name);
    char *stop = NULL;
    unsigned long v = strtoul(addr + strlen("address='"), &stop, 10);
    if (!stop || *stop != '\'' || v < 3 || v > UINT32_MAX - 1)
        return cdn_err_set(err, EIO, "vm %s: unusable vsock CID in its XML", vm->name);
    vm->cid = (unsigned)v;
    return 0;
}

int vm_prepare(struct cdn_vm_host *h, const struct cdn_vm_spec *spec_in, const char *uuid,
               struct cdn_vm **out, char **xml, cdn_err **err) {
    struct cdn_vm_spec spec = *spec_in;
    const char *id = spec.id ? spec.id : "";
    _cleanup_free_ char *dir = NULL, *kernel = NULL, *initrd = NULL, *disk = NULL, *base = NULL;
    int r;
    if ((r = absolute(id, "task folder", spec.dir, &dir, err)) < 0 ||
        (r = absolute(id, "kernel", spec.kernel, &kernel, err)) < 0 ||
        (r = absolute(id, "initrd", spec.initrd, &initrd, err)) < 0 ||
        (spec.disk && (r = absolute(id, "disk", spec.disk, &disk, err)) < 0) ||
        (spec.disk_base && (r = absolute(id, "base image", spec.disk_base, &base, err)) < 0))
        return r;
    spec.disk_base = base;
    spec.dir = dir;
    spec.kernel = kernel;
    spec.initrd = initrd;
    spec.disk = disk;
    spec.uuid = uuid;
    if ((r = cdn_vm_domain_xml(&spec, xml, err)) < 0)
        return r;
    _cleanup_(cdn_vm_destroyp) struct cdn_vm *vm = calloc(1, sizeof(*vm));
    if (!vm || asprintf(&vm->name, "cordon-%s", spec.id) < 0 ||
        asprintf(&vm->sock, "%s/agent.sock", spec.dir) < 0 ||
        asprintf(&vm->console, "%s/console.log", spec.dir) < 0) {
        free(*xml);
        *xml = NULL;
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    vm->host = h;
    /* A stale socket from an earlier run would make QEMU's bind fail. */
    unlink(vm->sock);
    vm->transport = spec.transport;
    *out = TAKE_PTR(vm);
    return 0;
}

int cdn_vm_start(struct cdn_vm_host *h, const struct cdn_vm_spec *spec, struct cdn_vm **out,
                 cdn_err **err) {
    _cleanup_(cdn_vm_destroyp) struct cdn_vm *vm = NULL;
    _cleanup_free_ char *xml = NULL;
    int r = vm_prepare(h, spec, NULL, &vm, &xml, err);
    if (r < 0)
        return r;
    vm->dom = virDomainCreateXML(h->conn, xml, VIR_DOMAIN_START_AUTODESTROY);
    if (!vm->dom)
        return vm_lv_err(err, "vm %s: starting the domain", vm->name);
    vm->domid = virDomainGetID(vm->dom);
    if (vm->transport == CDN_VM_VSOCK && (r = read_cid(vm, err)) < 0)
        return r;
    *out = TAKE_PTR(vm);
    return 0;
}

/* One attempt at the agent's port: the fd, or -errno (the guest may not listen yet). */
static int try_connect(const struct cdn_vm *vm) {
    int fd;
    if (vm->transport == CDN_VM_VSOCK) {
        fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_vm a = {
            .svm_family = AF_VSOCK, .svm_cid = vm->cid, .svm_port = CDN_VM_VSOCK_PORT};
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
    } else {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        snprintf(a.sun_path, sizeof(a.sun_path), "%s", vm->sock);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
            return fd;
    }
    int e = errno;
    if (fd >= 0)
        close(fd);
    return -e;
}

int cdn_vm_agent_fd(struct cdn_vm *vm, int timeout_ms, cdn_err **err) {
    if (vm->host->remote && vm->transport == CDN_VM_SERIAL) {
        /* The socket is on the other machine: its daemon connects to it for us. */
        vm_stream_close(TAKE_PTR(vm->stream));
        int fd = -1;
        int r =
            vm_stream_open(vm->host->conn, vm->dom, "org.cordon.agent.0", &vm->stream, &fd, err);
        return r < 0 ? cdn_err_prefix(err, "vm %s", vm->name) : fd;
    }
    struct sockaddr_un addr;
    if (vm->transport == CDN_VM_SERIAL && strlen(vm->sock) >= sizeof(addr.sun_path))
        return cdn_err_set(err, ENAMETOOLONG, "vm %s: socket path %s is too long", vm->name,
                           vm->sock);
    char where[4200];
    if (vm->transport == CDN_VM_VSOCK)
        snprintf(where, sizeof(where), "vsock %u:%u", vm->cid, CDN_VM_VSOCK_PORT);
    else
        snprintf(where, sizeof(where), "%s", vm->sock);
    uint64_t deadline = cdn_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int fd = try_connect(vm);
        if (fd >= 0)
            return fd;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM)
            return cdn_err_set(err, -fd, "vm %s: agent port %s: %s", vm->name, where,
                               strerror(-fd));
        if (!cdn_vm_running(vm))
            return cdn_err_set(err, EPIPE,
                               "vm %s: the guest stopped before its agent's port "
                               "opened (console: %s)",
                               vm->name, vm->console);
        if (cdn_now_ms() >= deadline)
            return cdn_err_set(err, ETIMEDOUT, "vm %s: agent port %s: %s after %d ms", vm->name,
                               where, strerror(-fd), timeout_ms);
        usleep(10000);
    }
}

bool cdn_vm_vsock_usable(const char **why) {
    int fd = open("/dev/vhost-vsock", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return true;
    }
    *why = errno == ENOENT ? "/dev/vhost-vsock is absent (module vhost_vsock)"
                           : "/dev/vhost-vsock cannot be opened";
    return false;
}

const char *cdn_vm_name(const struct cdn_vm *vm) { return vm->name; }
const char *cdn_vm_console_path(const struct cdn_vm *vm) { return vm->console; }

bool cdn_vm_running(struct cdn_vm *vm) { return cdn_vm_state(vm) != CDN_VM_GONE; }

virDomainPtr vm_lookup(const struct cdn_vm *vm) {
    virDomainPtr d = virDomainLookupByName(vm->host->conn, vm->name);
    if (d && virDomainGetID(d) != vm->domid) {
        virDomainFree(d);
        return NULL;
    }
    return d;
}

enum cdn_vm_state cdn_vm_state(struct cdn_vm *vm) {
    if (!vm->dom)
        return CDN_VM_GONE;
    /* Looked up by name: a guest that powered off is gone, and its old handle says nothing. */
    _cleanup_(virDomainFreep) virDomainPtr d = vm_lookup(vm);
    int state = 0, reason = 0;
    if (!d || virDomainIsActive(d) != 1)
        return CDN_VM_GONE;
    if (virDomainGetState(d, &state, &reason, 0) < 0)
        return CDN_VM_OTHER;
    return state == VIR_DOMAIN_RUNNING  ? CDN_VM_RUNNING
           : state == VIR_DOMAIN_PAUSED ? CDN_VM_PAUSED
                                        : CDN_VM_OTHER;
}

enum cdn_vm_transport cdn_vm_transport(const struct cdn_vm *vm) { return vm->transport; }

/* The domain destroyed (or, abandoned, left to its host: no call), the local parts freed. */
static void vm_end(struct cdn_vm *vm, bool abandon) {
    if (!vm)
        return;
    if (vm->dom && !abandon) {
        /* Looked up again: a guest that powered off is gone, and its old handle with it. */
        _cleanup_(virDomainFreep) virDomainPtr d = vm_lookup(vm);
        if (d)
            virDomainDestroy(d);
        else if (virConnectIsAlive(vm->host->conn) != 1)
            note_left(vm); /* the host did not answer: the guest may be there still */
    }
    if (vm->dom && abandon)
        note_left(vm);
    if (vm->dom)
        virDomainFree(vm->dom); /* a local reference: no call */
    if (abandon)
        vm_stream_abandon(vm->stream);
    else
        vm_stream_close(vm->stream); /* after the destroy: the stream has ended with the guest */
    if (vm->sock)
        unlink(vm->sock);
    free(vm->name);
    free(vm->sock);
    free(vm->console);
    free(vm);
}

void cdn_vm_destroy(struct cdn_vm *vm) { vm_end(vm, false); }
void cdn_vm_abandon(struct cdn_vm *vm) { vm_end(vm, true); }

void cdn_vm_destroyp(struct cdn_vm **vm) {
    cdn_vm_destroy(*vm);
    *vm = NULL;
}
