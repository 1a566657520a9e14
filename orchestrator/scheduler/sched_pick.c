/* SPDX-License-Identifier: Apache-2.0 */
/* Which queued sandbox starts next, and where: tenants share the running slots by weight, a
 * tenant's own sandboxes go by priority then age, and each goes to the host with the most free
 * capacity (weighted) that holds its vCPUs and memory. Hosts that stop answering are drained. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched_internal.h"
#include "cleanup.h"
#include "vm.h"

#define RETRY_MIN_MS 1000u
#define RETRY_MAX_MS 300000u
#define RETRY_UNKNOWN_MS 5000u
#define SUSPECT_WAIT_MS 3000

struct sched_tenant *sched_tenant(struct cdn_sched *s, const char *name) {
    for (size_t i = 0; i < s->n_tenants; i++)
        if (strcmp(s->tenants[i].name, name) == 0)
            return &s->tenants[i];
    if (s->n_tenants == s->cap_tenants) {
        size_t cap = s->cap_tenants ? s->cap_tenants * 2 : 8;
        struct sched_tenant *t = realloc(s->tenants, cap * sizeof(*t));
        if (!t)
            return NULL;
        s->tenants = t;
        s->cap_tenants = cap;
    }
    struct sched_tenant *t = &s->tenants[s->n_tenants];
    *t = (struct sched_tenant){.name = strdup(name), .weight = 1};
    if (!t->name)
        return NULL;
    s->n_tenants++;
    return t;
}

static unsigned tenant_max_running(const struct cdn_sched *s, const struct sched_tenant *t) {
    return t->max_running ? t->max_running : s->o.tenant_max_running;
}

int sched_place_locked(struct cdn_sched *s, unsigned vcpus, uint64_t memory_mib) {
    int best = -1;
    double best_score = 0;
    for (size_t i = 0; i < s->n_hosts; i++) {
        const struct sched_host *h = &s->hosts[i];
        if (h->down || h->used_vcpus + vcpus > h->vcpu_cap ||
            h->used_mib + memory_mib > h->memory_cap_mib)
            continue;
        double score = (double)h->weight * (double)(h->memory_cap_mib - h->used_mib) /
                       (double)(h->memory_cap_mib ? h->memory_cap_mib : 1);
        if (best < 0 || score > best_score ||
            (score == best_score && h->running < s->hosts[best].running)) {
            best = (int)i;
            best_score = score;
        }
    }
    return best;
}

/* Whether a should start before c: the tenant with the smaller share of running slots for its
 * weight, then the higher priority, then the tenant served longer ago, then the older. */
static bool before(const struct sbx *a, const struct sched_tenant *ta, const struct sbx *c,
                   const struct sched_tenant *tc) {
    /* running/weight compared without division */
    uint64_t sa = (uint64_t)ta->running * tc->weight, sc = (uint64_t)tc->running * ta->weight;
    if (sa != sc)
        return sa < sc;
    if (a->priority != c->priority)
        return a->priority > c->priority;
    if (ta != tc && ta->last_start != tc->last_start)
        return ta->last_start < tc->last_start;
    return a->seq < c->seq;
}

static void recount(struct cdn_sched *s) {
    for (size_t i = 0; i < s->n_tenants; i++)
        s->tenants[i].running = s->tenants[i].queued = 0;
    s->queued_total = 0;
    for (struct sbx *b = s->live; b; b = b->next) {
        struct sched_tenant *t = sched_tenant(s, b->tenant);
        if (!t)
            continue;
        if (b->running)
            t->running++;
        else if (!b->stop) {
            t->queued++;
            s->queued_total++;
        }
    }
}

static bool start(struct cdn_sched *s, struct sbx *b, int host) {
    struct sched_host *h = &s->hosts[host];
    b->warm = sched_pool_take_locked(s, b, host); /* before b's share: the warm VM's is freed */
    b->host = host;
    b->spec.uri = h->uri;
    b->running = true;
    b->started_ms = sched_now_ms();
    s->running++;
    h->running++;
    h->used_vcpus += b->vcpus;
    h->used_mib += b->memory_mib;
    if (pthread_create(&b->thread, NULL, sched_worker, b) != 0) {
        sched_log(s, "sandbox %s: cannot start its worker thread", b->id);
        b->running = false;
        sched_release_locked(s, b);
        return false;
    }
    return true;
}

