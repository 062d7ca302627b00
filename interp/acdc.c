/*
** interp/acdc.c: the ACDC search (Conmy et al. 2023), step for step as the
** reference's TLACDCExperiment.step / increment_current_node
** (ArthurConmy/Automatic-Circuit-Discovery; docs/acdc.md).
**
** The search visits the graph's nodes in reverse topological order (the
** reverse of hook firing order): resid_post, then per layer from the top
** mlp_out, mlp_in, hook_result, hook_v, hook_k, hook_q, hook_v_input,
** hook_k_input, hook_q_input (heads n_heads-1..0), the embeddings last. A node with no present outgoing
** edge (but the embeddings, and the first node) is skipped and loses its
** incoming edges untried. At a visited node every present counted incoming
** edge is tried in the reference's parent order (by sender hook name, latest
** layer first): remove it, evaluate the metric, keep it removed when
** (after - before) < tau (|.| with abs_value), moving the baseline to after;
** else restore it.
**
** Two evaluators give the metric of a graph state:
**   naive (here): one full forward pass per evaluation through the public
**     hook API, receivers rebuilt from the corrupted cache and the senders'
**     live outputs exactly as the reference's hooks do; the oracle.
**   fast (interp/acdc_eval.c): recomputes only what a trial changes.
** Both see the same corrupted cache, made here from one core forward pass.
**
** Invariant: the graph's present flags are the state; an evaluator only
** mirrors them, so a run stopped after any trial can resume from the flags
** and the trial list (opts.replay).
*/
#include "interp/acdc_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Metric

double acdc_metric(const acdc_ctx *x, const float *lg) {
    int n = x->n_rows, nc = x->n_cols;
    double acc = 0;
    switch (x->o->metric) {
    case MECH_ACDC_KL:
        // F.kl_div(log_softmax(cur), base_logprobs, log_target=True).sum(-1)
        // = sum_v p_base (log p_base - log p_cur), averaged over the rows.
        for (int i = 0; i < n; i++) {
            const float *row = lg + (size_t)i * nc;
            const double *base = x->base + (size_t)i * nc;
            double mx = -INFINITY, s = 0, kl = 0;
            for (int v = 0; v < nc; v++) mx = row[v] > mx ? row[v] : mx;
            for (int v = 0; v < nc; v++) s += exp((double)row[v] - mx);
            double lse = mx + log(s);
            for (int v = 0; v < nc; v++) {
                double lb = base[v];
                if (lb > -INFINITY) kl += exp(lb) * (lb - ((double)row[v] - lse));
            }
            acc += kl;
        }
        return acc / n;
    case MECH_ACDC_LOGIT_DIFF:
        for (int i = 0; i < n; i++) acc += (double)lg[(size_t)i * 2] - (double)lg[(size_t)i * 2 + 1];
        return -acc / n;
    case MECH_ACDC_L2:
        for (int i = 0; i < n; i++)
            for (int v = 0; v < nc; v++) {
                double d = (double)lg[(size_t)i * nc + v] - x->base[(size_t)i * nc + v];
                acc += d * d;
            }
        return acc / ((double)n * nc); // the reference's l2_metric: a mean over rows and outputs
    }
    return NAN;
}

// Compact metric columns of full logits (B, T, V).
static void compact_logits(const acdc_ctx *x, const float *logits, float *out) {
    int V = x->c->d_vocab;
    for (int i = 0; i < x->n_rows; i++) {
        const float *row = logits + ((size_t)x->row_b[i] * x->T + x->row_t[i]) * V;
        float *o = out + (size_t)i * x->n_cols;
        if (x->o->metric == MECH_ACDC_LOGIT_DIFF) {
            o[0] = row[x->o->answer[x->row_b[i]]];
            o[1] = row[x->o->wrong[x->row_b[i]]];
        } else {
            memcpy(o, row, (size_t)x->n_cols * sizeof(float));
        }
    }
}

int64_t acdc_forward_macs(const acdc_ctx *x) {
    int64_t BT = x->BT, C = x->C, A = x->A, per = 0;
    per += 3 * BT * C * A + BT * A * C;                 // q, k, v, output projection
    per += 2 * (int64_t)x->B * x->H * x->T * x->T * x->HS; // scores and pattern @ v
    if (!x->c->attn_only) per += 2 * BT * C * x->M;     // MLP
    return per * x->L + BT * C * x->c->d_vocab;         // + unembedding
}

// ---------------------------------------------------------------------------
// Context: senders, outgoing edges, corrupted cache, metric rows

static int zero_hook(mech_tensor *t, int layer, void *user) {
    (void)layer, (void)user;
    memset(t->data, 0, mech_tensor_numel(t) * sizeof(float));
    return 0;
}

