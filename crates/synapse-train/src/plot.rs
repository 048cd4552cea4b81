//! The loss curve of a run as a PNG: lines on axes with numbered ticks, a title and a
//! legend, in a built-in 5×7 bitmap font, encoded by hand (stored deflate blocks) so that
//! training needs no image or font crate.

use std::path::Path;

/// One line of the chart.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: [u8; 3],
    /// (step, loss) points, in order of step.
    pub points: &'a [(f32, f32)],
}

const WIDTH: usize = 800;
const HEIGHT: usize = 500;
/// The plot area's margins: room for the loss labels left, the step labels and the
/// caption below, the title above.
const LEFT: i64 = 90;
const RIGHT: i64 = 30;
const TOP: i64 = 50;
const BOTTOM: i64 = 60;
const INK: [u8; 3] = [40, 40, 40];
const GRID: [u8; 3] = [225, 225, 225];
const WHITE: [u8; 3] = [255, 255, 255];
/// A legend entry's colour swatch, in pixels.
const SWATCH: (i64, i64) = (20, 10);

/// Draws the series on one chart (x: step, y: loss) and writes it to `path` as a PNG.
pub fn write_loss_curve(path: &Path, title: &str, series: &[Series]) -> std::io::Result<()> {
    let (width, height, pixels) = render(title, series);
    std::fs::write(path, encode_png(width, height, &pixels))
}

/// The same chart as RGB pixels: (width, height, pixels row-major, 3 bytes a pixel).
pub fn render(title: &str, series: &[Series]) -> (usize, usize, Vec<u8>) {
    let mut canvas = Canvas {
        pixels: vec![255; WIDTH * HEIGHT * 3],
    };
    let drawable = |s: &Series| -> Vec<(f64, f64)> {
        s.points
            .iter()
            .filter(|(step, loss)| step.is_finite() && loss.is_finite())
            .map(|&(step, loss)| (step as f64, loss as f64))
            .collect()
    };
    let lines: Vec<Vec<(f64, f64)>> = series.iter().map(drawable).collect();
    let all = || lines.iter().flatten();
    // Steps are whole numbers: an x range at least one wide gives a lone step an axis.
    let (x_lo, x_hi) = bounds(all().map(|p| p.0)).unwrap_or((0.0, 1.0));
    let x_hi = x_hi.max(x_lo + 1.0);
    // At least 0.05 each side, so that ticks two decimals apart can span the range.
    let (y_lo, y_hi) = bounds(all().map(|p| p.1)).unwrap_or((0.0, 1.0));
    let margin = ((y_hi - y_lo) * 0.05).max(0.05);
    let (y_lo, y_hi) = (y_lo - margin, y_hi + margin);

    let (left, right, top, bottom) = (LEFT, WIDTH as i64 - RIGHT, TOP, HEIGHT as i64 - BOTTOM);
    let to_pixel = |(step, loss): (f64, f64)| {
        let x = left as f64 + (step - x_lo) / (x_hi - x_lo) * (right - left) as f64;
        let y = top as f64 + (y_hi - loss) / (y_hi - y_lo) * (bottom - top) as f64;
        (x.round() as i64, y.round() as i64)
    };

    let (y_ticks, y_spacing) = ticks(y_lo, y_hi, 0.01);
    let tenths = y_spacing * 10.0;
    let decimals = if (tenths - tenths.round()).abs() < 1e-6 {
        1
    } else {
        2
    };
    for tick in y_ticks {
        let (_, y) = to_pixel((x_lo, tick));
        canvas.line((left, y), (right, y), GRID);
        canvas.line((left - 6, y), (left, y), INK);
        let text = format!("{tick:.decimals$}");
        canvas.text((left - 12 - text_width(&text, 2), y - 7), &text, 2, INK);
    }
    for tick in ticks(x_lo, x_hi, 1.0).0 {
        let (x, _) = to_pixel((tick, y_lo));
        canvas.line((x, top), (x, bottom), GRID);
        canvas.line((x, bottom), (x, bottom + 6), INK);
        let text = format!("{tick:.0}");
        canvas.text((x - text_width(&text, 2) / 2, bottom + 12), &text, 2, INK);
    }
    canvas.line((left, top), (left, bottom), INK);
    canvas.line((left, bottom), (right, bottom), INK);
    let caption_x = (left + right - text_width("step", 2)) / 2;
    canvas.text((caption_x, bottom + 34), "step", 2, INK);
    canvas.text((left - 80, top - 20), "loss", 2, INK);
    let title_x = (WIDTH as i64 - text_width(title, 2)) / 2;
    canvas.text((title_x, 12), title, 2, INK);

    for (s, points) in series.iter().zip(&lines) {
        let pixels: Vec<(i64, i64)> = points.iter().copied().map(to_pixel).collect();
        for pair in pixels.windows(2) {
            canvas.line(pair[0], pair[1], s.color);
        }
        // A lone point has no line: a dot shows it.
        if let [(x, y)] = pixels[..] {
            canvas.rect((x - 2, y - 2), (5, 5), s.color);
        }
    }
    canvas.legend(series, (right, top));
    (WIDTH, HEIGHT, canvas.pixels)
}

