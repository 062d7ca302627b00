/*
** tests/test_compiler_compile.c: RASP programs compiled into weights agree
** with the reference interpreter on every input (or a large seeded sample),
** including each way Tracr's compiled models are known to diverge from RASP,
** stay within Tracr's sizes, and carry their circuit in the metadata.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mech_rasp_program *parse(const char *src) {
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    if (mech_rasp_parse("test.rasp", src, strlen(src), &p, &err)) fail_msg("%s", err.msg);
    return p;
}

static mech_rasp_compiled *compile_ok(mech_rasp_program *p) {
    mech_err err = {0};
    mech_rasp_compiled *c = NULL;
    if (mech_rasp_compile(p, &c, &err)) fail_msg("%s", err.msg);
    return c;
}

// Compiles and verifies; returns the number of inputs checked.
static size_t verify(const char *src, int *layers, int *d_model) {
    mech_rasp_program *p = parse(src);
    mech_rasp_compiled *c = compile_ok(p);
    mech_err err = {0};
    size_t checked = 0, all = 0;
    if (mech_rasp_verify(p, c->model, 7, &checked, &all, &err)) fail_msg("%s", err.msg);
    if (layers) *layers = c->model->cfg.n_layers;
    if (d_model) *d_model = c->model->cfg.d_model;
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
    return checked;
}

static void test_compile_every_example_verifies(void **state) {
    const char *names[] = {"length", "reverse", "hist", "sort_unique", "sort", "sort_freq", "frac_prevs",
                           "pair_balance", "shift_by", "detect_pattern", "shuffle_dyck1", "shuffle_dyck2",
                           "shuffle_dyck3"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[128];
        snprintf(path, sizeof path, "examples/rasp/%s.rasp", names[i]);
        mech_err err = {0};
        mech_rasp_program *p = NULL;
        if (mech_rasp_load(path, &p, &err)) fail_msg("%s", err.msg);
        mech_rasp_compiled *c = compile_ok(p);
        size_t checked = 0, all = 0;
        if (mech_rasp_verify(p, c->model, 1, &checked, &all, &err)) fail_msg("%s: %s", path, err.msg);
        assert_true(checked >= 126);
        mech_rasp_compiled_free(c);
        mech_rasp_program_free(p);
    }
}

// Sizes Tracr reports for the same programs (reverse: 4 layers, d_model 43;
// sort: 3 layers; frac_prevs: 2 layers, d_model 14).
static void test_compile_no_larger_than_tracr(void **state) {
    int L, C;
    verify("vocab {a, b, c, d}; max_seq_len 5;\n"
           "length = selector_width(select(tokens, tokens, true));\n"
           "opp = length - indices - 1;\n"
           "reverse = aggregate(select(indices, opp, ==), tokens);\n", &L, &C);
    assert_true(L <= 4);
    assert_true(C <= 43);
    verify("vocab {a, b, x}; max_seq_len 5; causal true;\n"
           "isx = numerical(map(t -> 1 if t == \"x\" else 0, tokens));\n"
           "frac = numerical(aggregate(select(indices, indices, <=), isx, 0));\n", &L, &C);
    assert_true(L <= 2);
    assert_true(C <= 14);
    // Tracr's own settings for these examples: layers and parameters.
    struct { const char *file; int layers; long params; } t[] = {
        {"examples/rasp/sort.rasp", 3, 17544},
        {"examples/rasp/pair_balance.rasp", 2, 5442},
        {"examples/rasp/shuffle_dyck2.rasp", 8, 246884},
        {"examples/rasp/shuffle_dyck3.rasp", 9, 725253},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        mech_err err = {0};
        mech_rasp_program *p = NULL;
        if (mech_rasp_load(t[i].file, &p, &err)) fail_msg("%s", err.msg);
        mech_rasp_compiled *c = compile_ok(p);
        if (c->model->cfg.n_layers > t[i].layers || mech_config_n_params(&c->model->cfg) > t[i].params)
            fail_msg("%s: %d layers, %lld parameters; Tracr: %d, %ld", t[i].file, c->model->cfg.n_layers,
                     (long long)mech_config_n_params(&c->model->cfg), t[i].layers, t[i].params);
        mech_rasp_compiled_free(c);
        mech_rasp_program_free(p);
    }
}

// Tracr 1: selector_width is exact only while w(w+1) < 100; here counts reach 16.
static void test_compile_selector_width_large_counts(void **state) {
    size_t n = verify("vocab {a, b}; max_seq_len 16;\n"
                      "hist = selector_width(select(tokens, tokens, ==));\n", NULL, NULL);
    assert_true(n >= 10000);
}

// Tracr 2: a numerical aggregate's value set is every attainable mean, so a
// numerical map after it is discretised on the right grid.
static void test_compile_numerical_aggregate_then_map(void **state) {
    verify("vocab {a, b}; max_seq_len 6; causal true;\n"
           "isa = numerical(map(t -> 1 if t == \"a\" else 0, tokens));\n"
           "frac = numerical(aggregate(select(indices, indices, <=), isa, 0));\n"
           "more = numerical(map(x -> 3 * x - 1 if x > 0.4 else -2, frac));\n"
           "cat = map(x -> x > 0.5, frac);\n"
           "both = zipmap((m, c) -> (c, m > 0), categorical(more), cat);\n", NULL, NULL);
}

// Tracr 3: categorical -> numerical maps keep negative outputs.
static void test_compile_negative_numerical_outputs(void **state) {
    verify("vocab {a, b, c}; max_seq_len 4;\n"
           "v = numerical(map(t -> -2.5 if t == \"a\" else (3 if t == \"b\" else -7), tokens));\n", NULL, NULL);
}

// Tracr 4: a none default stays none and propagates through later maps.
static void test_compile_none_default_propagates(void **state) {
    verify("vocab {a, b, c}; max_seq_len 5;\n"
           "prev = aggregate(select(indices, indices, (k, q) -> k == q - 1), tokens);\n"
           "up = map(t -> t + \"!\", prev);\n"
           "pair = zipmap((x, y) -> x + y, up, tokens);\n", NULL, NULL);
    verify("vocab {a, b, c}; max_seq_len 5;\n"
           "prev = aggregate(select(indices, indices, (k, q) -> k == q - 1), tokens, \"c\");\n"
           "same = selector_width(select(prev, tokens, ==));\n", NULL, NULL);
}

// Tracr 5: head size follows the value space (a 30-token vocab aggregate).
static void test_compile_wide_vocab_aggregate(void **state) {
    char src[600] = "vocab {";
    for (int i = 0; i < 30; i++) snprintf(src + strlen(src), sizeof src - strlen(src), "%s%d", i ? ", " : "", i);
    strcat(src, "}; max_seq_len 3;\n"
                "length = selector_width(select(tokens, tokens, true));\n"
                "rev = aggregate(select(indices, length - indices - 1, ==), tokens);\n");
    size_t n = verify(src, NULL, NULL);
    assert_int_equal(n, 30 + 900 + 27000);
}

// Tracr 6: PAD positions are masked: padding a sequence does not change the
// outputs at its real positions (bidirectional attention, so PAD is a key).
static void test_compile_pad_is_masked(void **state) {
    mech_rasp_program *p = parse("vocab {a, b, c}; max_seq_len 6;\n"
                                 "length = selector_width(select(tokens, tokens, true));\n"
                                 "hist = selector_width(select(tokens, tokens, ==));\n"
                                 "out = zipmap((l, h) -> (l, h), length, hist);\n");
    mech_rasp_compiled *c = compile_ok(p);
    mech_err err = {0};
    mech_run *a, *b;
    assert_int_equal(mech_run_new(c->model, 1, 4, &a, &err), MECH_OK);
    assert_int_equal(mech_run_new(c->model, 1, 7, &b, &err), MECH_OK);
    int32_t plain[4] = {0, 1, 2, 1}, padded[7] = {0, 1, 2, 1, 4, 4, 4}; // PAD = |vocab| + 1
    assert_int_equal(mech_run_forward(a, plain, &err), MECH_OK);
    assert_int_equal(mech_run_forward(b, padded, &err), MECH_OK);
    int V = c->model->cfg.d_vocab;
    mech_assert_close(mech_run_logits(b), mech_run_logits(a), (size_t)4 * V, 1e-4, 0, "logits with padding");
    mech_run_free(a);
    mech_run_free(b);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
}

static void test_compile_selector_combinations(void **state) {
    verify("vocab {a, b, c}; max_seq_len 5;\n"
           "s = select(tokens, tokens, ==) and not select(indices, indices, ==);\n"
           "others = selector_width(s);\n"
           "t = select(indices, indices, <) or select(indices, indices, >);\n"
           "n = selector_width(t);\n", NULL, NULL);
    // over different keys and queries: composites of both (Tracr cannot)
    verify("vocab {a, b, c}; max_seq_len 5;\n"
           "s = select(indices, indices, <) and select(tokens, tokens, ==);\n"
           "n = selector_width(s or select(tokens, tokens, (k, q) -> k == \"c\"));\n"
           "t = not select(tokens, indices, (k, q) -> k == \"a\");\n"
           "m = selector_width(t and select(indices, tokens, (k, q) -> k % 2 == 0));\n"
           "prev_same = aggregate(select(indices, indices, (k, q) -> k == q - 1) and select(tokens, tokens, ==), indices);\n"
           "out = zipmap((x, y, z) -> (x, y, z), n, m, prev_same);\n", NULL, NULL);
}

static void expect_compile_error(const char *src, const char *needle) {
    mech_rasp_program *p = parse(src);
    mech_err err = {0};
    mech_rasp_compiled *c = NULL;
    assert_int_equal(mech_rasp_compile(p, &c, &err), MECH_ERR_TYPE);
    assert_null(c);
    if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
    assert_non_null(strstr(err.msg, "test.rasp:"));
    mech_rasp_program_free(p);
}

static void test_compile_errors_name_the_variable(void **state) {
    expect_compile_error("vocab {1, 2, 3}; max_seq_len 4;\n"
                         "x = numerical(map(t -> t, tokens));\n"
                         "m = numerical(aggregate(select(indices, indices, <=), x, 0));\n",
                         "'m': a numerical aggregate averages values in {0, 1}");
    expect_compile_error("vocab {1, 2}; max_seq_len 3;\n"
                         "x = numerical(map(t -> t, tokens));\n"
                         "y = numerical(map(t -> t + 1, tokens));\n"
                         "z = numerical(zipmap((a, b) -> a * b, x, y));\n",
                         "'z': a zipmap of numerical s-ops must be linear");
    expect_compile_error("vocab {a}; max_seq_len 3; causal true;\n"
                         "l = map(x -> x + 1, length);\n",
                         "length is not known to a causal model");
    expect_compile_error("vocab {1, 2}; max_seq_len 3;\n"
                         "d = map(t -> 6 // (t - 1), tokens);\n",
                         "the lambda fails on (1)");
}

// The metadata: circuit JSON, residual labels as wide as the model.
static void test_compile_metadata(void **state) {
    mech_rasp_program *p = parse("vocab {a, b}; max_seq_len 4;\n"
                                 "hist = selector_width(select(tokens, tokens, ==));\n"
                                 "big = map(h -> h > 1, hist);\n");
    mech_rasp_compiled *c = compile_ok(p);
    const char *labels = NULL, *circuit = NULL;
    for (size_t i = 0; i < c->n_meta; i++) {
        if (!strcmp(c->meta_keys[i], "mech.rasp.residual")) labels = c->meta_values[i];
        if (!strcmp(c->meta_keys[i], "mech.rasp.circuit")) circuit = c->meta_values[i];
    }
    assert_non_null(labels);
    assert_non_null(circuit);
    mech_json *j;
    mech_err err = {0};
    assert_int_equal(mech_json_parse(labels, strlen(labels), &j, &err), MECH_OK);
    assert_int_equal(j->n, (size_t)c->model->cfg.d_model);
    assert_string_equal(j->items[0].str, "bos");
    assert_string_equal(j->items[1].str, "one");
    mech_json_free(j);
    assert_int_equal(mech_json_parse(circuit, strlen(circuit), &j, &err), MECH_OK);
    const mech_json *nodes = mech_json_get(j, "nodes");
    assert_non_null(nodes);
    int found = 0;
    for (size_t i = 0; i < nodes->n; i++) {
        const mech_json *lab = mech_json_get(&nodes->items[i], "label");
        if (!strcmp(lab->str, "hist")) {
            found++;
            assert_non_null(mech_json_get(&nodes->items[i], "head"));
            assert_non_null(mech_json_get(&nodes->items[i], "mlp"));
        }
        if (!strcmp(lab->str, "big")) {
            found++;
            const mech_json *ins = mech_json_get(&nodes->items[i], "inputs");
            assert_int_equal(ins->n, 1);
            assert_string_equal(ins->items[0].str, "hist");
        }
    }
    assert_int_equal(found, 2);
    mech_json_free(j);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_every_example_verifies),
        cmocka_unit_test(test_compile_no_larger_than_tracr),
        cmocka_unit_test(test_compile_selector_width_large_counts),
        cmocka_unit_test(test_compile_numerical_aggregate_then_map),
        cmocka_unit_test(test_compile_negative_numerical_outputs),
        cmocka_unit_test(test_compile_none_default_propagates),
        cmocka_unit_test(test_compile_wide_vocab_aggregate),
        cmocka_unit_test(test_compile_pad_is_masked),
        cmocka_unit_test(test_compile_selector_combinations),
        cmocka_unit_test(test_compile_errors_name_the_variable),
        cmocka_unit_test(test_compile_metadata),
    };
    return cmocka_run_group_tests_name("compiler_compile", tests, NULL, NULL);
}
