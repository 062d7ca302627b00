/*
** tests/test_tui_lens.c: the lens view's model on a plain cell grid, without
** a terminal. Every value is checked against an independent computation:
** the live logit lens against mech_lens_logit on the same run, a stored run
** against SQL on the database `mech lens --db` wrote, the decoder lens
** against the printout of `mech lens --input` for compiled example programs
** (categorical, numerical, boolean and none values). Also the shading
** modes, the cursor line, a stored run whose model file is gone, and the
** app's keys that reach the view.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"
#include "tui/tui.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char model[600], db[600], gone[600];
static const char *prompt = "When Mary and John went to the store";

static int setup(void **state) {
    (void)state;
    snprintf(model, sizeof model, "%s", mech_test_tmpn("lens_tiny.safetensors"));
    snprintf(gone, sizeof gone, "%s", mech_test_tmpn("lens_gone.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("lens.db"));
    mech_test_rm_db(db);
    char *out = NULL;
    // run 1: with a target; run 2: without; run 3: a model that is then removed
    if (mech_test_cli(&out, NULL, "init -o %s", model) ||
        (free(out), mech_test_cli(&out, NULL, "lens --model %s --prompt '%s' --target ' the' --db %s", model, prompt, db)) ||
        (free(out), mech_test_cli(&out, NULL, "lens --model %s --prompt '%s' --db %s", model, prompt, db)) ||
        (free(out), mech_test_cli(&out, NULL, "init --seed 7 -o %s", gone)) ||
        (free(out), mech_test_cli(&out, NULL, "lens --model %s --prompt 'Mary had' --db %s", gone, db)))
        fail_msg("setup: %s", out);
    free(out);
    unlink(gone);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(model);
    mech_test_rm_db(db);
    return 0;
}

// SQLite's printf gives at most 16 significant digits: equal to that.
static int same(double a, double b) { return fabs(a - b) <= 1e-15 * fabs(b) + 1e-300; }

static char *grid_text(const mech_tui_grid *g) {
    char *s = malloc((size_t)g->h * (g->w + 1) + 1), *p = s;
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, p);
        p += g->w;
        *p++ = '\n';
    }
    *p = 0;
    return s;
}

static void assert_grid_has(const mech_tui_grid *g, const char *needle) {
    char *s = grid_text(g);
    if (!strstr(s, needle)) {
        print_message("--- grid (looking for \"%s\") ---\n%s", needle, s);
        free(s);
        fail();
    }
    free(s);
}

// A token's label as the view writes it, from the tokenizer directly.
static void tok_label(const mech_tokenizer *tok, int32_t id, char *out, size_t cap) {
    size_t len = 0;
    const char *s = mech_tokenizer_token(tok, id, &len);
    char raw[64];
    snprintf(raw, sizeof raw, "%.*s", (int)len, s);
    mech_tui_token_label(raw, out, cap);
}

// The prompt as the CLI runs it: BOS, then the text's tokens.
static int32_t *prompt_ids(const mech_tokenizer *tok, const char *text, int *T) {
    mech_err err = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    if (mech_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, &err)) fail_msg("%s", err.msg);
    int32_t *seq = malloc((n + 1) * sizeof *seq);
    seq[0] = 50256;
    memcpy(seq + 1, ids, n * sizeof *ids);
    mech_free(ids);
    *T = (int)n + 1;
    return seq;
}

// --- logit lens, live -------------------------------------------------------

static void test_tui_lens_logit_live_equals_library(void **state) {
    (void)state;
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *tok = NULL;
    mech_run *run = NULL;
    if (mech_model_load(model, &m, &err) || mech_tokenizer_gpt2(&tok, &err)) fail_msg("%s", err.msg);
    int T = 0, V = m->cfg.d_vocab, L1 = m->cfg.n_layers + 1;
    int32_t *ids = prompt_ids(tok, prompt, &T);
    if (mech_run_new(m, 1, T, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    mech_tui_lens v = {0};
    assert_int_equal(mech_tui_lens_from_run(&v, m, run, ids, T, tok, &err), MECH_OK);
    assert_int_equal(v.decoder, 0);
    assert_int_equal(v.L1, L1);
    assert_int_equal(v.T, T);
    // the targets, independently: the next token, at the end the argmax of the logits
    int32_t *tg = malloc((size_t)T * sizeof *tg);
    for (int p = 0; p + 1 < T; p++) tg[p] = ids[p + 1];
    const float *lg = mech_run_logits(run) + (size_t)(T - 1) * V;
    int best = 0;
    for (int u = 1; u < V; u++)
        if (lg[u] > lg[best]) best = u;
    tg[T - 1] = best;
    mech_lens_row *rows = NULL;
    size_t n_rows = 0;
    if (mech_lens_logit(m, run, 5, tg, &rows, &n_rows, &err)) fail_msg("%s", err.msg);
    assert_int_equal(n_rows, (size_t)L1 * T);
    for (size_t i = 0; i < n_rows; i++) {
        const mech_lens_row *r = &rows[i];
        const mech_tui_lens_cell *c = &v.cells[(size_t)r->layer * T + r->pos];
        assert_int_equal(c->k, 5);
        for (int j = 0; j < 5; j++) {
            assert_int_equal(c->top_ids[j], r->top_ids[j]);
            assert_true(c->top_probs[j] == r->top_probs[j]);
            char lab[MECH_TUI_LENS_TEXT];
            tok_label(tok, r->top_ids[j], lab, sizeof lab);
            assert_string_equal(c->top_text[j], lab);
        }
        assert_int_equal(c->target, tg[r->pos]);
        assert_true(c->target_rank == r->target_rank && c->target_prob == r->target_prob);
        assert_true(c->kl == r->kl && c->entropy == r->entropy);
        assert_true(mech_tui_lens_value(&v, MECH_TUI_LENS_TOP1, r->layer, r->pos) == r->top_probs[0]);
        assert_true(mech_tui_lens_value(&v, MECH_TUI_LENS_KL, r->layer, r->pos) == r->kl);
    }
    // at the last layer the final top-1 is the model's own: its target rank is 0
    assert_int_equal(v.cells[(size_t)(L1 - 1) * T + T - 1].target_rank, 0);
    for (int t = 0; t < T; t++) {
        char lab[MECH_TUI_LENS_TEXT];
        tok_label(tok, ids[t], lab, sizeof lab);
        assert_string_equal(v.tokens[t], lab);
    }
    mech_tui_lens_deinit(&v);
    mech_free(rows);
    free(tg);
    free(ids);
    mech_run_free(run);
    mech_tokenizer_free(tok);
    mech_model_free(m);
}

// The grid: each cell its top-1 token (7 columns) on the level of the
// shaded quantity; the cursor line names the cell's top 5.
static void test_tui_lens_grid_cells_and_cursor(void **state) {
    (void)state;
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *tok = NULL;
    mech_run *run = NULL;
    if (mech_model_load(model, &m, &err) || mech_tokenizer_gpt2(&tok, &err)) fail_msg("%s", err.msg);
    int T = 0;
    int32_t *ids = prompt_ids(tok, prompt, &T);
    if (mech_run_new(m, 1, T, &run, &err) || mech_run_cache(run, "blocks.*.hook_resid_pre", &err) ||
        mech_run_cache(run, "blocks.*.hook_resid_post", &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    mech_tui_lens v = {0};
    assert_int_equal(mech_tui_lens_from_run(&v, m, run, ids, T, tok, &err), MECH_OK);
    mech_lens_row *rows = NULL;
    size_t n_rows = 0;
    if (mech_lens_logit(m, run, 5, NULL, &rows, &n_rows, &err)) fail_msg("%s", err.msg);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    // cursor to layer 1, position 3
    for (const char *k = "jlll"; *k; k++) assert_int_equal(mech_tui_lens_key(&v, *k), MECH_TUI_REDRAW);
    mech_tui_lens_render(&v, &g, 0, 24);
    const mech_lens_row *r = &rows[(size_t)1 * T + 3];
    char want[300], lab[MECH_TUI_LENS_TEXT];
    int n = snprintf(want, sizeof want, "top 5:");
    for (int j = 0; j < 5; j++) {
        tok_label(tok, r->top_ids[j], lab, sizeof lab);
        n += snprintf(want + n, sizeof want - (size_t)n, "  \"%s\" %.4g", lab, r->top_probs[j]);
    }
    want[80] = 0; // the line is cut at the window's width
    assert_grid_has(&g, want);
    tok_label(tok, ids[3], lab, sizeof lab);
    snprintf(want, sizeof want, "layer 1  pos 3 \"%s\"  top-1 prob %.4g", lab, r->top_probs[0]);
    assert_grid_has(&g, want);
    // every cell on screen (80 columns: 6 + 9 cells of 8): text and level
    for (int l = 0; l < v.L1; l++)
        for (int p = 0; p < T && p < 9; p++) {
            const mech_lens_row *rr = &rows[(size_t)l * T + p];
            tok_label(tok, rr->top_ids[0], lab, sizeof lab);
            lab[7] = 0;
            char row[128];
            mech_tui_grid_row_text(&g, 4 + l, row);
            assert_memory_equal(row + 6 + p * 8, lab, strlen(lab));
            const mech_tui_cell *c = mech_tui_grid_at(&g, 4 + l, 6 + p * 8);
            assert_int_equal(c->heat, 1);
            assert_int_equal(c->level, mech_tui_level((float)rr->top_probs[0]));
            assert_int_equal(c->role, l == 1 && p == 3 ? MECH_TUI_SEL : MECH_TUI_HEAT);
        }
    // the columns' labels are the prompt's tokens
    char hdr[128];
    mech_tui_grid_row_text(&g, 3, hdr);
    tok_label(tok, ids[2], lab, sizeof lab);
    assert_memory_equal(hdr + 6 + 2 * 8, lab, strlen(lab));
    // shading by entropy: relative to the grid's largest entropy
    assert_int_equal(mech_tui_lens_key(&v, 'm'), MECH_TUI_REDRAW);
    assert_int_equal(v.mode, MECH_TUI_LENS_TARGET);
    mech_tui_lens_key(&v, 'm');
    mech_tui_lens_key(&v, 'm');
    assert_int_equal(v.mode, MECH_TUI_LENS_ENTROPY);
    double hmax = 0;
    for (size_t i = 0; i < n_rows; i++) hmax = rows[i].entropy > hmax ? rows[i].entropy : hmax;
    mech_tui_lens_render(&v, &g, 0, 24);
    const mech_tui_cell *c = mech_tui_grid_at(&g, 4 + 2, 6 + 1 * 8);
    assert_int_equal(c->level, mech_tui_level((float)(rows[(size_t)2 * T + 1].entropy / hmax)));
    // scrolling: the last position brings its column on screen
    mech_tui_lens_key(&v, MECH_TUI_KEY_END);
    mech_tui_lens_render(&v, &g, 0, 24);
    tok_label(tok, ids[T - 1], lab, sizeof lab);
    mech_tui_grid_row_text(&g, 3, hdr);
    assert_non_null(strstr(hdr, lab));
    mech_tui_grid_deinit(&g);
    mech_tui_lens_deinit(&v);
    mech_free(rows);
    free(ids);
    mech_run_free(run);
    mech_tokenizer_free(tok);
    mech_model_free(m);
}

// --- logit lens, stored -----------------------------------------------------

static void test_tui_lens_stored_equals_sql(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tokenizer *tok = NULL;
    if (mech_tokenizer_gpt2(&tok, &err)) fail_msg("%s", err.msg);
    mech_tui_lens v = {0};
    assert_int_equal(mech_tui_lens_load(db, 1, &v, &err), MECH_OK);
    assert_int_equal(v.decoder, 0);
    assert_int_equal(v.has_target, 1);
    char *s = mech_test_sql_rows(db, "select max(layer) + 1, max(pos) + 1 from results where run_id = 1");
    char want[64];
    snprintf(want, sizeof want, "%d|%d\n", v.L1, v.T);
    assert_string_equal(s, want);
    free(s);
    s = mech_test_sql_rows(db, "select layer, pos, token, rank, metric, printf('%.17g', value) from results "
                               "where run_id = 1 and item = 0 order by rowid");
    int n = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), n++) {
        int l, p, rank;
        long long token;
        char metric[32];
        double x;
        assert_int_equal(sscanf(line, "%d|%d|%lld|%d|%31[^|]|%lf", &l, &p, &token, &rank, metric, &x), 6);
        const mech_tui_lens_cell *c = &v.cells[(size_t)l * v.T + p];
        if (!strcmp(metric, "prob")) {
            assert_int_equal(c->top_ids[rank], token);
            assert_true(same(c->top_probs[rank], x));
            char lab[MECH_TUI_LENS_TEXT];
            tok_label(tok, (int32_t)token, lab, sizeof lab);
            assert_string_equal(c->top_text[rank], lab);
        } else if (!strcmp(metric, "kl")) assert_true(same(c->kl, x));
        else if (!strcmp(metric, "entropy")) assert_true(same(c->entropy, x));
        else if (!strcmp(metric, "target_prob")) {
            assert_int_equal(c->target, token);
            assert_int_equal(c->target_rank, rank);
            assert_true(same(c->target_prob, x));
            assert_string_equal(c->target_text, " the");
        } else fail_msg("unexpected metric %s", metric);
    }
    assert_int_equal(n, v.L1 * v.T * 8); // 5 top, kl, entropy, target
    free(s);
    // the column labels: the stored prompt's ids through the tokenizer
    s = mech_test_sql_rows(db, "select value from prompts, json_each(prompts.tokens) where run_id = 1 order by key");
    int t = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), t++) {
        char lab[MECH_TUI_LENS_TEXT];
        tok_label(tok, (int32_t)atoi(line), lab, sizeof lab);
        assert_string_equal(v.tokens[t], lab);
    }
    assert_int_equal(t, v.T);
    free(s);
    // the rank mode: log scale against the grid's worst rank
    v.mode = MECH_TUI_LENS_RANK;
    double rmax = 0;
    for (int i = 0; i < v.L1 * v.T; i++) rmax = (double)v.cells[i].target_rank > rmax ? (double)v.cells[i].target_rank : rmax;
    assert_true(rmax > 0);
    const mech_tui_lens_cell *c0 = &v.cells[0];
    assert_int_equal(mech_tui_lens_level(&v, MECH_TUI_LENS_RANK, 0, 0),
                     mech_tui_level((float)(1 - log1p((double)c0->target_rank) / log1p(rmax))));
    mech_tui_lens_deinit(&v);
    mech_tokenizer_free(tok);
}

// Without a target (run 2) m cycles through top-1, entropy and KL only.
static void test_tui_lens_modes_without_target(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_lens v = {0};
    assert_int_equal(mech_tui_lens_load(db, 2, &v, &err), MECH_OK);
    assert_int_equal(v.has_target, 0);
    int seen[MECH_TUI_LENS_MODES_] = {0};
    for (int i = 0; i < 6; i++) {
        mech_tui_lens_key(&v, 'm');
        seen[v.mode]++;
    }
    assert_int_equal(seen[MECH_TUI_LENS_TARGET], 0);
    assert_int_equal(seen[MECH_TUI_LENS_RANK], 0);
    assert_int_equal(seen[MECH_TUI_LENS_TOP1], 2);
    assert_int_equal(seen[MECH_TUI_LENS_ENTROPY], 2);
    assert_int_equal(seen[MECH_TUI_LENS_KL], 2);
    assert_true(isnan(mech_tui_lens_value(&v, MECH_TUI_LENS_TARGET, 0, 0)));
    mech_tui_lens_deinit(&v);
}

// A run whose model file is gone still opens: ids as <id>, values from the database.
static void test_tui_lens_stored_model_gone(void **state) {
    (void)state;
    mech_err err = {0};
    mech_tui_lens v = {0};
    assert_int_not_equal(access(gone, F_OK), 0);
    assert_int_equal(mech_tui_lens_load(db, 3, &v, &err), MECH_OK);
    char *s = mech_test_sql_rows(db, "select tokens from prompts where run_id = 3");
    int a = 0, b = 0, c = 0;
    assert_int_equal(sscanf(s, "[%d,%d,%d]", &a, &b, &c), 3);
    free(s);
    char want[32];
    snprintf(want, sizeof want, "<%d>", b);
    assert_string_equal(v.tokens[1], want);
    s = mech_test_sql_rows(db, "select token, printf('%.17g', value) from results where run_id = 3 and layer = 1 and "
                               "pos = 2 and metric = 'prob' and rank = 0");
    long long tok = 0;
    double p = 0;
    assert_int_equal(sscanf(s, "%lld|%lf", &tok, &p), 2);
    free(s);
    snprintf(want, sizeof want, "<%lld>", tok);
    assert_string_equal(v.cells[(size_t)1 * v.T + 2].top_text[0], want);
    assert_true(same(v.cells[(size_t)1 * v.T + 2].top_probs[0], p));
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 100), MECH_OK);
    mech_tui_lens_render(&v, &g, 0, 24);
    assert_grid_has(&g, "model file not found: token ids shown");
    mech_tui_grid_deinit(&g);
    mech_tui_lens_deinit(&v);
    // not a lens run
    assert_int_equal(mech_tui_lens_load(db, 99, &v, &err), MECH_ERR_RANGE);
}

// --- decoder lens -----------------------------------------------------------

// `mech lens --input` printout: "  NAME  layer L: v v v" then "  layer L: ...".
// Returns the values of (var, layer) as one space-separated string, or NULL.
static int cli_values(const char *out, const char *var, int layer, char *buf, size_t cap) {
    char name[64] = "";
    for (const char *line = out; line && *line;) {
        const char *e = strchr(line, '\n');
        size_t n = e ? (size_t)(e - line) : strlen(line);
        char l[512];
        snprintf(l, sizeof l, "%.*s", (int)n, line);
        int ly;
        const char *colon = strchr(l, ':');
        char *p = l;
        while (*p == ' ') p++;
        if (colon && strncmp(p, "layer ", 6)) sscanf(p, "%63s", name);
        char *lp = strstr(l, "layer ");
        if (colon && lp && sscanf(lp, "layer %d:", &ly) == 1 && !strcmp(name, var) && ly == layer) {
            snprintf(buf, cap, "%s", strchr(lp, ':') + 2);
            return 1;
        }
        line = e ? e + 1 : NULL;
    }
    return 0;
}

static void check_decoder(const mech_tui_lens *v, const char *out) {
    assert_int_equal(v->decoder, 1);
    assert_true(v->n_vars > 1);
    for (int j = 0; j < v->n_vars; j++) {
        if (j) assert_true(v->var_from[j] >= v->var_from[j - 1]); // grouped by the layer that computes them
        for (int l = 0; l < v->L1; l++) {
            char want[512], got[512] = "";
            if (!cli_values(out, v->var_name[j], l, want, sizeof want)) fail_msg("no %s layer %d in\n%s", v->var_name[j], l, out);
            size_t n = 0;
            for (int t = 0; t < v->T; t++)
                n += (size_t)snprintf(got + n, sizeof got - n, "%s%s", t ? " " : "", v->vals[((size_t)l * v->n_vars + j) * v->T + t]);
            if (strcmp(got, want)) fail_msg("%s layer %d: view '%s', mech lens '%s'", v->var_name[j], l, got, want);
        }
    }
}

static void decoder_case(const char *prog, const char *input, const char *owner_var, const char *owner) {
    char path[700], src[300];
    snprintf(path, sizeof path, "%s", mech_test_tmpn("lens_dec.safetensors"));
    const char *ddb = mech_test_tmpn("lens_dec.db");
    mech_test_rm_db(ddb);
    snprintf(src, sizeof src, "examples/rasp/%s.rasp", prog);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile %s -o %s", src, path)) fail_msg("%s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "lens --model %s --input '%s' --db %s", path, input, ddb)) fail_msg("%s", out);
    mech_err err = {0};
    // stored
    mech_tui_lens v = {0};
    assert_int_equal(mech_tui_lens_load(ddb, 1, &v, &err), MECH_OK);
    check_decoder(&v, out);
    int found = 0;
    for (int j = 0; j < v.n_vars; j++)
        if (!strcmp(v.var_name[j], owner_var)) assert_string_equal(v.var_owner[j], owner), found = 1;
    assert_true(found);
    mech_tui_lens_deinit(&v);
    // live, from the library
    mech_model *m = NULL;
    mech_rasp_program *p = NULL;
    mech_rasp_value *in = NULL;
    size_t n = 0;
    mech_run *run = NULL;
    if (mech_model_load(path, &m, &err)) fail_msg("%s", err.msg);
    const char *s = mech_model_meta(m, "mech.rasp.source");
    if (mech_rasp_parse(path, s, strlen(s), &p, &err) || mech_rasp_input_parse(p, input, &in, &n, &err))
        fail_msg("%s", err.msg);
    int T = (int)n + 1;
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    ids[0] = 0;
    for (size_t i = 0; i < n; i++) ids[i + 1] = mech_rasp_token_id(p, &in[i]);
    if (mech_run_new(m, 1, T, &run, &err) || mech_lens_cache(run, &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    assert_int_equal(mech_tui_lens_from_run(&v, m, run, ids, T, NULL, &err), MECH_OK);
    check_decoder(&v, out);
    // the layer selector and the cursor line
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    for (int i = 0; i < v.L1 + 2; i++) mech_tui_lens_key(&v, ']');
    assert_int_equal(v.dl, v.L1 - 1);
    mech_tui_lens_key(&v, 'j');
    mech_tui_lens_key(&v, 'l');
    mech_tui_lens_render(&v, &g, 0, 24);
    char want[300];
    snprintf(want, sizeof want, "layer %d of 0..%d  %s (%s)  pos 1 %s: %s", v.L1 - 1, v.L1 - 1, v.var_name[1],
             v.var_owner[1], v.tokens[1], v.vals[((size_t)(v.L1 - 1) * v.n_vars + 1) * v.T + 1]);
    assert_grid_has(&g, want);
    mech_tui_lens_key(&v, '[');
    assert_int_equal(v.dl, v.L1 - 2);
    mech_tui_grid_deinit(&g);
    mech_tui_lens_deinit(&v);
    mech_run_free(run);
    free(ids);
    mech_free(in);
    mech_rasp_program_free(p);
    mech_model_free(m);
    free(out);
    unlink(path);
    mech_test_rm_db(ddb);
}

static void test_tui_lens_decoder_equals_cli(void **state) {
    (void)state;
    decoder_case("reverse", "a b c d", "reverse", "L2 attn H0");    // categorical
    decoder_case("frac_prevs", "h l e l o", "frac_l", "L1 attn H0"); // numerical and booleans
    decoder_case("detect_pattern", "a b c a b", "map_2", "L0 mlp");  // none (null)
}

// A stored decoder lens whose model file is gone: categorical values as
// #index (the stored token), numbers as stored, '-' where SQL says absent.
static void test_tui_lens_decoder_model_gone(void **state) {
    (void)state;
    char path[700];
    snprintf(path, sizeof path, "%s", mech_test_tmpn("lens_dec_gone.safetensors"));
    const char *ddb = mech_test_tmpn("lens_dec_gone.db");
    mech_test_rm_db(ddb);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile examples/rasp/frac_prevs.rasp -o %s", path) ||
        (free(out), mech_test_cli(&out, NULL, "lens --model %s --input 'h l e l o' --db %s", path, ddb)))
        fail_msg("%s", out);
    free(out);
    unlink(path);
    mech_err err = {0};
    mech_tui_lens v = {0};
    assert_int_equal(mech_tui_lens_load(ddb, 1, &v, &err), MECH_OK);
    assert_int_equal(v.decoder, 1);
    assert_string_equal(v.tokens[1], "l"); // the stored input's words
    char *s = mech_test_sql_rows(ddb, "select metric, layer, pos, token, rank, printf('%.17g', value) from results "
                                      "where run_id = 1 order by rowid");
    int n = 0;
    for (char *line = strtok(s, "\n"); line; line = strtok(NULL, "\n"), n++) {
        char metric[64], want[64];
        int l, p, tok, rank;
        double x;
        assert_int_equal(sscanf(line, "%63[^|]|%d|%d|%d|%d|%lf", metric, &l, &p, &tok, &rank, &x), 6);
        int j = 0;
        while (j < v.n_vars && strcmp(v.var_name[j], metric)) j++;
        assert_true(j < v.n_vars);
        if (rank != 1) snprintf(want, sizeof want, "-");
        else if (!strcmp(metric, "tokens") || !strcmp(metric, "indices")) snprintf(want, sizeof want, "#%d", tok);
        else snprintf(want, sizeof want, "%s", x == 0 ? "0" : x == 1 ? "1" : x == 0.5 ? "0.5" : "?");
        const char *got = v.vals[((size_t)l * v.n_vars + j) * v.T + p];
        if (strcmp(want, "?")) assert_string_equal(got, want);
        else assert_true(fabs(strtod(got, NULL) - x) < 1e-5);
    }
    assert_true(n > 0);
    free(s);
    mech_tui_lens_deinit(&v);
    mech_test_rm_db(ddb);
}

// --- the prompt reader the stored view uses (data/) -------------------------

static void test_tui_lens_store_prompt_get(void **state) {
    (void)state;
    mech_err err = {0};
    mech_store *s = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    int n = 0;
    assert_int_equal(mech_store_open_read(db, &s, &err), MECH_OK);
    assert_int_equal(mech_store_prompt_get(s, 1, 0, "prompt", &text, &ids, &n, &err), MECH_OK);
    assert_string_equal(text, prompt);
    char *want = mech_test_sql_rows(db, "select tokens from prompts where run_id = 1 and item = 0");
    mech_buf b = {0};
    mech_buf_puts(&b, "[");
    for (int i = 0; i < n; i++) mech_buf_printf(&b, i ? ",%d" : "%d", (int)ids[i]);
    mech_buf_puts(&b, "]\n");
    mech_buf_append(&b, "", 0);
    assert_string_equal(b.data, want);
    assert_int_equal(ids[0], 50256);
    mech_buf_free(&b);
    free(want);
    mech_free(text), mech_free(ids);
    assert_int_equal(mech_store_prompt_get(s, 1, 1, "prompt", &text, &ids, &n, &err), MECH_ERR_RANGE);
    assert_null(text);
    assert_null(ids);
    assert_int_equal(mech_store_prompt_get(s, 1, 0, "clean", &text, &ids, &n, &err), MECH_ERR_RANGE);
    mech_store_close(s);
}

// --- the app ----------------------------------------------------------------

static void test_tui_lens_app_keys(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.has_runs = 1, app.db_path = db;
    mech_tui_app_reload(&app);
    mech_tui_app_open_run(&app, 1, "lens");
    assert_int_equal(app.view, MECH_TUI_VIEW_LENS);
    assert_int_equal(app.lens_stored, 1);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 100), MECH_OK);
    mech_tui_app_render(&app, &g);
    assert_grid_has(&g, "[lens]");
    assert_grid_has(&g, "run 1 logit lens");
    assert_grid_has(&g, "m shade");
    mech_tui_app_key(&app, '?');
    mech_tui_app_render(&app, &g);
    assert_grid_has(&g, "keys: lens view");
    assert_grid_has(&g, "target rank (log)");
    mech_tui_app_key(&app, 'x');
    mech_tui_app_key(&app, 'j');
    assert_int_equal(app.lens_run.cl, 1);
    mech_tui_app_key(&app, 'q');
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    // a run that is not a lens run opens with its error as the title
    mech_tui_app_open_run(&app, 99, "lens");
    mech_tui_app_render(&app, &g);
    assert_grid_has(&g, "run 99  cannot read it");
    mech_tui_app_key(&app, MECH_TUI_KEY_ESC);
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    mech_tui_app_deinit(&app);
    mech_tui_grid_deinit(&g);

    // a live model: L from the head view, q back to it, Tab reaches the lens
    mech_tui_app b = {0};
    b.has_attn = 1, b.has_lens = 1, b.view = MECH_TUI_VIEW_HEAD;
    b.attn.L = 1, b.attn.NH = 1, b.attn.T = 1;
    assert_int_equal(mech_tui_lens_load(db, 2, &b.lens, &(mech_err){0}), MECH_OK);
    mech_tui_app_key(&b, 'L');
    assert_int_equal(b.view, MECH_TUI_VIEW_LENS);
    assert_int_equal(b.lens_stored, 0);
    mech_tui_app_key(&b, 'q');
    assert_int_equal(b.view, MECH_TUI_VIEW_HEAD);
    int reached = 0;
    for (int i = 0; i < MECH_TUI_VIEW_COUNT_ && !reached; i++) {
        mech_tui_app_key(&b, MECH_TUI_KEY_TAB);
        reached = b.view == MECH_TUI_VIEW_LENS;
    }
    assert_true(reached);
    mech_tui_app_deinit(&b);
}

// The live lens is built when the view is first shown (L), from the run
// the attention view holds, not before the first frame.
static void test_tui_lens_live_built_on_first_show(void **state) {
    (void)state;
    mech_err err = {0};
    mech_model *m = NULL;
    mech_tokenizer *tok = NULL;
    mech_run *run = NULL;
    if (mech_model_load(model, &m, &err) || mech_tokenizer_gpt2(&tok, &err)) fail_msg("%s", err.msg);
    int T = 0;
    int32_t *ids = prompt_ids(tok, prompt, &T);
    if (mech_run_new(m, 1, T, &run, &err) || mech_run_cache(run, "blocks.*.hook_resid_pre", &err) ||
        mech_run_cache(run, "blocks.*.hook_resid_post", &err) || mech_run_forward(run, ids, &err))
        fail_msg("%s", err.msg);
    mech_tui_app app = {0};
    app.has_attn = 1, app.has_lens = 1, app.view = MECH_TUI_VIEW_HEAD;
    app.attn.L = 1, app.attn.NH = 1, app.attn.T = 1;
    app.lens_src = (mech_tui_lens_live){.m = m, .run = run, .ids = ids, .T = T, .tok = NULL};
    assert_null(app.lens.cells);
    mech_tui_app_key(&app, 'L');
    assert_int_equal(app.view, MECH_TUI_VIEW_LENS);
    assert_non_null(app.lens.cells);
    mech_tui_lens want = {0};
    assert_int_equal(mech_tui_lens_from_run(&want, m, run, ids, T, tok, &err), MECH_OK);
    for (int i = 0; i < want.L1 * want.T; i++) {
        assert_string_equal(app.lens.cells[i].top_text[0], want.cells[i].top_text[0]); // built-in vocabulary's names
        assert_true(app.lens.cells[i].top_probs[0] == want.cells[i].top_probs[0]);
    }
    // the cursor stays where it was when the view is left and shown again
    mech_tui_app_key(&app, 'j');
    mech_tui_app_key(&app, 'q');
    mech_tui_app_key(&app, 'L');
    assert_int_equal(app.lens.cl, 1);
    mech_tui_lens_deinit(&want);
    mech_tui_app_deinit(&app);
    free(ids);
    mech_run_free(run);
    mech_tokenizer_free(tok);
    mech_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_lens_logit_live_equals_library),
        cmocka_unit_test(test_tui_lens_grid_cells_and_cursor),
        cmocka_unit_test(test_tui_lens_stored_equals_sql),
        cmocka_unit_test(test_tui_lens_modes_without_target),
        cmocka_unit_test(test_tui_lens_stored_model_gone),
        cmocka_unit_test(test_tui_lens_decoder_equals_cli),
        cmocka_unit_test(test_tui_lens_decoder_model_gone),
        cmocka_unit_test(test_tui_lens_store_prompt_get),
        cmocka_unit_test(test_tui_lens_app_keys),
        cmocka_unit_test(test_tui_lens_live_built_on_first_show),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
