/*
** interp/acdc_truth.c: the ground-truth circuit of a compiled RASP model as
** ACDC graph edges, true- and false-positive rates of a discovered circuit,
** the reference's pessimistic ROC AUC, and Graphviz / JSON export.
**
** Ground truth. The compiler records which head or MLP computes each RASP
** variable and which variables it reads (metadata "mech.rasp.circuit"), and
** which variable is the output ("mech.rasp.readout"). A variable is written
** by its MLP (blocks.L.hook_mlp_out) when it has one, else by its head
** (blocks.L.attn.hook_result[:, :, slot]); tokens and constants by
** hook_embed, indices by hook_pos_embed. The candidate edges are
**   aggregate (inputs keys, queries, value): writer(queries) -> q_input,
**     writer(keys) -> k_input, writer(value) -> v_input of its head;
**   selector_width (keys, queries) and length: the same for q and k, and its
**     head -> mlp_in of its MLP's layer (the head writes 1/(w+1), the MLP
**     decodes it);
**   map, zipmap and the compiler's composites: writer(each input) -> mlp_in;
**   every head: hook_embed -> q_input, k_input and v_input (the blocks read
**     the `bos` and `one` dimensions only the token embedding writes: BOS
**     attention, the none indicator, the default value, the BOS value
**     cancelled on keys and values) and the DIRECT edges q_input -> q,
**     k_input -> k, v_input -> v;
**   every MLP: hook_embed -> mlp_in (every hidden unit is gated by `one`);
**   writer(output) -> resid_post.
** What the weights really use depends on the program, not just the block
** type: a `true` selector's head attends uniformly whatever its q and k
** (reverse's length), BOS's half score on keys matters only when a query can
** select nothing, the embedding's `one` in q only then or for a none query.
** So each candidate is tested on the model itself: it stays in the truth
** when zero-ablating it alone (subtracting the sender's output from the
** receiver, as ACDC's zero ablation does; DIRECT: q/k/v set to its bias)
** changes some readout logit at a position >= 1 by more than 1e-3, on every
** input up to max_seq_len (or 1024 seeded random inputs per length when
** there are more). A q/k/v port whose DIRECT edge is not needed is dropped
** with all its inputs (ACDC cuts the DIRECT edge first). Edges outside the
** candidates are never in the truth.
**
** Scores follow the reference (acdc_utils.get_stat, notebooks/
** make_plotly_plots.py, acdc_graphics.pessimistic_auc): only ADDITION and
** DIRECT edges count; the ROC curve gets (0, 0) and (1, 1), keeps the Pareto
** points and integrates a pessimistic staircase.
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Metadata

static const char *meta_find(const char *const *keys, const char *const *values, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (keys[i] && !strcmp(keys[i], key)) return values[i];
    return NULL;
}

int mech_acdc_truth_n_out(const char *readout_json) {
    if (!readout_json) return 0;
    mech_json *j = NULL;
    if (mech_json_parse(readout_json, strlen(readout_json), &j, NULL)) return 0;
    const mech_json *enc = mech_json_get(j, "encoding"), *vals = mech_json_get(j, "values");
    int n = 0;
    if (enc && enc->type == MECH_JSON_STRING && !strcmp(enc->str, "numerical")) n = 1;
    else if (vals && vals->type == MECH_JSON_ARRAY) n = (int)vals->n;
    mech_json_free(j);
    return n;
}

// ---------------------------------------------------------------------------
// Candidates

typedef struct truth_ctx {
    const mech_acdc_graph *g;
    uint8_t *cand; // [n_edges]
    mech_err *err;
    mech_status bad; // the first error, MECH_OK while none
} truth_ctx;

static int node_named(const truth_ctx *c, const char *fmt, int a, int b) {
    char name[64];
    snprintf(name, sizeof name, fmt, a, b);
    return mech_acdc_graph_node(c->g, name);
}

static void add_edge(truth_ctx *c, int sender, int receiver) {
    if (c->bad) return;
    int e = sender < 0 || receiver < 0 ? -1 : mech_acdc_graph_edge(c->g, sender, receiver);
    if (e < 0) {
        c->bad = mech_err_set(c->err, MECH_ERR_FORMAT,
                              "mech.rasp.circuit: %s -> %s is not an edge of the model's ACDC graph",
                              sender >= 0 ? c->g->nodes[sender].name : "?",
                              receiver >= 0 ? c->g->nodes[receiver].name : "?");
        return;
    }
    c->cand[e] = 1;
}

static int json_int(const mech_json *a, size_t i) {
    return a && a->type == MECH_JSON_ARRAY && i < a->n && a->items[i].type == MECH_JSON_NUMBER ? (int)a->items[i].num
                                                                                               : -1;
}

// The sender node that writes variable n.
static int writer_of(const truth_ctx *c, const mech_json *n) {
    const mech_json *mlp = mech_json_get(n, "mlp"), *head = mech_json_get(n, "head"), *kind = mech_json_get(n, "kind");
    if (mlp) return node_named(c, "blocks.%d.hook_mlp_out[:]", json_int(mlp, 0), 0);
    if (head) return node_named(c, "blocks.%d.attn.hook_result[:, :, %d]", json_int(head, 0), json_int(head, 1));
    int pos = kind && kind->type == MECH_JSON_STRING && !strcmp(kind->str, "indices");
    return c->g->split_embed && pos ? 1 : 0;
}

static const mech_json *node_by_label(const mech_json *nodes, const char *label) {
    for (size_t i = 0; i < nodes->n; i++) {
        const mech_json *l = mech_json_get(&nodes->items[i], "label");
        if (l && l->type == MECH_JSON_STRING && !strcmp(l->str, label)) return &nodes->items[i];
    }
    return NULL;
}

static int input_writer(truth_ctx *c, const mech_json *nodes, const mech_json *ins, size_t k) {
    if (!ins || ins->type != MECH_JSON_ARRAY || k >= ins->n || ins->items[k].type != MECH_JSON_STRING) return -1;
    const mech_json *in = node_by_label(nodes, ins->items[k].str);
    if (!in) {
        if (!c->bad) c->bad = mech_err_set(c->err, MECH_ERR_FORMAT, "mech.rasp.circuit: unknown input '%s'", ins->items[k].str);
        return -1;
    }
    return writer_of(c, in);
}

static void head_candidates(truth_ctx *c, const mech_json *nodes, const mech_json *n, int with_value) {
    const mech_json *head = mech_json_get(n, "head"), *ins = mech_json_get(n, "inputs");
    int L = json_int(head, 0), h = json_int(head, 1);
    int qi = node_named(c, "blocks.%d.hook_q_input[:, :, %d]", L, h);
    int ki = node_named(c, "blocks.%d.hook_k_input[:, :, %d]", L, h);
    int vi = node_named(c, "blocks.%d.hook_v_input[:, :, %d]", L, h);
    size_t n_in = ins && ins->type == MECH_JSON_ARRAY ? ins->n : 0;
    if (n_in >= 2) {
        add_edge(c, input_writer(c, nodes, ins, 0), ki); // keys
        add_edge(c, input_writer(c, nodes, ins, 1), qi); // queries
    }
    if (with_value && n_in >= 3) add_edge(c, input_writer(c, nodes, ins, 2), vi);
    for (int port = 0; port < 3; port++) {
        int in = port == 0 ? qi : port == 1 ? ki : vi;
        add_edge(c, 0, in); // bos and one
        add_edge(c, in, node_named(c, port == 0 ? "blocks.%d.attn.hook_q[:, :, %d]"
                                      : port == 1 ? "blocks.%d.attn.hook_k[:, :, %d]"
                                                  : "blocks.%d.attn.hook_v[:, :, %d]", L, h));
    }
}

static void mlp_candidates(truth_ctx *c, const mech_json *nodes, const mech_json *n, int from_head) {
    const mech_json *mlp = mech_json_get(n, "mlp"), *ins = mech_json_get(n, "inputs"), *head = mech_json_get(n, "head");
    int mi = node_named(c, "blocks.%d.hook_mlp_in[:]", json_int(mlp, 0), 0);
    add_edge(c, 0, mi);
    if (from_head) {
        add_edge(c, node_named(c, "blocks.%d.attn.hook_result[:, :, %d]", json_int(head, 0), json_int(head, 1)), mi);
        return;
    }
    for (size_t k = 0; ins && ins->type == MECH_JSON_ARRAY && k < ins->n; k++) add_edge(c, input_writer(c, nodes, ins, k), mi);
}

static mech_status candidates(const mech_acdc_graph *g, const char *circuit, const char *readout, uint8_t *cand,
                              mech_err *err) {
    mech_json *cj = NULL, *rj = NULL;
    mech_err e = {0};
    if (mech_json_parse(circuit, strlen(circuit), &cj, &e))
        return mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.circuit: %s", e.msg);
    if (mech_json_parse(readout, strlen(readout), &rj, &e)) {
        mech_json_free(cj);
        return mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.readout: %s", e.msg);
    }
    truth_ctx c = {.g = g, .cand = cand, .err = err};
    const mech_json *nodes = mech_json_get(cj, "nodes"), *out = mech_json_get(rj, "node");
    if (!nodes || nodes->type != MECH_JSON_ARRAY || !out || out->type != MECH_JSON_STRING) {
        c.bad = mech_err_set(err, MECH_ERR_FORMAT,
                             "mech.rasp.circuit/readout: expected {\"nodes\": [...]} and {\"node\": NAME}");
    }
    for (size_t i = 0; !c.bad && i < nodes->n; i++) {
        const mech_json *n = &nodes->items[i], *kind = mech_json_get(n, "kind");
        const char *k = kind && kind->type == MECH_JSON_STRING ? kind->str : "";
        int has_head = mech_json_get(n, "head") != NULL, has_mlp = mech_json_get(n, "mlp") != NULL;
        if (!strcmp(k, "aggregate") && has_head) {
            head_candidates(&c, nodes, n, 1);
        } else if ((!strcmp(k, "selector_width") || !strcmp(k, "length")) && has_head && has_mlp) {
            head_candidates(&c, nodes, n, 0);
            mlp_candidates(&c, nodes, n, 1);
        } else if (has_mlp) {
            mlp_candidates(&c, nodes, n, 0);
        }
    }
    if (!c.bad) {
        const mech_json *on = node_by_label(nodes, out->str);
        if (!on) {
            c.bad = mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.readout: output '%s' is not in the circuit", out->str);
        } else {
            add_edge(&c, writer_of(&c, on), g->n_nodes - 1);
        }
    }
    mech_json_free(cj);
    mech_json_free(rj);
    return c.bad;
}

// ---------------------------------------------------------------------------
// Testing a candidate: one forward with the edge zero-ablated

typedef struct ablation {
    const mech_acdc_graph *g;
    const mech_model *m;
    int edge;
    float *buf; // (B, T, C): the sender's output
} ablation;

// Hook name of a node (without the index) and the head it indexes, or -1.
static void hook_of(const mech_acdc_node *n, char *name, size_t cap) {
    switch (n->kind) {
    case MECH_ACDC_EMBED: snprintf(name, cap, "%s", strncmp(n->name, "hook_embed", 10) ? "blocks.0.hook_resid_pre" : "hook_embed"); break;
    case MECH_ACDC_POS_EMBED: snprintf(name, cap, "hook_pos_embed"); break;
    case MECH_ACDC_RESULT: snprintf(name, cap, "blocks.%d.attn.hook_result", n->layer); break;
    case MECH_ACDC_MLP_OUT: snprintf(name, cap, "blocks.%d.hook_mlp_out", n->layer); break;
    case MECH_ACDC_Q_INPUT: snprintf(name, cap, "blocks.%d.hook_q_input", n->layer); break;
    case MECH_ACDC_K_INPUT: snprintf(name, cap, "blocks.%d.hook_k_input", n->layer); break;
    case MECH_ACDC_V_INPUT: snprintf(name, cap, "blocks.%d.hook_v_input", n->layer); break;
    case MECH_ACDC_Q: snprintf(name, cap, "blocks.%d.attn.hook_q", n->layer); break;
    case MECH_ACDC_K: snprintf(name, cap, "blocks.%d.attn.hook_k", n->layer); break;
    case MECH_ACDC_V: snprintf(name, cap, "blocks.%d.attn.hook_v", n->layer); break;
    case MECH_ACDC_MLP_IN: snprintf(name, cap, "blocks.%d.hook_mlp_in", n->layer); break;
    case MECH_ACDC_RESID_POST: snprintf(name, cap, "blocks.%d.hook_resid_post", n->layer); break;
    }
}

// act: (B, T, C) or, for per-head hooks, (B, T, NH, C); row r of head h.
static float *row_of(mech_tensor *act, int64_t r, int head) {
    int64_t C = act->shape[act->ndim - 1];
    if (act->ndim == 4 && head >= 0) return act->data + (r * act->shape[2] + head) * C;
    return act->data + r * C;
}

static int grab_sender(mech_tensor *act, int layer, void *user) {
    (void)layer;
    ablation *a = user;
    const mech_acdc_node *s = &a->g->nodes[a->g->edges[a->edge].sender];
    int64_t rows = act->shape[0] * act->shape[1], C = act->shape[act->ndim - 1];
    for (int64_t r = 0; r < rows; r++) memcpy(a->buf + r * C, row_of(act, r, s->head), (size_t)C * sizeof(float));
    return 0;
}

static int cut_receiver(mech_tensor *act, int layer, void *user) {
    (void)layer;
    ablation *a = user;
    const mech_acdc_edge *e = &a->g->edges[a->edge];
    const mech_acdc_node *r = &a->g->nodes[e->receiver];
    int64_t rows = act->shape[0] * act->shape[1], C = act->shape[act->ndim - 1];
    if (e->type == MECH_ACDC_DIRECT) {
        // q/k/v of head h from an all-zero input: the bias alone
        const mech_config *cfg = &a->m->cfg;
        int which = (int)(r->kind - MECH_ACDC_Q), HS = cfg->d_head;
        const float *bias = a->m->layers[r->layer].qkv_b + (size_t)which * cfg->n_heads * HS + (size_t)r->head * HS;
        for (int64_t q = 0; q < rows; q++) memcpy(row_of(act, q, r->head), bias, (size_t)HS * sizeof(float));
        return 0;
    }
    for (int64_t q = 0; q < rows; q++) {
        float *x = row_of(act, q, r->head);
        const float *s = a->buf + q * C;
        for (int64_t i = 0; i < C; i++) x[i] -= s[i];
    }
    return 0;
}

// Up to 1024 inputs of len values from ids 1..nv (all of them when there
// are no more), each [0 = BOS, x...]. OUT: *ids (B * (len + 1)), *B.
static int32_t *make_inputs(int nv, int len, uint64_t *rng, int *B) {
    enum { CAP = 1024 };
    double total = pow((double)nv, len);
    int all = total <= CAP, n = all ? (int)total : CAP, T = len + 1;
    int32_t *ids = mech_malloc((size_t)n * T * sizeof *ids);
    if (!ids) return NULL;
    for (int b = 0; b < n; b++) {
        int64_t code = b;
        ids[(size_t)b * T] = 0;
        for (int t = len; t >= 1; t--) {
            uint64_t z = mech_splitmix64(rng);
            int64_t pick = all ? code % nv : (int64_t)(z % (uint64_t)nv);
            code /= nv;
            ids[(size_t)b * T + t] = (int32_t)(1 + pick);
        }
    }
    *B = n;
    return ids;
}

// Largest |a - b| over the readout logits [0, n_out) at positions >= 1.
static double readout_diff(const float *a, const float *b, int B, int T, int V, int n_out) {
    double worst = 0;
    for (int bb = 0; bb < B; bb++)
        for (int t = 1; t < T; t++)
            for (int c = 0; c < n_out; c++) {
                size_t i = ((size_t)bb * T + t) * V + c;
                double d = fabs((double)a[i] - (double)b[i]);
                if (!(d <= worst)) worst = d; // NaN counts as a change
            }
    return worst;
}

static mech_status test_candidates(const mech_model *m, const mech_acdc_graph *g, int nv, int N, int n_out,
                                   const uint8_t *cand, uint8_t *truth, mech_err *err) {
    const mech_config *cfg = &m->cfg;
    uint64_t rng = 0x6d656368;
    mech_status st = MECH_OK;
    for (int len = 1; len <= N && !st; len++) {
        int n = 0, T = len + 1;
        int32_t *ids = make_inputs(nv, len, &rng, &n);
        if (!ids) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the ground-truth inputs");
        enum { CHUNK = 256 };
        for (int at = 0; at < n && !st; at += CHUNK) {
            int B = n - at < CHUNK ? n - at : CHUNK;
            mech_run *run = NULL;
            float *clean = NULL, *buf = NULL;
            size_t nlog = (size_t)B * T * cfg->d_vocab;
            if ((st = mech_run_new(m, B, T, &run, err))) break;
            clean = mech_malloc(nlog * sizeof *clean);
            buf = mech_malloc((size_t)B * T * cfg->d_model * sizeof *buf);
            if (!clean || !buf) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the ground-truth test");
            if (!st && !(st = mech_run_forward(run, ids + (size_t)at * T, err)))
                memcpy(clean, mech_run_logits(run), nlog * sizeof *clean);
            for (int e = 0; e < g->n_edges && !st; e++) {
                if (!cand[e] || truth[e]) continue;
                ablation a = {.g = g, .m = m, .edge = e, .buf = buf};
                char sname[64], rname[64];
                mech_run_reset(run);
                hook_of(&g->nodes[g->edges[e].receiver], rname, sizeof rname);
                if (g->edges[e].type == MECH_ACDC_ADDITION) {
                    hook_of(&g->nodes[g->edges[e].sender], sname, sizeof sname);
                    if ((st = mech_run_hook(run, sname, grab_sender, &a, err))) break;
                }
                if ((st = mech_run_hook(run, rname, cut_receiver, &a, err)) ||
                    (st = mech_run_forward(run, ids + (size_t)at * T, err)))
                    break;
                if (readout_diff(clean, mech_run_logits(run), B, T, cfg->d_vocab, n_out) > 1e-3) truth[e] = 1;
            }
            mech_free(clean);
            mech_free(buf);
            mech_run_free(run);
        }
        mech_free(ids);
    }
    return st;
}

// ---------------------------------------------------------------------------
// Public: ground truth

mech_status mech_acdc_truth_edges(const mech_model *m, const char *const *meta_keys, const char *const *meta_values,
                                  size_t n_meta, const mech_acdc_graph *g, uint8_t *truth, int *n_true, mech_err *err) {
    if (n_true) *n_true = 0;
    if (!m || !g || !truth) return mech_err_set(err, MECH_ERR_ARG, "mech_acdc_truth_edges: NULL argument");
    memset(truth, 0, (size_t)g->n_edges);
    const char *circuit = meta_find(meta_keys, meta_values, n_meta, "mech.rasp.circuit");
    const char *readout = meta_find(meta_keys, meta_values, n_meta, "mech.rasp.readout");
    const char *tokens = meta_find(meta_keys, meta_values, n_meta, "mech.rasp.tokens");
    const char *maxlen = meta_find(meta_keys, meta_values, n_meta, "mech.rasp.max_seq_len");
    if (!circuit || !readout || !tokens || !maxlen)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "not a compiled RASP model: no mech.rasp.circuit/readout/tokens/max_seq_len metadata "
                            "(hint: make one with `mech compile PROGRAM.rasp -o OUT.safetensors`)");
    if (g->n_layers != m->cfg.n_layers || g->n_heads != m->cfg.n_heads)
        return mech_err_set(err, MECH_ERR_ARG, "the ACDC graph (%d layers, %d heads) is not the model's (%d, %d)",
                            g->n_layers, g->n_heads, m->cfg.n_layers, m->cfg.n_heads);
    int n_out = mech_acdc_truth_n_out(readout), N = atoi(maxlen), nv = 0;
    mech_json *tj = NULL;
    if (!mech_json_parse(tokens, strlen(tokens), &tj, NULL)) {
        const mech_json *v = mech_json_get(tj, "vocab");
        int lo = json_int(v, 0), hi = json_int(v, 1);
        nv = lo == 1 && hi >= 1 ? hi : 0;
    }
    mech_json_free(tj);
    if (n_out < 1 || n_out > m->cfg.d_vocab || N < 1 || N + 1 > m->cfg.n_ctx || nv < 1 || nv >= m->cfg.d_vocab)
        return mech_err_set(err, MECH_ERR_FORMAT,
                            "mech.rasp metadata: readout of %d values, max_seq_len %d, vocab of %d do not fit the model",
                            n_out, N, nv);
    uint8_t *cand = mech_calloc((size_t)g->n_edges + 1, 1);
    if (!cand) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    mech_status st = candidates(g, circuit, readout, cand, err);
    if (!st) st = test_candidates(m, g, nv, N, n_out, cand, truth, err);
    mech_free(cand);
    // A q/k/v port whose DIRECT edge is not needed is not in the circuit at
    // all, even when cutting one of its inputs alone matters: a `true`
    // selector's q without positions lets BOS win, but with no q at all the
    // head averages every key (BOS included) and the output stays. ACDC cuts
    // the DIRECT edge first (hook_q comes before hook_q_input in its order)
    // and never tries the inputs of a port nothing reads.
    for (int e = 0; !st && e < g->n_edges; e++) {
        if (g->edges[e].type != MECH_ACDC_DIRECT || truth[e]) continue;
        int port = g->edges[e].sender;
        for (int k = g->first_in[port]; k < g->first_in[port + 1]; k++) truth[k] = 0;
    }
    if (st) {
        memset(truth, 0, (size_t)g->n_edges);
        return st;
    }
    int n = 0;
    for (int e = 0; e < g->n_edges; e++) n += truth[e];
    if (n_true) *n_true = n;
    return MECH_OK;
}

mech_status mech_acdc_truth_model(const mech_model *m, const mech_acdc_graph *g, uint8_t *truth, int *n_true,
                                  mech_err *err) {
    static const char *const keys[] = {"mech.rasp.circuit", "mech.rasp.readout", "mech.rasp.tokens",
                                       "mech.rasp.max_seq_len"};
    const char *values[4];
    for (int i = 0; i < 4; i++) values[i] = m ? mech_model_meta(m, keys[i]) : NULL;
    return mech_acdc_truth_edges(m, keys, values, 4, g, truth, n_true, err);
}

// ---------------------------------------------------------------------------
// Scores

mech_acdc_score mech_acdc_truth_score(const mech_acdc_graph *g, const uint8_t *truth) {
    mech_acdc_score s = {0};
    for (int e = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
        int t = truth && truth[e], p = g->edges[e].present;
        s.n_counted++;
        s.n_truth += t;
        s.n_found += p;
        s.tp += t && p;
        s.fp += !t && p;
        s.fn += t && !p;
    }
    s.tpr = s.n_truth ? (double)s.tp / s.n_truth : 0;
    s.fpr = s.n_counted > s.n_truth ? (double)s.fp / (s.n_counted - s.n_truth) : 0;
    return s;
}

static int cmp_point(const void *a, const void *b) {
    const mech_acdc_roc_point *x = a, *y = b;
    if (x->fpr != y->fpr) return x->fpr < y->fpr ? -1 : 1;
    if (x->tpr != y->tpr) return x->tpr < y->tpr ? -1 : 1;
    return 0;
}

int mech_acdc_roc(const mech_acdc_roc_point *pts, int n, mech_acdc_roc_point *out) {
    // The reference's get_points() adds (0, 0) and (1, 1), then
    // discard_non_pareto_optimal drops a point when another has a strictly
    // smaller fpr and a strictly larger tpr; duplicates stay.
    int all = n + 2, k = 0;
    for (int i = 0; i < all; i++) {
        mech_acdc_roc_point p = i == 0 ? (mech_acdc_roc_point){0, 0} : i == 1 ? (mech_acdc_roc_point){1, 1} : pts[i - 2];
        int dominated = 0;
        for (int j = 0; j < all && !dominated; j++) {
            mech_acdc_roc_point q = j == 0 ? (mech_acdc_roc_point){0, 0} : j == 1 ? (mech_acdc_roc_point){1, 1} : pts[j - 2];
            dominated = q.fpr < p.fpr && q.tpr > p.tpr;
        }
        if (!dominated) out[k++] = p;
    }
    qsort(out, (size_t)k, sizeof *out, cmp_point);
    return k;
}

double mech_acdc_auc(const mech_acdc_roc_point *pts, int n) {
    if (n < 1) return 0;
    mech_acdc_roc_point *c = mech_malloc((size_t)(n + 2) * sizeof *c);
    if (!c) return NAN;
    int k = mech_acdc_roc(pts, n, c);
    double area = 0;
    for (int i = 1; i < k; i++) area += (1 - c[i].fpr) * (c[i].tpr - c[i - 1].tpr);
    mech_free(c);
    return area;
}

// ---------------------------------------------------------------------------
// Export

// Graphviz id of a node: q/k/v inputs and the q/k/v nodes fold into their
// head, so the picture shows components and the letter of the port on edges.
static void dot_id(const mech_acdc_node *n, char *id, size_t cap) {
    switch (n->kind) {
    case MECH_ACDC_EMBED: snprintf(id, cap, "%s", strncmp(n->name, "hook_embed", 10) ? "embed" : "token_embed"); break;
    case MECH_ACDC_POS_EMBED: snprintf(id, cap, "pos_embed"); break;
    case MECH_ACDC_RESULT: case MECH_ACDC_Q_INPUT: case MECH_ACDC_K_INPUT: case MECH_ACDC_V_INPUT:
    case MECH_ACDC_Q: case MECH_ACDC_K: case MECH_ACDC_V:
        snprintf(id, cap, "a%d.%d", n->layer, n->head);
        break;
    case MECH_ACDC_MLP_IN: case MECH_ACDC_MLP_OUT: snprintf(id, cap, "m%d", n->layer); break;
    case MECH_ACDC_RESID_POST: snprintf(id, cap, "resid_post"); break;
    }
}

static char port_of(const mech_acdc_node *n) {
    switch (n->kind) {
    case MECH_ACDC_Q_INPUT: case MECH_ACDC_Q: return 'q';
    case MECH_ACDC_K_INPUT: case MECH_ACDC_K: return 'k';
    case MECH_ACDC_V_INPUT: case MECH_ACDC_V: return 'v';
    default: return 0;
    }
}

static void fmt_effect(double x, char *s, size_t cap) {
    if (isnan(x)) snprintf(s, cap, "-");
    else snprintf(s, cap, "%.3g", x);
}

void mech_acdc_export_dot(const mech_acdc_graph *g, const uint8_t *truth, mech_buf *b) {
    mech_buf_puts(b, "digraph acdc {\n  rankdir=TB;\n  node [shape=box, style=\"rounded,filled\", fillcolor=\"#eeeeee\", "
                     "fontname=Helvetica];\n  edge [fontname=Helvetica, fontsize=10];\n");
    // which components appear
    int n = g->n_nodes;
    uint8_t *used = mech_calloc((size_t)n + 1, 1);
    if (!used) {
        b->oom = 1;
        return;
    }
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *x = &g->edges[e];
        if (x->type == MECH_ACDC_PLACEHOLDER || x->type == MECH_ACDC_DIRECT) continue;
        if (x->present || (truth && truth[e])) used[x->sender] = used[x->receiver] = 1;
    }
    char id[32];
    mech_buf_puts(b, "  { rank=source;");
    for (int v = 0; v < n; v++)
        if (used[v] && (g->nodes[v].kind == MECH_ACDC_EMBED || g->nodes[v].kind == MECH_ACDC_POS_EMBED)) {
            dot_id(&g->nodes[v], id, sizeof id);
            mech_buf_printf(b, " \"%s\";", id);
        }
    mech_buf_puts(b, " }\n");
    for (int l = 0; l < g->n_layers; l++) {
        // one rank per layer: heads and the MLP of layer l side by side
        char seen[256] = "";
        int any = 0;
        for (int v = 0; v < n; v++) {
            const mech_acdc_node *x = &g->nodes[v];
            if (!used[v] || x->layer != l || x->kind == MECH_ACDC_RESID_POST) continue;
            dot_id(x, id, sizeof id);
            char key[40];
            snprintf(key, sizeof key, "|%s|", id);
            if (strstr(seen, key) || strlen(seen) + strlen(key) >= sizeof seen) continue;
            strcat(seen, key);
            if (!any) mech_buf_printf(b, "  subgraph layer%d { rank=same;", l);
            any = 1;
            mech_buf_printf(b, " \"%s\";", id);
        }
        if (any) mech_buf_puts(b, " }\n");
    }
    mech_buf_puts(b, "  { rank=sink; \"resid_post\"; }\n");
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *x = &g->edges[e];
        if (x->type != MECH_ACDC_ADDITION) continue;
        int t = truth && truth[e];
        if (!x->present && !t) continue;
        char s[32], r[32], eff[32];
        dot_id(&g->nodes[x->sender], s, sizeof s);
        dot_id(&g->nodes[x->receiver], r, sizeof r);
        fmt_effect(x->effect, eff, sizeof eff);
        char port[3] = {port_of(&g->nodes[x->receiver]), ' ', 0};
        mech_buf_printf(b, "  \"%s\" -> \"%s\" [label=\"%s%s\"", s, r, port[0] ? port : "", eff);
        if (truth && !x->present) mech_buf_puts(b, ", style=dashed, color=grey50, fontcolor=grey50");
        else if (truth && !t) mech_buf_puts(b, ", color=red, fontcolor=red");
        mech_buf_puts(b, "];\n");
    }
    mech_buf_puts(b, "}\n");
    mech_free(used);
}

static const char *type_name(mech_acdc_edge_type t) {
    return t == MECH_ACDC_ADDITION ? "addition" : t == MECH_ACDC_DIRECT ? "direct" : "placeholder";
}

void mech_acdc_export_json(const mech_acdc_graph *g, const uint8_t *truth, mech_buf *b) {
    int n = mech_acdc_graph_count_present(g);
    mech_buf_printf(b, "{\"n_edges\": %d, \"n_counted\": %d, \"edges\": [", n, g->n_addition + g->n_direct);
    int k = 0;
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *x = &g->edges[e];
        if (x->type == MECH_ACDC_PLACEHOLDER || !x->present) continue;
        const char *s = g->nodes[x->sender].name, *r = g->nodes[x->receiver].name;
        mech_buf_puts(b, k++ ? ",\n  {\"sender\": " : "\n  {\"sender\": ");
        mech_buf_json_string(b, s, strlen(s));
        mech_buf_puts(b, ", \"receiver\": ");
        mech_buf_json_string(b, r, strlen(r));
        mech_buf_printf(b, ", \"type\": \"%s\", \"effect\": ", type_name(x->type));
        if (isfinite(x->effect)) {
            // the metrics are float precision: the fewest digits that read
            // back as the same float (0.294, not 0.294000001)
            char num[32];
            for (int prec = 1; prec <= 9; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, x->effect);
                if ((float)strtod(num, NULL) == (float)x->effect) break;
            }
            mech_buf_puts(b, num);
        }
        else mech_buf_puts(b, "null");
        if (truth) mech_buf_printf(b, ", \"truth\": %s", truth[e] ? "true" : "false");
        mech_buf_puts(b, "}");
    }
    mech_buf_puts(b, k ? "\n]}\n" : "]}\n");
}
