/*
** core/forward_int.h: private to core/hooks.c and core/forward.c: the hook
** point table and the run workspace.
*/
#ifndef MECH_FORWARD_INT_H
#define MECH_FORWARD_INT_H

#include "core/core.h"

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
} hook_point;

// Per-run table of points: 2 global + L*HK_PER_BLOCK + 2 final.
int hook_point_count(const mech_config *cfg);
int hook_point_index(const mech_config *cfg, int layer, int kind);
// Fills the name, existence and shape of every point for batch B, length T.
void hook_points_init(const mech_config *cfg, int B, int T, hook_point *pts);
// Whether a point of name is opt-in / exists: used by mech_hook_names.
const char *hook_kind_suffix(int kind);

#endif
