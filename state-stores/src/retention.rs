//! The clock of a store that keeps data by time (window and session
//! stores): the latest time written, and what the retention keeps behind
//! it, as Kafka Streams' `observedStreamTime`.

/// The latest time a store has seen, and its retention.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetentionClock {
    retention: i64,
    observed: i64,
}

impl RetentionClock {
    /// A clock that has seen nothing, keeping `retention` ms (at least 1).
    pub(crate) fn new(retention: i64) -> Self {
        RetentionClock {
            retention: retention.max(1),
            observed: i64::MIN,
        }
    }

    pub(crate) fn retention(&self) -> i64 {
        self.retention
    }

    /// The earliest time still kept: a retention or more behind the
    /// latest time seen is gone.
    pub(crate) fn min_live(&self) -> i64 {
        self.observed
            .saturating_sub(self.retention)
            .saturating_add(1)
    }

    /// Moves the clock to `time` if it is later; whether `time` is kept.
    pub(crate) fn observe(&mut self, time: i64) -> bool {
        self.observed = self.observed.max(time);
        time >= self.min_live()
    }
}
