/* tools/run_options.c - ration-run: the command line: --help's text,
 * the options into struct run_opts with defaults filled in, and usage
 * errors (message, hint to --help, exit 64).
 */
#include "run.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* In parts: C11 promises string literals of 4095 bytes only. */
static const char *const usage_text[] = {
	"Usage: ration-run [OPTION]... [--job-file FILE] < JOBS\n"
	"       ration-run [OPTION]... COMMAND [ARG]... [::: ARGS | :::: "
	"FILES]...\n"
	"Run shell commands in parallel under a memory budget and a job-slot\n"
	"limit, in input (FIFO) order with bounded backfill.\n"
	"\n"
	"Without COMMAND, each input line is a job: a command for /bin/sh -c,\n"
	"optionally prefixed by its weight and a TAB:  4G<TAB>xz -9 big.tar.\n"
	"Sizes are binary: 512M, 4G, 1.5G, 100K, or plain bytes; a weight of "
	"0\n"
	"means none. Blank lines are skipped.\n"
	"With COMMAND (GNU parallel's language), each input line, each ARG "
	"after\n"
	":::, each line of a FILE after :::: is an argument: {} the argument,\n"
	"{.} without extension, {/} basename, {//} dirname, {/.} basename "
	"without\n"
	"extension, {#} job number, {N} {N.} ... the Nth argument; quoted for "
	"the\n"
	"shell. A COMMAND without any of them gets the argument(s) appended.\n"
	"Several sources give every combination ({1} {2} ...).\n"
	"Stdin from a pipe or terminal is read as it arrives: jobs start "
	"before\n"
	"it ends. Files are read and checked whole first.\n"
	"\n"
	"Limits:\n"
	"  -m, --memory SIZE      memory budget: SIZE, N% of MemAvailable, or "
	"none\n"
	"                         (default: 80% of MemAvailable in "
	"/proc/meminfo)\n"
	"  -j, --jobs N           at most N jobs at once; 0 = no limit "
	"(default: nproc)\n"
	"  -w, --weight EXPR      weight of every job that declares none: a "
	"SIZE,\n"
	"                         or computed per job: '8*size({})' (8 x the "
	"bytes\n"
	"                         of the file named by the argument); + - * / "
	"( )\n"
	"                         max(a,b,..) min(..) size(FILE) {..} (an "
	"argument\n"
	"                         that is a SIZE)\n"
	"      --learn FILE       weight a job that declares none by the peak "
	"memory\n"
	"                         measured for the same command in earlier "
	"runs, and\n"
	"                         record this run's peaks in FILE\n"
	"      --no-jobserver     ignore a GNU make jobserver in MAKEFLAGS\n"
	"      --no-cgroup        measure jobs by their process group's RSS, "
	"not\n"
	"                         by a memory cgroup per job\n"
	"      --overrun MODE     when jobs' real use passes the budget: wait "
	"(admit\n"
	"                         nothing new; default), suspend (SIGSTOP the "
	"job\n"
	"                         most over its weight until there is room), "
	"requeue\n"
	"                         (kill it, run it again with its peak + 25%, "
	"at\n"
	"                         least twice its weight), kill (kill it; it "
	"fails)\n"
	"      --cap-margin F     requeue, kill: cap each job's cgroup at "
	"weight x\n"
	"                         (1 + F) (default 0.25); requeue raises a cap "
	"by\n"
	"                         weight x F while the budget has room (on "
	"cgroup v1\n"
	"                         it starts at the weight and waits for room)\n"
	"      --strict-weights   a job that uses more than its weight fails\n"
	"      --alone-if-too-big run a job heavier than the budget alone "
	"instead of\n"
	"                         failing it (implied by --overrun requeue)\n"
	"      --ramp             requeue on cgroup v1: a started job claims "
	"only its\n"
	"                         cap, raised as it uses its memory, oldest "
	"first\n"
	"      --no-head-start    requeue on cgroup v1: the last job waits for "
	"its whole\n"
	"                         weight, instead of starting at once capped "
	"at the\n"
	"                         free room, its cap raised as memory comes "
	"back\n"
	"      --head-start       the default: start it early\n"
	"      --backfill N       while the next job waits for memory, let at "
	"most N\n"
	"                         jobs behind it that fit now and leave room "
	"for it\n"
	"                         start first (default 8; 0 = strict FIFO)\n"
	"",
	"Input:\n"
	"  -a, --arg-file FILE    arguments from FILE ('-' = stdin), as :::: "
	"FILE;\n"
	"                         without COMMAND its lines are job lines\n"
	"      --job-file FILE    job lines from FILE instead of stdin; "
	"refuses a\n"
	"                         COMMAND, so a file of arguments is never "
	"run\n"
	"  -N, --max-args N       N arguments per job (one source only)\n"
	"  -0, --null             input records end with NUL, not newline\n"
	"Failure handling:\n"
	"      --timeout DURATION kill a job running longer than DURATION\n"
	"                         (e.g. 30, 30s, 500ms, 5m, 1.5h); it then "
	"fails;\n"
	"                         N% = N% of the median run time of the jobs\n"
	"                         finished so far (no limit until one has)\n"
	"      --retries N        run a failing job up to N times in all; only "
	"the\n"
	"                         last attempt is logged and its output shown\n"
	"      --grace DURATION   time between SIGTERM and SIGKILL (default "
	"2s)\n"
	"      --halt SPEC        stop early: never (default), now,fail=N,\n"
	"                         soon,fail=N, now,success=N, N% instead of "
	"N;\n"
	"                         now = SIGTERM running jobs, soon = let them "
	"finish\n"
	"Output:\n"
	"      --tag              prefix each output line with "
	"SEQ<TAB>COMMAND<TAB>\n"
	"      --line-buffer      pass output on line by line while jobs run\n"
	"                         (default: each job's output whole, when it "
	"ends)\n"
	"      --joblog FILE      one line per job: Seq Start Runtime Exitval "
	"Signal\n"
	"                         Declared Measured Command (TAB-separated, "
	"bytes);\n"
	"                         Seq is the job's place in the input\n"
	"      --joblog-format F  ration (default) or parallel (GNU "
	"parallel's\n"
	"                         columns: Seq Host Starttime JobRuntime Send\n"
	"                         Receive Exitval Signal Command)\n"
	"      --resume           run only the jobs whose Seq the joblog "
	"lacks, and\n"
	"                         append to it\n"
	"      --resume-failed    also run again those it has as failed\n"
	"  -k, --keep-order       output in input order, not in order of "
	"ending\n"
	"      --progress         progress line on stderr even if not a "
	"terminal\n"
	"      --no-progress      no progress line even on a terminal\n"
	"      --report           summary on stderr at the end (implied by "
	"progress)\n"
	"",
	"  -n, --dry-run          print SEQ, weight and command of each job, "
	"and the\n"
	"                         limits on stderr; run none\n"
	"  -h, --help             this help\n"
	"  -V, --version          print the version\n"
	"\n"
	"Each job runs in its own process group, stdin from /dev/null. Its "
	"memory\n"
	"is measured while it runs, all its processes together: a memory "
	"cgroup\n"
	"per job (v2, or v1 where the memory controller is there) when one can "
	"be\n"
	"made, else the summed RSS of its process group every 50 ms; --report "
	"says\n"
	"which. A job counts against the budget with max(weight, measured).\n"
	"Inside `make -jN` (MAKEFLAGS with --jobserver-auth=R,W or fifo:PATH)\n"
	"every job but the first also holds a make token, so the whole build\n"
	"stays within N.\n"
	"\n"
	"Exit status: the number of failed jobs (timed out, killed, nonzero "
	"exit,\n"
	"weight above the budget, over it with --strict-weights), 101 if more\n"
	"than 100; jobs stopped by --halt are not counted. 64 for usage errors "
	"and\n"
	"bad input (nothing runs), 70 for internal errors, 128+N after signal "
	"N.\n",
};