void sched_dispatch_locked(struct cdn_sched *s) {
    if (s->closing)
        return;
    recount(s);
    while (s->running < s->o.max_running) {
        struct sbx *best = NULL;
        struct sched_tenant *best_t = NULL;
        int best_host = -1;
        for (struct sbx *b = s->live; b; b = b->next) {
            if (b->running || b->stop)
                continue;
            struct sched_tenant *t = sched_tenant(s, b->tenant);
            if (!t || t->running >= tenant_max_running(s, t))
                continue;
            if (best && !before(b, t, best, best_t))
                continue;
            int h = sched_place_locked(s, b->vcpus, b->memory_mib);
            if (h < 0) /* a warm VM it can take holds room for it */
                h = sched_pool_host_locked(s, b);
            if (h < 0)
                continue; /* a smaller one behind it may fit: the big one waits for room */
            best = b;
            best_t = t;
            best_host = h;
        }
        if (!best || !start(s, best, best_host))
            return;
        best_t->running++;
        best_t->queued--;
        s->queued_total--;
        best_t->last_start = ++s->picks;
    }
}

void sched_release_locked(struct cdn_sched *s, struct sbx *b) {
    if (b->host < 0)
        return;
    struct sched_host *h = &s->hosts[b->host];
    h->running--;
    h->used_vcpus -= b->vcpus;
    h->used_mib -= b->memory_mib;
    s->running--;
    b->host = -1;
    double held = (double)(sched_now_ms() - b->started_ms);
    s->hold_ms_avg = s->hold_ms_avg > 0 ? 0.8 * s->hold_ms_avg + 0.2 * held : held;
}

uint32_t sched_retry_hint_ms(struct cdn_sched *s) {
    recount(s);
    if (s->hold_ms_avg <= 0)
        return RETRY_UNKNOWN_MS;
    /* The queue ahead drains max_running at a time, each holding its slot for the average. */
    double ms = s->hold_ms_avg * ((double)s->queued_total / (double)s->o.max_running);
    if (ms < RETRY_MIN_MS)
        return RETRY_MIN_MS;
    return ms > RETRY_MAX_MS ? RETRY_MAX_MS : (uint32_t)ms;
}

/* ---- hosts ---- */

int sched_hosts_open(struct cdn_sched *s, cdn_err **err) {
    static const struct cdn_sched_host local = {.uri = NULL, .weight = 1};
    const struct cdn_sched_host *list = s->o.n_hosts ? s->o.hosts : &local;
    size_t n = s->o.n_hosts ? s->o.n_hosts : 1;
    if (n > 16)
        return cdn_err_set(err, EINVAL, "at most 16 hosts (%zu given)", n);
    s->hosts = calloc(n, sizeof(*s->hosts));
    if (!s->hosts)
        return cdn_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        struct sched_host *h = &s->hosts[i];
        const char *uri = list[i].uri ? list[i].uri : s->uri;
        h->weight = list[i].weight ? list[i].weight : 1;
        if (uri && !(h->uri = strdup(uri)))
            return cdn_err_set(err, ENOMEM, "out of memory");
        s->n_hosts = i + 1;
        struct cdn_vm_host_opts ho = {.uri = h->uri, .daemon_dir = s->daemon_dir};
        int r = cdn_vm_host_open(&ho, &h->conn, err);
        if (r < 0)
            return cdn_err_prefix(err, "host %s", h->uri ? h->uri : "qemu:///system");
        struct cdn_vm_host_capacity cap;
        if ((r = cdn_vm_host_capacity(h->conn, &cap, err)) < 0)
            return r;
        h->vcpu_cap = cap.cpus * s->o.cpu_overcommit;
        uint64_t reserve = s->o.memory_reserve_mib;
        h->memory_cap_mib = cap.memory_mib > reserve + 512 ? cap.memory_mib - reserve : 512;
        h->checked_ms = sched_now_ms();
        sched_log(s, "host %s: %u CPUs, %llu MiB: places up to %u vCPUs and %llu MiB (weight %u)",
                  cdn_vm_host_uri(h->conn), cap.cpus, (unsigned long long)cap.memory_mib,
                  h->vcpu_cap, (unsigned long long)h->memory_cap_mib, h->weight);
    }
    return 0;
}

