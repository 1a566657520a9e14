/* SPDX-License-Identifier: Apache-2.0 */
/* Running the cordon CLI from tests. */
#include "cordon_cli.h"

#include <jansson.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "qemu.h"
#include "test.h"

const char *th_cordon_bin(void) {
    static char bin[4200];
    snprintf(bin, sizeof(bin), "%s", th_agent_path());
    snprintf(strrchr(bin, '/') + 1, 64, "cordon");
    return bin;
}

/* `cordon SUB FLAG VALUE ARGS...`, its outputs in DIR/TAG.{out,err}. */
static pid_t spawn(const char *sub, const char *flag, const char *value, const char *dir,
                   const char *tag, const char *const *args) {
    char out[4300], errp[4300];
    snprintf(out, sizeof(out), "%s/%s.out", dir, tag);
    snprintf(errp, sizeof(errp), "%s/%s.err", dir, tag);
    const char *bin = th_cordon_bin();
    pid_t pid = fork();
    if (pid < 0)
        FAIL("fork");
    if (pid == 0) {
        int i = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int o = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        dup2(i, 0);
        dup2(o, 1);
        dup2(e, 2);
        const char *argv[48] = {bin, sub, flag, value};
        size_t n = 4;
        if (strcmp(sub, "run") == 0 && strcmp(flag, "--state") == 0) { /* its own daemon's */
            argv[n++] = "--images";
            argv[n++] = th_images_dir();
        }
        for (size_t k = 0; args[k] && n < 47; k++)
            argv[n++] = args[k];
        argv[n] = NULL;
        execv(bin, (char **)argv);
        _exit(127);
    }
    return pid;
}

pid_t th_cordon_spawn(const char *sub, const char *state, const char *tag,
                      const char *const *args) {
    return spawn(sub, "--state", state, state, tag, args);
}

pid_t th_cordon_spawn_at(const char *addr, const char *sub, const char *dir, const char *tag,
                         const char *const *args) {
    return spawn(sub, "--addr", addr, dir, tag, args);
}

int th_cordon_wait(pid_t pid) {
    int status;
    if (waitpid(pid, &status, 0) < 0)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

char *th_cordon_output(const char *state, const char *tag, const char *ext) {
    char path[4300];
    snprintf(path, sizeof(path), "%s/%s.%s", state, tag, ext);
    return th_read_file(path);
}

static struct th_ran ran(pid_t pid, const char *dir, const char *tag) {
    int code = th_cordon_wait(pid);
    return (struct th_ran){.code = code,
                           .out = th_cordon_output(dir, tag, "out"),
                           .err = th_cordon_output(dir, tag, "err")};
}

struct th_ran th_cordon(const char *sub, const char *state, const char *tag,
                        const char *const *args) {
    return ran(th_cordon_spawn(sub, state, tag, args), state, tag);
}

struct th_ran th_cordon_at(const char *addr, const char *sub, const char *dir, const char *tag,
                           const char *const *args) {
    return ran(th_cordon_spawn_at(addr, sub, dir, tag, args), dir, tag);
}

void th_ran_free(struct th_ran *r) {
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

char *th_json_str(const char *text, const char *key) {
    json_error_t je;
    json_t *o = json_loads(text, 0, &je);
    const char *v = json_string_value(json_object_get(o, key));
    char *out = v ? strdup(v) : NULL;
    json_decref(o);
    return out;
}
