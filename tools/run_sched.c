/* tools/run_sched.c - ration-run: the dispatcher, FIFO with bounded
 * backfill.
 *
 * One thread takes every job's claims (a slot, its weight from the
 * budget, a make token) and starts it. The next job in input order is the
 * head; jobs the supervisor requeued (run_overrun.c) come before the rest
 * of the input, lowest number first. The head waits in the budget
 * semaphore's FIFO queue, so nothing queued behind it in the semaphore
 * can pass it, and the supervisor's ration_sem_consume() for jobs that
 * use more than they declared keeps it waiting until that memory is
 * really back.
 *
 * Backfill: while the head waits for memory (it holds its slot), every
 * BACKFILL_POLL_NS the dispatcher looks at the next BACKFILL_WINDOW jobs
 * behind it and starts, in input order, each one that
 *   - fits now: a free slot and its weight free in the budget, taken
 *     without waiting (try_acquire: nobody else is queued then);
 *   - could not keep the head out on its own: its weight plus the head's
 *     is within the budget;
 * until the head has been passed --backfill times (default
 * RUN_BACKFILL_DEFAULT; 0 = strict FIFO). That is the bound: a head job
 * is overtaken by at most that many jobs, each of which leaves room for
 * it, so its wait grows at most by the longest of their run times, and
 * only when memory is short. Without run-time estimates no rule can
 * promise more than that; with a jobserver (make -j) there is no
 * backfill, make's tokens decide.
 */
#include "run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKFILL_POLL_NS (20 * 1000000LL)
#define BACKFILL_WINDOW  64
#define SETTLE_POLL_NS   (100 * 1000000LL)

/* Dispatcher state: where the first job not yet taken may be. */
struct sched {
	struct runner *r;
	size_t in_pos;
};

/* take_next() - the head: the lowest-numbered requeued job, else the
 * first job of the input not yet taken (backfill takes some early). */
static struct job *
take_next(struct sched *s)
{
	struct runner *r = s->r;

	pthread_mutex_lock(&r->mu);
	struct job *j = r->requeued;
	if (j != NULL)
		r->requeued = j->next;
	pthread_mutex_unlock(&r->mu);
	if (j != NULL) {
		j->next = NULL;
		return j;
	}
	while (s->in_pos < r->njobs && job_at(r, s->in_pos)->taken)
		s->in_pos++;
	/* Streamed input: the next job is read only when one is needed. */
	if (s->in_pos == r->njobs && (r->stream == NULL || stream_more(r) <= 0))
		return NULL;
	j = job_at(r, s->in_pos++);
	j->taken = true;
	return j;
}

/* job_budget_claim() - see run.h. */
ration_claim_t *
job_budget_claim(const struct runner *r, struct job *j)
{
	for (size_t i = 0; i < j->nclaims; i++)
		if (j->claims[i].sem == r->budget)
			return &j->claims[i];
	return NULL;
}

/* runner_wait() - see run.h. */
void
runner_wait(struct runner *r, int64_t ns)
{
	int64_t at = ration_now() + ns;
	struct timespec ts = {(time_t)(at / 1000000000),
			      (long)(at % 1000000000)};

	pthread_cond_timedwait(&r->cv, &r->mu, &ts);
}

/* wait_more() - nothing left to take: wait until every started job is
 * settled (return false) or one is requeued (true). The dispatch ctx is
 * checked every SETTLE_POLL_NS. */
static bool
wait_more(struct runner *r)
{
	bool more;

	pthread_mutex_lock(&r->mu);
	while (r->requeued == NULL && r->settled < r->dispatched &&
	       ration_ctx_err(r->dispatch_ctx) == 0)
		runner_wait(r, SETTLE_POLL_NS);
	more = r->requeued != NULL;
	pthread_mutex_unlock(&r->mu);
	return more;
}

/* budget_weight() - what @j takes from the budget to start: its weight,
 * or the whole budget (so nothing else runs) when it is heavier than
 * the budget and may run alone. */
static int64_t
budget_weight(const struct runner *r, struct job *j)
{
	const struct run_opts *o = r->o;

	if (r->budget == NULL || j->weight <= o->budget_bytes)
		return j->weight;
	if (o->alone_if_too_big || o->overrun == OVERRUN_REQUEUE)
		j->alone = true;
	return j->alone ? o->budget_bytes : j->weight;
}

/* start() - @j holds its claims: its make token, its cap, spawn, hand
 * it to the supervisor. Return: 0, or the error that stops dispatching. */
