//! One small adapter per crate. Every workload is written once, generic over
//! [`Heap`]; an adapter only says how its crate allocates the common node,
//! sets an edge, collects, and makes and upgrades weak references.
//!
//! The node is the same everywhere: a `u64` payload and two optional strong
//! edges, behind the one cell each crate needs. With `RefCell` and 8-byte
//! handles that is 8 + 8 + 2 × 8 = 32 bytes of user data (`Rc`: 48 bytes with
//! its counts). dumpster's `Option<Gc>` has no niche and takes 16 bytes.
//! Trace impls are written by hand, delegating to each crate's own impls for
//! `RefCell` and `Option`, so no derive crate has to be built (gencc's own
//! derive is built anyway and is used).

use std::cell::RefCell;

/// The operations a workload needs from a crate.
pub trait Heap: 'static {
    /// Whether the crate has a cycle collector. For std `Rc` (`false`) the
    /// workloads break every cycle by hand before dropping it: the lower bound
    /// of what owning cyclic data can cost.
    const COLLECTS: bool = true;
    /// Whether the crate offers weak references (W8).
    const HAS_WEAK: bool = true;
    /// A strong handle to a node.
    type Ptr: Clone;
    /// A weak handle to a node (`()` when the crate has none).
    type Weak;
    /// A strong handle to an acyclic `u64` payload (W1 with an acyclic payload).
    type Leaf;

    fn new(payload: u64) -> Self::Ptr;
    fn new_leaf(payload: u64) -> Self::Leaf;
    fn payload(p: &Self::Ptr) -> u64;
    /// Stores `to` in edge `slot` (0 or 1) of `p`; returns the old edge.
    fn replace(p: &Self::Ptr, slot: usize, to: Option<Self::Ptr>) -> Option<Self::Ptr>;
    /// One explicit full collection (a no-op for `Rc`).
    fn collect();
    /// `None` when the crate has no weak references.
    fn downgrade(p: &Self::Ptr) -> Option<Self::Weak>;
    fn upgrade(w: &Self::Weak) -> Option<Self::Ptr>;
    /// Returns the memory the crate's own allocator keeps for reuse (gencc's
    /// pool keeps empty arenas). The leak check and the bytes count call it
    /// before each reading, so that kept memory is neither taken for a leak
    /// nor reused unseen. Never called in timed code.
    fn release_kept() {}
}

/// The crates compared, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Crate {
    Gencc,
    Rc,
    RustCc,
    Dumpster,
    Gcmodule,
    Bacon,
}

impl Crate {
    pub const ALL: [Crate; 6] = [
        Crate::Gencc,
        Crate::Rc,
        Crate::RustCc,
        Crate::Dumpster,
        Crate::Gcmodule,
        Crate::Bacon,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Crate::Gencc => "gencc",
            Crate::Rc => "Rc",
            Crate::RustCc => "rust-cc",
            Crate::Dumpster => "dumpster",
            Crate::Gcmodule => "gcmodule",
            Crate::Bacon => "bacon_rajan_cc",
        }
    }

    pub fn from_name(name: &str) -> Option<Crate> {
        Crate::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The other cycle collectors (not gencc, not `Rc`).
    pub fn is_peer(self) -> bool {
        !matches!(self, Crate::Gencc | Crate::Rc)
    }
}

/// Runs `$body` with `$H` bound to the adapter type of `$krate`.
macro_rules! with_heap {
    ($krate:expr, $H:ident => $body:expr) => {
        match $krate {
            $crate::adapters::Crate::Gencc => {
                type $H = $crate::adapters::Gencc;
                $body
            }
            $crate::adapters::Crate::Rc => {
                type $H = $crate::adapters::StdRc;
                $body
            }
            $crate::adapters::Crate::RustCc => {
                type $H = $crate::adapters::RustCc;
                $body
            }
            $crate::adapters::Crate::Dumpster => {
                type $H = $crate::adapters::Dumpster;
                $body
            }
            $crate::adapters::Crate::Gcmodule => {
                type $H = $crate::adapters::Gcmodule;
                $body
            }
            $crate::adapters::Crate::Bacon => {
                type $H = $crate::adapters::Bacon;
                $body
            }
        }
    };
}
pub(crate) use with_heap;

// ---------------------------------------------------------------- gencc

pub struct Gencc;

#[derive(gencc::Trace)]
pub struct GenccNode {
    payload: u64,
    edges: RefCell<[Option<gencc::Gc<GenccNode>>; 2]>,
}

impl Heap for Gencc {
    type Ptr = gencc::Gc<GenccNode>;
    type Weak = gencc::Weak<GenccNode>;
    type Leaf = gencc::Gc<u64>;

