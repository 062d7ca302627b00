/*
** tests/test_tui_term_patch.c: the Patching and Attribution views of the
** real `mech tui` binary in tmux (tests/support/tmux.h), on a database that
** mech's own commands write: a resid_pre and a heads sweep of IOI pairs on
** a random `mech init` model, and an attrib run. The runs are opened from
** the runs list; the screen's token labels, cursor values and bar order are
** checked against SQL on the database (tests/support/check.h) and the
** built-in tokenizer, the live attribution against the library's
** mech_lens_dla. Skipped, with a message, when tmux is not installed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tests/support/tmux.h"
#include "tui/tui.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char model[600], db[600];
static const char *prompt = "When Mary and John went to the store, John gave a drink to";

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(model, sizeof model, "%s", mech_test_tmpn("tpatch.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("tpatch.db"));
    mech_test_rm_db(db);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init -o %s", model)) fail_msg("mech init: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "patch --model %s --dataset ioi --n 2 --db %s", model, db)) fail_msg("patch: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "patch --model %s --dataset ioi --n 2 --sweep heads --db %s", model, db))
        fail_msg("patch --sweep heads: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "attrib --model %s --prompt '%s' --answer ' Mary' --wrong ' John' --db %s", model,
                      prompt, db))
        fail_msg("attrib: %s", out);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    unlink(model);
    mech_test_rm_db(db);
    return 0;
}

// One number from SQL on the database.
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

// The label of the stored clean token at pos of item of run 1 (the random
// model has no tokenizer files: GPT-2's, as mech patch used).
static void stored_token(int item, int pos, char *out, size_t cap) {
    int32_t id = (int32_t)sql_num("select j.value from prompts, json_each(prompts.tokens) j where run_id=1 and "
                                  "item=%d and role='clean' and j.key=%d",
                                  item, pos);
    mech_tokenizer *tok = NULL;
    mech_err err = {0};
    assert_int_equal(mech_tokenizer_gpt2(&tok, &err), MECH_OK);
    mech_tui_id_label(tok, id, out, cap);
    mech_tokenizer_free(tok);
}

// The screen line that starts with prefix (copied into out), else fails.
static void screen_line(const char *prefix, char *out, size_t cap) {
    const char *s = tmux_screen;
    while (s && *s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n >= strlen(prefix) && !strncmp(s, prefix, strlen(prefix))) {
            snprintf(out, cap, "%.*s", (int)n, s);
            return;
        }
        s = e ? e + 1 : NULL;
    }
    fail_msg("no line starting with \"%s\" on the screen:\n%s", prefix, tmux_screen);
}

// The patching view of both sweeps, opened from the runs list.
static void test_tui_term_patch_views(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    tmux_start(80, 24, db);
    tmux_wait_for("3 of 3 runs");
    tmux_keys("Enter");
    tmux_wait_for("run 1  patch resid_pre (layer x position)  mean over 2 pairs");
    tmux_keys("p");
    tmux_wait_for("pair 1 of 2 (item 0)");
    // the column labels: the first pair's clean tokens, 6 characters each
    char t0[64], t1[64], t2[64], want[256], line[256];
    stored_token(0, 0, t0, sizeof t0);
    stored_token(0, 1, t1, sizeof t1);
    stored_token(0, 2, t2, sizeof t2);
    snprintf(want, sizeof want, "     %-6.6s %-6.6s %-6.6s", t0, t1, t2);
    tmux_wait_for(want);
    // the cursor's value against SQL
    tmux_keys("l l j");
    snprintf(want, sizeof want, "L1 pos 2 '%s'  effect %.4g", t2,
             sql_num("select value from results where run_id=1 and item=0 and metric='effect' and layer=1 and pos=2"));
    tmux_wait_for(want);
    // the legend's ends: the pair's largest |effect|
    double mx = sql_num("select max(abs(value)) from results where run_id=1 and item=0 and metric='effect'");
    snprintf(want, sizeof want, "%+.4g ", -mx);
    screen_line(want, line, sizeof line);
    snprintf(want, sizeof want, " %+.4g", mx);
    assert_non_null(strstr(line, want));
    // the mean over pairs, then the raw metric
    tmux_keys("a");
    snprintf(want, sizeof want, "  effect %.4g",
             sql_num("select avg(value) from results where run_id=1 and metric='effect' and layer=1 and pos=2"));
    tmux_wait_for("mean over 2 pairs");
    tmux_wait_for(want);
    tmux_keys("m");
    snprintf(want, sizeof want, "  logit_diff %.4g",
             sql_num("select avg(value) from results where run_id=1 and metric='logit_diff' and layer=1 and pos=2"));
    tmux_wait_for(want);
    // the heads sweep
    tmux_keys("Escape");
    tmux_wait_for("3 of 3 runs");
    tmux_keys("j Enter");
    tmux_wait_for("run 2  patch heads (layer x head)");
    tmux_wait_for("     H0  H1  H2  H3");
    tmux_keys("P l l l");
    snprintf(want, sizeof want, "L0 H3  effect %.4g",
             sql_num("select value from results where run_id=2 and item=1 and metric='effect' and layer=0 and head=3"));
    tmux_wait_for("pair 2 of 2 (item 1)");
    tmux_wait_for(want);
    tmux_keys("'?'");
    tmux_wait_for("keys: patching view");
    tmux_keys("x");
    tmux_wait_gone("keys: patching view");
    tmux_keys("q");
    tmux_wait_for("3 of 3 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// The components of the first sequence by |attribution|, largest first, as
// mech_dla labels them (from SQL).
static int stored_order(char labels[][32], int cap) {
    char *r = mech_test_sql_rows(db, "select metric, layer, head from results where run_id=3 and item=0 and metric in "
                                     "('embed','head','attn_bias','mlp') order by abs(value) desc");
    int n = 0;
    for (char *s = r; *s && n < cap;) {
        char metric[16];
        int layer, head;
        if (sscanf(s, "%15[^|]|%d|%d", metric, &layer, &head) != 3) break;
        if (!strcmp(metric, "head")) snprintf(labels[n++], 32, "L%dH%d", layer, head);
        else if (layer >= 0) snprintf(labels[n++], 32, "L%d.%s", layer, metric);
        else snprintf(labels[n++], 32, "%s", metric);
        s = strchr(s, '\n');
        if (!s) break;
        s++;
    }
    free(r);
    return n;
}

// The attribution of a stored run, then of the live prompt (A in the head view).
static void test_tui_term_attrib_views(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char want[600], line[256], order[16][32];
    int n = stored_order(order, 16);
    assert_true(n >= 5);
    tmux_start(80, 24, db);
    tmux_wait_for("3 of 3 runs");
    tmux_keys("G Enter");
    // text gets BOS in front: 14 tokens + 1
    tmux_wait_for("run 3  attrib  logit(' Mary') - logit(' John') at pos 14");
    tmux_wait_for("component");
    // the first five bars in the database's order
    for (int i = 0; i < 5; i++) {
        snprintf(want, sizeof want, "%-14s", order[i]);
        screen_line(want, line, sizeof line);
        const char *at = strstr(tmux_screen, line), *prev = i ? strstr(tmux_screen, order[i - 1]) : tmux_screen;
        assert_true(at > prev);
    }
    tmux_keys("q");
    tmux_wait_for("3 of 3 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");

    // live: the top-1 prediction's attribution, computed here with the library
    mech_model *m = NULL;
    mech_run *run = NULL;
    mech_tokenizer *tok = NULL;
    int32_t *text_ids = NULL, ids[64];
    size_t T = 0;
    mech_err err = {0};
    if (mech_model_load(model, &m, &err) || mech_tokenizer_gpt2(&tok, &err) ||
        mech_tokenizer_encode(tok, prompt, strlen(prompt), 0, &text_ids, &T, &err))
        fail_msg("%s", err.msg);
    // mech tui puts BOS in front of text, as every mech command
    ids[0] = mech_tokenizer_eot(tok);
    memcpy(ids + 1, text_ids, T * sizeof *ids);
    T++;
    mech_free(text_ids);
    if (mech_run_new(m, 1, (int)T, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    const float *x = mech_run_logits(run) + (T - 1) * (size_t)m->cfg.d_vocab;
    int32_t best = 0;
    for (int t = 1; t < m->cfg.d_vocab; t++)
        if (x[t] > x[best]) best = t;
    mech_dla *d = NULL;
    if (mech_lens_dla(m, run, -1, &best, NULL, &d, &err)) fail_msg("%s", err.msg);
    int top = 0;
    for (int c = 1; c < d->n_comp; c++)
        if (fabs(d->attr[c]) > fabs(d->attr[top])) top = c;
    char ans[64], args[1400];
    mech_tui_id_label(tok, best, ans, sizeof ans);
    snprintf(args, sizeof args, "--model %s --prompt '%s'", model, prompt);
    tmux_start(80, 24, args);
    tmux_wait_for("[attention]");
    tmux_keys("A");
    snprintf(want, sizeof want, "live prompt  logit('%s') (top-1 prediction) at pos %d", ans, (int)T - 1);
    tmux_wait_for(want);
    snprintf(want, sizeof want, "%-14s", d->labels[top]);
    tmux_wait_for("component");
    char first[256];
    screen_line("component", line, sizeof line);
    const char *after = strstr(tmux_screen, line) + strlen(line) + 1;
    snprintf(first, sizeof first, "%.14s", after);
    assert_string_equal(first, want);
    snprintf(want, sizeof want, "%+.4g", d->attr[top]);
    assert_non_null(strstr(after, want));
    tmux_keys("q");
    tmux_wait_for("[attention]");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_dla_free(d);
    mech_tokenizer_free(tok);
    mech_run_free(run);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_patch_views),
        cmocka_unit_test(test_tui_term_attrib_views),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
