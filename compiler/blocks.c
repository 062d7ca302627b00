/*
** compiler/blocks.c: the MLPs and attention heads RASP operations compile
** to, written in residual-stream coordinates (see the invariants in
** compiler/build.h). Each constructor returns a block owning its arrays;
** when one of them cannot be allocated the block comes back unfilled with
** that array NULL, and build_mlp_ok / build_head_ok tell the caller.
*/
#include "compiler/build.h"

#include <math.h>
#include <string.h>

static build_mlp mlp_new(int C, int layer, int hidden) {
    build_mlp m = {.layer = layer, .hidden = hidden};
    m.w_in = build_zeros((size_t)C * hidden);
    m.b_in = build_zeros((size_t)hidden);
    m.w_out = build_zeros((size_t)hidden * C);
    return m;
}

int build_mlp_ok(const build_mlp *m) { return m->w_in && m->b_in && m->w_out; }
int build_head_ok(const build_head *h) { return h->wq && h->wk && h->wv && h->wo; }

// hidden unit h fires (= 1) iff dimension `in` is 1, gated by `one`.
static void gate_unit(build_mlp *m, int h, int one, int n_inputs) {
    m->w_in[(size_t)one * m->hidden + h] += 1;
    m->b_in[h] = -(float)n_inputs;
}

build_mlp block_map_cat(int C, int layer, int one, const int *in, int n_in, const int *out_of) {
    build_mlp m = mlp_new(C, layer, n_in ? n_in : 1);
    if (!build_mlp_ok(&m)) return m;
    for (int v = 0; v < n_in; v++) {
        m.w_in[(size_t)in[v] * m.hidden + v] = 1;
        gate_unit(&m, v, one, 1);
        if (out_of[v] >= 0) m.w_out[(size_t)v * C + out_of[v]] = 1;
    }
    return m;
}

build_mlp block_map_cat_to_num(int C, int layer, int one, const int *in, int n_in, int out, const double *f) {
    // A linear function of the one-hot, so two units do: relu(y) - relu(-y)
    // with y = sum f[v] x_v. Both sit in the hidden layer with opposite
    // signs, so negative values survive (Tracr's single unit loses them),
    // and both are shifted down by M at BOS (one = 0), where |y| < M.
    build_mlp m = mlp_new(C, layer, 2);
    if (!build_mlp_ok(&m)) return m;
    double M = 1;
    for (int v = 0; v < n_in; v++)
        if (fabs(f[v]) + 1 > M) M = fabs(f[v]) + 1;
    for (int sgn = 0; sgn < 2; sgn++) {
        for (int v = 0; v < n_in; v++) m.w_in[(size_t)in[v] * 2 + sgn] = (float)(sgn ? -f[v] : f[v]);
        m.w_in[(size_t)one * 2 + sgn] = (float)M;
        m.b_in[sgn] = (float)-M;
        m.w_out[(size_t)sgn * C + out] = sgn ? -1.0f : 1.0f;
    }
    return m;
}

build_mlp block_zipmap_cat(int C, int layer, int one, int n_args, const int *const *in, const int *n_in,
                           const int *out_of) {
    int total = 1;
    for (int a = 0; a < n_args; a++) total *= n_in[a];
    build_mlp m = mlp_new(C, layer, total ? total : 1);
    if (!build_mlp_ok(&m)) return m;
    for (int t = 0; t < total; t++) {
        int rest = t;
        for (int a = n_args - 1; a >= 0; a--) {
            m.w_in[(size_t)in[a][rest % n_in[a]] * m.hidden + t] = 1;
            rest /= n_in[a];
        }
        // fires iff every argument has its value: sum = n_args (n_args + 1 with `one`)
        gate_unit(&m, t, one, n_args);
        if (out_of && out_of[t] >= 0) m.w_out[(size_t)t * C + out_of[t]] = 1;
    }
    return m;
}

