/*
** tui/graph_layout.c: a layered graph laid out on a cell grid, for the
** circuit view (pure logic, no curses, no ACDC: nodes have a rank and a
** width, edges go from a lower rank to a higher one).
**
** Sugiyama's scheme, kept small:
**   1. every edge that spans more than one rank gets a one-column dummy on
**      each rank in between, so every segment joins adjacent ranks;
**   2. each rank's order is chosen by barycentre sweeps (up, then down, a
**      few times): an item moves to the mean position of its neighbours on
**      the rank below (above), which removes most crossings;
**   3. each rank's items are spread evenly over the canvas width;
**   4. rank r sits on row (R-1-r)*(G+1) (rank 0 at the bottom), with G gap
**      rows between ranks; each segment leaves its lower item's anchor
**      upward, turns onto a track row of the gap (tracks are handed out so
**      horizontal runs overlap as little as possible) and enters its upper
**      item from below; a one-column shift is a single / or \.
** Invariants: boxes of one rank never overlap (items are at least one
** column apart); a path is 8-connected, starts on the row above its source
** box and ends on the row below its target box, inside their columns.
*/
#include "tui/tui.h"

#include <stdlib.h>
#include <string.h>

void mech_tui_layout_deinit(mech_tui_layout *l) {
    mech_free(l->nodes);
    mech_free(l->edges);
    mech_free(l->cells);
    memset(l, 0, sizeof *l);
}

void mech_tui_layout_clear(mech_tui_layout *l) {
    l->n_nodes = l->n_edges = 0;
    l->w = l->h = 0;
}

int mech_tui_layout_add_node(mech_tui_layout *l, int rank, int w) {
    if (l->n_nodes == l->cap_nodes) {
        int nc = l->cap_nodes ? 2 * l->cap_nodes : 32;
        mech_tui_lnode *nn = mech_realloc(l->nodes, (size_t)nc * sizeof *nn);
        if (!nn) return -1;
        l->nodes = nn, l->cap_nodes = nc;
    }
    l->nodes[l->n_nodes] = (mech_tui_lnode){.rank = rank < 0 ? 0 : rank, .w = w < 3 ? 3 : w};
    return l->n_nodes++;
}

int mech_tui_layout_add_edge(mech_tui_layout *l, int from, int to, int port) {
    if (from < 0 || to < 0 || from >= l->n_nodes || to >= l->n_nodes) return -1;
    if (l->nodes[from].rank >= l->nodes[to].rank) return -1;
    if (l->n_edges == l->cap_edges) {
        int nc = l->cap_edges ? 2 * l->cap_edges : 64;
        mech_tui_ledge *ne = mech_realloc(l->edges, (size_t)nc * sizeof *ne);
        if (!ne) return -1;
        l->edges = ne, l->cap_edges = nc;
    }
    l->edges[l->n_edges] = (mech_tui_ledge){.from = from, .to = to, .port = port};
    return l->n_edges++;
}

int mech_tui_layout_port_x(const mech_tui_lnode *n, int port) {
    // q / k / v enter a head's box at its left, middle and right
    switch (port) {
    case 0: return n->x + 1;
    case 1: return n->x + n->w / 2;
    case 2: return n->x + n->w - 2;
    default: return n->x + n->w / 2;
    }
}

// --- Internal items: real nodes and dummies --------------------------------

typedef struct item {
    int rank, w, node; // node -1 for a dummy
    double pos;        // position in its rank, for the barycentre sort
    int x;
} item;

typedef struct seg {
    int lo, hi; // items on ranks r and r+1
    int edge;
    int xa, xb, track;
} seg;

