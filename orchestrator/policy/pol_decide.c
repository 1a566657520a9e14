/* SPDX-License-Identifier: Apache-2.0 */
/* Deciding an Exec: its argv is looked through (wrappers, sudo, `sh -c STRING`, find -exec,
 * xargs) down to the simple commands that will run, each is matched against the rules in order
 * (first match wins, else the default), and the strictest decision of all parts is the answer. */
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pol_internal.h"

#define MAX_DEPTH 8

struct decider {
    const struct cdn_policy *p;
    struct cdn_policy_decision *d;
};

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

static bool is_one_of(const char *w, const char *const *list) {
    for (const char *const *k = list; *k; k++)
        if (strcmp(*k, w) == 0)
            return true;
    return false;
}

static const char *const shells[] = {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", NULL};
static const char *const interpreters[] = {"sh",   "bash",   "dash",    "zsh",  "ksh",  "ash",
                                           "mksh", "python", "python3", "perl", "ruby", "node",
                                           "php",  "lua",    "tclsh",   "pwsh", "fish", NULL};

static int add_part(struct decider *x, const char *const *argv, size_t argc,
                    enum cdn_policy_action a, const char *rule, const char *reason) {
    struct cdn_policy_decision *d = x->d;
    struct cdn_policy_part *v = realloc(d->parts, (d->n + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    d->parts = v;
    struct cdn_policy_part *pt = &d->parts[d->n];
    *pt = (struct cdn_policy_part){.action = a};
    pt->argv = calloc(argc + 1, sizeof(char *));
    pt->rule = strdup(rule);
    pt->reason = reason ? strdup(reason) : NULL;
    d->n++;
    if (!pt->argv || !pt->rule || (reason && !pt->reason))
        return -ENOMEM;
    for (size_t i = 0; i < argc; i++) {
        if (!(pt->argv[i] = strdup(argv[i])))
            return -ENOMEM;
        pt->argc = i + 1;
    }
    if (a > d->action)
        d->action = a;
    return 0;
}

static int unanalysable(struct decider *x, const char *const *argv, size_t argc, const char *why) {
    return add_part(x, argv, argc, x->p->unanalysable, "commands.unanalysable", why);
}

bool pol_rule_matches(const struct pol_rule *r, const char *const *argv, size_t argc) {
    const char *prog = strchr(r->program, '/') ? argv[0] : base_name(argv[0]);
    if (fnmatch(r->program, prog, 0) != 0)
        return false;
    if (r->any_args)
        return true;
    size_t i = 0;
    for (; i < r->nargs; i++) {
        if (strcmp(r->args[i], "**") == 0)
            return true;
        if (i + 1 >= argc || fnmatch(r->args[i], argv[i + 1], 0) != 0)
            return false;
    }
    return argc - 1 == r->nargs;
}

/* A package manager's install (packages.managers): a decision of its own beside the rules'. */
static int decide_package(struct decider *x, const char *const *argv, size_t argc) {
    const struct cdn_policy_packages *pk = &x->p->packages;
    int m = cdn_pkg_manager_of(argv, argc, NULL);
    if (m < 0 || !pk->set[m])
        return 0;
    char rule[96];
    snprintf(rule, sizeof(rule), "packages.managers.%s (line %u)", cdn_pkg_manager_name(m),
             pk->line[m]);
    return add_part(x, argv, argc, pk->action[m], rule, "a package manager fetching packages");
}

static int decide_simple(struct decider *x, const char *const *argv, size_t argc) {
    const struct cdn_policy *p = x->p;
    for (size_t i = 0; i < p->nrules; i++)
        if (pol_rule_matches(&p->rules[i], argv, argc)) {
            char rule[96];
            snprintf(rule, sizeof(rule), "commands.rules[%zu] (line %u)", i, p->rules[i].line);
            int r = add_part(x, argv, argc, p->rules[i].action, rule, p->rules[i].reason);
            return r < 0 ? r : decide_package(x, argv, argc);
        }
    int r = add_part(x, argv, argc, p->dflt, "commands.default", NULL);
    return r < 0 ? r : decide_package(x, argv, argc);
}

static int analyse(struct decider *x, const char *const *argv, size_t argc, unsigned depth);

/* An interpreter given no script (only options, or "-" / "-s"): it runs what stdin brings. */
static bool reads_code_from_stdin(const char *const *argv, size_t argc) {
    if (!is_one_of(base_name(argv[0]), interpreters))
        return false;
    for (size_t i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-") || !strcmp(argv[i], "-s"))
            return true;
        if (argv[i][0] != '-' || strchr(argv[i], 'c') || strchr(argv[i], 'e'))
            return false; /* a script, or code given inline (decided on its own) */
    }
    return true;
}

/* `sh [-options] -c STRING [name args...]`: the string's commands are what runs. */
static int look_into_shell(struct decider *x, const char *const *argv, size_t argc, unsigned depth,
                           bool *handled) {
    size_t i = 1;
    bool c = false;
    for (; i < argc && argv[i][0] == '-' && strcmp(argv[i], "-") && strcmp(argv[i], "--"); i++) {
        if (strchr(argv[i], 'c') && argv[i][1] != '-')
            c = true;
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "+o")) && i + 1 < argc)
            i++;
    }
    if (!c || i >= argc) {
        *handled = false;
        return 0;
    }
    *handled = true;
    if (depth >= MAX_DEPTH)
        return unanalysable(x, argv, argc, "shells nested too deeply");
    struct pol_split split;
    if (pol_shell_split(argv[i], &split) < 0)
        return -ENOMEM;
    int r = 0;
    for (size_t k = 0; r == 0 && k < split.n; k++) {
        struct pol_simple *sc = &split.v[k];
        const char *const *w = (const char *const *)sc->argv;
        if (sc->unanalysable)
            r = unanalysable(x, w, sc->argc, sc->unanalysable);
        else if (sc->heredoc && sc->argc && is_one_of(base_name(w[0]), interpreters))
            r = unanalysable(x, w, sc->argc, "a here-doc or here-string feeds an interpreter");
        else if (sc->piped && sc->argc && reads_code_from_stdin(w, sc->argc))
            r = unanalysable(x, w, sc->argc, "a pipe feeds code to an interpreter");
        else if (sc->argc)
            r = analyse(x, w, sc->argc, depth + 1);
    }
    pol_split_free(&split);
    return r;
}

