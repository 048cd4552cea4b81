//! The key/value memory: every layer's keys and values, in f32 or f16, in pages of
//! [`TILE`] positions (the attention kernel's key tile, see `synapse_core::attention`)
//! that sequences draw from one pool.
//!
//! A sequence is a list of pages, one per tile of its positions. Pages are reference
//! counted: [`KvCache::fork`] gives a new sequence the same pages, so a shared prefix is
//! stored once, and a page is copied only when a sequence writes into one it shares
//! (copy on write). Snapshots are forks that nobody runs. Without a sliding window a
//! sequence holds every position it has evaluated; with one it is a ring of the window
//! plus one batch, so memory stays bounded however long the generation. Memory is
//! allocated in chunks of pages as sequences grow, and freed pages are reused first.
//!
//! The pool keeps the books (which page holds which tile of which sequence); a backend's
//! [`KvPages`] holds the pages themselves, in host memory ([`HostPages`], the layout the
//! CPU attention kernel reads) or on a device.

use crate::error::{Error, Result};
use crate::model::decoder::SeqRun;
/// Positions per page: the attention kernel's key tile.
pub use synapse_core::attention::TILE;
use synapse_core::attention::{
    self, attention_runs, AttentionShape, KvLayer, QueryRun, Tile, TileMut,
};

/// Element type of the cached keys and values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvType {
    F32,
    F16,
}

/// A sequence of a [`KvCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeqId(u32);

impl SeqId {
    /// A number for messages and handles: unique among the pool's live sequences.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// Pages allocated at a time, at most: few enough that a short sequence stays small.
const CHUNK_PAGES: usize = 8;

/// The shape of a pool's pages, from which a backend makes their storage.
#[derive(Clone, Copy, Debug)]
pub struct PageShape {
    pub kv_type: KvType,
    pub n_layers: usize,
    pub kv_dim: usize,
    /// Pages the pool adds at a time.
    pub chunk_pages: usize,
}

/// Where a backend keeps the pages of a [`KvCache`]: page `p` holds, for every layer, the
/// keys and values of [`TILE`] positions.
pub trait KvPages: Send {
    /// Allocates `n` more pages (the pool's `chunk_pages`), numbered after those there are.
    fn grow(&mut self, n: usize);
    /// Makes page `to` a copy of page `from`.
    fn copy_page(&mut self, from: u32, to: u32);
}

/// Pages in host memory, in chunks of `chunk_pages` pages. A page holds, layer after
/// layer, the tile's keys (`[kv_dim][TILE]`) then its values (`[TILE][kv_dim]`); f16 as
/// bits.
pub struct HostPages {
    chunks: Chunks,
    shape: PageShape,
}

enum Chunks {
    F32(Vec<Box<[f32]>>),
    F16(Vec<Box<[u16]>>),
}

impl HostPages {
    pub fn new(shape: PageShape) -> HostPages {
        let chunks = match shape.kv_type {
            KvType::F32 => Chunks::F32(Vec::new()),
            KvType::F16 => Chunks::F16(Vec::new()),
        };
        HostPages { chunks, shape }
    }

    /// Elements of one page.
    fn page_len(&self) -> usize {
        self.shape.n_layers * 2 * TILE * self.shape.kv_dim
    }

    /// Where `layer`'s part of `page` starts in its chunk, and the chunk.
    fn locate(&self, page: u32, layer: usize) -> (usize, usize) {
        let (p, per) = (page as usize, self.shape.chunk_pages);
        (
            p / per,
            p % per * self.page_len() + layer * 2 * TILE * self.shape.kv_dim,
        )
    }
}

impl KvPages for HostPages {
    fn grow(&mut self, n: usize) {
        debug_assert_eq!(n, self.shape.chunk_pages, "whole chunks");
        let len = n * self.page_len();
        match &mut self.chunks {
            Chunks::F32(c) => c.push(vec![0.0; len].into_boxed_slice()),
            Chunks::F16(c) => c.push(vec![0; len].into_boxed_slice()),
        }
    }

