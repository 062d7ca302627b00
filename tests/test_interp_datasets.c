/*
** tests/test_interp_datasets.c: the built-in prompt-pair datasets
** (interp/datasets.c) with the built-in GPT-2 tokenizer: equal clean/corrupt
** lengths, the prompts re-encode to the stored ids, answers and wrong
** answers decode to what the construction says, IOI's ABC corruption shares
** no name with the clean prompt, greater-than answers are later years,
** induction answers are what the repeat predicts, determinism in the seed
** (and pair i independent of n), and the argument errors.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "interp/interp.h"
#include "compiler/compiler.h"
#include "tests/support/check.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mech_tokenizer *tok;

static int setup(void **state) {
    (void)state;
    mech_err err = {0};
    return mech_tokenizer_gpt2(&tok, &err) == MECH_OK ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    mech_tokenizer_free(tok);
    return 0;
}

// Decoded text of one token (owned).
static char *decode1(int32_t id) {
    mech_err err = {0};
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(mech_tokenizer_decode(tok, &id, 1, &text, &len, &err), MECH_OK);
    return text;
}

// The prompt text re-encodes to the pair's ids, and both have p->n tokens.
static void check_text(const mech_pair *p) {
    mech_err err = {0};
    const char *texts[2] = {p->clean_text, p->corrupt_text};
    const int32_t *want[2] = {p->clean, p->corrupt};
    for (int k = 0; k < 2; k++) {
        assert_non_null(texts[k]);
        int32_t *ids = NULL;
        size_t n = 0;
        assert_int_equal(mech_tokenizer_encode(tok, texts[k], strlen(texts[k]), 0, &ids, &n, &err), MECH_OK);
        assert_int_equal(n, p->n);
        assert_memory_equal(ids, want[k], sizeof(int32_t) * n);
        mech_free(ids);
    }
}

static int same_pairs(const mech_pair *a, const mech_pair *b, int n) {
    for (int i = 0; i < n; i++) {
        if (a[i].n != b[i].n || a[i].answer != b[i].answer || a[i].wrong != b[i].wrong) return 0;
        if (memcmp(a[i].clean, b[i].clean, sizeof(int32_t) * (size_t)a[i].n)) return 0;
        if (memcmp(a[i].corrupt, b[i].corrupt, sizeof(int32_t) * (size_t)a[i].n)) return 0;
    }
    return 1;
}

// Name as it appears in a prompt: " Name" followed by a non-letter.
static int has_word(const char *text, const char *word) {
    size_t l = strlen(word);
    for (const char *s = strstr(text, word); s; s = strstr(s + 1, word))
        if (!isalpha((unsigned char)s[l])) return 1;
    return 0;
}

// ---------------------------------------------------------------------------
// IOI

static void test_ioi_example_shape(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *p = NULL;
    enum { N = 200 };
    assert_int_equal(mech_dataset_ioi(tok, N, 0, &p, &err), MECH_OK);
    int seen_when = 0;
    for (int i = 0; i < N; i++) {
        check_text(&p[i]);
        assert_true(p[i].n > 5);
        char *io = decode1(p[i].answer), *s = decode1(p[i].wrong);
        // Single-token names with a leading space.
        assert_true(io[0] == ' ' && isupper((unsigned char)io[1]));
        assert_true(s[0] == ' ' && isupper((unsigned char)s[1]));
        assert_string_not_equal(io, s);
        // ABBA: IO then S in the first clause, S again later, prompt ends before IO.
        const char *c = p[i].clean_text;
        const char *a1 = strstr(c, io), *b1 = strstr(c, s);
        assert_non_null(a1);
        assert_non_null(b1);
        assert_true(a1 < b1);
        assert_non_null(strstr(b1 + 1, s));
        assert_true(has_word(c, io));
        // The ABC corruption shares no name with the clean prompt (ids and text).
        assert_false(has_word(p[i].corrupt_text, io));
        assert_false(has_word(p[i].corrupt_text, s));
        for (int t = 0; t < p[i].n; t++) {
            assert_int_not_equal(p[i].corrupt[t], p[i].answer);
            assert_int_not_equal(p[i].corrupt[t], p[i].wrong);
        }
        // The answer token sits in the clean prompt exactly once, S twice.
        int na = 0, ns = 0;
        for (int t = 0; t < p[i].n; t++) {
            na += p[i].clean[t] == p[i].answer;
            ns += p[i].clean[t] == p[i].wrong;
        }
        assert_int_equal(na, 1);
        assert_int_equal(ns, 2);
        assert_int_not_equal(p[i].clean[p[i].n - 1], p[i].answer);
        // Corrupt = same template: the tokens differ only at the 3 name slots.
        int diff = 0;
        for (int t = 0; t < p[i].n; t++) diff += p[i].clean[t] != p[i].corrupt[t];
        assert_int_equal(diff, 3);
        if (!strncmp(c, "When", 4) && strstr(c, "went to the")) seen_when = 1;
        mech_free(io);
        mech_free(s);
    }
    assert_true(seen_when);
    mech_pairs_free(p, N);
}

static void test_ioi_determinism(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *a = NULL, *b = NULL, *c = NULL, *d = NULL;
    assert_int_equal(mech_dataset_ioi(tok, 50, 7, &a, &err), MECH_OK);
    assert_int_equal(mech_dataset_ioi(tok, 50, 7, &b, &err), MECH_OK);
    assert_int_equal(mech_dataset_ioi(tok, 50, 8, &c, &err), MECH_OK);
    assert_int_equal(mech_dataset_ioi(tok, 20, 7, &d, &err), MECH_OK);
    assert_true(same_pairs(a, b, 50));
    for (int i = 0; i < 50; i++) assert_string_equal(a[i].clean_text, b[i].clean_text);
    assert_false(same_pairs(a, c, 50));
    assert_true(same_pairs(a, d, 20)); // pair i depends only on (seed, i)
    mech_pairs_free(a, 50);
    mech_pairs_free(b, 50);
    mech_pairs_free(c, 50);
    mech_pairs_free(d, 20);
}

// ---------------------------------------------------------------------------
// Greater-than

static void test_greater_than(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *p = NULL;
    enum { N = 300 };
    assert_int_equal(mech_dataset_greater_than(tok, N, 0, &p, &err), MECH_OK);
    for (int i = 0; i < N; i++) {
        check_text(&p[i]);
        char noun[64];
        int year = 0, cent = 0, cyear = 0, ccent = 0, used = 0;
        assert_int_equal(sscanf(p[i].clean_text, "The %63s lasted from the year %d to %d%n", noun, &year, &cent,
                                &used),
                         3);
        assert_int_equal((size_t)used, strlen(p[i].clean_text));
        assert_int_equal(year / 100, cent);
        assert_true(year % 100 >= 2 && year % 100 <= 98);
        assert_true(cent >= 11 && cent <= 17);
        assert_int_equal(sscanf(p[i].corrupt_text, "The %*s lasted from the year %d to %d", &cyear, &ccent), 2);
        assert_int_equal(cyear, cent * 100 + 1);
        assert_int_equal(ccent, cent);
        // Length 10 ("The", noun, ..., " XX", "YY", " to", " XX"); only YY differs.
        assert_int_equal(p[i].n, 10);
        for (int t = 0; t < p[i].n; t++)
            if (t != 7) assert_int_equal(p[i].clean[t], p[i].corrupt[t]);
        assert_int_not_equal(p[i].clean[7], p[i].corrupt[7]);
        char *ans = decode1(p[i].answer), *wr = decode1(p[i].wrong), *yy = decode1(p[i].clean[7]),
             *one = decode1(p[i].corrupt[7]);
        assert_int_equal(strlen(ans), 2);
        assert_true(isdigit((unsigned char)ans[0]) && isdigit((unsigned char)ans[1]));
        assert_int_equal(strlen(wr), 2);
        assert_int_equal(atoi(ans), year % 100 + 1);
        assert_true(atoi(ans) > year % 100);
        assert_int_equal(atoi(wr), year % 100 - 1);
        assert_int_equal(atoi(yy), year % 100);
        assert_string_equal(one, "01");
        mech_free(ans);
        mech_free(wr);
        mech_free(yy);
        mech_free(one);
    }
    mech_pairs_free(p, N);
}

static void test_greater_than_example(void **state) {
    (void)state;
    // The example prompt is among those the construction can produce
    // and tokenizes to the shape the generator checks.
    mech_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    const char *t = "The war lasted from the year 1742 to 17";
    assert_int_equal(mech_tokenizer_encode(tok, t, strlen(t), 0, &ids, &n, &err), MECH_OK);
    assert_int_equal(n, 10);
    char *yy = decode1(ids[7]);
    assert_string_equal(yy, "42");
    mech_free(yy);
    mech_free(ids);
}

static void test_greater_than_determinism(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(mech_dataset_greater_than(tok, 40, 3, &a, &err), MECH_OK);
    assert_int_equal(mech_dataset_greater_than(tok, 40, 3, &b, &err), MECH_OK);
    assert_int_equal(mech_dataset_greater_than(tok, 40, 4, &c, &err), MECH_OK);
    assert_true(same_pairs(a, b, 40));
    assert_false(same_pairs(a, c, 40));
    mech_pairs_free(a, 40);
    mech_pairs_free(b, 40);
    mech_pairs_free(c, 40);
}

// ---------------------------------------------------------------------------
// Induction

static void test_induction(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *p = NULL;
    enum { N = 100, LEN = 20, LO = 1000, V = 50257 };
    const int32_t bos = mech_tokenizer_eot(tok);
    assert_int_equal(mech_dataset_induction(V, N, LEN, 5, LO, bos, &p, &err), MECH_OK);
    for (int i = 0; i < N; i++) {
        assert_int_equal(p[i].n, 2 * LEN);
        assert_null(p[i].clean_text);
        assert_null(p[i].corrupt_text);
        assert_int_equal(p[i].clean[0], bos);
        assert_int_equal(p[i].corrupt[0], bos);
        for (int j = 1; j < p[i].n; j++) {
            assert_true(p[i].clean[j] >= LO && p[i].clean[j] < V);
            assert_true(p[i].corrupt[j] >= LO && p[i].corrupt[j] < V);
        }
        // Second copy repeats the first; the answer is the next token of r.
        for (int j = 0; j < LEN - 1; j++) {
            assert_int_equal(p[i].clean[1 + LEN + j], p[i].clean[1 + j]);
            assert_int_equal(p[i].corrupt[1 + LEN + j], p[i].corrupt[1 + j]);
        }
        assert_int_equal(p[i].answer, p[i].clean[LEN]);
        assert_int_equal(p[i].wrong, p[i].corrupt[LEN]);
        // r has distinct tokens; wrong is not in the clean prompt.
        for (int j = 1; j <= LEN; j++) {
            for (int k = j + 1; k <= LEN; k++) assert_int_not_equal(p[i].clean[j], p[i].clean[k]);
            assert_int_not_equal(p[i].clean[j], p[i].wrong);
        }
        assert_memory_not_equal(p[i].clean, p[i].corrupt, sizeof(int32_t) * (size_t)p[i].n);
    }
    mech_pairs_free(p, N);

    // No BOS; a range just large enough (len + 1 ids).
    assert_int_equal(mech_dataset_induction(10, 30, 4, 1, 5, -1, &p, &err), MECH_OK);
    for (int i = 0; i < 30; i++) {
        assert_int_equal(p[i].n, 7);
        assert_int_equal(p[i].answer, p[i].clean[3]);
        assert_int_not_equal(p[i].answer, p[i].wrong);
    }
    mech_pairs_free(p, 30);
}

static void test_induction_determinism(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *a = NULL, *b = NULL, *c = NULL;
    assert_int_equal(mech_dataset_induction(50257, 30, 10, 9, 0, -1, &a, &err), MECH_OK);
    assert_int_equal(mech_dataset_induction(50257, 30, 10, 9, 0, -1, &b, &err), MECH_OK);
    assert_int_equal(mech_dataset_induction(50257, 30, 10, 10, 0, -1, &c, &err), MECH_OK);
    assert_true(same_pairs(a, b, 30));
    assert_false(same_pairs(a, c, 30));
    mech_pairs_free(a, 30);
    mech_pairs_free(b, 30);
    mech_pairs_free(c, 30);
}

// ---------------------------------------------------------------------------
// Scale and errors

static void test_n_1000(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *p = NULL;
    assert_int_equal(mech_dataset_ioi(tok, 1000, 123, &p, &err), MECH_OK);
    for (int i = 0; i < 1000; i++) check_text(&p[i]);
    mech_pairs_free(p, 1000);
    assert_int_equal(mech_dataset_greater_than(tok, 1000, 123, &p, &err), MECH_OK);
    for (int i = 0; i < 1000; i++) {
        check_text(&p[i]);
        assert_int_equal(p[i].n, 10);
    }
    mech_pairs_free(p, 1000);
    assert_int_equal(mech_dataset_induction(50257, 1000, 50, 123, 0, 50256, &p, &err), MECH_OK);
    mech_pairs_free(p, 1000);
}

static void test_errors(void **state) {
    (void)state;
    mech_err err = {0};
    mech_pair *p = (mech_pair *)&err; // must come back NULL
    assert_int_equal(mech_dataset_ioi(tok, 0, 0, &p, &err), MECH_ERR_ARG);
    assert_null(p);
    assert_int_equal(mech_dataset_ioi(NULL, 3, 0, &p, &err), MECH_ERR_ARG);
    assert_int_equal(mech_dataset_ioi(tok, 3, 0, NULL, &err), MECH_ERR_ARG);
    assert_int_equal(mech_dataset_greater_than(tok, -1, 0, &p, &err), MECH_ERR_ARG);
    assert_null(p);
    assert_int_equal(mech_dataset_greater_than(NULL, 1, 0, &p, &err), MECH_ERR_ARG);
    p = (mech_pair *)&err;
    assert_int_equal(mech_dataset_induction(100, 5, 1, 0, 0, -1, &p, &err), MECH_ERR_ARG);
    assert_null(p);
    assert_int_equal(mech_dataset_induction(10, 5, 5, 0, 5, -1, &p, &err), MECH_ERR_ARG); // needs 6 ids
    assert_non_null(strstr(err.msg, "distinct"));
    assert_int_equal(mech_dataset_induction(10, 0, 3, 0, 0, -1, &p, &err), MECH_ERR_ARG);
    assert_int_equal(mech_dataset_induction(10, 5, 3, 0, -1, -1, &p, &err), MECH_ERR_ARG);
    mech_pairs_free(NULL, 5);
}

// The compiled-model dataset: [BOS] + vocab tokens, seeded, and the answers
// are what the reference interpreter outputs at the last position.
static void check_compiled(const char *program, const char *corruption) {
    char path[512], *out;
    snprintf(path, sizeof path, "%s", mech_test_tmp("ds-compiled.safetensors"));
    if (mech_test_cli(&out, NULL, "compile examples/rasp/%s.rasp -o %s", program, path)) fail_msg("%s", out);
    free(out);
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_load(path, &m, &err), MECH_OK);
    const char *src = mech_model_meta(m, "mech.rasp.source");
    mech_rasp_program *p = NULL;
    assert_int_equal(mech_rasp_parse(program, src, strlen(src), &p, &err), MECH_OK);
    size_t nv;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    mech_json *ro = NULL;
    const char *ros = mech_model_meta(m, "mech.rasp.readout");
    assert_int_equal(mech_json_parse(ros, strlen(ros), &ro, &err), MECH_OK);
    const mech_json *vals = mech_json_get(ro, "values");
    assert_int_equal(mech_compiled_n_out(m), (int)vals->n);
    int n = 25, len = 4;
    mech_pair *d = NULL, *d2 = NULL;
    assert_int_equal(mech_dataset_compiled(m, n, len, 7, corruption, &d, &err), MECH_OK);
    assert_int_equal(mech_dataset_compiled(m, n, len, 7, corruption, &d2, &err), MECH_OK);
    int answers_differ = 0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(d[i].n, len + 1);
        assert_memory_equal(d[i].clean, d2[i].clean, sizeof(int32_t) * (size_t)(len + 1));
        assert_memory_equal(d[i].corrupt, d2[i].corrupt, sizeof(int32_t) * (size_t)(len + 1));
        assert_int_equal(d[i].clean[0], 0);
        assert_int_equal(d[i].corrupt[0], 0);
        mech_rasp_value in[2][8];
        for (int j = 1; j <= len; j++) {
            assert_true(d[i].clean[j] >= 1 && d[i].clean[j] <= (int32_t)nv);
            assert_true(d[i].corrupt[j] >= 1 && d[i].corrupt[j] <= (int32_t)nv);
            in[0][j - 1] = vocab[d[i].clean[j] - 1];
            in[1][j - 1] = vocab[d[i].corrupt[j] - 1];
        }
        if (!strcmp(corruption, "shuffle")) { // the same values, counted
            int c0[64] = {0}, c1[64] = {0};
            for (int j = 1; j <= len; j++) c0[d[i].clean[j]]++, c1[d[i].corrupt[j]]++;
            assert_memory_equal(c0, c1, sizeof c0);
        }
        for (int side = 0; side < 2; side++) {
            mech_rasp_value *o = NULL;
            assert_int_equal(mech_rasp_eval(p, in[side], (size_t)len, &o, &err), MECH_OK);
            mech_buf want = {0}, got = {0};
            mech_rasp_value_json(&want, &o[len - 1]);
            const mech_json *x = &vals->items[side ? d[i].wrong : d[i].answer];
            if (x->type == MECH_JSON_STRING) mech_buf_json_string(&got, x->str, x->len);
            else mech_buf_printf(&got, "%lld", (long long)x->inum);
            assert_string_equal(got.data, want.data);
            mech_buf_free(&want);
            mech_buf_free(&got);
            mech_free(o);
        }
        answers_differ += d[i].answer != d[i].wrong;
        // the text is what `mech run --input` reads back
        mech_rasp_value *back = NULL;
        size_t nb = 0;
        assert_int_equal(mech_rasp_input_parse(p, d[i].clean_text, &back, &nb, &err), MECH_OK);
        assert_int_equal(nb, (size_t)len);
        for (int j = 0; j < len; j++) assert_true(mech_rasp_value_eq(&back[j], &in[0][j]));
        mech_free(back);
    }
    assert_true(answers_differ > 0);
    mech_pairs_free(d, n);
    mech_pairs_free(d2, n);
    assert_int_equal(mech_dataset_compiled(m, n, 99, 7, corruption, &d, &err), MECH_ERR_ARG);
    assert_int_equal(mech_dataset_compiled(m, n, len, 7, "sideways", &d, &err), MECH_ERR_ARG);
    mech_json_free(ro);
    mech_rasp_program_free(p);
    mech_model_free(m);
}

static void test_compiled(void **state) {
    check_compiled("reverse", "random");
    check_compiled("reverse", "shuffle");
    check_compiled("sort", "random");
    check_compiled("hist", "shuffle");
    mech_err err = {0};
    mech_model *m = NULL;
    mech_pair *d = NULL;
    assert_int_equal(mech_model_load("tests/fixtures/gpt2-tiny", &m, &err), MECH_OK);
    assert_int_equal(mech_dataset_compiled(m, 2, 2, 1, "random", &d, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "not a compiled RASP model"));
    assert_int_equal(mech_compiled_n_out(m), 0);
    mech_model_free(m);
}

// The compiled dataset's default length (len 0, for every command): the
// longest below max_seq_len whose clean outputs differ; inputs are redrawn
// so that no output makes up more than half of them.
static mech_model *compiled_model(const char *program) {
    char path[512], *out;
    snprintf(path, sizeof path, "%s", mech_test_tmp("ds-default.safetensors"));
    if (mech_test_cli(&out, NULL, "compile examples/rasp/%s.rasp -o %s", program, path)) fail_msg("%s", out);
    free(out);
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_load(path, &m, &err), MECH_OK);
    return m;
}

static void check_default_len(const char *program, int want_len, int want_varies) {
    mech_model *m = compiled_model(program);
    mech_err err = {0};
    mech_pair *d = NULL;
    int n = 20, varies = -1;
    if (mech_dataset_compiled(m, n, 0, 1, "random", &d, &err)) fail_msg("%s: %s", program, err.msg);
    assert_int_equal(d[0].n - 1, want_len);
    assert_int_equal(mech_compiled_outputs_vary(m, d, n, &varies, &err), MECH_OK);
    assert_int_equal(varies, want_varies);
    // the same as asking for that length
    mech_pair *e = NULL;
    assert_int_equal(mech_dataset_compiled(m, n, want_len, 1, "random", &e, &err), MECH_OK);
    for (int i = 0; i < n; i++) assert_memory_equal(d[i].clean, e[i].clean, sizeof(int32_t) * (size_t)d[i].n);
    mech_pairs_free(e, n);
    if (want_varies && mech_compiled_n_out(m) == 2) { // a boolean output: both values, neither above half
        int count[2] = {0, 0};
        for (int i = 0; i < n; i++) count[d[i].answer]++;
        assert_true(count[0] >= 1 && count[1] >= 1);
        assert_true(count[0] <= (n + 1) / 2 && count[1] <= (n + 1) / 2);
    }
    mech_pairs_free(d, n);
    mech_model_free(m);
}

static void test_compiled_default_len(void **state) {
    (void)state;
    check_default_len("reverse", 4, 1);       // max_seq_len 5
    check_default_len("shuffle_dyck1", 4, 1); // max_seq_len 6; false at every odd length
    check_default_len("shuffle_dyck2", 4, 1); // max_seq_len 5; balanced inputs are 4 % of length 4's
    check_default_len("length", 4, 0);        // the same output for every input of one length
    // an odd length of a Dyck language: constant
    mech_model *m = compiled_model("shuffle_dyck1");
    mech_err err = {0};
    mech_pair *d = NULL;
    int varies = -1;
    assert_int_equal(mech_dataset_compiled(m, 20, 5, 1, "random", &d, &err), MECH_OK);
    assert_int_equal(mech_compiled_outputs_vary(m, d, 20, &varies, &err), MECH_OK);
    assert_int_equal(varies, 0);
    mech_pairs_free(d, 20);
    assert_int_equal(mech_dataset_compiled_max_len(m), 6);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ioi_example_shape),
        cmocka_unit_test(test_ioi_determinism),
        cmocka_unit_test(test_greater_than),
        cmocka_unit_test(test_greater_than_example),
        cmocka_unit_test(test_greater_than_determinism),
        cmocka_unit_test(test_induction),
        cmocka_unit_test(test_induction_determinism),
        cmocka_unit_test(test_n_1000),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_compiled),
        cmocka_unit_test(test_compiled_default_len),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
