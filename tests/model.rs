//! Random graph operations checked, after every step, against an independent
//! model of the heap.
//!
//! The model knows each node's edges (a multiset, in insertion order), which
//! nodes the test holds as roots, and each node's generation. From that alone
//! it computes what reference counting frees (an unrooted node with no edge
//! from a live node), what a collection of generation `g` frees (CPython 3.11's
//! rule: an examined node survives if it is reachable from a root or from an
//! edge whose source is outside the examined set, be it an older generation or
//! the permanent one), where the survivors go, and when an automatic
//! collection runs and of which generation (the thresholds and the long-lived
//! rule). gencc's real behaviour is observed through per-node drop counters,
//! weak references, a collection callback, `Gc::generation`, the strong
//! counts, `gencc::count()` and `gencc::freeze_count()`.
//!
//! The harness observes without changing what it observes: it walks the
//! graph through references and reaches nodes through one weak reference
//! each, never through a strong handle it would drop afterwards. A dropped
//! handle marks its node as having lost a reference, and a harness that did
//! so on every step would hide every state in which some node is not so
//! marked, which is where collections that skip their search can go wrong.
//!
//! The collector is per thread. Proptest runs all of its cases on the one
//! thread of its test, so each case starts by cleaning up whatever an earlier
//! (failed) case left behind and ends by restoring the default settings.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::rc::Rc;

use gencc::{CallbackId, CollectionInfo, Gc, Generation, Phase, Trace, Tracer, Weak};
use proptest::prelude::*;

/// Nodes allocated per case, at most.
const MAX_NODES: usize = 64;

/// The model's number for the permanent generation.
const PERMANENT: u8 = 3;

const DEFAULT_THRESHOLDS: [usize; 3] = [700, 10, 10];

thread_local! {
    /// How many times each node's value was dropped, by id.
    static DROPS: RefCell<Vec<u32>> = RefCell::new(vec![0; MAX_NODES]);
    /// What the collection callback saw: phase, generation, collected.
    static EVENTS: RefCell<Vec<(Phase, usize, usize)>> = const { RefCell::new(Vec::new()) };
    /// Whether the last case on this thread finished without a failure, so
    /// the heap must be empty now.
    static CLEAN: Cell<bool> = const { Cell::new(true) };
}

fn drops() -> Vec<u32> {
    DROPS.with(|d| d.borrow().clone())
}

// --- The node ---------------------------------------------------------------

struct Node {
    id: usize,
    /// Strong edges; duplicates and self-edges allowed.
    edges: RefCell<Vec<Gc<Node>>>,
    /// Weak edges, which must not keep anything alive.
    weaks: RefCell<Vec<Weak<Node>>>,
}

// SAFETY: `edges` and `weaks` are the only fields that hold handles; both are
// owned by the node alone and each is reported exactly once, through the
// `RefCell` impl, which reads without mutating. `id` holds no handle.
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.edges.trace(tracer);
        self.weaks.trace(tracer);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        DROPS.with(|d| d.borrow_mut()[self.id] += 1);
    }
}

fn new_node(id: usize) -> Gc<Node> {
    Gc::new(Node {
        id,
        edges: RefCell::default(),
        weaks: RefCell::default(),
    })
}

// --- Operations ---------------------------------------------------------------

/// One step. Node operands are selectors: an operand that names a node the
/// step can act on is that node; any other value picks one of those nodes
/// (`candidates[sel % len]`), and the step does nothing if there is none. The
/// resolved step is logged, and the log is printed on failure.
#[derive(Clone, Debug)]
enum Op {
    /// Allocate the next node and hold it as a root.
    New,
    /// Push a strong edge `a -> b`.
    AddEdge(usize, usize),
    /// Remove edge number `i % len` of `a`.
    RemoveEdge(usize, usize),
    /// Drop the test's root handle of a node.
    DropRoot(usize),
    /// Move the test's root handle of node `a` into node `b`, as an edge
    /// `b -> a`: `a` changes owner without losing a reference.
    MoveRoot(usize, usize),
    /// Move edge number `i % len` of `a` out of the node, as the test's root
    /// handle of its target (which must not be rooted already): the target
    /// changes owner without losing a reference.
    TakeEdge(usize, usize),
    /// Root again a live node that is not rooted, through a path from the
    /// roots or a weak reference (which may resurrect uncollected garbage).
    Root(usize),
    /// Keep a weak reference to a node, with a callback or without.
    TakeWeak(usize, bool),
    /// Drop the test's weak reference number `i % len`.
    DropWeak(usize),
    /// Push a weak edge `a -> b` into node `a`.
    AddWeakEdge(usize, usize),
    /// `gencc::collect_generation(g % 3)`.
    Collect(usize),
    /// `gencc::collect()`.
    CollectFull,
    Freeze,
    Unfreeze,
}

/// Automatic collection settings for one case.
#[derive(Clone, Copy, Debug)]
enum Mode {
    Disabled,
    Enabled([usize; 3]),
}

