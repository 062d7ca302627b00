/*
** tests/test_tui_svg.c: the SVG and text exports of a grid (tui/svg.c,
** tui/export.c): well-formed XML (a small checker here, and xmllint when it
** is installed), the colour under every cell equal to the palette's for its
** level and sign (both halves of a half cell), escaping, size and viewBox,
** and the files export writes (fresh names, never replacing a file).
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tests/support/xml_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// The integer value of attribute name in the tag starting at tag, or -1.
static int attr_int(const char *tag, const char *end, const char *name) {
    char key[32];
    snprintf(key, sizeof key, " %s=\"", name);
    const char *p = strstr(tag, key);
    if (!p || p > end) return -1;
    return atoi(p + strlen(key));
}

// The fill of the last (topmost) filled rect covering pixel (px, py).
static void fill_at(const char *svg, int px, int py, char out[8]) {
    strcpy(out, "none");
    for (const char *p = strstr(svg, "<rect "); p; p = strstr(p + 1, "<rect ")) {
        const char *end = strchr(p, '>');
        int x = attr_int(p, end, "x"), y = attr_int(p, end, "y"), w = attr_int(p, end, "width"),
            h = attr_int(p, end, "height");
        const char *f = strstr(p, " fill=\"");
        if (!f || f > end || !strncmp(f + 7, "none", 4)) continue;
        if (px >= x && px < x + w && py >= y && py < y + h) snprintf(out, 8, "%.7s", f + 7);
    }
}

static void rgb_hex(mech_tui_rgb c, char out[8]) { snprintf(out, 8, "#%02x%02x%02x", c.r, c.g, c.b); }

// --- tests --------------------------------------------------------------------

static void test_tui_svg_heat_colours_and_size(void **state) {
    (void)state;
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 4, 12), MECH_OK);
    for (int l = 0; l < MECH_TUI_LEVELS; l++) {
        mech_tui_grid_heat(&g, 0, l, l, 0);
        mech_tui_grid_heat(&g, 1, l, l, 1 + l % 2);
        mech_tui_grid_heat2(&g, 2, l, l, 0, MECH_TUI_LEVELS - 1 - l, l % 3 == 0 ? 2 : 0);
    }
    mech_tui_grid_heat(&g, 0, 10, 4, 0); // a run of equal cells: one rect covers both
    mech_tui_grid_heat(&g, 0, 11, 4, 0);
    mech_tui_grid_put(&g, 3, 0, MECH_TUI_TEXT, "x", -1);
    mech_buf b = {0};
    assert_int_equal(mech_tui_svg(&g, &b), MECH_OK);
    xml_check(b.data);
    xmllint_check(b.data);
    int cw, ch;
    mech_tui_svg_cell_size(&cw, &ch);
    assert_true(cw > 0 && ch > cw);
    char want[64], got[8], hx[8];
    snprintf(want, sizeof want, "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\"", 12 * cw, 4 * ch, 12 * cw, 4 * ch);
    assert_non_null(strstr(b.data, want));
    for (int x = 0; x < 12; x++) {
        const mech_tui_cell *c0 = mech_tui_grid_at(&g, 0, x);
        fill_at(b.data, x * cw + cw / 2, ch / 2, got);
        rgb_hex(mech_tui_palette_heat(c0->level, 0), hx);
        assert_string_equal(got, hx);
        if (x >= MECH_TUI_LEVELS) continue;
        fill_at(b.data, x * cw + cw / 2, ch + ch / 2, got);
        rgb_hex(mech_tui_palette_heat(x, 1 + x % 2), hx);
        assert_string_equal(got, hx);
        // a half cell: the upper colour above the middle, the lower below
        fill_at(b.data, x * cw + cw / 2, 2 * ch + 2, got);
        rgb_hex(mech_tui_palette_heat(x, 0), hx);
        assert_string_equal(got, hx);
        fill_at(b.data, x * cw + cw / 2, 3 * ch - 2, got);
        rgb_hex(mech_tui_palette_heat(MECH_TUI_LEVELS - 1 - x, x % 3 == 0 ? 2 : 0), hx);
        assert_string_equal(got, hx);
    }
    // the page under text; the heat glyphs are not drawn as text (the colour says it)
    mech_tui_role_style page;
    mech_tui_palette_role(MECH_TUI_TEXT, &page);
    fill_at(b.data, 5 * cw, 3 * ch + 3, got);
    rgb_hex(page.bg, hx);
    assert_string_equal(got, hx);
    assert_non_null(strstr(b.data, ">x</text>"));
    assert_null(strstr(b.data, ">@</text>"));
    mech_buf_free(&b);
    mech_tui_grid_deinit(&g);
}

static void test_tui_svg_escapes_text_and_roles(void **state) {
    (void)state;
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 3, 30), MECH_OK);
    mech_tui_grid_put(&g, 0, 0, MECH_TUI_TITLE, "a<b & \"c\" > 'd'", -1);
    mech_tui_grid_put(&g, 1, 2, MECH_TUI_ERROR, "x&y", -1);
    // a token's text in heat cells (the token view) is drawn, in ink that reads on it
    mech_tui_grid_heat(&g, 2, 0, 9, 0);
    mech_tui_grid_heat(&g, 2, 1, 9, 0);
    mech_tui_grid_at(&g, 2, 0)->ch = 'o';
    mech_tui_grid_at(&g, 2, 1)->ch = 'k';
    mech_tui_grid_put(&g, 2, 5, MECH_TUI_FOOTER, "q quit", -1);
    mech_buf b = {0};
    assert_int_equal(mech_tui_svg(&g, &b), MECH_OK);
    xml_check(b.data);
    xmllint_check(b.data);
    int cw, ch;
    mech_tui_svg_cell_size(&cw, &ch);
    assert_non_null(strstr(b.data, ">a&lt;b</text>"));
    assert_non_null(strstr(b.data, ">&amp;</text>"));
    assert_non_null(strstr(b.data, ">&quot;c&quot;</text>"));
    assert_non_null(strstr(b.data, ">&gt;</text>"));
    assert_non_null(strstr(b.data, ">&apos;d&apos;</text>"));
    // each word at its column: "x&y" starts at column 2 of row 1
    char want[128], hx[8], got[8];
    mech_tui_role_style err, foot;
    mech_tui_palette_role(MECH_TUI_ERROR, &err);
    mech_tui_palette_role(MECH_TUI_FOOTER, &foot);
    rgb_hex(err.fg, hx);
    snprintf(want, sizeof want, "x=\"%d\" y=\"%d\" fill=\"%s\" font-weight=\"bold\"", 2 * cw, ch + 14, hx);
    assert_non_null(strstr(b.data, want));
    assert_non_null(strstr(b.data, ">x&amp;y</text>"));
    // the token text on the bright end of viridis is black
    rgb_hex(mech_tui_palette_ink(mech_tui_palette_heat(9, 0)), hx);
    assert_string_equal(hx, "#000000");
    snprintf(want, sizeof want, "x=\"0\" y=\"%d\" fill=\"%s\"", 2 * ch + 14, hx);
    assert_non_null(strstr(b.data, want));
    assert_non_null(strstr(b.data, ">ok</text>"));
    // the footer's background
    fill_at(b.data, 6 * cw, 2 * ch + 4, got);
    rgb_hex(foot.bg, hx);
    assert_string_equal(got, hx);
    mech_buf_free(&b);
    mech_tui_grid_deinit(&g);
}

static void test_tui_grid_text_as_captured(void **state) {
    (void)state;
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 3, 6), MECH_OK);
    mech_tui_grid_put(&g, 0, 0, MECH_TUI_TEXT, "ab", -1);
    mech_tui_grid_heat2(&g, 1, 1, 9, 0, 2, 0);
    mech_tui_grid_put(&g, 2, 0, MECH_TUI_FOOTER, "footer", -1); // the last cell is never drawn
    mech_buf b = {0};
    mech_tui_grid_text(&g, MECH_TUI_TEXT_SCREEN, &b);
    assert_string_equal(b.data, "ab\n @\nfoote\n");
    b.len = 0;
    mech_tui_grid_text(&g, MECH_TUI_TEXT_SCREEN | MECH_TUI_TEXT_HALF, &b);
    assert_string_equal(b.data, "ab\n \xe2\x96\x80\nfoote\n");
    b.len = 0;
    mech_tui_grid_text(&g, 0, &b); // not a screen (mech plot): every cell
    assert_string_equal(b.data, "ab\n @\nfooter\n");
    mech_buf_free(&b);
    mech_tui_grid_deinit(&g);
}

static char *slurp(const char *path) {
    size_t n = 0;
    char *s = mech_test_read(path, &n);
    char *z = realloc(s, n + 1);
    z[n] = 0;
    return z;
}

static void test_tui_export_never_overwrites(void **state) {
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s", mech_test_tmpn("export-dir"));
    mkdir(dir, 0755);
    char p1[700], p2[700], p3[700], pre[700];
    snprintf(pre, sizeof pre, "%s/mech-all-heads-2.txt", dir);
    for (int i = 1; i <= 4; i++) { // leftovers of an earlier run
        char p[700];
        snprintf(p, sizeof p, "%s/mech-all-heads-%d.txt", dir, i), unlink(p);
        snprintf(p, sizeof p, "%s/mech-all-heads-%d.svg", dir, i), unlink(p);
    }
    FILE *f = fopen(pre, "w");
    assert_non_null(f);
    fputs("keep me\n", f);
    fclose(f);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 2, 8), MECH_OK);
    mech_tui_grid_put(&g, 0, 0, MECH_TUI_TEXT, "hello", -1);
    mech_err err = {0};
    assert_int_equal(mech_tui_export(&g, dir, "all heads", 0, 0, p1, sizeof p1, &err), MECH_OK);
    assert_int_equal(mech_tui_export(&g, dir, "all heads", 0, 0, p2, sizeof p2, &err), MECH_OK);
    assert_int_equal(mech_tui_export(&g, dir, "All Heads", 1, 0, p3, sizeof p3, &err), MECH_OK);
    char want[700];
    snprintf(want, sizeof want, "%s/mech-all-heads-1.txt", dir);
    assert_string_equal(p1, want);
    snprintf(want, sizeof want, "%s/mech-all-heads-3.txt", dir); // 2 was taken
    assert_string_equal(p2, want);
    snprintf(want, sizeof want, "%s/mech-all-heads-1.svg", dir);
    assert_string_equal(p3, want);
    char *s = slurp(pre);
    assert_string_equal(s, "keep me\n");
    free(s);
    s = slurp(p1);
    assert_string_equal(s, "hello\n\n");
    free(s);
    s = slurp(p3);
    xml_check(s);
    free(s);
    // a directory that does not exist: an error naming the path, no file
    char missing[700];
    snprintf(missing, sizeof missing, "%s/no/such", dir);
    assert_int_equal(mech_tui_export(&g, missing, "runs", 0, 0, p1, sizeof p1, &err), MECH_ERR_IO);
    assert_non_null(strstr(err.msg, "no/such/mech-runs-1.txt"));
    unlink(pre);
    unlink(p2);
    snprintf(p2, sizeof p2, "%s/mech-all-heads-1.txt", dir), unlink(p2);
    unlink(p3);
    rmdir(dir);
    mech_tui_grid_deinit(&g);
}

// The checker the SVG tests rely on does reject what is not XML.
static void test_tui_xml_checker_rejects(void **state) {
    (void)state;
    assert_null(xml_problem("<?xml version=\"1.0\"?>\n<a x=\"1\"><b/>t &amp; u</a>\n"));
    assert_non_null(xml_problem("<a>1 < 2</a>"));
    assert_non_null(xml_problem("<a>fish & chips</a>"));
    assert_non_null(xml_problem("<a>1 > 2</a>"));
    assert_non_null(xml_problem("<a x=\"a<b\"/>"));
    assert_non_null(xml_problem("<a x=1/>"));
    assert_non_null(xml_problem("<a><b></a></b>"));
    assert_non_null(xml_problem("<a>"));
    assert_non_null(xml_problem("<a/><b/>"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_xml_checker_rejects),
        cmocka_unit_test(test_tui_svg_heat_colours_and_size),
        cmocka_unit_test(test_tui_svg_escapes_text_and_roles),
        cmocka_unit_test(test_tui_grid_text_as_captured),
        cmocka_unit_test(test_tui_export_never_overwrites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
