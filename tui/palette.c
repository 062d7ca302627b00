/*
** tui/palette.c: the colours of the interface and its exports, as RGB, with
** no curses: a perceptually uniform sequential ramp (viridis) for heat
** levels, a diverging blue-white-red ramp for signed cells (sign 1 red
** above zero, 2 blue below), the colours of the roles on a light page (the
** SVG), and the approximations a terminal with fewer colours gets: for
** viridis the nearest of the xterm 256-colour cube and grey ramp, for the
** diverging ramp hand-picked cube colours (the nearest ones turn brown),
** and hand-picked ANSI colours for 8-colour terminals (nearest-RGB would
** turn half the viridis ramp black there).
**
** Invariants the tests check: the sequential ramp's CIE L* rises with the
** level; the diverging ramp has one neutral grey at level 0, and at every
** level its two sides have the same L* (within 1), falling as the level
** rises, so neither sign looks stronger and red/blue stay apart for the
** common colour blindnesses.
*/
#include "tui/tui.h"

#include <math.h>
#include <string.h>

// viridis sampled at 10 points (matplotlib's, as R's viridis(10))
static const mech_tui_rgb seq_rgb[MECH_TUI_LEVELS] = {
    {68, 1, 84},    {72, 40, 120},  {62, 74, 137},  {49, 104, 142}, {38, 130, 142},
    {31, 158, 137}, {53, 183, 121}, {109, 205, 89}, {180, 222, 44}, {253, 231, 37},
};

// Interpolated in CIELAB from a neutral grey (L* 97) to a red (hue 35 deg)
// and a blue (hue 268 deg), both ending at L* 40, with L* falling linearly
// with the level and chroma as level^0.8 (so level 1 is already tinted).
static const mech_tui_rgb pos_rgb[MECH_TUI_LEVELS] = {
    {246, 246, 246}, {248, 223, 218}, {243, 201, 193}, {236, 180, 169}, {227, 159, 146},
    {217, 138, 124}, {206, 118, 103}, {194, 97, 83},   {182, 77, 63},   {168, 55, 44},
};
static const mech_tui_rgb neg_rgb[MECH_TUI_LEVELS] = {
    {246, 246, 246}, {221, 229, 241}, {198, 212, 233}, {175, 194, 223}, {152, 178, 213},
    {129, 161, 203}, {105, 145, 192}, {79, 129, 181},  {49, 114, 171},  {0, 99, 159},
};

// 8 colours (ANSI 0 black 1 red 2 green 3 yellow 4 blue 5 magenta 6 cyan 7
// white): viridis's hues in order; the diverging ramp white near zero.
static const uint8_t seq8[MECH_TUI_LEVELS] = {0, 5, 5, 4, 4, 6, 6, 2, 3, 3};
static const uint8_t pos8[MECH_TUI_LEVELS] = {7, 7, 7, 1, 1, 1, 1, 1, 1, 1};
static const uint8_t neg8[MECH_TUI_LEVELS] = {7, 7, 7, 4, 4, 4, 4, 4, 4, 4};

static int clamp_level(int l) { return l < 0 ? 0 : l >= MECH_TUI_LEVELS ? MECH_TUI_LEVELS - 1 : l; }

mech_tui_rgb mech_tui_palette_heat(int level, int sign) {
    const mech_tui_rgb *t = sign == 1 ? pos_rgb : sign == 2 ? neg_rgb : seq_rgb;
    return t[clamp_level(level)];
}

int mech_tui_palette_heat8(int level, int sign) {
    const uint8_t *t = sign == 1 ? pos8 : sign == 2 ? neg8 : seq8;
    return t[clamp_level(level)];
}

// 256 colours: viridis takes the nearest colours (their lightness still
// rises), but the cube is too coarse for the light half of the diverging
// ramp, where the nearest colours drift to orange and brown; these keep red
// (green = blue) and blue, and L* falling level by level on both sides.
static const uint8_t pos256[MECH_TUI_LEVELS] = {255, 224, 217, 181, 210, 174, 138, 167, 160, 124};
static const uint8_t neg256[MECH_TUI_LEVELS] = {255, 189, 153, 146, 110, 103, 67, 31, 25, 24};

