/*
** tui/view_circuit.c: the circuit view of an acdc run (docs/tui.md, "The
** circuit view"). The run's ACDC graph is rebuilt from its parameters
** (mech_acdc_graph_new, as `mech acdc export` does) and its stored rows
** are mapped onto it by edge name: `kept` (the circuit), `truth` (compiled
** models), the trials (item >= 0, in search order) and the summary.
**
** Drawing folds the graph's hook-level nodes into components: the
** embeddings (tok and pos when split), each head (L2H0), each MLP (M1) and
** the output (out), one rank per kind and layer (tui/graph_layout.c lays
** them out). An ADDITION edge is a line into the receiver's head port (q,
** k, v: left, middle, right of the box), its MLP or the output; a DIRECT
** edge (q_input -> q) is its port letter on the row under the head's box.
**
** Trial mode replays the stored trials: every edge present at the start,
** a trial with removed = 1 removes its edge, and a node the search reaches
** with no present outgoing edge loses its incoming edges untried, exactly
** as interp/acdc.c does, so the state after the last trial is the stored
** circuit. Read only through data/.
*/
#include "tui/tui.h"

#include "data/data.h"
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- Components ---------------------------------------------------------------

static int n_emb(const mech_acdc_graph *g) { return g->split_embed ? 2 : 1; }
static int stride(const mech_acdc_graph *g) { return g->n_heads + (g->attn_only ? 0 : 1); }
static int comp_count(const mech_acdc_graph *g) { return n_emb(g) + g->n_layers * stride(g) + 1; }
static int comp_out(const mech_acdc_graph *g) { return comp_count(g) - 1; }
static int comp_head(const mech_acdc_graph *g, int l, int h) { return n_emb(g) + l * stride(g) + h; }
static int comp_mlp(const mech_acdc_graph *g, int l) { return n_emb(g) + l * stride(g) + g->n_heads; }

// The component that writes through sender node v (-1: not a sender).
static int comp_of_sender(const mech_acdc_graph *g, int v) {
    const mech_acdc_node *n = &g->nodes[v];
    switch (n->kind) {
    case MECH_ACDC_EMBED: return 0;
    case MECH_ACDC_POS_EMBED: return 1;
    case MECH_ACDC_RESULT: return comp_head(g, n->layer, n->head);
    case MECH_ACDC_MLP_OUT: return comp_mlp(g, n->layer);
    default: return -1;
    }
}

// The component that reads through receiver node v, and the port (0 1 2:
// q k v of a head, -1 otherwise).
static int comp_of_receiver(const mech_acdc_graph *g, int v, int *port) {
    const mech_acdc_node *n = &g->nodes[v];
    *port = -1;
    switch (n->kind) {
    case MECH_ACDC_Q_INPUT: case MECH_ACDC_Q: *port = 0; return comp_head(g, n->layer, n->head);
    case MECH_ACDC_K_INPUT: case MECH_ACDC_K: *port = 1; return comp_head(g, n->layer, n->head);
    case MECH_ACDC_V_INPUT: case MECH_ACDC_V: *port = 2; return comp_head(g, n->layer, n->head);
    case MECH_ACDC_MLP_IN: return comp_mlp(g, n->layer);
    case MECH_ACDC_RESID_POST: return comp_out(g);
    default: return -1;
    }
}

// Rank: embeddings 0, then per layer its heads and (above them) its MLP, the output last.
static int comp_rank(const mech_acdc_graph *g, int c) {
    int m = g->attn_only ? 0 : 1;
    if (c < n_emb(g)) return 0;
    if (c == comp_out(g)) return 1 + g->n_layers * (1 + m);
    int i = c - n_emb(g), l = i / stride(g), h = i % stride(g);
    return 1 + l * (1 + m) + (h == g->n_heads ? 1 : 0);
}

static void comp_label(const mech_acdc_graph *g, int c, char *out, size_t cap) {
    if (c < n_emb(g)) snprintf(out, cap, "%s", !g->split_embed ? "embed" : c == 0 ? "tok" : "pos");
    else if (c == comp_out(g)) snprintf(out, cap, "out");
    else {
        int i = c - n_emb(g), l = i / stride(g), h = i % stride(g);
        if (h == g->n_heads) snprintf(out, cap, "M%d", l);
        else snprintf(out, cap, "L%dH%d", l, h);
    }
}

void mech_tui_circuit_edge_label(const mech_tui_circuit *c, int e, char *out, size_t cap) {
    const mech_acdc_graph *g = c->g;
    if (!g || e < 0 || e >= g->n_edges) {
        snprintf(out, cap, "?");
        return;
    }
    const mech_acdc_edge *x = &g->edges[e];
    char s[16], r[16];
    int port;
    int rc = comp_of_receiver(g, x->receiver, &port);
    comp_label(g, rc, r, sizeof r);
    static const char *const pn[3] = {"q", "k", "v"};
    if (x->type == MECH_ACDC_DIRECT) {
        snprintf(out, cap, "%s.%s (direct)", r, pn[port]);
        return;
    }
    comp_label(g, comp_of_sender(g, x->sender), s, sizeof s);
    if (port >= 0) snprintf(out, cap, "%s>%s.%s", s, r, pn[port]);
    else snprintf(out, cap, "%s>%s", s, r);
}

// --- Loading ----------------------------------------------------------------

