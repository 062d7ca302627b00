/*
** tests/test_compiler_build.c: blocks written in residual coordinates,
** assembled into a model, compute what they were built to compute when run
** by the core forward pass.
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

enum { V = 4, N = 4, TOK = 0, POS = 4, PREV = 8, NEXT = 12, C = 16 };

// A previous-token head and a lookup MLP, f(x) = (x + 1) % 4 of the
// previous token; then an inert wide head in layer 1 and an inert MLP.
static void make(build_model *b) {
    memset(b, 0, sizeof *b);
    b->C = C, b->n_layers = 2, b->n_ctx = N, b->d_vocab = V, b->causal = 1;
    b->embed = build_zeros(V * C), b->pos = build_zeros(N * C), b->unembed = build_zeros(V * C);
    for (int x = 0; x < V; x++) b->embed[x * C + TOK + x] = 1, b->unembed[x * C + NEXT + x] = 1;
    for (int p = 0; p < N; p++) b->pos[p * C + POS + p] = 1;
    b->heads = mech_calloc(2, sizeof *b->heads);
    b->n_heads = 2;
    build_head *h = &b->heads[0];
    h->layer = 0, h->d_qk = 4, h->d_v = 4, h->scale = 100;
    h->wq = build_zeros(C * 4), h->wk = build_zeros(C * 4), h->wv = build_zeros(C * 4), h->wo = build_zeros(4 * C);
    for (int i = 0; i < N; i++) h->wq[(POS + i) * 4 + i] = 1;
    for (int j = 0; j + 1 < N; j++) h->wk[(POS + j) * 4 + j + 1] = 1;
    for (int x = 0; x < V; x++) h->wv[(TOK + x) * 4 + x] = 1, h->wo[x * C + PREV + x] = 1;
    build_head *w = &b->heads[1];
    w->layer = 1, w->d_qk = 2, w->d_v = 6, w->scale = 1;
    w->wq = build_zeros(C * 2), w->wk = build_zeros(C * 2), w->wv = build_zeros(C * 6), w->wo = build_zeros(6 * C);
    b->mlps = mech_calloc(2, sizeof *b->mlps);
    b->n_mlps = 2;
    build_mlp *z = &b->mlps[0];
    z->layer = 0, z->hidden = 2;
    z->w_in = build_zeros(C * 2), z->b_in = build_zeros(2), z->w_out = build_zeros(2 * C);
    build_mlp *f = &b->mlps[1];
    f->layer = 0, f->hidden = 4;
    f->w_in = build_zeros(C * 4), f->b_in = build_zeros(4), f->w_out = build_zeros(4 * C);
    for (int x = 0; x < V; x++) f->w_in[(PREV + x) * 4 + x] = 1, f->w_out[x * C + NEXT + (x + 1) % V] = 1;
}

static void test_build_assembles_a_working_circuit(void **state) {
    build_model b;
    make(&b);
    mech_config c;
    build_config(&b, &c);
    assert_int_equal(c.n_heads, 1);
    assert_int_equal(c.d_head, 6);
    assert_int_equal(c.d_mlp, 6);
    assert_int_equal(c.norm, MECH_NORM_NONE);
    assert_int_equal(c.act, MECH_ACT_RELU);
    mech_err err = {0};
    mech_model *m;
    assert_int_equal(build_assemble(&b, &m, &err), MECH_OK);
    mech_run *r;
    assert_int_equal(mech_run_new(m, 1, N, &r, &err), MECH_OK);
    assert_int_equal(mech_run_cache(r, "blocks.0.hook_resid_post", &err), MECH_OK);
    int32_t ids[N] = {2, 0, 3, 1};
    assert_int_equal(mech_run_forward(r, ids, &err), MECH_OK);
    int prev[N] = {2, 2, 0, 3};
    const float *x = mech_run_get(r, "blocks.0.hook_resid_post")->data;
    for (int t = 0; t < N; t++) {
        float want[C] = {0};
        want[TOK + ids[t]] = 1, want[POS + t] = 1, want[PREV + prev[t]] = 1, want[NEXT + (prev[t] + 1) % V] = 1;
        mech_assert_close(x + t * C, want, C, 1e-5, 0, "resid_post 0");
    }
    const float *logits = mech_run_logits(r);
    for (int t = 0; t < N; t++)
        for (int y = 0; y < V; y++)
            assert_true(fabsf(logits[t * V + y] - (y == (prev[t] + 1) % V ? 1.0f : 0.0f)) < 1e-5f);
    mech_run_free(r);
    // Saved and loaded back, the model is the same.
    const char *path = mech_test_tmp("built.safetensors");
    assert_int_equal(mech_model_save(m, path, MECH_DT_F32, NULL, NULL, 0, &err), MECH_OK);
    mech_model *l;
    assert_int_equal(mech_model_load(path, &l, &err), MECH_OK);
    assert_memory_equal(&l->cfg, &m->cfg, sizeof c);
    mech_model_free(l);
    mech_model_free(m);
    build_model_clear(&b);
}

static void test_build_rejects_blocks_outside_the_layers(void **state) {
    build_model b;
    make(&b);
    b.mlps[1].layer = 2;
    mech_err err = {0};
    mech_model *m = NULL;
    assert_int_equal(build_assemble(&b, &m, &err), MECH_ERR_RANGE);
    assert_null(m);
    build_model_clear(&b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_assembles_a_working_circuit),
        cmocka_unit_test(test_build_rejects_blocks_outside_the_layers),
    };
    return cmocka_run_group_tests_name("compiler_build", tests, NULL, NULL);
}
