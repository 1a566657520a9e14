/* SPDX-License-Identifier: Apache-2.0 */
/* Sessions through cordond and the cordon CLI, on real VMs: a session paused in memory and on
 * disk (by request, and by cordond after pause_to_disk_after_seconds) keeps its background
 * process and gets the host's clock back; reset brings back the base commit under the same id;
 * extend moves the expiry, and an expiry reaps the session with the reason on its audit trail;
 * an ephemeral sandbox refuses all of it. Background processes (exec --detach): followed to their
 * exit, a flood kept within its ring with the drop counted, a counter that keeps its state across
 * a pause, a signal, and the one left running killed and recorded at the stop. Then kill -9 of
 * cordond with one session paused on disk and another running: after the restart both are accounted
 * for and no domain is left. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "cordon_cli.h"
#include "cordond.h"
#include "harness.h"
#include "test.h"
#include "vmhost.h"

struct env {
    char *dir;
    char sock[4200], addr[4300], repo[4200], policy[4200], conf[4200], tasks[4300];
    pid_t daemon;
    struct cdn_vm_host *host;
};

static void env_start(struct env *e) {
    const char *extra[] = {"--config", e->conf, "--max-running", "2", NULL};
    e->daemon = th_cordond_start(e->dir, e->sock, "tcg", extra);
}

static void env_open(struct env *e) {
    e->dir = th_tmpdir();
    snprintf(e->sock, sizeof(e->sock), "%s/cordond.sock", e->dir);
    snprintf(e->addr, sizeof(e->addr), "unix:%s", e->sock);
    snprintf(e->repo, sizeof(e->repo), "%s/repo", e->dir);
    snprintf(e->policy, sizeof(e->policy), "%s/allow.yaml", e->dir);
    snprintf(e->conf, sizeof(e->conf), "%s/cordond.yaml", e->dir);
    snprintf(e->tasks, sizeof(e->tasks), "%s/daemon/tasks", e->dir);
    th_sh("git init -q -b main %s && cd %s && printf 'one\\ntwo\\n' > README && git add . && "
          "git -c user.name=t -c user.email=t@t commit -qm init",
          e->repo, e->repo);
    th_write_file(e->policy, "version: 1\ncommands:\n  default: allow\n  unanalysable: allow\n",
                  0644);
    /* Short enough for a test to see cordond save a paused session by itself. */
    th_write_file(e->conf,
                  "pause_to_disk_after_seconds: 6\nsession_max_ttl_seconds: 900\n"
                  "process_log_mib: 1\n",
                  0644);
    char daemons[4300];
    snprintf(daemons, sizeof(daemons), "%s/run", e->dir);
    e->host = th_host_hold(daemons);
    env_start(e);
}

static void env_close(struct env *e) {
    th_cordond_stop(e->daemon);
    th_assert_no_cordon_domains(e->host);
    th_host_release();
    th_rmtree(e->dir);
    free(e->dir);
}

#define CLI(tag, sub, ...) TH_CLI(e, tag, sub, __VA_ARGS__)
#define CLI_OK(tag, sub, ...) TH_CLI_OK(e, tag, sub, __VA_ARGS__)

/* `cordon show --json ID`'s field. */
static char *show(struct env *ep, const char *id, const char *key) {
    struct env e = *ep;
    struct th_ran r = CLI_OK("show", "show", "--json", id);
    if (r.code != 0)
        FAIL("cordon show %s: %s", id, r.err);
    json_error_t je;
    json_t *o = json_loads(r.out, 0, &je);
    json_t *sb = json_object_get(o, "sandbox");
    const char *v = json_string_value(json_object_get(sb ? sb : o, key));
    char *out = v ? strdup(v) : NULL;
    json_decref(o);
    th_ran_free(&r);
    return out;
}

/* `cordon exec ID -- sh -c SCRIPT`: its stdout (the test fails unless it exits 0). */
static char *sh_in(struct env *ep, const char *id, const char *script) {
    struct env e = *ep;
    struct th_ran r = CLI("exec", "exec", id, "--", "sh", "-c", script);
    if (r.code != 0)
        FAIL("exec %s in %s: exit %d: %s", script, id, r.code, r.err);
    char *out = r.out;
    r.out = NULL;
    th_ran_free(&r);
    return out;
}

/* The counter's pid and value, and how far the guest's clock is from ours (seconds). */
struct probe {
    long pid, count, skew;
};

