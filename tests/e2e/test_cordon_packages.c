/* SPDX-License-Identifier: Apache-2.0 */
/* npm in the devbox image installs from a registry on 127.0.0.2 through the egress proxy, under
 * packages.lifecycle_scripts: deny: the package's postinstall (which writes a marker file) does
 * not run, the install is recorded as such, the registry traffic as purpose packages, and the
 * dependency the install added is listed (name, old, new) from the diff's package.json and
 * package-lock.json. As a control, the same script does run when asked for explicitly: the
 * setting stops packages' scripts, not the agent. One devbox boot. */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "cordon_cli.h"
#include "harness.h"
#include "httpd.h"
#include "test.h"
#include "vmhost.h"

#define GIT "git -c user.name=t -c user.email=t@t -c init.defaultBranch=main"

static void digest(const char *md, const void *p, size_t n, unsigned char *out, unsigned *len) {
    EVP_Digest(p, n, out, len, EVP_get_digestbyname(md), NULL);
}

TEST_T(npm_install_runs_no_lifecycle_scripts_when_the_policy_says_so, 600) {
    _cleanup_free_ char *dir = th_tmpdir();
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/daemons", dir);
    struct cdn_vm_host *host = th_host_hold(daemons);
    (void)host;
    struct th_httpd *reg = th_httpd_start("127.0.0.2");
    uint16_t port = th_httpd_port(reg);

    /* the package: its postinstall writes a marker */
    char pj[4400];
    snprintf(pj, sizeof(pj), "%s/pkg/package/package.json", dir);
    th_write_file(pj,
                  "{\"name\":\"marker-pkg\",\"version\":\"1.0.0\",\"scripts\":"
                  "{\"postinstall\":\"touch /tmp/postinstall-ran\"}}\n",
                  0644);
    th_sh("cd %s/pkg && echo 'module.exports = 1;' > package/index.js && "
          "tar -czf marker-pkg-1.0.0.tgz package",
          dir);
    char tgz_path[4400];
    snprintf(tgz_path, sizeof(tgz_path), "%s/pkg/marker-pkg-1.0.0.tgz", dir);
    FILE *f = fopen(tgz_path, "rb");
    ASSERT_TRUE(f != NULL);
    static char tgz[65536];
    size_t tgz_len = fread(tgz, 1, sizeof(tgz), f);
    fclose(f);
    unsigned char sha1[20], sha512[64];
    unsigned l1, l512;
    digest("SHA1", tgz, tgz_len, sha1, &l1);
    digest("SHA512", tgz, tgz_len, sha512, &l512);
    char shasum[41], integrity[120] = "sha512-";
    for (int i = 0; i < 20; i++)
        snprintf(shasum + 2 * i, 3, "%02x", sha1[i]);
    EVP_EncodeBlock((unsigned char *)integrity + 7, sha512, 64);
    char packument[2048];
    snprintf(packument, sizeof(packument),
             "{\"name\":\"marker-pkg\",\"dist-tags\":{\"latest\":\"1.0.0\"},\"versions\":{"
             "\"1.0.0\":{\"name\":\"marker-pkg\",\"version\":\"1.0.0\",\"hasInstallScript\":true,"
             "\"scripts\":{\"postinstall\":\"touch /tmp/postinstall-ran\"},\"dist\":{\"tarball\":"
             "\"http://127.0.0.2:%u/marker-pkg/-/marker-pkg-1.0.0.tgz\",\"shasum\":\"%s\","
             "\"integrity\":\"%s\"}}}}",
             port, shasum, integrity);
    th_httpd_route(reg, "/marker-pkg", "application/json", packument, strlen(packument));
    th_httpd_route(reg, "/marker-pkg/-/marker-pkg-1.0.0.tgz", "application/octet-stream", tgz,
                   tgz_len);

    /* the project: a package.json, committed */
    char repo[4400];
    snprintf(repo, sizeof(repo), "%s/app", dir);
    th_sh("mkdir -p %s && cd %s && " GIT " init -q && printf '%%s\\n' '{\"name\":\"app\","
          "\"version\":\"1.0.0\",\"private\":true}' > package.json && " GIT " add . && " GIT
          " commit -qm init",
          repo, repo);
    char policy[4400], text[1024];
    snprintf(policy, sizeof(policy), "%s/npm.yaml", dir);
    snprintf(text, sizeof(text),
             "version: 1\n"
             "commands: {default: allow, unanalysable: allow}\n"
             "network:\n"
             "  egress:\n"
             "    rules:\n"
             "      - {host: 127.0.0.2, ports: [%u], purpose: packages, reason: the registry}\n"
             "packages:\n"
             "  managers: {npm: allow}\n"
             "  lifecycle_scripts: deny\n",
             port);
    th_write_file(policy, text, 0644);
    char script[1024];
    snprintf(
        script, sizeof(script),
        "npm install --registry http://127.0.0.2:%u/ --no-audit --no-fund --no-update-notifier "
        "marker-pkg >/tmp/npm.log 2>&1 || { cat /tmp/npm.log; exit 3; }; "
        "test -f node_modules/marker-pkg/index.js && echo installed; "
        "test -e /tmp/postinstall-ran && echo script-ran || echo script-did-not-run; "
        "npm rebuild --ignore-scripts=false marker-pkg >/dev/null 2>&1; "
        "test -e /tmp/postinstall-ran && echo control-ran",
        port);
    char state[4400];
    snprintf(state, sizeof(state), "%s/state", dir);
    th_sh("mkdir -p %s", state);
    struct th_ran r = th_cordon("run", state, "npm",
                                (const char *[]){"--image", "devbox", "--repo", repo, "--policy",
                                                 policy, "--json", "--", "sh", "-c", script, NULL});
    if (r.code != 0)
        FAIL("cordon run: exit %d\n%s\n%s", r.code, r.out, r.err);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    if (!o)
        FAIL("not JSON (%s): [%s]", je.text, r.out);
    const char *out = json_string_value(json_object_get(o, "stdout"));
    printf("%s", out);
    ASSERT_STREQ(out, "installed\nscript-did-not-run\ncontrol-ran\n");

    char mpath[4600];
    snprintf(mpath, sizeof(mpath), "%s/tasks/%s/evidence/manifest.json", state,
             json_string_value(json_object_get(o, "task")));
    json_decref(o);
    json_t *m = json_load_file(mpath, 0, NULL);
    ASSERT_TRUE(m != NULL);
    /* the registry traffic, with its purpose */
    size_t i;
    json_t *a;
    unsigned packages = 0;
    json_array_foreach(json_object_get(m, "egress"), i, a) {
        const char *h = json_string_value(json_object_get(a, "host"));
        const char *d = json_string_value(json_object_get(a, "decision"));
        printf("egress: %s:%d %s\n", h, (int)json_integer_value(json_object_get(a, "port")), d);
        if (strcmp(h, "127.0.0.2") != 0) { /* npm's own calls home, refused by default */
            ASSERT_STREQ(d, "denied");
            continue;
        }
        ASSERT_STREQ(d, "allowed");
        ASSERT_STREQ(json_string_value(json_object_get(a, "purpose")), "packages");
        packages++;
    }
    ASSERT_TRUE(packages >= 2); /* the packument and the tarball */
    /* the dependency added, from both files */
    json_t *deps = json_object_get(m, "dependencies");
    _cleanup_free_ char *deps_text = json_dumps(deps, JSON_COMPACT | JSON_SORT_KEYS);
    printf("dependencies: %s\n", deps_text);
    ASSERT_CONTAINS(deps_text, "\"file\":\"package-lock.json\"");
    ASSERT_CONTAINS(deps_text, "{\"name\":\"marker-pkg\",\"new\":\"1.0.0\",\"old\":null}");
    ASSERT_CONTAINS(deps_text, "{\"name\":\"marker-pkg\",\"new\":\"^1.0.0\",\"old\":null}");
    json_decref(m);
    char trail_path[4600];
    snprintf(trail_path, sizeof(trail_path), "%s", mpath);
    snprintf(strrchr(trail_path, '/'), 32, "/audit.jsonl");
    _cleanup_free_ char *trail = th_read_file(trail_path);
    ASSERT_CONTAINS(trail, "\"event\":\"packages.lifecycle_scripts\"");
    th_ran_free(&r);
    th_httpd_stop(reg);
    th_host_release();
    th_rmtree(dir);
}
