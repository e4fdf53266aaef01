/* test_model.c - model-based random testing of ctx, sem and pool.
 *
 * model_fifo: one semaphore against an exact model of it. Waiters are
 * queued one at a time (the test waits until each is in the queue), then
 * random events hit it: release (and over-release), try_acquire, cancel of
 * a waiter in the middle, deadlines, resize up/down (deficit), close, a
 * waiter cap. After every event the model says which waiters are granted
 * (strict FIFO: only a prefix that fits), which fail with what, and what
 * available/waiters/waiting_weight must be; the test checks all of it.
 *
 * model_concurrent: threads drive three semaphores, a pool, a weighted
 * group and a ctx tree with random operations (acquire in every variant,
 * release, acquire_all with duplicates, resize, try/submit, pool resize,
 * group go/try_go with weights 1..8 on a budget of 16, ctx after/stop/
 * cancel/wait), then a close phase parks callers on everything and ends
 * them with close/cancel/shutdown. Checked: every result is one the docs allow;
 * a holder's release never fails; weight is conserved (available == size
 * once everything is given back, deficit repaid); every accepted task's fn
 * ran exactly once, refused ones never; the group's running weight never
 * exceeded its budget and every accepted group task ran exactly once;
 * every after-func ran exactly once or was stopped; every thread returns
 * within a bounded time.
 *
 * Operations: 10^6 by default (RATION_STRESS_ROUNDS lowers it). Seed:
 * RATION_SEED=<n> replays one (printed at start and in every failure).
 * The FIFO model replays exactly; the concurrent part replays each
 * thread's operation sequence, not the interleaving.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "internal/atomic_max.h"

static uint64_t seed;

static uint64_t
splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static int64_t
rnd(uint64_t *x, int64_t n)
{
	return (int64_t)(splitmix(x) % (uint64_t)n);
}

/* The seed is printed at start and again by main() on any failure. */
#define CHECK(cond, ...) ck_assert_msg(cond, __VA_ARGS__)

static void
seed_init(void)
{
	const char *e = getenv("RATION_SEED");
	seed = e != NULL ? strtoull(e, NULL, 0) : (uint64_t)ration_now();
	printf("test_model: RATION_SEED=%" PRIu64 "\n", seed);
	fflush(stdout);
}

/* ---- model_fifo ---------------------------------------------------------- */

enum wmode { M_CTX, M_FOREVER, M_DONE_CTX, M_SHORT };

struct mw {
	struct bg b;
	int64_t n;
	enum wmode mode;
	bool started;
	bool queued;  /* in the model's queue */
	bool decided; /* the model knows its result */
	int expect;
};

#define MAXW 24

struct model {
	ration_sem_t *s;
	int64_t size, avail;
	bool closed;
	size_t cap;
	struct mw w[MAXW];
	int order[MAXW]; /* queue, FIFO */
	int qlen;
	int nw;
	uint64_t cancels;
};

static void
model_remove(struct model *m, int qi)
{
	memmove(&m->order[qi], &m->order[qi + 1],
		sizeof(int) * (size_t)(m->qlen - qi - 1));
	m->qlen--;
}

static void
model_decide(struct model *m, int qi, int rc)
{
	struct mw *w = &m->w[m->order[qi]];
	w->queued = false;
	w->decided = true;
	w->expect = rc;
	model_remove(m, qi);
}

/* Strict FIFO: grant from the head while the head fits. */
static void
model_grant(struct model *m)
{
	while (m->qlen > 0 && m->w[m->order[0]].n <= m->avail) {
		m->avail -= m->w[m->order[0]].n;
		model_decide(m, 0, 0);
	}
}

static int64_t
model_waiting_weight(const struct model *m)
{
	int64_t sum = 0;
	for (int i = 0; i < m->qlen; i++)
		sum += m->w[m->order[i]].n;
	return sum;
}

/* Join every decided waiter, check its result; check the queued ones are
 * still waiting and the semaphore matches the model. */
