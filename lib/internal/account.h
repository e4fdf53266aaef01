/* account.h (internal) - how a group judges a measured task against its
 * declaration (lib/account.c). */
#ifndef RATION_INTERNAL_ACCOUNT_H
#define RATION_INTERNAL_ACCOUNT_H

#include "ration/account.h"
#include "ration/group.h"

/* Set @r's under_declared and over_reserved from its peak_bytes and
 * declared (both false when the peak was not measured). @tolerance: the
 * fraction of declared allowed above it before one size-class step. */
void ration__account_judge(ration_task_report_t *r, double tolerance);

/* The ration_group_stats_t.fit_hist bucket of @peak / @declared (> 0). */
unsigned ration__account_fit_bucket(int64_t peak, int64_t declared);

/* Hand what the calling thread freed back to the kernel: flush its
 * jemalloc thread cache and purge its arena's unused dirty pages. Called
 * at the end of each task of a budget_bytes group; nothing without
 * jemalloc. Cost: docs/account.md. */
void ration__account_give_back(void);

#endif