// --- The model ------------------------------------------------------------------

#[derive(Clone, Debug, Default)]
struct Model {
    alive: Vec<bool>,
    rooted: Vec<bool>,
    edges: Vec<Vec<usize>>,
    weak_edges: Vec<Vec<usize>>,
    /// 0, 1, 2 or `PERMANENT`; meaningless for dead nodes.
    gen: Vec<u8>,
    counts: [usize; 3],
    thresholds: [usize; 3],
    enabled: bool,
    long_lived_pending: usize,
    long_lived_total: usize,
}

impl Model {
    fn new(mode: Mode) -> Self {
        let (enabled, thresholds) = match mode {
            Mode::Disabled => (false, DEFAULT_THRESHOLDS),
            Mode::Enabled(t) => (true, t),
        };
        Model {
            enabled,
            thresholds,
            ..Model::default()
        }
    }

    fn len(&self) -> usize {
        self.alive.len()
    }

    fn add_node(&mut self) -> usize {
        self.alive.push(true);
        self.rooted.push(true);
        self.edges.push(Vec::new());
        self.weak_edges.push(Vec::new());
        self.gen.push(0);
        self.len() - 1
    }

    /// Nodes reachable from the roots.
    fn reachable(&self) -> Vec<bool> {
        let mut seen = self.rooted.clone();
        let mut stack: Vec<usize> = (0..self.len()).filter(|&i| seen[i]).collect();
        while let Some(i) = stack.pop() {
            for &t in &self.edges[i] {
                if !seen[t] {
                    seen[t] = true;
                    stack.push(t);
                }
            }
        }
        seen
    }

    /// The strong count: the root handle plus the edges from live nodes.
    fn strong(&self, id: usize) -> usize {
        let incoming: usize = (0..self.len())
            .filter(|&j| self.alive[j])
            .map(|j| self.edges[j].iter().filter(|&&t| t == id).count())
            .sum();
        usize::from(self.rooted[id]) + incoming
    }

    fn kill(&mut self, id: usize) {
        assert!(self.alive[id] && !self.rooted[id], "model: killing {id}");
        self.alive[id] = false;
        // A tracked deallocation, never below zero.
        self.counts[0] = self.counts[0].saturating_sub(1);
    }

    /// Reference counting: frees, until none is left, every live unrooted
    /// node that no live node has an edge to.
    fn settle(&mut self) {
        loop {
            let mut referenced = vec![false; self.len()];
            for j in (0..self.len()).filter(|&j| self.alive[j]) {
                for &t in &self.edges[j] {
                    referenced[t] = true;
                }
            }
            let dead: Vec<usize> = (0..self.len())
                .filter(|&i| self.alive[i] && !self.rooted[i] && !referenced[i])
                .collect();
            if dead.is_empty() {
                return;
            }
            for i in dead {
                self.kill(i);
            }
        }
    }

    /// A collection of generation `g`; returns the number of nodes found
    /// unreachable.
    fn collect(&mut self, g: usize) -> usize {
        if g < 2 {
            self.counts[g + 1] += 1;
        }
        for c in &mut self.counts[..=g] {
            *c = 0;
        }
        let n = self.len();
        let examined: Vec<bool> = (0..n)
            .map(|i| self.alive[i] && usize::from(self.gen[i]) <= g)
            .collect();
        // References from outside the examined set: the test's roots, and the
        // edges of live nodes that are not examined (older or frozen ones,
        // garbage or not).
        let mut survives = vec![false; n];
        let mut stack = Vec::new();
        for i in (0..n).filter(|&i| examined[i] && self.rooted[i]) {
            survives[i] = true;
            stack.push(i);
        }
        for j in (0..n).filter(|&j| self.alive[j] && !examined[j]) {
            for &t in &self.edges[j] {
                if examined[t] && !survives[t] {
                    survives[t] = true;
                    stack.push(t);
                }
            }
        }
        while let Some(i) = stack.pop() {
            for &t in &self.edges[i] {
                if examined[t] && !survives[t] {
                    survives[t] = true;
                    stack.push(t);
                }
            }
        }
        let older = (g + 1).min(2) as u8;
        let mut survivors = 0;
        let mut garbage = Vec::new();
        for i in (0..n).filter(|&i| examined[i]) {
            if survives[i] {
                self.gen[i] = older;
                survivors += 1;
            } else {
                garbage.push(i);
            }
        }
        if g == 1 {
            self.long_lived_pending += survivors;
        } else if g == 2 {
            self.long_lived_pending = 0;
            self.long_lived_total = survivors;
        }
        for &i in &garbage {
            self.kill(i);
        }
        // What only the garbage referenced (older or frozen nodes) dies with it.
        self.settle();
        garbage.len()
    }

