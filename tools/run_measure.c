/* tools/run_measure.c - ration-run: how much memory each running job uses.
 *
 * Measured = the whole job, every process of it, never ration-run's own
 * memory. A job with a cgroup (run_cgroup.c) is measured by its cgroup's
 * usage less the page cache it is not using (its working set); its
 * final peak is the cgroup's, page cache included. A job without one is measured by the summed resident set of its
 * process group (each job is a group of its own), from /proc/PID/stat,
 * one scan of /proc for all such jobs per sample. That sum counts a
 * shared library once per process and misses what a process did between
 * two samples; wait4's ru_maxrss adds the largest process's true peak at
 * the end (see measure_end()).
 *
 * Supervisor thread only.
 */
#include "run.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/**
 * stat_pgrp_rss() - the process group and resident set of process @pid.
 * @pid:  a /proc entry name.
 * @pgrp: receives its process group.
 * @rss:  receives its resident pages.
 *
 * The command name in /proc/PID/stat may hold spaces and parentheses,
 * so the fields are counted from the last ')': state is the first after
 * it, pgrp the third, rss the twenty-second.
 *
 * Return: true if read.
 */
static bool
stat_pgrp_rss(const char *pid, long *pgrp, long *rss)
{
	char path[64], buf[1024];

	snprintf(path, sizeof(path), "/proc/%s/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (p == NULL)
		return false;
	p++;
	for (int field = 0; field < 22; field++) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			return false;
		if (field == 2)
			*pgrp = strtol(p, NULL, 10);
		if (field == 21) {
			*rss = strtol(p, NULL, 10);
			return true;
		}
		p += strcspn(p, " ");
	}
	return false;
}

/**
 * scan_pgroups() - add each process's resident bytes to the job whose
 * process group it is in.
 * @running: the running jobs; those without a cgroup have cur_bytes 0
 *           on entry.
 */
static void
scan_pgroups(struct job *running)
{
	long page = sysconf(_SC_PAGESIZE);
	DIR *d = opendir("/proc");
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		long pgrp, rss;
		if (!isdigit((unsigned char)e->d_name[0]) ||
		    !stat_pgrp_rss(e->d_name, &pgrp, &rss))
			continue;
		for (struct job *j = running; j != NULL; j = j->next) {
			if (j->cg_use_fd < 0 && (long)j->pid == pgrp) {
				j->cur_bytes += (int64_t)rss * page;
				break;
			}
		}
	}
	closedir(d);
}

/* measure_jobs() - see run.h. */
void
measure_jobs(struct runner *r, struct job *running)
{
	bool scan = false;

	for (struct job *j = running; j != NULL; j = j->next) {
		if (j->cg_use_fd >= 0) {
			j->cur_bytes = cg_job_current(&r->cg, j);
		} else {
			j->cur_bytes = 0;
			scan = true;
		}
	}
	r->pgroup_scan = scan;
	if (scan)
		scan_pgroups(running);
	for (struct job *j = running; j != NULL; j = j->next) {
		if (j->cur_bytes > j->peak_bytes)
			j->peak_bytes = j->cur_bytes;
		if (j->weight > 0 && j->peak_bytes > j->weight)
			j->went_over = true;
	}
}

/* measure_end() - see run.h. */
void
measure_end(struct runner *r, struct job *j, const struct rusage *ru)
{
	int64_t oom = -1;
	int64_t peak = cg_job_end(&r->cg, j, &oom);

	if (oom > j->oom_kills)
		j->oom_kills = oom;
	if (peak >= 0) {
		j->peak_bytes = peak;
		return;
	}
	/* No cgroup: the samples' highest sum, or the largest process's
	 * own peak if higher. A child started by vfork carries its
	 * parent's resident peak into ru_maxrss, so a ru_maxrss no higher
	 * than ration-run's own is ration-run's, not the job's. */
	struct rusage self;
	int64_t maxrss = (int64_t)ru->ru_maxrss * 1024;
	if (getrusage(RUSAGE_SELF, &self) == 0 &&
	    maxrss > (int64_t)self.ru_maxrss * 1024 && maxrss > j->peak_bytes)
		j->peak_bytes = maxrss;
}
