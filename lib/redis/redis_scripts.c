/* redis_scripts.c - the Lua side of the Redis backend (docs/redis.md).
 *
 * Keys, all under the one hash tag of KEYS[1] = "ration:{key}" (so Redis
 * Cluster keeps them in one slot; the scripts derive them from KEYS[1]):
 *   P:meta    hash: size, in_use, closed, ticket, fence, ww (waiting weight),
 *             statistics (acquired, contended, ..., h0..h39)
 *   P:sess    zset: session id -> expiry (server unix us)
 *   P:sinc    hash: session id -> incarnation (server us at its creation)
 *   P:held    hash: session id -> weight held
 *   P:q       zset: ticket -> ticket (the FIFO queue)
 *   P:qi      hash: ticket -> "n sid lease t0"
 *   P:leases  hash: fence -> "sid n" (leases only)
 *   P:w:<t>   list: the wake list ticket t's waiter blocks on (BLPOP):
 *             "g fence inc n" granted, "x" session reclaimed (queue again),
 *             "p" closed, "b" larger than the new size
 *
 * Numbers: Lua numbers are doubles, exact below 2^53; S() prints them
 * without an exponent before they go back to Redis.
 */
#include "redis_conn.h"

/* Scripts are longer than the 4095 bytes C guarantees for a literal; gcc
 * and clang, the compilers ration builds with, take them whole. */
#pragma GCC diagnostic ignored "-Woverlength-strings"

