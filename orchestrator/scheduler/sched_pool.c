/* SPDX-License-Identifier: Apache-2.0 */
/* The warm pool: per image, a configured number of VMs booted ahead of any sandbox (agent ready,
 * no workspace, no policy), each holding its share of a host like a running sandbox. A sandbox
 * of that image and the image's default shape that starts on the same host takes one instead of
 * booting; a thread of its own brings up replacements. A warm VM is handed out once, never
 * returned: the sandbox's end destroys it.
 *
 * Replacements are cloned from templates where that is faster than booting: a template is a VM
 * booted and saved once (cdn_warm_template_make), and a clone of it runs under its name, so one
 * at a time. Per image and host, a fill clones the first template with no clone running (a
 * pool VM or a sandbox that took one); when every template has one, it makes another, up to the
 * pool's size plus max_running (as many as can be alive at once), and boots cold beyond. A
 * template that cannot be made, a clone that fails, or clones slower than a template's own boot
 * (CLONE_SLOWER_LIMIT in a row) turn cloning off for that image on that host, said in one line:
 * its VMs boot cold from then on. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched_internal.h"
#include "vm.h"

#define POOL_BACKOFF_MS 5000
#define CLONE_SLOWER_LIMIT 3

struct pool_vm {
    struct cdn_warm *w;
    int host;
    struct pool_vm *next;
};

/* An image's templates on one host (the pool thread's alone, like the templates). */
struct pool_tpl {
    struct cdn_warm_template **t;
    size_t n;
    bool off;        /* cloning turned off here: cold boots */
    unsigned slower; /* clones in a row slower than the template's boot */
};

