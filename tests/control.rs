//! The `gc`-module counterparts: generation validation, thresholds,
//! statistics, collection callbacks, `DEBUG_STATS` logging and `is_tracked`.
//!
//! Every test runs on its own thread, so it sees a fresh heap. The logger is
//! process-wide, so it records the thread of each line and each test reads
//! only its own.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{Mutex, Once};
use std::thread::{self, ThreadId};

use gencc::{CollectionInfo, Gc, GenerationStats, InvalidGeneration, Phase, Trace, Tracer, Weak};

thread_local! {
    static DROPS: Cell<usize> = const { Cell::new(0) };
}

fn drops() -> usize {
    DROPS.with(Cell::get)
}

/// A tracked object with one optional edge, counting its drops.
struct Node {
    next: RefCell<Option<Gc<Node>>>,
}

// SAFETY: `next` is the only field that can hold a handle; the node owns it
// alone and reports it at most once, reading it with `try_borrow` so that
// `trace` mutates nothing.
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Ok(next) = self.next.try_borrow() {
            if let Some(next) = &*next {
                next.trace(tracer);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        DROPS.with(|d| d.set(d.get() + 1));
    }
}

fn node() -> Gc<Node> {
    Gc::new(Node {
        next: RefCell::new(None),
    })
}

fn link(from: &Gc<Node>, to: &Gc<Node>) {
    *from.next.borrow_mut() = Some(to.clone());
}

/// Drops a fresh 2-cycle: two objects of garbage for the collector.
fn garbage_pair() {
    let a = node();
    let b = node();
    link(&a, &b);
    link(&b, &a);
}

fn info(phase: Phase, generation: usize, collected: usize) -> CollectionInfo {
    CollectionInfo {
        phase,
        generation,
        collected,
        uncollectable: 0,
    }
}

// --- Generations -----------------------------------------------------------

#[test]
fn invalid_generations_are_rejected_without_collecting() {
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    gencc::register_callback(move |_| c.set(c.get() + 1));
    garbage_pair();

    let e = gencc::collect_generation(3).unwrap_err();
    assert_eq!(e, InvalidGeneration(3));
    let text = e.to_string();
    assert!(text.contains("invalid generation"), "{text}");
    assert!(text.contains('3'), "{text}");

    let e = gencc::collect_generation(usize::MAX).unwrap_err();
    assert_eq!(e, InvalidGeneration(usize::MAX));
    assert!(e.to_string().contains(&usize::MAX.to_string()), "{e}");
    let _: &dyn std::error::Error = &e;

    // Nothing happened.
    assert_eq!(calls.get(), 0);
    assert_eq!(drops(), 0);
    assert_eq!(gencc::stats(), [GenerationStats::default(); 3]);
    assert_eq!(gencc::count()[0], 2);

    for g in 0..=2 {
        assert!(gencc::collect_generation(g).is_ok());
    }
    assert_eq!(calls.get(), 6);
}

// --- Thresholds ------------------------------------------------------------

#[test]
fn thresholds_round_trip() {
    assert_eq!(gencc::thresholds(), [700, 10, 10]);
    gencc::set_thresholds(1, 2, 3);
    assert_eq!(gencc::thresholds(), [1, 2, 3]);
    gencc::set_thresholds(0, usize::MAX, 0);
    assert_eq!(gencc::thresholds(), [0, usize::MAX, 0]);
    gencc::set_thresholds(700, 10, 10);
    assert_eq!(gencc::thresholds(), [700, 10, 10]);
}

#[test]
fn thresholds_are_per_thread() {
    gencc::set_thresholds(5, 6, 7);
    let other = thread::spawn(gencc::thresholds).join().unwrap();
    assert_eq!(other, [700, 10, 10]);
    assert_eq!(gencc::thresholds(), [5, 6, 7]);
}

// --- Statistics ------------------------------------------------------------

