/* SPDX-License-Identifier: Apache-2.0 */
/* A session's secrets and what a command's environment gets from the policy: each secret read at
 * the start (host environment or file), given only to commands whose every part matches its
 * expose_to patterns, redacted from everything stored or streamed (the redactor is the
 * evidence's too), and wiped from memory when the session closes. packages.lifecycle_scripts:
 * deny becomes the variables npm, pnpm and yarn read to skip install scripts. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "fsutil.h"
#include "redact.h"
#include "task_internal.h"

/* What npm/pnpm (npm_config_*), yarn 1 (YARN_IGNORE_SCRIPTS) and yarn 2+ (YARN_ENABLE_SCRIPTS)
 * read to run no package's lifecycle scripts. */
static const char *const no_scripts_env[] = {
    "npm_config_ignore_scripts=true", "YARN_IGNORE_SCRIPTS=true", "YARN_ENABLE_SCRIPTS=false"};
#define N_NO_SCRIPTS (sizeof(no_scripts_env) / sizeof(no_scripts_env[0]))

int cdn_task_secret_read(const struct cdn_policy_secret *sec, char **value, size_t *len,
                         cdn_err **err) {
    if (strncmp(sec->from, "env:", 4) == 0) {
        const char *v = getenv(sec->from + 4);
        if (!v)
            return cdn_err_set(err, ENOENT,
                               "secret '%s': %s is not set in the host's environment (policy "
                               "line %u)",
                               sec->name, sec->from + 4, sec->line);
        *len = strlen(v);
        return (*value = strdup(v)) ? 0 : cdn_err_set(err, ENOMEM, "out of memory");
    }
    int r = cdn_read_file(sec->from + 5, CDN_SECRET_MAX_BYTES + 2, value, len, err);
    if (r < 0)
        return cdn_err_prefix(err, "secret '%s' (policy line %u)", sec->name, sec->line);
    if (*len && (*value)[*len - 1] == '\n') /* the file's last line end is not part of it */
        (*value)[--*len] = '\0';
    if (*len && (*value)[*len - 1] == '\r')
        (*value)[--*len] = '\0';
    return 0;
}

int task_secrets_load(struct cdn_session *t, cdn_err **err) {
    const struct cdn_policy *p = t->spec->policy;
    size_t n = p ? cdn_policy_secret_count(p) : 0;
    if (n == 0)
        return 0;
    int r = cdn_redactor_new(&t->redactor, err);
    if (r < 0)
        return r;
    if (!(t->secrets = calloc(n, sizeof(*t->secrets))))
        return cdn_err_set(err, ENOMEM, "out of memory");
    t->nsecrets = n; /* one slot per policy secret (an absent optional one stays NULL) */
    for (size_t i = 0; i < n; i++) {
        const struct cdn_policy_secret *sec = cdn_policy_secret(p, i);
        char *value = NULL;
        size_t len = 0;
        cdn_err *missing = NULL;
        if ((r = cdn_task_secret_read(sec, &value, &len, &missing)) == -ENOENT && sec->optional) {
            cdn_evidence_event(t->ev, "secret.missing",
                               json_pack("{s:s, s:s, s:s}", "name", sec->name, "from", sec->from,
                                         "why", cdn_err_msg(missing)));
            cdn_err_free(missing);
            continue; /* its slot stays empty: never exposed */
        }
        if (r < 0) {
            *err = missing;
            return r;
        }
        r = cdn_redactor_add(t->redactor, sec->name, (const uint8_t *)value, len, err);
        if (r == 0 && asprintf(&t->secrets[i].assign, "%s=%s", sec->env, value) < 0) {
            t->secrets[i].assign = NULL;
            r = cdn_err_set(err, ENOMEM, "out of memory");
        }
        explicit_bzero(value, len);
        free(value);
        if (r < 0)
            return r;
        cdn_evidence_event(t->ev, "secret.loaded",
                           json_pack("{s:s, s:s, s:s, s:I}", "name", sec->name, "from", sec->from,
                                     "env", sec->env, "bytes", (json_int_t)len));
    }
    cdn_evidence_set_redactor(t->ev, t->redactor);
    return 0;
}

void task_secrets_scrub(struct cdn_session *t) {
    for (size_t i = 0; t->secrets && i < t->nsecrets; i++) {
        if (!t->secrets[i].assign)
            continue;
        explicit_bzero(t->secrets[i].assign, strlen(t->secrets[i].assign));
        free(t->secrets[i].assign);
    }
    free(t->secrets);
    t->secrets = NULL;
    t->nsecrets = 0;
    cdn_redactor_freep(&t->redactor);
}

void task_cmd_env_free(struct task_cmd_env *e) {
    free(e->env);
    *e = (struct task_cmd_env){0};
}

int task_cmd_env(struct cdn_session *t, const struct cdn_exec_spec *x, struct task_cmd_env *out,
                 cdn_err **err) {
    *out = (struct task_cmd_env){0};
    const struct cdn_policy *p = t->spec->policy;
    if (!p || (!t->nsecrets && !cdn_policy_packages(p)->scripts_denied))
        return 0;
    struct cdn_policy_decision d;
    int r = cdn_policy_decide(p, x->argv, x->argc, &d, err);
    if (r < 0)
        return r;
    if (!(out->env = calloc(x->envc + t->nsecrets + N_NO_SCRIPTS + 1, sizeof(char *)))) {
        cdn_policy_decision_free(&d);
        return cdn_err_set(err, ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < x->envc; i++)
        out->env[out->envc++] = x->env[i];
    json_t *names = json_array();
    for (size_t i = 0; i < t->nsecrets; i++)
        if (t->secrets[i].assign && cdn_policy_secret_exposed(p, i, &d)) {
            out->env[out->envc++] = t->secrets[i].assign;
            json_array_append_new(names, json_string(cdn_policy_secret(p, i)->name));
        }
    json_t *jargv = json_array();
    for (size_t i = 0; i < x->argc; i++)
        json_array_append_new(jargv, json_string(x->argv[i]));
    if (json_array_size(names))
        cdn_evidence_event(t->ev, "secrets.exposed",
                           json_pack("{s:O, s:O}", "argv", jargv, "names", names));
    json_decref(names);
    if (cdn_policy_packages(p)->scripts_denied) {
        for (size_t i = 0; i < N_NO_SCRIPTS; i++)
            out->env[out->envc++] = no_scripts_env[i];
        for (size_t k = 0; k < d.n; k++) {
            bool scripts = false;
            int m =
                cdn_pkg_manager_of((const char *const *)d.parts[k].argv, d.parts[k].argc, &scripts);
            if (m >= 0 && scripts) {
                cdn_evidence_event(t->ev, "packages.lifecycle_scripts",
                                   json_pack("{s:s, s:O, s:s, s:s}", "manager",
                                             cdn_pkg_manager_name(m), "argv", jargv, "scripts",
                                             "disabled", "by", "npm_config_ignore_scripts=true"));
                break;
            }
        }
    }
    json_decref(jargv);
    cdn_policy_decision_free(&d);
    return 0;
}
