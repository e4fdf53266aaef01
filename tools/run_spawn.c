/* tools/run_spawn.c - ration-run: starting one job.
 *
 * Dispatcher thread: its output files, its ctx (timeout, halt), its
 * cgroup, then /bin/sh -c CMD in a process group of its own, so that a
 * halt, a timeout or an overrun reaches every process of a pipeline.
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/**
 * spawn_fork() - fork and exec /bin/sh -c for a job that has a cgroup.
 * @j:    the job; j->cg_fd is its cgroup.procs.
 * @out:  the child's stdout.
 * @err:  the child's stderr.
 * @argv: sh's argv.
 *
 * glibc 2.36's posix_spawn cannot place a child in a cgroup, so the child
 * joins it itself, before exec, by writing "0" (itself) to cgroup.procs:
 * everything the job allocates is charged there. The child of a threaded
 * process may make async-signal-safe calls only, and makes only those.
 *
 * Return: 0 with j->pid set, or a negative errno.
 */
static int
spawn_fork(struct job *j, int out, int err, char **argv)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		sigset_t none;
		int null_fd;

		(void)!write(j->cg_fd, "0", 1);
		setpgid(0, 0);
		sigaction(SIGPIPE, &dfl, NULL);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		null_fd = open("/dev/null", O_RDONLY);
		if (null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0 ||
		    dup2(out, STDOUT_FILENO) < 0 ||
		    dup2(err, STDERR_FILENO) < 0)
			_exit(127);
		if (null_fd != STDIN_FILENO)
			close(null_fd);
		execve("/bin/sh", argv, environ);
		static const char msg[] = RUN_NAME ": cannot exec /bin/sh\n";
		(void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
		_exit(127);
	}
	/* Also here: kill(-pid) must find the group even if the child has
	 * not run yet. */
	setpgid(pid, pid);
	j->pid = pid;
	return 0;
}

/**
 * spawn_posix() - posix_spawn /bin/sh -c for a job without a cgroup.
 * @j:    the job.
 * @out:  the child's stdout.
 * @err:  the child's stderr.
 * @argv: sh's argv.
 *
 * Return: 0 with j->pid set, or a negative errno.
 */
static int
spawn_posix(struct job *j, int out, int err, char **argv)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int rc;

	posix_spawn_file_actions_init(&fa);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null",
					 O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out, STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, err, STDERR_FILENO);
	/* Own process group: a halt or timeout kills the whole pipeline the
	 * shell started, not only the shell. */
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
						POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	rc = posix_spawn(&j->pid, "/bin/sh", &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	return -rc;
}

/* job_spawn() - see run.h. On error nothing of @j stays open and
 * j->ctx is NULL. */
int
job_spawn(struct runner *r, struct job *j)
{
	int child_fds[2];
	int rc;

	j->out_fd = j->err_fd = -1;
	j->cg_fd = j->cg_use_fd = j->cg_stat_fd = -1;
	j->peak_bytes = j->cur_bytes = -1;
	rc = out_open(r, j, child_fds);
	if (rc < 0)
		return rc;
	/* The job's ctx is a child of the kill ctx: a halt or a signal
	 * cancels it, its own deadline times it out, and the supervisor
	 * polls one fd for both. */
	if (r->o->timeout_ns > 0)
		rc = ration_ctx_with_timeout(r->kill_ctx, r->o->timeout_ns,
					     &j->ctx);
	else
		rc = ration_ctx_with_cancel(r->kill_ctx, &j->ctx);
	if (rc < 0)
		goto fail_out;
	/* No cgroup for this job (none made, or mkdir failed): it still
	 * runs, measured by its process group, unless it was started
	 * early: then its cap is what keeps it within the budget. */
	rc = cg_job_open(&r->cg, j);
	if (rc < 0 && j->short_by > 0) {
		ration_ctx_unref(j->ctx);
		j->ctx = NULL;
		goto fail_out;
	}

	char *argv[] = {"sh", "-c", j->cmd, NULL};
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	j->start_wall = (double)wall.tv_sec + (double)wall.tv_nsec / 1e9;
	j->start_ns = ration_now();
	if (j->cg_fd >= 0)
		rc = spawn_fork(j, child_fds[0], child_fds[1], argv);
	else
		rc = spawn_posix(j, child_fds[0], child_fds[1], argv);
	if (r->o->line_buffer) {
		close(child_fds[0]);
		close(child_fds[1]);
	}
	if (rc < 0) {
		int64_t oom;
		(void)cg_job_end(&r->cg, j, &oom);
		ration_ctx_unref(j->ctx);
		j->ctx = NULL;
		goto fail_out_open;
	}
	return 0;

fail_out:
	if (r->o->line_buffer) {
		close(child_fds[0]);
		close(child_fds[1]);
	}
fail_out_open:
	if (j->out_fd >= 0)
		close(j->out_fd);
	if (j->err_fd >= 0)
		close(j->err_fd);
	j->out_fd = j->err_fd = -1;
	return rc;
}
