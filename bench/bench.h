/* bench.h - shared state and helpers of ration-bench (contract §8).
 *
 * One process = one measurement, like bench/peers/c/bench.c, with the
 * same flags and the same output lines, so compare.sh can fold ration's
 * lines and the peers' lines with one awk script.
 */
#ifndef RATION_BENCH_H
#define RATION_BENCH_H

#include <stdbool.h>
#include <stdint.h>

/* Flags (-1 = workload default). */
extern long long bench_n, bench_t, bench_k, bench_size, bench_budget,
	bench_spin;
extern long long bench_pool_threads; /* -pool: threads under ration-group */
extern const char *bench_w, *bench_peer;
extern char bench_params[256];

/* Tasks finished: one relaxed atomic increment per task in every peer. */
extern _Atomic long long bench_done;

double now_ns(void);
long peak_rss_kb(void);
long cur_rss_kb(void);
void out(const char *metric, double v, const char *unit);
_Noreturn void die(const char *msg);
void check_done(void);
void task_done(void);

/* ~200 ns of busy work: the peers' serial multiply-add chain. */
void spin(long long n);
double spin_call_ns(long long s);
long long calibrate(double target_ns);

/* W5 gate: K blocker tasks hold every slot until the gate opens. */
void blocker_run(void);
void blockers_wait(long long k);
void gate_open(void);

/* A way to run tasks (W3-W5). submit() receives the weight: 1 for W3/W5,
 * 1 + i%8 for W4, -1 for a W5 blocker. */
typedef struct {
	const char *name;
	void (*start)(void);
	void (*submit)(intptr_t w);
	void (*wait)(void);
	void (*stop)(void);
	bool weighted; /* W4: the peer takes the weight itself (no wsem step) */
} bench_pool_t;

const bench_pool_t *find_pool(const char *name);
/* Run one task body: blocker, or (W4) take the weight, spin, give it back. */
void run_task(intptr_t w, bool take_weight);
extern bool bench_w4; /* W4: tasks spin; wsem-style peers take the weight */
/* W3/W4: start @p, submit bench_n tasks of weight 1 + i % @weights, wait,
 * check that all ran, stop; print ns/task, tasks/s and peak RSS. */
void run_tasks(const bench_pool_t *p, int weights);

int w0_rtt(void);
int w1_sem(void);
int w2_contended(void);
int w3_tasks(void);
int w4_weighted(void);
int w5_backlog(void);
int a1_account(void);

#endif
