/*
** tui/app.c: the application as plain state: which view is shown, the key
** table that both dispatches keys and writes the footer and the ? help
** overlay (so the two cannot drift apart), and the screen layout (title,
** view, footer). No curses here; tui/term.c draws the grid this fills.
*/
#include "tui/tui.h"

#include <stdio.h>
#include <string.h>

// --- The key table ----------------------------------------------------------

#define V_RUNS (1 << MECH_TUI_VIEW_RUNS)
#define V_HEAD (1 << MECH_TUI_VIEW_HEAD)
#define V_GRID (1 << MECH_TUI_VIEW_GRID)
#define V_TOKS (1 << MECH_TUI_VIEW_TOKENS)
#define V_RUN (1 << MECH_TUI_VIEW_RUN)
#define V_PATCH (1 << MECH_TUI_VIEW_PATCH)
#define V_ATTR (1 << MECH_TUI_VIEW_ATTRIB)
#define V_ALL (V_RUNS | V_HEAD | V_GRID | V_TOKS | V_RUN | V_PATCH | V_ATTR)

typedef struct key_help {
    int views;        // where the key works
    const char *keys; // as shown
    const char *help;
    const char *footer; // the footer's short form, or NULL
} key_help;

// Every key the interface answers; the view handlers implement the view's
// rows (mech_tui_runs_key, mech_tui_attn_key, mech_tui_attn_grid_key).
static const key_help key_table[] = {
    {V_ALL, "q", "leave this view (the last one: quit)", "q quit"},
    {V_ALL, "?", "this help (any key closes it)", "? help"},
    {V_ALL, "Tab", "next view", "Tab view"},
    {V_RUNS, "j k Up Down", "select the next / previous run", NULL},
    {V_RUNS, "PgUp PgDn", "a page up / down", NULL},
    {V_RUNS, "g G Home End", "first / last run", NULL},
    {V_RUNS, "/", "search runs (kind, status, model, date, figure, id); Enter keeps, Esc drops", "/ search"},
    {V_RUNS, "f", "filter by kind (next kind; all after the last)", "f kind"},
    {V_RUNS, "s", "sort by id, kind, status, date", "s sort"},
    {V_RUNS, "r", "reverse the order", NULL},
    {V_RUNS, "Esc", "clear the search and the kind filter", NULL},
    {V_RUNS, "Enter", "open the selected run", "Enter open"},
    {V_HEAD, "h j k l arrows", "move the cursor one cell (query down, key right)", "hjkl move"},
    {V_HEAD, "] [", "next / previous head", "][ head"},
    {V_HEAD, "} {", "next / previous layer", "}{ layer"},
    {V_HEAD, "Home End", "cursor to the first / last token", NULL},
    {V_HEAD, "p", "max or mean pooling of long prompts", "p pool"},
    {V_HEAD, "g", "all heads: the layer x head grid", "g all heads"},
    {V_HEAD, "D", "difference: clean minus corrupted pattern (with --corrupt; + # above zero, - = below)", "D diff"},
    {V_HEAD, "t", "token view: the prompt shaded by the cursor's query token's attention", "t tokens"},
    {V_HEAD, "A", "attribution: direct logit attribution of the prompt's top-1 prediction", "A attrib"},
    {V_GRID, "h j k l arrows", "select a head", "hjkl select"},
    {V_GRID, "s", "sort by previous-token, duplicate-token, induction score, then layer order", "s sort"},
    {V_GRID, "Enter", "open the selected head", "Enter open"},
    {V_TOKS, "h l Left Right", "select the previous / next token", "hl token"},
    {V_TOKS, "Home End", "select the first / last token", NULL},
    {V_TOKS, "d", "direction: where the token looks / what looks at it", "d direction"},
    {V_TOKS, "a", "the current head / every head of the layer", "a all heads"},
    {V_TOKS, "j k ] [", "next / previous head", "jk head"},
    {V_TOKS, "} {", "next / previous layer", "}{ layer"},
    {V_TOKS, "t", "back to the heatmap (also q)", NULL},
    {V_RUN, "h j k l arrows", "move the cursor (patch heatmap) or scroll the table", "hjkl move"},
    {V_RUN, "Esc q", "back to the runs list", "Esc back"},
    {V_PATCH, "h j k l arrows", "move the cursor (layer, position or head)", "hjkl move"},
    {V_PATCH, "p P", "next / previous pair", "pP pair"},
    {V_PATCH, "a", "the mean over pairs / one pair", "a mean"},
    {V_PATCH, "m", "the raw metric / the normalised effect (0 corrupted, 1 clean)", "m raw"},
    {V_PATCH, "s", "layer x position x head: slice by head / by position", NULL},
    {V_PATCH, "] [", "next / previous head (or position) of the slice", NULL},
    {V_PATCH, "g G Home End", "first / last cell", NULL},
    {V_PATCH, "Esc q", "back to the runs list", "Esc back"},
    {V_ATTR, "j k Up Down", "scroll one bar", "jk scroll"},
    {V_ATTR, "PgUp PgDn", "a page up / down", NULL},
    {V_ATTR, "g G Home End", "the largest / the smallest contributions", NULL},
    {V_ATTR, "p P", "next / previous sequence of the run", "pP sequence"},
    {V_ATTR, "Esc q", "back (to the runs list, or the head view for the live prompt)", "Esc back"},
};
#define N_KEYS (sizeof key_table / sizeof key_table[0])

