//! `Weak<T>`: empty handles, counts (as `std::rc::Weak`), identity, weak
//! handles to untracked types, and callbacks (`Gc::downgrade_with`): shared
//! registrations, refcount death, panics, re-entrancy and resurrected
//! referents.
//!
//! Every test runs on its own libtest thread, so each starts with a fresh heap
//! and fresh logs. The `Trace` impls are written by hand so this file does not
//! depend on the derive.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use gencc::{Finalize, Gc, Trace, Tracer, Weak};

thread_local! {
    static EVENTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static DROPS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    static KEPT: RefCell<Vec<Gc<Node>>> = const { RefCell::new(Vec::new()) };
    static SLOT: RefCell<Option<Weak<Node>>> = const { RefCell::new(None) };
    static RESURRECT: Cell<bool> = const { Cell::new(false) };
}

fn event(e: impl Into<String>) {
    let _ = EVENTS.try_with(|log| log.borrow_mut().push(e.into()));
}

fn events() -> Vec<String> {
    EVENTS.with(|log| log.borrow().clone())
}

fn drops_of(id: u32) -> usize {
    DROPS.with(|d| d.borrow().iter().filter(|&&x| x == id).count())
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<non-string panic>")
    }
}

/// A tracked node; its finalizer stores it in `KEPT` while `RESURRECT` is set.
struct Node {
    id: u32,
    edges: RefCell<Vec<Gc<Node>>>,
}

impl Node {
    fn gc(id: u32) -> Gc<Node> {
        Gc::new(Node {
            id,
            edges: RefCell::new(Vec::new()),
        })
    }
}

// SAFETY: `edges` is the only field holding handles, owned by the node and
// reported once; tracing mutates nothing.
unsafe impl Trace for Node {
    const HAS_FINALIZER: bool = true;

    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.edges.trace(tracer);
    }

    fn finalize(this: &Gc<Self>) {
        <Self as Finalize>::finalize(this)
    }
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        if RESURRECT.with(Cell::get) {
            KEPT.with(|k| k.borrow_mut().push(this.clone()));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = DROPS.try_with(|d| d.borrow_mut().push(self.id));
    }
}

fn link(from: &Gc<Node>, to: &Gc<Node>) {
    from.edges.borrow_mut().push(to.clone());
}

/// An untracked value that logs its drop.
struct Atom(u32);

// SAFETY: holds no handle and reports nothing.
unsafe impl Trace for Atom {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer<'_>) {}
}

impl Drop for Atom {
    fn drop(&mut self) {
        let _ = DROPS.try_with(|d| d.borrow_mut().push(self.0));
    }
}

// --- plain weak handles --------------------------------------------------------

#[test]
fn weak_new_never_upgrades() {
    let w: Weak<Node> = Weak::new();
    assert!(w.upgrade().is_none());
    assert_eq!(w.strong_count(), 0);
    assert_eq!(w.weak_count(), 0);
    let c = w.clone();
    assert!(c.upgrade().is_none());
    assert!(Weak::ptr_eq(&w, &c));
    assert!(Weak::ptr_eq(&w, &Weak::new()));
    assert!(Weak::<Node>::default().upgrade().is_none());
    assert!(Weak::<String>::new().upgrade().is_none());
    assert_eq!(format!("{w:?}"), "(Weak)");
}

#[test]
fn counts_match_std_rc() {
    let a = Node::gc(1);
    let r = Rc::new(1);
    assert_eq!(Gc::weak_count(&a), Rc::weak_count(&r));

    let w = Gc::downgrade(&a);
    let rw = Rc::downgrade(&r);
    assert_eq!((Gc::weak_count(&a), Gc::strong_count(&a)), (1, 1));
    assert_eq!((w.weak_count(), w.strong_count()), (1, 1));
    assert_eq!(
        (w.weak_count(), w.strong_count()),
        (rw.weak_count(), rw.strong_count())
    );

    let w2 = w.clone();
    let rw2 = rw.clone();
    let b = a.clone();
    let rb = r.clone();
    assert_eq!((w2.weak_count(), w2.strong_count()), (2, 2));
    assert_eq!(
        (w2.weak_count(), w2.strong_count()),
        (rw2.weak_count(), rw2.strong_count())
    );
    assert_eq!(Gc::weak_count(&b), 2);

    drop((a, r));
    assert_eq!((w.weak_count(), w.strong_count()), (2, 1));
    drop((b, rb));
    // Like std: once the last strong handle is gone, both counts read 0.
    assert_eq!((w.weak_count(), w.strong_count()), (0, 0));
    assert_eq!((rw.weak_count(), rw.strong_count()), (0, 0));
    assert!(w.upgrade().is_none() && w2.upgrade().is_none());
    assert_eq!(drops_of(1), 1);
}

#[test]
fn weak_count_counts_one_per_callback_handle() {
    let a = Node::gc(1);
    let w = Gc::downgrade_with(&a, |_| {});
    assert_eq!(Gc::weak_count(&a), 1);
    assert_eq!(w.weak_count(), 1);
    let w2 = w.clone();
    assert_eq!(Gc::weak_count(&a), 2);
    drop((w, w2));
    assert_eq!(Gc::weak_count(&a), 0);
}

