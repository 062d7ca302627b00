/*
** tests/test_interp_faithfulness.c: faithfulness curves (interp/
** faithfulness.c). The ends hold by construction on a compiled program
** (f = 0 with no edge, 1 with every edge) and their metrics are those of
** plain runs on the corrupt and the clean inputs; a point of the curve
** equals ACDC's own naive evaluation (one forward through the hook API) of
** the same circuit built by hand; CPR and CMD of hand-made curves.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// -(answer - wrong logit) at the last position, batch mean: ACDC's logit_diff metric by a plain forward.
static double acdc_logit_diff(const mech_model *m, const int32_t *ids, int B, int T, const int32_t *ans,
                              const int32_t *wrong) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_forward(r, ids, &err)) fail_msg("%s", err.msg);
    const float *lg = mech_run_logits(r);
    int V = m->cfg.d_vocab;
    double acc = 0;
    for (int b = 0; b < B; b++) {
        const float *row = lg + ((size_t)b * T + T - 1) * V;
        acc += (double)row[ans[b]] - row[wrong[b]];
    }
    mech_run_free(r);
    return -acc / B;
}

static mech_model *compiled(const char *name) {
    char path[512], *out;
    snprintf(path, sizeof path, "%s", mech_test_tmp(name));
    if (mech_test_cli(&out, NULL, "compile examples/rasp/%s.rasp -o %s", name, path)) fail_msg("%s", out);
    free(out);
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static void test_faith_ends_compiled(void **state) {
    (void)state;
    mech_model *m = compiled("reverse");
    mech_err err = {0};
    mech_acdc_graph *g = NULL;
    if (mech_acdc_graph_new(&m->cfg, 1, &g, &err)) fail_msg("%s", err.msg);
    enum { N = 30 };
    mech_pair *pairs = NULL;
    if (mech_dataset_compiled(m, N, 0, 3, "random", &pairs, &err)) fail_msg("%s", err.msg);
    int T = pairs[0].n;
    int32_t *clean = malloc(sizeof(int32_t) * N * T), *corrupt = malloc(sizeof(int32_t) * N * T), ans[N], wrong[N];
    for (int i = 0; i < N; i++) {
        memcpy(clean + i * T, pairs[i].clean, sizeof(int32_t) * T);
        memcpy(corrupt + i * T, pairs[i].corrupt, sizeof(int32_t) * T);
        ans[i] = pairs[i].answer, wrong[i] = pairs[i].wrong;
    }
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double *scores = calloc((size_t)g->n_edges, sizeof *scores);
    if (mech_eap_scores(m, g, clean, corrupt, N, T, &mt, 1, scores, NULL, &err)) fail_msg("%s", err.msg);
    mech_acdc_opts o = {.metric = MECH_ACDC_LOGIT_DIFF, .ablation = MECH_ACDC_RESAMPLE, .answer = ans, .wrong = wrong,
                        .threads = 1};
    double fr[4] = {1, 0, 0.05, 0.5}; // unsorted on purpose
    mech_faith_point p[4];
    mech_faith_result res;
    if (mech_eap_faithfulness(m, g, scores, clean, corrupt, N, T, &o, fr, 4, p, &res, &err)) fail_msg("%s", err.msg);
    // sorted by size; the ends exactly 0 and 1
    int counted = g->n_addition + g->n_direct;
    assert_true(p[0].frac == 0 && p[0].n_edges == 0 && p[0].f == 0);
    assert_true(p[3].frac == 1 && p[3].n_edges == counted && p[3].f == 1);
    assert_int_equal(p[1].n_edges, (int)(0.05 * counted));
    assert_int_equal(p[2].n_edges, counted / 2);
    // the full circuit is the clean run, the empty one the corrupted run
    double clean_m = acdc_logit_diff(m, clean, N, T, ans, wrong), corrupt_m = acdc_logit_diff(m, corrupt, N, T, ans, wrong);
    print_message("reverse: m(full) %.6f (clean run %.6f), m(empty) %.6f (corrupt run %.6f); f(5%%) %.4f f(50%%) %.4f; "
                  "CPR %.4f CMD %.4f\n", res.m_full, clean_m, res.m_empty, corrupt_m, p[1].f, p[2].f, res.cpr, res.cmd);
    assert_true(fabs(res.m_full - clean_m) < 1e-3 * (1 + fabs(clean_m)));
    assert_true(fabs(res.m_empty - corrupt_m) < 1e-3 * (1 + fabs(corrupt_m)));
    assert_true(fabs(res.m_full - res.m_empty) > 0.1);
    // CPR and CMD are those of the points
    double cpr, cmd;
    mech_faith_areas(p, 4, &cpr, &cmd);
    assert_true(cpr == res.cpr && cmd == res.cmd);
    free(scores), free(clean), free(corrupt);
    mech_pairs_free(pairs, N);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

static uint64_t rng_state;
static double urand(void) {
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

// One point of the curve against ACDC's naive evaluator on the same circuit
// built by hand (top n by |score| by a selection written here): mech_acdc_run
// with tau = -inf keeps every edge and reports the circuit's metric.
static void test_faith_point_matches_acdc(void **state) {
    (void)state;
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 2, c.n_heads = 2, c.d_model = 16, c.d_head = 4, c.d_mlp = 24, c.n_ctx = 8, c.d_vocab = 23;
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 31, &m, &err)) fail_msg("%s", err.msg);
    // larger weights than GPT-2's init, so that edges matter
    mech_model_tensor *t = NULL;
    size_t nt = 0;
    if (mech_model_tensors(m, &t, &nt, &err)) fail_msg("%s", err.msg);
    for (size_t i = 0; i < nt; i++) {
        float *w = mech_model_param(m, t[i].name);
        if (!w || strstr(t[i].name, "ln_") || strstr(t[i].name, ".bias")) continue;
        size_t k = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        for (size_t j = 0; j < k; j++) w[j] *= 15;
    }
    mech_free(t);
    mech_acdc_graph *g = NULL;
    if (mech_acdc_graph_new(&m->cfg, 0, &g, &err)) fail_msg("%s", err.msg);
    enum { B = 3, T = 6 };
    int32_t clean[B * T], corrupt[B * T], ans[B] = {1, 5, 9}, wrong[B] = {2, 7, 3};
    rng_state = 8;
    for (int i = 0; i < B * T; i++) clean[i] = (int32_t)(urand() * 23) % 23, corrupt[i] = (int32_t)(urand() * 23) % 23;
    double *scores = calloc((size_t)g->n_edges, sizeof *scores);
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    if (mech_eap_scores(m, g, clean, corrupt, B, T, &mt, 1, scores, NULL, &err)) fail_msg("%s", err.msg);
    mech_acdc_opts o = {.metric = MECH_ACDC_LOGIT_DIFF, .ablation = MECH_ACDC_RESAMPLE, .answer = ans, .wrong = wrong,
                        .threads = 1};
    double fr[2] = {0.2, 0.6};
    mech_faith_point p[2];
    mech_faith_result res;
    if (mech_eap_faithfulness(m, g, scores, clean, corrupt, B, T, &o, fr, 2, p, &res, &err)) fail_msg("%s", err.msg);
    int counted = g->n_addition + g->n_direct;
    for (int j = 0; j < 2; j++) {
        // the hand-built circuit: repeatedly the largest |score| not yet taken (first in graph order on ties)
        int want = (int)(fr[j] * counted);
        assert_int_equal(p[j].n_edges, want);
        for (int e = 0; e < g->n_edges; e++) g->edges[e].present = g->edges[e].type == MECH_ACDC_PLACEHOLDER;
        for (int k = 0; k < want; k++) {
            int best = -1;
            for (int e = 0; e < g->n_edges; e++)
                if (g->edges[e].type != MECH_ACDC_PLACEHOLDER && !g->edges[e].present &&
                    (best < 0 || fabs(scores[e]) > fabs(scores[best])))
                    best = e;
            g->edges[best].present = 1;
        }
        mech_acdc_opts naive = o;
        naive.naive = 1, naive.tau = -INFINITY;
        mech_acdc_result r;
        if (mech_acdc_run(m, clean, corrupt, B, T, &naive, g, &r, &err)) fail_msg("%s", err.msg);
        double f = (r.metric_final - res.m_empty) / (res.m_full - res.m_empty);
        print_message("%d of %d edges: metric %.6f (ACDC naive %.6f), f %.4f (%.4f)\n", want, counted, p[j].metric,
                      r.metric_final, p[j].f, f);
        assert_true(fabs(p[j].metric - r.metric_final) < 1e-4 * (1 + fabs(r.metric_final)));
        assert_true(fabs(p[j].f - f) < 1e-3);
    }
    assert_true(fabs(res.m_full - res.m_empty) > 0.05);
    assert_true(fabs(p[0].metric - p[1].metric) > 1e-3); // two different circuits, two different values
    free(scores);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

static void test_faith_areas(void **state) {
    (void)state;
    // a straight line from (0, 0) to (1, 1): CPR 1/2, CMD 1/2
    mech_faith_point a[3] = {{.frac = 0, .f = 0}, {.frac = 0.5, .f = 0.5}, {.frac = 1, .f = 1}};
    double cpr, cmd;
    mech_faith_areas(a, 3, &cpr, &cmd);
    assert_true(fabs(cpr - 0.5) < 1e-12 && fabs(cmd - 0.5) < 1e-12);
    // an overshoot counts against CMD as an undershoot does: (0, 0), (0.5, 1.5), (1, 1)
    a[1].f = 1.5;
    mech_faith_areas(a, 3, &cpr, &cmd);
    assert_true(fabs(cpr - (0.5 * 0.75 + 0.5 * 1.25)) < 1e-12);
    assert_true(fabs(cmd - (0.5 * 0.75 + 0.5 * 0.25)) < 1e-12);
    // uneven sizes (MIB's 0.1% .. 100%): only the intervals measured count
    mech_faith_point b[3] = {{.frac = 0.001, .f = 1}, {.frac = 0.01, .f = 1}, {.frac = 1, .f = 1}};
    mech_faith_areas(b, 3, &cpr, &cmd);
    assert_true(fabs(cpr - 0.999) < 1e-12 && cmd == 0);
    mech_faith_areas(b, 1, &cpr, &cmd);
    assert_true(cpr == 0 && cmd == 0);
    // f from the metrics; no span, no f
    mech_faith_point p[2] = {{.frac = 0, .metric = 3}, {.frac = 1, .metric = 1}};
    mech_faith_result res;
    mech_faith_finish(p, 2, 1, 3, &res);
    assert_true(p[0].f == 0 && p[1].f == 1 && fabs(res.cpr - 0.5) < 1e-12);
    mech_faith_finish(p, 2, 2, 2, &res);
    assert_true(isnan(p[0].f) && isnan(res.cpr));
}

static void test_faith_errors(void **state) {
    (void)state;
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 1, c.n_heads = 2, c.d_model = 8, c.d_head = 4, c.d_mlp = 8, c.n_ctx = 8, c.d_vocab = 11;
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 1, &m, &err)) fail_msg("%s", err.msg);
    mech_acdc_graph *g = NULL;
    if (mech_acdc_graph_new(&m->cfg, 0, &g, &err)) fail_msg("%s", err.msg);
    double *s = calloc((size_t)g->n_edges, sizeof *s);
    int32_t ids[4] = {1, 2, 3, 4}, a = 1, w = 2, bad = 40;
    mech_acdc_opts o = {.metric = MECH_ACDC_LOGIT_DIFF, .answer = &a, .wrong = &w};
    double fr[2] = {0.5, 1.5};
    mech_faith_point p[2];
    mech_faith_result res;
    assert_int_equal(mech_eap_faithfulness(m, g, s, ids, ids, 1, 4, &o, fr, 2, p, &res, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "1.5"));
    assert_int_equal(mech_eap_faithfulness(m, g, s, ids, NULL, 1, 4, &o, fr, 1, p, &res, &err), MECH_ERR_ARG);
    o.answer = &bad;
    assert_int_equal(mech_eap_faithfulness(m, g, s, ids, ids, 1, 4, &o, fr, 1, p, &res, &err), MECH_ERR_RANGE);
    free(s);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faith_ends_compiled),
        cmocka_unit_test(test_faith_point_matches_acdc),
        cmocka_unit_test(test_faith_areas),
        cmocka_unit_test(test_faith_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
