/*
** tui/view_lens.c: the lens view. The logit lens (GPT-2 models) is a grid
** of residual layers 0..L (rows) x positions (columns): each cell the
** layer's top-1 token on a heat cell shaded by one quantity (top-1
** probability, the target's probability or rank, entropy, KL to the final
** layer; key m), with a cursor line giving the cell's top 5. The decoder
** lens (compiled RASP models) is a table of the program's variables x input
** positions at one layer ([ ] step through layers), each cell the value the
** residual stream holds, printed as `mech lens --input` prints it.
**
** Everything is computed once when the view is built: from a live run
** through the library (mech_lens_logit, mech_lens_decode) or from a stored
** `lens` run through data/ (mech_store_open_read). Names come from the
** tokenizer / the compiled program; when a stored run's model file is gone,
** token ids show as <id>.
*/
#include "tui/tui.h"

#include "compiler/compiler.h"
#include "data/data.h"
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const mode_names[MECH_TUI_LENS_MODES_] = {"top-1 prob", "target prob", "target rank", "entropy",
                                                              "KL to final"};

void mech_tui_lens_deinit(mech_tui_lens *v) {
    for (int t = 0; v->tokens && t < v->T; t++) mech_free(v->tokens[t]);
    for (int i = 0; i < v->n_vars; i++) {
        if (v->var_name) mech_free(v->var_name[i]);
        if (v->var_owner) mech_free(v->var_owner[i]);
    }
    mech_free(v->tokens);
    mech_free(v->cells);
    mech_free(v->var_name);
    mech_free(v->var_owner);
    mech_free(v->var_from);
    mech_free(v->vals);
    memset(v, 0, sizeof *v);
}

// --- Names --------------------------------------------------------------------

// A GPT-2 token's printable label, or <id> without a tokenizer (the model
// file is gone, or the tokenizer lacks the id); a model with no text
// tokenizer (v->ids_plain): the id alone.
static void token_text(const mech_tui_lens *v, const mech_tokenizer *tok, int32_t id, char *out, size_t cap) {
    size_t len = 0;
    const char *s = tok ? mech_tokenizer_token(tok, id, &len) : NULL;
    if (!s) {
        snprintf(out, cap, v->ids_plain && !tok ? "%d" : "<%d>", (int)id);
        return;
    }
    char raw[64];
    snprintf(raw, sizeof raw, "%.*s", (int)(len < sizeof raw ? len : sizeof raw - 1), s);
    mech_tui_token_label(raw, out, cap);
}

// A compiled model's token as its program names it (cli/compiled.c does the
// same for the commands): BOS, a vocab value as JSON, PAD, <id>.
static void compiled_token(const mech_rasp_program *p, int32_t id, char *out, size_t cap) {
    size_t nv = 0;
    const mech_rasp_value *vocab = p ? mech_rasp_program_vocab(p, &nv) : NULL;
    mech_buf b = {0};
    if (!p) mech_buf_printf(&b, "<%d>", (int)id);
    else if (id == 0) mech_buf_puts(&b, "BOS");
    else if (id >= 1 && (size_t)id <= nv) mech_rasp_value_json(&b, &vocab[id - 1]);
    else if ((size_t)id == nv + 1) mech_buf_puts(&b, "PAD");
    else mech_buf_printf(&b, "<%d>", (int)id);
    mech_buf_append(&b, "", 0);
    mech_tui_token_label(b.data && !b.oom ? b.data : "?", out, cap);
    mech_buf_free(&b);
}

static mech_status set_tokens(mech_tui_lens *v, int T, mech_err *err) {
    v->T = T;
    if (!(v->tokens = mech_calloc((size_t)(T > 0 ? T : 1), sizeof *v->tokens)))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    return MECH_OK;
}

static mech_status put_token_label(mech_tui_lens *v, int t, const char *lab, mech_err *err) {
    if (!(v->tokens[t] = mech_strdup(lab))) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    return MECH_OK;
}

// --- Logit lens -----------------------------------------------------------------

// The scale of each mode over the grid: the largest rank, entropy and KL.
static void logit_scales(mech_tui_lens *v) {
    for (int i = 0; i < MECH_TUI_LENS_MODES_; i++) v->vmax[i] = 0;
    v->vmax[MECH_TUI_LENS_TOP1] = v->vmax[MECH_TUI_LENS_TARGET] = 1;
    v->has_target = 0;
    for (int i = 0; i < v->L1 * v->T; i++) {
        const mech_tui_lens_cell *c = &v->cells[i];
        if (c->target >= 0) {
            v->has_target = 1;
            if ((double)c->target_rank > v->vmax[MECH_TUI_LENS_RANK]) v->vmax[MECH_TUI_LENS_RANK] = (double)c->target_rank;
        }
        if (c->entropy > v->vmax[MECH_TUI_LENS_ENTROPY]) v->vmax[MECH_TUI_LENS_ENTROPY] = c->entropy;
        if (c->kl > v->vmax[MECH_TUI_LENS_KL]) v->vmax[MECH_TUI_LENS_KL] = c->kl;
    }
}

double mech_tui_lens_value(const mech_tui_lens *v, int mode, int l, int p) {
    if (v->decoder || !v->cells || l < 0 || l >= v->L1 || p < 0 || p >= v->T) return NAN;
    const mech_tui_lens_cell *c = &v->cells[(size_t)l * v->T + p];
    switch (mode) {
    case MECH_TUI_LENS_TOP1: return c->k > 0 ? c->top_probs[0] : NAN;
    case MECH_TUI_LENS_TARGET: return c->target >= 0 ? c->target_prob : NAN;
    case MECH_TUI_LENS_RANK: return c->target >= 0 ? (double)c->target_rank : NAN;
    case MECH_TUI_LENS_ENTROPY: return c->entropy;
    case MECH_TUI_LENS_KL: return c->kl;
    default: return NAN;
    }
}

