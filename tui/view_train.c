/*
** tui/view_train.c: the Training view, a `mech train` run's curves (loss,
** learning rate, gradient norm per step) as a chart of upper-half blocks:
** each text row holds two chart rows, each column the smallest to the
** largest value of the steps it covers (so a noisy loss shows its spread,
** not one sample of it), x = step. The cursor sits on a step and the line
** above the chart gives its three values exactly; the run's settings and
** held-out scores are in a panel on the right.
**
** The run is read once (read-only, through data/); everything after that is
** a pure function of the loaded curves, so the tests compare the chart's
** columns with SQL over the results table.
*/
#include "tui/tui.h"

#include "data/data.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *curve_names[MECH_TUI_TRAIN_CURVES_] = {"loss", "lr", "grad_norm"};

void mech_tui_train_deinit(mech_tui_train *v) {
    mech_free(v->step);
    for (int c = 0; c < MECH_TUI_TRAIN_CURVES_; c++) mech_free(v->val[c]);
    memset(v, 0, sizeof *v);
}

static int cmp_int(const void *a, const void *b) {
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

static int curve_of(const char *metric) {
    for (int c = 0; c < MECH_TUI_TRAIN_CURVES_; c++)
        if (!strcmp(metric, curve_names[c])) return c;
    return -1;
}

static void side_line(mech_tui_train *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void side_line(mech_tui_train *v, const char *fmt, ...) {
    if (v->n_side >= MECH_TUI_TRAIN_SIDE) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->side[v->n_side++], sizeof v->side[0], fmt, ap);
    va_end(ap);
}

// The settings panel from the run's parameters (what mech train records).
static void settings(mech_tui_train *v, const mech_json *p, const char *model) {
    side_line(v, "task       %s", mech_json_str(p, "task", "?"));
    const char *resume = mech_json_str(p, "resume", NULL);
    side_line(v, "steps      %.0f -> %.0f of %.0f", mech_json_num(p, "start_step", 0), mech_json_num(p, "end_step", 0),
              mech_json_num(p, "steps", 0));
    if (resume) side_line(v, "resumed    %s", strrchr(resume, '/') ? strrchr(resume, '/') + 1 : resume);
    if (model) side_line(v, "out        %s", strrchr(model, '/') ? strrchr(model, '/') + 1 : model);
    const mech_json *c = mech_json_get(p, "config");
    if (c && c->type == MECH_JSON_OBJECT) {
        int L = (int)mech_json_num(c, "n_layers", 0), H = (int)mech_json_num(c, "n_heads", 0);
        side_line(v, "model      %d layer%s x %d head%s, d_model %.0f", L, L == 1 ? "" : "s", H, H == 1 ? "" : "s",
                  mech_json_num(c, "d_model", 0));
        if (mech_json_bool(c, "attn_only"))
            side_line(v, "           d_head %.0f, attn-only", mech_json_num(c, "d_head", 0));
        else
            side_line(v, "           d_head %.0f, d_mlp %.0f %s", mech_json_num(c, "d_head", 0),
                      mech_json_num(c, "d_mlp", 0), mech_json_str(c, "act", ""));
        side_line(v, "           vocab %.0f, n_ctx %.0f, %s", mech_json_num(c, "d_vocab", 0),
                  mech_json_num(c, "n_ctx", 0), mech_json_str(c, "normalization", "?"));
    }
    side_line(v, "optimizer  AdamW lr %g -> %g", mech_json_num(p, "lr", NAN), mech_json_num(p, "min_lr", NAN));
    side_line(v, "           warmup %.0f, wd %g, clip %g", mech_json_num(p, "warmup", NAN), mech_json_num(p, "wd", NAN),
              mech_json_num(p, "clip", NAN));
    side_line(v, "           betas %g %g, eps %g", mech_json_num(p, "beta1", NAN), mech_json_num(p, "beta2", NAN),
              mech_json_num(p, "eps", NAN));
    side_line(v, "batch      %.0f x %.0f tokens, accum %.0f", mech_json_num(p, "batch", NAN),
              mech_json_num(p, "seq", NAN), mech_json_num(p, "accum", NAN));
    side_line(v, "seed       %.0f, threads %.0f, %.3g s", mech_json_num(p, "seed", NAN), mech_json_num(p, "threads", NAN),
              mech_json_num(p, "seconds", NAN));
}

mech_status mech_tui_train_load(const char *path, int64_t id, mech_tui_train *v, mech_err *err) {
    mech_tui_train_deinit(v);
    v->eval_token_acc = v->eval_seq_acc = v->eval_loss = NAN;
    mech_store *s = NULL;
    mech_run_info ri = {0};
    mech_result_row *rows = NULL;
    mech_json *pj = NULL;
    size_t n = 0;
    mech_status st = mech_store_open_read(path, &s, err);
    if (st) return st;
    if ((st = mech_store_run_info(s, id, &ri, err))) goto done;
    if (!ri.kind || strcmp(ri.kind, "train")) {
        st = mech_err_set(err, MECH_ERR_ARG, "run %lld is a %s run, not a train run", (long long)id,
                          ri.kind ? ri.kind : "?");
        goto done;
    }
    if ((st = mech_store_results_get(s, id, NULL, &rows, &n, err))) goto done;
    // the steps: the distinct items of the per-step rows, ascending
    int *items = mech_malloc((n ? n : 1) * sizeof *items);
    if (!items) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    int m = 0;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(rows[i].site, "train") && curve_of(rows[i].metric) >= 0) items[m++] = rows[i].item;
    qsort(items, (size_t)m, sizeof *items, cmp_int);
    int k = 0;
    for (int i = 0; i < m; i++)
        if (!k || items[i] != items[k - 1]) items[k++] = items[i];
    v->step = items, v->n = k;
    for (int c = 0; c < MECH_TUI_TRAIN_CURVES_; c++) {
        if (!(v->val[c] = mech_malloc((size_t)(k ? k : 1) * sizeof *v->val[c]))) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < k; i++) v->val[c][i] = NAN;
    }
    for (size_t i = 0; i < n; i++) {
        const mech_result_row *r = &rows[i];
        int c = curve_of(r->metric);
        if (!strcmp(r->site, "train") && c >= 0) {
            const int *at = bsearch(&r->item, v->step, (size_t)k, sizeof *v->step, cmp_int);
            v->val[c][at - v->step] = r->value;
        } else if (!strcmp(r->site, "eval")) {
            if (!strcmp(r->metric, "eval_token_acc")) v->eval_token_acc = r->value;
            else if (!strcmp(r->metric, "eval_seq_acc")) v->eval_seq_acc = r->value;
            else if (!strcmp(r->metric, "eval_loss")) v->eval_loss = r->value;
        }
    }
    if (ri.params_json && !mech_json_parse(ri.params_json, strlen(ri.params_json), &pj, NULL))
        settings(v, pj, ri.model_path);
    v->id = id;
    v->cur = k ? k - 1 : 0; // the end of training first: where the run got to
    const char *task = pj ? mech_json_str(pj, "task", "?") : "?";
    const char *status = ri.status ? ri.status : "?";
    if (k)
        snprintf(v->title, sizeof v->title, "run %lld  train  %.60s  %d steps (%d..%d)  final loss %.4g%s%s%s",
                 (long long)id, task, k, v->step[0], v->step[k - 1], v->val[MECH_TUI_TRAIN_LOSS][k - 1],
                 strcmp(status, "done") ? "  [" : "", strcmp(status, "done") ? status : "",
                 strcmp(status, "done") ? "]" : "");
    else snprintf(v->title, sizeof v->title, "run %lld  train  %.60s  no steps stored  [%s]", (long long)id, task, status);
