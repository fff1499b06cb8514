//! The summary printed after criterion has run: one table per workload
//! (median ns per object, ratios to `Rc` and to the fastest peer), bytes per
//! object, the leak check, W9's stack results, a budget check against the
//! issue's table, and the same figures as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::adapters::Crate;
use crate::child::{Outcome, Status};
use crate::shapes::Workload;

/// Per-iteration timings that criterion's measurement phase produced.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub timed_ns: f64,
    pub extra_ns: Option<f64>,
}

/// The state of one (workload, crate) cell.
#[derive(Clone, Debug)]
pub enum Cell {
    Measured {
        /// Median ns per object over criterion's samples.
        median: f64,
        min: f64,
        /// Every sample, ns per object, in order.
        all: Vec<f64>,
        /// W7: median ns per young object of the final explicit collection.
        extra: Option<f64>,
        samples: usize,
    },
    NotApplicable,
    StackOverflow,
    Failed(String),
    NotRun,
}

impl Cell {
    fn median(&self) -> Option<f64> {
        match self {
            Cell::Measured { median, .. } => Some(*median),
            _ => None,
        }
    }
    fn total(&self) -> Option<f64> {
        match self {
            Cell::Measured { median, extra, .. } => Some(median + extra.unwrap_or(0.0)),
            _ => None,
        }
    }
    fn word(&self) -> String {
        match self {
            Cell::Measured { .. } => String::new(),
            Cell::NotApplicable => "n/a (no weak references)".into(),
            Cell::StackOverflow => "stack overflow".into(),
            Cell::Failed(why) => format!("failed: {why}"),
            Cell::NotRun => "not run".into(),
        }
    }
}