    fn new(payload: u64) -> Self::Ptr {
        gencc::Gc::new(GenccNode {
            payload,
            edges: RefCell::new([None, None]),
        })
    }
    fn new_leaf(payload: u64) -> Self::Leaf {
        gencc::Gc::new(payload)
    }
    fn payload(p: &Self::Ptr) -> u64 {
        p.payload
    }
    fn replace(p: &Self::Ptr, slot: usize, to: Option<Self::Ptr>) -> Option<Self::Ptr> {
        std::mem::replace(&mut p.edges.borrow_mut()[slot], to)
    }
    fn collect() {
        gencc::collect();
    }
    fn downgrade(p: &Self::Ptr) -> Option<Self::Weak> {
        Some(gencc::Gc::downgrade(p))
    }
    fn upgrade(w: &Self::Weak) -> Option<Self::Ptr> {
        w.upgrade()
    }
    fn release_kept() {
        #[cfg(feature = "pool")]
        gencc::pool::trim();
    }
}

// ---------------------------------------------------------------- std Rc

pub struct StdRc;

pub struct RcNode {
    payload: u64,
    edges: RefCell<[Option<std::rc::Rc<RcNode>>; 2]>,
}

impl Heap for StdRc {
    const COLLECTS: bool = false;
    type Ptr = std::rc::Rc<RcNode>;
    type Weak = std::rc::Weak<RcNode>;
    type Leaf = std::rc::Rc<u64>;

    fn new(payload: u64) -> Self::Ptr {
        std::rc::Rc::new(RcNode {
            payload,
            edges: RefCell::new([None, None]),
        })
    }
    fn new_leaf(payload: u64) -> Self::Leaf {
        std::rc::Rc::new(payload)
    }
    fn payload(p: &Self::Ptr) -> u64 {
        p.payload
    }
    fn replace(p: &Self::Ptr, slot: usize, to: Option<Self::Ptr>) -> Option<Self::Ptr> {
        std::mem::replace(&mut p.edges.borrow_mut()[slot], to)
    }
    fn collect() {}
    fn downgrade(p: &Self::Ptr) -> Option<Self::Weak> {
        Some(std::rc::Rc::downgrade(p))
    }
    fn upgrade(w: &Self::Weak) -> Option<Self::Ptr> {
        w.upgrade()
    }
}

// ---------------------------------------------------------------- rust-cc

pub struct RustCc;

pub struct RustCcNode {
    payload: u64,
    edges: RefCell<[Option<rust_cc::Cc<RustCcNode>>; 2]>,
}

// SAFETY: `edges` is the only field holding handles; it is traced once,
// through rust-cc's own impls for `RefCell`, arrays and `Option`.
unsafe impl rust_cc::Trace for RustCcNode {
    fn trace(&self, ctx: &mut rust_cc::Context<'_>) {
        self.edges.trace(ctx);
    }
}

impl rust_cc::Finalize for RustCcNode {}

impl Heap for RustCc {
    type Ptr = rust_cc::Cc<RustCcNode>;
    type Weak = rust_cc::weak::Weak<RustCcNode>;
    type Leaf = rust_cc::Cc<u64>;

    fn new(payload: u64) -> Self::Ptr {
        rust_cc::Cc::new(RustCcNode {
            payload,
            edges: RefCell::new([None, None]),
        })
    }
    fn new_leaf(payload: u64) -> Self::Leaf {
        rust_cc::Cc::new(payload)
    }
    fn payload(p: &Self::Ptr) -> u64 {
        p.payload
    }
    fn replace(p: &Self::Ptr, slot: usize, to: Option<Self::Ptr>) -> Option<Self::Ptr> {
        std::mem::replace(&mut p.edges.borrow_mut()[slot], to)
    }
    fn collect() {
        rust_cc::collect_cycles();
    }
    fn downgrade(p: &Self::Ptr) -> Option<Self::Weak> {
        Some(p.downgrade())
    }
    fn upgrade(w: &Self::Weak) -> Option<Self::Ptr> {
        w.upgrade()
    }
}

// ---------------------------------------------------------------- dumpster

pub struct Dumpster;

pub struct DumpsterNode {
    payload: u64,
    edges: RefCell<[Option<dumpster::unsync::Gc<DumpsterNode>>; 2]>,
}

// SAFETY: `edges` is the only field holding handles; it is visited once,
// through dumpster's own impls for `RefCell`, arrays and `Option`.
unsafe impl<V: dumpster::Visitor> dumpster::TraceWith<V> for DumpsterNode {
    fn accept(&self, visitor: &mut V) -> Result<(), ()> {
        self.edges.accept(visitor)
    }
}

