/*
** bench/bench_forward.c: GPT-2 small (random weights) forward pass at
** T = 64, 256, 1024 (B = 1): median time, tokens/s and GFLOP/s with no hooks
** and with every default hook cached (the baseline for the cache's overhead
** is the no-hook run measured in the same process), plus the time to load
** GPT-2 small from a safetensors file.
**
** FLOPs per forward: T*(24*L*C^2 + 2*C*V) for the matrix products and
** 2*L*T^2*C for causal attention (q.k and p.v over half the T x T square):
** 15.9, 64.5 and 272 GFLOP at T = 64, 256, 1024.
*/
#include "core/core.h"
#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double forward_flops(const mech_config *c, int T) {
    double C = c->d_model, L = c->n_layers, V = c->d_vocab;
    return T * (24 * L * C * C + 2 * C * V) + 2 * L * (double)T * T * C;
}

static mech_run *new_run(mech_model *m, int T, int cache_all) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, 1, T, &r, &err) || (cache_all && mech_run_cache(r, "*", &err))) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    return r;
}

static double forward_once(mech_run *r, const int32_t *ids) {
    mech_err err = {0};
    double t0 = bench_now();
    if (mech_run_forward(r, ids, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    return bench_now() - t0;
}

// Median seconds of reps forwards without hooks (*plain) and with every
// default hook cached (*cached). The two alternate, so that load from other
// processes falls on both alike and their ratio stays meaningful.
static void time_forward(mech_model *m, int T, int reps, double *plain, double *cached) {
    mech_run *a = new_run(m, T, 0), *b = new_run(m, T, 1);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int t = 0; t < T; t++) ids[t] = (int32_t)((7919u * (unsigned)t + 42u) % (unsigned)m->cfg.d_vocab);
    double va[32], vb[32];
    forward_once(a, ids); // warm-up: first touch of every buffer
    forward_once(b, ids);
    for (int i = 0; i < reps; i++) {
        va[i] = forward_once(a, ids);
        vb[i] = forward_once(b, ids);
    }
    *plain = bench_median(va, reps);
    *cached = bench_median(vb, reps);
    free(ids);
    mech_run_free(a);
    mech_run_free(b);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    double t0 = bench_now();
    if (mech_model_random(&c, 1, &m, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    printf("forward: GPT-2 small config (random weights, %lld params), B=1, kernel %s, %d threads\n",
           (long long)mech_config_n_params(&c), mech_matmul_kernel(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(stderr, "(random init %.1f s)\n", bench_now() - t0);

    // Loading: write the model once, then time memory-mapped loads.
    const char *path = "build/bench-gpt2-small.safetensors";
    struct stat sb;
    mkdir("build", 0755);
    if (stat(path, &sb) != 0 && mech_model_save(m, path, MECH_DT_F32, NULL, NULL, 0, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    double lt[5];
    for (int i = 0; i < 5; i++) {
        mech_model *l = NULL;
        double s = bench_now();
        if (mech_model_load(path, &l, &err)) {
            fprintf(stderr, "bench: %s\n", err.msg);
            return 1;
        }
        lt[i] = bench_now() - s;
        mech_model_free(l);
    }
    stat(path, &sb);
    printf("load %s (%.0f MB, mmap): median %.2f ms over 5 loads\n", path, sb.st_size / 1e6, bench_median(lt, 5) * 1e3);

    int Ts[3] = {64, 256, 1024}, reps[3] = {15, 11, 7};
    printf("%6s %12s %10s %9s   %12s %9s %9s\n", "T", "no hooks", "tokens/s", "GFLOP/s", "all cached", "GFLOP/s", "overhead");
    for (int i = 0; i < 3; i++) {
        int T = Ts[i], n = quick ? 3 : reps[i];
        double plain, cached;
        time_forward(m, T, n, &plain, &cached);
        double gf = forward_flops(&c, T) / 1e9;
        printf("%6d %9.1f ms %10.0f %9.1f   %9.1f ms %9.1f %8.1f%%\n", T, plain * 1e3, T / plain, gf / plain,
               cached * 1e3, gf / cached, (cached / plain - 1) * 100);
    }
    mech_model_free(m);
    return 0;
}
