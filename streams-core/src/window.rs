//! Time windows, as Kafka Streams defines them: the windows a record falls
//! into ([`TimeWindows`], [`SlidingWindows`], [`SessionWindows`],
//! [`JoinWindows`]), a key with its window ([`Windowed`]), and the windowed
//! serdes with Kafka Streams' byte layouts, so that a windowed output topic
//! reads the same as one a JVM application writes.
//!
//! Times are milliseconds since the epoch. A time window's end is
//! exclusive (`[start, end)`); a session's end is its last record's time,
//! inclusive. A window is closed, and a record for it late, once stream
//! time has reached its end plus the grace period.

use std::time::Duration;

use crate::error::{Result, StreamsError};
use crate::serde::{Serde, SerdeError, SerdeRef};

/// A window: from `start` to `end`, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Window {
    /// The first ms of the window.
    pub start: i64,
    /// The end: exclusive for a time window, inclusive for a session.
    pub end: i64,
}

impl Window {
    /// The window from `start` to `end`.
    pub fn new(start: i64, end: i64) -> Self {
        Window { start, end }
    }
}

/// A key with the window it is aggregated in (Kafka Streams' `Windowed`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Windowed<K> {
    /// The record's key.
    pub key: K,
    /// Its window.
    pub window: Window,
}

impl<K> Windowed<K> {
    /// `key` in `window`.
    pub fn new(key: K, window: Window) -> Self {
        Windowed { key, window }
    }
}

/// `duration` in ms, or an error naming `what` when it does not fit.
pub(crate) fn millis(what: &str, duration: Duration) -> Result<i64> {
    i64::try_from(duration.as_millis())
        .map_err(|_| StreamsError::Config(format!("{what} is too large: {duration:?}")))
}

fn positive(what: &str, duration: Duration) -> Result<i64> {
    match millis(what, duration)? {
        0 => Err(StreamsError::Config(format!(
            "{what} must be at least 1 ms, not {duration:?}"
        ))),
        ms => Ok(ms),
    }
}

/// Whether a window ending at `end` is closed at stream time `stream_time`
/// with grace `grace`: a record for it is then late, and its final result
/// may be emitted.
pub fn is_closed(end: i64, grace: i64, stream_time: i64) -> bool {
    end.saturating_add(grace) <= stream_time
}

/// Fixed-size windows: tumbling (the advance is the size) or hopping
/// (a smaller advance, so windows overlap), as Kafka Streams'
/// `TimeWindows`. Windows are aligned to the epoch.
///
/// ```
/// use std::time::Duration;
/// use streams_core::window::{TimeWindows, Window};
///
/// let minute = Duration::from_secs(60);
/// let tumbling = TimeWindows::of_size_and_grace(minute, Duration::from_secs(10))?;
/// assert_eq!(tumbling.windows_for(61_000), [Window::new(60_000, 120_000)]);
///
/// let hopping = TimeWindows::of_size_with_no_grace(minute)?.advance_by(Duration::from_secs(30))?;
/// assert_eq!(
///     hopping.windows_for(61_000),
///     [Window::new(30_000, 90_000), Window::new(60_000, 120_000)]
/// );
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    size: i64,
    advance: i64,
    grace: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size` that accept no late records.
    pub fn of_size_with_no_grace(size: Duration) -> Result<Self> {
        Self::of_size_and_grace(size, Duration::ZERO)
    }

    /// Tumbling windows of `size` that accept records up to `grace` after
    /// their end (in stream time).
    pub fn of_size_and_grace(size: Duration, grace: Duration) -> Result<Self> {
        let size = positive("a window's size", size)?;
        Ok(TimeWindows {
            size,
            advance: size,
            grace: millis("a window's grace", grace)?,
        })
    }

    /// Hopping windows: a new window every `advance`, which must be at
    /// least 1 ms and at most the size.
    pub fn advance_by(self, advance: Duration) -> Result<Self> {
        let advance = positive("a window's advance", advance)?;
        if advance > self.size {
            return Err(StreamsError::Config(format!(
                "a window's advance ({advance} ms) must not exceed its size ({} ms)",
                self.size
            )));
        }
        Ok(TimeWindows { advance, ..self })
    }

    /// The window size in ms.
    pub fn size(&self) -> i64 {
        self.size
    }

    /// The advance in ms.
    pub fn advance(&self) -> i64 {
        self.advance
    }

    /// The grace period in ms.
    pub fn grace(&self) -> i64 {
        self.grace
    }

    /// The windows a record at `timestamp` falls into, earliest first.
    pub fn windows_for(&self, timestamp: i64) -> Vec<Window> {
        let first = timestamp
            .saturating_sub(self.size)
            .saturating_add(self.advance)
            .max(0)
            / self.advance
            * self.advance;
        // Checked steps: near i64::MAX a start would wrap and never pass
        // the timestamp; ends saturate.
        std::iter::successors(Some(first), |start| start.checked_add(self.advance))
            .take_while(|&start| start <= timestamp)
            .map(|start| Window::new(start, start.saturating_add(self.size)))
            .collect()
    }
}

/// Windows of a fixed time difference that slide with the records, as
/// Kafka Streams' `SlidingWindows`: two records fall into one window when
/// their timestamps differ by at most the difference; a window is
/// `[start, start + difference]`, both ends inclusive.
///
/// ```
/// use std::time::Duration;
/// use streams_core::window::SlidingWindows;
///
/// let windows = SlidingWindows::of_time_difference_and_grace(
///     Duration::from_secs(10),
///     Duration::from_secs(30),
/// )?;
/// assert_eq!((windows.time_difference(), windows.grace()), (10_000, 30_000));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    difference: i64,
    grace: i64,
}

