/*
** tui/view_live.c: the Live view: a one-line prompt editor, the prompt's
** tokens (text and id, as `mech tokenize` numbers them) with a token
** cursor, and the top-k next tokens after the selected token, read from the
** live session's current run (tui/live.c). Also the one place where a
** finished live run is handed to the views that read it
** (mech_tui_live_apply), on the main thread.
*/
#include "tui/tui.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// --- The editor -------------------------------------------------------------

static int reserve(mech_tui_editor *e, size_t need) {
    if (need + 1 <= e->cap) return 0;
    size_t cap = e->cap ? e->cap : 64;
    while (cap < need + 1) cap *= 2;
    char *p = mech_realloc(e->text, cap);
    if (!p) return -1;
    if (!e->text) p[0] = 0; // the first allocation: an empty text
    e->text = p, e->cap = cap;
    return 0;
}

mech_status mech_tui_editor_set(mech_tui_editor *e, const char *s) {
    size_t n = strlen(s);
    if (reserve(e, n)) return MECH_ERR_NOMEM;
    memcpy(e->text, s, n + 1);
    e->len = e->cur = n;
    return MECH_OK;
}

const char *mech_tui_editor_text(const mech_tui_editor *e) { return e->text ? e->text : ""; }

void mech_tui_editor_deinit(mech_tui_editor *e) {
    mech_free(e->text);
    memset(e, 0, sizeof *e);
}

// Length of the character starting at byte i: a valid UTF-8 sequence, or 1.
static size_t char_len(const mech_tui_editor *e, size_t i) {
    size_t n = mech_utf8_len((const unsigned char *)e->text + i, e->len - i);
    return n ? n : 1;
}

// Start of the character that ends at byte i (i > 0): the furthest start
// of a valid sequence ending exactly at i, else the single byte before it.
static size_t char_before(const mech_tui_editor *e, size_t i) {
    for (size_t back = 4; back >= 2; back--)
        if (i >= back && mech_utf8_len((const unsigned char *)e->text + i - back, back) == back) return i - back;
    return i - 1;
}

int mech_tui_editor_key(mech_tui_editor *e, int key) {
    if ((key >= 32 && key < 127) || (key >= 0x80 && key <= 0xff)) {
        if (reserve(e, e->len + 1)) return MECH_TUI_NONE;
        memmove(e->text + e->cur + 1, e->text + e->cur, e->len - e->cur + 1);
        e->text[e->cur++] = (char)key;
        e->len++;
        // a multi-byte character arrives one byte at a time: the cursor
        // stays after the bytes typed, so the next one joins the sequence
        return MECH_TUI_REDRAW;
    }
    switch (key) {
    case MECH_TUI_KEY_BACKSPACE:
        if (e->cur > 0) {
            size_t s = char_before(e, e->cur);
            memmove(e->text + s, e->text + e->cur, e->len - e->cur + 1);
            e->len -= e->cur - s, e->cur = s;
        }
        break;
    case MECH_TUI_KEY_DELETE:
        if (e->cur < e->len) {
            size_t n = char_len(e, e->cur);
            memmove(e->text + e->cur, e->text + e->cur + n, e->len - e->cur - n + 1);
            e->len -= n;
        }
        break;
    case MECH_TUI_KEY_LEFT: if (e->cur > 0) e->cur = char_before(e, e->cur); break;
    case MECH_TUI_KEY_RIGHT: if (e->cur < e->len) e->cur += char_len(e, e->cur); break;
    case MECH_TUI_KEY_HOME: e->cur = 0; break;
    case MECH_TUI_KEY_END: e->cur = e->len; break;
    default: return MECH_TUI_NONE;
    }
    return MECH_TUI_REDRAW;
}

// --- Keys -------------------------------------------------------------------

static int n_tokens(const mech_tui_liveview *v) {
    int T = 0;
    if (v->s) mech_tui_live_ids(v->s, &T);
    return T;
}

