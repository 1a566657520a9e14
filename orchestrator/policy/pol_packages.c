/* SPDX-License-Identifier: Apache-2.0 */
/* Package managers as the command gate sees them: which program a simple command runs, and
 * whether that run fetches packages (what packages.managers allows or denies). */
#include <stdbool.h>
#include <string.h>

#include "pol_internal.h"

const char *cdn_pkg_manager_name(enum cdn_pkg_manager m) {
    static const char *const names[] = {"npm", "pnpm", "yarn", "pip", "cargo", "go", "apt"};
    return (unsigned)m < CDN_PKG_COUNT ? names[m] : "?";
}

static bool among(const char *w, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(w, *list))
            return true;
    return false;
}

/* The first word after the program that is not an option. */
static const char *subcommand(const char *const *argv, size_t argc, size_t from) {
    for (size_t i = from; i < argc; i++)
        if (argv[i][0] != '-')
            return argv[i];
    return NULL;
}

int cdn_pkg_manager_of(const char *const *argv, size_t argc, bool *scripts_capable) {
    static const char *const js_fetch[] = {
        "install",      "i",  "add", "ci",   "update", "up", "upgrade", "isntall",
        "install-test", "it", "dlx", "exec", NULL};
    static const char *const pip_fetch[] = {"install", "download", "wheel", NULL};
    static const char *const cargo_fetch[] = {"install", "add", "update", "fetch", NULL};
    static const char *const go_fetch[] = {"get", "install", "mod", NULL};
    static const char *const apt_fetch[] = {"install",      "update",       "upgrade",
                                            "dist-upgrade", "full-upgrade", "source",
                                            "download",     "build-dep",    NULL};
    if (scripts_capable)
        *scripts_capable = false;
    if (argc == 0)
        return -1;
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    const char *sub = subcommand(argv, argc, 1);
    int m = -1;
    if (!strcmp(prog, "npm") || !strcmp(prog, "pnpm") || !strcmp(prog, "yarn")) {
        m = prog[0] == 'n' ? CDN_PKG_NPM : prog[0] == 'p' ? CDN_PKG_PNPM : CDN_PKG_YARN;
        /* plain `yarn` installs */
        if (!(sub ? among(sub, js_fetch) : m == CDN_PKG_YARN))
            return -1;
        if (scripts_capable)
            *scripts_capable = true;
        return m;
    }
    if (!strcmp(prog, "npx") || !strcmp(prog, "pnpx"))
        return prog[0] == 'n' ? CDN_PKG_NPM : CDN_PKG_PNPM; /* fetches what it runs */
    if (!strncmp(prog, "pip", 3) &&
        (!prog[3] || strspn(prog + 3, "0123456789.") == strlen(prog + 3)))
        return sub && among(sub, pip_fetch) ? CDN_PKG_PIP : -1;
    if (!strncmp(prog, "python", 6) && argc > 3) {
        for (size_t i = 1; i + 1 < argc; i++)
            if (!strcmp(argv[i], "-m") && !strcmp(argv[i + 1], "pip"))
                return (sub = subcommand(argv, argc, i + 2)) && among(sub, pip_fetch) ? CDN_PKG_PIP
                                                                                      : -1;
        return -1;
    }
    if (!strcmp(prog, "cargo"))
        return sub && among(sub, cargo_fetch) ? CDN_PKG_CARGO : -1;
    if (!strcmp(prog, "go")) {
        if (!sub || !among(sub, go_fetch))
            return -1;
        if (!strcmp(sub, "mod")) {
            const char *what = NULL;
            for (size_t i = 1; i + 1 < argc; i++)
                if (!strcmp(argv[i], "mod"))
                    what = subcommand(argv, argc, i + 1);
            return what && (!strcmp(what, "download") || !strcmp(what, "tidy")) ? CDN_PKG_GO : -1;
        }
        return CDN_PKG_GO;
    }
    if (!strcmp(prog, "apt-get") || !strcmp(prog, "apt") || !strcmp(prog, "aptitude"))
        return sub && among(sub, apt_fetch) ? CDN_PKG_APT : -1;
    return m;
}
