//! The `Trace` impls for standard and dependency types: their `NEEDS_TRACE`
//! constants, and cycles built through each container family.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, LinkedList, VecDeque};
use std::rc::Rc;

use gencc::{collect, Gc, Trace, Tracer};
use indexmap::IndexMap;
use smallvec::SmallVec;

thread_local! {
    static DROPPED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// The ids of the nodes dropped so far on this thread, sorted.
fn dropped() -> Vec<u32> {
    let mut ids = DROPPED.with(|d| d.borrow().clone());
    ids.sort_unstable();
    ids
}

/// Defines a node type `$name { id: u32, links: $links }` with empty links
/// from `$name::new(id)`, that records its id in `DROPPED` when dropped and
/// traces `links`.
macro_rules! node {
    ($name:ident, $links:ty) => {
        struct $name {
            id: u32,
            links: $links,
        }

        impl $name {
            fn new(id: u32) -> Self {
                Self {
                    id,
                    links: Default::default(),
                }
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                DROPPED.with(|d| d.borrow_mut().push(self.id));
            }
        }

        // SAFETY: `links` is the only field that can hold a handle; the node
        // owns it and reports it once.
        unsafe impl Trace for $name {
            fn trace(&self, tracer: &mut Tracer<'_>) {
                self.links.trace(tracer);
            }
        }
    };
}

node!(Node, RefCell<Vec<Gc<Node>>>);

const _: () = assert!(!<String as Trace>::NEEDS_TRACE);
const _: () = assert!(!<Vec<u64> as Trace>::NEEDS_TRACE);
const _: () = assert!(!<HashMap<String, u32> as Trace>::NEEDS_TRACE);
const _: () = assert!(!<Rc<Gc<Node>> as Trace>::NEEDS_TRACE);
const _: () = assert!(!<Rc<RefCell<Vec<Gc<Node>>>> as Trace>::NEEDS_TRACE);
const _: () = assert!(!<Option<Box<[u8]>> as Trace>::NEEDS_TRACE);
const _: () = assert!(!<(u8, &'static str, std::time::Duration) as Trace>::NEEDS_TRACE);

const _: () = assert!(<Vec<Gc<Node>> as Trace>::NEEDS_TRACE);
const _: () = assert!(<RefCell<Option<Gc<Node>>> as Trace>::NEEDS_TRACE);
const _: () = assert!(<Cell<Option<Gc<Node>>> as Trace>::NEEDS_TRACE);
const _: () = assert!(<(u8, Gc<Node>) as Trace>::NEEDS_TRACE);
const _: () = assert!(<IndexMap<u32, Gc<Node>> as Trace>::NEEDS_TRACE);
const _: () = assert!(<SmallVec<[Gc<Node>; 2]> as Trace>::NEEDS_TRACE);
const _: () = assert!(<Result<u8, Gc<Node>> as Trace>::NEEDS_TRACE);
const _: () = assert!(<HashMap<String, Gc<Node>> as Trace>::NEEDS_TRACE);

/// Builds nodes 1 and 2, links each to the other with `link(from, to)`, drops
/// both roots, and checks that one collection frees exactly those two nodes.
fn collect_two_cycle<N: Trace + 'static>(new: impl Fn(u32) -> N, link: impl Fn(&Gc<N>, Gc<N>)) {
    let a = Gc::new(new(1));
    let b = Gc::new(new(2));
    link(&a, b.clone());
    link(&b, a.clone());
    drop((a, b));
    assert!(dropped().is_empty(), "freed before any collection");
    assert_eq!(collect(), 2);
    assert_eq!(dropped(), [1, 2]);
    assert_eq!(collect(), 0);
}

#[test]
fn cycle_through_vec() {
    collect_two_cycle(Node::new, |from, to| from.links.borrow_mut().push(to));
}

#[test]
fn cycle_through_vec_deque_and_linked_list() {
    node!(N, RefCell<(VecDeque<Gc<N>>, LinkedList<Gc<N>>)>);
    collect_two_cycle(N::new, |from, to| {
        let mut links = from.links.borrow_mut();
        if from.id == 1 {
            links.0.push_back(to);
        } else {
            links.1.push_back(to);
        }
    });
}

#[test]
fn cycle_through_hash_map() {
    node!(N, RefCell<HashMap<u32, Gc<N>>>);
    collect_two_cycle(N::new, |from, to| {
        from.links.borrow_mut().insert(to.id, to);
    });
}

#[test]
fn cycle_through_btree_map() {
    node!(N, RefCell<BTreeMap<String, Gc<N>>>);
    collect_two_cycle(N::new, |from, to| {
        from.links.borrow_mut().insert(to.id.to_string(), to);
    });
}

#[test]
fn cycle_through_index_map() {
    node!(N, RefCell<IndexMap<u32, Gc<N>>>);
    collect_two_cycle(N::new, |from, to| {
        from.links.borrow_mut().insert(to.id, to);
    });
}

#[test]
fn cycle_through_small_vec() {
    node!(N, RefCell<SmallVec<[Gc<N>; 1]>>);
    collect_two_cycle(N::new, |from, to| {
        // The second push spills to the heap, so both layouts are traced.
        from.links.borrow_mut().push(to.clone());
        from.links.borrow_mut().push(to);
    });
}

#[test]
fn cycle_through_cell() {
    node!(N, Cell<Option<Gc<N>>>);
    collect_two_cycle(N::new, |from, to| from.links.set(Some(to)));
}

#[test]
fn cycle_through_tuple() {
    node!(N, RefCell<(u8, String, Option<Gc<N>>)>);
    collect_two_cycle(N::new, |from, to| from.links.borrow_mut().2 = Some(to));
}

#[test]
fn cycle_through_box() {
    node!(N, RefCell<Option<Box<Gc<N>>>>);
    collect_two_cycle(N::new, |from, to| {
        *from.links.borrow_mut() = Some(Box::new(to));
    });
}

#[test]
fn cycle_through_result() {
    node!(N, RefCell<Option<Result<Gc<N>, Gc<N>>>>);
    collect_two_cycle(N::new, |from, to| {
        let link = if from.id == 1 { Ok(to) } else { Err(to) };
        *from.links.borrow_mut() = Some(link);
    });
}

#[test]
fn cycle_through_rc_is_not_collected() {
    node!(N, Rc<RefCell<Option<Gc<N>>>>);
    let a = Gc::new(N::new(1));
    *a.links.borrow_mut() = Some(a.clone());
    let shared = Rc::clone(&a.links);
    drop(a);

    assert_eq!(collect(), 0);
    assert!(dropped().is_empty());

    // Break the cycle by hand so the test leaks nothing.
    let taken = shared.borrow_mut().take();
    drop(taken);
    assert_eq!(dropped(), [1]);
    drop(shared);
    assert_eq!(collect(), 0);
}

#[test]
fn mutably_borrowed_ref_cell_keeps_its_children() {
    let parent = Gc::new(Node::new(1));
    {
        let mut children = parent.links.borrow_mut();
        // Enough allocations to trigger automatic collections while the only
        // references to the children sit behind this `borrow_mut()`.
        let young_collections = gencc::stats()[0].collections;
        for id in 2..3002 {
            children.push(Gc::new(Node::new(id)));
        }
        assert!(gencc::stats()[0].collections > young_collections);
        assert_eq!(collect(), 0);
        assert!(dropped().is_empty());
        assert!(children.iter().map(|child| child.id).eq(2..3002));
    }

    let first_child = parent.links.borrow()[0].clone();
    first_child.links.borrow_mut().push(parent.clone());
    drop((parent, first_child));
    assert_eq!(collect(), 3001);
    assert!(dropped().into_iter().eq(1..3002));
}
