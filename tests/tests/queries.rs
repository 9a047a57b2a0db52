//! Interactive queries across instances on a real broker: local views,
//! where each key lives, the HTTP layer answering on any instance, the
//! instance registry shrinking when an instance stops or dies, queries
//! during rebalances, and metrics.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use streams_core::serde::StringSerde;
use streams_http::get;
use streams_kafka::{HostInfo, State};
use tests::{QueryInstance, WAIT, app_process, apps, shared_broker, unique};

/// One word-count instance with its query server.
fn start(app: &str, lines: &str, counts: &str) -> QueryInstance {
    let bootstrap = shared_broker().bootstrap_servers();
    let topology = apps::word_count(lines, counts, "word-counts").unwrap();
    let config = |dir: &str| apps::config(app, bootstrap, dir);
    QueryInstance::start(topology, config, "word-counts").unwrap()
}

fn http(host: &HostInfo, path: &str) -> (u16, Value) {
    let answer = get(host, path, Duration::from_secs(10), false).unwrap();
    let body = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
    (answer.status, body)
}

fn produce_lines(topic: &str, lines: &[&str]) {
    let records: Vec<(Option<&str>, &str)> = lines.iter().map(|l| (None, *l)).collect();
    shared_broker().produce(topic, &records);
}

/// Waits until `check` holds, or panics with what it last saw.
fn wait_until<T: std::fmt::Debug>(what: &str, mut check: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let (done, seen) = check();
        if done {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}; last saw {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ports(instances: &Value) -> BTreeSet<u64> {
    instances
        .as_array()
        .map(|list| list.iter().filter_map(|i| i["port"].as_u64()).collect())
        .unwrap_or_default()
}

/// Expected counts of the words in `LINES`.
const LINES: [&str; 4] = ["a b c d e f", "b c d e f", "c d e f g", "d e f g h"];

fn expected() -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for line in LINES {
        for word in line.split_whitespace() {
            *counts.entry(word.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Waits until the instance at `host` lists itself only.
fn wait_until_alone(what: &str, host: &HostInfo) {
    wait_until(what, || {
        let (_, body) = http(host, "/state/instances");
        (ports(&body) == BTreeSet::from([host.port as u64]), body)
    });
}

/// Waits until `host` answers every word's count as [`expected`].
fn wait_for_counts(what: &str, host: &HostInfo) {
    let want: BTreeMap<String, Option<i64>> =
        expected().into_iter().map(|(w, c)| (w, Some(c))).collect();
    wait_until(what, || {
        let seen = counts_over_http(host);
        (seen == want, seen)
    });
}

/// Every word's count read over HTTP from `host`.
fn counts_over_http(host: &HostInfo) -> BTreeMap<String, Option<i64>> {
    expected()
        .keys()
        .map(|word| {
            let (status, body) = http(host, &format!("/state/keyvalue/word-counts/{word}"));
            (
                word.clone(),
                (status == 200).then(|| body["value"].as_i64()).flatten(),
            )
        })
        .collect()
}

#[test]
fn two_instances_answer_for_every_key_anywhere_and_list_each_other() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 4);
    let app = unique("iq");
    let one = start(&app, &lines, &counts);
    let two = start(&app, &lines, &counts);
    for instance in [&one, &two] {
        assert!(instance.streams.wait_for_state(State::Running, WAIT));
    }
    produce_lines(&lines, &LINES);

    // Both list both, with their stores and partitions.
    for instance in [&one, &two] {
        let listed = wait_until("both instances listed", || {
            let (_, body) = http(&instance.host, "/state/instances");
            let both = ports(&body) == BTreeSet::from([one.host.port as u64, two.host.port as u64])
                && body.as_array().is_some_and(|l| {
                    l.iter().all(|i| {
                        i["storeNames"] == serde_json::json!(["word-counts"])
                            && i["partitions"].as_array().is_some_and(|p| !p.is_empty())
                    })
                });
            (both, body)
        });
        assert_eq!(listed.as_array().unwrap().len(), 2);
    }
    // Every key is answered by either instance, whichever holds it.
    for instance in [&one, &two] {
        wait_for_counts("every count over HTTP", &instance.host);
    }
    // query_metadata_for_key names the instance whose local store has it.
    for (word, count) in expected() {
        let owner = one
            .streams
            .query_metadata_for_key("word-counts", &word, &StringSerde)
            .unwrap()
            .expect("an owner");
        let same = two
            .streams
            .query_metadata_for_key("word-counts", &word, &StringSerde)
            .unwrap()
            .expect("an owner");
        assert_eq!(owner, same, "both instances agree on {word}");
        let (holder, other) = if owner.active_host == one.host {
            (&one, &two)
        } else {
            assert_eq!(owner.active_host, two.host);
            (&two, &one)
        };
        let local = |i: &QueryInstance| {
            i.streams
                .store::<String, i64>("word-counts")
                .unwrap()
                .get(&word)
                .unwrap()
        };
        assert_eq!(local(holder), Some(count), "{word} on its owner");
        assert_eq!(local(other), None, "{word} is not on the other instance");
    }
    // Local views: range, prefix and counts cover the local tasks, and the
    // two instances together hold every word once.
    let mut total = 0;
    let mut ranged = BTreeMap::new();
    for instance in [&one, &two] {
        let view = instance
            .streams
            .store::<String, i64>("word-counts")
            .unwrap();
        // RocksDB's count is an estimate (it counts overwritten values
        // until compaction): only exact scans are compared.
        assert!(view.approximate_num_entries().unwrap() > 0);
        total += view.all().unwrap().len() as u64;
        ranged.extend(
            view.range(Some(&"b".to_owned()), Some(&"d".to_owned()))
                .unwrap(),
        );
        for (word, _) in view.prefix_scan(&"e".to_owned(), &StringSerde).unwrap() {
            assert_eq!(word, "e");
        }
    }
    assert_eq!(total, expected().len() as u64);
    let want_range: BTreeMap<String, i64> = expected()
        .into_iter()
        .filter(|(w, _)| ("b".."e").contains(&w.as_str()))
        .collect();
    assert_eq!(ranged, want_range);
    // A merged scan from either instance has every word once.
    for instance in [&one, &two] {
        let (status, body) = http(&instance.host, "/state/keyvalue/word-counts");
        assert_eq!(status, 200, "{body}");
        let merged: BTreeMap<String, i64> = body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap().to_owned(),
                    e["value"].as_i64().unwrap(),
                )
            })
            .collect();
        assert_eq!(merged, expected());
        assert_eq!(body["missing"], serde_json::json!([]));
        assert_eq!(body["instances"].as_array().unwrap().len(), 2);
        assert_eq!(body["next"], Value::Null, "one page holds them all");
    }
    // Pages of 3 from either instance: every word once, in key order.
    for instance in [&one, &two] {
        let mut seen = Vec::new();
        let mut path = "/state/keyvalue/word-counts?limit=3".to_owned();
        for _ in 0..10 {
            let (status, body) = http(&instance.host, &path);
            assert_eq!(status, 200, "{body}");
            let page = body["entries"].as_array().unwrap();
            assert!(page.len() <= 3, "{body}");
            seen.extend(page.iter().map(|e| e["key"].as_str().unwrap().to_owned()));
            match body["next"].as_str() {
                Some(next) => {
                    path = format!(
                        "/state/keyvalue/word-counts?limit=3&from={}",
                        streams_http::percent_encode(next)
                    )
                }
                None => break,
            }
        }
        let words: Vec<String> = expected().into_keys().collect();
        assert_eq!(seen, words, "pages in key order, each word once");
    }
    assert_eq!(
        http(&one.host, "/state/keyvalue/word-counts?limit=0").0,
        400
    );
    // Unknown things are clear errors, never a crash.
    assert_eq!(http(&one.host, "/state/keyvalue/nope/a").0, 404);
    assert_eq!(http(&one.host, "/nowhere").0, 404);
    assert_eq!(http(&one.host, "/state/keyvalue/word-counts/zzz").0, 404);
    let (status, text) = {
        let answer = get(&one.host, "/metrics", Duration::from_secs(10), false).unwrap();
        (answer.status, String::from_utf8(answer.body).unwrap())
    };
    assert_eq!(status, 200);
    for family in [
        "streams_thread_records_processed_total{",
        "streams_thread_commits_total{",
        "streams_task_records_processed_total{",
        "streams_thread_rebalances_total{",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    assert_eq!(http(&one.host, "/health").0, 200);

    // A clean stop leaves the registry at once; the survivor takes the
    // partitions over and answers for every key.
    let survivor = two;
    let mut stopped = one;
    assert!(stopped.streams.close(WAIT));
    stopped.server.stop();
    let began = Instant::now();
    wait_until_alone("the stopped instance is gone", &survivor.host);
    assert!(
        began.elapsed() < Duration::from_secs(2),
        "a clean stop is seen before the 2 s timeout would expire it ({:?})",
        began.elapsed()
    );
    wait_for_counts("every count on the survivor", &survivor.host);
    // Its metrics show the lag of its partitions and what it restored.
    wait_until("lag and restoration in the metrics", || {
        let answer = get(&survivor.host, "/metrics", Duration::from_secs(10), false).unwrap();
        let text = String::from_utf8(answer.body).unwrap();
        let rows = |family: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{family}{{")))
                .count()
        };
        (
            rows("streams_consumer_lag_records") > 0 && rows("streams_restore_records_total") > 0,
            text,
        )
    });
}

/// A `streams-app` child process serving queries, to be killed with SIGKILL.
struct Child_ {
    child: Child,
    host: HostInfo,
}

impl Drop for Child_ {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_app(app: &str, lines: &str, counts: &str, dir: &std::path::Path) -> Child_ {
    let port = apps::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streams-app"))
        .args([
            "wordcount",
            shared_broker().bootstrap_servers(),
            app,
            dir.to_str().unwrap(),
            "at_least_once",
            lines,
            counts,
        ])
        .env("QUERY_PORT", port.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn streams-app");
    let states = app_process::states(child.stdout.take().unwrap());
    app_process::wait_for(&states, "Running", WAIT);
    Child_ {
        child,
        host: apps::loopback(port),
    }
}

#[test]
fn a_killed_instance_leaves_the_registry_within_the_timeout_and_lookups_go_on() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 4);
    let app = unique("iq-kill");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let victim = spawn_app(&app, &lines, &counts, dirs[0].path());
    let survivor = spawn_app(&app, &lines, &counts, dirs[1].path());
    produce_lines(&lines, &LINES);
    wait_until("both listed", || {
        let (_, body) = http(&survivor.host, "/state/instances");
        (ports(&body).len() == 2, body)
    });
    wait_for_counts("every count through the victim", &victim.host);
    // At-least-once: records processed but not yet committed when an
    // instance dies are processed again, and counted twice. Let a few
    // commit intervals pass so the counts below must be exact.
    std::thread::sleep(Duration::from_secs(1));
    drop(victim); // SIGKILL: no tombstone, no leaving the group.
    let began = Instant::now();
    // Until it expires, a merged scan names it as missing instead of failing.
    let (status, body) = http(&survivor.host, "/state/keyvalue/word-counts");
    if ports(&http(&survivor.host, "/state/instances").1).len() == 2 {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["missing"].as_array().map(Vec::len), Some(1), "{body}");
    }
    wait_until_alone("the killed instance expires", &survivor.host);
    // Heartbeats stop at the kill; 2 s of silence, plus one poll.
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "expired after {:?}",
        began.elapsed()
    );
    wait_for_counts(
        "every count on the survivor after the takeover",
        &survivor.host,
    );
}

