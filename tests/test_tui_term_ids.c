/*
** tests/test_tui_term_ids.c: the real `mech tui` binary in tmux on a model
** without a text tokenizer (vocab 256, no tokenizer files: `mech init
** --vocab 256`) and --ids: the head view, the token view, the lens and the
** live view label the tokens by id (120), not by GPT-2's glyphs. Skipped,
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
    snprintf(model, sizeof model, "%s", mech_test_tmpn("ids_v256.safetensors"));
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init --vocab 256 --attn-only -o %s", model)) fail_msg("mech init: %s", out);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    unlink(model);
    return 0;
}

static void test_tui_term_ids_labels(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    char args[800];
    snprintf(args, sizeof args, "--model %s --ids 120,201,143,177,105,120,201,143", model);
    tmux_start(100, 24, args);
    // the head view: row labels and the cursor line by id
    tmux_wait_for("q 0 \"120\" -> k 0 \"120\"");
    tmux_wait_for("\n             201 ");
    tmux_keys("j");
    tmux_wait_for("q 1 \"201\" -> k 0 \"120\"");
    // the token view: the prompt as ids with a blank between them
    tmux_keys("t");
    tmux_wait_for("\n120 201 143 177 105 120 201 143");
    tmux_wait_for("token 1 \"201\"");
    tmux_keys("t");
    tmux_wait_for("q 1 \"201\" -> k 0 \"120\"");
    // the lens: the cursor's token, its target and the column headers
    tmux_keys("L");
    tmux_wait_for("layer 0 emb  pos 0 \"120\"");
    tmux_wait_for("target \"201\"");
    tmux_wait_for("layer 120     201     143     177     105     120     201     143");
    if (strstr(tmux_screen, "<120>")) fail_msg("not plain ids:\n%s", tmux_screen);
    // back to the head view, then the live view: each token's id (no text column), the top-k after it
    tmux_keys("q");
    tmux_wait_for("q 1 \"201\" -> k 0 \"120\"");
    tmux_keys("e");
    tmux_wait_for("top 10 after pos 7 143");
    tmux_wait_for(">     7    143          "); // no text column after the id
    tmux_keys("g");
    tmux_wait_for("top 10 after pos 0 120");
    tmux_keys("q q");
    tmux_assert_restored("rc=0");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_ids_labels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
