//! The web console: one page, served at `GET /` by every instance, that
//! shows the application at a glance and refreshes itself every few
//! seconds (with `fetch`, without reloading). Its files are compiled into
//! the binary (`streams-http/console/`: plain HTML, CSS and JavaScript, no
//! build step) and it loads nothing from anywhere else.
//!
//! The page is a list of [`Panel`]s. A panel fetches its JSON (or SVG)
//! from its URL and draws it; when the fetch fails, it says so, with the
//! reason, instead of going blank. [`QueryServer`](crate::QueryServer)
//! gives every application three panels, fed by the framework:
//!
//! | panel | URL | what it shows |
//! |---|---|---|
//! | [`Panel::instances`] | `/console/instances` | every live instance, its partitions and stores, and which one answers |
//! | [`Panel::throughput`] | `/console/throughput` | records per second per instance, and consumer lag per partition, over the last five minutes |
//! | [`Panel::topology`] | `/topology.svg` | the topology as a diagram (see [`topology_svg`](crate::topology_svg)) |
//!
//! # Adding a panel
//!
//! An application adds a panel with
//! [`QueryServer::console_panel`](crate::QueryServer::console_panel) (or
//! lays out the whole page with [`QueryServer::console`](crate::QueryServer::console)),
//! and serves the panel's URL from one of its routes. A
//! [`Panel::table`] draws the [`TablePanel`] JSON its URL answers: one
//! or more tables of cells, rows optionally marked. A URL that answers
//! `{"notApplicable": "why"}` shows that the panel does not apply; one that
//! answers an error status shows the panel as unavailable, with the
//! answer's `error`.
//!
//! ```
//! use std::sync::Arc;
//! use streams_core::StreamsConfig;
//! use streams_http::console::{Cell, Panel, Row, Table, TablePanel};
//! use streams_http::{QueryServer, Request, Response};
//! use streams_kafka::KafkaStreams;
//!
//! # let topology = streams_core::StreamsBuilder::new().build()?;
//! # let config = StreamsConfig::new("app").set("bootstrap.servers", "127.0.0.1:9092");
//! let streams = Arc::new(KafkaStreams::new(topology, config)?);
//! let server = QueryServer::new(streams)
//!     .console_panel(Panel::table("orders", "Open orders", "/console/orders"))
//!     .route(|request, _| {
//!         (request.path == "/console/orders").then(|| {
//!             let table = Table::new(["order", "placed", "state"])
//!                 .row(Row::new([Cell::from("o-17"), Cell::time(1_700_000_000_000), "paid".into()]))
//!                 .row(Row::new(["o-18".into(), Cell::time(1_700_000_060_000), "refused".into()]).bad());
//!             TablePanel::new().table(table).response()
//!         })
//!     });
//! let page = server.handle(&Request::get("/"));
//! assert!(String::from_utf8(page.body).unwrap().contains("Open orders"));
//! let orders = server.handle(&Request::get("/console/orders")).body_json().unwrap();
//! assert_eq!(orders["tables"][0]["rows"][1]["mark"], "bad");
//! # Ok::<(), streams_core::StreamsError>(())
//! ```
//!
//! An application without a streams client serves the console from an
//! [`AppServer`](crate::AppServer) with
//! [`AppServer::console`](crate::AppServer::console): the page and its
//! files come from the layer, every panel's URL from the application
//! (`/console/instances` in the format below, say), and
//! `/console/throughput` from the layer when the console has a
//! [`Console::throughput_source`].
//!
//! # The JSON the panels read
//!
//! - `GET /console/panels`: `{"title", "instance", "panels": [{"id",
//!   "title", "kind", "url", "note", "wide"}]}`: the page's panels, in order
//!   (`kind` is `instances`, `throughput`, `topology`, `table` or
//!   `not-applicable`).
//! - `GET /console/instances`: `{"answering": "host:port", "state",
//!   "reason", "instances": [{"instance": "host:port", "host", "port",
//!   "storeNames", "partitions": [{"topic", "partition"}], "answering":
//!   true}], "note"}`: every live instance from the registry (as
//!   `/state/instances`), this one marked.
//! - `GET /console/throughput`: `{"intervalMs", "windowMs", "records":
//!   [{"instance", "points": [[ms, perSecond], ...]}], "lag": [{"instance",
//!   "partition": "topic-partition", "points": [[ms, lag], ...]}],
//!   "missing": [{"instance", "error"}]}`: what each live instance sampled
//!   every second over the last five minutes (`?local=true`: this
//!   instance's only). Records per second are averaged over three seconds.
//! - A table panel's URL: [`TablePanel`]'s form, `{"tables": [{"title",
//!   "columns", "rows": [{"cells", "mark"}], "empty"}], "note",
//!   "warning"}`, where a cell is a string, a number, `null`, or `{"time":
//!   ms}` (shown in the browser's time zone), `mark` is `ok`, `warn`,
//!   `bad` or absent, and `warning` says what part of the panel is
//!   unavailable.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::{Value, json};