#[test]
fn stats_attribute_each_collection_to_its_generation() {
    assert_eq!(gencc::stats(), [GenerationStats::default(); 3]);

    garbage_pair();
    assert_eq!(gencc::collect(), 2);
    let s = gencc::stats();
    assert_eq!(s[0], GenerationStats::default());
    assert_eq!(s[1], GenerationStats::default());
    assert_eq!(
        s[2],
        GenerationStats {
            collections: 1,
            collected: 2,
            uncollectable: 0
        }
    );

    let n = node();
    link(&n, &n);
    drop(n);
    assert_eq!(gencc::collect(), 1);
    assert_eq!(gencc::collect(), 0);
    let s = gencc::stats();
    assert_eq!(s[0].collections + s[1].collections, 0);
    assert_eq!(
        s[2],
        GenerationStats {
            collections: 3,
            collected: 3,
            uncollectable: 0
        }
    );

    garbage_pair();
    assert_eq!(gencc::collect_generation(0), Ok(2));
    garbage_pair();
    garbage_pair();
    assert_eq!(gencc::collect_generation(1), Ok(4));
    let s = gencc::stats();
    assert_eq!(
        s,
        [
            GenerationStats {
                collections: 1,
                collected: 2,
                uncollectable: 0
            },
            GenerationStats {
                collections: 1,
                collected: 4,
                uncollectable: 0
            },
            GenerationStats {
                collections: 3,
                collected: 3,
                uncollectable: 0
            },
        ]
    );
    assert_eq!(drops(), 9);
}

// --- Callbacks -------------------------------------------------------------

#[test]
fn callbacks_see_start_and_stop_with_generation_and_counts() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    gencc::register_callback(move |i| l.borrow_mut().push(*i));

    let n = node();
    link(&n, &n);
    drop(n);
    assert_eq!(gencc::collect_generation(0), Ok(1));
    garbage_pair();
    assert_eq!(gencc::collect_generation(1), Ok(2));
    assert_eq!(gencc::collect(), 0);
    assert_eq!(
        *log.borrow(),
        [
            info(Phase::Start, 0, 0),
            info(Phase::Stop, 0, 1),
            info(Phase::Start, 1, 0),
            info(Phase::Stop, 1, 2),
            info(Phase::Start, 2, 0),
            info(Phase::Stop, 2, 0),
        ]
    );
}

#[test]
fn callbacks_run_in_registration_order_and_can_be_unregistered() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let register = |tag: &'static str| {
        let l = log.clone();
        gencc::register_callback(move |i| l.borrow_mut().push((tag, i.phase)))
    };
    let a = register("a");
    let b = register("b");
    let c = register("c");
    assert_ne!(a, b);
    assert_ne!(b, c);

    gencc::collect();
    assert_eq!(
        *log.borrow(),
        [
            ("a", Phase::Start),
            ("b", Phase::Start),
            ("c", Phase::Start),
            ("a", Phase::Stop),
            ("b", Phase::Stop),
            ("c", Phase::Stop),
        ]
    );

    log.borrow_mut().clear();
    assert!(gencc::unregister_callback(b));
    assert!(!gencc::unregister_callback(b), "already unregistered");
    gencc::collect();
    assert_eq!(
        *log.borrow(),
        [
            ("a", Phase::Start),
            ("c", Phase::Start),
            ("a", Phase::Stop),
            ("c", Phase::Stop),
        ]
    );

    // A new registration goes last, even after a removal.
    log.borrow_mut().clear();
    let d = register("d");
    assert!(d != a && d != b && d != c, "ids are not reused");
    gencc::collect_generation(0).unwrap();
    let order: Vec<_> = log.borrow().iter().map(|&(t, _)| t).collect();
    assert_eq!(order, ["a", "c", "d", "a", "c", "d"]);

    assert!(gencc::unregister_callback(a));
    assert!(gencc::unregister_callback(c));
    assert!(gencc::unregister_callback(d));
    log.borrow_mut().clear();
    gencc::collect();
    assert!(log.borrow().is_empty());
}

#[test]
fn unregistering_an_unknown_id_returns_false() {
    // Ids are only made by `register_callback`. One registered on another
    // thread's heap, with a number this heap has not handed out yet, is
    // unknown here.
    let foreign = thread::spawn(|| {
        let ids: Vec<_> = (0..5).map(|_| gencc::register_callback(|_| {})).collect();
        ids[4]
    })
    .join()
    .unwrap();
    let mine = gencc::register_callback(|_| {});
    assert_ne!(foreign, mine);
    assert!(!gencc::unregister_callback(foreign));
    assert!(gencc::unregister_callback(mine));
    assert!(!gencc::unregister_callback(mine));
}

