/*
** cli/cmd_tuned_lens.c: `mech tuned-lens`: trains a tuned lens for a model on
** a text file cut into sequences (and/or --prompt/--ids), holds some
** sequences out, prints the KL per layer of the logit lens and of the tuned
** lens on them, and writes the translators as safetensors (atomically:
** Ctrl-C leaves nothing). Read with `mech lens --tuned FILE`.
*/
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SEQS 256

typedef struct seqs {
    int32_t **ids;
    int *len;
    int n, cap;
} seqs;

static int seqs_add(seqs *s, const int32_t *ids, int len) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        int32_t **a = realloc(s->ids, (size_t)cap * sizeof *a);
        int *b = a ? realloc(s->len, (size_t)cap * sizeof *b) : NULL;
        if (a) s->ids = a;
        if (!b) return -1;
        s->len = b, s->cap = cap;
    }
    if (!(s->ids[s->n] = malloc((size_t)len * sizeof *ids))) return -1;
    memcpy(s->ids[s->n], ids, (size_t)len * sizeof *ids);
    s->len[s->n++] = len;
    return 0;
}

static void seqs_free(seqs *s) {
    for (int i = 0; i < s->n; i++) free(s->ids[i]);
    free(s->ids);
    free(s->len);
}

typedef struct progress_ctx {
    cli_progress bar;
    volatile int *stop;
    double kl;
} progress_ctx;

static int on_step(void *user, int step, int steps, double kl) {
    progress_ctx *p = user;
    char detail[64];
    snprintf(detail, sizeof detail, "KL %.4g (mean over layers)", kl);
    cli_progress_detail(&p->bar, step, detail);
    p->kl = kl;
    return *p->stop;
}

