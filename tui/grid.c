/*
** tui/grid.c: the plain cell grid every view renders into, and the helpers
** that put text on it. No curses here: tests read the grid back as text.
*/
#include "tui/tui.h"

#include <string.h>

const char mech_tui_ramp[MECH_TUI_LEVELS + 1] = " .:-=+*#%@";
const char mech_tui_ramp_pos[MECH_TUI_LEVELS + 1] = " +++++####";
const char mech_tui_ramp_neg[MECH_TUI_LEVELS + 1] = " -----====";

mech_status mech_tui_grid_resize(mech_tui_grid *g, int h, int w) {
    if (h < 0) h = 0;
    if (w < 0) w = 0;
    if (h != g->h || w != g->w) {
        mech_tui_cell *c = mech_realloc(g->cells, (size_t)(h * w > 0 ? h * w : 1) * sizeof *c);
        if (!c) return MECH_ERR_NOMEM;
        g->cells = c, g->h = h, g->w = w;
    }
    mech_tui_grid_clear(g);
    return MECH_OK;
}

void mech_tui_grid_deinit(mech_tui_grid *g) {
    mech_free(g->cells);
    memset(g, 0, sizeof *g);
}

void mech_tui_grid_clear(mech_tui_grid *g) {
    for (int i = 0; i < g->h * g->w; i++) g->cells[i] = (mech_tui_cell){.ch = ' '};
}

mech_tui_cell *mech_tui_grid_at(mech_tui_grid *g, int y, int x) {
    if (y < 0 || x < 0 || y >= g->h || x >= g->w) return NULL;
    return &g->cells[y * g->w + x];
}

int mech_tui_grid_put(mech_tui_grid *g, int y, int x, mech_tui_role role, const char *s, int maxw) {
    if (y < 0 || y >= g->h || x >= g->w) return 0;
    int lim = g->w - x;
    if (maxw >= 0 && maxw < lim) lim = maxw;
    int n = 0;
    for (; s[n] && n < lim; n++) {
        if (x + n < 0) continue;
        unsigned char c = (unsigned char)s[n];
        g->cells[y * g->w + x + n] = (mech_tui_cell){.ch = c >= 32 && c < 127 ? (char)c : '?', .role = (uint8_t)role};
    }
    return n;
}

void mech_tui_grid_role(mech_tui_grid *g, int y, int x, int n, mech_tui_role role) {
    for (int i = 0; i < n; i++) {
        mech_tui_cell *c = mech_tui_grid_at(g, y, x + i);
        if (c) c->role = (uint8_t)role;
    }
}

void mech_tui_grid_row_text(const mech_tui_grid *g, int y, char *buf) {
    int n = 0;
    if (y >= 0 && y < g->h)
        for (; n < g->w; n++) buf[n] = g->cells[y * g->w + n].ch;
    buf[n] = 0;
}

void mech_tui_token_label(const char *tok, char *out, size_t cap) {
    size_t o = 0;
    if (!cap) return;
    for (const unsigned char *p = (const unsigned char *)tok; *p && o + 1 < cap; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            if (o + 2 >= cap) break;
            out[o++] = '\\';
            out[o++] = *p == '\n' ? 'n' : *p == '\t' ? 't' : 'r';
        } else if (*p >= 0x80) {
            // one '?' per UTF-8 character, not per byte
            if ((*p & 0xC0) != 0x80) out[o++] = '?';
        } else out[o++] = *p >= 32 && *p < 127 ? (char)*p : '?';
    }
    out[o] = 0;
}

// --- Heat cells -------------------------------------------------------------

static int clamp_level(int l) { return l < 0 ? 0 : l >= MECH_TUI_LEVELS ? MECH_TUI_LEVELS - 1 : l; }

static char ramp_glyph(int level, int sign) {
    const char *r = sign == 1 ? mech_tui_ramp_pos : sign == 2 ? mech_tui_ramp_neg : mech_tui_ramp;
    return r[clamp_level(level)];
}

void mech_tui_grid_heat(mech_tui_grid *g, int y, int x, int level, int sign) {
    mech_tui_cell *c = mech_tui_grid_at(g, y, x);
    if (!c) return;
    sign = sign == 1 || sign == 2 ? sign : 0;
    *c = (mech_tui_cell){.ch = ramp_glyph(level, sign), .role = MECH_TUI_HEAT, .level = (uint8_t)clamp_level(level),
                         .heat = 1, .sign = (uint8_t)sign};
}

void mech_tui_grid_heat2(mech_tui_grid *g, int y, int x, int upper_level, int upper_sign, int lower_level,
                         int lower_sign) {
    mech_tui_cell *c = mech_tui_grid_at(g, y, x);
    if (!c) return;
    int ul = clamp_level(upper_level), ll = clamp_level(lower_level);
    int us = upper_sign == 1 || upper_sign == 2 ? upper_sign : 0;
    int ls = lower_sign == 1 || lower_sign == 2 ? lower_sign : 0;
    // without colour one glyph stands for both rows: the stronger one's
    char ch = ll > ul ? ramp_glyph(ll, ls) : ramp_glyph(ul, us);
    *c = (mech_tui_cell){.ch = ch, .role = MECH_TUI_HEAT, .level = (uint8_t)ul, .heat = 1, .sign = (uint8_t)us,
                         .half = 1, .lo = (uint8_t)ll, .lo_sign = (uint8_t)ls};
}