static const char *view_names[MECH_TUI_VIEW_COUNT_] = {"runs", "attention", "all heads", "tokens", "run",
                                                        "patching", "attribution"};

static int view_exists(const mech_tui_app *app, mech_tui_view v) {
    if (v == MECH_TUI_VIEW_RUN) return app->run.kind[0] != 0;
    if (v == MECH_TUI_VIEW_PATCH) return app->patch.id != 0;
    if (v == MECH_TUI_VIEW_ATTRIB) return app->live_attrib.n_comp > 0 || app->live_attrib.title[0] || app->attrib.id != 0;
    return v == MECH_TUI_VIEW_RUNS ? app->has_runs : app->has_attn;
}

// --- Keys -------------------------------------------------------------------

static int search_key(mech_tui_app *app, int key) {
    mech_tui_runs *r = &app->runs;
    size_t n = strlen(r->search);
    if (key == MECH_TUI_KEY_ENTER) app->searching = 0;
    else if (key == MECH_TUI_KEY_ESC) app->searching = 0, r->search[0] = 0;
    else if (key == MECH_TUI_KEY_BACKSPACE) {
        if (n) r->search[n - 1] = 0;
    } else if (key >= 32 && key < 127) {
        if (n + 1 < sizeof r->search) r->search[n] = (char)key, r->search[n + 1] = 0;
    } else return MECH_TUI_NONE;
    mech_tui_runs_refilter(r);
    return MECH_TUI_REDRAW;
}

void mech_tui_app_open_run(mech_tui_app *app, int64_t id, const char *kind) {
    mech_err err = {0};
    if (!strcmp(kind, "patch")) {
        if (mech_tui_patch_load(app->db_path, id, &app->patch, &err)) {
            app->patch.id = id;
            snprintf(app->patch.title, sizeof app->patch.title, "cannot read it: %.120s", err.msg);
        }
        app->view = MECH_TUI_VIEW_PATCH;
        return;
    }
    if (!strcmp(kind, "attrib")) {
        if (mech_tui_attrib_load(app->db_path, id, &app->attrib, &err)) {
            app->attrib.id = id;
            snprintf(app->attrib.title, sizeof app->attrib.title, "cannot read it: %.120s", err.msg);
        }
        app->attrib_live = 0;
        app->view = MECH_TUI_VIEW_ATTRIB;
        return;
    }
    if (mech_tui_runview_load(app->db_path, id, &app->run, &err)) {
        app->run.id = id;
        snprintf(app->run.kind, sizeof app->run.kind, "%s", kind);
        snprintf(app->run.title, sizeof app->run.title, "cannot read it: %.120s", err.msg);
    }
    app->view = MECH_TUI_VIEW_RUN;
}

