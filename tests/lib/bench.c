/* SPDX-License-Identifier: Apache-2.0 */
#include "bench.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>

#include "api_client.h"
#include "cleanup.h"
#include "cordon.pb-c.h"
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

static int exit_ok(void *ud, const ProtobufCMessage *msg) {
    const Cordon__V1__ExecEvent *ev = (const Cordon__V1__ExecEvent *)msg;
    if (ev->event_case == CORDON__V1__EXEC_EVENT__EVENT_EXIT && ev->exit->exit_code == 0)
        ++*(int *)ud;
    return 0;
}

void th_bench_exec_true(struct cdn_client *c, const char *id, int timeout_ms) {
    Cordon__V1__ExecRequest x = CORDON__V1__EXEC_REQUEST__INIT;
    char *argv[] = {(char *)"true"};
    x.sandbox_id = (char *)id;
    x.argv = argv;
    x.n_argv = 1;
    int ok = 0;
    _cleanup_err_ cdn_err *err = NULL;
    ASSERT_OK(cdn_client_stream(c, "Exec", &x.base, &cordon__v1__exec_event__descriptor, exit_ok,
                                &ok, NULL, timeout_ms, &err),
              err);
    ASSERT_EQ(ok, 1);
}

double th_bench_start(struct cdn_client *c, const ProtobufCMessage *create, char id[17]) {
    _cleanup_err_ cdn_err *err = NULL;
    ProtobufCMessage *m = NULL;
    double t0 = th_now_s();
    ASSERT_OK(cdn_client_call(c, "CreateSandbox", create, &cordon__v1__sandbox__descriptor, &m,
                              30000, &err),
              err);
    snprintf(id, 17, "%s", ((Cordon__V1__Sandbox *)m)->id);
    protobuf_c_message_free_unpacked(m, NULL);
    th_bench_exec_true(c, id, 180000);
    return (th_now_s() - t0) * 1e3;
}

void th_bench_delete(struct cdn_client *c, const char *id) {
    Cordon__V1__DeleteRequest q = CORDON__V1__DELETE_REQUEST__INIT;
    q.id = (char *)id;
    _cleanup_err_ cdn_err *err = NULL;
    ProtobufCMessage *m = NULL;
    ASSERT_OK(cdn_client_call(c, "Delete", &q.base, &cordon__v1__delete_response__descriptor, &m,
                              120000, &err),
              err);
    protobuf_c_message_free_unpacked(m, NULL);
}
