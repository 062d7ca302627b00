/*
** tui/term.c: the only curses code: terminal set-up and restore, colour
** modes (24-bit, 256 or 8 colours from tui/palette.c, or attributes only
** under NO_COLOR or on a monochrome terminal, where the glyph ramp still
** shows the heatmap), upper-half blocks for half cells on UTF-8 terminals,
** drawing the cell grid, the export keys and the input loop. ncurses sends
** only the cells that changed, so an idle screen sends nothing.
**
** Invariant: after mech_tui_main returns, or the process dies of SIGINT,
** SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGFPE or SIGABRT, endwin() has run.
*/
// the wide-character API (ncursesw): the upper-half block and extended pairs
#define NCURSES_WIDECHAR 1
#include "tui/tui.h"

#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <term.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t term_active, quit_signal;
static SCREEN *term_screen;

static void term_done(void) {
    if (!term_active) return;
    term_active = 0;
    endwin();
}

// SIGINT/SIGTERM/SIGHUP: the input loop notices the flag within one
// getch timeout and leaves through the normal path (no drawing here).
static void on_quit_signal(int sig) { quit_signal = sig; }

// A crash: endwin() is not async-signal-safe, but the process is dying and
// a usable terminal is worth the risk; then die of the same signal.
static void on_fatal_signal(int sig) {
    term_done();
    signal(sig, SIG_DFL);
    raise(sig);
}

static const int quit_sigs[] = {SIGINT, SIGTERM, SIGHUP};
static const int fatal_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGABRT};

static void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_quit_signal; // no SA_RESTART: getch returns at once
    for (size_t i = 0; i < sizeof quit_sigs / sizeof *quit_sigs; i++) sigaction(quit_sigs[i], &sa, NULL);
    sa.sa_handler = on_fatal_signal;
    sa.sa_flags = SA_RESETHAND;
    for (size_t i = 0; i < sizeof fatal_sigs / sizeof *fatal_sigs; i++) sigaction(fatal_sigs[i], &sa, NULL);
}

static void signals_restore(void) {
    for (size_t i = 0; i < sizeof quit_sigs / sizeof *quit_sigs; i++) signal(quit_sigs[i], SIG_DFL);
    for (size_t i = 0; i < sizeof fatal_sigs / sizeof *fatal_sigs; i++) signal(fatal_sigs[i], SIG_DFL);
}

// --- Colour -------------------------------------------------------------------

// What each cell looks like comes from tui/palette.c (mech_tui_cell_look);
// pairs are allocated on first use (alloc_pair). The palette has a few
// levels only, so a frame needs few pairs and ncurses still sends only the
// cells that changed.
static int color_mode;  // mech_tui_colors
static int half_blocks; // draw half cells as U+2580 (UTF-8 and colour)

static void look_cache_clear(void);

static void colors_init(void) {
    look_cache_clear();
    if (color_mode == MECH_TUI_COLORS_NONE) return;
    if (!has_colors() || start_color() != OK) {
        color_mode = MECH_TUI_COLORS_NONE, half_blocks = 0;
        return;
    }
    use_default_colors();
}

static void cell_cchar(const mech_tui_cell *c, cchar_t *out) {
    mech_tui_look k;
    mech_tui_cell_look(c, color_mode, half_blocks, &k);
    wchar_t wch[2] = {(wchar_t)k.ch, 0};
    attr_t a = (k.bold ? A_BOLD : 0) | (k.reverse ? A_REVERSE : 0) | (k.underline ? A_UNDERLINE : 0) |
               (k.dim ? A_DIM : 0);
    int pair = 0;
    if (k.fg >= 0 || k.bg >= 0) {
        pair = alloc_pair(k.fg, k.bg);
        if (pair < 0) pair = 0;
    }
    setcchar(out, wch, a, 0, &pair);
}

// A frame has few distinct cells (a role, or a heat level and sign) but
// 12,000 of them at 200 x 60: their looks are memoised, since working out
// each one (palette, alloc_pair's search) cost 13 ms a frame. Direct-mapped
// on the cell's bytes; cleared when the screen or the colour mode changes.
#define LOOK_CACHE 4096
static struct {
    mech_tui_cell key;
    cchar_t cc;
    int used;
} look_cache[LOOK_CACHE];

static void look_cache_clear(void) { memset(look_cache, 0, sizeof look_cache); }

static const cchar_t *cell_cached(const mech_tui_cell *c) {
    const unsigned char *b = (const unsigned char *)c;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof *c; i++) h = (h ^ b[i]) * 16777619u;
    unsigned slot = h % LOOK_CACHE;
    if (!look_cache[slot].used || memcmp(&look_cache[slot].key, c, sizeof *c)) {
        look_cache[slot].key = *c;
        look_cache[slot].used = 1;
        cell_cchar(c, &look_cache[slot].cc);
    }
    return &look_cache[slot].cc;
}