static void
model_settle(struct model *m)
{
	for (int i = 0; i < m->nw; i++) {
		struct mw *w = &m->w[i];
		if (!w->started || !w->decided)
			continue;
		int rc = bg_join(&w->b);
		/* (int): an enum's type is unsigned int here, %d wants int. */
		CHECK(rc == w->expect,
		      "waiter %d (n=%" PRId64 ", mode %d): got %d, model %d", i,
		      w->n, (int)w->mode, rc, w->expect);
		w->started = false;
		if (w->b.ctx != NULL)
			ration_ctx_unref(w->b.ctx);
	}
	ration_sem_stats_t st;
	ration_sem_stats(m->s, &st);
	CHECK(st.waiters == m->qlen, "waiters %" PRId64 ", model %d",
	      st.waiters, m->qlen);
	CHECK(st.waiting_weight == model_waiting_weight(m),
	      "waiting_weight %" PRId64 ", model %" PRId64, st.waiting_weight,
	      model_waiting_weight(m));
	CHECK(st.available == m->avail, "available %" PRId64 ", model %" PRId64,
	      st.available, m->avail);
	CHECK(st.size == m->size, "size %" PRId64 ", model %" PRId64, st.size,
	      m->size);
	CHECK(st.closed == m->closed, "closed");
	CHECK(st.cancels == m->cancels, "cancels %" PRIu64 ", model %" PRIu64,
	      st.cancels, m->cancels);
	for (int i = 0; i < m->nw; i++)
		if (m->w[i].started)
			CHECK(!atomic_load(&m->w[i].b.done),
			      "waiter %d returned (%d) out of order", i,
			      m->w[i].b.rc);
}

/* Queue one waiter, or predict its immediate result. */
static void
model_enqueue(struct model *m, uint64_t *r)
{
	if (m->nw == MAXW)
		return;
	int i = m->nw++;
	struct mw *w = &m->w[i];
	memset(w, 0, sizeof(*w));
	w->n = 1 + rnd(r, m->size + 2);
	w->mode = (enum wmode)rnd(r, 4);
	bool fits_now = m->qlen == 0 && m->avail >= w->n;
	int ctx_err = 0;
	ration_ctx_t *ctx = NULL;
	/* A short deadline could pass before the try, or before the queue-full
	 * check (which comes after the ctx check): keep those deterministic. */
	if (w->mode == M_SHORT &&
	    (fits_now || (m->cap != 0 && (size_t)m->qlen >= m->cap)))
		w->mode = M_FOREVER;
	if (w->mode == M_CTX || w->mode == M_DONE_CTX) {
		ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
		if (w->mode == M_DONE_CTX) {
			if (rnd(r, 2)) {
				ration_ctx_cancel(ctx);
				ctx_err = -ECANCELED;
			} else {
				ration_ctx_unref(ctx);
				ck_assert_int_eq(
					ration_ctx_with_deadline(
						NULL, ration_now() - 1, &ctx),
					0);
				ctx_err = -ETIMEDOUT;
			}
		}
	}
	/* contract order: closed, n > size, ctx done, take, queue full. */
	int expect = 1; /* 1 = queued */
	if (m->closed)
		expect = -EPIPE;
	else if (w->n > m->size)
		expect = -E2BIG;
	else if (ctx_err != 0)
		expect = ctx_err;
	else if (fits_now)
		expect = 0;
	else if (m->cap != 0 && (size_t)m->qlen >= m->cap)
		expect = -EBUSY;
	else if (w->mode == M_SHORT)
		expect =
			-ETIMEDOUT; /* queued, then times out: nothing else moves */

	if (w->mode == M_SHORT || w->mode == M_FOREVER)
		bg_acquire_until(&w->b, m->s,
				 w->mode == M_SHORT ? ration_now() + 200000
						    : RATION_FOREVER,
				 w->n);
	else
		bg_acquire(&w->b, m->s, ctx, w->n);
	w->started = true;
	if (expect == 1) {
		w->queued = true;
		m->order[m->qlen++] = i;
		wait_waiters(m->s, m->qlen);
	} else {
		w->decided = true;
		w->expect = expect;
		if (expect == 0)
			m->avail -= w->n;
	}
}

