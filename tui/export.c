/*
** tui/export.c: what a view shows, written to files: the grid as text (as
** tmux's capture-pane prints the screen) and as SVG (tui/svg.c), under a
** fresh name mech-<view>-<N>.<ext> that never replaces a file (O_EXCL).
*/
#include "tui/tui.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void mech_tui_grid_text(const mech_tui_grid *g, int flags, mech_buf *out) {
    int half_blocks = flags & MECH_TUI_TEXT_HALF;
    for (int y = 0; y < g->h; y++) {
        const mech_tui_cell *row = g->cells + (size_t)y * g->w;
        // the terminal layer never draws the bottom-right cell (it would
        // scroll some terminals), and capture-pane drops trailing blanks
        int end = y == g->h - 1 && (flags & MECH_TUI_TEXT_SCREEN) ? g->w - 1 : g->w;
        while (end > 0 && !(half_blocks && row[end - 1].half) && row[end - 1].ch == ' ') end--;
        for (int x = 0; x < end; x++) {
            if (half_blocks && row[x].half) mech_buf_puts(out, "\xe2\x96\x80"); // U+2580 upper half block
            else mech_buf_append(out, &row[x].ch, 1);
        }
        mech_buf_puts(out, "\n");
    }
}

mech_status mech_tui_export(const mech_tui_grid *g, const char *dir, const char *view, int svg, int half_blocks,
                            char *path, size_t cap, mech_err *err) {
    char name[48];
    size_t n = 0;
    for (const char *p = view ? view : "view"; *p && n + 1 < sizeof name; p++)
        name[n++] = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ? *p
                    : (*p >= 'A' && *p <= 'Z')                         ? (char)(*p - 'A' + 'a')
                                                                       : '-';
    name[n] = 0;
    if (!dir || !*dir) dir = ".";
    mech_buf b = {0};
    mech_status st = MECH_OK;
    if (svg) st = mech_tui_svg(g, &b);
    else mech_tui_grid_text(g, MECH_TUI_TEXT_SCREEN | (half_blocks ? MECH_TUI_TEXT_HALF : 0), &b);
    if (st || b.oom) {
        mech_buf_free(&b);
        return mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    }
    int fd = -1;
    for (int i = 1; i < 100000 && fd < 0; i++) {
        snprintf(path, cap, "%s/mech-%s-%d.%s", dir, name, i, svg ? "svg" : "txt");
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 && errno != EEXIST) {
            st = mech_err_set(err, MECH_ERR_IO, "%s: %s", path, strerror(errno));
            mech_buf_free(&b);
            return st;
        }
    }
    if (fd < 0) {
        mech_buf_free(&b);
        return mech_err_set(err, MECH_ERR_IO, "%s: every name mech-%s-N is taken", dir, name);
    }
    size_t off = 0;
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            st = mech_err_set(err, MECH_ERR_IO, "%s: %s", path, strerror(w < 0 ? errno : EIO));
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) && !st) st = mech_err_set(err, MECH_ERR_IO, "%s: %s", path, strerror(errno));
    if (st) unlink(path); // never leave half a file
    mech_buf_free(&b);
    return st;
}