#[test]
fn queries_during_rebalances_get_answers_or_retriable_errors() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 4);
    let app = unique("iq-rebalance");
    let first = start(&app, &lines, &counts);
    assert!(first.streams.wait_for_state(State::Running, WAIT));
    produce_lines(&lines, &LINES);
    let stop = Arc::new(AtomicBool::new(false));
    let (answers, retriable) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let (mut answers, mut retriable) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let view = match first.streams.store::<String, i64>("word-counts") {
                    Ok(view) => view,
                    Err(error) => panic!("the view itself: {error}"),
                };
                for result in [
                    view.get(&"d".to_owned()).map(|_| ()),
                    view.all().map(|_| ()),
                ] {
                    match result {
                        Ok(()) => answers += 1,
                        Err(error) if error.is_retriable() => retriable += 1,
                        Err(error) => panic!("a query failed for good: {error}"),
                    }
                }
                let (status, body) = http(&first.host, "/state/keyvalue/word-counts/d");
                assert!(
                    [200, 404, 502, 503].contains(&status),
                    "status {status}: {body}"
                );
            }
            (answers, retriable)
        });
        // Instances join and leave while the reader reads.
        for _ in 0..2 {
            let other = start(&app, &lines, &counts);
            assert!(other.streams.wait_for_state(State::Running, WAIT));
            std::thread::sleep(Duration::from_millis(500));
            assert!(other.streams.close(WAIT));
            drop(other);
            assert!(first.streams.wait_for_state(State::Running, WAIT));
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("the reader never panics")
    });
    assert!(answers > 0, "some queries were answered");
    eprintln!("{answers} answers, {retriable} retriable errors during rebalances");
    assert_eq!(first.streams.state(), State::Running);
}

