/*
** interp/datasets.c: the built-in prompt-pair datasets (see interp/datasets.h).
**
** Randomness: pair i draws from its own splitmix64 stream seeded with
** mix(seed, i), so a pair depends only on (seed, i). Word lists are filtered
** through the tokenizer once per call (single-token words only), which is
** what makes clean and corrupt prompts the same length; every pair is still
** encoded and its lengths compared.
*/
#include "interp/interp.h"
#include "compiler/compiler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------
// Random numbers

typedef struct rng {
    uint64_t s;
} rng;

static rng rng_for(uint64_t seed, int i, uint64_t task) {
    uint64_t s = seed ^ (task * 0xD1B54A32D192ED03ull);
    uint64_t a = mech_splitmix64(&s);
    uint64_t t = a ^ ((uint64_t)(uint32_t)i * 0xA0761D6478BD642Full);
    rng r = {mech_splitmix64(&t)};
    return r;
}

// Uniform in [0, n), n >= 1 (rejection, no modulo bias).
static int rng_below(rng *r, int n) {
    uint64_t un = (uint64_t)n, lim = UINT64_MAX - UINT64_MAX % un;
    uint64_t x;
    do x = mech_splitmix64(&r->s);
    while (x >= lim);
    return (int)(x % un);
}

// ---------------------------------------------------------------------------
// Pairs

void mech_pairs_free(mech_pair *p, int n) {
    if (!p) return;
    for (int i = 0; i < n; i++) {
        mech_free(p[i].clean);
        mech_free(p[i].corrupt);
        mech_free(p[i].clean_text);
        mech_free(p[i].corrupt_text);
    }
    mech_free(p);
}

// Returns ids[0..n) with bos in front, or NULL when out of memory.
static int32_t *with_bos(const int32_t *ids, int n, int32_t bos) {
    int32_t *out = mech_malloc((size_t)(n + 1) * sizeof *out);
    if (!out) return NULL;
    out[0] = bos;
    memcpy(out + 1, ids, (size_t)n * sizeof *out);
    return out;
}

mech_status mech_pairs_prepend_bos(mech_pair *p, int n, int32_t bos, mech_err *err) {
    if (bos < 0) return mech_err_set(err, MECH_ERR_ARG, "dataset: BOS id %d is negative", (int)bos);
    // Everything is allocated before anything changes: all pairs get BOS or none.
    int32_t **c = mech_calloc((size_t)(n > 0 ? n : 1), sizeof *c), **r = mech_calloc((size_t)(n > 0 ? n : 1), sizeof *r);
    int ok = c && r;
    for (int i = 0; ok && i < n; i++)
        ok = (c[i] = with_bos(p[i].clean, p[i].n, bos)) && (r[i] = with_bos(p[i].corrupt, p[i].n, bos));
    if (!ok) {
        for (int i = 0; c && r && i < n; i++) mech_free(c[i]), mech_free(r[i]);
        mech_free(c), mech_free(r);
        return mech_err_set(err, MECH_ERR_NOMEM, "dataset: out of memory");
    }
    for (int i = 0; i < n; i++) {
        mech_free(p[i].clean), mech_free(p[i].corrupt);
        p[i].clean = c[i], p[i].corrupt = r[i], p[i].n++;
    }
    mech_free(c), mech_free(r);
    return MECH_OK;
}

static mech_status alloc_pairs(int n, mech_pair **out, mech_err *err) {
    if (!out) return mech_err_set(err, MECH_ERR_ARG, "dataset: out is NULL");
    *out = NULL;
    if (n < 1) return mech_err_set(err, MECH_ERR_ARG, "dataset: n must be >= 1 (got %d)", n);
    *out = mech_calloc((size_t)n, sizeof(mech_pair));
    if (!*out) return mech_err_set(err, MECH_ERR_NOMEM, "dataset: out of memory for %d pairs", n);
    return MECH_OK;
}

// Encodes one prompt text into *ids (owned) and its length *n.
static mech_status encode(const mech_tokenizer *tok, const char *text, int32_t **ids, int *n,
                          mech_err *err) {
    size_t len = 0;
    mech_status st = mech_tokenizer_encode(tok, text, strlen(text), 0, ids, &len, err);
    if (st) return st;
    if (len > (size_t)INT32_MAX) return mech_err_set(err, MECH_ERR_RANGE, "dataset: prompt too long");
    *n = (int)len;
    return MECH_OK;
}

