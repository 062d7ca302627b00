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

#endif
