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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
