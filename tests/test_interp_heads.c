/*
** tests/test_interp_heads.c: head scores (TransformerLens's head_detector)
** on a compiled RASP model whose head attends to the previous position, on
** a random model (small scores), and the repeated-random-tokens helper.
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
#include <string.h>

static mech_run *run_patterns(const mech_model *m, int B, int T, const int32_t *ids) {
    mech_err err = {0};
    mech_run *run = NULL;
    if (mech_run_new(m, B, T, &run, &err) || mech_run_cache(run, "blocks.*.attn.hook_pattern", &err) ||
        mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    return run;
}

// query at input index i selects key i-1: with BOS at model position 0 the
// head attends to the previous model position everywhere but at BOS itself.
static void test_heads_prev_token_compiled(void **state) {
    const char *src = "vocab {a, b, c}; max_seq_len 6;\n"
                      "prev = aggregate(select(indices, indices, (k, q) -> k == q - 1), tokens);\n"
                      "output prev;\n";
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    if (mech_rasp_parse("prev.rasp", src, strlen(src), &p, &err) || mech_rasp_compile(p, &c, &err))
        fail_msg("%s", err.msg);
    mech_model *m = c->model;
    enum { B = 2, T = 7 };
    int32_t ids[B * T] = {0, 1, 2, 3, 1, 2, 3, 0, 3, 3, 2, 1, 1, 2};
    mech_run *run = run_patterns(m, B, T, ids);
    int NHL = m->cfg.n_layers * m->cfg.n_heads;
    double s[64], s_cur[64], dup[64], abs_s[64];
    assert_true(NHL <= 64);
    if (mech_heads_score(m, run, ids, MECH_HEAD_PREV_TOKEN, MECH_HEAD_MUL, 0, 0, s, &err) ||
        mech_heads_score(m, run, ids, MECH_HEAD_PREV_TOKEN, MECH_HEAD_MUL, 0, 1, s_cur, &err) ||
        mech_heads_score(m, run, ids, MECH_HEAD_DUPLICATE, MECH_HEAD_MUL, 0, 0, dup, &err) ||
        mech_heads_score(m, run, ids, MECH_HEAD_PREV_TOKEN, MECH_HEAD_ABS, 0, 0, abs_s, &err))
        fail_msg("%s", err.msg);
    int best = 0;
    for (int i = 0; i < NHL; i++) {
        assert_true(s[i] >= 0 && s[i] <= 1 + 1e-9);
        assert_true(abs_s[i] > -1 && abs_s[i] <= 1);
        if (s[i] > s[best]) best = i;
    }
    // Row 0 (BOS) attends to itself, which no reference pattern covers: (T-1)/T.
    assert_true(fabs(s[best] - (double)(T - 1) / T) < 1e-3);
    assert_true(s_cur[best] > 0.999);
    assert_true(abs_s[best] > 0.99 - 1.0 / T); // only row 0 differs: |A-D| sums to 1 there
    assert_true(dup[best] < 0.5);
    mech_run_free(run);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
}

// Reference patterns checked on hand-written attention: a model run whose
// patterns are overwritten by a hook with exact induction stripes.
typedef struct { int n; } stripe_ctx;
static int write_stripes(mech_tensor *t, int layer, void *user) {
    int n = ((stripe_ctx *)user)->n;
    int64_t B = t->shape[0], NH = t->shape[1], T = t->shape[2];
    memset(t->data, 0, mech_tensor_numel(t) * sizeof(float));
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < NH; h++)
            for (int64_t i = 0; i < T; i++) {
                float *row = t->data + ((b * NH + h) * T + i) * T;
                // head 0: induction (i attends to i - n + 1 in the second half), else BOS;
                // other heads: previous token (i-1), BOS at i = 0.
                int64_t j = h == 0 ? (i >= n ? i - n + 1 : 0) : (i > 0 ? i - 1 : 0);
                row[j] = 1;
            }
    return 0;
}

static void test_heads_induction_on_written_patterns(void **state) {
    mech_config cfg = {.n_layers = 1, .n_heads = 2, .d_model = 16, .d_head = 8, .d_mlp = 0, .n_ctx = 32,
                       .d_vocab = 50, .act = MECH_ACT_RELU, .norm = MECH_NORM_LAYERNORM, .attn_only = 1,
                       .causal = 1, .ln_eps = 1e-5f, .tied_unembed = 1};
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&cfg, 1, &m, &err)) fail_msg("%s", err.msg);
    enum { B = 3, n = 8, T = 2 * n };
    int32_t ids[B * T];
    // Distinct tokens within each half so that the only duplicates are the repeats.
    if (mech_heads_repeated_tokens(5, B, n, 1, 50, -1, ids, &err)) fail_msg("%s", err.msg);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < n; i++) ids[b * T + i] = ids[b * T + n + i] = 1 + (b * 7 + i * 3) % 49;
    stripe_ctx ctx = {n};
    mech_run *run = NULL;
    if (mech_run_new(m, B, T, &run, &err) || mech_run_hook(run, "blocks.0.attn.hook_pattern", write_stripes, &ctx, &err) ||
        mech_run_cache(run, "blocks.0.attn.hook_pattern", &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    double ind[2], prev[2], dup[2];
    if (mech_heads_score(m, run, ids, MECH_HEAD_INDUCTION, MECH_HEAD_MUL, 0, 0, ind, &err) ||
        mech_heads_score(m, run, ids, MECH_HEAD_PREV_TOKEN, MECH_HEAD_MUL, 0, 0, prev, &err) ||
        mech_heads_score(m, run, ids, MECH_HEAD_DUPLICATE, MECH_HEAD_MUL, 0, 0, dup, &err))
        fail_msg("%s", err.msg);
    // Head 0: rows n..T-1 are on the induction stripe, rows 0..n-1 on BOS.
    float got[6] = {(float)ind[0], (float)prev[1], (float)dup[0], (float)dup[1], (float)ind[1], (float)prev[0]};
    float want[6] = {(float)n / T, (float)(T - 1) / T, 0, 0, 0, 1.0f / T};
    mech_assert_close(got, want, 6, 1e-6, 0, "scores of written patterns");
    // exclude_bos removes head 0's first-half mass: a perfect induction score.
    if (mech_heads_score(m, run, ids, MECH_HEAD_INDUCTION, MECH_HEAD_MUL, 1, 0, ind, &err)) fail_msg("%s", err.msg);
    assert_true(fabs(ind[0] - 1) < 1e-9);
    mech_run_free(run);
    mech_model_free(m);
}

static void test_heads_random_model_small(void **state) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load("tests/fixtures/gpt2-tiny/", &m, &err)) fail_msg("%s", err.msg);
    enum { B = 4, n = 10, T = 2 * n };
    int32_t ids[B * T];
    if (mech_heads_repeated_tokens(11, B, n, 0, m->cfg.d_vocab, -1, ids, &err)) fail_msg("%s", err.msg);
    mech_run *run = run_patterns(m, B, T, ids);
    int NHL = m->cfg.n_layers * m->cfg.n_heads;
    double s[3][256];
    assert_true(NHL <= 256);
    for (int k = 0; k < 3; k++) {
        if (mech_heads_score(m, run, ids, (mech_head_kind)k, MECH_HEAD_MUL, 0, 0, s[k], &err)) fail_msg("%s", err.msg);
        for (int i = 0; i < NHL; i++) {
            assert_true(s[k][i] >= 0 && s[k][i] <= 1);
            if (s[k][i] > 0.35) fail_msg("%s score %g of head %d on a random model", mech_head_kind_name((mech_head_kind)k), s[k][i], i);
        }
    }
    mech_run_free(run);
    // Errors: T < 2, missing cache, bad kind.
    mech_run *r1 = run_patterns(m, 1, 1, ids);
    assert_int_equal(mech_heads_score(m, r1, ids, MECH_HEAD_INDUCTION, MECH_HEAD_MUL, 0, 0, s[0], &err), MECH_ERR_ARG);
    mech_run_free(r1);
    mech_run *r2 = NULL;
    if (mech_run_new(m, 1, 4, &r2, &err) || mech_run_forward(r2, ids, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_heads_score(m, r2, ids, MECH_HEAD_INDUCTION, MECH_HEAD_MUL, 0, 0, s[0], &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "hook_pattern"));
    assert_int_equal(mech_heads_score(m, r2, ids, MECH_HEAD_KIND_COUNT_, MECH_HEAD_MUL, 0, 0, s[0], &err), MECH_ERR_ARG);
    mech_run_free(r2);
    mech_model_free(m);
}

static void test_heads_repeated_tokens(void **state) {
    mech_err err = {0};
    int32_t a[2 * 9], b[2 * 9];
    if (mech_heads_repeated_tokens(3, 2, 4, 10, 20, 7, a, &err) || mech_heads_repeated_tokens(3, 2, 4, 10, 20, 7, b, &err))
        fail_msg("%s", err.msg);
    assert_memory_equal(a, b, sizeof a);
    for (int r = 0; r < 2; r++) {
        assert_int_equal(a[r * 9], 7);
        for (int i = 0; i < 4; i++) {
            assert_true(a[r * 9 + 1 + i] >= 10 && a[r * 9 + 1 + i] < 20);
            assert_int_equal(a[r * 9 + 1 + i], a[r * 9 + 5 + i]);
        }
    }
    assert_int_equal(mech_heads_repeated_tokens(3, 1, 0, 0, 5, -1, a, &err), MECH_ERR_ARG);
    assert_int_equal(mech_heads_repeated_tokens(3, 1, 2, 5, 5, -1, a, &err), MECH_ERR_ARG);
    assert_string_equal(mech_head_kind_name(MECH_HEAD_INDUCTION), "induction");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads_prev_token_compiled),
        cmocka_unit_test(test_heads_induction_on_written_patterns),
        cmocka_unit_test(test_heads_random_model_small),
        cmocka_unit_test(test_heads_repeated_tokens),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