static struct probe look(struct env *e, const char *id) {
    _cleanup_free_ char *out = sh_in(e, id, "cat /tmp/counter.pid; cat /tmp/counter; date +%s");
    struct probe p;
    long guest;
    if (sscanf(out, "%ld %ld %ld", &p.pid, &p.count, &guest) != 3)
        FAIL("unexpected probe output: %s", out);
    p.skew = labs(guest - (long)time(NULL));
    return p;
}

/* The sandbox's audit trail; caller frees. */
static char *audit_of(const struct env *e, const char *id) {
    char trail[4400];
    snprintf(trail, sizeof(trail), "%s/%s/evidence/audit.jsonl", e->tasks, id);
    return th_read_file(trail);
}

static void expect_state(struct env *e, const char *id, const char *state, const char *paused) {
    _cleanup_free_ char *st = show(e, id, "state");
    _cleanup_free_ char *where = show(e, id, "paused");
    if (!st || strcmp(st, state) != 0 || (paused && (!where || strcmp(where, paused) != 0)))
        FAIL("sandbox %s is %s (%s), expected %s (%s)", id, st ? st : "?", where ? where : "-",
             state, paused ? paused : "-");
}

TEST_T(a_session_pauses_in_memory_and_on_disk_resets_extends_and_expires, 600) {
    struct env e = {0};
    env_open(&e);
    struct th_ran r = CLI_OK("create", "create", "--repo", e.repo, "--policy", e.policy,
                             "--persist", "--owner", "alice", "--ttl", "300", "--wait", "--json");
    _cleanup_free_ char *id = th_json_str(r.out, "id");
    _cleanup_free_ char *owner = th_json_str(r.out, "owner");
    ASSERT_STREQ(owner, "alice");
    th_ran_free(&r);

    /* An ephemeral sandbox has none of a session's controls. */
    r = CLI_OK("eph", "create", "--policy", e.policy, "--json");
    _cleanup_free_ char *eph = th_json_str(r.out, "id");
    th_ran_free(&r);
    r = CLI("eph-pause", "pause", eph);
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "ephemeral");
    th_ran_free(&r);
    r = CLI("eph-owner", "create", "--owner", "bob", "--json");
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "persist");
    th_ran_free(&r);
    r = CLI_OK("eph-stop", "stop", eph);
    th_ran_free(&r);

    /* listed with its owner and expiry */
    r = CLI_OK("ls", "ls", "--sessions", "--owner", "alice");
    ASSERT_CONTAINS(r.out, id);
    ASSERT_CONTAINS(r.out, "alice");
    ASSERT_TRUE(strstr(r.out, eph) == NULL);
    ASSERT_TRUE(strstr(r.out, "4m") != NULL || strstr(r.out, "5m") != NULL);
    th_ran_free(&r);

    /* A background process (its own session, outside any command) and a change. */
    free(sh_in(&e, id,
               "setsid sh -c 'echo $$ > /tmp/counter.pid; i=0; while :; do i=$((i+1)); "
               "echo $i > /tmp/counter; sleep 0.1; done' </dev/null >/dev/null 2>&1 & "
               "echo change >> README; sleep 1"));
    struct probe before = look(&e, id);
    ASSERT_TRUE(before.count > 0);

    /* Paused in memory: commands refused, the diff current, the counter frozen with it. */
    r = CLI_OK("pause", "pause", id);
    ASSERT_CONTAINS(r.out, "paused memory");
    th_ran_free(&r);
    r = CLI("paused-exec", "exec", id, "--", "true");
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "is paused");
    th_ran_free(&r);
    r = CLI_OK("paused-diff", "diff", id);
    ASSERT_CONTAINS(r.out, "+change");
    th_ran_free(&r);
    sleep(3); /* the guest's clock stands still meanwhile */
    r = CLI_OK("resume", "resume", id);
    ASSERT_CONTAINS(r.out, "ready");
    th_ran_free(&r);
    struct probe after = look(&e, id);
    ASSERT_EQ(after.pid, before.pid);
    ASSERT_TRUE(after.count >= before.count);
    ASSERT_LE(after.skew, 1); /* 3 s behind without the host's clock */

    /* Saved to disk: the domain gone, its memory in a file; restored, the same process. */
    r = CLI_OK("pause-disk", "pause", "--to-disk", id);
    ASSERT_CONTAINS(r.out, "paused disk");
    th_ran_free(&r);
    char saved[4400];
    snprintf(saved, sizeof(saved), "%s/%s/memory.save", e.tasks, id);
    struct stat st;
    ASSERT_EQ(stat(saved, &st), 0);
    ASSERT_TRUE(st.st_size > (1 << 20));
    char dom[64];
    snprintf(dom, sizeof(dom), "cordon-%s", id);
    ASSERT_TRUE(!cdn_vm_host_has_domain(e.host, dom));
    r = CLI("ls-disk", "ls", "--state", "paused");
    ASSERT_CONTAINS(r.out, "paused/disk");
    th_ran_free(&r);
    sleep(2);
    r = CLI_OK("resume-disk", "resume", id);
    th_ran_free(&r);
    ASSERT_TRUE(access(saved, F_OK) != 0);
    struct probe restored = look(&e, id);
    ASSERT_EQ(restored.pid, before.pid);
    ASSERT_TRUE(restored.count >= after.count);
    ASSERT_LE(restored.skew, 1);

    /* Paused long enough (6 s here), cordond saves it to disk by itself. */
    r = CLI_OK("pause2", "pause", id);
    th_ran_free(&r);
    expect_state(&e, id, "paused", "memory");
    for (int i = 0; i < 150; i++) { /* the file appears as libvirt starts writing it */
        _cleanup_free_ char *where = show(&e, id, "paused");
        if (where && strcmp(where, "disk") == 0)
            break;
        usleep(100000);
    }
    expect_state(&e, id, "paused", "disk");
    ASSERT_EQ(access(saved, F_OK), 0);
    r = CLI_OK("resume2", "resume", id);
    th_ran_free(&r);
    ASSERT_EQ(look(&e, id).pid, before.pid);

    /* Reset: the same id, the base commit, a fresh VM (no counter). */
    r = CLI_OK("reset", "reset", id);
    ASSERT_CONTAINS(r.out, id);
    th_ran_free(&r);
    _cleanup_free_ char *readme = sh_in(&e, id, "cat README; test -e /tmp/counter || echo fresh");
    ASSERT_STREQ(readme, "one\ntwo\nfresh\n");
    r = CLI_OK("diff-reset", "diff", "--json", id);
    ASSERT_CONTAINS(r.out, "\"files_changed\":0");
    th_ran_free(&r);

    /* Extend: within the daemon's limit for sessions; then an expiry reaps it. */
    r = CLI("extend-over", "extend", id, "100000");
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "limit of 900");
    th_ran_free(&r);
    r = CLI_OK("extend", "extend", id, "600");
    th_ran_free(&r);
    r = CLI("ls-ext", "ls", "--sessions");
    ASSERT_TRUE(strstr(r.out, "9m") != NULL || strstr(r.out, "10m") != NULL);
    th_ran_free(&r);
    r = CLI_OK("extend-short", "extend", id, "2");
    th_ran_free(&r);
    _cleanup_free_ char *state = NULL;
    for (int i = 0; i < 300; i++) {
        free(state);
        state = show(&e, id, "state");
        if (state && strcmp(state, "stopped") == 0)
            break;
        usleep(100000);
    }
    ASSERT_STREQ(state, "stopped");
    _cleanup_free_ char *error = show(&e, id, "error");
    ASSERT_CONTAINS(error, "ttl expired");
    _cleanup_free_ char *audit = audit_of(&e, id);
    ASSERT_CONTAINS(audit, "\"session.paused\"");
    ASSERT_CONTAINS(audit, "\"where\":\"disk\"");
    ASSERT_CONTAINS(audit, "cordond (paused for 6 s)");
    ASSERT_CONTAINS(audit, "\"session.resumed\"");
    ASSERT_CONTAINS(audit, "\"session.reset\"");
    ASSERT_CONTAINS(audit, "\"session.extended\"");
    ASSERT_CONTAINS(audit, "its ttl expired");
    char evidence[4400];
    snprintf(evidence, sizeof(evidence), "%s/%s/evidence", e.tasks, id);
    /* the trail with the session's events checks against its signed manifest */
    th_sh("%s audit verify --state %s/daemon %s >/dev/null", th_cordon_bin(), e.dir, evidence);
    env_close(&e);
}