// Fills p from two texts: encodes both and checks the lengths agree.
static mech_status fill_text_pair(const mech_tokenizer *tok, const char *clean, const char *corrupt,
                                  mech_pair *p, mech_err *err) {
    int nc = 0, nr = 0;
    mech_status st = encode(tok, clean, &p->clean, &nc, err);
    if (!st) st = encode(tok, corrupt, &p->corrupt, &nr, err);
    if (st) return st;
    if (nc != nr)
        return mech_err_set(err, MECH_ERR_SHAPE,
                            "dataset: clean \"%s\" has %d tokens but corrupt \"%s\" has %d", clean, nc,
                            corrupt, nr);
    p->n = nc;
    p->clean_text = mech_strdup(clean);
    p->corrupt_text = mech_strdup(corrupt);
    if (!p->clean_text || !p->corrupt_text) return mech_err_set(err, MECH_ERR_NOMEM, "dataset: out of memory");
    return MECH_OK;
}

// The single token that text encodes to, or -1 when it is not one token.
static int32_t single_token(const mech_tokenizer *tok, const char *text, mech_err *err, mech_status *st) {
    int32_t *ids = NULL;
    size_t n = 0;
    *st = mech_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n, err);
    if (*st) return -1;
    int32_t id = n == 1 ? ids[0] : -1;
    mech_free(ids);
    return id;
}

// Keeps the words w of list[0..n) for which " w" is one token: their indices
// go to keep[], their tokens to ids[] (either may be NULL). Returns the count
// or -1 on a tokenizer error.
static int filter_words(const mech_tokenizer *tok, const char *const *list, int n, int *keep,
                        int32_t *ids, mech_err *err, mech_status *st) {
    int k = 0;
    char buf[64];
    for (int i = 0; i < n; i++) {
        snprintf(buf, sizeof buf, " %s", list[i]);
        int32_t id = single_token(tok, buf, err, st);
        if (*st) return -1;
        if (id < 0) continue;
        if (keep) keep[k] = i;
        if (ids) ids[k] = id;
        k++;
    }
    return k;
}

// ---------------------------------------------------------------------------
// IOI (Wang et al. 2022, ioi_dataset.py: BABA templates turned to ABBA)

// {A} = IO, {B} = S; both slots {B} are the subject. The final " IO" is cut.
static const char *const ioi_templates[] = {
    "When {A} and {B} went to the {P}, {B} gave a {O} to",
    "Then, {A} and {B} went to the {P}. {B} gave a {O} to",
    "Then, {A} and {B} had a lot of fun at the {P}. {B} gave a {O} to",
    "Then, {A} and {B} were working at the {P}. {B} decided to give a {O} to",
    "Then, {A} and {B} were thinking about going to the {P}. {B} wanted to give a {O} to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
    "After {A} and {B} went to the {P}, {B} gave a {O} to",
    "When {A} and {B} got a {O} at the {P}, {B} decided to give it to",
    "When {A} and {B} got a {O} at the {P}, {B} decided to give the {O} to",
    "While {A} and {B} were working at the {P}, {B} gave a {O} to",
    "While {A} and {B} were commuting to the {P}, {B} gave a {O} to",
    "After the lunch, {A} and {B} went to the {P}. {B} gave a {O} to",
    "Afterwards, {A} and {B} went to the {P}. {B} gave a {O} to",
    "Then, {A} and {B} had a long argument. Afterwards {B} said to",
    "Friends {A} and {B} found a {O} at the {P}. {B} gave it to",
};

static const char *const ioi_places[] = {"store", "garden", "restaurant", "school", "hospital", "office",
                                         "house", "station"};
static const char *const ioi_objects[] = {"ring", "kiss", "bone", "basketball", "computer", "necklace",
                                          "drink", "snack"};