struct sched_pool {
    char *image;
    unsigned target, booting, ready;
    unsigned memory_mib; /* the image's default */
    struct pool_vm *vms;
    int64_t retry_after_ms;  /* a failed boot backs off */
    struct pool_tpl *tpl;    /* per host */
    uint64_t cloned, booted; /* warm VMs brought up each way */
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

static const char *host_name(const struct cdn_sched *s, int host) {
    return s->hosts[host].uri ? s->hosts[host].uri : "qemu:///system";
}

/* Turns cloning off for the pool on that host, saying why; its templates go. */
static void clone_off(struct cdn_sched *s, struct sched_pool *p, int host, const char *why) {
    struct pool_tpl *pt = &p->tpl[host];
    sched_log(s, "warm pool %s: cloning off on %s, its VMs boot cold: %s", p->image,
              host_name(s, host), why);
    for (size_t i = 0; i < pt->n; i++)
        cdn_warm_template_free(pt->t[i]);
    free(pt->t);
    pt->t = NULL;
    pt->n = 0;
    pt->off = true;
}

/* A template of p's on host with no clone running, or NULL (under tpl_mu). */
static struct cdn_warm_template *free_template(struct sched_pool *p, int host) {
    struct pool_tpl *pt = &p->tpl[host];
    for (size_t i = 0; i < pt->n; i++)
        if (!cdn_warm_template_in_use(pt->t[i]))
            return pt->t[i];
    return NULL;
}

/* A new template of p's on host while there are fewer than can be in use at once (NULL: none);
 * made without tpl_mu (a boot), added under it. */
static struct cdn_warm_template *new_template(struct cdn_sched *s, struct sched_pool *p, int host,
                                              const struct cdn_warm_spec *ws) {
    struct pool_tpl *pt = &p->tpl[host];
    pthread_mutex_lock(&s->tpl_mu);
    bool room = !pt->off && pt->n < p->target + s->o.max_running;
    pthread_mutex_unlock(&s->tpl_mu);
    if (!room)
        return NULL;
    cdn_err *e = NULL;
    struct cdn_warm_template *t = NULL;
    int r = cdn_warm_template_make(ws, &t, &e);
    pthread_mutex_lock(&s->tpl_mu);
    struct cdn_warm_template **grown =
        r == 0 && !pt->off ? realloc(pt->t, (pt->n + 1) * sizeof(*grown)) : NULL;
    if (grown) {
        pt->t = grown;
        pt->t[pt->n++] = t;
        sched_log(s,
                  "warm pool %s: template %zu saved on %s (booted in %llu ms, saved in %llu ms): "
                  "VMs are cloned from it",
                  p->image, pt->n, host_name(s, host),
                  (unsigned long long)cdn_warm_template_boot_ms(t),
                  (unsigned long long)cdn_warm_template_save_ms(t));
    } else if (r < 0 && !*ws->cancel) {
        clone_off(s, p, host, cdn_err_msg(e));
    }
    pthread_mutex_unlock(&s->tpl_mu);
    cdn_err_free(e);
    if (!grown)
        cdn_warm_template_freep(&t);
    return grown ? t : NULL;
}

/* A clone of t for p on host (under tpl_mu: no one else restores t meanwhile); a failure, or
 * clones slower than a boot, turn cloning off there. */
static int clone_locked(struct cdn_sched *s, struct sched_pool *p, int host,
                        struct cdn_warm_template *t, const struct cdn_warm_spec *ws,
                        struct cdn_warm **w, cdn_err **e) {
    struct pool_tpl *pt = &p->tpl[host];
    int r = cdn_warm_clone(ws, t, w, e);
    if (r < 0) {
        if (!*ws->cancel)
            clone_off(s, p, host, cdn_err_msg(*e));
        return r;
    }
    uint64_t ms = cdn_warm_boot_ms(*w), cold = cdn_warm_template_boot_ms(t);
    pt->slower = ms > cold ? pt->slower + 1 : 0;
    if (pt->slower >= CLONE_SLOWER_LIMIT) {
        char why[160];
        snprintf(why, sizeof(why), "a clone took %llu ms, a boot %llu ms", (unsigned long long)ms,
                 (unsigned long long)cold);
        clone_off(s, p, host, why);
    }
    return 0;
}

/* One warm VM for p on host: cloned from a free template (a new one if none is free), else
 * booted. Called without mu. */
static int bring_up(struct cdn_sched *s, struct sched_pool *p, int host,
                    const struct cdn_warm_spec *ws, struct cdn_warm **w, cdn_err **e) {
    if (!s->o.warm_no_clone) {
        pthread_mutex_lock(&s->tpl_mu);
        struct cdn_warm_template *t = p->tpl[host].off ? NULL : free_template(p, host);
        pthread_mutex_unlock(&s->tpl_mu);
        if (!t)
            t = new_template(s, p, host, ws);
        pthread_mutex_lock(&s->tpl_mu);
        /* Still free (a sandbox may have cloned it meanwhile) and still listed. */
        if (t && (p->tpl[host].off || cdn_warm_template_in_use(t)))
            t = NULL;
        int r = t ? clone_locked(s, p, host, t, ws, w, e) : 1;
        pthread_mutex_unlock(&s->tpl_mu);
        if (r == 0 || (r < 0 && *ws->cancel))
            return r;
        cdn_err_free(*e); /* said in clone_off's line: boot instead */
        *e = NULL;
    }
    return cdn_warm_boot(ws, w, e);
}

/* What bringing up one of p's VMs on a host with that URI needs. */
static struct cdn_warm_spec pool_spec(struct cdn_sched *s, const struct sched_pool *p,
                                      const char *uri, volatile sig_atomic_t *cancel) {
    return (struct cdn_warm_spec){.state_dir = s->state_dir,
                                  .images_dir = s->images_dir,
                                  .image = p->image,
                                  .uri = uri,
                                  .accel = s->accel,
                                  .boot_timeout_ms = s->o.boot_timeout_ms,
                                  .cancel = cancel,
                                  .on_notice = pool_log_notice,
                                  .ud = s};
}

static struct sched_pool *pool_for(struct cdn_sched *s, const struct sbx *b);

struct cdn_warm *sched_pool_clone(struct cdn_sched *s, struct sbx *b) {
    pthread_mutex_lock(&s->mu);
    struct sched_pool *p = s->o.warm_no_clone ? NULL : pool_for(s, b);
    int host = b->host;
    const char *uri = host >= 0 ? s->hosts[host].uri : NULL;
    pthread_mutex_unlock(&s->mu);
    if (!p || host < 0)
        return NULL;
    struct cdn_warm_spec ws = pool_spec(s, p, uri, &b->cancel);
    struct cdn_warm *w = NULL;
    cdn_err *e = NULL;
    pthread_mutex_lock(&s->tpl_mu);
    struct cdn_warm_template *t = p->tpl[host].off ? NULL : free_template(p, host);
    if (t && clone_locked(s, p, host, t, &ws, &w, &e) < 0)
        w = NULL;
    pthread_mutex_unlock(&s->tpl_mu);
    cdn_err_free(e);
    if (w)
        cdn_warm_set_for_sandbox(w);
    return w;
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
        struct cdn_warm_spec ws = pool_spec(s, p, s->hosts[host].uri, &s->pool_cancel);
        pthread_mutex_unlock(&s->mu);
        struct cdn_warm *w = NULL;
        cdn_err *e = NULL;
        int r = bring_up(s, p, host, &ws, &w, &e);
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
        if (cdn_warm_cloned(w))
            p->cloned++;
        else
            p->booted++;
        v->w = w;
        v->host = host;
        v->next = p->vms;
        p->vms = v;
        p->ready++;
        if (p->ready == p->target)
            sched_log(s,
                      "warm pool %s: %u of %u ready (the last %s in %llu ms; %llu cloned, %llu "
                      "booted so far)",
                      p->image, p->ready, p->target, cdn_warm_cloned(w) ? "cloned" : "booted",
                      (unsigned long long)cdn_warm_boot_ms(w), (unsigned long long)p->cloned,
                      (unsigned long long)p->booted);
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
        if (!(p->tpl = calloc(s->n_hosts, sizeof(*p->tpl))))
            return cdn_err_set(err, ENOMEM, "out of memory");
    }
    pthread_cond_init(&s->pool_cond, NULL);
    pthread_mutex_init(&s->tpl_mu, NULL);
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
        pthread_mutex_destroy(&s->tpl_mu);
        s->pool_running = false;
    }
    for (size_t i = 0; i < s->n_pools; i++) {
        struct sched_pool *p = &s->pools[i];
        for (struct pool_vm *v = p->vms, *next; v; v = next) {
            next = v->next;
            cdn_warm_free(v->w);
            free(v);
        }
        for (size_t h = 0; p->tpl && h < s->n_hosts; h++) {
            for (size_t k = 0; k < p->tpl[h].n; k++)
                cdn_warm_template_free(p->tpl[h].t[k]);
            free(p->tpl[h].t);
        }
        free(p->tpl);
        free(p->image);
    }
    free(s->pools);
    s->pools = NULL;
    s->n_pools = 0;
}

