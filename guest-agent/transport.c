/* SPDX-License-Identifier: Apache-2.0 */
/* agent_transport: the three ways a channel reaches the agent. The frames are the same on all. */
#include "transport.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "cleanup.h"

static int find_port_by_name(const char *name, char *dev, size_t dev_len) {
    _cleanup_closedir_ DIR *d = opendir("/sys/class/virtio-ports");
    if (!d)
        return -ENOENT;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.')
            continue;
        char path[512], got[256] = "";
        snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f || !fgets(got, sizeof(got), f))
            continue;
        got[strcspn(got, "\n")] = '\0';
        if (strcmp(got, name) == 0) {
            snprintf(dev, dev_len, "/dev/%s", de->d_name);
            return 0;
        }
    }
    return -ENOENT;
}

int agent_transport_open_serial(const char *path_or_name, cdn_err **err) {
    char dev[512];
    const char *path = path_or_name;
    if (!strchr(path_or_name, '/')) {
        if (find_port_by_name(path_or_name, dev, sizeof(dev)) < 0)
            return cdn_err_set(err, ENOENT, "no virtio-serial port named '%s'", path_or_name);
        path = dev;
    }
    int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return cdn_err_set(err, errno, "open %s: %m", path);
    return fd;
}

int agent_transport_listen_vsock(uint32_t port, cdn_err **err) {
    _cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cdn_err_set(err, errno, "vsock socket: %m");
    struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = port};
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
        return cdn_err_set(err, errno, "vsock bind port %u: %m", port);
    if (listen(fd, 4) < 0)
        return cdn_err_set(err, errno, "vsock listen: %m");
    return TAKE_FD(fd);
}

int agent_transport_accept(int listen_fd, cdn_err **err) {
    int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return errno == EAGAIN ? -EAGAIN : cdn_err_set(err, errno, "accept: %m");
    return fd;
}

int agent_transport_adopt_fd(int fd, cdn_err **err) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return cdn_err_set(err, errno, "fd %d: %m", fd);
    return fd;
}
