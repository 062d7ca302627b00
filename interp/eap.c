/*
** interp/eap.c: edge attribution patching (Syed, Rager, Conmy 2023) on the
** ACDC graph (interp/acdc_graph.c; docs/eap.md).
**
** The score of an ADDITION edge u -> v is the first-order estimate of the
** metric's change when v reads u's corrupted output instead of its clean one:
**   sum over rows, positions and d_model of (a_u(corrupt) - a_u(clean)) * dm/d(input of v)
** with the gradient taken on the clean run. The metric is a batch mean, so
** the sum over rows is already the mean over prompts. A DIRECT edge
** q_input[h] -> q[h] (k, v alike) carries the head's q: its score is
** (q(corrupt) - q(clean)) . dm/dq. PLACEHOLDER edges get 0.
**
** Cost: one corrupted forward, one clean forward in grad mode, one backward,
** then one matrix product per layer: the receivers of layer l (their
** gradients, one row of B*T*C each) against the output differences of every
** sender before them.
*/
#include "interp/interp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct eap_ctx {
    const mech_model *m;
    int B, T, L, H, C, HS, n_embed;
    size_t K;        // B*T*C: one sender's (or receiver's) row
    int n_send;      // senders: the embeddings, then per layer its heads and its MLP
    int rows_layer;  // receivers packed per layer: q/k/v inputs (3H) then mlp_in
    float *diff;     // [n_send, K] corrupted - clean sender outputs
    float *grad;     // [L * rows_layer + 1, K] receiver gradients; the last row resid_post
    float *qkv_diff; // [L, 3, B*T*NH*HS] corrupted - clean q, k, v
} eap_ctx;

// Slot of a sender node in diff (forward order, as the graph numbers them).
static int sender_slot(const eap_ctx *x, const mech_acdc_node *n) {
    int per = x->H + !x->m->cfg.attn_only;
    switch (n->kind) {
    case MECH_ACDC_EMBED: return 0;
    case MECH_ACDC_POS_EMBED: return 1;
    case MECH_ACDC_RESULT: return x->n_embed + n->layer * per + n->head;
    case MECH_ACDC_MLP_OUT: return x->n_embed + n->layer * per + x->H;
    default: return -1;
    }
}

// Row of a receiver node in grad.
static int receiver_row(const eap_ctx *x, const mech_acdc_node *n) {
    size_t base = (size_t)n->layer * x->rows_layer;
    switch (n->kind) {
    case MECH_ACDC_Q_INPUT: return (int)base + n->head;
    case MECH_ACDC_K_INPUT: return (int)base + x->H + n->head;
    case MECH_ACDC_V_INPUT: return (int)base + 2 * x->H + n->head;
    case MECH_ACDC_MLP_IN: return (int)base + 3 * x->H;
    case MECH_ACDC_RESID_POST: return x->L * x->rows_layer;
    default: return -1;
    }
}

// Copies head h of a [B, T, NH, C] tensor into a [B*T, C] row.
static void take_head(float *dst, const float *src, int BT, int H, int h, int C) {
    for (int i = 0; i < BT; i++)
        memcpy(dst + (size_t)i * C, src + ((size_t)i * H + h) * C, (size_t)C * sizeof(float));
}

