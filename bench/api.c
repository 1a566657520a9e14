/* SPDX-License-Identifier: Apache-2.0 */
/* bench/api: what cordond's API adds to a command's round trip. In one process run:
 *   (a) Exec `true` through cordond: a gRPC call on its unix socket, the policy's decision, the
 *       scheduler's job, the store's command record, the evidence log, the stream back;
 *   (b) the baseline: exec `true` directly over the agent channel of a VM booted the same way
 *       (same image, accelerator and transport) by a task session in this process.
 * Both VMs run at once and the batches alternate, so both figures see the same host load; each
 * is a median over RUNS batches of BATCH calls. Goal: (a) <= 1.3x (b).
 * Writes bench/results/api.json. */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api_client.h"
#include "channel.h"
#include "bench.h"
#include "cleanup.h"
#include "cordond.h"
#include "harness.h"
#include "qemu.h"
#include "task.h"
#include "test.h"
#include "vmhost.h"

#define RUNS 15
#define BATCH 10
#define GOAL 1.3

/* Everything allowed: the figure is the API's cost, not a person's. */
static const char allow_all[] = "version: 1\ncommands:\n  default: allow\n";

static struct cdn_session *direct_open(const char *dir, const char *accel) {
    char state[4300];
    snprintf(state, sizeof(state), "%s/direct", dir);
    /* the session keeps pointing at its spec (and its strings) until it closes */
    static char state_kept[4300];
    static struct cdn_task_spec spec;
    snprintf(state_kept, sizeof(state_kept), "%s", state);
    spec = (struct cdn_task_spec){.state_dir = state_kept,
                                  .images_dir = th_images_dir(),
                                  .image = "minimal",
                                  .accel = accel,
                                  .boot_timeout_ms = 120000};
    _cleanup_err_ cdn_err *err = NULL;
    struct cdn_session *s = NULL;
    ASSERT_OK(cdn_session_open(&spec, NULL, &s, &err), err);
    ASSERT_OK(cdn_session_boot(s, &err), err);
    return s;
}

/* One batch directly over the session's agent channel: ms per exec. */
static double direct_batch_ms(struct cdn_session *s) {
    static const char *const argv[] = {"true"};
    struct cdn_exec_spec x = {.argv = argv, .argc = 1};
    _cleanup_err_ cdn_err *err = NULL;
    double t0 = th_now_s();
    for (int k = 0; k < BATCH; k++) {
        struct cdn_exec_result r;
        ASSERT_OK(cdn_channel_exec(cdn_session_channel(s), &x, NULL, NULL, 10000, &r, &err), err);
        ASSERT_EQ(r.exit_code, 0);
    }
    return (th_now_s() - t0) / BATCH * 1e3;
}

static int count_exit(void *ud, const ProtobufCMessage *msg) {
    const Cordon__V1__ExecEvent *ev = (const Cordon__V1__ExecEvent *)msg;
    if (ev->event_case == CORDON__V1__EXEC_EVENT__EVENT_EXIT && ev->exit->exit_code == 0)
        ++*(int *)ud;
    return 0;
}

struct api {
    pid_t daemon;
    struct cdn_client *c;
    char id[64];
    Cordon__V1__ExecRequest x;
    char *argv[1];
    int ok;
};

/* cordond with one sandbox, booted (its first Exec waits for the boot). */
static void api_open(struct api *a, const char *dir, const char *accel) {
    char sock[4300], addr[4400];
    snprintf(sock, sizeof(sock), "%s/cordond.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    a->daemon = th_cordond_start(dir, sock, accel, (const char *[]){"--max-running", "1", NULL});
    _cleanup_err_ cdn_err *err = NULL;
    ASSERT_OK(cdn_client_open(&(struct cdn_client_opts){.addr = addr}, &a->c, &err), err);
    Cordon__V1__CreateSandboxRequest q = CORDON__V1__CREATE_SANDBOX_REQUEST__INIT;
    q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
    q.policy_text = (char *)allow_all;
    q.image = (char *)"minimal";
    ProtobufCMessage *m = NULL;
    ASSERT_OK(cdn_client_call(a->c, "CreateSandbox", &q.base, &cordon__v1__sandbox__descriptor, &m,
                              30000, &err),
              err);
    snprintf(a->id, sizeof(a->id), "%s", ((Cordon__V1__Sandbox *)m)->id);
    protobuf_c_message_free_unpacked(m, NULL);
    cordon__v1__exec_request__init(&a->x);
    a->argv[0] = (char *)"true";
    a->x.sandbox_id = a->id;
    a->x.argv = a->argv;
    a->x.n_argv = 1;
    ASSERT_OK(cdn_client_stream(a->c, "Exec", &a->x.base, &cordon__v1__exec_event__descriptor,
                                count_exit, &a->ok, NULL, 180000, &err),
              err);
}

static double api_batch_ms(struct api *a) {
    _cleanup_err_ cdn_err *err = NULL;
    double t0 = th_now_s();
    for (int k = 0; k < BATCH; k++)
        ASSERT_OK(cdn_client_stream(a->c, "Exec", &a->x.base, &cordon__v1__exec_event__descriptor,
                                    count_exit, &a->ok, NULL, 10000, &err),
                  err);
    return (th_now_s() - t0) / BATCH * 1e3;
}

static void api_close(struct api *a) {
    ASSERT_EQ(a->ok, 1 + RUNS * BATCH);
    th_bench_delete(a->c, a->id);
    cdn_client_free(a->c);
    th_cordond_stop(a->daemon);
}

int main(void) {
    const char *accel = "auto";
    _cleanup_free_ char *dir = th_tmpdir();
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", dir);
    th_host_hold(daemons);
    /* both VMs up at once, batches taken in turn: the same host load for both figures */
    struct cdn_session *s = direct_open(dir, accel);
    struct api a = {0};
    api_open(&a, dir, accel);
    double vd[RUNS], va[RUNS];
    for (int i = 0; i < RUNS; i++) {
        vd[i] = direct_batch_ms(s);
        va[i] = api_batch_ms(&a);
    }
    api_close(&a);
    cdn_session_close(s, NULL, NULL);
    double direct = th_median(vd, RUNS), api = th_median(va, RUNS);
    printf("api benchmark: medians of %d batches of %d, minimal image, accel %s\n", RUNS, BATCH,
           accel);
    printf("  exec `true` through cordond %8.2f ms   over the channel %8.2f ms   (%.2fx, goal "
           "<= %.1fx)\n",
           api, direct, api / direct, GOAL);
    json_t *root =
        json_pack("{s:s, s:i, s:i, s:f, s:{s:{s:s, s:f, s:f, s:f}}}", "benchmark", "api", "runs",
                  RUNS, "batch", BATCH, "goal_ratio", GOAL, "results", "exec_true", "unit", "ms",
                  "cordon", api, "baseline", direct, "ratio", api / direct);
    th_bench_finish(root, "api", dir);
    return 0;
}