static const char *const ioi_names[] = {
    "Michael",  "Christopher", "Jessica",  "Matthew",   "Ashley",    "Jennifer",  "Joshua",    "Amanda",
    "Daniel",   "David",       "James",    "Robert",    "John",      "Joseph",    "Andrew",    "Ryan",
    "Brandon",  "Jason",       "Justin",   "Sarah",     "William",   "Jonathan",  "Stephanie", "Brian",
    "Nicole",   "Nicholas",    "Anthony",  "Heather",   "Eric",      "Elizabeth", "Adam",      "Megan",
    "Melissa",  "Kevin",       "Steven",   "Thomas",    "Timothy",   "Christina", "Kyle",      "Rachel",
    "Laura",    "Lauren",      "Amber",    "Brittany",  "Danielle",  "Richard",   "Kimberly",  "Jeffrey",
    "Amy",      "Crystal",     "Michelle", "Tiffany",   "Jeremy",    "Benjamin",  "Mark",      "Emily",
    "Aaron",    "Charles",     "Rebecca",  "Jacob",     "Stephen",   "Patrick",   "Sean",      "Erin",
    "Jamie",    "Kelly",       "Samantha", "Nathan",    "Sara",      "Dustin",    "Paul",      "Angela",
    "Tyler",    "Scott",       "Katherine", "Andrea",   "Gregory",   "Erica",     "Mary",      "Travis",
    "Lisa",     "Kenneth",     "Bryan",    "Lindsey",   "Kristen",   "Jose",      "Alexander", "Jesse",
    "Katie",    "Lindsay",     "Shannon",  "Vanessa",   "Courtney",  "Christine", "Alicia",    "Cody",
    "Allison",  "Bradley",     "Samuel",
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

// Writes template t with the slots filled into buf (size cap). The first {B}
// gets b1, the second b2 (the ABC corruption puts different names there).
static int ioi_render(char *buf, size_t cap, const char *t, const char *a, const char *b1, const char *b2,
                      const char *place, const char *object) {
    size_t k = 0;
    int nb = 0;
    for (const char *c = t; *c; c++) {
        const char *s = NULL;
        if (c[0] == '{' && c[1] && c[2] == '}') {
            switch (c[1]) {
            case 'A': s = a; break;
            case 'B': s = nb++ ? b2 : b1; break;
            case 'P': s = place; break;
            case 'O': s = object; break;
            default: break;
            }
        }
        if (s) {
            size_t l = strlen(s);
            if (k + l >= cap) return -1;
            memcpy(buf + k, s, l);
            k += l;
            c += 2;
        } else {
            if (k + 1 >= cap) return -1;
            buf[k++] = *c;
        }
    }
    buf[k] = '\0';
    return 0;
}

mech_status mech_dataset_ioi(const mech_tokenizer *tok, int n, uint64_t seed, mech_pair **out,
                             mech_err *err) {
    if (!tok) return mech_err_set(err, MECH_ERR_ARG, "ioi dataset: tokenizer is NULL");
    mech_status st = alloc_pairs(n, out, err);
    if (st) return st;
    int names[COUNT(ioi_names)];
    int32_t name_ids[COUNT(ioi_names)];
    int nn = filter_words(tok, ioi_names, COUNT(ioi_names), names, name_ids, err, &st);
    if (st) goto fail;
    if (nn < 5) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "ioi dataset: only %d of the names are single tokens (need 5)", nn);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        rng r = rng_for(seed, i, 1);
        const char *t = ioi_templates[rng_below(&r, COUNT(ioi_templates))];
        const char *place = ioi_places[rng_below(&r, COUNT(ioi_places))];
        const char *object = ioi_objects[rng_below(&r, COUNT(ioi_objects))];
        // Five distinct names: IO, S, then the three corrupt ones (partial
        // Fisher-Yates over the filtered list).
        int pick[COUNT(ioi_names)];
        memcpy(pick, names, sizeof(int) * (size_t)nn);
        int32_t pick_id[COUNT(ioi_names)];
        memcpy(pick_id, name_ids, sizeof(int32_t) * (size_t)nn);
        for (int j = 0; j < 5; j++) {
            int k = j + rng_below(&r, nn - j);
            int ti = pick[j];
            pick[j] = pick[k];
            pick[k] = ti;
            int32_t tt = pick_id[j];
            pick_id[j] = pick_id[k];
            pick_id[k] = tt;
        }
        char clean[256], corrupt[256];
        if (ioi_render(clean, sizeof clean, t, ioi_names[pick[0]], ioi_names[pick[1]], ioi_names[pick[1]], place,
                       object) ||
            ioi_render(corrupt, sizeof corrupt, t, ioi_names[pick[2]], ioi_names[pick[3]], ioi_names[pick[4]],
                       place, object)) {
            st = mech_err_set(err, MECH_ERR_RANGE, "ioi dataset: prompt too long");
            goto fail;
        }
        (*out)[i].answer = pick_id[0];
        (*out)[i].wrong = pick_id[1];
        st = fill_text_pair(tok, clean, corrupt, &(*out)[i], err);
        if (st) goto fail;
    }
    return MECH_OK;
