/*
** tests/test_tui_ids.c: token labels of a model without a text tokenizer
** (a vocabulary smaller than GPT-2's, no tokenizer files beside it, as a
** model `mech train` trains on a synthetic task): the live session, the
** attention views, the live lens and a stored lens run label its tokens by
** id in decimal (the token view with a blank between them), not by GPT-2's
** byte glyphs; a GPT-2-sized vocabulary keeps GPT-2's names. No terminal.
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
#include <time.h>
#include <unistd.h>

static mech_model *small; // 2 layers x 4 heads, vocab 256, random weights
static char small_path[600], gpt2_path[600];

static int setup(void **state) {
    (void)state;
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 2, c.n_heads = 4, c.d_model = 32, c.d_head = 8, c.d_mlp = 64, c.n_ctx = 64, c.d_vocab = 256;
    mech_err err = {0};
    if (mech_model_random(&c, 5, &small, &err)) fail_msg("%s", err.msg);
    snprintf(small_path, sizeof small_path, "%s", mech_test_tmpn("ids_small.safetensors"));
    snprintf(gpt2_path, sizeof gpt2_path, "%s", mech_test_tmpn("ids_gpt2.safetensors"));
    if (mech_model_save(small, small_path, MECH_DT_F32, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init -o %s", gpt2_path)) fail_msg("mech init: %s", out);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mech_model_free(small);
    unlink(small_path);
    unlink(gpt2_path);
    return 0;
}

static int wait_poll(mech_tui_live *s) {
    double t0 = mech_now();
    for (;;) {
        int r = mech_tui_live_poll(s);
        if (r) return r;
        if (mech_now() - t0 > 120) fail_msg("the job did not finish in 120 s");
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

static int grid_find(const mech_tui_grid *g, const char *needle, int quiet) {
    char *s = malloc((size_t)g->h * (g->w + 1) + 1), *p = s;
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, p);
        p += g->w;
        *p++ = '\n';
    }
    *p = 0;
    int r = strstr(s, needle) != NULL;
    if (!r && !quiet) print_message("--- grid (looking for \"%s\") ---\n%s", needle, s);
    free(s);
    return r;
}

static int grid_has(const mech_tui_grid *g, const char *needle) { return grid_find(g, needle, 0); }
static int grid_lacks(const mech_tui_grid *g, const char *needle) { return !grid_find(g, needle, 1); }

static const int32_t ids[] = {120, 201, 143, 177, 105, 120, 201, 143};
enum { T = sizeof ids / sizeof *ids };

static void decimal(int32_t id, char *out, size_t cap) { snprintf(out, cap, "%d", (int)id); }

// GPT-2's tokenizer names a vocabulary of at least its 50257 tokens only.
static void test_tui_ids_gpt2_fits(void **state) {
    (void)state;
    assert_false(mech_tokenizer_gpt2_fits(0));
    assert_false(mech_tokenizer_gpt2_fits(256));
    assert_false(mech_tokenizer_gpt2_fits(50256));
    assert_true(mech_tokenizer_gpt2_fits(50257));
    assert_true(mech_tokenizer_gpt2_fits(50304)); // padded
    // a stored run's model: none for the small vocabulary, GPT-2's for the other
    assert_null(mech_tui_model_tokenizer(small_path));
    mech_tokenizer *tok = mech_tui_model_tokenizer(gpt2_path);
    assert_non_null(tok);
    size_t len = 0;
    const char *s = mech_tokenizer_token(tok, 5335, &len);
    assert_non_null(s);
    assert_int_equal(len, 5);
    assert_memory_equal(s, " Mary", 5);
    mech_tokenizer_free(tok);
}

// The live session: no tokenizer, tokens as ids, text input refused; the
// attention views' labels and the live lens's are the ids in decimal.
static void test_tui_ids_live_attention_lens(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.kind = 1, .bos = -1};
    assert_int_equal(mech_tui_live_new(small, &o, &s, &err), MECH_OK);
    assert_null(mech_tui_live_tokenizer(s));
    char want[64];
    mech_buf b = {0};
    for (int q = 0; q < 2; q++) {
        b.len = 0;
        mech_tui_live_token_text(s, 162, q, &b);
        mech_buf_append(&b, "", 1);
        assert_string_equal(b.data, "162");
    }
    mech_buf_free(&b);
    // text needs a tokenizer: refused with a message pointing to ids
    mech_tui_live_opts ot = {.kind = 0, .bos = -1};
    mech_tui_live *st = NULL;
    assert_int_equal(mech_tui_live_new(small, &ot, &st, &err), MECH_OK);
    assert_int_equal(mech_tui_live_start(st, "When Mary", &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "ids"));
    mech_tui_live_free(st);

    mech_tui_app app = {0};
    app.live.s = s, app.has_live = 1, app.live_auto_head = 1, app.view = MECH_TUI_VIEW_LIVE;
    app.model_path = "dir/small.safetensors";
    assert_int_equal(mech_tui_editor_set(&app.live.ed, "120,201,143,177,105,120,201,143"), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "120,201,143,177,105,120,201,143", &err), MECH_OK);
    while (mech_tui_app_busy(&app)) mech_tui_live_apply(&app);
    assert_int_equal(app.has_attn, 1);
    assert_int_equal(app.attn.T, T);
    for (int t = 0; t < T; t++) {
        decimal(ids[t], want, sizeof want);
        assert_string_equal(app.attn.tokens[t], want);
    }
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 100), MECH_OK);
    // the head view's cursor line names both tokens by id
    app.attn.q = 6, app.attn.k = 1;
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "q 6 \"201\" -> k 1 \"201\""));
    // the token view: the prompt as ids, a blank between them
    assert_int_equal(mech_tui_app_key(&app, 't'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_TOKENS);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "\n120 201 143 177 105 120 201 143 "));
    assert_true(grid_has(&g, "token 6 \"201\""));
    assert_int_equal(mech_tui_app_key(&app, 't'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    // the live view: the token list and the top-k by id
    app.attn.q = T - 1;
    assert_int_equal(mech_tui_app_key(&app, 'e'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_LIVE);
    mech_tui_app_render(&app, &g);
    // ids only: no text column repeating them
    assert_true(grid_has(&g, "tokens (8)   pos  id "));
    assert_true(grid_lacks(&g, "id  text"));
    snprintf(want, sizeof want, ">     7    143 ");
    assert_true(grid_has(&g, want));
    assert_true(grid_lacks(&g, ">     7    143  143"));
    // the top-1 row: its id, logit and probability (as mech_tui_live_topk gives them)
    int32_t top[3];
    float lg[3];
    double pr[3];
    assert_int_equal(mech_tui_live_topk(s, T - 1, 3, top, lg, pr), 3);
    snprintf(want, sizeof want, " 1. %6d  logit %9.4f  p %.4g", (int)top[0], lg[0], pr[0]);
    assert_true(grid_has(&g, want));
    snprintf(want, sizeof want, "top 10 after pos %d %d ", T - 1, (int)ids[T - 1]);
    assert_true(grid_has(&g, want));
    mech_tui_grid_deinit(&g);

    // the live lens: column labels and top-k names are ids
    mech_tui_live_release(s);
    assert_int_equal(mech_tui_live_lens_start(s, &err), MECH_OK);
    assert_int_equal(wait_poll(s), 2);
    mech_tui_lens lens = {0};
    mech_tui_live_take_lens(s, &lens);
    assert_int_equal(lens.T, T);
    assert_int_equal(lens.L1, small->cfg.n_layers + 1);
    for (int t = 0; t < T; t++) {
        decimal(ids[t], want, sizeof want);
        assert_string_equal(lens.tokens[t], want);
    }
    int checked = 0;
    for (int i = 0; i < lens.L1 * lens.T; i++) {
        const mech_tui_lens_cell *c = &lens.cells[i];
        for (int j = 0; j < c->k; j++, checked++) {
            assert_true(c->top_ids[j] >= 0 && c->top_ids[j] < 256);
            decimal(c->top_ids[j], want, sizeof want);
            assert_string_equal(c->top_text[j], want);
        }
        if (c->target >= 0) {
            decimal(c->target, want, sizeof want);
            assert_string_equal(c->target_text, want);
        }
    }
    assert_true(checked >= lens.L1 * lens.T);
    mech_tui_lens_deinit(&lens);
    mech_tui_app_deinit(&app);
    mech_tui_live_free(s);
}

// A stored lens run of the small model: ids alone while its model file is
// there; once it is gone, <id> (as for any model: a name not found).
static void test_tui_ids_stored_lens(void **state) {
    (void)state;
    const char *db = mech_test_tmpn("ids_lens.db");
    const char *copy = mech_test_tmpn("ids_small_copy.safetensors");
    mech_test_rm_db(db);
    mech_err err = {0};
    assert_int_equal(mech_model_save(small, copy, MECH_DT_F32, NULL, NULL, 0, &err), MECH_OK);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "lens --model %s --ids 120,201,143,177,105,120,201,143 --db %s", copy, db))
        fail_msg("mech lens: %s", out);
    free(out);
    // the stored top-1 at layer 1, position 2, from SQL
    char *s = mech_test_sql_rows(db, "select token from results where run_id = 1 and layer = 1 and pos = 2 and "
                                     "metric = 'prob' and rank = 0");
    long long tok = -1;
    assert_int_equal(sscanf(s, "%lld", &tok), 1);
    free(s);
    mech_tui_lens v = {0};
    assert_int_equal(mech_tui_lens_load(db, 1, &v, &err), MECH_OK);
    assert_int_equal(v.T, T);
    char want[32];
    for (int t = 0; t < T; t++) {
        decimal(ids[t], want, sizeof want);
        assert_string_equal(v.tokens[t], want);
    }
    snprintf(want, sizeof want, "%lld", tok);
    assert_string_equal(v.cells[(size_t)1 * v.T + 2].top_text[0], want);
    // no text was stored: the title gives the ids
    assert_non_null(strstr(v.title, "ids_small_copy.safetensors  ids 120 201 143 177 105 120 201 143"));
    mech_tui_lens_deinit(&v);
    unlink(copy);
    assert_int_equal(mech_tui_lens_load(db, 1, &v, &err), MECH_OK);
    snprintf(want, sizeof want, "<%d>", (int)ids[1]);
    assert_string_equal(v.tokens[1], want);
    mech_tui_lens_deinit(&v);
    mech_test_rm_db(db);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_ids_gpt2_fits),
        cmocka_unit_test(test_tui_ids_live_attention_lens),
        cmocka_unit_test(test_tui_ids_stored_lens),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
