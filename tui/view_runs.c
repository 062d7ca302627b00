/*
** tui/view_runs.c: the runs browser as a pure view model: the rows of the
** database, filtered by kind and a search string, sorted, with a selection
** that survives a reload (by run id).
*/
#include "tui/tui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mech_tui_runs_deinit(mech_tui_runs *v) {
    mech_free(v->rows);
    mech_free(v->vis);
    memset(v, 0, sizeof *v);
}

const mech_tui_run_row *mech_tui_runs_selected(const mech_tui_runs *v) {
    return v->n_vis && v->cur < v->n_vis ? &v->rows[v->vis[v->cur]] : NULL;
}

static int icontains(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (!n) return 1;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && (hay[i] | 32) == (needle[i] | 32)) i++;
        if (i == n) return 1;
    }
    return 0;
}

static int matches(const mech_tui_runs *v, const mech_tui_run_row *r) {
    if (v->kind[0] && strcmp(v->kind, r->kind)) return 0;
    if (!v->search[0]) return 1;
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)r->id);
    return icontains(r->kind, v->search) || icontains(r->status, v->search) || icontains(r->model, v->search) ||
           icontains(r->date, v->search) || icontains(r->figure, v->search) || !strcmp(id, v->search);
}

// qsort has no context argument in C11: the sort key travels in a static,
// which is fine for a single-threaded interface.
static const mech_tui_runs *sort_view;

static int cmp_rows(const void *pa, const void *pb) {
    const mech_tui_run_row *a = &sort_view->rows[*(const size_t *)pa], *b = &sort_view->rows[*(const size_t *)pb];
    int c = 0;
    switch (sort_view->sort) {
    case MECH_TUI_SORT_KIND: c = strcmp(a->kind, b->kind); break;
    case MECH_TUI_SORT_STATUS: c = strcmp(a->status, b->status); break;
    case MECH_TUI_SORT_DATE: c = strcmp(a->date, b->date); break;
    default: break;
    }
    if (!c) c = (a->id > b->id) - (a->id < b->id); // ties in id order: a stable order
    return sort_view->desc ? -c : c;
}

mech_status mech_tui_runs_refilter(mech_tui_runs *v) {
    const mech_tui_run_row *sel = mech_tui_runs_selected(v);
    int64_t sel_id = sel ? sel->id : -1;
    size_t *vis = mech_realloc(v->vis, (v->n ? v->n : 1) * sizeof *vis);
    if (!vis) return MECH_ERR_NOMEM;
    v->vis = vis, v->n_vis = 0;
    for (size_t i = 0; i < v->n; i++)
        if (matches(v, &v->rows[i])) v->vis[v->n_vis++] = i;
    sort_view = v;
    qsort(v->vis, v->n_vis, sizeof *v->vis, cmp_rows);
    sort_view = NULL;
    v->cur = 0;
    for (size_t i = 0; i < v->n_vis; i++)
        if (v->rows[v->vis[i]].id == sel_id) v->cur = i;
    return MECH_OK;
}

mech_status mech_tui_runs_set(mech_tui_runs *v, mech_tui_run_row *rows, size_t n) {
    int64_t sel_id = mech_tui_runs_selected(v) ? mech_tui_runs_selected(v)->id : -1;
    mech_free(v->rows);
    v->rows = rows, v->n = n;
    v->n_vis = 0; // the old indices point into the old rows
    mech_status st = mech_tui_runs_refilter(v);
    for (size_t i = 0; i < v->n_vis; i++)
        if (v->rows[v->vis[i]].id == sel_id) v->cur = i;
    return st;
}

// The next kind after the current filter, in sorted order, "" after the last.
static void next_kind(mech_tui_runs *v) {
    const char *best = NULL;
    for (size_t i = 0; i < v->n; i++) {
        const char *k = v->rows[i].kind;
        if (strcmp(k, v->kind) > 0 && (!best || strcmp(k, best) < 0)) best = k;
    }
    snprintf(v->kind, sizeof v->kind, "%s", best ? best : "");
}

