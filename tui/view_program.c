/*
** tui/view_program.c: the program view of a compiled RASP model. The
** program's source (left) beside the model's layers (right: the embedding,
** then per block each head and the MLP with the variables they compute),
** the selected variable's owner and residual dimensions, and one input
** stepped through the layers: every variable's value at every position
** after each block, decoded from the residual stream by the library's
** decoder lens (mech_lens_decode), written as `mech lens --input` writes it.
**
** Everything comes from the model's metadata (mech.rasp.source, .circuit,
** .residual) through the library; mech_tui_program_run does its own
** forward pass, so it depends on nothing but (model, input).
*/
#include "tui/tui.h"

#include "compiler/compiler.h"
#include "interp/interp.h"

#include <stdio.h>
#include <string.h>

// --- Loading ------------------------------------------------------------------

static void free_vals(mech_tui_program *v) {
    size_t n = (size_t)(v->L + 1) * v->n_pv * v->P;
    for (size_t i = 0; v->val && i < n; i++) mech_free(v->val[i]);
    mech_free(v->val);
    v->val = NULL, v->P = 0;
}

void mech_tui_program_deinit(mech_tui_program *v) {
    free_vals(v);
    for (int i = 0; i < v->n_lines; i++) mech_free(v->lines[i]);
    mech_free(v->lines);
    mech_free(v->pv);
    mech_rasp_circuit_free(v->circuit);
    mech_lens_vars_free(v->vars);
    mech_rasp_program_free(v->prog);
    memset(v, 0, sizeof *v);
}

// The source's lines with tabs expanded (the grid shows a tab as '?').
static mech_status split_lines(mech_tui_program *v, const char *src) {
    int n = 1;
    for (const char *p = src; *p; p++) n += *p == '\n';
    if (!(v->lines = mech_calloc((size_t)n, sizeof *v->lines))) return MECH_ERR_NOMEM;
    for (const char *p = src; *p || v->n_lines == 0;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        mech_buf b = {0};
        for (size_t i = 0; i < len; i++) {
            if (p[i] == '\t')
                do mech_buf_puts(&b, " "); while (b.len % 4);
            else if (p[i] != '\r') mech_buf_append(&b, p + i, 1);
        }
        mech_buf_append(&b, "", 0);
        if (b.oom || !(v->lines[v->n_lines] = mech_strdup(b.data ? b.data : ""))) {
            mech_buf_free(&b);
            return MECH_ERR_NOMEM;
        }
        mech_buf_free(&b);
        v->n_lines++;
        if (!e) break;
        p = e + 1;
        if (!*p) break; // a final newline ends the last line
    }
    return MECH_OK;
}

mech_status mech_tui_program_load(mech_tui_program *v, const mech_model *m, mech_err *err) {
    mech_tui_program_deinit(v);
    const char *src = mech_model_meta(m, "mech.rasp.source"), *labels = mech_model_meta(m, "mech.rasp.residual");
    const char *circuit = mech_model_meta(m, "mech.rasp.circuit");
    mech_status st;
    if (!src || !labels || !circuit)
        return mech_err_set(err, MECH_ERR_ARG, "%s is not a compiled RASP model (no mech.rasp.source, .residual "
                            "and .circuit metadata)", m->path);
    if ((st = mech_rasp_parse(m->path, src, strlen(src), &v->prog, err)) ||
        (st = mech_rasp_circuit_parse(circuit, &v->circuit, err)) ||
        (st = mech_lens_vars_parse(labels, &v->vars, err)) || (st = mech_lens_vars_layers(v->vars, circuit, err)))
        goto fail;
    if (split_lines(v, src) || (v->circuit->n && !(v->pv = mech_calloc((size_t)v->circuit->n, sizeof *v->pv)))) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    v->model = m, v->L = m->cfg.n_layers, v->NH = m->cfg.n_heads, v->n_pv = v->circuit->n;
    const mech_rasp_node *out = mech_rasp_program_node(v->prog, mech_rasp_program_output(v->prog));
    for (int i = 0; i < v->n_pv; i++) {
        const mech_rasp_circuit_node *cn = &v->circuit->nodes[i];
        mech_tui_program_var *pv = &v->pv[i];
        pv->label = cn->label, pv->node = cn, pv->lens_var = -1;
        // built-ins have no line of their own: their node's position is their first use
        const mech_rasp_node *nd = mech_rasp_program_find(v->prog, cn->label);
        int builtin = !strcmp(cn->kind, "tokens") || !strcmp(cn->kind, "indices") || !strcmp(cn->kind, "length");
        if (nd && !builtin && nd->pos.line >= 1 && nd->pos.line <= v->n_lines) pv->line = nd->pos.line;
        for (int k = 0; k < v->vars->n_vars; k++)
            if (v->vars->vars[k].first_dim == cn->dim_from && !strcmp(v->vars->vars[k].name, cn->label)) pv->lens_var = k;
        if (out && !strcmp(out->label, cn->label)) v->sel = i;
    }
    if (v->n_pv && v->pv[v->sel].line) v->line_cur = v->pv[v->sel].line - 1;
    const char *base = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
    snprintf(v->title, sizeof v->title, "%s: %d layers x %d head%s, d_model %d, %d variables", base, v->L, v->NH,
             v->NH == 1 ? "" : "s", m->cfg.d_model, v->n_pv);
    return MECH_OK;
fail:
    mech_tui_program_deinit(v);
    return st;
}

