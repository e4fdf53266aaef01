/* consumer.c - a program outside the project that uses ration the way a
 * user's would: built by scripts/package-check.sh against an installed
 * ration through pkg-config (shared and fully static) and as a meson
 * subproject with default_library=static. */
#include <ration.h>
#include <stdio.h>

static int
task(ration_ctx_t *ctx, void *arg)
{
	return ration_ctx_sleep(ctx, 1000000); /* 1 ms, or the ctx's error */
}

int
main(void)
{
	ration_sem_t *mem;
	ration_group_t *g = NULL;
	int err = ration_sem_new(8 << 20, NULL, &mem);
	if (err != 0)
		return 1;
	err = ration_group_new(NULL, &(ration_group_opts_t){.budget = mem}, &g);
	for (int i = 0; err == 0 && i < 8; i++)
		if (ration_group_go(g, 1 << 20, task, NULL) != 0)
			break;
	if (g != NULL)
		err = ration_group_wait(g);
	ration_group_free(g);
	ration_sem_free(mem);
	printf("consumer: %s (heap measured: %s)\n", ration_strerror(err),
	       ration_account_available() ? "yes" : "no");
	return err != 0;
}
