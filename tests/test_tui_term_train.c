/*
** tests/test_tui_term_train.c: the Training view of the real `mech tui`
** binary in tmux (tests/support/tmux.h), on a database that `mech train`
** writes (200 steps of a tiny model, under a second), then the labels of a
** tuned-lens run (beside its logit-lens run), an attribution-patching run
** and an eap run in the same database. Values on the screen are checked against SQL on the database;
** the chart is read without colour (MECH_TUI_COLORS=none: the cells' glyphs),
** so the cursor's column ('#') can be found under its mark ('^'). Skipped,
** with a message, when tmux is not installed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tests/support/tmux.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char db[600], model[600], trained[600], lensf[600];

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(db, sizeof db, "%s", mech_test_tmpn("ttrain.db"));
    snprintf(model, sizeof model, "%s", mech_test_tmpn("ttrain_m.safetensors"));
    snprintf(trained, sizeof trained, "%s", mech_test_tmpn("ttrain_out.safetensors"));
    snprintf(lensf, sizeof lensf, "%s", mech_test_tmpn("ttrain_lens.safetensors"));
    mech_test_rm_db(db);
    char *out = NULL;
    int rc = mech_test_cli(&out, NULL,
                           "train --task induction --attn-only --layers 1 --heads 2 --d-model 16 --d-head 8 --vocab 16 "
                           "--seq 16 --steps 200 --batch 2 --lr 0.01 --warmup 10 --seed 3 --eval 8 --threads 1 "
                           "--db %s --out %s",
                           db, trained);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, "init -o %s", model);
    if (!rc)
        free(out), rc = mech_test_cli(&out, NULL, "tuned-lens --model %s -o %s --ids 1,2,3,4 --ids 5,6,7,8 --ids 9,10,11 "
                                                  "--heldout 1 --steps 2", model, lensf);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, "lens --model %s --ids 5,17,42 --tuned %s --db %s", model, lensf, db);
    if (!rc)
        free(out), rc = mech_test_cli(&out, NULL, "patch --model %s --dataset ioi --n 2 --sweep heads --method attrib "
                                                  "--db %s", model, db);
    if (!rc) free(out), rc = mech_test_cli(&out, NULL, "eap --model %s --dataset ioi --n 2 --top-n 5 --db %s", model, db);
    if (rc) fprintf(stderr, "setup: mech failed: %s\n", out ? out : "");
    free(out);
    return rc ? -1 : 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    mech_test_rm_db(db);
    unlink(model), unlink(trained), unlink(lensf);
    char optim[700];
    snprintf(optim, sizeof optim, "%.*s.optim.safetensors", (int)(strlen(trained) - strlen(".safetensors")), trained);
    unlink(optim);
    return 0;
}

static double sql_num(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static double sql_num(const char *fmt, ...) {
    char sql[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    char *r = mech_test_sql_rows(db, sql);
    double x = !r[0] || !strncmp(r, "NULL", 4) ? NAN : strtod(r, NULL);
    free(r);
    return x;
}

// The cursor line the view must show for step s (SQL, %.4g as the view).
static void want_step(int s, char *out, size_t cap) {
    const char *m[3] = {"loss", "lr", "grad_norm"};
    double x[3];
    for (int c = 0; c < 3; c++)
        x[c] = sql_num("select value from results where run_id=1 and site='train' and metric='%s' and item=%d", m[c], s);
    snprintf(out, cap, "step %d  loss %.4g  lr %.4g  grad_norm %.4g", s, x[0], x[1], x[2]);
}

// The screen's lines into lines[] (at most cap); returns how many.
static int screen_lines(char lines[][256], int cap) {
    int n = 0;
    for (const char *s = tmux_screen; *s && n < cap;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        snprintf(lines[n++], 256, "%.*s", (int)(len < 255 ? len : 255), s);
        if (!e) break;
        s = e + 1;
    }
    return n;
}

// The cursor's column: '^' on the axis line, and the chart's '#' cells (the
// cursor column's lit cells without colour) only in that column.
static void check_cursor_column(void) {
    char lines[64][256];
    tmux_capture(0);
    int n = screen_lines(lines, 64), axis = -1;
    for (int y = 0; y < n && axis < 0; y++)
        if (!strncmp(lines[y], "          +", 11)) axis = y;
    if (axis < 0) fail_msg("no x axis on the screen:\n%s", tmux_screen);
    const char *caret = strchr(lines[axis], '^');
    assert_non_null(caret);
    int cx = (int)(caret - lines[axis]), hashes = 0;
    for (int y = 4; y < axis; y++)
        for (int x = 11; x < 11 + 43 && lines[y][x]; x++) // the chart: 43 columns from 11
            if (lines[y][x] == '#') {
                if (x != cx) fail_msg("'#' at column %d, the cursor's mark at %d:\n%s", x, cx, tmux_screen);
                hashes++;
            }
    assert_true(hashes > 0);
}

static void test_tui_term_train_view(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char want[256];
    tmux_start_env("MECH_TUI_COLORS=none", 100, 30, db);
    tmux_wait_for("5 of 5 runs");
    snprintf(want, sizeof want, "final loss %.4g at step 200",
             sql_num("select value from results where run_id=1 and metric='loss' and item=200"));
    tmux_wait_for(want);
    tmux_keys("Enter");
    snprintf(want, sizeof want, "run 1  train  induction  200 steps (1..200)  final loss %.4g",
             sql_num("select value from results where run_id=1 and metric='loss' and item=200"));
    tmux_wait_for(want);
    want_step(200, want, sizeof want);
    tmux_wait_for(want);
    tmux_wait_for("task       induction");
    snprintf(want, sizeof want, "token acc  %.4g", sql_num("select value from results where run_id=1 and metric='eval_token_acc'"));
    tmux_wait_for(want);
    check_cursor_column();
    // first step, then three steps on
    tmux_keys("g");
    want_step(1, want, sizeof want);
    tmux_wait_for(want);
    check_cursor_column();
    tmux_keys(". . .");
    want_step(4, want, sizeof want);
    tmux_wait_for(want);
    // l: the next column's first step; 200 steps over 100 - 11 - 46 = 43
    // columns, the first of them steps 1..floor(200 / 43)
    tmux_keys("l");
    want_step(1 + 200 / 43, want, sizeof want);
    tmux_wait_for(want);
    check_cursor_column();
    // the learning rate's axis: its largest value is the peak lr
    tmux_keys("c");
    tmux_wait_for("chart: lr");
    snprintf(want, sizeof want, "%10.4g|", sql_num("select max(value) from results where run_id=1 and metric='lr'"));
    tmux_wait_for(want);
    tmux_keys("3 y");
    tmux_wait_for("chart: grad_norm, log scale");
    tmux_keys("'?'");
    tmux_wait_for("keys: training view");
    tmux_keys("x");
    tmux_wait_gone("keys: training view");
    tmux_keys("Escape");
    tmux_wait_for("5 of 5 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// The labels: a tuned-lens run, an attribution-patching run, an eap run.
static void test_tui_term_labels(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char want[256];
    tmux_start(140, 30, db);
    tmux_wait_for("5 of 5 runs");
    tmux_keys("g j j Enter");
    snprintf(want, sizeof want, "run 3 tuned lens (%s)", strrchr(lensf, '/') + 1);
    tmux_wait_for(want);
    tmux_keys("q");
    tmux_wait_for("5 of 5 runs");
    tmux_keys("g j j j Enter");
    tmux_wait_for("run 4  attribution patching (first-order estimate) heads (layer x head)");
    tmux_keys("q");
    tmux_wait_for("5 of 5 runs");
    tmux_keys("G Enter");
    tmux_wait_for("run 5  eap  method eap  logit_diff");
    tmux_keys("q");
    tmux_wait_for("5 of 5 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_train_view),
        cmocka_unit_test(test_tui_term_labels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