// --- Running an input ---------------------------------------------------------

// One decoded value as `mech lens --input` prints it: numbers (booleans as
// true/false) as the interpreter writes them, categorical values as their
// label's JSON text, "null" when no dimension is on.
static char *value_text(const mech_lens_var *lv, const mech_lens_decoded *r, int is_bool) {
    if (!lv->numerical) return mech_strdup(r->has_value && r->value ? r->value : "null");
    mech_buf b = {0};
    mech_rasp_value x = mech_rasp_float(r->number);
    if (is_bool && (r->number == 0 || r->number == 1)) x.type = MECH_RASP_BOOL, x.b = r->number == 1;
    mech_rasp_value_json(&b, &x);
    char *s = b.oom || !b.data ? NULL : mech_strdup(b.data);
    mech_buf_free(&b);
    return s;
}

mech_status mech_tui_program_run(mech_tui_program *v, const mech_model *m, const char *input, mech_err *err) {
    mech_rasp_value *in = NULL;
    mech_rasp_trace *tr = NULL;
    mech_run *run = NULL;
    mech_lens_decoded *rows = NULL;
    int32_t *ids = NULL;
    char **val = NULL;
    size_t n = 0, n_rows = 0, n_val = 0;
    mech_status st;
    if (!v->prog) return mech_err_set(err, MECH_ERR_ARG, "no program loaded");
    if ((st = mech_rasp_input_parse(v->prog, input, &in, &n, err))) goto done;
    if (n == 0) {
        st = mech_err_set(err, MECH_ERR_RANGE, "the input is empty: give at least one token");
        goto done;
    }
    int T = (int)n + 1, L = v->L, P = (int)n;
    if (T > m->cfg.n_ctx) {
        st = mech_err_set(err, MECH_ERR_RANGE, "%d tokens exceed the model's max_seq_len of %d", P, m->cfg.n_ctx - 1);
        goto done;
    }
    if (!(ids = mech_malloc((size_t)T * sizeof *ids))) goto oom;
    ids[0] = 0; // BOS
    for (size_t i = 0; i < n; i++) ids[i + 1] = mech_rasp_token_id(v->prog, &in[i]);
    // the interpreter tells which numerical variables are booleans
    if ((st = mech_rasp_eval_trace(v->prog, in, n, &tr, err)) || (st = mech_run_new(m, 1, T, &run, err)) ||
        (st = mech_lens_cache(run, err)) || (st = mech_run_forward(run, ids, err)) ||
        (st = mech_lens_decode(m, run, v->vars, 0, &rows, &n_rows, err)))
        goto done;
    n_val = (size_t)(L + 1) * v->n_pv * P;
    if (!(val = mech_calloc(n_val ? n_val : 1, sizeof *val))) goto oom;
    int col_w = 2, NV = v->vars->n_vars;
    for (int i = 0; i < v->n_pv; i++) {
        mech_tui_program_var *pv = &v->pv[i];
        if (pv->lens_var < 0) continue;
        const mech_rasp_node *nd = mech_rasp_program_find(v->prog, pv->label);
        pv->is_bool = nd && !mech_rasp_node_is_selector(nd) && tr->vals[(size_t)nd->id * n].type == MECH_RASP_BOOL;
        for (int l = 0; l <= L; l++)
            for (int p = 0; p < P; p++) {
                const mech_lens_decoded *r = &rows[((size_t)l * NV + pv->lens_var) * T + p + 1];
                if (!r->present) continue;
                char **at = &val[((size_t)l * v->n_pv + i) * P + p];
                if (!(*at = value_text(&v->vars->vars[pv->lens_var], r, pv->is_bool))) goto oom;
                int w = (int)strlen(*at) + 1;
                if (w > col_w) col_w = w;
            }
    }
    free_vals(v);
    v->val = val, val = NULL, v->P = P, v->layer = L, v->pos0 = 0;
    v->col_w = col_w > 14 ? 14 : col_w;
    snprintf(v->input, sizeof v->input, "%s", input);
    v->error[0] = 0;
    st = MECH_OK;
    goto done;
oom:
    st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
done:
    for (size_t i = 0; val && i < n_val; i++) mech_free(val[i]);
    mech_free(val);
    mech_free(rows);
    mech_run_free(run);
    mech_rasp_trace_free(tr);
    mech_free(ids);
    mech_free(in);
    return st;
}