TEST_T(kill_9_with_a_session_paused_on_disk_and_another_running_leaves_no_orphan, 600) {
    struct env e = {0};
    env_open(&e);
    struct th_ran r = CLI_OK("c1", "create", "--repo", e.repo, "--policy", e.policy, "--persist",
                             "--wait", "--json");
    _cleanup_free_ char *paused = th_json_str(r.out, "id");
    th_ran_free(&r);
    r = CLI_OK("c2", "create", "--policy", e.policy, "--persist", "--wait", "--json");
    _cleanup_free_ char *running = th_json_str(r.out, "id");
    th_ran_free(&r);
    free(sh_in(&e, paused, "echo kept >> README"));
    r = CLI_OK("pause", "pause", "--to-disk", paused);
    th_ran_free(&r);

    kill(e.daemon, SIGKILL);
    waitpid(e.daemon, NULL, 0);
    env_start(&e);

    /* The saved one stopped with its work (taken when it paused); the running one failed. */
    _cleanup_free_ char *st1 = show(&e, paused, "state");
    _cleanup_free_ char *er1 = show(&e, paused, "error");
    ASSERT_STREQ(st1, "stopped");
    ASSERT_CONTAINS(er1, "paused on disk");
    r = CLI_OK("diff", "diff", paused);
    ASSERT_CONTAINS(r.out, "+kept");
    th_ran_free(&r);
    _cleanup_free_ char *st2 = show(&e, running, "state");
    _cleanup_free_ char *er2 = show(&e, running, "error");
    ASSERT_STREQ(st2, "failed");
    ASSERT_CONTAINS(er2, "cordond restarted");
    /* Nothing of theirs is left: no domain, no saved memory, no disk. */
    th_assert_no_cordon_domains(e.host);
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s/memory.save", e.tasks, paused);
    ASSERT_TRUE(access(path, F_OK) != 0);
    snprintf(path, sizeof(path), "%s/%s/evidence/manifest.json", e.tasks, paused);
    ASSERT_EQ(access(path, F_OK), 0);
    th_sh("%s gc --state %s/daemon >/dev/null", th_cordon_bin(), e.dir);
    th_assert_no_cordon_domains(e.host);
    env_close(&e);
}

