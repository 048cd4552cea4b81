//! Splitting text on the text of special tokens, before pre-tokenization.
//!
//! Like llama.cpp: the special tokens are tried one after another, longest text first,
//! each splitting every stretch of text left by the ones before it. User-defined tokens
//! are always split off; control and unknown tokens only when parsing special text.

/// A stretch of text to tokenize normally, or a special token found in the text.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

pub(crate) struct SpecialTokens {
    /// (id, text, whether it is matched only when parsing special text), longest first.
    tokens: Vec<(u32, String, bool)>,
}

impl SpecialTokens {
    /// `tokens`: (id, text, parse-only) for each special token; empty texts are ignored.
    pub(crate) fn new(tokens: impl IntoIterator<Item = (u32, String, bool)>) -> SpecialTokens {
        let mut tokens: Vec<_> = tokens
            .into_iter()
            .filter(|(_, text, _)| !text.is_empty())
            .collect();
        tokens.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        SpecialTokens { tokens }
    }

    pub(crate) fn split<'a>(&self, text: &'a str, parse_special: bool) -> Vec<Fragment<'a>> {
        let mut fragments = Vec::new();
        if !text.is_empty() {
            fragments.push(Fragment::Text(text));
        }
        for (id, special, parse_only) in &self.tokens {
            if *parse_only && !parse_special {
                continue;
            }
            let found =
                |f: &Fragment| matches!(f, Fragment::Text(t) if t.contains(special.as_str()));
            if !fragments.iter().any(found) {
                continue;
            }
            let mut split = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                let Fragment::Text(mut rest) = fragment else {
                    split.push(fragment);
                    continue;
                };
                while let Some(at) = rest.find(special.as_str()) {
                    if at > 0 {
                        split.push(Fragment::Text(&rest[..at]));
                    }
                    split.push(Fragment::Token(*id));
                    rest = &rest[at + special.len()..];
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
        let specials = SpecialTokens::new([
            (1, "<a>".to_string(), true),
            (2, "<a><b>".to_string(), true),
            (3, "<u>".to_string(), false),
        ]);
        let text = "x<a><b>y<a><u>";
        assert_eq!(
            specials.split(text, true),
            [Text("x"), Token(2), Text("y"), Token(1), Token(3)]
        );
        assert_eq!(specials.split(text, false), [Text("x<a><b>y<a>"), Token(3)]);
        assert!(specials.split("", true).is_empty());
    }
}
