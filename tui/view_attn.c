/*
** tui/view_attn.c: the attention views as pure view models: one head as a
** heatmap (query rows x key columns, token text on both axes, a crosshair
** cursor) and the layer x head grid of thumbnails with head scores. A
** pattern larger than the window is pooled (max or mean per cell, shown on
** screen), two pattern rows per text row (upper-half cells), so a 1024-token
** prompt fits any window; the cost of a fitted frame is one pass over the
** T x T pattern, whatever the window. Zoomed (z, + -), cells are square bins
** down to one token, and the window scrolls with the cursor; a zoomed frame
** reads only the tokens it shows. Also here: the token search (/ n) shared
** with the token view, and the grid's sort and score filter, computed in one
** place (mech_tui_attn_grid_order) for the keys and the render alike.
*/
#include "tui/tui.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mech_tui_attn_deinit(mech_tui_attn *a) {
    for (int i = 0; a->tokens && i < a->T; i++) mech_free(a->tokens[i]);
    mech_free(a->tokens);
    mech_free(a->pat);
    mech_free(a->layer_pat);
    mech_free(a->scores);
    mech_free(a->thumbs);
    mech_free(a->thumb_ok);
    mech_free(a->cpat);
    mech_free(a->layer_cpat);
    memset(a, 0, sizeof *a);
}

static const float *head_pat(const mech_tui_attn *a, int l, int h) {
    if (a->layer_pat) return a->layer_pat[l] + (size_t)h * a->T * a->T;
    return a->pat + ((size_t)l * a->NH + h) * (size_t)a->T * a->T;
}

static const float *head_cpat(const mech_tui_attn *a, int l, int h) {
    if (a->layer_cpat) return a->layer_cpat[l] + (size_t)h * a->T * a->T;
    return a->cpat + ((size_t)l * a->NH + h) * (size_t)a->T * a->T;
}

static int has_diff(const mech_tui_attn *a) { return a->cpat || a->layer_cpat; }

int mech_tui_attn_has_diff(const mech_tui_attn *a) { return has_diff(a); }

float mech_tui_attn_cweight(const mech_tui_attn *a, int l, int h, int q, int k) {
    return head_cpat(a, l, h)[(size_t)q * a->T + k];
}

// Cell (i, j) of the difference: the mean, or the largest in magnitude.
static float pool_diff_cell(const mech_tui_attn *a, const float *p, const float *c, int i, int j, int bin_r,
                            int bin_c, int mean) {
    int T = a->T, q0 = i * bin_r, q1 = q0 + bin_r < T ? q0 + bin_r : T;
    int k0 = j * bin_c, k1 = k0 + bin_c < T ? k0 + bin_c : T;
    float acc = 0;
    for (int q = q0; q < q1; q++)
        for (int k = k0; k < k1; k++) {
            float d = p[(size_t)q * T + k] - c[(size_t)q * T + k];
            if (mean) acc += d;
            else if (fabsf(d) > fabsf(acc)) acc = d;
        }
    if (mean && q1 > q0 && k1 > k0) acc /= (float)((q1 - q0) * (k1 - k0));
    return acc;
}

void mech_tui_attn_pool_diff(const mech_tui_attn *a, int l, int h, int bin_r, int bin_c, int rows, int cols, int mean,
                             float *out) {
    // each token pair is read once (the bins do not overlap)
    const float *p = head_pat(a, l, h), *c = head_cpat(a, l, h);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) out[(size_t)i * cols + j] = pool_diff_cell(a, p, c, i, j, bin_r, bin_c, mean);
}

float mech_tui_attn_weight(const mech_tui_attn *a, int l, int h, int q, int k) {
    return head_pat(a, l, h)[(size_t)q * a->T + k];
}

// Max or mean of the head's weights over the bin of cell (i, j).
static float pool_cell(const mech_tui_attn *a, const float *p, int i, int j, int bin_r, int bin_c, int mean) {
    int T = a->T, q0 = i * bin_r, q1 = q0 + bin_r < T ? q0 + bin_r : T;
    int k0 = j * bin_c, k1 = k0 + bin_c < T ? k0 + bin_c : T;
    float acc = 0;
    for (int q = q0; q < q1; q++)
        for (int k = k0; k < k1; k++) {
            float w = p[(size_t)q * T + k];
            if (mean) acc += w;
            else if (w > acc) acc = w;
        }
    if (mean && q1 > q0 && k1 > k0) acc /= (float)((q1 - q0) * (k1 - k0));
    return acc;
}

