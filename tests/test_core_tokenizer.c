/*
** tests/test_core_tokenizer.c: the GPT-2 tokenizer (core/tokenizer.c)
** against tiktoken's "gpt2" encoding (tests/fixtures/tokenizer/cases.jsonl,
** written by tools/gen_tokenizer_cases.js), round trips on arbitrary bytes,
** both file layouts against the built-in vocabulary, and malformed or
** truncated vocabulary files.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "core/tokenizer_int.h"

// ---------------------------------------------------------------------------
// Shared state: the built-in tokenizer and the oracle cases

typedef struct tcase {
    char *text;
    size_t len;
    int allow_special;
    int32_t *ids;
    size_t n_ids;
} tcase;

static mech_tokenizer *g_tok;
static tcase *g_cases;
static size_t g_n_cases;

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static int setup(void **state) {
    (void)state;
    mech_err err = {0};
    if (mech_tokenizer_gpt2(&g_tok, &err)) {
        fprintf(stderr, "mech_tokenizer_gpt2: %s\n", err.msg);
        return -1;
    }
    size_t len;
    char *txt = mech_test_read("tests/fixtures/tokenizer/cases.jsonl", &len);
    size_t cap = 0;
    char *line = txt;
    size_t lineno = 0;
    while (line < txt + len) {
        char *nl = memchr(line, '\n', (size_t)(txt + len - line));
        size_t ll = nl ? (size_t)(nl - line) : (size_t)(txt + len - line);
        lineno++;
        if (ll) {
            mech_json *j;
            if (mech_json_parse(line, ll, &j, &err)) {
                fprintf(stderr, "cases.jsonl:%zu: %s\n", lineno, err.msg);
                return -1;
            }
            const mech_json *t = mech_json_get(j, "text"), *ids = mech_json_get(j, "ids");
            const mech_json *sp = mech_json_get(j, "allow_special");
            if (!t || t->type != MECH_JSON_STRING || !ids || ids->type != MECH_JSON_ARRAY) {
                fprintf(stderr, "cases.jsonl:%zu: expected text and ids\n", lineno);
                return -1;
            }
            if (g_n_cases == cap) {
                cap = cap ? cap * 2 : 256;
                g_cases = realloc(g_cases, cap * sizeof *g_cases);
            }
            tcase *c = &g_cases[g_n_cases++];
            c->len = t->len;
            c->text = malloc(t->len + 1);
            memcpy(c->text, t->str, t->len + 1);
            c->allow_special = sp && sp->type == MECH_JSON_BOOL && sp->boolean;
            c->n_ids = ids->n;
            c->ids = malloc((ids->n + 1) * sizeof *c->ids);
            for (size_t i = 0; i < ids->n; i++) c->ids[i] = (int32_t)ids->items[i].inum;
            mech_json_free(j);
        }
        line += ll + 1;
    }
    free(txt);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (size_t i = 0; i < g_n_cases; i++) {
        free(g_cases[i].text);
        free(g_cases[i].ids);
    }
    free(g_cases);
    mech_tokenizer_free(g_tok);
    return 0;
}

// Encodes and fails on error.
static int32_t *enc(const mech_tokenizer *t, const char *s, size_t n, int special, size_t *n_ids) {
    int32_t *ids;
    mech_err err = {0};
    if (mech_tokenizer_encode(t, s, n, special, &ids, n_ids, &err))
        fail_msg("encode failed: %s", err.msg);
    return ids;
}

static void print_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

// ---------------------------------------------------------------------------
// Oracle

static void test_tokenizer_gpt2_basics(void **state) {
    (void)state;
    assert_int_equal(mech_tokenizer_vocab_size(g_tok), 50257);
    assert_int_equal(mech_tokenizer_eot(g_tok), 50256);
    size_t len;
    const char *s = mech_tokenizer_token(g_tok, 15496, &len);
    assert_non_null(s);
    assert_int_equal(len, 5);
    assert_memory_equal(s, "Hello", 5);
    s = mech_tokenizer_token(g_tok, 220, &len);
    assert_int_equal(len, 1);
    assert_memory_equal(s, " ", 1);
    s = mech_tokenizer_token(g_tok, 50256, &len);
    assert_int_equal(len, 13);
    assert_memory_equal(s, "<|endoftext|>", 13);
    assert_null(mech_tokenizer_token(g_tok, -1, &len));
    assert_null(mech_tokenizer_token(g_tok, 50257, &len));
    assert_int_equal(len, 0);
    assert_true(g_n_cases > 1000);
}

static void test_tokenizer_cases_match_tiktoken(void **state) {
    (void)state;
    size_t bad = 0, total_ids = 0;
    for (size_t k = 0; k < g_n_cases; k++) {
        const tcase *c = &g_cases[k];
        size_t n;
        int32_t *ids = enc(g_tok, c->text, c->len, c->allow_special, &n);
        total_ids += n;
        if (n != c->n_ids || (n && memcmp(ids, c->ids, n * sizeof *ids))) {
            if (bad < 5) {
                mech_buf b = {0};
                mech_buf_json_string(&b, c->text, c->len > 200 ? 200 : c->len);
                fprintf(stderr, "case %zu%s: %s\n", k + 1, c->allow_special ? " (allow_special)" : "",
                        b.data);
                mech_buf_free(&b);
                print_ids("tiktoken", c->ids, c->n_ids);
                print_ids("mech    ", ids, n);
            }
            bad++;
        }
        mech_free(ids);
    }
    if (bad) fail_msg("%zu of %zu cases differ from tiktoken", bad, g_n_cases);
    assert_true(total_ids > 10000);
}

static void roundtrip(const char *s, size_t n, int special) {
    size_t n_ids, len;
    int32_t *ids = enc(g_tok, s, n, special, &n_ids);
    char *back;
    mech_err err = {0};
    if (mech_tokenizer_decode(g_tok, ids, n_ids, &back, &len, &err))
        fail_msg("decode failed: %s", err.msg);
    if (len != n || memcmp(back, s, n)) fail_msg("round trip changed a %zu-byte text", n);
    assert_int_equal(back[len], 0);
    mech_free(back);
    mech_free(ids);
}

static void test_tokenizer_cases_roundtrip(void **state) {
    (void)state;
    for (size_t k = 0; k < g_n_cases; k++) {
        roundtrip(g_cases[k].text, g_cases[k].len, 0);
        roundtrip(g_cases[k].text, g_cases[k].len, 1);
    }
}

// Random bytes: invalid UTF-8 of every kind, and valid sequences among it.
static size_t random_bytes(unsigned char *buf, size_t max) {
    static const char *const frags[] = {
        " ", "  ", "\n", "\t", "a", "Z", "7", "'s", "'LL", "!", "<|endoftext|>", "<|",
        "\xC3\xA9",             // é
        "\xE4\xB8\xAD",         // 中
        "\xF0\x9F\x98\x80",     // 😀
        "\xC2\xA0",             // NBSP
        "\xEF\xBB\xBF",         // U+FEFF
        "\xC0\xAF",             // overlong /
        "\xE0\x80\xAF",         // overlong
        "\xED\xA0\x80",         // surrogate D800
        "\xF4\x90\x80\x80",     // > U+10FFFF
        "\xF8\x88\x80\x80\x80", // 5-byte form
        "\xE4\xB8",             // truncated
        "\x80", "\xBF", "\xFF", "\xFE", "\xC2",
    };
    size_t n = 0, want = rnd() % max;
    while (n < want) {
        if (rnd() % 3 == 0) {
            buf[n++] = (unsigned char)rnd();
        } else {
            const char *f = frags[rnd() % (sizeof frags / sizeof frags[0])];
            size_t l = strlen(f);
            if (n + l > max) break;
            memcpy(buf + n, f, l);
            n += l;
        }
    }
    return n;
}

typedef struct split_check {
    size_t expect;
    int bad;
} split_check;

static int split_cb(void *user, size_t start, size_t end) {
    split_check *sc = user;
    if (start != sc->expect || end <= start) sc->bad = 1;
    sc->expect = end;
    return 0;
}

static void test_tokenizer_random_bytes_roundtrip(void **state) {
    (void)state;
    unsigned char buf[512];
    for (int k = 0; k < 3000; k++) {
        size_t n = random_bytes(buf, sizeof buf);
        roundtrip((const char *)buf, n, k & 1);
        split_check sc = {0, 0};
        mech_tokenizer_split((const char *)buf, n, split_cb, &sc);
        assert_false(sc.bad);
        assert_int_equal(sc.expect, n);
    }
    // Every single byte and every pair of bytes.
    for (int a = 0; a < 256; a++) {
        unsigned char s[2] = {(unsigned char)a, 0};
        roundtrip((const char *)s, 1, 0);
        for (int b = 0; b < 256; b++) {
            s[1] = (unsigned char)b;
            roundtrip((const char *)s, 2, 0);
        }
    }
}

static void test_tokenizer_invalid_utf8_bytewise(void **state) {
    (void)state;
    size_t n;
    // Each invalid byte is a codepoint of no class: "a", "\xFF", "b".
    int32_t *ids = enc(g_tok, "a\xFF" "b", 3, 0, &n);
    assert_int_equal(n, 3);
    size_t l;
    const char *t = mech_tokenizer_token(g_tok, ids[1], &l);
    assert_int_equal(l, 1);
    assert_int_equal((unsigned char)t[0], 0xFF);
    mech_free(ids);
    // A truncated sequence is two invalid bytes, i.e. one "other" run, and a
    // space joins it as it would join punctuation.
    ids = enc(g_tok, "x \xE4\xB8!", 5, 0, &n);
    char *back;
    assert_int_equal(mech_tokenizer_decode(g_tok, ids, n, &back, &l, NULL), MECH_OK);
    assert_int_equal(l, 5);
    assert_memory_equal(back, "x \xE4\xB8!", 5);
    mech_free(back);
    mech_free(ids);
}

// ---------------------------------------------------------------------------
// Pre-tokenizer and Unicode classes

typedef struct pieces {
    char buf[512];
    const char *text;
} pieces;

static int collect_cb(void *user, size_t start, size_t end) {
    pieces *p = user;
    size_t l = strlen(p->buf);
    snprintf(p->buf + l, sizeof p->buf - l, "[%.*s]", (int)(end - start), p->text + start);
    return 0;
}

static void expect_split(const char *text, const char *want) {
    pieces p = {.buf = "", .text = text};
    mech_tokenizer_split(text, strlen(text), collect_cb, &p);
    if (strcmp(p.buf, want)) fail_msg("split of \"%s\": got %s, want %s", text, p.buf, want);
}

static void test_tokenizer_split(void **state) {
    (void)state;
    expect_split("Hello world", "[Hello][ world]");
    expect_split("  hello", "[ ][ hello]");
    expect_split("hello  ", "[hello][  ]");
    expect_split("a \t b", "[a][ \t][ b]");
    expect_split("a \tb", "[a][ ][\t][b]");
    expect_split("a\n\nb", "[a][\n][\n][b]");
    expect_split("a \n\n b", "[a][ \n\n][ b]");
    expect_split("I'm I'M", "[I]['m][ I]['][M]");
    expect_split("don't'll''s", "[don]['t]['ll]['']"
                                "[s]");
    expect_split("?'s 's", "[?'][s][ '][s]"); // a space does not join a contraction
    expect_split("12ab 34!?", "[12][ab][ 34][!?]");
    expect_split(" !!", "[ !!]");
    expect_split("x\xC2\xA0y", "[x][\xC2\xA0][y]");             // NBSP is White_Space
    expect_split("x\xEF\xBB\xBFy", "[x][\xEF\xBB\xBF][y]");     // U+FEFF is not
    expect_split("x \xEF\xBB\xBF", "[x][ \xEF\xBB\xBF]");
    expect_split("\xC3\xA9t\xC3\xA9 \xC2\xB2", "[\xC3\xA9t\xC3\xA9][ \xC2\xB2]"); // été ²
    expect_split("", "");
}

static void test_tokenizer_unicode_classes(void **state) {
    (void)state;
    for (uint32_t c = 0; c < 128; c++) {
        int want = ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ? MECH_UNI_L
                   : (c >= '0' && c <= '9')                  ? MECH_UNI_N
                   : (c == ' ' || (c >= 9 && c <= 13))        ? MECH_UNI_WS
                                                             : MECH_UNI_OTHER;
        assert_int_equal(mech_uni_class(c), want);
    }
    assert_int_equal(mech_uni_class(0x85), MECH_UNI_WS);
    assert_int_equal(mech_uni_class(0xA0), MECH_UNI_WS);
    assert_int_equal(mech_uni_class(0x3000), MECH_UNI_WS);
    assert_int_equal(mech_uni_class(0xFEFF), MECH_UNI_OTHER);
    assert_int_equal(mech_uni_class(0x200B), MECH_UNI_OTHER);
    assert_int_equal(mech_uni_class(0x4E2D), MECH_UNI_L);
    assert_int_equal(mech_uni_class(0xB2), MECH_UNI_N);
    assert_int_equal(mech_uni_class(0x216B), MECH_UNI_N);
    assert_int_equal(mech_uni_class(0x301), MECH_UNI_OTHER); // combining mark (Mn)
    assert_int_equal(mech_uni_class(0x1F600), MECH_UNI_OTHER);
    assert_int_equal(mech_uni_class(0x10940), MECH_UNI_OTHER); // Unicode 17: unknown to tiktoken
    assert_int_equal(mech_uni_class(0x10D50), MECH_UNI_L);     // Unicode 16 (Garay)
    assert_int_equal(mech_uni_class(0x110000), MECH_UNI_OTHER);
    assert_int_equal(mech_uni_class(0xFFFFFFFFu), MECH_UNI_OTHER);
    for (size_t i = 0; i < mech_uni_n_ranges; i++) {
        const mech_uni_range *r = &mech_uni_ranges[i];
        assert_true(r->lo <= r->hi);
        if (i) assert_true(mech_uni_ranges[i - 1].hi < r->lo);
        assert_int_equal(mech_uni_class(r->lo), (int)r->cls);
        assert_int_equal(mech_uni_class(r->hi), (int)r->cls);
    }
}

// The heap merge for long pieces must agree with the linear one.
static void test_tokenizer_heap_matches_linear(void **state) {
    (void)state;
    size_t saved = mech_tokenizer_heap_min;
    unsigned char buf[600];
    for (size_t k = 0; k < g_n_cases + 500; k++) {
        const char *s;
        size_t n;
        if (k < g_n_cases) {
            s = g_cases[k].text;
            n = g_cases[k].len;
        } else {
            n = random_bytes(buf, sizeof buf);
            s = (const char *)buf;
        }
        size_t na, nb;
        mech_tokenizer_heap_min = 1 << 30;
        int32_t *a = enc(g_tok, s, n, 0, &na);
        mech_tokenizer_heap_min = 2;
        int32_t *b = enc(g_tok, s, n, 0, &nb);
        mech_tokenizer_heap_min = saved;
        if (na != nb || (na && memcmp(a, b, na * sizeof *a)))
            fail_msg("heap and linear merges differ on text %zu", k);
        mech_free(a);
        mech_free(b);
    }
}

static void test_tokenizer_special(void **state) {
    (void)state;
    size_t n;
    int32_t *ids = enc(g_tok, "a<|endoftext|>b", 15, 1, &n);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], 50256);
    mech_free(ids);
    ids = enc(g_tok, "a<|endoftext|>b", 15, 0, &n);
    assert_true(n > 3);
    for (size_t i = 0; i < n; i++) assert_int_not_equal(ids[i], 50256);
    mech_free(ids);
    // Text without special tokens encodes the same either way.
    for (size_t k = 0; k < g_n_cases; k++) {
        if (strstr(g_cases[k].text, "<|endoftext|>") || strlen(g_cases[k].text) != g_cases[k].len)
            continue;
        size_t na, nb;
        int32_t *a = enc(g_tok, g_cases[k].text, g_cases[k].len, 0, &na);
        int32_t *b = enc(g_tok, g_cases[k].text, g_cases[k].len, 1, &nb);
        assert_int_equal(na, nb);
        if (na) assert_memory_equal(a, b, na * sizeof *a);
        mech_free(a);
        mech_free(b);
    }
}

static void test_tokenizer_api_errors(void **state) {
    (void)state;
    mech_err err = {0};
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    assert_int_equal(mech_tokenizer_encode(g_tok, NULL, 3, 0, &ids, &n, &err), MECH_ERR_ARG);
    assert_null(ids);
    assert_int_equal(n, 0);
    assert_int_equal(mech_tokenizer_encode(g_tok, NULL, 0, 0, &ids, &n, &err), MECH_OK);
    assert_non_null(ids);
    assert_int_equal(n, 0);
    char *text;
    size_t len;
    assert_int_equal(mech_tokenizer_decode(g_tok, ids, 0, &text, &len, &err), MECH_OK);
    assert_int_equal(len, 0);
    assert_string_equal(text, "");
    mech_free(text);
    mech_free(ids);
    int32_t bad[3] = {15496, 50257, 0};
    assert_int_equal(mech_tokenizer_decode(g_tok, bad, 3, &text, &len, &err), MECH_ERR_RANGE);
    assert_null(text);
    assert_non_null(strstr(err.msg, "ids[1] = 50257"));
    bad[1] = -1;
    assert_int_equal(mech_tokenizer_decode(g_tok, bad, 3, &text, &len, &err), MECH_ERR_RANGE);
    mech_tokenizer_free(NULL);
    assert_int_equal(mech_tokenizer_vocab_size(NULL), 0);
    assert_int_equal(mech_tokenizer_eot(NULL), -1);
}

// ---------------------------------------------------------------------------
// Files on disk

// Both tokenizers have the same vocabulary and encode the same.
static void assert_same_tokenizer(const mech_tokenizer *t) {
    assert_int_equal(mech_tokenizer_vocab_size(t), mech_tokenizer_vocab_size(g_tok));
    assert_int_equal(mech_tokenizer_eot(t), mech_tokenizer_eot(g_tok));
    for (int32_t id = 0; id < mech_tokenizer_vocab_size(t); id++) {
        size_t la, lb;
        const char *a = mech_tokenizer_token(t, id, &la), *b = mech_tokenizer_token(g_tok, id, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);
    }
    for (size_t k = 0; k < g_n_cases; k++) {
        size_t na, nb;
        int32_t *a = enc(t, g_cases[k].text, g_cases[k].len, g_cases[k].allow_special, &na);
        int32_t *b = enc(g_tok, g_cases[k].text, g_cases[k].len, g_cases[k].allow_special, &nb);
        assert_int_equal(na, nb);
        if (na) assert_memory_equal(a, b, na * sizeof *a);
        mech_free(a);
        mech_free(b);
    }
}

static void test_tokenizer_load_openai_files(void **state) {
    (void)state;
    mech_tokenizer *t;
    mech_err err = {0};
    if (mech_tokenizer_load("data/gpt2/encoder.json", "data/gpt2/vocab.bpe", &t, &err))
        fail_msg("%s", err.msg);
    assert_same_tokenizer(t);
    mech_tokenizer_free(t);
    if (mech_tokenizer_load_dir("data/gpt2", &t, &err)) fail_msg("%s", err.msg);
    assert_same_tokenizer(t);
    mech_tokenizer_free(t);
}

// GPT-2's bytes_to_unicode, to spell tokens the way vocabulary files do.
static void spell(mech_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned char)s[i];
        unsigned u = c;
        if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174)) {
            u = 256;
            for (unsigned d = 0; d < c; d++)
                if (!((d >= 33 && d <= 126) || (d >= 161 && d <= 172) || d >= 174)) u++;
        }
        char o[2];
        if (u < 0x80) {
            o[0] = (char)u;
            mech_buf_append(b, o, 1);
        } else {
            o[0] = (char)(0xC0 | (u >> 6));
            o[1] = (char)(0x80 | (u & 0x3F));
            mech_buf_append(b, o, 2);
        }
    }
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s", path);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static char g_dir[512];

static const char *in_dir(const char *name) {
    static char path[640];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    return path;
}

static void make_dir(const char *name) {
    snprintf(g_dir, sizeof g_dir, "%s", mech_test_tmp(name));
    mkdir(g_dir, 0755);
}

static void test_tokenizer_load_hf_dir(void **state) {
    (void)state;
    make_dir("tok_hf");
    // vocab.json in Hugging Face's compact style, members in reverse id order.
    mech_buf v = {0};
    mech_buf_puts(&v, "{");
    for (int32_t id = mech_tokenizer_vocab_size(g_tok) - 1; id >= 0; id--) {
        size_t l;
        const char *s = mech_tokenizer_token(g_tok, id, &l);
        mech_buf sp = {0};
        spell(&sp, s, l);
        mech_buf_json_string(&v, sp.data, sp.len);
        mech_buf_printf(&v, ":%d%s", id, id ? "," : "}");
        mech_buf_free(&sp);
    }
    write_file(in_dir("vocab.json"), v.data, v.len);
    mech_buf_free(&v);
    // merges.txt with CRLF line ends.
    size_t ml;
    char *m = mech_test_read("data/gpt2/vocab.bpe", &ml);
    mech_buf crlf = {0};
    for (size_t i = 0; i < ml; i++) {
        if (m[i] == '\n') mech_buf_append(&crlf, "\r", 1);
        mech_buf_append(&crlf, &m[i], 1);
    }
    free(m);
    write_file(in_dir("merges.txt"), crlf.data, crlf.len);
    mech_buf_free(&crlf);
    mech_tokenizer *t;
    mech_err err = {0};
    if (mech_tokenizer_load_dir(g_dir, &t, &err)) fail_msg("%s", err.msg);
    assert_same_tokenizer(t);
    mech_tokenizer_free(t);
    unlink(in_dir("vocab.json"));
    unlink(in_dir("merges.txt"));
    // Neither layout: MECH_ERR_IO.
    assert_int_equal(mech_tokenizer_load_dir(g_dir, &t, &err), MECH_ERR_IO);
    assert_null(t);
    assert_non_null(strstr(err.msg, "vocab.json + merges.txt"));
    rmdir(g_dir);
}

// ---------------------------------------------------------------------------
// Malformed vocabulary files

// A small valid vocabulary: the 256 bytes (ids in GPT-2's order), then the
// merges "a b", "ab c", "Ġ ab", then <|endoftext|>.
static void small_vocab(mech_buf *vocab, mech_buf *merges) {
    mech_buf_puts(vocab, "{");
    int id = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int c = 0; c < 256; c++) {
            int printable = (c >= 33 && c <= 126) || (c >= 161 && c <= 172) || c >= 174;
            if (printable != (pass == 0)) continue;
            char ch = (char)c;
            mech_buf sp = {0};
            spell(&sp, &ch, 1);
            mech_buf_json_string(vocab, sp.data, sp.len);
            mech_buf_printf(vocab, ": %d, ", id++);
            mech_buf_free(&sp);
        }
    }
    mech_buf_printf(vocab, "\"ab\": %d, \"abc\": %d, \"\xC4\xA0" "ab\": %d, \"<|endoftext|>\": %d}\n",
                    id, id + 1, id + 2, id + 3);
    mech_buf_puts(merges, "#version: 0.2\na b\nab c\n\xC4\xA0 ab\n");
}

static mech_status load_mem(const char *vocab, const char *merges, mech_tokenizer **t,
                            mech_err *err) {
    return mech_tokenizer_from_memory(vocab, strlen(vocab), "v.json", merges, strlen(merges),
                                      "m.txt", t, err);
}

static void test_tokenizer_small_vocab(void **state) {
    (void)state;
    mech_buf v = {0}, m = {0};
    small_vocab(&v, &m);
    mech_tokenizer *t;
    mech_err err = {0};
    if (load_mem(v.data, m.data, &t, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_tokenizer_vocab_size(t), 260);
    assert_int_equal(mech_tokenizer_eot(t), 259);
    size_t n;
    int32_t *ids = enc(t, "abc abd<|endoftext|>", 20, 1, &n);
    assert_int_equal(n, 4); // "abc" is a token; " abd" merges to "Ġab" + "d"; then eot
    assert_int_equal(ids[0], 256 + 1);
    assert_int_equal(ids[1], 256 + 2);
    assert_int_equal(ids[2], 'd' - 33);
    assert_int_equal(ids[3], 259);
    mech_free(ids);
    mech_tokenizer_free(t);
    mech_buf_free(&v);
    mech_buf_free(&m);
}

typedef struct bad_case {
    const char *find, *replace; // edit applied to the vocab (v) or merges (m)
    char which;
    mech_status code;
    const char *msg; // must appear in the error message
} bad_case;

static char *edit(const char *s, const char *find, const char *replace) {
    const char *at = strstr(s, find);
    if (!at) fail_msg("fixture edit: \"%s\" not found", find);
    size_t a = (size_t)(at - s), fl = strlen(find), rl = strlen(replace), sl = strlen(s);
    char *o = malloc(sl - fl + rl + 1);
    memcpy(o, s, a);
    memcpy(o + a, replace, rl);
    memcpy(o + a + rl, at + fl, sl - a - fl + 1);
    return o;
}

static void test_tokenizer_malformed(void **state) {
    (void)state;
    static const bad_case cases[] = {
        {"{", "[", 'v', MECH_ERR_FORMAT, "v.json: JSON line 1"},
        {"\"ab\": 256", "\"ab\": 256.5", 'v', MECH_ERR_FORMAT, "\"ab\": id is not an integer"},
        {"\"ab\": 256", "\"ab\": \"256\"", 'v', MECH_ERR_FORMAT, "id is not an integer"},
        {"\"ab\": 256", "\"ab\": 9999", 'v', MECH_ERR_FORMAT, "id 9999 out of range"},
        {"\"ab\": 256", "\"ab\": -1", 'v', MECH_ERR_FORMAT, "id -1 out of range"},
        {"\"ab\": 256", "\"ab\": 257", 'v', MECH_ERR_FORMAT, "both have id 257"},
        {"\"ab\": 256", "\"a b\": 256", 'v', MECH_ERR_FORMAT, "U+0020 is not one of GPT-2's"},
        {"\"ab\": 256", "\"\": 256", 'v', MECH_ERR_FORMAT, "empty token"},
        {"\"!\": 0,", "\"<|x|>\": 0,", 'v', MECH_ERR_FORMAT, "byte 0x21 (spelled \"!\") has no token"},
        {"\"ab\": 256", "\"abd\": 256", 'v', MECH_ERR_FORMAT, "m.txt:2: merge \"a b\": the result"},
        {"\"abc\": 257", "\"abcd\": 257", 'v', MECH_ERR_FORMAT, "m.txt:3: merge \"ab c\": the result"},
        {"\"<|endoftext|>\": 259", "\"xyz\": 259", 'v', MECH_ERR_FORMAT,
         "v.json: token \"xyz\" (id 259) is neither a byte"},
        {"\"<|endoftext|>\": 259", "\"a\": 259", 'v', MECH_ERR_FORMAT, "are the same token \"a\""},
        {"a b\n", "a  b\n", 'm', MECH_ERR_FORMAT, "m.txt:2: \"a  b\": expected two tokens"},
        {"a b\n", "ab\n", 'm', MECH_ERR_FORMAT, "m.txt:2: \"ab\": expected two tokens"},
        {"a b\n", "a b c\n", 'm', MECH_ERR_FORMAT, "m.txt:2:"},
        {"a b\n", " a\n", 'm', MECH_ERR_FORMAT, "m.txt:2:"},
        {"a b\n", "a b\n\n", 'm', MECH_ERR_FORMAT, "m.txt:3: empty line"},
        {"ab c\n", "ab x\n", 'm', MECH_ERR_FORMAT, "m.txt:3: merge \"ab x\": the result of"},
        {"ab c\n", "abq c\n", 'm', MECH_ERR_FORMAT, "m.txt:3: merge \"abq c\": \"abq\" is not in v.json"},
        {"ab c\n", "ab cq\n", 'm', MECH_ERR_FORMAT, "\"cq\" is not in v.json"},
        {"ab c\n", "ab c\na b\n", 'm', MECH_ERR_FORMAT, "m.txt:4: merge produces \"ab\", which line 2"},
        {"ab c\n", "ab \xC3\n", 'm', MECH_ERR_FORMAT, "m.txt:3: invalid UTF-8"},
        {"ab c\n", "ab \xE2\x82\xAC\n", 'm', MECH_ERR_FORMAT, "U+20AC is not one of GPT-2's"},
        {"ab c\n", "", 'm', MECH_ERR_FORMAT, "token \"abc\" (id 257) is neither a byte"},
        {"ab c\n", "ab c\n<|endoftext|> a\n", 'm', MECH_ERR_FORMAT, "m.txt:"},
    };
    mech_buf v = {0}, m = {0};
    small_vocab(&v, &m);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const bad_case *c = &cases[k];
        char *vv = c->which == 'v' ? edit(v.data, c->find, c->replace) : strdup(v.data);
        char *mm = c->which == 'm' ? edit(m.data, c->find, c->replace) : strdup(m.data);
        mech_tokenizer *t = (mech_tokenizer *)1;
        mech_err err = {0};
        mech_status st = load_mem(vv, mm, &t, &err);
        if (st != c->code || !strstr(err.msg, c->msg))
            fail_msg("case %zu: got %s \"%s\", want %s containing \"%s\"", k, mech_strerror(st),
                     err.msg, mech_strerror(c->code), c->msg);
        assert_null(t);
        free(vv);
        free(mm);
    }
    // Missing files: MECH_ERR_IO naming the file.
    mech_tokenizer *t;
    mech_err err = {0};
    assert_int_equal(mech_tokenizer_load("/nonexistent/encoder.json", "data/gpt2/vocab.bpe", &t, &err),
                     MECH_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/encoder.json"));
    assert_int_equal(mech_tokenizer_load("data/gpt2/encoder.json", "/nonexistent/vocab.bpe", &t, &err),
                     MECH_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/vocab.bpe"));
    assert_int_equal(mech_tokenizer_load_dir("/nonexistent", &t, &err), MECH_ERR_IO);
    assert_int_equal(mech_tokenizer_load(NULL, "x", &t, &err), MECH_ERR_ARG);
    // Files on disk report their path.
    make_dir("tok_bad");
    write_file(in_dir("encoder.json"), v.data, v.len);
    write_file(in_dir("vocab.bpe"), "#version: 0.2\na b\nzz top\n", 25);
    assert_int_equal(mech_tokenizer_load_dir(g_dir, &t, &err), MECH_ERR_FORMAT);
    char want[700];
    snprintf(want, sizeof want, "%s:3: merge \"zz top\"", in_dir("vocab.bpe"));
    if (!strstr(err.msg, want)) fail_msg("got \"%s\", want \"%s\"", err.msg, want);
    unlink(in_dir("encoder.json"));
    unlink(in_dir("vocab.bpe"));
    rmdir(g_dir);
    mech_buf_free(&v);
    mech_buf_free(&m);
}

// Every truncation of the small files fails cleanly, except those that only
// drop trailing whitespace.
static void test_tokenizer_truncated_small(void **state) {
    (void)state;
    mech_buf v = {0}, m = {0};
    small_vocab(&v, &m);
    for (int which = 0; which < 2; which++) {
        const mech_buf *b = which ? &m : &v;
        for (size_t cut = 0; cut < b->len; cut++) {
            // Heap copies of exactly cut bytes so ASan sees any overread.
            char *p = malloc(cut ? cut : 1);
            memcpy(p, b->data, cut);
            mech_tokenizer *t = NULL;
            mech_err err = {0};
            mech_status st = which ? mech_tokenizer_from_memory(v.data, v.len, "v.json", p, cut,
                                                                "m.txt", &t, &err)
                                   : mech_tokenizer_from_memory(p, cut, "v.json", m.data, m.len,
                                                                "m.txt", &t, &err);
            int only_ws = cut >= b->len - 1; // both files end with one newline
            if (only_ws) {
                assert_int_equal(st, MECH_OK);
                mech_tokenizer_free(t);
            } else {
                if (st != MECH_ERR_FORMAT) fail_msg("cut %zu of %s: %s", cut, which ? "m" : "v", err.msg);
                assert_null(t);
                assert_non_null(strstr(err.msg, which ? "m.txt" : "v.json"));
            }
            free(p);
        }
    }
    mech_buf_free(&v);
    mech_buf_free(&m);
}

// Truncations of the real files at spread-out points, including line ends.
static void test_tokenizer_truncated_gpt2(void **state) {
    (void)state;
    const char *vj = mech_gpt2_encoder_json, *mg = mech_gpt2_vocab_bpe;
    size_t vl = (size_t)(mech_gpt2_encoder_json_end - vj), ml = (size_t)(mech_gpt2_vocab_bpe_end - mg);
    size_t cuts[24];
    size_t nc = 0;
    for (int which = 0; which < 2; which++) {
        size_t len = which ? ml : vl;
        const char *src = which ? mg : vj;
        nc = 0;
        cuts[nc++] = 0;
        cuts[nc++] = 1;
        cuts[nc++] = 20;
        for (int k = 1; k < 8; k++) cuts[nc++] = len / 8 * (size_t)k + rnd() % 100;
        cuts[nc++] = len - 2;
        cuts[nc++] = len / 2;
        while (cuts[nc - 1] < len && src[cuts[nc - 1]] != '\n') cuts[nc - 1]++;
        cuts[nc - 1]++; // just after a newline: whole lines dropped
        cuts[nc++] = len - 5;
        cuts[nc++] = len - 10;
        for (size_t k = 0; k < nc; k++) {
            size_t cut = cuts[k];
            char *p = malloc(cut ? cut : 1);
            memcpy(p, src, cut);
            mech_tokenizer *t = NULL;
            mech_err err = {0};
            mech_status st =
                which ? mech_tokenizer_from_memory(vj, vl, "encoder.json", p, cut, "vocab.bpe", &t, &err)
                      : mech_tokenizer_from_memory(p, cut, "encoder.json", mg, ml, "vocab.bpe", &t, &err);
            if (st != MECH_ERR_FORMAT)
                fail_msg("cut %zu of %zu in %s: %s", cut, len, which ? "vocab.bpe" : "encoder.json",
                         st ? err.msg : "loaded");
            assert_null(t);
            assert_non_null(strstr(err.msg, which ? "vocab.bpe" : "encoder.json"));
            free(p);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer_gpt2_basics),
        cmocka_unit_test(test_tokenizer_cases_match_tiktoken),
        cmocka_unit_test(test_tokenizer_cases_roundtrip),
        cmocka_unit_test(test_tokenizer_random_bytes_roundtrip),
        cmocka_unit_test(test_tokenizer_invalid_utf8_bytewise),
        cmocka_unit_test(test_tokenizer_split),
        cmocka_unit_test(test_tokenizer_unicode_classes),
        cmocka_unit_test(test_tokenizer_heap_matches_linear),
        cmocka_unit_test(test_tokenizer_special),
        cmocka_unit_test(test_tokenizer_api_errors),
        cmocka_unit_test(test_tokenizer_load_openai_files),
        cmocka_unit_test(test_tokenizer_load_hf_dir),
        cmocka_unit_test(test_tokenizer_small_vocab),
        cmocka_unit_test(test_tokenizer_malformed),
        cmocka_unit_test(test_tokenizer_truncated_small),
        cmocka_unit_test(test_tokenizer_truncated_gpt2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