int mech_tui_lens_level(const mech_tui_lens *v, int mode, int l, int p) {
    double x = mech_tui_lens_value(v, mode, l, p);
    if (isnan(x) || mode < 0 || mode >= MECH_TUI_LENS_MODES_) return 0;
    double mx = v->vmax[mode], w;
    if (mode == MECH_TUI_LENS_RANK) // log scale: rank 0 is the brightest, the grid's worst rank the darkest
        w = mx > 0 ? 1 - log1p(x) / log1p(mx) : 1;
    else if (mode == MECH_TUI_LENS_ENTROPY || mode == MECH_TUI_LENS_KL) w = mx > 0 ? x / mx : 0;
    else w = x;
    return mech_tui_level((float)w);
}

// Fills the cells from the library's rows (batch item 0).
static mech_status logit_cells(mech_tui_lens *v, const mech_lens_row *rows, size_t n_rows, const mech_tokenizer *tok,
                               mech_err *err) {
    if (!(v->cells = mech_calloc((size_t)v->L1 * v->T, sizeof *v->cells)))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int i = 0; i < v->L1 * v->T; i++) v->cells[i].target = -1;
    for (size_t i = 0; i < n_rows; i++) {
        const mech_lens_row *r = &rows[i];
        if (r->batch != 0 || r->layer < 0 || r->layer >= v->L1 || r->pos < 0 || r->pos >= v->T) continue;
        mech_tui_lens_cell *c = &v->cells[(size_t)r->layer * v->T + r->pos];
        c->k = r->k < MECH_TUI_LENS_K ? r->k : MECH_TUI_LENS_K;
        for (int j = 0; j < c->k; j++) {
            c->top_ids[j] = r->top_ids[j], c->top_probs[j] = r->top_probs[j];
            token_text(v, tok, r->top_ids[j], c->top_text[j], sizeof c->top_text[j]);
        }
        c->target = r->target, c->target_rank = r->target_rank, c->target_prob = r->target_prob;
        if (c->target >= 0) token_text(v, tok, c->target, c->target_text, sizeof c->target_text);
        c->entropy = r->entropy, c->kl = r->kl;
    }
    logit_scales(v);
    return MECH_OK;
}

static mech_status logit_from_run(mech_tui_lens *v, const mech_model *m, const mech_run *run, const int32_t *ids,
                                  int T, const mech_tokenizer *tok, mech_err *err) {
    int V = m->cfg.d_vocab;
    int32_t *targets = mech_malloc((size_t)T * sizeof *targets);
    mech_lens_row *rows = NULL;
    size_t n_rows = 0;
    mech_status st = MECH_OK;
    if (!targets) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    // the target is what the model should predict there: the prompt's next
    // token, and at the end (no next token) the model's own top-1
    for (int p = 0; p + 1 < T; p++) targets[p] = ids[p + 1] >= 0 && ids[p + 1] < V ? ids[p + 1] : -1;
    const float *logits = mech_run_logits(run); // (1, T, V)
    int32_t best = 0;
    for (int u = 1; logits && u < V; u++) // ties: the lower id, as the lens orders them
        if (logits[(size_t)(T - 1) * V + u] > logits[(size_t)(T - 1) * V + best]) best = u;
    targets[T - 1] = logits ? best : -1;
    if ((st = mech_lens_logit(m, run, MECH_TUI_LENS_K, targets, &rows, &n_rows, err))) goto done;
    v->L1 = m->cfg.n_layers + 1;
    v->ids_plain = !tok; // the model is here: no tokenizer means no text
    if ((st = set_tokens(v, T, err))) goto done;
    for (int t = 0; t < T && !st; t++) {
        char lab[MECH_TUI_LENS_TEXT];
        token_text(v, tok, ids[t], lab, sizeof lab);
        st = put_token_label(v, t, lab, err);
    }
    if (!st) st = logit_cells(v, rows, n_rows, tok, err);
done:
    mech_free(rows);
    mech_free(targets);
    return st;
}

// --- Decoder lens ---------------------------------------------------------------

// The commands leave these out of the table: the constant dimensions and
// the helpers of selector_width ("length.bos_share").
static int var_shown(const char *name) { return strcmp(name, "bos") && strcmp(name, "one") && !strchr(name, '.'); }

// Which block computes variable name, from the compiler's circuit (as `mech
// info` lists it): "embed", "L0 attn H0 + L0 mlp", "L1 mlp", "L2 attn H0".
static void owner_of(const mech_json *circuit, const char *name, char *out, size_t cap) {
    snprintf(out, cap, "?");
    const mech_json *nodes = circuit ? mech_json_get(circuit, "nodes") : NULL;
    for (size_t i = 0; nodes && nodes->type == MECH_JSON_ARRAY && i < nodes->n; i++) {
        const mech_json *nd = &nodes->items[i];
        const mech_json *label = mech_json_get(nd, "label");
        if (!label || label->type != MECH_JSON_STRING || strcmp(label->str, name)) continue;
        const mech_json *layer = mech_json_get(nd, "layer"), *head = mech_json_get(nd, "head"),
                        *mlp = mech_json_get(nd, "mlp");
        int has_head = head && head->type == MECH_JSON_ARRAY && head->n == 2;
        int has_mlp = mlp && mlp->type == MECH_JSON_ARRAY && mlp->n >= 1;
        long long l = layer ? layer->inum : -1;
        if (!layer) snprintf(out, cap, "embed");
        else if (has_head && has_mlp)
            snprintf(out, cap, "L%lld attn H%lld + L%lld mlp", l, (long long)head->items[1].inum,
                     (long long)mlp->items[0].inum);
        else if (has_head) snprintf(out, cap, "L%lld attn H%lld", l, (long long)head->items[1].inum);
        else if (mlp) snprintf(out, cap, "L%lld mlp", l);
        else snprintf(out, cap, "L%lld", l);
        return;
    }
}

