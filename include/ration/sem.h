/* ration/sem.h - weighted semaphore, strict FIFO, ctx-aware acquire.
 *
 * A budget of `size` units (bytes, CPU shares, connections) shared by
 * holders of unequal weight. Waiters are served strictly in arrival order:
 * a large request at the head holds back smaller ones behind it, so it is
 * never starved. Uncontended acquire/release is one lock-free atomic RMW
 * each; nothing on the acquire/release path allocates.
 *
 *	ration_sem_t *mem;
 *	ration_sem_new(256 << 20, NULL, &mem);           // 256 MiB budget
 *	if (ration_sem_acquire(mem, ctx, need) == 0) {   // FIFO, ctx-bounded
 *		work(need);
 *		ration_sem_release(mem, need);
 *	}
 *	ration_sem_free(mem);
 *
 * All functions are thread-safe. Design notes: docs/sem.md.
 *
 * The same calls work on a semaphore from ration_sem_open_shared() or
 * ration_sem_open_redis(); the Blocks lines below describe an in-process
 * one. On the others a call may also wait for the segment's lock or for a
 * round trip to the server (see ration/shared.h, ration/redis.h).
 */
#ifndef RATION_SEM_H
#define RATION_SEM_H

#include "common.h"
#include "ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest size (and so largest weight): 2^61 - 1, so that one atomic word
 * holds the available weight, which may go negative in deficit, plus a
 * flag bit. */
#define RATION_SEM_MAX ((int64_t)((UINT64_C(1) << 61) - 1))

typedef struct ration_sem ration_sem_t;

typedef struct {
	const char *name; /* copied; shown in stats; NULL = "" */
	size_t max_waiters; /* 0 = unlimited; when full, acquire fails with -EBUSY at once */
} ration_sem_opts_t;

/* A snapshot. Counters are exact whenever no operation is in flight. */
typedef struct {
	int64_t size;             /* current size */
	int64_t in_use;           /* size - available: held, plus any deficit */
	int64_t available;        /* negative while in deficit after a shrink */
	int64_t waiters;          /* callers queued now */
	int64_t waiting_weight;   /* sum of their requests */
	int64_t max_in_use;       /* high-water mark of in_use */
	int64_t max_waiters_seen; /* high-water mark of waiters */
	uint64_t acquired;        /* successful acquires (any variant) */
	uint64_t
		contended; /* callers that had to queue, whatever the outcome */
	uint64_t timeouts; /* waits ended by a deadline */
	uint64_t cancels;  /* waits ended by a cancel */
	uint64_t rejected; /* -EBUSY (queue full) and try_acquire -EAGAIN */
	uint64_t consumed; /* units taken by ration_sem_consume(), summed */
	uint64_t wait_ns_total; /* summed queueing time of granted waits */
	uint64_t wait_hist[RATION_HIST_BUCKETS]; /* log2 ns of granted waits */
	bool closed;
	char name[48]; /* opts.name, truncated */
} ration_sem_stats_t;

/**
 * ration_sem_new() - make a semaphore of @size units, all available.
 * @size: 1..RATION_SEM_MAX.
 * @opts: NULL or zeroed = defaults.
 * @out:  receives the semaphore, owned by the caller (ration_sem_free()).
 *
 * Return: 0, -EINVAL (@size out of range, @out NULL) or -ENOMEM.
 * Blocks: no. Allocates: yes. Calls user code: never.
 */
RATION_API int ration_sem_new(int64_t size, const ration_sem_opts_t *opts,
			      ration_sem_t **out);

