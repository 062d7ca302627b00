/*
** compiler/build.h: private to compiler/: assembling a transformer from
** blocks written in residual-stream coordinates (Tracr's "craft" level).
**
** A block reads and writes named residual dimensions; assembly stacks the
** heads of one layer side by side (padding every head to the model's
** d_head) and the MLPs of one layer into one hidden layer, and writes a
** GPT-2-shaped mech_model (no LayerNorm, ReLU MLPs, separate unembedding).
*/
#ifndef MECH_COMPILER_BUILD_H
#define MECH_COMPILER_BUILD_H

#include "core/core.h"
#include "compiler/compiler.h"

typedef struct build_head {
    int layer;
    int d_qk, d_v;  // widths of this head's query/key and value spaces
    float *wq, *wk; // (C, d_qk) residual -> query / key space
    float *wv;      // (C, d_v)  residual -> value space
    float *wo;      // (d_v, C)  value space -> residual
    float scale;    // multiplies q.k before the softmax (the model divides by sqrt(d_head))
} build_head;

typedef struct build_mlp {
    int layer;
    int hidden;   // H
    float *w_in;  // (C, H)
    float *b_in;  // (H)
    float *w_out; // (H, C)
    float *b_out; // (C) or NULL
} build_mlp;

typedef struct build_model {
    int C;           // residual width
    int n_layers;
    int n_ctx;       // positions (BOS included)
    int d_vocab;     // max(input tokens, output classes)
    int causal;
    float *embed;    // (d_vocab, C)  token -> residual
    float *pos;      // (n_ctx, C)    position -> residual
    float *unembed;  // (d_vocab, C)  residual -> output class scores
    build_head *heads;
    int n_heads;
    build_mlp *mlps;
    int n_mlps;
} build_model;

// Allocation helpers: zeroed, owned by the caller (mech_free).
float *build_zeros(size_t n);

// Sizes the assembled model will have.
void build_config(const build_model *b, mech_config *cfg);
// Writes b's weights into a new model (*out owned by the caller).
mech_status build_assemble(const build_model *b, mech_model **out, mech_err *err);
// Frees the blocks' arrays and the arrays of b (not b itself).
void build_model_clear(build_model *b);

// ---------------------------------------------------------------------------
// Block constructors (compiler/blocks.c). Dimensions are residual indices.
// Out of memory, a block comes back unfilled with a NULL array: check it
// with build_mlp_ok / build_head_ok (either way, the caller frees it).
//
// Invariants that keep BOS (position 0) from leaking into the computation:
// - `one` is 1 at every position but BOS; every constant enters through it,
//   and every MLP hidden unit is gated by it, so MLP outputs are 0 at BOS.
// - An attention block's query at BOS attends to BOS alone, so its output
//   there is its default (0 for none); the compiler records that "BOS value"
//   of each sop, and blocks reading a sop as key or value cancel it.
// - With nothing selected a query attends to BOS, whose value is the default.

// Categorical -> categorical: one hidden unit per input value;
// out_of[v] is the output dimension for input value v, or -1 for none.
build_mlp block_map_cat(int C, int layer, int one, const int *in, int n_in, const int *out_of);
// Categorical -> numerical: out = f[v] for input value v (any sign).
build_mlp block_map_cat_to_num(int C, int layer, int one, const int *in, int n_in, int out, const double *f);
// Categorical x ... -> categorical: one hidden unit per tuple of input values
// (first argument slowest); out_of[tuple] is a dimension or -1 for none.
build_mlp block_zipmap_cat(int C, int layer, int one, int n_args, const int *const *in, const int *n_in,
                           const int *out_of);
// Numerical -> numerical or categorical over the sorted distinct values
// xs[0..n): a sum of steps between neighbours, each as steep as its own gap
// allows, so every value maps exactly. Numerical output: out_num >= 0 gets
// f_num[i] at xs[i]. Categorical: out_num < 0, out_cat[i] is the dimension
// for xs[i] (-1: none).
build_mlp block_map_num(int C, int layer, int one, int in, const double *xs, int n, int out_num,
                        const double *f_num, const int *out_cat);

// Numerical x ... -> numerical, linear: out = sum_a w[a] x_a + c, where
// |x_a| <= bound[a] on every input (BOS included).
build_mlp block_linear(int C, int layer, int one, int n_in, const int *in, const double *w, const double *bound,
                       double c, int out);

// One attention head. Queries q_dims[0..nq) and keys k_dims[0..nk) are
// one-hot (a dimension of -1 stands for none, the all-zero encoding);
// pred[k * nq + q] says whether key value k is selected by query value q. The head averages, over the selected keys, the value vectors:
// val_in[i] copied to val_out[i] (one-hot, or nv = 1 for a numerical dim).
// With nothing selected the query attends to BOS, which carries the default:
// def_value written to def_out (-1: none). always_bos: BOS is selected as
// well (selector width reads 1/(w+1) from it). k_bos / v_bos: index of the
// key / value sop's value at BOS (-1: zero), v_bos_num its numerical value.
typedef struct attend_spec {
    const int *q_dims, *k_dims;
    int nq, nk;
    const unsigned char *pred;
    const int *val_in, *val_out;
    int nv;
    int def_out;
    double def_value;
    int always_bos;
    int k_bos, v_bos;
    double v_bos_num;
} attend_spec;
build_head block_attend(int C, int layer, int bos, int one, const attend_spec *s, float sharpness);
int build_mlp_ok(const build_mlp *m);
int build_head_ok(const build_head *h);

#endif