// torch's CPU generator (a 32-bit mt19937 seeded by torch.manual_seed) and
// its randperm (aten randperm_cpu: a forward Fisher-Yates, z = random() % (n - i)).
void mech_acdc_torch_randperm(uint64_t seed, int n, int32_t *out) {
    uint32_t mt[624];
    int k = 624;
    mt[0] = (uint32_t)seed;
    for (int i = 1; i < 624; i++) mt[i] = 1812433253u * (mt[i - 1] ^ (mt[i - 1] >> 30)) + (uint32_t)i;
    for (int i = 0; i < n; i++) out[i] = i;
    for (int i = 0; i < n - 1; i++) {
        if (k == 624) { // regenerate the state
            for (int j = 0; j < 624; j++) {
                uint32_t y = (mt[j] & 0x80000000u) | (mt[(j + 1) % 624] & 0x7fffffffu);
                mt[j] = mt[(j + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
            }
            k = 0;
        }
        uint32_t y = mt[k++];
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c5680u;
        y ^= (y << 15) & 0xefc60000u;
        y ^= y >> 18;
        int z = (int)(y % (uint32_t)(n - i));
        int32_t t = out[i];
        out[i] = out[z + i], out[z + i] = t;
    }
}

// The reference's Tracr tasks scramble positions in the corrupted pass:
// hook_pos_embed row t becomes row perm[t] (the same for every sequence).
static int permute_pos_hook(mech_tensor *t, int layer, void *user) {
    (void)layer;
    const acdc_ctx *x = user;
    size_t C = (size_t)x->C;
    float *tmp = mech_malloc((size_t)x->T * C * sizeof(float));
    if (!tmp) return 1;
    for (int b = 0; b < x->B; b++) {
        float *rows = t->data + (size_t)b * x->T * C;
        memcpy(tmp, rows, (size_t)x->T * C * sizeof(float));
        for (int i = 0; i < x->T; i++) memcpy(rows + (size_t)i * C, tmp + (size_t)x->o->pos_perm[i] * C, C * sizeof(float));
    }
    mech_free(tmp);
    return 0;
}

static void ctx_free(acdc_ctx *x) {
    mech_free(x->send_node);
    mech_free(x->slot_of);
    mech_free(x->out_first);
    mech_free(x->out_edges);
    mech_free_aligned(x->c_send);
    mech_free_aligned(x->c_resid);
    mech_free_aligned(x->c_mid);
    mech_free_aligned(x->c_post);
    mech_free_aligned(x->c_qkv);
    mech_free(x->row_b);
    mech_free(x->row_t);
    mech_free(x->base);
    mech_pool_free(x->pool);
}

static mech_status ctx_graph(acdc_ctx *x, mech_err *err) {
    mech_acdc_graph *g = x->g;
    x->n_send = x->n_embed + x->L * (x->H + !x->c->attn_only);
    x->send_node = mech_calloc((size_t)x->n_send, sizeof(int));
    x->slot_of = mech_malloc((size_t)g->n_nodes * sizeof(int));
    x->out_first = mech_calloc((size_t)g->n_nodes + 1, sizeof(int));
    x->out_edges = mech_malloc((size_t)(g->n_edges ? g->n_edges : 1) * sizeof(int));
    if (!x->send_node || !x->slot_of || !x->out_first || !x->out_edges)
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the ACDC search");
    for (int v = 0; v < g->n_nodes; v++) x->slot_of[v] = -1;
    int per = x->H + !x->c->attn_only;
    for (int v = 0; v < g->n_nodes; v++) {
        const mech_acdc_node *n = &g->nodes[v];
        int s = -1;
        if (n->kind == MECH_ACDC_EMBED) s = 0;
        else if (n->kind == MECH_ACDC_POS_EMBED) s = 1;
        else if (n->kind == MECH_ACDC_RESULT) s = x->n_embed + n->layer * per + n->head;
        else if (n->kind == MECH_ACDC_MLP_OUT) s = x->n_embed + n->layer * per + x->H;
        if (s >= 0) {
            x->slot_of[v] = s;
            x->send_node[s] = v;
        }
    }
    for (int e = 0; e < g->n_edges; e++) x->out_first[g->edges[e].sender + 1]++;
    for (int v = 0; v < g->n_nodes; v++) x->out_first[v + 1] += x->out_first[v];
    int *fill = mech_calloc((size_t)g->n_nodes, sizeof(int));
    if (!fill) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the ACDC search");
    for (int e = 0; e < g->n_edges; e++) {
        int s = g->edges[e].sender;
        x->out_edges[x->out_first[s] + fill[s]++] = e;
    }
    mech_free(fill);
    return MECH_OK;
}

// One forward pass on the corrupted inputs (or, under zero ablation, with
// every residual writer zeroed) keeping what the receivers and the DIRECT
// edges fall back to.
static mech_status ctx_corrupted(acdc_ctx *x, const int32_t *corrupt, mech_err *err) {
    const mech_config *c = x->c;
    size_t n = (size_t)x->BT * x->C;
    x->c_send = mech_malloc_aligned((size_t)x->n_send * n * sizeof(float));
    x->c_resid = mech_malloc_aligned((size_t)x->L * n * sizeof(float));
    x->c_post = mech_malloc_aligned(n * sizeof(float));
    x->c_qkv = mech_malloc_aligned((size_t)x->L * 3 * x->BT * x->A * sizeof(float));
    if (!c->attn_only) x->c_mid = mech_malloc_aligned((size_t)x->L * n * sizeof(float));
    if (!x->c_send || !x->c_resid || !x->c_post || !x->c_qkv || (!c->attn_only && !x->c_mid))
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the corrupted cache (B=%d, T=%d)", x->B, x->T);
    mech_run *r = NULL;
    mech_status rc = mech_run_new(x->m, x->B, x->T, &r, err);
    if (rc) return rc;
    if (x->o->threads > 0 && (rc = mech_run_set_threads(r, x->o->threads, err))) goto done;
    int zero = x->o->ablation == MECH_ACDC_ZERO;
    const char *embeds = x->n_embed == 2 ? "hook_*embed" : "blocks.0.hook_resid_pre";
    if ((rc = mech_run_cache(r, x->n_embed == 2 ? "hook_embed" : "blocks.0.hook_resid_pre", err))) goto done;
    if (x->n_embed == 2 && (rc = mech_run_cache(r, "hook_pos_embed", err))) goto done;
    if ((rc = mech_run_cache(r, "blocks.*.hook_resid_pre", err)) || (rc = mech_run_cache(r, "blocks.*.attn.hook_result", err)) ||
        (rc = mech_run_cache(r, "blocks.*.attn.hook_q", err)) || (rc = mech_run_cache(r, "blocks.*.attn.hook_k", err)) ||
        (rc = mech_run_cache(r, "blocks.*.attn.hook_v", err)) || (rc = mech_run_cache(r, "blocks.*.hook_resid_post", err)))
        goto done;
    if (!c->attn_only && ((rc = mech_run_cache(r, "blocks.*.hook_resid_mid", err)) ||
                          (rc = mech_run_cache(r, "blocks.*.hook_mlp_out", err))))
        goto done;
    if (zero) {
        if ((rc = mech_run_hook(r, embeds, zero_hook, NULL, err)) ||
            (rc = mech_run_hook(r, "blocks.*.attn.hook_result", zero_hook, NULL, err)))
            goto done;
        if (!c->attn_only && (rc = mech_run_hook(r, "blocks.*.hook_mlp_out", zero_hook, NULL, err))) goto done;
    }
    if (!zero && x->n_embed == 2 && x->o->pos_perm &&
        (rc = mech_run_hook(r, "hook_pos_embed", permute_pos_hook, x, err)))
        goto done;
    if ((rc = mech_run_forward(r, zero ? x->clean : corrupt, err))) goto done;
    char name[64];
    const mech_tensor *t;
    if (x->n_embed == 2) {
        memcpy(x->c_send, mech_run_get(r, "hook_embed")->data, n * sizeof(float));
        memcpy(x->c_send + n, mech_run_get(r, "hook_pos_embed")->data, n * sizeof(float));
    } else {
        memcpy(x->c_send, mech_run_get(r, "blocks.0.hook_resid_pre")->data, n * sizeof(float));
    }
    for (int l = 0; l < x->L; l++) {
        snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
        memcpy(x->c_resid + (size_t)l * n, mech_run_get(r, name)->data, n * sizeof(float));
        snprintf(name, sizeof name, "blocks.%d.attn.hook_result", l);
        t = mech_run_get(r, name); // (B, T, NH, C)
        for (int h = 0; h < x->H; h++) {
            float *dst = x->c_send + (size_t)(x->n_embed + l * (x->H + !c->attn_only) + h) * n;
            for (int i = 0; i < x->BT; i++)
                memcpy(dst + (size_t)i * x->C, t->data + ((size_t)i * x->H + h) * x->C, (size_t)x->C * sizeof(float));
        }
        static const char *const qkv[3] = {"q", "k", "v"};
        for (int w = 0; w < 3; w++) {
            snprintf(name, sizeof name, "blocks.%d.attn.hook_%s", l, qkv[w]);
            memcpy(x->c_qkv + ((size_t)l * 3 + w) * x->BT * x->A, mech_run_get(r, name)->data,
                   (size_t)x->BT * x->A * sizeof(float));
        }
        if (!c->attn_only) {
            snprintf(name, sizeof name, "blocks.%d.hook_resid_mid", l);
            memcpy(x->c_mid + (size_t)l * n, mech_run_get(r, name)->data, n * sizeof(float));
            snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", l);
            memcpy(x->c_send + (size_t)(x->n_embed + l * (x->H + 1) + x->H) * n, mech_run_get(r, name)->data,
                   n * sizeof(float));
        }
    }
    snprintf(name, sizeof name, "blocks.%d.hook_resid_post", x->L - 1);
    memcpy(x->c_post, mech_run_get(r, name)->data, n * sizeof(float));
done:
    mech_run_free(r);
    return rc;
}

// Metric rows and the full model's reference values there.
static mech_status ctx_metric(acdc_ctx *x, mech_err *err) {
    const mech_acdc_opts *o = x->o;
    int V = x->c->d_vocab;
    x->row_b = mech_malloc((size_t)x->BT * sizeof(int));
    x->row_t = mech_malloc((size_t)x->BT * sizeof(int));
    if (!x->row_b || !x->row_t) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int b = 0; b < x->B; b++)
        for (int t = 0; t < x->T; t++) {
            int use;
            if (o->metric == MECH_ACDC_KL) use = o->mask ? o->mask[b * x->T + t] != 0 : t == x->T - 1;
            else if (o->metric == MECH_ACDC_L2) use = t >= 1;
            else use = t == x->T - 1;
            if (use) {
                x->row_b[x->n_rows] = b;
                x->row_t[x->n_rows++] = t;
            }
        }
    if (!x->n_rows)
        return mech_err_set(err, MECH_ERR_ARG, o->metric == MECH_ACDC_L2 ? "ACDC: the L2 metric needs at least 2 positions"
                                                                         : "ACDC: the metric mask selects no position");
    x->n_cols = o->metric == MECH_ACDC_LOGIT_DIFF ? 2 : o->metric == MECH_ACDC_L2 && o->n_out > 0 ? o->n_out : V;
    if (o->metric == MECH_ACDC_LOGIT_DIFF) {
        if (!o->answer || !o->wrong) return mech_err_set(err, MECH_ERR_ARG, "ACDC: logit_diff needs answer and wrong tokens");
        for (int b = 0; b < x->B; b++)
            if (o->answer[b] < 0 || o->answer[b] >= V || o->wrong[b] < 0 || o->wrong[b] >= V)
                return mech_err_set(err, MECH_ERR_RANGE, "ACDC: answer/wrong token of sequence %d outside the vocabulary of %d",
                                    b + 1, V);
        return MECH_OK;
    }
    if (o->n_out > V) return mech_err_set(err, MECH_ERR_RANGE, "ACDC: n_out %d exceeds the %d logits", o->n_out, V);
    // The full model, no hook: what KL and L2 compare against.
    mech_run *r = NULL;
    mech_status rc = mech_run_new(x->m, x->B, x->T, &r, err);
    if (rc) return rc;
    float *lg = mech_malloc((size_t)x->n_rows * x->n_cols * sizeof(float));
    x->base = mech_malloc((size_t)x->n_rows * x->n_cols * sizeof(double));
    if (!lg || !x->base) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    if (x->o->threads > 0 && (rc = mech_run_set_threads(r, x->o->threads, err))) goto done;
    if ((rc = mech_run_forward(r, x->clean, err))) goto done;
    compact_logits(x, mech_run_logits(r), lg);
    for (int i = 0; i < x->n_rows; i++) {
        const float *row = lg + (size_t)i * x->n_cols;
        double *base = x->base + (size_t)i * x->n_cols;
        if (o->metric == MECH_ACDC_L2) {
            for (int v = 0; v < x->n_cols; v++) base[v] = row[v];
            continue;
        }
        double mx = -INFINITY, s = 0;
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) s += exp((double)row[v] - mx);
        double lse = mx + log(s);
        for (int v = 0; v < V; v++) base[v] = (double)row[v] - lse;
    }
done:
    mech_free(lg);
    mech_run_free(r);
    return rc;
}