    /// A tracked allocation is about to happen: the generation an automatic
    /// collection collects first, if one runs.
    fn on_alloc(&mut self) -> Option<usize> {
        self.counts[0] += 1;
        let t0 = self.thresholds[0];
        if !self.enabled || t0 == 0 || self.counts[0] <= t0 {
            return None;
        }
        (0..3).rev().find(|&g| {
            self.counts[g] > self.thresholds[g]
                && !(g == 2 && self.long_lived_pending < self.long_lived_total / 4)
        })
    }

    fn freeze(&mut self) {
        for i in 0..self.len() {
            if self.alive[i] {
                self.gen[i] = PERMANENT;
            }
        }
        self.counts = [0; 3];
    }

    fn unfreeze(&mut self) {
        for i in 0..self.len() {
            if self.alive[i] && self.gen[i] == PERMANENT {
                self.gen[i] = 2;
            }
        }
    }

    fn frozen(&self) -> usize {
        (0..self.len())
            .filter(|&i| self.alive[i] && self.gen[i] == PERMANENT)
            .count()
    }
}

fn generation_number(g: Generation) -> u8 {
    match g {
        Generation::Young => 0,
        Generation::Middle => 1,
        Generation::Old => 2,
        Generation::Permanent => PERMANENT,
    }
}

// --- The harness ----------------------------------------------------------------

/// Resets the thread's collector settings when a case ends, passed or not.
struct Settings {
    callback: CallbackId,
}

impl Settings {
    fn apply(mode: Mode) -> Self {
        // Clean up after an earlier case that failed half-way: its roots and
        // weak references are gone, but its garbage and frozen nodes may not be.
        gencc::enable();
        gencc::set_thresholds(700, 10, 10);
        gencc::unfreeze();
        let leftover = gencc::collect();
        if CLEAN.with(Cell::get) {
            assert_eq!(leftover, 0, "the previous case leaked nodes");
        }
        CLEAN.with(|c| c.set(false));
        assert_eq!(gencc::count(), [0, 0, 0]);
        assert_eq!(gencc::freeze_count(), 0);
        DROPS.with(|d| *d.borrow_mut() = vec![0; MAX_NODES]);
        EVENTS.with(|e| e.borrow_mut().clear());

        match mode {
            Mode::Disabled => gencc::disable(),
            Mode::Enabled([t0, t1, t2]) => gencc::set_thresholds(t0, t1, t2),
        }
        let callback = gencc::register_callback(|info: &CollectionInfo| {
            EVENTS.with(|e| {
                e.borrow_mut()
                    .push((info.phase, info.generation, info.collected))
            });
        });
        Settings { callback }
    }
}

impl Drop for Settings {
    fn drop(&mut self) {
        gencc::unregister_callback(self.callback);
        gencc::enable();
        gencc::set_thresholds(700, 10, 10);
    }
}

struct TestWeak {
    id: usize,
    weak: Weak<Node>,
    /// How many times the callback ran, for a weak reference with one.
    fired: Option<Rc<Cell<u32>>>,
}

/// A reachable node as the walk saw it.
struct Seen {
    strong: usize,
    weak: usize,
    generation: Option<u8>,
    edges: Vec<usize>,
    /// Per weak edge: its strong count and the node it points to.
    weak_edges: Vec<(usize, Option<usize>)>,
}

struct Harness {
    mode: Mode,
    model: Model,
    roots: Vec<Option<Gc<Node>>>,
    /// One weak reference to every node ever allocated, by id: how the
    /// harness reaches a node, and checks one, without a strong handle
    /// (dropping one would mark the node as having lost a reference, and
    /// hide from the model every state in which a node is not so marked).
    ids: Vec<Weak<Node>>,
    weaks: Vec<TestWeak>,
    log: String,
    step: usize,
    // Dropped last: after every handle.
    _settings: Settings,
}

/// `sel` if it is one of `candidates`, else `candidates[sel % len]`.
fn pick(sel: usize, candidates: &[usize]) -> Option<usize> {
    if candidates.contains(&sel) {
        Some(sel)
    } else if candidates.is_empty() {
        None
    } else {
        Some(candidates[sel % candidates.len()])
    }
}

/// The callback events of one collection of generation `g` that finds `n`.
fn expect_collection(events: &mut Vec<(Phase, usize, usize)>, g: usize, n: usize) {
    events.push((Phase::Start, g, 0));
    events.push((Phase::Stop, g, n));
}

impl Harness {
    fn new(mode: Mode) -> Self {
        let settings = Settings::apply(mode);
        Harness {
            mode,
            model: Model::new(mode),
            roots: Vec::new(),
            ids: Vec::new(),
            weaks: Vec::new(),
            log: String::new(),
            step: 0,
            _settings: settings,
        }
    }

    /// The failure context: the mode and every resolved step so far.
    fn context(&self) -> String {
        format!(
            "\nmode: {:?}\nsteps:\n{}model: alive {:?}\n       rooted {:?}\n       gen {:?}\n       edges {:?}",
            self.mode, self.log, self.model.alive, self.model.rooted, self.model.gen, self.model.edges
        )
    }

    fn note(&mut self, action: impl AsRef<str>) {
        let _ = writeln!(self.log, "  #{} {}", self.step, action.as_ref());
    }

