/* SPDX-License-Identifier: Apache-2.0 */
/* `cordon run` with a policy that allows one loopback server: in a real VM, busybox wget reaches
 * it through the agent's proxy, a name no rule allows gets a 403 (and no DNS query), a raw socket
 * has no route; a secret the command prints whole, base64-encoded and split across two writes
 * appears nowhere in the output, the logs, the manifest or the audit trail, and the trail still
 * verifies. One boot. */
#include <dirent.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "cordon_cli.h"
#include "harness.h"
#include "httpd.h"
#include "test.h"
#include "vmhost.h"

static const char token[] = "cdn-TEST-0123456789abcdef-secret";

/* Fails when any file under dir holds needle. */
static void assert_nowhere(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    ASSERT_TRUE(d != NULL);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            assert_nowhere(path, needle);
            continue;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        _cleanup_free_ char *text = th_read_file(path);
        if (text && strstr(text, needle))
            FAIL("%s holds the secret (%s)", path, needle);
    }
    closedir(d);
}

TEST_T(egress_and_secrets_in_a_real_vm, 300) {
    _cleanup_free_ char *state = th_tmpdir();
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/daemons", state);
    struct cdn_vm_host *host = th_host_hold(daemons);
    struct th_httpd *web = th_httpd_start("127.0.0.2");
    uint16_t port = th_httpd_port(web);

    char policy[4400], text[2048];
    snprintf(policy, sizeof(policy), "%s/net.yaml", state);
    snprintf(text, sizeof(text),
             "version: 1\n"
             "commands: {default: allow, unanalysable: allow}\n"
             "network:\n"
             "  egress:\n"
             "    rules:\n"
             "      - {host: 127.0.0.2, ports: [%u], purpose: docs, reason: the test server}\n"
             "secrets:\n"
             "  - name: test-token\n"
             "    from: env:CORDON_TEST_TOKEN\n"
             "    env: TEST_TOKEN\n"
             "    expose_to: [\"sh **\", \"echo **\", \"printf **\", \"wget **\", \"nc **\",\n"
             "                \"base64 **\", \"head **\", \"tail **\", \"sleep **\"]\n",
             port);
    th_write_file(policy, text, 0644);
    setenv("CORDON_TEST_TOKEN", token, 1);
    char script[2048];
    snprintf(script, sizeof(script),
             "echo proxy=$http_proxy; "
             "wget -q -O - http://127.0.0.2:%u/hello; echo allowed=$?; "
             "wget -q -O - http://denied.invalid/x 2>&1; echo denied=$?; "
             "nc -w 3 192.0.2.1 80 </dev/null 2>&1; echo raw=$?; "
             "printf '%%s\\n' \"$TEST_TOKEN\"; "
             "printf '%%s' \"$TEST_TOKEN\" | base64; "
             "printf '%%s' \"$TEST_TOKEN\" | head -c 12; sleep 0.5; "
             "printf '%%s\\n' \"$TEST_TOKEN\" | tail -c +13",
             port);
    struct th_ran r = th_cordon(
        "run", state, "net", (const char *[]){"--policy", policy, "--", "sh", "-c", script, NULL});
    unsetenv("CORDON_TEST_TOKEN");
    printf("%s%s", r.out, r.err);
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "proxy=http://127.0.0.1:3128");
    ASSERT_CONTAINS(r.out, "hello from 127.0.0.2\nallowed=0");
    ASSERT_CONTAINS(r.out, "403 Forbidden");
    ASSERT_CONTAINS(r.out, "denied=1");
    ASSERT_TRUE(strstr(r.out, "raw=0") == NULL);
    ASSERT_EQ(th_httpd_requests(web), 1u);

    /* the secret: three times redacted, never itself */
    char b64[128];
    EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)token, (int)strlen(token));
    size_t hits = 0;
    for (const char *p = r.out; (p = strstr(p, "[REDACTED:test-token]")); p++)
        hits++;
    ASSERT_EQ(hits, 3u);
    ASSERT_TRUE(strstr(r.out, token) == NULL && strstr(r.out, b64) == NULL);
    ASSERT_TRUE(strstr(r.out, "cdn-TEST-0123") == NULL); /* the split halves neither */
    char tasks[4400];
    snprintf(tasks, sizeof(tasks), "%s/tasks", state);
    assert_nowhere(tasks, token);
    assert_nowhere(tasks, b64);

    /* the evidence: each attempt recorded, each verdict on the trail, the trail intact */
    DIR *d = opendir(tasks);
    char dir[4800] = "";
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.')
            snprintf(dir, sizeof(dir), "%s/%s/evidence", tasks, e->d_name);
    closedir(d);
    char mpath[4900];
    snprintf(mpath, sizeof(mpath), "%s/manifest.json", dir);
    json_t *m = json_load_file(mpath, 0, NULL);
    ASSERT_TRUE(m != NULL);
    json_t *eg = json_object_get(m, "egress");
    ASSERT_EQ(json_array_size(eg), 2u);
    for (size_t i = 0; i < 2; i++) {
        json_t *a = json_array_get(eg, i);
        const char *host_name = json_string_value(json_object_get(a, "host"));
        const char *decision = json_string_value(json_object_get(a, "decision"));
        if (!strcmp(host_name, "127.0.0.2")) {
            ASSERT_STREQ(decision, "allowed");
            ASSERT_STREQ(json_string_value(json_object_get(a, "purpose")), "docs");
            ASSERT_TRUE(json_integer_value(json_object_get(a, "bytes_down")) > 20);
        } else {
            ASSERT_STREQ(host_name, "denied.invalid");
            ASSERT_STREQ(decision, "denied");
            ASSERT_STREQ(json_string_value(json_object_get(a, "rule")), "network.egress.default");
            ASSERT_TRUE(json_object_get(a, "address") == NULL); /* never resolved */
        }
    }
    json_decref(m);
    char apath[4900];
    snprintf(apath, sizeof(apath), "%s/audit.jsonl", dir);
    _cleanup_free_ char *trail = th_read_file(apath);
    ASSERT_CONTAINS(trail, "\"event\":\"egress.decided\"");
    ASSERT_CONTAINS(trail, "\"event\":\"secrets.exposed\"");
    struct th_ran v = th_cordon("audit", state, "verify", (const char *[]){"verify", dir, NULL});
    ASSERT_EQ(v.code, 0);
    th_ran_free(&v);
    th_ran_free(&r);
    th_httpd_stop(web);
    (void)host;
    th_host_release();
    th_rmtree(state);
}
