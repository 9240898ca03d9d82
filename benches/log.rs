//! Benchmarks of the command log: durable append throughput, replay speed, tail and branch
//! latency, and bytes on disk per entry.
//!
//! Logs live in temporary directories under Cargo's target directory, so they are on the real
//! disk (never tmpfs) and fsync costs are genuine. The large fixtures are built once, outside
//! every timed section, and removed at the end. Each measurement also prints a one-line summary.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};
use tavern::log::{create_branch, EntryDraft, Log, LogOptions, LogReader, Record, Schema, Status};

/// A small schema whose entry lines are about 150 bytes, like a typical chat intent.
struct Bench;

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Intent {
    Say { text: String },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Said { words: u32 },
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Actor {
    User(String),
}

impl Schema for Bench {
    type Intent = Intent;
    type Outcome = Outcome;
    type Actor = Actor;
    const VERSION: u32 = 1;
}

fn draft(i: u64) -> EntryDraft<Bench> {
    EntryDraft {
        cause: None,
        origin: None,
        ts: 1_763_719_800_000 + i,
        actor: Actor::User("alice".to_string()),
        intent: Intent::Say {
            text: "ship it?".to_string(),
        },
        status: Status::Executed,
        outcomes: Vec::new(),
        error: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build the tokio runtime")
}

/// A scratch directory on the real disk, under Cargo's target directory.
fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("tavern-log-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create a scratch directory under the target directory")
}

/// Builds a `main` branch of `n` entries (fsync off: building the fixture is not what is
/// measured), returning the file size.
fn build_log(rt: &tokio::runtime::Runtime, dir: &Path, n: u64) -> u64 {
    let started = Instant::now();
    let (log, _) =
        Log::<Bench>::open(dir, "main", LogOptions { fsync: false }).expect("open fixture log");
    rt.block_on(async {
        let mut pending = Vec::with_capacity(10_000);
        for i in 0..n {
            let (_, ticket) = log.enqueue_entry(draft(i)).expect("enqueue fixture entry");
            pending.push(ticket);
            // Awaiting in chunks bounds the memory held by the queue.
            if pending.len() == 10_000 {
                for ticket in pending.drain(..) {
                    ticket.await.expect("fixture entry written");
                }
            }
        }
        for ticket in pending {
            ticket.await.expect("fixture entry written");
        }
        log.close().await.expect("close fixture log");
    });
    let len = std::fs::metadata(log.path())
        .expect("stat fixture log")
        .len();
    eprintln!(
        "fixture: {n} entries, {len} bytes, built in {:.2?} ({})",
        started.elapsed(),
        log.path().display()
    );
    len
}

/// Appends `total` entries from `writers` concurrent tasks and returns the elapsed time.
fn append_round(
    rt: &tokio::runtime::Runtime,
    log: &Log<Bench>,
    writers: u64,
    total: u64,
) -> Duration {
    rt.block_on(async {
        let started = Instant::now();
        let per_writer = total / writers;
        let tasks: Vec<_> = (0..writers)
            .map(|w| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..per_writer {
                        log.append(draft(w * per_writer + i))
                            .await
                            .expect("durable append");
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("appender task");
        }
        started.elapsed()
    })
}

fn bench_append(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    const PER_ROUND: u64 = 512;
    let mut group = c.benchmark_group("append_durable");
    group.throughput(Throughput::Elements(PER_ROUND));
    for writers in [1u64, 16, 64] {
        let dir = scratch_dir();
        let (log, _) =
            Log::<Bench>::open(dir.path(), "main", LogOptions::default()).expect("open log");
        group.bench_with_input(
            BenchmarkId::from_parameter(writers),
            &writers,
            |b, &writers| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| append_round(rt, &log, writers, PER_ROUND))
                        .sum()
                });
            },
        );
        let before = log.stats();
        let total = 2_048;
        let elapsed = append_round(rt, &log, writers, total);
        let after = log.stats();
        eprintln!(
            "summary: durable append, fsync on, {writers:>2} writers: {:>8.0} entries/s ({} fsyncs for {total} entries)",
            total as f64 / elapsed.as_secs_f64(),
            after.fsyncs - before.fsyncs
        );
        rt.block_on(log.close()).expect("close log");
    }
    group.finish();
}

/// Copies the log in `from` to `to` with every record's checksum field removed, as an earlier Tavern
/// wrote it, so replay can be measured with and without checking checksums on the same records.
fn strip_checksums(from: &Path, to: &Path) {
    use std::io::{BufRead, Write};
    let input = std::io::BufReader::new(
        std::fs::File::open(from.join("main.jsonl")).expect("open the fixture log"),
    );
    let mut output = std::io::BufWriter::new(
        std::fs::File::create(to.join("main.jsonl")).expect("create the legacy log"),
    );
    for line in input.lines() {
        let line = line.expect("read a fixture line");
        let bare = match line.rfind(r#","ck":""#) {
            Some(at) => format!("{}}}", &line[..at]),
            None => line,
        };
        writeln!(output, "{bare}").expect("write a legacy line");
    }
    output.flush().expect("flush the legacy log");
}

