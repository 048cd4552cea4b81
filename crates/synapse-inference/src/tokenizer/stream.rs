//! Incremental detokenization for streaming output.

use super::Tokenizer;

/// Turns generated token ids into text as they come. A byte-level token can end in the
/// middle of a multi-byte character (an emoji often spans several tokens), so bytes of
/// an incomplete character are held back until the tokens that finish it arrive.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Adds token `id` and returns the text that is now complete (possibly empty).
    /// Bytes that can never become valid UTF-8 come out as U+FFFD right away.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> String {
        tok.append_bytes(id, &mut self.pending);
        let mut text = String::new();
        let mut rest = &self.pending[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    text.push_str(std::str::from_utf8(valid).expect("checked valid"));
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(n) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                    }
                }
            }
        }
        let kept = rest.len();
        self.pending.drain(..self.pending.len() - kept);
        text
    }

    /// Returns whatever is held back (an unfinished character becomes U+FFFD) and resets.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}
