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
#define V_CIRC (1 << MECH_TUI_VIEW_CIRCUIT)
#define V_LENS (1 << MECH_TUI_VIEW_LENS)
#define V_PROG (1 << MECH_TUI_VIEW_PROGRAM)
#define V_LIVE (1 << MECH_TUI_VIEW_LIVE)
#define V_PATCH (1 << MECH_TUI_VIEW_PATCH)
#define V_ATTR (1 << MECH_TUI_VIEW_ATTRIB)
#define V_TRAIN (1 << MECH_TUI_VIEW_TRAIN)
#define V_ALL (V_RUNS | V_HEAD | V_GRID | V_TOKS | V_RUN | V_CIRC | V_LENS | V_PROG | V_LIVE | V_PATCH | V_ATTR | V_TRAIN)

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
    {V_ALL, "x X", "export the screen as text (x) or SVG (X): mech-VIEW-N.txt/.svg here or in $MECH_TUI_EXPORT_DIR", NULL},
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
    {V_HEAD, "L", "lens view: the logit lens (or a compiled model's decoder lens) of the prompt", "L lens"},
    {V_HEAD, "e", "the live view: edit and run the prompt, top-k next tokens", "e live"},
    {V_HEAD, "P", "program view (a compiled RASP model)", NULL},
    {V_HEAD, "D", "difference: clean minus corrupted pattern (with --corrupt; + # above zero, - = below)", "D diff"},
    {V_HEAD, "t", "token view: the prompt shaded by the cursor's query token's attention", "t tokens"},
    {V_HEAD, "z", "zoom: fit the whole pattern / one cell per token (scrolls with the cursor)", "z zoom"},
    {V_HEAD, "+ -", "zoom in / out a level (a power of two tokens per cell)", NULL},
    {V_HEAD, "PgUp PgDn", "move the cursor a page up / down", NULL},
    {V_HEAD | V_TOKS, "/", "search tokens: type, Enter moves to the next token containing it; Esc drops", "/ search"},
    {V_HEAD | V_TOKS, "n", "next token matching the search", NULL},
    {V_HEAD, "A", "attribution: direct logit attribution of the prompt's top-1 prediction", "A attrib"},
    {V_GRID, "h j k l arrows", "select a head", "hjkl select"},
    {V_GRID, "s", "sort by previous-token, duplicate-token, induction score, then layer order", "s sort"},
    {V_GRID, "f", "filter (sorted by a score): only heads scoring at least the selected one", "f filter"},
    {V_GRID, "+ -", "filter threshold up / down by 0.05", NULL},
    {V_GRID, "F", "clear the filter", NULL},
    {V_GRID, "D", "difference thumbnails: clean minus corrupted (with --corrupt)", NULL},
    {V_GRID, "Enter", "open the selected head", "Enter open"},
    {V_TOKS, "h l Left Right", "select the previous / next token", "hl token"},
    {V_TOKS, "Home End", "select the first / last token", NULL},
    {V_TOKS, "d", "direction: where the token looks / what looks at it", "d direction"},
    {V_TOKS, "a", "the current head / every head of the layer", "a all heads"},
    {V_TOKS, "j k ] [", "next / previous head", "jk head"},
    {V_TOKS, "} {", "next / previous layer", "}{ layer"},
    {V_TOKS, "D", "difference: shade by clean minus corrupted (with --corrupt)", NULL},
    {V_TOKS, "t", "back to the heatmap (also q)", NULL},
    {V_RUN, "h j k l arrows", "move the cursor (patch heatmap) or scroll the table", "hjkl move"},
    {V_RUN, "Esc q", "back to the runs list", "Esc back"},
    {V_CIRC, "j k Up Down", "select an edge (trial mode: the next / previous trial)", "jk edge"},
    {V_CIRC, "PgUp PgDn g G", "a page up / down, first / last (trial mode: first / last trial)", NULL},
    {V_CIRC, "n . N ,", "trials: the circuit after the next / previous trial, in search order", "n/N trial"},
    {V_CIRC, "t", "trials on / off (off: the stored circuit)", NULL},
    {V_CIRC, "u", "nodes without an edge: dimmed / hidden", "u unused"},
    {V_CIRC, "] [", "sweep: the next / previous run (threshold, ablation)", "][ tau"},
    {V_CIRC, "Esc q", "leave trial mode (Esc), back to the runs list", "Esc back"},
    {V_LENS, "h j k l arrows", "move the cursor (layer / variable down, position right)", "hjkl move"},
    {V_LENS, "Home End", "cursor to the first / last position", NULL},
    {V_LENS, "m", "logit lens shading: top-1 prob, target prob, target rank (log), entropy, KL to final", "m shade"},
    {V_LENS, "] [ } {", "decoder lens: next / previous layer", "][ layer"},
    {V_LENS, "Esc q", "back (to the runs list or the attention view)", NULL},
    {V_PROG, "j k", "select the next / previous variable", "jk variable"},
    {V_PROG, "Up Down PgUp PgDn", "move the source cursor", NULL},
    {V_PROG, "Home End", "first / last source line", NULL},
    {V_PROG, "Enter", "select the variable of the cursor's source line", "Enter select"},
    {V_PROG, "] [", "next / previous layer: the residual after each block (* newly computed)", "][ layer"},
    {V_PROG, "h l Left Right", "scroll the table's positions (a long input)", NULL},
    {V_PROG, "i", "type another input (Enter runs it, Esc cancels)", "i input"},
    {V_LIVE, "e i Enter", "edit the prompt: type, Backspace Delete, arrows Home End", "e edit"},
    {V_LIVE, "Enter", "while editing: run it (in the background; keys still work)", "Enter run"},
    {V_LIVE, "Esc", "while editing: leave the editor without running", "Esc stop editing"},
    {V_LIVE, "j k h l arrows", "select a token: the top-k next tokens after it", "jk token"},
    {V_LIVE, "PgUp PgDn g G", "a page up / down, first / last token", NULL},
    {V_LIVE, "S", "save the screen as a run of kind live in the database", "S save"},
    {V_LIVE, "q", "back to the attention view (the last view: quit)", NULL},
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
    {V_TRAIN, "h l Left Right", "cursor to the previous / next column of the chart", "hl step"},
    {V_TRAIN, ", .", "cursor one step back / forward", NULL},
    {V_TRAIN, "g G Home End", "first / last step", NULL},
    {V_TRAIN, "c", "chart the next curve: loss, learning rate, gradient norm", "c curve"},
    {V_TRAIN, "1 2 3", "chart the loss / the learning rate / the gradient norm", NULL},
    {V_TRAIN, "y", "log / linear y axis (log: values <= 0 are not drawn)", "y log"},
    {V_TRAIN, "s", "settings panel: hide it (from 90 columns) / show it (narrower windows)", "s settings"},
    {V_TRAIN, "Esc q", "back to the runs list", "Esc back"},
};
#define N_KEYS (sizeof key_table / sizeof key_table[0])