int mech_tui_liveview_key(mech_tui_liveview *v, int key) {
    if (v->editing) {
        if (key == MECH_TUI_KEY_ENTER) {
            v->editing = 0;
            return MECH_TUI_REDRAW | MECH_TUI_LIVE_RUN;
        }
        if (key == MECH_TUI_KEY_ESC) {
            v->editing = 0;
            return MECH_TUI_REDRAW;
        }
        return mech_tui_editor_key(&v->ed, key);
    }
    int T = n_tokens(v), page = v->page > 1 ? v->page : 1;
    switch (key) {
    case 'e': case 'i': case MECH_TUI_KEY_ENTER: v->editing = 1, v->message[0] = 0; break;
    case 'h': case 'k': case MECH_TUI_KEY_LEFT: case MECH_TUI_KEY_UP: if (v->pos > 0) v->pos--; break;
    case 'l': case 'j': case MECH_TUI_KEY_RIGHT: case MECH_TUI_KEY_DOWN: if (v->pos + 1 < T) v->pos++; break;
    case MECH_TUI_KEY_PGUP: v->pos = v->pos > page ? v->pos - page : 0; break;
    case MECH_TUI_KEY_PGDN: v->pos = v->pos + page < T ? v->pos + page : T > 0 ? T - 1 : 0; break;
    case 'g': case MECH_TUI_KEY_HOME: v->pos = 0; break;
    case 'G': case MECH_TUI_KEY_END: v->pos = T > 0 ? T - 1 : 0; break;
    case 'S': return MECH_TUI_LIVE_SAVE | MECH_TUI_REDRAW;
    default: return MECH_TUI_NONE;
    }
    return MECH_TUI_REDRAW;
}

void mech_tui_liveview_deinit(mech_tui_liveview *v) {
    mech_tui_editor_deinit(&v->ed);
    memset(v, 0, sizeof *v);
}

// --- Drawing ----------------------------------------------------------------

// The editor on row y: "prompt> " then the text scrolled so the cursor
// shows, one cell per character (non-ASCII as '?'); the cursor cell in SEL.
static void render_editor(const mech_tui_liveview *v, mech_tui_grid *g, int y) {
    const mech_tui_editor *e = &v->ed;
    const char *lead = v->editing ? "prompt> " : "prompt: ";
    int x0 = mech_tui_grid_put(g, y, 0, v->editing ? MECH_TUI_HEADER : MECH_TUI_DIM, lead, -1);
    int room = g->w - x0 - 1;
    if (room < 1) return;
    const char *t = mech_tui_editor_text(e);
    // characters before the cursor, so the window starts where the cursor fits
    size_t n_before = 0;
    for (size_t i = 0; i < e->cur; i += char_len(e, i)) n_before++;
    size_t skip = n_before >= (size_t)room ? n_before - (size_t)room + 1 : 0, ci = 0;
    int x = x0;
    for (size_t i = 0; i <= e->len && x < g->w; ci++) {
        size_t n = i < e->len ? char_len(e, i) : 1;
        if (ci >= skip) {
            char c = i < e->len ? t[i] : ' ';
            char s[2] = {(unsigned char)c >= 32 && (unsigned char)c < 127 ? c : '?', 0};
            if (i == e->len) s[0] = ' ';
            mech_tui_grid_put(g, y, x, v->editing && i == e->cur ? MECH_TUI_SEL : MECH_TUI_TEXT, s, 1);
            x++;
        }
        if (i == e->len) break;
        i += n;
    }
}

