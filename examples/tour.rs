//! A guided tour of gencc: graph-shaped data that reference counting alone
//! would leak, and what the cycle collector does with it.
//!
//! Run it with `cargo run --release --example tour`. Every root is dropped
//! and the tour ends with a full collection, so
//! `valgrind --leak-check=full target/release/examples/tour` finds no leak.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{self, Rc};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use gencc::{CollectionInfo, Finalize, Gc, Generation, Phase, Trace, Weak};

// ---------------------------------------------------------------------------
// A pass-through allocator that remembers the size of the last allocation, so
// the tour can show what one `Rc` costs (`Gc::allocated_bytes` tells gencc's).
// ---------------------------------------------------------------------------

struct Measuring;

static LAST_ALLOC: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Measuring {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LAST_ALLOC.store(layout.size(), Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Measuring = Measuring;

/// The size of the last allocation `make` performed.
fn bytes<R>(make: impl FnOnce() -> R) -> usize {
    let value = make();
    let size = LAST_ALLOC.load(Relaxed);
    drop(value);
    size
}

// ---------------------------------------------------------------------------
// The types of the tour. Each derives `Trace`, which tells the collector
// where the handles are; all of them can hold handles, so all are tracked.
// ---------------------------------------------------------------------------

/// A tree whose children point back at their parent with a *strong* handle.
#[derive(Trace)]
struct TreeNode {
    name: String,
    parent: RefCell<Option<Gc<TreeNode>>>,
    children: RefCell<Vec<Gc<TreeNode>>>,
}

/// A node of a doubly linked list with strong `next` and `prev` handles.
#[derive(Trace)]
struct ListNode {
    index: usize,
    next: RefCell<Option<Gc<ListNode>>>,
    prev: RefCell<Option<Gc<ListNode>>>,
}

/// An object that holds a handle to itself.
#[derive(Trace)]
struct Selfie {
    me: RefCell<Option<Gc<Selfie>>>,
}

/// What the weak cache holds.
#[derive(Trace)]
struct Obj {
    name: &'static str,
    links: RefCell<Vec<Gc<Obj>>>,
}

/// A value with a PEP 442 finalizer: it runs once, while the garbage it
/// belongs to is still intact, and may resurrect its object.
#[derive(Trace)]
#[trace(finalize)]
struct Resource {
    name: &'static str,
    peer: RefCell<Option<Gc<Resource>>>,
}

thread_local! {
    /// Where the "phoenix" resource rescues itself to.
    static RESCUED: RefCell<Vec<Gc<Resource>>> = const { RefCell::new(Vec::new()) };
}

impl Finalize for Resource {
    fn finalize(this: &Gc<Self>) {
        let peer = match &*this.peer.borrow() {
            Some(p) => format!("its peer {:?} is still intact", p.name),
            None => "no peer".to_string(),
        };
        println!("    finalize({}): {peer}", this.name);
        if this.name == "phoenix" {
            println!("    finalize(phoenix): storing a handle to itself in a global list");
            RESCUED.with(|r| r.borrow_mut().push(this.clone()));
        }
    }
}

/// A value whose `Drop` looks at a peer of the same cycle.
#[derive(Trace)]
struct Noisy {
    name: &'static str,
    peer: RefCell<Option<Gc<Noisy>>>,
}

impl Drop for Noisy {
    fn drop(&mut self) {
        if let Some(peer) = &*self.peer.borrow() {
            // `**peer` would panic with a clear message; `try_get` asks first.
            let seen = match Gc::try_get(peer) {
                Some(p) => format!("Some({:?})", p.name),
                None => "None".to_string(),
            };
            println!("    drop({}): Gc::try_get(peer) = {seen}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------
// Presentation helpers.
// ---------------------------------------------------------------------------

thread_local! {
    /// (generation, unreachable found) of every finished collection, as seen
    /// by the collection callback. Drained by `callback_report`.
    static SEEN: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

fn section(n: u32, title: &str) {
    let heading = format!("{n}. {title}");
    println!("\n{heading}\n{}", "-".repeat(heading.chars().count()));
}

/// One line summarising the collections the callback saw since the last call.
fn callback_report() -> String {
    let seen = SEEN.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if seen.is_empty() {
        return "callback saw no collection".into();
    }
    let mut per_gen = [(0usize, 0usize); 3];
    for (g, found) in seen {
        per_gen[g].0 += 1;
        per_gen[g].1 += found;
    }
    let parts: Vec<String> = per_gen
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| *n > 0)
        .map(|(g, (n, found))| format!("gen {g} x{n} ({found} found)"))
        .collect();
    format!("callback saw: {}", parts.join(", "))
}

fn gen_name<T: Trace + 'static>(gc: &Gc<T>) -> &'static str {
    match Gc::generation(gc) {
        Some(Generation::Young) => "young (0)",
        Some(Generation::Middle) => "middle (1)",
        Some(Generation::Old) => "old (2)",
        Some(Generation::Permanent) => "permanent",
        None => "untracked",
    }
}

fn alive<T: Trace + 'static>(w: &Weak<T>) -> &'static str {
    if w.upgrade().is_some() {
        "alive"
    } else {
        "dead"
    }
}

fn count_str() -> String {
    format!("{:?}", gencc::count())
}

fn main() {
    println!("gencc tour: Rc-style handles plus a CPython 3.11-style cycle collector");
    println!("=======================================================================");
    println!(
        "thresholds {:?}; automatic collection enabled: {}",
        gencc::thresholds(),
        gencc::is_enabled()
    );
    let callback = gencc::register_callback(|info: &CollectionInfo| {
        if info.phase == Phase::Stop {
            SEEN.with(|s| s.borrow_mut().push((info.generation, info.collected)));
        }
    });
    println!(
        "a handle is {} bytes, Option<Gc<T>> {}; is_tracked: Gc<String> {}, Gc<Selfie> {}",
        size_of::<Gc<Selfie>>(),
        size_of::<Option<Gc<Selfie>>>(),
        gencc::is_tracked(&Gc::new(String::from("atom"))),
        gencc::is_tracked(&Gc::new(Selfie {
            me: RefCell::new(None)
        })),
    );
    let tracked = Gc::allocated_bytes(&Gc::new(Selfie {
        me: RefCell::new(None),
    }));
    let value = size_of::<Selfie>();
    println!(
        "bytes per object: Rc::new(()) {}, Gc::new(()) {} (untracked header), \
         Gc::new(Selfie) {tracked} = {value} value + {} tracked header",
        bytes(|| Rc::new(())),
        Gc::allocated_bytes(&Gc::new(())),
        tracked - value,
    );

    tree();
    linked_list();
    self_reference();
    weak_cache();
    finalizers();
    drop_sees_dead_peers();
    thread_exit();

    section(8, "Statistics, and the end");
    gencc::unregister_callback(callback);
    let found = gencc::collect();
    println!("final collect() found {found}; every root of the tour is gone");
    println!(
        "  {:<12} {:>12} {:>10} {:>14}",
        "generation", "collections", "collected", "uncollectable"
    );
    for (g, s) in gencc::stats().iter().enumerate() {
        println!(
            "  {:<12} {:>12} {:>10} {:>14}",
            g, s.collections, s.collected, s.uncollectable
        );
    }
    println!(
        "count() = {}, freeze_count() = {}",
        count_str(),
        gencc::freeze_count()
    );
}

/// 1. Parent links make every parent/child pair a cycle.
fn tree() {
    section(1, "A tree with strong parent links: promotions");
    let node = |name: String, parent: Option<&Gc<TreeNode>>| {
        let n = Gc::new(TreeNode {
            name,
            parent: RefCell::new(parent.cloned()),
            children: RefCell::default(),
        });
        if let Some(p) = parent {
            p.children.borrow_mut().push(n.clone());
        }
        n
    };
    let root = node("root".into(), None);
    let mut leaf = None;
    for c in 0..3 {
        let child = node(format!("child{c}"), Some(&root));
        for g in 0..3 {
            leaf = Some(node(format!("leaf{c}.{g}"), Some(&child)));
        }
    }
    let leaf = leaf.expect("built above");
    println!(
        "built root + 3 children + 9 leaves; {:?} has {} strong handles (caller + 3 children)",
        root.name,
        Gc::strong_count(&root)
    );
    let w_root = Gc::downgrade(&root);

    println!();
    println!(
        "  {:<36} {:<11} {:<11} {:<11} {:>5}",
        "step", "root", "leaf", "count()", "found"
    );
    let row = |step: &str, found: String| {
        println!(
            "  {:<36} {:<11} {:<11} {:<11} {:>5}",
            step,
            gen_name(&root),
            gen_name(&leaf),
            count_str(),
            found
        );
    };
    row("after building", "-".into());
    let f = gencc::collect_generation(0).expect("valid generation");
    row("collect_generation(0)", f.to_string());
    let f = gencc::collect_generation(1).expect("valid generation");
    row("collect_generation(1)", f.to_string());
    println!();

    println!(
        "leaf {:?} reaches the root via its parent: {:?}",
        leaf.name,
        leaf.parent.borrow().as_ref().and_then(|p| p
            .parent
            .borrow()
            .as_ref()
            .map(|r| r.name.clone()))
    );
    drop((root, leaf));
    println!(
        "dropped every handle: weak(root) is {} (the 12 parent/child cycles keep it)",
        alive(&w_root)
    );
    let f = gencc::collect_generation(0).expect("valid generation");
    println!(
        "collect_generation(0) found {f}: the tree is in generation 2, invisible to young collections"
    );
    let f = gencc::collect();
    println!("collect() found {f}; weak(root) is now {}", alive(&w_root));
    println!("{}", callback_report());
}

/// 2. Ten thousand nodes, each pointing at both neighbours.
fn linked_list() {
    section(2, "A doubly linked list: automatic collections");
    const N: usize = 10_000;
    let head = Gc::new(ListNode {
        index: 0,
        next: RefCell::new(None),
        prev: RefCell::new(None),
    });
    let mut tail = head.clone();
    let mut middle = None;
    for index in 1..N {
        let n = Gc::new(ListNode {
            index,
            next: RefCell::new(None),
            prev: RefCell::new(Some(tail.clone())),
        });
        *tail.next.borrow_mut() = Some(n.clone());
        if index == N / 2 {
            middle = Some(n.clone());
        }
        tail = n;
    }
    let middle = middle.expect("built above");
    println!(
        "built {N} nodes with strong next and prev; every {} net tracked allocations fire a young collection",
        gencc::thresholds()[0]
    );
    println!("{} (nothing was garbage yet)", callback_report());
    println!(
        "where the nodes are now: head {}, node {} {}, tail {}",
        gen_name(&head),
        middle.index,
        gen_name(&middle),
        gen_name(&tail)
    );
    let (w_head, w_tail) = (Gc::downgrade(&head), Gc::downgrade(&tail));
    drop((head, middle, tail));
    println!(
        "dropped head, middle and tail: weak(head) {}, weak(tail) {}",
        alive(&w_head),
        alive(&w_tail)
    );
    let t = Instant::now();
    let f = gencc::collect();
    println!(
        "collect() found {f} in {:.2} ms; weak(head) {}, weak(tail) {}",
        t.elapsed().as_secs_f64() * 1e3,
        alive(&w_head),
        alive(&w_tail)
    );
    println!("{}", callback_report());
}

/// 3. The smallest cycle.
fn self_reference() {
    section(3, "A self-referencing object");
    let s = Gc::new(Selfie {
        me: RefCell::new(None),
    });
    *s.me.borrow_mut() = Some(s.clone());
    let w = Gc::downgrade(&s);
    println!(
        "strong_count = {} (the caller's handle and its own field), generation {}",
        Gc::strong_count(&s),
        gen_name(&s)
    );
    drop(s);
    println!(
        "dropped the caller's handle: weak is {}, strong_count {}",
        alive(&w),
        w.strong_count()
    );
    let f = gencc::collect_generation(0).expect("valid generation");
    println!(
        "collect_generation(0) found {f}; weak is {}; {}",
        alive(&w),
        callback_report()
    );
}

type Cache = RefCell<HashMap<&'static str, Weak<Obj>>>;

/// Puts `obj` in the cache with a callback that evicts its entry when it dies.
fn cache_insert(cache: &Rc<Cache>, obj: &Gc<Obj>) {
    // The callback holds the cache weakly, as Python's WeakValueDictionary
    // does: a strong `Rc` here would make cache -> entry -> callback -> cache
    // a cycle of `Rc`s, which no collector can see.
    let cache_ref: rc::Weak<Cache> = Rc::downgrade(cache);
    let name = obj.name;
    let entry = Gc::downgrade_with(obj, move |dead: &Weak<Obj>| {
        assert!(dead.upgrade().is_none(), "cleared before any callback runs");
        if let Some(cache) = cache_ref.upgrade() {
            let removed = cache.borrow_mut().remove(name);
            drop(removed);
            let left = cache.borrow().len();
            println!("    callback: {name:?} died and was evicted ({left} left in the cache)");
        }
    });
    cache.borrow_mut().insert(name, entry);
}

/// 4. Weak references with callbacks keep a cache clean.
fn weak_cache() {
    section(4, "A weak-reference cache (HashMap<&str, Weak<Obj>>)");
    let cache: Rc<Cache> = Rc::default();
    let obj = |name| {
        Gc::new(Obj {
            name,
            links: RefCell::default(),
        })
    };
    let (alpha, beta, gamma, delta, epsilon) = (
        obj("alpha"),
        obj("beta"),
        obj("gamma"),
        obj("delta"),
        obj("epsilon"),
    );
    beta.links.borrow_mut().push(gamma.clone());
    gamma.links.borrow_mut().push(beta.clone()); // beta <-> gamma
    for o in [&alpha, &beta, &gamma, &delta, &epsilon] {
        cache_insert(&cache, o);
    }
    let lookup = |k| {
        cache
            .borrow()
            .get(k)
            .map_or("no entry", |w: &Weak<Obj>| alive(w))
    };
    let keys = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let before: Vec<_> = keys.iter().map(|&k| lookup(k)).collect();
    println!("cached 5 objects; each entry's callback evicts it when its object dies");

    println!("drop(alpha), the only handle: it dies by reference counting at once");
    drop(alpha);
    println!("remove epsilon's entry by hand, then drop epsilon: its callback never runs");
    let removed = cache.borrow_mut().remove("epsilon");
    drop(removed);
    drop(epsilon);
    drop((beta, gamma));
    println!("drop beta and gamma: they hold each other, so their callbacks wait for collect():");
    let f = gencc::collect();
    println!("  collect() found {f}; {}", callback_report());

    println!();
    println!(
        "  {:<8} {:<29} {:<15} after",
        "key", "what happened", "upgrade before"
    );
    let story = [
        "last handle dropped",
        "cycle with gamma, collected",
        "cycle with beta, collected",
        "still held by the tour",
        "entry removed before death",
    ];
    for ((k, b), s) in keys.iter().zip(&before).zip(story) {
        println!("  {:<8} {:<29} {:<15} {}", k, s, b, lookup(k));
    }
    println!("finally drop(delta):");
    drop(delta);
    println!("  the cache is empty: {}", cache.borrow().is_empty());
}

/// 5. PEP 442: finalizers see intact garbage, run once, may resurrect.
fn finalizers() {
    section(5, "Finalizers and resurrection (PEP 442)");
    let res = |name| {
        Gc::new(Resource {
            name,
            peer: RefCell::new(None),
        })
    };
    println!("death by reference counting runs the finalizer too:");
    drop(res("solo"));

    let (a, b, phoenix) = (res("a"), res("b"), res("phoenix"));
    *a.peer.borrow_mut() = Some(b.clone());
    *b.peer.borrow_mut() = Some(a.clone()); // a <-> b
    *phoenix.peer.borrow_mut() = Some(phoenix.clone()); // phoenix -> phoenix
    let (w_a, w_phoenix) = (Gc::downgrade(&a), Gc::downgrade(&phoenix));
    drop((a, b, phoenix));
    println!("a <-> b and phoenix -> phoenix are unreachable; collect():");
    let f = gencc::collect();
    println!("  collect() found {f}: a and b; phoenix was resurrected and is not counted");

    let rescued = RESCUED
        .with(|r| r.borrow_mut().pop())
        .expect("phoenix rescued itself");
    println!(
        "  phoenix: is_finalized {}, generation {}, weak taken before: {}, weak(a): {}",
        Gc::is_finalized(&rescued),
        gen_name(&rescued),
        alive(&w_phoenix),
        alive(&w_a)
    );
    println!(
        "  a new Gc::downgrade(&phoenix) is {} too: a resurrected object's weak refs stay cleared",
        alive(&Gc::downgrade(&rescued))
    );
    // Break its self-cycle so that reference counting can finish it.
    let me = rescued.peer.borrow_mut().take();
    drop(me);
    drop(rescued);
    println!("  broke its self-cycle and dropped the rescued handle: reference counting freed it,\n  and no second finalize(phoenix) line appears: a finalizer runs once per object");
    println!("{}", callback_report());
}

/// 6. A `Drop` impl that reaches into its own garbage cycle.
fn drop_sees_dead_peers() {
    section(6, "Drop inside a garbage cycle");
    let left = Gc::new(Noisy {
        name: "left",
        peer: RefCell::new(None),
    });
    let right = Gc::new(Noisy {
        name: "right",
        peer: RefCell::new(Some(left.clone())),
    });
    *left.peer.borrow_mut() = Some(right.clone());
    drop((left, right));
    println!("every garbage object is marked dropped before the first value is dropped:");
    let f = gencc::collect();
    println!("  collect() found {f}; dereferencing such a peer with * panics instead of reading freed memory");
    println!("{}", callback_report());
}

/// 7. Each thread has its own heap, collected when the thread exits.
fn thread_exit() {
    section(7, "Thread exit");
    std::thread::spawn(|| {
        let a = Gc::new(Resource {
            name: "worker-a",
            peer: RefCell::new(None),
        });
        let b = Gc::new(Resource {
            name: "worker-b",
            peer: RefCell::new(Some(a.clone())),
        });
        *a.peer.borrow_mut() = Some(b);
        drop(a);
        println!("a worker thread leaves the cycle worker-a <-> worker-b behind and exits:");
    })
    .join()
    .expect("worker thread");
    println!(
        "  (its heap's final collection ran the finalizers above; the main heap was not involved)"
    );
}
