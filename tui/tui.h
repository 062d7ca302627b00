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
    MECH_TUI_KEY_DELETE,
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

// Whether the database at path can be trusted before it is shown: opened
// read-only, then the store's cheap damage checks (mech_store_check_quick:
// size, quick_check, index counts; reads the file once). Errors: as
// mech_store_open_read, MECH_ERR_DB naming the damage.
mech_status mech_tui_db_check(const char *path, mech_err *err);

// --- Attention view ---------------------------------------------------------

#define MECH_TUI_SCORE_KINDS 3 // previous-token, duplicate-token, induction

typedef struct mech_tui_attn {
    int L, NH, T;
    float *pat;      // (L, NH, T, T) attention patterns (owned, mech_free), or NULL when
    const float **layer_pat; // [L] (owned array) of (NH, T, T) patterns borrowed from a run
                     // that outlives the view (no copy: 600 MB at GPT-2 small, T = 1024)
    char **tokens;   // [T] printable token labels (owned, mech_free each and the array)
    int ids_plain;   // the labels are ids (a model without text): the token view puts a space after each
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
    int causal;      // the model is causal: a query's weights on later keys are 0, and pooling skips them
    unsigned char *thumb_ok; // [L*NH] 1 when the head's thumbnail is pooled (owned; pooled when first shown)
    int thumb_r, thumb_c, thumb_br, thumb_bc, thumb_mean;
    int tok_dir;     // token view: 0 where token q looks (its row), 1 what looks at it (its column)
    int tok_all;     // token view: every head of the layer, not only the current one
    // difference mode: the corrupted prompt's patterns (same L, NH, T), as
    // pat / layer_pat; NULL for both without a corrupted prompt
    float *cpat;
    const float **layer_cpat;
    int diff;        // the heatmap shows clean minus corrupted (key D)
    // zoom and scroll (head view): zoom 0 fits the whole pattern (pooled,
    // two heatmap rows per text row when the rows do not fit); zoom b > 0
    // shows b x b tokens per cell, one row per text row, scrolled so the
    // cursor stays in view (top_r, top_c: the first cell row / column shown)
    int zoom, top_r, top_c;
    int fit_bin;     // the larger fit bin of the last render (+ / - step from it)
    int half;        // the last render drew two heatmap rows per text row
    int page_rows;   // heatmap rows shown at the last render (PgUp / PgDn)
    char search[64]; // / in the head and token views: text looked for in the tokens
    // the grid's filter (f, + -, F): only heads whose sort score >= grid_min
    int grid_filter;
    double grid_min;
    int thumb_diff, thumb_half; // what the cached thumbnails hold
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
// Head view keys: arrows/hjkl move the cursor one cell, PgUp/PgDn a page,
// ] [ next/previous head, } { next/previous layer, p max/mean pooling, g
// the grid, D the difference clean - corrupted (when there is a corrupted
// prompt), z fit / one cell per token, + - zoom in / out, / search tokens
// (MECH_TUI_SEARCH), n next match, Esc drops the search.
int mech_tui_attn_key(mech_tui_attn *a, int key);
// Grid keys: arrows/hjkl move between heads, s sorts by the next score
// (previous-token, duplicate-token, induction, then layer order; clears the
// filter), f filters (with a score sort: heads scoring at least the selected
// one's), + - raise / lower the threshold by 0.05, F clears it, D the
// difference, Enter opens the head.
int mech_tui_attn_grid_key(mech_tui_attn *a, int key);
// 1 when there is a corrupted prompt (difference mode can be shown).
int mech_tui_attn_has_diff(const mech_tui_attn *a);
// Token search: the number of tokens whose label contains a->search
// (ASCII case-insensitive), and moving a->q to the next one after it
// (wrapping). search_next returns 1 when a token matched, else 0 (q kept).
int mech_tui_attn_search_count(const mech_tui_attn *a);
int mech_tui_attn_search_next(mech_tui_attn *a);
// Grid filter: the heads shown in display order into order[L*NH] (sorted
// by the score a->grid_sort when set; with a->grid_filter only those whose
// score >= a->grid_min). Returns how many are shown.
int mech_tui_attn_grid_order(const mech_tui_attn *a, int *order);
// Pools every head's thumbnail for the all-heads grid of a window w wide
// and h rows (what mech_tui_attn_grid_render(a, g, y0, h) with g->w == w
// would pool as it shows them), so the first switch to the grid only copies
// them. The live session runs it on its thread after a forward. Errors:
// MECH_ERR_NOMEM.
mech_status mech_tui_attn_grid_prepare(mech_tui_attn *a, int w, int h);
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
// Clean minus corrupted weight of token t (difference mode), as tokens_weight.
float mech_tui_tokens_diff(const mech_tui_attn *a, int h, int t);
// h l arrows select the previous / next token, j k the next / previous
// head, ] [ } { as in the head view, d the direction, a one head / every
// head of the layer, D the difference, / search (MECH_TUI_SEARCH), n next
// match, t back to the heatmap (MECH_TUI_OPEN).
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
// --- Layered graph layout (tui/graph_layout.c) ------------------------------
// Nodes on rows by rank (rank 0 at the bottom), each rank ordered by
// barycentre sweeps to reduce crossings; an edge is a path of cells drawn
// with | - / \ + (long edges pass through one-column dummies on the ranks
// between). Pure logic: the circuit view draws what it computes.

typedef struct mech_tui_lnode {
    int rank; // 0 = the bottom row
    int w;    // box width in columns (at least 3)
    int x, y; // OUT: the box covers columns [x, x+w) of row y
} mech_tui_lnode;

typedef struct mech_tui_ledge {
    int from, to; // node indices, rank(from) < rank(to)
    int port;     // where it enters `to`: -1 the centre, 0/1/2 a head's q/k/v column
    // OUT: cells first..first+n-1 of the layout's path store (mech_tui_layout_cell),
    // from the row above from's box to the row below to's box; (sy, sx) the
    // source anchor, (ty, tx) the target port (both on the boxes' rows)
    int first, n;
    int sy, sx, ty, tx;
} mech_tui_ledge;

typedef struct mech_tui_layout {
    mech_tui_lnode *nodes; // [n_nodes] (owned)
    mech_tui_ledge *edges; // [n_edges] (owned)
    int n_nodes, n_edges, cap_nodes, cap_edges;
    int w, h, gap; // OUT: canvas size, rows between ranks
    int *cells;    // paths' (y, x) pairs (owned)
    int cap_cells;
} mech_tui_layout;

// Appends a node / an edge; returns its index, -1 when out of memory (or,
// for an edge, when it does not go from a lower rank to a higher one).
int mech_tui_layout_add_node(mech_tui_layout *l, int rank, int w);
int mech_tui_layout_add_edge(mech_tui_layout *l, int from, int to, int port);
// Forgets the nodes and edges (keeps the memory).
void mech_tui_layout_clear(mech_tui_layout *l);
void mech_tui_layout_deinit(mech_tui_layout *l);
// Places the nodes and routes the edges on a canvas at least width columns
// wide (wider when a rank needs it) and, when height allows, up to 3 gap
// rows between ranks (at least 1). Errors: MECH_ERR_NOMEM.
mech_status mech_tui_layout_run(mech_tui_layout *l, int width, int height);
// The column where an edge enters node n at port (as mech_tui_ledge.port).
int mech_tui_layout_port_x(const mech_tui_lnode *n, int port);
// Cell i (0..e->n-1) of edge e's path, and the line glyph it is drawn with.
void mech_tui_layout_cell(const mech_tui_layout *l, const mech_tui_ledge *e, int i, int *y, int *x);
char mech_tui_layout_glyph(const mech_tui_layout *l, const mech_tui_ledge *e, int i);

// --- Circuit view (tui/view_circuit.c) --------------------------------------
// An acdc run's circuit as a layered graph (embeddings at the bottom, heads
// and MLPs by layer, the output at the top) beside the list of its kept
// edges; the ground truth of compiled models (hit / missing / extra); the
// trials stepped through in search order; an acdc-sweep run's member runs.

struct mech_acdc_graph;

typedef struct mech_tui_ctrial {
    int edge;                       // ACDC graph edge, -1 when its name is unknown
    double before, after, effect;
    int removed;
} mech_tui_ctrial;

typedef struct mech_tui_cmember {   // one run of a sweep
    char ablation[16];
    int item;                       // the threshold's index
    double tau, tpr, fpr;
    int n_edges;
    int64_t run;
} mech_tui_cmember;

typedef struct mech_tui_circuit {
    int64_t id;                     // the acdc run shown
    char kind[24];                  // the run opened: "acdc" or "acdc-sweep"
    char title[200];                // the run's line, or why it cannot be shown
    char path[512];                 // the database (a sweep loads its members from it)
    struct mech_acdc_graph *g;      // the run's graph (owned), NULL when it could not be read
    uint8_t *kept, *truth;          // [g->n_edges]: the stored circuit, the ground truth
    uint8_t *state;                 // [g->n_edges]: present edges after `pos` trials (trial mode)
    double *effect;                 // [g->n_edges]: effect when tried (NAN: never)
    mech_tui_ctrial *trials;        // [n_trials] in search order (owned)
    int n_trials;
    int finished, has_truth, n_truth, n_counted;
    double tpr, fpr;                // from the summary rows (NAN without)
    int *list;                      // [n_list] edges listed: kept by |effect|, then missing truth edges
    int n_list, cur, top, page;
    int trial_mode, pos;            // trial mode: the circuit after trials 1..pos (pos in 0..n_trials)
    int hide_unused;                // nodes without a shown edge: hidden (1) or dimmed (0)
    mech_tui_cmember *members;      // [n_members] a sweep's runs (owned)
    int n_members, member;
    char auc_line[160];             // a sweep's AUC per ablation
    // the layout of the last render (rebuilt when the edge set or the size changes)
    mech_tui_layout lay;
    int *lay_edge;                  // [lay.n_edges] the ACDC edge of each layout edge (owned)
    int *comp_node;                 // [n_comp] the layout node of each component, -1 hidden (owned)
    int n_comp, lay_key_w, lay_key_h, lay_dirty;
} mech_tui_circuit;

// Reads run id (kind "acdc" or "acdc-sweep"; a sweep shows its first
// member) of the database at path into c. Errors: as mech_store_open_read,
// MECH_ERR_RANGE (no such run), MECH_ERR_FORMAT (not an ACDC run), MECH_ERR_DB,
// MECH_ERR_NOMEM.
mech_status mech_tui_circuit_load(const char *path, int64_t id, mech_tui_circuit *c, mech_err *err);
void mech_tui_circuit_deinit(mech_tui_circuit *c);
// Sets c->state to the circuit after the first pos trials (and the untried
// removals the search made before its next trial). Errors: MECH_ERR_NOMEM.
mech_status mech_tui_circuit_replay(mech_tui_circuit *c, int pos);
// The short name of a graph node ("L2H0", "M1", "tok", "pos", "embed", "out")
// and of an edge ("M1>L2H0.q", "L2H0.v (direct)").
void mech_tui_circuit_edge_label(const mech_tui_circuit *c, int e, char *out, size_t cap);
// Keys: j k arrows PgUp PgDn g G move in the list (in trial mode: through
// the trials), n . / N , next / previous trial (entering trial mode), t
// trials on / off, u unused nodes hidden / dimmed, ] [ next / previous
// run of a sweep; Esc leaves trial mode, then the view (MECH_TUI_QUIT), q leaves.
int mech_tui_circuit_key(mech_tui_circuit *c, int key);
void mech_tui_circuit_render(mech_tui_circuit *c, mech_tui_grid *g, int y0, int h);
// --- Lens view ----------------------------------------------------------------
// The logit lens (GPT-2 models) as a layer x position grid of top-1 tokens
// on heat cells, or the decoder lens (compiled RASP models) as a variable x
// position table at one layer (tui/view_lens.c). Built once, from a live run
// (mech_tui_lens_from_run) or a stored `lens` run (mech_tui_lens_load).

#define MECH_TUI_LENS_K 5     // top tokens kept per cell
#define MECH_TUI_LENS_TEXT 16 // bytes of a token / value label (NUL included)

// What shades a logit lens cell (key m cycles; target modes only with a target).
typedef enum mech_tui_lens_mode {
    MECH_TUI_LENS_TOP1 = 0, // the top-1 token's probability
    MECH_TUI_LENS_TARGET,   // the target's probability
    MECH_TUI_LENS_RANK,     // the target's rank, log scale (rank 0 brightest)
    MECH_TUI_LENS_ENTROPY,  // nats, relative to the grid's largest
    MECH_TUI_LENS_KL,       // KL(final || layer), nats, relative to the grid's largest
    MECH_TUI_LENS_MODES_
} mech_tui_lens_mode;

// One (layer, position) of the logit lens, as mech_lens_row holds it.
typedef struct mech_tui_lens_cell {
    int k;                                           // top entries filled (<= MECH_TUI_LENS_K)
    int32_t top_ids[MECH_TUI_LENS_K];
    double top_probs[MECH_TUI_LENS_K];
    char top_text[MECH_TUI_LENS_K][MECH_TUI_LENS_TEXT]; // printable labels, or "<id>"
    int32_t target;                                  // -1 without
    char target_text[MECH_TUI_LENS_TEXT];
    int64_t target_rank;
    double target_prob, entropy, kl;
} mech_tui_lens_cell;

typedef struct mech_tui_lens {
    int decoder;        // 0 logit lens, 1 decoder lens
    int64_t run_id;     // the stored run, 0 for a live one
    char title[240];    // what is shown (or why nothing is: the error)
    int L1, T;          // layers 0..L (L1 = L + 1) x positions (decoder: input positions, BOS left out)
    char **tokens;      // [T] column labels (owned)
    int ids_plain;      // the model has no text tokenizer: ids label tokens as 162, not <162> (a name not found)
    int cl, cp;         // cursor: layer (logit lens) / position
    int c0;             // first column shown (from the last render)
    // logit lens
    mech_tui_lens_cell *cells; // [L1 * T] (owned)
    int has_target;     // some cell has a target
    int mode;           // mech_tui_lens_mode
    double vmax[MECH_TUI_LENS_MODES_]; // the largest value of each mode over the grid (its scale)
    // decoder lens: variables in display order (by the layer that computes them)
    int n_vars;
    char **var_name, **var_owner; // [n_vars] (owned): "reverse", "L2 attn H0"
    int *var_from;      // [n_vars] the first layer that holds it
    char (*vals)[MECH_TUI_LENS_TEXT]; // [L1 * n_vars * T]: the value as `mech lens --input` prints it, "-" absent
    int dl, cv;         // the layer shown, the cursor's variable
} mech_tui_lens;

void mech_tui_lens_deinit(mech_tui_lens *v);
// The lens of a live run of m on ids[0..T) (batch 1). The run must have
// cached blocks.*.hook_resid_pre and blocks.*.hook_resid_post before its
// forward (mech_lens_cache does). A model from `mech compile`
// (mech.rasp.residual metadata) gets the decoder lens (mech_lens_decode),
// any other the logit lens (mech_lens_logit) with the target at position p
// the prompt's next token ids[p+1], at the last position the model's own
// top-1 (its logits' argmax). tok (borrowed, may be NULL: "<id>") names the
// tokens. A pure function of (m, run, ids): it may run on any thread.
// Errors: as mech_lens_logit / mech_lens_decode, MECH_ERR_FORMAT (bad
// compiled metadata), MECH_ERR_NOMEM.
mech_status mech_tui_lens_from_run(mech_tui_lens *v, const mech_model *m, const mech_run *run, const int32_t *ids,
                                   int T, const mech_tokenizer *tok, mech_err *err);
// A live run whose lens is built the first time the view opens, not before
// the first frame: the projection costs L+1 unembeddings of every token
// (measured: +5 s at GPT-2 small, 128 tokens). Every pointer is borrowed and
// must outlive the app; tok NULL: the built-in GPT-2 vocabulary's names.
typedef struct mech_tui_lens_live {
    const mech_model *m;
    const mech_run *run;
    const int32_t *ids;
    int T;
    const mech_tokenizer *tok;
    int built; // mech_tui_lens_ensure ran (its result, or its error as v's title)
} mech_tui_lens_live;
// Builds v from src (mech_tui_lens_from_run) unless src->built; an error
// becomes v's title. Nothing without src->m.
void mech_tui_lens_ensure(mech_tui_lens *v, mech_tui_lens_live *src);
// Reads `lens` run id of the database at path (read-only) into v: item 0's
// rows. Token and value names come from the run's model file when it still
// loads, else token ids show as <id>. Errors: as mech_store_open_read,
// MECH_ERR_RANGE (no such run), MECH_ERR_ARG (not a lens run), MECH_ERR_DB,
// MECH_ERR_NOMEM.
mech_status mech_tui_lens_load(const char *path, int64_t run_id, mech_tui_lens *v, mech_err *err);
// The value that shades cell (l, p) in mode (see mech_tui_lens_mode),
// and its level 0..MECH_TUI_LEVELS-1. NaN (level 0) when the mode has no value there.
double mech_tui_lens_value(const mech_tui_lens *v, int mode, int l, int p);
int mech_tui_lens_level(const mech_tui_lens *v, int mode, int l, int p);
// Keys: arrows/hjkl move the cursor, Home/End first/last position, m the
// next shading (logit lens); ] [ } { the next/previous layer (decoder lens).
int mech_tui_lens_key(mech_tui_lens *v, int key);
void mech_tui_lens_render(mech_tui_lens *v, mech_tui_grid *g, int y0, int h);
// --- Program view: a compiled RASP model ----------------------------------
// The program's source beside the model's layers (which head or MLP
// computes each variable), and one input stepped through the layers:
// every variable's value at every position, decoded from the residual
// stream by the decoder lens (tui/view_program.c).

typedef struct mech_tui_program_var {
    const char *label;   // the circuit node's label (borrowed from circuit)
    const struct mech_rasp_circuit_node *node; // where it is computed (borrowed from circuit)
    int line;            // its source line (1-based); 0: built in (tokens, indices, length)
    int lens_var;        // its index among the decoder lens's variables, -1: none
    int is_bool;         // a numerical variable holding booleans (printed true/false)
} mech_tui_program_var;

typedef struct mech_tui_program {
    const mech_model *model;    // borrowed: reruns on another input use it
    struct mech_rasp_program *prog;  // parsed from the metadata (owned)
    struct mech_rasp_circuit *circuit; // mech.rasp.circuit (owned)
    struct mech_lens_vars *vars; // the residual labels as variables (owned)
    int L, NH;
    char title[160];
    char **lines;               // [n_lines] the source's lines, tabs expanded (owned)
    int n_lines;
    mech_tui_program_var *pv;   // [n_pv] the circuit's nodes, inputs first (owned)
    int n_pv;
    int sel;                    // the selected variable
    int line_cur, line_top;     // the source cursor (0-based line) and the first line shown
    int page;                   // source lines shown in the last render
    // the input run (mech_tui_program_run); P = 0 before one
    char input[256];
    int P;                      // positions (BOS not counted)
    char **val;                 // [(L+1) * n_pv * P]: the value at layer l of variable i at position p
                                // is val[(l*n_pv + i)*P + p], as `mech lens` prints it; NULL: not yet computed
    int col_w;                  // a value column's width
    int pos0;                   // the first position shown (h l scroll a long input)
    int layer;                  // the lens layer shown: 0 the embedding, l the residual after block l-1
    // the one-line input editor (key i)
    int editing;
    char edit[256];
    char error[256];            // the last failed input's error, shown until the next run
} mech_tui_program;

// Reads the compiled model's program, circuit and residual labels from m's
// metadata into v (replacing what it held); m is borrowed and must outlive
// v. Errors: MECH_ERR_ARG (m is not a compiled RASP model), MECH_ERR_PARSE /
// MECH_ERR_TYPE (its source), MECH_ERR_FORMAT (its circuit or residual
// labels), MECH_ERR_NOMEM.
mech_status mech_tui_program_load(mech_tui_program *v, const mech_model *m, mech_err *err);
// Runs input ("a b c", as `mech rasp --input`) through m (the model v was
// loaded from) in a forward pass of its own, and decodes every layer with
// mech_lens_decode into v->val; shows the last layer. On an error v keeps
// its previous run. Errors: MECH_ERR_RANGE (a token not in the vocab, too
// long, empty), as mech_run_forward and mech_lens_decode, MECH_ERR_NOMEM.
mech_status mech_tui_program_run(mech_tui_program *v, const mech_model *m, const char *input, mech_err *err);
void mech_tui_program_deinit(mech_tui_program *v);
// Keys: j k select the next / previous variable, Up Down move the source
// cursor, PgUp PgDn Home End page through the source, Enter selects the
// variable defined on the cursor's line, ] [ the next / previous layer, h l
// (Left Right) scroll the positions, i types another input (Enter runs it,
// Esc cancels). Returns reaction flags.
int mech_tui_program_key(mech_tui_program *v, int key);
void mech_tui_program_render(mech_tui_program *v, mech_tui_grid *g, int y0, int h);
// --- Live view: the prompt typed and run on the loaded model -------------
// tui/live.c (the session: no curses, the forward in a background thread)
// and tui/view_live.c (the editor and the view model).

// A one-line text editor over UTF-8 bytes: the cursor is a byte offset kept
// on a character boundary; bytes >= 0x80 typed one by one are kept as they
// come, and Backspace / Delete / Left / Right step over a whole UTF-8
// sequence (a lone invalid byte counts as one character).
typedef struct mech_tui_editor {
    char *text;      // NUL-terminated (owned, mech_free), NULL when empty and never set
    size_t len, cap;
    size_t cur;      // byte offset of the cursor, 0..len
} mech_tui_editor;

// Replaces the text (cursor at the end). Errors: MECH_ERR_NOMEM.
mech_status mech_tui_editor_set(mech_tui_editor *e, const char *s);
// Printable ASCII and bytes 0x80-0xFF insert, Backspace / Delete remove the
// character before / after the cursor, Left / Right / Home / End move it.
// Returns MECH_TUI_REDRAW when the key was an editing key, else NONE.
int mech_tui_editor_key(mech_tui_editor *e, int key);
const char *mech_tui_editor_text(const mech_tui_editor *e); // never NULL
void mech_tui_editor_deinit(mech_tui_editor *e);

// The live session: the model (borrowed), its tokenizer (or a compiled
// model's program vocabulary), the current prompt and its ids, and the
// current finished run (patterns cached, and every hook mech_lens_cache
// names when the run fits in 80 % of memory beside the current one). A forward runs in one background thread at a
// time; the finished run is taken over on the main thread by
// mech_tui_live_poll. Opaque: only the main thread calls these functions.
typedef struct mech_tui_live mech_tui_live;

typedef struct mech_tui_live_opts {
    int kind;     // what the prompt text is: 0 text, 1 token ids ("1,2,3"), 2 a compiled model's input ("a b c")
    int32_t bos;  // put in front of text (kind 0), -1 for none; a compiled model's input always starts with BOS 0
    int special;  // <|endoftext|> in text is the special token
    int no_lens;  // cache only the patterns (not the logit lens hooks)
    int threads;  // threads of the forward (0: one per CPU)
} mech_tui_live_opts;

// m is borrowed and must outlive the session; a compiled model (metadata
// mech.rasp.source) gets its program parsed here. OUT: *out (owned,
// mech_tui_live_free). Errors: MECH_ERR_NOMEM, MECH_ERR_PARSE (program).
mech_status mech_tui_live_new(const mech_model *m, const mech_tui_live_opts *o, mech_tui_live **out, mech_err *err);
// Stops a running forward (it is cancelled at the next hook) and joins its
// thread, then frees everything. NULL is a no-op.
void mech_tui_live_free(mech_tui_live *s);
// Tokenizes text (as opts->kind says) and starts its forward in the
// background. Refused while another runs (MECH_ERR_ARG, "busy": nothing is
// queued, the running one is untouched). Errors: MECH_ERR_PARSE (ids or
// input that do not parse), MECH_ERR_RANGE (an id outside the vocabulary,
// longer than the context, no tokens), MECH_ERR_NOMEM.
mech_status mech_tui_live_start(mech_tui_live *s, const char *text, mech_err *err);
// The same with the ids already made (the command line's, built with its
// options); text is what the editor shows (copied).
mech_status mech_tui_live_start_ids(mech_tui_live *s, const char *text, const int32_t *ids, int T, mech_err *err);
// 1 while a forward runs (also when it finished and poll has not taken it).
int mech_tui_live_busy(const mech_tui_live *s);
// The running forward's tokens, finished layers, layer count and seconds
// since it started (all 0 when idle).
void mech_tui_live_progress(const mech_tui_live *s, int *T, int *layers_done, int *layers, double *elapsed);
// Takes a finished forward: 0 nothing new (idle, or still running); 1 its
// run is now the current one and the previous run is kept, retired, until
// mech_tui_live_release (or the next poll that returns 1); -1 it failed (message in mech_tui_live_error; the
// current run is unchanged). Joins the finished thread.
int mech_tui_live_poll(mech_tui_live *s);
// Frees the run retired by poll: call once no view points into it.
void mech_tui_live_release(mech_tui_live *s);
// The last failure's message ("" when the last forward succeeded).
const char *mech_tui_live_error(const mech_tui_live *s);
// The current finished run (borrowed, NULL before the first), its ids and
// T, the prompt text it ran, and its head scores [MECH_TUI_SCORE_KINDS][L*NH]
// (NULL when T < 2). Valid until the next poll that returns 1 + release.
const mech_run *mech_tui_live_run(const mech_tui_live *s);
// Builds the lens view of the current run in the background (the same
// thread slot as a forward: while it runs a forward is refused as busy, and
// the reverse). mech_tui_live_poll returns 2 when it is done (then
// mech_tui_live_take_lens), -2 when it failed (mech_tui_live_error).
// Errors: MECH_ERR_ARG (busy, or the run kept no residual stream), MECH_ERR_NOMEM.
mech_status mech_tui_live_lens_start(mech_tui_live *s, mech_err *err);
int mech_tui_live_busy_lens(const mech_tui_live *s);
// Moves the finished lens view into dst (deinitialising what dst held).
void mech_tui_live_take_lens(mech_tui_live *s, mech_tui_lens *dst);
// The size of the all-heads grid (the window's width, its height less the
// title and the footer): a forward started afterwards also pools the
// grid's thumbnails for it on its thread (0 x 0: it does not).
void mech_tui_live_set_grid_size(mech_tui_live *s, int w, int h);
// Moves the thumbnails the current run's forward pooled into a (when its
// pooling and difference settings match: max pooling, no difference). 1 when it did.
int mech_tui_live_take_thumbs(mech_tui_live *s, mech_tui_attn *a);
// The tokenizer the session names tokens with (NULL for a compiled model).
const mech_tokenizer *mech_tui_live_tokenizer(const mech_tui_live *s);
// 0 when the model's tokens have no text (no tokenizer, not compiled:
// mech_tokenizer_gpt2_fits): the views show ids alone.
int mech_tui_live_has_text(const mech_tui_live *s);
// 1 when the current run cached the logit lens's hooks (mech_lens_cache).
int mech_tui_live_has_lens(const mech_tui_live *s);
const int32_t *mech_tui_live_ids(const mech_tui_live *s, int *T);
const char *mech_tui_live_text(const mech_tui_live *s);
const double *mech_tui_live_scores(const mech_tui_live *s);
const mech_model *mech_tui_live_model(const mech_tui_live *s);
// Seconds the current run's forward took (in the background).
double mech_tui_live_seconds(const mech_tui_live *s);
// A token as text into b (appended): a compiled model's program names (BOS,
// the vocab value as JSON, PAD), else the token's bytes, as a JSON string
// when quoted (" Mary" in quotes, as `mech run` prints it), or <id> (an id
// the tokenizer lacks); a model without a text tokenizer (mech_tokenizer_gpt2_fits):
// the id in decimal.
void mech_tui_live_token_text(const mech_tui_live *s, int32_t id, int quoted, mech_buf *b);
// The k most likely next tokens after position pos of the current run, best
// first (ties: the lower id first, as `mech run`), with their logits and
// probabilities (softmax of the row, in double). Returns how many (0
// without a run or for pos outside it).
int mech_tui_live_topk(const mech_tui_live *s, int pos, int k, int32_t *ids, float *logits, double *probs);
// Writes the current run to the database at db_path through data/ in one
// transaction: a run of kind "live" with the model path (and hash),
// cmdline, the prompt (item 0, role "prompt"), the top-k at pos (site
// "logits", pos, token, rank, metrics "prob" and "logit"), every head's
// scores (site "heads", metrics as `mech heads`) and the tensor
// "head_scores" [3, L, NH]; status "done". A failure rolls back and marks
// the run failed; runs already there are untouched. OUT: *run_id.
// Errors: MECH_ERR_ARG (no run yet, or a forward is running), those of
// mech_store_open and the writes.
mech_status mech_tui_live_save(const mech_tui_live *s, const char *db_path, const char *model_path,
                               const char *cmdline, int pos, int k, int64_t *run_id, mech_err *err);

#define MECH_TUI_LIVE_K 10

// The Live view's state: the session (borrowed) and the editor.
typedef struct mech_tui_liveview {
    mech_tui_live *s;     // borrowed (owned by the command)
    mech_tui_editor ed;
    int editing;          // keys go to the editor
    int pos;              // the selected token (top-k after it)
    int tok_top;          // first token row shown
    int page;             // token rows shown in the last render
    char message[256];    // the last action's outcome (saved, refused, failed)
} mech_tui_liveview;

// Reaction flags of the live view beyond the common ones.
enum {
    MECH_TUI_LIVE_RUN = 128,  // Enter in the editor: run the editor's text
    MECH_TUI_LIVE_SAVE = 256, // S: save what is on screen as a run
};

// Not editing: h l Left Right select a token, Home End, e / Enter / i edit,
// S save (MECH_TUI_LIVE_SAVE). Editing: the editor's keys, Enter runs
// (MECH_TUI_LIVE_RUN; editing ends), Esc leaves the editor without running.
int mech_tui_liveview_key(mech_tui_liveview *v, int key);
// The editor line, the progress or the last error, the tokens (text and
// id, the selected one marked) and the top-k after the selected token.
void mech_tui_liveview_render(mech_tui_liveview *v, mech_tui_grid *g, int y0, int h);
void mech_tui_liveview_deinit(mech_tui_liveview *v);
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
    char method[16];     // the params' "method" ("attrib": attribution patching); "" for an exact run
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

// --- Training view: a train run's curves as a chart ---------------------------
// (tui/view_train.c). One curve at a time (loss, learning rate, gradient
// norm) drawn with upper-half blocks, x = step, the cursor on a step, the
// run's settings and held-out scores beside it.

typedef enum mech_tui_train_curve {
    MECH_TUI_TRAIN_LOSS = 0,
    MECH_TUI_TRAIN_LR,
    MECH_TUI_TRAIN_GRAD_NORM,
    MECH_TUI_TRAIN_CURVES_
} mech_tui_train_curve;

#define MECH_TUI_TRAIN_SIDE 20 // side-panel lines at most

typedef struct mech_tui_train {
    int64_t id;
    char title[240];        // run, task, steps, final loss; or why it cannot be shown
    int n;                  // steps stored
    int *step;              // [n] the step numbers (the results' item), ascending (owned)
    double *val[MECH_TUI_TRAIN_CURVES_]; // [curve][n] NaN where a row is missing (owned)
    double eval_token_acc, eval_seq_acc, eval_loss; // held-out scores, NaN when not stored
    char side[MECH_TUI_TRAIN_SIDE][64]; // the settings panel's lines
    int n_side;
    int curve;              // mech_tui_train_curve shown
    int log_y;              // log10 y axis (non-positive values are not drawn)
    int cur;                // cursor: index into step
    int cols;               // chart columns at the last render (h / l step by column)
    int panel_flip;         // s: the settings panel hidden (wide windows) / shown (narrow ones)
} mech_tui_train;

// Reads train run id of the database at path (read-only) into v,
// replacing what it held. Errors: as mech_store_open_read, MECH_ERR_RANGE
// (no such run), MECH_ERR_ARG (not a train run), MECH_ERR_DB, MECH_ERR_NOMEM.
mech_status mech_tui_train_load(const char *path, int64_t id, mech_tui_train *v, mech_err *err);
void mech_tui_train_deinit(mech_tui_train *v);
// The steps [*i0, *i1) (indices into v->step) that chart column col of
// cols columns covers: the steps split evenly over the columns; with fewer
// steps than columns a step spans several columns.
void mech_tui_train_span(const mech_tui_train *v, int col, int cols, int *i0, int *i1);
// The first column of cols whose span holds step index i (-1 outside).
int mech_tui_train_col(const mech_tui_train *v, int i, int cols);
// The smallest and largest value of the shown curve over column col's steps
// (log axis: positive values only). Returns how many values there were (0:
// the column is empty, *lo and *hi NaN).
int mech_tui_train_range(const mech_tui_train *v, int col, int cols, double *lo, double *hi);
// The y axis: the shown curve's smallest and largest value over every step
// (log axis: positive ones). 0 when there is none.
int mech_tui_train_axis(const mech_tui_train *v, double *lo, double *hi);
// Keys: h l Left Right the previous / next chart column, , . one step,
// g G Home End first / last step, c the next curve, 1 2 3 loss / lr /
// grad_norm, y log / linear axis, s the settings panel shown / hidden;
// Esc and q leave (MECH_TUI_QUIT).
int mech_tui_train_key(mech_tui_train *v, int key);
void mech_tui_train_render(mech_tui_train *v, mech_tui_grid *g, int y0, int h);

// --- The application ------------------------------------------------------

typedef enum mech_tui_view {
    MECH_TUI_VIEW_RUNS = 0,
    MECH_TUI_VIEW_HEAD,
    MECH_TUI_VIEW_GRID,
    MECH_TUI_VIEW_TOKENS,
    MECH_TUI_VIEW_RUN, // a stored run opened from the runs list
    MECH_TUI_VIEW_CIRCUIT, // an acdc or acdc-sweep run opened from the runs list
    MECH_TUI_VIEW_LENS, // the live model's lens, or a stored lens run
    MECH_TUI_VIEW_PROGRAM, // a compiled RASP model's program and layers
    MECH_TUI_VIEW_PATCH,  // a patch run (tui/view_patch.c)
    MECH_TUI_VIEW_ATTRIB, // an attrib run or the live prompt's attribution (tui/view_attrib.c)
    MECH_TUI_VIEW_LIVE, // the prompt editor, tokens and top-k (with --model)
    MECH_TUI_VIEW_TRAIN, // a train run's curves (tui/view_train.c)
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
    mech_tui_circuit circuit; // the opened ACDC run (view MECH_TUI_VIEW_CIRCUIT)
    int has_lens;           // the live model's lens exists (lens, built from lens_src when first shown)
    int lens_stored;        // the lens view shows lens_run (a stored run), not lens
    mech_tui_lens lens, lens_run;
    mech_tui_lens_live lens_src;
    int has_program;        // the live model is a compiled RASP model
    mech_tui_program program;
    mech_tui_patch patch;   // the opened patch run (view MECH_TUI_VIEW_PATCH)
    mech_tui_attrib attrib, live_attrib; // the opened attrib run; the live prompt's (n_comp 0: none)
    mech_tui_train train;   // the opened train run (view MECH_TUI_VIEW_TRAIN)
    int attrib_live;        // the attribution view shows live_attrib (else attrib)
    char model_name[64];
    char status[1400];      // a one-off message in the footer (the export's path); cleared by the next key
    // the live session (with --model): the view, and what saving needs
    int has_live;
    int live_auto_head;     // the first run opens the head view (until a key moves away)
    mech_tui_liveview live;
    const char *model_path; // borrowed
    const char *cmdline;    // borrowed: recorded with a saved run
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
// The live session's finished forward (main thread): takes it (poll) and
// points every view that reads the run at it (the attention views'
// patterns, tokens and scores; the place where other views built from the
// run, e.g. the lens and attribution views, are rebuilt), then frees the
// previous run. Returns MECH_TUI_REDRAW when something changed on screen
// (also while a forward runs: its progress).
int mech_tui_live_apply(mech_tui_app *app);
// Shows the live lens: built in the background by the session when there is
// one (the view says so meanwhile), else at once (mech_tui_lens_ensure).
void mech_tui_app_live_lens(mech_tui_app *app);
// 1 while the live session runs a forward (the input loop then wakes often).
int mech_tui_app_busy(const mech_tui_app *app);
// The live view's keys with the application around it: runs the editor's
// text (Enter), saves (S: to db_path, then reloads the runs). Called by
// mech_tui_app_key for the live view.
int mech_tui_live_app_key(mech_tui_app *app, int key);

// Draws g on the current curses screen (one the caller made with newterm)
// and refreshes it; the first call sets up the colours. For benchmarks that
// count the bytes a frame sends; mech_tui_main draws by itself.
void mech_tui_term_draw(const mech_tui_grid *g);

// Runs the interface in the terminal until q. The terminal is restored on
// every exit path (also SIGINT, SIGTERM, SIGHUP, SIGSEGV). Returns 0, or 1
// when the terminal cannot be used (message on stderr).
int mech_tui_main(mech_tui_app *app);

#ifdef __cplusplus
}
#endif
#endif
