/*
** tests/test_tui_live.c: the live session and the Live view without a
** terminal: the prompt editor (insert, delete, cursor moves, UTF-8 bytes
** kept whole), the background forward (same patterns and logits as a
** direct mech_run_forward; a second start while one runs is refused; free
** while running joins), top-k against an independent sort of the logits,
** a compiled model's input and vocabulary, saving a run (checked with SQL),
** and the app: a finished run repoints the attention views, the keys of
** the view.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static mech_model *tiny; // 2 layers x 4 heads, GPT-2 vocabulary, random weights

static int setup(void **state) {
    (void)state;
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 2, c.n_heads = 4, c.d_model = 64, c.d_head = 16, c.d_mlp = 256, c.n_ctx = 128;
    mech_err err = {0};
    if (mech_model_random(&c, 7, &tiny, &err)) fail_msg("%s", err.msg);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mech_model_free(tiny);
    return 0;
}

// Polls the session until its forward is taken over (1) or failed (-1).
static int wait_poll(mech_tui_live *s) {
    double t0 = mech_now();
    for (;;) {
        int r = mech_tui_live_poll(s);
        if (r) return r;
        if (mech_now() - t0 > 120) fail_msg("the forward did not finish in 120 s");
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
    }
}

static int grid_has(const mech_tui_grid *g, const char *needle) {
    char *s = malloc((size_t)g->h * (g->w + 1) + 1), *p = s;
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, p);
        p += g->w;
        *p++ = '\n';
    }
    *p = 0;
    int r = strstr(s, needle) != NULL;
    if (!r) print_message("--- grid (looking for \"%s\") ---\n%s", needle, s);
    free(s);
    return r;
}

static void type(mech_tui_editor *e, const char *s) {
    for (; *s; s++) assert_int_equal(mech_tui_editor_key(e, (unsigned char)*s), MECH_TUI_REDRAW);
}

// --- The editor ---------------------------------------------------------------

static void test_tui_live_editor_insert_delete_move(void **state) {
    (void)state;
    mech_tui_editor e = {0};
    assert_string_equal(mech_tui_editor_text(&e), "");
    type(&e, "helo");
    assert_int_equal(e.cur, 4);
    mech_tui_editor_key(&e, MECH_TUI_KEY_LEFT);
    type(&e, "l"); // inserted before the cursor
    assert_string_equal(mech_tui_editor_text(&e), "hello");
    mech_tui_editor_key(&e, MECH_TUI_KEY_HOME);
    assert_int_equal(e.cur, 0);
    mech_tui_editor_key(&e, MECH_TUI_KEY_BACKSPACE); // nothing before the start
    mech_tui_editor_key(&e, MECH_TUI_KEY_DELETE);
    assert_string_equal(mech_tui_editor_text(&e), "ello");
    mech_tui_editor_key(&e, MECH_TUI_KEY_END);
    assert_int_equal(e.cur, 4);
    mech_tui_editor_key(&e, MECH_TUI_KEY_DELETE); // nothing after the end
    mech_tui_editor_key(&e, MECH_TUI_KEY_RIGHT);
    assert_int_equal(e.cur, 4);
    mech_tui_editor_key(&e, MECH_TUI_KEY_BACKSPACE);
    assert_string_equal(mech_tui_editor_text(&e), "ell");
    assert_int_equal(e.len, 3);
    // keys that are not editing keys are not taken
    assert_int_equal(mech_tui_editor_key(&e, MECH_TUI_KEY_PGUP), MECH_TUI_NONE);
    assert_int_equal(mech_tui_editor_set(&e, "a long prompt, replaced"), MECH_OK);
    assert_int_equal(e.cur, e.len);
    assert_int_equal(e.len, strlen("a long prompt, replaced"));
    // growth past the first allocation keeps every byte
    for (int i = 0; i < 500; i++) type(&e, "x");
    assert_int_equal(e.len, strlen("a long prompt, replaced") + 500);
    assert_int_equal(e.text[e.len], 0);
    mech_tui_editor_deinit(&e);
    mech_tui_editor_deinit(&e); // twice is fine
}

static void test_tui_live_editor_utf8(void **state) {
    (void)state;
    mech_tui_editor e = {0};
    // "a" "é" (C3 A9) "€" (E2 82 AC) "b", typed byte by byte as a terminal sends them
    type(&e, "a\xc3\xa9\xe2\x82\xac" "b");
    assert_string_equal(mech_tui_editor_text(&e), "a\xc3\xa9\xe2\x82\xac" "b");
    assert_int_equal(e.len, 7);
    mech_tui_editor_key(&e, MECH_TUI_KEY_LEFT); // before b
    assert_int_equal(e.cur, 6);
    mech_tui_editor_key(&e, MECH_TUI_KEY_LEFT); // before the euro sign: three bytes back
    assert_int_equal(e.cur, 3);
    mech_tui_editor_key(&e, MECH_TUI_KEY_LEFT); // before é: two bytes back
    assert_int_equal(e.cur, 1);
    mech_tui_editor_key(&e, MECH_TUI_KEY_RIGHT);
    assert_int_equal(e.cur, 3);
    mech_tui_editor_key(&e, MECH_TUI_KEY_DELETE); // the whole euro sign
    assert_string_equal(mech_tui_editor_text(&e), "a\xc3\xa9" "b");
    mech_tui_editor_key(&e, MECH_TUI_KEY_BACKSPACE); // the whole é
    assert_string_equal(mech_tui_editor_text(&e), "ab");
    assert_int_equal(e.cur, 1);
    // a lone invalid byte is one character
    type(&e, "\xff");
    assert_string_equal(mech_tui_editor_text(&e), "a\xff" "b");
    mech_tui_editor_key(&e, MECH_TUI_KEY_LEFT);
    assert_int_equal(e.cur, 1);
    mech_tui_editor_key(&e, MECH_TUI_KEY_DELETE);
    assert_string_equal(mech_tui_editor_text(&e), "ab");
    mech_tui_editor_deinit(&e);
}

// --- The session --------------------------------------------------------------

// The ids the session makes of text: BOS then the GPT-2 encoding.
static int32_t *bos_ids(const char *text, int *T) {
    mech_err err = {0};
    mech_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (mech_tokenizer_gpt2(&tok, &err) || mech_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err))
        fail_msg("%s", err.msg);
    int32_t *seq = malloc((n + 1) * sizeof *seq);
    seq[0] = 50256;
    memcpy(seq + 1, ids, n * sizeof *ids);
    *T = (int)n + 1;
    mech_free(ids);
    mech_tokenizer_free(tok);
    return seq;
}

static void test_tui_live_background_equals_direct_forward(void **state) {
    (void)state;
    const char *text = "When Mary and John went to the store, John gave a drink to";
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.kind = 0, .bos = 50256};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    assert_null(mech_tui_live_run(s));
    assert_int_equal(mech_tui_live_start(s, text, &err), MECH_OK);
    assert_true(mech_tui_live_busy(s));
    assert_int_equal(wait_poll(s), 1);
    assert_false(mech_tui_live_busy(s));
    mech_tui_live_release(s);

    int T = 0, sT = 0;
    int32_t *ids = bos_ids(text, &T);
    const int32_t *sids = mech_tui_live_ids(s, &sT);
    assert_int_equal(sT, T);
    assert_memory_equal(sids, ids, (size_t)T * sizeof *ids);
    assert_string_equal(mech_tui_live_text(s), text);
    mech_run *run = NULL;
    if (mech_run_new(tiny, 1, T, &run, &err) || mech_run_cache(run, "blocks.*.attn.hook_pattern", &err) ||
        mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    const mech_run *lr = mech_tui_live_run(s);
    int L = tiny->cfg.n_layers, NH = tiny->cfg.n_heads, V = tiny->cfg.d_vocab;
    for (int l = 0; l < L; l++) {
        char hook[64];
        snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
        const mech_tensor *a = mech_run_get(lr, hook), *b = mech_run_get(run, hook);
        assert_non_null(a);
        assert_non_null(b);
        mech_assert_close(a->data, b->data, (size_t)NH * T * T, 1e-6, 1e-5, hook);
    }
    // the lens's hooks are cached too (the session calls mech_lens_cache)
    assert_non_null(mech_run_get(lr, "blocks.0.hook_resid_pre"));
    assert_non_null(mech_run_get(lr, "blocks.1.attn.hook_result"));
    mech_assert_close(mech_run_logits(lr), mech_run_logits(run), (size_t)T * V, 1e-4, 1e-4, "logits");
    // the head scores equal the library's
    const double *sc = mech_tui_live_scores(s);
    assert_non_null(sc);
    for (int k = 0; k < MECH_TUI_SCORE_KINDS; k++) {
        double want[64];
        if (mech_heads_score(tiny, run, ids, (mech_head_kind)k, MECH_HEAD_MUL, 0, 0, want, &err)) fail_msg("%s", err.msg);
        for (int i = 0; i < L * NH; i++) assert_true(fabs(sc[k * L * NH + i] - want[i]) < 1e-5);
    }
    mech_run_free(run);
    free(ids);
    mech_tui_live_free(s);
}


// The lens view built by the session's background job equals the one built
// directly from the same run; while it runs a forward is refused as busy.
static void test_tui_live_lens_in_background(void **state) {
    (void)state;
    const char *text = "When Mary and John went to the store";
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.kind = 0, .bos = 50256};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    assert_int_equal(mech_tui_live_lens_start(s, &err), MECH_ERR_ARG); // no run yet
    assert_int_equal(mech_tui_live_start(s, text, &err), MECH_OK);
    assert_int_equal(mech_tui_live_lens_start(s, &err), MECH_ERR_ARG); // a forward runs
    assert_int_equal(wait_poll(s), 1);
    mech_tui_live_release(s);
    assert_int_equal(mech_tui_live_lens_start(s, &err), MECH_OK);
    assert_true(mech_tui_live_busy_lens(s));
    assert_int_equal(mech_tui_live_start(s, text, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "lens"));
    assert_int_equal(wait_poll(s), 2);
    assert_false(mech_tui_live_busy(s));
    mech_tui_lens got = {0}, want = {0};
    mech_tui_live_take_lens(s, &got);
    int T = 0;
    const int32_t *ids = mech_tui_live_ids(s, &T);
    mech_tokenizer *tok = NULL;
    assert_int_equal(mech_tokenizer_gpt2(&tok, &err), MECH_OK);
    assert_int_equal(mech_tui_lens_from_run(&want, tiny, mech_tui_live_run(s), ids, T, tok, &err), MECH_OK);
    assert_int_equal(got.L1, want.L1);
    assert_int_equal(got.T, want.T);
    assert_int_equal(got.L1, tiny->cfg.n_layers + 1);
    for (int i = 0; i < got.L1 * got.T; i++) {
        const mech_tui_lens_cell *a = &got.cells[i], *b = &want.cells[i];
        assert_int_equal(a->k, b->k);
        assert_memory_equal(a->top_ids, b->top_ids, (size_t)a->k * sizeof *a->top_ids);
        for (int j = 0; j < a->k; j++) assert_true(a->top_probs[j] == b->top_probs[j]);
        assert_int_equal(a->target, b->target);
        assert_true(a->target_prob == b->target_prob && a->entropy == b->entropy && a->kl == b->kl);
    }
    for (int t = 0; t < T; t++) assert_string_equal(got.tokens[t], want.tokens[t]);
    mech_tui_lens_deinit(&got);
    mech_tui_lens_deinit(&want);
    mech_tokenizer_free(tok);
    mech_tui_live_free(s);
}


// A forward started with a grid size pools the grid's thumbnails on its
// thread; taken into the attention view they draw the frame the render
// would pool itself.
static void test_tui_live_thumbs_pooled_by_the_forward(void **state) {
    (void)state;
    const char *text = "When Mary and John went to the store, John gave a drink to";
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.kind = 0, .bos = 50256};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    mech_tui_live_set_grid_size(s, 100, 28);
    assert_int_equal(mech_tui_live_start(s, text, &err), MECH_OK);
    assert_int_equal(wait_poll(s), 1);
    mech_tui_app app = {0}, ref = {0};
    app.live.s = s;
    // what mech_tui_live_apply does: the views from the run, then the thumbnails
    mech_tui_live_release(s);
    int T = 0;
    const int32_t *ids = mech_tui_live_ids(s, &T);
    (void)ids;
    int L = tiny->cfg.n_layers, NH = tiny->cfg.n_heads;
    mech_tui_attn *views[2] = {&app.attn, &ref.attn};
    for (int v = 0; v < 2; v++) {
        mech_tui_attn *a = views[v];
        a->L = L, a->NH = NH, a->T = T, a->causal = 1;
        a->layer_pat = mech_calloc((size_t)L, sizeof *a->layer_pat);
        for (int l = 0; l < L; l++) {
            char hook[64];
            snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
            a->layer_pat[l] = mech_run_get(mech_tui_live_run(s), hook)->data;
        }
    }
    assert_int_equal(mech_tui_live_take_thumbs(s, &app.attn), 1);
    assert_non_null(app.attn.thumbs);
    for (int k = 0; k < L * NH; k++) assert_int_equal(app.attn.thumb_ok[k], 1);
    assert_int_equal(mech_tui_live_take_thumbs(s, &ref.attn), 0); // once
    mech_tui_grid ga = {0}, gb = {0};
    assert_int_equal(mech_tui_grid_resize(&ga, 30, 100), MECH_OK);
    assert_int_equal(mech_tui_grid_resize(&gb, 30, 100), MECH_OK);
    const float *pooled = app.attn.thumbs;
    mech_tui_attn_grid_render(&app.attn, &ga, 1, 28);
    mech_tui_attn_grid_render(&ref.attn, &gb, 1, 28);
    assert_ptr_equal(app.attn.thumbs, pooled); // used as they were
    assert_memory_equal(ga.cells, gb.cells, (size_t)30 * 100 * sizeof *ga.cells);
    mech_tui_grid_deinit(&ga), mech_tui_grid_deinit(&gb);
    mech_tui_attn_deinit(&app.attn), mech_tui_attn_deinit(&ref.attn);
    mech_tui_live_free(s);
}

// top-k against a full sort of the same logits row (ties: lower id first)
static const float *cmp_row;
static int by_logit(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    if (cmp_row[x] != cmp_row[y]) return cmp_row[x] > cmp_row[y] ? -1 : 1;
    return x - y;
}

static void test_tui_live_topk_matches_library(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.kind = 1, .bos = -1};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "464, 5335 290 1757,1816", &err), MECH_OK);
    assert_int_equal(wait_poll(s), 1);
    int T = 0;
    const int32_t *sids = mech_tui_live_ids(s, &T);
    int32_t want_ids[5] = {464, 5335, 290, 1757, 1816};
    assert_int_equal(T, 5);
    assert_memory_equal(sids, want_ids, sizeof want_ids);
    // an independent forward of the same ids
    mech_run *run = NULL;
    if (mech_run_new(tiny, 1, T, &run, &err) || mech_run_forward(run, want_ids, &err)) fail_msg("%s", err.msg);
    int V = tiny->cfg.d_vocab;
    int *order = malloc((size_t)V * sizeof *order);
    for (int pos = 0; pos < T; pos++) {
        const float *row = mech_run_logits(run) + (size_t)pos * V;
        for (int v = 0; v < V; v++) order[v] = v;
        cmp_row = row;
        qsort(order, (size_t)V, sizeof *order, by_logit);
        double z = 0;
        for (int v = 0; v < V; v++) z += exp((double)row[v] - row[order[0]]);
        int32_t ids[MECH_TUI_LIVE_K];
        float lg[MECH_TUI_LIVE_K];
        double pr[MECH_TUI_LIVE_K];
        assert_int_equal(mech_tui_live_topk(s, pos, MECH_TUI_LIVE_K, ids, lg, pr), MECH_TUI_LIVE_K);
        for (int i = 0; i < MECH_TUI_LIVE_K; i++) {
            assert_int_equal(ids[i], order[i]);
            assert_true(fabsf(lg[i] - row[order[i]]) < 1e-4f);
            double p = exp((double)row[order[i]] - row[order[0]]) / z;
            assert_true(fabs(pr[i] - p) < 1e-6 * p + 1e-12);
        }
    }
    // outside the prompt: nothing
    int32_t ids[3];
    assert_int_equal(mech_tui_live_topk(s, T, 3, ids, NULL, NULL), 0);
    assert_int_equal(mech_tui_live_topk(s, -1, 3, ids, NULL, NULL), 0);
    free(order);
    mech_run_free(run);
    mech_tui_live_free(s);
    // no_lens: the patterns only (what the attention views need)
    o.no_lens = 1;
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "464 5335", &err), MECH_OK);
    assert_int_equal(wait_poll(s), 1);
    assert_non_null(mech_run_get(mech_tui_live_run(s), "blocks.1.attn.hook_pattern"));
    assert_null(mech_run_get(mech_tui_live_run(s), "blocks.0.hook_resid_pre"));
    mech_tui_live_free(s);
}

// A second start while a forward runs is refused and changes nothing; free
// while running joins the thread (ASan/TSan see no leak and no race).
static void test_tui_live_second_start_refused_free_joins(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.bos = 50256};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "one two three", &err), MECH_OK);
    // the job stays the session's until poll takes it, finished or not
    assert_int_equal(mech_tui_live_start(s, "four", &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "busy"));
    int ids[1] = {5};
    assert_int_equal(mech_tui_live_start_ids(s, "x", ids, 1, &err), MECH_ERR_ARG);
    int T = 0, done = -1, L = 0;
    double el = -1;
    mech_tui_live_progress(s, &T, &done, &L, &el);
    assert_int_equal(T, 4); // BOS + "one two three"
    assert_int_equal(L, 2);
    assert_true(done >= 0 && done <= 2);
    assert_true(el >= 0);
    assert_int_equal(wait_poll(s), 1);
    assert_string_equal(mech_tui_live_text(s), "one two three");
    // a second run retires the first until release
    assert_int_equal(mech_tui_live_start(s, "four five", &err), MECH_OK);
    assert_int_equal(wait_poll(s), 1);
    assert_string_equal(mech_tui_live_text(s), "four five");
    mech_tui_live_release(s);
    mech_tui_live_progress(s, &T, &done, &L, &el);
    assert_int_equal(T, 0);
    // free while a forward runs
    assert_int_equal(mech_tui_live_start(s, "six seven eight nine ten", &err), MECH_OK);
    mech_tui_live_free(s);

    // a long forward is cancelled at the next block, not run to the end
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 24, c.n_heads = 4, c.d_model = 128, c.d_head = 32, c.d_mlp = 512, c.n_ctx = 512, c.d_vocab = 512;
    mech_model *big = NULL;
    if (mech_model_random(&c, 3, &big, &err)) fail_msg("%s", err.msg);
    int32_t *many = malloc(512 * sizeof *many);
    for (int i = 0; i < 512; i++) many[i] = (i * 7) % 500;
    mech_tui_live_opts ob = {.kind = 1, .bos = -1};
    assert_int_equal(mech_tui_live_new(big, &ob, &s, &err), MECH_OK);
    double t0 = mech_now();
    assert_int_equal(mech_tui_live_start_ids(s, "", many, 512, &err), MECH_OK);
    assert_int_equal(wait_poll(s), 1);
    double full = mech_now() - t0;
    mech_tui_live_release(s);
    assert_int_equal(mech_tui_live_start_ids(s, "", many, 512, &err), MECH_OK);
    for (done = 0; !done;) {
        mech_tui_live_progress(s, NULL, &done, NULL, NULL);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    t0 = mech_now();
    mech_tui_live_free(s);
    double freeing = mech_now() - t0;
    print_message("full forward %.3f s, free after block %d: %.3f s\n", full, done, freeing);
    assert_true(freeing < full);
    free(many);
    mech_model_free(big);
}

static void test_tui_live_bad_input(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.kind = 1, .bos = -1};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "1,2,x", &err), MECH_ERR_PARSE);
    assert_int_equal(mech_tui_live_start(s, "1, 99999", &err), MECH_ERR_RANGE); // past the vocabulary
    assert_non_null(strstr(err.msg, "99999"));
    assert_int_equal(mech_tui_live_start(s, "", &err), MECH_ERR_RANGE); // no tokens
    assert_int_equal(mech_tui_live_start(s, " , ", &err), MECH_ERR_RANGE);
    mech_buf b = {0};
    for (int i = 0; i < 129; i++) mech_buf_puts(&b, "7 ");
    assert_int_equal(mech_tui_live_start(s, b.data, &err), MECH_ERR_RANGE); // past n_ctx 128
    assert_non_null(strstr(err.msg, "context of 128"));
    mech_buf_free(&b);
    assert_false(mech_tui_live_busy(s));
    assert_null(mech_tui_live_run(s));
    // nothing to save before a run
    int64_t id = -1;
    assert_int_equal(mech_tui_live_save(s, mech_test_tmp("live_never.db"), "m", "c", 0, 10, &id, &err), MECH_ERR_ARG);
    assert_int_not_equal(access(mech_test_tmp("live_never.db"), F_OK), 0);
    mech_tui_live_free(s);
    mech_tui_live_free(NULL);
}

// --- Saving -------------------------------------------------------------------

static void test_tui_live_save_run(void **state) {
    (void)state;
    char db[600];
    snprintf(db, sizeof db, "%s", mech_test_tmp("live_save.db"));
    mech_test_rm_db(db);
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.bos = 50256};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "When Mary and John", &err), MECH_OK);
    assert_int_equal(wait_poll(s), 1);
    int64_t id1 = 0, id2 = 0;
    assert_int_equal(mech_tui_live_save(s, db, "tiny.safetensors", "mech tui x", 2, 10, &id1, &err), MECH_OK);
    assert_int_equal(id1, 1);
    assert_int_equal(mech_tui_live_save(s, db, "tiny.safetensors", "mech tui x", 4, 10, &id2, &err), MECH_OK);
    assert_int_equal(id2, 2);
    char *rows = mech_test_sql_rows(db, "select id, kind, status, model_path, cmdline from runs order by id");
    assert_string_equal(rows, "1|live|done|tiny.safetensors|mech tui x\n2|live|done|tiny.safetensors|mech tui x\n");
    free(rows);
    rows = mech_test_sql_rows(db, "select text, tokens, n_tokens from prompts where run_id = 1");
    assert_string_equal(rows, "When Mary and John|[50256,2215,5335,290,1757]|5\n");
    free(rows);
    // the stored top-k equals the session's at the position saved
    int32_t ids[10];
    float lg[10];
    double pr[10];
    assert_int_equal(mech_tui_live_topk(s, 2, 10, ids, lg, pr), 10);
    rows = mech_test_sql_rows(db, "select count(*), min(pos), max(pos), min(rank), max(rank) from results "
                                  "where run_id = 1 and site = 'logits' and metric = 'prob'");
    assert_string_equal(rows, "10|2|2|0|9\n");
    free(rows);
    for (int i = 0; i < 10; i++) {
        char sql[200];
        snprintf(sql, sizeof sql, "select token, value from results where run_id = 1 and metric = 'prob' and rank = %d",
                 i);
        rows = mech_test_sql_rows(db, sql);
        int tok = 0;
        double v = 0;
        assert_int_equal(sscanf(rows, "%d|%lf", &tok, &v), 2);
        assert_int_equal(tok, ids[i]);
        assert_true(fabs(v - pr[i]) < 1e-9 * pr[i] + 1e-15);
        free(rows);
        snprintf(sql, sizeof sql, "select value from results where run_id = 1 and metric = 'logit' and rank = %d", i);
        rows = mech_test_sql_rows(db, sql);
        assert_true(fabs(atof(rows) - lg[i]) < 1e-5);
        free(rows);
    }
    rows = mech_test_sql_rows(db, "select count(*) from results where run_id = 1 and site = 'heads'");
    assert_int_equal(atoi(rows), 3 * 2 * 4);
    free(rows);
    // the scores as `mech heads` stores them
    const double *sc = mech_tui_live_scores(s);
    rows = mech_test_sql_rows(db, "select value from results where run_id = 1 and metric = 'induction' and layer = 1 "
                                  "and head = 3");
    assert_true(fabs(atof(rows) - sc[2 * 8 + 1 * 4 + 3]) < 1e-9);
    free(rows);
    rows = mech_test_sql_rows(db, "select pos from results where run_id = 2 and metric = 'prob' and rank = 0");
    assert_string_equal(rows, "4\n");
    free(rows);
    mech_store *st = NULL;
    float *hs = NULL;
    int nd = 0;
    int64_t shape[MECH_MAX_DIMS];
    if (mech_store_open_read(db, &st, &err) || mech_store_tensor_get(st, 1, "head_scores", &hs, &nd, shape, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(nd, 3);
    assert_true(shape[0] == 3 && shape[1] == 2 && shape[2] == 4);
    assert_true(fabsf(hs[0] - (float)sc[0]) < 1e-7f);
    mech_free(hs);
    mech_store_close(st);
    // a file that is not a mech database is refused and left as it was
    const char *junk = mech_test_tmp("live_junk.db");
    FILE *f = fopen(junk, "w");
    fputs("not a database, some text long enough to look like a header........\n", f);
    fclose(f);
    int64_t id3 = 0;
    assert_int_not_equal(mech_tui_live_save(s, junk, "m", "c", 0, 10, &id3, &err), MECH_OK);
    size_t len = 0;
    char *back = mech_test_read(junk, &len);
    assert_non_null(strstr(back, "not a database"));
    free(back);
    unlink(junk);
    mech_tui_live_free(s);
    mech_test_rm_db(db);
}

// --- A compiled model ---------------------------------------------------------

static void test_tui_live_compiled_input(void **state) {
    (void)state;
    char path[600], *out = NULL;
    snprintf(path, sizeof path, "%s", mech_test_tmp("live_reverse.safetensors"));
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", path)) fail_msg("mech compile: %s", out);
    free(out);
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tui_live *s = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    mech_tui_live_opts o = {.kind = 2, .bos = 0};
    assert_int_equal(mech_tui_live_new(m, &o, &s, &err), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "a z", &err), MECH_ERR_RANGE); // z: not in the vocab
    assert_int_equal(mech_tui_live_start(s, "a b c", &err), MECH_OK);
    assert_int_equal(wait_poll(s), 1);
    int T = 0;
    const int32_t *ids = mech_tui_live_ids(s, &T);
    int32_t want[4] = {0, 1, 2, 3}; // BOS, then the vocab {a, b, c, d} in written order
    assert_int_equal(T, 4);
    assert_memory_equal(ids, want, sizeof want);
    // tokens are named by the program: BOS, "a", ..., PAD
    mech_buf b = {0};
    mech_tui_live_token_text(s, 0, 1, &b);
    mech_tui_live_token_text(s, 2, 1, &b);
    mech_tui_live_token_text(s, 5, 1, &b);
    mech_buf_append(&b, "", 0);
    assert_string_equal(b.data, "BOS\"b\"PAD");
    mech_buf_free(&b);
    int32_t top[3];
    assert_int_equal(mech_tui_live_topk(s, 3, 3, top, NULL, NULL), 3);
    mech_tui_live_free(s);
    mech_model_free(m);
    unlink(path);
}

// --- The app ------------------------------------------------------------------

static void test_tui_live_app_apply_and_keys(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.bos = 50256};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    mech_tui_app app = {0};
    app.live.s = s, app.has_live = 1, app.live_auto_head = 1, app.view = MECH_TUI_VIEW_LIVE;
    app.model_path = "dir/tiny.safetensors";
    assert_int_equal(mech_tui_editor_set(&app.live.ed, "When Mary"), MECH_OK);
    assert_int_equal(mech_tui_live_start(s, "When Mary", &err), MECH_OK);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 100), MECH_OK);
    // while it runs: progress on screen, no attention views yet
    assert_true(mech_tui_app_busy(&app));
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "running 3 tokens"));
    assert_true(grid_has(&g, "[running]"));
    assert_int_equal(app.has_attn, 0);
    // while it runs, apply asks for a redraw (the progress) and changes nothing else
    assert_int_equal(mech_tui_live_apply(&app) & MECH_TUI_REDRAW, MECH_TUI_REDRAW);
    while (mech_tui_app_busy(&app)) mech_tui_live_apply(&app);
    // the first run opens the head view, its patterns read in place
    assert_int_equal(app.has_attn, 1);
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    assert_int_equal(app.attn.T, 3);
    const mech_tensor *p1 = mech_run_get(mech_tui_live_run(s), "blocks.1.attn.hook_pattern");
    assert_ptr_equal(app.attn.layer_pat[1], p1->data);
    assert_string_equal(app.attn.tokens[2], " Mary");
    assert_ptr_not_equal(app.attn.scores, mech_tui_live_scores(s)); // a copy the view owns
    assert_true(app.attn.scores[5] == mech_tui_live_scores(s)[5]);
    assert_non_null(strstr(app.model_name, "tiny.safetensors (2 layers x 4 heads, 3 tokens)"));
    // e: from the head view to the live view; the last token selected
    app.attn.q = app.attn.k = 2;
    assert_int_equal(mech_tui_app_key(&app, 'e'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_LIVE);
    assert_int_equal(app.live.pos, 2);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, ">     2   5335  \" Mary\""));
    assert_true(grid_has(&g, "top 10 after pos 2 \" Mary\""));
    int32_t top[10];
    float lg[10];
    double pr[10];
    assert_int_equal(mech_tui_live_topk(s, 2, 10, top, lg, pr), 10);
    char want[128];
    snprintf(want, sizeof want, " 1. %6d ", (int)top[0]);
    assert_true(grid_has(&g, want));
    snprintf(want, sizeof want, "logit %9.4f  p %.4g", lg[0], pr[0]);
    assert_true(grid_has(&g, want));
    // the token cursor
    mech_tui_app_key(&app, 'k');
    assert_int_equal(app.live.pos, 1);
    mech_tui_app_key(&app, 'g');
    assert_int_equal(app.live.pos, 0);
    mech_tui_app_key(&app, 'G');
    assert_int_equal(app.live.pos, 2);
    // S without a database: says one is needed, writes nothing
    mech_tui_app_key(&app, 'S');
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "saving needs a database"));
    // edit: q, ? and Tab are text while editing; Esc leaves without running
    mech_tui_app_key(&app, 'e');
    assert_int_equal(app.live.editing, 1);
    for (const char *c = " q?"; *c; c++) mech_tui_app_key(&app, *c);
    mech_tui_app_key(&app, MECH_TUI_KEY_TAB); // not a text key: ignored
    assert_int_equal(app.view, MECH_TUI_VIEW_LIVE);
    assert_int_equal(app.help, 0);
    assert_string_equal(mech_tui_editor_text(&app.live.ed), "When Mary q?");
    mech_tui_app_key(&app, MECH_TUI_KEY_ESC);
    assert_int_equal(app.live.editing, 0);
    assert_false(mech_tui_app_busy(&app));
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "edited, not run yet"));
    // Enter in the editor runs it; the views follow the new run
    mech_tui_app_key(&app, 'e');
    mech_tui_app_key(&app, MECH_TUI_KEY_BACKSPACE);
    mech_tui_app_key(&app, MECH_TUI_KEY_BACKSPACE);
    mech_tui_app_key(&app, MECH_TUI_KEY_BACKSPACE);
    type(&app.live.ed, " and John went");
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    assert_int_equal(app.live.editing, 0);
    assert_true(mech_tui_app_busy(&app));
    // a second Enter while it runs is refused, on screen
    mech_tui_app_key(&app, 'e');
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    while (mech_tui_app_busy(&app)) mech_tui_live_apply(&app);
    assert_int_equal(app.view, MECH_TUI_VIEW_LIVE); // only the first run opens the head view
    assert_int_equal(app.attn.T, 6);
    assert_int_equal(app.attn.q, 2); // cursors kept when they still fit
    const mech_tensor *p2 = mech_run_get(mech_tui_live_run(s), "blocks.0.attn.hook_pattern");
    assert_ptr_equal(app.attn.layer_pat[0], p2->data);
    assert_string_equal(app.attn.tokens[5], " went");
    assert_int_equal(app.live.pos, 5);
    // the repointed head view draws from the new run (ASan: the old one is freed)
    app.view = MECH_TUI_VIEW_HEAD;
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "L0H0  6 tokens"));
    app.view = MECH_TUI_VIEW_GRID;
    mech_tui_app_render(&app, &g);
    // q from the live view goes to the attention view
    app.view = MECH_TUI_VIEW_LIVE;
    mech_tui_app_key(&app, 'q');
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    // the help lists the live view's keys
    app.view = MECH_TUI_VIEW_LIVE;
    mech_tui_app_key(&app, '?');
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "keys: live view"));
    assert_true(grid_has(&g, "save the screen as a run of kind live"));
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
    mech_tui_live_free(s);
}

// At 80 x 24 the view fits: tokens and the top-k side by side, long token
// lists scroll with the cursor, and a narrow window stacks them.
static void test_tui_live_view_small_windows(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_live *s = NULL;
    mech_tui_live_opts o = {.kind = 1, .bos = -1};
    assert_int_equal(mech_tui_live_new(tiny, &o, &s, &err), MECH_OK);
    mech_buf b = {0};
    for (int i = 0; i < 60; i++) mech_buf_printf(&b, "%d ", 1000 + i);
    assert_int_equal(mech_tui_live_start(s, b.data, &err), MECH_OK);
    mech_buf_free(&b);
    assert_int_equal(wait_poll(s), 1);
    mech_tui_liveview v = {.s = s};
    mech_tui_editor_set(&v.ed, "1000 1001");
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    v.pos = 59;
    mech_tui_liveview_render(&v, &g, 0, 22);
    assert_true(grid_has(&g, ">    59   1059"));
    assert_true(grid_has(&g, "top 10 after pos 59"));
    assert_true(grid_has(&g, "10. "));
    // at 80 columns the top-k still shows every logit and probability
    int32_t top[10];
    float lg[10];
    double pr[10];
    assert_int_equal(mech_tui_live_topk(s, 59, 10, top, lg, pr), 10);
    for (int i = 0; i < 10; i++) {
        char want[96];
        snprintf(want, sizeof want, "%2d. %6d ", i + 1, (int)top[i]);
        assert_true(grid_has(&g, want));
        snprintf(want, sizeof want, " %9.4f %.3g", lg[i], pr[i]);
        assert_true(grid_has(&g, want));
    }
    mech_tui_liveview_key(&v, MECH_TUI_KEY_PGUP);
    mech_tui_liveview_render(&v, &g, 0, 22);
    assert_true(v.pos < 59 && v.pos >= 59 - v.page);
    assert_int_equal(mech_tui_grid_resize(&g, 30, 40), MECH_OK);
    mech_tui_liveview_render(&v, &g, 0, 30);
    assert_true(grid_has(&g, "top 10 after pos"));
    // a tiny window draws what fits and nothing outside it
    assert_int_equal(mech_tui_grid_resize(&g, 3, 12), MECH_OK);
    mech_tui_liveview_render(&v, &g, 0, 3);
    mech_tui_liveview_render(&v, &g, 0, 1);
    mech_tui_grid_deinit(&g);
    mech_tui_liveview_deinit(&v);
    mech_tui_live_free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_live_editor_insert_delete_move),
        cmocka_unit_test(test_tui_live_editor_utf8),
        cmocka_unit_test(test_tui_live_background_equals_direct_forward),
        cmocka_unit_test(test_tui_live_lens_in_background),
        cmocka_unit_test(test_tui_live_thumbs_pooled_by_the_forward),
        cmocka_unit_test(test_tui_live_topk_matches_library),
        cmocka_unit_test(test_tui_live_second_start_refused_free_joins),
        cmocka_unit_test(test_tui_live_bad_input),
        cmocka_unit_test(test_tui_live_save_run),
        cmocka_unit_test(test_tui_live_compiled_input),
        cmocka_unit_test(test_tui_live_app_apply_and_keys),
        cmocka_unit_test(test_tui_live_view_small_windows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