/* Shared by every script: names, TIME, expiry of stale sessions, grant. */
#define PROLOGUE                                                                         \
	"local P = KEYS[1]\n"                                                            \
	"local META, SESS, SINC, HELD = P..':meta', P..':sess', P..':sinc', "            \
	"P..':held'\n"                                                                   \
	"local Q, QI, LEASES = P..':q', P..':qi', P..':leases'\n"                        \
	"local sid, lease_us = ARGV[1], tonumber(ARGV[2])\n"                             \
	"local mf, ep, holds, fresh = string.match(ARGV[4], "                            \
	"'^(%d+):(%d+):(%d):(%d)$')\n"                                                   \
	"mf = tonumber(mf or '0')\n"                                                     \
	"local tm = redis.call('TIME')\n"                                                \
	"local now = tonumber(tm[1]) * 1000000 + tonumber(tm[2])\n"                      \
	"local function S(x) return string.format('%.0f', x) end\n"                      \
	"local function M(f) return tonumber(redis.call('HGET', META, f) or "            \
	"'0') end\n"                                                                     \
	"local function run_id()\n" /* '?' where INFO is refused (renamed)  */           \
	"  local i = redis.pcall('INFO', 'server')\n"                                    \
	"  return type(i) == 'string' and string.match(i, 'run_id:(%x+)') or "           \
	"'?'\n"                                                                          \
	"end\n" /* A wake list outlives a live waiter's next poll by far; it is only   \
	 * there so that a dead waiter's list does not stay for ever. */ \
	"local wake_ms = math.max(math.floor(lease_us / 500), 10000)\n"                  \
	"local function wake(tk, msg)\n"                                                 \
	"  local k = P..':w:'..tk\n"                                                     \
	"  redis.call('RPUSH', k, msg)\n"                                                \
	"  redis.call('PEXPIRE', k, wake_ms)\n"                                          \
	"end\n" /* Fences and tickets never go below the server's clock in us, so     \
	 * they keep increasing across a rollback (restart without data, RDB  \
	 * restore): no script issues faster than one per us for long. */  \
	"local function next_id(f)\n"                                                    \
	"  local v = math.max(M(f) + 1, now)\n"                                          \
	"  redis.call('HSET', META, f, S(v))\n"                                          \
	"  return S(v)\n"                                                                \
	"end\n" /* New, or lost (restart without persistence, flush): (re-)create it  \
	 * from the caller's size, with a new epoch; in recovery (below) if    \
	 * the caller knew an earlier epoch. */  \
	"local size = redis.call('HGET', META, 'size')\n"                                \
	"if not size then\n"                                                             \
	"  if tonumber(ARGV[3]) <= 0 then return {-6, '0', 0, 0, 0, '0', "               \
	"'0'} end\n"                                                                     \
	"  redis.call('HSET', META, 'size', ARGV[3], 'in_use', 0, 'closed', "            \
	"0,\n"                                                                           \
	"             'ticket', S(now), 'fence', S(math.max(now, mf)), 'ww', "           \
	"0,\n"                                                                           \
	"             'alive', S(now), 'skip', 0, 'rec', S(now), 'epoch', "              \
	"S(now),\n"                                                                      \
	"             'grace', (ep and ep ~= '0') and S(now + lease_us) or "             \
	"0, 'run', run_id())\n"                                                          \
	"  size = ARGV[3]\n"                                                             \
	"end\n" /* Session expiry runs on v, the server's time less the gaps in which  \
	 * no script ran for over half a lease: a stalled (stopped, restarted) \
	 * server does not count against holders that renew every quarter     \
	 * lease. A recovery (for one lease nothing is granted and nobody      \
	 * expires, while the holders re-assert what they hold: sync) starts   \
	 * on such a gap while weight is held, when the server restarted with \
	 * the data (its run id changed: a snapshot or AOF may be older than   \
	 * what the clients saw; checked by a connection's first script, and   \
	 * every connection is new after a restart), when a caller saw a fence \
	 * the server no longer has (a rollback), or for a holder of an        \
	 * earlier epoch (the data was lost). 'rec' tells the holders; it      \
	 * takes a value none saw before (the server's clock) at every start   \
	 * that may have undone re-assertions, even during a recovery: a       \
	 * snapshot taken during one carries the 'rec' they answered. */ \
	"local restarted = false\n"                                                      \
	"if fresh == '1' then\n"                                                         \
	"  local run = run_id()\n"                                                       \
	"  local was = redis.call('HGET', META, 'run')\n"                                \
	"  restarted = was and was ~= run\n"                                             \
	"  if was ~= run then redis.call('HSET', META, 'run', run) end\n"                \
	"end\n"                                                                          \
	"local skip, alive, half = M('skip'), M('alive'), "                              \
	"math.floor(lease_us / 2)\n"                                                     \
	"local gap = now - alive\n"                                                      \
	"if gap > half or gap < 0 then\n"                                                \
	"  skip = skip + (gap > 0 and gap - half or gap)\n"                              \
	"  redis.call('HSET', META, 'skip', S(skip))\n"                                  \
	"end\n"                                                                          \
	"redis.call('HSET', META, 'alive', S(now))\n"                                    \
	"local v = now - skip\n"                                                         \
	"local rec, grace = M('rec'), M('grace')\n"                                      \
	"local epoch = redis.call('HGET', META, 'epoch')\n"                              \
	"if not epoch then epoch = S(now); redis.call('HSET', META, 'epoch', "           \
	"epoch) end\n"                                                                   \
	"local undone = (gap > half and M('in_use') > 0) or restarted or "               \
	"mf > M('fence')\n"                                                              \
	"if undone or (holds == '1' and ep ~= epoch) then\n"                             \
	"  if grace == 0 or undone then rec = math.max(now, rec + 1) end\n"              \
	"  grace = math.max(grace, v + lease_us)\n"                                      \
	"  redis.call('HSET', META, 'rec', S(rec), 'grace', S(grace),\n"                 \
	"             'fence', S(math.max(mf, M('fence'))))\n"                           \
	"end\n"                                                                          \
	"local ended = grace > 0 and v >= grace\n"                                       \
	"if ended then grace = 0; redis.call('HSET', META, 'grace', 0) end\n"            \
	"local recovering = grace > 0\n"                                                 \
	"size = tonumber(size) -- resize alone changes it, and updates this\n"           \
	"local function unqueue(tk, n)\n"                                                \
	"  redis.call('ZREM', Q, tk)\n"                                                  \
	"  redis.call('HDEL', QI, tk)\n"                                                 \
	"  redis.call('HINCRBY', META, 'ww', S(-n))\n"                                   \
	"end\n" /* A session's weight, leases and queue places go back. */               \
	"local function reclaim(s, tell)\n"                                              \
	"  local h = tonumber(redis.call('HGET', HELD, s) or '0')\n"                     \
	"  if h > 0 then\n"                                                              \
	"    redis.call('HINCRBY', META, 'in_use', S(-h))\n"                             \
	"    redis.call('HINCRBY', META, 'reclaimed', S(h))\n"                           \
	"  end\n"                                                                        \
	"  redis.call('HDEL', HELD, s)\n"                                                \
	"  redis.call('HDEL', SINC, s)\n"                                                \
	"  redis.call('ZREM', SESS, s)\n"                                                \
	"  local l = redis.call('HGETALL', LEASES)\n"                                    \
	"  for i = 1, #l, 2 do\n"                                                        \
	"    if string.match(l[i + 1], '^(%S+)') == s then "                             \
	"redis.call('HDEL', LEASES, l[i]) end\n"                                         \
	"  end\n"                                                                        \
	"  local q = redis.call('HGETALL', QI)\n"                                        \
	"  for i = 1, #q, 2 do\n"                                                        \
	"    local n, ws = string.match(q[i + 1], '^(%d+) (%S+)')\n"                     \
	"    if ws == s then\n"                                                          \
	"      unqueue(q[i], tonumber(n))\n"                                             \
	"      if tell then wake(q[i], 'x') end\n"                                       \
	"    end\n"                                                                      \
	"  end\n"                                                                        \
	"end\n"                                                                          \
	"local function bucket(ns)\n"                                                    \
	"  local b = 0\n"                                                                \
	"  while ns >= 2 and b < 39 do ns = ns / 2; b = b + 1 end\n"                     \
	"  return b\n"                                                                   \
	"end\n"                                                                          \
	"local function note_use(used)\n"                                                \
	"  if used > M('max_in_use') then redis.call('HSET', META, "                     \
	"'max_in_use', S(used)) end\n"                                                   \
	"end\n" /* Grant from the head, in ticket order, while the head fits. */         \
	"local function grant()\n"                                                       \
	"  local used = M('in_use')\n"                                                   \
	"  local given = false\n"                                                        \
	"  while true do\n"                                                              \
	"    local h = redis.call('ZRANGE', Q, 0, 0)\n"                                  \
	"    if #h == 0 then break end\n"                                                \
	"    local tk = h[1]\n"                                                          \
	"    local n, s, ls, t0 = string.match(redis.call('HGET', QI, tk), "             \
	"'^(%d+) (%S+) (%d) (%d+)$')\n"                                                  \
	"    n = tonumber(n)\n"                                                          \
	"    if recovering or n > size - used then break end\n"                          \
	"    used = used + n\n"                                                          \
	"    given = true\n"                                                             \
	"    unqueue(tk, n)\n"                                                           \
	"    redis.call('HINCRBY', HELD, s, S(n))\n"                                     \
	"    local f = next_id('fence')\n"                                               \
	"    if ls == '1' then redis.call('HSET', LEASES, f, s..' '..S(n)) "             \
	"end\n"                                                                          \
	"    local waited = math.max(now - tonumber(t0), 0) * 1000\n"                    \
	"    redis.call('HINCRBY', META, 'acquired', 1)\n"                               \
	"    redis.call('HINCRBY', META, 'wait_ns', S(waited))\n"                        \
	"    redis.call('HINCRBY', META, 'h'..bucket(waited), 1)\n"                      \
	"    wake(tk, 'g '..f..' '..(redis.call('HGET', SINC, s) or '0')..' "            \
	"'..S(n))\n"                                                                     \
	"  end\n"                                                                        \
	"  if given then\n"                                                              \
	"    redis.call('HSET', META, 'in_use', S(used))\n"                              \
	"    note_use(used)\n"                                                           \
	"  end\n"                                                                        \
	"end\n" /* Expire stale holders and waiters first, by the server's clock. */     \
	"local dead = {}\n"                                                              \
	"if not recovering then\n"                                                       \
	"  dead = redis.call('ZRANGEBYSCORE', SESS, '-inf', '('..S(v), "                 \
	"'LIMIT', 0, 64)\n"                                                              \
	"end\n"                                                                          \
	"for _, s in ipairs(dead) do reclaim(s, true) end\n"                             \
	"local inc = '0'\n"                                                              \
	"if sid ~= '' then\n"                                                            \
	"  inc = redis.call('HGET', SINC, sid)\n"                                        \
	"  if not inc then\n"                                                            \
	"    inc = S(now)\n"                                                             \
	"    redis.call('HSET', SINC, sid, inc)\n"                                       \
	"  end\n"                                                                        \
	"  redis.call('ZADD', SESS, S(v + lease_us), sid)\n"                             \
	"end\n"                                                                          \
	"if #dead > 0 or ended then grant() end\n"                                       \
	"local function R(code, a, b) return {code, inc, size, a or 0, b or "            \
	"0, S(rec), epoch} end\n"

