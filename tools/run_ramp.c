/* tools/run_ramp.c - ration-run: claims that follow a ramping job.
 *
 * A job takes seconds to touch the memory it declared, and a claim of its
 * whole weight from its start leaves that memory idle meanwhile (about
 * half the budget, measured with bench/ration-run-vs-parallel.sh). Where
 * every job is capped in a cgroup of its own and waits at its cap instead
 * of being OOM-killed (--overrun requeue on cgroup v1), a job's claim can
 * be its cap instead, raised as the job uses it: the kernel holds real
 * use to the caps, the caps' sum to the budget.
 *
 * What keeps that from stalling for good is the banker's rule, oldest job
 * first: with the running jobs in start order and a_i the cap of job i,
 * for every job k
 *
 *     max(weight_k, a_k) + sum of a_i over the jobs younger than k <= budget,
 *
 * so the oldest job can always reach its weight, then the next oldest
 * once the oldest has ended, and so on (a job past its weight counts as
 * the youngest: see need()). The supervisor holds the largest
 * of those sums (the "need") on the budget semaphore: the caps through
 * each job's claim (held at its start, consumed as it grows), the rest
 * as one reserve of its own (r->bank). A new job starts with a small cap
 * (ramp_first()), so it only needs that much below the budget; a cap is
 * raised oldest job first, when the job nears it, by as much as the rule
 * allows. A cap raise that makes the need grow takes the difference from
 * the semaphore with consume and gives it back if that passed the budget
 * (a start by the dispatcher may have come first), so caps never sum past
 * the budget. Past its weight a job is a liar, and the rest of
 * run_overrun.c applies.
 *
 * Supervisor thread, apart from ramp_first() (the dispatcher's).
 */
#include "run.h"

/* The smallest raise short of a full step. */
#define RAMP_CRUMB (1LL << 20)

/* share() - what @j holds of the budget: its cap, and a step it may have
 * reserved past it. */
static int64_t
share(const struct job *j)
{
	return j->held + j->consumed;
}

/* liar() - whether @j is past its weight: its need is unknown, so the
 * rule counts it last (see need()). */
static bool
liar(const struct job *j)
{
	return j->cap > j->weight || (j->cap == j->weight && j->reserved > 0);
}

/**
 * need() - the largest banker's sum of the @running jobs (see the top of
 * this file).
 * @running: the running jobs, oldest first.
 * @total:   receives the sum of their shares.
 *
 * Jobs past their weight come after all the others, youngest or not:
 * how much more a liar will want nobody knows, so it cannot be promised
 * to finish first; the jobs within their weights can, and their ends
 * give it room. A job that runs alone, is being killed or has no cap
 * will not grow within the rule: what it holds is all it needs.
 *
 * Return: the need, >= *@total.
 */
static int64_t
need(const struct job *running, int64_t *total)
{
	int64_t sum = 0, older = 0, most = 0;

	for (const struct job *j = running; j != NULL; j = j->next)
		sum += share(j);
	for (int pass = 0; pass < 2; pass++) {
		for (const struct job *j = running; j != NULL; j = j->next) {
			if (liar(j) != (pass == 1))
				continue;
			int64_t s = share(j);
			int64_t n = s;
			if (j->cap > 0 && !j->alone && !j->kill_sent &&
			    j->weight > s)
				n = j->weight;
			int64_t term = n + (sum - older - s);
			if (term > most)
				most = term;
			older += s;
		}
	}
	*total = sum;
	return most;
}

/* ramp_step() - how far ahead of a job of weight @w its cap is raised. */
static int64_t
ramp_step(int64_t w)
{
	return w / 8 > RUN_CAP_STEP_MIN ? w / 8 : RUN_CAP_STEP_MIN;
}

/* ramp_first() - see run.h. */
int64_t
ramp_first(const struct runner *r, const struct job *j)
{
	if (!r->ramp || j->weight <= ramp_step(j->weight))
		return j->weight;
	return ramp_step(j->weight);
}

/* ramp_start() - see run.h: the claim above the cap moves to the bank,
 * which ramp_sync() then brings down to what the jobs need. */
