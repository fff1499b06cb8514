//! Circular doubly linked lists of tracked objects, with a sentinel node.
//!
//! Every operation is O(1) except walking. The links live in the objects
//! themselves, so moving an object between generations allocates nothing.
//! An object that is in no list has null links; that is how "tracked" is told
//! apart from "untracked" at run time. Two exceptions, where nothing reads
//! the links as a list's: an object the collector's search holds (its `prev`
//! is a scratch word, and the collector knows it holds it), and an object
//! whose death has started (no strong handle is left to ask). Both are
//! unlinked with [`List::take_out`], every other unlink with
//! [`List::remove`].

use core::ptr::{self, NonNull};

use crate::header::{Header, Links};
use crate::primitive::cell::Cell;

pub(crate) struct List {
    head: Links,
    len: Cell<usize>,
}

impl List {
    pub(crate) const fn new() -> Self {
        List {
            head: Links::new(),
            len: Cell::new(0),
        }
    }

    /// Points the sentinel at itself. Must be called once the list has its
    /// final address, before any other method.
    pub(crate) fn init(&self) {
        let s = self.sentinel();
        self.head.next.set(s.as_ptr());
        self.head.prev.set(s.as_ptr());
    }

    #[inline]
    pub(crate) fn sentinel(&self) -> NonNull<Links> {
        NonNull::from(&self.head)
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        ptr::eq(self.head.next.get(), &self.head)
    }

    /// First node, or `None` when empty.
    #[inline]
    pub(crate) fn first(&self) -> Option<NonNull<Links>> {
        let n = self.head.next.get();
        if ptr::eq(n, &self.head) {
            None
        } else {
            NonNull::new(n.cast_mut())
        }
    }

    /// Node after `node`, or `None` at the end.
    ///
    /// # Safety
    ///
    /// - `node` must currently be linked in this list, with real (not scratch)
    ///   `next` pointers along the list.
    #[inline]
    pub(crate) unsafe fn next_of(&self, node: NonNull<Links>) -> Option<NonNull<Links>> {
        // SAFETY: linked nodes are alive (an object unlinks before it is
        // freed), guaranteed by the caller.
        let n = unsafe { node.as_ref() }.next.get();
        if ptr::eq(n, &self.head) {
            None
        } else {
            NonNull::new(n.cast_mut())
        }
    }

    /// Appends an unlinked node at the tail.
    ///
    /// # Safety
    ///
    /// - `node` must be the links of a live tracked object that is in no list.
    /// - This list's `prev` pointers must be real pointers (not during the
    ///   detection passes).
    #[inline]
    pub(crate) unsafe fn push_back(&self, node: NonNull<Links>) {
        // SAFETY: the tail is either the sentinel or a linked, live node.
        unsafe {
            let tail = self.head.prev.get();
            node.as_ref().prev.set(tail);
            node.as_ref().next.set(&self.head);
            (*tail).next.set(node.as_ptr());
        }
        self.head.prev.set(node.as_ptr());
        self.len.set(self.len.get() + 1);
    }

    /// Unlinks `node` from this list.
    ///
    /// # Safety
    ///
    /// - `node` must be linked in this list, whose `prev` pointers are real.
    #[inline]
    pub(crate) unsafe fn remove(&self, node: NonNull<Links>) {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.take_out(node);
            let n = node.as_ref();
            n.next.set(ptr::null());
            n.prev.set(ptr::null());
        }
    }

    /// Unlinks `node` from this list, leaving its own links as they were,
    /// for a caller that overwrites them at once: the search of a collection,
    /// which turns `prev` into a scratch word and treats every object it set
    /// up as in no list, whatever `next` says.
    ///
    /// # Safety
    ///
    /// - As for [`List::remove`]. Until the caller overwrites them, the
    ///   node's links are stale: nothing may read them as a list's.
    #[inline]
    pub(crate) unsafe fn take_out(&self, node: NonNull<Links>) {
        // SAFETY: the neighbours of a linked node are linked nodes or the
        // sentinel, all alive.
        unsafe {
            let n = node.as_ref();
            let (prev, next) = (n.prev.get(), n.next.get());
            (*prev).next.set(next);
            (*next).prev.set(prev);
        }
        self.len.set(self.len.get() - 1);
    }

    /// Moves every node of `from` to the tail of `self`, in O(1).
    pub(crate) fn append_all(&self, from: &List) {
        if from.is_empty() {
            return;
        }
        // SAFETY: both lists are well formed (real pointers) and distinct;
        // every node reached is linked and alive.
        unsafe {
            let (first, last) = (from.head.next.get(), from.head.prev.get());
            let tail = self.head.prev.get();
            (*tail).next.set(first);
            (*first).prev.set(tail);
            (*last).next.set(&self.head);
            self.head.prev.set(last);
        }
        self.len.set(self.len.get() + from.len.get());
        from.init();
        from.len.set(0);
    }

    /// Calls `f` on the header of every object in the list, which `f` must
    /// not unlink.
    pub(crate) fn each_header(&self, mut f: impl FnMut(&Header)) {
        let mut cur = self.first();
        while let Some(node) = cur {
            // SAFETY: linked nodes are live tracked objects, and the `next`
            // chain of a list is always real (only `prev` ever holds a
            // scratch word); `f` does not unlink, so `next_of` stays valid.
            unsafe {
                f(Header::from_links(node).as_ref());
                cur = self.next_of(node);
            }
        }
    }

    /// Moves every object of `from` to the tail of this list, with generation
    /// number `gen`.
    pub(crate) fn take_all_as(&self, from: &List, gen: usize) {
        from.each_header(|h| h.set_generation(gen));
        self.append_all(from);
    }

    /// Leaves the list empty without touching its nodes, whose links are
    /// stale from here on: for a caller that relinks every one of them.
    pub(crate) fn forget_all(&self) {
        self.init();
        self.len.set(0);
    }

    /// Rebuilds the `prev` pointers from the `next` chain and recounts. Used
    /// after the detection passes, which keep `next` intact but store scratch
    /// counts in `prev`.
    pub(crate) fn relink(&self) {
        let mut prev: *const Links = &self.head;
        let mut len = 0;
        let mut cur = self.head.next.get();
        while !ptr::eq(cur, &self.head) {
            // SAFETY: the `next` chain of a list is intact and leads through
            // live nodes back to the sentinel.
            unsafe {
                (*cur).prev.set(prev);
                prev = cur;
                cur = (*cur).next.get();
            }
            len += 1;
        }
        self.head.prev.set(prev);
        self.len.set(len);
    }
}
