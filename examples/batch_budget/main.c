/* batch_budget: a heavy-tailed batch under a memory budget (the main job).
 *
 *     build/examples/batch_budget                    # 2000 tasks, 256 MiB budget
 *     build/examples/batch_budget --compare          # budget vs fixed vs unbounded
 *     build/examples/batch_budget --json --timeline mem.csv
 *     build/examples/batch_budget --help
 *
 * A built-in, seeded synthetic batch: --tasks tasks whose memory needs are
 * heavy-tailed (98% between 1 and 8 MiB, 2% between 8 and 128 MiB). Each
 * task allocates its bytes, fills every word (touching every page), waits
 * as if reading its input (--io-bw), then hashes the whole buffer. Each
 * task's declared bytes are its weight: in --mode budget,
 * ration_group_go() waits until that much of the budget is free, so the
 * bytes held by running tasks never exceed the budget, and peak RSS stays
 * within the budget plus a small fixed overhead (docs/batch_budget.md).
 *
 * The Go program it mirrors is golang.org/x/sync's weighted worker pool
 * with errgroup:
 *     sem := semaphore.NewWeighted(budget)
 *     for _, t := range tasks {
 *         sem.Acquire(ctx, t.bytes)        // FIFO: big tasks do not starve
 *         g.Go(func() error { defer sem.Release(t.bytes); return run(t) })
 *     }
 *     g.Wait()
 * which ration_group_go(g, t->bytes, run_task, t) does in one call, plus
 * what Go cannot say: each task's measured peak heap next to its weight.
 *
 * Modes:
 *   budget     ration group, opts.budget = a byte semaphore of --budget,
 *              budget_bytes = true, weight = declared bytes; --threads
 *              workers and opts.limit = --threads
 *   fixed      the classic worker pool: at most K = online CPUs tasks at a
 *              time, whatever their size
 *   unbounded  every task started at once on its own thread (as `go
 *              task()` would), no budget; a safety net of half the RAM
 *              (a semaphore) and a cap of 4096 live threads stop it from
 *              taking the machine down; the report says if the net engaged
 *   elastic    budget, plus opts.elastic: a running task's claim on the
 *              budget follows what it really allocates, so a task that
 *              lies about its size holds back the next go() instead of
 *              taking the process past the budget; with --backpressure
 *              (opts.backpressure, jemalloc) such a task also waits
 *              inside malloc while the budget is full, unless it is the
 *              oldest
 *
 * --lie P:F makes a seeded fraction P of the tasks allocate F x what they
 * declare (the same tasks in every mode).
 *
 * The program checks (exit 1 if violated): every task ran exactly once and
 * was reported, nothing failed; in budget mode without liars the bytes in
 * use never exceeded the budget (ration_sem_stats max_in_use) and peak RSS
 * stayed within budget + --rss-slack; in elastic mode peak RSS stayed
 * within budget + the largest task's overrun + --rss-slack, and with
 * jemalloc the claims (max in use) within budget + the largest overrun +
 * 64 KiB per running task. Bad flags exit 2.
 *
 * Freed task memory goes back to the OS at once, so RSS follows the bytes
 * in use: with jemalloc (the default build) via malloc_conf below (purge
 * freed pages immediately); with glibc malloc, buffers of 1 MiB and more
 * are mmap'd (M_MMAP_THRESHOLD) and so munmap'd on free.
 */
/*
 * The program is split by concept (docs/batch_budget.md):
 *   main.c      this comment, flags, main() and --compare's child processes
 *   workload.c  the seeded workload and the task body
 *   modes.c     the budget / fixed / unbounded runners and the checks
 *   report.c    sampling, sparklines, timeline CSV, text and JSON output
 *   plot.c      --plot: the SVG picture
 */
#include "batch_budget.h"

#include <malloc.h>
#include <sys/wait.h>

#include "../example_args.h"

/* Read by jemalloc at start-up when it is the process allocator (ignored by
 * glibc): without it, freed pages stay resident for up to 10 s (decay) and
 * RSS would measure jemalloc's cache, not the budget. */
extern const char *malloc_conf;
const char *malloc_conf = "dirty_decay_ms:0,muzzy_decay_ms:0";

void
die_if(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "batch_budget: %s: %s\n", what,
			ration_strerror(rc));
		exit(1);
	}
}

/* ---- flags ---- */

