/* tools/run_jobs.c - ration-run: the supervisor loop.
 *
 * Locking: r->mu guards the handoff queue (incoming), dispatched,
 * dispatch_done, and the requeue list and settled count (run_sched.c); everything else in struct runner below "Supervisor only"
 * and every job after its handoff belong to the supervisor thread alone.
 * The dispatcher never waits on r->mu for long: it holds it only to link
 * one job.
 *
 * Signals: SIGCHLD, SIGINT, SIGTERM and SIGHUP are blocked in every thread
 * (main blocks them before any thread exists) and read here from a
 * signalfd, so no handler ever runs and nothing needs to be
 * async-signal-safe. Children get an empty mask back at spawn.
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PROGRESS_TTY_NS (250 * 1000000LL)
#define PROGRESS_LOG_NS (1000 * 1000000LL)

/* job_handoff() - see run.h: links @j on r->incoming under r->mu
 * and wakes the supervisor. */
void
job_handoff(struct runner *r, struct job *j)
{
	uint64_t one = 1;

	pthread_mutex_lock(&r->mu);
	j->next = r->incoming;
	r->incoming = j;
	r->dispatched++;
	pthread_mutex_unlock(&r->mu);
	(void)!write(r->wake_fd, &one, sizeof(one));
}

/* check_halt() - apply --halt after a job was counted: cancel the
 * kill ctx (now) or the dispatch ctx (soon) once enough jobs failed or
 * succeeded. Says so on stderr, once. */
static void
check_halt(struct runner *r)
{
	const struct halt_spec *h = &r->o->halt;

	if (h->when == HALT_NEVER || r->halted)
		return;
	size_t count = h->on_success ? r->succeeded : r->failed;
	size_t need = h->n;
	if (h->percent)
		need = (jobs_seen(r) * h->n + 99) / 100;
	if (need == 0)
		need = 1;
	if (count < need)
		return;
	r->halted = true;
	progress_clear(r);
	fprintf(stderr,
		RUN_NAME ": halting after %zu %s job%s (--halt %s,"
			 "%s=%u%s): %s\n",
		count, h->on_success ? "successful" : "failed",
		count == 1 ? "" : "s", h->when == HALT_NOW ? "now" : "soon",
		h->on_success ? "success" : "fail", h->n, h->percent ? "%" : "",
		h->when == HALT_NOW ? "stopping running jobs"
				    : "waiting for running jobs");
	/* now: the kill ctx takes every job ctx and the dispatcher with it;
	 * soon: only the dispatcher stops. */
	if (h->when == HALT_NOW)
		ration_ctx_cancel(r->kill_ctx);
	else
		ration_ctx_cancel(r->dispatch_ctx);
}

/* A job that never ran: its weight is above the budget, or spawn failed. */
static void
finish_unrun(struct runner *r, struct job *j)
{
	struct timespec wall;

	clock_gettime(CLOCK_REALTIME, &wall);
	j->start_wall = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
	j->peak_bytes = -1;
	r->done++;
	r->failed++;
	sched_settled(r);
	progress_clear(r);
	if (j->reject == -E2BIG) {
		char w[16], b[16];
		format_size(j->weight, w, sizeof(w));
		format_size(r->o->budget_bytes, b, sizeof(b));
		fprintf(stderr,
			RUN_NAME ": job %u (line %u): weight %s is "
				 "above the memory budget %s; not run: %s\n",
			j->seq, j->line, w, b, j->cmd);
	} else {
		int err = j->reject != 0 ? j->reject : j->spawn_err;
		fprintf(stderr,
			RUN_NAME ": job %u (line %u): cannot start: "
				 "%s: %s\n",
			j->seq, j->line, strerror(-err), j->cmd);
	}
	joblog_line(r, j, 0.0, -1, 0);
	order_finish(r, j, true, false);
	check_halt(r);
}

/* give_back() - @j's claims (budget before slot: the dispatcher,
 * waiting for the slot, must not find this dead job's weight still
 * counted) and its make token. */
static void
give_back(struct runner *r, struct job *j)
{
	head_start_leave(r, j);
	if (j->consumed > 0)
		ration_sem_release(r->budget, j->consumed);
	r->reserved -= j->reserved;
	j->consumed = j->reserved = 0;
	/* A claim may be 0 by now: the reserve of ramping jobs took it
	 * (ramp_leave()). */
	while (j->nclaims > 0) {
		j->nclaims--;
		if (j->claims[j->nclaims].n > 0)
			ration_sem_release(j->claims[j->nclaims].sem,
					   j->claims[j->nclaims].n);
	}
	js_release(&r->js, j);
}

