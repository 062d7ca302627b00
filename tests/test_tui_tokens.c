/*
** tests/test_tui_tokens.c: the token view's model on a plain cell grid:
** each token's text shaded by the weight of the selected token's row (where
** it looks) or column (what looks at it), for one head or every head of the
** layer, the strongest weights as numbers, and the keys that reach it.
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

// One layer, two heads, four tokens "Aa" "Bb" "Cc" "Dd", causal patterns
// written out by hand so each expected shade is known independently.
static const float pat_l0[2][4][4] = {
    {{1, 0, 0, 0}, {.5f, .5f, 0, 0}, {.5f, .25f, .25f, 0}, {.25f, .25f, .25f, .25f}},
    {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}},
};

static void attn_make(mech_tui_attn *a) {
    memset(a, 0, sizeof *a);
    a->L = 1, a->NH = 2, a->T = 4;
    a->pat = mech_malloc(sizeof pat_l0);
    assert_non_null(a->pat);
    memcpy(a->pat, pat_l0, sizeof pat_l0);
    a->tokens = mech_calloc(4, sizeof *a->tokens);
    const char *t[] = {"Aa", "Bb", "Cc", "Dd"};
    for (int i = 0; i < 4; i++) a->tokens[i] = mech_strdup(t[i]);
}

// Row y as text without its trailing blanks.
static char *row_text(const mech_tui_grid *g, int y) {
    static char buf[256];
    mech_tui_grid_row_text(g, y, buf);
    for (size_t n = strlen(buf); n && buf[n - 1] == ' ';) buf[--n] = 0;
    return buf;
}

// A frame as the app draws it: on a cleared grid.
static void render(mech_tui_attn *a, mech_tui_grid *g) {
    mech_tui_grid_clear(g);
    mech_tui_tokens_render(a, g, 0, g->h);
}

// Levels of the two cells of each of the four tokens, laid out from column x0 of row y.
static void assert_levels(mech_tui_grid *g, int y, int x0, const int want[4]) {
    for (int t = 0; t < 4; t++)
        for (int c = 0; c < 2; c++) {
            mech_tui_cell *cell = mech_tui_grid_at(g, y, x0 + 2 * t + c);
            assert_non_null(cell);
            assert_int_equal(cell->heat, 1);
            assert_int_equal(cell->level, want[t]);
        }
}

static void test_tui_tokens_shades_and_direction(void **state) {
    (void)state;
    mech_tui_attn a;
    attn_make(&a);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 10, 60), MECH_OK);
    a.q = 2; // "Cc"
    render(&a, &g);
    assert_non_null(strstr(row_text(&g, 0), "L0H0  token 2 \"Cc\": where it looks"));
    assert_string_equal(row_text(&g, 1), "AaBbCcDd");
    // row 2 of head 0: .5 .25 .25 0 -> levels 1 + floor(w * 9): 5, 3, 3, and 0 for no attention
    assert_levels(&g, 1, 0, (const int[]){5, 3, 3, 0});
    assert_int_equal(mech_tui_grid_at(&g, 1, 4)->role, MECH_TUI_SEL);
    assert_int_equal(mech_tui_grid_at(&g, 1, 0)->role, MECH_TUI_HEAT);
    assert_string_equal(row_text(&g, 9),
                        "strongest:  0 \"Aa\" 0.5000  1 \"Bb\" 0.2500  2 \"Cc\" 0.2500");
    // d: column 2 (what looks at "Cc"): queries 0..3 give 0 0 .25 .25
    assert_int_equal(mech_tui_tokens_key(&a, 'd'), MECH_TUI_REDRAW);
    assert_int_equal(a.tok_dir, 1);
    assert_float_equal(mech_tui_tokens_weight(&a, 0, 3), .25f, 1e-6);
    render(&a, &g);
    assert_non_null(strstr(row_text(&g, 0), "what looks at it"));
    assert_levels(&g, 1, 0, (const int[]){0, 0, 3, 3});
    assert_non_null(strstr(row_text(&g, 9), "strongest:  2 \"Cc\" 0.2500  3 \"Dd\" 0.2500"));
    // l selects "Dd"; head 1 (j): only query 3 looks at it, with 0 -> nothing is shaded
    mech_tui_tokens_key(&a, 'l');
    mech_tui_tokens_key(&a, 'j');
    assert_int_equal(a.q, 3);
    assert_int_equal(a.head, 1);
    render(&a, &g);
    assert_levels(&g, 1, 0, (const int[]){0, 0, 0, 0});
    assert_string_equal(row_text(&g, 9), "strongest:");
    // back to where it looks: head 1's row 3 is all on "Cc"
    mech_tui_tokens_key(&a, 'd');
    render(&a, &g);
    assert_levels(&g, 1, 0, (const int[]){0, 0, 9, 0});
    assert_non_null(strstr(row_text(&g, 9), "strongest:  2 \"Cc\" 1.0000"));
    // l at the last token stays there
    mech_tui_tokens_key(&a, 'l');
    assert_int_equal(a.q, 3);
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

static void test_tui_tokens_every_head_and_wrap(void **state) {
    (void)state;
    mech_tui_attn a;
    attn_make(&a);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 8, 40), MECH_OK);
    a.q = 1;
    mech_tui_tokens_key(&a, 'a');
    render(&a, &g);
    assert_non_null(strstr(row_text(&g, 0), "L0 all heads, H0  token 1 \"Bb\""));
    // one line per head, the same tokens in the same columns
    assert_int_equal(strncmp(row_text(&g, 1), "H0   AaBbCcDd", 13), 0);
    assert_int_equal(strncmp(row_text(&g, 2), "H1   AaBbCcDd", 13), 0);
    assert_int_equal(mech_tui_grid_at(&g, 1, 0)->role, MECH_TUI_SEL); // the current head's label
    assert_levels(&g, 1, 5, (const int[]){5, 5, 0, 0}); // head 0, row 1: .5 .5
    assert_levels(&g, 2, 5, (const int[]){0, 9, 0, 0}); // head 1, row 1: all on "Bb"
    // direction switch applies to every line: column 1
    mech_tui_tokens_key(&a, 'd');
    render(&a, &g);
    assert_levels(&g, 1, 5, (const int[]){0, 5, 3, 3});
    assert_levels(&g, 2, 5, (const int[]){0, 9, 9, 0});
    // one head in a window 5 wide: "AaBb" "CcDd" wrap onto two lines, a token kept whole
    mech_tui_tokens_key(&a, 'a');
    mech_tui_grid_resize(&g, 8, 5);
    render(&a, &g);
    assert_string_equal(row_text(&g, 1), "AaBb");
    assert_string_equal(row_text(&g, 2), "CcDd");
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// Difference mode: with the corrupted prompt's heads swapped, D shades each
// token by clean - corrupted (level by magnitude, sign for the diverging
// palette), for one head and for every head; the numbers line gives the
// largest differences with their signs.
static void test_tui_tokens_difference(void **state) {
    (void)state;
    mech_tui_attn a;
    attn_make(&a);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 10, 80), MECH_OK);
    assert_int_equal(mech_tui_tokens_key(&a, 'D'), MECH_TUI_NONE); // no corrupted prompt
    a.cpat = mech_malloc(sizeof pat_l0);
    assert_non_null(a.cpat);
    memcpy(a.cpat, pat_l0[1], sizeof pat_l0[1]);
    memcpy(a.cpat + 16, pat_l0[0], sizeof pat_l0[0]);
    assert_int_equal(mech_tui_tokens_key(&a, 'D'), MECH_TUI_REDRAW);
    a.q = 2;
    render(&a, &g);
    assert_non_null(strstr(row_text(&g, 0), "clean - corrupted"));
    // head 0, row 2: clean .5 .25 .25 0, corrupted (head 1's) 0 1 0 0
    const float want[4] = {.5f, -.75f, .25f, 0};
    for (int t = 0; t < 4; t++) {
        assert_float_equal(mech_tui_tokens_diff(&a, 0, t), want[t], 1e-6);
        mech_tui_cell *c = mech_tui_grid_at(&g, 1, 2 * t);
        int lv = mech_tui_level(want[t] < 0 ? -want[t] : want[t]);
        assert_int_equal(c->level, lv);
        assert_int_equal(c->sign, lv ? (want[t] < 0 ? 2 : 1) : 0);
    }
    assert_levels(&g, 1, 0, (const int[]){5, 7, 3, 0});
    assert_string_equal(row_text(&g, 9), "largest differences:  1 \"Bb\" -0.7500  0 \"Aa\" +0.5000  2 \"Cc\" +0.2500");
    // every head, the other direction (column 2): head 1 clean 0 0 1 0... corrupted is head 0's column
    mech_tui_tokens_key(&a, 'a');
    mech_tui_tokens_key(&a, 'd');
    render(&a, &g);
    for (int h = 0; h < 2; h++)
        for (int t = 0; t < 4; t++) {
            float d = pat_l0[h][t][2] - pat_l0[1 - h][t][2];
            mech_tui_cell *c = mech_tui_grid_at(&g, 1 + h, 5 + 2 * t);
            assert_int_equal(c->level, mech_tui_level(d < 0 ? -d : d));
            assert_int_equal(c->sign, d > 0 ? 1 : d < 0 ? 2 : 0);
        }
    // D again: the weights
    mech_tui_tokens_key(&a, 'D');
    render(&a, &g);
    assert_int_equal(strncmp(row_text(&g, 9), "strongest:", 10), 0);
    assert_int_equal(mech_tui_grid_at(&g, 1, 5)->sign, 0);
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// The app: t from the heatmap opens the token view on the cursor's query,
// its keys are in ? help and the footer, q and t go back to the heatmap.
static void test_tui_tokens_app_keys(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.has_attn = 1, app.view = MECH_TUI_VIEW_HEAD;
    attn_make(&app.attn);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 30, 100), MECH_OK);
    mech_tui_app_key(&app, 'j'); // cursor query 1
    assert_int_equal(mech_tui_app_key(&app, 't'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_TOKENS);
    mech_tui_app_render(&app, &g);
    assert_non_null(strstr(row_text(&g, 0), "[tokens]"));
    assert_non_null(strstr(row_text(&g, 1), "token 1 \"Bb\""));
    assert_non_null(strstr(row_text(&g, 29), "d direction"));
    mech_tui_app_key(&app, '?');
    mech_tui_app_render(&app, &g);
    char all[30 * 257] = "";
    for (int y = 0; y < 30; y++) strcat(all, row_text(&g, y));
    assert_non_null(strstr(all, "keys: tokens view"));
    assert_non_null(strstr(all, "direction: where the token looks / what looks at it"));
    assert_non_null(strstr(all, "the current head / every head of the layer"));
    mech_tui_app_key(&app, 'x'); // closes the help
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    mech_tui_app_key(&app, 't');
    mech_tui_app_key(&app, 't');
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    // the heatmap's help lists t
    mech_tui_app_key(&app, '?');
    mech_tui_app_render(&app, &g);
    all[0] = 0;
    for (int y = 0; y < 30; y++) strcat(all, row_text(&g, y));
    assert_non_null(strstr(all, "token view"));
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_tokens_shades_and_direction),
        cmocka_unit_test(test_tui_tokens_every_head_and_wrap),
        cmocka_unit_test(test_tui_tokens_difference),
        cmocka_unit_test(test_tui_tokens_app_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