// ---------------------------------------------------------------------------
// The naive evaluator: a full forward per evaluation through the hook API.
// Sender hooks record live outputs; receiver hooks (once installed) rebuild
// their input as C[r] + sum over present edges of (O[s] - C[s]), in the
// graph's parent order, as the reference's receiver hooks do.

typedef struct naive_eval {
    acdc_eval ev;
    acdc_ctx *x;
    mech_run *run;
    float *live;      // [n_send][BT*C] O[s] of the current forward
    float *lg;        // [n_rows][n_cols]
    char *installed;  // [n_nodes]
    int *qkv_node;    // [L][3][H] node of q_input..v_input (slot 0..2) and hook_q..v (3..5): [L][6][H]
    int *mlp_in_node; // [L]
    int post_node;
} naive_eval;

static void naive_build(naive_eval *ne, int v, float *dst, size_t stride_rows, const float *corr) {
    // dst row i (C floats, rows stride_rows floats apart) = C[v] + sum (O - C)
    acdc_ctx *x = ne->x;
    const mech_acdc_graph *g = x->g;
    size_t n = (size_t)x->BT * x->C;
    for (int i = 0; i < x->BT; i++) memcpy(dst + (size_t)i * stride_rows, corr + (size_t)i * x->C, (size_t)x->C * sizeof(float));
    for (int e = g->first_in[v]; e < g->first_in[v + 1]; e++) {
        if (!g->edges[e].present) continue;
        int s = x->slot_of[g->edges[e].sender];
        const float *O = ne->live + (size_t)s * n, *Cs = x->c_send + (size_t)s * n;
        for (int i = 0; i < x->BT; i++) {
            float *d = dst + (size_t)i * stride_rows;
            const float *a = O + (size_t)i * x->C, *b = Cs + (size_t)i * x->C;
            for (int k = 0; k < x->C; k++) d[k] += a[k] - b[k];
        }
    }
}

