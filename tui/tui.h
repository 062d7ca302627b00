/*
** tui/tui.h: the terminal interface `mech tui`, in three layers (as htop):
** view models that are plain structs with pure functions (state + key ->
** new state, state + size -> a grid of cells), a cell grid that knows no
** curses, and a thin ncurses layer (tui/term.c, tui/app.c) that draws the
** grid. Everything but mech_tui_main is testable without a terminal.
**
** The tui code lives in the mech binary, not in libmech.a (which stays free
** of ncurses). Results are read only through data/ (mech_store_open_read).
*/
#ifndef MECH_TUI_H
#define MECH_TUI_H

#include "core/core.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// --- Cells ------------------------------------------------------------------

// What a cell means; the drawing layer maps roles to colours (or to
// attributes when there is no colour / NO_COLOR is set).
typedef enum mech_tui_role {
    MECH_TUI_TEXT = 0,
    MECH_TUI_TITLE,  // title line
    MECH_TUI_HEADER, // column headers, axis labels
    MECH_TUI_SEL,    // the selected row, the cursor cell
    MECH_TUI_CROSS,  // the cursor's row and column in a heatmap
    MECH_TUI_DIM,    // secondary text
    MECH_TUI_FOOTER, // key hints
    MECH_TUI_HEAT,   // a heatmap cell: level 0..MECH_TUI_LEVELS-1
    MECH_TUI_ERROR,
    MECH_TUI_ROLE_COUNT_
} mech_tui_role;

// Heatmap levels; the glyph ramp doubles as the monochrome rendering.
#define MECH_TUI_LEVELS 10
extern const char mech_tui_ramp[MECH_TUI_LEVELS + 1]; // " .:-=+*#%@"
// The diverging ramps of a difference heatmap (level = |difference|): the
// glyph tells the sign without colour, '+' / '#' above zero, '-' / '=' below.
extern const char mech_tui_ramp_pos[MECH_TUI_LEVELS + 1]; // " +++++####"
extern const char mech_tui_ramp_neg[MECH_TUI_LEVELS + 1]; // " -----===="

typedef struct mech_tui_cell {
    char ch;       // printable ASCII
    uint8_t role;  // mech_tui_role
    uint8_t level; // for MECH_TUI_HEAT (and CROSS/SEL over a heatmap)
    uint8_t heat;  // 1 when the cell is part of a heatmap
    uint8_t sign;  // a difference heatmap's cell: 1 positive, 2 negative (0: sequential heatmap)
    // Two heatmap rows in one text row (upper-half block on UTF-8
    // terminals): level is the upper row's, lo the lower's, lo_sign its sign;
    // ch is the glyph of the larger, the rendering without colour or UTF-8.
    uint8_t half;
    uint8_t lo, lo_sign;
} mech_tui_cell;

// h x w cells, row-major. Owns cells.
typedef struct mech_tui_grid {
    int h, w;
    mech_tui_cell *cells;
} mech_tui_grid;

// Sizes g to h x w (reallocating) and clears it. Errors: MECH_ERR_NOMEM.
mech_status mech_tui_grid_resize(mech_tui_grid *g, int h, int w);
void mech_tui_grid_deinit(mech_tui_grid *g);
void mech_tui_grid_clear(mech_tui_grid *g);
// The cell at (y, x); NULL outside the grid.
mech_tui_cell *mech_tui_grid_at(mech_tui_grid *g, int y, int x);
// Writes s at (y, x) in role, at most maxw columns (<0: to the right edge);
// bytes that are not printable ASCII show as '?'. Returns columns written.
int mech_tui_grid_put(mech_tui_grid *g, int y, int x, mech_tui_role role, const char *s, int maxw);
// Sets the role of cells [x, x+n) of row y.
void mech_tui_grid_role(mech_tui_grid *g, int y, int x, int n, mech_tui_role role);
// Row y as text (w bytes + NUL) into buf (at least g->w + 1 bytes).
void mech_tui_grid_row_text(const mech_tui_grid *g, int y, char *buf);

// A token's text made printable for one line: newline as \n, tab as \t,
// other control bytes and non-ASCII bytes as '?'. Writes at most cap-1
// bytes + NUL.
void mech_tui_token_label(const char *tok, char *out, size_t cap);

// Reaction flags returned by key handlers (htop's Htop_Reaction).
enum {
    MECH_TUI_NONE = 0,
    MECH_TUI_REDRAW = 1,
    MECH_TUI_QUIT = 2,  // leave this view (the app decides where to go)
    MECH_TUI_RELOAD = 4,
    MECH_TUI_SEARCH = 8, // start typing a search
    MECH_TUI_OPEN = 16,  // open the selected item
    MECH_TUI_GRID = 32,  // switch to the all-heads grid
    MECH_TUI_TOKENS = 64, // switch to the token view
};

