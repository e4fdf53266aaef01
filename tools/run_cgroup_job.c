/* tools/run_cgroup_job.c - ration-run: one job's memory cgroup.
 *
 * Made by the dispatcher before the job starts (with its cap), read by
 * the supervisor while it runs (usage, OOM kills) and when it is reaped
 * (peak), then removed. See run_cgroup.c for the layout and the
 * differences between cgroup v2 and v1.
 */
#include "run.h"
#include "run_cgroup.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/**
 * job_file() - "RUN/jobSEQ[.ATTEMPT]/@file" for @j, or the directory
 * itself if @file is NULL.
 * @cg:   the state.
 * @j:    the job.
 * @file: an interface file name, or NULL.
 *
 * A requeued job gets a new directory: the last one may still be busy
 * with processes that are being killed.
 *
 * Return: the path, to free(), or NULL when out of memory.
 */
static char *
job_file(const struct cgroup *cg, const struct job *j, const char *file)
{
	char name[96];
	int n = cg_job_dir(j->seq, j->attempt, name, sizeof(name));

	if (file != NULL)
		snprintf(name + n, sizeof(name) - (size_t)n, "/%s", file);
	return cg_path_join(cg->run, name);
}

/**
 * read_int() - the number in a one-number interface file.
 * @path: the file.
 *
 * Return: the value, or -1 if unreadable.
 */
static int64_t
read_int(const char *path)
{
	char buf[64];
	char *end;

	if (path == NULL || cg_read_text(path, buf, sizeof(buf)) < 0)
		return -1;
	long long v = strtoll(buf, &end, 10);
	return end != buf && v >= 0 ? (int64_t)v : -1;
}

/* cg_job_open() - see run.h: RUN/jobSEQ with its cap, its
 * cgroup.procs and its usage file. Dispatcher thread. */
int
cg_job_open(const struct cgroup *cg, struct job *j)
{
	j->cg_fd = j->cg_use_fd = j->cg_stat_fd = -1;
	if (!cg->active)
		return 0;
	char *dir = job_file(cg, j, NULL);
	char *procs = job_file(cg, j, "cgroup.procs");
	char *use = job_file(cg, j, cg_files(cg)->current);
	char *stat = job_file(cg, j, "memory.stat");
	int rc = 0;
	if (dir == NULL || procs == NULL || use == NULL || stat == NULL) {
		rc = -ENOMEM;
	} else if (mkdir(dir, 0755) < 0) {
		rc = -errno;
	} else {
		if (j->cap > 0)
			rc = cg_job_set_cap(cg, j, j->cap);
		/* v1 can make a job that reaches its cap wait instead of
		 * being OOM-killed, so that ration-run decides: more room,
		 * or a requeue. */
		if (rc == 0 && j->cap > 0 && j->cap_waits && cg->version == 1) {
			char *oc = job_file(cg, j, cg_files(cg)->events);
			rc = oc ? cg_write_text(oc, "1") : -ENOMEM;
			free(oc);
		}
		if (rc == 0 &&
		    (j->cg_fd = open(procs, O_WRONLY | O_CLOEXEC)) < 0)
			rc = -errno;
		if (rc == 0 &&
		    (j->cg_use_fd = open(use, O_RDONLY | O_CLOEXEC)) < 0)
			rc = -errno;
		/* Optional: without it, usage counts all page cache. */
		if (rc == 0)
			j->cg_stat_fd = open(stat, O_RDONLY | O_CLOEXEC);
		if (rc < 0)
			cg_job_close(j);
		if (rc < 0)
			rmdir(dir);
	}
	free(dir);
	free(procs);
	free(use);
	free(stat);
	return rc;
}

/**
 * pread_text() - an open interface file, read again from its start.
 * @fd:  the file.
 * @buf: receives its text, NUL-terminated.
 * @len: size of @buf.
 *
 * Return: true if something was read.
 */