    fn copy_page(&mut self, from: u32, to: u32) {
        fn copy<E: Copy>(chunks: &mut [Box<[E]>], at: [(usize, usize); 2], len: usize) {
            let [(fc, fo), (tc, to)] = at;
            let page = chunks[fc][fo..fo + len].to_vec();
            chunks[tc][to..to + len].copy_from_slice(&page);
        }
        let (at, len) = ([self.locate(from, 0), self.locate(to, 0)], self.page_len());
        match &mut self.chunks {
            Chunks::F32(c) => copy(c, at, len),
            Chunks::F16(c) => copy(c, at, len),
        }
    }
}

struct Sequence {
    /// The page of each tile of positions, in slot order.
    pages: Vec<u32>,
    /// Positions evaluated.
    len: usize,
}

/// Bytes one position takes in a pool of `n_layers` layers of `kv_dim` keys and values.
pub fn position_bytes(n_layers: usize, kv_dim: usize, kv_type: KvType) -> usize {
    let elem = match kv_type {
        KvType::F32 => 4,
        KvType::F16 => 2,
    };
    n_layers * 2 * kv_dim * elem
}

/// Bytes of one page: every layer's keys and values of one tile of positions.
pub(crate) fn page_bytes(n_layers: usize, kv_dim: usize, kv_type: KvType) -> usize {
    TILE * position_bytes(n_layers, kv_dim, kv_type)
}

pub struct KvCache<S: KvPages = HostPages> {
    pages: S,
    kv_type: KvType,
    /// Pages per chunk: [`CHUNK_PAGES`], or fewer where a sequence or the pool holds fewer.
    chunk_pages: usize,
    n_layers: usize,
    kv_dim: usize,
    /// Sequences holding each page.
    refs: Vec<u32>,
    free: Vec<u32>,
    /// Most pages the pool may allocate.
    max_pages: usize,
    /// Positions a sequence holds, a multiple of [`TILE`]: position `p` lives in slot
    /// `p % slots`.
    slots: usize,
    context: usize,
    window: Option<usize>,
    max_batch: usize,
    sequences: Vec<Option<Sequence>>,
}

/// `seq` among `sequences` (a function of the field alone, so that the pages can be
/// written while a sequence is borrowed).
fn find(sequences: &[Option<Sequence>], seq: SeqId) -> Result<&Sequence> {
    sequences
        .get(seq.0 as usize)
        .and_then(Option::as_ref)
        .ok_or(Error::UnknownSequence { id: seq.0 })
}

impl KvCache<HostPages> {
    /// A pool in host memory (see [`KvCache::with_pages`]).
    pub fn new(
        n_layers: usize,
        kv_dim: usize,
        context: usize,
        window: Option<usize>,
        max_batch: usize,
        kv_type: KvType,
        max_pages: Option<usize>,
    ) -> KvCache<HostPages> {
        let geometry = (n_layers, kv_dim, context, window, max_batch);
        KvCache::with_pages(geometry, kv_type, max_pages, HostPages::new)
    }
}

impl<S: KvPages> KvCache<S> {
    /// A pool for sequences of up to `context` positions whose forward batches have at
    /// most `max_batch` tokens each, allocating at most `max_pages` pages (None: as many
    /// as the sequences need), in the storage `pages` makes.
    pub fn with_pages(
        (n_layers, kv_dim, context, window, max_batch): (usize, usize, usize, Option<usize>, usize),
        kv_type: KvType,
        max_pages: Option<usize>,
        pages: impl FnOnce(PageShape) -> S,
    ) -> KvCache<S> {
        let max_batch = max_batch.max(1);
        // A batch written at `pos` must not overwrite what its first query still sees,
        // `pos + 1 - window..pos`.
        let needed = window.map_or(context, |w| context.min(w.max(1) + max_batch - 1));
        let slots = needed.max(1).next_multiple_of(TILE);
        let max_pages = max_pages.unwrap_or(usize::MAX);
        let chunk_pages = CHUNK_PAGES.min(slots / TILE).min(max_pages).max(1);
        let shape = PageShape {
            kv_type,
            n_layers,
            kv_dim,
            chunk_pages,
        };
        KvCache {
            pages: pages(shape),
            kv_type,
            chunk_pages,
            n_layers,
            kv_dim,
            refs: Vec::new(),
            free: Vec::new(),
            max_pages,
            slots,
            context,
            window,
            max_batch,
            sequences: Vec::new(),
        }
    }

    /// The context length of every sequence, in positions.
    pub fn capacity(&self) -> usize {
        self.context
    }

