/* tools/run_cgroup.c - ration-run: a memory cgroup per job (v2 or v1).
 *
 * wait4's ru_maxrss is the peak of the largest single process of a job,
 * so a pipeline of two 1G processes measures 1G. A memory cgroup counts
 * everything charged to it: all the job's processes together, page cache
 * it caused included. So each job runs in a cgroup of its own when
 * ration-run can make one, and the supervisor reads its usage while it
 * runs (memory.current / v1 memory.usage_in_bytes), caps it
 * (memory.max / v1 memory.limit_in_bytes) and, when it ends, reads its
 * peak (memory.peak / v1 memory.max_usage_in_bytes) and how many of its
 * processes the kernel OOM-killed (oom_kill of memory.events / v1
 * memory.oom_control):
 *
 *   BASE/                        the cgroup ration-run started in
 *   BASE/ration-run.PID/         RUN: the jobs' parent
 *   BASE/ration-run.PID/jobSEQ/  one per started job, removed when reaped
 *   BASE/ration-run.PID.self/    ration-run itself, only when it had to
 *                                leave a v2 BASE (see below); moved back
 *
 * cgroup v2 is tried first. It lets a cgroup other than the root give a
 * controller to its children only while no process is in it ("no
 * internal processes"). So when BASE is not the root and memory is not
 * yet on in its subtree_control, ration-run turns it on only if it is
 * alone in BASE, by moving itself into ration-run.PID.self first: the
 * set-up that `systemd-run --scope -p Delegate=yes ration-run ...` gives.
 * Where the memory controller is on cgroup v1 (a hybrid host), BASE is
 * ration-run's cgroup in the v1 memory hierarchy, which has no such rule.
 * Anything else that is missing (no permission, other processes in a v2
 * BASE, a kernel without memory.peak) makes cg_init() record why and the
 * run measures the jobs' process groups instead (run_measure.c):
 * measuring never fails a run.
 *
 * Threads: cg_init() and cg_fini() run in the main thread with no job
 * running; cg_job_open() in the dispatcher, the rest in the supervisor,
 * each on its own job's directory. struct cgroup is read-only in
 * between, so no lock.
 */
#include "run_cgroup.h"
#include "run.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/**
 * cg_read_text() - read a small text file whole.
 * @path: the file.
 * @buf:  receives the contents, NUL-terminated (truncated to @len - 1).
 * @len:  size of @buf.
 *
 * Return: 0, or a negative errno from open/read.
 */
int
cg_read_text(const char *path, char *buf, size_t len)
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
 * cg_write_text() - write @s to the cgroup interface file @path at once.
 * @path: e.g. "BASE/cgroup.subtree_control".
 * @s:    e.g. "+memory"; the kernel takes the whole write or rejects it.
 *
 * Return: 0, or a negative errno (EBUSY: processes in the way, EACCES...).
 */
int
cg_write_text(const char *path, const char *s)
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
 * cg_path_join() - "@a/@b" in a new string.
 * @a: a directory.
 * @b: a name in it.
 *
 * Return: the path, to free(), or NULL when out of memory.
 */
char *
cg_path_join(const char *a, const char *b)
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
 * has_memory() - whether a comma-separated list names the memory
 * controller.
 * @list: e.g. "cpu,memory" from /proc/self/cgroup, or mount options
 *        "rw,memory".
 * @len:  its length (it need not be NUL-terminated).
 *
 * Return: true if one of its items is "memory".
 */
static bool
has_memory(const char *list, size_t len)
{
	for (size_t i = 0; i < len;) {
		size_t n = strcspn(list + i, ",\n ");
		if (n > len - i)
			n = len - i;
		if (n == 6 && strncmp(list + i, "memory", 6) == 0)
			return true;
		i += n + 1;
	}
	return false;
}

/**
 * own_path() - ration-run's cgroup path in one hierarchy.
 * @self:    /proc/self/cgroup.
 * @version: 2: the "0::PATH" line; 1: the "N:...memory...:PATH" line.
 * @rel:     receives PATH.
 * @len:     size of @rel.
 *
 * Return: true if that line is there with an absolute PATH.
 */
static bool
own_path(const char *self, int version, char *rel, size_t len)
{
	for (const char *p = self; p != NULL && *p != '\0';
	     p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		const char *c1 = strchr(p, ':');
		const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		const char *eol = p + strcspn(p, "\n");
		if (c2 == NULL || c2 > eol)
			continue;
		bool match = version == 2 ? strncmp(p, "0::", 3) == 0
					  : has_memory(c1 + 1,
						       (size_t)(c2 - c1 - 1));
		if (!match || c2[1] != '/')
			continue;
		size_t n = (size_t)(eol - c2 - 1);
		if (n >= len)
			n = len - 1;
		memcpy(rel, c2 + 1, n);
		rel[n] = '\0';
		return true;
	}
	return false;
}