static void clear_run(mech_tui_circuit *c) {
    mech_acdc_graph_free(c->g);
    mech_free(c->kept), mech_free(c->truth), mech_free(c->state), mech_free(c->effect);
    mech_free(c->trials), mech_free(c->list), mech_free(c->lay_edge), mech_free(c->comp_node);
    c->g = NULL, c->kept = c->truth = c->state = NULL, c->effect = NULL, c->trials = NULL;
    c->list = c->lay_edge = c->comp_node = NULL;
    c->n_trials = c->n_list = c->cur = c->top = c->pos = c->trial_mode = 0;
    c->finished = c->has_truth = c->n_truth = c->n_counted = c->n_comp = 0;
    c->tpr = c->fpr = NAN;
    c->lay_dirty = 1;
}

void mech_tui_circuit_deinit(mech_tui_circuit *c) {
    clear_run(c);
    mech_free(c->members);
    mech_tui_layout_deinit(&c->lay);
    memset(c, 0, sizeof *c);
}

// The graph edge named "SENDER->RECEIVER", or -1.
static int edge_by_site(const mech_acdc_graph *g, const char *site) {
    const char *arrow = strstr(site, "->");
    if (!arrow || (size_t)(arrow - site) >= 64) return -1;
    char s[64];
    memcpy(s, site, (size_t)(arrow - site));
    s[arrow - site] = 0;
    int a = mech_acdc_graph_node(g, s), b = mech_acdc_graph_node(g, arrow + 2);
    return a < 0 || b < 0 ? -1 : mech_acdc_graph_edge(g, a, b);
}

static const mech_tui_circuit *sort_c;
static int cmp_list(const void *pa, const void *pb) {
    int a = *(const int *)pa, b = *(const int *)pb;
    // kept edges first, then missing truth edges; each by |effect|, largest first
    int ka = sort_c->kept[a], kb = sort_c->kept[b];
    if (ka != kb) return kb - ka;
    double ea = fabs(sort_c->effect[a]), eb = fabs(sort_c->effect[b]);
    if (isnan(ea)) ea = -1;
    if (isnan(eb)) eb = -1;
    if (ea != eb) return (ea < eb) - (ea > eb);
    return (a > b) - (a < b);
}

// Reads acdc run id from s into c (its run fields; the sweep's stay).
static mech_status load_acdc(mech_tui_circuit *c, mech_store *s, int64_t id, mech_err *err) {
    clear_run(c);
    mech_run_info ri = {0};
    mech_json *pj = NULL;
    mech_result_row *rows = NULL;
    size_t n = 0;
    mech_status st = mech_store_run_info(s, id, &ri, err);
    if (st) goto done;
    // an eap run stores the same graph's edges (kept, truth) with a score
    // for every edge instead of trials
    int eap = !strcmp(ri.kind, "eap");
    if ((strcmp(ri.kind, "acdc") && !eap) || !ri.params_json ||
        mech_json_parse(ri.params_json, strlen(ri.params_json), &pj, NULL)) {
        st = mech_err_set(err, MECH_ERR_FORMAT, "run %lld is of kind '%s', not an ACDC or EAP run", (long long)id,
                          ri.kind);
        goto done;
    }
    mech_config cfg = {0};
    cfg.n_layers = (int)mech_json_num(pj, "n_layers", 0);
    cfg.n_heads = (int)mech_json_num(pj, "n_heads", 0);
    cfg.attn_only = mech_json_bool(pj, "attn_only");
    if ((st = mech_acdc_graph_new(&cfg, mech_json_bool(pj, "split_embed"), &c->g, err)) ||
        (st = mech_store_results_get(s, id, NULL, &rows, &n, err)))
        goto done;
    int E = c->g->n_edges;
    c->kept = mech_calloc((size_t)E, 1), c->truth = mech_calloc((size_t)E, 1), c->state = mech_calloc((size_t)E, 1);
    c->effect = mech_malloc((size_t)E * sizeof *c->effect);
    c->list = mech_malloc((size_t)E * sizeof *c->list);
    int n_trials = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i].item >= 0 && rows[i].item + 1 > n_trials) n_trials = rows[i].item + 1;
    c->trials = mech_calloc((size_t)n_trials + 1, sizeof *c->trials);
    if (!c->kept || !c->truth || !c->state || !c->effect || !c->list || !c->trials) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    c->n_trials = n_trials;
    for (int e = 0; e < E; e++) c->effect[e] = NAN;
    for (int t = 0; t < n_trials; t++) c->trials[t].edge = -1, c->trials[t].before = c->trials[t].after = NAN;
    const char *last_site = NULL;
    int last_e = -1;
    for (size_t i = 0; i < n; i++) {
        const mech_result_row *r = &rows[i];
        if (!strcmp(r->site, "circuit")) {
            if (!strcmp(r->metric, "n_edges")) c->finished = 1;
            else if (!strcmp(r->metric, "tpr")) c->tpr = r->value;
            else if (!strcmp(r->metric, "fpr")) c->fpr = r->value;
            else if (!strcmp(r->metric, "n_counted")) c->n_counted = (int)r->value;
            continue;
        }
        int kept = !strcmp(r->metric, "kept"), tr = !strcmp(r->metric, "truth"), score = eap && !strcmp(r->metric, "score");
        int trial = !eap && r->item >= 0 && (!strcmp(r->metric, "before") || !strcmp(r->metric, "after") ||
                                             !strcmp(r->metric, "effect") || !strcmp(r->metric, "removed"));
        if (!kept && !tr && !trial && !score) continue;
        // a trial's six rows name the same edge: look it up once
        int e = last_site && !strcmp(last_site, r->site) ? last_e : edge_by_site(c->g, r->site);
        last_site = r->site, last_e = e;
        if (e < 0) continue;
        if (kept) c->kept[e] = 1;
        if (score) c->effect[e] = r->value;
        if (tr) c->truth[e] = 1, c->has_truth = 1, c->n_truth++;
        if (trial) {
            mech_tui_ctrial *t = &c->trials[r->item];
            t->edge = e;
            if (!strcmp(r->metric, "before")) t->before = r->value;
            else if (!strcmp(r->metric, "after")) t->after = r->value;
            else if (!strcmp(r->metric, "effect")) t->effect = r->value, c->effect[e] = r->value;
            else t->removed = r->value != 0;
        }
    }
    if (!c->n_counted) c->n_counted = c->g->n_addition + c->g->n_direct;
    if (!c->finished && !eap) {
        // a run still going (or stopped): every edge no trial removed so far
        if ((st = mech_tui_circuit_replay(c, c->n_trials))) goto done;
        for (int e = 0; e < E; e++) c->kept[e] = c->state[e] && c->g->edges[e].type != MECH_ACDC_PLACEHOLDER;
    }
    for (int e = 0; e < E; e++)
        if (c->kept[e] || c->truth[e]) c->list[c->n_list++] = e;
    sort_c = c;
    qsort(c->list, (size_t)c->n_list, sizeof *c->list, cmp_list);
    c->id = id;
    int nk = 0;
    for (int e = 0; e < E; e++) nk += c->kept[e];
    if (eap)
        // the EAP variant (eap, eap-ig, ...) when the run records one
        snprintf(c->title, sizeof c->title, "run %lld  eap  method %.24s  %s  %d of %d edges kept (by |score|)%s",
                 (long long)id, mech_json_str(pj, "method", "eap"), mech_json_str(pj, "metric", "?"), nk, c->n_counted,
                 c->finished ? "" : " (not finished)");
    else
        snprintf(c->title, sizeof c->title, "run %lld  acdc  tau %g  %s  %s  %d of %d edges kept%s", (long long)id,
                 mech_json_num(pj, "tau", NAN), mech_json_str(pj, "ablation", "?"), mech_json_str(pj, "metric", "?"),
                 nk, c->n_counted, c->finished ? "" : " (not finished)");
    c->comp_node = mech_malloc((size_t)comp_count(c->g) * sizeof *c->comp_node);
    if (!c->comp_node) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    c->n_comp = comp_count(c->g);
