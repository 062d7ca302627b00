/*
** cli/experiment.c: what the experiment commands (lens, heads, attrib) share:
** reading a batch of equal-length token sequences from --prompt/--ids, and
** opening the results database with a new run for the command.
*/
#include "cli/cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

int cli_batch(const char *cmd, const mech_model *m, const char *const *texts, const int *is_ids, int n, int special,
              cli_inputs *in) {
    memset(in, 0, sizeof *in);
    mech_err err = {0};
    in->tok = m->tok;
    if (!in->tok) {
        if (mech_tokenizer_gpt2(&in->own_tok, &err)) return cli_fail(cmd, &err);
        in->tok = in->own_tok;
    }
    if (n < 1) return cli_usage(cmd, "give the input with --prompt TEXT or --ids 1,2,3");
    int32_t *seq[256];
    size_t len[256];
    mech_rasp_program *prog = NULL; // a compiled model's inputs are --input
    int rc = cli_compiled_input_check(cmd, m, texts, is_ids, n, &prog);
    for (int s = 0; s < n && s < 256 && !rc; s++) {
        seq[s] = NULL;
        if (is_ids[s] == 2) {
            rc = cli_compiled_ids(cmd, prog, texts[s], &seq[s], &len[s]);
        } else if (is_ids[s]) {
            if (cli_ids(cmd, texts[s], &seq[s], &len[s])) rc = 2;
        } else if (mech_tokenizer_encode(in->tok, texts[s], strlen(texts[s]), special, &seq[s], &len[s], &err)) {
            rc = cli_fail(cmd, &err);
        }
        if (!rc && len[s] == 0) rc = cli_usage(cmd, "sequence %d is empty", s + 1);
        if (!rc && len[s] != len[0])
            rc = cli_usage(cmd, "sequence %d has %zu tokens but sequence 1 has %zu: a batch needs equal lengths", s + 1,
                           len[s], len[0]);
        if (rc) {
            for (int k = 0; k <= s; k++) free(seq[k]);
            cli_inputs_free(in);
            mech_rasp_program_free(prog);
            return rc;
        }
    }
    mech_rasp_program_free(prog);
    if (rc) {
        cli_inputs_free(in);
        return rc;
    }
    in->B = n, in->T = (int)len[0];
    in->ids = malloc((size_t)n * len[0] * sizeof *in->ids);
    for (int s = 0; s < n; s++) {
        if (in->ids) memcpy(in->ids + (size_t)s * len[0], seq[s], len[0] * sizeof *in->ids);
        free(seq[s]);
    }
    if (!in->ids) {
        cli_inputs_free(in);
        fprintf(stderr, "mech %s: error: out of memory\n", cmd);
        return 1;
    }
    return 0;
}

void cli_inputs_free(cli_inputs *in) {
    free(in->ids);
    mech_tokenizer_free(in->own_tok);
    memset(in, 0, sizeof *in);
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

int cli_shard(const char *cmd, const char *s, int *k, int *n) {
    char *e1, *e2 = NULL;
    long a = 0, b = 0;
    // digits, '/', digits: no spaces or signs (as every numeric option)
    int plain = *s >= '0' && *s <= '9';
    if (plain) a = strtol(s, &e1, 10);
    else e1 = (char *)s;
    plain = plain && *e1 == '/' && e1[1] >= '0' && e1[1] <= '9';
    if (plain) b = strtol(e1 + 1, &e2, 10);
    if (!plain || *e2 || b < 1 || b > 1000000 || a < 1 || a > b) {
        cli_usage(cmd, "--shard '%s': expected K/N with 1 <= K <= N (e.g. 2/8 runs the second of 8 slices)", s);
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