    pub fn kv_type(&self) -> KvType {
        self.kv_type
    }

    /// Bytes of one page (every layer's keys and values of one tile).
    fn page_bytes(&self) -> usize {
        page_bytes(self.n_layers, self.kv_dim, self.kv_type)
    }

    /// The storage of the pages, and the pages of `seq` in slot order; position `p` is in
    /// tile `p % slots / TILE` (see [`KvCache::slots`]).
    pub fn pages(&self, seq: SeqId) -> Result<(&S, &[u32])> {
        Ok((&self.pages, &self.sequence(seq)?.pages))
    }

    /// [`KvCache::pages`], the storage writable.
    pub fn pages_mut(&mut self, seq: SeqId) -> Result<(&mut S, &[u32])> {
        let pages = &find(&self.sequences, seq)?.pages;
        Ok((&mut self.pages, pages))
    }

    /// Positions a sequence holds at most (a ring's size, with a sliding window).
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Bytes of pages that some sequence holds.
    pub fn bytes_in_use(&self) -> usize {
        self.refs.iter().filter(|&&r| r > 0).count() * self.page_bytes()
    }

    /// Bytes of key and value storage allocated.
    pub fn allocated_bytes(&self) -> usize {
        self.refs.len() * self.page_bytes()
    }

    /// A new, empty sequence.
    pub fn add_sequence(&mut self) -> SeqId {
        let seq = Sequence {
            pages: Vec::new(),
            len: 0,
        };
        match self.sequences.iter().position(Option::is_none) {
            Some(i) => {
                self.sequences[i] = Some(seq);
                SeqId(i as u32)
            }
            None => {
                self.sequences.push(Some(seq));
                SeqId(self.sequences.len() as u32 - 1)
            }
        }
    }

    fn sequence(&self, seq: SeqId) -> Result<&Sequence> {
        find(&self.sequences, seq)
    }

    fn sequence_mut(&mut self, seq: SeqId) -> Result<&mut Sequence> {
        self.sequences
            .get_mut(seq.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Error::UnknownSequence { id: seq.0 })
    }

    /// A new sequence holding what `seq` holds, sharing its pages until one of them writes.
    pub fn fork(&mut self, seq: SeqId) -> Result<SeqId> {
        let Sequence { pages, len } = self.sequence(seq)?;
        let (pages, len) = (pages.clone(), *len);
        for &p in &pages {
            self.refs[p as usize] += 1;
        }
        let child = self.add_sequence();
        *self.sequence_mut(child)? = Sequence { pages, len };
        Ok(child)
    }

    /// Makes `dst` hold what `src` holds (as [`KvCache::fork`], into an existing sequence).
    pub fn copy(&mut self, src: SeqId, dst: SeqId) -> Result<()> {
        if src == dst {
            return self.sequence(src).map(|_| ());
        }
        let copy = self.fork(src)?;
        self.sequence(dst)?;
        self.release_pages(dst, 0);
        self.sequences.swap(copy.0 as usize, dst.0 as usize);
        self.sequences[copy.0 as usize] = None;
        Ok(())
    }

    /// Frees a sequence's pages (those it shares stay with the others).
    pub fn remove_sequence(&mut self, seq: SeqId) -> Result<()> {
        self.sequence(seq)?;
        self.release_pages(seq, 0);
        self.sequences[seq.0 as usize] = None;
        Ok(())
    }

    /// Positions `seq` has evaluated.
    pub fn len(&self, seq: SeqId) -> Result<usize> {
        Ok(self.sequence(seq)?.len)
    }

    /// Drops the pages of `seq` from tile `keep` on.
    fn release_pages(&mut self, seq: SeqId, keep: usize) {
        let Some(Some(s)) = self.sequences.get_mut(seq.0 as usize) else {
            return;
        };
        for p in s.pages.drain(keep.min(s.pages.len())..) {
            self.refs[p as usize] -= 1;
            if self.refs[p as usize] == 0 {
                self.free.push(p);
            }
        }
    }