void
usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, RUN_NAME ": ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry '" RUN_NAME " --help' for more information.\n");
	exit(RUN_EXIT_USAGE);
}

/* count_arg() - @arg of option @name as a count of @min to 1000000;
 * exits with a usage error otherwise. */
static unsigned
count_arg(const char *name, const char *arg, long long min)
{
	char *end;

	errno = 0;
	long long n = strtoll(arg, &end, 10);
	if (errno != 0 || end == arg || *end != '\0' || n < min ||
	    n > 1000000) {
		char msg[160];
		snprintf(msg, sizeof(msg),
			 "invalid %s '%.40s' (expected a "
			 "number from %lld)",
			 name, arg, min);
		usage_error("%s", msg);
	}
	return (unsigned)n;
}

enum {
	OPT_LEARN = 256,
	OPT_TIMEOUT,
	OPT_GRACE,
	OPT_HALT,
	OPT_JOBLOG,
	OPT_TAG,
	OPT_LINEBUF,
	OPT_PROGRESS,
	OPT_NOPROGRESS,
	OPT_REPORT,
	OPT_NOJS,
	OPT_NOCG,
	OPT_OVERRUN,
	OPT_CAPMARGIN,
	OPT_STRICT,
	OPT_ALONE,
	OPT_RAMP,
	OPT_HEAD_START,
	OPT_NO_HEAD_START,
	OPT_BACKFILL,
	OPT_JOBFILE,
	OPT_RETRIES,
	OPT_JOBLOGFMT,
	OPT_RESUME,
	OPT_RESUMEFAILED,
};

