/* SPDX-License-Identifier: Apache-2.0 */
/* bench/diff: cordon's host-side diff against `git diff --stat`, on a generated repository of
 * FILES files of which the "guest" edits EDITS. Medians over RUNS runs, in one process run:
 *   (a) cdn_workspace_commit_tree on the tree as it comes back from a guest (the worktree sent
 *       through the archive writer, reader and extractor, the same code the VM boundary runs,
 *       then EDITS files appended to): stage against the base, diff with rename detection,
 *       patch, commit on the task branch, check the result out in the worktree;
 *   (b) `git diff --stat` in a clone at the base with the same edits, its index refreshed.
 * Writes bench/results/diff.json. */
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "archive.h"
#include "cleanup.h"
#include "harness.h"
#include "test.h"
#include "workspace.h"

#define FILES 10000
#define DIRS 100
#define EDITS 100
#define RUNS 9

static void generate(const char *up) {
    th_sh("mkdir -p %s", up);
    char path[4400];
    for (int d = 0; d < DIRS; d++) {
        snprintf(path, sizeof(path), "%s/dir%03d", up, d);
        mkdir(path, 0755);
        for (int f = 0; f < FILES / DIRS; f++) {
            snprintf(path, sizeof(path), "%s/dir%03d/file%03d.txt", up, d, f);
            FILE *fp = fopen(path, "w");
            if (!fp)
                FAIL("creating %s", path);
            for (int line = 0; line < 20; line++)
                fprintf(fp, "dir %d file %d line %d: some text that looks like code;\n", d, f,
                        line);
            fclose(fp);
        }
    }
    th_sh("cd %s && git -c init.defaultBranch=main init -q . && git add -A && git -c user.name=b "
          "-c user.email=b@b commit -qm base",
          up);
}

/* The EDITS files the guest changes: spread over the tree. */
static void edit(const char *root) {
    char path[4400];
    for (int i = 0; i < EDITS; i++) {
        int d = i % DIRS, f = (i * 37) % (FILES / DIRS);
        snprintf(path, sizeof(path), "%s/dir%03d/file%03d.txt", root, d, f);
        FILE *fp = fopen(path, "a");
        if (!fp)
            FAIL("editing %s", path);
        fprintf(fp, "a line the guest added\n");
        fclose(fp);
    }
}

