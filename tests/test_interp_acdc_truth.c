/*
** tests/test_interp_acdc_truth.c: the ground-truth circuits of compiled RASP
** programs as ACDC edges (checked against hand derivations from the
** compiler's blocks), TPR/FPR, the reference's pessimistic ROC AUC, and the
** Graphviz / JSON export.
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

typedef struct compiled {
    mech_rasp_program *p;
    mech_rasp_compiled *c;
    mech_acdc_graph *g;
    uint8_t *truth;
    int n_true;
} compiled;

static void compile_truth(const char *path, int split_embed, compiled *x) {
    mech_err err = {0};
    memset(x, 0, sizeof *x);
    if (mech_rasp_load(path, &x->p, &err)) fail_msg("%s", err.msg);
    if (mech_rasp_compile(x->p, &x->c, &err)) fail_msg("%s", err.msg);
    if (mech_acdc_graph_new(&x->c->model->cfg, split_embed, &x->g, &err)) fail_msg("%s", err.msg);
    x->truth = calloc((size_t)x->g->n_edges, 1);
    assert_non_null(x->truth);
    if (mech_acdc_truth_edges(x->c->model, (const char *const *)x->c->meta_keys, (const char *const *)x->c->meta_values,
                              x->c->n_meta, x->g, x->truth, &x->n_true, &err))
        fail_msg("%s: %s", path, err.msg);
}

static void compiled_free(compiled *x) {
    free(x->truth);
    mech_acdc_graph_free(x->g);
    mech_rasp_compiled_free(x->c);
    mech_rasp_program_free(x->p);
}

// Fails unless the truth is exactly the edges "SENDER -> RECEIVER" in want.
static void assert_truth(const compiled *x, const char *const *want, int n_want) {
    int ok = 1;
    uint8_t *expect = calloc((size_t)x->g->n_edges, 1);
    for (int i = 0; i < n_want; i++) {
        const char *arrow = strstr(want[i], " -> ");
        char s[64];
        snprintf(s, sizeof s, "%.*s", (int)(arrow - want[i]), want[i]);
        int sv = mech_acdc_graph_node(x->g, s), rv = mech_acdc_graph_node(x->g, arrow + 4);
        int e = mech_acdc_graph_edge(x->g, sv, rv);
        if (e < 0) fail_msg("no such edge: %s", want[i]);
        expect[e] = 1;
    }
    for (int e = 0; e < x->g->n_edges; e++)
        if (expect[e] != x->truth[e]) {
            print_message("%s: %s -> %s\n", expect[e] ? "missing from the truth" : "not expected in the truth",
                          x->g->nodes[x->g->edges[e].sender].name, x->g->nodes[x->g->edges[e].receiver].name);
            ok = 0;
        }
    free(expect);
    assert_true(ok);
    assert_int_equal(x->n_true, n_want);
}

// reverse: length = selector_width(select(tokens, tokens, true)) is head 0 +
// MLP of layer 0; opp = length - indices - 1 the MLP of layer 1; reverse =
// aggregate(select(indices, opp, ==), tokens) head 0 of layer 2.
//  - the length head: a `true` selector attends uniformly whatever q and k
//    are, so only its value (BOS's bos dimension, from the token embedding)
//    matters; its MLP reads the head's 1/(w+1) and `one`;
//  - opp's MLP reads length, indices and `one`;
//  - the reverse head: q = opp, k = indices, v = tokens. Every query selects
//    exactly one key, so BOS's half score (k's bos, q's one) never wins and
//    the embedding's markers into q and k are not needed.
static void test_truth_reverse_by_hand(void **state) {
    (void)state;
    static const char *const want[] = {
        "hook_embed[:] -> blocks.0.hook_v_input[:, :, 0]",
        "blocks.0.hook_v_input[:, :, 0] -> blocks.0.attn.hook_v[:, :, 0]",
        "blocks.0.attn.hook_result[:, :, 0] -> blocks.0.hook_mlp_in[:]",
        "hook_embed[:] -> blocks.0.hook_mlp_in[:]",
        "blocks.0.hook_mlp_out[:] -> blocks.1.hook_mlp_in[:]",
        "hook_embed[:] -> blocks.1.hook_mlp_in[:]",
        "hook_pos_embed[:] -> blocks.1.hook_mlp_in[:]",
        "blocks.1.hook_mlp_out[:] -> blocks.2.hook_q_input[:, :, 0]",
        "blocks.2.hook_q_input[:, :, 0] -> blocks.2.attn.hook_q[:, :, 0]",
        "hook_pos_embed[:] -> blocks.2.hook_k_input[:, :, 0]",
        "blocks.2.hook_k_input[:, :, 0] -> blocks.2.attn.hook_k[:, :, 0]",
        "hook_embed[:] -> blocks.2.hook_v_input[:, :, 0]",
        "blocks.2.hook_v_input[:, :, 0] -> blocks.2.attn.hook_v[:, :, 0]",
        "blocks.2.attn.hook_result[:, :, 0] -> blocks.2.hook_resid_post[:]",
    };
    compiled x;
    compile_truth("examples/rasp/reverse.rasp", 1, &x);
    assert_int_equal(x.g->n_addition + x.g->n_direct, 68);
    assert_truth(&x, want, (int)(sizeof want / sizeof *want));
    compiled_free(&x);
}

// frac_prevs: bools = numerical(tokens == "l") is the MLP of layer 0 (reads
// tokens and `one`, both from the token embedding); frac = numerical
// aggregate(select(indices, indices, <=), bools, 0) head 0 of layer 1:
// q and k the positions, v the MLP's output. Every query selects at least
// itself, and the default 0 writes nothing, so no embedding markers.
static void test_truth_frac_prevs_by_hand(void **state) {
    (void)state;
    static const char *const want[] = {
        "hook_embed[:] -> blocks.0.hook_mlp_in[:]",
        "hook_pos_embed[:] -> blocks.1.hook_q_input[:, :, 0]",
        "blocks.1.hook_q_input[:, :, 0] -> blocks.1.attn.hook_q[:, :, 0]",
        "hook_pos_embed[:] -> blocks.1.hook_k_input[:, :, 0]",
        "blocks.1.hook_k_input[:, :, 0] -> blocks.1.attn.hook_k[:, :, 0]",
        "blocks.0.hook_mlp_out[:] -> blocks.1.hook_v_input[:, :, 0]",
        "blocks.1.hook_v_input[:, :, 0] -> blocks.1.attn.hook_v[:, :, 0]",
        "blocks.1.attn.hook_result[:, :, 0] -> blocks.1.hook_resid_post[:]",
    };
    compiled x;
    compile_truth("examples/rasp/frac_prevs.rasp", 1, &x);
    // the reference's tracr-proportion graph has the same shape: 38 counted edges
    assert_int_equal(x.g->n_addition + x.g->n_direct, 38);
    assert_truth(&x, want, (int)(sizeof want / sizeof *want));
    compiled_free(&x);
}

// length: the width head's value (bos) and its MLP, into resid_post.
static void test_truth_length_by_hand(void **state) {
    (void)state;
    static const char *const want[] = {
        "hook_embed[:] -> blocks.0.hook_v_input[:, :, 0]",
        "blocks.0.hook_v_input[:, :, 0] -> blocks.0.attn.hook_v[:, :, 0]",
        "blocks.0.attn.hook_result[:, :, 0] -> blocks.0.hook_mlp_in[:]",
        "hook_embed[:] -> blocks.0.hook_mlp_in[:]",
        "blocks.0.hook_mlp_out[:] -> blocks.0.hook_resid_post[:]",
    };
    compiled x;
    compile_truth("examples/rasp/length.rasp", 1, &x);
    assert_truth(&x, want, (int)(sizeof want / sizeof *want));
    compiled_free(&x);
}

// hist = selector_width(select(tokens, tokens, ==)): unlike `true`, the
// selector needs q and k (tokens), and the query's `one` so that BOS ties
// with the selected keys (the 1/(w+1) the MLP decodes): embed -> q, k, v.
static void test_truth_hist_by_hand(void **state) {
    (void)state;
    static const char *const want[] = {
        "hook_embed[:] -> blocks.0.hook_q_input[:, :, 0]",
        "blocks.0.hook_q_input[:, :, 0] -> blocks.0.attn.hook_q[:, :, 0]",
        "hook_embed[:] -> blocks.0.hook_k_input[:, :, 0]",
        "blocks.0.hook_k_input[:, :, 0] -> blocks.0.attn.hook_k[:, :, 0]",
        "hook_embed[:] -> blocks.0.hook_v_input[:, :, 0]",
        "blocks.0.hook_v_input[:, :, 0] -> blocks.0.attn.hook_v[:, :, 0]",
        "blocks.0.attn.hook_result[:, :, 0] -> blocks.0.hook_mlp_in[:]",
        "hook_embed[:] -> blocks.0.hook_mlp_in[:]",
        "blocks.0.hook_mlp_out[:] -> blocks.0.hook_resid_post[:]",
    };
    compiled x;
    compile_truth("examples/rasp/hist.rasp", 1, &x);
    assert_truth(&x, want, (int)(sizeof want / sizeof *want));
    compiled_free(&x);
}

// Without split embeddings hook_embed and hook_pos_embed are one sender
// (blocks.0.hook_resid_pre): reverse's opp MLP then reads it once.
static void test_truth_unsplit_embedding(void **state) {
    (void)state;
    compiled x;
    compile_truth("examples/rasp/reverse.rasp", 0, &x);
    assert_int_equal(x.n_true, 13);
    int mi = mech_acdc_graph_node(x.g, "blocks.1.hook_mlp_in[:]");
    int e = mech_acdc_graph_edge(x.g, mech_acdc_graph_node(x.g, "blocks.0.hook_resid_pre[:]"), mi);
    assert_true(e >= 0 && x.truth[e]);
    compiled_free(&x);
}

// Every example's truth: only counted edges, a path into resid_post, and
// every head in it has its DIRECT edge exactly when some input edge of that
// port is in it.
static void test_truth_every_example_consistent(void **state) {
    (void)state;
    const char *names[] = {"length", "reverse", "hist", "sort_unique", "sort", "sort_freq", "frac_prevs",
                           "pair_balance", "shift_by", "detect_pattern", "shuffle_dyck1", "shuffle_dyck2"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[128];
        snprintf(path, sizeof path, "examples/rasp/%s.rasp", names[i]);
        compiled x;
        compile_truth(path, 1, &x);
        const mech_acdc_graph *g = x.g;
        int into_out = 0;
        for (int e = 0; e < g->n_edges; e++) {
            if (!x.truth[e]) continue;
            assert_int_not_equal(g->edges[e].type, MECH_ACDC_PLACEHOLDER);
            into_out += g->nodes[g->edges[e].receiver].kind == MECH_ACDC_RESID_POST;
        }
        assert_true(into_out >= 1);
        for (int e = 0; e < g->n_edges; e++) {
            if (g->edges[e].type != MECH_ACDC_DIRECT) continue;
            int port = g->edges[e].sender, fed = 0;
            for (int k = g->first_in[port]; k < g->first_in[port + 1]; k++) fed |= x.truth[k];
            if (fed != x.truth[e]) fail_msg("%s: %s: DIRECT %d, inputs %d", names[i], g->nodes[port].name, x.truth[e], fed);
        }
        assert_true(x.n_true > 0 && x.n_true < g->n_addition + g->n_direct);
        compiled_free(&x);
    }
}

static void test_truth_errors(void **state) {
    (void)state;
    mech_err err = {0};
    mech_model *m = NULL;
    mech_config cfg = mech_config_gpt2_small();
    cfg.n_layers = 1, cfg.n_heads = 2, cfg.d_model = 16, cfg.d_head = 8, cfg.d_mlp = 16, cfg.d_vocab = 10, cfg.n_ctx = 8;
    assert_int_equal(mech_model_random(&cfg, 1, &m, &err), MECH_OK);
    mech_acdc_graph *g = NULL;
    assert_int_equal(mech_acdc_graph_new(&cfg, 1, &g, &err), MECH_OK);
    uint8_t *t = calloc((size_t)g->n_edges, 1);
    // not a compiled model
    assert_int_equal(mech_acdc_truth_model(m, g, t, NULL, &err), MECH_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "not a compiled RASP model"));
    // a circuit naming an input it does not define
    const char *keys[] = {"mech.rasp.circuit", "mech.rasp.readout", "mech.rasp.tokens", "mech.rasp.max_seq_len"};
    const char *vals[] = {("{\"nodes\": [{\"label\": \"x\", \"kind\": \"map\", \"layer\": 0, \"mlp\": [0, 0, 1], "
                           "\"inputs\": [\"nowhere\"]}]}"),
                          "{\"node\": \"x\", \"encoding\": \"categorical\", \"values\": [1, 2]}",
                          "{\"bos\": 0, \"vocab\": [1, 3], \"pad\": 4}", "4"};
    assert_int_equal(mech_acdc_truth_edges(m, keys, vals, 4, g, t, NULL, &err), MECH_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "unknown input 'nowhere'"));
    // a head the model does not have
    vals[0] = "{\"nodes\": [{\"label\": \"x\", \"kind\": \"aggregate\", \"layer\": 0, \"head\": [0, 7], "
              "\"inputs\": []}]}";
    assert_int_equal(mech_acdc_truth_edges(m, keys, vals, 4, g, t, NULL, &err), MECH_ERR_FORMAT);
    // malformed JSON
    vals[0] = "{\"nodes\": [";
    assert_int_equal(mech_acdc_truth_edges(m, keys, vals, 4, g, t, NULL, &err), MECH_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "mech.rasp.circuit"));
    // a readout wider than the vocabulary
    vals[0] = "{\"nodes\": []}";
    vals[1] = "{\"node\": \"x\", \"values\": [1,2,3,4,5,6,7,8,9,10,11]}";
    assert_int_equal(mech_acdc_truth_edges(m, keys, vals, 4, g, t, NULL, &err), MECH_ERR_FORMAT);
    free(t);
    mech_acdc_graph_free(g);
    mech_model_free(m);
}

static void test_truth_n_out(void **state) {
    (void)state;
    assert_int_equal(mech_acdc_truth_n_out("{\"node\": \"r\", \"encoding\": \"categorical\", \"values\": [\"a\", \"b\", \"c\"]}"), 3);
    assert_int_equal(mech_acdc_truth_n_out("{\"node\": \"f\", \"encoding\": \"numerical\", \"values\": [0, 0.5, 1]}"), 1);
    assert_int_equal(mech_acdc_truth_n_out("{oops"), 0);
    assert_int_equal(mech_acdc_truth_n_out(NULL), 0);
}

// ---------------------------------------------------------------------------
// Scores

static void test_score_tpr_fpr(void **state) {
    (void)state;
    compiled x;
    compile_truth("examples/rasp/reverse.rasp", 1, &x);
    mech_acdc_graph *g = x.g;
    for (int e = 0; e < g->n_edges; e++) g->edges[e].present = g->edges[e].type == MECH_ACDC_PLACEHOLDER || x.truth[e];
    mech_acdc_score s = mech_acdc_truth_score(g, x.truth);
    assert_int_equal(s.n_counted, 68);
    assert_int_equal(s.n_truth, 14);
    assert_int_equal(s.tp, 14);
    assert_int_equal(s.fp, 0);
    assert_true(s.tpr == 1.0 && s.fpr == 0.0);
    // drop one truth edge, add two others (placeholders never count)
    int dropped = 0, added = 0;
    for (int e = 0; e < g->n_edges; e++) {
        if (x.truth[e] && !dropped) g->edges[e].present = 0, dropped = 1;
        else if (!x.truth[e] && g->edges[e].type != MECH_ACDC_PLACEHOLDER && added < 2) g->edges[e].present = 1, added++;
    }
    s = mech_acdc_truth_score(g, x.truth);
    assert_int_equal(s.tp, 13);
    assert_int_equal(s.fp, 2);
    assert_int_equal(s.fn, 1);
    assert_int_equal(s.n_found, 15);
    assert_true(fabs(s.tpr - 13.0 / 14) < 1e-12);
    assert_true(fabs(s.fpr - 2.0 / 54) < 1e-12);
    // nothing present
    for (int e = 0; e < g->n_edges; e++) g->edges[e].present = 0;
    s = mech_acdc_truth_score(g, x.truth);
    assert_true(s.tpr == 0 && s.fpr == 0 && s.n_found == 0);
    compiled_free(&x);
}

static double auc(const double *xy, int n) {
    mech_acdc_roc_point p[16];
    for (int i = 0; i < n; i++) p[i] = (mech_acdc_roc_point){xy[2 * i], xy[2 * i + 1]};
    return mech_acdc_auc(p, n);
}

// Hand-computed areas; the first four are the reference's own asserts in
// acdc_graphics.py (points with (0,0) and (1,1) among them).
static void test_auc_pessimistic(void **state) {
    (void)state;
    const double a[] = {0.5, 0.5};
    assert_true(fabs(auc(a, 1) - 0.25) < 1e-12);                       // 0.5 * 0.5
    const double b[] = {0.25, 0.25};
    assert_true(fabs(auc(b, 1) - 0.25 * 0.75) < 1e-12);
    const double c[] = {0.25, 0.25, 0.5, 0.5};
    assert_true(fabs(auc(c, 2) - 5.0 / 16) < 1e-12);                   // .75*.25 + .5*.25
    const double d[] = {0.25, 0.25, 0.75, 0.5};
    assert_true(fabs(auc(d, 2) - 4.0 / 16) < 1e-12);                   // .75*.25 + .25*.25
    const double perfect[] = {0, 1, 0.3, 1, 0, 0.5};
    assert_true(auc(perfect, 3) == 1.0);                               // fpr 0 reaches tpr 1
    // (0.2, 0.5) is beaten by (0.1, 0.8) on both axes: dropped
    const double dom[] = {0.2, 0.5, 0.1, 0.8};
    assert_true(fabs(auc(dom, 2) - 0.9 * 0.8) < 1e-12);
    // unsorted input, a staircase: (0.1,0.4) (0.3,0.7) (0.6,0.9)
    const double st[] = {0.6, 0.9, 0.1, 0.4, 0.3, 0.7};
    assert_true(fabs(auc(st, 3) - (0.9 * 0.4 + 0.7 * 0.3 + 0.4 * 0.2)) < 1e-12);
    const double none[] = {0, 0};
    assert_true(auc(none, 1) == 0.0);
    assert_true(mech_acdc_auc(NULL, 0) == 0.0);
}

static void test_roc_curve_points(void **state) {
    (void)state;
    mech_acdc_roc_point in[3] = {{0.2, 0.5}, {0.1, 0.8}, {0.1, 0.8}}, out[5];
    int k = mech_acdc_roc(in, 3, out);
    // (0,0), the duplicate (0.1,0.8) twice, (1,1); (0.2,0.5) dominated
    assert_int_equal(k, 4);
    assert_true(out[0].fpr == 0 && out[0].tpr == 0);
    assert_true(out[1].fpr == 0.1 && out[1].tpr == 0.8 && out[2].fpr == 0.1);
    assert_true(out[3].fpr == 1 && out[3].tpr == 1);
}

// ---------------------------------------------------------------------------
// Export

static void test_export_dot_and_json(void **state) {
    (void)state;
    compiled x;
    compile_truth("examples/rasp/reverse.rasp", 1, &x);
    mech_acdc_graph *g = x.g;
    int extra = -1;
    for (int e = 0; e < g->n_edges; e++) {
        g->edges[e].present = g->edges[e].type == MECH_ACDC_PLACEHOLDER || x.truth[e];
        g->edges[e].effect = x.truth[e] ? 0.5 : NAN;
    }
    // one false positive and one missed edge
    int fp = mech_acdc_graph_edge(g, mech_acdc_graph_node(g, "hook_pos_embed[:]"),
                                  mech_acdc_graph_node(g, "blocks.2.hook_resid_post[:]"));
    int miss = mech_acdc_graph_edge(g, mech_acdc_graph_node(g, "hook_pos_embed[:]"),
                                    mech_acdc_graph_node(g, "blocks.2.hook_k_input[:, :, 0]"));
    assert_true(fp >= 0 && miss >= 0 && x.truth[miss] && !x.truth[fp]);
    g->edges[fp].present = 1, g->edges[fp].effect = 0.125;
    g->edges[miss].present = 0;
    extra = fp;
    mech_buf b = {0};
    mech_acdc_export_dot(g, x.truth, &b);
    assert_false(b.oom);
    assert_non_null(strstr(b.data, "digraph acdc {"));
    assert_non_null(strstr(b.data, "subgraph layer0 { rank=same; \"a0.0\"; \"m0\"; }"));
    assert_non_null(strstr(b.data, "subgraph layer2 { rank=same; \"a2.0\"; }"));
    assert_non_null(strstr(b.data, "\"m1\" -> \"a2.0\" [label=\"q 0.5\"];"));
    assert_non_null(strstr(b.data, "\"pos_embed\" -> \"resid_post\" [label=\"0.125\", color=red"));
    assert_non_null(strstr(b.data, "\"pos_embed\" -> \"a2.0\" [label=\"k 0.5\", style=dashed"));
    mech_buf_free(&b);

    mech_acdc_export_json(g, x.truth, &b);
    mech_json *j = NULL;
    mech_err err = {0};
    if (mech_json_parse(b.data, b.len, &j, &err)) fail_msg("%s", err.msg);
    const mech_json *edges = mech_json_get(j, "edges");
    assert_non_null(edges);
    assert_int_equal((int)edges->n, 14);                      // 14 truth - 1 missed + 1 extra
    assert_int_equal((int)mech_json_get(j, "n_edges")->inum, 14);
    assert_int_equal((int)mech_json_get(j, "n_counted")->inum, 68);
    int found_extra = 0, directs = 0;
    for (size_t i = 0; i < edges->n; i++) {
        const mech_json *e = &edges->items[i];
        const char *s = mech_json_get(e, "sender")->str, *r = mech_json_get(e, "receiver")->str;
        directs += !strcmp(mech_json_get(e, "type")->str, "direct");
        if (!strcmp(s, "hook_pos_embed[:]") && !strcmp(r, "blocks.2.hook_resid_post[:]")) {
            found_extra = 1;
            assert_false(mech_json_get(e, "truth")->boolean);
            assert_true(mech_json_get(e, "effect")->num == 0.125);
        }
    }
    assert_true(found_extra && extra >= 0);
    assert_int_equal(directs, 4);
    mech_json_free(j);
    mech_buf_free(&b);
    // without a truth there is no "truth" field and no colours
    mech_acdc_export_json(g, NULL, &b);
    assert_null(strstr(b.data, "\"truth\""));
    mech_buf_free(&b);
    mech_acdc_export_dot(g, NULL, &b);
    assert_null(strstr(b.data, "color=red"));
    mech_buf_free(&b);
    compiled_free(&x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truth_reverse_by_hand),
        cmocka_unit_test(test_truth_frac_prevs_by_hand),
        cmocka_unit_test(test_truth_length_by_hand),
        cmocka_unit_test(test_truth_hist_by_hand),
        cmocka_unit_test(test_truth_unsplit_embedding),
        cmocka_unit_test(test_truth_every_example_consistent),
        cmocka_unit_test(test_truth_errors),
        cmocka_unit_test(test_truth_n_out),
        cmocka_unit_test(test_score_tpr_fpr),
        cmocka_unit_test(test_auc_pessimistic),
        cmocka_unit_test(test_roc_curve_points),
        cmocka_unit_test(test_export_dot_and_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
