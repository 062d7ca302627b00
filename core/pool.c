/*
** core/pool.c: a persistent pthread pool for data-parallel loops.
**
** One dispatch runs fn(ctx, i) for i in [0, n): the calling thread and the
** workers take indices from a shared atomic counter until none is left, so a
** worker that the OS has descheduled does not hold the others up (the caller
** simply does its share). Workers wait for the next dispatch by spinning on
** an atomic generation counter for ~100 us (a forward pass dispatches every
** few hundred microseconds) and then sleep on a condition variable.
**
** Invariants:
**  - gen is odd while a dispatch is open and even while closed; workers only
**    read the job fields after seeing an odd gen they have not served, and
**    only while counted in `active`, so the caller can reuse the fields for
**    the next dispatch once it has closed gen and seen active == 0.
**  - `busy` is held by the thread that dispatches; a nested or concurrent
**    call that finds it taken runs serially on its own thread (thread index
**    -1), so misuse is slow but never wrong.
**  - Per-thread scratch (mech_pool_scratch) belongs to thread index t and is
**    only touched from a job running with that index.
*/
#include "core/core.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

#define POOL_MAX_THREADS 256
#define POOL_SPIN_NS 100000 // how long an idle worker spins before sleeping

typedef struct pool_slot {
    void *scratch; // 64-aligned, owned
    size_t scratch_len;
    char pad[64 - sizeof(void *) - sizeof(size_t)]; // own cache line
} pool_slot;

typedef struct pool_worker {
    mech_pool *pool;
    int index; // 1..n-1; 0 is the dispatching thread
} pool_worker;

struct mech_pool {
    int n; // threads including the caller
    pthread_t *threads;
    pool_worker *workers;
    pool_slot *slots; // [n]
    pthread_mutex_t mu;
    pthread_cond_t cv;

    // The job of the open dispatch (written only while gen is even and
    // active == 0).
    void (*fn2)(void *ctx, int i);
    void (*fn3)(void *ctx, int i, int thread);
    void *ctx;
    int njobs;

    _Alignas(64) atomic_uint gen;
    atomic_int sleepers; // workers in (or about to enter) cond_wait; under mu
    atomic_int stop;
    _Alignas(64) atomic_int next; // next index to hand out
    _Alignas(64) atomic_int done; // indices finished
    _Alignas(64) atomic_int active; // workers currently reading the job
    _Alignas(64) atomic_int busy;   // a dispatch is in progress
    atomic_int lent;                // the big buffer is borrowed
    void *big;                      // mech_pool_borrow's buffer, 64-aligned, owned
    size_t big_len;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

double mech_now(void) {
    return (double)now_ns() * 1e-9;
}

// Takes indices until none is left; returns how many this thread ran.
static int pool_drain(mech_pool *p, int thread) {
    int ran = 0;
    for (;;) {
        int i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed);
        if (i >= p->njobs) break;
        if (p->fn3) p->fn3(p->ctx, i, thread);
        else p->fn2(p->ctx, i);
        ran++;
    }
    return ran;
}

static void *pool_main(void *arg) {
    pool_worker *w = arg;
    mech_pool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        // Wait for an open generation not yet served: spin, then sleep.
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (!(g & 1) || g == seen) {
            uint64_t t0 = 0;
            for (int spin = 0;; spin++) {
                g = atomic_load_explicit(&p->gen, memory_order_acquire);
                if ((g & 1) && g != seen) break;
                if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
                cpu_relax();
                if ((spin & 255) == 255) {
                    uint64_t t = now_ns();
                    if (!t0) t0 = t;
                    else if (t - t0 > POOL_SPIN_NS) break;
                }
            }
            if (!(g & 1) || g == seen) {
                pthread_mutex_lock(&p->mu);
                atomic_fetch_add(&p->sleepers, 1);
                for (;;) {
                    g = atomic_load(&p->gen);
                    if (((g & 1) && g != seen) || atomic_load(&p->stop)) break;
                    pthread_cond_wait(&p->cv, &p->mu);
                }
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->mu);
                if (atomic_load(&p->stop)) return NULL;
            }
        }
        seen = g;
        // Register as a reader of the job, then check that the dispatch is
        // still the one we saw (the caller may have closed it meanwhile).
        atomic_fetch_add(&p->active, 1);
        if (atomic_load(&p->gen) == g) {
            int ran = pool_drain(p, w->index);
            if (ran) atomic_fetch_add_explicit(&p->done, ran, memory_order_release);
        }
        atomic_fetch_sub_explicit(&p->active, 1, memory_order_release);
    }
}

// The size of pools made with n <= 0 when set (a command's --threads).
static int default_threads;

void mech_pool_set_default(int n) { default_threads = n > 0 ? n : 0; }

