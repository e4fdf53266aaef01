/* tools/run_cgroup.c - ration-run: per-job peak memory from cgroup v2.
 *
 * wait4's ru_maxrss is the peak of the largest single process of a job,
 * so a pipeline of two 1G processes measures 1G. cgroup v2 memory.peak
 * (Linux 5.19) is the peak of everything charged to a cgroup: all the
 * job's processes together, page cache it caused included. So each job
 * runs in a cgroup of its own when ration-run can make one:
 *
 *   BASE/                        the cgroup ration-run started in
 *   BASE/ration-run.PID/         RUN: hands the memory controller on
 *   BASE/ration-run.PID/jobSEQ/  one per started job, removed when reaped
 *   BASE/ration-run.PID.self/    ration-run itself, only when it had to
 *                                leave BASE (see below); moved back at exit
 *
 * cgroup v2 lets a cgroup other than the root give a controller to its
 * children only while no process is in it ("no internal processes"). So
 * when BASE is not the root and memory is not yet on in its
 * subtree_control, ration-run turns it on only if it is alone in BASE,
 * by moving itself into ration-run.PID.self first: the set-up that
 * `systemd-run --scope -p Delegate=yes ration-run ...` gives. Anything
 * else that is missing (a cgroup v1 or hybrid host whose memory controller
 * is on v1, no permission, other processes in BASE, a kernel without
 * memory.peak) makes cg_init() record why and the run measures ru_maxrss:
 * measuring never fails a run.
 *
 * Threads: cg_init() and cg_fini() run in the main thread with no job
 * running; cg_job_open() in the dispatcher, cg_job_peak() in the
 * supervisor, each on its own job's directory. struct cgroup is read-only
 * in between, so no lock.
 */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/**
 * read_text() - read a small text file whole.
 * @path: the file.
 * @buf:  receives the contents, NUL-terminated (truncated to @len - 1).
 * @len:  size of @buf.
 *
 * Return: 0, or a negative errno from open/read.
 */
static int
read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t have = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	while (have + 1 < len &&
	       (n = read(fd, buf + have, len - 1 - have)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = -errno;
			close(fd);
			return err;
		}
		have += (size_t)n;
	}
	buf[have] = '\0';
	close(fd);
	return 0;
}

/**
 * write_text() - write @s to the cgroup interface file @path at once.
 * @path: e.g. "BASE/cgroup.subtree_control".
 * @s:    e.g. "+memory"; the kernel takes the whole write or rejects it.
 *
 * Return: 0, or a negative errno (EBUSY: processes in the way, EACCES...).
 */
static int
write_text(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	size_t len = strlen(s);

	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, s, len);
	int err = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return err;
}

/**
 * has_word() - whether the space-separated @list holds @word.
 * @list: a cgroup.controllers or cgroup.subtree_control text.
 * @word: e.g. "memory".
 *
 * Return: true if @word is one of the words of @list.
 */
static bool
has_word(const char *list, const char *word)
{
	size_t len = strlen(word);

	for (const char *p = list; (p = strstr(p, word)) != NULL; p += len) {
		bool start = p == list || p[-1] == ' ' || p[-1] == '\n';
		bool end = p[len] == '\0' || p[len] == ' ' || p[len] == '\n';
		if (start && end)
			return true;
	}
	return false;
}

/**
 * path_join() - "@a/@b" in a new string.
 * @a: a directory.
 * @b: a name in it.
 *
 * Return: the path, to free(), or NULL when out of memory.
 */
static char *
path_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 2);

	if (p != NULL)
		snprintf(p, la + lb + 2, "%s/%s", a, b);
	return p;
}

/**
 * why() - record why per-job cgroups are not used.
 * @cg:  the state; its why[] receives the text.
 * @fmt: printf format, one string argument.
 * @arg: that argument.
 *
 * Return: 0, so a caller can `return why(...)`: not having a cgroup is no
 * error.
 */
static int
why(struct cgroup *cg, const char *fmt, const char *arg)
{
	snprintf(cg->why, sizeof(cg->why), fmt, arg);
	return 0;
}

/**
 * own_cgroup() - the directory of ration-run's cgroup v2.
 * @cg: on failure, its why[] says what was missing.
 *
 * Joins the "0::PATH" line of /proc/self/cgroup to the mount point of the
 * cgroup2 file system in /proc/self/mountinfo (its fifth field; the
 * fourth, the mount's root, is taken off PATH for a bind mount of a
 * subtree).
 *
 * Return: the path, to free(), or NULL.
 */
