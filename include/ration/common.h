/* ration/common.h - what every layer shares: export macro, time, errors.
 *
 * Conventions (contract §1):
 *  - Fallible calls return 0 or a negative errno and leave state unchanged
 *    on error. errno itself is never touched.
 *  - Time is int64_t nanoseconds on CLOCK_MONOTONIC; deadlines are absolute.
 *    RATION_FOREVER (INT64_MAX) means "no deadline".
 */
#ifndef RATION_COMMON_H
#define RATION_COMMON_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RATION_BUILDING) && defined(__GNUC__)
#define RATION_API __attribute__((visibility("default")))
#else
#define RATION_API
#endif

/* No deadline. Any deadline at or above this value never expires. */
#define RATION_FOREVER INT64_MAX

/* Buckets of the wait-time histograms: bucket i counts waits of
 * [2^i, 2^(i+1)) ns (bucket 0 also holds 0 ns); the last bucket is open. */
#define RATION_HIST_BUCKETS 40

/* Errors beyond the classic set, used by the shared and remote backends. */
#ifndef ESTALE
#define ESTALE 116
#endif

/**
 * ration_now() - the current CLOCK_MONOTONIC time in nanoseconds.
 *
 * Return: nanoseconds since an arbitrary fixed point; never decreases.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int64_t ration_now(void);

/**
 * ration_deadline_after() - turn a relative timeout into an absolute deadline.
 * @timeout_ns: nanoseconds from now; negative counts as 0.
 *
 * Return: ration_now() + @timeout_ns, saturating at RATION_FOREVER.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API int64_t ration_deadline_after(int64_t timeout_ns);

/**
 * ration_strerror() - a short English description of an error code.
 * @err: 0, or a negative errno as returned by ration or by a task (a
 *       positive errno is accepted too and treated as its negation).
 *
 * Every POSIX errno reads as strerror() says it in the C locale (-ENOENT
 * "No such file or directory", -EIO "Input/output error"), so a task's
 * own error is not mislabelled. Four codes name ration's meaning too:
 * -E2BIG (request larger than the whole budget), -EPIPE (semaphore closed,
 * pool shut down, group waited), -ESTALE (lease expired), -ETIMEDOUT
 * (deadline passed). What a code means from a backend (shared memory,
 * Redis) is in that backend's docs.
 *
 * Return: a static string; never NULL. 0 gives "Success", codes outside
 * the table "Unknown error". Thread-safe; the string must not be freed.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API const char *ration_strerror(int err);

/**
 * ration_version() - the library version as "MAJOR.MINOR.PATCH".
 *
 * Return: a static string; never NULL.
 *
 * Blocks: no. Allocates: never. Calls user code: never.
 */
RATION_API const char *ration_version(void);

#ifdef __cplusplus
}
#endif

#endif /* RATION_COMMON_H */
