/*
** core/pool.c: PLACEHOLDER serial pool, to be replaced by the threaded one.
*/
#include "core/core.h"

struct mech_pool { int n; };

mech_pool *mech_pool_new(int n) {
    mech_pool *p = mech_calloc(1, sizeof *p);
    if (p) p->n = 1;
    (void)n;
    return p;
}
void mech_pool_free(mech_pool *p) { mech_free(p); }
int mech_pool_size(const mech_pool *p) { return p ? p->n : 1; }
void mech_pool_for(mech_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx) {
    (void)p;
    for (int i = 0; i < n; i++) fn(ctx, i);
}
