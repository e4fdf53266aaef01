/* soak.c - mixed load for RATION_SOAK_SECONDS (default 600); RSS and
 * thread count must come back flat.
 *
 * Four driver threads loop over: weighted acquire/release on a shared
 * budget (try, until, ctx-bounded), ctx trees with after-funcs, fds and
 * cancels, named semaphores opened and freed, acquire_all, pool submits
 * (with a pool made and freed every few seconds), and, when group.c is
 * built, groups spawning weighted tasks, and a cross-process (shm)
 * semaphore opened, used and freed again and again. RSS (/proc/self/statm),
 * the thread count (/proc/self/task) and the open fds (/proc/self/fd) are
 * taken after a warm-up and at the end, after the load has stopped and
 * idle pool threads have had time to exit; growth above 1 MiB, or more
 * threads or fds, fails.
 *
 * Meson suite 'soak' only: meson test -C build-r --suite soak
 */
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ration.h>
#include <ration/shared.h>

#define NDRV 4

/* ASan's quarantine and TSan's shadow memory make RSS meaningless: under a
 * sanitizer the soak checks everything but RSS (LSan checks leaks). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_CHECKED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define RSS_CHECKED 0
#endif
#endif
#ifndef RSS_CHECKED
#define RSS_CHECKED 1
#endif

static ration_sem_t *budget;
static char shm_name[64]; /* this process's shared semaphore */
static ration_pool_t *shared_pool;
static _Atomic bool stop;
static _Atomic long ops, tasks_in, tasks_out, afters_in, afters_out;
static _Atomic int failed;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "soak: %s:%d: %s\n", __FILE__,         \
				__LINE__, #cond);                              \
			atomic_store(&failed, 1);                              \
		}                                                              \
	} while (0)

