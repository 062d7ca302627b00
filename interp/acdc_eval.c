/*
** interp/acdc_eval.c: the fast ACDC evaluator. It keeps the whole patched
** model's state (every receiver's input X[r], every head's q/k/v, every
** sender's live output O[s] and its difference D[s] = O[s] - C[s] from the
** corrupted cache) for the graph as decided so far, and a trial recomputes
** only what the tried edge changes:
**
**   - removing s -> r is one vector subtraction, X'[r] = X[r] - D[s];
**     a DIRECT edge swaps one head's q (k, v) for its corrupted value;
**   - the unit reading r (one head, one MLP, or the unembedding) is
**     recomputed; then, in topological order, every later unit one of whose
**     inputs reads a changed sender along a present edge, and nothing else:
**     everything upstream of the receiver is fixed for the whole receiver
**     and is never recomputed;
**   - only the metric's rows and columns are unembedded (all of V for KL,
**     the first n_out for L2, two logits for logit_diff).
**
**   - only the rows that can still reach a metric row are computed: a
**     unit's needed rows are the union, over its present outgoing edges, of
**     what the receiver needs (resid_post: the metric rows; an MLP: its own
**     needed rows; a head's q: its needed query rows; its k and v: every
**     earlier position of those sequences). Edges are only ever removed, so
**     needed rows only shrink: rows left stale in the state are never read
**     again. They are recomputed whenever the search moves on to another
**     layer or receiver kind.
**
** A kept removal swaps the trial's buffers into the state; a restored edge
** just drops them. The state is rebuilt from the present flags when it may
** disagree with them (at the start, and after replayed decisions), and at
** every new group of receivers (sync), which makes the values a trial
** computes a function of the decisions alone: a resumed run gets the
** uninterrupted run's values bit for bit.
**
** Removals the search makes without a trial (a disconnected node's inputs)
** are not mirrored: such a node's value is read by no present edge, now or
** later (edges are only ever removed), so its stale state is never read.
**
** The maths is the core forward pass's (core/forward.c) with the same vector
** kernels: LayerNorm per row then weight and bias, q/k/v from each head's
** own pre-LayerNorm input (TransformerLens's split q/k/v inputs), softmax
** over the causal prefix, per-head results without b_O, MLP outputs with
** their bias.
*/
#include "interp/acdc_int.h"

#include <math.h>
#include <string.h>

typedef struct fast_eval {
    acdc_eval ev;
    acdc_ctx *x;
    size_t n;            // BT * C
    int n_recv;          // receivers: 3 per head, mlp_in per layer, resid_post
    int rid_post;
    float **X, **Xn;     // [n_recv] inputs: state / this trial's
    float **O, **On, **D; // [n_send] live outputs, this trial's, O - C
    float **Q, **Qn;     // [L*H*3] each head's q, k, v (BT, HS): state / trial
    int *edge_of;        // [n_recv][n_send] edge index or -1
    int *direct;         // [L*H*3] DIRECT edge index (q_input -> q, ...)
    int *rid_of;         // [n_nodes] receiver id of an ADDITION receiver node, or -1
    int *qkv_of;         // [n_nodes] L*H*3 index of a DIRECT receiver node (hook_q...), or -1
    // This trial's changes (lists in topological order).
    char *x_new, *o_new, *q_new;
    int *list_x, *list_o, *list_q;
    int nx, no, nq;
    float *lg, *lg_new;  // [n_rows][n_cols] metric logits: state / trial
    double metric, metric_new;
    int lg_new_valid;
    int stale;           // the state may disagree with the flags: rebuild before use
    // Scratch.
    float *ln, *z, *s, *hid, *rows;
    float *lgt; // (n_cols, n_rows): metric logits, transposed
    float *g1, *g2; // gathered rows (BT, C)
    // Needed rows (sorted row indices b*T + t): of each unit's output, of
    // each head's keys and values, of the metric.
    int *urows, *nur;   // [n_send][BT], [n_send]
    int *kvrows, *nkv;  // [L*H][BT], [L*H]
    int *mrows, nm;     // [n_rows]
    char *mark;         // [BT]
    int need_key;       // (layer, receiver kind) the needed rows were computed for; -1: none
    int64_t macs;
    void *mem[20];
} fast_eval;

// ---------------------------------------------------------------------------
// The units' maths

static int slot_head(const acdc_ctx *x, int l, int h) { return x->n_embed + l * (x->H + !x->c->attn_only) + h; }
static int slot_mlp(const acdc_ctx *x, int l) { return x->n_embed + l * (x->H + 1) + x->H; }