/* Give @n of sid's @held weight back (held >= n checked by the caller). */
#define GIVE_BACK                                                              \
	"local function give_back(n, held)\n"                                  \
	"  if held == n then\n"                                                \
	"    redis.call('HDEL', HELD, sid)\n"                                  \
	"  else\n"                                                             \
	"    redis.call('HINCRBY', HELD, sid, S(-n))\n"                        \
	"  end\n"                                                              \
	"  redis.call('HINCRBY', META, 'in_use', S(-n))\n"                     \
	"  grant()\n"                                                          \
	"end\n"

static const char acquire_lua[] = PROLOGUE
	"local n, mode, ls = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]\n"
	"local m = redis.call('HMGET', META, 'closed', 'in_use', "
	"'max_in_use')\n"
	"if m[1] == '1' then return R(-1) end\n"
	"if n > size then return R(-2) end\n"
	"if mode == 2 then return R(0) end\n"
	"if not recovering and size - tonumber(m[2]) >= n and "
	"redis.call('ZCARD', Q) == 0 then\n"
	"  local used = redis.call('HINCRBY', META, 'in_use', S(n))\n"
	"  if used > tonumber(m[3] or '0') then redis.call('HSET', META, "
	"'max_in_use', S(used)) end\n"
	"  redis.call('HINCRBY', HELD, sid, S(n))\n"
	"  local f = next_id('fence')\n"
	"  if ls == '1' then redis.call('HSET', LEASES, f, sid..' '..S(n)) "
	"end\n"
	"  redis.call('HINCRBY', META, 'acquired', 1)\n"
	"  return R(0, f)\n"
	"end\n"
	"if mode == 1 then\n"
	"  redis.call('HINCRBY', META, 'rejected', 1)\n"
	"  return R(-3)\n"
	"end\n"
	"local tk = next_id('ticket')\n"
	"redis.call('ZADD', Q, tk, tk)\n"
	"redis.call('HSET', QI, tk, S(n)..' '..sid..' '..ls..' '..S(now))\n"
	"redis.call('DEL', P..':w:'..tk)\n"
	"redis.call('HINCRBY', META, 'ww', S(n))\n"
	"redis.call('HINCRBY', META, 'contended', 1)\n"
	"local nq = redis.call('ZCARD', Q)\n"
	"if nq > M('max_waiters_seen') then redis.call('HSET', META, "
	"'max_waiters_seen', nq) end\n"
	"return R(1, tk)\n";

