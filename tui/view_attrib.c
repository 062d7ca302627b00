/*
** tui/view_attrib.c: the Attribution view, direct logit attribution of an
** `mech attrib` run (or of the live prompt) as a horizontal bar chart of
** every component (embedding, each head, each layer's attention bias, each
** MLP) sorted by |attribution|, largest first. Bars grow from a centre
** axis, right for positive and left for negative ('#' / '=' and the
** diverging palette's two sides, so the sign reads without colour), scaled
** by the largest |value| of the sequence; the number ends each row.
**
** A stored run is read once (read-only, through data/); the live prompt's
** attribution is a pure function of (model, run, ids) so it can be computed
** wherever the forward pass runs.
*/
#include "tui/tui.h"

#include "data/data.h"
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mech_tui_attrib_deinit(mech_tui_attrib *v) {
    for (int i = 0; v->prompt && i < v->n_items; i++) mech_free(v->prompt[i]);
    mech_free(v->prompt), mech_free(v->labels), mech_free(v->attr), mech_free(v->logit), mech_free(v->bias);
    mech_free(v->pos), mech_free(v->order);
    memset(v, 0, sizeof *v);
}

static mech_status alloc(mech_tui_attrib *v, int n_items, int n_comp, mech_err *err) {
    v->n_items = n_items, v->n_comp = n_comp;
    size_t ni = (size_t)n_items + 1, nc = (size_t)n_comp + 1;
    v->labels = mech_calloc(nc, sizeof *v->labels);
    v->attr = mech_malloc(ni * nc * sizeof *v->attr);
    v->logit = mech_malloc(ni * sizeof *v->logit);
    v->bias = mech_malloc(ni * sizeof *v->bias);
    v->pos = mech_calloc(ni, sizeof *v->pos);
    v->prompt = mech_calloc(ni, sizeof *v->prompt);
    v->order = mech_malloc(nc * sizeof *v->order);
    if (!v->labels || !v->attr || !v->logit || !v->bias || !v->pos || !v->prompt || !v->order)
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < ni * nc; i++) v->attr[i] = NAN;
    for (size_t i = 0; i < ni; i++) v->logit[i] = v->bias[i] = NAN;
    return MECH_OK;
}

// ids as one printable line (their text with tok, else the ids). Owned.
static char *ids_line(const mech_tokenizer *tok, const int32_t *ids, int n) {
    mech_buf b = {0};
    for (int t = 0; t < n; t++) {
        size_t len = 0;
        const char *s = tok ? mech_tokenizer_token(tok, ids[t], &len) : NULL;
        if (s) mech_buf_append(&b, s, len);
        else mech_buf_printf(&b, "%s%d", t ? " " : "", (int)ids[t]);
    }
    mech_buf_append(&b, "", 1);
    char *out = b.oom ? NULL : mech_malloc(2 * b.len + 1);
    if (out) mech_tui_token_label(b.data, out, 2 * b.len + 1);
    mech_buf_free(&b);
    return out;
}

static const double *sort_vals;
static int cmp_abs_desc(const void *pa, const void *pb) {
    int i = *(const int *)pa, j = *(const int *)pb;
    double a = fabs(sort_vals[i]), b = fabs(sort_vals[j]);
    if (isnan(a)) a = -1;
    if (isnan(b)) b = -1;
    return a != b ? (a < b) - (a > b) : (i > j) - (i < j); // ties in model order
}

void mech_tui_attrib_sort(mech_tui_attrib *v) {
    if (!v->order || !v->n_comp) return;
    for (int c = 0; c < v->n_comp; c++) v->order[c] = c;
    sort_vals = v->attr + (size_t)v->item * v->n_comp;
    qsort(v->order, (size_t)v->n_comp, sizeof *v->order, cmp_abs_desc);
}

// --- A stored run -----------------------------------------------------------

static int is_component(const char *metric) {
    return !strcmp(metric, "embed") || !strcmp(metric, "head") || !strcmp(metric, "attn_bias") || !strcmp(metric, "mlp");
}

