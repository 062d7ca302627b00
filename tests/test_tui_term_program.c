/*
** tests/test_tui_term_program.c: the program view in the real `mech tui`
** binary, in tmux (tests/support/tmux.h): a model from `mech compile`
** opened with --input, reached with P and Tab, its layers stepped with [ and
** ], another input typed with i; the values on the screen are compared with
** the RASP interpreter's. A GPT-2 model offers no program view. Skipped when
** tmux is not installed.
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

static char rev[600], tiny[600];

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(rev, sizeof rev, "%s", mech_test_tmpn("tui_term_prog_reverse.safetensors"));
    snprintf(tiny, sizeof tiny, "%s", mech_test_tmpn("tui_term_prog_tiny.safetensors"));
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev)) fail_msg("mech compile: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "init -o %s", tiny)) fail_msg("mech init: %s", out);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    unlink(rev);
    unlink(tiny);
    return 0;
}

// The interpreter's values of variable label on input, as `mech rasp
// --trace` writes them, separated by single spaces.
static void interp_row(const char *label, const char *input, char *out, size_t cap) {
    mech_err err = {0};
    mech_rasp_program *p = NULL;
    mech_rasp_value *in = NULL;
    mech_rasp_trace *tr = NULL;
    size_t n = 0;
    if (mech_rasp_load("examples/rasp/reverse.rasp", &p, &err) || mech_rasp_input_parse(p, input, &in, &n, &err) ||
        mech_rasp_eval_trace(p, in, n, &tr, &err))
        fail_msg("%s", err.msg);
    const mech_rasp_node *nd = mech_rasp_program_find(p, label);
    assert_non_null(nd);
    mech_buf b = {0};
    for (size_t t = 0; t < n; t++) {
        if (t) mech_buf_puts(&b, " ");
        mech_rasp_value_json(&b, &tr->vals[(size_t)nd->id * n + t]);
    }
    mech_buf_append(&b, "", 0);
    snprintf(out, cap, "%s", b.data);
    mech_buf_free(&b);
    mech_rasp_trace_free(tr);
    mech_free(in);
    mech_rasp_program_free(p);
}

// The values the screen shows in the table row of variable label (after the
// two marker columns), single-spaced; "" when there is no such row.
static void screen_row(const char *label, char *out, size_t cap) {
    out[0] = 0;
    const char *s = tmux_capture(0);
    for (const char *line = s; *line;) {
        const char *e = strchr(line, '\n');
        size_t len = e ? (size_t)(e - line) : strlen(line);
        size_t nl = strlen(label);
        if (len > 2 + nl && (line[0] == ' ' || line[0] == '>') && (line[1] == ' ' || line[1] == '*') &&
            !strncmp(line + 2, label, nl) && line[2 + nl] == ' ') {
            size_t o = 0;
            int space = 0;
            for (size_t i = 2 + nl; i < len && o + 1 < cap; i++) {
                if (line[i] == ' ') space = o > 0;
                else {
                    if (space && o + 2 < cap) out[o++] = ' ';
                    space = 0;
                    out[o++] = line[i];
                }
            }
            out[o] = 0;
            return;
        }
        line += len + (e ? 1 : 0);
    }
}

// Polls until the row of label shows want.
static void wait_row(const char *label, const char *want) {
    char got[256];
    double t0 = tmux_now();
    do {
        screen_row(label, got, sizeof got);
        if (!strcmp(got, want)) return;
        usleep(50000);
    } while (tmux_now() - t0 < tmux_timeout_s);
    fail_msg("row %s: want \"%s\", the screen shows \"%s\":\n%s", label, want, got, tmux_screen);
}

// --- tests ----------------------------------------------------------------------

static void test_tui_term_program_step_and_type(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[700], want[256];
    snprintf(args, sizeof args, "--model %s --input 'a b c'", rev);
    tmux_start(80, 24, args);
    tmux_wait_for("[attention]");
    tmux_keys("P");
    tmux_wait_for("[program]");
    tmux_wait_for("input: a b c   layer 3/3 (after block 2)");
    tmux_wait_for("L2 head 0  reverse");
    interp_row("reverse", "a b c", want, sizeof want);
    wait_row("reverse", want);
    interp_row("tokens", "a b c", want, sizeof want);
    wait_row("tokens", want);
    // back to the embedding: only tokens and indices hold values
    tmux_keys("'[' '[' '['");
    tmux_wait_for("layer 0/3 (the embedding)");
    wait_row("opp", "- - -");
    wait_row("reverse", "- - -");
    interp_row("indices", "a b c", want, sizeof want);
    wait_row("indices", want);
    // two blocks on: opp (block 1's MLP) is computed, reverse (block 2's head) not yet
    tmux_keys("']' ']'");
    tmux_wait_for("layer 2/3 (after block 1)");
    interp_row("opp", "a b c", want, sizeof want);
    wait_row("opp", want);
    wait_row("reverse", "- - -");
    // another input, typed at the bottom
    tmux_keys("i");
    tmux_wait_for("input> _");
    tmux_keys("-l 'd c b a'");
    tmux_wait_for("input> d c b a_");
    tmux_keys("Enter");
    tmux_wait_for("input: d c b a   layer 3/3");
    interp_row("reverse", "d c b a", want, sizeof want);
    wait_row("reverse", want);
    interp_row("opp", "d c b a", want, sizeof want);
    wait_row("opp", want);
    // a token outside the vocab: the error, and the editor stays open (q is text there)
    tmux_keys("i");
    tmux_keys("-l 'a q'");
    tmux_keys("Enter");
    tmux_wait_for("error:");
    tmux_wait_for("'q'");
    tmux_keys("Escape");
    tmux_wait_gone("input>");
    tmux_wait_for("input: d c b a");
    // Tab reaches the program view from the attention view too
    tmux_keys("q");
    tmux_wait_for("[attention]");
    tmux_keys("Tab");
    tmux_wait_for("[all heads]");
    tmux_keys("Tab");
    tmux_wait_for("[tokens]");
    tmux_keys("Tab");
    tmux_wait_for("[lens]"); // the decoder lens
    tmux_keys("Tab");
    tmux_wait_for("[program]");
    tmux_keys("q");
    tmux_wait_for("[attention]");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// A GPT-2 model: P does nothing and Tab skips the program view.
static void test_tui_term_program_not_for_gpt2(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[700];
    snprintf(args, sizeof args, "--model %s --prompt 'When Mary and John went'", tiny);
    tmux_start(80, 24, args);
    tmux_wait_for("[attention]");
    tmux_keys("P");
    tmux_keys("g"); // in the head view: the grid; it would do nothing in a program view
    tmux_wait_for("[all heads]");
    tmux_keys("Tab");
    tmux_wait_for("[tokens]");
    tmux_keys("Tab");
    tmux_wait_for("[lens]");
    tmux_keys("Tab"); // no program view: the live prompt's attribution
    tmux_wait_for("[attribution]");
    tmux_keys("Tab");
    tmux_wait_for("[live]");
    tmux_keys("Tab"); // no run, no program, no runs list: back to the head view
    tmux_wait_for("[attention]");
    assert_null(strstr(tmux_screen, "[program]"));
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_program_step_and_type),
        cmocka_unit_test(test_tui_term_program_not_for_gpt2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
