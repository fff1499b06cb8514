//! Runtime behaviour of `#[derive(Trace)]`: the constants it computes, and
//! cycles through derived types that the collector must (or must not) free.
//!
//! The collector is per thread and libtest runs each test on its own thread,
//! so every test starts with an empty heap and its own drop log.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

use gencc::{Finalize, Gc, Trace};

thread_local! {
    /// The ids of the `Dropped` values dropped so far on this thread.
    static DROPPED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// How many times a `Finalize::finalize` of this file ran on this thread.
    static FINALIZED: Cell<u32> = const { Cell::new(0) };
}

/// A tuple struct that logs its id when dropped; every node below owns one,
/// so the log says which nodes were destroyed, and how many times.
#[derive(Trace)]
struct Dropped(u32);

impl Drop for Dropped {
    fn drop(&mut self) {
        DROPPED.with(|log| log.borrow_mut().push(self.0));
    }
}

/// The sorted drop log.
fn dropped() -> Vec<u32> {
    let mut log = DROPPED.with(|log| log.borrow().clone());
    log.sort_unstable();
    log
}

/// A mutable, optional edge.
type Edge<T> = RefCell<Option<Gc<T>>>;

fn edge<T: Trace + 'static>() -> Edge<T> {
    RefCell::new(None)
}

fn link<T: Trace + 'static>(from: &Edge<T>, to: &Gc<T>) {
    *from.borrow_mut() = Some(to.clone());
}

/// `T::NEEDS_TRACE`, read at run time so that a wrong value fails one test
/// instead of the whole file's compilation.
fn needs_trace<T: Trace>() -> bool {
    T::NEEDS_TRACE
}

/// `T::NEEDS_TRACE` for the type of a value, which may borrow locals.
fn needs_trace_of<T: Trace>(_: &T) -> bool {
    T::NEEDS_TRACE
}

/// `T::HAS_FINALIZER`, read at run time.
fn has_finalizer<T: Trace>() -> bool {
    T::HAS_FINALIZER
}

// --- The constants ----------------------------------------------------------

#[derive(Trace)]
struct Plain {
    count: u32,
    name: String,
}

#[derive(Trace)]
struct Linked {
    value: u32,
    next: Option<Gc<Self>>,
}

#[derive(Trace)]
struct Wrapper<T>(T);

#[derive(Trace)]
struct Unit;

#[derive(Trace)]
struct EmptyBraces {}

#[derive(Trace)]
struct EmptyParens();

#[derive(Trace)]
enum Fieldless {
    A,
    B,
}

#[derive(Trace)]
enum Uninhabited {}

#[test]
fn plain_data_needs_no_trace() {
    assert!(!needs_trace::<Plain>());
    assert!(!has_finalizer::<Plain>());
    let plain = Gc::new(Plain {
        count: 1,
        name: "plain".into(),
    });
    assert!(!Gc::is_tracked(&plain));
    assert_eq!((plain.count, plain.name.as_str()), (1, "plain"));
}

#[test]
fn a_handle_field_needs_trace() {
    assert!(needs_trace::<Linked>());
    let tail = Gc::new(Linked {
        value: 1,
        next: None,
    });
    let head = Gc::new(Linked {
        value: 0,
        next: Some(tail),
    });
    assert!(Gc::is_tracked(&head));
    assert_eq!(head.next.as_ref().map(|next| next.value), Some(1));
}

#[test]
fn generic_needs_trace_follows_the_parameter() {
    assert!(!needs_trace::<Wrapper<u8>>());
    assert!(!needs_trace::<Wrapper<Wrapper<String>>>());
    assert!(needs_trace::<Wrapper<Gc<Linked>>>());
    assert!(needs_trace::<Wrapper<Vec<Option<Gc<u8>>>>>());
}

#[test]
fn types_without_fields_need_no_trace() {
    assert!(!needs_trace::<Unit>());
    assert!(!needs_trace::<EmptyBraces>());
    assert!(!needs_trace::<EmptyParens>());
    assert!(!needs_trace::<Fieldless>());
    assert!(!needs_trace::<Uninhabited>());
    // Allocating and collecting them exercises their (empty) `trace`.
    let values = (
        Gc::new(Unit),
        Gc::new(EmptyBraces {}),
        Gc::new(EmptyParens()),
    );
    let choices = (Gc::new(Fieldless::A), Gc::new(Fieldless::B));
    assert_eq!(gencc::collect(), 0);
    drop((values, choices));
}