done:
    if (st) mech_tui_train_deinit(v);
    mech_json_free(pj);
    mech_store_results_free(rows, n);
    mech_store_run_info_deinit(&ri);
    mech_store_close(s);
    return st;
}

// --- The chart's geometry -------------------------------------------------------

void mech_tui_train_span(const mech_tui_train *v, int col, int cols, int *i0, int *i1) {
    *i0 = *i1 = 0;
    if (cols <= 0 || col < 0 || col >= cols || v->n <= 0) return;
    // 64-bit: 10^6 steps x 1000 columns
    int a = (int)((int64_t)col * v->n / cols), b = (int)((int64_t)(col + 1) * v->n / cols);
    *i0 = a, *i1 = b > a ? b : a + 1;
}

int mech_tui_train_col(const mech_tui_train *v, int i, int cols) {
    if (i < 0 || i >= v->n || cols <= 0) return -1;
    // a scan: a few hundred columns, once per key or frame
    for (int c = 0; c < cols; c++) {
        int i0, i1;
        mech_tui_train_span(v, c, cols, &i0, &i1);
        if (i >= i0 && i < i1) return c;
    }
    return -1;
}

static int shown(const mech_tui_train *v, double x) { return !isnan(x) && !isinf(x) && (!v->log_y || x > 0); }

int mech_tui_train_range(const mech_tui_train *v, int col, int cols, double *lo, double *hi) {
    int i0, i1, k = 0;
    *lo = *hi = NAN;
    mech_tui_train_span(v, col, cols, &i0, &i1);
    for (int i = i0; i < i1; i++) {
        double x = v->val[v->curve][i];
        if (!shown(v, x)) continue;
        if (!k || x < *lo) *lo = x;
        if (!k || x > *hi) *hi = x;
        k++;
    }
    return k;
}