static int naive_hook_embed(mech_tensor *t, int layer, void *user) {
    naive_eval *ne = user;
    int slot = strcmp(t->name, "hook_pos_embed") == 0 ? 1 : 0;
    (void)layer;
    memcpy(ne->live + (size_t)slot * ne->x->BT * ne->x->C, t->data, (size_t)ne->x->BT * ne->x->C * sizeof(float));
    return 0;
}

static int naive_hook_result(mech_tensor *t, int layer, void *user) {
    naive_eval *ne = user;
    acdc_ctx *x = ne->x;
    size_t n = (size_t)x->BT * x->C;
    for (int h = 0; h < x->H; h++) {
        float *dst = ne->live + (size_t)(x->n_embed + layer * (x->H + !x->c->attn_only) + h) * n;
        for (int i = 0; i < x->BT; i++)
            memcpy(dst + (size_t)i * x->C, t->data + ((size_t)i * x->H + h) * x->C, (size_t)x->C * sizeof(float));
    }
    return 0;
}

static int naive_hook_mlp_out(mech_tensor *t, int layer, void *user) {
    naive_eval *ne = user;
    acdc_ctx *x = ne->x;
    size_t n = (size_t)x->BT * x->C;
    memcpy(ne->live + (size_t)(x->n_embed + layer * (x->H + 1) + x->H) * n, t->data, n * sizeof(float));
    return 0;
}

static int naive_hook_qkv_input(mech_tensor *t, int layer, void *user) {
    naive_eval *ne = user;
    acdc_ctx *x = ne->x;
    int w = strstr(t->name, "hook_q_input") ? 0 : strstr(t->name, "hook_k_input") ? 1 : 2;
    for (int h = 0; h < x->H; h++) {
        int v = ne->qkv_node[((size_t)layer * 6 + w) * x->H + h];
        if (ne->installed[v])
            naive_build(ne, v, t->data + (size_t)h * x->C, (size_t)x->H * x->C, x->c_resid + (size_t)layer * x->BT * x->C);
    }
    return 0;
}

static int naive_hook_qkv(mech_tensor *t, int layer, void *user) {
    // DIRECT receivers: a head whose q_input -> q edge is absent uses the corrupted q.
    naive_eval *ne = user;
    acdc_ctx *x = ne->x;
    const mech_acdc_graph *g = x->g;
    const char *last = strrchr(t->name, '_');
    int w = last[1] == 'q' ? 0 : last[1] == 'k' ? 1 : 2;
    const float *corr = x->c_qkv + ((size_t)layer * 3 + w) * x->BT * x->A;
    for (int h = 0; h < x->H; h++) {
        int v = ne->qkv_node[((size_t)layer * 6 + 3 + w) * x->H + h];
        if (!ne->installed[v] || g->edges[g->first_in[v]].present) continue;
        for (int i = 0; i < x->BT; i++)
            memcpy(t->data + (size_t)i * x->A + (size_t)h * x->HS, corr + (size_t)i * x->A + (size_t)h * x->HS,
                   (size_t)x->HS * sizeof(float));
    }
    return 0;
}

static int naive_hook_mlp_in(mech_tensor *t, int layer, void *user) {
    naive_eval *ne = user;
    int v = ne->mlp_in_node[layer];
    if (ne->installed[v]) naive_build(ne, v, t->data, (size_t)ne->x->C, ne->x->c_mid + (size_t)layer * ne->x->BT * ne->x->C);
    return 0;
}

static int naive_hook_post(mech_tensor *t, int layer, void *user) {
    naive_eval *ne = user;
    if (layer == ne->x->L - 1 && ne->installed[ne->post_node]) naive_build(ne, ne->post_node, t->data, (size_t)ne->x->C, ne->x->c_post);
    return 0;
}

static void naive_install(acdc_eval *ev, int node) { ((naive_eval *)ev)->installed[node] = 1; }

static mech_status naive_metric(acdc_eval *ev, double *out, mech_err *err) {
    naive_eval *ne = (naive_eval *)ev;
    mech_status rc = mech_run_forward(ne->run, ne->x->clean, err);
    if (rc) return rc;
    compact_logits(ne->x, mech_run_logits(ne->run), ne->lg);
    *out = acdc_metric(ne->x, ne->lg);
    return MECH_OK;
}

static mech_status naive_trial(acdc_eval *ev, int e, double *out, mech_err *err) {
    (void)e;
    ev->macs += acdc_forward_macs(((naive_eval *)ev)->x);
    return naive_metric(ev, out, err);
}