// Which variables hold booleans (printed true/false, as `mech rasp --trace`
// and `mech lens --input` print them): the interpreter's values on the input
// ids[1..T) (ids[0] is BOS). is_bool[v] for every variable of vars.
static void bool_vars(const mech_rasp_program *p, const mech_lens_vars *vars, const int32_t *ids, int T, int *is_bool) {
    for (int v = 0; v < vars->n_vars; v++) is_bool[v] = 0;
    size_t nv = 0;
    const mech_rasp_value *vocab = p ? mech_rasp_program_vocab(p, &nv) : NULL;
    if (!vocab || T < 2) return;
    mech_rasp_value *in = mech_malloc((size_t)(T - 1) * sizeof *in);
    if (!in) return;
    for (int t = 1; t < T; t++) {
        if (ids[t] < 1 || (size_t)ids[t] > nv) {
            mech_free(in);
            return;
        }
        in[t - 1] = vocab[ids[t] - 1];
    }
    mech_rasp_trace *tr = NULL;
    mech_err e = {0};
    if (!mech_rasp_eval_trace(p, in, (size_t)(T - 1), &tr, &e) && tr->n > 0)
        for (int v = 0; v < vars->n_vars; v++) {
            const mech_rasp_node *node = mech_rasp_program_find(p, vars->vars[v].name);
            is_bool[v] = node && !mech_rasp_node_is_selector(node) && tr->vals[(size_t)node->id * tr->n].type == MECH_RASP_BOOL;
        }
    mech_rasp_trace_free(tr);
    mech_free(in);
}

// One decoded value as `mech lens --input` prints it: "-" before the layer
// that computes the variable, a number (or true/false) through the
// interpreter's JSON form, a categorical value's label, "null" for none.
static void fmt_value(char *out, size_t cap, int present, int numerical, int is_bool, int has_value, double number,
                      const char *value) {
    if (!present) {
        snprintf(out, cap, "-");
        return;
    }
    if (!numerical) {
        mech_tui_token_label(has_value && value ? value : "null", out, cap);
        return;
    }
    if (!isfinite(number)) {
        snprintf(out, cap, "%g", number);
        return;
    }
    mech_buf b = {0};
    mech_rasp_value x = mech_rasp_float(number);
    if (is_bool && (number == 0 || number == 1)) x = mech_rasp_bool(number == 1);
    mech_rasp_value_json(&b, &x);
    mech_buf_append(&b, "", 0);
    mech_tui_token_label(b.data && !b.oom ? b.data : "?", out, cap);
    mech_buf_free(&b);
}

// Allocates the variable arrays for n variables and L1 x T values.
static mech_status decoder_alloc(mech_tui_lens *v, int n, mech_err *err) {
    v->n_vars = n;
    v->var_name = mech_calloc((size_t)(n ? n : 1), sizeof *v->var_name);
    v->var_owner = mech_calloc((size_t)(n ? n : 1), sizeof *v->var_owner);
    v->var_from = mech_calloc((size_t)(n ? n : 1), sizeof *v->var_from);
    v->vals = mech_calloc((size_t)v->L1 * (n ? n : 1) * (v->T ? v->T : 1), sizeof *v->vals);
    if (!v->var_name || !v->var_owner || !v->var_from || !v->vals)
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < (size_t)v->L1 * n * v->T; i++) snprintf(v->vals[i], sizeof v->vals[i], "-");
    return MECH_OK;
}

// Display order: by the layer that computes the variable, residual order within a layer.
static void order_by_layer(const int *from, int n, int *order) {
    int k = 0, lmax = 0;
    for (int i = 0; i < n; i++) lmax = from[i] > lmax ? from[i] : lmax;
    for (int l = -1; l <= lmax; l++)
        for (int i = 0; i < n; i++)
            if (from[i] == l || (l == -1 && from[i] < -1)) order[k++] = i;
}