/// The least and greatest of `values`, or `None` if there are none.
fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |found, v| {
        Some(found.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))))
    })
}

/// Tick values within `lo..=hi`, 4 to 6 of them where the range allows, at the roundest
/// spacing that gives that many, and a multiple of `resolution` so that the labels show
/// each tick exactly. Returns the ticks and their spacing.
fn ticks(lo: f64, hi: f64, resolution: f64) -> (Vec<f64>, f64) {
    // 1, 2 and 5 alone leave gaps (a spacing ratio of 2.5) where no spacing gives 4 to 6
    // ticks; the less round ones fill them.
    const ROUNDEST_FIRST: [f64; 9] = [1.0, 2.0, 5.0, 2.5, 4.0, 3.0, 1.5, 6.0, 8.0];
    let count = |spacing: f64| ((hi / spacing).floor() - (lo / spacing).ceil()) as i64 + 1;
    let decade = 10f64.powi(((hi - lo) / 5.0).log10().floor() as i32 - 1);
    let spacing = [1.0, 10.0, 100.0]
        .iter()
        .flat_map(|scale| {
            let spacings = ROUNDEST_FIRST.iter().map(move |m| m * scale * decade);
            spacings.enumerate()
        })
        .filter(|(_, spacing)| {
            let in_units = spacing / resolution;
            in_units >= 1.0 - 1e-9 && (in_units - in_units.round()).abs() < 1e-6
        })
        .min_by_key(|&(roundness, spacing)| {
            let n = count(spacing);
            ((4 - n).max(n - 6).max(0), roundness, (n - 5).abs())
        });
    let Some((_, spacing)) = spacing else {
        return (Vec::new(), resolution);
    };
    let first = (lo / spacing).ceil() as i64;
    let last = (hi / spacing).floor() as i64;
    let ticks = (first..=last).map(|i| i as f64 * spacing).collect();
    (ticks, spacing)
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    /// Sets one pixel; anything off the canvas is clipped.
    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if (0..WIDTH as i64).contains(&x) && (0..HEIGHT as i64).contains(&y) {
            let at = (y as usize * WIDTH + x as usize) * 3;
            self.pixels[at..at + 3].copy_from_slice(&color);
        }
    }

    fn rect(&mut self, (x0, y0): (i64, i64), (width, height): (i64, i64), color: [u8; 3]) {
        for y in y0..y0 + height {
            for x in x0..x0 + width {
                self.set(x, y, color);
            }
        }
    }

    /// A line two pixels thick (Bresenham's, each point drawn as a 2×2 square).
    fn line(&mut self, (mut x, mut y): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3]) {
        let (dx, dy) = ((x1 - x).abs(), -(y1 - y).abs());
        let (sx, sy) = ((x1 - x).signum(), (y1 - y).signum());
        let mut err = dx + dy;
        loop {
            self.rect((x, y), (2, 2), color);
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// `text` with its top-left corner at `(x, y)`, each font pixel `scale` pixels square.
    fn text(&mut self, (x, y): (i64, i64), text: &str, scale: i64, color: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let glyph = glyph(c);
            for row in 0..8 {
                let bits = (glyph >> (8 * (7 - row))) & 0x1F;
                for column in 0..5 {
                    if bits & (0x10 >> column) != 0 {
                        let at = (x + (i as i64 * 6 + column) * scale, y + row * scale);
                        self.rect(at, (scale, scale), color);
                    }
                }
            }
        }
    }

    /// A boxed legend in the plot's top-right corner, where a falling loss curve leaves
    /// room: one swatch and label per series.
    fn legend(&mut self, series: &[Series], (right, top): (i64, i64)) {
        if series.is_empty() {
            return;
        }
        let label_width = series
            .iter()
            .map(|s| text_width(s.label, 2))
            .max()
            .unwrap_or(0);
        let (width, height) = (SWATCH.0 + label_width + 24, series.len() as i64 * 20 + 8);
        let (x0, y0) = (right - width - 10, top + 10);
        self.rect((x0, y0), (width, height), INK);
        self.rect((x0 + 1, y0 + 1), (width - 2, height - 2), WHITE);
        for (i, s) in series.iter().enumerate() {
            let y = y0 + 7 + 20 * i as i64;
            self.rect((x0 + 8, y + 2), SWATCH, s.color);
            self.text((x0 + 16 + SWATCH.0, y), s.label, 2, INK);
        }
    }
}