mech_pool *mech_pool_new(int n) {
    if (n <= 0) n = default_threads;
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    if (n > POOL_MAX_THREADS) n = POOL_MAX_THREADS;
    mech_pool *p = mech_malloc_aligned(sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->n = n;
    atomic_init(&p->gen, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->active, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->lent, 0);
    p->slots = mech_malloc_aligned((size_t)n * sizeof *p->slots);
    if (!p->slots) {
        mech_free_aligned(p);
        return NULL;
    }
    memset(p->slots, 0, (size_t)n * sizeof *p->slots);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n > 1) {
        p->threads = mech_calloc((size_t)n, sizeof *p->threads);
        p->workers = mech_calloc((size_t)n, sizeof *p->workers);
        if (!p->threads || !p->workers) goto fail;
        for (int t = 1; t < n; t++) {
            p->workers[t].pool = p;
            p->workers[t].index = t;
            if (pthread_create(&p->threads[t], NULL, pool_main, &p->workers[t])) {
                p->n = t; // the threads started so far are joined by free
                goto fail;
            }
        }
    }
    return p;
fail:
    mech_pool_free(p);
    return NULL;
}

void mech_pool_free(mech_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->threads)
        for (int t = 1; t < p->n; t++) pthread_join(p->threads[t], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    if (p->slots)
        for (int t = 0; t < p->n; t++) mech_free_aligned(p->slots[t].scratch);
    mech_free_aligned(p->big);
    mech_free(p->threads);
    mech_free(p->workers);
    mech_free_aligned(p->slots);
    mech_free_aligned(p);
}

int mech_pool_size(const mech_pool *p) { return p ? p->n : 1; }

void *mech_pool_scratch(mech_pool *p, int thread, size_t bytes) {
    if (!p || thread < 0 || thread >= p->n) return NULL;
    pool_slot *s = &p->slots[thread];
    if (s->scratch_len < bytes) {
        mech_free_aligned(s->scratch);
        s->scratch_len = 0;
        // Grow geometrically so that a sequence of growing requests does not
        // reallocate every time.
        size_t want = bytes + bytes / 4;
        s->scratch = mech_malloc_aligned(want);
        if (!s->scratch) return NULL;
        s->scratch_len = want;
    }
    return s->scratch;
}

void *mech_pool_borrow(mech_pool *p, size_t bytes) {
    int expect = 0;
    if (!p || !atomic_compare_exchange_strong(&p->lent, &expect, 1)) return NULL;
    if (p->big_len < bytes) {
        mech_free_aligned(p->big);
        p->big_len = 0;
        if (!(p->big = mech_malloc_aligned(bytes))) {
            atomic_store(&p->lent, 0);
            return NULL;
        }
        p->big_len = bytes;
    }
    return p->big;
}

void mech_pool_return(mech_pool *p) {
    if (p) atomic_store(&p->lent, 0);
}

static void pool_dispatch(mech_pool *p, int n, void (*fn2)(void *, int),
                          void (*fn3)(void *, int, int), void *ctx) {
    if (n <= 0) return;
    int expect = 0;
    if (!p || !atomic_compare_exchange_strong(&p->busy, &expect, 1)) {
        // No pool, or the pool is in use (nested or concurrent call): run
        // here, serially, without the pool's per-thread scratch.
        for (int i = 0; i < n; i++) {
            if (fn3) fn3(ctx, i, p ? -1 : 0);
            else fn2(ctx, i);
        }
        return;
    }
    if (p->n == 1 || n == 1) {
        for (int i = 0; i < n; i++) {
            if (fn3) fn3(ctx, i, 0);
            else fn2(ctx, i);
        }
        atomic_store_explicit(&p->busy, 0, memory_order_release);
        return;
    }
    // gen is even (closed) and active == 0 here: the job fields are ours.
    p->fn2 = fn2;
    p->fn3 = fn3;
    p->ctx = ctx;
    p->njobs = n;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed) + 1; // odd: open
    atomic_store(&p->gen, g);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    int ran = pool_drain(p, 0);
    int target = n - ran;
    // Wait for the indices other threads took; yield if that takes long
    // (a worker may have been descheduled mid-job).
    for (int spin = 0; atomic_load_explicit(&p->done, memory_order_acquire) < target; spin++) {
        cpu_relax();
        if (spin > 20000) sched_yield();
    }
    atomic_store(&p->gen, g + 1); // even: closed
    for (int spin = 0; atomic_load_explicit(&p->active, memory_order_acquire) != 0; spin++) {
        cpu_relax();
        if (spin > 20000) sched_yield();
    }
    atomic_store_explicit(&p->busy, 0, memory_order_release);
}

void mech_pool_for(mech_pool *p, int n, void (*fn)(void *ctx, int i), void *ctx) {
    pool_dispatch(p, n, fn, NULL, ctx);
}

void mech_pool_run(mech_pool *p, int n, void (*fn)(void *ctx, int i, int thread), void *ctx) {
    pool_dispatch(p, n, NULL, fn, ctx);
}