static const struct option long_opts[] = {
	{"arg-file", required_argument, NULL, 'a'},
	{"job-file", required_argument, NULL, OPT_JOBFILE},
	{"retries", required_argument, NULL, OPT_RETRIES},
	{"joblog-format", required_argument, NULL, OPT_JOBLOGFMT},
	{"resume", no_argument, NULL, OPT_RESUME},
	{"resume-failed", no_argument, NULL, OPT_RESUMEFAILED},
	{"keep-order", no_argument, NULL, 'k'},
	{"max-args", required_argument, NULL, 'N'},
	{"null", no_argument, NULL, '0'},
	{"memory", required_argument, NULL, 'm'},
	{"jobs", required_argument, NULL, 'j'},
	{"weight", required_argument, NULL, 'w'},
	{"learn", required_argument, NULL, OPT_LEARN},
	{"timeout", required_argument, NULL, OPT_TIMEOUT},
	{"grace", required_argument, NULL, OPT_GRACE},
	{"halt", required_argument, NULL, OPT_HALT},
	{"joblog", required_argument, NULL, OPT_JOBLOG},
	{"tag", no_argument, NULL, OPT_TAG},
	{"line-buffer", no_argument, NULL, OPT_LINEBUF},
	{"progress", no_argument, NULL, OPT_PROGRESS},
	{"no-progress", no_argument, NULL, OPT_NOPROGRESS},
	{"report", no_argument, NULL, OPT_REPORT},
	{"no-jobserver", no_argument, NULL, OPT_NOJS},
	{"no-cgroup", no_argument, NULL, OPT_NOCG},
	{"overrun", required_argument, NULL, OPT_OVERRUN},
	{"cap-margin", required_argument, NULL, OPT_CAPMARGIN},
	{"strict-weights", no_argument, NULL, OPT_STRICT},
	{"alone-if-too-big", no_argument, NULL, OPT_ALONE},
	{"ramp", no_argument, NULL, OPT_RAMP},
	{"head-start", no_argument, NULL, OPT_HEAD_START},
	{"no-head-start", no_argument, NULL, OPT_NO_HEAD_START},
	{"backfill", required_argument, NULL, OPT_BACKFILL},
	{"dry-run", no_argument, NULL, 'n'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, 'V'},
	{NULL, 0, NULL, 0},
};

