/*
** tests/test_interp_patch.c: activation patching (interp/patch.c) on the tiny
** GPT-2 fixture: the fast sweeps against the naive ones (one full forward per
** patch) on every cell, the identities patching must keep (clean restores
** clean, unreachable sites and paths change nothing, head/attn_out agree when
** there is one head), the metrics, cancelling and the errors.
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

#define FIX "tests/fixtures/gpt2-tiny/"
enum { T = 10, DIFF = 3 }; // prompts of T tokens that differ at position DIFF only

static int32_t clean_ids[T], corr_ids[T];
static int32_t ANSWER = 17, WRONG = 400;

static int setup(void **state) {
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(FIX, &m, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return -1;
    }
    for (int t = 0; t < T; t++) clean_ids[t] = corr_ids[t] = (int32_t)((7919 * t + 42) % 1000);
    corr_ids[DIFF] = 555;
    *state = m;
    return 0;
}

static int teardown(void **state) {
    mech_model_free(*state);
    return 0;
}

static mech_patch *new_patch(const mech_model *m, const int32_t *a, const int32_t *b, mech_patch_metric metric,
                             int pos, int naive) {
    mech_err err = {0};
    mech_patch_opts o = {.metric = metric, .answer = ANSWER, .wrong = WRONG, .pos = pos, .naive = naive};
    mech_patch *p = NULL;
    if (mech_patch_new(m, a, T, b, T, &o, &p, &err)) fail_msg("patch_new: %s", err.msg);
    return p;
}

static void sweep(mech_patch *p, mech_patch_site s, mech_patch_result *r) {
    mech_err err = {0};
    if (mech_patch_sweep(p, s, r, &err)) fail_msg("sweep %s: %s", mech_patch_site_name(s), err.msg);
    int64_t n = r->shape[0] * r->shape[1] * (r->ndim == 3 ? r->shape[2] : 1);
    assert_int_equal(r->done, n);
}

static size_t cells(const mech_patch_result *r) {
    return (size_t)(r->shape[0] * r->shape[1] * (r->ndim == 3 ? r->shape[2] : 1));
}

// ---------------------------------------------------------------------------
// Metrics

static void test_patch_metric_formulas(void **state) {
    (void)state;
    float a[4] = {1.0f, 2.0f, 0.5f, -1.0f}, b[4] = {0.0f, 0.0f, 3.0f, 0.0f};
    double lse = log(exp(1.0) + exp(2.0) + exp(0.5) + exp(-1.0));
    assert_true(fabs(mech_patch_metric_eval(MECH_PATCH_LOGIT_DIFF, a, NULL, 4, 1, 2) - 1.5) < 1e-12);
    assert_true(fabs(mech_patch_metric_eval(MECH_PATCH_LOGPROB, a, NULL, 4, 1, 0) - (2.0 - lse)) < 1e-12);
    assert_true(fabs(mech_patch_metric_eval(MECH_PATCH_PROB, a, NULL, 4, 1, 0) - exp(2.0 - lse)) < 1e-12);
    assert_true(mech_patch_metric_eval(MECH_PATCH_KL, a, a, 4, 0, 0) == 0.0); // KL(clean || clean) = 0
    double lseb = log(3.0 + exp(3.0)), kl = 0;
    for (int v = 0; v < 4; v++) {
        double la = a[v] - lse, lb = b[v] - lseb;
        kl += exp(la) * (la - lb);
    }
    assert_true(fabs(mech_patch_metric_eval(MECH_PATCH_KL, b, a, 4, 0, 0) - kl) < 1e-12);
    assert_true(mech_patch_metric_eval(MECH_PATCH_KL, b, a, 4, 0, 0) > 0);
    assert_true(mech_patch_normalise(3.0, 3.0, 1.0) == 1.0);
    assert_true(mech_patch_normalise(1.0, 3.0, 1.0) == 0.0);
    assert_true(mech_patch_normalise(2.0, 3.0, 1.0) == 0.5);
    assert_true(isnan(mech_patch_normalise(2.0, 1.0, 1.0)));
}

static void test_patch_kl_clean_vs_clean(void **state) {
    for (int naive = 0; naive < 2; naive++) {
        mech_patch *p = new_patch(*state, clean_ids, clean_ids, MECH_PATCH_KL, -1, naive);
        assert_true(mech_patch_clean_metric(p) == 0.0);
        assert_true(mech_patch_corrupted_metric(p) == 0.0);
        mech_patch_free(p);
    }
    mech_patch *p = new_patch(*state, clean_ids, corr_ids, MECH_PATCH_KL, -1, 0);
    assert_true(mech_patch_clean_metric(p) == 0.0);
    assert_true(mech_patch_corrupted_metric(p) > 0.0);
    mech_patch_free(p);
}

// ---------------------------------------------------------------------------
// Identities

// The prompts differ at DIFF only, so patching resid_pre of block 0 there
// patches every position: the run is the clean run (effect 1), and patching
// any other position writes the values already there (effect 0, exactly).
static void test_patch_resid_pre_layer0_restores_clean(void **state) {
    for (int naive = 0; naive < 2; naive++) {
        mech_patch *p = new_patch(*state, clean_ids, corr_ids, MECH_PATCH_LOGIT_DIFF, -1, naive);
        assert_true(fabs(mech_patch_clean_metric(p) - mech_patch_corrupted_metric(p)) > 1e-3);
        mech_patch_result r = {0};
        sweep(p, MECH_PATCH_RESID_PRE, &r);
        assert_int_equal(r.shape[0], 2);
        assert_int_equal(r.shape[1], T);
        for (int t = 0; t < T; t++) {
            if (t == DIFF) {
                assert_true(fabs(r.norm[t] - 1.0) < 1e-5);
                if (naive) assert_true(r.raw[t] == (float)r.clean);
            } else {
                assert_true(r.raw[t] == (float)r.corrupted);
                assert_true(r.norm[t] == 0.0f);
            }
        }
        // Positions before DIFF hold identical activations in both runs.
        for (int l = 0; l < 2; l++)
            for (int t = 0; t < DIFF; t++) assert_true(r.norm[l * T + t] == 0.0f);
        mech_patch_result_deinit(&r);
        mech_patch_free(p);
    }
}

// Patching resid_mid of the last block at the metric position makes the
// last resid_post there the clean one (the MLP is per position): effect 1.
static void test_patch_last_layer_restores_clean(void **state) {
    mech_patch_metric ms[] = {MECH_PATCH_LOGIT_DIFF, MECH_PATCH_LOGPROB, MECH_PATCH_PROB, MECH_PATCH_KL};
    for (size_t k = 0; k < 4; k++)
        for (int naive = 0; naive < 2; naive++) {
            mech_patch *p = new_patch(*state, clean_ids, corr_ids, ms[k], -1, naive);
            mech_patch_result r = {0};
            sweep(p, MECH_PATCH_RESID_MID, &r);
            assert_true(fabs(r.norm[1 * T + T - 1] - 1.0) < 1e-4);
            if (ms[k] == MECH_PATCH_KL) assert_true(fabs(r.raw[1 * T + T - 1]) < 1e-6);
            mech_patch_result_deinit(&r);
            mech_patch_free(p);
        }
}

// Patching clean into clean changes nothing.
static void test_patch_clean_into_clean(void **state) {
    mech_patch *p = new_patch(*state, clean_ids, clean_ids, MECH_PATCH_LOGPROB, -1, 1);
    mech_patch_result r = {0};
    sweep(p, MECH_PATCH_HEAD_OUT_BY_POS, &r);
    for (size_t i = 0; i < cells(&r); i++) {
        assert_true(r.raw[i] == (float)r.clean);
        assert_true(isnan(r.norm[i])); // clean == corrupted: no scale
    }
    mech_patch_result_deinit(&r);
    mech_patch_free(p);
}

// A causal model's position `pos` never sees later positions: patching them
// leaves the metric at pos exactly at the corrupted value.
static void test_patch_later_positions_no_effect(void **state) {
    int pos = 6;
    for (int naive = 0; naive < 2; naive++) {
        mech_patch *p = new_patch(*state, clean_ids, corr_ids, MECH_PATCH_LOGIT_DIFF, pos, naive);
        mech_patch_site sites[] = {MECH_PATCH_RESID_PRE, MECH_PATCH_RESID_MID, MECH_PATCH_ATTN_OUT,
                                   MECH_PATCH_MLP_OUT};
        for (size_t s = 0; s < 4; s++) {
            mech_patch_result r = {0};
            sweep(p, sites[s], &r);
            for (int l = 0; l < 2; l++)
                for (int t = pos + 1; t < T; t++) {
                    assert_true(r.raw[l * T + t] == (float)r.corrupted);
                    assert_true(r.norm[l * T + t] == 0.0f);
                }
            mech_patch_result_deinit(&r);
        }
        mech_patch_result r = {0};
        sweep(p, MECH_PATCH_HEAD_OUT_BY_POS, &r);
        int NH = (int)r.shape[2];
        for (int l = 0; l < 2; l++)
            for (int t = pos + 1; t < T; t++)
                for (int h = 0; h < NH; h++) assert_true(r.norm[(l * T + t) * NH + h] == 0.0f);
        mech_patch_result_deinit(&r);
        mech_patch_free(p);
    }
}

// ---------------------------------------------------------------------------
// Fast against naive, every sweep

static void compare(const mech_patch_result *f, const mech_patch_result *n, const char *label) {
    assert_int_equal(f->ndim, n->ndim);
    for (int d = 0; d < 3; d++) assert_int_equal(f->shape[d], n->shape[d]);
    assert_true(fabs(f->clean - n->clean) < 1e-5);
    assert_true(fabs(f->corrupted - n->corrupted) < 1e-5);
    char lab[128];
    snprintf(lab, sizeof lab, "%s raw", label);
    mech_assert_close(f->raw, n->raw, cells(f), 1e-5, 0, lab);
    snprintf(lab, sizeof lab, "%s normalised", label);
    mech_assert_close(f->norm, n->norm, cells(f), 1e-4, 0, lab);
}

static void test_patch_fast_equals_naive(void **state) {
    mech_patch_metric ms[] = {MECH_PATCH_LOGIT_DIFF, MECH_PATCH_LOGPROB, MECH_PATCH_PROB, MECH_PATCH_KL};
    for (size_t k = 0; k < 4; k++) {
        mech_patch *pf = new_patch(*state, clean_ids, corr_ids, ms[k], -1, 0);
        mech_patch *pn = new_patch(*state, clean_ids, corr_ids, ms[k], -1, 1);
        for (int s = 0; s < MECH_PATCH_SITE_COUNT_; s++) {
            if (k > 0 && s > MECH_PATCH_RESID_PRE && s != MECH_PATCH_HEAD_OUT) continue; // every site once
            mech_patch_result rf = {0}, rn = {0};
            sweep(pf, (mech_patch_site)s, &rf);
            sweep(pn, (mech_patch_site)s, &rn);
            char lab[96];
            snprintf(lab, sizeof lab, "%s/%s", mech_patch_site_name((mech_patch_site)s),
                     mech_patch_metric_name(ms[k]));
            compare(&rf, &rn, lab);
            mech_patch_result_deinit(&rf);
            mech_patch_result_deinit(&rn);
        }
        mech_patch_free(pf);
        mech_patch_free(pn);
    }
}

// Batches of every size (including a remainder) give the same cells.
static void test_patch_batch_sizes_agree(void **state) {
    mech_err err = {0};
    mech_patch_result ref = {0};
    mech_patch *p = new_patch(*state, clean_ids, corr_ids, MECH_PATCH_LOGIT_DIFF, -1, 1);
    sweep(p, MECH_PATCH_HEAD_OUT_BY_POS, &ref);
    mech_patch_free(p);
    int sizes[] = {1, 3, 7, 64};
    for (size_t i = 0; i < 4; i++) {
        mech_patch_opts o = {.metric = MECH_PATCH_LOGIT_DIFF, .answer = ANSWER, .wrong = WRONG, .pos = -1,
                             .batch = sizes[i]};
        if (mech_patch_new(*state, clean_ids, T, corr_ids, T, &o, &p, &err)) fail_msg("%s", err.msg);
        mech_patch_result r = {0};
        sweep(p, MECH_PATCH_HEAD_OUT_BY_POS, &r);
        mech_assert_close(r.raw, ref.raw, cells(&r), 1e-5, 0, "batched head_out_by_pos");
        mech_patch_result_deinit(&r);
        mech_patch_free(p);
    }
    mech_patch_result_deinit(&ref);
}

// ---------------------------------------------------------------------------
// Relations between sweeps

// With one head, patching its z at a position is patching attn_out there
// (attn_out = z W_O + b_O), and with the metric at position 0 patching z at
// position 0 is patching it everywhere. At position 0 the pattern is [1, 0...]
// in both runs, so patching it changes nothing.
static void test_patch_head_relations(void **state) {
    (void)state;
    mech_config c = {.n_layers = 2, .n_heads = 1, .d_model = 32, .d_head = 16, .d_mlp = 64, .n_ctx = 32,
                     .d_vocab = 100, .act = MECH_ACT_GELU_NEW, .norm = MECH_NORM_LAYERNORM, .causal = 1,
                     .ln_eps = 1e-5f, .tied_unembed = 1};
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 7, &m, &err)) fail_msg("%s", err.msg);
    int32_t a[T], b[T];
    for (int t = 0; t < T; t++) a[t] = b[t] = (int32_t)((31 * t + 5) % 100);
    b[0] = 99;
    b[4] = 98;
    mech_patch_opts o = {.metric = MECH_PATCH_LOGIT_DIFF, .answer = 3, .wrong = 4, .pos = -1};
    mech_patch *p = NULL;
    for (int pos0 = 0; pos0 < 2; pos0++) {
        o.pos = pos0 ? 0 : -1;
        if (mech_patch_new(m, a, T, b, T, &o, &p, &err)) fail_msg("%s", err.msg);
        mech_patch_result z = {0}, ao = {0}, zall = {0}, pat = {0};
        sweep(p, MECH_PATCH_HEAD_OUT_BY_POS, &z);
        sweep(p, MECH_PATCH_ATTN_OUT, &ao);
        mech_assert_close(z.raw, ao.raw, cells(&ao), 1e-5, 0, "z by pos (one head) vs attn_out");
        if (pos0) {
            sweep(p, MECH_PATCH_HEAD_OUT, &zall);
            sweep(p, MECH_PATCH_HEAD_PATTERN, &pat);
            for (int l = 0; l < 2; l++) {
                assert_true(fabs(zall.raw[l] - z.raw[l * T + 0]) < 1e-5);
                assert_true(pat.raw[l] == (float)pat.corrupted);
            }
        }
        mech_patch_result_deinit(&z);
        mech_patch_result_deinit(&ao);
        mech_patch_result_deinit(&zall);
        mech_patch_result_deinit(&pat);
        mech_patch_free(p);
    }
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Path patching

static void path(mech_patch *p, const mech_patch_receiver *rv, int n, mech_patch_result *r) {
    mech_err err = {0};
    if (mech_patch_path(p, rv, n, r, &err)) fail_msg("path: %s", err.msg);
}

static void test_patch_path_unreachable_is_zero(void **state) {
    mech_patch *p = new_patch(*state, clean_ids, corr_ids, MECH_PATCH_LOGIT_DIFF, -1, 0);
    mech_patch_receiver rv[] = {{0, 1, MECH_PATCH_INPUT_Q}, {0, 2, MECH_PATCH_INPUT_V}};
    mech_patch_result r = {0};
    path(p, rv, 2, &r);
    assert_int_equal(r.shape[0], 2);
    assert_int_equal(r.shape[1], 4);
    for (size_t i = 0; i < cells(&r); i++) assert_true(r.norm[i] == 0.0f);
    mech_patch_result_deinit(&r);
    // A receiver in layer 1: senders in layer 1 do not reach it.
    mech_patch_receiver r1 = {1, 0, MECH_PATCH_INPUT_K};
    path(p, &r1, 1, &r);
    for (int h = 0; h < 4; h++) assert_true(r.norm[4 + h] == 0.0f);
    int moved = 0;
    for (int h = 0; h < 4; h++) moved += r.norm[h] != 0.0f;
    assert_true(moved > 0);
    mech_patch_result_deinit(&r);
    mech_patch_free(p);
}

static void test_patch_path_fast_equals_naive(void **state) {
    mech_patch_receiver rv[] = {{1, 0, MECH_PATCH_INPUT_Q}, {1, 2, MECH_PATCH_INPUT_K}, {1, 3, MECH_PATCH_INPUT_V},
                                {1, 0, MECH_PATCH_INPUT_V}};
    mech_patch_metric ms[] = {MECH_PATCH_LOGIT_DIFF, MECH_PATCH_KL};
    for (size_t k = 0; k < 2; k++) {
        mech_patch *pf = new_patch(*state, clean_ids, corr_ids, ms[k], -1, 0);
        mech_patch *pn = new_patch(*state, clean_ids, corr_ids, ms[k], -1, 1);
        for (int n = 1; n <= 4; n++) {
            mech_patch_result rf = {0}, rn = {0};
            path(pf, rv, n, &rf);
            path(pn, rv, n, &rn);
            compare(&rf, &rn, "path");
            mech_patch_result_deinit(&rf);
            mech_patch_result_deinit(&rn);
        }
        mech_patch_free(pf);
        mech_patch_free(pn);
    }
}

// Path patching a sender into every head's q, k and v of the next layer
// differs from patching the sender's z (which also reaches the MLP and the
// logits directly); but with the sender's clean result equal to its
// corrupted one (clean into clean) nothing moves.
static void test_patch_path_clean_into_clean(void **state) {
    mech_patch *p = new_patch(*state, clean_ids, clean_ids, MECH_PATCH_LOGIT_DIFF, -1, 0);
    mech_patch_receiver rv[] = {{1, 0, MECH_PATCH_INPUT_Q}, {1, 1, MECH_PATCH_INPUT_K}};
    mech_patch_result r = {0};
    path(p, rv, 2, &r);
    for (size_t i = 0; i < cells(&r); i++) assert_true(fabs(r.raw[i] - r.clean) < 1e-5);
    mech_patch_result_deinit(&r);
    mech_patch_free(p);
}

// ---------------------------------------------------------------------------
// Progress, cancel, errors

typedef struct prog {
    int64_t last, total;
    int calls;
    volatile int cancel;
} prog;

static void on_progress(int64_t done, int64_t total, void *user) {
    prog *g = user;
    assert_true(done > g->last);
    g->last = done;
    g->total = total;
    if (++g->calls == 2) g->cancel = 1;
}

static void test_patch_progress_and_cancel(void **state) {
    mech_err err = {0};
    prog g = {0};
    mech_patch_opts o = {.metric = MECH_PATCH_LOGIT_DIFF, .answer = ANSWER, .wrong = WRONG, .pos = -1, .batch = 4,
                         .progress = on_progress, .user = &g, .cancel = &g.cancel};
    mech_patch *p = NULL;
    if (mech_patch_new(*state, clean_ids, T, corr_ids, T, &o, &p, &err)) fail_msg("%s", err.msg);
    mech_patch_result r = {0};
    assert_int_equal(mech_patch_sweep(p, MECH_PATCH_RESID_PRE, &r, &err), MECH_ERR_CANCELLED);
    assert_int_equal(err.code, MECH_ERR_CANCELLED);
    assert_int_equal(g.total, 2 * T);
    assert_int_equal(r.done, 8);
    assert_false(isnan(r.raw[7]));
    assert_true(isnan(r.raw[8]));
    mech_patch_result_deinit(&r);
    mech_patch_free(p);
}

static void test_patch_errors(void **state) {
    mech_model *m = *state;
    mech_err err = {0};
    mech_patch *p = NULL;
    mech_patch_opts o = {.metric = MECH_PATCH_LOGIT_DIFF, .answer = ANSWER, .wrong = WRONG, .pos = -1};
    assert_int_equal(mech_patch_new(m, clean_ids, T, corr_ids, T - 2, &o, &p, &err), MECH_ERR_ARG);
    assert_null(p);
    assert_non_null(strstr(err.msg, "10"));
    assert_non_null(strstr(err.msg, "8"));
    assert_non_null(strstr(err.msg, "equal lengths"));
    assert_int_equal(mech_patch_new(m, clean_ids, 0, corr_ids, 0, &o, &p, &err), MECH_ERR_ARG);
    o.answer = 1000;
    assert_int_equal(mech_patch_new(m, clean_ids, T, corr_ids, T, &o, &p, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "1000"));
    o.answer = ANSWER;
    o.pos = T;
    assert_int_equal(mech_patch_new(m, clean_ids, T, corr_ids, T, &o, &p, &err), MECH_ERR_RANGE);
    o.pos = -1;
    o.metric = (mech_patch_metric)42;
    assert_int_equal(mech_patch_new(m, clean_ids, T, corr_ids, T, &o, &p, &err), MECH_ERR_ARG);
    o.metric = MECH_PATCH_LOGIT_DIFF;
    int32_t bad[T];
    memcpy(bad, corr_ids, sizeof bad);
    bad[2] = 5000;
    assert_int_equal(mech_patch_new(m, clean_ids, T, bad, T, &o, &p, &err), MECH_ERR_RANGE);
    assert_null(p);

    if (mech_patch_new(m, clean_ids, T, corr_ids, T, &o, &p, &err)) fail_msg("%s", err.msg);
    mech_patch_result r = {0};
    assert_int_equal(mech_patch_sweep(p, (mech_patch_site)99, &r, &err), MECH_ERR_ARG);
    mech_patch_receiver rv = {2, 0, MECH_PATCH_INPUT_Q}; // the model has layers 0 and 1
    assert_int_equal(mech_patch_path(p, &rv, 1, &r, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "layer 2"));
    rv = (mech_patch_receiver){-1, 0, MECH_PATCH_INPUT_Q};
    assert_int_equal(mech_patch_path(p, &rv, 1, &r, &err), MECH_ERR_RANGE);
    rv = (mech_patch_receiver){1, 4, MECH_PATCH_INPUT_Q};
    assert_int_equal(mech_patch_path(p, &rv, 1, &r, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "head 4"));
    rv = (mech_patch_receiver){1, 0, (mech_patch_input)7};
    assert_int_equal(mech_patch_path(p, &rv, 1, &r, &err), MECH_ERR_ARG);
    assert_int_equal(mech_patch_path(p, &rv, 0, &r, &err), MECH_ERR_ARG);
    mech_patch_result_deinit(&r);
    mech_patch_free(p);

    // An attention-only model has no resid_mid or mlp_out to patch.
    mech_config c = {.n_layers = 1, .n_heads = 2, .d_model = 16, .d_head = 8, .n_ctx = 16, .d_vocab = 50,
                     .act = MECH_ACT_GELU_NEW, .norm = MECH_NORM_LAYERNORM, .attn_only = 1, .causal = 1,
                     .ln_eps = 1e-5f, .tied_unembed = 1};
    mech_model *am = NULL;
    if (mech_model_random(&c, 3, &am, &err)) fail_msg("%s", err.msg);
    int32_t a[4] = {1, 2, 3, 4}, b[4] = {1, 5, 3, 4};
    o.answer = 1;
    o.wrong = 2;
    if (mech_patch_new(am, a, 4, b, 4, &o, &p, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_patch_sweep(p, MECH_PATCH_MLP_OUT, &r, &err), MECH_ERR_ARG);
    assert_int_equal(mech_patch_sweep(p, MECH_PATCH_RESID_MID, &r, &err), MECH_ERR_ARG);
    sweep(p, MECH_PATCH_ATTN_OUT, &r);
    mech_patch_result_deinit(&r);
    mech_patch_free(p);
    mech_model_free(am);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patch_metric_formulas),
        cmocka_unit_test(test_patch_kl_clean_vs_clean),
        cmocka_unit_test(test_patch_resid_pre_layer0_restores_clean),
        cmocka_unit_test(test_patch_last_layer_restores_clean),
        cmocka_unit_test(test_patch_clean_into_clean),
        cmocka_unit_test(test_patch_later_positions_no_effect),
        cmocka_unit_test(test_patch_fast_equals_naive),
        cmocka_unit_test(test_patch_batch_sizes_agree),
        cmocka_unit_test(test_patch_head_relations),
        cmocka_unit_test(test_patch_path_unreachable_is_zero),
        cmocka_unit_test(test_patch_path_fast_equals_naive),
        cmocka_unit_test(test_patch_path_clean_into_clean),
        cmocka_unit_test(test_patch_progress_and_cancel),
        cmocka_unit_test(test_patch_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