// out = LayerNorm(in) * w + b row by row, or in itself without LayerNorm.
static const float *layer_norm(fast_eval *fe, const float *in, int rows, const float *w, const float *b, float *out) {
    const acdc_ctx *x = fe->x;
    if (x->c->norm == MECH_NORM_NONE) return in;
    int C = x->C;
    for (int i = 0; i < rows; i++) {
        float *y = out + (size_t)i * C;
        mech_vec_layernorm(y, NULL, in + (size_t)i * C, (size_t)C, x->c->ln_eps);
        for (int k = 0; k < C; k++) y[k] = y[k] * w[k] + b[k];
    }
    fe->macs += 2 * (int64_t)rows * C;
    return out;
}

// Row lists: rows == NULL means all BT rows.
static void gather(const float *src, int width, const int *rows, int nr, float *dst) {
    for (int i = 0; i < nr; i++) memcpy(dst + (size_t)i * width, src + (size_t)rows[i] * width, (size_t)width * sizeof(float));
}
static void scatter(const float *src, int width, const int *rows, int nr, float *dst) {
    for (int i = 0; i < nr; i++) memcpy(dst + (size_t)rows[i] * width, src + (size_t)i * width, (size_t)width * sizeof(float));
}

// One head's q (w = 0), k (1) or v (2) from its input X, at rows: (BT, HS).
static void project(fast_eval *fe, int l, int h, int w, const float *X, float *out, const int *rows, int nr) {
    const acdc_ctx *x = fe->x;
    const mech_layer_weights *lw = &x->m->layers[l];
    if (rows) gather(X, x->C, rows, nr, fe->g1), X = fe->g1;
    const float *in = layer_norm(fe, X, nr, lw->ln1_w, lw->ln1_b, fe->ln);
    size_t off = (size_t)w * x->A + (size_t)h * x->HS;
    float *dst = rows ? fe->g2 : out;
    mech_matmul(x->pool, dst, x->HS, in, x->C, lw->qkv_w + off, 3 * x->A, lw->qkv_b + off, nr, x->C, x->HS);
    if (rows) scatter(fe->g2, x->HS, rows, nr, out);
    fe->macs += (int64_t)nr * x->C * x->HS;
}

// A head's result (without b_O) at rows from its q (at those rows) and k, v
// (at every earlier position of their sequences): (BT, C).
static void attend(fast_eval *fe, int l, int h, const float *q, const float *k, const float *v, float *out,
                   const int *rows, int nr) {
    const acdc_ctx *x = fe->x;
    int T = x->T, HS = x->HS, causal = x->c->causal;
    float scale = (float)sqrt((double)HS);
    for (int j = 0; j < nr; j++) {
        int r = rows ? rows[j] : j, b = r / T, i = r % T, n = causal ? i + 1 : T;
        const float *qr = q + (size_t)r * HS, *kb = k + (size_t)b * T * HS, *vb = v + (size_t)b * T * HS;
        float *sc = fe->s;
        for (int t = 0; t < n; t++) {
            float acc = 0;
            for (int d = 0; d < HS; d++) acc += qr[d] * kb[(size_t)t * HS + d];
            sc[t] = acc / scale;
        }
        mech_vec_softmax(sc, (size_t)n);
        float *z = fe->z + (size_t)j * HS;
        for (int d = 0; d < HS; d++) z[d] = 0.0f;
        for (int t = 0; t < n; t++)
            for (int d = 0; d < HS; d++) z[d] += sc[t] * vb[(size_t)t * HS + d];
        fe->macs += 2 * (int64_t)n * HS;
    }
    const mech_layer_weights *lw = &x->m->layers[l];
    float *dst = rows ? fe->g1 : out;
    mech_matmul(x->pool, dst, x->C, fe->z, HS, lw->o_w + (size_t)h * HS * x->C, x->C, NULL, nr, HS, x->C);
    if (rows) scatter(fe->g1, x->C, rows, nr, out);
    fe->macs += (int64_t)nr * HS * x->C;
}

