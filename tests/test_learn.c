/* test_learn.c - weights learnt from measured peaks (ration/learn.h).
 *
 * Files live in a fresh temporary directory per test. Damaged files of
 * every kind must be refused with -EPROTO (never read in part, never a
 * crash); the random-bytes loops are there for ASan/UBSan to watch. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ration.h>

#include "helpers.h"

static char dir[64];
static char path[128];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/test_learn.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/weights.tsv", dir);
}

static void
teardown(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static void
write_file(const char *text, size_t len)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

#define write_str(s) write_file((s), strlen(s))

static char *
read_file(size_t *len)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char *buf = calloc(1, 1 << 16);
	*len = fread(buf, 1, (1 << 16) - 1, f);
	fclose(f);
	return buf;
}

/* open() of @text as the file: its result (the table freed if any). */
static int
open_text(const char *text, size_t len)
{
	ration_learn_t *l = NULL;

	write_file(text, len);
	int rc = ration_learn_open(path, &l);
	if (rc == 0) {
		ration_learn_weight(l, "a", 1);
		ration_learn_free(l);
	} else {
		ck_assert_ptr_null(l);
	}
	return rc;
}

#define OPEN_STR(s) open_text((s), strlen(s))

START_TEST(test_learn_missing_file_is_empty_table)
{
	ration_learn_t *l;

	ck_assert_int_eq(ration_learn_open(path, &l), 0);

	ck_assert_int_eq(ration_learn_weight(l, "xz -9", 77), 77);
	ration_learn_free(l);
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

START_TEST(test_learn_round_trip_keeps_every_key)
{
	ration_learn_t *l;
	const char *odd = "cmd\twith\ttabs and \"quotes\" \\ and \r";

	ck_assert_int_eq(ration_learn_open(path, &l), 0);
	ck_assert_int_eq(ration_learn_record(l, "b", 400), 0);
	ck_assert_int_eq(ration_learn_record(l, "a", 100), 0);
	ck_assert_int_eq(ration_learn_record(l, odd, 1000), 0);
	ck_assert_int_eq(ration_learn_save(l), 0);
	ration_learn_free(l);

	ck_assert_int_eq(ration_learn_open(path, &l), 0);
	ck_assert_int_eq(ration_learn_weight(l, "a", -1), 125);
	ck_assert_int_eq(ration_learn_weight(l, "b", -1), 500);
	ck_assert_int_eq(ration_learn_weight(l, odd, -1), 1250);
	ck_assert_int_eq(ration_learn_weight(l, "c", -1), -1);
	ration_learn_free(l);

	size_t len;
	char *text = read_file(&len);
	ck_assert_str_eq(
		text, "# ration learn v1\nmargin\t25\n"
		      "peak\t100\ta\npeak\t400\tb\n"
		      "peak\t1000\tcmd\twith\ttabs and \"quotes\" \\ and \r\n"
		      "end\t3\n");
	free(text);
}
END_TEST

START_TEST(test_learn_save_leaves_no_temp_file)
{
	ration_learn_t *l;
	int files = 0;

	ck_assert_int_eq(ration_learn_open(path, &l), 0);
	ck_assert_int_eq(ration_learn_record(l, "a", 1), 0);
	ck_assert_int_eq(ration_learn_save(l), 0);
	ck_assert_int_eq(ration_learn_save(l), 0);
	ration_learn_free(l);

	DIR *d = opendir(dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		files += e->d_name[0] != '.';
	closedir(d);
	ck_assert_int_eq(files, 1);
}
END_TEST

START_TEST(test_learn_in_memory_table_saves_nothing)
{
	ration_learn_t *l;

	ck_assert_int_eq(ration_learn_open(NULL, &l), 0);
	ck_assert_int_eq(ration_learn_record(l, "a", 8), 0);

	ck_assert_int_eq(ration_learn_weight(l, "a", 0), 10);
	ck_assert_int_eq(ration_learn_save(l), 0);
	ration_learn_free(l);
}
END_TEST

START_TEST(test_learn_save_into_missing_dir_fails_with_errno)
{
	ration_learn_t *l;
	char bad[160];

	snprintf(bad, sizeof(bad), "%s/no/such/dir", dir);
	ck_assert_int_eq(ration_learn_open(bad, &l), 0);
	ck_assert_int_eq(ration_learn_record(l, "a", 8), 0);

	ck_assert_int_eq(ration_learn_save(l), -ENOENT);
	ck_assert_int_eq(ration_learn_weight(l, "a", 0), 10);
	ration_learn_free(l);
}
END_TEST

START_TEST(test_learn_args_are_checked)
{
	ration_learn_t *l;

	ck_assert_int_eq(ration_learn_open(path, NULL), -EINVAL);
	ck_assert_int_eq(ration_learn_open(NULL, &l), 0);

	ck_assert_int_eq(ration_learn_record(NULL, "a", 1), -EINVAL);
	ck_assert_int_eq(ration_learn_record(l, NULL, 1), -EINVAL);
	ck_assert_int_eq(ration_learn_record(l, "", 1), -EINVAL);
	ck_assert_int_eq(ration_learn_record(l, "a\nb", 1), -EINVAL);
	ck_assert_int_eq(ration_learn_record(l, "a", 0), -EINVAL);
	ck_assert_int_eq(ration_learn_record(l, "a", -5), -EINVAL);
	ck_assert_int_eq(ration_learn_record(l, "a", RATION_SEM_MAX + 1),
			 -EINVAL);
	ck_assert_int_eq(ration_learn_save(NULL), -EINVAL);
	ck_assert_int_eq(ration_learn_weight(NULL, "a", 3), 3);
	ck_assert_int_eq(ration_learn_weight(l, NULL, 4), 4);
	ck_assert_int_eq(ration_learn_weight(l, "a", 5), 5);
	ration_learn_free(l);
	ration_learn_free(NULL);
}
END_TEST

START_TEST(test_learn_margin_is_25_percent_rounded_up)
{
	ration_learn_t *l;

	ck_assert_int_eq(ration_learn_open(NULL, &l), 0);
	ck_assert_int_eq(ration_learn_record(l, "a", 1), 0);
	ck_assert_int_eq(ration_learn_record(l, "b", 1000), 0);
	ck_assert_int_eq(ration_learn_record(l, "c", 1001), 0);
	ck_assert_int_eq(ration_learn_record(l, "max", RATION_SEM_MAX), 0);

	ck_assert_int_eq(ration_learn_weight(l, "a", 0), 2);
	ck_assert_int_eq(ration_learn_weight(l, "b", 0), 1250);
	ck_assert_int_eq(ration_learn_weight(l, "c", 0), 1252);
	ck_assert_int_eq(ration_learn_weight(l, "max", 0), RATION_SEM_MAX);
	ration_learn_free(l);
}
END_TEST

START_TEST(test_learn_margin_from_file)
{
	ration_learn_t *l;

	write_str("# ration learn v1\nmargin\t50\npeak\t1000\tk\nend\t1\n");
	ck_assert_int_eq(ration_learn_open(path, &l), 0);

	ck_assert_int_eq(ration_learn_weight(l, "k", 0), 1500);
	ck_assert_int_eq(ration_learn_save(l), 0);
	ration_learn_free(l);

	size_t len;
	char *text = read_file(&len);
	ck_assert_ptr_nonnull(strstr(text, "\nmargin\t50\n"));
	free(text);

	ck_assert_int_eq(OPEN_STR("# ration learn v1\nmargin\t0\n"
				  "peak\t1000\tk\nend\t1\n"),
			 0);
	ck_assert_int_eq(ration_learn_open(path, &l), 0);
	ck_assert_int_eq(ration_learn_weight(l, "k", 0), 1000);
	ration_learn_free(l);
}
END_TEST

START_TEST(test_learn_higher_peak_replaces_lower_halves)
{
	ration_learn_t *l;

	ck_assert_int_eq(ration_learn_open(NULL, &l), 0);
	ck_assert_int_eq(ration_learn_record(l, "k", 400), 0);
	ck_assert_int_eq(ration_learn_record(l, "k", 800), 0);
	ck_assert_int_eq(ration_learn_weight(l, "k", 0), 1000);

	ck_assert_int_eq(ration_learn_record(l, "k", 200), 0);
	ck_assert_int_eq(ration_learn_weight(l, "k", 0), 625); /* 500 */
	ck_assert_int_eq(ration_learn_record(l, "k", 499), 0);
	ck_assert_int_eq(ration_learn_weight(l, "k", 0), 625); /* 500 */
	ration_learn_free(l);
}
END_TEST

START_TEST(test_learn_reads_old_ration_run_file)
{
	ration_learn_t *l;

	write_str("# ration-run learn v1\n4096\tmake -C a\n\n100\tb\n");
	ck_assert_int_eq(ration_learn_open(path, &l), 0);

	ck_assert_int_eq(ration_learn_weight(l, "make -C a", 0), 5120);
	ck_assert_int_eq(ration_learn_weight(l, "b", 0), 125);
	ration_learn_free(l);
}
END_TEST

START_TEST(test_learn_every_truncation_is_eproto)
{
	const char *good = "# ration learn v1\nmargin\t25\npeak\t100\ta\n"
			   "peak\t12345\tbb\nend\t2\n";
	size_t len = strlen(good);

	ck_assert_int_eq(open_text(good, len), 0);
	for (size_t cut = 0; cut < len; cut++)
		ck_assert_msg(open_text(good, cut) == -EPROTO,
			      "cut at %zu accepted", cut);
}
END_TEST

START_TEST(test_learn_damaged_files_are_eproto)
{
	static const char *const bad[] = {
		"ration learn v1\nend\t0\n", /* header */
		"# ration learn v2\nend\t0\n",
		"# RATION LEARN V1\nend\t0\n",
		"{\"peak\": 1}\n",                         /* foreign */
		"# ration learn v1\nend\t1\n",             /* count */
		"# ration learn v1\nend\t0\npeak\t1\ta\n", /* after end */
		"# ration learn v1\nend\t0\nend\t0\n",
		"# ration learn v1\npeak\t99999999999999999999\ta\nend\t1\n",
		"# ration learn v1\npeak\t2305843009213693952\ta\nend\t1\n",
		"# ration learn v1\npeak\t0\ta\nend\t1\n",
		"# ration learn v1\npeak\t-1\ta\nend\t1\n",
		"# ration learn v1\npeak\t+1\ta\nend\t1\n",
		"# ration learn v1\npeak\t1e9\ta\nend\t1\n",
		"# ration learn v1\npeak\t\ta\nend\t1\n",
		"# ration learn v1\npeak\t12\t\nend\t1\n", /* empty key */
		"# ration learn v1\npeak\t12\nend\t1\n",
		"# ration learn v1\npeak\t1\ta\npeak\t2\ta\nend\t2\n", /* twice */
		"# ration learn v1\nmargin\t1001\nend\t0\n",
		"# ration learn v1\nmargin\t5\nmargin\t5\nend\t0\n",
		"# ration learn v1\nmargin\t\nend\t0\n",
		"# ration learn v1\nweight\t1\ta\nend\t0\n", /* unknown */
		"# ration learn v1\n\nend\t0\n",
		"# ration learn v1\nend\t18446744073709551616\n",
		"# ration-run learn v1\nabc\tx\n",
		"# ration-run learn v1\n12 x\n",
		"# ration-run learn v1\n1\tx", /* no newline */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(OPEN_STR(bad[i]) == -EPROTO, "accepted: %s",
			      bad[i]);

	/* A NUL byte anywhere is binary, not text. */
	ck_assert_int_eq(
		open_text("# ration learn v1\npeak\t1\ta\0b\nend\t1\n", 34),
		-EPROTO);
	ck_assert_int_eq(open_text("\0\0\0\n", 4), -EPROTO);
}
END_TEST

START_TEST(test_learn_directory_is_an_errno)
{
	ration_learn_t *l = NULL;

	ck_assert_int_eq(ration_learn_open(dir, &l), -EISDIR);
	ck_assert_ptr_null(l);
}
END_TEST

/* Random bytes, and a valid file with random bytes changed: open()
 * answers 0 or -EPROTO and never touches memory it should not. */
START_TEST(test_learn_random_bytes_never_crash)
{
	const char *good = "# ration learn v1\nmargin\t25\npeak\t100\ta\n"
			   "peak\t12345\tbb\npeak\t7\tc\td\nend\t3\n";
	size_t glen = strlen(good);
	char buf[256];
	unsigned seed = 12345;
	long rounds = stress_rounds(3000);
	int accepted = 0;

	for (long i = 0; i < rounds; i++) {
		size_t len = (size_t)rand_r(&seed) % sizeof(buf);
		for (size_t k = 0; k < len; k++)
			buf[k] = (char)rand_r(&seed);
		int rc = open_text(buf, len);
		ck_assert_msg(rc == -EPROTO, "random file: %d", rc);

		memcpy(buf, good, glen);
		int flips = 1 + rand_r(&seed) % 3;
		for (int f = 0; f < flips; f++)
			buf[rand_r(&seed) % glen] = (char)rand_r(&seed);
		rc = open_text(buf, glen);
		ck_assert_msg(rc == 0 || rc == -EPROTO, "mutated file: %d", rc);
		accepted += rc == 0;
	}
	/* Some flips land in keys or comments-to-be and stay valid: the
	 * loop did reach the end of the parser, not only the header. */
	ck_assert_int_gt(accepted, 0);
}
END_TEST

#define THREADS 4
#define KEYS    8

struct hammer {
	ration_learn_t *l;
	unsigned seed;
	long rounds;
	int bad;
};

/* Record and read back keys shared with the other threads; a weight
 * is either the fallback (not yet recorded) or peak + 25% of a peak
 * some thread recorded (every peak is a multiple of 4 in 4..4096). */
static void *
hammer(void *arg)
{
	struct hammer *h = arg;
	char key[16];

	for (long i = 0; i < h->rounds; i++) {
		snprintf(key, sizeof(key), "k%d", rand_r(&h->seed) % KEYS);
		int64_t peak = 4 * (1 + rand_r(&h->seed) % 1024);
		if (ration_learn_record(h->l, key, peak) != 0)
			h->bad++;
		int64_t w = ration_learn_weight(h->l, key, -1);
		if (w < 5 || w > 5120)
			h->bad++;
		if (i % 64 == 0 && ration_learn_save(h->l) != 0)
			h->bad++;
	}
	return NULL;
}

START_TEST(test_learn_concurrent_record_weight_save)
{
	ration_learn_t *l;
	pthread_t t[THREADS];
	struct hammer h[THREADS];

	ck_assert_int_eq(ration_learn_open(path, &l), 0);
	for (int i = 0; i < THREADS; i++) {
		h[i] = (struct hammer){l, (unsigned)i + 1, stress_rounds(2000),
				       0};
		ck_assert_int_eq(pthread_create(&t[i], NULL, hammer, &h[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		ck_assert_int_eq(h[i].bad, 0);
	}
	ck_assert_int_eq(ration_learn_save(l), 0);
	ration_learn_free(l);

	ck_assert_int_eq(ration_learn_open(path, &l), 0);
	for (int k = 0; k < KEYS; k++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", k);
		ck_assert_int_gt(ration_learn_weight(l, key, -1), 0);
	}
	ration_learn_free(l);
}
END_TEST

static Suite *
learn_suite(void)
{
	Suite *s = suite_create("learn");
	TCase *tc;

	tc = tcase_create("table");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_learn_missing_file_is_empty_table);
	tcase_add_test(tc, test_learn_round_trip_keeps_every_key);
	tcase_add_test(tc, test_learn_save_leaves_no_temp_file);
	tcase_add_test(tc, test_learn_in_memory_table_saves_nothing);
	tcase_add_test(tc, test_learn_save_into_missing_dir_fails_with_errno);
	tcase_add_test(tc, test_learn_args_are_checked);
	tcase_add_test(tc, test_learn_margin_is_25_percent_rounded_up);
	tcase_add_test(tc, test_learn_margin_from_file);
	tcase_add_test(tc, test_learn_higher_peak_replaces_lower_halves);
	tcase_add_test(tc, test_learn_reads_old_ration_run_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("corrupt");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_learn_every_truncation_is_eproto);
	tcase_add_test(tc, test_learn_damaged_files_are_eproto);
	tcase_add_test(tc, test_learn_directory_is_an_errno);
	tcase_add_test(tc, test_learn_random_bytes_never_crash);
	suite_add_tcase(s, tc);

	tc = tcase_create("threads");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_learn_concurrent_record_weight_save);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	int failed = run_suite(learn_suite());
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
