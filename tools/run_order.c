/* tools/run_order.c - ration-run: --keep-order output.
 *
 * Jobs still start as the budget allows; only their output waits. A job
 * that ends before the jobs ahead of it in the input keeps its output
 * files open (two descriptors) until their turn; each job, started or
 * not, takes its turn once it is done, so one that never runs (weight
 * above the budget) does not hold the others back. Jobs never started
 * (a halt) are passed over at the end.
 *
 * Supervisor thread only; order_flush_rest() after it has ended.
 */
#include "run.h"

#include <unistd.h>

/* Drop the output of an attempt that is not @j's last. */
static void
discard(struct job *j)
{
	if (j->out_fd >= 0)
		close(j->out_fd);
	if (j->err_fd >= 0)
		close(j->err_fd);
	j->out_fd = j->err_fd = -1;
}

/* Pass on the output of every done job whose turn has come. */
static void
flush_ready(struct runner *r, bool skip_unready)
{
	size_t n = jobs_seen(r);

	while (r->order_pos < n) {
		struct job *j = job_at(r, r->order_pos);
		if (!j->order_done && !skip_unready)
			break;
		if (j->order_done)
			out_finish(r, j);
		r->order_pos++;
	}
}

/* order_finish() - see run.h. */
void
order_finish(struct runner *r, struct job *j, bool last, bool retried)
{
	if (retried || (!last && r->o->keep_order)) {
		discard(j);
		return;
	}
	if (!r->o->keep_order) {
		out_finish(r, j);
		return;
	}
	j->order_done = true;
	flush_ready(r, false);
}

/* order_flush_rest() - see run.h. */
void
order_flush_rest(struct runner *r)
{
	if (r->o->keep_order)
		flush_ready(r, true);
}