static item *sort_items;
static int cmp_pos(const void *a, const void *b) {
    const item *x = &sort_items[*(const int *)a], *y = &sort_items[*(const int *)b];
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static seg *sort_segs;
static int cmp_seg_left(const void *a, const void *b) {
    const seg *x = &sort_segs[*(const int *)a], *y = &sort_segs[*(const int *)b];
    int lx = x->xa < x->xb ? x->xa : x->xb, ly = y->xa < y->xb ? y->xa : y->xb;
    return (lx > ly) - (lx < ly);
}

// Reorders rank r's items (ids[0..n)) by the mean position of their
// neighbours on rank r + dir; items without one keep their position.
static void barycentre(item *it, const seg *s, int ns, int *ids, int n, int r, int dir, double *sum, int *cnt) {
    for (int i = 0; i < n; i++) sum[ids[i]] = 0, cnt[ids[i]] = 0;
    for (int k = 0; k < ns; k++) {
        int me = dir < 0 ? s[k].hi : s[k].lo, other = dir < 0 ? s[k].lo : s[k].hi;
        if (it[me].rank != r) continue;
        sum[me] += it[other].pos, cnt[me]++;
    }
    for (int i = 0; i < n; i++)
        if (cnt[ids[i]]) it[ids[i]].pos = sum[ids[i]] / cnt[ids[i]];
    sort_items = it;
    // qsort is not stable: break ties by the current order through a tiny offset
    for (int i = 0; i < n; i++) it[ids[i]].pos += i * 1e-9;
    qsort(ids, (size_t)n, sizeof *ids, cmp_pos);
    for (int i = 0; i < n; i++) it[ids[i]].pos = (i + 0.5) / n;
}

static int push_cell(mech_tui_layout *l, int *len, int y, int x) {
    if (*len + 2 > l->cap_cells) {
        int nc = l->cap_cells ? 2 * l->cap_cells : 1024;
        while (nc < *len + 2) nc *= 2;
        int *c = mech_realloc(l->cells, (size_t)nc * sizeof *c);
        if (!c) return 0;
        l->cells = c, l->cap_cells = nc;
    }
    l->cells[(*len)++] = y;
    l->cells[(*len)++] = x;
    return 1;
}

mech_status mech_tui_layout_run(mech_tui_layout *l, int width, int height) {
    mech_status st = MECH_ERR_NOMEM;
    int R = 0;
    for (int i = 0; i < l->n_nodes; i++)
        if (l->nodes[i].rank + 1 > R) R = l->nodes[i].rank + 1;
    l->w = l->h = 0;
    if (!l->n_nodes) return MECH_OK;
    // items: the nodes, then one dummy per rank strictly between an edge's ends
    long n_items = l->n_nodes, n_segs = 0;
    for (int e = 0; e < l->n_edges; e++) {
        int span = l->nodes[l->edges[e].to].rank - l->nodes[l->edges[e].from].rank;
        n_items += span - 1, n_segs += span;
    }
    item *it = mech_calloc((size_t)n_items, sizeof *it);
    seg *s = mech_calloc((size_t)n_segs + 1, sizeof *s);
    int *ids = mech_malloc((size_t)n_items * sizeof *ids);
    int *rank_first = mech_calloc((size_t)R + 1, sizeof *rank_first);
    double *sum = mech_malloc((size_t)n_items * sizeof *sum);
    int *cnt = mech_malloc((size_t)n_items * sizeof *cnt);
    int *seg_first = mech_malloc(((size_t)l->n_edges + 1) * sizeof *seg_first);
    int *order = mech_malloc(((size_t)n_segs + 1) * sizeof *order);
    int *track_end = NULL, *spread = NULL;
    if (!it || !s || !ids || !rank_first || !sum || !cnt || !seg_first || !order) goto done;
    for (int i = 0; i < l->n_nodes; i++) it[i] = (item){.rank = l->nodes[i].rank, .w = l->nodes[i].w, .node = i};
    int ni = l->n_nodes, k = 0;
    for (int e = 0; e < l->n_edges; e++) {
        const mech_tui_ledge *E = &l->edges[e];
        int prev = E->from;
        seg_first[e] = k;
        for (int r = l->nodes[E->from].rank + 1; r <= l->nodes[E->to].rank; r++) {
            int cur = r == l->nodes[E->to].rank ? E->to : ni++;
            if (cur != E->to) it[cur] = (item){.rank = r, .w = 1, .node = -1};
            s[k++] = (seg){.lo = prev, .hi = cur, .edge = e};
            prev = cur;
        }
    }
    seg_first[l->n_edges] = k;
    // ranks as index ranges of ids: counting sort, input order within a rank
    for (int i = 0; i < ni; i++) rank_first[it[i].rank + 1]++;
    for (int r = 0; r < R; r++) rank_first[r + 1] += rank_first[r];
    {
        int *fill = mech_malloc((size_t)R * sizeof *fill);
        if (!fill) goto done;
        for (int r = 0; r < R; r++) fill[r] = rank_first[r];
        for (int i = 0; i < ni; i++) ids[fill[it[i].rank]++] = i;
        mech_free(fill);
    }
    for (int r = 0; r < R; r++) {
        int n = rank_first[r + 1] - rank_first[r];
        for (int i = 0; i < n; i++) it[ids[rank_first[r] + i]].pos = (i + 0.5) / n;
    }
    for (int pass = 0; pass < 4; pass++) {
        for (int r = 1; r < R; r++)
            barycentre(it, s, k, ids + rank_first[r], rank_first[r + 1] - rank_first[r], r, -1, sum, cnt);
        for (int r = R - 2; r >= 0; r--)
            barycentre(it, s, k, ids + rank_first[r], rank_first[r + 1] - rank_first[r], r, +1, sum, cnt);
    }
    // x: each rank spread evenly over the canvas
    int W = width;
    for (int r = 0; r < R; r++) {
        int need = 2;
        for (int i = rank_first[r]; i < rank_first[r + 1]; i++) need += it[ids[i]].w + 1;
        if (need > W) W = need;
    }
    for (int r = 0; r < R; r++) {
        int n = rank_first[r + 1] - rank_first[r], used = 0;
        for (int i = rank_first[r]; i < rank_first[r + 1]; i++) used += it[ids[i]].w;
        double gap = (double)(W - used) / (n + 1);
        int before = 0;
        for (int i = 0; i < n; i++) {
            item *x = &it[ids[rank_first[r] + i]];
            x->x = (int)(gap * (i + 1)) + before;
            before += x->w;
        }
    }
    spread = mech_malloc((size_t)ni * sizeof *spread);
    if (!spread) goto done;
    for (int i = 0; i < ni; i++) spread[i] = it[i].x;
    // then pull each item toward the mean centre of its neighbours, keeping
    // the order and a column between items: dummies line up into straight
    // lines instead of zigzagging across the spread
    for (int pass = 0; pass < 4; pass++)
        for (int rr = 0; rr < 2 * R; rr++) {
            int r = rr < R ? rr : 2 * R - 1 - rr, a = rank_first[r], b = rank_first[r + 1];
            for (int i = a; i < b; i++) sum[ids[i]] = 0, cnt[ids[i]] = 0;
            for (int j = 0; j < k; j++) {
                const item *lo = &it[s[j].lo], *hi = &it[s[j].hi];
                if (lo->rank == r) sum[s[j].lo] += hi->x + hi->w / 2, cnt[s[j].lo]++;
                if (hi->rank == r) sum[s[j].hi] += lo->x + lo->w / 2, cnt[s[j].hi]++;
            }
            for (int i = a; i < b; i++) {
                item *x = &it[ids[i]];
                int want = cnt[ids[i]] ? (int)(sum[ids[i]] / cnt[ids[i]] + 0.5) - x->w / 2 : x->x;
                // a box stays half-way to its spread position, so a wide pane is used
                if (x->node >= 0) want = (want + spread[ids[i]]) / 2;
                int lo = i > a ? it[ids[i - 1]].x + it[ids[i - 1]].w + 1 : 1;
                x->x = want < lo ? lo : want;
            }
            for (int i = b - 1; i >= a; i--) {
                item *x = &it[ids[i]];
                int hi = (i + 1 < b ? it[ids[i + 1]].x - 1 : W - 1) - x->w;
                if (x->x > hi) x->x = hi;
            }
        }
    // centre the drawing on the canvas
    {
        int mn = W, mx = 0;
        for (int i = 0; i < ni; i++) {
            if (it[i].x < mn) mn = it[i].x;
            if (it[i].x + it[i].w > mx) mx = it[i].x + it[i].w;
        }
        int shift = (W - (mx - mn)) / 2 - mn;
        for (int i = 0; i < ni; i++) it[i].x += shift;
    }
    // y: G gap rows between ranks, as many as the height allows (1..3)
    int G = R > 1 ? (height - R) / (R - 1) : 1;
    G = G < 1 ? 1 : G > 3 ? 3 : G;
    l->w = W, l->h = R + (R - 1) * G, l->gap = G;
    for (int i = 0; i < l->n_nodes; i++) {
        l->nodes[i].x = it[i].x;
        l->nodes[i].y = (R - 1 - it[i].rank) * (G + 1);
    }
    // anchors: a segment leaves the centre of its lower item and enters the
    // upper one at its port (a dummy's only column)
    for (int j = 0; j < k; j++) {
        const item *lo = &it[s[j].lo], *hi = &it[s[j].hi];
        s[j].xa = lo->node >= 0 ? lo->x + lo->w / 2 : lo->x;
        s[j].xb = hi->node >= 0 ? mech_tui_layout_port_x(&l->nodes[hi->node], l->edges[s[j].edge].port) : hi->x;
    }
    // tracks: per gap, first fit of the horizontal runs from the left
    track_end = mech_malloc((size_t)G * sizeof *track_end);
    if (!track_end) goto done;
    for (int r = 0; r + 1 < R; r++) {
        int m = 0;
        for (int j = 0; j < k; j++)
            if (it[s[j].lo].rank == r) order[m++] = j;
        sort_segs = s;
        qsort(order, (size_t)m, sizeof *order, cmp_seg_left);
        for (int t = 0; t < G; t++) track_end[t] = -2;
        for (int q = 0; q < m; q++) {
            seg *x = &s[order[q]];
            int a = x->xa < x->xb ? x->xa : x->xb, b = x->xa < x->xb ? x->xb : x->xa;
            if (b - a <= 1) { // straight or one diagonal step: no run
                x->track = 0;
                continue;
            }
            int best = 0;
            for (int t = 0; t < G; t++) {
                if (track_end[t] < a - 1) {
                    best = t;
                    break;
                }
                if (track_end[t] < track_end[best]) best = t;
            }
            x->track = best;
            if (b > track_end[best]) track_end[best] = b;
        }
    }
    // paths: one list of (y, x) per edge in l->cells
    int len = 0;
    for (int e = 0; e < l->n_edges; e++) {
        mech_tui_ledge *E = &l->edges[e];
        int start = len;
        for (int j = seg_first[e]; j < seg_first[e + 1]; j++) {
            const seg *x = &s[j];
            int yl = (R - 1 - it[x->lo].rank) * (G + 1), yu = yl - G - 1;
            if (j > seg_first[e] && !push_cell(l, &len, yl, x->xa)) goto done; // through a dummy
            int d = x->xb - x->xa;
            if (d == 0) {
                for (int y = yl - 1; y > yu; y--)
                    if (!push_cell(l, &len, y, x->xa)) goto done;
            } else if (d == 1 || d == -1) {
                // up at xa to the middle of the gap, one diagonal step, up at xb
                int t = yu + 1 + (G - 1) / 2;
                for (int y = yl - 1; y > t; y--)
                    if (!push_cell(l, &len, y, x->xa)) goto done;
                for (int y = t; y > yu; y--)
                    if (!push_cell(l, &len, y, x->xb)) goto done;
            } else {
                int t = yl - 1 - x->track, step = d > 0 ? 1 : -1;
                for (int y = yl - 1; y > t; y--)
                    if (!push_cell(l, &len, y, x->xa)) goto done;
                for (int xx = x->xa; xx != x->xb + step; xx += step)
                    if (!push_cell(l, &len, t, xx)) goto done;
                for (int y = t - 1; y > yu; y--)
                    if (!push_cell(l, &len, y, x->xb)) goto done;
            }
        }
        E->first = start / 2;
        E->n = (len - start) / 2;
        E->sy = l->nodes[E->from].y, E->sx = s[seg_first[e]].xa;
        E->ty = l->nodes[E->to].y, E->tx = s[seg_first[e + 1] - 1].xb;
    }
    st = MECH_OK;
done:
    mech_free(it), mech_free(s), mech_free(ids), mech_free(rank_first), mech_free(sum), mech_free(cnt);
    mech_free(seg_first), mech_free(order), mech_free(track_end), mech_free(spread);
    if (st) l->w = l->h = 0;
    return st;
}

void mech_tui_layout_cell(const mech_tui_layout *l, const mech_tui_ledge *e, int i, int *y, int *x) {
    *y = l->cells[2 * (e->first + i)];
    *x = l->cells[2 * (e->first + i) + 1];
}

char mech_tui_layout_glyph(const mech_tui_layout *l, const mech_tui_ledge *e, int i) {
    int y, x, py, px, ny, nx;
    mech_tui_layout_cell(l, e, i, &y, &x);
    // the ends continue into the boxes: the source anchor below, the port above
    if (i > 0) mech_tui_layout_cell(l, e, i - 1, &py, &px);
    else py = e->sy, px = e->sx;
    if (i + 1 < e->n) mech_tui_layout_cell(l, e, i + 1, &ny, &nx);
    else ny = e->ty, nx = e->tx;
    int ay = y - py, ax = x - px, by = ny - y, bx = nx - x; // the moves into and out of the cell
    if (ay && ax) return (ay < 0) == (ax > 0) ? '/' : '\\'; // a diagonal step lands here
    if (!ax && ay && (!bx || by)) return '|';               // on up, or leaving by a diagonal
    if (!ay && !by) return '-';
    return '+';
}