use crate::Response;
use crate::topology::escape;

/// The page.
const INDEX_HTML: &str = include_str!("../console/index.html");
/// Its script: fetches each panel's URL and draws it.
const CONSOLE_JS: &str = include_str!("../console/console.js");
/// Its style sheet.
const CONSOLE_CSS: &str = include_str!("../console/console.css");

/// How often the layer samples throughput and lag.
pub const SAMPLE_INTERVAL_MS: i64 = 1_000;
/// Samples kept: five minutes' worth.
pub const SAMPLES_KEPT: usize = 300;
/// Records per second are averaged over this long.
const RATE_WINDOW_MS: i64 = 3_000;

/// How a panel draws what its URL answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PanelKind {
    /// `/console/instances`' JSON, as a table of instances.
    Instances,
    /// `/console/throughput`'s JSON, as two line charts.
    Throughput,
    /// An SVG drawing, inlined.
    Topology,
    /// [`TablePanel`] JSON, as tables.
    Table,
    /// No URL: the panel's note says why it does not apply.
    NotApplicable,
}

/// One panel of the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Panel {
    /// Its id, unique on the page (the element is `#panel-<id>`).
    pub id: String,
    /// Its heading.
    pub title: String,
    /// How it draws its URL's answer.
    pub kind: PanelKind,
    /// Where its data comes from (on the same instance); none for
    /// [`PanelKind::NotApplicable`].
    pub url: Option<String>,
    /// A line shown under the heading.
    pub note: Option<String>,
    /// Whether it takes the page's whole width.
    pub wide: bool,
}

impl Panel {
    fn new(id: &str, title: &str, kind: PanelKind, url: Option<&str>) -> Panel {
        Panel {
            id: id.to_owned(),
            title: title.to_owned(),
            kind,
            url: url.map(str::to_owned),
            note: None,
            wide: false,
        }
    }

    /// The framework's instances panel (`/console/instances`).
    pub fn instances() -> Panel {
        Panel::new(
            "instances",
            "Instances",
            PanelKind::Instances,
            Some("/console/instances"),
        )
    }

    /// The framework's throughput and lag charts (`/console/throughput`).
    pub fn throughput() -> Panel {
        Panel::new(
            "throughput",
            "Throughput and lag",
            PanelKind::Throughput,
            Some("/console/throughput"),
        )
        .wide()
    }

    /// The framework's topology diagram (`/topology.svg`).
    pub fn topology() -> Panel {
        Panel::new(
            "topology",
            "Topology",
            PanelKind::Topology,
            Some("/topology.svg"),
        )
        .wide()
        .note("the same as GET /topology (text) and /topology.json")
    }

    /// A panel of tables, from [`TablePanel`] JSON at `url`.
    pub fn table(id: &str, title: &str, url: &str) -> Panel {
        Panel::new(id, title, PanelKind::Table, Some(url))
    }

    /// A panel that says it does not apply here, and why.
    pub fn not_applicable(id: &str, title: &str, why: &str) -> Panel {
        Panel::new(id, title, PanelKind::NotApplicable, None).note(why)
    }

    /// The panel with a note under its heading.
    pub fn note(mut self, note: &str) -> Panel {
        self.note = Some(note.to_owned());
        self
    }

    /// The panel across the page's whole width.
    pub fn wide(mut self) -> Panel {
        self.wide = true;
        self
    }
}

/// What one sample of throughput and lag reads: the records processed so
/// far (a count that only grows) and the consumer lag per partition, keyed
/// `topic-partition`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    /// Records processed since start.
    pub records: u64,
    /// Consumer lag per partition (`topic-partition`).
    pub lag: BTreeMap<String, i64>,
}

