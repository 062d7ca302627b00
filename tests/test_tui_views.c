/*
** tests/test_tui_views.c: the interface's view models on a plain cell grid,
** without a terminal: text on the grid, token labels, pooling of long
** patterns, the runs list (filter, search, sort, selection kept across a
** reload), the attention heatmap (axes, crosshair, the cursor's value), the
** all-heads grid, and the app's keys (q, Tab, the help built from the key
** table).
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

// The grid as text, one row per line (owned by the caller, free).
static char *grid_text(const mech_tui_grid *g) {
    char *s = malloc((size_t)g->h * (g->w + 1) + 1), *p = s;
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, p);
        p += g->w;
        *p++ = '\n';
    }
    *p = 0;
    return s;
}

static int grid_has(const mech_tui_grid *g, const char *needle) {
    char *s = grid_text(g);
    int r = strstr(s, needle) != NULL;
    if (!r) print_message("--- grid (looking for \"%s\") ---\n%s", needle, s);
    free(s);
    return r;
}

// --- grid and labels --------------------------------------------------------

static void test_tui_grid_put_clips_and_sanitises(void **state) {
    (void)state;
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 2, 8), MECH_OK);
    assert_int_equal(mech_tui_grid_put(&g, 0, 5, MECH_TUI_TEXT, "abcdef", -1), 3); // to the right edge
    assert_int_equal(mech_tui_grid_put(&g, 1, 0, MECH_TUI_SEL, "x\x01y\xc3\xa9", 3), 3);
    char row[16];
    mech_tui_grid_row_text(&g, 0, row);
    assert_string_equal(row, "     abc");
    mech_tui_grid_row_text(&g, 1, row);
    assert_string_equal(row, "x?y     ");
    assert_int_equal(mech_tui_grid_at(&g, 1, 0)->role, MECH_TUI_SEL);
    assert_null(mech_tui_grid_at(&g, 2, 0));
    assert_int_equal(mech_tui_grid_put(&g, 5, 0, MECH_TUI_TEXT, "zz", -1), 0);
    mech_tui_grid_deinit(&g);
}

static void test_tui_token_label_escapes(void **state) {
    (void)state;
    char out[16];
    mech_tui_token_label(" Mary\n", out, sizeof out);
    assert_string_equal(out, " Mary\\n");
    mech_tui_token_label("caf\xc3\xa9\t", out, sizeof out); // one '?' per UTF-8 character
    assert_string_equal(out, "caf?\\t");
    mech_tui_token_label("abcdefghijklmnopqrstuvwxyz", out, 6);
    assert_string_equal(out, "abcde");
}

// --- attention --------------------------------------------------------------

// A T-token causal pattern for L x NH heads: row q of head (l, h) puts
// weight on keys 0..q with a known, distinct value at (q, k).
static void attn_fill(mech_tui_attn *a, int L, int NH, int T) {
    a->L = L, a->NH = NH, a->T = T;
    a->pat = mech_calloc((size_t)L * NH * T * T, sizeof *a->pat);
    a->tokens = mech_calloc((size_t)T, sizeof *a->tokens);
    a->scores = mech_calloc((size_t)MECH_TUI_SCORE_KINDS * L * NH, sizeof *a->scores);
    assert_non_null(a->pat);
    for (int l = 0; l < L; l++)
        for (int h = 0; h < NH; h++)
            for (int q = 0; q < T; q++) {
                float *row = a->pat + (((size_t)l * NH + h) * T + q) * T;
                // head (l, h) attends mostly to key (q - 1 - h) (clamped): a previous-token-like head
                int tgt = q - 1 - h > 0 ? q - 1 - h : 0;
                for (int k = 0; k <= q; k++) row[k] = k == tgt ? 0.0f : 0.25f / (float)(q + 1);
                float rest = 0;
                for (int k = 0; k <= q; k++) rest += row[k];
                row[tgt] = 1.0f - rest;
            }
    for (int t = 0; t < T; t++) {
        char b[16];
        snprintf(b, sizeof b, "t%d", t);
        a->tokens[t] = mech_strdup(b);
    }
    for (int i = 0; i < L * NH; i++)
        a->scores[i] = 0.1 * i, a->scores[L * NH + i] = 0.5, a->scores[2 * L * NH + i] = i == 5 ? 0.87 : 0.02;
}

static void test_tui_pool_max_and_mean(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    attn_fill(&a, 1, 1, 5);
    // 2 x 2 bins over 5 tokens: 3 x 3 cells, the last ones partial
    float mx[9], mean[9];
    mech_tui_attn_pool(&a, 0, 0, 2, 2, 3, 3, 0, mx);
    mech_tui_attn_pool(&a, 0, 0, 2, 2, 3, 3, 1, mean);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            float m = 0, s = 0;
            int n = 0;
            for (int q = 2 * i; q < 2 * i + 2 && q < 5; q++)
                for (int k = 2 * j; k < 2 * j + 2 && k < 5; k++) {
                    float w = mech_tui_attn_weight(&a, 0, 0, q, k);
                    m = w > m ? w : m, s += w, n++;
                }
            assert_true(fabsf(mx[i * 3 + j] - m) < 1e-6f);
            assert_true(fabsf(mean[i * 3 + j] - s / (float)n) < 1e-6f);
        }
    assert_true(mx[0 * 3 + 2] == 0); // above the diagonal: nothing
    mech_tui_attn_deinit(&a);
}

static void test_tui_level_ramp(void **state) {
    (void)state;
    assert_int_equal(mech_tui_level(0), 0);
    assert_int_equal(mech_tui_level(-1), 0);
    assert_int_equal(mech_tui_level(NAN), 0);
    assert_int_equal(mech_tui_level(1e-6f), 1); // any attention shows
    assert_int_equal(mech_tui_level(1), MECH_TUI_LEVELS - 1);
    assert_int_equal(mech_tui_level(0.5f), 5);
    for (float w = 0; w < 1; w += 0.01f) assert_true(mech_tui_level(w) <= mech_tui_level(w + 0.01f));
    assert_int_equal(mech_tui_ramp[0], ' ');
    assert_int_equal(mech_tui_ramp[MECH_TUI_LEVELS - 1], '@');
}

static void test_tui_attn_heatmap_axes_and_cursor(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    attn_fill(&a, 2, 3, 12);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_int_equal(a.bin_r, 1); // 12 tokens fit: one cell per token
    assert_true(grid_has(&g, "L0H0  12 tokens  one cell per token"));
    assert_true(grid_has(&g, " t11 ")); // a query label
    // move: 3 down, 1 right, next head, next layer
    for (int i = 0; i < 3; i++) assert_int_equal(mech_tui_attn_key(&a, 'j'), MECH_TUI_REDRAW);
    mech_tui_attn_key(&a, MECH_TUI_KEY_RIGHT);
    mech_tui_attn_key(&a, 'l');
    mech_tui_attn_key(&a, 'h');
    mech_tui_attn_key(&a, ']');
    mech_tui_attn_key(&a, '}');
    assert_int_equal(a.q, 3);
    assert_int_equal(a.k, 1);
    assert_int_equal(a.layer, 1);
    assert_int_equal(a.head, 1);
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    char want[128];
    snprintf(want, sizeof want, "q 3 \"t3\" -> k 1 \"t1\"  weight %.4f", mech_tui_attn_weight(&a, 1, 1, 3, 1));
    assert_true(mech_tui_attn_weight(&a, 1, 1, 3, 1) > 0.5f); // head 1 looks 2 back: the big weight
    assert_true(grid_has(&g, want));
    // the key axis carries the column's token text, top to bottom ("t", "3")
    int lw = 80 / 5, x3 = lw + 1 + 3, y_axis = 1; // column of key 3
    assert_int_equal(mech_tui_grid_at(&g, y_axis, x3)->ch, 't');
    assert_int_equal(mech_tui_grid_at(&g, y_axis + 1, x3)->ch, '3');
    // the cursor cell is SEL, the rest of its row and column CROSS, with the weight's glyph
    int yq = 1 + 3 + 3, xk = lw + 1 + 1;
    mech_tui_cell *c = mech_tui_grid_at(&g, yq, xk);
    assert_int_equal(c->role, MECH_TUI_SEL);
    assert_int_equal(c->ch, mech_tui_ramp[mech_tui_level(mech_tui_attn_weight(&a, 1, 1, 3, 1))]);
    assert_int_equal(mech_tui_grid_at(&g, yq, xk + 3)->role, MECH_TUI_CROSS);
    assert_int_equal(mech_tui_grid_at(&g, yq + 2, xk)->role, MECH_TUI_CROSS);
    assert_int_equal(mech_tui_grid_at(&g, yq + 2, xk + 1)->role, MECH_TUI_HEAT);
    // wrap-around: previous head from (0, 0) is the last head of the last layer
    a.layer = 0, a.head = 0;
    mech_tui_attn_key(&a, '[');
    assert_int_equal(a.layer, 1);
    assert_int_equal(a.head, 2);
    assert_int_equal(mech_tui_attn_key(&a, 'x'), MECH_TUI_NONE);
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// Difference mode: the corrupted pattern of head h is the clean one of head
// h + 1 (two back instead of one back), so clean - corrupted is positive on
// the previous token and negative two back; the glyph and the cell's sign say
// which without colour, and the cursor line gives all three numbers.
static void test_tui_attn_difference(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    int T = 6, NH = 2;
    attn_fill(&a, 1, NH, T);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    assert_int_equal(mech_tui_attn_key(&a, 'D'), MECH_TUI_NONE); // no corrupted prompt: no difference
    assert_int_equal(a.diff, 0);
    size_t per = (size_t)T * T;
    a.cpat = mech_malloc((size_t)NH * per * sizeof *a.cpat);
    assert_non_null(a.cpat);
    for (int h = 0; h < NH; h++) memcpy(a.cpat + h * per, a.pat + ((h + 1) % NH) * per, per * sizeof *a.cpat);
    assert_int_equal(mech_tui_attn_key(&a, 'D'), MECH_TUI_REDRAW);
    assert_int_equal(a.diff, 1);
    a.q = 4, a.k = 3;
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_true(grid_has(&g, "L0H0  clean - corrupted"));
    float c = mech_tui_attn_weight(&a, 0, 0, 4, 3), x = mech_tui_attn_cweight(&a, 0, 0, 4, 3);
    assert_true(c > 0.5f && x < 0.2f); // clean looks one back, corrupted two back
    char want[160];
    snprintf(want, sizeof want, "q 4 \"t4\" -> k 3 \"t3\"  clean %.4f  corrupted %.4f  diff %+.4f", c, x, c - x);
    assert_true(grid_has(&g, want));
    int lw = 80 / 5, y4 = 1 + 3 + 4;
    // k 3 (one back): positive, a strong '#'; k 2 (two back): negative, a strong '='
    mech_tui_cell *pos = mech_tui_grid_at(&g, y4, lw + 1 + 3), *neg = mech_tui_grid_at(&g, y4, lw + 1 + 2);
    assert_int_equal(pos->sign, 1);
    assert_int_equal(pos->ch, mech_tui_ramp_pos[mech_tui_level(c - x)]);
    assert_int_equal(pos->ch, '#');
    float d2 = c - x, dn = mech_tui_attn_weight(&a, 0, 0, 4, 2) - mech_tui_attn_cweight(&a, 0, 0, 4, 2);
    assert_true(d2 > 0 && dn < -0.5f);
    assert_int_equal(neg->sign, 2);
    assert_int_equal(neg->ch, '=');
    assert_int_equal(neg->role, MECH_TUI_CROSS); // the cursor's row
    assert_int_equal(neg->level, mech_tui_level(-dn));
    // equal weights (the small ones of k 0): zero difference, an empty cell
    mech_tui_cell *zero = mech_tui_grid_at(&g, y4, lw + 1 + 0);
    assert_int_equal(zero->ch, ' ');
    assert_int_equal(zero->sign, 0);
    // pooled: max keeps the sign of the difference largest in magnitude, mean averages
    float mx[9], mean[9];
    mech_tui_attn_pool_diff(&a, 0, 0, 2, 2, 3, 3, 0, mx);
    mech_tui_attn_pool_diff(&a, 0, 0, 2, 2, 3, 3, 1, mean);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            float big = 0, sum = 0;
            for (int q = 2 * i; q < 2 * i + 2; q++)
                for (int k = 2 * j; k < 2 * j + 2; k++) {
                    float d = mech_tui_attn_weight(&a, 0, 0, q, k) - mech_tui_attn_cweight(&a, 0, 0, q, k);
                    big = fabsf(d) > fabsf(big) ? d : big, sum += d;
                }
            assert_true(fabsf(mx[i * 3 + j] - big) < 1e-6f);
            assert_true(fabsf(mean[i * 3 + j] - sum / 4) < 1e-6f);
        }
    assert_true(mx[2 * 3 + 1] < -0.5f); // q 4-5 x k 2-3: the corrupted two-back weight of q 4 -> k 2 dominates
    // D again: the clean pattern and its sequential ramp
    assert_int_equal(mech_tui_attn_key(&a, 'D'), MECH_TUI_REDRAW);
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_true(grid_has(&g, "L0H0  6 tokens  one cell per token"));
    assert_int_equal(mech_tui_grid_at(&g, y4, lw + 1 + 3)->sign, 0);
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// 1024 tokens in 80 x 24: pooled so the whole pattern fits, the title says
// how, and a key moves one pooled cell.

// A causal pattern pooled with the later keys skipped (causal set) equals
// the full read, for max and mean pooling and bins that straddle the
// diagonal; so does the grid's thumbnail of each head.
static void test_tui_attn_pool_causal_skip(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    attn_fill(&a, 1, 2, 301);
    const int bins[][2] = {{1, 1}, {7, 5}, {5, 7}, {64, 3}, {3, 64}, {301, 301}};
    for (size_t b = 0; b < sizeof bins / sizeof bins[0]; b++)
        for (int mean = 0; mean < 2; mean++)
            for (int h = 0; h < 2; h++) {
                int br = bins[b][0], bc = bins[b][1], nr = (301 + br - 1) / br, nc = (301 + bc - 1) / bc;
                float *full = malloc((size_t)nr * nc * sizeof *full), *skip = malloc((size_t)nr * nc * sizeof *skip);
                a.causal = 0;
                mech_tui_attn_pool(&a, 0, h, br, bc, nr, nc, mean, full);
                a.causal = 1;
                mech_tui_attn_pool(&a, 0, h, br, bc, nr, nc, mean, skip);
                // max: bit for bit; mean: the sums group their terms differently
                for (int i = 0; i < nr * nc; i++)
                    if (mean) assert_true(fabsf(full[i] - skip[i]) <= 1e-6f * (1 + fabsf(full[i])));
                    else assert_true(full[i] == skip[i]);
                free(full), free(skip);
            }
    mech_tui_attn_deinit(&a);
}


// Thumbnails pooled ahead (mech_tui_attn_grid_prepare, as the live session
// does after a forward) draw the same grid as those pooled by the render.
static void test_tui_attn_grid_prepare_same_frame(void **state) {
    (void)state;
    const int sizes[][2] = {{80, 24}, {200, 60}, {61, 17}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int W = sizes[i][0], H = sizes[i][1];
        mech_tui_attn a = {0}, b = {0};
        attn_fill(&a, 3, 4, 150);
        attn_fill(&b, 3, 4, 150);
        a.causal = b.causal = 1;
        assert_int_equal(mech_tui_attn_grid_prepare(&b, W, H - 2), MECH_OK);
        for (int k = 0; k < 12; k++) assert_int_equal(b.thumb_ok[k], 1);
        const float *pooled = b.thumbs;
        mech_tui_grid ga = {0}, gb = {0};
        assert_int_equal(mech_tui_grid_resize(&ga, H, W), MECH_OK);
        assert_int_equal(mech_tui_grid_resize(&gb, H, W), MECH_OK);
        mech_tui_attn_grid_render(&a, &ga, 1, H - 2);
        mech_tui_attn_grid_render(&b, &gb, 1, H - 2);
        assert_ptr_equal(b.thumbs, pooled); // the render kept them: same size and settings
        assert_memory_equal(ga.cells, gb.cells, (size_t)H * W * sizeof *ga.cells);
        mech_tui_grid_deinit(&ga), mech_tui_grid_deinit(&gb);
        mech_tui_attn_deinit(&a), mech_tui_attn_deinit(&b);
    }
}

static void test_tui_attn_long_prompt_pooled(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    attn_fill(&a, 1, 2, 1024);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_attn_render(&a, &g, 0, 22);
    int hr = 22 - 2 - 3, hc = 80 - 16 - 1;
    // two heatmap rows per text row: 2 * hr rows of bins
    assert_int_equal(a.half, 1);
    assert_int_equal(a.bin_r, (1024 + 2 * hr - 1) / (2 * hr));
    assert_int_equal(a.bin_c, (1024 + hc - 1) / hc);
    int nr = (1024 + a.bin_r - 1) / a.bin_r, nc = (1024 + a.bin_c - 1) / a.bin_c;
    assert_true(nr <= 2 * hr);
    assert_true(nc <= hc);
    char want[128];
    snprintf(want, sizeof want, "max pooling: %d x %d tokens per cell", a.bin_r, a.bin_c);
    assert_true(grid_has(&g, want));
    // each cell holds two pooled rows: level the upper one's, lo the lower's,
    // the glyph the larger's; pooled here independently, one bin at a time
    for (int r = 0; r * 2 < nr; r++)
        for (int j = 0; j < nc; j++) {
            float v[2] = {0, 0};
            for (int half = 0; half < 2 && 2 * r + half < nr; half++)
                for (int q = (2 * r + half) * a.bin_r; q < (2 * r + half + 1) * a.bin_r && q < 1024; q++)
                    for (int k = j * a.bin_c; k < (j + 1) * a.bin_c && k < 1024; k++) {
                        float w = mech_tui_attn_weight(&a, 0, 0, q, k);
                        v[half] = w > v[half] ? w : v[half];
                    }
            mech_tui_cell *c = mech_tui_grid_at(&g, 1 + 3 + r, 16 + 1 + j);
            assert_int_equal(c->half, 1);
            assert_int_equal(c->level, mech_tui_level(v[0]));
            assert_int_equal(c->lo, mech_tui_level(v[1]));
            int big = mech_tui_level(v[0]) > mech_tui_level(v[1]) ? mech_tui_level(v[0]) : mech_tui_level(v[1]);
            assert_int_equal(c->ch, mech_tui_ramp[big]);
        }
    // the cursor (q 0, k 0) marks its text row and column
    assert_int_equal(mech_tui_grid_at(&g, 4, 17)->role, MECH_TUI_SEL);
    assert_int_equal(mech_tui_grid_at(&g, 4, 18)->role, MECH_TUI_CROSS);
    assert_int_equal(mech_tui_grid_at(&g, 5, 17)->role, MECH_TUI_CROSS);
    assert_int_equal(mech_tui_grid_at(&g, 4, 0)->role, MECH_TUI_SEL); // its label
    mech_tui_attn_key(&a, 'j');
    assert_int_equal(a.q, a.bin_r);
    mech_tui_attn_key(&a, MECH_TUI_KEY_END);
    assert_int_equal(a.q, 1023);
    mech_tui_attn_key(&a, 'p');
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 22);
    assert_true(grid_has(&g, "mean pooling"));
    // the cursor's line gives the exact pair's weight and the cell's pooled value
    snprintf(want, sizeof want, "weight %.4f  cell mean", mech_tui_attn_weight(&a, 0, 0, 1023, 1023));
    assert_true(grid_has(&g, want));
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// Zoom: z shows one cell per token on a 300-token pattern in 80 x 24; the
// window scrolls with the cursor on both axes and the labels follow it;
// + and - step through the powers of two between that and the fit.
static void test_tui_attn_zoom_scroll(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    int T = 300;
    attn_fill(&a, 1, 1, T);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_attn_render(&a, &g, 0, 24);
    int hr = 24 - 2 - 3, hc = 80 - 16 - 1; // 19 rows, 63 columns
    int fbr = (T + 2 * hr - 1) / (2 * hr), fbc = (T + hc - 1) / hc;
    assert_int_equal(a.fit_bin, fbr > fbc ? fbr : fbc);
    assert_int_equal(mech_tui_attn_key(&a, 'z'), MECH_TUI_REDRAW);
    for (int i = 0; i < 100; i++) mech_tui_attn_key(&a, 'j');
    for (int i = 0; i < 70; i++) mech_tui_attn_key(&a, 'l');
    assert_int_equal(a.q, 100);
    assert_int_equal(a.k, 70);
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_int_equal(a.half, 0);
    assert_int_equal(a.bin_r, 1);
    // the cursor's row is the last shown, its column the last shown
    int top_q = 100 - hr + 1, top_k = 70 - hc + 1;
    char want[160];
    snprintf(want, sizeof want, "300 tokens  one cell per token: q %d-100 k %d-70 shown", top_q, top_k);
    assert_true(grid_has(&g, want));
    char row[128];
    for (int r = 0; r < hr; r++) {
        mech_tui_grid_row_text(&g, 4 + r, row);
        char lab[32];
        snprintf(lab, sizeof lab, "%16s", a.tokens[top_q + r]);
        assert_int_equal(strncmp(row, lab, 16), 0);
        for (int j = 0; j < hc; j++) {
            float w = mech_tui_attn_weight(&a, 0, 0, top_q + r, top_k + j);
            assert_int_equal(mech_tui_grid_at(&g, 4 + r, 17 + j)->level, mech_tui_level(w));
        }
    }
    // the key axis: column j carries token top_k + j ("t8" -> 't' '8' ' ')
    for (int j = 0; j < hc; j++) {
        const char *t = a.tokens[top_k + j];
        for (int r = 0; r < 3; r++)
            assert_int_equal(mech_tui_grid_at(&g, 1 + r, 17 + j)->ch, r < (int)strlen(t) ? t[r] : ' ');
    }
    assert_int_equal(mech_tui_grid_at(&g, 4 + hr - 1, 17 + hc - 1)->role, MECH_TUI_SEL);
    // back up: the window stays until the cursor leaves it at the top
    for (int i = 0; i < hr; i++) mech_tui_attn_key(&a, 'k');
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_int_equal(a.top_r, 100 - hr);
    mech_tui_grid_row_text(&g, 4, row);
    snprintf(want, sizeof want, "%16s", a.tokens[100 - hr]);
    assert_int_equal(strncmp(row, want, 16), 0);
    // PgDn moves a page of rows
    mech_tui_attn_key(&a, MECH_TUI_KEY_PGDN);
    assert_int_equal(a.q, 100 - hr + hr);
    // the end of the pattern: the last rows and columns, none past it
    mech_tui_attn_key(&a, MECH_TUI_KEY_END);
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_int_equal(a.top_r, T - hr);
    assert_int_equal(a.top_c, T - hc);
    snprintf(want, sizeof want, "q %d-299 k %d-299 shown", T - hr, T - hc);
    assert_true(grid_has(&g, want));
    // zoom levels: + from one cell per token does nothing; - doubles until the fit
    assert_int_equal(mech_tui_attn_key(&a, '+'), MECH_TUI_NONE);
    int fit = a.fit_bin, zoom = 1;
    while (zoom * 2 < fit) {
        assert_int_equal(mech_tui_attn_key(&a, '-'), MECH_TUI_REDRAW);
        zoom *= 2;
        assert_int_equal(a.zoom, zoom);
    }
    mech_tui_attn_key(&a, '-');
    assert_int_equal(a.zoom, 0);
    assert_int_equal(mech_tui_attn_key(&a, '-'), MECH_TUI_NONE);
    mech_tui_attn_key(&a, '+');
    assert_int_equal(a.zoom, zoom);
    // a level between: square bins, pooled cells equal to the library's pooling
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_int_equal(a.bin_r, zoom);
    assert_int_equal(a.bin_c, zoom);
    snprintf(want, sizeof want, "zoom: max pooling, %d x %d tokens per cell", zoom, zoom);
    assert_true(grid_has(&g, want));
    int nb = (T + zoom - 1) / zoom;
    float *pooled = malloc((size_t)nb * nb * sizeof *pooled);
    mech_tui_attn_pool(&a, 0, 0, zoom, zoom, nb, nb, 0, pooled);
    for (int r = 0; r < hr && a.top_r + r < nb; r++)
        for (int j = 0; j < hc && a.top_c + j < nb; j++)
            assert_int_equal(mech_tui_grid_at(&g, 4 + r, 17 + j)->level,
                             mech_tui_level(pooled[(size_t)(a.top_r + r) * nb + a.top_c + j]));
    free(pooled);
    // z: back to the fit, the whole pattern
    mech_tui_attn_key(&a, 'z');
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_int_equal(a.top_r, 0);
    assert_true(grid_has(&g, "max pooling"));
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// / in the head view: typed through the app, Enter moves the cursor's query
// to the next token containing the text (case-insensitive), n to the one
// after, wrapping; the footer shows the search and its number of matches.
static void test_tui_attn_search_tokens(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.has_attn = 1, app.view = MECH_TUI_VIEW_HEAD;
    attn_fill(&app.attn, 1, 2, 12);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 100), MECH_OK);
    assert_int_equal(mech_tui_app_key(&app, '/'), MECH_TUI_REDRAW);
    assert_int_equal(app.searching, 1);
    mech_tui_app_key(&app, 'T');
    mech_tui_app_key(&app, '1');
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "search tokens: T1_"));
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    assert_int_equal(app.searching, 0);
    // the tokens containing "t1", counted here: t1, t10, t11
    int want_n = 0;
    for (int t = 0; t < 12; t++) want_n += strstr(app.attn.tokens[t], "t1") != NULL;
    assert_int_equal(mech_tui_attn_search_count(&app.attn), want_n);
    assert_int_equal(app.attn.q, 1);
    mech_tui_app_render(&app, &g);
    char want[64];
    snprintf(want, sizeof want, "/T1: %d tokens (n next", want_n);
    assert_true(grid_has(&g, want));
    assert_true(grid_has(&g, "q 1 \"t1\" -> k 0"));
    mech_tui_app_key(&app, 'n');
    assert_int_equal(app.attn.q, 10);
    mech_tui_app_key(&app, 'n');
    assert_int_equal(app.attn.q, 11);
    mech_tui_app_key(&app, 'n'); // wraps round
    assert_int_equal(app.attn.q, 1);
    // no match: the cursor stays, the footer says 0
    mech_tui_app_key(&app, '/');
    mech_tui_app_key(&app, 'x');
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    assert_int_equal(app.attn.q, 1);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "/x: 0 tokens"));
    assert_int_equal(mech_tui_app_key(&app, 'n'), MECH_TUI_NONE);
    // Esc drops the search; while typing, Esc drops it too and keys are text
    assert_int_equal(mech_tui_app_key(&app, MECH_TUI_KEY_ESC), MECH_TUI_REDRAW);
    assert_string_equal(app.attn.search, "");
    mech_tui_app_key(&app, '/');
    mech_tui_app_key(&app, 'q');
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD); // q was typed, not a quit
    mech_tui_app_key(&app, MECH_TUI_KEY_ESC);
    assert_int_equal(app.searching, 0);
    assert_string_equal(app.attn.search, "");
    // the token view: the selected token jumps
    mech_tui_app_key(&app, 't');
    assert_int_equal(app.view, MECH_TUI_VIEW_TOKENS);
    mech_tui_app_key(&app, '/');
    mech_tui_app_key(&app, '7');
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    assert_int_equal(app.attn.q, 7);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "token 7 \"t7\""));
    assert_true(grid_has(&g, "/7: 1 token (n next"));
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// f in the grid (sorted by a score) keeps the heads scoring at least the
// selected head's score; + and - move the threshold by 0.05; the count on
// screen is the number of scores >= the threshold; F shows every head.
static void test_tui_attn_grid_filter(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    attn_fill(&a, 2, 3, 8); // previous-token scores 0.1 * head index
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 40, 80), MECH_OK);
    assert_int_equal(mech_tui_attn_grid_key(&a, 'f'), MECH_TUI_NONE); // no score sort: no filter
    mech_tui_attn_grid_key(&a, 's'); // by previous-token: L1H2 .5, L1H1 .4, L1H0 .3, ...
    a.gl = 1, a.gh = 0;
    assert_int_equal(mech_tui_attn_grid_key(&a, 'f'), MECH_TUI_REDRAW);
    int order[6];
    double thr[] = {0, 0.35, 0.30, 0.25, 0.55};
    const int keys[] = {0, '+', '-', '-', 0};
    for (int step = 0; step < 4; step++) {
        if (keys[step]) mech_tui_attn_grid_key(&a, keys[step]);
        double t = step ? thr[step] : a.scores[3]; // f: the selected head's score
        assert_true(fabs(a.grid_min - t) < 1e-9);
        int want = 0;
        for (int i = 0; i < 6; i++) want += a.scores[i] >= t;
        assert_int_equal(mech_tui_attn_grid_order(&a, order), want);
        for (int i = 0; i < want; i++) assert_true(a.scores[order[i]] >= t);
        mech_tui_grid_clear(&g);
        mech_tui_attn_grid_render(&a, &g, 0, 40);
        char line[96];
        snprintf(line, sizeof line, "sorted by previous-token, %d of 6 with score >= %.2f", want, t);
        assert_true(grid_has(&g, line));
        // the heads shown are exactly those: the last kept one is there, the next one is not
        snprintf(line, sizeof line, "L%dH%d", order[want - 1] / 3, order[want - 1] % 3);
        assert_true(grid_has(&g, line));
        mech_tui_attn_grid_order(&(mech_tui_attn){.L = 2, .NH = 3, .scores = a.scores, .grid_sort = 1}, order);
        if (want < 6) {
            snprintf(line, sizeof line, "L%dH%d ", order[want] / 3, order[want] % 3);
            char *txt = grid_text(&g);
            assert_null(strstr(txt, line));
            free(txt);
        }
    }
    // moving stays among the heads shown (3: L1H2 L1H1 L1H0)
    for (int i = 0; i < 5; i++) mech_tui_attn_grid_key(&a, 'l');
    assert_int_equal(a.gl * 3 + a.gh, 3);
    // a threshold above every score: nothing shown, said so; Enter does nothing
    for (int i = 0; i < 6; i++) mech_tui_attn_grid_key(&a, '+');
    mech_tui_grid_clear(&g);
    mech_tui_attn_grid_render(&a, &g, 0, 40);
    assert_true(grid_has(&g, "0 of 6 with score >= 0.55")); // 0.25 + 6 x 0.05
    assert_true(grid_has(&g, "no head scores >= 0.55"));
    assert_int_equal(mech_tui_attn_grid_key(&a, MECH_TUI_KEY_ENTER), MECH_TUI_NONE);
    // F: every head again; the cursor is still a head
    assert_int_equal(mech_tui_attn_grid_key(&a, 'F'), MECH_TUI_REDRAW);
    assert_int_equal(mech_tui_attn_grid_order(&a, order), 6);
    assert_int_equal(mech_tui_attn_grid_key(&a, 'F'), MECH_TUI_NONE);
    // s drops the filter with the sort it was made on
    mech_tui_attn_grid_key(&a, 'f');
    mech_tui_attn_grid_key(&a, 's');
    assert_int_equal(a.grid_filter, 0);
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// Difference mode in the grid: each thumbnail cell is its head's clean -
// corrupted pattern pooled as mech_tui_attn_pool_diff, with its sign.
static void test_tui_attn_grid_difference(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    int T = 8, NH = 3, L = 2;
    attn_fill(&a, L, NH, T);
    size_t per = (size_t)T * T;
    assert_int_equal(mech_tui_attn_grid_key(&a, 'D'), MECH_TUI_NONE);
    a.cpat = mech_malloc((size_t)L * NH * per * sizeof *a.cpat);
    assert_non_null(a.cpat);
    // the corrupted head (l, h) is the clean head (l, h + 1)
    for (int i = 0; i < L * NH; i++)
        memcpy(a.cpat + i * per, a.pat + (size_t)((i / NH) * NH + (i % NH + 1) % NH) * per, per * sizeof *a.cpat);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_attn_grid_render(&a, &g, 0, 24); // the clean thumbnails are cached first
    assert_int_equal(mech_tui_attn_grid_key(&a, 'D'), MECH_TUI_REDRAW);
    mech_tui_grid_clear(&g);
    mech_tui_attn_grid_render(&a, &g, 0, 24);
    assert_true(grid_has(&g, "clean - corrupted"));
    int th = 23 / 2 > 10 ? 10 : 23 / 2, hh = th - 2, hw = 80 / 3 - 1;
    int br = (T + hh - 1) / hh, bc = (T + hw - 1) / hw, nr = (T + br - 1) / br, nc = (T + bc - 1) / bc;
    int negatives = 0;
    for (int head = 0; head < L * NH; head++) {
        int l = head / NH, h = head % NH, y = 1 + l * th + 2, x = h * (80 / 3);
        for (int i = 0; i < nr; i++)
            for (int j = 0; j < nc; j++) {
                // the difference of the cell's tokens, largest in magnitude (max pooling)
                float big = 0;
                for (int q = i * br; q < (i + 1) * br && q < T; q++)
                    for (int k = j * bc; k < (j + 1) * bc && k < T; k++) {
                        float d = mech_tui_attn_weight(&a, l, h, q, k) - mech_tui_attn_cweight(&a, l, h, q, k);
                        big = fabsf(d) > fabsf(big) ? d : big;
                    }
                mech_tui_cell *c = mech_tui_grid_at(&g, y + i, x + j);
                int lv = mech_tui_level(fabsf(big));
                assert_int_equal(c->level, lv);
                assert_int_equal(c->sign, lv ? (big < 0 ? 2 : 1) : 0);
                assert_int_equal(c->ch, big < 0 ? mech_tui_ramp_neg[lv] : mech_tui_ramp_pos[lv]);
                negatives += c->sign == 2;
            }
    }
    assert_true(negatives > 0);
    // D again: the clean thumbnails
    mech_tui_attn_grid_key(&a, 'D');
    mech_tui_grid_clear(&g);
    mech_tui_attn_grid_render(&a, &g, 0, 24);
    assert_int_equal(mech_tui_grid_at(&g, 1 + 2 + 3, 3)->sign, 0);
    assert_int_equal(mech_tui_grid_at(&g, 1 + 2 + 3, 3)->level,
                     mech_tui_level(mech_tui_attn_weight(&a, 0, 0, 3, 3)));
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// Difference mode on a fitted long prompt (two pattern rows per text row)
// and zoomed: each half of a cell carries its own pooled difference's level
// and sign, equal to mech_tui_attn_pool_diff's, and a zoomed cell the
// difference of its one token pair.
static void test_tui_attn_difference_half_and_zoom(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    int T = 64, NH = 2;
    attn_fill(&a, 1, NH, T);
    size_t per = (size_t)T * T;
    a.cpat = mech_malloc((size_t)NH * per * sizeof *a.cpat);
    assert_non_null(a.cpat);
    for (int h = 0; h < NH; h++) memcpy(a.cpat + h * per, a.pat + ((h + 1) % NH) * per, per * sizeof *a.cpat);
    a.diff = 1;
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_attn_render(&a, &g, 0, 24);
    assert_int_equal(a.half, 1);
    int nr = (T + a.bin_r - 1) / a.bin_r, nc = (T + a.bin_c - 1) / a.bin_c, signs[3] = {0};
    float *d = malloc((size_t)nr * nc * sizeof *d);
    mech_tui_attn_pool_diff(&a, 0, 0, a.bin_r, a.bin_c, nr, nc, 0, d);
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nc; j++) {
            mech_tui_cell *c = mech_tui_grid_at(&g, 4 + i / 2, 17 + j);
            float v = d[i * nc + j];
            int lv = mech_tui_level(fabsf(v)), sg = lv ? (v < 0 ? 2 : 1) : 0;
            assert_int_equal(c->half, 1);
            assert_int_equal(i % 2 ? c->lo : c->level, lv);
            assert_int_equal(i % 2 ? c->lo_sign : c->sign, sg);
            signs[sg]++;
        }
    assert_true(signs[1] > 0 && signs[2] > 0); // both signs occur
    free(d);
    // zoomed: one token pair per cell, q 40 .. at the bottom of the window
    mech_tui_attn_key(&a, 'z');
    a.q = 40, a.k = 39;
    mech_tui_grid_clear(&g);
    mech_tui_attn_render(&a, &g, 0, 24);
    int top = 40 - 19 + 1;
    assert_int_equal(a.top_r, top);
    for (int r = 0; r < 19; r++)
        for (int j = 0; j < T && j < 63; j++) {
            float v = mech_tui_attn_weight(&a, 0, 0, top + r, j) - mech_tui_attn_cweight(&a, 0, 0, top + r, j);
            mech_tui_cell *c = mech_tui_grid_at(&g, 4 + r, 17 + j);
            assert_int_equal(c->half, 0);
            assert_int_equal(c->level, mech_tui_level(fabsf(v)));
            assert_int_equal(c->ch, v < 0 ? mech_tui_ramp_neg[c->level] : mech_tui_ramp_pos[c->level]);
        }
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// Thumbnails of a long prompt use two pattern rows per text row.
static void test_tui_attn_grid_half_thumbnails(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    int T = 64;
    attn_fill(&a, 1, 2, T);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_attn_grid_render(&a, &g, 0, 24);
    int th = 10, hh = th - 2, hw = 80 / 2 - 1; // one row of two thumbnails: the tallest
    int br = (T + 2 * hh - 1) / (2 * hh), bc = (T + hw - 1) / hw, nr = (T + br - 1) / br, nc = (T + bc - 1) / bc;
    float *p = malloc((size_t)nr * nc * sizeof *p);
    mech_tui_attn_pool(&a, 0, 1, br, bc, nr, nc, 0, p);
    for (int i = 0; i < nr; i += 2)
        for (int j = 0; j < nc; j++) {
            mech_tui_cell *c = mech_tui_grid_at(&g, 1 + 2 + i / 2, 40 + j);
            assert_int_equal(c->half, 1);
            assert_int_equal(c->level, mech_tui_level(p[i * nc + j]));
            assert_int_equal(c->lo, i + 1 < nr ? mech_tui_level(p[(i + 1) * nc + j]) : 0);
        }
    free(p);
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

static void test_tui_attn_grid_scores_and_jump(void **state) {
    (void)state;
    mech_tui_attn a = {0};
    attn_fill(&a, 2, 3, 8);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_attn_grid_render(&a, &g, 0, 24);
    assert_true(grid_has(&g, "2 layers x 3 heads"));
    assert_true(grid_has(&g, ">L0H0"));
    assert_true(grid_has(&g, " L1H2"));
    // head 5 = L1H2: previous-token .50, duplicate .50, induction .87
    assert_true(grid_has(&g, "p.50 d.50 i.87"));
    assert_int_equal(a.grid_per_row, 3); // three 15-column thumbnails fit in 80
    // each thumbnail is its head's pattern pooled to the thumbnail: L1H2's
    // (the 6th, second row, third column) cells are the pooled values' glyphs
    int th = 23 / 2 > 10 ? 10 : 23 / 2, hh = th - 2, hw = 80 / 3 - 1;
    int br = (8 + hh - 1) / hh, bc = (8 + hw - 1) / hw, nr = (8 + br - 1) / br, nc = (8 + bc - 1) / bc;
    float pooled[64];
    mech_tui_attn_pool(&a, 1, 2, br, bc, nr, nc, 0, pooled);
    for (int i = 0; i < nr; i++)
        for (int j = 0; j < nc; j++) {
            mech_tui_cell *c = mech_tui_grid_at(&g, 1 + th + 2 + i, 2 * (80 / 3) + j);
            assert_int_equal(c->ch, mech_tui_ramp[mech_tui_level(pooled[i * nc + j])]);
        }
    assert_int_equal(mech_tui_attn_grid_key(&a, 'j'), MECH_TUI_REDRAW);
    assert_int_equal(mech_tui_attn_grid_key(&a, 'l'), MECH_TUI_REDRAW);
    assert_int_equal(mech_tui_attn_grid_key(&a, 'l'), MECH_TUI_REDRAW);
    assert_int_equal(mech_tui_attn_grid_key(&a, 'l'), MECH_TUI_REDRAW); // stays on the last head
    assert_int_equal(a.gl, 1);
    assert_int_equal(a.gh, 2);
    assert_int_equal(mech_tui_attn_grid_key(&a, MECH_TUI_KEY_ENTER), MECH_TUI_OPEN);
    assert_int_equal(a.layer, 1);
    assert_int_equal(a.head, 2);
    // s s s: by induction, highest first: L1H2 (.87) leads, the rest in layer order
    for (int i = 0; i < 3; i++) assert_int_equal(mech_tui_attn_grid_key(&a, 's'), MECH_TUI_REDRAW);
    mech_tui_grid_clear(&g);
    mech_tui_attn_grid_render(&a, &g, 0, 24);
    assert_true(grid_has(&g, "sorted by induction"));
    char row[128];
    mech_tui_grid_row_text(&g, 1, row);
    assert_string_equal(strtok(row, " "), ">L1H2"); // first thumbnail, and still the cursor
    assert_int_equal(mech_tui_attn_grid_key(&a, 'l'), MECH_TUI_REDRAW); // moves in display order
    assert_int_equal(a.gl, 0);
    assert_int_equal(a.gh, 0);
    // s: layer order again; s: by previous-token (0.1 * index): the last head first
    mech_tui_attn_grid_key(&a, 's');
    assert_int_equal(a.grid_sort, 0);
    mech_tui_attn_grid_key(&a, 's');
    mech_tui_grid_clear(&g);
    mech_tui_attn_grid_render(&a, &g, 0, 24);
    assert_true(grid_has(&g, "sorted by previous-token"));
    mech_tui_grid_row_text(&g, 1, row);
    assert_string_equal(strtok(row, " "), "L1H2");
    for (int i = 0; i < 3; i++) mech_tui_attn_grid_key(&a, 's');
    assert_int_equal(a.grid_sort, 0); // back to layer order
    mech_tui_grid_deinit(&g);
    mech_tui_attn_deinit(&a);
}

// --- runs -----------------------------------------------------------------

static mech_tui_run_row *rows_make(size_t n) {
    static const char *kinds[] = {"patch", "heads", "lens"};
    static const char *status[] = {"done", "running", "interrupted"};
    mech_tui_run_row *r = mech_calloc(n, sizeof *r);
    for (size_t i = 0; i < n; i++) {
        r[i].id = (int64_t)i + 1;
        snprintf(r[i].kind, sizeof r[i].kind, "%s", kinds[i % 3]);
        snprintf(r[i].status, sizeof r[i].status, "%s", status[(i / 3) % 3]);
        snprintf(r[i].model, sizeof r[i].model, "models/m%zu.safetensors", i % 2);
        // dates in the opposite order of ids
        snprintf(r[i].date, sizeof r[i].date, "2026-12-%02zu 10:00:00", 28 - i);
        snprintf(r[i].figure, sizeof r[i].figure, "%zu results", i * 10);
    }
    return r;
}

static void test_tui_runs_filter_search_sort(void **state) {
    (void)state;
    mech_tui_runs v = {0};
    assert_int_equal(mech_tui_runs_set(&v, rows_make(9), 9), MECH_OK);
    assert_int_equal(v.n_vis, 9);
    assert_int_equal(mech_tui_runs_selected(&v)->id, 1);
    // f: the kinds in sorted order, then all again
    mech_tui_runs_key(&v, 'f');
    assert_string_equal(v.kind, "heads");
    assert_int_equal(v.n_vis, 3);
    for (size_t i = 0; i < v.n_vis; i++) assert_string_equal(v.rows[v.vis[i]].kind, "heads");
    mech_tui_runs_key(&v, 'f');
    assert_string_equal(v.kind, "lens");
    mech_tui_runs_key(&v, 'f');
    assert_string_equal(v.kind, "patch");
    mech_tui_runs_key(&v, 'f');
    assert_string_equal(v.kind, "");
    assert_int_equal(v.n_vis, 9);
    // search: case-insensitive, in any column; an id matches exactly
    snprintf(v.search, sizeof v.search, "RUNNING");
    mech_tui_runs_refilter(&v);
    assert_int_equal(v.n_vis, 3);
    snprintf(v.search, sizeof v.search, "7");
    mech_tui_runs_refilter(&v);
    assert_int_equal(v.n_vis, 3); // run 7, the date 2026-12-27 of run 2, run 8's "70 results"
    assert_int_equal(mech_tui_runs_key(&v, MECH_TUI_KEY_ESC), MECH_TUI_REDRAW);
    assert_int_equal(v.n_vis, 9);
    // sort by date (s: id -> kind -> status -> date): reversed ids
    mech_tui_runs_key(&v, 's');
    mech_tui_runs_key(&v, 's');
    mech_tui_runs_key(&v, 's');
    assert_int_equal(v.sort, MECH_TUI_SORT_DATE);
    assert_int_equal(v.rows[v.vis[0]].id, 9);
    mech_tui_runs_key(&v, 'r');
    assert_int_equal(v.rows[v.vis[0]].id, 1);
    assert_int_equal(mech_tui_runs_key(&v, '/'), MECH_TUI_SEARCH);
    assert_int_equal(mech_tui_runs_key(&v, MECH_TUI_KEY_ENTER), MECH_TUI_OPEN);
    mech_tui_runs_deinit(&v);
}

// A reload (a running sweep's new rows) keeps the selected run selected.
static void test_tui_runs_reload_keeps_selection(void **state) {
    (void)state;
    mech_tui_runs v = {0};
    mech_tui_runs_set(&v, rows_make(5), 5);
    mech_tui_runs_key(&v, 'j');
    mech_tui_runs_key(&v, 'j');
    assert_int_equal(mech_tui_runs_selected(&v)->id, 3);
    v.desc = 1; // newest first: new rows arrive above the selection
    mech_tui_runs_refilter(&v);
    mech_tui_runs_set(&v, rows_make(8), 8);
    assert_int_equal(v.n_vis, 8);
    assert_int_equal(mech_tui_runs_selected(&v)->id, 3);
    assert_int_equal(v.rows[v.vis[0]].id, 8);
    mech_tui_runs_key(&v, 'G');
    assert_int_equal(mech_tui_runs_selected(&v)->id, 1);
    mech_tui_runs_key(&v, 'j'); // stays at the end
    assert_int_equal(mech_tui_runs_selected(&v)->id, 1);
    mech_tui_runs_deinit(&v);
}

static void test_tui_runs_render_rows_and_scroll(void **state) {
    (void)state;
    mech_tui_runs v = {0};
    mech_tui_runs_set(&v, rows_make(40), 40);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 12, 80), MECH_OK);
    mech_tui_runs_render(&v, &g, 0, 12);
    assert_true(grid_has(&g, "40 of 40 runs  kind: all  sort: id"));
    assert_true(grid_has(&g, "     1  patch      done        m0.safetensors 2026-12-28 10:00 0 results"));
    assert_int_equal(mech_tui_grid_at(&g, 2, 0)->role, MECH_TUI_SEL);
    assert_int_equal(v.page, 10);
    mech_tui_runs_key(&v, MECH_TUI_KEY_PGDN);
    mech_tui_runs_key(&v, MECH_TUI_KEY_PGDN);
    assert_int_equal(mech_tui_runs_selected(&v)->id, 21);
    mech_tui_grid_clear(&g);
    mech_tui_runs_render(&v, &g, 0, 12);
    assert_true(grid_has(&g, "    21  lens"));
    char row[128];
    mech_tui_grid_row_text(&g, 11, row); // the selection is on screen: the last row
    assert_non_null(strstr(row, "    21  "));
    assert_int_equal(mech_tui_grid_at(&g, 11, 0)->role, MECH_TUI_SEL);
    // no match: says how to get the rows back
    snprintf(v.search, sizeof v.search, "nothing like this");
    mech_tui_runs_refilter(&v);
    mech_tui_grid_clear(&g);
    mech_tui_runs_render(&v, &g, 0, 12);
    assert_true(grid_has(&g, "no run matches (Esc clears"));
    mech_tui_grid_deinit(&g);
    mech_tui_runs_deinit(&v);
}

// --- the app ----------------------------------------------------------------

static void test_tui_app_keys_and_help(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.has_runs = 1, app.has_attn = 1, app.view = MECH_TUI_VIEW_HEAD;
    attn_fill(&app.attn, 2, 3, 8);
    mech_tui_runs_set(&app.runs, rows_make(3), 3);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 30, 100), MECH_OK);
    // ? shows every key of the view, from the key table; any key closes it
    mech_tui_app_key(&app, '?');
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "keys: attention view"));
    const char *head_keys[] = {"h j k l arrows", "] [", "} {", "Home End", "p ", "g ", "q ", "Tab"};
    for (size_t i = 0; i < sizeof head_keys / sizeof *head_keys; i++) assert_true(grid_has(&g, head_keys[i]));
    assert_int_equal(mech_tui_app_key(&app, 'j'), MECH_TUI_REDRAW); // closes help, does not move
    assert_int_equal(app.help, 0);
    assert_int_equal(app.attn.q, 0);
    // g: grid; q: back to the head; q: to the runs; q: quit
    mech_tui_app_key(&app, 'g');
    assert_int_equal(app.view, MECH_TUI_VIEW_GRID);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "Enter open"));
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    // search typing goes to the runs' search, not to the keys
    mech_tui_app_key(&app, '/');
    mech_tui_app_key(&app, 'h');
    mech_tui_app_key(&app, 'e');
    mech_tui_app_key(&app, 'q');
    mech_tui_app_key(&app, MECH_TUI_KEY_BACKSPACE);
    assert_string_equal(app.runs.search, "he");
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "search: he_"));
    mech_tui_app_key(&app, MECH_TUI_KEY_ENTER);
    assert_int_equal(app.searching, 0);
    assert_int_equal(app.runs.n_vis, 1);
    // Tab cycles runs -> head -> grid -> tokens -> runs
    mech_tui_app_key(&app, MECH_TUI_KEY_TAB);
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    mech_tui_app_key(&app, MECH_TUI_KEY_TAB);
    assert_int_equal(app.view, MECH_TUI_VIEW_GRID);
    mech_tui_app_key(&app, MECH_TUI_KEY_TAB);
    assert_int_equal(app.view, MECH_TUI_VIEW_TOKENS);
    mech_tui_app_key(&app, MECH_TUI_KEY_TAB);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_QUIT);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// Only the runs: Tab stays, q quits; a tiny window says so instead of drawing.
static void test_tui_app_runs_only(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.has_runs = 1;
    snprintf(app.runs.message, sizeof app.runs.message, "no database at x.db\n\nfill it");
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 10, 60), MECH_OK);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, " no database at x.db"));
    assert_true(grid_has(&g, " fill it"));
    mech_tui_app_key(&app, MECH_TUI_KEY_TAB);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    assert_int_equal(mech_tui_grid_resize(&g, 2, 5), MECH_OK);
    mech_tui_app_render(&app, &g);
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_QUIT);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_grid_put_clips_and_sanitises),
        cmocka_unit_test(test_tui_token_label_escapes),
        cmocka_unit_test(test_tui_pool_max_and_mean),
        cmocka_unit_test(test_tui_level_ramp),
        cmocka_unit_test(test_tui_attn_heatmap_axes_and_cursor),
        cmocka_unit_test(test_tui_attn_difference),
        cmocka_unit_test(test_tui_attn_long_prompt_pooled),
        cmocka_unit_test(test_tui_attn_pool_causal_skip),
        cmocka_unit_test(test_tui_attn_grid_prepare_same_frame),
        cmocka_unit_test(test_tui_attn_zoom_scroll),
        cmocka_unit_test(test_tui_attn_search_tokens),
        cmocka_unit_test(test_tui_attn_grid_filter),
        cmocka_unit_test(test_tui_attn_grid_difference),
        cmocka_unit_test(test_tui_attn_grid_half_thumbnails),
        cmocka_unit_test(test_tui_attn_difference_half_and_zoom),
        cmocka_unit_test(test_tui_attn_grid_scores_and_jump),
        cmocka_unit_test(test_tui_runs_filter_search_sort),
        cmocka_unit_test(test_tui_runs_reload_keeps_selection),
        cmocka_unit_test(test_tui_runs_render_rows_and_scroll),
        cmocka_unit_test(test_tui_app_keys_and_help),
        cmocka_unit_test(test_tui_app_runs_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
