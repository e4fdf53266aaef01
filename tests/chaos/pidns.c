/* pidns.c - see pidns.h. unshare(CLONE_NEWPID) moves only the children a
 * process makes afterwards, so a launcher process sits between the runner
 * and each worker: fork() in the launcher returns the worker's pid as the
 * runner sees it, which is what the runner signals. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chaos.h"
#include "pidns.h"

bool
chaos_pidns_permitted(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return false;
	if (pid == 0) {
		if (unshare(CLONE_NEWPID) != 0) {
			printf("skipped: unshare(CLONE_NEWPID): %s (needs "
			       "CAP_SYS_ADMIN or a "
			       "user namespace)\n",
			       strerror(errno));
			fflush(stdout);
			_exit(CHAOS_SKIP);
		}
		pid_t in = fork();
		if (in == 0)
			_exit(getpid() == 1 ? 0 : 1);
		int st;
		_exit(in > 0 && waitpid(in, &st, 0) == in && WIFEXITED(st)
			      ? WEXITSTATUS(st)
			      : 1);
	}
	int st;
	return waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
	       WEXITSTATUS(st) == 0;
}

void
chaos_pidns_launch(struct chaos_run *run, int index)
{
	if (unshare(CLONE_NEWPID) != 0)
		_exit(5);
	pid_t pid = fork();
	if (pid < 0)
		_exit(5);
	if (pid == 0)
		chaos_worker_main(run, index); /* pid 1 of its namespace */
	atomic_store(&run->led->w[index].pid, pid);
	int st;
	while (waitpid(pid, &st, 0) != pid)
		if (errno != EINTR)
			_exit(5);
	if (WIFSIGNALED(st)) {
		signal(WTERMSIG(st), SIG_DFL);
		raise(WTERMSIG(st)); /* end as the worker ended */
	}
	_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 5);
}