/// An enum whose variants hold handles in some variants only.
#[derive(Trace)]
enum Mixed<T> {
    Nothing,
    Value(T),
    Handle { target: Gc<u32> },
}

#[test]
fn enum_needs_trace_covers_every_variant() {
    // `Handle` can hold a handle whatever `T` is.
    assert!(needs_trace::<Mixed<u8>>());
    assert!(needs_trace::<Mixed<Gc<u8>>>());
    let values = [
        Gc::new(Mixed::Nothing),
        Gc::new(Mixed::Value(3)),
        Gc::new(Mixed::Handle { target: Gc::new(4) }),
    ];
    assert_eq!(gencc::collect(), 0);
    assert!(matches!(*values[1], Mixed::Value(3)));
}

/// Lifetime, type and const parameters, a default, and a where clause.
#[derive(Trace)]
struct Everything<'a, T: Clone, const N: usize, U = u8>
where
    U: Default,
{
    #[trace(skip)]
    text: &'a str,
    items: [T; N],
    extra: U,
    marker: PhantomData<&'a ()>,
}

#[test]
fn lifetimes_consts_and_where_clauses() {
    let owned = String::from("not 'static");
    let borrowed: Everything<'_, u8, 2> = Everything {
        text: &owned,
        items: [1, 2],
        extra: 3,
        marker: PhantomData,
    };
    // The derive does not require `'static`: this value borrows a local.
    assert!(!needs_trace_of(&borrowed));
    assert_eq!(borrowed.text, "not 'static");
    assert!(needs_trace::<Everything<'static, Gc<u8>, 1>>());
    assert!(needs_trace::<Everything<'static, u8, 1, Option<Gc<u8>>>>());
    assert!(!needs_trace::<Everything<'static, u8, 0, ()>>());
}

/// A type that contains itself other than through `Gc`.
#[derive(Trace)]
struct Tree {
    label: u32,
    children: Vec<Tree>,
}

#[test]
fn recursive_types_compile_and_need_trace() {
    // The constant cannot be computed from itself; the derive answers `true`.
    assert!(needs_trace::<Tree>());
    let tree = Gc::new(Tree {
        label: 0,
        children: vec![Tree {
            label: 1,
            children: Vec::new(),
        }],
    });
    assert_eq!(gencc::collect(), 0);
    assert_eq!(tree.children[0].label, 1);
}

// --- `#[trace(skip)]` -------------------------------------------------------

/// A struct whose only handle is skipped.
#[derive(Trace)]
struct OnlySkipped {
    count: u32,
    #[trace(skip)]
    hidden: Gc<u32>,
}

#[test]
fn skipped_fields_do_not_count_toward_needs_trace() {
    assert!(!needs_trace::<OnlySkipped>());
    let value = Gc::new(OnlySkipped {
        count: 1,
        hidden: Gc::new(2),
    });
    assert_eq!(value.count + *value.hidden, 3);
}

/// A resource type of the user's that does not implement `Trace` at all.
struct Handle(u32);

/// A node with a field whose type does not implement `Trace` at all.
#[derive(Trace)]
struct WithHandle {
    id: Dropped,
    #[trace(skip)]
    handle: Handle,
    next: Edge<WithHandle>,
}

#[test]
fn a_skipped_field_needs_no_trace_impl_and_the_rest_is_traced() {
    let node = Gc::new(WithHandle {
        id: Dropped(1),
        handle: Handle(42),
        next: edge(),
    });
    assert_eq!(node.handle.0, 42);
    link(&node.next, &node); // a self-cycle through the traced field
    drop(node);
    assert_eq!(gencc::collect(), 1);
    assert_eq!(dropped(), [1]);
}

/// A node whose edge is skipped: the collector must treat it as external.
#[derive(Trace)]
struct Hidden {
    id: Dropped,
    #[trace(skip)]
    next: Edge<Hidden>,
}

#[test]
fn a_cycle_through_a_skipped_field_leaks() {
    let a = Gc::new(Hidden {
        id: Dropped(1),
        next: edge(),
    });
    let b = Gc::new(Hidden {
        id: Dropped(2),
        next: edge(),
    });
    link(&a.next, &b);
    link(&b.next, &a);
    let weak = Gc::downgrade(&a);
    drop((a, b));

    // Unreported handles count as references from outside the heap.
    assert_eq!(gencc::collect(), 0);
    assert_eq!(dropped(), [] as [u32; 0]);

    // Still alive: break the cycle by hand, and both go by reference counting.
    let a = weak.upgrade().expect("a leaked cycle stays alive");
    let b = a.next.borrow_mut().take().expect("a -> b");
    drop(a);
    b.next.borrow_mut().take();
    drop(b);
    assert_eq!(dropped(), [1, 2]);
}

// --- Collection of cycles through derived types -----------------------------

#[derive(Trace)]
struct Node {
    id: Dropped,
    next: Edge<Node>,
}

fn node(id: u32) -> Gc<Node> {
    Gc::new(Node {
        id: Dropped(id),
        next: edge(),
    })
}

#[test]
fn a_cycle_of_named_structs_is_collected_once() {
    let nodes = [node(1), node(2), node(3)];
    for (from, to) in nodes.iter().zip(nodes.iter().cycle().skip(1)) {
        link(&from.next, to);
    }
    // Reachable from the roots: nothing to collect.
    assert_eq!(gencc::collect(), 0);
    assert_eq!(dropped(), [] as [u32; 0]);

    drop(nodes);
    assert_eq!(gencc::collect(), 3);
    assert_eq!(dropped(), [1, 2, 3]);
    assert_eq!(gencc::collect(), 0);
    assert_eq!(dropped(), [1, 2, 3]);
}

/// A tuple struct with two edges.
#[derive(Trace)]
struct Pair(Dropped, Edge<Pair>, Edge<Pair>);

#[test]
fn a_cycle_of_tuple_structs_is_collected() {
    let a = Gc::new(Pair(Dropped(1), edge(), edge()));
    let b = Gc::new(Pair(Dropped(2), edge(), edge()));
    link(&a.1, &a); // self-cycle
    link(&a.2, &b);
    link(&b.2, &a);
    drop(a);
    // `b` keeps `a` alive.
    assert_eq!(gencc::collect(), 0);
    drop(b);
    assert_eq!(gencc::collect(), 2);
    assert_eq!(dropped(), [1, 2]);
}

/// Every kind of variant, with the edges in different positions.
#[derive(Trace)]
enum Link {
    End,
    Tuple(Dropped, Edge<Link>),
    Named {
        next: Edge<Link>,
        label: String,
        id: Dropped,
    },
}

impl Link {
    fn next(&self) -> &Edge<Self> {
        match self {
            Self::Tuple(_, next) | Self::Named { next, .. } => next,
            Self::End => panic!("`End` has no edge"),
        }
    }
}

#[test]
fn a_cycle_through_enum_variants_is_collected() {
    let a = Gc::new(Link::Tuple(Dropped(1), edge()));
    let b = Gc::new(Link::Named {
        next: edge(),
        label: "b".into(),
        id: Dropped(2),
    });
    let c = Gc::new(Link::Tuple(Dropped(3), edge()));
    let end = Gc::new(Link::End);
    link(a.next(), &b);
    link(b.next(), &c);
    link(c.next(), &a);
    drop((a, b, c));
    assert_eq!(gencc::collect(), 3);
    assert_eq!(dropped(), [1, 2, 3]);
    assert!(matches!(*end, Link::End));
}

/// A generic node whose edge does not involve the parameter. The bound is
/// needed by `Gc<Generic<T>>` itself, which requires `Generic<T>: Trace`.
#[derive(Trace)]
struct Generic<T: Trace + 'static> {
    payload: T,
    next: Edge<Generic<T>>,
}

#[test]
fn a_cycle_of_generic_structs_is_collected() {
    assert!(needs_trace::<Generic<u8>>());
    let a = Gc::new(Generic {
        payload: Dropped(1),
        next: edge(),
    });
    let b = Gc::new(Generic {
        payload: Dropped(2),
        next: edge(),
    });
    link(&a.next, &b);
    link(&b.next, &a);
    drop((a, b));
    assert_eq!(gencc::collect(), 2);
    assert_eq!(dropped(), [1, 2]);
}

/// A generic struct whose only handles come from its parameter.
#[derive(Trace)]
struct Holder<T> {
    id: Dropped,
    held: T,
}

/// Closes the loop: a `Cyclic` holds an edge to a `Cyclic` inside a `Holder`.
#[derive(Trace)]
struct Cyclic(Holder<Edge<Cyclic>>);

#[test]
fn a_cycle_through_a_generic_parameter_is_collected() {
    assert!(!needs_trace::<Holder<u8>>());
    assert!(needs_trace::<Holder<Edge<Cyclic>>>());
    let a = Gc::new(Cyclic(Holder {
        id: Dropped(1),
        held: edge(),
    }));
    let b = Gc::new(Cyclic(Holder {
        id: Dropped(2),
        held: edge(),
    }));
    link(&a.0.held, &b);
    link(&b.0.held, &a);
    drop((a, b));
    assert_eq!(gencc::collect(), 2);
    assert_eq!(dropped(), [1, 2]);
}

// --- `#[trace(finalize)]` ---------------------------------------------------

#[derive(Trace)]
#[trace(finalize)]
struct Resource {
    id: Dropped,
    next: Edge<Resource>,
}

impl Finalize for Resource {
    fn finalize(this: &Gc<Self>) {
        assert!(this.next.try_borrow().is_ok(), "the object is whole");
        FINALIZED.with(|count| count.set(count.get() + 1));
    }
}

fn finalized() -> u32 {
    FINALIZED.with(Cell::get)
}

#[test]
fn finalize_sets_has_finalizer() {
    assert!(has_finalizer::<Resource>());
    assert!(!has_finalizer::<Node>());
}

#[test]
fn the_finalizer_runs_once_when_the_last_handle_drops() {
    let resource = Gc::new(Resource {
        id: Dropped(1),
        next: edge(),
    });
    let clone = resource.clone();
    drop(resource);
    assert_eq!(finalized(), 0);
    drop(clone);
    assert_eq!(finalized(), 1);
    assert_eq!(dropped(), [1]);
}

#[test]
fn the_finalizer_runs_once_per_object_of_a_collected_cycle() {
    let a = Gc::new(Resource {
        id: Dropped(1),
        next: edge(),
    });
    let b = Gc::new(Resource {
        id: Dropped(2),
        next: edge(),
    });
    link(&a.next, &b);
    link(&b.next, &a);
    drop((a, b));
    assert_eq!(finalized(), 0);
    assert_eq!(gencc::collect(), 2);
    assert_eq!(finalized(), 2);
    assert_eq!(dropped(), [1, 2]);
}

/// A finalizer that resurrects its object once, into `GRAVE`.
#[derive(Trace)]
#[trace(finalize)]
struct Phoenix {
    id: Dropped,
}

thread_local! {
    static GRAVE: RefCell<Vec<Gc<Phoenix>>> = const { RefCell::new(Vec::new()) };
}

impl Finalize for Phoenix {
    fn finalize(this: &Gc<Self>) {
        FINALIZED.with(|count| count.set(count.get() + 1));
        GRAVE.with(|grave| grave.borrow_mut().push(this.clone()));
    }
}

#[test]
fn a_resurrected_object_is_not_finalized_again() {
    let phoenix = Gc::new(Phoenix { id: Dropped(1) });
    assert!(!Gc::is_finalized(&phoenix));
    drop(phoenix);
    assert_eq!(finalized(), 1);
    assert_eq!(dropped(), [] as [u32; 0], "resurrected, not destroyed");

    let phoenix = GRAVE
        .with(|grave| grave.borrow_mut().pop())
        .expect("resurrected");
    assert!(Gc::is_finalized(&phoenix));
    assert_eq!(phoenix.id.0, 1);
    drop(phoenix);
    assert_eq!(finalized(), 1, "a finalizer runs at most once");
    assert_eq!(dropped(), [1]);
}
