//! bf16-weight GEMM on AMX tiles: `y = x · Wᵀ (+ b)` with W packed once at load into 1 KB tiles
//! of 16 output channels × 32 reductions, and x rounded to bf16 and packed per call the same way.
//!
//! Why it exists: oneDNN 2.6 (Debian's) reaches 0.93 TFLOP/s on one core and 1.4 on two for the
//! vision tower's and prefill's shapes on this project's Sapphire Rapids VM; a plain 2×2 tile
//! kernel over contiguous, 64-byte aligned tiles reaches 1.4 per core and 2.6 on two (measured
//! with a C probe, M = 784, K = 2048, N = 6144). Unaligned or strided tile rows cost 3×: each
//! row then spans two cache lines (and a power-of-two stride puts all 16 in one L1 set). In
//! `linear_bench` on the AMX VM (6144 × 2048, 2 threads): M = 784 1.96 vs oneDNN's 0.97 TFLOP/s,
//! M = 128 1.58 vs 1.19, M = 1 50.8 vs 44.5 GB/s of weights; 2B bf16 prefill 225 → 302 tok/s.
//!
//! Numerics: both operands are bf16 values, products are exact in f32 and every output element
//! is accumulated in one f32 tile over k in increasing order from zero, whatever the row count
//! or the thread split. So, like [`super::bf16_fma`], a row's result does not depend on the
//! batch it is computed in; it differs from that kernel only in the order of f32 additions
//! (`tdpbf16ps` adds each bf16 pair's two products before accumulating).
//!
//! Blocking: each task owns a block of output-channel tiles small enough that its weights
//! (≤ 1 MB) stay in L2; a 2×2 block of accumulators runs the whole reduction in registers and
//! is stored once. A packed input of up to 1 MB (prefill) stays in L2 while the task's column
//! pairs stream past it, each pair serving every row pair at once; a larger one (the vision
//! tower's 784 rows) streams its row pairs past the block's weights instead.

use std::cell::RefCell;

use crate::engine::error::{EngineError, Result};
use crate::engine::kernels::attention::bf16::{halves, narrow_scaled};
use crate::engine::kernels::linear::{RowSource, WeightStore};
use crate::engine::kernels::ops::RawRows;
use crate::engine::kernels::runtime::aligned::AlignedBuf;
use crate::engine::kernels::runtime::amx::{self, Operand, TileLayout, Tiles, TILE};
use crate::engine::kernels::runtime::pool::ThreadPool;

/// bf16 values per reduction tile (16 words).
const KTILE: usize = 2 * TILE;
/// Words per tile.
const TILE_WORDS: usize = TILE * TILE;
/// Weight bytes of one task's block, re-read by every row pair: half of a 2 MB L2.
const BLOCK_BYTES: usize = 1 << 20;
/// Packed input bytes up to which the input, not the weights, is what stays in L2.
const INPUT_BYTES: usize = 1 << 20;
/// Tasks per compute thread at least, where the weight has enough tiles (balance).
const TASKS_PER_THREAD: usize = 2;

/// Whether the kernel can run here ([`amx::available`]); the kernel plan decides whether it does.
pub fn available() -> bool {
    amx::available()
}

/// A bf16 weight [n, k] as AMX tiles: tile (t, j) holds output channels 16t.. and reductions
/// 32j.., row r = reduction pair 16j + r, word c = channel 16t + c (even reduction in the low
/// half). Zero-padded to whole tiles.
pub struct AmxPanels {
    n: usize,
    k: usize,
    /// Output-channel tiles and reduction tiles.
    nt: usize,
    kt: usize,
    words: AlignedBuf<u32>,
}

