//! Splitting text on the text of special tokens, before pre-tokenization.
//!
//! Like llama.cpp: the special tokens are tried one after another, longest text first,
//! each splitting every stretch of text left by the ones before it. User-defined tokens
//! are always split off; control and unknown tokens only when parsing special text.
//! A token may swallow the whitespace on its left (lstrip) or right (rstrip).

/// A stretch of text to tokenize normally, or a special token found in the text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

#[derive(Clone, Debug)]
pub(crate) struct Special {
    pub(crate) id: u32,
    pub(crate) text: String,
    /// Matched only when parsing special text.
    pub(crate) parse_only: bool,
    pub(crate) lstrip: bool,
    pub(crate) rstrip: bool,
}

pub(crate) struct SpecialTokens {
    /// Longest first.
    tokens: Vec<Special>,
    /// Whitespace for lstrip/rstrip: Unicode's (Hugging Face) or ASCII's (llama.cpp).
    unicode_space: bool,
}

impl SpecialTokens {
    /// Empty texts are ignored.
    pub(crate) fn new(tokens: impl IntoIterator<Item = Special>, unicode_space: bool) -> Self {
        let mut tokens: Vec<_> = tokens.into_iter().filter(|t| !t.text.is_empty()).collect();
        tokens.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        SpecialTokens {
            tokens,
            unicode_space,
        }
    }

    fn is_space(&self, c: char) -> bool {
        if self.unicode_space {
            c.is_whitespace()
        } else {
            c.is_ascii_whitespace() || c == '\x0B'
        }
    }

    pub(crate) fn split<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut fragments = Vec::new();
        if !text.is_empty() {
            fragments.push(Fragment::Text(text));
        }
        for token in &self.tokens {
            if token.parse_only && !parse_special {
                continue;
            }
            let special = token.text.as_str();
            let found = |f: &Fragment| matches!(f, Fragment::Text(t) if t.contains(special));
            if !fragments.iter().any(found) {
                continue;
            }
            let mut split = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    split.push(fragment);
                    continue;
                };
                while let Some(at) = rest.find(special) {
                    let mut left = &rest[..at];
                    if token.lstrip {
                        left = left.trim_end_matches(|c| self.is_space(c));
                    }
                    if !left.is_empty() {
                        split.push(Fragment::Text(left));
                    }
                    split.push(Fragment::Token(token.id));
                    rest = &rest[at + special.len()..];
                    if token.rstrip {
                        rest = rest.trim_start_matches(|c| self.is_space(c));
                    }
                }
                if !rest.is_empty() {
                    split.push(Fragment::Text(rest));
                }
            }
            fragments = split;
        }
        fragments
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Fragment::{Text, Token};

    #[test]
    fn longest_first_and_parse_only() {
        let special = |id, text: &str, parse_only, lstrip, rstrip| Special {
            id,
            text: text.to_string(),
            parse_only,
            lstrip,
            rstrip,
        };
        let specials = SpecialTokens::new(
            [
                special(1, "<a>", true, false, false),
                special(2, "<a><b>", true, false, false),
                special(3, "<u>", false, false, false),
                special(4, "<r>", true, true, true),
            ],
            false,
        );
        let text = "x<a><b>y<a><u>";
        assert_eq!(
            specials.split(text, true),
            [Text("x"), Token(2), Text("y"), Token(1), Token(3)]
        );
        assert_eq!(specials.split(text, false), [Text("x<a><b>y<a>"), Token(3)]);
        assert!(specials.split("", true).is_empty());
        // Stripping takes ASCII whitespace only here.
        assert_eq!(
            specials.split("a \n<r>\t b\u{a0}<r> ", true),
            [Text("a"), Token(4), Text("b\u{a0}"), Token(4)]
        );
    }
}
