/*
** tests/test_tui_term.c: the real `mech tui` binary in a real terminal.
** Each test starts it in a detached tmux session of a fixed size, sends keys
** (send-keys) and polls what the tmux_screen shows (capture-pane -p) until the
** expected text appears or a timeout passes; then checks the exit status
** and that the terminal was given back (stty settings as before, the
** alternate tmux_screen left), after q and after SIGTERM. The database and the
** model are made with mech's own commands. Skipped, with a message, when
** tmux is not installed. Also the argument errors, which need no terminal.
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
#include <time.h>
#include <unistd.h>

static char model[600], db[600];

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(model, sizeof model, "%s", mech_test_tmpn("tui_tiny.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("tui.db"));
    mech_test_rm_db(db);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init -o %s", model)) fail_msg("mech init: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "heads --model %s --prompt 'When Mary and John went to the store' --db %s", model, db))
        fail_msg("mech heads: %s", out);
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

// --- tests ------------------------------------------------------------------

static void test_tui_term_runs_help_quit(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[700];
    snprintf(args, sizeof args, "%s", db);
    tmux_start(80, 24, args);
    tmux_wait_for("1 of 1 runs  kind: all  sort: id");
    tmux_wait_for("heads      done");
    tmux_wait_for("induction L"); // the heads run's key figure
    tmux_keys("'?'");
    tmux_wait_for("keys: runs view");
    tmux_wait_for("filter by kind");
    tmux_keys("x"); // any key closes the help
    double t0 = tmux_now();
    do tmux_sh(tmux_screen, sizeof tmux_screen, "tmux -L %s capture-pane -p -t t", tmux_sock);
    while (strstr(tmux_screen, "keys: runs view") && tmux_now() - t0 < tmux_timeout_s);
    assert_null(strstr(tmux_screen, "keys: runs view"));
    tmux_keys("/ zzz");
    tmux_wait_for("0 of 1 runs");
    tmux_wait_for("no run matches");
    tmux_keys("Escape");
    tmux_keys("Escape");
    tmux_wait_for("1 of 1 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// A database that does not exist: the tmux_screen says what to run; nothing is created.
static void test_tui_term_missing_db(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *missing = mech_test_tmpn("no-such.db");
    mech_test_rm_db(missing);
    char args[700];
    snprintf(args, sizeof args, "%s", missing);
    tmux_start(100, 30, args);
    tmux_wait_for("no database at");
    tmux_wait_for("mech heads --model MODEL --prompt TEXT --db");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    assert_int_not_equal(access(missing, F_OK), 0);
    tmux_stop();
}

// The live view: the cursor's weight equals the pattern the library computes.
static void test_tui_term_attention(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *prompt = "When Mary and John went to the store";
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (mech_model_load(model, &m, &err) || mech_tokenizer_gpt2(&tok, &err) ||
        mech_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n, &err))
        fail_msg("%s", err.msg);
    // the CLI puts BOS (<|endoftext|>, 50256) in front of text
    int T = (int)n + 1;
    int32_t *seq = malloc((size_t)T * sizeof *seq);
    seq[0] = 50256;
    memcpy(seq + 1, ids, n * sizeof *ids);
    mech_run *run = NULL;
    if (mech_run_new(m, 1, T, &run, &err) || mech_run_cache(run, "blocks.1.attn.hook_pattern", &err) ||
        mech_run_forward(run, seq, &err))
        fail_msg("%s", err.msg);
    const mech_tensor *pat = mech_run_get(run, "blocks.1.attn.hook_pattern"); // (1, NH, T, T)
    assert_non_null(pat);
    // q 3 (" and"), k 2 (" Mary"), layer 1 head 2
    float w = pat->data[((size_t)2 * T + 3) * T + 2];
    size_t len = 0;
    const char *qt = mech_tokenizer_token(tok, seq[3], &len);
    char want[200];
    snprintf(want, sizeof want, "q 3 \"%.*s\" -> k 2 \" Mary\"  weight %.4f", (int)len, qt, w);

    char args[1000];
    snprintf(args, sizeof args, "--model %s --prompt '%s'", model, prompt);
    tmux_start(120, 40, args);
    tmux_wait_for("L0H0  9 tokens  one cell per token");
    tmux_wait_for("          Mary ");    // a query label
    tmux_wait_for("q 0 \"<|endoftext|>\" -> k 0 \"<|endoftext|>\"  weight 1.0000");
    tmux_keys("j j j l l ']' ']' '}'");
    tmux_wait_for("L1H2  9 tokens");
    tmux_wait_for(want);
    tmux_keys("g");
    tmux_wait_for("all heads: 2 layers x 4 heads");
    tmux_wait_for(">L1H2");
    tmux_wait_for(" L0H0");
    tmux_keys("k Enter");
    tmux_wait_for("L0H2  9 tokens");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_run_free(run);
    free(seq);
    mech_free(ids);
    mech_tokenizer_free(tok);
    mech_model_free(m);
}

// The token view: t from the heatmap shows the prompt as text, and the
// strongest weights of the cursor's query token, in both directions, equal
// to a forward of the same model; a shows every head of the layer.
static void test_tui_term_tokens(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *prompt = "When Mary and John went to the store";
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if (mech_model_load(model, &m, &err) || mech_tokenizer_gpt2(&tok, &err) ||
        mech_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n, &err))
        fail_msg("%s", err.msg);
    int T = (int)n + 1; // BOS in front, as the CLI does
    int32_t *seq = malloc((size_t)T * sizeof *seq);
    seq[0] = 50256;
    memcpy(seq + 1, ids, n * sizeof *ids);
    mech_run *run = NULL;
    if (mech_run_new(m, 1, T, &run, &err) || mech_run_cache(run, "blocks.1.attn.hook_pattern", &err) ||
        mech_run_forward(run, seq, &err))
        fail_msg("%s", err.msg);
    const mech_tensor *pat = mech_run_get(run, "blocks.1.attn.hook_pattern"); // (1, NH, T, T)
    assert_non_null(pat);
    // layer 1 head 2, token 3 (" and"): the largest weight of its row (where
    // it looks) and of its column (what looks at it)
    const float *p = pat->data + (size_t)2 * T * T;
    int brow = 0, bcol = 3;
    for (int k = 0; k < T; k++)
        if (p[3 * T + k] > p[3 * T + brow]) brow = k;
    for (int q = 0; q < T; q++)
        if (p[(size_t)q * T + 3] > p[(size_t)bcol * T + 3]) bcol = q;
    char want_row[200], want_col[200], lab[64];
    size_t len = 0;
    const char *t = mech_tokenizer_token(tok, seq[brow], &len);
    snprintf(lab, sizeof lab, "%.*s", (int)len, t);
    snprintf(want_row, sizeof want_row, "strongest:  %d \"%s\" %.4f", brow, lab, p[3 * T + brow]);
    t = mech_tokenizer_token(tok, seq[bcol], &len);
    snprintf(lab, sizeof lab, "%.*s", (int)len, t);
    snprintf(want_col, sizeof want_col, "strongest:  %d \"%s\" %.4f", bcol, lab, p[(size_t)bcol * T + 3]);

    char args[1000];
    snprintf(args, sizeof args, "--model %s --prompt '%s'", model, prompt);
    tmux_start(120, 40, args);
    tmux_wait_for("L0H0  9 tokens  one cell per token");
    tmux_keys("j j j ']' ']' '}' t");
    tmux_wait_for("tokens  L1H2  token 3 \" and\": where it looks");
    tmux_wait_for("<|endoftext|>When Mary and John went to the store");
    tmux_wait_for(want_row);
    tmux_wait_for("d direction");
    tmux_keys("d");
    tmux_wait_for("tokens  L1H2  token 3 \" and\": what looks at it");
    tmux_wait_for(want_col);
    tmux_keys("a");
    tmux_wait_for("L1 all heads, H2");
    tmux_wait_for("H0   <|endoftext|>When Mary");
    tmux_wait_for("H3   <|endoftext|>When Mary");
    tmux_keys("?");
    tmux_wait_for("keys: tokens view");
    tmux_keys("x q");
    tmux_wait_for("L1H2  9 tokens");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_run_free(run);
    free(seq);
    mech_free(ids);
    mech_tokenizer_free(tok);
    mech_model_free(m);
}

// SIGTERM while it runs: the process dies of it, the terminal is back.
static void test_tui_term_sigterm_restores(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[700];
    snprintf(args, sizeof args, "%s", db);
    tmux_start(80, 24, args);
    tmux_wait_for("1 of 1 runs");
    char pid[32];
    tmux_sh(pid, sizeof pid, "cat %s", mech_test_tmpn("tui.pid"));
    assert_true(atoi(pid) > 1);
    assert_int_equal(tmux_sh(NULL, 0, "kill -TERM %d", atoi(pid)), 0);
    tmux_assert_restored("rc=143");
    tmux_stop();
}

// Ctrl-C (SIGINT through the terminal's own line discipline): the same.
static void test_tui_term_ctrl_c_restores(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[700];
    snprintf(args, sizeof args, "%s", db);
    tmux_start(80, 24, args);
    tmux_wait_for("1 of 1 runs");
    tmux_keys("C-c");
    tmux_assert_restored("rc=130");
    tmux_stop();
}

// Another process writes the database while it is open: its run appears,
// the selection stays where it was.
static void test_tui_term_refresh_while_open(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    const char *live = mech_test_tmpn("live.db");
    mech_test_rm_db(live);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "heads --model %s --prompt 'one two three' --db %s", model, live))
        fail_msg("mech heads: %s", out);
    free(out);
    char args[700];
    snprintf(args, sizeof args, "%s", live);
    tmux_start(100, 24, args);
    tmux_wait_for("1 of 1 runs");
    if (mech_test_cli(&out, NULL, "heads --model %s --prompt 'four five six seven' --db %s", model, live))
        fail_msg("mech heads: %s", out);
    free(out);
    tmux_wait_for("2 of 2 runs");
    tmux_wait_for("     2  heads      done");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_test_rm_db(live);
}

// A resized window is laid out again: the heatmap's pooling follows the size.
static void test_tui_term_resize(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[1000];
    snprintf(args, sizeof args, "--model %s --prompt 'When Mary and John went to the store'", model);
    tmux_start(120, 40, args);
    tmux_wait_for("L0H0  9 tokens  one cell per token");
    // 8 rows: 8 - 2 (title, footer) - 2 (title line, cursor line) - 3 (key axis) = 1 text row,
    // which holds two heatmap rows (upper-half blocks)
    tmux_sh(NULL, 0, "tmux -L %s resize-window -t t -x 60 -y 8", tmux_sock);
    tmux_wait_for("L0H0  9 tokens  max pooling: 5 x 1 tokens per cell");
    tmux_sh(NULL, 0, "tmux -L %s resize-window -t t -x 120 -y 40", tmux_sock);
    tmux_wait_for("L0H0  9 tokens  one cell per token");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// Counts the SGR sequences (ESC [ ... m) that set a foreground or a
// background colour: 30-37, 90-97, 38;... and 40-47, 100-107, 48;...
// (39 and 49, the default colours, are not colours).
static void sgr_colours(const char *s, int *fg, int *bg) {
    for (const char *p = s; (p = strstr(p, "\x1b[")); ) {
        p += 2;
        while (*p >= '0' && *p <= '9') {
            int v = (int)strtol(p, (char **)&p, 10);
            if ((v >= 30 && v <= 37) || (v >= 90 && v <= 97) || v == 38) (*fg)++;
            if ((v >= 40 && v <= 47) || (v >= 100 && v <= 107) || v == 48) (*bg)++;
            if (v == 38 || v == 48) { // 38;5;N or 38;2;R;G;B: skip the arguments
                int skip = 0;
                if (*p == ';') skip = strtol(p + 1, NULL, 10) == 2 ? 4 : 2;
                for (; skip && *p == ';'; skip--) strtol(p + 1, (char **)&p, 10);
            }
            if (*p == ';') p++;
        }
    }
}

// Colour: the heatmap's cells carry background colours; under NO_COLOR
// no colour is sent at all, and the glyph ramp still draws the pattern.
static void test_tui_term_colour_and_no_color(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[1000];
    snprintf(args, sizeof args, "--model %s --prompt 'When Mary and John went to the store'", model);
    for (int no_color = 0; no_color < 2; no_color++) {
        tmux_start_env(no_color ? "NO_COLOR=1 TERM=xterm-256color" : "TERM=xterm-256color", 120, 40, args);
        tmux_wait_for("L0H0  9 tokens");
        static char esc[65536];
        tmux_sh(esc, sizeof esc, "tmux -L %s capture-pane -e -p -t t", tmux_sock);
        int fg = 0, bg = 0;
        sgr_colours(esc, &fg, &bg);
        if (no_color) {
            if (fg || bg) fail_msg("colour escapes under NO_COLOR:\n%s", esc);
        } else if (!bg) fail_msg("no background colours in the heatmap:\n%s", esc);
        tmux_wait_for("            When ++"); // the glyph ramp either way
        tmux_keys("q");
        tmux_assert_restored("rc=0");
        tmux_stop();
    }
}

// Argument errors need no terminal: usage errors exit 2, a model that
// cannot load exits 1, no terminal at all exits 1.
static void test_tui_cli_errors(void **state) {
    (void)state;
    char *out = NULL, *err = NULL;
    assert_int_equal(mech_test_cli(&out, &err, "tui --model %s", model), 2);
    assert_non_null(strstr(err, "--model needs the input"));
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "tui --prompt hi"), 2);
    assert_non_null(strstr(err, "need --model"));
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "tui a.db b.db"), 2);
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "tui --bogus"), 2);
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "tui --model /nonexistent/m.safetensors --prompt hi"), 1);
    assert_non_null(strstr(err, "mech tui: error:"));
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "tui %s </dev/null", db), 1);
    assert_non_null(strstr(err, "needs a terminal"));
    free(out), free(err);
    // a file that is not a mech database: an error before the terminal, nothing written
    const char *junk = mech_test_tmpn("junk.db");
    FILE *f = fopen(junk, "w");
    fputs("this is not a database, just some text long enough to fill a header.......\n", f);
    fclose(f);
    assert_int_equal(mech_test_cli(&out, &err, "tui %s", junk), 1);
    assert_non_null(strstr(err, "mech tui: error:"));
    assert_non_null(strstr(err, junk));
    free(out), free(err);
    size_t len = 0;
    char *back = mech_test_read(junk, &len);
    assert_non_null(strstr(back, "this is not a database"));
    free(back);
    mech_test_rm_db(junk);
    assert_int_equal(mech_test_cli(&out, &err, "tui --help"), 0);
    assert_non_null(strstr(out, "usage: mech tui [DB]"));
    assert_non_null(strstr(out, "--corrupt"));
    free(out), free(err);
    // difference mode: the two prompts must tokenize to the same length (both named)
    assert_int_equal(mech_test_cli(&out, &err, "tui --model %s --prompt 'When Mary and John' --corrupt 'When Mary'", model),
                     2);
    assert_non_null(strstr(err, "clean 5, corrupted 3"));
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "tui --model %s --ids 1,2,3 --corrupt-ids 4,5", model), 2);
    assert_non_null(strstr(err, "clean 3, corrupted 2"));
    free(out), free(err);
    assert_int_equal(mech_test_cli(&out, &err, "tui --corrupt 'a b'"), 2);
    assert_non_null(strstr(err, "need --model"));
    free(out), free(err);
}

// Difference mode: D shows clean minus corrupted; the cursor line's three
// numbers equal the patterns of a forward of each prompt.
static void test_tui_term_difference(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    mech_err err = {0};
    mech_model *m = NULL;
    if (mech_model_load(model, &m, &err)) fail_msg("%s", err.msg);
    // id lists get no BOS: the runs below see exactly these tokens
    int32_t clean[5] = {464, 5335, 290, 1757, 1816}, corrupt[5] = {464, 1757, 290, 5335, 1816};
    float w[2];
    for (int p = 0; p < 2; p++) {
        mech_run *run = NULL;
        if (mech_run_new(m, 1, 5, &run, &err) || mech_run_cache(run, "blocks.1.attn.hook_pattern", &err) ||
            mech_run_forward(run, p ? corrupt : clean, &err))
            fail_msg("%s", err.msg);
        const mech_tensor *pat = mech_run_get(run, "blocks.1.attn.hook_pattern"); // (1, NH, 5, 5)
        assert_non_null(pat);
        w[p] = pat->data[((size_t)2 * 5 + 3) * 5 + 1]; // head 2, q 3, k 1
        mech_run_free(run);
    }
    mech_model_free(m);
    assert_true(fabsf(w[0] - w[1]) > 1e-4f); // the prompts differ there
    char want[200], args[1000];
    snprintf(want, sizeof want, "clean %.4f  corrupted %.4f  diff %+.4f", w[0], w[1], w[0] - w[1]);
    snprintf(args, sizeof args, "--model %s --ids 464,5335,290,1757,1816 --corrupt-ids 464,1757,290,5335,1816", model);
    tmux_start(120, 40, args);
    tmux_wait_for("L0H0  5 tokens  one cell per token");
    tmux_keys("D");
    tmux_wait_for("L0H0  clean - corrupted");
    tmux_keys("j j j l ']' ']' '}'");
    tmux_wait_for("L1H2  clean - corrupted");
    tmux_wait_for(want);
    tmux_keys("D");
    tmux_wait_for("L1H2  5 tokens");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// Enter on a patch run opens its effect grid; the cursor's value is the
// stored effect; Esc goes back to the runs list.
static void test_tui_term_open_patch_run(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char pairs[600], pdb[600], *out = NULL;
    snprintf(pairs, sizeof pairs, "%s", mech_test_tmpn("tui_pairs.jsonl"));
    snprintf(pdb, sizeof pdb, "%s", mech_test_tmpn("tui_patch.db"));
    mech_test_rm_db(pdb);
    FILE *f = fopen(pairs, "wb");
    assert_non_null(f);
    fputs("{\"clean\": [5, 17, 42, 99, 7], \"corrupt\": [5, 18, 42, 99, 7], \"answer\": 3, \"wrong\": 4}\n", f);
    fclose(f);
    if (mech_test_cli(&out, NULL, "patch --model tests/fixtures/gpt2-tiny --pairs %s --db %s", pairs, pdb))
        fail_msg("mech patch: %s", out);
    free(out);
    // the value under the cursor (layer 1, position 3), read with the store API
    mech_err err = {0};
    mech_store *s = NULL;
    mech_result_row *r = NULL;
    size_t n = 0;
    if (mech_store_open_read(pdb, &s, &err) || mech_store_results_get(s, 1, "effect", &r, &n, &err))
        fail_msg("%s", err.msg);
    double want_v = NAN;
    for (size_t i = 0; i < n; i++)
        if (r[i].layer == 1 && r[i].pos == 3) want_v = r[i].value;
    mech_store_results_free(r, n);
    mech_store_close(s);
    assert_false(isnan(want_v));
    char want[96];
    snprintf(want, sizeof want, "'  effect %.4g   logit_diff", want_v); // the patching view's cursor line

    tmux_start(100, 30, pdb);
    tmux_wait_for("patch      done");
    tmux_keys("Enter");
    tmux_wait_for("run 1  patch resid_pre (layer x position)  pair 1 of 1");
    // patching the one differing position at layer 0 restores the clean run
    tmux_keys("l");
    tmux_wait_for("L0 pos 1 '");
    tmux_wait_for("'  effect 1   logit_diff");
    tmux_keys("j l l");
    tmux_wait_for("L1 pos 3 '");
    tmux_wait_for(want);
    tmux_wait_for("L1 ");
    tmux_keys("Escape");
    tmux_wait_for("1 of 1 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_test_rm_db(pdb);
    unlink(pairs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_cli_errors),
        cmocka_unit_test(test_tui_term_runs_help_quit),
        cmocka_unit_test(test_tui_term_missing_db),
        cmocka_unit_test(test_tui_term_attention),
        cmocka_unit_test(test_tui_term_tokens),
        cmocka_unit_test(test_tui_term_sigterm_restores),
        cmocka_unit_test(test_tui_term_ctrl_c_restores),
        cmocka_unit_test(test_tui_term_refresh_while_open),
        cmocka_unit_test(test_tui_term_resize),
        cmocka_unit_test(test_tui_term_colour_and_no_color),
        cmocka_unit_test(test_tui_term_open_patch_run),
        cmocka_unit_test(test_tui_term_difference),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