static long long
parse_num(const char *s, long long lo, long long hi)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return lo - 1;
	return v;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: batch_budget [options]\n"
		   "Run a seeded, heavy-tailed batch of memory-hungry tasks "
		   "under a byte budget.\n"
		   "\n"
		   "  --budget SIZE     memory budget, K/M/G suffixes (default "
		   "256M; at least 1M)\n"
		   "  --tasks N         number of tasks (default 2000); a task "
		   "larger than the\n"
		   "                    budget is cut down to the budget\n"
		   "  --threads N       worker threads in budget mode (default "
		   "64)\n"
		   "  --seed S          workload seed (default 1)\n"
		   "  --mode M          budget | elastic | fixed | unbounded "
		   "(default budget)\n"
		   "                      budget:    weight = declared bytes "
		   "on a --budget semaphore\n"
		   "                      elastic:   budget, and a task's "
		   "claim follows the memory it\n"
		   "                                 really allocates (group "
		   "opts.elastic)\n"
		   "                      fixed:     at most K = online CPUs "
		   "tasks at a time\n"
		   "                      unbounded: a thread per task, all at "
		   "once (safety net RAM/2)\n"
		   "  --compare         run every mode, each in a fresh child "
		   "process, side by side\n"
		   "                    (with --lie, then budget and elastic "
		   "again without liars)\n"
		   "  --json            print one JSON object instead of the "
		   "report (with --compare:\n"
		   "                    {\"compare\": [budget, fixed, "
		   "unbounded, elastic]}, with --lie\n"
		   "                    then the two honest runs)\n"
		   "  --timeline FILE   write in-use/RSS samples (every 10 ms) "
		   "as CSV; with --compare\n"
		   "                    one file per mode: FILE with "
		   "-budget/-fixed/-unbounded inserted\n"
		   "  --lie P:F         a seeded fraction P of the tasks "
		   "(0..1) allocate F x what\n"
		   "                    they declare (the same tasks in every "
		   "mode), e.g. 0.2:3\n"
		   "  --plot FILE.svg   draw in-use, claimed and RSS over "
		   "time, one panel per mode\n"
		   "  --backpressure    elastic runs: a task past its claim "
		   "waits inside malloc\n"
		   "                    while the budget is full, unless it "
		   "is the oldest (group\n"
		   "                    opts.backpressure; needs jemalloc)\n"
		   "  --progress        progress line on stderr even when it "
		   "is not a terminal\n"
		   "  --io-bw SIZE      simulated input read speed per task, "
		   "bytes/s (default 512M;\n"
		   "                    0 = no I/O wait, pure CPU)\n"
		   "  --rss-slack SIZE  budget mode fails if peak RSS > budget "
		   "+ this (default 32M;\n"
		   "                    0 = do not check)\n"
		   "  --help            this text\n"
		   "\n"
		   "Exit status: 0 ok, 1 a check failed (see the report), 2 "
		   "bad usage.\n");
}

_Noreturn static void
bad_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "batch_budget: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'batch_budget --help'.\n");
	exit(2);
}

