/* tools/run_overrun.c - ration-run: admission by real memory, and what
 * to do when jobs use more than they declared.
 *
 * Every sample (run.h: sample_ns), each running job's claim on the
 * budget grows to max(declared, measured peak) by ration_sem_consume:
 * the dispatcher, waiting in FIFO order on the same semaphore, admits
 * nothing new until that memory is really back (under requeue on cgroup
 * v1 a capped job's claim is its cap instead, run_ramp.c). When the
 * claims pass the budget (available < 0), --overrun says what else
 * happens:
 *
 *   wait     nothing more: admitting nothing new is all (the default).
 *   suspend  SIGSTOP the job most over its weight, one per sample, and
 *            SIGCONT the oldest stopped job once the claims fit again.
 *            The oldest running job is never stopped, and when only
 *            stopped jobs are left the oldest is continued, so the run
 *            always moves.
 *   requeue  SIGKILL the job most over its weight and queue it again
 *            with its measured peak + 25%, at least double its weight;
 *            heavier than the budget, it then runs alone. At most
 *            RUN_MAX_REQUEUES times, then it fails. A job that nears its
 *            cap (below) gets a higher cap instead, its claim raised to
 *            it at once; on cgroup v1 a job at its cap waits there
 *            (oom_kill_disable) instead of being OOM-killed, for room
 *            that running jobs give back, ahead of new jobs. Only when
 *            every running job waits at its cap is one killed.
 *   kill     SIGKILL the job most over its weight; it fails.
 *
 * "Most over" is the most bytes measured above the weight; the victim
 * is never simply the youngest job. With requeue and kill, a job with a
 * cgroup is also capped there at weight x (1 + cap margin), so a liar
 * that touches its memory faster than a sample is stopped by the kernel
 * in its own cgroup (an OOM kill there, told apart from any other
 * SIGKILL) before the machine is hurt.
 *
 * Supervisor thread only.
 */
#include "run.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/**
 * grow_claim() - make @j's claim on the budget max(weight, peak).
 * @r: the runner.
 * @j: a running job, just measured.
 *
 * The claim only grows while the job runs: memory a job touched once it
 * may touch again, and all of it goes back when the job is reaped.
 */
static void
grow_claim(struct runner *r, struct job *j)
{
	int64_t want = j->peak_bytes;

	if (r->budget == NULL || want <= j->held + j->consumed)
		return;
	int64_t more = want - j->held - j->consumed;
	if (ration_sem_consume(r->budget, more) == 0)
		j->consumed += more;
}

/* over_by() - bytes @j measured above its weight; <= 0 if none. */
static int64_t
over_by(const struct job *j)
{
	return j->peak_bytes - j->weight;
}

/**
 * pick_victim() - the running job most over its weight.
 * @running: the running jobs, oldest first.
 * @spare:   a job never to pick (the oldest running one), or NULL.
 *
 * Skips jobs already stopped or being killed. A job running alone
 * (heavier than the budget) is a victim only for passing its own weight.
 *
 * Return: the job, or NULL if none is over its weight.
 */
static struct job *
pick_victim(struct job *running, const struct job *spare)
{
	struct job *best = NULL;

	for (struct job *j = running; j != NULL; j = j->next) {
		/* Waiting at its cap, a job asks for more than it has:
		 * over its weight, though capped at it (v1). */
		if (j == spare || j->stopped || j->overrun_killed ||
		    j->kill_sent || j->short_by > 0 ||
		    (over_by(j) <= 0 && !j->at_cap))
			continue;
		if (best == NULL || over_by(j) > over_by(best))
			best = j;
	}
	return best;
}

/**
 * suspend_or_continue() - --overrun suspend, once per sample.
 * @r:       the runner.
 * @running: the running jobs, oldest first.
 * @over:    whether the claims pass the budget.
 */
static void
suspend_or_continue(struct runner *r, struct job *running, bool over)
{
	struct job *oldest_running = NULL, *oldest_stopped = NULL;

	for (struct job *j = running; j != NULL; j = j->next) {
		if (!j->stopped && oldest_running == NULL)
			oldest_running = j;
		if (j->stopped && oldest_stopped == NULL)
			oldest_stopped = j;
	}
	if (oldest_stopped != NULL && (!over || oldest_running == NULL)) {
		kill(-oldest_stopped->pid, SIGCONT);
		oldest_stopped->stopped = false;
		return;
	}
	if (!over)
		return;
	struct job *v = pick_victim(running, oldest_running);
	if (v == NULL)
		return;
	kill(-v->pid, SIGSTOP);
	v->stopped = true;
	r->suspends++;
	char a[16], b[16];
	format_size(v->peak_bytes, a, sizeof(a));
	format_size(v->weight, b, sizeof(b));
	progress_clear(r);
	fprintf(stderr,
		RUN_NAME ": job %u (line %u) uses %s, weight %s; "
			 "budget full: stopped until there is room: %s\n",
		v->seq, v->line, a, b, v->cmd);
}

/**
 * kill_victim() - --overrun requeue and kill: SIGKILL the job most over
 * its weight, one at a time (none while an earlier victim is not yet
 * reaped: its memory is still counted until then).
 * @r:       the runner.
 * @running: the running jobs.
 */
static void
kill_victim(struct runner *r, struct job *running)
{
	for (struct job *j = running; j != NULL; j = j->next)
		if (j->overrun_killed)
			return;
	struct job *v = pick_victim(running, NULL);
	if (v == NULL)
		return;
	kill(-v->pid, SIGKILL);
	v->kill_sent = true;
	v->overrun_killed = true;
	r->overrun_kills++;
}

