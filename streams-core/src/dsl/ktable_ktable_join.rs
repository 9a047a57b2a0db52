//! [`KTableKTableJoin`]: one side of a join of two tables.

use std::sync::Arc;

use super::Change;
use super::ktable::{Getter, ValueGetterSupplier};
use crate::processor::{ProcessResult, Processor, ProcessorContext};
use crate::record::Record;

/// A table-table join's joiner, for every kind of join: this table's
/// value and the other's, each `None` where that table has no row for the
/// key. `None` from it is no row: an inner join gives none unless both
/// values are there, a left join none without this table's, an outer join
/// none only when both are missing.
pub(crate) type TableJoiner<V, VO, VR> =
    Arc<dyn Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync>;

/// What one side makes of a value of its own table (`None`: no row) and
/// the other table's current value.
type SideJoin<VI, VL, VR> = Arc<dyn Fn(Option<&VI>, Option<&VL>) -> Option<VR> + Send + Sync>;

/// One side of a table-table join (Kafka Streams' `KTableKTableInnerJoin`,
/// `KTableKTableLeftJoin`, `KTableKTableRightJoin` and
/// `KTableKTableOuterJoin`): each change of this side's table is joined
/// with the other table's current value for the key, its new and its old
/// value alike, so the joined table's change carries both and a
/// downstream aggregation can subtract the old row. A change that joins
/// to no row before or after is dropped.
pub(crate) struct KTableKTableJoin<K, VI, VL, VR> {
    getter: ValueGetterSupplier<K, VL>,
    lookup: Option<Getter<K, VL>>,
    join: SideJoin<VI, VL, VR>,
}

impl<K, VI: 'static, VL: 'static, VR: 'static> KTableKTableJoin<K, VI, VL, VR> {
    /// The side of the table `join` was called on: its rows join the other
    /// table's value, read through `other`.
    pub(crate) fn this_side(
        other: ValueGetterSupplier<K, VL>,
        joiner: TableJoiner<VI, VL, VR>,
    ) -> Self {
        KTableKTableJoin {
            getter: other,
            lookup: None,
            join: joiner,
        }
    }

    /// The other table's side: its rows join this table's value, read
    /// through `this`; the joiner still takes this table's value first.
    pub(crate) fn other_side(
        this: ValueGetterSupplier<K, VL>,
        joiner: TableJoiner<VL, VI, VR>,
    ) -> Self {
        KTableKTableJoin {
            getter: this,
            lookup: None,
            join: Arc::new(move |other, this| joiner(this, other)),
        }
    }
}

impl<K, VI, VL, VR> Processor<K, Change<VI>, K, Change<VR>> for KTableKTableJoin<K, VI, VL, VR>
where
    K: Clone + Send + 'static,
    VI: Send + 'static,
    VL: Send + 'static,
    VR: Clone + Send + 'static,
{
    fn init(&mut self, ctx: &mut ProcessorContext<'_, K, Change<VR>>) -> ProcessResult {
        self.lookup = Some((self.getter.make)(&ctx.lookup())?);
        Ok(())
    }

    fn process(
        &mut self,
        r: Record<K, Change<VI>>,
        ctx: &mut ProcessorContext<'_, K, Change<VR>>,
    ) -> ProcessResult {
        let lookup = self.lookup.as_ref().expect("init makes the lookup");
        let other = lookup(&r.key)?;
        let change = Change {
            new: (self.join)(r.value.new.as_ref(), other.as_ref()),
            old: (self.join)(r.value.old.as_ref(), other.as_ref()),
        };
        if change.new.is_some() || change.old.is_some() {
            ctx.forward(r.with_value(change))?;
        }
        Ok(())
    }
}

/// An inner join's joiner: a row only where both tables have one.
pub(crate) fn inner_joiner<V, VO, VR>(
    joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
) -> TableJoiner<V, VO, VR> {
    Arc::new(move |v, o| Some(joiner(v?, o?)))
}