// The max (or the sum) of x[0..n) and acc. Eight independent accumulators:
// one chain of compares is bound by its latency, eight keep the loads
// streaming (the pooling of all 144 heads in the grid is this loop).
static float span_max(const float *x, int n, float acc) {
    float m[8] = {acc, acc, acc, acc, acc, acc, acc, acc};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) m[u] = x[k + u] > m[u] ? x[k + u] : m[u];
    for (; k < n; k++) m[0] = x[k] > m[0] ? x[k] : m[0];
    for (int u = 1; u < 8; u++) m[0] = m[u] > m[0] ? m[u] : m[0];
    return m[0];
}

static float span_sum(const float *x, int n, float acc) {
    float m[8] = {0};
    int k = 0;
    for (; k + 8 <= n; k += 8)
        for (int u = 0; u < 8; u++) m[u] += x[k + u];
    for (; k < n; k++) m[0] += x[k];
    for (int u = 0; u < 8; u++) acc += m[u];
    return acc;
}

void mech_tui_attn_pool(const mech_tui_attn *a, int l, int h, int bin_r, int bin_c, int rows, int cols, int mean,
                        float *out) {
    // one pass over the pattern in memory order (row by row): the cost is
    // reading T*T floats once, whatever the bin sizes
    const float *p = head_pat(a, l, h);
    int T = a->T;
    for (size_t i = 0; i < (size_t)rows * cols; i++) out[i] = 0;
    for (int q = 0; q < T && q / bin_r < rows; q++) {
        const float *row = p + (size_t)q * T;
        float *o = out + (size_t)(q / bin_r) * cols;
        // a causal pattern is 0 after the query: those keys add nothing to
        // a max or a sum, and skipping them halves the reads
        int kend = a->causal ? q + 1 : T;
        for (int j = 0; j < cols; j++) {
            int k0 = j * bin_c, k1 = k0 + bin_c < kend ? k0 + bin_c : kend;
            if (k1 <= k0) break;
            o[j] = mean ? span_sum(row + k0, k1 - k0, o[j]) : span_max(row + k0, k1 - k0, o[j]);
        }
    }
    if (mean)
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) {
                int nq = (i + 1) * bin_r < T ? bin_r : T - i * bin_r, nk = (j + 1) * bin_c < T ? bin_c : T - j * bin_c;
                if (nq > 0 && nk > 0) out[(size_t)i * cols + j] /= (float)(nq * nk);
            }
}

int mech_tui_level(float w) {
    if (!(w > 0)) return 0;
    if (w >= 1) return MECH_TUI_LEVELS - 1;
    // 1..LEVELS-1 so that any attention at all is visible
    int l = 1 + (int)(w * (MECH_TUI_LEVELS - 1));
    return l > MECH_TUI_LEVELS - 1 ? MECH_TUI_LEVELS - 1 : l;
}

static int ceil_div(int a, int b) { return b > 0 ? (a + b - 1) / b : a; }

static void put_heat(mech_tui_grid *g, int y, int x, float w) {
    mech_tui_cell *c = mech_tui_grid_at(g, y, x);
    if (!c) return;
    int lv = mech_tui_level(w);
    *c = (mech_tui_cell){.ch = mech_tui_ramp[lv], .role = MECH_TUI_HEAT, .level = (uint8_t)lv, .heat = 1};
}

// A difference in [-1, 1]: level by magnitude, glyph and colour by sign.
static void put_diff(mech_tui_grid *g, int y, int x, float d) {
    mech_tui_cell *c = mech_tui_grid_at(g, y, x);
    if (!c) return;
    int lv = mech_tui_level(fabsf(d)), neg = d < 0;
    *c = (mech_tui_cell){.ch = neg ? mech_tui_ramp_neg[lv] : mech_tui_ramp_pos[lv],
                         .role = MECH_TUI_HEAT,
                         .level = (uint8_t)lv,
                         .heat = 1,
                         .sign = (uint8_t)(lv ? (neg ? 2 : 1) : 0)};
}

// The glyph of value v: the sequential ramp, or in a difference the ramp of its sign.
static char glyph(float v, int diff) {
    int lv = mech_tui_level(diff ? fabsf(v) : v);
    return diff ? (v < 0 ? mech_tui_ramp_neg[lv] : mech_tui_ramp_pos[lv]) : mech_tui_ramp[lv];
}

static uint8_t sign_of(float v, int diff) {
    return (uint8_t)(diff && mech_tui_level(fabsf(v)) ? (v < 0 ? 2 : 1) : 0);
}