/* Options of a wrapper that take a value, per wrapper. */
static size_t skip_options(const char *prog, const char *const *argv, size_t argc) {
    static const char *const sudo_val[] = {"-u", "-g", "-C", "-D", "-h", "-p",
                                           "-r", "-t", "-U", "-T", NULL};
    static const char *const timeout_val[] = {"-s", "-k", "--signal", "--kill-after", NULL};
    static const char *const nice_val[] = {"-n", "--adjustment", NULL};
    static const char *const stdbuf_val[] = {"-i", "-o", "-e", NULL};
    static const char *const exec_val[] = {"-a", NULL};
    static const char *const xargs_val[] = {"-I", "-n", "-P", "-L", "-s", "-d", "-E", "-a", NULL};
    const char *const *val = !strcmp(prog, "sudo") || !strcmp(prog, "doas") ? sudo_val
                             : !strcmp(prog, "timeout")                     ? timeout_val
                             : !strcmp(prog, "nice")                        ? nice_val
                             : !strcmp(prog, "stdbuf")                      ? stdbuf_val
                             : !strcmp(prog, "exec")                        ? exec_val
                             : !strcmp(prog, "xargs")                       ? xargs_val
                                                                            : NULL;
    size_t i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (val && is_one_of(argv[i], val) && i + 1 < argc)
            i++;
    }
    if (!strcmp(prog, "timeout") && i < argc) /* the duration */
        i++;
    return i;
}

