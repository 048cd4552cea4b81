//! Pre-tokenizers: split text into the pieces that BPE merges within.
//!
//! Each is a hand-written scanner equivalent to the regex that llama.cpp uses for the
//! `tokenizer.ggml.pre` name, matched on code points with leftmost-first alternation.
//! The end of a text fragment (the text between special tokens) counts as the end of
//! input, e.g. for the `\s+(?!\S)` lookahead.

use std::sync::OnceLock;

/// The character classes the patterns distinguish; `\s` wins over the category.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Space,
    Letter,
    Number,
    Mark,
    Other,
}

/// A character's Unicode general category as the pre-tokenizers group it: `\p{L}`,
/// `\p{N}`, `\p{M}` or anything else.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CharClass {
    Letter,
    Number,
    Mark,
    Other,
}

static CLASSIFIER: OnceLock<fn(char) -> CharClass> = OnceLock::new();

/// Installs how a build without the `unicode-tables` feature classifies non-ASCII
/// characters (the browser module asks the JavaScript engine's Unicode data); the first
/// one installed stays. A build with the tables uses them and never asks.
pub fn set_char_classifier(classify: fn(char) -> CharClass) {
    // A second install (another instance of the same module) changes nothing.
    let _ = CLASSIFIER.set(classify);
}

#[cfg(feature = "unicode-tables")]
fn category(c: char) -> CharClass {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => CharClass::Letter,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => CharClass::Number,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => CharClass::Mark,
        _ => CharClass::Other,
    }
}

#[cfg(not(feature = "unicode-tables"))]
fn category(c: char) -> CharClass {
    match CLASSIFIER.get() {
        Some(classify) => classify(c),
        // No classifier: the standard library's properties, exact for numbers; marks
        // count as letters where Unicode calls them alphabetic, as punctuation elsewhere.
        None if c.is_numeric() => CharClass::Number,
        None if c.is_alphabetic() => CharClass::Letter,
        None => CharClass::Other,
    }
}

/// `\s` as llama.cpp defines it: the Unicode White_Space property.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t'..='\r'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

fn class(c: char) -> Class {
    if c.is_ascii() {
        return match c {
            _ if is_space(c) => Class::Space,
            'a'..='z' | 'A'..='Z' => Class::Letter,
            '0'..='9' => Class::Number,
            _ => Class::Other,
        };
    }
    if is_space(c) {
        return Class::Space;
    }
    match category(c) {
        CharClass::Letter => Class::Letter,
        CharClass::Number => Class::Number,
        CharClass::Mark => Class::Mark,
        CharClass::Other => Class::Other,
    }
}

/// The pre-tokenizer patterns Synapse implements.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum PreTokenizer {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    Gpt2,
    /// Every `\p{N}` split off alone, then [`PreTokenizer::Gpt2`] on the rest (SmolLM, StarCoder).
    Gpt2Digits,
    /// LLaMA 3: `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3,
    /// Qwen2: LLaMA 3 with `\p{N}` alone instead of `\p{N}{1,3}`.
    Qwen2,
    /// Qwen3.5: Qwen2 with `\p{M}` joining `\p{L}` in words and leaving the punctuation class.
    Qwen35,
}