    /// What the harness sees of every node reachable from the roots, found
    /// by walking the real graph through references: no handle is made, so
    /// no count changes.
    fn walk(&self) -> Vec<Option<Seen>> {
        let mut found: Vec<Option<Seen>> = (0..self.model.len()).map(|_| None).collect();
        for (id, root) in self.roots.iter().enumerate() {
            if let Some(r) = root {
                assert_eq!(r.id, id, "root slot {id} holds node {}", r.id);
                self.visit(r, &mut found);
            }
        }
        found
    }

    /// Records `h` and what it reaches. Recursive, at most `MAX_NODES` deep.
    fn visit(&self, h: &Gc<Node>, found: &mut [Option<Seen>]) {
        if found[h.id].is_some() {
            return;
        }
        found[h.id] = Some(Seen {
            strong: Gc::strong_count(h),
            weak: Gc::weak_count(h),
            generation: Gc::generation(h).map(generation_number),
            edges: h.edges.borrow().iter().map(|e| e.id).collect(),
            weak_edges: h.weaks.borrow().iter().map(|w| self.observe(w)).collect(),
        });
        for e in h.edges.borrow().iter() {
            self.visit(e, found);
        }
    }

    /// What a weak reference says without being upgraded: its strong count,
    /// and the node it points to.
    fn observe(&self, w: &Weak<Node>) -> (usize, Option<usize>) {
        let target = self.ids.iter().position(|i| Weak::ptr_eq(i, w));
        (w.strong_count(), target)
    }

    /// Live nodes the test can get a handle to: the reachable ones, and those
    /// a weak reference (the test's, or a reachable node's) points to.
    fn accessible(&self, walk: &[Option<Seen>]) -> Vec<usize> {
        let mut ok: Vec<bool> = walk.iter().map(Option::is_some).collect();
        for w in &self.weaks {
            ok[w.id] = true;
        }
        for (j, seen) in walk.iter().enumerate() {
            if seen.is_some() {
                for &t in &self.model.weak_edges[j] {
                    ok[t] = true;
                }
            }
        }
        (0..ok.len())
            .filter(|&i| ok[i] && self.model.alive[i])
            .collect()
    }

    /// A new strong handle to accessible node `id`, and how it was found.
    /// Dropping it marks the node as having lost a reference, as in a
    /// program; moving it into a root or an edge does not.
    fn handle(&self, walk: &[Option<Seen>], id: usize) -> (Gc<Node>, &'static str) {
        let h = self.ids[id].upgrade().unwrap_or_else(|| {
            panic!(
                "weak reference to live node {id} failed to upgrade{}",
                self.context()
            )
        });
        assert_eq!(h.id, id, "weak reference upgraded to the wrong node");
        (h, if walk[id].is_some() { "path" } else { "weak" })
    }

    /// Calls `f` with accessible node `id` through its root if it has one
    /// (no count changes), else through a new handle, dropped afterwards.
    fn with_node<R>(
        &self,
        walk: &[Option<Seen>],
        id: usize,
        f: impl FnOnce(&Gc<Node>) -> R,
    ) -> (R, &'static str) {
        match &self.roots[id] {
            Some(root) => (f(root), "root"),
            None => {
                let (h, via) = self.handle(walk, id);
                (f(&h), via)
            }
        }
    }

    /// Takes edge number `i` out of node `a`, in the model and in the real
    /// graph: its handle, and how `a` was reached.
    fn take_edge(&mut self, walk: &[Option<Seen>], a: usize, i: usize) -> (Gc<Node>, &'static str) {
        let b = self.model.edges[a].remove(i);
        let (h, via) = self.with_node(walk, a, |ha| ha.edges.borrow_mut().remove(i));
        assert_eq!(h.id, b, "edge #{i} of node {a}");
        (h, via)
    }

