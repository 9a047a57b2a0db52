//! Serializers and deserializers: [`Serde`] turns a typed key or value into
//! bytes and back. The numeric serdes write big-endian, as Kafka's Java
//! serializers do, so bytes are interchangeable with JVM applications.

use crate::SerdeError;

/// Turns values of `T` into bytes and back.
///
/// `serialize_into` appends to a caller's buffer so hot paths can reuse one
/// allocation. A failure is a [`SerdeError`], never a panic.
pub trait Serde<T>: Send + Sync {
    /// Appends the bytes of `value` to `out`.
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError>;

    /// Reads a value from `bytes`.
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError>;

    /// The bytes of `value`, in a new buffer.
    fn serialize(&self, value: &T) -> Result<Vec<u8>, SerdeError> {
        let mut out = Vec::new();
        self.serialize_into(value, &mut out)?;
        Ok(out)
    }

    /// Kafka keys and values may be null. Appends the bytes of `value` to
    /// `out` and returns `true`, or returns `false` for a null. Only serdes
    /// of nullable types ([`Nullable`], [`UnitSerde`]) ever write a null.
    fn serialize_nullable_into(&self, value: &T, out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        self.serialize_into(value, out)?;
        Ok(true)
    }

    /// Reads a value from bytes that may be null. A null is an error unless
    /// the type has room for it ([`Nullable`], [`UnitSerde`]).
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        match bytes {
            Some(bytes) => self.deserialize(bytes),
            None => Err(SerdeError::new(
                "null where a value was expected (use a Nullable serde to accept nulls)",
            )),
        }
    }
}

