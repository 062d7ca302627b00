/*
** tests/test_compiler_rasp_examples.c: the programs in examples/rasp/ (Tracr's
** lib.py ported to the text syntax) on inputs whose outputs are worked out
** by hand from what each program means, and the parser's robustness: every
** prefix of every example, and thousands of seeded mutations of them, must
** parse or fail with a positioned message, and never crash (the suite runs
** under ASan + UBSan with `make test SANITIZE=1`).
** Run from the repository root (make test does).
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

typedef struct example_case {
    const char *file, *input, *want;
} example_case;

// Expected outputs, by hand:
static const example_case cases[] = {
    // length: the number of tokens, everywhere.
    {"length", "a b c", "[3,3,3]"},
    {"length", "a", "[1]"},
    {"length", "a b c d a", "[5,5,5,5,5]"},
    {"length", "", "[]"},
    // reverse: the input backwards.
    {"reverse", "a b c d", "[\"d\",\"c\",\"b\",\"a\"]"},
    {"reverse", "a b c", "[\"c\",\"b\",\"a\"]"},
    {"reverse", "a d", "[\"d\",\"a\"]"},
    {"reverse", "c", "[\"c\"]"},
    {"reverse", "a a b", "[\"b\",\"a\",\"a\"]"},
    // hist: occurrences of each position's token.
    {"hist", "a b a c", "[2,1,2,1]"},
    {"hist", "d d d", "[3,3,3]"},
    {"hist", "a b c d", "[1,1,1,1]"},
    {"hist", "b a b a b", "[3,2,3,2,3]"},
    // sort_unique: distinct keys in increasing order.
    {"sort_unique", "2 4 3 1", "[1,2,3,4]"},
    {"sort_unique", "4 3 2 1", "[1,2,3,4]"},
    {"sort_unique", "3 1", "[1,3]"},
    {"sort_unique", "2", "[2]"},
    // sort: duplicates allowed.
    {"sort", "2 4 1 2", "[1,2,2,4]"},
    {"sort", "2 4 3 1", "[1,2,3,4]"},
    {"sort", "3 3 3", "[3,3,3]"},
    {"sort", "4 1 4 1 2", "[1,1,2,4,4]"},
    // sort_freq: most frequent first, ties in input order.
    {"sort_freq", "2 4 2 1", "[2,2,4,1]"},
    {"sort_freq", "1 2 2 3 3", "[2,2,3,3,1]"},
    {"sort_freq", "4 3 3 3", "[3,3,3,4]"},
    {"sort_freq", "1 2 3", "[1,2,3]"},
    // frac_prevs: fraction of "l" so far.
    {"frac_prevs", "h e l l o", "[0,0,0.333333,0.5,0.4]"},
    {"frac_prevs", "l l", "[1,1]"},
    {"frac_prevs", "h e", "[0,0]"},
    {"frac_prevs", "l o l", "[1,0.5,0.666667]"},
    // pair_balance: fraction of "(" minus fraction of ")" so far.
    {"pair_balance", "a ( ) b ( c ) )", "[0,0.5,0,0,0.2,0.166667,0,-0.125]"},
    {"pair_balance", "( (", "[1,1]"},
    {"pair_balance", ") (", "[-1,0]"},
    {"pair_balance", "a b c", "[0,0,0]"},
    // shift_by 1: none first.
    {"shift_by", "a b c d", "[null,\"a\",\"b\",\"c\"]"},
    {"shift_by", "d", "[null]"},
    {"shift_by", "b a", "[null,\"b\"]"},
    // detect_pattern a b c: true where it ends, none where it cannot fit.
    {"detect_pattern", "a b c a b c", "[null,null,true,false,false,true]"},
    {"detect_pattern", "a b c", "[null,null,true]"},
    {"detect_pattern", "c b a c", "[null,null,false,false]"},
    {"detect_pattern", "a b", "[null,null]"},
    {"detect_pattern", "b a b c", "[null,null,false,true]"},
    // shuffle_dyck1: balanced parentheses.
    {"shuffle_dyck1", "( )", "[true,true]"},
    {"shuffle_dyck1", "( ( ) )", "[true,true,true,true]"},
    {"shuffle_dyck1", "( ) ( )", "[true,true,true,true]"},
    {"shuffle_dyck1", ") (", "[false,false]"},
    {"shuffle_dyck1", "( ( )", "[false,false,false]"},
    {"shuffle_dyck1", "(", "[false]"},
    {"shuffle_dyck1", "( ) ) ( ( )", "[false,false,false,false,false,false]"},
    // shuffle_dyck2: a shuffle of balanced () and {} (Tracr's test cases first).
    {"shuffle_dyck2", "( { ) }", "[true,true,true,true]"},
    {"shuffle_dyck2", "( ) { ) }", "[false,false,false,false,false]"},
    {"shuffle_dyck2", "{ } (", "[false,false,false]"},
    {"shuffle_dyck2", "( { } )", "[true,true,true,true]"},
    {"shuffle_dyck2", "( } { )", "[false,false,false,false]"},
    // shuffle_dyck3: (), {}, [] with max_seq_len 6.
    {"shuffle_dyck3", "( { ) [ } ]", "[true,true,true,true,true,true]"},
    {"shuffle_dyck3", "( ) { ) }", "[false,false,false,false,false]"},
    {"shuffle_dyck3", "{ } [ ( ]", "[false,false,false,false,false]"},
    {"shuffle_dyck3", "[ ( ) ]", "[true,true,true,true]"},
    {"shuffle_dyck3", "[ ] ( ) { }", "[true,true,true,true,true,true]"},
    {"shuffle_dyck3", "] [", "[false,false]"},
};

static const char *const files[] = {"length", "reverse", "hist", "sort_unique", "sort", "sort_freq", "frac_prevs",
                                    "pair_balance", "shift_by", "detect_pattern", "shuffle_dyck1", "shuffle_dyck2",
                                    "shuffle_dyck3"};
#define N_FILES (sizeof files / sizeof *files)

static char *read_example(const char *name, size_t *len) {
    char path[256];
    snprintf(path, sizeof path, "examples/rasp/%s.rasp", name);
    char *src = mech_test_read(path, len);
    return src;
}

static mech_rasp_program *load(const char *name) {
    char path[256];
    snprintf(path, sizeof path, "examples/rasp/%s.rasp", name);
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    if (mech_rasp_load(path, &p, &err)) fail_msg("%s: %s", path, err.msg);
    return p;
}

static void test_rasp_examples_outputs(void **state) {
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mech_rasp_program *p = load(cases[i].file);
        mech_err err = {0};
        mech_rasp_value *in = NULL, *out = NULL;
        size_t n = 0;
        mech_buf b = {0};
        if (mech_rasp_input_parse(p, cases[i].input, &in, &n, &err) || mech_rasp_eval(p, in, n, &out, &err))
            mech_buf_printf(&b, "error: %s", err.msg);
        else
            mech_rasp_values_json(&b, out, n);
        if (strcmp(b.data, cases[i].want)) {
            fprintf(stderr, "  %s(%s)\n    got:  %s\n    want: %s\n", cases[i].file, cases[i].input, b.data, cases[i].want);
            bad++;
        }
        mech_buf_free(&b);
        mech_free(in);
        mech_free(out);
        mech_rasp_program_free(p);
    }
    if (bad) fail_msg("%d example outputs wrong", bad);
}

// Every example is covered above; its pragmas and output are as documented.
static void test_rasp_examples_shape(void **state) {
    (void)state;
    static const struct { const char *file, *output; int max_seq_len; size_t n_vocab; } shape[] = {
        {"length", "length", 5, 4},           {"reverse", "reverse", 5, 4},
        {"hist", "hist", 5, 4},               {"sort_unique", "sort", 5, 4},
        {"sort", "sort", 5, 4},               {"sort_freq", "sort_freq", 5, 4},
        {"frac_prevs", "frac_l", 5, 4},       {"pair_balance", "balance", 10, 5},
        {"shift_by", "shift", 5, 4},          {"detect_pattern", "pattern_detected", 6, 3},
        {"shuffle_dyck1", "shuffle_dyck", 6, 2}, {"shuffle_dyck2", "shuffle_dyck", 5, 4},
        {"shuffle_dyck3", "shuffle_dyck", 6, 6},
    };
    assert_int_equal(sizeof shape / sizeof *shape, N_FILES);
    for (size_t i = 0; i < N_FILES; i++) {
        int tested = 0;
        for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) tested += !strcmp(cases[k].file, files[i]);
        if (tested < 3) fail_msg("%s has only %d test inputs", files[i], tested);
        mech_rasp_program *p = load(shape[i].file);
        size_t nv;
        mech_rasp_program_vocab(p, &nv);
        assert_int_equal(nv, shape[i].n_vocab);
        assert_int_equal(mech_rasp_program_max_seq_len(p), shape[i].max_seq_len);
        assert_int_equal(mech_rasp_program_causal(p), 0);
        const mech_rasp_node *out = mech_rasp_program_node(p, mech_rasp_program_output(p));
        if (strcmp(out->label, shape[i].output)) fail_msg("%s: output %s, want %s", files[i], out->label, shape[i].output);
        mech_rasp_program_free(p);
    }
    // frac_prevs is a numerical aggregate of a numerical map, as in Tracr.
    mech_rasp_program *p = load("frac_prevs");
    const mech_rasp_node *f = mech_rasp_program_node(p, mech_rasp_program_output(p));
    assert_int_equal(f->kind, MECH_RASP_AGGREGATE);
    assert_int_equal(f->enc, MECH_RASP_NUMERICAL);
    const mech_rasp_node *bools = mech_rasp_program_node(p, f->in[1]);
    assert_int_equal(bools->kind, MECH_RASP_MAP);
    assert_int_equal(bools->enc, MECH_RASP_NUMERICAL);
    assert_int_equal(mech_rasp_program_node(p, f->in[0])->pred, MECH_RASP_PRED_LE);
    mech_rasp_program_free(p);
    // shuffle_dyck2 shares one prefix selector between its four frac_prevs.
    p = load("shuffle_dyck2");
    int le = 0;
    for (int i = 0; i < mech_rasp_program_n_nodes(p); i++) {
        const mech_rasp_node *x = mech_rasp_program_node(p, i);
        le += x->kind == MECH_RASP_SELECT && x->pred == MECH_RASP_PRED_LE;
    }
    assert_int_equal(le, 1);
    assert_non_null(mech_rasp_program_find(p, "balance_1"));
    assert_non_null(mech_rasp_program_find(p, "balance_2"));
    assert_non_null(mech_rasp_program_find(p, "opens_2"));
    mech_rasp_program_free(p);
}

// Parses src[0..len) and, when it parses, runs it on a few inputs made of
// its vocab. Whatever happens must be a clean status with a message.
static void parse_and_run(const char *src, size_t len, const char *what) {
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_status st = mech_rasp_parse("m.rasp", src, len, &p, &err);
    if (st) {
        if (st != MECH_ERR_PARSE && st != MECH_ERR_TYPE) fail_msg("%s: status %s: %s", what, mech_strerror(st), err.msg);
        if (strncmp(err.msg, "m.rasp:", 7) || !strstr(err.msg, ": error: "))
            fail_msg("%s: message without a position: %s", what, err.msg);
        assert_null(p);
        return;
    }
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int n = mech_rasp_program_max_seq_len(p);
    if (n > 6) n = 6;
    mech_rasp_value in[6];
    for (int round = 0; round < 3; round++) {
        for (int j = 0; j < n; j++) in[j] = vocab[(size_t)(j * (round + 1) + round) % nv];
        mech_rasp_value *out = NULL;
        st = mech_rasp_eval(p, in, (size_t)(n - round > 0 ? n - round : 0), &out, &err);
        if (st && st != MECH_ERR_TYPE) fail_msg("%s: eval status %s: %s", what, mech_strerror(st), err.msg);
        if (st && strncmp(err.msg, "m.rasp:", 7)) fail_msg("%s: eval message without a position: %s", what, err.msg);
        mech_free(out);
    }
    mech_buf b = {0};
    mech_rasp_program_dump(&b, p);
    assert_false(b.oom);
    mech_buf_free(&b);
    mech_rasp_program_free(p);
}

static void test_rasp_examples_every_prefix(void **state) {
    (void)state;
    for (size_t i = 0; i < N_FILES; i++) {
        size_t len;
        char *src = read_example(files[i], &len);
        for (size_t k = 0; k <= len; k++) {
            // A copy of exactly k bytes, so ASan sees any read past the end.
            char *prefix = malloc(k ? k : 1);
            memcpy(prefix, src, k);
            char what[64];
            snprintf(what, sizeof what, "%s[:%zu]", files[i], k);
            parse_and_run(prefix, k, what);
            free(prefix);
        }
        free(src);
    }
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_rasp_examples_mutations(void **state) {
    (void)state;
    static const char *const pieces[] = {
        "(", ")", ",", ";", "def", "select(", "aggregate(", "numerical(", "categorical(", "map(", "zipmap(",
        "selector_width(", "->", "\"", "'", "#", "tokens", "indices", "length", "0", "-1", "1e999", "/", "//", "%",
        "not ", " and ", " or ", " if ", " else ", "{", "}", "[", "]", "\\", "x", "=", "==", "<", "\n", "return ",
        "none", "true", "max_seq_len", "causal true;", "output x;", "(k, q) -> ", "x -> ", "f(", "\xff", "\0",
        "9223372036854775807", "1 / 0", "((((", "))))",
    };
    int parsed = 0, total = 0;
    for (size_t i = 0; i < N_FILES; i++) {
        size_t len;
        char *src = read_example(files[i], &len);
        for (int m = 0; m < 400; m++) {
            mech_buf b = {0};
            mech_buf_append(&b, src, len);
            int edits = 1 + (int)(next_rand() % 3);
            for (int e = 0; e < edits && b.len; e++) {
                size_t at = (size_t)(next_rand() % b.len);
                size_t span = 1 + (size_t)(next_rand() % 12);
                if (at + span > b.len) span = b.len - at;
                mech_buf nb = {0};
                mech_buf_append(&nb, b.data, at);
                switch (next_rand() % 4) {
                case 0: break; // delete the span
                case 1: {      // insert a piece
                    const char *pc = pieces[next_rand() % (sizeof pieces / sizeof *pieces)];
                    mech_buf_append(&nb, pc, *pc ? strlen(pc) : 1);
                    span = 0;
                    break;
                }
                case 2: // duplicate the span
                    mech_buf_append(&nb, b.data + at, span);
                    mech_buf_append(&nb, b.data + at, span);
                    break;
                default: { // replace one byte
                    char c = (char)(next_rand() & 0xff);
                    mech_buf_append(&nb, &c, 1);
                    span = 1;
                    break;
                }
                }
                mech_buf_append(&nb, b.data + at + span, b.len - at - span);
                mech_buf_free(&b);
                b = nb;
            }
            char *copy = malloc(b.len ? b.len : 1);
            memcpy(copy, b.data, b.len);
            char what[64];
            snprintf(what, sizeof what, "%s mutation %d", files[i], m);
            mech_rasp_program *p = NULL;
            mech_err err = {0};
            if (!mech_rasp_parse("m.rasp", copy, b.len, &p, &err)) parsed++;
            mech_rasp_program_free(p);
            parse_and_run(copy, b.len, what);
            total++;
            free(copy);
            mech_buf_free(&b);
        }
        free(src);
    }
    fprintf(stderr, "  %d of %d mutated programs still parse\n", parsed, total);
    assert_true(parsed > 0 && parsed < total);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rasp_examples_outputs),
        cmocka_unit_test(test_rasp_examples_shape),
        cmocka_unit_test(test_rasp_examples_every_prefix),
        cmocka_unit_test(test_rasp_examples_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
