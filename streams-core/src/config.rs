//! `StreamsConfig`: settings under Kafka Streams' names.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `application.id` | (required) | names the consumer group, internal topics and state directory |
//! | `bootstrap.servers` | (required to run on Kafka) | brokers to connect to |
//! | `state.dir` | `<tmp>/kafka-streams` | where persistent stores live |
//! | `num.stream.threads` | 1 | stream threads per instance |
//! | `commit.interval.ms` | 30000 (100 with exactly-once) | how often to commit |
//! | `processing.guarantee` | `at_least_once` | or `exactly_once_v2` |
//! | `application.server` | none | `host:port` of this instance's query endpoint |
//! | `replication.factor` | -1 (broker default) | of internal topics |
//!
//! Any other key is passed through to the Kafka clients: `consumer.`,
//! `producer.` and `admin.` prefixes target one client, unprefixed keys
//! go to all.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Result, StreamsError};
use crate::handlers::{DeserializationExceptionHandler, LogAndContinue};

/// Settings of a streams application.
#[derive(Clone)]
pub struct StreamsConfig {
    properties: BTreeMap<String, String>,
    deserialization_handler: Arc<dyn DeserializationExceptionHandler>,
}

impl std::fmt::Debug for StreamsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamsConfig")
            .field("properties", &self.properties)
            .finish_non_exhaustive()
    }
}

/// `application.id`
pub const APPLICATION_ID: &str = "application.id";
/// `bootstrap.servers`
pub const BOOTSTRAP_SERVERS: &str = "bootstrap.servers";
/// `state.dir`
pub const STATE_DIR: &str = "state.dir";

impl StreamsConfig {
    /// Settings for the application `application_id`.
    pub fn new(application_id: impl Into<String>) -> Self {
        let mut properties = BTreeMap::new();
        properties.insert(APPLICATION_ID.to_owned(), application_id.into());
        StreamsConfig {
            properties,
            deserialization_handler: Arc::new(LogAndContinue),
        }
    }

    /// Sets `key` to `value`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    /// Every setting.
    pub fn properties(&self) -> &BTreeMap<String, String> {
        &self.properties
    }

    /// Decide with `handler` what happens to records that cannot be read.
    pub fn with_deserialization_handler(
        mut self,
        handler: impl DeserializationExceptionHandler + 'static,
    ) -> Self {
        self.deserialization_handler = Arc::new(handler);
        self
    }

    pub(crate) fn deserialization_handler(&self) -> Arc<dyn DeserializationExceptionHandler> {
        self.deserialization_handler.clone()
    }

    /// The application id; an error when empty or not a valid topic-name part.
    pub fn application_id(&self) -> Result<&str> {
        let id = self.get(APPLICATION_ID).unwrap_or_default();
        if id.is_empty() {
            return Err(StreamsError::Config("application.id must be set".into()));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(StreamsError::Config(format!(
                "application.id `{id}` may only contain ASCII letters, digits, '.', '_' and '-' (it names topics)"
            )));
        }
        Ok(id)
    }

    /// `state.dir`, or `<tmp>/kafka-streams`.
    pub fn state_dir(&self) -> PathBuf {
        match self.get(STATE_DIR) {
            Some(dir) => PathBuf::from(dir),
            None => std::env::temp_dir().join("kafka-streams"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_id_is_checked() {
        assert_eq!(
            StreamsConfig::new("word-count.v1")
                .application_id()
                .unwrap(),
            "word-count.v1"
        );
        assert!(
            StreamsConfig::new("")
                .application_id()
                .unwrap_err()
                .to_string()
                .contains("must be set")
        );
        assert!(
            StreamsConfig::new("a b")
                .application_id()
                .unwrap_err()
                .to_string()
                .contains("may only contain")
        );
    }
}
