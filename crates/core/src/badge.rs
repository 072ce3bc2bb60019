//! Badge id conversions: the pipeline that turns the raw id a reader sends (hex) into the
//! form a badge system stores (decimal, byte-reversed, bit slices, Wiegand numbers).
//!
//! A pipeline is an ordered list of steps, parsed once from the configuration. The value
//! flowing through it is text; the input is the reader's hex id (separators `:`, `-` and
//! spaces dropped, upper case). Steps that read the value as a number or as bits expect hex
//! text, so they come before the steps that produce decimal text.
//!
//! | step | input | output |
//! |---|---|---|
//! | `hex_to_decimal` | hex (up to 32 digits) | the number in decimal |
//! | `decimal_to_hex` | decimal | the number in upper-case hex, an even number of digits |
//! | `reverse_bytes` | hex, even length | the bytes in reverse order (`04A1B2C3` -> `C3B2A104`) |
//! | `width:N` | hex | unchanged, but the next step reads it as exactly N bits: higher bits must be zero, missing ones are zeros (`width:38` for a 38-bit id sent as 10 hex digits) |
//! | `bits:S:L[:P]` | hex | bits S..S+L of the value (0 = most significant, over 4 bits per hex digit) as decimal, zero-padded to P digits |
//! | `A+B+...` | | each part applied to the same input, the results joined as text (`bits:0:19+bits:19:19`) |
//! | `wiegand26[:FORMAT]`, `wiegand34`, `wiegand37` | hex of a Wiegand frame | facility code and card number, parity checked |
//! | `strip_leading_zeros` | text | without leading `0`s (but `0` stays `0`) |
//! | `pad:N` | text | zero-padded on the left to N characters |
//! | `upper`, `lower` | text | in upper or lower case |
//!
//! Wiegand frames: the frame's bits are the low bits of the hex value (26 bits are 7 hex
//! digits with two leading zero bits). 26-bit (H10301): even parity over bits 1-12, 8-bit
//! facility, 16-bit card, odd parity over bits 13-24. 34-bit: even parity over 1-16,
//! 16-bit facility, 16-bit card, odd parity over 17-32. 37-bit (H10304): even parity over
//! 1-18, 16-bit facility, 19-bit card, odd parity over 18-35. FORMAT is `fc:card` (the
//! default, `123:4567`), `card` (the card number alone) or `fccard` (facility code and
//! card number zero-padded to their widths in decimal and joined: `12304567` for 26-bit).

use std::fmt;

/// The longest raw id accepted (hex digits): 32 bytes, as for card UIDs.
pub const MAX_RAW_DIGITS: usize = 64;

/// A step of the configuration that is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("conversion step {step:?}: {reason}")]
pub struct StepError {
    pub step: String,
    pub reason: String,
}

/// Why a raw id could not be converted: the request's fault, never the server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    #[error("the badge id must be hexadecimal digits")]
    NotHex,
    #[error("the badge id is empty")]
    Empty,
    #[error("the badge id is longer than {MAX_RAW_DIGITS} hex digits")]
    TooLong,
    #[error("{step}: needs whole bytes (an even number of hex digits)")]
    OddLength { step: &'static str },
    #[error("{step}: the value is not a number")]
    NotNumber { step: &'static str },
    #[error("{step}: the value is too large")]
    TooLarge { step: &'static str },
    #[error("the value does not fit in {bits} bits")]
    TooWide { bits: u32 },
    #[error("bits {start}..{end} are beyond the value's {len} bits")]
    SliceOutOfRange { start: u32, end: u32, len: u32 },
    #[error("Wiegand {bits}: {which} parity is wrong")]
    Parity { bits: u32, which: &'static str },
}

/// How a Wiegand step writes its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WiegandFormat {
    /// `FC:CARD`, both in decimal.
    FacilityCard,
    /// The card number alone.
    Card,
    /// Facility code and card number zero-padded to their widths, joined.
    Joined,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wiegand {
    bits: u32,
    facility_bits: u32,
    card_bits: u32,
    /// Inclusive ranges of frame bits (0 = the first bit sent) each parity bit covers.
    even: (u32, u32),
    odd: (u32, u32),
}

const WIEGAND26: Wiegand = Wiegand { bits: 26, facility_bits: 8, card_bits: 16, even: (1, 12), odd: (13, 24) };
const WIEGAND34: Wiegand = Wiegand { bits: 34, facility_bits: 16, card_bits: 16, even: (1, 16), odd: (17, 32) };
const WIEGAND37: Wiegand = Wiegand { bits: 37, facility_bits: 16, card_bits: 19, even: (1, 18), odd: (18, 35) };

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    HexToDecimal,
    DecimalToHex,
    ReverseBytes,
    Width(u32),
    Bits { start: u32, len: u32, pad: usize },
    Join(Vec<Step>),
    Wiegand(Wiegand, WiegandFormat),
    StripLeadingZeros,
    Pad(usize),
    Upper,
    Lower,
}

/// A parsed conversion pipeline; the empty pipeline passes the normalized hex id through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipeline {
    steps: Vec<Step>,
    text: Vec<String>,
}

impl fmt::Display for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}]", self.text.join(", "))
    }
}

