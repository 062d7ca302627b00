/*
** tests/support/tmux.c: see tmux.h.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"
#include "tests/support/tmux.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

char tmux_sock[64], tmux_screen[65536], tmux_bin[600];
double tmux_timeout_s = 15;
static char pidfile[600];

int tmux_sh(char *out, size_t cap, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0, r;
    char tmp[4096];
    while ((r = fread(tmp, 1, sizeof tmp, p)) > 0)
        for (size_t i = 0; i < r; i++)
            if (out && n + 1 < cap) out[n++] = tmp[i];
    if (out && cap) out[n] = 0;
    return pclose(p);
}

double tmux_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void tmux_init(void) {
    const char *b = getenv("MECH_BIN");
    snprintf(tmux_bin, sizeof tmux_bin, "%s", b && *b ? b : "./mech");
    const char *san = getenv("MECH_SANITIZED");
    if (san && *san) tmux_timeout_s = 60;
}

int tmux_have(void) {
    if (tmux_sh(NULL, 0, "command -v tmux >/dev/null 2>&1") == 0) return 1;
    print_message("tmux is not installed: skipping the terminal tests (apt-get install tmux)\n");
    return 0;
}

const char *tmux_capture(int escapes) {
    tmux_sh(tmux_screen, sizeof tmux_screen, "tmux -L %s capture-pane -p %s -t t 2>/dev/null", tmux_sock,
            escapes ? "-e" : "");
    return tmux_screen;
}

void tmux_wait_for(const char *want) {
    double t0 = tmux_now();
    for (;;) {
        tmux_capture(0);
        if (strstr(tmux_screen, want)) return;
        if (tmux_now() - t0 > tmux_timeout_s)
            fail_msg("no \"%s\" on the screen after %.0f s; it shows:\n%s", want, tmux_timeout_s, tmux_screen);
        usleep(30000);
    }
}

void tmux_wait_gone(const char *text) {
    double t0 = tmux_now();
    for (;;) {
        tmux_capture(0);
        if (!strstr(tmux_screen, text)) return;
        if (tmux_now() - t0 > tmux_timeout_s)
            fail_msg("\"%s\" still on the screen after %.0f s; it shows:\n%s", text, tmux_timeout_s, tmux_screen);
        usleep(30000);
    }
}

void tmux_keys(const char *k) { tmux_sh(NULL, 0, "tmux -L %s send-keys -t t %s", tmux_sock, k); }

const char *tmux_pidfile(void) { return pidfile; }

void tmux_start_env(const char *env, int w, int h, const char *args) {
    tmux_stop(); // a failed test may have left its session
    // a fresh server per session: reusing a socket right after kill-server races
    static int n_started;
    snprintf(tmux_sock, sizeof tmux_sock, "mech-test-%d-%d", (int)getpid(), n_started++);
    char script[600];
    snprintf(pidfile, sizeof pidfile, "%s", mech_test_tmpn("tui.pid"));
    snprintf(script, sizeof script, "%s", mech_test_tmpn("tui.sh"));
    unlink(pidfile);
    FILE *f = fopen(script, "w");
    assert_non_null(f);
    fprintf(f,
            "trap : INT\n" // Ctrl-C reaches the whole foreground group: the wrapper stays
            "s=$(stty -g)\n"
            "%s sh -c 'echo $$ >%s; exec \"$0\" \"$@\"' %s tui %s\n"
            "rc=$?\n"
            "if [ \"$(stty -g)\" = \"$s\" ]; then echo TTY-RESTORED rc=$rc; else echo TTY-BROKEN rc=$rc; fi\n"
            "sleep 120\n",
            env, pidfile, tmux_bin, args);
    fclose(f);
    int rc = tmux_sh(NULL, 0, "tmux -L %s -f /dev/null new-session -d -s t -x %d -y %d 'sh %s'", tmux_sock, w, h,
                     script);
    assert_int_equal(rc, 0);
}

void tmux_start(int w, int h, const char *args) { tmux_start_env("", w, h, args); }

void tmux_stop(void) {
    if (tmux_sock[0]) tmux_sh(NULL, 0, "tmux -L %s kill-server 2>/dev/null", tmux_sock);
}

void tmux_assert_restored(const char *rc_text) {
    char want[64], alt[64];
    snprintf(want, sizeof want, "TTY-RESTORED %s", rc_text);
    tmux_wait_for(want);
    tmux_sh(alt, sizeof alt, "tmux -L %s display -p -t t '#{alternate_on}'", tmux_sock);
    assert_string_equal(alt, "0\n");
}
