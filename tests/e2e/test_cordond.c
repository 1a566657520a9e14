/* SPDX-License-Identifier: Apache-2.0 */
/* cordond end to end, driven by a client cordon did not write (Python's grpcio, stubs generated
 * from proto/cordon.proto here): a sandbox on a real repository through every RPC, another
 * tenant (uid 65534) shut out, every error code, 200 concurrent Exec streams across 10
 * sandboxes with the daemon's memory bounded, and kill -9 with a restart; then the cordon CLI
 * as a client of it, on the unix socket and over TCP with mutual TLS (certificates made here
 * with openssl). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cleanup.h"
#include "cordon_cli.h"
#include "cordond.h"
#include "harness.h"
#include "host2.h"
#include "httpd.h"
#include "test.h"
#include "vmhost.h"

struct env {
    char *dir;
    char state[4200], sock[4200], addr[4300], repo[4200], stubs[4200], script[4200], conf[4300];
    pid_t daemon;
    struct cdn_vm_host *host;
    const char *extra[12]; /* more of cordond's flags */
};

static void setup(struct env *e) {
    e->dir = th_tmpdir();
    chmod(e->dir, 0755); /* the other tenant's client reads the stubs */
    snprintf(e->state, sizeof(e->state), "%s/state", e->dir);
    snprintf(e->sock, sizeof(e->sock), "%s/cordond.sock", e->dir);
    snprintf(e->addr, sizeof(e->addr), "unix:%s", e->sock);
    snprintf(e->repo, sizeof(e->repo), "%s/repo", e->dir);
    snprintf(e->stubs, sizeof(e->stubs), "%s/stubs", e->dir);
    char root[4096];
    if (!getcwd(root, sizeof(root)))
        FAIL("getcwd");
    snprintf(e->script, sizeof(e->script), "%s/tests/e2e/api_client.py", root);
    th_sh("mkdir -p %s && /usr/bin/python3 -m grpc_tools.protoc -I%s/proto --python_out=%s "
          "--grpc_python_out=%s %s/proto/cordon.proto && chmod -R a+rX %s",
          e->stubs, root, e->stubs, e->stubs, root, e->stubs);
    setenv("CORDON_PY_STUBS", e->stubs, 1);
    th_sh("git init -q -b main %s && cd %s && printf 'one\\ntwo\\n' > README && git add . && "
          "git -c user.name=t -c user.email=t@t commit -qm init",
          e->repo, e->repo);
}