/* say_overrun() - the loud part: why an attempt of @j was killed or
 * OOM-killed, and whether it comes back. */
static void
say_overrun(struct runner *r, const struct job *j, bool again)
{
	char p[16], w[16], c[16];

	format_size(j->peak_bytes, p, sizeof(p));
	format_size(j->weight, w, sizeof(w));
	format_size(j->cap, c, sizeof(c));
	progress_clear(r);
	if (j->oom_kills > 0)
		fprintf(stderr,
			RUN_NAME ": job %u (line %u) OOM-killed in its "
				 "cgroup at its cap %s (weight %s)",
			j->seq, j->line, c, w);
	else
		fprintf(stderr,
			RUN_NAME ": job %u (line %u) killed: it used %s,"
				 " weight %s, and the budget was full",
			j->seq, j->line, p, w);
	if (again)
		fprintf(stderr, "; requeued with weight %s: %s\n",
			(format_size(overrun_requeue_weight(j), c, sizeof(c)),
			 c),
			j->cmd);
	else
		fprintf(stderr, ": %s\n", j->cmd);
}

/* next_attempt() - make @j, killed for its overrun (or failed, with
 * --retries), ready to be dispatched again with @weight. */
static void
next_attempt(struct job *j, int64_t weight)
{
	j->weight = weight;
	j->attempt++;
	j->pid = 0;
	j->cap = j->held = j->consumed = j->oom_kills = j->kill_at_ns = 0;
	j->peak_bytes = j->cur_bytes = -1;
	j->term_sent = j->kill_sent = j->timed_out = j->cancelled = false;
	j->stopped = j->overrun_killed = j->requeue = j->went_over = false;
	j->at_cap = false;
	j->bypassed = 0;
	j->wstatus = 0;
}

/* note_over() - count @j if it used more than its weight; the worst
 * one is named in the end-of-run warning. */
static void
note_over(struct runner *r, struct job *j)
{
	if (j->weight > 0 && j->peak_bytes > j->weight)
		j->went_over = true;
	if (!j->went_over)
		return;
	char p[16], w[16];
	format_size(j->peak_bytes, p, sizeof(p));
	format_size(j->weight, w, sizeof(w));
	progress_clear(r);
	fprintf(stderr,
		RUN_NAME ": job %u (line %u) used %s, more than its "
			 "weight %s%s: %s\n",
		j->seq, j->line, p, w,
		r->o->strict_weights ? " (failed: --strict-weights)" : "",
		j->cmd);
	r->under_declared++;
	if (r->worst_over == NULL ||
	    (double)j->peak_bytes / (double)j->weight >
		    (double)r->worst_over->peak_bytes /
			    (double)r->worst_over->weight)
		r->worst_over = j;
}

/* finish() - account for reaped job @j: measure it, count it, halt if
 * due, give its claims and make token back, pass its output on, log and
 * learn its peak; or, killed for its overrun under --overrun requeue,
 * give it back to the dispatcher. @wstatus and @ru come from wait4. */
static void
finish(struct runner *r, struct job *j, int wstatus, const struct rusage *ru)
{
	j->end_ns = ration_now();
	/* Stragglers of the group: a timeout, a halt, an OOM kill of one
	 * process of a pipeline. */
	if (j->timed_out || j->cancelled || j->kill_sent)
		kill(-j->pid, SIGKILL);
	j->wstatus = wstatus;
	measure_end(r, j, ru);
	r->running--;
	bool oom = j->oom_kills > 0;
	bool killed = j->overrun_killed || oom;
	if (oom)
		r->oom_killed++;
	bool again = killed && r->o->overrun == OVERRUN_REQUEUE &&
		     j->attempt < RUN_MAX_REQUEUES && !j->cancelled &&
		     ration_ctx_err(r->dispatch_ctx) == 0;
	bool ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0 &&
		  !j->timed_out && !killed;
	timeout_note_end(r, j);
	bool retry = !again && retry_due(r, j, ok);
	if (!again && !retry) {
		r->done++;
		note_over(r, j);
		if (r->o->strict_weights && j->went_over)
			ok = false;
		if (ok)
			r->succeeded++;
		else if (j->cancelled)
			r->cancelled++;
		else
			r->failed++;
		/* Halt before the claims go back: released first, they
		 * would let the dispatcher start the next job before it
		 * learns of the halt. */
		check_halt(r);
	}
	/* Release before copying output, so the next job does not wait
	 * for that. */
	give_back(r, j);

	order_finish(r, j, !again && !retry, retry);
	double runtime = (double)(j->end_ns - j->start_ns) / 1e9;
	int exitval = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
	int sig = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
	if (killed && sig == 0) {
		/* A pipeline whose other processes ended on their own. */
		exitval = -1;
		sig = SIGKILL;
	}
	/* As parallel: one line per job, its last attempt's. */
	if (!retry)
		joblog_line(r, j, runtime, exitval, sig);
	if (j->timed_out) {
		progress_clear(r);
		fprintf(stderr,
			RUN_NAME ": job %u (line %u) timed out after "
				 "%.3gs: %s\n",
			j->seq, j->line, runtime, j->cmd);
	}
	if (killed)
		say_overrun(r, j, again);
	ration_ctx_unref(j->ctx);
	j->ctx = NULL;
	if (again || retry) {
		r->requeues += again;
		next_attempt(j, again ? overrun_requeue_weight(j) : j->weight);
		sched_requeue(r, j);
		return;
	}
	/* A peak that cannot be stored (unmeasured, a command with a
	 * newline) is simply not learnt. */
	if (r->learn != NULL && WIFEXITED(wstatus))
		(void)ration_learn_record(r->learn, j->cmd, j->peak_bytes);
	sched_settled(r);
}