/**
 * ration_sem_free() - free @s, or drop one reference to a named semaphore.
 *
 * For a semaphore from ration_sem_open() that others still reference, only
 * this reference is dropped (0). Otherwise @s must be idle.
 *
 * Return: 0 (freed), -EINVAL (@s NULL), or -EBUSY if units are held or a
 * caller is queued: nothing is freed and @s stays usable.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int ration_sem_free(ration_sem_t *s);

/**
 * ration_sem_acquire() - wait for @n units of @s, in arrival order.
 * @s:   the semaphore.
 * @ctx: ends the wait when cancelled or past its deadline; NULL = never.
 * @n:   units wanted, 1..size.
 *
 * Returns once @n units belong to the caller. Strict FIFO: a large request
 * holds back smaller ones behind it instead of being overtaken. A grant
 * that races with the ctx ending is kept: if the units were handed over
 * before the waiter left the queue, the call returns 0.
 *
 * Return: 0, or the first that applies, in this order:
 *   -EINVAL    @s NULL or @n <= 0
 *   -EPIPE     @s was closed (also while waiting)
 *   -E2BIG     @n > size; at once, whatever @ctx says (also while waiting,
 *              if a shrink makes @n impossible)
 *   ctx error  -ECANCELED, -ETIMEDOUT or the cause, even if units are free
 *   -EBUSY     opts.max_waiters callers already queued
 * On error the caller holds nothing and @s is unchanged.
 *
 * Blocks: yes. Allocates: never. Calls user code: never.
 */
RATION_API int ration_sem_acquire(ration_sem_t *s, ration_ctx_t *ctx,
				  int64_t n);

/**
 * ration_sem_acquire_until() - ration_sem_acquire() with an absolute deadline.
 * @deadline_ns: CLOCK_MONOTONIC ns (ration_now() based); RATION_FOREVER =
 *               no deadline; a deadline already past fails at once with
 *               -ETIMEDOUT, even if units are free.
 *
 * Return: as ration_sem_acquire(), with -ETIMEDOUT as the ctx error.
 * Blocks: yes. Allocates: never. Calls user code: never.
 */
RATION_API int ration_sem_acquire_until(ration_sem_t *s, int64_t deadline_ns,
					int64_t n);

/**
 * ration_sem_try_acquire() - take @n units only if that needs no waiting.
 *
 * Fails with -EAGAIN when the units are not free or anyone is queued (a
 * try never overtakes a waiter).
 *
 * Return: 0, -EINVAL, -EPIPE, -E2BIG (@n > size) or -EAGAIN.
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int ration_sem_try_acquire(ration_sem_t *s, int64_t n);

/**
 * ration_sem_consume() - take @n units now, whether or not they are free.
 * @s: the semaphore.
 * @n: units to record as in use, >= 1; may exceed the size.
 *
 * Records use that has already happened (a task whose measured memory
 * passed its claim), as Seastar's consume() does: it never waits, never
 * queues and never fails for lack of room. in_use may pass the size and
 * available go negative; no queued or new acquire is granted until
 * in_use + its weight <= size again, and queued waiters keep their FIFO
 * order. Give the units back with ration_sem_release(), as any others.
 *
 * Return: 0, or the first that applies, in this order:
 *   -EINVAL     @s NULL or @n <= 0
 *   -EPIPE      @s was closed
 *   -EOVERFLOW  in_use + @n would pass RATION_SEM_MAX
 *   -ENOTSUP    the backend of @s cannot record use
 * On error nothing is taken.
 *
 * Blocks: no (it may take the semaphore's lock for a moment while others
 * are queued). Allocates: never. Calls user code: never.
 */
RATION_API int ration_sem_consume(ration_sem_t *s, int64_t n);

/**
 * ration_sem_release() - give back @n units.
 *
 * Hands them straight to the queued waiters at the head that now fit, in
 * order, and wakes exactly those (after dropping the lock). Works on a
 * closed semaphore. In deficit (after a shrink), released units first
 * repay the deficit.
 *
 * Return: 0, -EINVAL (@s NULL, @n <= 0) or -EOVERFLOW (@n is more than is
 * held: nothing changes).
 * Blocks: no (takes the semaphore's lock only when someone waits).
 * Allocates: never. Calls user code: never.
 */
