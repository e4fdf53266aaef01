/* report.c - what a run shows: the sampler thread (timeline samples every
 * 10 ms and the progress line on stderr), sparklines, the CSV timeline, and
 * the text report, the JSON object and the --compare table on stdout. */
#include "batch_budget.h"

const char *const mode_names[NMODES] = {"budget", "fixed", "unbounded",
					"elastic"};

/* ---- sampling: timeline, progress line ---- */

struct sample *samples;
size_t nsamples, samples_cap;
_Atomic bool sampling;
int64_t run_t0;
long page_size;
ration_sem_t *run_budget;

int64_t
rss_now(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long long size = 0, res = 0;
	if (f == NULL)
		return -1;
	if (fscanf(f, "%lld %lld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res < 0 ? -1 : res * page_size;
}

void
fmt_bytes(char *out, size_t len, int64_t b)
{
	if (b < 0)
		snprintf(out, len, "n/a");
	else if (b >= 10 * GIB)
		snprintf(out, len, "%.0f GiB", (double)b / GIB);
	else if (b >= GIB)
		snprintf(out, len, "%.2f GiB", (double)b / GIB);
	else if (b >= MIB)
		snprintf(out, len, "%.1f MiB", (double)b / MIB);
	else
		snprintf(out, len, "%.0f KiB", (double)b / KIB);
}

void *
sampler(void *argp)
{
	struct sampler_arg *a = argp;
	int64_t last_print = 0;
	while (atomic_load(&sampling)) {
		struct timespec ts = {0, SAMPLE_NS};
		nanosleep(&ts, NULL);
		int64_t now = ration_now();
		struct sample s = {now - run_t0, atomic_load(&in_use),
				   rss_now(), -1, atomic_load(&done)};
		if (run_budget != NULL) {
			ration_sem_stats_t ss;
			ration_sem_stats(run_budget, &ss);
			s.claimed = ss.in_use;
		}
		if (nsamples == samples_cap) {
			size_t cap = samples_cap ? samples_cap * 2 : 1024;
			struct sample *n = realloc(samples, cap * sizeof *n);
			if (n == NULL)
				continue; /* keep running; the timeline gets coarser */
			samples = n, samples_cap = cap;
		}
		samples[nsamples++] = s;

		/* At most 10 lines a second on a terminal, 1 otherwise. */
		int64_t every = a->tty ? 100000000LL : 1000000000LL;
		if (a->show && now - last_print >= every) {
			last_print = now;
			double secs = (double)s.t_ns / 1e9;
			double rate = secs > 0 ? (double)s.done / secs : 0;
			double eta =
				rate > 0 ? (double)(a->c->tasks - s.done) / rate
					 : 0;
			char iu[32], bu[32];
			fmt_bytes(iu, sizeof iu, s.in_use);
			fmt_bytes(bu, sizeof bu, a->c->budget);
			fprintf(stderr,
				"%s[%s] %ld/%ld tasks  in use %s / %s  %.0f "
				"tasks/s  "
				"ETA %.1fs%s",
				a->tty ? "\r\033[K" : "",
				mode_names[a->c->mode], s.done, a->c->tasks, iu,
				bu, rate, eta, a->tty ? "" : "\n");
		}
	}
	if (a->show && a->tty)
		fprintf(stderr, "\r\033[K"); /* the report follows */
	else if (a->show)
		fprintf(stderr, "[%s] %ld/%ld tasks done in %.2f s\n",
			mode_names[a->c->mode], atomic_load(&done), a->c->tasks,
			(double)(ration_now() - run_t0) / 1e9);
	return NULL;
}

/* ▁▂▃▄▅▆▇█ of the per-column maximum of @field against @scale. */
void
sparkline(char *out, int64_t scale, bool rss)
{
	static const char *const bars[] = {"▁", "▂", "▃", "▄",
					   "▅", "▆", "▇", "█"};
	out[0] = '\0';
	if (nsamples == 0 || scale <= 0)
		return;
	size_t cols = nsamples < SPARK_WIDTH ? nsamples : SPARK_WIDTH;
	for (size_t c = 0; c < cols; c++) {
		size_t a = c * nsamples / cols, b = (c + 1) * nsamples / cols;
		int64_t m = 0;
		for (size_t i = a; i < b; i++) {
			int64_t v = rss ? samples[i].rss : samples[i].in_use;
			m = v > m ? v : m;
		}
		int lvl = (int)((double)m * 8 / (double)scale);
		lvl = lvl < 0 ? 0 : lvl > 7 ? 7 : lvl;
		strcat(out, bars[lvl]);
	}
}

int
write_timeline(const char *path, const struct config *c)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return -errno;
	fprintf(f, "t_ms,in_use_bytes,rss_bytes,budget_bytes,done,mode,"
		   "claimed_bytes\n");
	for (size_t i = 0; i < nsamples; i++)
		fprintf(f, "%.1f,%lld,%lld,%lld,%ld,%s,%lld\n",
			(double)samples[i].t_ns / 1e6,
			(long long)samples[i].in_use, (long long)samples[i].rss,
			(long long)c->budget, samples[i].done,
			mode_names[c->mode], (long long)samples[i].claimed);
	return fclose(f) == 0 ? 0 : -EIO;
}

/* ---- output ---- */

void
fmt_ns(char *out, size_t len, int64_t ns)
{
	if (ns >= 1000000000LL)
		snprintf(out, len, "%.2f s", (double)ns / 1e9);
	else if (ns >= 1000000)
		snprintf(out, len, "%.1f ms", (double)ns / 1e6);
	else if (ns >= 1000)
		snprintf(out, len, "%.1f us", (double)ns / 1e3);
	else
		snprintf(out, len, "%lld ns", (long long)ns);
}

void
print_report(const struct config *c, const struct result *r)
{
	char b1[32], b2[32], b3[32], b4[32];
	if (r->mode == MODE_UNBOUNDED)
		printf("batch_budget: mode unbounded, %ld tasks, seed %llu, a "
		       "thread per task\n",
		       r->tasks, (unsigned long long)c->seed);
	else
		printf("batch_budget: mode %s, %ld tasks, seed %llu, %u "
		       "threads\n",
		       mode_names[r->mode], r->tasks,
		       (unsigned long long)c->seed, r->threads);
	printf("  %-22s %ld done, %ld failed, %ld reported\n", "tasks",
	       r->tasks - r->failed, r->failed, r->reports);
	fmt_ns(b1, sizeof b1, r->wall_ns);
	printf("  %-22s %s (%.0f tasks/s; at most %ld running at once)\n",
	       "wall time", b1, (double)r->tasks * 1e9 / (double)r->wall_ns,
	       r->max_running);
	fmt_bytes(b1, sizeof b1, r->max_in_use);
	fmt_bytes(b2, sizeof b2, r->budget);
	fmt_bytes(b3, sizeof b3, r->max_held);
	printf("  %-22s %s of %s (%.0f%%)%s; held by running tasks: %s\n",
	       "max in use", b1, b2,
	       100.0 * (double)r->max_in_use / (double)r->budget,
	       r->max_in_use > r->budget ? " OVER BUDGET" : "", b3);
	printf("  %-22s %.0f%% (time-average of in-use / budget)\n",
	       "budget utilisation", 100.0 * r->utilisation);
	fmt_bytes(b1, sizeof b1, r->peak_rss);
	fmt_bytes(b3, sizeof b3, r->peak_rss - r->budget);
	fmt_bytes(b4, sizeof b4, r->rss_base);
	if (r->peak_rss > r->budget)
		printf("  %-22s %s vs budget %s (%.0f%%: %s over; %s before "
		       "the run)\n",
		       "peak RSS", b1, b2,
		       100.0 * (double)r->peak_rss / (double)r->budget, b3, b4);
	else
		printf("  %-22s %s vs budget %s (%.0f%%; %s before the run)\n",
		       "peak RSS", b1, b2,
		       100.0 * (double)r->peak_rss / (double)r->budget, b4);
	fmt_bytes(b1, sizeof b1, r->declared_max);
	fmt_bytes(b3, sizeof b3, r->declared_total);
	if (r->measured && r->measured_max >= 0) {
		fmt_bytes(b2, sizeof b2, r->measured_max);
		printf("  %-22s declared max %s, measured max %s (jemalloc); "
		       "%s declared "
		       "in all\n",
		       "task peaks", b1, b2, b3);
	} else {
		printf("  %-22s declared max %s, measured n/a (no jemalloc); "
		       "%s declared "
		       "in all\n",
		       "task peaks", b1, b3);
	}
	fmt_ns(b1, sizeof b1, r->wait_p50);
	fmt_ns(b2, sizeof b2, r->wait_p99);
	printf("  %-22s p50 %s, p99 %s (offered until started)\n", "wait", b1,
	       b2);
	if (r->measured)
		printf("  %-22s %ld (measured peak > declared x 1.05 + a size "
		       "class)\n",
		       "under-declared tasks", r->under_declared);
	else
		printf("  %-22s n/a (no jemalloc)\n", "under-declared tasks");
	if (r->mode == MODE_UNBOUNDED) {
		fmt_bytes(b1, sizeof b1, r->safety_net);
		printf("  %-22s %s (half the RAM): %s\n", "safety net", b1,
		       r->safety_engaged ? "ENGAGED, tasks had to wait"
					 : "never reached");
	}
	fmt_bytes(b1, sizeof b1, r->spark_scale);
	printf("  %-22s %s  (█ = %s)\n", "in use over time", r->spark, b1);
	printf("  %-22s %s\n", "RSS over time", r->spark_rss);
	if (r->liars > 0) {
		fmt_bytes(b1, sizeof b1, r->lie_max);
		printf("  %-22s %ld tasks allocate %.1f x what they declare "
		       "(largest lie %s)\n",
		       "liars (--lie)", r->liars, c->lie_f, b1);
	}
	if (r->grouped && (r->mode == MODE_ELASTIC || r->consumed_total > 0)) {
		fmt_bytes(b1, sizeof b1, r->max_overrun);
		fmt_bytes(b2, sizeof b2, r->consumed_total);
		printf("  %-22s largest %s past a task's weight; %s taken past "
		       "weights in all\n",
		       "overruns (elastic)", b1, b2);
	}
	bool rss_checked = !UNDER_SANITIZER && c->rss_slack > 0;
	if (r->ok && r->mode == MODE_ELASTIC)
		printf("  %-22s ok: every task accounted%s%s\n", "checks",
		       elastic_claims_checked(c)
			       ? ", max in use <= budget + largest overrun"
			       : "",
		       rss_checked ? ", peak RSS <= budget + largest overrun + "
				     "slack"
				   : " (RSS not checked)");
	else if (r->ok)
		printf("  %-22s ok: every task accounted%s%s\n", "checks",
		       r->mode == MODE_BUDGET ? ", max in use <= budget" : "",
		       r->mode != MODE_BUDGET ? ""
		       : r->liars > 0 || !rss_checked
			       ? " (RSS not checked)"
			       : ", peak RSS <= budget + slack");
	else
		printf("  %-22s FAILED: %s\n", "checks", r->why);
}

void
print_json_obj(const struct config *c, const struct result *r)
{
	printf("{\"mode\": \"%s\", \"tasks\": %ld, \"failed\": %ld, "
	       "\"wall_ns\": %lld, "
	       "\"budget_bytes\": %lld, \"peak_rss_bytes\": %lld, "
	       "\"max_in_use_bytes\": %lld, "
	       "\"utilisation\": %.4f, \"wait_p50_ns\": %lld, \"wait_p99_ns\": "
	       "%lld, "
	       "\"under_declared\": ",
	       mode_names[r->mode], r->tasks, r->failed, (long long)r->wall_ns,
	       (long long)r->budget, (long long)r->peak_rss,
	       (long long)r->max_in_use, r->utilisation, (long long)r->wait_p50,
	       (long long)r->wait_p99);
	if (r->measured)
		printf("%ld, \"measured_peak_max_bytes\": %lld",
		       r->under_declared, (long long)r->measured_max);
	else
		printf("null, \"measured_peak_max_bytes\": null");
	printf(", \"max_held_bytes\": %lld, \"max_running\": %ld, "
	       "\"declared_max_bytes\": %lld, "
	       "\"declared_total_bytes\": %lld, "
	       "\"rss_before_bytes\": %lld, \"threads\": %u, \"seed\": %llu, ",
	       (long long)r->max_held, r->max_running,
	       (long long)r->declared_max, (long long)r->declared_total,
	       (long long)r->rss_base, r->threads, (unsigned long long)c->seed);
	if (r->grouped)
		printf("\"max_overrun_bytes\": %lld, \"consumed_total\": "
		       "%lld, ",
		       (long long)r->max_overrun, (long long)r->consumed_total);
	else
		printf("\"max_overrun_bytes\": null, \"consumed_total\": "
		       "null, ");
	printf("\"liars\": %ld, \"lie_factor\": %g, \"ok\": %s}", r->liars,
	       r->liars > 0 ? c->lie_f : 1.0, r->ok ? "true" : "false");
}

void
run_label(const struct result *r, char *out, size_t len)
{
	if (r->mode == MODE_FIXED)
		snprintf(out, len, "fixed (K=%u)", r->threads);
	else
		snprintf(out, len, "%s%s", mode_names[r->mode],
			 r->reference ? " honest" : "");
}

void
print_compare(const struct result *rs, int n)
{
	char b[1][32], h[NMODES + NREFS][32];
	const struct result *ref = NULL; /* the honest budget run, if any */
	for (int i = 0; i < n; i++) {
		run_label(&rs[i], h[i], sizeof h[i]);
		if (rs[i].reference && rs[i].mode == MODE_BUDGET)
			ref = &rs[i];
	}
	fmt_bytes(b[0], sizeof b[0], rs[0].budget);
	printf("batch_budget --compare: %ld tasks, budget %s\n", rs[0].tasks,
	       b[0]);
	printf("  %-24s", "");
	for (int i = 0; i < n; i++)
		printf(" %-16s", h[i]);
	printf("\n");
#define ROW(label, ...)                                                        \
	do {                                                                   \
		printf("  %-24s", label);                                      \
		for (int i = 0; i < n; i++) {                                  \
			const struct result *r = &rs[i];                       \
			char cell[40];                                         \
			__VA_ARGS__;                                           \
			printf(" %-16s", cell);                                \
		}                                                              \
		printf("\n");                                                  \
	} while (0)
	ROW("wall time", fmt_ns(cell, sizeof cell, r->wall_ns));
	ROW("tasks/s", snprintf(cell, sizeof cell, "%.0f",
				(double)r->tasks * 1e9 / (double)r->wall_ns));
	if (ref != NULL)
		ROW("tasks/s vs budget honest",
		    snprintf(cell, sizeof cell, "%.0f%%",
			     100.0 * (double)ref->wall_ns /
				     (double)r->wall_ns));
	ROW("peak RSS", fmt_bytes(cell, sizeof cell, r->peak_rss));
	ROW("peak RSS / budget",
	    snprintf(cell, sizeof cell, "%.0f%%",
		     100.0 * (double)r->peak_rss / (double)r->budget));
	ROW("max in use", fmt_bytes(cell, sizeof cell, r->max_in_use));
	ROW("tasks running at once",
	    snprintf(cell, sizeof cell, "<= %ld", r->max_running));
	ROW("budget utilisation",
	    snprintf(cell, sizeof cell, "%.0f%%", 100.0 * r->utilisation));
	ROW("wait p50", fmt_ns(cell, sizeof cell, r->wait_p50));
	ROW("wait p99", fmt_ns(cell, sizeof cell, r->wait_p99));
	ROW("max overrun (group)",
	    r->grouped ? fmt_bytes(cell, sizeof cell, r->max_overrun)
		       : (void)snprintf(cell, sizeof cell, "-"));
	ROW("consumed past weights",
	    r->grouped ? fmt_bytes(cell, sizeof cell, r->consumed_total)
		       : (void)snprintf(cell, sizeof cell, "-"));
	ROW("tasks done/failed", snprintf(cell, sizeof cell, "%ld/%ld",
					  r->tasks - r->failed, r->failed));
	ROW("checks",
	    snprintf(cell, sizeof cell, "%s", r->ok ? "ok" : "FAILED"));
#undef ROW
	for (int i = 0; i < n; i++) {
		fmt_bytes(b[0], sizeof b[0], rs[i].spark_scale);
		printf("  %-14s %s  (█ = %s)\n", h[i], rs[i].spark, b[0]);
		if (!rs[i].ok)
			printf("  %-14s FAILED: %s\n", "", rs[i].why);
	}
}
