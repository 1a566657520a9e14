/* SPDX-License-Identifier: Apache-2.0 */
#include "host2.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "test.h"

/* In the child: a namespace with libvirt's state folders of its own, virtlogd, then libvirtd. */
static void child(const struct th_host2 *h) {
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        _exit(120);
    static const char *const dirs[] = {"/run/libvirt", "/var/lib/libvirt", "/var/cache/libvirt",
                                       "/var/log/libvirt"};
    for (size_t i = 0; i < 4; i++) {
        mkdir(dirs[i], 0755);
        if (mount("tmpfs", dirs[i], "tmpfs", 0, "mode=0755") < 0)
            _exit(121);
    }
    /* Its QEMUs stay in its namespace (libvirt would give each one a namespace of its own):
     * the host going away takes them along. */
    char qconf[4200];
    snprintf(qconf, sizeof(qconf), "%s/qemu.conf", h->dir);
    if (mount(qconf, "/etc/libvirt/qemu.conf", NULL, MS_BIND, NULL) < 0)
        _exit(122);
    mkdir("/var/lib/libvirt/qemu", 0751);
    mkdir("/var/cache/libvirt/qemu", 0750);
    mkdir("/var/log/libvirt/qemu", 0750);
    char log[4200], conf[4200], pid[4200];
    snprintf(log, sizeof(log), "%s/daemons.log", h->dir);
    snprintf(conf, sizeof(conf), "%s/libvirtd.conf", h->dir);
    snprintf(pid, sizeof(pid), "%s/virtlogd.pid", h->dir);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    setsid();
    pid_t lg = fork();
    if (lg == 0) {
        execl("/usr/sbin/virtlogd", "virtlogd", "-p", pid, (char *)NULL);
        _exit(127);
    }
    snprintf(pid, sizeof(pid), "%s/libvirtd.pid", h->dir);
    execl("/usr/sbin/libvirtd", "libvirtd", "--listen", "-f", conf, "-p", pid, (char *)NULL);
    _exit(127);
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        FAIL("no free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

static struct th_host2 *held;
static void kill_held(void) {
    if (held)
        th_host2_kill(held);
}

void th_host2_start(struct th_host2 *h, const char *dir) {
    memset(h, 0, sizeof(*h));
    if (!held)
        atexit(kill_held); /* a failing assertion still takes the host down */
    held = h;
    snprintf(h->dir, sizeof(h->dir), "%s", dir);
    th_sh("mkdir -p %s/sock", dir);
    char conf[4200], sock[4200];
    snprintf(conf, sizeof(conf), "%s/libvirtd.conf", dir);
    snprintf(sock, sizeof(sock), "%s/sock/libvirt-sock", dir);
    /* Reached over TCP on loopback, as a host on another machine would be (its agent channels
     * then travel in the libvirt connection); no authentication: loopback, a test. */
    int port = free_port();
    char text[4600];
    snprintf(text, sizeof(text),
             "unix_sock_dir = \"%s/sock\"\nunix_sock_rw_perms = \"0700\"\nauth_unix_rw = "
             "\"none\"\nauth_unix_ro = \"none\"\nlisten_tls = 0\nlisten_tcp = 1\n"
             "listen_addr = \"127.0.0.1\"\ntcp_port = \"%d\"\nauth_tcp = \"none\"\n",
             dir, port);
    th_write_file(conf, text, 0644);
    snprintf(conf, sizeof(conf), "%s/qemu.conf", dir);
    th_write_file(conf, "namespaces = []\n", 0644);
    snprintf(h->uri, sizeof(h->uri), "qemu+tcp://127.0.0.1:%d/system", port);
    h->pid = fork();
    if (h->pid == 0)
        child(h);
    for (int i = 0; i < 200 && !th_unix_answers(sock); i++) {
        int st;
        if (waitpid(h->pid, &st, WNOHANG) == h->pid)
            FAIL("the second libvirt host exited (status %d): see %s/daemons.log", st, dir);
        usleep(50000);
    }
    if (!th_unix_answers(sock))
        FAIL("the second libvirt host does not answer on %s", sock);
    char link[64];
    snprintf(link, sizeof(link), "/proc/%d/ns/mnt", (int)h->pid);
    ssize_t n = readlink(link, h->ns, sizeof(h->ns) - 1);
    if (n <= 0)
        FAIL("reading %s: %s", link, strerror(errno));
    h->ns[n] = '\0';
}

/* Calls fn for each process in h's namespace. */
static int each(const struct th_host2 *h, void (*fn)(pid_t)) {
    int n = 0;
    DIR *d = opendir("/proc");
    for (struct dirent *e; d && (e = readdir(d));) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 1)
            continue;
        char link[64], ns[64];
        snprintf(link, sizeof(link), "/proc/%ld/ns/mnt", pid);
        ssize_t k = readlink(link, ns, sizeof(ns) - 1);
        if (k <= 0)
            continue;
        ns[k] = '\0';
        if (strcmp(ns, h->ns) == 0) {
            if (fn)
                fn((pid_t)pid);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

static void kill9(pid_t pid) { kill(pid, SIGKILL); }
static void stop(pid_t pid) { kill(pid, SIGSTOP); }

int th_host2_freeze(struct th_host2 *h) { return h->pid > 0 ? each(h, stop) : 0; }

static void cont(pid_t pid) { kill(pid, SIGCONT); }

int th_host2_thaw(struct th_host2 *h) { return h->pid > 0 ? each(h, cont) : 0; }

int th_host2_count(const struct th_host2 *h) { return h->pid > 0 ? each(h, NULL) : 0; }

static int guests;
static void count_guest(pid_t pid) {
    char path[64], cmd[4096];
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, cmd, sizeof(cmd) - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return;
    for (ssize_t i = 0; i < n; i++)
        if (!cmd[i])
            cmd[i] = ' ';
    cmd[n] = '\0';
    guests += strstr(cmd, "guest=cordon-") != NULL;
}

int th_host2_guests(const struct th_host2 *h) {
    guests = 0;
    if (h->pid > 0)
        each(h, count_guest);
    return guests;
}

int th_host2_kill(struct th_host2 *h) {
    if (h->pid <= 0)
        return 0;
    int n = each(h, kill9);
    int st;
    waitpid(h->pid, &st, 0);
    for (int i = 0; i < 100 && each(h, NULL); i++)
        usleep(20000);
    h->pid = 0;
    if (held == h)
        held = NULL;
    return n;
}
