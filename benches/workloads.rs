//! The benchmark suite of issue 3: gencc against `std::rc::Rc` (cycles broken
//! by hand) and the Rust cycle collectors rust-cc, dumpster (unsync),
//! gcmodule and bacon_rajan_cc, on the workloads W1–W9, all in one run.
//!
//! `cargo bench --bench workloads` runs, in order:
//!
//! 1. a check per (workload, crate) in a child process (this binary, re-run
//!    with `GENCC_BENCH_CHILD` set): does it survive on an 8 MiB main-thread
//!    stack, how many bytes per object (W1, W1u, W5), and does it leak;
//! 2. W9's binary search for the longest chain `Rc` can drop;
//! 3. criterion on every (workload, crate) that survived its check;
//! 4. the summary: one table per workload with median ns per object and the
//!    ratios gencc/Rc and gencc/fastest peer, the bytes, the leak check, the
//!    budget of the issue, and `target/gencc-bench/workloads.json`.
//!
//! `GENCC_BENCH_N` overrides N (default 1,000,000; 10,000 under `--test`).
//! A criterion filter (`cargo bench --bench workloads -- W4`) also limits the
//! checks. See benches/README.md.

#[path = "workloads/adapters.rs"]
mod adapters;
#[path = "workloads/alloc.rs"]
mod alloc;
#[path = "workloads/child.rs"]
mod child;
#[path = "workloads/report.rs"]
mod report;
#[path = "workloads/shapes.rs"]
mod shapes;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};

use adapters::{with_heap, Crate};
use child::{Outcome, Status};
use report::{Results, Sample};
use shapes::{run, Workload};

/// criterion's sample count (its minimum is 10); `--sample-size` overrides it.
const DEFAULT_SAMPLES: usize = 20;

thread_local! {
    /// Every call of a benchmark routine, per (group, crate); criterion's
    /// measurement phase is the last `sample_size` of them.
    static SAMPLES: RefCell<BTreeMap<(String, Crate), Vec<Sample>>> = const { RefCell::new(BTreeMap::new()) };
}

/// Which benchmarks the command line selects, as criterion will decide it.
enum Filter {
    All,
    Regex(regex::Regex),
    Exact(String),
    Nothing,
}

impl Filter {
    fn matches(&self, id: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Regex(r) => r.is_match(id),
            Filter::Exact(e) => id == e,
            Filter::Nothing => false,
        }
    }
}

struct Options {
    filter: Filter,
    sample_size: usize,
    test_mode: bool,
    list_mode: bool,
}

/// The few criterion arguments the checks and the summary need to know.
fn options() -> Options {
    const WITH_VALUE: &[&str] = &[
        "-c",
        "--color",
        "--colour",
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--format",
        "--profile-time",
        "--load-baseline",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--plotting-backend",
        "--output-format",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut filter, mut exact, mut ignored) = (None, false, false);
    let (mut bench, mut test, mut list) = (false, false, false);
    let mut sample_size = DEFAULT_SAMPLES;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "--bench" => bench = true,
            "--test" => test = true,
            "--list" => list = true,
            "--exact" => exact = true,
            "--ignored" => ignored = true,
            "--sample-size" => {
                sample_size = args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(sample_size);
                i += 1;
            }
            _ if a.starts_with("--sample-size=") => {
                sample_size = a["--sample-size=".len()..].parse().unwrap_or(sample_size);
            }
            _ if WITH_VALUE.contains(&a) => i += 1,
            _ if a.starts_with('-') => {}
            _ => filter = filter.or(Some(a.to_string())),
        }
        i += 1;
    }
    let filter = match (ignored, filter, exact) {
        (true, _, _) => Filter::Nothing,
        (false, None, _) => Filter::All,
        (false, Some(f), true) => Filter::Exact(f),
        (false, Some(f), false) => {
            Filter::Regex(regex::Regex::new(&f).expect("the filter is not a valid regex"))
        }
    };
    Options {
        filter,
        sample_size,
        test_mode: test || !bench,
        list_mode: list,
    }
}

