/* w3_tasks.c - W3: one producer submits n empty tasks through a bound of
 * K = 8, then waits for all. Metrics: ns/task, tasks/s, peak RSS. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

int
w3_tasks(void)
{
	if (bench_n < 0)
		bench_n = 1000000;
	const bench_pool_t *p = find_pool(bench_peer);
	snprintf(bench_params, sizeof bench_params, "n=%lld k=%lld", bench_n,
		 bench_k);

	run_tasks(p, 1);
	return 0;
}