/* on_signal() - SIGINT/SIGTERM/SIGHUP to ration-run: the first stops
 * the run like --halt now (jobs get SIGTERM, then SIGKILL after the
 * grace period); a second one SIGKILLs the @running jobs at once. */
static void
on_signal(struct runner *r, struct job *running, int signo)
{
	if (r->signo == 0) {
		r->signo = signo;
		r->halted = true;
		progress_clear(r);
		fprintf(stderr,
			RUN_NAME ": %s: stopping %zu running job%s "
				 "(again to kill them at once)\n",
			strsignal(signo), r->running,
			r->running == 1 ? "" : "s");
		ration_ctx_cancel_with(r->kill_ctx, -EINTR);
		return;
	}
	for (struct job *j = running; j != NULL; j = j->next) {
		kill(-j->pid, SIGKILL);
		j->kill_sent = true;
	}
}

/* Sends SIGTERM to a job whose ctx is done (timeout, halt, signal) and
 * SIGKILL once its grace period is over. Returns the next kill due. */
static int64_t
enforce(struct runner *r, struct job *running, int64_t now)
{
	int64_t next = RATION_FOREVER;

	for (struct job *j = running; j != NULL; j = j->next) {
		int64_t due = timeout_check(r, j, now);
		if (due < next)
			next = due;
		int err = ration_ctx_err(j->ctx);
		if (!j->term_sent && err != 0) {
			if (err == -ETIMEDOUT)
				j->timed_out = true;
			else
				j->cancelled = true;
			kill(-j->pid, SIGTERM);
			/* A stopped job would not see SIGTERM. */
			if (j->stopped)
				kill(-j->pid, SIGCONT);
			j->stopped = false;
			j->term_sent = true;
			j->kill_at_ns = now + r->o->grace_ns;
		}
		if (j->term_sent && !j->kill_sent) {
			if (now >= j->kill_at_ns) {
				kill(-j->pid, SIGKILL);
				j->kill_sent = true;
			} else if (j->kill_at_ns < next) {
				next = j->kill_at_ns;
			}
		}
	}
	return next;
}

/* Reaps finished jobs; wait4 on each pid, never -1, so children that are
 * not jobs (a sanitizer's helper, say) are left alone. Return: whether
 * one ended. */
static bool
reap(struct runner *r, struct job **running)
{
	struct job **pp = running;
	bool ended = false;

	while (*pp != NULL) {
		struct job *j = *pp;
		int st;
		struct rusage ru;
		pid_t p = wait4(j->pid, &st, WNOHANG, &ru);
		if (p == j->pid) {
			*pp = j->next;
			ramp_leave(r, *running, j);
			finish(r, j, st, &ru);
			ended = true;
			continue;
		}
		if (p < 0 && errno != EINTR) {
			/* Cannot happen for our own child; do not spin. */
			memset(&ru, 0, sizeof(ru));
			*pp = j->next;
			ramp_leave(r, *running, j);
			finish(r, j, 255 << 8, &ru);
			ended = true;
			continue;
		}
		pp = &j->next;
	}
	return ended;
}

/* take_incoming() - move handed-off jobs onto the @running list in
 * dispatch order; rejected or unstartable ones are finished here.
 * Return: whether the dispatcher is done. */