static mech_status decoder_from_run(mech_tui_lens *v, const mech_model *m, const mech_run *run, const int32_t *ids,
                                    int T, mech_err *err) {
    const char *labels = mech_model_meta(m, "mech.rasp.residual"), *circuit = mech_model_meta(m, "mech.rasp.circuit");
    const char *src = mech_model_meta(m, "mech.rasp.source");
    mech_lens_vars *vars = NULL;
    mech_lens_decoded *rows = NULL;
    mech_rasp_program *prog = NULL;
    mech_json *cj = NULL;
    int *is_bool = NULL, *idx = NULL, *from = NULL, *order = NULL;
    size_t n_rows = 0;
    mech_status st;
    mech_err e = {0};
    if ((st = mech_lens_vars_parse(labels, &vars, err)) || (circuit && (st = mech_lens_vars_layers(vars, circuit, err))) ||
        (st = mech_lens_decode(m, run, vars, 0, &rows, &n_rows, err)))
        goto done;
    if (src && mech_rasp_parse(m->path ? m->path : "model", src, strlen(src), &prog, &e)) prog = NULL;
    if (circuit && mech_json_parse(circuit, strlen(circuit), &cj, &e)) cj = NULL;
    v->decoder = 1, v->L1 = m->cfg.n_layers + 1;
    if ((st = set_tokens(v, T > 1 ? T - 1 : 0, err))) goto done;
    for (int t = 1; t < T && !st; t++) { // BOS (position 0) is not an input position
        char lab[MECH_TUI_LENS_TEXT];
        compiled_token(prog, ids[t], lab, sizeof lab);
        st = put_token_label(v, t - 1, lab, err);
    }
    if (st) goto done;
    is_bool = mech_calloc((size_t)vars->n_vars + 1, sizeof *is_bool);
    idx = mech_calloc((size_t)vars->n_vars + 1, sizeof *idx);
    from = mech_calloc((size_t)vars->n_vars + 1, sizeof *from);
    order = mech_calloc((size_t)vars->n_vars + 1, sizeof *order);
    if (!is_bool || !idx || !from || !order) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    bool_vars(prog, vars, ids, T, is_bool);
    int n = 0;
    for (int i = 0; i < vars->n_vars; i++)
        if (var_shown(vars->vars[i].name)) idx[n] = i, from[n] = vars->vars[i].from_layer, n++;
    if (n && from[0] < 0) // no circuit: the first layer where the variable is present
        for (int j = 0; j < n; j++) {
            from[j] = v->L1;
            for (int l = v->L1 - 1; l >= 0; l--)
                if (rows[((size_t)l * vars->n_vars + idx[j]) * T + (T > 1 ? 1 : 0)].present) from[j] = l;
        }
    order_by_layer(from, n, order);
    if ((st = decoder_alloc(v, n, err))) goto done;
    for (int j = 0; j < n && !st; j++) {
        int vi = idx[order[j]];
        char owner[64];
        owner_of(cj, vars->vars[vi].name, owner, sizeof owner);
        v->var_from[j] = from[order[j]];
        if (!(v->var_name[j] = mech_strdup(vars->vars[vi].name)) || !(v->var_owner[j] = mech_strdup(owner))) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
            break;
        }
        for (int l = 0; l < v->L1; l++)
            for (int t = 1; t < T; t++) {
                const mech_lens_decoded *r = &rows[((size_t)l * vars->n_vars + vi) * T + t];
                char *out = v->vals[((size_t)l * n + j) * v->T + (t - 1)];
                fmt_value(out, MECH_TUI_LENS_TEXT, r->present, vars->vars[vi].numerical, is_bool[vi], r->has_value,
                          r->number, r->value);
            }
    }
done:
    mech_free(is_bool), mech_free(idx), mech_free(from), mech_free(order);
    mech_json_free(cj);
    mech_rasp_program_free(prog);
    mech_free(rows);
    mech_lens_vars_free(vars);
    return st;
}

mech_status mech_tui_lens_from_run(mech_tui_lens *v, const mech_model *m, const mech_run *run, const int32_t *ids,
                                   int T, const mech_tokenizer *tok, mech_err *err) {
    mech_tui_lens_deinit(v);
    if (T < 1 || !ids) return mech_err_set(err, MECH_ERR_ARG, "the lens needs at least one token");
    mech_status st = mech_model_meta(m, "mech.rasp.residual") ? decoder_from_run(v, m, run, ids, T, err)
                                                               : logit_from_run(v, m, run, ids, T, tok, err);
    if (st) {
        mech_tui_lens_deinit(v);
        return st;
    }
    if (v->decoder) snprintf(v->title, sizeof v->title, "decoder lens (live)");
    else snprintf(v->title, sizeof v->title, "logit lens (live); target: the next token, at the end the model's top-1");
    return MECH_OK;
}

void mech_tui_lens_ensure(mech_tui_lens *v, mech_tui_lens_live *src) {
    if (!src->m || src->built) return;
    src->built = 1;
    mech_err err = {0};
    mech_tokenizer *own = NULL;
    const mech_tokenizer *tok = src->tok;
    if (!tok && !mech_model_meta(src->m, "mech.rasp.residual") && mech_tokenizer_gpt2_fits(src->m->cfg.d_vocab) &&
        !mech_tokenizer_gpt2(&own, &err))
        tok = own;
    if (mech_tui_lens_from_run(v, src->m, src->run, src->ids, src->T, tok, &err))
        snprintf(v->title, sizeof v->title, "the lens cannot be computed: %.200s", err.msg);
    mech_tokenizer_free(own);
}

// --- Stored runs ----------------------------------------------------------------

static int find_name(char **names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return i;
    return -1;
}