int mech_tui_app_key(mech_tui_app *app, int key) {
    if (app->help) {
        app->help = 0;
        return MECH_TUI_REDRAW;
    }
    if (app->searching) return search_key(app, key);
    if (key == '?') {
        app->help = 1;
        return MECH_TUI_REDRAW;
    }
    if (key == MECH_TUI_KEY_TAB) {
        for (int i = 1; i <= MECH_TUI_VIEW_COUNT_; i++) {
            mech_tui_view v = (mech_tui_view)((app->view + i) % MECH_TUI_VIEW_COUNT_);
            if (view_exists(app, v)) {
                if (v == MECH_TUI_VIEW_GRID) app->attn.gl = app->attn.layer, app->attn.gh = app->attn.head;
                if (v == MECH_TUI_VIEW_ATTRIB) app->attrib_live = app->attrib.id == 0; // a stored run first
                app->view = v;
                break;
            }
        }
        return MECH_TUI_REDRAW;
    }
    if (key == 'q') {
        // q leaves a view: the grid goes back to its head, the head to the
        // runs when there is a database; the last view quits
        if (app->view == MECH_TUI_VIEW_GRID || app->view == MECH_TUI_VIEW_TOKENS) app->view = MECH_TUI_VIEW_HEAD;
        else if (app->view == MECH_TUI_VIEW_RUN || app->view == MECH_TUI_VIEW_PATCH) app->view = MECH_TUI_VIEW_RUNS;
        else if (app->view == MECH_TUI_VIEW_ATTRIB)
            app->view = app->attrib_live && app->has_attn ? MECH_TUI_VIEW_HEAD : MECH_TUI_VIEW_RUNS;
        else if (app->view == MECH_TUI_VIEW_HEAD && app->has_runs) app->view = MECH_TUI_VIEW_RUNS;
        else return MECH_TUI_QUIT;
        return MECH_TUI_REDRAW;
    }
    int r = MECH_TUI_NONE;
    switch (app->view) {
    case MECH_TUI_VIEW_RUNS:
        r = mech_tui_runs_key(&app->runs, key);
        if (r & MECH_TUI_SEARCH) app->searching = 1, r = MECH_TUI_REDRAW;
        if ((r & MECH_TUI_OPEN) && app->db_path && mech_tui_runs_selected(&app->runs)) {
            // a run that cannot be read opens as its error message
            const mech_tui_run_row *sel = mech_tui_runs_selected(&app->runs);
            mech_tui_app_open_run(app, sel->id, sel->kind);
            r = MECH_TUI_REDRAW;
        }
        break;
    case MECH_TUI_VIEW_HEAD:
        if (key == 'A' && (app->live_attrib.n_comp || app->live_attrib.title[0])) {
            app->attrib_live = 1, app->view = MECH_TUI_VIEW_ATTRIB;
            return MECH_TUI_REDRAW;
        }
        r = mech_tui_attn_key(&app->attn, key);
        if (r & MECH_TUI_GRID) app->view = MECH_TUI_VIEW_GRID, r = MECH_TUI_REDRAW;
        if (r & MECH_TUI_TOKENS) app->view = MECH_TUI_VIEW_TOKENS, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_TOKENS:
        r = mech_tui_tokens_key(&app->attn, key);
        if (r & MECH_TUI_OPEN) app->view = MECH_TUI_VIEW_HEAD, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_GRID:
        r = mech_tui_attn_grid_key(&app->attn, key);
        if (r & MECH_TUI_OPEN) app->view = MECH_TUI_VIEW_HEAD, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_RUN:
        r = mech_tui_runview_key(&app->run, key);
        if (r & MECH_TUI_QUIT) app->view = MECH_TUI_VIEW_RUNS, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_PATCH:
        r = mech_tui_patch_key(&app->patch, key);
        if (r & MECH_TUI_QUIT) app->view = MECH_TUI_VIEW_RUNS, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_ATTRIB:
        r = mech_tui_attrib_key(app->attrib_live ? &app->live_attrib : &app->attrib, key);
        if (r & MECH_TUI_QUIT)
            app->view = app->attrib_live && app->has_attn ? MECH_TUI_VIEW_HEAD : MECH_TUI_VIEW_RUNS, r = MECH_TUI_REDRAW;
        break;
    default: break;
    }
    return r & ~MECH_TUI_QUIT;
}

// --- Layout -----------------------------------------------------------------

static void render_footer(const mech_tui_app *app, mech_tui_grid *g, int y) {
    char line[512] = "";
    size_t n = 0;
    if (app->searching)
        snprintf(line, sizeof line, "search: %s_   (Enter keeps, Esc drops)", app->runs.search);
    else
        for (size_t i = 0; i < N_KEYS; i++) {
            const key_help *k = &key_table[i];
            if (!k->footer || !(k->views & (1 << app->view))) continue;
            int w = snprintf(line + n, sizeof line - n, "%s%s", n ? "  " : "", k->footer);
            if (w < 0 || (size_t)w >= sizeof line - n) break;
            n += (size_t)w;
        }
    mech_tui_grid_put(g, y, 0, MECH_TUI_FOOTER, line, -1);
    mech_tui_grid_role(g, y, 0, g->w, MECH_TUI_FOOTER);
}

static void render_help(const mech_tui_app *app, mech_tui_grid *g) {
    int n = 0;
    for (size_t i = 0; i < N_KEYS; i++)
        if (key_table[i].views & (1 << app->view)) n++;
    int bw = g->w - 4 < 90 ? g->w - 4 : 90, bh = n + 4;
    if (bh > g->h) bh = g->h;
    int x0 = (g->w - bw) / 2, y0 = (g->h - bh) / 2;
    if (bw < 10) return;
    char line[256];
    for (int y = y0; y < y0 + bh; y++) {
        for (int x = x0; x < x0 + bw; x++) {
            mech_tui_cell *c = mech_tui_grid_at(g, y, x);
            if (c) *c = (mech_tui_cell){.ch = ' ', .role = MECH_TUI_TEXT};
        }
        mech_tui_grid_put(g, y, x0, MECH_TUI_HEADER, "|", 1);
        mech_tui_grid_put(g, y, x0 + bw - 1, MECH_TUI_HEADER, "|", 1);
    }
    for (int x = x0; x < x0 + bw; x++) {
        mech_tui_grid_put(g, y0, x, MECH_TUI_HEADER, "-", 1);
        mech_tui_grid_put(g, y0 + bh - 1, x, MECH_TUI_HEADER, "-", 1);
    }
    snprintf(line, sizeof line, " keys: %s view ", view_names[app->view]);
    mech_tui_grid_put(g, y0, x0 + 2, MECH_TUI_TITLE, line, bw - 4);
    int y = y0 + 2;
    for (size_t i = 0; i < N_KEYS && y < y0 + bh - 1; i++) {
        const key_help *k = &key_table[i];
        if (!(k->views & (1 << app->view))) continue;
        snprintf(line, sizeof line, "%-15s %s", k->keys, k->help);
        mech_tui_grid_put(g, y++, x0 + 2, MECH_TUI_TEXT, line, bw - 4);
    }
}

