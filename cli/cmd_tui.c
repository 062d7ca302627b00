/*
** cli/cmd_tui.c: `mech tui [DB] [--model M] [--prompt TEXT | --ids IDS |
** --input SEQ] [--corrupt TEXT | --corrupt-ids IDS]`: parses the arguments, reads the runs (tui/runs_load.c,
** read-only), builds the prompt's ids and starts the live session
** (tui/live.c: the forward in the background), then hands the state to the
** interface (tui/).
*/
#include "cli/cli.h"
#include "tui/tui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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

// The all-heads grid's size in this terminal (title and footer off), so
// the first forward pools its thumbnails too; unknown: none.
static void term_grid_size(mech_tui_live *s) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 2)
        mech_tui_live_set_grid_size(s, ws.ws_col, ws.ws_row - 2);
}

// The live session on the one prompt (tui/live.c): the model, the prompt's
// ids built as every command builds them (cli_batch: BOS, --allow-special,
// --ids, --input), and its forward started in the background, so the
// interface shows its first frame at once. A corrupted prompt (difference
// mode) runs here, before the interface, and must have as many tokens.
// 0 or an exit code; *m_out, *s_out (and *crun_out) are then owned.
static int live_start(const char *cmd, const char *model, const char *text, int kind, const char *ctext, int ckind,
                      const cli_batch_opts *bo, mech_tui_app *app, mech_model **m_out, mech_tui_live **s_out,
                      mech_run **crun_out) {
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tui_live *s = NULL;
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
    mech_tui_attn *a = &app->attn;
    a->L = m->cfg.n_layers, a->NH = m->cfg.n_heads, a->T = in.T;
    if (ctext && (rc = corrupt_attention(cmd, m, ctext, ckind, bo, a, crun_out))) goto done;
    mech_tui_live_opts o = {.kind = kind, .bos = in.bos, .special = bo->special};
    if (mech_tui_live_new(m, &o, &s, &err) || mech_tui_editor_set(&app->live.ed, text) ||
        (term_grid_size(s), mech_tui_live_start_ids(s, text, in.ids, in.T, &err))) {
        if (!err.code) mech_err_set(&err, MECH_ERR_NOMEM, "out of memory");
        rc = cli_fail(cmd, &err);
        goto done;
    }
done:
    cli_inputs_free(&in);
    if (rc) {
        mech_tui_live_free(s);
        mech_model_free(m);
    } else *m_out = m, *s_out = s;
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
    mech_tui_live *live = NULL; // the prompt's runs, whose patterns the attention views show
    mech_run *crun = NULL; // the corrupted prompt's (difference mode)
    mech_buf line = {0};   // the command line, recorded with a run saved from the live view
    mech_err err = {0};
    int rc = 0;
    if (model) {
        if ((rc = live_start(cmd, model, texts[0], kinds[0], ctext, ckind, &bo, &app, &m, &live, &crun))) goto done;
        mech_buf_puts(&line, "mech");
        for (int i = 0; i < argc; i++) mech_buf_printf(&line, " %s", argv[i]);
        // the attention views appear when the forward finishes (the first
        // one opens the head view); until then the live view shows progress
        app.live.s = live, app.has_live = 1, app.live_auto_head = 1;
        app.model_path = model, app.cmdline = line.data;
        app.view = MECH_TUI_VIEW_LIVE;
        const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
        snprintf(app.model_name, sizeof app.model_name, "%.60s", base);
        if (mech_model_meta(m, "mech.rasp.source")) {
            // a compiled RASP model: the program view too, with the --input run
            if (mech_tui_program_load(&app.program, m, &err) ||
                (kinds[0] == 2 && mech_tui_program_run(&app.program, m, texts[0], &err))) {
                rc = cli_fail(cmd, &err);
                goto done;
            }
            app.has_program = 1;
        }
    }
    if (db) {
        // a missing database is shown in the interface with what fills it;
        // one that exists but cannot be read (not SQLite, another
        // application's, a newer schema, damaged) is an error before the
        // terminal is touched
        if (access(db, F_OK) == 0 && mech_tui_db_check(db, &err)) {
            rc = cli_fail(cmd, &err);
            goto done;
        }
        app.has_runs = 1, app.db_path = db;
        mech_tui_app_reload(&app);
        if (!model) app.view = MECH_TUI_VIEW_RUNS;
    }
    rc = mech_tui_main(&app);
done:
    mech_tui_app_deinit(&app);
    mech_tui_live_free(live); // joins a forward still running
    mech_run_free(crun);
    mech_model_free(m);
    mech_buf_free(&line);
    return rc;
}