static const char *view_names[MECH_TUI_VIEW_COUNT_] = {"runs", "attention", "all heads", "tokens",   "run", "circuit",
                                                        "lens", "program",   "patching",  "attribution", "live",
                                                        "training"};

static int view_exists(const mech_tui_app *app, mech_tui_view v) {
    if (v == MECH_TUI_VIEW_RUN) return app->run.kind[0] != 0;
    if (v == MECH_TUI_VIEW_CIRCUIT) return app->circuit.kind[0] != 0;
    if (v == MECH_TUI_VIEW_PATCH) return app->patch.id != 0;
    if (v == MECH_TUI_VIEW_ATTRIB) return app->live_attrib.n_comp > 0 || app->live_attrib.title[0] || app->attrib.id != 0;
    if (v == MECH_TUI_VIEW_LIVE) return app->has_live;
    if (v == MECH_TUI_VIEW_TRAIN) return app->train.id != 0;
    if (v == MECH_TUI_VIEW_PROGRAM) return app->has_program;
    if (v == MECH_TUI_VIEW_LENS) return app->has_lens || app->lens_run.title[0] != 0;
    return v == MECH_TUI_VIEW_RUNS ? app->has_runs : app->has_attn;
}

// --- Keys -------------------------------------------------------------------

// Typing a token search (head and token views): Enter moves to the next
// token containing the text, Esc drops it.
static int token_search_key(mech_tui_app *app, int key) {
    mech_tui_attn *a = &app->attn;
    size_t n = strlen(a->search);
    if (key == MECH_TUI_KEY_ENTER) app->searching = 0, mech_tui_attn_search_next(a);
    else if (key == MECH_TUI_KEY_ESC) app->searching = 0, a->search[0] = 0;
    else if (key == MECH_TUI_KEY_BACKSPACE) {
        if (n) a->search[n - 1] = 0;
    } else if (key >= 32 && key < 127) {
        if (n + 1 < sizeof a->search) a->search[n] = (char)key, a->search[n + 1] = 0;
    } else return MECH_TUI_NONE;
    return MECH_TUI_REDRAW;
}

