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
    const char *prompts[MAX_SEQS], *idlists[MAX_SEQS], *caches[MAX_CACHE];
    int order[MAX_SEQS]; // 0: prompt, 1: ids, in the order given
    int n_seq = 0, n_prompt = 0, n_ids = 0, n_cache = 0, special = 0;
    long k = 5, threads = 0;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--prompt", &v))) {
            if (r < 0) return 2;
            if (n_seq == MAX_SEQS) return cli_usage(cmd, "at most %d sequences", MAX_SEQS);
            order[n_seq++] = 0;
            prompts[n_prompt++] = v;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--ids", &v))) {
            if (r < 0) return 2;
            if (n_seq == MAX_SEQS) return cli_usage(cmd, "at most %d sequences", MAX_SEQS);
            order[n_seq++] = 1;
            idlists[n_ids++] = v;
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
        } else if (!strcmp(argv[i], "--allow-special")) special = 1;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
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
    mech_tokenizer *own_tok = NULL;
    mech_run *run = NULL;
    int32_t *seqs[MAX_SEQS] = {0};
    size_t lens[MAX_SEQS] = {0};
    int32_t *ids = NULL;
    int rc = 1;
    // Token id lists are checked before the model is loaded: usage errors first.
    for (int s = 0, d = 0; s < n_seq; s++)
        if (order[s] == 1 && cli_ids(cmd, idlists[d++], &seqs[s], &lens[s])) {
            rc = 2;
            goto done;
        }
    if (mech_model_load(model, &m, &err)) goto fail;
    const mech_tokenizer *tok = m->tok;
    if (!tok && n_prompt) {
        if (mech_tokenizer_gpt2(&own_tok, &err)) goto fail;
        tok = own_tok;
    }
    if (!tok && !own_tok && mech_tokenizer_gpt2(&own_tok, &err) == MECH_OK) tok = own_tok;
    for (int s = 0, p = 0; s < n_seq; s++) {
        if (order[s] == 0) {
            const char *text = prompts[p++];
            if (mech_tokenizer_encode(tok, text, strlen(text), special, &seqs[s], &lens[s], &err)) goto fail;
        }
        if (lens[s] == 0) {
            rc = cli_usage(cmd, "sequence %d is empty", s + 1);
            goto done;
        }
        if (lens[s] != lens[0]) {
            rc = cli_usage(cmd, "sequence %d has %zu tokens but sequence 1 has %zu: a batch needs equal lengths", s + 1,
                           lens[s], lens[0]);
            goto done;
        }
    }
    int B = n_seq, T = (int)lens[0], V = m->cfg.d_vocab;
    if (lens[0] > (size_t)m->cfg.n_ctx) {
        mech_err_set(&err, MECH_ERR_RANGE, "%zu tokens exceed the model's context of %d", lens[0], m->cfg.n_ctx);
        goto fail;
    }
    ids = malloc((size_t)B * T * sizeof *ids);
    if (!ids) goto fail;
    for (int s = 0; s < B; s++) memcpy(ids + (size_t)s * T, seqs[s], (size_t)T * sizeof *ids);
    if (mech_run_new(m, B, T, &run, &err)) goto fail;
    if (threads && mech_run_set_threads(run, (int)threads, &err)) goto fail;
    for (int c = 0; c < n_cache; c++)
        if (mech_run_cache(run, caches[c], &err)) goto fail;
    if (mech_run_forward(run, ids, &err)) goto fail;
    const float *logits = mech_run_logits(run);
    for (int s = 0; s < B; s++) {
        printf("sequence %d: %d tokens; next token after ", s + 1, T);
        print_token(tok, ids[(size_t)s * T + T - 1]);
        printf("\n");
        cli_print_top_k(tok, logits + ((size_t)s * T + T - 1) * V, V, (int)k);
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
        if (mech_npz_close(z, &err)) goto fail;
        fprintf(stderr, "wrote %zu cached activations to %s\n", n, out_path);
    }
    rc = 0;
    goto done;
fail:
    if (err.code || err.msg[0]) rc = cli_fail(cmd, &err);
    else fprintf(stderr, "mech run: error: out of memory\n");
done:
    for (int s = 0; s < n_seq; s++) free(seqs[s] ? (void *)seqs[s] : NULL);
    free(ids);
    mech_run_free(run);
    mech_tokenizer_free(own_tok);
    mech_model_free(m);
    return rc;
}
