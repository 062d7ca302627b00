/*
** bench/bench_startup.c: `mech run` as a whole process on GPT-2 small
** (random weights) at T = 1 and T = 1024, beside the forward pass alone
** inside this process on the same file, in the same run: what start-up
** (exec, loading, the tokenizer, page faults, writing out) adds to a
** forward. Whole-process figures fork/exec the real binary (MECH_BIN, else
** ./mech) with stdout to /dev/null; peak RSS is the child's (wait4).
**
** Targets: T = 1 whole process <= 60 ms; T = 1024 whole process within 15 %
** of the in-process forward.
*/
#include "core/core.h"
#include "bench/bench.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what, const mech_err *err) {
    fprintf(stderr, "bench_startup: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

// One `mech run` (argv) to completion: seconds, *rss_kb = the child's peak.
static double run_child(char *const *argv, long *rss_kb) {
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid < 0) die("fork", NULL);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    struct rusage ru;
    if (wait4(pid, &st, 0, &ru) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) die(argv[0], NULL);
    *rss_kb = ru.ru_maxrss;
    return bench_now() - t0;
}

static int32_t id_at(int t, int V) { return (int32_t)((7919u * (unsigned)t + 42u) % (unsigned)V); }

// Median whole-process seconds of `mech run --model path --ids ...` (T ids),
// *rss_kb the largest peak RSS seen. A first run warms the page cache.
static double time_process(const char *bin, const char *path, int T, int V, int reps, long *rss_kb) {
    char *ids = malloc((size_t)T * 8 + 1), *p = ids;
    for (int t = 0; t < T; t++) p += sprintf(p, "%s%d", t ? "," : "", (int)id_at(t, V));
    char *argv[] = {(char *)bin, "run", "--model", (char *)path, "--ids", ids, NULL};
    double v[32];
    long rss = 0;
    run_child(argv, &rss);
    *rss_kb = 0;
    for (int i = 0; i < reps; i++) {
        v[i] = run_child(argv, &rss);
        if (rss > *rss_kb) *rss_kb = rss;
    }
    free(ids);
    return bench_median(v, reps);
}

// Median seconds of one forward (B = 1, T tokens) on an already loaded model.
static double time_forward(const mech_model *m, int T, int reps) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, 1, T, &r, &err)) die("mech_run_new", &err);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int t = 0; t < T; t++) ids[t] = id_at(t, m->cfg.d_vocab);
    double v[32];
    if (mech_run_forward(r, ids, &err)) die("forward", &err); // warm-up
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        if (mech_run_forward(r, ids, &err)) die("forward", &err);
        v[i] = bench_now() - t0;
    }
    free(ids);
    mech_run_free(r);
    return bench_median(v, reps);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    const char *bin = getenv("MECH_BIN") ? getenv("MECH_BIN") : "./mech";
    // The same file as bench_forward's load figure: written once, reused.
    const char *path = "build/bench-gpt2-small.safetensors";
    mech_err err = {0};
    struct stat sb;
    mkdir("build", 0755);
    if (stat(path, &sb) != 0) {
        mech_config c = mech_config_gpt2_small();
        mech_model *w = NULL;
        if (mech_model_random(&c, 1, &w, &err) || mech_model_save(w, path, MECH_DT_F32, NULL, NULL, 0, &err))
            die(path, &err);
        mech_model_free(w);
    }
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) die(path, &err);
    printf("startup: `%s run` on GPT-2 small (random weights), whole process vs in-process forward, %d threads\n",
           bin, (int)sysconf(_SC_NPROCESSORS_ONLN));
    printf("%6s %14s %14s %10s %12s\n", "T", "whole process", "forward only", "overhead", "peak RSS");
    int Ts[2] = {1, 1024}, reps[2] = {15, 5};
    for (int i = 0; i < 2; i++) {
        int T = Ts[i], n = quick ? 3 : reps[i];
        long rss = 0;
        double fwd = time_forward(m, T, n);
        double whole = time_process(bin, path, T, m->cfg.d_vocab, n, &rss);
        printf("%6d %11.1f ms %11.1f ms %9.1f%% %9.0f MB\n", T, whole * 1e3, fwd * 1e3, (whole / fwd - 1) * 100,
               rss / 1024.0);
    }
    mech_model_free(m);
    return 0;
}