impl<T, S: Serde<T> + ?Sized> Serde<T> for std::sync::Arc<S> {
    fn serialize_into(&self, value: &T, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        (**self).serialize_into(value, out)
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<T, SerdeError> {
        (**self).deserialize(bytes)
    }
    fn serialize_nullable_into(&self, value: &T, out: &mut Vec<u8>) -> Result<bool, SerdeError> {
        (**self).serialize_nullable_into(value, out)
    }
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<T, SerdeError> {
        (**self).deserialize_nullable(bytes)
    }
}

/// `Option<T>` over a serde of `T`: `None` is Kafka's null (a tombstone
/// when it is a value).
#[derive(Debug, Clone, Copy, Default)]
pub struct Nullable<S>(pub S);

impl<T, S: Serde<T>> Serde<Option<T>> for Nullable<S> {
    fn serialize_into(&self, value: &Option<T>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        match value {
            Some(value) => self.0.serialize_into(value, out),
            None => Ok(()),
        }
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Option<T>, SerdeError> {
        self.0.deserialize(bytes).map(Some)
    }
    fn serialize_nullable_into(
        &self,
        value: &Option<T>,
        out: &mut Vec<u8>,
    ) -> Result<bool, SerdeError> {
        match value {
            Some(value) => self.0.serialize_nullable_into(value, out),
            None => Ok(false),
        }
    }
    fn deserialize_nullable(&self, bytes: Option<&[u8]>) -> Result<Option<T>, SerdeError> {
        bytes.map(|b| self.0.deserialize(b)).transpose()
    }
}

/// The unit type as an always-null key or value: for topics whose records
/// carry no key, read as `KStream<(), V>`. Any bytes read as `()`.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnitSerde;

impl Serde<()> for UnitSerde {
    fn serialize_into(&self, _: &(), _: &mut Vec<u8>) -> Result<(), SerdeError> {
        Ok(())
    }
    fn deserialize(&self, _: &[u8]) -> Result<(), SerdeError> {
        Ok(())
    }
    fn serialize_nullable_into(&self, _: &(), _: &mut Vec<u8>) -> Result<bool, SerdeError> {
        Ok(false)
    }
    fn deserialize_nullable(&self, _: Option<&[u8]>) -> Result<(), SerdeError> {
        Ok(())
    }
}

/// Raw bytes, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct BytesSerde;

impl Serde<Vec<u8>> for BytesSerde {
    fn serialize_into(&self, value: &Vec<u8>, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value);
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<Vec<u8>, SerdeError> {
        Ok(bytes.to_vec())
    }
}

/// UTF-8 text.
#[derive(Debug, Clone, Copy, Default)]
pub struct StringSerde;

impl Serde<String> for StringSerde {
    fn serialize_into(&self, value: &String, out: &mut Vec<u8>) -> Result<(), SerdeError> {
        out.extend_from_slice(value.as_bytes());
        Ok(())
    }
    fn deserialize(&self, bytes: &[u8]) -> Result<String, SerdeError> {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| SerdeError::new(format!("invalid UTF-8: {e}")))
    }
}

macro_rules! big_endian_serde {
    ($(#[$doc:meta] $name:ident: $ty:ty),* $(,)?) => {$(
        #[$doc]
        #[derive(Debug, Clone, Copy, Default)]
        pub struct $name;

        impl Serde<$ty> for $name {
            fn serialize_into(&self, value: &$ty, out: &mut Vec<u8>) -> Result<(), SerdeError> {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(())
            }
            fn deserialize(&self, bytes: &[u8]) -> Result<$ty, SerdeError> {
                let array = bytes.try_into().map_err(|_| {
                    SerdeError::new(format!(
                        concat!("expected ", stringify!($ty), " of {} bytes, got {}"),
                        std::mem::size_of::<$ty>(),
                        bytes.len()
                    ))
                })?;
                Ok(<$ty>::from_be_bytes(array))
            }
        }
    )*};
}

big_endian_serde!(
    /// A 32-bit signed integer, 4 bytes big-endian (Java's `IntegerSerializer`).
    I32Serde: i32,
    /// A 64-bit signed integer, 8 bytes big-endian (Java's `LongSerializer`).
    I64Serde: i64,
    /// A 64-bit unsigned integer, 8 bytes big-endian.
    U64Serde: u64,
    /// A 64-bit float, 8 bytes big-endian IEEE 754 (Java's `DoubleSerializer`).
    F64Serde: f64,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_match_java_serializers() {
        assert_eq!(I32Serde.serialize(&1).unwrap(), [0, 0, 0, 1]);
        assert_eq!(I32Serde.serialize(&-1).unwrap(), [0xff; 4]);
        assert_eq!(I64Serde.serialize(&258).unwrap(), [0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            F64Serde.serialize(&1.0).unwrap(),
            [0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(U64Serde.deserialize(&[0, 0, 0, 0, 0, 0, 0, 7]).unwrap(), 7);
    }

    #[test]
    fn wrong_lengths_and_bad_utf8_are_errors() {
        let err = I64Serde.deserialize(&[1, 2, 3]).unwrap_err();
        assert_eq!(err.to_string(), "expected i64 of 8 bytes, got 3");
        assert!(
            StringSerde
                .deserialize(&[0xff, 0xfe])
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }

    #[test]
    fn nulls_need_a_nullable_serde() {
        assert!(
            StringSerde
                .deserialize_nullable(None)
                .unwrap_err()
                .to_string()
                .contains("Nullable")
        );
        assert_eq!(
            Nullable(StringSerde).deserialize_nullable(None).unwrap(),
            None
        );
        assert_eq!(
            Nullable(I32Serde)
                .deserialize_nullable(Some(&[0, 0, 0, 9]))
                .unwrap(),
            Some(9)
        );
        let mut out = Vec::new();
        assert!(
            !Nullable(I32Serde)
                .serialize_nullable_into(&None, &mut out)
                .unwrap()
        );
        assert!(
            Nullable(I32Serde)
                .serialize_nullable_into(&Some(1), &mut out)
                .unwrap()
        );
        assert_eq!(out, [0, 0, 0, 1]);
        assert!(!UnitSerde.serialize_nullable_into(&(), &mut out).unwrap());
        UnitSerde.deserialize_nullable(Some(b"anything")).unwrap();
    }

    #[test]
    fn serialize_into_appends() {
        let mut out = b"x".to_vec();
        StringSerde
            .serialize_into(&"yz".to_string(), &mut out)
            .unwrap();
        BytesSerde.serialize_into(&vec![1], &mut out).unwrap();
        assert_eq!(out, b"xyz\x01");
    }
}