// The sender outputs of the run's last forward into diff (sign -1: subtract
// them, for the clean run; +1: store them, for the corrupted run).
static void gather_senders(eap_ctx *x, const mech_run *r, int sign, float *tmp) {
    size_t K = x->K;
    char name[64];
    int per = x->H + !x->m->cfg.attn_only;
    const char *embeds[2] = {x->n_embed == 2 ? "hook_embed" : "blocks.0.hook_resid_pre", "hook_pos_embed"};
    for (int s = 0; s < x->n_send; s++) {
        const float *src;
        if (s < x->n_embed) {
            src = mech_run_get(r, embeds[s])->data;
        } else {
            int l = (s - x->n_embed) / per, j = (s - x->n_embed) % per;
            if (j < x->H) {
                snprintf(name, sizeof name, "blocks.%d.attn.hook_result", l);
                take_head(tmp, mech_run_get(r, name)->data, x->B * x->T, x->H, j, x->C);
                src = tmp;
            } else {
                snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", l);
                src = mech_run_get(r, name)->data;
            }
        }
        float *d = x->diff + (size_t)s * K;
        if (sign > 0)
            memcpy(d, src, K * sizeof(float));
        else
            for (size_t i = 0; i < K; i++) d[i] -= src[i];
    }
    size_t A = (size_t)x->B * x->T * x->H * x->HS;
    static const char *const qkv[3] = {"q", "k", "v"};
    for (int l = 0; l < x->L; l++)
        for (int w = 0; w < 3; w++) {
            snprintf(name, sizeof name, "blocks.%d.attn.hook_%s", l, qkv[w]);
            const float *src = mech_run_get(r, name)->data;
            float *d = x->qkv_diff + ((size_t)l * 3 + w) * A;
            if (sign > 0)
                memcpy(d, src, A * sizeof(float));
            else
                for (size_t i = 0; i < A; i++) d[i] -= src[i];
        }
}

static mech_status cache_all(mech_run *r, int attn_only, int n_embed, mech_err *err) {
    mech_status rc;
    if ((rc = mech_run_cache(r, n_embed == 2 ? "hook_embed" : "blocks.0.hook_resid_pre", err))) return rc;
    if (n_embed == 2 && (rc = mech_run_cache(r, "hook_pos_embed", err))) return rc;
    if ((rc = mech_run_cache(r, "blocks.*.attn.hook_result", err)) || (rc = mech_run_cache(r, "blocks.*.attn.hook_q", err)) ||
        (rc = mech_run_cache(r, "blocks.*.attn.hook_k", err)) || (rc = mech_run_cache(r, "blocks.*.attn.hook_v", err)))
        return rc;
    if (!attn_only && (rc = mech_run_cache(r, "blocks.*.hook_mlp_out", err))) return rc;
    return MECH_OK;
}