RATION_API int ration_sem_release(ration_sem_t *s, int64_t n);

/**
 * ration_sem_resize() - change the size of @s to @new_size.
 *
 * Growing makes the difference available and wakes the waiters that now
 * fit. Shrinking below what is held leaves @s in deficit (available < 0)
 * until releases repay it; queued waiters asking more than @new_size fail
 * with -E2BIG.
 *
 * Return: 0, -EINVAL (@new_size not in 1..RATION_SEM_MAX) or -EPIPE (@s
 * closed: nothing changes).
 *
 * Blocks: no (takes the semaphore's lock for a moment). Allocates: never.
 * Calls user code: never.
 */
RATION_API int ration_sem_resize(ration_sem_t *s, int64_t new_size);

/**
 * ration_sem_close() - refuse all further acquires.
 *
 * Every queued waiter, and every later acquire, fails with -EPIPE.
 * Release keeps working, so holders can give their units back.
 * Idempotent.
 *
 * Blocks: no (takes the semaphore's lock for a moment). Allocates: never.
 * Calls user code: never.
 */
RATION_API void ration_sem_close(ration_sem_t *s);

/**
 * ration_sem_available() - units free right now: size - in_use.
 *
 * Return: negative while in deficit after a shrink. A snapshot: other
 * threads may change it at once.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int64_t ration_sem_available(const ration_sem_t *s);

/**
 * ration_sem_stats() - fill @out with a snapshot of @s's counters.
 *
 * Blocks: no (takes the semaphore's lock for the copy). Allocates: never.
 * Calls user code: never.
 */
RATION_API void ration_sem_stats(const ration_sem_t *s,
				 ration_sem_stats_t *out);

/**
 * ration_sem_open() - the process-wide semaphore called @name.
 * @name: any non-empty string; copied.
 * @size: used only by the first open that creates it; later opens ignore it
 *        (and may pass 0).
 * @out:  receives the semaphore; pair every successful open with one
 *        ration_sem_free().
 *
 * This is how separate modules share one limit without passing a handle
 * around: each opens the same name.
 *
 * Return: 0, -EINVAL (@name NULL/empty, @out NULL, or @size out of range
 * when the name is new) or -ENOMEM.
 *
 * Blocks: no (takes the registry's lock for a moment). Allocates: the
 * first open of a name. Calls user code: never.
 */
RATION_API int ration_sem_open(const char *name, int64_t size,
			       ration_sem_t **out);

/* One part of a multi-resource acquire. */
typedef struct {
	ration_sem_t *sem;
	int64_t n;
} ration_claim_t;

/* acquire_all handles up to this many distinct semaphores without
 * allocating; more claims allocate one array (and may fail with -ENOMEM). */
#define RATION_CLAIMS_INLINE 16

/**
 * ration_acquire_all() - acquire every claim, or none.
 *
 * Claims are taken in ascending semaphore address order, so two callers
 * asking for overlapping sets never deadlock. The same semaphore listed
 * twice counts as one claim of the summed weight. On failure everything
 * already taken is released before returning.
 *
 * Return: 0; -EINVAL (@claims NULL with @count > 0, a NULL sem, n <= 0);
 * -EOVERFLOW (summed weight overflows); -ENOMEM (more than
 * RATION_CLAIMS_INLINE semaphores and no memory); or the first error of
 * ration_sem_acquire() on any claim.
 *
 * Blocks: yes, as ration_sem_acquire() on each claim. Allocates: only
 * past RATION_CLAIMS_INLINE distinct semaphores. Calls user code: never.
 */
RATION_API int ration_acquire_all(ration_ctx_t *ctx,
				  const ration_claim_t *claims, size_t count);

/**
 * ration_release_all() - release every claim taken by ration_acquire_all().
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API void ration_release_all(const ration_claim_t *claims, size_t count);

#ifdef __cplusplus
}
#endif

#endif /* RATION_SEM_H */
