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
    MECH_TUI_EXPORT_TXT = 1 << 12, // write the screen as text (x; the terminal layer does it)
    MECH_TUI_EXPORT_SVG = 1 << 13, // ... as SVG (X)
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

// --- Colour, export and mech plot (tui/grid.c, tui/palette.c, tui/svg.c) ----

// One heatmap cell at (y, x) (nothing outside the grid): role HEAT, heat 1,
// level (clamped to 0..MECH_TUI_LEVELS-1), sign (0 sequential, 1 positive,
// 2 negative) and ch the glyph of that ramp (mech_tui_ramp, _pos, _neg).
void mech_tui_grid_heat(mech_tui_grid *g, int y, int x, int level, int sign);
// Two heatmap rows in one cell, drawn as an upper-half block: level/sign the
// upper row's, lo/lo_sign the lower's, half 1, and ch the glyph of the
// larger level (the upper one on a tie), what shows without colour/UTF-8.
void mech_tui_grid_heat2(mech_tui_grid *g, int y, int x, int upper_level, int upper_sign, int lower_level,
                         int lower_sign);

// An sRGB colour.
typedef struct mech_tui_rgb {
    uint8_t r, g, b;
} mech_tui_rgb;

// The colour of a heat cell (tui/palette.c): sign 0 the sequential
// viridis ramp, 1 / 2 the red / blue side of the diverging ramp (level 0 of
// both is the same neutral grey). Levels are clamped to 0..MECH_TUI_LEVELS-1.
mech_tui_rgb mech_tui_palette_heat(int level, int sign);
// Its approximations: an xterm 256-colour index (16..255; the nearest,
// mech_tui_rgb_to_256, for sign 0, hand-picked reds and blues of falling
// lightness for the diverging ramp) and an ANSI colour 0..7 for 8-colour
// terminals.
int mech_tui_palette_heat256(int level, int sign);
int mech_tui_palette_heat8(int level, int sign);
// Black or white, whichever reads on bg (by CIE L*).
mech_tui_rgb mech_tui_palette_ink(mech_tui_rgb bg);
// CIE L* (0 black .. 100 white) of c.
double mech_tui_rgb_lightness(mech_tui_rgb c);
// xterm's default RGB of colour index i (0..255).
mech_tui_rgb mech_tui_xterm_rgb(int i);
// The nearest colour (squared RGB distance) among indices 16..255.
int mech_tui_rgb_to_256(mech_tui_rgb c);

// How a role looks on a light page (the SVG export).
typedef struct mech_tui_role_style {
    mech_tui_rgb fg, bg;
    uint8_t has_bg, bold, underline;
} mech_tui_role_style;
void mech_tui_palette_role(int role, mech_tui_role_style *s);

// Colour modes of the terminal, best last.
typedef enum mech_tui_colors {
    MECH_TUI_COLORS_NONE = 0, // glyphs and attributes only
    MECH_TUI_COLORS_8,
    MECH_TUI_COLORS_256,
    MECH_TUI_COLORS_24BIT,
} mech_tui_colors;
// How the terminal draws a cell in a colour mode (tui/term.c copies it).
typedef struct mech_tui_look {
    uint32_t ch;      // the code point: the cell's ch, or U+2580 for a half cell
    int fg, bg;       // colour numbers, -1 the terminal's default: 0xRRGGBB in
                      // 24-bit mode, an xterm index in 256, ANSI 0..7 in 8
    uint8_t bold, reverse, underline, dim;
} mech_tui_look;
// A heat cell gets the palette's colour as background and black or white
// ink; a half cell with half_blocks (UTF-8 and a colour mode) is U+2580 with
// the upper row's colour as foreground and the lower's as background, else
// its ch on the stronger row's colour; roles get attributes (and cyan / red
// for the title and errors). Mode none: attributes only.
void mech_tui_cell_look(const mech_tui_cell *c, int mode, int half_blocks, mech_tui_look *out);
// "24bit" or "truecolor", "256", "8", "none" -> the mode; -1 otherwise.
int mech_tui_colors_parse(const char *s);
// The mode for a terminal: force ($MECH_TUI_COLORS) when it names a mode;
// else none under a non-empty no_color ($NO_COLOR) or fewer than 8 colours;
// 24-bit when the terminfo entry has RGB (has_rgb) or colorterm
// ($COLORTERM) is truecolor or 24bit; else 256 or 8 by ncolors.
int mech_tui_colors_choose(const char *force, const char *no_color, const char *colorterm, int has_rgb,
                           int ncolors);

// The grid as an SVG picture (tui/svg.c), appended to out: every cell
// (mech_tui_svg_cell_size pixels) with heat cells as rects in the palette's
// colours, a half cell as two, text in a monospace font in its role's
// colour. Errors: MECH_ERR_NOMEM.
mech_status mech_tui_svg(const mech_tui_grid *g, mech_buf *out);
void mech_tui_svg_cell_size(int *w, int *h);
// The grid as text, as tmux's capture-pane prints the screen: one line per
// row without trailing blanks; half cells as U+2580 (UTF-8) with
// MECH_TUI_TEXT_HALF, else their ch; with MECH_TUI_TEXT_SCREEN the
// bottom-right cell is left out, as the terminal layer never draws it.
enum { MECH_TUI_TEXT_HALF = 1, MECH_TUI_TEXT_SCREEN = 2 };
void mech_tui_grid_text(const mech_tui_grid *g, int flags, mech_buf *out);
// Writes the grid as text (svg 0; as on the screen: MECH_TUI_TEXT_SCREEN) or SVG into dir ("" or NULL: the current
// directory) as mech-<view>-<N>.txt/.svg, N the first number whose file does
// not exist (never replacing one); the path written into path (cap bytes).
// Errors: MECH_ERR_IO (nothing is left behind), MECH_ERR_NOMEM.
mech_status mech_tui_export(const mech_tui_grid *g, const char *dir, const char *view, int svg, int half_blocks,
                            char *path, size_t cap, mech_err *err);

// --- The application ------------------------------------------------------

typedef enum mech_tui_view {
    MECH_TUI_VIEW_RUNS = 0,
    MECH_TUI_VIEW_HEAD,
    MECH_TUI_VIEW_GRID,
    MECH_TUI_VIEW_TOKENS,
    MECH_TUI_VIEW_RUN, // a stored run opened from the runs list
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
    char model_name[64];
    char status[1400];      // a one-off message in the footer (the export's path); cleared by the next key
} mech_tui_app;

// One key of the application (help, Tab, q, search typing, then the view's
// own keys). Returns MECH_TUI_QUIT when the program should end.
int mech_tui_app_key(mech_tui_app *app, int key);
// The whole screen (title, view, footer, help overlay) into g (already sized).
void mech_tui_app_render(mech_tui_app *app, mech_tui_grid *g);
// Opens run id of db_path in the view that fits its kind (the run view as
// a fallback); a run that cannot be read opens with its error as the title.
void mech_tui_app_open_run(mech_tui_app *app, int64_t id, const char *kind);
// The current view's name ("runs", "attention", "all heads", ...).
const char *mech_tui_app_view_name(const mech_tui_app *app);
// Shows the view named name (as mech_tui_app_view_name, '-' for ' ' too)
// when it exists in app. Errors: MECH_ERR_ARG naming the views there are.
mech_status mech_tui_app_set_view(mech_tui_app *app, const char *name, mech_err *err);
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