static void daemon_start(struct env *e, const char *max_running) {
    char bin[4200];
    snprintf(bin, sizeof(bin), "%s", th_cordon_bin());
    strcat(bin, "d"); /* cordond, next to cordon */
    char log[4300];
    snprintf(log, sizeof(log), "%s/cordond.log", e->dir);
    e->daemon = fork();
    if (e->daemon == 0) {
        /* ASan's quarantine (256 MiB by default) would hide what cordond itself holds. */
        const char *asan = getenv("ASAN_OPTIONS");
        if (asan) {
            char opts[1024];
            snprintf(opts, sizeof(opts), "%s:quarantine_size_mb=16", asan);
            setenv("ASAN_OPTIONS", opts, 1);
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        const char *argv[32] = {
            bin,        "--socket", e->sock,    "--socket-mode",         "0666",
            "--state",  e->state,   "--images", getenv("CORDON_IMAGES"), "--policies",
            "policies", "--accel",  "tcg",      "--max-running",         max_running};
        for (size_t i = 0, n = 15; e->extra[i] && n < 31; i++)
            argv[n++] = e->extra[i];
        execv(bin, (char **)argv);
        _exit(127);
    }
    for (int i = 0; i < 600 && !th_unix_answers(e->sock); i++) {
        int status;
        if (waitpid(e->daemon, &status, WNOHANG) == e->daemon)
            FAIL("%s exited (status %d): %s", bin, status, th_read_file(log));
        usleep(50000);
    }
    if (!th_unix_answers(e->sock))
        FAIL("cordond does not answer on %s", e->sock);
}

/* SIGTERM: it stops its sandboxes and exits 0 (under ASan: without leaks). */
static void daemon_stop(struct env *e) {
    kill(e->daemon, SIGTERM);
    int status = -1;
    for (int i = 0; i < 1200 && waitpid(e->daemon, &status, WNOHANG) == 0; i++)
        usleep(50000);
    char log[4300];
    snprintf(log, sizeof(log), "%s/cordond.log", e->dir);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        FAIL("cordond did not stop cleanly (status %d): %s", status, th_read_file(log));
}

/* Runs a scenario of api_client.py (as uid when not 0); its lines go to the test's log. */
static int py(struct env *e, unsigned uid, const char *const *args) {
    pid_t pid = fork();
    if (pid == 0) {
        if (uid && (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0))
            _exit(126);
        const char *argv[16] = {"/usr/bin/python3", e->script};
        for (size_t i = 0; args[i] && i < 12; i++)
            argv[2 + i] = args[i];
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    fflush(stdout);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

/* A repository, stubs, libvirt's daemons of its own and cordond with max_running VMs. */
static void env_open(struct env *e, const char *max_running) {
    setup(e);
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e->dir);
    e->host = th_host_hold(daemons);
    daemon_start(e, max_running);
}

/* The same with cordond's configuration file holding yaml. */
static void env_open_config(struct env *e, const char *max_running, const char *yaml) {
    if (!e->dir)
        setup(e);
    snprintf(e->conf, sizeof(e->conf), "%s/cordond.yaml", e->dir);
    th_write_file(e->conf, yaml, 0644);
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e->dir);
    e->host = th_host_hold(daemons);
    e->extra[0] = "--config";
    e->extra[1] = e->conf;
    daemon_start(e, max_running);
}

static void env_close(struct env *e) {
    daemon_stop(e);
    th_assert_no_cordon_domains(e->host);
    th_host_release(); /* before its pid files go with the folder, or its daemons would stay */
    th_rmtree(e->dir);
    free(e->dir);
}

TEST_T(a_python_grpc_client_drives_sandboxes_and_tenants_are_kept_apart, 600) {
    struct env e = {0};
    env_open(&e, "4");
    char idf[4300];
    snprintf(idf, sizeof(idf), "%s/id", e.dir);
    ASSERT_EQ(py(&e, 0, (const char *[]){"interop", e.sock, e.repo, idf, NULL}), 0);
    _cleanup_free_ char *id = th_read_file(idf);
    ASSERT_EQ(strlen(id), 16);
    ASSERT_EQ(py(&e, 65534, (const char *[]){"other-tenant", e.sock, id, NULL}), 0);
    ASSERT_EQ(py(&e, 0, (const char *[]){"delete", e.sock, id, NULL}), 0);
    ASSERT_EQ(py(&e, 0, (const char *[]){"errors", e.sock, NULL}), 0);
    env_close(&e);
}

TEST_T(two_hundred_concurrent_exec_streams_keep_the_daemon_small, 600) {
    struct env e = {0};
    env_open(&e, "10");
    long before = th_proc_status_kib(e.daemon, "VmHWM");
    ASSERT_EQ(py(&e, 0, (const char *[]){"concurrency", e.sock, "10", "200", NULL}), 0);
    long peak = th_proc_status_kib(e.daemon, "VmHWM");
    printf("  cordond peak RSS %ld KiB (%ld KiB at start) over 200 streams\n", peak, before);
    /* 200 streams of ~20 KB each, 10 VMs' channels: well under 192 MiB more, sanitizers on. */
    ASSERT_LE(peak - before, 192 * 1024);
    env_close(&e);
}

TEST_T(kill_9_and_a_restart_lose_nothing_acknowledged, 600) {
    struct env e = {0};
    env_open(&e, "1");
    char idf[4300];
    snprintf(idf, sizeof(idf), "%s/ids", e.dir);
    ASSERT_EQ(py(&e, 0, (const char *[]){"restart-before", e.sock, idf, NULL}), 0);
    _cleanup_free_ char *ids = th_read_file(idf);
    char a[17], b[17];
    ASSERT_EQ(sscanf(ids, "%16s %16s", a, b), 2);
    kill(e.daemon, SIGKILL);
    waitpid(e.daemon, NULL, 0);
    daemon_start(&e, "1");
    ASSERT_EQ(py(&e, 0, (const char *[]){"restart-after", e.sock, a, b, NULL}), 0);
    env_close(&e);
}

/* `cordon batch`: killed -9 with two results written, run again: every task has one result, the
 * ones that were running are recorded as interrupted, and no task got a second sandbox. */
TEST_T(a_batch_resumes_after_kill_9_and_runs_no_task_twice, 600) {
    struct env e = {0};
    env_open(&e, "2");
    char pol[4300], tasks[4300], results[4300];
    snprintf(pol, sizeof(pol), "%s/all.yaml", e.dir);
    snprintf(tasks, sizeof(tasks), "%s/six.jsonl", e.dir);
    snprintf(results, sizeof(results), "%s/six.results.jsonl", e.dir);
    th_write_file(pol, "version: 1\ncommands: {default: allow, unanalysable: allow}\n", 0644);
    FILE *f = fopen(tasks, "w");
    ASSERT_TRUE(f != NULL);
    for (int i = 1; i <= 6; i++)
        fprintf(f, "{\"id\": \"k%d\", \"policy\": \"%s\", \"command\": \"echo k%d; sleep 2\"}\n", i,
                pol, i);
    fclose(f);
    pid_t b = th_cordon_spawn_at(e.addr, "batch", e.dir, "batch1",
                                 (const char *[]){"--parallel", "2", tasks, NULL});
    int lines = 0;
    for (int i = 0; i < 1200 && lines < 2; i++) {
        usleep(100000);
        _cleanup_free_ char *r = th_read_file(results);
        lines = 0;
        for (const char *p = r; p && (p = strchr(p, '\n')); p++)
            lines++;
    }
    ASSERT_EQ(lines, 2);
    kill(b, SIGKILL);
    th_cordon_wait(b);
    struct th_ran r = th_cordon_at(e.addr, "batch", e.dir, "batch2",
                                   (const char *[]){"--parallel", "2", tasks, NULL});
    printf("%s", r.err);
    ASSERT_CONTAINS(r.err, "2 of 6 tasks already have a result");
    th_ran_free(&r);
    /* one result per task, and one sandbox per task */
    _cleanup_free_ char *all = th_read_file(results);
    unsigned passed = 0, interrupted = 0;
    for (int i = 1; i <= 6; i++) {
        char needle[32];
        snprintf(needle, sizeof(needle), "\"id\":\"k%d\"", i);
        const char *at = strstr(all, needle);
        ASSERT_TRUE(at != NULL);
        ASSERT_TRUE(strstr(at + 1, needle) == NULL);
        const char *line = at;
        while (line > all && line[-1] != '\n')
            line--;
        passed += strncmp(strstr(line, "\"state\":"), "\"state\":\"passed\"", 16) == 0;
        interrupted += strncmp(strstr(line, "\"state\":"), "\"state\":\"interrupted\"", 21) == 0;
        char label[64];
        snprintf(label, sizeof(label), "cordon.batch.task=k%d", i);
        struct th_ran l = th_cordon_at(e.addr, "ls", e.dir, "ls",
                                       (const char *[]){"--label", label, "--json", NULL});
        json_t *arr = json_loads(l.out, 0, NULL);
        ASSERT_EQ(json_array_size(arr), 1u);
        json_decref(arr);
        th_ran_free(&l);
    }
    printf("  %u passed, %u interrupted by the kill\n", passed, interrupted);
    ASSERT_EQ(passed + interrupted, 6u);
    ASSERT_TRUE(passed >= 4);
    env_close(&e);
}

/* cordond's configuration: a mistake in hosts or tenants names FILE:LINE:COL and cordond exits 2
 * before it starts anything. */
TEST(a_bad_hosts_tenants_or_warm_setting_names_file_line_col) {
    _cleanup_free_ char *dir = th_tmpdir();
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {"hosts: qemu:///system\n", ":1:8: hosts is a list of 1 to 16 hosts"},
        {"hosts:\n  - {weight: 2}\n", ":2:5: this host has no uri"},
        {"hosts:\n  - {uri: a}\n  - {uri: b, wieght: 1}\n", ":3:14: unknown host setting 'wieght'"},
        {"hosts:\n  - {uri: a}\n  - {uri: a}\n", ":3:5: host a is listed twice"},
        {"tenants:\n  \"uid:0\": {max_running: -1}\n", ":2:26: max_running must be a number"},
        {"tenants:\n  alice: {burst: 3}\n", ":2:11: unknown tenant setting 'burst'"},
        {"warm_pool: {minimal: 1}\nwarm_clone: sometimes\n", ":2:13: warm_clone is auto or never"},
    };
    char bin[4200];
    snprintf(bin, sizeof(bin), "%sd", th_cordon_bin());
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char conf[4300], cmd[9000];
        snprintf(conf, sizeof(conf), "%s/c%zu.yaml", dir, i);
        th_write_file(conf, cases[i].yaml, 0644);
        snprintf(cmd, sizeof(cmd), "%s --config %s --socket %s/s.sock --state %s/state 2>&1", bin,
                 conf, dir, dir);
        FILE *p = popen(cmd, "r");
        char out[2048] = "";
        size_t n = fread(out, 1, sizeof(out) - 1, p);
        out[n] = '\0';
        int st = pclose(p);
        ASSERT_EQ(WEXITSTATUS(st), 2);
        ASSERT_CONTAINS(out, conf);
        ASSERT_CONTAINS(out, cases[i].want);
    }
    th_rmtree(dir);
}

