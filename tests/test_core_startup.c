/*
** tests/test_core_startup.c: what `mech run` does to start fast must not
** change a result: logits restricted to the rows asked for equal those rows
** of the full product bit for bit (padded batches included), and `mech
** run`'s top-k printout is the same whether it computes one row (no
** --logits) or every row (--logits). The one-row product, which reads the
** weights in place instead of packing them, equals the packed kernels'
** result bit for bit. The GPT-2 tokenizer's tables built in at compile time
** equal the tables built from data/gpt2's files, and damaged tables are
** refused. Weights used in place from the mapped file stay writable, and
** writing leaves the file as it was.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "core/tokenizer_int.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

// ---------------------------------------------------------------------------
// The one-row product (a one-token forward) reads the weights in place

// out (1, N) = x @ w: equal, bit for bit, to row 0 of the same product with
// a second row, which goes through the packed kernels; for every kernel this
// CPU has, edge widths, several K blocks, bias or not, a row stride in w, one
// thread and two.
static void test_matmul_one_row_equals_packed(void **state) {
    (void)state;
    const int Ns[] = {1, 15, 16, 17, 47, 48, 49, 96, 100, 1536, 1537, 3100};
    const int Ks[] = {1, 5, 384, 385, 800};
    const char *kernels[] = {"avx512", "avx2", "portable"};
    mech_pool *pools[2] = {NULL, mech_pool_new(2)};
    uint64_t s = 99;
    for (size_t ki = 0; ki < sizeof kernels / sizeof *kernels; ki++)
        for (size_t a = 0; a < sizeof Ns / sizeof *Ns; a++)
            for (size_t b = 0; b < sizeof Ks / sizeof *Ks; b++) {
                int N = Ns[a], K = Ks[b], ldw = N + (int)(a % 3) * 5;
                float *w = malloc((size_t)K * ldw * sizeof *w), *x = malloc(2 * (size_t)K * sizeof *x);
                float *bias = malloc((size_t)N * sizeof *bias);
                float *one = malloc((size_t)N * sizeof *one), *two = malloc(2 * (size_t)N * sizeof *two);
                for (size_t i = 0; i < (size_t)K * ldw; i++) {
                    s = s * 6364136223846793005ull + 1442695040888963407ull;
                    w[i] = (float)((int)(s >> 40) % 2001 - 1000) / 997.0f;
                }
                for (int i = 0; i < 2 * K; i++) x[i] = (float)((i * 37) % 101 - 50) / 53.0f;
                for (int i = 0; i < N; i++) bias[i] = (float)(i % 7) - 3.25f;
                for (int p = 0; p < 2; p++)
                    for (int with_bias = 0; with_bias < 2; with_bias++) {
                        const float *bs = with_bias ? bias : NULL;
                        int r1 = mech_matmul_with(kernels[ki], 0, pools[p], one, N, x, K, w, ldw, bs, 1, K, N);
                        int r2 = mech_matmul_with(kernels[ki], 0, pools[p], two, N, x, K, w, ldw, bs, 2, K, N);
                        if (r1 < 0) { // the CPU has no such kernel
                            assert_int_equal(r2, -1);
                            continue;
                        }
                        if (memcmp(one, two, (size_t)N * sizeof *one))
                            fail_msg("%s, N=%d K=%d ldw=%d, %d thread(s), bias %d: the one-row product differs",
                                     kernels[ki], N, K, ldw, p + 1, with_bias);
                    }
                free(w);
                free(x);
                free(bias);
                free(one);
                free(two);
            }
    mech_pool_free(pools[1]);
}

// ---------------------------------------------------------------------------
// The tokenizer's built-in tables

// The blob in the library is what the loader builds from data/gpt2's files,
// byte for byte, and a tokenizer over it encodes and decodes like one built
// from the files.
static void test_gpt2_tables_match_files(void **state) {
    (void)state;
    size_t len = 0;
    const void *blob = mech_gpt2_tables(&len);
    assert_non_null(blob); // the Makefile builds them in
    mech_err err = {0};
    mech_tokenizer *files = NULL, *built_in = NULL;
    if (mech_tokenizer_load("data/gpt2/encoder.json", "data/gpt2/vocab.bpe", &files, &err)) fail_msg("%s", err.msg);
    mech_buf b = {0};
    assert_int_equal(mech_tokenizer_tables(files, &b, &err), MECH_OK);
    assert_int_equal(b.len, len);
    assert_memory_equal(b.data, blob, len);
    mech_buf_free(&b);

    assert_int_equal(mech_tokenizer_gpt2(&built_in, &err), MECH_OK);
    assert_int_equal(mech_tokenizer_vocab_size(built_in), mech_tokenizer_vocab_size(files));
    assert_int_equal(mech_tokenizer_eot(built_in), mech_tokenizer_eot(files));
    size_t tl = 0;
    char *text = mech_test_read("tests/fixtures/tokenizer/english.txt", &tl);
    int32_t *a = NULL, *c = NULL;
    size_t na = 0, nc = 0;
    for (int special = 0; special < 2; special++) {
        assert_int_equal(mech_tokenizer_encode(files, text, tl, special, &a, &na, &err), MECH_OK);
        assert_int_equal(mech_tokenizer_encode(built_in, text, tl, special, &c, &nc, &err), MECH_OK);
        assert_true(na > 100);
        assert_int_equal(na, nc);
        assert_memory_equal(a, c, na * sizeof *a);
        char *dec = NULL;
        size_t dl = 0;
        assert_int_equal(mech_tokenizer_decode(built_in, c, nc, &dec, &dl, &err), MECH_OK);
        assert_int_equal(dl, tl);
        assert_memory_equal(dec, text, tl);
        mech_free(dec);
        mech_free(a);
        mech_free(c);
    }
    free(text);
    mech_tokenizer_free(built_in);
    mech_tokenizer_free(files);
}

// A tokenizer over possibly damaged tables: refused, or safe to use (the
// sanitizer build checks every read stays inside the blob).
static void use_or_refuse(const unsigned char *blob, size_t len) {
    mech_err err = {0};
    mech_tokenizer *t = NULL;
    mech_status st = mech_tokenizer_from_tables(blob, len, "damaged", 0, &t, &err);
    if (st) {
        assert_null(t);
        assert_true(err.msg[0] != 0);
        return;
    }
    const char *text = "Hello world, it's 2026! \xc3\xa9t\xc3\xa9 <|endoftext|> tabs\t\tand  spaces";
    int32_t *ids = NULL;
    size_t n = 0;
    if (mech_tokenizer_encode(t, text, strlen(text), 1, &ids, &n, &err) == MECH_OK) {
        char *dec = NULL;
        size_t dl = 0;
        if (mech_tokenizer_decode(t, ids, n, &dec, &dl, &err) == MECH_OK) mech_free(dec);
        mech_free(ids);
    }
    mech_tokenizer_free(t);
}

static void test_gpt2_tables_damaged(void **state) {
    (void)state;
    size_t len = 0;
    const unsigned char *blob = mech_gpt2_tables(&len);
    assert_non_null(blob);
    unsigned char *copy = malloc(len + 16); // malloc's alignment is enough (8)
    memcpy(copy, blob, len);
    mech_err err = {0};
    mech_tokenizer *t = NULL;
    assert_int_equal(mech_tokenizer_from_tables(copy, len, "copy", 0, &t, &err), MECH_OK);
    mech_tokenizer_free(t);
    // every truncation is refused: the size is part of the header's promise
    size_t cuts[] = {0, 1, 7, 8, 100, 1055, 1056, 1057, 4096, len / 3, len / 2, len - 4096, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        t = NULL;
        assert_int_not_equal(mech_tokenizer_from_tables(copy, cuts[i], "cut", i % 2, &t, &err), MECH_OK);
        assert_null(t);
    }
    assert_int_not_equal(mech_tokenizer_from_tables(copy, len + 1, "long", 1, &t, &err), MECH_OK);
    assert_int_equal(mech_tokenizer_from_tables(copy + 4, len, "misaligned", 1, &t, &err), MECH_ERR_ARG);
    // each header byte changed: refused or harmless
    for (size_t i = 0; i < 1056; i++) {
        unsigned char was = copy[i];
        copy[i] ^= (unsigned char)(1u << (i % 8));
        use_or_refuse(copy, len);
        copy[i] = 0xFF;
        use_or_refuse(copy, len);
        copy[i] = was;
    }
    // bytes all through the arrays set to large, negative and small values
    uint64_t s = 12345;
    for (int i = 0; i < 600; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        size_t at = 1056 + (size_t)(s >> 33) % (len - 1056);
        unsigned char was = copy[at];
        static const unsigned char vals[] = {0xFF, 0x7F, 0x80, 0x00, 0x01, 0xC3};
        copy[at] = vals[i % 6];
        use_or_refuse(copy, len);
        copy[at] = was;
    }
    free(copy);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

// Does t read its token bytes from the built-in tables (no build)?
static int uses_builtin_tables(const mech_tokenizer *t) {
    size_t len = 0, n = 0;
    const char *blob = mech_gpt2_tables(&len), *tok = mech_tokenizer_token(t, 0, &n);
    return tok >= blob && tok < blob + len;
}

// Tokenizer files beside a model that are GPT-2's own, byte for byte (as
// Hugging Face's gpt2 vocab.json and merges.txt are), get the built-in
// tables; any other bytes are parsed and built, with the same result when
// only the formatting differs.
static void test_tokenizer_files_same_as_builtin(void **state) {
    (void)state;
    char dir[256], vocab[300], merges[300];
    snprintf(dir, sizeof dir, "%s", mech_test_tmp("startup-tokdir"));
    mkdir(dir, 0755);
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    size_t vl = 0, ml = 0, tl = 0;
    char *vj = mech_test_read("data/gpt2/encoder.json", &vl), *mg = mech_test_read("data/gpt2/vocab.bpe", &ml);
    char *text = mech_test_read("tests/fixtures/tokenizer/english.txt", &tl);
    write_file(vocab, vj, vl);
    write_file(merges, mg, ml);
    mech_err err = {0};
    mech_tokenizer *ref = NULL, *same = NULL, *other = NULL;
    assert_int_equal(mech_tokenizer_gpt2(&ref, &err), MECH_OK);
    assert_int_equal(mech_tokenizer_load_dir(dir, &same, &err), MECH_OK);
    assert_true(uses_builtin_tables(same));
    // the same vocabulary with a trailing newline: other bytes, built from them
    vj[vl] = '\n';
    write_file(vocab, vj, vl + 1);
    assert_int_equal(mech_tokenizer_load_dir(dir, &other, &err), MECH_OK);
    assert_false(uses_builtin_tables(other));
    int32_t *a = NULL, *b = NULL, *c = NULL;
    size_t na = 0, nb = 0, nc = 0;
    assert_int_equal(mech_tokenizer_encode(ref, text, tl, 1, &a, &na, &err), MECH_OK);
    assert_int_equal(mech_tokenizer_encode(same, text, tl, 1, &b, &nb, &err), MECH_OK);
    assert_int_equal(mech_tokenizer_encode(other, text, tl, 1, &c, &nc, &err), MECH_OK);
    assert_int_equal(na, nb);
    assert_int_equal(na, nc);
    assert_memory_equal(a, b, na * sizeof *a);
    assert_memory_equal(a, c, na * sizeof *a);
    mech_free(a);
    mech_free(b);
    mech_free(c);
    mech_tokenizer_free(ref);
    mech_tokenizer_free(same);
    mech_tokenizer_free(other);
    remove(vocab);
    remove(merges);
    rmdir(dir);
    free(vj);
    free(mg);
    free(text);
}

// ---------------------------------------------------------------------------
// Weights used in place from the mapped file

static unsigned char *file_bytes(const char *path, size_t *len) {
    unsigned char *b = mech_test_read(path, len);
    assert_non_null(b);
    return b;
}

// Writing a loaded model's weights changes that model's results as writing
// the same weights of a model in memory does, and never the file.
static void test_loaded_weights_writable_file_unchanged(void **state) {
    (void)state;
    mech_model *mem = small_model();
    const char *path = mech_test_tmp("startup-cow.safetensors");
    mech_err err = {0};
    if (mech_model_save(mem, path, MECH_DT_F32, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    size_t len0 = 0, len1 = 0;
    unsigned char *before = file_bytes(path, &len0);
    mech_model *m = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    assert_null(m->owned); // F32, aligned: every tensor used in place
    int32_t ids[B * T];
    fill_ids(ids, m->cfg.d_vocab);
    size_t n = (size_t)B * T * (size_t)m->cfg.d_vocab;
    float *orig = full_logits(m, ids, NULL);
    const char *names[] = {"h.0.mlp.c_fc.weight", "h.1.attn.c_attn.bias", "wte.weight", "ln_f.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        float *p = mech_model_param(m, names[i]), *q = mech_model_param(mem, names[i]);
        assert_non_null(p);
        assert_non_null(q);
        assert_memory_equal(p, q, 16 * sizeof(float));
        for (int k = 0; k < 16; k++) p[k] = q[k] = 0.25f * (float)(k + 1) - 1.0f;
    }
    float *changed = full_logits(m, ids, NULL), *want = full_logits(mem, ids, NULL);
    assert_memory_equal(changed, want, n * sizeof(float));
    assert_true(memcmp(changed, orig, n * sizeof(float)) != 0);
    mech_model_free(m);
    unsigned char *after = file_bytes(path, &len1);
    assert_int_equal(len1, len0);
    assert_memory_equal(after, before, len0);
    // loaded again: the original weights and results
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    float *again = full_logits(m, ids, NULL);
    assert_memory_equal(again, orig, n * sizeof(float));
    mech_model_free(m);
    free(again);
    free(changed);
    free(want);
    free(orig);
    free(before);
    free(after);
    mech_model_free(mem);
    remove(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_rows_equal_full_rows),
        cmocka_unit_test(test_logits_rows_equal_full_rows_padded),
        cmocka_unit_test(test_logits_rows_bad_ranges),
        cmocka_unit_test(test_cli_run_top_k_same_with_and_without_logits),
        cmocka_unit_test(test_matmul_one_row_equals_packed),
        cmocka_unit_test(test_gpt2_tables_match_files),
        cmocka_unit_test(test_gpt2_tables_damaged),
        cmocka_unit_test(test_tokenizer_files_same_as_builtin),
        cmocka_unit_test(test_loaded_weights_writable_file_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