/* A waiter leaves (deadline, cancel, lost connection). If its grant came
 * first, the grant is given back: a = 0 left the queue, 1 grant given
 * back, 2 neither (already consumed, or reclaimed). */
static const char leave_lua[] = PROLOGUE GIVE_BACK
	"local tk, why = ARGV[5], ARGV[6]\n"
	"local function count()\n"
	"  if why == 't' then redis.call('HINCRBY', META, 'timeouts', 1)\n"
	"  elseif why == 'c' then redis.call('HINCRBY', META, 'cancels', 1) "
	"end\n"
	"end\n"
	"local v = redis.call('HGET', QI, tk)\n"
	"if v then\n"
	"  unqueue(tk, tonumber(string.match(v, '^(%d+)')))\n"
	"  count()\n"
	"  grant()\n"
	"  return R(0, 0)\n"
	"end\n"
	"local wk = P..':w:'..tk\n"
	"local msgs = redis.call('LRANGE', wk, 0, -1)\n"
	"redis.call('DEL', wk)\n"
	"for _, m in ipairs(msgs) do\n"
	"  local f, mi, n = string.match(m, '^g (%d+) (%d+) (%d+)$')\n"
	"  if f and mi == inc then\n"
	"    n = tonumber(n)\n"
	"    redis.call('HINCRBY', META, 'acquired', -1)\n"
	"    redis.call('HDEL', LEASES, f)\n"
	"    local held = tonumber(redis.call('HGET', HELD, sid) or '0')\n"
	"    if held >= n then give_back(n, held) end\n"
	"    count()\n"
	"    return R(0, 1)\n"
	"  end\n"
	"end\n"
	"return R(0, 2)\n";

