/*
** tests/test_tui_run.c: the run view (a stored run opened from the runs
** list) on a database written by the real mech binary: a patch run's mean
** effect grid over layer x position and layer x head (mech_tui_runview_load;
** the application opens patch runs in the patching view), the cursor line,
** the table of a heads run, and Enter / Esc in the application.
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

static char db[600];

static int setup(void **state) {
    (void)state;
    char pairs[600], *out = NULL;
    snprintf(pairs, sizeof pairs, "%s", mech_test_tmpn("run_pairs.jsonl"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("run_view.db"));
    mech_test_rm_db(db);
    FILE *f = fopen(pairs, "wb");
    if (!f) return -1;
    // pair 0 differs at position 1, pair 1 at position 2
    fputs("{\"clean\": [5, 17, 42, 99, 7], \"corrupt\": [5, 18, 42, 99, 7], \"answer\": 3, \"wrong\": 4}\n"
          "{\"clean\": [1, 2, 3, 4, 5], \"corrupt\": [1, 2, 9, 4, 5], \"answer\": 6, \"wrong\": 7}\n",
          f);
    fclose(f);
    const char *m = "--model tests/fixtures/gpt2-tiny";
    if (mech_test_cli(&out, NULL, "patch %s --pairs %s --db %s", m, pairs, db)) fail_msg("mech patch: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "patch %s --pairs %s --sweep heads --db %s", m, pairs, db))
        fail_msg("mech patch --sweep heads: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "heads %s --random 10 --db %s", m, db))
        fail_msg("mech heads: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "lens %s --ids 5,17,42,99 --top-k 3 --db %s", m, db)) fail_msg("mech lens: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "attrib %s --ids 5,17,42,99 --answer 3 --wrong 4 --db %s", m, db))
        fail_msg("mech attrib: %s", out);
    free(out);
    char rev[600];
    snprintf(rev, sizeof rev, "%s", mech_test_tmpn("run_rev.safetensors"));
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev)) fail_msg("mech compile: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "acdc --model %s --dataset compiled --n 12 --len 4 --tau 0.01 --ablation zero --db %s",
                      rev, db))
        fail_msg("mech acdc: %s", out);
    free(out);
    remove(rev);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mech_test_rm_db(db);
    return 0;
}

// The mean of the stored `effect` rows at (layer, pos or head), read with the store API.
static double stored_mean(int64_t run, int layer, int a, int by_head) {
    mech_err err = {0};
    mech_store *s = NULL;
    mech_result_row *r = NULL;
    size_t n = 0;
    if (mech_store_open_read(db, &s, &err) || mech_store_results_get(s, run, "effect", &r, &n, &err))
        fail_msg("%s", err.msg);
    double sum = 0;
    int cnt = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].layer == layer && (by_head ? r[i].head : r[i].pos) == a) sum += r[i].value, cnt++;
    mech_store_results_free(r, n);
    mech_store_close(s);
    assert_int_equal(cnt, 2); // one per pair
    return sum / cnt;
}

static int grid_has(mech_tui_grid *g, const char *want) {
    char buf[512];
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, buf);
        if (strstr(buf, want)) return 1;
    }
    return 0;
}

static void test_tui_run_patch_positions(void **state) {
    (void)state;
    mech_tui_runview v = {0};
    mech_err err = {0};
    if (mech_tui_runview_load(db, 1, &v, &err)) fail_msg("%s", err.msg);
    assert_string_equal(v.kind, "patch");
    assert_int_equal(v.L, 2);
    assert_int_equal(v.A, 5);
    assert_false(v.by_head);
    // restoring the one differing position at layer 0 gives effect 1 for its
    // pair and ~0 for the other: a mean of 0.5 at positions 1 and 2
    assert_true(fabs(v.effect[1] - 0.5) < 1e-4);
    assert_true(fabs(v.effect[2] - 0.5) < 1e-4);
    for (int l = 0; l < 2; l++)
        for (int p = 0; p < 5; p++) assert_true(fabs(v.effect[l * 5 + p] - stored_mean(1, l, p, 0)) < 1e-9);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_runview_render(&v, &g, 0, 24);
    assert_true(grid_has(&g, "mean effect over 2 pairs, layer x position"));
    assert_true(grid_has(&g, "L0 pos 0  effect"));
    assert_int_equal(mech_tui_runview_key(&v, 'l'), MECH_TUI_REDRAW);
    mech_tui_grid_clear(&g);
    mech_tui_runview_render(&v, &g, 0, 24);
    char want[80];
    snprintf(want, sizeof want, "L0 pos 1  effect %.4f", v.effect[1]);
    assert_true(grid_has(&g, want));
    // the cursor stays inside the grid
    for (int i = 0; i < 10; i++) mech_tui_runview_key(&v, 'j'), mech_tui_runview_key(&v, 'l');
    assert_int_equal(v.cl, 1);
    assert_int_equal(v.ca, 4);
    assert_int_equal(mech_tui_runview_key(&v, MECH_TUI_KEY_ESC), MECH_TUI_QUIT);
    mech_tui_grid_deinit(&g);
    mech_tui_runview_deinit(&v);
}

static void test_tui_run_patch_heads(void **state) {
    (void)state;
    mech_tui_runview v = {0};
    mech_err err = {0};
    if (mech_tui_runview_load(db, 2, &v, &err)) fail_msg("%s", err.msg);
    assert_true(v.by_head);
    assert_int_equal(v.L, 2);
    assert_true(v.A >= 2);
    for (int l = 0; l < v.L; l++)
        for (int h = 0; h < v.A; h++) assert_true(fabs(v.effect[l * v.A + h] - stored_mean(2, l, h, 1)) < 1e-9);
    assert_non_null(strstr(v.title, "layer x head"));
    mech_tui_runview_deinit(&v);
}

static void test_tui_run_heads_table_and_errors(void **state) {
    (void)state;
    mech_tui_runview v = {0};
    mech_err err = {0};
    if (mech_tui_runview_load(db, 3, &v, &err)) fail_msg("%s", err.msg);
    assert_string_equal(v.kind, "heads");
    assert_null(v.effect);
    assert_true(v.n_lines > 1);
    int found = 0;
    for (size_t i = 0; i < v.n_lines; i++) found |= strstr(v.lines[i], "L1H0") && strstr(v.lines[i], "induction");
    assert_true(found);
    assert_int_equal(mech_tui_runview_key(&v, 'q'), MECH_TUI_QUIT);
    // a run that does not exist
    assert_int_equal(mech_tui_runview_load(db, 99, &v, &err), MECH_ERR_RANGE);
    assert_int_equal(v.n_lines, 0);
    mech_tui_runview_deinit(&v);
}

// The value at the end of a table line.
static double last_number(const char *line) {
    const char *sp = strrchr(line, ' ');
    assert_non_null(sp);
    return strtod(sp + 1, NULL);
}

// lens: one line per layer and position of item 0, its top token (rank 0);
// attrib: the components sorted by |attribution|, largest first.
static void test_tui_run_lens_attrib_tables(void **state) {
    (void)state;
    mech_tui_runview v = {0};
    mech_err err = {0};
    mech_store *s = NULL;
    mech_result_row *r = NULL;
    size_t n = 0;
    if (mech_tui_runview_load(db, 4, &v, &err)) fail_msg("%s", err.msg);
    assert_string_equal(v.kind, "lens");
    if (mech_store_open_read(db, &s, &err) || mech_store_results_get(s, 4, "prob", &r, &n, &err))
        fail_msg("%s", err.msg);
    size_t top = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].rank == 0) {
            char want[80];
            snprintf(want, sizeof want, "%-6d %-5d %-8lld %.4f", r[i].layer, r[i].pos, (long long)r[i].token, r[i].value);
            assert_string_equal(v.lines[1 + top], want);
            top++;
        }
    mech_store_results_free(r, n);
    assert_true(top >= 8); // at least 2 layers x 4 positions
    assert_int_equal(v.n_lines, 1 + top);

    if (mech_tui_runview_load(db, 5, &v, &err)) fail_msg("%s", err.msg);
    assert_string_equal(v.kind, "attrib");
    if (mech_store_results_get(s, 5, NULL, &r, &n, &err)) fail_msg("%s", err.msg);
    size_t comps = 0;
    for (size_t i = 0; i < n; i++)
        comps += !strcmp(r[i].metric, "head") || !strcmp(r[i].metric, "mlp") || !strcmp(r[i].metric, "embed") ||
                 !strcmp(r[i].metric, "attn_bias");
    mech_store_results_free(r, n);
    mech_store_close(s);
    assert_true(comps >= 5);
    assert_int_equal(v.n_lines, 1 + comps);
    for (size_t i = 2; i < v.n_lines; i++)
        assert_true(fabs(last_number(v.lines[i])) <= fabs(last_number(v.lines[i - 1])) + 1e-4);
    int has_mlp = 0;
    for (size_t i = 1; i < v.n_lines; i++) has_mlp |= strncmp(v.lines[i], "L1.mlp ", 7) == 0;
    assert_true(has_mlp);
    mech_tui_runview_deinit(&v);
}

// acdc: the kept edges ("sender->receiver"), by |effect|, largest first.
static void test_tui_run_acdc_edges(void **state) {
    (void)state;
    mech_tui_runview v = {0};
    mech_err err = {0};
    mech_store *s = NULL;
    mech_result_row *r = NULL;
    size_t n = 0;
    if (mech_tui_runview_load(db, 6, &v, &err)) fail_msg("%s", err.msg);
    assert_string_equal(v.kind, "acdc");
    if (mech_store_open_read(db, &s, &err) || mech_store_results_get(s, 6, "kept", &r, &n, &err))
        fail_msg("%s", err.msg);
    assert_true(n > 0);
    assert_int_equal(v.n_lines, 1 + n);
    for (size_t i = 0; i < n; i++) {
        int found = 0;
        for (size_t j = 1; j < v.n_lines; j++) found |= strncmp(v.lines[j], r[i].site, strlen(r[i].site)) == 0;
        assert_true(found);
    }
    mech_store_results_free(r, n);
    mech_store_close(s);
    for (size_t i = 2; i < v.n_lines; i++)
        assert_true(fabs(last_number(v.lines[i])) <= fabs(last_number(v.lines[i - 1])) + 1e-4);
    mech_tui_runview_deinit(&v);
}

// Enter on a run opens it; Esc goes back to the list; q there too.
static void test_tui_run_app_enter_esc(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.has_runs = 1, app.db_path = db;
    assert_int_equal(mech_tui_app_reload(&app), 1);
    assert_int_equal(app.runs.n, 6);
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    // a patch run opens in the patching view (tests/test_tui_patch.c)
    assert_int_equal(app.view, MECH_TUI_VIEW_PATCH);
    assert_int_equal(app.patch.id, 1);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "run 1  patch resid_pre (layer x position)"));
    assert_true(grid_has(&g, "Esc back"));
    mech_tui_app_key(&app, MECH_TUI_KEY_ESC);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    mech_tui_app_key(&app, 'j');
    mech_tui_app_key(&app, 'j');
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUN);
    assert_int_equal(app.run.id, 3);
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_run_patch_positions),
        cmocka_unit_test(test_tui_run_patch_heads),
        cmocka_unit_test(test_tui_run_heads_table_and_errors),
        cmocka_unit_test(test_tui_run_lens_attrib_tables),
        cmocka_unit_test(test_tui_run_acdc_edges),
        cmocka_unit_test(test_tui_run_app_enter_esc),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
