//! Property tests: no document, however broken, makes parsing, binding or
//! scoring panic or run away. The inputs are arbitrary bytes, and the
//! tutorial's seven PMML files with bytes flipped, replaced, inserted,
//! cut off, or with whole elements repeated (which deepens nesting and
//! multiplies segments).

mod common;

use std::time::{Duration, Instant};

use common::data_folder::{PMML_STEMS as FILES, pmml_file};
use pmml::Pmml;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// How long one hostile document may take to parse, bind and score four
/// rows here: far above what any of them needs, so that only a runaway
/// (a loop or a blow-up in the document's size) trips it.
const BOUND: Duration = Duration::from_secs(20);

fn read(stem: &str) -> Vec<u8> {
    std::fs::read(pmml_file(stem)).unwrap()
}

/// Parses, binds and scores rows of extreme values: nothing may panic
/// (proptest reports a panic as a failure), and it all ends in time.
fn parse_bind_and_score(bytes: &[u8]) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let text = String::from_utf8_lossy(bytes);
    if let Ok(pmml) = Pmml::parse(&text)
        && let Ok(scorer) = pmml.bind(&proto::FEATURE_NAMES)
    {
        for x in [0.0, -1e300, f64::NAN, f64::INFINITY] {
            let _ = scorer.score(&[x; 11]);
        }
    }
    let took = start.elapsed();
    prop_assert!(took < BOUND, "took {took:?}");
    Ok(())
}

/// Repeats the element starting at the `at`-th `<` of `bytes` inside
/// itself `times` times, when that `<` opens an element whose end tag is
/// found: `<a ...>body</a>` becomes `<a ...><a ...>body</a></a>`, and so
/// on.
fn nest(bytes: &[u8], at: prop::sample::Index, times: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let opens: Vec<usize> = text
        .match_indices('<')
        .map(|(i, _)| i)
        .filter(|&i| text[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic()))
        .collect();
    if opens.is_empty() {
        return bytes.to_vec();
    }
    let start = opens[at.index(opens.len())];
    let name_end = text[start + 1..]
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .map_or(text.len(), |n| start + 1 + n);
    let name = &text[start + 1..name_end];
    let Some(tag_end) = text[start..].find('>').map(|n| start + n + 1) else {
        return bytes.to_vec();
    };
    let close = format!("</{name}>");
    let Some(end) = text[tag_end..].find(&close).map(|n| tag_end + n) else {
        return bytes.to_vec();
    };
    let open = &text[start..tag_end];
    let mut out = String::with_capacity(text.len() + times * (open.len() + close.len()));
    out.push_str(&text[..tag_end]);
    for _ in 0..times {
        out.push_str(open);
    }
    out.push_str(&text[tag_end..end]);
    for _ in 0..times {
        out.push_str(&close);
    }
    out.push_str(&text[end..]);
    out.into_bytes()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        parse_bind_and_score(&bytes)?;
    }

    #[test]
    fn arbitrary_markup_never_panics(
        text in r#"(<[A-Za-z]{1,12}( [a-zA-Z]{1,8}="[^"<]{0,8}")*/?>|</[A-Za-z]{1,12}>|[^<]{0,8}){0,64}"#
    ) {
        parse_bind_and_score(format!("<PMML>{text}</PMML>").as_bytes())?;
    }

    #[test]
    fn mutated_models_never_panic(
        file in 0..FILES.len(),
        cut in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..8),
    ) {
        let mut bytes = read(FILES[file]);
        for (at, value, how) in edits {
            let at = at.index(bytes.len());
            match how {
                0 => bytes[at] ^= 1 << (value % 8),
                1 => bytes[at] = value,
                _ => bytes.insert(at, value),
            }
        }
        // A quarter of the cases end the document early.
        bytes.truncate(cut.index(bytes.len() * 4));
        parse_bind_and_score(&bytes)?;
    }

    #[test]
    fn models_with_elements_nested_in_themselves_never_panic(
        file in 0..FILES.len(),
        at in any::<prop::sample::Index>(),
        times in prop_oneof![1..8usize, 200..300usize, 5_000..6_000usize],
    ) {
        parse_bind_and_score(&nest(&read(FILES[file]), at, times))?;
    }
}
