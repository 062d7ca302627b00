/*
** tests/test_cli_grad.c: `mech grad`: the .npz it writes read back and
** compared with the library's own backward pass, and its usage errors.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/core.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX "tests/fixtures/gpt2-tiny"
#define mech(out, ...) mech_test_cli(out, NULL, __VA_ARGS__)

// One float32 member of an uncompressed .npz (as mech writes them): a copy
// of its data (malloc'd: members are not aligned inside the archive),
// element count and shape; NULL when absent.
static float *npz_member(const char *z, size_t len, const char *name, size_t *n, int64_t shape[8], int *ndim) {
    char want[160];
    snprintf(want, sizeof want, "%s.npy", name);
    size_t wl = strlen(want);
    for (size_t at = 30; at + wl <= len; at++) {
        // a local file header: "PK\3\4", 26 more bytes, then the name
        if (memcmp(z + at, want, wl) || memcmp(z + at - 30, "PK\3\4", 4)) continue;
        const char *npy = memmem(z + at, len - at, "\x93NUMPY", 6);
        if (!npy) return NULL;
        unsigned hl = (unsigned char)npy[8] | (unsigned)(unsigned char)npy[9] << 8;
        const char *hdr = npy + 10, *sh = strstr(hdr, "'shape': (");
        assert_non_null(sh);
        assert_non_null(strstr(hdr, "'descr': '<f4'"));
        sh += 10;
        *ndim = 0;
        *n = 1;
        while (*sh != ')') {
            char *e;
            long v = strtol(sh, &e, 10);
            shape[(*ndim)++] = v;
            *n *= (size_t)v;
            sh = e;
            while (*sh == ',' || *sh == ' ') sh++;
        }
        float *copy = malloc((*n ? *n : 1) * sizeof *copy);
        memcpy(copy, hdr + hl, *n * sizeof *copy);
        return copy;
    }
    return NULL;
}

// The member's data, kept until release(): tests compare it and move on.
static float *kept[64];
static int n_kept;

static const float *member(const char *z, size_t len, const char *name, size_t want_n) {
    size_t n;
    int64_t shape[8];
    int ndim;
    float *d = npz_member(z, len, name, &n, shape, &ndim);
    if (!d) fail_msg("%s missing from the .npz", name);
    assert_int_equal(n, want_n);
    assert_true(n_kept < 64);
    return kept[n_kept++] = d;
}

static void release(void) {
    while (n_kept) free(kept[--n_kept]);
}

static void test_cli_grad_matches_library(void **state) {
    char npz[512], *out;
    snprintf(npz, sizeof npz, "%s", mech_test_tmpn("grad.npz"));
    remove(npz);
    assert_int_equal(mech(&out,
                          "grad --model " FIX " --ids 1,2,3,4,5 --ids 6,7,8 --metric logit_diff --answer 3 --wrong 7 "
                          "--pos -2 --cache 'blocks.*.attn.hook_z' --cache blocks.1.hook_q_input --params --out %s",
                          npz),
                     0);
    // the library on the same batch: the second row right-padded by 2
    mech_err err = {0};
    mech_model *m;
    assert_int_equal(mech_model_load(FIX, &m, &err), MECH_OK);
    mech_run *r;
    int32_t ids[10] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0};
    uint8_t mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    int32_t ans[2] = {3, 3}, wr[2] = {7, 7};
    mech_metric mt = {.kind = MECH_METRIC_LOGIT_DIFF, .pos = -2, .answer = ans, .wrong = wr};
    double v;
    if (mech_run_new(m, 2, 5, &r, &err) || mech_run_set_mask(r, mask, &err) ||
        mech_run_enable_grad(r, MECH_GRAD_PARAMS, &err) || mech_run_cache_grad(r, "blocks.*.attn.hook_z", &err) ||
        mech_run_cache_grad(r, "blocks.1.hook_q_input", &err) || mech_run_forward(r, ids, &err) ||
        mech_run_backward(r, &mt, &v, &err))
        fail_msg("%s", err.msg);
    char want_line[64];
    snprintf(want_line, sizeof want_line, "logit_diff = %.9g", v);
    assert_non_null(strstr(out, want_line));
    free(out);
    size_t len;
    char *z = mech_test_read(npz, &len);
    float fv = (float)v;
    mech_assert_close(member(z, len, "metric", 1), &fv, 1, 0, 0, "metric");
    const char *hooks[] = {"blocks.0.attn.hook_z", "blocks.1.attn.hook_z", "blocks.1.hook_q_input"};
    for (int k = 0; k < 3; k++) {
        const mech_tensor *g = mech_run_grad(r, hooks[k]);
        assert_non_null(g);
        size_t n = mech_tensor_numel(g);
        mech_assert_close(member(z, len, hooks[k], n), g->data, n, 1e-7, 1e-5, hooks[k]);
        double mag = 0;
        for (size_t i = 0; i < n; i++) mag += g->data[i] * g->data[i];
        assert_true(mag > 0); // a gradient that is there
    }
    assert_null(npz_member(z, len, "blocks.0.hook_resid_pre", &(size_t){0}, (int64_t[8]){0}, &(int){0}));
    mech_model_tensor *t;
    size_t nt;
    assert_int_equal(mech_model_tensors(mech_run_param_grads(r), &t, &nt, &err), MECH_OK);
    assert_true(nt >= 14);
    for (size_t i = 0; i < nt; i++) {
        size_t n = (size_t)t[i].shape[0] * (t[i].ndim == 2 ? (size_t)t[i].shape[1] : 1);
        mech_assert_close(member(z, len, t[i].name, n), t[i].data, n, 1e-7, 1e-5, t[i].name);
    }
    mech_free(t);
    assert_non_null(member(z, len, "attention_mask", 10));
    assert_non_null(memmem(z, len, "tokens.npy", 10));
    release();
    free(z);
    mech_run_free(r);
    mech_model_free(m);
}

static void test_cli_grad_loss_without_params(void **state) {
    char npz[512], *out;
    snprintf(npz, sizeof npz, "%s", mech_test_tmpn("loss.npz"));
    assert_int_equal(mech(&out, "grad --model " FIX " --ids 5,9,2,7 --metric loss --cache blocks.0.hook_resid_pre --out %s",
                          npz),
                     0);
    free(out);
    mech_err err = {0};
    mech_model *m;
    assert_int_equal(mech_model_load(FIX, &m, &err), MECH_OK);
    mech_run *r;
    int32_t ids[4] = {5, 9, 2, 7};
    mech_metric mt = {.kind = MECH_METRIC_LOSS};
    double v;
    if (mech_run_new(m, 1, 4, &r, &err) || mech_run_enable_grad(r, MECH_GRAD_ACTS, &err) ||
        mech_run_cache_grad(r, "blocks.0.hook_resid_pre", &err) || mech_run_forward(r, ids, &err) ||
        mech_run_backward(r, &mt, &v, &err))
        fail_msg("%s", err.msg);
    size_t len;
    char *z = mech_test_read(npz, &len);
    const mech_tensor *g = mech_run_grad(r, "blocks.0.hook_resid_pre");
    mech_assert_close(member(z, len, "blocks.0.hook_resid_pre", 4 * 64), g->data, 4 * 64, 1e-7, 1e-5, "resid_pre");
    float fv = (float)v;
    mech_assert_close(member(z, len, "metric", 1), &fv, 1, 0, 0, "metric");
    assert_true(v > 0);
    assert_null(memmem(z, len, "h.0.attn.c_attn.weight.npy", 26)); // no --params
    assert_null(memmem(z, len, "attention_mask.npy", 18));        // not padded
    release();
    free(z);
    mech_run_free(r);
    mech_model_free(m);
}

static void test_cli_grad_bad_input(void **state) {
    char npz[512];
    snprintf(npz, sizeof npz, "%s", mech_test_tmpn("bad.npz"));
    struct {
        const char *args;
        int code;
        const char *msg;
    } cases[] = {
        {"--ids 1,2,3 --out %s", 2, "--metric is required"},
        {"--ids 1,2,3 --metric foo --out %s", 2, "--metric 'foo'"},
        {"--ids 1,2,3 --metric loss --answer 3 --out %s", 2, "takes no"},
        {"--ids 1,2,3 --metric loss --pos 1 --out %s", 2, "takes no"},
        {"--ids 1,2,3 --metric logit_diff --answer 3 --out %s", 2, "needs --wrong"},
        {"--ids 1,2,3 --metric logprob --out %s", 2, "needs --answer"},
        {"--ids 1,2,3 --metric logprob --answer 3 --wrong 4 --out %s", 2, "--wrong"},
        {"--ids 1,2,3 --metric logprob --answer 5000 --out %s", 2, "below 1000"},
        {"--ids 1,2,3 --metric logprob --answer 3 --pos 3 --out %s", 2, "--pos 3"},
        {"--ids 1,2,3 --metric logprob --answer 3 --pos x --out %s", 2, "--pos"},
        {"--ids 7 --metric loss --out %s", 2, "at least 2 tokens"},
        {"--ids 1,2,3 --metric loss --cache 'no.such.*' --out %s", 2, "no.such.*"},
        {"--ids 1,2,3 --metric loss --frobnicate --out %s", 2, "--frobnicate"},
        {"--ids 1,2,3 --metric loss --out x.txt %.0s", 2, ".npz"},
        {"--ids 1,2,3 --metric loss %.0s", 2, "--out"},
        {"--ids 1,2000 --metric loss --out %s", 2, "2000"},
        {"--metric loss --out %s", 2, "--ids"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[512], *out;
        snprintf(args, sizeof args, cases[i].args, npz);
        int rc = mech(&out, "grad --model " FIX " %s", args);
        if (rc != cases[i].code || !strstr(out, cases[i].msg))
            fail_msg("mech grad %s: exit %d (want %d), output: %s", args, rc, cases[i].code, out);
        free(out);
    }
    char *out;
    assert_int_equal(mech(&out, "grad --model /nonexistent/model --ids 1,2 --metric loss --out %s", npz), 1);
    assert_non_null(strstr(out, "/nonexistent/model"));
    free(out);
    assert_int_equal(mech(&out, "grad --model " FIX " --ids 1,2 --metric loss --out /nonexistent/dir/g.npz"), 1);
    free(out);
    assert_int_equal(mech(&out, "grad --help"), 0);
    assert_non_null(strstr(out, "--params"));
    free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_grad_matches_library),
        cmocka_unit_test(test_cli_grad_loss_without_params),
        cmocka_unit_test(test_cli_grad_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
