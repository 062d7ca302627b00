/*
** tests/support/xml_check.h: a small well-formedness check of XML (the SVG
** exports), header-only so any suite can include it after <cmocka.h>
** without a Makefile change; and xmllint on top when it is installed.
*/
#ifndef MECH_TEST_XML_CHECK_H
#define MECH_TEST_XML_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline int is_name(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == ':' ||
           c == '_' || c == '.';
}

// An entity at p ("&amp;" ...): its length, 0 when it is not one of XML's five.
static inline int entity_len(const char *p) {
    static const char *ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < 5; i++)
        if (!strncmp(p, ents[i], strlen(ents[i]))) return (int)strlen(ents[i]);
    return 0;
}

// Why s is not one well-formed element (after an optional XML
// declaration), or NULL when it is: names, quoted attributes without '<' or
// a bare '&', text without '<', '>' or a bare '&', tags closed in order.
static inline const char *xml_problem(const char *s) {
    static char why[160];
    char stack[64][32];
    int depth = 0, roots = 0;
    const char *p = s;
#define XML_BAD(...) return (snprintf(why, sizeof why, __VA_ARGS__), why)
    if (!strncmp(p, "<?xml", 5)) {
        if (!(p = strstr(p, "?>"))) XML_BAD("an unterminated XML declaration");
        p += 2;
    }
    while (*p) {
        if (*p != '<') {
            if (*p == '>') XML_BAD("a bare '>' in text at offset %ld", (long)(p - s));
            if (*p == '&' && !entity_len(p)) XML_BAD("a bare '&' at offset %ld", (long)(p - s));
            if (!depth && !strchr(" \n\t\r", *p)) XML_BAD("text outside the root at offset %ld", (long)(p - s));
            p++;
            continue;
        }
        p++;
        int closing = *p == '/';
        if (closing) p++;
        char name[32];
        int n = 0;
        while (is_name(*p) && n < 31) name[n++] = *p++;
        name[n] = 0;
        if (!n) XML_BAD("a tag without a name at offset %ld", (long)(p - s));
        if (closing) {
            if (!depth || strcmp(stack[depth - 1], name)) XML_BAD("</%s> closes nothing open", name);
            depth--;
            while (*p == ' ') p++;
            if (*p++ != '>') XML_BAD("</%s> not closed by '>'", name);
            continue;
        }
        if (!depth && roots) XML_BAD("a second root <%s>", name);
        for (;;) {
            while (*p && strchr(" \n\t", *p)) p++;
            if (*p == '>' || (p[0] == '/' && p[1] == '>')) break;
            int an = 0;
            while (is_name(*p)) p++, an++;
            if (!an || *p++ != '=' || *p++ != '"') XML_BAD("<%s>: a malformed attribute near offset %ld", name, (long)(p - s));
            while (*p && *p != '"') {
                if (*p == '<') XML_BAD("<%s>: '<' in an attribute value", name);
                if (*p == '&' && !entity_len(p)) XML_BAD("<%s>: a bare '&' in an attribute value", name);
                p++;
            }
            if (*p++ != '"') XML_BAD("<%s>: an unterminated attribute value", name);
        }
        if (*p == '/') p += 2; // empty element
        else {
            p++;
            if (depth == 64) XML_BAD("nested too deeply");
            if (!depth) roots++;
            snprintf(stack[depth++], sizeof stack[0], "%s", name);
        }
    }
    if (depth) XML_BAD("<%s> is never closed", stack[depth - 1]);
    if (roots != 1) XML_BAD("%d root elements", roots);
#undef XML_BAD
    return NULL;
}

// Fails the test unless s is well-formed (xml_problem).
static inline void xml_check(const char *s) {
    const char *why = xml_problem(s);
    if (why) fail_msg("not well-formed XML: %s", why);
}

static inline void xmllint_check(const char *svg) {
    if (system("command -v xmllint >/dev/null 2>&1") != 0) return; // optional
    const char *path = mech_test_tmpn("check.svg");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(svg, f);
    fclose(f);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "xmllint --noout %s", path);
    assert_int_equal(system(cmd), 0);
    unlink(path);
}

#endif
