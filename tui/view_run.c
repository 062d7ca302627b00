/*
** tui/view_run.c: one stored run, opened from the runs list. A patch run
** is its effect grid (mean `effect` over pairs) as a layer x position or
** layer x head heatmap with a cursor; every other kind is a table of text
** lines built once at load (lens: top token per layer and position of the
** first item; heads: scores; attrib: components by |attribution|; acdc:
** kept edges). Results are read only through data/.
*/
#include "tui/tui.h"

#include "data/data.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mech_tui_runview_deinit(mech_tui_runview *v) {
    for (size_t i = 0; i < v->n_lines; i++) mech_free(v->lines[i]);
    mech_free(v->lines);
    mech_free(v->effect);
    memset(v, 0, sizeof *v);
}

// Appends a printf-formatted line; 0 when out of memory.
static int add_line(mech_tui_runview *v, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int add_line(mech_tui_runview *v, size_t *cap, const char *fmt, ...) {
    if (v->n_lines == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        char **nl = mech_realloc(v->lines, nc * sizeof *nl);
        if (!nl) return 0;
        v->lines = nl, *cap = nc;
    }
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    size_t n = strlen(buf) + 1;
    char *s = mech_malloc(n);
    if (!s) return 0;
    memcpy(s, buf, n);
    v->lines[v->n_lines++] = s;
    return 1;
}

// The patch heatmap: mean of `effect` over items per (layer, column). A
// sweep over positions and heads (head_out_by_pos) is averaged over heads.
static mech_status load_patch(mech_tui_runview *v, const mech_result_row *r, size_t n, mech_err *err) {
    int L = 0, P = 0, H = 0, items = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].metric, "effect") || r[i].layer < 0) continue;
        if (r[i].layer + 1 > L) L = r[i].layer + 1;
        if (r[i].pos + 1 > P) P = r[i].pos + 1;
        if (r[i].head + 1 > H) H = r[i].head + 1;
        if (r[i].item + 1 > items) items = r[i].item + 1;
    }
    v->by_head = P == 0 && H > 0;
    int A = v->by_head ? H : P;
    if (!L || !A) return MECH_OK; // no effects yet (a run just started)
    double *sum = mech_calloc((size_t)L * A, sizeof *sum);
    int *cnt = mech_calloc((size_t)L * A, sizeof *cnt);
    if (!sum || !cnt) {
        mech_free(sum), mech_free(cnt);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(r[i].metric, "effect") || r[i].layer < 0 || isnan(r[i].value)) continue;
        int a = v->by_head ? r[i].head : r[i].pos;
        if (a < 0) continue;
        sum[(size_t)r[i].layer * A + a] += r[i].value, cnt[(size_t)r[i].layer * A + a]++;
    }
    for (size_t i = 0; i < (size_t)L * A; i++) sum[i] = cnt[i] ? sum[i] / cnt[i] : NAN;
    mech_free(cnt);
    v->effect = sum, v->L = L, v->A = A;
    snprintf(v->title, sizeof v->title, "mean effect over %d pair%s, layer x %s%s", items, items == 1 ? "" : "s",
             v->by_head ? "head" : "position", P > 0 && H > 0 ? " (mean over heads)" : "");
    return MECH_OK;
}

static const mech_result_row *sort_rows;
static int cmp_abs_desc(const void *pa, const void *pb) {
    double a = fabs(sort_rows[*(const size_t *)pa].value), b = fabs(sort_rows[*(const size_t *)pb].value);
    if (isnan(a)) a = -1;
    if (isnan(b)) b = -1;
    return (a < b) - (a > b);
}

