//! Stop strings in streamed text.
//!
//! Generated text arrives in pieces. A piece may end with the beginning of a
//! stop string, so that part is held back until later text shows whether the
//! stop string completes. Everything that cannot be the start of a stop string
//! is released at once.
//!
//! When several stop strings occur, the one that *ends* first in the stream
//! wins (ties: the one that starts first, i.e. the longer). This is what a
//! token-by-token check would see, so the result does not depend on how the
//! text was split into pieces.

/// What one [`StopMatcher::push`] released.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StopPush {
    /// Text that is safe to emit now. On a stop, the text before the stop string.
    pub text: String,
    /// Index (into the list given to [`StopMatcher::new`]) of the stop string
    /// that was completed by this push, if any. The stop string is not emitted.
    pub stop: Option<usize>,
}

/// Finds user stop strings in streamed text. Empty stop strings are ignored.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Longest stop string, in bytes: bounds how much text can be held back.
    max_len: usize,
    /// Text received but not yet released.
    held: String,
    stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        let max_len = stops.iter().map(String::len).max().unwrap_or(0);
        StopMatcher {
            stops,
            max_len,
            held: String::new(),
            stopped: false,
        }
    }

    /// The stop strings, as given to [`StopMatcher::new`].
    pub fn stops(&self) -> &[String] {
        &self.stops
    }

    /// Whether a stop string has been matched. After that, `push` releases
    /// nothing and `flush` returns an empty string.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Text currently held back as a possible stop-string prefix.
    pub fn held(&self) -> &str {
        &self.held
    }

    /// Forgets held text and the stopped state, for a new generation.
    pub fn reset(&mut self) {
        self.held.clear();
        self.stopped = false;
    }

    /// Adds newly generated text.
    pub fn push(&mut self, text: &str) -> StopPush {
        if self.stopped {
            return StopPush::default();
        }
        self.held.push_str(text);

        if let Some((start, index)) = self.first_complete_stop() {
            self.stopped = true;
            let mut out = std::mem::take(&mut self.held);
            // Text after the stop string is dropped with it.
            out.truncate(start);
            return StopPush {
                text: out,
                stop: Some(index),
            };
        }

        let keep_from = self.partial_stop_start();
        let rest = self.held.split_off(keep_from);
        StopPush {
            text: std::mem::replace(&mut self.held, rest),
            stop: None,
        }
    }

    /// Releases held-back text at the end of generation.
    pub fn flush(&mut self) -> String {
        if self.stopped {
            self.held.clear();
        }
        std::mem::take(&mut self.held)
    }

    /// The completed stop string that ends first in `held`, as (start byte, index).
    fn first_complete_stop(&self) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_empty())
            .filter_map(|(i, s)| {
                self.held
                    .find(s.as_str())
                    .map(|pos| (pos + s.len(), pos, i))
            })
            .min()
            .map(|(_, start, index)| (start, index))
    }

    /// Byte offset of the longest suffix of `held` that is a proper prefix of
    /// some stop string; `held.len()` if there is none. Always a char boundary.
    fn partial_stop_start(&self) -> usize {
        // A proper prefix is shorter than the longest stop string, so only the
        // last `max_len - 1` bytes can start one.
        let earliest = self
            .held
            .len()
            .saturating_sub(self.max_len.saturating_sub(1));
        self.held
            .char_indices()
            .map(|(i, _)| i)
            .skip_while(|&i| i < earliest)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // On wasm32 these tests run under Node: `#[test]` below is wasm-bindgen-test's.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    /// What a push returns: `text` safe to emit, and the stop string it completed.
    fn pushed(text: &str, stop: Option<usize>) -> StopPush {
        StopPush {
            text: text.into(),
            stop,
        }
    }

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Pushes each of `pieces` in turn; the text each push released.
    fn released(m: &mut StopMatcher, pieces: &[&str]) -> Vec<String> {
        pieces.iter().map(|p| m.push(p).text).collect()
    }

    /// Feeds `pieces` and returns (emitted text incl. flush, stop index).
    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<usize>) {
        let mut m = matcher(stops);
        let mut out = String::new();
        let mut stop = None;
        for p in pieces {
            let r = m.push(p);
            out.push_str(&r.text);
            if r.stop.is_some() {
                stop = r.stop;
            }
        }
        out.push_str(&m.flush());
        (out, stop)
    }

    /// Every way of splitting `text` at char boundaries into two or three
    /// pieces gives the same result as one piece.
    fn assert_split_invariant(stops: &[&str], text: &str) {
        let whole = run(stops, &[text]);
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        for &a in &bounds {
            for &b in bounds.iter().filter(|&&b| b >= a) {
                let got = run(stops, &[&text[..a], &text[a..b], &text[b..]]);
                assert_eq!(got, whole, "split at {a},{b} of {text:?}");
            }
        }
    }

    #[test]
    fn plain_text_is_released_immediately() {
        let mut m = matcher(&["STOP"]);
        let r = m.push("hello world");
        assert_eq!(r, pushed("hello world", None));
        assert_eq!(m.flush(), "");
    }

    #[test]
    fn possible_prefix_is_held_then_released() {
        let mut m = matcher(&["STOP"]);
        assert_eq!(m.push("hello ST").text, "hello ");
        assert_eq!(m.held(), "ST");
        // "STA" cannot start "STOP" any more; nothing else in it can either.
        assert_eq!(m.push("A"), pushed("STA", None));
        assert_eq!(m.push("S"), pushed("", None));
        assert_eq!(m.flush(), "S");
    }

    #[test]
    fn stop_within_one_push() {
        let mut m = matcher(&["STOP"]);
        let r = m.push("abcSTOPdef");
        assert_eq!(r, pushed("abc", Some(0)));
        assert!(m.is_stopped());
        assert_eq!(m.push("more"), StopPush::default());
        assert_eq!(m.flush(), "");
    }

    #[test]
    fn stop_spanning_several_pushes() {
        let mut m = matcher(&["<|end|>"]);
        assert_eq!(released(&mut m, &["Hi <", "|en"]), ["Hi ", ""]);
        assert_eq!(m.push("d|"), StopPush::default());
        let r = m.push(">tail");
        assert_eq!(r, pushed("", Some(0)));
        assert_eq!(m.flush(), "");
        assert_split_invariant(&["<|end|>"], "Hi <|en <|end|> after");
    }

    #[test]
    fn multiple_stop_strings() {
        assert_eq!(
            run(&["\n\n", "User:"], &["a", "b\nUse", "r: x"]),
            ("ab\n".into(), Some(1))
        );
        assert_eq!(
            run(&["\n\n", "User:"], &["a\n", "\nUser:"]),
            ("a".into(), Some(0))
        );
        // Stop index refers to the original list, empty strings included.
        assert_eq!(run(&["", "x"], &["abxc"]), ("ab".into(), Some(1)));
        assert_split_invariant(
            &["\n\n", "User:", "###"],
            "one\ntwo ## three User; Us\n\nUser:",
        );
    }

    #[test]
    fn overlapping_prefixes() {
        // Held "aab" is not a prefix of "aabx"'s continuation "aabaabx" at 0,
        // but its suffix "aab" is: only the first three bytes are released.
        let mut m = matcher(&["aabx"]);
        assert_eq!(released(&mut m, &["aab", "aab"]), ["", "aab"]);
        assert_eq!(m.push("x"), pushed("", Some(0)));
        assert_split_invariant(&["aabx"], "aabaabaabx!");

        // Stops that are prefixes of each other: the one ending first wins.
        assert_eq!(run(&["abc", "ab"], &["xabc"]), ("x".into(), Some(1)));
        // Overlapping stops: "bc" ends before "abcd" does.
        assert_eq!(run(&["abcd", "bc"], &["abcd"]), ("a".into(), Some(1)));
        // Same end: the earlier (longer) start wins.
        assert_eq!(run(&["c", "abc"], &["xabc"]), ("x".into(), Some(1)));
        assert_split_invariant(&["abcd", "bc", "cde"], "zabcdez");
        assert_split_invariant(&["abcd", "cde"], "zab abcde");
    }

    #[test]
    fn multi_byte_utf8() {
        // Stops and text with 2-, 3- and 4-byte characters.
        let mut m = matcher(&["🛑END"]);
        assert_eq!(released(&mut m, &["héllo 🛑", "EN"]), ["héllo ", ""]);
        assert_eq!(m.push("D more"), pushed("", Some(0)));
        assert_split_invariant(&["🛑END", "。"], "日本語🛑EN🛑END。");
        assert_split_invariant(&["。"], "日本語です。続き");
        // "è" and "é" share their lead byte; "è" must not be held for "é".
        let mut m = matcher(&["é!"]);
        assert_eq!(released(&mut m, &["è", "é"]), ["è", ""]);
        assert_eq!(m.flush(), "é");
    }

    #[test]
    fn no_stops_and_reset() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), None));
        assert_eq!(run(&[""], &["a", "b"]), ("ab".into(), None));
        let mut m = matcher(&["x"]);
        assert_eq!(m.push("axb").stop, Some(0));
        m.reset();
        assert!(!m.is_stopped());
        assert_eq!(m.push("ab").text, "ab");
    }
}
