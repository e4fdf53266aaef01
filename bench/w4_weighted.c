/* w4_weighted.c - W4: n tasks of weight 1 + i%8 on a shared budget of 16,
 * an executor of K = 8 threads; each task runs spin(S) (~200 ns) while it
 * holds its weight. Metrics: ns/task, tasks/s, peak RSS. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

int
w4_weighted(void)
{
	if (bench_n < 0)
		bench_n = 1000000;
	if (bench_spin < 0)
		bench_spin = calibrate(200);
	bench_w4 = true;
	const bench_pool_t *p = find_pool(bench_peer);
	if (!strcmp(p->name, "c-pthread"))
		die("W4 not implemented for c-pthread");
	snprintf(bench_params, sizeof bench_params,
		 "n=%lld k=%lld budget=%lld spin=%lld", bench_n, bench_k,
		 bench_budget, bench_spin);
	if (bench_budget < 8)
		die("-budget must be >= 8 (weights go up to 8)");

	run_tasks(p, 8);
	return 0;
}
