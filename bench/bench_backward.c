/*
** bench/bench_backward.c: GPT-2 small (random weights) forward pass against
** forward + backward, at B=4, T=64 and B=1, T=1024, 2 threads, medians.
** Three backward settings:
**   parameters   every parameter's gradient, mean next-token loss (training);
**   activations  only the gradients EAP caches (every block's q/k/v inputs,
**                q, k, v and mlp_in, the last resid_post), same loss;
**   last row     as activations, for the logit difference at the last
**                position with only that row of logits computed
**                (mech_run_set_logits_rows), as EAP runs; its forward
**                baseline computes the same single row.
** The ratio is (grad-mode forward + backward) / plain forward. Target:
** <= 3x.
** First, two of the backward's kernels against what they replaced, one
** thread, alternating, medians: the unembedding's weight gradient
** (dlogits^T x, 252 rows) as mech_matmul_tn against a transposed copy of
** dlogits then mech_matmul; the loss's softmax over 252 logits rows as
** mech_vec_softmax_scaled against a copy, mech_vec_softmax, a max pass and
** a scale pass.
** With LLMC_DIR set to an llm.c checkout, last, llm.c's own forward and
** zero_grad + backward at the same two shapes (bench/llmc_step.c "parts",
** built with llm.c's flags, OMP_NUM_THREADS=2; medians of 3 at T=64, one
** step at T=1024, which takes llm.c about a minute).
**
**   [LLMC_DIR=/path/to/llm.c] build/bench/bench_backward [--quick]
*/
#include "core/core.h"
#include "bench/bench.h"
#include "bench/llmc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { PARAMS, ACTS, LAST_ROW, N_MODES };

static void die(const mech_err *err) {
    fprintf(stderr, "bench: %s\n", err->msg);
    exit(1);
}

static mech_run *new_run(mech_model *m, int B, int T, int mode, int grad) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_set_threads(r, 2, &err) ||
        (mode == LAST_ROW && mech_run_set_logits_rows(r, MECH_LOGITS_LAST, 1, &err)))
        die(&err);
    if (!grad) return r;
    if (mech_run_enable_grad(r, mode == PARAMS ? MECH_GRAD_PARAMS : MECH_GRAD_ACTS, &err)) die(&err);
    if (mode != PARAMS) {
        static const char *const eap[] = {"blocks.*.hook_q_input", "blocks.*.hook_k_input", "blocks.*.hook_v_input",
                                          "blocks.*.attn.hook_q",  "blocks.*.attn.hook_k",  "blocks.*.attn.hook_v",
                                          "blocks.*.hook_mlp_in",  "blocks.11.hook_resid_post"};
        for (size_t i = 0; i < sizeof eap / sizeof *eap; i++)
            if (mech_run_cache_grad(r, eap[i], &err)) die(&err);
    }
    return r;
}

// Seconds of one forward, and of the backward after it when bwd is not NULL.
static double step(mech_run *r, const int32_t *ids, const mech_metric *mt, double *bwd) {
    mech_err err = {0};
    double t0 = bench_now();
    if (mech_run_forward(r, ids, &err)) die(&err);
    double t1 = bench_now();
    if (bwd) {
        double v;
        if (mech_run_backward(r, mt, &v, &err)) die(&err);
        *bwd = bench_now() - t1;
    }
    return t1 - t0;
}

static void bench_shape(mech_model *m, int B, int T, int reps) {
    static const char *const names[N_MODES] = {"parameters", "activations", "last row"};
    int32_t *ids = malloc((size_t)B * T * sizeof *ids), *ans = malloc((size_t)B * sizeof *ans),
            *wrong = malloc((size_t)B * sizeof *wrong);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)((7919u * (unsigned)i + 42u) % (unsigned)m->cfg.d_vocab);
    for (int b = 0; b < B; b++) ans[b] = 11 + b, wrong[b] = 1000 + b;
    mech_metric loss = {.kind = MECH_METRIC_LOSS};
    mech_metric ld = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double fw[N_MODES][16], gf[N_MODES][16], gb[N_MODES][16];
    for (int mode = 0; mode < N_MODES; mode++) {
        // one grad run at a time: a grad run of T = 1024 holds about 2 GB
        mech_run *plain = new_run(m, B, T, mode, 0), *g = new_run(m, B, T, mode, 1);
        const mech_metric *mt = mode == LAST_ROW ? &ld : &loss;
        double b;
        step(plain, ids, NULL, NULL); // warm-up: first touch of every buffer
        step(g, ids, mt, &b);
        for (int i = 0; i < reps; i++) {
            // alternate, so that load from other processes falls on both alike
            fw[mode][i] = step(plain, ids, NULL, NULL);
            gf[mode][i] = step(g, ids, mt, &gb[mode][i]);
            gb[mode][i] += gf[mode][i];
        }
        mech_run_free(g);
        mech_run_free(plain);
    }
    for (int mode = 0; mode < N_MODES; mode++) {
        double f = bench_median(fw[mode], reps), gfm = bench_median(gf[mode], reps), tot = bench_median(gb[mode], reps);
        printf("  B=%d T=%-5d %-11s forward %8.1f ms | grad-mode forward %8.1f ms + backward %8.1f ms = %8.1f ms"
               "  ratio %.2fx\n",
               B, T, names[mode], f * 1e3, gfm * 1e3, (tot - gfm) * 1e3, tot * 1e3, tot / f);
    }
    free(ids);
    free(ans);
    free(wrong);
}