/// A left join's joiner: a row wherever this table has one.
pub(crate) fn left_joiner<V, VO, VR>(
    joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
) -> TableJoiner<V, VO, VR> {
    Arc::new(move |v, o| Some(joiner(v?, o)))
}

/// An outer join's joiner: a row wherever either table has one.
pub(crate) fn outer_joiner<V, VO, VR>(
    joiner: impl Fn(Option<&V>, Option<&VO>) -> VR + Send + Sync + 'static,
) -> TableJoiner<V, VO, VR> {
    Arc::new(move |v, o| (v.is_some() || o.is_some()).then(|| joiner(v, o)))
}

/// The joined table's value getter: this table's row joined with the
/// other's, as the two sides would have forwarded it.
pub(crate) fn joined_getter<K, V, VO, VR>(
    this: &ValueGetterSupplier<K, V>,
    other: &ValueGetterSupplier<K, VO>,
    joiner: TableJoiner<V, VO, VR>,
) -> ValueGetterSupplier<K, VR>
where
    K: 'static,
    V: 'static,
    VO: 'static,
    VR: 'static,
{
    let (this_make, other_make) = (this.make.clone(), other.make.clone());
    ValueGetterSupplier {
        stores: this.stores.iter().chain(&other.stores).cloned().collect(),
        make: Arc::new(move |lookup| {
            let (this, other) = (this_make(lookup)?, other_make(lookup)?);
            let joiner = joiner.clone();
            Ok(Box::new(move |key: &K| {
                let (v, o) = (this(key)?, other(key)?);
                Ok(joiner(v.as_ref(), o.as_ref()))
            }))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::test_support::{changes, store_writer};
    use crate::serde::{ChangeSerde, StringSerde};
    use crate::state::Stores;
    use crate::testing::{TestInputTopic, TopologyTestDriver};
    use crate::{StreamsConfig, Topology};

    /// Changes of one side's table arrive on `in`; the other table's rows
    /// are written to the store `other` from `other-in`.
    fn driver(
        make: impl Fn() -> KTableKTableJoin<String, String, String, String> + Send + Sync + 'static,
    ) -> TopologyTestDriver {
        let mut topology = Topology::new();
        topology
            .add_source("other-source", StringSerde, StringSerde, &["other-in"])
            .and_then(|t| {
                t.add_processor(
                    "other-writer",
                    store_writer::<String, String>("other"),
                    &["other-source"],
                )
            })
            .and_then(|t| {
                t.add_state_store(
                    Stores::key_value_store_builder(
                        Stores::in_memory_key_value_store("other"),
                        StringSerde,
                        StringSerde,
                    )
                    .with_logging_disabled(),
                    &["other-writer"],
                )
            })
            .and_then(|t| t.add_source("source", StringSerde, changes_of_strings(), &["in"]))
            .and_then(|t| t.add_processor("join", make, &["source"]))
            .and_then(|t| t.connect_processor_and_state_stores("join", &["other"]))
            .and_then(|t| t.add_sink("sink", "out", StringSerde, changes_of_strings(), &["join"]))
            .unwrap();
        TopologyTestDriver::new(topology, StreamsConfig::new("test")).unwrap()
    }

    fn changes_of_strings() -> ChangeSerde<String> {
        ChangeSerde::new(Arc::new(StringSerde))
    }

    /// "this+other", with "none" for a missing value.
    fn show(this: Option<&String>, other: Option<&String>) -> String {
        let show = |v: Option<&String>| v.map_or("none", String::as_str).to_owned();
        format!("{}+{}", show(this), show(other))
    }

    /// The joiner of an inner, left or outer join, all showing values alike.
    fn joiner(kind: &str) -> TableJoiner<String, String, String> {
        match kind {
            "inner" => inner_joiner(|a, b| show(Some(a), Some(b))),
            "left" => left_joiner(|a, b| show(Some(a), b)),
            _ => outer_joiner(show),
        }
    }

    fn pipe(
        input: &mut TestInputTopic<String, Change<String>>,
        new: Option<&str>,
        old: Option<&str>,
    ) {
        input.pipe_input(
            "k".into(),
            Change {
                new: new.map(str::to_owned),
                old: old.map(str::to_owned),
            },
        );
    }

    type Row = (String, Option<String>, Option<String>);

    fn row(new: Option<&str>, old: Option<&str>) -> Row {
        ("k".into(), new.map(str::to_owned), old.map(str::to_owned))
    }

    fn run(
        make: impl Fn() -> KTableKTableJoin<String, String, String, String> + Send + Sync + 'static,
    ) -> Vec<Row> {
        let driver = driver(make);
        let mut other = driver.create_input_topic("other-in", StringSerde, StringSerde);
        let mut input = driver.create_input_topic("in", StringSerde, changes_of_strings());
        // A row before the other table has one, then an update after.
        pipe(&mut input, Some("a"), None);
        other.pipe_input("k".into(), "x".into());
        pipe(&mut input, Some("b"), Some("a"));
        pipe(&mut input, None, Some("b"));
        changes::<String, String>(&driver)
    }

    /// The side of the table `join` was called on, of the join `kind`.
    fn this_side(kind: &'static str) -> Vec<Row> {
        run(move || KTableKTableJoin::this_side(ValueGetterSupplier::store("other"), joiner(kind)))
    }

    /// The other table's side, of the join `kind`. Here `in` carries the
    /// other table's changes, and the store holds this table's rows: "x"
    /// for k, from the second change on.
    fn other_side(kind: &'static str) -> Vec<Row> {
        run(move || KTableKTableJoin::other_side(ValueGetterSupplier::store("other"), joiner(kind)))
    }

    #[test]
    fn an_inner_joins_this_side_needs_a_row_on_the_other() {
        assert_eq!(
            this_side("inner"),
            [row(Some("b+x"), Some("a+x")), row(None, Some("b+x"))]
        );
    }

    #[test]
    fn a_left_joins_this_side_joins_none_where_the_other_has_no_row() {
        assert_eq!(
            this_side("left"),
            [
                row(Some("a+none"), None),
                row(Some("b+x"), Some("a+x")),
                row(None, Some("b+x"))
            ]
        );
    }

    #[test]
    fn an_outer_joins_this_side_keeps_the_other_row_when_its_own_leaves() {
        assert_eq!(
            this_side("outer"),
            [
                row(Some("a+none"), None),
                row(Some("b+x"), Some("a+x")),
                row(Some("none+x"), Some("b+x"))
            ]
        );
    }

    #[test]
    fn the_other_side_joins_this_tables_row_and_a_left_join_keeps_it_when_the_other_row_leaves() {
        assert_eq!(
            other_side("inner"),
            [row(Some("x+b"), Some("x+a")), row(None, Some("x+b"))]
        );
        assert_eq!(
            other_side("left"),
            [
                row(Some("x+b"), Some("x+a")),
                row(Some("x+none"), Some("x+b"))
            ]
        );
    }

    #[test]
    fn an_outer_joins_other_side_joins_none_where_this_table_has_no_row() {
        assert_eq!(
            other_side("outer"),
            [
                row(Some("none+a"), None),
                row(Some("x+b"), Some("x+a")),
                row(Some("x+none"), Some("x+b"))
            ]
        );
    }

    #[test]
    fn an_outer_join_deletes_the_row_when_both_tables_have_none() {
        let driver = driver(|| {
            KTableKTableJoin::this_side(ValueGetterSupplier::store("other"), joiner("outer"))
        });
        let mut input = driver.create_input_topic("in", StringSerde, changes_of_strings());
        pipe(&mut input, Some("a"), None);
        pipe(&mut input, None, Some("a"));
        assert_eq!(
            changes::<String, String>(&driver),
            [row(Some("a+none"), None), row(None, Some("a+none"))]
        );
    }
}

#[cfg(test)]
mod getter_tests {
    use super::*;
    use crate::dsl::kstream_ktable_join::KStreamKTableJoin;
    use crate::dsl::test_support::store_writer;
    use crate::serde::StringSerde;
    use crate::state::Stores;
    use crate::testing::TopologyTestDriver;
    use crate::{StreamsConfig, Topology};

    /// A stream looked up in the join (of `kind`) of the tables kept in
    /// stores `a` and `b`.
    fn lookups(kind: &str) -> Vec<(String, String)> {
        let show = |v: Option<&String>| v.map_or("none", String::as_str).to_owned();
        let joiner: TableJoiner<String, String, String> = match kind {
            "inner" => inner_joiner(move |a, b| format!("{a}+{b}")),
            "left" => left_joiner(move |a, b| format!("{a}+{}", show(b))),
            _ => outer_joiner(move |a, b| format!("{}+{}", show(a), show(b))),
        };
        let getter = joined_getter(
            &ValueGetterSupplier::<String, String>::store("a"),
            &ValueGetterSupplier::<String, String>::store("b"),
            joiner,
        );
        let mut topology = Topology::new();
        for table in ["a", "b"] {
            let writer = format!("{table}-writer");
            topology
                .add_source(
                    &format!("{table}-source"),
                    StringSerde,
                    StringSerde,
                    &[table],
                )
                .and_then(|t| {
                    t.add_processor(
                        &writer,
                        store_writer::<String, String>(table),
                        &[&format!("{table}-source")],
                    )
                })
                .and_then(|t| {
                    t.add_state_store(
                        Stores::key_value_store_builder(
                            Stores::in_memory_key_value_store(table),
                            StringSerde,
                            StringSerde,
                        )
                        .with_logging_disabled(),
                        &[&writer],
                    )
                })
                .unwrap();
        }
        let joiner = Arc::new(|v: &String, t: Option<&String>| {
            Some(format!("{v}={}", t.map_or("no row", String::as_str)))
        });
        topology
            .add_source("source", StringSerde, StringSerde, &["in"])
            .and_then(|t| {
                t.add_processor(
                    "lookup",
                    move || KStreamKTableJoin::new(getter.clone(), joiner.clone(), false),
                    &["source"],
                )
            })
            .and_then(|t| t.connect_processor_and_state_stores("lookup", &["a", "b"]))
            .and_then(|t| t.add_sink("sink", "out", StringSerde, StringSerde, &["lookup"]))
            .unwrap();
        let driver = TopologyTestDriver::new(topology, StreamsConfig::new("test")).unwrap();
        let mut a = driver.create_input_topic("a", StringSerde, StringSerde);
        let mut b = driver.create_input_topic("b", StringSerde, StringSerde);
        let mut input = driver.create_input_topic("in", StringSerde, StringSerde);
        a.pipe_input("only-a".into(), "1".into());
        a.pipe_input("both".into(), "2".into());
        b.pipe_input("both".into(), "3".into());
        b.pipe_input("only-b".into(), "4".into());
        for key in ["only-a", "both", "only-b"] {
            input.pipe_input(key.into(), "?".into());
        }
        driver
            .create_output_topic("out", StringSerde, StringSerde)
            .read_key_values_to_list()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_joined_tables_getter_answers_as_the_join_would() {
        assert_eq!(
            lookups("inner"),
            pairs(&[
                ("only-a", "?=no row"),
                ("both", "?=2+3"),
                ("only-b", "?=no row")
            ])
        );
        assert_eq!(
            lookups("left"),
            pairs(&[
                ("only-a", "?=1+none"),
                ("both", "?=2+3"),
                ("only-b", "?=no row")
            ])
        );
        assert_eq!(
            lookups("outer"),
            pairs(&[
                ("only-a", "?=1+none"),
                ("both", "?=2+3"),
                ("only-b", "?=none+4")
            ])
        );
    }
}
