//! The BPE merge loop: within one pre-tokenized piece, repeatedly merge the adjacent
//! pair of symbols with the lowest merge rank (leftmost first on ties), as llama.cpp does.

use super::byte_level;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Marks a symbol that was merged into its left neighbour.
const DEAD: u32 = u32::MAX;
/// No neighbour.
const NONE: usize = usize::MAX;

/// The merge table over symbols. Symbol ids below the vocabulary size are token ids;
/// strings that the merges name but the vocabulary lacks get ids past it, so that bad
/// vocabularies still tokenize the way llama.cpp does (whose merges work on strings).
pub(crate) struct Merges {
    n_vocab: u32,
    /// (left, right) -> (rank, merged symbol).
    pairs: HashMap<(u32, u32), (u32, u32)>,
    /// The symbol each byte starts as (the byte-level character for it).
    byte_symbol: Box<[u32; 256]>,
}

impl Merges {
    /// `merges` in rank order; a repeated pair keeps its first rank.
    pub(crate) fn new<'a>(
        vocab: &HashMap<String, u32>,
        n_vocab: u32,
        merges: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Merges {
        let mut extra: HashMap<String, u32> = HashMap::new();
        let mut intern = |s: &str| -> u32 {
            if let Some(&id) = vocab.get(s).or_else(|| extra.get(s)) {
                return id;
            }
            let id = n_vocab + extra.len() as u32;
            extra.insert(s.to_owned(), id);
            id
        };
        let mut pairs = HashMap::new();
        let mut joined = String::new();
        for (rank, (left, right)) in merges.into_iter().enumerate() {
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            let key = (intern(left), intern(right));
            let merged = intern(&joined);
            pairs.entry(key).or_insert((rank as u32, merged));
        }
        let byte_symbol = Box::new(std::array::from_fn(|b| {
            intern(byte_level::byte_to_char(b as u8).encode_utf8(&mut [0; 4]))
        }));
        Merges {
            n_vocab,
            pairs,
            byte_symbol,
        }
    }

    /// Appends the tokens for the raw bytes of one piece to `out` (byte-level BPE). A
    /// final symbol that is not a token falls back to the tokens of its bytes' characters.
    pub(crate) fn encode(&self, bytes: &[u8], out: &mut Vec<u32>) {
        let units: Vec<u32> = bytes
            .iter()
            .map(|&b| self.byte_symbol[b as usize])
            .collect();
        self.encode_units(&units, out);
    }

    /// Merges `units` (the starting symbols, e.g. one per character) and appends the
    /// resulting tokens to `out`. A final symbol that is not a token falls back to the
    /// units it was made of; units outside the vocabulary are dropped.
    pub(crate) fn encode_units(&self, units: &[u32], out: &mut Vec<u32>) {
        let n = units.len();
        let mut ids = units.to_vec();
        let mut prev: Vec<usize> = (0..n).map(|i| i.checked_sub(1).unwrap_or(NONE)).collect();
        let mut next: Vec<usize> = (1..=n).map(|i| if i < n { i } else { NONE }).collect();

        // Entries: (rank, left, right, left id, right id, merged id); stale ones are skipped.
        let mut heap = BinaryHeap::new();
        let candidate = |ids: &[u32], left: usize, right: usize| {
            let (l, r) = (ids[left], ids[right]);
            self.pairs
                .get(&(l, r))
                .map(|&(rank, merged)| Reverse((rank, left, right, l, r, merged)))
        };
        heap.extend((1..n).filter_map(|i| candidate(&ids, i - 1, i)));

        while let Some(Reverse((_, left, right, l, r, merged))) = heap.pop() {
            if ids[left] != l || ids[right] != r || next[left] != right {
                continue;
            }
            ids[left] = merged;
            ids[right] = DEAD;
            next[left] = next[right];
            if next[left] != NONE {
                prev[next[left]] = left;
                heap.extend(candidate(&ids, left, next[left]));
            }
            if prev[left] != NONE {
                heap.extend(candidate(&ids, prev[left], left));
            }
        }

        let mut i = if n > 0 { 0 } else { NONE };
        while i != NONE {
            if ids[i] < self.n_vocab {
                out.push(ids[i]);
            } else {
                let end = if next[i] == NONE { n } else { next[i] };
                out.extend(units[i..end].iter().filter(|&&t| t < self.n_vocab));
            }
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_by_rank_and_leftmost_on_ties() {
        let words = ["a", "b", "aa", "ab", "aaa"];
        let vocab: HashMap<String, u32> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32))
            .collect();
        let merges = Merges::new(
            &vocab,
            words.len() as u32,
            [("a", "a"), ("a", "b"), ("aa", "a")],
        );
        let encode = |text: &str| {
            let mut out = Vec::new();
            merges.encode(text.as_bytes(), &mut out);
            out
        };
        assert_eq!(encode("aab"), [2, 1]); // "a a" outranks "a b"
        assert_eq!(encode("aaaa"), [2, 2]); // leftmost "a a" first, twice
        assert_eq!(encode("aaa"), [4]);
        assert_eq!(encode("ac"), [0]); // "c" has no token: dropped
        assert_eq!(encode(""), [] as [u32; 0]);
    }
}
