/* example_args.h - the flag parsing the small examples share. Each example
 * stays one readable file; only this helper, which teaches nothing about
 * ration, lives here. */
#ifndef RATION_EXAMPLE_ARGS_H
#define RATION_EXAMPLE_ARGS_H

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

/* A whole decimal int, or -1 (every count flag of the examples must be
 * >= 0, so -1 is always rejected by the range check that follows). */
static inline int
arg_int(const char *v)
{
	char *end;
	errno = 0;
	long x = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || x < 0 || x > INT_MAX)
		return -1;
	return (int)x;
}

/* A byte count: "1000", "512K", "64M", "1G" (also "64MiB", "64MB"), or -1
 * if malformed or past INT64_MAX. 0 is accepted: callers check ranges. */
static inline int64_t
parse_size(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || v < 0)
		return -1;
	int shift = 0;
	switch (*end) {
	case 'k':
	case 'K':
		shift = 10;
		end++;
		break;
	case 'm':
	case 'M':
		shift = 20;
		end++;
		break;
	case 'g':
	case 'G':
		shift = 30;
		end++;
		break;
	}
	if (*end == 'i' && shift)
		end++;
	if (*end == 'B')
		end++;
	if (*end != '\0' || v > (INT64_MAX >> shift))
		return -1;
	return (int64_t)v << shift;
}

#endif
