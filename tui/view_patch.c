/*
** tui/view_patch.c: the Patching view, one `mech patch` run as a heatmap on
** a diverging palette centred at 0 (cells carry sign 1 above zero, 2 below,
** as the difference heatmap of tui/view_attn.c), scaled by the largest
** |value| shown, with the value at each end in a legend. Layer x position
** sweeps label their columns with the clean prompt's tokens, layer x head
** sweeps with H0..; a layer x position x head sweep is shown one slice at a
** time (a head's layer x position, or a position's layer x head).
**
** Every cell of every pair is read once at load (read-only, through data/),
** so switching pair, the mean, raw metric or slice costs no query. The mean
** over pairs is over the pairs that have the cell (a NULL effect, where
** clean = corrupted, is left out, as pairs shorter than the longest are).
*/
#include "tui/tui.h"

#include "data/data.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// --- Tokens -----------------------------------------------------------------

mech_tokenizer *mech_tui_model_tokenizer(const char *model_path) {
    // as mech_model_load finds the file and its tokenizer, without binding
    // (or converting, for F16 files) the weights: the header and metadata only
    struct stat sb;
    if (!model_path || stat(model_path, &sb) != 0) return NULL;
    char dir[1024], file[1100];
    if (S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", model_path);
        snprintf(file, sizeof file, "%s/model.safetensors", model_path);
    } else {
        const char *slash = strrchr(model_path, '/');
        if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - model_path) + (slash == model_path), model_path);
        else snprintf(dir, sizeof dir, ".");
        snprintf(file, sizeof file, "%s", model_path);
    }
    mech_safetensors *st = NULL;
    mech_tokenizer *tok = NULL;
    mech_err err = {0};
    if (mech_safetensors_open(file, &st, &err)) return NULL;
    int compiled = mech_safetensors_meta(st, "mech.rasp.source") != NULL;
    // the vocabulary's size, as mech_model_load infers it (wte.weight's rows)
    const mech_st_tensor *wte = mech_safetensors_find(st, "wte.weight");
    if (!wte) wte = mech_safetensors_find(st, "transformer.wte.weight");
    int d_vocab = wte && wte->ndim == 2 ? (int)wte->shape[0] : 0;
    mech_safetensors_close(st);
    if (compiled) return NULL;
    mech_status rc = mech_tokenizer_load_dir(dir, &tok, &err);
    // no files beside it: what mech's commands use, when it can be GPT-2's
    if (rc == MECH_ERR_IO) rc = mech_tokenizer_gpt2_fits(d_vocab) ? mech_tokenizer_gpt2(&tok, &err) : MECH_ERR_IO;
    return rc ? NULL : tok;
}


void mech_tui_id_label(const mech_tokenizer *tok, int32_t id, char *out, size_t cap) {
    size_t len = 0;
    const char *s = tok && id >= 0 ? mech_tokenizer_token(tok, id, &len) : NULL;
    if (!s) {
        snprintf(out, cap, "%d", (int)id);
        return;
    }
    char buf[256];
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, s, len);
    buf[len] = 0;
    mech_tui_token_label(buf, out, cap);
}

// A prompt as one printable line: its stored text, else its tokens' text,
// else its ids. Owned (mech_free); NULL when out of memory.
static char *prompt_line(const mech_prompt_row *p, const mech_tokenizer *tok) {
    mech_buf b = {0};
    if (p->text) mech_buf_puts(&b, p->text);
    else
        for (int t = 0; t < p->n_tokens; t++) {
            size_t len = 0;
            const char *s = tok ? mech_tokenizer_token(tok, p->tokens[t], &len) : NULL;
            if (s) mech_buf_append(&b, s, len);
            else mech_buf_printf(&b, "%s%d", t ? " " : "", (int)p->tokens[t]);
        }
    mech_buf_append(&b, "", 1);
    char *out = b.oom ? NULL : mech_malloc(2 * b.len + 1); // \n -> "\n": at most 2 bytes each
    if (out) mech_tui_token_label(b.data, out, 2 * b.len + 1);
    mech_buf_free(&b);
    return out;
}

