//! The web console's routes on a server whose streams client is never
//! started: the page and its files, the panel list, instances, throughput
//! samples and the topology in its three forms. The page in a browser,
//! on a running application, is tested in `model-server/tests/console.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streams_core::dsl::{Consumed, Grouped, Materialized};
use streams_core::serde::StringSerde;
use streams_core::topology::TopologyDescription;
use streams_core::{StreamsBuilder, StreamsConfig};
use streams_http::console::{Console, Panel};
use streams_http::{QueryServer, Request, Response, get};
use streams_kafka::{HostInfo, KafkaStreams};

/// A never-started client counting words into the store `counts`, and its
/// topology's description.
fn server() -> (QueryServer, TopologyDescription) {
    let builder = StreamsBuilder::new();
    builder
        .stream_with(["words"], Consumed::with(StringSerde, StringSerde))
        .group_by_key_with(Grouped::default())
        .count_with(Materialized::named("counts"))
        .to_stream()
        .to("word-counts");
    let topology = builder.build().unwrap();
    let description = topology.describe();
    let config = StreamsConfig::new("console-routes")
        .set("bootstrap.servers", "127.0.0.1:1")
        .set("application.server", "127.0.0.1:7");
    let streams = KafkaStreams::new(topology, config).unwrap();
    (QueryServer::new(Arc::new(streams)), description)
}

fn ask(server: &QueryServer, path: &str) -> Response {
    server.handle(&Request::get(path))
}

fn text(response: &Response) -> String {
    String::from_utf8(response.body.clone()).unwrap()
}

