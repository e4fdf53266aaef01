/* ration.h - everything: ctx, sem, pool, group, account, learn. See README.md. */
#ifndef RATION_H
#define RATION_H

#include "ration/account.h"
#include "ration/common.h"
#include "ration/ctx.h"
#include "ration/group.h"
#include "ration/learn.h"
#include "ration/lease.h"
#include "ration/pool.h"
#include "ration/redis.h"
#include "ration/sem.h"
#include "ration/shared.h"

#endif /* RATION_H */
