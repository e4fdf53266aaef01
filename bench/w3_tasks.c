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
	snprintf(bench_params, sizeof bench_params, "n=%lld k=%lld", bench_n, bench_k);

	p->start();
	double t0 = now_ns();
	for (long long i = 0; i < bench_n; i++)
		p->submit(1);
	p->wait();
	double dt = now_ns() - t0;
	check_done();
	p->stop();
	out("ns_per_task", dt / (double)bench_n, "ns");
	out("tasks_per_s", (double)bench_n / dt * 1e9, "tasks/s");
	out("peak_rss_kb", (double)peak_rss_kb(), "KiB");
	return 0;
}