/* Plain release (fence "0") gives back weight of the session; a lease
 * release must match its record. */
static const char release_lua[] = PROLOGUE GIVE_BACK
	"local n, f = tonumber(ARGV[5]), ARGV[6]\n"
	"local held = tonumber(redis.call('HGET', HELD, sid) or '0')\n"
	"if f ~= '0' then\n"
	"  local v = redis.call('HGET', LEASES, f)\n"
	"  if v ~= sid..' '..S(n) then return R(-5) end\n"
	"  redis.call('HDEL', LEASES, f)\n"
	"  if held < n then return R(-5) end\n"
	"elseif held < n then\n"
	"  return R(-4)\n"
	"end\n"
	"give_back(n, held)\n"
	"return R(0)\n";

static const char resize_lua[] =
	PROLOGUE "if M('closed') == 1 then return R(-1) end\n"
		 "local ns = tonumber(ARGV[5])\n"
		 "local old = size\n"
		 "redis.call('HSET', META, 'size', ARGV[5])\n"
		 "size = ns\n"
		 "if ns < old then\n"
		 "  local q = redis.call('HGETALL', QI)\n"
		 "  for i = 1, #q, 2 do\n"
		 "    local n = tonumber(string.match(q[i + 1], '^(%d+)'))\n"
		 "    if n > ns then unqueue(q[i], n); wake(q[i], 'b') end\n"
		 "  end\n"
		 "end\n"
		 "grant()\n"
		 "return R(0)\n";

static const char close_lua[] =
	PROLOGUE "redis.call('HSET', META, 'closed', 1)\n"
		 "local q = redis.call('HGETALL', QI)\n"
		 "for i = 1, #q, 2 do\n"
		 "  unqueue(q[i], tonumber(string.match(q[i + 1], '^(%d+)')))\n"
		 "  wake(q[i], 'p')\n"
		 "end\n"
		 "return R(0)\n";

/* Renewal is the prologue's ZADD; a ticket is pending while queued or
 * while its wake list has a message. */
static const char renew_lua[] =
	PROLOGUE "local tk = ARGV[5]\n"
		 "if tk == '' then return R(0) end\n"
		 "if redis.call('HEXISTS', QI, tk) == 1 or redis.call('LLEN', "
		 "P..':w:'..tk) > 0 then\n"
		 "  return R(0, 1)\n"
		 "end\n"
		 "return R(0, 0)\n";

static const char stats_lua[] =
	PROLOGUE "local r = {0, inc, size, M('in_use'), redis.call('ZCARD', "
		 "Q), M('ww'),\n"
		 "  M('max_in_use'), M('max_waiters_seen'), M('acquired'), "
		 "M('contended'),\n"
		 "  M('timeouts'), M('cancels'), M('rejected'), M('wait_ns'), "
		 "M('closed'),\n"
		 "  M('reclaimed'), M('fence')}\n"
		 "for i = 0, 39 do r[#r + 1] = M('h'..i) end\n"
		 "r[#r + 1] = M('consumed')\n"
		 "return r\n";

