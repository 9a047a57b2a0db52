//! Hand-written codecs for the two messages the server handles once per
//! record: decoding a [`WineRecord`] and encoding a [`ServingResult`].
//!
//! They give exactly what prost gives, faster: prost's generic decoder
//! cost a twelfth of a stream thread's time in the serving benchmark, and
//! its encoder walks the message twice (once to size it, once to write
//! it, a check a `Vec` never needs). The decoder takes the layout every
//! encoder writes (known fields, each with its own wire type) and hands
//! anything else to prost, so that unknown fields, truncation and bad
//! UTF-8 are prost's business and its errors.

use prost::Message;

use crate::{ServingResult, WineRecord};

/// Decodes a [`WineRecord`], as `WineRecord::decode` does.
pub fn decode_wine_record(bytes: &[u8]) -> Result<WineRecord, prost::DecodeError> {
    match decode_common(bytes) {
        Some(record) => Ok(record),
        None => WineRecord::decode(bytes),
    }
}

/// Wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH_DELIMITED: u64 = 2;

/// `bytes` as a record, or `None` for anything the fast path leaves to
/// prost.
fn decode_common(mut bytes: &[u8]) -> Option<WineRecord> {
    let mut record = WineRecord::default();
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let (field, wire) = (key >> 3, key & 7);
        match (field, wire) {
            (1..=11, FIXED64) => {
                let (value, rest) = bytes.split_first_chunk::<8>()?;
                bytes = rest;
                let value = f64::from_le_bytes(*value);
                *feature_mut(&mut record, field)? = value;
            }
            (12, LENGTH_DELIMITED) => {
                let len = usize::try_from(read_varint(&mut bytes)?).ok()?;
                let (text, rest) = bytes.split_at_checked(len)?;
                bytes = rest;
                record.data_type.clear();
                record.data_type.push_str(std::str::from_utf8(text).ok()?);
            }
            // int64 travels as its two's complement.
            (13, VARINT) => record.ts = read_varint(&mut bytes)? as i64,
            _ => return None,
        }
    }
    Some(record)
}

fn feature_mut(record: &mut WineRecord, field: u64) -> Option<&mut f64> {
    Some(match field {
        1 => &mut record.fixed_acidity,
        2 => &mut record.volatile_acidity,
        3 => &mut record.citric_acid,
        4 => &mut record.residual_sugar,
        5 => &mut record.chlorides,
        6 => &mut record.free_sulfur_dioxide,
        7 => &mut record.total_sulfur_dioxide,
        8 => &mut record.density,
        9 => &mut record.p_h,
        10 => &mut record.sulphates,
        11 => &mut record.alcohol,
        _ => return None,
    })
}

/// A varint of at most ten bytes whose value fits 64 bits; `None` for
/// anything else (prost then says what is wrong).
fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        if i == 9 && byte > 1 {
            return None;
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            *bytes = &bytes[i + 1..];
            return Some(value);
        }
    }
    None
}