int mech_tui_palette_heat256(int level, int sign) {
    if (sign == 1) return pos256[clamp_level(level)];
    if (sign == 2) return neg256[clamp_level(level)];
    return mech_tui_rgb_to_256(mech_tui_palette_heat(level, 0));
}

// --- Lightness and the xterm palette ------------------------------------------

static double srgb_linear(uint8_t v) {
    double c = v / 255.0;
    return c <= 0.04045 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4);
}

double mech_tui_rgb_lightness(mech_tui_rgb c) {
    double y = 0.2126 * srgb_linear(c.r) + 0.7152 * srgb_linear(c.g) + 0.0722 * srgb_linear(c.b);
    return y > 216.0 / 24389 ? 116 * cbrt(y) - 16 : y * 24389.0 / 27;
}

mech_tui_rgb mech_tui_palette_ink(mech_tui_rgb bg) {
    // the glyph on a heat cell: dark on the light end, light on the dark end
    return mech_tui_rgb_lightness(bg) > 60 ? (mech_tui_rgb){0, 0, 0} : (mech_tui_rgb){255, 255, 255};
}

mech_tui_rgb mech_tui_xterm_rgb(int i) {
    // xterm's defaults for the 16 ANSI colours (themes change them)
    static const mech_tui_rgb ansi[16] = {
        {0, 0, 0},       {205, 0, 0},   {0, 205, 0},   {205, 205, 0},   {0, 0, 238},   {205, 0, 205},
        {0, 205, 205},   {229, 229, 229}, {127, 127, 127}, {255, 0, 0}, {0, 255, 0}, {255, 255, 0},
        {92, 92, 255},   {255, 0, 255}, {0, 255, 255}, {255, 255, 255},
    };
    static const uint8_t cube[6] = {0, 95, 135, 175, 215, 255};
    if (i < 0) i = 0;
    if (i < 16) return ansi[i];
    if (i < 232) {
        i -= 16;
        return (mech_tui_rgb){cube[i / 36], cube[i / 6 % 6], cube[i % 6]};
    }
    if (i > 255) i = 255;
    uint8_t v = (uint8_t)(8 + 10 * (i - 232));
    return (mech_tui_rgb){v, v, v};
}

int mech_tui_rgb_to_256(mech_tui_rgb c) {
    // the cube and the greys only: themes redefine the 16 ANSI colours
    int best = 16;
    long best_d = -1;
    for (int i = 16; i < 256; i++) {
        mech_tui_rgb x = mech_tui_xterm_rgb(i);
        long dr = x.r - c.r, dg = x.g - c.g, db = x.b - c.b, d = dr * dr + dg * dg + db * db;
        if (best_d < 0 || d < best_d) best = i, best_d = d;
    }
    return best;
}

// --- Roles on a light page ------------------------------------------------------

void mech_tui_palette_role(int role, mech_tui_role_style *s) {
    const mech_tui_rgb ink = {31, 31, 31}, page = {255, 255, 255};
    memset(s, 0, sizeof *s);
    s->fg = ink;
    s->bg = page;
    switch (role) {
    case MECH_TUI_TITLE: s->fg = (mech_tui_rgb){0, 109, 119}, s->bold = 1; break;
    case MECH_TUI_HEADER: s->bold = 1; break;
    case MECH_TUI_SEL: s->fg = page, s->bg = ink, s->has_bg = 1, s->bold = 1; break; // reverse video
    case MECH_TUI_CROSS: s->underline = 1; break;
    case MECH_TUI_DIM: s->fg = (mech_tui_rgb){120, 120, 120}; break;
    case MECH_TUI_FOOTER: s->bg = (mech_tui_rgb){217, 217, 217}, s->has_bg = 1; break;
    case MECH_TUI_ERROR: s->fg = (mech_tui_rgb){176, 0, 32}, s->bold = 1; break;
    default: break;
    }
}

// --- How a cell looks in a colour mode -------------------------------------------

static int rgb_number(mech_tui_rgb c) { return (c.r << 16) | (c.g << 8) | c.b; }