/* Two tenants, two slots: A floods (its queue fills, the next create is refused with a retry
 * hint), B queues one; cordond is killed -9 and restarted: the queue resumes from the store, B's
 * sandbox gets a slot ahead of A's older queued ones (fair share), A's priority-5 sandbox ahead
 * of A's older ones, and A's oldest goes next when A's slot frees. No VMs: the sandboxes defer
 * their boot, holding slots like any other. */
TEST_T(tenants_share_slots_fairly_and_a_full_queue_says_when_to_retry, 300) {
    struct env e = {0};
    env_open_config(&e, "2", "tenants:\n  \"uid:0\": {max_queued: 4, weight: 1}\n");
    char shared[4300], idf[4400], oidf[4400];
    snprintf(shared, sizeof(shared), "%s/shared", e.dir);
    th_sh("mkdir -m 0777 %s", shared);
    snprintf(idf, sizeof(idf), "%s/a", shared);
    snprintf(oidf, sizeof(oidf), "%s/b", shared);
    ASSERT_EQ(py(&e, 0, (const char *[]){"flood", e.sock, idf, NULL}), 0);
    ASSERT_EQ(py(&e, 65534, (const char *[]){"one", e.sock, oidf, NULL}), 0);
    kill(e.daemon, SIGKILL);
    waitpid(e.daemon, NULL, 0);
    daemon_start(&e, "2");
    _cleanup_free_ char *ids = th_read_file(idf), *other = th_read_file(oidf);
    ASSERT_EQ(py(&e, 0, (const char *[]){"fair-after", e.sock, ids, NULL}), 0);
    ASSERT_EQ(py(&e, 65534, (const char *[]){"fair-other", e.sock, other, NULL}), 0);
    env_close(&e);
}

