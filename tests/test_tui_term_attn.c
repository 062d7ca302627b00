/*
** tests/test_tui_term_attn.c: the attention views of the real `mech tui`
** binary in tmux on a 300-token prompt: zoom to one cell per token and
** scroll on both axes (the token labels on the axes follow the window), `/`
** moving the cursor to a token, and the all-heads grid filtered by a score.
** Every expected value comes from the library (the tokenizer's token text,
** a forward of the same model, mech_heads_score), not from the screen.
** Skipped, with a message, when tmux is not installed.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tests/support/tmux.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define T 300

static char model[600];
static int32_t ids[T];
static char labels[T][64]; // each token's text, as the interface shows it
static char ids_arg[T * 8];
static mech_model *m;
static mech_run *run;

// 300 distinct GPT-2 tokens that are a space and 4 to 8 lowercase letters,
// so labels are plain text and a search for one can be made unique.
static void pick_tokens(void) {
    mech_err err = {0};
    mech_tokenizer *tok = NULL;
    if (mech_tokenizer_gpt2(&tok, &err)) fail_msg("%s", err.msg);
    int n = 0;
    for (int32_t id = 1000; id < 50000 && n < T; id += 7) {
        size_t len = 0;
        const char *s = mech_tokenizer_token(tok, id, &len);
        if (!s || len < 5 || len > 9 || s[0] != ' ') continue;
        int ok = 1;
        for (size_t i = 1; i < len; i++) ok &= s[i] >= 'a' && s[i] <= 'z';
        if (!ok) continue;
        ids[n] = id;
        snprintf(labels[n], sizeof labels[n], "%.*s", (int)len, s);
        n++;
    }
    assert_int_equal(n, T);
    mech_tokenizer_free(tok);
    size_t o = 0;
    for (int i = 0; i < T; i++) o += (size_t)snprintf(ids_arg + o, sizeof ids_arg - o, "%s%d", i ? "," : "", ids[i]);
}

static int setup(void **state) {
    (void)state;
    tmux_init();
    snprintf(model, sizeof model, "%s", mech_test_tmpn("tui_attn.safetensors"));
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "init -o %s --n-ctx 512", model)) fail_msg("mech init: %s", out);
    free(out);
    pick_tokens();
    mech_err err = {0};
    if (mech_model_load(model, &m, &err) || mech_run_new(m, 1, T, &run, &err) ||
        mech_run_cache(run, "blocks.*.attn.hook_pattern", &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    tmux_stop();
    mech_run_free(run);
    mech_model_free(m);
    unlink(model);
    return 0;
}

static float weight(int l, int h, int q, int k) {
    char hook[64];
    snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
    const mech_tensor *p = mech_run_get(run, hook); // (1, NH, T, T)
    assert_non_null(p);
    return p->data[((size_t)h * T + q) * T + k];
}

static void start(int w, int h) {
    // the ids on the command line: ~2 KB, well within a shell's limits
    char *args = malloc(sizeof ids_arg + 700);
    snprintf(args, sizeof ids_arg + 700, "--model %s --ids %s", model, ids_arg);
    tmux_start(w, h, args);
    free(args);
}

// Sends key k n times (one send-keys call).
static void keys_n(const char *k, int n) {
    char *s = malloc((size_t)n * (strlen(k) + 1) + 1), *p = s;
    for (int i = 0; i < n; i++) p += sprintf(p, "%s ", k);
    *p = 0;
    tmux_keys(s);
    free(s);
}

// Line y of the last capture (without its newline) into out.
static void screen_line(int y, char *out, size_t cap) {
    const char *p = tmux_screen;
    for (int i = 0; i < y && p; i++) p = strchr(p, '\n'), p = p ? p + 1 : NULL;
    assert_non_null(p);
    size_t n = strcspn(p, "\n");
    snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
}

// --- tests ------------------------------------------------------------------

// z: one cell per token; 150 down and 120 right scroll the window on both
// axes, and the query labels (left) and key labels (top, vertical) are the
// tokens of the rows and columns shown.
static void test_tui_term_attn_zoom_scroll(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    start(120, 40);
    tmux_wait_for("L0H0  300 tokens  max pooling");
    tmux_keys("z");
    // 40 rows - title, footer, view title, cursor line, 3 key-axis rows = 33; 120 - 17 = 103 columns
    tmux_wait_for("one cell per token: q 0-32 k 0-102 shown");
    keys_n("j", 150);
    keys_n("l", 120);
    char want[300];
    snprintf(want, sizeof want, "q 150 \"%s\" -> k 120 \"%s\"  weight %.4f", labels[150], labels[120],
             weight(0, 0, 150, 120));
    tmux_wait_for(want);
    tmux_wait_for("one cell per token: q 118-150 k 18-120 shown");
    // rows: screen line 5 is query 118, the cursor's row (line 37) query 150
    char line[256], lab[40];
    for (int r = 0; r < 33; r++) {
        screen_line(5 + r, line, sizeof line);
        snprintf(lab, sizeof lab, "%16.16s", labels[118 + r]);
        if (strncmp(line, lab, 16)) fail_msg("row %d: \"%.16s\", want \"%s\"", r, line, lab);
    }
    // columns: screen lines 2-4 carry the first three characters of keys
    // 18..120 from column 17 on, a space shown as '_'
    char axis[3][256];
    for (int r = 0; r < 3; r++) screen_line(2 + r, axis[r], sizeof axis[r]);
    for (int j = 0; j < 103; j++)
        for (int r = 0; r < 3; r++) {
            char c = labels[18 + j][r] == ' ' ? '_' : labels[18 + j][r];
            if (axis[r][17 + j] != c) fail_msg("key axis column %d row %d: '%c', want '%c'", j, r, axis[r][17 + j], c);
        }
    // back to the top-left: the window follows
    tmux_keys("Home");
    tmux_wait_for("one cell per token: q 0-32 k 0-102 shown");
    tmux_keys("z");
    tmux_wait_for("max pooling");
    tmux_keys("q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

static int count_ci(const char *needle) {
    int n = 0;
    for (int t = 0; t < T; t++) {
        char a[64], b[64];
        size_t i;
        for (i = 0; labels[t][i]; i++) a[i] = (char)tolower((unsigned char)labels[t][i]);
        a[i] = 0;
        for (i = 0; needle[i]; i++) b[i] = (char)tolower((unsigned char)needle[i]);
        b[i] = 0;
        n += strstr(a, b) != NULL;
    }
    return n;
}

// / in the heatmap: the text of token 200, Enter: the cursor's query is
// token 200; in the token view the selected token jumps the same way.
static void test_tui_term_attn_search(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    // a token whose text no other token contains
    int target = -1;
    for (int t = 200; t < T && target < 0; t++)
        if (count_ci(labels[t] + 1) == 1) target = t;
    assert_true(target >= 0);
    start(120, 40);
    tmux_wait_for("L0H0  300 tokens");
    char keys[100], want[200];
    tmux_keys("/");
    snprintf(keys, sizeof keys, "-l '%s'", labels[target] + 1);
    tmux_keys(keys);
    snprintf(want, sizeof want, "search tokens: %s_", labels[target] + 1);
    tmux_wait_for(want);
    tmux_keys("Enter");
    snprintf(want, sizeof want, "q %d \"%s\" -> k 0 \"%s\"  weight %.4f", target, labels[target], labels[0],
             weight(0, 0, target, 0));
    tmux_wait_for(want);
    snprintf(want, sizeof want, "/%s: 1 token (n next", labels[target] + 1);
    tmux_wait_for(want);
    // the token view: from token 0, the same search selects the same token
    tmux_keys("Home t");
    tmux_wait_for("tokens  L0H0  token 0");
    tmux_keys("n");
    snprintf(want, sizeof want, "tokens  L0H0  token %d \"%s\"", target, labels[target]);
    tmux_wait_for(want);
    tmux_keys("Escape q q");
    tmux_assert_restored("rc=0");
    tmux_stop();
}

// The grid sorted by previous-token score, f on L0H0: the heads shown are
// those whose score (mech_heads_score on the same forward) is at least
// L0H0's; F shows all of them again.
static void test_tui_term_attn_grid_filter(void **state) {
    (void)state;
    if (!tmux_have()) skip();
    int L = m->cfg.n_layers, NH = m->cfg.n_heads;
    double *sc = calloc((size_t)L * NH, sizeof *sc);
    mech_err err = {0};
    if (mech_heads_score(m, run, ids, MECH_HEAD_PREV_TOKEN, MECH_HEAD_MUL, 0, 0, sc, &err)) fail_msg("%s", err.msg);
    int want_n = 0;
    for (int i = 0; i < L * NH; i++) want_n += sc[i] >= sc[0];
    start(120, 40);
    tmux_wait_for("L0H0  300 tokens");
    tmux_keys("g s");
    tmux_wait_for("all heads sorted by previous-token");
    tmux_keys("f");
    char want[200];
    snprintf(want, sizeof want, "sorted by previous-token, %d of %d with score >= %.2f", want_n, L * NH, sc[0]);
    tmux_wait_for(want);
    // a head below the threshold is not on the screen; L0H0 is
    int below = -1;
    for (int i = 0; i < L * NH; i++)
        if (sc[i] < sc[0]) below = i;
    tmux_wait_for("L0H0");
    if (below >= 0) {
        snprintf(want, sizeof want, "L%dH%d ", below / NH, below % NH);
        assert_null(strstr(tmux_capture(0), want));
    }
    tmux_keys("F");
    snprintf(want, sizeof want, "all heads sorted by previous-token: %d layers x %d heads", L, NH);
    tmux_wait_for(want);
    tmux_keys("q q");
    tmux_assert_restored("rc=0");
    tmux_stop();
    free(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_term_attn_zoom_scroll),
        cmocka_unit_test(test_tui_term_attn_search),
        cmocka_unit_test(test_tui_term_attn_grid_filter),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
