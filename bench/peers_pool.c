/* peers_pool.c - the ways to run tasks in W3-W5.
 *
 *   ration-pool     ration_pool_t of K threads; wait = shutdown(DRAIN).
 *                   W3: default queue_cap (1024 per thread, submit blocks
 *                   when full); W5: queue_cap = SIZE_MAX (contract §10).
 *   ration-group    ration_group_t on a pool of -pool threads (default K;
 *                   -pool 0 = ration_pool_default()). W3: limit K, no
 *                   budget. W4: budget = a ration sem of B, go(weight),
 *                   no limit. go() blocks the producer: the sem is the queue.
 *   c-gthreadpool   GLib GThreadPool, max_threads K, non-exclusive;
 *                   wait = g_thread_pool_free(pool, FALSE, TRUE)
 *   c-pthread       thread per task: a K-slot wsem, a detached thread per
 *                   task; wait = acquire all K slots
 * A "+wsem" suffix (W4) makes each task take its weight from a wsem of B
 * inside the task, as the peers' c-gthreadpool+wsem does; "+sem" the same
 * with a ration sem (ration_sem_acquire inside the task).
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <ration.h>

#include "bench.h"
#include "wsem.h"

#ifndef BENCH_HAVE_POOL
#define BENCH_HAVE_POOL 0
#endif
#ifndef BENCH_HAVE_GROUP
#define BENCH_HAVE_GROUP 0
#endif
#ifndef BENCH_HAVE_GLIB
#define BENCH_HAVE_GLIB 0
#endif
#if BENCH_HAVE_GLIB
#include <glib.h>
#endif

bool bench_w4;

/* ---- the task body ----------------------------------------------------- */

enum in_task { IN_TASK_NONE, IN_TASK_WSEM, IN_TASK_SEM };
static enum in_task in_task;
static wsem_t budget_wsem;
static ration_sem_t *budget_sem;

void
run_task(intptr_t w, bool take_weight)
{
	if (w < 0) {
		blocker_run();
		return;
	}
	if (bench_w4) {
		if (take_weight && in_task == IN_TASK_WSEM) {
			wsem_acquire(&budget_wsem, w);
			spin(bench_spin);
			wsem_release(&budget_wsem, w);
		} else if (take_weight && in_task == IN_TASK_SEM) {
			if (ration_sem_acquire(budget_sem, NULL, w) != 0)
				die("ration_sem_acquire");
			spin(bench_spin);
			if (ration_sem_release(budget_sem, w) != 0)
				die("ration_sem_release");
		} else {
			spin(bench_spin);
		}
	}
	task_done();
}

/* ---- W5 gate ----------------------------------------------------------- */

static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_is_open; /* gate_mu */
static long long blocked; /* gate_mu */

void
blocker_run(void)
{
	pthread_mutex_lock(&gate_mu);
	blocked++;
	pthread_cond_broadcast(&gate_cv);
	while (!gate_is_open)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}

void
blockers_wait(long long k)
{
	pthread_mutex_lock(&gate_mu);
	while (blocked < k)
		pthread_cond_wait(&gate_cv, &gate_mu);
	pthread_mutex_unlock(&gate_mu);
}

void
gate_open(void)
{
	pthread_mutex_lock(&gate_mu);
	gate_is_open = true;
	pthread_cond_broadcast(&gate_cv);
	pthread_mutex_unlock(&gate_mu);
}

/* ---- ration-pool ------------------------------------------------------- */

#if BENCH_HAVE_POOL
static ration_pool_t *rpool;

static void
rp_fn(void *arg, int status)
{
	if (status != 0)
		die("ration pool discarded a task");
	run_task((intptr_t)arg, true);
}

static void
rp_start(void)
{
	ration_pool_opts_t o = {
		.threads = (unsigned)bench_k,
		.queue_cap = !strcmp(bench_w, "W5") ? SIZE_MAX : 0,
		.name = "bench",
	};
	if (ration_pool_new(&o, &rpool) != 0)
		die("ration_pool_new");
}

static void
rp_submit(intptr_t w)
{
	if (ration_pool_submit(rpool, NULL, rp_fn, (void *)w) != 0)
		die("ration_pool_submit");
}

static void
rp_wait(void)
{
	if (ration_pool_shutdown(rpool, RATION_DRAIN, NULL) != 0)
		die("ration_pool_shutdown");
}

static void
rp_stop(void)
{
	ration_pool_free(rpool);
}
#endif

/* ---- ration-group ------------------------------------------------------ */

#if BENCH_HAVE_GROUP
static ration_pool_t *gpool; /* NULL: the default pool */
static ration_group_t *group;
static ration_sem_t *group_budget;

static int
rg_fn(ration_ctx_t *ctx, void *arg)
{
	(void)ctx;
	run_task((intptr_t)arg, false);
	return 0;
}