/* The warm pool: one minimal VM kept booted; a sandbox of the default shape takes it and the pool
 * boots a replacement; another shape boots cold; the used VM goes with its sandbox. */
TEST_T(the_warm_pool_clones_from_a_saved_template_hands_each_vm_out_once_and_refills, 300) {
    struct env e = {0};
    env_open_config(&e, "2", "warm_pool: {minimal: 1}\n");
    char log[4300];
    snprintf(log, sizeof(log), "%s/cordond.log", e.dir);
    ASSERT_EQ(py(&e, 0, (const char *[]){"warm", e.sock, log, NULL}), 0);
    /* Killed -9, its pool VM (a clone) stays: libvirt does not destroy a restored guest with
     * the connection. `cordon gc` finds it through its folders (the clone's names the template
     * whose domain it runs as). */
    kill(e.daemon, SIGKILL);
    waitpid(e.daemon, NULL, 0);
    char **names = NULL;
    size_t n = 0;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_vm_host_list(e.host, &names, &n, &err), err);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    ASSERT_EQ(n, 1);
    struct th_ran gc = th_cordon("gc", e.state, "gc", (const char *[]){NULL});
    ASSERT_EQ(gc.code, 0);
    th_ran_free(&gc);
    th_assert_no_cordon_domains(e.host);
    daemon_start(&e, "2");
    env_close(&e);
    /* The pool's VM holds the host's only room (a reserve larger than any host: 512 MiB left),
     * booted this time: a sandbox still starts, on it. */
    struct env t = {0};
    env_open_config(&t, "2",
                    "warm_pool: {minimal: 1}\nwarm_clone: never\nmemory_reserve_mib: 1000000\n");
    snprintf(log, sizeof(log), "%s/cordond.log", t.dir);
    ASSERT_EQ(py(&t, 0, (const char *[]){"warm-tight", t.sock, log, NULL}), 0);
    env_close(&t);
}

/* Two libvirt hosts on this machine through different URIs: the system daemon and one in a
 * mount namespace of its own reached over TCP. A batch spreads over both; the second stops
 * answering (its libvirtd, virtlogd and QEMUs frozen with SIGSTOP: nothing closes, only
 * libvirt's keepalive notices) while tasks run on it: cordond drains it, its sandboxes fail
 * marked retryable, and the batch runs those tasks again on the host that is left. Thawed, the
 * host is placed on again, its lost sandboxes' guests destroyed first. */
