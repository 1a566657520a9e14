/* SPDX-License-Identifier: Apache-2.0 */
/* cordond: serves the cordon.v1 API until SIGTERM or SIGINT, then stops its sandboxes (their
 * results taken) and exits. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

static void usage(FILE *f) {
    fputs("usage: cordond [--config FILE] [--socket PATH] [--socket-mode OCTAL] [--listen "
          "HOST:PORT --tls-cert F --tls-key F --tls-client-ca F] [--state DIR] [--images DIR] "
          "[--policies DIR] [--default-policy NAME] [--max-running N] [--accel auto|kvm|tcg] "
          "[--boot-timeout S] [--approval-timeout S]\n",
          f);
}

int main(int argc, char **argv) {
    struct cli_daemon_config c;
    cli_daemon_config_defaults(&c);
    const char *env_addr = getenv("CORDON_ADDR");
    if (env_addr && strncmp(env_addr, "unix:", 5) == 0)
        c.socket = env_addr + 5;
    /* The configuration file first, flags over it. */
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0) {
            cdn_err *e = NULL;
            if (cli_daemon_config_load(&c, argv[i + 1], &e) < 0) {
                fprintf(stderr, "cordond: %s\n", cdn_err_msg(e));
                cdn_err_free(e);
                cli_daemon_config_release(&c);
                return 2;
            }
        }
    enum {
        O_CONFIG = 256,
        O_MODE,
        O_CERT,
        O_KEY,
        O_CA,
        O_POLICIES,
        O_DEFPOL,
        O_MAXRUN,
        O_BOOT,
        O_APPROVAL
    };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"socket", required_argument, NULL, 's'},
        {"socket-mode", required_argument, NULL, O_MODE},
        {"listen", required_argument, NULL, 'l'},
        {"tls-cert", required_argument, NULL, O_CERT},
        {"tls-key", required_argument, NULL, O_KEY},
        {"tls-client-ca", required_argument, NULL, O_CA},
        {"state", required_argument, NULL, 'S'},
        {"images", required_argument, NULL, 'I'},
        {"policies", required_argument, NULL, O_POLICIES},
        {"default-policy", required_argument, NULL, O_DEFPOL},
        {"max-running", required_argument, NULL, O_MAXRUN},
        {"accel", required_argument, NULL, 'a'},
        {"boot-timeout", required_argument, NULL, O_BOOT},
        {"approval-timeout", required_argument, NULL, O_APPROVAL},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_CONFIG: break;
        case 's': c.socket = optarg; break;
        case O_MODE: c.socket_mode = (unsigned)strtoul(optarg, NULL, 8); break;
        case 'l': c.listen = optarg; break;
        case O_CERT: c.tls_cert = optarg; break;
        case O_KEY: c.tls_key = optarg; break;
        case O_CA: c.tls_client_ca = optarg; break;
        case 'S': c.state_dir = optarg; break;
        case 'I': c.images_dir = optarg; break;
        case O_POLICIES: c.policies_dir = optarg; break;
        case O_DEFPOL: c.default_policy = optarg; break;
        case O_MAXRUN: c.max_running = (unsigned)atoi(optarg); break;
        case 'a': c.accel = optarg; break;
        case O_BOOT: c.boot_timeout_s = (unsigned)atoi(optarg); break;
        case O_APPROVAL: c.approval_timeout_s = (unsigned)atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default:
            usage(stderr);
            cli_daemon_config_release(&c);
            return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        cli_daemon_config_release(&c);
        return 2;
    }
    /* Signals are taken synchronously: blocked here, before any thread exists. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct cli_daemon *d;
    cdn_err *e = NULL;
    if (cli_daemon_start(&c, &d, &e) < 0) {
        fprintf(stderr, "cordond: %s\n", cdn_err_msg(e));
        cdn_err_free(e);
        cli_daemon_config_release(&c);
        return 1;
    }
    char line[600];
    snprintf(line, sizeof(line), "serving on %s%s%s (state %s, up to %u VMs at once)",
             c.socket ? c.socket : "", c.socket && c.listen ? " and " : "",
             c.listen ? c.listen : "", c.state_dir, c.max_running);
    cli_daemon_log(NULL, line);
    int sig;
    do
        sigwait(&set, &sig);
    while (sig == SIGHUP);
    cli_daemon_log(NULL, "stopping");
    cli_daemon_stop(d);
    cli_daemon_log(NULL, "stopped");
    cli_daemon_config_release(&c);
    return 0;
}
