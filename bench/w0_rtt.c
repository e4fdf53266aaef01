/* w0_rtt.c - W0: what moving one cache line between two threads costs.
 *
 * Not a workload of contract §8 but the yardstick for reading them: two
 * threads hand one cache line back and forth n times (each waits, busy,
 * for the other's store) and the line reports ns per round trip. On this
 * 2-vCPU KVM guest it varies from run to run, 108 to 884 ns measured on
 * 2026-11-29, with where the host has placed the two vCPUs; every
 * cross-thread hand-off in W2-W4 pays some multiple of it, which is why
 * their ration rows are bimodal (docs/performance.md).
 *
 *   ration-bench -w W0 -peer cacheline-rtt [-n 1000000]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"

static _Atomic long long ball __attribute__((aligned(64)));

/* Returns each odd value as the next even one. */
static void *
bouncer(void *arg)
{
	(void)arg;
	for (long long i = 1; i <= bench_n; i++) {
		while (atomic_load_explicit(&ball, memory_order_acquire) !=
		       2 * i - 1)
			;
		atomic_store_explicit(&ball, 2 * i, memory_order_release);
	}
	return NULL;
}

int
w0_rtt(void)
{
	pthread_t th;

	if (strcmp(bench_peer, "cacheline-rtt") != 0)
		die("W0 peers: cacheline-rtt");
	if (bench_n < 0)
		bench_n = 1000000;
	snprintf(bench_params, sizeof(bench_params), "n=%lld", bench_n);
	if (pthread_create(&th, NULL, bouncer, NULL) != 0)
		die("pthread_create");
	double t0 = now_ns();
	for (long long i = 1; i <= bench_n; i++) {
		atomic_store_explicit(&ball, 2 * i - 1, memory_order_release);
		while (atomic_load_explicit(&ball, memory_order_acquire) !=
		       2 * i)
			;
	}
	double dt = now_ns() - t0;
	pthread_join(th, NULL);
	out("ns_per_op", bench_n > 0 ? dt / (double)bench_n : 0, "ns");
	return 0;
}