    fn run(&mut self, op: &Op) {
        EVENTS.with(|e| e.borrow_mut().clear());
        let mut expected_events = Vec::new();
        match *op {
            Op::New => {
                if self.model.len() >= MAX_NODES {
                    self.note("New: skipped, all nodes allocated");
                } else {
                    let mut action = format!("New -> node {}", self.model.len());
                    if let Some(g) = self.model.on_alloc() {
                        let n = self.model.collect(g);
                        let _ = write!(action, " (automatic collection of generation {g}: {n})");
                        expect_collection(&mut expected_events, g, n);
                    }
                    let id = self.model.add_node();
                    self.note(action);
                    let root = new_node(id);
                    self.ids.push(Gc::downgrade(&root));
                    self.roots.push(Some(root));
                }
            }
            Op::AddEdge(a, b) => {
                let walk = self.walk();
                let cands = self.accessible(&walk);
                match (pick(a, &cands), pick(b, &cands)) {
                    (Some(a), Some(b)) => {
                        let (hb, via_b) = self.handle(&walk, b);
                        let ((), via_a) =
                            self.with_node(&walk, a, |ha| ha.edges.borrow_mut().push(hb));
                        self.note(format!(
                            "AddEdge({a} -> {b}) [{a} by {via_a}, {b} by {via_b}]"
                        ));
                        self.model.edges[a].push(b);
                    }
                    _ => self.note("AddEdge: skipped"),
                }
            }
            Op::RemoveEdge(a, i) => {
                let walk = self.walk();
                let cands: Vec<usize> = self
                    .accessible(&walk)
                    .into_iter()
                    .filter(|&a| !self.model.edges[a].is_empty())
                    .collect();
                match pick(a, &cands) {
                    Some(a) => {
                        let i = i % self.model.edges[a].len();
                        let (removed, via) = self.take_edge(&walk, a, i);
                        let b = removed.id;
                        self.note(format!("RemoveEdge({a} -> {b}) [edge #{i}, {a} by {via}]"));
                        drop(removed);
                    }
                    None => self.note("RemoveEdge: skipped"),
                }
            }
            Op::DropRoot(a) => {
                let cands: Vec<usize> = (0..self.model.len())
                    .filter(|&i| self.model.rooted[i])
                    .collect();
                match pick(a, &cands) {
                    Some(a) => {
                        self.note(format!("DropRoot({a})"));
                        self.model.rooted[a] = false;
                        let root = self.roots[a].take();
                        drop(root);
                    }
                    None => self.note("DropRoot: skipped"),
                }
            }
            Op::MoveRoot(a, b) => {
                let rooted: Vec<usize> = (0..self.model.len())
                    .filter(|&i| self.model.rooted[i])
                    .collect();
                let walk = self.walk();
                let cands = self.accessible(&walk);
                match (pick(a, &rooted), pick(b, &cands)) {
                    (Some(a), Some(b)) => {
                        let root = self.roots[a].take().expect("a rooted node has a root");
                        let ((), via) =
                            self.with_node(&walk, b, |hb| hb.edges.borrow_mut().push(root));
                        self.note(format!("MoveRoot({a} into {b}) [{b} by {via}]"));
                        self.model.rooted[a] = false;
                        self.model.edges[b].push(a);
                    }
                    _ => self.note("MoveRoot: skipped"),
                }
            }
            Op::TakeEdge(a, i) => {
                let walk = self.walk();
                let cands: Vec<usize> = self
                    .accessible(&walk)
                    .into_iter()
                    .filter(|&a| self.model.edges[a].iter().any(|&b| !self.model.rooted[b]))
                    .collect();
                match pick(a, &cands) {
                    Some(a) => {
                        let movable: Vec<usize> = (0..self.model.edges[a].len())
                            .filter(|&k| !self.model.rooted[self.model.edges[a][k]])
                            .collect();
                        let i = movable[i % movable.len()];
                        let (taken, via) = self.take_edge(&walk, a, i);
                        let b = taken.id;
                        self.note(format!("TakeEdge({a} -> {b}) [edge #{i}, {a} by {via}]"));
                        self.roots[b] = Some(taken);
                        self.model.rooted[b] = true;
                    }
                    None => self.note("TakeEdge: skipped"),
                }
            }
            Op::Root(a) => {
                let walk = self.walk();
                let cands: Vec<usize> = self
                    .accessible(&walk)
                    .into_iter()
                    .filter(|&a| !self.model.rooted[a])
                    .collect();
                match pick(a, &cands) {
                    Some(a) => {
                        let (h, via) = self.handle(&walk, a);
                        self.note(format!("Root({a}) [by {via}]"));
                        self.roots[a] = Some(h);
                        self.model.rooted[a] = true;
                    }
                    None => self.note("Root: skipped"),
                }
            }
            Op::TakeWeak(a, with_callback) => {
                let walk = self.walk();
                let cands = self.accessible(&walk);
                match pick(a, &cands) {
                    Some(a) => {
                        let ((weak, fired), via) = self.with_node(&walk, a, |h| {
                            if with_callback {
                                let fired = Rc::new(Cell::new(0));
                                let f = fired.clone();
                                let weak = Gc::downgrade_with(h, move |w: &Weak<Node>| {
                                    assert!(w.upgrade().is_none(), "callback saw a live referent");
                                    f.set(f.get() + 1);
                                });
                                (weak, Some(fired))
                            } else {
                                (Gc::downgrade(h), None)
                            }
                        });
                        let kind = if with_callback {
                            "with callback"
                        } else {
                            "plain"
                        };
                        self.note(format!(
                            "TakeWeak({a}) {kind} -> weak #{} [by {via}]",
                            self.weaks.len()
                        ));
                        self.weaks.push(TestWeak { id: a, weak, fired });
                    }
                    None => self.note("TakeWeak: skipped"),
                }
            }
            Op::DropWeak(i) => {
                if self.weaks.is_empty() {
                    self.note("DropWeak: skipped");
                } else {
                    let i = i % self.weaks.len();
                    let w = self.weaks.remove(i);
                    self.note(format!("DropWeak(#{i}, to node {})", w.id));
                    drop(w);
                }
            }
            Op::AddWeakEdge(a, b) => {
                let walk = self.walk();
                let cands = self.accessible(&walk);
                match (pick(a, &cands), pick(b, &cands)) {
                    (Some(a), Some(b)) => {
                        let to_b = self.ids[b].clone();
                        let ((), via_a) =
                            self.with_node(&walk, a, |ha| ha.weaks.borrow_mut().push(to_b));
                        self.note(format!("AddWeakEdge({a} ~> {b}) [{a} by {via_a}]"));
                        self.model.weak_edges[a].push(b);
                    }
                    _ => self.note("AddWeakEdge: skipped"),
                }
            }
            Op::Collect(g) => {
                let g = g % 3;
                let expected = self.model.collect(g);
                self.note(format!("Collect({g}), expecting {expected}"));
                let got = gencc::collect_generation(g).expect("valid generation");
                assert_eq!(
                    got,
                    expected,
                    "collect_generation({g}) returned {got}, the model expects {expected}{}",
                    self.context()
                );
                expect_collection(&mut expected_events, g, expected);
            }
            Op::CollectFull => {
                let expected = self.model.collect(2);
                self.note(format!("CollectFull, expecting {expected}"));
                let got = gencc::collect();
                assert_eq!(
                    got,
                    expected,
                    "collect() returned {got}, the model expects {expected}{}",
                    self.context()
                );
                expect_collection(&mut expected_events, 2, expected);
            }
            Op::Freeze => {
                self.note("Freeze");
                self.model.freeze();
                gencc::freeze();
            }
            Op::Unfreeze => {
                self.note("Unfreeze");
                self.model.unfreeze();
                gencc::unfreeze();
            }
        }
        self.model.settle();
        let events = EVENTS.with(|e| std::mem::take(&mut *e.borrow_mut()));
        assert_eq!(
            events,
            expected_events,
            "collections seen by the callback (phase, generation, collected; left) differ from the model's (right){}",
            self.context()
        );
        self.check();
        self.step += 1;
    }