// hook_mlp_out (bias included) from hook_mlp_in, at rows.
static void mlp(fast_eval *fe, int l, const float *X, float *out, const int *rows, int nr) {
    const acdc_ctx *x = fe->x;
    const mech_layer_weights *lw = &x->m->layers[l];
    if (rows) gather(X, x->C, rows, nr, fe->g1), X = fe->g1;
    const float *in = layer_norm(fe, X, nr, lw->ln2_w, lw->ln2_b, fe->ln);
    mech_matmul(x->pool, fe->hid, x->M, in, x->C, lw->fc_w, x->M, lw->fc_b, nr, x->C, x->M);
    size_t nh = (size_t)nr * x->M;
    if (x->c->act == MECH_ACT_GELU_NEW) mech_vec_gelu_new(fe->hid, fe->hid, nh);
    else if (x->c->act == MECH_ACT_GELU) mech_vec_gelu_erf(fe->hid, fe->hid, nh);
    else mech_vec_relu(fe->hid, fe->hid, nh);
    float *dst = rows ? fe->g2 : out;
    mech_matmul(x->pool, dst, x->C, fe->hid, x->M, lw->proj_w, x->C, lw->proj_b, nr, x->M, x->C);
    if (rows) scatter(fe->g2, x->C, rows, nr, out);
    fe->macs += 2 * (int64_t)nr * x->C * x->M;
}

// Metric logits of the final residual stream X (BT, C): only the metric's
// rows, through ln_final, and only its columns.
static void unembed(fast_eval *fe, const float *X, float *lg) {
    const acdc_ctx *x = fe->x;
    int C = x->C;
    for (int i = 0; i < x->n_rows; i++)
        memcpy(fe->rows + (size_t)i * C, X + ((size_t)x->row_b[i] * x->T + x->row_t[i]) * C, (size_t)C * sizeof(float));
    const float *in = layer_norm(fe, fe->rows, x->n_rows, x->m->lnf_w, x->m->lnf_b, fe->ln);
    if (x->o->metric == MECH_ACDC_LOGIT_DIFF) {
        for (int i = 0; i < x->n_rows; i++) {
            int b = x->row_b[i];
            const float *r = in + (size_t)i * C;
            for (int j = 0; j < 2; j++) {
                int32_t tok = j ? x->o->wrong[b] : x->o->answer[b];
                const float *u = x->m->unembed + (size_t)tok * C;
                float acc = x->m->unembed_b ? x->m->unembed_b[tok] : 0.0f;
                for (int k = 0; k < C; k++) acc += r[k] * u[k];
                lg[(size_t)i * 2 + j] = acc;
            }
        }
        fe->macs += 2 * (int64_t)x->n_rows * C;
        return;
    }
    // logits^T = W_U[:n_cols] @ rows^T: the few rows are the operand the
    // kernel packs (packing W_U on every call would cost as much as the
    // products), W_U streams through once unpacked.
    int R = x->n_rows;
    mech_matmul_nt(x->pool, fe->lgt, R, x->m->unembed, C, in, C, NULL, x->n_cols, C, R);
    const float *ub = x->m->unembed_b;
    for (int v = 0; v < x->n_cols; v++)
        for (int i = 0; i < R; i++) lg[(size_t)i * x->n_cols + v] = fe->lgt[(size_t)v * R + i] + (ub ? ub[v] : 0.0f);
    fe->macs += (int64_t)x->n_rows * C * x->n_cols;
}

// Gathers head h's columns of a (BT, NH*HS) tensor into (BT, HS).
static void gather_head(const acdc_ctx *x, const float *src, int h, float *dst) {
    for (int i = 0; i < x->BT; i++)
        memcpy(dst + (size_t)i * x->HS, src + (size_t)i * x->A + (size_t)h * x->HS, (size_t)x->HS * sizeof(float));
}

static void sub(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] - b[i];
}

// ---------------------------------------------------------------------------
// The state from the flags

static int edge_present(const fast_eval *fe, int e) { return e >= 0 && fe->x->g->edges[e].present; }

// X[rid] = corr + sum over present edges into node v of D[s], in parent order.
static void build_input(fast_eval *fe, int v, const float *corr, float *X) {
    const acdc_ctx *x = fe->x;
    const mech_acdc_graph *g = x->g;
    memcpy(X, corr, fe->n * sizeof(float));
    for (int e = g->first_in[v]; e < g->first_in[v + 1]; e++) {
        if (!g->edges[e].present) continue;
        const float *d = fe->D[x->slot_of[g->edges[e].sender]];
        for (size_t i = 0; i < fe->n; i++) X[i] += d[i];
        fe->macs += (int64_t)fe->n;
    }
}

// ---------------------------------------------------------------------------
// Needed rows

