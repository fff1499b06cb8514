//! Work done in child processes: the bench binary re-executes itself with
//! `GENCC_BENCH_CHILD` set to a task. A crash (a stack overflow, say) then
//! costs one child, not the run.
//!
//! Tasks (`|`-separated):
//! - `check|<crate>|<group>|<n>`: with the counting allocator on, run the
//!   workload once at a small size (to set up thread-local state), measure
//!   bytes per object (W1, W1u, W5), then run it twice at full size and
//!   report the live allocations left after each run.
//! - `probe|<crate>|<len>`: build a singly linked list of `len` nodes on the
//!   main thread (8 MiB stack by default) and drop its head.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::Command;
use std::sync::Mutex;

use crate::adapters::{with_heap, Crate, Heap};
use crate::alloc;
use crate::shapes::{drop_cyclic, ring, run, Workload};

pub const CHILD_ENV: &str = "GENCC_BENCH_CHILD";

/// Parses a criterion group name back into a workload (see `Workload::group`).
pub fn parse_workload(group: &str) -> Option<Workload> {
    Some(match group {
        "W1" => Workload::Churn,
        "W1u" => Workload::ChurnLeaf,
        "W2" => Workload::CloneDrop,
        "W3" => Workload::Tree,
        "W4" => Workload::Pairs,
        "W5" => Workload::Ring,
        "W6" => Workload::DoublyLinked,
        "W8" => Workload::Weak,
        _ => {
            if let Some(old) = group.strip_prefix("W7_L") {
                Workload::Generational {
                    old: old.parse().ok()?,
                }
            } else if let Some(len) = group.strip_prefix("W9_rcmax_len") {
                Workload::ChainAtRcMax {
                    len: len.parse().ok()?,
                }
            } else if let Some(len) = group.strip_prefix("W9_len") {
                Workload::Chain {
                    len: len.parse().ok()?,
                }
            } else {
                return None;
            }
        }
    })
}

/// The entry point of a child process.
pub fn child_main(task: &str) {
    let parts: Vec<&str> = task.split('|').collect();
    let krate = parts
        .get(1)
        .and_then(|c| Crate::from_name(c))
        .expect("bad crate in task");
    let line = match parts[0] {
        "check" => {
            let w = parse_workload(parts[2]).expect("bad workload in task");
            let n: usize = parts[3].parse().expect("bad n in task");
            with_heap!(krate, H => check::<H>(w, n))
        }
        "probe" => {
            let len: usize = parts[2].parse().expect("bad length in task");
            with_heap!(krate, H => run::<H>(Workload::Chain { len }, len));
            "status=ok".to_string()
        }
        other => panic!("unknown child task {other:?}"),
    };
    println!("RESULT {line}");
}

fn check<H: Heap>(w: Workload, n: usize) -> String {
    alloc::enable();
    let (small, small_n) = w.small();
    if run::<H>(small, small_n).is_none() {
        return "status=na".into();
    }
    bytes_per_object::<H>(w, n);
    let mut line = String::from("status=ok");
    let live = || {
        H::release_kept();
        alloc::live()
    };
    let s0 = live();
    let first = run::<H>(w, n).expect("applicable");
    let s1 = live();
    run::<H>(w, n);
    let s2 = live();
    let (d1, d2) = (s1 - s0, s2 - s1);
    line += &format!(
        " d1_count={} d1_bytes={} d2_count={} d2_bytes={} left_count={} left_bytes={}",
        d1.count,
        d1.bytes,
        d2.count,
        d2.bytes,
        first.left_after_timed.count,
        first.left_after_timed.bytes
    );
    line
}