static int heat_color(int mode, int level, int sign) {
    if (mode == MECH_TUI_COLORS_24BIT) return rgb_number(mech_tui_palette_heat(level, sign));
    if (mode == MECH_TUI_COLORS_256) return mech_tui_palette_heat256(level, sign);
    return mech_tui_palette_heat8(level, sign);
}

// Black or white text on a heat colour, judged on the colour the mode shows.
static int ink_color(int mode, int level, int sign) {
    mech_tui_rgb bg = mode == MECH_TUI_COLORS_24BIT ? mech_tui_palette_heat(level, sign)
                      : mode == MECH_TUI_COLORS_256 ? mech_tui_xterm_rgb(mech_tui_palette_heat256(level, sign))
                                                    : mech_tui_xterm_rgb(mech_tui_palette_heat8(level, sign));
    int dark = mech_tui_palette_ink(bg).r == 0;
    if (mode == MECH_TUI_COLORS_24BIT) return dark ? 0x000000 : 0xffffff;
    if (mode == MECH_TUI_COLORS_256) return dark ? 16 : 231;
    return dark ? 0 : 7;
}

void mech_tui_cell_look(const mech_tui_cell *c, int mode, int half_blocks, mech_tui_look *out) {
    memset(out, 0, sizeof *out);
    out->ch = (unsigned char)c->ch;
    out->fg = out->bg = -1;
    int color = mode != MECH_TUI_COLORS_NONE;
    if (c->heat) {
        out->reverse = out->bold = c->role == MECH_TUI_SEL;
        out->underline = c->role == MECH_TUI_CROSS;
        if (!color) return;
        if (c->half && half_blocks) {
            out->ch = 0x2580; // upper half block: the foreground above, the background below
            out->fg = heat_color(mode, c->level, c->sign);
            out->bg = heat_color(mode, c->lo, c->lo_sign);
            return;
        }
        // one colour per cell: the stronger row's, as its glyph (ch) is
        int lv = c->level, sg = c->sign;
        if (c->half && c->lo > c->level) lv = c->lo, sg = c->lo_sign;
        out->fg = ink_color(mode, lv, sg);
        out->bg = heat_color(mode, lv, sg);
        return;
    }
    switch (c->role) {
    case MECH_TUI_TITLE: out->bold = 1, out->fg = !color ? -1 : mode == MECH_TUI_COLORS_24BIT ? 0x00afaf : 6; break;
    case MECH_TUI_HEADER: out->bold = 1; break;
    case MECH_TUI_SEL: out->reverse = 1; break;
    case MECH_TUI_CROSS: out->underline = 1; break;
    case MECH_TUI_DIM: out->dim = 1; break;
    case MECH_TUI_FOOTER: out->reverse = 1; break;
    case MECH_TUI_ERROR: out->bold = 1, out->fg = !color ? -1 : mode == MECH_TUI_COLORS_24BIT ? 0xd70000 : 1; break;
    default: break;
    }
}

// --- Colour modes -------------------------------------------------------------

int mech_tui_colors_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "24bit") || !strcmp(s, "truecolor")) return MECH_TUI_COLORS_24BIT;
    if (!strcmp(s, "256")) return MECH_TUI_COLORS_256;
    if (!strcmp(s, "8")) return MECH_TUI_COLORS_8;
    if (!strcmp(s, "none")) return MECH_TUI_COLORS_NONE;
    return -1;
}

int mech_tui_colors_choose(const char *force, const char *no_color, const char *colorterm, int has_rgb,
                           int ncolors) {
    int f = mech_tui_colors_parse(force);
    if (f >= 0) return f;
    if (no_color && *no_color) return MECH_TUI_COLORS_NONE;
    if (ncolors < 8) return MECH_TUI_COLORS_NONE;
    if (has_rgb || (colorterm && (!strcmp(colorterm, "truecolor") || !strcmp(colorterm, "24bit"))))
        return MECH_TUI_COLORS_24BIT;
    return ncolors >= 256 ? MECH_TUI_COLORS_256 : MECH_TUI_COLORS_8;
}
