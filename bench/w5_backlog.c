/* w5_backlog.c - W5: K = 8 blocker tasks hold every worker; n tasks are
 * submitted and queue up; then the blockers are released and the backlog
 * drains. bytes/task = (peak RSS - RSS before submitting) / n. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

int
w5_backlog(void)
{
	if (bench_n < 0)
		bench_n = 1000000;
	const bench_pool_t *p = find_pool(bench_peer);
	if (!strcmp(p->name, "c-pthread"))
		die("W5 not applicable to c-pthread (no queue)");
	snprintf(bench_params, sizeof bench_params, "n=%lld k=%lld", bench_n,
		 bench_k);

	p->start();
	for (long long i = 0; i < bench_k; i++)
		p->submit(-1);
	blockers_wait(bench_k);
	long rss0 = cur_rss_kb();
	double t0 = now_ns();
	for (long long i = 0; i < bench_n; i++)
		p->submit(1);
	double t1 = now_ns();
	long peak = peak_rss_kb();
	gate_open();
	p->wait();
	double t2 = now_ns();
	check_done();
	p->stop();
	out("bytes_per_task", (double)(peak - rss0) * 1024.0 / (double)bench_n,
	    "B");
	out("submit_ns_per_task", (t1 - t0) / (double)bench_n, "ns");
	out("drain_ns_per_task", (t2 - t1) / (double)bench_n, "ns");
	out("peak_rss_kb", (double)peak, "KiB");
	return 0;
}
