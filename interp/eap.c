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
** sender before them, made right after the backward layer by layer (one
** layer's gradients packed at a time).
**
** The variants of Hanna et al. 2024 (mech_eap_method) take the mean of the
** gradients over several passes (EAP-IG: with the inputs, or one sender
** group's activations, interpolated from corrupted to clean by forward
** hooks; clean-corrupted: both ends). The products are linear in the
** gradients, so each pass's products are summed instead of its gradients.
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
    size_t A;        // B*T*NH*HS: one layer's q (k, v)
    int n_send;      // senders: the embeddings, then per layer its heads and its MLP
    int rows_layer;  // receivers packed per layer: q/k/v inputs (3H) then mlp_in
    int n_rows;      // L * rows_layer + 1 (the last row resid_post)
    float *diff;     // [n_send, K] corrupted - clean sender outputs
    float *grad;     // [rows_layer, K] one layer's receiver gradients (resid_post: one row)
    float *qkv_diff; // [L, 3, A] corrupted - clean q, k, v
    float *z_diff;   // [L, A] corrupted - clean z (the heads' outputs before W_O)
    float *gq;       // [L, 3, A] gradients at q, k, v, summed likewise
    double *prod;    // [n_rows, n_send] grad . diff, summed over the method's passes
    float *part;     // [n_chunks, rows_layer, n_send] partial products (contract)
    int n_chunks;
    int s0, s1;      // the senders the passes being run score (absorb)
    double time[4];  // seconds: corrupted forward, clean forwards, backwards, the rest (mech_eap_opts.timing)
    double *direct;  // [L, 3, H] DIRECT edges' (q(corrupt) - q(clean)) . dm/dq
    mech_pool *pool;
    // The interpolation the variants' forward hooks apply: the activations of
    // `group` (-1: none; EAP_INPUT, or per layer l: EAP_QKV(l), EAP_HEADS(l),
    // EAP_MLP(l)) become clean + keep * (corrupt - clean), keep = 1 - alpha.
    int group;
    float keep;
} eap_ctx;

enum { EAP_INPUT = 0 };
#define EAP_QKV(l) (1 + 3 * (l))
#define EAP_HEADS(l) (2 + 3 * (l))
#define EAP_MLP(l) (3 + 3 * (l))

static int slot_head(const eap_ctx *x, int l, int h) { return x->n_embed + l * (x->H + !x->m->cfg.attn_only) + h; }
static int slot_mlp(const eap_ctx *x, int l) { return x->n_embed + l * (x->H + 1) + x->H; }

// Slot of a sender node in diff (forward order, as the graph numbers them).
static int sender_slot(const eap_ctx *x, const mech_acdc_node *n) {
    switch (n->kind) {
    case MECH_ACDC_EMBED: return 0;
    case MECH_ACDC_POS_EMBED: return 1;
    case MECH_ACDC_RESULT: return slot_head(x, n->layer, n->head);
    case MECH_ACDC_MLP_OUT: return slot_mlp(x, n->layer);
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
    case MECH_ACDC_RESID_POST: return x->n_rows - 1;
    default: return -1;
    }
}

