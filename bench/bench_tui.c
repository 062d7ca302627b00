/*
** bench/bench_tui.c: the interface's speed on GPT-2 small (random weights)
** with a 1024-token prompt at 200 x 60: for each action, the median time
** from the key to the finished frame (mech_tui_app_key + mech_tui_app_render
** + the curses draw of tui/term.c) and the bytes that frame writes to the
** terminal; and the time to open a database of 1,000 runs
** (mech_tui_runs_load + the first frame of the runs list).
**
** The bytes are real: ncurses (newterm, TERM xterm-256color) draws into a
** temporary file, and a frame's bytes are the growth of that file. (ncurses
** writes to the descriptor of its output FILE, so a counting stdio cookie
** would see nothing; a regular file counts exactly.) ncurses sends only the
** cells that changed since the last frame, as it does on a real terminal.
**
** Targets (issue 10): every key <= 16 ms, a cursor move or scroll <= 10 KB,
** opening 1,000 runs <= 100 ms.
*/
#include "core/core.h"
#include "data/data.h"
#include "interp/interp.h"
#include "tui/tui.h"
#include "bench/bench.h"

#include <curses.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NTOK 1024
#define COLS_W 200
#define ROWS_H 60

static FILE *out;           // what ncurses writes
static mech_tui_grid grid;

static void die(const char *what, const mech_err *err) {
    fprintf(stderr, "bench_tui: %s: %s\n", what, err ? err->msg : "failed");
    exit(1);
}

// This thread's CPU time: on a shared machine the wall time also counts
// the waits for a core; the CPU time is what the frame itself costs.
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double last_cpu; // the CPU seconds of the last frame

static long out_bytes(void) {
    struct stat sb;
    return fstat(fileno(out), &sb) ? 0 : (long)sb.st_size;
}

// One frame: the key (0: none), the render, the draw. OUT: seconds, bytes.
static void frame(mech_tui_app *app, int key, double *secs, long *bytes) {
    long b0 = out_bytes();
    double t0 = bench_now(), c0 = cpu_now();
    if (key) mech_tui_app_key(app, key);
    mech_tui_app_render(app, &grid);
    mech_tui_term_draw(&grid);
    *secs = bench_now() - t0;
    last_cpu = cpu_now() - c0;
    *bytes = out_bytes() - b0;
}

typedef struct figure {
    const char *what;
    double ms;     // median
    double cpu_ms; // median CPU time
    double kb;     // median bytes / 1000
    double max_kb; // largest frame
    double target_kb; // 0: no byte target
    double target_ms; // 0: no time target (the first frame of a view)
} figure;

static figure figs[16];
static int n_figs;

// n frames of key; median time and bytes.
static void measure(mech_tui_app *app, const char *what, int key, int n, double target_kb) {
    // every key once the forward is done: one frame at 60 Hz
    double t[64], b[64], c[64], mx = 0;
    for (int i = 0; i < n; i++) {
        long by;
        frame(app, key, &t[i], &by);
        c[i] = last_cpu;
        b[i] = (double)by;
        mx = b[i] > mx ? b[i] : mx;
    }
    figs[n_figs++] =
        (figure){what, bench_median(t, n) * 1e3, bench_median(c, n) * 1e3, bench_median(b, n) / 1e3, mx / 1e3, target_kb, 16};
}

static void record(const char *what, double secs, long bytes, double target_ms) {
    figs[n_figs++] = (figure){what, secs * 1e3, last_cpu * 1e3, bytes / 1e3, bytes / 1e3, 0, target_ms};
}

// --- the live model --------------------------------------------------------

static void live_attention(mech_tui_attn *a, mech_model **m_out, mech_run **run_out) {
    mech_config c = mech_config_gpt2_small();
    mech_err err = {0};
    mech_model *m = NULL;
    mech_run *run = NULL;
    mech_tokenizer *tok = NULL;
    if (mech_model_random(&c, 1, &m, &err)) die("random model", &err);
    if (mech_tokenizer_gpt2(&tok, &err)) die("tokenizer", &err);
    int32_t *ids = malloc(NTOK * sizeof *ids);
    // a prompt that repeats (so induction heads would have something to do)
    for (int t = 0; t < NTOK; t++) ids[t] = (int32_t)(1000 + (7919u * (unsigned)(t % 300)) % 40000u);
    double t0 = bench_now();
    if (mech_run_new(m, 1, NTOK, &run, &err) || mech_run_cache(run, "blocks.*.attn.hook_pattern", &err) ||
        mech_run_forward(run, ids, &err))
        die("forward", &err);
    fprintf(stderr, "(forward on %d tokens: %.1f s)\n", NTOK, bench_now() - t0);
    int L = c.n_layers, NH = c.n_heads;
    a->L = L, a->NH = NH, a->T = NTOK;
    a->causal = m->cfg.causal; // as the live session sets it
    a->layer_pat = mech_calloc((size_t)L, sizeof *a->layer_pat);
    a->tokens = mech_calloc(NTOK, sizeof *a->tokens);
    a->scores = mech_malloc((size_t)MECH_TUI_SCORE_KINDS * L * NH * sizeof *a->scores);
    if (!a->layer_pat || !a->tokens || !a->scores) die("out of memory", NULL);
    for (int l = 0; l < L; l++) {
        char hook[64];
        snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
        const mech_tensor *p = mech_run_get(run, hook);
        if (!p) die(hook, NULL);
        a->layer_pat[l] = p->data;
    }
    for (int k = 0; k < MECH_TUI_SCORE_KINDS; k++)
        if (mech_heads_score(m, run, ids, (mech_head_kind)k, MECH_HEAD_MUL, 0, 0, a->scores + (size_t)k * L * NH, &err))
            die("head scores", &err);
    for (int t = 0; t < NTOK; t++) {
        size_t len = 0;
        const char *s = mech_tokenizer_token(tok, ids[t], &len);
        char raw[64], lab[64];
        snprintf(raw, sizeof raw, "%.*s", (int)(s ? len : 0), s ? s : "");
        mech_tui_token_label(raw, lab, sizeof lab);
        a->tokens[t] = mech_strdup(lab);
    }
    free(ids);
    mech_tokenizer_free(tok);
    *m_out = m, *run_out = run;
}