fail:
    mech_pairs_free(*out, n);
    *out = NULL;
    return st;
}

// ---------------------------------------------------------------------------
// Greater-than (Hanna et al. 2023, github.com/hannamw/gpt2-greater-than)

static const char *const gt_nouns[] = {
    "abduction",     "accord",        "affair",      "agreement",   "appraisal",    "assaults",
    "assessment",    "attack",        "attempts",    "campaign",    "captivity",    "case",
    "challenge",     "chaos",         "clash",       "collaboration", "coma",       "competition",
    "confrontation", "consequence",   "conspiracy",  "construction", "consultation", "contact",
    "contract",      "convention",    "cooperation", "custody",     "deal",         "decline",
    "decrease",      "demonstrations", "development", "disagreement", "disorder",    "dispute",
    "domination",    "dynasty",       "effect",      "effort",      "employment",   "endeavor",
    "engagement",    "epidemic",      "evaluation",  "exchange",    "existence",    "expansion",
    "expedition",    "experiments",   "fall",        "fame",        "flights",      "friendship",
    "growth",        "hardship",      "hostility",   "illness",     "impact",       "imprisonment",
    "improvement",   "incarceration", "increase",    "insurgency",  "invasion",     "investigation",
    "journey",       "kingdom",       "marriage",    "modernization", "negotiation", "notoriety",
    "obstruction",   "operation",     "order",       "outbreak",    "outcome",      "overhaul",
    "patrols",       "pilgrimage",    "plague",      "plan",        "practice",     "process",
    "program",       "progress",      "project",     "pursuit",     "quest",        "raids",
    "reforms",       "reign",         "relationship", "retaliation", "riot",        "rise",
    "rivalry",       "romance",       "rule",        "sanctions",   "shift",        "siege",
    "slump",         "stature",       "stint",       "strikes",     "study",        "test",
    "testing",       "tests",         "therapy",     "tour",        "tradition",    "treaty",
    "trial",         "trip",          "unemployment", "voyage",     "warfare",      "war",
    "work",
};

enum { GT_C0 = 11, GT_C1 = 17, GT_Y0 = 2, GT_Y1 = 98 };

mech_status mech_dataset_greater_than(const mech_tokenizer *tok, int n, uint64_t seed,
                                      mech_pair **out, mech_err *err) {
    if (!tok) return mech_err_set(err, MECH_ERR_ARG, "greater-than dataset: tokenizer is NULL");
    mech_status st = alloc_pairs(n, out, err);
    if (st) return st;
    int nouns[COUNT(gt_nouns)];
    int nnoun = filter_words(tok, gt_nouns, COUNT(gt_nouns), nouns, NULL, err, &st);
    if (st) goto fail;
    // Two-digit tokens "00".."99" (no space) and valid years XX*100+YY.
    int32_t two[100];
    char buf[64];
    for (int d = 0; d < 100; d++) {
        snprintf(buf, sizeof buf, "%02d", d);
        two[d] = single_token(tok, buf, err, &st);
        if (st) goto fail;
    }
    int years[(GT_C1 - GT_C0 + 1) * (GT_Y1 - GT_Y0 + 1)], ny = 0;
    for (int c = GT_C0; c <= GT_C1; c++) {
        snprintf(buf, sizeof buf, " %d", c);
        int32_t cent = single_token(tok, buf, err, &st);
        if (st) goto fail;
        if (cent < 0 || two[1] < 0) continue;
        for (int y = GT_Y0; y <= GT_Y1; y++) {
            if (two[y] < 0 || two[y - 1] < 0 || two[y + 1] < 0) continue;
            snprintf(buf, sizeof buf, " %d%02d", c, y);
            int32_t *ids = NULL;
            size_t k = 0;
            st = mech_tokenizer_encode(tok, buf, strlen(buf), 0, &ids, &k, err);
            if (st) goto fail;
            int ok = k == 2 && ids[0] == cent && ids[1] == two[y];
            mech_free(ids);
            if (ok) years[ny++] = c * 100 + y;
        }
    }
    if (nnoun < 1 || ny < 1) {
        st = mech_err_set(err, MECH_ERR_FORMAT,
                          "greater-than dataset: the tokenizer has %d single-token nouns and %d years "
                          "that split as \" XX\" + \"YY\" (need one of each)",
                          nnoun, ny);
        goto fail;
    }
    for (int i = 0; i < n; i++) {
        rng r = rng_for(seed, i, 2);
        const char *noun = gt_nouns[nouns[rng_below(&r, nnoun)]];
        int year = years[rng_below(&r, ny)], c = year / 100, y = year % 100;
        char clean[128], corrupt[128];
        snprintf(clean, sizeof clean, "The %s lasted from the year %d%02d to %d", noun, c, y, c);
        snprintf(corrupt, sizeof corrupt, "The %s lasted from the year %d01 to %d", noun, c, c);
        (*out)[i].answer = two[y + 1];
        (*out)[i].wrong = two[y - 1];
        st = fill_text_pair(tok, clean, corrupt, &(*out)[i], err);
        if (st) goto fail;
    }
    return MECH_OK;
fail:
    mech_pairs_free(*out, n);
    *out = NULL;
    return st;
}

