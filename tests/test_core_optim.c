/*
** tests/test_core_optim.c: AdamW against a hand computation in double, the
** learning-rate schedule's values, global-norm clipping, gradient
** accumulation, a loss that falls on a tiny task, exact resume from a
** checkpoint (2N steps == N steps, save, load, N steps, bit for bit) and
** damaged checkpoints refused with a message.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---------------------------------------------------------------------------
// AdamW, schedule, clipping

static void test_adamw_hand(void **state) {
    (void)state;
    mech_adamw o = {.beta1 = 0.8, .beta2 = 0.9, .eps = 1e-3, .weight_decay = 0.5};
    float p[3] = {1.0f, -2.0f, 0.5f}, m[3] = {0}, v[3] = {0};
    const float g[3][3] = {{0.1f, -0.4f, 2.0f}, {0.3f, 0.2f, -1.0f}, {-0.5f, 0.0f, 0.25f}};
    double P[2][3], M[2][3] = {{0}}, V[2][3] = {{0}}, lr = 0.05, gscale = 0.5;
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 3; i++) P[d][i] = p[i];
    float q[3];
    memcpy(q, p, sizeof q);
    float mq[3] = {0}, vq[3] = {0};
    for (int t = 1; t <= 3; t++) {
        mech_adamw_update(p, g[t - 1], (float)gscale, m, v, 3, lr, &o, 1, t);
        mech_adamw_update(q, g[t - 1], (float)gscale, mq, vq, 3, lr, &o, 0, t);
        for (int d = 0; d < 2; d++)
            for (int i = 0; i < 3; i++) {
                double gi = g[t - 1][i] * gscale;
                M[d][i] = 0.8 * M[d][i] + 0.2 * gi;
                V[d][i] = 0.9 * V[d][i] + 0.1 * gi * gi;
                double mh = M[d][i] / (1 - pow(0.8, t)), vh = V[d][i] / (1 - pow(0.9, t));
                P[d][i] -= lr * (mh / (sqrt(vh) + 1e-3) + (d == 0 ? 0.5 * P[d][i] : 0));
            }
        for (int i = 0; i < 3; i++) {
            assert_true(fabs(p[i] - P[0][i]) < 1e-6);
            assert_true(fabs(q[i] - P[1][i]) < 1e-6);
            assert_true(fabs(m[i] - M[0][i]) < 1e-7);
            assert_true(fabs(v[i] - V[0][i]) < 1e-7);
        }
    }
    // weight decay moves the decayed weights towards 0 relative to the
    // undecayed ones
    for (int i = 0; i < 3; i++) assert_true(fabs(p[i]) < fabs(q[i]));
}

// The vectorised update (8 at a time) gives the bits of the element-wise
// one: n = 24 at once against 24 calls of n = 1 (which only the scalar
// loop handles); and both follow the double-precision formula.
static void test_adamw_vector_bits(void **state) {
    (void)state;
    enum { N = 24 };
    mech_adamw o;
    mech_adamw_defaults(&o);
    float p[N], g[N], m[N] = {0}, v[N] = {0}, q[N], mq[N] = {0}, vq[N] = {0};
    double P[N], M[N] = {0}, V[N] = {0};
    for (int i = 0; i < N; i++) {
        p[i] = q[i] = (float)sin(i + 1.0);
        P[i] = p[i];
        m[i] = mq[i] = (float)(0.01 * cos(i));
        v[i] = vq[i] = (float)(1e-4 * (1 + i % 5));
        M[i] = m[i], V[i] = v[i];
    }
    for (int t = 1; t <= 4; t++) {
        for (int i = 0; i < N; i++) g[i] = (float)(0.3 * sin(7.0 * i + t) - 0.05 * t);
        mech_adamw_update(p, g, 0.75f, m, v, N, 3e-3, &o, 1, t);
        for (int i = 0; i < N; i++) mech_adamw_update(q + i, g + i, 0.75f, mq + i, vq + i, 1, 3e-3, &o, 1, t);
        for (int i = 0; i < N; i++) {
            double gi = g[i] * 0.75;
            M[i] = 0.9 * M[i] + 0.1 * gi;
            V[i] = 0.95 * V[i] + 0.05 * gi * gi;
            double mh = M[i] / (1 - pow(0.9, t)), vh = V[i] / (1 - pow(0.95, t));
            P[i] -= 3e-3 * (mh / (sqrt(vh) + 1e-8) + 0.1 * P[i]);
        }
    }
    assert_memory_equal(p, q, sizeof p);
    assert_memory_equal(m, mq, sizeof m);
    assert_memory_equal(v, vq, sizeof v);
    for (int i = 0; i < N; i++) assert_true(fabs(p[i] - P[i]) < 1e-6);
}

static void test_schedule(void **state) {
    (void)state;
    // warm-up: lr (s + 1) / warmup
    assert_true(fabs(mech_lr_cosine(0, 30, 10, 2.0, 0.2) - 0.2) < 1e-12);
    assert_true(fabs(mech_lr_cosine(4, 30, 10, 2.0, 0.2) - 1.0) < 1e-12);
    assert_true(fabs(mech_lr_cosine(9, 30, 10, 2.0, 0.2) - 2.0) < 1e-12);
    // cosine: the peak right after warm-up, min_lr at the last step,
    // halfway between them at the midpoint (step 10 + 19/2 of 20 steps)
    assert_true(fabs(mech_lr_cosine(10, 30, 10, 2.0, 0.2) - 2.0) < 1e-12);
    assert_true(fabs(mech_lr_cosine(29, 30, 10, 2.0, 0.2) - 0.2) < 1e-12);
    assert_true(fabs(mech_lr_cosine(30, 30, 10, 2.0, 0.2) - 0.2) < 1e-12);
    // 21 decay steps: step 20 is the midpoint
    assert_true(fabs(mech_lr_cosine(20, 31, 10, 2.0, 0.2) - 1.1) < 1e-12);
    double want = 0.2 + 0.9 * (1 + cos(M_PI * 5.0 / 20.0));
    assert_true(fabs(mech_lr_cosine(15, 31, 10, 2.0, 0.2) - want) < 1e-12);
    // no warm-up: starts at the peak; decreasing all the way
    assert_true(fabs(mech_lr_cosine(0, 5, 0, 1.0, 0.0) - 1.0) < 1e-12);
    for (int s = 1; s < 5; s++) assert_true(mech_lr_cosine(s, 5, 0, 1.0, 0.0) < mech_lr_cosine(s - 1, 5, 0, 1.0, 0.0));
}

static void test_clip(void **state) {
    (void)state;
    float a[2] = {3.0f, 0.0f}, b[1] = {4.0f};
    float *g[2] = {a, b};
    size_t n[2] = {2, 1};
    assert_true(fabs(mech_grad_norm(NULL, g, n, 2) - 5.0) < 1e-12);
    assert_true(fabs(mech_clip_scale(5.0, 1.0) - 0.2) < 1e-15);
    assert_true(mech_clip_scale(5.0, 10.0) == 1.0);
    assert_true(mech_clip_scale(5.0, 0.0) == 1.0);
    // a large gradient: the norm is the same bits on 1 and 2 threads and
    // matches a plain double sum
    size_t big = 300000;
    float *x = malloc(big * sizeof *x), *y = malloc(7 * sizeof *y);
    double ss = 0;
    for (size_t i = 0; i < big; i++) {
        x[i] = (float)sin((double)i * 0.37) * 0.01f;
        ss += (double)x[i] * x[i];
    }
    for (int i = 0; i < 7; i++) y[i] = (float)i, ss += (double)i * i;
    float *gg[2] = {x, y};
    size_t nn[2] = {big, 7};
    mech_pool *p1 = mech_pool_new(1), *p2 = mech_pool_new(2);
    double n1 = mech_grad_norm(p1, gg, nn, 2), n2 = mech_grad_norm(p2, gg, nn, 2);
    assert_true(n1 == n2);
    assert_true(fabs(n1 - sqrt(ss)) < 1e-9 * sqrt(ss));
    mech_pool_free(p1);
    mech_pool_free(p2);
    free(x);
    free(y);
}

// ---------------------------------------------------------------------------
// Training a tiny model

static mech_config tiny_cfg(void) {
    mech_config c = mech_config_gpt2_small();
    c.n_layers = 1, c.n_heads = 2, c.d_model = 16, c.d_head = 8, c.d_mlp = 32, c.n_ctx = 16, c.d_vocab = 12;
    return c;
}

// Next token = (token + 3) mod V from a random start: learnable by the MLP
// alone. Depends on index only.
static mech_status shift_batch(void *user, int64_t index, int B, int T, int32_t *ids, int32_t *targets, mech_err *err) {
    (void)user, (void)err;
    uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(index + 1);
    for (int b = 0; b < B; b++) {
        s ^= s >> 29, s *= 0xBF58476D1CE4E5B9ull, s ^= s >> 32;
        int32_t x = (int32_t)(s % 12);
        for (int t = 0; t < T; t++) {
            ids[b * T + t] = x;
            x = (x + 3) % 12;
            targets[b * T + t] = t + 1 < T ? x : -1;
        }
    }
    return MECH_OK;
}

static mech_trainer *tiny_trainer(int B, int accum, int64_t steps) {
    mech_config c = tiny_cfg();
    mech_model *m = NULL;
    mech_err err = {0};
    assert_int_equal(mech_model_random(&c, 7, &m, &err), MECH_OK);
    mech_train_opts o;
    mech_train_opts_default(&o);
    o.B = B, o.T = 8, o.accum = accum, o.steps = steps, o.warmup = 3, o.lr = 1e-2, o.min_lr = 1e-3;
    o.clip = 0.5, o.threads = 2;
    mech_trainer *t = NULL;
    if (mech_trainer_new(m, &o, &t, &err)) fail_msg("%s", err.msg);
    mech_model_free(m);
    return t;
}

static void test_loss_decreases(void **state) {
    (void)state;
    mech_trainer *t = tiny_trainer(4, 1, 80);
    mech_err err = {0};
    mech_train_step st, first = {0};
    while (mech_trainer_steps_done(t) < 80) {
        if (mech_trainer_step(t, shift_batch, NULL, &st, &err)) fail_msg("%s", err.msg);
        if (st.step == 1) first = st;
    }
    // starts near uniform (ln 12 = 2.48), learns most of the map
    assert_true(fabs(first.loss - log(12.0)) < 0.3);
    assert_true(st.loss < 0.3 * first.loss);
    assert_true(first.lr < st.lr * 10 + 1e-2); // warm-up: the first step ran at lr/3
    assert_true(fabs(first.lr - 1e-2 / 3) < 1e-12);
    assert_true(fabs(st.lr - 1e-3) < 1e-12);
    mech_trainer_free(t);
}

// accum 2 x B 2 sees the batch B 4 sees when the source makes the same rows:
// the average of the two micro-batch means is the mean of the four rows
// (every row has as many targets).
static mech_status halves(void *user, int64_t index, int B, int T, int32_t *ids, int32_t *targets, mech_err *err) {
    int32_t full_ids[4 * 8], full_t[4 * 8];
    for (int i = 0; i < 32; i++) full_t[i] = -1;
    shift_batch(user, index / (4 / B), 4, T, full_ids, full_t, err);
    int part = (int)(index % (4 / B));
    memcpy(ids, full_ids + part * B * T, (size_t)B * T * sizeof *ids);
    memcpy(targets, full_t + part * B * T, (size_t)B * T * sizeof *ids);
    return MECH_OK;
}

static void test_accumulation(void **state) {
    (void)state;
    mech_trainer *a = tiny_trainer(4, 1, 10), *b = tiny_trainer(2, 2, 10);
    mech_err err = {0};
    for (int s = 0; s < 3; s++) {
        mech_train_step sa, sb;
        if (mech_trainer_step(a, halves, NULL, &sa, &err) || mech_trainer_step(b, halves, NULL, &sb, &err))
            fail_msg("%s", err.msg);
        assert_true(fabs(sa.loss - sb.loss) < 1e-5 * sa.loss);
        assert_true(fabs(sa.grad_norm - sb.grad_norm) < 1e-4 * sa.grad_norm);
    }
    mech_trainer_free(a);
    mech_trainer_free(b);
}

// clipping is applied: with clip tiny, the first step's update of every
// weight is lr * g/|g| ... Adam normalises, so look at the moments instead:
// m after step 1 = (1 - b1) g scale.
static void test_clip_in_step(void **state) {
    (void)state;
    mech_trainer *t = tiny_trainer(4, 1, 10);
    mech_err err = {0};
    mech_train_step st;
    if (mech_trainer_step(t, shift_batch, NULL, &st, &err)) fail_msg("%s", err.msg);
    assert_true(st.grad_norm > 0.5); // clip 0.5 bites at step 1
    const char *path = mech_test_tmp("clip.safetensors");
    if (mech_trainer_save(t, path, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    char *op = mech_trainer_optim_path(path);
    mech_safetensors *s = NULL;
    assert_int_equal(mech_safetensors_open(op, &s, &err), MECH_OK);
    // |m| over all tensors = (1 - b1) * clip
    double ss = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (strncmp(s->tensors[i].name, "adam_m.", 7)) continue;
        const float *x = s->tensors[i].data;
        for (size_t j = 0; j < s->tensors[i].nbytes / 4; j++) ss += (double)x[j] * x[j];
    }
    assert_true(fabs(sqrt(ss) - 0.1 * 0.5) < 1e-6);
    mech_safetensors_close(s);
    unlink(path);
    unlink(op);
    mech_free(op);
    mech_trainer_free(t);
}

static int files_equal(const char *a, const char *b) {
    size_t na, nb;
    char *x = mech_test_read(a, &na), *y = mech_test_read(b, &nb);
    int eq = na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return eq;
}

static void test_exact_resume(void **state) {
    (void)state;
    mech_err err = {0};
    const int N = 6;
    // straight through: 2N steps (accumulation and clipping on)
    mech_trainer *a = tiny_trainer(2, 2, 2 * N);
    for (int s = 0; s < 2 * N; s++)
        if (mech_trainer_step(a, shift_batch, NULL, NULL, &err)) fail_msg("%s", err.msg);
    const char *pa = mech_test_tmpn("straight.safetensors"), *pb = mech_test_tmpn("half.safetensors"),
               *pc = mech_test_tmpn("resumed.safetensors");
    if (mech_trainer_save(a, pa, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    // N, save, load, N
    mech_trainer *b = tiny_trainer(2, 2, 2 * N);
    for (int s = 0; s < N; s++)
        if (mech_trainer_step(b, shift_batch, NULL, NULL, &err)) fail_msg("%s", err.msg);
    const char *keys[] = {"mech.train.task"}, *vals[] = {"shift"};
    if (mech_trainer_save(b, pb, keys, vals, 1, &err)) fail_msg("%s", err.msg);
    mech_trainer_free(b);
    mech_trainer *c = NULL;
    if (mech_trainer_load(pb, NULL, &c, &err)) fail_msg("%s", err.msg);
    assert_int_equal(mech_trainer_steps_done(c), N);
    assert_string_equal(mech_trainer_meta(c, "mech.train.task"), "shift");
    assert_int_equal(mech_trainer_opts(c)->accum, 2);
    assert_true(mech_trainer_opts(c)->lr == 1e-2 && mech_trainer_opts(c)->clip == 0.5);
    for (int s = 0; s < N; s++)
        if (mech_trainer_step(c, shift_batch, NULL, NULL, &err)) fail_msg("%s", err.msg);
    if (mech_trainer_save(c, pc, NULL, NULL, 0, &err)) fail_msg("%s", err.msg);
    // weights, moments and metadata: the same bytes
    assert_true(files_equal(pa, pc));
    char *oa = mech_trainer_optim_path(pa), *oc = mech_trainer_optim_path(pc);
    assert_true(files_equal(oa, oc));
    // and the weights did move (the comparison is not vacuous)
    assert_false(files_equal(pa, pb));
    // the checkpoint is an ordinary model file
    mech_model *m = NULL;
    assert_int_equal(mech_model_load(pc, &m, &err), MECH_OK);
    assert_int_equal(m->cfg.d_vocab, 12);
    mech_model_free(m);
    mech_trainer_free(a);
    mech_trainer_free(c);
    char *ob = mech_trainer_optim_path(pb);
    unlink(pa), unlink(pb), unlink(pc), unlink(oa), unlink(ob), unlink(oc);
    mech_free(oa), mech_free(ob), mech_free(oc);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void expect_refused(const char *path, const char *needle) {
    mech_err err = {0};
    mech_trainer *t = NULL;
    mech_status rc = mech_trainer_load(path, NULL, &t, &err);
    assert_null(t);
    assert_int_not_equal(rc, MECH_OK);
    if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_bad_checkpoints(void **state) {
    (void)state;
    mech_err err = {0};
    mech_trainer *t = tiny_trainer(2, 1, 4);
    const char *p = mech_test_tmpn("ck.safetensors"), *q = mech_test_tmpn("ck2.safetensors");
    if (mech_trainer_step(t, shift_batch, NULL, NULL, &err) || mech_trainer_save(t, p, NULL, NULL, 0, &err))
        fail_msg("%s", err.msg);
    char *op = mech_trainer_optim_path(p), *oq = mech_trainer_optim_path(q);
    assert_true(strstr(op, "ck.optim.safetensors") != NULL);
    size_t n, on;
    char *model = mech_test_read(p, &n), *optim = mech_test_read(op, &on);
    // truncated model file, at several lengths
    size_t cuts[] = {0, 4, 9, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        write_bytes(q, model, cuts[i]);
        write_bytes(oq, optim, on);
        expect_refused(q, q);
    }
    // truncated optimizer state
    write_bytes(q, model, n);
    for (size_t cut = 0; cut < on; cut += on / 5 + 1) {
        write_bytes(oq, optim, cut);
        expect_refused(q, "optim");
    }
    // garbage in the optimizer's header
    char *bad = malloc(on);
    memcpy(bad, optim, on);
    memset(bad + 8, '{', 16);
    write_bytes(oq, bad, on);
    expect_refused(q, "optim");
    free(bad);
    // missing optimizer state
    unlink(oq);
    expect_refused(q, "optimizer state is missing");
    // a model and an optimizer state of different steps
    write_bytes(oq, optim, on);
    if (mech_trainer_step(t, shift_batch, NULL, NULL, &err) || mech_trainer_save(t, q, NULL, NULL, 0, &err))
        fail_msg("%s", err.msg);
    write_bytes(oq, optim, on); // step 1's moments beside step 2's model
    expect_refused(q, "step 2 but its optimizer state");
    // a plain model, not a checkpoint
    mech_model *m = NULL;
    mech_config c = tiny_cfg();
    assert_int_equal(mech_model_random(&c, 1, &m, &err), MECH_OK);
    assert_int_equal(mech_model_save(m, q, MECH_DT_F32, NULL, NULL, 0, &err), MECH_OK);
    expect_refused(q, "not a training checkpoint");
    mech_model_free(m);
    free(model);
    free(optim);
    unlink(p), unlink(q), unlink(op), unlink(oq);
    mech_free(op), mech_free(oq);
    mech_trainer_free(t);
}

static void test_bad_opts(void **state) {
    (void)state;
    mech_config c = tiny_cfg();
    mech_model *m = NULL;
    mech_err err = {0};
    assert_int_equal(mech_model_random(&c, 1, &m, &err), MECH_OK);
    mech_train_opts o;
    mech_train_opts_default(&o);
    mech_trainer *t = NULL;
    o.T = 17; // > n_ctx
    assert_int_equal(mech_trainer_new(m, &o, &t, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "n_ctx"));
    mech_train_opts_default(&o);
    o.T = 8, o.lr = 0;
    assert_int_equal(mech_trainer_new(m, &o, &t, &err), MECH_ERR_ARG);
    o.lr = 1e-3, o.adamw.beta2 = 1.0;
    assert_int_equal(mech_trainer_new(m, &o, &t, &err), MECH_ERR_ARG);
    assert_null(t);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_hand),      cmocka_unit_test(test_adamw_vector_bits),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_clip),            cmocka_unit_test(test_loss_decreases),
        cmocka_unit_test(test_accumulation),    cmocka_unit_test(test_clip_in_step),
        cmocka_unit_test(test_exact_resume),    cmocka_unit_test(test_bad_checkpoints),
        cmocka_unit_test(test_bad_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