int mech_tui_train_axis(const mech_tui_train *v, double *lo, double *hi) {
    return mech_tui_train_range(v, 0, 1, lo, hi);
}

// The chart row (0 at the bottom, of rows2) of value x on the axis lo..hi.
static int chart_row(const mech_tui_train *v, double x, double lo, double hi, int rows2) {
    double f = v->log_y ? log10(x) : x, a = v->log_y ? log10(lo) : lo, b = v->log_y ? log10(hi) : hi;
    if (!(b > a)) return rows2 / 2; // a flat curve: the middle
    int r = (int)lround((f - a) / (b - a) * (rows2 - 1));
    return r < 0 ? 0 : r >= rows2 ? rows2 - 1 : r;
}

// --- Keys -------------------------------------------------------------------------

int mech_tui_train_key(mech_tui_train *v, int key) {
    int cols = v->cols > 0 ? v->cols : 1, c = mech_tui_train_col(v, v->cur, cols), i0, i1;
    switch (key) {
    case 'h': case MECH_TUI_KEY_LEFT:
        // to the first step of the previous column that has another step
        for (int d = c - 1; d >= 0; d--) {
            mech_tui_train_span(v, d, cols, &i0, &i1);
            if (i0 < v->cur) {
                v->cur = i0;
                break;
            }
        }
        break;
    case 'l': case MECH_TUI_KEY_RIGHT:
        for (int d = c + 1; d < cols; d++) {
            mech_tui_train_span(v, d, cols, &i0, &i1);
            if (i0 > v->cur) {
                v->cur = i0;
                break;
            }
        }
        break;
    case ',': v->cur--; break;
    case '.': v->cur++; break;
    case 'g': case MECH_TUI_KEY_HOME: v->cur = 0; break;
    case 'G': case MECH_TUI_KEY_END: v->cur = v->n - 1; break;
    case 'c': v->curve = (v->curve + 1) % MECH_TUI_TRAIN_CURVES_; break;
    case '1': case '2': case '3': v->curve = key - '1'; break;
    case 'y': v->log_y = !v->log_y; break;
    case 's': v->panel_flip = !v->panel_flip; break;
    case 'q': case MECH_TUI_KEY_ESC: return MECH_TUI_QUIT;
    default: return MECH_TUI_NONE;
    }
    if (v->cur >= v->n) v->cur = v->n - 1;
    if (v->cur < 0) v->cur = 0;
    return MECH_TUI_REDRAW;
}

// --- Drawing --------------------------------------------------------------------

static void put_value(char *out, size_t cap, double x) {
    if (isnan(x)) snprintf(out, cap, "-");
    else snprintf(out, cap, "%.4g", x);
}

