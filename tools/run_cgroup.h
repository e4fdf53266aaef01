/* tools/run_cgroup.h - ration-run: what run_cgroup.c shares with
 * run_cgroup_job.c, and nothing else includes. */
#ifndef RATION_RUN_CGROUP_H
#define RATION_RUN_CGROUP_H

#include "run.h"

/* The interface files that differ between cgroup v2 and v1. */
struct cg_files {
	const char *current, *peak, *limit, *events;
};

/* cg_files() - the interface file names of @cg's version. */
const struct cg_files *cg_files(const struct cgroup *cg);
/* cg_read_text() - a small text file whole into @buf (NUL-terminated,
 * truncated to @len - 1). Return: 0 or a negative errno. */
int cg_read_text(const char *path, char *buf, size_t len);
/* cg_write_text() - @s to the interface file @path in one write.
 * Return: 0 or a negative errno (EBUSY, EACCES...). */
int cg_write_text(const char *path, const char *s);
/* cg_job_dir() - the name of attempt @attempt of job @seq's cgroup in
 * RUN into @buf. Return: its length. */
int cg_job_dir(unsigned seq, unsigned attempt, char *buf, size_t len);
/* cg_path_join() - "@a/@b" in a new string, or NULL (no memory). */
char *cg_path_join(const char *a, const char *b);

#endif /* RATION_RUN_CGROUP_H */
