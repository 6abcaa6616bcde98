/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * kflex data structures: a red-black tree in the extension heap.
 *
 * Nodes carry parent pointers (no sentinel: absent children are NULL). Keys are ordered
 * byte-lexicographically, i.e. as four big-endian 64-bit words, most significant word first, so
 * the host's model is a plain `BTreeMap<[u8; 32], _>`. The search key is loaded and byte-swapped
 * once per op; each node costs one load and one byte swap per compared word.
 *
 * Robustness under cancellation and `kflex_cond_break`:
 *  * every descent loop records whether it finished; a loop cut short by the loop budget makes the
 *    op fail with -EBUSY before the tree is modified;
 *  * insert links the new node as a red leaf and calls `kflex_commit()` right away, before
 *    rebalancing, so a rebalance cut short leaves a valid binary search tree holding every key
 *    (possibly with a colour violation, which later rebalances tolerate);
 *  * delete unlinks the node and frees it before rebalancing, for the same reason.
 *
 * Node layout (read by the host's invariant check, see `kflex_datastructures::model_trees`):
 * key at 0 (32 bytes), value at 32 (64 bytes), left at 96, right at 104, parent at 112, colour at
 * 120 (1 red, 0 black); 128 bytes in all.
 */
#ifndef DS_RBTREE_H
#define DS_RBTREE_H

#include <ds/common.h>

#define RB_BLACK 0
#define RB_RED 1

struct rb_node {
	__u64 key[DS_KEY_WORDS];
	__u64 value[DS_VALUE_WORDS];
	struct rb_node __arena *left;
	struct rb_node __arena *right;
	struct rb_node __arena *parent;
	__u64 red;
};

_Static_assert(sizeof(struct rb_node) == 128, "struct rb_node is 128 bytes");
_Static_assert(__builtin_offsetof(struct rb_node, left) == 96, "rb_node.left at 96");
_Static_assert(__builtin_offsetof(struct rb_node, parent) == 112, "rb_node.parent at 112");
_Static_assert(__builtin_offsetof(struct rb_node, red) == 120, "rb_node.red at 120");

/* The tree: its heap lock, its root (NULL when empty) and its size. All zero is an empty tree. */
struct rb_tree {
	struct kflex_lock lock;
	struct rb_node __arena *root;
	__u64 size;
};

/* A search key in comparison form: big-endian words converted to host order. */
struct rb_key {
	__u64 w[DS_KEY_WORDS];
};

/* The big-endian reading of a stored word. */
static __always_inline __u64 rb_be64(__u64 w)
{
	return __builtin_bswap64(w);
}

/* Loads an op's key into comparison form. */
static __always_inline void rb_key_load(struct rb_key *k, const __u64 __arena *src)
{
	k->w[0] = rb_be64(src[0]);
	k->w[1] = rb_be64(src[1]);
	k->w[2] = rb_be64(src[2]);
	k->w[3] = rb_be64(src[3]);
}

/* Orders the search key against a node's key: -1, 0 or 1. */
static __always_inline int rb_key_cmp(const struct rb_key *k, const struct rb_node __arena *n)
{
	__u64 w;

	w = rb_be64(n->key[0]);
	if (k->w[0] != w)
		return k->w[0] < w ? -1 : 1;
	w = rb_be64(n->key[1]);
	if (k->w[1] != w)
		return k->w[1] < w ? -1 : 1;
	w = rb_be64(n->key[2]);
	if (k->w[2] != w)
		return k->w[2] < w ? -1 : 1;
	w = rb_be64(n->key[3]);
	if (k->w[3] != w)
		return k->w[3] < w ? -1 : 1;
	return 0;
}

/* Whether a (possibly NULL) node is red; NULL leaves are black. */
static __always_inline bool rb_is_red(const struct rb_node __arena *n)
{
	return n && n->red;
}

/* Puts `v` (possibly NULL) where `u` hangs from its parent (or the root). Out of line, like the
 * rotations below: one copy of its guarded node loads serves every caller. (The fixups stay
 * inline: out of line, they multiply the states kflex's verifier explores for delete.) */
static __noinline void rb_replace_child(struct rb_tree __arena *t, struct rb_node __arena *u,
					     struct rb_node __arena *v)
{
	struct rb_node __arena *up = u->parent;

	if (!up)
		t->root = v;
	else if (up->left == u)
		up->left = v;
	else
		up->right = v;
	if (v)
		v->parent = up;
}

/*
 * Left rotation around `x` (whose right child must exist); returns the subtree's new root, x's
 * former right child. The rotations are out of line: each fixup calls them from four places, and
 * one copy means one set of guarded node loads instead of four.
 */
static __noinline struct rb_node __arena *rb_rotate_left(struct rb_tree __arena *t,
							 struct rb_node __arena *x)
{
	struct rb_node __arena *y = x->right;
	struct rb_node __arena *b = y->left;

	x->right = b;
	if (b)
		b->parent = x;
	rb_replace_child(t, x, y);
	y->left = x;
	x->parent = y;
	return y;
}

/* Right rotation around `x` (whose left child must exist); returns the subtree's new root. */
static __noinline struct rb_node __arena *rb_rotate_right(struct rb_tree __arena *t,
							  struct rb_node __arena *x)
{
	struct rb_node __arena *y = x->left;
	struct rb_node __arena *b = y->right;

	x->left = b;
	if (b)
		b->parent = x;
	rb_replace_child(t, x, y);
	y->right = x;
	x->parent = y;
	return y;
}

/* Restores the colour rules after `z` was linked as a red leaf. */
static __always_inline void rb_insert_fixup(struct rb_tree __arena *t, struct rb_node __arena *z)
{
	for (;;) {
		struct rb_node __arena *p = z->parent;
		struct rb_node __arena *g, *u;

		if (!p || !p->red)
			break;
		g = p->parent;
		if (!g)
			break;
		if (g->left == p) {
			u = g->right;
			if (rb_is_red(u)) {
				p->red = RB_BLACK;
				u->red = RB_BLACK;
				g->red = RB_RED;
				z = g;
			} else {
				if (p->right == z)
					p = rb_rotate_left(t, p); /* now z */
				p->red = RB_BLACK;
				g->red = RB_RED;
				rb_rotate_right(t, g);
				break;
			}
		} else {
			u = g->left;
			if (rb_is_red(u)) {
				p->red = RB_BLACK;
				u->red = RB_BLACK;
				g->red = RB_RED;
				z = g;
			} else {
				if (p->left == z)
					p = rb_rotate_right(t, p); /* now z */
				p->red = RB_BLACK;
				g->red = RB_RED;
				rb_rotate_left(t, g);
				break;
			}
		}
		kflex_cond_break;
	}
	z = t->root;
	if (z)
		z->red = RB_BLACK;
}

/* Restores the colour rules after a black node was removed above `x` (possibly NULL), whose
 * parent is `xp`. */
static __always_inline void rb_delete_fixup(struct rb_tree __arena *t, struct rb_node __arena *x,
				       struct rb_node __arena *xp)
{
	struct rb_node __arena *w;

	for (;;) {
		if (rb_is_red(x) || !xp)
			break;
		if (xp->left == x) {
			w = xp->right;
			if (!w)
				break;
			if (w->red) {
				w->red = RB_BLACK;
				xp->red = RB_RED;
				rb_rotate_left(t, xp);
				w = xp->right;
				if (!w)
					break;
			}
			if (!rb_is_red(w->left) && !rb_is_red(w->right)) {
				w->red = RB_RED;
				x = xp;
				xp = x->parent;
			} else {
				if (!rb_is_red(w->right)) {
					w->left->red = RB_BLACK;
					w->red = RB_RED;
					rb_rotate_right(t, w);
					w = xp->right;
				}
				w->red = xp->red;
				xp->red = RB_BLACK;
				if (w->right)
					w->right->red = RB_BLACK;
				rb_rotate_left(t, xp);
				x = t->root;
				break;
			}
		} else {
			w = xp->left;
			if (!w)
				break;
			if (w->red) {
				w->red = RB_BLACK;
				xp->red = RB_RED;
				rb_rotate_right(t, xp);
				w = xp->left;
				if (!w)
					break;
			}
			if (!rb_is_red(w->left) && !rb_is_red(w->right)) {
				w->red = RB_RED;
				x = xp;
				xp = x->parent;
			} else {
				if (!rb_is_red(w->left)) {
					w->right->red = RB_BLACK;
					w->red = RB_RED;
					rb_rotate_left(t, w);
					w = xp->left;
				}
				w->red = xp->red;
				xp->red = RB_BLACK;
				if (w->left)
					w->left->red = RB_BLACK;
				rb_rotate_right(t, xp);
				x = t->root;
				break;
			}
		}
		kflex_cond_break;
	}
	if (x)
		x->red = RB_BLACK;
}

/* The node holding `k`, or NULL; *ok is false when the loop budget cut the search short. */
static __always_inline struct rb_node __arena *rb_find(struct rb_tree __arena *t,
						       const struct rb_key *k, bool *ok)
{
	struct rb_node __arena *n = t->root;
	bool done = false;

	for (;;) {
		int c;

		if (!n) {
			done = true;
			break;
		}
		c = rb_key_cmp(k, n);
		if (c == 0) {
			done = true;
			break;
		}
		n = c < 0 ? n->left : n->right;
		kflex_cond_break;
	}
	*ok = done;
	return n;
}

/* Lookup: copies the value into the op. DS_FOUND, DS_ABSENT or -DS_EBUSY. */
static __always_inline int rb_lookup(struct rb_tree __arena *t, struct ds_op __arena *op)
{
	struct rb_node __arena *n;
	struct rb_key k;
	bool ok;

	rb_key_load(&k, op->key_w);
	n = rb_find(t, &k, &ok);
	if (!ok)
		return -DS_EBUSY;
	if (!n)
		return DS_ABSENT;
	ds_value_copy(op->value_w, n->value);
	return DS_FOUND;
}

/* Insert or replace: DS_INSERTED, DS_REPLACED, -DS_ENOMEM or -DS_EBUSY. `ac` is the calling CPU's
 * allocator state. */
static __always_inline int rb_update(struct rb_tree __arena *t, struct ds_op __arena *op,
				     struct kflex_alloc_cpu __arena *ac)
{
	struct rb_node __arena *parent = NULL, *n = t->root, *z, *nil;
	struct rb_key k;
	bool done = false;
	int c = 0;

	rb_key_load(&k, op->key_w);
	for (;;) {
		if (!n) {
			done = true;
			break;
		}
		c = rb_key_cmp(&k, n);
		if (c == 0) {
			ds_value_copy(n->value, op->value_w);
			return DS_REPLACED;
		}
		parent = n;
		n = c < 0 ? n->left : n->right;
		kflex_cond_break;
	}
	if (!done)
		return -DS_EBUSY;

	z = kflex_malloc_on(ac, sizeof(struct rb_node));
	if (!z)
		return -DS_ENOMEM;
	/* An opaque NULL: adjacent stores of a constant zero would be merged into a memset, which
	 * clang-19 lowers for BPF without the heap address-space cast. */
	nil = NULL;
	barrier_var(nil);
	ds_key_copy(z->key, op->key_w);
	ds_value_copy(z->value, op->value_w);
	z->left = nil;
	z->right = nil;
	z->parent = parent;
	z->red = RB_RED;
	if (!parent)
		t->root = z;
	else if (c < 0)
		parent->left = z;
	else
		parent->right = z;
	t->size++;
	kflex_commit_on(ac);
	rb_insert_fixup(t, z);
	return DS_INSERTED;
}

/* Delete: DS_REMOVED, DS_ABSENT or -DS_EBUSY. `ac` is the calling CPU's allocator state. */
static __always_inline int rb_delete(struct rb_tree __arena *t, struct ds_op __arena *op,
				     struct kflex_alloc_cpu __arena *ac)
{
	struct rb_node __arena *z, *y, *x, *xp;
	struct rb_key k;
	__u64 removed_red;
	bool ok;

	rb_key_load(&k, op->key_w);
	z = rb_find(t, &k, &ok);
	if (!ok)
		return -DS_EBUSY;
	if (!z)
		return DS_ABSENT;

	if (!z->left || !z->right) {
		/* At most one child: it takes z's place. */
		x = z->left ? z->left : z->right;
		xp = z->parent;
		removed_red = z->red;
		rb_replace_child(t, z, x);
	} else {
		/* Two children: z's successor y (leftmost of the right subtree) takes z's place. */
		bool found = false;

		y = z->right;
		for (;;) {
			struct rb_node __arena *l = y->left;

			if (!l) {
				found = true;
				break;
			}
			y = l;
			kflex_cond_break;
		}
		if (!found)
			return -DS_EBUSY;
		removed_red = y->red;
		x = y->right;
		if (y->parent == z) {
			xp = y;
		} else {
			xp = y->parent;
			rb_replace_child(t, y, x);
			y->right = z->right;
			y->right->parent = y;
		}
		rb_replace_child(t, z, y);
		y->left = z->left;
		y->left->parent = y;
		y->red = z->red;
	}
	t->size--;
	kflex_free_on(ac, z);
	if (!removed_red)
		rb_delete_fixup(t, x, xp);
	return DS_REMOVED;
}

#endif /* DS_RBTREE_H */