int mech_tui_runs_key(mech_tui_runs *v, int key) {
    size_t page = v->page > 1 ? (size_t)v->page : 1;
    switch (key) {
    case 'j': case MECH_TUI_KEY_DOWN: if (v->cur + 1 < v->n_vis) v->cur++; return MECH_TUI_REDRAW;
    case 'k': case MECH_TUI_KEY_UP: if (v->cur) v->cur--; return MECH_TUI_REDRAW;
    case MECH_TUI_KEY_PGDN: v->cur = v->n_vis ? (v->cur + page < v->n_vis ? v->cur + page : v->n_vis - 1) : 0;
        return MECH_TUI_REDRAW;
    case MECH_TUI_KEY_PGUP: v->cur = v->cur > page ? v->cur - page : 0; return MECH_TUI_REDRAW;
    case 'g': case MECH_TUI_KEY_HOME: v->cur = 0; return MECH_TUI_REDRAW;
    case 'G': case MECH_TUI_KEY_END: v->cur = v->n_vis ? v->n_vis - 1 : 0; return MECH_TUI_REDRAW;
    case 's': v->sort = (v->sort + 1) % MECH_TUI_SORT_COUNT_; mech_tui_runs_refilter(v); return MECH_TUI_REDRAW;
    case 'r': v->desc = !v->desc; mech_tui_runs_refilter(v); return MECH_TUI_REDRAW;
    case 'f': next_kind(v); mech_tui_runs_refilter(v); return MECH_TUI_REDRAW;
    case MECH_TUI_KEY_ESC: v->kind[0] = 0, v->search[0] = 0; mech_tui_runs_refilter(v); return MECH_TUI_REDRAW;
    case '/': return MECH_TUI_SEARCH;
    case MECH_TUI_KEY_ENTER: return MECH_TUI_OPEN;
    default: return MECH_TUI_NONE;
    }
}

static const char *sort_names[MECH_TUI_SORT_COUNT_] = {"id", "kind", "status", "date"};

void mech_tui_runs_render(mech_tui_runs *v, mech_tui_grid *g, int y0, int h) {
    char line[512];
    if (h < 1) return;
    if (!v->n) {
        // the message may hold several lines
        const char *p = v->message[0] ? v->message : "no runs";
        for (int y = y0; *p && y < y0 + h; y++) {
            const char *e = strchr(p, '\n');
            int len = e ? (int)(e - p) : (int)strlen(p);
            snprintf(line, sizeof line, "%.*s", len, p);
            mech_tui_grid_put(g, y, 1, y == y0 ? MECH_TUI_ERROR : MECH_TUI_TEXT, line, -1);
            p = e ? e + 1 : p + len;
        }
        return;
    }
    snprintf(line, sizeof line, "%zu of %zu runs  kind: %s  sort: %s%s%s%s", v->n_vis, v->n,
             v->kind[0] ? v->kind : "all", sort_names[v->sort], v->desc ? " (reversed)" : "",
             v->search[0] ? "  search: " : "", v->search);
    mech_tui_grid_put(g, y0, 1, MECH_TUI_DIM, line, -1);
    if (h < 3) return;
    snprintf(line, sizeof line, "%6s  %-10s %-11s %-14s %-16s %s", "id", "kind", "status", "model", "date", "key figure");
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_HEADER, line, -1);
    int rows = h - 2;
    v->page = rows;
    if (v->cur >= v->n_vis) v->cur = v->n_vis ? v->n_vis - 1 : 0;
    if (v->cur < v->top) v->top = v->cur;
    if (v->cur >= v->top + (size_t)rows) v->top = v->cur - (size_t)rows + 1;
    if (!v->n_vis) {
        mech_tui_grid_put(g, y0 + 2, 1, MECH_TUI_DIM, "no run matches (Esc clears the filter and search)", -1);
        return;
    }
    for (int i = 0; i < rows && v->top + (size_t)i < v->n_vis; i++) {
        const mech_tui_run_row *r = &v->rows[v->vis[v->top + (size_t)i]];
        // the model's file name, not its directories: the column is narrow
        const char *model = strrchr(r->model, '/') ? strrchr(r->model, '/') + 1 : r->model;
        snprintf(line, sizeof line, "%6lld  %-10.10s %-11.11s %-14.14s %-16.16s %s", (long long)r->id, r->kind,
                 r->status, model, r->date, r->figure);
        int y = y0 + 2 + i;
        mech_tui_grid_put(g, y, 0, MECH_TUI_TEXT, line, -1);
        if (v->top + (size_t)i == v->cur) mech_tui_grid_role(g, y, 0, g->w, MECH_TUI_SEL);
    }
}
