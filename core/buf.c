/*
** core/buf.c: a growable byte buffer for messages, JSON and file contents.
** An allocation failure sets b->oom and turns later appends into no-ops, so
** callers check once at the end.
*/
#include "core/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int buf_reserve(mech_buf *b, size_t extra) {
    if (b->oom) return 0;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 1;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *d = mech_realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return 0;
    }
    b->data = d;
    b->cap = cap;
    return 1;
}

void mech_buf_append(mech_buf *b, const void *data, size_t n) {
    if (!buf_reserve(b, n)) return;
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = 0;
}

void mech_buf_puts(mech_buf *b, const char *s) { mech_buf_append(b, s, strlen(s)); }

void mech_buf_printf(mech_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof small) {
        mech_buf_append(b, small, (size_t)n);
        return;
    }
    if (!buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

size_t mech_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned min;
    if ((c & 0xE0) == 0xC0) len = 2, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    unsigned cp = c & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

void mech_buf_json_string(mech_buf *b, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    mech_buf_append(b, "\"", 1);
    size_t i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            mech_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7F) {
            switch (c) {
            case '\n': mech_buf_puts(b, "\\n"); break;
            case '\r': mech_buf_puts(b, "\\r"); break;
            case '\t': mech_buf_puts(b, "\\t"); break;
            default: mech_buf_printf(b, "\\u%04x", c);
            }
            i++;
        } else if (c < 0x80) {
            mech_buf_append(b, &u[i], 1);
            i++;
        } else {
            size_t len = mech_utf8_len(u + i, n - i);
            if (len) {
                mech_buf_append(b, &u[i], len);
                i += len;
            } else {
                mech_buf_printf(b, "\\u00%02x", c);
                i++;
            }
        }
    }
    mech_buf_append(b, "\"", 1);
}

void mech_buf_free(mech_buf *b) {
    mech_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
