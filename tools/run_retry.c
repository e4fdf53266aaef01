/* tools/run_retry.c - ration-run: --retries and --timeout N%.
 *
 * Both judge finished attempts, as GNU parallel does:
 *   --retries N   a job that fails is run again, up to N attempts in all
 *                 (N = 0 or 1: once); only its last attempt is logged and
 *                 its output passed on. It keeps its Seq and its weight,
 *                 and goes back to the head of the queue (run_sched.c).
 *   --timeout P%  a job running longer than P% of the median run time
 *                 of the attempts finished so far is timed out; until one
 *                 has finished there is no limit. A timed-out attempt does
 *                 not count towards the median.
 *
 * Supervisor thread only.
 */
#include "run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* retry_due() - see run.h. */
bool
retry_due(struct runner *r, struct job *j, bool ok)
{
	if (ok || r->o->retries <= 1 || j->cancelled ||
	    ration_ctx_err(r->dispatch_ctx) != 0)
		return false;
	if (++j->tries >= r->o->retries)
		return false;
	progress_clear(r);
	fprintf(stderr,
		RUN_NAME ": job %u (line %u) failed; attempt %u of "
			 "%u: %s\n",
		j->seq, j->line, j->tries + 1, r->o->retries, j->cmd);
	return true;
}

/* Insert @ns into the sorted run times; the median is their middle. */
static void
add_runtime(struct runner *r, int64_t ns)
{
	if (r->nruntimes == r->runtimes_cap) {
		size_t ncap = r->runtimes_cap ? r->runtimes_cap * 2 : 64;
		int64_t *nv = realloc(r->runtimes, ncap * sizeof(*nv));
		if (nv == NULL)
			return; /* the median then ignores this one */
		r->runtimes = nv;
		r->runtimes_cap = ncap;
	}
	size_t i = r->nruntimes++;
	while (i > 0 && r->runtimes[i - 1] > ns) {
		r->runtimes[i] = r->runtimes[i - 1];
		i--;
	}
	r->runtimes[i] = ns;
}

/* timeout_note_end() - see run.h. */
void
timeout_note_end(struct runner *r, const struct job *j)
{
	if (r->o->timeout_pct > 0 && !j->timed_out && !j->cancelled)
		add_runtime(r, j->end_ns - j->start_ns);
}

/* timeout_check() - see run.h. */
int64_t
timeout_check(struct runner *r, struct job *j, int64_t now)
{
	if (r->o->timeout_pct <= 0 || r->nruntimes == 0 || j->term_sent)
		return RATION_FOREVER;
	double median = (double)r->runtimes[r->nruntimes / 2];
	int64_t due =
		j->start_ns + (int64_t)(median * r->o->timeout_pct / 100.0);
	if (now < due)
		return due;
	/* enforce() takes it from here, as for an absolute timeout. */
	ration_ctx_cancel_with(j->ctx, -ETIMEDOUT);
	return RATION_FOREVER;
}
