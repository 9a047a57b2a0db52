//! Serdes: how keys and values become bytes on topics and in stores.
//!
//! [`Serde`] and the basic serdes (bytes, strings, big-endian numbers as
//! Java's serializers write them, [`Nullable`], [`UnitSerde`]) come from the
//! `state-stores` crate; this module adds JSON through serde and protobuf
//! through prost.

use std::marker::PhantomData;
use std::sync::Arc;

pub use state_stores::{
    BytesSerde, F64Serde, I32Serde, I64Serde, Nullable, Serde, SerdeError, StringSerde, U64Serde,
    UnitSerde,
};

/// A shared, type-erased serde, as topologies keep them.
pub type SerdeRef<T> = Arc<dyn Serde<T>>;

/// The serde the DSL uses for `T` when none is given and none is known
/// from upstream, as Kafka Streams' `default.key.serde` and
/// `default.value.serde`: for `String`, `i32`, `i64`, `u64`, `f64`, `()`,
/// bytes (`Vec<u8>`), and `Option` of each (where `None` is a null, a
/// tombstone for values). `None` for any other type: give its serde.
///
/// ```
/// use streams_core::serde::default_serde;
///
/// let strings = default_serde::<String>().unwrap();
/// assert_eq!(strings.serialize(&"hi".to_string()).unwrap(), b"hi");
/// let counts = default_serde::<Option<i64>>().unwrap();
/// let mut bytes = Vec::new();
/// let written = counts.serialize_nullable_into(&None, &mut bytes).unwrap();
/// assert!(!written, "None is a tombstone");
/// assert!(default_serde::<Vec<String>>().is_none());
/// ```
pub fn default_serde<T: 'static>() -> Option<SerdeRef<T>> {
    fn cast<S: 'static, T: 'static>(serde: SerdeRef<S>) -> Option<SerdeRef<T>> {
        let boxed: Box<dyn std::any::Any> = Box::new(serde);
        boxed.downcast::<SerdeRef<T>>().ok().map(|b| *b)
    }
    macro_rules! defaults {
        ($($t:ty => $serde:expr),* $(,)?) => {
            $(
                if let Some(serde) = cast::<$t, T>(Arc::new($serde)) {
                    return Some(serde);
                }
                if let Some(serde) = cast::<Option<$t>, T>(Arc::new(Nullable($serde))) {
                    return Some(serde);
                }
            )*
        };
    }
    defaults!(
        String => StringSerde,
        i64 => I64Serde,
        i32 => I32Serde,
        u64 => U64Serde,
        f64 => F64Serde,
        () => UnitSerde,
        Vec<u8> => BytesSerde,
    );
    None
}

/// JSON through `serde_json`, for any type that derives `Serialize` and
/// `Deserialize`.
pub struct JsonSerde<T>(PhantomData<fn() -> T>);

impl<T> JsonSerde<T> {
    /// A JSON serde for `T`.
    pub fn new() -> Self {
        JsonSerde(PhantomData)
    }
}

impl<T> Default for JsonSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for JsonSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for JsonSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Serde<T> for JsonSerde<T> {
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        serde_json::to_writer(out, value).map_err(|e| SerdeError::new(format!("JSON: {e}")))
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        serde_json::from_slice(bytes).map_err(|e| SerdeError::new(format!("JSON: {e}")))
    }
}

/// Protobuf through `prost`, for any generated message type.
pub struct ProtobufSerde<T>(PhantomData<fn() -> T>);

impl<T> ProtobufSerde<T> {
    /// A protobuf serde for `T`.
    pub fn new() -> Self {
        ProtobufSerde(PhantomData)
    }
}

impl<T> Default for ProtobufSerde<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for ProtobufSerde<T> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for ProtobufSerde<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProtobufSerde<{}>", std::any::type_name::<T>())
    }
}

impl<T: prost::Message + Default> Serde<T> for ProtobufSerde<T> {
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        value
            .encode(out)
            .map_err(|e| SerdeError::new(format!("protobuf: {e}")))
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        T::decode(bytes).map_err(|e| SerdeError::new(format!("protobuf: {e}")))
    }
}

