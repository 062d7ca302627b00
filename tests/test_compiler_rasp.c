/*
** tests/test_compiler_rasp.c: the RASP language and its reference
** interpreter: values and their JSON, Python's arithmetic in lambdas,
** every construct (tables of program, input, expected JSON), precedence,
** none propagation, causal mode, selector and/or/not, defs, encodings,
** defaults, the IR's shape, and errors with their exact positions.
** Expected outputs are derived by hand from what each program means.
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

// Prepended to table programs that have no vocab of their own.
static const char *const HEADER = "vocab {a, b, c, d, 1, 2, 3};\nmax_seq_len 6;\n";

// Parses src (as "t.rasp"; HEADER first unless src has a vocab) and runs it
// on input. Returns the output JSON, or "error: <message>" (owned), and the
// status of the step that failed.
static char *run(const char *src, const char *input, mech_status *st) {
    mech_buf full = {0};
    if (!strstr(src, "vocab")) mech_buf_puts(&full, HEADER);
    mech_buf_puts(&full, src);
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_buf out = {0};
    mech_status s = mech_rasp_parse("t.rasp", full.data, full.len, &p, &err);
    if (!s) {
        mech_rasp_value *in = NULL, *res = NULL;
        size_t n = 0;
        s = mech_rasp_input_parse(p, input, &in, &n, &err);
        if (!s) s = mech_rasp_eval(p, in, n, &res, &err);
        if (!s) mech_rasp_values_json(&out, res, n);
        mech_free(in);
        mech_free(res);
    }
    if (s) mech_buf_printf(&out, "error: %s", err.msg);
    mech_rasp_program_free(p);
    mech_buf_free(&full);
    if (st) *st = s;
    return out.data;
}

static mech_rasp_program *parse_ok(const char *src) {
    mech_buf full = {0};
    if (!strstr(src, "vocab")) mech_buf_puts(&full, HEADER);
    mech_buf_puts(&full, src);
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    if (mech_rasp_parse("t.rasp", full.data, full.len, &p, &err)) fail_msg("parse failed: %s\n--- source:\n%s", err.msg, full.data);
    mech_buf_free(&full);
    return p;
}

// ---------------------------------------------------------------------------
// Values

static void test_rasp_value_json(void **state) {
    (void)state;
    struct { double f; const char *want; } floats[] = {
        {0, "0"}, {-0.0, "0"}, {1, "1"}, {2.0, "2"}, {0.5, "0.5"}, {1.0 / 3, "0.333333"}, {2.0 / 3, "0.666667"},
        {0.4, "0.4"}, {-0.125, "-0.125"}, {1.0 / 6, "0.166667"}, {123456.7, "123457"}, {1234567.0, "1234567"},
        {0.000123456, "0.000123456"}, {1e-7, "1e-07"}, {1e17, "1e+17"}, {9.9999996, "10"}, {-2.5, "-2.5"},
        {0.1 + 0.2, "0.3"},
    };
    for (size_t i = 0; i < sizeof floats / sizeof *floats; i++) {
        mech_buf b = {0};
        mech_rasp_value v = mech_rasp_float(floats[i].f);
        mech_rasp_value_json(&b, &v);
        if (strcmp(b.data, floats[i].want)) fail_msg("float %.17g: got %s, want %s", floats[i].f, b.data, floats[i].want);
        mech_buf_free(&b);
    }
    mech_rasp_heap *h = mech_rasp_heap_new();
    mech_rasp_value items[5], t, s;
    assert_int_equal(mech_rasp_value_str(h, "q\"\n", 3, &s, NULL), MECH_OK);
    items[0] = mech_rasp_none();
    items[1] = mech_rasp_bool(1);
    items[2] = mech_rasp_int(-42);
    items[3] = mech_rasp_float(0.25);
    items[4] = s;
    assert_int_equal(mech_rasp_value_tuple(h, items, 5, &t, NULL), MECH_OK);
    mech_buf b = {0};
    mech_rasp_value_json(&b, &t);
    assert_string_equal(b.data, "[null,true,-42,0.25,\"q\\\"\\n\"]");
    b.len = 0;
    mech_rasp_value_repr(&b, &t);
    assert_string_equal(b.data, "(none, true, -42, 0.25, \"q\\\"\\n\")");
    b.len = 0;
    mech_rasp_value one[1] = {mech_rasp_float(2)}, t1;
    assert_int_equal(mech_rasp_value_tuple(h, one, 1, &t1, NULL), MECH_OK);
    mech_rasp_value_repr(&b, &t1);
    assert_string_equal(b.data, "(2.0,)");
    b.len = 0;
    mech_rasp_values_json(&b, items, 0);
    assert_string_equal(b.data, "[]");
    mech_buf_free(&b);
    mech_rasp_heap_free(h);
}

static void test_rasp_value_equality_hash_order(void **state) {
    (void)state;
    mech_rasp_heap *h = mech_rasp_heap_new();
    mech_rasp_value i1 = mech_rasp_int(1), f1 = mech_rasp_float(1.0), b1 = mech_rasp_bool(1), f15 = mech_rasp_float(1.5);
    mech_rasp_value none = mech_rasp_none(), sa, sb, s1;
    mech_rasp_value_str(h, "a", 1, &sa, NULL);
    mech_rasp_value_str(h, "b", 1, &sb, NULL);
    mech_rasp_value_str(h, "1", 1, &s1, NULL);
    // Python: 1 == 1.0 == True, and they hash alike.
    assert_true(mech_rasp_value_eq(&i1, &f1));
    assert_true(mech_rasp_value_eq(&i1, &b1));
    assert_true(mech_rasp_value_hash(&i1) == mech_rasp_value_hash(&f1));
    assert_true(mech_rasp_value_hash(&i1) == mech_rasp_value_hash(&b1));
    assert_false(mech_rasp_value_eq(&i1, &s1));
    assert_false(mech_rasp_value_eq(&i1, &f15));
    assert_false(mech_rasp_value_eq(&none, &i1));
    assert_true(mech_rasp_value_eq(&none, &none));
    // Large ints and floats compare exactly.
    mech_rasp_value big = mech_rasp_int(9007199254740993LL), bigf = mech_rasp_float(9007199254740992.0);
    assert_false(mech_rasp_value_eq(&big, &bigf));
    assert_true(mech_rasp_value_order(&big, &bigf) > 0);
    // Tuples: elementwise, with numeric equality.
    mech_rasp_value ta[2] = {i1, sa}, tb[2] = {f1, sa}, tc[2] = {i1, sb}, x, y, z;
    mech_rasp_value_tuple(h, ta, 2, &x, NULL);
    mech_rasp_value_tuple(h, tb, 2, &y, NULL);
    mech_rasp_value_tuple(h, tc, 2, &z, NULL);
    assert_true(mech_rasp_value_eq(&x, &y));
    assert_true(mech_rasp_value_hash(&x) == mech_rasp_value_hash(&y));
    assert_false(mech_rasp_value_eq(&x, &z));
    // Total order: none < numbers < strings < tuples; 0 exactly when equal.
    const mech_rasp_value *sorted[] = {&none, &b1, &f15, &sa, &sb, &x, &z};
    for (size_t i = 0; i + 1 < sizeof sorted / sizeof *sorted; i++) {
        assert_true(mech_rasp_value_order(sorted[i], sorted[i + 1]) < 0);
        assert_true(mech_rasp_value_order(sorted[i + 1], sorted[i]) > 0);
    }
    assert_int_equal(mech_rasp_value_order(&i1, &f1), 0);
    assert_int_equal(mech_rasp_value_order(&x, &y), 0);
    // Truthiness.
    mech_rasp_value empty;
    mech_rasp_value_str(h, "", 0, &empty, NULL);
    assert_false(mech_rasp_value_truthy(&none));
    assert_false(mech_rasp_value_truthy(&empty));
    mech_rasp_value zero = mech_rasp_float(0.0);
    assert_false(mech_rasp_value_truthy(&zero));
    assert_true(mech_rasp_value_truthy(&sa));
    assert_true(mech_rasp_value_truthy(&x));
    mech_rasp_heap_free(h);
}

// ---------------------------------------------------------------------------
// Constant expressions: Python's semantics, folded while lowering.

static void test_rasp_constant_expressions(void **state) {
    (void)state;
    static const struct { const char *expr, *want; } cases[] = {
        // floor division and modulo take the divisor's sign
        {"-7 // 2", "-4"}, {"7 // -2", "-4"}, {"7 // 2", "3"}, {"-7 % 3", "2"}, {"7 % -3", "-2"}, {"-7 % -3", "-1"},
        {"7.5 // 2", "3"}, {"-7.5 // 2", "-4"}, {"-7.5 % 2", "0.5"}, {"7.5 % -2", "-0.5"}, {"6 % 3", "0"},
        // true division is always a float
        {"1 / 4", "0.25"}, {"4 / 2", "2"}, {"1 / 3", "0.333333"}, {"-1 / 8", "-0.125"},
        // round halves to even, returns an int; with ndigits a float
        {"round(2.5)", "2"}, {"round(3.5)", "4"}, {"round(-2.5)", "-2"}, {"round(0.5)", "0"}, {"round(2.6)", "3"},
        {"round(7)", "7"}, {"round(0.125, 2)", "0.12"}, {"round(0.375, 2)", "0.38"}, {"round(1250, -2)", "1200"},
        {"round(1350, -2)", "1400"}, {"round(1251, -2)", "1300"}, {"round(-1250, -2)", "-1200"},
        // abs min max len int float bool
        {"abs(-3)", "3"}, {"abs(-2.5)", "2.5"}, {"abs(true)", "1"}, {"min(3, 1, 2)", "1"}, {"max(3, 1, 2)", "3"},
        {"max((1, 5, 2))", "5"}, {"min(\"b\", \"a\")", "\"a\""}, {"max(1, 2.5)", "2.5"}, {"len((1, 2, 3))", "3"},
        {"len(\"h\\xc3\\xa9llo\")", "5"}, {"len(())", "0"}, {"int(2.9)", "2"}, {"int(-2.9)", "-2"}, {"int(\"12\")", "12"},
        {"float(3)", "3"}, {"float(\"0.5\")", "0.5"}, {"bool(0)", "false"}, {"bool(\"x\")", "true"},
        // tuples, indexing, strings
        {"(1, 2)[0]", "1"}, {"(1, 2)[-1]", "2"}, {"((1, 2), 3)[0][1]", "2"}, {"\"abc\"[1]", "\"b\""},
        {"\"abc\"[-1]", "\"c\""}, {"(1,)", "[1]"}, {"()", "[]"}, {"(1, \"a\", none)", "[1,\"a\",null]"},
        {"\"a\" + \"b\"", "\"ab\""}, {"(1,) + (2, 3)", "[1,2,3]"}, {"2 in (1, 2)", "true"}, {"5 in (1, 2)", "false"},
        {"\"b\" in \"abc\"", "true"}, {"\"\" in \"abc\"", "true"}, {"\"x\" in \"abc\"", "false"},
        // comparisons, equality across types
        {"1 == 1.0", "true"}, {"true == 1", "true"}, {"\"a\" != 1", "true"}, {"\"1\" == 1", "false"},
        {"none == none", "true"}, {"none == 0", "false"}, {"1 < 2.5", "true"}, {"(1, 2) < (1, 3)", "true"},
        {"(1, 2) < (1, 2, 0)", "true"}, {"\"abc\" < \"abd\"", "true"}, {"\"b\" >= \"a\"", "true"}, {"2 <= 2", "true"},
        {"3 > 4", "false"}, {"(1, 2) == (1.0, 2)", "true"},
        // and/or return an operand; not gives a bool
        {"1 and 2", "2"}, {"0 and 2", "0"}, {"0 or \"x\"", "\"x\""}, {"3 or 4", "3"}, {"not 0", "true"},
        {"not \"\"", "true"}, {"not (1,)", "false"}, {"none or 5", "5"},
        // if/else
        {"1 if true else 2", "1"}, {"1 if 0 else 2", "2"}, {"1 if 0 else 2 if 0 else 3", "3"},
        {"\"y\" if 2 > 1 else \"n\"", "\"y\""},
        // precedence: * over +, unary minus over *, comparisons over not, not over and over or
        {"2 + 3 * 4", "14"}, {"(2 + 3) * 4", "20"}, {"10 - 4 - 3", "3"}, {"2 * 3 % 4", "2"}, {"-2 * 3", "-6"},
        {"-3 * -2", "6"}, {"- -1", "1"}, {"+5", "5"}, {"8 / 2 / 2", "2"}, {"2 + 3 == 5", "true"},
        {"not 1 == 2", "true"}, {"1 + 2 == 3 and 2 < 1 or true", "true"}, {"false and 1 / 0", "false"},
        {"true or 1 / 0", "true"}, {"1 if 1 else 1 / 0", "1"}, {"not 1 and 0", "false"}, {"1 < 2 and 2 < 3", "true"},
        {"1 - 2 if 1 > 0 else 0", "-1"}, {"(1 if 0 else 2) * 3", "6"}, {"7 // 2 * 2", "6"}, {"2 * 7 // 2", "7"},
        // ints promote to floats; bools count as ints
        {"true + 1", "2"}, {"1 + 0.5", "1.5"}, {"0.1 + 0.2", "0.3"}, {"3 * 1.0", "3"}, {"1e-7 * 1", "1e-07"},
        {"1.5e3", "1500"}, {".5", "0.5"}, {"2.", "2"}, {"1e17", "1e+17"}, {"-0.0", "0"},
        // max_seq_len is a constant; strings escape
        {"max_seq_len", "6"}, {"max_seq_len - 1", "5"}, {"'it\\'s'", "\"it's\""}, {"\"tab\\there\"", "\"tab\\there\""},
        {"\"\\x41\"", "\"A\""}, {"True and not False", "true"}, {"None", "null"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char src[512], want[256];
        snprintf(src, sizeof src, "out = %s;\n", cases[i].expr);
        snprintf(want, sizeof want, "[%s,%s]", cases[i].want, cases[i].want);
        char *got = run(src, "a b", NULL);
        if (strcmp(got, want)) {
            fprintf(stderr, "  %s\n    got:  %s\n    want: %s\n", cases[i].expr, got, want);
            bad++;
        }
        free(got);
    }
    if (bad) fail_msg("%d constant expressions wrong", bad);
}

// The same operators inside lambdas, evaluated per position at run time.
static void test_rasp_lambda_expressions(void **state) {
    (void)state;
    static const struct { const char *expr, *want; } cases[] = {
        // x runs over indices 0..4
        {"x // 2", "[0,0,1,1,2]"},
        {"(x - 2) // 2", "[-1,-1,0,0,1]"},
        {"(x - 2) % 3", "[1,2,0,1,2]"},
        {"x % -3", "[0,-2,-1,0,-2]"},
        {"x / 2", "[0,0.5,1,1.5,2]"},
        {"round(x / 2)", "[0,0,1,2,2]"},
        {"round(x * 0.5 + 0.25, 1)", "[0.2,0.8,1.2,1.8,2.2]"},
        {"abs(x - 2)", "[2,1,0,1,2]"},
        {"min(x, 2)", "[0,1,2,2,2]"},
        {"max(x, 2.5)", "[2.5,2.5,2.5,3,4]"},
        {"(x, x * x)", "[[0,0],[1,1],[2,4],[3,9],[4,16]]"},
        {"(10, 20, 30, 40, 50)[x]", "[10,20,30,40,50]"},
        {"(10, 20, 30, 40, 50)[-x - 1]", "[50,40,30,20,10]"},
        {"\"abcde\"[x]", "[\"a\",\"b\",\"c\",\"d\",\"e\"]"},
        {"x != 0 and 10 // x > 2", "[false,true,true,true,false]"},
        {"x == 0 or 10 // x", "[true,10,5,3,2]"},
        {"1 if x >= 0 else 1 // 0", "[1,1,1,1,1]"},
        {"\"even\" if x % 2 == 0 else \"odd\"", "[\"even\",\"odd\",\"even\",\"odd\",\"even\"]"},
        {"x in (1, 3)", "[false,true,false,true,false]"},
        {"not x", "[true,false,false,false,false]"},
        {"x > 1 and x < 4", "[false,false,true,true,false]"},
        {"-x", "[0,-1,-2,-3,-4]"},
        {"float(x) / 4", "[0,0.25,0.5,0.75,1]"},
        {"len((0,) * 1) if false else x", "[0,1,2,3,4]"},
        {"none", "[null,null,null,null,null]"},
        {"x == none", "[false,false,false,false,false]"},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char src[512];
        snprintf(src, sizeof src, "out = map(x -> %s, indices);\n", cases[i].expr);
        char *got = run(src, "a b c d a", NULL);
        if (strcmp(got, cases[i].want)) {
            fprintf(stderr, "  x -> %s\n    got:  %s\n    want: %s\n", cases[i].expr, got, cases[i].want);
            bad++;
        }
        free(got);
    }
    if (bad) fail_msg("%d lambda expressions wrong", bad);
}

// ---------------------------------------------------------------------------
// The language: (program, input, expected output)

typedef struct rasp_case {
    const char *what, *src, *input, *want;
} rasp_case;

static void run_table(const rasp_case *cases, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char *got = run(cases[i].src, cases[i].input, NULL);
        if (strcmp(got, cases[i].want)) {
            fprintf(stderr, "  [%s] input \"%s\"\n  program:\n%s\n    got:  %s\n    want: %s\n", cases[i].what,
                    cases[i].input, cases[i].src, got, cases[i].want);
            bad++;
        }
        free(got);
    }
    if (bad) fail_msg("%d of %zu programs wrong", bad, n);
}

static void test_rasp_builtins_and_operators(void **state) {
    (void)state;
    static const rasp_case cases[] = {
        {"tokens", "out = tokens;", "a b c", "[\"a\",\"b\",\"c\"]"},
        {"int tokens", "out = tokens;", "1 a 3", "[1,\"a\",3]"},
        {"indices", "out = indices;", "a b c d", "[0,1,2,3]"},
        {"length", "out = length;", "a b c", "[3,3,3]"},
        {"empty input", "out = indices;", "", "[]"},
        {"one token", "out = length - indices;", "d", "[1]"},
        {"arithmetic", "out = indices * 2 + 1;", "a b c", "[1,3,5]"},
        {"left assoc", "out = length - indices - 1;", "a b c d", "[3,2,1,0]"},
        {"parens", "out = length - (indices - 1);", "a b c d", "[5,4,3,2]"},
        {"precedence", "out = indices + length * 2;", "a b", "[4,5]"},
        {"unary minus", "out = -indices + 1;", "a b c", "[1,0,-1]"},
        {"comparison", "out = tokens == \"a\";", "a b a", "[true,false,true]"},
        {"ints in vocab", "out = tokens + 1;", "1 2 3", "[2,3,4]"},
        {"two s-ops", "out = tokens == \"a\" and indices > 0;", "a a b a", "[false,true,false,true]"},
        {"or", "out = tokens == \"a\" or tokens == \"c\";", "a b c d", "[true,false,true,false]"},
        {"not", "out = not tokens == \"a\";", "a b", "[false,true]"},
        {"if else", "out = indices if tokens == \"a\" else -1;", "a b a", "[0,-1,2]"},
        {"if else s-ops", "out = tokens if indices < 2 else length;", "a b c d", "[\"a\",\"b\",4,4]"},
        {"const condition", "out = indices if max_seq_len > 3 else 1 / 0;", "a b", "[0,1]"},
        {"tuple", "out = (tokens, indices);", "a b", "[[\"a\",0],[\"b\",1]]"},
        {"index", "out = (tokens, indices)[1] * 10;", "a b c", "[0,10,20]"},
        {"abs", "out = abs(indices - 2);", "a b c d e a", "error"}, // 'e' is not in the vocab
        {"abs ok", "out = abs(indices - 2);", "a b c d", "[2,1,0,1]"},
        {"min/max", "out = (min(indices, 1), max(indices, length - 1));", "a b c",
         "[[0,2],[1,2],[1,2]]"},
        {"round", "out = round(indices / 2);", "a b c d a", "[0,0,1,2,2]"},
        {"in", "out = tokens in (\"a\", \"b\");", "a b c", "[true,true,false]"},
        {"string concat", "out = tokens + \"!\";", "a b", "[\"a!\",\"b!\"]"},
        {"constant output", "out = 3;", "a b c", "[3,3,3]"},
        {"constant string", "out = \"x\" + \"y\";", "a b", "[\"xy\",\"xy\"]"},
        {"constant tuple", "out = (1, none);", "a", "[[1,null]]"},
        {"max_seq_len", "out = indices + max_seq_len;", "a b", "[6,7]"},
        {"rebinding", "x = indices;\nx = x + 1;\nout = x * x;", "a b c", "[1,4,9]"},
        {"shadow length", "length = 5;\nout = length;", "a b", "[5,5]"},
        {"output before def", "output o;\no = indices;\nz = tokens;", "a b", "[0,1]"},
        {"default output is last", "o = indices;\nz = tokens;", "a b", "[\"a\",\"b\"]"},
        {"output builtin", "o = indices;\noutput tokens;", "c", "[\"c\"]"},
        {"comments", "# comment\nout = indices; # trailing\n#last", "a b", "[0,1]"},
        {"indicator", "out = indicator(tokens == \"a\");", "a b a", "[1,0,1]"},
        {"lambda variable", "f = x -> x * 3;\nout = map(f, indices);", "a b c", "[0,3,6]"},
        {"predicate true", "out = selector_width(select(indices, indices, True));", "a b", "[2,2]"},
    };
    rasp_case fixed[sizeof cases / sizeof *cases];
    memcpy(fixed, cases, sizeof cases);
    // "error" rows: only check that it failed.
    size_t k = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (strcmp(cases[i].want, "error")) {
            fixed[k++] = cases[i];
            continue;
        }
        mech_status st;
        char *got = run(cases[i].src, cases[i].input, &st);
        if (st != MECH_ERR_RANGE) fail_msg("[%s] want an input error, got %s", cases[i].what, got);
        free(got);
    }
    run_table(fixed, k);
}

static void test_rasp_map_zipmap(void **state) {
    (void)state;
    static const rasp_case cases[] = {
        {"map", "out = map(x -> x + 1, indices);", "a b c", "[1,2,3]"},
        {"map parens", "out = map((x) -> x * x, indices);", "a b c", "[0,1,4]"},
        {"zipmap", "out = zipmap((t, i) -> (t, i), tokens, indices);", "a b", "[[\"a\",0],[\"b\",1]]"},
        {"zipmap 3", "out = zipmap((a, b, c) -> a + b - c, indices, indices, length);", "a b c", "[-3,-1,1]"},
        {"zipmap same s-op", "out = zipmap((a, b) -> a * b, indices, indices);", "a b c", "[0,1,4]"},
        {"zipmap constant arg", "out = zipmap((a, b) -> a + b, indices, 10);", "a b", "[10,11]"},
        {"zipmap of one", "out = zipmap(x -> x - 1, indices);", "a b", "[-1,0]"},
        {"map over constant", "out = map(x -> x * 2, 21);", "a b", "[42,42]"},
        {"map of none constant", "out = map(x -> 1 / 0, none);", "a", "[null]"},
        {"lambda captures constant", "k = 7;\nout = map(x -> x + k, indices);", "a b", "[7,8]"},
        {"nested maps", "m = map(x -> x + 1, indices);\nout = map(y -> y * 10, m);", "a b", "[10,20]"},
        {"lambda ignores input", "out = map(x -> \"c\", tokens);", "a b", "[\"c\",\"c\"]"},
    };
    run_table(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_none_propagation(void **state) {
    (void)state;
    // shift = the tokens moved right by one: none at position 0.
    static const char *SHIFT = "shift = aggregate(select(indices, indices, (k, q) -> q == k + 1), tokens);\n";
    static const rasp_case parts[] = {
        {"shift", "out = shift;", "a b c", "[null,\"a\",\"b\"]"},
        {"map skips none", "out = map(x -> x + \"!\", shift);", "a b c", "[null,\"a!\",\"b!\"]"},
        {"operator skips none", "out = shift == \"a\";", "a b c", "[null,true,false]"},
        {"zipmap with one none", "out = zipmap((s, i) -> i, shift, indices);", "a b c", "[null,1,2]"},
        {"and with none", "out = shift == \"a\" and indices > 5;", "a b", "[null,false]"},
        {"lambda never sees none", "out = map(x -> 1 / 0 if x == none else 1, shift);", "a b", "[null,1]"},
        {"none keys are not selected", "out = selector_width(select(shift, tokens, ==));", "a a b", "[2,2,0]"},
        {"none queries select nothing", "out = selector_width(select(tokens, shift, true));", "a b c", "[0,3,3]"},
        {"aggregate of none", "out = aggregate(select(indices, indices, ==), shift);", "a b", "[null,\"a\"]"},
    };
    rasp_case cases[sizeof parts / sizeof *parts];
    char srcs[sizeof parts / sizeof *parts][512];
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        cases[i] = parts[i];
        snprintf(srcs[i], sizeof srcs[i], "%s%s", SHIFT, parts[i].src);
        cases[i].src = srcs[i];
    }
    run_table(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_select_predicates(void **state) {
    (void)state;
    // Widths over indices 0..3: pred(key, query) counts the keys k with pred.
    static const rasp_case cases[] = {
        {"==", "out = selector_width(select(indices, indices, ==));", "a b c d", "[1,1,1,1]"},
        {"!=", "out = selector_width(select(indices, indices, !=));", "a b c d", "[3,3,3,3]"},
        {"< is key < query", "out = selector_width(select(indices, indices, <));", "a b c d", "[0,1,2,3]"},
        {"<=", "out = selector_width(select(indices, indices, <=));", "a b c d", "[1,2,3,4]"},
        {">", "out = selector_width(select(indices, indices, >));", "a b c d", "[3,2,1,0]"},
        {">=", "out = selector_width(select(indices, indices, >=));", "a b c d", "[4,3,2,1]"},
        {"true", "out = selector_width(select(indices, indices, true));", "a b c d", "[4,4,4,4]"},
        {"false", "out = selector_width(select(indices, indices, false));", "a b c d", "[0,0,0,0]"},
        {"lambda (k, q)", "out = selector_width(select(indices, indices, (k, q) -> k == q + 1));", "a b c d", "[1,1,1,0]"},
        {"keys vs constant query", "out = selector_width(select(indices, 2, <));", "a b c d", "[2,2,2,2]"},
        {"constant key", "out = selector_width(select(1, indices, <));", "a b c d", "[0,0,4,4]"},
        {"tokens ==", "out = selector_width(select(tokens, tokens, ==));", "a b a c a", "[3,1,3,1,3]"},
        {"keys and queries differ", "out = aggregate(select(indices, length - indices - 1, ==), tokens);", "a b c",
         "[\"c\",\"b\",\"a\"]"},
        {"string order", "out = selector_width(select(tokens, tokens, <));", "c a b", "[2,0,1]"},
        {"lambda predicate on tuples", "p = (tokens, indices);\n"
                                       "out = selector_width(select(p, p, (k, q) -> k[0] == q[0] and k[1] < q[1]));",
         "a b a a", "[0,0,1,2]"},
        {"bare op through a def", "def w(p) { return selector_width(select(indices, indices, p)); }\nout = w(<=);",
         "a b c", "[1,2,3]"},
    };
    run_table(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_selector_logic(void **state) {
    (void)state;
    static const rasp_case cases[] = {
        {"or", "out = selector_width(select(indices, indices, <) or select(indices, indices, ==));", "a b c d", "[1,2,3,4]"},
        {"and", "out = selector_width(select(indices, indices, <=) and select(indices, indices, >=));", "a b c d",
         "[1,1,1,1]"},
        {"not", "out = selector_width(not select(indices, indices, ==));", "a b c d", "[3,3,3,3]"},
        {"not not", "out = selector_width(not not select(indices, indices, <));", "a b c", "[0,1,2]"},
        {"different keys", "s = select(tokens, tokens, ==) and select(indices, indices, <);\n"
                           "out = selector_width(s);", "a b a a b", "[0,0,1,2,1]"},
        {"precedence: not over and over or",
         "e = select(indices, indices, ==);\nl = select(indices, indices, <);\ng = select(indices, indices, >);\n"
         "out = selector_width(not e and l or g);", "a b c d", "[3,3,3,3]"},
        {"aggregate with and", "s = select(indices, indices, <=) and select(indices, indices, >=);\n"
                               "out = aggregate(s, tokens);", "a b c", "[\"a\",\"b\",\"c\"]"},
        {"rasplib sort", "k = tokens;\n"
                         "earlier = select(k, k, <) or (select(k, k, ==) and select(indices, indices, <));\n"
                         "pos = selector_width(earlier);\n"
                         "out = aggregate(select(pos, indices, ==), tokens);", "c a b a", "[\"a\",\"a\",\"b\",\"c\"]"},
    };
    run_table(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_aggregate(void **state) {
    (void)state;
    static const rasp_case cases[] = {
        {"one key", "out = aggregate(select(indices, indices, ==), tokens);", "a b c", "[\"a\",\"b\",\"c\"]"},
        {"keys that agree", "out = aggregate(select(tokens, tokens, ==), tokens);", "a b a", "[\"a\",\"b\",\"a\"]"},
        {"nothing selected: none", "out = aggregate(select(indices, indices, false), tokens);", "a b", "[null,null]"},
        {"nothing selected: default", "out = aggregate(select(indices, indices, false), tokens, \"z\");", "a b",
         "[\"z\",\"z\"]"},
        {"default used only when empty", "out = aggregate(select(indices, 0, ==), tokens, \"z\");", "b c", "[\"b\",\"b\"]"},
        {"numerical mean", "out = aggregate(select(indices, indices, <=), numerical(indices));", "a b c d",
         "[0,0.5,1,1.5]"},
        {"numerical of bools", "out = numerical(aggregate(select(indices, indices, <=), numerical(tokens == \"a\"), 0));",
         "a b a b", "[1,0.5,0.666667,0.5]"},
        {"numerical default 0", "out = aggregate(select(indices, indices, <), numerical(indices));", "a b c",
         "[0,0,0.5]"},
        {"numerical default given", "out = aggregate(select(indices, indices, <), numerical(indices), 7);", "a b",
         "[7,0]"},
        {"numerical of one key is a float", "out = aggregate(select(indices, indices, ==), numerical(indices + 1));",
         "a b", "[1,2]"},
        {"numerical of floats", "out = aggregate(select(indices, indices, true), numerical(indices / 4));", "a b c",
         "[0.25,0.25,0.25]"},
        {"mean then map", "m = aggregate(select(indices, indices, <=), numerical(indices));\nout = m * 10;", "a b c",
         "[0,5,10]"},
        {"selector_width", "out = selector_width(select(tokens, tokens, ==));", "a b a c", "[2,1,2,1]"},
        {"width of nothing", "out = selector_width(select(tokens, tokens, false));", "a b", "[0,0]"},
        {"aggregate of constant", "out = aggregate(select(indices, 1, ==), 5);", "a b c", "[5,5,5]"},
    };
    run_table(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_causal(void **state) {
    (void)state;
    static const rasp_case cases[] = {
        {"width counts the prefix", "causal true;\nout = selector_width(select(tokens, tokens, true));", "a b c d",
         "[1,2,3,4]"},
        {"length is still the length", "causal true;\nout = length;", "a b c", "[3,3,3]"},
        {"later keys are masked", "causal true;\nout = aggregate(select(indices, indices, >), tokens);", "a b c",
         "[null,null,null]"},
        {"earlier keys stay", "causal true;\nout = aggregate(select(indices, indices - 1, ==), tokens);", "a b c",
         "[null,\"a\",\"b\"]"},
        {"not is masked too", "causal true;\nout = selector_width(not select(indices, indices, ==));", "a b c d",
         "[0,1,2,3]"},
        {"or is masked", "causal true;\nout = selector_width(select(indices, 0, ==) or select(indices, 3, ==));",
         "a b c d", "[1,1,1,2]"},
        {"frac_prevs unchanged", "causal true;\n"
                                 "out = numerical(aggregate(select(indices, indices, true), numerical(tokens == \"a\"), 0));",
         "a b a b", "[1,0.5,0.666667,0.5]"},
        {"causal false", "causal false;\nout = selector_width(select(tokens, tokens, true));", "a b", "[2,2]"},
        {"masked pairs are not evaluated", "causal true;\n"
                                           "out = selector_width(select(indices, indices, (k, q) -> 1 // (q - k + 1) >= 0));",
         "a b c", "[1,2,3]"},
    };
    run_table(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_defs(void **state) {
    (void)state;
    static const rasp_case cases[] = {
        {"simple", "def inc(x) { return x + 1; }\nout = inc(indices);", "a b", "[1,2]"},
        {"locals", "def f(x) {\n  y = x * 2;\n  z = y + 1;\n  return z * y;\n}\nout = f(indices);", "a b c", "[0,6,20]"},
        {"constant args", "def add(x, k) { return x + k; }\nout = add(indices, 100);", "a b", "[100,101]"},
        {"constant result", "def two() { return 2; }\nout = two() * indices;", "a b", "[0,2]"},
        {"def calls def", "def a1(x) { return x + 1; }\ndef a2(x) { return a1(a1(x)); }\nout = a2(indices);", "a b",
         "[2,3]"},
        {"called twice", "def sq(x) { return x * x; }\nout = sq(indices) + sq(length);", "a b c", "[9,10,13]"},
        {"lambda captures param", "def shift(n, s) {\n"
                                  "  return aggregate(select(indices, indices, (k, q) -> q == k + n), s);\n}\n"
                                  "out = shift(2, tokens);", "a b c d", "[null,null,\"a\",\"b\"]"},
        {"lambda argument", "def ap(f, s) { return map(f, s); }\nout = ap(x -> x * 5, indices);", "a b", "[0,5]"},
        {"selector argument", "def w(s) { return selector_width(s); }\nout = w(select(tokens, tokens, ==));", "a a b",
         "[2,2,1]"},
        {"selector result", "def eq(a) { return select(a, a, ==); }\nout = selector_width(eq(tokens));", "a a b",
         "[2,2,1]"},
        {"params shadow globals", "x = 100;\ndef f(x) { return x; }\nout = f(indices);", "a b", "[0,1]"},
        {"body sees globals", "g = 10;\ndef f(x) { return x + g; }\nout = f(indices);", "a b", "[10,11]"},
        {"globals at call time", "g = 10;\ndef f(x) { return x + g; }\ng = 20;\nout = f(indices);", "a b", "[20,21]"},
        {"locals do not leak", "y = 5;\ndef f(x) { y = x; return y; }\nz = f(indices);\nout = y + z;", "a b", "[5,6]"},
        {"return an operator expression", "def neg(x) { return -x; }\nout = neg(indices) * 2;", "a b c", "[0,-2,-4]"},
        {"shadowing length", "def f(length) { return length + 1; }\nout = f(indices);", "a b", "[1,2]"},
    };
    run_table(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_encodings(void **state) {
    (void)state;
    static const rasp_case cases[] = {
        {"numerical map", "out = numerical(indices + 1);", "a b", "[1,2]"},
        {"numerical tokens", "out = numerical(tokens);", "1 2", "[1,2]"},
        {"categorical of a mean", "m = numerical(aggregate(select(indices, indices, <=), numerical(indices), 0));\n"
                                  "out = categorical(m);", "a b c", "[0,0.5,1]"},
        {"numerical constant", "out = aggregate(select(indices, indices, <=), numerical(1));", "a b", "[1,1]"},
        {"categorical of categorical", "out = categorical(tokens);", "a", "[\"a\"]"},
    };
    run_table(cases, sizeof cases / sizeof *cases);
}

// ---------------------------------------------------------------------------
// The IR

static const mech_rasp_node *node(const mech_rasp_program *p, const char *label) {
    const mech_rasp_node *n = mech_rasp_program_find(p, label);
    if (!n) fail_msg("no node labelled %s", label);
    return n;
}

static void test_rasp_ir_reverse(void **state) {
    (void)state;
    mech_rasp_program *p = parse_ok("vocab {a, b, c, d};\nmax_seq_len 5;\n"
                                    "length = selector_width(select(tokens, tokens, true));\n"
                                    "opp = length - indices - 1;\n"
                                    "reverse = aggregate(select(indices, opp, ==), tokens);\n"
                                    "output reverse;\n"
                                    "unused = tokens == \"a\";\n");
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    assert_int_equal(nv, 4);
    assert_int_equal(vocab[0].type, MECH_RASP_STR);
    assert_memory_equal(vocab[3].s, "d", 1);
    assert_int_equal(mech_rasp_program_max_seq_len(p), 5);
    assert_int_equal(mech_rasp_program_causal(p), 0);
    // tokens, indices, select(true), length, opp, select(==), reverse: the
    // unused map is dropped.
    assert_int_equal(mech_rasp_program_n_nodes(p), 7);
    for (int i = 0; i < mech_rasp_program_n_nodes(p); i++) {
        const mech_rasp_node *n = mech_rasp_program_node(p, i);
        assert_int_equal(n->id, i);
        for (int k = 0; k < n->n_in; k++) assert_true(n->in[k] < i);
        assert_non_null(n->label);
    }
    const mech_rasp_node *len = node(p, "length"), *opp = node(p, "opp"), *rev = node(p, "reverse");
    assert_int_equal(len->kind, MECH_RASP_SELECTOR_WIDTH);
    assert_int_equal(mech_rasp_program_node(p, len->in[0])->kind, MECH_RASP_SELECT);
    assert_int_equal(mech_rasp_program_node(p, len->in[0])->pred, MECH_RASP_PRED_TRUE);
    // `length - indices - 1` is one zipmap over (length, indices).
    assert_int_equal(opp->kind, MECH_RASP_ZIPMAP);
    assert_int_equal(opp->n_in, 2);
    assert_int_equal(opp->in[0], len->id);
    assert_int_equal(mech_rasp_program_node(p, opp->in[1])->kind, MECH_RASP_INDICES);
    assert_int_equal(opp->fn->n_params, 2);
    mech_buf b = {0};
    mech_rasp_lambda_print(&b, opp->fn);
    assert_string_equal(b.data, "(length, indices) -> length - indices - 1");
    assert_string_equal(opp->name, "opp");
    assert_int_equal(opp->pos.line, 4);
    assert_int_equal(opp->pos.col, 7);
    assert_int_equal(rev->kind, MECH_RASP_AGGREGATE);
    assert_int_equal(rev->enc, MECH_RASP_CATEGORICAL);
    assert_int_equal(rev->value.type, MECH_RASP_NONE);
    assert_int_equal(mech_rasp_program_output(p), rev->id);
    const mech_rasp_node *flip = mech_rasp_program_node(p, rev->in[0]);
    assert_int_equal(flip->kind, MECH_RASP_SELECT);
    assert_int_equal(flip->pred, MECH_RASP_PRED_EQ);
    assert_null(flip->name);
    assert_string_equal(flip->context, "reverse");
    assert_int_equal(flip->in[1], opp->id);
    // The listing.
    b.len = 0;
    mech_rasp_program_dump(&b, p);
    assert_non_null(strstr(b.data, "opp = zipmap(%2 length, %3 indices): (length, indices) -> length - indices - 1\n"));
    assert_non_null(strstr(b.data, "output %6 reverse"));
    mech_buf_free(&b);
    mech_rasp_program_free(p);
}

static void test_rasp_ir_sharing_names_encodings(void **state) {
    (void)state;
    mech_rasp_program *p = parse_ok("def fp(b) {\n"
                                    "  prevs = select(indices, indices, <=);\n"
                                    "  return numerical(aggregate(prevs, numerical(b), 0));\n"
                                    "}\n"
                                    "x = fp(tokens == \"a\");\n"
                                    "y = fp(tokens == \"b\");\n"
                                    "s1 = select(tokens, tokens, ==);\n"
                                    "s2 = select(tokens, tokens, ==);\n"
                                    "w = selector_width(s1) + selector_width(s2);\n"
                                    "n = numerical(tokens);\n"
                                    "out = (x, y, w, n);\n");
    // One shared `prevs` select; s1 and s2 are one node named s1.
    int selects = 0, prevs = 0;
    for (int i = 0; i < mech_rasp_program_n_nodes(p); i++) {
        const mech_rasp_node *n = mech_rasp_program_node(p, i);
        if (n->kind == MECH_RASP_SELECT) selects++;
        if (n->name && !strcmp(n->name, "prevs")) prevs++;
    }
    assert_int_equal(selects, 2);
    assert_int_equal(prevs, 1);
    assert_null(mech_rasp_program_find(p, "s2"));
    assert_int_equal(node(p, "s1")->kind, MECH_RASP_SELECT);
    // The top-level names win over the def's inner names.
    const mech_rasp_node *x = node(p, "x"), *y = node(p, "y");
    assert_int_equal(x->kind, MECH_RASP_AGGREGATE);
    assert_int_equal(x->enc, MECH_RASP_NUMERICAL);
    assert_true(x->value.type == MECH_RASP_FLOAT && x->value.f == 0);
    const mech_rasp_node *xin = mech_rasp_program_node(p, x->in[1]);
    assert_int_equal(xin->kind, MECH_RASP_MAP);
    assert_int_equal(xin->enc, MECH_RASP_NUMERICAL);
    assert_int_not_equal(x->id, y->id);
    // numerical(tokens) is an identity map marked numerical.
    const mech_rasp_node *n = node(p, "n");
    assert_int_equal(n->kind, MECH_RASP_MAP);
    assert_int_equal(n->enc, MECH_RASP_NUMERICAL);
    assert_int_equal(mech_rasp_program_node(p, n->in[0])->kind, MECH_RASP_TOKENS);
    // The selector widths are anonymous and labelled by kind and id.
    const mech_rasp_node *w = node(p, "w");
    assert_int_equal(w->kind, MECH_RASP_MAP); // both widths are the same node
    const mech_rasp_node *sw = mech_rasp_program_node(p, w->in[0]);
    assert_int_equal(sw->kind, MECH_RASP_SELECTOR_WIDTH);
    char want[32];
    snprintf(want, sizeof want, "selector_width_%d", sw->id);
    assert_string_equal(sw->label, want);
    mech_rasp_program_free(p);

    // A def called twice: its inner names get unique labels.
    p = parse_ok("def f(t) {\n  inner = t == \"a\";\n  return inner;\n}\nu = f(tokens) and f(indices);\n");
    assert_non_null(mech_rasp_program_find(p, "inner"));
    assert_non_null(mech_rasp_program_find(p, "inner_2"));
    assert_string_equal(node(p, "inner_2")->name, "inner");
    mech_rasp_program_free(p);

    // Causal flag, constant output node.
    p = parse_ok("causal true;\nk = 4;\n");
    assert_int_equal(mech_rasp_program_causal(p), 1);
    assert_int_equal(mech_rasp_program_n_nodes(p), 1);
    const mech_rasp_node *k = mech_rasp_program_node(p, 0);
    assert_int_equal(k->kind, MECH_RASP_CONST);
    assert_string_equal(k->label, "k");
    assert_int_equal(k->value.i, 4);
    mech_rasp_program_free(p);
}

static void test_rasp_lambda_eval_and_trace(void **state) {
    (void)state;
    mech_rasp_program *p = parse_ok("q = map(x -> 12 // x, indices);\nout = q;\n");
    const mech_rasp_node *q = node(p, "q");
    mech_rasp_heap *h = mech_rasp_heap_new();
    mech_rasp_value arg = mech_rasp_int(5), out;
    mech_err err = {0};
    assert_int_equal(mech_rasp_lambda_eval(q->fn, &arg, h, &out, NULL, &err), MECH_OK);
    assert_int_equal(out.type, MECH_RASP_INT);
    assert_int_equal(out.i, 2);
    arg = mech_rasp_int(0);
    mech_rasp_pos where = {0};
    assert_int_equal(mech_rasp_lambda_eval(q->fn, &arg, h, &out, &where, &err), MECH_ERR_TYPE);
    assert_string_equal(err.msg, "division by zero");
    assert_int_equal(where.line, 3);
    assert_int_equal(where.col, 17);
    // The compiler's messages use the same format.
    mech_rasp_error_at(p, q->pos, &err, MECH_ERR_TYPE, "'%s' is too big", q->label);
    assert_string_equal(err.msg, "t.rasp:3:5: error: 'q' is too big\nq = map(x -> 12 // x, indices);\n    ^");
    mech_rasp_heap_free(h);
    mech_rasp_program_free(p);

    // A trace holds every node's values and selectors.
    p = parse_ok("s = select(indices, indices, <);\nw = selector_width(s);\nout = w * 2;\n");
    mech_rasp_value in[3] = {mech_rasp_int(1), mech_rasp_int(2), mech_rasp_int(3)};
    mech_rasp_trace *t = NULL;
    assert_int_equal(mech_rasp_eval_trace(p, in, 3, &t, &err), MECH_OK);
    assert_int_equal(t->n, 3);
    const mech_rasp_node *s = node(p, "s"), *w = node(p, "w");
    assert_non_null(t->sel[s->id]);
    assert_null(t->sel[w->id]);
    // query 2 selects keys 0 and 1
    assert_int_equal(t->sel[s->id][2 * 3 + 0], 1);
    assert_int_equal(t->sel[s->id][2 * 3 + 1], 1);
    assert_int_equal(t->sel[s->id][2 * 3 + 2], 0);
    assert_int_equal(t->vals[w->id * 3 + 2].i, 2);
    assert_int_equal(t->vals[mech_rasp_program_output(p) * 3 + 2].i, 4);
    mech_rasp_trace_free(t);
    mech_rasp_trace_free(NULL);
    // Inputs are checked.
    mech_rasp_value bad = mech_rasp_int(9);
    mech_rasp_value *res = NULL;
    assert_int_equal(mech_rasp_eval(p, &bad, 1, &res, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "input token 9 at position 0 is not in the vocab {\"a\", \"b\", \"c\", \"d\", 1, 2, 3}"));
    mech_rasp_value seven[7] = {in[0], in[0], in[0], in[0], in[0], in[0], in[0]};
    assert_int_equal(mech_rasp_eval(p, seven, 7, &res, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "7 tokens, more than max_seq_len 6"));
    assert_null(res);
    mech_rasp_program_free(p);
    mech_rasp_program_free(NULL);
}

static void test_rasp_input_parse(void **state) {
    (void)state;
    mech_rasp_program *p = parse_ok("vocab {a, \"(\", \"x y\", 7, -2, \"7\", if};\nmax_seq_len 8;\nout = tokens;\n");
    mech_rasp_value *v = NULL;
    size_t n = 0;
    mech_err err = {0};
    assert_int_equal(mech_rasp_input_parse(p, "  a ( 7 '7' \"x y\" -2 if\t", &v, &n, &err), MECH_OK);
    assert_int_equal(n, 7);
    mech_buf b = {0};
    mech_rasp_values_json(&b, v, n);
    assert_string_equal(b.data, "[\"a\",\"(\",7,\"7\",\"x y\",-2,\"if\"]");
    mech_free(v);
    assert_int_equal(mech_rasp_input_parse(p, "", &v, &n, &err), MECH_OK);
    assert_int_equal(n, 0);
    mech_free(v);
    assert_int_equal(mech_rasp_input_parse(p, "a zz", &v, &n, &err), MECH_ERR_RANGE);
    assert_string_equal(err.msg, "t.rasp: input token 'zz' (item 2) is not in the vocab {\"a\", \"(\", \"x y\", 7, -2, "
                                 "\"7\", \"if\"}");
    assert_null(v);
    assert_int_equal(mech_rasp_input_parse(p, "a a a a a a a a a", &v, &n, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "more than max_seq_len 8"));
    assert_int_equal(mech_rasp_input_parse(p, "'a", &v, &n, &err), MECH_ERR_RANGE);
    assert_non_null(strstr(err.msg, "unterminated quote"));
    assert_int_equal(mech_rasp_input_parse(p, "8", &v, &n, &err), MECH_ERR_RANGE);
    mech_buf_free(&b);
    mech_rasp_program_free(p);
}

// ---------------------------------------------------------------------------
// Errors: (program, input or NULL, status, message) -- the message must
// appear in err.msg (programs are parsed as t.rasp with HEADER unless they
// have a vocab, so their own lines start at 3).

typedef struct err_case {
    const char *src, *input;
    mech_status code;
    const char *want;
} err_case;

static void run_errors(const err_case *cases, size_t n) {
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        mech_status st;
        char *got = run(cases[i].src, cases[i].input ? cases[i].input : "a", &st);
        if (st != cases[i].code || !strstr(got, cases[i].want)) {
            fprintf(stderr, "  program:\n%s\n    got (%s):\n%s\n    want (%s): %s\n", cases[i].src, mech_strerror(st),
                    got, mech_strerror(cases[i].code), cases[i].want);
            bad++;
        }
        free(got);
    }
    if (bad) fail_msg("%d of %zu error cases wrong", bad, n);
}

static void test_rasp_syntax_errors(void **state) {
    (void)state;
    static const err_case cases[] = {
        {"x = (tokens;", NULL, MECH_ERR_PARSE,
         "t.rasp:3:12: error: expected ')' to close the parenthesis, got ';'\nx = (tokens;\n           ^"},
        {"x = 1 +;", NULL, MECH_ERR_PARSE, "t.rasp:3:8: error: expected an expression, got ';'"},
        {"x = tokens", NULL, MECH_ERR_PARSE, "t.rasp:3:11: error: expected ';' after the assignment, got end of file"},
        {"x = \"abc;\n", NULL, MECH_ERR_PARSE, "t.rasp:3:5: error: unterminated string"},
        {"x = \"a\\qb\";", NULL, MECH_ERR_PARSE, "t.rasp:3:7: error: unknown escape '\\q'"},
        {"x = $;", NULL, MECH_ERR_PARSE, "t.rasp:3:5: error: unexpected character '$'"},
        {"x = 1 < 2 < 3;", NULL, MECH_ERR_PARSE, "t.rasp:3:11: error: comparisons do not chain"},
        {"x = 1 == 2 in (1,);", NULL, MECH_ERR_PARSE, "t.rasp:3:12: error: comparisons do not chain"},
        {"def f(x) { return x; ", NULL, MECH_ERR_PARSE, "t.rasp:3:21: error: expected '}' to close the function's body, got end of file"},
        {"x = tokens\n\n", NULL, MECH_ERR_PARSE, "t.rasp:3:11: error: expected ';' after the assignment, got end of file\nx = tokens\n          ^"},
        {"x = tokens  # no semicolon\ny = indices;", NULL, MECH_ERR_PARSE,
         "t.rasp:3:11: error: expected ';' after the assignment, before 'y' on line 4\nx = tokens  # no semicolon\n          ^"},
        {"def f(x) { y = x; }", NULL, MECH_ERR_PARSE, "t.rasp:3:19: error: expected 'return EXPR;' at the end"},
        {"def f(x) { return x; y = 1; }", NULL, MECH_ERR_PARSE, "t.rasp:3:22: error: 'return' must be the last statement"},
        {"def f(x) { def g(y) { return y; } return x; }", NULL, MECH_ERR_PARSE, "t.rasp:3:12: error: a def cannot be nested"},
        {"def f(x) { output x; return x; }", NULL, MECH_ERR_PARSE, "t.rasp:3:12: error: 'output' is a pragma"},
        {"return 1;", NULL, MECH_ERR_PARSE, "t.rasp:3:1: error: 'return' outside a def"},
        {"vocab {a, b\nmax_seq_len 3;", NULL, MECH_ERR_PARSE, "t.rasp:1:12: error: expected '}' to close the vocab, before 'max_seq_len' on line 2"},
        {"vocab {a, (};\nmax_seq_len 3;", NULL, MECH_ERR_PARSE, "t.rasp:1:11: error: expected a vocab item"},
        {"vocab {a};\nmax_seq_len x;", NULL, MECH_ERR_PARSE, "t.rasp:2:13: error: expected an integer after 'max_seq_len', got 'x'"},
        {"causal maybe;", NULL, MECH_ERR_PARSE, "t.rasp:3:8: error: expected 'true' or 'false' after 'causal'"},
        {"output 3;", NULL, MECH_ERR_PARSE, "t.rasp:3:8: error: expected a variable name after 'output', got '3'"},
        {"foo bar;", NULL, MECH_ERR_PARSE, "t.rasp:3:5: error: expected '=' after 'foo', got 'bar'"},
        {"if = 3;", NULL, MECH_ERR_PARSE, "t.rasp:3:1: error: expected a statement (an assignment, a def or a pragma), got 'if'"},
        {"x = 99999999999999999999;", NULL, MECH_ERR_PARSE, "t.rasp:3:5: error: integer literal 99999999999999999999 does not fit"},
        {"x = 1e999;", NULL, MECH_ERR_PARSE, "t.rasp:3:5: error: float literal 1e999 is out of range"},
        {"x = 12abc;", NULL, MECH_ERR_PARSE, "t.rasp:3:7: error: invalid character 'a' in number"},
        {"x = 1 if 2;", NULL, MECH_ERR_PARSE, "t.rasp:3:11: error: expected 'else' in 'x if c else y', got ';'"},
        {"x = (a, b;", NULL, MECH_ERR_PARSE, "t.rasp:3:10: error: expected ')' to close the tuple, got ';'"},
        {"x = map(x -> , tokens);", NULL, MECH_ERR_PARSE, "t.rasp:3:14: error: expected an expression, got ','"},
        {"x = select(tokens, tokens, ==;", NULL, MECH_ERR_PARSE, "t.rasp:3:28: error: expected an expression, got '=='"},
        {"x = tokens[1;", NULL, MECH_ERR_PARSE, "t.rasp:3:13: error: expected ']' to close the index"},
        {"def 3() {}", NULL, MECH_ERR_PARSE, "t.rasp:3:5: error: expected the function's name after 'def', got '3'"},
        {"def f(x, def) { return x; }", NULL, MECH_ERR_PARSE, "t.rasp:3:10: error: expected a parameter name, got keyword 'def'"},
        {"x = \x01;", NULL, MECH_ERR_PARSE, "t.rasp:3:5: error: unexpected byte 0x01"},
        {"x = 1;\n\n   y = ] ;", NULL, MECH_ERR_PARSE, "t.rasp:5:8: error: expected an expression, got ']'\n   y = ] ;\n       ^"},
        {"\tx = ];", NULL, MECH_ERR_PARSE, "t.rasp:3:6: error: expected an expression, got ']'\n\tx = ];\n\t    ^"},
    };
    run_errors(cases, sizeof cases / sizeof *cases);

    // Nesting deeper than the limit is an error, not a stack overflow.
    mech_buf deep = {0};
    mech_buf_puts(&deep, "x = ");
    for (int i = 0; i < 5000; i++) mech_buf_puts(&deep, "(");
    mech_buf_puts(&deep, "1");
    for (int i = 0; i < 5000; i++) mech_buf_puts(&deep, ")");
    mech_buf_puts(&deep, ";");
    mech_status st;
    char *got = run(deep.data, "a", &st);
    assert_int_equal(st, MECH_ERR_PARSE);
    assert_non_null(strstr(got, "expression nested deeper than 1000"));
    free(got);
    deep.len = 0;
    mech_buf_puts(&deep, "x = ");
    for (int i = 0; i < 5000; i++) mech_buf_puts(&deep, "not -");
    mech_buf_puts(&deep, "1;");
    got = run(deep.data, "a", &st);
    assert_int_equal(st, MECH_ERR_PARSE);
    free(got);
    mech_buf_free(&deep);
}

static void test_rasp_type_errors(void **state) {
    (void)state;
    static const err_case cases[] = {
        {"x = tokns == \"a\";", NULL, MECH_ERR_TYPE,
         "t.rasp:3:5: error: unknown name 'tokns' (did you mean 'tokens'?)\nx = tokns == \"a\";\n    ^"},
        {"x = zzz;", NULL, MECH_ERR_TYPE, "t.rasp:3:5: error: unknown name 'zzz'"},
        {"x = selct(tokens, tokens, ==);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:5: error: unknown function 'selct' (did you mean 'select'?)"},
        {"x = select(tokens, tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:5: error: select takes 3 arguments (keys, queries, predicate), got 2"},
        {"x = aggregate(select(tokens, tokens, ==));", NULL, MECH_ERR_TYPE, "aggregate takes 2 or 3 arguments"},
        {"x = selector_width(1, 2);", NULL, MECH_ERR_TYPE, "selector_width takes 1 argument (a selector), got 2"},
        {"x = abs(1, 2);", NULL, MECH_ERR_TYPE, "t.rasp:3:5: error: abs takes 1 argument, got 2"},
        {"x = round();", NULL, MECH_ERR_TYPE, "round takes 1 or 2 arguments, got 0"},
        {"def f(a, b) { return a; }\nx = f(tokens);", NULL, MECH_ERR_TYPE, "t.rasp:4:5: error: 'f' takes 2 arguments, got 1"},
        {"def f(x) { return f(x); }\ny = f(tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:19: error: recursive call to 'f': defs are expanded at each call, so they cannot call themselves"},
        {"def f(x) { return g(x); }\ndef g(x) { return f(x); }\ny = f(tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:4:19: error: recursive call to 'f'"},
        {"x = g(1);\ndef g(x) { return x; }", NULL, MECH_ERR_TYPE, "t.rasp:3:5: error: unknown function 'g'"},
        {"x = map((a, b) -> a, tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:9: error: map needs a lambda of 1 parameter, but this one has 2"},
        {"x = zipmap((a, b) -> a, tokens, indices, length);", NULL, MECH_ERR_TYPE,
         "zipmap needs a lambda of 3 parameters, but this one has 2"},
        {"x = zipmap((a, a) -> a, tokens, indices);", NULL, MECH_ERR_TYPE, "t.rasp:3:16: error: duplicate parameter 'a'"},
        {"x = map(tokens, tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:9: error: map's first argument must be a lambda such as x -> x + 1, got an s-op"},
        {"x = map(x -> x + indices, tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:18: error: the lambda's body refers to s-op 'indices'"},
        {"y = tokens;\nx = map(q -> q + y, tokens);", NULL, MECH_ERR_TYPE, "the lambda's body refers to s-op 'y'"},
        {"x = map(q -> select(q, q, ==), tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:14: error: select() cannot be called inside a lambda"},
        {"x = map(q -> (r -> r), tokens);", NULL, MECH_ERR_TYPE, "t.rasp:3:15: error: lambdas cannot be nested"},
        {"x = select(tokens, tokens, ==) + 1;", NULL, MECH_ERR_TYPE,
         "t.rasp:3:32: error: a selector cannot be used in an expression"},
        {"x = select(tokens, tokens, ==) and tokens;", NULL, MECH_ERR_TYPE,
         "t.rasp:3:32: error: 'and' combines two selectors or two values, not a selector and an s-op"},
        {"x = aggregate(tokens, tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:15: error: aggregate's first argument must be a selector (made by select), got an s-op"},
        {"x = aggregate(select(tokens, tokens, ==), select(tokens, tokens, ==));", NULL, MECH_ERR_TYPE,
         "aggregate's second argument must be an s-op, got a selector"},
        {"x = aggregate(select(tokens, tokens, ==), tokens, tokens);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:51: error: aggregate's default must be a constant, got an s-op"},
        {"x = selector_width(tokens);", NULL, MECH_ERR_TYPE, "selector_width's argument must be a selector"},
        {"x = select(tokens, tokens, 3);", NULL, MECH_ERR_TYPE,
         "t.rasp:3:28: error: select's predicate must be ==, !=, <, <=, >, >=, true, false or a lambda"},
        {"x = select(tokens, tokens, k -> k);", NULL, MECH_ERR_TYPE, "select needs a lambda of 2 parameters"},
        {"x = select(==, tokens, ==);", NULL, MECH_ERR_TYPE, "select's keys must be an s-op, got a bare comparison operator"},
        {"x = tokens + (y -> y);", NULL, MECH_ERR_TYPE, "a lambda is only allowed as the first argument of map or zipmap"},
        {"f = x -> x;\noutput f;", NULL, MECH_ERR_TYPE, "t.rasp:4:8: error: the output 'f' must be an s-op, but it is a lambda"},
        {"s = select(tokens, tokens, ==);", NULL, MECH_ERR_TYPE, "t.rasp:3:1: error: the output 's' must be an s-op, but it is a selector"},
        {"x = 1;\noutput y;", NULL, MECH_ERR_TYPE, "t.rasp:4:8: error: unknown name 'y'"},
        {"x = 1 if select(tokens, tokens, ==) else 2;", NULL, MECH_ERR_TYPE, "the condition of 'x if c else y' cannot be a selector"},
        {"x = select;", NULL, MECH_ERR_TYPE, "t.rasp:3:5: error: 'select' is a function: call it as select(...)"},
        {"x = tokens(1);", NULL, MECH_ERR_TYPE, "t.rasp:3:5: error: 'tokens' is not a function"},
        {"tokens = 1;", NULL, MECH_ERR_TYPE, "t.rasp:3:1: error: cannot assign to the built-in 'tokens'"},
        {"max_seq_len = 1;", NULL, MECH_ERR_TYPE, "cannot assign to the built-in 'max_seq_len'"},
        {"map = 1;", NULL, MECH_ERR_TYPE, "cannot assign to 'map': it is a built-in function"},
        {"def select(x) { return x; }", NULL, MECH_ERR_TYPE, "t.rasp:3:5: error: cannot define 'select': it is a built-in function"},
        {"def f(x) { return x; }\ndef f(y) { return y; }", NULL, MECH_ERR_TYPE, "t.rasp:4:5: error: 'f' is already defined on line 3"},
        {"def f(x, x) { return x; }", NULL, MECH_ERR_TYPE, "t.rasp:3:10: error: duplicate parameter 'x'"},
        {"def f(x) { return x; }\nf = 1;", NULL, MECH_ERR_TYPE, "cannot assign to 'f': it is a def"},
        {"x = 1 / 0;", NULL, MECH_ERR_TYPE, "t.rasp:3:7: error: division by zero\nx = 1 / 0;\n      ^"},
        {"x = (1, 2)[5];", NULL, MECH_ERR_TYPE, "t.rasp:3:11: error: index 5 out of range for tuple (1, 2) of length 2"},
        {"x = \"a\" + 1;", NULL, MECH_ERR_TYPE, "unsupported operand types for +: str \"a\" and int 1"},
        {"x = \"a\" < 1;", NULL, MECH_ERR_TYPE, "cannot compare str \"a\" and int 1 with <"},
        {"x = 9223372036854775807 + 1;", NULL, MECH_ERR_TYPE, "integer overflow"},
        {"x = 1e300 * 1e300;", NULL, MECH_ERR_TYPE, "float overflow"},
        {"x = round(\"a\");", NULL, MECH_ERR_TYPE, "round() needs a number, got str \"a\""},
        {"x = min(());", NULL, MECH_ERR_TYPE, "min() of an empty tuple"},
        {"x = int(\"z\");", NULL, MECH_ERR_TYPE, "int() cannot convert str \"z\""},
        {"x = 1 in 2;", NULL, MECH_ERR_TYPE, "'in' needs a tuple or str on the right, got int 2"},
    };
    run_errors(cases, sizeof cases / sizeof *cases);

    static const err_case pragma_cases[] = {
        {"# no vocab\nmax_seq_len 3;\nx = 1;", NULL, MECH_ERR_TYPE, "t.rasp:1:1: error: the program has no vocab pragma"},
        {"vocab {a};\nx = 1;", NULL, MECH_ERR_TYPE, "t.rasp:1:1: error: the program has no max_seq_len pragma"},
        {"vocab {a, b, a};\nmax_seq_len 3;\nx = 1;", NULL, MECH_ERR_TYPE, "t.rasp:1:14: error: \"a\" appears twice in the vocab"},
        {"vocab {1, \"1\", -1, 01};\nmax_seq_len 3;\nx = 1;", NULL, MECH_ERR_TYPE, "t.rasp:1:20: error: 1 appears twice in the vocab"},
        {"vocab {};\nmax_seq_len 3;\nx = 1;", NULL, MECH_ERR_TYPE, "t.rasp:1:1: error: the vocab is empty"},
        {"vocab {a};\nmax_seq_len 0;\nx = 1;", NULL, MECH_ERR_TYPE, "t.rasp:2:13: error: max_seq_len must be from 1 to 4096, got 0"},
        {"vocab {a};\nmax_seq_len 3;\nmax_seq_len 4;\nx = 1;", NULL, MECH_ERR_TYPE,
         "t.rasp:3:1: error: duplicate pragma (the first one is on line 2)"},
        {"vocab {a};\nmax_seq_len 3;\ndef f(x) { return x; }", NULL, MECH_ERR_TYPE,
         "t.rasp:1:1: error: the program assigns nothing, so it has no output"},
    };
    run_errors(pragma_cases, sizeof pragma_cases / sizeof *pragma_cases);
}

static void test_rasp_runtime_errors(void **state) {
    (void)state;
    static const err_case cases[] = {
        {"x = aggregate(select(tokens, tokens, true), tokens);", "a a b", MECH_ERR_TYPE,
         "t.rasp:3:5: error: in 'x': categorical aggregate at position 0 selects differing values: key 0 holds \"a\", "
         "key 2 holds \"b\""},
        {"x = 1;\ny = aggregate(select(indices, indices, <), indices);", "a b c", MECH_ERR_TYPE,
         "t.rasp:4:5: error: in 'y': categorical aggregate at position 2 selects differing values: key 0 holds 0, key 1 holds 1"},
        {"q = map(x -> 10 // x, indices);", "a b", MECH_ERR_TYPE,
         "t.rasp:3:17: error: in 'q': division by zero at position 0 (x = 0)\nq = map(x -> 10 // x, indices);\n                ^"},
        {"q = indices + 1;\nr = 6 // (q - 2);", "a b c", MECH_ERR_TYPE, "t.rasp:4:7: error: in 'r': division by zero at position 1 (q = 2)"},
        {"q = zipmap((t, i) -> t + i, tokens, indices);", "a", MECH_ERR_TYPE,
         "t.rasp:3:24: error: in 'q': unsupported operand types for +: str \"a\" and int 0 at position 0 (t = \"a\", i = 0)"},
        {"q = map(x -> (1, 2)[x], indices);", "a b c", MECH_ERR_TYPE, "index 2 out of range for tuple (1, 2) of length 2 at position 2 (x = 2)"},
        {"s = select(indices, indices, (k, q) -> q // k > 0);\nw = selector_width(s);", "a b", MECH_ERR_TYPE,
         "t.rasp:3:42: error: in 's': division by zero at query 0, key 0 (k = 0, q = 0)"},
        {"w = selector_width(select(tokens, indices, <));", "a b", MECH_ERR_TYPE,
         "t.rasp:3:20: error: in 'w': select < fails at query 0, key 0: cannot compare str \"a\" and int 0 with <"},
        {"m = aggregate(select(indices, indices, true), numerical(tokens));", "1 a", MECH_ERR_TYPE,
         "in 'm': numerical aggregate at position 0 selects key 1, which holds \"a\""},
        {"x = indices if tokens == \"a\" else 1 / 0;", "a b", MECH_ERR_TYPE, "t.rasp:3:37: error: in 'x': division by zero at position 1"},
        {"x = tokens + 1 / 0;", "a", MECH_ERR_TYPE, "t.rasp:3:16: error: in 'x': division by zero at position 0"},
        {"def f(v) { inner = map(x -> 1 // x, v); return inner; }\nout = f(indices);", "a", MECH_ERR_TYPE,
         "t.rasp:3:31: error: in 'out': division by zero at position 0 (x = 0)"},
        {"x = map(x -> x * 4611686018427387904, indices);", "a b c", MECH_ERR_TYPE, "integer overflow (ints are 64-bit) at position 2 (x = 2)"},
    };
    run_errors(cases, sizeof cases / sizeof *cases);
}

static void test_rasp_bad_arguments(void **state) {
    (void)state;
    mech_err err = {0};
    mech_rasp_program *p = (mech_rasp_program *)1;
    assert_int_equal(mech_rasp_parse("t", NULL, 3, &p, &err), MECH_ERR_ARG);
    assert_null(p);
    assert_int_equal(mech_rasp_parse("t", "x", 1, NULL, &err), MECH_ERR_ARG);
    // No err: the status still says what failed.
    assert_int_equal(mech_rasp_parse(NULL, "x = ;", 5, &p, NULL), MECH_ERR_PARSE);
    assert_int_equal(mech_rasp_parse(NULL, "", 0, &p, &err), MECH_ERR_TYPE);
    assert_non_null(strstr(err.msg, "<input>:1:1: error: the program has no vocab pragma"));
    assert_int_equal(mech_rasp_load("/nonexistent/x.rasp", &p, &err), MECH_ERR_IO);
    // The source may contain NUL bytes and need not be NUL-terminated.
    char src[] = "vocab {a};\nmax_seq_len 2;\nx = \0;";
    assert_int_equal(mech_rasp_parse("t", src, sizeof src - 1, &p, &err), MECH_ERR_PARSE);
    assert_non_null(strstr(err.msg, "t:3:5: error: unexpected byte 0x00"));
    const char *nonul = "vocab {a};\nmax_seq_len 2;\nx = 1;xxxx";
    assert_int_equal(mech_rasp_parse("t", nonul, strlen(nonul) - 4, &p, &err), MECH_OK);
    mech_rasp_program_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rasp_value_json),
        cmocka_unit_test(test_rasp_value_equality_hash_order),
        cmocka_unit_test(test_rasp_constant_expressions),
        cmocka_unit_test(test_rasp_lambda_expressions),
        cmocka_unit_test(test_rasp_builtins_and_operators),
        cmocka_unit_test(test_rasp_map_zipmap),
        cmocka_unit_test(test_rasp_none_propagation),
        cmocka_unit_test(test_rasp_select_predicates),
        cmocka_unit_test(test_rasp_selector_logic),
        cmocka_unit_test(test_rasp_aggregate),
        cmocka_unit_test(test_rasp_causal),
        cmocka_unit_test(test_rasp_defs),
        cmocka_unit_test(test_rasp_encodings),
        cmocka_unit_test(test_rasp_ir_reverse),
        cmocka_unit_test(test_rasp_ir_sharing_names_encodings),
        cmocka_unit_test(test_rasp_lambda_eval_and_trace),
        cmocka_unit_test(test_rasp_input_parse),
        cmocka_unit_test(test_rasp_syntax_errors),
        cmocka_unit_test(test_rasp_type_errors),
        cmocka_unit_test(test_rasp_runtime_errors),
        cmocka_unit_test(test_rasp_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