/// Where an [`AppServer`](crate::AppServer)'s console takes its samples
/// from. It runs on the server's I/O thread once a second, so it must be
/// quick (read counters, take no slow lock).
pub type SampleSource = Arc<dyn Fn() -> Sample + Send + Sync>;

/// The console's page and panels.
#[derive(Clone, Default)]
pub struct Console {
    title: Option<String>,
    pub(crate) panels: Vec<Panel>,
    pub(crate) throughput: Option<SampleSource>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("title", &self.title)
            .field("panels", &self.panels)
            .finish_non_exhaustive()
    }
}

impl Console {
    /// A console titled `title`, with no panels yet.
    pub fn new(title: &str) -> Console {
        Console {
            title: Some(title.to_owned()),
            ..Console::default()
        }
    }

    /// What a [`QueryServer`](crate::QueryServer) shows unless told
    /// otherwise: instances, throughput and lag, topology.
    pub fn framework() -> Console {
        Console::default()
            .panel(Panel::instances())
            .panel(Panel::throughput())
            .panel(Panel::topology())
    }

    /// Adds `panel` after the others.
    pub fn panel(mut self, panel: Panel) -> Console {
        self.panels.push(panel);
        self
    }

    /// For an [`AppServer`](crate::AppServer): samples `source` every
    /// second and answers `/console/throughput` from what it gave (a
    /// [`QueryServer`](crate::QueryServer) samples its streams client).
    pub fn throughput_source(
        mut self,
        source: impl Fn() -> Sample + Send + Sync + 'static,
    ) -> Self {
        self.throughput = Some(Arc::new(source));
        self
    }

    /// The panels, in order.
    pub fn panels(&self) -> &[Panel] {
        &self.panels
    }

    /// The title, or `fallback` when none was given.
    fn title_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.title.as_deref().unwrap_or(fallback)
    }

    /// `GET /console/panels`.
    pub(crate) fn panels_json(&self, fallback_title: &str, instance: Option<String>) -> Value {
        json!({
            "title": self.title_or(fallback_title),
            "instance": instance,
            "panels": self.panels,
        })
    }

    /// `GET /`: the page, its panels' frames written in, so that even a
    /// browser whose first requests fail shows what is there.
    pub(crate) fn page(&self, fallback_title: &str, instance: Option<&str>) -> Response {
        let mut sections = String::new();
        for panel in &self.panels {
            let kind = serde_json::to_value(panel.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            sections.push_str(&format!(
                "<section class=\"panel{wide}\" id=\"panel-{id}\" data-kind=\"{kind}\" data-url=\"{url}\">\
                 <h2>{title}</h2>{note}<div class=\"state\" role=\"status\"></div>\
                 <div class=\"body\">{body}</div></section>\n",
                wide = if panel.wide { " wide" } else { "" },
                id = escape(&panel.id),
                url = escape(panel.url.as_deref().unwrap_or("")),
                title = escape(&panel.title),
                note = panel
                    .note
                    .as_deref()
                    .map(|n| format!("<p class=\"note\">{}</p>", escape(n)))
                    .unwrap_or_default(),
                body = match panel.kind {
                    PanelKind::NotApplicable => "<p class=\"na\">Does not apply here.</p>",
                    _ => "<p class=\"loading\">Loading…</p>",
                },
            ));
        }
        let title = escape(self.title_or(fallback_title));
        let instance = escape(instance.unwrap_or(""));
        let html = fill(
            INDEX_HTML,
            &[
                ("title", &title),
                ("instance", &instance),
                ("panels", &sections),
            ],
        );
        Response::text(200, "text/html; charset=utf-8", html)
    }
}

