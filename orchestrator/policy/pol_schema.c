/* SPDX-License-Identifier: Apache-2.0 */
/* The policy schema, version 1: every key known, every value checked, every mistake named with
 * its position and, for a misspelt key or value, the nearest valid one. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol_internal.h"

struct ctx {
    const char *name;
    cdn_err **err;
};

__attribute__((format(printf, 4, 5))) static int bad(struct ctx *c, const struct pnode *n,
                                                     const char *path, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return cdn_err_set(c->err, EINVAL, "%s:%u:%u: %s: %s", c->name, n->line, n->col, path, msg);
}

static size_t distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t d[65][65];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = d[i - 1][j] + 1, ins = d[i][j - 1] + 1;
            d[i][j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
    return d[la][lb];
}

/* " (did you mean 'x'?)" for the nearest of words within 2 edits, else "". */
static void hint(const char *got, const char *const *words, char *out, size_t size) {
    size_t best = 3;
    const char *pick = NULL;
    for (const char *const *w = words; *w; w++) {
        size_t d = distance(got, *w);
        if (d < best) {
            best = d;
            pick = *w;
        }
    }
    if (pick)
        snprintf(out, size, " (did you mean '%s'?)", pick);
    else
        out[0] = '\0';
}

static void join(const char *const *words, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (const char *const *w = words; *w && used < size; w++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", w == words ? "" : ", ", *w);
}

static const char *type_name(const struct pnode *n) {
    return n->type == PN_MAP ? "a mapping" : n->type == PN_SEQ ? "a list" : "a single value";
}

static int want(struct ctx *c, const struct pnode *n, enum pnode_type t, const char *path) {
    if (n->type == t)
        return 0;
    return bad(c, n, path, "must be %s, not %s",
               t == PN_MAP   ? "a mapping (key: value lines)"
               : t == PN_SEQ ? "a list (- items)"
                             : "a single value",
               type_name(n));
}

/* Refuses keys outside `keys`, and missing required ones (listed in `required`). */
static int check_keys(struct ctx *c, const struct pnode *m, const char *path,
                      const char *const *keys, const char *const *required) {
    int r = want(c, m, PN_MAP, path);
    if (r < 0)
        return r;
    for (size_t i = 0; i < m->n; i += 2) {
        const char *k = m->kids[i]->scalar;
        bool known = false;
        for (const char *const *w = keys; *w && !known; w++)
            known = strcmp(*w, k) == 0;
        if (!known) {
            char h[128], all[512];
            hint(k, keys, h, sizeof(h));
            join(keys, all, sizeof(all));
            return bad(c, m->kids[i], path, "unknown key '%.100s'%s; known keys: %s", k, h, all);
        }
    }
    for (const char *const *w = required; w && *w; w++) {
        bool found = false;
        for (size_t i = 0; i < m->n && !found; i += 2)
            found = strcmp(m->kids[i]->scalar, *w) == 0;
        if (!found)
            return bad(c, m, path, "the key '%s' is required", *w);
    }
    return 0;
}

static const struct pnode *get(const struct pnode *m, const char *key) {
    for (size_t i = 0; m && m->type == PN_MAP && i < m->n; i += 2)
        if (strcmp(m->kids[i]->scalar, key) == 0)
            return m->kids[i + 1];
    return NULL;
}

static bool is_null(const struct pnode *n) {
    return n->type == PN_SCALAR && n->plain &&
           (!*n->scalar || !strcmp(n->scalar, "null") || !strcmp(n->scalar, "~"));
}

static int as_string(struct ctx *c, const struct pnode *n, const char *path, const char **out) {
    int r = want(c, n, PN_SCALAR, path);
    if (r < 0)
        return r;
    if (is_null(n) || !*n->scalar)
        return bad(c, n, path, "must not be empty");
    if (strlen(n->scalar) > 4096)
        return bad(c, n, path, "is longer than 4096 bytes");
    *out = n->scalar;
    return 0;
}

/* A whole number, optionally with a KiB/MiB/GiB/TiB suffix when `sizes`. */
static int as_uint(struct ctx *c, const struct pnode *n, const char *path, uint64_t min,
                   uint64_t max, bool sizes, uint64_t *out) {
    int r = want(c, n, PN_SCALAR, path);
    if (r < 0)
        return r;
    const char *s = n->scalar;
    if (!n->plain || *s < '0' || *s > '9')
        return bad(c, n, path, "must be a whole number%s, not '%.60s'",
                   sizes ? " (optionally with KiB, MiB, GiB or TiB)" : "", s);
    uint64_t v = 0;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10)
            return bad(c, n, path, "is too large");
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (*s) {
        static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", NULL};
        unsigned shift = 0;
        for (unsigned i = 0; units[i]; i++)
            if (strcmp(s, units[i]) == 0)
                shift = 10 * (i + 1);
        if (!sizes || !shift) {
            char h[128] = "";
            if (sizes)
                hint(s, units, h, sizeof(h));
            return bad(c, n, path, "must be a whole number%s, not '%.60s'%s",
                       sizes ? " (optionally with KiB, MiB, GiB or TiB)" : "", n->scalar, h);
        }
        if (v > (UINT64_MAX >> shift))
            return bad(c, n, path, "is too large");
        v <<= shift;
    }
    if (v < min || v > max)
        return bad(c, n, path, "%llu is out of range (%llu to %llu)", (unsigned long long)v,
                   (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

static int as_bool(struct ctx *c, const struct pnode *n, const char *path, bool *out) {
    int r = want(c, n, PN_SCALAR, path);
    if (r < 0)
        return r;
    if (n->plain && !strcmp(n->scalar, "true"))
        *out = true;
    else if (n->plain && !strcmp(n->scalar, "false"))
        *out = false;
    else
        return bad(c, n, path, "must be true or false, not '%.60s'", n->scalar);
    return 0;
}

static int as_enum(struct ctx *c, const struct pnode *n, const char *path,
                   const char *const *values, int *out) {
    int r = want(c, n, PN_SCALAR, path);
    if (r < 0)
        return r;
    for (int i = 0; values[i]; i++)
        if (strcmp(values[i], n->scalar) == 0) {
            *out = i;
            return 0;
        }
    char h[128], all[256];
    hint(n->scalar, values, h, sizeof(h));
    join(values, all, sizeof(all));
    return bad(c, n, path, "'%.60s' is not one of %s%s", n->scalar, all, h);
}

static const char *const actions[] = {"allow", "approve", "deny", NULL};

static int as_action(struct ctx *c, const struct pnode *n, const char *path,
                     enum cdn_policy_action *out) {
    int v;
    int r = as_enum(c, n, path, actions, &v);
    if (r == 0)
        *out = (enum cdn_policy_action)v;
    return r;
}

/* ---- commands ---- */

static int glob_word(struct ctx *c, const struct pnode *n, const char *path, char **out) {
    const char *s;
    int r = as_string(c, n, path, &s);
    if (r < 0)
        return r;
    if (strchr(s, '\n'))
        return bad(c, n, path, "must be one line");
    return (*out = strdup(s)) ? 0 : cdn_err_set(c->err, ENOMEM, "out of memory");
}

static int push_arg(struct ctx *c, struct pol_rule *rule, const char *a) {
    char **v = realloc(rule->args, (rule->nargs + 1) * sizeof(*v));
    if (!v)
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    rule->args = v;
    if (!(rule->args[rule->nargs] = strdup(a)))
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    rule->nargs++;
    return 0;
}

/* `match: "npm run **"` (words split on spaces) or `match: {program: npm, args: [run, "**"]}`. */
static int parse_match(struct ctx *c, const struct pnode *m, const char *path,
                       struct pol_rule *rule) {
    char sub[256];
    int r;
    if (m->type == PN_SCALAR) {
        const char *s;
        if ((r = as_string(c, m, path, &s)) < 0)
            return r;
        char *copy = strdup(s), *save = NULL;
        if (!copy)
            return cdn_err_set(c->err, ENOMEM, "out of memory");
        char *w = strtok_r(copy, " \t", &save);
        if (!w) {
            free(copy);
            return bad(c, m, path, "names no program");
        }
        rule->program = strdup(w);
        rule->any_args = true; /* only the program: any arguments */
        while (r == 0 && rule->program && (w = strtok_r(NULL, " \t", &save))) {
            rule->any_args = false;
            r = push_arg(c, rule, w);
        }
        free(copy);
        if (!rule->program)
            return cdn_err_set(c->err, ENOMEM, "out of memory");
        return r;
    }
    static const char *const keys[] = {"program", "args", NULL};
    static const char *const req[] = {"program", NULL};
    if ((r = check_keys(c, m, path, keys, req)) < 0)
        return r;
    snprintf(sub, sizeof(sub), "%s.program", path);
    if ((r = glob_word(c, get(m, "program"), sub, &rule->program)) < 0)
        return r;
    const struct pnode *args = get(m, "args");
    rule->any_args = !args;
    if (!args)
        return 0;
    snprintf(sub, sizeof(sub), "%s.args", path);
    if ((r = want(c, args, PN_SEQ, sub)) < 0)
        return r;
    for (size_t i = 0; i < args->n; i++) {
        char *a = NULL;
        snprintf(sub, sizeof(sub), "%s.args[%zu]", path, i);
        if ((r = glob_word(c, args->kids[i], sub, &a)) < 0)
            return r;
        r = push_arg(c, rule, a);
        free(a);
        if (r < 0)
            return r;
        if (!strcmp(rule->args[rule->nargs - 1], "**") && i + 1 < args->n)
            return bad(c, args->kids[i], sub, "'**' (any remaining arguments) must come last");
    }
    return 0;
}

static int parse_commands(struct ctx *c, const struct pnode *m, struct cdn_policy *p) {
    static const char *const keys[] = {"default", "unanalysable", "rules", NULL};
    int r = check_keys(c, m, "commands", keys, NULL);
    if (r < 0)
        return r;
    const struct pnode *n;
    if ((n = get(m, "default")) && (r = as_action(c, n, "commands.default", &p->dflt)) < 0)
        return r;
    if ((n = get(m, "unanalysable")) &&
        (r = as_action(c, n, "commands.unanalysable", &p->unanalysable)) < 0)
        return r;
    const struct pnode *rules = get(m, "rules");
    if (!rules)
        return 0;
    if ((r = want(c, rules, PN_SEQ, "commands.rules")) < 0)
        return r;
    p->rules = calloc(rules->n + 1, sizeof(*p->rules));
    if (!p->rules)
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    static const char *const rkeys[] = {"match", "action", "reason", NULL};
    static const char *const rreq[] = {"match", "action", NULL};
    for (size_t i = 0; i < rules->n; i++) {
        const struct pnode *rn = rules->kids[i];
        struct pol_rule *rule = &p->rules[p->nrules++];
        rule->line = rn->line;
        char path[128], sub[160];
        snprintf(path, sizeof(path), "commands.rules[%zu]", i);
        if ((r = check_keys(c, rn, path, rkeys, rreq)) < 0)
            return r;
        snprintf(sub, sizeof(sub), "%s.match", path);
        if ((r = parse_match(c, get(rn, "match"), sub, rule)) < 0)
            return r;
        snprintf(sub, sizeof(sub), "%s.action", path);
        if ((r = as_action(c, get(rn, "action"), sub, &rule->action)) < 0)
            return r;
        if ((n = get(rn, "reason"))) {
            const char *s;
            snprintf(sub, sizeof(sub), "%s.reason", path);
            if ((r = as_string(c, n, sub, &s)) < 0)
                return r;
            if (!(rule->reason = strdup(s)))
                return cdn_err_set(c->err, ENOMEM, "out of memory");
        }
    }
    return 0;
}

/* ---- limits ---- */

static int parse_limits(struct ctx *c, const struct pnode *m, struct cdn_policy_limits *l) {
    static const struct {
        const char *key;
        uint64_t min, max;
        bool sizes;
        size_t off;
        bool wide;
    } f[] = {
#define U(k, lo, hi) {#k, lo, hi, false, offsetof(struct cdn_policy_limits, k), false}
#define W(k, lo, hi, s)                                                                            \
    { #k, lo, hi, s, offsetof(struct cdn_policy_limits, k), true }
        U(cpus, 1, 64),
        U(memory_mib, 64, 1u << 20),
        U(disk_mib, 64, 16u << 20),
        U(wall_seconds, 1, 7 * 86400),
        U(command_timeout_seconds, 1, 7 * 86400),
        U(max_processes, 1, 1000000),
        W(output_bytes, 1024, 1ull << 40, true),
        W(max_files_returned, 1, 100000000, false),
        W(max_bytes_returned, 1, 1ull << 42, true),
#undef U
#undef W
    };
    const char *keys[sizeof(f) / sizeof(f[0]) + 1];
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        keys[i] = f[i].key;
    keys[sizeof(f) / sizeof(f[0])] = NULL;
    int r = check_keys(c, m, "limits", keys, NULL);
    for (size_t i = 0; r == 0 && i < sizeof(f) / sizeof(f[0]); i++) {
        const struct pnode *n = get(m, f[i].key);
        if (!n)
            continue;
        char path[96];
        snprintf(path, sizeof(path), "limits.%s", f[i].key);
        uint64_t v;
        if ((r = as_uint(c, n, path, f[i].min, f[i].max, f[i].sizes, &v)) < 0)
            break;
        if (f[i].wide)
            *(uint64_t *)((char *)l + f[i].off) = v;
        else
            *(unsigned *)((char *)l + f[i].off) = (unsigned)v;
    }
    return r;
}

/* ---- sections enforced by later work: checked now so that policies stay valid ---- */

static int string_list(struct ctx *c, const struct pnode *n, const char *path) {
    int r = want(c, n, PN_SEQ, path);
    for (size_t i = 0; r == 0 && i < n->n; i++) {
        char sub[160];
        const char *s;
        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
        r = as_string(c, n->kids[i], sub, &s);
    }
    return r;
}

static int port_list(struct ctx *c, const struct pnode *n, const char *path) {
    int r = want(c, n, PN_SEQ, path);
    for (size_t i = 0; r == 0 && i < n->n; i++) {
        char sub[160];
        uint64_t v;
        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
        r = as_uint(c, n->kids[i], sub, 1, 65535, false, &v);
    }
    return r;
}

/* ---- network.egress ---- */

static bool host_pattern_ok(const char *s) {
    if (strlen(s) > 253)
        return false;
    const char *slash = strchr(s, '/');
    if (slash && (!slash[1] || strspn(slash + 1, "0123456789") != strlen(slash + 1)))
        return false; /* only a CIDR's prefix length */
    if (strchr(s, ':') && strspn(s, "0123456789abcdefABCDEF:./") != strlen(s))
        return false; /* only an IPv6 address */
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              strchr("*.-_:/", *p)))
            return false;
    return true;
}

static int parse_egress_rule(struct ctx *c, const struct pnode *rn, const char *path,
                             struct cdn_egress_rule *rule) {
    static const char *const keys[] = {"host",    "ports",  "purpose", "action",
                                       "private", "reason", NULL};
    static const char *const req[] = {"host", NULL};
    static const char *const purposes[] = {"packages", "docs", "api", NULL};
    static const char *const acts[] = {"allow", "deny", NULL};
    char sub[160];
    const char *s;
    const struct pnode *n;
    int r = check_keys(c, rn, path, keys, req), v;
    rule->line = rn->line;
    rule->allow = true;
    if (r < 0)
        return r;
    snprintf(sub, sizeof(sub), "%s.host", path);
    if ((r = as_string(c, get(rn, "host"), sub, &s)) < 0)
        return r;
    if (!host_pattern_ok(s))
        return bad(c, get(rn, "host"), sub,
                   "'%.60s' must be a host name (with '*' globs), an address or a CIDR, without "
                   "scheme, port or path",
                   s);
    if (!(rule->host = strdup(s)))
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    for (char *p = rule->host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    if ((n = get(rn, "ports"))) {
        snprintf(sub, sizeof(sub), "%s.ports", path);
        if ((r = want(c, n, PN_SEQ, sub)) < 0)
            return r;
        if (n->n > CDN_EGRESS_MAX_PORTS)
            return bad(c, n, sub, "lists more than %u ports", CDN_EGRESS_MAX_PORTS);
        for (size_t i = 0; i < n->n; i++) {
            uint64_t port;
            char item[200];
            snprintf(item, sizeof(item), "%s[%zu]", sub, i);
            if ((r = as_uint(c, n->kids[i], item, 1, 65535, false, &port)) < 0)
                return r;
            rule->ports[rule->nports++] = (uint16_t)port;
        }
    }
    if ((n = get(rn, "purpose"))) {
        snprintf(sub, sizeof(sub), "%s.purpose", path);
        if ((r = as_enum(c, n, sub, purposes, &v)) < 0)
            return r;
        if (!(rule->purpose = strdup(purposes[v])))
            return cdn_err_set(c->err, ENOMEM, "out of memory");
    }
    if ((n = get(rn, "action"))) {
        snprintf(sub, sizeof(sub), "%s.action", path);
        if ((r = as_enum(c, n, sub, acts, &v)) < 0)
            return r;
        rule->allow = v == 0;
    }
    if ((n = get(rn, "private"))) {
        snprintf(sub, sizeof(sub), "%s.private", path);
        if ((r = as_bool(c, n, sub, &rule->private_ok)) < 0)
            return r;
    }
    if ((n = get(rn, "reason"))) {
        snprintf(sub, sizeof(sub), "%s.reason", path);
        if ((r = as_string(c, n, sub, &s)) < 0)
            return r;
        if (!(rule->reason = strdup(s)))
            return cdn_err_set(c->err, ENOMEM, "out of memory");
    }
    if (asprintf(&rule->where, "%s (line %u)", path, rule->line) < 0) {
        rule->where = NULL;
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    }
    return 0;
}

static int parse_network(struct ctx *c, const struct pnode *m, struct cdn_egress_rules *out) {
    static const char *const keys[] = {"egress", NULL};
    static const char *const ekeys[] = {"default", "rules", NULL};
    static const char *const dflt[] = {"deny", "allow", NULL};
    int r = check_keys(c, m, "network", keys, NULL), v;
    const struct pnode *e = r == 0 ? get(m, "egress") : NULL, *n;
    if (!e)
        return r;
    if ((r = check_keys(c, e, "network.egress", ekeys, NULL)) < 0)
        return r;
    if ((n = get(e, "default"))) {
        if ((r = as_enum(c, n, "network.egress.default", dflt, &v)) < 0)
            return r;
        out->default_allow = v == 1;
    }
    const struct pnode *rules = get(e, "rules");
    if (!rules)
        return 0;
    if ((r = want(c, rules, PN_SEQ, "network.egress.rules")) < 0)
        return r;
    if (!(out->v = calloc(rules->n + 1, sizeof(*out->v))))
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    for (size_t i = 0; i < rules->n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "network.egress.rules[%zu]", i);
        out->n++;
        if ((r = parse_egress_rule(c, rules->kids[i], path, &out->v[i])) < 0)
            return r;
    }
    return 0;
}

/* ---- packages ---- */

static int parse_packages(struct ctx *c, const struct pnode *m, struct cdn_policy_packages *pk) {
    static const char *const keys[] = {"managers", "lifecycle_scripts", NULL};
    static const char *const managers[] = {"npm",   "pnpm", "yarn", "pip",
                                           "cargo", "go",   "apt",  NULL};
    static const char *const scripts[] = {"allow", "deny", NULL};
    int r = check_keys(c, m, "packages", keys, NULL), v;
    const struct pnode *n;
    if (r == 0 && (n = get(m, "lifecycle_scripts")) &&
        (r = as_enum(c, n, "packages.lifecycle_scripts", scripts, &v)) == 0)
        pk->scripts_denied = v == 1;
    const struct pnode *mg = r == 0 ? get(m, "managers") : NULL;
    if (!mg)
        return r;
    if ((r = check_keys(c, mg, "packages.managers", managers, NULL)) < 0)
        return r;
    for (size_t i = 0; i < mg->n; i += 2) {
        char path[64];
        snprintf(path, sizeof(path), "packages.managers.%s", mg->kids[i]->scalar);
        for (int k = 0; managers[k]; k++) {
            if (strcmp(managers[k], mg->kids[i]->scalar) != 0)
                continue;
            if ((r = as_action(c, mg->kids[i + 1], path, &pk->action[k])) < 0)
                return r;
            pk->set[k] = true;
            pk->line[k] = mg->kids[i + 1]->line;
        }
    }
    return 0;
}

/* ---- secrets ---- */

static bool env_name_ok(const char *s) {
    if (!*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static int parse_secret(struct ctx *c, const struct pnode *m, const char *path,
                        struct pol_secret *sec) {
    static const char *const keys[] = {"name", "from", "env", "expose_to", "optional", NULL};
    static const char *const req[] = {"name", "from", "env", "expose_to", NULL};
    char sub[96];
    const char *v;
    int r = check_keys(c, m, path, keys, req);
    sec->pub.line = m->line;
    if (r < 0)
        return r;
    snprintf(sub, sizeof(sub), "%s.name", path);
    if ((r = as_string(c, get(m, "name"), sub, &v)) < 0)
        return r;
    sec->name = strdup(v);
    snprintf(sub, sizeof(sub), "%s.from", path);
    if ((r = as_string(c, get(m, "from"), sub, &v)) < 0)
        return r;
    if ((strncmp(v, "env:", 4) != 0 || !env_name_ok(v + 4)) && (strncmp(v, "file:/", 6) != 0))
        return bad(c, get(m, "from"), sub, "'%.60s' must be env:NAME or file:/absolute/path", v);
    sec->from = strdup(v);
    snprintf(sub, sizeof(sub), "%s.env", path);
    if ((r = as_string(c, get(m, "env"), sub, &v)) < 0)
        return r;
    if (!env_name_ok(v))
        return bad(c, get(m, "env"), sub, "'%.60s' is not a variable name", v);
    sec->env = strdup(v);
    const struct pnode *o = get(m, "optional");
    snprintf(sub, sizeof(sub), "%s.optional", path);
    if (o && (r = as_bool(c, o, sub, &sec->pub.optional)) < 0)
        return r;
    const struct pnode *x = get(m, "expose_to");
    snprintf(sub, sizeof(sub), "%s.expose_to", path);
    if ((r = want(c, x, PN_SEQ, sub)) < 0)
        return r;
    if (x->n == 0)
        return bad(c, x, sub, "must name at least one command pattern");
    if (!(sec->expose = calloc(x->n, sizeof(*sec->expose))) || !sec->name || !sec->from ||
        !sec->env)
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    for (size_t i = 0; i < x->n; i++) {
        char item[128];
        snprintf(item, sizeof(item), "%.96s[%zu]", sub, i);
        sec->pub.n_expose++;
        if ((r = parse_match(c, x->kids[i], item, &sec->expose[i])) < 0)
            return r;
    }
    sec->pub.name = sec->name;
    sec->pub.from = sec->from;
    sec->pub.env = sec->env;
    return 0;
}

static int parse_secrets(struct ctx *c, const struct pnode *s, struct cdn_policy *p) {
    int r = want(c, s, PN_SEQ, "secrets");
    if (r < 0)
        return r;
    if (!(p->secrets = calloc(s->n + 1, sizeof(*p->secrets))))
        return cdn_err_set(c->err, ENOMEM, "out of memory");
    for (size_t i = 0; i < s->n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "secrets[%zu]", i);
        p->nsecrets++;
        if ((r = parse_secret(c, s->kids[i], path, &p->secrets[i])) < 0)
            return r;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(p->secrets[j].name, p->secrets[i].name) ||
                !strcmp(p->secrets[j].env, p->secrets[i].env))
                return bad(c, s->kids[i], path, "'%s' (env %s) is named twice", p->secrets[i].name,
                           p->secrets[i].env);
    }
    return 0;
}

static int parse_previews(struct ctx *c, const struct pnode *m, struct cdn_policy *p) {
    static const char *const keys[] = {"ports", "public", NULL};
    int r = check_keys(c, m, "previews", keys, NULL);
    const struct pnode *n;
    bool b;
    if (r == 0 && (n = get(m, "ports")) && (r = port_list(c, n, "previews.ports")) == 0) {
        if (n->n > sizeof(p->preview_ports) / sizeof(p->preview_ports[0]))
            return bad(c, n, "previews.ports", "at most 64 ports");
        for (size_t i = 0; i < n->n; i++)
            p->preview_ports[p->n_preview_ports++] =
                (uint16_t)strtoul(n->kids[i]->scalar, NULL, 10);
    }
    if (r == 0 && (n = get(m, "public")))
        r = as_bool(c, n, "previews.public", &b);
    return r;
}

static int parse_review(struct ctx *c, const struct pnode *m, struct cdn_policy_review *rv) {
    static const char *const keys[] = {"required", "approvers",   "merge", "branch",
                                       "remote",   "credentials", NULL};
    static const char *const merges[] = {"none", "branch", "push", NULL};
    int r = check_keys(c, m, "review", keys, NULL), v;
    const struct pnode *n;
    if (r == 0 && (n = get(m, "required")))
        r = as_bool(c, n, "review.required", &rv->required);
    if (r == 0 && (n = get(m, "approvers")) && (r = string_list(c, n, "review.approvers")) == 0) {
        char **a = calloc(n->n + 1, sizeof(char *));
        rv->approvers = (const char *const *)a;
        for (size_t i = 0; r == 0 && i < n->n; i++) {
            r = a ? glob_word(c, n->kids[i], "review.approvers", &a[i]) : -ENOMEM;
            rv->n_approvers += r == 0;
        }
    }
    if (r == 0 && (n = get(m, "merge")) && (r = as_enum(c, n, "review.merge", merges, &v)) == 0)
        rv->merge = (enum cdn_review_merge)v;
    if (r == 0 && (n = get(m, "branch"))) {
        r = glob_word(c, n, "review.branch", (char **)&rv->branch);
        if (r == 0 && (!*rv->branch || strchr(rv->branch, ' ') || strstr(rv->branch, "..") ||
                       rv->branch[0] == '-' || rv->branch[0] == '/'))
            r = bad(c, n, "review.branch", "'%.60s' is not a branch name", rv->branch);
    }
    if (r == 0 && (n = get(m, "remote")))
        r = glob_word(c, n, "review.remote", (char **)&rv->remote);
    if (r == 0 && (n = get(m, "credentials")))
        r = glob_word(c, n, "review.credentials", (char **)&rv->credentials);
    if (r == 0 && rv->merge != CDN_REVIEW_PUSH && (rv->remote || rv->credentials))
        r = bad(c, get(m, rv->remote ? "remote" : "credentials"),
                rv->remote ? "review.remote" : "review.credentials", "is for merge: push only");
    return r;
}

static int parse_retention(struct ctx *c, const struct pnode *m, struct cdn_policy_retention *rt) {
    static const char *const keys[] = {"evidence_days", "workspace_days", NULL};
    int r = check_keys(c, m, "retention", keys, NULL);
    const struct pnode *n;
    uint64_t v;
    if (r == 0 && (n = get(m, "evidence_days")) &&
        (r = as_uint(c, n, "retention.evidence_days", 1, 3650, false, &v)) == 0)
        rt->evidence_days = (unsigned)v;
    if (r == 0 && (n = get(m, "workspace_days")) &&
        (r = as_uint(c, n, "retention.workspace_days", 0, 3650, false, &v)) == 0) {
        rt->workspace_days = (unsigned)v;
        rt->workspace_set = true;
    }
    return r;
}

int pol_schema_apply(const char *name, const struct pnode *root, struct cdn_policy *p,
                     cdn_err **err) {
    struct ctx c = {.name = name, .err = err};
    static const char *const keys[] = {"version", "commands", "limits", "network",   "packages",
                                       "secrets", "previews", "review", "retention", NULL};
    static const char *const req[] = {"version", NULL};
    if (root->type != PN_MAP)
        return bad(&c, root, "policy", "must be a mapping of sections, not %s", type_name(root));
    int r = check_keys(&c, root, "policy", keys, req);
    if (r < 0)
        return r;
    uint64_t version;
    const struct pnode *vn = get(root, "version");
    if ((r = as_uint(&c, vn, "version", 0, UINT32_MAX, false, &version)) < 0)
        return r;
    if (version != 1)
        return bad(&c, vn, "version", "this cordon reads policy version 1, not %llu",
                   (unsigned long long)version);
    p->dflt = CDN_POLICY_DENY;
    p->unanalysable = CDN_POLICY_APPROVE;
    const struct pnode *n;
    if ((n = get(root, "commands")) && (r = parse_commands(&c, n, p)) < 0)
        return r;
    if ((n = get(root, "limits")) && (r = parse_limits(&c, n, &p->limits)) < 0)
        return r;
    if ((n = get(root, "network")) && (r = parse_network(&c, n, &p->egress)) < 0)
        return r;
    if ((n = get(root, "packages")) && (r = parse_packages(&c, n, &p->packages)) < 0)
        return r;
    if ((n = get(root, "secrets")) && (r = parse_secrets(&c, n, p)) < 0)
        return r;
    if ((n = get(root, "previews")) && (r = parse_previews(&c, n, p)) < 0)
        return r;
    p->review.required = true;
    if ((n = get(root, "review")) && (r = parse_review(&c, n, &p->review)) < 0)
        return r;
    if ((n = get(root, "retention")) && (r = parse_retention(&c, n, &p->retention)) < 0)
        return r;
    return 0;
}
