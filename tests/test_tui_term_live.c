/*
** tests/test_tui_term_live.c: the Live view of the real `mech tui` binary
** in tmux: a prompt typed and run shows the tokens `mech tokenize` gives and
** the top-k `mech run` prints; a 1024-token prompt shows its progress at
** once and answers ? while the forward runs; S writes a run that `mech db
** ls` and SQL see, and without a database says that one is needed. Skipped,
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
#include <unistd.h>

static char model[600];

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(model, sizeof model, "%s", mech_test_tmpn("live_tiny.safetensors"));
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init -o %s", model)) fail_msg("mech init: %s", out);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    unlink(model);
    return 0;
}

// The screen line holding needle (into line), or 0.
static int screen_line(const char *needle, char *line, size_t cap) {
    const char *p = strstr(tmux_screen, needle);
    if (!p) return 0;
    const char *a = p, *b = p;
    while (a > tmux_screen && a[-1] != '\n') a--;
    while (*b && *b != '\n') b++;
    snprintf(line, cap, "%.*s", (int)(b - a), a);
    return 1;
}

// Type a prompt, Enter: the tokens are those of `mech tokenize
// --prepend-bos`, the top-k after the last token those of `mech run`.
static void test_tui_term_live_type_run_topk(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    // typed through the terminal: UTF-8 (the é) arrives byte by byte
    const char *prompt = "When Mary and John went to the caf\xc3\xa9";
    char *out = NULL, *run_out = NULL;
    if (mech_test_cli(&out, NULL, "tokenize --prepend-bos --text '%s'", prompt)) fail_msg("mech tokenize: %s", out);
    if (mech_test_cli(&run_out, NULL, "run --model %s --prompt '%s' --top-k 10", model, prompt))
        fail_msg("mech run: %s", run_out);
    char args[1000];
    snprintf(args, sizeof args, "--model %s --prompt 'When Mary'", model);
    tmux_start(120, 30, args);
    tmux_wait_for("L0H0  3 tokens"); // the first run opens the attention view
    tmux_keys("e");
    tmux_wait_for("mech tui  [live]");
    tmux_wait_for("prompt: When Mary");
    tmux_keys("e End");
    tmux_wait_for("prompt> When Mary");
    tmux_keys("-l ' and John went to the caf\xc3\xa9'");
    tmux_wait_for("prompt> When Mary and John went to the caf?\n"); // one cell per character
    tmux_keys("Enter");
    tmux_wait_for("9 tokens, forward");
    // every token, position and id as mech tokenize numbers them
    char *p = out;
    for (int pos = 0; *p && *p != '\n'; pos++) {
        int id = (int)strtol(p, &p, 10);
        char want[64];
        snprintf(want, sizeof want, "%5d %6d  ", pos, id);
        tmux_wait_for(want);
        while (*p == ' ') p++;
    }
    tmux_wait_for("top 10 after pos 8 \" caf??\""); // the token's two bytes of é
    // mech run's lines: "   1.  18842  \" mes\"  logit    0.6188  p 3.64e-05"
    int seen = 0;
    for (char *l = strstr(run_out, "\n"); l && *l; l = strchr(l + 1, '\n')) {
        int rank = 0, id = 0;
        double logit = 0;
        const char *lp = strstr(l, "logit");
        if (sscanf(l + 1, " %d. %d", &rank, &id) != 2 || !lp || lp > strchr(l + 1, '\n')) continue;
        logit = strtod(lp + 5, NULL);
        char head[64], want[64], line[400];
        snprintf(head, sizeof head, "%2d. %6d  ", rank, id);
        snprintf(want, sizeof want, "logit %9.4f", logit);
        if (!screen_line(head, line, sizeof line)) fail_msg("no \"%s\" on the screen:\n%s", head, tmux_screen);
        if (!strstr(line, want)) fail_msg("rank %d: \"%s\" is not on the line \"%s\"", rank, want, line);
        seen++;
    }
    assert_int_equal(seen, 10);
    // Esc leaves the editor without running; q goes back to the attention view
    tmux_keys("e BSpace BSpace BSpace BSpace Escape");
    tmux_wait_for("edited, not run yet");
    tmux_keys("q");
    tmux_wait_for("L0H0  9 tokens");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    free(out);
    free(run_out);
}

// A 1024-token prompt: the first frame comes at once with the progress; ?
// is answered while the forward runs; the attention views appear after.
static void test_tui_term_live_long_prompt_progress(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char big[600], *out = NULL;
    snprintf(big, sizeof big, "%s", mech_test_tmpn("live_big.safetensors"));
    // a model whose forward on 1024 tokens takes a few seconds on one thread
    // (fewer layers under the sanitizers, which make it 5 times slower)
    const char *san = getenv("MECH_SANITIZED");
    int layers = san && *san == '1' ? 4 : 12;
    if (mech_test_cli(&out, NULL,
                      "init -o %s --layers %d --heads 8 --d-model 512 --d-head 64 --d-mlp 2048 --vocab 512 --n-ctx 1024",
                      big, layers))
        fail_msg("mech init: %s", out);
    free(out);
    mech_buf args = {0};
    mech_buf_printf(&args, "--model %s --threads 1 --ids ", big);
    for (int i = 0; i < 1024; i++) mech_buf_printf(&args, i ? ",%d" : "%d", (i * 7) % 500 + 1);
    double t0 = tmux_now();
    tmux_start(100, 30, args.data);
    tmux_wait_for("running 1024 tokens: [");
    double first = tmux_now() - t0;
    tmux_keys("'?'");
    tmux_wait_for("keys: live view");
    // the help is up while the forward still runs
    if (!strstr(tmux_screen, "[running]")) fail_msg("the forward ended before ? was answered:\n%s", tmux_screen);
    tmux_keys("x");
    tmux_wait_for("1024 tokens, forward");
    double total = tmux_now() - t0;
    print_message("first frame after %.2f s, forward done after %.2f s\n", first, total);
    assert_true(first < total);
    tmux_keys("Tab");
    tmux_wait_for("L0H0  1024 tokens  max pooling");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_buf_free(&args);
    unlink(big);
}

// S writes the run to the database given on the command line: mech db ls
// lists it, SQL reads its top-k; earlier runs stay. Without a database, S
// says one is needed and writes nothing.
static void test_tui_term_live_save(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char db[600], *out = NULL;
    snprintf(db, sizeof db, "%s", mech_test_tmpn("live_save.db"));
    mech_test_rm_db(db);
    if (mech_test_cli(&out, NULL, "heads --model %s --prompt 'one two three' --db %s", model, db))
        fail_msg("mech heads: %s", out);
    free(out);
    char args[1400];
    snprintf(args, sizeof args, "%s --model %s --prompt 'When Mary and John'", db, model);
    tmux_start(120, 30, args);
    tmux_wait_for("L0H0  5 tokens");
    tmux_keys("e");
    tmux_wait_for("top 10 after pos 4 \" John\"");
    tmux_keys("k S"); // the top-k after " and"
    tmux_wait_for("saved as run 2 (kind live)");
    if (mech_test_cli(&out, NULL, "db --db %s ls", db)) fail_msg("mech db ls: %s", out);
    assert_non_null(strstr(out, "live"));
    assert_non_null(strstr(out, "heads"));
    free(out);
    char *rows = mech_test_sql_rows(db, "select id, kind, status from runs order by id");
    assert_string_equal(rows, "1|heads|done\n2|live|done\n");
    free(rows);
    rows = mech_test_sql_rows(db, "select text, tokens from prompts where run_id = 2");
    assert_string_equal(rows, "When Mary and John|[50256,2215,5335,290,1757]\n");
    free(rows);
    // the saved top-1 is the first line on the screen
    rows = mech_test_sql_rows(db, "select pos, token from results where run_id = 2 and metric = 'logit' and rank = 0");
    int pos = -1, tok = -1;
    assert_int_equal(sscanf(rows, "%d|%d", &pos, &tok), 2);
    free(rows);
    assert_int_equal(pos, 3);
    char want[64];
    snprintf(want, sizeof want, " 1. %6d  ", tok);
    tmux_wait_for(want);
    // the runs list has it
    tmux_keys("Tab");
    tmux_wait_for("2 of 2 runs");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    mech_test_rm_db(db);

    // no database: nothing is created
    char cwd_db[] = "mech.db";
    int had = access(cwd_db, F_OK) == 0;
    snprintf(args, sizeof args, "--model %s --prompt 'When Mary'", model);
    tmux_start(120, 30, args);
    tmux_wait_for("L0H0  3 tokens");
    tmux_keys("e S");
    tmux_wait_for("saving needs a database");
    tmux_keys("q q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    assert_int_equal(access(cwd_db, F_OK) == 0, had);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_live_type_run_topk),
        cmocka_unit_test(test_tui_term_live_long_prompt_progress),
        cmocka_unit_test(test_tui_term_live_save),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
