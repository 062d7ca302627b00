/*
** tests/test_interp_acdc.c: ACDC (interp/acdc_graph.c, interp/acdc.c): the
** graph against the reference's counts and names; the search's fast mode
** against the naive oracle (one full forward per trial through the hook API)
** on small random models, trial by trial; the identities a search must keep
** (the full graph is the model, no edge is the ablated model); resume and
** cancellation.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "interp/interp.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// The graph

static mech_acdc_graph *graph(mech_config c, int split) {
    mech_err err = {0};
    mech_acdc_graph *g = NULL;
    if (mech_acdc_graph_new(&c, split, &g, &err)) fail_msg("graph_new: %s", err.msg);
    return g;
}

static void check_counts(mech_config c, int split, int nodes, int addition, int direct, int placeholder) {
    mech_acdc_graph *g = graph(c, split);
    assert_int_equal(g->n_nodes, nodes);
    assert_int_equal(g->n_addition, addition);
    assert_int_equal(g->n_direct, direct);
    assert_int_equal(g->n_placeholder, placeholder);
    assert_int_equal(g->n_edges, addition + direct + placeholder);
    assert_int_equal(mech_acdc_graph_count_present(g), addition + direct);
    mech_acdc_graph_free(g);
}

static void test_acdc_graph_counts(void **state) {
    (void)state;
    mech_config c = mech_config_gpt2_small();
    check_counts(c, 0, 1034, 32491, 432, 444); // 32,923 counted, as the reference
    mech_config a = c;                          // redwood_attn_2l: 2 layers x 8 heads, attention only
    a.n_layers = 2, a.n_heads = 8, a.attn_only = 1, a.d_mlp = 0;
    check_counts(a, 0, 114, 257, 48, 48);       // 305
    mech_config t = c;                          // tracr-proportion: 2L x 1H, split embeddings
    t.n_layers = 2, t.n_heads = 1;
    check_counts(t, 1, 21, 32, 6, 8);           // 38
    t.n_layers = 4;                             // tracr-reverse
    check_counts(t, 1, 39, 94, 12, 16);         // 106
    mech_config med = c;                        // GPT-2 medium
    med.n_layers = 24, med.n_heads = 16;
    check_counts(med, 0, 2738, 231877, 1152, 1176);
}

static void test_acdc_graph_names(void **state) {
    (void)state;
    mech_config c = mech_config_gpt2_small();
    mech_acdc_graph *g = graph(c, 0);
    const char *names[] = {"blocks.3.attn.hook_result[:, :, 5]", "blocks.3.hook_q_input[:, :, 5]",
                           "blocks.3.attn.hook_q[:, :, 5]",      "blocks.3.hook_mlp_in[:]",
                           "blocks.11.hook_resid_post[:]",       "blocks.0.hook_resid_pre[:]",
                           "blocks.0.hook_mlp_out[:]",           "blocks.11.hook_v_input[:, :, 11]"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        int v = mech_acdc_graph_node(g, names[i]);
        if (v < 0) fail_msg("node %s missing", names[i]);
        assert_string_equal(g->nodes[v].name, names[i]);
    }
    assert_int_equal(mech_acdc_graph_node(g, "hook_embed[:]"), -1);
    assert_int_equal(mech_acdc_graph_node(g, "blocks.12.hook_mlp_in[:]"), -1);
    int res = mech_acdc_graph_node(g, "blocks.3.attn.hook_result[:, :, 5]");
    assert_int_equal(g->nodes[res].kind, MECH_ACDC_RESULT);
    assert_int_equal(g->nodes[res].layer, 3);
    assert_int_equal(g->nodes[res].head, 5);
    // Heads of a layer feed that layer's MLP and later q/k/v inputs, not their own layer's.
    int mi3 = mech_acdc_graph_node(g, "blocks.3.hook_mlp_in[:]"), q3 = mech_acdc_graph_node(g, "blocks.3.hook_q_input[:, :, 0]");
    int q4 = mech_acdc_graph_node(g, "blocks.4.hook_q_input[:, :, 0]"), rp = mech_acdc_graph_node(g, "blocks.11.hook_resid_post[:]");
    int mo3 = mech_acdc_graph_node(g, "blocks.3.hook_mlp_out[:]"), emb = mech_acdc_graph_node(g, "blocks.0.hook_resid_pre[:]");
    assert_true(mech_acdc_graph_edge(g, res, mi3) >= 0);
    assert_int_equal(mech_acdc_graph_edge(g, res, q3), -1);
    assert_true(mech_acdc_graph_edge(g, res, q4) >= 0);
    assert_true(mech_acdc_graph_edge(g, mo3, q4) >= 0);
    assert_int_equal(mech_acdc_graph_edge(g, mo3, mi3), -1);
    assert_true(mech_acdc_graph_edge(g, emb, rp) >= 0);
    int e = mech_acdc_graph_edge(g, q3, mech_acdc_graph_node(g, "blocks.3.attn.hook_q[:, :, 0]"));
    assert_true(e >= 0);
    assert_int_equal(g->edges[e].type, MECH_ACDC_DIRECT);
    e = mech_acdc_graph_edge(g, mech_acdc_graph_node(g, "blocks.3.attn.hook_q[:, :, 5]"), res);
    assert_int_equal(g->edges[e].type, MECH_ACDC_PLACEHOLDER);
    e = mech_acdc_graph_edge(g, mi3, mo3);
    assert_int_equal(g->edges[e].type, MECH_ACDC_PLACEHOLDER);
    assert_true(isnan(g->edges[e].effect));
    // resid_post reads every writer: 1 + 12 * 13 of them, the last MLP first.
    assert_int_equal(g->first_in[rp + 1] - g->first_in[rp], 157);
    assert_string_equal(g->nodes[g->edges[g->first_in[rp]].sender].name, "blocks.11.hook_mlp_out[:]");
    assert_string_equal(g->nodes[g->edges[g->first_in[rp] + 1].sender].name, "blocks.11.attn.hook_result[:, :, 11]");
    assert_int_equal(g->edges[g->first_in[rp + 1] - 1].sender, emb);
    mech_acdc_graph_free(g);

    g = graph(c, 1);
    assert_int_equal(mech_acdc_graph_node(g, "blocks.0.hook_resid_pre[:]"), -1);
    int te = mech_acdc_graph_node(g, "hook_embed[:]"), pe = mech_acdc_graph_node(g, "hook_pos_embed[:]");
    assert_true(te >= 0 && pe >= 0);
    assert_int_equal(g->nodes[te].kind, MECH_ACDC_EMBED);
    assert_int_equal(g->nodes[pe].kind, MECH_ACDC_POS_EMBED);
    mech_acdc_graph_free(g);
}

// ---------------------------------------------------------------------------
// Small random models and runs

static uint64_t rng_state;
static double urand(void) { // uniform [0, 1), xorshift64*
    rng_state ^= rng_state >> 12, rng_state ^= rng_state << 25, rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

// A random model whose weights are large enough for edges to matter (GPT-2's
// init makes every effect tiny) and whose biases are not zero, so that the
// zero ablation's bias-only residual is exercised.
static int small_bidirectional; // the next small_model attends both ways

static mech_model *small_model(int layers, int heads, int attn_only, int layernorm, uint64_t seed) {
    mech_config c = mech_config_gpt2_small();
    c.causal = !small_bidirectional;
    c.n_layers = layers, c.n_heads = heads, c.d_model = 16, c.d_head = 4, c.d_mlp = attn_only ? 0 : 24;
    c.n_ctx = 8, c.d_vocab = 23, c.attn_only = attn_only, c.norm = layernorm ? MECH_NORM_LAYERNORM : MECH_NORM_NONE;
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, seed, &m, &err)) fail_msg("model_random: %s", err.msg);
    mech_model_tensor *t = NULL;
    size_t n = 0;
    if (mech_model_tensors(m, &t, &n, &err)) fail_msg("model_tensors: %s", err.msg);
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        float *p = mech_model_param(m, t[i].name);
        if (!p || strstr(t[i].name, "ln_")) continue;
        size_t k = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        int bias = strstr(t[i].name, ".bias") != NULL;
        float scale = layernorm ? 0.35f : 0.2f;
        for (size_t j = 0; j < k; j++) p[j] = bias ? (float)(0.2 * (urand() - 0.5)) : p[j] / 0.02f * scale;
    }
    mech_free(t);
    return m;
}

enum { SB = 3, ST = 6 };
static int32_t s_clean[SB * ST], s_corrupt[SB * ST], s_answer[SB], s_wrong[SB];

static void small_inputs(int vocab, uint64_t seed) {
    rng_state = seed * 7919 + 3;
    for (int i = 0; i < SB * ST; i++) {
        s_clean[i] = (int32_t)(urand() * vocab);
        s_corrupt[i] = (int32_t)(urand() * vocab);
    }
    for (int b = 0; b < SB; b++) s_answer[b] = (int32_t)(urand() * vocab), s_wrong[b] = (s_answer[b] + 1) % vocab;
}

typedef struct trial_log {
    mech_acdc_trial *t;
    int n, cap;
    int stop_after; // > 0: on_trial asks to stop after this many
} trial_log;

static int log_trial(const mech_acdc_trial *t, void *user) {
    trial_log *lg = user;
    if (lg->n == lg->cap) {
        lg->cap = lg->cap ? 2 * lg->cap : 256;
        lg->t = realloc(lg->t, (size_t)lg->cap * sizeof *lg->t);
        assert_non_null(lg->t);
    }
    lg->t[lg->n++] = *t;
    return lg->stop_after > 0 && lg->n >= lg->stop_after;
}

static mech_acdc_opts small_opts(mech_acdc_metric metric, double tau, trial_log *lg) {
    mech_acdc_opts o = {.metric = metric, .ablation = MECH_ACDC_RESAMPLE, .tau = tau, .answer = s_answer,
                        .wrong = s_wrong, .on_trial = log_trial, .user = lg, .threads = 1};
    return o;
}

static mech_status run(const mech_model *m, int split, const mech_acdc_opts *o, mech_acdc_graph **g,
                       mech_acdc_result *res, mech_err *err) {
    if (!*g) *g = graph(m->cfg, split);
    return mech_acdc_run(m, s_clean, o->ablation == MECH_ACDC_ZERO ? NULL : s_corrupt, SB, ST, o, *g, res, err);
}

// ---------------------------------------------------------------------------
// Identities

static void test_acdc_full_graph_is_the_model(void **state) {
    (void)state;
    for (int naive = 1; naive >= 0; naive--)
        for (int split = 0; split <= 1; split++) {
            mech_model *m = small_model(2, 2, 0, 1, 5 + (uint64_t)split);
            small_inputs(m->cfg.d_vocab, 1);
            trial_log lg = {0};
            mech_acdc_opts o = small_opts(MECH_ACDC_KL, -INFINITY, &lg); // nothing is removed
            o.naive = naive;
            mech_acdc_graph *g = NULL;
            mech_acdc_result res;
            mech_err err = {0};
            if (run(m, split, &o, &g, &res, &err)) fail_msg("run: %s", err.msg);
            assert_true(fabs(res.metric_final) < 1e-6);
            assert_int_equal(mech_acdc_graph_count_present(g), g->n_addition + g->n_direct);
            assert_int_equal(res.n_trials, g->n_addition + g->n_direct);
            for (int i = 0; i < lg.n; i++) {
                assert_false(lg.t[i].removed);
                assert_true(fabs(lg.t[i].before) < 1e-6);
                assert_true(lg.t[i].after > 0);
            }
            free(lg.t);
            mech_acdc_graph_free(g);
            mech_model_free(m);
        }
}

// ---------------------------------------------------------------------------
// Fast against naive, trial by trial

typedef struct variant {
    int layers, heads, attn_only, layernorm, split;
    mech_acdc_metric metric;
    mech_acdc_ablation ablation;
    double tau;
    int ascending, abs_value;
    int bidirectional, masked; // masked: KL at two positions per sequence
} variant;

static uint8_t s_mask[SB * ST];

static double worst_rel; // largest relative disagreement seen

static void compare_variant(const variant *vr, uint64_t seed) {
    small_bidirectional = vr->bidirectional;
    mech_model *m = small_model(vr->layers, vr->heads, vr->attn_only, vr->layernorm, seed);
    small_bidirectional = 0;
    memset(s_mask, 0, sizeof s_mask);
    for (int b = 0; b < SB; b++) s_mask[b * ST + 1 + b] = s_mask[b * ST + ST - 2] = 1;
    small_inputs(m->cfg.d_vocab, seed + 11);
    trial_log lg[2] = {{0}};
    mech_acdc_graph *g[2] = {NULL, NULL};
    mech_acdc_result res[2];
    // tau: vr->tau times the median effect of removing one edge from the
    // full graph, so that both decisions are common.
    double tau;
    {
        trial_log probe = {0};
        mech_acdc_opts o = small_opts(vr->metric, -INFINITY, &probe);
        o.ablation = vr->ablation;
        o.n_out = vr->metric == MECH_ACDC_L2 ? 5 : 0;
        o.mask = vr->masked ? s_mask : NULL;
        mech_acdc_graph *pg = NULL;
        mech_err err = {0};
        if (run(m, vr->split, &o, &pg, NULL, &err)) fail_msg("probe: %s", err.msg);
        double *eff = malloc((size_t)probe.n * sizeof *eff);
        for (int i = 0; i < probe.n; i++) eff[i] = fabs(probe.t[i].after - probe.t[i].before);
        for (int i = 1; i < probe.n; i++) // insertion sort: a few hundred values
            for (int j = i; j > 0 && eff[j - 1] > eff[j]; j--) {
                double t = eff[j];
                eff[j] = eff[j - 1], eff[j - 1] = t;
            }
        tau = vr->tau * eff[probe.n / 2];
        free(eff);
        free(probe.t);
        mech_acdc_graph_free(pg);
    }
    for (int naive = 0; naive <= 1; naive++) {
        mech_acdc_opts o = small_opts(vr->metric, tau, &lg[naive]);
        o.naive = naive;
        o.ablation = vr->ablation;
        o.heads_ascending = vr->ascending;
        o.abs_value = vr->abs_value;
        o.n_out = vr->metric == MECH_ACDC_L2 ? 5 : 0;
        o.mask = vr->masked ? s_mask : NULL;
        mech_err err = {0};
        if (run(m, vr->split, &o, &g[naive], &res[naive], &err)) fail_msg("run (naive %d): %s", naive, err.msg);
    }
    if (getenv("ACDC_TEST_VERBOSE"))
        fprintf(stderr, "variant L%d H%d ao%d ln%d split%d metric%d abl%d tau %g asc%d bi%d mask%d: %d trials, %d kept of %d, final %g\n",
                vr->layers, vr->heads, vr->attn_only, vr->layernorm, vr->split, vr->metric, vr->ablation, tau,
                vr->ascending, vr->bidirectional, vr->masked, lg[0].n, mech_acdc_graph_count_present(g[0]), g[0]->n_addition + g[0]->n_direct,
                res[0].metric_final);
    assert_int_equal(lg[0].n, lg[1].n);
    assert_int_equal(res[0].n_trials, lg[0].n);
    for (int i = 0; i < lg[0].n; i++) {
        const mech_acdc_trial *a = &lg[0].t[i], *b = &lg[1].t[i];
        double scale = fabs(b->after) > 1e-3 ? fabs(b->after) : 1e-3;
        double rel = fmax(fabs(a->after - b->after), fabs(a->before - b->before)) / scale;
        if (rel > worst_rel) worst_rel = rel;
        if (a->edge != b->edge || a->removed != b->removed || rel > 1e-4)
            fail_msg("trial %d: fast edge %d removed %d (%.9g -> %.9g), naive edge %d removed %d (%.9g -> %.9g)", i,
                     a->edge, a->removed, a->before, a->after, b->edge, b->removed, b->before, b->after);
    }
    for (int e = 0; e < g[0]->n_edges; e++) assert_int_equal(g[0]->edges[e].present, g[1]->edges[e].present);
    assert_true(fabs(res[0].metric_final - res[1].metric_final) <= 1e-5 * fmax(1e-3, fabs(res[1].metric_final)));
    for (int k = 0; k < 2; k++) {
        free(lg[k].t);
        mech_acdc_graph_free(g[k]);
    }
    mech_model_free(m);
}

static void test_acdc_fast_equals_naive(void **state) {
    (void)state;
    // tau is a multiple of the median single-edge effect
    const variant vs[] = {
        {2, 2, 0, 1, 0, MECH_ACDC_KL, MECH_ACDC_RESAMPLE, 0.5, 0, 0, 0, 0},
        {2, 2, 0, 1, 0, MECH_ACDC_KL, MECH_ACDC_RESAMPLE, 2, 1, 0, 0, 0},
        {2, 3, 1, 1, 0, MECH_ACDC_KL, MECH_ACDC_RESAMPLE, 1, 0, 0, 0, 0},
        {3, 2, 0, 0, 1, MECH_ACDC_L2, MECH_ACDC_ZERO, 1, 0, 0, 0, 0},
        {2, 2, 0, 1, 1, MECH_ACDC_L2, MECH_ACDC_RESAMPLE, 0.5, 1, 0, 0, 0},
        {3, 2, 0, 1, 0, MECH_ACDC_LOGIT_DIFF, MECH_ACDC_RESAMPLE, 1, 0, 0, 0, 0},
        {2, 2, 1, 0, 0, MECH_ACDC_LOGIT_DIFF, MECH_ACDC_ZERO, 1, 1, 1, 0, 0},
        {3, 3, 0, 1, 0, MECH_ACDC_KL, MECH_ACDC_ZERO, 0.3, 0, 0, 0, 0},
        {3, 3, 0, 1, 1, MECH_ACDC_KL, MECH_ACDC_RESAMPLE, 3, 1, 0, 0, 0},
        {2, 4, 0, 0, 0, MECH_ACDC_KL, MECH_ACDC_RESAMPLE, 1, 0, 1, 0, 0},
        {3, 2, 0, 1, 0, MECH_ACDC_KL, MECH_ACDC_RESAMPLE, 1, 0, 0, 0, 1},    // KL at masked positions
        {2, 3, 0, 1, 1, MECH_ACDC_KL, MECH_ACDC_RESAMPLE, 0.7, 1, 0, 1, 1},  // bidirectional attention
        {3, 2, 1, 0, 0, MECH_ACDC_LOGIT_DIFF, MECH_ACDC_RESAMPLE, 1, 0, 0, 1, 0},
    };
    for (size_t i = 0; i < sizeof vs / sizeof *vs; i++) compare_variant(&vs[i], 100 + i);
    if (getenv("ACDC_TEST_VERBOSE")) fprintf(stderr, "worst relative disagreement %.3g\n", worst_rel);
}

// Zero ablation with every edge removed: the final residual stream is the
// corrupted one, which holds only the attention output biases (every head
// result, MLP output and the embedding are zeroed), so the logits are
// unembed(ln_final(sum_l b_O[l])) at every position.
static void test_acdc_zero_ablation_removes_everything(void **state) {
    (void)state;
    for (int naive = 1; naive >= 0; naive--) {
        mech_model *m = small_model(2, 2, 0, 1, 77);
        small_inputs(m->cfg.d_vocab, 78);
        const mech_config *c = &m->cfg;
        int C = c->d_model, V = c->d_vocab;
        // Expected logits of the ablated model (the same at every position).
        double resid[64] = {0}, mean = 0, var = 0;
        for (int l = 0; l < c->n_layers; l++)
            for (int k = 0; k < C; k++) resid[k] += m->layers[l].o_b[k];
        for (int k = 0; k < C; k++) mean += resid[k] / C;
        for (int k = 0; k < C; k++) var += (resid[k] - mean) * (resid[k] - mean) / C;
        double lg[64], mx = -INFINITY, se = 0;
        for (int v = 0; v < V; v++) {
            double acc = 0;
            for (int k = 0; k < C; k++)
                acc += ((resid[k] - mean) / sqrt(var + c->ln_eps) * m->lnf_w[k] + m->lnf_b[k]) * m->unembed[(size_t)v * C + k];
            lg[v] = acc;
            mx = fmax(mx, acc);
        }
        for (int v = 0; v < V; v++) se += exp(lg[v] - mx);
        // KL(full || ablated) at the last position, from the full model's logits.
        mech_err err = {0};
        mech_run *r = NULL;
        if (mech_run_new(m, SB, ST, &r, &err) || mech_run_forward(r, s_clean, &err)) fail_msg("%s", err.msg);
        const float *full = mech_run_logits(r);
        double want = 0;
        for (int b = 0; b < SB; b++) {
            const float *row = full + ((size_t)b * ST + ST - 1) * V;
            double fm = -INFINITY, fs = 0;
            for (int v = 0; v < V; v++) fm = fmax(fm, row[v]);
            for (int v = 0; v < V; v++) fs += exp(row[v] - fm);
            for (int v = 0; v < V; v++) {
                double lp = row[v] - fm - log(fs), lq = lg[v] - mx - log(se);
                want += exp(lp) * (lp - lq) / SB;
            }
        }
        mech_run_free(r);
        trial_log tl = {0};
        mech_acdc_opts o = small_opts(MECH_ACDC_KL, INFINITY, &tl);
        o.ablation = MECH_ACDC_ZERO;
        o.naive = naive;
        mech_acdc_graph *g = NULL;
        mech_acdc_result res;
        if (run(m, 0, &o, &g, &res, &err)) fail_msg("run: %s", err.msg);
        assert_int_equal(mech_acdc_graph_count_present(g), 0);
        // Only resid_post's edges are tried: then every node is disconnected.
        assert_int_equal(res.n_trials, 1 + 2 * 3);
        assert_true(want > 0.01);
        if (fabs(res.metric_final - want) > 1e-5 * want)
            fail_msg("naive %d: ablated KL %.9g, expected %.9g", naive, res.metric_final, want);
        assert_true(fabs(tl.t[tl.n - 1].after - want) <= 1e-5 * want);
        free(tl.t);
        mech_acdc_graph_free(g);
        mech_model_free(m);
    }
}

// ---------------------------------------------------------------------------
// Resume and cancel

// A run stopped after stop_at trials and resumed from its records stores
// what the uninterrupted run stores, bit for bit: every trial's before and
// after, the final metric, and the cost (macs) of the whole run.
static void check_resume(mech_model *m, int naive, int stop_at, const trial_log *full, const mech_acdc_graph *g0,
                         const mech_acdc_result *r0) {
    mech_err err = {0};
    // Stopped by the trial callback after stop_at trials.
    trial_log part = {.stop_after = stop_at};
    mech_acdc_opts o = small_opts(MECH_ACDC_KL, 0.03, &part);
    o.naive = naive;
    mech_acdc_graph *g1 = NULL;
    mech_acdc_result r1;
    assert_int_equal(run(m, 0, &o, &g1, &r1, &err), MECH_ERR_CANCELLED);
    assert_int_equal(part.n, stop_at);
    assert_int_equal(r1.n_trials, stop_at);
    for (int i = 0; i < stop_at; i++) {
        const mech_acdc_trial *a = &part.t[i], *b = &full->t[i];
        if (a->edge != b->edge || a->removed != b->removed || a->before != b->before || a->after != b->after ||
            a->macs != b->macs)
            fail_msg("naive %d, stop %d: trial %d differs from the uninterrupted run's before the stop", naive, stop_at, i);
    }
    // Resumed on a fresh graph with the recorded trials.
    trial_log rest = {0};
    o = small_opts(MECH_ACDC_KL, 0.03, &rest);
    o.naive = naive;
    o.replay = part.t;
    o.n_replay = part.n;
    mech_acdc_graph *g2 = NULL;
    mech_acdc_result r2;
    if (run(m, 0, &o, &g2, &r2, &err)) fail_msg("resume: %s", err.msg);
    assert_int_equal(r2.n_trials, full->n - stop_at);
    assert_int_equal(rest.n, full->n - stop_at);
    for (int i = 0; i < rest.n; i++) {
        const mech_acdc_trial *a = &rest.t[i], *b = &full->t[stop_at + i];
        assert_int_equal(a->edge, b->edge);
        assert_int_equal(a->removed, b->removed);
        if (a->before != b->before || a->after != b->after || a->macs != b->macs)
            fail_msg("naive %d, stop %d: trial %d: resumed before %.17g after %.17g macs %lld, uninterrupted %.17g %.17g "
                     "%lld", naive, stop_at, stop_at + i, a->before, a->after, (long long)a->macs, b->before, b->after,
                     (long long)b->macs);
    }
    for (int e = 0; e < g0->n_edges; e++) {
        assert_int_equal(g2->edges[e].present, g0->edges[e].present);
        const double x = g2->edges[e].effect, y = g0->edges[e].effect;
        if (!(x == y || (isnan(x) && isnan(y)))) fail_msg("stop %d: edge %d effect %.17g, uninterrupted %.17g", stop_at, e, x, y);
    }
    if (r2.metric_final != r0->metric_final || r2.macs != r0->macs)
        fail_msg("naive %d, stop %d: metric %.17g macs %lld, uninterrupted %.17g %lld", naive, stop_at, r2.metric_final,
                 (long long)r2.macs, r0->metric_final, (long long)r0->macs);
    free(part.t), free(rest.t);
    mech_acdc_graph_free(g1), mech_acdc_graph_free(g2);
}

static void test_acdc_resume_equals_uninterrupted(void **state) {
    (void)state;
    mech_model *m = small_model(3, 2, 0, 1, 31);
    small_inputs(m->cfg.d_vocab, 32);
    mech_err err = {0};
    for (int naive = 0; naive <= 1; naive++) {
        trial_log full = {0};
        mech_acdc_opts o = small_opts(MECH_ACDC_KL, 0.03, &full);
        o.naive = naive;
        mech_acdc_graph *g0 = NULL;
        mech_acdc_result r0;
        if (run(m, 0, &o, &g0, &r0, &err)) fail_msg("run: %s", err.msg);
        assert_true(full.n > 20);
        int removed = 0;
        for (int i = 0; i < full.n; i++) removed += full.t[i].removed;
        assert_true(removed > 3 && removed < full.n - 3);
        assert_true(r0.macs > 0 && full.t[full.n - 1].macs <= r0.macs);
        // every stopping point (naive: a few)
        for (int stop = 1; stop < full.n; stop += naive ? 7 : 1) check_resume(m, naive, stop, &full, g0, &r0);
        // A replay that is not this run's is refused: another edge, or another decision.
        trial_log part = {.stop_after = 9};
        o = small_opts(MECH_ACDC_KL, 0.03, &part);
        mech_acdc_graph *g1 = NULL;
        assert_int_equal(run(m, 0, &o, &g1, NULL, &err), MECH_ERR_CANCELLED);
        trial_log none = {0};
        for (int bad = 0; bad < 2; bad++) {
            mech_acdc_trial keep4 = part.t[4], keep8 = part.t[8];
            if (bad == 0) part.t[4].edge = part.t[4].edge == 0 ? 1 : 0;
            else part.t[8].removed = !part.t[8].removed; // the last trial is evaluated again
            o = small_opts(MECH_ACDC_KL, 0.03, &none);
            o.naive = naive;
            o.replay = part.t;
            o.n_replay = part.n;
            mech_acdc_graph *g3 = NULL;
            assert_int_equal(run(m, 0, &o, &g3, NULL, &err), MECH_ERR_ARG);
            assert_non_null(strstr(err.msg, "replay"));
            mech_acdc_graph_free(g3);
            part.t[4] = keep4, part.t[8] = keep8;
        }
        free(full.t), free(part.t), free(none.t);
        mech_acdc_graph_free(g0), mech_acdc_graph_free(g1);
    }
    mech_model_free(m);
}

typedef struct cancel_ctx {
    volatile int flag;
    int n, at;
    int progress_calls;
} cancel_ctx;

static int cancel_after(const mech_acdc_trial *t, void *user) {
    (void)t;
    cancel_ctx *cc = user;
    if (++cc->n == cc->at) cc->flag = 1;
    return 0;
}

static void count_progress(const mech_acdc_progress *p, void *user) {
    cancel_ctx *cc = user;
    assert_true(p->receivers_done <= p->receivers_total);
    cc->progress_calls++;
}

static void test_acdc_cancel(void **state) {
    (void)state;
    mech_model *m = small_model(2, 2, 0, 1, 41);
    small_inputs(m->cfg.d_vocab, 42);
    cancel_ctx cc = {.at = 5};
    mech_acdc_opts o = {.metric = MECH_ACDC_KL, .ablation = MECH_ACDC_RESAMPLE, .tau = 0.01, .on_trial = cancel_after,
                        .progress = count_progress, .user = &cc, .cancel = &cc.flag, .threads = 1};
    mech_acdc_graph *g = NULL;
    mech_acdc_result res;
    mech_err err = {0};
    assert_int_equal(run(m, 0, &o, &g, &res, &err), MECH_ERR_CANCELLED);
    assert_int_equal(res.n_trials, 5);
    assert_true(cc.progress_calls >= 1);
    // The graph as decided: exactly the 5 tried edges have an effect.
    int tried = 0;
    for (int e = 0; e < g->n_edges; e++) tried += !isnan(g->edges[e].effect);
    assert_int_equal(tried, 5);
    mech_acdc_graph_free(g);

    // Errors: a graph of another shape, no corrupted inputs, no answer tokens.
    mech_config other = m->cfg;
    other.n_layers = 3;
    g = graph(other, 0);
    o = (mech_acdc_opts){.metric = MECH_ACDC_KL, .tau = 0.01};
    assert_int_equal(mech_acdc_run(m, s_clean, s_corrupt, SB, ST, &o, g, NULL, &err), MECH_ERR_ARG);
    mech_acdc_graph_free(g);
    g = graph(m->cfg, 0);
    assert_int_equal(mech_acdc_run(m, s_clean, NULL, SB, ST, &o, g, NULL, &err), MECH_ERR_ARG);
    o.metric = MECH_ACDC_LOGIT_DIFF;
    assert_int_equal(mech_acdc_run(m, s_clean, s_corrupt, SB, ST, &o, g, NULL, &err), MECH_ERR_ARG);
    o.metric = MECH_ACDC_L2;
    assert_int_equal(mech_acdc_run(m, s_clean, s_corrupt, SB, 1, &o, g, NULL, &err), MECH_ERR_ARG);
    assert_int_equal(mech_acdc_graph_count_present(g), g->n_addition + g->n_direct);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

// The reference's Tracr tasks shuffle positions with torch.manual_seed(49);
// torch.randperm(T). Expected values printed by torch 1.13.1 (Debian's
// python3-torch): torch.manual_seed(s); torch.randperm(n).tolist().
static void test_torch_randperm(void **state) {
    (void)state;
    static const struct {
        uint64_t seed;
        int n;
        int32_t want[20];
    } cases[] = {
        {49, 2, {0, 1}},
        {49, 3, {2, 0, 1}},
        {49, 4, {2, 3, 0, 1}},
        {49, 5, {0, 2, 4, 1, 3}},
        {49, 6, {2, 4, 0, 5, 1, 3}},
        {49, 7, {2, 6, 4, 0, 3, 5, 1}},
        {49, 8, {2, 3, 4, 5, 6, 1, 0, 7}},
        {49, 10, {0, 3, 2, 5, 4, 7, 8, 1, 9, 6}},
        {49, 16, {10, 9, 6, 12, 0, 7, 8, 13, 5, 4, 3, 11}},
        {49, 17, {5, 14, 4, 12, 6, 0, 15, 2, 11, 1, 10, 8}},
        {49, 100, {90, 93, 34, 57, 58, 72, 76, 43, 13, 94, 12, 69}},
        {49, 700, {590, 66, 538, 315, 226, 17, 276, 364, 441, 514, 552, 432}},
        {42, 20, {2, 14, 18, 15, 1, 10, 0, 4, 6, 11, 8, 3, 7, 17, 13, 12, 19, 5, 16, 9}},
    };
    int32_t got[700];
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        mech_acdc_torch_randperm(cases[k].seed, cases[k].n, got);
        int shown = cases[k].seed == 42 ? 20 : cases[k].n < 12 ? cases[k].n : 12; // entries listed above
        for (int i = 0; i < shown; i++)
            if (got[i] != cases[k].want[i])
                fail_msg("seed %d, n %d: position %d is %d, torch gives %d", (int)cases[k].seed, cases[k].n, i, got[i],
                         cases[k].want[i]);
        int seen[700] = {0};
        for (int i = 0; i < cases[k].n; i++) seen[got[i]]++;
        for (int i = 0; i < cases[k].n; i++) assert_int_equal(seen[i], 1);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_randperm),
        cmocka_unit_test(test_acdc_graph_counts),
        cmocka_unit_test(test_acdc_graph_names),
        cmocka_unit_test(test_acdc_full_graph_is_the_model),
        cmocka_unit_test(test_acdc_fast_equals_naive),
        cmocka_unit_test(test_acdc_zero_ablation_removes_everything),
        cmocka_unit_test(test_acdc_resume_equals_uninterrupted),
        cmocka_unit_test(test_acdc_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