// ---------------------------------------------------------------------------
// Induction

// Draws len distinct ids from [lo, vocab) into r, redrawing repeats (no
// O(vocab) buffer; the caller guarantees vocab - lo > len).
static void distinct_ids(rng *g, int lo, int vocab, int len, int32_t *r) {
    for (int j = 0; j < len; j++) {
        for (;;) {
            int32_t x = lo + rng_below(g, vocab - lo);
            int dup = 0;
            for (int k = 0; k < j && !dup; k++) dup = r[k] == x;
            if (!dup) {
                r[j] = x;
                break;
            }
        }
    }
}

mech_status mech_dataset_induction(int vocab, int n, int len, uint64_t seed, int lo, int32_t bos,
                                   mech_pair **out, mech_err *err) {
    if (out) *out = NULL;
    if (len < 2) return mech_err_set(err, MECH_ERR_ARG, "induction dataset: len must be >= 2 (got %d)", len);
    if (lo < 0 || vocab <= lo || vocab - lo < len + 1)
        return mech_err_set(err, MECH_ERR_ARG,
                            "induction dataset: token range [%d, %d) must hold len + 1 = %d distinct ids", lo,
                            vocab, len + 1);
    if (len > (INT32_MAX - 1) / 2) return mech_err_set(err, MECH_ERR_ARG, "induction dataset: len too large");
    mech_status st = alloc_pairs(n, out, err);
    if (st) return st;
    int off = bos >= 0 ? 1 : 0, T = off + 2 * len - 1;
    int32_t *r = mech_malloc(sizeof(int32_t) * (size_t)len * 2);
    if (!r) {
        st = mech_err_set(err, MECH_ERR_NOMEM, "induction dataset: out of memory");
        goto fail;
    }
    int32_t *r2 = r + len;
    for (int i = 0; i < n; i++) {
        rng g = rng_for(seed, i, 3);
        distinct_ids(&g, lo, vocab, len, r);
        // r': distinct ids whose last one is not in r (so wrong != answer
        // and the clean prompt gives no evidence for wrong).
        for (;;) { // last token first: any id not in r
            int32_t x = lo + rng_below(&g, vocab - lo);
            int dup = 0;
            for (int k = 0; k < len && !dup; k++) dup = r[k] == x;
            if (!dup) {
                r2[len - 1] = x;
                break;
            }
        }
        for (int j = 0; j < len - 1; j++) { // the rest distinct, and != the last
            for (;;) {
                int32_t x = lo + rng_below(&g, vocab - lo);
                int dup = x == r2[len - 1];
                for (int k = 0; k < j && !dup; k++) dup = r2[k] == x;
                if (!dup) {
                    r2[j] = x;
                    break;
                }
            }
        }
        mech_pair *p = &(*out)[i];
        p->clean = mech_malloc(sizeof(int32_t) * (size_t)T);
        p->corrupt = mech_malloc(sizeof(int32_t) * (size_t)T);
        if (!p->clean || !p->corrupt) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "induction dataset: out of memory");
            goto fail;
        }
        if (off) p->clean[0] = p->corrupt[0] = bos;
        for (int j = 0; j < len; j++) {
            p->clean[off + j] = r[j];
            p->corrupt[off + j] = r2[j];
        }
        for (int j = 0; j < len - 1; j++) {
            p->clean[off + len + j] = r[j];
            p->corrupt[off + len + j] = r2[j];
        }
        p->n = T;
        p->answer = r[len - 1];
        p->wrong = r2[len - 1];
    }
    mech_free(r);
    return MECH_OK;
