/* tslot.c - per-thread slots for single-writer counters (internal/tslot.h).
 *
 * Locking: mu guards the free mask. A slot is handed back by its thread's
 * key destructor at exit. fork() holds mu across the fork (pthread_atfork),
 * and the child, whose only thread is the forking one, keeps that thread's
 * slot and frees the others: their owners do not exist there.
 */
#include <pthread.h>

#include "internal/tslot.h"

_Thread_local unsigned ration__tslot_tl RATION_TLS_IE;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned used; /* mu: bit i set while slot i is owned */
static pthread_key_t key;
static char slot_tag[RATION_TSLOTS]; /* key value: &slot_tag[slot] */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int key_err;

static void
slot_give_back(void *arg)
{
	unsigned slot = (unsigned)((char *)arg - slot_tag);

	pthread_mutex_lock(&mu);
	used &= ~(1u << slot);
	pthread_mutex_unlock(&mu);
	/* Any later count by this thread (another key's destructor) goes to
	 * the shared counter: the slot may be someone else's now. */
	ration__tslot_tl = RATION_TSLOTS + 1;
}

static void
fork_prepare(void)
{
	pthread_mutex_lock(&mu);
}

static void
fork_parent(void)
{
	pthread_mutex_unlock(&mu);
}

static void
fork_child(void)
{
	unsigned t = ration__tslot_tl;
	used = t >= 1 && t <= RATION_TSLOTS ? 1u << (t - 1) : 0;
	pthread_mutex_unlock(&mu);
}

static void
key_make(void)
{
	key_err = pthread_key_create(&key, slot_give_back);
	/* Registered before mu is first taken, so no fork can catch it held. */
	if (key_err == 0)
		key_err = pthread_atfork(fork_prepare, fork_parent, fork_child);
}

unsigned
ration__tslot_take(void)
{
	unsigned slot = RATION_TSLOTS;

	pthread_once(&once, key_make);
	if (key_err == 0) {
		pthread_mutex_lock(&mu);
		for (unsigned i = 0; i < RATION_TSLOTS; i++)
			if (!(used & (1u << i))) {
				used |= 1u << i;
				slot = i;
				break;
			}
		pthread_mutex_unlock(&mu);
	}
	/* Without the key (or the fork handlers) no slot could be handed
	 * back at exit (or in a child): none taken. */
	if (slot < RATION_TSLOTS &&
	    pthread_setspecific(key, &slot_tag[slot]) != 0) {
		slot_give_back(&slot_tag[slot]);
		return RATION_TSLOTS;
	}
	ration__tslot_tl = slot + 1;
	return slot;
}
