/* test_ctx_helpers.c - ration_ctx_sleep() and the signal ctx, with real
 * signals sent to this process. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

#include <ration.h>

#include "helpers.h"

/* ---- sleep -------------------------------------------------------------- */

START_TEST(test_sleep_returns_0_after_ns)
{
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	int64_t t0 = ration_now();

	ck_assert_int_eq(ration_ctx_sleep(ctx, 20 * MS), 0);

	int64_t took = ration_now() - t0;
	ck_assert_int_ge(took, 20 * MS);
	ck_assert_int_lt(took, 20 * MS + TEST_LATE_NS);
	ck_assert_int_eq(ration_ctx_sleep(NULL, 1 * MS), 0);
	ck_assert_int_eq(ration_ctx_sleep(NULL, -5), 0);
	ration_ctx_unref(ctx);
}
END_TEST

static void *
cancel_later(void *arg)
{
	sleep_ns(20 * MS);
	ration_ctx_cancel(arg);
	return NULL;
}

START_TEST(test_sleep_ends_at_cancel)
{
	ration_ctx_t *ctx;
	pthread_t t;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &ctx), 0);
	ck_assert_int_eq(pthread_create(&t, NULL, cancel_later, ctx), 0);
	int64_t t0 = ration_now();

	ck_assert_int_eq(ration_ctx_sleep(ctx, 3 * TEST_WAIT_NS), -ECANCELED);

	ck_assert_int_lt(ration_now() - t0, TEST_WAIT_NS);
	pthread_join(t, NULL);
	ck_assert_int_eq(ration_ctx_sleep(ctx, 0),
			 -ECANCELED); /* already done */
	ration_ctx_unref(ctx);
}
END_TEST

START_TEST(test_sleep_ends_at_ctx_deadline)
{
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_timeout(NULL, 20 * MS, &ctx), 0);
	int64_t t0 = ration_now();

	ck_assert_int_eq(ration_ctx_sleep(ctx, 3 * TEST_WAIT_NS), -ETIMEDOUT);

	ck_assert_int_ge(ration_now() - t0, 20 * MS);
	ck_assert_int_lt(ration_now() - t0, 20 * MS + TEST_LATE_NS);
	ration_ctx_unref(ctx);
}
END_TEST

/* ---- signals ------------------------------------------------------------ */

static sigset_t
set_of(int a, int b)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, a);
	if (b != 0)
		sigaddset(&set, b);
	return set;
}

/* Wait (bounded) for @ctx to be done; its error. */
static int
done_within(ration_ctx_t *ctx)
{
	ration_ctx_t *bounded;
	ck_assert_int_eq(ration_ctx_with_timeout(ctx, TEST_WAIT_NS, &bounded),
			 0);
	(void)ration_ctx_wait(bounded);
	ration_ctx_unref(bounded);
	return ration_ctx_err(ctx);
}

START_TEST(test_sigint_cancels_and_is_named)
{
	sigset_t set = set_of(SIGINT, SIGTERM);
	ration_ctx_t *ctx, *child;
	ck_assert_int_eq(ration_ctx_with_signals(NULL, &set, &ctx), 0);
	ck_assert_int_eq(ration_ctx_with_cancel(ctx, &child), 0);
	ck_assert_int_eq(ration_ctx_signal(ctx), 0);

	ck_assert_int_eq(kill(getpid(), SIGINT), 0);

	ck_assert_int_eq(done_within(ctx), -ECANCELED);
	ck_assert_int_eq(ration_ctx_err(child), -ECANCELED);
	ck_assert_int_eq(ration_ctx_signal(ctx), SIGINT);
	ck_assert_int_eq(ration_ctx_signal(child), SIGINT);
	ck_assert_int_eq(kill(getpid(), SIGINT),
			 0); /* a second one is absorbed */
	ration_ctx_unref(child);
	ration_ctx_unref(ctx);
}
END_TEST

START_TEST(test_sigterm_ends_a_sleep)
{
	sigset_t set = set_of(SIGINT, SIGTERM);
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_signals(NULL, &set, &ctx), 0);
	ck_assert_int_eq(kill(getpid(), SIGTERM), 0);

	ck_assert_int_eq(ration_ctx_sleep(ctx, TEST_WAIT_NS), -ECANCELED);

	ck_assert_int_eq(ration_ctx_signal(ctx), SIGTERM);
	ration_ctx_unref(ctx);
}
END_TEST

static _Atomic int usr1_seen;

static void
count_usr1(int signo)
{
	atomic_fetch_add(&usr1_seen, 1);
}

static void
handler_of(int signo, struct sigaction *out)
{
	ck_assert_int_eq(sigaction(signo, NULL, out), 0);
}

/* The disposition before the first signal ctx comes back when the last
 * one catching that signal is freed; while one lives, it catches. */