static void
rg_start(void)
{
	long long threads =
		bench_pool_threads < 0 ? bench_k : bench_pool_threads;
	if (threads > 0) {
		ration_pool_opts_t po = {.threads = (unsigned)threads,
					 .name = "bench"};
		if (ration_pool_new(&po, &gpool) != 0)
			die("ration_pool_new");
	}
	ration_group_opts_t o = {.pool = gpool};
	if (bench_w4) {
		if (ration_sem_new(bench_budget, NULL, &group_budget) != 0)
			die("ration_sem_new");
		o.budget = group_budget;
	} else {
		o.limit = bench_k;
	}
	if (ration_group_new(NULL, &o, &group) != 0)
		die("ration_group_new");
}

static void
rg_submit(intptr_t w)
{
	if (w < 0)
		die("ration-group has no W5 (contract §10: go() blocks, no "
		    "backlog forms)");
	if (ration_group_go(group, w, rg_fn, (void *)w) != 0)
		die("ration_group_go");
}

static void
rg_wait(void)
{
	if (ration_group_wait(group) != 0)
		die("ration_group_wait");
}

static void
rg_stop(void)
{
	ration_group_free(group);
	if (gpool != NULL)
		ration_pool_free(gpool);
	if (group_budget != NULL && ration_sem_free(group_budget) != 0)
		die("ration_sem_free: budget still held");
}
#endif

/* ---- c-gthreadpool ----------------------------------------------------- */

#if BENCH_HAVE_GLIB
static GThreadPool *gp;

static void
gp_fn(gpointer data, gpointer user)
{
	(void)user;
	run_task((intptr_t)GPOINTER_TO_INT(data), true);
}

static void
gp_start(void)
{
	gp = g_thread_pool_new(gp_fn, NULL, (gint)bench_k, FALSE, NULL);
}

static void
gp_submit(intptr_t w)
{
	/* data must be non-NULL: weights are never 0 */
	g_thread_pool_push(gp, GINT_TO_POINTER((int)w), NULL);
}

static void
gp_wait(void)
{
	g_thread_pool_free(gp, FALSE, TRUE);
}

static void
gp_stop(void)
{
}
#endif

/* ---- c-pthread --------------------------------------------------------- */

static wsem_t pt_slots;
static pthread_attr_t pt_detached;

static void *
pt_fn(void *arg)
{
	run_task((intptr_t)arg, true);
	wsem_release(&pt_slots, 1);
	return NULL;
}

static void
pt_start(void)
{
	wsem_init(&pt_slots, bench_k);
	pthread_attr_init(&pt_detached);
	pthread_attr_setdetachstate(&pt_detached, PTHREAD_CREATE_DETACHED);
}

static void
pt_submit(intptr_t w)
{
	pthread_t t;
	wsem_acquire(&pt_slots, 1);
	if (pthread_create(&t, &pt_detached, pt_fn, (void *)w) != 0)
		die("pthread_create");
}

static void
pt_wait(void)
{
	wsem_acquire(&pt_slots, bench_k);
	wsem_release(&pt_slots, bench_k);
}

static void
pt_stop(void)
{
}

/* ---- lookup ------------------------------------------------------------ */

static const bench_pool_t pools[] = {
#if BENCH_HAVE_POOL
	{"ration-pool", rp_start, rp_submit, rp_wait, rp_stop, false},
#endif
#if BENCH_HAVE_GROUP
	{"ration-group", rg_start, rg_submit, rg_wait, rg_stop, true},
#endif
#if BENCH_HAVE_GLIB
	{"c-gthreadpool", gp_start, gp_submit, gp_wait, gp_stop, false},
#endif
	{"c-pthread", pt_start, pt_submit, pt_wait, pt_stop, false},
};

/* "name" or "name+wsem" / "name+sem" (W4: weight taken inside the task). */
const bench_pool_t *
find_pool(const char *name)
{
	for (size_t i = 0; i < sizeof pools / sizeof *pools; i++) {
		size_t len = strlen(pools[i].name);
		if (strncmp(name, pools[i].name, len) != 0)
			continue;
		const char *suffix = name + len;
		if (*suffix != '\0' && *suffix != '+')
			continue;
		if (!strcmp(suffix, "+wsem"))
			in_task = IN_TASK_WSEM;
		else if (!strcmp(suffix, "+sem"))
			in_task = IN_TASK_SEM;
		else if (*suffix != '\0')
			die("unknown peer suffix (+wsem or +sem)");
		if (in_task != IN_TASK_NONE && pools[i].weighted)
			die("this peer takes weights itself: no +wsem/+sem");
		if (in_task == IN_TASK_WSEM)
			wsem_init(&budget_wsem, bench_budget);
		if (in_task == IN_TASK_SEM &&
		    ration_sem_new(bench_budget, NULL, &budget_sem) != 0)
			die("ration_sem_new");
		return &pools[i];
	}
	die("unknown peer (or not built: GLib, lib/pool.c, lib/group.c)");
}