static void
model_event(struct model *m, uint64_t *r)
{
	int64_t in_use = m->size - m->avail;
	int rc;

	switch (rnd(r, 9)) {
	case 0:
	case 1: /* release, sometimes too much */
		if (in_use > 0 && rnd(r, 8) != 0) {
			int64_t n = 1 + rnd(r, in_use);
			ck_assert_int_eq(ration_sem_release(m->s, n), 0);
			m->avail += n;
			model_grant(m);
		} else {
			rc = ration_sem_release(m->s, in_use + 1 + rnd(r, 3));
			CHECK(rc == -EOVERFLOW, "over-release: %d", rc);
		}
		break;
	case 2: { /* try_acquire */
		int64_t n = 1 + rnd(r, m->size + 1);
		int expect = m->closed                      ? -EPIPE
			     : n > m->size                  ? -E2BIG
			     : m->qlen != 0 || m->avail < n ? -EAGAIN
							    : 0;
		rc = ration_sem_try_acquire(m->s, n);
		CHECK(rc == expect, "try_acquire(%" PRId64 "): %d, model %d", n,
		      rc, expect);
		if (rc == 0)
			m->avail -= n;
		break;
	}
	case 3: { /* cancel a ctx waiter anywhere in the queue */
		for (int qi = 0; qi < m->qlen; qi++) {
			struct mw *w = &m->w[m->order[qi]];
			if (w->mode != M_CTX || rnd(r, 2) == 0)
				continue;
			ration_ctx_cancel(w->b.ctx);
			m->cancels++;
			model_decide(m, qi, -ECANCELED);
			model_grant(m); /* a leaving head lets followers in */
			break;
		}
		break;
	}
	case 4: { /* resize */
		int64_t ns = 1 + rnd(r, 20);
		rc = ration_sem_resize(m->s, ns);
		if (m->closed) {
			CHECK(rc == -EPIPE, "resize of closed: %d", rc);
			break;
		}
		ck_assert_int_eq(rc, 0);
		m->avail += ns - m->size;
		bool shrink = ns < m->size;
		m->size = ns;
		for (int qi = 0; shrink && qi < m->qlen;) {
			if (m->w[m->order[qi]].n > ns)
				model_decide(m, qi, -E2BIG);
			else
				qi++;
		}
		model_grant(m);
		break;
	}
	case 8: { /* consume: may pass the size; grants nobody */
		int64_t n = 1 + rnd(r, 2 * m->size);
		rc = ration_sem_consume(m->s, n);
		CHECK(rc == (m->closed ? -EPIPE : 0),
		      "consume(%" PRId64 "): %d", n, rc);
		if (rc == 0)
			m->avail -= n;
		break;
	}
	case 5:
		if (rnd(r, 4) == 0) { /* close */
			ration_sem_close(m->s);
			m->closed = true;
			while (m->qlen > 0)
				model_decide(m, 0, -EPIPE);
			break;
		}
		/* fall through */
	default:
		model_enqueue(m, r);
		break;
	}
}

START_TEST(model_fifo)
{
	/* 4000 rounds (~34000 events) by default; scaled with the op count. */
	long rounds = stress_rounds(1000000) / 250;
	if (rounds < 50)
		rounds = 50;
	uint64_t r = seed;
	long events = 0;

	for (long round = 0; round < rounds; round++) {
		static struct model m;
		memset(&m, 0, sizeof(m));
		m.size = 1 + rnd(&r, 16);
		m.avail = m.size;
		m.cap = rnd(&r, 3) == 0 ? (size_t)(1 + rnd(&r, 4)) : 0;
		ck_assert_int_eq(ration_sem_new(m.size,
						&(ration_sem_opts_t){
							.max_waiters = m.cap},
						&m.s),
				 0);
		int64_t pre = rnd(&r, m.size + 1);
		if (pre > 0) {
			ck_assert_int_eq(ration_sem_try_acquire(m.s, pre), 0);
			m.avail -= pre;
		}
		int nev = 1 + (int)rnd(&r, 16);
		for (int e = 0; e < nev; e++, events++) {
			model_event(&m, &r);
			model_settle(&m);
		}
		/* End: close wakes everyone left (-EPIPE); give all back. */
		ration_sem_close(m.s);
		m.closed = true;
		while (m.qlen > 0)
			model_decide(&m, 0, -EPIPE);
		model_settle(&m);
		int64_t in_use = m.size - m.avail;
		if (in_use > 0)
			ck_assert_int_eq(ration_sem_release(m.s, in_use), 0);
		CHECK(ration_sem_available(m.s) == m.size,
		      "weight lost: %" PRId64 " of %" PRId64,
		      ration_sem_available(m.s), m.size);
		CHECK(ration_sem_free(m.s) == 0, "free after settle");
	}
	printf("model_fifo: %ld rounds, %ld events, seed %" PRIu64 "\n", rounds,
	       events, seed);
}
END_TEST

/* ---- model_concurrent ---------------------------------------------------- */

#define NSEM 3
#define NTHR 4
static const int64_t sem_size0[NSEM] = {8, 64, 1000};