impl Heap for Dumpster {
    const HAS_WEAK: bool = false;
    type Ptr = dumpster::unsync::Gc<DumpsterNode>;
    type Weak = ();
    type Leaf = dumpster::unsync::Gc<u64>;

    fn new(payload: u64) -> Self::Ptr {
        dumpster::unsync::Gc::new(DumpsterNode {
            payload,
            edges: RefCell::new([None, None]),
        })
    }
    fn new_leaf(payload: u64) -> Self::Leaf {
        dumpster::unsync::Gc::new(payload)
    }
    fn payload(p: &Self::Ptr) -> u64 {
        p.payload
    }
    fn replace(p: &Self::Ptr, slot: usize, to: Option<Self::Ptr>) -> Option<Self::Ptr> {
        std::mem::replace(&mut p.edges.borrow_mut()[slot], to)
    }
    fn collect() {
        dumpster::unsync::collect();
    }
    fn downgrade(_: &Self::Ptr) -> Option<Self::Weak> {
        None
    }
    fn upgrade(_: &Self::Weak) -> Option<Self::Ptr> {
        None
    }
}

// ---------------------------------------------------------------- gcmodule

pub struct Gcmodule;

pub struct GcmoduleNode {
    payload: u64,
    edges: RefCell<[Option<gcmodule::Cc<GcmoduleNode>>; 2]>,
}

impl gcmodule::Trace for GcmoduleNode {
    fn trace(&self, tracer: &mut gcmodule::Tracer) {
        // As gcmodule's own `RefCell` impl: skip a cell that is borrowed.
        // (0.3 has no impl for arrays, so the two edges are traced one by one.)
        if let Ok(edges) = self.edges.try_borrow() {
            edges[0].trace(tracer);
            edges[1].trace(tracer);
        }
    }
}

impl Heap for Gcmodule {
    const HAS_WEAK: bool = false;
    type Ptr = gcmodule::Cc<GcmoduleNode>;
    type Weak = ();
    type Leaf = gcmodule::Cc<u64>;

    fn new(payload: u64) -> Self::Ptr {
        gcmodule::Cc::new(GcmoduleNode {
            payload,
            edges: RefCell::new([None, None]),
        })
    }
    fn new_leaf(payload: u64) -> Self::Leaf {
        gcmodule::Cc::new(payload)
    }
    fn payload(p: &Self::Ptr) -> u64 {
        p.payload
    }
    fn replace(p: &Self::Ptr, slot: usize, to: Option<Self::Ptr>) -> Option<Self::Ptr> {
        std::mem::replace(&mut p.edges.borrow_mut()[slot], to)
    }
    fn collect() {
        gcmodule::collect_thread_cycles();
    }
    fn downgrade(_: &Self::Ptr) -> Option<Self::Weak> {
        None
    }
    fn upgrade(_: &Self::Weak) -> Option<Self::Ptr> {
        None
    }
}

// ---------------------------------------------------------------- bacon_rajan_cc

pub struct Bacon;

pub struct BaconNode {
    payload: u64,
    edges: RefCell<[Option<bacon_rajan_cc::Cc<BaconNode>>; 2]>,
}

impl bacon_rajan_cc::Trace for BaconNode {
    fn trace(&self, tracer: &mut bacon_rajan_cc::Tracer) {
        // As bacon_rajan_cc's own `RefCell` impl (which borrows); 0.4 has no
        // impl for arrays, so the two edges are traced one by one.
        let edges = self.edges.borrow();
        edges[0].trace(tracer);
        edges[1].trace(tracer);
    }
}

impl Heap for Bacon {
    type Ptr = bacon_rajan_cc::Cc<BaconNode>;
    type Weak = bacon_rajan_cc::Weak<BaconNode>;
    type Leaf = bacon_rajan_cc::Cc<u64>;

    fn new(payload: u64) -> Self::Ptr {
        bacon_rajan_cc::Cc::new(BaconNode {
            payload,
            edges: RefCell::new([None, None]),
        })
    }
    fn new_leaf(payload: u64) -> Self::Leaf {
        bacon_rajan_cc::Cc::new(payload)
    }
    fn payload(p: &Self::Ptr) -> u64 {
        p.payload
    }
    fn replace(p: &Self::Ptr, slot: usize, to: Option<Self::Ptr>) -> Option<Self::Ptr> {
        std::mem::replace(&mut p.edges.borrow_mut()[slot], to)
    }
    fn collect() {
        bacon_rajan_cc::collect_cycles();
    }
    fn downgrade(p: &Self::Ptr) -> Option<Self::Weak> {
        Some(p.downgrade())
    }
    fn upgrade(w: &Self::Weak) -> Option<Self::Ptr> {
        w.upgrade()
    }
}