// Whether the map's output changes between xs[k-1] and xs[k]; only there is
// a step needed (a threshold on 200 values is one step, not 199).
static int step_needed(int k, int out_num, const double *f_num, const int *out_cat) {
    return out_num >= 0 ? f_num[k] != f_num[k - 1] : out_cat[k] != out_cat[k - 1];
}

build_mlp block_map_num(int C, int layer, int one, int in, const double *xs, int n, int out_num,
                        const double *f_num, const int *out_cat) {
    int steps = 0;
    for (int k = 1; k < n; k++) steps += step_needed(k, out_num, f_num, out_cat);
    int H = n > 0 ? 1 + 2 * steps : 1;
    build_mlp m = mlp_new(C, layer, H);
    if (n == 0 || !build_mlp_ok(&m)) return m;
    // Unit 0 is the constant 1 (0 at BOS): the value at xs[0], plus the
    // constant part of every step taken downwards (below).
    m.w_in[(size_t)one * H + 0] = 1;
    if (out_num >= 0) m.w_out[out_num] = (float)f_num[0];
    else if (out_cat[0] >= 0) m.w_out[out_cat[0]] = 1;
    for (int k = 1, j = 0; k < n; k++) {
        if (!step_needed(k, out_num, f_num, out_cat)) continue;
        // step_k(x) = relu(s(x-m) + .5) - relu(s(x-m) - .5) with s = 4/gap:
        // flat (0 or 1) within 3/8 of a gap of every value, so values that
        // arrive slightly off still map exactly. Constants come through
        // `one`, so at BOS both units see the same and cancel.
        //
        // Far from its threshold a unit's input is s|x - m|, and the two
        // units differ by 1 only while float32 resolves 1 at that size
        // (below 2^23, and well below after the matmul's rounding). So each
        // step faces the side where its input stays small: upwards (on for
        // x > m) when the values above m are nearer than those below, else
        // downwards (on for x < m) as 1 - step, its 1 moved into unit 0.
        // For selector width (xs = 1/(w+1), gaps ~1/w^2) the downward input
        // is at most about 4w, exact to any max_seq_len; upwards it would be
        // 4w^2 (wrong from max_seq_len 2512).
        double gap = xs[k] - xs[k - 1], s = 4.0 / gap, mid = 0.5 * (xs[k] + xs[k - 1]);
        int down = mid - xs[0] < xs[n - 1] - mid;
        double sg = down ? -1.0 : 1.0;
        int a = 1 + 2 * j, b = 2 + 2 * j;
        j++;
        m.w_in[(size_t)in * H + a] = (float)(sg * s);
        m.w_in[(size_t)in * H + b] = (float)(sg * s);
        m.w_in[(size_t)one * H + a] = (float)(-sg * s * mid + 0.5);
        m.w_in[(size_t)one * H + b] = (float)(-sg * s * mid - 0.5);
        // the step's effect: f(x) gains d above m; downwards, d is in unit 0
        // and the unit takes it away below m
        if (out_num >= 0) {
            float d = (float)(f_num[k] - f_num[k - 1]);
            m.w_out[(size_t)a * C + out_num] += (float)sg * d;
            m.w_out[(size_t)b * C + out_num] -= (float)sg * d;
            if (down) m.w_out[out_num] += d;
        } else {
            float g = (float)sg;
            if (out_cat[k] >= 0) {
                m.w_out[(size_t)a * C + out_cat[k]] += g, m.w_out[(size_t)b * C + out_cat[k]] -= g;
                if (down) m.w_out[out_cat[k]] += 1;
            }
            if (out_cat[k - 1] >= 0) {
                m.w_out[(size_t)a * C + out_cat[k - 1]] -= g, m.w_out[(size_t)b * C + out_cat[k - 1]] += g;
                if (down) m.w_out[out_cat[k - 1]] -= 1;
            }
        }
    }
    return m;
}