    /// Forgets the positions of `seq` from `len` on and returns how many it keeps: all
    /// `len`, or none when a sliding-window ring has overwritten what position `len` needs.
    pub fn truncate(&mut self, seq: SeqId, len: usize) -> Result<usize> {
        let current = self.sequence(seq)?.len;
        let len = len.min(current);
        let keep = match self.can_rewind(current, len) {
            true => len,
            false => 0,
        };
        // A ring that has wrapped keeps every page: the kept positions are spread over it.
        if current <= self.slots || keep == 0 {
            self.release_pages(seq, keep.div_ceil(TILE));
        }
        self.sequence_mut(seq)?.len = keep;
        Ok(keep)
    }

    /// Whether a sequence of `current_len` positions can go back to `new_len` and
    /// continue: false when a ring buffer has overwritten positions the next query sees.
    fn can_rewind(&self, current_len: usize, new_len: usize) -> bool {
        if new_len > current_len {
            return false;
        }
        match self.window {
            None => true,
            Some(w) => (new_len + 1).saturating_sub(w) >= current_len.saturating_sub(self.slots),
        }
    }

    /// Makes room for `n` more positions of `seq`, each in a page of its own (shared
    /// pages it will write are copied), and returns the first of them. The caller writes
    /// their keys and values next, layer by layer.
    pub fn append(&mut self, seq: SeqId, n: usize) -> Result<usize> {
        let pos = self.sequence(seq)?.len;
        if pos + n > self.context {
            return Err(Error::ContextOverflow {
                prompt: n,
                already: pos,
                context: self.context,
            });
        }
        if self.window.is_some() && n > self.max_batch {
            return Err(Error::BatchTooLarge {
                tokens: n,
                most: self.max_batch,
            });
        }
        let (first, ring) = (pos / TILE, self.slots / TILE);
        // Tiles already wrapped around are written again: the rest are new.
        let end = (pos + n).div_ceil(TILE).min(first + ring);
        let tiles = || (first..end).map(move |t| t % ring);
        let held = &find(&self.sequences, seq)?.pages;
        let new_pages = tiles()
            .filter(|&t| held.get(t).is_none_or(|&p| self.refs[p as usize] > 1))
            .count();
        let in_use = self.refs.len() - self.free.len();
        if in_use + new_pages > self.max_pages {
            return Err(Error::KvMemoryFull {
                pages: new_pages,
                page_bytes: self.page_bytes(),
            });
        }
        let mut pages = std::mem::take(&mut self.sequence_mut(seq)?.pages);
        for t in tiles() {
            match pages.get(t).copied() {
                Some(p) if self.refs[p as usize] == 1 => {}
                Some(shared) => {
                    let page = self.new_page();
                    self.pages.copy_page(shared, page);
                    self.refs[shared as usize] -= 1;
                    pages[t] = page;
                }
                None => {
                    debug_assert_eq!(t, pages.len(), "tiles fill in order");
                    pages.push(self.new_page());
                }
            }
        }
        self.sequence_mut(seq)?.pages = pages;
        self.sequence_mut(seq)?.len = pos + n;
        Ok(pos)
    }

    /// A free page, allocating a chunk when none is left (the caller checked the limit).
    fn new_page(&mut self) -> u32 {
        if self.free.is_empty() {
            let (first, pages) = (self.refs.len(), self.chunk_pages);
            self.pages.grow(pages);
            self.refs.resize(first + pages, 0);
            // Lowest first, so that a pool's memory stays compact.
            self.free
                .extend((first..first + pages).rev().map(|p| p as u32));
        }
        let page = self.free.pop().expect("a chunk was just added");
        self.refs[page as usize] = 1;
        page
    }
}

impl KvCache<HostPages> {
    /// Stores the keys and values (`[n][kv_dim]`) of positions `pos..pos + n` of `seq`,
    /// made room for by [`KvCache::append`].
    pub fn write(
        &mut self,
        layer: usize,
        seq: SeqId,
        pos: usize,
        keys: &[f32],
        values: &[f32],
    ) -> Result<()> {
        let kvd = self.kv_dim;
        let tile_len = TILE * kvd;
        let s = find(&self.sequences, seq)?;
        for (i, (k, v)) in keys
            .chunks_exact(kvd)
            .zip(values.chunks_exact(kvd))
            .enumerate()
        {
            let slot = (pos + i) % self.slots;
            let (chunk, at) = self.pages.locate(s.pages[slot / TILE], layer);
            let tile = match &mut self.pages.chunks {
                Chunks::F32(c) => {
                    let (keys, values) = c[chunk][at..at + 2 * tile_len].split_at_mut(tile_len);
                    TileMut::F32 { keys, values }
                }
                Chunks::F16(c) => {
                    let (keys, values) = c[chunk][at..at + 2 * tile_len].split_at_mut(tile_len);
                    TileMut::F16 { keys, values }
                }
            };
            attention::store(tile, kvd, slot % TILE, k, v);
        }
        Ok(())
    }

