/*
** cli/cmd_run.c: `mech run`: one forward pass from the command line: top-k
** next tokens, logits as .npy, cached hooks as .npz.
*/
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SEQS 256
#define MAX_CACHE 64

// Indices of the k largest logits, best first.
static void top_k(const float *logits, int V, int k, int *idx) {
    int n = 0;
    for (int i = 0; i < k; i++) idx[i] = 0;
    for (int v = 0; v < V; v++) {
        if (n < k) n++;
        else if (logits[v] <= logits[idx[k - 1]]) continue;
        int j = n - 1;
        while (j > 0 && logits[idx[j - 1]] < logits[v]) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

static void print_token(const mech_tokenizer *tok, int32_t id) {
    mech_buf b = {0};
    cli_token_text(&b, tok, id);
    printf("%-14s", b.data ? b.data : "?");
    mech_buf_free(&b);
}

void cli_print_top_k(const mech_tokenizer *tok, const float *logits, int V, int k) {
    if (k > V) k = V;
    int *idx = malloc((size_t)k * sizeof *idx);
    if (!idx) return;
    top_k(logits, V, k, idx);
    double mx = logits[idx[0]], z = 0;
    for (int v = 0; v < V; v++) z += exp((double)logits[v] - mx);
    for (int i = 0; i < k; i++) {
        printf("  %2d. %6d  ", i + 1, idx[i]);
        print_token(tok, idx[i]);
        printf("  logit %9.4f  p %.3g\n", logits[idx[i]], exp((double)logits[idx[i]] - mx) / z);
    }
    free(idx);
}

// A compiled RASP model on one input: decoded like `mech rasp` prints.
static int run_rasp(const char *cmd, const char *model, const char *input) {
    mech_err err = {0};
    mech_model *m = NULL;
    mech_rasp_program *p = NULL;
    mech_rasp_runner *r = NULL;
    mech_rasp_value *in = NULL, *out = NULL;
    size_t n = 0;
    int rc = 1;
    if (mech_model_load(model, &m, &err)) return cli_fail(cmd, &err);
    const char *src = mech_model_meta(m, "mech.rasp.source");
    if (!src) {
        mech_err_set(&err, MECH_ERR_ARG, "%s: not a compiled RASP model (no mech.rasp.source metadata); "
                     "--input is for models from `mech compile`", model);
        goto fail;
    }
    if (mech_rasp_parse(model, src, strlen(src), &p, &err) || mech_rasp_runner_new(p, m, &r, &err) ||
        mech_rasp_input_parse(p, input, &in, &n, &err))
        goto fail;
    if (n == 0) {
        printf("[]\n");
        rc = 0;
        goto done;
    }
    out = mech_malloc(n * sizeof *out);
    if (!out) goto fail;
    if (mech_rasp_runner_run(r, in, 1, n, out, &err)) goto fail;
    mech_buf b = {0};
    mech_rasp_values_json(&b, out, n);
    printf("%s\n", b.data);
    mech_buf_free(&b);
    rc = 0;
    goto done;
fail:
    rc = cli_fail(cmd, &err);
done:
    mech_free(in);
    mech_free(out);
    mech_rasp_runner_free(r);
    mech_rasp_program_free(p);
    mech_model_free(m);
    return rc;
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run", *model = NULL, *logits_path = NULL, *out_path = NULL, *v, *rasp_input = NULL;
    const char *texts[MAX_SEQS], *caches[MAX_CACHE];
    int is_ids[MAX_SEQS], n_seq = 0, n_cache = 0;
    long k = 5, threads = 0;
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, is_ids, &n_seq, MAX_SEQS)) ||
                 (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--top-k", &v))) {
            if (r < 0 || cli_int(cmd, "--top-k", v, 1, 1000, &k)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_int(cmd, "--threads", v, 0, 256, &threads)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--logits", &logits_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--out", &out_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--cache", &v))) {
            if (r < 0) return 2;
            if (n_cache == MAX_CACHE) return cli_usage(cmd, "at most %d --cache patterns", MAX_CACHE);
            caches[n_cache++] = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--input", &rasp_input))) {
            if (r < 0) return 2;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (rasp_input) {
        if (n_seq) return cli_usage(cmd, "--input (a compiled RASP model's input) goes without --prompt/--ids");
        return run_rasp(cmd, model, rasp_input);
    }
    if (!n_seq) return cli_usage(cmd, "give the input with --prompt TEXT, --ids 1,2,3 or (compiled RASP models) --input \"a b c\"");
    if (n_cache && !out_path) return cli_usage(cmd, "--cache needs --out FILE.npz to write the activations to");
    if (out_path && !n_cache) caches[n_cache++] = "*";

    mech_err err = {0};
    mech_model *m = NULL;
    mech_run *run = NULL;
    cli_inputs in = {0};
    int rc = 1;
    // Token id lists are checked before the model is loaded: usage errors first.
    for (int s = 0; s < n_seq; s++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (is_ids[s] && cli_ids(cmd, texts[s], &ids, &n)) return 2;
        free(ids);
    }
    if (mech_model_load(model, &m, &err)) goto fail;
    if ((rc = cli_batch(cmd, m, texts, is_ids, n_seq, &bo, &in))) goto done;
    rc = 1;
    const mech_tokenizer *tok = in.tok;
    int B = in.B, T = in.T, V = m->cfg.d_vocab;
    if (mech_run_new(m, B, T, &run, &err) || mech_run_set_mask(run, in.mask, &err)) goto fail;
    if (threads && mech_run_set_threads(run, (int)threads, &err)) goto fail;
    for (int c = 0; c < n_cache; c++)
        if (mech_run_cache(run, caches[c], &err)) goto fail;
    if (mech_run_forward(run, in.ids, &err)) goto fail;
    const float *logits = mech_run_logits(run);
    for (int s = 0; s < B; s++) {
        // each sequence's own last token (padding reads 0)
        size_t last = (size_t)s * T + in.start[s] + in.len[s] - 1;
        printf("sequence %d: %d tokens; next token after ", s + 1, in.len[s]);
        print_token(tok, in.ids[last]);
        printf("\n");
        cli_print_top_k(tok, logits + last * V, V, (int)k);
    }
    if (logits_path) {
        int64_t shape[3] = {B, T, V};
        if (mech_npy_write(logits_path, logits, 3, shape, &err)) goto fail;
        fprintf(stderr, "wrote logits [%d, %d, %d] to %s\n", B, T, V, logits_path);
    }
    if (out_path) {
        size_t n = 0;
        const mech_tensor *cached = mech_run_cached(run, &n);
        mech_npz *z = NULL;
        if (mech_npz_create(out_path, &z, &err)) goto fail;
        for (size_t i = 0; i < n; i++)
            if (mech_npz_add(z, cached[i].name, cached[i].data, cached[i].ndim, cached[i].shape, &err)) {
                mech_npz_abort(z);
                goto fail;
            }
        if (in.mask) {
            // which positions are real tokens (1) and which padding (0, whose activations read 0)
            float *fm = malloc((size_t)B * T * sizeof *fm);
            for (size_t i = 0; fm && i < (size_t)B * T; i++) fm[i] = in.mask[i];
            int64_t shape[2] = {B, T};
            mech_status st = fm ? mech_npz_add(z, "attention_mask", fm, 2, shape, &err) : MECH_ERR_NOMEM;
            free(fm);
            if (st) {
                mech_npz_abort(z);
                goto fail;
            }
        }
        if (mech_npz_close(z, &err)) goto fail;
        fprintf(stderr, "wrote %zu cached activations to %s\n", n, out_path);
    }
    rc = 0;
    goto done;
fail:
    if (err.code || err.msg[0]) rc = cli_fail(cmd, &err);
    else fprintf(stderr, "mech run: error: out of memory\n");
done:
    mech_run_free(run);
    cli_inputs_free(&in);
    mech_model_free(m);
    return rc;
}