// --- Keys ---------------------------------------------------------------------

static void line_to_sel(mech_tui_program *v) {
    if (v->n_pv && v->pv[v->sel].line) v->line_cur = v->pv[v->sel].line - 1;
}

// Enter on a source line: the variable written there (the next one when
// the line defines several), else the one the line assigns (`x = ...`).
static int select_line(mech_tui_program *v) {
    int line = v->line_cur + 1, first = -1, next = -1;
    for (int i = 0; i < v->n_pv; i++)
        if (v->pv[i].line == line) {
            if (first < 0) first = i;
            if (next < 0 && i > v->sel) next = i;
        }
    if (first >= 0) {
        v->sel = v->pv[v->sel].line == line && next >= 0 ? next : first;
        return MECH_TUI_REDRAW;
    }
    const char *s = v->line_cur < v->n_lines ? v->lines[v->line_cur] : "";
    while (*s == ' ') s++;
    size_t n = 0;
    while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_') n++;
    const char *e = s + n;
    while (*e == ' ') e++;
    if (!n || *e != '=' || e[1] == '=') return MECH_TUI_NONE;
    for (int i = 0; i < v->n_pv; i++) {
        const char *name = v->pv[i].node->name ? v->pv[i].node->name : v->pv[i].label;
        if (strlen(name) == n && !strncmp(name, s, n)) {
            v->sel = i;
            return MECH_TUI_REDRAW;
        }
    }
    return MECH_TUI_NONE;
}

static int edit_key(mech_tui_program *v, int key) {
    size_t n = strlen(v->edit);
    if (key == MECH_TUI_KEY_ESC) v->editing = 0;
    else if (key == MECH_TUI_KEY_BACKSPACE) {
        if (n) v->edit[n - 1] = 0;
    } else if (key == MECH_TUI_KEY_ENTER) {
        mech_err err = {0};
        if (mech_tui_program_run(v, v->model, v->edit, &err) == MECH_OK) v->editing = 0;
        else {
            // the first line (the rest is a source excerpt the input has none
            // of), without the model's path: the bottom row is short
            const char *msg = err.msg, *path = mech_rasp_program_path(v->prog);
            size_t pl = path ? strlen(path) : 0;
            if (pl && !strncmp(msg, path, pl) && msg[pl] == ':' && msg[pl + 1] == ' ') msg += pl + 2;
            const char *nl = strchr(msg, '\n');
            snprintf(v->error, sizeof v->error, "%.*s", nl ? (int)(nl - msg) : (int)strlen(msg), msg);
        }
    } else if (key >= 32 && key < 127) {
        if (n + 1 < sizeof v->edit) v->edit[n] = (char)key, v->edit[n + 1] = 0;
    } else return MECH_TUI_NONE;
    return MECH_TUI_REDRAW;
}

