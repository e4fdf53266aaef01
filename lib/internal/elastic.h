/* elastic.h (internal) - a running group task's claim on its budget:
 * the declared weight, plus what ration_task_grow() added, plus (elastic
 * groups) what the task was measured to use past both. lib/elastic.c keeps
 * the claims and the oldest-first order; lib/elastic_measure.c measures
 * them (one sampler thread per elastic group: per-task jemalloc counters,
 * or the process's RSS). The group calls only the functions below:
 * around fn in group_task.c, the rest in group_lifecycle.c. */
#ifndef RATION_INTERNAL_ELASTIC_H
#define RATION_INTERNAL_ELASTIC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal/compiler.h"
#include "internal/list.h"
#include "ration/account.h"
#include "ration/ctx.h"
#include "ration/group.h"
#include "ration/sem.h"

struct ration__elastic;

/* One running task's claim; lives in the group's task record. Fields
 * marked "task" are touched only by the thread running the task. */
struct ration__claim {
	struct ration__list node;   /* el->mu: tracked claims, oldest first */
	struct ration__elastic *el; /* task */
	struct ration__claim
		*outer;        /* task: the claim this thread ran before */
	ration_ctx_t *ctx;     /* task: the ctx fn got */
	ration_ctx_t *own_ctx; /* task: fn's own child ctx, or NULL */
	ration_ctx_t *wake;    /* el->mu: a waiting raise's ctx, cancelled
				     * when this task becomes the oldest */
	int64_t start_tick;    /* task; ordered by it */
	int64_t weight;        /* task */
	int64_t floor;         /* el->mu: weight + grown; claim >= floor */
	int64_t claim;         /* el->mu: units held, weight included */
	int64_t max_claim;     /* el->mu */
	/* The task thread's jemalloc counters (NULL: not measured per task)
	 * and their difference at the start: set before the claim is
	 * tracked, read by the sampler while it is. */
	const volatile uint64_t *allocp, *deallocp;
	uint64_t heap0;
	/* task: the jemalloc arena this task allocates from (its own, whose
	 * hooks charge commits here) and the thread's arena before it. */
	unsigned arena, old_arena;
	bool in_arena;  /* task: allocating from its own arena */
	bool tracked;   /* task: linked on el->tracked */
	bool cancelled; /* el->mu: overrun_cancel has fired */
};

/* The group's claims state; NULL for a group without a budget. */
struct ration__elastic {
	ration_sem_t *budget; /* immutable, borrowed */
	bool elastic;         /* immutable: opts.elastic */
	bool per_task;     /* immutable: jemalloc counters per task, else RSS */
	bool backpressure; /* immutable: opts.backpressure (per-task arenas) */
	double overrun_cancel; /* immutable: factor, 0 = never */
	int64_t sample_ns;     /* immutable */
	int rss_fd;            /* immutable: /proc/self/statm, or -1 */

	_Atomic bool track_all; /* atomic: a grow was seen; track every task */

	pthread_mutex_t mu;
	struct ration__list
		tracked;   /* mu: struct ration__claim, oldest first */
	int64_t floors;    /* mu: summed floors of tracked claims */
	int64_t rss_base;  /* mu: RSS when the first tracked task began */
	pthread_cond_t cv; /* mu: wakes the sampler */
	bool stop;         /* mu: the sampler must exit */
	bool has_sampler;  /* immutable after new */
	pthread_t sampler;

	/* statistics (relaxed atomics: exact when idle) */
	_Atomic uint64_t overrun_tasks;
	_Atomic int64_t max_overrun_bytes;
	_Atomic int64_t consumed_total;
};

/* Make @g's claims state from @o (budget set). Return 0, -EINVAL (bad
 * elastic options), -ENOMEM or -EAGAIN (no sampler thread). */
int ration__elastic_new(const ration_group_opts_t *o,
			struct ration__elastic **out);
void ration__elastic_free(struct ration__elastic *el);

/* Around fn, on the task's thread. begin returns the ctx fn gets
 * (@group_ctx, or the task's own child of it) and never fails: without
 * memory for a child ctx the task runs on @group_ctx and cannot be
 * cancelled alone. end gives back everything past the weight (the group
 * releases the weight) and fills @r->overrun_bytes. */
ration_ctx_t *ration__claim_begin(struct ration__elastic *el,
				  struct ration__claim *c,
				  ration_ctx_t *group_ctx, int64_t weight,
				  int64_t start_tick);
void ration__claim_end(struct ration__claim *c, ration_task_report_t *r);

/* Add @el's counters to @out. */
void ration__elastic_stats(struct ration__elastic *el,
			   ration_group_stats_t *out);

/* ---- between elastic.c and elastic_measure.c ---- */

/* Claims grow and shrink in steps, so that a task's small allocations do
 * not each cost a semaphore call; a claim shrinks only when it is this much
 * over what is measured, so a task hovering at a step does not flap. */
#define RATION__CLAIM_STEP   ((int64_t)64 << 10)
#define RATION__CLAIM_SHRINK ((int64_t)256 << 10)

/* The sampler's pass (el->mu held; may drop and retake it). */
void ration__elastic_sample_locked(struct ration__elastic *el);

/* elastic_measure.c: the calling thread's jemalloc allocated/deallocated
 * counters; false without jemalloc as the process allocator. */
bool ration__heap_counters(const volatile uint64_t **allocp,
			   const volatile uint64_t **deallocp);
/* elastic_arena.c: switch the calling thread to an arena of its own
 * whose hooks call ration__claim_charge() before committing pages; false
 * (consume-only) without jemalloc or when jemalloc refuses an arena.
 * leave switches back to @old and gives the arena back to the pool. */
bool ration__arena_enter(unsigned *arena, unsigned *old);
void ration__arena_leave(unsigned arena, unsigned old);
/* elastic.c, called from the hooks on the allocating thread: the group
 * task running here is about to commit @len bytes in @arena. Past its
 * claim it waits for room (the oldest consumes). Return 0 (go on) or the
 * task's ctx error (refuse the pages: malloc returns NULL). */
int ration__claim_charge(unsigned arena, int64_t len);
/* The process's resident bytes through @fd (/proc/self/statm); -1 on error. */
int64_t ration__rss_read(int fd);
/* The sampler thread's body (arg: the struct ration__elastic). */
void *ration__elastic_sampler(void *arg);
/* Test-only: when set before group_new, elastic groups measure RSS even
 * where per-task counters exist. Not exported. */
extern _Atomic bool ration__elastic_rss_only;

#endif