static int search_key(mech_tui_app *app, int key) {
    if (app->view == MECH_TUI_VIEW_HEAD || app->view == MECH_TUI_VIEW_TOKENS) return token_search_key(app, key);
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
    if (!strcmp(kind, "acdc") || !strcmp(kind, "acdc-sweep") || !strcmp(kind, "eap")) {
        if (mech_tui_circuit_load(app->db_path, id, &app->circuit, &err)) {
            app->circuit.id = id;
            snprintf(app->circuit.kind, sizeof app->circuit.kind, "%s", kind);
            snprintf(app->circuit.title, sizeof app->circuit.title, "run %lld: cannot read it: %.120s", (long long)id,
                     err.msg);
        }
        app->view = MECH_TUI_VIEW_CIRCUIT;
        return;
    }
    if (!strcmp(kind, "lens")) {
        if (mech_tui_lens_load(app->db_path, id, &app->lens_run, &err))
            snprintf(app->lens_run.title, sizeof app->lens_run.title, "run %lld  cannot read it: %.160s", (long long)id,
                     err.msg);
        app->lens_stored = 1;
        app->view = MECH_TUI_VIEW_LENS;
        return;
    }
    if (!strcmp(kind, "patch")) {
        if (mech_tui_patch_load(app->db_path, id, &app->patch, &err)) {
            app->patch.id = id;
            snprintf(app->patch.title, sizeof app->patch.title, "cannot read it: %.120s", err.msg);
        }
        app->view = MECH_TUI_VIEW_PATCH;
        return;
    }
    if (!strcmp(kind, "train")) {
        if (mech_tui_train_load(app->db_path, id, &app->train, &err)) {
            app->train.id = id;
            snprintf(app->train.title, sizeof app->train.title, "run %lld: cannot read it: %.160s", (long long)id,
                     err.msg);
        }
        app->view = MECH_TUI_VIEW_TRAIN;
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
    app->status[0] = 0;
    if (app->help) {
        app->help = 0;
        return MECH_TUI_REDRAW;
    }
    if (app->searching) return search_key(app, key);
    app->live_auto_head = 0;
    // the prompt editor takes every key, q ? and Tab included
    if (app->view == MECH_TUI_VIEW_LIVE && app->live.editing) return mech_tui_live_app_key(app, key);
    // the program view's input editor takes every key until Enter or Esc
    if (app->view == MECH_TUI_VIEW_PROGRAM && app->program.editing)
        return mech_tui_program_key(&app->program, key) & ~MECH_TUI_QUIT;
    if (key == '?') {
        app->help = 1;
        return MECH_TUI_REDRAW;
    }
    // the terminal layer writes the grid it last drew (tui/export.c)
    if (key == 'x') return MECH_TUI_EXPORT_TXT | MECH_TUI_REDRAW;
    if (key == 'X') return MECH_TUI_EXPORT_SVG | MECH_TUI_REDRAW;
    if (key == MECH_TUI_KEY_TAB) {
        for (int i = 1; i <= MECH_TUI_VIEW_COUNT_; i++) {
            mech_tui_view v = (mech_tui_view)((app->view + i) % MECH_TUI_VIEW_COUNT_);
            if (view_exists(app, v)) {
                if (v == MECH_TUI_VIEW_GRID) app->attn.gl = app->attn.layer, app->attn.gh = app->attn.head;
                if (v == MECH_TUI_VIEW_LENS) {
                    app->lens_stored = !app->has_lens; // the live lens when there is one
                    if (!app->lens_stored) mech_tui_app_live_lens(app);
                }
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
        else if (app->view == MECH_TUI_VIEW_RUN || app->view == MECH_TUI_VIEW_CIRCUIT ||
                 app->view == MECH_TUI_VIEW_PATCH || app->view == MECH_TUI_VIEW_TRAIN) app->view = MECH_TUI_VIEW_RUNS;
        else if (app->view == MECH_TUI_VIEW_LENS && app->lens_stored && app->has_runs) app->view = MECH_TUI_VIEW_RUNS;
        else if (app->view == MECH_TUI_VIEW_LENS && app->has_attn) app->view = MECH_TUI_VIEW_HEAD;
        else if (app->view == MECH_TUI_VIEW_PROGRAM && app->has_attn) app->view = MECH_TUI_VIEW_HEAD;
        else if (app->view == MECH_TUI_VIEW_ATTRIB)
            app->view = app->attrib_live && app->has_attn ? MECH_TUI_VIEW_HEAD : MECH_TUI_VIEW_RUNS;
        else if (app->view == MECH_TUI_VIEW_HEAD && app->has_runs) app->view = MECH_TUI_VIEW_RUNS;
        else if (app->view == MECH_TUI_VIEW_LIVE && (app->has_attn || app->has_runs))
            app->view = app->has_attn ? MECH_TUI_VIEW_HEAD : MECH_TUI_VIEW_RUNS;
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
        if (key == 'e' && app->has_live) {
            app->view = MECH_TUI_VIEW_LIVE;
            return MECH_TUI_REDRAW;
        }
        if (key == 'P' && app->has_program) {
            app->view = MECH_TUI_VIEW_PROGRAM;
            return MECH_TUI_REDRAW;
        }
        if (key == 'L' && app->has_lens) {
            app->lens_stored = 0, app->view = MECH_TUI_VIEW_LENS;
            mech_tui_app_live_lens(app);
            return MECH_TUI_REDRAW;
        }
        r = mech_tui_attn_key(&app->attn, key);
        if (r & MECH_TUI_SEARCH) app->searching = 1, r = MECH_TUI_REDRAW;
        if (r & MECH_TUI_GRID) app->view = MECH_TUI_VIEW_GRID, r = MECH_TUI_REDRAW;
        if (r & MECH_TUI_TOKENS) app->view = MECH_TUI_VIEW_TOKENS, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_TOKENS:
        r = mech_tui_tokens_key(&app->attn, key);
        if (r & MECH_TUI_SEARCH) app->searching = 1, r = MECH_TUI_REDRAW;
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
    case MECH_TUI_VIEW_CIRCUIT:
        r = mech_tui_circuit_key(&app->circuit, key);
        if (r & MECH_TUI_QUIT) app->view = MECH_TUI_VIEW_RUNS, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_LENS:
        if (key == MECH_TUI_KEY_ESC) return mech_tui_app_key(app, 'q');
        r = mech_tui_lens_key(app->lens_stored ? &app->lens_run : &app->lens, key);
        break;
    case MECH_TUI_VIEW_PROGRAM: r = mech_tui_program_key(&app->program, key); break;
    case MECH_TUI_VIEW_LIVE: r = mech_tui_live_app_key(app, key); break;
    case MECH_TUI_VIEW_PATCH:
        r = mech_tui_patch_key(&app->patch, key);
        if (r & MECH_TUI_QUIT) app->view = MECH_TUI_VIEW_RUNS, r = MECH_TUI_REDRAW;
        break;
    case MECH_TUI_VIEW_TRAIN:
        r = mech_tui_train_key(&app->train, key);
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
    int tok_view = app->view == MECH_TUI_VIEW_HEAD || app->view == MECH_TUI_VIEW_TOKENS;
    if (app->status[0]) snprintf(line, sizeof line, "%.500s", app->status);
    else if (app->searching && tok_view)
        snprintf(line, sizeof line, "search tokens: %s_   (Enter: next token containing it, Esc drops)", app->attn.search);
    else if (app->searching)
        snprintf(line, sizeof line, "search: %s_   (Enter keeps, Esc drops)", app->runs.search);
    else {
        // a kept token search leads the footer, with its number of matches
        if (tok_view && app->attn.search[0]) {
            int m = mech_tui_attn_search_count(&app->attn);
            int w = snprintf(line, sizeof line, "/%s: %d token%s (n next, Esc drops)", app->attn.search, m, m == 1 ? "" : "s");
            n = w > 0 && (size_t)w < sizeof line ? (size_t)w : 0;
        }
        for (size_t i = 0; i < N_KEYS; i++) {
            const key_help *k = &key_table[i];
            if (!k->footer || !(k->views & (1 << app->view))) continue;
            int w = snprintf(line + n, sizeof line - n, "%s%s", n ? "  " : "", k->footer);
            if (w < 0 || (size_t)w >= sizeof line - n) break;
            n += (size_t)w;
        }
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
        n += snprintf(line + n, sizeof line - (size_t)n, "  model %s", app->model_name);
    if (mech_tui_app_busy(app) && n > 0 && (size_t)n < sizeof line) snprintf(line + n, sizeof line - (size_t)n, "  [running]");
    mech_tui_grid_put(g, 0, 0, MECH_TUI_TITLE, line, -1);
    mech_tui_grid_role(g, 0, 0, g->w, MECH_TUI_TITLE);
    int h = g->h - 2;
    if (app->live.s) mech_tui_live_set_grid_size(app->live.s, g->w, h); // for the next forward's thumbnails
    switch (app->view) {
    case MECH_TUI_VIEW_RUNS: mech_tui_runs_render(&app->runs, g, 1, h); break;
    case MECH_TUI_VIEW_HEAD: mech_tui_attn_render(&app->attn, g, 1, h); break;
    case MECH_TUI_VIEW_GRID: mech_tui_attn_grid_render(&app->attn, g, 1, h); break;
    case MECH_TUI_VIEW_TOKENS: mech_tui_tokens_render(&app->attn, g, 1, h); break;
    case MECH_TUI_VIEW_RUN: mech_tui_runview_render(&app->run, g, 1, h); break;
    case MECH_TUI_VIEW_CIRCUIT: mech_tui_circuit_render(&app->circuit, g, 1, h); break;
    case MECH_TUI_VIEW_LENS: mech_tui_lens_render(app->lens_stored ? &app->lens_run : &app->lens, g, 1, h); break;
    case MECH_TUI_VIEW_PROGRAM: mech_tui_program_render(&app->program, g, 1, h); break;
    case MECH_TUI_VIEW_LIVE: mech_tui_liveview_render(&app->live, g, 1, h); break;
    case MECH_TUI_VIEW_PATCH: mech_tui_patch_render(&app->patch, g, 1, h); break;
    case MECH_TUI_VIEW_TRAIN: mech_tui_train_render(&app->train, g, 1, h); break;
    case MECH_TUI_VIEW_ATTRIB:
        mech_tui_attrib_render(app->attrib_live ? &app->live_attrib : &app->attrib, g, 1, h);
        break;
    default: break;
    }
    render_footer(app, g, g->h - 1);
    if (app->help) render_help(app, g);
}

const char *mech_tui_app_view_name(const mech_tui_app *app) {
    return app->view < MECH_TUI_VIEW_COUNT_ ? view_names[app->view] : "view";
}

mech_status mech_tui_app_set_view(mech_tui_app *app, const char *name, mech_err *err) {
    char have[256] = "";
    size_t n = 0;
    for (int v = 0; v < MECH_TUI_VIEW_COUNT_; v++) {
        if (!view_exists(app, (mech_tui_view)v) || !view_names[v]) continue;
        int same = strlen(name) == strlen(view_names[v]);
        for (size_t i = 0; same && name[i]; i++)
            same = name[i] == view_names[v][i] || (name[i] == '-' && view_names[v][i] == ' ');
        if (same) {
            app->view = (mech_tui_view)v;
            return MECH_OK;
        }
        int w = snprintf(have + n, sizeof have - n, "%s%s", n ? ", " : "", view_names[v]);
        if (w > 0 && (size_t)w < sizeof have - n) n += (size_t)w;
    }
    return mech_err_set(err, MECH_ERR_ARG, "no view '%s' here (there are: %s)", name, have);
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
    mech_tui_circuit_deinit(&app->circuit);
    mech_tui_lens_deinit(&app->lens);
    mech_tui_lens_deinit(&app->lens_run);
    mech_tui_program_deinit(&app->program);
    mech_tui_liveview_deinit(&app->live);
    mech_tui_patch_deinit(&app->patch);
    mech_tui_attrib_deinit(&app->attrib);
    mech_tui_attrib_deinit(&app->live_attrib);
    mech_tui_train_deinit(&app->train);
}