build_head block_attend(int C, int layer, int bos, int one, const attend_spec *s, float sharpness) {
    int nq = s->nq, nk = s->nk, nv = s->nv, dq = nq + 1, dv = nv + 1;
    build_head h = {.layer = layer, .d_qk = dq, .d_v = dv, .scale = sharpness};
    h.wq = build_zeros((size_t)C * dq);
    h.wk = build_zeros((size_t)C * dq);
    h.wv = build_zeros((size_t)C * dv);
    h.wo = build_zeros((size_t)dv * C);
    if (!build_head_ok(&h)) return h;
    // A dimension of -1 stands for none: its indicator is one - sum of the
    // value dimensions (1 exactly when no value is set).
    for (int q = 0; q < nq; q++) {
        if (s->q_dims[q] >= 0) {
            h.wq[(size_t)s->q_dims[q] * dq + q] = 1;
            continue;
        }
        h.wq[(size_t)one * dq + q] += 1;
        for (int o = 0; o < nq; o++)
            if (s->q_dims[o] >= 0) h.wq[(size_t)s->q_dims[o] * dq + q] -= 1;
    }
    // The last query/key dimension carries BOS: every query (one = 1) gives
    // BOS half a selected key's score (all of it with always_bos), so BOS
    // wins only when nothing is selected; the BOS query gives it 4x, so it
    // attends to BOS alone whatever its own sop values are.
    h.wq[(size_t)one * dq + nq] = 1;
    h.wq[(size_t)bos * dq + nq] = 4;
    int knone = -1;
    for (int k = 0; k < nk; k++)
        if (s->k_dims[k] < 0) knone = k;
    for (int k = 0; k < nk; k++)
        for (int q = 0; q < nq; q++) {
            float row_none = knone >= 0 ? s->pred[(size_t)knone * nq + q] : 0;
            if (s->k_dims[k] >= 0) h.wk[(size_t)s->k_dims[k] * dq + q] = s->pred[(size_t)k * nq + q] - row_none;
            else h.wk[(size_t)one * dq + q] += row_none;
        }
    h.wk[(size_t)bos * dq + nq] = s->always_bos ? 1.0f : 0.5f;
    if (s->k_bos >= 0) // cancel the key sop's own value at BOS (one is 0 there)
        for (int q = 0; q < nq; q++)
            h.wk[(size_t)bos * dq + q] -=
                s->pred[(size_t)s->k_bos * nq + q] - (knone >= 0 ? s->pred[(size_t)knone * nq + q] : 0);
    for (int i = 0; i < nv; i++) {
        h.wv[(size_t)s->val_in[i] * dv + i] = 1;
        h.wo[(size_t)i * C + s->val_out[i]] = 1;
    }
    h.wv[(size_t)bos * dv + nv] = 1;
    if (s->v_bos >= 0) h.wv[(size_t)bos * dv + s->v_bos] -= 1;
    if (nv == 1 && s->v_bos_num != 0) h.wv[(size_t)bos * dv + 0] -= (float)s->v_bos_num;
    if (s->def_out >= 0) h.wo[(size_t)nv * C + s->def_out] = (float)s->def_value;
    return h;
}

build_mlp block_linear(int C, int layer, int one, int n_in, const int *in, const double *w, const double *bound,
                       double c, int out) {
    build_mlp m = mlp_new(C, layer, 2 * n_in + 1);
    if (!build_mlp_ok(&m)) return m;
    int H = m.hidden;
    for (int a = 0; a < n_in; a++) {
        // relu(x) - relu(-x) = x, each unit shifted down by the bound at BOS
        // (one = 0) so that BOS stays 0 whatever x holds there.
        double M = bound[a] + 1;
        for (int sgn = 0; sgn < 2; sgn++) {
            int h = 2 * a + sgn;
            m.w_in[(size_t)in[a] * H + h] = sgn ? -1.0f : 1.0f;
            m.w_in[(size_t)one * H + h] = (float)M;
            m.b_in[h] = (float)-M;
            m.w_out[(size_t)h * C + out] = (float)(sgn ? -w[a] : w[a]);
        }
    }
    m.w_in[(size_t)one * H + 2 * n_in] = 1;
    m.w_out[(size_t)(2 * n_in) * C + out] = (float)c;
    return m;
}