int mech_tui_program_key(mech_tui_program *v, int key) {
    if (v->editing) return edit_key(v, key);
    int last = v->n_lines ? v->n_lines - 1 : 0, page = v->page > 1 ? v->page - 1 : 1;
    switch (key) {
    case 'j':
        if (v->sel + 1 < v->n_pv) v->sel++;
        line_to_sel(v);
        break;
    case 'k':
        if (v->sel > 0) v->sel--;
        line_to_sel(v);
        break;
    case MECH_TUI_KEY_DOWN: v->line_cur = v->line_cur < last ? v->line_cur + 1 : last; break;
    case MECH_TUI_KEY_UP: v->line_cur = v->line_cur > 0 ? v->line_cur - 1 : 0; break;
    case MECH_TUI_KEY_PGDN: v->line_cur = v->line_cur + page < last ? v->line_cur + page : last; break;
    case MECH_TUI_KEY_PGUP: v->line_cur = v->line_cur > page ? v->line_cur - page : 0; break;
    case MECH_TUI_KEY_HOME: v->line_cur = 0; break;
    case MECH_TUI_KEY_END: v->line_cur = last; break;
    case MECH_TUI_KEY_ENTER: return select_line(v);
    case ']':
        if (!v->P || v->layer >= v->L) return MECH_TUI_NONE;
        v->layer++;
        break;
    case '[':
        if (!v->P || v->layer <= 0) return MECH_TUI_NONE;
        v->layer--;
        break;
    case 'i':
        v->editing = 1, v->edit[0] = 0, v->error[0] = 0;
        break;
    case MECH_TUI_KEY_RIGHT:
    case 'l':
        if (v->pos0 + 1 >= v->P) return MECH_TUI_NONE;
        v->pos0++;
        break;
    case MECH_TUI_KEY_LEFT:
    case 'h':
        if (v->pos0 <= 0) return MECH_TUI_NONE;
        v->pos0--;
        break;
    default: return MECH_TUI_NONE;
    }
    return MECH_TUI_REDRAW;
}

// --- Drawing ------------------------------------------------------------------

static const char *var_value(const mech_tui_program *v, int l, int i, int p) {
    return v->val[((size_t)l * v->n_pv + i) * v->P + p];
}

// The variable is computed at lens layer l and was not at l - 1.
static int var_new(const mech_tui_program *v, int l, int i) {
    if (!v->P || !var_value(v, l, i, 0)) return 0;
    return l == 0 || !var_value(v, l - 1, i, 0);
}

// Row k of the layers pane: 0 the embedding, then per block its heads and
// its MLP. Writes the row's text; returns whether it holds the selected variable.
static int layer_row(const mech_tui_program *v, int k, int pw, int *block, char *out, size_t cap) {
    char pre[48];
    int l = -1, head = -1, sel = 0;
    if (k == 0) snprintf(pre, sizeof pre, "embed");
    else {
        l = (k - 1) / (v->NH + 1), head = (k - 1) % (v->NH + 1);
        // every row names its block: a scrolled pane shows no block header
        if (head == v->NH) head = -1, snprintf(pre, sizeof pre, "L%d mlp", l);
        else snprintf(pre, sizeof pre, "L%d head %d", l, head);
    }
    *block = l;
    int n = snprintf(out, cap, "%-*s", pw, pre), any = 0;
    for (int i = 0; i < v->n_pv && n >= 0 && (size_t)n < cap; i++) {
        const mech_rasp_circuit_node *cn = v->pv[i].node;
        int here = k == 0      ? cn->layer < 0 && cn->head < 0 && cn->mlp_layer < 0
                   : head >= 0 ? cn->head_layer == l && cn->head == head
                               : cn->mlp_layer == l || (cn->layer == l && cn->head < 0 && cn->mlp_layer < 0);
        if (!here) continue;
        n += snprintf(out + n, cap - (size_t)n, "%s%s", any ? ", " : "", v->pv[i].label);
        any = 1, sel |= i == v->sel;
    }
    if (!any && n >= 0 && (size_t)n < cap) snprintf(out + n, cap - (size_t)n, "-");
    return sel;
}