#[test]
fn the_page_and_its_files_come_from_the_instance_alone() {
    let (server, _) = server();
    let page = ask(&server, "/");
    assert_eq!(
        (page.status, page.content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    let html = text(&page);
    assert!(
        html.contains("<title>console-routes console</title>"),
        "{html}"
    );
    for panel in ["instances", "throughput", "topology"] {
        assert!(html.contains(&format!("id=\"panel-{panel}\"")), "{panel}");
    }
    assert!(html.contains("<script src=\"/console/console.js\"></script>"));
    assert!(html.contains("Content-Security-Policy"));
    let script = ask(&server, "/console/console.js");
    assert_eq!(script.content_type, "text/javascript; charset=utf-8");
    let style = ask(&server, "/console/console.css");
    assert_eq!(style.content_type, "text/css; charset=utf-8");
    // Nothing refers to another origin (the SVG namespace is a name, not
    // a request).
    for body in [html, text(&script), text(&style)] {
        let body = body.replace("http://www.w3.org/2000/svg", "");
        assert!(!body.contains("://"), "{body}");
    }
    assert_eq!(ask(&server, "/console/nothing.js").status, 404);
    let mut post = Request::get("/");
    post.method = "POST".into();
    assert_eq!(server.handle(&post).status, 405);
}

#[test]
fn the_panel_list_is_the_frameworks_unless_the_application_says() {
    let (server, _) = server();
    let panels = ask(&server, "/console/panels").body_json().unwrap();
    assert_eq!(panels["title"], "console-routes");
    assert_eq!(panels["instance"], "127.0.0.1:7");
    let ids = |panels: &Value| -> Vec<String> {
        panels["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&panels), ["instances", "throughput", "topology"]);
    assert_eq!(panels["panels"][1]["url"], "/console/throughput");
    assert_eq!(panels["panels"][2]["kind"], "topology");

    let added = server
        .clone()
        .console_panel(Panel::table("orders", "Orders", "/console/orders"));
    let panels = ask(&added, "/console/panels").body_json().unwrap();
    assert_eq!(
        ids(&panels),
        ["instances", "throughput", "topology", "orders"]
    );
    assert!(text(&ask(&added, "/")).contains("<h2>Orders</h2>"));

    let replaced = server.console(
        Console::new("Orders desk")
            .panel(Panel::table("orders", "Orders", "/console/orders"))
            .panel(Panel::not_applicable("topology", "Topology", "not here")),
    );
    let panels = ask(&replaced, "/console/panels").body_json().unwrap();
    assert_eq!(panels["title"], "Orders desk");
    assert_eq!(ids(&panels), ["orders", "topology"]);
    assert_eq!(panels["panels"][1]["kind"], "not-applicable");
    assert_eq!(panels["panels"][1]["note"], "not here");
}

#[test]
fn instances_mark_the_one_answering_and_say_its_state() {
    let (server, _) = server();
    let instances = ask(&server, "/console/instances").body_json().unwrap();
    assert_eq!(instances["answering"], "127.0.0.1:7");
    assert_eq!(instances["state"], "Created");
    assert_eq!(instances["note"], Value::Null);
    for instance in instances["instances"].as_array().unwrap() {
        let me = instance["instance"] == "127.0.0.1:7";
        assert_eq!(instance["answering"], me, "{instance}");
    }
}

#[test]
fn the_topology_is_served_as_text_drawing_and_json_once_given() {
    let (server, description) = server();
    for path in ["/topology", "/topology.svg", "/topology.json"] {
        let answer = ask(&server, path);
        assert_eq!(answer.status, 404, "{path}");
        let error = answer.body_json().unwrap()["error"].clone();
        assert!(
            error.as_str().unwrap().contains("QueryServer::topology"),
            "{error}"
        );
    }
    let server = server.topology(&description);
    let plain = ask(&server, "/topology");
    assert_eq!(plain.content_type, "text/plain; charset=utf-8");
    assert_eq!(text(&plain), description.to_string());
    let drawing = ask(&server, "/topology.svg");
    assert_eq!(
        (drawing.status, drawing.content_type.as_str()),
        (200, "image/svg+xml")
    );
    let svg = text(&drawing);
    for name in [
        "data-topic=\"words\"",
        "data-topic=\"word-counts\"",
        "data-store=\"counts\"",
    ] {
        assert!(svg.contains(name), "{name}: {svg}");
    }
    let json = ask(&server, "/topology.json").body_json().unwrap();
    let nodes = json["subtopologies"][0]["nodes"].as_array().unwrap();
    assert_eq!(nodes[0]["kind"], "Source");
    assert_eq!(nodes[0]["topics"], json!(["words"]));
    assert!(nodes.iter().any(|n| n["stores"] == json!(["counts"])));
    assert_eq!(json["globalStores"], json!([]));
}

#[test]
fn a_serving_layer_samples_throughput_every_second() {
    let (server, _) = server();
    let running = server.serve("127.0.0.1:0".parse().unwrap()).unwrap();
    let host = HostInfo {
        host: "127.0.0.1".into(),
        port: running.local_addr().port(),
    };
    let ask = |path: &str| -> Value {
        let answer = get(&host, path, Duration::from_secs(5), false).unwrap();
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.content_type.as_deref(), Some("application/json"));
        serde_json::from_slice(&answer.body).unwrap()
    };
    // Two samples make the first rate: about a second after start.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let samples = ask("/console/throughput");
        if samples["records"][0]["points"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
        {
            break samples;
        }
        assert!(Instant::now() < deadline, "no sample: {samples}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(samples["intervalMs"], 1000);
    assert_eq!(samples["windowMs"], 300_000);
    let records = samples["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{samples}");
    assert_eq!(records[0]["instance"], "127.0.0.1:7");
    // Never started: nothing processed, no lag.
    let point = &records[0]["points"][0];
    assert!(point[0].as_i64().unwrap() > 1_600_000_000_000, "{point}");
    assert_eq!(point[1], 0.0);
    assert_eq!(samples["lag"], json!([]));
    let local = ask("/console/throughput?local=true");
    assert_eq!(local["records"][0]["instance"], "127.0.0.1:7");
    assert_eq!(local["missing"], json!([]));
}