fail:
    mech_free(r);
    mech_pairs_free(*out, n);
    *out = NULL;
    return st;
}

// ---------------------------------------------------------------------------
// Compiled RASP models: random inputs from the program's vocab

int mech_compiled_n_out(const mech_model *m) {
    int n = mech_acdc_truth_n_out(mech_model_meta(m, "mech.rasp.readout"));
    return n > m->cfg.d_vocab ? 0 : n;
}

// The index of the largest of the first n_out logits at the last position.
static int32_t output_index(const float *logits, int T, int V, int n_out) {
    const float *row = logits + (size_t)(T - 1) * (size_t)V;
    int32_t best = 0;
    for (int v = 1; v < n_out; v++)
        if (row[v] > row[best]) best = v;
    return best;
}

mech_status mech_compiled_answer(const mech_model *m, const int32_t *ids, int T, int32_t *out, mech_err *err) {
    int n_out = mech_compiled_n_out(m);
    if (n_out <= 0) return mech_err_set(err, MECH_ERR_FORMAT, "not a compiled RASP model (no mech.rasp.readout)");
    mech_run *run = NULL;
    mech_status st = mech_run_new(m, 1, T, &run, err);
    if (!st) st = mech_run_forward(run, ids, err);
    if (!st) *out = output_index(mech_run_logits(run), T, m->cfg.d_vocab, n_out);
    mech_run_free(run);
    return st;
}

static char *values_text(const mech_rasp_value *const *vals, int n) {
    mech_buf b = {0};
    for (int i = 0; i < n; i++) {
        if (i) mech_buf_puts(&b, " ");
        const mech_rasp_value *v = vals[i];
        // bare when `mech run --input` reads it back as the same string
        int bare = v->type == MECH_RASP_STR && v->n > 0 && !(v->s[0] >= '0' && v->s[0] <= '9') && v->s[0] != '-';
        for (uint32_t k = 0; bare && k < v->n; k++) bare = !strchr(" \t\n\r\"'", v->s[k]) && v->s[k];
        if (bare) mech_buf_printf(&b, "%.*s", (int)v->n, v->s);
        else mech_rasp_value_repr(&b, v);
    }
    char *s = b.oom ? NULL : mech_strdup(b.data ? b.data : "");
    mech_buf_free(&b);
    return s;
}

// What a compiled model outputs after BOS on T tokens of ids: the readout's
// value index per position, or its number for a numerical (one-logit) readout.
static void output_row(const float *logits, int T, int V, int n_out, float *row) {
    for (int t = 1; t < T; t++) {
        const float *l = logits + (size_t)t * (size_t)V;
        if (n_out == 1) {
            row[t - 1] = l[0];
            continue;
        }
        int best = 0;
        for (int v = 1; v < n_out; v++)
            if (l[v] > l[best]) best = v;
        row[t - 1] = (float)best;
    }
}

// Two output rows of W positions: the same values (numbers within 1e-3
// relative for a numerical readout).
static int rows_equal(const float *a, const float *b, int W, int n_out) {
    for (int t = 0; t < W; t++)
        if (n_out == 1 ? fabsf(a[t] - b[t]) > 1e-3f * (1.0f + fabsf(a[t])) : a[t] != b[t]) return 0;
    return 1;
}

