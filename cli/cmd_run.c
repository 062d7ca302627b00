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

// path ends in ext (".npy"): the file is written in that format only.
static int has_ext(const char *path, const char *ext) {
    size_t n = strlen(path), e = strlen(ext);
    return n > e && !strcmp(path + n - e, ext);
}

// A compiled model's output on each sequence, decoded like `mech rasp`
// prints it: the sequences must be BOS followed by vocab tokens.
static int print_compiled(const char *cmd, const mech_model *m, const mech_rasp_program *p, const int32_t *ids, int B,
                          int T) {
    mech_err err = {0};
    mech_rasp_runner *r = NULL;
    size_t nv = 0;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int n = T - 1, rc = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *row = ids + (size_t)b * T;
        if (row[0] != 0 || n < 1)
            return cli_usage(cmd, "sequence %d: a compiled model's input is BOS (id 0) and then 1 or more vocab tokens "
                             "(ids 1..%zu); --input \"a b c\" builds it", b + 1, nv);
        for (int t = 1; t < T; t++)
            if (row[t] < 1 || (size_t)row[t] > nv)
                return cli_usage(cmd, "sequence %d, position %d: id %d is not a vocab token (ids 1..%zu)", b + 1, t,
                                 (int)row[t], nv);
    }
    mech_rasp_value *in = mech_malloc((size_t)B * n * sizeof *in), *out = mech_malloc((size_t)B * n * sizeof *out);
    if (!in || !out) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int b = 0; b < B; b++)
        for (int t = 1; t < T; t++) in[(size_t)b * n + t - 1] = vocab[ids[(size_t)b * T + t] - 1];
    if (mech_rasp_runner_new(p, m, &r, &err) || mech_rasp_runner_run(r, in, (size_t)B, (size_t)n, out, &err)) goto fail;
    for (int b = 0; b < B; b++) {
        mech_buf js = {0};
        mech_rasp_values_json(&js, out + (size_t)b * n, (size_t)n);
        printf("%s\n", js.data ? js.data : "[]");
        mech_buf_free(&js);
    }
    goto done;
fail:
    rc = cli_fail(cmd, &err);
done:
    mech_rasp_runner_free(r);
    mech_free(in);
    mech_free(out);
    return rc;
}

// The npz's record of what ran: token ids and their strings [B, T] and, for
// a compiled model, its residual labels [d_model].
static mech_status add_tokens(mech_npz *z, const mech_model *m, const mech_tokenizer *tok, const mech_rasp_program *p,
                              const int32_t *ids, int B, int T, mech_err *err) {
    int64_t shape[2] = {B, T};
    size_t n = (size_t)B * T;
    mech_status st = mech_npz_add_i32(z, "tokens", ids, 2, shape, err);
    if (st) return st;
    char **strs = mech_calloc(n, sizeof *strs);
    mech_buf b = {0};
    if (!strs) return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n && !st; i++) {
        b.len = 0;
        if (p) cli_compiled_token(&b, p, ids[i]);
        else {
            size_t len = 0;
            const char *t = tok ? mech_tokenizer_token(tok, ids[i], &len) : NULL;
            if (t) mech_buf_append(&b, t, len);
            else mech_buf_printf(&b, "<%d>", (int)ids[i]);
        }
        mech_buf_append(&b, "", 0);
        // token bytes may hold NULs: numpy strings cannot, so they end there
        if (b.oom || !(strs[i] = mech_strdup(b.data ? b.data : ""))) st = mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    mech_buf_free(&b);
    if (!st) st = mech_npz_add_str(z, "token_strings", (const char *const *)strs, 2, shape, err);
    for (size_t i = 0; i < n; i++) mech_free(strs[i]);
    mech_free(strs);
    const char *labels = p ? mech_model_meta(m, "mech.rasp.residual") : NULL;
    if (!st && labels) {
        mech_json *j = NULL;
        if (mech_json_parse(labels, strlen(labels), &j, err)) return err->code;
        const char **ls = j->type == MECH_JSON_ARRAY ? mech_calloc(j->n ? j->n : 1, sizeof *ls) : NULL;
        for (size_t i = 0; ls && i < j->n; i++) ls[i] = j->items[i].type == MECH_JSON_STRING ? j->items[i].str : "";
        int64_t sh = ls ? (int64_t)j->n : 0;
        st = ls ? mech_npz_add_str(z, "residual_labels", ls, 1, &sh, err)
                : mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.residual: expected an array of labels");
        mech_free(ls);
        mech_json_free(j);
    }
    return st;
}