void mech_tui_train_render(mech_tui_train *v, mech_tui_grid *g, int y0, int h) {
    char line[512], a[32], b[32], c[32];
    mech_tui_grid_put(g, y0, 0, v->n ? MECH_TUI_TITLE : MECH_TUI_ERROR, v->title[0] ? v->title : "no run", -1);
    if (!v->n || h < 2) return;
    int i = v->cur;
    put_value(a, sizeof a, v->val[MECH_TUI_TRAIN_LOSS][i]);
    put_value(b, sizeof b, v->val[MECH_TUI_TRAIN_LR][i]);
    put_value(c, sizeof c, v->val[MECH_TUI_TRAIN_GRAD_NORM][i]);
    snprintf(line, sizeof line, "step %d  loss %s  lr %s  grad_norm %s", v->step[i], a, b, c);
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_HEADER, line, -1);
    if (h < 3) return;
    // the side panel when the window is wide enough for a chart beside it
    // the side panel: beside the chart from 90 columns, s shows / hides it
    // (on a narrow window it takes what leaves the chart 10 columns)
    int label_w = 10, chart_x = label_w + 1, side_w = 0;
    if ((g->w >= 90) != (v->panel_flip != 0)) {
        side_w = g->w - chart_x - 2 - 10;
        side_w = side_w > 44 ? 44 : side_w < 16 ? 0 : side_w;
    }
    int cols = g->w - chart_x - (side_w ? side_w + 2 : 0);
    int rows = h - 5; // curve line, chart, axis, step labels
    double lo = NAN, hi = NAN;
    int have = mech_tui_train_axis(v, &lo, &hi);
    snprintf(line, sizeof line, "chart: %s%s  (c curve, 1 2 3, y log/linear)%s", curve_names[v->curve],
             v->log_y ? ", log scale" : "", have ? "" : "  nothing to draw");
    mech_tui_grid_put(g, y0 + 2, 0, MECH_TUI_TEXT, line, side_w ? chart_x + cols : -1);
    if (side_w) {
        int x = g->w - side_w, y = y0 + 2;
        mech_tui_grid_put(g, y++, x, MECH_TUI_HEADER, "settings", side_w);
        for (int k = 0; k < v->n_side && y < y0 + h; k++) mech_tui_grid_put(g, y++, x, MECH_TUI_TEXT, v->side[k], side_w);
        if (!isnan(v->eval_token_acc) || !isnan(v->eval_seq_acc) || !isnan(v->eval_loss)) {
            if (y < y0 + h) mech_tui_grid_put(g, y++, x, MECH_TUI_HEADER, "held-out", side_w);
            const char *names[3] = {"token acc", "seq acc", "loss"};
            double vals[3] = {v->eval_token_acc, v->eval_seq_acc, v->eval_loss};
            for (int k = 0; k < 3 && y < y0 + h; k++) {
                if (isnan(vals[k])) continue;
                snprintf(line, sizeof line, "  %-9s  %.4g", names[k], vals[k]);
                mech_tui_grid_put(g, y++, x, MECH_TUI_TEXT, line, side_w);
            }
        }
    }
    if (rows < 2 || cols < 4) return;
    v->cols = cols;
    int cy = y0 + 3, rows2 = 2 * rows, ccol = mech_tui_train_col(v, v->cur, cols);
    // y labels: top, middle, bottom of the axis
    if (have) {
        double mid = v->log_y ? sqrt(lo * hi) : (lo + hi) / 2;
        snprintf(line, sizeof line, "%*.4g", label_w, hi);
        mech_tui_grid_put(g, cy, 0, MECH_TUI_DIM, line, label_w);
        snprintf(line, sizeof line, "%*.4g", label_w, mid);
        mech_tui_grid_put(g, cy + rows / 2, 0, MECH_TUI_DIM, line, label_w);
        snprintf(line, sizeof line, "%*.4g", label_w, lo);
        mech_tui_grid_put(g, cy + rows - 1, 0, MECH_TUI_DIM, line, label_w);
    }
    for (int y = 0; y < rows; y++) mech_tui_grid_put(g, cy + y, label_w, MECH_TUI_DIM, "|", 1);
    for (int col = 0; col < cols; col++) {
        double clo, chi;
        int r0 = 1, r1 = 0; // lit chart rows r0..r1 (none when r0 > r1)
        if (have && mech_tui_train_range(v, col, cols, &clo, &chi))
            r0 = chart_row(v, clo, lo, hi, rows2), r1 = chart_row(v, chi, lo, hi, rows2);
        int at_cur = col == ccol;
        for (int y = 0; y < rows; y++) {
            int up = 2 * (rows - 1 - y) + 1, dn = up - 1; // the chart rows of this text row
            int on_up = up >= r0 && up <= r1, on_dn = dn >= r0 && dn <= r1;
            if (!on_up && !on_dn) continue; // blank, not a heat cell: the chart has no background
            int lit = at_cur ? 9 : 8, sg = at_cur ? 1 : 0; // the cursor's column in the diverging red
            mech_tui_grid_heat2(g, cy + y, chart_x + col, on_up ? lit : 0, on_up ? sg : 0, on_dn ? lit : 0,
                                on_dn ? sg : 0);
            mech_tui_cell *cell = mech_tui_grid_at(g, cy + y, chart_x + col);
            // without colour or UTF-8: which halves are lit
            if (cell) cell->ch = at_cur ? '#' : on_up && on_dn ? ':' : on_up ? '\'' : '.';
        }
    }
    // the x axis with the cursor's mark, then the first, cursor and last steps
    int ay = cy + rows;
    mech_tui_grid_put(g, ay, label_w, MECH_TUI_DIM, "+", 1);
    for (int col = 0; col < cols; col++)
        mech_tui_grid_put(g, ay, chart_x + col, col == ccol ? MECH_TUI_SEL : MECH_TUI_DIM, col == ccol ? "^" : "-", 1);
    snprintf(line, sizeof line, "step %d", v->step[0]);
    mech_tui_grid_put(g, ay + 1, chart_x, MECH_TUI_DIM, line, -1);
    snprintf(line, sizeof line, "%d", v->step[v->n - 1]);
    int lx = chart_x + cols - (int)strlen(line);
    mech_tui_grid_put(g, ay + 1, lx, MECH_TUI_DIM, line, -1);
    snprintf(line, sizeof line, "%d", v->step[v->cur]);
    int cx = chart_x + ccol - (int)strlen(line) / 2, cw = (int)strlen(line);
    if (cx < chart_x + 8) cx = chart_x + 8;
    if (cx + cw < lx - 1) mech_tui_grid_put(g, ay + 1, cx, MECH_TUI_HEADER, line, -1);
}