mech_status mech_eap_scores(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean,
                            const int32_t *corrupt, int B, int T, const mech_metric *mt, int threads,
                            double *scores, double *value, mech_err *err) {
    if (!m || !g || !clean || !corrupt || !mt || !scores || B < 1 || T < 1)
        return mech_err_set(err, MECH_ERR_ARG, "EAP: model, graph, inputs, metric and scores are required");
    const mech_config *c = &m->cfg;
    if (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->attn_only != !!c->attn_only)
        return mech_err_set(err, MECH_ERR_ARG, "EAP: the graph was built for another model shape");
    eap_ctx x = {.m = m, .B = B, .T = T, .L = c->n_layers, .H = c->n_heads, .C = c->d_model,
                 .HS = c->d_head, .n_embed = g->split_embed ? 2 : 1};
    x.K = (size_t)B * T * x.C;
    x.n_send = x.n_embed + x.L * (x.H + !c->attn_only);
    x.rows_layer = 3 * x.H + !c->attn_only;
    size_t A = (size_t)B * T * x.H * x.HS;
    size_t n_rows = (size_t)x.L * x.rows_layer + 1;
    mech_run *r = NULL;
    mech_pool *pool = NULL;
    float *tmp = NULL, *prod = NULL;
    mech_status rc = MECH_OK;
    x.diff = mech_malloc_aligned((size_t)x.n_send * x.K * sizeof(float));
    x.grad = mech_malloc_aligned(n_rows * x.K * sizeof(float));
    x.qkv_diff = mech_malloc_aligned((size_t)x.L * 3 * A * sizeof(float));
    tmp = mech_malloc_aligned(x.K * sizeof(float));
    prod = mech_malloc_aligned(n_rows * (size_t)x.n_send * sizeof(float));
    if (!x.diff || !x.grad || !x.qkv_diff || !tmp || !prod) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for EAP (B=%d, T=%d)", B, T);
        goto done;
    }
    if ((rc = mech_run_new(m, B, T, &r, err))) goto done;
    if (threads > 0 && (rc = mech_run_set_threads(r, threads, err))) goto done;
    if ((rc = cache_all(r, c->attn_only, x.n_embed, err))) goto done;
    // The corrupted run needs only the senders: no unembedding.
    mech_run_opts upto = {.stop_layer = x.L};
    if ((rc = mech_run_forward_ex(r, corrupt, &upto, err))) goto done;
    gather_senders(&x, r, +1, tmp);

    // The clean run, differentiated at every receiver input and at q, k, v.
    if ((rc = mech_run_enable_grad(r, MECH_GRAD_ACTS, err))) goto done;
    static const char *const grads[] = {"blocks.*.hook_q_input", "blocks.*.hook_k_input", "blocks.*.hook_v_input",
                                        "blocks.*.attn.hook_q", "blocks.*.attn.hook_k", "blocks.*.attn.hook_v"};
    for (size_t i = 0; i < sizeof grads / sizeof *grads; i++)
        if ((rc = mech_run_cache_grad(r, grads[i], err))) goto done;
    if (!c->attn_only && (rc = mech_run_cache_grad(r, "blocks.*.hook_mlp_in", err))) goto done;
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.hook_resid_post", x.L - 1);
    if ((rc = mech_run_cache_grad(r, name, err))) goto done;
    if ((rc = mech_run_forward(r, clean, err))) goto done;
    gather_senders(&x, r, -1, tmp);
    if ((rc = mech_run_backward(r, mt, value, err))) goto done;

    // Pack the receiver gradients, layer by layer.
    static const char *const ins[3] = {"q_input", "k_input", "v_input"};
    for (int l = 0; l < x.L; l++) {
        float *row = x.grad + (size_t)l * x.rows_layer * x.K;
        for (int w = 0; w < 3; w++) {
            snprintf(name, sizeof name, "blocks.%d.hook_%s", l, ins[w]);
            const float *src = mech_run_grad(r, name)->data; // (B, T, NH, C)
            for (int h = 0; h < x.H; h++) take_head(row + (size_t)(w * x.H + h) * x.K, src, B * T, x.H, h, x.C);
        }
        if (!c->attn_only) {
            snprintf(name, sizeof name, "blocks.%d.hook_mlp_in", l);
            memcpy(row + (size_t)3 * x.H * x.K, mech_run_grad(r, name)->data, x.K * sizeof(float));
        }
    }
    snprintf(name, sizeof name, "blocks.%d.hook_resid_post", x.L - 1);
    memcpy(x.grad + (n_rows - 1) * x.K, mech_run_grad(r, name)->data, x.K * sizeof(float));

    // prod[row, s] = grad[row] . diff[s] for the senders each layer's
    // receivers can read: those before the layer, plus its own heads (for
    // mlp_in; the q/k/v rows' products with them are computed and unused).
    pool = mech_pool_new(threads);
    int per = x.H + !c->attn_only;
    for (int l = 0; l <= x.L; l++) {
        int M = l < x.L ? x.rows_layer : 1;
        int N = l < x.L ? x.n_embed + l * per + x.H : x.n_send;
        if (N > x.n_send) N = x.n_send;
        size_t r0 = (size_t)l * x.rows_layer;
        mech_matmul_nt(pool, prod + r0 * x.n_send, x.n_send, x.grad + r0 * x.K, (int)x.K, x.diff, (int)x.K, NULL, M,
                       (int)x.K, N);
    }

    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *ed = &g->edges[e];
        const mech_acdc_node *sn = &g->nodes[ed->sender], *rn = &g->nodes[ed->receiver];
        scores[e] = 0;
        if (ed->type == MECH_ACDC_ADDITION) {
            scores[e] = prod[(size_t)receiver_row(&x, rn) * x.n_send + sender_slot(&x, sn)];
        } else if (ed->type == MECH_ACDC_DIRECT) {
            int w = rn->kind - MECH_ACDC_Q, l = rn->layer, h = rn->head;
            snprintf(name, sizeof name, "blocks.%d.attn.hook_%s", l, w == 0 ? "q" : w == 1 ? "k" : "v");
            const float *gq = mech_run_grad(r, name)->data; // (B, T, NH, HS)
            const float *dq = x.qkv_diff + ((size_t)l * 3 + w) * A;
            double s = 0;
            for (int i = 0; i < B * T; i++) {
                size_t o = ((size_t)i * x.H + h) * x.HS;
                for (int k = 0; k < x.HS; k++) s += (double)dq[o + k] * gq[o + k];
            }
            scores[e] = s;
        }
    }