static void naive_noop(acdc_eval *ev, int e) { (void)ev, (void)e; }
static void naive_sync(acdc_eval *ev) { (void)ev; } // every evaluation is a whole forward pass already

static void naive_free(acdc_eval *ev) {
    naive_eval *ne = (naive_eval *)ev;
    if (!ne) return;
    mech_run_free(ne->run);
    mech_free_aligned(ne->live);
    mech_free(ne->lg);
    mech_free(ne->installed);
    mech_free(ne->qkv_node);
    mech_free(ne->mlp_in_node);
    mech_free(ne);
}

static mech_status naive_new(acdc_ctx *x, acdc_eval **out, mech_err *err) {
    *out = NULL;
    const mech_acdc_graph *g = x->g;
    naive_eval *ne = mech_calloc(1, sizeof *ne);
    if (!ne) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    ne->ev = (acdc_eval){naive_install, naive_metric, naive_trial, naive_noop, naive_noop, naive_noop, naive_sync, naive_free, 0};
    ne->x = x;
    mech_status rc = MECH_OK;
    ne->live = mech_malloc_aligned((size_t)x->n_send * x->BT * x->C * sizeof(float));
    ne->lg = mech_malloc((size_t)x->n_rows * x->n_cols * sizeof(float));
    ne->installed = mech_calloc((size_t)g->n_nodes, 1);
    ne->qkv_node = mech_calloc((size_t)x->L * 6 * x->H, sizeof(int));
    ne->mlp_in_node = mech_calloc((size_t)x->L, sizeof(int));
    if (!ne->live || !ne->lg || !ne->installed || !ne->qkv_node || !ne->mlp_in_node) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for the naive ACDC evaluator");
        goto fail;
    }
    for (int v = 0; v < g->n_nodes; v++) {
        const mech_acdc_node *n = &g->nodes[v];
        if (n->kind >= MECH_ACDC_Q_INPUT && n->kind <= MECH_ACDC_V)
            ne->qkv_node[((size_t)n->layer * 6 + (n->kind - MECH_ACDC_Q_INPUT)) * x->H + n->head] = v;
        else if (n->kind == MECH_ACDC_MLP_IN) ne->mlp_in_node[n->layer] = v;
        else if (n->kind == MECH_ACDC_RESID_POST) ne->post_node = v;
    }
    if ((rc = mech_run_new(x->m, x->B, x->T, &ne->run, err))) goto fail;
    if (x->o->threads > 0 && (rc = mech_run_set_threads(ne->run, x->o->threads, err))) goto fail;
    mech_run *r = ne->run;
    // Senders first: each records its live output before any later receiver reads it.
    if ((rc = mech_run_hook(r, x->n_embed == 2 ? "hook_embed" : "blocks.0.hook_resid_pre", naive_hook_embed, ne, err)))
        goto fail;
    if (x->n_embed == 2 && (rc = mech_run_hook(r, "hook_pos_embed", naive_hook_embed, ne, err))) goto fail;
    if ((rc = mech_run_hook(r, "blocks.*.attn.hook_result", naive_hook_result, ne, err))) goto fail;
    if (!x->c->attn_only && (rc = mech_run_hook(r, "blocks.*.hook_mlp_out", naive_hook_mlp_out, ne, err))) goto fail;
    if ((rc = mech_run_hook(r, "blocks.*.hook_q_input", naive_hook_qkv_input, ne, err)) ||
        (rc = mech_run_hook(r, "blocks.*.hook_k_input", naive_hook_qkv_input, ne, err)) ||
        (rc = mech_run_hook(r, "blocks.*.hook_v_input", naive_hook_qkv_input, ne, err)) ||
        (rc = mech_run_hook(r, "blocks.*.attn.hook_q", naive_hook_qkv, ne, err)) ||
        (rc = mech_run_hook(r, "blocks.*.attn.hook_k", naive_hook_qkv, ne, err)) ||
        (rc = mech_run_hook(r, "blocks.*.attn.hook_v", naive_hook_qkv, ne, err)))
        goto fail;
    if (!x->c->attn_only && (rc = mech_run_hook(r, "blocks.*.hook_mlp_in", naive_hook_mlp_in, ne, err))) goto fail;
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.hook_resid_post", x->L - 1);
    if ((rc = mech_run_hook(r, name, naive_hook_post, ne, err))) goto fail;
    *out = &ne->ev;
    return MECH_OK;
fail:
    naive_free(&ne->ev);
    return rc;
}

// ---------------------------------------------------------------------------
// The search

// The reference's node order (reverse hook order), heads n_heads-1..0 (its
// indices_mode reorders only a receiver's senders).
static int visit_order(const acdc_ctx *x, int *order) {
    const mech_acdc_graph *g = x->g;
    int n = 0, L = x->L, H = x->H;
    // Node indices by (layer, kind[, head]) from the graph itself.
    for (int v = 0; v < g->n_nodes; v++)
        if (g->nodes[v].kind == MECH_ACDC_RESID_POST) order[n++] = v;
    static const mech_acdc_node_kind head_kinds[7] = {MECH_ACDC_RESULT, MECH_ACDC_V, MECH_ACDC_K, MECH_ACDC_Q,
                                                      MECH_ACDC_V_INPUT, MECH_ACDC_K_INPUT, MECH_ACDC_Q_INPUT};
    for (int l = L - 1; l >= 0; l--) {
        for (int want = MECH_ACDC_MLP_OUT; want >= 0; want = want == MECH_ACDC_MLP_OUT ? (int)MECH_ACDC_MLP_IN : -1)
            for (int v = 0; v < g->n_nodes; v++)
                if (g->nodes[v].layer == l && (int)g->nodes[v].kind == want) order[n++] = v;
        for (int k = 0; k < 7; k++)
            for (int i = 0; i < H; i++) {
                int h = H - 1 - i; // heads_ascending reorders senders only, as the reference's indices_mode
                for (int v = 0; v < g->n_nodes; v++)
                    if (g->nodes[v].layer == l && g->nodes[v].head == h && g->nodes[v].kind == head_kinds[k]) {
                        order[n++] = v;
                        break;
                    }
            }
    }
    for (int v = g->n_nodes - 1; v >= 0; v--)
        if (g->nodes[v].kind == MECH_ACDC_POS_EMBED) order[n++] = v;
    for (int v = g->n_nodes - 1; v >= 0; v--)
        if (g->nodes[v].kind == MECH_ACDC_EMBED) order[n++] = v;
    return n;
}

