/*
** cli/cmd_grad.c: `mech grad`: the gradient of a metric (loss, logit
** difference, log-probability) at hook points and, with --params, at every
** parameter, written as .npz arrays named after the hooks and the model
** file's tensors, so they can be compared with PyTorch.
*/
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 256
#define MAX_CACHE 64

// A token given as an id, or (a model with a tokenizer) text of one token.
static int token_arg(const char *cmd, const char *opt, const char *s, const mech_tokenizer *tok, int V, int32_t *out) {
    int digits = *s != 0 && strlen(s) <= 9;
    for (const char *p = s; digits && *p; p++) digits = *p >= '0' && *p <= '9';
    if (digits) {
        long id = strtol(s, NULL, 10);
        if (id >= V) return cli_usage(cmd, "%s %ld: expected a token id below %d", opt, id, V);
        *out = (int32_t)id;
        return 0;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    mech_err err = {0};
    int bad = !tok || mech_tokenizer_encode(tok, s, strlen(s), 0, &ids, &n, &err) || n != 1 || ids[0] >= V;
    if (!bad) *out = ids[0];
    mech_free(ids);
    return bad ? cli_usage(cmd, "%s '%s' is not one token (an id, or text of one token such as \" Mary\")", opt, s) : 0;
}

static int add_array(mech_npz *z, const char *name, const float *data, int ndim, const int64_t *shape, mech_err *err) {
    return mech_npz_add(z, name, data, ndim, shape, err) != MECH_OK;
}

int cmd_grad(int argc, char **argv) {
    const char *cmd = "grad", *model = NULL, *out_path = NULL, *metric_s = NULL, *answer_s = NULL, *wrong_s = NULL,
               *pos_s = NULL, *v;
    const char *texts[MAX_SEQS], *caches[MAX_CACHE];
    int is_ids[MAX_SEQS], n_seq = 0, n_cache = 0, params = 0;
    long pos = -1;
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, is_ids, &n_seq, MAX_SEQS)) ||
                 (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--metric", &metric_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--answer", &answer_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--wrong", &wrong_s))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--pos", &pos_s))) {
            if (r < 0 || cli_int(cmd, "--pos", pos_s, -100000000, 100000000, &pos)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--out", &out_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--cache", &v))) {
            if (r < 0) return 2;
            if (n_cache == MAX_CACHE) return cli_usage(cmd, "at most %d --cache patterns", MAX_CACHE);
            caches[n_cache++] = v;
        } else if (!strcmp(argv[i], "--params")) params = 1;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!n_seq)
        return cli_usage(cmd, "give the input with --prompt TEXT, --ids 1,2,3 or (compiled RASP models) --input \"a b c\"");
    if (!metric_s) return cli_usage(cmd, "--metric is required: loss, logit_diff or logprob");
    mech_metric_kind kind;
    if (!strcmp(metric_s, "loss")) kind = MECH_METRIC_LOSS;
    else if (!strcmp(metric_s, "logit_diff")) kind = MECH_METRIC_LOGIT_DIFF;
    else if (!strcmp(metric_s, "logprob")) kind = MECH_METRIC_LOGPROB;
    else return cli_usage(cmd, "--metric '%s': expected loss, logit_diff or logprob", metric_s);
    if (kind == MECH_METRIC_LOSS) {
        if (answer_s || wrong_s || pos_s)
            return cli_usage(cmd, "%s: --metric loss is the mean next-token loss over every position; it takes no "
                             "--answer, --wrong or --pos", answer_s ? "--answer" : wrong_s ? "--wrong" : "--pos");
    } else {
        if (!answer_s) return cli_usage(cmd, "--metric %s needs --answer TOKEN", metric_s);
        if (kind == MECH_METRIC_LOGIT_DIFF && !wrong_s) return cli_usage(cmd, "--metric logit_diff needs --wrong TOKEN");
        if (kind == MECH_METRIC_LOGPROB && wrong_s)
            return cli_usage(cmd, "--wrong: --metric logprob is one token's log-probability (use logit_diff for two)");
    }
    if (!out_path) return cli_usage(cmd, "--out FILE.npz is required");
    if (!cli_has_ext(out_path, ".npz"))
        return cli_usage(cmd, "--out '%s': the gradients are written as .npz; name the file FILE.npz", out_path);
    int n_prompt = 0;
    for (int s = 0; s < n_seq; s++) n_prompt += is_ids[s] == 0;
    if (bo.special && !n_prompt) return cli_usage(cmd, "--allow-special applies to --prompt text (there is none)");
    for (int s = 0; s < n_seq; s++) { // id lists before the model: usage errors first
        int32_t *ids = NULL;
        size_t n = 0;
        if (is_ids[s] == 1 && cli_ids(cmd, texts[s], &ids, &n)) return 2;
        free(ids);
    }

    mech_err err = {0};
    mech_model *m = NULL;
    mech_run *run = NULL;
    mech_npz *z = NULL;
    mech_model_tensor *pt = NULL;
    cli_inputs in = {0};
    int32_t *ans = NULL, *wr = NULL;
    int rc = 1, have_in = 0;
    if (mech_model_load(model, &m, &err)) goto fail;
    if ((rc = cli_batch(cmd, m, texts, is_ids, n_seq, &bo, &in))) goto done;
    have_in = 1;
    rc = 1;
    int B = in.B, T = in.T;
    mech_metric mt = {.kind = kind, .pos = (int)pos};
    if (kind != MECH_METRIC_LOSS) {
        int32_t a = 0, w = 0;
        if ((rc = token_arg(cmd, "--answer", answer_s, in.tok, m->cfg.d_vocab, &a))) goto done;
        if (wrong_s && (rc = token_arg(cmd, "--wrong", wrong_s, in.tok, m->cfg.d_vocab, &w))) goto done;
        rc = 1;
        ans = malloc((size_t)B * sizeof *ans), wr = malloc((size_t)B * sizeof *wr);
        if (!ans || !wr) {
            mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int b = 0; b < B; b++) ans[b] = a, wr[b] = w;
        mt.answer = ans;
        mt.wrong = wrong_s ? wr : NULL;
        for (int b = 0; b < B; b++)
            if (pos >= in.len[b] || pos < -(long)in.len[b]) {
                rc = cli_usage(cmd, "--pos %ld: sequence %d has %d token%s: expected %d to %d", pos, b + 1, in.len[b],
                               cli_s(in.len[b]), -in.len[b], in.len[b] - 1);
                goto done;
            }
    } else {
        int terms = 0;
        for (int b = 0; b < B; b++) terms += in.len[b] - 1;
        if (!terms) {
            rc = cli_usage(cmd, "--metric loss needs a sequence of at least 2 tokens (each predicts the next)");
            goto done;
        }
    }
    mech_run_bytes need;
    if (mech_run_memory(m, B, T, NULL, 0, 0, &need, &err)) goto fail;
    if (mech_run_new(m, B, T, &run, &err) || mech_run_set_mask(run, in.mask, &err) ||
        mech_run_enable_grad(run, params ? MECH_GRAD_PARAMS : MECH_GRAD_ACTS, &err))
        goto fail;
    for (int c = 0; c < n_cache; c++)
        if (mech_run_cache_grad(run, caches[c], &err)) {
            rc = err.code == MECH_ERR_ARG ? cli_usage(cmd, "--cache: %s", err.msg) : cli_fail(cmd, &err);
            goto done;
        }
    double value;
    if (mech_run_forward(run, in.ids, &err) || mech_run_backward(run, &mt, &value, &err)) goto fail;
    printf("%s = %.9g\n", metric_s, value);
    if (mech_npz_create(out_path, &z, &err)) goto fail;
    float fv = (float)value;
    if (add_array(z, "metric", &fv, 0, NULL, &err)) goto fail;
    size_t n = 0;
    const mech_tensor *g = mech_run_grads_cached(run, &n);
    for (size_t i = 0; i < n; i++)
        if (add_array(z, g[i].name, g[i].data, g[i].ndim, g[i].shape, &err)) goto fail;
    size_t np = 0;
    if (params) {
        if (mech_model_tensors(mech_run_param_grads(run), &pt, &np, &err)) goto fail;
        for (size_t i = 0; i < np; i++)
            if (add_array(z, pt[i].name, pt[i].data, pt[i].ndim, pt[i].shape, &err)) goto fail;
    }
    int64_t shape[2] = {B, T};
    if (mech_npz_add_i32(z, "tokens", in.ids, 2, shape, &err)) goto fail;
    if (in.mask) {
        float *fm = malloc((size_t)B * T * sizeof *fm);
        for (size_t i = 0; fm && i < (size_t)B * T; i++) fm[i] = in.mask[i];
        mech_status st = fm ? mech_npz_add(z, "attention_mask", fm, 2, shape, &err)
                            : mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        free(fm);
        if (st) goto fail;
    }
    mech_npz *zz = z;
    z = NULL;
    if (mech_npz_close(zz, &err)) goto fail;
    fprintf(stderr, "wrote the metric, %zu hook gradient%s and %zu parameter gradient%s to %s\n", n, cli_s((long long)n),
            np, cli_s((long long)np), out_path);
    rc = 0;
    goto done;
fail:
    rc = err.code == MECH_ERR_RANGE ? cli_usage(cmd, "%s", err.msg) : cli_fail(cmd, &err);
done:
    mech_npz_abort(z);
    mech_free(pt);
    free(ans);
    free(wr);
    if (have_in) cli_inputs_free(&in);
    mech_run_free(run);
    mech_model_free(m);
    return rc;
}
