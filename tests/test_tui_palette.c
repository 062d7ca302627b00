/*
** tests/test_tui_palette.c: heat cells on the grid (mech_tui_grid_heat,
** mech_tui_grid_heat2), the palettes of tui/palette.c (lightness order,
** symmetry, the 256- and 8-colour approximations), the choice of colour mode
** and how a cell looks in each mode (half blocks, ink, attributes).
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

// --- heat cells -------------------------------------------------------------

static void test_tui_grid_heat_cells(void **state) {
    (void)state;
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 2, 4), MECH_OK);
    mech_tui_grid_heat(&g, 0, 0, 7, 0);
    mech_tui_grid_heat(&g, 0, 1, 12, 1);  // clamped to the top level
    mech_tui_grid_heat(&g, 0, 2, 3, 2);
    mech_tui_grid_heat(&g, 5, 0, 3, 2);   // outside: nothing
    const mech_tui_cell *c = mech_tui_grid_at(&g, 0, 0);
    assert_int_equal(c->ch, mech_tui_ramp[7]);
    assert_int_equal(c->level, 7);
    assert_int_equal(c->heat, 1);
    assert_int_equal(c->role, MECH_TUI_HEAT);
    assert_int_equal(c->half, 0);
    c = mech_tui_grid_at(&g, 0, 1);
    assert_int_equal(c->level, MECH_TUI_LEVELS - 1);
    assert_int_equal(c->ch, '#');
    assert_int_equal(c->sign, 1);
    c = mech_tui_grid_at(&g, 0, 2);
    assert_int_equal(c->ch, '-');
    assert_int_equal(c->sign, 2);

    // two rows in one: level/sign the upper's, lo/lo_sign the lower's,
    // the glyph the stronger's
    mech_tui_grid_heat2(&g, 1, 0, 2, 0, 8, 0);
    c = mech_tui_grid_at(&g, 1, 0);
    assert_int_equal(c->half, 1);
    assert_int_equal(c->level, 2);
    assert_int_equal(c->lo, 8);
    assert_int_equal(c->ch, mech_tui_ramp[8]);
    mech_tui_grid_heat2(&g, 1, 1, 9, 1, 4, 2);
    c = mech_tui_grid_at(&g, 1, 1);
    assert_int_equal(c->ch, '#');
    assert_int_equal(c->sign, 1);
    assert_int_equal(c->lo_sign, 2);
    assert_int_equal(c->lo, 4);
    mech_tui_grid_heat2(&g, 1, 2, 1, 1, 6, 2); // the lower is stronger: its sign's glyph
    assert_int_equal(mech_tui_grid_at(&g, 1, 2)->ch, '=');
    mech_tui_grid_heat2(&g, 1, 3, 5, 0, 5, 0); // a tie: the upper's
    assert_int_equal(mech_tui_grid_at(&g, 1, 3)->ch, mech_tui_ramp[5]);
    mech_tui_grid_deinit(&g);
}


// --- palettes ---------------------------------------------------------------

// CIE L* computed here, independently of the palette's own function.
static double lstar(mech_tui_rgb c) {
    double v[3] = {c.r / 255.0, c.g / 255.0, c.b / 255.0};
    for (int i = 0; i < 3; i++) v[i] = v[i] <= 0.04045 ? v[i] / 12.92 : pow((v[i] + 0.055) / 1.055, 2.4);
    double y = 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2];
    return y > 0.008856 ? 116 * cbrt(y) - 16 : 903.3 * y;
}

// xterm's 256 colours as the test knows them
static mech_tui_rgb xterm(int i) {
    static const int cube[6] = {0, 95, 135, 175, 215, 255};
    if (i >= 232) return (mech_tui_rgb){(uint8_t)(8 + 10 * (i - 232)), (uint8_t)(8 + 10 * (i - 232)), (uint8_t)(8 + 10 * (i - 232))};
    i -= 16;
    return (mech_tui_rgb){(uint8_t)cube[i / 36], (uint8_t)cube[(i / 6) % 6], (uint8_t)cube[i % 6]};
}

static long dist2(mech_tui_rgb a, mech_tui_rgb b) {
    long dr = a.r - b.r, dg = a.g - b.g, db = a.b - b.b;
    return dr * dr + dg * dg + db * db;
}

static void test_tui_palette_sequential_lightness_rises(void **state) {
    (void)state;
    double prev = -1;
    for (int l = 0; l < MECH_TUI_LEVELS; l++) {
        double L = lstar(mech_tui_palette_heat(l, 0));
        if (L <= prev + 4) fail_msg("level %d: L* %.1f, not above level %d's %.1f by a visible step", l, L, l - 1, prev);
        assert_true(fabs(mech_tui_rgb_lightness(mech_tui_palette_heat(l, 0)) - L) < 0.5);
        prev = L;
    }
    // dark to light over most of the range (viridis: L* 15 .. 91)
    assert_true(lstar(mech_tui_palette_heat(0, 0)) < 20);
    assert_true(lstar(mech_tui_palette_heat(MECH_TUI_LEVELS - 1, 0)) > 85);
    // out-of-range levels clamp
    mech_tui_rgb top = mech_tui_palette_heat(MECH_TUI_LEVELS - 1, 0), over = mech_tui_palette_heat(99, 0);
    assert_true(top.r == over.r && top.g == over.g && top.b == over.b);
}

static void test_tui_palette_diverging_symmetric(void **state) {
    (void)state;
    mech_tui_rgb p0 = mech_tui_palette_heat(0, 1), n0 = mech_tui_palette_heat(0, 2);
    // one neutral centre: the same grey on both sides
    assert_true(p0.r == n0.r && p0.g == n0.g && p0.b == n0.b);
    assert_true(p0.r == p0.g && p0.g == p0.b);
    double prev = 101;
    for (int l = 0; l < MECH_TUI_LEVELS; l++) {
        mech_tui_rgb p = mech_tui_palette_heat(l, 1), n = mech_tui_palette_heat(l, 2);
        double lp = lstar(p), ln = lstar(n);
        if (fabs(lp - ln) > 1.0) fail_msg("level %d: L* %.1f (positive) vs %.1f (negative)", l, lp, ln);
        assert_true(lp < prev);
        prev = lp;
        if (l > 0) {
            assert_true(p.r > p.b); // red above zero
            assert_true(n.b > n.r); // blue below
        }
    }
    assert_true(prev < 45); // the strongest are dark enough to stand out on the grey
}

static void test_tui_palette_approximations(void **state) {
    (void)state;
    // 256 colours, viridis: the nearest of the cube and greys, found here by brute force
    for (int sign = 0; sign < 1; sign++)
        for (int l = 0; l < MECH_TUI_LEVELS; l++) {
            mech_tui_rgb c = mech_tui_palette_heat(l, sign);
            int got = mech_tui_palette_heat256(l, sign);
            assert_true(got >= 16 && got <= 255);
            long best = -1;
            for (int i = 16; i < 256; i++)
                if (best < 0 || dist2(xterm(i), c) < best) best = dist2(xterm(i), c);
            assert_int_equal(dist2(xterm(got), c), best);
            mech_tui_rgb x = mech_tui_xterm_rgb(got);
            assert_true(x.r == xterm(got).r && x.g == xterm(got).g && x.b == xterm(got).b);
        }
    // ... and the sequential ramp keeps its order of lightness
    double prev = -1;
    for (int l = 0; l < MECH_TUI_LEVELS; l++) {
        double L = lstar(xterm(mech_tui_palette_heat256(l, 0)));
        assert_true(L >= prev);
        prev = L;
    }
    // the diverging ramp: one grey at zero, then reds (green = blue) and
    // blues whose lightness falls level by level and stays close across signs
    assert_int_equal(mech_tui_palette_heat256(0, 1), mech_tui_palette_heat256(0, 2));
    double lp_prev = 101, ln_prev = 101;
    for (int l = 0; l < MECH_TUI_LEVELS; l++) {
        int ip = mech_tui_palette_heat256(l, 1), in = mech_tui_palette_heat256(l, 2);
        assert_true(ip >= 16 && ip <= 255 && in >= 16 && in <= 255);
        mech_tui_rgb p = xterm(ip), n = xterm(in);
        double lp = lstar(p), ln = lstar(n);
        if (lp >= lp_prev || ln >= ln_prev) fail_msg("level %d: 256-colour L* %.1f / %.1f does not fall", l, lp, ln);
        if (fabs(lp - ln) > 8) fail_msg("level %d: 256-colour L* %.1f (positive) vs %.1f (negative)", l, lp, ln);
        // within reach of the true colour's lightness
        assert_true(fabs(lp - lstar(mech_tui_palette_heat(l, 1))) < 12);
        assert_true(fabs(ln - lstar(mech_tui_palette_heat(l, 2))) < 12);
        if (l > 0) {
            assert_true(p.r > p.g && p.g == p.b);
            assert_true(n.b > n.r && n.b > n.g);
        }
        lp_prev = lp, ln_prev = ln;
    }
    // 8 colours: black to yellow in viridis's hue order; the diverging ramp
    // white at zero, then red above and blue below
    assert_int_equal(mech_tui_palette_heat8(0, 0), 0);
    assert_int_equal(mech_tui_palette_heat8(MECH_TUI_LEVELS - 1, 0), 3);
    assert_int_equal(mech_tui_palette_heat8(0, 1), 7);
    assert_int_equal(mech_tui_palette_heat8(0, 2), 7);
    for (int l = 0; l < MECH_TUI_LEVELS; l++)
        for (int sign = 0; sign < 3; sign++) assert_in_range(mech_tui_palette_heat8(l, sign), 0, 7);
    assert_int_equal(mech_tui_palette_heat8(MECH_TUI_LEVELS - 1, 1), 1);
    assert_int_equal(mech_tui_palette_heat8(MECH_TUI_LEVELS - 1, 2), 4);
    // ink: dark on the light end, light on the dark end
    assert_int_equal(mech_tui_palette_ink(mech_tui_palette_heat(MECH_TUI_LEVELS - 1, 0)).r, 0);
    assert_int_equal(mech_tui_palette_ink(mech_tui_palette_heat(0, 0)).r, 255);
    assert_int_equal(mech_tui_palette_ink(mech_tui_palette_heat(0, 1)).r, 0);
}

static void test_tui_palette_roles_distinct(void **state) {
    (void)state;
    mech_tui_role_style text, title, sel, err, foot;
    mech_tui_palette_role(MECH_TUI_TEXT, &text);
    mech_tui_palette_role(MECH_TUI_TITLE, &title);
    mech_tui_palette_role(MECH_TUI_SEL, &sel);
    mech_tui_palette_role(MECH_TUI_ERROR, &err);
    mech_tui_palette_role(MECH_TUI_FOOTER, &foot);
    assert_true(lstar(text.fg) < 30 && !text.has_bg);   // dark text on the light page
    assert_true(dist2(title.fg, text.fg) > 1000);
    assert_true(err.fg.r > 2 * err.fg.g && err.bold);
    assert_true(sel.has_bg && lstar(sel.bg) < 30 && lstar(sel.fg) > 90); // reverse video
    assert_true(foot.has_bg);
}

static void test_tui_colors_choose(void **state) {
    (void)state;
    assert_int_equal(mech_tui_colors_choose(NULL, NULL, "truecolor", 0, 256), MECH_TUI_COLORS_24BIT);
    assert_int_equal(mech_tui_colors_choose(NULL, NULL, "24bit", 0, 8), MECH_TUI_COLORS_24BIT);
    assert_int_equal(mech_tui_colors_choose(NULL, NULL, NULL, 1, 256), MECH_TUI_COLORS_24BIT); // terminfo RGB
    assert_int_equal(mech_tui_colors_choose(NULL, NULL, "yes", 0, 256), MECH_TUI_COLORS_256);
    assert_int_equal(mech_tui_colors_choose(NULL, NULL, NULL, 0, 8), MECH_TUI_COLORS_8);
    assert_int_equal(mech_tui_colors_choose(NULL, NULL, "truecolor", 0, -1), MECH_TUI_COLORS_NONE); // monochrome
    assert_int_equal(mech_tui_colors_choose(NULL, "1", "truecolor", 1, 256), MECH_TUI_COLORS_NONE);
    assert_int_equal(mech_tui_colors_choose(NULL, "", NULL, 0, 256), MECH_TUI_COLORS_256); // empty NO_COLOR: unset
    // the forcing variable wins over everything, and only a known value counts
    assert_int_equal(mech_tui_colors_choose("256", "1", "truecolor", 0, 8), MECH_TUI_COLORS_256);
    assert_int_equal(mech_tui_colors_choose("none", NULL, "truecolor", 1, 256), MECH_TUI_COLORS_NONE);
    assert_int_equal(mech_tui_colors_choose("truecolor", NULL, NULL, 0, 8), MECH_TUI_COLORS_24BIT);
    assert_int_equal(mech_tui_colors_choose("lots", NULL, NULL, 0, 8), MECH_TUI_COLORS_8);
    assert_int_equal(mech_tui_colors_parse("8"), MECH_TUI_COLORS_8);
    assert_int_equal(mech_tui_colors_parse("16"), -1);
}

static int rgbnum(mech_tui_rgb c) { return (c.r << 16) | (c.g << 8) | c.b; }

static void test_tui_cell_look_modes(void **state) {
    (void)state;
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 1, 4), MECH_OK);
    mech_tui_grid_heat2(&g, 0, 0, 2, 0, 7, 1); // upper weak (sequential), lower strong (positive)
    mech_tui_grid_heat(&g, 0, 1, 9, 2);
    mech_tui_grid_at(&g, 0, 1)->role = MECH_TUI_SEL;
    mech_tui_grid_put(&g, 0, 2, MECH_TUI_TITLE, "T", 1);
    const mech_tui_cell *half = mech_tui_grid_at(&g, 0, 0), *sel = mech_tui_grid_at(&g, 0, 1),
                        *title = mech_tui_grid_at(&g, 0, 2);
    mech_tui_look k;
    // half blocks: U+2580, upper colour in front, lower behind, in each mode's numbers
    mech_tui_cell_look(half, MECH_TUI_COLORS_24BIT, 1, &k);
    assert_int_equal(k.ch, 0x2580);
    assert_int_equal(k.fg, rgbnum(mech_tui_palette_heat(2, 0)));
    assert_int_equal(k.bg, rgbnum(mech_tui_palette_heat(7, 1)));
    mech_tui_cell_look(half, MECH_TUI_COLORS_256, 1, &k);
    assert_int_equal(k.fg, mech_tui_palette_heat256(2, 0));
    assert_int_equal(k.bg, mech_tui_palette_heat256(7, 1));
    mech_tui_cell_look(half, MECH_TUI_COLORS_8, 1, &k);
    assert_int_equal(k.fg, mech_tui_palette_heat8(2, 0));
    assert_int_equal(k.bg, mech_tui_palette_heat8(7, 1));
    // no UTF-8: the glyph of the stronger row on its colour, with ink that reads on it
    mech_tui_cell_look(half, MECH_TUI_COLORS_24BIT, 0, &k);
    assert_int_equal(k.ch, (unsigned char)half->ch);
    assert_int_equal(k.ch, '#');
    assert_int_equal(k.bg, rgbnum(mech_tui_palette_heat(7, 1)));
    assert_int_equal(k.fg, rgbnum(mech_tui_palette_ink(mech_tui_palette_heat(7, 1))));
    // no colour: glyphs and attributes only, never the block
    mech_tui_cell_look(half, MECH_TUI_COLORS_NONE, 1, &k);
    assert_int_equal(k.ch, '#');
    assert_int_equal(k.fg, -1);
    assert_int_equal(k.bg, -1);
    mech_tui_cell_look(sel, MECH_TUI_COLORS_NONE, 0, &k);
    assert_true(k.reverse && k.bold);
    assert_int_equal(k.ch, '=');
    mech_tui_cell_look(sel, MECH_TUI_COLORS_256, 0, &k);
    assert_int_equal(k.bg, mech_tui_palette_heat256(9, 2));
    assert_true(k.reverse);
    // the title: cyan, as ANSI 6 or as RGB in 24-bit mode, bold in every mode
    mech_tui_cell_look(title, MECH_TUI_COLORS_8, 0, &k);
    assert_int_equal(k.fg, 6);
    assert_true(k.bold);
    mech_tui_cell_look(title, MECH_TUI_COLORS_24BIT, 0, &k);
    assert_true(k.fg > 255 && (k.fg & 0xff) == ((k.fg >> 8) & 0xff) && (k.fg >> 16) == 0);
    mech_tui_cell_look(title, MECH_TUI_COLORS_NONE, 0, &k);
    assert_int_equal(k.fg, -1);
    assert_true(k.bold);
    mech_tui_grid_deinit(&g);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_grid_heat_cells),
        cmocka_unit_test(test_tui_palette_sequential_lightness_rises),
        cmocka_unit_test(test_tui_palette_diverging_symmetric),
        cmocka_unit_test(test_tui_palette_approximations),
        cmocka_unit_test(test_tui_palette_roles_distinct),
        cmocka_unit_test(test_tui_colors_choose),
        cmocka_unit_test(test_tui_cell_look_modes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