// --- a database of 1,000 runs ------------------------------------------------

static void make_db(const char *path) {
    static const char *kinds[] = {"patch", "heads", "lens", "attrib"};
    mech_err err = {0};
    mech_store *s = NULL;
    unlink(path);
    char side[600];
    snprintf(side, sizeof side, "%s-wal", path), unlink(side);
    snprintf(side, sizeof side, "%s-shm", path), unlink(side);
    if (mech_store_open(path, &s, &err)) die(path, &err);
    for (int i = 0; i < 1000; i++) {
        int64_t id = 0;
        const char *kind = kinds[i % 4];
        if (mech_store_run_new(s, kind, "gpt2-small.safetensors", "mech bench", "{}", &id, &err) ||
            mech_store_begin(s, &err))
            die("run", &err);
        // patch: layer x position effects; heads: three scores per head; others: a few rows
        int n = i % 4 == 0 ? 12 * 16 : i % 4 == 1 ? 3 * 144 : 8;
        for (int r = 0; r < n; r++) {
            mech_result res = {.item = 0, .site = "resid_pre", .layer = r % 12, .pos = i % 4 == 0 ? r / 12 : -1,
                               .head = i % 4 == 1 ? (r / 3) % 12 : -1, .token = -1, .rank = -1,
                               .metric = i % 4 == 1 ? (r % 3 == 0 ? "previous_token" : r % 3 == 1 ? "duplicate_token" : "induction")
                                                    : i % 4 == 0 ? "effect" : "logit_diff",
                               .value = (double)((r * 37 + i * 11) % 1000) / 1000.0 - 0.5};
            if (mech_store_result(s, id, &res, &err)) die("result", &err);
        }
        if (mech_store_commit(s, &err) || mech_store_run_finish(s, id, "done", &err)) die("commit", &err);
    }
    mech_store_close(s);
}

