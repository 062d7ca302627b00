/*
** tests/support/tmux.h: driving the real `mech tui` binary in a real
** terminal: a detached tmux session of a fixed size per test, keys sent
** with send-keys, the screen read with capture-pane. Shared by every
** tests/test_tui_term*.c suite.
*/
#ifndef MECH_TEST_TMUX_H
#define MECH_TEST_TMUX_H

#include <stddef.h>

extern char tmux_sock[64];      // the current session's server socket
extern char tmux_screen[65536]; // the last capture
extern double tmux_timeout_s;   // how long tmux_wait_for polls (60 s under sanitizers)
extern char tmux_bin[600];      // the mech binary ($MECH_BIN, else ./mech)

// Runs a shell command; its stdout (first cap-1 bytes) into out when not
// NULL. Returns pclose's status.
int tmux_sh(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
double tmux_now(void);
// Sets tmux_bin and tmux_timeout_s from the environment; call in setup.
void tmux_init(void);
// 1 when tmux is installed, else prints why the tests are skipped.
int tmux_have(void);
// Polls the pane until it shows want; fails the test with the last screen after the timeout.
void tmux_wait_for(const char *want);
// Polls until the pane no longer shows text; fails after the timeout.
void tmux_wait_gone(const char *text);
// The pane now (also into tmux_screen); with colours (-e) when escapes.
const char *tmux_capture(int escapes);
// send-keys: k is passed to the shell as is ("j", "Enter", "'?'", "-l 'text'").
void tmux_keys(const char *k);
// Starts `env mech tui ARGS` in a w x h session; a wrapper prints
// "TTY-RESTORED rc=N" (or TTY-BROKEN) when mech ends, comparing stty -g.
// The program's pid goes to tmux_pidfile().
void tmux_start_env(const char *env, int w, int h, const char *args);
void tmux_start(int w, int h, const char *args);
void tmux_stop(void);
const char *tmux_pidfile(void);
// After exit: the wrapper's line (rc_text e.g. "rc=0") and the alternate screen left.
void tmux_assert_restored(const char *rc_text);

#endif