static void draw(const mech_tui_grid *g) {
    for (int y = 0; y < g->h; y++)
        for (int x = 0; x < g->w; x++) {
            // the bottom-right cell would scroll the screen on some terminals
            if (y == g->h - 1 && x == g->w - 1) break;
            mvadd_wch(y, x, cell_cached(&g->cells[y * g->w + x]));
        }
    refresh();
}

// --- Terminal type --------------------------------------------------------------

// COLORTERM says the terminal takes 24-bit colour, but ncurses emits it only
// for a terminfo entry with RGB (xterm-direct...), which few systems set as
// TERM. So the entry is made here: the user's own TERM entry plus RGB and
// setaf/setab writing 38;2;r;g;b, compiled by tic into a temporary
// directory that ncurses reads once (newterm) and that is then removed.
// tic runs without a shell (posix_spawnp), so no name is ever parsed as a
// command. Any failure leaves the caller on TERM (256 colours).
static int run_tic(const char *dir, const char *src) {
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa)) return -1;
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    char *argv[] = {"tic", "-x", "-o", (char *)dir, (char *)src, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, "tic", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) return -1;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

// tic files an entry under its first letter ("m") or, on some systems,
// its hex code ("6d"); both are tried.
static void rm_direct_term(const char *dir) {
    if (!dir[0]) return;
    char p[700];
    const char *sub[] = {"m", "6d"};
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s/mech-direct", dir, sub[i]);
        unlink(p);
        snprintf(p, sizeof p, "%s/%s", dir, sub[i]);
        rmdir(p);
    }
    snprintf(p, sizeof p, "%s/direct.ti", dir);
    unlink(p);
    rmdir(dir);
}