static mech_status load_table(mech_tui_runview *v, const mech_result_row *r, size_t n, mech_err *err) {
    size_t cap = 0;
    int ok = 1;
    if (!strcmp(v->kind, "lens")) {
        snprintf(v->title, sizeof v->title, "top token per layer and position (item 0)");
        ok = add_line(v, &cap, "%-6s %-5s %-8s %s", "layer", "pos", "token", "prob");
        for (size_t i = 0; ok && i < n; i++)
            if (r[i].item == 0 && r[i].rank == 0 && !strcmp(r[i].metric, "prob"))
                ok = add_line(v, &cap, "%-6d %-5d %-8lld %.4f", r[i].layer, r[i].pos, (long long)r[i].token, r[i].value);
    } else if (!strcmp(v->kind, "heads")) {
        snprintf(v->title, sizeof v->title, "head scores, layer x head");
        ok = add_line(v, &cap, "%-6s %-18s %s", "head", "score", "value");
        for (size_t i = 0; ok && i < n; i++) {
            char h[24];
            snprintf(h, sizeof h, "L%dH%d", r[i].layer, r[i].head);
            ok = add_line(v, &cap, "%-6s %-18s %.4f", h, r[i].metric, r[i].value);
        }
    } else if (!strcmp(v->kind, "attrib") || !strcmp(v->kind, "acdc")) {
        int acdc = !strcmp(v->kind, "acdc");
        size_t *idx = mech_malloc((n ? n : 1) * sizeof *idx), m = 0;
        if (!idx) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            const char *k = r[i].metric;
            if (acdc ? !strcmp(k, "kept")
                     : r[i].item == 0 && (!strcmp(k, "head") || !strcmp(k, "mlp") || !strcmp(k, "embed") ||
                                          !strcmp(k, "attn_bias")))
                idx[m++] = i;
        }
        sort_rows = r;
        qsort(idx, m, sizeof *idx, cmp_abs_desc);
        snprintf(v->title, sizeof v->title, acdc ? "kept edges by |effect| (%zu)" : "components by |attribution| (item 0)",
                 m);
        int w = acdc ? 64 : 16; // edge names ("hook_embed[:]->blocks.0.hook_v_input[:, :, 0]") are long
        ok = add_line(v, &cap, "%-*s %s", w, acdc ? "edge" : "component", acdc ? "effect" : "attribution");
        for (size_t j = 0; ok && j < m; j++) {
            const mech_result_row *x = &r[idx[j]];
            char c[80];
            if (acdc) snprintf(c, sizeof c, "%.64s", x->site);
            else if (x->head >= 0) snprintf(c, sizeof c, "L%dH%d", x->layer, x->head);
            else if (x->layer >= 0) snprintf(c, sizeof c, "L%d.%s", x->layer, x->metric);
            else snprintf(c, sizeof c, "%s", x->metric);
            ok = add_line(v, &cap, "%-*s %.4f", w, c, x->value);
        }
        mech_free(idx);
    } else {
        snprintf(v->title, sizeof v->title, "results");
        ok = add_line(v, &cap, "%-5s %-24s %-6s %-5s %-5s %-18s %s", "item", "site", "layer", "pos", "head", "metric",
                      "value");
        for (size_t i = 0; ok && i < n; i++)
            ok = add_line(v, &cap, "%-5d %-24.24s %-6d %-5d %-5d %-18.18s %.4f", r[i].item, r[i].site, r[i].layer,
                          r[i].pos, r[i].head, r[i].metric, r[i].value);
    }
    return ok ? MECH_OK : mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
}

mech_status mech_tui_runview_load(const char *path, int64_t id, mech_tui_runview *v, mech_err *err) {
    mech_tui_runview_deinit(v);
    mech_store *s = NULL;
    mech_run_info ri = {0};
    mech_result_row *rows = NULL;
    size_t n = 0;
    mech_status st = mech_store_open_read(path, &s, err);
    if (st) return st;
    if ((st = mech_store_run_info(s, id, &ri, err)) || (st = mech_store_results_get(s, id, NULL, &rows, &n, err)))
        goto done;
    v->id = id;
    snprintf(v->kind, sizeof v->kind, "%s", ri.kind ? ri.kind : "?");
    st = !strcmp(v->kind, "patch") ? load_patch(v, rows, n, err) : load_table(v, rows, n, err);
    if (!st && !v->effect && !v->n_lines) snprintf(v->title, sizeof v->title, "no results yet");
done:
    if (st) mech_tui_runview_deinit(v);
    mech_store_results_free(rows, n);
    mech_store_run_info_deinit(&ri);
    mech_store_close(s);
    return st;
}

