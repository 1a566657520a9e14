/* SPDX-License-Identifier: Apache-2.0 */
/* `cordon run --repo` as a reviewer relies on it, with real repositories and real VMs. Three
 * boots: a command that edits, deletes, renames, adds a binary file, sets an exec bit and leaves
 * an artifact; one that changes nothing; one whose result is over the cap. A ref that does not
 * exist fails before any VM boots. */
#include <fcntl.h>
#include <stdarg.h>
#include <jansson.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "cordon_cli.h"
#include "vmhost.h"

#define GIT "git -c user.name=t -c user.email=t@t -c init.defaultBranch=main"

__attribute__((format(printf, 1, 2))) static char *sh_out(const char *fmt, ...) {
    char cmd[8800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    char buf[4096] = "";
    size_t n = p ? fread(buf, 1, sizeof(buf) - 1, p) : 0;
    buf[n] = '\0';
    if (!p || pclose(p) != 0)
        FAIL("command failed: %s", cmd);
    buf[strcspn(buf, "\n")] = '\0';
    return strdup(buf);
}

static json_t *manifest(const char *state, const char *task) {
    char path[4400];
    snprintf(path, sizeof(path), "%s/tasks/%s/evidence/manifest.json", state, task);
    json_error_t je;
    json_t *m = json_load_file(path, 0, &je);
    if (!m)
        FAIL("%s: %s", path, je.text);
    return m;
}

static const char *jstr(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    if (!s)
        FAIL("no string '%s' in the manifest", key);
    return s;
}

TEST_T(repository_tasks_end_with_a_host_computed_diff_and_evidence, 300) {
    _cleanup_free_ char *tmp = th_tmpdir();
    char up[4200], state[4200], daemons[4300];
    snprintf(up, sizeof(up), "%s/upstream", tmp);
    snprintf(state, sizeof(state), "%s/state", tmp);
    snprintf(daemons, sizeof(daemons), "%s/daemons", tmp);
    struct cdn_vm_host *host = th_host_hold(daemons);
    th_sh("mkdir -p %s && cd %s && " GIT " init -q . && printf 'one\\n' > a.txt && "
          "printf 'bee\\n' > b.txt && printf 'sea\\nsea\\nsea\\n' > c.txt && printf '#!/bin/sh\\n' "
          "> s.sh && " GIT " add -A && " GIT " commit -qm first && " GIT " tag v1 && "
          "printf 'later\\n' > later.txt && " GIT " add -A && " GIT " commit -qm second",
          up, up);

    th_sh("mkdir -p %s", state);
    /* A ref that does not exist: refused before any VM boots. */
    struct th_ran r = th_cordon(
        "run", state, "last", (const char *[]){"--repo", up, "--ref", "nope", "--", "true", NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "ref 'nope' not found in ");
    ASSERT_TRUE(!strstr(r.err, "using QEMU")); /* the VM was never prepared */
    th_ran_free(&r);
    th_sh("rm -rf %s/tasks", state);

    /* Edits of every kind, at the tag v1, with an artifact. */
    r = th_cordon("run", state, "last",
                  (const char *[]){"--repo", up, "--ref", "v1", "--artifact", "out/*.log", "--",
                                   "sh", "-c",
                                   "printf 'two\\n' >> a.txt && rm b.txt && mv c.txt d.txt && "
                                   "printf '\\000\\001\\377' > blob.bin && chmod +x s.sh && "
                                   "mkdir out && echo report > out/r.log && echo edited",
                                   NULL});
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out, "edited\n");
    ASSERT_CONTAINS(r.err, "files changed");
    ASSERT_CONTAINS(r.err, "evidence in ");
    th_ran_free(&r);
    _cleanup_free_ char *task = sh_out("ls %s/tasks", state);
    json_t *m = manifest(state, task);
    _cleanup_free_ char *v1 = sh_out("git -C %s rev-parse 'v1^{commit}'", up);
    ASSERT_STREQ(jstr(m, "base"), v1);
    char wt[4400], ev[4400];
    snprintf(wt, sizeof(wt), "%s/tasks/%s/workspace", state, task);
    snprintf(ev, sizeof(ev), "%s/tasks/%s/evidence", state, task);
    _cleanup_free_ char *head = sh_out("git -C %s rev-parse HEAD", wt);
    ASSERT_STREQ(jstr(m, "result"), head);
    json_t *d = json_object_get(m, "diff");
    ASSERT_EQ(json_integer_value(json_object_get(d, "renamed")), 1);
    ASSERT_EQ(json_integer_value(json_object_get(d, "deleted")), 1);
    ASSERT_EQ(json_integer_value(json_object_get(d, "binary")), 1);
    ASSERT_EQ(json_integer_value(json_object_get(d, "mode_changed")), 1);
    /* the artifact is out/ below /workspace: the out/ files are in the diff too */
    json_t *c = json_array_get(json_object_get(m, "commands"), 0);
    ASSERT_EQ(json_integer_value(json_object_get(c, "exit_code")), 0);
    _cleanup_free_ char *out_sha = sh_out("sha256sum %s/logs/1.stdout | cut -d' ' -f1", ev);
    ASSERT_STREQ(jstr(json_object_get(c, "stdout"), "sha256"), out_sha);
    json_t *a = json_array_get(json_object_get(m, "artifacts"), 0);
    ASSERT_STREQ(jstr(a, "name"), "out/r.log");
    _cleanup_free_ char *art_sha = sh_out("sha256sum %s/artifacts/out/r.log | cut -d' ' -f1", ev);
    ASSERT_STREQ(jstr(a, "sha256"), art_sha);
    ASSERT_TRUE(json_string_value(json_object_get(m, "accel")));
    json_decref(m);
    /* `cordon diff` is the patch, and it applies to a fresh clone at the base exactly. */
    r = th_cordon("diff", state, "last", (const char *[]){task, NULL});
    ASSERT_EQ(r.code, 0);
    _cleanup_free_ char *patch_path = NULL;
    ASSERT_TRUE(asprintf(&patch_path, "%s/diff.patch", ev) > 0);
    _cleanup_free_ char *patch = th_read_file(patch_path);
    ASSERT_STREQ(r.out, patch);
    th_ran_free(&r);
    th_sh(
        "git clone -q %s %s/fresh && cd %s/fresh && git checkout -q %s && git apply --check %s && "
        "git apply %s && diff -r --exclude=.git . %s && test -x s.sh",
        up, tmp, tmp, v1, patch_path, patch_path, wt);
    /* the audit trail, chained and signed with the host's key, checks out */
    r = th_cordon("audit", state, "last", (const char *[]){"verify", task, NULL});
    if (r.code != 0)
        FAIL("audit verify: exit %d: %s %s", r.code, r.out, r.err);
    ASSERT_CONTAINS(r.out, "verified");
    th_ran_free(&r);
    r = th_cordon("audit", state, "last", (const char *[]){"show", task, NULL});
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "task.created");
    ASSERT_CONTAINS(r.out, "command.exited");
    ASSERT_CONTAINS(r.out, "artifact");
    ASSERT_CONTAINS(r.out, "task.closed");
    th_ran_free(&r);
    th_sh("sed -i '2s/\"at\":\"2/\"at\":\"1/' %s/audit.jsonl", ev); /* an edited line */
    r = th_cordon("audit", state, "last", (const char *[]){"verify", task, NULL});
    ASSERT_EQ(r.code, 1);
    ASSERT_CONTAINS(r.out, "audit.jsonl:2: edited");
    th_ran_free(&r);
    r = th_cordon("show", state, "last", (const char *[]){task, NULL});
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "1 renamed, 1 binary");
    ASSERT_CONTAINS(r.out, "artifact   out/r.log: 7 bytes");
    th_ran_free(&r);
    th_sh("rm -rf %s/tasks", state);

    /* Nothing changed: an empty patch and no commit, on the branch's tip this time. */
    r = th_cordon("run", state, "last",
                  (const char *[]){"--json", "--repo", up, "--", "true", NULL});
    ASSERT_EQ(r.code, 0);
    json_t *j = json_loads(r.out, 0, NULL);
    ASSERT_TRUE(j && json_is_false(json_object_get(j, "changed")));
    _cleanup_free_ char *tip = sh_out("git -C %s rev-parse main", up);
    ASSERT_STREQ(jstr(j, "base"), tip);
    ASSERT_STREQ(jstr(j, "result"), tip);
    th_sh("test ! -s %s/diff.patch", jstr(j, "evidence"));
    json_decref(j);
    th_ran_free(&r);
    th_sh("rm -rf %s/tasks", state);

    /* Over the cap: a clear error naming the file; the evidence up to then is kept. */
    r = th_cordon(
        "run", state, "last",
        (const char *[]){"--json", "--repo", up, "--max-result-mib", "1", "--", "sh", "-c",
                         "dd if=/dev/zero of=big.bin bs=1024 count=2048 2>/dev/null; echo "
                         "wrote",
                         NULL});
    ASSERT_EQ(r.code, 125);
    j = json_loads(r.out, 0, NULL);
    ASSERT_TRUE(j);
    ASSERT_CONTAINS(jstr(j, "error"), "big.bin");
    _cleanup_free_ char *task3 = strdup(jstr(j, "task"));
    json_decref(j);
    th_ran_free(&r);
    m = manifest(state, task3);
    ASSERT_CONTAINS(jstr(m, "error"), "big.bin");
    json_t *hit = json_array_get(json_object_get(m, "limits_hit"), 0);
    ASSERT_STREQ(jstr(hit, "limit"), "result");
    c = json_array_get(json_object_get(m, "commands"), 0);
    ASSERT_EQ(json_integer_value(json_object_get(c, "exit_code")), 0);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(c, "stdout"), "bytes")),
              6); /* "wrote\n" */
    ASSERT_TRUE(!json_object_get(m, "diff"));
    json_decref(m);
    /* and nothing of the refused tree is left on the host */
    th_sh("test ! -e %s/tasks/%s/result && test -z \"$(find %s -name big.bin)\"", state, task3,
          state);

    th_assert_no_cordon_domains(host);
    th_host_release();
    th_rmtree(tmp);
}