TEST_T(a_host_that_stops_answering_mid_batch_is_drained_and_its_tasks_run_again, 600) {
    struct env e = {0};
    setup(&e);
    char h2dir[4300], pol[4300], tasks[4300], results[4300];
    snprintf(h2dir, sizeof(h2dir), "%s/host2", e.dir);
    struct th_host2 h2;
    th_host2_start(&h2, h2dir);
    char text[9000];
    snprintf(text, sizeof(text),
             "hosts:\n  - {uri: \"qemu:///system\", weight: 1}\n  - {uri: \"%s\", weight: 1}\n"
             "host_check_seconds: 1\n",
             h2.uri);
    env_open_config(&e, "4", text);
    snprintf(pol, sizeof(pol), "%s/all.yaml", e.dir);
    snprintf(tasks, sizeof(tasks), "%s/spread.jsonl", e.dir);
    th_write_file(pol, "version: 1\ncommands: {default: allow, unanalysable: allow}\n", 0644);
    /* First both hosts serve: two tasks at once go one to each (the second's channel travels in
     * the libvirt connection: the host is reached over TCP). */
    char two[4300];
    snprintf(two, sizeof(two), "%s/two.jsonl", e.dir);
    FILE *f = fopen(two, "w");
    ASSERT_TRUE(f != NULL);
    fprintf(f, "{\"id\": \"a\", \"policy\": \"%s\", \"command\": \"echo on-a\"}\n", pol);
    fprintf(f, "{\"id\": \"b\", \"policy\": \"%s\", \"command\": \"echo on-b\"}\n", pol);
    fclose(f);
    struct th_ran r2 =
        th_cordon_at(e.addr, "batch", e.dir, "two", (const char *[]){"--parallel", "2", two, NULL});
    ASSERT_EQ(r2.code, 0);
    th_ran_free(&r2);
    snprintf(results, sizeof(results), "%s/two.results.jsonl", e.dir);
    _cleanup_free_ char *both = th_read_file(results);
    char on2[4400];
    snprintf(on2, sizeof(on2), "\"host\":\"%s\"", h2.uri);
    ASSERT_CONTAINS(both, on2);
    ASSERT_CONTAINS(both, "\"host\":\"qemu:///system\"");
    snprintf(results, sizeof(results), "%s/spread.results.jsonl", e.dir);
    f = fopen(tasks, "w");
    ASSERT_TRUE(f != NULL);
    for (int i = 1; i <= 4; i++)
        fprintf(f, "{\"id\": \"h%d\", \"policy\": \"%s\", \"command\": \"echo h%d; sleep 15\"}\n",
                i, pol, i);
    fclose(f);
    pid_t b = th_cordon_spawn_at(e.addr, "batch", e.dir, "batch",
                                 (const char *[]){"--parallel", "4", tasks, NULL});
    /* A guest of the second host's up, and given the time to boot and start its command. */
    int n = 0;
    for (int i = 0; i < 600 && (n = th_host2_guests(&h2)) < 1; i++)
        usleep(100000);
    ASSERT_TRUE(n >= 1);
    sleep(10);
    int frozen = th_host2_freeze(&h2);
    printf("  the second host stopped answering: %d processes frozen\n", frozen);
    int st = th_cordon_wait(b);
    _cleanup_free_ char *all = th_read_file(results);
    printf("%s", all);
    ASSERT_EQ(st, 0); /* every task passed in the end */
    ASSERT_CONTAINS(all, "\"retried\":[\"");
    ASSERT_CONTAINS(all, "stopped answering");
    char log[4300];
    snprintf(log, sizeof(log), "%s/cordond.log", e.dir);
    _cleanup_free_ char *dlog = th_read_file(log);
    ASSERT_CONTAINS(dlog, "stopped answering: drained");
    /* It answers again: cordond places on it again, and first destroys the guests its lost
     * sandboxes left there (their teardown could not reach it). */
    th_host2_thaw(&h2);
    char *back = NULL;
    for (int i = 0; i < 300 && !(back && strstr(back, "answers again")); i++) {
        free(back);
        usleep(100000);
        back = th_read_file(log);
    }
    ASSERT_CONTAINS(back, "answers again: placing sandboxes on it (");
    free(back);
    n = th_host2_guests(&h2);
    for (int i = 0; i < 100 && n > 0; i++, usleep(100000))
        n = th_host2_guests(&h2);
    ASSERT_EQ(n, 0);
    th_host2_kill(&h2);
    env_close(&e);
}

/* The sandbox's first entry of a `--json` array or the object itself, field k. */
static char *json_field(const char *text, const char *k) {
    json_error_t je;
    json_t *j = json_loads(text ? text : "", JSON_DECODE_ANY, &je);
    if (!j)
        FAIL("not JSON (%s): %s", je.text, text ? text : "(none)");
    json_t *o = json_is_array(j) ? json_array_get(j, 0) : j;
    json_t *v = json_object_get(o, k);
    char *s = json_is_string(v)    ? strdup(json_string_value(v))
              : json_is_integer(v) ? (asprintf(&s, "%lld", (long long)json_integer_value(v)), s)
                                   : NULL;
    json_decref(j);
    return s;
}

/* The first pending approval's id, waiting up to 60 s for one to appear. */
static char *pending_approval(struct env *e) {
    for (int i = 0; i < 600; i++) {
        struct th_ran r = th_cordon_at(e->addr, "approvals", e->dir, "approvals",
                                       (const char *[]){"--json", NULL});
        ASSERT_EQ(r.code, 0);
        char *id = strcmp(r.out, "[]\n") != 0 ? json_field(r.out, "id") : NULL;
        th_ran_free(&r);
        if (id)
            return id;
        usleep(100000);
    }
    FAIL("no approval appeared within 60 s");
}

/* `cordon SUB ARGS...` against the test's daemon, its outputs in e.dir/TAG.{out,err} */
#define CLI(tag, sub, ...)                                                                         \
    th_cordon_at(e.addr, sub, e.dir, tag, (const char *[]){__VA_ARGS__, NULL})