/// criterion's routine: `iters` runs, each timing only its measured phase.
/// One second of rest, then one untimed run of the first workload of the
/// plan for every crate whose check passed (so only those selected): the
/// same warm-up for all of them, before any of them is timed.
fn settle(plan: &[Workload], n: usize, checked: &dyn Fn(Workload, Crate) -> bool) {
    std::thread::sleep(Duration::from_secs(1));
    let Some(&first) = plan.first() else {
        return;
    };
    for k in Crate::ALL.into_iter().filter(|&k| checked(first, k)) {
        with_heap!(k, H => {
            let _ = run::<H>(first, n);
        });
    }
}

fn measure(k: Crate, w: Workload, n: usize, iters: u64) -> Duration {
    with_heap!(k, H => {
        let (mut timed, mut extra, mut has_extra) = (Duration::ZERO, Duration::ZERO, false);
        for _ in 0..iters {
            let t = run::<H>(w, n).expect("only applicable workloads are benchmarked");
            timed += t.timed;
            if let Some(e) = t.extra {
                extra += e;
                has_extra = true;
            }
        }
        let per = |d: Duration| d.as_nanos() as f64 / iters as f64;
        let sample = Sample { timed_ns: per(timed), extra_ns: has_extra.then(|| per(extra)) };
        if std::env::var_os("GENCC_BENCH_VERBOSE").is_some() {
            let objects = w.objects(n) as f64;
            eprintln!(
                "sample {}/{}: {iters} run(s), {:.2} ns/object{}",
                w.group(),
                k.name(),
                sample.timed_ns / objects,
                sample.extra_ns.map_or(String::new(), |e| format!(", final {:.2} ns/object", e / objects))
            );
        }
        SAMPLES.with(|s| s.borrow_mut().entry((w.group(), k)).or_default().push(sample));
        timed
    })
}

fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return dir.into();
    }
    // <target>/release/deps/workloads-<hash>
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| "target".into())
}