/// A listener that accepts and closes, counting its connections.
fn trap() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, Ordering::Relaxed);
            drop(stream);
        }
    });
    (port, connections)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn announcement(host: &str, port: u16, heartbeat_ms: i64) -> String {
    serde_json::json!({
        "host": host,
        "port": port,
        "storeNames": ["word-counts"],
        "partitions": [],
        "heartbeatMs": heartbeat_ms,
        "assignedMs": heartbeat_ms,
    })
    .to_string()
}

#[test]
fn registry_entries_with_bad_hosts_or_future_heartbeats_are_ignored() {
    let broker = shared_broker();
    let [lines, counts] = broker.unique_topics(["lines", "counts"], 2);
    let app = unique("hostile");
    let one = start(&app, &lines, &counts);
    assert!(one.streams.wait_for_state(State::Running, WAIT));
    let registry = format!("{app}-instance-registry");
    let (future, future_connections) = trap();
    let (control, control_connections) = trap();
    let hostile = [
        (
            "evil host:80".to_owned(),
            announcement("evil host", 80, now_ms()),
        ),
        (
            "127.0.0.1:0".to_owned(),
            announcement("127.0.0.1", 0, now_ms()),
        ),
        (
            format!("0.0.0.0:{future}"),
            announcement("0.0.0.0", future, now_ms()),
        ),
        (
            format!("127.0.0.1:{future}"),
            announcement("127.0.0.1", future, now_ms() + 3_600_000),
        ),
        // Keyed as another endpoint than its own.
        (
            format!("localhost:{control}"),
            announcement("127.0.0.1", future, now_ms()),
        ),
    ];
    let records: Vec<(Option<&str>, &str)> = hostile
        .iter()
        .map(|(k, v)| (Some(k.as_str()), v.as_str()))
        .collect();
    broker.produce(&registry, &records);
    // A well-formed entry written after them (kept fresh: it expires in
    // 2 s): once it is listed, the hostile ones have been read.
    let control_key = format!("127.0.0.1:{control}");
    let listed = wait_until("the control entry listed", || {
        let entry = announcement("127.0.0.1", control, now_ms());
        broker.produce(&registry, &[(Some(control_key.as_str()), entry.as_str())]);
        let (_, body) = http(&one.host, "/state/instances");
        (ports(&body).contains(&(control as u64)), body)
    });
    assert_eq!(
        ports(&listed),
        BTreeSet::from([one.host.port as u64, control as u64]),
        "{listed}"
    );
    // A scan asks every live instance once: the control (which does not
    // answer HTTP) is missing, the hostile entries are never called.
    let entry = announcement("127.0.0.1", control, now_ms());
    broker.produce(&registry, &[(Some(control_key.as_str()), entry.as_str())]);
    let (status, body) = http(&one.host, "/state/keyvalue/word-counts");
    assert_eq!(status, 200, "{body}");
    let missing: Vec<&str> = body["missing"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["instance"].as_str())
        .collect();
    assert!(missing.iter().all(|m| *m == control_key), "{body}");
    assert_eq!(future_connections.load(Ordering::Relaxed), 0);
    assert!(control_connections.load(Ordering::Relaxed) <= 1);
}