// Rows of receiver rid that can still reach a metric row (see the top).
static void recv_rows(const fast_eval *fe, int rid, const int **rows, int *nr) {
    const acdc_ctx *x = fe->x;
    int nq = 3 * x->L * x->H;
    if (rid == fe->rid_post) {
        *rows = fe->mrows, *nr = fe->nm;
    } else if (rid >= nq) {
        int s = slot_mlp(x, rid - nq);
        *rows = fe->urows + (size_t)s * x->BT, *nr = fe->nur[s];
    } else if (!edge_present(fe, fe->direct[rid])) {
        *rows = NULL, *nr = 0; // the head reads its corrupted q (k, v)
    } else {
        int hd = rid / 3, s = slot_head(x, hd / x->H, hd % x->H);
        if (rid % 3 == 0) *rows = fe->urows + (size_t)s * x->BT, *nr = fe->nur[s];
        else *rows = fe->kvrows + (size_t)hd * x->BT, *nr = fe->nkv[hd];
    }
}

// Every unit's needed rows from the present edges, top down.
static void compute_needs(fast_eval *fe) {
    const acdc_ctx *x = fe->x;
    const mech_acdc_graph *g = x->g;
    int BT = x->BT, T = x->T;
    for (int s = x->n_send - 1; s >= x->n_embed; s--) {
        memset(fe->mark, 0, (size_t)BT);
        int v = x->send_node[s];
        for (int i = x->out_first[v]; i < x->out_first[v + 1]; i++) {
            const mech_acdc_edge *ed = &g->edges[x->out_edges[i]];
            if (!ed->present || ed->type != MECH_ACDC_ADDITION) continue;
            const int *rows;
            int nr;
            recv_rows(fe, fe->rid_of[ed->receiver], &rows, &nr);
            for (int j = 0; j < nr; j++) fe->mark[rows[j]] = 1;
        }
        int *u = fe->urows + (size_t)s * BT, n = 0;
        for (int r = 0; r < BT; r++)
            if (fe->mark[r]) u[n++] = r;
        fe->nur[s] = n;
        const mech_acdc_node *nd = &g->nodes[v];
        if (nd->kind != MECH_ACDC_RESULT) continue;
        // Keys and values: every position a needed query row attends to.
        int hd = nd->layer * x->H + nd->head, *kv = fe->kvrows + (size_t)hd * BT, nk = 0;
        for (int j = 0; j < n;) {
            int b = u[j] / T, end = 0;
            for (; j < n && u[j] / T == b; j++) end = x->c->causal ? u[j] % T + 1 : T;
            for (int t = 0; t < end; t++) kv[nk++] = b * T + t;
        }
        fe->nkv[hd] = nk;
    }
}

static void rebuild(fast_eval *fe) {
    acdc_ctx *x = fe->x;
    const mech_acdc_graph *g = x->g;
    const mech_model *m = x->m;
    size_t C = (size_t)x->C;
    // Embeddings: fixed, the clean tokens' (the core's embed: wte[id] + wpe[t]).
    for (int i = 0; i < x->BT; i++) {
        const float *e = m->wte + (size_t)x->clean[i] * C, *p = m->wpe + (size_t)(i % x->T) * C;
        float *o0 = fe->O[0] + i * C;
        if (x->n_embed == 2) {
            memcpy(o0, e, C * sizeof(float));
            memcpy(fe->O[1] + i * C, p, C * sizeof(float));
        } else {
            for (size_t k = 0; k < C; k++) o0[k] = e[k] + p[k];
        }
    }
    for (int s = 0; s < x->n_embed; s++) sub(fe->D[s], fe->O[s], x->c_send + (size_t)s * fe->n, fe->n);
    for (int l = 0; l < x->L; l++) {
        const float *cres = x->c_resid + (size_t)l * fe->n;
        for (int h = 0; h < x->H; h++) {
            for (int w = 0; w < 3; w++) {
                int qi = (l * x->H + h) * 3 + w;
                int rid = qi;
                int v = g->edges[fe->direct[qi]].sender; // the q_input node
                build_input(fe, v, cres, fe->X[rid]);
                if (edge_present(fe, fe->direct[qi])) project(fe, l, h, w, fe->X[rid], fe->Q[qi], NULL, x->BT);
                else gather_head(x, x->c_qkv + ((size_t)l * 3 + w) * x->BT * x->A, h, fe->Q[qi]);
            }
            int s = slot_head(x, l, h), qi = (l * x->H + h) * 3;
            attend(fe, l, h, fe->Q[qi], fe->Q[qi + 1], fe->Q[qi + 2], fe->O[s], NULL, x->BT);
            sub(fe->D[s], fe->O[s], x->c_send + (size_t)s * fe->n, fe->n);
        }
        if (!x->c->attn_only) {
            int rid = 3 * x->L * x->H + l, s = slot_mlp(x, l), v = -1;
            for (int u = 0; u < g->n_nodes && v < 0; u++)
                if (fe->rid_of[u] == rid) v = u;
            build_input(fe, v, x->c_mid + (size_t)l * fe->n, fe->X[rid]);
            mlp(fe, l, fe->X[rid], fe->O[s], NULL, x->BT);
            sub(fe->D[s], fe->O[s], x->c_send + (size_t)s * fe->n, fe->n);
        }
    }
    int vpost = -1;
    for (int u = 0; u < g->n_nodes && vpost < 0; u++)
        if (fe->rid_of[u] == fe->rid_post) vpost = u;
    build_input(fe, vpost, x->c_post, fe->X[fe->rid_post]);
    unembed(fe, fe->X[fe->rid_post], fe->lg);
    fe->metric = acdc_metric(x, fe->lg);
    fe->stale = 0;
    compute_needs(fe);
}