/* The pool of b's image if b has the shape its warm VMs have (under mu). */
static struct sched_pool *pool_for(struct cdn_sched *s, const struct sbx *b) {
    const struct cdn_task_spec *t = &b->spec;
    if ((b->kernel_args && *b->kernel_args) || b->vcpus != 1)
        return NULL;
    for (size_t i = 0; i < s->n_pools; i++) {
        struct sched_pool *p = &s->pools[i];
        if (strcmp(p->image, b->image) == 0 && (!t->memory_mib || t->memory_mib == p->memory_mib))
            return p;
    }
    return NULL;
}

struct cdn_warm *sched_pool_take_locked(struct cdn_sched *s, const struct sbx *b, int host) {
    struct sched_pool *p = pool_for(s, b);
    for (struct pool_vm **pp = p ? &p->vms : NULL; pp && *pp; pp = &(*pp)->next) {
        if ((*pp)->host != host)
            continue;
        struct pool_vm *got = *pp;
        *pp = got->next;
        p->ready--;
        hold(s, got->host, p, false);
        pthread_cond_broadcast(&s->pool_cond); /* a replacement comes up */
        struct cdn_warm *w = got->w;
        free(got);
        return w;
    }
    return NULL;
}

int sched_pool_host_locked(struct cdn_sched *s, const struct sbx *b) {
    struct sched_pool *p = pool_for(s, b);
    for (struct pool_vm *v = p ? p->vms : NULL; v; v = v->next)
        if (!s->hosts[v->host].down)
            return v->host;
    return -1;
}

void sched_pool_host_lost_locked(struct cdn_sched *s, int host) {
    for (size_t i = 0; i < s->n_pools; i++) {
        struct sched_pool *p = &s->pools[i];
        for (struct pool_vm **pp = &p->vms; *pp;) {
            struct pool_vm *v = *pp;
            if (v->host != host) {
                pp = &v->next;
                continue;
            }
            *pp = v->next;
            p->ready--;
            hold(s, host, p, false);
            cdn_warm_abandon(v->w);
            free(v);
        }
    }
}