/// Width in pixels of `text` at `scale` (a glyph and a blank column per character).
fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * 6 * scale
}

/// The 5×7 glyph of `c`, with an eighth row below for descenders (g, j, p, q, y, commas)
/// so that they do not read as digits: one byte a row, top row first in the high byte,
/// the low five bits of each left to right. Printable ASCII; anything else draws as a
/// blank.
fn glyph(c: char) -> u64 {
    const PRINTABLE_ASCII: [u64; 95] = [
        0x00_00_00_00_00_00_00_00, // ' '
        0x04_04_04_04_04_00_04_00, // !
        0x0A_0A_00_00_00_00_00_00, // "
        0x0A_0A_1F_0A_1F_0A_0A_00, // #
        0x04_0F_14_0E_05_1E_04_00, // $
        0x18_19_02_04_08_13_03_00, // %
        0x0C_12_14_08_15_12_0D_00, // &
        0x04_04_00_00_00_00_00_00, // '
        0x02_04_08_08_08_04_02_00, // (
        0x08_04_02_02_02_04_08_00, // )
        0x00_04_15_0E_15_04_00_00, // *
        0x00_04_04_1F_04_04_00_00, // +
        0x00_00_00_00_00_0C_04_08, // ,
        0x00_00_00_1F_00_00_00_00, // -
        0x00_00_00_00_00_0C_0C_00, // .
        0x01_01_02_04_08_10_10_00, // /
        0x0E_11_13_15_19_11_0E_00, // 0
        0x04_0C_04_04_04_04_0E_00, // 1
        0x0E_11_01_02_04_08_1F_00, // 2
        0x1F_02_04_02_01_11_0E_00, // 3
        0x02_06_0A_12_1F_02_02_00, // 4
        0x1F_10_1E_01_01_11_0E_00, // 5
        0x06_08_10_1E_11_11_0E_00, // 6
        0x1F_01_02_04_08_08_08_00, // 7
        0x0E_11_11_0E_11_11_0E_00, // 8
        0x0E_11_11_0F_01_02_0C_00, // 9
        0x00_0C_0C_00_0C_0C_00_00, // :
        0x00_0C_0C_00_00_0C_04_08, // ;
        0x02_04_08_10_08_04_02_00, // <
        0x00_00_1F_00_1F_00_00_00, // =
        0x08_04_02_01_02_04_08_00, // >
        0x0E_11_01_02_04_00_04_00, // ?
        0x0E_11_01_0D_15_15_0E_00, // @
        0x0E_11_11_11_1F_11_11_00, // A
        0x1E_11_11_1E_11_11_1E_00, // B
        0x0E_11_10_10_10_11_0E_00, // C
        0x1C_12_11_11_11_12_1C_00, // D
        0x1F_10_10_1E_10_10_1F_00, // E
        0x1F_10_10_1E_10_10_10_00, // F
        0x0E_11_10_17_11_11_0F_00, // G
        0x11_11_11_1F_11_11_11_00, // H
        0x0E_04_04_04_04_04_0E_00, // I
        0x07_02_02_02_02_12_0C_00, // J
        0x11_12_14_18_14_12_11_00, // K
        0x10_10_10_10_10_10_1F_00, // L
        0x11_1B_15_15_11_11_11_00, // M
        0x11_11_19_15_13_11_11_00, // N
        0x0E_11_11_11_11_11_0E_00, // O
        0x1E_11_11_1E_10_10_10_00, // P
        0x0E_11_11_11_15_12_0D_00, // Q
        0x1E_11_11_1E_14_12_11_00, // R
        0x0F_10_10_0E_01_01_1E_00, // S
        0x1F_04_04_04_04_04_04_00, // T
        0x11_11_11_11_11_11_0E_00, // U
        0x11_11_11_11_11_0A_04_00, // V
        0x11_11_11_15_15_15_0A_00, // W
        0x11_11_0A_04_0A_11_11_00, // X
        0x11_11_11_0A_04_04_04_00, // Y
        0x1F_01_02_04_08_10_1F_00, // Z
        0x0E_08_08_08_08_08_0E_00, // [
        0x10_10_08_04_02_01_01_00, // \
        0x0E_02_02_02_02_02_0E_00, // ]
        0x04_0A_11_00_00_00_00_00, // ^
        0x00_00_00_00_00_00_1F_00, // _
        0x08_04_00_00_00_00_00_00, // `
        0x00_00_0E_01_0F_11_0F_00, // a
        0x10_10_16_19_11_11_1E_00, // b
        0x00_00_0E_10_10_11_0E_00, // c
        0x01_01_0D_13_11_11_0F_00, // d
        0x00_00_0E_11_1F_10_0E_00, // e
        0x06_09_08_1C_08_08_08_00, // f
        0x00_00_0F_11_11_0F_01_0E, // g
        0x10_10_16_19_11_11_11_00, // h
        0x04_00_0C_04_04_04_0E_00, // i
        0x02_00_06_02_02_02_12_0C, // j
        0x10_10_12_14_18_14_12_00, // k
        0x0C_04_04_04_04_04_0E_00, // l
        0x00_00_1A_15_15_11_11_00, // m
        0x00_00_16_19_11_11_11_00, // n
        0x00_00_0E_11_11_11_0E_00, // o
        0x00_00_1E_11_11_1E_10_10, // p
        0x00_00_0F_11_11_0F_01_01, // q
        0x00_00_16_19_10_10_10_00, // r
        0x00_00_0E_10_0E_01_1E_00, // s
        0x08_08_1C_08_08_09_06_00, // t
        0x00_00_11_11_11_13_0D_00, // u
        0x00_00_11_11_11_0A_04_00, // v
        0x00_00_11_11_15_15_0A_00, // w
        0x00_00_11_0A_04_0A_11_00, // x
        0x00_00_11_11_11_0F_01_0E, // y
        0x00_00_1F_02_04_08_1F_00, // z
        0x02_04_04_08_04_04_02_00, // {
        0x04_04_04_04_04_04_04_00, // |
        0x08_04_04_02_04_04_08_00, // }
        0x00_00_08_15_02_00_00_00, // ~
    ];
    match c {
        ' '..='~' => PRINTABLE_ASCII[c as usize - ' ' as usize],
        _ => 0,
    }
}