TEST_T(the_cordon_cli_is_a_client_of_cordond, 600) {
    struct env e = {0};
    env_open(&e, "2");
    struct th_ran r = CLI("create", "create", "--repo", e.repo, "--policy-name", "ci-tests",
                          "--label", "team=cli", "--wait", "--json");
    ASSERT_EQ(r.code, 0);
    _cleanup_free_ char *id = json_field(r.out, "id");
    _cleanup_free_ char *state = json_field(r.out, "state");
    ASSERT_STREQ(state, "ready");
    th_ran_free(&r);

    /* a command the policy sends to a person: the stream waits, `cordon approve` lets it go */
    pid_t x = th_cordon_spawn_at(
        e.addr, "exec", e.dir, "exec1",
        (const char *[]){id, "--", "sh", "-c", "echo hi; echo three >> README; exit 3", NULL});
    _cleanup_free_ char *ap = pending_approval(&e);
    r = CLI("approve", "approve", ap);
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "approved by uid:0");
    th_ran_free(&r);
    ASSERT_EQ(th_cordon_wait(x), 3);
    _cleanup_free_ char *out1 = th_cordon_output(e.dir, "exec1", "out");
    _cleanup_free_ char *err1 = th_cordon_output(e.dir, "exec1", "err");
    ASSERT_STREQ(out1, "hi\n");
    ASSERT_CONTAINS(err1, "approval needed");
    /* denied by a person: 126; refused by the policy itself: 126 at once */
    x = th_cordon_spawn_at(e.addr, "exec", e.dir, "exec2",
                           (const char *[]){id, "--", "sh", "-c", "exit 4", NULL});
    _cleanup_free_ char *ap2 = pending_approval(&e);
    r = CLI("deny", "deny", ap2);
    ASSERT_EQ(r.code, 0);
    th_ran_free(&r);
    ASSERT_EQ(th_cordon_wait(x), 126);
    r = CLI("sudo", "exec", id, "--", "sudo", "id");
    ASSERT_EQ(r.code, 126);
    ASSERT_CONTAINS(r.err, "PERMISSION_DENIED");
    th_ran_free(&r);

    /* files in and out; the diff computed on the host */
    char local[4300], back[4300];
    snprintf(local, sizeof(local), "%s/notes.txt", e.dir);
    snprintf(back, sizeof(back), "%s/back.txt", e.dir);
    th_write_file(local, "notes\n", 0644);
    char dst[100];
    snprintf(dst, sizeof(dst), "%s:docs/new/notes.txt", id); /* its folders made on the way */
    r = CLI("cp-in", "cp", local, dst);
    ASSERT_EQ(r.code, 0);
    th_ran_free(&r);
    r = CLI("cp-out", "cp", dst, back);
    ASSERT_EQ(r.code, 0);
    th_ran_free(&r);
    _cleanup_free_ char *got = th_read_file(back);
    ASSERT_STREQ(got, "notes\n");
    /* the folder it landed in, and the workspace's top: names, types, sizes */
    char folder[100];
    snprintf(folder, sizeof(folder), "%s:docs/new", id);
    r = CLI("ls-dir", "ls", folder);
    if (r.code != 0)
        FAIL("cordon ls %s: exit %d: %s", folder, r.code, r.err);
    ASSERT_CONTAINS(r.out, "file     0644             6  ");
    ASSERT_CONTAINS(r.out, "  notes.txt\n");
    th_ran_free(&r);
    snprintf(folder, sizeof(folder), "%s:", id);
    r = CLI("ls-top", "ls", "--json", "--max", "1", folder);
    if (r.code != 0)
        FAIL("cordon ls --max 1 %s: exit %d: %s", folder, r.code, r.err);
    ASSERT_CONTAINS(r.out, "\"path\":\"/workspace\"");
    ASSERT_CONTAINS(r.out, "\"truncated\":true");
    th_ran_free(&r);
    snprintf(folder, sizeof(folder), "%s:no/such", id);
    r = CLI("ls-none", "ls", folder);
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "/workspace/no/such");
    ASSERT_CONTAINS(r.err, "No such file or directory");
    th_ran_free(&r);
    r = CLI("diff", "diff", id);
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "+three");
    ASSERT_CONTAINS(r.out, "+++ b/docs/new/notes.txt");
    th_ran_free(&r);
    r = CLI("diffj", "diff", "--json", id);
    _cleanup_free_ char *files = json_field(r.out, "files_changed");
    ASSERT_STREQ(files, "2");
    th_ran_free(&r);

    /* what a reviewer and a scheduler look at */
    r = CLI("show", "show", "--json", id);
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "\"commands\"");
    ASSERT_CONTAINS(r.out, "\"team\":\"cli\"");
    th_ran_free(&r);
    r = CLI("ls", "ls", "--label", "team=cli", "--state", "ready");
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, id);
    th_ran_free(&r);
    r = CLI("ls2", "ls", "--json", "--label", "team=other");
    ASSERT_STREQ(r.out, "[]\n");
    th_ran_free(&r);
    r = CLI("events", "events", "--json", "--sandbox", id, "--after", "1", "--count", "2");
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "\"state\":\"ready\"");
    th_ran_free(&r);

    /* `cordon run` against this daemon: the same calls its own daemon gets (a sandbox booted for
     * the command, the approval decided by --approve-all, stopped with its result taken); its
     * change waits for a review here (its own daemon does not gate: its user reads the diff) */
    r = CLI("run", "run", "--json", "--repo", e.repo, "--policy", "policies/ci-tests.yaml",
            "--approve-all", "--kernel-arg", "quiet", "--", "sh", "-c",
            "echo four >> README; echo ran; exit 0");
    if (r.code != 0)
        FAIL("cordon run --addr: exit %d: %s %s", r.code, r.out, r.err);
    _cleanup_free_ char *run_out = json_field(r.out, "stdout");
    ASSERT_STREQ(run_out, "ran\n");
    ASSERT_CONTAINS(r.out, "\"changed\":true");
    ASSERT_CONTAINS(r.err, "approval needed");
    ASSERT_CONTAINS(r.err, "the result awaits review: cordon review");
    _cleanup_free_ char *run_id = json_field(r.out, "task");
    th_ran_free(&r);
    r = CLI("runshow", "show", "--json", run_id);
    ASSERT_CONTAINS(r.out, "uid:0 (with --approve-all)");
    ASSERT_CONTAINS(r.out, "\"state\":\"awaiting_review\"");
    th_ran_free(&r);
    r = CLI("runls", "ls", "--label", "cordon.run=1");
    ASSERT_CONTAINS(r.out, run_id);
    th_ran_free(&r);
    r = CLI("runstate", "run", "--state", e.dir, "--", "true");
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "are the daemon's own settings");
    th_ran_free(&r);

    /* UpdatePolicy: a sandbox with no egress rules gets one while it runs; the change is on
     * its audit trail, and the next request goes through */
    struct th_httpd *web = th_httpd_start("127.0.0.2");
    char pol0[4300], pol1[4300], url[128], rules[512];
    snprintf(pol0, sizeof(pol0), "%s/open.yaml", e.dir);
    snprintf(pol1, sizeof(pol1), "%s/open-net.yaml", e.dir);
    th_write_file(pol0, "version: 1\ncommands: {default: allow}\n", 0644);
    snprintf(rules, sizeof(rules),
             "version: 1\ncommands: {default: allow}\nnetwork:\n  egress:\n    rules:\n"
             "      - {host: 127.0.0.2, ports: [%u], purpose: api}\n",
             th_httpd_port(web));
    th_write_file(pol1, rules, 0644);
    snprintf(url, sizeof(url), "http://127.0.0.2:%u/", th_httpd_port(web));
    r = CLI("netbox", "create", "--policy", pol0, "--wait", "--json");
    ASSERT_EQ(r.code, 0);
    _cleanup_free_ char *net_id = json_field(r.out, "id");
    th_ran_free(&r);
    r = CLI("net1", "exec", net_id, "--", "wget", "-q", "-O", "-", url);
    ASSERT_EQ(r.code, 1);
    ASSERT_CONTAINS(r.err, "403 Forbidden");
    th_ran_free(&r);
    r = CLI("upd-bad", "policy", "update", net_id, pol0, "extra");
    ASSERT_EQ(r.code, 125);
    th_ran_free(&r);
    r = CLI("upd", "policy", "update", net_id, pol1);
    if (r.code != 0)
        FAIL("cordon policy update: exit %d: %s", r.code, r.err);
    ASSERT_CONTAINS(r.out, "1 egress rule from");
    th_ran_free(&r);
    r = CLI("net2", "exec", net_id, "--", "wget", "-q", "-O", "-", url);
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out, "hello from 127.0.0.2\n");
    th_ran_free(&r);
    r = CLI("netshow", "show", "--json", net_id);
    ASSERT_CONTAINS(r.out, "\"policy_updates\"");
    ASSERT_CONTAINS(r.out, "\"by\":\"tenant uid:0\"");
    ASSERT_CONTAINS(r.out, "\"decision\":\"denied\"");
    ASSERT_CONTAINS(r.out, "\"decision\":\"allowed\"");
    th_ran_free(&r);
    r = CLI("netstop", "stop", net_id);
    ASSERT_EQ(r.code, 0);
    th_ran_free(&r);
    th_httpd_stop(web);

    /* errors name what went wrong, as the daemon said it */
    r = CLI("nf", "exec", "0000000000000000", "--", "true");
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "NOT_FOUND");
    th_ran_free(&r);
    r = CLI("badpol", "create", "--policy-name", "no-such-policy");
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "no-such-policy");
    th_ran_free(&r);
    r = th_cordon_at("unix:/nonexistent/cordond.sock", "ls", e.dir, "nodaemon",
                     (const char *[]){NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "no cordond answers at unix:/nonexistent/cordond.sock");
    th_ran_free(&r);

    r = CLI("stop", "stop", "--json", id);
    ASSERT_EQ(r.code, 0);
    ASSERT_CONTAINS(r.out, "\"state\":\"awaiting_review\""); /* it changed README */
    th_ran_free(&r);
    r = CLI("rm", "rm", id);
    ASSERT_EQ(r.code, 0);
    th_ran_free(&r);
    r = CLI("gone", "show", id);
    ASSERT_EQ(r.code, 125);
    th_ran_free(&r);
    env_close(&e);
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        FAIL("no free port: %m");
    close(fd);
    return ntohs(sa.sin_port);
}

