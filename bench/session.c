/* SPDX-License-Identifier: Apache-2.0 */
/* bench/session: what a session's pause costs, through cordond (minimal image, medians of RUNS):
 *   pause in memory (its result taken, the VM suspended), resume to its next exec;
 *   pause to disk (memory saved, the domain ended), resume from disk to its next exec;
 *   reset to its next exec (a fresh VM at the base commit);
 * each against the baseline in the same run: a new sandbox through the same cordond, create to
 * its first exec (what a client would do instead of keeping a session). Writes
 * bench/results/session.json. */
#include <jansson.h>
#include <stdlib.h>
#include <unistd.h>

#include "api_client.h"
#include "bench.h"
#include "cleanup.h"
#include "cordon.pb-c.h"
#include "cordond.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

#define RUNS 5

static const char allow_all[] = "version: 1\ncommands:\n  default: allow\n";

/* A sandbox (a session with persist): its id; *first_ms from the create to its first exec. */
static void create(struct cdn_client *c, bool persist, char id[17], double *first_ms) {
    Cordon__V1__CreateSandboxRequest q = CORDON__V1__CREATE_SANDBOX_REQUEST__INIT;
    q.policy_case = CORDON__V1__CREATE_SANDBOX_REQUEST__POLICY_POLICY_TEXT;
    q.policy_text = (char *)allow_all;
    q.persist = persist;
    *first_ms = th_bench_start(c, &q.base, id);
}

/* One of the session RPCs on id (Pause, with to_disk; Resume; Reset): its ms. */
static double call(struct cdn_client *c, const char *method, const char *id, bool to_disk) {
    Cordon__V1__PauseRequest p = CORDON__V1__PAUSE_REQUEST__INIT;
    Cordon__V1__ResumeRequest r = CORDON__V1__RESUME_REQUEST__INIT; /* Reset's is the same */
    p.id = r.id = (char *)id;
    p.to_disk = to_disk;
    _cleanup_err_ cdn_err *err = NULL;
    ProtobufCMessage *m = NULL;
    double t0 = th_now_s();
    ASSERT_OK(cdn_client_call(c, method, strcmp(method, "Pause") == 0 ? &p.base : &r.base,
                              &cordon__v1__sandbox__descriptor, &m, 300000, &err),
              err);
    protobuf_c_message_free_unpacked(m, NULL);
    return (th_now_s() - t0) * 1e3;
}

static json_t *row(double cordon, double baseline, const char *means) {
    return json_pack("{s:s, s:f, s:f, s:f, s:s}", "unit", "ms", "cordon", cordon, "baseline",
                     baseline, "ratio", cordon / baseline, "ratio_means", means);
}

int main(void) {
    _cleanup_free_ char *dir = th_tmpdir();
    char daemons[4300], sock[4300], addr[4400];
    snprintf(daemons, sizeof(daemons), "%s/run", dir);
    th_host_hold(daemons);
    snprintf(sock, sizeof(sock), "%s/cordond.sock", dir);
    snprintf(addr, sizeof(addr), "unix:%s", sock);
    pid_t daemon =
        th_cordond_start(dir, sock, "auto", (const char *[]){"--max-running", "2", NULL});
    _cleanup_err_ cdn_err *err = NULL;
    struct cdn_client *c = NULL;
    ASSERT_OK(cdn_client_open(&(struct cdn_client_opts){.addr = addr}, &c, &err), err);
    double cold[RUNS], pause_mem[RUNS], resume_mem[RUNS], pause_disk[RUNS], resume_disk[RUNS],
        reset[RUNS];
    char id[17], fresh[17];
    double ignored;
    create(c, true, id, &ignored);
    for (int i = 0; i < RUNS; i++) {
        create(c, false, fresh, &cold[i]);
        th_bench_delete(c, fresh);
        pause_mem[i] = call(c, "Pause", id, false);
        double t0 = th_now_s();
        call(c, "Resume", id, false);
        th_bench_exec_true(c, id, 180000);
        resume_mem[i] = (th_now_s() - t0) * 1e3;
        pause_disk[i] = call(c, "Pause", id, true);
        t0 = th_now_s();
        call(c, "Resume", id, false);
        th_bench_exec_true(c, id, 180000);
        resume_disk[i] = (th_now_s() - t0) * 1e3;
        t0 = th_now_s();
        call(c, "Reset", id, false);
        th_bench_exec_true(c, id, 180000);
        reset[i] = (th_now_s() - t0) * 1e3;
    }
    th_bench_delete(c, id);
    cdn_client_free(c);
    th_cordond_stop(daemon);
    double cl = th_median(cold, RUNS), pm = th_median(pause_mem, RUNS),
           rm = th_median(resume_mem, RUNS), pd = th_median(pause_disk, RUNS),
           rd = th_median(resume_disk, RUNS), rs = th_median(reset, RUNS);
    printf("session benchmark: medians of %d, minimal image, through cordond\n", RUNS);
    printf("  a new sandbox, create to first exec   %7.1f ms (the baseline)\n", cl);
    printf("  pause in memory %7.1f ms; resume to next exec %7.1f ms (%.2fx)\n", pm, rm, rm / cl);
    printf("  pause to disk   %7.1f ms; resume to next exec %7.1f ms (%.2fx)\n", pd, rd, rd / cl);
    printf("  reset to next exec %7.1f ms (%.2fx)\n", rs, rs / cl);
    json_t *root = json_pack(
        "{s:s, s:i, s:{s:o, s:o, s:o, s:o, s:o}}", "benchmark", "session", "runs", RUNS, "results",
        "resume_memory",
        row(rm, cl,
            "a session paused in memory, Resume to its next exec / a new sandbox's create "
            "to its first exec; lower is better"),
        "resume_disk",
        row(rd, cl,
            "a session saved to disk, Resume (libvirt restore) to its next exec / a new "
            "sandbox's create to its first exec; lower is better"),
        "pause_memory",
        row(pm, cl, "Pause (result taken, VM suspended) / a new sandbox's create to first exec"),
        "pause_disk",
        row(pd, cl,
            "Pause with to_disk (memory saved, domain ended) / a new sandbox's create to "
            "first exec"),
        "reset",
        row(rs, cl,
            "Reset (fresh VM at the base commit) to its next exec / a new sandbox's "
            "create to first exec"));
    th_bench_finish(root, "session", dir);
    return 0;
}
