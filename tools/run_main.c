/* tools/run_main.c - ration-run: budgeted parallel execution from the shell.
 *
 *     printf '4G\txz -T1 -9 big1\n2G\txz -6 big2\n' | ration-run -m 6G
 *
 * xargs -P, make -j and GNU parallel count jobs; ration-run counts memory.
 * Each job line may declare a weight; the dispatcher (run_sched.c) takes
 * that much from a ration_sem budget and one unit from a slot ration_sem, in
 * input order, before it starts the job, so the declared weights of the
 * jobs running together never exceed the budget. See run.h for the thread
 * model and docs/ration-run.md for the user's view.
 *
 * This file: main(), the run's setup and teardown. The command line is
 * run_options.c's, the summary and exit status run_report.c's.
 */
#include "run.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* setup() - the budget and slot semaphores, the kill and dispatch
 * ctxs, the wake eventfd. Return: 0 or a negative errno. */
static int
setup(struct runner *r)
{
	int rc;

	if (r->o->budget_bytes > 0) {
		ration_sem_opts_t so = {.name = "memory"};
		rc = ration_sem_new(r->o->budget_bytes, &so, &r->budget);
		if (rc < 0)
			return rc;
	}
	if (r->o->slots > 0) {
		ration_sem_opts_t so = {.name = "slots"};
		rc = ration_sem_new(r->o->slots, &so, &r->slots);
		if (rc < 0)
			return rc;
	}
	rc = ration_ctx_with_cancel(NULL, &r->kill_ctx);
	if (rc < 0)
		return rc;
	rc = ration_ctx_with_cancel(r->kill_ctx, &r->dispatch_ctx);
	if (rc < 0)
		return rc;
	r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->wake_fd < 0)
		return -errno;
	/* Monotonic, as runner_wait()'s deadlines are. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&r->cv, &ca) != 0 ? -ENOMEM : 0;
	pthread_condattr_destroy(&ca);
	return rc;
}

/* teardown() - frees everything setup() and main() made. */
static void
teardown(struct runner *r)
{
	ration_ctx_unref(r->dispatch_ctx);
	ration_ctx_unref(r->kill_ctx);
	if (r->budget != NULL)
		ration_sem_free(r->budget);
	if (r->slots != NULL)
		ration_sem_free(r->slots);
	if (r->wake_fd >= 0)
		close(r->wake_fd);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	js_fini(&r->js);
	cg_fini(&r->cg);
	free(r->runtimes);
	ration_learn_free(r->learn);
	free_jobs(r);
	stream_close(r);
	input_free(&r->o->in);
}

/* main() - parse, read and check the job list, then dispatch in this
 * thread while supervise() runs in another; exit status as --help says. */
int
main(int argc, char **argv)
{
	struct run_opts o;
	/* mu is static: reading the input takes it (job_commit()). */
	struct runner r = {
		.o = &o, .wake_fd = -1, .mu = PTHREAD_MUTEX_INITIALIZER};
	int rc;

	options_parse(argc, argv, &o);
	/* Before we open anything: make's pipe fds are checked by number,
	 * and a file of ours must not take the number of one make closed. */
	rc = js_init(&r.js, o.use_jobserver ? getenv("MAKEFLAGS") : NULL);
	if (rc < 0) {
		fprintf(stderr, RUN_NAME ": jobserver: %s\n", strerror(-rc));
		exit(RUN_EXIT_INTERNAL);
	}
	/* make -jN but no access to its tokens: like make, use only the
	 * one token we were started with. */
	if (r.js.unavailable) {
		o.slots = 1;
		o.slots_is_default = false;
	}
	if (o.learn_file != NULL &&
	    (rc = ration_learn_open(o.learn_file, &r.learn)) < 0)
		usage_error("cannot read --learn file: %s",
			    rc == -EPROTO ? "not a learn table, or damaged"
					  : strerror(-rc));
	if (stream_open(&r) < 0) {
		fprintf(stderr, RUN_NAME ": out of memory\n");
		exit(RUN_EXIT_INTERNAL);
	}
	if (r.stream == NULL && read_jobs(&r) < 0)
		exit(RUN_EXIT_USAGE);
	if (o.dry_run) {
		report_dry_run(&r);
		free_jobs(&r);
		input_free(&o.in);
		ration_learn_free(r.learn);
		js_fini(&r.js);
		return 0;
	}
	if (joblog_open(&r) < 0)
		exit(RUN_EXIT_USAGE);
	if (r.resumed_skipped > 0)
		fprintf(stderr,
			RUN_NAME ": %zu job%s done according to %s; "
				 "%zu to run\n",
			r.resumed_skipped, r.resumed_skipped == 1 ? "" : "s",
			o.joblog, r.njobs);

	/* Blocked before any thread exists, so every thread (ours and the
	 * ctx timer thread) inherits the mask and only the supervisor's
	 * signalfd ever sees these. A closed stdout must not kill us
	 * mid-run: jobs would be orphaned holding make tokens. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = setup(&r);
	if (rc < 0) {
		fprintf(stderr, RUN_NAME ": setup: %s\n", ration_strerror(rc));
		exit(RUN_EXIT_INTERNAL);
	}
	if (o.use_cgroup)
		cg_init(&r.cg);
	/* Caps that wait (v1) hold each job to its claim: the claim can
	 * follow the job's use (run_ramp.c). */
	r.ramp = o.ramp && r.budget != NULL && o.overrun == OVERRUN_REQUEUE &&
		 r.cg.active && r.cg.version == 1;
	/* The same caps let a blocked head start below its weight
	 * (run_headstart.c). */
	r.head_start = o.head_start && !r.ramp && r.budget != NULL &&
		       o.overrun == OVERRUN_REQUEUE && r.cg.active &&
		       r.cg.version == 1;
	if (!o.use_cgroup)
		snprintf(r.cg.why, sizeof(r.cg.why), "--no-cgroup");
	r.progress_tty = o.progress && isatty(STDERR_FILENO);
	r.t0_ns = ration_now();

	pthread_t sup;
	rc = pthread_create(&sup, NULL, supervise, &r);
	if (rc != 0) {
		fprintf(stderr, RUN_NAME ": pthread_create: %s\n",
			strerror(rc));
		exit(RUN_EXIT_INTERNAL);
	}
	size_t started = dispatch(&r);
	pthread_join(sup, NULL);
	order_flush_rest(&r);

	report_summary(&r, started);
	if (r.learn != NULL && (rc = ration_learn_save(r.learn)) < 0)
		fprintf(stderr, RUN_NAME ": cannot write --learn file %s: %s\n",
			o.learn_file, strerror(-rc));
	if (r.joblog != NULL)
		fclose(r.joblog);

	int status = report_exit_status(&r);
	teardown(&r);
	return status;
}
