/* SPDX-License-Identifier: Apache-2.0 */
/* Dependency changes a task made, read from the manifests and lockfiles of its diff:
 * package.json (direct dependencies and their ranges), package-lock.json / npm-shrinkwrap.json
 * (every installed package, lockfile v1 to v3), requirements*.txt (pinned or ranged lines),
 * Cargo.lock ([[package]] name and version) and go.sum (module versions). The texts come from the
 * guest: every parser is bounded and tolerant, and takes what it can read. */
#include <fnmatch.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workspace.h"

#define DEPS_MAX_BYTES (64u << 20)
#define DEPS_MAX_ENTRIES 100000u

static void put(json_t *m, const char *name, size_t nlen, const char *ver, size_t vlen) {
    if (nlen == 0 || nlen > 512 || vlen > 256 || json_object_size(m) >= DEPS_MAX_ENTRIES)
        return;
    char n[513], v[257];
    memcpy(n, name, nlen);
    n[nlen] = '\0';
    memcpy(v, ver, vlen);
    v[vlen] = '\0';
    json_object_set_new(m, n, json_stringn(v, vlen));
}

/* package.json: dependencies, devDependencies, optionalDependencies, peerDependencies. */
static void parse_package_json(json_t *doc, json_t *m) {
    static const char *const sections[] = {"dependencies", "devDependencies",
                                           "optionalDependencies", "peerDependencies", NULL};
    for (const char *const *s = sections; *s; s++) {
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(doc, *s), k, v) if (json_is_string(v))
            put(m, k, strlen(k), json_string_value(v), json_string_length(v));
    }
}

/* package-lock.json: v2/v3 "packages" keyed by node_modules path, or v1 "dependencies". */
static void parse_package_lock(json_t *doc, json_t *m) {
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(doc, "packages"), k, v) {
        const char *nm = strstr(k, "node_modules/");
        const char *name = NULL;
        while (nm) { /* the last node_modules/ segment names the package */
            name = nm + 13;
            nm = strstr(name, "node_modules/");
        }
        json_t *ver = json_object_get(v, "version");
        if (name && *name && json_is_string(ver))
            put(m, name, strlen(name), json_string_value(ver), json_string_length(ver));
    }
    if (json_object_size(m) == 0)
        json_object_foreach(json_object_get(doc, "dependencies"), k, v) {
            json_t *ver = json_object_get(v, "version");
            if (json_is_string(ver))
                put(m, k, strlen(k), json_string_value(ver), json_string_length(ver));
        }
}

/* Calls fn for each line of text (without its end). */
static void lines(const char *t, size_t len, void (*fn)(void *ud, const char *l, size_t n),
                  void *ud) {
    const char *end = t + len;
    while (t < end) {
        const char *nl = memchr(t, '\n', (size_t)(end - t));
        size_t n = (size_t)((nl ? nl : end) - t);
        if (n && t[n - 1] == '\r')
            n--;
        fn(ud, t, n);
        t = nl ? nl + 1 : end;
    }
}

/* requirements.txt: "name==1.2", "name>=1,<2", "name[extra]~=1.4 ; marker", comments. */
static void req_line(void *ud, const char *l, size_t n) {
    json_t *m = ud;
    while (n && (*l == ' ' || *l == '\t')) {
        l++;
        n--;
    }
    if (!n || *l == '#' || *l == '-')
        return;
    const char *hash = memchr(l, '#', n), *semi = memchr(l, ';', n);
    if (hash)
        n = (size_t)(hash - l);
    if (semi && (size_t)(semi - l) < n)
        n = (size_t)(semi - l);
    size_t name = 0;
    while (name < n && (strchr("-_.", l[name]) || (l[name] >= 'a' && l[name] <= 'z') ||
                        (l[name] >= 'A' && l[name] <= 'Z') || (l[name] >= '0' && l[name] <= '9')))
        name++;
    size_t at = name;
    if (at < n && l[at] == '[') { /* extras */
        const char *rb = memchr(l + at, ']', n - at);
        at = rb ? (size_t)(rb - l) + 1 : n;
    }
    while (at < n && (l[at] == ' ' || l[at] == '\t'))
        at++;
    size_t vend = n;
    while (vend > at && (l[vend - 1] == ' ' || l[vend - 1] == '\t'))
        vend--;
    char lower[513];
    if (name == 0 || name > 512)
        return;
    for (size_t i = 0; i < name; i++) /* PEP 503: case and -_. do not distinguish names */
        lower[i] = l[i] == '_' || l[i] == '.'     ? '-'
                   : (l[i] >= 'A' && l[i] <= 'Z') ? (char)(l[i] - 'A' + 'a')
                                                  : l[i];
    const char *ver = l + at;
    size_t vlen = vend - at;
    if (vlen > 2 && ver[0] == '=' && ver[1] == '=') {
        ver += 2;
        vlen -= 2;
    }
    put(m, lower, name, ver, vlen);
}

