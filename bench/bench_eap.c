/*
** bench/bench_eap.c: edge attribution patching on GPT-2 small (random
** weights, mech_model_random), 20 prompts x 16 tokens, every one of the
** ACDC graph's 32,923 counted edges, logit difference at the last position,
** 2 threads, medians, beside one plain forward of the same batch (all
** logits) measured in the same run. Then where the time goes, by the same
** calls mech_eap_scores makes: the corrupted forward (stopping before the
** unembedding), the clean forward in grad mode, the backward, and the score
** contraction alone (its FLOPs counted). ACDC's full run on the same shape
** is not rerun here (about 8 minutes): docs/acdc.md's speed table has it.
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
    // processes falls on both alike.
    mech_run *plain = new_run(m);
    double fw[16], eap[16];
    if (mech_run_forward(plain, clean, &err)) die(&err); // warm-up
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        if (mech_run_forward(plain, clean, &err)) die(&err);
        double t1 = bench_now();
        if (mech_eap_scores(m, g, clean, corrupt, B, T, &mt, THREADS, scores, NULL, &err)) die(&err);
        fw[i] = t1 - t0, eap[i] = bench_now() - t1;
    }
    double f = bench_median(fw, reps), e = bench_median(eap, reps);
    printf("  forward (all logits) %8.1f ms | EAP, every edge %8.1f ms  (%.1fx a forward)\n", f * 1e3, e * 1e3, e / f);
    mech_run_free(plain);

    // The phases, as mech_eap_scores runs them.
    double ph[4][16];
    mech_run *r = new_run(m);
    static const char *const caches[] = {"blocks.0.hook_resid_pre", "blocks.*.attn.hook_result", "blocks.*.attn.hook_q",
                                         "blocks.*.attn.hook_k", "blocks.*.attn.hook_v", "blocks.*.hook_mlp_out"};
    static const char *const grads[] = {"blocks.*.hook_q_input", "blocks.*.hook_k_input", "blocks.*.hook_v_input",
                                        "blocks.*.attn.hook_q", "blocks.*.attn.hook_k", "blocks.*.attn.hook_v",
                                        "blocks.*.hook_mlp_in", "blocks.11.hook_resid_post"};
    for (size_t i = 0; i < sizeof caches / sizeof *caches; i++)
        if (mech_run_cache(r, caches[i], &err)) die(&err);
    if (mech_run_enable_grad(r, MECH_GRAD_ACTS, &err)) die(&err);
    for (size_t i = 0; i < sizeof grads / sizeof *grads; i++)
        if (mech_run_cache_grad(r, grads[i], &err)) die(&err);
    mech_run_opts upto = {.stop_layer = c.n_layers};
    // The contraction: per layer l its 3H + 1 receivers against the senders
    // before it (and its own heads), resid_post against all 157.
    size_t K = (size_t)B * T * c.d_model;
    int H = c.n_heads, rows_layer = 3 * H + 1, n_send = 1 + c.n_layers * (H + 1), n_rows = c.n_layers * rows_layer + 1;
    float *G = mech_malloc_aligned((size_t)n_rows * K * sizeof(float)), *D = mech_malloc_aligned((size_t)n_send * K * sizeof(float));
    float *P = mech_malloc_aligned((size_t)n_rows * n_send * sizeof(float));
    if (!G || !D || !P) return 1;
    for (size_t i = 0; i < (size_t)n_rows * K; i++) G[i] = (float)((i * 2654435761u) % 1000) * 1e-3f;
    for (size_t i = 0; i < (size_t)n_send * K; i++) D[i] = (float)((i * 40503u) % 1000) * 1e-3f;
    mech_pool *pool = mech_pool_new(THREADS);
    double flops = 0;
    for (int l = 0; l <= c.n_layers; l++) {
        int M = l < c.n_layers ? rows_layer : 1, N = l < c.n_layers ? 1 + l * (H + 1) + H : n_send;
        flops += 2.0 * M * N * (double)K;
    }
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        if (mech_run_forward_ex(r, corrupt, &upto, &err)) die(&err);
        double t1 = bench_now();
        if (mech_run_forward(r, clean, &err)) die(&err);
        double t2 = bench_now();
        if (mech_run_backward(r, &mt, NULL, &err)) die(&err);
        double t3 = bench_now();
        for (int l = 0; l <= c.n_layers; l++) {
            int M = l < c.n_layers ? rows_layer : 1, N = l < c.n_layers ? 1 + l * (H + 1) + H : n_send;
            size_t r0 = (size_t)l * rows_layer;
            mech_matmul_nt(pool, P + r0 * n_send, n_send, G + r0 * K, (int)K, D, (int)K, NULL, M, (int)K, N);
        }
        double t4 = bench_now();
        ph[0][i] = t1 - t0, ph[1][i] = t2 - t1, ph[2][i] = t3 - t2, ph[3][i] = t4 - t3;
    }
    double p[4];
    for (int k = 0; k < 4; k++) p[k] = bench_median(ph[k], reps);
    printf("  phases: corrupted forward (no unembedding) %.1f ms, clean forward in grad mode %.1f ms, backward %.1f ms,\n"
           "          contraction %.1f ms (%.1f GFLOP, %.1f GFLOP/s); the rest (gathering, packing) %.1f ms\n",
           p[0] * 1e3, p[1] * 1e3, p[2] * 1e3, p[3] * 1e3, flops * 1e-9, flops / p[3] * 1e-9,
           (e - p[0] - p[1] - p[2] - p[3]) * 1e3);
    mech_pool_free(pool);
    mech_free_aligned(G), mech_free_aligned(D), mech_free_aligned(P);
    mech_run_free(r);
    free(scores), free(clean), free(corrupt);
    mech_acdc_graph_free(g);
    mech_model_free(m);
    return 0;
}