impl SlidingWindows {
    /// Windows of `difference` that accept no late records.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Result<Self> {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Windows of `difference` that accept records up to `grace` late.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Result<Self> {
        Ok(SlidingWindows {
            difference: positive("a sliding window's time difference", difference)?,
            grace: millis("a window's grace", grace)?,
        })
    }

    /// The time difference in ms.
    pub fn time_difference(&self) -> i64 {
        self.difference
    }

    /// The grace period in ms.
    pub fn grace(&self) -> i64 {
        self.grace
    }
}

/// Sessions: a key's records no more than an inactivity gap apart, as
/// Kafka Streams' `SessionWindows`. A record that bridges two sessions
/// merges them.
///
/// ```
/// use std::time::Duration;
/// use streams_core::window::{SessionWindows, Window};
///
/// let sessions = SessionWindows::of_inactivity_gap_with_no_grace(Duration::from_secs(300))?;
/// // A record at 10:00 extends a session that ended at 09:58.
/// assert!(sessions.reaches(Window::new(0, 120_000), 300_000 + 120_000));
/// assert!(!sessions.reaches(Window::new(0, 120_000), 300_000 + 120_001));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    gap: i64,
    grace: i64,
}

impl SessionWindows {
    /// Sessions closed by `gap` of inactivity that accept no late records.
    pub fn of_inactivity_gap_with_no_grace(gap: Duration) -> Result<Self> {
        Self::of_inactivity_gap_and_grace(gap, Duration::ZERO)
    }

    /// Sessions closed by `gap` of inactivity that accept records up to
    /// `grace` late.
    pub fn of_inactivity_gap_and_grace(gap: Duration, grace: Duration) -> Result<Self> {
        Ok(SessionWindows {
            gap: positive("a session's inactivity gap", gap)?,
            grace: millis("a window's grace", grace)?,
        })
    }

    /// The inactivity gap in ms.
    pub fn inactivity_gap(&self) -> i64 {
        self.gap
    }

    /// The grace period in ms.
    pub fn grace(&self) -> i64 {
        self.grace
    }

    /// Whether a record at `timestamp` belongs to `session` (it falls
    /// within the gap of either end), and so extends or merges it.
    pub fn reaches(&self, session: Window, timestamp: i64) -> bool {
        timestamp >= session.start.saturating_sub(self.gap)
            && timestamp <= session.end.saturating_add(self.gap)
    }
}

/// How far apart two records of a stream-stream join may be, as Kafka
/// Streams' `JoinWindows`: a record of this stream at `t` joins records of
/// the other from `t - before` to `t + after`.
///
/// ```
/// use std::time::Duration;
/// use streams_core::window::JoinWindows;
///
/// let windows = JoinWindows::of_time_difference_with_no_grace(Duration::from_secs(5))?
///     .after(Duration::from_secs(2))?;
/// assert_eq!((windows.before_ms(), windows.after_ms()), (5_000, 2_000));
/// assert!(windows.joins(10_000, 6_000) && !windows.joins(10_000, 12_001));
/// # Ok::<(), streams_core::StreamsError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    before: i64,
    after: i64,
    grace: i64,
}