    /// Compares gencc with the model.
    fn check(&self) {
        let n = self.model.len();
        let all = drops();
        assert!(
            all[n..].iter().all(|&d| d == 0),
            "an unallocated id was dropped{}",
            self.context()
        );
        let drops = &all[..n];
        for (id, &d) in drops.iter().enumerate() {
            assert!(d <= 1, "node {id} was dropped {d} times{}", self.context());
        }
        let live: Vec<bool> = drops.iter().map(|&d| d == 0).collect();
        let reach = self.model.reachable();

        // Nothing reachable is freed.
        for id in 0..n {
            assert!(
                live[id] || !reach[id],
                "reachable node {id} was dropped{}",
                self.context()
            );
        }
        // Reference counting frees what nothing live references, at once.
        for id in (0..n).filter(|&id| live[id] && !self.model.rooted[id]) {
            let referenced = (0..n).any(|j| live[j] && self.model.edges[j].contains(&id));
            assert!(
                referenced,
                "node {id} is referenced by no live node but was not freed{}",
                self.context()
            );
        }
        // Exactly what the model frees, no more, no less. With the two checks
        // above this fails only on what depends on generations.
        for (id, (&live, &expected)) in live.iter().zip(&self.model.alive).enumerate() {
            assert_eq!(
                live,
                expected,
                "node {id} (unreachable garbage, model generation {}): gencc says live = {live}, the model says {expected}{}",
                self.model.gen[id],
                self.context()
            );
        }

        // The real graph, walked from the roots, is the model's.
        let walk = self.walk();
        for id in 0..n {
            assert_eq!(
                walk[id].is_some(),
                reach[id],
                "test bug: node {id} reachability in the real graph{}",
                self.context()
            );
            let Some(seen) = &walk[id] else { continue };
            assert_eq!(
                seen.edges, self.model.edges[id],
                "test bug: edges of node {id}"
            );
            assert_eq!(
                seen.strong,
                self.model.strong(id),
                "strong count of node {id}{}",
                self.context()
            );
            assert_eq!(
                seen.generation,
                Some(self.model.gen[id]),
                "generation of node {id}{}",
                self.context()
            );
            // The harness's own weak reference (`ids`) counts too.
            let weak_handles = 1
                + self.weaks.iter().filter(|w| w.id == id).count()
                + (0..n)
                    .filter(|&j| live[j])
                    .map(|j| {
                        self.model.weak_edges[j]
                            .iter()
                            .filter(|&&t| t == id)
                            .count()
                    })
                    .sum::<usize>();
            assert_eq!(
                seen.weak,
                weak_handles,
                "weak count of node {id}{}",
                self.context()
            );
        }

        // Weak references: they would upgrade (a positive `strong_count`)
        // iff the value was not dropped. Without finalizers the collector
        // drops all the garbage it clears, so this is exact at every step
        // boundary, even for uncollected garbage. They are not upgraded: the
        // handle dropped afterwards would mark the node (see `ids`).
        let check_weak = |(strong, target): (usize, Option<usize>), t: usize, what: &str| {
            assert_eq!(target, Some(t), "{what} points to the wrong node");
            if live[t] {
                assert_eq!(
                    strong,
                    self.model.strong(t),
                    "Weak::strong_count of {what} to live node {t} (reachable: {}){}",
                    reach[t],
                    self.context()
                );
            } else {
                assert_eq!(
                    strong,
                    0,
                    "{what} to dropped node {t} would upgrade{}",
                    self.context()
                );
            }
        };
        for (i, w) in self.weaks.iter().enumerate() {
            check_weak(self.observe(&w.weak), w.id, &format!("weak #{i}"));
            if !live[w.id] {
                assert!(
                    w.weak.upgrade().is_none(),
                    "weak #{i} to dropped node {} upgraded",
                    w.id
                );
            }
            if let Some(fired) = &w.fired {
                assert_eq!(
                    fired.get(),
                    drops[w.id],
                    "weak #{i}'s callback runs (node {} dropped {} times){}",
                    w.id,
                    drops[w.id],
                    self.context()
                );
            }
        }
        for (j, seen) in walk.iter().enumerate() {
            if let Some(seen) = seen {
                for (k, &observed) in seen.weak_edges.iter().enumerate() {
                    let t = self.model.weak_edges[j][k];
                    check_weak(observed, t, &format!("weak edge #{k} of node {j}"));
                }
            }
        }

        // The collector's bookkeeping.
        assert_eq!(
            gencc::freeze_count(),
            self.model.frozen(),
            "freeze_count{}",
            self.context()
        );
        assert_eq!(
            gencc::count(),
            self.model.counts,
            "count(){}",
            self.context()
        );
    }