/* Cargo.lock: [[package]] blocks with name = "..." and version = "...". */
struct cargo {
    json_t *m;
    char name[513];
    bool in_package;
};
static bool toml_string(const char *l, size_t n, const char *key, const char **v, size_t *vlen) {
    size_t k = strlen(key);
    if (n < k + 4 || strncmp(l, key, k) != 0)
        return false;
    const char *p = l + k, *end = l + n;
    while (p < end && *p == ' ')
        p++;
    if (p >= end || *p != '=')
        return false;
    p++;
    while (p < end && *p == ' ')
        p++;
    if (p >= end || *p != '"')
        return false;
    const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
    if (!q)
        return false;
    *v = p + 1;
    *vlen = (size_t)(q - p - 1);
    return true;
}
static void cargo_line(void *ud, const char *l, size_t n) {
    struct cargo *c = ud;
    const char *v;
    size_t vlen;
    if (n && l[0] == '[') {
        c->in_package = n == 11 && !strncmp(l, "[[package]]", 11);
        c->name[0] = '\0';
    } else if (c->in_package && toml_string(l, n, "name", &v, &vlen) && vlen <= 512) {
        memcpy(c->name, v, vlen);
        c->name[vlen] = '\0';
    } else if (c->in_package && c->name[0] && toml_string(l, n, "version", &v, &vlen)) {
        put(c->m, c->name, strlen(c->name), v, vlen);
    }
}

/* go.sum: "module version[/go.mod] h1:hash". */
static void gosum_line(void *ud, const char *l, size_t n) {
    const char *sp = memchr(l, ' ', n);
    if (!sp)
        return;
    const char *v = sp + 1, *sp2 = memchr(v, ' ', (size_t)(l + n - v));
    if (!sp2)
        return;
    size_t vlen = (size_t)(sp2 - v);
    if (vlen > 7 && !memcmp(v + vlen - 7, "/go.mod", 7))
        vlen -= 7;
    put(ud, l, (size_t)(sp - l), v, vlen);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

const char *cdn_deps_manager(const char *path) {
    const char *b = base_name(path);
    if (!strcmp(b, "package.json") || !strcmp(b, "package-lock.json") ||
        !strcmp(b, "npm-shrinkwrap.json"))
        return "npm";
    if (fnmatch("requirements*.txt", b, 0) == 0)
        return "pip";
    if (!strcmp(b, "Cargo.lock"))
        return "cargo";
    if (!strcmp(b, "go.sum"))
        return "go";
    return NULL;
}

/* name -> version of one text (an empty object when absent or unreadable). */
static json_t *read_versions(const char *path, const char *text, size_t len) {
    json_t *m = json_object();
    if (!text || len > DEPS_MAX_BYTES)
        return m;
    const char *b = base_name(path);
    if (!strcmp(b, "package.json") || !strcmp(b, "package-lock.json") ||
        !strcmp(b, "npm-shrinkwrap.json")) {
        json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
        if (!strcmp(b, "package.json"))
            parse_package_json(doc, m);
        else
            parse_package_lock(doc, m);
        json_decref(doc);
    } else if (!strcmp(b, "Cargo.lock")) {
        struct cargo c = {.m = m};
        lines(text, len, cargo_line, &c);
    } else if (!strcmp(b, "go.sum")) {
        lines(text, len, gosum_line, m);
    } else {
        lines(text, len, req_line, m);
    }
    return m;
}

json_t *cdn_deps_changes(const char *path, const char *old_text, size_t old_len,
                         const char *new_text, size_t new_len) {
    if (!cdn_deps_manager(path))
        return NULL;
    json_t *a = read_versions(path, old_text, old_len), *b = read_versions(path, new_text, new_len);
    json_t *out = json_array();
    const char *k;
    json_t *v;
    json_object_foreach(b, k, v) {
        json_t *was = json_object_get(a, k);
        if (!was)
            json_array_append_new(out, json_pack("{s:s, s:n, s:O}", "name", k, "old", "new", v));
        else if (!json_equal(was, v))
            json_array_append_new(out,
                                  json_pack("{s:s, s:O, s:O}", "name", k, "old", was, "new", v));
    }
    json_object_foreach(a, k, v) if (!json_object_get(b, k))
        json_array_append_new(out, json_pack("{s:s, s:O, s:n}", "name", k, "old", v, "new"));
    json_decref(a);
    json_decref(b);
    return out;
}
