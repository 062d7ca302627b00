/*
** cli/progress.c: one progress line on stderr for long commands (items
** done, rate, ETA), redrawn at most ten times a second, and only when
** stderr is a terminal, so logs and pipes stay clean.
*/
#include "cli/cli.h"

#include <unistd.h>

void cli_progress_start(cli_progress *p, const char *what, int64_t total) {
    p->what = what, p->total = total, p->t0 = mech_now(), p->last = 0, p->shown = 0;
    p->tty = isatty(2);
}

static void fmt_time(char *buf, size_t cap, double s) {
    if (s < 0 || s > 1e7) snprintf(buf, cap, "?");
    else if (s < 10) snprintf(buf, cap, "%.1fs", s);
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, cap, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

void cli_estimate(FILE *f, int64_t items, const char *item, int64_t sites, double first_s) {
    char total[32];
    fmt_time(total, sizeof total, first_s * (double)items);
    fprintf(f, "estimate: %lld %s%s x %lld patched site%s; the first %s took %.3g s, so about %s in all\n",
            (long long)items, item, items == 1 ? "" : "s", (long long)sites, sites == 1 ? "" : "s", item, first_s, total);
}

void cli_progress_update(cli_progress *p, int64_t done) {
    cli_progress_detail(p, done, NULL);
}

void cli_progress_detail(cli_progress *p, int64_t done, const char *detail) {
    if (!p->tty) return;
    double t = mech_now();
    if (done < p->total && t - p->last < 0.1) return;
    p->last = t;
    double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
    char eta[32];
    fmt_time(eta, sizeof eta, rate > 0 ? (double)(p->total - done) / rate : -1);
    if (detail)
        fprintf(stderr, "\r\033[K%s: %lld/%lld, %s, ETA %s", p->what, (long long)done, (long long)p->total, detail, eta);
    else
        fprintf(stderr, "\r\033[K%s: %lld/%lld (%.1f/s, ETA %s)", p->what, (long long)done, (long long)p->total, rate, eta);
    p->shown = 1;
}

void cli_progress_end(cli_progress *p) {
    if (p->shown) fprintf(stderr, "\r\033[K");
    p->shown = 0;
}