static void render_status(const mech_tui_liveview *v, mech_tui_grid *g, int y) {
    char line[512];
    const mech_tui_live *s = v->s;
    int T = 0, done = 0, L = 0;
    double el = 0;
    mech_tui_live_progress(s, &T, &done, &L, &el);
    if (mech_tui_live_busy_lens(s)) {
        snprintf(line, sizeof line, "computing the lens of %d token%s in the background: %.1f s", T, T == 1 ? "" : "s",
                 el);
        mech_tui_grid_put(g, y, 0, MECH_TUI_HEADER, line, -1);
        return;
    }
    if (mech_tui_live_busy(s)) {
        static const char spin[] = "|/-\\";
        int bar = 20, fill = L ? done * bar / L : 0;
        char b[32];
        for (int i = 0; i < bar; i++) b[i] = i < fill ? '#' : '.';
        b[bar] = 0;
        snprintf(line, sizeof line, "running %d token%s: [%s] layer %d/%d (%d%%)  %.1f s %c", T, T == 1 ? "" : "s", b,
                 done, L, L ? 100 * done / L : 0, el, spin[(int)(el * 8) & 3]);
        mech_tui_grid_put(g, y, 0, MECH_TUI_HEADER, line, -1);
        return;
    }
    if (v->message[0]) {
        mech_tui_grid_put(g, y, 0, v->message[0] == '!' ? MECH_TUI_ERROR : MECH_TUI_HEADER,
                          v->message[0] == '!' ? v->message + 1 : v->message, -1);
        return;
    }
    if (mech_tui_live_error(s)[0]) {
        snprintf(line, sizeof line, "error: %s", mech_tui_live_error(s));
        mech_tui_grid_put(g, y, 0, MECH_TUI_ERROR, line, -1);
        return;
    }
    int n = 0;
    mech_tui_live_ids(s, &n);
    if (strcmp(mech_tui_editor_text(&v->ed), mech_tui_live_text(s)))
        snprintf(line, sizeof line, "edited, not run yet: Enter in the editor runs it (the tokens below are the last run's)");
    else if (v->editing) snprintf(line, sizeof line, "editing: Enter runs the prompt, Esc leaves the editor");
    else
        snprintf(line, sizeof line, "%d token%s, forward %.2f s  (e edits the prompt, S saves this as a run)", n,
                 n == 1 ? "" : "s", mech_tui_live_seconds(s));
    mech_tui_grid_put(g, y, 0, MECH_TUI_DIM, line, -1);
}

void mech_tui_liveview_render(mech_tui_liveview *v, mech_tui_grid *g, int y0, int h) {
    if (h < 1 || !v->s) return;
    char line[512];
    render_editor(v, g, y0);
    if (h < 2) return;
    render_status(v, g, y0 + 1);
    int T = 0;
    const int32_t *ids = mech_tui_live_ids(v->s, &T);
    if (h < 4 || !ids) return;
    if (v->pos >= T) v->pos = T - 1;
    if (v->pos < 0) v->pos = 0;
    // tokens on the left, the top-k on the right (below the tokens when narrow)
    int wide = g->w >= 80, lw = wide ? g->w * 2 / 5 : g->w, rows = h - 3;
    int krows = wide ? 0 : MECH_TUI_LIVE_K + 1 < rows / 2 ? MECH_TUI_LIVE_K + 1 : rows / 2;
    int trows = rows - krows;
    if (trows < 1) trows = 1;
    v->page = trows;
    if (v->pos < v->tok_top) v->tok_top = v->pos;
    if (v->pos >= v->tok_top + trows) v->tok_top = v->pos - trows + 1;
    int y = y0 + 2;
    // ids only (no tokenizer): the text column would repeat the id
    int text = mech_tui_live_has_text(v->s);
    snprintf(line, sizeof line, "tokens (%d)   pos  id%s", T, text ? "  text" : "");
    mech_tui_grid_put(g, y, 0, MECH_TUI_HEADER, line, lw - 1);
    mech_buf b = {0};
    for (int i = 0; i < trows && v->tok_top + i < T; i++) {
        int t = v->tok_top + i;
        b.len = 0;
        if (text) mech_tui_live_token_text(v->s, ids[t], 1, &b);
        mech_buf_append(&b, "", 0);
        snprintf(line, sizeof line, "%c %5d %6d  %s", t == v->pos ? '>' : ' ', t, (int)ids[t], b.data ? b.data : "");
        int sel = t == v->pos && !v->editing;
        mech_tui_grid_put(g, y + 1 + i, 0, sel ? MECH_TUI_SEL : MECH_TUI_TEXT, line, lw - 1);
        if (sel) mech_tui_grid_role(g, y + 1 + i, 0, lw - 1, MECH_TUI_SEL);
    }
    // the top-k after the selected token
    int kx = wide ? lw + 1 : 0, ky = wide ? y : y + 1 + trows, kw = g->w - kx;
    int32_t top[MECH_TUI_LIVE_K];
    float lg[MECH_TUI_LIVE_K];
    double pr[MECH_TUI_LIVE_K];
    int n = mech_tui_live_topk(v->s, v->pos, MECH_TUI_LIVE_K, top, lg, pr);
    b.len = 0;
    mech_tui_live_token_text(v->s, ids[v->pos], 1, &b);
    mech_buf_append(&b, "", 0);
    snprintf(line, sizeof line, "top %d after pos %d %s%s", n, v->pos, b.data ? b.data : "",
             kw >= 58 ? "" : ": logit, p");
    mech_tui_grid_put(g, ky, kx, MECH_TUI_HEADER, line, kw);
    for (int i = 0; i < n && ky + 1 + i < y0 + h; i++) {
        b.len = 0;
        if (text) mech_tui_live_token_text(v->s, top[i], 1, &b);
        mech_buf_append(&b, "", 0);
        if (!text) snprintf(line, sizeof line, "%2d. %6d  logit %9.4f  p %.4g", i + 1, (int)top[i], lg[i], pr[i]);
        else if (kw >= 58)
            snprintf(line, sizeof line, "%2d. %6d  %-14s  logit %9.4f  p %.4g", i + 1, (int)top[i], b.data ? b.data : "",
                     lg[i], pr[i]);
        else // narrow: the token cut to 12 columns, so logit and p still show
            snprintf(line, sizeof line, "%2d. %6d %-12.12s %9.4f %.3g", i + 1, (int)top[i], b.data ? b.data : "", lg[i],
                     pr[i]);
        mech_tui_grid_put(g, ky + 1 + i, kx, MECH_TUI_TEXT, line, kw);
    }
    mech_buf_free(&b);
}