fn number<T: std::str::FromStr>(step: &str, what: &str, text: Option<&str>) -> Result<T, StepError> {
    text.and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| StepError { step: step.to_owned(), reason: format!("{what} must be a number") })
}

fn parse_step(text: &str) -> Result<Step, StepError> {
    let text = text.trim();
    let err = |reason: &str| StepError { step: text.to_owned(), reason: reason.to_owned() };
    if text.contains('+') {
        let parts = text.split('+').map(parse_step).collect::<Result<Vec<_>, _>>()?;
        return Ok(Step::Join(parts));
    }
    let mut args = text.split(':');
    let name = args.next().unwrap_or("").trim().to_ascii_lowercase();
    let rest: Vec<&str> = args.collect();
    let no_args = |step: Step| if rest.is_empty() { Ok(step) } else { Err(err("takes no arguments")) };
    match name.as_str() {
        "hex_to_decimal" => no_args(Step::HexToDecimal),
        "decimal_to_hex" => no_args(Step::DecimalToHex),
        "reverse_bytes" => no_args(Step::ReverseBytes),
        "strip_leading_zeros" => no_args(Step::StripLeadingZeros),
        "upper" => no_args(Step::Upper),
        "lower" => no_args(Step::Lower),
        "width" => {
            let [n] = rest[..] else { return Err(err("is width:N")) };
            let n: u32 = number(text, "N", Some(n))?;
            if !(1..=128).contains(&n) {
                return Err(err("N is 1 to 128"));
            }
            Ok(Step::Width(n))
        }
        "pad" => {
            let [n] = rest[..] else { return Err(err("is pad:N")) };
            let n: usize = number(text, "N", Some(n))?;
            if !(1..=64).contains(&n) {
                return Err(err("N is 1 to 64"));
            }
            Ok(Step::Pad(n))
        }
        "bits" => {
            if !(2..=3).contains(&rest.len()) {
                return Err(err("is bits:START:LEN or bits:START:LEN:PAD"));
            }
            let start: u32 = number(text, "START", rest.first().copied())?;
            let len: u32 = number(text, "LEN", rest.get(1).copied())?;
            let pad: usize = match rest.get(2) {
                Some(p) => number(text, "PAD", Some(p))?,
                None => 0,
            };
            if !(1..=128).contains(&len) || start > 256 || pad > 64 {
                return Err(err("LEN is 1 to 128, START at most 256, PAD at most 64"));
            }
            Ok(Step::Bits { start, len, pad })
        }
        "wiegand26" | "wiegand34" | "wiegand37" => {
            let w = match name.as_str() {
                "wiegand26" => WIEGAND26,
                "wiegand34" => WIEGAND34,
                _ => WIEGAND37,
            };
            let format = match rest.join(":").to_ascii_lowercase().as_str() {
                "" | "fc:card" => WiegandFormat::FacilityCard,
                "card" => WiegandFormat::Card,
                "fccard" => WiegandFormat::Joined,
                _ => return Err(err("the format is fc:card, card or fccard")),
            };
            Ok(Step::Wiegand(w, format))
        }
        "" => Err(err("is empty")),
        _ => Err(err("is not a known step (hex_to_decimal, decimal_to_hex, reverse_bytes, width:N, bits:START:LEN, \
             wiegand26, wiegand34, wiegand37, strip_leading_zeros, pad:N, upper, lower)")),
    }
}

