/*
** bench/bench_shard.c: what one shard of a Slurm patching sweep costs
** (docs/cluster.md): GPT-2 small (random weights), the IOI dataset, the
** heads sweep (12 x 12 = 144 patches per pair, as examples/slurm's default),
** per pair with 1 thread (a task of one CPU: wall and CPU seconds, which
** stay put when other processes share the machine) and with one thread per
** CPU, medians over pairs; and a task's fixed cost, loading the model from
** a file. Then the cost of a 1,000-pair sweep over N one-CPU array tasks,
** computed from those figures: task + ceil(1000 / N) pairs.
** `--quick`: fewer pairs and loads.
*/
#include "interp/interp.h"
#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void die(const mech_err *err) {
    fprintf(stderr, "bench: %s\n", err->msg);
    exit(1);
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// One pair as `mech patch` does it: the clean and corrupted caches, then
// the sweep. Adds its wall and CPU seconds to *wall and *cpu.
static void one_pair(const mech_model *m, const mech_pair *q, double *wall, double *cpu) {
    mech_err err = {0};
    mech_patch_opts o = {.metric = MECH_PATCH_LOGIT_DIFF, .answer = q->answer, .wrong = q->wrong, .pos = -1};
    mech_patch *p = NULL;
    mech_patch_result r = {0};
    double t0 = bench_now(), c0 = cpu_now();
    if (mech_patch_new(m, q->clean, q->n, q->corrupt, q->n, &o, &p, &err) ||
        mech_patch_sweep(p, MECH_PATCH_HEAD_OUT, &r, &err))
        die(&err);
    *wall += bench_now() - t0, *cpu += cpu_now() - c0;
    mech_patch_result_deinit(&r);
    mech_patch_free(p);
}

// Medians over pairs[0..n) with the given thread count: wall and CPU seconds.
static void per_pair(const mech_model *m, const mech_pair *pairs, int n, int threads, double *wall, double *cpu) {
    double w[16], c[16];
    mech_pool_set_default(threads);
    for (int i = 0; i < n; i++) {
        w[i] = c[i] = 0;
        one_pair(m, &pairs[i], &w[i], &c[i]);
    }
    mech_pool_set_default(0);
    *wall = bench_median(w, n), *cpu = bench_median(c, n);
}

static void hms(char *b, size_t n, double s) {
    if (s < 120) snprintf(b, n, "%.0f s", s);
    else if (s < 3600) snprintf(b, n, "%.1f min", s / 60);
    else snprintf(b, n, "%.1f h", s / 3600);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    int n_pairs = quick ? 3 : 5, n_loads = quick ? 1 : 3;
    int cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    mech_err err = {0};
    mech_config c = mech_config_gpt2_small();
    mech_model *m = NULL;
    mech_tokenizer *tok = NULL;
    mech_pair *pairs = NULL;
    if (mech_model_random(&c, 1, &m, &err) || mech_tokenizer_gpt2(&tok, &err) ||
        mech_dataset_ioi(tok, n_pairs + 1, 1, &pairs, &err))
        die(&err);
    double p1, c1, pc, cc;
    per_pair(m, pairs + n_pairs, 1, 1, &p1, &c1); // warm-up
    per_pair(m, pairs, n_pairs, 1, &p1, &c1);
    per_pair(m, pairs, quick ? 1 : 3, cpus, &pc, &cc);
    // A task's fixed cost: loading the model and its first pair, less a
    // pair (the page faults of a fresh model land in the first pair). The
    // file is in the page cache, as on a node that ran the sweep's previous
    // task; a cold read from a shared file system adds its own time.
    char path[] = "/tmp/mech-bench-shard-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return perror("mkstemp"), 1;
    close(fd);
    if (mech_model_save(m, path, MECH_DT_F32, NULL, NULL, 0, &err)) die(&err);
    double tl[8], cl[8];
    mech_pool_set_default(1);
    for (int i = 0; i < n_loads; i++) {
        mech_model *l = NULL;
        double t0 = bench_now(), c0 = cpu_now();
        if (mech_model_load(path, &l, &err)) die(&err);
        tl[i] = bench_now() - t0, cl[i] = cpu_now() - c0;
        one_pair(l, &pairs[0], &tl[i], &cl[i]);
        tl[i] -= p1, cl[i] -= c1;
        mech_model_free(l);
    }
    mech_pool_set_default(0);
    remove(path);
    double load = bench_median(tl, n_loads), load_cpu = bench_median(cl, n_loads);
    printf("shard: GPT-2 small (random weights), IOI pairs of %d tokens, heads sweep (%d patches per pair), "
           "kernel %s\n", pairs[0].n, c.n_layers * c.n_heads, mech_matmul_kernel());
    printf("  per pair, 1 thread:    %6.2f s wall, %6.2f s CPU  (median of %d pairs)\n", p1, c1, n_pairs);
    printf("  per pair, %d threads:   %6.2f s wall              (%.2fx the 1-thread wall time)\n", cpus, pc, p1 / pc);
    printf("  per task (load + first-pair faults): %.2f s wall, %.2f s CPU\n", load, load_cpu);
    printf("  wall above CPU means other processes shared the CPUs; the table uses CPU seconds, as on an\n"
           "  unloaded CPU per task.\n");
    printf("  1,000 pairs over N one-CPU array tasks (computed: task + ceil(1000/N) pairs; no queue wait):\n");
    for (int n = 1; n <= 64; n *= 2) {
        char a[32];
        hms(a, sizeof a, load_cpu + (1000 + n - 1) / n * c1);
        printf("  %6d tasks  %10s\n", n, a);
    }
    mech_pairs_free(pairs, n_pairs + 1);
    mech_tokenizer_free(tok);
    mech_model_free(m);
    return 0;
}