// --- Loading ----------------------------------------------------------------

void mech_tui_patch_deinit(mech_tui_patch *v) {
    for (int i = 0; i < v->n_pairs; i++) {
        if (v->clean_txt) mech_free(v->clean_txt[i]);
        if (v->corrupt_txt) mech_free(v->corrupt_txt[i]);
        for (int p = 0; v->tok && v->tok[i] && p < v->P; p++) mech_free(v->tok[i][p]);
        if (v->tok) mech_free(v->tok[i]);
    }
    mech_free(v->clean_txt), mech_free(v->corrupt_txt), mech_free(v->tok);
    mech_free(v->items), mech_free(v->effect), mech_free(v->raw), mech_free(v->clean), mech_free(v->corrupted);
    memset(v, 0, sizeof *v);
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

static int pair_of(const mech_tui_patch *v, int item) {
    const int *p = bsearch(&item, v->items, (size_t)v->n_pairs, sizeof *v->items, cmp_int);
    return p ? (int)(p - v->items) : -1;
}

static mech_status fill(mech_tui_patch *v, const mech_result_row *r, size_t n, const mech_prompt_row *pr, size_t npr,
                        const mech_tokenizer *tok, mech_err *err) {
    // the grid's extent and the pairs
    int L = 0, P = 0, H = 0, ni = 0;
    int *items = mech_malloc((n + npr + 1) * sizeof *items);
    if (!items) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        items[ni++] = r[i].item;
        if (!strcmp(r[i].site, "baseline") || r[i].layer < 0) continue;
        if (!v->metric[0] && strcmp(r[i].metric, "effect")) snprintf(v->metric, sizeof v->metric, "%s", r[i].metric);
        if (r[i].layer + 1 > L) L = r[i].layer + 1;
        if (r[i].pos + 1 > P) P = r[i].pos + 1;
        if (r[i].head + 1 > H) H = r[i].head + 1;
    }
    for (size_t i = 0; i < npr; i++) items[ni++] = pr[i].item;
    qsort(items, (size_t)ni, sizeof *items, cmp_int);
    int nu = 0;
    for (int i = 0; i < ni; i++)
        if (!nu || items[nu - 1] != items[i]) items[nu++] = items[i];
    v->items = items, v->n_pairs = nu;
    v->shape = P > 0 && H > 0 ? MECH_TUI_PATCH_POS_HEAD : H > 0 ? MECH_TUI_PATCH_HEAD : MECH_TUI_PATCH_POS;
    v->L = L, v->P = P > 0 ? P : 1, v->H = H > 0 ? H : 1;
    size_t cells = (size_t)v->L * v->P * v->H, all = cells * (size_t)(nu ? nu : 1);
    v->effect = mech_malloc(all * sizeof *v->effect);
    v->raw = mech_malloc(all * sizeof *v->raw);
    v->clean = mech_malloc((size_t)(nu + 1) * sizeof *v->clean);
    v->corrupted = mech_malloc((size_t)(nu + 1) * sizeof *v->corrupted);
    v->clean_txt = mech_calloc((size_t)nu + 1, sizeof *v->clean_txt);
    v->corrupt_txt = mech_calloc((size_t)nu + 1, sizeof *v->corrupt_txt);
    v->tok = mech_calloc((size_t)nu + 1, sizeof *v->tok);
    if (!v->effect || !v->raw || !v->clean || !v->corrupted || !v->clean_txt || !v->corrupt_txt || !v->tok)
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < all; i++) v->effect[i] = v->raw[i] = NAN;
    for (int i = 0; i < nu; i++) v->clean[i] = v->corrupted[i] = NAN;
    for (size_t i = 0; i < n; i++) {
        int k = pair_of(v, r[i].item);
        if (!strcmp(r[i].site, "baseline")) {
            if (!strcmp(r[i].metric, "clean")) v->clean[k] = r[i].value;
            else if (!strcmp(r[i].metric, "corrupted")) v->corrupted[k] = r[i].value;
            continue;
        }
        if (r[i].layer < 0) continue;
        size_t c = k * cells + ((size_t)r[i].layer * v->P + (r[i].pos > 0 ? r[i].pos : 0)) * v->H +
                   (r[i].head > 0 ? r[i].head : 0);
        if (!strcmp(r[i].metric, "effect")) v->effect[c] = r[i].value;
        else if (!strcmp(r[i].metric, v->metric)) v->raw[c] = r[i].value;
    }
    for (size_t i = 0; i < npr; i++) {
        int k = pair_of(v, pr[i].item);
        int clean = !strcmp(pr[i].role, "clean");
        if (!clean && strcmp(pr[i].role, "corrupt")) continue;
        char *line = prompt_line(&pr[i], tok);
        if (!line) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        char **slot = clean ? &v->clean_txt[k] : &v->corrupt_txt[k];
        mech_free(*slot);
        *slot = line;
        if (!clean || v->shape == MECH_TUI_PATCH_HEAD) continue;
        if (!(v->tok[k] = mech_calloc((size_t)v->P, sizeof *v->tok[k])))
            return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        for (int p = 0; p < v->P && p < pr[i].n_tokens; p++) {
            char lab[64];
            mech_tui_id_label(tok, pr[i].tokens[p], lab, sizeof lab);
            if (!(v->tok[k][p] = mech_strdup(lab))) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        }
    }
    v->avg = nu > 1; // the summary first; p goes to one pair
    return MECH_OK;
}