#[test]
fn callbacks_may_register_and_unregister_callbacks_during_a_collection() {
    let log = Rc::new(RefCell::new(Vec::<(&str, Phase)>::new()));
    let late_id = Rc::new(Cell::new(None));
    let victim_id = {
        let l = log.clone();
        gencc::register_callback(move |i| l.borrow_mut().push(("victim", i.phase)))
    };
    let (l, late) = (log.clone(), late_id.clone());
    let meddler = gencc::register_callback(move |i| {
        l.borrow_mut().push(("meddler", i.phase));
        if i.phase == Phase::Start && late.get().is_none() {
            let l2 = l.clone();
            late.set(Some(gencc::register_callback(move |i| {
                l2.borrow_mut().push(("late", i.phase))
            })));
            assert!(gencc::unregister_callback(victim_id));
        }
    });

    garbage_pair();
    assert_eq!(gencc::collect(), 2, "the collection went on");
    assert_eq!(drops(), 2);
    assert!(late_id.get().is_some());

    // From the next collection on, the table is exactly what the meddler
    // left: itself, then the late callback; not the victim.
    log.borrow_mut().clear();
    gencc::collect();
    assert_eq!(
        *log.borrow(),
        [
            ("meddler", Phase::Start),
            ("late", Phase::Start),
            ("meddler", Phase::Stop),
            ("late", Phase::Stop),
        ]
    );
    assert!(gencc::unregister_callback(late_id.get().unwrap()));
    assert!(gencc::unregister_callback(meddler));
}

#[test]
fn a_callback_may_unregister_itself() {
    let calls = Rc::new(Cell::new(0));
    let own_id = Rc::new(Cell::new(None));
    let (c, own) = (calls.clone(), own_id.clone());
    let id = gencc::register_callback(move |_| {
        c.set(c.get() + 1);
        if let Some(id) = own.get() {
            assert!(gencc::unregister_callback(id));
        }
    });
    own_id.set(Some(id));
    let after = Rc::new(Cell::new(0));
    let a = after.clone();
    gencc::register_callback(move |_| a.set(a.get() + 1));

    gencc::collect();
    gencc::collect();
    assert_eq!(calls.get(), 1, "gone after its first call");
    assert_eq!(after.get(), 4, "the next callback was not skipped");
}

/// The payload of the panicking callback below, so that the test can tell
/// its own panic from any other.
#[derive(Debug, PartialEq)]
struct CallbackPanic(u32);

#[test]
fn a_panicking_callback_does_not_stop_the_collection() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    gencc::register_callback(move |i| l.borrow_mut().push(("first", i.phase)));
    gencc::register_callback(|i| {
        if i.phase == Phase::Start {
            std::panic::panic_any(CallbackPanic(7));
        }
    });
    let l = log.clone();
    gencc::register_callback(move |i| l.borrow_mut().push(("third", i.phase)));

    garbage_pair();
    let payload: Box<dyn Any + Send> =
        catch_unwind(AssertUnwindSafe(gencc::collect)).expect_err("collect() must re-raise");
    assert_eq!(
        payload.downcast_ref::<CallbackPanic>(),
        Some(&CallbackPanic(7))
    );
    assert_eq!(
        *log.borrow(),
        [
            ("first", Phase::Start),
            ("third", Phase::Start),
            ("first", Phase::Stop),
            ("third", Phase::Stop),
        ]
    );
    assert_eq!(drops(), 2, "the garbage was freed anyway");
    assert_eq!(gencc::stats()[2].collections, 1);
    assert_eq!(gencc::stats()[2].collected, 2);

    // The heap is usable afterwards, and the flag that blocks nested
    // collections was cleared.
    let n = node();
    link(&n, &n);
    drop(n);
    let again = catch_unwind(AssertUnwindSafe(|| gencc::collect_generation(0)));
    let payload = again.expect_err("the callback panics again");
    assert!(payload.downcast_ref::<CallbackPanic>().is_some());
    assert_eq!(drops(), 3);
}

#[test]
fn only_the_first_callback_panic_is_reraised() {
    gencc::register_callback(|_| std::panic::panic_any(CallbackPanic(1)));
    gencc::register_callback(|_| std::panic::panic_any(CallbackPanic(2)));
    let payload = catch_unwind(gencc::collect).expect_err("re-raised");
    assert_eq!(
        payload.downcast_ref::<CallbackPanic>(),
        Some(&CallbackPanic(1))
    );
}

