/*
** tests/test_interp_lens.c: the logit lens at the last layer is the model's
** own output distribution; direct logit attribution sums to the logit
** (difference); the decoder lens reads a compiled RASP model's variables
** back layer by layer.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "interp/interp.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/gpt2-tiny/"

static mech_model *load_tiny(void) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(FIX, &m, &err)) fail_msg("load: %s", err.msg);
    return m;
}

static mech_run *run_cached(const mech_model *m, int B, int T, const int32_t *ids) {
    mech_err err = {0};
    mech_run *run = NULL;
    if (mech_run_new(m, B, T, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    return run;
}

// ---------------------------------------------------------------------------
// Logit lens

static void test_lens_last_layer_is_model_output(void **state) {
    mech_model *m = load_tiny();
    enum { B = 2, T = 7, K = 5 };
    int32_t ids[B * T], targets[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 37 + 11) % m->cfg.d_vocab, targets[i] = (i * 53) % m->cfg.d_vocab;
    targets[3] = -1;
    mech_run *run = run_cached(m, B, T, ids);
    mech_err err = {0};
    mech_lens_row *rows = NULL;
    size_t n = 0;
    if (mech_lens_logit(m, run, K, targets, &rows, &n, &err)) fail_msg("%s", err.msg);
    int L = m->cfg.n_layers, V = m->cfg.d_vocab;
    assert_int_equal(n, (size_t)(L + 1) * B * T);
    const float *logits = mech_run_logits(run);
    double *p = malloc((size_t)V * sizeof *p);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            // The model's own softmax in double.
            const float *z = logits + ((size_t)b * T + t) * V;
            double mx = -INFINITY, s = 0, ent = 0;
            int arg = 0;
            for (int i = 0; i < V; i++)
                if (z[i] > mx) mx = z[i], arg = i;
            for (int i = 0; i < V; i++) s += p[i] = exp(z[i] - mx);
            for (int i = 0; i < V; i++) p[i] /= s, ent -= p[i] > 0 ? p[i] * log(p[i]) : 0;
            const mech_lens_row *r = &rows[((size_t)L * B + b) * T + t];
            assert_int_equal(r->layer, L);
            assert_int_equal(r->batch, b);
            assert_int_equal(r->pos, t);
            assert_int_equal(r->k, K);
            assert_true(r->kl == 0.0);
            assert_int_equal(r->top_ids[0], arg);
            float got[K + 2], want[K + 2];
            for (int j = 0; j < K; j++) got[j] = (float)r->top_probs[j], want[j] = (float)p[r->top_ids[j]];
            got[K] = (float)r->entropy, want[K] = (float)ent;
            int32_t tg = targets[b * T + t];
            got[K + 1] = (float)r->target_prob, want[K + 1] = tg >= 0 ? (float)p[tg] : 0.f;
            mech_assert_close(got, want, K + 2, 1e-5, 1e-4, "last-layer lens vs model softmax");
            if (tg >= 0) {
                int64_t rank = 0;
                for (int i = 0; i < V; i++) rank += z[i] > z[tg];
                assert_true(llabs(r->target_rank - rank) <= 1); // float ties between two matmuls
            } else {
                assert_int_equal(r->target_rank, -1);
            }
        }
    // Every layer: a distribution, top-k sorted, KL >= 0, entropy within [0, log V].
    for (size_t i = 0; i < n; i++) {
        assert_true(rows[i].kl >= 0);
        assert_true(rows[i].entropy >= -1e-12 && rows[i].entropy <= log(V) + 1e-9);
        for (int j = 1; j < K; j++) assert_true(rows[i].top_probs[j] <= rows[i].top_probs[j - 1]);
        assert_true(rows[i].top_probs[0] <= 1 + 1e-9);
        if (rows[i].layer < L) assert_true(rows[i].kl > 0); // a random model's early layers differ
    }
    free(p);
    mech_free(rows);
    // Errors: k out of range, a missing cache.
    assert_int_equal(mech_lens_logit(m, run, MECH_LENS_MAX_K + 1, NULL, &rows, &n, &err), MECH_ERR_ARG);
    mech_run *bare = NULL;
    if (mech_run_new(m, 1, 3, &bare, &err) || mech_run_forward(bare, ids, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_lens_logit(m, bare, 3, NULL, &rows, &n, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "blocks.0.hook_resid_pre"));
    assert_null(rows);
    mech_run_free(bare);
    mech_run_free(run);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Direct logit attribution

static void check_dla_sums(const mech_model *m, const mech_run *run, int pos, const int32_t *ans,
                           const int32_t *wrong) {
    mech_err err = {0};
    mech_dla *d = NULL;
    if (mech_lens_dla(m, run, pos, ans, wrong, &d, &err)) fail_msg("%s", err.msg);
    int L = m->cfg.n_layers, B = d->B;
    assert_int_equal(d->n_comp, 1 + L * (m->cfg.n_heads + 1 + !m->cfg.attn_only));
    assert_string_equal(d->labels[0], "embed");
    for (int b = 0; b < B; b++) {
        double s = d->bias[b];
        for (int c = 0; c < d->n_comp; c++) s += d->attr[(size_t)c * B + b];
        float got[3] = {(float)s, (float)(d->accum[(size_t)L * B + b] + d->bias[b]), (float)d->accum[b]};
        float want[3] = {(float)d->logit[b], (float)d->logit[b], (float)d->attr[b]};
        mech_assert_close(got, want, 3, 1e-4, 0, "DLA components + bias = logit (difference)");
    }
    mech_dla_free(d);
}

static void test_lens_dla_sums_to_logit_difference(void **state) {
    mech_model *m = load_tiny();
    enum { B = 3, T = 6 };
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 91 + 7) % m->cfg.d_vocab;
    mech_run *run = run_cached(m, B, T, ids);
    int32_t ans[B] = {5, 17, 999}, wrong[B] = {6, -1, 0};
    check_dla_sums(m, run, -1, ans, wrong);
    check_dla_sums(m, run, 2, ans, NULL);
    mech_err err = {0};
    mech_dla *d = NULL;
    if (mech_lens_dla(m, run, -1, ans, wrong, &d, &err)) fail_msg("%s", err.msg);
    assert_string_equal(d->labels[1], "L0H0");
    char want[24];
    snprintf(want, sizeof want, "L0H%d", m->cfg.n_heads - 1);
    assert_string_equal(d->labels[m->cfg.n_heads], want);
    assert_string_equal(d->labels[m->cfg.n_heads + 1], "L0.attn_bias");
    assert_string_equal(d->labels[m->cfg.n_heads + 2], "L0.mlp");
    // A logit difference is the difference of the two plain logits' attributions.
    mech_dla *da = NULL, *dw = NULL;
    int32_t wr[B] = {6, 17, 0};
    if (mech_lens_dla(m, run, -1, ans, NULL, &da, &err) || mech_lens_dla(m, run, -1, wr, NULL, &dw, &err))
        fail_msg("%s", err.msg);
    for (int c = 0; c < d->n_comp; c++) {
        float got = (float)d->attr[(size_t)c * B], w = (float)(da->attr[(size_t)c * B] - dw->attr[(size_t)c * B]);
        mech_assert_close(&got, &w, 1, 1e-5, 1e-5, "difference of attributions");
    }
    mech_dla_free(d), mech_dla_free(da), mech_dla_free(dw);
    int32_t bad[B] = {5, 1000, 0};
    assert_int_equal(mech_lens_dla(m, run, -1, bad, NULL, &d, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_lens_dla(m, run, T, ans, NULL, &d, &err), MECH_ERR_RANGE);
    assert_null(d);
    mech_run_free(run);
    mech_model_free(m);
}

// Without LayerNorm and without MLPs: no centring, no scale.
static void test_lens_dla_attn_only_no_layernorm(void **state) {
    mech_config cfg = {.n_layers = 3, .n_heads = 2, .d_model = 16, .d_head = 8, .d_mlp = 0, .n_ctx = 16,
                       .d_vocab = 40, .act = MECH_ACT_RELU, .norm = MECH_NORM_NONE, .attn_only = 1,
                       .causal = 1, .ln_eps = 1e-5f, .tied_unembed = 1};
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&cfg, 3, &m, &err)) fail_msg("%s", err.msg);
    int32_t ids[2 * 5] = {1, 2, 3, 4, 5, 9, 8, 7, 6, 5};
    mech_run *run = run_cached(m, 2, 5, ids);
    int32_t ans[2] = {3, 30}, wrong[2] = {4, 31};
    check_dla_sums(m, run, -1, ans, wrong);
    mech_lens_row *rows = NULL;
    size_t n = 0;
    if (mech_lens_logit(m, run, 3, NULL, &rows, &n, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n, 4 * 2 * 5);
    mech_free(rows);
    mech_run_free(run);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Decoder lens

static const char *meta_of(const mech_rasp_compiled *c, const char *key) {
    for (size_t i = 0; i < c->n_meta; i++)
        if (!strcmp(c->meta_keys[i], key)) return c->meta_values[i];
    return NULL;
}

static int var_index(const mech_lens_vars *v, const char *name) {
    for (int i = 0; i < v->n_vars; i++)
        if (!strcmp(v->vars[i].name, name)) return i;
    fail_msg("no variable %s", name);
    return -1;
}

static void test_lens_decode_reverse(void **state) {
    const char *src = "vocab {a, b, c, d}; max_seq_len 5;\n"
                      "length = selector_width(select(tokens, tokens, true));\n"
                      "opp = length - indices - 1;\n"
                      "reverse = aggregate(select(indices, opp, ==), tokens);\n"
                      "output reverse;\n";
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    if (mech_rasp_parse("reverse.rasp", src, strlen(src), &p, &err) || mech_rasp_compile(p, &c, &err))
        fail_msg("%s", err.msg);
    mech_model *m = c->model;
    int L = m->cfg.n_layers;
    mech_lens_vars *vars = NULL;
    if (mech_lens_vars_parse(meta_of(c, "mech.rasp.residual"), &vars, &err)) fail_msg("%s", err.msg);
    assert_int_equal(vars->n_dims, m->cfg.d_model);
    enum { T = 5 };
    int32_t ids[T] = {0, 1, 2, 3, 4}; // BOS a b c d
    mech_run *run = run_cached(m, 1, T, ids);
    mech_lens_decoded *rows = NULL;
    size_t n = 0;
    if (mech_lens_decode(m, run, vars, 0, &rows, &n, &err)) fail_msg("%s", err.msg);
    int NV = vars->n_vars;
    assert_int_equal(n, (size_t)(L + 1) * NV * T);
#define ROW(l, v, t) (&rows[((size_t)(l) * NV + (v)) * T + (t)])
    int vt = var_index(vars, "tokens"), vl = var_index(vars, "length"), vr = var_index(vars, "reverse");
    int vo = var_index(vars, "opp");
    assert_false(vars->vars[vr].numerical);
    // tokens from the embedding on; length after layer 0; reverse only at the end.
    assert_true(ROW(0, vt, 1)->present);
    assert_string_equal(ROW(0, vt, 1)->value, "\"a\"");
    assert_false(ROW(0, vl, 1)->present);
    assert_true(ROW(1, vl, 1)->present);
    for (int l = 0; l < L; l++) assert_false(ROW(l, vr, 2)->present);
    assert_true(ROW(L, vr, 2)->present);
    assert_true(ROW(L, vo, 2)->present);
    const char *want[T] = {NULL, "\"d\"", "\"c\"", "\"b\"", "\"a\""};
    for (int t = 1; t < T; t++) {
        for (int l = 1; l <= L; l++) {
            assert_true(ROW(l, vl, t)->has_value);
            assert_string_equal(ROW(l, vl, t)->value, "4");
        }
        assert_true(ROW(L, vr, t)->has_value);
        assert_string_equal(ROW(L, vr, t)->value, want[t]);
        char opp[8];
        snprintf(opp, sizeof opp, "%d", 4 - (t - 1) - 1);
        assert_string_equal(ROW(L, vo, t)->value, opp);
    }
    // Every named variable at the last layer agrees with the interpreter.
    mech_rasp_value *in = NULL;
    size_t nin = 0;
    mech_rasp_trace *tr = NULL;
    if (mech_rasp_input_parse(p, "a b c d", &in, &nin, &err) || mech_rasp_eval_trace(p, in, nin, &tr, &err))
        fail_msg("%s", err.msg);
    int checked = 0;
    for (int id = 0; id < mech_rasp_program_n_nodes(p); id++) {
        const mech_rasp_node *nd = mech_rasp_program_node(p, id);
        if (mech_rasp_node_is_selector(nd) || !nd->name) continue;
        int v = -1;
        for (int i = 0; i < NV; i++)
            if (!strcmp(vars->vars[i].name, nd->label)) v = i;
        if (v < 0) continue;
        for (size_t j = 0; j < nin; j++) {
            const mech_lens_decoded *r = ROW(L, v, (int)j + 1);
            mech_buf b = {0};
            mech_rasp_value_json(&b, &tr->vals[(size_t)id * nin + j]);
            if (vars->vars[v].numerical) {
                double want_num = atof(b.data);
                float g = (float)r->number, w = (float)want_num;
                mech_assert_close(&g, &w, 1, 1e-3, 0, nd->label);
            } else {
                if (!r->value || strcmp(r->value, b.data))
                    fail_msg("%s at %zu: decoded %s, interpreter %s", nd->label, j, r->value ? r->value : "none", b.data);
            }
            mech_buf_free(&b);
        }
        checked++;
    }
    assert_true(checked >= 3);
#undef ROW
    mech_rasp_trace_free(tr);
    mech_free(in);
    mech_free(rows);
    // Labels that do not fit the model, and malformed labels.
    mech_lens_vars *bad = NULL;
    assert_int_equal(mech_lens_vars_parse("[\"a:1\", 3]", &bad, &err), MECH_ERR_FORMAT);
    assert_int_equal(mech_lens_vars_parse("{}", &bad, &err), MECH_ERR_FORMAT);
    if (mech_lens_vars_parse("[\"bos\", \"x:1\", \"x:2\", \"y\"]", &bad, &err)) fail_msg("%s", err.msg);
    assert_int_equal(bad->n_vars, 3);
    assert_int_equal(bad->vars[1].n_dims, 2);
    assert_true(bad->vars[2].numerical);
    assert_int_equal(mech_lens_decode(m, run, bad, 0, &rows, &n, &err), MECH_ERR_SHAPE);
    mech_lens_vars_free(bad);
    mech_lens_vars_free(vars);
    mech_run_free(run);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
}

// A numerical variable whose value is 0 is computed all the same: it is
// present from the layer the compiler put it in (not from the first layer
// where it is non-zero), and every value reads back as the interpreter's,
// 0 included (no float32 residue such as 7.6e-44).
static void test_lens_decode_zero_is_a_value(void **state) {
    const char *src = "vocab {h, e, l, o}; max_seq_len 5;\n"
                      "frac_l = numerical(aggregate(select(indices, indices, <=), numerical(tokens == \"l\"), 0));\n"
                      "output frac_l;\n";
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    if (mech_rasp_parse("frac.rasp", src, strlen(src), &p, &err) || mech_rasp_compile(p, &c, &err))
        fail_msg("%s", err.msg);
    mech_model *m = c->model;
    int L = m->cfg.n_layers;
    mech_lens_vars *vars = NULL;
    if (mech_lens_vars_parse(meta_of(c, "mech.rasp.residual"), &vars, &err) ||
        mech_lens_vars_layers(vars, meta_of(c, "mech.rasp.circuit"), &err))
        fail_msg("%s", err.msg);
    int NV = vars->n_vars, vf = var_index(vars, "frac_l");
    assert_true(vars->vars[vf].numerical);
    assert_int_equal(vars->vars[var_index(vars, "tokens")].from_layer, 0);
    assert_int_equal(vars->vars[vf].from_layer, L); // the aggregate is the last layer's head
    const char *inputs[] = {"h e", "h l l o", "e", "o o o o l"};
    for (size_t k = 0; k < sizeof inputs / sizeof *inputs; k++) {
        mech_rasp_value *in = NULL;
        size_t nin = 0;
        mech_rasp_trace *tr = NULL;
        if (mech_rasp_input_parse(p, inputs[k], &in, &nin, &err) || mech_rasp_eval_trace(p, in, nin, &tr, &err))
            fail_msg("%s", err.msg);
        int T = (int)nin + 1;
        int32_t ids[8] = {0};
        for (size_t j = 0; j < nin; j++) ids[j + 1] = mech_rasp_token_id(p, &in[j]);
        mech_run *run = run_cached(m, 1, T, ids);
        mech_lens_decoded *rows = NULL;
        size_t n = 0;
        if (mech_lens_decode(m, run, vars, 0, &rows, &n, &err)) fail_msg("%s", err.msg);
        for (int id = 0; id < mech_rasp_program_n_nodes(p); id++) {
            const mech_rasp_node *nd = mech_rasp_program_node(p, id);
            if (mech_rasp_node_is_selector(nd)) continue;
            int v = -1;
            for (int i = 0; i < NV; i++)
                if (!strcmp(vars->vars[i].name, nd->label)) v = i;
            if (v < 0 || !vars->vars[v].numerical) continue;
            for (int l = 0; l <= L; l++)
                for (size_t j = 0; j < nin; j++) {
                    const mech_lens_decoded *r = &rows[((size_t)l * NV + v) * T + (int)j + 1];
                    assert_int_equal(r->present, l >= vars->vars[v].from_layer);
                    if (!r->present) continue;
                    const mech_rasp_value *want = &tr->vals[(size_t)id * nin + j];
                    double w = want->type == MECH_RASP_FLOAT ? want->f : want->type == MECH_RASP_BOOL ? want->b
                                                                                                      : (double)want->i;
                    if (w == 0) {
                        if (r->number != 0) fail_msg("%s on '%s' at %zu, layer %d: %g, want exactly 0", nd->label,
                                                     inputs[k], j, l, r->number);
                    } else if (fabs(r->number - w) > 1e-5) {
                        fail_msg("%s on '%s' at %zu, layer %d: %g, want %g", nd->label, inputs[k], j, l, r->number, w);
                    }
                }
        }
        mech_free(rows);
        mech_run_free(run);
        mech_rasp_trace_free(tr);
        mech_free(in);
    }
    assert_int_equal(mech_lens_vars_layers(vars, "{\"nodes\": [{\"dims\": [0]}]}", &err), MECH_ERR_FORMAT);
    mech_lens_vars_free(vars);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lens_last_layer_is_model_output),
        cmocka_unit_test(test_lens_dla_sums_to_logit_difference),
        cmocka_unit_test(test_lens_dla_attn_only_no_layernorm),
        cmocka_unit_test(test_lens_decode_reverse),
        cmocka_unit_test(test_lens_decode_zero_is_a_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