/* Make the session hold what the handle counts (ARGV[5]) after a call
 * whose outcome the handle could not learn, or after a recovery. Mode 'e'
 * (exact: no caller of the handle is queued) drops its queue places and
 * gives back any excess; both modes re-assert a shortfall (all or
 * nothing), with the leases ARGV[7] lists ("fence:n,..."): during a
 * recovery always (in_use may pass size for a while: a restored snapshot
 * counts phantoms - weight released after it - until their sessions sync
 * or expire, and nothing is granted until in_use fits again), otherwise
 * if it fits in size.
 * a = what the session holds afterwards. */
static const char sync_lua[] = PROLOGUE GIVE_BACK
	"local want, mode = tonumber(ARGV[5]), ARGV[6]\n"
	"if mode == 'e' then\n"
	"  local q = redis.call('HGETALL', QI)\n"
	"  for i = 1, #q, 2 do\n"
	"    local n, ws = string.match(q[i + 1], '^(%d+) (%S+)')\n"
	"    if ws == sid then unqueue(q[i], tonumber(n)); redis.call('DEL', "
	"P..':w:'..q[i]) end\n"
	"  end\n"
	"end\n"
	"local held = tonumber(redis.call('HGET', HELD, sid) or '0')\n"
	"local used = M('in_use')\n"
	"if held < want and M('closed') == 0 and\n"
	"   (recovering or used + want - held <= size) then\n"
	"  redis.call('HSET', HELD, sid, S(want))\n"
	"  redis.call('HSET', META, 'in_use', S(used + want - held))\n"
	"  note_use(used + want - held)\n"
	"  held = want\n"
	"end\n"
	"if held >= want then\n"
	"  for f, n in string.gmatch(ARGV[7] or '', '(%d+):(%d+)') do\n"
	"    if redis.call('HEXISTS', LEASES, f) == 0 then redis.call('HSET', "
	"LEASES, f, sid..' '..n) end\n"
	"  end\n"
	"end\n"
	"if mode == 'e' and held > want then give_back(held - want, held); "
	"held = want\n"
	"else grant() end\n"
	"return R(0, S(held))\n";

/* The handle is freed: whatever its session still has goes back. */
static const char bye_lua[] = PROLOGUE "reclaim(sid, false)\n"
				       "grant()\n"
				       "return R(0)\n";

/* Use that already happened: taken now, never queued, in_use may pass
 * size (the grant loop waits until the head fits again). */
static const char consume_lua[] =
	PROLOGUE "local n = tonumber(ARGV[5])\n"
		 "if M('closed') == 1 then return R(-1) end\n"
		 "local used = M('in_use')\n"
		 "if n > 9007199254740991 - used then return R(-4) end\n"
		 "redis.call('HSET', META, 'in_use', S(used + n))\n"
		 "redis.call('HINCRBY', HELD, sid, S(n))\n"
		 "redis.call('HINCRBY', META, 'consumed', S(n))\n"
		 "note_use(used + n)\n"
		 "return R(0)\n";

/* Whether the lease with fence ARGV[5] is live: stale sessions were
 * expired by the prologue; during a recovery the answer is not known
 * (a lost lease may yet be re-asserted, a restored one be a phantom). */
static const char live_lua[] =
	PROLOGUE "if recovering then return R(-3) end\n"
		 "return R(0, redis.call('HEXISTS', LEASES, ARGV[5]))\n";

const char *const ration__redis_script[RS_COUNT] = {
	[RS_ACQUIRE] = acquire_lua, [RS_LEAVE] = leave_lua,
	[RS_RELEASE] = release_lua, [RS_RESIZE] = resize_lua,
	[RS_CLOSE] = close_lua,     [RS_RENEW] = renew_lua,
	[RS_STATS] = stats_lua,     [RS_SYNC] = sync_lua,
	[RS_BYE] = bye_lua,         [RS_CONSUME] = consume_lua,
	[RS_LIVE] = live_lua,
};