/// `template` with each `{{name}}` of `values` replaced, in one pass: what
/// a value holds (a title that reads `{{panels}}`) is never filled in
/// itself. An unknown placeholder is left as it is.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out =
        String::with_capacity(template.len() + values.iter().map(|v| v.1.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let filled = after.find("}}").and_then(|end| {
            let value = values.iter().find(|(name, _)| *name == &after[..end])?.1;
            Some((value, &after[end + 2..]))
        });
        match filled {
            Some((value, tail)) => {
                out.push_str(value);
                rest = tail;
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The console's static files, by path.
pub(crate) fn asset(path: &str) -> Option<Response> {
    let (content_type, body) = match path {
        "/console/console.js" => ("text/javascript; charset=utf-8", CONSOLE_JS),
        "/console/console.css" => ("text/css; charset=utf-8", CONSOLE_CSS),
        _ => return None,
    };
    Some(Response::text(200, content_type, body.to_owned()))
}

/// A cell of a [`Table`]: text, a number, nothing, or a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Cell {
    /// Shown as it is.
    Text(String),
    /// A number, shown as it is.
    Number(f64),
    /// Shown as a dash.
    Empty,
    /// A time in ms since the epoch, shown in the browser's time zone.
    Time {
        /// The time.
        time: i64,
    },
}

impl Cell {
    /// A time cell: `ms` since the epoch.
    pub fn time(ms: i64) -> Cell {
        Cell::Time { time: ms }
    }
}

impl From<&str> for Cell {
    fn from(text: &str) -> Cell {
        Cell::Text(text.to_owned())
    }
}

impl From<String> for Cell {
    fn from(text: String) -> Cell {
        Cell::Text(text)
    }
}

impl From<f64> for Cell {
    fn from(number: f64) -> Cell {
        Cell::Number(number)
    }
}

impl From<u64> for Cell {
    fn from(number: u64) -> Cell {
        Cell::Number(number as f64)
    }
}

impl From<i64> for Cell {
    fn from(number: i64) -> Cell {
        Cell::Number(number as f64)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(value: Option<T>) -> Cell {
        value.map_or(Cell::Empty, Into::into)
    }
}

/// How a row is marked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    /// Good news.
    Ok,
    /// Worth a look.
    Warn,
    /// Something failed or was refused.
    Bad,
}

/// A row of a [`Table`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Its cells, one per column.
    pub cells: Vec<Cell>,
    /// How it is marked, if at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mark: Option<Mark>,
}

impl Row {
    /// A row of `cells`, unmarked.
    pub fn new(cells: impl IntoIterator<Item = Cell>) -> Row {
        Row {
            cells: cells.into_iter().collect(),
            mark: None,
        }
    }

    /// The row marked as something that failed or was refused.
    pub fn bad(self) -> Row {
        self.marked(Mark::Bad)
    }

    /// The row marked `mark`.
    pub fn marked(mut self, mark: Mark) -> Row {
        self.mark = Some(mark);
        self
    }
}

/// A table of a [`TablePanel`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// A caption, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Column headings.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
    /// Shown instead when there are no rows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty: Option<String>,
}

impl Table {
    /// A table with these column headings and no rows.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Table {
        Table {
            title: None,
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
            empty: None,
        }
    }

    /// The table with a caption.
    pub fn titled(mut self, title: &str) -> Table {
        self.title = Some(title.to_owned());
        self
    }

    /// The table with `text` shown when it has no rows.
    pub fn when_empty(mut self, text: &str) -> Table {
        self.empty = Some(text.to_owned());
        self
    }

    /// Adds a row.
    pub fn row(mut self, row: Row) -> Table {
        self.rows.push(row);
        self
    }
}

/// What a [`Panel::table`]'s URL answers: tables and a note.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TablePanel {
    /// The tables, top to bottom.
    pub tables: Vec<Table>,
    /// A line under them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What part of the panel is unavailable, and why: shown above the
    /// tables, as the page shows a panel whose URL failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl TablePanel {
    /// No tables yet.
    pub fn new() -> TablePanel {
        TablePanel::default()
    }

    /// Adds a table.
    pub fn table(mut self, table: Table) -> TablePanel {
        self.tables.push(table);
        self
    }

    /// Sets the note.
    pub fn note(mut self, note: impl Into<String>) -> TablePanel {
        self.note = Some(note.into());
        self
    }

    /// Sets the warning: what part of the panel is unavailable, and why.
    pub fn warning(mut self, warning: impl Into<String>) -> TablePanel {
        self.warning = Some(warning.into());
        self
    }

    /// The panel as a 200 JSON answer.
    pub fn response(&self) -> Response {
        Response::json(200, self)
    }
}

/// A panel URL's answer saying the panel does not apply, and why.
pub fn not_applicable(why: &str) -> Response {
    Response::json(200, &json!({ "notApplicable": why }))
}

struct Point {
    at: i64,
    records: u64,
    lag: BTreeMap<String, i64>,
}

/// The last [`SAMPLES_KEPT`] samples of one instance, a bounded ring.
#[derive(Default)]
pub(crate) struct History {
    points: Mutex<VecDeque<Point>>,
}

