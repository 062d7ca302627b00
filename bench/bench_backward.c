/*
** bench/bench_backward.c: GPT-2 small (random weights) forward pass against
** forward + backward of the mean next-token loss, at B=4, T=64 and B=1,
** T=1024, 2 threads, medians. The backward computes every parameter's
** gradient (as training needs) and, in a second line, only the activations'
** (as attribution patching needs). Target: forward + backward <= 3x forward.
**
**   build/bench/bench_backward [--quick]
*/
#include "core/core.h"
#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const mech_err *err) {
    fprintf(stderr, "bench: %s\n", err->msg);
    exit(1);
}

static mech_run *new_run(mech_model *m, int B, int T, int grad) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_set_threads(r, 2, &err) ||
        (grad && mech_run_enable_grad(r, grad, &err)))
        die(&err);
    return r;
}

// Seconds of one forward, and of the backward after it when bwd is not NULL.
static double step(mech_run *r, const int32_t *ids, double *bwd) {
    mech_err err = {0};
    double t0 = bench_now();
    if (mech_run_forward(r, ids, &err)) die(&err);
    double t1 = bench_now();
    if (bwd) {
        mech_metric mt = {.kind = MECH_METRIC_LOSS};
        double loss;
        if (mech_run_backward(r, &mt, &loss, &err)) die(&err);
        *bwd = bench_now() - t1;
    }
    return t1 - t0;
}

static void bench_shape(mech_model *m, int B, int T, int reps) {
    int32_t *ids = malloc((size_t)B * T * sizeof *ids);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)((7919u * (unsigned)i + 42u) % (unsigned)m->cfg.d_vocab);
    mech_run *plain = new_run(m, B, T, 0);
    double fw[16], gf[2][16], gb[2][16];
    step(plain, ids, NULL); // warm-up: first touch of every buffer
    for (int mode = 0; mode < 2; mode++) {
        // one run at a time: a grad run of T = 1024 holds about 2 GB
        mech_run *g = new_run(m, B, T, mode ? MECH_GRAD_ACTS : MECH_GRAD_PARAMS);
        double b;
        step(g, ids, &b);
        for (int i = 0; i < reps; i++) {
            // alternate, so that load from other processes falls on both alike
            if (mode == 0) fw[i] = step(plain, ids, NULL);
            gf[mode][i] = step(g, ids, &gb[mode][i]);
            gb[mode][i] += gf[mode][i];
        }
        mech_run_free(g);
    }
    double f = bench_median(fw, reps);
    for (int mode = 0; mode < 2; mode++) {
        double gfm = bench_median(gf[mode], reps), tot = bench_median(gb[mode], reps);
        printf("  B=%d T=%-5d %-11s forward %8.1f ms | grad-mode forward %8.1f ms + backward %8.1f ms = %8.1f ms"
               "  ratio %.2fx\n",
               B, T, mode ? "activations" : "parameters", f * 1e3, gfm * 1e3, (tot - gfm) * 1e3, tot * 1e3, tot / f);
    }
    mech_run_free(plain);
    free(ids);
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 1, &m, &err)) die(&err);
    printf("backward: GPT-2 small config (random weights), loss metric, kernel %s, 2 threads, medians of %s\n",
           mech_matmul_kernel(), quick ? "1" : "5 (T=1024: 3)");
    printf("  (ratio = (forward + backward in grad mode) / plain forward; target <= 3x)\n");
    bench_shape(m, 4, 64, quick ? 1 : 5);
    bench_shape(m, 1, 1024, quick ? 1 : 3);
    mech_model_free(m);
    return 0;
}