/* A CA, the daemon's certificate for 127.0.0.1, clients alice and bob under the CA, and
 * mallory under a CA of her own. */
static void make_certs(const char *d) {
    th_sh(
        "mkdir -p %s && cd %s && "
        "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
        "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=cordon-test-ca "
        "2>/dev/null && "
        "openssl req -x509 $K -keyout evil-ca.key -out evil-ca.pem -days 2 -subj /CN=evil "
        "2>/dev/null && "
        "for n in server alice bob mallory; do "
        "  ca=ca; [ $n = mallory ] && ca=evil-ca; ext=; [ $n = server ] && ext='-extfile san.ext'; "
        "  openssl req $K -keyout $n.key -out $n.csr -subj /O=evals/CN=$n 2>/dev/null && "
        "  openssl x509 -req -in $n.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -days 2 "
        "    -out $n.pem $ext 2>/dev/null || exit 1; "
        "done",
        d, d);
}

/* `cordon SUB --tls-* (as WHO) ARGS...` against the daemon's TCP address. */
static struct th_ran tls_cli(struct env *e, const char *addr, const char *who, const char *sub,
                             const char *tag, const char *const *args) {
    char cert[4400], key[4400], ca[4400];
    snprintf(cert, sizeof(cert), "%s/tls/%s.pem", e->dir, who);
    snprintf(key, sizeof(key), "%s/tls/%s.key", e->dir, who);
    snprintf(ca, sizeof(ca), "%s/tls/ca.pem", e->dir);
    const char *argv[24] = {"--tls-cert", cert, "--tls-key", key, "--tls-ca", ca};
    for (size_t i = 0, n = 6; args[i] && n < 23; i++)
        argv[n++] = args[i];
    return th_cordon_at(addr, sub, e->dir, tag, argv);
}

