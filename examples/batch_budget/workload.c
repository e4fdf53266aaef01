/* workload.c - the seeded synthetic workload (heavy-tailed task sizes)
 * and the task body: allocate, fill, wait as if reading, hash; plus
 * on_report() and the counters one run keeps while its tasks run. */
#include "batch_budget.h"

/* ---- shared state of one run ---- */

struct task *tasks;
_Atomic int64_t in_use, in_use_max, held_byte_ns;
_Atomic long done, failed_tasks;
_Atomic int64_t running, running_max;
pthread_mutex_t report_mu = PTHREAD_MUTEX_INITIALIZER;
long reports, under_declared;
int64_t measured_max = -1;
int64_t io_bw;

static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

/* ---- the task ---- */

static void
add_max(_Atomic int64_t *now, _Atomic int64_t *max, int64_t delta)
{
	int64_t v =
		atomic_fetch_add_explicit(now, delta, memory_order_relaxed) +
		delta;
	int64_t m = atomic_load_explicit(max, memory_order_relaxed);
	while (v > m &&
	       !atomic_compare_exchange_weak_explicit(
		       max, &m, v, memory_order_relaxed, memory_order_relaxed))
		;
}

static void
note_in_use(int64_t delta)
{
	add_max(&in_use, &in_use_max, delta);
	add_max(&running, &running_max, delta > 0 ? 1 : -1);
}

/* Load, wait for "I/O", process: allocate and fill the buffer, sleep
 * bytes / io_bw, then hash every word of it. */
int
run_task(ration_ctx_t *ctx, void *arg)
{
	struct task *t = arg;
	(void)ctx;
	int64_t t0 = ration_now();
	t->wait_ns = t0 - t->offer_ns;
	atomic_fetch_add(&t->runs, 1);
	note_in_use(t->alloc);

	/* A liar fills all it allocated (resident) and hashes what it
	 * declared: its extra memory is a scratch buffer, its work the same. */
	size_t words = (size_t)t->bytes / sizeof(uint64_t);
	size_t fill = (size_t)t->alloc / sizeof(uint64_t);
	uint64_t *buf = malloc((size_t)t->alloc);
	if (buf == NULL) {
		note_in_use(-t->alloc);
		atomic_fetch_add(&failed_tasks, 1);
		return -ENOMEM;
	}
	uint64_t x = t->seed;
	for (size_t i = 0; i < fill; i += 8) {
		uint64_t r = splitmix64(&x);
		for (size_t j = 0; j < 8; j++)
			buf[i + j] = r + j * 0x9e3779b97f4a7c15u;
	}
	if (io_bw > 0) {
		int64_t ns = (int64_t)((double)t->bytes * 1e9 / (double)io_bw);
		struct timespec ts = {ns / 1000000000, ns % 1000000000};
		nanosleep(&ts, NULL);
	}
	uint64_t h[4] = {1, 2, 3, 4};
	for (size_t i = 0; i < words; i += 4)
		for (size_t j = 0; j < 4; j++) {
			h[j] = (h[j] ^ buf[i + j]) * 0x100000001b3u;
			h[j] ^= h[j] >> 29;
		}
	t->sum = (h[0] ^ h[1] * 3 ^ h[2] * 5 ^ h[3] * 7) | 1;
	free(buf);

	note_in_use(-t->alloc);
	atomic_fetch_add_explicit(&held_byte_ns,
				  t->alloc / KIB * (ration_now() - t0) / 1024,
				  memory_order_relaxed);
	atomic_fetch_add(&done, 1);
	return 0;
}

/* Called by the group after each task, on the worker, no lock held. */
void
on_report(const ration_task_report_t *r, void *udata)
{
	(void)udata;
	pthread_mutex_lock(&report_mu);
	reports++;
	if (r->peak_bytes >= 0) {
		if (r->peak_bytes > measured_max)
			measured_max = r->peak_bytes;
		if (r->under_declared)
			under_declared++;
	}
	pthread_mutex_unlock(&report_mu);
}

/* ---- the workload ---- */

/* Round up to jemalloc's large size classes (4 per doubling), so that the
 * declared bytes are exactly what the allocator hands out and measured
 * peaks are comparable with declarations. */
static int64_t
size_class(int64_t n)
{
	int64_t p = 1;
	while (p * 2 < n)
		p *= 2;
	int64_t step = p / 4 > 4096 ? p / 4 : 4096;
	return (n + step - 1) / step * step;
}

void
make_workload(const struct config *c)
{
	uint64_t x = c->seed;
	/* Liars from a stream of their own: the sizes stay those of the
	 * honest run, and the same tasks lie in every mode. */
	uint64_t lx = c->seed ^ 0x6c69617273ull;
	int64_t cap = c->budget < MAX_TASK ? c->budget : MAX_TASK;
	for (long i = 0; i < c->tasks; i++) {
		/* Heavy-tailed, Pareto-like: each octave is rarer than the one
		 * below; uniform within an octave. 98% in [1, 8) MiB, 2% in
		 * [8, 128) MiB. Percent per octave: */
		static const int64_t lo[] = {1, 2, 4, 8, 16, 32, 64};
		static const int pct10[] = {490, 294, 196, 10,
					    5,   3,   2}; /* in 0.1% */
		int pick = (int)(splitmix64(&x) % 1000), o = 0;
		while (o < 6 && pick >= pct10[o])
			pick -= pct10[o++];
		int64_t base = lo[o] * MIB;
		int64_t b = size_class(
			base + (int64_t)(splitmix64(&x) % (uint64_t)base));
		tasks[i].bytes = b < cap ? b : cap / 4096 * 4096;
		tasks[i].seed = splitmix64(&x);
		bool liar =
			(double)(splitmix64(&lx) >> 11) * 0x1p-53 < c->lie_p;
		tasks[i].alloc =
			liar ? (int64_t)((double)tasks[i].bytes * c->lie_f) /
					4096 * 4096
			     : tasks[i].bytes;
		tasks[i].sum = 0;
		atomic_store(&tasks[i].runs, 0);
	}
}