// Keys the view models understand, independent of curses. Printable keys
// are their ASCII code.
enum {
    MECH_TUI_KEY_UP = 0x1000,
    MECH_TUI_KEY_DOWN,
    MECH_TUI_KEY_LEFT,
    MECH_TUI_KEY_RIGHT,
    MECH_TUI_KEY_PGUP,
    MECH_TUI_KEY_PGDN,
    MECH_TUI_KEY_HOME,
    MECH_TUI_KEY_END,
    MECH_TUI_KEY_ENTER,
    MECH_TUI_KEY_ESC,
    MECH_TUI_KEY_TAB,
    MECH_TUI_KEY_BACKSPACE,
};

// --- Runs view --------------------------------------------------------------

typedef struct mech_tui_run_row {
    int64_t id;
    char kind[24], status[16], model[64], date[24];
    char figure[64]; // the run's key figure, as text
} mech_tui_run_row;

typedef enum mech_tui_runs_sort {
    MECH_TUI_SORT_ID = 0,
    MECH_TUI_SORT_KIND,
    MECH_TUI_SORT_STATUS,
    MECH_TUI_SORT_DATE,
    MECH_TUI_SORT_COUNT_
} mech_tui_runs_sort;

typedef struct mech_tui_runs {
    mech_tui_run_row *rows; // [n] (owned)
    size_t n;
    size_t *vis;            // [n_vis] indices into rows after filter/search/sort (owned)
    size_t n_vis;
    int sort, desc;
    char kind[24];          // filter: "" for every kind
    char search[64];        // substring of kind, status, model, date, figure or id
    size_t cur, top;        // selected index into vis, first shown
    int page;               // rows shown in the last render (for PgUp/PgDn)
    char message[1600];     // why there is nothing to show (missing/empty database)
} mech_tui_runs;

// Replaces the rows (takes ownership of rows, allocated with mech_malloc)
// and recomputes the visible list, keeping the selected run when it is
// still visible. Errors: MECH_ERR_NOMEM.
mech_status mech_tui_runs_set(mech_tui_runs *v, mech_tui_run_row *rows, size_t n);
void mech_tui_runs_deinit(mech_tui_runs *v);
// Recomputes vis after a change of filter, search or sort.
mech_status mech_tui_runs_refilter(mech_tui_runs *v);
// Handles one key: j/k/arrows, PgUp/PgDn, g/G (first/last), s (next sort
// key), r (reverse), f (next kind filter), Esc (clear search and filter),
// Enter (open), / (search). Returns reaction flags.
int mech_tui_runs_key(mech_tui_runs *v, int key);
// The selected run, or NULL.
const mech_tui_run_row *mech_tui_runs_selected(const mech_tui_runs *v);
// Draws the view into rows [y0, y0+h) of g (its full width).
void mech_tui_runs_render(mech_tui_runs *v, mech_tui_grid *g, int y0, int h);
// Reads every run of the database at path (read-only: never creates or
// modifies it) with its key figure. OUT: *rows (owned, mech_free), *n.
// Errors: as mech_store_open_read (MECH_ERR_IO for a missing file), MECH_ERR_DB.
mech_status mech_tui_runs_load(const char *path, mech_tui_run_row **rows, size_t *n, mech_err *err);

// --- Attention view ---------------------------------------------------------

#define MECH_TUI_SCORE_KINDS 3 // previous-token, duplicate-token, induction

typedef struct mech_tui_attn {
    int L, NH, T;
    float *pat;      // (L, NH, T, T) attention patterns (owned, mech_free), or NULL when
    const float **layer_pat; // [L] (owned array) of (NH, T, T) patterns borrowed from a run
                     // that outlives the view (no copy: 600 MB at GPT-2 small, T = 1024)
    char **tokens;   // [T] printable token labels (owned, mech_free each and the array)
    double *scores;  // [MECH_TUI_SCORE_KINDS][L*NH] head scores, or NULL (owned, mech_free)
    int layer, head; // the head shown
    int q, k;        // cursor (token indices)
    int pool_mean;   // 0: max pooling, 1: mean pooling
    int gl, gh;      // the all-heads grid's cursor
    int grid_sort;   // 0: layer x head order; 1 + kind: by that score, highest first
    int grid_top;    // first thumbnail row shown in the grid
    // from the last render (the key handlers step by one pooled cell)
    int bin_r, bin_c, grid_rows_shown, grid_per_row;
    // the grid's thumbnails of every head, pooled for the last window size
    // and pooling mode (owned, mech_free)
    float *thumbs;
    int thumb_r, thumb_c, thumb_br, thumb_bc, thumb_mean;
    int tok_dir;     // token view: 0 where token q looks (its row), 1 what looks at it (its column)
    int tok_all;     // token view: every head of the layer, not only the current one
    // difference mode: the corrupted prompt's patterns (same L, NH, T), as
    // pat / layer_pat; NULL for both without a corrupted prompt
    float *cpat;
    const float **layer_cpat;
    int diff;        // the heatmap shows clean minus corrupted (key D)
} mech_tui_attn;