static mech_status compiled_pairs(const mech_model *m, int n, int len, uint64_t seed, const char *corruption,
                                  mech_pair **out, mech_err *err) {
    *out = NULL;
    const char *src = mech_model_meta(m, "mech.rasp.source");
    if (!src) return mech_err_set(err, MECH_ERR_ARG, "not a compiled RASP model (no mech.rasp.source metadata)");
    int shuffle;
    if (!strcmp(corruption, "random")) shuffle = 0;
    else if (!strcmp(corruption, "shuffle")) shuffle = 1;
    else return mech_err_set(err, MECH_ERR_ARG, "corruption '%s': expected random or shuffle", corruption);
    int n_out = mech_compiled_n_out(m);
    if (n_out <= 0) return mech_err_set(err, MECH_ERR_FORMAT, "mech.rasp.readout: missing or malformed");
    mech_rasp_program *p = NULL;
    mech_status st = mech_rasp_parse("mech.rasp.source", src, strlen(src), &p, err);
    if (st) return st;
    size_t nv = 0;
    const mech_rasp_value *vocab = mech_rasp_program_vocab(p, &nv);
    int max_len = mech_rasp_program_max_seq_len(p), T = len + 1;
    mech_run *run = NULL;
    const mech_rasp_value **vals = NULL;
    if (n < 1 || len < 1 || len > max_len || nv < 1) {
        st = mech_err_set(err, MECH_ERR_ARG, "compiled dataset: need n >= 1 and 1 <= len <= max_seq_len (%d), got n %d, len %d",
                          max_len, n, len);
        goto done;
    }
    if ((st = alloc_pairs(n, out, err)) || (st = mech_run_new(m, 2, T, &run, err))) goto done;
    vals = mech_malloc(sizeof *vals * (size_t)(2 * len));
    int32_t *ids = mech_malloc(sizeof *ids * (size_t)(2 * T));
    if (!vals || !ids) {
        mech_free(ids);
        st = mech_err_set(err, MECH_ERR_NOMEM, "compiled dataset: out of memory");
        goto done;
    }
    // Clean outputs, one row per accepted input, for the balance rule below.
    int W = T - 1, give_up = 0;
    float *rows = mech_malloc(sizeof(float) * (size_t)n * (size_t)(W > 0 ? W : 1));
    if (!rows) {
        mech_free(ids);
        st = mech_err_set(err, MECH_ERR_NOMEM, "compiled dataset: out of memory");
        goto done;
    }
    for (int i = 0; i < n && !st; i++) {
        rng g = rng_for(seed, i, 4);
        const mech_rasp_value **cl = vals, **co = vals + len;
        // Informative data: an input whose clean output (every position)
        // is already that of half the inputs is drawn again, up to 200 times
        // (once a pair exhausts that, the rule is dropped for the rest): a
        // Dyck language, false on almost every random input, gets balanced
        // ones. Inputs accepted on the first draw are plain random ones.
        for (int draw = 0;; draw++) {
            for (int j = 0; j < len; j++) cl[j] = &vocab[rng_below(&g, (int)nv)];
            if (shuffle) {
                // A permutation that moves some value when the input has two
                // distinct values; a few tries, then any permutation.
                for (int tries = 0; tries < 16; tries++) {
                    for (int j = 0; j < len; j++) co[j] = cl[j];
                    for (int j = len - 1; j > 0; j--) {
                        int k = rng_below(&g, j + 1);
                        const mech_rasp_value *t = co[j];
                        co[j] = co[k], co[k] = t;
                    }
                    int same = 1;
                    for (int j = 0; j < len && same; j++) same = co[j] == cl[j];
                    if (!same) break;
                }
            } else {
                for (int j = 0; j < len; j++) co[j] = &vocab[rng_below(&g, (int)nv)];
            }
            ids[0] = ids[T] = 0; // BOS
            for (int j = 0; j < len; j++) {
                ids[1 + j] = mech_rasp_token_id(p, cl[j]);
                ids[T + 1 + j] = mech_rasp_token_id(p, co[j]);
            }
            if ((st = mech_run_forward(run, ids, err))) break;
            float *row = rows + (size_t)i * W;
            output_row(mech_run_logits(run), T, m->cfg.d_vocab, n_out, row);
            int same = 0;
            for (int k = 0; k < i; k++) same += rows_equal(rows + (size_t)k * W, row, W, n_out);
            if (give_up || same + 1 <= (n + 1) / 2) break;
            if (draw == 199) {
                give_up = 1;
                break;
            }
        }
        if (st) break;
        mech_pair *q = &(*out)[i];
        q->n = T;
        q->clean = mech_malloc(sizeof(int32_t) * (size_t)T);
        q->corrupt = mech_malloc(sizeof(int32_t) * (size_t)T);
        q->clean_text = values_text(cl, len);
        q->corrupt_text = values_text(co, len);
        if (!q->clean || !q->corrupt || !q->clean_text || !q->corrupt_text) {
            st = mech_err_set(err, MECH_ERR_NOMEM, "compiled dataset: out of memory");
            break;
        }
        memcpy(q->clean, ids, sizeof(int32_t) * (size_t)T);
        memcpy(q->corrupt, ids + T, sizeof(int32_t) * (size_t)T);
        const float *logits = mech_run_logits(run);
        int V = m->cfg.d_vocab;
        q->answer = output_index(logits, T, V, n_out);
        q->wrong = output_index(logits + (size_t)T * (size_t)V, T, V, n_out);
    }
    mech_free(rows);
    mech_free(ids);
done:
    mech_free(vals);
    mech_run_free(run);
    mech_rasp_program_free(p);
    if (st && *out) {
        mech_pairs_free(*out, n);
        *out = NULL;
    }
    return st;
}

