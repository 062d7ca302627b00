/*
** tests/test_tui_term_lens.c: the lens view of the real `mech tui` binary
** in tmux (tests/support/tmux.h). A stored logit lens run opened from the
** runs list shows the tokens and probabilities SQL reads from the database;
** the live view (L from the attention view) shows what mech_lens_logit
** computes on the same model and prompt; a run whose model file is gone
** still opens, with token ids; a stored decoder lens shows, at the layer
** ] selects, what `mech lens --input` printed. Skipped when tmux is not
** installed.
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
#include <unistd.h>

static char model[600], db[600];
static const char *prompt = "When Mary and John went to the store";

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(model, sizeof model, "%s", mech_test_tmpn("tlens_tiny.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("tlens.db"));
    mech_test_rm_db(db);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init -o %s", model)) fail_msg("mech init: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "lens --model %s --prompt '%s' --target ' the' --db %s", model, prompt, db))
        fail_msg("mech lens: %s", out);
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

static void label(const mech_tokenizer *tok, int32_t id, char *out, size_t cap) {
    size_t len = 0;
    const char *s = mech_tokenizer_token(tok, id, &len);
    char raw[64];
    snprintf(raw, sizeof raw, "%.*s", (int)len, s);
    mech_tui_token_label(raw, out, cap);
}

// "top 5:  "tok" p ..." for (layer, pos) of run 1 from SQL, cut at w columns.
static void top5_from_sql(const mech_tokenizer *tok, const char *path, int run, int layer, int pos, int w, char *want,
                          size_t cap) {
    char sql[300];
    snprintf(sql, sizeof sql,
             "select token, printf('%%.17g', value) from results where run_id = %d and item = 0 and layer = %d "
             "and pos = %d and metric = 'prob' order by rank",
             run, layer, pos);
    char *s = mech_test_sql_rows(path, sql);
    int n = snprintf(want, cap, "top 5:"), k = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), k++) {
        long long id;
        double p;
        assert_int_equal(sscanf(line, "%lld|%lf", &id, &p), 2);
        char lab[32];
        if (tok) label(tok, (int32_t)id, lab, sizeof lab);
        else snprintf(lab, sizeof lab, "<%lld>", id);
        n += snprintf(want + n, cap - (size_t)n, "  \"%s\" %.4g", lab, p);
    }
    assert_int_equal(k, 5);
    if ((int)strlen(want) > w) want[w] = 0;
    free(s);
}

// The screen line that starts with prefix (a layer row: "1     ").
static const char *screen_line(const char *prefix, char *buf, size_t cap) {
    const char *scr = tmux_capture(0);
    for (const char *l = scr; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        if (!strncmp(l, prefix, strlen(prefix))) {
            snprintf(buf, cap, "%.*s", (int)n, l);
            return buf;
        }
        l = e ? e + 1 : NULL;
    }
    fail_msg("no line starting with '%s' on\n%s", prefix, scr);
    return NULL;
}

static void test_tui_term_lens_stored(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    mech_err err = {0};
    mech_tokenizer *tok = NULL;
    if (mech_tokenizer_gpt2(&tok, &err)) fail_msg("%s", err.msg);
    char args[700], want[400];
    snprintf(args, sizeof args, "%s", db);
    tmux_start(120, 30, args);
    tmux_wait_for("1 of 1 runs");
    tmux_keys("Enter");
    tmux_wait_for("tlens_tiny.safetensors  \"When Mary and John went to the store\"");
    tmux_wait_for("run 1 logit lens");
    tmux_wait_for("shading: top-1 prob");
    top5_from_sql(tok, db, 1, 0, 0, 120, want, sizeof want);
    tmux_wait_for(want);
    tmux_keys("j l l");
    tmux_wait_for("layer 1  pos 2 \" Mary\"");
    top5_from_sql(tok, db, 1, 1, 2, 120, want, sizeof want);
    tmux_wait_for(want);
    // the target's probability and rank, as stored
    char *s = mech_test_sql_rows(db, "select rank, printf('%.17g', value) from results where run_id = 1 and layer = 1 "
                                     "and pos = 2 and metric = 'target_prob'");
    int rank = 0;
    double p = 0;
    assert_int_equal(sscanf(s, "%d|%lf", &rank, &p), 2);
    free(s);
    snprintf(want, sizeof want, "target \" the\" p %.4g rank %d", p, rank);
    tmux_wait_for(want);
    // every layer-1 cell on screen: its top-1 token from SQL
    char line[300];
    screen_line("1     ", line, sizeof line);
    s = mech_test_sql_rows(db, "select pos, token from results where run_id = 1 and layer = 1 and metric = 'prob' "
                               "and rank = 0 order by pos");
    int cells = 0;
    for (char *r = strtok(s, "\n"); r; r = strtok(NULL, "\n")) {
        int pos;
        long long id;
        assert_int_equal(sscanf(r, "%d|%lld", &pos, &id), 2);
        if (6 + pos * 8 + 7 > 120) break;
        char lab[32];
        label(tok, (int32_t)id, lab, sizeof lab);
        lab[7] = 0;
        if (strncmp(line + 6 + pos * 8, lab, strlen(lab))) fail_msg("pos %d: '%s' not at its cell in '%s'", pos, lab, line);
        cells++;
    }
    free(s);
    assert_true(cells >= 9);
    tmux_keys("m");
    tmux_wait_for("shading: target prob");
    tmux_keys("q");
    tmux_wait_for("1 of 1 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_tokenizer_free(tok);
}

static void test_tui_term_lens_live(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (mech_model_load(model, &m, &err) || mech_tokenizer_gpt2(&tok, &err) ||
        mech_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n, &err))
        fail_msg("%s", err.msg);
    int T = (int)n + 1;
    int32_t *seq = malloc((size_t)T * sizeof *seq), *tg = malloc((size_t)T * sizeof *tg);
    seq[0] = 50256;
    memcpy(seq + 1, ids, n * sizeof *ids);
    for (int p = 0; p + 1 < T; p++) tg[p] = seq[p + 1];
    tg[T - 1] = -1;
    mech_run *run = NULL;
    mech_lens_row *rows = NULL;
    size_t n_rows = 0;
    if (mech_run_new(m, 1, T, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, seq, &err) ||
        mech_lens_logit(m, run, 5, tg, &rows, &n_rows, &err))
        fail_msg("%s", err.msg);
    const mech_lens_row *r = &rows[(size_t)2 * T + 1]; // layer 2, pos 1
    char want[400], lab[32];
    int k = snprintf(want, sizeof want, "top 5:");
    for (int j = 0; j < 5; j++) {
        label(tok, r->top_ids[j], lab, sizeof lab);
        k += snprintf(want + k, sizeof want - (size_t)k, "  \"%s\" %.4g", lab, r->top_probs[j]);
    }
    want[120] = 0;
    char tgt[200];
    label(tok, seq[2], lab, sizeof lab);
    snprintf(tgt, sizeof tgt, "target \"%s\" p %.4g rank %lld", lab, r->target_prob, (long long)r->target_rank);

    char args[1000];
    snprintf(args, sizeof args, "--model %s --prompt '%s'", model, prompt);
    tmux_start(120, 30, args);
    tmux_wait_for("L0H0  9 tokens");
    tmux_wait_for("L lens");
    tmux_keys("L");
    tmux_wait_for("logit lens (live)");
    tmux_keys("j j l");
    tmux_wait_for("layer 2  pos 1 \"When\"  top-1 prob");
    tmux_wait_for(want);
    tmux_wait_for(tgt);
    tmux_keys("q");
    tmux_wait_for("L0H0  9 tokens");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_free(rows);
    mech_run_free(run);
    free(seq), free(tg);
    mech_free(ids);
    mech_tokenizer_free(tok);
    mech_model_free(m);
}

// The model file of a stored run is gone: the run opens with token ids.
static void test_tui_term_lens_model_gone(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *gone = mech_test_tmpn("tlens_gone.safetensors"), *gdb = mech_test_tmpn("tlens_gone.db");
    mech_test_rm_db(gdb);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init --seed 3 -o %s", gone) ||
        (free(out), mech_test_cli(&out, NULL, "lens --model %s --prompt 'Mary had a lamb' --db %s", gone, gdb)))
        fail_msg("%s", out);
    free(out);
    unlink(gone);
    char args[700], want[400];
    snprintf(args, sizeof args, "%s", gdb);
    tmux_start(120, 30, args);
    tmux_wait_for("1 of 1 runs");
    tmux_keys("Enter");
    tmux_wait_for("model file not found: token ids shown");
    tmux_wait_for("layer 0 emb  pos 0 \"<50256>\"");
    tmux_keys("l");
    top5_from_sql(NULL, gdb, 1, 0, 1, 120, want, sizeof want);
    tmux_wait_for(want);
    tmux_keys("q q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_test_rm_db(gdb);
}

// A stored decoder lens: ] steps to the last layer, where `reverse` holds
// what `mech lens --input` printed for it.
static void test_tui_term_lens_decoder(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *rev = mech_test_tmpn("tlens_rev.safetensors"), *ddb = mech_test_tmpn("tlens_rev.db");
    mech_test_rm_db(ddb);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev) ||
        (free(out), mech_test_cli(&out, NULL, "lens --model %s --input 'a b c d' --db %s", rev, ddb)))
        fail_msg("%s", out);
    // "  reverse        layer 0: - - - -" ... "                 layer 3: "d" "c" "b" "a""
    const char *r = strstr(out, "  reverse ");
    assert_non_null(r);
    char want[64] = "";
    for (int l = 0; l <= 3; l++) {
        r = strstr(r, "layer ");
        assert_non_null(r);
        const char *e = strchr(r, '\n');
        if (l == 3) snprintf(want, sizeof want, "%.*s", (int)(e - r - 9), r + 9);
        r = e;
    }
    free(out);
    assert_string_equal(want, "\"d\" \"c\" \"b\" \"a\"");
    char args[700], line[300];
    snprintf(args, sizeof args, "%s", ddb);
    tmux_start(80, 24, args);
    tmux_wait_for("1 of 1 runs");
    tmux_keys("Enter");
    tmux_wait_for("run 1 decoder lens");
    tmux_wait_for("layer 0 of 0..3");
    screen_line("reverse ", line, sizeof line);
    assert_null(strstr(line, want));
    tmux_keys("] ] ]");
    tmux_wait_for("layer 3 of 0..3");
    screen_line("reverse ", line, sizeof line);
    assert_non_null(strstr(line, "L2 attn H0"));
    if (!strstr(line, want)) fail_msg("'%s' not in '%s'", want, line);
    tmux_keys("q q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    unlink(rev);
    mech_test_rm_db(ddb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_lens_stored),
        cmocka_unit_test(test_tui_term_lens_live),
        cmocka_unit_test(test_tui_term_lens_model_gone),
        cmocka_unit_test(test_tui_term_lens_decoder),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
