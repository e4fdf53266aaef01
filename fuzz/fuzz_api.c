/* fuzz_api.c - libFuzzer harness: bytes -> ration API calls with hostile
 * arguments, each result checked against a model of what the docs promise.
 *
 * Single-threaded; nothing blocks: every wait has a deadline in the past
 * or a few microseconds away, or is predicted by the model to be granted
 * at once. Per input: up to 4 semaphores (anonymous or named), 4 ctxs,
 * an occasional pool. Each call's return is compared with the model
 * (sizes, availability, closed, named refs, ctx errors, after-funcs); at
 * the end everything is given back and freed, and must free cleanly.
 *
 * Build: scripts/fuzz.sh (clang -fsanitize=fuzzer,address,undefined).
 * Without libFuzzer (-DFUZZ_REPLAY_MAIN) main() replays files/dirs given
 * on the command line: the meson test 'fuzz_replay' runs fuzz/corpus/.
 */
#include <dirent.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ration.h>

#define NS 4
#define NC 4

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t
take(struct in *in, unsigned bytes)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < bytes; i++) {
		v <<= 8;
		if (in->n > 0) {
			v |= *in->p++;
			in->n--;
		}
	}
	return v;
}

/* A hostile 64-bit value: edges first, then raw bytes. */
static int64_t
hostile(struct in *in)
{
	static const int64_t edges[] = {0,
					1,
					-1,
					2,
					3,
					7,
					16,
					100,
					INT64_MAX,
					INT64_MIN,
					INT64_MAX - 1,
					RATION_SEM_MAX,
					RATION_SEM_MAX + 1,
					-RATION_SEM_MAX,
					INT32_MAX,
					(int64_t)1 << 62};
	unsigned k = (unsigned)take(in, 1);
	if (k < 128)
		return (int64_t)(k % 24); /* small: the common case */
	if (k < 224)
		return edges[k % (sizeof(edges) / sizeof(edges[0]))];
	return (int64_t)take(in, 8);
}

#define FAIL(...)                                                              \
	do {                                                                   \
		fprintf(stderr, "fuzz_api: " __VA_ARGS__);                     \
		fputc('\n', stderr);                                           \
		abort();                                                       \
	} while (0)

#define EXPECT(got, want, what)                                                \
	do {                                                                   \
		int g_ = (got), w_ = (want);                                   \
		if (g_ != w_)                                                  \
			FAIL("%s: got %d (%s), expected %d (%s)", what, g_,    \
			     ration_strerror(g_), w_, ration_strerror(w_));    \
	} while (0)

struct msem {
	ration_sem_t *s;
	int64_t size, avail;
	bool closed;
	int named; /* 0 anonymous, else index+1 into names */
};

static const char *const names[] = {"fuzz.a", "fuzz.b"};
static int name_refs[2];

struct mctx {
	ration_ctx_t *c;
	int err;          /* model: 0 or the first error */
	int64_t deadline; /* effective */
	int afters[4];    /* slots registered, -1 = none */
	uint64_t ids[4];
};

static int after_runs[64];
static int after_stopped[64];
static int nafter;

static void
after_fn(void *arg)
{
	after_runs[(intptr_t)arg]++;
}

static int task_runs[64], task_cancel[64], ntask;
static _Atomic int gtask_runs[16];

/* A group task: ids divisible by 3 fail with -EIO. */
static int
gtask_fn(ration_ctx_t *ctx, void *arg)
{
	(void)ctx;
	intptr_t id = (intptr_t)arg;
	atomic_fetch_add(&gtask_runs[id], 1);
	return id % 3 == 0 ? -EIO : 0;
}

static void
task_fn(void *arg, int status)
{
	if (status == 0)
		task_runs[(intptr_t)arg]++;
	else
		task_cancel[(intptr_t)arg]++;
}