// ---------------------------------------------------------------------------
// Trials

static void mark_x(fast_eval *fe, int rid) {
    if (!fe->x_new[rid]) fe->x_new[rid] = 1, fe->list_x[fe->nx++] = rid;
}
static void mark_o(fast_eval *fe, int s) {
    if (!fe->o_new[s]) fe->o_new[s] = 1, fe->list_o[fe->no++] = s;
}
static void mark_q(fast_eval *fe, int qi) {
    if (!fe->q_new[qi]) fe->q_new[qi] = 1, fe->list_q[fe->nq++] = qi;
}

// Xn[rid] = X[rid] + the change of every changed sender with a present edge
// into rid, at rid's needed rows; 0 when none (rid unchanged where it matters).
static int delta_into(fast_eval *fe, int rid) {
    int any = 0, C = fe->x->C, nr;
    const int *rows;
    recv_rows(fe, rid, &rows, &nr);
    if (!nr) return 0;
    const int *eo = fe->edge_of + (size_t)rid * fe->x->n_send;
    for (int i = 0; i < fe->no; i++) {
        int s = fe->list_o[i];
        if (!edge_present(fe, eo[s])) continue;
        float *xn = fe->Xn[rid];
        const float *xo = fe->X[rid];
        if (!any) {
            for (int j = 0; j < nr; j++)
                memcpy(xn + (size_t)rows[j] * C, xo + (size_t)rows[j] * C, (size_t)C * sizeof(float));
            mark_x(fe, rid), any = 1;
        }
        const float *a = fe->On[s], *b = fe->O[s];
        for (int j = 0; j < nr; j++) {
            size_t o = (size_t)rows[j] * C;
            for (int k = 0; k < C; k++) xn[o + k] += a[o + k] - b[o + k];
        }
        fe->macs += (int64_t)nr * C;
    }
    return any;
}

static const float *cur_q(const fast_eval *fe, int qi) { return fe->q_new[qi] ? fe->Qn[qi] : fe->Q[qi]; }

static void head_out(fast_eval *fe, int l, int h) {
    int qi = (l * fe->x->H + h) * 3, s = slot_head(fe->x, l, h);
    if (!fe->nur[s]) return; // read nowhere that matters
    attend(fe, l, h, cur_q(fe, qi), cur_q(fe, qi + 1), cur_q(fe, qi + 2), fe->On[s],
           fe->urows + (size_t)s * fe->x->BT, fe->nur[s]);
    mark_o(fe, s);
}

// Projection w of head (l, h) from Xn at the input's needed rows.
static void reproject(fast_eval *fe, int l, int h, int w) {
    int qi = (l * fe->x->H + h) * 3 + w, nr;
    const int *rows;
    recv_rows(fe, qi, &rows, &nr);
    project(fe, l, h, w, fe->Xn[qi], fe->Qn[qi], rows, nr);
    mark_q(fe, qi);
}

// Recomputes every unit after slot `from` that reads a changed sender, then
// the metric.
static void propagate(fast_eval *fe, int from) {
    const acdc_ctx *x = fe->x;
    int per = x->H + !x->c->attn_only;
    for (int s = from + 1; s < x->n_send && fe->no; s++) {
        int l = (s - x->n_embed) / per, h = (s - x->n_embed) % per;
        if (h < x->H) {
            int changed = 0;
            for (int w = 0; w < 3; w++) {
                int qi = (l * x->H + h) * 3 + w;
                if (!delta_into(fe, qi)) continue;
                reproject(fe, l, h, w);
                changed = 1;
            }
            if (changed) head_out(fe, l, h);
        } else {
            int rid = 3 * x->L * x->H + l;
            if (!delta_into(fe, rid)) continue;
            mlp(fe, l, fe->Xn[rid], fe->On[s], fe->urows + (size_t)s * x->BT, fe->nur[s]);
            mark_o(fe, s);
        }
    }
    if (fe->no && delta_into(fe, fe->rid_post)) {
        unembed(fe, fe->Xn[fe->rid_post], fe->lg_new);
        fe->lg_new_valid = 1;
        fe->metric_new = acdc_metric(x, fe->lg_new);
    } else {
        fe->metric_new = fe->metric;
    }
}

