/*
** tests/test_compiler_limits.c: hostile RASP programs. Every recursive walk
** over what the user wrote (parser, lowering with defs expanded, lambda
** evaluation and printing, value-set inference, the compiler's selector
** walks) works at its depth bound and refuses one level more with
** FILE:LINE:COL; the compiler refuses models and verifications above its
** size limits before it allocates or loops; every allocation failure of a
** small compile is a clean error; selector_width is exact at the largest
** max_seq_len.
**
** The programs are generated here, so the bound comes from the private
** header (compiler/rasp_int.h) rather than being copied.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "compiler/rasp_int.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N RASP_MAX_DEPTH

static const char *const HEAD = "vocab {a, b};\nmax_seq_len 3;\n";

static void rep(mech_buf *b, const char *s, int k) {
    for (int i = 0; i < k; i++) mech_buf_puts(b, s);
}

// Parses src; on success runs it on "a b" and returns the output JSON, else
// "error: <message>" (owned). *st gets the status.
static char *run(const char *src, mech_status *st) {
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_buf out = {0};
    mech_status s = mech_rasp_parse("t.rasp", src, strlen(src), &p, &err);
    if (!s) {
        mech_rasp_value in[2] = {{.type = MECH_RASP_STR, .n = 1, .s = "a"}, {.type = MECH_RASP_STR, .n = 1, .s = "b"}};
        mech_rasp_value *res = NULL;
        s = mech_rasp_eval(p, in, 2, &res, &err);
        if (!s) mech_rasp_values_json(&out, res, 2);
        mech_free(res);
    }
    if (s) mech_buf_printf(&out, "error: %s", err.msg);
    mech_rasp_program_free(p);
    *st = s;
    return out.data;
}

static void expect_ok(const mech_buf *src, const char *want) {
    mech_status st;
    char *got = run(src->data, &st);
    if (st || strcmp(got, want)) fail_msg("expected %s, got %s", want, got);
    free(got);
}

// The first line of the message must be exactly `first`.
static void expect_error(const mech_buf *src, mech_status code, const char *first) {
    mech_status st;
    char *got = run(src->data, &st);
    char *nl = strchr(got, '\n');
    if (nl) *nl = 0;
    if (st != code || strncmp(got, "error: ", 7) || strcmp(got + 7, first)) fail_msg("expected status %d and\n  %s\ngot status %d and\n  %s", code, first, st, got);
    free(got);
}

// Compiles and verifies src (every input: the programs here are small).
static void compile_verify(const char *src) {
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    if (mech_rasp_parse("t.rasp", src, strlen(src), &p, &err)) fail_msg("%s", err.msg);
    if (mech_rasp_compile(p, &c, &err)) fail_msg("%s", err.msg);
    size_t checked = 0, all = 0;
    if (mech_rasp_verify(p, c->model, 1, &checked, &all, &err)) fail_msg("%s", err.msg);
    assert_true(all);
    assert_int_equal(checked, 2 + 4 + 8);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
}

// ---------------------------------------------------------------------------
// Depth bounds

// Parentheses: the statement's expression is level 1, each parenthesis one
// more; the parser's recursion stops at the token that would go deeper.
static void test_limits_parentheses(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = ");
    rep(&b, "(", N - 1);
    mech_buf_puts(&b, "indices");
    rep(&b, ")", N - 1);
    mech_buf_puts(&b, ";\n");
    expect_ok(&b, "[0,1]");
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = ");
    rep(&b, "(", N);
    mech_buf_puts(&b, "indices");
    rep(&b, ")", N);
    mech_buf_puts(&b, ";\n");
    mech_buf_printf(&want, "t.rasp:3:%d: error: expression nested deeper than %d", 5 + N, N);
    expect_error(&b, MECH_ERR_PARSE, want.data);
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// A flat sum is a chain: N terms are a tree of height N (lowered, evaluated
// as maps cut every RASP_PENDING_SIZE terms); N + 1 terms are refused at the
// N-th '+'.
static void test_limits_long_sum(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0}, res = {0};
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = indices");
    rep(&b, " + indices", N - 1);
    mech_buf_puts(&b, ";\n");
    mech_buf_printf(&res, "[0,%d]", N);
    expect_ok(&b, res.data);
    // the compiler's walks over the same program (value sets, emission)
    compile_verify(b.data);
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = indices");
    rep(&b, " + indices", N);
    mech_buf_puts(&b, ";\n");
    mech_buf_printf(&want, "t.rasp:3:%d: error: expression nested deeper than %d", 13 + 10 * (N - 1), N);
    expect_error(&b, MECH_ERR_PARSE, want.data);
    mech_buf_free(&b);
    mech_buf_free(&want);
    mech_buf_free(&res);
}

// Chained `and`s of selectors in one expression: selector_width(...) is a
// level, the chain of k selectors k levels.
static void test_limits_and_chain(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "s = select(indices, indices, <=);\nw = selector_width(s");
    rep(&b, " and s", N - 2);
    mech_buf_puts(&b, ");\n");
    expect_ok(&b, "[1,2]");
    compile_verify(b.data);
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "s = select(indices, indices, <=);\nw = selector_width(s");
    rep(&b, " and s", N - 1);
    mech_buf_puts(&b, ");\n");
    // the call completes a tree past the bound
    mech_buf_printf(&want, "t.rasp:4:5: error: expression nested deeper than %d", N);
    expect_error(&b, MECH_ERR_PARSE, want.data);
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// Selectors combined across statements (no expression is deep): the IR's
// chain of and-nodes is bounded too, since the compiler walks it.
static void test_limits_selector_chain_across_statements(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    for (int k = N - 1; k <= N; k++) {
        b.len = 0;
        mech_buf_puts(&b, HEAD);
        mech_buf_puts(&b, "s0 = select(indices, indices, <=);\n");
        for (int i = 1; i <= k; i++) mech_buf_printf(&b, "s%d = s%d and s0;\n", i, i - 1);
        mech_buf_printf(&b, "w = selector_width(s%d);\n", k);
        if (k == N - 1) {
            expect_ok(&b, "[1,2]");
            compile_verify(b.data);
        } else {
            // s1 is line 4; s_k's `and` is at column 5 + the digits of k - 1 + 2
            char name[16];
            int col = snprintf(name, sizeof name, "s%d = s%d", k, k - 1) + 2;
            mech_buf_printf(&want, "t.rasp:%d:%d: error: selectors combined with and/or/not nested deeper than %d",
                            3 + k, col, N);
            expect_error(&b, MECH_ERR_TYPE, want.data);
        }
    }
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// Chained indices inside a lambda: evaluated by the interpreter at every
// position, printed by --dag, applied to every value by the compiler.
// map(...) and the lambda are a level each, t is one, each [0] one more.
static void test_limits_index_chain_in_lambda(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = map(t -> t");
    rep(&b, "[0]", N - 3);
    mech_buf_puts(&b, ", tokens);\n");
    expect_ok(&b, "[\"a\",\"b\"]");
    compile_verify(b.data);
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    assert_int_equal(mech_rasp_parse("t.rasp", b.data, b.len, &p, &err), MECH_OK);
    mech_buf dag = {0};
    mech_rasp_program_dump(&dag, p);
    int count = 0;
    for (const char *s = dag.data; (s = strstr(s, "[0]")); s++) count++;
    assert_int_equal(count, N - 3);
    mech_buf_free(&dag);
    mech_rasp_program_free(p);
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = map(t -> t");
    rep(&b, "[0]", N - 2);
    mech_buf_puts(&b, ", tokens);\n");
    mech_buf_printf(&want, "t.rasp:3:5: error: expression nested deeper than %d", N);
    expect_error(&b, MECH_ERR_PARSE, want.data);
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// Nested (not chained) indices: (0,)[(0,)[...[0]...]] + indices.
static void test_limits_nested_index(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    // x = indices + I_k where I_0 = 0 and I_k = (0,)[I_{k-1}] (the tuple is
    // 2 levels): I_k is k + 2 levels, the sum k + 3
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = indices + ");
    rep(&b, "(0,)[", N - 3);
    mech_buf_puts(&b, "0");
    rep(&b, "]", N - 3);
    mech_buf_puts(&b, ";\n");
    expect_ok(&b, "[0,1]");
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = indices + ");
    rep(&b, "(0,)[", N - 2);
    mech_buf_puts(&b, "0");
    rep(&b, "]", N - 2);
    mech_buf_puts(&b, ";\n");
    // the '+' completes the tree past the bound
    mech_buf_printf(&want, "t.rasp:3:%d: error: expression nested deeper than %d", 13, N);
    expect_error(&b, MECH_ERR_PARSE, want.data);
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// Nested lambdas, unary operators and `not`s recurse in the parser.
static void test_limits_lambdas_and_unary(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    // at the bound the parser accepts them; lowering then rejects nested lambdas
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = map(");
    rep(&b, "t -> ", N - 2);
    mech_buf_puts(&b, "t, tokens);\n");
    expect_error(&b, MECH_ERR_TYPE, "t.rasp:3:14: error: lambdas cannot be nested");
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = map(");
    rep(&b, "t -> ", N - 1);
    mech_buf_puts(&b, "t, tokens);\n");
    mech_buf_printf(&want, "t.rasp:3:%d: error: expression nested deeper than %d", 9 + 5 * (N - 1), N);
    expect_error(&b, MECH_ERR_PARSE, want.data);
    // N - 1 minus signs and a number: height N, folded to a constant
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = indices * 0 + ");
    rep(&b, "- ", N - 2);
    mech_buf_puts(&b, "1;\n");
    expect_ok(&b, N % 2 ? "[-1,-1]" : "[1,1]");
    b.len = 0;
    mech_buf_puts(&b, HEAD);
    mech_buf_puts(&b, "x = ");
    rep(&b, "not ", N);
    mech_buf_puts(&b, "true;\n");
    want.len = 0;
    mech_buf_printf(&want, "t.rasp:3:%d: error: expression nested deeper than %d", 5 + 4 * N, N);
    expect_error(&b, MECH_ERR_PARSE, want.data);
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// A def's body is lowered inside the expression that calls it: the
// recursion with defs expanded is bounded as well.
static void test_limits_defs_expanded(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    // y = g(indices): g's body calls f (levels 1, 2), f's body is M minus
    // signs over x (levels 3 .. M + 3).
    for (int M = N - 3; M <= N - 2; M++) {
        b.len = 0;
        mech_buf_puts(&b, HEAD);
        mech_buf_puts(&b, "def f(x) { return ");
        rep(&b, "-", M);
        mech_buf_puts(&b, "x; }\ndef g(x) { return f(x); }\ny = g(indices);\n");
        if (M == N - 3) {
            expect_ok(&b, M % 2 ? "[0,-1]" : "[0,1]");
        } else {
            mech_buf_printf(&want, "t.rasp:3:%d: error: expression nested deeper than %d once the defs it calls are expanded",
                            19 + M, N);
            expect_error(&b, MECH_ERR_TYPE, want.data);
        }
    }
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// ---------------------------------------------------------------------------
// Allocation failures

// Parses, compiles and verifies src with allocation n failing (0: none).
// Returns the status of the first step that failed; *fired says whether
// the armed allocation was reached.
static mech_status compile_with_failure(const char *src, long n, int *fired, mech_err *err) {
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    mech_alloc_fail_after(n);
    mech_status st = mech_rasp_parse("t.rasp", src, strlen(src), &p, err);
    if (st) assert_null(p);
    if (!st && (st = mech_rasp_compile(p, &c, err))) assert_null(c);
    else if (!st) {
        size_t checked = 0, all = 0;
        st = mech_rasp_verify(p, c->model, 1, &checked, &all, err);
        if (!st && checked != 2 + 4 + 8) st = mech_err_set(err, MECH_ERR_RANGE, "checked %zu inputs", checked);
    }
    *fired = n > 0 && mech_alloc_fail_after(0) == 0;
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
    return st;
}

// Every allocation of a small compile (parse, value sets, selectors over
// different keys and queries, and/or composites, blocks, assembly,
// metadata, verification) fails in turn: each is a clean out-of-memory
// error (no crash, and no leak under LeakSanitizer), or a fallback the
// library has for it (the matrix kernels compute without their packing
// buffer) after which verification still passes, until the compile no
// longer reaches the armed allocation.
static void test_limits_allocation_failures(void **state) {
    (void)state;
    const char *src = "vocab {a, b};\nmax_seq_len 3;\n"
                      "s = select(tokens, tokens, ==) and select(indices, indices, <=);\n"
                      "w = selector_width(s or not select(tokens, indices, ==));\n"
                      "f = numerical(aggregate(select(indices, indices, <), numerical(tokens == \"a\"), 0));\n"
                      "g = map(x -> x + 1, w);\n"
                      "h = map(x -> x > 0, f);\n"
                      "o = aggregate(select(indices, g, ==), tokens) if h else tokens;\n";
    mech_err err = {0};
    int fired = 0;
    assert_int_equal(compile_with_failure(src, 0, &fired, &err), MECH_OK);
    long n = 1, nomem = 0;
    for (;; n++) {
        err = (mech_err){0};
        mech_status st = compile_with_failure(src, n, &fired, &err);
        if (!fired) {
            if (st) fail_msg("allocation %ld was not reached, yet: %s", n, err.msg);
            break;
        }
        if (st == MECH_OK) continue;
        if (st != MECH_ERR_NOMEM) fail_msg("allocation %ld failed: status %d, %s", n, st, err.msg);
        if (!strstr(err.msg, "out of memory")) fail_msg("allocation %ld failed: %s", n, err.msg);
        nomem++;
    }
    // the whole pipeline was walked, and most failures are errors
    assert_true(n > 300);
    assert_true(nomem > n / 2);
}

// A numerical zipmap of categorical s-ops (its MLP writes one numerical
// dimension) used to crash the block constructor.
static void test_limits_numerical_zipmap_of_categoricals(void **state) {
    (void)state;
    compile_verify("vocab {a, b};\nmax_seq_len 3;\n"
                   "x = numerical(zipmap((t, i) -> i + (1 if t == \"a\" else 0), tokens, indices));\n");
}

// ---------------------------------------------------------------------------
// Size limits: refused from the plan, before blocks or weights exist

// Compiles src with lim; returns the status, err the message and *secs the
// time it took.
static mech_status compile_lim(const char *src, const mech_rasp_limits *lim, mech_err *err, double *secs) {
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    mech_status st = mech_rasp_parse("t.rasp", src, strlen(src), &p, err);
    if (st) fail_msg("%s", err->msg);
    double t0 = mech_now();
    st = mech_rasp_compile_limited(p, lim, &c, err);
    if (secs) *secs = mech_now() - t0;
    if (st) assert_null(c);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
    return st;
}

// Parameters of a compiled model (no LayerNorm, untied unembedding, ReLU
// MLPs), counted here from the shape.
static double params_of(double L, double C, double NH, double HS, double M, double V, double T) {
    double A = NH * HS;
    return 2 * V * C + T * C + L * (C * 3 * A + 3 * A + A * C + C + C * M + M + M * C + C);
}

static void expect_refusal(const char *src, mech_status code, const char *needle) {
    mech_err err = {0};
    double secs = 0;
    mech_status st = compile_lim(src, NULL, &err, &secs);
    if (st != code || !strstr(err.msg, needle))
        fail_msg("expected status %d and a message with\n  %s\ngot status %d:\n  %s", code, needle, st, err.msg);
    // refused before the expensive work (the sizes here would take minutes or
    // tens of GB to build)
    if (secs > 5) fail_msg("refusing took %.1f s: %s", secs, err.msg);
}

// The vocabulary of 30,000 integers with one map: 28.8 GB of
// weights. Refused, saying the size, the shape and the option.
static void test_limits_large_vocab(void **state) {
    (void)state;
    mech_buf b = {0}, want = {0};
    mech_buf_puts(&b, "vocab {");
    for (int i = 0; i < 30000; i++) mech_buf_printf(&b, "%s%d", i ? ", " : "", i);
    mech_buf_puts(&b, "};\nmax_seq_len 5;\nx = map(t -> t + 1, tokens);\n");
    // residual: bos, one, 30,000 token values, 30,000 values of x; MLP: one
    // unit per token value; vocab: BOS, 30,000 tokens, PAD
    double P = params_of(1, 60002, 1, 1, 30000, 30002, 6);
    mech_buf_printf(&want, "t.rasp: the compiled model would have %.0f parameters (%.1f GB as float32; 1 layer, 1 head "
                    "of width 1, d_model 60002, d_mlp 30000, vocab 30002, context 6), more than the limit of %d "
                    "(mech compile --max-params raises it)", P, P * 4 / 1e9, MECH_RASP_MAX_PARAMS);
    expect_refusal(b.data, MECH_ERR_RANGE, want.data);
    // 300,000 values: wider than any model's residual stream
    b.len = 0;
    mech_buf_puts(&b, "vocab {");
    for (int i = 0; i < 300000; i++) mech_buf_printf(&b, "%s%d", i ? ", " : "", i);
    mech_buf_puts(&b, "};\nmax_seq_len 5;\nx = tokens;\n");
    expect_refusal(b.data, MECH_ERR_RANGE, "beyond what mech can hold: d_model = 300002, expected 1..65536");
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// Long chains: each map is an MLP sublayer, each aggregate an attention
// sublayer after the last; 5,000 of them need 5,000 layers. The issue's
// 200,000-step chains stop at the node limit while the program is read.
static void test_limits_long_chains(void **state) {
    (void)state;
    mech_buf b = {0};
    mech_buf_puts(&b, "vocab {a, b};\nmax_seq_len 4;\nx0 = indices;\n");
    for (int i = 1; i <= 5000; i++) mech_buf_printf(&b, "x%d = map(v -> v + 1, x%d);\n", i, i - 1);
    expect_refusal(b.data, MECH_ERR_RANGE, "t.rasp: the program needs a model (5000 layers, ");
    expect_refusal(b.data, MECH_ERR_RANGE, "beyond what mech can hold: n_layers = 5000, expected 0..4096");
    b.len = 0;
    mech_buf_puts(&b, "vocab {a, b};\nmax_seq_len 4;\nx0 = tokens;\ns = select(indices, indices, ==);\n");
    for (int i = 1; i <= 5000; i++) mech_buf_printf(&b, "x%d = aggregate(s, x%d);\n", i, i - 1);
    expect_refusal(b.data, MECH_ERR_RANGE, "n_layers = 5000, expected 0..4096");
    b.len = 0;
    mech_buf_puts(&b, "vocab {a, b};\nmax_seq_len 4;\nx0 = indices;\n");
    for (int i = 1; i <= 200000; i++) mech_buf_printf(&b, "x%d = map(v -> v + 1, x%d);\n", i, i - 1);
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    assert_int_equal(mech_rasp_parse("t.rasp", b.data, b.len, &p, &err), MECH_ERR_TYPE);
    assert_non_null(strstr(err.msg, "t.rasp:100003:11: error: the program needs more than 100000 nodes"));
    mech_buf_free(&b);
}

// max_seq_len 4096: reverse's opp reads length x indices, 4096^2 pairs;
// sort at 1000 needs a 4001-wide head over a 6012-wide residual stream; a
// numerical mean over 4096 positions takes ~5.1 million values.
static void test_limits_long_sequences(void **state) {
    (void)state;
    expect_refusal("vocab {a, b};\nmax_seq_len 4096;\n"
                   "length = selector_width(select(tokens, tokens, true));\n"
                   "opp = length - indices - 1;\n"
                   "reverse = aggregate(select(indices, opp, ==), tokens);\n",
                   MECH_ERR_TYPE, "t.rasp:4:7: error: 'opp': its inputs have more than 1000000 value combinations "
                   "(one MLP unit each; mech compile --max-values raises the limit)");
    char *sort = mech_test_read("examples/rasp/sort.rasp", NULL);
    char *at = strstr(sort, "max_seq_len 5;");
    assert_non_null(at);
    memcpy(at, "max_seq_len 9;", 14); // a placeholder of the same length
    mech_buf b = {0};
    mech_buf_append(&b, sort, (size_t)(at - sort));
    mech_buf_puts(&b, "max_seq_len 1000;");
    mech_buf_puts(&b, at + 14);
    expect_refusal(b.data, MECH_ERR_RANGE, "(mech compile --max-params raises it)");
    expect_refusal(b.data, MECH_ERR_RANGE, "d_model 6012");
    free(sort);
    long count = 2; // 0 and 1, then every fraction k/m in lowest terms
    for (int m = 2; m <= 4096; m++)
        for (int k = 1; k < m; k++) {
            int x = k, y = m;
            while (y) {
                int t = x % y;
                x = y, y = t;
            }
            count += x == 1;
        }
    mech_buf want = {0};
    mech_buf_printf(&want, "t.rasp:4:18: error: 'frac': a numerical mean over up to 4096 positions can take %ld values, "
                    "more than the limit of 1000000 values per s-op (mech compile --max-values raises it)", count);
    expect_refusal("vocab {a, b};\nmax_seq_len 4096;\nisa = numerical(tokens == \"a\");\n"
                   "frac = numerical(aggregate(select(indices, indices, <=), isa, 0));\n",
                   MECH_ERR_TYPE, want.data);
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// `and` over selectors on different s-ops reads the pairs of their values,
// and pairs of pairs: ten distinct selectors used to allocate until the
// machine ran out.
static void test_limits_selector_composites(void **state) {
    (void)state;
    mech_buf b = {0};
    mech_buf_puts(&b, "vocab {a, b, c, d};\nmax_seq_len 8;\ns0 = select(tokens, tokens, ==);\n");
    for (int i = 1; i <= 10; i++) {
        mech_buf_printf(&b, "m%d = map(x -> (x + %d) %% 7, indices);\n", i, i);
        mech_buf_printf(&b, "s%d = s%d and select(m%d, m%d, ==);\n", i, i - 1, i, i);
    }
    mech_buf_puts(&b, "w = selector_width(s10);\n");
    // s1..s7 are within the limit (4 tokens + none, 8 indices, 7 values of each m_i)
    expect_refusal(b.data, MECH_ERR_TYPE, "t.rasp:19:9: error: 's8': its selector 's7' combines selectors");
    expect_refusal(b.data, MECH_ERR_TYPE, "combines selectors over different s-ops, whose pairs of values take");
    expect_refusal(b.data, MECH_ERR_TYPE, "more than the limit of 1000000 values per s-op (mech compile --max-values");
    mech_buf_free(&b);
}

// The limits are the caller's: a small max_params refuses reverse, the
// default builds it; max_values likewise; a cancel flag stops a compile.
static void test_limits_are_options(void **state) {
    (void)state;
    char *rev = mech_test_read("examples/rasp/reverse.rasp", NULL);
    mech_err err = {0};
    mech_rasp_limits lim = {.max_params = 1000};
    assert_int_equal(compile_lim(rev, &lim, &err, NULL), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "more than the limit of 1000 (mech compile --max-params raises it)"));
    lim = (mech_rasp_limits){.max_values = 4}; // selector_width can be 0..5
    assert_int_equal(compile_lim(rev, &lim, &err, NULL), MECH_ERR_TYPE);
    assert_non_null(strstr(err.msg, "'length': can hold 6 values, more than the limit of 4 values per s-op"));
    lim = (mech_rasp_limits){0};
    assert_int_equal(compile_lim(rev, &lim, &err, NULL), MECH_OK);
    volatile int stop = 1;
    lim.cancel = &stop;
    assert_int_equal(compile_lim(rev, &lim, &err, NULL), MECH_ERR_CANCELLED);
    free(rev);
}

// The size checked before building is the size built: for every example,
// its own parameter count is within the limit and one less is not.
static void test_limits_estimate_is_exact(void **state) {
    (void)state;
    const char *names[] = {"length", "reverse", "hist", "sort_unique", "sort", "sort_freq", "frac_prevs",
                           "pair_balance", "shift_by", "detect_pattern", "shuffle_dyck1", "shuffle_dyck2",
                           "shuffle_dyck3"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char path[128];
        snprintf(path, sizeof path, "examples/rasp/%s.rasp", names[i]);
        char *src = mech_test_read(path, NULL);
        mech_err err = {0};
        mech_rasp_program *p = NULL;
        mech_rasp_compiled *c = NULL;
        if (mech_rasp_parse("t.rasp", src, strlen(src), &p, &err) || mech_rasp_compile(p, &c, &err)) fail_msg("%s", err.msg);
        int64_t n = mech_config_n_params(&c->model->cfg);
        mech_rasp_compiled_free(c);
        mech_rasp_program_free(p);
        mech_rasp_limits lim = {.max_params = n};
        if (compile_lim(src, &lim, &err, NULL)) fail_msg("%s: %s", path, err.msg);
        lim.max_params = n - 1;
        assert_int_equal(compile_lim(src, &lim, &err, NULL), MECH_ERR_RANGE);
        free(src);
    }
}

// Verification within a cost: exhaustive when it fits; with less, a sample
// whose lengths reach max_seq_len; with too little for one input, an error.
static void test_limits_verification_cost(void **state) {
    (void)state;
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_compiled *c = NULL;
    if (mech_rasp_load("examples/rasp/reverse.rasp", &p, &err) || mech_rasp_compile(p, &c, &err)) fail_msg("%s", err.msg);
    mech_rasp_verify_opts o = {.seed = 3};
    mech_rasp_verify_result all, some, none;
    assert_int_equal(mech_rasp_verify_ex(p, c->model, &o, &all, &err), MECH_OK);
    assert_true(all.exhaustive);
    assert_int_equal(all.checked, 4 + 16 + 64 + 256 + 1024);
    assert_true(all.cost > 0 && all.cost == all.exhaustive_cost);
    o.max_cost = all.cost / 4;
    assert_int_equal(mech_rasp_verify_ex(p, c->model, &o, &some, &err), MECH_OK);
    assert_false(some.exhaustive);
    assert_true(some.checked > 10 && some.checked == some.total && some.checked < all.checked);
    assert_true(some.cost <= o.max_cost);
    assert_true(some.all_inputs == all.all_inputs && some.exhaustive_cost == all.exhaustive_cost);
    o.max_cost = 1;
    assert_int_equal(mech_rasp_verify_ex(p, c->model, &o, &none, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "examples/rasp/reverse.rasp: verifying even one input of length 5 takes about"));
    assert_non_null(strstr(err.msg, "(mech compile --max-verify raises it, --no-verify skips verification)"));
    volatile int stop = 1;
    o = (mech_rasp_verify_opts){.cancel = &stop};
    assert_int_equal(mech_rasp_verify_ex(p, c->model, &o, &none, &err), MECH_ERR_CANCELLED);
    mech_rasp_compiled_free(c);
    mech_rasp_program_free(p);
}

// ---------------------------------------------------------------------------
// selector_width at the largest max_seq_len

// Runs the compiled model on input of n tokens (a, b, a, b, ...) and checks
// every position reads `want`.
static void run_width(mech_rasp_runner *r, int n, double want) {
    mech_rasp_value *in = malloc((size_t)n * sizeof *in), *out = malloc((size_t)n * sizeof *out);
    for (int i = 0; i < n; i++) in[i] = (mech_rasp_value){.type = MECH_RASP_STR, .n = 1, .s = i % 2 ? "b" : "a"};
    mech_err err = {0};
    if (mech_rasp_runner_run(r, in, 1, (size_t)n, out, &err)) fail_msg("%s", err.msg);
    for (int i = 0; i < n; i++) {
        double got = out[i].type == MECH_RASP_INT ? (double)out[i].i : out[i].type == MECH_RASP_FLOAT ? out[i].f : -1;
        if (got != want) fail_msg("length %d, position %d: got %g, expected %g", n, i, got, want);
    }
    free(in);
    free(out);
}

// Tracr's construction reads 1/(w+1) from attention to BOS and decodes it
// with MLP steps; stepping upwards, a step's input grew to 4 w^2 and
// float32 lost its 0.5 offsets from w ~ 2500 (max_seq_len 2512 gave 2511 on
// `a b`). Now exact at max_seq_len 4096.
static void test_limits_selector_width_precision(void **state) {
    (void)state;
    static const char *const srcs[] = {
        // the program (categorical: one residual dimension per count)
        "vocab {a, b};\nmax_seq_len 2512;\nx = selector_width(select(tokens, tokens, true));\n",
        // numerical at the language's maximum (the same decoding MLP, one output)
        "vocab {a, b};\nmax_seq_len 4096;\nx = numerical(selector_width(select(tokens, tokens, true)));\n",
    };
    static const int lens[2][5] = {{1, 2, 3, 1000, 2512}, {1, 2, 3, 4095, 4096}};
    for (int s = 0; s < 2; s++) {
        mech_err err = {0};
        mech_rasp_program *p = NULL;
        mech_rasp_compiled *c = NULL;
        mech_rasp_runner *r = NULL;
        if (mech_rasp_parse("t.rasp", srcs[s], strlen(srcs[s]), &p, &err) || mech_rasp_compile(p, &c, &err) ||
            mech_rasp_runner_new(p, c->model, &r, &err))
            fail_msg("%s", err.msg);
        for (int i = 0; i < 5; i++) run_width(r, lens[s][i], lens[s][i]);
        // a selector of width w < n: keys equal to the query (a or b)
        mech_rasp_runner_free(r);
        mech_rasp_compiled_free(c);
        mech_rasp_program_free(p);
    }
}

// ---------------------------------------------------------------------------
// mech compile

static const char *write_tmp(const char *name, const char *text) {
    const char *path = mech_test_tmpn(name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

// Limits are options; refusals and errors name the command and the file and
// exit 2; a nested expression points at its place.
static void test_limits_cli_compile(void **state) {
    (void)state;
    char *out, *err;
    const char *model = mech_test_tmpn("limits_rev.safetensors");
    remove(model);
    assert_int_equal(mech_test_cli(&out, &err, "compile examples/rasp/reverse.rasp -o %s --max-params 1000", model), 2);
    if (strncmp(err, "mech compile: examples/rasp/reverse.rasp: the compiled model would have ", 72) ||
        !strstr(err, "more than the limit of 1000 (mech compile --max-params raises it)\n"))
        fail_msg("%s", err);
    assert_null(fopen(model, "rb"));
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "compile examples/rasp/reverse.rasp -o %s --max-params 0", model), 2);
    assert_non_null(strstr(err, "--max-params: '0' is not a count"));
    free(out), free(err);
    // a lower verification budget: a notice, then a sample
    assert_int_equal(mech_test_cli(&out, &err, "compile examples/rasp/reverse.rasp -o %s --max-verify 2e7", model), 0);
    if (!strstr(err, "examples/rasp/reverse.rasp: checking all 1364 inputs would take about ") ||
        !strstr(err, "verifying a seeded sample instead\n") || !strstr(err, "(a seeded random sample)"))
        fail_msg("%s", err);
    free(out), free(err);
    // the layer count: named, with the command
    mech_buf b = {0};
    mech_buf_puts(&b, "vocab {a, b};\nmax_seq_len 4;\nx0 = indices;\n");
    for (int i = 1; i <= 5000; i++) mech_buf_printf(&b, "x%d = map(v -> v + 1, x%d);\n", i, i - 1);
    const char *chain = write_tmp("limits_chain.rasp", b.data);
    assert_int_equal(mech_test_cli(&out, &err, "compile %s -o %s", chain, model), 2);
    mech_buf want = {0};
    mech_buf_printf(&want, "mech compile: %s: the program needs a model (5000 layers,", chain);
    if (strncmp(err, want.data, want.len) || !strstr(err, "n_layers = 5000, expected 0..4096\n")) fail_msg("%s", err);
    free(out), free(err);
    // a depth bound, at its place
    b.len = 0;
    mech_buf_puts(&b, "vocab {a, b};\nmax_seq_len 4;\nx = indices");
    rep(&b, " + indices", N);
    mech_buf_puts(&b, ";\n");
    const char *deep = write_tmp("limits_deep.rasp", b.data);
    assert_int_equal(mech_test_cli(&out, &err, "compile %s -o %s", deep, model), 2);
    want.len = 0;
    mech_buf_printf(&want, "%s:3:%d: error: expression nested deeper than %d\n", deep, 13 + 10 * (N - 1), N);
    if (strncmp(err, want.data, want.len)) fail_msg("expected %s, got %s", want.data, err);
    free(out), free(err);
    mech_buf_free(&b);
    mech_buf_free(&want);
}

// Ctrl-C during a long verification: exit 130, nothing written.
static void test_limits_cli_interrupt(void **state) {
    (void)state;
    char *sort = mech_test_read("examples/rasp/sort.rasp", NULL);
    char *at = strstr(sort, "max_seq_len 5;");
    assert_non_null(at);
    at[12] = '9'; // max_seq_len 9 -> 60 below
    mech_buf b = {0};
    mech_buf_append(&b, sort, (size_t)(at - sort));
    mech_buf_puts(&b, "max_seq_len 60;");
    mech_buf_puts(&b, at + 14);
    const char *src = write_tmp("limits_sort60.rasp", b.data);
    const char *model = mech_test_tmpn("limits_sort60.safetensors");
    remove(model);
    char *out, *err;
    // about a minute of verification; SIGINT after 2 s (a background job of a
    // non-interactive shell ignores SIGINT until mech installs its handler;
    // mech's stderr goes to the captured stdout)
    int rc = mech_test_cli(&out, &err,
                           "compile %s -o %s --max-verify 1e14 2>&1 & pid=$!; sleep 2; kill -INT $pid; wait $pid", src,
                           model);
    if (rc != 130 || !strstr(out, "verification interrupted after ") || !strstr(out, "; nothing written\n"))
        fail_msg("exit %d: %s", rc, out);
    assert_null(fopen(model, "rb"));
    free(out), free(err), free(sort);
    mech_buf_free(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limits_parentheses),
        cmocka_unit_test(test_limits_long_sum),
        cmocka_unit_test(test_limits_and_chain),
        cmocka_unit_test(test_limits_selector_chain_across_statements),
        cmocka_unit_test(test_limits_index_chain_in_lambda),
        cmocka_unit_test(test_limits_nested_index),
        cmocka_unit_test(test_limits_lambdas_and_unary),
        cmocka_unit_test(test_limits_defs_expanded),
        cmocka_unit_test(test_limits_allocation_failures),
        cmocka_unit_test(test_limits_numerical_zipmap_of_categoricals),
        cmocka_unit_test(test_limits_large_vocab),
        cmocka_unit_test(test_limits_long_chains),
        cmocka_unit_test(test_limits_long_sequences),
        cmocka_unit_test(test_limits_selector_composites),
        cmocka_unit_test(test_limits_are_options),
        cmocka_unit_test(test_limits_estimate_is_exact),
        cmocka_unit_test(test_limits_verification_cost),
        cmocka_unit_test(test_limits_selector_width_precision),
        cmocka_unit_test(test_limits_cli_compile),
        cmocka_unit_test(test_limits_cli_interrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
