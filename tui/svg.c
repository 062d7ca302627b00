/*
** tui/svg.c: a cell grid as an SVG picture, pure (grid in, text out): what a
** view shows, for papers and headless servers (`X` in `mech tui`, `mech
** plot`). Every cell is CELL_W x CELL_H pixels, so the picture is
** proportional to the grid, with a viewBox so it scales. Heat cells are
** rects in the palette's colours (a half cell two half-height rects); their
** glyph is left out where it only repeats the colour (the ramp's glyph for
** the level), and drawn in black or white where it is text (the token
** view's tokens). Text is monospace, one <text> per word placed at its
** column, so spacing never depends on the font. Runs of equal fills on a
** row become one rect: a real 120 x 40 heatmap is some 20 KB (the worst
** case, no two neighbours alike, 292 KB).
**
** Roles use the light-page colours of mech_tui_palette_role.
*/
#include "tui/tui.h"

#include <string.h>

enum { CELL_W = 9, CELL_H = 18, FONT_PX = 15, BASELINE = 14 };

static void hex(mech_buf *b, mech_tui_rgb c) { mech_buf_printf(b, "#%02x%02x%02x", c.r, c.g, c.b); }

static int rgb_eq(mech_tui_rgb a, mech_tui_rgb b) { return a.r == b.r && a.g == b.g && a.b == b.b; }

static void escape(mech_buf *b, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) switch (s[i]) {
        case '&': mech_buf_puts(b, "&amp;"); break;
        case '<': mech_buf_puts(b, "&lt;"); break;
        case '>': mech_buf_puts(b, "&gt;"); break;
        case '"': mech_buf_puts(b, "&quot;"); break;
        case '\'': mech_buf_puts(b, "&apos;"); break;
        default: mech_buf_append(b, &s[i], 1);
        }
}

// The fills of a cell's upper and lower half; 0 when it has none (the page).
static int cell_fill(const mech_tui_cell *c, mech_tui_rgb *up, mech_tui_rgb *lo) {
    if (c->heat) {
        *up = mech_tui_palette_heat(c->level, c->sign);
        *lo = c->half ? mech_tui_palette_heat(c->lo, c->lo_sign) : *up;
        return 1;
    }
    mech_tui_role_style s;
    mech_tui_palette_role(c->role, &s);
    *up = *lo = s.bg;
    return s.has_bg;
}

// A heat cell's glyph is only the colour again, unless it is text.
static int glyph_is_text(const mech_tui_cell *c) {
    if (!c->heat) return c->ch != ' ';
    if (c->half) return 0;
    const char *r = c->sign == 1 ? mech_tui_ramp_pos : c->sign == 2 ? mech_tui_ramp_neg : mech_tui_ramp;
    return c->ch != ' ' && c->ch != r[c->level < MECH_TUI_LEVELS ? c->level : MECH_TUI_LEVELS - 1];
}

typedef struct text_style {
    mech_tui_rgb fg;
    int bold, underline;
} text_style;

static text_style cell_text_style(const mech_tui_cell *c) {
    mech_tui_role_style s;
    mech_tui_palette_role(c->role, &s);
    text_style t = {s.fg, s.bold, s.underline};
    if (c->heat) t.fg = mech_tui_palette_ink(mech_tui_palette_heat(c->level, c->sign));
    return t;
}

static int style_eq(text_style a, text_style b) {
    return rgb_eq(a.fg, b.fg) && a.bold == b.bold && a.underline == b.underline;
}

static void rect(mech_buf *b, int x, int y, int w, int h, mech_tui_rgb fill) {
    mech_buf_printf(b, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"", x, y, w, h);
    hex(b, fill);
    mech_buf_puts(b, "\"/>\n");
}