static int has_present_out(const acdc_ctx *x, int v) {
    for (int i = x->out_first[v]; i < x->out_first[v + 1]; i++)
        if (x->g->edges[x->out_edges[i]].present) return 1;
    return 0;
}

static int same_sender_name(const mech_acdc_graph *g, int e1, int e2) {
    const mech_acdc_node *a = &g->nodes[g->edges[e1].sender], *b = &g->nodes[g->edges[e2].sender];
    return a->kind == b->kind && a->layer == b->layer;
}

typedef struct search {
    acdc_ctx *x;
    acdc_eval *ev;
    mech_acdc_result *res;
    int64_t replayed;      // replay records consumed
    // Replayed trials before `silent` are applied from their records without
    // evaluating; those from `silent` on (the last receiver group the replay
    // reaches into) are evaluated again from the group's sync, so that the
    // evaluator's state is exactly the uninterrupted run's (acdc_int.h, sync).
    int64_t silent;
    int last_key;          // group of the receiver visited last (-1: none)
    double cur;
    double *t0;            // the run's start (moved back by a resume's recorded time)
    double last_progress;
    mech_acdc_progress prog;
} search;

// Receivers come in the groups the evaluator syncs at: a layer's
// resid_post, its mlp_in, its attention inputs (q/k/v inputs and the DIRECT
// q/k/v nodes).
static int group_key(const mech_acdc_graph *g, int v) {
    const mech_acdc_node *n = &g->nodes[v];
    int cls = n->kind == MECH_ACDC_RESID_POST ? 0 : n->kind == MECH_ACDC_MLP_IN ? 1 : 2;
    return n->layer * 3 + cls;
}

static void report(search *s, int force) {
    const mech_acdc_opts *o = s->x->o;
    if (!o->progress) return;
    double t = mech_now();
    if (!force && t - s->last_progress < 0.25) return;
    s->last_progress = t;
    s->prog.seconds = t - *s->t0;
    o->progress(&s->prog, o->user);
}

// cur = metric of the current graph, unless a silent replay is running (the
// value is then taken from the replayed trials).
static mech_status refresh_cur(search *s, mech_err *err) {
    if (s->replayed < s->silent) return MECH_OK;
    return s->ev->metric(s->ev, &s->cur, err);
}

static mech_status try_edge(search *s, int e, mech_err *err) {
    acdc_ctx *x = s->x;
    const mech_acdc_opts *o = x->o;
    mech_acdc_edge *ed = &x->g->edges[e];
    mech_acdc_trial t = {.edge = e};
    const mech_acdc_trial *r = s->replayed < o->n_replay ? &o->replay[s->replayed] : NULL;
    if (r && r->edge != e)
        return mech_err_set(err, MECH_ERR_ARG,
                            "replay: trial %lld is edge %d but the search is at edge %d (%s -> %s); "
                            "was it recorded with another model, graph or options?",
                            (long long)s->replayed + 1, r->edge, e, x->g->nodes[ed->sender].name,
                            x->g->nodes[ed->receiver].name);
    if (r && s->replayed < s->silent) {
        s->replayed++;
        ed->effect = r->after - r->before;
        if (r->removed) {
            ed->present = 0;
            s->ev->dropped(s->ev, e);
            s->prog.edges_removed++;
            s->cur = r->after;
        } else {
            s->cur = r->before;
        }
        // the cost so far, as the stopped run counted it
        if (s->replayed == s->silent) s->ev->macs = r->macs, *s->t0 = mech_now() - r->seconds;
        return MECH_OK;
    }
    if (o->cancel && *o->cancel) return mech_err_set(err, MECH_ERR_CANCELLED, "ACDC cancelled after %lld trials", (long long)s->prog.trials);
    t.before = s->cur;
    ed->present = 0;
    mech_status rc = s->ev->trial(s->ev, e, &t.after, err);
    if (rc) {
        ed->present = 1;
        return rc;
    }
    double d = t.after - t.before;
    ed->effect = d;
    if (o->abs_value) d = fabs(d);
    t.removed = d < o->tau;
    if (r && t.removed != r->removed)
        return mech_err_set(err, MECH_ERR_ARG,
                            "replay: trial %lld (%s -> %s) was decided '%s' but is '%s' now (effect %.9g); "
                            "was it recorded with another model, data or options?",
                            (long long)s->replayed + 1, x->g->nodes[ed->sender].name, x->g->nodes[ed->receiver].name,
                            r->removed ? "removed" : "kept", t.removed ? "removed" : "kept", t.after - t.before);
    if (t.removed) {
        s->cur = t.after;
        s->ev->accept(s->ev, e);
        s->prog.edges_removed++;
    } else {
        ed->present = 1;
        s->ev->reject(s->ev, e);
    }
    s->prog.trials++;
    report(s, 0);
    if (r) { // evaluated again, already recorded
        s->replayed++;
        return MECH_OK;
    }
    t.macs = s->ev->macs;
    t.seconds = mech_now() - *s->t0;
    s->res->n_trials++;
    if (o->on_trial && o->on_trial(&t, o->user))
        return mech_err_set(err, MECH_ERR_CANCELLED, "ACDC stopped by the trial callback after %lld trials",
                            (long long)s->prog.trials);
    return MECH_OK;
}