// --- The application's side -------------------------------------------------

int mech_tui_app_busy(const mech_tui_app *app) { return app->live.s && mech_tui_live_busy(app->live.s); }

// Points the attention views at the session's current run: its patterns
// (borrowed, in place), token labels and head scores (copied). Everything
// is built first, so on failure the view is left as it was.
static mech_status attn_from_live(mech_tui_attn *a, const mech_tui_live *s) {
    const mech_model *m = mech_tui_live_model(s);
    const mech_run *run = mech_tui_live_run(s);
    const double *sc = mech_tui_live_scores(s);
    int L = m->cfg.n_layers, NH = m->cfg.n_heads, T = 0;
    const int32_t *ids = mech_tui_live_ids(s, &T);
    const float **lp = mech_calloc((size_t)L, sizeof *lp);
    char **toks = mech_calloc((size_t)T, sizeof *toks);
    double *scores = sc ? mech_malloc((size_t)MECH_TUI_SCORE_KINDS * L * NH * sizeof *scores) : NULL;
    mech_status st = !lp || !toks || (sc && !scores) ? MECH_ERR_NOMEM : MECH_OK;
    for (int l = 0; !st && l < L; l++) {
        char hook[64];
        snprintf(hook, sizeof hook, "blocks.%d.attn.hook_pattern", l);
        const mech_tensor *t = mech_run_get(run, hook); // (1, NH, T, T)
        if (!t) st = MECH_ERR_ARG;
        else lp[l] = t->data;
    }
    mech_buf b = {0};
    for (int i = 0; !st && i < T; i++) {
        char lab[64];
        b.len = 0;
        mech_tui_live_token_text(s, ids[i], 0, &b);
        mech_buf_append(&b, "", 0);
        mech_tui_token_label(b.data ? b.data : "", lab, sizeof lab);
        if (b.oom || !(toks[i] = mech_strdup(lab))) st = MECH_ERR_NOMEM;
    }
    mech_buf_free(&b);
    if (st) {
        for (int i = 0; toks && i < T; i++) mech_free(toks[i]);
        mech_free(toks), mech_free(lp), mech_free(scores);
        return st;
    }
    if (sc) memcpy(scores, sc, (size_t)MECH_TUI_SCORE_KINDS * L * NH * sizeof *scores);
    for (int i = 0; a->tokens && i < a->T; i++) mech_free(a->tokens[i]);
    mech_free(a->tokens);
    mech_free(a->layer_pat);
    mech_free(a->scores);
    mech_free(a->pat);
    // the thumbnails were pooled from the old patterns
    mech_free(a->thumbs);
    mech_free(a->thumb_ok);
    a->thumbs = NULL, a->thumb_ok = NULL, a->pat = NULL;
    if (a->T != T && (a->cpat || a->layer_cpat)) {
        // a corrupted prompt of another length no longer lines up
        mech_free(a->cpat), mech_free(a->layer_cpat);
        a->cpat = NULL, a->layer_cpat = NULL, a->diff = 0;
    }
    a->L = L, a->NH = NH, a->T = T;
    a->causal = mech_tui_live_model(s)->cfg.causal;
    a->layer_pat = lp, a->tokens = toks, a->scores = scores;
    a->ids_plain = !mech_tui_live_has_text(s);
    if (a->layer >= L) a->layer = 0;
    if (a->head >= NH) a->head = 0;
    if (a->q >= T) a->q = T - 1;
    if (a->k >= T) a->k = T - 1;
    return MECH_OK;
}