static void
parse_args(int argc, char **argv, struct config *c)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		bool flag = !strcmp(a, "--compare") || !strcmp(a, "--json") ||
			    !strcmp(a, "--progress") ||
			    !strcmp(a, "--backpressure") ||
			    !strcmp(a, "--help") || !strcmp(a, "-h");
		const char *v = NULL;
		if (!flag) {
			static const char *const with_value[] = {
				"--budget", "--tasks",     "--threads",
				"--seed",   "--mode",      "--timeline",
				"--io-bw",  "--rss-slack", "--lie",
				"--plot",
			};
			if (strncmp(a, "--", 2) != 0)
				bad_usage("unexpected argument '%s'", a);
			const char *eq = strchr(a, '=');
			static char name[64];
			if (eq != NULL) { /* --budget=256M */
				snprintf(name, sizeof name, "%.*s",
					 (int)(eq - a), a);
				v = eq + 1;
				a = name;
			}
			bool known = false;
			for (size_t k = 0;
			     k < sizeof with_value / sizeof *with_value; k++)
				known |= !strcmp(a, with_value[k]);
			if (!known &&
			    (!strcmp(a, "--compare") || !strcmp(a, "--json") ||
			     !strcmp(a, "--progress") ||
			     !strcmp(a, "--backpressure")))
				bad_usage("option '%s' takes no value", a);
			if (!known)
				bad_usage("unknown option '%s'", a);
			if (v != NULL) {
				/* value given after '=' */
			} else if (i + 1 < argc) {
				v = argv[++i];
			} else {
				bad_usage("option '%s' needs a value", a);
			}
		}
		if (v == NULL)
			v = ""; /* a flag without a value: never read below */
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			exit(0);
		} else if (!strcmp(a, "--compare")) {
			c->compare = true;
		} else if (!strcmp(a, "--json")) {
			c->json = true;
		} else if (!strcmp(a, "--progress")) {
			c->progress = true;
		} else if (!strcmp(a, "--backpressure")) {
			c->backpressure = true;
		} else if (!strcmp(a, "--budget")) {
			c->budget = parse_size(v);
			if (c->budget < MIB || c->budget > RATION_SEM_MAX)
				bad_usage("--budget: '%s' is not a size of at "
					  "least 1M "
					  "(e.g. 256M, 2G)",
					  v);
		} else if (!strcmp(a, "--tasks")) {
			c->tasks = (long)parse_num(v, 1, 10000000);
			if (c->tasks < 1)
				bad_usage("--tasks: '%s' is not a number in "
					  "1..10000000",
					  v);
		} else if (!strcmp(a, "--threads")) {
			c->threads = (unsigned)parse_num(v, 1, 4096);
			if (c->threads < 1)
				bad_usage("--threads: '%s' is not a number in "
					  "1..4096",
					  v);
		} else if (!strcmp(a, "--seed")) {
			char *end;
			errno = 0;
			c->seed = strtoull(v, &end, 0);
			if (errno != 0 || end == v || *end != '\0' || *v == '-')
				bad_usage("--seed: '%s' is not an unsigned "
					  "number",
					  v);
		} else if (!strcmp(a, "--mode")) {
			if (!strcmp(v, "budget"))
				c->mode = MODE_BUDGET;
			else if (!strcmp(v, "fixed"))
				c->mode = MODE_FIXED;
			else if (!strcmp(v, "unbounded"))
				c->mode = MODE_UNBOUNDED;
			else if (!strcmp(v, "elastic"))
				c->mode = MODE_ELASTIC;
			else
				bad_usage("--mode: '%s' is not one of budget, "
					  "elastic, fixed, "
					  "unbounded",
					  v);
		} else if (!strcmp(a, "--timeline")) {
			if (*v == '\0')
				bad_usage("--timeline: empty file name%s", "");
			c->timeline = v;
		} else if (!strcmp(a, "--lie")) {
			char *end;
			c->lie_p = strtod(v, &end);
			if (end == v || *end != ':' ||
			    !(c->lie_p >= 0 && c->lie_p <= 1))
				bad_usage("--lie: '%s' is not P:F with P in "
					  "0..1 (e.g. 0.2:3)",
					  v);
			const char *f = end + 1;
			c->lie_f = strtod(f, &end);
			if (end == f || *end != '\0' ||
			    !(c->lie_f > 0 && c->lie_f <= 64))
				bad_usage("--lie: '%s' is not P:F with F in "
					  "(0, 64] (e.g. 0.2:3)",
					  v);
		} else if (!strcmp(a, "--plot")) {
			if (*v == '\0')
				bad_usage("--plot: empty file name%s", "");
			c->plot = v;
		} else if (!strcmp(a, "--io-bw")) {
			c->io_bw = parse_size(v);
			if (c->io_bw < 0)
				bad_usage("--io-bw: '%s' is not a size per "
					  "second "
					  "(e.g. 512M, 0)",
					  v);
		} else if (!strcmp(a, "--rss-slack")) {
			c->rss_slack = parse_size(v);
			if (c->rss_slack < 0)
				bad_usage("--rss-slack: '%s' is not a size "
					  "(e.g. 32M, 0)",
					  v);
		} else {
			bad_usage("unknown option '%s'", a);
		}
	}
}

static bool
write_all(int fd, const void *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = write(fd, (const char *)buf + off, len - off);
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	return true;
}

static bool
read_all(int fd, void *buf, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = read(fd, (char *)buf + off, len - off);
		if (n <= 0)
			return false;
		off += (size_t)n;
	}
	return true;
}

static void
plot_or_warn(const struct config *c, const struct result *rs,
	     struct sample *const *smp, const size_t *ns, int n)
{
	int rc = write_plot(c->plot, c, rs, smp, ns, n);
	if (rc != 0)
		fprintf(stderr, "batch_budget: %s: %s\n", c->plot,
			strerror(-rc));
}

/* "mem.csv" + "fixed" -> "mem-fixed.csv" */
static char *
timeline_name(const char *path, const char *mode)
{
	size_t len = strlen(path) + strlen(mode) + 2;
	char *out = malloc(len);
	if (out == NULL)
		die_if(-ENOMEM, "malloc");
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	if (dot == NULL || (slash != NULL && dot < slash))
		dot = path + strlen(path);
	snprintf(out, len, "%.*s-%s%s", (int)(dot - path), path, mode, dot);
	return out;
}