// A stored decoder lens (site 'decoder_lens'): values come back as stored
// (rank 1 = present; categorical: token = the value's index among the
// variable's dimensions) and are named through the model's residual labels
// when m loaded; otherwise categorical values show as #index.
static mech_status decoder_load(mech_tui_lens *v, const mech_result_row *r, size_t n, const mech_model *m,
                                const char *text, const int32_t *ids, int n_ids, mech_err *err) {
    const char *labels = m ? mech_model_meta(m, "mech.rasp.residual") : NULL;
    const char *circuit = m ? mech_model_meta(m, "mech.rasp.circuit") : NULL;
    const char *src = m ? mech_model_meta(m, "mech.rasp.source") : NULL;
    mech_lens_vars *vars = NULL;
    mech_rasp_program *prog = NULL;
    mech_json *cj = NULL;
    char **names = NULL;
    int *from = NULL, *order = NULL, *cat = NULL, *is_bool = NULL, nv = 0;
    mech_status st = MECH_OK;
    mech_err e = {0};
    if (labels && mech_lens_vars_parse(labels, &vars, &e)) vars = NULL;
    if (vars && circuit && mech_lens_vars_layers(vars, circuit, &e)) (void)0; // from_layer then stays -1
    if (src && mech_rasp_parse(m->path ? m->path : "model", src, strlen(src), &prog, &e)) prog = NULL;
    if (circuit && mech_json_parse(circuit, strlen(circuit), &cj, &e)) cj = NULL;
    int L1 = 0, T = 0;
    names = mech_calloc(n + 1, sizeof *names);
    if (!names) goto oom;
    for (size_t i = 0; i < n; i++) {
        if (r[i].item != 0 || strcmp(r[i].site, "decoder_lens") || !r[i].metric) continue;
        L1 = r[i].layer + 1 > L1 ? r[i].layer + 1 : L1;
        T = r[i].pos + 1 > T ? r[i].pos + 1 : T;
        if (find_name(names, nv, r[i].metric) < 0) names[nv++] = r[i].metric; // borrowed from r
    }
    v->decoder = 1, v->L1 = L1;
    if ((st = set_tokens(v, T, err))) goto done;
    for (int t = 0; t < T; t++) { // the input after BOS: the program's names, else the stored text's words
        char lab[MECH_TUI_LENS_TEXT];
        if (prog && t + 1 < n_ids) compiled_token(prog, ids[t + 1], lab, sizeof lab);
        else {
            const char *p = text;
            for (int w = 0; p && *p; w++) {
                while (*p == ' ') p++;
                size_t len = strcspn(p, " ");
                if (w == t) {
                    snprintf(lab, sizeof lab, "%.*s", (int)(len < sizeof lab ? len : sizeof lab - 1), p);
                    break;
                }
                p += len;
            }
            if (!p || !*p) snprintf(lab, sizeof lab, t + 1 < n_ids ? "<%d>" : "?", t + 1 < n_ids ? (int)ids[t + 1] : 0);
        }
        if ((st = put_token_label(v, t, lab, err))) goto done;
    }
    from = mech_calloc((size_t)nv + 1, sizeof *from);
    order = mech_calloc((size_t)nv + 1, sizeof *order);
    cat = mech_calloc((size_t)nv + 1, sizeof *cat);
    is_bool = mech_calloc((size_t)(vars ? vars->n_vars : 0) + 1, sizeof *is_bool);
    if (!from || !order || !cat || !is_bool) goto oom;
    if (vars) bool_vars(prog, vars, ids, n_ids, is_bool);
    const mech_lens_var **lv = mech_calloc((size_t)nv + 1, sizeof *lv);
    if (!lv) goto oom;
    for (int j = 0; j < nv; j++) {
        from[j] = L1;
        for (int k = 0; vars && k < vars->n_vars; k++)
            if (!strcmp(vars->vars[k].name, names[j])) lv[j] = &vars->vars[k];
    }
    for (size_t i = 0; i < n; i++) {
        if (r[i].item != 0 || strcmp(r[i].site, "decoder_lens")) continue;
        int j = find_name(names, nv, r[i].metric);
        if (r[i].rank == 1 && r[i].layer < from[j]) from[j] = r[i].layer;
        if (r[i].token >= 0) cat[j] = 1; // without the model: a value index means categorical
    }
    for (int j = 0; j < nv; j++)
        if (lv[j] && lv[j]->from_layer >= 0) from[j] = lv[j]->from_layer;
    order_by_layer(from, nv, order);
    if ((st = decoder_alloc(v, nv, err))) {
        mech_free(lv);
        goto done;
    }
    int *pos_of = order; // display row of variable j: inverse of order
    int *row_of = mech_calloc((size_t)nv + 1, sizeof *row_of);
    if (!row_of) {
        mech_free(lv);
        goto oom;
    }
    for (int k = 0; k < nv; k++) row_of[pos_of[k]] = k;
    for (int k = 0; k < nv && !st; k++) {
        int j = order[k];
        char owner[64];
        owner_of(cj, names[j], owner, sizeof owner);
        v->var_from[k] = from[j];
        if (!(v->var_name[k] = mech_strdup(names[j])) || !(v->var_owner[k] = mech_strdup(owner)))
            st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    for (size_t i = 0; i < n && !st; i++) {
        if (r[i].item != 0 || strcmp(r[i].site, "decoder_lens")) continue;
        int j = find_name(names, nv, r[i].metric), k = row_of[j];
        if (r[i].layer < 0 || r[i].pos < 0) continue;
        char *out = v->vals[((size_t)r[i].layer * nv + k) * T + r[i].pos];
        const mech_lens_var *var = lv[j];
        int numerical = var ? var->numerical : !cat[j];
        const char *value = NULL;
        char idxs[24];
        if (!numerical && r[i].token >= 0) {
            if (var && r[i].token < var->n_dims) value = vars->values[var->first_dim + r[i].token];
            else snprintf(idxs, sizeof idxs, "#%lld", (long long)r[i].token), value = idxs;
        }
        int b = var ? is_bool[var - vars->vars] : 0;
        fmt_value(out, MECH_TUI_LENS_TEXT, r[i].rank == 1, numerical, b, numerical ? 1 : r[i].value == 1, r[i].value,
                  value);
    }
    mech_free(row_of);
    mech_free(lv);
    goto done;
oom:
    st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
done:
    mech_free(names), mech_free(from), mech_free(order), mech_free(cat), mech_free(is_bool);
    mech_json_free(cj);
    mech_rasp_program_free(prog);
    mech_lens_vars_free(vars);
    return st;
}

// A stored logit lens: item 0's rows (metric prob with rank 0..k-1, kl,
// entropy, target_prob with the target's rank).
static mech_status logit_load(mech_tui_lens *v, const mech_result_row *r, size_t n, const mech_tokenizer *tok,
                              const int32_t *ids, int n_ids, mech_err *err) {
    int L1 = 0, T = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].item == 0 && r[i].layer >= 0 && r[i].pos >= 0) {
            L1 = r[i].layer + 1 > L1 ? r[i].layer + 1 : L1;
            T = r[i].pos + 1 > T ? r[i].pos + 1 : T;
        }
    v->L1 = L1;
    mech_status st = set_tokens(v, T, err);
    for (int t = 0; t < T && !st; t++) {
        char lab[MECH_TUI_LENS_TEXT];
        if (t < n_ids) token_text(v, tok, ids[t], lab, sizeof lab);
        else snprintf(lab, sizeof lab, "?");
        st = put_token_label(v, t, lab, err);
    }
    if (st) return st;
    if (!(v->cells = mech_calloc((size_t)L1 * T + 1, sizeof *v->cells)))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int i = 0; i < L1 * T; i++) v->cells[i].target = -1, v->cells[i].entropy = v->cells[i].kl = NAN;
    for (size_t i = 0; i < n; i++) {
        if (r[i].item != 0 || r[i].layer < 0 || r[i].pos < 0) continue;
        mech_tui_lens_cell *c = &v->cells[(size_t)r[i].layer * T + r[i].pos];
        if (!strcmp(r[i].metric, "prob") && r[i].rank >= 0 && r[i].rank < MECH_TUI_LENS_K) {
            int j = r[i].rank;
            c->top_ids[j] = (int32_t)r[i].token, c->top_probs[j] = r[i].value;
            token_text(v, tok, (int32_t)r[i].token, c->top_text[j], sizeof c->top_text[j]);
            if (j + 1 > c->k) c->k = j + 1;
        } else if (!strcmp(r[i].metric, "kl")) c->kl = r[i].value;
        else if (!strcmp(r[i].metric, "entropy")) c->entropy = r[i].value;
        else if (!strcmp(r[i].metric, "target_prob"))
        {
            c->target = (int32_t)r[i].token, c->target_rank = r[i].rank, c->target_prob = r[i].value;
            token_text(v, tok, c->target, c->target_text, sizeof c->target_text);
        }
    }
    logit_scales(v);
    return MECH_OK;
}

