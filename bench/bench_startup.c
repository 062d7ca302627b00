/*
** bench/bench_startup.c: `mech run` as a whole process on GPT-2 small
** (random weights) at T = 1 and T = 1024, beside the forward pass alone
** inside this process on the same file, in the same run: what start-up
** (exec, loading, the tokenizer, page faults, writing out, exit) adds to a
** forward. Whole-process figures fork/exec the real binary (MECH_BIN, else
** ./mech) with stdout to /dev/null; CPU time, peak RSS and minor page
** faults are the child's (wait4). The in-process forward computes what `mech run` does
** without --logits: each sequence's last logits row only.
**
** MECH_BIN_BEFORE=path/to/an/older/mech times that binary too, interleaved
** with MECH_BIN in the same run, for before/after figures.
**
** Peak RSS is compared with what the run needs ("need"): the weights (mapped
** from the file), the forward's buffers (mech_run_memory's activations), one
** logits row per sequence and the process itself (the peak RSS of `mech run
** --help`: the binary, libc, the stack).
**
** Targets: T = 1 whole process <= 60 ms; T = 1024 whole process within 15 %
** of the in-process forward; peak RSS at most the need above.
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

typedef struct child_stats {
    long rss_kb, minflt; // largest seen
    double cpu[64];      // user + system seconds of each run
    int n;
} child_stats;

// One `mech run` (argv) to completion: seconds; the child's peak RSS and
// minor faults go into *cs (largest seen).
static double run_child(char *const *argv, child_stats *cs) {
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
    double dt = bench_now() - t0;
    if (ru.ru_maxrss > cs->rss_kb) cs->rss_kb = ru.ru_maxrss;
    if (ru.ru_minflt > cs->minflt) cs->minflt = ru.ru_minflt;
    if (cs->n < 64)
        cs->cpu[cs->n++] = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return dt;
}

static int32_t id_at(int t, int V) { return (int32_t)((7919u * (unsigned)t + 42u) % (unsigned)V); }

// One T-token input, for the child's --ids and the in-process forward.
static int32_t *make_ids(int T, int V, char **list) {
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    char *p = *list = malloc((size_t)T * 8 + 1);
    for (int t = 0; t < T; t++) {
        ids[t] = id_at(t, V);
        p += sprintf(p, "%s%d", t ? "," : "", (int)ids[t]);
    }
    return ids;
}

// Medians over reps rounds, each of one forward (B = 1, T tokens, the last
// logits row only, as `mech run` computes) on the already loaded model m,
// then `mech run --model path --ids ...` by each of the n_bins binaries:
// interleaved, so that all see the same machine even when its load moves.
// A first round warms the page cache and the run.
static double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void time_all(const mech_model *m, const char *const *bins, int n_bins, const char *path, int T, int reps,
                     double *fwd, double *fwd_cpu, double *whole, child_stats *cs) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, 1, T, &r, &err) || mech_run_set_logits_rows(r, MECH_LOGITS_LAST, 1, &err))
        die("mech_run_new", &err);
    char *list;
    int32_t *ids = make_ids(T, m->cfg.d_vocab, &list);
    double vf[64], vc[64], vw[2][64];
    for (int i = -1; i < reps; i++) {
        double t0 = bench_now(), c0 = cpu_self();
        if (mech_run_forward(r, ids, &err)) die("forward", &err);
        if (i >= 0) vf[i] = bench_now() - t0, vc[i] = cpu_self() - c0;
        for (int b = 0; b < n_bins; b++) {
            char *argv[] = {(char *)bins[b], "run", "--model", (char *)path, "--ids", list, NULL};
            if (i < 0) cs[b] = (child_stats){0};
            child_stats warm = {0};
            double dt = run_child(argv, i < 0 ? &warm : &cs[b]);
            if (i >= 0) vw[b][i] = dt;
        }
    }
    *fwd = bench_median(vf, reps);
    *fwd_cpu = bench_median(vc, reps);
    for (int b = 0; b < n_bins; b++) whole[b] = bench_median(vw[b], reps);
    free(ids);
    free(list);
    mech_run_free(r);
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
    // The file's pages are dropped from the page cache and read again by
    // the load below, through the model's mapping: how a file got into the
    // cache decides the size of its pages there (a `cp` leaves 4 KiB pages,
    // which cost every run ~20 ms more in page faults), so every run of this
    // bench starts from the same state, that of a model mech read from disk.
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) die(path, &err);
    const char *bins[2] = {bin, getenv("MECH_BIN_BEFORE")};
    int n_bins = bins[1] && bins[1][0] ? 2 : 1;
    printf("startup: `%s run --ids ...` on GPT-2 small (random weights), whole process (median) vs in-process forward "
           "(last logits row, as mech run), %d threads\n", bin, (int)sysconf(_SC_NPROCESSORS_ONLN));
    if (n_bins == 2) printf("before: %s (same runs, interleaved)\n", bins[1]);
    // CPU time (user + system, both threads; the child's, and this
    // process's over its forward) says what a run costs when a shared
    // machine's load makes wall times wander
    printf("%6s %-7s %14s %14s %10s %11s %11s %11s %10s %12s\n", "T", "binary", "whole process", "forward only",
           "overhead", "CPU time", "fwd CPU", "peak RSS", "minflt", "need");
    int Ts[2] = {1, 1024}, reps[2] = {20, 5};
    for (int i = 0; i < 2; i++) {
        int T = Ts[i], n = quick ? 3 : reps[i];
        double fwd, fwd_cpu, whole[2];
        child_stats cs[2];
        time_all(m, bins, n_bins, path, T, n, &fwd, &fwd_cpu, whole, cs);
        // what the run needs: weights + the forward's buffers + one logits
        // row, plus the process itself (the peak RSS of `mech run --help`)
        mech_run_bytes need;
        if (mech_run_memory(m, 1, T, NULL, 0, 0, &need, &err)) die("mech_run_memory", &err);
        child_stats idle = {0};
        char *help[] = {(char *)bin, "run", "--help", NULL};
        run_child(help, &idle);
        double need_mb = (need.weights + need.activations + (double)m->cfg.d_vocab * sizeof(float)) / (1024.0 * 1024.0) +
                         idle.rss_kb / 1024.0;
        for (int b = 0; b < n_bins; b++)
            printf("%6d %-7s %11.1f ms %11.1f ms %9.1f%% %8.1f ms %8.1f ms %8.0f MB %10ld %9.0f MB\n", T,
                   b ? "before" : "after", whole[b] * 1e3, fwd * 1e3, (whole[b] / fwd - 1) * 100,
                   bench_median(cs[b].cpu, cs[b].n) * 1e3, fwd_cpu * 1e3, cs[b].rss_kb / 1024.0, cs[b].minflt,
                   need_mb);
    }
    mech_model_free(m);
    return 0;
}