fn bench_replay(c: &mut Criterion, dir: &Path, n: u64, label: &str) {
    let reader = LogReader::<Bench>::open(dir, "main").expect("open reader");
    let replay = || {
        let mut entries = 0u64;
        let stats = reader
            .replay(None, |record| {
                if let Record::Entry(_) = record {
                    entries += 1;
                }
            })
            .expect("replay");
        assert_eq!(stats.entries, n);
        entries
    };
    let mut group = c.benchmark_group(label);
    group.throughput(Throughput::Elements(n));
    group.bench_function(BenchmarkId::from_parameter(n), |b| b.iter(replay));
    group.finish();
    let started = Instant::now();
    let rounds = 3;
    for _ in 0..rounds {
        replay();
    }
    let per_round = started.elapsed() / rounds;
    eprintln!(
        "summary: {label} of {n} entries: {per_round:.2?} per replay, {:.2}M entries/s",
        n as f64 / per_round.as_secs_f64() / 1e6
    );
}

fn bench_reads(c: &mut Criterion, fixtures: &[(u64, &Path)]) {
    let mut group = c.benchmark_group("tail_50");
    for &(n, dir) in fixtures {
        let reader = LogReader::<Bench>::open(dir, "main").expect("open reader");
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| reader.tail(50).expect("tail"))
        });
        let started = Instant::now();
        let rounds = 1_000u32;
        for _ in 0..rounds {
            assert_eq!(reader.tail(50).expect("tail").len(), 50);
        }
        eprintln!(
            "summary: tail(50) on {n} entries: {:.1?} per call",
            started.elapsed() / rounds
        );
    }
    group.finish();

    // Not required by the spec, but it shows the price of merging late updates: a range near
    // the end is cheap, a range at the start skims every later line for updates.
    let mut group = c.benchmark_group("read_range_50");
    for &(n, dir) in fixtures {
        let reader = LogReader::<Bench>::open(dir, "main").expect("open reader");
        for (label, from) in [("end", n - 49), ("middle", n / 2), ("start", 1)] {
            group.bench_with_input(BenchmarkId::new(label, n), &from, |b, &from| {
                b.iter(|| reader.read_range(from, from + 49).expect("read_range"))
            });
            let started = Instant::now();
            let rounds = 20u32;
            for _ in 0..rounds {
                assert_eq!(
                    reader
                        .read_range(from, from + 49)
                        .expect("read_range")
                        .len(),
                    50
                );
            }
            eprintln!(
                "summary: read_range({from}, {}) on {n} entries: {:.1?} per call",
                from + 49,
                started.elapsed() / rounds
            );
        }
    }
    group.finish();
}

fn bench_branch(c: &mut Criterion, fixtures: &[(u64, &Path)]) {
    let mut group = c.benchmark_group("create_branch");
    for &(n, dir) in fixtures {
        let mut counter = 0u64;
        let mut create = |at: u64| {
            counter += 1;
            let name = format!("b{counter}");
            let started = Instant::now();
            let info = create_branch(dir, &name, "main", at).expect("create branch");
            let elapsed = started.elapsed();
            // Removing the branch is cleanup, outside the timed part, so the directory does not
            // fill up with thousands of branch files.
            std::fs::remove_file(&info.path).expect("remove benchmark branch");
            elapsed
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| (0..iters).map(|i| create(1 + (i * 7_919) % n)).sum());
        });
        let rounds = 200u64;
        let total: Duration = (0..rounds).map(|i| create(1 + (i * 7_919) % n)).sum();
        eprintln!(
            "summary: create_branch on {n} entries: {:.1?} per call (includes syncing the new file and the directory)",
            total / rounds as u32
        );
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    let rt = runtime();
    bench_append(c, &rt);

    let small = scratch_dir();
    let large = scratch_dir();
    let small_n = 10_000;
    let large_n = 1_000_000;
    let small_len = build_log(&rt, small.path(), small_n);
    let large_len = build_log(&rt, large.path(), large_n);
    for (n, len) in [(small_n, small_len), (large_n, large_len)] {
        eprintln!(
            "summary: bytes on disk at {n} entries: {len} total, {:.1} per entry",
            len as f64 / n as f64
        );
    }

    bench_replay(c, large.path(), large_n, "replay");
    let legacy = scratch_dir();
    strip_checksums(large.path(), legacy.path());
    bench_replay(
        c,
        legacy.path(),
        large_n,
        "replay (lines without checksums)",
    );
    drop(legacy);
    let fixtures = [(small_n, small.path()), (large_n, large.path())];
    bench_reads(c, &fixtures);
    bench_branch(c, &fixtures);
}

criterion_group! {
    name = log_benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(log_benches);
