//! Models as the server runs them: built from a [`ModelDescriptor`] (inline
//! bytes or a file path), checked by scoring one record before they count
//! as loaded, then shared behind an `Arc` so a swap never waits on a build.
//!
//! A descriptor comes from anyone who can write to the models topic, so
//! [`build`] trusts none: it reads files only below the model directory
//! and up to a size ([`ModelLimits`]), and runs the build on a thread of
//! its own, so that a build that panics or hangs is an error, not a
//! stopped server.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use proto::{FEATURE_NAMES, MessageContent, ModelDescriptor, ModelType, WineRecord};

/// A model that scores wine records.
pub trait Model: Send + Sync {
    /// The predicted quality (a value for regression, the class as a
    /// number for classification); `None` when the model gives none.
    fn score(&self, record: &WineRecord) -> Option<f64>;
}

/// Why a descriptor did not become a model. The server logs it, counts
/// it, and keeps serving the previous model.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum ModelError {
    /// The descriptor carries no model (neither data nor location).
    #[error("model {name}: the descriptor carries neither data nor a location")]
    Empty {
        /// The model's name.
        name: String,
    },
    /// The file at `location` could not be read.
    #[error("model {name}: cannot read {location}: {reason}")]
    Unreadable {
        /// The model's name.
        name: String,
        /// The path.
        location: String,
        /// Why.
        reason: String,
    },
    /// The bytes are not a valid model of the declared type.
    #[error("model {name}: not a valid {kind} model: {reason}")]
    Corrupt {
        /// The model's name.
        name: String,
        /// The declared type.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// The model type number is not one the protocol defines.
    #[error("model {name}: unknown model type {number}")]
    UnknownType {
        /// The model's name.
        name: String,
        /// The number received.
        number: i32,
    },
    /// The type is defined but this build cannot run it.
    #[error("model {name}: {kind} models are not supported by this server yet")]
    Unsupported {
        /// The model's name.
        name: String,
        /// The type.
        kind: String,
    },
    /// A `location` the server may not read: no model directory is set,
    /// the path leads outside it, or it is not a regular file.
    #[error("model {name}: refusing to read {location}: {reason}")]
    Refused {
        /// The model's name.
        name: String,
        /// The path.
        location: String,
        /// Why.
        reason: String,
    },
    /// The model is larger than the server accepts.
    #[error("model {name}: {bytes} bytes, over the limit of {limit} (--max-model-bytes)")]
    TooLarge {
        /// The model's name.
        name: String,
        /// Its size (for a file, at least this).
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// Building the model panicked.
    #[error("model {name}: the build panicked: {message}")]
    Panicked {
        /// The model's name.
        name: String,
        /// The panic's message.
        message: String,
    },
    /// Building the model took longer than allowed; it is abandoned.
    #[error("model {name}: the build took longer than {seconds} s (--model-build-timeout)")]
    TimedOut {
        /// The model's name.
        name: String,
        /// The limit, in seconds.
        seconds: f64,
    },
    /// Too many abandoned builds are still running to start another.
    #[error("model {name}: {running} earlier builds that timed out are still running")]
    Busy {
        /// The model's name.
        name: String,
        /// How many.
        running: usize,
    },
}

/// What a model descriptor may make the server read and do.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLimits {
    /// `location` descriptors are read only from below this directory
    /// (relative locations are taken from it); `None` refuses them all.
    pub model_dir: Option<PathBuf>,
    /// The largest model accepted, inline or in a file, in bytes.
    pub max_model_bytes: u64,
    /// How long a build may take before it is rejected.
    pub build_timeout: Duration,
}

impl Default for ModelLimits {
    /// No model directory, 64 MiB, 30 seconds.
    fn default() -> Self {
        ModelLimits {
            model_dir: None,
            max_model_bytes: 64 << 20,
            build_timeout: Duration::from_secs(30),
        }
    }
}

impl ModelLimits {
    /// These limits, reading `location` descriptors from below `dir`.
    pub fn with_model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }
}

/// At most this many builds that timed out may still run: each may hold a
/// core, and none can be stopped from outside.
const MAX_ABANDONED_BUILDS: usize = 4;

static ABANDONED_BUILDS: AtomicUsize = AtomicUsize::new(0);

/// A built model with what the server reports about it.
#[derive(Clone)]
pub struct ServedModel {
    /// The descriptor's name.
    pub name: String,
    /// The descriptor's description.
    pub description: String,
    /// The data type it serves.
    pub data_type: String,
    /// Its type.
    pub kind: ModelType,
    /// The model.
    pub model: Arc<dyn Model>,
}

impl std::fmt::Debug for ServedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedModel")
            .field("name", &self.name)
            .field("data_type", &self.data_type)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What a model's answer means for a record: a score served, or why not.