    /// Drops every root, unfreezes, collects: everything must be freed, once.
    fn finish(mut self) {
        self.note("finish: drop every root");
        for id in 0..self.roots.len() {
            self.model.rooted[id] = false;
            let root = self.roots[id].take();
            drop(root);
        }
        self.model.settle();
        self.check();
        self.note("finish: Unfreeze");
        self.model.unfreeze();
        gencc::unfreeze();
        let expected = self.model.collect(2);
        self.note(format!("finish: CollectFull, expecting {expected}"));
        EVENTS.with(|e| e.borrow_mut().clear());
        let got = gencc::collect();
        assert_eq!(got, expected, "final collect(){}", self.context());
        self.check();
        let drops = drops();
        for (id, &d) in drops[..self.model.len()].iter().enumerate() {
            assert_eq!(
                d,
                1,
                "node {id} dropped {d} times by the end{}",
                self.context()
            );
        }
        for (i, w) in self.weaks.iter().enumerate() {
            assert!(w.weak.upgrade().is_none());
            if let Some(fired) = &w.fired {
                assert_eq!(fired.get(), 1, "weak #{i}'s callback at the end");
            }
        }
        self.weaks.clear();
        assert_eq!(gencc::freeze_count(), 0);
        assert_eq!(
            gencc::collect(),
            0,
            "garbage left after the final collection"
        );
        CLEAN.with(|c| c.set(true));
    }
}

fn run_case(mode: Mode, ops: &[Op]) {
    let mut h = Harness::new(mode);
    h.check();
    for op in ops {
        h.run(op);
    }
    h.finish();
    assert_eq!(gencc::thresholds(), DEFAULT_THRESHOLDS);
    assert!(gencc::is_enabled());
}

// --- Strategies -------------------------------------------------------------------

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        Just(Mode::Disabled),
        Just(Mode::Enabled(DEFAULT_THRESHOLDS)),
        Just(Mode::Enabled([3, 2, 2])),
        (0..6usize, 0..4usize, 0..4usize).prop_map(|(a, b, c)| Mode::Enabled([a, b, c])),
    ]
}

fn node() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0..8usize, 1 => 0..MAX_NODES]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::New),
        7 => (node(), node()).prop_map(|(a, b)| Op::AddEdge(a, b)),
        2 => (node(), 0..8usize).prop_map(|(a, i)| Op::RemoveEdge(a, i)),
        2 => node().prop_map(Op::DropRoot),
        1 => (node(), node()).prop_map(|(a, b)| Op::MoveRoot(a, b)),
        1 => (node(), 0..8usize).prop_map(|(a, i)| Op::TakeEdge(a, i)),
        2 => node().prop_map(Op::Root),
        1 => (node(), any::<bool>()).prop_map(|(a, cb)| Op::TakeWeak(a, cb)),
        1 => (0..8usize).prop_map(Op::DropWeak),
        1 => (node(), node()).prop_map(|(a, b)| Op::AddWeakEdge(a, b)),
        2 => (0..3usize).prop_map(Op::Collect),
        1 => Just(Op::CollectFull),
        1 => Just(Op::Freeze),
        1 => Just(Op::Unfreeze),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        // 256 by default; `PROPTEST_CASES=5000 cargo test --release --test
        // model` for a longer search.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    #[cfg_attr(miri, ignore)]
    fn random_operations_match_the_model(
        mode in mode(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        run_case(mode, &ops);
    }
}