#[test]
fn ptr_eq_is_identity_of_the_allocation() {
    let a = Node::gc(1);
    let b = Node::gc(1);
    let wa = Gc::downgrade(&a);
    assert!(Weak::ptr_eq(&wa, &Gc::downgrade(&a)));
    assert!(Weak::ptr_eq(&wa, &wa.clone()));
    assert!(!Weak::ptr_eq(&wa, &Gc::downgrade(&b)));
    assert!(!Weak::ptr_eq(&wa, &Weak::new()));
    let wa_cb = Gc::downgrade_with(&a, |_| {});
    assert!(Weak::ptr_eq(&wa, &wa_cb));
    drop(a);
    // Still the same allocation after death.
    assert!(Weak::ptr_eq(&wa, &wa_cb));
    assert!(wa_cb.upgrade().is_none());
    drop(b);
}

#[test]
fn a_weak_handle_is_one_word_with_or_without_a_callback() {
    use std::mem::size_of;
    assert_eq!(size_of::<Weak<Node>>(), size_of::<std::rc::Weak<Node>>());
    assert_eq!(size_of::<Option<Weak<Node>>>(), size_of::<usize>());
    let a = Node::gc(1);
    let cb = Gc::downgrade_with(&a, |_| {});
    let cb2 = cb.clone();
    assert!(Gc::ptr_eq(&cb2.upgrade().unwrap(), &a));
    assert_eq!((cb.strong_count(), cb.weak_count()), (1, 2));
    drop(cb);
    assert_eq!(cb2.weak_count(), 1);
}

#[test]
fn weak_to_untracked_types() {
    let s = Gc::new(String::from("text"));
    assert!(!Gc::is_tracked(&s));
    let w = Gc::downgrade(&s);
    assert_eq!(w.upgrade().as_deref().map(String::as_str), Some("text"));
    assert_eq!((w.strong_count(), w.weak_count()), (1, 1));
    drop(s);
    assert!(w.upgrade().is_none());
    assert_eq!((w.strong_count(), w.weak_count()), (0, 0));

    let atom = Gc::new(Atom(7));
    let fired = Rc::new(Cell::new(0));
    let f = fired.clone();
    let cb = Gc::downgrade_with(&atom, move |w| {
        assert!(w.upgrade().is_none());
        f.set(f.get() + 1);
    });
    let plain = Gc::downgrade(&atom);
    drop(atom);
    assert_eq!(fired.get(), 1);
    assert_eq!(drops_of(7), 1);
    assert!(cb.upgrade().is_none() && plain.upgrade().is_none());
}

// --- callbacks -----------------------------------------------------------------

/// A callback that counts its calls and checks the weak handle is dead.
fn counter(fired: &Rc<Cell<u32>>) -> impl FnOnce(&Weak<Node>) + 'static {
    let fired = fired.clone();
    move |w| {
        assert!(w.upgrade().is_none() && w.strong_count() == 0);
        fired.set(fired.get() + 1);
    }
}

#[test]
fn clone_of_a_callback_weak_shares_the_registration() {
    let fired = Rc::new(Cell::new(0));
    let a = Node::gc(1);
    let w = Gc::downgrade_with(&a, counter(&fired));
    let w2 = w.clone();
    let w3 = w2.clone();
    drop(w);
    drop(w2);
    drop(a);
    assert_eq!(fired.get(), 1, "one clone alive: the callback runs once");
    drop(w3);
    assert_eq!(fired.get(), 1);
}

#[test]
fn callback_runs_once_whatever_the_number_of_live_clones() {
    let fired = Rc::new(Cell::new(0));
    let a = Node::gc(1);
    let w = Gc::downgrade_with(&a, counter(&fired));
    let clones: Vec<_> = (0..4).map(|_| w.clone()).collect();
    drop(a);
    assert_eq!(fired.get(), 1);
    drop((w, clones));
    assert_eq!(fired.get(), 1);
}

#[test]
fn callback_does_not_run_if_all_clones_were_dropped() {
    let fired = Rc::new(Cell::new(0));
    let a = Node::gc(1);
    let w = Gc::downgrade_with(&a, counter(&fired));
    let w2 = w.clone();
    drop(w);
    drop(w2);
    // The registration (and the closure's captures) went with the handles.
    assert_eq!(Rc::strong_count(&fired), 1);
    drop(a);
    assert_eq!(fired.get(), 0);

    // Same through the collector.
    let b = Node::gc(2);
    link(&b, &b);
    let w = Gc::downgrade_with(&b, counter(&fired));
    drop(w.clone());
    drop(w);
    drop(b);
    assert_eq!(gencc::collect(), 1);
    assert_eq!(fired.get(), 0);
    assert_eq!(Rc::strong_count(&fired), 1);
}

