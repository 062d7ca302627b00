/*
** tui/view_tokens.c: the token view (CircuitsVis's coloured tokens) as a
** pure view model over the attention view's state: the prompt as text, each
** token shaded by its attention weight to or from the selected token, for
** the current head (the prompt wrapped over the window) or for every head
** of the layer (one line per head, all lines scrolled alike so a token sits
** in the same column on every line). It shares the attention state (the
** selected token is the heatmap cursor's query a->q, and the head is
** a->layer/a->head), so switching views keeps the place; so do the
** difference mode (a->diff: shades are clean - corrupted, signed) and the
** token search (a->search).
*/
#include "tui/tui.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

float mech_tui_tokens_weight(const mech_tui_attn *a, int h, int t) {
    // direction 0: the selected token's row (where it looks); 1: its column
    // (what looks at it)
    return a->tok_dir ? mech_tui_attn_weight(a, a->layer, h, t, a->q) : mech_tui_attn_weight(a, a->layer, h, a->q, t);
}

float mech_tui_tokens_diff(const mech_tui_attn *a, int h, int t) {
    float c = a->tok_dir ? mech_tui_attn_cweight(a, a->layer, h, t, a->q) : mech_tui_attn_cweight(a, a->layer, h, a->q, t);
    return mech_tui_tokens_weight(a, h, t) - c;
}

static int showing_diff(const mech_tui_attn *a) { return a->diff && mech_tui_attn_has_diff(a); }

// What shades token t: the weight, or in difference mode clean - corrupted.
static float shade(const mech_tui_attn *a, int h, int t) {
    return showing_diff(a) ? mech_tui_tokens_diff(a, h, t) : mech_tui_tokens_weight(a, h, t);
}

int mech_tui_tokens_key(mech_tui_attn *a, int key) {
    switch (key) {
    case 'D':
        if (!mech_tui_attn_has_diff(a)) return MECH_TUI_NONE;
        a->diff = !a->diff;
        break;
    case '/': a->search[0] = 0; return MECH_TUI_SEARCH;
    case 'n':
        if (!a->search[0] || !mech_tui_attn_search_next(a)) return MECH_TUI_NONE;
        break;
    case MECH_TUI_KEY_ESC:
        if (!a->search[0]) return MECH_TUI_NONE;
        a->search[0] = 0;
        break;
    case 'h': case MECH_TUI_KEY_LEFT: if (a->q > 0) a->q--; break;
    case 'l': case MECH_TUI_KEY_RIGHT: if (a->q < a->T - 1) a->q++; break;
    case MECH_TUI_KEY_HOME: a->q = 0; break;
    case MECH_TUI_KEY_END: a->q = a->T - 1; break;
    case 'j': case MECH_TUI_KEY_DOWN: a->head = (a->head + 1) % a->NH; break;
    case 'k': case MECH_TUI_KEY_UP: a->head = (a->head + a->NH - 1) % a->NH; break;
    case ']': if (++a->head >= a->NH) a->head = 0, a->layer = (a->layer + 1) % a->L; break;
    case '[': if (--a->head < 0) a->head = a->NH - 1, a->layer = (a->layer + a->L - 1) % a->L; break;
    case '}': a->layer = (a->layer + 1) % a->L; break;
    case '{': a->layer = (a->layer + a->L - 1) % a->L; break;
    case 'd': a->tok_dir = !a->tok_dir; break;
    case 'a': a->tok_all = !a->tok_all; break;
    case 't': return MECH_TUI_OPEN; // back to the heatmap
    default: return MECH_TUI_NONE;
    }
    return MECH_TUI_REDRAW;
}

// Writes token t's label at (y, x) shaded by weight w, at most maxw columns.
// The text stays the token's own (the shade is the cell's background), so
// the prompt reads as text; the selected token is marked.
static int put_token(const mech_tui_attn *a, mech_tui_grid *g, int y, int x, int t, float w, int maxw) {
    char lab[64];
    mech_tui_token_label(a->tokens[t], lab, sizeof lab);
    // a difference: level by magnitude, sign for the diverging palette
    int diff = showing_diff(a), lv = mech_tui_level(diff ? fabsf(w) : w), n = 0;
    uint8_t sign = (uint8_t)(diff && lv ? (w < 0 ? 2 : 1) : 0);
    for (const char *s = lab; *s && n < maxw; s++, n++) {
        mech_tui_cell *c = mech_tui_grid_at(g, y, x + n);
        if (!c) break;
        *c = (mech_tui_cell){.ch = *s, .role = (uint8_t)(t == a->q ? MECH_TUI_SEL : MECH_TUI_HEAT),
                             .level = (uint8_t)lv, .heat = 1, .sign = sign};
    }
    return n;
}

