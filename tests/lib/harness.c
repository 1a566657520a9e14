/* SPDX-License-Identifier: Apache-2.0 */
/* Test helpers: agent processes, temp trees, readings. */
#include "harness.h"

#include <fcntl.h>
#include <stdarg.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "clock.h"
#include "test.h"

const char *th_agent_path(void) {
    const char *p = getenv("CORDON_AGENT");
    return p && *p ? p : "build/asan/bin/cordon-agent";
}

void th_agent_spawn(struct th_agent *a, const char *const *extra_args) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        FAIL("socketpair: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        if (dup2(sv[1], 3) < 0)
            _exit(126);
        const char *argv[32] = {th_agent_path(), "--fd", "3"};
        size_t n = 3;
        for (size_t i = 0; extra_args && extra_args[i] && n < 31; i++)
            argv[n++] = extra_args[i];
        argv[n] = NULL;
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    close(sv[1]);
    a->pid = pid;
    a->host_fd = sv[0];
}

struct cdn_channel *th_channel(struct th_agent *a, const struct cdn_channel_opts *opts) {
    th_agent_spawn(a, NULL);
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    struct cdn_channel_opts o = opts ? *opts : (struct cdn_channel_opts){.name = "test-agent"};
    int fd = a->host_fd;
    a->host_fd = -1;
    ASSERT_OK(cdn_channel_open(fd, &o, &ch, &err), err);
    return ch;
}

uint64_t th_now_ms(void) { return cdn_now_ms(); }

double th_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double th_median(double *v, size_t n) {
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int th_agent_wait(struct th_agent *a, int timeout_ms) {
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(a->pid, &status, WNOHANG);
        if (r == a->pid) {
            a->pid = 0;
            return status;
        }
        if (th_now_ms() >= end) {
            kill(a->pid, SIGKILL);
            waitpid(a->pid, NULL, 0);
            a->pid = 0;
            return -1;
        }
        usleep(10000);
    }
}

/* SIGTERM first: the agent then kills and reaps the process groups of its commands (which run in
 * sessions of their own and would outlive a SIGKILLed agent); SIGKILL only if it does not go. */
void th_agent_kill(struct th_agent *a) {
    if (a->pid > 0) {
        kill(a->pid, SIGTERM);
        uint64_t end = th_now_ms() + 3000;
        while (waitpid(a->pid, NULL, WNOHANG) == 0) {
            if (th_now_ms() >= end) {
                kill(a->pid, SIGKILL);
                waitpid(a->pid, NULL, 0);
                break;
            }
            usleep(5000);
        }
        a->pid = 0;
    }
    if (a->host_fd >= 0)
        a->host_fd = safe_close(a->host_fd);
}

char *th_tmpdir(void) {
    const char *base = getenv("TMPDIR");
    char *path = NULL;
    if (asprintf(&path, "%s/cordon-test-XXXXXX", base && *base ? base : "/tmp") < 0 ||
        !mkdtemp(path))
        FAIL("mkdtemp: %s", strerror(errno));
    /* Traversable (not listable) by others: libvirt's unprivileged QEMU opens task disks here. */
    chmod(path, 0711);
    return path;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)ftw;
    if (flag == FTW_DP || (st && S_ISDIR(st->st_mode) && flag != FTW_SL)) {
        chmod(p, 0700);
        return rmdir(p) < 0 ? 0 : 0;
    }
    unlink(p);
    return 0;
}

static int chmod_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)ftw;
    if (flag == FTW_D || (st && S_ISDIR(st->st_mode) && flag != FTW_SL))
        chmod(p, 0700);
    return 0;
}

void th_rmtree(const char *path) {
    if (!path)
        return;
    nftw(path, chmod_one, 32, FTW_PHYS);
    nftw(path, rm_one, 32, FTW_DEPTH | FTW_PHYS);
}

long th_rss_kib(void) {
    _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    return kib;
}

int th_collect(void *ud, int fd, const uint8_t *data, size_t len) {
    struct th_output *o = ud;
    if (fd < 1 || fd > 2)
        return -1;
    return cdn_buf_append(&o->fd[fd], data, len);
}