void mech_tui_app_render(mech_tui_app *app, mech_tui_grid *g) {
    char line[512];
    mech_tui_grid_clear(g);
    if (g->h < 3 || g->w < 10) {
        mech_tui_grid_put(g, 0, 0, MECH_TUI_ERROR, "window too small", -1);
        return;
    }
    int n = snprintf(line, sizeof line, "mech tui  [%s]", view_names[app->view]);
    if (app->db_path && n > 0) n += snprintf(line + n, sizeof line - (size_t)n, "  db %s", app->db_path);
    if (app->has_attn && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, "  model %s", app->model_name);
    mech_tui_grid_put(g, 0, 0, MECH_TUI_TITLE, line, -1);
    mech_tui_grid_role(g, 0, 0, g->w, MECH_TUI_TITLE);
    int h = g->h - 2;
    switch (app->view) {
    case MECH_TUI_VIEW_RUNS: mech_tui_runs_render(&app->runs, g, 1, h); break;
    case MECH_TUI_VIEW_HEAD: mech_tui_attn_render(&app->attn, g, 1, h); break;
    case MECH_TUI_VIEW_GRID: mech_tui_attn_grid_render(&app->attn, g, 1, h); break;
    case MECH_TUI_VIEW_TOKENS: mech_tui_tokens_render(&app->attn, g, 1, h); break;
    case MECH_TUI_VIEW_RUN: mech_tui_runview_render(&app->run, g, 1, h); break;
    case MECH_TUI_VIEW_PATCH: mech_tui_patch_render(&app->patch, g, 1, h); break;
    case MECH_TUI_VIEW_ATTRIB:
        mech_tui_attrib_render(app->attrib_live ? &app->live_attrib : &app->attrib, g, 1, h);
        break;
    default: break;
    }
    render_footer(app, g, g->h - 1);
    if (app->help) render_help(app, g);
}

int mech_tui_app_reload(mech_tui_app *app) {
    if (!app->db_path) return 0;
    mech_tui_run_row *rows = NULL;
    size_t n = 0;
    mech_err err = {0};
    if (mech_tui_runs_load(app->db_path, &rows, &n, &err)) {
        char msg[sizeof app->runs.message];
        if (err.code == MECH_ERR_IO)
            snprintf(msg, sizeof msg,
                     "no database at %s\n\nfill it with a command that writes runs, e.g.\n"
                     "  mech heads --model MODEL --prompt TEXT --db %s\n  make demo",
                     app->db_path, app->db_path);
        else snprintf(msg, sizeof msg, "cannot read %.200s:\n%.1000s", app->db_path, err.msg);
        int changed = app->runs.n || strcmp(msg, app->runs.message);
        snprintf(app->runs.message, sizeof app->runs.message, "%s", msg);
        mech_tui_runs_set(&app->runs, NULL, 0);
        return changed;
    }
    char msg[sizeof app->runs.message] = "";
    if (!n)
        snprintf(msg, sizeof msg,
                 "%.200s holds no runs yet\n\nfill it with a command that writes runs, e.g.\n"
                 "  mech heads --model MODEL --prompt TEXT --db %.200s\n  make demo",
                 app->db_path, app->db_path);
    int changed = n != app->runs.n || (n && memcmp(rows, app->runs.rows, n * sizeof *rows)) ||
                  strcmp(msg, app->runs.message);
    if (!changed) {
        mech_free(rows);
        return 0;
    }
    memcpy(app->runs.message, msg, sizeof msg);
    mech_tui_runs_set(&app->runs, rows, n);
    return 1;
}

void mech_tui_app_deinit(mech_tui_app *app) {
    mech_tui_runs_deinit(&app->runs);
    mech_tui_attn_deinit(&app->attn);
    mech_tui_runview_deinit(&app->run);
    mech_tui_patch_deinit(&app->patch);
    mech_tui_attrib_deinit(&app->attrib);
    mech_tui_attrib_deinit(&app->live_attrib);
}