impl JoinWindows {
    /// Records at most `difference` apart join; no late records.
    pub fn of_time_difference_with_no_grace(difference: Duration) -> Result<Self> {
        Self::of_time_difference_and_grace(difference, Duration::ZERO)
    }

    /// Records at most `difference` apart join; records up to `grace`
    /// late still do.
    pub fn of_time_difference_and_grace(difference: Duration, grace: Duration) -> Result<Self> {
        let difference = millis("a join window's time difference", difference)?;
        Ok(JoinWindows {
            before: difference,
            after: difference,
            grace: millis("a window's grace", grace)?,
        })
    }

    /// Sets how much earlier the other stream's records may be.
    pub fn before(self, before: Duration) -> Result<Self> {
        Ok(JoinWindows {
            before: millis("a join window's before", before)?,
            ..self
        })
    }

    /// Sets how much later the other stream's records may be.
    pub fn after(self, after: Duration) -> Result<Self> {
        Ok(JoinWindows {
            after: millis("a join window's after", after)?,
            ..self
        })
    }

    /// How much earlier, in ms.
    pub fn before_ms(&self) -> i64 {
        self.before
    }

    /// How much later, in ms.
    pub fn after_ms(&self) -> i64 {
        self.after
    }

    /// The grace period in ms.
    pub fn grace(&self) -> i64 {
        self.grace
    }

    /// Whether a record of this stream at `this` joins one of the other at
    /// `other`.
    pub fn joins(&self, this: i64, other: i64) -> bool {
        other >= this.saturating_sub(self.before) && other <= this.saturating_add(self.after)
    }
}

/// The key's bytes and the `N` times a windowed key ends with.
fn split_times<const N: usize>(bytes: &[u8]) -> std::result::Result<(&[u8], [i64; N]), SerdeError> {
    state_stores::split_trailing_times::<N>(bytes)
        .ok_or_else(|| SerdeError::new(format!("a windowed key needs {} bytes of times", 8 * N)))
}

/// Keys of time windows as Kafka Streams' `TimeWindowedSerializer` writes
/// them: the key's bytes, then the window start (8 bytes, big-endian). The
/// end is the start plus the window size, which the bytes do not carry.
///
/// ```
/// use streams_core::serde::{Serde, StringSerde};
/// use streams_core::window::{TimeWindowedSerde, Window, Windowed};
///
/// let serde = TimeWindowedSerde::new(StringSerde, 60_000);
/// let key = Windowed::new("alice".to_string(), Window::new(60_000, 120_000));
/// let bytes = serde.serialize(&key)?;
/// assert_eq!(bytes, [b"alice".as_slice(), &60_000_i64.to_be_bytes()].concat());
/// assert_eq!(serde.deserialize(&bytes)?, key);
/// # Ok::<(), streams_core::serde::SerdeError>(())
/// ```
pub struct TimeWindowedSerde<K> {
    keys: SerdeRef<K>,
    size: i64,
}

impl<K> TimeWindowedSerde<K> {
    /// Window keys of `keys` for windows of `size` ms.
    pub fn new(keys: impl Serde<K> + 'static, size: i64) -> Self {
        TimeWindowedSerde {
            keys: std::sync::Arc::new(keys),
            size,
        }
    }
}

