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
**
**   build/bench/bench_backward [--quick]
*/
#include "core/core.h"
#include "bench/bench.h"

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

int main(int argc, char **argv) {
    int quick = argc > 1 && !strcmp(argv[1], "--quick");
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 1, &m, &err)) die(&err);
    printf("backward: GPT-2 small config (random weights), kernel %s, 2 threads, medians of %s\n", mech_matmul_kernel(),
           quick ? "1" : "5 (T=1024: 3)");
    printf("  (ratio = (forward + backward in grad mode) / plain forward; target <= 3x)\n");
    bench_shape(m, 4, 64, quick ? 1 : 5);
    bench_shape(m, 1, 1024, quick ? 1 : 3);
    mech_model_free(m);
    return 0;
}