static struct {
	ration_sem_t *s[NSEM];
	_Atomic int64_t held[NSEM]; /* what the threads hold, summed */
	ration_pool_t *pool;
	ration_ctx_t *root;
	long ops_per_thread;
	/* tasks */
	_Atomic long next_task;
	long max_tasks;
	_Atomic unsigned char *task_runs;
	_Atomic unsigned char *task_cancel;
	unsigned char *task_accepted;
	/* after-funcs */
	_Atomic long next_after;
	_Atomic unsigned char *after_runs;
	unsigned char *after_stopped;
	_Atomic long ops_done;
	_Atomic int threads_done;
	/* group tasks: weight 1 + id % 8 on a budget of GROUP_BUDGET */
	ration_group_t *g;
	ration_sem_t *gbudget;
	ration_pool_t *gpool;
	_Atomic long next_gtask;
	_Atomic unsigned char *gtask_runs;
	unsigned char *gtask_accepted;
	_Atomic int64_t grunning, grunning_max; /* weight inside fn */
	_Atomic long gfailed;
} C;

#define GROUP_BUDGET 16

static int
cc_gtask(ration_ctx_t *ctx, void *arg)
{
	long id = (long)(intptr_t)arg;
	int64_t w = 1 + id % 8;
	ration__atomic_max(&C.grunning_max,
			   atomic_fetch_add(&C.grunning, w) + w);
	atomic_fetch_add(&C.gtask_runs[id], 1);
	if (id % 4 == 0)
		sleep_ns(50000); /* hold the weight a while: the budget binds */
	atomic_fetch_sub(&C.grunning, w);
	(void)ctx;
	return id % 97 == 0 ? -EIO : 0; /* keep_going: errors do not cancel */
}

static void
cc_task(void *arg, int status)
{
	long id = (long)(intptr_t)arg;
	if (status == 0) {
		atomic_fetch_add(&C.task_runs[id], 1);
		/* A task that touches a semaphore (pitfall 7's cousin). */
		if (id % 7 == 0 &&
		    ration_sem_try_acquire(C.s[id % NSEM], 1) == 0)
			ck_assert_int_eq(ration_sem_release(C.s[id % NSEM], 1),
					 0);
	} else {
		CHECK(status == -ECANCELED, "task status %d", status);
		atomic_fetch_add(&C.task_cancel[id], 1);
	}
}

static void
cc_after(void *arg)
{
	atomic_fetch_add(&C.after_runs[(long)(intptr_t)arg], 1);
}

static bool
acq_ok(int rc)
{
	return rc == 0 || rc == -EAGAIN || rc == -ETIMEDOUT ||
	       rc == -ECANCELED || rc == -E2BIG;
}

