/*
** tui/view_attn.c: the attention views as pure view models: one head as a
** heatmap (query rows x key columns, token text on both axes, a crosshair
** cursor) and the layer x head grid of thumbnails with head scores. A
** pattern larger than the window is pooled (max or mean per cell, shown on
** screen), so a 1024-token prompt fits any window; the cost of a frame is
** one pass over the T x T pattern, whatever the window.
*/
#include "tui/tui.h"

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
        for (int j = 0; j < cols; j++) {
            int k0 = j * bin_c, k1 = k0 + bin_c < T ? k0 + bin_c : T;
            float acc = o[j];
            if (mean)
                for (int k = k0; k < k1; k++) acc += row[k];
            else
                for (int k = k0; k < k1; k++) acc = row[k] > acc ? row[k] : acc;
            o[j] = acc;
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

// --- One head -------------------------------------------------------------

int mech_tui_attn_key(mech_tui_attn *a, int key) {
    int br = a->bin_r > 0 ? a->bin_r : 1, bc = a->bin_c > 0 ? a->bin_c : 1;
    switch (key) {
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
    return MECH_TUI_REDRAW;
}

#define AXIS_ROWS 3

void mech_tui_attn_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h) {
    char line[512], lab[64];
    int T = a->T, w = g->w;
    if (h < 1 || T < 1) return;
    int lw = w / 5 < 6 ? 6 : w / 5 > 16 ? 16 : w / 5; // query label column
    int hr = h - 2 - AXIS_ROWS, hc = w - lw - 1;
    if (hr < 1 || hc < 1) {
        mech_tui_grid_put(g, y0, 0, MECH_TUI_ERROR, "window too small for the heatmap", -1);
        return;
    }
    a->bin_r = ceil_div(T, hr), a->bin_c = ceil_div(T, hc);
    int nr = ceil_div(T, a->bin_r), nc = ceil_div(T, a->bin_c);
    int cq = a->q / a->bin_r, ck = a->k / a->bin_c, diff = a->diff && has_diff(a);
    int tn = snprintf(line, sizeof line, "L%dH%d%s", a->layer, a->head,
                      diff ? "  clean - corrupted (+ # above zero, - = below; D: clean)" : "");
    if (tn < 0 || (size_t)tn >= sizeof line) tn = 0;
    if (a->bin_r > 1 || a->bin_c > 1)
        snprintf(line + tn, sizeof line - (size_t)tn, "  %d tokens  %s pooling: %d x %d tokens per cell (p: max/mean)",
                 T, a->pool_mean ? "mean" : "max", a->bin_r, a->bin_c);
    else snprintf(line + tn, sizeof line - (size_t)tn, "  %d tokens  one cell per token", T);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    // key axis: the first AXIS_ROWS characters of each column's first token, top to bottom
    for (int j = 0; j < nc; j++) {
        mech_tui_token_label(a->tokens[j * a->bin_c], lab, sizeof lab);
        for (int r = 0; r < AXIS_ROWS; r++) {
            // a space (GPT-2's word start) shows as '_' so short tokens stay readable
            char s[2] = {(size_t)r < strlen(lab) ? (lab[r] == ' ' ? '_' : lab[r]) : ' ', 0};
            mech_tui_grid_put(g, y0 + 1 + r, lw + 1 + j, j == ck ? MECH_TUI_SEL : MECH_TUI_HEADER, s, 1);
        }
    }
    const float *p = head_pat(a, a->layer, a->head);
    float *pooled = mech_malloc((size_t)nr * nc * sizeof *pooled);
    if (!pooled) return;
    if (diff) mech_tui_attn_pool_diff(a, a->layer, a->head, a->bin_r, a->bin_c, nr, nc, a->pool_mean, pooled);
    else mech_tui_attn_pool(a, a->layer, a->head, a->bin_r, a->bin_c, nr, nc, a->pool_mean, pooled);
    int y = y0 + 1 + AXIS_ROWS;
    for (int i = 0; i < nr; i++, y++) {
        mech_tui_token_label(a->tokens[i * a->bin_r], lab, sizeof lab);
        snprintf(line, sizeof line, "%*.*s", lw, lw, lab);
        mech_tui_grid_put(g, y, 0, i == cq ? MECH_TUI_SEL : MECH_TUI_HEADER, line, lw);
        for (int j = 0; j < nc; j++) {
            if (diff) put_diff(g, y, lw + 1 + j, pooled[(size_t)i * nc + j]);
            else put_heat(g, y, lw + 1 + j, pooled[(size_t)i * nc + j]);
            mech_tui_cell *c = mech_tui_grid_at(g, y, lw + 1 + j);
            if (c && (i == cq || j == ck)) c->role = i == cq && j == ck ? MECH_TUI_SEL : MECH_TUI_CROSS;
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
    if ((a->bin_r > 1 || a->bin_c > 1) && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, diff ? "  cell %s %+.4f" : "  cell %s %.4f", a->pool_mean ? "mean" : "max",
                 diff ? pool_diff_cell(a, p, head_cpat(a, a->layer, a->head), cq, ck, a->bin_r, a->bin_c, a->pool_mean)
                      : pool_cell(a, p, cq, ck, a->bin_r, a->bin_c, a->pool_mean));
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

// The heads in display order: layer x head, or by a score (highest first).
static void grid_order(const mech_tui_attn *a, int *order) {
    int n = a->L * a->NH;
    for (int i = 0; i < n; i++) order[i] = i;
    if (a->grid_sort > 0 && a->scores) {
        order_scores = a->scores + (size_t)(a->grid_sort - 1) * n;
        qsort(order, (size_t)n, sizeof *order, cmp_score_desc);
        order_scores = NULL;
    }
}

int mech_tui_attn_grid_key(mech_tui_attn *a, int key) {
    int n = a->L * a->NH, pr = a->grid_per_row > 0 ? a->grid_per_row : a->NH;
    if (key == 's') {
        if (!a->scores) return MECH_TUI_NONE;
        a->grid_sort = (a->grid_sort + 1) % (MECH_TUI_SCORE_KINDS + 1);
        return MECH_TUI_REDRAW;
    }
    int *order = mech_malloc((size_t)n * sizeof *order);
    if (!order) return MECH_TUI_NONE;
    grid_order(a, order);
    int idx = 0; // the cursor's position in display order
    for (int i = 0; i < n; i++)
        if (order[i] == a->gl * a->NH + a->gh) idx = i;
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

void mech_tui_attn_grid_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h) {
    char line[256], p[16], d[16], in[16];
    int per_row, tw, th, shown;
    if (h < 2 || a->T < 1) return;
    grid_layout(a, g->w, h, &per_row, &tw, &th, &shown);
    a->grid_per_row = per_row, a->grid_rows_shown = shown;
    // the sort first: the line is cut at the window's edge
    snprintf(line, sizeof line, "all heads%s%s: %d layers x %d heads  p previous-token  d duplicate-token  i induction",
             a->grid_sort > 0 && a->scores ? " sorted by " : "",
             a->grid_sort > 0 && a->scores ? score_names[a->grid_sort - 1] : "", a->L, a->NH);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    int n_heads = a->L * a->NH, cur = 0;
    int *order = mech_malloc((size_t)n_heads * sizeof *order);
    if (!order) return;
    grid_order(a, order);
    for (int i = 0; i < n_heads; i++)
        if (order[i] == a->gl * a->NH + a->gh) cur = i;
    int cur_row = cur / per_row;
    if (cur_row < a->grid_top) a->grid_top = cur_row;
    if (cur_row >= a->grid_top + shown) a->grid_top = cur_row - shown + 1;
    int hw = tw - 1, hh = th - 2; // the thumbnail's heatmap
    int br = ceil_div(a->T, hh), bc = ceil_div(a->T, hw);
    int nr = ceil_div(a->T, br), nc = ceil_div(a->T, bc);
    // thumbnails change only with the window size and the pooling mode:
    // pooled once for every head, then each frame just copies them
    size_t per = (size_t)nr * nc;
    if (!a->thumbs || a->thumb_r != nr || a->thumb_c != nc || a->thumb_br != br || a->thumb_bc != bc ||
        a->thumb_mean != a->pool_mean) {
        mech_free(a->thumbs);
        a->thumbs = mech_malloc(per * a->L * a->NH * sizeof *a->thumbs);
        if (!a->thumbs) {
            mech_free(order);
            return;
        }
        a->thumb_r = nr, a->thumb_c = nc, a->thumb_br = br, a->thumb_bc = bc, a->thumb_mean = a->pool_mean;
        for (int i = 0; i < a->L * a->NH; i++)
            mech_tui_attn_pool(a, i / a->NH, i % a->NH, br, bc, nr, nc, a->pool_mean, a->thumbs + per * i);
    }
    for (int r = 0; r < shown; r++)
        for (int c = 0; c < per_row; c++) {
            int pos = (a->grid_top + r) * per_row + c;
            if (pos >= n_heads) break;
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
            for (int i = 0; i < nr; i++)
                for (int j = 0; j < nc; j++) put_heat(g, y + 2 + i, x + j, cells[(size_t)i * nc + j]);
        }
    mech_free(order);
}
