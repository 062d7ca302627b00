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
const int32_t *mech_tui_live_ids(const mech_tui_live *s, int *T);
const char *mech_tui_live_text(const mech_tui_live *s);
const double *mech_tui_live_scores(const mech_tui_live *s);
const mech_model *mech_tui_live_model(const mech_tui_live *s);
// Seconds the current run's forward took (in the background).
double mech_tui_live_seconds(const mech_tui_live *s);
// A token as text into b (appended): a compiled model's program names (BOS,
// the vocab value as JSON, PAD), else the token's bytes, as a JSON string
// when quoted (" Mary" in quotes, as `mech run` prints it), or <id>.
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

// --- The application ------------------------------------------------------

typedef enum mech_tui_view {
    MECH_TUI_VIEW_RUNS = 0,
    MECH_TUI_VIEW_HEAD,
    MECH_TUI_VIEW_GRID,
    MECH_TUI_VIEW_TOKENS,
    MECH_TUI_VIEW_RUN, // a stored run opened from the runs list
    MECH_TUI_VIEW_LIVE, // the prompt editor, tokens and top-k (with --model)
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
// 1 while the live session runs a forward (the input loop then wakes often).
int mech_tui_app_busy(const mech_tui_app *app);
// The live view's keys with the application around it: runs the editor's
// text (Enter), saves (S: to db_path, then reloads the runs). Called by
// mech_tui_app_key for the live view.
int mech_tui_live_app_key(mech_tui_app *app, int key);

// Runs the interface in the terminal until q. The terminal is restored on
// every exit path (also SIGINT, SIGTERM, SIGHUP, SIGSEGV). Returns 0, or 1
// when the terminal cannot be used (message on stderr).
int mech_tui_main(mech_tui_app *app);

#ifdef __cplusplus
}
#endif
#endif
