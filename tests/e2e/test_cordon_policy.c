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
#include "vmhost.h"

static pid_t spawn(const char *state, const char *tag, const char *const *args) {
    char bin[4200], out[4300], errp[4300];
    snprintf(bin, sizeof(bin), "%s", th_agent_path());
    snprintf(strrchr(bin, '/') + 1, 64, "cordon");
    snprintf(out, sizeof(out), "%s/%s.out", state, tag);
    snprintf(errp, sizeof(errp), "%s/%s.err", state, tag);
    pid_t pid = fork();
    if (pid == 0) {
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int n = open("/dev/null", O_RDONLY | O_CLOEXEC); /* no terminal: nobody to ask here */
        dup2(n, 0);
        dup2(o, 1);
        dup2(e, 2);
        const char *argv[40] = {bin};
        size_t k = 1;
        for (size_t i = 0; args[i] && k < 39; i++)
            argv[k++] = args[i];
        argv[k] = NULL;
        execv(bin, (char **)argv);
        _exit(127);
    }
    return pid;
}

static int finish(pid_t pid) {
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static char *output(const char *state, const char *tag, const char *ext) {
    char p[4300];
    snprintf(p, sizeof(p), "%s/%s.%s", state, tag, ext);
    return th_read_file(p);
}

TEST_T(policies_gate_commands_before_they_reach_the_guest, 300) {
    _cleanup_free_ char *state = th_tmpdir();
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/daemons", state);
    struct cdn_vm_host *host = th_host_hold(daemons);
    const char *img = th_images_dir();

    /* Denied: exit 126, the rule named, and no VM ever existed for it. */
    pid_t pid = spawn(state, "deny",
                      (const char *[]){"run", "--state", state, "--images", img, "--policy",
                                       "policies/ci-tests.yaml", "--json", "--", "sh", "-c",
                                       "echo start && curl http://127.0.0.1/", NULL});
    ASSERT_EQ(finish(pid), 126);
    _cleanup_free_ char *deny_out = output(state, "deny", "out");
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
    pid = spawn(state, "pre",
                (const char *[]){"run", "--state", state, "--images", img, "--policy",
                                 "policies/ci-tests.yaml", "--pre-approved", pre, "--", "sh", "-c",
                                 "echo $(id)", NULL});
    ASSERT_EQ(finish(pid), 126);
    _cleanup_free_ char *pre_err = output(state, "pre", "err");
    ASSERT_CONTAINS(pre_err, "was not approved (expired by nobody");

    /* At a terminal (script(1) gives it one), the person answers: "n" denies, no VM boots. */
    char bin[4200];
    snprintf(bin, sizeof(bin), "%s", th_agent_path());
    snprintf(strrchr(bin, '/') + 1, 64, "cordon");
    th_sh("printf 'n\\n' | script -qec \"%s run --state %s --images %s --policy "
          "policies/ci-tests.yaml -- sh -c 'echo \\$(id)'; echo exit=\\$?\" /dev/null "
          "> %s/tty.out 2>&1",
          bin, state, img, state);
    _cleanup_free_ char *tty_out = output(state, "tty", "out");
    ASSERT_CONTAINS(tty_out, "approve? [y/N]");
    ASSERT_CONTAINS(tty_out, "at the terminal");
    ASSERT_CONTAINS(tty_out, "exit=126");

    /* Approval from another process: the run waits, `cordon approve` releases it. */
    pid = spawn(state, "wait",
                (const char *[]){"run", "--state", state, "--images", img, "--policy",
                                 "policies/ci-tests.yaml", "--approval-wait", "120", "--", "sh",
                                 "-c", "echo ran $(echo inside)", NULL});
    char id[64] = "";
    uint64_t until = th_now_ms() + 30000;
    while (!id[0] && th_now_ms() < until) {
        usleep(100000);
        pid_t lp =
            spawn(state, "list", (const char *[]){"approvals", "--state", state, "--json", NULL});
        ASSERT_EQ(finish(lp), 0);
        _cleanup_free_ char *l = output(state, "list", "out");
        json_t *a = json_loads(l, 0, NULL);
        if (a && json_array_size(a))
            snprintf(id, sizeof(id), "%s",
                     json_string_value(json_object_get(json_array_get(a, 0), "id")));
        json_decref(a);
    }
    ASSERT_TRUE(id[0]);
    pid_t ap = spawn(state, "approve", (const char *[]){"approve", "--state", state, id, NULL});
    ASSERT_EQ(finish(ap), 0);
    ASSERT_EQ(finish(pid), 0);
    _cleanup_free_ char *wait_out = output(state, "wait", "out");
    ASSERT_STREQ(wait_out, "ran inside\n");
    _cleanup_free_ char *wait_err = output(state, "wait", "err");
    ASSERT_CONTAINS(wait_err, "approval needed");

    /* Each shipped policy runs a task it allows, and holds its limits. */
    struct {
        const char *policy, *cmd, *want;
    } runs[] = {{"policies/default-deny.yaml", "echo hello", "hello\n"},
                {"policies/web-dev.yaml", "ls /sys/devices/system/cpu", "cpu1"}}; /* 2 vCPUs */
    for (size_t i = 0; i < 2; i++) {
        pid = spawn(state, "ship",
                    (const char *[]){"run", "--state", state, "--images", img, "--policy",
                                     runs[i].policy, "--", "sh", "-c", runs[i].cmd, NULL});
        int code = finish(pid);
        _cleanup_free_ char *o = output(state, "ship", "out");
        _cleanup_free_ char *e = output(state, "ship", "err");
        if (code != 0)
            FAIL("%s: exit %d: %s", runs[i].policy, code, e);
        ASSERT_CONTAINS(o, runs[i].want);
    }
    /* The disk limit: a devbox task writing past disk_mib is stopped, the limit recorded. */
    char disk_policy[4400];
    snprintf(disk_policy, sizeof(disk_policy), "%s/disk.yaml", state);
    th_write_file(disk_policy, "version: 1\ncommands:\n  default: allow\nlimits:\n  disk_mib: 64\n",
                  0644);
    pid = spawn(state, "disk",
                (const char *[]){"run", "--state", state, "--images", img, "--image", "devbox",
                                 "--policy", disk_policy, "--json", "--", "sh", "-c",
                                 "dd if=/dev/urandom of=/root/big bs=1M count=300; sync; sleep 5",
                                 NULL});
    ASSERT_EQ(finish(pid), 125);
    _cleanup_free_ char *disk_out = output(state, "disk", "out");
    ASSERT_CONTAINS(disk_out, "past the policy's 64.0 MiB");
    th_sh("grep -q '\"limits.disk_mib\"' %s/tasks/*/evidence/manifest.json", state);
    th_sh("test -z \"$(find %s/tasks -name disk.qcow2)\"", state);

    /* and a limit above the policy's is refused before anything runs */
    pid = spawn(state, "big",
                (const char *[]){"run", "--state", state, "--images", img, "--policy",
                                 "policies/default-deny.yaml", "--memory", "4096", "--", "true",
                                 NULL});
    ASSERT_EQ(finish(pid), 126);
    _cleanup_free_ char *big = output(state, "big", "err");
    ASSERT_CONTAINS(big, "--memory 4096 is over the policy's limit of 512");

    th_assert_no_cordon_domains(host);
    th_host_release();
    th_rmtree(state);
}