// Two heatmap rows in one cell (drawn as an upper-half block): level and
// sign the upper value's, lo and lo_sign the lower's; the glyph is the
// larger one's, the reading without colour or UTF-8.
static void put_half(mech_tui_grid *g, int y, int x, float up, float lo, int diff) {
    mech_tui_cell *c = mech_tui_grid_at(g, y, x);
    if (!c) return;
    int lu = mech_tui_level(diff ? fabsf(up) : up), ll = mech_tui_level(diff ? fabsf(lo) : lo);
    *c = (mech_tui_cell){.ch = glyph(ll > lu ? lo : up, diff),
                         .role = MECH_TUI_HEAT,
                         .level = (uint8_t)lu,
                         .heat = 1,
                         .sign = sign_of(up, diff),
                         .half = 1,
                         .lo = (uint8_t)ll,
                         .lo_sign = sign_of(lo, diff)};
}

// --- Token search -----------------------------------------------------------

static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (!n) return 0;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i])) i++;
        if (i == n) return 1;
    }
    return 0;
}

int mech_tui_attn_search_count(const mech_tui_attn *a) {
    int n = 0;
    for (int t = 0; t < a->T; t++) n += contains_ci(a->tokens[t], a->search);
    return n;
}

int mech_tui_attn_search_next(mech_tui_attn *a) {
    // the token after the cursor first, wrapping round to the cursor itself
    for (int i = 1; i <= a->T; i++) {
        int t = (a->q + i) % a->T;
        if (contains_ci(a->tokens[t], a->search)) {
            a->q = t;
            return 1;
        }
    }
    return 0;
}

// --- One head -------------------------------------------------------------

// The largest power of two below n (at least 1).
static int pow2_below(int n) {
    int b = 1;
    while (b * 2 < n) b *= 2;
    return b;
}

int mech_tui_attn_key(mech_tui_attn *a, int key) {
    int br = a->bin_r > 0 ? a->bin_r : 1, bc = a->bin_c > 0 ? a->bin_c : 1;
    int page = br * (a->page_rows > 0 ? a->page_rows : 10); // the heatmap rows shown at the last render
    int zoom = a->zoom;
    switch (key) {
    case MECH_TUI_KEY_PGDN: a->q = a->q + page < a->T ? a->q + page : a->T - 1; break;
    case MECH_TUI_KEY_PGUP: a->q = a->q - page > 0 ? a->q - page : 0; break;
    case 'z': a->zoom = a->zoom ? 0 : 1; break;
    case '+':
        // zoom in: from the fit to the largest power of two below its bins, then halving
        if (a->zoom == 1 || (!a->zoom && a->fit_bin <= 1)) return MECH_TUI_NONE;
        a->zoom = a->zoom ? a->zoom / 2 : pow2_below(a->fit_bin);
        break;
    case '-':
        // zoom out: doubling, and the fit once the pattern would fit anyway
        if (!a->zoom) return MECH_TUI_NONE;
        a->zoom = a->zoom * 2 >= a->fit_bin ? 0 : a->zoom * 2;
        break;
    case '/': a->search[0] = 0; return MECH_TUI_SEARCH;
    case 'n':
        if (!a->search[0] || !mech_tui_attn_search_next(a)) return MECH_TUI_NONE;
        break;
    case MECH_TUI_KEY_ESC:
        if (!a->search[0]) return MECH_TUI_NONE;
        a->search[0] = 0;
        break;
    case 'j': case MECH_TUI_KEY_DOWN: a->q = a->q + br < a->T ? a->q + br : a->T - 1; break;
    case 'k': case MECH_TUI_KEY_UP: a->q = a->q - br > 0 ? a->q - br : 0; break;
    case 'l': case MECH_TUI_KEY_RIGHT: a->k = a->k + bc < a->T ? a->k + bc : a->T - 1; break;
    case 'h': case MECH_TUI_KEY_LEFT: a->k = a->k - bc > 0 ? a->k - bc : 0; break;
    case MECH_TUI_KEY_HOME: a->q = a->k = 0; break;
    case MECH_TUI_KEY_END: a->q = a->k = a->T - 1; break;
    case ']': if (++a->head >= a->NH) a->head = 0, a->layer = (a->layer + 1) % a->L; break;
    case '[': if (--a->head < 0) a->head = a->NH - 1, a->layer = (a->layer + a->L - 1) % a->L; break;
    case '}': a->layer = (a->layer + 1) % a->L; break;
    case '{': a->layer = (a->layer + a->L - 1) % a->L; break;
    case 'p': a->pool_mean = !a->pool_mean; break;
    case 'g': a->gl = a->layer, a->gh = a->head; return MECH_TUI_GRID;
    case 't': return MECH_TUI_TOKENS;
    case 'D':
        if (!has_diff(a)) return MECH_TUI_NONE;
        a->diff = !a->diff;
        break;
    default: return MECH_TUI_NONE;
    }
    // the next key steps by the new bins even before a render
    if (a->zoom != zoom && a->zoom > 0) a->bin_r = a->bin_c = a->zoom;
    return MECH_TUI_REDRAW;
}

