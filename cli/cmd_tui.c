/*
** cli/cmd_tui.c: `mech tui [DB] [--model M] [--prompt TEXT | --ids IDS |
** --input SEQ] [--corrupt TEXT | --corrupt-ids IDS]`: parses the arguments, reads the runs (tui/runs_load.c,
** read-only) and runs the live model once to get every head's attention
** pattern and scores, then hands the state to the interface (tui/).
*/
#include "cli/cli.h"
#include "tui/tui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The corrupted prompt's forward pass for difference mode: its patterns
// (borrowed from *run_out) into a->layer_cpat. It must have as many tokens
// as the clean prompt (a->T), else a usage error naming both lengths.
static int corrupt_attention(const char *cmd, mech_model *m, const char *text, int kind, const cli_batch_opts *bo,
                             mech_tui_attn *a, mech_run **run_out) {
    mech_err err = {0};
    cli_inputs in = {0};
    mech_run *run = NULL;
    const char *texts[1] = {text};
    int kinds[1] = {kind}, rc = 0;
    if ((rc = cli_batch(cmd, m, texts, kinds, 1, bo, &in))) return rc;
    if (in.T != a->T) {
        rc = cli_usage(cmd, "the clean and corrupted prompts must have the same number of tokens (clean %d, corrupted %d)",
                       a->T, in.T);
        goto done;
    }
    if (mech_run_new(m, 1, in.T, &run, &err) || mech_run_cache(run, "blocks.*.attn.hook_pattern", &err) ||
        mech_run_forward(run, in.ids, &err)) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    if (!(a->layer_cpat = mech_calloc((size_t)a->L, sizeof *a->layer_cpat))) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        rc = cli_fail(cmd, &err);
        goto done;
    }
    for (int l = 0; l < a->L; l++) {
        char hook[64];
        snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
        const mech_tensor *t = mech_run_get(run, hook);
        if (!t) {
            mech_err_set(&err, MECH_ERR_ARG, "no %s in the run", hook);
            rc = cli_fail(cmd, &err);
            goto done;
        }
        a->layer_cpat[l] = t->data;
    }
done:
    cli_inputs_free(&in);
    if (rc) {
        mech_free(a->layer_cpat);
        a->layer_cpat = NULL;
        mech_run_free(run);
    } else *run_out = run;
    return rc;
}

