/*
** tests/test_interp_patch_attrib.c: attribution patching (interp/patch_attrib.c)
** against the exact sweeps of interp/patch.c, which are the independent
** computation here: equal where the metric is linear in the patched
** activation (constructed: no LayerNorm, the last block, the logit
** difference), close when the clean and corrupted inputs differ a little
** (the first-order regime, every metric but KL), correlated on the tiny
** GPT-2 fixture and on a compiled RASP model; a pair's cells do not depend
** on the batch; errors.
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

static size_t n_cells(const mech_patch_result *r) {
    return (size_t)(r->shape[0] * r->shape[1] * (r->ndim == 3 ? r->shape[2] : 1));
}

// The exact sweep (site >= 0) or path patching (site < 0) of one pair.
static void exact(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int T, mech_patch_metric metric,
                  int32_t ans, int32_t wrong, int site, const mech_patch_receiver *rv, int n_rv, mech_patch_result *r) {
    mech_err err = {0};
    mech_patch_opts o = {.metric = metric, .answer = ans, .wrong = wrong, .pos = -1};
    mech_patch *p = NULL;
    if (mech_patch_new(m, clean, T, corrupt, T, &o, &p, &err)) fail_msg("patch_new: %s", err.msg);
    mech_status st = site >= 0 ? mech_patch_sweep(p, (mech_patch_site)site, r, &err) : mech_patch_path(p, rv, n_rv, r, &err);
    if (st) fail_msg("exact %d: %s", site, err.msg);
    mech_patch_free(p);
}

static void attrib(const mech_model *m, const mech_patch_pairs *pp, mech_patch_metric metric, int site,
                   const mech_patch_receiver *rv, int n_rv, mech_patch_result *r) {
    mech_err err = {0};
    mech_status st = site >= 0 ? mech_patch_attrib_sweep(m, pp, metric, (mech_patch_site)site, r, &err)
                               : mech_patch_attrib_path(m, pp, metric, rv, n_rv, r, &err);
    if (st) fail_msg("attrib %d: %s", site, err.msg);
    for (int b = 0; b < pp->B; b++) assert_int_equal(r[b].done, (int64_t)n_cells(&r[b]));
}

static double pearson(const float *a, const float *b, size_t n) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) ma += a[i], mb += b[i];
    ma /= (double)n, mb /= (double)n;
    for (size_t i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / sqrt(saa * sbb);
}

// ---------------------------------------------------------------------------
// Linear cases: exact equality

// Cells of the last layer (the first dimension) of the two results agree.
static void same_last_layer(const mech_patch_result *x, const mech_patch_result *a, const char *label) {
    size_t per = n_cells(x) / (size_t)x->shape[0], off = n_cells(x) - per;
    assert_int_equal(x->ndim, a->ndim);
    for (int d = 0; d < x->ndim; d++) assert_int_equal(x->shape[d], a->shape[d]);
    assert_true(fabs(x->clean - a->clean) < 1e-4 && fabs(x->corrupted - a->corrupted) < 1e-4);
    mech_assert_close(a->raw + off, x->raw + off, per, 2e-5, 1e-4, label);
    mech_assert_close(a->norm + off, x->norm + off, per, 2e-5, 1e-4, label);
    // and the cells move the metric: the check is not between zeros
    double big = 0;
    for (size_t i = off; i < off + per; i++) big = fmax(big, fabs(x->raw[i] - x->corrupted));
    assert_true(big > 1e-2);
}

static void test_attrib_exact_when_linear(void **state) {
    (void)state;
    enum { T = 6 };
    int32_t clean[T] = {3, 9, 1, 14, 7, 20}, corrupt[T] = {3, 12, 5, 14, 2, 20}, ans = 4, wrong = 11;
    mech_patch_pairs pp = {.clean = clean, .corrupt = corrupt, .answer = &ans, .wrong = &wrong, .B = 1, .T = T, .pos = -1};
    // Without LayerNorm the logits are linear in what the last block adds to
    // the residual stream after its last nonlinearity: its mlp_out, or in an
    // attention-only model its attn_out, each head's z, and z in v (the
    // pattern does not move).
    for (int attn_only = 1; attn_only >= 0; attn_only--) {
        mech_model *m = mech_test_small_model(2, 3, attn_only, 0, 11 + attn_only);
        static const mech_patch_site sites[] = {MECH_PATCH_ATTN_OUT, MECH_PATCH_MLP_OUT, MECH_PATCH_HEAD_OUT,
                                                MECH_PATCH_HEAD_OUT_BY_POS, MECH_PATCH_HEAD_V};
        for (size_t k = 0; k < sizeof sites / sizeof *sites; k++) {
            if (attn_only == (sites[k] == MECH_PATCH_MLP_OUT)) continue;
            mech_patch_result x = {0}, a = {0};
            exact(m, clean, corrupt, T, MECH_PATCH_LOGIT_DIFF, ans, wrong, (int)sites[k], NULL, 0, &x);
            attrib(m, &pp, MECH_PATCH_LOGIT_DIFF, (int)sites[k], NULL, 0, &a);
            same_last_layer(&x, &a, mech_patch_site_name(sites[k]));
            mech_patch_result_deinit(&x);
            mech_patch_result_deinit(&a);
        }
        if (!attn_only) {
            mech_model_free(m);
            continue;
        }
        // Path patching into the last block's v inputs: every sender's path is linear.
        mech_patch_receiver rv[2] = {{1, 0, MECH_PATCH_INPUT_V}, {1, 2, MECH_PATCH_INPUT_V}};
        mech_patch_result x = {0}, a = {0};
        exact(m, clean, corrupt, T, MECH_PATCH_LOGIT_DIFF, ans, wrong, -1, rv, 2, &x);
        attrib(m, &pp, MECH_PATCH_LOGIT_DIFF, -1, rv, 2, &a);
        mech_assert_close(a.raw, x.raw, n_cells(&x), 2e-5, 1e-4, "path into v");
        double big = 0;
        for (size_t i = 0; i < n_cells(&x); i++) big = fmax(big, fabs(x.raw[i] - x.corrupted));
        assert_true(big > 1e-2);
        // layer 1's senders have no receiver after them: exactly the corrupted metric
        for (int h = 0; h < 3; h++) assert_true(a.raw[3 + h] == (float)a.corrupted && a.norm[3 + h] == 0);
        mech_patch_result_deinit(&x);
        mech_patch_result_deinit(&a);
        mech_model_free(m);
    }
}

// ---------------------------------------------------------------------------
// First order: inputs that differ a little

// The corrupted prompt differs at one position, by a token whose embedding
// is the clean token's plus eps times noise: every activation difference is
// O(eps), so the estimate is the exact cell to O(eps^2).
static void test_attrib_first_order(void **state) {
    (void)state;
    enum { T = 6 };
    mech_model *m = mech_test_small_model(2, 2, 0, 1, 5);
    int32_t clean[T] = {3, 9, 1, 14, 7, 20}, corrupt[T] = {3, 9, 22, 14, 7, 20}, ans = 4, wrong = 11;
    float *wte = mech_model_param(m, "wte.weight");
    assert_non_null(wte);
    const int C = m->cfg.d_model;
    const double eps = 0.02;
    mech_test_seed(99);
    for (int k = 0; k < C; k++) wte[22 * C + k] = wte[1 * C + k] + (float)(eps * (mech_test_urand() - 0.5));
    mech_patch_pairs pp = {.clean = clean, .corrupt = corrupt, .answer = &ans, .wrong = &wrong, .B = 1, .T = T, .pos = -1};
    static const mech_patch_metric metrics[] = {MECH_PATCH_LOGIT_DIFF, MECH_PATCH_LOGPROB, MECH_PATCH_PROB};
    for (int s = 0; s < MECH_PATCH_SITE_COUNT_; s++)
        for (size_t k = 0; k < 3; k++) {
            mech_patch_result x = {0}, a = {0};
            exact(m, clean, corrupt, T, metrics[k], ans, wrong, s, NULL, 0, &x);
            attrib(m, &pp, metrics[k], s, NULL, 0, &a);
            // compared as changes from the corrupted run, relative to the largest
            size_t n = n_cells(&x);
            double big = 0, worst = 0;
            for (size_t i = 0; i < n; i++) big = fmax(big, fabs(x.raw[i] - x.corrupted));
            for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a.raw[i] - x.raw[i]));
            if (big > 0 && worst > 0.05 * big + 1e-6)
                fail_msg("%s / %s: estimate off by %g, largest change %g", mech_patch_site_name((mech_patch_site)s),
                         mech_patch_metric_name(metrics[k]), worst, big);
            mech_patch_result_deinit(&x);
            mech_patch_result_deinit(&a);
        }
    // KL(clean || run) is at its minimum on the clean run: the gradient there
    // is 0, so only the corrupted run's gradient estimates anything, and near
    // the minimum (quadratic) the estimate of restoring the whole difference
    // (resid_pre of block 0 at the changed position) is twice the exact change.
    mech_patch_result x = {0}, a = {0};
    exact(m, clean, corrupt, T, MECH_PATCH_KL, ans, wrong, MECH_PATCH_RESID_PRE, NULL, 0, &x);
    attrib(m, &pp, MECH_PATCH_KL, MECH_PATCH_RESID_PRE, NULL, 0, &a);
    double dx = x.raw[2] - x.corrupted, da = a.raw[2] - a.corrupted;
    assert_true(x.corrupted > 0 && fabs(x.raw[2]) < 1e-3 * x.corrupted); // the exact restore: KL 0
    if (!(da / dx > 1.6 && da / dx < 2.4)) fail_msg("KL: estimate %g, exact change %g", da, dx);
    for (int t = 0; t < T; t++)
        if (t != 2) assert_true(a.raw[t] == (float)a.corrupted); // nothing differs there
    mech_patch_result_deinit(&x);
    mech_patch_result_deinit(&a);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Batch independence

static void test_attrib_batch_independent(void **state) {
    (void)state;
    enum { B = 3, T = 5 };
    mech_model *m = mech_test_small_model(2, 2, 0, 1, 8);
    int32_t clean[B * T], corrupt[B * T], ans[B] = {1, 5, 9}, wrong[B] = {2, 6, 10};
    mech_test_seed(1234);
    for (int i = 0; i < B * T; i++) clean[i] = (int32_t)(mech_test_urand() * 23) % 23, corrupt[i] = (int32_t)(mech_test_urand() * 23) % 23;
    mech_patch_receiver rv[2] = {{1, 1, MECH_PATCH_INPUT_K}, {1, 0, MECH_PATCH_INPUT_Q}};
    for (int metric = 0; metric < MECH_PATCH_METRIC_COUNT_; metric++)
        for (int s = -1; s < MECH_PATCH_SITE_COUNT_; s++) {
            mech_patch_pairs all = {.clean = clean, .corrupt = corrupt, .answer = ans, .wrong = wrong, .B = B, .T = T, .pos = -1};
            mech_patch_result rb[B], r1 = {0};
            attrib(m, &all, (mech_patch_metric)metric, s, rv, 2, rb);
            for (int b = 0; b < B; b++) {
                mech_patch_pairs one = {.clean = clean + b * T, .corrupt = corrupt + b * T, .answer = &ans[b],
                                        .wrong = &wrong[b], .B = 1, .T = T, .pos = -1};
                attrib(m, &one, (mech_patch_metric)metric, s, rv, 2, &r1);
                char label[64];
                snprintf(label, sizeof label, "%s site %d pair %d", mech_patch_metric_name((mech_patch_metric)metric), s, b);
                assert_true(fabs(r1.clean - rb[b].clean) < 1e-6 && fabs(r1.corrupted - rb[b].corrupted) < 1e-6);
                mech_assert_close(rb[b].raw, r1.raw, n_cells(&r1), 1e-5, 1e-4, label);
                mech_patch_result_deinit(&r1);
                mech_patch_result_deinit(&rb[b]);
            }
        }
    mech_model_free(m);
}

// A corrupted prompt equal to the clean one: every estimate is 0.
static void test_attrib_same_input(void **state) {
    (void)state;
    enum { T = 5 };
    mech_model *m = mech_test_small_model(2, 2, 0, 1, 3);
    int32_t ids[T] = {1, 2, 3, 4, 5}, ans = 6, wrong = 7;
    mech_patch_pairs pp = {.clean = ids, .corrupt = ids, .answer = &ans, .wrong = &wrong, .B = 1, .T = T, .pos = -1};
    for (int metric = 0; metric < MECH_PATCH_METRIC_COUNT_; metric++)
        for (int s = 0; s < MECH_PATCH_SITE_COUNT_; s++) {
            mech_patch_result r = {0};
            attrib(m, &pp, (mech_patch_metric)metric, s, NULL, 0, &r);
            for (size_t i = 0; i < n_cells(&r); i++) {
                assert_true(r.raw[i] == (float)r.corrupted);
                assert_true(isnan(r.norm[i])); // clean == corrupted
            }
            mech_patch_result_deinit(&r);
        }
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// Agreement where the model is not linear

// The tiny GPT-2 fixture (LayerNorm, MLPs): the correlation over every cell
// of each sweep between the estimate and the exact effect.
static void test_attrib_correlates_gpt2_tiny(void **state) {
    (void)state;
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load("tests/fixtures/gpt2-tiny/", &m, &err)) fail_msg("%s", err.msg);
    enum { T = 10 };
    int32_t clean[T], corrupt[T], ans = 17, wrong = 400;
    for (int t = 0; t < T; t++) clean[t] = corrupt[t] = (int32_t)((7919 * t + 42) % 1000);
    corrupt[3] = 555;
    mech_patch_pairs pp = {.clean = clean, .corrupt = corrupt, .answer = &ans, .wrong = &wrong, .B = 1, .T = T, .pos = -1};
    static const mech_patch_site sites[] = {MECH_PATCH_RESID_PRE, MECH_PATCH_ATTN_OUT, MECH_PATCH_MLP_OUT,
                                            MECH_PATCH_HEAD_OUT};
    for (size_t k = 0; k < sizeof sites / sizeof *sites; k++) {
        mech_patch_result x = {0}, a = {0};
        exact(m, clean, corrupt, T, MECH_PATCH_LOGIT_DIFF, ans, wrong, (int)sites[k], NULL, 0, &x);
        attrib(m, &pp, MECH_PATCH_LOGIT_DIFF, (int)sites[k], NULL, 0, &a);
        double r = pearson(a.norm, x.norm, n_cells(&x));
        print_message("gpt2-tiny %s: correlation %.4f over %zu cells\n", mech_patch_site_name(sites[k]), r, n_cells(&x));
        assert_true(r > 0.9);
        mech_patch_result_deinit(&x);
        mech_patch_result_deinit(&a);
    }
    mech_model_free(m);
}

// A compiled RASP model (hard attention, lookup-table MLPs): reverse reads
// the answer through value vectors only, so every resid_pre cell's estimate
// follows the exact effect.
static void test_attrib_compiled_reverse(void **state) {
    (void)state;
    const char *path = mech_test_tmpn("attrib-reverse.safetensors");
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", path)) fail_msg("%s", out);
    free(out);
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    enum { N = 12 };
    mech_pair *pairs = NULL;
    if (mech_dataset_compiled(m, N, 0, 1, "random", &pairs, &err)) fail_msg("%s", err.msg);
    float *x = NULL, *a = NULL;
    size_t n = 0;
    for (int i = 0; i < N; i++) {
        mech_patch_result rx = {0}, ra = {0};
        int T = pairs[i].n;
        exact(m, pairs[i].clean, pairs[i].corrupt, T, MECH_PATCH_LOGIT_DIFF, pairs[i].answer, pairs[i].wrong,
              MECH_PATCH_RESID_PRE, NULL, 0, &rx);
        mech_patch_pairs pp = {.clean = pairs[i].clean, .corrupt = pairs[i].corrupt, .answer = &pairs[i].answer,
                               .wrong = &pairs[i].wrong, .B = 1, .T = T, .pos = -1};
        attrib(m, &pp, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_RESID_PRE, NULL, 0, &ra);
        x = realloc(x, sizeof *x * (n + n_cells(&rx))), a = realloc(a, sizeof *a * (n + n_cells(&rx)));
        for (size_t c = 0; c < n_cells(&rx); c++)
            if (isfinite(rx.norm[c]) && isfinite(ra.norm[c])) x[n] = rx.norm[c], a[n++] = ra.norm[c];
        mech_patch_result_deinit(&rx);
        mech_patch_result_deinit(&ra);
    }
    double r = pearson(a, x, n);
    print_message("reverse.rasp resid_pre: correlation %.4f over %zu cells\n", r, n);
    assert_true(n > 20);
    assert_true(r > 0.99);
    free(x), free(a);
    mech_pairs_free(pairs, N);
    mech_model_free(m);
    remove(path);
}

// ---------------------------------------------------------------------------
// Errors

static void test_attrib_errors(void **state) {
    (void)state;
    mech_model *m = mech_test_small_model(1, 2, 1, 0, 2);
    int32_t ids[3] = {1, 2, 3}, bad[3] = {1, 99, 3}, ans = 1, wrong = 2, oob = 50;
    mech_patch_result r[2];
    mech_err err = {0};
    mech_patch_pairs pp = {.clean = ids, .corrupt = ids, .answer = &ans, .wrong = &wrong, .B = 1, .T = 3, .pos = -1};
    // attention-only: no mlp_out
    assert_int_equal(mech_patch_attrib_sweep(m, &pp, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_MLP_OUT, r, &err), MECH_ERR_ARG);
    mech_patch_result_deinit(&r[0]);
    assert_int_equal(mech_patch_attrib_sweep(m, &pp, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_SITE_COUNT_, r, &err), MECH_ERR_ARG);
    assert_int_equal(mech_patch_attrib_sweep(m, &pp, MECH_PATCH_METRIC_COUNT_, MECH_PATCH_RESID_PRE, r, &err), MECH_ERR_ARG);
    mech_patch_pairs q = pp;
    q.corrupt = bad;
    assert_int_equal(mech_patch_attrib_sweep(m, &q, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_RESID_PRE, r, &err), MECH_ERR_RANGE);
    q = pp, q.wrong = &oob;
    assert_int_equal(mech_patch_attrib_sweep(m, &q, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_RESID_PRE, r, &err), MECH_ERR_RANGE);
    q.wrong = NULL; // not needed by logprob
    assert_int_equal(mech_patch_attrib_sweep(m, &q, MECH_PATCH_LOGPROB, MECH_PATCH_RESID_PRE, r, &err), MECH_OK);
    mech_patch_result_deinit(&r[0]);
    q = pp, q.pos = 3;
    assert_int_equal(mech_patch_attrib_sweep(m, &q, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_RESID_PRE, r, &err), MECH_ERR_RANGE);
    q = pp, q.B = 0;
    assert_int_equal(mech_patch_attrib_sweep(m, &q, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_RESID_PRE, r, &err), MECH_ERR_ARG);
    q = pp, q.T = 9; // past the context of 8
    assert_int_equal(mech_patch_attrib_sweep(m, &q, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_RESID_PRE, r, &err), MECH_ERR_RANGE);
    mech_patch_receiver rv = {1, 0, MECH_PATCH_INPUT_Q};
    assert_int_equal(mech_patch_attrib_path(m, &pp, MECH_PATCH_LOGIT_DIFF, &rv, 1, r, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_patch_attrib_path(m, &pp, MECH_PATCH_LOGIT_DIFF, &rv, 0, r, &err), MECH_ERR_ARG);
    mech_model_free(m);
}

// ---------------------------------------------------------------------------
// mech patch --method

// The attrib run's rows are the library's estimates; the exact run is what
// --method exact stores; the run's parameters say which is which.
static void test_cli_method(void **state) {
    (void)state;
    const char *pairs = mech_test_tmpn("attrib-pairs.jsonl"), *db = mech_test_tmpn("attrib.db");
    mech_test_rm_db(db);
    FILE *f = fopen(pairs, "w");
    assert_non_null(f);
    fputs("{\"clean\": [5, 6, 7, 8, 9], \"corrupt\": [5, 60, 7, 8, 90], \"answer\": 13, \"wrong\": 14}\n"
          "{\"clean\": [15, 16, 17], \"corrupt\": [19, 16, 17], \"answer\": 23, \"wrong\": 24}\n", f);
    fclose(f);
    char *out = NULL;
    int st = mech_test_cli(&out, NULL, "patch --model tests/fixtures/gpt2-tiny/ --pairs %s --sweep heads --method both --db %s",
                           pairs, db);
    if (st) fail_msg("exit %d: %s", st, out);
    assert_non_null(strstr(out, "exact vs attribution: correlation of the effects"));
    free(out);
    char *runs = mech_test_sql_rows(db, "SELECT id, kind, status, instr(params, '\"method\": \"attrib\"') > 0 FROM runs ORDER BY id");
    assert_string_equal(runs, "1|patch|done|0\n2|patch|done|1\n");
    free(runs);
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load("tests/fixtures/gpt2-tiny/", &m, &err)) fail_msg("%s", err.msg);
    static const int32_t c0[5] = {5, 6, 7, 8, 9}, x0[5] = {5, 60, 7, 8, 90}, c1[3] = {15, 16, 17}, x1[3] = {19, 16, 17};
    const int32_t *cl[2] = {c0, c1}, *co[2] = {x0, x1}, ans[2] = {13, 23}, wr[2] = {14, 24};
    int lens[2] = {5, 3};
    for (int i = 0; i < 2; i++) {
        for (int run = 1; run <= 2; run++) {
            mech_patch_result r = {0};
            if (run == 2) {
                mech_patch_pairs pp = {.clean = cl[i], .corrupt = co[i], .answer = &ans[i], .wrong = &wr[i], .B = 1,
                                       .T = lens[i], .pos = -1};
                attrib(m, &pp, MECH_PATCH_LOGIT_DIFF, MECH_PATCH_HEAD_OUT, NULL, 0, &r);
            } else {
                exact(m, cl[i], co[i], lens[i], MECH_PATCH_LOGIT_DIFF, ans[i], wr[i], MECH_PATCH_HEAD_OUT, NULL, 0, &r);
            }
            char sql[256];
            snprintf(sql, sizeof sql,
                     "SELECT value FROM results WHERE run_id = %d AND item = %d AND site = 'heads' AND metric = 'logit_diff' "
                     "ORDER BY layer, head", run, i);
            char *rows = mech_test_sql_rows(db, sql);
            size_t n = n_cells(&r), k = 0;
            float *got = calloc(n, sizeof *got);
            for (char *p = rows, *end; *p && k < n; p = end + 1) got[k++] = strtof(p, &end);
            assert_int_equal(k, n);
            mech_assert_close(got, r.raw, n, 1e-6, 1e-6, run == 2 ? "stored attrib" : "stored exact");
            free(got);
            free(rows);
            mech_patch_result_deinit(&r);
        }
    }
    mech_model_free(m);
    // The attrib run resumes as attrib (nothing left to do).
    out = NULL;
    st = mech_test_cli(&out, NULL, "patch --resume 2 --db %s", db);
    if (st) fail_msg("resume: exit %d: %s", st, out);
    free(out);
    // usage errors
    static const char *const bad[] = {"--method fast", "--method attrib --naive"};
    for (size_t k = 0; k < 2; k++) {
        out = NULL;
        st = mech_test_cli(&out, NULL, "patch --model tests/fixtures/gpt2-tiny/ --pairs %s %s --db %s", pairs, bad[k], db);
        assert_int_equal(st, 2);
        free(out);
    }
    out = NULL;
    assert_int_equal(mech_test_cli(&out, NULL, "patch --resume 2 --method both --db %s", db), 2);
    free(out);
    mech_test_rm_db(db);
    remove(pairs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attrib_exact_when_linear),
        cmocka_unit_test(test_attrib_first_order),
        cmocka_unit_test(test_attrib_batch_independent),
        cmocka_unit_test(test_attrib_same_input),
        cmocka_unit_test(test_attrib_correlates_gpt2_tiny),
        cmocka_unit_test(test_attrib_compiled_reverse),
        cmocka_unit_test(test_attrib_errors),
        cmocka_unit_test(test_cli_method),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
