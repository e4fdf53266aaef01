/* tools/tests/memhog.c - a job of known size for the ration-run tests.
 *
 *     memhog MIB [SECONDS [EXIT]]
 *
 * Allocates MIB MiB, touches every page (so it is resident and shows in
 * ru_maxrss), sleeps SECONDS (default 0), then exits with EXIT (default 0).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* main() - allocate and touch MIB MiB, sleep, exit with EXIT. */
int
main(int argc, char **argv)
{
	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: memhog MIB [SECONDS [EXIT]]\n");
		return 2;
	}
	size_t mib = strtoull(argv[1], NULL, 10);
	double secs = argc > 2 ? strtod(argv[2], NULL) : 0;
	int code = argc > 3 ? atoi(argv[3]) : 0;
	size_t len = mib << 20;
	char *p = len ? malloc(len) : NULL;

	if (len && p == NULL) {
		fprintf(stderr, "memhog: cannot allocate %zu MiB\n", mib);
		return 3;
	}
	/* Touch, do not just allocate: untouched pages are not resident. */
	for (size_t i = 0; i < len; i += 4096)
		p[i] = (char)i;
	struct timespec ts = {(time_t)secs,
			      (long)((secs - (double)(time_t)secs) * 1e9)};
	nanosleep(&ts, NULL);
	free(p);
	return code;
}