static char *
own_cgroup(struct cgroup *cg)
{
	char self[4096], line[4096], rel[4096] = "";
	char *dir = NULL;
	FILE *f;

	if (read_text("/proc/self/cgroup", self, sizeof(self)) < 0) {
		why(cg, "%s", "cannot read /proc/self/cgroup");
		return NULL;
	}
	for (char *p = self; p != NULL && *p != '\0';
	     p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, "0::", 3) == 0) {
			size_t n = strcspn(p + 3, "\n");
			if (n >= sizeof(rel))
				n = sizeof(rel) - 1;
			memcpy(rel, p + 3, n);
			rel[n] = '\0';
			break;
		}
	}
	if (rel[0] != '/') {
		why(cg, "%s", "not in a cgroup v2 hierarchy (cgroup v1 host)");
		return NULL;
	}
	f = fopen("/proc/self/mountinfo", "re");
	if (f == NULL) {
		why(cg, "%s", "cannot read /proc/self/mountinfo");
		return NULL;
	}
	while (dir == NULL && fgets(line, sizeof(line), f) != NULL) {
		char root[1024], mnt[1024];
		const char *sep = strstr(line, " - ");
		if (sep == NULL || strncmp(sep, " - cgroup2 ", 11) != 0)
			continue;
		if (sscanf(line, "%*s %*s %*s %1023s %1023s", root, mnt) != 2)
			continue;
		size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
		if (strncmp(rel, root, rl) != 0)
			continue;
		const char *sub = rel + rl + (rel[rl] == '/');
		dir = *sub != '\0' ? path_join(mnt, sub) : strdup(mnt);
	}
	fclose(f);
	if (dir == NULL)
		why(cg, "%s", "no cgroup2 file system mounted");
	return dir;
}

/**
 * alone_in() - whether ration-run is the only process in cgroup @dir.
 * @dir: a cgroup directory.
 *
 * Return: true if its cgroup.procs lists our pid and no other.
 */
static bool
alone_in(const char *dir)
{
	char *procs = path_join(dir, "cgroup.procs");
	char buf[256];
	bool alone = false;

	if (procs != NULL && read_text(procs, buf, sizeof(buf)) == 0) {
		char *end;
		long pid = strtol(buf, &end, 10);
		alone = pid == (long)getpid() && (*end == '\0' ||
			(*end == '\n' && end[1] == '\0'));
	}
	free(procs);
	return alone;
}

/**
 * enable_memory() - turn the memory controller on for BASE's children.
 * @cg: state with cg->base set; may set cg->self and cg->enabled_base.
 *
 * Return: 0 if BASE's children get memory.* files, else a negative errno
 * with cg->why saying what stood in the way.
 */
static int
enable_memory(struct cgroup *cg)
{
	char buf[512];
	char *ctl = path_join(cg->base, "cgroup.subtree_control");
	int rc;

	if (ctl == NULL)
		return -ENOMEM;
	rc = read_text(ctl, buf, sizeof(buf));
	if (rc == 0 && has_word(buf, "memory")) {
		free(ctl);
		return 0;
	}
	rc = write_text(ctl, "+memory");
	if (rc == -EBUSY && alone_in(cg->base)) {
		/* Step out of BASE so that it has no process of its own. */
		char name[64];
		snprintf(name, sizeof(name), "ration-run.%d.self",
			 (int)getpid());
		cg->self = path_join(cg->base, name);
		char *procs = cg->self ? path_join(cg->self, "cgroup.procs") :
			      NULL;
		if (procs != NULL && mkdir(cg->self, 0755) == 0 &&
		    write_text(procs, "0") == 0)
			rc = write_text(ctl, "+memory");
		free(procs);
	}
	free(ctl);
	if (rc == 0) {
		cg->enabled_base = true;
		return 0;
	}
	snprintf(cg->why, sizeof(cg->why), "cannot enable the memory "
		 "controller in %s: %s%s", cg->base, strerror(-rc),
		 rc == -EBUSY ? " (other processes in that cgroup; try "
		 "systemd-run --scope -p Delegate=yes)" : "");
	return rc;
}

/* cg_init() - see run.h: the jobs' parent cgroup, or the reason
 * there is none in cg->why. */