int cmd_tuned_lens(int argc, char **argv) {
    const char *cmd = "tuned-lens", *model = NULL, *out = NULL, *text = NULL, *v;
    const char *texts[MAX_SEQS];
    int is_ids[MAX_SEQS], n_seq = 0, heldout_given = 0;
    long seq_len = 32, heldout = 0, steps, batch, seed;
    double lr, momentum, wd;
    mech_tuned_lens_opts o = mech_tuned_lens_defaults();
    steps = o.steps, batch = o.batch, seed = (long)o.seed, lr = o.lr, momentum = o.momentum, wd = o.weight_decay;
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "-o", &out)) || (r = cli_opt(cmd, argc, argv, &i, "--output", &out))) {
            if (r < 0) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--text", &text))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--seq-len", &v))) {
            if (r < 0 || cli_int(cmd, "--seq-len", v, 2, 1 << 20, &seq_len)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--heldout", &v))) {
            if (r < 0 || cli_int(cmd, "--heldout", v, 0, 1 << 30, &heldout)) return 2;
            heldout_given = 1;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--steps", &v))) {
            if (r < 0 || cli_int(cmd, "--steps", v, 1, 1000000, &steps)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--batch", &v))) {
            if (r < 0 || cli_int(cmd, "--batch", v, 1, 4096, &batch)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--seed", &v))) {
            if (r < 0 || cli_int(cmd, "--seed", v, 0, 2147483647, &seed)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--lr", &v))) {
            if (r < 0 || cli_float(cmd, "--lr", v, 1e-12, 1e6, &lr)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--momentum", &v))) {
            if (r < 0 || cli_float(cmd, "--momentum", v, 0, 0.999999, &momentum)) return 2;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--weight-decay", &v))) {
            if (r < 0 || cli_float(cmd, "--weight-decay", v, 0, 1e6, &wd)) return 2;
        } else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, is_ids, &n_seq, MAX_SEQS)) ||
                   (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else return cli_usage(cmd, "unknown argument '%s'", argv[i]);
    }
    if (!model) return cli_usage(cmd, "--model is required");
    if (!out) return cli_usage(cmd, "-o LENS.safetensors is required (where to write the lens)");
    if (!cli_has_ext(out, ".safetensors")) return cli_usage(cmd, "-o %s: the lens is written as .safetensors", out);
    if (!text && !n_seq) return cli_usage(cmd, "give training text with --text FILE, or --prompt TEXT / --ids 1,2,3");
    if (bo.pad_left) return cli_usage(cmd, "--padding-side does not apply: sequences are trained on one by one");
    for (int i = 0; i < n_seq; i++)
        if (is_ids[i] == 2) return cli_usage(cmd, "--input is for compiled RASP models, which have no logit lens");
    struct stat sm, so;
    if (!stat(model, &sm) && !stat(out, &so) && sm.st_dev == so.st_dev && sm.st_ino == so.st_ino)
        return cli_usage(cmd, "-o %s is the model itself", out);

    mech_err err = {0};
    mech_model *m = NULL;
    int rc = cli_model_load_blocks(cmd, model, "a tuned lens has no layers to translate", &m);
    if (rc) return rc;
    seqs s = {0};
    mech_tuned_lens *t = NULL;
    mech_tokenizer *own_tok = NULL;
    char *buf = NULL;
    int32_t *tids = NULL;
    cli_inputs in = {0};
    double *kl = NULL;
    int caught = 0;
    if (mech_model_meta(m, "mech.rasp.source")) {
        rc = cli_usage(cmd, "%s is a compiled RASP model: its logits are a readout, not a vocabulary (no logit lens "
                       "to tune)", model);
        goto done;
    }
    if (seq_len > m->cfg.n_ctx) {
        rc = cli_usage(cmd, "--seq-len %ld exceeds the model's n_ctx %d", seq_len, m->cfg.n_ctx);
        goto done;
    }
    if (text) { // the file's tokens in sequences of seq_len, each after BOS when the model has one
        const mech_tokenizer *tok = m->tok;
        size_t len = 0, nt = 0;
        if (!tok && mech_tokenizer_gpt2(&own_tok, &err)) goto fail;
        if (!tok) tok = own_tok;
        if (mech_read_file(text, &buf, &len, &err) || mech_tokenizer_encode(tok, buf, len, bo.special, &tids, &nt, &err)) goto fail;
        int32_t bos = cli_model_bos(m, tok);
        int with_bos = bos >= 0 && bo.bos != 0, body = (int)seq_len - with_bos;
        int32_t *row = malloc((size_t)seq_len * sizeof *row);
        for (size_t at = 0; row && at + (size_t)body <= nt; at += (size_t)body) {
            for (int k = 0; k < body; k++)
                if (tids[at + k] >= m->cfg.d_vocab) {
                    free(row);
                    rc = cli_usage(cmd, "--text %s: token %d is outside this model's vocabulary of %d", text,
                                   (int)tids[at + k], m->cfg.d_vocab);
                    goto done;
                }
            if (with_bos) row[0] = bos;
            memcpy(row + with_bos, tids + at, (size_t)body * sizeof *row);
            if (seqs_add(&s, row, (int)seq_len)) break;
        }
        free(row);
        if (!s.n) {
            rc = cli_usage(cmd, "--text %s: %zu tokens, fewer than one sequence of --seq-len %ld", text, nt, seq_len);
            goto done;
        }
    }
    if (n_seq) {
        if ((rc = cli_batch(cmd, m, texts, is_ids, n_seq, &bo, &in))) goto done;
        for (int b = 0; b < in.B; b++)
            if (seqs_add(&s, in.ids + (size_t)b * in.T + in.start[b], in.len[b])) break;
    }
    if (!heldout_given) heldout = s.n >= 10 ? s.n / 10 : 0;
    if (heldout >= s.n) {
        rc = cli_usage(cmd, "--heldout %ld leaves no sequence to train on (%d in all)", heldout, s.n);
        goto done;
    }
    int n_train = s.n - (int)heldout;
    progress_ctx pc = {.stop = cli_interrupts_catch()};
    caught = 1;
    o.steps = (int)steps, o.batch = (int)batch, o.seed = (uint64_t)seed, o.lr = lr, o.momentum = momentum;
    o.weight_decay = wd, o.progress = on_step, o.user = &pc;
    cli_progress_start(&pc.bar, "steps", steps);
    double t0 = mech_now();
    mech_status st = mech_tuned_lens_fit(m, (const int32_t *const *)s.ids, s.len, n_train, &o, &t, &err);
    cli_progress_end(&pc.bar);
    if (st == MECH_ERR_CANCELLED) {
        fprintf(stderr, "mech %s: interrupted: nothing written\n", cmd);
        rc = CLI_EXIT_INTERRUPTED;
        goto done;
    }
    if (st) goto fail;
    double secs = mech_now() - t0;
    int L = m->cfg.n_layers;
    if (!(kl = calloc((size_t)2 * (L + 1), sizeof *kl))) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        goto fail;
    }
    double *kl_logit = kl, *kl_tuned = kl + L + 1;
    mech_buf train = {0};
    mech_buf_printf(&train, "{\"steps\": %ld, \"batch\": %ld, \"lr\": %.17g, \"momentum\": %.17g, \"weight_decay\": %.17g, "
                    "\"clip\": %.17g, \"seed\": %ld, \"train_sequences\": %d, \"heldout_sequences\": %ld, \"final_kl\": %.9g",
                    steps, batch, lr, momentum, wd, o.clip, seed, n_train, heldout, pc.kl);
    if (heldout) {
        if (mech_tuned_lens_eval(m, t, (const int32_t *const *)s.ids + n_train, s.len + n_train, (int)heldout, kl_logit,
                                 kl_tuned, &err)) {
            mech_buf_free(&train);
            goto fail;
        }
        for (int k = 0; k < 2; k++) {
            mech_buf_printf(&train, ", \"heldout_kl_%s\": [", k ? "tuned" : "logit");
            for (int l = 0; l <= L; l++) mech_buf_printf(&train, "%s%.9g", l ? ", " : "", k ? kl_tuned[l] : kl_logit[l]);
            mech_buf_puts(&train, "]");
        }
    }
    mech_buf_puts(&train, "}");
    const char *mk[] = {"mech.tuned_lens.train"}, *mv[] = {train.data};
    st = mech_tuned_lens_save(t, out, mk, mv, 1, &err);
    mech_buf_free(&train);
    if (st) goto fail;
    printf("tuned lens: %d translators trained for %ld steps on %d sequence%s (%.1f s), mean KL %.4g at the last step "
           "-> %s\n", L, steps, n_train, cli_s(n_train), secs, pc.kl, out);
    if (heldout) {
        printf("KL(final || layer) on %ld held-out sequence%s, mean over positions (nats):\n", heldout, cli_s(heldout));
        printf("%6s %12s %12s\n", "layer", "logit lens", "tuned lens");
        for (int l = 0; l <= L; l++) printf("%6d %12.4g %12.4g\n", l, kl_logit[l], kl_tuned[l]);
    }
    goto done;
fail:
    rc = cli_fail(cmd, &err);
done:
    if (caught) cli_interrupts_release();
    free(kl);
    mech_tuned_lens_free(t);
    cli_inputs_free(&in);
    seqs_free(&s);
    mech_free(tids);
    mech_free(buf);
    mech_tokenizer_free(own_tok);
    mech_model_free(m);
    return rc;
}