    /// The keys and values (`[position][kv_dim]`, as f32) of positions `0..len` of `seq`
    /// in `layer`, for references that attend without the kernel. Positions a ring has
    /// overwritten hold whatever took their slot.
    pub fn history(&self, layer: usize, seq: SeqId, len: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let kvd = self.kv_dim;
        let pages = &self.sequence(seq)?.pages;
        let (mut keys, mut values) = (vec![0.0; len * kvd], vec![0.0; len * kvd]);
        let widen = |x: &dyn Fn(usize) -> f32, out: &mut [f32]| {
            out.iter_mut().enumerate().for_each(|(i, o)| *o = x(i));
        };
        for p in 0..len {
            let slot = p % self.slots;
            let (chunk, at) = self.pages.locate(pages[slot / TILE], layer);
            let (i, v) = (slot % TILE, at + TILE * kvd);
            let (key, value) = (&mut keys[p * kvd..][..kvd], &mut values[p * kvd..][..kvd]);
            match &self.pages.chunks {
                Chunks::F32(c) => {
                    widen(&|d| c[chunk][at + d * TILE + i], key);
                    widen(&|d| c[chunk][v + i * kvd + d], value);
                }
                Chunks::F16(c) => {
                    let f = |bits: u16| half::f16::from_bits(bits).to_f32();
                    widen(&|d| f(c[chunk][at + d * TILE + i]), key);
                    widen(&|d| f(c[chunk][v + i * kvd + d]), value);
                }
            }
        }
        Ok((keys, values))
    }