// One visited node: every present counted incoming edge, by sender name.
static mech_status visit(search *s, int v, mech_err *err) {
    acdc_ctx *x = s->x;
    const mech_acdc_graph *g = x->g;
    int first = g->first_in[v], end = g->first_in[v + 1];
    if (first == end || g->edges[first].type == MECH_ACDC_PLACEHOLDER) return MECH_OK; // nothing to try
    int key = group_key(g, v);
    if (key != s->last_key) {
        s->last_key = key;
        if (s->replayed >= s->silent) s->ev->sync(s->ev);
    }
    // The reference measures the baseline, then installs the receiver hook.
    mech_status rc = refresh_cur(s, err);
    if (rc) return rc;
    s->ev->install(s->ev, v);
    for (int a = first; a < end;) {
        int b = a + 1;
        while (b < end && same_sender_name(g, a, b)) b++;
        for (int i = 0; i < b - a; i++) {
            int e = x->o->heads_ascending ? b - 1 - i : a + i;
            if (!g->edges[e].present || g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
            if ((rc = try_edge(s, e, err))) return rc;
        }
        if ((rc = refresh_cur(s, err))) return rc; // the reference's forward after each sender name
        a = b;
    }
    return MECH_OK;
}

mech_status mech_acdc_run(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T,
                          const mech_acdc_opts *o, mech_acdc_graph *g, mech_acdc_result *res, mech_err *err) {
    mech_acdc_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    if (!m || !clean || !o || !g) return mech_err_set(err, MECH_ERR_ARG, "mech_acdc_run: model, tokens, options and graph are required");
    const mech_config *c = &m->cfg;
    if (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->attn_only != !!c->attn_only)
        return mech_err_set(err, MECH_ERR_ARG, "ACDC: the graph is for %d layers x %d heads%s, the model has %d x %d%s",
                            g->n_layers, g->n_heads, g->attn_only ? " (attention only)" : "", c->n_layers, c->n_heads,
                            c->attn_only ? " (attention only)" : "");
    if (B < 1 || T < 1) return mech_err_set(err, MECH_ERR_ARG, "ACDC: batch %d x %d tokens: both must be >= 1", B, T);
    if (o->ablation == MECH_ACDC_RESAMPLE && !corrupt)
        return mech_err_set(err, MECH_ERR_ARG, "ACDC: resample ablation needs corrupted inputs");
    if (isnan(o->tau)) return mech_err_set(err, MECH_ERR_ARG, "ACDC: tau is NaN");
    if (o->n_replay < 0 || (o->n_replay > 0 && !o->replay)) return mech_err_set(err, MECH_ERR_ARG, "ACDC: bad replay list");
    double t0 = mech_now();
    acdc_ctx x = {.m = m, .c = c, .g = g, .o = o, .clean = clean, .B = B, .T = T, .BT = B * T, .C = c->d_model,
                  .L = c->n_layers, .H = c->n_heads, .HS = c->d_head, .A = c->n_heads * c->d_head,
                  .M = c->attn_only ? 0 : c->d_mlp, .n_embed = g->split_embed ? 2 : 1};
    acdc_eval *ev = NULL;
    int *order = NULL;
    mech_status rc;
    if (T > c->n_ctx) {
        rc = mech_err_set(err, MECH_ERR_RANGE, "ACDC: %d tokens exceed the model's context of %d", T, c->n_ctx);
        goto done;
    }
    for (int i = 0; i < B * T; i++)
        if (clean[i] < 0 || clean[i] >= c->d_vocab || (corrupt && (corrupt[i] < 0 || corrupt[i] >= c->d_vocab))) {
            rc = mech_err_set(err, MECH_ERR_RANGE, "ACDC: token id at sequence %d, position %d is outside the vocabulary of %d",
                              i / T + 1, i % T + 1, c->d_vocab);
            goto done;
        }
    if ((rc = ctx_graph(&x, err)) || (rc = ctx_metric(&x, err)) || (rc = ctx_corrupted(&x, corrupt, err))) goto done;
    if (!o->naive) {
        x.pool = mech_pool_new(o->threads > 0 ? o->threads : 0);
        if (!x.pool) {
            rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for a thread pool");
            goto done;
        }
    }
    rc = o->naive ? naive_new(&x, &ev, err) : acdc_eval_fast_new(&x, &ev, err);
    if (rc) goto done;
    order = mech_malloc((size_t)g->n_nodes * sizeof(int));
    if (!order) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
        goto done;
    }
    int n_order = visit_order(&x, order);
    // Edges absent from the start (a prefilter) are ablated from the first
    // evaluation: their receivers build their inputs from their present
    // edges now, not only once the search reaches them (the fast evaluator
    // builds every input from the flags anyway).
    for (int v = 0; v < g->n_nodes; v++)
        for (int e = g->first_in[v]; e < g->first_in[v + 1]; e++)
            if (!g->edges[e].present && g->edges[e].type != MECH_ACDC_PLACEHOLDER) {
                ev->install(ev, v);
                break;
            }
    search s = {.x = &x, .ev = ev, .res = res, .t0 = &t0, .last_key = -1, .cur = NAN};
    for (int i = 0; i < o->n_replay; i++) {
        int e = o->replay[i].edge;
        if (e < 0 || e >= g->n_edges) {
            rc = mech_err_set(err, MECH_ERR_ARG, "replay: trial %d names edge %d; the graph has %d", i + 1, e,
                              g->n_edges);
            goto done;
        }
        if (i == 0 || group_key(g, g->edges[e].receiver) != group_key(g, g->edges[o->replay[i - 1].edge].receiver))
            s.silent = i;
    }
    for (int i = 0; i < n_order; i++) {
        int v = order[i], a = g->first_in[v], b = g->first_in[v + 1];
        if (a < b && g->edges[a].type != MECH_ACDC_PLACEHOLDER) s.prog.receivers_total++;
    }
    // (every visit measures its own baseline: the first one is the full graph's)
    for (int i = 0; !rc && i < n_order; i++) {
        int v = order[i];
        const mech_acdc_node *n = &g->nodes[v];
        int counted = g->first_in[v] < g->first_in[v + 1] && g->edges[g->first_in[v]].type != MECH_ACDC_PLACEHOLDER;
        if (i > 0 && n->kind != MECH_ACDC_EMBED && n->kind != MECH_ACDC_POS_EMBED && !has_present_out(&x, v)) {
            // Disconnected: nothing downstream reads it, so its inputs go
            // untried (and the evaluators need not hear of it: no present
            // edge reads this node's value, now or later).
            for (int e = g->first_in[v]; e < g->first_in[v + 1]; e++)
                if (g->edges[e].present) {
                    g->edges[e].present = 0;
                    if (g->edges[e].type != MECH_ACDC_PLACEHOLDER) s.prog.edges_removed++;
                }
        } else {
            rc = visit(&s, v, err);
        }
        if (counted) s.prog.receivers_done++;
        report(&s, 0);
    }
    if (!rc && s.replayed < o->n_replay)
        rc = mech_err_set(err, MECH_ERR_ARG, "replay: %d trials given but the search made only %lld", o->n_replay,
                          (long long)s.replayed);
    if (!rc) rc = ev->metric(ev, &res->metric_final, err);
    report(&s, 1);
done:
    res->macs = ev ? ev->macs : 0;
    res->seconds = mech_now() - t0;
    if (ev) ev->free(ev);
    mech_free(order);
    ctx_free(&x);
    return rc;
}