void mech_tui_attn_deinit(mech_tui_attn *a);
// The weight of query q on key k of head (l, h).
float mech_tui_attn_weight(const mech_tui_attn *a, int l, int h, int q, int k);
// The corrupted prompt's weight (difference mode only).
float mech_tui_attn_cweight(const mech_tui_attn *a, int l, int h, int q, int k);
// Clean minus corrupted, pooled as mech_tui_attn_pool: mean of the
// differences, or (max pooling) the difference largest in magnitude, sign kept.
void mech_tui_attn_pool_diff(const mech_tui_attn *a, int l, int h, int bin_r, int bin_c, int rows, int cols, int mean,
                             float *out);
// Pools the head's T x T pattern into rows x cols cells of bins bin_r x
// bin_c tokens (max or mean over each bin's tokens). out: rows*cols.
void mech_tui_attn_pool(const mech_tui_attn *a, int l, int h, int bin_r, int bin_c, int rows, int cols, int mean,
                        float *out);
// The level (0..MECH_TUI_LEVELS-1) of a weight in [0, 1]; 0 only for 0.
int mech_tui_level(float w);
// Head view keys: arrows/hjkl move the cursor one cell, ] [ next/previous
// head, } { next/previous layer, p max/mean pooling, g the grid, D the
// difference clean - corrupted (when there is a corrupted prompt).
int mech_tui_attn_key(mech_tui_attn *a, int key);
// Grid keys: arrows/hjkl move between heads, s sorts by the next score
// (previous-token, duplicate-token, induction, then layer order), Enter
// opens the head.
int mech_tui_attn_grid_key(mech_tui_attn *a, int key);
// One head as a heatmap into rows [y0, y0+h) of g.
void mech_tui_attn_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h);
// The layer x head grid of thumbnails with their scores.
void mech_tui_attn_grid_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h);

// --- Token view -------------------------------------------------------------
// The prompt as text shaded by attention to or from the selected token a->q
// (tui/view_tokens.c); it shares the attention view's state.

// The weight that shades token t for head h of the current layer: a->q's
// attention to t (tok_dir 0) or t's attention to a->q (tok_dir 1).
float mech_tui_tokens_weight(const mech_tui_attn *a, int h, int t);
// h l arrows select the previous / next token, j k the next / previous
// head, ] [ } { as in the head view, d the direction, a one head / every
// head of the layer, t back to the heatmap (MECH_TUI_OPEN).
int mech_tui_tokens_key(mech_tui_attn *a, int key);
// The shaded prompt (one head, wrapped) or one line per head of the layer,
// and the strongest weights of the current head as numbers.
void mech_tui_tokens_render(mech_tui_attn *a, mech_tui_grid *g, int y0, int h);

// --- Run view: one stored run --------------------------------------------

// A patch run's mean effect as a layer x column heatmap, or for other kinds
// a table of text lines. Loaded once from the database (read-only).
typedef struct mech_tui_runview {
    int64_t id;
    char kind[24];
    char title[160];  // what the view shows, e.g. "mean effect over 2 pairs"
    int L, A;         // heatmap: layers x columns (0 x 0 without a heatmap)
    int by_head;      // columns are heads (else positions)
    double *effect;   // [L*A] mean effect over pairs, NaN where none (owned)
    int cl, ca;       // cursor: layer, column
    char **lines;     // table rows (owned, each mech_free)
    size_t n_lines, top;
    int page;         // table rows shown in the last render
} mech_tui_runview;

// Reads run id of the database at path into v (replacing what it held).
// Errors: as mech_store_open_read, MECH_ERR_RANGE (no such run), MECH_ERR_DB,
// MECH_ERR_NOMEM.
mech_status mech_tui_runview_load(const char *path, int64_t id, mech_tui_runview *v, mech_err *err);
void mech_tui_runview_deinit(mech_tui_runview *v);
// Keys: arrows/hjkl move the heatmap cursor or scroll the table, PgUp/PgDn,
// g/G; Esc and q leave (MECH_TUI_QUIT).
int mech_tui_runview_key(mech_tui_runview *v, int key);
void mech_tui_runview_render(mech_tui_runview *v, mech_tui_grid *g, int y0, int h);

