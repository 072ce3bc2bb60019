//! Card data as readers send it, as a bit string, turned into the card UID lintel matches.
//!
//! OSDP's card-data reply (`osdp_RAW`) and Wiegand captures carry a bit count and the bits
//! packed most significant first, left-justified: the first bit read is the top bit of the
//! first byte, and the last byte is padded with zero bits at its low end. lintel reads
//! those bits as one number and writes it right-justified in whole bytes, upper-case hex:
//! 32 bits `04 A1 B2 C3` stay `04A1B2C3`; a 26-bit Wiegand frame becomes 8 hex digits
//! whose top 6 bits are zero, which is the form the badge lookup's `wiegand26` step reads.

/// The most bits accepted: 32 bytes, the longest card UID lintel stores.
pub const MAX_BITS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardBitsError {
    #[error("the card data has no bits")]
    Empty,
    #[error("the card data has {bits} bits; at most {MAX_BITS} are accepted")]
    TooLong { bits: usize },
    #[error("{bits} bits need {needed} bytes of card data, but {got} came")]
    Length { bits: usize, needed: usize, got: usize },
}

/// The card UID (upper-case hex, whole bytes) of `bits` bits packed left-justified in `data`.
pub fn uid_from_bits(bits: usize, data: &[u8]) -> Result<String, CardBitsError> {
    if bits == 0 {
        return Err(CardBitsError::Empty);
    }
    if bits > MAX_BITS {
        return Err(CardBitsError::TooLong { bits });
    }
    let needed = bits.div_ceil(8);
    if data.len() != needed {
        return Err(CardBitsError::Length { bits, needed, got: data.len() });
    }
    // Shifting the whole string right by the padding drops the pad bits and right-justifies.
    let pad = (needed * 8 - bits) as u32;
    let uid: Vec<u8> = (0..needed)
        .map(|i| {
            let carried = if i > 0 && pad > 0 { data[i - 1] << (8 - pad) } else { 0 };
            (data[i] >> pad) | carried
        })
        .collect();
    Ok(hex::encode_upper(uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::badge::Pipeline;

    #[test]
    fn whole_bytes_stay_as_they_are() {
        assert_eq!(uid_from_bits(32, &[0x04, 0xA1, 0xB2, 0xC3]).unwrap(), "04A1B2C3");
        assert_eq!(uid_from_bits(16, &[0x55, 0xAA]).unwrap(), "55AA");
        assert_eq!(uid_from_bits(56, &[0x04, 0x6B, 0x2C, 0x92, 0x4E, 0x61, 0x80]).unwrap(), "046B2C924E6180");
    }

    #[test]
    fn partial_bytes_are_right_justified() {
        // H10301 facility 1, card 1: frame 1 00000001 0000000000000001 0 = 0x2020002,
        // sent left-justified as 80 80 00 80.
        assert_eq!(uid_from_bits(26, &[0x80, 0x80, 0x00, 0x80]).unwrap(), "02020002");
        // 4 bits 1010 arrive as A0.
        assert_eq!(uid_from_bits(4, &[0xA0]).unwrap(), "0A");
        // 9 bits 1 1111 1111 arrive as FF 80.
        assert_eq!(uid_from_bits(9, &[0xFF, 0x80]).unwrap(), "01FF");
        // Pad bits that are not zero are dropped, not carried into the UID.
        assert_eq!(uid_from_bits(12, &[0xAB, 0xCF]).unwrap(), "0ABC");
    }

    #[test]
    fn a_wiegand_frame_reads_back_through_the_badge_lookup() {
        // H10301 facility 18, card 4660 (0x1234): even parity over the first 12 bits, odd
        // over the last 12. Frame bits: P 00010010 0001001000110100 P.
        let frame: u32 = (0x12 << 17) | (0x1234 << 1);
        let even = (frame >> 13) & 0xFFF;
        let odd = (frame >> 1) & 0xFFF;
        let frame = frame | ((even.count_ones() % 2) << 25) | (1 - odd.count_ones() % 2);
        let sent = (frame << 6).to_be_bytes();
        let uid = uid_from_bits(26, &sent).unwrap();
        assert_eq!(uid, format!("{frame:08X}"));
        assert_eq!(Pipeline::parse(&["wiegand26"]).unwrap().convert(&uid).unwrap(), "18:4660");
    }

    #[test]
    fn malformed_card_data_is_refused() {
        assert_eq!(uid_from_bits(0, &[]), Err(CardBitsError::Empty));
        assert_eq!(uid_from_bits(26, &[0x80, 0x80, 0x00]), Err(CardBitsError::Length { bits: 26, needed: 4, got: 3 }));
        assert_eq!(uid_from_bits(8, &[1, 2]), Err(CardBitsError::Length { bits: 8, needed: 1, got: 2 }));
        assert_eq!(uid_from_bits(257, &[0; 33]), Err(CardBitsError::TooLong { bits: 257 }));
        assert_eq!(uid_from_bits(256, &[0xFF; 32]).unwrap(), "FF".repeat(32));
    }

    #[test]
    fn every_uid_is_one_lintel_accepts() {
        for bits in 1..=MAX_BITS {
            let data = vec![0xA5; bits.div_ceil(8)];
            let uid = uid_from_bits(bits, &data).unwrap();
            assert_eq!(crate::credential::normalize_uid(&uid).unwrap(), uid, "{bits} bits");
        }
    }
}
