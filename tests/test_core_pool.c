/*
** tests/test_core_pool.c: the thread pool runs every index exactly once, on
** any pool size (and NULL), over many back-to-back dispatches, nested and
** concurrent use, and hands out per-thread scratch.
*/
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/support/check.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"

typedef struct count_ctx {
    atomic_int *hits;
    int n;
} count_ctx;

static void count_fn(void *ctx, int i) {
    count_ctx *c = ctx;
    assert_true(i >= 0 && i < c->n);
    atomic_fetch_add(&c->hits[i], 1);
}

// Runs n indices on p and checks each ran once.
static void run_once_each(mech_pool *p, int n) {
    count_ctx c = {calloc((size_t)(n ? n : 1), sizeof(atomic_int)), n};
    assert_non_null(c.hits);
    mech_pool_for(p, n, count_fn, &c);
    for (int i = 0; i < n; i++)
        if (atomic_load(&c.hits[i]) != 1) fail_msg("n=%d: index %d ran %d times", n, i, atomic_load(&c.hits[i]));
    free(c.hits);
}

static void test_pool_each_index_once(void **state) {
    (void)state;
    static const int ns[] = {0, 1, 2, 3, 5, 7, 16, 100, 1000, 4097};
    for (int size = 1; size <= 4; size++) {
        mech_pool *p = mech_pool_new(size);
        assert_non_null(p);
        assert_int_equal(mech_pool_size(p), size);
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) run_once_each(p, ns[k]);
        mech_pool_free(p);
    }
    for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) run_once_each(NULL, ns[k]);
}

typedef struct order_ctx {
    int order[64];
    int n;
} order_ctx;

static void order_fn(void *ctx, int i) {
    order_ctx *c = ctx;
    c->order[c->n++] = i;
}

static void test_pool_null_runs_in_order(void **state) {
    (void)state;
    order_ctx c = {.n = 0};
    mech_pool_for(NULL, 64, order_fn, &c);
    assert_int_equal(c.n, 64);
    for (int i = 0; i < 64; i++) assert_int_equal(c.order[i], i);
}

static void sum_fn(void *ctx, int i) { atomic_fetch_add((atomic_long *)ctx, i + 1); }

static void test_pool_many_back_to_back(void **state) {
    (void)state;
    for (int size = 1; size <= 4; size++) {
        mech_pool *p = mech_pool_new(size);
        assert_non_null(p);
        for (int call = 0; call < 20000; call++) {
            int n = 1 + call % 9;
            atomic_long sum = 0;
            mech_pool_for(p, n, sum_fn, &sum);
            if (atomic_load(&sum) != (long)n * (n + 1) / 2)
                fail_msg("size %d call %d: sum %ld", size, call, (long)atomic_load(&sum));
        }
        mech_pool_free(p);
    }
}

static void test_pool_after_idle(void **state) {
    (void)state;
    // Workers go to sleep after a short spin; a dispatch must wake them.
    mech_pool *p = mech_pool_new(3);
    assert_non_null(p);
    for (int k = 0; k < 5; k++) {
        usleep(3000);
        run_once_each(p, 300);
    }
    mech_pool_free(p);
}

typedef struct thread_ctx {
    mech_pool *pool;
    atomic_int hits[256];
    atomic_int bad;
    pthread_t who[8]; // thread index -> pthread seen running it
    atomic_int seen[8];
} thread_ctx;

static void thread_fn(void *ctx, int i, int thread) {
    thread_ctx *c = ctx;
    atomic_fetch_add(&c->hits[i], 1);
    int size = mech_pool_size(c->pool);
    if (thread < 0 || thread >= size) {
        atomic_store(&c->bad, 1);
        return;
    }
    // The same index always runs on the same OS thread: scratch is safe.
    int expect = 0;
    if (atomic_compare_exchange_strong(&c->seen[thread], &expect, 1)) c->who[thread] = pthread_self();
    else if (atomic_load(&c->seen[thread]) == 2 && !pthread_equal(c->who[thread], pthread_self()))
        atomic_store(&c->bad, 1);
    char *s = mech_pool_scratch(c->pool, thread, 1000 + (size_t)i);
    if (!s || ((uintptr_t)s & 63)) atomic_store(&c->bad, 1);
    else memset(s, i & 0xFF, 1000 + (size_t)i); // ASan: really that big
}

static void test_pool_run_thread_index(void **state) {
    (void)state;
    for (int size = 1; size <= 4; size++) {
        thread_ctx *c = calloc(1, sizeof *c);
        assert_non_null(c);
        c->pool = mech_pool_new(size);
        assert_non_null(c->pool);
        for (int call = 0; call < 200; call++) {
            for (int i = 0; i < 256; i++) atomic_store(&c->hits[i], 0);
            mech_pool_run(c->pool, 256, thread_fn, c);
            for (int i = 0; i < 256; i++) assert_int_equal(atomic_load(&c->hits[i]), 1);
            for (int t = 0; t < 8; t++)
                if (atomic_load(&c->seen[t]) == 1) atomic_store(&c->seen[t], 2);
        }
        assert_int_equal(atomic_load(&c->bad), 0);
        mech_pool_free(c->pool);
        free(c);
    }
}