/* `cordon ps --json ID`'s record of handle (the test fails without one); caller decrefs. */
static json_t *proc(struct env *ep, const char *id, const char *handle) {
    struct env e = *ep;
    struct th_ran r = CLI_OK("ps", "ps", "--json", id);
    json_error_t je;
    json_t *all = json_loads(r.out, 0, &je), *found = NULL;
    size_t i;
    json_t *p;
    json_array_foreach(all, i, p) if (strcmp(json_string_value(json_object_get(p, "handle")) ?: "",
                                             handle) == 0) found = json_incref(p);
    json_decref(all);
    if (!found)
        FAIL("no process %s in: %s", handle, r.out);
    th_ran_free(&r);
    return found;
}

static const char *proc_state(json_t *p) { return json_string_value(json_object_get(p, "state")); }

/* Waits (up to 60 s) for handle to leave the running state; its record. */
static json_t *proc_ended(struct env *e, const char *id, const char *handle) {
    for (int i = 0; i < 600; i++) {
        json_t *p = proc(e, id, handle);
        if (strcmp(proc_state(p), "running") != 0)
            return p;
        json_decref(p);
        usleep(100000);
    }
    FAIL("process %s still runs after 60 s", handle);
}

/* `cordon exec --detach ID -- sh -c SCRIPT`: its handle. */
static char *detach(struct env *ep, const char *id, const char *script) {
    struct env e = *ep;
    struct th_ran r = CLI_OK("detach", "exec", "--detach", id, "--", "sh", "-c", script);
    char *h = strndup(r.out, strcspn(r.out, "\n"));
    th_ran_free(&r);
    return h;
}