#define AXIS_ROWS 3

// The pooled value of cell (i, j) of the head shown (clean, or the difference).
static float cell_value(const mech_tui_attn *a, int i, int j, int diff) {
    const float *p = head_pat(a, a->layer, a->head);
    return diff ? pool_diff_cell(a, p, head_cpat(a, a->layer, a->head), i, j, a->bin_r, a->bin_c, a->pool_mean)
                : pool_cell(a, p, i, j, a->bin_r, a->bin_c, a->pool_mean);
}

// first so that the cursor cell c (of n cells, win shown) stays in view
static int scroll_to(int first, int c, int win, int n) {
    if (c < first) first = c;
    if (c >= first + win) first = c - win + 1;
    if (first > n - win) first = n - win;
    return first < 0 ? 0 : first;
}

void mech_tui_attn_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h) {
    char line[512], lab[64];
    int T = a->T, w = g->w;
    if (h < 1 || T < 1) return;
    if (a->q >= T) a->q = T - 1;
    if (a->k >= T) a->k = T - 1;
    int lw = w / 5 < 6 ? 6 : w / 5 > 16 ? 16 : w / 5; // query label column
    int hr = h - 2 - AXIS_ROWS, hc = w - lw - 1;
    if (hr < 1 || hc < 1) {
        mech_tui_grid_put(g, y0, 0, MECH_TUI_ERROR, "window too small for the heatmap", -1);
        return;
    }
    // fit: the whole pattern, two heatmap rows per text row when one row per
    // token does not fit; zoomed: square bins, one row per text row, scrolled
    int fit_half = T > hr, fbr = ceil_div(T, fit_half ? 2 * hr : hr), fbc = ceil_div(T, hc);
    a->fit_bin = fbr > fbc ? fbr : fbc;
    if (a->zoom > 0) a->half = 0, a->bin_r = a->bin_c = a->zoom;
    else a->half = fit_half, a->bin_r = fbr, a->bin_c = fbc;
    int rpt = a->half ? 2 : 1; // heatmap rows per text row
    int nr = ceil_div(T, a->bin_r), nc = ceil_div(T, a->bin_c), ntr = ceil_div(nr, rpt);
    int vr = ntr < hr ? ntr : hr, vc = nc < hc ? nc : hc; // text rows and columns shown
    int cq = a->q / a->bin_r, ck = a->k / a->bin_c, diff = a->diff && has_diff(a);
    a->top_r = a->zoom > 0 ? scroll_to(a->top_r, cq, vr, ntr) : 0;
    a->top_c = a->zoom > 0 ? scroll_to(a->top_c, ck, vc, nc) : 0;
    a->page_rows = vr * rpt;
    int pooled_view = a->bin_r > 1 || a->bin_c > 1;
    int tn = snprintf(line, sizeof line, "L%dH%d%s", a->layer, a->head,
                      diff ? "  clean - corrupted (+ # above zero, - = below; D: clean)" : "");
    if (tn < 0 || (size_t)tn >= sizeof line) tn = 0;
    if (a->zoom > 0) {
        char how[64] = "one cell per token";
        if (a->zoom > 1)
            snprintf(how, sizeof how, "zoom: %s pooling, %d x %d tokens per cell", a->pool_mean ? "mean" : "max",
                     a->bin_r, a->bin_c);
        int lq = (a->top_r + vr) * a->bin_r < T ? (a->top_r + vr) * a->bin_r : T;
        int lk = (a->top_c + vc) * a->bin_c < T ? (a->top_c + vc) * a->bin_c : T;
        snprintf(line + tn, sizeof line - (size_t)tn, "  %d tokens  %s: q %d-%d k %d-%d shown (z: fit, + -: zoom)", T,
                 how, a->top_r * a->bin_r, lq - 1, a->top_c * a->bin_c, lk - 1);
    } else if (pooled_view)
        snprintf(line + tn, sizeof line - (size_t)tn,
                 "  %d tokens  %s pooling: %d x %d tokens per cell (p: max/mean, z: zoom)", T,
                 a->pool_mean ? "mean" : "max", a->bin_r, a->bin_c);
    else snprintf(line + tn, sizeof line - (size_t)tn, "  %d tokens  one cell per token", T);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    // key axis: the first AXIS_ROWS characters of each shown column's first
    // token (the cursor's own token in its column), top to bottom
    for (int j = 0; j < vc; j++) {
        int cj = a->top_c + j;
        mech_tui_token_label(a->tokens[cj == ck ? a->k : cj * a->bin_c], lab, sizeof lab);
        for (int r = 0; r < AXIS_ROWS; r++) {
            // a space (GPT-2's word start) shows as '_' so short tokens stay readable
            char s[2] = {(size_t)r < strlen(lab) ? (lab[r] == ' ' ? '_' : lab[r]) : ' ', 0};
            mech_tui_grid_put(g, y0 + 1 + r, lw + 1 + j, cj == ck ? MECH_TUI_SEL : MECH_TUI_HEADER, s, 1);
        }
    }
    // the cells shown: the whole pattern in one pass (fit), or only the
    // window (zoomed: reading the window's tokens, not all T x T)
    int pr = a->zoom > 0 ? vr : nr, pc = a->zoom > 0 ? vc : nc;
    float *pooled = mech_malloc((size_t)pr * pc * sizeof *pooled);
    if (!pooled) return;
    if (a->zoom > 0)
        for (int i = 0; i < pr; i++)
            for (int j = 0; j < pc; j++) pooled[(size_t)i * pc + j] = cell_value(a, a->top_r + i, a->top_c + j, diff);
    else if (diff) mech_tui_attn_pool_diff(a, a->layer, a->head, a->bin_r, a->bin_c, nr, nc, a->pool_mean, pooled);
    else mech_tui_attn_pool(a, a->layer, a->head, a->bin_r, a->bin_c, nr, nc, a->pool_mean, pooled);
    int ctr = cq / rpt; // the cursor's text row
    for (int r = 0; r < vr; r++) {
        int y = y0 + 1 + AXIS_ROWS + r, tr = a->top_r + r, iu = tr * rpt;
        // the row's first token; the cursor's row names the cursor's token
        mech_tui_token_label(a->tokens[tr == ctr ? a->q : iu * a->bin_r], lab, sizeof lab);
        snprintf(line, sizeof line, "%*.*s", lw, lw, lab);
        mech_tui_grid_put(g, y, 0, tr == ctr ? MECH_TUI_SEL : MECH_TUI_HEADER, line, lw);
        for (int j = 0; j < vc; j++) {
            int x = lw + 1 + j, cj = a->top_c + j;
            // row index into pooled: window-relative when zoomed, absolute when fit
            int pi = a->zoom > 0 ? r : iu, pj = a->zoom > 0 ? j : cj;
            float up = pooled[(size_t)pi * pc + pj];
            if (a->half) put_half(g, y, x, up, iu + 1 < nr ? pooled[(size_t)(pi + 1) * pc + pj] : 0, diff);
            else if (diff) put_diff(g, y, x, up);
            else put_heat(g, y, x, up);
            mech_tui_cell *c = mech_tui_grid_at(g, y, x);
            if (c && (tr == ctr || cj == ck)) c->role = tr == ctr && cj == ck ? MECH_TUI_SEL : MECH_TUI_CROSS;
        }
    }
    // the cursor's value: the exact weight of the token pair, and the cell's pooled value
    char qt[40], kt[40];
    mech_tui_token_label(a->tokens[a->q], qt, sizeof qt);
    mech_tui_token_label(a->tokens[a->k], kt, sizeof kt);
    float wc = mech_tui_attn_weight(a, a->layer, a->head, a->q, a->k);
    int n;
    if (diff) {
        float wx = mech_tui_attn_cweight(a, a->layer, a->head, a->q, a->k);
        n = snprintf(line, sizeof line, "q %d \"%s\" -> k %d \"%s\"  clean %.4f  corrupted %.4f  diff %+.4f", a->q, qt,
                     a->k, kt, wc, wx, wc - wx);
    } else n = snprintf(line, sizeof line, "q %d \"%s\" -> k %d \"%s\"  weight %.4f", a->q, qt, a->k, kt, wc);
    if (pooled_view && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, diff ? "  cell %s %+.4f" : "  cell %s %.4f",
                 a->pool_mean ? "mean" : "max", cell_value(a, cq, ck, diff));
    mech_free(pooled);
    mech_tui_grid_put(g, y0 + h - 1, 0, MECH_TUI_TITLE, line, -1);
}

