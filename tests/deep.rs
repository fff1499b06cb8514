//! Million-node graphs, in a debug build, on a thread with the 8 MiB stack of
//! a main thread: neither reference counting nor the collector may recurse in
//! the size of the graph. A drop log checks that every node is dropped
//! exactly once.

use std::cell::RefCell;
use std::time::Instant;

use gencc::{Gc, Trace, Tracer};

const N: usize = 1_000_000;

thread_local! {
    /// `DROPS[id]`: how many times node `id` was dropped on this thread.
    static DROPS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn reset_drops(nodes: usize) {
    DROPS.with(|d| *d.borrow_mut() = vec![0; nodes]);
}

/// How many nodes were dropped (at least once) so far.
fn dropped() -> usize {
    DROPS.with(|d| d.borrow().iter().filter(|&&n| n > 0).count())
}

/// Asserts that every node was dropped exactly once.
fn assert_all_dropped_once() {
    DROPS.with(|d| {
        let d = d.borrow();
        if let Some((id, &n)) = d.iter().enumerate().find(|(_, &n)| n != 1) {
            panic!("node {id} dropped {n} times (of {} nodes)", d.len());
        }
    });
}

type Edge<const E: usize> = RefCell<Option<Gc<Node<E>>>>;

/// A node with `E` optional edges and an id for the drop log.
struct Node<const E: usize> {
    id: u32,
    edges: [Edge<E>; E],
}

// SAFETY: the edges are the only fields that can hold handles; the node owns
// each alone and reports each at most once, reading through `try_borrow`, so
// `trace` mutates nothing.
unsafe impl<const E: usize> Trace for Node<E> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        for edge in &self.edges {
            if let Ok(edge) = edge.try_borrow() {
                if let Some(target) = &*edge {
                    target.trace(tracer);
                }
            }
        }
    }
}

impl<const E: usize> Drop for Node<E> {
    fn drop(&mut self) {
        DROPS.with(|d| d.borrow_mut()[self.id as usize] += 1);
    }
}

fn node<const E: usize>(id: usize) -> Gc<Node<E>> {
    Gc::new(Node {
        id: id.try_into().unwrap(),
        edges: std::array::from_fn(|_| RefCell::new(None)),
    })
}

fn link<const E: usize>(from: &Gc<Node<E>>, edge: usize, to: &Gc<Node<E>>) {
    *from.edges[edge].borrow_mut() = Some(to.clone());
}

/// Runs `f` on a fresh thread whose stack is the usual 8 MiB of a main
/// thread, re-raising its panic, and prints how long it took.
fn on_main_sized_stack(name: &str, f: impl FnOnce() + Send + 'static) {
    let start = Instant::now();
    let result = std::thread::Builder::new()
        .name(name.to_owned())
        .stack_size(8 << 20)
        .spawn(f)
        .unwrap()
        .join();
    eprintln!("{name}: {:.2?}", start.elapsed());
    if let Err(payload) = result {
        std::panic::resume_unwind(payload);
    }
}

/// `count` nodes, node `i` pointing at node `i + 1` through edge 0, and a
/// handle to each.
fn chain<const E: usize>(count: usize) -> Vec<Gc<Node<E>>> {
    let nodes: Vec<Gc<Node<E>>> = (0..count).map(node).collect();
    for pair in nodes.windows(2) {
        link(&pair[0], 0, &pair[1]);
    }
    nodes
}

#[test]
#[cfg_attr(miri, ignore)]
fn dropping_the_head_of_a_million_node_chain() {
    on_main_sized_stack("chain", || {
        reset_drops(N);
        // Built from the tail, so only `head` holds it.
        let mut head: Option<Gc<Node<1>>> = None;
        for id in (0..N).rev() {
            let n = node(id);
            *n.edges[0].borrow_mut() = head.take();
            head = Some(n);
        }
        assert_eq!(dropped(), 0);
        drop(head);
        assert_all_dropped_once();
        assert_eq!(gencc::collect(), 0);
        assert_all_dropped_once();
    });
}

#[test]
#[cfg_attr(miri, ignore)]
fn collecting_a_million_node_ring() {
    on_main_sized_stack("ring", || {
        reset_drops(N);
        let nodes = chain::<1>(N);
        link(&nodes[N - 1], 0, &nodes[0]);
        drop(nodes);
        assert_eq!(dropped(), 0, "a ring is not freed by reference counting");
        assert_eq!(gencc::collect(), N);
        assert_all_dropped_once();
        assert_eq!(gencc::collect(), 0);
    });
}

#[test]
#[cfg_attr(miri, ignore)]
fn collecting_a_binary_tree_with_parent_links() {
    const LEVELS: u32 = 20;
    const NODES: usize = (1 << LEVELS) - 1;
    const LEFT: usize = 0;
    const RIGHT: usize = 1;
    const PARENT: usize = 2;
    on_main_sized_stack("tree", || {
        reset_drops(NODES);
        let root = node::<3>(0);
        let mut level = vec![root.clone()];
        let mut next_id = 1;
        for _ in 1..LEVELS {
            let mut below = Vec::with_capacity(level.len() * 2);
            for parent in &level {
                for side in [LEFT, RIGHT] {
                    let child = node(next_id);
                    next_id += 1;
                    link(parent, side, &child);
                    link(&child, PARENT, parent);
                    below.push(child);
                }
            }
            level = below;
        }
        assert_eq!(next_id, NODES);
        drop(level);
        assert_eq!(Gc::strong_count(&root), 3, "the local and two children");
        drop(root);
        assert_eq!(dropped(), 0, "every edge is a cycle");
        assert_eq!(gencc::collect(), NODES);
        assert_all_dropped_once();
    });
}

#[test]
#[cfg_attr(miri, ignore)]
fn collecting_a_million_node_doubly_linked_list() {
    on_main_sized_stack("doubly", || {
        reset_drops(N);
        let nodes = chain::<2>(N);
        for pair in nodes.windows(2) {
            link(&pair[1], 1, &pair[0]);
        }
        drop(nodes);
        assert_eq!(dropped(), 0);
        assert_eq!(gencc::collect(), N);
        assert_all_dropped_once();
    });
}

#[test]
#[cfg_attr(miri, ignore)]
fn a_live_million_node_chain_hanging_off_a_cycle() {
    const NEXT: usize = 0;
    const CHAIN: usize = 1;
    on_main_sized_stack("live-chain", || {
        reset_drops(N + 2);
        // The chain first, so that in list order all of it comes before the
        // only object referenced from outside: the scan finds every chain
        // node tentatively unreachable and must bring all of them back.
        let nodes = chain::<2>(N);
        let head = nodes[0].clone();
        drop(nodes);
        // a <-> b, and a -> chain.
        let a = node::<2>(N);
        let b = node::<2>(N + 1);
        link(&a, NEXT, &b);
        link(&b, NEXT, &a);
        link(&a, CHAIN, &head);
        drop((b, head));

        // `a` is the one external handle, and reaches everything.
        assert_eq!(gencc::collect(), 0);
        assert_eq!(dropped(), 0);
        assert_eq!(gencc::collect_generation(0), Ok(0));
        assert_eq!(gencc::collect(), 0, "and stays reachable");
        assert_eq!(dropped(), 0);

        drop(a);
        assert_eq!(dropped(), 0, "the cycle holds the chain");
        assert_eq!(gencc::collect(), N + 2);
        assert_all_dropped_once();
    });
}