// out (M, N) = x^T w through a transposed copy of x (K, M): the way the
// backward computed weight gradients before mech_matmul_tn.
static void tn_by_copy(float *out, const float *x, float *xt, const float *w, int M, int K, int N) {
    for (int k0 = 0; k0 < K; k0 += 32) // tiles of 32 source rows, as the backward's transpose
        for (int m = 0; m < M; m++)
            for (int k = k0; k < K && k < k0 + 32; k++) xt[(size_t)m * K + k] = x[(size_t)k * M + m];
    mech_matmul(NULL, out, N, xt, K, w, N, NULL, M, K, N);
}

static void bench_kernels(int reps) {
    enum { R = 252, V = 50257, C = 768 };
    float *dl = malloc(sizeof(float) * (size_t)R * V), *xt = malloc(sizeof(float) * (size_t)R * V),
          *x = malloc(sizeof(float) * (size_t)R * C), *gu = malloc(sizeof(float) * (size_t)V * C),
          *p = malloc(sizeof(float) * (size_t)V);
    if (!dl || !xt || !x || !gu || !p) exit(1);
    for (size_t i = 0; i < (size_t)R * V; i++) dl[i] = (float)((i * 2654435761u) % 1000) * 0.01f - 5.0f;
    for (size_t i = 0; i < (size_t)R * C; i++) x[i] = (float)((i * 40503u) % 997) * 0.001f;
    double t[4][16];
    for (int i = 0; i < reps; i++) {
        double t0 = bench_now();
        tn_by_copy(gu, dl, xt, x, V, R, C);
        double t1 = bench_now();
        mech_matmul_tn(NULL, gu, C, dl, V, x, C, NULL, V, R, C);
        double t2 = bench_now();
        float pm, sink = 0;
        for (int r = 0; r < R; r++) {
            memcpy(p, dl + (size_t)r * V, sizeof(float) * V);
            mech_vec_softmax(p, V);
            pm = 0;
            for (int v = 0; v < V; v++) pm = p[v] > pm ? p[v] : pm;
            for (int v = 0; v < V; v++) p[v] *= 0.004f;
            sink += pm;
        }
        double t3 = bench_now();
        for (int r = 0; r < R; r++) {
            mech_vec_softmax_scaled(p, dl + (size_t)r * V, V, 0.004f, &pm);
            sink += pm;
        }
        double t4 = bench_now();
        if (sink < 0) printf("?");
        t[0][i] = t1 - t0, t[1][i] = t2 - t1, t[2][i] = t3 - t2, t[3][i] = t4 - t3;
    }
    printf("  kernels, 1 thread: unembedding dW (%d x %d, K = %d): transposed copy + mech_matmul %.1f ms, "
           "mech_matmul_tn %.1f ms\n", V, C, R, bench_median(t[0], reps) * 1e3, bench_median(t[1], reps) * 1e3);
    printf("  kernels, 1 thread: loss softmax (%d rows of %d): copy + softmax + max + scale %.1f ms, "
           "mech_vec_softmax_scaled %.1f ms\n", R, V, bench_median(t[2], reps) * 1e3, bench_median(t[3], reps) * 1e3);
    free(dl), free(xt), free(x), free(gu), free(p);
}

// llm.c's forward and zero_grad + backward, as train_gpt2.c runs them.
static void bench_llmc(int quick) {
    const char *dir = getenv("LLMC_DIR");
    if (!dir || !*dir) {
        printf("  llm.c: skipped (set LLMC_DIR to an llm.c checkout to measure it beside)\n");
        return;
    }
    static const int shapes[2][3] = {{4, 64, 3}, {1, 1024, 1}};
    for (int s = 0; s < 2; s++) {
        int B = shapes[s][0], T = shapes[s][1], reps = quick ? 1 : shapes[s][2];
        llmc_proc lp = {0};
        double fw[8], bw[8], ms[2] = {0, 0};
        int ok = !llmc_start(dir, B, T, "parts", &lp);
        for (int i = 0; ok && i < reps; i++) {
            ms[1] = -1;
            ok = !llmc_next(&lp, ms) && ms[1] >= 0;
            fw[i] = ms[0], bw[i] = ms[1];
        }
        llmc_stop(&lp);
        if (!ok) {
            printf("  llm.c B=%d T=%d: failed (see above)\n", B, T);
            continue;
        }
        double f = bench_median(fw, reps), b = bench_median(bw, reps);
        char how[32] = "one step";
        if (reps > 1) snprintf(how, sizeof how, "medians of %d", reps);
        printf("  llm.c B=%d T=%-5d forward %8.1f ms | zero_grad + backward %8.1f ms  ratio %.2fx (%s)\n", B, T, f, b,
               (f + b) / f, how);
    }
}

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 1, &m, &err)) die(&err);
    printf("backward: GPT-2 small config (random weights), kernel %s, 2 threads, medians of %s\n", mech_matmul_kernel(),
           quick ? "1" : "11 (T=1024: 5)");
    printf("  (ratio = (forward + backward in grad mode) / plain forward; target <= 3x)\n");
    bench_kernels(quick ? 1 : 5);
    bench_shape(m, 4, 64, quick ? 1 : 11);
    bench_shape(m, 1, 1024, quick ? 1 : 5);
    mech_model_free(m);
    bench_llmc(quick);
    return 0;
}
