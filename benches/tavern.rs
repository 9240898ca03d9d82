//! End-to-end cost of running a tavern: 100 summons and 100 dismissals through the executor, with the
//! real command log (fsync on) and the real `.tavern/` documents.
//!
//! A working agent cannot be Dismissed (only a Done one can), so the dismissal measured here is the
//! reap, which is what `/reap` and a parent's "dismiss that child now" do. The time counted ends when
//! the last intent is acknowledged (durable in the log); documents are written behind it, and the time
//! until they are all written is printed separately.
//!
//! `summon with N live agents` measures what one summon costs (until acknowledged) while N agents are
//! alive, each with its own task: the 10th summon against the 1,000th. Each timed summon is reaped
//! afterwards, untimed, so the number of live agents stays N however many iterations criterion runs
//! (the number of names taken still grows with them, as it does in a real tavern).
//!
//! `restart with one N MB entry` measures a restart (start, replay, re-projection, shutdown) of a
//! tavern whose log holds one summon whose assignment is N MB, plus a chat line of N MB: what a
//! pasted log file costs the next start. It should grow linearly with N.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tavern::app::App;
use tavern::config::Config;
use tavern::domain::{Actor, Intent, Summon};
use tavern_plugin_api::AgentKind;

fn config(dir: &std::path::Path) -> Config {
    Config {
        project: dir.to_path_buf(),
        tavern_dir: dir.join(".tavern"),
        theme: "lotr".to_string(),
        models: Default::default(),
        max_retries: 0,
        permissions: Default::default(),
        discord: Default::default(),
        max_concurrent_calls: 10,
        verify_timeout: Duration::from_secs(30),
        output_limit: 4096,
        approve_own_commitments: false,
        console_user: "bench".to_string(),
        max_restarts: 3,
        restart_window: Duration::from_secs(60),
    }
}

/// Runs 100 summons then 100 reaps; returns (time to the last acknowledgement, time to documents
/// written, log bytes per entry).
async fn hundred(dir: &std::path::Path) -> (Duration, Duration, f64) {
    let app = App::start(config(dir)).await.expect("start a tavern");
    let tavern = app.tavern.clone();
    let user = Actor::User("bench".into());
    let start = Instant::now();
    let mut names = Vec::with_capacity(100);
    for i in 0..100 {
        names.push(summon_one(&tavern, format!("task {i}")).await);
    }
    for name in &names {
        tavern
            .submit(
                user.clone(),
                Intent::Reap {
                    agent: name.clone(),
                    reason: "bench".into(),
                },
                None,
            )
            .await
            .expect("reap");
    }
    let acknowledged = start.elapsed();
    tavern.flush().await;
    let written = start.elapsed();
    assert_eq!(names.len(), 100);
    let entries = tavern.read(|s| s.last_seq);
    app.shutdown().await.expect("shutdown");
    let bytes = std::fs::metadata(dir.join(".tavern/log/main.jsonl"))
        .expect("log exists")
        .len();
    (acknowledged, written, bytes as f64 / entries as f64)
}

fn summons_and_dismissals(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("tavern");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    let last = std::sync::Arc::new(std::sync::Mutex::new((Duration::ZERO, Duration::ZERO, 0.0)));
    group.bench_function("100 summons + 100 dismissals (acknowledged)", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let last = last.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
                    let result = hundred(dir.path()).await;
                    total += result.0;
                    *last.lock().expect("not poisoned") = result;
                }
                total
            }
        })
    });
    group.finish();
    let last = *last.lock().expect("not poisoned");
    eprintln!(
        "summary: 100 summons + 100 dismissals acknowledged in {:.1} ms; all documents written after {:.1} ms; {:.0} log bytes per entry",
        last.0.as_secs_f64() * 1e3,
        last.1.as_secs_f64() * 1e3,
        last.2
    );
}

fn summon_intent(assignment: String) -> Intent {
    Intent::Summon(Summon {
        parent: "Jake".into(),
        assignment: Some(assignment),
        kind: AgentKind::Mortal,
        expert: None,
        name: None,
        model: None,
        workdir: None,
    })
}

/// Summons one agent and returns its name.
async fn summon_one(tavern: &tavern::executor::Tavern, assignment: String) -> String {
    let receipt = tavern
        .submit(Actor::User("bench".into()), summon_intent(assignment), None)
        .await
        .expect("summon");
    let tavern::executor::Receipt::Accepted { outcomes, .. } = receipt else {
        panic!("the summon was refused: {receipt:?}");
    };
    outcomes
        .into_iter()
        .find_map(|o| match o {
            tavern::domain::Outcome::AgentSummoned(n) => Some(n.name),
            _ => None,
        })
        .expect("a summon names its agent")
}

fn summon_with_live_agents(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("summon with N live agents");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(15));
    for live in [10usize, 1000] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        let app = runtime
            .block_on(App::start(config(dir.path())))
            .expect("start a tavern");
        let tavern = app.tavern.clone();
        // Jake is one of the live agents; the summon measured is the `live`-th.
        runtime.block_on(async {
            for i in 1..live - 1 {
                summon_one(&tavern, format!("standing task {i}")).await;
            }
            tavern.flush().await;
        });
        group.bench_function(format!("the {live}th summon"), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let tavern = tavern.clone();
                async move {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let start = Instant::now();
                        let name = summon_one(&tavern, format!("measured task {i}")).await;
                        total += start.elapsed();
                        tavern
                            .submit(
                                Actor::User("bench".into()),
                                Intent::Reap {
                                    agent: name,
                                    reason: "keep the number of live agents".into(),
                                },
                                None,
                            )
                            .await
                            .expect("reap");
                        // The documents of both are written before the next summon is timed, so each
                        // timed summon starts from the same quiet disk.
                        tavern.flush().await;
                    }
                    total
                }
            })
        });
        runtime.block_on(app.shutdown()).expect("shutdown");
    }
    group.finish();
}

fn restart_with_a_huge_entry(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("restart with one N MB entry");
    group.sample_size(10);
    for mb in [1usize, 10] {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
        runtime.block_on(async {
            let app = App::start(config(dir.path()))
                .await
                .expect("start a tavern");
            let text = "C".repeat(mb << 20);
            summon_one(&app.tavern, text.clone()).await;
            app.tavern
                .submit(
                    Actor::User("bench".into()),
                    Intent::SendMessage {
                        to: "Jake".into(),
                        text,
                    },
                    None,
                )
                .await
                .expect("chat");
            app.shutdown().await.expect("shutdown");
        });
        let log = std::fs::metadata(dir.path().join(".tavern/log/main.jsonl"))
            .expect("log exists")
            .len();
        eprintln!("fixture: {mb} MB entries, log of {log} bytes");
        group.bench_function(format!("{mb} MB"), |b| {
            b.to_async(&runtime).iter(|| async {
                let app = App::start(config(dir.path())).await.expect("restart");
                assert_eq!(app.report.entries, 3);
                app.shutdown().await.expect("shutdown");
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    summons_and_dismissals,
    summon_with_live_agents,
    restart_with_a_huge_entry
);
criterion_main!(benches);