static bool
pread_text(int fd, char *buf, size_t len)
{
	ssize_t n = fd >= 0 ? pread(fd, buf, len - 1, 0) : -1;

	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

/**
 * stat_value() - the number after "@key " at the start of a line of a
 * memory.stat text.
 * @text: the text.
 * @key:  e.g. "inactive_file".
 *
 * Return: the value, or 0 if the key is not there.
 */
static int64_t
stat_value(const char *text, const char *key)
{
	size_t len = strlen(key);

	for (const char *p = text; (p = strstr(p, key)) != NULL; p += len) {
		if ((p == text || p[-1] == '\n') && p[len] == ' ')
			return strtoll(p + len + 1, NULL, 10);
	}
	return 0;
}

/* cg_job_current() - see run.h: usage less inactive page cache, from
 * the usage and memory.stat files read again at offset 0. Supervisor
 * thread. */
int64_t
cg_job_current(const struct cgroup *cg, const struct job *j)
{
	char buf[4096];
	char *end;

	if (!pread_text(j->cg_use_fd, buf, 64))
		return -1;
	long long use = strtoll(buf, &end, 10);
	if (end == buf || use < 0)
		return -1;
	/* Cache the job read once and left is reclaimed when memory is
	 * short; counting it would make any job that reads a big file
	 * look like a liar. The "working set" of container runtimes. */
	if (pread_text(j->cg_stat_fd, buf, sizeof(buf))) {
		int64_t idle =
			stat_value(buf, cg->version == 1 ? "total_inactive_file"
							 : "inactive_file");
		use = idle < use ? use - idle : 0;
	}
	return (int64_t)use;
}

/* cg_job_oom() - see run.h: the "oom_kill N" line of memory.events
 * (v2) or memory.oom_control (v1), and v1's "under_oom". */
int64_t
cg_job_oom(const struct cgroup *cg, const struct job *j, bool *waiting)
{
	char buf[512];
	int64_t n = -1;

	*waiting = false;
	if (j->cg_use_fd < 0)
		return -1;
	char *path = job_file(cg, j, cg_files(cg)->events);
	if (path != NULL && cg_read_text(path, buf, sizeof(buf)) == 0) {
		n = stat_value(buf, "oom_kill");
		*waiting = stat_value(buf, "under_oom") > 0;
	}
	free(path);
	return n;
}

/* cg_job_set_cap() - see run.h. */
int
cg_job_set_cap(const struct cgroup *cg, struct job *j, int64_t bytes)
{
	char v[32];
	char *path = job_file(cg, j, cg_files(cg)->limit);

	snprintf(v, sizeof(v), "%lld", (long long)bytes);
	int rc = path ? cg_write_text(path, v) : -ENOMEM;
	free(path);
	if (rc == 0)
		j->cap = bytes;
	return rc;
}

/* cg_job_close() - see run.h. */
void
cg_job_close(struct job *j)
{
	if (j->cg_fd >= 0)
		close(j->cg_fd);
	if (j->cg_use_fd >= 0)
		close(j->cg_use_fd);
	if (j->cg_stat_fd >= 0)
		close(j->cg_stat_fd);
	j->cg_fd = j->cg_use_fd = j->cg_stat_fd = -1;
}

/* cg_job_end() - see run.h: peak and OOM kills of RUN/jobSEQ, then
 * rmdir. Supervisor thread. */
int64_t
cg_job_end(const struct cgroup *cg, struct job *j, int64_t *oom_kills)
{
	bool waiting;
	*oom_kills = cg_job_oom(cg, j, &waiting);
	if (j->cg_use_fd < 0)
		return -1;
	cg_job_close(j);
	char *path = job_file(cg, j, cg_files(cg)->peak);
	int64_t peak = read_int(path);
	free(path);
	/* Fails (EBUSY) while a process the job left behind lives on; then
	 * cg_fini() tries again. */
	path = job_file(cg, j, NULL);
	if (path != NULL)
		rmdir(path);
	free(path);
	return peak;
}
