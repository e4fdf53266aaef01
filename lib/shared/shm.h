/* shm.h (internal) - the layout of a shared semaphore's POSIX shm segment.
 *
 * One segment per shared semaphore: a header, a robust process-shared
 * mutex, the fast-path word, the derived counters, and three fixed tables
 * of slots (holders, lanes, waiters). The slots are the truth; the word
 * and every counter can be rebuilt from them (shm_recount() in
 * shm_seg.c), which is what makes a crash at any instruction
 * recoverable. See docs/shared.md.
 *
 * A segment made by another build is told apart by magic, version and
 * the sizes below, all checked on open (-EPROTO on any mismatch).
 */
#ifndef RATION_INTERNAL_SHM_H
#define RATION_INTERNAL_SHM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "ration/common.h"

#define SHM_MAGIC   UINT64_C(0x6873206e6f697461) /* "ation sh" */
#define SHM_VERSION 4u
#define SHM_HOLDERS 128u /* open handles, all processes together */
#define SHM_LANES   256u /* fast-path threads, all processes together */
#define SHM_WAITERS 256u /* queued callers, all processes together */
#define SHM_LEASES  32u  /* outstanding leases per handle */

/* The fast-path word is avail * 2 + SHM_SLOW, as in-process (sem.h):
 * SLOW is set while anyone is queued, the semaphore is closed, a resize
 * or a recount is under way; then every change goes through mu. */
#define SHM_SLOW ((int64_t)1)

/* init word of the header. */
#define SHM_INIT_BUSY  0u /* creator still filling the segment in */
#define SHM_INIT_READY 1u

/* Holder and lane slot states. */
#define SLOT_FREE 0u
#define SLOT_USED 1u

/* Waiter slot states; a decided outcome is 0 (GRANTED) or a -errno.
 * ABANDONED and TAKEN are set by a waiter that could not get mu in time
 * (its owner may be stopped): it left on its deadline or cancel
 * (ABANDONED, still counted in nwaiters and waiting_weight) or took its
 * grant (TAKEN, weight counted by the slot) without the lock; the next
 * holder of mu settles the slot (unsettled says there is one). */
#define WAITER_TAKEN     4
#define WAITER_ABANDONED 3
#define WAITER_FREE      2
#define WAITER_WAITING   1
#define WAITER_GRANTED   0

struct shm_lease {
	uint64_t fence; /* mu; 0 = free entry */
	int64_t n;      /* mu */
};

/* One per open handle. Weight taken or given back on the slow path
 * (grants, releases of weight another thread took) is counted here; the
 * fast path counts in the lanes. The handle holds held + the held of its
 * lanes; either part alone may be negative.
 *
 * Liveness: the handle holds an OFD lock (fcntl F_OFD_SETLK) on byte
 * <index> of the shm object through its own open file description, which
 * the kernel drops when the last descriptor of it closes: at the death of
 * the process, not of a thread (a zombie main thread keeps it), whatever
 * pid namespace the process is in. USED without that lock = dead. The
 * token tells this claim of the slot from any later one. */
struct shm_holder {
	_Atomic uint32_t state; /* mu; FREE/USED, USED stored last on claim */
	uint32_t pad;
	uint64_t token;       /* mu; never 0, never reused in a segment */
	_Atomic int64_t held; /* mu */
	struct shm_lease leases[SHM_LEASES];
};

/* Add @n (negative to take away) to a holder's or a lane's count: each
 * has one writer at a time (the holder's under mu, a lane's its owner
 * thread), so a plain load and store; atomic only so that a recount may
 * read it meanwhile. */
static inline void
shm_count_add(_Atomic int64_t *count, int64_t n)
{
	atomic_store_explicit(
		count, atomic_load_explicit(count, memory_order_relaxed) + n,
		memory_order_relaxed);
}

/* One per thread that uses the fast path of a handle, claimed under mu on
 * the thread's first fast operation and given back (its counts folded into
 * the holder) when the thread exits or the handle is freed. Written only
 * by its owner thread (single writer: plain loads and stores), read by a
 * recount, which needs to know whether the owner is between its CAS of
 * the word and its store of held: that is what busy says. */
struct shm_lane {
	_Atomic uint32_t state; /* mu; FREE/USED */
	_Atomic uint32_t busy;  /* owner: 1 from before its CAS to after held */
	uint32_t holder;        /* mu; index of the handle's holder slot */
	_Atomic uint64_t token; /* mu; the holder's token when bound */
	_Atomic int64_t held;   /* owner: weight taken on the fast path */
	_Atomic uint64_t acquired; /* owner: fast acquisitions, for stats */
	_Atomic uint64_t
		consumed; /* owner: units taken by consume, for stats */
};

/* One per queued caller. The waiter sleeps on futex (a shared futex:
 * FUTEX_WAIT_BITSET without FUTEX_PRIVATE_FLAG); whoever decides its
 * outcome stores state, bumps futex and wakes it after unlocking. */
struct shm_waiter {
	_Atomic uint32_t futex;
	_Atomic int32_t state; /* mu; FREE, WAITING or the outcome */
	uint32_t holder;       /* mu; index of the handle's holder slot; the
				  * holder's liveness is the waiter's */
	uint64_t ticket;       /* mu; FIFO order: lowest is the head */
	int64_t n;             /* mu */
	int64_t t0;            /* mu; when queued (CLOCK_MONOTONIC) */
	int32_t left;          /* waiter, before ABANDONED: why it left */
};

/* The padding is the point: the word and mu each start a cache line. */
struct shm_seg { /* NOLINT(clang-analyzer-optin.performance.Padding) */
	/* Header: immutable once init is READY. */
	uint64_t magic;
	uint32_t version;
	uint32_t seg_size; /* sizeof(struct shm_seg) of the creator */
	uint32_t holders, lanes, waiters, leases;
	_Atomic uint32_t init; /* BUSY, then READY (futex-woken) */
	int32_t init_pid;

	/* The fast path's line: the word, and what a fast acquire reads. */
	_Alignas(64) _Atomic int64_t word; /* see SHM_SLOW */
	_Atomic int64_t size;              /* mu; read without it */
	_Atomic int64_t max_in_use;        /* atomic high-water mark */

	_Alignas(64) pthread_mutex_t mu; /* robust, process-shared */

	/* Derived state (rebuilt from the slots after a crash), mu. */
	_Atomic uint32_t closed;
	uint32_t dirty;   /* a recount is owed: the last one gave up */
	int64_t nwaiters; /* slots in WAITING */
	int64_t waiting_weight;
	uint64_t next_ticket;
	uint64_t next_token;          /* holder tokens handed out */
	_Atomic uint64_t fence;       /* atomic: last lease fence handed out */
	_Atomic int64_t last_scan_ns; /* atomic: rate limit of dead scans */
	_Atomic uint32_t
		unsettled; /* atomic: ABANDONED/TAKEN slots to settle */

	/* Statistics, mu (plus the lanes' acquired and consumed). */
	int64_t max_waiters_seen;
	uint64_t acquired, consumed, contended, timeouts, cancels, rejected;
	uint64_t wait_ns_total, reclaimed, rebuilds, recounts;
	uint64_t wait_hist[RATION_HIST_BUCKETS];

	struct shm_holder holder[SHM_HOLDERS];
	struct shm_lane lane[SHM_LANES];
	struct shm_waiter waiter[SHM_WAITERS];
};

#endif