static void
check_sem(const struct msem *m)
{
	ration_sem_stats_t st;
	ration_sem_stats(m->s, &st);
	if (st.size != m->size || st.available != m->avail ||
	    st.closed != m->closed || st.waiters != 0 ||
	    st.in_use != st.size - st.available)
		FAIL("sem state: size %lld/%lld avail %lld/%lld closed %d/%d "
		     "waiters %lld",
		     (long long)st.size, (long long)m->size,
		     (long long)st.available, (long long)m->avail, st.closed,
		     m->closed, (long long)st.waiters);
}

/* The model error of a ctx now (a passed deadline counts). */
static int
ctx_model_err(struct mctx *c)
{
	if (c->c == NULL)
		return 0;
	if (c->err == 0 && c->deadline != RATION_FOREVER &&
	    ration_now() >= c->deadline)
		c->err = -ETIMEDOUT;
	return c->err;
}

/* Deadlines for ctxs: never "a little in the future" (that would make
 * the model racy): past, far, or forever. */
static int64_t
ctx_deadline(struct in *in)
{
	switch (take(in, 1) % 6) {
	case 0:
		return INT64_MIN;
	case 1:
		return 0;
	case 2:
		return ration_now() - 1;
	case 3:
		return RATION_FOREVER;
	case 4:
		return INT64_MAX - 1;
	default:
		return ration_now() + (int64_t)3600 * 1000000000;
	}
}

/* Result of acquire(n) on @m under a ctx whose error is @cerr, when the
 * wait could end only by that error; 1 = "would wait" (must not happen). */
static int
model_acquire(const struct msem *m, int64_t n, int cerr)
{
	if (n <= 0)
		return -EINVAL;
	if (!m->closed && cerr == 0 && m->avail >= n)
		return 0; /* fast path */
	if (m->closed)
		return -EPIPE;
	if (n > m->size)
		return -E2BIG;
	if (cerr != 0)
		return cerr;
	return m->avail >= n ? 0 : 1;
}

/* A group on @pool with a private budget of 1..16: try_go with hostile
 * weights and NULLs, then wait. Self-contained (the budget is not in the
 * semaphore model): checks the documented codes, that every accepted task
 * ran exactly once and refused ones never, that wait() returns the first
 * error (a task's -EIO or the first failed try_go's code other than
 * -EAGAIN, whichever came first), that go after wait is -EPIPE and that
 * the budget comes back. */
static void
fuzz_group(struct in *in, ration_pool_t *pool)
{
	int64_t bsize = 1 + (int64_t)(take(in, 1) % 16);
	ration_sem_t *b;
	EXPECT(ration_sem_new(bsize, NULL, &b), 0, "group budget sem_new");
	bool keep_going = take(in, 1) & 1;
	ration_group_opts_t o = {.pool = pool,
				 .budget = b,
				 .limit = (int64_t)(take(in, 1) % 3),
				 .keep_going = keep_going};
	ration_group_t *g;
	EXPECT(ration_group_new(NULL, &o, &g), 0, "group_new");
	bool accepted[16] = {false}, failed = false;
	int go_err = 0; /* the first try_go error the group records */
	int n = 1 + (int)(take(in, 1) % 16);
	for (int id = 0; id < n; id++) {
		atomic_store(&gtask_runs[id], 0);
		int64_t w = hostile(in);
		int rc = ration_group_try_go(g, w, gtask_fn,
					     (void *)(intptr_t)id);
		if (w <= 0)
			EXPECT(rc, -EINVAL, "group_try_go(weight <= 0)");
		else if (w > bsize)
			EXPECT(rc, -E2BIG, "group_try_go(weight > budget)");
		else if (rc != 0 && rc != -EAGAIN &&
			 !(rc == -ECANCELED && !keep_going))
			FAIL("group_try_go(%lld of %lld): %d", (long long)w,
			     (long long)bsize, rc);
		accepted[id] = rc == 0;
		failed |= rc == 0 && id % 3 == 0;
		if (go_err == 0 && rc != 0 && rc != -EAGAIN)
			go_err = rc;
	}
	EXPECT(ration_group_try_go(g, 1, NULL, NULL), -EINVAL,
	       "group_try_go(fn NULL)");
	EXPECT(ration_group_try_go(NULL, 1, gtask_fn, NULL), -EINVAL,
	       "group_try_go(g NULL)");
	if (go_err == 0)
		go_err = -EINVAL;
	int werr = ration_group_wait(g);
	if (werr != go_err && !(failed && werr == -EIO))
		FAIL("group_wait: %d, expected %d%s", werr, go_err,
		     failed ? " or -EIO" : "");
	EXPECT(ration_group_try_go(g, 1, gtask_fn, NULL), -EPIPE,
	       "group_try_go after wait");
	EXPECT(ration_group_go(g, 1, gtask_fn, NULL), -EPIPE,
	       "group_go after wait");
	for (int id = 0; id < n; id++)
		if (atomic_load(&gtask_runs[id]) != (accepted[id] ? 1 : 0))
			FAIL("group task %d: ran %d, accepted %d", id,
			     atomic_load(&gtask_runs[id]), accepted[id]);
	ration_group_free(g);
	if (ration_sem_available(b) != bsize)
		FAIL("group budget: %lld of %lld back",
		     (long long)ration_sem_available(b), (long long)bsize);
	EXPECT(ration_sem_free(b), 0, "group budget sem_free");
}

