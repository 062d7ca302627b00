/*
** tests/test_compiler_blocks.c: each block constructor, assembled into a
** model and run by the core forward pass, computes its function exactly at
** every position and leaves BOS (position 0) clean. Expected values are
** computed here directly from the function each block encodes.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "compiler/build.h"
#include "tests/support/check.h"

#include <math.h>
#include <string.h>

enum { BOS = 0, ONE = 1 };

// A model skeleton: C dims, V tokens (0 = BOS), n positions; token t's
// embedding is set by the caller (bos and one are set here).
static void skeleton(build_model *b, int C, int V, int n, int layers, int causal) {
    memset(b, 0, sizeof *b);
    b->C = C, b->d_vocab = V, b->n_ctx = n, b->n_layers = layers, b->causal = causal;
    b->embed = build_zeros((size_t)V * C), b->pos = build_zeros((size_t)n * C), b->unembed = build_zeros((size_t)V * C);
    b->embed[BOS * C + BOS] = 1;
    for (int t = 1; t < V; t++) b->embed[t * C + ONE] = 1;
    b->heads = mech_calloc(8, sizeof *b->heads);
    b->mlps = mech_calloc(8, sizeof *b->mlps);
}

// Runs ids and returns the final residual stream (B=1, T rows of C), owned.
static float *run(build_model *b, const int32_t *ids, int T) {
    mech_err err = {0};
    mech_model *m;
    if (build_assemble(b, &m, &err)) fail_msg("%s", err.msg);
    mech_run *r;
    char last[64];
    snprintf(last, sizeof last, "blocks.%d.hook_resid_post", b->n_layers - 1);
    if (mech_run_new(m, 1, T, &r, &err) || mech_run_cache(r, last, &err) || mech_run_forward(r, ids, &err))
        fail_msg("%s", err.msg);
    float *x = mech_malloc((size_t)T * b->C * sizeof(float));
    memcpy(x, mech_run_get(r, last)->data, (size_t)T * b->C * sizeof(float));
    mech_run_free(r);
    mech_model_free(m);
    return x;
}

static void expect(const float *x, int C, int t, int dim, double want, const char *what) {
    double got = x[t * C + dim];
    if (fabs(got - want) > 1e-4) fail_msg("%s: position %d dim %d: got %.7g, want %.7g", what, t, dim, got, want);
}

static void test_block_map_num_numerical(void **state) {
    double xs[5] = {-2, 1.0 / 3, 0.5, 2, 7}, f[5] = {-1, 4, 4, 0.25, 10};
    build_model b;
    skeleton(&b, 4, 6, 6, 1, 1);
    for (int t = 1; t < 6; t++) b.embed[t * 4 + 2] = (float)xs[t - 1];
    b.mlps[b.n_mlps++] = block_map_num(4, 0, ONE, 2, xs, 5, 3, f, NULL);
    int32_t ids[6] = {0, 1, 2, 3, 4, 5};
    float *x = run(&b, ids, 6);
    expect(x, 4, 0, 3, 0, "BOS");
    for (int t = 1; t < 6; t++) expect(x, 4, t, 3, f[t - 1], "f(x)");
    mech_free(x);
    build_model_clear(&b);
}

// 1/(w+1) back to w for w = 0..20: the gaps shrink to 1/462, where Tracr's
// fixed slope fails; here each step takes its own gap's slope.
static void test_block_map_num_categorical_small_gaps(void **state) {
    enum { W = 21, C = 3 + W };
    double xs[W];
    int out[W];
    for (int i = 0; i < W; i++) xs[i] = 1.0 / (W - i), out[i] = 3 + (W - 1 - i); // ascending: w = 20..0
    build_model b;
    skeleton(&b, C, W + 1, W + 1, 1, 1);
    for (int t = 1; t <= W; t++) b.embed[t * C + 2] = (float)xs[t - 1];
    b.mlps[b.n_mlps++] = block_map_num(C, 0, ONE, 2, xs, W, -1, NULL, out);
    int32_t ids[W + 1];
    for (int t = 0; t <= W; t++) ids[t] = t;
    float *x = run(&b, ids, W + 1);
    for (int d = 3; d < C; d++) expect(x, C, 0, d, 0, "BOS");
    for (int t = 1; t <= W; t++)
        for (int w = 0; w < W; w++) expect(x, C, t, 3 + w, w == W - t ? 1 : 0, "one-hot of w");
    mech_free(x);
    build_model_clear(&b);
}

// zipmap (a, b) -> (a + 2b) % 4, then a categorical map v -> 3 - v with
// 0 -> none, then a map to a negative number.
static void test_block_zipmap_and_maps(void **state) {
    enum { A = 2, B = 5, OUT = 7, OUT2 = 11, NUM = 15, C = 16 };
    build_model b;
    skeleton(&b, C, 7, 7, 2, 1);
    for (int t = 1; t <= 6; t++) b.embed[t * C + A + (t - 1) / 2] = 1, b.embed[t * C + B + (t - 1) % 2] = 1;
    int a_dims[3] = {A, A + 1, A + 2}, b_dims[2] = {B, B + 1}, n_in[2] = {3, 2}, out_of[6];
    const int *in[2] = {a_dims, b_dims};
    for (int t = 0; t < 6; t++) out_of[t] = OUT + (t / 2 + 2 * (t % 2)) % 4;
    b.mlps[b.n_mlps++] = block_zipmap_cat(C, 0, ONE, 2, in, n_in, out_of);
    int o_dims[4] = {OUT, OUT + 1, OUT + 2, OUT + 3}, g[4] = {-1, OUT2 + 2, OUT2 + 1, OUT2 + 0};
    b.mlps[b.n_mlps++] = block_map_cat(C, 1, ONE, o_dims, 4, g);
    double neg[4] = {-3.5, 0, 2, -7};
    b.mlps[b.n_mlps++] = block_map_cat_to_num(C, 1, ONE, o_dims, 4, NUM, neg);
    int32_t ids[7] = {0, 1, 2, 3, 4, 5, 6};
    float *x = run(&b, ids, 7);
    for (int d = OUT; d < C; d++) expect(x, C, 0, d, 0, "BOS");
    for (int t = 1; t <= 6; t++) {
        int av = (t - 1) / 2, bv = (t - 1) % 2, v = (av + 2 * bv) % 4;
        for (int k = 0; k < 4; k++) expect(x, C, t, OUT + k, k == v, "zipmap");
        for (int k = 0; k < 4; k++) expect(x, C, t, OUT2 + k, v != 0 && k == 3 - v, "map, none for 0");
        expect(x, C, t, NUM, neg[v], "negative numerical outputs survive");
    }
    mech_free(x);
    build_model_clear(&b);
}

// hist = selector_width(select(tokens, tokens, ==)), bidirectional.
static void test_block_selector_width(void **state) {
    enum { TOK = 2, WINV = 5, HIST = 6, N = 5, C = HIST + N + 1 };
    build_model b;
    skeleton(&b, C, 4, N + 1, 1, 0);
    for (int t = 1; t <= 3; t++) b.embed[t * C + TOK + t - 1] = 1;
    int tok[3] = {TOK, TOK + 1, TOK + 2};
    unsigned char eq[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    attend_spec s = {.q_dims = tok, .k_dims = tok, .nq = 3, .nk = 3, .pred = eq, .nv = 0, .def_out = WINV,
                     .def_value = 1, .always_bos = 1, .k_bos = -1, .v_bos = -1};
    b.heads[b.n_heads++] = block_attend(C, 0, BOS, ONE, &s, 100);
    double xs[N + 1];
    int out[N + 1];
    for (int i = 0; i <= N; i++) xs[i] = 1.0 / (N + 1 - i), out[i] = HIST + (N - i); // ascending: w = N..0
    b.mlps[b.n_mlps++] = block_map_num(C, 0, ONE, WINV, xs, N + 1, -1, NULL, out);
    int32_t ids[N + 1] = {0, 1, 2, 1, 3, 1}; // BOS a b a c a
    int want[N + 1] = {0, 3, 1, 3, 1, 3};
    float *x = run(&b, ids, N + 1);
    for (int w = 0; w <= N; w++) expect(x, C, 0, HIST + w, 0, "BOS");
    for (int t = 1; t <= N; t++)
        for (int w = 0; w <= N; w++) expect(x, C, t, HIST + w, w == want[t], "hist");
    mech_free(x);
    build_model_clear(&b);
}

// Layer 0: prev = aggregate(select(indices, indices, k == q - 1), tokens,
// default c) — a sop whose value at BOS is c. Layer 1: count how many keys'
// prev equals my token (causal); BOS must not be counted even when my token
// is c: the key's BOS value is cancelled. Also frac = numerical mean of
// (token == a) over keys <= query.
static void test_block_aggregates_and_bos(void **state) {
    enum { TOK = 2, IDX = 5, PREV = 11, ISA = 14, FRAC = 15, WINV = 16, CNT = 17, N = 6, C = CNT + N + 1 };
    build_model b;
    skeleton(&b, C, 4, N + 1, 2, 1);
    for (int t = 1; t <= 3; t++) b.embed[t * C + TOK + t - 1] = 1;
    for (int p = 1; p <= N; p++) b.pos[p * C + IDX + p - 1] = 1;
    int tok[3] = {TOK, TOK + 1, TOK + 2}, idx[N], prev[3] = {PREV, PREV + 1, PREV + 2};
    for (int i = 0; i < N; i++) idx[i] = IDX + i;
    unsigned char before[N * N], le[N * N], eq[9] = {1, 0, 0, 0, 1, 0, 0, 0, 1};
    for (int k = 0; k < N; k++)
        for (int q = 0; q < N; q++) before[k * N + q] = k == q - 1, le[k * N + q] = k <= q;
    attend_spec sp = {.q_dims = idx, .k_dims = idx, .nq = N, .nk = N, .pred = before, .val_in = tok,
                      .val_out = prev, .nv = 3, .def_out = PREV + 2, .def_value = 1, .k_bos = -1, .v_bos = -1};
    b.heads[b.n_heads++] = block_attend(C, 0, BOS, ONE, &sp, 100);
    double isa[3] = {1, 0, 0};
    b.mlps[b.n_mlps++] = block_map_cat_to_num(C, 0, ONE, tok, 3, ISA, isa);
    attend_spec sc = {.q_dims = tok, .k_dims = prev, .nq = 3, .nk = 3, .pred = eq, .nv = 0, .def_out = WINV,
                      .def_value = 1, .always_bos = 1, .k_bos = 2, .v_bos = -1};
    b.heads[b.n_heads++] = block_attend(C, 1, BOS, ONE, &sc, 100);
    int isa_dim = ISA, frac_dim = FRAC;
    attend_spec sf = {.q_dims = idx, .k_dims = idx, .nq = N, .nk = N, .pred = le, .val_in = &isa_dim,
                      .val_out = &frac_dim, .nv = 1, .def_out = -1, .k_bos = -1, .v_bos = -1};
    b.heads[b.n_heads++] = block_attend(C, 1, BOS, ONE, &sf, 100);
    double xs[N + 1];
    int out[N + 1];
    for (int i = 0; i <= N; i++) xs[i] = 1.0 / (N + 1 - i), out[i] = CNT + (N - i);
    b.mlps[b.n_mlps++] = block_map_num(C, 1, ONE, WINV, xs, N + 1, -1, NULL, out);
    int32_t ids[N + 1] = {0, 3, 3, 1, 2, 3, 1}; // BOS c c a b c a
    float *x = run(&b, ids, N + 1);
    int pv[N + 1];
    for (int t = 1; t <= N; t++) pv[t] = t == 1 ? 3 : ids[t - 1]; // default c at the first position
    int n_a = 0;
    for (int t = 1; t <= N; t++) {
        for (int k = 0; k < 3; k++) expect(x, C, t, PREV + k, pv[t] == k + 1, "prev with default");
        int cnt = 0;
        for (int j = 1; j <= t; j++) cnt += pv[j] == ids[t];
        for (int w = 0; w <= N; w++) expect(x, C, t, CNT + w, w == cnt, "count of keys whose prev is my token");
        n_a += ids[t] == 1;
        expect(x, C, t, FRAC, (double)n_a / t, "numerical mean");
    }
    mech_free(x);
    build_model_clear(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block_map_num_numerical),
        cmocka_unit_test(test_block_map_num_categorical_small_gaps),
        cmocka_unit_test(test_block_zipmap_and_maps),
        cmocka_unit_test(test_block_selector_width),
        cmocka_unit_test(test_block_aggregates_and_bos),
    };
    return cmocka_run_group_tests_name("compiler_blocks", tests, NULL, NULL);
}