impl History {
    /// Adds `sample`, taken at `at` (ms since the epoch).
    pub(crate) fn push(&self, at: i64, sample: Sample) {
        let mut points = self.points.lock().unwrap_or_else(PoisonError::into_inner);
        if points.len() == SAMPLES_KEPT {
            points.pop_front();
        }
        points.push_back(Point {
            at,
            records: sample.records,
            lag: sample.lag,
        });
    }

    /// This instance's series, as `/console/throughput?local=true` gives
    /// them.
    pub(crate) fn json(&self, instance: &str) -> Value {
        let points = self.points.lock().unwrap_or_else(PoisonError::into_inner);
        let mut rates = Vec::new();
        let mut start = 0;
        for (i, point) in points.iter().enumerate().skip(1) {
            while point.at - points[start].at > RATE_WINDOW_MS && start + 1 < i {
                start += 1;
            }
            let first = &points[start];
            let seconds = (point.at - first.at) as f64 / 1e3;
            if seconds > 0.0 {
                // A count that went down (a replaced thread starts over)
                // is no negative rate.
                let rate = point.records.saturating_sub(first.records) as f64 / seconds;
                rates.push(json!([point.at, (rate * 10.0).round() / 10.0]));
            }
        }
        let partitions: BTreeSet<&String> = points.iter().flat_map(|p| p.lag.keys()).collect();
        let lag: Vec<Value> = partitions
            .into_iter()
            .map(|partition| {
                let series: Vec<Value> = points
                    .iter()
                    .filter_map(|p| p.lag.get(partition).map(|lag| json!([p.at, lag])))
                    .collect();
                json!({ "instance": instance, "partition": partition, "points": series })
            })
            .collect();
        json!({
            "intervalMs": SAMPLE_INTERVAL_MS,
            "windowMs": SAMPLE_INTERVAL_MS * SAMPLES_KEPT as i64,
            "records": [{ "instance": instance, "points": rates }],
            "lag": lag,
            "missing": [],
        })
    }
}

/// Merges the `?local=true` answers of several instances into one.
pub(crate) fn merge_throughput(answers: &[Value], missing: Value) -> Value {
    let mut records = Vec::new();
    let mut lag = Vec::new();
    for answer in answers {
        for (key, into) in [("records", &mut records), ("lag", &mut lag)] {
            if let Some(series) = answer[key].as_array() {
                into.extend(series.iter().cloned());
            }
        }
    }
    json!({
        "intervalMs": SAMPLE_INTERVAL_MS,
        "windowMs": SAMPLE_INTERVAL_MS * SAMPLES_KEPT as i64,
        "records": records,
        "lag": lag,
        "missing": missing,
    })
}

