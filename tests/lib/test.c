/* SPDX-License-Identifier: Apache-2.0 */
/* The test runner: fork per test so a crash, leak report or hang fails one test, not the file. */
#include "test.h"

#include "harness.h"

#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 256

static struct {
    const char *name;
    test_fn fn;
    int timeout_s;
} tests[MAX_TESTS];
static size_t n_tests;

void test_register(const char *name, test_fn fn, int timeout_s) {
    if (n_tests < MAX_TESTS)
        tests[n_tests++] = (typeof(tests[0])){name, fn, timeout_s};
}

static bool selected(const char *name, int argc, char **argv) {
    if (argc < 2)
        return true;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

int test_main(int argc, char **argv) {
    const char *suite = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    int failed = 0;
    for (size_t i = 0; i < n_tests; i++) {
        if (!selected(tests[i].name, argc, argv))
            continue;
        fflush(stdout);
        fflush(stderr);
        /* A private TMPDIR, removed whatever the outcome: a failing test leaves nothing behind. */
        char *tmp = th_tmpdir();
        double t0 = th_now_s();
        pid_t pid = fork();
        if (pid == 0) {
            setenv("TMPDIR", tmp, 1);
            setpgid(0, 0); /* the test's own helpers die with it on timeout */
            alarm((unsigned)tests[i].timeout_s);
            tests[i].fn();
            fflush(stdout);
            exit(0);
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        kill(-pid, SIGKILL);
        th_rmtree(tmp);
        free(tmp);
        double ms = (th_now_s() - t0) * 1000.0;
        const char *verdict = "FAIL";
        char why[64] = "";
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            verdict = "PASS";
        else if (WIFEXITED(status) && WEXITSTATUS(status) == TEST_EXIT_SKIP)
            verdict = "SKIP";
        else if (WIFSIGNALED(status))
            snprintf(why, sizeof(why), " (%s%s)", strsignal(WTERMSIG(status)),
                     WTERMSIG(status) == SIGALRM ? ": time limit" : "");
        if (!strcmp(verdict, "FAIL"))
            failed++;
        printf("%s %s.%s (%.0f ms)%s\n", verdict, suite, tests[i].name, ms, why);
        fflush(stdout);
    }
    return failed ? 1 : 0;
}

int main(int argc, char **argv) { return test_main(argc, argv); }
