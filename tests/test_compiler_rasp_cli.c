/*
** tests/test_compiler_rasp_cli.c: `mech rasp` as a user runs it: the JSON
** on stdout, the error format on stderr (FILE:LINE:COL: error: ..., the
** source line, a caret) and the exit status (0 ok, 2 program or usage
** error, 1 evaluation error). The binary comes from $MECH_BIN (set by
** `make test`), else ./mech; run from the repository root.
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
#include <sys/wait.h>

#define mech mech_test_cli

// Writes src to a scratch file; the path stays valid until the next call.
static const char *write_program(const char *name, const char *src) {
    static char path[512];
    snprintf(path, sizeof path, "%s", mech_test_tmp(name));
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(src, f);
    fclose(f);
    return path;
}

static void test_rasp_cli_examples(void **state) {
    (void)state;
    static const struct { const char *file, *input, *want; } runs[] = {
        {"reverse", "a b c", "[\"c\",\"b\",\"a\"]\n"},
        {"length", "a b c", "[3,3,3]\n"},
        {"frac_prevs", "h e l l o", "[0,0,0.333333,0.5,0.4]\n"},
        {"shift_by", "a b c d", "[null,\"a\",\"b\",\"c\"]\n"},
        {"shuffle_dyck2", "( { ) }", "[true,true,true,true]\n"},
        {"sort", "2 4 1 2", "[1,2,2,4]\n"},
    };
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        char *out, *err;
        int rc = mech(&out, &err, "rasp examples/rasp/%s.rasp --input '%s'", runs[i].file, runs[i].input);
        if (rc != 0 || strcmp(out, runs[i].want))
            fail_msg("mech rasp %s --input '%s': exit %d, stdout %s, stderr %s", runs[i].file, runs[i].input, rc, out, err);
        assert_string_equal(err, "");
        free(out);
        free(err);
    }
    char *out;
    assert_int_equal(mech(&out, NULL, "rasp --input= examples/rasp/reverse.rasp"), 0);
    assert_string_equal(out, "[]\n");
    free(out);
}

static void test_rasp_cli_syntax_error(void **state) {
    (void)state;
    const char *path = write_program("bad_syntax.rasp", "vocab {a, b};\nmax_seq_len 4;\nx = (tokens == \"a\" ;\n");
    char *out, *err;
    assert_int_equal(mech(&out, &err, "rasp %s --input 'a b'", path), 2);
    assert_string_equal(out, "");
    char want[1024];
    snprintf(want, sizeof want,
             "%s:3:20: error: expected ')' to close the parenthesis, got ';'\n"
             "x = (tokens == \"a\" ;\n"
             "                   ^\n",
             path);
    assert_string_equal(err, want);
    free(out);
    free(err);
    remove(path);
}

static void test_rasp_cli_type_error(void **state) {
    (void)state;
    const char *path = write_program("bad_type.rasp", "vocab {a, b};\nmax_seq_len 4;\n\nx = map((p, q) -> p, tokens);\n");
    char *err;
    assert_int_equal(mech(NULL, &err, "rasp %s --input 'a b'", path), 2);
    assert_non_null(strstr(err, ":4:9: error: map needs a lambda of 1 parameter, but this one has 2\n"
                                "x = map((p, q) -> p, tokens);\n        ^\n"));
    free(err);
    // --dag alone still reports program errors.
    assert_int_equal(mech(NULL, &err, "rasp %s --dag", path), 2);
    free(err);
    remove(path);
}

static void test_rasp_cli_runtime_error(void **state) {
    (void)state;
    const char *path = write_program("bad_run.rasp", "vocab {a, b};\nmax_seq_len 4;\n"
                                                      "same = aggregate(select(tokens, tokens, true), tokens);\n");
    char *out, *err;
    assert_int_equal(mech(&out, &err, "rasp %s --input 'a a'", path), 0);
    assert_string_equal(out, "[\"a\",\"a\"]\n");
    free(out);
    free(err);
    assert_int_equal(mech(&out, &err, "rasp %s --input 'a b'", path), 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, ":3:8: error: in 'same': categorical aggregate at position 0 selects differing values: "
                                "key 0 holds \"a\", key 1 holds \"b\""));
    assert_non_null(strstr(err, "\n       ^\n"));
    free(out);
    free(err);
    remove(path);
}

static void test_rasp_cli_usage_and_input_errors(void **state) {
    (void)state;
    char *out, *err;
    assert_int_equal(mech(&out, &err, "rasp examples/rasp/reverse.rasp --input 'a e'"), 2);
    assert_non_null(strstr(err, "mech rasp: error: examples/rasp/reverse.rasp: input token 'e' (item 2) is not in the "
                                "vocab {\"a\", \"b\", \"c\", \"d\"}"));
    assert_string_equal(out, "");
    free(out);
    free(err);
    assert_int_equal(mech(NULL, &err, "rasp examples/rasp/reverse.rasp --input 'a b c d a b'"), 2);
    assert_non_null(strstr(err, "more than max_seq_len 5"));
    free(err);
    assert_int_equal(mech(NULL, &err, "rasp examples/rasp/reverse.rasp"), 2);
    assert_non_null(strstr(err, "--input is required"));
    free(err);
    assert_int_equal(mech(NULL, &err, "rasp --input a"), 2);
    assert_non_null(strstr(err, "no program given"));
    free(err);
    assert_int_equal(mech(NULL, &err, "rasp a.rasp b.rasp --input a"), 2);
    free(err);
    assert_int_equal(mech(NULL, &err, "rasp examples/rasp/reverse.rasp --bogus"), 2);
    assert_non_null(strstr(err, "unknown option '--bogus'"));
    free(err);
    assert_int_equal(mech(NULL, &err, "rasp /nonexistent/x.rasp --input a"), 1);
    assert_non_null(strstr(err, "mech rasp: error: /nonexistent/x.rasp: cannot open"));
    free(err);
    assert_int_equal(mech(&out, NULL, "rasp --help"), 0);
    assert_non_null(strstr(out, "usage: mech rasp FILE.rasp --input"));
    free(out);
    assert_int_equal(mech(&out, NULL, "--help"), 0);
    assert_non_null(strstr(out, "rasp"));
    free(out);
}

static void test_rasp_cli_dag_and_trace(void **state) {
    (void)state;
    char *out;
    assert_int_equal(mech(&out, NULL, "rasp examples/rasp/reverse.rasp --dag"), 0);
    assert_non_null(strstr(out, "%0 tokens = tokens()\n"));
    assert_non_null(strstr(out, "opp = zipmap(%2 length, %3 indices): (length, indices) -> length - indices - 1\n"));
    assert_non_null(strstr(out, "output %6 reverse\n"));
    free(out);
    assert_int_equal(mech(&out, NULL, "rasp examples/rasp/reverse.rasp --trace --input 'a b c'"), 0);
    assert_non_null(strstr(out, "opp                  [2,1,0]\n"));
    assert_non_null(strstr(out, "output: [\"c\",\"b\",\"a\"]\n"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rasp_cli_examples),
        cmocka_unit_test(test_rasp_cli_syntax_error),
        cmocka_unit_test(test_rasp_cli_type_error),
        cmocka_unit_test(test_rasp_cli_runtime_error),
        cmocka_unit_test(test_rasp_cli_usage_and_input_errors),
        cmocka_unit_test(test_rasp_cli_dag_and_trace),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