mech_status mech_tui_lens_load(const char *path, int64_t run_id, mech_tui_lens *v, mech_err *err) {
    mech_tui_lens_deinit(v);
    mech_store *s = NULL;
    mech_run_info ri = {0};
    mech_result_row *rows = NULL;
    mech_model *m = NULL;
    mech_tokenizer *own_tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;
    size_t n = 0;
    mech_status st = mech_store_open_read(path, &s, err);
    if (st) return st;
    if ((st = mech_store_run_info(s, run_id, &ri, err))) goto done;
    if (!ri.kind || strcmp(ri.kind, "lens")) {
        st = mech_err_set(err, MECH_ERR_ARG, "run %lld is a %s run, not a lens run", (long long)run_id,
                          ri.kind ? ri.kind : "?");
        goto done;
    }
    if ((st = mech_store_results_get(s, run_id, NULL, &rows, &n, err))) goto done;
    mech_err pe = {0};
    if (mech_store_prompt_get(s, run_id, 0, "prompt", &text, &ids, &n_ids, &pe)) n_ids = 0; // shown as <id> / ?
    // names from the run's model when it is still there (its tokenizer, or
    // the built-in GPT-2 one the commands fall back to); else token ids
    mech_err me = {0};
    const char *why = "";
    if (!ri.model_path || access(ri.model_path, F_OK) || mech_model_load(ri.model_path, &m, &me))
        m = NULL, why = "  (model file not found: token ids shown)";
    const mech_tokenizer *tok = m ? m->tok : NULL;
    if (m && !tok && mech_tokenizer_gpt2_fits(m->cfg.d_vocab) && !mech_tokenizer_gpt2(&own_tok, &me)) tok = own_tok;
    v->ids_plain = m && !tok; // the model is here without a text tokenizer: ids alone
    int decoder = 0;
    for (size_t i = 0; i < n && !decoder; i++) decoder = !strcmp(rows[i].site, "decoder_lens");
    st = decoder ? decoder_load(v, rows, n, m, text, ids, n_ids, err) : logit_load(v, rows, n, tok, ids, n_ids, err);
    if (st) goto done;
    v->run_id = run_id;
    const char *model = ri.model_path ? ri.model_path : "-";
    const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    // a tuned-lens run (mech lens --tuned) has the same rows as a logit
    // lens run; only its parameters say which translators produced them
    // the prompt: its text in quotes; given as ids (no text stored), the ids
    char prompt[80];
    if (text) snprintf(prompt, sizeof prompt, "\"%.60s\"", text);
    else if (n_ids > 0) {
        size_t k = (size_t)snprintf(prompt, sizeof prompt, "ids");
        int t = 0;
        for (; t < n_ids && k < 60; t++) k += (size_t)snprintf(prompt + k, sizeof prompt - k, " %d", (int)ids[t]);
        if (t < n_ids) snprintf(prompt + k, sizeof prompt - k, " ..."); // ids are at most 11 bytes: k < 72
    } else snprintf(prompt, sizeof prompt, "(no prompt)");
    mech_json *pj = NULL;
    const char *tuned = NULL;
    if (!decoder && ri.params_json && !mech_json_parse(ri.params_json, strlen(ri.params_json), &pj, NULL))
        tuned = mech_json_str(pj, "tuned", NULL);
    if (tuned) {
        const char *tbase = strrchr(tuned, '/') ? strrchr(tuned, '/') + 1 : tuned;
        snprintf(v->title, sizeof v->title, "run %lld tuned lens (%.48s)  %.48s  %s%s", (long long)run_id, tbase,
                 base, prompt, why);
    } else
        snprintf(v->title, sizeof v->title, "run %lld %s lens  %.60s  %s%s", (long long)run_id,
                 decoder ? "decoder" : "logit", base, prompt, why);
    mech_json_free(pj);
done:
    if (st) mech_tui_lens_deinit(v);
    mech_tokenizer_free(own_tok);
    mech_model_free(m);
    mech_free(text);
    mech_free(ids);
    mech_store_results_free(rows, n);
    mech_store_run_info_deinit(&ri);
    mech_store_close(s);
    return st;
}

