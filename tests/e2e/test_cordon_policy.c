/* SPDX-License-Identifier: Apache-2.0 */
/* `cordon run --policy` with real VMs: a denied command is refused before any VM exists; an
 * approved one runs once a person approves it from another process; each shipped policy runs a
 * task it allows; a devbox task writing past disk_mib is stopped. Four boots. */
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "harness.h"
#include "qemu.h"
#include "test.h"
#include "cordon_cli.h"
#include "vmhost.h"

TEST_T(policies_gate_commands_before_they_reach_the_guest, 300) {
    _cleanup_free_ char *state = th_tmpdir();
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/daemons", state);
    struct cdn_vm_host *host = th_host_hold(daemons);
    const char *img = th_images_dir();

    /* Denied: exit 126, the rule named, and no VM ever existed for it. */
    pid_t pid =
        th_cordon_spawn("run", state, "deny",
                        (const char *[]){"--policy", "policies/ci-tests.yaml", "--json", "--", "sh",
                                         "-c", "echo start && curl http://127.0.0.1/", NULL});
    ASSERT_EQ(th_cordon_wait(pid), 126);
    _cleanup_free_ char *deny_out = th_cordon_output(state, "deny", "out");
    json_t *j = json_loads(deny_out, 0, NULL);
    ASSERT_TRUE(j);
    ASSERT_CONTAINS(json_string_value(json_object_get(j, "error")),
                    "refused by the policy: `curl http://127.0.0.1/` (commands.rules[2]");
    char manifest[4400];
    snprintf(manifest, sizeof(manifest), "%s/tasks/%s/evidence/manifest.json", state,
             json_string_value(json_object_get(j, "task")));
    json_decref(j);
    json_t *m = json_load_file(manifest, 0, NULL);
    ASSERT_TRUE(m);
    ASSERT_EQ(json_array_size(json_object_get(m, "commands")), 0); /* never sent to an agent */
    ASSERT_TRUE(!json_object_get(m, "accel"));                     /* no VM was prepared */
    json_t *dec = json_array_get(json_object_get(m, "decisions"), 0);
    ASSERT_STREQ(json_string_value(json_object_get(dec, "decision")), "deny");
    json_decref(m);

    /* Without a terminal and with a pre-approval list that does not name it: fails closed. */
    char pre[4400];
    snprintf(pre, sizeof(pre), "%s/pre-approved", state);
    th_write_file(pre, "# reviewed\nsh -c make check\n", 0644);
    pid = th_cordon_spawn("run", state, "pre",
                          (const char *[]){"--policy", "policies/ci-tests.yaml", "--pre-approved",
                                           pre, "--", "sh", "-c", "echo $(id)", NULL});
    ASSERT_EQ(th_cordon_wait(pid), 126);
    _cleanup_free_ char *pre_err = th_cordon_output(state, "pre", "err");
    ASSERT_CONTAINS(pre_err, "was not approved (expired by nobody");

    /* At a terminal (script(1) gives it one), the person answers: "n" denies, no VM boots. */
    const char *bin = th_cordon_bin();
    th_sh("printf 'n\\n' | script -qec \"%s run --state %s --images %s --policy "
          "policies/ci-tests.yaml -- sh -c 'echo \\$(id)'; echo exit=\\$?\" /dev/null "
          "> %s/tty.out 2>&1",
          bin, state, img, state);
    _cleanup_free_ char *tty_out = th_cordon_output(state, "tty", "out");
    ASSERT_CONTAINS(tty_out, "approve? [y/N]");
    ASSERT_CONTAINS(tty_out, "at the terminal");
    ASSERT_CONTAINS(tty_out, "exit=126");

    /* Approval from another process: the run waits, `cordon approve` releases it. */
    pid =
        th_cordon_spawn("run", state, "wait",
                        (const char *[]){"--policy", "policies/ci-tests.yaml", "--approval-wait",
                                         "120", "--", "sh", "-c", "echo ran $(echo inside)", NULL});
    char id[64] = "";
    uint64_t until = th_now_ms() + 30000;
    while (!id[0] && th_now_ms() < until) {
        usleep(100000);
        pid_t lp = th_cordon_spawn("approvals", state, "list", (const char *[]){"--json", NULL});
        ASSERT_EQ(th_cordon_wait(lp), 0);
        _cleanup_free_ char *l = th_cordon_output(state, "list", "out");
        json_t *a = json_loads(l, 0, NULL);
        if (a && json_array_size(a))
            snprintf(id, sizeof(id), "%s",
                     json_string_value(json_object_get(json_array_get(a, 0), "id")));
        json_decref(a);
    }
    ASSERT_TRUE(id[0]);
    pid_t ap = th_cordon_spawn("approve", state, "approve", (const char *[]){id, NULL});
    ASSERT_EQ(th_cordon_wait(ap), 0);
    ASSERT_EQ(th_cordon_wait(pid), 0);
    _cleanup_free_ char *wait_out = th_cordon_output(state, "wait", "out");
    ASSERT_STREQ(wait_out, "ran inside\n");
    _cleanup_free_ char *wait_err = th_cordon_output(state, "wait", "err");
    ASSERT_CONTAINS(wait_err, "approval needed");

    /* Each shipped policy runs a task it allows, and holds its limits. */
    struct {
        const char *policy, *cmd, *want;
    } runs[] = {{"policies/default-deny.yaml", "echo hello", "hello\n"},
                {"policies/web-dev.yaml", "ls /sys/devices/system/cpu", "cpu1"}}; /* 2 vCPUs */
    for (size_t i = 0; i < 2; i++) {
        pid = th_cordon_spawn(
            "run", state, "ship",
            (const char *[]){"--policy", runs[i].policy, "--", "sh", "-c", runs[i].cmd, NULL});
        int code = th_cordon_wait(pid);
        _cleanup_free_ char *o = th_cordon_output(state, "ship", "out");
        _cleanup_free_ char *e = th_cordon_output(state, "ship", "err");
        if (code != 0)
            FAIL("%s: exit %d: %s", runs[i].policy, code, e);
        ASSERT_CONTAINS(o, runs[i].want);
    }
    /* The disk limit: a devbox task writing past disk_mib is stopped, the limit recorded. */
    char disk_policy[4400];
    snprintf(disk_policy, sizeof(disk_policy), "%s/disk.yaml", state);
    th_write_file(disk_policy, "version: 1\ncommands:\n  default: allow\nlimits:\n  disk_mib: 64\n",
                  0644);
    pid = th_cordon_spawn(
        "run", state, "disk",
        (const char *[]){"--image", "devbox", "--policy", disk_policy, "--json", "--", "sh", "-c",
                         "dd if=/dev/urandom of=/root/big bs=1M count=300; sync; sleep 5", NULL});
    ASSERT_EQ(th_cordon_wait(pid), 125);
    _cleanup_free_ char *disk_out = th_cordon_output(state, "disk", "out");
    ASSERT_CONTAINS(disk_out, "past the policy's 64.0 MiB");
    th_sh("grep -q '\"limits.disk_mib\"' %s/tasks/*/evidence/manifest.json", state);
    th_sh("test -z \"$(find %s/tasks -name disk.qcow2)\"", state);

    /* and a limit above the policy's is refused before anything runs (the sandbox is not
     * created: exit 125, as any request the daemon cannot take) */
    pid = th_cordon_spawn("run", state, "big",
                          (const char *[]){"--policy", "policies/default-deny.yaml", "--memory",
                                           "4096", "--", "true", NULL});
    ASSERT_EQ(th_cordon_wait(pid), 125);
    _cleanup_free_ char *big = th_cordon_output(state, "big", "err");
    ASSERT_CONTAINS(big, "memory_mib 4096 is over the policy's limit of 512");

    th_assert_no_cordon_domains(host);
    th_host_release();
    th_rmtree(state);
}
