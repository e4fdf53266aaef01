/* ration/account.h - what a task really used: heap peak, CPU, wait.
 *
 * With jemalloc as the process allocator, a task's measured peak heap and
 * allocated bytes come from jemalloc's per-thread counters
 * (thread.peak.read / thread.allocatedp). Without it both are -1: a
 * missing number, never a wrong one. CPU time (CLOCK_THREAD_CPUTIME_ID) is
 * measured only on request (RATION_ACCOUNT_CPU): on Linux each read of a
 * thread CPU clock is a system call (~0.8 us on a VM), ten times the cost
 * of everything else; cpu_ns is -1 otherwise.
 *
 * Groups fill a report per task (opts.on_report); code that does not use
 * groups brackets its work with ration_account_begin()/end():
 *
 *	ration_account_t a;
 *	ration_task_report_t r;
 *	ration_account_begin(&a);
 *	work();
 *	ration_account_end(&a, &r);     // r.peak_bytes, r.cpu_ns, r.run_ns
 */
#ifndef RATION_ACCOUNT_H
#define RATION_ACCOUNT_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One finished task. Times in ns; -1 where not measured. */
typedef struct {
	void *arg;        /* the task's arg (group go), else NULL */
	uint64_t seq;     /* 1-based order of the task's go among the
	                          * group's successful ones, else 0 */
	int64_t declared; /* weight asked for (group go), else 0 */
	int64_t wait_ns;  /* from go() call to the task starting */
	int64_t run_ns;   /* wall time of fn */
	int64_t cpu_ns;   /* thread CPU time of fn */
	int64_t peak_bytes; /* peak live heap above the start, -1 without jemalloc */
	int64_t allocated_bytes; /* bytes allocated by fn, -1 without jemalloc */
	int status; /* fn's return value (or -ECANCELED if never run) */
	bool under_declared;   /* group with budget_bytes: peak_bytes > declared
	                          * x (1 + opts.tolerance) + one allocator
	                          * size-class step above declared */
	bool over_reserved;    /* group with budget_bytes: peak_bytes <
	                          * declared / 2 (the budget held room unused) */
	int64_t overrun_bytes; /* largest claim - declared (elastic, task_grow);
	                          * 0 if never over */
} ration_task_report_t;

/* Scratch for begin/end on the same thread; contents are private. */
typedef struct {
	int64_t t0_ns;
	int64_t cpu0_ns;
	uint64_t alloc0;
	uint64_t dealloc0;
} ration_account_t;

/**
 * ration_account_available() - whether heap figures can be measured.
 *
 * Return: true only when ration was built with jemalloc AND this process's
 * malloc really is jemalloc's (a program that links only libration.so but
 * allocates with glibc gets false).
 * Blocks: no (the answer is computed once). Allocates: once, a probe.
 * Calls user code: never.
 */
RATION_API bool ration_account_available(void);

/**
 * ration_account_round() - what the allocator really hands out for a
 * request of @bytes.
 * @bytes: a request size; <= 0 is returned as it is.
 *
 * jemalloc rounds every request up to a size class (4 classes per
 * doubling above 16 KiB: a 1.28 MiB buffer takes 1.5 MiB), and measured
 * peaks count the rounded sizes. Declaring a task's weight as the sum of
 * its rounded buffers makes declared and measured comparable.
 *
 * Return: jemalloc's nallocx(@bytes) when ration_account_available();
 * else @bytes (identity), as it is when the size is past what jemalloc
 * can serve.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int64_t ration_account_round(int64_t bytes);

/* ration_account_begin_with() flags. */
#define RATION_ACCOUNT_CPU 1u /* also measure cpu_ns (two system calls) */

/**
 * ration_account_begin() - start measuring the calling thread: wall time
 * and heap (cpu_ns will be -1). Same as ration_account_begin_with(@a, 0).
 *
 * Resets the thread's jemalloc peak counter (one per thread: nested begin
 * calls on one thread share it).
 * Blocks: no. Allocates: never. Calls user code: never. Cost:
 * docs/account.md (< 100 ns).
 */
RATION_API void ration_account_begin(ration_account_t *a);

/**
 * ration_account_begin_with() - ration_account_begin() choosing what to
 * measure.
 * @a:    scratch for the matching ration_account_end().
 * @what: 0, or RATION_ACCOUNT_CPU to fill cpu_ns too.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API void ration_account_begin_with(ration_account_t *a, unsigned what);

/**
 * ration_account_end() - stop measuring; fill @out's measured fields.
 *
 * Must run on the thread that called begin. Fills run_ns, cpu_ns (-1
 * unless begun with RATION_ACCOUNT_CPU), peak_bytes and allocated_bytes;
 * leaves arg, seq, declared, wait_ns and status as they are.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API void ration_account_end(const ration_account_t *a,
				   ration_task_report_t *out);

#ifdef __cplusplus
}
#endif

#endif /* RATION_ACCOUNT_H */