/**
 * own_cgroup() - the directory of ration-run's cgroup in one hierarchy.
 * @cg:      on failure, its why[] says what was missing.
 * @version: 2 for the unified hierarchy, 1 for the v1 memory hierarchy.
 *
 * Joins ration-run's path from /proc/self/cgroup to the mount point of
 * that hierarchy in /proc/self/mountinfo (its fifth field; the fourth,
 * the mount's root, is taken off the path for a bind mount of a
 * subtree).
 *
 * Return: the path, to free(), or NULL.
 */
static char *
own_cgroup(struct cgroup *cg, int version)
{
	char self[4096], line[4096], rel[4096];
	char *dir = NULL;
	FILE *f;

	if (cg_read_text("/proc/self/cgroup", self, sizeof(self)) < 0) {
		why(cg, "%s", "cannot read /proc/self/cgroup");
		return NULL;
	}
	if (!own_path(self, version, rel, sizeof(rel))) {
		why(cg, "%s",
		    version == 2 ? "not in a cgroup v2 hierarchy"
				 : "no memory controller in cgroup v1 or v2");
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
		if (sep == NULL)
			continue;
		if (version == 2 && strncmp(sep, " - cgroup2 ", 11) != 0)
			continue;
		if (version == 1) {
			/* " - cgroup cgroup rw,memory": the super options. */
			const char *opts = strrchr(sep, ' ');
			if (strncmp(sep, " - cgroup ", 10) != 0 ||
			    opts == NULL ||
			    !has_memory(opts + 1, strcspn(opts + 1, "\n")))
				continue;
		}
		if (sscanf(line, "%*s %*s %*s %1023s %1023s", root, mnt) != 2)
			continue;
		size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
		if (strncmp(rel, root, rl) != 0)
			continue;
		const char *sub = rel + rl + (rel[rl] == '/');
		dir = *sub != '\0' ? cg_path_join(mnt, sub) : strdup(mnt);
	}
	fclose(f);
	if (dir == NULL)
		why(cg, "%s",
		    version == 2 ? "no cgroup2 file system mounted"
				 : "no cgroup v1 memory file system mounted");
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
	char *procs = cg_path_join(dir, "cgroup.procs");
	char buf[256];
	bool alone = false;

	if (procs != NULL && cg_read_text(procs, buf, sizeof(buf)) == 0) {
		char *end;
		long pid = strtol(buf, &end, 10);
		alone = pid == (long)getpid() &&
			(*end == '\0' || (*end == '\n' && end[1] == '\0'));
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
	char *ctl = cg_path_join(cg->base, "cgroup.subtree_control");
	int rc;

	if (ctl == NULL)
		return -ENOMEM;
	rc = cg_read_text(ctl, buf, sizeof(buf));
	if (rc == 0 && has_word(buf, "memory")) {
		free(ctl);
		return 0;
	}
	rc = cg_write_text(ctl, "+memory");
	if (rc == -EBUSY && alone_in(cg->base)) {
		/* Step out of BASE so that it has no process of its own. */
		char name[64];
		snprintf(name, sizeof(name), "ration-run.%d.self",
			 (int)getpid());
		cg->self = cg_path_join(cg->base, name);
		char *procs = cg->self ? cg_path_join(cg->self, "cgroup.procs")
				       : NULL;
		if (procs != NULL && mkdir(cg->self, 0755) == 0 &&
		    cg_write_text(procs, "0") == 0)
			rc = cg_write_text(ctl, "+memory");
		free(procs);
	}
	free(ctl);
	if (rc == 0) {
		cg->enabled_base = true;
		return 0;
	}
	snprintf(cg->why, sizeof(cg->why),
		 "cannot enable the memory "
		 "controller in %s: %s%s",
		 cg->base, strerror(-rc),
		 rc == -EBUSY ? " (other processes in that cgroup; try "
				"systemd-run --scope -p Delegate=yes)"
			      : "");
	return rc;
}

static const struct cg_files files_v2 = {
	"memory.current",
	"memory.peak",
	"memory.max",
	"memory.events",
};

static const struct cg_files files_v1 = {
	"memory.usage_in_bytes",
	"memory.max_usage_in_bytes",
	"memory.limit_in_bytes",
	"memory.oom_control",
};

/* cg_files() - the interface file names of @cg's version. */
const struct cg_files *
cg_files(const struct cgroup *cg)
{
	return cg->version == 1 ? &files_v1 : &files_v2;
}

/**
 * make_run() - create RUN, the jobs' parent cgroup, in cg->base.
 * @cg: state with cg->base set; receives cg->run.
 *
 * Return: 0, or a negative errno with cg->why set.
 */
static int
make_run(struct cgroup *cg)
{
	char name[64];

	snprintf(name, sizeof(name), "ration-run.%d", (int)getpid());
	cg->run = cg_path_join(cg->base, name);
	if (cg->run == NULL || mkdir(cg->run, 0755) < 0) {
		int err = cg->run == NULL ? ENOMEM : errno;
		why(cg, "cannot create a cgroup: %s", strerror(err));
		free(cg->run);
		cg->run = NULL;
		return -err;
	}
	return 0;
}

/**
 * init_v2() - per-job cgroups in the unified hierarchy.
 * @cg: zeroed state.
 *
 * Return: 1 if active; 0 if not, with cg->why set and nothing made, so
 * cgroup v1 may be tried; -1 if not, after changes cg_fini() undoes.
 */
static int
init_v2(struct cgroup *cg)
{
	char buf[512];

	cg->version = 2;
	cg->base = own_cgroup(cg, 2);
	if (cg->base == NULL)
		return 0;
	char *ctl = cg_path_join(cg->base, "cgroup.controllers");
	int rc = ctl ? cg_read_text(ctl, buf, sizeof(buf)) : -ENOMEM;
	free(ctl);
	if (rc < 0 || !has_word(buf, "memory")) {
		why(cg, "no memory controller in cgroup v2 at %s", cg->base);
		free(cg->base);
		cg->base = NULL;
		return 0;
	}
	if (enable_memory(cg) < 0 || make_run(cg) < 0)
		return -1;
	char *peak = cg_path_join(cg->run, "memory.peak");
	char *sub = cg_path_join(cg->run, "cgroup.subtree_control");
	if (peak == NULL || access(peak, R_OK) < 0)
		why(cg, "%s", "no memory.peak (Linux before 5.19)");
	else if (sub == NULL || (rc = cg_write_text(sub, "+memory")) < 0)
		why(cg, "cannot enable memory in a new cgroup: %s",
		    strerror(sub ? -rc : ENOMEM));
	else
		cg->active = true;
	free(peak);
	free(sub);
	return cg->active ? 1 : -1;
}

/**
 * init_v1() - per-job cgroups in the cgroup v1 memory hierarchy.
 * @cg: zeroed state.
 *
 * v1 has no "no internal processes" rule: RUN is made right in
 * ration-run's own memory cgroup.
 */
static void
init_v1(struct cgroup *cg)
{
	cg->version = 1;
	cg->base = own_cgroup(cg, 1);
	if (cg->base == NULL || make_run(cg) < 0)
		return;
	char *use = cg_path_join(cg->run, files_v1.current);
	if (use == NULL || access(use, R_OK) < 0)
		why(cg, "no %s in the v1 memory cgroup", files_v1.current);
	else
		cg->active = true;
	free(use);
}

/* cg_init() - see run.h: the jobs' parent cgroup, v2 first, else v1,
 * or the reason there is none in cg->why. */
int
cg_init(struct cgroup *cg)
{
	char why_v2[sizeof(cg->why)];

	memset(cg, 0, sizeof(*cg));
	if (init_v2(cg) != 0)
		return 0;
	memcpy(why_v2, cg->why, sizeof(why_v2));
	memset(cg, 0, sizeof(*cg));
	init_v1(cg);
	if (!cg->active && cg->base == NULL)
		snprintf(cg->why, sizeof(cg->why),
			 "%.250s; no cgroup v1 "
			 "memory hierarchy either",
			 why_v2);
	return 0;
}

/* cg_job_dir() - see run_cgroup.h: "jobSEQ", then "jobSEQ.ATTEMPT". */
int
cg_job_dir(unsigned seq, unsigned attempt, char *buf, size_t len)
{
	int n = attempt == 0 ? snprintf(buf, len, "job%u", seq)
			     : snprintf(buf, len, "job%u.%u", seq, attempt);

	return n < 0 ? 0 : (size_t)n >= len ? (int)len - 1 : n;
}

/**
 * rmdir_jobs() - remove the job cgroups that are left in RUN: every
 * attempt of every job (retries and requeues each had one).
 * @cg: the state.
 *
 * Return: whether one is still busy (a process of it is still dying).
 */
static bool
rmdir_jobs(const struct cgroup *cg)
{
	DIR *d = opendir(cg->run);
	struct dirent *e;
	bool busy = false;

	if (d == NULL)
		return false;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, "job", 3) != 0)
			continue;
		char *dir = cg_path_join(cg->run, e->d_name);
		if (dir != NULL && rmdir(dir) < 0 && errno == EBUSY)
			busy = true;
		free(dir);
	}
	closedir(d);
	return busy;
}

/* cg_fini() - see run.h. Main thread, no job running. */
void
cg_fini(struct cgroup *cg)
{
	if (cg->run != NULL) {
		/* Processes of a job killed as a group may still be dying:
		 * give them up to a second. */
		for (int i = 0; i < 100 && rmdir_jobs(cg); i++) {
			struct timespec ts = {0, 10 * 1000000L};
			nanosleep(&ts, NULL);
		}
		rmdir(cg->run);
	}
	if (cg->self != NULL) {
		/* Back where we started: BASE may hold a process again once
		 * it no longer hands memory to children. */
		char *ctl = cg_path_join(cg->base, "cgroup.subtree_control");
		char *procs = cg_path_join(cg->base, "cgroup.procs");
		if (ctl != NULL && procs != NULL &&
		    (!cg->enabled_base || cg_write_text(ctl, "-memory") == 0) &&
		    cg_write_text(procs, "0") == 0)
			rmdir(cg->self);
		free(ctl);
		free(procs);
	}
	free(cg->base);
	free(cg->run);
	free(cg->self);
	memset(cg, 0, sizeof(*cg));
}