START_TEST(test_disposition_restored_when_last_ctx_freed)
{
	struct sigaction mine = {.sa_handler = count_usr1}, now;
	sigemptyset(&mine.sa_mask);
	ck_assert_int_eq(sigaction(SIGUSR1, &mine, NULL), 0);
	atomic_store(&usr1_seen, 0);
	sigset_t set = set_of(SIGUSR1, 0);
	ration_ctx_t *a, *b;
	ck_assert_int_eq(ration_ctx_with_signals(NULL, &set, &a), 0);
	ck_assert_int_eq(ration_ctx_with_signals(NULL, &set, &b), 0);

	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	ck_assert_int_eq(done_within(a), -ECANCELED);
	ck_assert_int_eq(done_within(b), -ECANCELED);
	ration_ctx_unref(a);
	handler_of(SIGUSR1, &now);
	ck_assert(now.sa_handler != count_usr1); /* b still catches */
	ration_ctx_unref(b);

	handler_of(SIGUSR1, &now);
	ck_assert(now.sa_handler == count_usr1);
	ck_assert_int_eq(atomic_load(&usr1_seen), 0);
	ck_assert_int_eq(kill(getpid(), SIGUSR1), 0);
	WAIT_FOR(atomic_load(&usr1_seen) == 1);
	signal(SIGUSR1, SIG_DFL);
}
END_TEST

START_TEST(test_other_signals_do_not_cancel)
{
	signal(SIGUSR2, SIG_IGN);
	sigset_t set = set_of(SIGUSR1, 0);
	ration_ctx_t *ctx;
	ck_assert_int_eq(ration_ctx_with_signals(NULL, &set, &ctx), 0);

	ck_assert_int_eq(kill(getpid(), SIGUSR2), 0);

	ck_assert_int_eq(ration_ctx_sleep(ctx, 50 * MS), 0);
	ck_assert_int_eq(ration_ctx_signal(ctx), 0);
	ration_ctx_unref(ctx);
	signal(SIGUSR2, SIG_DFL);
}
END_TEST

START_TEST(test_with_signals_bad_arguments)
{
	sigset_t empty, kill_set = set_of(SIGKILL, SIGINT),
			ok = set_of(SIGINT, 0);
	struct sigaction before, after;
	ration_ctx_t *ctx = NULL;
	sigemptyset(&empty);
	handler_of(SIGINT, &before);

	ck_assert_int_eq(ration_ctx_with_signals(NULL, &empty, &ctx), -EINVAL);
	ck_assert_int_eq(ration_ctx_with_signals(NULL, &kill_set, &ctx),
			 -EINVAL);
	ck_assert_int_eq(ration_ctx_with_signals(NULL, NULL, &ctx), -EINVAL);
	ck_assert_int_eq(ration_ctx_with_signals(NULL, &ok, NULL), -EINVAL);

	ck_assert_ptr_null(ctx);
	handler_of(SIGINT, &after);
	ck_assert(after.sa_handler == before.sa_handler);
	ck_assert_int_eq(ration_ctx_signal(NULL), 0);
}
END_TEST

/* A cancelled parent ends the signal ctx like any child; no signal. */
START_TEST(test_parent_cancel_reaches_signal_ctx)
{
	sigset_t set = set_of(SIGINT, 0);
	ration_ctx_t *parent, *ctx;
	ck_assert_int_eq(ration_ctx_with_cancel(NULL, &parent), 0);
	ck_assert_int_eq(ration_ctx_with_signals(parent, &set, &ctx), 0);

	ration_ctx_cancel_with(parent, -EIO);

	ck_assert_int_eq(ration_ctx_err(ctx), -EIO);
	ck_assert_int_eq(ration_ctx_signal(ctx), 0);
	ration_ctx_unref(ctx);
	ration_ctx_unref(parent);
}
END_TEST

static Suite *
ctx_helpers_suite(void)
{
	Suite *s = suite_create("ctx_helpers");
	TCase *tc = tcase_create("sleep");
	tcase_add_test(tc, test_sleep_returns_0_after_ns);
	tcase_add_test(tc, test_sleep_ends_at_cancel);
	tcase_add_test(tc, test_sleep_ends_at_ctx_deadline);
	suite_add_tcase(s, tc);
	tc = tcase_create("signals");
	tcase_add_test(tc, test_sigint_cancels_and_is_named);
	tcase_add_test(tc, test_sigterm_ends_a_sleep);
	tcase_add_test(tc, test_disposition_restored_when_last_ctx_freed);
	tcase_add_test(tc, test_other_signals_do_not_cancel);
	tcase_add_test(tc, test_with_signals_bad_arguments);
	tcase_add_test(tc, test_parent_cancel_reaches_signal_ctx);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(ctx_helpers_suite()) == 0 ? 0 : 1;
}