void
options_parse(int argc, char **argv, struct run_opts *o)
{
	const char *memory = NULL;
	int progress = -1;
	int c;

	memset(o, 0, sizeof(*o));
	o->slots = default_slots();
	o->slots_is_default = true;
	o->grace_ns = 2000000000LL;
	o->use_jobserver = true;
	o->use_cgroup = true;
	o->cap_margin = 0.25;
	o->backfill = RUN_BACKFILL_DEFAULT;
	o->head_start = true;
	o->sample_ns = RUN_SAMPLE_NS;
	/* '+': options end at the command, whose own options are its own
	 * (ration-run -j 2 grep -n x ::: a). */
	while ((c = getopt_long(argc, argv, "+a:m:j:w:N:0knhV", long_opts,
				NULL)) != -1) {
		char *end;
		switch (c) {
		case 'a':
			if (input_add_file(&o->in, optarg) < 0)
				usage_error("%s", "out of memory");
			break;
		case OPT_JOBFILE:
			o->in.job_file = optarg;
			break;
		case '0':
			o->in.null_sep = true;
			break;
		case 'N':
			o->in.max_args = count_arg("-N", optarg, 1);
			break;
		case 'm':
			memory = optarg;
			break;
		case 'j':
			errno = 0;
			o->slots_is_default = false;
			o->slots = strtoll(optarg, &end, 10);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    o->slots < 0 || o->slots > RATION_SEM_MAX)
				usage_error("invalid job count '%s'", optarg);
			break;
		case 'w': {
			char why[256];
			int64_t w;
			if (!weight_is_expr(optarg)) {
				parse_size(optarg, &o->default_weight);
				break;
			}
			if (weight_eval(optarg, NULL, 0, 0, true, &w, why,
					sizeof(why)) < 0) {
				fprintf(stderr, RUN_NAME ": --weight: %s\n",
					why);
				usage_error(
					"invalid weight '%s' (expected e.g. "
					"512M, 4G, '8*size({})')",
					optarg);
			}
			o->in.weight_expr = optarg;
			break;
		}
		case OPT_LEARN:
			o->learn_file = optarg;
			break;
		case OPT_TIMEOUT:
			if (parse_timeout(optarg, &o->timeout_ns,
					  &o->timeout_pct) < 0)
				usage_error("invalid --timeout '%s' (expected "
					    "e.g. 30s, 500ms, 5m, 200%%)",
					    optarg);
			break;
		case OPT_RETRIES:
			o->retries = count_arg("--retries", optarg, 0);
			break;
		case OPT_JOBLOGFMT:
			if (strcmp(optarg, "ration") == 0)
				o->joblog_format = JOBLOG_RATION;
			else if (strcmp(optarg, "parallel") == 0)
				o->joblog_format = JOBLOG_PARALLEL;
			else
				usage_error("invalid --joblog-format '%s' "
					    "(expected ration or parallel)",
					    optarg);
			break;
		case OPT_RESUME:
			o->resume = true;
			break;
		case OPT_RESUMEFAILED:
			o->resume_failed = true;
			break;
		case 'k':
			o->keep_order = true;
			break;
		case OPT_GRACE:
			if (parse_duration(optarg, &o->grace_ns) < 0)
				usage_error("invalid --grace '%s'", optarg);
			break;
		case OPT_HALT:
			if (parse_halt(optarg, &o->halt) < 0)
				usage_error("invalid --halt '%s' (expected "
					    "never, now,fail=N, soon,fail=N, "
					    "now,success=N)",
					    optarg);
			break;
		case OPT_JOBLOG:
			o->joblog = optarg;
			break;
		case OPT_TAG:
			o->tag = true;
			break;
		case OPT_LINEBUF:
			o->line_buffer = true;
			break;
		case OPT_PROGRESS:
			progress = 1;
			break;
		case OPT_NOPROGRESS:
			progress = 0;
			break;
		case OPT_REPORT:
			o->report = true;
			break;
		case OPT_NOJS:
			o->use_jobserver = false;
			break;
		case OPT_NOCG:
			o->use_cgroup = false;
			break;
		case OPT_OVERRUN:
			if (parse_overrun(optarg, &o->overrun) < 0)
				usage_error("invalid --overrun '%s' (expected "
					    "wait, suspend, requeue, kill)",
					    optarg);
			break;
		case OPT_CAPMARGIN:
			errno = 0;
			o->cap_margin = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    !(o->cap_margin >= 0 && o->cap_margin <= 100))
				usage_error(
					"invalid --cap-margin '%s' (expected "
					"e.g. 0.25)",
					optarg);
			break;
		case OPT_STRICT:
			o->strict_weights = true;
			break;
		case OPT_ALONE:
			o->alone_if_too_big = true;
			break;
		case OPT_RAMP:
			o->ramp = true;
			break;
		case OPT_HEAD_START:
			o->head_start = true;
			break;
		case OPT_NO_HEAD_START:
			o->head_start = false;
			break;
		case OPT_BACKFILL:
			o->backfill = count_arg("--backfill", optarg, 0);
			break;
		case 'n':
			o->dry_run = true;
			break;
		case 'h':
			for (size_t i = 0;
			     i < sizeof(usage_text) / sizeof(usage_text[0]);
			     i++)
				fputs(usage_text[i], stdout);
			exit(0);
		case 'V':
			printf(RUN_NAME " (ration %s)\n", ration_version());
			exit(0);
		default:
			fprintf(stderr, "Try '" RUN_NAME " --help' for more "
					"information.\n");
			exit(RUN_EXIT_USAGE);
		}
	}
	if ((o->resume || o->resume_failed) && o->joblog == NULL)
		usage_error("%s", "--resume and --resume-failed need --joblog "
				  "FILE");
	if (o->keep_order && o->line_buffer)
		usage_error("%s", "--keep-order and --line-buffer do not go "
				  "together");
	char why[256];
	int rc = input_parse_words(&o->in, argc - optind, argv + optind, why,
				   sizeof(why));
	if (rc == -EINVAL)
		usage_error("%s", why);
	if (rc < 0)
		usage_error("%s", "out of memory");
	if (memory != NULL) {
		rc = parse_budget(memory, &o->budget_bytes);
		if (rc < 0)
			usage_error("invalid --memory '%s' (expected e.g. 12G, "
				    "50%%, none)",
				    memory);
	} else {
		int64_t avail = mem_available_bytes();
		if (avail <= 0)
			usage_error("%s", "cannot read MemAvailable from "
					  "/proc/meminfo; give -m SIZE");
		o->budget_bytes = avail / 5 * 4;
		o->budget_is_default = true;
	}
	if (progress < 0)
		progress = isatty(STDERR_FILENO);
	o->progress = progress != 0;
	if (o->progress)
		o->report = true;
}