// --- Patching view: a patch run as a diverging heatmap -------------------
// (tui/view_patch.c). Every cell of every pair is loaded once; the view
// shows one pair or the mean over pairs, the normalised effect or the raw
// metric, and for a layer x position x head sweep a slice of it.

// The tokenizer for a stored run's token ids: its model's own (files beside
// the model), else the built-in GPT-2 one that mech's commands fall back
// to; NULL when the model file is missing or not safetensors, its
// tokenizer files are broken, or it is a compiled RASP model (its ids are
// not text). Reads the file's header only, not its weights. Owned
// (mech_tokenizer_free).
mech_tokenizer *mech_tui_model_tokenizer(const char *model_path);
// A token's printable label (mech_tui_token_label of its text), or its id
// in decimal when tok is NULL or has no such token.
void mech_tui_id_label(const mech_tokenizer *tok, int32_t id, char *out, size_t cap);

typedef enum mech_tui_patch_shape {
    MECH_TUI_PATCH_POS = 0, // layer x position (resid_pre, attn_out, mlp_out, ...)
    MECH_TUI_PATCH_HEAD,    // layer x head (heads, q, k, v, pattern, path)
    MECH_TUI_PATCH_POS_HEAD // layer x position x head (heads_by_pos)
} mech_tui_patch_shape;

typedef struct mech_tui_patch {
    int64_t id;
    char sweep[32], metric[32];
    char title[200];     // an error when the run cannot be shown
    int shape;           // mech_tui_patch_shape
    int L, P, H;         // layers, positions (1 for a head sweep), heads (1 for a position sweep)
    int n_pairs;
    int *items;          // [n_pairs] the pairs' item numbers, ascending (owned)
    double *effect, *raw; // [n_pairs][L][P][H], NaN where none (owned)
    double *clean, *corrupted; // [n_pairs] the metric's two ends (owned)
    char **clean_txt, **corrupt_txt; // [n_pairs] the prompts as one printable line (owned)
    char ***tok;         // [n_pairs][P] the clean prompt's token labels, NULL past its end (owned)
    int pair;            // the pair shown (index into items)
    int avg;             // 1: the mean over pairs
    int show_raw;        // 1: the raw metric, 0: the normalised effect
    int by_pos;          // layer x position x head: 1 slices by position (layer x head), 0 by head
    int sh, sp;          // the slice's head and position
    int cl, ca;          // cursor: layer, column
    int c0, l0;          // first column and layer shown (from the last render)
} mech_tui_patch;

// Reads patch run id of the database at path (read-only) into v,
// replacing what it held; token labels come from the run's model file's
// tokenizer when it loads (else ids). Errors: as mech_store_open_read,
// MECH_ERR_RANGE (no such run), MECH_ERR_ARG (not a patch run), MECH_ERR_DB,
// MECH_ERR_NOMEM.
mech_status mech_tui_patch_load(const char *path, int64_t id, mech_tui_patch *v, mech_err *err);
void mech_tui_patch_deinit(mech_tui_patch *v);
// The columns shown now: positions or heads (*by_head 1). Returns their count.
int mech_tui_patch_cols(const mech_tui_patch *v, int *by_head);
// The value shown at (layer, column) now (pair or mean, effect or raw, slice);
// NaN when no pair has it.
double mech_tui_patch_value(const mech_tui_patch *v, int l, int a);
// The largest |value| of the matrix shown now (0 when none): the scale.
double mech_tui_patch_scale(const mech_tui_patch *v);
// The label of column a now ("H3", a token's text, or "#5" for a position
// whose token differs between the pairs averaged). Writes at most cap-1 bytes.
void mech_tui_patch_label(const mech_tui_patch *v, int a, char *out, size_t cap);
// Keys: arrows/hjkl move, p / P next / previous pair (from the mean: the
// first / the last), a the mean over pairs,
// m raw metric / effect, s slice by head / by position, ] [ next / previous
// sliced head or position, g G first / last cell; Esc and q leave.
int mech_tui_patch_key(mech_tui_patch *v, int key);
void mech_tui_patch_render(mech_tui_patch *v, mech_tui_grid *g, int y0, int h);

// --- Attribution view: direct logit attribution as sorted bars ---------------
// (tui/view_attrib.c) of an attrib run, or of the live prompt.