/// Now, in ms since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(records: u64, lag: &[(&str, i64)]) -> Sample {
        Sample {
            records,
            lag: lag.iter().map(|(p, l)| (p.to_string(), *l)).collect(),
        }
    }

    #[test]
    fn rates_are_averaged_over_three_seconds_and_never_negative() {
        let history = History::default();
        history.push(10_000, sample(0, &[("in-0", 5)]));
        history.push(11_000, sample(100, &[("in-0", 3)]));
        history.push(12_000, sample(300, &[("in-0", 0), ("in-1", 9)]));
        history.push(13_000, sample(300, &[]));
        history.push(14_000, sample(600, &[]));
        // A replaced thread's count starts over.
        history.push(15_000, sample(10, &[]));
        let json = history.json("h:1");
        let points = &json["records"][0]["points"];
        assert_eq!(
            points,
            &json!([
                [11_000, 100.0],
                [12_000, 150.0],
                [13_000, 100.0],
                [14_000, 166.7],
                [15_000, 0.0]
            ])
        );
        assert_eq!(json["records"][0]["instance"], "h:1");
        let lag = json["lag"].as_array().unwrap();
        assert_eq!(lag.len(), 2);
        assert_eq!(lag[0]["partition"], "in-0");
        assert_eq!(
            lag[0]["points"],
            json!([[10_000, 5], [11_000, 3], [12_000, 0]])
        );
        assert_eq!(lag[1]["points"], json!([[12_000, 9]]));
    }

    #[test]
    fn the_ring_keeps_five_minutes() {
        let history = History::default();
        for i in 0..SAMPLES_KEPT as i64 + 50 {
            history.push(i * 1000, sample(i as u64, &[]));
        }
        let json = history.json("h:1");
        let points = json["records"][0]["points"].as_array().unwrap();
        assert_eq!(points.len(), SAMPLES_KEPT - 1);
        assert_eq!(points[0][0], 51_000);
        assert_eq!(points[0][1], 1.0);
    }

    #[test]
    fn answers_merge_and_missing_instances_are_kept() {
        let a = History::default();
        a.push(0, sample(0, &[("in-0", 1)]));
        a.push(1000, sample(5, &[("in-0", 1)]));
        let b = History::default();
        b.push(0, sample(0, &[("in-1", 2)]));
        let missing = json!([{ "instance": "h:3", "error": "down" }]);
        let merged = merge_throughput(&[a.json("h:1"), b.json("h:2")], missing.clone());
        assert_eq!(merged["records"].as_array().unwrap().len(), 2);
        assert_eq!(merged["records"][0]["points"], json!([[1000, 5.0]]));
        assert_eq!(merged["records"][1]["points"], json!([]));
        let partitions: Vec<&str> = merged["lag"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["partition"].as_str().unwrap())
            .collect();
        assert_eq!(partitions, ["in-0", "in-1"]);
        assert_eq!(merged["missing"], missing);
    }

    #[test]
    fn tables_serialize_in_the_documented_form() {
        let panel = TablePanel::new()
            .table(
                Table::new(["a", "b", "c", "d"])
                    .titled("T")
                    .row(Row::new([
                        Cell::from("x"),
                        Cell::from(2u64),
                        Cell::time(7),
                        Cell::from(None::<f64>),
                    ]))
                    .row(Row::new([Cell::from(1.5)]).bad()),
            )
            .table(Table::new(["only"]).when_empty("nothing yet"))
            .note("n")
            .warning("w");
        let json = serde_json::to_value(&panel).unwrap();
        assert_eq!(
            json,
            json!({
                "tables": [
                    {"title": "T", "columns": ["a", "b", "c", "d"], "rows": [
                        {"cells": ["x", 2.0, {"time": 7}, null]},
                        {"cells": [1.5], "mark": "bad"}
                    ]},
                    {"columns": ["only"], "rows": [], "empty": "nothing yet"}
                ],
                "note": "n",
                "warning": "w"
            })
        );
        assert_eq!(
            not_applicable("why").body_json(),
            Some(json!({"notApplicable": "why"}))
        );
    }

    #[test]
    fn the_page_frames_every_panel_and_escapes_what_it_writes() {
        let console = Console::new("<app>")
            .panel(Panel::instances())
            .panel(Panel::table("t", "A & B", "/x?a=1&b=2"))
            .panel(Panel::not_applicable(
                "topology",
                "Topology",
                "no topology here",
            ));
        let page = console.page("fallback", Some("h:1"));
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        let html = String::from_utf8(page.body).unwrap();
        assert!(
            html.contains("<title>&lt;app&gt; console</title>"),
            "{html}"
        );
        assert!(html.contains("id=\"panel-instances\" data-kind=\"instances\""));
        assert!(html.contains("data-url=\"/x?a=1&amp;b=2\""));
        assert!(html.contains("<h2>A &amp; B</h2>"));
        assert!(html.contains("data-kind=\"not-applicable\""));
        assert!(html.contains("no topology here"));
        assert!(!html.contains("{{"), "every placeholder filled");
        // A title that reads like a placeholder is written as it is.
        let html = Console::new("{{panels}} of {{instance}}")
            .panel(Panel::instances())
            .page("fallback", Some("h:1"))
            .body;
        let html = String::from_utf8(html).unwrap();
        assert!(html.contains("<title>{{panels}} of {{instance}} console</title>"));
        assert_eq!(html.matches("id=\"panel-instances\"").count(), 1);
        assert_eq!(
            fill("a {{x}} {{y}} {{", &[("x", "{{y}}")]),
            "a {{y}} {{y}} {{"
        );
        let panels = console.panels_json("fallback", None);
        assert_eq!(panels["title"], "<app>");
        assert_eq!(panels["panels"][1]["kind"], "table");
        assert_eq!(panels["panels"][2]["url"], Value::Null);
        assert!(asset("/console/console.js").is_some());
        assert!(asset("/console/nothing").is_none());
    }
}
