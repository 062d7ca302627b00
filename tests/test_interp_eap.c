/*
** tests/test_interp_eap.c: edge attribution patching (interp/eap.c). Where
** the metric is linear in the patched quantity, EAP's first-order estimate
** is the exact effect of patching the edge, computed here independently by
** forward hooks, and so are the EAP-IG variants' and clean-corrupted's
** where every gradient is constant; EAP-IG's sums converge to the path
** integral they estimate (completeness); scores do not depend on the
** batch's composition; on a
** compiled RASP model the ranking by |score| recovers the compiler's circuit.
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

static void random_ids(int32_t *ids, int n, int vocab) {
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(mech_test_urand() * vocab) % vocab;
}

static mech_acdc_graph *graph(const mech_model *m, int split) {
    mech_err err = {0};
    mech_acdc_graph *g = NULL;
    if (mech_acdc_graph_new(&m->cfg, split, &g, &err)) fail_msg("graph_new: %s", err.msg);
    return g;
}

// ---------------------------------------------------------------------------
// The linear case, checked against real patching

// The exact effect of one edge: the clean run with the receiver's input (or
// q/k/v for a DIRECT edge) shifted by the sender's corrupted - clean output.
typedef struct patch {
    const float *delta; // (B*T, width) added to head h (or the whole point when h < 0)
    int h, H, width, BT;
} patch;

static int add_hook(mech_tensor *act, int layer, void *user) {
    (void)layer;
    const patch *p = user;
    for (int i = 0; i < p->BT; i++)
        for (int k = 0; k < p->width; k++) {
            size_t o = p->h < 0 ? (size_t)i * p->width + k : ((size_t)i * p->H + p->h) * p->width + k;
            act->data[o] += p->delta[(size_t)i * p->width + k];
        }
    return 0;
}

// Sender outputs (as the edge carries them) on ids: row-major (B*T, width).
static float *sender_out(const mech_model *m, const mech_acdc_node *n, const int32_t *ids, int B, int T) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err)) fail_msg("%s", err.msg);
    char name[64];
    int h = -1, H = m->cfg.n_heads, C = m->cfg.d_model, w = C;
    if (n->kind == MECH_ACDC_RESULT) snprintf(name, sizeof name, "blocks.%d.attn.hook_result", n->layer), h = n->head;
    else if (n->kind == MECH_ACDC_MLP_OUT) snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", n->layer);
    else if (n->kind == MECH_ACDC_EMBED) snprintf(name, sizeof name, "blocks.0.hook_resid_pre");
    else {
        // A DIRECT edge's sender q_input[h]: what the edge carries is the head's q/k/v.
        static const char *const qkv[3] = {"q", "k", "v"};
        snprintf(name, sizeof name, "blocks.%d.attn.hook_%s", n->layer, qkv[n->kind - MECH_ACDC_Q_INPUT]);
        h = n->head, w = m->cfg.d_head;
    }
    if (mech_run_cache(r, name, &err) || mech_run_forward(r, ids, &err)) fail_msg("%s", err.msg);
    const mech_tensor *t = mech_run_get(r, name);
    float *out = malloc(sizeof(float) * B * T * w);
    assert_non_null(out);
    for (int i = 0; i < B * T; i++)
        for (int k = 0; k < w; k++) out[(size_t)i * w + k] = h < 0 ? t->data[(size_t)i * w + k] : t->data[((size_t)i * H + h) * w + k];
    mech_run_free(r);
    return out;
}

static double run_metric(const mech_model *m, const int32_t *ids, int B, int T, const mech_metric *mt, const char *hook,
                         patch *p) {
    mech_err err = {0};
    mech_run *r = NULL;
    double v = 0;
    if (mech_run_new(m, B, T, &r, &err)) fail_msg("%s", err.msg);
    if (hook && mech_run_hook(r, hook, add_hook, p, &err)) fail_msg("%s", err.msg);
    if (mech_run_forward(r, ids, &err) || mech_metric_eval(r, mt, &v, &err)) fail_msg("%s", err.msg);
    mech_run_free(r);
    return v;
}

// The exact effect of edge e (clean run, the receiver reading the sender's corrupted output).
static double exact_effect(const mech_model *m, const mech_acdc_graph *g, int e, const int32_t *clean,
                           const int32_t *corrupt, int B, int T, const mech_metric *mt) {
    const mech_acdc_node *s = &g->nodes[g->edges[e].sender], *v = &g->nodes[g->edges[e].receiver];
    float *a = sender_out(m, s, clean, B, T), *b = sender_out(m, s, corrupt, B, T);
    int w = g->edges[e].type == MECH_ACDC_DIRECT ? m->cfg.d_head : m->cfg.d_model;
    for (int i = 0; i < B * T * w; i++) b[i] -= a[i];
    patch p = {.delta = b, .h = v->head, .H = m->cfg.n_heads, .width = w, .BT = B * T};
    char hook[64];
    switch (v->kind) {
    case MECH_ACDC_RESID_POST: snprintf(hook, sizeof hook, "blocks.%d.hook_resid_post", v->layer); break;
    case MECH_ACDC_V_INPUT: snprintf(hook, sizeof hook, "blocks.%d.hook_v_input", v->layer); break;
    case MECH_ACDC_V: snprintf(hook, sizeof hook, "blocks.%d.attn.hook_v", v->layer); break;
    default: fail_msg("edge kind not linear here");
    }
    double base = run_metric(m, clean, B, T, mt, NULL, NULL);
    double patched = run_metric(m, clean, B, T, mt, hook, &p);
    free(a);
    free(b);
    return patched - base;
}

// Attention only, no LayerNorm: with the patterns fixed (only values and
// the residual are patched), the logit difference is linear in every edge
// into resid_post, into the last layer's v inputs and in its v's.
static void test_eap_equals_exact_patching_when_linear(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 2, 1, 0, 7);
    mech_acdc_graph *g = graph(m, 0);
    enum { B = 3, T = 6 };
    int32_t clean[B * T], corrupt[B * T], ans[B], wrong[B];
    mech_test_seed(99);
    random_ids(clean, B * T, m->cfg.d_vocab);
    random_ids(corrupt, B * T, m->cfg.d_vocab);
    for (int b = 0; b < B; b++) ans[b] = (int32_t)(b + 1), wrong[b] = (int32_t)(2 * b + 5);
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double *scores = calloc((size_t)g->n_edges, sizeof *scores);
    assert_non_null(scores);
    mech_err err = {0};
    double value = NAN;
    if (mech_eap_scores(m, g, clean, corrupt, B, T, &mt, 1, scores, &value, &err)) fail_msg("%s", err.msg);
    assert_true(fabs(value - run_metric(m, clean, B, T, &mt, NULL, NULL)) < 1e-4);
    int checked = 0, nonzero = 0;
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_node *v = &g->nodes[g->edges[e].receiver];
        int linear = v->kind == MECH_ACDC_RESID_POST || (v->layer == 1 && (v->kind == MECH_ACDC_V_INPUT || v->kind == MECH_ACDC_V));
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) {
            assert_true(scores[e] == 0);
            continue;
        }
        if (!linear) continue;
        double want = exact_effect(m, g, e, clean, corrupt, B, T, &mt);
        if (fabs(scores[e] - want) > 1e-6 + 1e-4 * fabs(want))
            fail_msg("%s -> %s: EAP %.7g, exact %.7g", g->nodes[g->edges[e].sender].name, v->name, scores[e], want);
        checked++;
        nonzero += fabs(want) > 5e-4;
    }
    assert_int_equal(checked, 5 + 2 * 3 + 2); // resid_post: embed + 4 heads; 2 v inputs x 3 senders; 2 DIRECT v
    assert_true(nonzero >= checked - 2);       // the comparison is not between zeros
    free(scores);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// Every edge, also the non-linear ones: a corrupt input equal to the clean
// one scores 0 everywhere.
static void test_eap_same_input_scores_zero(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 2, 0, 1, 3);
    mech_acdc_graph *g = graph(m, 0);
    enum { B = 2, T = 5 };
    int32_t clean[B * T], ans[B] = {1, 2}, wrong[B] = {3, 4};
    mech_test_seed(5);
    random_ids(clean, B * T, m->cfg.d_vocab);
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double *scores = calloc((size_t)g->n_edges, sizeof *scores);
    mech_err err = {0};
    if (mech_eap_scores(m, g, clean, clean, B, T, &mt, 0, scores, NULL, &err)) fail_msg("%s", err.msg);
    for (int e = 0; e < g->n_edges; e++) assert_true(scores[e] == 0);
    free(scores);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Batch composition

// A batch's scores are the mean of its prompts' scores alone (LayerNorm, MLPs).
static void test_eap_batch_independent(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 3, 0, 1, 11);
    mech_acdc_graph *g = graph(m, 0);
    enum { B = 3, T = 7 };
    int32_t clean[B * T], corrupt[B * T], ans[B] = {4, 9, 1}, wrong[B] = {6, 2, 8};
    mech_test_seed(123);
    random_ids(clean, B * T, m->cfg.d_vocab);
    random_ids(corrupt, B * T, m->cfg.d_vocab);
    size_t E = (size_t)g->n_edges;
    double *all = calloc(E, sizeof *all), *one = calloc(E, sizeof *one), *mean = calloc(E, sizeof *mean);
    mech_err err = {0};
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    if (mech_eap_scores(m, g, clean, corrupt, B, T, &mt, 0, all, NULL, &err)) fail_msg("%s", err.msg);
    for (int b = 0; b < B; b++) {
        mech_metric m1 = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans + b, .wrong = wrong + b};
        if (mech_eap_scores(m, g, clean + b * T, corrupt + b * T, 1, T, &m1, 0, one, NULL, &err)) fail_msg("%s", err.msg);
        for (size_t e = 0; e < E; e++) mean[e] += one[e] / B;
    }
    double big = 0;
    for (size_t e = 0; e < E; e++) {
        big = fmax(big, fabs(mean[e]));
        if (fabs(all[e] - mean[e]) > 1e-4 * (1 + fabs(mean[e])))
            fail_msg("edge %zu: batch %.7g, mean alone %.7g", e, all[e], mean[e]);
    }
    assert_true(big > 0.1);
    free(all), free(one), free(mean);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

static void test_eap_errors(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 2, 1, 0, 1);
    mech_model *m3 = mech_test_small_model(3, 2, 1, 0, 1);
    mech_acdc_graph *g3 = graph(m3, 0);
    int32_t ids[4] = {1, 2, 3, 4}, a = 1, w = 2;
    double s[512];
    mech_err err = {0};
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = &a, .wrong = &w};
    assert_int_equal(mech_eap_scores(m, g3, ids, ids, 1, 4, &mt, 0, s, NULL, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "shape"));
    mech_acdc_graph *g = graph(m, 0);
    int32_t bad = 999;
    mech_metric mb = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = &bad, .wrong = &w};
    assert_int_equal(mech_eap_scores(m, g, ids, ids, 1, 4, &mb, 0, s, NULL, &err), MECH_ERR_RANGE);
    mech_acdc_graph_free(g);
    mech_acdc_graph_free(g3);
    mech_model_free(m);
    mech_model_free(m3);
}

// Circuits from scores: top-n by |score| or a threshold, never a zero score.
static void test_eap_select(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(1, 2, 1, 0, 1);
    mech_acdc_graph *g = graph(m, 0);
    double *s = calloc((size_t)g->n_edges, sizeof *s);
    int counted = 0;
    for (int e = 0; e < g->n_edges; e++)
        if (g->edges[e].type != MECH_ACDC_PLACEHOLDER) s[e] = (counted % 2 ? -1 : 1) * 0.5 * counted, counted++;
    // scores 0, -0.5, 1, -1.5, ...: the top 3 by |score| are the last three counted edges
    mech_err err = {0};
    assert_int_equal(mech_eap_select(g, s, 3, NAN, &err), MECH_OK);
    assert_int_equal(mech_acdc_graph_count_present(g), 3);
    for (int e = 0, k = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) {
            assert_true(isnan(g->edges[e].effect));
            continue;
        }
        assert_int_equal(g->edges[e].present, k >= counted - 3);
        assert_true(g->edges[e].effect == s[e]);
        k++;
    }
    assert_int_equal(mech_eap_select(g, s, -1, 1.0, &err), MECH_OK); // |score| >= 1: all but 0 and -0.5
    assert_int_equal(mech_acdc_graph_count_present(g), counted - 2);
    assert_int_equal(mech_eap_select(g, s, 1000, NAN, &err), MECH_OK); // the zero score is never kept
    assert_int_equal(mech_acdc_graph_count_present(g), counted - 1);
    assert_int_equal(mech_eap_select(g, s, -1, 0, &err), MECH_OK);
    assert_int_equal(mech_acdc_graph_count_present(g), counted - 1);
    free(s);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// A compiled model's ground truth

// ROC AUC of |score| against the truth, over counted edges, one threshold per distinct score.
static double eap_auc(const mech_acdc_graph *g, const double *scores, const uint8_t *truth) {
    int n = 0, n_true = 0, n_false = 0;
    double *th = malloc(sizeof(double) * g->n_edges);
    for (int e = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
        th[n++] = fabs(scores[e]);
        if (truth[e]) n_true++;
        else n_false++;
    }
    mech_acdc_roc_point *pts = malloc(sizeof *pts * (n + 1));
    for (int i = 0; i < n; i++) {
        int tp = 0, fp = 0;
        for (int e = 0; e < g->n_edges; e++) {
            if (g->edges[e].type == MECH_ACDC_PLACEHOLDER || fabs(scores[e]) < th[i]) continue;
            if (truth[e]) tp++;
            else fp++;
        }
        pts[i] = (mech_acdc_roc_point){(double)fp / n_false, (double)tp / n_true};
    }
    double auc = mech_acdc_auc(pts, n);
    free(pts);
    free(th);
    return auc;
}

static void test_eap_compiled_reverse_auc(void **state) {
    (void)state;
    char path[512], *out;
    snprintf(path, sizeof path, "%s", mech_test_tmp("eap-reverse.safetensors"));
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", path)) fail_msg("%s", out);
    free(out);
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    mech_acdc_graph *g = graph(m, 1);
    uint8_t *truth = calloc((size_t)g->n_edges, 1);
    int n_true = 0;
    if (mech_acdc_truth_model(m, g, truth, &n_true, &err)) fail_msg("%s", err.msg);
    mech_pair *pairs = NULL;
    enum { N = 40 };
    if (mech_dataset_compiled(m, N, 0, 1, "random", &pairs, &err)) fail_msg("%s", err.msg);
    int T = pairs[0].n;
    int32_t *clean = malloc(sizeof(int32_t) * N * T), *corrupt = malloc(sizeof(int32_t) * N * T);
    int32_t ans[N], wrong[N];
    for (int i = 0; i < N; i++) {
        memcpy(clean + i * T, pairs[i].clean, sizeof(int32_t) * T);
        memcpy(corrupt + i * T, pairs[i].corrupt, sizeof(int32_t) * T);
        ans[i] = pairs[i].answer, wrong[i] = pairs[i].wrong;
    }
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double *scores = calloc((size_t)g->n_edges, sizeof *scores);
    if (mech_eap_scores(m, g, clean, corrupt, N, T, &mt, 0, scores, NULL, &err)) fail_msg("%s", err.msg);
    double auc = eap_auc(g, scores, truth);
    print_message("reverse.rasp: %d truth edges of %d counted; EAP AUC %.3f\n", n_true, g->n_addition + g->n_direct, auc);
    // A compiled model's attention is hard and its MLPs are lookup tables:
    // their local derivatives are 0 almost everywhere, so only the last
    // head's value path (embedding -> v -> result -> resid_post) gets a
    // gradient. What EAP does score is the circuit: no false positive, and
    // the AUC is above 0 (it is 3/14: the truth edges it misses tie at 0).
    int hit = 0;
    for (int e = 0; e < g->n_edges; e++)
        if (scores[e] != 0) {
            if (!truth[e]) fail_msg("false positive %s -> %s", g->nodes[g->edges[e].sender].name, g->nodes[g->edges[e].receiver].name);
            hit++;
        }
    assert_true(hit >= 3);
    assert_true(auc > 0);
    assert_true(fabs(mech_eap_auc(g, scores, truth) - auc) < 1e-12);
    free(scores), free(clean), free(corrupt), free(truth);
    mech_pairs_free(pairs, N);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// EAP-IG and clean-corrupted

static const mech_eap_method methods[4] = {MECH_EAP_PLAIN, MECH_EAP_IG_INPUTS, MECH_EAP_IG_ACTIVATIONS,
                                           MECH_EAP_CLEAN_CORRUPTED};

static void scores_of(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean, const int32_t *corrupt,
                      int B, int T, const mech_metric *mt, mech_eap_method method, int steps, double *scores,
                      double *value) {
    mech_err err = {0};
    mech_eap_opts o = {.method = method, .ig_steps = steps, .threads = 1};
    if (mech_eap_scores_opts(m, g, clean, corrupt, B, T, mt, &o, scores, value, &err))
        fail_msg("%s: %s", mech_eap_method_name(method), err.msg);
}

// The hook point of a receiver node (the point a patch of an edge into it shifts).
static void receiver_hook(const mech_acdc_node *v, char *hook, size_t n) {
    static const char *const ins[3] = {"q_input", "k_input", "v_input"}, *const qkv[3] = {"q", "k", "v"};
    switch (v->kind) {
    case MECH_ACDC_RESID_POST: snprintf(hook, n, "blocks.%d.hook_resid_post", v->layer); break;
    case MECH_ACDC_MLP_IN: snprintf(hook, n, "blocks.%d.hook_mlp_in", v->layer); break;
    case MECH_ACDC_Q_INPUT: case MECH_ACDC_K_INPUT: case MECH_ACDC_V_INPUT:
        snprintf(hook, n, "blocks.%d.hook_%s", v->layer, ins[v->kind - MECH_ACDC_Q_INPUT]);
        break;
    case MECH_ACDC_Q: case MECH_ACDC_K: case MECH_ACDC_V:
        snprintf(hook, n, "blocks.%d.attn.hook_%s", v->layer, qkv[v->kind - MECH_ACDC_Q]);
        break;
    default: fail_msg("not a receiver: %s", v->name);
    }
}

// The exact effect of any edge: the clean run with the receiver's input (or
// q/k/v for a DIRECT edge) shifted by the sender's corrupted - clean output.
static double exact_edge(const mech_model *m, const mech_acdc_graph *g, int e, const int32_t *clean,
                         const int32_t *corrupt, int B, int T, const mech_metric *mt) {
    const mech_acdc_node *s = &g->nodes[g->edges[e].sender], *v = &g->nodes[g->edges[e].receiver];
    float *a = sender_out(m, s, clean, B, T), *b = sender_out(m, s, corrupt, B, T);
    int w = g->edges[e].type == MECH_ACDC_DIRECT ? m->cfg.d_head : m->cfg.d_model;
    for (int i = 0; i < B * T * w; i++) b[i] -= a[i];
    patch p = {.delta = b, .h = v->head, .H = m->cfg.n_heads, .width = w, .BT = B * T};
    char hook[64];
    receiver_hook(v, hook, sizeof hook);
    double d = run_metric(m, clean, B, T, mt, hook, &p) - run_metric(m, clean, B, T, mt, NULL, NULL);
    free(a);
    free(b);
    return d;
}

// Attention only, no LayerNorm, and W_Q = b_Q = 0: every pattern is uniform
// whatever the input, so the logit difference is linear in every activation
// and every gradient is constant. EAP and all its variants must then equal
// the exact effect of patching each edge, on every counted edge.
static void test_variants_equal_exact_patching_when_linear(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 2, 1, 0, 17);
    int A = m->cfg.n_heads * m->cfg.d_head, C = m->cfg.d_model;
    char name[64];
    for (int l = 0; l < m->cfg.n_layers; l++) {
        snprintf(name, sizeof name, "h.%d.attn.c_attn.weight", l);
        float *w = mech_model_param(m, name);
        snprintf(name, sizeof name, "h.%d.attn.c_attn.bias", l);
        float *b = mech_model_param(m, name);
        assert_non_null(w);
        assert_non_null(b);
        for (int i = 0; i < C; i++) memset(w + (size_t)i * 3 * A, 0, sizeof(float) * A);
        memset(b, 0, sizeof(float) * A);
    }
    mech_acdc_graph *g = graph(m, 0);
    enum { B = 2, T = 5 };
    int32_t clean[B * T], corrupt[B * T], ans[B] = {3, 8}, wrong[B] = {11, 1};
    mech_test_seed(321);
    random_ids(clean, B * T, m->cfg.d_vocab);
    random_ids(corrupt, B * T, m->cfg.d_vocab);
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double *want = calloc((size_t)g->n_edges, sizeof *want), *got = calloc((size_t)g->n_edges, sizeof *got);
    int nonzero = 0, counted = 0;
    for (int e = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
        want[e] = exact_edge(m, g, e, clean, corrupt, B, T, &mt);
        nonzero += fabs(want[e]) > 1e-3;
        counted++;
    }
    assert_true(nonzero >= counted / 3); // the v paths and resid_post carry the effects
    for (int k = 0; k < 4; k++) {
        double value = NAN;
        scores_of(m, g, clean, corrupt, B, T, &mt, methods[k], 3, got, &value);
        assert_true(fabs(value - run_metric(m, clean, B, T, &mt, NULL, NULL)) < 1e-4);
        for (int e = 0; e < g->n_edges; e++) {
            if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) {
                assert_true(got[e] == 0);
                continue;
            }
            if (fabs(got[e] - want[e]) > 1e-5 + 1e-4 * fabs(want[e]))
                fail_msg("%s: %s -> %s: score %.7g, exact %.7g", mech_eap_method_name(methods[k]),
                         g->nodes[g->edges[e].sender].name, g->nodes[g->edges[e].receiver].name, got[e], want[e]);
        }
    }
    free(want), free(got);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// A whole hook point's (B*T, width) values on ids.
static float *hook_values(const mech_model *m, const char *name, const int32_t *ids, int B, int T, size_t *n) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_cache(r, name, &err) || mech_run_forward(r, ids, &err))
        fail_msg("%s", err.msg);
    const mech_tensor *t = mech_run_get(r, name);
    *n = mech_tensor_numel(t);
    float *out = malloc(sizeof(float) * *n);
    memcpy(out, t->data, sizeof(float) * *n);
    mech_run_free(r);
    return out;
}

// The metric of the clean run with hook point `name` set to its corrupted values.
static double patched_point(const mech_model *m, const char *name, const int32_t *clean, const int32_t *corrupt, int B,
                            int T, const mech_metric *mt) {
    size_t n, n2;
    float *a = hook_values(m, name, clean, B, T, &n), *b = hook_values(m, name, corrupt, B, T, &n2);
    for (size_t i = 0; i < n; i++) b[i] -= a[i];
    patch p = {.delta = b, .h = -1, .H = 1, .width = (int)(n / (size_t)(B * T)), .BT = B * T};
    double v = run_metric(m, clean, B, T, mt, name, &p);
    free(a), free(b);
    return v;
}

// Sum of the scores of every edge out of the senders matching kind (and layer).
static double sum_out(const mech_acdc_graph *g, const double *s, mech_acdc_node_kind kind, int layer) {
    double acc = 0;
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_node *n = &g->nodes[g->edges[e].sender];
        if (g->edges[e].type == MECH_ACDC_ADDITION && n->kind == kind && (layer < 0 || n->layer == layer)) acc += s[e];
    }
    return acc;
}

// Completeness, where the model is not linear along the path (LayerNorm,
// MLPs, softmax): the input embedding reaches every receiver, so the sum of
// its edges' scores is (x_corrupt - x_clean) . the mean gradient at the
// embedding, a Riemann sum of the path integral m(corrupt) - m(clean). It
// must converge to that as m grows; likewise, for the activations variant,
// a layer's heads' (or MLP's) edges sum to the effect of patching that
// layer's output to its corrupted value.
static void test_ig_converges(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 2, 0, 1, 5);
    mech_acdc_graph *g = graph(m, 0);
    enum { B = 2, T = 6 };
    int32_t clean[B * T], corrupt[B * T], ans[B] = {2, 7}, wrong[B] = {9, 4};
    mech_test_seed(77);
    random_ids(clean, B * T, m->cfg.d_vocab);
    random_ids(corrupt, B * T, m->cfg.d_vocab);
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
    double m_clean = run_metric(m, clean, B, T, &mt, NULL, NULL), m_corrupt = run_metric(m, corrupt, B, T, &mt, NULL, NULL);
    // (scores are the change when the edge reads the corrupted sender: m(corrupt) - m(clean))
    double exact_in = m_corrupt - m_clean;
    double exact_heads = patched_point(m, "blocks.0.attn.hook_result", clean, corrupt, B, T, &mt) - m_clean;
    double exact_mlp = patched_point(m, "blocks.0.hook_mlp_out", clean, corrupt, B, T, &mt) - m_clean;
    print_message("exact: input %.6f, layer-0 heads %.6f, layer-0 MLP %.6f\n", exact_in, exact_heads, exact_mlp);
    assert_true(fabs(exact_in) > 0.1 && fabs(exact_heads) > 0.01 && fabs(exact_mlp) > 0.01);
    double *s = calloc((size_t)g->n_edges, sizeof *s);
    static const int steps[3] = {1, 16, 64};
    double err_in[3], err_act[3][3];
    for (int i = 0; i < 3; i++) {
        scores_of(m, g, clean, corrupt, B, T, &mt, MECH_EAP_IG_INPUTS, steps[i], s, NULL);
        err_in[i] = fabs(sum_out(g, s, MECH_ACDC_EMBED, -1) - exact_in);
        scores_of(m, g, clean, corrupt, B, T, &mt, MECH_EAP_IG_ACTIVATIONS, steps[i], s, NULL);
        err_act[0][i] = fabs(sum_out(g, s, MECH_ACDC_EMBED, -1) - exact_in);
        err_act[1][i] = fabs(sum_out(g, s, MECH_ACDC_RESULT, 0) - exact_heads);
        err_act[2][i] = fabs(sum_out(g, s, MECH_ACDC_MLP_OUT, 0) - exact_mlp);
        print_message("m=%d: |IG - exact| inputs %.2e; activations: input %.2e, heads %.2e, MLP %.2e\n", steps[i],
                      err_in[i], err_act[0][i], err_act[1][i], err_act[2][i]);
    }
    // The Riemann sums' error shrinks like 1/m (by about 4 from m = 16 to
    // 64): m = 64 is within 3% of the effect, and m = 1 (a single gradient,
    // at one end) is far off.
    assert_true(err_in[1] < err_in[0] && err_in[2] < 0.5 * err_in[1] && err_in[2] < 0.03 * fabs(exact_in));
    assert_true(err_in[0] > 0.1 * fabs(exact_in));
    double ex[3] = {exact_in, exact_heads, exact_mlp};
    for (int j = 0; j < 3; j++) {
        assert_true(err_act[j][1] < err_act[j][0] && err_act[j][2] < 0.5 * err_act[j][1]);
        assert_true(err_act[j][2] < 0.03 * fabs(ex[j]));
    }
    free(s);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// Each variant's batch scores are the mean of its prompts' scores alone.
static void test_variants_batch_independent(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(2, 2, 0, 1, 23);
    mech_acdc_graph *g = graph(m, 0);
    enum { B = 3, T = 5 };
    int32_t clean[B * T], corrupt[B * T], ans[B] = {4, 9, 1}, wrong[B] = {6, 2, 8};
    mech_test_seed(4242);
    random_ids(clean, B * T, m->cfg.d_vocab);
    random_ids(corrupt, B * T, m->cfg.d_vocab);
    size_t E = (size_t)g->n_edges;
    double *all = calloc(E, sizeof *all), *one = calloc(E, sizeof *one), *mean = calloc(E, sizeof *mean);
    for (int k = 1; k < 4; k++) {
        mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans, .wrong = wrong};
        scores_of(m, g, clean, corrupt, B, T, &mt, methods[k], 4, all, NULL);
        memset(mean, 0, E * sizeof *mean);
        for (int b = 0; b < B; b++) {
            mech_metric m1 = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = ans + b, .wrong = wrong + b};
            scores_of(m, g, clean + b * T, corrupt + b * T, 1, T, &m1, methods[k], 4, one, NULL);
            for (size_t e = 0; e < E; e++) mean[e] += one[e] / B;
        }
        double big = 0;
        for (size_t e = 0; e < E; e++) {
            big = fmax(big, fabs(mean[e]));
            if (fabs(all[e] - mean[e]) > 1e-4 * (1 + fabs(mean[e])))
                fail_msg("%s: edge %zu: batch %.7g, mean alone %.7g", mech_eap_method_name(methods[k]), e, all[e], mean[e]);
        }
        assert_true(big > 0.05);
    }
    free(all), free(one), free(mean);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

static void test_method_names(void **state) {
    (void)state;
    mech_eap_method k;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(mech_eap_method_parse(mech_eap_method_name(methods[i]), &k), 0);
        assert_int_equal(k, methods[i]);
    }
    assert_int_equal(mech_eap_method_parse("eap-ig", &k), -1);
    assert_null(mech_eap_method_name((mech_eap_method)9));
    mech_model *m = mech_test_small_model(1, 2, 1, 0, 1);
    mech_acdc_graph *g = graph(m, 0);
    int32_t ids[4] = {1, 2, 3, 4}, a = 1, w = 2;
    double s[64];
    mech_err err = {0};
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = &a, .wrong = &w};
    mech_eap_opts o = {.method = (mech_eap_method)9};
    assert_int_equal(mech_eap_scores_opts(m, g, ids, ids, 1, 4, &mt, &o, s, NULL, &err), MECH_ERR_ARG);
    o = (mech_eap_opts){.method = MECH_EAP_IG_INPUTS, .ig_steps = 10001};
    assert_int_equal(mech_eap_scores_opts(m, g, ids, ids, 1, 4, &mt, &o, s, NULL, &err), MECH_ERR_ARG);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eap_equals_exact_patching_when_linear),
        cmocka_unit_test(test_eap_same_input_scores_zero),
        cmocka_unit_test(test_eap_batch_independent),
        cmocka_unit_test(test_eap_errors),
        cmocka_unit_test(test_eap_select),
        cmocka_unit_test(test_eap_compiled_reverse_auc),
        cmocka_unit_test(test_variants_equal_exact_patching_when_linear),
        cmocka_unit_test(test_ig_converges),
        cmocka_unit_test(test_variants_batch_independent),
        cmocka_unit_test(test_method_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
