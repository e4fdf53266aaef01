/* shm.h (internal) - the layout of a shared semaphore's POSIX shm segment.
 *
 * One segment per shared semaphore: a header, a robust process-shared
 * mutex, the derived counters, and two fixed tables of slots. The slots
 * are the truth; every counter can be rebuilt from them (shm_rebuild()
 * in sem_shared.c), which is what makes a crash at any instruction
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
#define SHM_VERSION 1u
#define SHM_HOLDERS 128u /* open handles, all processes together */
#define SHM_WAITERS 256u /* queued callers, all processes together */
#define SHM_LEASES  32u  /* outstanding leases per handle */

/* init word of the header. */
#define SHM_INIT_BUSY  0u /* creator still filling the segment in */
#define SHM_INIT_READY 1u

/* Holder slot states. */
#define HOLDER_FREE 0u
#define HOLDER_USED 1u

/* Waiter slot states; a decided outcome is 0 (GRANTED) or a -errno. */
#define WAITER_FREE    2
#define WAITER_WAITING 1
#define WAITER_GRANTED 0

struct shm_lease {
	uint64_t fence; /* 0 = free entry */
	int64_t n;
};

/* One per open handle. Written under mu; held also read without it. */
struct shm_holder {
	_Atomic uint32_t state; /* FREE/USED; USED is stored last on claim */
	int32_t pid;
	uint64_t start;          /* /proc/<pid>/stat field 22 */
	_Atomic int64_t held;    /* weight this handle holds */
	struct shm_lease leases[SHM_LEASES];
};

/* One per queued caller. The waiter sleeps on futex (a shared futex:
 * FUTEX_WAIT_BITSET without FUTEX_PRIVATE_FLAG); whoever decides its
 * outcome stores state, bumps futex and wakes it after unlocking. */
struct shm_waiter {
	_Atomic uint32_t futex;
	_Atomic int32_t state;   /* FREE, WAITING or the outcome */
	int32_t pid;
	uint32_t holder;         /* index of the handle's holder slot */
	uint64_t start;
	uint64_t ticket;         /* FIFO order: lowest is the head */
	int64_t n;
	int64_t t0;              /* when queued (CLOCK_MONOTONIC) */
};

struct shm_seg {
	/* Header: immutable once init is READY. */
	uint64_t magic;
	uint32_t version;
	uint32_t seg_size;       /* sizeof(struct shm_seg) of the creator */
	uint32_t holders, waiters, leases;
	_Atomic uint32_t init;   /* BUSY, then READY (futex-woken) */
	int32_t init_pid;

	pthread_mutex_t mu;      /* robust, process-shared; guards all below */

	/* Derived state (rebuilt from the slots after a crash). */
	_Atomic int64_t size;    /* mu; read without it by available() */
	_Atomic int64_t avail;   /* mu; = size - sum(held) - sum(GRANTED n) */
	_Atomic uint32_t closed; /* mu */
	int64_t nwaiters;        /* mu: slots in WAITING */
	int64_t waiting_weight;  /* mu */
	uint64_t next_ticket;    /* mu */
	_Atomic uint64_t fence;  /* atomic: last lease fence handed out */
	_Atomic int64_t last_scan_ns; /* atomic: rate limit of dead scans */

	/* Statistics, mu. */
	int64_t max_in_use, max_waiters_seen;
	uint64_t acquired, contended, timeouts, cancels, rejected;
	uint64_t wait_ns_total, reclaimed, rebuilds;
	uint64_t wait_hist[RATION_HIST_BUCKETS];

	struct shm_holder holder[SHM_HOLDERS];
	struct shm_waiter waiter[SHM_WAITERS];
};

#endif