TEST_T(background_processes_are_followed_bounded_kept_across_a_pause_and_killed, 600) {
    struct env e = {0};
    env_open(&e);
    struct th_ran r =
        CLI_OK("create", "create", "--policy", e.policy, "--persist", "--wait", "--json");
    _cleanup_free_ char *id = th_json_str(r.out, "id");
    th_ran_free(&r);

    /* Followed from the start to its exit: every line, then its exit code. */
    _cleanup_free_ char *p1 =
        detach(&e, id, "for i in 0 1 2 3 4; do echo tick $i; sleep 0.2; done; exit 7");
    ASSERT_STREQ(p1, "p1");
    r = CLI("follow", "logs", "--follow", id, "p1");
    ASSERT_EQ(r.code, 7);
    ASSERT_STREQ(r.out, "tick 0\ntick 1\ntick 2\ntick 3\ntick 4\n");
    th_ran_free(&r);

    /* 30 MB of output: on disk at most the ring (1 MiB here) and a chunk; the drop counted, the
     * newest bytes kept. */
    _cleanup_free_ char *p2 = detach(&e, id, "yes flood | head -c 30000000; echo END");
    json_t *flood = proc_ended(&e, id, p2);
    ASSERT_STREQ(proc_state(flood), "exited");
    ASSERT_EQ(json_integer_value(json_object_get(flood, "output_bytes")), 30000004);
    long long dropped = json_integer_value(json_object_get(flood, "dropped_bytes"));
    json_decref(flood);
    char seg[4400];
    struct stat st;
    long long kept = 0;
    snprintf(seg, sizeof(seg), "%s/%s/evidence/procs/%s.log", e.tasks, id, p2);
    if (stat(seg, &st) == 0)
        kept += st.st_size;
    snprintf(seg, sizeof(seg), "%s/%s/evidence/procs/%s.old", e.tasks, id, p2);
    if (stat(seg, &st) == 0)
        kept += st.st_size;
    ASSERT_LE(kept, (2 << 20));
    ASSERT_TRUE(kept >= (512 << 10));
    ASSERT_EQ(kept + dropped, 30000004);
    r = CLI_OK("flood-logs", "logs", id, p2);
    ASSERT_EQ((long long)strlen(r.out), kept);
    ASSERT_TRUE(strstr(r.out + strlen(r.out) - 4, "END\n") != NULL);
    th_ran_free(&r);

    /* A counter keeps its state across a pause; the stream of a follower waits meanwhile. */
    _cleanup_free_ char *p3 =
        detach(&e, id, "i=0; while :; do i=$((i+1)); echo $i > /tmp/c; sleep 0.1; done");
    usleep(500000);
    _cleanup_free_ char *c1 = sh_in(&e, id, "cat /tmp/c");
    r = CLI("disk-refused", "pause", "--to-disk", id);
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "running");
    th_ran_free(&r);
    r = CLI_OK("pause", "pause", id);
    th_ran_free(&r);
    sleep(1);
    r = CLI_OK("resume", "resume", id);
    th_ran_free(&r);
    usleep(500000);
    _cleanup_free_ char *c2 = sh_in(&e, id, "cat /tmp/c");
    ASSERT_TRUE(atol(c2) > atol(c1));
    json_t *alive = proc(&e, id, p3);
    ASSERT_STREQ(proc_state(alive), "running");
    json_decref(alive);

    /* A signal by name; the one left running is killed at the stop, and recorded. */
    r = CLI_OK("kill", "kill", id, p3, "TERM");
    th_ran_free(&r);
    json_t *killed = proc_ended(&e, id, p3);
    ASSERT_STREQ(proc_state(killed), "killed");
    ASSERT_EQ(json_integer_value(json_object_get(killed, "signal")), SIGTERM);
    json_decref(killed);
    _cleanup_free_ char *p4 = detach(&e, id, "exec sleep 1000");
    r = CLI_OK("stop", "stop", id);
    th_ran_free(&r);
    json_t *stopped = proc(&e, id, p4); /* ps answers from the evidence after the stop too */
    ASSERT_STREQ(proc_state(stopped), "killed");
    ASSERT_EQ(json_integer_value(json_object_get(stopped, "signal")), SIGKILL);
    json_decref(stopped);
    _cleanup_free_ char *audit = audit_of(&e, id);
    ASSERT_CONTAINS(audit, "\"process.detached\"");
    ASSERT_CONTAINS(audit, "\"process.signalled\"");
    ASSERT_CONTAINS(audit, "\"process.ended\"");
    r = CLI("no-such", "logs", id, "p99");
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "no process p99");
    th_ran_free(&r);
    env_close(&e);
}

/* GET / from address ("127.0.0.1:PORT" or "unix:PATH"): the whole answer, or NULL when nothing
 * accepts the connection (or it gives no answer within 10 s). */