// --- All heads --------------------------------------------------------------

#define THUMB_MIN_W 15
#define THUMB_MIN_H 5
#define THUMB_MAX_H 10

// ".12", "1.0", "-.05": two decimals in at most four columns
static void short2(char *out, size_t cap, double x) {
    char b[16];
    if (isnan(x)) {
        snprintf(out, cap, "  - ");
        return;
    }
    if (x >= 0.995) snprintf(b, sizeof b, "%.1f", x);
    else if (x <= -0.995) snprintf(b, sizeof b, "%.0f", x);
    else {
        snprintf(b, sizeof b, "%.2f", x);
        char *z = strstr(b, "0.");
        if (z) memmove(z, z + 1, strlen(z));
    }
    snprintf(out, cap, "%s", b);
}

static void grid_layout(const mech_tui_attn *a, int w, int h, int *per_row, int *tw, int *th, int *rows_shown) {
    int pr = w / THUMB_MIN_W;
    if (pr < 1) pr = 1;
    if (pr > a->NH) pr = a->NH;
    *per_row = pr;
    *tw = w / pr;
    int total_rows = ceil_div(a->L * a->NH, pr);
    int t = total_rows ? (h - 1) / total_rows : h;
    *th = t < THUMB_MIN_H ? THUMB_MIN_H : t > THUMB_MAX_H ? THUMB_MAX_H : t;
    *rows_shown = (h - 1) / *th;
    if (*rows_shown < 1) *rows_shown = 1;
}