/// The raw id as the pipeline receives it: separators dropped, upper case, hex only.
pub fn normalize_raw(raw: &str) -> Result<String, ConvertError> {
    let hex: String = raw.chars().filter(|c| !matches!(c, ':' | '-' | ' ')).collect::<String>().to_ascii_uppercase();
    if hex.is_empty() {
        return Err(ConvertError::Empty);
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConvertError::NotHex);
    }
    if hex.len() > MAX_RAW_DIGITS {
        return Err(ConvertError::TooLong);
    }
    Ok(hex)
}

fn hex_digits(value: &str) -> Result<&str, ConvertError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ConvertError::NotHex);
    }
    Ok(value)
}

/// The bits of hex text, most significant first, 4 per digit.
fn to_bits(value: &str) -> Result<Vec<bool>, ConvertError> {
    let digits = hex_digits(value)?;
    Ok(digits
        .chars()
        .flat_map(|c| {
            let d = c.to_digit(16).unwrap_or(0);
            (0..4).rev().map(move |i| (d >> i) & 1 == 1)
        })
        .collect())
}

/// Keeps the low `width` bits; the higher ones must be zero.
/// Exactly `width` bits of the same number: the higher ones must be zero, and a shorter
/// value gains leading zeros (`1` in 26 bits is a frame too).
fn narrow(bits: &[bool], width: u32) -> Result<Vec<bool>, ConvertError> {
    let width = width as usize;
    if bits.len() <= width {
        return Ok(std::iter::repeat_n(false, width - bits.len()).chain(bits.iter().copied()).collect());
    }
    let (high, low) = bits.split_at(bits.len() - width);
    if high.iter().any(|b| *b) {
        return Err(ConvertError::TooWide { bits: width as u32 });
    }
    Ok(low.to_vec())
}

fn bits_value(bits: &[bool]) -> u128 {
    bits.iter().fold(0u128, |acc, b| (acc << 1) | u128::from(*b))
}

fn wiegand(w: Wiegand, format: WiegandFormat, all: &[bool]) -> Result<String, ConvertError> {
    let frame = narrow(all, w.bits)?;
    let frame = frame.as_slice();
    if frame.len() != w.bits as usize {
        return Err(ConvertError::TooWide { bits: w.bits });
    }
    let ones = |(from, to): (u32, u32)| frame[from as usize..=to as usize].iter().filter(|b| **b).count();
    if (ones(w.even) + usize::from(frame[0])) % 2 != 0 {
        return Err(ConvertError::Parity { bits: w.bits, which: "even (leading)" });
    }
    if (ones(w.odd) + usize::from(frame[w.bits as usize - 1])) % 2 != 1 {
        return Err(ConvertError::Parity { bits: w.bits, which: "odd (trailing)" });
    }
    let fc_end = 1 + w.facility_bits as usize;
    let facility = bits_value(&frame[1..fc_end]);
    let card = bits_value(&frame[fc_end..fc_end + w.card_bits as usize]);
    Ok(match format {
        WiegandFormat::FacilityCard => format!("{facility}:{card}"),
        WiegandFormat::Card => card.to_string(),
        WiegandFormat::Joined => {
            let fc_width = (1u128 << w.facility_bits).to_string().len();
            let card_width = (1u128 << w.card_bits).to_string().len();
            format!("{facility:0fc_width$}{card:0card_width$}")
        }
    })
}