// The columns token t takes: its label, and a blank after an id (ids run
// together otherwise: 120201143).
static int label_len(const mech_tui_attn *a, int t) {
    char lab[64];
    mech_tui_token_label(a->tokens[t], lab, sizeof lab);
    int n = (int)strlen(lab);
    return (n ? n : 1) + (a->ids_plain != 0);
}

// The strongest weights of the current head, as text: the exact values that
// the shades stand for (and the only reading on a monochrome terminal).
// In difference mode: the largest differences in magnitude, with their signs.
static void strongest_line(const mech_tui_attn *a, char *line, size_t cap) {
    enum { TOP = 5 };
    int best[TOP], nb = 0, diff = showing_diff(a);
    for (int t = 0; t < a->T; t++) {
        float w = diff ? fabsf(shade(a, a->head, t)) : shade(a, a->head, t);
        if (!(w > 0)) continue;
        int i = nb < TOP ? nb++ : TOP;
        // insertion into the descending list (ties: the earlier token first)
        while (i > 0 && (diff ? fabsf(shade(a, a->head, best[i - 1])) : shade(a, a->head, best[i - 1])) < w) {
            if (i < TOP) best[i] = best[i - 1];
            i--;
        }
        if (i < TOP) best[i] = t;
    }
    size_t n = (size_t)snprintf(line, cap, diff ? "largest differences:" : "strongest:");
    for (int i = 0; i < nb && n < cap; i++) {
        char lab[40];
        mech_tui_token_label(a->tokens[best[i]], lab, sizeof lab);
        int r = snprintf(line + n, cap - n, diff ? "  %d \"%s\" %+.4f" : "  %d \"%s\" %.4f", best[i], lab,
                         shade(a, a->head, best[i]));
        if (r < 0) break;
        n += (size_t)r;
    }
}

void mech_tui_tokens_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h) {
    char line[512], lab[40];
    int T = a->T, w = g->w;
    if (h < 1 || T < 1) return;
    if (a->q >= T) a->q = T - 1;
    mech_tui_token_label(a->tokens[a->q], lab, sizeof lab);
    snprintf(line, sizeof line, "tokens  L%d%s%d%s  token %d \"%s\": %s  (d: %s; a: %s)", a->layer,
             a->tok_all ? " all heads, H" : "H", a->head, showing_diff(a) ? "  clean - corrupted" : "", a->q, lab,
             a->tok_dir ? "what looks at it" : "where it looks", a->tok_dir ? "where it looks" : "what looks at it",
             a->tok_all ? "one head" : "every head");
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    int rows = h - 3; // title, blank line above the strongest weights, that line
    if (rows < 1) return;
    if (!a->tok_all) {
        // wrap the prompt over the window, a token moved whole to the next
        // line when it fits on one; scroll so the selected token shows
        int sel_line = 0, ln = 0, col = 0;
        for (int pass = 0; pass < 2; pass++) {
            int first = pass ? (sel_line >= rows ? sel_line - rows + 1 : 0) : 0;
            ln = col = 0;
            for (int t = 0; t < T; t++) {
                int n = label_len(a, t);
                if (col > 0 && col + n > w) ln++, col = 0;
                if (t == a->q) sel_line = ln;
                // a token longer than the line is cut at its end
                if (pass && ln >= first && ln < first + rows)
                    put_token(a, g, y0 + 1 + ln - first, col, t, shade(a, a->head, t), w - col);
                col += n < w ? n : w;
            }
        }
    } else {
        // one line per head after a label column; the same token window on
        // every line, chosen so the selected token is inside it
        int lw = 5, tw = w - lw;
        if (tw < 1) return;
        int start = a->q, used = label_len(a, a->q);
        while (start > 0 && used + label_len(a, start - 1) <= tw / 2) used += label_len(a, --start);
        int top = a->head >= rows ? a->head - rows + 1 : 0;
        for (int hd = top; hd < a->NH && hd < top + rows; hd++) {
            int y = y0 + 1 + hd - top;
            snprintf(line, sizeof line, "H%-3d", hd);
            mech_tui_grid_put(g, y, 0, hd == a->head ? MECH_TUI_SEL : MECH_TUI_HEADER, line, lw - 1);
            for (int t = start, x = lw; t < T && x < w; t++) {
                int n = put_token(a, g, y, x, t, shade(a, hd, t), w - x);
                x += (n ? n : 1) + (a->ids_plain != 0);
            }
        }
    }
    strongest_line(a, line, sizeof line);
    mech_tui_grid_put(g, y0 + h - 1, 0, MECH_TUI_TEXT, line, -1);
}
