/*
** tests/fuzz/fuzz_safetensors.c: a model file from bytes. Each input is
** written to a scratch file and opened with mech_safetensors_open (every
** tensor's bytes are read, so ASan checks that they lie inside the mapping)
** and loaded as a model with mech_model_load (config from the metadata or the
** shapes, shape checks, F16/BF16 conversion). A model that loads and is small
** runs a forward pass on a few tokens: whatever the loader accepted must be
** safe to run. Failures must name the file.
**
** Seeds (tests/fuzz/corpus/safetensors/) are small files written by
** mech_safetensors_write and mech_model_save, so the fuzzer starts past the
** header checks.
*/
#include "tests/fuzz/fuzz.h"

#include "core/core.h"

#include <string.h>

// A forward pass costs about L * T * (12 C^2 + 2 C V) flops; keep it tiny.
static int small(const mech_config *c) {
    double cost = (double)c->n_layers * (12.0 * c->d_model * c->d_model + 3.0 * c->d_model * c->d_mlp +
                                         4.0 * c->n_heads * c->d_head * c->d_model) +
                  2.0 * c->d_model * c->d_vocab;
    return cost < 2e6 && c->n_ctx >= 1;
}

static int run_model(const mech_model *m) {
    mech_err err = {0};
    mech_run *r = NULL;
    int T = m->cfg.n_ctx < 3 ? m->cfg.n_ctx : 3;
    int32_t ids[3] = {0, m->cfg.d_vocab - 1, m->cfg.d_vocab / 2};
    if (mech_run_new(m, 1, T, &r, &err)) return err.msg[0] ? 0 : mech_fuzz_fail("mech_run_new: no message");
    mech_run_set_threads(r, 1, NULL);
    int rc = 0;
    if (mech_run_forward(r, ids, &err)) rc = err.msg[0] ? 0 : mech_fuzz_fail("forward failed without a message");
    else if (!mech_run_logits(r)) rc = mech_fuzz_fail("forward ok but no logits");
    mech_run_free(r);
    return rc;
}

int mech_fuzz_safetensors(const uint8_t *data, size_t size) {
    const char *path = mech_fuzz_path("safetensors", "model.safetensors");
    if (mech_fuzz_write(path, data, size)) return 0;
    mech_err err = {0};
    mech_safetensors *st = NULL;
    if (mech_safetensors_open(path, &st, &err) == MECH_OK) {
        mech_fuzz_accepted = 1;
        volatile unsigned sum = 0;
        for (size_t i = 0; i < st->n; i++) {
            const mech_st_tensor *t = &st->tensors[i];
            const unsigned char *p = t->data;
            for (size_t k = 0; k < t->nbytes; k++) sum += p[k];
            (void)sum;
            if (mech_safetensors_find(st, t->name) != t) return mech_fuzz_fail("find('%s') misses", t->name);
            if ((const char *)t->data + t->nbytes > (const char *)st->map + st->map_len)
                return mech_fuzz_fail("tensor '%s' past the mapping", t->name);
        }
        for (size_t i = 0; i < st->n_meta; i++)
            if (!mech_safetensors_meta(st, st->meta_keys[i])) return mech_fuzz_fail("meta key %zu misses", i);
        mech_safetensors_close(st);
    } else if (err.code == MECH_OK || !err.msg[0] || !strstr(err.msg, path)) {
        return mech_fuzz_fail("open failed without naming the file: '%s'", err.msg);
    }
    mech_model *m = NULL;
    mech_err merr = {0};
    if (mech_model_load(path, &m, &merr) == MECH_OK) {
        int rc = 0;
        mech_err verr = {0};
        if (mech_config_validate(&m->cfg, &verr)) rc = mech_fuzz_fail("loaded an invalid config: %s", verr.msg);
        else if (small(&m->cfg)) rc = run_model(m);
        mech_model_free(m);
        return rc;
    }
    if (merr.code == MECH_OK || !merr.msg[0]) return mech_fuzz_fail("model load failed without a message");
    return 0;
}
