/*
** tests/test_tui_term_circuit.c: the circuit view of the real `mech tui`
** binary in a tmux terminal of 80 x 24, on runs written by the real
** binary as examples/experiments.sh does (`mech compile` reverse, `mech
** acdc --dataset compiled --n 20 --tau 1e-3 --ablation zero`, and a
** two-threshold `--sweep`). What the screen shows is compared with SQL
** queries of the database: the counts and scores, the selected edge, the
** trials in order, the missing edges of a sweep's member run. Skipped,
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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char db[600];

static int setup(void **state) {
    (void)state;
    tmux_init();
    char rev[600], *out = NULL;
    snprintf(rev, sizeof rev, "%s", mech_test_tmpn("term_circ_rev.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("term_circ.db"));
    mech_test_rm_db(db);
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev)) fail_msg("mech compile: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "acdc --model %s --dataset compiled --n 20 --tau 1e-3 --ablation zero --db %s", rev, db))
        fail_msg("mech acdc: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "acdc --model %s --dataset compiled --n 20 --sweep --taus 1e-4,0.2 --ablations zero --db %s",
                      rev, db))
        fail_msg("mech acdc --sweep: %s", out);
    free(out);
    remove(rev);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    mech_test_rm_db(db);
    return 0;
}

// The first row of an SQL query, without its newline (owned).
static char *sql1(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sql1(const char *fmt, ...) {
    char q[1000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    char *r = mech_test_sql_rows(db, q);
    r[strcspn(r, "\n")] = 0;
    return r;
}

static void wait_sql(const char *fmt, const char *a) {
    char *s = sql1(fmt, a);
    tmux_wait_for(s);
    free(s);
}

// The view's short name of a stored edge name, derived here from the
// reference's hook names: "blocks.1.hook_mlp_out[:]->blocks.2.hook_q_input[:, :, 0]"
// is "M1>L2H0.q", a DIRECT edge "L2H0.q (direct)".
static void short_label(const char *site, char *out, size_t cap) {
    char s[40] = "?", r[40] = "?", port = 0;
    int l, h;
    const char *arrow = strstr(site, "->"), *rcv = arrow + 2;
    if (!strncmp(site, "hook_embed[:]", 13)) snprintf(s, sizeof s, "tok");
    else if (!strncmp(site, "hook_pos_embed[:]", 17)) snprintf(s, sizeof s, "pos");
    else if (sscanf(site, "blocks.%d.attn.hook_result[:, :, %d]", &l, &h) == 2) snprintf(s, sizeof s, "L%dH%d", l, h);
    else if (sscanf(site, "blocks.%d.hook_mlp_out", &l) == 1) snprintf(s, sizeof s, "M%d", l);
    if (sscanf(rcv, "blocks.%d.hook_%c_input[:, :, %d]", &l, &port, &h) == 3) snprintf(r, sizeof r, "L%dH%d.%c", l, h, port);
    else if (sscanf(rcv, "blocks.%d.attn.hook_%c[:, :, %d]", &l, &port, &h) == 3) {
        snprintf(out, cap, "L%dH%d.%c (direct)", l, h, port);
        return;
    } else if (strstr(rcv, "hook_mlp_in") && sscanf(rcv, "blocks.%d.", &l) == 1) snprintf(r, sizeof r, "M%d", l);
    else if (strstr(rcv, "hook_resid_post")) snprintf(r, sizeof r, "out");
    snprintf(out, cap, "%s>%s", s, r);
}

// Run 1 opens from the runs list as a graph with its list; n steps into the
// trials, G to the last one, which leaves the stored circuit.
static void test_tui_term_circuit_trials(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    tmux_start(80, 24, db);
    tmux_wait_for("4 runs");
    tmux_keys("Enter"); // the first run: the single acdc run
    char *s = sql1("select printf('%%d of %%d edges kept', (select count(*) from results where run_id=1 and metric='kept'), "
                   "(select value from results where run_id=1 and metric='n_counted'))");
    tmux_wait_for(s);
    free(s);
    tmux_wait_for("[circuit]");
    wait_sql("select printf('TPR %%.3f  FPR %%.4f', (select value from results where run_id=1 and metric='tpr'), "
             "(select value from results where run_id=1 and metric='fpr'))%s", "");
    tmux_wait_for("[L2H0]");
    tmux_wait_for("[tok]");
    tmux_wait_for("[out]");
    // the cursor is on the edge of largest |effect|, named in full
    wait_sql("select site || '  effect ' || printf('%%.4f', value) from results where run_id=1 and metric='kept' "
             "order by abs(value) desc, rowid limit 1%s", "");
    // every kept edge is a row of the list, marked hit, with its stored effect
    char *kept = mech_test_sql_rows(db, "select site || '|' || printf('%.4f', value) from results where run_id=1 and metric='kept'");
    const char *screen = tmux_capture(0);
    int rows = 0;
    for (char *p = kept, *nl; (nl = strchr(p, '\n')); p = nl + 1, rows++) {
        *nl = 0;
        char *bar = strrchr(p, '|'), lab[80], want[120];
        *bar = 0;
        short_label(p, lab, sizeof lab);
        snprintf(want, sizeof want, "hit   %s ", lab);
        const char *at = strstr(screen, want);
        if (!at) fail_msg("no list row '%s' for %s on the screen:\n%s", want, p, screen);
        const char *eol = strchr(at, '\n'), *v = strstr(at, bar + 1);
        if (!v || (eol && v > eol)) fail_msg("the row of %s does not show its effect %s:\n%s", p, bar + 1, screen);
    }
    assert_true(rows > 0);
    free(kept);
    // trial 1, as stored
    tmux_keys("n");
    wait_sql("select printf('trial 1/%%d', (select count(distinct item) from results where run_id=1 and item >= 0))%s", "");
    wait_sql("select printf('before %%.4f  after %%.4f  effect %%.4f  %%s', "
             "max(case metric when 'before' then value end), max(case metric when 'after' then value end), "
             "max(case metric when 'effect' then value end), "
             "case max(case metric when 'removed' then value end) when 1 then 'removed' else 'kept' end) "
             "from results where run_id=1 and item=0%s", "");
    // the last trial: the stored circuit, every truth edge hit
    tmux_keys("G");
    wait_sql("select printf('trial %%d/%%d', count(distinct item), count(distinct item)) from results where run_id=1 and "
             "item >= 0%s", "");
    wait_sql("select printf('now %%d edges: %%d hit  0 missing  0 extra', count(*), count(*)) from results "
             "where run_id=1 and metric='kept'%s", "");
    // back one: the previous trial's line
    tmux_keys(",");
    wait_sql("select printf('trial %%d/%%d', count(distinct item) - 1, count(distinct item)) from results where run_id=1 "
             "and item >= 0%s", "");
    tmux_keys("Escape"); // out of trial mode: the list's edge again
    tmux_wait_gone("now ");
    wait_sql("select site || '  effect ' || printf('%%.4f', value) from results where run_id=1 and metric='kept' "
             "order by abs(value) desc, rowid limit 1%s", "");
    tmux_keys("q");
    tmux_wait_for("4 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// The sweep opens on its first run; ] shows the next threshold's circuit,
// whose missing truth edges are marked.
static void test_tui_term_circuit_sweep(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    tmux_start(80, 24, db);
    tmux_wait_for("4 runs");
    tmux_keys("/");
    tmux_keys("-l 'acdc-sweep'");
    tmux_keys("Enter");
    tmux_wait_for("1 of 4 runs");
    tmux_keys("Enter");
    tmux_wait_for("sweep 1/2 (zero)");
    wait_sql("select printf('run %%d  acdc', value) from results where run_id=2 and metric='run' and item=0%s", "");
    wait_sql("select printf('AUC zero %%.3f', value) from results where run_id=2 and metric='auc'%s", "");
    tmux_keys("']'");
    tmux_wait_for("sweep 2/2 (zero)");
    char *run = sql1("select cast(value as int) from results where run_id=2 and metric='run' and item=1");
    wait_sql("select printf('run %%d  acdc  tau 0.2', value) from results where run_id=2 and metric='run' and item=1%s", "");
    wait_sql("select printf('%%d edges: %%d hit  %%d missing  0 extra', k, k, t - k) from "
             "(select (select count(*) from results where run_id=%1$s and metric='kept') k, "
             "(select count(*) from results where run_id=%1$s and metric='truth') t)",
             run);
    tmux_wait_for("MISS  ");
    tmux_keys("'['");
    tmux_wait_for("sweep 1/2 (zero)");
    free(run);
    tmux_keys("q");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_circuit_trials),
        cmocka_unit_test(test_tui_term_circuit_sweep),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
