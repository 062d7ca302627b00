/*
** cli/experiment.c: what the experiment commands (run, lens, heads, attrib)
** share: reading a batch of token sequences from --prompt/--ids (BOS in front
** of text as TransformerLens's default_prepend_bos, sequences of unequal
** lengths padded with an attention mask as its padding_side), and opening
** the results database with a new run for the command.
*/
#include "cli/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

int32_t cli_model_bos(const mech_model *m, const mech_tokenizer *tok) {
    if (mech_model_meta(m, "mech.rasp.source")) return 0;
    int32_t eot = tok ? mech_tokenizer_eot(tok) : 50256; // the built-in GPT-2 vocabulary's <|endoftext|>
    return eot >= 0 && eot < m->cfg.d_vocab ? eot : -1;
}

int cli_batch_opt(const char *cmd, int argc, char **argv, int *i, cli_batch_opts *o) {
    const char *v;
    if (!strcmp(argv[*i], "--prepend-bos")) return o->bos = 1, 1;
    if (!strcmp(argv[*i], "--no-prepend-bos")) return o->bos = 0, 1;
    if (!strcmp(argv[*i], "--allow-special")) return o->special = 1, 1;
    int r = cli_opt(cmd, argc, argv, i, "--padding-side", &v);
    if (r <= 0) return r;
    if (strcmp(v, "left") && strcmp(v, "right")) {
        cli_usage(cmd, "--padding-side '%s': expected left or right", v);
        return -1;
    }
    o->pad_left = !strcmp(v, "left");
    return 1;
}

int cli_batch(const char *cmd, const mech_model *m, const char *const *texts, const int *is_ids, int n,
              const cli_batch_opts *o, cli_inputs *in) {
    static const cli_batch_opts defaults = CLI_BATCH_OPTS_INIT;
    if (!o) o = &defaults;
    memset(in, 0, sizeof *in);
    mech_err err = {0};
    in->tok = m->tok;
    if (!in->tok && mech_model_reads_text(m)) {
        if (mech_tokenizer_gpt2(&in->own_tok, &err)) return cli_fail(cmd, &err);
        in->tok = in->own_tok;
    }
    int32_t *seq[CLI_MAX_SEQS] = {0};
    int len[CLI_MAX_SEQS];
    int rc = 0;
    int32_t bos = cli_model_bos(m, in->tok);
    if (n < 1) rc = cli_usage(cmd, "give the input with --prompt TEXT or --ids 1,2,3");
    else if (n > CLI_MAX_SEQS) rc = cli_usage(cmd, "at most %d sequences", CLI_MAX_SEQS);
    else if (o->bos == 1 && bos < 0)
        rc = cli_usage(cmd, "--prepend-bos: this model's vocabulary has no BOS token (<|endoftext|>)");
    mech_rasp_program *prog = NULL; // a compiled model's inputs are --input
    if (!rc) rc = cli_compiled_input_check(cmd, m, texts, is_ids, n, &prog);
    for (int s = 0; s < n && !rc; s++) {
        int32_t *ids = NULL;
        size_t nt = 0;
        if (is_ids[s] == 2 && o->bos >= 0) {
            rc = cli_usage(cmd, "--%sprepend-bos: --input always starts with the program's BOS (it applies to --ids)",
                           o->bos ? "" : "no-");
        } else if (is_ids[s] == 2) { // BOS included
            rc = cli_compiled_ids(cmd, prog, texts[s], &ids, &nt);
        } else if (is_ids[s]) {
            if (cli_ids(cmd, texts[s], &ids, &nt)) rc = 2;
        } else if (!in->tok) {
            rc = cli_usage(cmd, "this model was trained on ids (task %s) and reads no text: give its input as --ids",
                           mech_model_meta(m, "mech.train.task"));
        } else if (mech_tokenizer_encode(in->tok, texts[s], strlen(texts[s]), o->special, &ids, &nt, &err)) {
            rc = cli_fail(cmd, &err);
        }
        // Text gets BOS unless --no-prepend-bos; id lists are taken as
        // written unless --prepend-bos.
        int add = bos >= 0 && is_ids[s] != 2 && (o->bos == 1 || (o->bos < 0 && !is_ids[s]));
        if (!rc && nt + add == 0) rc = cli_usage(cmd, "sequence %d is empty", s + 1);
        for (size_t t = 0; t < nt && !rc; t++)
            if (ids[t] >= m->cfg.d_vocab)
                rc = cli_usage(cmd, "sequence %d: token id %d is outside the model's vocabulary (ids 0..%d)", s + 1,
                               (int)ids[t], m->cfg.d_vocab - 1);
        if (!rc && nt + add > (size_t)m->cfg.n_ctx)
            rc = cli_usage(cmd, "sequence %d has %zu tokens%s, more than the model's context of %d", s + 1, nt + add,
                           add ? " with BOS" : "", m->cfg.n_ctx);
        if (!rc && !(seq[s] = malloc((nt + add) * sizeof *seq[s]))) {
            fprintf(stderr, "mech %s: error: out of memory\n", cmd);
            rc = 1;
        }
        if (!rc) {
            if (add) seq[s][0] = bos;
            if (nt) memcpy(seq[s] + add, ids, nt * sizeof *ids);
            len[s] = (int)(nt + add);
        }
        free(ids);
    }
    if (!rc) {
        in->B = n;
        in->bos = -1;
        for (int s = 0; s < n; s++)
            if (bos >= 0 && (is_ids[s] == 2 || o->bos == 1 || (o->bos < 0 && !is_ids[s]))) in->bos = bos;
        in->start = calloc((size_t)n, sizeof *in->start);
        in->len = malloc((size_t)n * sizeof *in->len);
        int T = 0, equal = 1;
        for (int s = 0; s < n; s++) equal &= len[s] == len[0];
        if (!in->start || !in->len ||
            mech_batch_pad((const int32_t *const *)seq, len, n, bos >= 0 ? bos : 0,
                           o->pad_left ? MECH_PAD_LEFT : MECH_PAD_RIGHT, &in->ids, &in->mask, &T, &err)) {
            rc = err.msg[0] ? cli_fail(cmd, &err) : (fprintf(stderr, "mech %s: error: out of memory\n", cmd), 1);
        } else {
            in->T = T;
            for (int s = 0; s < n; s++) in->len[s] = len[s], in->start[s] = o->pad_left ? T - len[s] : 0;
            if (equal) { // no padding: no mask
                mech_free(in->mask);
                in->mask = NULL;
            }
        }
    }
    mech_rasp_program_free(prog);
    for (int s = 0; s < n && s < CLI_MAX_SEQS; s++) free(seq[s]);
    if (rc) cli_inputs_free(in);
    return rc;
}