    /// Attention of the queries `q` (`[rows][n_heads * head_dim]`) of a batch, each run's
    /// rows over its own sequence's pages at positions `pos..`, after their keys and
    /// values were written, into `out` (shaped like `q`).
    pub fn attention(
        &self,
        layer: usize,
        runs: &[SeqRun],
        q: &[f32],
        shape: &AttentionShape,
        threads: usize,
        out: &mut [f32],
    ) -> Result<()> {
        debug_assert_eq!(shape.n_kv_heads * shape.head_dim, self.kv_dim);
        debug_assert_eq!(
            shape.window, self.window,
            "the pool is sized for its window"
        );
        /// Each run's tiles of `layer`.
        fn tiles<'a, E>(
            cache: &KvCache<HostPages>,
            chunks: &'a [Box<[E]>],
            layer: usize,
            runs: &[SeqRun],
        ) -> Result<Vec<Vec<Tile<'a, E>>>> {
            let tile_len = TILE * cache.kv_dim;
            let tile = |p: u32| {
                let (chunk, at) = cache.pages.locate(p, layer);
                let (keys, values) = chunks[chunk][at..at + 2 * tile_len].split_at(tile_len);
                Tile { keys, values }
            };
            let run_tiles = |run: &SeqRun| -> Result<Vec<_>> {
                Ok(cache
                    .sequence(run.seq)?
                    .pages
                    .iter()
                    .map(|&p| tile(p))
                    .collect())
            };
            runs.iter().map(run_tiles).collect()
        }
        /// The runs as the attention kernel takes them, over their `tiles`.
        fn query_runs<'t, 'a: 't, E>(
            runs: &[SeqRun],
            tiles: &'t [Vec<Tile<'a, E>>],
            kv: impl Fn(&'t [Tile<'a, E>]) -> KvLayer<'t>,
        ) -> Vec<QueryRun<'t>> {
            let query = |(run, tiles): (&SeqRun, &'t Vec<Tile<'a, E>>)| QueryRun {
                rows: run.rows.clone(),
                kv: kv(tiles),
                pos: run.pos,
            };
            runs.iter().zip(tiles).map(query).collect()
        }
        let mut attend = |runs: &[QueryRun]| attention_runs(q, runs, shape, threads, out);
        match &self.pages.chunks {
            Chunks::F32(c) => attend(&query_runs(runs, &tiles(self, c, layer, runs)?, |t| {
                KvLayer::F32(t)
            })),
            Chunks::F16(c) => attend(&query_runs(runs, &tiles(self, c, layer, runs)?, |t| {
                KvLayer::F16(t)
            })),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use synapse_core::attention::reference_attention;

    fn shape(window: Option<usize>) -> AttentionShape {
        AttentionShape {
            n_heads: 6,
            n_kv_heads: 2,
            head_dim: 32,
            scale: 0.17,
            window,
            softcap: None,
        }
    }

    const KVD: usize = 64;
    const QD: usize = 192;

    /// Random keys, values and queries, and the history of one sequence for the reference
    /// (rounded as the cache stores it).
    struct Feed {
        seed: u32,
        kv_type: KvType,
        keys: Vec<f32>,
        values: Vec<f32>,
    }

    impl Feed {
        fn new(kv_type: KvType, seed: u32) -> Feed {
            Feed {
                seed,
                kv_type,
                keys: Vec::new(),
                values: Vec::new(),
            }
        }

        fn rand(&mut self, n: usize) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    self.seed = self
                        .seed
                        .wrapping_mul(1_664_525)
                        .wrapping_add(1_013_904_223);
                    (self.seed >> 8) as f32 / (1 << 24) as f32 * 4.0 - 2.0
                })
                .collect()
        }

        /// Appends `n` positions to `seq` (layer 1 only is checked) and compares their
        /// attention with the reference.
        fn step(&mut self, cache: &mut KvCache, seq: SeqId, n: usize, s: &AttentionShape) {
            let pos = cache.append(seq, n).unwrap();
            let (k, v, q) = (self.rand(n * KVD), self.rand(n * KVD), self.rand(n * QD));
            for layer in 0..2 {
                cache.write(layer, seq, pos, &k, &v).unwrap();
            }
            let kv_type = self.kv_type;
            let round = |x: &f32| match kv_type {
                KvType::F32 => *x,
                KvType::F16 => half::f16::from_f32(*x).to_f32(),
            };
            self.keys.truncate(pos * KVD);
            self.values.truncate(pos * KVD);
            self.keys.extend(k.iter().map(round));
            self.values.extend(v.iter().map(round));
            let mut out = vec![0.0; n * QD];
            let run = SeqRun {
                seq,
                rows: 0..n,
                pos,
            };
            cache.attention(1, &[run], &q, s, 2, &mut out).unwrap();
            let want = reference_attention(&q, &self.keys, &self.values, pos, s);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-4, "{kv_type:?} pos {pos}: {a} vs {b}");
            }
        }
    }

    fn pool(context: usize, window: Option<usize>, batch: usize, kv_type: KvType) -> KvCache {
        KvCache::new(2, KVD, context, window, batch, kv_type, None)
    }

    /// A pool of 512 positions without a window holding one sequence, and the `feed`
    /// (from `seed`) that wrote its first `n` positions.
    fn one_sequence(kv_type: KvType, seed: u32, n: usize) -> (KvCache, SeqId, Feed) {
        let mut cache = pool(512, None, 64, kv_type);
        let seq = cache.add_sequence();
        let mut feed = Feed::new(kv_type, seed);
        feed.step(&mut cache, seq, n, &shape(None));
        (cache, seq, feed)
    }

    #[test]
    fn f32_and_f16_pages_match_the_reference() {
        for kv_type in [KvType::F32, KvType::F16] {
            let mut cache = pool(200, None, 23, kv_type);
            let seq = cache.add_sequence();
            let mut feed = Feed::new(kv_type, 7);
            for pos in (0..200).step_by(23) {
                feed.step(&mut cache, seq, 23.min(200 - pos), &shape(None));
            }
            assert_eq!(cache.kv_type(), kv_type);
            // 200 positions take 13 pages of 2 layers' 16 keys and values.
            let elem = if kv_type == KvType::F32 { 4 } else { 2 };
            assert_eq!(cache.bytes_in_use(), 13 * 2 * 2 * TILE * KVD * elem);
        }
    }

    #[test]
    fn sliding_window_memory_stays_bounded() {
        let s = shape(Some(40));
        let mut cache = pool(100_000, Some(40), 8, KvType::F16);
        let seq = cache.add_sequence();
        let mut feed = Feed::new(KvType::F16, 3);
        for _ in 0..700 / 8 {
            feed.step(&mut cache, seq, 8, &s);
        }
        // Window + batch - 1 positions, rounded up to whole pages.
        assert_eq!(cache.bytes_in_use(), 3 * 2 * 2 * TILE * KVD * 2);
        let mut one_by_one = pool(1000, Some(16), 1, KvType::F32);
        let single = one_by_one.add_sequence();
        let mut feed = Feed::new(KvType::F32, 5);
        for _ in 0..300 {
            feed.step(&mut one_by_one, single, 1, &shape(Some(16)));
        }
        assert!(matches!(
            cache.append(seq, 9),
            Err(Error::BatchTooLarge { tokens: 9, most: 8 })
        ));
    }

    #[test]
    fn forks_share_their_prefix_until_they_write() {
        let s = shape(None);
        let (mut cache, parent, mut feed) = one_sequence(KvType::F16, 11, 40);
        let page = cache.page_bytes();
        assert_eq!(cache.bytes_in_use(), 3 * page);
        let child = cache.fork(parent).unwrap();
        assert_eq!(cache.bytes_in_use(), 3 * page, "a fork copies nothing");
        // The child's next positions land in the shared, partly filled third page: it
        // gets a copy of its own, then a new page.
        let mut child_feed = Feed {
            keys: feed.keys.clone(),
            values: feed.values.clone(),
            ..Feed::new(KvType::F16, 12)
        };
        child_feed.step(&mut cache, child, 20, &s);
        assert_eq!(cache.bytes_in_use(), 5 * page);
        // The parent still sees its own history, and continues on its own.
        feed.step(&mut cache, parent, 5, &s);
        assert_eq!(cache.bytes_in_use(), 5 * page);
        child_feed.step(&mut cache, child, 1, &s);
        cache.remove_sequence(child).unwrap();
        assert_eq!(cache.bytes_in_use(), 3 * page);
        assert!(matches!(
            cache.len(child),
            Err(Error::UnknownSequence { .. })
        ));
    }

    #[test]
    fn snapshots_restore_and_truncation_frees_pages() {
        let s = shape(None);
        let (mut cache, seq, mut feed) = one_sequence(KvType::F32, 21, 50);
        let snapshot = cache.fork(seq).unwrap();
        let (keys, values) = (feed.keys.clone(), feed.values.clone());
        feed.step(&mut cache, seq, 30, &s);
        cache.copy(snapshot, seq).unwrap();
        assert_eq!(cache.len(seq).unwrap(), 50);
        (feed.keys, feed.values) = (keys, values);
        feed.step(&mut cache, seq, 3, &s);

        let page = cache.page_bytes();
        cache.remove_sequence(snapshot).unwrap();
        assert_eq!(cache.bytes_in_use(), 4 * page);
        assert_eq!(cache.truncate(seq, 20).unwrap(), 20);
        assert_eq!(cache.bytes_in_use(), 2 * page);
        feed.step(&mut cache, seq, 10, &s);
    }

    #[test]
    fn a_full_pool_or_context_is_an_error() {
        let mut cache = KvCache::new(2, KVD, 100, None, 64, KvType::F16, Some(4));
        let a = cache.add_sequence();
        assert!(matches!(
            cache.append(a, 101),
            Err(Error::ContextOverflow { .. })
        ));
        cache.append(a, 64).unwrap();
        let b = cache.add_sequence();
        assert!(matches!(
            cache.append(b, 1),
            Err(Error::KvMemoryFull { pages: 1, .. })
        ));
        // Nothing was taken: once `a` gives its pages back, `b` gets them.
        cache.truncate(a, 0).unwrap();
        cache.append(b, 64).unwrap();
    }

    #[test]
    fn rewinding_a_ring_buffer_is_refused_once_overwritten() {
        let flat = pool(1000, None, 8, KvType::F16);
        assert!(flat.can_rewind(900, 0) && flat.can_rewind(900, 899));
        assert!(!flat.can_rewind(10, 11));
        // 48 slots: after 100 positions, 52..100 are held.
        let ring = pool(1000, Some(40), 8, KvType::F16);
        assert!(ring.can_rewind(100, 100) && ring.can_rewind(100, 91));
        assert!(!ring.can_rewind(100, 90));
        assert!(ring.can_rewind(30, 0));
    }
}