mech_status mech_compiled_outputs_vary(const mech_model *m, const mech_pair *p, int n, int *varies, mech_err *err) {
    *varies = 0;
    int n_out = mech_compiled_n_out(m);
    if (n_out <= 0) return mech_err_set(err, MECH_ERR_ARG, "not a compiled RASP model (no mech.rasp.readout)");
    if (n < 1) return MECH_OK;
    int T = p[0].n;
    mech_run *run = NULL;
    float *first = mech_malloc(sizeof(float) * (size_t)(T > 1 ? T : 2)), *row = mech_malloc(sizeof(float) * (size_t)(T > 1 ? T : 2));
    mech_status st = first && row ? mech_run_new(m, 1, T, &run, err) : mech_err_set(err, MECH_ERR_NOMEM, "out of memory");
    for (int i = 0; !st && i < n && !*varies; i++) {
        if (p[i].n != T) {
            *varies = 1; // inputs of other lengths: other outputs
            break;
        }
        if ((st = mech_run_forward(run, p[i].clean, err))) break;
        output_row(mech_run_logits(run), T, m->cfg.d_vocab, n_out, i ? row : first);
        if (i) *varies = !rows_equal(first, row, T - 1, n_out);
    }
    mech_run_free(run);
    mech_free(first);
    mech_free(row);
    return st;
}

int mech_dataset_compiled_max_len(const mech_model *m) {
    const char *ml = mech_model_meta(m, "mech.rasp.max_seq_len");
    long v = ml ? atol(ml) : 0;
    return v > 0 && v <= m->cfg.n_ctx - 1 ? (int)v : m->cfg.n_ctx - 1;
}

mech_status mech_dataset_compiled(const mech_model *m, int n, int len, uint64_t seed, const char *corruption,
                                  mech_pair **out, mech_err *err) {
    if (len > 0 || !mech_model_meta(m, "mech.rasp.source")) return compiled_pairs(m, n, len, seed, corruption, out, err);
    // The default length: the longest below max_seq_len at which these
    // inputs' outputs differ. Below max_seq_len because there a selector
    // width's head is not needed (1/(N+1) and a zeroed head both decode to
    // N); where the outputs do not differ (a Dyck language at an odd
    // length) resample ablation and patching see nothing, and zero ablation
    // only what keeps a constant. None differs: max_seq_len - 1.
    int max_len = mech_dataset_compiled_max_len(m), top = max_len > 1 ? max_len - 1 : 1;
    for (int L = top; L >= 1 && L > top - 16; L--) {
        int varies = 0;
        mech_status st = compiled_pairs(m, n, L, seed, corruption, out, err);
        if (!st) st = mech_compiled_outputs_vary(m, *out, n, &varies, err);
        if (st || varies) {
            if (st && *out) mech_pairs_free(*out, n), *out = NULL;
            return st;
        }
        mech_pairs_free(*out, n);
        *out = NULL;
    }
    return compiled_pairs(m, n, top, seed, corruption, out, err);
}