/// Applies one step; `width` is what a preceding `width:N` declared (it holds until a step
/// changes the value).
fn apply(step: &Step, value: &str, width: Option<u32>) -> Result<String, ConvertError> {
    let bits = |value: &str| -> Result<Vec<bool>, ConvertError> {
        let all = to_bits(value)?;
        Ok(match width {
            Some(w) => narrow(&all, w)?,
            None => all,
        })
    };
    Ok(match step {
        Step::HexToDecimal => {
            let digits = hex_digits(value)?;
            let trimmed = digits.trim_start_matches('0');
            if trimmed.len() > 32 {
                return Err(ConvertError::TooLarge { step: "hex_to_decimal" });
            }
            u128::from_str_radix(if trimmed.is_empty() { "0" } else { trimmed }, 16)
                .map_err(|_| ConvertError::TooLarge { step: "hex_to_decimal" })?
                .to_string()
        }
        Step::DecimalToHex => {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConvertError::NotNumber { step: "decimal_to_hex" });
            }
            let n: u128 = value.parse().map_err(|_| ConvertError::TooLarge { step: "decimal_to_hex" })?;
            let hex = format!("{n:X}");
            if hex.len() % 2 == 1 { format!("0{hex}") } else { hex }
        }
        Step::ReverseBytes => {
            let digits = hex_digits(value)?;
            if digits.len() % 2 == 1 {
                return Err(ConvertError::OddLength { step: "reverse_bytes" });
            }
            digits.as_bytes().chunks(2).rev().flat_map(|b| b.iter().map(|c| *c as char)).collect()
        }
        Step::Width(n) => {
            narrow(&to_bits(value)?, *n)?;
            value.to_owned()
        }
        Step::Bits { start, len, pad } => {
            let all = bits(value)?;
            let end = start + len;
            if end as usize > all.len() {
                return Err(ConvertError::SliceOutOfRange { start: *start, end, len: all.len() as u32 });
            }
            let n = bits_value(&all[*start as usize..end as usize]);
            format!("{n:0pad$}")
        }
        Step::Join(parts) => {
            let mut out = String::new();
            for part in parts {
                out.push_str(&apply(part, value, width)?);
            }
            out
        }
        Step::Wiegand(w, format) => wiegand(*w, *format, &bits(value)?)?,
        Step::StripLeadingZeros => {
            let s = value.trim_start_matches('0');
            if s.is_empty() && !value.is_empty() { "0".to_owned() } else { s.to_owned() }
        }
        Step::Pad(n) => format!("{value:0>n$}"),
        Step::Upper => value.to_ascii_uppercase(),
        Step::Lower => value.to_ascii_lowercase(),
    })
}

/// The longest value a pipeline may produce from the longest raw id.
pub const MAX_VALUE_CHARS: usize = 1024;

/// The longest value a step can make of a value of `len` characters.
fn longest(step: &Step, len: usize) -> usize {
    match step {
        Step::HexToDecimal => u128::MAX.to_string().len(),
        Step::DecimalToHex => 32,
        Step::Bits { pad, .. } => (*pad).max(u128::MAX.to_string().len()),
        Step::Join(parts) => parts.iter().map(|p| longest(p, len)).fold(0, usize::saturating_add),
        // `65535:524287`, the widest a facility code and card number get.
        Step::Wiegand(..) => 12,
        Step::Pad(n) => len.max(*n),
        Step::ReverseBytes | Step::Width(_) | Step::StripLeadingZeros | Step::Upper | Step::Lower => len,
    }
}