static void
run(struct in *in)
{
	struct msem sems[NS] = {{0}};
	struct mctx ctxs[NC];
	ration_pool_t *pool = NULL;
	int pool_tasks0 = ntask;

	memset(ctxs, 0, sizeof(ctxs));
	for (int i = 0; i < NC; i++)
		for (int a = 0; a < 4; a++)
			ctxs[i].afters[a] = -1;
	nafter = 0;
	ntask = 0;
	pool_tasks0 = 0;
	memset(after_runs, 0, sizeof(after_runs));
	memset(after_stopped, 0, sizeof(after_stopped));
	memset(task_runs, 0, sizeof(task_runs));
	memset(task_cancel, 0, sizeof(task_cancel));

	for (int steps = 0; in->n > 0 && steps < 256; steps++) {
		unsigned op = (unsigned)take(in, 1);
		struct msem *m = &sems[op >> 6 & (NS - 1)];
		struct mctx *c = &ctxs[(op >> 4) & (NC - 1)];
		int rc;
		switch (op % 16) {
		case 0: { /* new / open */
			if (m->s != NULL)
				break;
			int64_t size = hostile(in);
			int named = (int)(take(in, 1) % 3);
			bool bad = size < 1 || size > RATION_SEM_MAX;
			if (named == 0) {
				rc = ration_sem_new(size, NULL, &m->s);
				EXPECT(rc, bad ? -EINVAL : 0, "sem_new");
			} else {
				/* Another slot may have the same name open: share its model. */
				struct msem *twin = NULL;
				for (int i = 0; i < NS; i++)
					if (sems[i].s != NULL &&
					    sems[i].named == named)
						twin = &sems[i];
				rc = ration_sem_open(names[named - 1], size,
						     &m->s);
				if (twin != NULL) {
					EXPECT(rc, 0, "sem_open (known)");
					if (m->s != twin->s)
						FAIL("sem_open: same name, "
						     "different semaphore");
					/* One semaphore, one model: this slot aliases the twin. */
					m->s = NULL;
					name_refs[named - 1]++;
					/* drop the extra reference at once: keep models 1:1 */
					EXPECT(ration_sem_free(twin->s), 0,
					       "sem_free (extra ref)");
					name_refs[named - 1]--;
					break;
				}
				EXPECT(rc, bad ? -EINVAL : 0, "sem_open");
				if (rc == 0)
					name_refs[named - 1]++;
			}
			if (rc == 0) {
				m->size = m->avail = size;
				m->closed = false;
				m->named = named;
			} else {
				m->s = NULL;
			}
			break;
		}
		case 1:
		case 2: { /* acquire_until: past, tiny or forever deadline */
			if (m->s == NULL)
				break;
			int64_t n = hostile(in);
			unsigned how = (unsigned)take(in, 1) % 4;
			int pred = model_acquire(m, n, 0);
			int64_t dl = how == 0   ? INT64_MIN
				     : how == 1 ? ration_now() - 1
				     : pred != 1 && how == 2
					     ? RATION_FOREVER
					     : ration_now() + 2000;
			rc = ration_sem_acquire_until(m->s, dl, n);
			int live = pred == 1 ? -ETIMEDOUT : pred;
			int dead = model_acquire(m, n, -ETIMEDOUT);
			int want = how < 2                ? dead
				   : dl == RATION_FOREVER ? live
				   : rc == dead           ? dead
							  : live;
			EXPECT(rc, want, "acquire_until");
			if (rc == 0)
				m->avail -= n;
			break;
		}
		case 3: { /* acquire with a ctx (a done one when it would wait) */
			if (m->s == NULL)
				break;
			int64_t n = hostile(in);
			int cerr = ctx_model_err(c);
			ration_ctx_t *ctx = c->c;
			int want = model_acquire(m, n, cerr);
			if (want == 1 || (ctx == NULL && take(in, 1) & 1)) {
				/* would wait: use a cancelled ctx instead */
				ration_ctx_t *d;
				EXPECT(ration_ctx_with_cancel(NULL, &d), 0,
				       "ctx_with_cancel");
				ration_ctx_cancel_with(
					d, -(int)(take(in, 1) % 140));
				int derr = ration_ctx_err(d);
				if (derr >= 0)
					FAIL("cancel_with gave err %d", derr);
				want = model_acquire(m, n, derr);
				rc = ration_sem_acquire(m->s, d, n);
				ration_ctx_unref(d);
			} else {
				rc = ration_sem_acquire(m->s, ctx, n);
			}
			EXPECT(rc, want, "acquire(ctx)");
			if (rc == 0)
				m->avail -= n;
			break;
		}
		case 4: { /* try_acquire */
			if (m->s == NULL)
				break;
			int64_t n = hostile(in);
			int want = n <= 0                        ? -EINVAL
				   : !m->closed && m->avail >= n ? 0
				   : m->closed                   ? -EPIPE
				   : n > m->size                 ? -E2BIG
								 : -EAGAIN;
			EXPECT(ration_sem_try_acquire(m->s, n), want,
			       "try_acquire");
			if (want == 0)
				m->avail -= n;
			break;
		}
		case 5: { /* release: any amount, with or without holding */
			if (m->s == NULL)
				break;
			int64_t n = hostile(in);
			int want = n <= 0                   ? -EINVAL
				   : n > m->size - m->avail ? -EOVERFLOW
							    : 0;
			EXPECT(ration_sem_release(m->s, n), want, "release");
			if (want == 0)
				m->avail += n;
			break;
		}
		case 6: { /* resize extremes */
			if (m->s == NULL)
				break;
			int64_t ns = hostile(in);
			int want = ns < 1 || ns > RATION_SEM_MAX ? -EINVAL
				   : m->closed                   ? -EPIPE
								 : 0;
			EXPECT(ration_sem_resize(m->s, ns), want, "resize");
			if (want == 0) {
				m->avail += ns - m->size;
				m->size = ns;
			}
			break;
		}
		case 7: { /* close, or consume any amount (in_use may pass size) */
			if (m->s == NULL)
				break;
			if (take(in, 1) % 4 == 0) {
				ration_sem_close(m->s);
				m->closed = true;
				break;
			}
			int64_t n = hostile(in);
			int want = n <= 0      ? -EINVAL
				   : m->closed ? -EPIPE
				   : n > RATION_SEM_MAX - (m->size - m->avail)
					   ? -EOVERFLOW
					   : 0;
			EXPECT(ration_sem_consume(m->s, n), want, "consume");
			if (want == 0)
				m->avail -= n;
			break;
		}
		case 8: { /* free: -EBUSY while held */
			if (m->s == NULL)
				break;
			bool busy = m->avail != m->size;
			bool last =
				m->named == 0 || name_refs[m->named - 1] == 1;
			rc = ration_sem_free(m->s);
			EXPECT(rc, busy && last ? -EBUSY : 0, "sem_free");
			if (rc == 0) {
				if (m->named)
					name_refs[m->named - 1]--;
				m->s = NULL;
			}
			break;
		}
		case 9: { /* acquire_all: duplicates, NULLs, hostile weights */
			ration_claim_t cl[20];
			size_t cnt = (size_t)(take(in, 1) % 21);
			int idx[20];
			for (size_t i = 0; i < cnt; i++) {
				idx[i] = (int)(take(in, 1) % (NS + 1));
				cl[i].sem = idx[i] < NS ? sems[idx[i]].s : NULL;
				cl[i].n = hostile(in);
			}
			/* Model: validate, sum per semaphore, then acquire in
			 * address order with a done ctx (nothing may wait). */
			int want = 0, want_all = 0;
			int64_t sum[NS] = {0};
			bool inval = false, ovf = false;
			for (size_t i = 0; i < cnt; i++)
				if (cl[i].sem == NULL || cl[i].n <= 0)
					inval = true;
			for (size_t i = 0; i < cnt && !inval; i++) {
				int j = idx[i];
				if (sum[j] > INT64_MAX - cl[i].n)
					ovf = true;
				else
					sum[j] += cl[i].n;
			}
			ration_ctx_t *d;
			EXPECT(ration_ctx_with_deadline(NULL, INT64_MIN, &d), 0,
			       "ctx");
			bool fits = true;
			if (inval) {
				want = -EINVAL;
			} else if (ovf) {
				want = -EOVERFLOW;
			} else {
				/* first failure in address order */
				int order[NS], k = 0;
				for (int j = 0; j < NS; j++)
					if (sum[j] > 0)
						order[k++] = j;
				for (int a = 0; a < k; a++)
					for (int b = a + 1; b < k; b++)
						if ((uintptr_t)sems[order[b]]
							    .s <
						    (uintptr_t)sems[order[a]]
							    .s) {
							int t = order[a];
							order[a] = order[b];
							order[b] = t;
						}
				for (int a = 0; a < k && want == 0; a++) {
					struct msem *x = &sems[order[a]];
					int r = model_acquire(x, sum[order[a]],
							      -ETIMEDOUT);
					if (r != 0)
						want = r;
				}
				/* contract §4 (-EPIPE/-E2BIG at once; decision 004): every
				 * claim is checked before the ctx, so a later claim's
				 * -EPIPE/-E2BIG wins over the ctx error. */
				for (int a = 0; a < k && want_all == 0; a++) {
					struct msem *x = &sems[order[a]];
					if (x->closed)
						want_all = -EPIPE;
					else if (sum[order[a]] > x->size)
						want_all = -E2BIG;
				}
				if (want_all == 0)
					want_all = want;
				fits = want == 0;
			}
			/* Equal semaphores summed past INT64_MAX: -EOVERFLOW at any
			 * position; with a NULL that sorts first it is -EINVAL. */
			rc = ration_acquire_all(d, cnt ? cl : NULL, cnt);
			ration_ctx_unref(d);
			if (inval || ovf)
				want_all = want;
			EXPECT(rc, want_all, "acquire_all");
			if (rc == 0 && fits)
				for (int j = 0; j < NS; j++)
					if (sum[j] > 0) {
						/* the fast path took them: ctx was done, so
						 * only a free semaphore... cannot happen */
						sems[j].avail -= sum[j];
					}
			if (rc == 0 && cnt > 0)
				ration_release_all(cl, cnt);
			for (int j = 0; j < NS && rc == 0; j++)
				if (sum[j] > 0)
					sems[j].avail += sum[j];
			break;
		}
		case 10: { /* ctx create (hostile deadlines/timeouts), parented */
			if (c->c != NULL)
				break;
			struct mctx *par = &ctxs[take(in, 1) % NC];
			if (par == c || par->c == NULL)
				par = NULL;
			int64_t dl, dl_hi = 0;
			unsigned how = (unsigned)take(in, 1) % 3;
			if (how == 0) {
				dl = RATION_FOREVER;
				rc = ration_ctx_with_cancel(par ? par->c : NULL,
							    &c->c);
			} else if (how == 1) {
				dl = ctx_deadline(in);
				rc = ration_ctx_with_deadline(
					par ? par->c : NULL, dl, &c->c);
			} else {
				int64_t t = hostile(in);
				if (t > 0 && t < (int64_t)3600 * 1000000000)
					t = -t; /* no "a little later": model stays exact */
				int64_t now = ration_now();
				rc = ration_ctx_with_timeout(
					par ? par->c : NULL, t, &c->c);
				dl = t <= 0                     ? now
				     : RATION_FOREVER - now < t ? RATION_FOREVER
								: now + t;
				now = ration_now();
				dl_hi = t <= 0 ? now
					: RATION_FOREVER - now < t
						? RATION_FOREVER
						: now + t;
			}
			EXPECT(rc, 0, "ctx_with");
			int64_t pdl = par ? par->deadline : RATION_FOREVER;
			int64_t got = ration_ctx_deadline(c->c);
			int64_t want_dl = dl < pdl ? dl : pdl;
			/* with_timeout reads the clock itself: allow its "now". */
			if (how == 2 ? got < want_dl ||
					       got > (dl_hi < pdl ? dl_hi : pdl)
				     : got != want_dl)
				FAIL("ctx_deadline %lld, model %lld",
				     (long long)got, (long long)want_dl);
			c->deadline = got;
			int perr = par ? ctx_model_err(par) : 0;
			c->err = 0;
			if (perr != 0)
				c->err = c->deadline != RATION_FOREVER &&
							 ration_now() >=
								 c->deadline
						 ? -ETIMEDOUT
						 : perr;
			for (int a = 0; a < 4; a++)
				c->afters[a] = -1;
			break;
		}
		case 11: { /* cancel / cancel_with hostile causes */
			if (c->c == NULL)
				break;
			int cause = (int)(int32_t)take(in, 4);
			int before = ctx_model_err(c);
			if (take(in, 1) & 1) {
				ration_ctx_cancel(c->c);
				cause = -ECANCELED;
			} else {
				ration_ctx_cancel_with(c->c, cause);
				if (cause >= 0)
					cause = -ECANCELED;
			}
			/* first error wins, for the ctx and its descendants */
			int want = before != 0 ? before : cause;
			EXPECT(ration_ctx_err(c->c), want,
			       "ctx_err after cancel");
			c->err = want;
			for (int a = 0; a < 4; a++)
				if (c->afters[a] >= 0 &&
				    after_runs[c->afters[a]] != 1 &&
				    !after_stopped[c->afters[a]])
					FAIL("after-func not run by cancel");
			/* children: re-read (they follow, first error wins there too) */
			for (int i = 0; i < NC; i++)
				if (ctxs[i].c != NULL)
					ctxs[i].err = ration_ctx_err(ctxs[i].c);
			break;
		}
		case 12: { /* after / stop_after */
			if (c->c == NULL || nafter >= 64)
				break;
			int a = (int)(take(in, 1) % 4);
			if (c->afters[a] >= 0) {
				bool stopped =
					ration_ctx_stop_after(c->c, c->ids[a]);
				int slot = c->afters[a];
				if (stopped) {
					if (after_runs[slot] != 0)
						FAIL("stop_after true for an "
						     "after-func that ran");
					after_stopped[slot] = 1;
				} else if (after_runs[slot] != 1 &&
					   !after_stopped[slot]) {
					FAIL("stop_after false but after-func "
					     "pending");
				}
				c->afters[a] = -1;
				break;
			}
			int slot = nafter++;
			int done = ctx_model_err(c);
			rc = ration_ctx_after(c->c, after_fn,
					      (void *)(intptr_t)slot,
					      &c->ids[a]);
			EXPECT(rc, 0, "ctx_after");
			if (done != 0 && after_runs[slot] != 1)
				FAIL("after on a done ctx did not run inline");
			/* the deadline may have been noticed just now */
			c->afters[a] = slot;
			break;
		}
		case 13: { /* err / deadline / wait / fd: all non-blocking here */
			if (c->c == NULL) {
				EXPECT(ration_ctx_err(NULL), 0,
				       "ctx_err(NULL)");
				EXPECT(ration_ctx_wait(NULL), -EINVAL,
				       "ctx_wait(NULL)");
				EXPECT(ration_ctx_fd(ration_ctx_background()),
				       -EINVAL, "ctx_fd(bg)");
				EXPECT(ration_ctx_after(NULL, after_fn, NULL,
							NULL),
				       -EINVAL, "after(NULL)");
				break;
			}
			int want = ctx_model_err(c);
			EXPECT(ration_ctx_err(c->c), want, "ctx_err");
			if (want != 0)
				EXPECT(ration_ctx_wait(c->c), want, "ctx_wait");
			int fd = ration_ctx_fd(c->c);
			if (fd < 0)
				FAIL("ctx_fd: %d", fd);
			struct pollfd p = {.fd = fd, .events = POLLIN};
			int ready = poll(&p, 1, 0);
			if ((want != 0) != (ready == 1))
				FAIL("ctx_fd readiness %d vs err %d", ready,
				     want);
			break;
		}
		case 14: /* unref (cancel first: pending after-funcs then run) */
			if (c->c == NULL)
				break;
			if (take(in, 1) & 1) {
				ration_ctx_cancel(c->c);
				for (int i = 0; i < NC; i++)
					if (ctxs[i].c != NULL)
						ctxs[i].err = ration_ctx_err(
							ctxs[i].c);
			}
			for (int a = 0; a < 4; a++)
				if (c->afters[a] >= 0 &&
				    after_runs[c->afters[a]] == 0 &&
				    !after_stopped[c->afters[a]])
					after_stopped[c->afters[a]] =
						2; /* dropped, or run by a child's ancestor later */
			ration_ctx_unref(c->c);
			c->c = NULL;
			break;
		default: { /* pool: hostile opts, try_submit, shutdown */
			if (pool == NULL) {
				ration_pool_opts_t o = {0};
				o.threads = (unsigned)(take(in, 1) % 4);
				o.min_threads = (unsigned)(take(in, 1) % 4);
				o.idle_timeout_ns = hostile(in);
				o.queue_cap = (size_t)(take(in, 1) % 5);
				if (o.queue_cap == 4)
					o.queue_cap = SIZE_MAX;
				unsigned thr =
					o.threads
						? o.threads
						: (unsigned)sysconf(
							  _SC_NPROCESSORS_ONLN);
				int want = o.min_threads > thr ||
							   o.idle_timeout_ns < 0
						   ? -EINVAL
						   : 0;
				EXPECT(ration_pool_new(&o, &pool), want,
				       "pool_new");
				if (want != 0)
					pool = NULL;
				break;
			}
			unsigned what = (unsigned)take(in, 1) % 5;
			if (what < 2 && ntask < 64) {
				rc = ration_pool_try_submit(
					pool, task_fn, (void *)(intptr_t)ntask);
				if (rc != 0 && rc != -EAGAIN)
					FAIL("try_submit: %d", rc);
				if (rc == 0)
					ntask++;
				EXPECT(ration_pool_try_submit(pool, NULL, NULL),
				       -EINVAL, "try_submit(NULL)");
			} else if (what == 4) {
				fuzz_group(in, pool);
			} else if (what == 2) {
				unsigned nt = (unsigned)take(in, 1) % 3;
				EXPECT(ration_pool_resize(pool, nt),
				       nt == 0 ? -EINVAL : 0, "pool_resize");
			} else {
				enum ration_shutdown mode =
					take(in, 1) & 1 ? RATION_DISCARD
							: RATION_DRAIN;
				EXPECT(ration_pool_shutdown(pool, mode, NULL),
				       0, "pool_shutdown");
				EXPECT(ration_pool_try_submit(pool, task_fn,
							      NULL),
				       -EPIPE, "try_submit after shutdown");
				ration_pool_free(pool);
				pool = NULL;
				for (int t = pool_tasks0; t < ntask; t++)
					if (task_runs[t] + task_cancel[t] != 1)
						FAIL("task %d called %d times",
						     t,
						     task_runs[t] +
							     task_cancel[t]);
				pool_tasks0 = ntask;
			}
			break;
		}
		}
		for (int i = 0; i < NS; i++)
			if (sems[i].s != NULL)
				check_sem(&sems[i]);
	}

	/* Teardown: give everything back; every free must succeed. */
	if (pool != NULL) {
		ration_pool_free(pool);
		for (int t = pool_tasks0; t < ntask; t++)
			if (task_runs[t] + task_cancel[t] != 1)
				FAIL("task %d called %d times", t,
				     task_runs[t] + task_cancel[t]);
	}
	for (int i = 0; i < NS; i++) {
		struct msem *m = &sems[i];
		if (m->s == NULL)
			continue;
		if (m->avail != m->size)
			EXPECT(ration_sem_release(m->s, m->size - m->avail), 0,
			       "final release");
		if (ration_sem_available(m->s) != m->size)
			FAIL("weight lost");
		EXPECT(ration_sem_free(m->s), 0, "final free");
		if (m->named)
			name_refs[m->named - 1]--;
	}
	for (int i = 0; i < NC; i++)
		if (ctxs[i].c != NULL) {
			ration_ctx_cancel(ctxs[i].c);
			ration_ctx_unref(ctxs[i].c);
		}
	for (int a = 0; a < nafter; a++)
		if (after_stopped[a] == 1   ? after_runs[a] != 0
		    : after_stopped[a] == 2 ? after_runs[a] > 1
					    : after_runs[a] != 1)
			FAIL("after-func %d: ran %d, stopped %d", a,
			     after_runs[a], after_stopped[a]);
	/* Registry empty again: a fresh open takes the size given. */
	for (int i = 0; i < 2; i++) {
		if (name_refs[i] != 0)
			FAIL("name refs %d", name_refs[i]);
		ration_sem_t *s;
		EXPECT(ration_sem_open(names[i], 5, &s), 0, "reopen");
		if (ration_sem_available(s) != 5)
			FAIL("named semaphore outlived its last free");
		EXPECT(ration_sem_free(s), 0, "free reopened");
	}
	if (ration_strerror(INT32_MIN) == NULL ||
	    ration_strerror(INT32_MAX) == NULL)
		FAIL("strerror NULL");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size};
	run(&in);
	return 0;
}

