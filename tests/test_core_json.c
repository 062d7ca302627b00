/*
** tests/test_core_json.c: the JSON parser on real documents, every escape,
** Unicode, numbers at the int64 edges, and malformed input: every prefix of
** a valid document, deep nesting, bad escapes and surrogates, invalid UTF-8,
** trailing garbage. Each malformed input must fail cleanly with a message
** naming the position and what was expected.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"

// Parses s (exact length, copied to a heap buffer of that size so ASan sees
// any over-read); fails the test on error.
static mech_json *parse_ok(const char *s, size_t len) {
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    mech_json *j = NULL;
    mech_err err = {0};
    mech_status st = mech_json_parse(copy, len, &j, &err);
    free(copy);
    if (st) fail_msg("parse of '%.*s' failed: %s", (int)len, s, err.msg);
    assert_non_null(j);
    return j;
}

static mech_json *parse_str(const char *s) { return parse_ok(s, strlen(s)); }

// Parses s expecting failure with code; returns the message (static).
static const char *parse_bad_n(const char *s, size_t len, mech_status code) {
    static mech_err err;
    memset(&err, 0, sizeof err);
    char *copy = malloc(len ? len : 1);
    memcpy(copy, s, len);
    mech_json *j = (mech_json *)0x1;
    mech_status st = mech_json_parse(copy, len, &j, &err);
    free(copy);
    if (st == MECH_OK) {
        mech_json_free(j);
        fail_msg("parse of '%.*s' succeeded, expected failure", (int)len, s);
    }
    assert_int_equal(st, code);
    assert_int_equal(err.code, code);
    assert_null(j);
    assert_true(strlen(err.msg) > 0);
    return err.msg;
}

static const char *parse_bad(const char *s) { return parse_bad_n(s, strlen(s), MECH_ERR_FORMAT); }

static void assert_contains(const char *hay, const char *needle) {
    if (!strstr(hay, needle)) fail_msg("message '%s' does not contain '%s'", hay, needle);
}

// ---------------------------------------------------------------------------

static void test_json_nested_document(void **state) {
    (void)state;
    const char *doc = "{\n"
                      "  \"activation_function\": \"gelu_new\",\n"
                      "  \"n_embd\": 768, \"n_layer\": 12,\n"
                      "  \"layer_norm_epsilon\": 1e-05,\n"
                      "  \"architectures\": [\"GPT2LMHeadModel\"],\n"
                      "  \"task_specific_params\": {\"text-generation\": {\"do_sample\": true, "
                      "\"max_length\": 50}},\n"
                      "  \"scale\": true, \"off\": false, \"none\": null,\n"
                      "  \"empty_a\": [], \"empty_o\": {}, \"mixed\": [1, \"two\", [3], {\"four\": 4}, null]\n"
                      "}\n";
    mech_json *j = parse_str(doc);
    assert_int_equal(j->type, MECH_JSON_OBJECT);
    assert_int_equal(j->n, 12);
    assert_string_equal(j->keys[0], "activation_function");
    assert_int_equal(j->key_lens[0], strlen("activation_function"));

    const mech_json *v = mech_json_get(j, "activation_function");
    assert_non_null(v);
    assert_int_equal(v->type, MECH_JSON_STRING);
    assert_string_equal(v->str, "gelu_new");
    assert_int_equal(v->len, 8);

    v = mech_json_get(j, "n_embd");
    assert_int_equal(v->type, MECH_JSON_NUMBER);
    assert_true(v->is_int);
    assert_int_equal(v->inum, 768);
    assert_true(v->num == 768.0);

    v = mech_json_get(j, "layer_norm_epsilon");
    assert_false(v->is_int);
    assert_true(v->num == 1e-05);

    v = mech_json_get(j, "architectures");
    assert_int_equal(v->type, MECH_JSON_ARRAY);
    assert_int_equal(v->n, 1);
    assert_string_equal(v->items[0].str, "GPT2LMHeadModel");

    v = mech_json_get(mech_json_get(mech_json_get(j, "task_specific_params"), "text-generation"),
                      "max_length");
    assert_non_null(v);
    assert_int_equal(v->inum, 50);

    assert_int_equal(mech_json_get(j, "scale")->type, MECH_JSON_BOOL);
    assert_int_equal(mech_json_get(j, "scale")->boolean, 1);
    assert_int_equal(mech_json_get(j, "off")->boolean, 0);
    assert_int_equal(mech_json_get(j, "none")->type, MECH_JSON_NULL);
    assert_int_equal(mech_json_get(j, "empty_a")->n, 0);
    assert_int_equal(mech_json_get(j, "empty_o")->type, MECH_JSON_OBJECT);
    assert_int_equal(mech_json_get(j, "empty_o")->n, 0);

    v = mech_json_get(j, "mixed");
    assert_int_equal(v->n, 5);
    assert_int_equal(v->items[0].inum, 1);
    assert_string_equal(v->items[1].str, "two");
    assert_int_equal(v->items[2].items[0].inum, 3);
    assert_int_equal(mech_json_get(&v->items[3], "four")->inum, 4);
    assert_int_equal(v->items[4].type, MECH_JSON_NULL);

    assert_null(mech_json_get(j, "missing"));
    assert_null(mech_json_get(v, "x")); // not an object
    assert_null(mech_json_get(NULL, "x"));
    mech_json_free(j);
    mech_json_free(NULL);
}

static void test_json_scalars_at_top_level(void **state) {
    (void)state;
    mech_json *j = parse_str("  42  ");
    assert_int_equal(j->inum, 42);
    mech_json_free(j);
    j = parse_str("\"x\"");
    assert_string_equal(j->str, "x");
    mech_json_free(j);
    j = parse_str("\t\r\n null \n");
    assert_int_equal(j->type, MECH_JSON_NULL);
    mech_json_free(j);
    j = parse_str("\xEF\xBB\xBF{\"bom\": 1}"); // a UTF-8 BOM is skipped
    assert_int_equal(mech_json_get(j, "bom")->inum, 1);
    mech_json_free(j);
}

static void test_json_escapes(void **state) {
    (void)state;
    mech_json *j = parse_str("[\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\", \"\\u0041\\u00e9\\u20AC\","
                             "\"\\ud83d\\ude00\", \"x\\u0000y\", \"\\uFFFF\", \"\\uD800\\uDC00\"]");
    assert_int_equal(j->n, 6);
    assert_string_equal(j->items[0].str, "a\"b\\c/d\be\ff\ng\rh\ti");
    assert_int_equal(j->items[0].len, 17);
    assert_string_equal(j->items[1].str, "A\xC3\xA9\xE2\x82\xAC"); // A é €
    assert_int_equal(j->items[1].len, 6);
    assert_string_equal(j->items[2].str, "\xF0\x9F\x98\x80"); // U+1F600
    assert_int_equal(j->items[3].len, 3);
    assert_memory_equal(j->items[3].str, "x\0y", 4);
    assert_string_equal(j->items[4].str, "\xEF\xBF\xBF");
    assert_string_equal(j->items[5].str, "\xF0\x90\x80\x80"); // U+10000
    mech_json_free(j);
}

static void test_json_raw_unicode(void **state) {
    (void)state;
    // GPT-2 vocabulary style keys: raw multi-byte UTF-8 (Ġ, Ċ, CJK, emoji).
    const char *doc = "{\"\xC4\xA0the\": 262, \"\xC4\x8A\": 198, \"\xE4\xB8\xAD\xE6\x96\x87\": 1, "
                      "\"\xF0\x9F\x98\x80\": 2, \"mixed \xC3\xA9\\n\": 3}";
    mech_json *j = parse_str(doc);
    assert_int_equal(mech_json_get(j, "\xC4\xA0the")->inum, 262);
    assert_int_equal(mech_json_get(j, "\xC4\x8A")->inum, 198);
    assert_int_equal(mech_json_get(j, "\xE4\xB8\xAD\xE6\x96\x87")->inum, 1);
    assert_int_equal(mech_json_get(j, "\xF0\x9F\x98\x80")->inum, 2);
    assert_int_equal(mech_json_get(j, "mixed \xC3\xA9\n")->inum, 3);
    mech_json_free(j);
}

static void test_json_numbers(void **state) {
    (void)state;
    mech_json *j = parse_str("[0, -0, 7, -12, 9223372036854775807, -9223372036854775808, "
                             "9223372036854775808, -9223372036854775809, 18446744073709551616, "
                             "1.5, -0.25, 1e3, 1E+2, 2.5e-3, 0.1, 123456789012345678901234567890, "
                             "1e-400, 0e0, -0.0, 4.9406564584124654e-324]");
    mech_json *it = j->items;
    assert_true(it[0].is_int && it[0].inum == 0);
    assert_true(it[1].is_int && it[1].inum == 0 && signbit(it[1].num));
    assert_true(it[2].is_int && it[2].inum == 7 && it[2].num == 7.0);
    assert_true(it[3].is_int && it[3].inum == -12);
    assert_true(it[4].is_int && it[4].inum == INT64_MAX);
    assert_true(it[5].is_int && it[5].inum == INT64_MIN);
    assert_false(it[6].is_int); // does not fit int64
    assert_true(it[6].num == 9223372036854775808.0);
    assert_false(it[7].is_int);
    assert_true(it[7].num == -9223372036854775808.0);
    assert_false(it[8].is_int);
    assert_true(it[8].num == 18446744073709551616.0);
    assert_false(it[9].is_int);
    assert_true(it[9].num == 1.5);
    assert_true(it[10].num == -0.25);
    assert_false(it[11].is_int); // written with an exponent
    assert_true(it[11].num == 1000.0);
    assert_true(it[12].num == 100.0);
    assert_true(it[13].num == 2.5e-3);
    assert_true(it[14].num == 0.1);
    assert_true(it[15].num == 123456789012345678901234567890.0);
    assert_true(it[16].num == 0.0);
    assert_true(it[17].num == 0.0 && !it[17].is_int);
    assert_true(it[18].num == 0.0 && signbit(it[18].num));
    assert_true(it[19].num == 4.9406564584124654e-324);
    mech_json_free(j);
}

static void test_json_bad_numbers(void **state) {
    (void)state;
    assert_contains(parse_bad("01"), "leading zero");
    assert_contains(parse_bad("-01"), "leading zero");
    assert_contains(parse_bad("1."), "digit after '.'");
    assert_contains(parse_bad("[1.e5]"), "digit after '.'");
    assert_contains(parse_bad(".5"), "expected a value");
    assert_contains(parse_bad("-"), "digit");
    assert_contains(parse_bad("+1"), "expected a value");
    assert_contains(parse_bad("1e"), "exponent");
    assert_contains(parse_bad("1e+"), "exponent");
    assert_contains(parse_bad("0x10"), "end of input after the top-level value");
    assert_contains(parse_bad("1e400"), "out of range");
    assert_contains(parse_bad("-1e400"), "out of range");
    assert_contains(parse_bad("NaN"), "expected a value");
    assert_contains(parse_bad("[Infinity]"), "expected a value");
    assert_contains(parse_bad("[-Infinity]"), "digit");
}

static void test_json_error_positions(void **state) {
    (void)state;
    const char *m = parse_bad("[\n  1,\n  x]");
    assert_contains(m, "line 3, column 3 (byte 9)");
    assert_contains(m, "expected a value");
    assert_contains(m, "got 'x'");

    m = parse_bad("{\"a\": 1,}");
    assert_contains(m, "expected a string key in object");
    assert_contains(m, "got '}'");
    m = parse_bad("[1,]");
    assert_contains(m, "expected a value");
    m = parse_bad("[1 2]");
    assert_contains(m, "',' or ']' after array element");
    m = parse_bad("{\"a\" 1}");
    assert_contains(m, "':' after object key");
    m = parse_bad("{\"a\": 1 \"b\": 2}");
    assert_contains(m, "',' or '}' after object member");
    m = parse_bad("{1: 2}");
    assert_contains(m, "expected a string key or '}'");
    m = parse_bad("{} x");
    assert_contains(m, "end of input after the top-level value");
    assert_contains(m, "byte 3");
    m = parse_bad("{}{}");
    assert_contains(m, "end of input after the top-level value");
    m = parse_bad("");
    assert_contains(m, "got end of input");
    m = parse_bad("   \n ");
    assert_contains(m, "line 2");
    m = parse_bad("tru");
    assert_contains(m, "expected a value");
    m = parse_bad("nul");
    m = parse_bad("[true false]");
    assert_contains(m, "got 'f'");
    m = parse_bad("[\x01]");
    assert_contains(m, "got byte 0x01");
    m = parse_bad_n("[1]\0", 4, MECH_ERR_FORMAT); // a NUL after the value is garbage
    assert_contains(m, "byte 0x00");
}

static void test_json_bad_strings(void **state) {
    (void)state;
    const char *m = parse_bad("\"abc");
    assert_contains(m, "unterminated string");
    assert_contains(m, "byte 0");
    m = parse_bad("[\"ab\\");
    assert_contains(m, "unterminated");
    m = parse_bad("\"a\\x\"");
    assert_contains(m, "bad escape \\x");
    assert_contains(m, "byte 2");
    m = parse_bad("\"a\\'\"");
    assert_contains(m, "bad escape \\'");
    m = parse_bad("\"\\u12\"");
    assert_contains(m, "4 hex digits");
    m = parse_bad("\"\\u12G4\"");
    assert_contains(m, "4 hex digits");
    m = parse_bad("\"\\u");
    assert_contains(m, "4 hex digits");
    m = parse_bad("\"\\uD800\"");
    assert_contains(m, "lone high surrogate");
    m = parse_bad("\"\\uD800\\u0041\"");
    assert_contains(m, "lone high surrogate");
    m = parse_bad("\"\\uD800\\uD800\"");
    assert_contains(m, "lone high surrogate");
    m = parse_bad("\"\\uDC00\"");
    assert_contains(m, "lone low surrogate");
    m = parse_bad("\"\\ud83d\\ude00\\ude00\"");
    assert_contains(m, "lone low surrogate");
    m = parse_bad("\"tab\there\"");
    assert_contains(m, "control character 0x09");
    m = parse_bad("\"line\nbreak\"");
    assert_contains(m, "control character 0x0A");
    m = parse_bad_n("\"a\0b\"", 5, MECH_ERR_FORMAT);
    assert_contains(m, "control character 0x00");
    // Invalid UTF-8: stray continuation, overlong, surrogate, > U+10FFFF, truncated.
    assert_contains(parse_bad("\"\x80\""), "invalid UTF-8 byte 0x80");
    assert_contains(parse_bad("\"\xC0\xAF\""), "invalid UTF-8 byte 0xC0");
    assert_contains(parse_bad("\"\xE0\x80\xAF\""), "invalid UTF-8");
    assert_contains(parse_bad("\"\xED\xA0\x80\""), "invalid UTF-8");
    assert_contains(parse_bad("\"\xF4\x90\x80\x80\""), "invalid UTF-8");
    assert_contains(parse_bad("\"\xF5\x80\x80\x80\""), "invalid UTF-8");
    assert_contains(parse_bad("\"\xE4\xB8\""), "invalid UTF-8");
    assert_contains(parse_bad("\"\xFF\""), "invalid UTF-8 byte 0xFF");
}

// Every proper prefix of a valid object document is invalid: each must fail
// cleanly (no crash, no leak, no over-read: the copy has the exact length).
static void test_json_every_prefix_fails(void **state) {
    (void)state;
    const char *doc = "{\"a\\u00e9\\ud83d\\ude00\": [1, -2.5e+3, true, false, null, \"x\\\"y\"],"
                      " \"\xC4\xA0the\": {\"n\": [[], {}], \"s\": \"\\n\\t\\/\"}, \"z\": 0}";
    size_t n = strlen(doc);
    mech_json_free(parse_ok(doc, n));
    for (size_t k = 0; k < n; k++) {
        mech_err err = {0};
        char *copy = malloc(k ? k : 1);
        memcpy(copy, doc, k);
        mech_json *j = NULL;
        mech_status st = mech_json_parse(copy, k, &j, &err);
        free(copy);
        if (st == MECH_OK) fail_msg("prefix of length %zu parsed", k);
        assert_int_equal(st, MECH_ERR_FORMAT);
        assert_null(j);
        assert_non_null(strstr(err.msg, "byte"));
    }
}

// Flipping bytes of a valid document must never crash; whatever parses must
// be freeable.
static void test_json_mutations_do_not_crash(void **state) {
    (void)state;
    const char *doc = "{\"k\": [1, 2.5, \"s\\u00e9\", {\"x\": null}], \"t\": true}";
    size_t n = strlen(doc);
    const char repl[] = "{}[]\":,\\u0e-+.1 \x80\xC3\x00tfn";
    unsigned seed = 12345;
    for (int trial = 0; trial < 20000; trial++) {
        char *copy = malloc(n);
        memcpy(copy, doc, n);
        int flips = 1 + trial % 3;
        for (int f = 0; f < flips; f++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            copy[pos] = repl[(seed >> 8) % (sizeof repl - 1)];
        }
        mech_json *j = NULL;
        mech_err err = {0};
        if (mech_json_parse(copy, n, &j, &err) == MECH_OK) mech_json_free(j);
        else assert_true(err.msg[0] != 0);
        free(copy);
    }
}

static void test_json_depth_limit(void **state) {
    (void)state;
    // 512 levels are fine, 513 are not; a million must fail without
    // overflowing the stack.
    size_t n = 512;
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++) s[i] = '[', s[2 * n - 1 - i] = ']';
    mech_json *j = parse_ok(s, 2 * n);
    const mech_json *v = j;
    for (size_t i = 1; i < n; i++) v = &v->items[0];
    assert_int_equal(v->type, MECH_JSON_ARRAY);
    assert_int_equal(v->n, 0);
    mech_json_free(j);
    free(s);

    n = 513;
    s = malloc(2 * n);
    for (size_t i = 0; i < n; i++) s[i] = '[', s[2 * n - 1 - i] = ']';
    const char *m = parse_bad_n(s, 2 * n, MECH_ERR_FORMAT);
    assert_contains(m, "nesting deeper than 512");
    assert_contains(m, "byte 512");
    free(s);

    n = 1000000;
    s = malloc(n);
    for (size_t i = 0; i < n; i++) s[i] = '[';
    m = parse_bad_n(s, n, MECH_ERR_FORMAT);
    assert_contains(m, "nesting");
    free(s);
}

static void test_json_duplicate_keys_and_get(void **state) {
    (void)state;
    mech_json *j = parse_str("{\"a\": 1, \"a\": 2, \"a\\u0000b\": 3, \"\": 4}");
    assert_int_equal(j->n, 4);
    assert_int_equal(mech_json_get(j, "a")->inum, 1); // the first of duplicates
    assert_int_equal(j->key_lens[2], 3);
    assert_memory_equal(j->keys[2], "a\0b", 4);
    assert_int_equal(mech_json_get(j, "")->inum, 4);
    assert_null(mech_json_get(j, "ab"));
    mech_json_free(j);
}

// Strings written by mech_buf_json_string parse back to the same bytes.
static void test_json_buf_round_trip(void **state) {
    (void)state;
    unsigned seed = 99;
    for (int trial = 0; trial < 2000; trial++) {
        char raw[64];
        size_t n = (size_t)(trial % 64);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            unsigned r = (seed >> 16) % 100;
            raw[i] = r < 60 ? (char)(0x20 + r) : r < 80 ? (char)(r - 60 + 0x0C) : (char)"\"\\\n\t\x01"[r % 5];
        }
        mech_buf b = {0};
        mech_buf_json_string(&b, raw, n);
        assert_false(b.oom);
        mech_json *j = parse_ok(b.data, b.len);
        assert_int_equal(j->type, MECH_JSON_STRING);
        assert_int_equal(j->len, n);
        assert_memory_equal(j->str, raw, n);
        mech_json_free(j);
        mech_buf_free(&b);
    }
    // Valid multi-byte UTF-8 survives unchanged.
    const char *u = "\xC4\xA0\xE2\x82\xAC\xF0\x9F\x98\x80";
    mech_buf b = {0};
    mech_buf_json_string(&b, u, strlen(u));
    mech_json *j = parse_ok(b.data, b.len);
    assert_string_equal(j->str, u);
    mech_json_free(j);
    mech_buf_free(&b);
}

// A synthetic encoder.json (50257 keys, the GPT-2 vocabulary's shape):
// correct, and fast enough (the real one parses in about 7 ms; the bound is
// loose because the machine is shared and sanitizers slow it down).
static void test_json_large_vocabulary(void **state) {
    (void)state;
    mech_buf b = {0};
    mech_buf_puts(&b, "{");
    for (int i = 0; i < 50257; i++) {
        char key[32];
        snprintf(key, sizeof key, "\xC4\xA0tok%d%s", i, i % 7 ? "" : "\xE2\x82\xAC");
        if (i) mech_buf_puts(&b, ", ");
        mech_buf_json_string(&b, key, strlen(key));
        mech_buf_printf(&b, ": %d", i);
    }
    mech_buf_puts(&b, "}");
    assert_false(b.oom);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mech_json *j = parse_ok(b.data, b.len);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_int_equal(j->n, 50257);
    for (size_t i = 0; i < j->n; i += 997) {
        char key[32];
        snprintf(key, sizeof key, "\xC4\xA0tok%zu%s", i, i % 7 ? "" : "\xE2\x82\xAC");
        assert_string_equal(j->keys[i], key);
        assert_int_equal(j->items[i].inum, (int64_t)i);
    }
    if (ms > 2000) fail_msg("parsing %zu bytes took %.1f ms", b.len, ms);
    mech_json_free(j);
    mech_buf_free(&b);
}

// The real GPT-2 encoder.json (1 MB, 50257 keys) when the tree has it.
static void test_json_gpt2_encoder(void **state) {
    (void)state;
    char *text;
    size_t len;
    mech_err err = {0};
    if (mech_read_file("data/gpt2/encoder.json", &text, &len, &err)) {
        fprintf(stderr, "data/gpt2/encoder.json not found: skipped\n");
        skip();
    }
    double best = 1e9;
    for (int rep = 0; rep < 5; rep++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        mech_json *j = NULL;
        if (mech_json_parse(text, len, &j, &err)) fail_msg("%s", err.msg);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (ms < best) best = ms;
        assert_int_equal(j->type, MECH_JSON_OBJECT);
        assert_int_equal(j->n, 50257);
        assert_int_equal(mech_json_get(j, "\xC4\xA0the")->inum, 262);
        assert_int_equal(mech_json_get(j, "<|endoftext|>")->inum, 50256);
        assert_int_equal(mech_json_get(j, "!")->inum, 0);
        mech_json_free(j);
    }
    fprintf(stderr, "encoder.json: %zu bytes parsed in %.2f ms (best of 5)\n", len, best);
    if (best > 1000) fail_msg("encoder.json took %.1f ms", best);
    mech_free(text);
}

static void test_json_bad_arguments(void **state) {
    (void)state;
    mech_err err = {0};
    assert_int_equal(mech_json_parse("{}", 2, NULL, &err), MECH_ERR_ARG);
    mech_json *j;
    assert_int_equal(mech_json_parse(NULL, 3, &j, &err), MECH_ERR_ARG);
    assert_null(j);
    assert_int_equal(mech_json_parse(NULL, 0, &j, NULL), MECH_ERR_FORMAT); // empty input, no err
}


// Typed members: the value when the member has that type, else the default.
static void test_json_typed_members(void **state) {
    (void)state;
    const char *t = "{\"n\": 2.5, \"b\": true, \"f\": false, \"s\": \"x\", \"z\": null}";
    mech_json *j = NULL;
    mech_err err = {0};
    assert_int_equal(mech_json_parse(t, strlen(t), &j, &err), MECH_OK);
    assert_true(mech_json_num(j, "n", -1) == 2.5);
    assert_true(mech_json_num(j, "s", -1) == -1); // a string is no number
    assert_true(mech_json_num(j, "missing", 7) == 7);
    assert_int_equal(mech_json_bool(j, "b"), 1);
    assert_int_equal(mech_json_bool(j, "f"), 0);
    assert_int_equal(mech_json_bool(j, "n"), 0);
    assert_string_equal(mech_json_str(j, "s", "?"), "x");
    assert_string_equal(mech_json_str(j, "z", "?"), "?");
    assert_null(mech_json_str(j, "missing", NULL));
    assert_true(mech_json_num(NULL, "n", 3) == 3); // not an object
    mech_json_free(j);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_nested_document),
        cmocka_unit_test(test_json_scalars_at_top_level),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_json_raw_unicode),
        cmocka_unit_test(test_json_numbers),
        cmocka_unit_test(test_json_bad_numbers),
        cmocka_unit_test(test_json_error_positions),
        cmocka_unit_test(test_json_bad_strings),
        cmocka_unit_test(test_json_every_prefix_fails),
        cmocka_unit_test(test_json_mutations_do_not_crash),
        cmocka_unit_test(test_json_depth_limit),
        cmocka_unit_test(test_json_duplicate_keys_and_get),
        cmocka_unit_test(test_json_buf_round_trip),
        cmocka_unit_test(test_json_large_vocabulary),
        cmocka_unit_test(test_json_gpt2_encoder),
        cmocka_unit_test(test_json_bad_arguments),
        cmocka_unit_test(test_json_typed_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