struct host_probe;
static void probe_unref(struct host_probe *p);

void sched_hosts_close(struct cdn_sched *s) {
    for (size_t i = 0; i < s->n_hosts; i++) {
        if (s->hosts[i].probe)
            probe_unref(s->hosts[i].probe); /* a probe still hanging frees it when it ends */
        cdn_vm_host_closep(&s->hosts[i].conn);
        free(s->hosts[i].uri);
    }
    free(s->hosts);
    s->hosts = NULL;
    s->n_hosts = 0;
}

/* A host stopped answering: nothing more goes there, its sandboxes are stopped (and fail, marked
 * retryable). Under mu. */
static void drain_locked(struct cdn_sched *s, size_t i) {
    struct sched_host *h = &s->hosts[i];
    const char *uri = h->uri ? h->uri : "qemu:///system";
    h->down = true;
    unsigned lost = 0;
    for (struct sbx *b = s->live; b; b = b->next)
        if (b->running && b->host == (int)i) {
            b->host_lost = true;
            lost++;
            if (b->stop)
                continue;
            b->stop = true;
            free(b->stop_reason);
            if (asprintf(&b->stop_reason, "its host %s stopped answering", uri) < 0)
                b->stop_reason = NULL;
            b->cancel = 1;
            sched_wake(b->wake);
        }
    sched_pool_host_lost_locked(s, (int)i);
    sched_log(s, "host %s stopped answering: drained (%u sandbox%s on it fail, retryable)", uri,
              lost, lost == 1 ? "" : "es");
}

void sched_host_suspect(struct cdn_sched *s, struct sbx *b) {
    /* The scheduler's own connection to the host has libvirt's keepalive: a host that is gone
     * closes it at once; a hung one's ran out about when the sandbox's own connection did (that
     * is what failed the VM), give or take a keepalive interval: wait that long, not more (a VM
     * failing for its own reasons is reported that much later). */
    for (int64_t end = sched_now_ms() + SUSPECT_WAIT_MS;;) {
        pthread_mutex_lock(&s->mu);
        int i = b->host;
        bool lost = i >= 0 && (s->hosts[i].down || !cdn_vm_host_connected(s->hosts[i].conn));
        if (lost) {
            if (!s->hosts[i].down)
                drain_locked(s, (size_t)i);
            b->host_lost = true;
        }
        pthread_mutex_unlock(&s->mu);
        if (lost || i < 0 || sched_now_ms() >= end)
            return;
        usleep(200000);
    }
}

/* ---- a drained host's way back ---- */

/* Connecting to a host that hangs could block for ever: each attempt runs in a thread of its own,
 * sharing this with the ticker; whichever lets go last frees it. */
struct host_probe {
    pthread_mutex_t mu;
    int refs;
    bool done;
    struct cdn_vm_host *conn; /* answered */
    char *uri, *daemon_dir;
};

static void probe_unref(struct host_probe *p) {
    pthread_mutex_lock(&p->mu);
    bool last = --p->refs == 0;
    pthread_mutex_unlock(&p->mu);
    if (!last)
        return;
    cdn_vm_host_closep(&p->conn);
    pthread_mutex_destroy(&p->mu);
    free(p->uri);
    free(p->daemon_dir);
    free(p);
}

static void *probe_run(void *arg) {
    struct host_probe *p = arg;
    struct cdn_vm_host *conn = NULL;
    struct cdn_vm_host_opts ho = {.uri = p->uri, .daemon_dir = p->daemon_dir, .no_start = true};
    cdn_err *e = NULL;
    if (cdn_vm_host_open(&ho, &conn, &e) < 0 || !cdn_vm_host_alive(conn))
        cdn_vm_host_closep(&conn);
    cdn_err_free(e);
    pthread_mutex_lock(&p->mu);
    p->conn = conn;
    p->done = true;
    pthread_mutex_unlock(&p->mu);
    probe_unref(p);
    return NULL;
}

static void probe_start(struct cdn_sched *s, struct sched_host *h) {
    struct host_probe *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    pthread_mutex_init(&p->mu, NULL);
    p->refs = 2;
    p->uri = h->uri ? strdup(h->uri) : NULL;
    p->daemon_dir = strdup(s->daemon_dir);
    pthread_t t;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if ((h->uri && !p->uri) || !p->daemon_dir || pthread_create(&t, &a, probe_run, p) != 0) {
        p->refs = 1;
        probe_unref(p);
        p = NULL;
    }
    pthread_attr_destroy(&a);
    h->probe = p;
}