// mech_dla's label of a stored component row.
static void comp_label(const mech_result_row *r, char out[32]) {
    if (!strcmp(r->metric, "head")) snprintf(out, 32, "L%dH%d", r->layer, r->head);
    else if (r->layer >= 0) snprintf(out, 32, "L%d.%s", r->layer, r->metric);
    else snprintf(out, 32, "%s", r->metric);
}

static mech_status fill(mech_tui_attrib *v, const mech_run_info *ri, const mech_result_row *r, size_t n,
                        const mech_prompt_row *pr, size_t npr, mech_err *err) {
    // components in the order the first sequence stored them (the model's)
    int n_items = 0, n_comp = 0, first = r && n ? r[0].item : 0;
    for (size_t i = 0; i < n; i++) {
        if (r[i].item + 1 > n_items) n_items = r[i].item + 1;
        if (r[i].item == first && is_component(r[i].metric)) n_comp++;
    }
    mech_status st = alloc(v, n_items, n_comp, err);
    if (st) return st;
    int c = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].item == first && is_component(r[i].metric)) comp_label(&r[i], v->labels[c++]);
    int32_t answer = -1, wrong = -1;
    for (size_t i = 0; i < n; i++) {
        const mech_result_row *x = &r[i];
        if (x->item < 0) continue;
        double *a = v->attr + (size_t)x->item * n_comp;
        if (is_component(x->metric)) {
            char lab[32];
            comp_label(x, lab);
            for (int k = 0; k < n_comp; k++)
                if (!strcmp(v->labels[k], lab)) {
                    a[k] = x->value;
                    break;
                }
            answer = (int32_t)x->token;
            v->pos[x->item] = x->pos;
        } else if (!strcmp(x->metric, "logit")) v->logit[x->item] = x->value;
        else if (!strcmp(x->metric, "bias")) v->bias[x->item] = x->value;
    }
    mech_json *j = NULL;
    mech_err jerr = {0};
    if (ri->params_json && !mech_json_parse(ri->params_json, strlen(ri->params_json), &j, &jerr)) {
        const mech_json *w = mech_json_get(j, "wrong");
        if (w && w->type == MECH_JSON_NUMBER) wrong = (int32_t)w->num;
    }
    mech_json_free(j);
    mech_tokenizer *tok = mech_tui_model_tokenizer(ri->model_path);
    mech_tui_id_label(tok, answer, v->answer, sizeof v->answer);
    if (wrong >= 0) mech_tui_id_label(tok, wrong, v->wrong, sizeof v->wrong);
    for (size_t i = 0; i < npr && !st; i++)
        if (pr[i].item >= 0 && pr[i].item < n_items && !v->prompt[pr[i].item]) {
            const mech_prompt_row *p = &pr[i];
            if (p->text) {
                size_t len = strlen(p->text);
                if ((v->prompt[p->item] = mech_malloc(2 * len + 1))) mech_tui_token_label(p->text, v->prompt[p->item], 2 * len + 1);
            } else v->prompt[p->item] = ids_line(tok, p->tokens, p->n_tokens);
            if (!v->prompt[p->item]) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        }
    mech_tokenizer_free(tok);
    return st;
}

mech_status mech_tui_attrib_load(const char *path, int64_t id, mech_tui_attrib *v, mech_err *err) {
    mech_tui_attrib_deinit(v);
    mech_store *s = NULL;
    mech_run_info ri = {0};
    mech_result_row *rows = NULL;
    mech_prompt_row *pr = NULL;
    size_t n = 0, npr = 0;
    mech_status st = mech_store_open_read(path, &s, err);
    if (st) return st;
    if ((st = mech_store_run_info(s, id, &ri, err))) goto done;
    if (!ri.kind || strcmp(ri.kind, "attrib")) {
        st = mech_err_set(err, MECH_ERR_ARG, "run %lld is a %s run, not an attrib run", (long long)id,
                          ri.kind ? ri.kind : "?");
        goto done;
    }
    if ((st = mech_store_results_get(s, id, NULL, &rows, &n, err)) ||
        (st = mech_store_prompts_get(s, id, &pr, &npr, err)))
        goto done;
    v->id = id;
    if (!(st = fill(v, &ri, rows, n, pr, npr, err))) mech_tui_attrib_sort(v);
done:
    if (st) mech_tui_attrib_deinit(v);
    mech_store_prompts_free(pr, npr);
    mech_store_results_free(rows, n);
    mech_store_run_info_deinit(&ri);
    mech_store_close(s);
    return st;
}