static int analyse(struct decider *x, const char *const *argv, size_t argc, unsigned depth) {
    /* NAME=value words before the program are assignments */
    while (argc && strchr(argv[0], '=') && argv[0][0] != '=' && argv[0][0] != '-' &&
           strspn(argv[0], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") ==
               (size_t)(strchr(argv[0], '=') - argv[0])) {
        argv++;
        argc--;
    }
    if (!argc)
        return 0;
    if (depth > MAX_DEPTH)
        return unanalysable(x, argv, argc, "wrappers nested too deeply");
    const char *prog = base_name(argv[0]);
    if (!strcmp(prog, "eval") || !strcmp(prog, "source") || !strcmp(prog, "."))
        return unanalysable(x, argv, argc, "eval and source run code decided at run time");
    if (!strcmp(prog, "env")) {
        size_t i = 1;
        for (; i < argc; i++) {
            if (!strncmp(argv[i], "-S", 2) || !strncmp(argv[i], "--split-string", 14))
                return unanalysable(x, argv, argc, "env -S splits a string into a command");
            if ((!strcmp(argv[i], "-u") || !strcmp(argv[i], "-C")) && i + 1 < argc)
                i++;
            else if (argv[i][0] != '-' && !strchr(argv[i], '='))
                break;
        }
        return analyse(x, argv + i, argc - i, depth + 1);
    }
    if (!strcmp(prog, "command") && argc > 1 && (!strcmp(argv[1], "-v") || !strcmp(argv[1], "-V")))
        return decide_simple(x, argv, argc);
    static const char *const wrappers[] = {"nice", "nohup",  "time",    "command",
                                           "exec", "stdbuf", "timeout", NULL};
    if (is_one_of(prog, wrappers)) {
        size_t i = skip_options(prog, argv, argc);
        if (i >= argc)
            return decide_simple(x, argv, argc);
        return analyse(x, argv + i, argc - i, depth + 1);
    }
    if (!strcmp(prog, "busybox") && argc > 1)
        return analyse(x, argv + 1, argc - 1, depth + 1);
    if (!strcmp(prog, "sudo") || !strcmp(prog, "doas") || !strcmp(prog, "xargs")) {
        /* the wrapper is a decision of its own, and so is what it runs */
        int r = decide_simple(x, argv, argc);
        size_t i = skip_options(prog, argv, argc);
        if (r == 0 && i < argc)
            r = analyse(x, argv + i, argc - i, depth + 1);
        return r;
    }
    if (is_one_of(prog, shells)) {
        bool handled = false;
        int r = look_into_shell(x, argv, argc, depth, &handled);
        if (r < 0 || handled)
            return r;
    }
    if (!strcmp(prog, "find")) { /* find ... -exec CMD ... ; : the commands it runs */
        int r = decide_simple(x, argv, argc);
        for (size_t i = 1; r == 0 && i < argc; i++) {
            if (strcmp(argv[i], "-exec") && strcmp(argv[i], "-execdir") && strcmp(argv[i], "-ok") &&
                strcmp(argv[i], "-okdir"))
                continue;
            size_t j = i + 1;
            while (j < argc && strcmp(argv[j], ";") && strcmp(argv[j], "+"))
                j++;
            if (j > i + 1)
                r = analyse(x, argv + i + 1, j - i - 1, depth + 1);
            i = j;
        }
        return r;
    }
    return decide_simple(x, argv, argc);
}

int cdn_policy_decide(const struct cdn_policy *p, const char *const *argv, size_t argc,
                      struct cdn_policy_decision *d, cdn_err **err) {
    *d = (struct cdn_policy_decision){.action = CDN_POLICY_ALLOW};
    struct decider x = {.p = p, .d = d};
    int r = argc ? analyse(&x, argv, argc, 0) : 0;
    if (r == 0 && d->n == 0) /* nothing to run (only assignments): the default decides */
        r = add_part(&x, argv, argc, p->dflt, "commands.default", "no command to run");
    if (r < 0) {
        cdn_policy_decision_free(d);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    return 0;
}

void cdn_policy_decision_free(struct cdn_policy_decision *d) {
    for (size_t i = 0; i < d->n; i++) {
        for (size_t j = 0; j < d->parts[i].argc; j++)
            free(d->parts[i].argv[j]);
        free(d->parts[i].argv);
        free(d->parts[i].rule);
        free(d->parts[i].reason);
    }
    free(d->parts);
    *d = (struct cdn_policy_decision){0};
}

bool cdn_policy_secret_exposed(const struct cdn_policy *p, size_t i,
                               const struct cdn_policy_decision *d) {
    if (i >= p->nsecrets || d->n == 0)
        return false;
    const struct pol_secret *sec = &p->secrets[i];
    for (size_t k = 0; k < d->n; k++) {
        const struct cdn_policy_part *pt = &d->parts[k];
        if (!strcmp(pt->rule, "commands.unanalysable") || pt->argc == 0)
            return false;
        bool any = false;
        for (size_t j = 0; j < sec->pub.n_expose && !any; j++)
            any = pol_rule_matches(&sec->expose[j], (const char *const *)pt->argv, pt->argc);
        if (!any)
            return false;
    }
    return true;
}