/**
 * grow_cap() - --overrun requeue: more room for a job at or near its
 * cap. Its claim grows to the new cap at once (consume), so the room is
 * its own before the dispatcher can give it away. With room now, the cap
 * is raised now. Without, a job waiting at its cap (v1) reserves the room
 * all the same: the claim then passes the budget, which admits nothing
 * new until running jobs have given that much back, and the cap is
 * raised then (first, before any new job: the reservation is in the
 * semaphore's count). A step never takes the cap past the budget: room
 * the budget can never give would be waited for forever.
 * @r:       the runner.
 * @j:       a running job with a cap, not being killed.
 * @waiting: whether it waits at its cap.
 *
 * Return: whether @j stays waiting at its cap for room not there yet.
 */
static bool
grow_cap(struct runner *r, struct job *j, bool waiting)
{
	int64_t step = (int64_t)((double)j->weight * r->o->cap_margin);

	if (r->budget == NULL)
		return waiting;
	if (j->reserved > 0) {
		if (ration_sem_available(r->budget) >= 0 &&
		    cg_job_set_cap(&r->cg, j, j->cap + j->reserved) == 0) {
			r->reserved -= j->reserved;
			j->reserved = 0;
			return false;
		}
		return waiting;
	}
	if (step < RUN_CAP_STEP_MIN)
		step = RUN_CAP_STEP_MIN;
	if (step > r->o->budget_bytes - j->cap)
		step = r->o->budget_bytes - j->cap;
	if (step <= 0)
		return waiting;
	int64_t more = j->cap + step - j->held - j->consumed;
	if (more < 0)
		more = 0;
	bool room = ration_sem_available(r->budget) >= more;
	if (!room && !waiting)
		return false;
	if (more > 0 && ration_sem_consume(r->budget, more) < 0)
		return waiting;
	j->consumed += more;
	if (room && cg_job_set_cap(&r->cg, j, j->cap + step) == 0)
		return false;
	j->reserved = step;
	r->reserved += step;
	return waiting;
}

/**
 * watch_cap() - a job capped in its cgroup. An OOM kill there kills the
 * rest of the job too: half a pipeline is no result, and its memory is
 * what the budget needs back. Under --overrun requeue a job near its cap
 * (v1: waiting at it) gets more room, now or once running jobs give it
 * back (grow_cap()).
 * @r: the runner.
 * @j: a running job with a cap.
 */
static void
watch_cap(struct runner *r, struct job *running, struct job *j)
{
	bool waiting;

	j->at_cap = false;
	if (j->kill_sent || j->cg_use_fd < 0)
		return;
	int64_t n = cg_job_oom(&r->cg, j, &waiting);
	if (n > 0) {
		j->oom_kills = n;
		kill(-j->pid, SIGKILL);
		j->kill_sent = true;
		return;
	}
	if (j->short_by > 0) {
		j->at_cap = head_start_raise(r, running, j, waiting);
		return;
	}
	if (r->o->overrun != OVERRUN_REQUEUE)
		return;
	if (r->ramp && !j->alone && j->cap < j->weight) {
		j->at_cap = ramp_raise(r, running, j, waiting);
		return;
	}
	/* Near the cap only once past the weight: an honest job close to
	 * its weight must not take more of the budget. */
	if (waiting || j->reserved > 0 ||
	    (j->cur_bytes > j->weight && j->cur_bytes >= j->cap - j->cap / 5))
		j->at_cap = grow_cap(r, j, waiting);
}

/* all_stuck() - whether every running job waits at its cap: then none
 * will give memory back, and one must be killed. */
static bool
all_stuck(const struct job *running)
{
	for (const struct job *j = running; j != NULL; j = j->next)
		if (!j->at_cap || j->kill_sent)
			return false;
	return running != NULL;
}

/* overrun_tick() - see run.h. */
void
overrun_tick(struct runner *r, struct job *running)
{
	measure_jobs(r, running);
	for (struct job *j = running; j != NULL; j = j->next) {
		grow_claim(r, j);
		if (j->cap > 0)
			watch_cap(r, running, j);
	}
	if (r->budget == NULL)
		return;
	head_start_note(r, running);
	ramp_sync(r, running);
	/* Room reserved for jobs waiting at their caps, or for ramping jobs
	 * to reach their weights, is no overrun. */
	bool over = ration_sem_available(r->budget) + r->reserved + r->bank < 0;
	switch (r->o->overrun) {
	case OVERRUN_WAIT:
		break;
	case OVERRUN_SUSPEND:
		suspend_or_continue(r, running, over);
		break;
	case OVERRUN_REQUEUE:
	case OVERRUN_KILL:
		if (over || all_stuck(running))
			kill_victim(r, running);
		break;
	}
}

/* overrun_requeue_weight() - see run.h. */
int64_t
overrun_requeue_weight(const struct job *j)
{
	int64_t peak = j->peak_bytes > 0 ? j->peak_bytes : 0;
	int64_t w = peak + peak / 4;

	if (j->weight > 0 && w < 2 * j->weight)
		w = 2 * j->weight;
	if (w <= 0)
		w = 1;
	return w > RATION_SEM_MAX ? RATION_SEM_MAX : w;
}

/* parse_overrun() - see run.h. */
int
parse_overrun(const char *s, enum overrun_mode *out)
{
	static const char *const names[] = {
		[OVERRUN_WAIT] = "wait",
		[OVERRUN_SUSPEND] = "suspend",
		[OVERRUN_REQUEUE] = "requeue",
		[OVERRUN_KILL] = "kill",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum overrun_mode)i;
			return 0;
		}
	}
	return -EINVAL;
}