static void clear_trial(fast_eval *fe) {
    for (int i = 0; i < fe->nx; i++) fe->x_new[fe->list_x[i]] = 0;
    for (int i = 0; i < fe->no; i++) fe->o_new[fe->list_o[i]] = 0;
    for (int i = 0; i < fe->nq; i++) fe->q_new[fe->list_q[i]] = 0;
    fe->nx = fe->no = fe->nq = 0;
    fe->lg_new_valid = 0;
}

static mech_status fast_trial(acdc_eval *ev, int e, double *out, mech_err *err) {
    (void)err;
    fast_eval *fe = (fast_eval *)ev;
    acdc_ctx *x = fe->x;
    if (fe->stale) {
        // The replayed decisions are already in the flags but for e.
        x->g->edges[e].present = 1;
        rebuild(fe);
        x->g->edges[e].present = 0;
    }
    int64_t macs0 = fe->macs;
    clear_trial(fe);
    const mech_acdc_edge *ed = &x->g->edges[e];
    int v = ed->receiver;
    const mech_acdc_node *n = &x->g->nodes[v];
    if (ed->type == MECH_ACDC_DIRECT) {
        int qi = fe->qkv_of[v], l = n->layer, h = n->head, w = qi % 3;
        gather_head(x, x->c_qkv + ((size_t)l * 3 + w) * x->BT * x->A, h, fe->Qn[qi]);
        mark_q(fe, qi);
        head_out(fe, l, h);
        propagate(fe, slot_head(x, l, h));
    } else {
        int rid = fe->rid_of[v], s = x->slot_of[ed->sender], nr;
        const int *rows;
        recv_rows(fe, rid, &rows, &nr);
        for (int j = 0; j < nr; j++) {
            size_t o = (size_t)rows[j] * x->C;
            sub(fe->Xn[rid] + o, fe->X[rid] + o, fe->D[s] + o, (size_t)x->C);
        }
        fe->macs += (int64_t)nr * x->C;
        mark_x(fe, rid);
        if (!nr) {
            fe->metric_new = fe->metric; // nothing reads this input where it matters
        } else if (rid == fe->rid_post) {
            unembed(fe, fe->Xn[rid], fe->lg_new);
            fe->lg_new_valid = 1;
            fe->metric_new = acdc_metric(x, fe->lg_new);
        } else if (n->kind == MECH_ACDC_MLP_IN) {
            int so = slot_mlp(x, n->layer);
            mlp(fe, n->layer, fe->Xn[rid], fe->On[so], rows, nr);
            mark_o(fe, so);
            propagate(fe, so);
        } else { // a q/k/v input whose DIRECT edge is present: rid is its (l, h, w) index
            reproject(fe, n->layer, n->head, rid % 3);
            head_out(fe, n->layer, n->head);
            propagate(fe, slot_head(x, n->layer, n->head));
        }
    }
    ev->macs += fe->macs - macs0;
    *out = fe->metric_new;
    return MECH_OK;
}

static void swapf(float **a, float **b) {
    float *t = *a;
    *a = *b;
    *b = t;
}

static void fast_accept(acdc_eval *ev, int e) {
    (void)e;
    fast_eval *fe = (fast_eval *)ev;
    for (int i = 0; i < fe->nx; i++) swapf(&fe->X[fe->list_x[i]], &fe->Xn[fe->list_x[i]]);
    for (int i = 0; i < fe->nq; i++) swapf(&fe->Q[fe->list_q[i]], &fe->Qn[fe->list_q[i]]);
    for (int i = 0; i < fe->no; i++) {
        int s = fe->list_o[i];
        swapf(&fe->O[s], &fe->On[s]);
        sub(fe->D[s], fe->O[s], fe->x->c_send + (size_t)s * fe->n, fe->n);
    }
    if (fe->lg_new_valid) {
        float *t = fe->lg;
        fe->lg = fe->lg_new;
        fe->lg_new = t;
    }
    fe->metric = fe->metric_new;
    clear_trial(fe);
}

static void fast_reject(acdc_eval *ev, int e) {
    (void)e;
    clear_trial((fast_eval *)ev);
}

static void fast_dropped(acdc_eval *ev, int e) {
    (void)e;
    ((fast_eval *)ev)->stale = 1;
}