int cli_pairs_bos(const char *cmd, const mech_model *m, const mech_tokenizer *tok, cli_pair *p, int n) {
    if (mech_model_meta(m, "mech.rasp.source"))
        return cli_usage(cmd, "--prepend-bos: a compiled model's prompts always start with its own BOS already");
    int32_t bos = cli_model_bos(m, tok);
    if (bos < 0) return cli_usage(cmd, "--prepend-bos: this model's vocabulary has no BOS token (<|endoftext|>)");
    for (int i = 0; i < n; i++) {
        int32_t *c = mech_malloc((p[i].n_clean + 1) * sizeof *c), *r = mech_malloc((p[i].n_corrupt + 1) * sizeof *r);
        if (!c || !r) {
            mech_free(c), mech_free(r);
            fprintf(stderr, "mech %s: error: out of memory\n", cmd);
            return 1;
        }
        c[0] = r[0] = bos;
        memcpy(c + 1, p[i].clean, p[i].n_clean * sizeof *c);
        memcpy(r + 1, p[i].corrupt, p[i].n_corrupt * sizeof *r);
        mech_free(p[i].clean), mech_free(p[i].corrupt);
        p[i].clean = c, p[i].corrupt = r;
        p[i].n_clean++, p[i].n_corrupt++;
    }
    return 0;
}

void cli_inputs_free(cli_inputs *in) {
    mech_free(in->ids);
    mech_free(in->mask);
    free(in->start);
    free(in->len);
    mech_tokenizer_free(in->own_tok);
    memset(in, 0, sizeof *in);
}

int cli_model_load_blocks(const char *cmd, const char *path, const char *what, mech_model **m) {
    mech_err err = {0};
    *m = NULL;
    if (mech_model_load(path, m, &err)) return cli_fail(cmd, &err);
    if ((*m)->cfg.n_layers > 0) return 0;
    mech_model_free(*m);
    *m = NULL;
    return cli_usage(cmd, "%s has no transformer blocks (n_layers 0): %s", path, what);
}

int cli_store_open(const char *cmd, const char *db, int write, mech_store **s) {
    mech_err err = {0};
    *s = NULL;
    if (!db || !*db) return cli_usage(cmd, "--db: the path is empty");
    if ((write ? mech_store_open : mech_store_open_read)(db, s, &err)) return cli_fail(cmd, &err);
    return 0;
}