void mech_tui_app_live_lens(mech_tui_app *app) {
    mech_tui_live *s = app->live.s;
    if (!s) {
        mech_tui_lens_ensure(&app->lens, &app->lens_src); // no session: built here
        return;
    }
    if (app->lens_src.built || !app->has_lens) return;
    mech_err err = {0};
    if (mech_tui_live_busy(s)) {
        // a forward runs: the lens of its run follows (mech_tui_live_apply)
        if (!mech_tui_live_busy_lens(s))
            snprintf(app->lens.title, sizeof app->lens.title, "the lens follows when the forward finishes");
        return;
    }
    app->lens_src.built = 1;
    if (mech_tui_live_lens_start(s, &err))
        snprintf(app->lens.title, sizeof app->lens.title, "the lens cannot be computed: %.200s", err.msg);
    else
        snprintf(app->lens.title, sizeof app->lens.title, "computing the lens of %d tokens in the background",
                 app->lens_src.T);
}

int mech_tui_live_apply(mech_tui_app *app) {
    mech_tui_live *s = app->live.s;
    if (!s) return MECH_TUI_NONE;
    int r = mech_tui_live_poll(s);
    if (r == 0) {
        if (mech_tui_live_busy_lens(s) && !app->lens.T) {
            int T = 0;
            double el = 0;
            mech_tui_live_progress(s, &T, NULL, NULL, &el);
            snprintf(app->lens.title, sizeof app->lens.title,
                     "computing the lens of %d tokens in the background (L+1 unembeddings): %.1f s", T, el);
        }
        return mech_tui_live_busy(s) ? MECH_TUI_REDRAW : MECH_TUI_NONE;
    }
    if (r == 2) {
        mech_tui_live_take_lens(s, &app->lens);
        return MECH_TUI_REDRAW;
    }
    if (r == -2) {
        mech_tui_lens_deinit(&app->lens);
        snprintf(app->lens.title, sizeof app->lens.title, "the lens cannot be computed: %.200s", mech_tui_live_error(s));
        return MECH_TUI_REDRAW;
    }
    if (r < 0) {
        app->live_auto_head = 0;
        snprintf(app->live.message, sizeof app->live.message, "!the forward failed: %.200s", mech_tui_live_error(s));
        return MECH_TUI_REDRAW;
    }
    if (attn_from_live(&app->attn, s)) {
        // nothing may point into the retired run once it is released
        mech_tui_attn_deinit(&app->attn);
        app->has_attn = 0;
        snprintf(app->live.message, sizeof app->live.message, "!out of memory for the attention views");
    } else {
        app->has_attn = 1;
        app->live.message[0] = 0;
        mech_tui_live_take_thumbs(s, &app->attn); // pooled by the forward's thread
    }
    // The lens view reads the new run; it is built when first shown
    // (mech_tui_lens_ensure): L+1 unembeddings of every token take seconds
    // on long prompts, more than the forward itself.
    mech_tui_lens_deinit(&app->lens);
    memset(&app->lens_src, 0, sizeof app->lens_src);
    app->has_lens = mech_tui_live_has_lens(s);
    if (app->has_lens) {
        app->lens_src.m = mech_tui_live_model(s);
        app->lens_src.run = mech_tui_live_run(s);
        app->lens_src.ids = mech_tui_live_ids(s, &app->lens_src.T);
        app->lens_src.tok = mech_tui_live_tokenizer(s);
    }
    // direct logit attribution of the top-1 prediction: one position, cheap
    mech_tui_attrib_deinit(&app->live_attrib);
    if (app->has_lens) {
        int T1 = 0;
        const int32_t *ids1 = mech_tui_live_ids(s, &T1);
        mech_err aerr = {0};
        if (mech_tui_attrib_from_run(&app->live_attrib, mech_tui_live_model(s), mech_tui_live_run(s), ids1, T1, -1, -1,
                                     mech_tui_live_tokenizer(s), &aerr))
            snprintf(app->live_attrib.title, sizeof app->live_attrib.title, "no attribution: %.150s", aerr.msg);
    } else
        snprintf(app->live_attrib.title, sizeof app->live_attrib.title,
                 "no attribution: the prompt's activations did not fit in memory beside the patterns");
    if (app->view == MECH_TUI_VIEW_LENS && !app->lens_stored) {
        if (app->has_lens) mech_tui_app_live_lens(app); // on screen: rebuilt now
        else app->view = app->has_attn ? MECH_TUI_VIEW_HEAD : MECH_TUI_VIEW_LIVE;
    }
    mech_tui_live_release(s);
    int T = 0;
    mech_tui_live_ids(s, &T);
    app->live.pos = T - 1; // the next-token prediction of the whole prompt
    const mech_model *m = mech_tui_live_model(s);
    const char *path = app->model_path ? app->model_path : "model";
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(app->model_name, sizeof app->model_name, "%.30s (%d layers x %d heads, %d tokens)", base, m->cfg.n_layers,
             m->cfg.n_heads, T);
    if (app->live_auto_head && app->has_attn && app->view == MECH_TUI_VIEW_LIVE && !app->live.editing)
        app->view = MECH_TUI_VIEW_HEAD;
    app->live_auto_head = 0;
    return MECH_TUI_REDRAW;
}

