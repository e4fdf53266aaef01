/* zcompress.h - what the two halves of examples/zcompress share. */
#ifndef ZCOMPRESS_H
#define ZCOMPRESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ration.h>

struct file {
	char *src;      /* path under the source tree */
	char *dst;      /* path of the .zst under the output tree */
	int64_t size;   /* bytes, from stat */
	int64_t weight; /* declared: zstd's estimate for this size, rounded */
};

struct tree {
	struct file *files;
	size_t n, cap;
	int64_t bytes; /* sum of sizes */
};

/* Running totals, read by the progress line (relaxed atomics). */
struct totals {
	_Atomic long done, failed;
	_Atomic int64_t in_bytes, out_bytes;
};

/* Collect the regular files under @src, mirrored under @out with ".zst"
 * appended, each with its declared weight at @level. 0 or -errno (then
 * @t holds nothing). tree_free() gives back what a scan made. */
int tree_scan(const char *src, const char *out, int level, struct tree *t);

void tree_free(struct tree *t);

/* Make the directories of every dst; 0 or -errno. */
int tree_mkdirs(const struct tree *t);

/* Compress one file (a group task): streams @f->src into @f->dst at the
 * level given to compress_setup(), checking @ctx between chunks. */
int compress_file(ration_ctx_t *ctx, void *arg);

/* Level and totals used by compress_file(). */
void compress_setup(int level, struct totals *tot);

#endif