static char *http_get(const char *address) {
    int fd;
    if (strncmp(address, "unix:", 5) == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", address + 5);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            close(fd);
            return NULL;
        }
    } else {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        const char *colon = strrchr(address, ':');
        sa.sin_port = htons((uint16_t)atoi(colon + 1));
        inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            close(fd);
            return NULL;
        }
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const char req[] = "GET / HTTP/1.0\r\nHost: preview\r\n\r\n";
    if (write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        close(fd);
        return NULL;
    }
    char *buf = calloc(1, 65536);
    size_t n = 0;
    for (ssize_t k; n < 65535 && (k = read(fd, buf + n, 65535 - n)) > 0;)
        n += (size_t)k;
    close(fd);
    if (n == 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Until the dev server answers through address (it starts slowly under TCG): its answer. */
static char *get_when_up(const char *address) {
    for (int i = 0; i < 120; i++) {
        char *got = http_get(address);
        if (got && strstr(got, "200"))
            return got;
        free(got);
        usleep(250000);
    }
    FAIL("nothing answered through %s within 30 s", address);
}

TEST_T(a_dev_server_is_previewed_on_loopback_only_until_closed_or_paused, 600) {
    struct env e = {0};
    env_open(&e);
    char pol[4300];
    snprintf(pol, sizeof(pol), "%s/preview.yaml", e.dir);
    th_write_file(pol,
                  "version: 1\ncommands:\n  default: allow\n  unanalysable: allow\n"
                  "previews:\n  ports: [8000]\n",
                  0644);
    struct th_ran r = CLI_OK("create", "create", "--image", "devbox", "--policy", pol, "--persist",
                             "--wait", "--json");
    _cleanup_free_ char *id = th_json_str(r.out, "id");
    th_ran_free(&r);
    _cleanup_free_ char *h =
        detach(&e, id,
               "mkdir -p /tmp/site && echo hello preview > /tmp/site/index.html"
               " && exec python3 -m http.server 8000 --bind 127.0.0.1 "
               "--directory /tmp/site");
    /* Only what the policy lists. */
    r = CLI("not-listed", "preview", id, "9000");
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "not in the policy's previews.ports (8000)");
    th_ran_free(&r);
    r = CLI_OK("open", "preview", id, "8000");
    char addr[200];
    snprintf(addr, sizeof(addr), "%.*s", (int)strcspn(r.out, "\n"), r.out);
    th_ran_free(&r);
    ASSERT_TRUE(strncmp(addr, "127.0.0.1:", 10) == 0); /* loopback, never another address */
    _cleanup_free_ char *page = get_when_up(addr);
    ASSERT_CONTAINS(page, "hello preview");
    /* Closed: nothing answers there any more. */
    r = CLI_OK("close", "preview", "--close", id, "8000");
    th_ran_free(&r);
    char *gone = http_get(addr);
    ASSERT_TRUE(gone == NULL);
    /* On a unix socket (mode 0600), and closed by a pause. */
    r = CLI_OK("unix", "preview", "--unix", id, "8000");
    char uaddr[4400];
    snprintf(uaddr, sizeof(uaddr), "%.*s", (int)strcspn(r.out, "\n"), r.out);
    th_ran_free(&r);
    ASSERT_TRUE(strncmp(uaddr, "unix:", 5) == 0);
    struct stat st;
    ASSERT_EQ(stat(uaddr + 5, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    _cleanup_free_ char *upage = get_when_up(uaddr);
    ASSERT_CONTAINS(upage, "hello preview");
    r = CLI_OK("pause", "pause", id);
    th_ran_free(&r);
    ASSERT_TRUE(access(uaddr + 5, F_OK) != 0);
    r = CLI_OK("resume", "resume", id);
    th_ran_free(&r);
    r = CLI("paused-gone", "preview", "--close", id, "8000");
    ASSERT_TRUE(r.code != 0);
    ASSERT_CONTAINS(r.err, "has no preview of port 8000");
    th_ran_free(&r);
    _cleanup_free_ char *audit = audit_of(&e, id);
    ASSERT_CONTAINS(audit, "\"preview.opened\"");
    ASSERT_CONTAINS(audit, "\"preview.connection\"");
    ASSERT_CONTAINS(audit, "\"peer\":\"127.0.0.1:");
    ASSERT_CONTAINS(audit, "\"preview.closed\"");
    ASSERT_CONTAINS(audit, "the sandbox paused");
    r = CLI_OK("stop", "stop", id);
    th_ran_free(&r);
    env_close(&e);
}
