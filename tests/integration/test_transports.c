/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's other transports: --serial on a raw terminal (what a virtio-serial port looks like
 * to the agent: a character device it opens by path), and --vsock where the host kernel can loop
 * vsock back to itself. The frames are the same on all of them. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "cleanup.h"
#include "harness.h"
#include "test.h"

static pid_t spawn_agent(const char *flag, const char *value) {
    pid_t pid = fork();
    ASSERT_TRUE(pid >= 0);
    if (pid == 0) {
        execl(th_agent_path(), th_agent_path(), flag, value, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_agent(pid_t pid) {
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static void exercise(struct cdn_channel *ch) {
    struct th_output o = {0};
    const char *argv[] = {"sh", "-c", "echo over-the-port; exit 5", NULL};
    struct cdn_exec_result r = th_run(ch, &o, argv);
    ASSERT_EQ(r.exit_code, 5);
    ASSERT_STREQ(th_output_str(&o, 1), "over-the-port\n");
    th_output_free(&o);
}

/* A raw pty stands in for a virtio-serial port: a character device the agent opens by path.
 * Returns the master; *slave_name names the device, and *slave keeps its raw settings alive. */
static int open_raw_pty(char *slave_name, size_t len, int *slave) {
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    ASSERT_TRUE(master >= 0);
    ASSERT_EQ(grantpt(master), 0);
    ASSERT_EQ(unlockpt(master), 0);
    ASSERT_EQ(ptsname_r(master, slave_name, len), 0);
    /* No echo, no line editing, 8-bit clean, as a virtio-serial port is. */
    *slave = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios t;
    ASSERT_EQ(tcgetattr(*slave, &t), 0);
    cfmakeraw(&t);
    ASSERT_EQ(tcsetattr(*slave, TCSANOW, &t), 0);
    return master;
}

TEST(serial_port_by_path) {
    char name[128];
    _cleanup_close_ int slave = -1;
    _cleanup_close_ int master = open_raw_pty(name, sizeof(name), &slave);
    pid_t pid = spawn_agent("--serial", name);
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    struct cdn_channel_opts opts = {.name = "serial-test"};
    ASSERT_OK(cdn_channel_open(TAKE_FD(master), &opts, &ch, &err), err);
    exercise(ch);
    /* Every byte value must cross the port untouched. */
    _cleanup_free_ char *dir = th_tmpdir();
    char path[4200];
    snprintf(path, sizeof(path), "%s/bytes", dir);
    uint8_t all[256 * 64];
    for (size_t i = 0; i < sizeof(all); i++)
        all[i] = (uint8_t)i;
    ASSERT_OK(cdn_channel_file_write(ch, path, 0644, all, sizeof(all), 10000, &err), err);
    _cleanup_free_ char *back = th_read_file(path);
    ASSERT_TRUE(memcmp(back, all, sizeof(all)) == 0);
    th_rmtree(dir);
    cdn_channel_free(ch);
    stop_agent(pid);
}

/* In a booting guest the port can appear after the agent starts: it must keep trying. */
TEST(serial_port_that_appears_later) {
    _cleanup_free_ char *dir = th_tmpdir();
    char link[4200];
    snprintf(link, sizeof(link), "%s/port", dir);
    pid_t pid = spawn_agent("--serial", link);
    usleep(300000);
    ASSERT_EQ(waitpid(pid, NULL, WNOHANG), 0); /* still there, retrying */
    char name[128];
    _cleanup_close_ int slave = -1;
    _cleanup_close_ int master = open_raw_pty(name, sizeof(name), &slave);
    ASSERT_EQ(symlink(name, link), 0);
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    struct cdn_channel_opts opts = {.name = "serial-late", .handshake_timeout_ms = 5000};
    ASSERT_OK(cdn_channel_open(TAKE_FD(master), &opts, &ch, &err), err);
    exercise(ch);
    cdn_channel_free(ch);
    stop_agent(pid);
    th_rmtree(dir);
}

TEST(vsock_where_the_kernel_loops_it_back) {
    const unsigned port = 40000 + (unsigned)(getpid() % 20000);
    char port_s[16];
    snprintf(port_s, sizeof(port_s), "%u", port);
    pid_t pid = spawn_agent("--vsock", port_s);
    _cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        stop_agent(pid);
        SKIP("no AF_VSOCK on this host (%s)", strerror(errno));
    }
    struct sockaddr_vm addr = {
        .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_LOCAL, .svm_port = port};
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int r = -1;
    for (int i = 0; i < 20 && r < 0; i++) { /* the agent may not be listening yet */
        r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
        if (r < 0 && errno != ECONNREFUSED && errno != ECONNRESET)
            break;
        if (r < 0)
            usleep(50000);
    }
    if (r < 0) {
        int e = errno;
        stop_agent(pid);
        SKIP("vsock loopback unavailable on this host (connect to CID %u: %s); the agent's "
             "vsock listener is exercised in guests with vhost-vsock",
             VMADDR_CID_LOCAL, strerror(e));
    }
    struct cdn_channel *ch = NULL;
    cdn_err *err = NULL;
    struct cdn_channel_opts opts = {.name = "vsock-test"};
    ASSERT_OK(cdn_channel_open(TAKE_FD(fd), &opts, &ch, &err), err);
    exercise(ch);
    cdn_channel_free(ch);
    stop_agent(pid);
}