// ---------------------------------------------------------------------------
// Prefilter: EAP's ranking decides which edges ACDC tries

mech_status mech_acdc_eap_scores(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean,
                                 const int32_t *corrupt, int B, int T, const mech_acdc_opts *o, double *scores,
                                 mech_err *err) {
    if (!m || !g || !clean || !o || !scores)
        return mech_err_set(err, MECH_ERR_ARG, "mech_acdc_eap_scores: model, graph, tokens, options and scores are required");
    if (o->ablation != MECH_ACDC_RESAMPLE || !corrupt)
        return mech_err_set(err, MECH_ERR_ARG, "EAP scores resample ablation: it needs the corrupted inputs");
    // (o->pos_perm is not applied: EAP's corrupted run reads the corrupted
    // tokens as they are, so positional edges score what the tokens alone
    // change; the prefilter is a ranking, ACDC itself still shuffles.)
    if (B < 1 || T < 1) return mech_err_set(err, MECH_ERR_ARG, "EAP: batch %d x %d tokens: both must be >= 1", B, T);
    if (o->metric == MECH_ACDC_LOGIT_DIFF) {
        // At the full model, as EAP: the gradient on the clean run (the sign
        // of ACDC's -logit_diff does not change |score|).
        mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -1, .answer = o->answer, .wrong = o->wrong};
        return mech_eap_scores(m, g, clean, corrupt, B, T, &mt, o->threads, scores, NULL, err);
    }
    // KL and L2 to the full model are at their minimum on the clean run, so
    // their gradient there, and every EAP score, is 0. The gradient of the
    // KL to the clean run is taken on the corrupted run instead, with the
    // clean and corrupted roles swapped: score = (clean - corrupted sender
    // output) . d KL / d(receiver input) at the corrupted run.
    mech_run *r = NULL;
    mech_status rc = mech_run_new(m, B, T, &r, err);
    if (!rc && o->threads > 0) rc = mech_run_set_threads(r, o->threads, err);
    if (!rc) rc = mech_run_forward(r, clean, err);
    if (!rc) {
        int all = o->metric == MECH_ACDC_L2 || o->mask; // L2 reads every position but the first
        mech_metric mt = {.kind = MECH_METRIC_KL, .pos = all ? MECH_POS_ALL : -1, .ref_logits = mech_run_logits(r)};
        rc = mech_eap_scores(m, g, corrupt, clean, B, T, &mt, o->threads, scores, NULL, err);
    }
    mech_run_free(r);
    return rc;
}

typedef struct ranked {
    double score;
    int edge;
} ranked;

static int by_score(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return (x->edge > y->edge) - (x->edge < y->edge);
}

mech_status mech_acdc_prefilter(mech_acdc_graph *g, const double *scores, int keep, int *rank, mech_err *err) {
    if (!g || !scores) return mech_err_set(err, MECH_ERR_ARG, "mech_acdc_prefilter: graph and scores are required");
    if (keep < 0) return mech_err_set(err, MECH_ERR_ARG, "prefilter: keep %d edges: must be >= 0", keep);
    ranked *r = mech_malloc((size_t)(g->n_edges ? g->n_edges : 1) * sizeof *r);
    if (!r) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    int n = 0;
    for (int e = 0; e < g->n_edges; e++) {
        if (rank) rank[e] = -1;
        if (g->edges[e].type == MECH_ACDC_PLACEHOLDER) continue;
        double a = fabs(scores[e]);
        r[n++] = (ranked){isnan(a) ? 0 : a, e};
    }
    qsort(r, (size_t)n, sizeof *r, by_score);
    for (int i = 0; i < n; i++) {
        if (rank) rank[r[i].edge] = i;
        if (i >= keep) g->edges[r[i].edge].present = 0;
    }
    mech_free(r);
    return MECH_OK;
}

// ---------------------------------------------------------------------------
// The context alone, for evaluating given circuits outside the search
// (interp/faithfulness.c): the same graph tables, metric rows and corrupted
// cache the search uses.

mech_status acdc_ctx_open(acdc_ctx *x, const mech_model *m, mech_acdc_graph *g, const mech_acdc_opts *o,
                          const int32_t *clean, const int32_t *corrupt, int B, int T, mech_err *err) {
    const mech_config *c = &m->cfg;
    *x = (acdc_ctx){.m = m, .c = c, .g = g, .o = o, .clean = clean, .B = B, .T = T, .BT = B * T, .C = c->d_model,
                    .L = c->n_layers, .H = c->n_heads, .HS = c->d_head, .A = c->n_heads * c->d_head,
                    .M = c->attn_only ? 0 : c->d_mlp, .n_embed = g->split_embed ? 2 : 1};
    mech_status rc;
    if ((rc = ctx_graph(x, err)) || (rc = ctx_metric(x, err)) || (rc = ctx_corrupted(x, corrupt, err))) return rc;
    x->pool = mech_pool_new(o->threads > 0 ? o->threads : 0);
    return x->pool ? MECH_OK : mech_err_set(err, MECH_ERR_NOMEM, "out of memory for a thread pool");
}

void acdc_ctx_close(acdc_ctx *x) { ctx_free(x); }