mech_status mech_tui_patch_load(const char *path, int64_t id, mech_tui_patch *v, mech_err *err) {
    mech_tui_patch_deinit(v);
    mech_store *s = NULL;
    mech_run_info ri = {0};
    mech_result_row *rows = NULL;
    mech_prompt_row *pr = NULL;
    mech_tokenizer *tok = NULL;
    size_t n = 0, npr = 0;
    mech_status st = mech_store_open_read(path, &s, err);
    if (st) return st;
    if ((st = mech_store_run_info(s, id, &ri, err))) goto done;
    if (!ri.kind || strcmp(ri.kind, "patch")) {
        st = mech_err_set(err, MECH_ERR_ARG, "run %lld is a %s run, not a patch run", (long long)id,
                          ri.kind ? ri.kind : "?");
        goto done;
    }
    if ((st = mech_store_results_get(s, id, NULL, &rows, &n, err)) ||
        (st = mech_store_prompts_get(s, id, &pr, &npr, err)))
        goto done;
    v->id = id;
    // the run's parameters: its sweep and metric (unchanged when absent)
    mech_json *pj = NULL;
    mech_err jerr = {0};
    if (ri.params_json && !mech_json_parse(ri.params_json, strlen(ri.params_json), &pj, &jerr)) {
        const char *sweep = mech_json_str(pj, "sweep", NULL), *metric = mech_json_str(pj, "metric", NULL);
        if (sweep) snprintf(v->sweep, sizeof v->sweep, "%s", sweep);
        if (metric) snprintf(v->metric, sizeof v->metric, "%s", metric);
        // an exact run records no method; mech patch --method attrib records "attrib"
        const char *method = mech_json_str(pj, "method", NULL);
        if (method) snprintf(v->method, sizeof v->method, "%s", method);
    }
    mech_json_free(pj);
    tok = mech_tui_model_tokenizer(ri.model_path);
    st = fill(v, rows, n, pr, npr, tok, err);
done:
    if (st) mech_tui_patch_deinit(v);
    mech_tokenizer_free(tok);
    mech_store_prompts_free(pr, npr);
    mech_store_results_free(rows, n);
    mech_store_run_info_deinit(&ri);
    mech_store_close(s);
    return st;
}

// --- The matrix shown ---------------------------------------------------------

int mech_tui_patch_cols(const mech_tui_patch *v, int *by_head) {
    int bh = v->shape == MECH_TUI_PATCH_HEAD || (v->shape == MECH_TUI_PATCH_POS_HEAD && v->by_pos);
    if (by_head) *by_head = bh;
    return bh ? v->H : v->P;
}