static void render_layers(mech_tui_program *v, mech_tui_grid *g, int y0, int x0, int w, int h) {
    char pre[48], row[512];
    snprintf(pre, sizeof pre, "L%d head %d", v->L - 1, v->NH - 1);
    int pw = (int)strlen(pre) + 2, n_rows = 1 + v->L * (v->NH + 1), block, first_sel = 0;
    mech_tui_grid_put(g, y0, x0, MECH_TUI_HEADER, "layers: what computes each variable", w);
    for (int k = 0; k < n_rows; k++)
        if (layer_row(v, k, pw, &block, row, sizeof row)) {
            first_sel = k;
            break;
        }
    int rows = h - 1, top = 0;
    if (rows < 1) return;
    if (first_sel >= rows) top = first_sel - rows / 2;
    if (top > n_rows - rows) top = n_rows - rows > 0 ? n_rows - rows : 0;
    for (int r = 0; r < rows && top + r < n_rows; r++) {
        int sel = layer_row(v, top + r, pw, &block, row, sizeof row);
        // blocks the shown layer has not applied yet are dimmed
        mech_tui_role role = sel ? MECH_TUI_SEL : v->P && block >= v->layer ? MECH_TUI_DIM : MECH_TUI_TEXT;
        mech_tui_grid_put(g, y0 + 1 + r, x0, role, row, w);
        if (sel) mech_tui_grid_role(g, y0 + 1 + r, x0, w, MECH_TUI_SEL);
    }
}

static void render_source(mech_tui_program *v, mech_tui_grid *g, int y0, int w, int h) {
    char num[16], row[512];
    int nd = snprintf(num, sizeof num, "%d", v->n_lines), sel_line = v->n_pv ? v->pv[v->sel].line - 1 : -1;
    v->page = h;
    if (h < 1) return;
    if (v->line_cur < v->line_top) v->line_top = v->line_cur;
    if (v->line_cur >= v->line_top + h) v->line_top = v->line_cur - h + 1;
    for (int r = 0; r < h && v->line_top + r < v->n_lines; r++) {
        int i = v->line_top + r;
        snprintf(row, sizeof row, "%c%*d %s", i == v->line_cur ? '>' : ' ', nd, i + 1, v->lines[i]);
        mech_tui_role role = i == sel_line ? MECH_TUI_SEL : i == v->line_cur ? MECH_TUI_CROSS : MECH_TUI_TEXT;
        mech_tui_grid_put(g, y0 + r, 0, MECH_TUI_TEXT, row, w);
        if (role != MECH_TUI_TEXT) mech_tui_grid_role(g, y0 + r, 0, w, role);
    }
}