TEST_T(over_tcp_a_client_certificate_is_the_tenant, 600) {
    struct env e = {0};
    setup(&e);
    char tls[4300], listen[64], cert[4400], key[4400], ca[4400];
    snprintf(tls, sizeof(tls), "%s/tls", e.dir);
    make_certs(tls);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", free_port());
    snprintf(cert, sizeof(cert), "%s/server.pem", tls);
    snprintf(key, sizeof(key), "%s/server.key", tls);
    snprintf(ca, sizeof(ca), "%s/ca.pem", tls);
    const char *extra[] = {"--listen",        listen, "--tls-cert", cert, "--tls-key", key,
                           "--tls-client-ca", ca,     NULL};
    memcpy(e.extra, extra, sizeof(extra));
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e.dir);
    e.host = th_host_hold(daemons);
    daemon_start(&e, "1");

    struct th_ran r = tls_cli(&e, listen, "alice", "create", "create",
                              (const char *[]){"--policy-name", "ci-tests", "--json", NULL});
    ASSERT_EQ(r.code, 0);
    _cleanup_free_ char *id = json_field(r.out, "id");
    _cleanup_free_ char *tenant = json_field(r.out, "tenant");
    ASSERT_CONTAINS(tenant, "x509:");
    ASSERT_CONTAINS(tenant, "CN=alice");
    th_ran_free(&r);
    /* bob, under the same CA, is another tenant: he sees nothing of alice's */
    r = tls_cli(&e, listen, "bob", "ls", "bob-ls", (const char *[]){"--json", NULL});
    ASSERT_EQ(r.code, 0);
    ASSERT_STREQ(r.out, "[]\n");
    th_ran_free(&r);
    r = tls_cli(&e, listen, "bob", "rm", "bob-rm", (const char *[]){id, NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "NOT_FOUND");
    th_ran_free(&r);
    /* the unix socket's root is not alice either */
    r = CLI("root-show", "show", id);
    ASSERT_EQ(r.code, 125);
    th_ran_free(&r);
    /* a certificate from another CA gets no connection at all */
    r = tls_cli(&e, listen, "mallory", "ls", "mallory", (const char *[]){NULL});
    ASSERT_EQ(r.code, 125);
    ASSERT_CONTAINS(r.err, "no cordond answers");
    th_ran_free(&r);
    r = tls_cli(&e, listen, "alice", "rm", "rm", (const char *[]){id, NULL});
    ASSERT_EQ(r.code, 0);
    th_ran_free(&r);
    env_close(&e);
}
