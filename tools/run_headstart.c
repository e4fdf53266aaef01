/* tools/run_headstart.c - ration-run: the blocked head starts early,
 * capped at the room there is.
 *
 * A job spends a good part of its run touching the memory it declared.
 * When the next job in FIFO order (the head) waits for memory, the jobs
 * that hold the budget are often only holding it, and the head could
 * already touch the part of its weight that is free. With the head start
 * (the default, --no-head-start turns it off; --overrun requeue on
 * cgroup v1, where a job at its cap waits instead of being OOM-killed)
 * the dispatcher then starts the head at once with
 * its cgroup capped at that free room, taken from the budget like any
 * claim. The supervisor raises its cap as running jobs give memory back,
 * taking that room from the budget the same way; the job waits at its
 * cap meanwhile. Only at the end of the input (run_sched.c, at_tail()):
 * before it, backfill puts that room to use. The dispatcher keeps the
 * job the head until its cap is its weight, so requeued jobs wait
 * behind it.
 *
 * Why this cannot stall or pass the budget:
 *   - The head starts as the youngest job, and only while no running job
 *     is past its weight. Every older job holds its whole weight, and so
 *     does every job backfill starts, so none of them waits for the
 *     head: they end, and then the budget has room for the head's whole
 *     weight. An older job that turns out a liar is served first while
 *     others run; when every other job waits at its cap, the head takes
 *     the liars' reserved room instead, ends and gives it back (see
 *     head_start_raise()). The banker's rule of run_ramp.c holds, with
 *     liars counted as the youngest.
 *   - Real use stays within the caps, the caps within the claims, and
 *     the claims within the budget: the head's room is acquired before
 *     its cap is raised.
 *   - A job started early is never a victim for waiting at its cap: it
 *     asks for no more than it declared.
 *
 * Elsewhere (no cgroup, cgroup v2 where a cap is an OOM kill, the other
 * --overrun modes, --ramp, a make jobserver, a job that runs alone) the
 * head waits for its whole weight, as before.
 */
#include "run.h"

/**
 * head_start() - dispatcher: start @j early if part of its weight is
 * free: take that part, its first cap.
 * @r: the runner.
 * @j: the head job, waiting for @w of the budget; holds its slot.
 * @w: its weight.
 *
 * Return: the budget taken for @j, or 0 if it is not started early: too
 * little room (less than an eighth of its weight or RUN_CAP_STEP_MIN, a
 * cap a job would only wait at), a running job past its weight, or head
 * starts off.
 */
int64_t
head_start(struct runner *r, struct job *j, int64_t w)
{
	int64_t least = w / 8 > RUN_CAP_STEP_MIN ? w / 8 : RUN_CAP_STEP_MIN;

	if (!r->head_start || j->alone || w <= 0)
		return 0;
	/* A liar's need is known only as it grows: room taken now may be
	 * the room it asks for next (015/017 serve it first). */
	pthread_mutex_lock(&r->mu);
	bool liar = r->liar_running;
	pthread_mutex_unlock(&r->mu);
	if (liar)
		return 0;
	int64_t room = ration_sem_available(r->budget);
	if (room < least || room >= w ||
	    ration_sem_try_acquire(r->budget, room) < 0)
		return 0;
	j->short_by = w - room;
	r->head_starts++;
	return room;
}

/* head_start_cancel() - see run.h. */
int
head_start_cancel(struct runner *r, struct job *j)
{
	int rc = ration_sem_acquire(r->budget, r->dispatch_ctx, j->short_by);

	if (rc < 0)
		return rc;
	job_budget_claim(r, j)->n += j->short_by;
	j->held += j->short_by;
	j->cap = j->weight;
	j->short_by = 0;
	return 0;
}

/* head_start_short() - see run.h. */
bool
head_start_short(struct runner *r, const struct job *j, int64_t wait_ns)
{
	pthread_mutex_lock(&r->mu);
	if (j->short_by > 0 && wait_ns > 0)
		runner_wait(r, wait_ns);
	bool short_ = j->short_by > 0;
	pthread_mutex_unlock(&r->mu);
	return short_;
}