int cli_run_open(const char *cmd, const char *db, const char *kind, const char *model, int argc, char **argv,
                 const char *params_json, mech_store **s, int64_t *run) {
    mech_err err = {0};
    mech_buf line = {0};
    mech_buf_puts(&line, "mech");
    for (int i = 0; i < argc; i++) {
        mech_buf_puts(&line, " ");
        mech_buf_puts(&line, argv[i]);
    }
    int rc = cli_store_open(cmd, db, 1, s);
    if (!rc && mech_store_run_new(*s, kind, model, line.data, params_json, run, &err)) {
        rc = cli_fail(cmd, &err);
        mech_store_close(*s);
        *s = NULL;
    }
    mech_buf_free(&line);
    return rc;
}

int cli_resume_check_model(const char *cmd, int64_t run, const char *path, const char *recorded_hash) {
    char now[65];
    if (!recorded_hash || !*recorded_hash) {
        fprintf(stderr, "mech %s: warning: --resume %lld: the run recorded no model hash; %s cannot be checked\n", cmd,
                (long long)run, path);
        return 0;
    }
    if (mech_store_model_hash(path, now)) {
        fprintf(stderr, "mech %s: error: --resume %lld: cannot read the run's model %s to check it\n", cmd,
                (long long)run, path);
        return 1;
    }
    if (strcmp(now, recorded_hash)) {
        fprintf(stderr, "mech %s: error: --resume %lld: the model %s is not the one the run was made with (content hash "
                "%s now, %s recorded); resume with that model, or start a new run\n", cmd, (long long)run, path, now,
                recorded_hash);
        return 1;
    }
    return 0;
}

int cli_seq_opt(const char *cmd, int argc, char **argv, int *i, const char **texts, int *is_ids, int *n, int max) {
    const char *v;
    int r = cli_opt(cmd, argc, argv, i, "--prompt", &v), ids = 0;
    if (!r) r = cli_opt(cmd, argc, argv, i, "--ids", &v), ids = 1;
    if (!r) r = cli_opt(cmd, argc, argv, i, "--input", &v), ids = 2;
    if (!r && (r = cli_opt(cmd, argc, argv, i, "--threads", &v)) > 0) return cli_threads(cmd, v, NULL) ? -1 : 1;
    if (r <= 0) return r;
    if (*n == max) {
        cli_usage(cmd, "at most %d sequences", max);
        return -1;
    }
    is_ids[*n] = ids;
    texts[(*n)++] = v;
    return 1;
}

int cli_run_failed(const char *cmd, mech_store *s, int64_t run, const mech_err *err) {
    int rc = cli_fail(cmd, err);
    if (s && run) {
        mech_store_rollback(s, NULL);
        mech_store_run_finish(s, run, "failed", NULL);
    }
    return rc;
}

// One of the array variables Slurm sets in every task of a job array:
// digits only, at most 2^31 - 1. 1 read, 0 not set, -1 malformed (printed).
static int slurm_var(const char *cmd, const char *name, long *out) {
    const char *v = getenv(name);
    if (!v) return 0;
    char *e;
    errno = 0;
    *out = *v >= '0' && *v <= '9' ? strtol(v, &e, 10) : -1;
    if (*out < 0 || *e || errno || *out > 2147483647L) {
        cli_usage(cmd, "--shard auto: %s='%s' is not a task index or count", name, v);
        return -1;
    }
    return 1;
}