static const char *score_names[MECH_TUI_SCORE_KINDS] = {"previous-token", "duplicate-token", "induction"};

// qsort has no context argument in C11; the interface is single-threaded
static const double *order_scores;

static int cmp_score_desc(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    double sa = order_scores[a], sb = order_scores[b];
    if (sa != sb) return sa > sb ? -1 : 1; // NaN-free: the scores are finite
    return (a > b) - (a < b);
}

// The heads in display order: layer x head, or by a score (highest first),
// cut at the filter's threshold (a prefix of the sorted order).
int mech_tui_attn_grid_order(const mech_tui_attn *a, int *order) {
    int n = a->L * a->NH;
    for (int i = 0; i < n; i++) order[i] = i;
    if (a->grid_sort > 0 && a->scores) {
        order_scores = a->scores + (size_t)(a->grid_sort - 1) * n;
        qsort(order, (size_t)n, sizeof *order, cmp_score_desc);
        if (a->grid_filter) {
            int k = 0;
            while (k < n && order_scores[order[k]] >= a->grid_min) k++;
            n = k;
        }
        order_scores = NULL;
    }
    return n;
}

// The cursor's place in the shown order; a cursor on a head the filter hides
// moves to the first head shown. -1 when no head is shown.
static int grid_cursor(mech_tui_attn *a, const int *order, int n) {
    for (int i = 0; i < n; i++)
        if (order[i] == a->gl * a->NH + a->gh) return i;
    if (!n) return -1;
    a->gl = order[0] / a->NH, a->gh = order[0] % a->NH;
    return 0;
}

static int filtering(const mech_tui_attn *a) { return a->grid_filter && a->grid_sort > 0 && a->scores; }

int mech_tui_attn_grid_key(mech_tui_attn *a, int key) {
    int n = a->L * a->NH, pr = a->grid_per_row > 0 ? a->grid_per_row : a->NH;
    size_t LH = (size_t)a->L * a->NH;
    switch (key) {
    case 's':
        if (!a->scores) return MECH_TUI_NONE;
        a->grid_sort = (a->grid_sort + 1) % (MECH_TUI_SCORE_KINDS + 1);
        a->grid_filter = 0; // a threshold means nothing on another score
        return MECH_TUI_REDRAW;
    case 'f': case '+': case '-':
        if (a->grid_sort <= 0 || !a->scores) return MECH_TUI_NONE;
        if (key == 'f' || !a->grid_filter) {
            // from the selected head's score: it and every head above it stay
            a->grid_min = a->scores[(size_t)(a->grid_sort - 1) * LH + (size_t)a->gl * a->NH + a->gh];
            a->grid_filter = 1;
        }
        // steps of 0.05 land on round thresholds (no drift from repeated adds)
        if (key == '+') a->grid_min = (floor(a->grid_min * 20 + 1e-9) + 1) / 20;
        if (key == '-') a->grid_min = (ceil(a->grid_min * 20 - 1e-9) - 1) / 20;
        return MECH_TUI_REDRAW;
    case 'F':
        if (!a->grid_filter) return MECH_TUI_NONE;
        a->grid_filter = 0;
        return MECH_TUI_REDRAW;
    case 'D':
        if (!has_diff(a)) return MECH_TUI_NONE;
        a->diff = !a->diff;
        return MECH_TUI_REDRAW;
    default: break;
    }
    int *order = mech_malloc((size_t)n * sizeof *order);
    if (!order) return MECH_TUI_NONE;
    n = mech_tui_attn_grid_order(a, order);
    int idx = grid_cursor(a, order, n); // the cursor's position in display order
    if (idx < 0) {
        mech_free(order);
        return MECH_TUI_NONE;
    }
    switch (key) {
    case 'h': case MECH_TUI_KEY_LEFT: if (idx > 0) idx--; break;
    case 'l': case MECH_TUI_KEY_RIGHT: if (idx + 1 < n) idx++; break;
    case 'k': case MECH_TUI_KEY_UP: if (idx - pr >= 0) idx -= pr; break;
    case 'j': case MECH_TUI_KEY_DOWN: if (idx + pr < n) idx += pr; break;
    case MECH_TUI_KEY_ENTER:
        mech_free(order);
        a->layer = a->gl, a->head = a->gh;
        return MECH_TUI_OPEN;
    default: mech_free(order); return MECH_TUI_NONE;
    }
    a->gl = order[idx] / a->NH, a->gh = order[idx] % a->NH;
    mech_free(order);
    return MECH_TUI_REDRAW;
}

