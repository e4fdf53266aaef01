/* compress.c - the tree walk, the declared weight of a file and the task
 * that compresses it. */
#include "zcompress.h"

#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_estimateCStreamSize_usingCParams */
#include <zstd.h>

#include <errno.h>
#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static struct tree *walk_tree;
static const char *walk_src, *walk_out;
static int walk_level;

/* What compressing a file of @size bytes at @level holds: zstd's own
 * estimate for a stream with parameters fitted to that size, plus the two
 * I/O buffers, each rounded to what the allocator hands out. */
static int64_t
weight_of(int64_t size, int level)
{
	/* 0 would mean "size unknown" to zstd: the largest parameters. */
	unsigned long long hint = size > 0 ? (unsigned long long)size : 1;
	ZSTD_compressionParameters p = ZSTD_getCParams(level, hint, 0);
	int64_t w = ration_account_round(
		(int64_t)ZSTD_estimateCStreamSize_usingCParams(p));
	w += ration_account_round((int64_t)ZSTD_CStreamInSize());
	w += ration_account_round((int64_t)ZSTD_CStreamOutSize());
	return w;
}

static int
visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	if (type != FTW_F || !S_ISREG(st->st_mode))
		return 0;
	struct tree *t = walk_tree;
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 256;
		struct file *f = realloc(t->files, cap * sizeof(*f));
		if (f == NULL)
			return -ENOMEM;
		t->files = f;
		t->cap = cap;
	}
	const char *rel = path + strlen(walk_src);
	size_t dn = strlen(walk_out) + strlen(rel) + 5;
	struct file *f = &t->files[t->n];
	f->src = strdup(path);
	f->dst = malloc(dn);
	if (f->src == NULL || f->dst == NULL) {
		free(f->src);
		free(f->dst);
		return -ENOMEM;
	}
	snprintf(f->dst, dn, "%s%s.zst", walk_out, rel);
	f->size = st->st_size;
	f->weight = weight_of(f->size, walk_level);
	t->bytes += f->size;
	t->n++;
	return 0;
}

int
tree_scan(const char *src, const char *out, int level, struct tree *t)
{
	memset(t, 0, sizeof(*t));
	walk_tree = t;
	walk_src = src;
	walk_out = out;
	walk_level = level;
	int rc = nftw(src, visit, 64, FTW_PHYS);
	if (rc == -1)
		rc = -errno;
	if (rc != 0)
		tree_free(t);
	return rc;
}

void
tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->files[i].src);
		free(t->files[i].dst);
	}
	free(t->files);
	memset(t, 0, sizeof(*t));
}

/* mkdir -p of the directory part of @path. */
static int
mkdirs_for(const char *path)
{
	char *p = strdup(path);
	if (p == NULL)
		return -ENOMEM;
	int rc = 0;
	for (char *s = strchr(p + 1, '/'); s != NULL && rc == 0;
	     s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(p, 0777) != 0 && errno != EEXIST)
			rc = -errno;
		*s = '/';
	}
	free(p);
	return rc;
}

int
tree_mkdirs(const struct tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		int rc = mkdirs_for(t->files[i].dst);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int level;
static struct totals *totals;

void
compress_setup(int lvl, struct totals *tot)
{
	level = lvl;
	totals = tot;
}

/* Stream @in into @out through @cc; 0 or -errno (-EPROTO for a zstd
 * error), or @ctx's error when it ends first. */
static int
stream(ration_ctx_t *ctx, const struct file *f, ZSTD_CCtx *cc, FILE *in,
       FILE *out, int64_t *out_bytes)
{
	size_t in_cap = ZSTD_CStreamInSize(), out_cap = ZSTD_CStreamOutSize();
	char *ibuf = malloc(in_cap), *obuf = malloc(out_cap);
	int rc = ibuf && obuf ? 0 : -ENOMEM;
	bool last = false;
	while (rc == 0 && !last) {
		if ((rc = ration_ctx_err(ctx)) != 0)
			break;
		size_t n = fread(ibuf, 1, in_cap, in);
		if (ferror(in)) {
			rc = -EIO;
			break;
		}
		last = n < in_cap;
		ZSTD_inBuffer ib = {ibuf, n, 0};
		size_t left;
		do {
			ZSTD_outBuffer ob = {obuf, out_cap, 0};
			left = ZSTD_compressStream2(cc, &ob, &ib,
						    last ? ZSTD_e_end
							 : ZSTD_e_continue);
			if (ZSTD_isError(left)) {
				fprintf(stderr, "\rzcompress: %s: zstd: %s\n",
					f->src, ZSTD_getErrorName(left));
				rc = -EPROTO;
				break;
			}
			if (fwrite(obuf, 1, ob.pos, out) != ob.pos) {
				rc = -errno;
				break;
			}
			*out_bytes += (int64_t)ob.pos;
		} while (last ? left != 0 : ib.pos < ib.size);
	}
	free(ibuf);
	free(obuf);
	return rc;
}

int
compress_file(ration_ctx_t *ctx, void *arg)
{
	const struct file *f = arg;
	FILE *in = fopen(f->src, "rb");
	if (in == NULL) {
		atomic_fetch_add_explicit(&totals->failed, 1,
					  memory_order_relaxed);
		return -errno;
	}
	FILE *out = fopen(f->dst, "wb");
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	int rc = out == NULL ? -errno : cc == NULL ? -ENOMEM : 0;
	int64_t out_bytes = 0;
	if (rc == 0) {
		ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
		ZSTD_CCtx_setPledgedSrcSize(cc, (unsigned long long)f->size);
		rc = stream(ctx, f, cc, in, out, &out_bytes);
	}
	ZSTD_freeCCtx(cc);
	fclose(in);
	if (out != NULL && fclose(out) != 0 && rc == 0)
		rc = -errno;
	if (rc != 0 && out != NULL)
		remove(f->dst); /* no half-written output */
	atomic_fetch_add_explicit(rc == 0 ? &totals->done : &totals->failed, 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&totals->in_bytes, rc == 0 ? f->size : 0,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&totals->out_bytes, out_bytes,
				  memory_order_relaxed);
	return rc;
}