static int
start(struct runner *r, struct job *j)
{
	const struct run_opts *o = r->o;

	/* Make's token last: it is shared with the whole build, so hold it
	 * for as short a time as possible. */
	int rc = js_acquire(&r->js, r->dispatch_ctx, j);
	if (rc == 0)
		rc = ration_ctx_err(r->dispatch_ctx);
	if (rc < 0) {
		js_release(&r->js, j);
		ration_release_all(j->claims, j->nclaims);
		j->nclaims = 0;
		j->short_by = 0;
		if (rc == -EPIPE)
			fprintf(stderr, RUN_NAME ": make's jobserver closed; "
						 "starting no more jobs\n");
		return rc;
	}
	j->cap = 0;
	j->cap_waits = o->overrun == OVERRUN_REQUEUE;
	if ((o->overrun == OVERRUN_REQUEUE || o->overrun == OVERRUN_KILL) &&
	    j->weight > 0) {
		j->cap = j->weight;
		/* A job that waits at its cap (v1) starts capped at its
		 * claim: the margin is given from free room (grow_cap()),
		 * so real use never passes the claims. Elsewhere the cap
		 * kills, and the margin spares the job that is only a
		 * little over. */
		if (r->ramp && !j->alone)
			j->cap = ramp_first(r, j);
		else if (j->short_by > 0)
			j->cap -= j->short_by;
		else if (!(j->cap_waits && r->cg.active && r->cg.version == 1))
			j->cap += (int64_t)((double)j->weight * o->cap_margin);
	}
	rc = job_spawn(r, j);
	/* Started early, it needs its cap: without one, its whole weight
	 * first. */
	if (rc < 0 && j->short_by > 0) {
		rc = head_start_cancel(r, j);
		if (rc == 0)
			rc = job_spawn(r, j);
	}
	if (rc < 0) {
		ration_release_all(j->claims, j->nclaims);
		j->nclaims = 0;
		js_release(&r->js, j);
		j->spawn_err = rc;
		j->short_by = 0;
	}
	job_handoff(r, j);
	return 0;
}

/* try_claims() - @c's slot and weight if both are free now. */
static bool
try_claims(struct runner *r, struct job *c)
{
	size_t n = 0;

	if (r->slots != NULL) {
		if (ration_sem_try_acquire(r->slots, 1) < 0)
			return false;
		c->claims[n++] = (ration_claim_t){r->slots, 1};
	}
	if (r->budget != NULL && c->weight > 0) {
		if (ration_sem_try_acquire(r->budget, c->weight) < 0) {
			ration_release_all(c->claims, n);
			return false;
		}
		c->claims[n++] = (ration_claim_t){r->budget, c->weight};
	}
	c->nclaims = n;
	c->held = r->budget != NULL ? c->weight : 0;
	return true;
}

/**
 * backfill() - start jobs behind the blocked head that fit now and
 * leave room for it (see the top of this file).
 * @s:        the dispatcher state.
 * @bypassed: how many jobs passed the head so far; counts these.
 * @w_head:   what the head waits for.
 *
 * Return: 0, or the error that stops dispatching.
 */