typedef struct mech_tui_attrib {
    int64_t id;          // the run (0: the live prompt)
    char title[200];     // an error when the run cannot be shown
    int n_items, n_comp;
    char (*labels)[32];  // [n_comp] "embed", "L0H1", "L0.attn_bias", "L0.mlp" (owned)
    double *attr;        // [n_items][n_comp] NaN where none (owned)
    double *logit, *bias; // [n_items] (owned)
    int *pos;            // [n_items] the attributed position (owned)
    char **prompt;       // [n_items] the sequence as one printable line (owned)
    char answer[48], wrong[48]; // token labels; wrong "" for a plain logit
    int item;            // the sequence shown
    int *order;          // [n_comp] the current item's components by |value|, largest first (owned)
    int top, page;       // first bar shown; bars shown in the last render
} mech_tui_attrib;

// Reads attrib run id of the database at path (read-only) into v.
// Errors: as mech_tui_patch_load (MECH_ERR_ARG: not an attrib run).
mech_status mech_tui_attrib_load(const char *path, int64_t id, mech_tui_attrib *v, mech_err *err);
// The live prompt ids[0..T) (B = 1), whose forward pass has run on run with
// mech_lens_cache's hooks: direct logit attribution (mech_lens_dla) at the
// last position of answer, minus wrong when wrong >= 0; answer < 0 means
// the model's top-1 prediction there (and no wrong token). tok (may be
// NULL: ids) names the tokens. A pure function of its inputs. Errors: as
// mech_lens_dla, MECH_ERR_NOMEM.
mech_status mech_tui_attrib_from_run(mech_tui_attrib *v, const mech_model *m, const mech_run *run, const int32_t *ids,
                                     int T, int32_t answer, int32_t wrong, const mech_tokenizer *tok, mech_err *err);
void mech_tui_attrib_deinit(mech_tui_attrib *v);
// Sorts the current item's components by |value| into v->order.
void mech_tui_attrib_sort(mech_tui_attrib *v);
// Keys: j k arrows scroll one bar, PgUp PgDn a page, g G first / last,
// p / P next / previous sequence; Esc and q leave.
int mech_tui_attrib_key(mech_tui_attrib *v, int key);
void mech_tui_attrib_render(mech_tui_attrib *v, mech_tui_grid *g, int y0, int h);

// --- The application ------------------------------------------------------

typedef enum mech_tui_view {
    MECH_TUI_VIEW_RUNS = 0,
    MECH_TUI_VIEW_HEAD,
    MECH_TUI_VIEW_GRID,
    MECH_TUI_VIEW_TOKENS,
    MECH_TUI_VIEW_RUN, // a stored run opened from the runs list
    MECH_TUI_VIEW_PATCH,  // a patch run (tui/view_patch.c)
    MECH_TUI_VIEW_ATTRIB, // an attrib run or the live prompt's attribution (tui/view_attrib.c)
    MECH_TUI_VIEW_COUNT_
} mech_tui_view;

typedef struct mech_tui_app {
    mech_tui_view view;
    int has_runs, has_attn; // which views exist
    int help;               // the ? overlay is shown
    int searching;          // typing into runs.search
    const char *db_path;    // borrowed; NULL without a database
    mech_tui_runs runs;
    mech_tui_attn attn;
    mech_tui_runview run;   // the opened run (view MECH_TUI_VIEW_RUN)
    mech_tui_patch patch;   // the opened patch run (view MECH_TUI_VIEW_PATCH)
    mech_tui_attrib attrib, live_attrib; // the opened attrib run; the live prompt's (n_comp 0: none)
    int attrib_live;        // the attribution view shows live_attrib (else attrib)
    char model_name[64];
} mech_tui_app;

// One key of the application (help, Tab, q, search typing, then the view's
// own keys). Returns MECH_TUI_QUIT when the program should end.
int mech_tui_app_key(mech_tui_app *app, int key);
// The whole screen (title, view, footer, help overlay) into g (already sized).
void mech_tui_app_render(mech_tui_app *app, mech_tui_grid *g);
// Opens run id of db_path in the view that fits its kind (the run view as
// a fallback); a run that cannot be read opens with its error as the title.
void mech_tui_app_open_run(mech_tui_app *app, int64_t id, const char *kind);
// Reloads the runs from db_path (keeps the selection). 1 when they changed.
int mech_tui_app_reload(mech_tui_app *app);
void mech_tui_app_deinit(mech_tui_app *app);

// Runs the interface in the terminal until q. The terminal is restored on
// every exit path (also SIGINT, SIGTERM, SIGHUP, SIGSEGV). Returns 0, or 1
// when the terminal cannot be used (message on stderr).
int mech_tui_main(mech_tui_app *app);

#ifdef __cplusplus
}
#endif
#endif
