/*
** tests/test_tui_term_export.c: colour, export and `mech plot` end to end.
** In tmux (skipped, with a message, without it): the colour mode's escapes
** as capture-pane -e shows them (24-bit under COLORTERM=truecolor, 256
** colours on a 256-colour TERM, 8 on screen, none under NO_COLOR), and the
** export keys (x writes the screen's text exactly as capture-pane prints
** it, X a well-formed SVG, never replacing a file, errors in the footer).
** Without a terminal: `mech plot` on a database written by `mech heads` and
** `mech patch`: its values equal the database's, it draws what `mech tui`
** shows, its exit codes, no file on error, and the database unchanged.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tests/support/tmux.h"
#include "tests/support/xml_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MODEL "tests/fixtures/gpt2-tiny"
static char db[600], dir[600];

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(db, sizeof db, "%s", mech_test_tmpn("export.db"));
    snprintf(dir, sizeof dir, "%s", mech_test_tmpn("export-out"));
    mech_test_rm_db(db);
    mkdir(dir, 0755);
    const char *pairs = mech_test_tmpn("export-pairs.jsonl");
    FILE *f = fopen(pairs, "w");
    assert_non_null(f);
    fputs("{\"clean\": [5, 17, 42, 99, 7], \"corrupt\": [5, 18, 42, 99, 7], \"answer\": 3, \"wrong\": 4}\n"
          "{\"clean\": [1, 2, 3, 4, 5], \"corrupt\": [1, 2, 9, 4, 5], \"answer\": 6, \"wrong\": 7}\n",
          f);
    fclose(f);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "heads --model " MODEL " --ids 1,2,3,4,5,1,2,3,4,5 --db %s", db))
        fail_msg("mech heads: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "patch --model " MODEL " --pairs %s --db %s", pairs, db)) fail_msg("mech patch: %s", out);
    free(out);
    unlink(pairs);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    mech_test_rm_db(db);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return 0;
    return 0;
}

// --- SGR parsing --------------------------------------------------------------

enum { SGR_8 = 1, SGR_256 = 2, SGR_24 = 4 };

// Which kinds of colour the escapes in s set: 30-37/40-47/90-97/100-107
// (8 colours), 38;5/48;5 (256), 38;2/48;2 (24-bit). Resets (39, 49) are no colour.
static int sgr_colours(const char *s) {
    int kinds = 0;
    for (const char *p = strstr(s, "\033["); p; p = strstr(p + 1, "\033[")) {
        const char *q = p + 2;
        int v[32], n = 0;
        while (n < 32) {
            char *end;
            long x = strtol(q, &end, 10);
            v[n++] = (int)x;
            if (*end != ';' && *end != ':') {
                q = end;
                break;
            }
            q = end + 1;
        }
        if (*q != 'm') continue;
        for (int i = 0; i < n; i++) {
            if (v[i] == 38 || v[i] == 48) {
                if (i + 1 < n && v[i + 1] == 5) kinds |= SGR_256, i += 2;
                else if (i + 1 < n && v[i + 1] == 2) kinds |= SGR_24, i += 4;
            } else if ((v[i] >= 30 && v[i] <= 37) || (v[i] >= 40 && v[i] <= 47) || (v[i] >= 90 && v[i] <= 97) ||
                       (v[i] >= 100 && v[i] <= 107))
                kinds |= SGR_8;
        }
    }
    return kinds;
}

// The live attention view of the fixture model under env; the escapes of its screen.
static int colours_under(const char *env) {
    char e[300];
    // whatever the terminal running the tests says about colour is not this test's
    snprintf(e, sizeof e, "env -u COLORTERM -u NO_COLOR -u MECH_TUI_COLORS %s", env);
    tmux_start_env(e, 100, 30, "--model " MODEL " --ids 1,2,3,4,5,6");
    tmux_wait_for("L0H0  6 tokens");
    int kinds = sgr_colours(tmux_capture(1));
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    return kinds;
}

// --- tests: the terminal ---------------------------------------------------------

static void test_tui_term_colour_modes(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    // screen-256color has no RGB: true colour comes from COLORTERM (an entry made with tic)
    char tmpd[700], env[800];
    snprintf(tmpd, sizeof tmpd, "%s/tmpdir", dir);
    mkdir(tmpd, 0755);
    snprintf(env, sizeof env, "TMPDIR=%s TERM=screen-256color COLORTERM=truecolor", tmpd);
    int k = colours_under(env);
    assert_int_equal(rmdir(tmpd), 0); // the entry's temporary directory is gone (rmdir fails on a non-empty one)
    if (system("command -v tic >/dev/null 2>&1") == 0) {
        assert_true(k & SGR_24);
        assert_false(k & SGR_256);
    } else { // the true-colour entry is made with tic: without it, 256 colours
        print_message("tic is not installed: true colour falls back to 256 colours\n");
        assert_true(k & SGR_256);
    }
    k = colours_under("TERM=screen-256color");
    assert_true(k & SGR_256);
    assert_false(k & SGR_24);
    k = colours_under("TERM=screen");
    assert_true(k & SGR_8);
    assert_false(k & (SGR_256 | SGR_24));
    k = colours_under("TERM=screen-256color COLORTERM=truecolor NO_COLOR=1");
    assert_int_equal(k, 0);
    // the forcing variable beats the terminal's word
    k = colours_under("TERM=screen-256color COLORTERM=truecolor MECH_TUI_COLORS=256");
    assert_true(k & SGR_256);
    assert_false(k & SGR_24);
}

// The path in the footer's "wrote PATH" (the screen is in tmux_screen).
static void footer_path(const char *prefix, char *path, size_t cap) {
    const char *p = strstr(tmux_screen, prefix);
    assert_non_null(p);
    p += strlen(prefix);
    size_t n = strcspn(p, " \n");
    snprintf(path, cap, "%.*s", (int)n, p);
}

static char *slurp(const char *path) {
    size_t n = 0;
    char *s = mech_test_read(path, &n);
    char *z = realloc(s, n + 1);
    z[n] = 0;
    return z;
}

static void test_tui_term_export_keys(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char env[800], path[700], want[700];
    snprintf(env, sizeof env, "env MECH_TUI_EXPORT_DIR=%s TERM=screen-256color", dir);
    snprintf(want, sizeof want, "%s/mech-attention-1.txt", dir);
    unlink(want);
    snprintf(want, sizeof want, "%s/mech-attention-2.txt", dir);
    unlink(want);
    snprintf(want, sizeof want, "%s/mech-attention-1.svg", dir);
    unlink(want);
    tmux_start_env(env, 100, 30, "--model " MODEL " --ids 1,2,3,4,5,6");
    tmux_wait_for("L0H0  6 tokens");
    tmux_keys("j l"); // a cursor away from the corner
    tmux_wait_for("q 1 ");
    char *screen = strdup(tmux_capture(0));
    tmux_keys("x");
    tmux_wait_for("wrote ");
    footer_path("wrote ", path, sizeof path);
    snprintf(want, sizeof want, "%s/mech-attention-1.txt", dir);
    assert_string_equal(path, want);
    char *txt = slurp(path);
    assert_string_equal(txt, screen); // what capture-pane prints, byte for byte
    free(txt);
    tmux_keys("X");
    tmux_wait_for("mech-attention-1.svg");
    footer_path("wrote ", path, sizeof path);
    char *svg = slurp(path);
    xml_check(svg);
    xmllint_check(svg);
    int cw, ch;
    mech_tui_svg_cell_size(&cw, &ch);
    char size[100];
    snprintf(size, sizeof size, "width=\"%d\" height=\"%d\"", 100 * cw, 30 * ch);
    assert_non_null(strstr(svg, size));
    assert_non_null(strstr(svg, ">L0H0</text>"));
    free(svg);
    // again: a new name, the first file kept
    tmux_keys("x");
    tmux_wait_for("mech-attention-2.txt");
    txt = slurp(want);
    assert_string_equal(txt, screen);
    free(txt);
    tmux_keys("j"); // any key clears the message
    tmux_wait_gone("wrote ");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    free(screen);

    // a directory that is not there: the footer says why; the program goes on
    tmux_start_env("env MECH_TUI_EXPORT_DIR=/nonexistent/mech-dir", 100, 30, "--model " MODEL " --ids 1,2,3");
    tmux_wait_for("L0H0  3 tokens");
    tmux_keys("X");
    tmux_wait_for("export failed: /nonexistent/mech-dir/mech-attention-1.svg: No such file");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// mech plot draws the run as mech tui shows it: the same rows, title included.
static void test_tui_term_plot_matches_tui(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    tmux_start(80, 24, db);
    tmux_wait_for("2 of 2 runs");
    tmux_keys("j Enter");
    tmux_wait_for("run 2  patch");
    char *screen = strdup(tmux_capture(0));
    tmux_keys("q q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    const char *out = mech_test_tmpn("plot-match.txt");
    char *o = NULL;
    assert_int_equal(mech_test_cli(&o, NULL, "plot 2 --db %s -o %s --width 80 --height 23", db, out), 0);
    free(o);
    char *txt = slurp(out);
    // the screen's first 23 rows (its 24th is the footer of key hints)
    char *p = screen;
    for (int i = 0; i < 23 && p; i++) p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL;
    assert_non_null(p);
    *p = 0;
    assert_string_equal(txt, screen);
    free(txt);
    free(screen);
    unlink(out);
}

// --- tests: mech plot ----------------------------------------------------------

static void test_plot_values_from_the_database(void **state) {
    (void)state;
    const char *out = mech_test_tmpn("plot-heads.txt");
    char *o = NULL;
    assert_int_equal(mech_test_cli(&o, NULL, "plot 1 --db %s -o %s --width 100 --height 30", db, out), 0);
    assert_non_null(strstr(o, "run 1 (heads, run view) ->"));
    free(o);
    char *txt = slurp(out);
    // every previous-token score the table shows is the stored one
    char *rows = mech_test_sql_rows(db, "select layer, head, value from results where run_id = 1 and "
                                        "metric = 'previous_token' order by layer, head");
    int n = 0;
    for (char *line = strtok(rows, "\n"); line; line = strtok(NULL, "\n"), n++) {
        int l, h;
        double v;
        assert_int_equal(sscanf(line, "%d|%d|%lf", &l, &h, &v), 3);
        char head[32], val[32];
        snprintf(head, sizeof head, "L%dH%d ", l, h);
        snprintf(val, sizeof val, "%.4f", v);
        int found = 0;
        for (const char *p = strstr(txt, head); p && !found; p = strstr(p + 1, head)) {
            const char *eol = strchr(p, '\n');
            const char *m = strstr(p, "previous_token"), *x = strstr(p, val);
            found = m && x && eol && m < eol && x < eol;
        }
        if (!found) fail_msg("no line \"%s previous_token %s\" in:\n%s", head, val, txt);
    }
    assert_int_equal(n, 8); // 2 layers x 4 heads
    assert_int_equal(strncmp(txt, "mech tui  [run]", 15), 0);
    free(rows);
    free(txt);

    // the patch run as SVG: well-formed, of the size asked for, the cells
    // of the largest |mean effect| at the top of a palette ramp
    const char *svg_path = mech_test_tmpn("plot-patch.svg");
    assert_int_equal(mech_test_cli(&o, NULL, "plot 2 --db %s -o %s --width 90 --height 20", db, svg_path), 0);
    free(o);
    char *svg = slurp(svg_path);
    xml_check(svg);
    xmllint_check(svg);
    int cw, ch;
    mech_tui_svg_cell_size(&cw, &ch);
    char want[120];
    snprintf(want, sizeof want, "viewBox=\"0 0 %d %d\"", 90 * cw, 20 * ch);
    assert_non_null(strstr(svg, want));
    int top = 0;
    for (int sign = 0; sign < 3; sign++) {
        mech_tui_rgb c = mech_tui_palette_heat(MECH_TUI_LEVELS - 1, sign);
        snprintf(want, sizeof want, "fill=\"#%02x%02x%02x\"", c.r, c.g, c.b);
        top += strstr(svg, want) != NULL;
    }
    assert_true(top >= 1);
    free(svg);
    // - is the SVG on standard output
    assert_int_equal(mech_test_cli(&o, NULL, "plot 2 --db %s -o - --width 90 --height 20", db), 0);
    assert_int_equal(strncmp(o, "<?xml", 5), 0);
    xml_check(o);
    free(o);
    unlink(out);
    unlink(svg_path);
}

static void test_plot_errors_and_read_only(void **state) {
    (void)state;
    struct stat st0, st1;
    assert_int_equal(stat(db, &st0), 0);
    char *before = slurp(db);
    size_t n_before = (size_t)st0.st_size;
    char wal0[700];
    snprintf(wal0, sizeof wal0, "%s-wal", db);
    struct stat sw0;
    long long wal_before = stat(wal0, &sw0) == 0 ? (long long)sw0.st_size : -1;
    const char *out = mech_test_tmpn("plot-err.svg");
    const char *png = mech_test_tmpn("plot-err.png");
    const char *missing = mech_test_tmpn("plot-missing.db");
    mech_test_rm_db(missing);
    unlink(out);
    struct {
        int rc;
        const char *args, *msg;
    } cases[] = {
        {2, "plot", "which run?"},
        {2, "plot abc --db DB -o OUT", "RUN 'abc'"},
        {2, "plot 1 --db DB", "-o FILE is required"},
        {2, "plot 1 --db DB -o PNG", "must end in .svg or .txt"},
        {2, "plot 99 --db DB -o OUT", "99"},
        {2, "plot 1 --db DB -o OUT --view nosuch", "no view 'nosuch'"},
        {2, "plot 1 --db DB -o OUT --width 5", "--width '5'"},
        {2, "plot 1 --db DB -o OUT --height", "needs a value"},
        {2, "plot 1 2 --db DB -o OUT", "one run at a time"},
        {2, "plot 1 --db DB -o OUT --colour", "unknown option"},
        {1, "plot 1 --db MISSING -o OUT", "plot-missing.db"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[2000] = "";
        // DB, OUT, PNG, MISSING -> paths
        for (const char *p = cases[i].args; *p;) {
            const char *rep = NULL;
            size_t skip = 0;
            if (!strncmp(p, "MISSING", 7)) rep = missing, skip = 7;
            else if (!strncmp(p, "DB", 2)) rep = db, skip = 2;
            else if (!strncmp(p, "OUT", 3)) rep = out, skip = 3;
            else if (!strncmp(p, "PNG", 3)) rep = png, skip = 3;
            if (rep) strcat(args, rep), p += skip;
            else strncat(args, p++, 1);
        }
        char *o = NULL, *e = NULL;
        int rc = mech_test_cli(&o, &e, "%s", args);
        if (rc != cases[i].rc || !strstr(e, cases[i].msg))
            fail_msg("mech %s: exit %d (want %d), stderr:\n%s", args, rc, cases[i].rc, e);
        assert_int_not_equal(access(out, F_OK), 0); // nothing written
        assert_int_not_equal(access(png, F_OK), 0);
        free(o);
        free(e);
    }
    assert_int_not_equal(access(missing, F_OK), 0); // a missing database is not created
    // --view: the runs list instead of the run
    char *o = NULL;
    assert_int_equal(mech_test_cli(&o, NULL, "plot 1 --db %s -o %s --view runs", db, out), 0);
    free(o);
    char *svg = slurp(out);
    assert_non_null(strstr(svg, ">runs</text>"));
    xml_check(svg);
    free(svg);
    unlink(out);
    // every plot above only read the database
    assert_int_equal(stat(db, &st1), 0);
    assert_int_equal((long long)st1.st_size, (long long)n_before);
    assert_true(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec && st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);
    char *after = slurp(db);
    assert_memory_equal(before, after, n_before);
    // nothing waits in the write-ahead log either (the writers leave it empty)
    char wal[700];
    snprintf(wal, sizeof wal, "%s-wal", db);
    struct stat sw;
    assert_true(stat(wal, &sw) != 0 || (sw.st_size == wal_before));
    free(before);
    free(after);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plot_values_from_the_database),
        cmocka_unit_test(test_plot_errors_and_read_only),
        cmocka_unit_test(test_tui_term_colour_modes),
        cmocka_unit_test(test_tui_term_export_keys),
        cmocka_unit_test(test_tui_term_plot_matches_tui),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