fn shell(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("{cores} × {cpu}, {}", shell("uname", &["-sm"]))
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    if let Ok(task) = std::env::var(child::CHILD_ENV) {
        child::child_main(&task);
        return;
    }
    let started = Instant::now();
    let opts = options();
    let n: usize = std::env::var("GENCC_BENCH_N")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(if opts.test_mode { 10_000 } else { 1_000_000 });
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let machine = machine();
    println!(
        "gencc workloads: N = {n}, {date}, {machine}, load average {}",
        load()
    );

    let mut plan = vec![
        Workload::Churn,
        Workload::ChurnLeaf,
        Workload::CloneDrop,
        Workload::Tree,
        Workload::Pairs,
        Workload::Ring,
        Workload::DoublyLinked,
        Workload::Generational { old: n },
        Workload::Generational { old: 0 },
        Workload::Weak,
        Workload::Chain { len: n },
    ];
    let selected =
        |w: Workload, k: Crate| opts.filter.matches(&format!("{}/{}", w.group(), k.name()));
    let mut checks: BTreeMap<(String, Crate), Outcome> = BTreeMap::new();
    let mut chain_max: BTreeMap<Crate, Option<usize>> = BTreeMap::new();
    let mut rc_max = None;

    if !opts.list_mode {
        // 1. Checks, in child processes.
        let cells: Vec<(Workload, Crate)> = plan
            .iter()
            .flat_map(|&w| Crate::ALL.map(|k| (w, k)))
            .filter(|&(w, k)| selected(w, k))
            .collect();
        let t = Instant::now();
        run_checks(&cells, n, jobs, &mut checks);
        println!(
            "checks: {} child processes in {:.1} s",
            cells.len(),
            t.elapsed().as_secs_f64()
        );

        // 2. W9: how long a chain can each crate drop?
        let rcmax_selected = Crate::ALL
            .into_iter()
            .any(|k| opts.filter.matches(&format!("W9_rcmax_len/{}", k.name())));
        let chain_n = Workload::Chain { len: n }.group();
        let overflowed: Vec<Crate> = Crate::ALL
            .into_iter()
            .filter(|&k| {
                checks
                    .get(&(chain_n.clone(), k))
                    .is_some_and(|o| o.status == Status::StackOverflow)
                    || (k == Crate::Rc
                        && rcmax_selected
                        && !checks.contains_key(&(chain_n.clone(), k)))
            })
            .collect();
        if !overflowed.is_empty() {
            let t = Instant::now();
            let found: Vec<(Crate, Option<usize>)> = std::thread::scope(|s| {
                let handles: Vec<_> = overflowed
                    .iter()
                    .map(|&k| s.spawn(move || (k, child::max_chain(k, 1_000.min(n), n, n))))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for (k, max) in found {
                if k == Crate::Rc {
                    rc_max = max;
                }
                if checks
                    .get(&(chain_n.clone(), k))
                    .is_some_and(|o| o.status == Status::StackOverflow)
                {
                    chain_max.insert(k, max);
                }
            }
            println!("W9 length search: {:.1} s", t.elapsed().as_secs_f64());
        }
        if rcmax_selected {
            let rc_ok = rc_max.unwrap_or(n);
            let len = if rc_ok >= 20_000 {
                rc_ok / 10 * 9 / 1_000 * 1_000
            } else {
                rc_ok * 9 / 10
            };
            let w = Workload::ChainAtRcMax { len: len.max(1) };
            plan.push(w);
            let cells: Vec<(Workload, Crate)> = Crate::ALL.map(|k| (w, k)).into_iter().collect();
            run_checks(&cells, n, jobs, &mut checks);
        }
    }

    // 3. criterion, after the machine has settled from the child processes
    // of the checks: two at a time at full load for about 12 s. Without this,
    // the first benchmark of the run (W1, gencc's cell) took 1.3 to 1.4 times
    // its usual median in two of four full runs on 2026-12-06, with a usual
    // minimum, while every later cell was unaffected.
    if !opts.list_mode {
        settle(&plan, n, &|w, k| {
            checks.get(&(w.group(), k)).is_some_and(Outcome::ok)
        });
    }
    let mut c = Criterion::default()
        .sample_size(DEFAULT_SAMPLES)
        .warm_up_time(Duration::from_millis(20))
        .measurement_time(Duration::from_millis(100))
        .without_plots()
        .configure_from_args();
    for &w in &plan {
        let mut g = c.benchmark_group(w.group());
        g.sampling_mode(SamplingMode::Flat);
        for k in Crate::ALL {
            let key = (w.group(), k);
            if !opts.list_mode && !checks.get(&key).is_some_and(Outcome::ok) {
                continue;
            }
            g.bench_function(k.name(), |b| b.iter_custom(|iters| measure(k, w, n, iters)));
        }
        g.finish();
    }
    c.final_summary();
    if opts.list_mode {
        return;
    }

    // 4. Summary.
    let samples = SAMPLES.with(|s| s.borrow().clone());
    let results = Results {
        n,
        plan: &plan,
        samples: &samples,
        checks: &checks,
        sample_size: opts.sample_size,
        chain_max: &chain_max,
        rc_max,
    };
    println!("\n################ gencc workloads: summary ################");
    println!(
        "N = {n}; {date}; {machine}; load average at the end {}",
        load()
    );
    println!(
        "Medians of criterion's samples (one run per sample when a run takes over 10 ms); ns per object = timed phase / objects."
    );
    if opts.test_mode {
        println!("(test mode: one run per benchmark, N = {n}; not a measurement)");
    }
    print!("{}", results.tables());
    print!("{}", results.bytes_table());
    print!("{}", results.chain_table());
    print!("{}", results.leak_table());
    print!("{}", results.budget());
    let dir = target_dir().join("gencc-bench");
    let path = dir.join("workloads.json");
    match std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, results.json(&date, &machine)))
    {
        Ok(()) => println!("\nJSON: {}", path.display()),
        Err(e) => println!("\ncould not write {}: {e}", path.display()),
    }
    println!(
        "total time of this run: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn run_checks(
    cells: &[(Workload, Crate)],
    n: usize,
    jobs: usize,
    checks: &mut BTreeMap<(String, Crate), Outcome>,
) {
    let tasks: Vec<String> = cells
        .iter()
        .map(|(w, k)| format!("check|{}|{}|{n}", k.name(), w.group()))
        .collect();
    for ((w, k), outcome) in cells.iter().zip(child::spawn_all(&tasks, n, jobs)) {
        checks.insert((w.group(), *k), outcome);
    }
}
