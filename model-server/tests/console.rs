//! The web console in a real browser: Debian's headless Chromium, driven
//! through chromedriver (W3C WebDriver) by `fantoccini`, opens the console
//! of two running model-server instances on a broker of the test's own,
//! and checks what a person would see:
//!
//! - both instances listed, the one answering marked;
//! - the model that `/models` names, in the Models panel, and a broken
//!   descriptor among the rejected ones, with its reason;
//! - points in the throughput chart, records flowing;
//! - the topology diagram naming the `mdata` source and both stores;
//! - results in the Recent results panel;
//! - an instance that dies leaving the list within the registry's timeout.
//!
//! Then the broker stops, and a new load of the page shows what is
//! unavailable (the results, read from the topic) next to what still is
//! (instances, models, topology), not a blank page. Screenshots of both
//! are kept in `target/tmp/console/`.
//!
//! Chromium and chromedriver come from `scripts/setup.sh` (Debian's
//! `chromium` and `chromium-driver`); without them the test fails and
//! says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{data, wait_until};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use streams_kafka::HostInfo;
use tests::Broker;

const SERVER: &str = env!("CARGO_BIN_EXE_model-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_model-client");
const MODEL: &str = "wine_random_forest_regression";

/// Where a browser binary is: `$var`, else Debian's path.
fn binary(var: &str, debian: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or_else(|| PathBuf::from(debian), PathBuf::from);
    assert!(
        path.exists(),
        "headless Chromium is not installed: {} is missing. Run scripts/setup.sh, which installs \
         Debian's chromium and chromium-driver (or set {var})",
        path.display()
    );
    path
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A model-server of application `app` on `broker`, HTTP on `port`.
fn server(broker: &Broker, app: &str, state: &Path, port: u16) -> Process {
    let child = Command::new(SERVER)
        .args(["--bootstrap-servers", broker.bootstrap_servers()])
        .args(["--application-id", app, "--port", &port.to_string()])
        .args(["--state-dir", &state.to_string_lossy()])
        .args(["-c", "commit.interval.ms=200", "-c", "replication.factor=1"])
        .args(["-c", "consumer.session.timeout.ms=3000"])
        .args(["-c", "consumer.heartbeat.interval.ms=500"])
        .args(["-c", "consumer.topic.metadata.refresh.interval.ms=1000"])
        .args(["-c", "registry.heartbeat.interval.ms=200"])
        .args(["-c", "registry.instance.timeout.ms=2000"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .spawn()
        .expect("start model-server");
    Process(child)
}

fn publish(broker: &Broker, args: &[&str]) -> Child {
    Command::new(CLIENT)
        .args(["--bootstrap-servers", broker.bootstrap_servers(), "publish"])
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .spawn()
        .expect("run model-client")
}

fn get_json(port: u16, path: &str) -> Result<Value, String> {
    let host = tests::apps::loopback(port);
    let answer =
        streams_http::get(&host, path, Duration::from_secs(5), false).map_err(|e| e.to_string())?;
    match answer.status {
        200 => serde_json::from_slice(&answer.body).map_err(|e| e.to_string()),
        status => Err(format!("{path}: {status}")),
    }
}

/// What the page shows, read from its DOM.
const READ_PAGE: &str = r##"
    const all = (selector) => [...document.querySelectorAll(selector)];
    const text = (selector) => { const node = document.querySelector(selector); return node ? node.textContent : ""; };
    return {
        refreshes: Number(document.body.dataset.refreshes || 0),
        instances: all("#panel-instances tr[data-instance]").map((row) => row.dataset.instance),
        answering: all("#panel-instances tr.answering").map((row) => row.dataset.instance),
        models: text("#panel-models .body"),
        rejected: all("#panel-models tr.bad").map((row) => (row.textContent.match(/model (\w+): not a valid ONNX model/) || [])[1] || row.textContent),
        recordPoints: all("#records-chart polyline").map((line) => Number(line.dataset.points)),
        recordMax: all("#records-chart polyline").map((line) => Number(line.dataset.max)),
        topics: all("#panel-topology [data-topic]").map((node) => node.dataset.topic),
        sources: all("#panel-topology [data-kind=Source]").map((node) => node.dataset.name),
        stores: all("#panel-topology [data-store]").map((node) => node.dataset.store),
        drawing: text("#panel-topology svg"),
        results: all("#panel-results tbody tr").length,
        unavailable: all("section.panel.unavailable").map((panel) => panel.id + ": " + panel.querySelector(".state").textContent),
        warnings: all("section.panel .body .unavailable-note").map((note) => note.closest("section").id + ": " + note.textContent),
        health: text("#health"),
        panels: all("section.panel").length,
    };
"##;

/// Reads the page until `check` is satisfied with it, for up to `timeout`.
async fn wait_for_page(
    client: &Client,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let page = client
            .execute(READ_PAGE, vec![])
            .await
            .expect("read the page");
        let last = match check(&page) {
            Ok(()) => return page,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}: {last}; the page: {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Starts chromedriver on a free port and waits until it is ready.
fn chromedriver(driver: &Path) -> (Process, u16) {
    let port = tests::apps::free_port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let process = Process(child);
    let host = HostInfo {
        host: "127.0.0.1".into(),
        port,
    };
    wait_until("chromedriver", Duration::from_secs(20), || {
        let answer = streams_http::get(&host, "/status", Duration::from_secs(2), false)
            .map_err(|e| e.to_string())?;
        let status: Value = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
        match status["value"]["ready"].as_bool() {
            Some(true) => Ok(()),
            _ => Err(status.to_string()),
        }
    });
    (process, port)
}

/// A headless Chromium session, as the machine's notes say to start one
/// as root on a closed network.
async fn browser(chromium: &Path, driver_port: u16, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1400,1900",
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a Chromium session from chromedriver")
}

fn save(dir: &Path, name: &str, png: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

#[test]
fn the_console_shows_two_instances_their_model_throughput_topology_and_what_is_unavailable() {
    // First: a missing browser is a clear failure, before anything starts.
    let chromium = binary("CHROMIUM_BIN", "/usr/bin/chromium");
    let driver = binary("CHROMEDRIVER_BIN", "/usr/bin/chromedriver");

    let broker = Broker::start();
    let state = tempfile::tempdir().unwrap();
    let app = tests::unique("console");
    let ports = [tests::apps::free_port(), tests::apps::free_port()];
    let servers: Vec<Process> = ports
        .iter()
        .map(|&port| server(&broker, &app, &state.path().join(port.to_string()), port))
        .collect();
    let model = data(&format!("models/onnx/{MODEL}.onnx"));
    let model = model.to_string_lossy();
    let status = publish(
        &broker,
        &[
            "--count",
            "0",
            "--model",
            &model,
            "--model-interval-ms",
            "0",
        ],
    )
    .wait()
    .unwrap();
    assert!(status.success(), "publishing the model: {status}");
    let expected: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    for port in ports {
        wait_until(
            "the model and both instances",
            Duration::from_secs(60),
            || {
                let models = get_json(port, "/models")?;
                let mut instances: Vec<String> = get_json(port, "/state/instances")?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|i| Some(format!("127.0.0.1:{}", i["port"].as_u64()?)))
                    .collect();
                instances.sort();
                let mut both = expected.clone();
                both.sort();
                match (models[0]["name"] == MODEL, instances == both) {
                    (true, true) => Ok(()),
                    _ => Err(format!("models {models}, instances {instances:?}")),
                }
            },
        );
    }
    // A descriptor that cannot become a model: rejected, with its reason.
    let broken = state.path().join("broken_model.onnx");
    std::fs::write(&broken, b"not an ONNX model").unwrap();
    let broken = broken.to_string_lossy();
    let status = publish(
        &broker,
        &[
            "--count",
            "0",
            "--model",
            &broken,
            "--model-interval-ms",
            "0",
        ],
    )
    .wait()
    .unwrap();
    assert!(status.success(), "publishing the broken model: {status}");
    // Records while the page is looked at (200 a second for 20 s at most).
    let records = Process(publish(
        &broker,
        &["--no-models", "--count", "4000", "--rate", "200"],
    ));

    let (_driver, driver_port) = chromedriver(&driver);
    let profile = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = browser(&chromium, driver_port, profile.path()).await;
        // A failed check must not leave Chromium running: the checks run as
        // a task of their own, and the session ends whatever they did.
        let looked = tokio::task::LocalSet::new()
            .run_until(async {
                let checks = look(client.clone(), broker, servers, records, ports, expected);
                tokio::task::spawn_local(checks).await
            })
            .await;
        let closed = client.close().await;
        if let Err(failure) = looked {
            std::panic::resume_unwind(failure.into_panic());
        }
        closed.expect("close the browser");
    });
}

/// What the test looks at in the browser, then with an instance dead, then
/// with the broker down.
async fn look(
    client: Client,
    mut broker: Broker,
    mut servers: Vec<Process>,
    records: Process,
    ports: [u16; 2],
    expected: Vec<String>,
) {
    let screenshots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
    let url = format!("http://127.0.0.1:{}/", ports[0]);
    client.goto(&url).await.expect("open the console");

    // The model that `/models` names.
    let named = get_json(ports[0], "/models").unwrap()[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = wait_for_page(&client, "a full console", Duration::from_secs(45), |page| {
        let mut instances = strings(&page["instances"]);
        instances.sort();
        let mut both = expected.clone();
        both.sort();
        if instances != both {
            return Err(format!("instances listed: {instances:?}"));
        }
        if !page["models"].as_str().unwrap_or("").contains(&named) {
            return Err(format!("model {named} not in the Models panel"));
        }
        if page["rejected"] != json!(["broken_model"]) {
            return Err(format!("rejected: {}", page["rejected"]));
        }
        // A line (two samples or more) that shows records flowing.
        let points = page["recordPoints"].as_array().cloned().unwrap_or_default();
        if !points.iter().any(|p| p.as_u64().unwrap_or(0) >= 2) {
            return Err(format!("throughput points: {points:?}"));
        }
        let max = page["recordMax"].as_array().cloned().unwrap_or_default();
        if !max.iter().any(|m| m.as_f64().unwrap_or(0.0) > 0.0) {
            return Err(format!("records per second, highest: {max:?}"));
        }
        if page["results"].as_u64().unwrap_or(0) == 0 {
            return Err("no recent result".into());
        }
        // Both joined the group, so this one stopped rebalancing.
        if page["health"] != "Running" {
            return Err(format!("health: {}", page["health"]));
        }
        Ok(())
    })
    .await;
    assert_eq!(strings(&page["answering"]), [expected[0].clone()]);
    // The topology: the `mdata` source and both stores, by name.
    let topics = strings(&page["topics"]);
    assert!(topics.contains(&"mdata".to_owned()), "{topics:?}");
    assert!(topics.contains(&"mscores".to_owned()), "{topics:?}");
    assert!(topics.contains(&"models".to_owned()), "{topics:?}");
    assert_eq!(strings(&page["sources"]).len(), 2, "{page:#}");
    let mut stores = strings(&page["stores"]);
    stores.sort();
    assert_eq!(stores, ["model-stats", "models"]);
    let drawing = page["drawing"].as_str().unwrap();
    assert!(
        drawing.contains("mdata") && drawing.contains("model-stats"),
        "{drawing}"
    );
    assert_eq!(page["unavailable"], json!([]), "{page:#}");
    save(
        &screenshots,
        "console.png",
        &client.screenshot().await.unwrap(),
    );

    // An instance dies: it leaves the list within the registry's
    // timeout (2 s here) and a refresh or two.
    drop(servers.pop());
    wait_for_page(
        &client,
        "the dead instance gone",
        Duration::from_secs(20),
        |page| match strings(&page["instances"]) == [expected[0].clone()] {
            true => Ok(()),
            false => Err(format!("instances listed: {}", page["instances"])),
        },
    )
    .await;

    // The broker goes away: a new load of the page says what is
    // unavailable and shows what still is.
    drop(records);
    broker.stop();
    client.refresh().await.expect("reload the console");
    let page = wait_for_page(
        &client,
        "the results shown as unavailable",
        Duration::from_secs(30),
        |page| {
            let unavailable = strings(&page["unavailable"]);
            match unavailable
                .iter()
                .any(|u| u.starts_with("panel-results: Unavailable"))
            {
                true => Ok(()),
                false => Err(format!("unavailable: {unavailable:?}")),
            }
        },
    )
    .await;
    let unavailable = strings(&page["unavailable"]);
    let results = unavailable
        .iter()
        .find(|u| u.starts_with("panel-results"))
        .unwrap();
    assert!(results.contains("broker does not answer"), "{results}");
    // Not a blank page: every panel is there, and what needs no broker
    // is still shown.
    assert_eq!(page["panels"], 5);
    assert!(
        strings(&page["instances"]).contains(&expected[0]),
        "{page:#}"
    );
    assert!(page["models"].as_str().unwrap_or("").contains(&named));
    assert!(strings(&page["topics"]).contains(&"mdata".to_owned()));
    save(
        &screenshots,
        "console-broker-down.png",
        &client.screenshot().await.unwrap(),
    );
}

/// A `stage` or `actors` engine server of application `app`, HTTP on `port`.
fn engine_server(broker: &Broker, engine: &str, app: &str, port: u16, state: &Path) -> Process {
    let mut command = Command::new(SERVER);
    command
        .args(["--engine", engine, "--port", &port.to_string()])
        .args(["--bootstrap-servers", broker.bootstrap_servers()])
        .args(["--application-id", app])
        .args(["-c", "consumer.session.timeout.ms=3000"])
        .args(["-c", "consumer.heartbeat.interval.ms=500"])
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null());
    if engine == "actors" {
        command.args(["--state-dir", &state.to_string_lossy()]);
    }
    Process(command.spawn().expect("start model-server"))
}

fn get_text(port: u16, path: &str) -> (u16, String, String) {
    let host = tests::apps::loopback(port);
    let answer = streams_http::get(&host, path, Duration::from_secs(5), false).unwrap();
    let content_type = answer.content_type.clone().unwrap_or_default();
    let body = String::from_utf8(answer.body).unwrap();
    (answer.status, content_type, body)
}

/// The engines without the framework serve the console too, from the same
/// files: this instance (they have no registry), their models and results,
/// the throughput they sample, and a topology panel that does not apply.
#[test]
fn the_stage_and_actors_engines_serve_a_console_whose_topology_does_not_apply() {
    let broker = Broker::start();
    let state = tempfile::tempdir().unwrap();
    let servers: Vec<(String, u16, Process)> = ["stage", "actors"]
        .into_iter()
        .map(|engine| {
            let port = tests::apps::free_port();
            let app = tests::unique(engine);
            let process = engine_server(&broker, engine, &app, port, state.path());
            (engine.to_owned(), port, process)
        })
        .collect();
    for (_, port, _) in &servers {
        wait_until("a healthy server", Duration::from_secs(60), || {
            get_json(*port, "/health").map(drop)
        });
    }
    let model = data(&format!("models/onnx/{MODEL}.onnx"));
    let model = model.to_string_lossy();
    let status = publish(
        &broker,
        &[
            "--count",
            "0",
            "--model",
            &model,
            "--model-interval-ms",
            "0",
        ],
    )
    .wait()
    .unwrap();
    assert!(status.success());
    for (engine, port, _) in &servers {
        wait_until(
            &format!("the model in the {engine} engine's Models panel"),
            Duration::from_secs(60),
            || {
                let models = get_json(*port, "/console/models")?;
                match models["tables"][0]["rows"][0]["cells"][1] == MODEL {
                    true => Ok(()),
                    false => Err(models.to_string()),
                }
            },
        );
    }
    // Bytes that are no descriptor: each engine lists them as rejected,
    // the actors engine's router as well as the stage.
    broker.produce("models", &[(None, "not a descriptor")]);
    for (engine, port, _) in &servers {
        wait_until(
            &format!("the unreadable descriptor among the {engine} engine's rejections"),
            Duration::from_secs(30),
            || {
                let models = get_json(*port, "/console/models")?;
                let reason = &models["tables"][1]["rows"][0]["cells"][2];
                match reason
                    .as_str()
                    .unwrap_or_default()
                    .contains("not a model descriptor")
                {
                    true => Ok(()),
                    false => Err(models.to_string()),
                }
            },
        );
    }
    let _records = Process(publish(
        &broker,
        &["--no-models", "--count", "2000", "--rate", "200"],
    ));
    for (engine, port, _) in &servers {
        let port = *port;
        let (status, content_type, page) = get_text(port, "/");
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/html; charset=utf-8")
        );
        assert!(
            page.contains("id=\"panel-topology\" data-kind=\"not-applicable\""),
            "{page}"
        );
        assert!(page.contains(&format!(
            "the {engine} engine does not run on the streams framework"
        )));
        let panels = get_json(port, "/console/panels").unwrap();
        let kinds: Vec<&str> = panels["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "instances",
                "table",
                "throughput",
                "not-applicable",
                "table"
            ]
        );
        let instances = get_json(port, "/console/instances").unwrap();
        assert_eq!(instances["answering"], format!("127.0.0.1:{port}"));
        assert_eq!(instances["instances"].as_array().unwrap().len(), 1);
        assert_eq!(instances["instances"][0]["answering"], true);
        let (status, content_type, _) = get_text(port, "/console/console.js");
        assert_eq!(
            (status, content_type.as_str()),
            (200, "text/javascript; charset=utf-8")
        );
        assert_eq!(get_text(port, "/topology.svg").0, 404);
        wait_until(
            &format!("records per second from the {engine} engine"),
            Duration::from_secs(30),
            || {
                let samples = get_json(port, "/console/throughput")?;
                let positive = samples["records"][0]["points"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|p| p[1].as_f64().unwrap_or(0.0) > 0.0);
                match positive {
                    true => Ok(()),
                    false => Err(samples.to_string()),
                }
            },
        );
        wait_until(
            &format!("results in the {engine} engine's panel"),
            Duration::from_secs(30),
            || {
                let results = get_json(port, "/console/results")?;
                match results["tables"][0]["rows"][0]["cells"][3] == MODEL {
                    true => Ok(()),
                    false => Err(results.to_string()),
                }
            },
        );
    }
}