/// CRC-32 (ISO-HDLC, the one PNG uses), with its byte table built per call: a chart
/// writes three chunks, so building it costs nothing next to the pixels.
fn crc32(bytes: &[u8]) -> u32 {
    let table: [u32; 256] = std::array::from_fn(|byte| {
        (0..8).fold(byte as u32, |crc, _| {
            (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg())
        })
    });
    !bytes.iter().fold(!0u32, |crc, &b| {
        (crc >> 8) ^ table[((crc ^ b as u32) & 0xFF) as usize]
    })
}

/// Adler-32, zlib's trailer checksum.
fn adler32(bytes: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (a, b) = bytes.iter().fold((1u32, 0u32), |(a, b), &x| {
        let a = (a + x as u32) % MOD;
        (a, (b + a) % MOD)
    });
    (b << 16) | a
}

/// A stored deflate block holds at most this many bytes (its length field is 16 bits).
const STORED_BLOCK_MAX: usize = 65535;

/// A PNG file (8-bit RGB, no interlace) of `pixels`.
///
/// Panics if `pixels` does not hold `width * height` RGB triples.
pub fn encode_png(width: usize, height: usize, pixels: &[u8]) -> Vec<u8> {
    let stride = width * 3;
    assert_eq!(pixels.len(), stride * height, "RGB pixels, 3 bytes each");
    let mut scanlines = Vec::with_capacity(pixels.len() + height);
    for row in 0..height {
        scanlines.push(0); // filter: none
        scanlines.extend_from_slice(&pixels[row * stride..(row + 1) * stride]);
    }
    // zlib: header (deflate, 32K window, no dictionary), stored blocks, Adler-32.
    let mut zlib = vec![0x78, 0x01];
    let mut rest = &scanlines[..];
    loop {
        let (block, tail) = rest.split_at(rest.len().min(STORED_BLOCK_MAX));
        let length = block.len() as u16;
        zlib.push(u8::from(tail.is_empty())); // BFINAL, and BTYPE 00: stored
        zlib.extend_from_slice(&length.to_le_bytes());
        zlib.extend_from_slice(&(!length).to_le_bytes());
        zlib.extend_from_slice(block);
        if tail.is_empty() {
            break;
        }
        rest = tail;
    }
    zlib.extend_from_slice(&adler32(&scanlines).to_be_bytes());

    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(width as u32).to_be_bytes());
    header.extend_from_slice(&(height as u32).to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filters, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", &header[..]), (b"IDAT", &zlib), (b"IEND", &[])] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let typed = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32(&png[typed..]);
        png.extend_from_slice(&crc.to_be_bytes());
    }
    png
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32 bit by bit, independent of the table the encoder builds.
    fn bitwise_crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= byte as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// The chunks of a PNG file as (type, data), each one's CRC checked.
    fn chunks(png: &[u8]) -> Vec<([u8; 4], &[u8])> {
        assert_eq!(png[..8], [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        let mut found = Vec::new();
        let mut at = 8;
        while at < png.len() {
            let length = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let typed = &png[at + 4..at + 8 + length];
            let crc =
                u32::from_be_bytes(png[at + 8 + length..at + 12 + length].try_into().unwrap());
            assert_eq!(crc, bitwise_crc32(typed), "CRC of chunk at {at}");
            found.push((typed[..4].try_into().unwrap(), &typed[4..]));
            at += 12 + length;
        }
        assert_eq!(at, png.len());
        found
    }

    /// Inflates a zlib stream of stored blocks only; also returns the blocks' lengths.
    fn inflate_stored(zlib: &[u8]) -> (Vec<u8>, Vec<usize>) {
        assert_eq!(zlib[0] & 0x0F, 8, "deflate");
        assert_eq!(
            (zlib[0] as u16 * 256 + zlib[1] as u16) % 31,
            0,
            "header check"
        );
        let (mut data, mut lengths, mut at) = (Vec::new(), Vec::new(), 2);
        loop {
            let header = zlib[at];
            assert_eq!((header >> 1) & 3, 0, "stored block");
            let length = u16::from_le_bytes([zlib[at + 1], zlib[at + 2]]);
            let complement = u16::from_le_bytes([zlib[at + 3], zlib[at + 4]]);
            assert_eq!(complement, !length);
            let length = length as usize;
            data.extend_from_slice(&zlib[at + 5..at + 5 + length]);
            lengths.push(length);
            at += 5 + length;
            if header & 1 == 1 {
                break;
            }
        }
        let adler = u32::from_be_bytes(zlib[at..at + 4].try_into().unwrap());
        assert_eq!(adler, adler32(&data));
        assert_eq!(at + 4, zlib.len());
        (data, lengths)
    }

    #[test]
    fn ticks_number_four_to_six_at_label_resolution() {
        for i in 0..2000 {
            let span = 0.1 * 1.005f64.powi(i);
            let lo = (i % 13) as f64 * 0.731 - 2.0;
            let (ticks, spacing) = ticks(lo, lo + span, 0.01);
            assert!((4..=6).contains(&ticks.len()), "{lo}..+{span}: {ticks:?}");
            assert!(((spacing * 100.0).round() - spacing * 100.0).abs() < 1e-6);
        }
    }

    #[test]
    fn checksums_match_their_published_values() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(bitwise_crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_tiny_png_holds_its_header_and_scanlines() {
        let pixels: Vec<u8> = (1..=12).collect();
        let png = encode_png(2, 2, &pixels);
        let chunks = chunks(&png);
        let kinds: Vec<&[u8; 4]> = chunks.iter().map(|(kind, _)| kind).collect();
        assert_eq!(kinds, [b"IHDR", b"IDAT", b"IEND"]);
        let header = chunks[0].1;
        assert_eq!(header.len(), 13);
        assert_eq!(u32::from_be_bytes(header[0..4].try_into().unwrap()), 2);
        assert_eq!(u32::from_be_bytes(header[4..8].try_into().unwrap()), 2);
        // Bit depth, colour type (RGB), compression, filter, interlace.
        assert_eq!(header[8..], [8, 2, 0, 0, 0]);
        let (scanlines, blocks) = inflate_stored(chunks[1].1);
        assert_eq!(blocks, [14]);
        assert_eq!(scanlines, [0, 1, 2, 3, 4, 5, 6, 0, 7, 8, 9, 10, 11, 12]);
        assert!(chunks[2].1.is_empty());
    }

    #[test]
    fn stored_blocks_split_at_their_length_limit() {
        let (width, height) = (200, 120);
        let pixels: Vec<u8> = (0..width * height * 3).map(|i| (i % 251) as u8).collect();
        let png = encode_png(width, height, &pixels);
        let chunks = chunks(&png);
        let (scanlines, blocks) = inflate_stored(chunks[1].1);
        assert_eq!(
            blocks,
            [
                STORED_BLOCK_MAX,
                height * (1 + width * 3) - STORED_BLOCK_MAX
            ]
        );
        for (row, line) in scanlines.chunks(1 + width * 3).enumerate() {
            assert_eq!(line[0], 0, "filter byte");
            assert_eq!(line[1..], pixels[row * width * 3..(row + 1) * width * 3]);
        }
    }

    #[test]
    fn the_chart_draws_each_series_and_survives_odd_data() {
        let (red, blue, green) = ([200, 0, 0], [0, 0, 200], [0, 200, 0]);
        let train = [(1.0, 5.0), (2.0, 4.0), (3.0, f32::NAN), (4.0, 3.0)];
        let held_out = [(2.0, 4.5)];
        let series = [
            Series {
                label: "train",
                color: red,
                points: &train,
            },
            Series {
                label: "held-out",
                color: blue,
                points: &held_out,
            },
            Series {
                label: "empty",
                color: green,
                points: &[],
            },
        ];
        let (width, height, pixels) = render("Loss (lr=3e-4)", &series);
        assert_eq!(pixels.len(), width * height * 3);
        let count = |color: [u8; 3]| pixels.chunks_exact(3).filter(|p| *p == color).count();
        // Beyond its legend swatch: a line for the first, a dot for the lone point.
        let swatch = (SWATCH.0 * SWATCH.1) as usize;
        assert!(count(red) > swatch + 500, "{}", count(red));
        assert!(count(blue) >= swatch + 25, "{}", count(blue));
        assert_eq!(count(green), swatch);

        let all_nan = [(1.0, f32::NAN), (2.0, f32::INFINITY)];
        let nothing = Series {
            label: "nan",
            color: red,
            points: &all_nan,
        };
        for series in [&[][..], &[nothing][..]] {
            let (w, h, blank) = render("", series);
            assert_eq!(blank.len(), w * h * 3);
            assert_eq!(chunks(&encode_png(w, h, &blank)).len(), 3);
        }
    }
}