// --- Keys -----------------------------------------------------------------------

static int clampi(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }

int mech_tui_lens_key(mech_tui_lens *v, int key) {
    int rows = v->decoder ? v->n_vars : v->L1;
    switch (key) {
    case 'k': case MECH_TUI_KEY_UP: if (v->decoder) v->cv--; else v->cl--; break;
    case 'j': case MECH_TUI_KEY_DOWN: if (v->decoder) v->cv++; else v->cl++; break;
    case 'h': case MECH_TUI_KEY_LEFT: v->cp--; break;
    case 'l': case MECH_TUI_KEY_RIGHT: v->cp++; break;
    case MECH_TUI_KEY_HOME: v->cp = 0; break;
    case MECH_TUI_KEY_END: v->cp = v->T - 1; break;
    case ']': case '}': if (!v->decoder) return MECH_TUI_NONE; v->dl++; break;
    case '[': case '{': if (!v->decoder) return MECH_TUI_NONE; v->dl--; break;
    case 'm':
        if (v->decoder) return MECH_TUI_NONE;
        // the target's probability and rank only where there is a target
        do v->mode = (v->mode + 1) % MECH_TUI_LENS_MODES_;
        while (!v->has_target && (v->mode == MECH_TUI_LENS_TARGET || v->mode == MECH_TUI_LENS_RANK));
        break;
    default: return MECH_TUI_NONE;
    }
    v->cp = clampi(v->cp, 0, v->T > 0 ? v->T - 1 : 0);
    v->cl = clampi(v->cl, 0, v->L1 > 0 ? v->L1 - 1 : 0);
    v->cv = clampi(v->cv, 0, rows > 0 && v->decoder ? rows - 1 : 0);
    v->dl = clampi(v->dl, 0, v->L1 > 0 ? v->L1 - 1 : 0);
    return MECH_TUI_REDRAW;
}

// --- Drawing --------------------------------------------------------------------

// Keeps the cursor's column on screen: the first column shown.
static int first_col(int cur, int c0, int ncols, int n) {
    if (ncols < 1) return cur;
    if (cur < c0) c0 = cur;
    if (cur >= c0 + ncols) c0 = cur - ncols + 1;
    if (c0 > n - ncols) c0 = n - ncols;
    return c0 < 0 ? 0 : c0;
}

static void layer_label(int l, char *out, size_t cap) {
    if (l == 0) snprintf(out, cap, "0 emb");
    else snprintf(out, cap, "%d", l);
}

