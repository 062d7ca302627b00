/*
** core/forward_int.h: private to core/hooks.c and core/forward.c: the hook
** point table and the run workspace.
*/
#ifndef MECH_FORWARD_INT_H
#define MECH_FORWARD_INT_H

#include "core/core.h"

// The backward's element-wise row loops (core/backward.c, built with
// -ftree-vectorize) in two builds, AVX-512 and the baseline, the better
// picked when the library loads (function clones). Strict ISO C keeps
// multiply and add unfused and reductions in order, so both builds give the
// same bits.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__)
#define MECH_EW_CLONES __attribute__((target_clones("avx512f", "default")))
#else
#define MECH_EW_CLONES
#endif

// Hook point kinds. Per-block kinds are in TransformerLens firing order.
enum hook_kind {
    HK_EMBED,
    HK_POS_EMBED,
    HK_RESID_PRE, // first per-block kind
    HK_Q_INPUT,
    HK_K_INPUT,
    HK_V_INPUT,
    HK_LN1_SCALE,
    HK_LN1_NORM,
    HK_Q,
    HK_K,
    HK_V,
    HK_SCORES,
    HK_PATTERN,
    HK_Z,
    HK_RESULT,
    HK_ATTN_OUT,
    HK_RESID_MID,
    HK_MLP_IN,
    HK_LN2_SCALE,
    HK_LN2_NORM,
    HK_MLP_PRE,
    HK_MLP_POST,
    HK_MLP_OUT,
    HK_RESID_POST, // last per-block kind
    HK_LNF_SCALE,
    HK_LNF_NORM,
    HK_COUNT
};

#define HK_PER_BLOCK (HK_RESID_POST - HK_RESID_PRE + 1)

typedef struct hook_fn_entry {
    mech_hook_fn fn;
    void *user;
} hook_fn_entry;

typedef struct hook_point {
    char name[64];
    int layer; // -1 for global points
    int kind;
    int exists; // the model has this point (e.g. no ln hooks without LayerNorm)
    int opt_in;
    mech_tensor view; // shape for the run's B, T; data set when fired
    float *cache;     // owned cached activation, or NULL
    hook_fn_entry *fns;
    int n_fns;
    // Gradients (core/backward.c). In grad mode a point the backward reads
    // gets its own buffer per layer (keep), and a point with forward hooks
    // records which elements the hooks changed: those are constants, the
    // gradient stops there.
    float *keep;       // owned; the forward writes here when there is no cache
    float *before;     // owned; the value before the forward hooks ran
    uint8_t *patched;  // owned; 1 where a forward hook changed the value
    size_t n_patched;  // how many, in the last forward
    float *gcache;     // owned cached gradient, or NULL
    hook_fn_entry *gfns; // backward hooks
    int n_gfns;
} hook_point;

// Per-run table of points: 2 global + L*HK_PER_BLOCK + 2 final.
int hook_point_count(const mech_config *cfg);
int hook_point_index(const mech_config *cfg, int layer, int kind);
// Fills the name, existence and shape of every point for batch B, length T.
void hook_points_init(const mech_config *cfg, int B, int T, hook_point *pts);
// Whether a point of name is opt-in / exists: used by mech_hook_names.
const char *hook_kind_suffix(int kind);
// Whether glob selects p (core/forward.c): opt-in points only by a last
// component without '*'.
int hook_point_matches(const hook_point *p, const char *glob);

// The run workspace (core/forward.c; core/backward.c reads it).
struct grad_state;
struct mech_run {
    const mech_model *m;
    int B, T;
    mech_pool *pool;
    int n_pts;
    hook_point *pts;
    float *scratch[HK_COUNT]; // shared by all layers; some alias, some lazy
    float *ln_out;            // (B*T, C) LayerNorm output after weight and bias
    float *split_norm;        // (B*T, NH, C) per-head LayerNorm outputs (split q/k/v mode)
    float *logits;            // (B, T, V), or (B, lg_n, V) when the rows are restricted
    int lg_first, lg_n;       // logits rows computed: lg_n = 0 all; else positions lg_first.. of each row (MECH_LOGITS_LAST: its last real token)
    const float *resid_end;
    int logits_valid;
    int oom; // the last block failed for want of memory, not because of a hook
    mech_tensor *cached; // views of cached points in firing order
    size_t n_cached;
    int *row_start, *row_len; // (B) each: the real tokens of a padded batch, or NULL (every row is T long)
    struct grad_state *grad;  // grad mode (core/backward.c), or NULL
    float **pat_store;        // (L) grad mode: where the fused attention leaves block l's pattern for the backward
                              // (packed per (row, head) as pattern_block_offset says), or NULL entries
    float **act_grad;         // (L) grad mode, gelu_new: the MLP activation's derivative at hook_mlp_pre (owned), or NULL entries
};

#define ATTN_QB 64 // query rows per attention block, forward and backward

// Where query block i0's pattern sits in one (row, head)'s packed pattern
// (its rows at most ATTN_QB, each as long as the block's keys: at most the
// block's end (causal) or T); with i0 = T, the floats per (row, head).
static inline size_t pattern_block_offset(int T, int causal, int i0) {
    size_t off = 0;
    for (int b0 = 0; b0 < i0; b0 += ATTN_QB) off += (size_t)ATTN_QB * (size_t)(causal && b0 + ATTN_QB < T ? b0 + ATTN_QB : T);
    return off;
}

// Where (row b, head h)'s query block i0 sits in a layer's packed patterns
// (n_heads per row).
static inline size_t pattern_block_at(int T, int causal, int n_heads, int b, int h, int i0) {
    return ((size_t)b * (size_t)n_heads + (size_t)h) * pattern_block_offset(T, causal, T) +
           pattern_block_offset(T, causal, i0);
}

// Grad mode hooks into the forward (core/backward.c): before the forward
// (keeps buffers, records which blocks run which way) and after it reached
// the logits; reset and free with the run.
mech_status grad_forward_begin(mech_run *r, int start, const int32_t *ids, mech_err *err);
void grad_forward_end(mech_run *r);
void grad_reset(mech_run *r);
void grad_invalidate(mech_run *r); // a buffer the last forward wrote is gone
void grad_free(mech_run *r);

#endif