done:
    if (st) clear_run(c);
    mech_store_results_free(rows, n);
    mech_json_free(pj);
    mech_store_run_info_deinit(&ri);
    return st;
}

static mech_status load_sweep(mech_tui_circuit *c, mech_store *s, int64_t id, mech_err *err) {
    mech_result_row *rows = NULL;
    size_t n = 0;
    mech_status st = mech_store_results_get(s, id, NULL, &rows, &n, err);
    if (st) return st;
    mech_free(c->members);
    c->members = mech_calloc(n + 1, sizeof *c->members);
    c->n_members = c->member = 0;
    if (!c->members) {
        mech_store_results_free(rows, n);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    int na = 0;
    c->auc_line[0] = 0;
    for (size_t i = 0; i < n; i++) {
        const mech_result_row *r = &rows[i];
        if (r->item < 0) {
            if (!strcmp(r->metric, "auc") && na < 4) {
                size_t k = strlen(c->auc_line);
                snprintf(c->auc_line + k, sizeof c->auc_line - k, "%sAUC %s %.3f", na ? "  " : "", r->site, r->value);
                na++;
            }
            continue;
        }
        // one member per (ablation, threshold index), in the order stored
        int m = 0;
        while (m < c->n_members && (c->members[m].item != r->item || strcmp(c->members[m].ablation, r->site))) m++;
        if (m == c->n_members) {
            c->members[m] = (mech_tui_cmember){.item = r->item, .tau = NAN, .tpr = NAN, .fpr = NAN, .run = -1};
            snprintf(c->members[m].ablation, sizeof c->members[m].ablation, "%s", r->site);
            c->n_members++;
        }
        mech_tui_cmember *x = &c->members[m];
        if (!strcmp(r->metric, "tau")) x->tau = r->value;
        else if (!strcmp(r->metric, "run")) x->run = (int64_t)r->value;
        else if (!strcmp(r->metric, "n_edges")) x->n_edges = (int)r->value;
        else if (!strcmp(r->metric, "tpr")) x->tpr = r->value;
        else if (!strcmp(r->metric, "fpr")) x->fpr = r->value;
    }
    mech_store_results_free(rows, n);
    return MECH_OK;
}

mech_status mech_tui_circuit_load(const char *path, int64_t id, mech_tui_circuit *c, mech_err *err) {
    mech_tui_circuit_deinit(c);
    c->tpr = c->fpr = NAN;
    snprintf(c->path, sizeof c->path, "%s", path ? path : "");
    mech_store *s = NULL;
    mech_run_info ri = {0};
    mech_status st = mech_store_open_read(path, &s, err);
    if (st) return st;
    if ((st = mech_store_run_info(s, id, &ri, err))) goto done;
    snprintf(c->kind, sizeof c->kind, "%s", ri.kind);
    if (!strcmp(ri.kind, "acdc-sweep")) {
        if ((st = load_sweep(c, s, id, err))) goto done;
        if (!c->n_members) {
            c->id = id;
            snprintf(c->title, sizeof c->title, "sweep %lld: no runs yet", (long long)id);
        } else st = load_acdc(c, s, c->members[0].run, err);
    } else st = load_acdc(c, s, id, err);
    // a big model's graph shows only the nodes its circuit uses (u toggles;
    // the choice stays while a sweep's runs are stepped through)
    c->hide_unused = c->n_comp > 40;
done:
    mech_store_run_info_deinit(&ri);
    mech_store_close(s);
    return st;
}

// Shows member m of a sweep (a run that cannot be read shows its error).
static void sweep_select(mech_tui_circuit *c, int m) {
    if (m < 0 || m >= c->n_members || m == c->member) return;
    c->member = m;
    mech_err err = {0};
    mech_store *s = NULL;
    mech_status st = mech_store_open_read(c->path, &s, &err);
    if (!st) st = load_acdc(c, s, c->members[m].run, &err);
    mech_store_close(s);
    if (st) snprintf(c->title, sizeof c->title, "run %lld: cannot read it: %.120s", (long long)c->members[m].run, err.msg);
}

// --- Trials -------------------------------------------------------------------

// interp/acdc.c's visit order: resid_post, then per layer from the top
// mlp_out, mlp_in, hook_result, hook_v, hook_k, hook_q, hook_v_input,
// hook_k_input, hook_q_input (heads n_heads-1..0), the embeddings last.
static int visit_order(const mech_acdc_graph *g, int *order) {
    int n = 0;
    order[n++] = g->n_nodes - 1;
    static const mech_acdc_node_kind kinds[9] = {MECH_ACDC_MLP_OUT, MECH_ACDC_MLP_IN,  MECH_ACDC_RESULT,
                                                 MECH_ACDC_V,       MECH_ACDC_K,       MECH_ACDC_Q,
                                                 MECH_ACDC_V_INPUT, MECH_ACDC_K_INPUT, MECH_ACDC_Q_INPUT};
    for (int l = g->n_layers - 1; l >= 0; l--)
        for (int k = 0; k < 9; k++)
            for (int h = g->n_heads - 1; h >= 0; h--)
                for (int v = 0; v < g->n_nodes; v++) {
                    const mech_acdc_node *x = &g->nodes[v];
                    if (x->layer != l || x->kind != kinds[k]) continue;
                    if (x->head < 0 && h != g->n_heads - 1) continue; // whole-layer nodes once
                    if (x->head >= 0 && x->head != h) continue;
                    order[n++] = v;
                }
    for (int v = g->n_nodes - 1; v >= 0; v--)
        if (g->nodes[v].kind == MECH_ACDC_POS_EMBED) order[n++] = v;
    for (int v = g->n_nodes - 1; v >= 0; v--)
        if (g->nodes[v].kind == MECH_ACDC_EMBED) order[n++] = v;
    return n;
}

mech_status mech_tui_circuit_replay(mech_tui_circuit *c, int pos) {
    const mech_acdc_graph *g = c->g;
    if (!g) return MECH_OK;
    pos = pos < 0 ? 0 : pos > c->n_trials ? c->n_trials : pos;
    int *order = mech_malloc((size_t)g->n_nodes * sizeof *order);
    int *out_first = mech_calloc((size_t)g->n_nodes + 1, sizeof *out_first);
    int *out_edges = mech_malloc(((size_t)g->n_edges + 1) * sizeof *out_edges);
    int *fill = mech_malloc(((size_t)g->n_nodes + 1) * sizeof *fill);
    if (!order || !out_first || !out_edges || !fill) {
        mech_free(order), mech_free(out_first), mech_free(out_edges), mech_free(fill);
        return MECH_ERR_NOMEM;
    }
    for (int e = 0; e < g->n_edges; e++) out_first[g->edges[e].sender + 1]++;
    for (int v = 0; v < g->n_nodes; v++) out_first[v + 1] += out_first[v];
    memcpy(fill, out_first, (size_t)g->n_nodes * sizeof *fill);
    for (int e = 0; e < g->n_edges; e++) out_edges[fill[g->edges[e].sender]++] = e;
    memset(c->state, 1, (size_t)g->n_edges);
    int n_order = visit_order(g, order), k = 0, stop = 0;
    for (int i = 0; i < n_order && !stop; i++) {
        int v = order[i];
        mech_acdc_node_kind kind = g->nodes[v].kind;
        int has_out = 0;
        for (int j = out_first[v]; j < out_first[v + 1] && !has_out; j++) has_out = c->state[out_edges[j]];
        if (i > 0 && kind != MECH_ACDC_EMBED && kind != MECH_ACDC_POS_EMBED && !has_out) {
            // nothing downstream reads it: the search drops its inputs untried
            for (int e = g->first_in[v]; e < g->first_in[v + 1]; e++) c->state[e] = 0;
            continue;
        }
        while (k < c->n_trials && (c->trials[k].edge < 0 || g->edges[c->trials[k].edge].receiver == v)) {
            if (k >= pos) {
                stop = 1; // the search is at its next trial
                break;
            }
            if (c->trials[k].edge >= 0 && c->trials[k].removed) c->state[c->trials[k].edge] = 0;
            k++;
        }
        // a run that stopped made no decision after its last trial
        if (k == c->n_trials && !c->finished) stop = 1;
    }
    mech_free(order), mech_free(out_first), mech_free(out_edges), mech_free(fill);
    c->lay_dirty = 1;
    return MECH_OK;
}

// --- Keys -----------------------------------------------------------------------

static void set_pos(mech_tui_circuit *c, int pos) {
    c->trial_mode = 1;
    c->pos = pos < 0 ? 0 : pos > c->n_trials ? c->n_trials : pos;
    mech_tui_circuit_replay(c, c->pos);
}

int mech_tui_circuit_key(mech_tui_circuit *c, int key) {
    if (key == 'q') return MECH_TUI_QUIT;
    if (key == MECH_TUI_KEY_ESC) {
        if (!c->trial_mode) return MECH_TUI_QUIT;
        c->trial_mode = 0, c->lay_dirty = 1;
        return MECH_TUI_REDRAW;
    }
    int page = c->page > 1 ? c->page : 1;
    switch (key) {
    case ']': sweep_select(c, c->member + 1); return MECH_TUI_REDRAW;
    case '[': sweep_select(c, c->member - 1); return MECH_TUI_REDRAW;
    case 'u': c->hide_unused = !c->hide_unused, c->lay_dirty = 1; return MECH_TUI_REDRAW;
    default: break;
    }
    if (!c->g) return MECH_TUI_NONE;
    if (key == 't') {
        if (c->trial_mode) c->trial_mode = 0, c->lay_dirty = 1;
        else set_pos(c, c->n_trials);
        return MECH_TUI_REDRAW;
    }
    if (key == 'n' || key == '.') {
        set_pos(c, c->trial_mode ? c->pos + 1 : 1);
        return MECH_TUI_REDRAW;
    }
    if (key == 'N' || key == ',') {
        set_pos(c, c->trial_mode ? c->pos - 1 : c->n_trials);
        return MECH_TUI_REDRAW;
    }
    if (c->trial_mode) {
        int p = c->pos;
        switch (key) {
        case MECH_TUI_KEY_UP: case 'k': p--; break;
        case MECH_TUI_KEY_DOWN: case 'j': p++; break;
        case MECH_TUI_KEY_PGUP: p -= page; break;
        case MECH_TUI_KEY_PGDN: p += page; break;
        case MECH_TUI_KEY_HOME: case 'g': p = 1; break;
        case MECH_TUI_KEY_END: case 'G': p = c->n_trials; break;
        default: return MECH_TUI_NONE;
        }
        set_pos(c, p);
        return MECH_TUI_REDRAW;
    }
    int cur = c->cur;
    switch (key) {
    case MECH_TUI_KEY_UP: case 'k': cur--; break;
    case MECH_TUI_KEY_DOWN: case 'j': cur++; break;
    case MECH_TUI_KEY_PGUP: cur -= page; break;
    case MECH_TUI_KEY_PGDN: cur += page; break;
    case MECH_TUI_KEY_HOME: case 'g': cur = 0; break;
    case MECH_TUI_KEY_END: case 'G': cur = c->n_list - 1; break;
    default: return MECH_TUI_NONE;
    }
    c->cur = cur < 0 || c->n_list == 0 ? 0 : cur >= c->n_list ? c->n_list - 1 : cur;
    return MECH_TUI_REDRAW;
}

// --- Drawing ----------------------------------------------------------------------

enum { CL_NONE = 0, CL_HIT, CL_EXTRA, CL_MISSING };

// How edge e is shown: in the circuit (hit, or extra when there is a truth
// and it is not in it), missing (a truth edge not in the circuit) or not at all.
static int edge_class(const mech_tui_circuit *c, int e) {
    if (c->g->edges[e].type == MECH_ACDC_PLACEHOLDER) return CL_NONE;
    int present = c->trial_mode ? c->state[e] : c->kept[e];
    if (present) return c->has_truth && !c->truth[e] ? CL_EXTRA : CL_HIT;
    return c->has_truth && c->truth[e] ? CL_MISSING : CL_NONE;
}

// The edge the view points at: the list's cursor, or in trial mode the trial's edge.
static int selected_edge(const mech_tui_circuit *c) {
    if (c->trial_mode) return c->pos > 0 ? c->trials[c->pos - 1].edge : -1;
    return c->n_list ? c->list[c->cur] : -1;
}

#define MAX_DRAWN 600 // more lines than this are a wall of ASCII: the list has them

// Rebuilds the layout from the shown edges (and the selected one, even
// when it is removed) for a pane of w x h.
static void build_layout(mech_tui_circuit *c, int w, int h) {
    const mech_acdc_graph *g = c->g;
    mech_tui_layout *l = &c->lay;
    mech_tui_layout_clear(l);
    mech_free(c->lay_edge);
    c->lay_edge = NULL;
    int sel = selected_edge(c), nd = 0;
    uint8_t *used = mech_calloc((size_t)c->n_comp, 1);
    int *rank_of = mech_calloc((size_t)comp_rank(g, comp_out(g)) + 2, sizeof *rank_of);
    if (!used || !rank_of) goto done;
    used[comp_out(g)] = 1;
    for (int e = 0; e < g->n_edges; e++) {
        if (edge_class(c, e) == CL_NONE && e != sel) continue;
        int port, rc = comp_of_receiver(g, g->edges[e].receiver, &port);
        if (rc >= 0) used[rc] = 1;
        if (g->edges[e].type == MECH_ACDC_ADDITION) used[comp_of_sender(g, g->edges[e].sender)] = 1, nd++;
    }
    // hidden nodes leave their ranks empty: drop those (rank 0 stays, the
    // row under a head's box holds its port letters)
    int R = comp_rank(g, comp_out(g)) + 1;
    for (int i = 0; i < c->n_comp; i++)
        if (used[i] || !c->hide_unused) rank_of[comp_rank(g, i)] = 1;
    rank_of[0] = 1;
    for (int r = 0, k = 0; r < R; r++) rank_of[r] = rank_of[r] ? k++ : -1;
    for (int i = 0; i < c->n_comp; i++) {
        c->comp_node[i] = -1;
        if (!used[i] && c->hide_unused) continue;
        char lab[16];
        comp_label(g, i, lab, sizeof lab);
        c->comp_node[i] = mech_tui_layout_add_node(l, rank_of[comp_rank(g, i)], (int)strlen(lab) + 2);
    }
    if (nd <= MAX_DRAWN) {
        c->lay_edge = mech_malloc(((size_t)nd + 1) * sizeof *c->lay_edge);
        if (!c->lay_edge) goto done;
        for (int e = 0; e < g->n_edges; e++) {
            if ((edge_class(c, e) == CL_NONE && e != sel) || g->edges[e].type != MECH_ACDC_ADDITION) continue;
            int port, rc = comp_of_receiver(g, g->edges[e].receiver, &port);
            int k = mech_tui_layout_add_edge(l, c->comp_node[comp_of_sender(g, g->edges[e].sender)], c->comp_node[rc], port);
            if (k >= 0) c->lay_edge[k] = e;
        }
    }
    mech_tui_layout_run(l, w, h);
done:
    mech_free(used), mech_free(rank_of);
}

static char class_glyph(int cl, char ch) {
    if (cl == CL_MISSING) return ch == '|' ? ':' : ch == '-' || ch == '+' ? '.' : ch;
    if (cl == CL_EXTRA) return ch == '|' ? '!' : ch == '-' ? '=' : ch == '+' ? '#' : ch;
    return ch;
}

static mech_tui_role class_role(int cl) {
    return cl == CL_MISSING ? MECH_TUI_DIM : cl == CL_EXTRA ? MECH_TUI_ERROR : MECH_TUI_TEXT;
}

static int is_vert(char ch) { return ch == '|' || ch == ':' || ch == '!'; }
static int is_horz(char ch) { return ch == '-' || ch == '.' || ch == '='; }
static int is_corner(char ch) { return ch == '+' || ch == '#'; }

static void draw_graph(mech_tui_circuit *c, mech_tui_grid *g, int y0, int x0, int h, int w) {
    const mech_acdc_graph *G = c->g;
    if (c->lay_dirty || c->lay_key_w != w || c->lay_key_h != h) {
        build_layout(c, w, h);
        c->lay_dirty = 0, c->lay_key_w = w, c->lay_key_h = h;
    }
    const mech_tui_layout *l = &c->lay;
    int sel = selected_edge(c), sel_k = -1;
    for (int k = 0; c->lay_edge && k < l->n_edges; k++)
        if (c->lay_edge[k] == sel) sel_k = k;
    // scroll so the selected edge's middle (else the top) shows; centre a small canvas
    int oy = 0, ox = l->w < w ? -(w - l->w) / 2 : 0;
    if (l->h > h || l->w > w) {
        int fy = 0, fx = l->w / 2;
        if (sel_k >= 0 && l->edges[sel_k].n) mech_tui_layout_cell(l, &l->edges[sel_k], l->edges[sel_k].n / 2, &fy, &fx);
        else if (sel >= 0) {
            int port, rc = comp_of_receiver(G, G->edges[sel].receiver, &port);
            if (rc >= 0 && c->comp_node[rc] >= 0) fy = l->nodes[c->comp_node[rc]].y, fx = l->nodes[c->comp_node[rc]].x;
        }
        if (l->h > h) oy = fy - h / 2 < 0 ? 0 : fy - h / 2 > l->h - h ? l->h - h : fy - h / 2;
        if (l->w > w) ox = fx - w / 2 < 0 ? 0 : fx - w / 2 > l->w - w ? l->w - w : fx - w / 2;
    }
#define AT(yy, xx) ((yy) - oy >= 0 && (yy) - oy < h && (xx) - ox >= 0 && (xx) - ox < w ? mech_tui_grid_at(g, y0 + (yy) - oy, x0 + (xx) - ox) : NULL)
    // lines: missing first, then the circuit, the selected edge last
    for (int pass = 0; pass < 3 && c->lay_edge; pass++)
        for (int k = 0; k < l->n_edges; k++) {
            int e = c->lay_edge[k], cl = edge_class(c, e);
            int want = pass == 2 ? k == sel_k : k != sel_k && (pass == 0) == (cl == CL_MISSING);
            if (!want) continue;
            const mech_tui_ledge *E = &l->edges[k];
            int shown_cl = cl == CL_NONE ? CL_MISSING : cl; // a removed trial edge: dotted
            for (int i = 0; i < E->n; i++) {
                int y, x;
                mech_tui_layout_cell(l, E, i, &y, &x);
                mech_tui_cell *cell = AT(y, x);
                if (!cell) continue;
                char ch = class_glyph(shown_cl, mech_tui_layout_glyph(l, E, i));
                // a vertical line over a horizontal one (or the reverse) is a
                // crossing, and a line over another's corner keeps the corner
                if ((is_vert(ch) && is_horz(cell->ch)) || (is_horz(ch) && is_vert(cell->ch)) ||
                    ((is_vert(ch) || is_horz(ch)) && is_corner(cell->ch)))
                    ch = class_glyph(shown_cl, '+');
                *cell = (mech_tui_cell){.ch = ch, .role = (uint8_t)(k == sel_k ? MECH_TUI_SEL : class_role(shown_cl))};
            }
        }
    // boxes, and under each head its DIRECT edges as port letters
    int sel_r = -1, sel_s = -1;
    if (sel >= 0) {
        int port;
        sel_r = comp_of_receiver(G, G->edges[sel].receiver, &port);
        sel_s = G->edges[sel].type == MECH_ACDC_ADDITION ? comp_of_sender(G, G->edges[sel].sender) : -1;
    }
    uint8_t *used = mech_calloc((size_t)c->n_comp, 1);
    if (used) {
        used[comp_out(G)] = 1;
        for (int e = 0; e < G->n_edges; e++) {
            if (edge_class(c, e) == CL_NONE) continue;
            int port, rc = comp_of_receiver(G, G->edges[e].receiver, &port);
            if (rc >= 0) used[rc] = 1;
            if (G->edges[e].type == MECH_ACDC_ADDITION) used[comp_of_sender(G, G->edges[e].sender)] = 1;
        }
    }
    for (int i = 0; i < c->n_comp; i++) {
        int v = c->comp_node[i];
        if (v < 0) continue;
        const mech_tui_lnode *nd = &l->nodes[v];
        char lab[24], box[32];
        comp_label(G, i, lab, sizeof lab);
        snprintf(box, sizeof box, "[%s]", lab);
        mech_tui_role role = i == sel_r || i == sel_s ? MECH_TUI_SEL : !used || used[i] ? MECH_TUI_HEADER : MECH_TUI_DIM;
        for (int j = 0; box[j]; j++) {
            mech_tui_cell *cell = AT(nd->y, nd->x + j);
            if (cell) *cell = (mech_tui_cell){.ch = box[j], .role = (uint8_t)role};
        }
    }
    mech_free(used);
    for (int e = 0; e < G->n_edges; e++) {
        if (G->edges[e].type != MECH_ACDC_DIRECT) continue;
        int cl = edge_class(c, e), port, hc = comp_of_receiver(G, G->edges[e].receiver, &port);
        if ((cl == CL_NONE && e != sel) || c->comp_node[hc] < 0) continue;
        const mech_tui_lnode *nd = &l->nodes[c->comp_node[hc]];
        mech_tui_cell *cell = AT(nd->y + 1, mech_tui_layout_port_x(nd, port));
        if (!cell) continue;
        // hit: q k v; extra: Q K V; missing (or a removed trial edge): dimmed q k v
        char ch = "qkv"[port];
        if (cl == CL_EXTRA) ch = "QKV"[port];
        *cell = (mech_tui_cell){.ch = ch, .role = (uint8_t)(e == sel ? MECH_TUI_SEL : class_role(cl == CL_NONE ? CL_MISSING : cl))};
    }
    if (!c->lay_edge && h > 0) {
        char line[96];
        int nd = 0;
        for (int e = 0; e < G->n_edges; e++) nd += G->edges[e].type == MECH_ACDC_ADDITION && edge_class(c, e) != CL_NONE;
        snprintf(line, sizeof line, "%d edges: too many lines to draw (the list has them)", nd);
        mech_tui_grid_put(g, y0 + h - 1, x0, MECH_TUI_DIM, line, w);
    }
#undef AT
}

static void fmt_val(char *out, size_t cap, double v) {
    if (isnan(v)) snprintf(out, cap, "-");
    else snprintf(out, cap, "%.4f", v);
    if (!isnan(v) && strlen(out) > 7) snprintf(out, cap, "%.1e", v);
}

// The members of a sweep around the selected one, in rows [y0, y0+h).
static int draw_members(mech_tui_circuit *c, mech_tui_grid *g, int y0, int x0, int h, int w) {
    char line[160];
    snprintf(line, sizeof line, "%-5s %-6s %4s %4s %5s %5s", "abl.", "tau", "run", "edge", "TPR", "FPR");
    mech_tui_grid_put(g, y0, x0, MECH_TUI_HEADER, line, w);
    int rows = h - 2, top = c->member - rows / 2;
    if (top > c->n_members - rows) top = c->n_members - rows;
    if (top < 0) top = 0;
    int y = y0 + 1;
    for (int m = top; m < c->n_members && y < y0 + 1 + rows; m++, y++) {
        const mech_tui_cmember *x = &c->members[m];
        snprintf(line, sizeof line, "%-5.5s %-6.2g %4lld %4d %5.3f %5.3f", x->ablation, x->tau, (long long)x->run,
                 x->n_edges, x->tpr, x->fpr);
        mech_tui_grid_put(g, y, x0, m == c->member ? MECH_TUI_SEL : MECH_TUI_TEXT, line, w);
        if (m == c->member) mech_tui_grid_role(g, y, x0, w, MECH_TUI_SEL);
    }
    mech_tui_grid_put(g, y, x0, MECH_TUI_TEXT, c->auc_line, w);
    return y + 1 - y0;
}

static void draw_list(mech_tui_circuit *c, mech_tui_grid *g, int y0, int x0, int h, int w) {
    char line[200], lab[64], a[24], b[24];
    if (h < 2) return;
    int n = c->trial_mode ? c->n_trials : c->n_list, cur = c->trial_mode ? c->pos - 1 : c->cur;
    // the edge's name takes what the other columns leave
    int lw = w - (c->trial_mode ? 6 + 8 + 8 : (c->has_truth ? 6 : 0) + 8);
    lw = lw < 8 ? 8 : lw > 40 ? 40 : lw;
    if (c->trial_mode) snprintf(line, sizeof line, "%-5s %-*s %7s %s", "trial", lw, "edge", "effect", "decided");
    else snprintf(line, sizeof line, "%s%-*s %7s", c->has_truth ? "mark  " : "", lw, "edge", "effect");
    mech_tui_grid_put(g, y0, x0, MECH_TUI_HEADER, line, w);
    int rows = h - 1;
    c->page = rows;
    // keep the cursor's row on screen
    if (cur >= 0 && cur < c->top) c->top = cur;
    if (cur >= c->top + rows) c->top = cur - rows + 1;
    if (c->top > (n > rows ? n - rows : 0)) c->top = n > rows ? n - rows : 0;
    if (c->top < 0) c->top = 0;
    for (int i = 0; i < rows && c->top + i < n; i++) {
        int j = c->top + i, y = y0 + 1 + i;
        mech_tui_role role = MECH_TUI_TEXT;
        if (c->trial_mode) {
            const mech_tui_ctrial *t = &c->trials[j];
            mech_tui_circuit_edge_label(c, t->edge, lab, sizeof lab);
            fmt_val(a, sizeof a, t->effect);
            snprintf(line, sizeof line, "%-5d %-*.*s %7s %s", j + 1, lw, lw, lab, a, t->removed ? "removed" : "kept");
            if (!t->removed) role = MECH_TUI_HEADER;
        } else {
            int e = c->list[j], cl = edge_class(c, e);
            mech_tui_circuit_edge_label(c, e, lab, sizeof lab);
            fmt_val(a, sizeof a, c->effect[e]);
            snprintf(b, sizeof b, "%s", !c->has_truth ? "" : cl == CL_EXTRA ? "EXTRA " : cl == CL_MISSING ? "MISS  " : "hit   ");
            snprintf(line, sizeof line, "%s%-*.*s %7s", b, lw, lw, lab, a);
            role = class_role(cl);
        }
        mech_tui_grid_put(g, y, x0, j == cur ? MECH_TUI_SEL : role, line, w);
        if (j == cur) mech_tui_grid_role(g, y, x0, w, MECH_TUI_SEL);
    }
}

void mech_tui_circuit_render(mech_tui_circuit *c, mech_tui_grid *g, int y0, int h) {
    char line[320], lab[64], a[24], b[24], d[24];
    if (h < 1) return;
    if (!strcmp(c->kind, "acdc-sweep") && c->n_members)
        snprintf(line, sizeof line, "sweep %d/%d (%s)  %s", c->member + 1, c->n_members, c->members[c->member].ablation,
                 c->title);
    else snprintf(line, sizeof line, "%s", c->title);
    mech_tui_grid_put(g, y0, 0, MECH_TUI_TITLE, line, -1);
    if (!c->g || h < 6) return;
    int hit = 0, miss = 0, extra = 0, shown = 0;
    for (int e = 0; e < c->g->n_edges; e++) {
        int cl = edge_class(c, e);
        hit += cl == CL_HIT, miss += cl == CL_MISSING, extra += cl == CL_EXTRA, shown += cl == CL_HIT || cl == CL_EXTRA;
    }
    if (c->has_truth)
        snprintf(line, sizeof line, "%s%d edges: %d hit  %d missing  %d extra (truth %d)   TPR %.3f  FPR %.4f",
                 c->trial_mode ? "now " : "", shown, hit, miss, extra, c->n_truth, c->tpr, c->fpr);
    else snprintf(line, sizeof line, "%s%d edges (no ground truth: not a compiled model)", c->trial_mode ? "now " : "", shown);
    mech_tui_grid_put(g, y0 + 1, 0, MECH_TUI_TEXT, line, -1);
    int sel = selected_edge(c);
    if (c->trial_mode && c->pos == 0)
        snprintf(line, sizeof line, "before trial 1 of %d: every edge present", c->n_trials);
    else if (c->trial_mode) {
        const mech_tui_ctrial *t = &c->trials[c->pos - 1];
        mech_tui_circuit_edge_label(c, t->edge, lab, sizeof lab);
        fmt_val(a, sizeof a, t->before), fmt_val(b, sizeof b, t->after), fmt_val(d, sizeof d, t->effect);
        snprintf(line, sizeof line, "trial %d/%d  %s  before %s  after %s  effect %s  %s", c->pos, c->n_trials, lab, a, b,
                 d, t->removed ? "removed" : "kept");
    } else if (sel >= 0) {
        fmt_val(a, sizeof a, c->effect[sel]);
        snprintf(line, sizeof line, "%s->%s  effect %s", c->g->nodes[c->g->edges[sel].sender].name,
                 c->g->nodes[c->g->edges[sel].receiver].name, a);
    } else snprintf(line, sizeof line, "no edge kept");
    mech_tui_grid_put(g, y0 + 2, 0, c->trial_mode ? MECH_TUI_HEADER : MECH_TUI_TEXT, line, -1);
    // the graph on the left, the list (and a sweep's runs) on the right
    int py = y0 + 3, ph = h - 3;
    int lw = g->w * 2 / 5;
    lw = lw < 36 ? 36 : lw > 56 ? 56 : lw;
    if (lw > g->w - 20) lw = g->w / 2;
    int gw = g->w - lw - 1;
    draw_graph(c, g, py, 0, ph, gw);
    for (int y = py; y < py + ph; y++) mech_tui_grid_put(g, y, gw, MECH_TUI_DIM, "|", 1);
    int ly = py;
    if (!strcmp(c->kind, "acdc-sweep") && c->n_members) {
        int mh = c->n_members + 2 < ph / 2 ? c->n_members + 2 : ph / 2;
        ly += draw_members(c, g, py, gw + 2, mh, lw - 2);
    }
    draw_list(c, g, ly, gw + 2, py + ph - ly, lw - 2);
}
