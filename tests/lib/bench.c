/* SPDX-License-Identifier: Apache-2.0 */
#include "bench.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

void th_bench_finish(json_t *root, const char *name, const char *dir) {
    char when[32], def[256];
    time_t now = time(NULL);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    struct utsname u;
    uname(&u);
    json_object_set_new(root, "date", json_string(when));
    json_object_set_new(root, "host", json_string(u.release));
    snprintf(def, sizeof(def), "bench/results/%s.json", name);
    const char *out = getenv("BENCH_OUT") ? getenv("BENCH_OUT") : def;
    if (json_dump_file(root, out, JSON_INDENT(2)) < 0)
        FAIL("cannot write %s", out);
    json_decref(root);
    th_host_release();
    if (!getenv("BENCH_KEEP"))
        th_rmtree(dir);
}

unsigned th_log_count(const char *path, const char *needle) {
    _cleanup_free_ char *text = th_read_file(path);
    unsigned n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p++)
        n++;
    return n;
}