#ifdef FUZZ_REPLAY_MAIN
#include <sys/stat.h>

static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -1;
	static uint8_t buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

int
main(int argc, char **argv)
{
	int files = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			DIR *d = opendir(argv[i]);
			for (struct dirent *e;
			     d != NULL && (e = readdir(d)) != NULL;) {
				if (e->d_name[0] == '.')
					continue;
				char p[4096];
				snprintf(p, sizeof(p), "%s/%s", argv[i],
					 e->d_name);
				if (replay_file(p) == 0)
					files++;
			}
			if (d != NULL)
				closedir(d);
		} else if (replay_file(argv[i]) == 0) {
			files++;
		}
	}
	/* A fixed pseudo-random sweep too, so the test means something
	 * even with an empty corpus. */
	uint64_t x = 12345;
	for (int r = 0; r < 2000; r++) {
		uint8_t buf[512];
		for (size_t i = 0; i < sizeof(buf); i++) {
			x = x * 6364136223846793005u + 1442695040888963407u;
			buf[i] = (uint8_t)(x >> 56);
		}
		LLVMFuzzerTestOneInput(buf, 64 + (size_t)(x % 448));
	}
	printf("fuzz_replay: %d corpus files + 2000 generated inputs: ok\n",
	       files);
	return 0;
}
#endif