static void *
cc_thread(void *arg)
{
	long tid = (long)(intptr_t)arg;
	uint64_t r = seed + 1000003u * (uint64_t)(tid + 1);
	int64_t held[NSEM] = {0};

	for (long op = 0; op < C.ops_per_thread; op++) {
		int i = (int)rnd(&r, NSEM);
		int64_t k = rnd(&r, 100);
		int rc;
		if (k < 30) { /* acquire, every variant */
			int64_t n = 1 + rnd(&r, sem_size0[i] / 2 + 1);
			int how = (int)rnd(&r, 10);
			ration_ctx_t *ctx = NULL;
			if (how < 4) {
				rc = ration_sem_try_acquire(C.s[i], n);
			} else if (how < 7) {
				rc = ration_sem_acquire_until(
					C.s[i], ration_now() + rnd(&r, 20000),
					n);
			} else if (how < 9 ||
				   held[0] + held[1] + held[2] != 0) {
				ck_assert_int_eq(
					ration_ctx_with_timeout(
						C.root, rnd(&r, 50000), &ctx),
					0);
				if (rnd(&r, 4) == 0)
					ration_ctx_cancel(ctx);
				rc = ration_sem_acquire(C.s[i], ctx, n);
				ration_ctx_unref(ctx);
			} else {
				/* Holding nothing, so no deadlock: wait as long as it takes. */
				rc = ration_sem_acquire(C.s[i], NULL, n);
			}
			CHECK(acq_ok(rc), "acquire: %d", rc);
			if (rc == 0) {
				held[i] += n;
				atomic_fetch_add(&C.held[i], n);
			}
		} else if (k <
			   55) { /* release part of what this thread holds */
			if (held[i] > 0) {
				int64_t n = 1 + rnd(&r, held[i]);
				held[i] -= n;
				atomic_fetch_sub(&C.held[i], n);
				rc = ration_sem_release(C.s[i], n);
				CHECK(rc == 0, "release of held weight: %d",
				      rc);
			}
		} else if (k < 62) { /* acquire_all with a duplicate */
			ration_claim_t cl[3] = {
				{C.s[i], 1 + rnd(&r, 3)},
				{C.s[(i + 1) % NSEM], 1 + rnd(&r, 3)},
				{C.s[i], 1}};
			ration_ctx_t *ctx;
			ck_assert_int_eq(ration_ctx_with_timeout(
						 NULL, rnd(&r, 30000), &ctx),
					 0);
			rc = ration_acquire_all(ctx, cl, 3);
			ration_ctx_unref(ctx);
			CHECK(acq_ok(rc), "acquire_all: %d", rc);
			if (rc == 0)
				for (int c = 0; c < 3; c++) {
					int j = cl[c].sem == C.s[i]
							? i
							: (i + 1) % NSEM;
					held[j] += cl[c].n;
					atomic_fetch_add(&C.held[j], cl[c].n);
				}
		} else if (k < 76) { /* pool */
			long id = atomic_fetch_add(&C.next_task, 1);
			if (id >= C.max_tasks)
				continue;
			if (rnd(&r, 2)) {
				rc = ration_pool_try_submit(
					C.pool, cc_task, (void *)(intptr_t)id);
				CHECK(rc == 0 || rc == -EAGAIN,
				      "try_submit: %d", rc);
			} else {
				ration_ctx_t *ctx;
				ck_assert_int_eq(
					ration_ctx_with_timeout(
						NULL, rnd(&r, 100000), &ctx),
					0);
				rc = ration_pool_submit(C.pool, ctx, cc_task,
							(void *)(intptr_t)id);
				ration_ctx_unref(ctx);
				CHECK(rc == 0 || rc == -ETIMEDOUT, "submit: %d",
				      rc);
			}
			C.task_accepted[id] = rc == 0;
		} else if (k < 88) { /* ctx: after / stop / cancel / wait */
			ration_ctx_t *c;
			int64_t t = rnd(&r, 3) == 0 ? rnd(&r, 30000)
						    : RATION_FOREVER;
			ck_assert_int_eq(ration_ctx_with_timeout(C.root, t, &c),
					 0);
			long a = atomic_fetch_add(&C.next_after, 1);
			if (a < C.max_tasks) {
				uint64_t aid;
				ck_assert_int_eq(
					ration_ctx_after(c, cc_after,
							 (void *)(intptr_t)a,
							 &aid),
					0);
				if (rnd(&r, 3) == 0 &&
				    ration_ctx_stop_after(c, aid))
					C.after_stopped[a] = 1;
			}
			if (t != RATION_FOREVER && rnd(&r, 2))
				CHECK(ration_ctx_wait(c) == -ETIMEDOUT ||
					      ration_ctx_err(c) == -ECANCELED,
				      "ctx_wait");
			ration_ctx_cancel(
				c); /* so every pending after-func runs */
			CHECK(ration_ctx_err(c) == -ECANCELED ||
				      ration_ctx_err(c) == -ETIMEDOUT,
			      "ctx err %d", ration_ctx_err(c));
			ration_ctx_unref(c);
		} else if (k < 92) { /* resize: grow, or shrink into deficit */
			int64_t ns =
				sem_size0[i] / 2 + rnd(&r, sem_size0[i] * 2);
			rc = ration_sem_resize(C.s[i], ns < 1 ? 1 : ns);
			CHECK(rc == 0, "resize: %d", rc);
		} else if (k < 94) {
			rc = ration_pool_resize(C.pool,
						1 + (unsigned)rnd(&r, 4));
			CHECK(rc == 0, "pool resize: %d", rc);
		} else if (k < 98) { /* group: weighted go / try_go */
			long id = atomic_fetch_add(&C.next_gtask, 1);
			if (id >= C.max_tasks)
				continue;
			int64_t w = 1 + id % 8;
			if (rnd(&r, 2)) {
				rc = ration_group_try_go(C.g, w, cc_gtask,
							 (void *)(intptr_t)id);
				CHECK(rc == 0 || rc == -EAGAIN,
				      "group try_go: %d", rc);
			} else {
				/* Blocks until weight and a limit slot are free; the
				 * group's tasks never wait on what this thread holds. */
				rc = ration_group_go(C.g, w, cc_gtask,
						     (void *)(intptr_t)id);
				CHECK(rc == 0, "group go: %d", rc);
			}
			C.gtask_accepted[id] = rc == 0;
			if (rc == 0 && id % 97 == 0)
				atomic_fetch_add(&C.gfailed, 1);
		} else { /* a snapshot is self-consistent */
			ration_sem_stats_t st;
			ration_sem_stats(C.s[i], &st);
			CHECK(st.available <= st.size &&
				      st.in_use == st.size - st.available &&
				      st.waiters >= 0 && st.waiting_weight >= 0,
			      "stats snapshot");
		}
		atomic_fetch_add_explicit(&C.ops_done, 1, memory_order_relaxed);
	}
	for (int i = 0; i < NSEM; i++)
		if (held[i] > 0) {
			atomic_fetch_sub(&C.held[i], held[i]);
			CHECK(ration_sem_release(C.s[i], held[i]) == 0,
			      "final release");
		}
	atomic_fetch_add(&C.threads_done, 1);
	return NULL;
}

