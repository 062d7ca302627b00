/*
** tui/term.c: the only curses code: terminal set-up and restore, colour
** roles (true 256-colour ramp, 8 colours, or attributes only under NO_COLOR
** or a monochrome terminal, where the glyph ramp still shows the heatmap),
** drawing the cell grid, and the input loop. ncurses sends only the cells
** that changed, so an idle screen sends nothing.
**
** Invariant: after mech_tui_main returns, or the process dies of SIGINT,
** SIGTERM, SIGHUP, SIGSEGV, SIGBUS, SIGFPE or SIGABRT, endwin() has run.
*/
#include "tui/tui.h"

#include <curses.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

// heat pairs: PAIR_HEAT0 + level; a difference heatmap's: PAIR_POS0 / PAIR_NEG0 + level
enum { PAIR_TITLE = 1, PAIR_ERROR, PAIR_HEAT0, PAIR_POS0 = PAIR_HEAT0 + MECH_TUI_LEVELS,
       PAIR_NEG0 = PAIR_POS0 + MECH_TUI_LEVELS };
static int use_color;
static attr_t role_attr[MECH_TUI_ROLE_COUNT_];

// viridis-like sequential ramp in the xterm 256-colour cube (dark purple,
// blue, teal, green, yellow): perceptually ordered and colour-blind safe
static const short ramp256[MECH_TUI_LEVELS] = {234, 53, 61, 24, 31, 37, 36, 71, 149, 226};
static const short ramp8[MECH_TUI_LEVELS] = {COLOR_BLACK, COLOR_BLUE, COLOR_BLUE, COLOR_MAGENTA, COLOR_MAGENTA,
                                             COLOR_CYAN, COLOR_CYAN, COLOR_GREEN, COLOR_YELLOW, COLOR_YELLOW};

// the diverging palette of differences: orange-red above zero, blue below
// (red/blue stays apart for the common colour blindnesses), darker near zero
static const short pos256[MECH_TUI_LEVELS] = {234, 52, 88, 124, 160, 166, 202, 208, 214, 220};
static const short neg256[MECH_TUI_LEVELS] = {234, 17, 18, 19, 20, 26, 32, 38, 45, 51};

static void colors_init(void) {
    const char *nc = getenv("NO_COLOR");
    use_color = has_colors() && !(nc && *nc) && start_color() == OK;
    role_attr[MECH_TUI_TITLE] = A_BOLD;
    role_attr[MECH_TUI_HEADER] = A_BOLD;
    role_attr[MECH_TUI_SEL] = A_REVERSE;
    role_attr[MECH_TUI_CROSS] = A_UNDERLINE;
    role_attr[MECH_TUI_DIM] = A_DIM;
    role_attr[MECH_TUI_FOOTER] = A_REVERSE;
    role_attr[MECH_TUI_ERROR] = A_BOLD;
    if (!use_color) return;
    use_default_colors();
    init_pair(PAIR_TITLE, COLOR_CYAN, -1);
    init_pair(PAIR_ERROR, COLOR_RED, -1);
    role_attr[MECH_TUI_TITLE] |= COLOR_PAIR(PAIR_TITLE);
    role_attr[MECH_TUI_ERROR] |= COLOR_PAIR(PAIR_ERROR);
    for (int l = 0; l < MECH_TUI_LEVELS; l++) {
        short bg = COLORS >= 256 ? ramp256[l] : ramp8[l];
        // the glyph stays readable on its background: dark on the bright end
        init_pair((short)(PAIR_HEAT0 + l), l >= MECH_TUI_LEVELS - 3 ? COLOR_BLACK : COLOR_WHITE, bg);
        int bright = l >= MECH_TUI_LEVELS - 3;
        init_pair((short)(PAIR_POS0 + l), bright ? COLOR_BLACK : COLOR_WHITE,
                  COLORS >= 256 ? pos256[l] : l ? COLOR_RED : COLOR_BLACK);
        init_pair((short)(PAIR_NEG0 + l), bright ? COLOR_BLACK : COLOR_WHITE,
                  COLORS >= 256 ? neg256[l] : l ? COLOR_BLUE : COLOR_BLACK);
    }
}

static chtype cell_ch(const mech_tui_cell *c) {
    chtype ch = (chtype)(unsigned char)c->ch;
    if (c->heat) {
        int base = c->sign == 1 ? PAIR_POS0 : c->sign == 2 ? PAIR_NEG0 : PAIR_HEAT0;
        attr_t a = use_color ? COLOR_PAIR(base + c->level) : 0;
        if (c->role == MECH_TUI_SEL) a |= A_REVERSE | A_BOLD;
        else if (c->role == MECH_TUI_CROSS) a |= A_UNDERLINE;
        return ch | a;
    }
    return ch | role_attr[c->role < MECH_TUI_ROLE_COUNT_ ? c->role : 0];
}

static void draw(const mech_tui_grid *g) {
    for (int y = 0; y < g->h; y++)
        for (int x = 0; x < g->w; x++) {
            // the bottom-right cell would scroll the screen on some terminals
            if (y == g->h - 1 && x == g->w - 1) break;
            mvaddch(y, x, cell_ch(&g->cells[y * g->w + x]));
        }
    refresh();
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
    term_screen = newterm(NULL, stdout, stdin);
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
