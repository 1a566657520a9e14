/* SPDX-License-Identifier: Apache-2.0 */
/* The warm pool: per image, a configured number of VMs booted ahead of any sandbox (agent ready,
 * no workspace, no policy), each holding its share of a host like a running sandbox. A sandbox
 * of that image and the image's default shape that starts on the same host takes one instead of
 * booting; a thread of its own boots replacements. A warm VM is handed out once, never returned:
 * the sandbox's end destroys it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched_internal.h"
#include "vm.h"

#define POOL_BACKOFF_MS 5000

struct pool_vm {
    struct cdn_warm *w;
    int host;
    struct pool_vm *next;
};

struct sched_pool {
    char *image;
    unsigned target, booting, ready;
    unsigned memory_mib; /* the image's default */
    struct pool_vm *vms;
    int64_t retry_after_ms; /* a failed boot backs off */
};

static void hold(struct cdn_sched *s, int host, const struct sched_pool *p, bool take) {
    struct sched_host *h = &s->hosts[host];
    if (take) {
        h->used_vcpus += 1;
        h->used_mib += p->memory_mib;
    } else {
        h->used_vcpus -= 1;
        h->used_mib -= p->memory_mib;
    }
}

static void pool_log_notice(void *ud, const char *line) {
    struct cdn_sched *s = ud;
    sched_log(s, "warm pool: %s", line);
}

/* The pool most short of its target whose next boot is due, and a host for it (under mu). */
static struct sched_pool *next_to_fill(struct cdn_sched *s, int *host) {
    int64_t now = sched_now_ms();
    struct sched_pool *pick = NULL;
    for (size_t i = 0; i < s->n_pools; i++) {
        struct sched_pool *p = &s->pools[i];
        if (p->ready + p->booting >= p->target || now < p->retry_after_ms)
            continue;
        if (pick && p->target - p->ready - p->booting <= pick->target - pick->ready - pick->booting)
            continue;
        int h = sched_place_locked(s, 1, p->memory_mib);
        if (h >= 0) {
            pick = p;
            *host = h;
        }
    }
    return pick;
}

static void *pool_thread(void *arg) {
    struct cdn_sched *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->closing) {
        int host = -1;
        struct sched_pool *p = next_to_fill(s, &host);
        if (!p) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += 1;
            pthread_cond_timedwait(&s->pool_cond, &s->mu, &until);
            continue;
        }
        hold(s, host, p, true);
        p->booting++;
        struct cdn_warm_spec ws = {.state_dir = s->state_dir,
                                   .images_dir = s->images_dir,
                                   .image = p->image,
                                   .uri = s->hosts[host].uri,
                                   .accel = s->accel,
                                   .boot_timeout_ms = s->o.boot_timeout_ms,
                                   .cancel = &s->pool_cancel,
                                   .on_notice = pool_log_notice,
                                   .ud = s};
        pthread_mutex_unlock(&s->mu);
        struct cdn_warm *w = NULL;
        cdn_err *e = NULL;
        int r = cdn_warm_boot(&ws, &w, &e);
        struct pool_vm *v = r == 0 ? calloc(1, sizeof(*v)) : NULL;
        pthread_mutex_lock(&s->mu);
        p->booting--;
        if (r < 0 || !v || s->closing) {
            hold(s, host, p, false);
            if (r < 0 && !s->closing) {
                p->retry_after_ms = sched_now_ms() + POOL_BACKOFF_MS;
                sched_log(s, "warm pool %s: a boot failed (trying again in %d s): %s", p->image,
                          POOL_BACKOFF_MS / 1000, cdn_err_msg(e));
            }
            pthread_mutex_unlock(&s->mu);
            cdn_warm_free(w);
            free(v);
            cdn_err_free(e);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        v->w = w;
        v->host = host;
        v->next = p->vms;
        p->vms = v;
        p->ready++;
        if (p->ready == p->target)
            sched_log(s, "warm pool %s: %u of %u ready (the last booted in %llu ms)", p->image,
                      p->ready, p->target, (unsigned long long)cdn_warm_boot_ms(w));
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int sched_pool_open(struct cdn_sched *s, cdn_err **err) {
    if (!s->o.n_pools)
        return 0;
    s->pools = calloc(s->o.n_pools, sizeof(*s->pools));
    if (!s->pools)
        return cdn_err_set(err, ENOMEM, "out of memory");
    for (size_t i = 0; i < s->o.n_pools; i++) {
        const struct cdn_sched_pool *o = &s->o.pools[i];
        if (strcmp(o->image, "minimal") != 0 && strcmp(o->image, "devbox") != 0)
            return cdn_err_set(err, EINVAL, "warm pool: unknown image '%s' (minimal, devbox)",
                               o->image);
        struct sched_pool *p = &s->pools[s->n_pools++];
        if (!(p->image = strdup(o->image)))
            return cdn_err_set(err, ENOMEM, "out of memory");
        p->target = o->size;
        p->memory_mib = sched_image_memory_mib(o->image);
    }
    pthread_cond_init(&s->pool_cond, NULL);
    if (pthread_create(&s->pool_thread, NULL, pool_thread, s) != 0)
        return cdn_err_set(err, EAGAIN, "cannot start the warm pool's thread");
    s->pool_running = true;
    return 0;
}

void sched_pool_close(struct cdn_sched *s) {
    if (s->pool_running) {
        pthread_mutex_lock(&s->mu);
        s->pool_cancel = 1;
        pthread_cond_broadcast(&s->pool_cond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->pool_thread, NULL);
        pthread_cond_destroy(&s->pool_cond);
        s->pool_running = false;
    }
    for (size_t i = 0; i < s->n_pools; i++) {
        struct sched_pool *p = &s->pools[i];
        for (struct pool_vm *v = p->vms, *next; v; v = next) {
            next = v->next;
            cdn_warm_free(v->w);
            free(v);
        }
        free(p->image);
    }
    free(s->pools);
    s->pools = NULL;
    s->n_pools = 0;
}

struct cdn_warm *sched_pool_take(struct cdn_sched *s, struct sbx *b) {
    const struct cdn_task_spec *t = &b->spec;
    if ((b->kernel_args && *b->kernel_args) || b->vcpus != 1)
        return NULL; /* not the shape warm VMs have */
    for (;;) {
        struct pool_vm *got = NULL;
        pthread_mutex_lock(&s->mu);
        for (size_t i = 0; i < s->n_pools && !got; i++) {
            struct sched_pool *p = &s->pools[i];
            if (strcmp(p->image, b->image) != 0 ||
                (t->memory_mib && t->memory_mib != p->memory_mib))
                continue;
            for (struct pool_vm **pp = &p->vms; *pp; pp = &(*pp)->next)
                if ((*pp)->host == b->host) {
                    got = *pp;
                    *pp = got->next;
                    p->ready--;
                    hold(s, got->host, p, false);          /* b holds its own share of the host */
                    pthread_cond_broadcast(&s->pool_cond); /* a replacement boots */
                    break;
                }
        }
        pthread_mutex_unlock(&s->mu);
        if (!got)
            return NULL;
        struct cdn_warm *w = got->w;
        free(got);
        if (cdn_warm_alive(w))
            return w;
        sched_log(s, "warm pool %s: a warm VM had died; discarded", b->image);
        cdn_warm_free(w);
    }
}

void sched_pool_stats(struct cdn_sched *s, const char *image, unsigned *ready, unsigned *target) {
    *ready = *target = 0;
    for (size_t i = 0; i < s->n_pools; i++)
        if (strcmp(s->pools[i].image, image) == 0) {
            *ready = s->pools[i].ready;
            *target = s->pools[i].target;
        }
}