// --- The live prompt ----------------------------------------------------------

mech_status mech_tui_attrib_from_run(mech_tui_attrib *v, const mech_model *m, const mech_run *run, const int32_t *ids,
                                     int T, int32_t answer, int32_t wrong, const mech_tokenizer *tok, mech_err *err) {
    mech_tui_attrib_deinit(v);
    if (T < 1 || !ids) return mech_err_set(err, MECH_ERR_ARG, "attribution: no tokens");
    if (answer < 0) {
        // the model's own top-1 prediction at the last position
        const float *logits = mech_run_logits(run);
        int V = m->cfg.d_vocab;
        if (!logits) return mech_err_set(err, MECH_ERR_ARG, "attribution: the run has no logits (no forward pass yet)");
        const float *x = logits + (size_t)(T - 1) * V;
        answer = 0;
        for (int t = 1; t < V; t++)
            if (x[t] > x[answer]) answer = t;
        wrong = -1;
    }
    mech_dla *d = NULL;
    mech_status st = mech_lens_dla(m, run, -1, &answer, wrong >= 0 ? &wrong : NULL, &d, err);
    if (!st) st = alloc(v, 1, d->n_comp, err);
    if (!st) {
        for (int c = 0; c < d->n_comp; c++) {
            memcpy(v->labels[c], d->labels[c], sizeof v->labels[c]);
            v->attr[c] = d->attr[c]; // B = 1: attr[c*B + 0]
        }
        v->logit[0] = d->logit[0], v->bias[0] = d->bias[0], v->pos[0] = T - 1;
        mech_tui_id_label(tok, answer, v->answer, sizeof v->answer);
        if (wrong >= 0) mech_tui_id_label(tok, wrong, v->wrong, sizeof v->wrong);
        if (!(v->prompt[0] = ids_line(tok, ids, T))) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    mech_dla_free(d);
    if (st) mech_tui_attrib_deinit(v);
    else mech_tui_attrib_sort(v);
    return st;
}

// --- Keys -------------------------------------------------------------------

int mech_tui_attrib_key(mech_tui_attrib *v, int key) {
    if (key == 'q' || key == MECH_TUI_KEY_ESC) return MECH_TUI_QUIT;
    int page = v->page > 1 ? v->page : 1, last = v->n_comp > page ? v->n_comp - page : 0;
    long top = v->top;
    switch (key) {
    case MECH_TUI_KEY_UP: case 'k': top--; break;
    case MECH_TUI_KEY_DOWN: case 'j': top++; break;
    case MECH_TUI_KEY_PGUP: top -= page; break;
    case MECH_TUI_KEY_PGDN: top += page; break;
    case MECH_TUI_KEY_HOME: case 'g': top = 0; break;
    case MECH_TUI_KEY_END: case 'G': top = last; break;
    case 'p': case 'P':
        if (v->n_items < 2) return MECH_TUI_NONE;
        v->item = (v->item + (key == 'p' ? 1 : v->n_items - 1)) % v->n_items;
        mech_tui_attrib_sort(v);
        top = 0;
        break;
    default: return MECH_TUI_NONE;
    }
    v->top = (int)(top < 0 ? 0 : top > last ? last : top);
    return MECH_TUI_REDRAW;
}

// --- Drawing ----------------------------------------------------------------

void mech_tui_attrib_render(mech_tui_attrib *v, mech_tui_grid *g, int y0, int h) {
    char line[512], what[160];
    int n = v->id ? snprintf(line, sizeof line, "run %lld  attrib  ", (long long)v->id)
                  : snprintf(line, sizeof line, "live prompt  ");
    if (!v->n_comp) {
        snprintf(line + n, sizeof line - n, "%s", v->title[0] ? v->title : "no results yet");
        mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
        return;
    }
    if (v->wrong[0]) snprintf(what, sizeof what, "logit('%s') - logit('%s')", v->answer, v->wrong);
    else snprintf(what, sizeof what, "logit('%s')%s", v->answer, v->id ? "" : " (top-1 prediction)");
    n += snprintf(line + n, sizeof line - n, "%s at pos %d", what, v->pos[v->item]);
    if (v->n_items > 1) snprintf(line + n, sizeof line - n, "  sequence %d of %d", v->item + 1, v->n_items);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    if (h < 2) return;
    snprintf(line, sizeof line, "prompt: %s", v->prompt[v->item] ? v->prompt[v->item] : "(not stored)");
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_TEXT, line, -1);
    if (h < 3) return;
    const double *a = v->attr + (size_t)v->item * v->n_comp;
    double mx = 0;
    for (int c = 0; c < v->n_comp; c++)
        if (fabs(a[c]) > mx) mx = fabs(a[c]);
    snprintf(line, sizeof line, "logit %.4g = sum of %d components + bias %.4g   bars to +-%.4g", v->logit[v->item],
             v->n_comp, v->bias[v->item], mx);
    mech_tui_grid_put(g, y0 + 2, 0, MECH_TUI_DIM, line, -1);
    if (h < 5) return;
    // label | negative half | axis | positive half | value
    const int lw = 14, vw = 11;
    int half = (g->w - lw - vw - 2) / 2;
    if (half < 1) half = 1;
    int axis = lw + half;
    mech_tui_grid_put(g, y0 + 3, 0, MECH_TUI_HEADER, "component", lw);
    mech_tui_grid_put(g, y0 + 3, axis - 8 > lw ? axis - 8 : lw, MECH_TUI_HEADER, "negative", 8);
    mech_tui_grid_put(g, y0 + 3, axis, MECH_TUI_HEADER, "|positive", half + 1);
    mech_tui_grid_put(g, y0 + 3, axis + half + 2, MECH_TUI_HEADER, "value", vw);
    int rows = h - 4;
    v->page = rows;
    int last = v->n_comp > rows ? v->n_comp - rows : 0;
    if (v->top > last) v->top = last;
    for (int i = 0; i < rows && v->top + i < v->n_comp; i++) {
        int c = v->order[v->top + i], y = y0 + 4 + i;
        double x = a[c];
        mech_tui_grid_put(g, y, 0, MECH_TUI_TEXT, v->labels[c], lw - 1);
        int len = isnan(x) || mx <= 0 ? 0 : (int)lround(fabs(x) / mx * half);
        if (len == 0 && x != 0 && !isnan(x)) len = 1; // every non-zero contribution shows
        int neg = x < 0, lv = mx > 0 && !isnan(x) ? mech_tui_level((float)(fabs(x) / mx)) : 0;
        for (int k = 1; k <= len; k++) {
            mech_tui_cell *cell = mech_tui_grid_at(g, y, neg ? axis - k : axis + k);
            if (cell)
                *cell = (mech_tui_cell){.ch = neg ? mech_tui_ramp_neg[MECH_TUI_LEVELS - 1] : mech_tui_ramp_pos[MECH_TUI_LEVELS - 1],
                                        .role = MECH_TUI_HEAT, .level = (uint8_t)lv, .heat = 1,
                                        .sign = (uint8_t)(lv ? (neg ? 2 : 1) : 0)};
        }
        mech_tui_grid_put(g, y, axis, MECH_TUI_DIM, "|", 1);
        snprintf(line, sizeof line, "%+.4g", x);
        mech_tui_grid_put(g, y, axis + half + 2, MECH_TUI_TEXT, line, vw);
    }
}
