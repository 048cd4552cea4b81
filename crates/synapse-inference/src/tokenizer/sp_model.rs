//! SentencePiece `tokenizer.model` files (a `ModelProto` protobuf), read by hand: the
//! pieces with their scores and types, the special ids and whether a ▁ goes first. A BPE
//! model tokenizes like the GGUF vocabularies converted from it (llama.cpp's algorithm,
//! which is SentencePiece's).

use super::TokenizerError;
use std::path::Path;

/// What a tokenizer.model holds that Synapse uses.
pub(crate) struct SpModel {
    /// (piece, score, type as in `tokenizer.ggml.token_type`).
    pub(crate) pieces: Vec<(String, f32, i64)>,
    pub(crate) unk: i64,
    pub(crate) bos: i64,
    pub(crate) eos: i64,
    pub(crate) pad: i64,
    pub(crate) add_dummy_prefix: bool,
}

/// A protobuf field's value.
enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
    Fixed64,
}

/// The fields of one protobuf message, in order.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.data.split_first()?;
            self.data = rest;
            value |= u64::from(byte & 0x7F) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.data.len() {
            return None;
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Some(head)
    }

    /// The next (field number, value); None at the end; Err on malformed bytes.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, &'static str> {
        if self.data.is_empty() {
            return Ok(None);
        }
        let key = self.varint().ok_or("truncated field key")?;
        let value = match key & 7 {
            0 => Field::Varint(self.varint().ok_or("truncated varint")?),
            1 => {
                self.take(8).ok_or("truncated 64-bit field")?;
                Field::Fixed64
            }
            2 => {
                let n = self.varint().ok_or("truncated length")?;
                let n = usize::try_from(n).map_err(|_| "length too large")?;
                Field::Bytes(self.take(n).ok_or("length past the end")?)
            }
            5 => {
                let b = self.take(4).ok_or("truncated 32-bit field")?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            _ => return Err("unsupported wire type"),
        };
        Ok(Some((key >> 3, value)))
    }
}

pub(crate) fn load(path: &Path) -> Result<SpModel, TokenizerError> {
    let data = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&data).map_err(|(field, problem)| TokenizerError::BadField {
        path: path.to_path_buf(),
        field: field.to_string(),
        problem: problem.to_string(),
    })
}

type ParseError = (&'static str, &'static str);

fn parse(data: &[u8]) -> Result<SpModel, ParseError> {
    let mut model = SpModel {
        pieces: Vec::new(),
        unk: 0,
        bos: 1,
        eos: 2,
        pad: -1,
        add_dummy_prefix: true,
    };
    let mut model_type = 1; // UNIGRAM unless the trainer spec says otherwise
    let mut top = Reader { data };
    while let Some((number, value)) = top.next().map_err(|e| ("ModelProto", e))? {
        match (number, value) {
            (1, Field::Bytes(bytes)) => model.pieces.push(piece(bytes)?),
            (2, Field::Bytes(bytes)) => {
                let mut spec = Reader { data: bytes };
                while let Some((number, value)) = spec.next().map_err(|e| ("trainer_spec", e))? {
                    let Field::Varint(v) = value else { continue };
                    // Ids are int32: negative ones arrive as 64-bit two's complement.
                    let id = v as i64;
                    match number {
                        3 => model_type = v,
                        40 => model.unk = id,
                        41 => model.bos = id,
                        42 => model.eos = id,
                        43 => model.pad = id,
                        _ => {}
                    }
                }
            }
            (3, Field::Bytes(bytes)) => {
                let mut spec = Reader { data: bytes };
                while let Some((number, value)) = spec.next().map_err(|e| ("normalizer_spec", e))? {
                    if let (3, Field::Varint(v)) = (number, value) {
                        model.add_dummy_prefix = v != 0;
                    }
                }
            }
            _ => {}
        }
    }
    if model_type != 2 {
        return Err((
            "trainer_spec.model_type",
            "only BPE models are supported (not Unigram, word or char)",
        ));
    }
    if model.pieces.is_empty() {
        return Err(("pieces", "the model has no pieces"));
    }
    Ok(model)
}

/// One `SentencePiece` message: piece (1), score (2), type (3, NORMAL by default).
fn piece(bytes: &[u8]) -> Result<(String, f32, i64), ParseError> {
    let (mut text, mut score, mut kind) = (String::new(), 0.0, 1);
    let mut reader = Reader { data: bytes };
    while let Some((number, value)) = reader.next().map_err(|e| ("pieces", e))? {
        match (number, value) {
            (1, Field::Bytes(b)) => {
                text = String::from_utf8(b.to_vec()).map_err(|_| ("pieces.piece", "not UTF-8"))?
            }
            (2, Field::Fixed32(bits)) => score = f32::from_bits(bits),
            (3, Field::Varint(v)) => kind = v as i64,
            _ => {}
        }
    }
    Ok((text, score, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length-delimited field.
    fn field(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn reads_pieces_and_specs() {
        let mut piece = field(1, "▁a".as_bytes());
        piece.push(2 << 3 | 5);
        piece.extend((-1.5f32).to_le_bytes());
        piece.extend([3 << 3, 4]);
        let mut data = field(1, &piece);
        // trainer_spec: model_type BPE, bos_id -1 (ten-byte varint).
        let mut trainer = vec![3 << 3, 2, 0xC8, 0x02];
        trainer.extend([0xFF; 9]);
        trainer.push(0x01);
        data.extend(field(2, &trainer));
        data.extend(field(3, &[3 << 3, 0])); // add_dummy_prefix false
        let model = parse(&data).unwrap();
        assert_eq!(model.pieces, [("▁a".to_string(), -1.5, 4)]);
        assert_eq!((model.bos, model.eos, model.unk), (-1, 2, 0));
        assert!(!model.add_dummy_prefix);

        assert!(parse(&data[..data.len() - 1]).is_err());
        assert_eq!(
            parse(&field(1, &piece)).err().unwrap().0,
            "trainer_spec.model_type"
        );
    }
}