impl From<&Status> for Cell {
    fn from(s: &Status) -> Cell {
        match s {
            Status::NotApplicable => Cell::NotApplicable,
            Status::StackOverflow => Cell::StackOverflow,
            Status::Failed(why) => Cell::Failed(why.clone()),
            // Checked, but never measured (filtered out of criterion's run).
            Status::Ok => Cell::NotRun,
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Everything the summary needs.
pub struct Results<'a> {
    pub n: usize,
    pub plan: &'a [Workload],
    pub samples: &'a BTreeMap<(String, Crate), Vec<Sample>>,
    pub checks: &'a BTreeMap<(String, Crate), Outcome>,
    /// Criterion's sample count: the last this-many records are the measurement.
    pub sample_size: usize,
    /// W9: the largest length each crate survives, when it does not survive N.
    pub chain_max: &'a BTreeMap<Crate, Option<usize>>,
    pub rc_max: Option<usize>,
}

impl Results<'_> {
    pub fn cell(&self, w: Workload, k: Crate) -> Cell {
        let key = (w.group(), k);
        if let Some(all) = self.samples.get(&key) {
            let last = &all[all.len().saturating_sub(self.sample_size)..];
            let objects = w.objects(self.n) as f64;
            let per: Vec<f64> = last.iter().map(|s| s.timed_ns / objects).collect();
            let extra: Vec<f64> = last
                .iter()
                .filter_map(|s| s.extra_ns)
                .map(|e| e / objects)
                .collect();
            return Cell::Measured {
                min: per.iter().copied().fold(f64::INFINITY, f64::min),
                median: median(per.clone()),
                all: per,
                extra: (!extra.is_empty()).then(|| median(extra)),
                samples: last.len(),
            };
        }
        match self.checks.get(&key) {
            Some(o) => Cell::from(&o.status),
            None => Cell::NotRun,
        }
    }

    /// The fastest peer (not gencc, not Rc) by `f`.
    fn fastest_peer(&self, w: Workload, f: impl Fn(&Cell) -> Option<f64>) -> Option<(Crate, f64)> {
        Crate::ALL
            .into_iter()
            .filter(|k| k.is_peer())
            .filter_map(|k| f(&self.cell(w, k)).map(|v| (k, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn ran(&self, w: Workload) -> bool {
        Crate::ALL
            .into_iter()
            .any(|k| !matches!(self.cell(w, k), Cell::NotRun))
    }

    /// One table per workload.
    pub fn tables(&self) -> String {
        let mut s = String::new();
        for &w in self.plan {
            if !self.ran(w) {
                continue;
            }
            let _ = writeln!(
                s,
                "\n== {}  [{} objects per run]",
                w.title(self.n),
                w.objects(self.n)
            );
            let _ = writeln!(s, "   {}", w.timed());
            let gen7 = matches!(w, Workload::Generational { .. });
            if gen7 {
                let _ = writeln!(
                    s,
                    "   {:<16} {:>14} {:>10} {:>14} {:>16} {:>9}",
                    "crate", "rounds ns/obj", "(min)", "final ns/obj", "rounds+final", "total×Rc"
                );
            } else {
                let _ = writeln!(
                    s,
                    "   {:<16} {:>12} {:>10} {:>8}",
                    "crate", "ns/object", "(min)", "×Rc"
                );
            }
            let rc = self.cell(w, Crate::Rc);
            for k in Crate::ALL {
                let c = self.cell(w, k);
                let name = if k == Crate::Rc {
                    "Rc (by hand)"
                } else {
                    k.name()
                };
                match &c {
                    Cell::Measured {
                        median,
                        min,
                        extra,
                        samples,
                        ..
                    } => {
                        let few = if *samples < 3 {
                            "  (fewer than 3 samples)"
                        } else {
                            ""
                        };
                        if gen7 {
                            let total = c.total().unwrap();
                            let x = rc
                                .total()
                                .map_or("-".into(), |r| format!("{:.2}", total / r));
                            let _ = writeln!(
                                s,
                                "   {name:<16} {median:>14.2} {min:>10.2} {:>14.2} {total:>16.2} {x:>9}{few}",
                                extra.unwrap_or(0.0)
                            );
                        } else {
                            let x = rc
                                .median()
                                .map_or("-".into(), |r| format!("{:.2}", median / r));
                            let _ =
                                writeln!(s, "   {name:<16} {median:>12.2} {min:>10.2} {x:>8}{few}");
                        }
                    }
                    other => {
                        let _ = writeln!(s, "   {name:<16} {}", other.word());
                    }
                }
            }
            if let Some(g) = self.cell(w, Crate::Gencc).median() {
                let mut line = String::from("   ->");
                let gt = self.cell(w, Crate::Gencc).total().unwrap();
                let pick = |c: &Cell| if gen7 { c.total() } else { c.median() };
                let gv = if gen7 { gt } else { g };
                if let Some(r) = pick(&rc) {
                    let _ = write!(line, " gencc/Rc = {:.2}", gv / r);
                }
                if let Some((k, v)) = self.fastest_peer(w, pick) {
                    let _ = write!(
                        line,
                        "; gencc/fastest peer ({} {v:.2}) = {:.2}",
                        k.name(),
                        gv / v
                    );
                }
                if gen7 {
                    line += "  (on rounds+final)";
                }
                if line == "   ->" {
                    line += " no other crate survives this workload";
                }
                let _ = writeln!(s, "{line}");
            }
        }
        s
    }

    fn bytes(&self, w: Workload, k: Crate) -> Option<(f64, f64)> {
        let o = self.checks.get(&(w.group(), k))?;
        Some((o.get("bytes_per_object")?, o.get("allocs_per_object")?))
    }

    /// Bytes per object from the counting allocator.
    pub fn bytes_table(&self) -> String {
        let shapes = [Workload::Churn, Workload::ChurnLeaf, Workload::Ring];
        if !shapes
            .iter()
            .any(|&w| Crate::ALL.into_iter().any(|k| self.bytes(w, k).is_some()))
        {
            return String::new();
        }
        let mut s = String::from(
            "\n== Bytes per object (Layout::size of live allocations after building, side tables included, / N)\n",
        );
        let _ = writeln!(
            s,
            "   {:<16} {:>22} {:>22} {:>22}",
            "crate", "W1 node (allocs/obj)", "W1u u64 (allocs/obj)", "W5 ring (allocs/obj)"
        );
        for k in Crate::ALL {
            let mut line = format!("   {:<16}", k.name());
            for w in shapes {
                let cell = match self.bytes(w, k) {
                    Some((b, a)) => format!("{b:.1} ({a:.2})"),
                    None => "-".into(),
                };
                let _ = write!(line, " {cell:>22}");
            }
            let _ = writeln!(s, "{line}");
        }
        s
    }

    /// The leak check: live allocations after each of two full runs (each
    /// ending with an explicit collection), relative to before it.
    pub fn leak_table(&self) -> String {
        let mut s = String::from(
            "\n== Leak check (child process per cell, counting allocator): live allocations after a full run and its\n   final collection, minus before it; run 1 then run 2. 'ok' = both 0. 'left by timed' (W4-W6): allocations\n   still live right after the timed drop+collect, i.e. not freed by that one collection.\n",
        );
        let mut warnings = Vec::new();
        for &w in self.plan {
            for k in Crate::ALL {
                let key = (w.group(), k);
                let Some(o) = self.checks.get(&key) else {
                    continue;
                };
                let text = match &o.status {
                    Status::Ok => {
                        let v = |key: &str| o.get(key).unwrap_or(0.0) as i64;
                        let (c1, b1, c2, b2) =
                            (v("d1_count"), v("d1_bytes"), v("d2_count"), v("d2_bytes"));
                        let left =
                            matches!(w, Workload::Pairs | Workload::Ring | Workload::DoublyLinked)
                                .then(|| (v("left_count"), v("left_bytes")));
                        let mut t = if (c1, b1, c2, b2) == (0, 0, 0, 0) {
                            "ok".to_string()
                        } else if c1 <= 0 && c2 <= 0 && b2 <= 0 {
                            format!("ok (no allocation left; a side buffer kept {b1:+} B of grown capacity after run 1, {b2:+} B after run 2)")
                        } else {
                            format!("run 1: {c1:+} allocs {b1:+} B; run 2: {c2:+} allocs {b2:+} B")
                        };
                        if c1 > 0 || c2 > 0 {
                            warnings.push(format!(
                                "WARNING: leak in {}/{}: {t}{}",
                                w.group(),
                                k.name(),
                                leak_note(k)
                            ));
                        }
                        if let Some((lc, lb)) = left.filter(|l| l.0 != 0) {
                            let _ = write!(t, "; left by timed: {lc:+} allocs {lb:+} B");
                            if lc > 0 {
                                warnings.push(format!(
                                    "WARNING: {}/{}: the timed collection left {lc} allocations ({lb} B) live",
                                    w.group(),
                                    k.name()
                                ));
                            }
                        }
                        t
                    }
                    other => Cell::from(other).word(),
                };
                let _ = writeln!(s, "   {:<22} {:<16} {text}", w.group(), k.name());
            }
        }
        if warnings.is_empty() {
            s += "   no leaks\n";
        }
        for w in warnings {
            let _ = writeln!(s, "{w}");
        }
        s
    }

    /// W9's stack results.
    pub fn chain_table(&self) -> String {
        let key = |k: Crate| (Workload::Chain { len: self.n }.group(), k);
        if !Crate::ALL
            .into_iter()
            .any(|k| self.checks.contains_key(&key(k)))
        {
            return String::new();
        }
        let mut s =
            String::from("\n== W9 stack safety (child processes, 8 MiB main-thread stack)\n");
        for k in Crate::ALL {
            let at_n = self.checks.get(&key(k));
            let verdict = match at_n.map(|o| &o.status) {
                Some(Status::Ok) => format!("survives {} nodes", self.n),
                Some(Status::StackOverflow) => match self.chain_max.get(&k) {
                    Some(Some(max)) => format!(
                        "stack overflow at {}; largest surviving length ~{max}",
                        self.n
                    ),
                    Some(None) => format!("stack overflow at {} (and already at 1000)", self.n),
                    None => format!("stack overflow at {}", self.n),
                },
                Some(Status::Failed(why)) => format!("failed: {why}"),
                _ => "not checked".into(),
            };
            let _ = writeln!(s, "   {:<16} {verdict}", k.name());
        }
        if let Some(m) = self.rc_max {
            let _ = writeln!(s, "   Rc's largest surviving length: ~{m} (binary search, 0.5 %); timed at 90 % of it");
        }
        s
    }

    /// The budget, line by line, from this run's medians.
    pub fn budget(&self) -> String {
        let mut s = String::from("\n== Budget (issue 3), from this run's medians\n");
        // Lines without data in this run (filtered out, or a crate crashed) are left out.
        fn budget_line(s: &mut String, what: String, value: Option<f64>, limit: f64) {
            if let Some(v) = value {
                let verdict = if v <= limit { "met" } else { "MISSED" };
                let _ = writeln!(s, "   {what:<58} {v:>8.2}  (<= {limit:.2})  {verdict}");
            }
        }
        let ratio = |w: Workload, other: Crate| -> Option<f64> {
            Some(self.cell(w, Crate::Gencc).median()? / self.cell(w, other).median()?)
        };
        let vs_peer = |w: Workload, f: fn(&Cell) -> Option<f64>| -> Option<f64> {
            Some(f(&self.cell(w, Crate::Gencc))? / self.fastest_peer(w, f)?.1)
        };
        let n = self.n;
        for (w, lim) in [
            (Workload::Churn, 1.0),
            (Workload::ChurnLeaf, 1.0),
            (Workload::CloneDrop, 1.1),
            (Workload::Tree, 1.1),
            (Workload::Weak, 1.1),
        ] {
            budget_line(
                &mut s,
                format!("{} gencc/Rc", w.group()),
                ratio(w, Crate::Rc),
                lim,
            );
        }
        for w in [Workload::Pairs, Workload::Ring, Workload::DoublyLinked] {
            budget_line(
                &mut s,
                format!("{} gencc/Rc", w.group()),
                ratio(w, Crate::Rc),
                1.5,
            );
            budget_line(
                &mut s,
                format!("{} gencc/fastest peer", w.group()),
                vs_peer(w, Cell::median),
                0.5,
            );
        }
        let (big, zero) = (
            Workload::Generational { old: n },
            Workload::Generational { old: 0 },
        );
        // "With all garbage freed by the end": the final collection counts.
        let l_ratio = self
            .cell(big, Crate::Gencc)
            .total()
            .zip(self.cell(zero, Crate::Gencc).total())
            .map(|(a, b)| a / b);
        budget_line(
            &mut s,
            format!("W7 gencc rounds+final, L={n} / L=0"),
            l_ratio,
            1.1,
        );
        budget_line(
            &mut s,
            format!("W7 L={n} gencc/fastest peer (rounds+final)"),
            vs_peer(big, Cell::total),
            0.5,
        );
        if let Some(o) = self
            .checks
            .get(&(Workload::Chain { len: n }.group(), Crate::Gencc))
        {
            let _ = writeln!(
                s,
                "   {:<58} {:>8}  {}",
                format!("W9 gencc drops a {n}-node chain"),
                if o.ok() { "yes" } else { "no" },
                if o.ok() { "met" } else { "MISSED" }
            );
        }
        if let Some(w) = self
            .plan
            .iter()
            .copied()
            .find(|w| matches!(w, Workload::ChainAtRcMax { .. }))
        {
            budget_line(
                &mut s,
                format!("{} gencc/Rc", w.group()),
                ratio(w, Crate::Rc),
                1.1,
            );
        }
        for w in [Workload::Churn, Workload::Ring] {
            budget_line(
                &mut s,
                format!("{} gencc bytes/object", w.group()),
                self.bytes(w, Crate::Gencc).map(|b| b.0),
                64.0,
            );
        }
        let leaf = self
            .bytes(Workload::ChurnLeaf, Crate::Gencc)
            .zip(self.bytes(Workload::ChurnLeaf, Crate::Rc))
            .map(|(g, r)| g.0 / r.0);
        budget_line(
            &mut s,
            "W1u gencc bytes / Rc bytes (acyclic payload)".into(),
            leaf,
            1.0,
        );
        s += "   (CPython: run benches/cpython_gc.py)\n";
        s
    }

    /// All figures as JSON (read by benches/cpython_gc.py).
    pub fn json(&self, date: &str, machine: &str) -> String {
        let mut s = format!(
            "{{\n  \"date\": {},\n  \"machine\": {},\n  \"n\": {},\n  \"results\": [\n",
            quote(date),
            quote(machine),
            self.n
        );
        let mut rows = Vec::new();
        for &w in self.plan {
            for k in Crate::ALL {
                let c = self.cell(w, k);
                if matches!(c, Cell::NotRun) {
                    continue;
                }
                let mut row = format!(
                    "    {{\"workload\": {}, \"crate\": {}, \"objects\": {}",
                    quote(&w.group()),
                    quote(k.name()),
                    w.objects(self.n)
                );
                match &c {
                    Cell::Measured {
                        median,
                        min,
                        extra,
                        samples,
                        all,
                    } => {
                        let all: Vec<String> = all.iter().map(|v| format!("{v:.3}")).collect();
                        let _ = write!(
                            row,
                            ", \"status\": \"ok\", \"ns_per_object\": {median:.3}, \"min_ns_per_object\": {min:.3}, \"samples\": {samples}, \"samples_ns_per_object\": [{}]",
                            all.join(", ")
                        );
                        if let Some(e) = extra {
                            let _ = write!(row, ", \"final_collect_ns_per_object\": {e:.3}");
                        }
                    }
                    other => {
                        let _ = write!(row, ", \"status\": {}", quote(&other.word()));
                    }
                }
                if let Some((b, a)) = self.bytes(w, k) {
                    let _ = write!(
                        row,
                        ", \"bytes_per_object\": {b:.3}, \"allocs_per_object\": {a:.4}"
                    );
                }
                row += "}";
                rows.push(row);
            }
        }
        s += &rows.join(",\n");
        s += "\n  ]\n}\n";
        s
    }
}

/// What is known about a peer's leaks.
fn leak_note(k: Crate) -> &'static str {
    match k {
        Crate::Gencc => "",
        _ => " (see benches/README.md for known peer behaviour)",
    }
}

fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => q += "\\\"",
            '\\' => q += "\\\\",
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q + "\""
}
