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

// A compiled model's output on each sequence, decoded like `mech rasp`
// prints it: the sequences must be BOS followed by vocab tokens.
static int print_compiled(const char *cmd, const mech_model *m, const mech_rasp_program *p, const cli_inputs *inp) {
    mech_err err = {0};
    mech_rasp_runner *r = NULL;
    size_t nv = 0;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int T = inp->T, n = T - 1, rc = 0;
    for (int b = 0; b < inp->B; b++) {
        const int32_t *row = inp->ids + (size_t)b * T + inp->start[b];
        if (row[0] != 0 || inp->len[b] < 2)
            return cli_usage(cmd, "sequence %d: a compiled model's input is BOS (id 0) and then 1 or more vocab tokens "
                             "(ids 1..%zu); --input \"a b c\" builds it", b + 1, nv);
        for (int t = 1; t < inp->len[b]; t++)
            if (row[t] < 1 || (size_t)row[t] > nv)
                return cli_usage(cmd, "sequence %d, position %d: id %d is not a vocab token (ids 1..%zu)", b + 1, t,
                                 (int)row[t], nv);
    }
    mech_rasp_value *in = mech_malloc((size_t)n * sizeof *in), *out = mech_malloc((size_t)n * sizeof *out);
    if (!in || !out) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (mech_rasp_runner_new(p, m, &r, &err)) goto fail;
    // one sequence at a time: each is decoded at its own length
    for (int b = 0; b < inp->B; b++) {
        const int32_t *row = inp->ids + (size_t)b * T + inp->start[b];
        size_t len = (size_t)inp->len[b] - 1;
        for (size_t t = 0; t < len; t++) in[t] = vocab[row[t + 1] - 1];
        if (mech_rasp_runner_run(r, in, 1, len, out, &err)) goto fail;
        mech_buf js = {0};
        mech_rasp_values_json(&js, out, len);
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
    int is_ids[MAX_SEQS], n_seq = 0, n_cache = 0, k_given = 0;
    long k = 5;
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, is_ids, &n_seq, MAX_SEQS)) ||
                   (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--top-k", &v))) {
            if (r < 0 || cli_int(cmd, "--top-k", v, 1, 1000, &k)) return 2;
            k_given = 1;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--logits", &logits_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--out", &out_path))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--cache", &v))) {
            if (r < 0) return 2;
            if (n_cache == MAX_CACHE) return cli_usage(cmd, "at most %d --cache patterns", MAX_CACHE);
            caches[n_cache++] = v;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!n_seq)
        return cli_usage(cmd, "give the input with --prompt TEXT, --ids 1,2,3 or (compiled RASP models) --input \"a b c\"");
    if (n_cache && !out_path) return cli_usage(cmd, "--cache needs --out FILE.npz to write the activations to");
    if (out_path && !cli_has_ext(out_path, ".npz"))
        return cli_usage(cmd, "--out '%s': the cached activations are written as .npz; name the file FILE.npz", out_path);
    if (logits_path && !cli_has_ext(logits_path, ".npy"))
        return cli_usage(cmd, "--logits '%s': the logits are written as .npy; name the file FILE.npy", logits_path);
    int n_prompt = 0;
    for (int s = 0; s < n_seq; s++) n_prompt += is_ids[s] == 0;
    if (bo.special && !n_prompt) return cli_usage(cmd, "--allow-special applies to --prompt text (there is none)");
    if (out_path && !n_cache) caches[n_cache++] = "*";

    mech_err err = {0};
    mech_model *m = NULL;
    mech_rasp_program *prog = NULL;
    mech_run *run = NULL;
    cli_inputs in = {0};
    int rc = 1;
    // Token id lists are checked before the model is loaded: usage errors first.
    for (int s = 0; s < n_seq; s++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (is_ids[s] == 1 && cli_ids(cmd, texts[s], &ids, &n)) return 2;
        free(ids);
    }
    if (mech_model_load(model, &m, &err)) goto fail;
    if ((rc = cli_compiled_program(cmd, m, model, &prog))) goto done;
    if (prog && k_given) {
        rc = cli_usage(cmd, "--top-k: a compiled RASP model prints its decoded output, not next-token predictions");
        goto done;
    }
    if ((rc = cli_batch(cmd, m, texts, is_ids, n_seq, &bo, &in))) goto done;
    rc = 1;
    const mech_tokenizer *tok = in.tok;
    int B = in.B, T = in.T, V = m->cfg.d_vocab;
    // Everything the run will hold, before any of it is allocated.
    mech_run_bytes need;
    if (mech_run_memory(m, B, T, caches, n_cache, 0, &need, &err)) goto fail;
    if (mech_run_new(m, B, T, &run, &err) || mech_run_set_mask(run, in.mask, &err)) goto fail;
    // The top-k reads each sequence's last row only: without --logits that
    // is all the unembedding computes.
    if (!logits_path && mech_run_set_logits_rows(run, MECH_LOGITS_LAST, 1, &err)) goto fail;
    for (int c = 0; c < n_cache; c++)
        if (mech_run_cache(run, caches[c], &err)) goto fail;
    if (mech_run_forward(run, in.ids, &err)) goto fail;
    const float *logits = mech_run_logits(run);
    if (prog) {
        if ((rc = print_compiled(cmd, m, prog, &in))) goto done;
        rc = 1;
    } else {
        for (int s = 0; s < B; s++) {
            // each sequence's own last token (padding reads 0)
            size_t last = (size_t)s * T + in.start[s] + in.len[s] - 1;
            printf("sequence %d: %d token%s; next token after ", s + 1, in.len[s], cli_s(in.len[s]));
            print_token(tok, in.ids[last]);
            printf("\n");
            cli_print_top_k(tok, logits + (logits_path ? last : (size_t)s) * V, V, (int)k);
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
        if (add_tokens(z, m, tok, prog, in.ids, B, T, &err)) {
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
        fprintf(stderr, "wrote %zu cached activation%s and the tokens to %s\n", n, n == 1 ? "" : "s", out_path);
    }
    rc = 0;
    goto done;
fail:
    if (err.code || err.msg[0]) rc = cli_fail(cmd, &err);
    else fprintf(stderr, "mech run: error: out of memory\n");
done:
    mech_run_free(run);
    mech_rasp_program_free(prog);
    cli_inputs_free(&in);
    mech_model_free(m);
    return rc;
}