/// A score that is not finite is never served (it would also spoil every
/// statistic it entered). The server and the offline scorer both ask this.
pub fn served_score(score: Option<f64>) -> Result<f64, String> {
    match score {
        Some(value) if value.is_finite() => Ok(value),
        Some(value) => Err(format!(
            "the model gave a score that is not finite: {value}"
        )),
        None => Err("the model gave no prediction".into()),
    }
}

/// A PMML document bound to the wine record's fields.
struct PmmlModel(pmml::Scorer);

impl Model for PmmlModel {
    fn score(&self, record: &WineRecord) -> Option<f64> {
        self.0.score(&record.features())?.value()
    }
}

/// A record every model must score before it counts as loaded: the first
/// row of the wine data.
fn probe() -> WineRecord {
    WineRecord::from_features(
        [
            7.4, 0.7, 0.0, 1.9, 0.076, 11.0, 34.0, 0.9978, 3.51, 0.56, 9.4,
        ],
        "probe",
        0,
    )
}

/// Builds the model a descriptor carries, within `limits`. Slow work
/// (reading, parsing, a first scoring) happens here, off the scoring path,
/// on a thread of its own: a build that panics, or that is not done within
/// `limits.build_timeout`, is an error (a build that timed out is left to
/// finish in the background, and its result dropped).
pub fn build(
    descriptor: &ModelDescriptor,
    limits: &ModelLimits,
) -> Result<ServedModel, ModelError> {
    let (descriptor_here, limits_here) = (descriptor.clone(), limits.clone());
    guarded(descriptor.name.clone(), limits.build_timeout, move || {
        build_here(&descriptor_here, &limits_here)
    })
}

/// Runs `work` on a thread of its own: its panic is an error, and so is
/// its taking longer than `timeout`, after which it is abandoned.
fn guarded<F>(name: String, timeout: Duration, work: F) -> Result<ServedModel, ModelError>
where
    F: FnOnce() -> Result<ServedModel, ModelError> + Send + 'static,
{
    const RUNNING: u8 = 0;
    const DONE: u8 = 1;
    const ABANDONED: u8 = 2;
    let running = ABANDONED_BUILDS.load(Ordering::Relaxed);
    if running >= MAX_ABANDONED_BUILDS {
        return Err(ModelError::Busy { name, running });
    }
    let state = Arc::new(AtomicU8::new(RUNNING));
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let thread_state = state.clone();
    let spawned = std::thread::Builder::new()
        .name("model-build".into())
        .spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            if thread_state.swap(DONE, Ordering::AcqRel) == ABANDONED {
                ABANDONED_BUILDS.fetch_sub(1, Ordering::Relaxed);
            }
            let _ = tx.send(result);
        });
    if let Err(error) = spawned {
        return Err(ModelError::Panicked {
            name,
            message: format!("cannot start a build thread: {error}"),
        });
    }
    let outcome = match rx.recv_timeout(timeout) {
        Ok(outcome) => outcome,
        Err(_) => {
            if state
                .compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                ABANDONED_BUILDS.fetch_add(1, Ordering::Relaxed);
                return Err(ModelError::TimedOut {
                    name,
                    seconds: timeout.as_secs_f64(),
                });
            }
            // Done just now: its result is on its way.
            rx.recv().map_err(|_| ModelError::Panicked {
                name: name.clone(),
                message: "the build thread ended without a result".into(),
            })?
        }
    };
    outcome.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".into());
        Err(ModelError::Panicked { name, message })
    })
}