static long
rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f == NULL)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
		rss = -1;
	fclose(f);
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int
count_dir(const char *path)
{
	int n = 0;
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

static int
fds_now(void)
{
	return count_dir("/proc/self/fd") - 1; /* the DIR's own */
}

static int
threads_now(void)
{
	return count_dir("/proc/self/task");
}

static void
sleep_ns(int64_t ns)
{
	struct timespec ts = {.tv_sec = ns / 1000000000,
			      .tv_nsec = ns % 1000000000};
	nanosleep(&ts, NULL);
}

static uint64_t
xs(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void
task(void *arg, int status)
{
	(void)status;
	free(arg); /* every accepted task owns a small block: a lost one leaks */
	atomic_fetch_add(&tasks_out, 1);
}

static void
after_fn(void *arg)
{
	(void)arg;
	atomic_fetch_add(&afters_out, 1);
}

static int
group_fn(ration_ctx_t *ctx, void *arg)
{
	(void)ctx;
	(void)arg;
	return 0;
}

static void *
driver(void *arg)
{
	uint64_t x = 0x9e3779b97f4a7c15u * (uint64_t)((intptr_t)arg + 1);
	ration_pool_t *own = NULL;
	int64_t own_until = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		int64_t n = 1 + (int64_t)(xs(&x) % 64);
		ration_ctx_t *c = NULL;
		int rc;
		switch (xs(&x) % 10) {
		case 0:
			if (ration_sem_try_acquire(budget, n) == 0)
				CHECK(ration_sem_release(budget, n) == 0);
			break;
		case 1:
			rc = ration_sem_acquire_until(
				budget, ration_deadline_after(50000), n);
			if (rc == 0)
				CHECK(ration_sem_release(budget, n) == 0);
			else
				CHECK(rc == -ETIMEDOUT);
			break;
		case 2:
			CHECK(ration_ctx_with_timeout(
				      NULL, (int64_t)(xs(&x) % 100000), &c) ==
			      0);
			if (ration_sem_acquire(budget, c, n) == 0)
				CHECK(ration_sem_release(budget, n) == 0);
			ration_ctx_unref(c);
			break;
		case 3: { /* ctx tree with after-funcs and an fd */
			ration_ctx_t *kid;
			CHECK(ration_ctx_with_timeout(
				      NULL, (int64_t)(xs(&x) % 200000), &c) ==
			      0);
			CHECK(ration_ctx_with_cancel(c, &kid) == 0);
			atomic_fetch_add(&afters_in, 2);
			CHECK(ration_ctx_after(c, after_fn, NULL, NULL) == 0);
			CHECK(ration_ctx_after(kid, after_fn, NULL, NULL) == 0);
			if (xs(&x) % 4 == 0)
				CHECK(ration_ctx_fd(kid) >= 0);
			if (xs(&x) % 2)
				ration_ctx_cancel(c);
			else
				(void)ration_ctx_wait(kid);
			/* The last unref drops after-funcs that have not run (the
			 * timer thread may not have fired yet): end it first. */
			ration_ctx_cancel(c);
			ration_ctx_unref(c);
			ration_ctx_cancel(kid);
			ration_ctx_unref(kid);
			break;
		}
		case 4: { /* named: open/free pairs */
			char name[32];
			ration_sem_t *s;
			snprintf(name, sizeof(name), "soak.%u",
				 (unsigned)(xs(&x) % 8));
			CHECK(ration_sem_open(name, 16, &s) == 0);
			if (ration_sem_try_acquire(s, 1) == 0)
				CHECK(ration_sem_release(s, 1) == 0);
			/* Every holder releases before it frees its reference, so
			 * the last reference always finds the semaphore idle. */
			CHECK(ration_sem_free(s) == 0);
			break;
		}
		case 5: { /* acquire_all past the inline buffer: allocates */
			ration_claim_t cl[RATION_CLAIMS_INLINE + 2];
			for (size_t i = 0; i < RATION_CLAIMS_INLINE + 2; i++)
				cl[i] = (ration_claim_t){budget, 1};
			if (ration_acquire_all(NULL, cl, 2) == 0)
				ration_release_all(cl, 2);
			if (ration_acquire_all(NULL, cl,
					       RATION_CLAIMS_INLINE + 2) == 0)
				ration_release_all(cl,
						   RATION_CLAIMS_INLINE + 2);
			break;
		}
		case 6: { /* shared pool, and a private pool made/freed every ~2 s */
			ration_pool_t *p = shared_pool;
			if (xs(&x) % 2) {
				if (own == NULL) {
					CHECK(ration_pool_new(
						      &(ration_pool_opts_t){
							      .threads = 2,
							      .idle_timeout_ns =
								      1000000},
						      &own) == 0);
					own_until = ration_now() + 2000000000;
				}
				p = own;
			}
			void *blk = malloc(64);
			atomic_fetch_add(&tasks_in, 1);
			if (ration_pool_try_submit(p, task, blk) != 0) {
				free(blk);
				atomic_fetch_sub(&tasks_in, 1);
			}
			if (own != NULL && ration_now() > own_until) {
				CHECK(ration_pool_shutdown(
					      own,
					      xs(&x) % 2 ? RATION_DRAIN
							 : RATION_DISCARD,
					      NULL) == 0);
				ration_pool_free(own);
				own = NULL;
			}
			break;
		}
		case 7: {
			ration_group_t *g;
			ration_group_opts_t o = {.pool = shared_pool,
						 .budget = budget,
						 .limit = 4};
			CHECK(ration_group_new(NULL, &o, &g) == 0);
			for (int i = 0; i < 8; i++)
				if (ration_group_go(g,
						    1 + (int64_t)(xs(&x) % 32),
						    group_fn, NULL) != 0)
					break;
			CHECK(ration_group_wait(g) == 0);
			ration_group_free(g);
			break;
		}
		case 8: { /* shared (shm) semaphore: open, use, free */
			ration_sem_t *s;
			CHECK(ration_sem_open_shared(shm_name, 0, NULL, &s) ==
			      0);
			rc = ration_sem_acquire_until(
				s, ration_deadline_after(20000), 1 + n % 4);
			if (rc == 0)
				CHECK(ration_sem_release(s, 1 + n % 4) == 0);
			else
				CHECK(rc == -ETIMEDOUT);
			CHECK(ration_sem_free(s) == 0);
			break;
		}
		default:
			(void)ration_sem_resize(budget,
						512 + (int64_t)(xs(&x) % 512));
			break;
		}
		atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
	}
	if (own != NULL)
		ration_pool_free(own);
	return NULL;
}

static void
run_for(int64_t ns)
{
	pthread_t t[NDRV];
	atomic_store(&stop, false);
	for (intptr_t i = 0; i < NDRV; i++)
		if (pthread_create(&t[i], NULL, driver, (void *)i) != 0)
			abort();
	int64_t end = ration_now() + ns,
		next = ration_now() + 60 * (int64_t)1000000000;
	while (ration_now() < end) {
		sleep_ns(100000000);
		if (ration_now() >= next) {
			printf("soak: %lld s, %ld ops, RSS %ld KiB, %d "
			       "threads\n",
			       (long long)(ns - (end - ration_now())) /
				       1000000000,
			       atomic_load(&ops), rss_kib(), threads_now());
			fflush(stdout);
			next += 60 * (int64_t)1000000000;
		}
	}
	atomic_store(&stop, true);
	for (int i = 0; i < NDRV; i++)
		pthread_join(t[i], NULL);
}

/* Let idle pool threads time out and the counters settle. */
static void
quiesce(void)
{
	int64_t until = ration_now() + 15 * (int64_t)1000000000;
	while (ration_now() < until &&
	       (atomic_load(&tasks_out) != atomic_load(&tasks_in) ||
		atomic_load(&afters_out) != atomic_load(&afters_in)))
		sleep_ns(10000000);
	sleep_ns(300000000);
}

int
main(void)
{
	const char *e = getenv("RATION_SOAK_SECONDS");
	int64_t secs = e != NULL && atol(e) > 0 ? atol(e) : 600;
	int64_t warm = secs / 10 < 2 ? 2 : secs / 10 > 30 ? 30 : secs / 10;

	/* The shm semaphore: created here, held open by `anchor` so the
	 * drivers' opens attach; unlinked at the end. */
	ration_sem_t *anchor;
	snprintf(shm_name, sizeof(shm_name), "ration-soak-%d", (int)getpid());
	(void)ration_sem_unlink_shared(shm_name);
	if (ration_sem_open_shared(shm_name, 8,
				   &(ration_shared_opts_t){.create = true},
				   &anchor) != 0)
		return 1;
	if (ration_sem_new(1024, NULL, &budget) != 0 ||
	    ration_pool_new(&(ration_pool_opts_t){.threads = 2,
						  .min_threads = 2,
						  .queue_cap = 256},
			    &shared_pool) != 0)
		return 1;
	/* Warm-up: allocator arenas, parkers, the timer heap, pool chunks. */
	run_for(warm * 1000000000);
	quiesce();
	long rss0 = rss_kib();
	int thr0 = threads_now();
	int fds0 = fds_now();
	long ops0 = atomic_load(&ops);
	printf("soak: start (after %llds warm-up): RSS %ld KiB, %d threads\n",
	       (long long)warm, rss0, thr0);
	fflush(stdout);

	run_for(secs * 1000000000);
	quiesce();
	long rss1 = rss_kib();
	int thr1 = threads_now();
	int fds1 = fds_now();
	long nops = atomic_load(&ops) - ops0;
	printf("soak: end after %llds: %ld ops (%.0f/s); RSS %ld KiB (%+ld "
	       "KiB), %d threads (%+d), "
	       "%d fds (%+d); tasks %ld/%ld, after-funcs %ld/%ld\n",
	       (long long)secs, nops, (double)nops / (double)secs, rss1,
	       rss1 - rss0, thr1, thr1 - thr0, fds1, fds1 - fds0,
	       atomic_load(&tasks_out), atomic_load(&tasks_in),
	       atomic_load(&afters_out), atomic_load(&afters_in));

	CHECK(atomic_load(&tasks_out) == atomic_load(&tasks_in));
	CHECK(atomic_load(&afters_out) == atomic_load(&afters_in));
	ration_sem_stats_t st;
	ration_sem_stats(budget, &st);
	CHECK(st.available == st.size && st.waiters == 0);
	if (RSS_CHECKED)
		CHECK(rss1 - rss0 <= 1024);
	else
		printf("soak: RSS not checked under a sanitizer\n");
	CHECK(thr1 <= thr0);
	CHECK(fds1 <= fds0);
	CHECK(ration_sem_available(anchor) == 8);
	CHECK(ration_sem_free(anchor) == 0);
	CHECK(ration_sem_unlink_shared(shm_name) == 0);
	ration_pool_free(shared_pool);
	CHECK(ration_sem_free(budget) == 0);
	if (atomic_load(&failed)) {
		printf("soak: FAILED\n");
		return 1;
	}
	printf("soak: ok\n");
	return 0;
}
