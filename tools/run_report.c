/* tools/run_report.c - ration-run: what it says about a run: the jobs
 * and limits of --dry-run, the end-of-run summary, and the exit status.
 */
#include "run.h"

void
report_dry_run(const struct runner *r)
{
	static const char *const src[] = {"none", "declared", "default",
					  "learned"};
	const struct run_opts *o = r->o;
	char b[16];

	format_size(o->budget_bytes, b, sizeof(b));
	if (o->budget_bytes > 0)
		fprintf(stderr, RUN_NAME ": limits: memory %lld bytes (%s%s), ",
			(long long)o->budget_bytes, b,
			o->budget_is_default ? ", 80% of MemAvailable" : "");
	else
		fprintf(stderr, RUN_NAME ": limits: no memory budget, ");
	if (o->slots > 0)
		fprintf(stderr, "%lld job slot%s%s", (long long)o->slots,
			o->slots == 1 ? "" : "s",
			o->slots_is_default ? " (nproc)" : "");
	else
		fprintf(stderr, "no job-slot limit");
	fprintf(stderr, ", jobserver %s\n",
		r->js.active        ? r->js.desc
		: r->js.unavailable ? "unavailable"
				    : "none");

	for (size_t i = 0; i < r->njobs; i++) {
		const struct job *j = job_at(r, i);
		char w[16];
		format_size(j->weight, w, sizeof(w));
		printf("%u\t%s\t%s%s\t%s\n", j->seq, j->weight ? w : "-",
		       src[j->wsrc],
		       r->o->budget_bytes > 0 && j->weight > r->o->budget_bytes
			       ? ",above-budget"
			       : "",
		       j->cmd);
	}
}

void
report_summary(struct runner *r, size_t started)
{
	char a[16];
	size_t not_started = r->njobs - started;

	if (r->o->report) {
		fprintf(stderr, RUN_NAME ": %zu job%s: %zu ok, %zu failed",
			r->njobs, r->njobs == 1 ? "" : "s", r->succeeded,
			r->failed);
		if (r->cancelled > 0)
			fprintf(stderr, ", %zu stopped", r->cancelled);
		if (not_started > 0)
			fprintf(stderr, ", %zu not started", not_started);
		fprintf(stderr, "; %.2fs\n",
			(double)(ration_now() - r->t0_ns) / 1e9);
		if (r->budget != NULL) {
			ration_sem_stats_t st;
			char b[16];
			ration_sem_stats(r->budget, &st);
			format_size(st.max_in_use, a, sizeof(a));
			format_size(r->o->budget_bytes, b, sizeof(b));
			fprintf(stderr,
				RUN_NAME ": memory budget %s, most "
					 "claimed at once %s (%.0f%%; %s)\n",
				b, a,
				100.0 * (double)st.max_in_use /
					(double)r->o->budget_bytes,
				r->ramp ? "each job's cap, and room for "
					  "ramping "
					  "jobs to reach their weights, oldest "
					  "first"
					: "each job's weight or measured peak, "
					  "whichever is larger");
			if (r->head_starts > 0)
				fprintf(stderr,
					RUN_NAME ": %zu job%s started early, "
						 "capped at the free room\n",
					r->head_starts,
					r->head_starts == 1 ? "" : "s");
		}
		if (r->cg.active)
			fprintf(stderr,
				RUN_NAME ": measured: cgroup v%d "
					 "memory cgroup per job, in %s\n",
				r->cg.version, r->cg.run);
		else
			fprintf(stderr,
				RUN_NAME
				": measured: RSS of each "
				"job's process group (no cgroup: %s)\n",
				r->cg.why);
	} else if (not_started > 0 && r->halted) {
		fprintf(stderr, RUN_NAME ": %zu job%s not started\n",
			not_started, not_started == 1 ? "" : "s");
	}
	/* Always said: a job that uses more than it declared is how a
	 * budget gets overrun, and only the user can fix the weight. */
	if (r->oom_killed > 0 || r->overrun_kills > 0 || r->suspends > 0)
		fprintf(stderr,
			RUN_NAME
			": overruns: %zu OOM kill%s in a job's "
			"own cgroup, %zu job%s killed, %zu requeued, %zu "
			"stopped for lack of room\n",
			r->oom_killed, r->oom_killed == 1 ? "" : "s",
			r->overrun_kills, r->overrun_kills == 1 ? "" : "s",
			r->requeues, r->suspends);
	if (r->under_declared > 0) {
		struct job *w = r->worst_over;
		char c[16];
		format_size(w->weight, a, sizeof(a));
		format_size(w->peak_bytes, c, sizeof(c));
		fprintf(stderr,
			RUN_NAME
			": %s: %zu job%s used more memory "
			"than declared; worst: job %u (line %u) declared %s, "
			"measured %s: %s%s\n",
			r->o->strict_weights ? "error" : "warning",
			r->under_declared, r->under_declared == 1 ? "" : "s",
			w->seq, w->line, a, c, w->cmd,
			r->o->strict_weights ? " (failed: --strict-weights)"
					     : "");
	}
}

int
report_exit_status(const struct runner *r)
{
	int status;
	if (r->signo != 0)
		status = 128 + r->signo;
	else
		status = r->failed > RUN_EXIT_FAILCAP ? RUN_EXIT_FAILCAP
						      : (int)r->failed;
	/* Streamed input: the jobs before the bad record ran. */
	if (r->signo == 0 && r->input_failed)
		status = RUN_EXIT_USAGE;
	return status;
}