typedef struct thumb_job {
    mech_tui_attn *a;
    int br, bc, nr, nc, diff;
    size_t per;
    const int *heads; // the heads to pool
} thumb_job;

static void thumb_one(void *ctx, int k) {
    const thumb_job *j = ctx;
    const mech_tui_attn *a = j->a;
    int i = j->heads[k];
    float *out = a->thumbs + j->per * (size_t)i;
    if (j->diff) mech_tui_attn_pool_diff(a, i / a->NH, i % a->NH, j->br, j->bc, j->nr, j->nc, a->pool_mean, out);
    else mech_tui_attn_pool(a, i / a->NH, i % a->NH, j->br, j->bc, j->nr, j->nc, a->pool_mean, out);
}

// The thumbnails' pooling for a grid of w x h cells, and their storage:
// kept while the window size, the pooling and the difference mode stay
// (each frame then copies them), else reallocated with no head pooled.
// 0, or -1 out of memory.
static int thumbs_ready(mech_tui_attn *a, int w, int h, int diff, int *half_out, int *br_out, int *bc_out, int *nr_out,
                        int *nc_out, size_t *per_out) {
    int per_row, tw, th, shown;
    grid_layout(a, w, h, &per_row, &tw, &th, &shown);
    // the thumbnail's heatmap: two pattern rows per text row when the rows do not fit
    int hw = tw - 1, hh = th - 2, half = a->T > hh;
    int br = ceil_div(a->T, half ? 2 * hh : hh), bc = ceil_div(a->T, hw);
    int nr = ceil_div(a->T, br), nc = ceil_div(a->T, bc);
    size_t per = (size_t)nr * nc;
    *half_out = half, *br_out = br, *bc_out = bc, *nr_out = nr, *nc_out = nc, *per_out = per;
    if (a->thumbs && a->thumb_ok && a->thumb_r == nr && a->thumb_c == nc && a->thumb_br == br && a->thumb_bc == bc &&
        a->thumb_mean == a->pool_mean && a->thumb_diff == diff && a->thumb_half == half)
        return 0;
    mech_free(a->thumbs);
    mech_free(a->thumb_ok);
    a->thumbs = mech_malloc(per * a->L * a->NH * sizeof *a->thumbs);
    a->thumb_ok = mech_calloc((size_t)a->L * a->NH, 1);
    if (!a->thumbs || !a->thumb_ok) {
        mech_free(a->thumbs), mech_free(a->thumb_ok);
        a->thumbs = NULL, a->thumb_ok = NULL;
        return -1;
    }
    a->thumb_r = nr, a->thumb_c = nc, a->thumb_br = br, a->thumb_bc = bc, a->thumb_mean = a->pool_mean;
    a->thumb_diff = diff, a->thumb_half = half;
    return 0;
}

mech_status mech_tui_attn_grid_prepare(mech_tui_attn *a, int w, int h) {
    int half, br, bc, nr, nc, n = a->L * a->NH;
    size_t per;
    if (h < 2 || a->T < 1 || n < 1) return MECH_OK;
    int diff = a->diff && has_diff(a);
    if (thumbs_ready(a, w, h, diff, &half, &br, &bc, &nr, &nc, &per)) return MECH_ERR_NOMEM;
    int *todo = mech_malloc((size_t)n * sizeof *todo), n_todo = 0;
    if (!todo) return MECH_ERR_NOMEM;
    for (int i = 0; i < n; i++)
        if (!a->thumb_ok[i]) todo[n_todo++] = i;
    thumb_job job = {a, br, bc, nr, nc, diff, per, todo};
    mech_pool *pool = n_todo > 1 ? mech_pool_new(0) : NULL;
    mech_pool_for(pool, n_todo, thumb_one, &job);
    mech_pool_free(pool);
    for (int k = 0; k < n_todo; k++) a->thumb_ok[todo[k]] = 1;
    mech_free(todo);
    return MECH_OK;
}