impl PreTokenizer {
    /// The pattern for a `tokenizer.ggml.pre` value, with the aliases llama.cpp accepts,
    /// and whether the name is a LLaMA 3 vocabulary (for which llama.cpp adds BOS by
    /// default and takes a piece that is a whole token without merging).
    pub(crate) fn from_name(name: &str) -> Option<(PreTokenizer, bool)> {
        Some(match name {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => (PreTokenizer::Llama3, true),
            "dbrx" | "smaug-bpe" => (PreTokenizer::Llama3, false),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "exaone4" | "mpt" | "olmo"
            | "jais" | "trillion" | "granite-docling" => (PreTokenizer::Gpt2, false),
            "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" | "mellum2" => (PreTokenizer::Gpt2Digits, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "megrez" | "stablelm2"
            | "hunyuan" | "solar-open" | "grok-2" => (PreTokenizer::Qwen2, false),
            "qwen35" => (PreTokenizer::Qwen35, false),
            _ => return None,
        })
    }

    /// Calls `piece` with each piece of `text`, in order; together they cover `text`.
    pub(crate) fn split<'a>(self, text: &'a str, mut piece: impl FnMut(&'a str)) {
        match self {
            PreTokenizer::Gpt2Digits => {
                // Each number character alone; the runs between go to the GPT-2 pattern.
                let mut start = 0;
                for (i, c) in text.char_indices() {
                    if class(c) == Class::Number {
                        if start < i {
                            Scanner::new(&text[start..i]).run(gpt2_match, &mut piece);
                        }
                        piece(&text[i..i + c.len_utf8()]);
                        start = i + c.len_utf8();
                    }
                }
                if start < text.len() {
                    Scanner::new(&text[start..]).run(gpt2_match, &mut piece);
                }
            }
            PreTokenizer::Gpt2 => Scanner::new(text).run(gpt2_match, &mut piece),
            PreTokenizer::Llama3 => {
                Scanner::new(text).run(|s, i| llama3_match(s, i, 3, false), &mut piece)
            }
            PreTokenizer::Qwen2 => {
                Scanner::new(text).run(|s, i| llama3_match(s, i, 1, false), &mut piece)
            }
            PreTokenizer::Qwen35 => {
                Scanner::new(text).run(|s, i| llama3_match(s, i, 1, true), &mut piece)
            }
        }
    }
}

/// A text fragment as code points, with their byte offsets and classes.
struct Scanner<'a> {
    text: &'a str,
    chars: Vec<(usize, char, Class)>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        let chars = text.char_indices().map(|(i, c)| (i, c, class(c))).collect();
        Scanner { text, chars }
    }

    fn char(&self, i: usize) -> Option<char> {
        self.chars.get(i).map(|&(_, c, _)| c)
    }

    fn class(&self, i: usize) -> Option<Class> {
        self.chars.get(i).map(|&(_, _, k)| k)
    }

    /// The end of the run of characters from `i` whose class satisfies `f`.
    fn run_end(&self, mut i: usize, f: impl Fn(Class) -> bool) -> usize {
        while self.class(i).is_some_and(&f) {
            i += 1;
        }
        i
    }

    /// Length of an English contraction (`'s`, `'re`, ...) at `i`, if there is one.
    fn contraction(&self, i: usize, ignore_case: bool) -> Option<usize> {
        if self.char(i) != Some('\'') {
            return None;
        }
        let lower = |c: Option<char>| {
            c.map(|c| {
                if ignore_case {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
        };
        let (a, b) = (lower(self.char(i + 1)), lower(self.char(i + 2)));
        match (a?, b) {
            ('s' | 't' | 'm' | 'd', _) => Some(2),
            ('r', Some('e')) | ('v', Some('e')) | ('l', Some('l')) => Some(3),
            _ => None,
        }
    }

    /// The whitespace alternatives shared by all patterns: `\s+(?!\S)` then `\s+`.
    /// With `newlines`, `\s*[\r\n]+` is tried first.
    fn whitespace_end(&self, i: usize, newlines: bool) -> usize {
        let end = self.run_end(i, |k| k == Class::Space);
        if newlines {
            if let Some(last) = (i..end)
                .rev()
                .find(|&j| matches!(self.char(j), Some('\r' | '\n')))
            {
                return last + 1;
            }
        }
        if end - i > 1 && end < self.chars.len() {
            // Leave the last space to prefix the next word.
            end - 1
        } else {
            // `\s+`. The callers only get here at a space, but `max` guarantees progress.
            end.max(i + 1)
        }
    }

    /// Splits the fragment by calling `next_end(scanner, i)` for the end of the match at `i`.
    fn run(&self, next_end: impl Fn(&Scanner, usize) -> usize, piece: &mut impl FnMut(&'a str)) {
        let mut i = 0;
        while i < self.chars.len() {
            let end = next_end(self, i);
            let to = self.chars.get(end).map_or(self.text.len(), |&(b, _, _)| b);
            piece(&self.text[self.chars[i].0..to]);
            i = end;
        }
    }
}

fn is_punct(k: Class) -> bool {
    matches!(k, Class::Mark | Class::Other)
}

/// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
fn gpt2_match(s: &Scanner, i: usize) -> usize {
    if let Some(n) = s.contraction(i, false) {
        return i + n;
    }
    // The optional leading space goes with a following letter, number or symbol run.
    let start = if s.char(i) == Some(' ') { i + 1 } else { i };
    match s.class(start) {
        Some(Class::Letter) => s.run_end(start, |k| k == Class::Letter),
        Some(Class::Number) => s.run_end(start, |k| k == Class::Number),
        Some(k) if is_punct(k) => s.run_end(start, is_punct),
        _ => s.whitespace_end(i, false),
    }
}

/// LLaMA 3 and its variants; `max_digits` is 3 for `\p{N}{1,3}` and 1 for `\p{N}`, and
/// `marks` adds `\p{M}` to words (Qwen3.5).
fn llama3_match(s: &Scanner, i: usize, max_digits: usize, marks: bool) -> usize {
    if let Some(n) = s.contraction(i, true) {
        return i + n;
    }
    let c = s.char(i).expect("i is in range");
    let k = s.class(i).expect("i is in range");
    let in_word = |k: Class| k == Class::Letter || (marks && k == Class::Mark);
    let in_punct = |k: Class| k == Class::Other || (!marks && k == Class::Mark);

    // [^\r\n\p{L}\p{N}]?\p{L}+ : one optional leading non-letter, then the word.
    if c != '\r'
        && c != '\n'
        && k != Class::Number
        && (in_word(k) || s.class(i + 1).is_some_and(in_word))
    {
        return s.run_end(i + 1, in_word);
    }
    if k == Class::Number {
        // Only as far as `max_digits`: scanning the whole run at each of its matches would
        // take time quadratic in it (minutes for a prompt of a million digits).
        return (i + 1..i + max_digits)
            .find(|&j| s.class(j) != Some(Class::Number))
            .unwrap_or(i + max_digits);
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    let start = if c == ' ' && s.class(i + 1).is_some_and(in_punct) {
        i + 1
    } else {
        i
    };
    if s.class(start).is_some_and(in_punct) {
        let mut end = s.run_end(start, in_punct);
        while matches!(s.char(end), Some('\r' | '\n')) {
            end += 1;
        }
        return end;
    }
    s.whitespace_end(i, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pre: PreTokenizer, text: &str) -> Vec<&str> {
        let mut out = Vec::new();
        pre.split(text, |p| out.push(p));
        out
    }

    #[test]
    fn gpt2_pattern() {
        let p = pieces(PreTokenizer::Gpt2, "Hello  world's 123 ab!!\n\n x");
        assert_eq!(
            p,
            ["Hello", " ", " world", "'s", " 123", " ab", "!!", "\n\n", " x"]
        );
    }

    #[test]
    fn digits_split_alone_before_gpt2() {
        let p = pieces(PreTokenizer::Gpt2Digits, "a 12b");
        assert_eq!(p, ["a", " ", "1", "2", "b"]);
    }

    #[test]
    fn long_runs_split_in_linear_time() {
        // A million digits: each match of `\p{N}{1,3}` once scanned the rest of the run,
        // which took minutes here; a regression shows as a hang. Spaces and letters too.
        let digits = "7".repeat(1_000_000);
        for (pre, len) in [(PreTokenizer::Llama3, 3), (PreTokenizer::Qwen2, 1)] {
            let p = pieces(pre, &digits);
            assert_eq!(p.len(), 1_000_000_usize.div_ceil(len));
            assert!(p.iter().all(|piece| piece.len() <= len));
        }
        for text in [
            " ".repeat(1_000_000),
            "a".repeat(1_000_000),
            "\n ".repeat(500_000),
        ] {
            for pre in [
                PreTokenizer::Gpt2,
                PreTokenizer::Gpt2Digits,
                PreTokenizer::Llama3,
            ] {
                assert_eq!(pieces(pre, &text).concat(), text);
            }
        }
    }

    #[test]
    fn llama3_pattern() {
        let p = pieces(PreTokenizer::Llama3, "I'M 12345 (x)\n\n  y  ");
        assert_eq!(
            p,
            ["I", "'M", " ", "123", "45", " (", "x", ")\n\n", " ", " y", "  "]
        );
        let p = pieces(PreTokenizer::Qwen2, "\t\n a  b");
        assert_eq!(p, ["\t\n", " a", " ", " b"]);
    }

    #[test]
    fn qwen35_keeps_marks_in_words() {
        // U+0301 COMBINING ACUTE ACCENT after a letter and after a space.
        assert_eq!(
            pieces(PreTokenizer::Qwen35, "e\u{301}x \u{301}"),
            ["e\u{301}x", " \u{301}"]
        );
        assert_eq!(pieces(PreTokenizer::Qwen2, "e\u{301}x"), ["e", "\u{301}x"]);
    }
}