// The needed rows are refreshed when the search moves on to another layer or
// receiver kind: decisions made since only shrink them.
static void fast_install(acdc_eval *ev, int node) {
    fast_eval *fe = (fast_eval *)ev;
    const mech_acdc_node *n = &fe->x->g->nodes[node];
    int cls = n->kind == MECH_ACDC_RESID_POST ? 0 : n->kind == MECH_ACDC_MLP_IN ? 1 : 2;
    int key = n->layer * 3 + cls;
    if (key == fe->need_key || fe->stale) return;
    compute_needs(fe);
    fe->need_key = key;
}

static void fast_sync(acdc_eval *ev) {
    fast_eval *fe = (fast_eval *)ev;
    int64_t macs0 = fe->macs;
    rebuild(fe);
    fe->need_key = -1; // install() recomputes the needed rows for its receiver
    ev->macs += fe->macs - macs0;
}

static mech_status fast_metric(acdc_eval *ev, double *out, mech_err *err) {
    (void)err;
    fast_eval *fe = (fast_eval *)ev;
    if (fe->stale) rebuild(fe);
    *out = fe->metric;
    return MECH_OK;
}

static void fast_free(acdc_eval *ev) {
    fast_eval *fe = (fast_eval *)ev;
    if (!fe) return;
    for (size_t i = 0; i < sizeof fe->mem / sizeof *fe->mem; i++) mech_free_aligned(fe->mem[i]);
    mech_free(fe->X), mech_free(fe->Xn), mech_free(fe->O), mech_free(fe->On), mech_free(fe->D);
    mech_free(fe->Q), mech_free(fe->Qn);
    mech_free(fe->edge_of), mech_free(fe->direct), mech_free(fe->rid_of), mech_free(fe->qkv_of);
    mech_free(fe->x_new), mech_free(fe->o_new), mech_free(fe->q_new);
    mech_free(fe->list_x), mech_free(fe->list_o), mech_free(fe->list_q);
    mech_free(fe->lg), mech_free(fe->lg_new);
    mech_free(fe->urows), mech_free(fe->nur), mech_free(fe->kvrows), mech_free(fe->nkv), mech_free(fe->mrows);
    mech_free(fe->mark);
    mech_free(fe);
}

// Pointers p[0..k) into one aligned block of k arrays of len floats (kept in
// fe->mem for freeing).
static float **arrays(fast_eval *fe, int *slot, int k, size_t len) {
    float **p = mech_calloc((size_t)(k ? k : 1), sizeof *p);
    float *blk = mech_malloc_aligned((size_t)(k ? k : 1) * len * sizeof(float));
    fe->mem[(*slot)++] = blk;
    if (!p || !blk) {
        mech_free(p);
        return NULL;
    }
    for (int i = 0; i < k; i++) p[i] = blk + (size_t)i * len;
    return p;
}