// The index of (l, column a) within one pair's [L][P][H] cells.
static size_t cell_index(const mech_tui_patch *v, int l, int a) {
    int p, h;
    if (v->shape == MECH_TUI_PATCH_POS) p = a, h = 0;
    else if (v->shape == MECH_TUI_PATCH_HEAD) p = 0, h = a;
    else if (v->by_pos) p = v->sp, h = a;
    else p = a, h = v->sh;
    return ((size_t)l * v->P + p) * v->H + h;
}

double mech_tui_patch_value(const mech_tui_patch *v, int l, int a) {
    if (l < 0 || l >= v->L || a < 0 || a >= mech_tui_patch_cols(v, NULL) || !v->n_pairs) return NAN;
    const double *x = v->show_raw ? v->raw : v->effect;
    size_t cells = (size_t)v->L * v->P * v->H, c = cell_index(v, l, a);
    if (!v->avg) return x[(size_t)v->pair * cells + c];
    double sum = 0;
    int cnt = 0;
    for (int k = 0; k < v->n_pairs; k++)
        if (!isnan(x[(size_t)k * cells + c])) sum += x[(size_t)k * cells + c], cnt++;
    return cnt ? sum / cnt : NAN;
}

double mech_tui_patch_scale(const mech_tui_patch *v) {
    double mx = 0;
    int A = mech_tui_patch_cols(v, NULL);
    for (int l = 0; l < v->L; l++)
        for (int a = 0; a < A; a++) {
            double x = fabs(mech_tui_patch_value(v, l, a));
            if (x > mx) mx = x; // NaN compares false
        }
    return mx;
}

void mech_tui_patch_label(const mech_tui_patch *v, int a, char *out, size_t cap) {
    int by_head;
    mech_tui_patch_cols(v, &by_head);
    if (by_head) {
        snprintf(out, cap, "H%d", a);
        return;
    }
    const char *lab = NULL;
    if (!v->avg) lab = v->tok[v->pair] ? v->tok[v->pair][a] : NULL;
    else
        // the mean over pairs: a position's token only when every pair has that token there
        for (int k = 0; k < v->n_pairs; k++) {
            const char *t = v->tok[k] ? v->tok[k][a] : NULL;
            if (!t || (lab && strcmp(lab, t))) {
                lab = NULL;
                break;
            }
            lab = t;
        }
    if (lab) snprintf(out, cap, "%s", lab);
    else snprintf(out, cap, "#%d", a);
}

// --- Keys -------------------------------------------------------------------

static int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

int mech_tui_patch_key(mech_tui_patch *v, int key) {
    if (key == 'q' || key == MECH_TUI_KEY_ESC) return MECH_TUI_QUIT;
    if (!v->n_pairs || !v->L) return MECH_TUI_NONE;
    int n = v->n_pairs, pos_head = v->shape == MECH_TUI_PATCH_POS_HEAD;
    switch (key) {
    case MECH_TUI_KEY_UP: case 'k': v->cl--; break;
    case MECH_TUI_KEY_DOWN: case 'j': v->cl++; break;
    case MECH_TUI_KEY_LEFT: case 'h': v->ca--; break;
    case MECH_TUI_KEY_RIGHT: case 'l': v->ca++; break;
    case MECH_TUI_KEY_HOME: case 'g': v->cl = 0, v->ca = 0; break;
    case MECH_TUI_KEY_END: case 'G': v->cl = v->L - 1, v->ca = mech_tui_patch_cols(v, NULL) - 1; break;
    // from the mean, p goes to the first pair and P to the last
    case 'p': v->pair = v->avg ? 0 : (v->pair + 1) % n, v->avg = 0; break;
    case 'P': v->pair = v->avg ? n - 1 : (v->pair + n - 1) % n, v->avg = 0; break;
    case 'a': v->avg = !v->avg; break;
    case 'm': v->show_raw = !v->show_raw; break;
    case 's':
        if (!pos_head) return MECH_TUI_NONE;
        // the cursor's column becomes the slice, so the cell under it stays in view
        if (v->by_pos) v->sh = v->ca, v->ca = v->sp;
        else v->sp = v->ca, v->ca = v->sh;
        v->by_pos = !v->by_pos;
        break;
    case ']': case '[':
        if (!pos_head) return MECH_TUI_NONE;
        if (v->by_pos) v->sp = clampi(v->sp + (key == ']' ? 1 : -1), 0, v->P - 1);
        else v->sh = clampi(v->sh + (key == ']' ? 1 : -1), 0, v->H - 1);
        break;
    default: return MECH_TUI_NONE;
    }
    v->cl = clampi(v->cl, 0, v->L - 1);
    v->ca = clampi(v->ca, 0, mech_tui_patch_cols(v, NULL) - 1);
    return MECH_TUI_REDRAW;
}