done:
    mech_pool_free(pool);
    mech_run_free(r);
    mech_free_aligned(x.diff);
    mech_free_aligned(x.grad);
    mech_free_aligned(x.qkv_diff);
    mech_free_aligned(tmp);
    mech_free_aligned(prod);
    return rc;
}

// ---------------------------------------------------------------------------
// Circuits from scores

// |score| of counted edges, largest first (ties: graph order), for top-n.
typedef struct ranked {
    double a;
    int e;
} ranked;

static int by_abs_desc(const void *pa, const void *pb) {
    const ranked *a = pa, *b = pb;
    if (a->a != b->a) return a->a > b->a ? -1 : 1;
    return a->e - b->e;
}

mech_status mech_eap_select(mech_acdc_graph *g, const double *scores, int top_n, double threshold, mech_err *err) {
    ranked *r = mech_malloc((size_t)g->n_edges * sizeof *r);
    if (!r) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the EAP ranking");
    int n = 0;
    for (int e = 0; e < g->n_edges; e++) {
        mech_acdc_edge *x = &g->edges[e];
        x->effect = x->type == MECH_ACDC_PLACEHOLDER ? NAN : scores[e];
        if (x->type == MECH_ACDC_PLACEHOLDER) continue;
        x->present = 0;
        r[n++] = (ranked){fabs(scores[e]), e};
    }
    // A score of 0 is no evidence for an edge (a saturated nonlinearity
    // gives many of them): such edges are never kept.
    if (top_n >= 0) {
        qsort(r, (size_t)n, sizeof *r, by_abs_desc);
        for (int i = 0; i < n && i < top_n; i++) g->edges[r[i].e].present = r[i].a > 0;
    } else {
        for (int i = 0; i < n; i++) g->edges[r[i].e].present = r[i].a > 0 && r[i].a >= threshold;
    }
    mech_free(r);
    return MECH_OK;
}

double mech_eap_auc(const mech_acdc_graph *g, const double *scores, const uint8_t *truth) {
    int n = 0, n_true = 0;
    ranked *r = mech_malloc((size_t)g->n_edges * sizeof *r);
    mech_acdc_roc_point *pts = mech_malloc(((size_t)g->n_edges + 1) * sizeof *pts);
    if (!r || !pts) {
        mech_free(r);
        mech_free(pts);
        return NAN;
    }
    for (int e = 0; e < g->n_edges; e++) {
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
        r[n++] = (ranked){fabs(scores[e]), e};
        n_true += truth[e] != 0;
    }
    qsort(r, (size_t)n, sizeof *r, by_abs_desc);
    // One point per distinct |score|: the circuit of every edge at least that large.
    int n_pts = 0, tp = 0, fp = 0, n_false = n - n_true;
    for (int i = 0; i < n; i++) {
        if (truth[r[i].e]) tp++;
        else fp++;
        if (i + 1 < n && r[i + 1].a == r[i].a) continue;
        pts[n_pts++] = (mech_acdc_roc_point){n_false ? (double)fp / n_false : 0, n_true ? (double)tp / n_true : 0};
    }
    double auc = mech_acdc_auc(pts, n_pts);
    mech_free(r);
    mech_free(pts);
    return auc;
}