/// Reads the file a `location` descriptor names, if `limits` allow it.
fn read_location(name: &str, location: &str, limits: &ModelLimits) -> Result<Vec<u8>, ModelError> {
    let refused = |reason: String| ModelError::Refused {
        name: name.to_owned(),
        location: location.to_owned(),
        reason,
    };
    let unreadable = |e: std::io::Error| ModelError::Unreadable {
        name: name.to_owned(),
        location: location.to_owned(),
        reason: e.to_string(),
    };
    let Some(dir) = &limits.model_dir else {
        return Err(refused(
            "location descriptors are refused: the server has no model directory (--model-dir)"
                .into(),
        ));
    };
    let root = dir
        .canonicalize()
        .map_err(|e| refused(format!("the model directory {}: {e}", dir.display())))?;
    // Symbolic links and `..` are resolved before the check, so neither
    // leads out of the directory.
    let path = root.join(Path::new(location));
    let real = path.canonicalize().map_err(unreadable)?;
    if !real.starts_with(&root) {
        return Err(refused(format!("it lies outside {}", root.display())));
    }
    let meta = std::fs::metadata(&real).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(refused("it is not a regular file".into()));
    }
    let too_large = |bytes: u64| ModelError::TooLarge {
        name: name.to_owned(),
        bytes,
        limit: limits.max_model_bytes,
    };
    if meta.len() > limits.max_model_bytes {
        return Err(too_large(meta.len()));
    }
    // Read no more than the limit allows, even if the file grows meanwhile.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(&real)
        .and_then(|file| {
            file.take(limits.max_model_bytes.saturating_add(1))
                .read_to_end(&mut bytes)
        })
        .map_err(unreadable)?;
    if bytes.len() as u64 > limits.max_model_bytes {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// [`build`]'s work, on the calling thread.
fn build_here(
    descriptor: &ModelDescriptor,
    limits: &ModelLimits,
) -> Result<ServedModel, ModelError> {
    let name = descriptor.name.clone();
    let kind = ModelType::try_from(descriptor.modeltype).map_err(|_| ModelError::UnknownType {
        name: name.clone(),
        number: descriptor.modeltype,
    })?;
    let inline;
    let bytes: &[u8] = match &descriptor.message_content {
        Some(MessageContent::Data(bytes)) => {
            if bytes.len() as u64 > limits.max_model_bytes {
                return Err(ModelError::TooLarge {
                    name,
                    bytes: bytes.len() as u64,
                    limit: limits.max_model_bytes,
                });
            }
            bytes
        }
        Some(MessageContent::Location(location)) => {
            inline = read_location(&name, location, limits)?;
            &inline
        }
        None => return Err(ModelError::Empty { name }),
    };
    let corrupt = |reason: String| ModelError::Corrupt {
        name: name.clone(),
        kind: kind.as_str_name().to_owned(),
        reason,
    };
    let model: Arc<dyn Model> = match kind {
        ModelType::Pmml => {
            let text = std::str::from_utf8(bytes).map_err(|e| corrupt(e.to_string()))?;
            let scorer = pmml::Pmml::parse(text)
                .and_then(|m| m.bind(&FEATURE_NAMES))
                .map_err(|e| corrupt(e.to_string()))?;
            Arc::new(PmmlModel(scorer))
        }
        ModelType::Onnx => Arc::new(crate::tract_model::onnx(bytes).map_err(corrupt)?),
        ModelType::Tensorflow => Arc::new(crate::tract_model::tensorflow(bytes).map_err(corrupt)?),
        // A SavedModel is a directory with variables beside the graph;
        // tract loads frozen graphs only.
        ModelType::Tensorflowsaved => {
            return Err(ModelError::Unsupported {
                name,
                kind: kind.as_str_name().to_owned(),
            });
        }
    };
    if !model.score(&probe()).is_some_and(f64::is_finite) {
        return Err(corrupt(
            "it gives no finite prediction for a valid record".into(),
        ));
    }
    Ok(ServedModel {
        name: descriptor.name.clone(),
        description: descriptor.description.clone(),
        data_type: descriptor.data_type.clone(),
        kind,
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pmml_dir() -> String {
        format!("{}/../data/models/pmml", env!("CARGO_MANIFEST_DIR"))
    }

    fn pmml_file(stem: &str) -> String {
        format!("{}/{stem}.pmml", pmml_dir())
    }

    /// Limits that let the tests read the data folder's PMML files.
    fn limits() -> ModelLimits {
        ModelLimits::default().with_model_dir(pmml_dir())
    }

    fn build(descriptor: &ModelDescriptor) -> Result<ServedModel, ModelError> {
        super::build(descriptor, &limits())
    }

    fn descriptor(kind: ModelType, content: Option<MessageContent>) -> ModelDescriptor {
        ModelDescriptor {
            name: "m".into(),
            description: "d".into(),
            data_type: "wine".into(),
            modeltype: kind as i32,
            message_content: content,
        }
    }

    #[test]
    fn every_pmml_file_builds_inline_and_from_a_location() {
        for stem in crate::test_common::PMML_STEMS {
            let path = pmml_file(stem);
            let inline = build(&descriptor(
                ModelType::Pmml,
                Some(MessageContent::Data(std::fs::read(&path).unwrap())),
            ))
            .unwrap();
            let located = build(&descriptor(
                ModelType::Pmml,
                Some(MessageContent::Location(path)),
            ))
            .unwrap();
            let q = inline.model.score(&probe()).unwrap();
            assert_eq!(located.model.score(&probe()), Some(q));
            assert!((3.0..=8.0).contains(&q), "{stem}: {q}");
        }
    }

    #[test]
    fn bad_descriptors_are_clear_errors() {
        let corrupt = build(&descriptor(
            ModelType::Pmml,
            Some(MessageContent::Data(b"<PMML><oops".to_vec())),
        ))
        .unwrap_err();
        assert!(matches!(corrupt, ModelError::Corrupt { .. }), "{corrupt}");
        let missing = build(&descriptor(
            ModelType::Pmml,
            Some(MessageContent::Location("/no/such/model.pmml".into())),
        ))
        .unwrap_err();
        assert!(
            missing.to_string().contains("/no/such/model.pmml"),
            "{missing}"
        );
        assert_eq!(
            build(&descriptor(ModelType::Pmml, None)).unwrap_err(),
            ModelError::Empty { name: "m".into() }
        );
        let mut unknown = descriptor(ModelType::Pmml, Some(MessageContent::Data(vec![])));
        unknown.modeltype = 42;
        assert_eq!(
            build(&unknown).unwrap_err(),
            ModelError::UnknownType {
                name: "m".into(),
                number: 42
            }
        );
        for kind in [ModelType::Onnx, ModelType::Tensorflow] {
            let garbage = build(&descriptor(
                kind,
                Some(MessageContent::Data(b"not a model".to_vec())),
            ))
            .unwrap_err();
            assert!(matches!(garbage, ModelError::Corrupt { .. }), "{garbage}");
        }
        let saved = build(&descriptor(
            ModelType::Tensorflowsaved,
            Some(MessageContent::Data(vec![1])),
        ))
        .unwrap_err();
        assert!(matches!(saved, ModelError::Unsupported { .. }), "{saved}");
    }

    fn location(path: &str) -> ModelDescriptor {
        descriptor(ModelType::Pmml, Some(MessageContent::Location(path.into())))
    }

    #[test]
    fn locations_are_read_only_below_the_model_directory() {
        let linear = pmml_file("winequalityLinearRegression");
        // No model directory: every location is refused.
        let none = super::build(&location(&linear), &ModelLimits::default()).unwrap_err();
        assert!(matches!(none, ModelError::Refused { .. }), "{none}");
        assert!(none.to_string().contains("--model-dir"), "{none}");
        // Relative to the directory, or absolute within it: read.
        build(&location("winequalityLinearRegression.pmml")).unwrap();
        build(&location(&linear)).unwrap();
        // Out of it by an absolute path, by `..`, or by a symbolic link.
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&linear, dir.path().join("inside.pmml")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.pmml")).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let limits = ModelLimits::default().with_model_dir(dir.path().join("sub"));
        let inside = ModelLimits::default().with_model_dir(dir.path());
        super::build(&location("inside.pmml"), &inside).unwrap();
        for (path, limits) in [
            ("/etc/passwd", &inside),
            ("../inside.pmml", &limits),
            ("link.pmml", &inside),
        ] {
            let error = super::build(&location(path), limits).unwrap_err();
            assert!(
                matches!(&error, ModelError::Refused { reason, .. } if reason.contains("outside")),
                "{path}: {error}"
            );
        }
        // A directory or a device is not a regular file.
        let error = super::build(&location("sub"), &inside).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
        let dev = ModelLimits::default().with_model_dir("/dev");
        let error = super::build(&location("zero"), &dev).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn models_over_the_size_limit_are_refused() {
        let linear = pmml_file("winequalityLinearRegression");
        let size = std::fs::metadata(&linear).unwrap().len();
        let small = ModelLimits {
            max_model_bytes: size - 1,
            ..limits()
        };
        let error = super::build(&location(&linear), &small).unwrap_err();
        assert_eq!(
            error,
            ModelError::TooLarge {
                name: "m".into(),
                bytes: size,
                limit: size - 1
            }
        );
        let inline = descriptor(
            ModelType::Pmml,
            Some(MessageContent::Data(std::fs::read(&linear).unwrap())),
        );
        let error = super::build(&inline, &small).unwrap_err();
        assert!(matches!(error, ModelError::TooLarge { .. }), "{error}");
        let exact = ModelLimits {
            max_model_bytes: size,
            ..limits()
        };
        super::build(&inline, &exact).unwrap();
    }

    #[test]
    fn a_build_that_panics_or_hangs_is_an_error() {
        let panicked = guarded("p".into(), Duration::from_secs(5), || {
            panic!("hostile model")
        })
        .unwrap_err();
        assert_eq!(
            panicked,
            ModelError::Panicked {
                name: "p".into(),
                message: "hostile model".into()
            }
        );
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let hung = guarded("h".into(), Duration::from_millis(50), move || {
            let _ = wait.recv();
            Err(ModelError::Empty { name: "h".into() })
        })
        .unwrap_err();
        assert_eq!(
            hung,
            ModelError::TimedOut {
                name: "h".into(),
                seconds: 0.05
            }
        );
        // The abandoned build may end later; the next one is unaffected.
        drop(release);
        build(&location("winequalityLinearRegression.pmml")).unwrap();
    }
}