const char *th_output_str(struct th_output *o, int fd) {
    struct cdn_buf *b = &o->fd[fd];
    if (cdn_buf_reserve(b, 1) < 0)
        FAIL("out of memory");
    *cdn_buf_tail(b) = '\0';
    return (const char *)cdn_buf_head(b);
}

void th_output_free(struct th_output *o) {
    for (int i = 0; i < 3; i++)
        cdn_buf_free(&o->fd[i]);
}

struct cdn_exec_result th_run(struct cdn_channel *ch, struct th_output *out,
                              const char *const *argv) {
    size_t argc = 0;
    while (argv[argc])
        argc++;
    struct cdn_exec_spec spec = {.argv = argv, .argc = argc};
    struct cdn_exec_result res = {0};
    cdn_err *err = NULL;
    ASSERT_OK(cdn_channel_exec(ch, &spec, th_collect, out, 30000, &res, &err), err);
    return res;
}

void th_sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    int st = system(cmd);
    if (st != 0)
        FAIL("'%s' exited with status %d", cmd, st);
}

void th_write_file(const char *path, const char *content, mode_t mode) {
    _cleanup_free_ char *copy = strdup(path);
    for (char *s = strchr(copy + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        mkdir(copy, 0755);
        *s = '/';
    }
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        FAIL("create %s: %s", path, strerror(errno));
    size_t n = strlen(content);
    if (write(fd, content, n) != (ssize_t)n)
        FAIL("write %s: %s", path, strerror(errno));
    fchmod(fd, mode);
}

char *th_read_file(const char *path) {
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct cdn_buf b = {0};
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        cdn_buf_append(&b, chunk, (size_t)n);
    cdn_buf_append(&b, "", 1);
    return (char *)b.data;
}

void th_send_bytes(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            poll(&pfd, 1, 1000);
            continue;
        }
        if (w < 0)
            return; /* the peer may have hung up on purpose */
        b += w;
        n -= (size_t)w;
    }
}

void th_send_env(int fd, cdn_envelope *env) {
    struct cdn_buf b = {0};
    cdn_err *err = NULL;
    ASSERT_OK(cdn_frame_encode(&b, env, 16u << 20, &err), err);
    th_send_bytes(fd, cdn_buf_head(&b), cdn_buf_len(&b));
    cdn_buf_free(&b);
}

int th_recv_env(int fd, struct cdn_frame_decoder *dec, int timeout_ms, cdn_envelope **env) {
    uint64_t end = th_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        cdn_err *err = NULL;
        int r = cdn_frame_decoder_next(dec, env, &err);
        cdn_err_free(err);
        if (r != 0)
            return r > 0 ? 1 : -1;
        uint64_t now = th_now_ms();
        if (now >= end)
            return 0;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)(end - now)) <= 0)
            continue;
        uint8_t *p;
        size_t room;
        cdn_frame_decoder_space(dec, 65536, &p, &room);
        ssize_t n = read(fd, p, room);
        if (n <= 0)
            return -1;
        cdn_frame_decoder_commit(dec, (size_t)n);
    }
}

/* /proc/PID/stat after the name: "pid (comm) state ppid ...", where comm may hold ") ". */
static bool proc_stat_tail(pid_t pid, char *buf, size_t size, char **tail) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    size_t n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';
    *tail = strrchr(buf, ')');
    return *tail != NULL;
}

pid_t th_proc_ppid(pid_t pid) {
    char buf[1024], *tail;
    int ppid = 0;
    if (!proc_stat_tail(pid, buf, sizeof(buf), &tail) || sscanf(tail + 1, " %*c %d", &ppid) != 1)
        return 0;
    return (pid_t)ppid;
}

unsigned long long th_proc_start_time(pid_t pid) {
    char buf[1024], *tail;
    unsigned long long t = 0;
    if (!proc_stat_tail(pid, buf, sizeof(buf), &tail) ||
        sscanf(tail + 1,
               " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
               &t) != 1)
        return 0;
    return t;
}

bool th_proc_comm(pid_t pid, char *out, size_t size) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(out, (int)size, f) != NULL;
    fclose(f);
    if (ok)
        out[strcspn(out, "\n")] = '\0';
    return ok;
}

bool th_unix_answers(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    bool up = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    if (fd >= 0)
        close(fd);
    return up;
}