void
ramp_start(struct runner *r, struct job *j)
{
	ration_claim_t *c;

	if (!r->ramp || j->cg_use_fd < 0 || j->cap >= j->held ||
	    (c = job_budget_claim(r, j)) == NULL)
		return;
	int64_t x = j->held - j->cap;
	c->n -= x;
	j->held -= x;
	r->bank += x;
}

/* ramp_sync() - see run.h: the reserve made need - shares, by consume
 * (it only reserves: caps alone never pass the budget) or release. */
void
ramp_sync(struct runner *r, const struct job *running)
{
	int64_t total;

	if (!r->ramp)
		return;
	int64_t bank = need(running, &total) - total;
	if (bank > r->bank && ration_sem_consume(r->budget, bank - r->bank) < 0)
		return;
	if (bank < r->bank)
		ration_sem_release(r->budget, r->bank - bank);
	r->bank = bank;
}

/* ramp_leave() - see run.h: the bank's new size, the part it gains taken
 * from @j's claim (which then goes back smaller) rather than consumed
 * first: in_use never passes what the jobs need, not even for a moment,
 * and the dispatcher never sees room the bank is about to take. */
void
ramp_leave(struct runner *r, const struct job *running, struct job *j)
{
	int64_t total;

	if (!r->ramp)
		return;
	int64_t more = need(running, &total) - total - r->bank;
	if (more < 0) {
		ration_sem_release(r->budget, -more);
		r->bank += more;
		return;
	}
	/* The need without @j is at most the need with it, so its claim
	 * covers what the bank gains. */
	int64_t t = more < j->consumed ? more : j->consumed;
	j->consumed -= t;
	r->bank += t;
	more -= t;
	ration_claim_t *c = job_budget_claim(r, j);
	if (c != NULL && more > 0) {
		t = more < c->n ? more : c->n;
		c->n -= t;
		r->bank += t;
	}
}

/* cost() - what raising @j's cap by @more would take from the budget:
 * the growth of the need (the supervisor holds the need: caps and bank). */
static int64_t
cost(struct runner *r, const struct job *running, struct job *j, int64_t more)
{
	int64_t total;

	(void)need(running, &total);
	int64_t before = total + r->bank;
	j->consumed += more;
	int64_t after = need(running, &total);
	j->consumed -= more;
	return after - before;
}

/* ramp_raise() - see run.h. */
bool
ramp_raise(struct runner *r, struct job *running, struct job *j, bool waiting)
{
	int64_t step = ramp_step(j->weight);

	if (!waiting && j->cur_bytes < j->cap - step / 2)
		return false;
	/* The oldest job's weight is in the need already: all of it now. */
	int64_t to = j == running ? j->weight : j->cap + step;
	if (to > j->weight)
		to = j->weight;
	int64_t more = to - j->cap;
	int64_t room = ration_sem_available(r->budget);
	int64_t take = cost(r, running, j, more);
	/* Short of room: as far as it goes (the need grows at most as
	 * fast as the cap), but not by crumbs: a raise to less than the
	 * job already uses (the kernel may charge a little past a cap) is
	 * refused with EBUSY. */
	if (take > room && room > 0) {
		more -= take - room;
		if (more < RAMP_CRUMB)
			return waiting;
		take = cost(r, running, j, more);
	}
	if (more <= 0 || (take > 0 && take > room))
		return waiting;
	if (take > 0 && ration_sem_consume(r->budget, take) < 0)
		return waiting;
	/* Past the budget after the consume: the dispatcher took the room
	 * first. */
	if (take > 0 && ration_sem_available(r->budget) < 0) {
		ration_sem_release(r->budget, take);
		return waiting;
	}
	/* Refused: undone whole, or the semaphore would keep @take that
	 * nobody accounts for. */
	if (cg_job_set_cap(&r->cg, j, j->cap + more) < 0) {
		if (take > 0)
			ration_sem_release(r->budget, take);
		return waiting;
	}
	if (take < 0)
		ration_sem_release(r->budget, -take);
	j->consumed += more;
	r->bank += take - more;
	return false;
}
