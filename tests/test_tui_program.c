/*
** tests/test_tui_program.c: the program view of a compiled RASP model on a
** plain cell grid, without a terminal. The models come from `mech compile`
** on examples/rasp; every figure the view holds is checked against an
** independent reading: the source text, the metadata's JSON (who computes
** each variable, its residual dimensions), a forward pass of the test's own
** through mech_lens_decode, and the RASP interpreter.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mech.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { REV, HIST, SORT, FRAC, N_PROGS };
static const char *const prog_names[N_PROGS] = {"reverse", "hist", "sort", "frac_prevs"};
static char paths[N_PROGS][600];
static mech_model *models[N_PROGS];

static int setup(void **state) {
    (void)state;
    for (int i = 0; i < N_PROGS; i++) {
        char name[64], *out = NULL;
        mech_err err = {0};
        snprintf(name, sizeof name, "tui_prog_%s.safetensors", prog_names[i]);
        snprintf(paths[i], sizeof paths[i], "%s", mech_test_tmpn(name));
        if (mech_test_cli(&out, NULL, "compile examples/rasp/%s.rasp -o %s", prog_names[i], paths[i]))
            fail_msg("mech compile %s: %s", prog_names[i], out);
        free(out);
        if (mech_model_load(paths[i], &models[i], &err)) fail_msg("load %s: %s", paths[i], err.msg);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N_PROGS; i++) {
        mech_model_free(models[i]);
        unlink(paths[i]);
    }
    return 0;
}

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

// The first row of g that starts with prefix (after skipping `skip`
// columns), or -1; its text into row.
static int find_row(const mech_tui_grid *g, int skip, const char *prefix, char *row) {
    for (int y = 0; y < g->h; y++) {
        mech_tui_grid_row_text(g, y, row);
        if (!strncmp(row + skip, prefix, strlen(prefix))) return y;
    }
    char *s = grid_text(g);
    print_message("--- grid (no row starting \"%s\") ---\n%s", prefix, s);
    free(s);
    return -1;
}

static int var_index(const mech_tui_program *v, const char *label) {
    for (int i = 0; i < v->n_pv; i++)
        if (!strcmp(v->pv[i].label, label)) return i;
    fail_msg("no variable %s in the view", label);
    return -1;
}

static const char *val_at(const mech_tui_program *v, int l, int i, int p) {
    return v->val[((size_t)l * v->n_pv + i) * v->P + p];
}

// --- layout: source, variables, owners ---------------------------------------

// The view's variables, their owners and residual dimensions are the
// metadata's (read here with the JSON parser, not the view's reader), and
// each variable's line is the source line that assigns it.
static void test_tui_program_layout_matches_metadata(void **state) {
    (void)state;
    for (int pi = 0; pi < N_PROGS; pi++) {
        const mech_model *m = models[pi];
        mech_tui_program v = {0};
        mech_err err = {0};
        assert_int_equal(mech_tui_program_load(&v, m, &err), MECH_OK);
        const char *src = mech_model_meta(m, "mech.rasp.source");
        int lines = 1;
        for (const char *p = src; *p; p++) lines += *p == '\n' && p[1];
        assert_int_equal(v.n_lines, lines);
        assert_int_equal(v.L, m->cfg.n_layers);
        mech_json *cj = NULL, *rj = NULL;
        const char *circuit = mech_model_meta(m, "mech.rasp.circuit"), *resid = mech_model_meta(m, "mech.rasp.residual");
        assert_int_equal(mech_json_parse(circuit, strlen(circuit), &cj, NULL), MECH_OK);
        assert_int_equal(mech_json_parse(resid, strlen(resid), &rj, NULL), MECH_OK);
        const mech_json *nodes = mech_json_get(cj, "nodes");
        assert_int_equal(v.n_pv, (int)nodes->n);
        for (size_t i = 0; i < nodes->n; i++) {
            const mech_json *nd = &nodes->items[i];
            const mech_tui_program_var *pv = &v.pv[i];
            const mech_rasp_circuit_node *cn = pv->node;
            assert_string_equal(pv->label, mech_json_get(nd, "label")->str);
            const mech_json *head = mech_json_get(nd, "head"), *mlp = mech_json_get(nd, "mlp");
            const mech_json *dims = mech_json_get(nd, "dims"), *layer = mech_json_get(nd, "layer");
            assert_int_equal(cn->head, head ? (int)head->items[1].inum : -1);
            assert_int_equal(cn->head_layer, head ? (int)head->items[0].inum : -1);
            assert_int_equal(cn->mlp_layer, mlp ? (int)mlp->items[0].inum : -1);
            assert_int_equal(cn->layer, layer ? (int)layer->inum : -1);
            assert_int_equal(cn->dim_from, (int)dims->items[0].inum);
            assert_int_equal(cn->dim_to, (int)dims->items[1].inum);
            // the lens variable of the node starts at its first dimension, named by the residual label
            assert_true(pv->lens_var >= 0);
            const char *lab = rj->items[cn->dim_from].str;
            assert_int_equal(strncmp(lab, pv->label, strlen(pv->label)), 0);
            assert_true(lab[strlen(pv->label)] == ':' || lab[strlen(pv->label)] == 0);
            // built-ins have no line; an assigned variable's line assigns it
            if (!strcmp(pv->label, "tokens") || !strcmp(pv->label, "indices")) assert_int_equal(pv->line, 0);
            else if (pi == REV || pi == HIST) {
                assert_true(pv->line >= 1);
                const char *t = v.lines[pv->line - 1];
                while (*t == ' ') t++;
                assert_int_equal(strncmp(t, pv->label, strlen(pv->label)), 0);
                assert_true(strstr(t, "=") != NULL);
            }
        }
        // selected at the start: the program's output
        const char *out = mech_json_get(&nodes->items[0], "label")->str;
        (void)out;
        mech_rasp_program *p = NULL;
        char path[128];
        snprintf(path, sizeof path, "examples/rasp/%s.rasp", prog_names[pi]);
        assert_int_equal(mech_rasp_load(path, &p, &err), MECH_OK);
        assert_string_equal(v.pv[v.sel].label, mech_rasp_program_node(p, mech_rasp_program_output(p))->label);
        mech_rasp_program_free(p);
        mech_json_free(cj);
        mech_json_free(rj);
        mech_tui_program_deinit(&v);
        assert_null(v.prog);
    }
}

// On the grid: the layers pane names the variable of each head and MLP, the
// selected variable's line says what computes it and lists its residual
// dimensions with their labels.
static void test_tui_program_render_layers_and_selection(void **state) {
    (void)state;
    mech_tui_program v = {0};
    mech_tui_grid g = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_program_load(&v, models[REV], &err), MECH_OK);
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_program_render(&v, &g, 0, 22);
    char row[128];
    int lw = -1;
    int y = find_row(&g, 0, " 1 #", row);
    assert_true(y >= 0);
    lw = (int)(strchr(row, '|') - row) + 1;
    // reverse.rasp: length is L0 head 0 + L0 mlp, opp L1 mlp, reverse L2 head 0
    assert_true(find_row(&g, lw, "embed", row) >= 0);
    assert_non_null(strstr(row + lw, "tokens, indices"));
    y = find_row(&g, lw, "L0 head 0", row);
    assert_non_null(strstr(row + lw, "length"));
    assert_int_equal(find_row(&g, lw, "L0 mlp     length", row), y + 1);
    y = find_row(&g, lw, "L1 head 0", row);
    assert_non_null(strstr(row + lw, " -"));
    assert_int_equal(find_row(&g, lw, "L1 mlp     opp", row), y + 1);
    y = find_row(&g, lw, "L2 head 0", row);
    assert_non_null(strstr(row + lw, "reverse"));
    assert_int_equal(mech_tui_grid_at(&g, y, lw)->role, MECH_TUI_SEL); // the selected variable's row
    // the selected variable (reverse) and its dimensions, from the residual labels
    assert_true(find_row(&g, 0, "reverse: aggregate, categorical, computed by L2 head 0 <- indices, opp, tokens", row) >= 0);
    y = find_row(&g, 0, "resid 28..31:", row);
    assert_true(y >= 0);
    assert_non_null(strstr(row, "28 reverse:\"a\"  29 reverse:\"b\""));
    // its source line is highlighted, and the cursor ('>') is on it
    int sl = find_row(&g, 0, ">8 reverse = aggregate", row);
    assert_true(sl >= 0);
    assert_int_equal(mech_tui_grid_at(&g, sl, 3)->role, MECH_TUI_SEL);
    // k selects opp: the MLP of block 1 and its hidden units
    assert_int_equal(mech_tui_program_key(&v, 'k'), MECH_TUI_REDRAW);
    assert_string_equal(v.pv[v.sel].label, "opp");
    assert_int_equal(v.line_cur, 5);
    mech_tui_program_render(&v, &g, 0, 22);
    assert_true(find_row(&g, 0, "opp: zipmap, categorical, computed by L1 mlp (hidden units 0..29) <- length", row) >= 0);
    assert_true(find_row(&g, 0, "resid 18..27:  18 opp:-5  19 opp:-4", row) >= 0);
    // without a run: the table says how to get one
    assert_true(find_row(&g, 0, "  no input run yet", row) >= 0);
    mech_tui_grid_deinit(&g);
    mech_tui_program_deinit(&v);
}

// --- values: the decoder lens and the interpreter -------------------------------

// Runs input in the view and checks every value at every layer against a
// forward pass of our own through mech_lens_decode, and the last layer
// against the RASP interpreter.
static void check_run(int pi, const char *input) {
    const mech_model *m = models[pi];
    mech_tui_program v = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_program_load(&v, m, &err), MECH_OK);
    if (mech_tui_program_run(&v, m, input, &err)) fail_msg("%s on %s: %s", prog_names[pi], input, err.msg);
    assert_string_equal(v.input, input);
    assert_int_equal(v.layer, v.L);

    mech_rasp_program *p = NULL;
    char path[128];
    snprintf(path, sizeof path, "examples/rasp/%s.rasp", prog_names[pi]);
    assert_int_equal(mech_rasp_load(path, &p, &err), MECH_OK);
    mech_rasp_value *in = NULL;
    size_t n = 0;
    assert_int_equal(mech_rasp_input_parse(p, input, &in, &n, &err), MECH_OK);
    assert_int_equal(v.P, (int)n);
    int T = (int)n + 1, L = m->cfg.n_layers;
    int32_t ids[64];
    ids[0] = 0;
    for (size_t i = 0; i < n; i++) ids[i + 1] = mech_rasp_token_id(p, &in[i]);
    mech_run *run = NULL;
    mech_lens_vars *vars = NULL;
    mech_lens_decoded *rows = NULL;
    mech_rasp_trace *tr = NULL;
    size_t n_rows = 0;
    assert_int_equal(mech_lens_vars_parse(mech_model_meta(m, "mech.rasp.residual"), &vars, &err), MECH_OK);
    assert_int_equal(mech_lens_vars_layers(vars, mech_model_meta(m, "mech.rasp.circuit"), &err), MECH_OK);
    assert_int_equal(mech_run_new(m, 1, T, &run, &err), MECH_OK);
    assert_int_equal(mech_lens_cache(run, &err), MECH_OK);
    assert_int_equal(mech_run_forward(run, ids, &err), MECH_OK);
    assert_int_equal(mech_lens_decode(m, run, vars, 0, &rows, &n_rows, &err), MECH_OK);
    assert_int_equal(mech_rasp_eval_trace(p, in, n, &tr, &err), MECH_OK);
    int checked_interp = 0, seen_absent = 0;
    for (int i = 0; i < v.n_pv; i++) {
        const char *label = v.pv[i].label;
        int k = -1;
        for (int j = 0; j < vars->n_vars && k < 0; j++)
            if (!strcmp(vars->vars[j].name, label)) k = j;
        assert_true(k >= 0);
        const mech_rasp_node *nd = mech_rasp_program_find(p, label);
        for (int l = 0; l <= L; l++)
            for (int t = 0; t < (int)n; t++) {
                const mech_lens_decoded *r = &rows[((size_t)l * vars->n_vars + k) * T + t + 1];
                const char *s = val_at(&v, l, i, t);
                if (!r->present) {
                    assert_null(s);
                    seen_absent = 1;
                    continue;
                }
                assert_non_null(s);
                if (vars->vars[k].numerical) {
                    double x = !strcmp(s, "true") ? 1 : !strcmp(s, "false") ? 0 : strtod(s, NULL);
                    if (fabs(x - r->number) > 1e-5 * (fabs(r->number) > 1 ? fabs(r->number) : 1))
                        fail_msg("%s %s layer %d pos %d: view %s, lens %g", prog_names[pi], label, l, t, s, r->number);
                } else assert_string_equal(s, r->has_value ? r->value : "null");
                if (l == L && nd && !mech_rasp_node_is_selector(nd)) {
                    // the last layer holds what the interpreter computes
                    mech_buf b = {0};
                    mech_rasp_value_json(&b, &tr->vals[(size_t)nd->id * n + t]);
                    mech_buf_append(&b, "", 0);
                    if (strcmp(s, b.data)) fail_msg("%s %s pos %d: view %s, interpreter %s", prog_names[pi], label, t, s, b.data);
                    mech_buf_free(&b);
                    checked_interp++;
                }
            }
        // at the last layer every variable is computed
        for (int t = 0; t < (int)n; t++) assert_non_null(val_at(&v, L, i, t));
    }
    assert_true(checked_interp >= 2 * (int)n);
    assert_true(seen_absent); // some variable appears only after a block
    mech_rasp_trace_free(tr);
    mech_free(rows);
    mech_run_free(run);
    mech_lens_vars_free(vars);
    mech_free(in);
    mech_rasp_program_free(p);
    mech_tui_program_deinit(&v);
}

static void test_tui_program_values_reverse(void **state) {
    (void)state;
    check_run(REV, "a b c d");
    check_run(REV, "d a");
}

static void test_tui_program_values_hist(void **state) {
    (void)state;
    check_run(HIST, "a b a c a");
}

static void test_tui_program_values_sort(void **state) {
    (void)state;
    check_run(SORT, "3 1 2 1");
}

// numerical variables, booleans printed as true/false
static void test_tui_program_values_frac_prevs(void **state) {
    (void)state;
    check_run(FRAC, "h l l o l");
}

// The view's values equal what `mech lens --input` prints, layer by layer.
static void check_cli_lens(int pi, const char *input) {
    mech_tui_program v = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_program_load(&v, models[pi], &err), MECH_OK);
    assert_int_equal(mech_tui_program_run(&v, models[pi], input, &err), MECH_OK);
    const char *db = mech_test_tmpn("tui_prog_lens.db");
    mech_test_rm_db(db);
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "lens --model %s --input '%s' --db %s", paths[pi], input, db))
        fail_msg("mech lens: %s", out);
    mech_test_rm_db(db);
    // "  name           layer 0: v v v" then "                 layer 1: v v v"
    char name[64] = "";
    int lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char *lay = strstr(line, "layer ");
        if (!lay || line[0] != ' ') continue;
        char first[64];
        if (sscanf(line, " %63s", first) == 1 && strcmp(first, "layer")) snprintf(name, sizeof name, "%s", first);
        int l = atoi(lay + 6), i = var_index(&v, name);
        char *vals = strchr(lay, ':') + 1, *save = NULL;
        int t = 0;
        for (char *tok = strtok_r(vals, " ", &save); tok; tok = strtok_r(NULL, " ", &save), t++) {
            assert_true(t < v.P);
            const char *got = val_at(&v, l, i, t);
            if (strcmp(got ? got : "-", tok)) fail_msg("%s layer %d pos %d: view %s, mech lens %s", name, l, t, got ? got : "-", tok);
        }
        assert_int_equal(t, v.P);
        lines++;
    }
    assert_int_equal(lines, (v.L + 1) * v.n_pv); // every variable at every layer
    free(out);
    mech_tui_program_deinit(&v);
}

static void test_tui_program_values_equal_cli_lens(void **state) {
    (void)state;
    check_cli_lens(REV, "b d a c");
    check_cli_lens(FRAC, "l h l");
}

// --- keys -----------------------------------------------------------------------

static void test_tui_program_step_layers(void **state) {
    (void)state;
    mech_tui_program v = {0};
    mech_tui_grid g = {0};
    mech_err err = {0};
    char row[128];
    assert_int_equal(mech_tui_program_load(&v, models[REV], &err), MECH_OK);
    assert_int_equal(mech_tui_program_key(&v, ']'), MECH_TUI_NONE); // nothing run yet
    assert_int_equal(mech_tui_program_run(&v, models[REV], "a b c", &err), MECH_OK);
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    assert_int_equal(v.layer, 3);
    assert_int_equal(mech_tui_program_key(&v, ']'), MECH_TUI_NONE); // already the last
    for (int l = 2; l >= 0; l--) {
        assert_int_equal(mech_tui_program_key(&v, '['), MECH_TUI_REDRAW);
        assert_int_equal(v.layer, l);
    }
    assert_int_equal(mech_tui_program_key(&v, '['), MECH_TUI_NONE);
    // layer 0: the embedding; tokens and indices are new, the rest not computed
    mech_tui_program_render(&v, &g, 0, 22);
    assert_true(find_row(&g, 0, "input: a b c   layer 0/3 (the embedding)", row) >= 0);
    int y = find_row(&g, 0, " *tokens", row);
    assert_true(y >= 0);
    assert_non_null(strstr(row, "\"a\" \"b\" \"c\""));
    int x = (int)(strstr(row, "\"a\"") - row);
    assert_int_equal(mech_tui_grid_at(&g, y, x)->role, MECH_TUI_TITLE); // a new value is highlighted
    assert_true(find_row(&g, 0, "  opp      -   -   -", row) >= 0);
    assert_true(find_row(&g, 0, "> reverse  -   -   -", row) >= 0);
    // the blocks not applied yet are dimmed in the layers pane
    y = find_row(&g, 0, " 1 #", row);
    int lw = (int)(strchr(row, '|') - row) + 1;
    y = find_row(&g, lw, "L0 head 0", row);
    assert_int_equal(mech_tui_grid_at(&g, y, lw)->role, MECH_TUI_DIM);
    // two blocks on: opp appears (new), length stays (not new)
    mech_tui_program_key(&v, ']');
    mech_tui_program_key(&v, ']');
    mech_tui_program_render(&v, &g, 0, 22);
    assert_true(find_row(&g, 0, "input: a b c   layer 2/3 (after block 1)", row) >= 0);
    assert_true(find_row(&g, 0, " *opp      2   1   0", row) >= 0);
    assert_true(find_row(&g, 0, "  length   3   3   3", row) >= 0);
    assert_true(find_row(&g, 0, "  tokens   \"a\"", row) >= 0);
    y = find_row(&g, lw, "L0 head 0", row);
    assert_int_equal(mech_tui_grid_at(&g, y, lw)->role, MECH_TUI_TEXT);
    // l / h scroll the positions: the table starts at position 1, then 2
    assert_int_equal(mech_tui_program_key(&v, 'l'), MECH_TUI_REDRAW);
    mech_tui_program_render(&v, &g, 0, 22);
    assert_true(find_row(&g, 0, "  layer 2  1   2", row) >= 0);
    assert_true(find_row(&g, 0, "  tokens   \"b\" \"c\"", row) >= 0);
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_RIGHT), MECH_TUI_REDRAW);
    assert_int_equal(mech_tui_program_key(&v, 'l'), MECH_TUI_NONE); // the last position stays shown
    mech_tui_program_render(&v, &g, 0, 22);
    assert_true(find_row(&g, 0, " *opp      0 ", row) >= 0);
    assert_int_equal(mech_tui_program_key(&v, 'h'), MECH_TUI_REDRAW);
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_LEFT), MECH_TUI_REDRAW);
    assert_int_equal(mech_tui_program_key(&v, 'h'), MECH_TUI_NONE);
    mech_tui_grid_deinit(&g);
    mech_tui_program_deinit(&v);
}

static void test_tui_program_select_by_source_line(void **state) {
    (void)state;
    mech_tui_program v = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_program_load(&v, models[REV], &err), MECH_OK);
    assert_string_equal(v.pv[v.sel].label, "reverse");
    assert_int_equal(v.line_cur, 7);
    // up to line 5 (length = ...), Enter selects length
    mech_tui_program_key(&v, MECH_TUI_KEY_UP);
    mech_tui_program_key(&v, MECH_TUI_KEY_UP);
    mech_tui_program_key(&v, MECH_TUI_KEY_UP);
    assert_int_equal(v.line_cur, 4);
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_ENTER), MECH_TUI_REDRAW);
    assert_string_equal(v.pv[v.sel].label, "length");
    // a line that defines no variable leaves the selection
    mech_tui_program_key(&v, MECH_TUI_KEY_HOME);
    assert_int_equal(v.line_cur, 0);
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_ENTER), MECH_TUI_NONE);
    assert_string_equal(v.pv[v.sel].label, "length");
    mech_tui_program_key(&v, MECH_TUI_KEY_END);
    assert_int_equal(v.line_cur, v.n_lines - 1);
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_DOWN), MECH_TUI_REDRAW);
    assert_int_equal(v.line_cur, v.n_lines - 1);
    // j / k walk the variables and bring the cursor to their lines; built-ins keep it
    mech_tui_program_key(&v, 'j');
    assert_string_equal(v.pv[v.sel].label, "indices");
    assert_int_equal(v.line_cur, v.n_lines - 1);
    mech_tui_program_key(&v, 'j');
    assert_string_equal(v.pv[v.sel].label, "opp");
    assert_int_equal(v.line_cur, 5);
    mech_tui_program_deinit(&v);

    // sort.rasp: `sort = make_sort(...)` assigns sort, written in the def's return line
    assert_int_equal(mech_tui_program_load(&v, models[SORT], &err), MECH_OK);
    int line = -1;
    for (int i = 0; i < v.n_lines; i++)
        if (!strncmp(v.lines[i], "sort = ", 7)) line = i;
    assert_true(line >= 0);
    mech_tui_program_key(&v, 'k');
    assert_string_equal(v.pv[v.sel].label, "target_pos");
    while (v.line_cur < line) mech_tui_program_key(&v, MECH_TUI_KEY_DOWN);
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_ENTER), MECH_TUI_REDRAW);
    assert_string_equal(v.pv[v.sel].label, "sort");
    mech_tui_program_deinit(&v);
}

static void type(mech_tui_program *v, const char *s) {
    for (; *s; s++) assert_int_equal(mech_tui_program_key(v, *s), MECH_TUI_REDRAW);
}

static void test_tui_program_input_editor(void **state) {
    (void)state;
    mech_tui_program v = {0};
    mech_tui_grid g = {0};
    mech_err err = {0};
    char row[128];
    assert_int_equal(mech_tui_program_load(&v, models[REV], &err), MECH_OK);
    assert_int_equal(mech_tui_program_run(&v, models[REV], "a b c", &err), MECH_OK);
    assert_int_equal(mech_tui_grid_resize(&g, 22, 80), MECH_OK);
    mech_tui_program_key(&v, '[');
    assert_int_equal(mech_tui_program_key(&v, 'i'), MECH_TUI_REDRAW);
    assert_true(v.editing);
    type(&v, "d aa");
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_BACKSPACE), MECH_TUI_REDRAW);
    mech_tui_program_render(&v, &g, 0, 22);
    assert_true(find_row(&g, 0, "input> d a_", row) == 21);
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_ENTER), MECH_TUI_REDRAW);
    assert_false(v.editing);
    assert_string_equal(v.input, "d a");
    assert_int_equal(v.P, 2);
    assert_int_equal(v.layer, 3); // a new run shows the last layer
    int r = var_index(&v, "reverse");
    assert_string_equal(val_at(&v, 3, r, 0), "\"a\"");
    assert_string_equal(val_at(&v, 3, r, 1), "\"d\"");
    // a token outside the vocab: the error shows, the editor stays, the run is kept
    mech_tui_program_key(&v, 'i');
    type(&v, "a x");
    mech_tui_program_key(&v, MECH_TUI_KEY_ENTER);
    assert_true(v.editing);
    assert_non_null(strstr(v.error, "'x'"));
    assert_int_equal(strncmp(v.error, "input token 'x'", 15), 0); // the bottom row is short: no path
    assert_null(strchr(v.error, '\n'));
    assert_string_equal(v.input, "d a");
    assert_int_equal(v.P, 2);
    mech_tui_program_render(&v, &g, 0, 22);
    mech_tui_grid_row_text(&g, 21, row);
    assert_non_null(strstr(row, "error:"));
    assert_int_equal(mech_tui_grid_at(&g, 21, (int)(strstr(row, "error:") - row))->role, MECH_TUI_ERROR);
    // too long for max_seq_len, and empty
    for (int i = 0; i < 3; i++) mech_tui_program_key(&v, MECH_TUI_KEY_BACKSPACE);
    type(&v, "a a a a a a");
    v.error[0] = 0;
    mech_tui_program_key(&v, MECH_TUI_KEY_ENTER);
    assert_true(v.error[0] != 0);
    for (int i = 0; i < 20; i++) mech_tui_program_key(&v, MECH_TUI_KEY_BACKSPACE);
    v.error[0] = 0;
    mech_tui_program_key(&v, MECH_TUI_KEY_ENTER);
    assert_non_null(strstr(v.error, "empty"));
    // Esc leaves the editor without running
    assert_int_equal(mech_tui_program_key(&v, MECH_TUI_KEY_ESC), MECH_TUI_REDRAW);
    assert_false(v.editing);
    assert_string_equal(v.input, "d a");
    mech_tui_grid_deinit(&g);
    mech_tui_program_deinit(&v);
}

static void test_tui_program_not_compiled(void **state) {
    (void)state;
    char *out = NULL;
    const char *tiny = mech_test_tmpn("tui_prog_tiny.safetensors");
    if (mech_test_cli(&out, NULL, "init -o %s", tiny)) fail_msg("mech init: %s", out);
    free(out);
    mech_model *m = NULL;
    mech_err err = {0};
    assert_int_equal(mech_model_load(tiny, &m, &err), MECH_OK);
    mech_tui_program v = {0};
    assert_int_equal(mech_tui_program_load(&v, m, &err), MECH_ERR_ARG);
    assert_non_null(strstr(err.msg, "not a compiled RASP model"));
    assert_null(v.prog);
    mech_tui_program_deinit(&v);
    mech_model_free(m);
    unlink(tiny);
}

// --- in the application ---------------------------------------------------------

static void test_tui_program_app_keys(void **state) {
    (void)state;
    mech_tui_app app = {0};
    mech_tui_grid g = {0};
    mech_err err = {0};
    char row[128];
    app.has_attn = 1, app.view = MECH_TUI_VIEW_HEAD;
    // without a compiled model there is no program view
    for (int i = 0; i < 2 * MECH_TUI_VIEW_COUNT_; i++) {
        mech_tui_app_key(&app, MECH_TUI_KEY_TAB);
        assert_int_not_equal(app.view, MECH_TUI_VIEW_PROGRAM);
    }
    app.view = MECH_TUI_VIEW_HEAD;
    mech_tui_app_key(&app, 'P');
    assert_int_not_equal(app.view, MECH_TUI_VIEW_PROGRAM);
    app.view = MECH_TUI_VIEW_HEAD;
    assert_int_equal(mech_tui_program_load(&app.program, models[REV], &err), MECH_OK);
    assert_int_equal(mech_tui_program_run(&app.program, models[REV], "a b", &err), MECH_OK);
    app.has_program = 1;
    assert_int_equal(mech_tui_app_key(&app, 'P'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_PROGRAM);
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_REDRAW);
    assert_int_equal(app.view, MECH_TUI_VIEW_HEAD);
    int seen = 0;
    for (int i = 0; i < MECH_TUI_VIEW_COUNT_ && !seen; i++) {
        mech_tui_app_key(&app, MECH_TUI_KEY_TAB);
        seen = app.view == MECH_TUI_VIEW_PROGRAM;
    }
    assert_true(seen);
    // the editor takes q, ? and Tab as text
    mech_tui_app_key(&app, 'i');
    mech_tui_app_key(&app, 'q');
    mech_tui_app_key(&app, '?');
    assert_int_equal(app.view, MECH_TUI_VIEW_PROGRAM);
    assert_false(app.help);
    assert_string_equal(app.program.edit, "q?");
    mech_tui_app_key(&app, MECH_TUI_KEY_ESC);
    // the footer and the help come from the key table
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_app_render(&app, &g);
    mech_tui_grid_row_text(&g, 23, row);
    assert_non_null(strstr(row, "][ layer"));
    assert_non_null(strstr(row, "i input"));
    mech_tui_app_key(&app, '?');
    mech_tui_app_render(&app, &g);
    char *s = grid_text(&g);
    assert_non_null(strstr(s, "type another input"));
    assert_non_null(strstr(s, "keys: program view"));
    free(s);
    mech_tui_app_key(&app, 'x'); // closes the help
    // q in the program view goes back to the head view; without one it quits
    app.has_attn = 0;
    assert_int_equal(mech_tui_app_key(&app, 'q'), MECH_TUI_QUIT);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// Small and odd windows: nothing is written outside the grid, the title is
// cut, not wrapped.
static void test_tui_program_small_windows(void **state) {
    (void)state;
    mech_tui_program v = {0};
    mech_err err = {0};
    assert_int_equal(mech_tui_program_load(&v, models[SORT], &err), MECH_OK);
    assert_int_equal(mech_tui_program_run(&v, models[SORT], "4 3 2 1 1", &err), MECH_OK);
    static const int sizes[][2] = {{22, 80}, {10, 40}, {5, 30}, {3, 20}, {1, 10}, {2, 1}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        mech_tui_grid g = {0};
        assert_int_equal(mech_tui_grid_resize(&g, sizes[i][0], sizes[i][1]), MECH_OK);
        mech_tui_program_render(&v, &g, 0, g.h);
        mech_tui_program_key(&v, 'j');
        mech_tui_program_key(&v, MECH_TUI_KEY_PGDN);
        mech_tui_program_render(&v, &g, 0, g.h);
        char row[128];
        mech_tui_grid_row_text(&g, 0, row);
        assert_int_equal((int)strlen(row), g.w);
        if (g.w >= 10) assert_int_equal(strncmp(row, "input: 4 3", g.w < 10 ? g.w : 10), 0);
        mech_tui_grid_deinit(&g);
    }
    mech_tui_program_deinit(&v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_program_layout_matches_metadata),
        cmocka_unit_test(test_tui_program_render_layers_and_selection),
        cmocka_unit_test(test_tui_program_values_reverse),
        cmocka_unit_test(test_tui_program_values_hist),
        cmocka_unit_test(test_tui_program_values_sort),
        cmocka_unit_test(test_tui_program_values_frac_prevs),
        cmocka_unit_test(test_tui_program_values_equal_cli_lens),
        cmocka_unit_test(test_tui_program_step_layers),
        cmocka_unit_test(test_tui_program_select_by_source_line),
        cmocka_unit_test(test_tui_program_input_editor),
        cmocka_unit_test(test_tui_program_not_compiled),
        cmocka_unit_test(test_tui_program_app_keys),
        cmocka_unit_test(test_tui_program_small_windows),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
