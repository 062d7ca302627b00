/*
** tests/test_tui_train.c: the Training view's model (tui/view_train.c) on a
** database that `mech train` writes (200 steps of a tiny attention-only
** model, under a second): the curves, the cursor's values and the chart's
** columns against SQL over the results table, the keys, the settings panel
** and held-out scores, the runs list's figure, the app's routing. Then the
** labels of the other new kinds of runs: a tuned-lens run (mech lens
** --tuned), an attribution-patching run (mech patch --method attrib) and the
** EAP method of an eap run, each rendered title read back.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tui/tui.h"

#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STEPS 200
enum { RUN_TRAIN = 1, RUN_LOGIT, RUN_TUNED, RUN_ATTRIB, RUN_EAP };

static char db[600], model[600], trained[600], lensf[600];

static int setup(void **state) {
    (void)state;
    snprintf(db, sizeof db, "%s", mech_test_tmpn("tuitrain.db"));
    snprintf(model, sizeof model, "%s", mech_test_tmpn("tuitrain_m.safetensors"));
    snprintf(trained, sizeof trained, "%s", mech_test_tmpn("tuitrain_out.safetensors"));
    snprintf(lensf, sizeof lensf, "%s", mech_test_tmpn("tuitrain_lens.safetensors"));
    mech_test_rm_db(db);
    char *out = NULL;
    const char *fmts[] = {
        "train --task induction --attn-only --layers 1 --heads 2 --d-model 16 --d-head 8 --vocab 16 --seq 16 "
        "--steps " "200" " --batch 2 --lr 0.01 --warmup 10 --seed 3 --eval 8 --threads 1 --db %s --out %s",
        "init -o %s",
        "tuned-lens --model %s -o %s --ids 1,2,3,4 --ids 5,6,7,8 --ids 9,10,11 --heldout 1 --steps 2",
        "lens --model %s --ids 5,17,42 --tuned %s --db %s",
        "patch --model %s --dataset ioi --n 2 --sweep heads --method attrib --db %s",
        "eap --model %s --dataset ioi --n 2 --top-n 5 --db %s",
    };
    int rc = mech_test_cli(&out, NULL, fmts[0], db, trained);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, fmts[1], model);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, fmts[2], model, lensf);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, fmts[3], model, lensf, db);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, fmts[4], model, db);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, fmts[5], model, db);
    if (rc) fprintf(stderr, "setup: mech failed: %s\n", out ? out : "");
    free(out);
    return rc ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    mech_test_rm_db(db);
    unlink(model), unlink(trained), unlink(lensf);
    char optim[700];
    snprintf(optim, sizeof optim, "%.*s.optim.safetensors", (int)(strlen(trained) - strlen(".safetensors")), trained);
    unlink(optim);
    return 0;
}

// --- helpers ------------------------------------------------------------------

static double sql_num(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static double sql_num(const char *path, const char *fmt, ...) {
    char sql[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    char *r = mech_test_sql_rows(path, sql);
    double x = !r[0] || !strncmp(r, "NULL", 4) ? NAN : strtod(r, NULL);
    free(r);
    return x;
}

static void assert_same(double got, double want, const char *what) {
    if (isnan(got) && isnan(want)) return;
    if (isnan(got) || isnan(want) || fabs(got - want) > 1e-12 + 1e-12 * fabs(want))
        fail_msg("%s: shown %.17g, database %.17g", what, got, want);
}

static int grid_has(mech_tui_grid *g, const char *want) {
    char buf[1024];
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, buf);
        if (strstr(buf, want)) return 1;
    }
    return 0;
}

static void row_text(mech_tui_grid *g, int y, char *buf) { mech_tui_grid_row_text(g, y, buf); }

static void load(mech_tui_train *v) {
    mech_err err = {0};
    memset(v, 0, sizeof *v);
    if (mech_tui_train_load(db, RUN_TRAIN, v, &err)) fail_msg("load: %s", err.msg);
}

static const char *metric_names[3] = {"loss", "lr", "grad_norm"};

// --- the curves -----------------------------------------------------------------

// Every stored step and value of the three curves, and the cursor's line.
static void test_train_values_equal_sql(void **state) {
    (void)state;
    mech_tui_train v;
    load(&v);
    assert_int_equal(v.n, (int)sql_num(db, "select count(distinct item) from results where run_id=1 and site='train'"));
    assert_int_equal(v.n, STEPS);
    for (int c = 0; c < 3; c++) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "select item, value from results where run_id=1 and site='train' and metric='%s' order by item",
                 metric_names[c]);
        char *r = mech_test_sql_rows(db, sql), *s = r;
        int i = 0;
        while (*s) {
            int item = (int)strtol(s, &s, 10);
            assert_int_equal(*s, '|');
            double x = strtod(s + 1, &s);
            assert_true(i < v.n);
            assert_int_equal(v.step[i], item);
            assert_same(v.val[c][i], x, metric_names[c]);
            i++;
            if (*s == '\n') s++;
        }
        assert_int_equal(i, v.n);
        free(r);
    }
    assert_same(v.eval_token_acc, sql_num(db, "select value from results where run_id=1 and metric='eval_token_acc'"),
                "eval_token_acc");
    assert_same(v.eval_loss, sql_num(db, "select value from results where run_id=1 and metric='eval_loss'"), "eval_loss");
    // the cursor starts at the last step; its line gives the three values
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 30, 120), MECH_OK);
    int steps[] = {STEPS, 1, 6, 5};
    const int keys[] = {0, 'g', 0, ','};
    for (int k = 0; k < 4; k++) {
        if (keys[k]) assert_int_equal(mech_tui_train_key(&v, keys[k]), MECH_TUI_REDRAW);
        if (k == 2)
            for (int j = 0; j < 5; j++) mech_tui_train_key(&v, '.');
        mech_tui_grid_clear(&g);
        mech_tui_train_render(&v, &g, 0, g.h);
        char want[256], line[1024];
        double x[3];
        for (int c = 0; c < 3; c++)
            x[c] = sql_num(db, "select value from results where run_id=1 and site='train' and metric='%s' and item=%d",
                           metric_names[c], steps[k]);
        snprintf(want, sizeof want, "step %d  loss %.4g  lr %.4g  grad_norm %.4g", steps[k], x[0], x[1], x[2]);
        row_text(&g, 1, line);
        if (strncmp(line, want, strlen(want))) fail_msg("cursor line\n  got:  %s\n  want: %s", line, want);
    }
    // the title: the final loss
    char want[128];
    snprintf(want, sizeof want, "200 steps (1..200)  final loss %.4g",
             sql_num(db, "select value from results where run_id=1 and metric='loss' and item=%d", STEPS));
    assert_non_null(strstr(v.title, want));
    mech_tui_grid_deinit(&g);
    mech_tui_train_deinit(&v);
}

// The chart: each column covers an even share of the steps, its value range
// is the min..max of those steps (SQL), and the cells lit in the column are
// exactly the chart rows of that range on the axis min..max of the curve.
static void check_chart(mech_tui_train *v, int w, int h) {
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, h, w), MECH_OK);
    mech_tui_train_render(v, &g, 0, h);
    int cols = v->cols, rows = h - 5, rows2 = 2 * rows, chart_x = 11, cy = 3;
    int side = w >= 90 ? 46 : 0;
    assert_int_equal(cols, w - chart_x - side);
    const char *m = metric_names[v->curve];
    const char *pos = v->log_y ? " and value > 0" : "";
    double lo = sql_num(db, "select min(value) from results where run_id=1 and site='train' and metric='%s'%s", m, pos);
    double hi = sql_num(db, "select max(value) from results where run_id=1 and site='train' and metric='%s'%s", m, pos);
    double alo, ahi;
    assert_true(mech_tui_train_axis(v, &alo, &ahi) > 0);
    assert_same(alo, lo, "axis low"), assert_same(ahi, hi, "axis high");
    double f_lo = v->log_y ? log10(lo) : lo, f_hi = v->log_y ? log10(hi) : hi;
    int covered = 0, prev_i1 = 0;
    for (int c = 0; c < cols; c++) {
        int i0, i1;
        mech_tui_train_span(v, c, cols, &i0, &i1);
        // contiguous, in order; an even share: floor or ceil of n / cols
        // steps each (with fewer steps than columns one step, repeated)
        if (v->n >= cols) {
            assert_int_equal(i0, prev_i1);
            assert_true(i1 - i0 == v->n / cols || i1 - i0 == (v->n + cols - 1) / cols);
            covered += i1 - i0;
        } else {
            assert_int_equal(i1 - i0, 1);
            assert_true(i0 >= prev_i1 - 1 && i0 <= prev_i1);
            assert_int_equal(i0, (int)((long long)c * v->n / cols));
        }
        prev_i1 = i1;
        for (int i = i0; i < i1; i++) assert_int_equal(mech_tui_train_col(v, i, cols) <= c, 1);
        double clo, chi;
        int k = mech_tui_train_range(v, c, cols, &clo, &chi);
        assert_true(k > 0);
        double slo = sql_num(db, "select min(value) from results where run_id=1 and site='train' and metric='%s' and "
                                 "item between %d and %d%s", m, v->step[i0], v->step[i1 - 1], pos);
        double shi = sql_num(db, "select max(value) from results where run_id=1 and site='train' and metric='%s' and "
                                 "item between %d and %d%s", m, v->step[i0], v->step[i1 - 1], pos);
        assert_same(clo, slo, "column low"), assert_same(chi, shi, "column high");
        // the chart rows (0 at the bottom) of the column's range
        int r0 = (int)lround(((v->log_y ? log10(slo) : slo) - f_lo) / (f_hi - f_lo) * (rows2 - 1));
        int r1 = (int)lround(((v->log_y ? log10(shi) : shi) - f_lo) / (f_hi - f_lo) * (rows2 - 1));
        for (int y = 0; y < rows; y++) {
            int up = 2 * (rows - 1 - y) + 1, dn = up - 1;
            int want_up = up >= r0 && up <= r1, want_dn = dn >= r0 && dn <= r1;
            const mech_tui_cell *cell = mech_tui_grid_at(&g, cy + y, chart_x + c);
            if (!want_up && !want_dn) {
                assert_int_equal(cell->heat, 0);
                continue;
            }
            assert_int_equal(cell->heat, 1), assert_int_equal(cell->half, 1);
            if ((cell->level > 0) != want_up || (cell->lo > 0) != want_dn)
                fail_msg("column %d (steps %d..%d) text row %d: lit %d/%d, want %d/%d", c, v->step[i0],
                         v->step[i1 - 1], y, cell->level > 0, cell->lo > 0, want_up, want_dn);
        }
    }
    if (v->n >= cols) assert_int_equal(covered, v->n);
    assert_int_equal(prev_i1, v->n);
    // the cursor's mark under its column
    char axis[1024];
    row_text(&g, cy + rows, axis);
    const char *caret = strchr(axis, '^');
    assert_non_null(caret);
    assert_int_equal((int)(caret - axis), chart_x + mech_tui_train_col(v, v->cur, cols));
    // the y labels: the axis ends
    char want[64], line[1024];
    snprintf(want, sizeof want, "%10.4g|", hi);
    row_text(&g, cy, line);
    assert_memory_equal(line, want, strlen(want));
    snprintf(want, sizeof want, "%10.4g|", lo);
    row_text(&g, cy + rows - 1, line);
    assert_memory_equal(line, want, strlen(want));
    mech_tui_grid_deinit(&g);
}

static void test_train_chart_columns(void **state) {
    (void)state;
    mech_tui_train v;
    load(&v);
    check_chart(&v, 80, 24);  // 69 columns for 200 steps: 2 or 3 steps a column
    mech_tui_train_key(&v, 'y'); // log scale
    check_chart(&v, 80, 24);
    mech_tui_train_key(&v, '3'); // the gradient norm, log
    check_chart(&v, 100, 30);
    mech_tui_train_key(&v, 'y');
    mech_tui_train_key(&v, '2'); // the learning rate, linear: warm-up then cosine
    check_chart(&v, 300, 20);   // 243 columns for 200 steps: a step spans columns
    mech_tui_train_deinit(&v);
}

// Keys: columns, steps, curves, the log axis, leaving.
static void test_train_keys(void **state) {
    (void)state;
    mech_tui_train v;
    load(&v);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_train_render(&v, &g, 0, g.h);
    int cols = v.cols;
    assert_int_equal(v.cur, STEPS - 1);
    mech_tui_train_key(&v, 'g');
    assert_int_equal(v.cur, 0);
    // l: the first step of the next column, floor(n / cols) steps on
    mech_tui_train_key(&v, 'l');
    assert_int_equal(v.cur, STEPS / cols);
    mech_tui_train_key(&v, 'l');
    assert_int_equal(v.cur, 2 * STEPS / cols);
    mech_tui_train_key(&v, 'h');
    assert_int_equal(v.cur, STEPS / cols);
    mech_tui_train_key(&v, MECH_TUI_KEY_LEFT);
    mech_tui_train_key(&v, MECH_TUI_KEY_LEFT);
    assert_int_equal(v.cur, 0);
    mech_tui_train_key(&v, ',');
    assert_int_equal(v.cur, 0);
    mech_tui_train_key(&v, MECH_TUI_KEY_END);
    assert_int_equal(v.cur, STEPS - 1);
    mech_tui_train_key(&v, '.');
    assert_int_equal(v.cur, STEPS - 1);
    // curves: c cycles loss -> lr -> grad_norm -> loss
    const char *names[] = {"chart: lr", "chart: grad_norm", "chart: loss"};
    for (int k = 0; k < 3; k++) {
        mech_tui_train_key(&v, 'c');
        mech_tui_grid_clear(&g);
        mech_tui_train_render(&v, &g, 0, g.h);
        assert_true(grid_has(&g, names[k]));
    }
    mech_tui_train_key(&v, 'y');
    mech_tui_grid_clear(&g);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_true(grid_has(&g, "chart: loss, log scale"));
    assert_int_equal(mech_tui_train_key(&v, 'Z'), MECH_TUI_NONE);
    assert_int_equal(mech_tui_train_key(&v, 'q') & MECH_TUI_QUIT, MECH_TUI_QUIT);
    assert_int_equal(mech_tui_train_key(&v, MECH_TUI_KEY_ESC) & MECH_TUI_QUIT, MECH_TUI_QUIT);
    mech_tui_grid_deinit(&g);
    mech_tui_train_deinit(&v);
}

// The settings panel (what the command was given) and the held-out scores.
static void test_train_side_panel(void **state) {
    (void)state;
    mech_tui_train v;
    load(&v);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 30, 120), MECH_OK);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_true(grid_has(&g, "task       induction"));
    assert_true(grid_has(&g, "steps      0 -> 200 of 200"));
    assert_true(grid_has(&g, "model      1 layer x 2 heads, d_model 16"));
    assert_true(grid_has(&g, "d_head 8, attn-only"));
    assert_true(grid_has(&g, "vocab 16, n_ctx 16"));
    assert_true(grid_has(&g, "optimizer  AdamW lr 0.01 -> "));
    assert_true(grid_has(&g, "warmup 10"));
    assert_true(grid_has(&g, "batch      2 x 16 tokens, accum 1"));
    assert_true(grid_has(&g, "seed       3, threads 1"));
    assert_true(grid_has(&g, "held-out"));
    char want[64];
    snprintf(want, sizeof want, "token acc  %.4g",
             sql_num(db, "select value from results where run_id=1 and metric='eval_token_acc'"));
    assert_true(grid_has(&g, want));
    snprintf(want, sizeof want, "loss       %.4g",
             sql_num(db, "select value from results where run_id=1 and metric='eval_loss'"));
    assert_true(grid_has(&g, want));
    // s hides it: the chart takes the width
    mech_tui_train_key(&v, 's');
    mech_tui_grid_clear(&g);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_false(grid_has(&g, "settings"));
    assert_int_equal(v.cols, 120 - 11);
    // a narrow window has no panel until s; then the chart keeps 10 columns or more
    mech_tui_train_key(&v, 's');
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_false(grid_has(&g, "settings"));
    assert_int_equal(v.cols, 80 - 11);
    mech_tui_train_key(&v, 's');
    mech_tui_grid_clear(&g);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_true(grid_has(&g, "settings"));
    assert_true(grid_has(&g, "task       induction"));
    assert_int_equal(v.cols, 80 - 11 - 46);
    char line[1024];
    row_text(&g, 2, line); // the chart line stops where the panel starts
    assert_int_equal(line[80 - 44 - 1], ' ');
    assert_int_equal(line[80 - 44 - 2], ' ');
    assert_memory_equal(line + 80 - 44, "settings", 8);
    assert_int_equal(mech_tui_grid_resize(&g, 20, 40), MECH_OK);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_int_equal(v.cols, 40 - 11 - 19); // 17 columns of panel
    assert_int_equal(mech_tui_grid_resize(&g, 20, 36), MECH_OK);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_int_equal(v.cols, 36 - 11); // no room: no panel
    mech_tui_grid_deinit(&g);
    mech_tui_train_deinit(&v);
}

// The runs list's figure and the app: Enter on a train run opens the view.
static void test_train_runs_list_and_app(void **state) {
    (void)state;
    mech_tui_run_row *rows = NULL;
    size_t n = 0;
    mech_err err = {0};
    assert_int_equal(mech_tui_runs_load(db, &rows, &n, &err), MECH_OK);
    assert_true(n >= 1);
    assert_string_equal(rows[0].kind, "train");
    char want[64];
    snprintf(want, sizeof want, "final loss %.4g at step %d",
             sql_num(db, "select value from results where run_id=1 and metric='loss' and item=%d", STEPS), STEPS);
    assert_string_equal(rows[0].figure, want);
    mech_free(rows);

    mech_tui_app app = {0};
    app.db_path = db, app.has_runs = 1;
    mech_tui_app_reload(&app);
    assert_int_equal(mech_tui_app_key(&app, MECH_TUI_KEY_ENTER), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_TRAIN);
    assert_string_equal(mech_tui_app_view_name(&app), "training");
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 100), MECH_OK);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "[training]"));
    assert_true(grid_has(&g, "run 1  train  induction"));
    assert_true(grid_has(&g, "c curve"));
    // ? lists the view's keys
    mech_tui_app_key(&app, '?');
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "keys: training view"));
    assert_true(grid_has(&g, "log / linear y axis"));
    mech_tui_app_key(&app, ' ');
    // keys reach the view; Esc goes back to the list
    mech_tui_app_key(&app, 'g');
    assert_int_equal(app.train.cur, 0);
    mech_tui_app_key(&app, MECH_TUI_KEY_ESC);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    // the view stays reachable with Tab, and by name
    assert_int_equal(mech_tui_app_set_view(&app, "training", &err), MECH_OK);
    assert_int_equal(app.view, MECH_TUI_VIEW_TRAIN);
    mech_tui_app_key(&app, 'q');
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    // a run that is not a train run, and one that does not exist
    mech_tui_train v = {0};
    assert_int_equal(mech_tui_train_load(db, RUN_LOGIT, &v, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "not a train run"));
    assert_int_equal(v.n, 0);
    assert_int_equal(mech_tui_train_load(db, 999, &v, &err), MECH_ERR_RANGE);
    mech_tui_app_open_run(&app, RUN_LOGIT, "train"); // a kind that lies: the error is the title
    assert_int_equal(app.view, MECH_TUI_VIEW_TRAIN);
    mech_tui_app_render(&app, &g);
    assert_true(grid_has(&g, "run 2: cannot read it"));
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// Copies the database to path (to change a run there).
static void copy_db(const char *path) {
    size_t len = 0;
    void *b = mech_test_read(db, &len);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, len, f), len);
    fclose(f);
    free(b);
}

// A damaged run: parameters that are not JSON, curves with missing and
// NULL rows, a negative loss on a log axis. The view shows what is there.
static void test_train_damaged_run(void **state) {
    (void)state;
    char other[600];
    snprintf(other, sizeof other, "%s", mech_test_tmpn("tuitrain_damaged.db"));
    mech_test_rm_db(other);
    copy_db(other);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(other, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h,
                                  "UPDATE runs SET params = '{\"task\": \"induc', status = 'interrupted' WHERE id = 1;"
                                  "DELETE FROM results WHERE run_id = 1 AND metric = 'lr' AND item > 100;"
                                  "UPDATE results SET value = NULL WHERE run_id = 1 AND metric = 'grad_norm';"
                                  "UPDATE results SET value = -1 WHERE run_id = 1 AND metric = 'loss' AND item = 7;"
                                  "DELETE FROM results WHERE run_id = 1 AND site = 'eval';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    mech_tui_train v = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_train_load(other, RUN_TRAIN, &v, &err), MECH_OK);
    assert_int_equal(v.n, STEPS);
    assert_non_null(strstr(v.title, "[interrupted]"));
    assert_true(isnan(v.val[MECH_TUI_TRAIN_LR][150]));
    assert_true(isnan(v.eval_loss));
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 120), MECH_OK);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_true(grid_has(&g, "lr -  grad_norm -")); // the cursor at step 200
    assert_false(grid_has(&g, "held-out"));
    assert_false(grid_has(&g, "optimizer")); // no settings from broken parameters
    // the gradient norm has no value: an empty chart, said so
    mech_tui_train_key(&v, '3');
    mech_tui_grid_clear(&g);
    mech_tui_train_render(&v, &g, 0, g.h);
    assert_true(grid_has(&g, "nothing to draw"));
    double lo, hi;
    assert_int_equal(mech_tui_train_axis(&v, &lo, &hi), 0);
    // the loss on a log axis leaves out the negative value
    mech_tui_train_key(&v, '1');
    mech_tui_train_key(&v, 'y');
    assert_int_equal(mech_tui_train_axis(&v, &lo, &hi), STEPS - 1);
    assert_true(lo > 0);
    mech_tui_grid_clear(&g);
    mech_tui_train_render(&v, &g, 0, g.h);
    mech_tui_grid_deinit(&g);
    mech_tui_train_deinit(&v);
    mech_test_rm_db(other);
}

// --- labels of the other new kinds ---------------------------------------------------

static void test_label_tuned_lens(void **state) {
    (void)state;
    mech_tui_lens v = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_lens_load(db, RUN_TUNED, &v, &err), MECH_OK);
    const char *base = strrchr(lensf, '/') + 1;
    char want[300];
    snprintf(want, sizeof want, "run 3 tuned lens (%s)", base);
    if (strncmp(v.title, want, strlen(want))) fail_msg("title %s, want %s...", v.title, want);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 20, 160), MECH_OK);
    mech_tui_lens_render(&v, &g, 0, g.h);
    assert_true(grid_has(&g, want));
    mech_tui_lens_deinit(&v);
    // the logit-lens run beside it keeps its own name
    assert_int_equal(mech_tui_lens_load(db, RUN_LOGIT, &v, &err), MECH_OK);
    assert_non_null(strstr(v.title, "run 2 logit lens"));
    assert_null(strstr(v.title, "tuned"));
    mech_tui_lens_deinit(&v);
    mech_tui_grid_deinit(&g);
}

static void test_label_attribution_patching(void **state) {
    (void)state;
    mech_tui_patch v = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_patch_load(db, RUN_ATTRIB, &v, &err), MECH_OK);
    assert_string_equal(v.method, "attrib");
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 140), MECH_OK);
    mech_tui_patch_render(&v, &g, 0, g.h);
    char line[1024];
    row_text(&g, 0, line);
    assert_non_null(strstr(line, "run 4  attribution patching (first-order estimate) heads (layer x head)"));
    // the cursor's value is the stored estimate
    char want[64];
    snprintf(want, sizeof want, "effect %.4g",
             sql_num(db, "select avg(value) from results where run_id=4 and metric='effect' and layer=0 and head=0"));
    assert_true(grid_has(&g, want));
    mech_tui_patch_deinit(&v);
    mech_tui_grid_deinit(&g);
}

static void test_label_eap_method(void **state) {
    (void)state;
    mech_tui_circuit c = {0};
    mech_err err = {0};
    // mech eap records its method; plain EAP is "eap"
    assert_true(sql_num(db, "select json_extract(params, '$.method') = 'eap' from runs where id=5") == 1);
    assert_int_equal(mech_tui_circuit_load(db, RUN_EAP, &c, &err), MECH_OK);
    assert_non_null(strstr(c.title, "run 5  eap  method eap  logit_diff"));
    mech_tui_circuit_deinit(&c);
    // a run that records its variant shows it
    char other[600];
    snprintf(other, sizeof other, "%s", mech_test_tmpn("tuitrain_eapig.db"));
    mech_test_rm_db(other);
    copy_db(other);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(other, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "UPDATE runs SET params = json_set(params, '$.method', 'eap-ig-inputs') WHERE id = 5",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(mech_tui_circuit_load(other, RUN_EAP, &c, &err), MECH_OK);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 30, 140), MECH_OK);
    mech_tui_circuit_render(&c, &g, 0, g.h);
    assert_true(grid_has(&g, "run 5  eap  method eap-ig-inputs  logit_diff"));
    mech_tui_grid_deinit(&g);
    mech_tui_circuit_deinit(&c);
    mech_test_rm_db(other);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_train_values_equal_sql),
        cmocka_unit_test(test_train_chart_columns),
        cmocka_unit_test(test_train_keys),
        cmocka_unit_test(test_train_side_panel),
        cmocka_unit_test(test_train_runs_list_and_app),
        cmocka_unit_test(test_train_damaged_run),
        cmocka_unit_test(test_label_tuned_lens),
        cmocka_unit_test(test_label_attribution_patching),
        cmocka_unit_test(test_label_eap_method),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