/// Appends the encoding of `result` to `out`: the bytes
/// `result.encode_to_vec()` gives (proto3 leaves out fields that hold
/// their default).
pub fn encode_serving_result(result: &ServingResult, out: &mut Vec<u8>) {
    // Every field at its longest: 9 keys, 3 string lengths, 3 ten-byte
    // varints, a double and a bool.
    out.reserve(
        9 + 3 * 10
            + 3 * 10
            + 8
            + 1
            + result.data_type.len()
            + result.model.len()
            + result.reason.len(),
    );
    for (field, text) in [(1, &result.data_type), (2, &result.model)] {
        if !text.is_empty() {
            out.push(field << 3 | LENGTH_DELIMITED as u8);
            write_varint(out, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
    }
    if result.result != 0.0 {
        out.push(3 << 3 | FIXED64 as u8);
        out.extend_from_slice(&result.result.to_le_bytes());
    }
    if result.duration_ns != 0 {
        out.push(4 << 3 | VARINT as u8);
        write_varint(out, result.duration_ns as u64);
    }
    if result.served {
        out.extend_from_slice(&[5 << 3 | VARINT as u8, 1]);
    }
    if result.partition != 0 {
        out.push(6 << 3 | VARINT as u8);
        // int32 is sign-extended to 64 bits: -1 takes ten bytes.
        write_varint(out, i64::from(result.partition) as u64);
    }
    if result.offset != 0 {
        out.push(7 << 3 | VARINT as u8);
        write_varint(out, result.offset as u64);
    }
    if result.ts != 0 {
        out.push(8 << 3 | VARINT as u8);
        write_varint(out, result.ts as u64);
    }
    if !result.reason.is_empty() {
        out.push(9 << 3 | LENGTH_DELIMITED as u8);
        write_varint(out, result.reason.len() as u64);
        out.extend_from_slice(result.reason.as_bytes());
    }
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wine_record() -> impl Strategy<Value = WineRecord> {
        (
            proptest::array::uniform11(prop_oneof![
                any::<f64>(),
                Just(0.0),
                Just(-0.0),
                Just(f64::NAN)
            ]),
            ".{0,12}",
            any::<i64>(),
        )
            .prop_map(|(features, data_type, ts)| {
                WineRecord::from_features(features, data_type, ts)
            })
    }

    /// Equal as encoded (NaN is not equal to itself).
    fn same(a: &WineRecord, b: &WineRecord) -> bool {
        a.encode_to_vec() == b.encode_to_vec()
    }

    proptest! {
        #[test]
        fn wine_records_decode_as_prost_decodes_them(record in wine_record()) {
            let bytes = record.encode_to_vec();
            let fast = decode_wine_record(&bytes).unwrap();
            prop_assert!(same(&fast, &WineRecord::decode(bytes.as_slice()).unwrap()));
            prop_assert!(same(&fast, &record));
            // It took the fast path.
            prop_assert!(decode_common(&bytes).is_some());
        }

        /// Whatever the bytes, the answer is prost's: a record where it
        /// finds one, an error where it fails.
        #[test]
        fn any_bytes_decode_as_prost_decodes_them(
            record in wine_record(),
            cut in any::<prop::sample::Index>(),
            noise in proptest::collection::vec(any::<u8>(), 0..24),
            splice in any::<prop::sample::Index>(),
        ) {
            let mut bytes = record.encode_to_vec();
            bytes.truncate(cut.index(bytes.len() + 1));
            let at = splice.index(bytes.len() + 1);
            bytes.splice(at..at, noise);
            match (decode_wine_record(&bytes), WineRecord::decode(bytes.as_slice())) {
                (Ok(fast), Ok(slow)) => prop_assert!(same(&fast, &slow)),
                (Err(_), Err(_)) => {}
                (fast, slow) => prop_assert!(false, "{fast:?} but prost: {slow:?}"),
            }
        }

        #[test]
        fn serving_results_encode_as_prost_encodes_them(
            data_type in ".{0,12}",
            model in ".{0,40}",
            result in prop_oneof![any::<f64>(), Just(0.0), Just(-0.0), Just(f64::NAN)],
            duration_ns in prop_oneof![any::<i64>(), Just(0)],
            served in any::<bool>(),
            partition in prop_oneof![any::<i32>(), Just(0), Just(-1)],
            offset in prop_oneof![any::<i64>(), Just(0), Just(-1)],
            ts in prop_oneof![any::<i64>(), Just(0)],
            reason in prop_oneof![Just(String::new()), ".{0,60}"],
        ) {
            let result = ServingResult {
                data_type, model, result, duration_ns, served, partition, offset, ts, reason,
            };
            let mut out = vec![7];
            encode_serving_result(&result, &mut out);
            let expected = result.encode_to_vec();
            prop_assert_eq!(&out[1..], expected.as_slice());
        }
    }

    #[test]
    fn odd_layouts_go_to_prost() {
        // An unknown field, a feature sent as a varint, a repeated field
        // (the last one wins, in both).
        let mut unknown = WineRecord::from_features([1.0; 11], "wine", 5).encode_to_vec();
        unknown.extend_from_slice(&[14 << 3, 1]);
        let mut repeated = WineRecord::from_features([1.0; 11], "a", 5).encode_to_vec();
        repeated.extend_from_slice(&[12 << 3 | 2, 1, b'b', 13 << 3, 9]);
        for (bytes, fast) in [(unknown, false), (vec![1 << 3, 1], false), (repeated, true)] {
            assert_eq!(decode_common(&bytes).is_some(), fast, "{bytes:?}");
            assert_eq!(
                decode_wine_record(&bytes).map(|r| r.encode_to_vec()),
                WineRecord::decode(bytes.as_slice()).map(|r| r.encode_to_vec()),
                "{bytes:?}"
            );
        }
        let last = decode_wine_record(&[12 << 3 | 2, 1, b'a', 12 << 3 | 2, 1, b'b']).unwrap();
        assert_eq!(last.data_type, "b");
    }
}