void mech_tui_attn_grid_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h) {
    char line[256], p[16], d[16], in[16];
    int per_row, tw, th, shown;
    if (h < 2 || a->T < 1) return;
    grid_layout(a, g->w, h, &per_row, &tw, &th, &shown);
    a->grid_per_row = per_row, a->grid_rows_shown = shown;
    int n_heads = a->L * a->NH, cur = 0, diff = a->diff && has_diff(a);
    int *order = mech_malloc((size_t)n_heads * sizeof *order);
    if (!order) return;
    int n_shown = mech_tui_attn_grid_order(a, order);
    // the sort and the filter first: the line is cut at the window's edge
    int tn = snprintf(line, sizeof line, "all heads%s%s", a->grid_sort > 0 && a->scores ? " sorted by " : "",
                      a->grid_sort > 0 && a->scores ? score_names[a->grid_sort - 1] : "");
    if (filtering(a) && tn > 0)
        tn += snprintf(line + tn, sizeof line - (size_t)tn, ", %d of %d with score >= %.2f (+ - F)", n_shown, n_heads,
                       a->grid_min);
    if (tn > 0 && (size_t)tn < sizeof line)
        snprintf(line + tn, sizeof line - (size_t)tn, "%s: %d layers x %d heads  p previous-token  d duplicate-token  i induction",
                 diff ? " clean - corrupted" : "", a->L, a->NH);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    if (!n_shown) {
        snprintf(line, sizeof line, "no head scores >= %.2f (- lowers the threshold, F clears it)", a->grid_min);
        mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_TEXT, line, -1);
        mech_free(order);
        return;
    }
    cur = grid_cursor(a, order, n_shown);
    int cur_row = cur / per_row;
    if (cur_row < a->grid_top) a->grid_top = cur_row;
    if (cur_row >= a->grid_top + shown) a->grid_top = cur_row - shown + 1;
    if (a->grid_top > (n_shown - 1) / per_row) a->grid_top = (n_shown - 1) / per_row;
    int hw = tw - 1, half, br, bc, nr, nc;
    size_t per;
    if (thumbs_ready(a, g->w, h, diff, &half, &br, &bc, &nr, &nc, &per)) {
        mech_free(order);
        return;
    }
    // Only the heads on screen are pooled, when first shown: each reads its
    // whole pattern (4 MB at 1024 tokens; all 144 of GPT-2 small's took
    // 36 ms on two cores), spread over the CPUs, one head per job.
    int *todo = mech_malloc((size_t)n_shown * sizeof *todo), n_todo = 0;
    if (!todo) {
        mech_free(order);
        return;
    }
    for (int pos = a->grid_top * per_row; pos < n_shown && pos < (a->grid_top + shown) * per_row; pos++)
        if (!a->thumb_ok[order[pos]]) todo[n_todo++] = order[pos];
    if (n_todo) {
        thumb_job job = {a, br, bc, nr, nc, diff, per, todo};
        mech_pool *pool = n_todo > 1 ? mech_pool_new(0) : NULL;
        mech_pool_for(pool, n_todo, thumb_one, &job);
        mech_pool_free(pool);
        for (int k = 0; k < n_todo; k++) a->thumb_ok[todo[k]] = 1;
    }
    mech_free(todo);
    for (int r = 0; r < shown; r++)
        for (int c = 0; c < per_row; c++) {
            int pos = (a->grid_top + r) * per_row + c;
            if (pos >= n_shown) break;
            int idx = order[pos];
            int l = idx / a->NH, hd = idx % a->NH, x = c * tw, y = y0 + 1 + r * th;
            int sel = l == a->gl && hd == a->gh;
            snprintf(line, sizeof line, "%sL%dH%d", sel ? ">" : " ", l, hd);
            mech_tui_grid_put(g, y, x, sel ? MECH_TUI_SEL : MECH_TUI_HEADER, line, hw);
            if (a->scores) {
                const double *s = a->scores;
                size_t i = (size_t)l * a->NH + hd, LH = (size_t)a->L * a->NH;
                short2(p, sizeof p, s[i]), short2(d, sizeof d, s[LH + i]), short2(in, sizeof in, s[2 * LH + i]);
                snprintf(line, sizeof line, "p%s d%s i%s", p, d, in);
                mech_tui_grid_put(g, y + 1, x, MECH_TUI_DIM, line, hw);
            }
            const float *cells = a->thumbs + per * (size_t)idx;
            for (int i = 0; i < nr; i += half ? 2 : 1)
                for (int j = 0; j < nc; j++) {
                    float up = cells[(size_t)i * nc + j];
                    int ty = y + 2 + (half ? i / 2 : i);
                    if (half) put_half(g, ty, x + j, up, i + 1 < nr ? cells[(size_t)(i + 1) * nc + j] : 0, diff);
                    else if (diff) put_diff(g, ty, x + j, up);
                    else put_heat(g, ty, x + j, up);
                }
        }
    mech_free(order);
}