int main(void) {
    mech_tui_app app = {0};
    mech_model *m = NULL;
    mech_run *run = NULL;
    double tb = bench_now();
    live_attention(&app.attn, &m, &run);
    app.has_attn = 1, app.view = MECH_TUI_VIEW_HEAD;
    snprintf(app.model_name, sizeof app.model_name, "gpt2-small (random weights, 12 layers x 12 heads, %d tokens)", NTOK);

    out = tmpfile();
    FILE *in = fopen("/dev/null", "r");
    if (!out || !in) die("tmpfile", NULL);
    SCREEN *scr = newterm("xterm-256color", out, in);
    if (!scr) die("newterm xterm-256color (is ncurses-base installed?)", NULL);
    set_term(scr);
    resizeterm(ROWS_H, COLS_W);
    if (mech_tui_grid_resize(&grid, ROWS_H, COLS_W)) die("grid", NULL);

    double s;
    long b;
    frame(&app, 0, &s, &b);
    record("first frame of the head view", s, b, 0);
    frame(&app, 0, &s, &b);
    record("the same frame again (idle)", s, b, 16);
    measure(&app, "cursor down (j, pooled)", 'j', 31, 10);
    measure(&app, "cursor right (l, pooled)", 'l', 31, 10);
    measure(&app, "next head (])", ']', 25, 0);
    // the grid: the live session's forward thread pools every thumbnail for
    // the window (mech_tui_attn_grid_prepare), so the first switch copies
    // them; without that (after a resize, p or D) the switch pools them
    double tp = bench_now();
    if (mech_tui_attn_grid_prepare(&app.attn, COLS_W, ROWS_H - 2)) die("thumbnails", NULL);
    fprintf(stderr, "(thumbnails pooled after the forward, as the live session does: %.1f ms)\n",
            (bench_now() - tp) * 1e3);
    frame(&app, 'g', &s, &b);
    record("switch to the all-heads grid (first)", s, b, 16);
    frame(&app, MECH_TUI_KEY_ENTER, &s, &b);
    mech_free(app.attn.thumbs), mech_free(app.attn.thumb_ok);
    app.attn.thumbs = NULL, app.attn.thumb_ok = NULL;
    frame(&app, 'g', &s, &b);
    record("grid switch, not pooled ahead (resize, p)", s, b, 0);
    double tg[15], bg[15], cg[15], mg = 0;
    for (int i = 0; i < 15; i++) {
        frame(&app, MECH_TUI_KEY_ENTER, &s, &b); // back to the head
        long by;
        frame(&app, 'g', &tg[i], &by);
        cg[i] = last_cpu;
        bg[i] = (double)by;
        mg = bg[i] > mg ? bg[i] : mg;
    }
    figs[n_figs++] = (figure){"switch to the all-heads grid (again)", bench_median(tg, 15) * 1e3, bench_median(cg, 15) * 1e3,
                              bench_median(bg, 15) / 1e3, mg / 1e3, 0, 16};
    measure(&app, "move in the grid (l)", 'l', 21, 10);
    frame(&app, MECH_TUI_KEY_ENTER, &s, &b);
    // zoom: one cell per token; then each j / l past the edge scrolls a row / column
    app.attn.q = app.attn.k = 0;
    frame(&app, 'z', &s, &b);
    record("zoom to one cell per token (z)", s, b, 16);
    for (int i = 0; i < 60; i++) frame(&app, 'j', &s, &b);
    measure(&app, "scroll down a row (j, zoomed)", 'j', 41, 10);
    for (int i = 0; i < 190; i++) frame(&app, 'l', &s, &b);
    measure(&app, "scroll right a column (l, zoomed)", 'l', 41, 10);
    measure(&app, "scroll a page (PgDn, zoomed)", MECH_TUI_KEY_PGDN, 9, 0);
    frame(&app, 't', &s, &b);
    measure(&app, "token view: next token (l)", 'l', 21, 10);
    endwin();
    delscreen(scr);
    fclose(in);
    fclose(out);

    // opening a database of 1,000 runs
    mkdir("build", 0755);
    const char *db = "build/bench-tui-runs.db";
    double t0 = bench_now();
    make_db(db);
    fprintf(stderr, "(wrote %s in %.1f s)\n", db, bench_now() - t0);
    double to[5], co[5];
    long ob = 0;
    // each open on a fresh screen: its first frame is a full one
    for (int i = 0; i < 5; i++) {
        out = tmpfile();
        in = fopen("/dev/null", "r");
        scr = newterm("xterm-256color", out, in);
        set_term(scr);
        resizeterm(ROWS_H, COLS_W);
        mech_tui_app r = {0};
        r.has_runs = 1, r.db_path = db, r.view = MECH_TUI_VIEW_RUNS;
        double t1 = bench_now(), c1 = cpu_now();
        mech_tui_run_row *rows = NULL;
        size_t n = 0;
        mech_err err = {0};
        if (mech_tui_runs_load(db, &rows, &n, &err)) die(db, &err);
        if (n != 1000) die("the database does not hold 1000 runs", NULL);
        mech_tui_runs_set(&r.runs, rows, n);
        mech_tui_app_render(&r, &grid);
        mech_tui_term_draw(&grid);
        to[i] = bench_now() - t1;
        co[i] = cpu_now() - c1;
        ob = out_bytes();
        mech_tui_app_deinit(&r);
        endwin();
        delscreen(scr);
        fclose(in);
        fclose(out);
    }
    figs[n_figs++] = (figure){"open 1,000 runs (load + first frame)", bench_median(to, 5) * 1e3, bench_median(co, 5) * 1e3, ob / 1e3, ob / 1e3, 0, 100};

    printf("tui: GPT-2 small (random weights), %d-token prompt, %d x %d, TERM=xterm-256color\n", NTOK, COLS_W, ROWS_H);
    printf("%-40s %9s %9s %9s %9s   %s\n", "action", "ms", "cpu ms", "KB", "KB max", "target (ms: wall)");
    int over = 0;
    for (int i = 0; i < n_figs; i++) {
        const figure *f = &figs[i];
        char tgt[64] = "-";
        if (f->target_ms > 0 && f->target_kb > 0)
            snprintf(tgt, sizeof tgt, "<= %.0f ms, <= %.0f KB", f->target_ms, f->target_kb);
        else if (f->target_ms > 0) snprintf(tgt, sizeof tgt, "<= %.0f ms", f->target_ms);
        int bad = (f->target_ms > 0 && f->ms > f->target_ms) || (f->target_kb > 0 && f->kb > f->target_kb);
        over += bad;
        printf("%-40s %9.2f %9.2f %9.2f %9.2f   %s%s\n", f->what, f->ms, f->cpu_ms, f->kb, f->max_kb, tgt, bad ? "  OVER" : "");
    }
    printf("tui: %s (bench %.0f s)\n", over ? "some figures over their target (OVER)" : "every figure within its target",
           bench_now() - tb);
    fflush(stdout);
    mech_tui_grid_deinit(&grid);
    mech_tui_app_deinit(&app);
    mech_run_free(run);
    mech_model_free(m);
    return 0;
}