// dst = src (add 0) or dst += src, n floats.
static void put(float *dst, const float *src, size_t n, int add) {
    if (!add) memcpy(dst, src, n * sizeof(float));
    else
        for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// Head h of a [B, T, NH, C] tensor into a [B*T, C] row.
static void take_head(float *dst, const float *src, int BT, int H, int h, int C) {
    for (int i = 0; i < BT; i++) memcpy(dst + (size_t)i * C, src + ((size_t)i * H + h) * C, (size_t)C * sizeof(float));
}

// The sender outputs of the run's last forward into diff (sign -1: subtract
// them, for the clean run; +1: store them, for the corrupted run), and q, k,
// v into qkv_diff likewise. A head's output (hook_result, without b_O) is
// linear in its z: its difference is (z(corrupt) - z(clean)) . W_O[h], made
// here from the cached z (a few MB) rather than cached per head from both
// runs (hook_result: B*T*NH*C floats per layer, and a slower forward).
static void gather_senders(eap_ctx *x, const mech_run *r, int sign) {
    size_t K = x->K;
    char name[64];
    const char *embeds[2] = {x->n_embed == 2 ? "hook_embed" : "blocks.0.hook_resid_pre", "hook_pos_embed"};
    for (int s = 0; s < x->n_send; s++) {
        const float *src;
        int per = x->H + !x->m->cfg.attn_only;
        if (s < x->n_embed) {
            src = mech_run_get(r, embeds[s])->data;
        } else {
            int l = (s - x->n_embed) / per, j = (s - x->n_embed) % per;
            if (j < x->H) continue; // the heads: below
            snprintf(name, sizeof name, "blocks.%d.hook_mlp_out", l);
            src = mech_run_get(r, name)->data;
        }
        float *d = x->diff + (size_t)s * K;
        if (sign > 0)
            memcpy(d, src, K * sizeof(float));
        else
            for (size_t i = 0; i < K; i++) d[i] -= src[i];
    }
    static const char *const qkv[3] = {"q", "k", "v"};
    int BT = x->B * x->T, AH = x->H * x->HS;
    for (int l = 0; l < x->L; l++) {
        for (int w = 0; w < 4; w++) {
            snprintf(name, sizeof name, "blocks.%d.attn.hook_%s", l, w < 3 ? qkv[w] : "z");
            const float *src = mech_run_get(r, name)->data;
            float *d = w < 3 ? x->qkv_diff + ((size_t)l * 3 + w) * x->A : x->z_diff + (size_t)l * x->A;
            if (sign > 0)
                memcpy(d, src, x->A * sizeof(float));
            else
                for (size_t i = 0; i < x->A; i++) d[i] -= src[i];
        }
        if (sign > 0) continue;
        const float *dz = x->z_diff + (size_t)l * x->A, *o_w = x->m->layers[l].o_w;
        for (int h = 0; h < x->H; h++)
            mech_matmul(x->pool, x->diff + (size_t)slot_head(x, l, h) * K, x->C, dz + (size_t)h * x->HS, AH,
                        o_w + (size_t)h * x->HS * x->C, x->C, NULL, BT, x->HS, x->C);
    }
}

// The contraction of one layer's receivers (grad rows 0..M) with senders
// [s0, s1) into prod rows row0..row0+M (add: onto the sum of earlier
// passes). The rows are long (K = B*T*C) and the blocks small (37 receivers
// against up to 157 senders), so the threads split K, not the block: task c
// computes the block over its slice of K into a partial product of its own;
// the partials are summed in double.
typedef struct contraction {
    eap_ctx *x;
    int M, s0, s1;
} contraction;

static void contract_chunk(void *ctx, int c, int thread) {
    (void)thread;
    const contraction *j = ctx;
    eap_ctx *x = j->x;
    size_t BT = x->K / (size_t)x->C, i0 = BT * (size_t)c / (size_t)x->n_chunks,
           i1 = BT * ((size_t)c + 1) / (size_t)x->n_chunks;
    size_t k0 = i0 * (size_t)x->C;
    int kn = (int)((i1 - i0) * (size_t)x->C);
    float *out = x->part + (size_t)c * x->rows_layer * x->n_send + j->s0;
    if (kn == 0) {
        for (int r = 0; r < j->M; r++) memset(out + (size_t)r * x->n_send, 0, sizeof(float) * (size_t)(j->s1 - j->s0));
        return;
    }
    mech_matmul_nt(NULL, out, x->n_send, x->grad + k0, (int)x->K, x->diff + (size_t)j->s0 * x->K + k0, (int)x->K, NULL,
                   j->M, kn, j->s1 - j->s0);
}

static void contract(eap_ctx *x, int M, int row0, int s0, int s1, int add) {
    contraction j = {x, M, s0, s1};
    mech_pool_run(x->pool, x->n_chunks, contract_chunk, &j);
    size_t P = (size_t)x->rows_layer * x->n_send;
    for (int r = 0; r < M; r++)
        for (int s = s0; s < s1; s++) {
            double acc = 0;
            for (int c = 0; c < x->n_chunks; c++) acc += x->part[c * P + (size_t)r * x->n_send + s];
            double *o = x->prod + (size_t)(row0 + r) * x->n_send + s;
            *o = add ? *o + acc : acc;
        }
}

// The last backward's gradients: at q, k, v into (add 0) or onto gq, and at
// every receiver, layer by layer packed into grad and contracted with the
// senders [x->s0, x->s1) each layer's receivers can read (those before the
// layer, plus its own heads for mlp_in; the q/k/v rows' products with them
// are computed and unused), into (or onto) prod.
static void absorb(eap_ctx *x, const mech_run *r, int add) {
    static const char *const ins[3] = {"q_input", "k_input", "v_input"}, *const qkv[3] = {"q", "k", "v"};
    char name[64];
    int per = x->H + !x->m->cfg.attn_only;
    for (int l = 0; l < x->L; l++)
        for (int w = 0; w < 3; w++) {
            snprintf(name, sizeof name, "blocks.%d.attn.hook_%s", l, qkv[w]);
            put(x->gq + ((size_t)l * 3 + w) * x->A, mech_run_grad(r, name)->data, x->A, add);
        }
    for (int l = 0; l <= x->L; l++) {
        int lim = l < x->L ? x->n_embed + l * per + x->H : x->n_send, s1 = x->s1 < lim ? x->s1 : lim;
        if (s1 <= x->s0) continue;
        if (l == x->L) {
            snprintf(name, sizeof name, "blocks.%d.hook_resid_post", x->L - 1);
            put(x->grad, mech_run_grad(r, name)->data, x->K, 0);
            contract(x, 1, x->n_rows - 1, x->s0, s1, add);
            continue;
        }
        for (int w = 0; w < 3; w++) {
            snprintf(name, sizeof name, "blocks.%d.hook_%s", l, ins[w]);
            const float *src = mech_run_grad(r, name)->data; // (B, T, NH, C)
            for (int h = 0; h < x->H; h++)
                take_head(x->grad + (size_t)(w * x->H + h) * x->K, src, x->B * x->T, x->H, h, x->C);
        }
        if (!x->m->cfg.attn_only) {
            snprintf(name, sizeof name, "blocks.%d.hook_mlp_in", l);
            put(x->grad + (size_t)3 * x->H * x->K, mech_run_grad(r, name)->data, x->K, 0);
        }
        contract(x, x->rows_layer, l * x->rows_layer, x->s0, s1, add);
    }
}

// DIRECT edges of layer l: (q(corrupt) - q(clean)) . gq per head (k, v alike).
static void direct_scores(eap_ctx *x, int l) {
    for (int w = 0; w < 3; w++) {
        const float *dq = x->qkv_diff + ((size_t)l * 3 + w) * x->A, *gq = x->gq + ((size_t)l * 3 + w) * x->A;
        for (int h = 0; h < x->H; h++) {
            double s = 0;
            for (int i = 0; i < x->B * x->T; i++) {
                size_t o = ((size_t)i * x->H + h) * x->HS;
                for (int k = 0; k < x->HS; k++) s += (double)dq[o + k] * gq[o + k];
            }
            x->direct[((size_t)l * 3 + w) * x->H + h] = s;
        }
    }
}

// ---------------------------------------------------------------------------
// The variants' interpolation hooks (run on the clean tokens: the value a
// hook sees is the clean activation, so clean + keep * diff is the point
// alpha = 1 - keep of the way from the corrupted activation to the clean one).

static void add_scaled(float *dst, const float *d, size_t n, float keep) {
    for (size_t i = 0; i < n; i++) dst[i] += keep * d[i];
}

static int interp_embed(mech_tensor *t, int layer, void *user) {
    (void)layer;
    eap_ctx *x = user;
    if (x->group == EAP_INPUT) add_scaled(t->data, x->diff + (strcmp(t->name, "hook_pos_embed") ? 0 : x->K), x->K, x->keep);
    return 0;
}

static int interp_qkv(mech_tensor *t, int layer, void *user) {
    eap_ctx *x = user;
    if (x->group != EAP_QKV(layer)) return 0;
    const char *last = strrchr(t->name, '_');
    int w = last[1] == 'q' ? 0 : last[1] == 'k' ? 1 : 2;
    add_scaled(t->data, x->qkv_diff + ((size_t)layer * 3 + w) * x->A, x->A, x->keep);
    return 0;
}

static int interp_heads(mech_tensor *t, int layer, void *user) {
    eap_ctx *x = user;
    if (x->group != EAP_HEADS(layer)) return 0;
    for (int h = 0; h < x->H; h++) {
        const float *d = x->diff + (size_t)slot_head(x, layer, h) * x->K;
        for (int i = 0; i < x->B * x->T; i++)
            add_scaled(t->data + ((size_t)i * x->H + h) * x->C, d + (size_t)i * x->C, (size_t)x->C, x->keep);
    }
    return 0;
}

static int interp_mlp(mech_tensor *t, int layer, void *user) {
    eap_ctx *x = user;
    if (x->group == EAP_MLP(layer)) add_scaled(t->data, x->diff + (size_t)slot_mlp(x, layer) * x->K, x->K, x->keep);
    return 0;
}

static mech_status cache_all(mech_run *r, int attn_only, int n_embed, mech_err *err) {
    mech_status rc;
    if ((rc = mech_run_cache(r, n_embed == 2 ? "hook_embed" : "blocks.0.hook_resid_pre", err))) return rc;
    if (n_embed == 2 && (rc = mech_run_cache(r, "hook_pos_embed", err))) return rc;
    if ((rc = mech_run_cache(r, "blocks.*.attn.hook_z", err)) || (rc = mech_run_cache(r, "blocks.*.attn.hook_q", err)) ||
        (rc = mech_run_cache(r, "blocks.*.attn.hook_k", err)) || (rc = mech_run_cache(r, "blocks.*.attn.hook_v", err)))
        return rc;
    if (!attn_only && (rc = mech_run_cache(r, "blocks.*.hook_mlp_out", err))) return rc;
    return MECH_OK;
}

// Grad mode, and the gradients kept: every receiver input and q, k, v.
static mech_status want_grads(const eap_ctx *x, mech_run *r, mech_err *err) {
    mech_status rc;
    if ((rc = mech_run_enable_grad(r, MECH_GRAD_ACTS, err))) return rc;
    static const char *const grads[] = {"blocks.*.hook_q_input", "blocks.*.hook_k_input", "blocks.*.hook_v_input",
                                        "blocks.*.attn.hook_q", "blocks.*.attn.hook_k", "blocks.*.attn.hook_v"};
    for (size_t i = 0; i < sizeof grads / sizeof *grads; i++)
        if ((rc = mech_run_cache_grad(r, grads[i], err))) return rc;
    if (!x->m->cfg.attn_only && (rc = mech_run_cache_grad(r, "blocks.*.hook_mlp_in", err))) return rc;
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.hook_resid_post", x->L - 1);
    return mech_run_cache_grad(r, name, err);
}

static mech_status want_interp(eap_ctx *x, mech_run *r, mech_err *err) {
    mech_status rc;
    if (x->n_embed == 2) {
        if ((rc = mech_run_hook(r, "hook_embed", interp_embed, x, err)) ||
            (rc = mech_run_hook(r, "hook_pos_embed", interp_embed, x, err)))
            return rc;
    } else if ((rc = mech_run_hook(r, "blocks.0.hook_resid_pre", interp_embed, x, err))) {
        return rc;
    }
    if ((rc = mech_run_hook(r, "blocks.*.attn.hook_q", interp_qkv, x, err)) ||
        (rc = mech_run_hook(r, "blocks.*.attn.hook_k", interp_qkv, x, err)) ||
        (rc = mech_run_hook(r, "blocks.*.attn.hook_v", interp_qkv, x, err)) ||
        (rc = mech_run_hook(r, "blocks.*.attn.hook_result", interp_heads, x, err)))
        return rc;
    if (!x->m->cfg.attn_only && (rc = mech_run_hook(r, "blocks.*.hook_mlp_out", interp_mlp, x, err))) return rc;
    return MECH_OK;
}

// One differentiated pass on ids: forward (its senders gathered into diff
// with sign, unless 0), backward, gradients packed (add: onto the sum).
static mech_status grad_pass(eap_ctx *x, mech_run *r, const int32_t *ids, const mech_metric *mt, int sign, int add,
                             double *value, mech_err *err) {
    double t0 = mech_now();
    mech_status rc = mech_run_forward(r, ids, err);
    if (rc) return rc;
    double t1 = mech_now();
    if (sign) gather_senders(x, r, sign);
    double t2 = mech_now();
    if ((rc = mech_run_backward(r, mt, value, err))) return rc;
    double t3 = mech_now();
    absorb(x, r, add);
    x->time[1] += t1 - t0, x->time[2] += t3 - t2, x->time[3] += t2 - t1 + mech_now() - t3;
    return MECH_OK;
}

// m passes with the group's activations at alpha = k/m for k in [k0, k0 + m),
// the products with senders [s0, s1) and the q/k/v gradients summed.
static mech_status ig_passes(eap_ctx *x, mech_run *r, const int32_t *clean, const mech_metric *mt, int group, int m,
                             int k0, int s0, int s1, mech_err *err) {
    x->group = group, x->s0 = s0, x->s1 = s1;
    mech_status rc = MECH_OK;
    for (int k = 0; k < m && !rc; k++) {
        x->keep = 1.0f - (float)(k0 + k) / (float)m;
        rc = grad_pass(x, r, clean, mt, 0, k > 0, NULL, err);
    }
    x->group = -1;
    return rc;
}

// ---------------------------------------------------------------------------
// A vocabulary view for the logit difference. The metric reads two logits
// per prompt, each one row of W_U against the final residual, but the
// forward in grad mode computes all V of them at every position (a third of
// GPT-2 small's forward at 16 tokens). The view is the model with its
// vocabulary cut to the tokens the batch holds and the metric reads,
// renumbered: the same weights and rows, so every activation, every logit
// the metric reads and every gradient are those of the full model.

typedef struct vocab_view {
    mech_model m;
    float *wte, *unembed, *unembed_b;
    int32_t *clean, *corrupt, *answer, *wrong;
} vocab_view;

static void vocab_view_free(vocab_view *v) {
    mech_free_aligned(v->wte);
    mech_free_aligned(v->unembed);
    mech_free(v->unembed_b);
    mech_free(v->clean);
    mech_free(v->corrupt);
    mech_free(v->answer);
    mech_free(v->wrong);
}

// 1 and *v set up when the view applies (the logit difference, every token
// in range: errors are left to the full model's checks), else 0.
static int vocab_view_new(const mech_model *m, const int32_t *clean, const int32_t *corrupt, int B, int T,
                          const mech_metric *mt, vocab_view *v) {
    memset(v, 0, sizeof *v);
    const mech_config *c = &m->cfg;
    int V = c->d_vocab, C = c->d_model, n = 0;
    size_t BT = (size_t)B * T;
    if (mt->kind != MECH_METRIC_LOGIT_DIFF || !mt->answer || !mt->wrong) return 0;
    for (size_t i = 0; i < BT; i++)
        if (clean[i] < 0 || clean[i] >= V || corrupt[i] < 0 || corrupt[i] >= V) return 0;
    for (int b = 0; b < B; b++)
        if (mt->answer[b] < 0 || mt->answer[b] >= V || mt->wrong[b] < 0 || mt->wrong[b] >= V) return 0;
    int32_t *map = mech_malloc((size_t)V * sizeof *map);
    size_t cap = 2 * BT + 2 * (size_t)B;
    int32_t *used = mech_malloc(cap * sizeof *used);
    v->clean = mech_malloc(BT * sizeof(int32_t));
    v->corrupt = mech_malloc(BT * sizeof(int32_t));
    v->answer = mech_malloc((size_t)B * sizeof(int32_t));
    v->wrong = mech_malloc((size_t)B * sizeof(int32_t));
    if (!map || !used || !v->clean || !v->corrupt || !v->answer || !v->wrong) goto fail;
    for (int i = 0; i < V; i++) map[i] = -1;
    const int32_t *src[4] = {clean, corrupt, mt->answer, mt->wrong};
    int32_t *dst[4] = {v->clean, v->corrupt, v->answer, v->wrong};
    for (int k = 0; k < 4; k++)
        for (size_t i = 0; i < (k < 2 ? BT : (size_t)B); i++) {
            int32_t t = src[k][i];
            if (map[t] < 0) map[t] = n, used[n++] = t;
            dst[k][i] = map[t];
        }
    v->wte = mech_malloc_aligned((size_t)n * C * sizeof(float));
    int tied = m->unembed == m->wte;
    if (!tied) v->unembed = mech_malloc_aligned((size_t)n * C * sizeof(float));
    if (m->unembed_b) v->unembed_b = mech_malloc((size_t)n * sizeof(float));
    if (!v->wte || (!tied && !v->unembed) || (m->unembed_b && !v->unembed_b)) goto fail;
    for (int i = 0; i < n; i++) {
        memcpy(v->wte + (size_t)i * C, m->wte + (size_t)used[i] * C, (size_t)C * sizeof(float));
        if (!tied) memcpy(v->unembed + (size_t)i * C, m->unembed + (size_t)used[i] * C, (size_t)C * sizeof(float));
        if (m->unembed_b) v->unembed_b[i] = m->unembed_b[used[i]];
    }
    v->m = *m;
    v->m.cfg.d_vocab = n;
    v->m.wte = v->wte;
    v->m.unembed = tied ? v->wte : v->unembed;
    v->m.unembed_b = v->unembed_b;
    v->m.path = NULL, v->m.st = NULL, v->m.owned = NULL, v->m.owned_floats = 0, v->m.tok = NULL; // borrowed: never freed
    mech_free(map);
    mech_free(used);
    return 1;
fail:
    mech_free(map);
    mech_free(used);
    vocab_view_free(v);
    memset(v, 0, sizeof *v);
    return 0;
}

const char *mech_eap_method_name(mech_eap_method method) {
    switch (method) {
    case MECH_EAP_PLAIN: return "eap";
    case MECH_EAP_IG_INPUTS: return "eap-ig-inputs";
    case MECH_EAP_IG_ACTIVATIONS: return "eap-ig-activations";
    case MECH_EAP_CLEAN_CORRUPTED: return "clean-corrupted";
    }
    return NULL;
}

int mech_eap_method_parse(const char *s, mech_eap_method *out) {
    for (int k = MECH_EAP_PLAIN; k <= MECH_EAP_CLEAN_CORRUPTED; k++)
        if (s && !strcmp(s, mech_eap_method_name((mech_eap_method)k))) {
            *out = (mech_eap_method)k;
            return 0;
        }
    return -1;
}

mech_status mech_eap_scores_opts(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean,
                                 const int32_t *corrupt, int B, int T, const mech_metric *mt, const mech_eap_opts *o,
                                 double *scores, double *value, mech_err *err) {
    mech_eap_opts def = {0};
    if (!o) o = &def;
    if (!m || !g || !clean || !corrupt || !mt || !scores || B < 1 || T < 1)
        return mech_err_set(err, MECH_ERR_ARG, "EAP: model, graph, inputs, metric and scores are required");
    const mech_config *c = &m->cfg;
    if (g->n_layers != c->n_layers || g->n_heads != c->n_heads || g->attn_only != !!c->attn_only)
        return mech_err_set(err, MECH_ERR_ARG, "EAP: the graph was built for another model shape");
    if (!mech_eap_method_name(o->method)) return mech_err_set(err, MECH_ERR_ARG, "EAP: unknown method %d", (int)o->method);
    int steps = o->ig_steps > 0 ? o->ig_steps : 5;
    if (steps > 10000) return mech_err_set(err, MECH_ERR_ARG, "EAP: %d integration steps (at most 10000)", steps);
    // The logit difference runs on a vocabulary view (same weights and values).
    vocab_view vv;
    mech_metric mtv;
    if (vocab_view_new(m, clean, corrupt, B, T, mt, &vv)) {
        m = &vv.m, clean = vv.clean, corrupt = vv.corrupt;
        mtv = *mt;
        mtv.answer = vv.answer, mtv.wrong = vv.wrong;
        mt = &mtv;
    }
    eap_ctx x = {.m = m, .B = B, .T = T, .L = c->n_layers, .H = c->n_heads, .C = c->d_model, .HS = c->d_head,
                 .n_embed = g->split_embed ? 2 : 1, .group = -1};
    x.K = (size_t)B * T * x.C;
    x.A = (size_t)B * T * x.H * x.HS;
    x.n_send = x.n_embed + x.L * (x.H + !c->attn_only);
    x.rows_layer = 3 * x.H + !c->attn_only;
    x.n_rows = x.L * x.rows_layer + 1;
    mech_run *r = NULL;
    mech_status rc = MECH_OK;
    x.diff = mech_malloc_aligned((size_t)x.n_send * x.K * sizeof(float));
    x.grad = mech_malloc_aligned((size_t)x.rows_layer * x.K * sizeof(float));
    x.qkv_diff = mech_malloc_aligned((size_t)x.L * 3 * x.A * sizeof(float));
    x.z_diff = mech_malloc_aligned((size_t)x.L * x.A * sizeof(float));
    x.gq = mech_malloc_aligned((size_t)x.L * 3 * x.A * sizeof(float));
    x.prod = mech_calloc((size_t)x.n_rows * x.n_send, sizeof(double));
    x.direct = mech_calloc((size_t)x.L * 3 * x.H, sizeof(double));
    x.pool = mech_pool_new(o->threads);
    x.n_chunks = 2 * mech_pool_size(x.pool); // two per thread: one slow thread does not hold the others up
    x.part = mech_malloc_aligned((size_t)x.n_chunks * x.rows_layer * x.n_send * sizeof(float));
    if (!x.diff || !x.grad || !x.qkv_diff || !x.z_diff || !x.gq || !x.prod || !x.part || !x.direct || !x.pool) {
        rc = mech_err_set(err, MECH_ERR_NOMEM, "out of memory for EAP (B=%d, T=%d)", B, T);
        goto done;
    }
    if ((rc = mech_run_new(m, B, T, &r, err))) goto done;
    if (o->threads > 0 && (rc = mech_run_set_threads(r, o->threads, err))) goto done;
    if ((rc = cache_all(r, c->attn_only, x.n_embed, err))) goto done;
    double inv = 1; // the scores are the mean over the method's passes
    // Every method starts from the corrupted run's senders: no unembedding.
    mech_run_opts upto = {.stop_layer = x.L};
    double t0 = mech_now();
    if ((rc = mech_run_forward_ex(r, corrupt, &upto, err))) goto done;
    x.time[0] = mech_now() - t0;
    gather_senders(&x, r, +1);
    if ((rc = want_grads(&x, r, err))) goto done;
    x.s0 = 0, x.s1 = x.n_send;
    if (o->method == MECH_EAP_PLAIN) {
        // The clean run, differentiated at every receiver input and q, k, v.
        if ((rc = grad_pass(&x, r, clean, mt, -1, 0, value, err))) goto done;
        for (int l = 0; l < x.L; l++) direct_scores(&x, l);
    } else if (o->method == MECH_EAP_CLEAN_CORRUPTED) {
        // The gradients at both ends, averaged (the differences are complete
        // after the clean run, so it comes first).
        if ((rc = grad_pass(&x, r, clean, mt, -1, 0, value, err)) || (rc = grad_pass(&x, r, corrupt, mt, 0, 1, NULL, err)))
            goto done;
        for (int l = 0; l < x.L; l++) direct_scores(&x, l);
        inv = 0.5;
    } else {
        if ((rc = mech_run_forward(r, clean, err))) goto done;
        gather_senders(&x, r, -1);
        if (value && (rc = mech_metric_eval(r, mt, value, err))) goto done;
        if ((rc = want_interp(&x, r, err))) goto done;
        inv = 1.0 / steps;
        if (o->method == MECH_EAP_IG_INPUTS) {
            // Hanna et al.'s inputs variant: the input embeddings at alpha =
            // k/m, k = 0 .. m-1 (from the corrupted end), every edge scored
            // with the mean of the m gradients.
            if ((rc = ig_passes(&x, r, clean, mt, EAP_INPUT, steps, 0, 0, x.n_send, err))) goto done;
            for (int l = 0; l < x.L; l++) direct_scores(&x, l);
        } else {
            // The activations variant: per sender group (the input, a
            // layer's q/k/v, its heads' results, its MLP), that group's
            // output at alpha = k/m, k = 1 .. m; the group's edges are scored
            // with the mean of those m gradients at their receivers (all
            // after the group, so the interpolation cuts none of their paths).
            if ((rc = ig_passes(&x, r, clean, mt, EAP_INPUT, steps, 1, 0, x.n_embed, err))) goto done;
            for (int l = 0; l < x.L; l++) {
                if ((rc = ig_passes(&x, r, clean, mt, EAP_QKV(l), steps, 1, 0, 0, err))) goto done;
                direct_scores(&x, l);
                int h0 = slot_head(&x, l, 0);
                if ((rc = ig_passes(&x, r, clean, mt, EAP_HEADS(l), steps, 1, h0, h0 + x.H, err))) goto done;
                if (c->attn_only) continue;
                int s = slot_mlp(&x, l);
                if ((rc = ig_passes(&x, r, clean, mt, EAP_MLP(l), steps, 1, s, s + 1, err))) goto done;
            }
        }
    }

    if (o->timing) {
        memcpy(o->timing, x.time, sizeof x.time);
        o->timing[3] = mech_now() - t0 - x.time[0] - x.time[1] - x.time[2];
    }
    for (int e = 0; e < g->n_edges; e++) {
        const mech_acdc_edge *ed = &g->edges[e];
        const mech_acdc_node *sn = &g->nodes[ed->sender], *rn = &g->nodes[ed->receiver];
        scores[e] = 0;
        if (ed->type == MECH_ACDC_ADDITION)
            scores[e] = inv * x.prod[(size_t)receiver_row(&x, rn) * x.n_send + sender_slot(&x, sn)];
        else if (ed->type == MECH_ACDC_DIRECT)
            scores[e] = inv * x.direct[((size_t)rn->layer * 3 + (rn->kind - MECH_ACDC_Q)) * x.H + rn->head];
    }

done:
    mech_pool_free(x.pool);
    mech_run_free(r);
    mech_free_aligned(x.diff);
    mech_free_aligned(x.grad);
    mech_free_aligned(x.qkv_diff);
    mech_free_aligned(x.z_diff);
    mech_free_aligned(x.gq);
    mech_free(x.prod);
    mech_free_aligned(x.part);
    mech_free(x.direct);
    vocab_view_free(&vv);
    return rc;
}

mech_status mech_eap_scores(const mech_model *m, const mech_acdc_graph *g, const int32_t *clean,
                            const int32_t *corrupt, int B, int T, const mech_metric *mt, int threads,
                            double *scores, double *value, mech_err *err) {
    mech_eap_opts o = {.method = MECH_EAP_PLAIN, .threads = threads};
    return mech_eap_scores_opts(m, g, clean, corrupt, B, T, mt, &o, scores, value, err);
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
