/* deadline_accuracy.c - how late do deadlines end waits, under load?
 *
 * 2 x online-CPU threads each alternate a little busy work with a wait
 * that must time out (a semaphore whose only unit is held for ever):
 *   until: ration_sem_acquire_until(s, deadline, 1)
 *   ctx:   ration_sem_acquire(s, ctx_with_deadline(deadline), 1)
 * lateness = the moment the call returned - deadline. Then the timer
 * thread's side: ration_ctx_after callbacks and ration_ctx_fd readiness
 * (poll) on deadline ctxs, same load. Prints p50/p99/max per kind.
 * Target (contract §3/§10): p99 <= 1 ms.
 *
 * Built by scripts/reliability.sh (not by bench/meson.build):
 *   cc -O2 -Iinclude bench/deadline_accuracy.c build-r/lib/libration.a -pthread
 * Env: DEADLINE_WAITS (default 10000 per kind), DEADLINE_THREADS.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ration.h>

enum kind { K_UNTIL, K_CTX, K_AFTER, K_FD, NKIND };
static const char *const kind_name[NKIND] = {
	"acquire_until", "acquire(ctx deadline)", "ctx_after (timer thread)",
	"ctx_fd (timer thread)"};

static ration_sem_t *held;
static int64_t *late[NKIND];
static _Atomic long nlate[NKIND];
static long per_kind;
static int nthreads;

struct after_rec {
	int64_t deadline;
	_Atomic int64_t fired;
};

static void
after_fn(void *arg)
{
	struct after_rec *r = arg;
	atomic_store(&r->fired, ration_now());
}

static void
record(enum kind k, int64_t v)
{
	long i = atomic_fetch_add(&nlate[k], 1);
	if (i < per_kind)
		late[k][i] = v;
}

static void
busy(uint64_t *x)
{
	*x = *x * 6364136223846793005u + 1;
	int64_t until =
		ration_now() + (int64_t)(*x >> 40) % 300000; /* up to 0.3 ms */
	while (ration_now() < until)
		;
}

static void *
worker(void *arg)
{
	enum kind k = (enum kind)(intptr_t)arg;
	uint64_t x = (uint64_t)ration_now() ^ (uint64_t)(uintptr_t)&x;
	long n = per_kind / nthreads + 1;

	for (long i = 0; i < n; i++) {
		busy(&x);
		int64_t dl = ration_now() + 200000 +
			     (int64_t)(x >> 44) % 800000; /* 0.2-1 ms */
		int64_t end;
		ration_ctx_t *c;
		switch (k) {
		case K_UNTIL:
			if (ration_sem_acquire_until(held, dl, 1) != -ETIMEDOUT)
				abort();
			end = ration_now();
			break;
		case K_CTX:
			if (ration_ctx_with_deadline(NULL, dl, &c) != 0)
				abort();
			if (ration_sem_acquire(held, c, 1) != -ETIMEDOUT)
				abort();
			end = ration_now();
			ration_ctx_unref(c);
			break;
		case K_AFTER: {
			struct after_rec r = {.deadline = dl};
			if (ration_ctx_with_deadline(NULL, dl, &c) != 0 ||
			    ration_ctx_after(c, after_fn, &r, NULL) != 0)
				abort();
			while (atomic_load(&r.fired) == 0)
				usleep(200);
			end = atomic_load(&r.fired);
			ration_ctx_unref(c);
			break;
		}
		default: {
			if (ration_ctx_with_deadline(NULL, dl, &c) != 0)
				abort();
			struct pollfd p = {.fd = ration_ctx_fd(c),
					   .events = POLLIN};
			if (p.fd < 0 || poll(&p, 1, 10000) != 1)
				abort();
			end = ration_now();
			ration_ctx_unref(c);
			break;
		}
		}
		record(k, end - dl);
	}
	return NULL;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

int
main(void)
{
	const char *e = getenv("DEADLINE_WAITS");
	per_kind = e != NULL && atol(e) > 0 ? atol(e) : 10000;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	e = getenv("DEADLINE_THREADS");
	nthreads = e != NULL && atoi(e) > 0 ? atoi(e)
					    : (int)(2 * (ncpu > 0 ? ncpu : 1));
	if (ration_sem_new(1, NULL, &held) != 0 ||
	    ration_sem_try_acquire(held, 1) != 0)
		return 1;

	printf("deadline_accuracy: %ld waits per kind, %d threads on %ld CPUs, "
	       "busy work "
	       "0-0.3 ms between waits, deadlines 0.2-1 ms ahead\n",
	       per_kind, nthreads, ncpu);
	printf("%-26s %10s %10s %10s %10s\n", "kind", "p50 us", "p99 us",
	       "max us", "early");
	int bad = 0;
	for (int k = 0; k < NKIND; k++) {
		late[k] = calloc((size_t)per_kind, sizeof(int64_t));
		pthread_t *t = calloc((size_t)nthreads, sizeof(*t));
		if (late[k] == NULL || t == NULL)
			return 1;
		for (int i = 0; i < nthreads; i++)
			pthread_create(&t[i], NULL, worker,
				       (void *)(intptr_t)k);
		for (int i = 0; i < nthreads; i++)
			pthread_join(t[i], NULL);
		free(t);
		long n = atomic_load(&nlate[k]) < per_kind
				 ? atomic_load(&nlate[k])
				 : per_kind;
		qsort(late[k], (size_t)n, sizeof(int64_t), cmp64);
		long early = 0;
		for (long i = 0; i < n; i++)
			early += late[k][i] < 0;
		/* A wait that returns before its deadline breaks the contract. */
		bad |= early != 0;
		printf("%-26s %10.1f %10.1f %10.1f %10ld\n", kind_name[k],
		       (double)late[k][n / 2] / 1e3,
		       (double)late[k][n * 99 / 100] / 1e3,
		       (double)late[k][n - 1] / 1e3, early);
		free(late[k]);
	}
	return bad;
}
