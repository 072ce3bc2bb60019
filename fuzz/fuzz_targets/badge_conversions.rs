//! The badge lookup's outside bytes: the raw id a reader or client sends (any text), through
//! `normalize_raw` and a conversion pipeline, and the pipeline's configuration text. Nothing
//! may panic, and the invariants below must hold.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use lintel_core::badge::{MAX_VALUE_CHARS, Pipeline, normalize_raw};

/// A conversion step: mostly well-formed (so the fuzzer reaches deep into the pipeline),
/// sometimes any text (so the step parser sees garbage too).
#[derive(Debug, Arbitrary)]
enum Spec {
    HexToDecimal,
    DecimalToHex,
    ReverseBytes,
    Width(u8),
    Bits { start: u16, len: u8, pad: Option<u8> },
    Join(Vec<Spec>),
    Wiegand { bits: u8, format: u8 },
    StripLeadingZeros,
    Pad(u8),
    Upper,
    Lower,
    Text(String),
}

impl Spec {
    fn text(&self) -> String {
        match self {
            Self::HexToDecimal => "hex_to_decimal".into(),
            Self::DecimalToHex => "decimal_to_hex".into(),
            Self::ReverseBytes => "reverse_bytes".into(),
            Self::Width(n) => format!("width:{n}"),
            Self::Bits { start, len, pad: None } => format!("bits:{start}:{len}"),
            Self::Bits { start, len, pad: Some(p) } => format!("bits:{start}:{len}:{p}"),
            Self::Join(parts) => parts.iter().map(Spec::text).collect::<Vec<_>>().join("+"),
            Self::Wiegand { bits, format } => {
                let bits = [26, 34, 37][usize::from(*bits) % 3];
                let format = ["", ":fc:card", ":card", ":fccard"][usize::from(*format) % 4];
                format!("wiegand{bits}{format}")
            }
            Self::StripLeadingZeros => "strip_leading_zeros".into(),
            Self::Pad(n) => format!("pad:{n}"),
            Self::Upper => "upper".into(),
            Self::Lower => "lower".into(),
            Self::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    steps: Vec<Spec>,
    raw: String,
}

fn one(step: &str, value: &str) -> Option<String> {
    Pipeline::parse(&[step]).ok()?.convert(value).ok()
}

fuzz_target!(|input: Input| {
    let steps: Vec<String> = input.steps.iter().map(Spec::text).collect();
    let raw = input.raw.as_str();

    // Normalizing is idempotent, and a pipeline sees the same id either way.
    let normalized = normalize_raw(raw);
    if let Ok(hex) = &normalized {
        assert_eq!(normalize_raw(hex).as_ref(), Ok(hex));
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
    }

    if let Ok(pipeline) = Pipeline::parse(&steps) {
        let converted = pipeline.convert(raw);
        // An accepted pipeline's values stay small, whatever the id.
        if let Ok(value) = &converted {
            assert!(value.len() <= MAX_VALUE_CHARS, "{steps:?} made {} characters", value.len());
        }
        // Errors are the input's: an id normalization refuses is refused by every pipeline.
        if normalized.is_err() {
            assert!(converted.is_err());
        } else {
            assert_eq!(pipeline.convert(normalized.as_ref().unwrap()), converted);
        }
        // The configuration's text parses again to the same pipeline.
        let text: Vec<String> = steps.iter().map(|s| s.trim().to_owned()).collect();
        assert_eq!(Pipeline::parse(&text).as_ref(), Ok(&pipeline));
    }

    let Ok(hex) = normalized else { return };
    // Byte reversal is its own inverse.
    if let Some(reversed) = one("reverse_bytes", &hex) {
        assert_eq!(one("reverse_bytes", &reversed).as_deref(), Some(hex.as_str()));
    }
    // Decimal and back is the same number.
    if let Some(decimal) = one("hex_to_decimal", &hex) {
        assert!(decimal.bytes().all(|b| b.is_ascii_digit()));
        let back = one("decimal_to_hex", &decimal).expect("a decimal converts back to hex");
        assert_eq!(one("hex_to_decimal", &back).as_deref(), Some(decimal.as_str()));
        assert_eq!(back.trim_start_matches('0'), hex.trim_start_matches('0'));
    }
    // A Wiegand number is within its widths.
    for (step, facility_max, card_max) in
        [("wiegand26", 1u128 << 8, 1u128 << 16), ("wiegand34", 1 << 16, 1 << 16), ("wiegand37", 1 << 16, 1 << 19)]
    {
        if let Some(out) = one(step, &hex) {
            let (facility, card) = out.split_once(':').expect("FC:CARD");
            assert!(facility.parse::<u128>().unwrap() < facility_max, "{step} {hex} -> {out}");
            assert!(card.parse::<u128>().unwrap() < card_max, "{step} {hex} -> {out}");
            // Joined, each is zero-padded to the digits of its largest value.
            let joined = one(&format!("{step}:fccard"), &hex).expect("the same frame, joined");
            let (fw, cw) = (facility_max.to_string().len(), card_max.to_string().len());
            assert_eq!(joined, format!("{facility:0>fw$}{card:0>cw$}"), "{step} {hex}");
        }
    }
});