int cmd_run(int argc, char **argv) {
    const char *cmd = "run", *model = NULL, *logits_path = NULL, *out_path = NULL, *v;
    const char *texts[MAX_SEQS], *caches[MAX_CACHE];
    int kind[MAX_SEQS]; // 0: --prompt, 1: --ids, 2: --input, in the order given
    int n_seq = 0, n_prompt = 0, n_input = 0, n_cache = 0, special = 0, k_given = 0;
    long k = 5, threads = 0;
    for (int i = 1; i < argc; i++) {
        int r, kd = -1;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--prompt", &v))) kd = 0;
        else if ((r = cli_opt(cmd, argc, argv, &i, "--ids", &v))) kd = 1;
        else if ((r = cli_opt(cmd, argc, argv, &i, "--input", &v))) kd = 2;
        else if ((r = cli_opt(cmd, argc, argv, &i, "--top-k", &v))) {
            if (r < 0 || cli_int(cmd, "--top-k", v, 1, 1000, &k)) return 2;
            k_given = 1;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--threads", &v))) {
            if (r < 0 || cli_threads(cmd, v, &threads)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--logits", &logits_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--out", &out_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--cache", &v))) {
            if (r < 0) return 2;
            if (n_cache == MAX_CACHE) return cli_usage(cmd, "at most %d --cache patterns", MAX_CACHE);
            caches[n_cache++] = v;
        } else if (!strcmp(argv[i], "--allow-special")) special = 1;
        else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
        if (r < 0) return 2;
        if (kd >= 0) {
            if (n_seq == MAX_SEQS) return cli_usage(cmd, "at most %d sequences", MAX_SEQS);
            kind[n_seq] = kd, texts[n_seq++] = v;
            n_prompt += kd == 0, n_input += kd == 2;
        }
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!n_seq)
        return cli_usage(cmd, "give the input with --prompt TEXT, --ids 1,2,3 or (compiled RASP models) --input \"a b c\"");
    if (n_cache && !out_path) return cli_usage(cmd, "--cache needs --out FILE.npz to write the activations to");
    if (out_path && !has_ext(out_path, ".npz"))
        return cli_usage(cmd, "--out '%s': the cached activations are written as .npz; name the file FILE.npz", out_path);
    if (logits_path && !has_ext(logits_path, ".npy"))
        return cli_usage(cmd, "--logits '%s': the logits are written as .npy; name the file FILE.npy", logits_path);
    if (special && !n_prompt) return cli_usage(cmd, "--allow-special applies to --prompt text (there is none)");
    if (out_path && !n_cache) caches[n_cache++] = "*";

    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *own_tok = NULL;
    mech_rasp_program *prog = NULL;
    mech_run *run = NULL;
    int32_t *seqs[MAX_SEQS] = {0};
    size_t lens[MAX_SEQS] = {0};
    int32_t *ids = NULL;
    int rc = 1;
    // Token id lists are checked before the model is loaded: usage errors first.
    for (int s = 0; s < n_seq; s++)
        if (kind[s] == 1 && cli_ids(cmd, texts[s], &seqs[s], &lens[s])) {
            rc = 2;
            goto done;
        }
    if (mech_model_load(model, &m, &err)) goto fail;
    if ((rc = cli_compiled_program(cmd, m, model, &prog))) goto done;
    rc = 1;
    if (n_input && !prog) {
        rc = cli_usage(cmd, "--input is for models from `mech compile`; %s is not one (no mech.rasp.source "
                       "metadata): give --prompt or --ids", model);
        goto done;
    }
    if (prog && n_prompt) {
        rc = cli_usage(cmd, "%s is a compiled RASP model: give its input with --input \"a b c\" (or --ids), "
                       "not --prompt", model);
        goto done;
    }
    if (prog && k_given) {
        rc = cli_usage(cmd, "--top-k: a compiled RASP model prints its decoded output, not next-token predictions");
        goto done;
    }
    const mech_tokenizer *tok = m->tok;
    if (!prog && !tok) {
        if (mech_tokenizer_gpt2(&own_tok, &err)) goto fail;
        tok = own_tok;
    }
    int V = m->cfg.d_vocab;
    for (int s = 0; s < n_seq; s++) {
        if (kind[s] == 0 && mech_tokenizer_encode(tok, texts[s], strlen(texts[s]), special, &seqs[s], &lens[s], &err))
            goto fail;
        if (kind[s] == 2 && (rc = cli_compiled_ids(cmd, prog, texts[s], &seqs[s], &lens[s]))) goto done;
        rc = 1;
        if (lens[s] == 0) {
            rc = cli_usage(cmd, "sequence %d is empty", s + 1);
            goto done;
        }
        for (size_t t = 0; t < lens[s]; t++)
            if (seqs[s][t] >= V) {
                rc = cli_usage(cmd, "sequence %d: token id %d is outside the model's vocabulary (ids 0..%d)", s + 1,
                               (int)seqs[s][t], V - 1);
                goto done;
            }
        if (lens[s] != lens[0]) {
            rc = cli_usage(cmd, "sequence %d has %zu tokens but sequence 1 has %zu: a batch needs equal lengths", s + 1,
                           lens[s], lens[0]);
            goto done;
        }
    }
    int B = n_seq, T = (int)lens[0];
    if (lens[0] > (size_t)m->cfg.n_ctx) {
        rc = cli_usage(cmd, "%zu tokens exceed the model's context of %d", lens[0], m->cfg.n_ctx);
        goto done;
    }
    ids = malloc((size_t)B * T * sizeof *ids);
    if (!ids) goto fail;
    for (int s = 0; s < B; s++) memcpy(ids + (size_t)s * T, seqs[s], (size_t)T * sizeof *ids);
    // Everything the run will hold, before any of it is allocated.
    mech_run_bytes need;
    if (mech_run_memory(m, B, T, caches, n_cache, 0, &need, &err)) goto fail;
    if (mech_run_new(m, B, T, &run, &err)) goto fail;
    for (int c = 0; c < n_cache; c++)
        if (mech_run_cache(run, caches[c], &err)) goto fail;
    if (mech_run_forward(run, ids, &err)) goto fail;
    const float *logits = mech_run_logits(run);
    if (prog) {
        if ((rc = print_compiled(cmd, m, prog, ids, B, T))) goto done;
        rc = 1;
    } else {
        for (int s = 0; s < B; s++) {
            printf("sequence %d: %d token%s; next token after ", s + 1, T, T == 1 ? "" : "s");
            print_token(tok, ids[(size_t)s * T + T - 1]);
            printf("\n");
            cli_print_top_k(tok, logits + ((size_t)s * T + T - 1) * V, V, (int)k);
        }
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
        if (add_tokens(z, m, tok, prog, ids, B, T, &err)) {
            mech_npz_abort(z);
            goto fail;
        }
        if (mech_npz_close(z, &err)) goto fail;
        fprintf(stderr, "wrote %zu cached activation%s and the tokens to %s\n", n, n == 1 ? "" : "s", out_path);
    }
    rc = 0;
    goto done;
fail:
    if (err.code || err.msg[0]) rc = cli_fail(cmd, &err);
    else fprintf(stderr, "mech run: error: out of memory\n");
done:
    for (int s = 0; s < n_seq; s++) free(seqs[s]);
    free(ids);
    mech_run_free(run);
    mech_rasp_program_free(prog);
    mech_tokenizer_free(own_tok);
    mech_model_free(m);
    return rc;
}