int
cg_init(struct cgroup *cg)
{
	char buf[512], name[64];

	memset(cg, 0, sizeof(*cg));
	cg->base = own_cgroup(cg);
	if (cg->base == NULL)
		return 0;
	char *ctl = path_join(cg->base, "cgroup.controllers");
	int rc = ctl ? read_text(ctl, buf, sizeof(buf)) : -ENOMEM;
	free(ctl);
	if (rc < 0 || !has_word(buf, "memory"))
		return why(cg, "no memory controller in cgroup v2 at %s "
			   "(hybrid host: memory is on cgroup v1)", cg->base);
	if (enable_memory(cg) < 0)
		return 0;
	snprintf(name, sizeof(name), "ration-run.%d", (int)getpid());
	cg->run = path_join(cg->base, name);
	if (cg->run == NULL || mkdir(cg->run, 0755) < 0) {
		why(cg, "cannot create a cgroup: %s", strerror(errno));
		free(cg->run);
		cg->run = NULL;
		return 0;
	}
	char *peak = path_join(cg->run, "memory.peak");
	char *sub = path_join(cg->run, "cgroup.subtree_control");
	if (peak == NULL || access(peak, R_OK) < 0)
		why(cg, "%s", "no memory.peak (Linux before 5.19)");
	else if (sub == NULL || (rc = write_text(sub, "+memory")) < 0)
		why(cg, "cannot enable memory in a new cgroup: %s",
		    strerror(sub ? -rc : ENOMEM));
	else
		cg->active = true;
	free(peak);
	free(sub);
	return 0;
}

/* cg_job_open() - see run.h: RUN/jobSEQ and its cgroup.procs.
 * Dispatcher thread. */
int
cg_job_open(const struct cgroup *cg, struct job *j)
{
	char name[32];

	j->cg_fd = -1;
	if (!cg->active)
		return 0;
	snprintf(name, sizeof(name), "job%u", j->seq);
	char *dir = path_join(cg->run, name);
	char *procs = dir ? path_join(dir, "cgroup.procs") : NULL;
	int rc = 0;
	if (procs == NULL)
		rc = -ENOMEM;
	else if (mkdir(dir, 0755) < 0 ||
		 (j->cg_fd = open(procs, O_WRONLY | O_CLOEXEC)) < 0)
		rc = -errno;
	if (rc < 0 && rc != -ENOMEM && rc != -EEXIST)
		rmdir(dir);
	free(dir);
	free(procs);
	return rc;
}

/* cg_job_peak() - see run.h: memory.peak of RUN/jobSEQ, then
 * rmdir. Supervisor thread. */
int64_t
cg_job_peak(const struct cgroup *cg, struct job *j)
{
	char name[64], buf[64];
	int64_t peak = -1;

	if (j->cg_fd < 0)
		return -1;
	close(j->cg_fd);
	j->cg_fd = -1;
	snprintf(name, sizeof(name), "job%u/memory.peak", j->seq);
	char *path = path_join(cg->run, name);
	if (path != NULL && read_text(path, buf, sizeof(buf)) == 0) {
		char *end;
		long long v = strtoll(buf, &end, 10);
		if (end != buf && v >= 0)
			peak = v;
	}
	/* Fails (EBUSY) while a process the job left behind lives on; then
	 * cg_fini() tries again. */
	if (path != NULL) {
		path[strlen(path) - strlen("/memory.peak")] = '\0';
		rmdir(path);
	}
	free(path);
	return peak;
}

/**
 * rmdir_jobs() - remove the job cgroups that are left in RUN.
 * @cg: the state.
 * @njobs: the highest job number.
 */
static void
rmdir_jobs(const struct cgroup *cg, size_t njobs)
{
	char name[32];

	for (size_t i = 1; i <= njobs; i++) {
		snprintf(name, sizeof(name), "job%zu", i);
		char *dir = path_join(cg->run, name);
		if (dir != NULL)
			rmdir(dir);
		free(dir);
	}
}

/* cg_fini() - see run.h. Main thread, no job running. */
void
cg_fini(struct cgroup *cg, size_t njobs)
{
	if (cg->run != NULL) {
		rmdir_jobs(cg, njobs);
		rmdir(cg->run);
	}
	if (cg->self != NULL) {
		/* Back where we started: BASE may hold a process again once
		 * it no longer hands memory to children. */
		char *ctl = path_join(cg->base, "cgroup.subtree_control");
		char *procs = path_join(cg->base, "cgroup.procs");
		if (ctl != NULL && procs != NULL && (!cg->enabled_base ||
		    write_text(ctl, "-memory") == 0) &&
		    write_text(procs, "0") == 0)
			rmdir(cg->self);
		free(ctl);
		free(procs);
	}
	free(cg->base);
	free(cg->run);
	free(cg->self);
	memset(cg, 0, sizeof(*cg));
}
