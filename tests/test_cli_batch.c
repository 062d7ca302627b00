/*
** tests/test_cli_batch.c: how the experiment commands turn prompts into a
** batch: BOS in front of text (--prepend-bos / --no-prepend-bos), sequences
** of unequal lengths padded with an attention mask (--padding-side) whose
** stored results equal each sequence run alone, `heads --random` prompts as
** TransformerLens builds them, and `heads --random` longer than the context
** (once a heap-use-after-free).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

// One line per result row of run `run`, item `item` (without the run id and
// item), in a fixed order, values exact.
static char *rows_of(const char *db, int run, int item) {
    char sql[512];
    snprintf(sql, sizeof sql,
             "select site, layer, pos, head, token, rank, metric, quote(value) from results where run_id = %d and "
             "item = %d order by site, layer, pos, head, token, rank, metric",
             run, item);
    return mech_test_sql_rows(db, sql);
}

// The stored tokens (JSON text) of run, item, role "prompt".
static char *tokens_of(const char *db, int run, int item) {
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "select tokens from prompts where run_id = %d and item = %d", run, item);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    char *s = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(h);
    return s;
}

// The tiny preset: GPT-2's vocabulary, so <|endoftext|> (50256) is a token.
static const char *tiny_model(void) {
    static char path[256];
    if (!path[0]) {
        snprintf(path, sizeof path, "%s", mech_test_tmp("batch-tiny.safetensors"));
        char *out = NULL;
        assert_int_equal(mech(&out, "init -o %s --preset tiny --n-ctx 64 --seed 3", path), 0);
        free(out);
    }
    return path;
}

// `heads --random N` past the context is a usage error naming the context,
// on a 1-layer model with a 1-token context too; the freed model was read
// here once (ASan: heap-use-after-free in cmd_heads).
static void test_heads_random_longer_than_context(void **state) {
    const char *one = mech_test_tmpn("batch-ctx1.safetensors"), *db = mech_test_tmpn("batch-ctx.db");
    char *out = NULL;
    assert_int_equal(mech(&out, "init -o %s --layers 1 --heads 2 --d-model 16 --d-head 8 --d-mlp 32 --n-ctx 1 --vocab 300",
                          one), 0);
    free(out);
    mech_test_rm_db(db);
    assert_int_equal(mech(&out, "heads --model %s --random 2 --db %s", one, db), 2);
    assert_non_null(strstr(out, "context of 1"));
    free(out);
    assert_int_equal(mech(&out, "heads --model %s --random 10000 --db %s", tiny_model(), db), 2);
    assert_non_null(strstr(out, "20001 tokens with BOS, more than the model's context of 64"));
    free(out);
    // the same for prompts: the check names the sequence and the context
    assert_int_equal(mech(&out, "lens --model %s --ids 1,2 --db %s", one, db), 2);
    assert_non_null(strstr(out, "context of 1"));
    free(out);
    mech_test_rm_db(db);
}

// Text gets <|endoftext|> in front by default, id lists do not; the flags
// turn either way; a model without that token refuses --prepend-bos.
static void test_bos_default_and_flags(void **state) {
    const char *db = mech_test_tmpn("batch-bos.db");
    mech_test_rm_db(db);
    char *out = NULL;
    assert_int_equal(mech(&out, "lens --model %s --db %s --prompt Hello", tiny_model(), db), 0);
    free(out);
    assert_int_equal(mech(&out, "lens --model %s --db %s --prompt Hello --no-prepend-bos", tiny_model(), db), 0);
    free(out);
    assert_int_equal(mech(&out, "lens --model %s --db %s --ids 15496", tiny_model(), db), 0);
    free(out);
    assert_int_equal(mech(&out, "lens --model %s --db %s --ids 15496 --prepend-bos", tiny_model(), db), 0);
    free(out);
    const char *want[4] = {"[50256,15496]", "[15496]", "[15496]", "[50256,15496]"};
    for (int r = 0; r < 4; r++) {
        char *t = tokens_of(db, r + 1, 0);
        assert_string_equal(t, want[r]);
        free(t);
    }
    // BOS first and the prompt run alone: the same rows as the ids with BOS
    char *a = rows_of(db, 1, 0), *b = rows_of(db, 4, 0);
    assert_string_equal(a, b);
    free(a), free(b);
    assert_int_equal(mech(&out, "lens --model tests/fixtures/gpt2-tiny --db %s --ids 1,2 --prepend-bos", db), 2);
    assert_non_null(strstr(out, "no BOS token"));
    free(out);
    assert_int_equal(mech(&out, "lens --model %s --db %s --ids 1,2 --padding-side middle", tiny_model(), db), 2);
    free(out);
    // tokenize shows text as it encodes (ids that decode back to it) unless asked
    assert_int_equal(mech(&out, "tokenize --text Hello"), 0);
    assert_string_equal(out, "15496\n");
    free(out);
    assert_int_equal(mech(&out, "tokenize --text Hello --prepend-bos"), 0);
    assert_string_equal(out, "50256 15496\n");
    free(out);
    mech_test_rm_db(db);
}

// `heads --random N`: [BOS, r, r] per sequence as TransformerLens's
// induction test, [r, r] with --no-prepend-bos.
static void test_heads_random_prompts(void **state) {
    const char *db = mech_test_tmpn("batch-random.db");
    mech_test_rm_db(db);
    char *out = NULL;
    assert_int_equal(mech(&out, "heads --model %s --random 3 --batch 2 --db %s", tiny_model(), db), 0);
    free(out);
    assert_int_equal(mech(&out, "heads --model %s --random 3 --batch 2 --db %s --no-prepend-bos", tiny_model(), db), 0);
    free(out);
    for (int run = 1; run <= 2; run++)
        for (int item = 0; item < 2; item++) {
            char *t = tokens_of(db, run, item);
            int ids[8], n = 0;
            for (char *p = t + 1; *p && n < 8; p++) {
                ids[n++] = (int)strtol(p, &p, 10);
                if (*p != ',') break;
            }
            int off = run == 1;
            assert_int_equal(n, off + 6);
            if (off) assert_int_equal(ids[0], 50256);
            for (int i = 0; i < 3; i++) {
                assert_int_equal(ids[off + i], ids[off + 3 + i]);
                assert_true(ids[off + i] >= 100 && ids[off + i] < 50257);
            }
            free(t);
        }
    mech_test_rm_db(db);
}

// Prompts of unequal lengths in one command: each item's stored results
// equal those of the prompt run alone, whichever side is padded.
static void test_padded_batches_equal_single_runs(void **state) {
    const char *db = mech_test_tmpn("batch-pad.db");
    static const char *const cmds[] = {"lens", "attrib --answer 11 --wrong 12", "heads"};
    static const char *const prompts[] = {"Hello", "The quick brown fox jumps over", "A B A B"};
    for (size_t c = 0; c < sizeof cmds / sizeof *cmds; c++)
        for (int side = 0; side < 2; side++) {
            mech_test_rm_db(db);
            char *out = NULL;
            assert_int_equal(mech(&out, "%s --model %s --db %s --padding-side %s --prompt '%s' --prompt '%s' --prompt '%s'",
                                  cmds[c], tiny_model(), db, side ? "left" : "right", prompts[0], prompts[1], prompts[2]),
                             0);
            free(out);
            for (int p = 0; p < 3; p++) {
                assert_int_equal(mech(&out, "%s --model %s --db %s --prompt '%s'", cmds[c], tiny_model(), db, prompts[p]), 0);
                free(out);
                char *single = tokens_of(db, 2 + p, 0), *in_batch = tokens_of(db, 1, p);
                assert_string_equal(single, in_batch); // each prompt stored without its padding
                free(single), free(in_batch);
                if (c == 2) continue; // heads: one score per head over the batch, checked below
                char *a = rows_of(db, 1, p), *b = rows_of(db, 2 + p, 0);
                if (strcmp(a, b)) fail_msg("%s, %s padding, prompt %d: the batch's rows differ from the single run's", cmds[c],
                                           side ? "left" : "right", p);
                free(a), free(b);
            }
            if (c == 2) {
                // the batch's score is the mean of the three single runs' (exact but for the mean's rounding)
                sqlite3 *h = NULL;
                assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
                sqlite3_stmt *st = NULL;
                assert_int_equal(sqlite3_prepare_v2(h,
                                                    "select b.value, (select sum(s.value) / 3 from results s where "
                                                    "s.run_id > 1 and s.layer = b.layer and s.head = b.head and "
                                                    "s.metric = b.metric) from results b where b.run_id = 1",
                                                    -1, &st, NULL),
                                 SQLITE_OK);
                int n = 0;
                while (sqlite3_step(st) == SQLITE_ROW) {
                    double got = sqlite3_column_double(st, 0), want = sqlite3_column_double(st, 1);
                    if (!(got - want < 1e-12 && want - got < 1e-12)) fail_msg("heads: batch %.17g, singles %.17g", got, want);
                    n++;
                }
                assert_int_equal(n, 3 * 2 * 4); // kinds x layers x heads
                sqlite3_finalize(st);
                sqlite3_close(h);
            }
        }
    mech_test_rm_db(db);
}

// `mech run` on a padded batch: each sequence's logits at its real positions
// equal its own run's, padding reads 0, and the top-k is read at each
// sequence's own last token.
static void test_run_padded_logits(void **state) {
    const char *npy = mech_test_tmpn("batch-pad.npy"), *one = mech_test_tmpn("batch-one.npy");
    static const char *const ids[2] = {"11,12,13,14,15", "21,22"};
    for (int side = 0; side < 2; side++) {
        char *out = NULL, *alone = NULL;
        assert_int_equal(mech(&out, "run --model %s --ids %s --ids %s --padding-side %s --logits %s --top-k 1", tiny_model(),
                              ids[0], ids[1], side ? "left" : "right", npy),
                         0);
        assert_non_null(strstr(out, "sequence 2: 2 tokens"));
        float *batch = NULL;
        int ndim;
        int64_t shape[MECH_MAX_DIMS];
        mech_err err = {0};
        assert_int_equal(mech_npy_read(npy, &batch, &ndim, shape, &err), MECH_OK);
        assert_int_equal(shape[1], 5);
        int64_t V = shape[2];
        for (int b = 0; b < 2; b++) {
            assert_int_equal(mech(&alone, "run --model %s --ids %s --logits %s --top-k 1", tiny_model(), ids[b], one), 0);
            // the printed prediction of the sequence alone is the batch's
            const char *line = strstr(alone, "1. ");
            assert_non_null(line);
            char want[64];
            snprintf(want, sizeof want, "%.*s", (int)(strchr(line, '\n') - line), line);
            assert_non_null(strstr(b ? strstr(out, "sequence 2") : out, want));
            free(alone);
            float *single = NULL;
            int64_t s1[MECH_MAX_DIMS];
            assert_int_equal(mech_npy_read(one, &single, &ndim, s1, &err), MECH_OK);
            int n = (int)s1[1], start = side ? 5 - n : 0;
            for (int t = 0; t < 5; t++)
                for (int64_t v = 0; v < V; v++) {
                    float got = batch[((int64_t)b * 5 + t) * V + v];
                    float w = t >= start && t < start + n ? single[(t - start) * V + v] : 0.0f;
                    if (got != w) fail_msg("side %d seq %d pos %d: logit %g, want %g", side, b, t, got, w);
                }
            mech_free(single);
        }
        mech_free(batch);
        free(out);
    }
}

// `mech attrib --ln exact` on a LayerNorm-free model (eps 1e12, LayerNorm
// weights 1e6) stores its choice and the logit; on GPT-2 with a real final
// LayerNorm it is a usage error that says why.
static void test_attrib_ln_exact(void **state) {
    mech_config c = {.n_layers = 1, .n_heads = 2, .d_model = 16, .d_head = 8, .d_mlp = 32, .n_ctx = 16, .d_vocab = 40,
                     .act = MECH_ACT_GELU_NEW, .norm = MECH_NORM_LAYERNORM, .causal = 1, .ln_eps = 1e12f,
                     .tied_unembed = 1};
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(mech_model_random(&c, 2, &m, &err), MECH_OK);
    static const char *const ln[] = {"h.0.ln_1.weight", "h.0.ln_2.weight", "ln_f.weight"};
    for (int k = 0; k < 3; k++) {
        float *w = mech_model_param(m, ln[k]);
        for (int i = 0; i < 16; i++) w[i] = 1e6f;
    }
    const char *path = mech_test_tmpn("batch-noln.safetensors"), *db = mech_test_tmpn("batch-noln.db");
    assert_int_equal(mech_model_save(m, path, MECH_DT_F32, NULL, NULL, 0, &err), MECH_OK);
    mech_model_free(m);
    mech_test_rm_db(db);
    char *out = NULL;
    assert_int_equal(mech(&out, "attrib --model %s --ids 1,2,3 --answer 5 --wrong 6 --ln exact --db %s", path, db), 0);
    assert_non_null(strstr(out, "= sum of components + bias"));
    free(out);
    assert_int_equal(mech(&out, "attrib --model %s --ids 1,2,3 --answer 5 --ln exact --db %s", tiny_model(), db), 2);
    assert_non_null(strstr(out, "LayerNorm-free"));
    free(out);
    assert_int_equal(mech(&out, "attrib --model %s --ids 1,2,3 --answer 5 --ln approx --db %s", path, db), 2);
    free(out);
    mech_test_rm_db(db);
}

// `mech patch --prepend-bos`: BOS in front of both prompts of every pair,
// recorded in the run's parameters; without it the dataset is unchanged; a
// vocabulary without <|endoftext|> refuses it.
static void test_patch_prepend_bos(void **state) {
    const char *db = mech_test_tmpn("batch-patch.db");
    mech_test_rm_db(db);
    char *out = NULL;
    assert_int_equal(mech(&out, "patch --model %s --dataset ioi --n 2 --sweep heads --db %s", tiny_model(), db), 0);
    free(out);
    assert_int_equal(mech(&out, "patch --model %s --dataset ioi --n 2 --sweep heads --prepend-bos --db %s", tiny_model(), db),
                     0);
    free(out);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h,
                                        "select a.tokens, b.tokens, a.n_tokens, b.n_tokens, "
                                        "(select params from runs where id = 2) from prompts a join prompts b on "
                                        "a.item = b.item and a.role = b.role where a.run_id = 1 and b.run_id = 2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    int rows = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *plain = (const char *)sqlite3_column_text(st, 0), *bos = (const char *)sqlite3_column_text(st, 1);
        assert_int_equal(sqlite3_column_int(st, 3), sqlite3_column_int(st, 2) + 1);
        assert_true(!strncmp(bos, "[50256,", 7));
        assert_string_equal(bos + 7, plain + 1);
        assert_non_null(strstr((const char *)sqlite3_column_text(st, 4), "\"prepend_bos\": true"));
        rows++;
    }
    assert_int_equal(rows, 4); // 2 pairs x clean, corrupt
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_int_equal(mech(&out, "patch --model tests/fixtures/gpt2-tiny --dataset induction --n 2 --len 4 --prepend-bos --db %s",
                          db), 2);
    assert_non_null(strstr(out, "no BOS token"));
    free(out);
    mech_test_rm_db(db);
}

// mech acdc --prepend-bos: every prompt gains BOS (one more position in the
// stored batch shape), the option is kept in the run's parameters, and a
// model without BOS refuses it.
static void test_acdc_prepend_bos(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("batch-acdc.db");
    mech_test_rm_db(db);
    char *out = NULL;
    const char *args = "acdc --model %s --dataset induction --n 2 --len 3 --tau 0.1 --positions induction %s --db %s";
    assert_int_equal(mech(&out, args, tiny_model(), "", db), 0);
    free(out);
    assert_int_equal(mech(&out, args, tiny_model(), "--prepend-bos", db), 0);
    free(out);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(h, "select json_extract(params, '$.T'), coalesce(json_extract(params, "
                                           "'$.prepend_bos'), 0) from runs order by id", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int t_plain = sqlite3_column_int(st, 0);
    assert_int_equal(sqlite3_column_int(st, 1), 0);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), t_plain + 1);
    assert_int_equal(sqlite3_column_int(st, 1), 1);
    sqlite3_finalize(st);
    sqlite3_close(h);
    assert_int_equal(mech(&out, args, "tests/fixtures/gpt2-tiny", "--prepend-bos", db), 2);
    assert_non_null(strstr(out, "no BOS token"));
    free(out);
    mech_test_rm_db(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heads_random_longer_than_context),
        cmocka_unit_test(test_bos_default_and_flags),
        cmocka_unit_test(test_heads_random_prompts),
        cmocka_unit_test(test_padded_batches_equal_single_runs),
        cmocka_unit_test(test_run_padded_logits),
        cmocka_unit_test(test_attrib_ln_exact),
        cmocka_unit_test(test_patch_prepend_bos),
        cmocka_unit_test(test_acdc_prepend_bos),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
