/*
** bench/bench_tuned_lens.c: one training step of the tuned lens on GPT-2
** small's config (random weights), B = 8 sequences of T = 32 tokens (the
** default batch and `mech tuned-lens --seq-len`), against the baseline of
** the same batch's forward pass, which every step also runs. A step is that
** forward plus, for each of the 12 layers, the translator, the unembedding,
** the softmax and the way back (two (B*T, C) x (C, V) products per layer):
** about 2 x 12 unembeddings, so about 12 forwards' worth of unembedding
** work. Prints the median of each and the ratio. `--quick`: one repetition.
*/
#include "interp/interp.h"
#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { B = 8, T = 32 };

int main(int argc, char **argv) {
    int reps = argc > 1 && !strcmp(argv[1], "--quick") ? 1 : 3;
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    mech_run *run = NULL;
    if (mech_model_random(&c, 1, &m, &err) || mech_run_new(m, B, T, &run, &err)) goto fail;
    static int32_t ids[B][T];
    const int32_t *p[B];
    int lens[B];
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) ids[b][t] = (int32_t)((7919u * (unsigned)(b * T + t) + 42u) % (unsigned)c.d_vocab);
        p[b] = ids[b], lens[b] = T;
    }
    printf("tuned lens: GPT-2 small config (random weights), one training step on %d x %d tokens, kernel %s, %d threads\n",
           B, T, mech_matmul_kernel(), (int)sysconf(_SC_NPROCESSORS_ONLN));
    mech_tuned_lens_opts o = mech_tuned_lens_defaults();
    o.steps = 1;
    double vf[8], vs[8];
    for (int i = -1; i < reps; i++) { // i = -1: warm-up
        double t0 = bench_now();
        if (mech_run_forward(run, &ids[0][0], &err)) goto fail;
        double t1 = bench_now();
        mech_tuned_lens *t = NULL;
        if (mech_tuned_lens_fit(m, p, lens, B, &o, &t, &err)) goto fail;
        double t2 = bench_now();
        mech_tuned_lens_free(t);
        if (i >= 0) vf[i] = t1 - t0, vs[i] = t2 - t1;
    }
    double f = bench_median(vf, reps), s = bench_median(vs, reps);
    printf("  forward (baseline):           %8.1f ms\n", 1e3 * f);
    printf("  tuned lens step (all layers): %8.1f ms  = %.1f forwards (median of %d)\n", 1e3 * s, s / f, reps);
    mech_run_free(run);
    mech_model_free(m);
    return 0;
fail:
    fprintf(stderr, "bench: %s\n", err.msg);
    return 1;
}