static int direct_term(const char *term, char *dir, size_t cap) {
    if (!term || !*term || strlen(term) > 100) return -1;
    // a name only: it goes into the entry's use= field
    for (const char *p = term; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-", *p)) return -1;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 400) tmp = "/tmp";
    snprintf(dir, cap, "%s/mech-tui-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        dir[0] = 0;
        return -1;
    }
    char src[700];
    snprintf(src, sizeof src, "%s/direct.ti", dir);
    FILE *f = fopen(src, "w");
    if (!f) return -1;
    fprintf(f,
            "mech-direct|%s with 24-bit colour,\n"
            "\tRGB, colors#0x1000000, pairs#0x10000,\n"
            "\tsetaf=\\E[38;2;%%p1%%{65536}%%/%%d;%%p1%%{256}%%/%%{255}%%&%%d;%%p1%%{255}%%&%%dm,\n"
            "\tsetab=\\E[48;2;%%p1%%{65536}%%/%%d;%%p1%%{256}%%/%%{255}%%&%%d;%%p1%%{255}%%&%%dm,\n"
            "\tuse=%s,\n",
            term, term);
    if (fclose(f)) return -1;
    return run_tic(dir, src);
}

// newterm on the terminal, choosing the colour mode (and for true colour
// on a TERM without it, the entry direct_term makes).
static SCREEN *term_open(void) {
    const char *term = getenv("TERM");
    int err = 0, has_rgb = 0, ncolors = -1;
    if (setupterm(NULL, STDOUT_FILENO, &err) == OK) {
        has_rgb = tigetflag("RGB") > 0;
        ncolors = tigetnum("colors");
        del_curterm(cur_term);
    }
    color_mode = mech_tui_colors_choose(getenv("MECH_TUI_COLORS"), getenv("NO_COLOR"), getenv("COLORTERM"), has_rgb,
                                        ncolors);
    SCREEN *s = NULL;
    if (color_mode == MECH_TUI_COLORS_24BIT && !has_rgb) {
        char dir[600] = "";
        if (direct_term(term, dir, sizeof dir) == 0) {
            const char *old = getenv("TERMINFO");
            char *saved = old ? strdup(old) : NULL;
            setenv("TERMINFO", dir, 1);
            s = newterm("mech-direct", stdout, stdin);
            if (saved) setenv("TERMINFO", saved, 1);
            else unsetenv("TERMINFO");
            free(saved);
        }
        rm_direct_term(dir);
        if (!s) color_mode = ncolors >= 256 ? MECH_TUI_COLORS_256 : ncolors >= 8 ? MECH_TUI_COLORS_8 : 0;
    }
    if (!s) s = newterm(NULL, stdout, stdin);
    // half blocks need a UTF-8 locale; under NO_COLOR the glyphs say it all
    const char *cs = nl_langinfo(CODESET);
    half_blocks = color_mode != MECH_TUI_COLORS_NONE && cs && !strcmp(cs, "UTF-8");
    return s;
}

// For benchmarks: the mode is chosen as mech_tui_main chooses it (a
// 256-colour terminal unless MECH_TUI_COLORS says otherwise), half blocks
// when the locale is UTF-8.
void mech_tui_term_draw(const mech_tui_grid *g) {
    static WINDOW *colours_ready; // the screen (its stdscr) the colours were set up on
    if (colours_ready != stdscr) {
        color_mode = mech_tui_colors_choose(getenv("MECH_TUI_COLORS"), getenv("NO_COLOR"), NULL, 0, 256);
        const char *cs = nl_langinfo(CODESET);
        half_blocks = color_mode != MECH_TUI_COLORS_NONE && cs && !strcmp(cs, "UTF-8");
        colors_init(), colours_ready = stdscr;
    }
    draw(g);
}

// --- Keys -------------------------------------------------------------------

static int map_key(int ch) {
    switch (ch) {
    case KEY_UP: return MECH_TUI_KEY_UP;
    case KEY_DOWN: return MECH_TUI_KEY_DOWN;
    case KEY_LEFT: return MECH_TUI_KEY_LEFT;
    case KEY_RIGHT: return MECH_TUI_KEY_RIGHT;
    case KEY_PPAGE: return MECH_TUI_KEY_PGUP;
    case KEY_NPAGE: return MECH_TUI_KEY_PGDN;
    case KEY_HOME: return MECH_TUI_KEY_HOME;
    case KEY_END: return MECH_TUI_KEY_END;
    case KEY_ENTER: case '\n': case '\r': return MECH_TUI_KEY_ENTER;
    case 27: return MECH_TUI_KEY_ESC;
    case '\t': return MECH_TUI_KEY_TAB;
    case KEY_BACKSPACE: case 127: case 8: return MECH_TUI_KEY_BACKSPACE;
    case KEY_DC: return MECH_TUI_KEY_DELETE;
    // bytes >= 0x80: UTF-8 typed into the prompt editor, one byte at a time
    default: return ch >= 32 && ch < 256 && ch != 127 ? ch : -1;
    }
}

// x / X: the grid on the screen (the last one drawn) to a file; the footer
// then says where it went, or why it could not.
static void export_screen(mech_tui_app *app, const mech_tui_grid *g, int svg) {
    char path[1200];
    mech_err err = {0};
    if (mech_tui_export(g, getenv("MECH_TUI_EXPORT_DIR"), mech_tui_app_view_name(app), svg, half_blocks, path,
                        sizeof path, &err))
        snprintf(app->status, sizeof app->status, "export failed: %s", err.msg);
    else snprintf(app->status, sizeof app->status, "wrote %s", path);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int mech_tui_main(mech_tui_app *app) {
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        fprintf(stderr, "mech tui: error: needs a terminal (standard input and output are not one)\n");
        return 1;
    }
    // the character set only: numbers keep their '.' (LC_NUMERIC stays "C")
    setlocale(LC_CTYPE, "");
    term_screen = term_open();
    if (!term_screen) {
        fprintf(stderr, "mech tui: error: cannot use the terminal '%s'\n", getenv("TERM") ? getenv("TERM") : "");
        return 1;
    }
    term_active = 1;
    quit_signal = 0;
    atexit(term_done);
    signals_install();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    timeout(250); // wakes the loop to refresh the runs and notice signals
    colors_init();

    mech_tui_grid g = {0};
    int rc = 0, dirty = 1;
    double last_reload = now_s();
    while (!quit_signal) {
        int H, W;
        // a finished background forward is taken over here, on this thread;
        // while one runs the loop wakes often to show its progress
        if (mech_tui_live_apply(app) & MECH_TUI_REDRAW) dirty = 1;
        timeout(mech_tui_app_busy(app) ? 100 : 250);
        getmaxyx(stdscr, H, W);
        if (H != g.h || W != g.w) dirty = 1;
        if (dirty) {
            if (mech_tui_grid_resize(&g, H, W)) {
                rc = 1;
                break;
            }
            mech_tui_app_render(app, &g);
            draw(&g);
            dirty = 0;
        }
        int ch = getch();
        if (ch == ERR) {
            // a database another process is writing: new runs and status
            // changes show up within a second
            if (app->has_runs && now_s() - last_reload >= 1.0) {
                last_reload = now_s();
                if (mech_tui_app_reload(app)) dirty = 1;
            }
            continue;
        }
        if (ch == KEY_RESIZE) {
            dirty = 1;
            continue;
        }
        int key = map_key(ch);
        if (key < 0) continue;
        int r = mech_tui_app_key(app, key);
        if (r & MECH_TUI_QUIT) break;
        if (r & (MECH_TUI_EXPORT_TXT | MECH_TUI_EXPORT_SVG)) export_screen(app, &g, r & MECH_TUI_EXPORT_SVG);
        if (r) dirty = 1;
    }
    mech_tui_grid_deinit(&g);
    term_done();
    delscreen(term_screen);
    term_screen = NULL;
    signals_restore();
    if (quit_signal) {
        // die of the signal, as a program without a handler would
        int sig = quit_signal;
        raise(sig);
        return 128 + sig;
    }
    return rc;
}