impl Pipeline {
    /// Parses the configured steps; an unknown step or a bad argument is a config error, and
    /// so is a pipeline whose values could grow without bound (`upper+upper` doubles the
    /// value: thirty of them would want gigabytes for one lookup).
    pub fn parse<S: AsRef<str>>(steps: &[S]) -> Result<Self, StepError> {
        let parsed = steps.iter().map(|s| parse_step(s.as_ref())).collect::<Result<Vec<_>, _>>()?;
        let mut len = MAX_RAW_DIGITS;
        for (step, text) in parsed.iter().zip(steps) {
            len = longest(step, len);
            if len > MAX_VALUE_CHARS {
                return Err(StepError {
                    step: text.as_ref().trim().to_owned(),
                    reason: format!("makes values longer than {MAX_VALUE_CHARS} characters"),
                });
            }
        }
        Ok(Self { steps: parsed, text: steps.iter().map(|s| s.as_ref().trim().to_owned()).collect() })
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Converts a raw id (hex, as a reader sends it).
    pub fn convert(&self, raw: &str) -> Result<String, ConvertError> {
        let mut value = normalize_raw(raw)?;
        let mut width = None;
        for step in &self.steps {
            value = apply(step, &value, width)?;
            width = match step {
                Step::Width(n) => Some(*n),
                _ => None,
            };
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn convert(steps: &[&str], raw: &str) -> Result<String, ConvertError> {
        Pipeline::parse(steps).unwrap().convert(raw)
    }

    /// A Wiegand 26 frame for facility `fc` and card `card`, with correct parity, as hex.
    fn w26(fc: u32, card: u32) -> u32 {
        let data = (fc << 16) | card; // 24 bits
        let high = (data >> 12) & 0xFFF;
        let low = data & 0xFFF;
        let even = high.count_ones() % 2; // makes the leading 13 bits even
        let odd = 1 - low.count_ones() % 2; // makes the trailing 13 bits odd
        (even << 25) | (data << 1) | odd
    }

    #[test]
    fn empty_pipeline_passes_the_normalized_id() {
        assert_eq!(convert(&[], "04:a1:b2:c3").unwrap(), "04A1B2C3");
    }

    #[test]
    fn hex_to_decimal_and_back() {
        assert_eq!(convert(&["hex_to_decimal"], "04A1B2C3").unwrap(), "77705923");
        assert_eq!(convert(&["hex_to_decimal"], "00").unwrap(), "0");
        assert_eq!(convert(&["hex_to_decimal", "decimal_to_hex"], "04A1B2C3").unwrap(), "04A1B2C3");
        assert_eq!(
            convert(&["hex_to_decimal"], &"F".repeat(33)),
            Err(ConvertError::TooLarge { step: "hex_to_decimal" })
        );
    }

    #[test]
    fn byte_reversal() {
        assert_eq!(convert(&["reverse_bytes"], "04A1B2C3").unwrap(), "C3B2A104");
        assert_eq!(convert(&["reverse_bytes", "hex_to_decimal"], "04A1B2C3").unwrap(), "3283263748");
        assert_eq!(convert(&["reverse_bytes"], "ABC"), Err(ConvertError::OddLength { step: "reverse_bytes" }));
    }

    #[test]
    fn nineteen_plus_nineteen_bits_joined_as_text() {
        // A 38-bit id: high 19 bits = 12345, low 19 bits = 67890.
        let id: u64 = (12345 << 19) | 67890;
        let hex = format!("{id:010X}");
        assert_eq!(convert(&["width:38", "bits:0:19+bits:19:19"], &hex).unwrap(), "1234567890");
        // Joined as text, not added.
        assert_ne!(convert(&["width:38", "bits:0:19+bits:19:19"], &hex).unwrap(), (12345 + 67890).to_string());
        // Without width, the slices count from the hex's first bit (40 bits here).
        assert_eq!(convert(&["bits:2:19+bits:21:19"], &hex).unwrap(), "1234567890");
        // Zero-padded slices.
        assert_eq!(convert(&["width:38", "bits:0:19:6+bits:19:19:6"], &hex).unwrap(), "012345067890");
        // A shorter value is the same number: leading zeros are implied.
        assert_eq!(convert(&["width:38", "bits:0:19+bits:19:19"], "01").unwrap(), "01");
        assert_eq!(convert(&["wiegand26"], &format!("{:X}", w26(0, 1))).unwrap(), "0:1"); // the frame is 0x2
        // A value wider than declared is refused.
        assert_eq!(convert(&["width:38"], "FFFFFFFFFF"), Err(ConvertError::TooWide { bits: 38 }));
        assert!(matches!(convert(&["bits:30:19"], "0102030405"), Err(ConvertError::SliceOutOfRange { .. })));
    }

    #[test]
    fn wiegand26_known_vector() {
        // Facility 1, card 1: 0 00000001 0000000000000001 0 -> parity: even over 00000001 0000 = 1 one -> 1;
        // odd over 000000000001 = 1 one -> 0.
        let frame = w26(1, 1);
        assert_eq!(frame, (1 << 25) | (1 << 17) | (1 << 1)); // parity, facility 1, card 1, parity 0
        assert_eq!(convert(&["wiegand26"], &format!("{frame:07X}")).unwrap(), "1:1");
        // The classic: facility 123, card 45678.
        let hex = format!("{:07X}", w26(123, 45678));
        assert_eq!(convert(&["wiegand26"], &hex).unwrap(), "123:45678");
        assert_eq!(convert(&["wiegand26:card"], &hex).unwrap(), "45678");
        assert_eq!(convert(&["wiegand26:fccard"], &hex).unwrap(), "12345678");
        assert_eq!(convert(&["wiegand26:fccard"], &format!("{:07X}", w26(7, 42))).unwrap(), "00700042");
    }

    #[test]
    fn wiegand26_wrong_parity() {
        let frame = w26(123, 45678);
        let leading = frame ^ (1 << 25);
        let trailing = frame ^ 1;
        let data = frame ^ (1 << 5);
        assert_eq!(
            convert(&["wiegand26"], &format!("{leading:07X}")),
            Err(ConvertError::Parity { bits: 26, which: "even (leading)" })
        );
        assert_eq!(
            convert(&["wiegand26"], &format!("{trailing:07X}")),
            Err(ConvertError::Parity { bits: 26, which: "odd (trailing)" })
        );
        assert!(matches!(convert(&["wiegand26"], &format!("{data:07X}")), Err(ConvertError::Parity { .. })));
        // Too many bits for a 26-bit frame.
        assert_eq!(convert(&["wiegand26"], "FFFFFFFF"), Err(ConvertError::TooWide { bits: 26 }));
    }

    fn frame(w: Wiegand, fc: u128, card: u128) -> u128 {
        let data_bits = w.facility_bits + w.card_bits;
        let data = (fc << w.card_bits) | card;
        let at = |bit: u32| (data >> (data_bits - bit)) & 1; // frame bit `bit` (1-based data)
        let count = |(from, to): (u32, u32)| (from..=to).map(at).sum::<u128>();
        let even = count(w.even) % 2;
        let odd = 1 - count(w.odd) % 2;
        (even << (w.bits - 1)) | (data << 1) | odd
    }

    #[test]
    fn wiegand34_and_37() {
        let f34 = frame(WIEGAND34, 1000, 54321);
        assert_eq!(convert(&["wiegand34"], &format!("{f34:09X}")).unwrap(), "1000:54321");
        assert!(matches!(convert(&["wiegand34"], &format!("{:09X}", f34 ^ 1)), Err(ConvertError::Parity { .. })));
        let f37 = frame(WIEGAND37, 4242, 500_000);
        assert_eq!(convert(&["wiegand37"], &format!("{f37:010X}")).unwrap(), "4242:500000");
        assert_eq!(convert(&["wiegand37:card"], &format!("{f37:010X}")).unwrap(), "500000");
        assert!(matches!(
            convert(&["wiegand37"], &format!("{:010X}", f37 ^ (1 << 36))),
            Err(ConvertError::Parity { .. })
        ));
    }

    #[test]
    fn text_steps() {
        assert_eq!(convert(&["strip_leading_zeros"], "000A").unwrap(), "A");
        assert_eq!(convert(&["strip_leading_zeros"], "0000").unwrap(), "0");
        assert_eq!(convert(&["hex_to_decimal", "pad:10"], "FF").unwrap(), "0000000255");
        assert_eq!(convert(&["lower"], "ABCD").unwrap(), "abcd");
        assert_eq!(convert(&["lower", "upper"], "abcd").unwrap(), "ABCD");
    }

    /// Found writing the fuzz target's invariants: each `upper+upper` doubled the value, so a
    /// few dozen of them made one lookup allocate gigabytes. Now refused at start.
    #[test]
    fn values_cannot_grow_without_bound() {
        let doubling = vec!["upper+upper"; 40];
        let e = Pipeline::parse(&doubling).unwrap_err();
        assert!(e.reason.contains("longer than 1024"), "{e}");
        assert!(Pipeline::parse(&["pad:64+pad:64+pad:64+pad:64"; 2]).is_ok());
        assert!(Pipeline::parse(&["pad:64+pad:64+pad:64+pad:64"; 3]).is_err());
        assert!(Pipeline::parse(&["reverse_bytes+reverse_bytes", "lower+upper+lower+upper"]).is_ok());
        // Every accepted pipeline keeps to the bound, whatever the id.
        let widest = Pipeline::parse(&["upper+upper", "upper+upper", "upper+upper", "upper+upper"]).unwrap();
        assert_eq!(widest.convert(&"A".repeat(MAX_RAW_DIGITS)).unwrap().len(), MAX_VALUE_CHARS);
    }

    #[test]
    fn bad_raw_ids() {
        let p = Pipeline::default();
        assert_eq!(p.convert("xyz"), Err(ConvertError::NotHex));
        assert_eq!(p.convert(""), Err(ConvertError::Empty));
        assert_eq!(p.convert(&"A".repeat(65)), Err(ConvertError::TooLong));
        // A decimal step fed hex letters.
        assert!(convert(&["hex_to_decimal", "reverse_bytes"], "04A1B2C3").is_ok());
        assert_eq!(convert(&["decimal_to_hex"], "0A"), Err(ConvertError::NotNumber { step: "decimal_to_hex" }));
    }

    #[test]
    fn config_errors() {
        for bad in ["nope", "bits:1", "bits:a:3", "bits:0:0", "width:0", "width", "pad:x", "wiegand26:x", "upper:1", ""]
        {
            assert!(Pipeline::parse(&[bad]).is_err(), "{bad:?} should be refused");
        }
        let p = Pipeline::parse(&["reverse_bytes", " hex_to_decimal "]).unwrap();
        assert_eq!(p.to_string(), "[reverse_bytes, hex_to_decimal]");
    }

    proptest! {
        #[test]
        fn decimal_matches_the_number(n in any::<u64>()) {
            prop_assert_eq!(convert(&["hex_to_decimal"], &format!("{n:016X}")).unwrap(), n.to_string());
        }

        #[test]
        fn reversing_twice_is_identity(bytes in proptest::collection::vec(any::<u8>(), 1..32)) {
            let hex = hex::encode_upper(&bytes);
            prop_assert_eq!(convert(&["reverse_bytes", "reverse_bytes"], &hex).unwrap(), hex);
        }

        #[test]
        fn wiegand_round_trip(fc in 0u128..256, card in 0u128..65536, fc37 in 0u128..65536, card37 in 0u128..524288) {
            let f = frame(WIEGAND26, fc, card);
            prop_assert_eq!(convert(&["wiegand26"], &format!("{f:07X}")).unwrap(), format!("{fc}:{card}"));
            // Any single flipped bit breaks the parity or changes the number.
            let f37 = frame(WIEGAND37, fc37, card37);
            prop_assert_eq!(convert(&["wiegand37"], &format!("{f37:010X}")).unwrap(), format!("{fc37}:{card37}"));
        }

        #[test]
        fn single_bit_errors_are_caught_in_wiegand26(fc in 0u128..256, card in 0u128..65536, bit in 0u32..26) {
            let f = frame(WIEGAND26, fc, card) ^ (1 << bit);
            let result = convert(&["wiegand26"], &format!("{f:07X}"));
            prop_assert!(matches!(result, Err(ConvertError::Parity { .. })), "{:?}", result);
        }

        #[test]
        fn slices_join_as_text(high in 0u64..(1 << 19), low in 0u64..(1 << 19)) {
            let hex = format!("{:010X}", (high << 19) | low);
            prop_assert_eq!(convert(&["width:38", "bits:0:19+bits:19:19"], &hex).unwrap(), format!("{high}{low}"));
        }

        #[test]
        fn arbitrary_input_never_panics(raw in ".{0,80}") {
            for steps in [&["wiegand26"][..], &["width:38", "bits:0:19+bits:19:19"], &["reverse_bytes", "hex_to_decimal"]] {
                let _ = convert(steps, &raw);
            }
        }
    }
}
