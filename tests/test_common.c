/* test_common.c - ration_strerror(): plain errno wording for plain codes. */
#include <check.h>
#include <errno.h>
#include <locale.h>
#include <string.h>

#include <ration.h>

#include "helpers.h"

START_TEST(test_strerror_plain_codes_read_as_strerror)
{
	ck_assert_str_eq(ration_strerror(-EACCES), "Permission denied");
	ck_assert_str_eq(ration_strerror(-ENOSPC), "No space left on device");
	ck_assert_str_eq(ration_strerror(-ENOENT), "No such file or directory");
	ck_assert_str_eq(ration_strerror(-EIO), "Input/output error");
	ck_assert_str_eq(ration_strerror(-EPROTO), "Protocol error");
	ck_assert_str_eq(ration_strerror(EIO),
			 "Input/output error"); /* positive too */
	ck_assert_str_eq(ration_strerror(0), "Success");
}
END_TEST

/* Every code ration itself returns has a text of its own. */
START_TEST(test_strerror_names_every_ration_code)
{
	static const int codes[] = {
		EINVAL,    E2BIG,  ECANCELED, ETIMEDOUT, EAGAIN, EPIPE,
		EOVERFLOW, EBUSY,  ENOMEM,    ENOENT,    ESTALE, ECONNREFUSED,
		EIO,       EPROTO, ENOTSUP,   EMFILE,    EPERM};
	enum { N = sizeof(codes) / sizeof(codes[0]) };
	for (int i = 0; i < N; i++) {
		const char *m = ration_strerror(-codes[i]);
		ck_assert_msg(strcmp(m, "Unknown error") != 0, "no text for %d",
			      codes[i]);
		for (int j = 0; j < i; j++)
			ck_assert_msg(
				strcmp(m, ration_strerror(-codes[j])) != 0,
				"%d and %d share a text", codes[i], codes[j]);
	}
	ck_assert_str_eq(ration_strerror(-EPIPE),
			 "Broken pipe, or semaphore closed, pool shut down or "
			 "group waited");
}
END_TEST

START_TEST(test_strerror_unknown_is_static_and_not_null)
{
	const char *a = ration_strerror(-100000);
	ck_assert_str_eq(a, "Unknown error");
	ck_assert_ptr_eq(ration_strerror(-99999), a);
	ck_assert_str_eq(ration_strerror(INT32_MIN), "Unknown error");
}
END_TEST

/* Every code below 134 that the table knows reads as the C library's
 * strerror() in the C locale, except the four that also name ration's
 * meaning, which start with the plain words (-ETIMEDOUT: "Timed out"). */
START_TEST(test_strerror_matches_libc_for_every_known_code)
{
	setlocale(LC_ALL, "C");
	int known = 0;
	for (int e = 1; e < 134; e++) {
		const char *ours = ration_strerror(-e);
		ck_assert_ptr_nonnull(ours);
		if (strcmp(ours, "Unknown error") == 0)
			continue;
		known++;
		const char *libc = strerror(e);
		if (e == E2BIG || e == EPIPE || e == ESTALE)
			ck_assert_msg(strncmp(ours, libc, strlen(libc)) == 0 &&
					      strstr(ours, ", or ") != NULL,
				      "%d: %s", e, ours);
		else if (e == ETIMEDOUT)
			ck_assert_str_eq(ours, "Timed out (deadline passed, or "
					       "connection timed out)");
		else
			ck_assert_msg(strcmp(ours, libc) == 0,
				      "%d: '%s' vs '%s'", e, ours, libc);
	}
	ck_assert_int_ge(known, 70); /* the POSIX set */
}
END_TEST

static Suite *
common_suite(void)
{
	Suite *s = suite_create("common");
	TCase *tc = tcase_create("strerror");
	tcase_add_test(tc, test_strerror_plain_codes_read_as_strerror);
	tcase_add_test(tc, test_strerror_names_every_ration_code);
	tcase_add_test(tc, test_strerror_unknown_is_static_and_not_null);
	tcase_add_test(tc, test_strerror_matches_libc_for_every_known_code);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return run_suite(common_suite()) == 0 ? 0 : 1;
}
