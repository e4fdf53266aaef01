/* tools/run_parse.c - ration-run: sizes, durations, --halt, --memory.
 *
 * Every parser returns 0 or a negative errno and writes *out only on
 * success, so a caller can report the original text in its message.
 */
#include "run.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Splits "1.5G" into the number and the rest; the number is digits with
 * at most one dot, so strtod never sees hex, inf, nan or a sign. */
static int
parse_number(const char *s, double *val, const char **rest)
{
	const char *p = s;
	int digits = 0, dots = 0;

	while (isdigit((unsigned char)*p) || *p == '.') {
		if (*p == '.')
			dots++;
		else
			digits++;
		p++;
	}
	if (digits == 0 || dots > 1)
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end != p || !isfinite(v))
		return -EINVAL;
	*val = v;
	*rest = p;
	return 0;
}

/* parse_size() - see run.h. */
int
parse_size(const char *s, int64_t *out)
{
	double v;
	const char *u;

	if (parse_number(s, &v, &u) < 0)
		return -EINVAL;
	/* Binary units, as free(1) and the kernel count; "4G", "4GB" and
	 * "4GiB" are the same thing, since nobody means 4*10^9 here. */
	double mult = 1;
	const char *p = u;
	switch (toupper((unsigned char)*p)) {
	case 'K':
		mult = 1024.0;
		break;
	case 'M':
		mult = 1024.0 * 1024;
		break;
	case 'G':
		mult = 1024.0 * 1024 * 1024;
		break;
	case 'T':
		mult = 1024.0 * 1024 * 1024 * 1024;
		break;
	default:
		break;
	}
	if (mult > 1) {
		p++;
		if (*p == 'i' || *p == 'I')
			p++;
	}
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p != '\0')
		return -EINVAL;
	double bytes = ceil(v * mult);
	if (bytes > (double)RATION_SEM_MAX)
		return -ERANGE;
	*out = (int64_t)bytes;
	return 0;
}

/* parse_duration() - see run.h. */
int
parse_duration(const char *s, int64_t *out_ns)
{
	double v;
	const char *u;

	if (parse_number(s, &v, &u) < 0)
		return -EINVAL;
	double mult;
	if (strcmp(u, "") == 0 || strcmp(u, "s") == 0)
		mult = 1e9;
	else if (strcmp(u, "ms") == 0)
		mult = 1e6;
	else if (strcmp(u, "m") == 0 || strcmp(u, "min") == 0)
		mult = 60e9;
	else if (strcmp(u, "h") == 0)
		mult = 3600e9;
	else if (strcmp(u, "d") == 0)
		mult = 86400e9;
	else
		return -EINVAL;
	double ns = v * mult;
	if (ns <= 0)
		return -EINVAL;
	if (ns > 9e18)
		return -ERANGE;
	*out_ns = (int64_t)ns;
	return 0;
}

/* parse_timeout() - see run.h. */
int
parse_timeout(const char *s, int64_t *out_ns, double *out_pct)
{
	size_t len = strlen(s);
	double v;
	const char *rest;

	if (len < 2 || s[len - 1] != '%') {
		int64_t ns;
		int rc = parse_duration(s, &ns);
		if (rc == 0) {
			*out_ns = ns;
			*out_pct = 0;
		}
		return rc;
	}
	if (parse_number(s, &v, &rest) < 0 || rest != s + len - 1 || v <= 0 ||
	    v > 1e9)
		return -EINVAL;
	*out_ns = 0;
	*out_pct = v;
	return 0;
}

/* "never" | [now|soon,](fail|success)=N[%] | N (= now,fail=N). */
int
parse_halt(const char *s, struct halt_spec *out)
{
	struct halt_spec h = {.when = HALT_NOW, .n = 1};
	const char *p = s;

	if (strcmp(s, "never") == 0 || strcmp(s, "0") == 0) {
		*out = (struct halt_spec){.when = HALT_NEVER};
		return 0;
	}
	if (strncmp(p, "now,", 4) == 0) {
		p += 4;
	} else if (strncmp(p, "soon,", 5) == 0) {
		h.when = HALT_SOON;
		p += 5;
	}
	if (strncmp(p, "fail=", 5) == 0) {
		p += 5;
	} else if (strncmp(p, "success=", 8) == 0) {
		h.on_success = true;
		p += 8;
	} else if (p != s) {
		return -EINVAL;
	}
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	unsigned long n = strtoul(p, &end, 10);
	if (errno != 0 || n == 0 || n > 1000000000UL)
		return -EINVAL;
	if (*end == '%') {
		if (n > 100)
			return -EINVAL;
		h.percent = true;
		end++;
	}
	if (*end != '\0')
		return -EINVAL;
	h.n = (unsigned)n;
	*out = h;
	return 0;
}

/* mem_available_bytes() - see run.h. */
int64_t
mem_available_bytes(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	char line[256];
	int64_t kib = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "MemAvailable:", 13) == 0) {
			char *end;
			long long v = strtoll(line + 13, &end, 10);
			if (end != line + 13 && v >= 0)
				kib = v;
			break;
		}
	}
	fclose(f);
	return kib < 0 ? -1 : kib * 1024;
}

/* default_slots() - see run.h. */
int64_t
default_slots(void)
{
	cpu_set_t set;
	long n = 0;

	/* nproc(1) counts the affinity mask, not the online CPUs: under
	 * taskset or a container's cpuset, that is what we may use. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		n = CPU_COUNT(&set);
	if (n < 1)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n;
}

/* SIZE, N% of MemAvailable, or 0/none for no memory budget. */
int
parse_budget(const char *s, int64_t *out)
{
	size_t len = strlen(s);

	if (strcmp(s, "none") == 0) {
		*out = 0;
		return 0;
	}
	if (len > 1 && s[len - 1] == '%') {
		char num[32];
		double v;
		const char *rest;
		if (len >= sizeof(num))
			return -EINVAL;
		memcpy(num, s, len - 1);
		num[len - 1] = '\0';
		if (parse_number(num, &v, &rest) < 0 || *rest != '\0' ||
		    v <= 0 || v > 100)
			return -EINVAL;
		int64_t avail = mem_available_bytes();
		if (avail <= 0)
			return -ENOENT;
		*out = (int64_t)((double)avail * v / 100.0);
		return *out > 0 ? 0 : -EINVAL;
	}
	return parse_size(s, out);
}

/* format_size() - see run.h. */
void
format_size(int64_t bytes, char *buf, size_t len)
{
	static const char units[] = "BKMGTP";
	double v = (double)bytes;
	int u = 0;

	if (bytes < 0) {
		snprintf(buf, len, "?");
		return;
	}
	while (v >= 1024.0 && u < 5) {
		v /= 1024.0;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lldB", (long long)bytes);
	else if (v >= 100.0 || v == floor(v))
		snprintf(buf, len, "%.0f%c", v, units[u]);
	else
		snprintf(buf, len, "%.1f%c", v, units[u]);
}

/* looks_like_weight() - whether the first @len bytes of @s are a size
 * ("4G", "512M", "100"): as a program name that is always a mistake. */
bool
looks_like_weight(const char *s, size_t len)
{
	char word[32];
	int64_t v;

	if (len == 0 || len >= sizeof(word) || !isdigit((unsigned char)s[0]))
		return false;
	memcpy(word, s, len);
	word[len] = '\0';
	return parse_size(word, &v) == 0;
}