impl<K> Serde<Windowed<K>> for TimeWindowedSerde<K> {
    fn serialize_into(
        &self,
        value: &Windowed<K>,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), SerdeError> {
        self.keys.serialize_into(&value.key, out)?;
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<Windowed<K>, SerdeError> {
        let (key, [start]) = split_times::<1>(bytes)?;
        let end = start.saturating_add(self.size);
        Ok(Windowed::new(
            self.keys.deserialize(key)?,
            Window::new(start, end),
        ))
    }
}

/// Keys of sessions as Kafka Streams' `SessionWindowedSerializer` writes
/// them: the key's bytes, then the session's end and its start (8 bytes
/// each, big-endian).
///
/// ```
/// use streams_core::serde::{Serde, StringSerde};
/// use streams_core::window::{SessionWindowedSerde, Window, Windowed};
///
/// let serde = SessionWindowedSerde::new(StringSerde);
/// let key = Windowed::new("alice".to_string(), Window::new(1_000, 5_000));
/// let bytes = serde.serialize(&key)?;
/// let expected = [b"alice".as_slice(), &5_000_i64.to_be_bytes(), &1_000_i64.to_be_bytes()];
/// assert_eq!(bytes, expected.concat());
/// assert_eq!(serde.deserialize(&bytes)?, key);
/// # Ok::<(), streams_core::serde::SerdeError>(())
/// ```
pub struct SessionWindowedSerde<K> {
    keys: SerdeRef<K>,
}

impl<K> SessionWindowedSerde<K> {
    /// Session keys of `keys`.
    pub fn new(keys: impl Serde<K> + 'static) -> Self {
        SessionWindowedSerde {
            keys: std::sync::Arc::new(keys),
        }
    }
}

impl<K> Serde<Windowed<K>> for SessionWindowedSerde<K> {
    fn serialize_into(
        &self,
        value: &Windowed<K>,
        out: &mut Vec<u8>,
    ) -> std::result::Result<(), SerdeError> {
        self.keys.serialize_into(&value.key, out)?;
        out.extend_from_slice(&value.window.end.to_be_bytes());
        out.extend_from_slice(&value.window.start.to_be_bytes());
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> std::result::Result<Windowed<K>, SerdeError> {
        let (key, [end, start]) = split_times::<2>(bytes)?;
        Ok(Windowed::new(
            self.keys.deserialize(key)?,
            Window::new(start, end),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serde::StringSerde;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn tumbling_windows_hold_each_record_once_aligned_to_the_epoch() {
        let windows = TimeWindows::of_size_with_no_grace(secs(10)).unwrap();
        assert_eq!(windows.windows_for(0), [Window::new(0, 10_000)]);
        assert_eq!(windows.windows_for(9_999), [Window::new(0, 10_000)]);
        assert_eq!(windows.windows_for(10_000), [Window::new(10_000, 20_000)]);
    }

    #[test]
    fn hopping_windows_hold_a_record_in_every_window_that_covers_it() {
        // Kafka Streams' documented example: size 5 min, advance 1 min.
        let windows = TimeWindows::of_size_with_no_grace(secs(300))
            .unwrap()
            .advance_by(secs(60))
            .unwrap();
        let starts: Vec<i64> = windows
            .windows_for(1_000_000)
            .iter()
            .map(|w| w.start)
            .collect();
        assert_eq!(starts, [720_000, 780_000, 840_000, 900_000, 960_000]);
        // Near the epoch, only windows that start at or after 0.
        let starts: Vec<i64> = windows
            .windows_for(90_000)
            .iter()
            .map(|w| w.start)
            .collect();
        assert_eq!(starts, [0, 60_000]);
    }

    #[test]
    fn windows_at_the_ends_of_time_stay_finite() {
        let windows = TimeWindows::of_size_with_no_grace(secs(60))
            .unwrap()
            .advance_by(secs(20))
            .unwrap();
        let last = windows.windows_for(i64::MAX);
        assert_eq!(last.len(), 3, "{last:?}");
        assert!(last.iter().all(|w| w.start <= w.end), "{last:?}");
        assert_eq!(last[2].end, i64::MAX, "ends saturate");
        assert_eq!(windows.windows_for(0), [Window::new(0, 60_000)]);
    }

    #[test]
    fn bad_windows_are_clear_errors() {
        let error = |r: Result<TimeWindows>| r.unwrap_err().to_string();
        assert!(
            error(TimeWindows::of_size_with_no_grace(Duration::ZERO)).contains("at least 1 ms")
        );
        assert!(
            error(
                TimeWindows::of_size_with_no_grace(secs(1))
                    .unwrap()
                    .advance_by(secs(2))
            )
            .contains("must not exceed its size")
        );
        assert!(SessionWindows::of_inactivity_gap_with_no_grace(Duration::ZERO).is_err());
    }

    #[test]
    fn a_window_closes_when_stream_time_reaches_its_end_plus_grace() {
        assert!(!is_closed(10_000, 2_000, 11_999));
        assert!(is_closed(10_000, 2_000, 12_000));
        assert!(is_closed(10_000, 0, 10_000));
    }

    #[test]
    fn windowed_keys_refuse_bytes_too_short_for_their_times() {
        let time = TimeWindowedSerde::new(StringSerde, 10);
        assert!(time.deserialize(&[0; 7]).is_err());
        let session = SessionWindowedSerde::new(StringSerde);
        assert!(session.deserialize(&[0; 15]).is_err());
        // An empty key is a key.
        assert_eq!(
            time.deserialize(&5_i64.to_be_bytes()).unwrap(),
            Windowed::new(String::new(), Window::new(5, 15))
        );
    }
}
