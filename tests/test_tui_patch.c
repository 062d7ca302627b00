/*
** tests/test_tui_patch.c: the Patching and Attribution views on a cell grid,
** on a database written by the real mech binary (a random `mech init`
** model; IOI pairs of two different templates, so the pairs differ in
** length and tokens). Every value shown is compared with an SQL query of
** the database (tests/support/check.h's mech_test_sql_rows), every token
** label with the built-in tokenizer's decoding of the stored ids, and the
** live attribution with the run's own logits.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tui/tui.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char db[600], model[600];
static mech_tokenizer *gpt2; // the built-in vocabulary, loaded once
enum { RUN_POS = 1, RUN_HEADS, RUN_BYPOS, RUN_ATTRIB, RUN_LENS };

static int setup(void **state) {
    (void)state;
    char pairs[600], *out = NULL;
    snprintf(model, sizeof model, "%s", mech_test_tmpn("patchview.safetensors"));
    snprintf(pairs, sizeof pairs, "%s", mech_test_tmpn("patchview_pairs.jsonl"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("patchview.db"));
    mech_test_rm_db(db);
    if (mech_test_cli(&out, NULL, "init -o %s", model)) fail_msg("mech init: %s", out);
    free(out);
    FILE *f = fopen(pairs, "wb");
    if (!f) return -1;
    fputs("{\"clean\": [5, 17, 42, 99, 7], \"corrupt\": [5, 18, 42, 99, 7], \"answer\": 3, \"wrong\": 4}\n"
          "{\"clean\": [1, 2, 3, 4, 5], \"corrupt\": [1, 2, 9, 4, 5], \"answer\": 6, \"wrong\": 7}\n"
          // clean = corrupted: every effect is NULL (0/0)
          "{\"clean\": [5, 17, 42, 99, 7], \"corrupt\": [5, 17, 42, 99, 7], \"answer\": 3, \"wrong\": 4}\n",
          f);
    fclose(f);
    const char *cmds[] = {
        "patch --model %s --dataset ioi --n 2 --db %s",
        "patch --model %s --dataset ioi --n 2 --sweep heads --db %s",
        "patch --model %s --pairs PAIRS --sweep heads_by_pos --db %s",
        "attrib --model %s --prompt 'When Mary and John went to the store, John gave a drink to' "
        "--prompt 'The cat sat on the mat and the dog' --answer ' Mary' --wrong ' John' --db %s",
        "lens --model %s --ids 5,17,42 --db %s",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char fmt[1200];
        const char *p = strstr(cmds[i], "PAIRS");
        if (p) snprintf(fmt, sizeof fmt, "%.*s%s%s", (int)(p - cmds[i]), cmds[i], pairs, p + 5);
        else snprintf(fmt, sizeof fmt, "%s", cmds[i]);
        char cmd[2400];
        snprintf(cmd, sizeof cmd, fmt, model, db);
        if (mech_test_cli(&out, NULL, "%s", cmd)) fail_msg("mech %s: %s", cmd, out);
        free(out);
    }
    unlink(pairs);
    mech_err err = {0};
    return mech_tokenizer_gpt2(&gpt2, &err) ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    mech_test_rm_db(db);
    unlink(model);
    mech_tokenizer_free(gpt2);
    return 0;
}

// --- helpers ----------------------------------------------------------------

// One number from SQL (NAN for NULL or no row).
static double sql_num(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static double sql_num(const char *fmt, ...) {
    char sql[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    char *r = mech_test_sql_rows(db, sql);
    double x = !r[0] || !strncmp(r, "NULL", 4) ? NAN : strtod(r, NULL);
    free(r);
    return x;
}

static void assert_same(double got, double want, const char *what) {
    if (isnan(got) && isnan(want)) return;
    if (isnan(got) || isnan(want) || fabs(got - want) > 1e-9 + 1e-9 * fabs(want))
        fail_msg("%s: shown %.17g, database %.17g", what, got, want);
}

static int grid_has(mech_tui_grid *g, const char *want) {
    char buf[1024];
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, buf);
        if (strstr(buf, want)) return 1;
    }
    return 0;
}

// The first row from y0 of g whose text starts with prefix, or -1.
static int grid_row(mech_tui_grid *g, int y0, const char *prefix) {
    char buf[1024];
    for (int y = y0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, buf);
        if (!strncmp(buf, prefix, strlen(prefix))) return y;
    }
    return -1;
}

// The stored clean prompt's token at pos of item, labelled through the
// built-in GPT-2 tokenizer (the random model has no tokenizer files).
static void stored_token(int64_t run, int item, int pos, char *out, size_t cap) {
    char sql[200];
    snprintf(sql, sizeof sql,
             "select j.value from prompts, json_each(prompts.tokens) j where run_id=%lld and item=%d and "
             "role='clean' and j.key=%d",
             (long long)run, item, pos);
    char *r = mech_test_sql_rows(db, sql);
    assert_true(r[0] != 0);
    int32_t id = (int32_t)strtol(r, NULL, 10);
    free(r);
    size_t len = 0;
    const char *s = mech_tokenizer_token(gpt2, id, &len);
    assert_non_null(s);
    char raw[128];
    snprintf(raw, sizeof raw, "%.*s", (int)len, s);
    mech_tui_token_label(raw, out, cap);
}

// --- the store's prompts ------------------------------------------------------

static void test_tui_patch_store_prompts(void **state) {
    (void)state;
    mech_store *s = NULL;
    mech_prompt_row *p = NULL;
    size_t n = 0;
    mech_err err = {0};
    if (mech_store_open_read(db, &s, &err) || mech_store_prompts_get(s, RUN_BYPOS, &p, &n, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(n, 6); // 3 pairs x clean, corrupt
    assert_int_equal(p[0].item, 0);
    assert_string_equal(p[0].role, "clean");
    assert_null(p[0].text); // given as ids
    assert_int_equal(p[0].n_tokens, 5);
    int32_t want[5] = {5, 17, 42, 99, 7};
    assert_memory_equal(p[0].tokens, want, sizeof want);
    assert_string_equal(p[1].role, "corrupt");
    assert_int_equal(p[1].tokens[1], 18);
    assert_int_equal(p[3].item, 1);
    assert_int_equal(p[3].tokens[2], 9);
    mech_store_prompts_free(p, n);
    // text prompts keep their text
    if (mech_store_prompts_get(s, RUN_POS, &p, &n, &err)) fail_msg("%s", err.msg);
    char *t = mech_test_sql_rows(db, "select text from prompts where run_id=1 and item=0 and role='clean'");
    assert_non_null(p[0].text);
    assert_int_equal(strlen(t), strlen(p[0].text) + 1); // the query adds "\n"
    assert_memory_equal(t, p[0].text, strlen(p[0].text));
    free(t);
    mech_store_prompts_free(p, n);
    assert_int_equal(mech_store_prompts_get(s, 99, &p, &n, &err), MECH_ERR_RANGE);
    mech_store_close(s);
}

// --- patching ---------------------------------------------------------------

// layer x position: every cell of every pair, the mean over pairs and the
// raw metric equal the database; labels are the clean prompt's tokens.
static void test_tui_patch_positions_values_labels(void **state) {
    (void)state;
    mech_tui_patch v = {0};
    mech_err err = {0};
    if (mech_tui_patch_load(db, RUN_POS, &v, &err)) fail_msg("%s", err.msg);
    assert_int_equal(v.shape, MECH_TUI_PATCH_POS);
    assert_string_equal(v.sweep, "resid_pre");
    assert_string_equal(v.metric, "logit_diff");
    assert_int_equal(v.n_pairs, 2);
    assert_int_equal(v.L, 2);
    int P = (int)sql_num("select max(pos)+1 from results where run_id=1 and metric='effect'");
    assert_int_equal(v.P, P);
    assert_true(v.avg); // several pairs open on their mean
    int by_head;
    assert_int_equal(mech_tui_patch_cols(&v, &by_head), P);
    assert_false(by_head);
    char what[80];
    for (int l = 0; l < v.L; l++)
        for (int p = 0; p < P; p++) {
            snprintf(what, sizeof what, "mean L%d pos %d", l, p);
            assert_same(mech_tui_patch_value(&v, l, p),
                        sql_num("select avg(value) from results where run_id=1 and metric='effect' and layer=%d and "
                                "pos=%d",
                                l, p),
                        what);
        }
    v.avg = 0;
    for (int k = 0; k < 2; k++) {
        v.pair = k;
        int n_tok = (int)sql_num("select n_tokens from prompts where run_id=1 and item=%d and role='clean'", k);
        for (int l = 0; l < v.L; l++)
            for (int p = 0; p < P; p++) {
                snprintf(what, sizeof what, "pair %d L%d pos %d", k, l, p);
                assert_same(mech_tui_patch_value(&v, l, p),
                            sql_num("select value from results where run_id=1 and item=%d and metric='effect' and "
                                    "layer=%d and pos=%d",
                                    k, l, p),
                            what);
            }
        // the token labels, and #pos past the end of the shorter prompt
        for (int p = 0; p < P; p++) {
            char got[64], want[64];
            mech_tui_patch_label(&v, p, got, sizeof got);
            if (p < n_tok) stored_token(RUN_POS, k, p, want, sizeof want);
            else snprintf(want, sizeof want, "#%d", p);
            assert_string_equal(got, want);
        }
    }
    // m: the raw metric
    assert_int_equal(mech_tui_patch_key(&v, 'm'), MECH_TUI_REDRAW);
    v.pair = 1;
    assert_same(mech_tui_patch_value(&v, 1, 3),
                sql_num("select value from results where run_id=1 and item=1 and metric='logit_diff' and layer=1 and "
                        "pos=3"),
                "raw L1 pos 3");
    mech_tui_patch_deinit(&v);
}

// The heatmap: diverging cells (sign by the value's sign, level by
// |value| / the largest |value|), the legend's ends, the labels truncated to
// their column, the cursor line to 4 significant digits.
static void test_tui_patch_render_diverging(void **state) {
    (void)state;
    mech_tui_patch v = {0};
    mech_err err = {0};
    if (mech_tui_patch_load(db, RUN_POS, &v, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_tui_patch_key(&v, 'p'), MECH_TUI_REDRAW); // from the mean: pair 1
    assert_false(v.avg);
    assert_int_equal(v.pair, 0);
    double mx = sql_num("select max(abs(value)) from results where run_id=1 and item=0 and metric='effect'");
    assert_true(mx > 0);
    assert_same(mech_tui_patch_scale(&v), mx, "scale");
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_patch_render(&v, &g, 0, 22);
    char want[256];
    snprintf(want, sizeof want, "%+.4g ", -mx);
    assert_int_equal(grid_row(&g, 0, want), 4); // the legend's left end
    snprintf(want, sizeof want, " %+.4g", mx);
    assert_true(grid_has(&g, want));
    assert_true(grid_has(&g, "pair 1 of 2 (item 0)"));
    // clean and corrupted prompts of the pair, truncated at the window's edge
    char *t = mech_test_sql_rows(db, "select text from prompts where run_id=1 and item=0 and role='corrupt'");
    snprintf(want, sizeof want, "corrupt: %.71s", t);
    free(t);
    char row[1024];
    mech_tui_grid_row_text(&g, 2, row);
    assert_string_equal(row, want);
    int y0 = grid_row(&g, 5, "L0 "), y1 = grid_row(&g, 5, "L1 ");
    assert_true(y0 > 5);
    assert_int_equal(y1, y0 + 1);
    // columns of 7: 5 for the row label, then 6 cells and a gap
    int pos_cells = 0, neg_cells = 0;
    for (int l = 0; l < 2; l++)
        for (int p = 0; p < 10; p++) {
            double x = sql_num("select value from results where run_id=1 and item=0 and metric='effect' and layer=%d "
                               "and pos=%d",
                               l, p);
            int lv = mech_tui_level((float)(fabs(x) / mx));
            const mech_tui_cell *c = mech_tui_grid_at(&g, y0 + l, 5 + p * 7 + 2);
            assert_int_equal(c->heat, 1);
            assert_int_equal(c->level, lv);
            assert_int_equal(c->sign, lv == 0 ? 0 : x < 0 ? 2 : 1);
            assert_int_equal(c->ch, x < 0 ? mech_tui_ramp_neg[lv] : mech_tui_ramp_pos[lv]);
            pos_cells += c->sign == 1, neg_cells += c->sign == 2;
        }
    assert_true(pos_cells > 0);
    // labels: the first 6 characters of each token
    mech_tui_grid_row_text(&g, y0 - 1, row);
    for (int p = 0; p < 10; p++) {
        char tokl[64];
        stored_token(RUN_POS, 0, p, tokl, sizeof tokl);
        snprintf(want, sizeof want, "%-6.6s", tokl);
        assert_memory_equal(row + 5 + p * 7, want, 6);
    }
    // the cursor line
    mech_tui_patch_key(&v, 'j');
    for (int i = 0; i < 4; i++) mech_tui_patch_key(&v, 'l');
    mech_tui_grid_clear(&g);
    mech_tui_patch_render(&v, &g, 0, 22);
    char tokl[64];
    stored_token(RUN_POS, 0, 4, tokl, sizeof tokl);
    snprintf(want, sizeof want, "L1 pos 4 '%s'  effect %.4g   logit_diff clean %.4g, corrupted %.4g", tokl,
             sql_num("select value from results where run_id=1 and item=0 and metric='effect' and layer=1 and pos=4"),
             sql_num("select value from results where run_id=1 and item=0 and metric='clean'"),
             sql_num("select value from results where run_id=1 and item=0 and metric='corrupted'"));
    mech_tui_grid_row_text(&g, 3, row);
    assert_memory_equal(row, want, strlen(want) < 80 ? strlen(want) : 80);
    // the cursor scrolls the columns: the last position stays on screen
    mech_tui_patch_key(&v, 'G');
    mech_tui_grid_clear(&g);
    mech_tui_patch_render(&v, &g, 0, 22);
    assert_int_equal(v.ca, v.P - 1);
    assert_true(v.c0 > 0);
    const mech_tui_cell *c = mech_tui_grid_at(&g, y0 + 1, 5 + (v.ca - v.c0) * 7);
    assert_int_equal(c->ch, '[');
    assert_int_equal(c->role, MECH_TUI_SEL);
    mech_tui_grid_deinit(&g);
    mech_tui_patch_deinit(&v);
}

// p P a: next / previous pair (wrapping), the mean; the mean's labels are
// the tokens all pairs share, else #pos.
static void test_tui_patch_pairs_mean_labels(void **state) {
    (void)state;
    mech_tui_patch v = {0};
    mech_err err = {0};
    if (mech_tui_patch_load(db, RUN_POS, &v, &err)) fail_msg("%s", err.msg);
    mech_tui_patch_key(&v, 'p');
    assert_int_equal(v.pair, 0);
    mech_tui_patch_key(&v, 'p');
    assert_int_equal(v.pair, 1);
    mech_tui_patch_key(&v, 'p');
    assert_int_equal(v.pair, 0);
    mech_tui_patch_key(&v, 'P');
    assert_int_equal(v.pair, 1);
    mech_tui_patch_key(&v, 'a');
    assert_true(v.avg);
    mech_tui_patch_key(&v, 'P'); // from the mean: the last pair
    assert_false(v.avg);
    assert_int_equal(v.pair, 1);
    mech_tui_patch_key(&v, 'a');
    mech_tui_patch_key(&v, 'p'); // and the first
    assert_int_equal(v.pair, 0);
    mech_tui_patch_key(&v, 'a');
    assert_true(v.avg);
    for (int p = 0; p < v.P; p++) {
        char got[64], a[64] = "", b[64] = "", want[64];
        mech_tui_patch_label(&v, p, got, sizeof got);
        int na = (int)sql_num("select n_tokens from prompts where run_id=1 and item=0 and role='clean'");
        int nb = (int)sql_num("select n_tokens from prompts where run_id=1 and item=1 and role='clean'");
        if (p < na) stored_token(RUN_POS, 0, p, a, sizeof a);
        if (p < nb) stored_token(RUN_POS, 1, p, b, sizeof b);
        if (p < na && p < nb && !strcmp(a, b)) snprintf(want, sizeof want, "%s", a);
        else snprintf(want, sizeof want, "#%d", p);
        assert_string_equal(got, want);
    }
    mech_tui_patch_deinit(&v);
}

// layer x head: H0.. labels, values per pair and mean.
static void test_tui_patch_heads(void **state) {
    (void)state;
    mech_tui_patch v = {0};
    mech_err err = {0};
    if (mech_tui_patch_load(db, RUN_HEADS, &v, &err)) fail_msg("%s", err.msg);
    assert_int_equal(v.shape, MECH_TUI_PATCH_HEAD);
    int by_head, A = mech_tui_patch_cols(&v, &by_head);
    assert_true(by_head);
    assert_int_equal(A, (int)sql_num("select max(head)+1 from results where run_id=2 and metric='effect'"));
    char got[64], what[64];
    mech_tui_patch_label(&v, 3, got, sizeof got);
    assert_string_equal(got, "H3");
    for (int l = 0; l < v.L; l++)
        for (int h = 0; h < A; h++) {
            snprintf(what, sizeof what, "mean L%dH%d", l, h);
            assert_same(mech_tui_patch_value(&v, l, h),
                        sql_num("select avg(value) from results where run_id=2 and metric='effect' and layer=%d and "
                                "head=%d",
                                l, h),
                        what);
        }
    mech_tui_patch_key(&v, 'p');
    mech_tui_patch_key(&v, 'p');
    assert_same(mech_tui_patch_value(&v, 1, 2),
                sql_num("select value from results where run_id=2 and item=1 and metric='effect' and layer=1 and head=2"),
                "pair 2 L1H2");
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_patch_render(&v, &g, 0, 22);
    assert_true(grid_has(&g, "patch heads (layer x head)"));
    assert_true(grid_has(&g, "     H0  H1  H2  H3"));
    assert_true(grid_has(&g, "L0 H0  effect"));
    // s and ] do nothing without a position x head sweep
    assert_int_equal(mech_tui_patch_key(&v, 's'), MECH_TUI_NONE);
    assert_int_equal(mech_tui_patch_key(&v, ']'), MECH_TUI_NONE);
    mech_tui_grid_deinit(&g);
    mech_tui_patch_deinit(&v);
}

// layer x position x head: slices by head (] [), then by position (s).
static void test_tui_patch_slices(void **state) {
    (void)state;
    mech_tui_patch v = {0};
    mech_err err = {0};
    if (mech_tui_patch_load(db, RUN_BYPOS, &v, &err)) fail_msg("%s", err.msg);
    assert_int_equal(v.shape, MECH_TUI_PATCH_POS_HEAD);
    assert_int_equal(v.P, 5);
    assert_int_equal(v.H, 4);
    mech_tui_patch_key(&v, 'p'); // pair 1
    int by_head;
    char what[64];
    for (int h = 0; h < 4; h++) {
        assert_int_equal(v.sh, h);
        assert_int_equal(mech_tui_patch_cols(&v, &by_head), 5);
        assert_false(by_head);
        for (int l = 0; l < 2; l++)
            for (int p = 0; p < 5; p++) {
                snprintf(what, sizeof what, "head slice %d L%d pos %d", h, l, p);
                assert_same(mech_tui_patch_value(&v, l, p),
                            sql_num("select value from results where run_id=3 and item=0 and metric='effect' and "
                                    "layer=%d and pos=%d and head=%d",
                                    l, p, h),
                            what);
            }
        mech_tui_patch_key(&v, ']');
    }
    assert_int_equal(v.sh, 3); // stops at the last head
    // ids without a tokenizer's text still label the columns: the random
    // model's prompts decode through GPT-2's vocabulary
    char got[64], want[64];
    mech_tui_patch_label(&v, 1, got, sizeof got);
    stored_token(RUN_BYPOS, 0, 1, want, sizeof want);
    assert_string_equal(got, want);
    // s: the cursor's position becomes the slice
    mech_tui_patch_key(&v, 'l'), mech_tui_patch_key(&v, 'l');
    assert_int_equal(mech_tui_patch_key(&v, 's'), MECH_TUI_REDRAW);
    assert_int_equal(v.sp, 2);
    assert_int_equal(v.ca, 3); // the head that was sliced
    assert_int_equal(mech_tui_patch_cols(&v, &by_head), 4);
    assert_true(by_head);
    for (int l = 0; l < 2; l++)
        for (int h = 0; h < 4; h++) {
            snprintf(what, sizeof what, "position slice 2 L%dH%d", l, h);
            assert_same(mech_tui_patch_value(&v, l, h),
                        sql_num("select value from results where run_id=3 and item=0 and metric='effect' and layer=%d "
                                "and pos=2 and head=%d",
                                l, h),
                        what);
        }
    mech_tui_patch_key(&v, '[');
    assert_int_equal(v.sp, 1);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_patch_render(&v, &g, 0, 22);
    assert_true(grid_has(&g, "slice: position 1 (][, s: by head)"));
    snprintf(want, sizeof want, "L0 H3 (pos 1)  effect %.4g",
             sql_num("select value from results where run_id=3 and item=0 and metric='effect' and layer=0 and pos=1 and "
                     "head=3"));
    assert_true(grid_has(&g, want));
    // the pair whose clean and corrupted prompts are the same has no effect
    assert_int_equal(v.n_pairs, 3);
    assert_int_equal(sql_num("select count(*) from results where run_id=3 and item=2 and metric='effect' and value is "
                             "null"),
                     2 * 5 * 4);
    mech_tui_patch_key(&v, 'P');
    assert_int_equal(v.pair, 2);
    assert_true(isnan(mech_tui_patch_value(&v, 0, 3)));
    assert_true(isnan(mech_tui_patch_scale(&v)) == 0 && mech_tui_patch_scale(&v) == 0);
    mech_tui_grid_clear(&g);
    mech_tui_patch_render(&v, &g, 0, 22);
    assert_true(grid_has(&g, "L0 H3 (pos 1)  effect n/a"));
    char row[256];
    mech_tui_grid_row_text(&g, 4, row); // the legend: a scale of 0 at both ends
    assert_memory_equal(row, "0 ", 2);
    assert_non_null(strstr(row, " 0   slice: position 1"));
    // the mean over pairs of a slice leaves it out, as SQL's avg() does
    mech_tui_patch_key(&v, 'a');
    assert_same(mech_tui_patch_value(&v, 1, 2),
                sql_num("select avg(value) from results where run_id=3 and metric='effect' and layer=1 and pos=1 and "
                        "head=2"),
                "mean position slice");
    assert_same(mech_tui_patch_value(&v, 1, 2),
                sql_num("select avg(value) from results where run_id=3 and item < 2 and metric='effect' and layer=1 and "
                        "pos=1 and head=2"),
                "mean of the two pairs with an effect");
    mech_tui_grid_deinit(&g);
    mech_tui_patch_deinit(&v);
}

// The tokenizer of a run's model: the model's own, else GPT-2's; none for
// a missing file or a compiled model, and then the labels are the ids.
static void test_tui_patch_labels_without_model(void **state) {
    (void)state;
    mech_tokenizer *tok = mech_tui_model_tokenizer(model);
    assert_non_null(tok);
    char lab[64];
    mech_tui_id_label(tok, 17, lab, sizeof lab);
    assert_string_equal(lab, "2"); // GPT-2's token 17
    mech_tokenizer_free(tok);
    assert_null(mech_tui_model_tokenizer("/nonexistent/model.safetensors"));
    assert_null(mech_tui_model_tokenizer(NULL));
    mech_tui_id_label(NULL, 17, lab, sizeof lab);
    assert_string_equal(lab, "17");
    char rev[600], *out = NULL;
    snprintf(rev, sizeof rev, "%s", mech_test_tmpn("patchview_rev.safetensors"));
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev)) fail_msg("mech compile: %s", out);
    free(out);
    assert_null(mech_tui_model_tokenizer(rev)); // a compiled model's ids are not GPT-2 text
    unlink(rev);
    // a database whose model file is gone: the columns are the ids
    char moved[600];
    snprintf(moved, sizeof moved, "%s", mech_test_tmpn("patchview_moved.db"));
    mech_test_rm_db(moved);
    sqlite3 *h = NULL;
    char sql[1400];
    snprintf(sql, sizeof sql, "VACUUM INTO '%s'", moved);
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(sqlite3_open(moved, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "UPDATE runs SET model_path = '/nonexistent/m.safetensors'", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    mech_tui_patch v = {0};
    mech_err err = {0};
    if (mech_tui_patch_load(moved, RUN_BYPOS, &v, &err)) fail_msg("%s", err.msg);
    mech_tui_patch_key(&v, 'p');
    for (int p = 0; p < 5; p++) {
        char want[16];
        snprintf(want, sizeof want, "%d", (int)sql_num("select j.value from prompts, json_each(prompts.tokens) j where "
                                                       "run_id=3 and item=0 and role='clean' and j.key=%d",
                                                       p));
        mech_tui_patch_label(&v, p, lab, sizeof lab);
        assert_string_equal(lab, want);
    }
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_patch_render(&v, &g, 0, 22);
    assert_true(grid_has(&g, "clean:   5 17 42 99 7"));
    assert_true(grid_has(&g, "corrupt: 5 18 42 99 7"));
    mech_tui_grid_deinit(&g);
    mech_tui_patch_deinit(&v);
    mech_tui_attrib a = {0};
    if (mech_tui_attrib_load(moved, RUN_ATTRIB, &a, &err)) fail_msg("%s", err.msg);
    snprintf(lab, sizeof lab, "%d", (int)sql_num("select token from results where run_id=4 and metric='logit' and item=0"));
    assert_string_equal(a.answer, lab);
    mech_tui_attrib_deinit(&a);
    mech_test_rm_db(moved);
}

// Not a patch run, no such run; in the application: open_run by kind.
static void test_tui_patch_errors_and_app(void **state) {
    (void)state;
    mech_tui_patch v = {0};
    mech_tui_attrib a = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_patch_load(db, RUN_LENS, &v, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "lens run"));
    assert_int_equal(mech_tui_patch_load(db, 99, &v, &err), MECH_ERR_RANGE);
    assert_int_equal(v.n_pairs, 0);
    assert_int_equal(mech_tui_attrib_load(db, RUN_POS, &a, &err), MECH_ERR_ARG);
    assert_int_equal(a.n_comp, 0);

    mech_tui_app app = {0};
    app.has_runs = 1, app.db_path = db;
    assert_int_equal(mech_tui_app_reload(&app), 1);
    mech_tui_app_open_run(&app, RUN_HEADS, "patch");
    assert_int_equal(app.view, MECH_TUI_VIEW_PATCH);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "[patching]"));
    assert_true(grid_has(&g, "pP pair"));
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    mech_tui_app_open_run(&app, RUN_ATTRIB, "attrib");
    assert_int_equal(app.view, MECH_TUI_VIEW_ATTRIB);
    assert_false(app.attrib_live);
    mech_tui_app_key(&app, MECH_TUI_KEY_ESC);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    mech_tui_app_open_run(&app, RUN_LENS, "lens");
    assert_int_equal(app.view, MECH_TUI_VIEW_LENS); // a lens run opens in the lens view
    mech_tui_app_open_run(&app, RUN_LENS, "mystery");
    assert_int_equal(app.view, MECH_TUI_VIEW_RUN); // kinds without a view of their own keep the table
    // a run whose kind in the list is wrong opens with its error as the title
    mech_tui_app_open_run(&app, RUN_LENS, "patch");
    assert_int_equal(app.view, MECH_TUI_VIEW_PATCH);
    mech_tui_grid_clear(&g);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "cannot read it: run 5 is a lens run"));
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// --- attribution ------------------------------------------------------------

// Every component of both sequences equals the database; the bars are
// sorted by |value| and as long as |value| / the largest |value| of the
// half width; the answer and wrong tokens named; p the next sequence.
static void test_tui_attrib_run_bars(void **state) {
    (void)state;
    mech_tui_attrib v = {0};
    mech_err err = {0};
    if (mech_tui_attrib_load(db, RUN_ATTRIB, &v, &err)) fail_msg("%s", err.msg);
    assert_int_equal(v.n_items, 2);
    assert_int_equal(v.n_comp, (int)sql_num("select count(*) from results where run_id=4 and item=0 and metric in "
                                            "('embed','head','attn_bias','mlp')"));
    assert_string_equal(v.answer, " Mary");
    assert_string_equal(v.wrong, " John");
    for (int item = 0; item < 2; item++) {
        const double *a = v.attr + (size_t)item * v.n_comp;
        for (int c = 0; c < v.n_comp; c++) {
            const char *lab = v.labels[c];
            double want;
            if (!strcmp(lab, "embed")) want = sql_num("select value from results where run_id=4 and item=%d and metric='embed'", item);
            else if (strchr(lab, 'H'))
                want = sql_num("select value from results where run_id=4 and item=%d and metric='head' and layer=%d and "
                               "head=%d",
                               item, atoi(lab + 1), atoi(strchr(lab, 'H') + 1));
            else
                want = sql_num("select value from results where run_id=4 and item=%d and metric='%s' and layer=%d", item,
                               strchr(lab, '.') + 1, atoi(lab + 1));
            assert_same(a[c], want, lab);
        }
        assert_same(v.logit[item], sql_num("select value from results where run_id=4 and item=%d and metric='logit'", item),
                    "logit");
    }
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    for (int item = 0; item < 2; item++) {
        mech_tui_grid_clear(&g);
        mech_tui_attrib_render(&v, &g, 0, 22);
        char want[128];
        snprintf(want, sizeof want, "run 4  attrib  logit(' Mary') - logit(' John') at pos %d  sequence %d of 2",
                 (int)sql_num("select pos from results where run_id=4 and item=%d and metric='logit'", item), item + 1);
        assert_true(grid_has(&g, want));
        double mx = sql_num("select max(abs(value)) from results where run_id=4 and item=%d and metric in "
                            "('embed','head','attn_bias','mlp')",
                            item);
        int half = (80 - 14 - 11 - 2) / 2, axis = 14 + half;
        double prev = INFINITY;
        int bars = 0;
        for (int y = 4; y < 22; y++) {
            char row[1024], lab[32];
            mech_tui_grid_row_text(&g, y, row);
            if (sscanf(row, "%31s", lab) != 1) break;
            double x = strtod(row + axis + half + 2, NULL);
            // the number shown is the database's, to 4 significant digits
            int c = -1;
            for (int k = 0; k < v.n_comp; k++)
                if (!strcmp(v.labels[k], lab)) c = k;
            assert_true(c >= 0);
            double stored = v.attr[(size_t)item * v.n_comp + c];
            assert_true(fabs(x - stored) <= 5e-4 * fabs(stored) + 1e-12);
            assert_true(fabs(stored) <= prev);
            prev = fabs(stored);
            // the bar: right of the axis for positive, left for negative
            int len = (int)lround(fabs(stored) / mx * half);
            if (len == 0 && stored != 0) len = 1;
            int right = 0, left = 0;
            for (int k = 1; k <= half; k++) {
                right += mech_tui_grid_at(&g, y, axis + k)->ch == '#';
                left += mech_tui_grid_at(&g, y, axis - k)->ch == '=';
            }
            assert_int_equal(stored > 0 ? right : left, len);
            assert_int_equal(stored > 0 ? left : right, 0);
            assert_int_equal(mech_tui_grid_at(&g, y, axis)->ch, '|');
            if (len) assert_int_equal(mech_tui_grid_at(&g, y, stored > 0 ? axis + 1 : axis - 1)->sign, stored > 0 ? 1 : 2);
            bars++;
        }
        assert_int_equal(bars, v.n_comp < 18 ? v.n_comp : 18);
        assert_int_equal(mech_tui_attrib_key(&v, 'p'), MECH_TUI_REDRAW);
    }
    assert_int_equal(v.item, 0); // wrapped
    // scrolling stops with the last bar on the last row
    v.page = 4;
    mech_tui_attrib_key(&v, 'G');
    assert_int_equal(v.top, v.n_comp - 4);
    mech_tui_attrib_key(&v, 'j');
    assert_int_equal(v.top, v.n_comp - 4);
    mech_tui_attrib_key(&v, MECH_TUI_KEY_PGUP);
    assert_int_equal(v.top, v.n_comp - 8);
    mech_tui_attrib_key(&v, 'g');
    assert_int_equal(v.top, 0);
    assert_int_equal(mech_tui_attrib_key(&v, 'q'), MECH_TUI_QUIT);
    mech_tui_grid_deinit(&g);
    mech_tui_attrib_deinit(&v);
}

// The live prompt: the answer is the model's top-1 prediction at the last
// position, the components plus the bias give its logit there.
static void test_tui_attrib_from_run(void **state) {
    (void)state;
    mech_model *m = NULL;
    mech_run *run = NULL;
    mech_err err = {0};
    int32_t ids[6] = {464, 3797, 3332, 319, 262, 2603};
    if (mech_model_load(model, &m, &err) || mech_run_new(m, 1, 6, &run, &err) || mech_lens_cache(run, &err) ||
        mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    int V = m->cfg.d_vocab;
    const float *x = mech_run_logits(run) + (size_t)5 * V;
    int best = 0;
    for (int t = 1; t < V; t++)
        if (x[t] > x[best]) best = t;
    mech_tokenizer *tok = NULL;
    assert_int_equal(mech_tokenizer_gpt2(&tok, &err), MECH_OK);
    mech_tui_attrib v = {0};
    if (mech_tui_attrib_from_run(&v, m, run, ids, 6, -1, -1, tok, &err)) fail_msg("%s", err.msg);
    assert_int_equal(v.id, 0);
    assert_int_equal(v.n_items, 1);
    assert_int_equal(v.n_comp, 1 + 2 * (4 + 2));
    assert_int_equal(v.pos[0], 5);
    char want[64];
    mech_tui_id_label(tok, best, want, sizeof want);
    assert_string_equal(v.answer, want);
    assert_string_equal(v.wrong, "");
    double sum = v.bias[0];
    for (int c = 0; c < v.n_comp; c++) sum += v.attr[c];
    assert_true(fabs(sum - x[best]) < 1e-3 * (1 + fabs(x[best])));
    assert_true(fabs(v.logit[0] - x[best]) < 1e-4 * (1 + fabs(x[best])));
    for (int i = 1; i < v.n_comp; i++) assert_true(fabs(v.attr[v.order[i]]) <= fabs(v.attr[v.order[i - 1]]));
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_attrib_render(&v, &g, 0, 22);
    char title[128];
    snprintf(title, sizeof title, "live prompt  logit('%s') (top-1 prediction) at pos 5", want);
    assert_true(grid_has(&g, title));
    char *text = NULL, line[128];
    size_t len = 0;
    assert_int_equal(mech_tokenizer_decode(tok, ids, 6, &text, &len, &err), MECH_OK);
    snprintf(line, sizeof line, "prompt: %s", text);
    mech_free(text);
    assert_true(grid_has(&g, line));
    // a chosen answer and wrong token
    if (mech_tui_attrib_from_run(&v, m, run, ids, 6, 11, 13, tok, &err)) fail_msg("%s", err.msg);
    assert_true(fabs(v.logit[0] - (x[11] - x[13])) < 1e-4 * (1 + fabs(x[11] - x[13])));
    assert_string_equal(v.answer, ",");
    assert_string_equal(v.wrong, ".");
    assert_int_equal(mech_tui_attrib_from_run(&v, m, run, ids, 6, V + 5, -1, tok, &err), MECH_ERR_RANGE);
    assert_int_equal(v.n_comp, 0);
    mech_tui_grid_deinit(&g);
    mech_tui_attrib_deinit(&v);
    mech_tokenizer_free(tok);
    mech_run_free(run);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_patch_store_prompts),
        cmocka_unit_test(test_tui_patch_positions_values_labels),
        cmocka_unit_test(test_tui_patch_render_diverging),
        cmocka_unit_test(test_tui_patch_pairs_mean_labels),
        cmocka_unit_test(test_tui_patch_heads),
        cmocka_unit_test(test_tui_patch_slices),
        cmocka_unit_test(test_tui_patch_labels_without_model),
        cmocka_unit_test(test_tui_patch_errors_and_app),
        cmocka_unit_test(test_tui_attrib_run_bars),
        cmocka_unit_test(test_tui_attrib_from_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