static void render_fills(const mech_tui_grid *g, int y, mech_buf *b) {
    const mech_tui_cell *row = g->cells + (size_t)y * g->w;
    for (int x = 0; x < g->w;) {
        mech_tui_rgb up, lo, up2, lo2;
        if (!cell_fill(&row[x], &up, &lo)) {
            x++;
            continue;
        }
        int n = 1;
        while (x + n < g->w && cell_fill(&row[x + n], &up2, &lo2) && rgb_eq(up, up2) && rgb_eq(lo, lo2)) n++;
        if (rgb_eq(up, lo)) rect(b, x * CELL_W, y * CELL_H, n * CELL_W, CELL_H, up);
        else {
            rect(b, x * CELL_W, y * CELL_H, n * CELL_W, CELL_H / 2, up);
            rect(b, x * CELL_W, y * CELL_H + CELL_H / 2, n * CELL_W, CELL_H - CELL_H / 2, lo);
        }
        x += n;
    }
}

// The cursor and crosshair over a heatmap: a frame and an underline, as the
// terminal's reverse video and underline would hide the colour.
static void render_marks(const mech_tui_grid *g, int y, mech_buf *b) {
    const mech_tui_cell *row = g->cells + (size_t)y * g->w;
    for (int x = 0; x < g->w; x++) {
        const mech_tui_cell *c = &row[x];
        if (!c->heat) continue;
        if (c->role == MECH_TUI_SEL)
            mech_buf_printf(b,
                            "<rect x=\"%d.5\" y=\"%d.5\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#000000\" "
                            "stroke-width=\"1\"/>\n",
                            x * CELL_W, y * CELL_H, CELL_W - 1, CELL_H - 1);
        else if (c->role == MECH_TUI_CROSS) {
            mech_tui_rgb ink = mech_tui_palette_ink(mech_tui_palette_heat(c->level, c->sign));
            rect(b, x * CELL_W, y * CELL_H + CELL_H - 2, CELL_W, 1, ink);
        }
    }
}

static void render_text(const mech_tui_grid *g, int y, mech_buf *b) {
    const mech_tui_cell *row = g->cells + (size_t)y * g->w;
    char word[4096];
    for (int x = 0; x < g->w;) {
        if (!glyph_is_text(&row[x])) {
            x++;
            continue;
        }
        text_style st = cell_text_style(&row[x]);
        int n = 0;
        while (x + n < g->w && n < (int)sizeof word && glyph_is_text(&row[x + n]) &&
               style_eq(st, cell_text_style(&row[x + n])))
            word[n] = row[x + n].ch, n++;
        mech_buf_printf(b, "<text x=\"%d\" y=\"%d\" fill=\"", x * CELL_W, y * CELL_H + BASELINE);
        hex(b, st.fg);
        mech_buf_puts(b, "\"");
        if (st.bold) mech_buf_puts(b, " font-weight=\"bold\"");
        if (st.underline) mech_buf_puts(b, " text-decoration=\"underline\"");
        // pins the word to its columns whatever the font's advance
        if (n > 1) mech_buf_printf(b, " textLength=\"%d\" lengthAdjust=\"spacingAndGlyphs\"", n * CELL_W);
        mech_buf_puts(b, ">");
        escape(b, word, (size_t)n);
        mech_buf_puts(b, "</text>\n");
        x += n;
    }
}

mech_status mech_tui_svg(const mech_tui_grid *g, mech_buf *out) {
    int W = g->w * CELL_W, H = g->h * CELL_H;
    mech_buf_printf(out,
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
                    "font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"%d\">\n",
                    W, H, W, H, FONT_PX);
    mech_tui_role_style page;
    mech_tui_palette_role(MECH_TUI_TEXT, &page);
    rect(out, 0, 0, W, H, page.bg);
    for (int y = 0; y < g->h; y++) render_fills(g, y, out);
    for (int y = 0; y < g->h; y++) render_marks(g, y, out);
    mech_buf_puts(out, "<g>\n");
    for (int y = 0; y < g->h; y++) render_text(g, y, out);
    mech_buf_puts(out, "</g>\n</svg>\n");
    return out->oom ? MECH_ERR_NOMEM : MECH_OK;
}

void mech_tui_svg_cell_size(int *w, int *h) {
    if (w) *w = CELL_W;
    if (h) *h = CELL_H;
}