static void test_pool_scratch(void **state) {
    (void)state;
    assert_null(mech_pool_scratch(NULL, 0, 10));
    mech_pool *p = mech_pool_new(2);
    assert_non_null(p);
    assert_null(mech_pool_scratch(p, -1, 10));
    assert_null(mech_pool_scratch(p, 2, 10));
    char *a = mech_pool_scratch(p, 0, 100);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a & 63, 0);
    memset(a, 1, 100);
    assert_ptr_equal(mech_pool_scratch(p, 0, 50), a); // no shrink, same buffer
    char *b = mech_pool_scratch(p, 1, 1 << 20);
    assert_non_null(b);
    memset(b, 2, 1 << 20);
    char *c = mech_pool_scratch(p, 0, 1 << 22); // grows
    assert_non_null(c);
    memset(c, 3, 1 << 22);
    mech_pool_free(p);
    mech_pool_free(NULL);
}

// mech_pool_borrow: one borrower at a time; aligned; kept (no shrink) and
// grown for the next borrower; NULL without a pool.
static void test_pool_borrow(void **state) {
    (void)state;
    assert_null(mech_pool_borrow(NULL, 10));
    mech_pool_return(NULL);
    mech_pool *p = mech_pool_new(2);
    assert_non_null(p);
    char *a = mech_pool_borrow(p, 1000);
    assert_non_null(a);
    assert_int_equal((uintptr_t)a & 63, 0);
    memset(a, 1, 1000);
    assert_null(mech_pool_borrow(p, 10)); // lent already
    mech_pool_return(p);
    assert_ptr_equal(mech_pool_borrow(p, 500), a); // kept
    mech_pool_return(p);
    char *b = mech_pool_borrow(p, 1 << 22); // grows
    assert_non_null(b);
    memset(b, 2, 1 << 22);
    mech_pool_return(p);
    mech_pool_free(p);
}

typedef struct nest_ctx {
    mech_pool *pool;
    atomic_int inner[16 * 16];
    atomic_int neg; // inner runs that got thread index -1
} nest_ctx;

static void nest_inner(void *ctx, int i, int thread) {
    nest_ctx *c = ctx;
    atomic_fetch_add(&c->inner[i], 1);
    if (thread == -1) atomic_fetch_add(&c->neg, 1);
}

static void nest_outer(void *ctx, int i) {
    nest_ctx *c = ctx;
    (void)i;
    // Calling back into the busy pool runs serially instead of deadlocking.
    mech_pool_run(c->pool, 16, nest_inner, c);
}

static void test_pool_nested_runs_serially(void **state) {
    (void)state;
    nest_ctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->pool = mech_pool_new(3);
    assert_non_null(c->pool);
    mech_pool_for(c->pool, 16, nest_outer, c);
    // 16 outer indices each ran the 16 inner ones once, all serially (-1).
    for (int k = 0; k < 16; k++) assert_int_equal(atomic_load(&c->inner[k]), 16);
    assert_int_equal(atomic_load(&c->neg), 16 * 16);
    mech_pool_free(c->pool);
    free(c);
}

typedef struct conc_arg {
    mech_pool *pool;
    int ok;
} conc_arg;

static void *conc_main(void *arg) {
    conc_arg *a = arg;
    a->ok = 1;
    for (int call = 0; call < 2000; call++) {
        atomic_long sum = 0;
        int n = 1 + call % 13;
        mech_pool_for(a->pool, n, sum_fn, &sum);
        if (atomic_load(&sum) != (long)n * (n + 1) / 2) a->ok = 0;
    }
    return NULL;
}

static void test_pool_concurrent_callers(void **state) {
    (void)state;
    // Two threads share one pool: whichever finds it busy runs serially.
    mech_pool *p = mech_pool_new(2);
    assert_non_null(p);
    conc_arg a = {p, 0}, b = {p, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, conc_main, &a), 0);
    conc_main(&b);
    pthread_join(t, NULL);
    assert_true(a.ok);
    assert_true(b.ok);
    mech_pool_free(p);
}

static void test_pool_default_size(void **state) {
    (void)state;
    mech_pool *p = mech_pool_new(0);
    assert_non_null(p);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(mech_pool_size(p), ncpu > 0 ? (int)ncpu : 1);
    run_once_each(p, 1000);
    mech_pool_free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_each_index_once),
        cmocka_unit_test(test_pool_null_runs_in_order),
        cmocka_unit_test(test_pool_many_back_to_back),
        cmocka_unit_test(test_pool_after_idle),
        cmocka_unit_test(test_pool_run_thread_index),
        cmocka_unit_test(test_pool_scratch),
        cmocka_unit_test(test_pool_borrow),
        cmocka_unit_test(test_pool_nested_runs_serially),
        cmocka_unit_test(test_pool_concurrent_callers),
        cmocka_unit_test(test_pool_default_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