/* Callers parked on everything, then ended by close/cancel/shutdown. */
struct parked {
	pthread_t t;
	int kind;
	_Atomic bool done;
	int rc;
	int64_t t_done;
};

static void
gate_task(void *arg, int status)
{
	_Atomic bool *open = arg;
	while (status == 0 && !atomic_load(open))
		sleep_ns(200000);
}

static void
noop_task(void *arg, int status)
{
	(void)arg;
	(void)status;
}

static ration_pool_t *close_pool;

static void *
parked_main(void *arg)
{
	struct parked *p = arg;
	switch (p->kind) {
	case 0:
		p->rc = ration_sem_acquire(C.s[0], NULL, 1);
		break;
	case 1: {
		ration_ctx_t *c;
		ck_assert_int_eq(ration_ctx_with_cancel(C.root, &c), 0);
		p->rc = ration_ctx_wait(c);
		ration_ctx_unref(c);
		break;
	}
	case 2:
		p->rc = ration_sem_acquire(C.s[1], C.root, sem_size0[1]);
		break;
	default:
		p->rc = ration_pool_submit(close_pool, NULL, noop_task, NULL);
		break;
	}
	p->t_done = ration_now();
	atomic_store(&p->done, true);
	return NULL;
}

START_TEST(model_concurrent)
{
	long total = stress_rounds(1000000);
	memset(&C, 0, sizeof(C));
	C.ops_per_thread = total / NTHR;
	C.max_tasks = total / 4 + 16;
	C.task_runs = calloc((size_t)C.max_tasks, 1);
	C.task_cancel = calloc((size_t)C.max_tasks, 1);
	C.task_accepted = calloc((size_t)C.max_tasks, 1);
	C.after_runs = calloc((size_t)C.max_tasks, 1);
	C.after_stopped = calloc((size_t)C.max_tasks, 1);
	ck_assert(C.task_runs && C.task_cancel && C.task_accepted &&
		  C.after_runs && C.after_stopped);
	for (int i = 0; i < NSEM; i++)
		ck_assert_int_eq(ration_sem_new(sem_size0[i], NULL, &C.s[i]),
				 0);
	ck_assert_int_eq(ration_pool_new(&(ration_pool_opts_t){.threads = 3,
							       .queue_cap = 64},
					 &C.pool),
			 0);
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &C.root), 0);
	C.gtask_runs = calloc((size_t)C.max_tasks, 1);
	C.gtask_accepted = calloc((size_t)C.max_tasks, 1);
	ck_assert(C.gtask_runs && C.gtask_accepted);
	ck_assert_int_eq(ration_sem_new(GROUP_BUDGET, NULL, &C.gbudget), 0);
	ck_assert_int_eq(
		ration_pool_new(&(ration_pool_opts_t){.threads = 4}, &C.gpool),
		0);
	ration_group_opts_t go = {.pool = C.gpool,
				  .budget = C.gbudget,
				  .limit = 4,
				  .keep_going = true};
	ck_assert_int_eq(ration_group_new(NULL, &go, &C.g), 0);

	int64_t t0 = ration_now();
	pthread_t th[NTHR];
	for (long t = 0; t < NTHR; t++)
		ck_assert_int_eq(pthread_create(&th[t], NULL, cc_thread,
						(void *)(intptr_t)t),
				 0);
	/* Bounded: a hang fails with the seed instead of hitting the timeout. */
	int64_t limit = t0 + (int64_t)400 * 1000000000;
	while (atomic_load(&C.threads_done) < NTHR) {
		CHECK(ration_now() < limit, "threads stuck: %ld ops done",
		      atomic_load(&C.ops_done));
		sleep_ns(2000000);
	}
	for (int t = 0; t < NTHR; t++)
		pthread_join(th[t], NULL);
	int64_t t1 = ration_now();

	/* Group: first error, each accepted task once, budget respected. */
	int gerr = ration_group_wait(C.g);
	CHECK(gerr == (atomic_load(&C.gfailed) ? -EIO : 0), "group wait: %d",
	      gerr);
	long gaccepted = 0;
	long ngtasks = atomic_load(&C.next_gtask);
	if (ngtasks > C.max_tasks)
		ngtasks = C.max_tasks;
	for (long id = 0; id < ngtasks; id++) {
		CHECK(C.gtask_runs[id] == (C.gtask_accepted[id] ? 1 : 0),
		      "group task %ld: ran %d times, accepted %d", id,
		      C.gtask_runs[id], C.gtask_accepted[id]);
		gaccepted += C.gtask_accepted[id];
	}
	ration_group_stats_t gs;
	ration_group_stats(C.g, &gs);
	CHECK(gs.tasks == (uint64_t)gaccepted &&
		      gs.started == (uint64_t)gaccepted,
	      "group stats: %" PRIu64 " finished, %ld accepted", gs.tasks,
	      gaccepted);
	CHECK(gs.failed == (uint64_t)atomic_load(&C.gfailed),
	      "group failed %" PRIu64, gs.failed);
	CHECK(atomic_load(&C.grunning_max) <= GROUP_BUDGET,
	      "group ran %" PRId64 " > budget", atomic_load(&C.grunning_max));
	CHECK(ration_sem_available(C.gbudget) == GROUP_BUDGET,
	      "group budget not given back");
	ration_group_free(C.g);
	ration_pool_free(C.gpool);
	CHECK(ration_sem_free(C.gbudget) == 0, "group budget free");
	printf("model_concurrent: group tasks accepted %ld of %ld, max running "
	       "weight %" PRId64 " of %d\n",
	       gaccepted, ngtasks, atomic_load(&C.grunning_max), GROUP_BUDGET);
	free(C.gtask_runs);
	free(C.gtask_accepted);

	/* Weight conserved: nobody holds anything, so all is available. */
	for (int i = 0; i < NSEM; i++) {
		ration_sem_stats_t st;
		ration_sem_stats(C.s[i], &st);
		CHECK(atomic_load(&C.held[i]) == 0, "held bookkeeping");
		CHECK(st.available == st.size,
		      "sem %d: available %" PRId64 " != size %" PRId64, i,
		      st.available, st.size);
		CHECK(st.waiters == 0 && st.waiting_weight == 0,
		      "sem %d: waiters left", i);
	}

	/* Close phase: park callers on a held sem, a ctx, a ctx-bounded
	 * acquire and a full pool; end them all; all must return. */
	ck_assert_int_eq(ration_sem_resize(C.s[0], 1), 0);
	ck_assert_int_eq(ration_sem_resize(C.s[1], sem_size0[1]), 0);
	ck_assert_int_eq(ration_sem_try_acquire(C.s[0], 1), 0);
	ck_assert_int_eq(ration_sem_try_acquire(C.s[1], 1), 0);
	_Atomic bool open = false;
	ck_assert_int_eq(ration_pool_new(&(ration_pool_opts_t){.threads = 1,
							       .queue_cap = 1},
					 &close_pool),
			 0);
	ck_assert_int_eq(ration_pool_submit(close_pool, NULL, gate_task, &open),
			 0);
	/* The gate runs, then one more task fills the queue. */
	int fill = 0;
	for (int tries = 0; tries < 1000 && fill == 0; tries++) {
		if (ration_pool_try_submit(close_pool, noop_task, NULL) == 0)
			fill = 1;
		else
			sleep_ns(1000000);
	}
	ck_assert_int_eq(fill, 1);
	enum { NP = 12 };
	struct parked ps[NP];
	for (int i = 0; i < NP; i++) {
		ps[i] = (struct parked){.kind = i % 4};
		atomic_init(&ps[i].done, false);
		ck_assert_int_eq(
			pthread_create(&ps[i].t, NULL, parked_main, &ps[i]), 0);
	}
	wait_waiters(C.s[0], NP / 4);
	wait_waiters(C.s[1], NP / 4);
	sleep_ns(20000000);
	int64_t tc = ration_now();
	ration_sem_close(C.s[0]);
	ration_ctx_cancel(C.root);
	/* The gate task is still running: the shutdown's own wait ends by
	 * its ctx, blocked submitters fail with -EPIPE, the queue is discarded. */
	ration_ctx_t *sc;
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, 50000000, &sc), 0);
	ck_assert_int_eq(ration_pool_shutdown(close_pool, RATION_DISCARD, sc),
			 -ETIMEDOUT);
	ration_ctx_unref(sc);
	for (int i = 0; i < NP; i++) {
		WAIT_FOR(atomic_load(&ps[i].done));
		pthread_join(ps[i].t, NULL);
		int want = ps[i].kind == 0   ? -EPIPE
			   : ps[i].kind == 3 ? -EPIPE
					     : -ECANCELED;
		CHECK(ps[i].rc == want, "parked kind %d: %d, want %d",
		      ps[i].kind, ps[i].rc, want);
	}
	int64_t woke_ns = 0;
	for (int i = 0; i < NP; i++)
		if (ps[i].kind != 3 && ps[i].t_done - tc > woke_ns)
			woke_ns = ps[i].t_done - tc;
	atomic_store(&open, true);
	ration_pool_free(close_pool);
	ck_assert_int_eq(ration_sem_release(C.s[0], 1), 0);
	ck_assert_int_eq(ration_sem_release(C.s[1], 1), 0);

	/* Nothing lost: every accepted task ran or was discarded, once. */
	ck_assert_int_eq(
		ration_pool_shutdown(C.pool,
				     (seed & 1) ? RATION_DISCARD : RATION_DRAIN,
				     NULL),
		0);
	ration_pool_free(C.pool);
	long accepted = 0, ran = 0, discarded = 0;
	long ntasks = atomic_load(&C.next_task);
	if (ntasks > C.max_tasks)
		ntasks = C.max_tasks;
	for (long id = 0; id < ntasks; id++) {
		int got = C.task_runs[id] + C.task_cancel[id];
		CHECK(got == (C.task_accepted[id] ? 1 : 0),
		      "task %ld: called %d times, accepted %d", id, got,
		      C.task_accepted[id]);
		accepted += C.task_accepted[id];
		ran += C.task_runs[id];
		discarded += C.task_cancel[id];
	}
	long nafter = atomic_load(&C.next_after);
	if (nafter > C.max_tasks)
		nafter = C.max_tasks;
	long stopped = 0;
	for (long a = 0; a < nafter; a++) {
		CHECK(C.after_runs[a] + C.after_stopped[a] == 1,
		      "after %ld: ran %d, stopped %d", a, C.after_runs[a],
		      C.after_stopped[a]);
		stopped += C.after_stopped[a];
	}
	for (int i = 0; i < NSEM; i++) {
		ration_sem_stats_t st;
		ration_sem_stats(C.s[i], &st);
		CHECK(st.available == st.size, "sem %d after close phase", i);
		CHECK(ration_sem_free(C.s[i]) == 0, "sem %d free", i);
	}
	ration_ctx_unref(C.root);
	printf("model_concurrent: %ld ops on %d threads in %.2f s (%.0f "
	       "ops/s); tasks accepted %ld "
	       "(ran %ld, discarded %ld); after-funcs %ld (stopped %ld); "
	       "close/cancel woke %d "
	       "parked callers within %.2f ms; seed %" PRIu64 "\n",
	       atomic_load(&C.ops_done), NTHR, (double)(t1 - t0) / 1e9,
	       (double)atomic_load(&C.ops_done) / ((double)(t1 - t0) / 1e9),
	       accepted, ran, discarded, nafter, stopped, NP - NP / 4,
	       (double)woke_ns / 1e6, seed);
	free((void *)C.task_runs);
	free((void *)C.task_cancel);
	free(C.task_accepted);
	free((void *)C.after_runs);
	free(C.after_stopped);
}
END_TEST

static Suite *
model_suite(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("model");
	tcase_set_timeout(tc, 550);
	tcase_add_test(tc, model_fifo);
	tcase_add_test(tc, model_concurrent);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	seed_init();
	int failed = run_suite(model_suite());
	if (failed != 0)
		printf("test_model: FAILED; replay with RATION_SEED=%" PRIu64
		       "\n",
		       seed);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