/* worktree -> tar -> bounded reader -> extractor, as the VM boundary does it (both ways). */
static void round_trip(const char *from, const char *to, struct cdn_workspace_listing *listing) {
    th_sh("mkdir -p %s", to);
    _cleanup_close_ int src = open(from, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int dst = open(to, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *excludes[] = {".git"};
    struct cdn_archive_writer *w = NULL;
    struct cdn_archive_extractor *x = NULL;
    struct cdn_archive_reader *r = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_archive_writer_new(src, excludes, 1, &w, &err), err);
    ASSERT_OK(cdn_archive_extractor_new(dst, &x, &err), err);
    struct cdn_archive_sink extract, sink;
    cdn_archive_extractor_sink(x, &extract);
    struct cdn_workspace_recorder rec;
    if (listing) /* the host side records what it extracts, as task_collect_workspace does */
        cdn_workspace_recorder_init(&rec, listing, &extract, &sink);
    else
        sink = extract;
    struct cdn_archive_limits lim = {0};
    cdn_archive_limits_fill(&lim);
    ASSERT_OK(cdn_archive_reader_new(&lim, &sink, &r), err);
    static uint8_t buf[1 << 16];
    for (ssize_t n; (n = cdn_archive_writer_read(w, buf, sizeof(buf), &err)) != 0;) {
        ASSERT_OK(n, err);
        ASSERT_OK(cdn_archive_reader_feed(r, buf, (size_t)n, &err), err);
    }
    ASSERT_OK(cdn_archive_reader_finish(r, &err), err);
    ASSERT_OK(cdn_archive_extractor_finish(x, &err), err);
    cdn_archive_reader_free(r);
    cdn_archive_extractor_free(x);
    cdn_archive_writer_free(w);
}

static double cordon_diff_s(const char *tmp, const char *up, int run, size_t *files,
                            double *diff_only_s) {
    char state[4300], dir[4300], result[4300], id[32];
    snprintf(state, sizeof(state), "%s/state", tmp);
    snprintf(id, sizeof(id), "run%d", run);
    snprintf(dir, sizeof(dir), "%s/wt%d", tmp, run);
    snprintf(result, sizeof(result), "%s/result%d", tmp, run);
    struct cdn_workspace_opts o = {
        .state_dir = state, .repo = up, .ref = "main", .dir = dir, .task_id = id};
    struct cdn_workspace *ws = NULL;
    cdn_err *err = NULL;
    ASSERT_OK(cdn_workspace_open(&o, &ws, &err), err);
    round_trip(dir, result, NULL); /* to the guest ... */
    edit(result);                  /* ... where it edits ... */
    char back[4400];
    snprintf(back, sizeof(back), "%s.back", result);
    struct cdn_workspace_listing listing = {0};
    round_trip(result, back, &listing); /* ... and back */
    struct cdn_workspace_result res;
    double t0 = th_now_s();
    ASSERT_OK(cdn_workspace_commit_tree(ws, back, &listing, "bench", &res, &err), err);
    double t = th_now_s() - t0;
    *files = res.stats.files;
    *diff_only_s = (double)res.diff_us / 1e6;
    cdn_workspace_result_free(&res);
    cdn_workspace_listing_free(&listing);
    cdn_workspace_free(ws);
    th_sh("rm -rf %s %s %s", dir, result, back);
    return t;
}

static double git_diff_stat_s(const char *tmp, const char *up, int run) {
    char clone[4300];
    snprintf(clone, sizeof(clone), "%s/clone%d", tmp, run);
    th_sh("git clone -q %s %s && sleep 1 && git -C %s update-index -q --refresh", up, clone, clone);
    edit(clone);
    double t0 = th_now_s();
    th_sh("git -C %s diff --stat >/dev/null", clone);
    double t = th_now_s() - t0;
    th_sh("rm -rf %s", clone);
    return t;
}

int main(void) {
    const char *out_path = getenv("BENCH_OUT") ? getenv("BENCH_OUT") : "bench/results/diff.json";
    _cleanup_free_ char *tmp = th_tmpdir();
    char up[4300];
    snprintf(up, sizeof(up), "%s/upstream", tmp);
    generate(up);
    th_sh("mkdir -p %s/state", tmp);
    double a[RUNS], b[RUNS], d[RUNS];
    size_t files = 0;
    for (int i = 0; i < RUNS; i++) {
        a[i] = cordon_diff_s(tmp, up, i, &files, &d[i]);
        b[i] = git_diff_stat_s(tmp, up, i);
    }
    if (files != EDITS)
        FAIL("cordon saw %zu changed files, not %d", files, EDITS);
    double ma = th_median(a, RUNS), mb = th_median(b, RUNS), md = th_median(d, RUNS);
    printf("diff benchmark: %d files, %d edited, medians of %d runs\n", FILES, EDITS, RUNS);
    printf("  (a) cordon's diff: stage + diff + stats + patch     %7.1f ms\n", md * 1000);
    printf("      and with the commit and the worktree's checkout %7.1f ms\n", ma * 1000);
    printf("  (b) git diff --stat on the same edits               %7.1f ms\n", mb * 1000);
    printf("  (a)/(b) = %.2f  (goal <= 1.2); with commit and checkout %.2f\n", md / mb, ma / mb);
    json_t *root = json_object();
    struct utsname u;
    uname(&u);
    json_object_set_new(root, "benchmark", json_string("diff"));
    json_object_set_new(root, "host", json_string(u.release));
    json_object_set_new(root, "files", json_integer(FILES));
    json_object_set_new(root, "edited", json_integer(EDITS));
    json_object_set_new(root, "runs", json_integer(RUNS));
    json_object_set_new(root, "cordon_diff_ms", json_real(md * 1000));
    json_object_set_new(root, "cordon_with_commit_ms", json_real(ma * 1000));
    json_object_set_new(root, "ratio_with_commit", json_real(ma / mb));
    json_object_set_new(root, "git_diff_stat_ms", json_real(mb * 1000));
    json_object_set_new(root, "ratio", json_real(md / mb));
    json_object_set_new(
        root, "ratio_means",
        json_string("cordon's host-side diff (stage, diff, stats, patch) / git diff --stat, "
                    "lower is better; goal <= 1.2"));
    json_object_set_new(root, "tmpdir", json_string(getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp"));
    if (json_dump_file(root, out_path, JSON_INDENT(2) | JSON_SORT_KEYS) < 0)
        FAIL("writing %s", out_path);
    json_decref(root);
    printf("  written to %s\n", out_path);
    th_rmtree(tmp);
    return 0;
}
