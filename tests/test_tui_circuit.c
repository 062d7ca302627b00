/*
** tests/test_tui_circuit.c: the layered graph layout (tui/graph_layout.c)
** and the circuit view (tui/view_circuit.c) without a terminal. The layout
** on synthetic graphs: nodes on their rank's row, no overlaps, every edge a
** connected path from its source box to its target box, crossings removed
** where possible, the width respected. The view on a database written by
** the real mech binary (compiled reverse, ACDC under zero ablation, and a
** small sweep), checked against SQL queries of the stored rows: the kept
** edges, the truth marks and counts, the edge set after every trial, the
** sweep's member runs; and on the screen grid: every kept edge drawn.
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

static char db[600], db2[600];
static const char *qdb = db; // the database the SQL helpers read

static int setup(void **state) {
    (void)state;
    char rev[600], *out = NULL;
    snprintf(rev, sizeof rev, "%s", mech_test_tmpn("circ_rev.safetensors"));
    snprintf(db, sizeof db, "%s", mech_test_tmpn("circ.db"));
    mech_test_rm_db(db);
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev)) fail_msg("mech compile: %s", out);
    free(out);
    // run 1: the circuit found exactly; runs 2..5: a sweep whose tau 0.2 run misses edges
    if (mech_test_cli(&out, NULL, "acdc --model %s --dataset compiled --n 20 --tau 1e-3 --ablation zero --db %s", rev, db))
        fail_msg("mech acdc: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "acdc --model %s --dataset compiled --n 20 --sweep --taus 1e-4,0.2 --ablations zero,resample --db %s",
                      rev, db))
        fail_msg("mech acdc --sweep: %s", out);
    free(out);
    remove(rev);
    // a GPT-2-shaped model: 4 heads a layer, MLPs, one embedding, no truth
    snprintf(db2, sizeof db2, "%s", mech_test_tmpn("circ_tiny.db"));
    mech_test_rm_db(db2);
    if (mech_test_cli(&out, NULL, "acdc --model tests/fixtures/gpt2-tiny --dataset induction --n 4 --len 6 --tau 1e-4 --db %s", db2))
        fail_msg("mech acdc (gpt2-tiny): %s", out);
    free(out);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mech_test_rm_db(db);
    mech_test_rm_db(db2);
    return 0;
}

// --- The layout -------------------------------------------------------------

static int path_ok(const mech_tui_layout *l, int k) {
    const mech_tui_ledge *e = &l->edges[k];
    const mech_tui_lnode *a = &l->nodes[e->from], *b = &l->nodes[e->to];
    if (e->n < 1) return 0;
    int y, x, py, px;
    mech_tui_layout_cell(l, e, 0, &y, &x);
    if (y != a->y - 1 || x < a->x || x >= a->x + a->w) return 0;
    for (int i = 1; i < e->n; i++) {
        py = y, px = x;
        mech_tui_layout_cell(l, e, i, &y, &x);
        if (abs(y - py) > 1 || abs(x - px) > 1 || (y == py && x == px)) return 0;
        if (y < 0 || y >= l->h || x < 0 || x >= l->w) return 0;
    }
    return y == b->y + 1 && x == mech_tui_layout_port_x(b, e->port) && x >= b->x && x < b->x + b->w;
}

static void assert_no_overlap(const mech_tui_layout *l) {
    for (int i = 0; i < l->n_nodes; i++) {
        const mech_tui_lnode *a = &l->nodes[i];
        assert_true(a->x >= 0 && a->x + a->w <= l->w);
        for (int j = i + 1; j < l->n_nodes; j++) {
            const mech_tui_lnode *b = &l->nodes[j];
            if (a->y != b->y) continue;
            if (!(a->x + a->w < b->x + 1 || b->x + b->w < a->x + 1)) fail_msg("nodes %d and %d overlap", i, j);
        }
    }
}

// Nodes on their rank's row (rank 0 at the bottom), every edge a connected
// path between its boxes, on a canvas of the width asked for.
static void test_tui_circuit_layout_paths(void **state) {
    (void)state;
    mech_tui_layout l = {0};
    // 5 ranks: two sources, three heads, an mlp, the output; long edges skip ranks
    int rank[] = {0, 0, 1, 1, 1, 2, 3, 4};
    int w[] = {5, 5, 6, 6, 6, 4, 4, 5};
    for (int i = 0; i < 8; i++) assert_int_equal(mech_tui_layout_add_node(&l, rank[i], w[i]), i);
    int edges[][3] = {{0, 2, 0}, {1, 2, 1}, {0, 3, 2}, {1, 4, 0}, {2, 5, -1}, {3, 6, -1}, {0, 7, -1},
                      {4, 7, -1}, {5, 6, -1}, {6, 7, -1}, {1, 6, -1}, {2, 7, -1}};
    int ne = (int)(sizeof edges / sizeof edges[0]);
    for (int k = 0; k < ne; k++) assert_int_equal(mech_tui_layout_add_edge(&l, edges[k][0], edges[k][1], edges[k][2]), k);
    assert_int_equal(mech_tui_layout_add_edge(&l, 5, 2, -1), -1); // downwards: refused
    assert_int_equal(mech_tui_layout_run(&l, 60, 40), MECH_OK);
    assert_int_equal(l.w, 60);
    assert_int_equal(l.gap, 3); // (40 - 5) / 4 = 8, at most 3
    assert_int_equal(l.h, 5 + 4 * 3);
    for (int i = 0; i < 8; i++) assert_int_equal(l.nodes[i].y, (4 - rank[i]) * 4);
    assert_no_overlap(&l);
    for (int k = 0; k < ne; k++)
        if (!path_ok(&l, k)) fail_msg("edge %d (%d -> %d) is not a path between its boxes", k, edges[k][0], edges[k][1]);
    // glyphs: line characters only
    for (int k = 0; k < ne; k++)
        for (int i = 0; i < l.edges[k].n; i++) assert_non_null(strchr("|-/\\+", mech_tui_layout_glyph(&l, &l.edges[k], i)));
    // a small height: one gap row, still connected
    assert_int_equal(mech_tui_layout_run(&l, 60, 6), MECH_OK);
    assert_int_equal(l.gap, 1);
    assert_int_equal(l.h, 9);
    for (int k = 0; k < ne; k++) assert_true(path_ok(&l, k));
    mech_tui_layout_deinit(&l);
}

// A straight edge is a column of |; a one-column shift a single / or \.
static void test_tui_circuit_layout_glyphs(void **state) {
    (void)state;
    mech_tui_layout l = {0};
    mech_tui_layout_add_node(&l, 0, 3);
    mech_tui_layout_add_node(&l, 1, 3);
    mech_tui_layout_add_edge(&l, 0, 1, -1);
    assert_int_equal(mech_tui_layout_run(&l, 20, 5), MECH_OK);
    const mech_tui_ledge *e = &l.edges[0];
    assert_int_equal(l.nodes[0].x, l.nodes[1].x); // pulled into one column
    assert_int_equal(e->n, l.gap);
    for (int i = 0; i < e->n; i++) assert_int_equal(mech_tui_layout_glyph(&l, e, i), '|');
    mech_tui_layout_deinit(&l);
}

// Barycentre ordering removes the crossing of a0 -> b1, a1 -> b0.
static void test_tui_circuit_layout_crossings(void **state) {
    (void)state;
    mech_tui_layout l = {0};
    for (int i = 0; i < 3; i++) mech_tui_layout_add_node(&l, 0, 4); // a0 a1 a2
    for (int i = 0; i < 3; i++) mech_tui_layout_add_node(&l, 1, 4); // b0 b1 b2
    mech_tui_layout_add_edge(&l, 0, 5, -1);
    mech_tui_layout_add_edge(&l, 1, 4, -1);
    mech_tui_layout_add_edge(&l, 2, 3, -1);
    assert_int_equal(mech_tui_layout_run(&l, 40, 10), MECH_OK);
    // ordered alike: a_i left of a_j iff its target is left of a_j's
    int tgt[3] = {5, 4, 3};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            if (i != j) assert_int_equal(l.nodes[i].x < l.nodes[j].x, l.nodes[tgt[i]].x < l.nodes[tgt[j]].x);
    mech_tui_layout_deinit(&l);
}

// A rank wider than the width asked for widens the canvas; nothing overlaps.
static void test_tui_circuit_layout_wide(void **state) {
    (void)state;
    mech_tui_layout l = {0};
    for (int i = 0; i < 30; i++) mech_tui_layout_add_node(&l, 1, 8);
    int src = mech_tui_layout_add_node(&l, 0, 5);
    for (int i = 0; i < 30; i++) mech_tui_layout_add_edge(&l, src, i, i % 3);
    assert_int_equal(mech_tui_layout_run(&l, 80, 24), MECH_OK);
    assert_true(l.w >= 30 * 9);
    assert_no_overlap(&l);
    for (int k = 0; k < 30; k++) assert_true(path_ok(&l, k));
    mech_tui_layout_deinit(&l);
}

// --- The view on stored runs -------------------------------------------------

// The full name of graph edge e, as stored in `site`.
static void site_of(const mech_tui_circuit *c, int e, char *out, size_t cap) {
    const mech_acdc_graph *g = c->g;
    snprintf(out, cap, "%s->%s", g->nodes[g->edges[e].sender].name, g->nodes[g->edges[e].receiver].name);
}

// Does the newline-separated SQL output rows hold the line s?
static int has_line(const char *rows, const char *s) {
    size_t n = strlen(s);
    for (const char *p = rows; (p = strstr(p, s)); p++)
        if ((p == rows || p[-1] == '\n') && (p[n] == '\n' || p[n] == 0)) return 1;
    return 0;
}

static int count_lines(const char *rows) {
    int n = 0;
    for (const char *p = rows; *p; p++) n += *p == '\n';
    return n;
}

static int sql_int(const char *sql) {
    char *r = mech_test_sql_rows(qdb, sql);
    int v = atoi(r);
    free(r);
    return v;
}

// The counted edges whose flag is set, compared with the rows of an SQL query of sites.
static void assert_edges_equal(const mech_tui_circuit *c, const uint8_t *flag, const char *sql) {
    char *rows = mech_test_sql_rows(qdb, sql), site[200];
    int n = 0;
    for (int e = 0; e < c->g->n_edges; e++) {
        if (c->g->edges[e].type == MECH_ACDC_PLACEHOLDER || !flag[e]) continue;
        site_of(c, e, site, sizeof site);
        if (!has_line(rows, site)) fail_msg("%s: edge %s is not in the query's rows", sql, site);
        n++;
    }
    assert_int_equal(n, count_lines(rows));
    free(rows);
}

static void test_tui_circuit_load_kept_truth(void **state) {
    (void)state;
    mech_tui_circuit c = {0};
    mech_err err = {0};
    if (mech_tui_circuit_load(db, 1, &c, &err)) fail_msg("%s", err.msg);
    assert_non_null(c.g);
    assert_true(c.finished && c.has_truth);
    assert_edges_equal(&c, c.kept, "select site from results where run_id=1 and metric='kept'");
    assert_edges_equal(&c, c.truth, "select site from results where run_id=1 and metric='truth'");
    assert_int_equal(c.n_trials, sql_int("select count(distinct item) from results where run_id=1 and item >= 0"));
    assert_int_equal(c.n_counted, sql_int("select value from results where run_id=1 and metric='n_counted'"));
    // the list: kept edges by |effect|, largest first, with the stored effects
    char *rows = mech_test_sql_rows(db, "select site, value from results where run_id=1 and metric='kept' order by abs(value) desc");
    assert_int_equal(c.n_list, count_lines(rows));
    const char *p = rows;
    for (int i = 0; i < c.n_list; i++) {
        const char *bar = strchr(p, '|');
        double v = atof(bar + 1);
        assert_true(fabs(fabs(c.effect[c.list[i]]) - fabs(v)) < 1e-12);
        p = strchr(p, '\n') + 1;
    }
    free(rows);
    // not an ACDC run: refused
    mech_tui_circuit d = {0};
    assert_int_equal(mech_tui_circuit_load(db, 99, &d, &err), MECH_ERR_RANGE);
    mech_tui_circuit_deinit(&d);
    // the app opens such a run with its error as the title
    mech_tui_app app = {0};
    app.db_path = db;
    mech_tui_app_open_run(&app, 99, "acdc");
    assert_int_equal(app.view, MECH_TUI_VIEW_CIRCUIT);
    assert_non_null(strstr(app.circuit.title, "run 99: cannot read it"));
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_app_render(&app, &g); // the title only, nothing else to draw
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
    mech_tui_circuit_deinit(&c);
}

// The edge set after trial i, against the stored trials: removed ones gone,
// kept ones and untried ones present; after the last, the stored circuit.
static void check_replay(void) {
    mech_tui_circuit c = {0};
    mech_err err = {0};
    if (mech_tui_circuit_load(qdb, 1, &c, &err)) fail_msg("%s", err.msg);
    char *rows = mech_test_sql_rows(qdb,
        "select item, site, max(case metric when 'removed' then value end) from results "
        "where run_id=1 and item >= 0 group by item order by item");
    int n = count_lines(rows);
    assert_int_equal(n, c.n_trials);
    char (*site)[200] = calloc((size_t)n, sizeof *site);
    int *removed = calloc((size_t)n, sizeof *removed);
    const char *p = rows;
    for (int i = 0; i < n; i++) {
        // item|site|removed
        const char *a = strchr(p, '|') + 1, *nl = strchr(p, '\n'), *b = nl;
        while (*b != '|') b--;
        snprintf(site[i], sizeof site[i], "%.*s", (int)(b - a), a);
        removed[i] = atof(b + 1) != 0;
        p = nl + 1;
    }
    char name[200];
    for (int pos = 0; pos <= n; pos++) {
        assert_int_equal(mech_tui_circuit_replay(&c, pos), MECH_OK);
        for (int t = 0; t < n; t++) {
            int e = -1;
            for (int k = 0; k < c.g->n_edges && e < 0; k++) {
                site_of(&c, k, name, sizeof name);
                if (!strcmp(name, site[t])) e = k;
            }
            assert_true(e >= 0);
            // tried: its decision; not yet tried: still there
            int want = t < pos ? !removed[t] : 1;
            if (c.state[e] != want) fail_msg("after %d trials: %s (trial %d) present %d, want %d", pos, site[t], t + 1, c.state[e], want);
        }
    }
    // after every trial: exactly the stored circuit
    assert_int_equal(mech_tui_circuit_replay(&c, n), MECH_OK);
    assert_edges_equal(&c, c.state, "select site from results where run_id=1 and metric='kept'");
    // before any: every counted edge
    assert_int_equal(mech_tui_circuit_replay(&c, 0), MECH_OK);
    int all = 0;
    for (int e = 0; e < c.g->n_edges; e++) all += c.state[e] && c.g->edges[e].type != MECH_ACDC_PLACEHOLDER;
    assert_int_equal(all, sql_int("select value from results where run_id=1 and metric='n_counted'"));
    assert_true(n >= 3);
    // the keys: n enters at trial 1, G the last, , one back, g the first
    assert_int_equal(mech_tui_circuit_key(&c, 'n'), MECH_TUI_REDRAW);
    assert_true(c.trial_mode);
    assert_int_equal(c.pos, 1);
    mech_tui_circuit_key(&c, '.');
    assert_int_equal(c.pos, 2);
    mech_tui_circuit_key(&c, 'G');
    assert_int_equal(c.pos, n);
    mech_tui_circuit_key(&c, ',');
    assert_int_equal(c.pos, n - 1);
    mech_tui_circuit_key(&c, 'N');
    assert_int_equal(c.pos, n - 2);
    mech_tui_circuit_key(&c, 'g');
    assert_int_equal(c.pos, 1);
    assert_int_equal(c.state[c.trials[0].edge], !removed[0]);
    assert_int_equal(mech_tui_circuit_key(&c, MECH_TUI_KEY_ESC), MECH_TUI_REDRAW); // leaves trial mode
    assert_false(c.trial_mode);
    assert_int_equal(mech_tui_circuit_key(&c, MECH_TUI_KEY_ESC), MECH_TUI_QUIT);
    free(site), free(removed), free(rows);
    mech_tui_circuit_deinit(&c);
}

static void test_tui_circuit_trials_replay(void **state) {
    (void)state;
    qdb = db;
    check_replay();
}

// Four heads a layer: the search's head order and the heads it drops
// untried (nothing reads them) replay to the stored circuit too.
static void test_tui_circuit_trials_replay_heads(void **state) {
    (void)state;
    qdb = db2;
    check_replay();
    qdb = db;
}

// Renders the app at w x h with run id open; returns the screen as text (owned).
static char *render_app(mech_tui_app *app, mech_tui_grid *g, int w, int h) {
    assert_int_equal(mech_tui_grid_resize(g, h, w), MECH_OK);
    mech_tui_app_render(app, g);
    char *text = calloc((size_t)h * (w + 1) + 1, 1), *p = text;
    for (int y = 0; y < h; y++) {
        mech_tui_grid_row_text(g, y, p);
        p += strlen(p);
        *p++ = '\n';
    }
    return text;
}

// Every kept ADDITION edge is a line of the layout whose cells the screen
// shows as line glyphs, between the boxes of its components; every DIRECT
// edge is its port letter under the head's box; at 80 x 24 it all fits.
static void check_drawn(mech_tui_app *app, int w, int h) {
    mech_tui_grid g = {0};
    char *text = render_app(app, &g, w, h);
    mech_tui_circuit *c = &app->circuit;
    const mech_tui_layout *l = &c->lay;
    int pane_w = c->lay_key_w, pane_h = c->lay_key_h;
    assert_true(pane_w > 0 && pane_w < w);
    assert_true(l->w <= pane_w && l->h <= pane_h); // reverse fits without scrolling
    assert_no_overlap(l);
    int ox = -(pane_w - l->w) / 2, y0 = 1 + 3;
    int kept_add = 0, drawn = 0;
    for (int e = 0; e < c->g->n_edges; e++) kept_add += c->kept[e] && c->g->edges[e].type == MECH_ACDC_ADDITION;
    for (int k = 0; k < l->n_edges; k++) {
        int e = c->lay_edge[k];
        if (!c->kept[e]) continue;
        drawn++;
        assert_true(path_ok(l, k));
        for (int i = 0; i < l->edges[k].n; i++) {
            int y, x;
            mech_tui_layout_cell(l, &l->edges[k], i, &y, &x);
            char ch = mech_tui_grid_at(&g, y0 + y, x - ox)->ch;
            if (!strchr("|-/\\+qkv", ch)) fail_msg("edge %d cell %d (%d,%d) shows '%c'", e, i, y, x, ch);
        }
    }
    assert_int_equal(drawn, kept_add);
    for (int e = 0; e < c->g->n_edges; e++) {
        if (!c->kept[e] || c->g->edges[e].type != MECH_ACDC_DIRECT) continue;
        const mech_acdc_node *r = &c->g->nodes[c->g->edges[e].receiver];
        char lab[16];
        snprintf(lab, sizeof lab, "[L%dH%d]", r->layer, r->head);
        const char *at = NULL;
        // the box's row, then the letter under the port
        for (int y = y0; y < h && !at; y++) {
            char row[300];
            mech_tui_grid_row_text(&g, y, row);
            char *b = strstr(row, lab);
            if (!b) continue;
            at = b;
            int bx = (int)(b - row), port = r->kind == MECH_ACDC_Q ? 0 : r->kind == MECH_ACDC_K ? 1 : 2;
            mech_tui_lnode nd = {.x = bx, .w = (int)strlen(lab)};
            assert_int_equal(mech_tui_grid_at(&g, y + 1, mech_tui_layout_port_x(&nd, port))->ch, "qkv"[port]);
        }
        assert_non_null(at);
    }
    free(text);
    mech_tui_grid_deinit(&g);
}

static void test_tui_circuit_render_80x24(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.db_path = db;
    app.has_runs = 1;
    mech_tui_app_open_run(&app, 1, "acdc");
    assert_int_equal(app.view, MECH_TUI_VIEW_CIRCUIT);
    check_drawn(&app, 80, 24);
    check_drawn(&app, 160, 50);
    // the screen: title, counts from SQL, the boxes
    mech_tui_grid g = {0};
    char *text = render_app(&app, &g, 80, 24), line[200];
    snprintf(line, sizeof line, "%d of %d edges kept", sql_int("select count(*) from results where run_id=1 and metric='kept'"),
             sql_int("select value from results where run_id=1 and metric='n_counted'"));
    assert_non_null(strstr(text, line));
    char *tpr = mech_test_sql_rows(db, "select printf('TPR %.3f  FPR %.4f', "
                                       "(select value from results where run_id=1 and metric='tpr'), "
                                       "(select value from results where run_id=1 and metric='fpr'))");
    tpr[strcspn(tpr, "\n")] = 0;
    assert_non_null(strstr(text, tpr));
    free(tpr);
    for (const char *box = "[tok]\0[pos]\0[L0H0]\0[M0]\0[M1]\0[L2H0]\0[out]\0"; *box; box += strlen(box) + 1)
        if (!strstr(text, box)) fail_msg("no %s on the screen:\n%s", box, text);
    // the cursor's edge is named in full on the line above the panes
    char site[200];
    site_of(&app.circuit, app.circuit.list[0], site, sizeof site);
    assert_non_null(strstr(text, site));
    mech_tui_app_key(&app, 'j');
    free(text);
    text = render_app(&app, &g, 80, 24);
    site_of(&app.circuit, app.circuit.list[1], site, sizeof site);
    assert_non_null(strstr(text, site));
    // hidden unused nodes: M2 and L1H0 carry no kept edge
    assert_non_null(strstr(text, "[M2]"));
    mech_tui_app_key(&app, 'u');
    free(text);
    text = render_app(&app, &g, 80, 24);
    assert_null(strstr(text, "[M2]"));
    assert_null(strstr(text, "[L1H0]"));
    assert_non_null(strstr(text, "[L2H0]"));
    // q goes back to the runs list
    mech_tui_app_key(&app, 'q');
    assert_int_equal(app.view, MECH_TUI_VIEW_RUNS);
    free(text);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// Missing and extra edges: counts and marks against SQL set differences.
static void test_tui_circuit_truth_marks(void **state) {
    (void)state;
    // the zero-ablation run of the sweep at tau 0.2 misses truth edges
    int run = sql_int("select value from results where run_id=2 and metric='run' and site='zero' and item=1");
    int missing, extra;
    char sql[400];
    snprintf(sql, sizeof sql, "select count(*) from (select site from results where run_id=%d and metric='truth' "
                              "except select site from results where run_id=%d and metric='kept')", run, run);
    missing = sql_int(sql);
    snprintf(sql, sizeof sql, "select count(*) from (select site from results where run_id=%d and metric='kept' "
                              "except select site from results where run_id=%d and metric='truth')", run, run);
    extra = sql_int(sql);
    assert_true(missing > 0);
    mech_tui_app app = {0};
    app.db_path = db;
    mech_tui_app_open_run(&app, run, "acdc");
    mech_tui_grid g = {0};
    char *text = render_app(&app, &g, 100, 30), want[200];
    snprintf(sql, sizeof sql, "select count(*) from results where run_id=%d and metric='kept'", run);
    int kept = sql_int(sql);
    snprintf(want, sizeof want, "%d edges: %d hit  %d missing  %d extra", kept, kept - extra, missing, extra);
    if (!strstr(text, want)) fail_msg("want '%s' in:\n%s", want, text);
    // one list row per missing edge, marked MISS; missing lines are dotted
    int miss_rows = 0;
    for (const char *p = text; (p = strstr(p, "MISS  ")); p++) miss_rows++;
    assert_true(miss_rows >= (missing < 20 ? missing : 20) - 6); // the list may scroll
    assert_int_equal(app.circuit.n_list, kept + missing);
    assert_true(strchr(text, ':') != NULL);
    // trial 0: every counted edge present, all but the truth extra
    mech_tui_circuit_replay(&app.circuit, 0);
    app.circuit.trial_mode = 1, app.circuit.pos = 0;
    free(text);
    text = render_app(&app, &g, 100, 30);
    snprintf(sql, sizeof sql, "select value from results where run_id=%d and metric='n_counted'", run);
    int counted = sql_int(sql);
    snprintf(sql, sizeof sql, "select count(*) from results where run_id=%d and metric='truth'", run);
    int truth = sql_int(sql);
    snprintf(want, sizeof want, "now %d edges: %d hit  0 missing  %d extra", counted, truth, counted - truth);
    if (!strstr(text, want)) fail_msg("want '%s' in:\n%s", want, text);
    assert_non_null(strchr(text, '!')); // extra lines
    free(text);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// A sweep opens on its first member run; ] and [ step through the rest.
static void test_tui_circuit_sweep(void **state) {
    (void)state;
    mech_tui_app app = {0};
    app.db_path = db;
    mech_tui_app_open_run(&app, 2, "acdc-sweep");
    mech_tui_circuit *c = &app.circuit;
    assert_int_equal(app.view, MECH_TUI_VIEW_CIRCUIT);
    char *runs = mech_test_sql_rows(db, "select value from results where run_id=2 and metric='run' order by rowid");
    assert_int_equal(c->n_members, count_lines(runs));
    const char *p = runs;
    mech_tui_grid g = {0};
    for (int m = 0; m < c->n_members; m++) {
        int want = atoi(p);
        p = strchr(p, '\n') + 1;
        assert_int_equal(c->member, m);
        assert_int_equal((int)c->id, want);
        char sql[300], line[100];
        snprintf(sql, sizeof sql, "select count(*) from results where run_id=%d and metric='kept'", want);
        int kept = 0;
        for (int e = 0; e < c->g->n_edges; e++) kept += c->kept[e];
        assert_int_equal(kept, sql_int(sql));
        char *text = render_app(&app, &g, 80, 24);
        snprintf(line, sizeof line, "run %d  acdc", want);
        assert_non_null(strstr(text, line));
        char *auc = mech_test_sql_rows(db, "select printf('AUC %s %.3f', site, value) from results where run_id=2 and metric='auc'");
        auc[strcspn(auc, "\n")] = 0;
        assert_non_null(strstr(text, auc));
        free(auc);
        free(text);
        mech_tui_app_key(&app, ']');
    }
    assert_int_equal(c->member, c->n_members - 1); // stays on the last
    mech_tui_app_key(&app, '[');
    assert_int_equal(c->member, c->n_members - 2);
    free(runs);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
}

// Without a truth: one embedding, no marks, every kept edge drawn.
static void test_tui_circuit_no_truth(void **state) {
    (void)state;
    qdb = db2;
    mech_tui_app app = {0};
    app.db_path = db2;
    mech_tui_app_open_run(&app, 1, "acdc");
    assert_false(app.circuit.has_truth);
    assert_edges_equal(&app.circuit, app.circuit.kept, "select site from results where run_id=1 and metric='kept'");
    check_drawn(&app, 80, 24);
    mech_tui_grid g = {0};
    char *text = render_app(&app, &g, 80, 24), want[100];
    snprintf(want, sizeof want, "%d edges (no ground truth", sql_int("select count(*) from results where run_id=1 and metric='kept'"));
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "[embed]"));
    assert_non_null(strstr(text, "[L1H3]"));
    assert_null(strstr(text, "MISS"));
    assert_null(strstr(text, "EXTRA"));
    free(text);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
    qdb = db;
}


// An eap run (mech eap) opens in the same view: its kept and truth edges as
// stored, each edge's score in the list, no trials.
static void test_tui_circuit_eap_run(void **state) {
    (void)state;
    const char *edb = mech_test_tmpn("circuit_eap.db");
    mech_test_rm_db(edb);
    const char *rev = mech_test_tmpn("circ_eap_rev.safetensors");
    char *out = NULL;
    if (mech_test_cli(&out, NULL, "compile examples/rasp/reverse.rasp -o %s", rev)) fail_msg("mech compile: %s", out);
    free(out);
    if (mech_test_cli(&out, NULL, "eap --model %s --dataset compiled --n 20 --top-n 10 --db %s", rev, edb))
        fail_msg("mech eap: %s", out);
    free(out);
    remove(rev);
    const char *saved = qdb;
    qdb = edb;
    mech_tui_circuit c = {0};
    mech_err err = {0};
    if (mech_tui_circuit_load(edb, 1, &c, &err)) fail_msg("%s", err.msg);
    assert_true(c.finished && c.has_truth);
    assert_int_equal(c.n_trials, 0);
    assert_non_null(strstr(c.title, "eap"));
    assert_edges_equal(&c, c.kept, "select site from results where run_id=1 and metric='kept'");
    assert_edges_equal(&c, c.truth, "select site from results where run_id=1 and metric='truth'");
    // each listed edge shows its stored score
    for (int i = 0; i < c.n_list; i++) {
        char sql[400];
        char site[200];
        site_of(&c, c.list[i], site, sizeof site);
        snprintf(sql, sizeof sql, "select value from results where run_id=1 and metric='score' and site='%s'", site);
        char *r = mech_test_sql_rows(edb, sql);
        if (*r) assert_true(fabs(c.effect[c.list[i]] - atof(r)) < 1e-9);
        free(r);
    }
    mech_tui_app app = {0};
    app.db_path = edb;
    mech_tui_app_open_run(&app, 1, "eap");
    assert_int_equal(app.view, MECH_TUI_VIEW_CIRCUIT);
    mech_tui_grid g = {0};
    assert_int_equal(mech_tui_grid_resize(&g, 24, 80), MECH_OK);
    mech_tui_app_render(&app, &g);
    mech_tui_app_key(&app, 'n'); // no trials to step through: nothing breaks
    mech_tui_app_render(&app, &g);
    mech_tui_grid_deinit(&g);
    mech_tui_app_deinit(&app);
    mech_tui_circuit_deinit(&c);
    qdb = saved;
    mech_test_rm_db(edb);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tui_circuit_layout_paths),
        cmocka_unit_test(test_tui_circuit_layout_glyphs),
        cmocka_unit_test(test_tui_circuit_layout_crossings),
        cmocka_unit_test(test_tui_circuit_layout_wide),
        cmocka_unit_test(test_tui_circuit_load_kept_truth),
        cmocka_unit_test(test_tui_circuit_eap_run),
        cmocka_unit_test(test_tui_circuit_trials_replay),
        cmocka_unit_test(test_tui_circuit_trials_replay_heads),
        cmocka_unit_test(test_tui_circuit_no_truth),
        cmocka_unit_test(test_tui_circuit_render_80x24),
        cmocka_unit_test(test_tui_circuit_truth_marks),
        cmocka_unit_test(test_tui_circuit_sweep),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