static void render_logit(mech_tui_lens *v, mech_tui_grid *g, int y0, int h) {
    char line[512];
    const int lw = 6, cw = 8; // row labels; a cell: 7 characters of its top-1 token and a gap
    const mech_tui_lens_cell *c = &v->cells[(size_t)v->cl * v->T + v->cp];
    double x = mech_tui_lens_value(v, v->mode, v->cl, v->cp);
    char lab[16];
    layer_label(v->cl, lab, sizeof lab);
    int n = snprintf(line, sizeof line, "layer %s  pos %d \"%s\"  %s ", lab, v->cp, v->tokens[v->cp],
                     mode_names[v->mode]);
    if (isnan(x)) snprintf(line + n, sizeof line - (size_t)n, "-");
    else if (v->mode == MECH_TUI_LENS_RANK) snprintf(line + n, sizeof line - (size_t)n, "%.0f", x);
    else snprintf(line + n, sizeof line - (size_t)n, "%.4g", x);
    if (c->target >= 0) {
        size_t m = strlen(line);
        snprintf(line + m, sizeof line - m, "  target \"%s\" p %.4g rank %lld", c->target_text, c->target_prob,
                 (long long)c->target_rank);
    }
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_TEXT, line, -1);
    n = snprintf(line, sizeof line, "top %d:", c->k);
    for (int j = 0; j < c->k && n > 0 && (size_t)n < sizeof line; j++)
        n += snprintf(line + n, sizeof line - (size_t)n, "  \"%s\" %.4g", c->top_text[j], c->top_probs[j]);
    mech_tui_grid_put(g, y0 + 2, 0, MECH_TUI_TEXT, line, -1);
    if (h < 5) return;
    int ncols = (g->w - lw) / cw;
    if (ncols < 1) return;
    v->c0 = first_col(v->cp, v->c0, ncols, v->T);
    mech_tui_grid_put(g, y0 + 3, 0, MECH_TUI_HEADER, "layer", lw);
    for (int p = v->c0; p < v->T && p - v->c0 < ncols; p++)
        mech_tui_grid_put(g, y0 + 3, lw + (p - v->c0) * cw, p == v->cp ? MECH_TUI_SEL : MECH_TUI_HEADER, v->tokens[p],
                          cw - 1);
    int rows = h - 4, l0 = v->cl >= rows ? v->cl - rows + 1 : 0;
    for (int l = l0; l < v->L1 && l - l0 < rows; l++) {
        int y = y0 + 4 + (l - l0);
        layer_label(l, lab, sizeof lab);
        mech_tui_grid_put(g, y, 0, l == v->cl ? MECH_TUI_SEL : MECH_TUI_HEADER, lab, lw);
        for (int p = v->c0; p < v->T && p - v->c0 < ncols; p++) {
            const mech_tui_lens_cell *cc = &v->cells[(size_t)l * v->T + p];
            int lv = mech_tui_lens_level(v, v->mode, l, p), cur = l == v->cl && p == v->cp;
            const char *t = cc->k > 0 ? cc->top_text[0] : "";
            size_t tl = strlen(t);
            for (int k = 0; k < cw - 1; k++) {
                mech_tui_cell *cell = mech_tui_grid_at(g, y, lw + (p - v->c0) * cw + k);
                if (!cell) break;
                *cell = (mech_tui_cell){.ch = (size_t)k < tl ? t[k] : ' ',
                                        .role = (uint8_t)(cur ? MECH_TUI_SEL : MECH_TUI_HEAT), .level = (uint8_t)lv,
                                        .heat = 1};
            }
        }
    }
}

static void render_decoder(mech_tui_lens *v, mech_tui_grid *g, int y0, int h) {
    char line[512];
    if (!v->n_vars || !v->T) return;
    int nw = 9, ow = 12, cw = 2; // columns: variable name, owner ("computed by"), a value
    for (int j = 0; j < v->n_vars; j++) {
        int a = (int)strlen(v->var_name[j]) + 1, b = (int)strlen(v->var_owner[j]) + 1;
        nw = a > nw ? (a < 17 ? a : 17) : nw;
        ow = b > ow ? (b < 23 ? b : 23) : ow;
    }
    for (size_t i = 0; i < (size_t)v->L1 * v->n_vars * v->T; i++)
        if ((int)strlen(v->vals[i]) + 1 > cw) cw = (int)strlen(v->vals[i]) + 1;
    for (int t = 0; t < v->T; t++)
        if ((int)strlen(v->tokens[t]) + 1 > cw) cw = (int)strlen(v->tokens[t]) + 1;
    const char *val = v->vals[((size_t)v->dl * v->n_vars + v->cv) * v->T + v->cp];
    snprintf(line, sizeof line, "layer %d of 0..%d  %s (%s)  pos %d %s: %s", v->dl, v->L1 - 1, v->var_name[v->cv],
             v->var_owner[v->cv], v->cp, v->tokens[v->cp], val);
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_TEXT, line, -1);
    if (h < 4) return;
    int ncols = (g->w - nw - ow) / cw;
    if (ncols < 1) ncols = 1;
    v->c0 = first_col(v->cp, v->c0, ncols, v->T);
    mech_tui_grid_put(g, y0 + 2, 0, MECH_TUI_HEADER, "variable", nw - 1);
    mech_tui_grid_put(g, y0 + 2, nw, MECH_TUI_HEADER, "computed by", ow - 1);
    for (int p = v->c0; p < v->T && p - v->c0 < ncols; p++)
        mech_tui_grid_put(g, y0 + 2, nw + ow + (p - v->c0) * cw, p == v->cp ? MECH_TUI_SEL : MECH_TUI_HEADER,
                          v->tokens[p], cw - 1);
    int rows = h - 3, r0 = v->cv >= rows ? v->cv - rows + 1 : 0;
    for (int j = r0; j < v->n_vars && j - r0 < rows; j++) {
        int y = y0 + 3 + (j - r0), here = v->dl >= v->var_from[j];
        mech_tui_grid_put(g, y, 0, j == v->cv ? MECH_TUI_SEL : here ? MECH_TUI_TEXT : MECH_TUI_DIM, v->var_name[j],
                          nw - 1);
        mech_tui_grid_put(g, y, nw, MECH_TUI_DIM, v->var_owner[j], ow - 1);
        for (int p = v->c0; p < v->T && p - v->c0 < ncols; p++) {
            const char *s = v->vals[((size_t)v->dl * v->n_vars + j) * v->T + p];
            mech_tui_grid_put(g, y, nw + ow + (p - v->c0) * cw,
                              j == v->cv && p == v->cp ? MECH_TUI_SEL : here ? MECH_TUI_TEXT : MECH_TUI_DIM, s, cw - 1);
        }
    }
}

void mech_tui_lens_render(mech_tui_lens *v, mech_tui_grid *g, int y0, int h) {
    char line[300];
    if (!v->decoder && v->cells)
        snprintf(line, sizeof line, "%s  shading: %s", v->title, mode_names[v->mode]);
    else snprintf(line, sizeof line, "%s", v->title[0] ? v->title : "no lens");
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    if (h < 3 || !v->T || !v->L1) return;
    if (v->decoder) render_decoder(v, g, y0, h);
    else if (v->cells) render_logit(v, g, y0, h);
}
