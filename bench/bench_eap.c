/*
** bench/bench_eap.c: edge attribution patching on GPT-2 small (random
** weights, mech_model_random), 20 prompts x 16 tokens, every one of the
** ACDC graph's 32,923 counted edges, logit difference at the last position,
** 2 threads, medians, beside one plain forward of the same batch (all
** logits) measured in the same run, and where the time goes
** (mech_eap_opts.timing): the corrupted forward (stopping before the
** unembedding), the clean forward in grad mode, the backward, and the rest
** (gathering the senders, packing the gradients, the score contraction,
** whose FLOPs are counted). ACDC's full run on the same shape is not rerun
** here (about 8 minutes): docs/acdc.md's speed table has it.
**
**   build/bench/bench_eap [--quick]
*/
#include "mech.h"
#include "bench/bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const mech_err *err) {
    fprintf(stderr, "bench_eap: %s\n", err->msg);
    exit(1);
}

enum { B = 20, T = 16, THREADS = 2 };

static mech_run *new_run(const mech_model *m) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_set_threads(r, THREADS, &err)) die(&err);
    return r;
}

int main(int argc, char **argv) {
    int reps = argc > 1 && !strcmp(argv[1], "--quick") ? 1 : 5;
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    mech_acdc_graph *g = NULL;
    if (mech_model_random(&c, 1, &m, &err) || mech_acdc_graph_new(&m->cfg, 0, &g, &err)) die(&err);
    int32_t *clean = malloc(sizeof(int32_t) * B * T), *corrupt = malloc(sizeof(int32_t) * B * T), ans[B], wrong[B];
    for (int i = 0; i < B * T; i++) {
        clean[i] = (int32_t)((7919u * (unsigned)i + 42u) % (unsigned)c.d_vocab);
        corrupt[i] = (int32_t)((104729u * (unsigned)i + 7u) % (unsigned)c.d_vocab);
    }
    for (int b = 0; b < B; b++) ans[b] = clean[b * T + 3], wrong[b] = corrupt[b * T + 3];
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double *scores = malloc(sizeof(double) * g->n_edges);
    printf("eap: GPT-2 small config (random weights), %d prompts x %d tokens, %d counted edges, kernel %s, %d threads, "
           "medians of %d\n", B, T, g->n_addition + g->n_direct, mech_matmul_kernel(), THREADS, reps);

    // EAP against one plain forward, alternating so that load from other
    // processes falls on both alike; the phases from mech_eap_opts.timing.
    mech_run *plain = new_run(m);
    double fw[16], eap[16], ph[4][16], tm[4];
    mech_eap_opts o = {.method = MECH_EAP_PLAIN, .threads = THREADS, .timing = tm};
    if (mech_run_forward(plain, clean, &err)) die(&err); // warm-up
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        if (mech_run_forward(plain, clean, &err)) die(&err);
        double t1 = bench_now();
        if (mech_eap_scores_opts(m, g, clean, corrupt, B, T, &mt, &o, scores, NULL, &err)) die(&err);
        fw[i] = t1 - t0, eap[i] = bench_now() - t1;
        for (int k = 0; k < 4; k++) ph[k][i] = tm[k];
    }
    double f = bench_median(fw, reps), e = bench_median(eap, reps), p[4];
    for (int k = 0; k < 4; k++) p[k] = bench_median(ph[k], reps);
    // The score contraction: per layer l its 3H + 1 receivers against the
    // senders before it and its own heads, resid_post against all 157.
    double K = (double)B * T * c.d_model, flops = 0;
    for (int l = 0; l <= c.n_layers; l++)
        flops += 2.0 * K * (l < c.n_layers ? 3 * c.n_heads + 1 : 1) * (l < c.n_layers ? 1 + l * (c.n_heads + 1) + c.n_heads
                                                                                       : 1 + c.n_layers * (c.n_heads + 1));
    printf("  forward (all logits) %8.1f ms | EAP, every edge %8.1f ms  (%.2fx a forward)\n", f * 1e3, e * 1e3, e / f);
    printf("  EAP phases: corrupted forward (no unembedding) %.1f ms, clean forward in grad mode %.1f ms, backward %.1f ms,\n"
           "              senders, gradients and the score contraction (%.1f GFLOP) %.1f ms\n",
           p[0] * 1e3, p[1] * 1e3, p[2] * 1e3, flops * 1e-9, p[3] * 1e3);
    mech_run_free(plain);
    free(scores), free(clean), free(corrupt);
    mech_acdc_graph_free(g);
    mech_model_free(m);
    return 0;
}
