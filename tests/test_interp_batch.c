/*
** tests/test_interp_batch.c: the analyses on padded batches (logit lens, head
** scores, direct logit attribution: each sequence's values equal those of
** the sequence run alone, on both padding sides), and exact direct logit
** attribution on a LayerNorm-free model.
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

enum { NB = 3, V = 61 };

static mech_model *model(float eps, uint64_t seed) {
    mech_config c = {.n_layers = 2, .n_heads = 2, .d_model = 16, .d_head = 8, .d_mlp = 24, .n_ctx = 32, .d_vocab = V,
                     .act = MECH_ACT_GELU_NEW, .norm = MECH_NORM_LAYERNORM, .causal = 1, .ln_eps = eps,
                     .tied_unembed = 1};
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, seed, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static mech_run *run_on(mech_model *m, int B, int T, const int32_t *ids, const uint8_t *mask) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_set_mask(r, mask, &err) || mech_lens_cache(r, &err) ||
        mech_run_forward(r, ids, &err))
        fail_msg("%s", err.msg);
    return r;
}

static int same_row(const mech_lens_row *a, const mech_lens_row *b) {
    if (a->layer != b->layer || a->pos != b->pos || a->k != b->k || a->kl != b->kl || a->entropy != b->entropy ||
        a->target != b->target || a->target_prob != b->target_prob || a->target_rank != b->target_rank)
        return 0;
    for (int j = 0; j < a->k; j++)
        if (a->top_ids[j] != b->top_ids[j] || a->top_probs[j] != b->top_probs[j]) return 0;
    return 1;
}

static void test_padded_analyses_equal_single_runs(void **state) {
    mech_model *m = model(1e-5f, 3);
    int lens[NB] = {4, 9, 2};
    int32_t s0[4] = {5, 6, 5, 6}, s1[9] = {1, 2, 3, 4, 1, 2, 3, 4, 1}, s2[2] = {7, 7};
    const int32_t *seqs[NB] = {s0, s1, s2};
    int L = m->cfg.n_layers, NH = m->cfg.n_heads;
    mech_err err = {0};
    for (int side = 0; side < 2; side++) {
        int32_t *ids = NULL;
        uint8_t *mask = NULL;
        int T = 0;
        assert_int_equal(mech_batch_pad(seqs, lens, NB, 60, (mech_pad_side)side, &ids, &mask, &T, &err), MECH_OK);
        mech_run *r = run_on(m, NB, T, ids, mask);
        // logit lens, with a target at every padded position
        int32_t targets[NB * 9];
        for (int i = 0; i < NB * T; i++) targets[i] = (i * 13) % V;
        mech_lens_row *rows = NULL;
        size_t n_rows = 0;
        assert_int_equal(mech_lens_logit(m, r, 3, targets, &rows, &n_rows, &err), MECH_OK);
        assert_int_equal(n_rows, (size_t)(L + 1) * (4 + 9 + 2));
        // head scores of the batch: the mean of the single runs'
        double sc[3][8], one_sc[3][8] = {{0}};
        for (int k = 0; k < 3; k++)
            assert_int_equal(mech_heads_score(m, r, ids, (mech_head_kind)k, MECH_HEAD_MUL, 1, 0, sc[k], &err), MECH_OK);
        // attribution at each sequence's last and first token
        int32_t ans[NB] = {1, 2, 3}, wr[NB] = {4, 5, 6};
        mech_dla *d = NULL, *d0 = NULL;
        assert_int_equal(mech_lens_dla(m, r, -1, ans, wr, &d, &err), MECH_OK);
        assert_int_equal(mech_lens_dla(m, r, 0, ans, wr, &d0, &err), MECH_OK);
        size_t off = 0;
        for (int b = 0; b < NB; b++) {
            mech_run *one = run_on(m, 1, lens[b], seqs[b], NULL);
            int start, len;
            mech_run_row(r, b, &start, &len);
            int32_t tg[9];
            for (int t = 0; t < lens[b]; t++) tg[t] = targets[b * T + start + t];
            mech_lens_row *orows = NULL;
            size_t on = 0;
            assert_int_equal(mech_lens_logit(m, one, 3, tg, &orows, &on, &err), MECH_OK);
            for (int l = 0; l <= L; l++)
                for (int t = 0; t < lens[b]; t++) {
                    const mech_lens_row *a = &rows[(size_t)l * (4 + 9 + 2) + off + t], *o = &orows[(size_t)l * lens[b] + t];
                    assert_int_equal(a->batch, b);
                    if (!same_row(a, o)) fail_msg("side %d seq %d layer %d pos %d: lens row differs", side, b, l, t);
                }
            mech_free(orows);
            off += (size_t)lens[b];
            for (int k = 0; k < 3; k++) {
                double s1k[8];
                assert_int_equal(mech_heads_score(m, one, seqs[b], (mech_head_kind)k, MECH_HEAD_MUL, 1, 0, s1k, &err),
                                 MECH_OK);
                for (int i = 0; i < L * NH; i++) one_sc[k][i] += s1k[i] / NB;
            }
            mech_dla *e = NULL, *e0 = NULL;
            assert_int_equal(mech_lens_dla(m, one, -1, ans + b, wr + b, &e, &err), MECH_OK);
            assert_int_equal(mech_lens_dla(m, one, 0, ans + b, wr + b, &e0, &err), MECH_OK);
            for (int c = 0; c < d->n_comp; c++) {
                if (d->attr[(size_t)c * NB + b] != e->attr[c] || d0->attr[(size_t)c * NB + b] != e0->attr[c])
                    fail_msg("side %d seq %d: attribution of %s differs", side, b, d->labels[c]);
            }
            assert_true(d->logit[b] == e->logit[0] && d->bias[b] == e->bias[0]);
            for (int l = 0; l <= L; l++) assert_true(d->accum[(size_t)l * NB + b] == e->accum[l]);
            mech_dla_free(e);
            mech_dla_free(e0);
            mech_run_free(one);
        }
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < L * NH; i++)
                if (fabs(sc[k][i] - one_sc[k][i]) > 1e-12)
                    fail_msg("side %d kind %d head %d: batch %.17g, singles %.17g", side, k, i, sc[k][i], one_sc[k][i]);
        // a position past a sequence's own end is refused, naming it
        mech_dla *past = NULL;
        assert_int_equal(mech_lens_dla(m, r, 3, ans, wr, &past, &err), MECH_ERR_RANGE);
        assert_null(past);
        assert_non_null(strstr(err.msg, "sequence 3 of 2 tokens"));
        mech_dla_free(d);
        mech_dla_free(d0);
        mech_free(rows);
        mech_run_free(r);
        mech_free(ids);
        mech_free(mask);
    }
    mech_model_free(m);
}

// Zeroes blocks.1.hook_mlp_out: changes the final residual (and so the
// cached ln_final scale) but none of the earlier components.
static int zero_fn(mech_tensor *t, int layer, void *user) {
    memset(t->data, 0, mech_tensor_numel(t) * sizeof(float));
    return 0;
}

static mech_dla *dla(mech_model *m, const int32_t *ids, int ablate, mech_dla_ln mode, mech_status want) {
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, 1, 6, &r, &err) || mech_lens_cache(r, &err) ||
        (ablate && mech_run_hook(r, "blocks.1.hook_mlp_out", zero_fn, NULL, &err)) || mech_run_forward(r, ids, &err))
        fail_msg("%s", err.msg);
    int32_t a = 7, w = 9;
    mech_dla *d = NULL;
    assert_int_equal(mech_lens_dla_ex(m, r, -1, &a, &w, mode, &d, &err), want);
    if (want) assert_non_null(strstr(err.msg, "LayerNorm-free"));
    mech_run_free(r);
    return d;
}

// LayerNorm-free (eps 1e12, LayerNorm weights 1e6): exact attribution is
// linear: ablating a later component leaves every other component's value
// unchanged, and the components still sum to the logit difference. With a
// real LayerNorm the cached scale moves them all, and exact is refused.
static void test_dla_exact_on_layernorm_free_model(void **state) {
    mech_model *m = model(1e12f, 4);
    for (int l = 0; l < 2; l++)
        for (int k = 1; k <= 2; k++) {
            char name[64];
            snprintf(name, sizeof name, "h.%d.ln_%d.weight", l, k);
            float *w = mech_model_param(m, name);
            for (int i = 0; i < 16; i++) w[i] = 1e6f;
        }
    float *fw = mech_model_param(m, "ln_f.weight");
    for (int i = 0; i < 16; i++) fw[i] = 1e6f * (1 + 0.1f * (float)(i % 4));
    int32_t ids[6] = {3, 1, 4, 1, 5, 9};
    mech_dla *full = dla(m, ids, 0, MECH_DLA_LN_EXACT, MECH_OK), *abl = dla(m, ids, 1, MECH_DLA_LN_EXACT, MECH_OK);
    double sum = full->bias[0];
    int changed = 0;
    for (int c = 0; c < full->n_comp; c++) {
        sum += full->attr[c];
        if (!strcmp(full->labels[c], "L1.mlp")) {
            assert_true(abl->attr[c] == 0);
            changed = full->attr[c] != 0;
        } else if (full->attr[c] != abl->attr[c]) {
            fail_msg("exact: %s changed from %.9g to %.9g when L1.mlp was ablated", full->labels[c], full->attr[c],
                     abl->attr[c]);
        }
    }
    assert_true(changed);
    assert_true(fabs(sum - full->logit[0]) < 1e-4 * (1 + fabs(full->logit[0])));
    mech_dla_free(full);
    mech_dla_free(abl);
    // the cached scale is sqrt(eps) to 1e-9 here, so cached agrees with exact
    mech_dla *cached = dla(m, ids, 0, MECH_DLA_LN_CACHED, MECH_OK), *exact = dla(m, ids, 0, MECH_DLA_LN_EXACT, MECH_OK);
    for (int c = 0; c < cached->n_comp; c++)
        assert_true(fabs(cached->attr[c] - exact->attr[c]) <= 1e-6 * (1e-3 + fabs(exact->attr[c])));
    mech_dla_free(cached);
    mech_dla_free(exact);
    mech_model_free(m);

    mech_model *g = model(1e-5f, 4);
    assert_null(dla(g, ids, 0, MECH_DLA_LN_EXACT, MECH_ERR_ARG));
    mech_dla *c0 = dla(g, ids, 0, MECH_DLA_LN_CACHED, MECH_OK), *c1 = dla(g, ids, 1, MECH_DLA_LN_CACHED, MECH_OK);
    assert_true(c0->attr[0] != c1->attr[0]); // the embedding's share moved with the scale
    mech_dla_free(c0);
    mech_dla_free(c1);
    mech_model_free(g);
}

// The GPT-2 datasets have no BOS (as the ACDC reference's); prepending puts
// <|endoftext|> in front of both prompts of every pair and changes nothing else.
static void test_datasets_prepend_bos(void **state) {
    mech_err err = {0};
    mech_tokenizer *tok = NULL;
    assert_int_equal(mech_tokenizer_gpt2(&tok, &err), MECH_OK);
    for (int task = 0; task < 3; task++) {
        mech_pair *a = NULL, *b = NULL;
        if (task == 0) {
            assert_int_equal(mech_dataset_ioi(tok, 4, 9, &a, &err), MECH_OK);
            assert_int_equal(mech_dataset_ioi(tok, 4, 9, &b, &err), MECH_OK);
        } else if (task == 1) {
            assert_int_equal(mech_dataset_greater_than(tok, 4, 9, &a, &err), MECH_OK);
            assert_int_equal(mech_dataset_greater_than(tok, 4, 9, &b, &err), MECH_OK);
        } else {
            assert_int_equal(mech_dataset_induction(50257, 4, 5, 9, 100, -1, &a, &err), MECH_OK);
            assert_int_equal(mech_dataset_induction(50257, 4, 5, 9, 100, -1, &b, &err), MECH_OK);
        }
        for (int i = 0; i < 4; i++) assert_true(a[i].clean[0] != 50256);
        assert_int_equal(mech_pairs_prepend_bos(b, 4, 50256, &err), MECH_OK);
        for (int i = 0; i < 4; i++) {
            assert_int_equal(b[i].n, a[i].n + 1);
            assert_int_equal(b[i].clean[0], 50256);
            assert_int_equal(b[i].corrupt[0], 50256);
            assert_memory_equal(b[i].clean + 1, a[i].clean, (size_t)a[i].n * sizeof(int32_t));
            assert_memory_equal(b[i].corrupt + 1, a[i].corrupt, (size_t)a[i].n * sizeof(int32_t));
            assert_int_equal(b[i].answer, a[i].answer);
            assert_int_equal(b[i].wrong, a[i].wrong);
        }
        assert_int_equal(mech_pairs_prepend_bos(b, 4, -1, &err), MECH_ERR_ARG);
        assert_int_equal(b[0].n, a[0].n + 1); // a refusal changes nothing
        mech_pairs_free(a, 4);
        mech_pairs_free(b, 4);
    }
    mech_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_padded_analyses_equal_single_runs),
        cmocka_unit_test(test_dla_exact_on_layernorm_free_model),
        cmocka_unit_test(test_datasets_prepend_bos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