/**
 * set_short() - @j's part of its weight not yet in its cap becomes @n;
 * the dispatcher, waiting for it to reach 0, is woken then.
 * @r: the runner.
 * @j: a job started early.
 * @n: the new part.
 */
static void
set_short(struct runner *r, struct job *j, int64_t n)
{
	pthread_mutex_lock(&r->mu);
	j->short_by = n;
	pthread_mutex_unlock(&r->mu);
	if (n == 0)
		pthread_cond_broadcast(&r->cv);
}

/* wants_room() - whether @k is past its weight (a liar growing in
 * steps, run_overrun.c) or waits at its cap. */
static bool
wants_room(const struct job *k)
{
	return !k->kill_sent &&
	       (k->at_cap || k->reserved > 0 || k->cap > k->weight);
}

/* head_start_note() - see run.h. */
void
head_start_note(struct runner *r, const struct job *running)
{
	bool liar = false;

	if (!r->head_start)
		return;
	for (const struct job *k = running; k != NULL && !liar; k = k->next)
		liar = wants_room(k) && k->short_by == 0;
	pthread_mutex_lock(&r->mu);
	r->liar_running = liar;
	pthread_mutex_unlock(&r->mu);
}

/* head_start_raise() - see run.h. The room is taken like any claim, by
 * try_acquire: the dispatcher's backfill may take free room too, but
 * never the same, and the caps stay within the budget. An older job
 * past its weight or waiting at its cap is served first: the early job
 * is the youngest, and a liar grows in steps, so raises taken whenever
 * the liar was not waiting at that moment kept it waiting for seconds
 * (measured with bench/ration-run-vs-parallel.sh, liar set). But when
 * every other running job waits at its cap, none will give memory back
 * but this one, whose need is known: it then takes the room reserved
 * for the liars' steps too (consume; the claims pass the budget by at
 * most those reservations, as in run_overrun.c, so no cap does), ends,
 * and gives the liars more than they reserved. Otherwise all would
 * wait, and a liar be killed. */
bool
head_start_raise(struct runner *r, const struct job *running, struct job *j,
		 bool waiting)
{
	bool older = true, liar = false, stuck = true;

	for (const struct job *k = running; k != NULL; k = k->next) {
		if (k == j) {
			older = false;
			continue;
		}
		liar = liar || (older && wants_room(k));
		stuck = stuck && k->at_cap && !k->kill_sent;
	}
	if (liar && !stuck)
		return waiting;
	int64_t avail = ration_sem_available(r->budget);
	int64_t room = avail + (stuck ? r->reserved : 0);
	int64_t more = room < j->short_by ? room : j->short_by;

	/* Not by crumbs: each raise wakes a job that soon waits again. */
	if (more < j->short_by && more < RUN_CAP_STEP_MIN)
		return waiting;
	/* The free part by try_acquire, which a backfill start racing with
	 * it cannot also take; only the reserved part by consume. */
	int64_t unclaimed = avail <= 0 ? 0 : avail < more ? avail : more;
	if (unclaimed > 0 && ration_sem_try_acquire(r->budget, unclaimed) < 0)
		return waiting;
	if (more > unclaimed &&
	    ration_sem_consume(r->budget, more - unclaimed) < 0) {
		if (unclaimed > 0)
			ration_sem_release(r->budget, unclaimed);
		return waiting;
	}
	if (cg_job_set_cap(&r->cg, j, j->cap + more) < 0) {
		ration_sem_release(r->budget, more);
		return waiting;
	}
	job_budget_claim(r, j)->n += more;
	j->held += more;
	set_short(r, j, j->short_by - more);
	return false;
}

/* head_start_leave() - see run.h. */
void
head_start_leave(struct runner *r, struct job *j)
{
	if (j->short_by > 0)
		set_short(r, j, 0);
}