/* A finished probe's connection (NULL: not yet, or it did not answer: the next one is due). */
static struct cdn_vm_host *probe_take(struct sched_host *h, bool *finished) {
    struct host_probe *p = h->probe;
    pthread_mutex_lock(&p->mu);
    *finished = p->done;
    struct cdn_vm_host *conn = p->done ? TAKE_PTR(p->conn) : NULL;
    pthread_mutex_unlock(&p->mu);
    if (*finished) {
        probe_unref(p);
        h->probe = NULL;
    }
    return conn;
}

void sched_hosts_check(struct cdn_sched *s) {
    int64_t now = sched_now_ms();
    for (size_t i = 0; i < s->n_hosts; i++) {
        struct sched_host *h = &s->hosts[i];
        pthread_mutex_lock(&s->mu);
        bool due = now - h->checked_ms >= s->o.host_check_ms, down = h->down;
        if (due)
            h->checked_ms = now;
        if (!down && due && !cdn_vm_host_connected(h->conn))
            drain_locked(s, i); /* gone, or its keepalive went unanswered */
        pthread_mutex_unlock(&s->mu);
        if (!down || !due)
            continue;
        /* Drained: is it back? (Only the ticker touches probes.) */
        if (!h->probe) {
            probe_start(s, h);
            continue;
        }
        bool finished;
        struct cdn_vm_host *conn = probe_take(h, &finished);
        if (!conn)
            continue;
        pthread_mutex_lock(&s->mu);
        struct cdn_vm_host *old = h->conn;
        h->conn = conn;
        pthread_mutex_unlock(&s->mu);
        cdn_vm_host_closep(&old);
        /* What this daemon could not destroy there goes before anything new is placed. */
        unsigned gone = cdn_vm_host_reap_left(conn);
        pthread_mutex_lock(&s->mu);
        h->down = false;
        sched_dispatch_locked(s);
        pthread_mutex_unlock(&s->mu);
        sched_log(s,
                  "host %s answers again: placing sandboxes on it (%u guest%s left there "
                  "destroyed)",
                  cdn_vm_host_uri(conn), gone, gone == 1 ? "" : "s");
    }
}

int sched_fits_somewhere(struct cdn_sched *s, unsigned vcpus, uint64_t memory_mib, cdn_err **err) {
    unsigned max_v = 0;
    uint64_t max_m = 0;
    for (size_t i = 0; i < s->n_hosts; i++) {
        const struct sched_host *h = &s->hosts[i];
        if (h->vcpu_cap >= vcpus && h->memory_cap_mib >= memory_mib)
            return 0;
        if (h->vcpu_cap > max_v)
            max_v = h->vcpu_cap;
        if (h->memory_cap_mib > max_m)
            max_m = h->memory_cap_mib;
    }
    return cdn_err_set(err, EDQUOT,
                       "the sandbox needs %u vCPUs and %llu MiB; no host holds that (the largest "
                       "places %u vCPUs, %llu MiB)",
                       vcpus, (unsigned long long)memory_mib, max_v, (unsigned long long)max_m);
}

void cdn_sched_stats(struct cdn_sched *s, struct cdn_sched_stats *out) {
    *out = (struct cdn_sched_stats){0};
    pthread_mutex_lock(&s->mu);
    recount(s);
    out->running = s->running;
    out->queued = s->queued_total;
    for (size_t i = 0; i < s->n_hosts && i < 16; i++) {
        const struct sched_host *h = &s->hosts[i];
        out->hosts[i] = (struct cdn_sched_host_stats){.uri = cdn_vm_host_uri(h->conn),
                                                      .weight = h->weight,
                                                      .vcpu_cap = h->vcpu_cap,
                                                      .used_vcpus = h->used_vcpus,
                                                      .running = h->running,
                                                      .memory_cap_mib = h->memory_cap_mib,
                                                      .used_mib = h->used_mib,
                                                      .down = h->down};
        out->n_hosts = i + 1;
    }
    pthread_mutex_unlock(&s->mu);
}
