/* ration/learn.h - weights learnt from measured peaks.
 *
 * A declared weight is a guess; a measured peak is a fact. A learn table
 * maps a key (a command line, a task kind, a file type) to the peak memory
 * measured the last times that key ran, and answers "what weight should
 * this key declare next time": the learnt peak plus a margin. The table
 * lives in memory and, if given a path, in a small text file that survives
 * the process:
 *
 *	ration_learn_t *l;
 *	ration_learn_open("weights.tsv", &l);          // missing: empty table
 *	int64_t w = ration_learn_weight(l, "xz -9", 512 << 20);
 *	...run it with weight w, measure its peak...
 *	ration_learn_record(l, "xz -9", peak_bytes);
 *	ration_learn_save(l);                           // temp + fsync + rename
 *	ration_learn_free(l);
 *
 * The file is TSV, one record a line, written whole by ration_learn_save:
 *
 *	# ration learn v1
 *	margin	25                      percent added to a learnt peak
 *	peak	104857600	xz -9 big.tar   bytes, then the key (rest of line)
 *	end	1                           number of peak lines: a truncated
 *	                                file is detected, never half-read
 *
 * A file that does not follow this exactly (another program's file, a
 * truncated or hand-damaged one, numbers out of range, a key twice) is
 * refused with -EPROTO by ration_learn_open, never read in part. A file
 * written by ration-run before this format ("# ration-run learn v1", then
 * "<bytes>\t<command>" lines) is read as well and saved in this format.
 * Why these choices: docs/decisions/012-learn-table.md.
 */
#ifndef RATION_LEARN_H
#define RATION_LEARN_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A table of learnt peaks; opaque, thread-safe. */
typedef struct ration_learn ration_learn_t;

/* Margin added to a learnt peak unless the file says otherwise. */
#define RATION_LEARN_MARGIN_PERCENT 25

/**
 * ration_learn_open() - a learn table, read from @path.
 * @path: the table's file; NULL = in memory only (save does nothing).
 * @out:  the new table, on success.
 *
 * A missing file is an empty table (the first save creates it). The file
 * is read whole and checked before anything is kept: a file that is not
 * a learn table in the format above, or is damaged, fails as a whole.
 *
 * Return: 0, or the first that applies, in this order:
 *   -EINVAL    @out is NULL
 *   -errno     the file exists but cannot be read (-EACCES, -EISDIR, ...)
 *   -EPROTO    the file is not a learn table, or is truncated or damaged
 *   -ENOMEM    out of memory
 * On error *@out is untouched and nothing is left allocated.
 *
 * Blocks: reads the file. Allocates: the table. Calls user code: never.
 */
RATION_API int ration_learn_open(const char *path, ration_learn_t **out);

/**
 * ration_learn_weight() - the weight to declare for @key.
 * @l:        the table; NULL answers @fallback.
 * @key:      what ran (a command line, a task kind); NULL answers @fallback.
 * @fallback: the answer when @key has no learnt peak.
 *
 * The learnt peak of @key plus the table's margin (25% unless the file
 * gives another), at most RATION_SEM_MAX; @fallback when @key was never
 * recorded. Safe to call from any thread, concurrently with record and
 * save.
 *
 * Return: the weight in bytes, or @fallback.
 *
 * Blocks: on the table's lock only. Allocates: never. Calls user code:
 * never.
 */
RATION_API int64_t ration_learn_weight(ration_learn_t *l, const char *key,
				       int64_t fallback);

/**
 * ration_learn_record() - remember that @key just peaked at @peak_bytes.
 * @l:          the table.
 * @key:        what ran; any bytes but a newline, not empty.
 * @peak_bytes: its measured peak, 1..RATION_SEM_MAX.
 *
 * A first record is kept as is. After that a higher peak replaces the
 * learnt one at once (an under-weighted job hurts the whole budget), a
 * lower one lowers it halfway (one small run does not undo the evidence
 * of a big one, but a job that really shrank converges in a few runs).
 * Only memory changes; ration_learn_save() writes the file.
 *
 * Return: 0, or the first that applies, in this order:
 *   -EINVAL    @l or @key NULL, @key empty or containing a newline,
 *              @peak_bytes <= 0 or > RATION_SEM_MAX
 *   -ENOMEM    out of memory (a new key could not be added)
 * On error the table is unchanged.
 *
 * Blocks: on the table's lock only. Allocates: a new key's entry. Calls
 * user code: never.
 */
RATION_API int ration_learn_record(ration_learn_t *l, const char *key,
				   int64_t peak_bytes);

/**
 * ration_learn_save() - write the table to its file, atomically.
 * @l: the table.
 *
 * Writes a temporary file beside the table's file, fsyncs it, renames it
 * over the file and fsyncs the directory: a reader or a crash sees the
 * old file or the new one, never a torn one. Keys recorded by another
 * process since this table was opened are not merged: the last save wins.
 * An in-memory table (opened with a NULL path) has nothing to write.
 *
 * Return: 0, or the first that applies, in this order:
 *   -EINVAL    @l is NULL
 *   -ENOMEM    out of memory
 *   -errno     creating, writing, syncing or renaming failed (-EACCES,
 *              -ENOSPC, -EIO, ...); the old file is then left as it was
 *
 * Blocks: writes and syncs the file (record and weight wait meanwhile).
 * Allocates: a path. Calls user code: never.
 */
RATION_API int ration_learn_save(ration_learn_t *l);

/**
 * ration_learn_free() - free @l (NULL: nothing). Does not save.
 * @l: the table; no other thread may be using it.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API void ration_learn_free(ration_learn_t *l);

#ifdef __cplusplus
}
#endif

#endif /* RATION_LEARN_H */