int
main(int argc, char **argv)
{
	struct config c = {
		.budget = 256 * MIB,
		.io_bw = 512 * MIB,
		.rss_slack = 32 * MIB,
		.tasks = 2000,
		.threads = 64,
		.seed = 1,
		.mode = MODE_BUDGET,
	};
	parse_args(argc, argv, &c);
	page_size = sysconf(_SC_PAGESIZE);
	/* glibc malloc: every task buffer (>= 1 MiB) is its own mmap, so free()
	 * gives it straight back to the OS. Without this, glibc's dynamic
	 * threshold rises after the first free and buffers up to 32 MiB would
	 * stay in the heap. (jemalloc: see malloc_conf above.) */
	mallopt(M_MMAP_THRESHOLD, 1 << 20);

	if (!c.compare) {
		struct result r;
		run(&c, &r);
		if (c.json) {
			print_json_obj(&c, &r);
			printf("\n");
		} else {
			print_report(&c, &r);
		}
		if (c.plot != NULL)
			plot_or_warn(&c, &r, &samples, &nsamples, 1);
		free(samples);
		return r.ok ? 0 : 1;
	}

	/* --compare: each mode in its own child, so each gets a fresh process
	 * (ru_maxrss is a high-water mark that never goes down). No thread of
	 * ours exists yet, so fork() is safe. A child sends its result, then
	 * its samples (count, array) for --plot. With --lie, the same
	 * workload without liars follows in budget and elastic mode: the
	 * honest run that the lying elastic run's throughput is measured
	 * against, in the same session, right after it. */
	struct result rs[NMODES + NREFS];
	struct sample *smp[NMODES + NREFS] = {0};
	size_t ns[NMODES + NREFS] = {0};
	int nruns = c.lie_p > 0 ? NMODES + NREFS : NMODES;
	int ok = 1;
	for (int m = 0; m < nruns; m++) {
		bool reference = m >= NMODES;
		enum mode mode = !reference    ? (enum mode)m
				 : m == NMODES ? MODE_BUDGET
					       : MODE_ELASTIC;
		char label[32];
		int fds[2];
		if (pipe(fds) != 0)
			die_if(-errno, "pipe");
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			die_if(-errno, "fork");
		if (pid == 0) {
			close(fds[0]);
			struct config cc = c;
			cc.mode = mode;
			if (reference)
				cc.lie_p = 0;
			if (c.timeline != NULL)
				cc.timeline = timeline_name(
					c.timeline,
					reference ? (mode == MODE_BUDGET
							     ? "budget-honest"
							     : "elastic-honest")
						  : mode_names[mode]);
			struct result r;
			run(&cc, &r);
			r.reference = reference;
			bool sent =
				write_all(fds[1], &r, sizeof r) &&
				write_all(fds[1], &nsamples, sizeof nsamples) &&
				write_all(fds[1], samples,
					  nsamples * sizeof *samples);
			_exit(sent ? 0 : 3);
		}
		close(fds[1]);
		bool got =
			read_all(fds[0], &rs[m], sizeof rs[m]) &&
			read_all(fds[0], &ns[m], sizeof ns[m]) &&
			(smp[m] = malloc(ns[m] * sizeof *smp[m] + 1)) != NULL &&
			read_all(fds[0], smp[m], ns[m] * sizeof *smp[m]);
		close(fds[0]);
		int status;
		waitpid(pid, &status, 0);
		if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr,
				"batch_budget: the %s%s run died (status %d)\n",
				mode_names[mode], reference ? " honest" : "",
				status);
			return 1;
		}
		run_label(&rs[m], label, sizeof label);
		if (!c.json)
			fprintf(stderr, "batch_budget: %s done in %.2f s\n",
				label, (double)rs[m].wall_ns / 1e9);
		ok &= rs[m].ok;
	}
	if (c.json) {
		printf("{\"compare\": [");
		for (int m = 0; m < nruns; m++) {
			fputs(m ? ", " : "", stdout);
			print_json_obj(&c, &rs[m]);
		}
		printf("]}\n");
	} else {
		print_compare(rs, nruns);
	}
	if (c.plot != NULL)
		plot_or_warn(&c, rs, smp, ns, nruns);
	for (int m = 0; m < nruns; m++)
		free(smp[m]);
	return ok ? 0 : 1;
}