// --- Drawing ----------------------------------------------------------------

// A signed value relative to the scale: level by magnitude, glyph and
// colour by sign (sign 0 at zero: the centre of the palette).
static mech_tui_cell heat_cell(double x, double scale) {
    if (isnan(x)) return (mech_tui_cell){.ch = ' ', .role = MECH_TUI_DIM};
    int lv = scale > 0 ? mech_tui_level((float)(fabs(x) / scale)) : 0, neg = x < 0;
    return (mech_tui_cell){.ch = neg ? mech_tui_ramp_neg[lv] : mech_tui_ramp_pos[lv],
                           .role = MECH_TUI_HEAT,
                           .level = (uint8_t)lv,
                           .heat = 1,
                           .sign = (uint8_t)(lv ? (neg ? 2 : 1) : 0)};
}

void mech_tui_patch_render(mech_tui_patch *v, mech_tui_grid *g, int y0, int h) {
    char line[512], lab[64];
    const char *quantity = v->show_raw ? v->metric : "effect";
    if (!v->L || !v->n_pairs) {
        snprintf(line, sizeof line, "run %lld  %s  %s", (long long)v->id,
                 !strcmp(v->method, "attrib") ? "attribution patching (first-order estimate)" : "patch",
                 v->title[0] ? v->title : "no results yet");
        mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
        return;
    }
    int by_head, A = mech_tui_patch_cols(v, &by_head);
    char which[64];
    if (v->avg) snprintf(which, sizeof which, "mean over %d pair%s", v->n_pairs, v->n_pairs == 1 ? "" : "s");
    else snprintf(which, sizeof which, "pair %d of %d (item %d)", v->pair + 1, v->n_pairs, v->items[v->pair]);
    // attribution patching's cells are a first-order estimate, not a patched
    // run's metric: the title says so before anything else
    if (!strcmp(v->method, "attrib"))
        snprintf(line, sizeof line, "run %lld  attribution patching (first-order estimate) %s (layer x %s)  %s  %s",
                 (long long)v->id, v->sweep, by_head ? "head" : "position", which, v->metric);
    else if (v->method[0] && strcmp(v->method, "exact"))
        snprintf(line, sizeof line, "run %lld  patch (%s) %s (layer x %s)  %s  %s", (long long)v->id, v->method,
                 v->sweep, by_head ? "head" : "position", which, v->metric);
    else
        snprintf(line, sizeof line, "run %lld  patch %s (layer x %s)  %s  %s", (long long)v->id, v->sweep,
                 by_head ? "head" : "position", which, v->metric);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    if (h < 2) return;
    snprintf(line, sizeof line, "clean:   %s", v->clean_txt[v->pair] ? v->clean_txt[v->pair] : "(not stored)");
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_TEXT, line, -1);
    if (h < 3) return;
    snprintf(line, sizeof line, "corrupt: %s", v->corrupt_txt[v->pair] ? v->corrupt_txt[v->pair] : "(not stored)");
    mech_tui_grid_put(g, y0 + 2, 0, MECH_TUI_TEXT, line, -1);
    if (h < 4) return;
    // the cursor's cell: layer, column, value to 4 significant digits
    double x = mech_tui_patch_value(v, v->cl, v->ca);
    mech_tui_patch_label(v, v->ca, lab, sizeof lab);
    int n = by_head ? snprintf(line, sizeof line, "L%d H%d", v->cl, v->ca)
                    : snprintf(line, sizeof line, "L%d pos %d '%s'", v->cl, v->ca, lab);
    if (v->shape == MECH_TUI_PATCH_POS_HEAD)
        n += by_head ? snprintf(line + n, sizeof line - n, " (pos %d)", v->sp)
                     : snprintf(line + n, sizeof line - n, " (H%d)", v->sh);
    if (isnan(x)) n += snprintf(line + n, sizeof line - n, "  %s n/a", quantity);
    else n += snprintf(line + n, sizeof line - n, "  %s %.4g", quantity, x);
    if (!v->avg && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - n, "   %s clean %.4g, corrupted %.4g", v->metric, v->clean[v->pair],
                 v->corrupted[v->pair]);
    mech_tui_grid_put(g, y0 + 3, 0, MECH_TUI_TEXT, line, -1);
    if (h < 5) return;
    // the legend: the value at each end of the diverging scale
    double mx = mech_tui_patch_scale(v);
    n = mx > 0 ? snprintf(line, sizeof line, "%+.4g ", -mx) : snprintf(line, sizeof line, "0 ");
    int x0 = mech_tui_grid_put(g, y0 + 4, 0, MECH_TUI_DIM, line, -1);
    for (int i = MECH_TUI_LEVELS - 1; i >= -(MECH_TUI_LEVELS - 1); i--) {
        mech_tui_cell *c = mech_tui_grid_at(g, y0 + 4, x0++);
        if (c) *c = heat_cell(i == 0 ? 0 : -i / (double)(MECH_TUI_LEVELS - 1), 1);
    }
    n = mx > 0 ? snprintf(line, sizeof line, " %+.4g", mx) : snprintf(line, sizeof line, " 0");
    if (v->shape == MECH_TUI_PATCH_POS_HEAD)
        snprintf(line + n, sizeof line - n, "   slice: %s %d (][, s: by %s)", v->by_pos ? "position" : "head",
                 v->by_pos ? v->sp : v->sh, v->by_pos ? "head" : "position");
    mech_tui_grid_put(g, y0 + 4, x0, MECH_TUI_DIM, line, -1);
    if (h < 7) return;
    // columns: a label over each cell, scrolled to keep the cursor in view
    const int lw = 5, cw = by_head ? 4 : 7;
    int cols = (g->w - lw) / cw, rows = h - 6;
    if (cols < 1) return;
    if (v->ca < v->c0) v->c0 = v->ca;
    if (v->ca >= v->c0 + cols) v->c0 = v->ca - cols + 1;
    if (v->c0 > A - cols) v->c0 = A - cols > 0 ? A - cols : 0;
    if (v->cl < v->l0) v->l0 = v->cl;
    if (v->cl >= v->l0 + rows) v->l0 = v->cl - rows + 1;
    if (v->l0 > v->L - rows) v->l0 = v->L - rows > 0 ? v->L - rows : 0;
    for (int a = v->c0; a < A && a - v->c0 < cols; a++) {
        mech_tui_patch_label(v, a, lab, sizeof lab);
        mech_tui_grid_put(g, y0 + 5, lw + (a - v->c0) * cw, a == v->ca ? MECH_TUI_SEL : MECH_TUI_HEADER, lab, cw - 1);
    }
    for (int l = v->l0; l < v->L && l - v->l0 < rows; l++) {
        int y = y0 + 6 + (l - v->l0);
        snprintf(line, sizeof line, "L%d", l);
        mech_tui_grid_put(g, y, 0, l == v->cl ? MECH_TUI_SEL : MECH_TUI_HEADER, line, lw - 1);
        for (int a = v->c0; a < A && a - v->c0 < cols; a++) {
            mech_tui_cell hc = heat_cell(mech_tui_patch_value(v, l, a), mx);
            int cur = l == v->cl && a == v->ca;
            for (int k = 0; k < cw - 1; k++) {
                mech_tui_cell *c = mech_tui_grid_at(g, y, lw + (a - v->c0) * cw + k);
                if (!c) continue;
                *c = hc;
                if (cur) {
                    c->role = MECH_TUI_SEL;
                    if (k == 0) c->ch = '[';
                    if (k == cw - 2) c->ch = ']';
                }
            }
        }
    }
}