// The forward pass on the one prompt: the patterns (borrowed from the run,
// which *run_out then owns with the model *m_out), token labels and the
// three head scores into a; with a corrupted prompt (ctext) also its
// patterns (from *crun_out). 0 or an exit code.
static int live_attention(const char *cmd, const char *model, const char *text, int kind, const char *ctext,
                          int ckind, const cli_batch_opts *bo, mech_tui_attn *a, mech_tui_attrib *la, char *name,
                          size_t name_cap, mech_model **m_out, mech_run **run_out, mech_run **crun_out) {
    mech_err err = {0};
    mech_model *m = NULL;
    mech_run *run = NULL;
    mech_rasp_program *prog = NULL;
    cli_inputs in = {0};
    int rc = 0;
    if (mech_model_load(model, &m, &err)) return cli_fail(cmd, &err);
    const char *texts[1] = {text};
    int kinds[1] = {kind};
    if ((rc = cli_batch(cmd, m, texts, kinds, 1, bo, &in))) goto done;
    if (m->cfg.n_layers < 1 || m->cfg.n_heads < 1 || in.T < 1) {
        rc = cli_usage(cmd, "nothing to show: the model has no attention heads or the input no tokens");
        goto done;
    }
    int L = m->cfg.n_layers, NH = m->cfg.n_heads, T = in.T;
    fprintf(stderr, "mech tui: running %s on %d tokens...\n", model, T);
    // mech_lens_cache: the patterns, and what direct logit attribution reads
    if (mech_run_new(m, 1, T, &run, &err) || mech_run_cache(run, "blocks.*.attn.hook_pattern", &err) ||
        mech_lens_cache(run, &err) || mech_run_forward(run, in.ids, &err)) {
        rc = cli_fail(cmd, &err);
        goto done;
    }
    a->L = L, a->NH = NH, a->T = T;
    // the view reads the run's cached patterns in place: the run lives until the interface ends
    a->layer_pat = mech_calloc((size_t)L, sizeof *a->layer_pat);
    a->tokens = mech_calloc((size_t)T, sizeof *a->tokens);
    a->scores = mech_malloc((size_t)MECH_TUI_SCORE_KINDS * L * NH * sizeof *a->scores);
    if (!a->layer_pat || !a->tokens || !a->scores) {
        mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        rc = cli_fail(cmd, &err);
        goto done;
    }
    for (int l = 0; l < L; l++) {
        char hook[64];
        snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
        const mech_tensor *t = mech_run_get(run, hook); // (1, NH, T, T)
        if (!t) {
            mech_err_set(&err, MECH_ERR_ARG, "no %s in the run", hook);
            rc = cli_fail(cmd, &err);
            goto done;
        }
        a->layer_pat[l] = t->data;
    }
    for (int k = 0; k < MECH_TUI_SCORE_KINDS && k < MECH_HEAD_KIND_COUNT_; k++)
        if (mech_heads_score(m, run, in.ids, (mech_head_kind)k, MECH_HEAD_MUL, 0, 0, a->scores + (size_t)k * L * NH,
                             &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
    if ((rc = cli_compiled_program(cmd, m, model, &prog))) goto done;
    // the attribution view of the top-1 prediction (a compiled model's ids
    // are not text: labels are ids); without it the other views still work
    mech_err aerr = {0};
    if (mech_tui_attrib_from_run(la, m, run, in.ids, T, -1, -1, prog ? NULL : in.tok, &aerr))
        snprintf(la->title, sizeof la->title, "no attribution: %.150s", aerr.msg);
    mech_buf b = {0};
    for (int i = 0; i < T; i++) {
        b.len = 0;
        if (prog) cli_compiled_token(&b, prog, in.ids[i]);
        else {
            size_t len = 0;
            const char *s = in.tok ? mech_tokenizer_token(in.tok, in.ids[i], &len) : NULL;
            if (s) mech_buf_append(&b, s, len);
            else mech_buf_printf(&b, "<%d>", (int)in.ids[i]);
        }
        mech_buf_append(&b, "", 0);
        char lab[64];
        mech_tui_token_label(b.data ? b.data : "", lab, sizeof lab);
        if (b.oom || !(a->tokens[i] = mech_strdup(lab))) {
            mech_buf_free(&b);
            mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
            rc = cli_fail(cmd, &err);
            goto done;
        }
    }
    mech_buf_free(&b);
    if (ctext && (rc = corrupt_attention(cmd, m, ctext, ckind, bo, a, crun_out))) goto done;
    const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    snprintf(name, name_cap, "%s (%d layers x %d heads, %d tokens)", base, L, NH, T);
done:
    mech_rasp_program_free(prog);
    cli_inputs_free(&in);
    if (rc) {
        mech_run_free(run);
        mech_model_free(m);
    } else *m_out = m, *run_out = run;
    return rc;
}

int cmd_tui(int argc, char **argv) {
    const char *cmd = "tui", *model = NULL, *db = NULL, *ctext = NULL;
    const char *texts[2];
    int kinds[2], n = 0, ckind = 0, nc = 0;
    cli_batch_opts bo = CLI_BATCH_OPTS_INIT;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = cli_opt(cmd, argc, argv, &i, "--model", &model))) { if (r < 0) return 2; }
        else if ((r = cli_opt(cmd, argc, argv, &i, "--corrupt", &ctext))) {
            if (r < 0) return 2;
            ckind = 0, nc++;
        } else if ((r = cli_opt(cmd, argc, argv, &i, "--corrupt-ids", &ctext))) {
            if (r < 0) return 2;
            ckind = 1, nc++;
        }
        else if ((r = cli_seq_opt(cmd, argc, argv, &i, texts, kinds, &n, 2)) ||
                 (r = cli_batch_opt(cmd, argc, argv, &i, &bo))) {
            if (r < 0) return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) return cli_usage(cmd, "unknown option '%s'", argv[i]);
        else if (db) return cli_usage(cmd, "one database at a time ('%s' and '%s')", db, argv[i]);
        else db = argv[i];
    }
    if (n > 1) return cli_usage(cmd, "one prompt at a time (--prompt, --ids or --input once)");
    if (n && !model) return cli_usage(cmd, "--prompt/--ids/--input need --model");
    if (model && !n) return cli_usage(cmd, "--model needs the input to look at: --prompt TEXT, --ids 1,2,3 or --input \"a b\"");
    if (nc > 1) return cli_usage(cmd, "one corrupted prompt at a time (--corrupt or --corrupt-ids once)");
    if (ctext && !model) return cli_usage(cmd, "--corrupt/--corrupt-ids need --model and --prompt/--ids/--input");
    if (!model && !db) db = "mech.db";
    mech_tui_app app = {0};
    mech_model *m = NULL;
    mech_run *run = NULL; // holds the patterns the attention view shows
    mech_run *crun = NULL; // the corrupted prompt's (difference mode)
    if (model) {
        int rc = live_attention(cmd, model, texts[0], kinds[0], ctext, ckind, &bo, &app.attn, &app.live_attrib,
                                app.model_name, sizeof app.model_name, &m, &run, &crun);
        if (rc) {
            mech_tui_app_deinit(&app);
            return rc;
        }
        app.has_attn = 1;
        app.view = MECH_TUI_VIEW_HEAD;
    }
    if (db) {
        // a missing database is shown in the interface with what fills it;
        // one that exists but cannot be read (not SQLite, another
        // application's, a newer schema, damaged) is an error before the
        // terminal is touched
        if (access(db, F_OK) == 0) {
            mech_tui_run_row *rows = NULL;
            size_t n_rows = 0;
            mech_err err = {0};
            if (mech_tui_runs_load(db, &rows, &n_rows, &err)) {
                mech_tui_app_deinit(&app);
                mech_run_free(crun);
                mech_run_free(run);
                mech_model_free(m);
                return cli_fail(cmd, &err);
            }
            mech_free(rows);
        }
        app.has_runs = 1, app.db_path = db;
        mech_tui_app_reload(&app);
        if (!model) app.view = MECH_TUI_VIEW_RUNS;
    }
    int rc = mech_tui_main(&app);
    mech_tui_app_deinit(&app);
    mech_run_free(crun);
    mech_run_free(run);
    mech_model_free(m);
    return rc;
}