/// Prints (on a `BYTES` line, before tearing the graph down, which may
/// crash) the bytes (`Layout::size` of live allocations, side tables
/// included) and allocations per object after building W1's nodes (kept
/// alive in a pre-sized `Vec` that is not counted) or W5's ring.
fn bytes_per_object<H: Heap>(w: Workload, n: usize) {
    H::release_kept();
    let report = |delta: alloc::Live| {
        println!(
            "BYTES bytes_per_object={:.2} allocs_per_object={:.3}",
            delta.bytes as f64 / n as f64,
            delta.count as f64 / n as f64
        );
        let _ = std::io::stdout().flush();
    };
    match w {
        Workload::Churn => {
            let mut keep = Vec::with_capacity(n);
            let s0 = alloc::live();
            keep.extend((0..n as u64).map(H::new));
            report(alloc::live() - s0);
        }
        Workload::ChurnLeaf => {
            let mut keep = Vec::with_capacity(n);
            let s0 = alloc::live();
            keep.extend((0..n as u64).map(H::new_leaf));
            report(alloc::live() - s0);
        }
        Workload::Ring => {
            let s0 = alloc::live();
            let head = ring::<H>(n, 0);
            report(alloc::live() - s0);
            drop_cyclic::<H>(head);
        }
        _ => return,
    }
    H::collect();
}

/// How a child ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Ok,
    /// Not applicable (W8 without weak references).
    NotApplicable,
    /// Died of a stack overflow.
    StackOverflow,
    /// Failed some other way.
    Failed(String),
}

/// A child's status and the `key=value` pairs it printed (on `BYTES` and
/// `RESULT` lines), including those printed before it crashed.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    pub values: BTreeMap<String, String>,
}

impl Outcome {
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key)?.parse().ok()
    }
    pub fn ok(&self) -> bool {
        self.status == Status::Ok
    }
}

/// Runs one child task to completion.
pub fn spawn(task: &str, n: usize) -> Outcome {
    let exe = std::env::current_exe().expect("current_exe");
    let out = match Command::new(exe)
        .env(CHILD_ENV, task)
        .env("GENCC_BENCH_N", n.to_string())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            return Outcome {
                status: Status::Failed(format!("could not start: {e}")),
                values: BTreeMap::new(),
            }
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut values = BTreeMap::new();
    let mut result = false;
    for line in stdout.lines() {
        let rest = if let Some(rest) = line.strip_prefix("RESULT ") {
            result = true;
            rest
        } else if let Some(rest) = line.strip_prefix("BYTES ") {
            rest
        } else {
            continue;
        };
        for (k, v) in rest.split_whitespace().filter_map(|kv| kv.split_once('=')) {
            values.insert(k.to_string(), v.to_string());
        }
    }
    let status = if out.status.success() {
        match values.get("status").map(String::as_str) {
            _ if !result => Status::Failed("no RESULT line".into()),
            Some("na") => Status::NotApplicable,
            _ => Status::Ok,
        }
    } else if stderr.contains("has overflowed its stack") {
        Status::StackOverflow
    } else {
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Status::Failed(format!("{} ({last})", out.status))
    };
    Outcome { status, values }
}

/// Runs many child tasks, `jobs` at a time; results in input order.
pub fn spawn_all(tasks: &[String], n: usize, jobs: usize) -> Vec<Outcome> {
    let next = Mutex::new(0usize);
    let results = Mutex::new(vec![None; tasks.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs.max(1) {
            s.spawn(|| loop {
                let i = {
                    let mut next = next.lock().unwrap();
                    let i = *next;
                    *next += 1;
                    i
                };
                let Some(task) = tasks.get(i) else { break };
                let outcome = spawn(task, n);
                results.lock().unwrap()[i] = Some(outcome);
            });
        }
    });
    results
        .into_inner()
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

/// The largest chain length (within 0.5 %) whose head `krate` can drop on
/// an 8 MiB main-thread stack, searched between `lo` (assumed to survive) and
/// `hi` (known to overflow). `None` if it already fails at `lo`.
pub fn max_chain(krate: Crate, lo: usize, hi: usize, n: usize) -> Option<usize> {
    let probe = |len: usize| spawn(&format!("probe|{}|{len}", krate.name()), n).ok();
    if !probe(lo) {
        return None;
    }
    let (mut lo, mut hi) = (lo, hi);
    while hi - lo > (lo / 200).max(16) {
        let mid = lo + (hi - lo) / 2;
        if probe(mid) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(lo)
}