int mech_tui_live_app_key(mech_tui_app *app, int key) {
    mech_tui_liveview *v = &app->live;
    int r = mech_tui_liveview_key(v, key);
    mech_err err = {0};
    if (r & MECH_TUI_LIVE_RUN) {
        v->message[0] = 0;
        if (mech_tui_live_start(v->s, mech_tui_editor_text(&v->ed), &err))
            snprintf(v->message, sizeof v->message, "!not run: %.200s", err.msg);
    }
    if (r & MECH_TUI_LIVE_SAVE) {
        int64_t id = 0;
        if (!app->db_path)
            snprintf(v->message, sizeof v->message,
                     "!saving needs a database: start with  mech tui DB --model M --prompt ...");
        else if (mech_tui_live_busy(v->s))
            snprintf(v->message, sizeof v->message, "!wait for the forward to finish, then save");
        else if (mech_tui_live_save(v->s, app->db_path, app->model_path, app->cmdline, v->pos, MECH_TUI_LIVE_K, &id,
                                    &err))
            snprintf(v->message, sizeof v->message, "!not saved: %.200s", err.msg);
        else {
            snprintf(v->message, sizeof v->message, "saved as run %lld (kind live) in %.150s", (long long)id,
                     app->db_path);
            mech_tui_app_reload(app);
        }
    }
    return r & (MECH_TUI_REDRAW | MECH_TUI_QUIT);
}