#[test]
fn collect_inside_a_callback_returns_zero() {
    let nested = Rc::new(RefCell::new(Vec::new()));
    let n = nested.clone();
    gencc::register_callback(move |i| {
        // Garbage made here is not the business of the running collection.
        n.borrow_mut()
            .push((i.phase, gencc::collect(), gencc::collect_generation(0)));
    });
    garbage_pair();
    assert_eq!(gencc::collect(), 2);
    assert_eq!(
        *nested.borrow(),
        [(Phase::Start, 0, Ok(0)), (Phase::Stop, 0, Ok(0))]
    );
    assert_eq!(gencc::stats()[2].collections, 1);
    assert_eq!(gencc::stats()[0].collections, 0);
}

// --- DEBUG_STATS -----------------------------------------------------------

struct Recorder {
    lines: Mutex<Vec<(ThreadId, String, String)>>,
}

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = (
            thread::current().id(),
            record.target().to_owned(),
            record.args().to_string(),
        );
        self.lines.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder {
    lines: Mutex::new(Vec::new()),
};

/// The lines this thread logged, as `(target, message)`.
fn my_log_lines() -> Vec<(String, String)> {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&RECORDER).expect("no other logger in this binary");
        log::set_max_level(log::LevelFilter::Trace);
    });
    let me = thread::current().id();
    RECORDER
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, _, _)| *t == me)
        .map(|(_, target, msg)| (target.clone(), msg.clone()))
        .collect()
}

#[test]
fn debug_stats_logs_each_collection() {
    assert!(my_log_lines().is_empty()); // installs the logger
    assert_eq!(gencc::debug(), 0);

    garbage_pair();
    assert_eq!(gencc::collect(), 2);
    assert!(my_log_lines().is_empty(), "debug off: no output");

    gencc::set_debug(gencc::DEBUG_STATS);
    assert_eq!(gencc::debug(), gencc::DEBUG_STATS);
    garbage_pair();
    assert_eq!(gencc::collect(), 2);
    let lines = my_log_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().all(|(target, _)| target == "gencc"),
        "{lines:?}"
    );
    assert!(
        lines[0].1.contains("collecting generation 2"),
        "{:?}",
        lines[0]
    );
    assert!(lines[1].1.contains("unreachable"), "{:?}", lines[1]);
    assert!(lines[1].1.contains('2'), "{:?}", lines[1]);

    gencc::collect_generation(0).unwrap();
    let lines = my_log_lines();
    assert_eq!(lines.len(), 4);
    assert!(lines[2].1.contains("collecting generation 0"), "{lines:?}");

    gencc::set_debug(0);
    gencc::collect();
    assert_eq!(my_log_lines().len(), 4, "debug off again");
}

// --- is_tracked ------------------------------------------------------------

#[test]
fn is_tracked_depends_on_the_type() {
    let number = Gc::new(5u64);
    let text = Gc::new(String::from("atom"));
    let n = node();
    let list = Gc::new(RefCell::new(vec![n.clone()]));
    let weak: Gc<Weak<Node>> = Gc::new(Gc::downgrade(&n));

    assert!(!gencc::is_tracked(&number));
    assert!(!gencc::is_tracked(&text));
    assert!(gencc::is_tracked(&n));
    assert!(gencc::is_tracked(&list));
    assert!(!gencc::is_tracked(&weak));

    assert!(!Gc::is_tracked(&number));
    assert!(!Gc::is_tracked(&text));
    assert!(Gc::is_tracked(&n));
    assert!(Gc::is_tracked(&list));
    assert!(!Gc::is_tracked(&weak));
    assert_eq!(Gc::generation(&weak), None);
    assert_eq!(Gc::generation(&number), None);

    // Only the two tracked ones count.
    assert_eq!(gencc::count()[0], 2);
    // Still tracked after a collection and after freezing.
    gencc::collect();
    assert!(gencc::is_tracked(&n));
    gencc::freeze();
    assert!(gencc::is_tracked(&n));
    assert!(!gencc::is_tracked(&number));
    gencc::unfreeze();
}