static int
backfill(struct sched *s, unsigned *bypassed, int64_t w_head)
{
	struct runner *r = s->r;
	size_t seen = 0;

	for (size_t i = s->in_pos; i < r->njobs && seen < BACKFILL_WINDOW &&
				   *bypassed < r->o->backfill;
	     i++) {
		struct job *c = job_at(r, i);
		if (c->taken)
			continue;
		seen++;
		if (c->weight > r->o->budget_bytes - w_head ||
		    !try_claims(r, c))
			continue;
		c->taken = true;
		(*bypassed)++;
		int rc = start(r, c);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/**
 * at_tail() - whether no job waits behind the head: the input is all
 * read (not streamed) and taken (backfill takes some early), and none is
 * requeued. Only then does the head start early (run_headstart.c):
 * before, backfill puts free room to use, and a job started early took
 * the room given back in big blocks ahead of it (measured with
 * bench/ration-run-vs-parallel.sh: the jobs behind it started later,
 * and the makespan was no better).
 * @s: the dispatcher state.
 */
static bool
at_tail(struct sched *s)
{
	struct runner *r = s->r;

	if (r->stream != NULL)
		return false;
	for (size_t i = s->in_pos; i < r->njobs; i++)
		if (!job_at(r, i)->taken)
			return false;
	pthread_mutex_lock(&r->mu);
	bool none = r->requeued == NULL;
	pthread_mutex_unlock(&r->mu);
	return none;
}

/**
 * acquire_budget() - @w of the budget for @head, blocking; with backfill
 * or head starts, in BACKFILL_POLL_NS rounds with a backfill pass, then
 * a head start (run_headstart.c), between.
 * @s:    the dispatcher state.
 * @head: the head job.
 * @w:    what it needs.
 * @got:  receives what it was given: @w, or less when it starts early.
 *
 * Return: 0, or the acquire's error.
 */
static int
acquire_budget(struct sched *s, struct job *head, int64_t w, int64_t *got)
{
	struct runner *r = s->r;

	*got = w;
	if ((r->o->backfill == 0 && !r->head_start) || r->js.active)
		return ration_sem_acquire(r->budget, r->dispatch_ctx, w);
	for (;;) {
		int rc = ration_sem_acquire_until(
			r->budget, ration_now() + BACKFILL_POLL_NS, w);
		if (rc != -ETIMEDOUT)
			return rc;
		rc = ration_ctx_err(r->dispatch_ctx);
		if (rc == 0 && head->bypassed < r->o->backfill)
			rc = backfill(s, &head->bypassed, w);
		if (rc < 0)
			return rc;
		int64_t early = at_tail(s) ? head_start(r, head, w) : 0;
		if (early > 0) {
			*got = early;
			return 0;
		}
	}
}

/**
 * wait_raised() - @head, started early (run_headstart.c), stays the head
 * until its cap is its weight or it has ended: nothing behind it starts
 * meanwhile but by backfill, with the bound and rule it had while it
 * waited to start.
 * @s:        the dispatcher state.
 * @head:     the job, handed to the supervisor (only its short_by is
 *            read, under mu).
 * @bypassed: how many jobs passed it before it started.
 * @w:        its weight.
 *
 * Return: 0, or the error that stops dispatching.
 */
static int
wait_raised(struct sched *s, const struct job *head, unsigned bypassed,
	    int64_t w)
{
	struct runner *r = s->r;

	while (head_start_short(r, head, BACKFILL_POLL_NS)) {
		int rc = ration_ctx_err(r->dispatch_ctx);
		if (rc == 0 && bypassed < r->o->backfill)
			rc = backfill(s, &bypassed, w);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/**
 * admit() - take @j's slot, then its weight (slot first: a job waiting
 * for memory then holds only a slot, never budget it is not using yet),
 * and start it.
 * @s: the dispatcher state.
 * @j: the head job.
 *
 * Return: 0, or the error that stops dispatching.
 */
static int
admit(struct sched *s, struct job *j)
{
	struct runner *r = s->r;
	int64_t w = budget_weight(r, j);
	int64_t got = w;
	int rc = ration_ctx_err(r->dispatch_ctx);
	size_t n = 0;

	j->nclaims = 0;
	if (rc == 0 && r->slots != NULL) {
		rc = ration_sem_acquire(r->slots, r->dispatch_ctx, 1);
		if (rc == 0)
			j->claims[n++] = (ration_claim_t){r->slots, 1};
	}
	if (rc == 0 && r->budget != NULL && w > 0) {
		rc = acquire_budget(s, j, w, &got);
		if (rc == 0)
			j->claims[n++] = (ration_claim_t){r->budget, got};
	}
	if (rc < 0)
		ration_release_all(j->claims, n);
	if (rc == -E2BIG) {
		/* Heavier than the whole budget: it could never run. That
		 * fails this job, not the run. */
		j->reject = rc;
		job_handoff(r, j);
		return 0;
	}
	if (rc < 0)
		return rc;
	j->nclaims = n;
	j->held = r->budget != NULL ? got : 0;
	unsigned bypassed = j->bypassed;
	rc = start(r, j);
	/* @j has started: an error here is the dispatch ctx's (there is no
	 * jobserver), which stops dispatching at the loop's next check. */
	if (rc == 0 && got < w)
		(void)wait_raised(s, j, bypassed, w);
	return rc;
}

/* dispatch() - see run.h. */
size_t
dispatch(struct runner *r)
{
	struct sched s = {.r = r};
	struct job *j;

	for (;;) {
		if (ration_ctx_err(r->dispatch_ctx) != 0)
			break;
		j = take_next(&s);
		if (j == NULL) {
			if (wait_more(r))
				continue;
			break;
		}
		if (admit(&s, j) < 0) {
			j->taken = false;
			break;
		}
	}
	size_t started = 0;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->njobs; i++)
		started += job_at(r, i)->taken;
	for (j = r->requeued; j != NULL; j = j->next)
		started--;
	r->dispatch_done = true;
	pthread_mutex_unlock(&r->mu);
	uint64_t one = 1;
	(void)!write(r->wake_fd, &one, sizeof(one));
	return started;
}

/* sched_requeue() - see run.h: linked into r->requeued by seq. */
void
sched_requeue(struct runner *r, struct job *j)
{
	pthread_mutex_lock(&r->mu);
	struct job **pp = &r->requeued;
	while (*pp != NULL && (*pp)->seq < j->seq)
		pp = &(*pp)->next;
	j->next = *pp;
	*pp = j;
	r->settled++;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* sched_settled() - see run.h. */
void
sched_settled(struct runner *r)
{
	pthread_mutex_lock(&r->mu);
	r->settled++;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}