static bool
take_incoming(struct runner *r, struct job **running)
{
	pthread_mutex_lock(&r->mu);
	struct job *in = r->incoming;
	bool ddone = r->dispatch_done;
	r->incoming = NULL;
	pthread_mutex_unlock(&r->mu);

	struct job *rev = NULL;
	while (in != NULL) {
		struct job *next = in->next;
		in->next = rev;
		rev = in;
		in = next;
	}
	struct job **tail = running;
	while (*tail != NULL)
		tail = &(*tail)->next;
	while (rev != NULL) {
		struct job *j = rev;
		rev = rev->next;
		j->next = NULL;
		if (j->reject != 0 || j->spawn_err != 0) {
			finish_unrun(r, j);
			continue;
		}
		r->running++;
		ramp_start(r, j);
		*tail = j;
		tail = &j->next;
	}
	ramp_sync(r, *running);
	return ddone;
}

/* supervise() - see run.h. One poll loop over the signalfd, the wake
 * eventfd, every job's ctx fd (timeout, halt) and, with --line-buffer,
 * its pipes; the timeout is the next SIGKILL or progress redraw due. */
void *
supervise(void *arg)
{
	struct runner *r = arg;
	struct job *running = NULL;
	sigset_t set;
	struct pollfd *pfd = NULL;
	size_t pfd_cap = 0;
	int64_t next_progress = 0;

	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0) {
		fprintf(stderr, RUN_NAME ": signalfd: %s\n", strerror(errno));
		exit(RUN_EXIT_INTERNAL);
	}

	for (;;) {
		/* Each round re-checks everything: cheap next to a fork,
		 * and no event can be missed for having been coalesced. */
		bool ddone = take_incoming(r, &running);
		/* A job started early waits at its cap for the memory an
		 * ending job gives back: raised now, not a sample later. */
		bool ended = reap(r, &running);
		int64_t now = ration_now();
		if (ended && r->head_start)
			r->next_sample_ns = now;
		if (running != NULL && now >= r->next_sample_ns) {
			overrun_tick(r, running);
			r->next_sample_ns = now + r->o->sample_ns;
		}
		int64_t next = enforce(r, running, now);
		if (running != NULL && r->next_sample_ns < next)
			next = r->next_sample_ns;
		if (r->o->line_buffer) {
			for (struct job *j = running; j != NULL; j = j->next) {
				out_pump(r, j, &j->out_fd, &j->out_lb,
					 STDOUT_FILENO, false);
				out_pump(r, j, &j->err_fd, &j->err_lb,
					 STDERR_FILENO, false);
			}
		}
		if (ddone && running == NULL) {
			pthread_mutex_lock(&r->mu);
			bool empty = r->incoming == NULL;
			pthread_mutex_unlock(&r->mu);
			if (empty)
				break;
			continue;
		}
		if (r->o->progress) {
			if (now >= next_progress) {
				progress_draw(r, false);
				next_progress =
					now + (r->progress_tty
						       ? PROGRESS_TTY_NS
						       : PROGRESS_LOG_NS);
			}
			if (next_progress < next)
				next = next_progress;
		}

		size_t want = 2 + r->running * 3;
		if (pfd == NULL || want > pfd_cap) {
			struct pollfd *np =
				realloc(pfd, want * 2 * sizeof(*np));
			if (np == NULL) {
				fprintf(stderr, RUN_NAME ": out of memory\n");
				exit(RUN_EXIT_INTERNAL);
			}
			pfd = np;
			pfd_cap = want * 2;
		}
		size_t n = 0;
		pfd[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = r->wake_fd, .events = POLLIN};
		for (struct job *j = running; j != NULL; j = j->next) {
			int cfd = j->term_sent ? -1 : ration_ctx_fd(j->ctx);
			if (cfd >= 0)
				pfd[n++] = (struct pollfd){.fd = cfd,
							   .events = POLLIN};
			if (r->o->line_buffer) {
				pfd[n++] = (struct pollfd){.fd = j->out_fd,
							   .events = POLLIN};
				pfd[n++] = (struct pollfd){.fd = j->err_fd,
							   .events = POLLIN};
			}
		}
		int timeout_ms = -1;
		if (next != RATION_FOREVER) {
			int64_t ms = (next - now + 999999) / 1000000;
			timeout_ms = ms < 0 ? 0 : ms > 60000 ? 60000 : (int)ms;
		}
		if (poll(pfd, n, timeout_ms) < 0 && errno != EINTR) {
			fprintf(stderr, RUN_NAME ": poll: %s\n",
				strerror(errno));
			exit(RUN_EXIT_INTERNAL);
		}
		struct signalfd_siginfo si;
		while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			if (si.ssi_signo != SIGCHLD)
				on_signal(r, running, (int)si.ssi_signo);
		}
		uint64_t v;
		(void)!read(r->wake_fd, &v, sizeof(v));
	}
	if (r->o->progress)
		progress_draw(r, true);
	free(pfd);
	close(sfd);
	return NULL;
}