int mech_tui_runview_key(mech_tui_runview *v, int key) {
    if (key == 'q' || key == MECH_TUI_KEY_ESC) return MECH_TUI_QUIT;
    int page = v->page > 1 ? v->page : 1;
    if (v->effect) {
        switch (key) {
        case MECH_TUI_KEY_UP: case 'k': v->cl--; break;
        case MECH_TUI_KEY_DOWN: case 'j': v->cl++; break;
        case MECH_TUI_KEY_LEFT: case 'h': v->ca--; break;
        case MECH_TUI_KEY_RIGHT: case 'l': v->ca++; break;
        case MECH_TUI_KEY_HOME: case 'g': v->cl = 0, v->ca = 0; break;
        case MECH_TUI_KEY_END: case 'G': v->cl = v->L - 1, v->ca = v->A - 1; break;
        default: return MECH_TUI_NONE;
        }
        v->cl = v->cl < 0 ? 0 : v->cl >= v->L ? v->L - 1 : v->cl;
        v->ca = v->ca < 0 ? 0 : v->ca >= v->A ? v->A - 1 : v->ca;
        return MECH_TUI_REDRAW;
    }
    long top = (long)v->top, last = v->n_lines > 1 ? (long)v->n_lines - 2 : 0; // row 0 is the header
    switch (key) {
    case MECH_TUI_KEY_UP: case 'k': top--; break;
    case MECH_TUI_KEY_DOWN: case 'j': top++; break;
    case MECH_TUI_KEY_PGUP: top -= page; break;
    case MECH_TUI_KEY_PGDN: top += page; break;
    case MECH_TUI_KEY_HOME: case 'g': top = 0; break;
    case MECH_TUI_KEY_END: case 'G': top = last; break;
    default: return MECH_TUI_NONE;
    }
    v->top = (size_t)(top < 0 ? 0 : top > last ? last : top);
    return MECH_TUI_REDRAW;
}

void mech_tui_runview_render(mech_tui_runview *v, mech_tui_grid *g, int y0, int h) {
    char line[256];
    snprintf(line, sizeof line, "run %lld  %s  %s", (long long)v->id, v->kind, v->title);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    if (h < 3) return;
    if (!v->effect) {
        // a table: the header row stays, the rest scrolls
        if (v->n_lines) mech_tui_grid_put(g, y0 + 2, 0, MECH_TUI_HEADER, v->lines[0], -1);
        v->page = h - 3;
        for (int i = 0; i < h - 3 && v->top + 1 + (size_t)i < v->n_lines; i++)
            mech_tui_grid_put(g, y0 + 3 + i, 0, MECH_TUI_TEXT, v->lines[v->top + 1 + (size_t)i], -1);
        return;
    }
    // the heatmap: shade by |effect| relative to the largest |effect|, the
    // sign in the cursor line (the glyph ramp has no diverging form)
    double mx = 0;
    for (int i = 0; i < v->L * v->A; i++)
        if (!isnan(v->effect[i]) && fabs(v->effect[i]) > mx) mx = fabs(v->effect[i]);
    double e = v->effect[(size_t)v->cl * v->A + v->ca];
    snprintf(line, sizeof line, "L%d %s %d  effect %.4f   (max |effect| %.4f)", v->cl, v->by_head ? "head" : "pos",
             v->ca, e, mx);
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_TEXT, line, -1);
    const int lw = 5, cw = 3; // label column, cell width
    int cols = (g->w - lw) / cw;
    if (cols < 1) return;
    int c0 = v->ca >= cols ? v->ca - cols + 1 : 0; // keep the cursor's column on screen
    for (int a = c0; a < v->A && a - c0 < cols; a++) {
        snprintf(line, sizeof line, "%*d", cw, a);
        mech_tui_grid_put(g, y0 + 2, lw + (a - c0) * cw, a == v->ca ? MECH_TUI_SEL : MECH_TUI_HEADER, line, cw);
    }
    int rows = h - 3, l0 = v->cl >= rows ? v->cl - rows + 1 : 0;
    for (int l = l0; l < v->L && l - l0 < rows; l++) {
        int y = y0 + 3 + (l - l0);
        snprintf(line, sizeof line, "L%-3d", l);
        mech_tui_grid_put(g, y, 0, l == v->cl ? MECH_TUI_SEL : MECH_TUI_HEADER, line, lw);
        for (int a = c0; a < v->A && a - c0 < cols; a++) {
            double x = v->effect[(size_t)l * v->A + a];
            int lv = isnan(x) || mx <= 0 ? 0 : mech_tui_level((float)(fabs(x) / mx));
            for (int k = 0; k < cw; k++) {
                mech_tui_cell *c = mech_tui_grid_at(g, y, lw + (a - c0) * cw + k);
                if (!c) continue;
                int cur = l == v->cl && a == v->ca;
                *c = (mech_tui_cell){.ch = cur && k == 0 ? '[' : cur && k == cw - 1 ? ']' : mech_tui_ramp[lv],
                                     .role = cur ? MECH_TUI_SEL : MECH_TUI_HEAT, .level = (uint8_t)lv, .heat = 1};
            }
        }
    }
}