// --- Fixed sequences (also run under Miri) --------------------------------------------

#[test]
fn fixed_sequences() {
    use Op::*;

    // Self-edges, duplicate edges, weak edges, weak callbacks, resurrection of
    // uncollected garbage through a weak reference, young collections.
    run_case(
        Mode::Disabled,
        &[
            New,
            New,
            AddEdge(0, 0),
            AddEdge(0, 1),
            AddEdge(0, 1),
            AddEdge(1, 0),
            TakeWeak(0, true),
            TakeWeak(1, false),
            AddWeakEdge(1, 0),
            AddWeakEdge(0, 1),
            DropRoot(0),
            RemoveEdge(0, 1),
            DropRoot(1),
            Root(0),
            DropRoot(0),
            Collect(1),
            New,
            AddEdge(2, 2),
            DropRoot(2),
            Collect(0),
            New,
            New,
            AddEdge(3, 4),
            RemoveEdge(3, 0),
            DropRoot(4),
            CollectFull,
        ],
    );

    // Freezing: frozen garbage is never examined, and the young garbage it
    // references counts as referenced from outside.
    run_case(
        Mode::Disabled,
        &[
            New,
            New,
            AddEdge(0, 1),
            AddEdge(1, 0),
            TakeWeak(0, true),
            Freeze,
            New,
            AddEdge(2, 0),
            AddEdge(0, 2),
            DropRoot(0),
            DropRoot(1),
            DropRoot(2),
            CollectFull,
            Collect(0),
            Root(2),
            DropRoot(2),
            Unfreeze,
            Collect(1),
            New,
            AddEdge(3, 3),
            DropRoot(3),
            Freeze,
            CollectFull,
            Unfreeze,
            Collect(0),
            Collect(2),
            New,
            New,
            AddEdge(4, 5),
            AddEdge(5, 4),
            Freeze,
            DropRoot(4),
            Unfreeze,
            Freeze,
            DropRoot(5),
            CollectFull,
        ],
    );

    // Automatic collections inside `Gc::new`, of every generation, with
    // garbage in every generation and weak references watching it.
    let mut ops = Vec::new();
    for i in 0..14 {
        ops.extend([New, AddEdge(i, i), TakeWeak(i, i % 2 == 0)]);
        if i > 0 {
            ops.push(AddEdge(i, i - 1));
        }
        if i % 3 != 2 {
            ops.push(DropRoot(i));
        }
        if i % 4 == 3 {
            ops.push(Root(i - 2));
        }
    }
    ops.push(Freeze);
    ops.extend([New, New, New, Unfreeze, New, New, New]);
    run_case(Mode::Enabled([3, 2, 2]), &ops);

    // The long-lived rule: a full collection is due by the counts but
    // skipped, since too few nodes were promoted into generation 2 since the
    // last one.
    let mut ops = vec![New; 11];
    ops.extend([
        CollectFull,
        Collect(0),
        New,
        DropRoot(0),
        New,
        New,
        New,
        New,
    ]);
    run_case(Mode::Enabled([1, 0, 0]), &ops);

    // A young node kept only by an old, clean one whose last handle was
    // moved into the young node: the young collection must not clear the
    // young node's mark, or the full one skips the cycle.
    run_case(
        Mode::Disabled,
        &[
            New,
            CollectFull,
            New,
            AddEdge(0, 1),
            MoveRoot(0, 1),
            DropRoot(1),
            Collect(0),
            CollectFull,
        ],
    );

    // The same with a frozen node: even a full collection takes its edge for
    // an outside reference, so unfreezing must make the next one search.
    run_case(
        Mode::Disabled,
        &[
            New,
            Freeze,
            New,
            AddEdge(0, 1),
            MoveRoot(0, 1),
            DropRoot(1),
            CollectFull,
            Unfreeze,
            CollectFull,
        ],
    );

    // Handles moved out of a node into a root and back, between
    // collections of every kind.
    run_case(
        Mode::Enabled([2, 2, 1]),
        &[
            New,
            New,
            AddEdge(0, 1),
            AddEdge(1, 0),
            DropRoot(1),
            CollectFull,
            TakeEdge(0, 0),
            DropRoot(0),
            Collect(0),
            New,
            MoveRoot(1, 2),
            TakeEdge(2, 0),
            CollectFull,
            DropRoot(1),
            Collect(1),
        ],
    );

    // A collection on every allocation, with garbage.
    let mut ops = Vec::new();
    for i in 0..10 {
        ops.extend([New, AddEdge(i, i / 2)]);
        if i % 2 == 1 {
            ops.push(DropRoot(i - 1));
        }
    }
    run_case(Mode::Enabled([1, 0, 0]), &ops);
}