// --shard auto in a Slurm job array: the tasks MIN, MIN+S, ..., MAX (COUNT
// of them) are shards 1..COUNT in order, so --array=0-7 and --array=1-8
// both make shards 1/8..8/8 (task MIN is shard 1) and --array=0-15:2 makes
// task 6 shard 4/8. The step is (MAX - MIN) / (COUNT - 1): an array whose
// tasks are not evenly spaced (--array=1,2,7) has none and is refused, as
// is a task that is not on it or SLURM_ARRAY_TASK_STEP that disagrees:
// guessing would leave pairs out or run them twice. Slurm (22.05) sets
// _STEP to 1 for any list, so --array=1,4,7 is refused too: 1-7:3 is not.
static int shard_slurm(const char *cmd, int *k, int *n) {
    static const char *const names[] = {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN",
                                        "SLURM_ARRAY_TASK_MAX"};
    long v[4], step = 1, given_step = 0;
    for (int i = 0; i < 4; i++) {
        int r = slurm_var(cmd, names[i], &v[i]);
        if (r < 0) return -1;
        if (!r) {
            cli_usage(cmd, "--shard auto: %s is not set%s; give --shard K/N outside a job array", names[i],
                      i ? " (Slurm sets it in every task of a job array)"
                        : ": this is not a task of a Slurm job array (sbatch --array=0-7)");
            return -1;
        }
    }
    long id = v[0], count = v[1], lo = v[2], hi = v[3];
    int has_step = slurm_var(cmd, "SLURM_ARRAY_TASK_STEP", &given_step);
    if (has_step < 0) return -1;
    if (count < 1 || count > 1000000 || hi < lo || (count == 1) != (hi == lo)) {
        cli_usage(cmd, "--shard auto: SLURM_ARRAY_TASK_COUNT=%ld does not fit SLURM_ARRAY_TASK_MIN=%ld and "
                  "SLURM_ARRAY_TASK_MAX=%ld", count, lo, hi);
        return -1;
    }
    if (count > 1) step = (hi - lo) / (count - 1);
    if (count > 1 && (hi - lo) % (count - 1)) {
        cli_usage(cmd, "--shard auto: the array's %ld tasks from %ld to %ld are not evenly spaced "
                  "(SLURM_ARRAY_TASK_COUNT, _MIN, _MAX), so they cannot be numbered as shards; submit "
                  "--array=A-B or A-B:STEP", count, lo, hi);
        return -1;
    }
    if (has_step && count > 1 && given_step != step) {
        cli_usage(cmd, "--shard auto: SLURM_ARRAY_TASK_STEP=%ld, but %ld tasks from %ld to %ld are %ld apart "
                  "(SLURM_ARRAY_TASK_COUNT, _MIN, _MAX): the array is a list (Slurm says step 1 for every list) or "
                  "not evenly spaced; submit --array=A-B or A-B:STEP", given_step, count, lo, hi, step);
        return -1;
    }
    if (id < lo || id > hi || (id - lo) % step) {
        cli_usage(cmd, "--shard auto: SLURM_ARRAY_TASK_ID=%ld is not a task of the array %ld-%ld:%ld "
                  "(SLURM_ARRAY_TASK_MIN, _MAX, _STEP)", id, lo, hi, step);
        return -1;
    }
    *k = (int)((id - lo) / step), *n = (int)count;
    // in the job's log: which slice this task took
    fprintf(stderr, "mech %s: --shard auto: array task %ld of %ld-%ld:%ld is shard %d/%d\n", cmd, id, lo, hi, step,
            *k + 1, *n);
    return 0;
}

int cli_shard(const char *cmd, const char *s, int *k, int *n) {
    if (!strcmp(s, "auto")) return shard_slurm(cmd, k, n);
    char *e1, *e2 = NULL;
    long a = 0, b = 0;
    // digits, '/', digits: no spaces or signs (as every numeric option)
    int plain = *s >= '0' && *s <= '9';
    if (plain) a = strtol(s, &e1, 10);
    else e1 = (char *)s;
    plain = plain && *e1 == '/' && e1[1] >= '0' && e1[1] <= '9';
    if (plain) b = strtol(e1 + 1, &e2, 10);
    if (!plain || *e2 || b < 1 || b > 1000000 || a < 1 || a > b) {
        cli_usage(cmd, "--shard '%s': expected K/N with 1 <= K <= N (e.g. 2/8 runs the second of 8 slices) or auto "
                  "(in a Slurm job array)", s);
        return -1;
    }
    *k = (int)a - 1, *n = (int)b;
    return 0;
}

static volatile int interrupted; // the one thing a signal handler may touch

static void on_signal(int sig) {
    (void)sig;
    interrupted = 1;
}

volatile int *cli_interrupts_catch(void) {
    interrupted = 0;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal); // a closed terminal or SSH session: stop cleanly too
    return &interrupted;
}

void cli_interrupts_release(void) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
}

int cli_write_buf(const char *cmd, const char *path, const mech_buf *b) {
    mech_err err = {0};
    mech_outfile o;
    if (b->oom) {
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        return 1;
    }
    if (!strcmp(path, "-")) {
        if (fwrite(b->data, 1, b->len, stdout) != b->len || fflush(stdout)) {
            fprintf(stderr, "mech %s: error: writing to stdout failed\n", cmd);
            return 1;
        }
        return 0;
    }
    if (mech_outfile_open(&o, path, &err)) return cli_fail(cmd, &err);
    if (fwrite(b->data, 1, b->len, o.f) != b->len) {
        mech_outfile_abort(&o);
        fprintf(stderr, "mech %s: error: %s: write failed\n", cmd, path);
        return 1;
    }
    if (mech_outfile_commit(&o, &err)) return cli_fail(cmd, &err);
    return 0;
}