#[test]
fn callbacks_on_refcount_death_see_every_weak_dead() {
    let a = Node::gc(1);
    let outside = Gc::downgrade(&a);
    let inside = outside.clone();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let w = Gc::downgrade_with(&a, move |own| {
        s.borrow_mut().push((
            own.upgrade().is_none(),
            own.strong_count(),
            inside.upgrade().is_none(),
            inside.strong_count(),
        ));
    });
    drop(a);
    assert_eq!(*seen.borrow(), [(true, 0, true, 0)]);
    assert!(outside.upgrade().is_none() && w.upgrade().is_none());
    assert_eq!(drops_of(1), 1);
}

#[test]
fn callback_order_on_refcount_death_is_newest_first() {
    let a = Gc::new(Atom(1));
    let order = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = (1..=4)
        .map(|i| {
            let order = order.clone();
            Gc::downgrade_with(&a, move |_| order.borrow_mut().push(i))
        })
        .collect();
    drop(a);
    assert_eq!(*order.borrow(), [4, 3, 2, 1]);
    drop(handles);
}

#[test]
fn panicking_callback_on_refcount_death_propagates_and_the_heap_stays_usable() {
    let a = Node::gc(1);
    let child = Node::gc(2);
    link(&a, &child);
    drop(child);
    let plain = Gc::downgrade(&a);
    let w = Gc::downgrade_with(&a, |_| panic!("callback says no"));
    let err = catch_unwind(AssertUnwindSafe(|| drop(a))).unwrap_err();
    assert_eq!(message(&*err), "callback says no");
    assert!(plain.upgrade().is_none() && w.upgrade().is_none());

    // The heap works: new objects, new cycles, collections.
    let b = Node::gc(3);
    link(&b, &b);
    assert_eq!(b.edges.borrow()[0].id, 3);
    let c = Node::gc(4);
    assert_eq!(c.id, 4);
    drop(b);

    // The half-destroyed object is eventually freed, exactly once, along with
    // what it owned.
    gencc::collect();
    for id in 1..=3 {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!(drops_of(4), 0);
    assert_eq!(gencc::collect(), 0);
    drop((w, plain, c));
    assert_eq!(drops_of(4), 1);
}

#[test]
fn panicking_callback_on_untracked_refcount_death_still_frees_the_value() {
    let a = Gc::new(Atom(1));
    let w = Gc::downgrade_with(&a, |_| panic!("callback says no"));
    assert!(catch_unwind(AssertUnwindSafe(|| drop(a))).is_err());
    gencc::collect();
    assert_eq!(drops_of(1), 1);
    drop(w);
}

#[test]
fn dropping_the_callback_weak_inside_its_callback() {
    fn take_and_drop() {
        let w = SLOT.with(|s| s.borrow_mut().take());
        assert!(w.as_ref().is_some_and(|w| w.upgrade().is_none()));
        drop(w);
        event("dropped own handle");
    }
    // Refcount path.
    let a = Node::gc(1);
    SLOT.with(|s| *s.borrow_mut() = Some(Gc::downgrade_with(&a, |_| take_and_drop())));
    drop(a);
    assert_eq!(events(), ["dropped own handle"]);
    assert_eq!(drops_of(1), 1);

    // Collector path.
    let b = Node::gc(2);
    link(&b, &b);
    SLOT.with(|s| *s.borrow_mut() = Some(Gc::downgrade_with(&b, |_| take_and_drop())));
    drop(b);
    assert_eq!(gencc::collect(), 1);
    assert_eq!(events(), ["dropped own handle", "dropped own handle"]);
    assert_eq!(drops_of(2), 1);
    assert!(SLOT.with(|s| s.borrow().is_none()));
}

#[test]
fn callback_registered_on_a_resurrected_object_is_dead_from_the_start() {
    let a = Node::gc(1);
    link(&a, &a);
    drop(a);
    RESURRECT.with(|r| r.set(true));
    assert_eq!(gencc::collect(), 0);
    RESURRECT.with(|r| r.set(false));
    let a = KEPT.with(|k| k.borrow_mut().pop()).unwrap();
    assert!(Gc::is_finalized(&a));

    let fired = Rc::new(Cell::new(0));
    let w = Gc::downgrade_with(&a, counter(&fired));
    assert!(w.upgrade().is_none());
    assert_eq!(w.strong_count(), 0);
    assert!(Gc::downgrade(&a).upgrade().is_none());
    // The callback was dropped, never to run.
    assert_eq!(Rc::strong_count(&fired), 1);

    drop(a);
    assert_eq!(gencc::collect(), 1);
    assert_eq!(fired.get(), 0);
    assert_eq!(drops_of(1), 1);
    drop(w);
}

#[test]
fn weak_outlives_the_value_and_keeps_the_allocation() {
    let a = Node::gc(1);
    let weaks: Vec<_> = (0..3).map(|_| Gc::downgrade(&a)).collect();
    drop(a);
    assert_eq!(drops_of(1), 1);
    // Reading the header of a dead object through each handle is fine.
    for w in &weaks {
        assert!(w.upgrade().is_none());
        assert_eq!((w.strong_count(), w.weak_count()), (0, 0));
    }
    drop(weaks);
}
