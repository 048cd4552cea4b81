//! GPT-2's byte-level alphabet: every byte gets a printable character, so that
//! byte-level BPE vocabularies can store arbitrary bytes as text.
//!
//! Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls, space,
//! DEL, the C1 range, NBSP and the soft hyphen) take U+0100.. in byte order.

/// Whether `b` stands for itself.
fn is_printable(b: u32) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// The character that stands for byte `b`.
pub(crate) fn byte_to_char(b: u8) -> char {
    let b = u32::from(b);
    let code = if is_printable(b) {
        b
    } else {
        // Position of `b` among the non-printable bytes: 0x00..=0x20, 0x7F..=0xA0, 0xAD.
        let index = match b {
            0x00..=0x20 => b,
            0x7F..=0xA0 => 33 + (b - 0x7F),
            _ => 67,
        };
        0x100 + index
    };
    char::from_u32(code).expect("below U+0144")
}

/// The byte that `c` stands for, if `c` is in the alphabet.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let c = u32::from(c);
    let b = match c {
        _ if is_printable(c) => c,
        0x100..=0x120 => c - 0x100,
        0x121..=0x142 => 0x7F + (c - 0x121),
        0x143 => 0xAD,
        _ => return None,
    };
    Some(b as u8)
}

/// Appends the byte-level spelling of `bytes` to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    out.extend(bytes.iter().map(|&b| byte_to_char(b)));
}

/// Appends the bytes that `text` (a byte-level token) stands for to `out`. Characters
/// outside the alphabet (only in malformed vocabularies) are kept as their UTF-8.
pub(crate) fn decode_into(text: &str, out: &mut Vec<u8>) {
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_a_bijection() {
        let chars: Vec<char> = (0..=255u8).map(byte_to_char).collect();
        for (b, &c) in chars.iter().enumerate() {
            assert_eq!(char_to_byte(c), Some(b as u8));
        }
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(char_to_byte('Ā'), Some(0));
    }
}