mech_status acdc_eval_fast_new(acdc_ctx *x, acdc_eval **out, mech_err *err) {
    *out = NULL;
    const mech_acdc_graph *g = x->g;
    fast_eval *fe = mech_calloc(1, sizeof *fe);
    if (!fe) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    fe->ev = (acdc_eval){fast_install, fast_metric, fast_trial, fast_accept, fast_reject, fast_dropped, fast_sync, fast_free, 0};
    fe->x = x;
    fe->n = (size_t)x->BT * x->C;
    int nq = x->L * x->H * 3, ms = 0;
    fe->n_recv = nq + x->L + 1;
    fe->rid_post = nq + x->L;
    fe->X = arrays(fe, &ms, fe->n_recv, fe->n);
    fe->Xn = arrays(fe, &ms, fe->n_recv, fe->n);
    fe->O = arrays(fe, &ms, x->n_send, fe->n);
    fe->On = arrays(fe, &ms, x->n_send, fe->n);
    fe->D = arrays(fe, &ms, x->n_send, fe->n);
    fe->Q = arrays(fe, &ms, nq, (size_t)x->BT * x->HS);
    fe->Qn = arrays(fe, &ms, nq, (size_t)x->BT * x->HS);
    fe->mem[ms++] = fe->ln = mech_malloc_aligned(((size_t)x->BT > (size_t)x->n_rows ? (size_t)x->BT : (size_t)x->n_rows) * x->C * sizeof(float));
    fe->mem[ms++] = fe->z = mech_malloc_aligned((size_t)x->BT * x->HS * sizeof(float));
    fe->mem[ms++] = fe->s = mech_malloc_aligned((size_t)x->T * x->T * sizeof(float));
    fe->mem[ms++] = fe->hid = mech_malloc_aligned((size_t)x->BT * (x->M ? x->M : 1) * sizeof(float));
    fe->mem[ms++] = fe->rows = mech_malloc_aligned((size_t)x->n_rows * x->C * sizeof(float));
    fe->mem[ms++] = fe->lgt = mech_malloc_aligned((size_t)x->n_rows * x->n_cols * sizeof(float));
    fe->mem[ms++] = fe->g1 = mech_malloc_aligned(fe->n * sizeof(float));
    fe->mem[ms++] = fe->g2 = mech_malloc_aligned(fe->n * sizeof(float));
    fe->urows = mech_malloc((size_t)x->n_send * x->BT * sizeof(int));
    fe->nur = mech_calloc((size_t)x->n_send, sizeof(int));
    fe->kvrows = mech_malloc((size_t)x->L * x->H * x->BT * sizeof(int));
    fe->nkv = mech_calloc((size_t)x->L * x->H, sizeof(int));
    fe->mrows = mech_malloc((size_t)x->n_rows * sizeof(int));
    fe->mark = mech_malloc((size_t)x->BT);
    fe->need_key = -1;
    fe->edge_of = mech_malloc((size_t)fe->n_recv * x->n_send * sizeof(int));
    fe->direct = mech_malloc((size_t)nq * sizeof(int));
    fe->rid_of = mech_malloc((size_t)g->n_nodes * sizeof(int));
    fe->qkv_of = mech_malloc((size_t)g->n_nodes * sizeof(int));
    fe->x_new = mech_calloc((size_t)fe->n_recv, 1);
    fe->o_new = mech_calloc((size_t)x->n_send, 1);
    fe->q_new = mech_calloc((size_t)nq, 1);
    fe->list_x = mech_malloc((size_t)fe->n_recv * sizeof(int));
    fe->list_o = mech_malloc((size_t)x->n_send * sizeof(int));
    fe->list_q = mech_malloc((size_t)nq * sizeof(int));
    fe->lg = mech_malloc((size_t)x->n_rows * x->n_cols * sizeof(float));
    fe->lg_new = mech_malloc((size_t)x->n_rows * x->n_cols * sizeof(float));
    int ok = fe->X && fe->Xn && fe->O && fe->On && fe->D && fe->Q && fe->Qn && fe->ln && fe->z && fe->s && fe->hid &&
             fe->rows && fe->edge_of && fe->direct && fe->rid_of && fe->qkv_of && fe->x_new && fe->o_new && fe->q_new &&
             fe->list_x && fe->list_o && fe->list_q && fe->lg && fe->lg_new && fe->lgt && fe->g1 && fe->g2 &&
             fe->urows && fe->nur && fe->kvrows && fe->nkv && fe->mrows && fe->mark;
    if (!ok) {
        fast_free(&fe->ev);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the fast ACDC evaluator (B=%d, T=%d)", x->B, x->T);
    }
    for (size_t i = 0; i < (size_t)fe->n_recv * x->n_send; i++) fe->edge_of[i] = -1;
    for (int v = 0; v < g->n_nodes; v++) {
        const mech_acdc_node *nd = &g->nodes[v];
        fe->rid_of[v] = fe->qkv_of[v] = -1;
        if (nd->kind >= MECH_ACDC_Q_INPUT && nd->kind <= MECH_ACDC_V_INPUT)
            fe->rid_of[v] = (nd->layer * x->H + nd->head) * 3 + (int)(nd->kind - MECH_ACDC_Q_INPUT);
        else if (nd->kind == MECH_ACDC_MLP_IN) fe->rid_of[v] = nq + nd->layer;
        else if (nd->kind == MECH_ACDC_RESID_POST) fe->rid_of[v] = fe->rid_post;
        else if (nd->kind >= MECH_ACDC_Q && nd->kind <= MECH_ACDC_V)
            fe->qkv_of[v] = (nd->layer * x->H + nd->head) * 3 + (int)(nd->kind - MECH_ACDC_Q);
    }
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *ed = &g->edges[e];
        if (ed->type == MECH_ACDC_ADDITION)
            fe->edge_of[(size_t)fe->rid_of[ed->receiver] * x->n_send + x->slot_of[ed->sender]] = e;
        else if (ed->type == MECH_ACDC_DIRECT)
            fe->direct[fe->qkv_of[ed->receiver]] = e;
    }
    fe->nm = x->n_rows;
    for (int i = 0; i < x->n_rows; i++) fe->mrows[i] = x->row_b[i] * x->T + x->row_t[i];
    fe->stale = 1;
    *out = &fe->ev;
    return MECH_OK;
}