// The selected variable: what computes it, from what, and its residual dimensions.
static void render_selected(mech_tui_program *v, mech_tui_grid *g, int y) {
    if (!v->n_pv) return;
    const mech_tui_program_var *pv = &v->pv[v->sel];
    const mech_rasp_circuit_node *cn = pv->node;
    char where[64], line[1024];
    mech_rasp_circuit_where(cn, where, sizeof where);
    int n = snprintf(line, sizeof line, "%s: %s, %s, computed by %s", pv->label, cn->kind,
                     cn->numerical ? "numerical" : "categorical", cn->layer < 0 ? "the embedding" : where);
    if (cn->mlp_layer >= 0 && n > 0)
        n += snprintf(line + n, sizeof line - (size_t)n, " (hidden units %d..%d)", cn->mlp_from, cn->mlp_to - 1);
    for (int k = 0; k < cn->n_inputs && n > 0 && (size_t)n < sizeof line; k++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%s", k ? ", " : " <- ", cn->inputs[k]);
    mech_tui_grid_put(g, y, 0, MECH_TUI_HEADER, line, -1);
    if (cn->dim_to - 1 <= cn->dim_from) n = snprintf(line, sizeof line, "resid %d:", cn->dim_from);
    else n = snprintf(line, sizeof line, "resid %d..%d:", cn->dim_from, cn->dim_to - 1);
    for (int d = cn->dim_from; d < cn->dim_to && n > 0 && (size_t)n < sizeof line; d++) {
        const char *value = d < v->vars->n_dims ? v->vars->values[d] : NULL;
        n += snprintf(line + n, sizeof line - (size_t)n, "  %d %s%s%s", d, pv->label, value ? ":" : "", value ? value : "");
    }
    mech_tui_grid_put(g, y + 1, 0, MECH_TUI_TEXT, line, -1);
}

static void render_values(mech_tui_program *v, mech_tui_grid *g, int y0, int h) {
    char cell[64];
    int nw = 8;
    for (int i = 0; i < v->n_pv; i++)
        if ((int)strlen(v->pv[i].label) > nw) nw = (int)strlen(v->pv[i].label);
    if (nw > 20) nw = 20;
    int x0 = 2 + nw + 1, cw = v->col_w;
    if (!v->P) mech_tui_grid_put(g, y0, 0, MECH_TUI_HEADER, "  no input run yet: i types one", -1);
    else {
        snprintf(cell, sizeof cell, "  layer %d", v->layer);
        mech_tui_grid_put(g, y0, 0, MECH_TUI_HEADER, cell, -1);
        for (int p = v->pos0; p < v->P; p++) {
            snprintf(cell, sizeof cell, "%d", p);
            mech_tui_grid_put(g, y0, x0 + (p - v->pos0) * cw, MECH_TUI_HEADER, cell, cw - 1);
        }
    }
    int rows = h - 1, top = 0;
    if (rows < 1) return;
    if (v->sel >= rows) top = v->sel - rows + 1;
    for (int r = 0; r < rows && top + r < v->n_pv; r++) {
        int i = top + r, y = y0 + 1 + r, fresh = var_new(v, v->layer, i);
        snprintf(cell, sizeof cell, "%c%c%-*.*s", i == v->sel ? '>' : ' ', fresh ? '*' : ' ', nw, nw, v->pv[i].label);
        mech_tui_grid_put(g, y, 0, i == v->sel ? MECH_TUI_SEL : MECH_TUI_TEXT, cell, -1);
        for (int p = v->pos0; p < v->P; p++) {
            const char *s = var_value(v, v->layer, i, p);
            mech_tui_grid_put(g, y, x0 + (p - v->pos0) * cw, s ? fresh ? MECH_TUI_TITLE : MECH_TUI_TEXT : MECH_TUI_DIM, s ? s : "-",
                              cw - 1);
        }
    }
}

void mech_tui_program_render(mech_tui_program *v, mech_tui_grid *g, int y0, int h) {
    char line[512];
    int W = g->w;
    if (h < 1) return;
    if (!v->prog) {
        mech_tui_grid_put(g, y0, 0, MECH_TUI_ERROR, "no compiled RASP model", -1);
        return;
    }
    // the run first: the title is cut at the right edge of a narrow window
    if (v->P) {
        char after[32] = "the embedding";
        if (v->layer > 0) snprintf(after, sizeof after, "after block %d", v->layer - 1);
        snprintf(line, sizeof line, "input: %s   layer %d/%d (%s)   %s", v->input, v->layer, v->L, after, v->title);
    } else snprintf(line, sizeof line, "%s", v->title);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    // the bottom row: the input editor, the last error or the keys of this view
    int yb = y0 + h - 1;
    if (h >= 2) {
        int x = 0;
        if (v->editing) {
            snprintf(line, sizeof line, "input> %s_  ", v->edit);
            x = mech_tui_grid_put(g, yb, 0, MECH_TUI_HEADER, line, -1);
        }
        if (v->error[0]) {
            snprintf(line, sizeof line, "error: %s", v->error);
            mech_tui_grid_put(g, yb, x, MECH_TUI_ERROR, line, -1);
        } else if (v->editing)
            mech_tui_grid_put(g, yb, x, MECH_TUI_DIM, "(Enter runs it, Esc cancels)", -1);
    }
    int body = h - 2; // without the title and bottom rows
    int t_rows = (body - 2) / 2;
    if (t_rows > v->n_pv + 1) t_rows = v->n_pv + 1;
    if (t_rows < 2) t_rows = body - 2 >= 2 ? 2 : 0;
    int top_h = body - 2 - t_rows;
    if (top_h < 0) top_h = 0;
    // the layers pane as wide as its longest row (up to half the window), the source the rest
    int rw = (int)strlen("layers: what computes each variable");
    char pre[48], row[512];
    snprintf(pre, sizeof pre, "L%d head %d", v->L - 1, v->NH - 1);
    for (int k = 0, block; k < 1 + v->L * (v->NH + 1); k++) {
        layer_row(v, k, (int)strlen(pre) + 2, &block, row, sizeof row);
        if ((int)strlen(row) > rw) rw = (int)strlen(row);
    }
    if (rw > W / 2) rw = W / 2;
    int lw = W - rw - 1;
    render_source(v, g, y0 + 1, lw, top_h);
    for (int r = 0; r < top_h; r++) mech_tui_grid_put(g, y0 + 1 + r, lw, MECH_TUI_DIM, "|", 1);
    render_layers(v, g, y0 + 1, lw + 1, rw, top_h);
    if (body >= 2) render_selected(v, g, y0 + 1 + top_h);
    if (t_rows) render_values(v, g, y0 + 3 + top_h, t_rows);
}
