/*
** interp/acdc_int.h: what the ACDC search (interp/acdc.c) shares with its
** fast evaluator (interp/acdc_eval.c) and with the faithfulness curves
** (interp/faithfulness.c). Private to interp/.
*/
#ifndef MECH_ACDC_INT_H
#define MECH_ACDC_INT_H

#include "interp/interp.h"

// ---------------------------------------------------------------------------
// The search context: model, graph, options, corrupted cache and metric.

typedef struct acdc_ctx {
    const mech_model *m;
    const mech_config *c;
    mech_acdc_graph *g;
    const mech_acdc_opts *o;
    const int32_t *clean; // [B*T]
    int B, T, BT, C, L, H, HS, A, M;
    int n_embed;           // 1, or 2 with split embeddings
    mech_pool *pool;       // the matmuls' threads (fast mode)

    // Senders, in "slot" order: the embedding(s), then per layer heads
    // 0..H-1 then the MLP. slot_of[node] is the node's slot or -1.
    int n_send;
    int *send_node; // [n_send]
    int *slot_of;   // [n_nodes]
    // Outgoing edges of every node (CSR over g->edges): out_edges[out_first[v] ..
    // out_first[v+1]).
    int *out_first, *out_edges;

    // Corrupted cache. Receivers of one kind read copies of one stream in
    // an unpatched run, so one array per layer serves all heads.
    float *c_send;  // [n_send][BT*C]  sender outputs (0 under zero ablation)
    float *c_resid; // [L][BT*C]       resid_pre: every head's q/k/v input
    float *c_mid;   // [L][BT*C]       resid_mid: mlp_in (NULL when attn_only)
    float *c_post;  // [BT*C]          last resid_post
    float *c_qkv;   // [L][3][BT*A]    hook_q, hook_k, hook_v (B, T, NH, HS)

    // Metric: rows (b, t) it reads and the logit columns it needs there:
    // KL all V, L2 the first n_out, logit_diff 2 (answer[b], wrong[b]).
    int n_rows, n_cols;
    int *row_b, *row_t;   // [n_rows]
    double *base;         // [n_rows][n_cols]: the full model's log-probs (KL) or logits (L2)
} acdc_ctx;

// Metric of compact logits lg[n_rows][n_cols] (see above), in double.
double acdc_metric(const acdc_ctx *x, const float *lg);

// Multiply-adds of one full forward pass over the clean batch (the yardstick
// the fast mode's per-trial cost is reported against).
int64_t acdc_forward_macs(const acdc_ctx *x);

// ---------------------------------------------------------------------------
// Evaluators: the search drives one through these calls. The graph's present
// flags are the state: the search flips them and then tells the evaluator.

typedef struct acdc_eval acdc_eval;
struct acdc_eval {
    // Receiver node v is reached: from now on its input is built from its
    // present edges (before, it computes its natural input, as the
    // reference's lazily added receiver hooks).
    void (*install)(acdc_eval *ev, int node);
    // *out = metric of the current graph.
    mech_status (*metric)(acdc_eval *ev, double *out, mech_err *err);
    // Edge e has just been made absent: *out = metric of the graph now.
    mech_status (*trial)(acdc_eval *ev, int e, double *out, mech_err *err);
    // After trial: e stays removed (accept) or is present again (reject).
    void (*accept)(acdc_eval *ev, int e);
    void (*reject)(acdc_eval *ev, int e);
    // Edge e was removed without a trial by a replayed decision. (The inputs
    // of a disconnected node are removed silently: no present edge reads
    // that node's value, now or later, edges being only ever removed.)
    void (*dropped)(acdc_eval *ev, int e);
    // The search reaches another group of receivers (a layer's resid_post,
    // mlp_in, or attention inputs): the state is rebuilt from the flags, so
    // that from here on it is a function of the decisions alone, not of the
    // rounding history of the edits that led to them. A resumed run rebuilds
    // at the same point and so computes bit for bit what an uninterrupted
    // run computes. Its work counts in macs.
    void (*sync)(acdc_eval *ev);
    void (*free)(acdc_eval *ev);
    int64_t macs; // multiply-adds spent in trial() and sync() calls
};

mech_status acdc_eval_fast_new(acdc_ctx *x, acdc_eval **out, mech_err *err);

// ---------------------------------------------------------------------------
// The context without a search (interp/faithfulness.c evaluates given
// circuits with the fast evaluator): fills *x for B x T tokens and builds
// its tables, metric rows, corrupted cache and thread pool (o: metric,
// ablation, answers, threads, as for mech_acdc_run). acdc_ctx_close frees
// it, also after a failed open.
mech_status acdc_ctx_open(acdc_ctx *x, const mech_model *m, mech_acdc_graph *g, const mech_acdc_opts *o,
                          const int32_t *clean, const int32_t *corrupt, int B, int T, mech_err *err);
void acdc_ctx_close(acdc_ctx *x);

#endif
