//! SentencePiece-style tokenization by token scores, as llama.cpp does it for
//! `tokenizer.ggml.model = "llama"` (Llama 2, Mistral, Phi-3): start from the characters,
//! repeatedly merge the adjacent pair whose concatenation is the token with the highest
//! score (leftmost on ties), and spell symbols that are not tokens as byte tokens.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};

/// Escaped form of a space in SentencePiece vocabularies.
pub(crate) const SPACE: char = '\u{2581}';

/// The byte tokens of a vocabulary: "<0xXX>", else the byte itself as a one-byte token.
pub(crate) fn byte_tokens(ids: &HashMap<String, u32>) -> Box<[Option<u32>; 256]> {
    Box::new(std::array::from_fn(|b| {
        ids.get(&format!("<0x{b:02X}>")).copied().or_else(|| {
            let byte = [b as u8];
            std::str::from_utf8(&byte)
                .ok()
                .and_then(|s| ids.get(s).copied())
        })
    }))
}

/// The byte that a "<0xXX>" token stands for.
pub(crate) fn byte_of_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// A pair of adjacent symbols whose text is a token.
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    /// Byte length of the pair when it was found; a mismatch later marks it stale.
    size: usize,
}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then(Reverse(self.left).cmp(&Reverse(other.left)))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

/// A run of the text; `len == 0` once merged into its left neighbour.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

pub(crate) struct Spm {
    scores: Vec<f32>,
    bytes: Box<[Option<u32>; 256]>,
    unk: Option<u32>,
}

impl Spm {
    pub(crate) fn new(ids: &HashMap<String, u32>, scores: Vec<f32>, unk: Option<u32>) -> Spm {
        Spm {
            scores,
            bytes: byte_tokens(ids),
            unk,
        }
    }

    /// Appends the tokens of `text` (spaces already escaped as ▁) to `out`.
    pub(crate) fn encode(&self, ids: &HashMap<String, u32>, text: &str, out: &mut Vec<u32>) {
        let n = text.chars().count();
        let mut symbols: Vec<Symbol> = text
            .char_indices()
            .enumerate()
            .map(|(i, (start, c))| Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: (i + 1 < n).then_some(i + 1),
            })
            .collect();

        let mut heap = BinaryHeap::new();
        let bigram = |symbols: &[Symbol], left: Option<usize>, right: Option<usize>| {
            let (left, right) = (left?, right?);
            let (l, r) = (symbols[left], symbols[right]);
            let size = l.len + r.len;
            let id = *ids.get(&text[l.start..l.start + size])?;
            Some(Bigram {
                score: self.scores.get(id as usize).copied().unwrap_or(0.0),
                left,
                right,
                size,
            })
        };
        heap.extend((1..n).filter_map(|i| bigram(&symbols, Some(i - 1), Some(i))));

        while let Some(b) = heap.pop() {
            let (l, r) = (symbols[b.left], symbols[b.right]);
            // Either side merged since (a merge only grows or empties a symbol).
            if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
                continue;
            }
            symbols[b.left].len = b.size;
            symbols[b.right].len = 0;
            symbols[b.left].next = r.next;
            if let Some(next) = r.next {
                symbols[next].prev = Some(b.left);
            }
            heap.extend(bigram(&symbols, l.prev, Some(b.left)));
            heap.extend(bigram(&symbols, Some(b.left), r.next));
        }

        let mut at = (n > 0).then_some(0);
        while let Some(i) = at {
            let s = symbols[i];
            let piece = &text[s.start..s.start + s.len];
            match ids.get(piece) {
                Some(&id) => out.push(id),
                // Only single characters can be missing (merges make tokens): spell
                // them in bytes.
                None => out.extend(
                    piece
                        .bytes()
                        .filter_map(|b| self.bytes[b as usize].or(self.unk)),
                ),
            }
            at = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_score_first_then_bytes() {
        let words = [
            ("▁", 0.0),
            ("a", 0.0),
            ("b", 0.0),
            ("▁a", -1.0),
            ("ab", -2.0),
            ("▁ab", -3.0),
            ("<0xC3>", 0.0),
            ("<0xA9>", 0.0),
        ];
        let ids: HashMap<String, u32> = words
            .iter()
            .enumerate()
            .map(|(i, (w, _))| (w.to_string(), i as u32))
            .collect();
        let spm = Spm::new(&ids, words.iter().map(|w| w.1).collect(), None);
        let encode = |text: &str| {
            let mut out = Vec::new();
            spm.encode(&ids, text, &mut out);
            out
        };
        // "▁a" outscores "ab", then "▁a"+"b" = "▁ab".
        assert_eq!(encode("▁ab"), [5]);
        assert_eq!(encode("bab"), [2, 4]);
        assert_eq!(encode("é"), [6, 7]); // not a token: its bytes
        assert_eq!(encode(""), [] as [u32; 0]);
        assert_eq!(byte_of_piece("<0x0A>"), Some(10));
        assert_eq!(byte_of_piece("<0x0AB>"), None);
    }
}