impl AmxPanels {
    /// Packs a weight handed over in row blocks (`rows(r0, r1)` = rows [r0, r1) as bf16 or
    /// f32, rounded to bf16), so the source never needs to exist whole next to the packed copy.
    pub fn from_rows(pool: &ThreadPool, n: usize, k: usize, rows: RowSource) -> Result<Self> {
        if n == 0 || k == 0 {
            return Err(EngineError::Kernel(format!(
                "AMX panels: empty weight {n}×{k}"
            )));
        }
        let (nt, kt) = (n.div_ceil(TILE), k.div_ceil(KTILE));
        let mut words = AlignedBuf::<u32>::zeroed(nt * kt * TILE_WORDS);
        let out = RawRows(words.as_mut_ptr());
        crate::engine::kernels::linear::for_row_blocks(
            n,
            k,
            TILE,
            rows,
            "AMX panels",
            &mut |r0, r1, part| {
                let t0 = r0 / TILE;
                pool.run((r1 - r0).div_ceil(TILE), &|i| {
                    let t = t0 + i;
                    // SAFETY: channel tile t's kt tiles belong to this task only and lie inside
                    // `words` (t < nt).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(
                            out.get().add(t * kt * TILE_WORDS),
                            kt * TILE_WORDS,
                        )
                    };
                    let channels = ((t + 1) * TILE).min(r1) - t * TILE;
                    // The tile's channels as rows of words (zero-padded to kt·16 words), then one
                    // 16 × 16 transpose per tile: writes in order, 16 read streams.
                    let row_words = kt * TILE;
                    let mut src = vec![0u32; TILE * row_words];
                    for (c, row) in src.chunks_exact_mut(row_words).take(channels).enumerate() {
                        let first = (t * TILE + c - r0) * k;
                        let h = halves(row);
                        match part {
                            WeightStore::Bf16(w) => {
                                for (b, v) in h.iter_mut().zip(&w[first..first + k]) {
                                    *b = v.to_bits();
                                }
                            }
                            WeightStore::F32(w) => narrow_scaled(&w[first..first + k], 1.0, h),
                            // A bf16 unit: f16 weights are never routed here (the backends send
                            // them to the f16 FMA panels); called directly, they round to bf16.
                            WeightStore::F16(w) => {
                                let wide: Vec<f32> =
                                    w[first..first + k].iter().map(|v| v.to_f32()).collect();
                                narrow_scaled(&wide, 1.0, h)
                            }
                        }
                    }
                    for (j, tile) in dst.chunks_exact_mut(TILE_WORDS).enumerate() {
                        for (r, line) in tile.chunks_exact_mut(TILE).enumerate() {
                            let p = j * TILE + r;
                            for (c, word) in line.iter_mut().enumerate() {
                                *word = src[c * row_words + p];
                            }
                        }
                    }
                });
            },
        )?;
        Ok(AmxPanels {
            n,
            k,
            nt,
            kt,
            words,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn bytes(&self) -> usize {
        self.words.len() * 4
    }

    /// Output-channel tiles per task: the L2 budget, an even count (2×2 blocks), and at least
    /// [`TASKS_PER_THREAD`] tasks per thread where the weight is wide enough.
    fn block_tiles(&self, threads: usize) -> usize {
        let by_cache = (BLOCK_BYTES / (self.kt * TILE_WORDS * 4)).max(2);
        let by_balance = self.nt.div_ceil(threads * TASKS_PER_THREAD);
        by_cache.min(by_balance).max(2).next_multiple_of(2)
    }

    /// y[m, n] = bf16(x[m, k]) · Wᵀ (+ bias), f32 out.
    pub fn matmul(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        m: usize,
        bias: Option<&[f32]>,
        y: &mut [f32],
    ) -> Result<()> {
        Self::matmul_group(pool, &[self], x, m, &[bias], &mut [y])
    }

    /// [`Self::matmul`] for several weights over one input (q/k/v, gate/up): the input is packed
    /// once and every weight's channel blocks run in one batch of pool tasks, so each layer does
    /// not pay a pack and two pool round trips of its own. `ys[i]` gets exactly the values
    /// `layers[i].matmul` would give it.
    pub fn matmul_group(
        pool: &ThreadPool,
        layers: &[&AmxPanels],
        x: &[f32],
        m: usize,
        biases: &[Option<&[f32]>],
        ys: &mut [&mut [f32]],
    ) -> Result<()> {
        if !available() {
            return Err(EngineError::Kernel(
                "AMX GEMM called where AMX tiles cannot run".into(),
            ));
        }
        let Some(first) = layers.first() else {
            return Ok(());
        };
        if biases.len() != layers.len() || ys.len() != layers.len() {
            return Err(EngineError::Kernel(format!(
                "AMX group: {} weights, {} biases, {} outputs",
                layers.len(),
                biases.len(),
                ys.len()
            )));
        }
        for ((l, b), y) in layers.iter().zip(biases).zip(ys.iter()) {
            if l.k != first.k {
                return Err(EngineError::Kernel(format!(
                    "AMX group: reductions {} and {} differ",
                    first.k, l.k
                )));
            }
            crate::engine::kernels::linear::check_matmul_operands("AMX", (l.n, l.k), x, m, *b, y)?;
        }
        let threads = pool.threads();
        // Task t of the batch: layer `owner`, channel block t − starts[owner].
        let mut starts = Vec::with_capacity(layers.len() + 1);
        starts.push(0);
        for l in layers {
            let blocks = l.nt.div_ceil(l.block_tiles(threads));
            starts.push(starts.last().copied().unwrap_or(0) + blocks);
        }
        let outs: Vec<RawRows<f32>> = ys.iter_mut().map(|y| RawRows(y.as_mut_ptr())).collect();
        INPUT.with(|cell| {
            let mut a = cell.borrow_mut();
            pack_input(pool, &x[..m * first.k], m, first.k, first.kt, &mut a);
            let a = &a[..];
            pool.run(starts[layers.len()], &|task| {
                let owner = starts.partition_point(|&s| s <= task) - 1;
                let l = layers[owner];
                let nb = l.block_tiles(threads);
                let bi = task - starts[owner];
                // `available()` above implies the tiles are present (fixed for the process).
                let tiles = Tiles::new().expect("AMX tiles present");
                let t1 = ((bi + 1) * nb).min(l.nt);
                l.block(&tiles, a, m, (bi * nb, t1), biases[owner], &outs[owner]);
            });
        });
        Ok(())
    }

    /// Output-channel tiles [t0, t1) for all rows; `a` is the packed input.
    fn block(
        &self,
        tiles: &Tiles,
        a: &[u32],
        m: usize,
        (t0, t1): (usize, usize),
        bias: Option<&[f32]>,
        out: &RawRows<f32>,
    ) {
        let mt = m.div_ceil(TILE);
        if mt * self.kt * TILE_WORDS * 4 <= INPUT_BYTES {
            // Column pairs outside, row pairs inside: a column pair's weights come from memory
            // once and serve every row pair while they are still in L1 / L2, and the whole
            // packed input stays in L2. (Rows outside waited on each weight tile from memory in
            // the first row pair's pass: 15–20 % slower at 128 rows.)
            for t in (t0..t1).step_by(2) {
                for i in (0..mt).step_by(2) {
                    self.block_at(tiles, a, m, (i, t), t1, bias, out);
                }
            }
        } else {
            // An input too large for L2 streams past the block's weights, which stay there.
            for i in (0..mt).step_by(2) {
                for t in (t0..t1).step_by(2) {
                    self.block_at(tiles, a, m, (i, t), t1, bias, out);
                }
            }
        }
    }

    /// The 2×2 block of tiles at row tile `i`, column tile `t`, clipped to the rows, to the
    /// matrix's columns and to the task's last column tile `t1`.
    #[allow(clippy::too_many_arguments)]
    fn block_at(
        &self,
        tiles: &Tiles,
        a: &[u32],
        m: usize,
        (i, t): (usize, usize),
        t1: usize,
        bias: Option<&[f32]>,
        out: &RawRows<f32>,
    ) {
        let (n, kt) = (self.n, self.kt);
        let layout = TileLayout::packed(kt);
        let mr = 2.min(m.div_ceil(TILE) - i);
        let rows = (m - i * TILE).min(mr * TILE);
        let left = Operand {
            words: &a[i * layout.major..],
            layout,
            tiles: mr,
        };
        let nr = 2.min(t1 - t);
        let cols = (n - t * TILE).min(nr * TILE);
        let right = Operand {
            words: &self.words[t * layout.major..],
            layout,
            tiles: nr,
        };
        let (r0, c0) = (i * TILE, t * TILE);
        if rows == mr * TILE && cols == nr * TILE {
            let start = bias.map(|b| &b[c0..c0 + cols]);
            // SAFETY: rows [r0, r0+rows) < m and columns [c0, c0+cols) ≤ n of y belong to this
            // task only (tasks own disjoint channel tiles); `matmul` checked y.len() ≥ m·n.
            unsafe {
                let c = out.get().add(r0 * n + c0);
                tiles.matmul_tiles_raw(left, right, kt, c, n, start);
            }
            return;
        }
        // A block over the edge of y: through scratch, then the valid part. It starts from the
        // bias too (zero-padded past n), so a row gets the same bits whether its tile is whole
        // or not (batch invariance).
        EDGE.with(|cell| {
            let (scratch, bias_row) = &mut *cell.borrow_mut();
            scratch.resize_zeroed(4 * TILE_WORDS);
            let start = bias.map(|b| {
                bias_row.reset_zeroed(2 * TILE);
                bias_row[..cols].copy_from_slice(&b[c0..c0 + cols]);
                &bias_row[..]
            });
            tiles.matmul_tiles(left, right, kt, scratch, 2 * TILE, start);
            for r in 0..rows {
                // SAFETY: as for the interior blocks: this task's columns, rows < m.
                let yr = unsafe {
                    std::slice::from_raw_parts_mut(out.get().add((r0 + r) * n + c0), cols)
                };
                yr.copy_from_slice(&scratch[r * 2 * TILE..][..cols]);
            }
        });
    }
}

thread_local! {
    // The packed input, reused across calls (decode runs hundreds of linears per token).
    static INPUT: RefCell<AlignedBuf<u32>> = const { RefCell::new(AlignedBuf::new()) };
    // One 2×2 block of accumulators for blocks over the edge of the output, and its bias row.
    static EDGE: RefCell<(AlignedBuf<f32>, AlignedBuf<f32>)> =
        const { RefCell::new((AlignedBuf::new(), AlignedBuf::new())) };
}

/// x [m, k] rounded to bf16 as AMX row tiles: tile (i, j) holds rows 16i.. and reductions
/// 32j.., row r = input row 16i + r, word w = values (32j + 2w, 32j + 2w + 1). Padding (rows
/// ≥ m, reductions ≥ k) is written as zeros, so stale contents of `out` never leak in.
fn pack_input(
    pool: &ThreadPool,
    x: &[f32],
    m: usize,
    k: usize,
    kt: usize,
    out: &mut AlignedBuf<u32>,
) {
    let mt = m.div_ceil(TILE);
    out.resize_zeroed(mt * kt * TILE_WORDS);
    let dst = RawRows(out.as_mut_ptr());
    let pack_tile = |i: usize| {
        // SAFETY: row tile i's kt tiles belong to this call only and lie inside `out`.
        let tile_row = unsafe {
            std::slice::from_raw_parts_mut(dst.get().add(i * kt * TILE_WORDS), kt * TILE_WORDS)
        };
        for r in 0..TILE {
            let row = i * TILE + r;
            for j in 0..kt {
                let words = &mut tile_row[j * TILE_WORDS + r * TILE..][..TILE];
                if row >= m {
                    words.fill(0);
                    continue;
                }
                let (k0, k1) = (j * KTILE, ((j + 1) * KTILE).min(k));
                let h = halves(words);
                narrow_scaled(&x[row * k + k0..row * k + k1], 1.0, h);
                h[k1 - k0..].fill(0);
            }
        }
    };
    if mt == 1 {
        pack_tile(0);
    } else {
        pool.run(mt, &pack_tile);
    }
}
