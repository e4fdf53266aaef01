/* list.h - intrusive circular doubly linked list (the kernel's list_head). */
#ifndef RATION_INTERNAL_LIST_H
#define RATION_INTERNAL_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct ration__list {
	struct ration__list *next, *prev;
};

static inline void
list_init(struct ration__list *l)
{
	l->next = l->prev = l;
}

static inline bool
list_empty(const struct ration__list *l)
{
	return l->next == l;
}

/* Insert @n before @at; with @at the head, that is at the tail. */
static inline void
list_insert_before(struct ration__list *at, struct ration__list *n)
{
	n->prev = at->prev;
	n->next = at;
	at->prev->next = n;
	at->prev = n;
}

static inline void
list_push_back(struct ration__list *head, struct ration__list *n)
{
	list_insert_before(head, n);
}

/* Unlink @n and leave it self-linked, so a second unlink is harmless and
 * list_linked() tells whether it is still queued. */
static inline void
list_remove(struct ration__list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

static inline bool
list_linked(const struct ration__list *n)
{
	return n->next != n;
}

#define list_first(head) ((head)->next)

#endif