/// A table update as it crosses a repartition topic: the new and the old
/// value, either of which may be absent. Wire format: one flag byte (bit 0:
/// new present, bit 1: old present), the new value's length as a 4-byte
/// big-endian integer when both are present, then the values.
pub(crate) struct ChangeSerde<V> {
    inner: SerdeRef<V>,
}

impl<V> ChangeSerde<V> {
    pub(crate) fn new(inner: SerdeRef<V>) -> Self {
        ChangeSerde { inner }
    }
}

impl<V: 'static> Serde<crate::record::Change<V>> for ChangeSerde<V> {
    fn serialize_into(
        &self,
        change: &crate::record::Change<V>,
        out: &mut Vec<u8>,
    ) -> Result<(), SerdeError> {
        let flags = u8::from(change.new.is_some()) | (u8::from(change.old.is_some()) << 1);
        out.push(flags);
        if let Some(new) = &change.new {
            let length_at = out.len();
            if change.old.is_some() {
                out.extend_from_slice(&[0; 4]);
            }
            let start = out.len();
            self.inner.serialize_into(new, out)?;
            if change.old.is_some() {
                let length = u32::try_from(out.len() - start)
                    .map_err(|_| SerdeError::new("value over 4 GiB"))?;
                out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
            }
        }
        if let Some(old) = &change.old {
            self.inner.serialize_into(old, out)?;
        }
        Ok(())
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<crate::record::Change<V>, SerdeError> {
        let (&flags, rest) = bytes
            .split_first()
            .ok_or_else(|| SerdeError::new("empty change record"))?;
        let (has_new, has_old) = (flags & 1 != 0, flags & 2 != 0);
        let (new_bytes, old_bytes) = match (has_new, has_old) {
            (true, true) => {
                let (length, rest) = rest
                    .split_at_checked(4)
                    .ok_or_else(|| SerdeError::new("truncated change"))?;
                let length = u32::from_be_bytes(length.try_into().expect("4 bytes")) as usize;
                let (new, old) = rest
                    .split_at_checked(length)
                    .ok_or_else(|| SerdeError::new("truncated change"))?;
                (Some(new), Some(old))
            }
            (true, false) => (Some(rest), None),
            (false, true) => (None, Some(rest)),
            (false, false) => (None, None),
        };
        Ok(crate::record::Change {
            new: new_bytes.map(|b| self.inner.deserialize(b)).transpose()?,
            old: old_bytes.map(|b| self.inner.deserialize(b)).transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Change;

    #[test]
    fn change_serde_round_trips_every_shape() {
        let serde = ChangeSerde::new(Arc::new(StringSerde));
        for (new, old) in [
            (Some("n"), Some("old")),
            (Some(""), None),
            (None, Some("o")),
            (None, None),
        ] {
            let change = Change {
                new: new.map(String::from),
                old: old.map(String::from),
            };
            let bytes = serde.serialize(&change).unwrap();
            assert_eq!(serde.deserialize(&bytes).unwrap(), change);
        }
        assert!(serde.deserialize(&[3, 0, 0, 0, 9, b'x']).is_err());
        assert!(serde.deserialize(&[]).is_err());
    }

    #[test]
    fn json_and_protobuf_errors_are_serde_errors() {
        let json = JsonSerde::<Vec<u32>>::new();
        assert_eq!(
            json.deserialize(&json.serialize(&vec![1, 2]).unwrap())
                .unwrap(),
            vec![1, 2]
        );
        assert!(
            json.deserialize(b"{not json")
                .unwrap_err()
                .to_string()
                .starts_with("JSON:")
        );
        let proto = ProtobufSerde::<prost_types_stub::Pair>::new();
        let pair = prost_types_stub::Pair {
            a: 7,
            b: "x".into(),
        };
        assert_eq!(
            proto.deserialize(&proto.serialize(&pair).unwrap()).unwrap(),
            pair
        );
        assert!(
            proto
                .deserialize(&[0xff, 0xff])
                .unwrap_err()
                .to_string()
                .starts_with("protobuf:")
        );
    }

    mod prost_types_stub {
        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct Pair {
            #[prost(int32, tag = "1")]
            pub(super) a: i32,
            #[prost(string, tag = "2")]
            pub(super) b: String,
        }
    }
}
