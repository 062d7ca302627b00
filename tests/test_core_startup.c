/*
** tests/test_core_startup.c: what `mech run` does to start fast must not
** change a result: logits restricted to the rows asked for equal those rows
** of the full product bit for bit (padded batches included), and `mech
** run`'s top-k printout is the same
** whether it computes one row (no --logits) or every row (--logits).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 3, T = 9 };

static mech_model *small_model(void) {
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 2;
    c.n_heads = 2;
    c.d_model = 32;
    c.d_head = 16;
    c.d_mlp = 64;
    c.n_ctx = 16;
    c.d_vocab = 777; // not a multiple of any kernel's panel width: the masked edge runs too
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_random(&c, 5, &m, &err)) fail_msg("%s", err.msg);
    return m;
}

static void fill_ids(int32_t *ids, int V) {
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)((31u * (unsigned)i + 7u) % (unsigned)V);
}

// Row 0 full, row 1 right-padded (5 real tokens), row 2 left-padded (4).
static void fill_mask(uint8_t *mask) {
    for (int t = 0; t < T; t++) {
        mask[0 * T + t] = 1;
        mask[1 * T + t] = t < 5;
        mask[2 * T + t] = t >= T - 4;
    }
}

// Full (B, T, V) logits of a fresh run (mask may be NULL); owned copy.
static float *full_logits(mech_model *m, const int32_t *ids, const uint8_t *mask) {
    mech_err err = {0};
    mech_run *r = NULL;
    size_t V = (size_t)m->cfg.d_vocab;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_set_mask(r, mask, &err) || mech_run_forward(r, ids, &err))
        fail_msg("%s", err.msg);
    float *out = malloc((size_t)B * T * V * sizeof *out);
    memcpy(out, mech_run_logits(r), (size_t)B * T * V * sizeof *out);
    mech_run_free(r);
    return out;
}

static void check_rows(int masked) {
    mech_model *m = small_model();
    size_t V = (size_t)m->cfg.d_vocab;
    int32_t ids[B * T];
    uint8_t mask[B * T];
    fill_ids(ids, (int)V);
    fill_mask(mask);
    const uint8_t *mk = masked ? mask : NULL;
    float *full = full_logits(m, ids, mk);
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err) || mech_run_set_mask(r, mk, &err)) fail_msg("%s", err.msg);

    // each sequence's last real token: (B, 1, V)
    assert_int_equal(mech_run_set_logits_rows(r, MECH_LOGITS_LAST, 1, &err), MECH_OK);
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    const float *lg = mech_run_logits(r);
    assert_non_null(lg);
    int last[B] = {T - 1, masked ? 4 : T - 1, T - 1};
    for (int b = 0; b < B; b++)
        assert_memory_equal(lg + (size_t)b * V, full + ((size_t)b * T + last[b]) * V, V * sizeof(float));

    // positions 2..5 of every sequence: (B, 4, V), padding rows read 0
    assert_int_equal(mech_run_set_logits_rows(r, 2, 4, &err), MECH_OK);
    assert_null(mech_run_logits(r)); // nothing computed under the new rows yet
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    lg = mech_run_logits(r);
    for (int b = 0; b < B; b++)
        for (int p = 2; p < 6; p++) {
            const float *got = lg + ((size_t)b * 4 + (size_t)(p - 2)) * V, *want = full + ((size_t)b * T + p) * V;
            assert_memory_equal(got, want, V * sizeof(float));
            if (masked && !mask[b * T + p]) assert_true(got[0] == 0.0f && got[V - 1] == 0.0f);
        }
    if (masked) assert_true(lg[((size_t)2 * 4 + 0) * V] == 0.0f); // row 2, position 2: padding

    // back to every row: the whole product again
    assert_int_equal(mech_run_set_logits_rows(r, 0, 0, &err), MECH_OK);
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    assert_memory_equal(mech_run_logits(r), full, (size_t)B * T * V * sizeof(float));
    mech_run_free(r);
    free(full);
    mech_model_free(m);
}

static void test_logits_rows_equal_full_rows(void **state) {
    (void)state;
    check_rows(0);
}

static void test_logits_rows_equal_full_rows_padded(void **state) {
    (void)state;
    check_rows(1);
}

static void test_logits_rows_bad_ranges(void **state) {
    (void)state;
    mech_model *m = small_model();
    mech_err err = {0};
    mech_run *r = NULL;
    if (mech_run_new(m, B, T, &r, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_run_set_logits_rows(r, MECH_LOGITS_LAST, 2, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_run_set_logits_rows(r, -2, 1, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_run_set_logits_rows(r, 5, T - 4, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_run_set_logits_rows(r, 0, -1, &err), MECH_ERR_RANGE);
    assert_int_equal(mech_run_set_logits_rows(r, 5, T - 5, &err), MECH_OK);
    mech_run_free(r);
    mech_model_free(m);
}

// `mech run` without --logits computes one row per sequence; with --logits
// every row. The printed top-k must be the same, for one prompt and for a
// padded batch of several.
static void test_cli_run_top_k_same_with_and_without_logits(void **state) {
    (void)state;
    char model[256], npy[256]; // mech_test_tmp's buffer is reused
    snprintf(model, sizeof model, "%s", mech_test_tmp("startup-tiny.safetensors"));
    snprintf(npy, sizeof npy, "%s", mech_test_tmp("startup-logits.npy"));
    char *out = NULL;
    assert_int_equal(mech_test_cli(&out, NULL, "init -o %s --preset tiny --seed 4", model), 0);
    free(out);
    const char *cases[] = {
        "--prompt 'Hello'",
        "--prompt 'The quick brown fox jumps over the lazy dog.' --top-k 12",
        "--prompt 'a' --prompt 'one two three four five six' --prompt 'Mechanistic interpretability'",
        "--prompt 'short' --prompt 'a much longer second prompt here' --padding-side left",
        "--ids 5,17,42,99,1000,50256",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *one = NULL, *all = NULL, *e1 = NULL, *e2 = NULL;
        int rc1 = mech_test_cli(&one, &e1, "run --model %s %s", model, cases[i]);
        int rc2 = mech_test_cli(&all, &e2, "run --model %s %s --logits %s", model, cases[i], npy);
        if (rc1 != 0 || rc2 != 0) fail_msg("case %zu: %s / %s", i, e1, e2);
        assert_non_null(strstr(one, "  1. "));
        assert_string_equal(one, all);
        free(one);
        free(all);
        free(e1);
        free(e2);
    }
    remove(npy);
    remove(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_rows_equal_full_rows),
        cmocka_unit_test(test_logits_rows_equal_full_rows_padded),
        cmocka_unit_test(test_logits_rows_bad_ranges),
        cmocka_unit_test(test_cli_run_top_k_same_with_and_without_logits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
