//! AMX tiles: `tdpbf16ps` multiplies a 16×32 bf16 tile by a 32×16 one (as 16 rows of 16 bf16
//! pairs) into 16×16 f32 accumulators, about 30× the rate of `vdpbf16ps` on the same core;
//! `tdpbusd` does the same for u8 × s8 quads into i32. Used by the attention GEMMs (on the word
//! layout of [`attention::bf16`]), the bf16 GEMM ([`gemm::amx`]) and the W8A8 panels
//! ([`int8::amx`]).
//!
//! [`attention::bf16`]: crate::engine::kernels::attention::bf16
//! [`gemm::amx`]: crate::engine::kernels::gemm::amx
//! [`int8::amx`]: crate::engine::kernels::int8::amx
//!
//! Rust has no AMX intrinsics on stable, so the tile instructions are `asm!` with the tile
//! number as a `const` operand. The eight tile registers are invisible to the compiler, which
//! never allocates them (no AMX target feature is enabled anywhere), so a value left in a tile
//! by one `asm!` block is still there for the next. [`Tiles`] configures them and releases them
//! when dropped; nothing else may touch the tiles while it lives (oneDNN reconfigures them, so
//! no oneDNN call may run on this thread in between: [`Tiles`] is neither `Send` nor shared).

use std::marker::PhantomData;

use super::caps::CpuCaps;

/// Rows of a tile, and words (bf16 pairs, or f32 columns) per tile row.
pub const TILE: usize = 16;

/// Whether AMX-BF16 tiles can run here: the CPU has them and Linux granted this process the
/// tile data state ([`CpuCaps::amx_bf16`]). Whether they are used is the kernel plan's choice.
pub fn available() -> bool {
    CpuCaps::detect().amx_bf16
}

/// [`available`] for AMX-INT8 (`tdpbusd`, u8 × s8 → i32).
pub fn available_int8() -> bool {
    CpuCaps::detect().amx_int8
}

/// The CPU has AMX-TILE and Linux granted the tile data state: what executing tile
/// instructions rests on.
fn present() -> bool {
    CpuCaps::detect().amx_tiles
}

/// Asks Linux for permission to use AMX tile data in this process (no-op elsewhere); true when
/// granted. Repeating the request is harmless.
pub fn request_permission() -> bool {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    {
        extern "C" {
            fn syscall(num: std::ffi::c_long, ...) -> std::ffi::c_long;
        }
        const SYS_ARCH_PRCTL: std::ffi::c_long = 158;
        const ARCH_REQ_XCOMP_PERM: std::ffi::c_long = 0x1023;
        const XFEATURE_XTILEDATA: std::ffi::c_long = 18;
        // SAFETY: arch_prctl(ARCH_REQ_XCOMP_PERM, 18) only changes the process's permitted xsave
        // features; it takes no pointers and fails with EINVAL/EOPNOTSUPP where AMX is absent.
        unsafe { syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
    }
    #[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
    {
        false
    }
}

/// The tile registers of this thread, configured as eight 16-row × 64-byte tiles; released on
/// drop. Not `Send`: the configuration belongs to the thread that made it.
pub struct Tiles {
    _thread_bound: PhantomData<*const ()>,
}

#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl Tiles {
    /// Configure the tiles, or `None` where the CPU or the OS has none (whether to use them is
    /// the caller's choice).
    ///
    /// Panics if this thread already holds a `Tiles`: the inner configuration and release would
    /// silently clobber the outer one's accumulators (a pool call run inline inside a tile
    /// kernel would do that).
    pub fn new() -> Option<Tiles> {
        if !present() {
            return None;
        }
        assert!(
            !HELD.with(|h| h.replace(true)),
            "AMX tiles configured twice on one thread"
        );
        // Palette 1; bytes 16.. hold each tile's row width in bytes (u16), 48.. its row count.
        let mut cfg = TileConfig([0; 64]);
        cfg.0[0] = 1;
        for t in 0..8 {
            cfg.0[16 + 2 * t] = (TILE * 4) as u8;
            cfg.0[48 + t] = TILE as u8;
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `present()` established AMX-TILE support and the OS permission; the config
        // is a valid palette-1 layout (8 tiles of 16 rows × 64 bytes), read from a 64-byte
        // aligned buffer that lives through the instruction.
        unsafe {
            std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        }
        Some(Tiles {
            _thread_bound: PhantomData,
        })
    }

    /// c[i·c_stride + n] = Σ_{j < steps} a[i·a_stride + j] ⋅ b[j·b_stride + n] for i < rows,
    /// n < cols, where `⋅` is the two-product bf16 dot of a word pair accumulated in f32. `rows`,
    /// `steps` and `cols` must be multiples of [`TILE`] (callers zero-pad their operands).
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &self,
        a: &[u32],
        a_stride: usize,
        rows: usize,
        steps: usize,
        b: &[u32],
        b_stride: usize,
        cols: usize,
        c: &mut [f32],
        c_stride: usize,
    ) {
        assert!(
            rows.is_multiple_of(TILE) && steps.is_multiple_of(TILE) && cols.is_multiple_of(TILE)
        );
        assert!(a_stride >= steps && b_stride >= cols);
        let left = Operand {
            words: a,
            layout: TileLayout::left_rows(a_stride),
            tiles: rows / TILE,
        };
        let right = Operand {
            words: b,
            layout: TileLayout::right_rows(b_stride),
            tiles: cols / TILE,
        };
        self.matmul_tiles(left, right, steps / TILE, c, c_stride, None);
    }

    /// The same product over operands in any [`TileLayout`]: `a` has `a.tiles` row tiles, `b`
    /// `b.tiles` column tiles, both `ktiles` reduction tiles; c gets 16·a.tiles rows of
    /// 16·b.tiles values at `c_stride`. The sums start from zero, or from `start_row` (16 values
    /// per column tile, the same for every output row: a bias, folded into the accumulators
    /// instead of a second pass over the output).
    pub fn matmul_tiles<C: Accumulator>(
        &self,
        a: Operand,
        b: Operand,
        ktiles: usize,
        c: &mut [C],
        c_stride: usize,
        start_row: Option<&[C]>,
    ) {
        let (rows, cols) = (a.tiles * TILE, b.tiles * TILE);
        assert!(c_stride >= cols && c.len() >= (rows.max(1) - 1) * c_stride + cols);
        // SAFETY: the assert above keeps every element written inside `c`, borrowed mutably.
        unsafe { self.matmul_tiles_raw(a, b, ktiles, c.as_mut_ptr(), c_stride, start_row) }
    }

    /// [`Self::matmul_tiles`] into memory the caller shares between threads (each owning some
    /// columns of one output).
    ///
    /// # Safety
    /// `c` must be valid for reads and writes of 16·a.tiles rows × 16·b.tiles values at
    /// `c_stride`, and nothing else may access those values during the call.
    pub unsafe fn matmul_tiles_raw<C: Accumulator>(
        &self,
        a: Operand,
        b: Operand,
        ktiles: usize,
        c: *mut C,
        c_stride: usize,
        start_row: Option<&[C]>,
    ) {
        // The instruction the accumulator type selects must exist here (`self` only proves
        // that the tiles do).
        let cpu = CpuCaps::detect();
        assert!(if C::INT8 { cpu.amx_int8 } else { cpu.amx_bf16 });
        assert!(a.tiles > 0 && b.tiles > 0 && ktiles > 0);
        assert!(a.words.len() >= a.layout.extent(a.tiles, ktiles));
        assert!(b.words.len() >= b.layout.extent(b.tiles, ktiles));
        assert!(c_stride >= b.tiles * TILE);
        if let Some(r) = start_row {
            assert!(
                r.len() >= b.tiles * TILE,
                "the start row covers every column"
            );
        }
        let first_row = start_row.map(|r| r.as_ptr().cast::<u32>());
        #[cfg(target_arch = "x86_64")]
        {
            let mut k = Walk {
                a: a.layout,
                b: b.layout,
                c: c_stride,
                ktiles,
                start_row: first_row,
            };
            for i in (0..a.tiles).step_by(2) {
                let two_rows = i + 2 <= a.tiles;
                for n in (0..b.tiles).step_by(2) {
                    let two_cols = n + 2 <= b.tiles;
                    let ap = a.words[i * a.layout.major..].as_ptr();
                    let bp = b.words[n * b.layout.major..].as_ptr();
                    let cp = c.wrapping_add(i * TILE * c_stride + n * TILE).cast::<u32>();
                    k.start_row = first_row.map(|r| r.wrapping_add(n * TILE));
                    // SAFETY: the tiles are configured (`self` exists on this thread); the block
                    // of row tiles [i, i+MR) and column tiles [n, n+NR) lies inside the operands,
                    // so by the extent asserts above every tile load reads inside `a` / `b`, and
                    // by the caller's contract every access to `c` is inside its block.
                    unsafe {
                        match (two_rows, two_cols, C::INT8) {
                            (true, true, false) => imp::block::<2, 2, false>(ap, bp, cp, k),
                            (true, false, false) => imp::block::<2, 1, false>(ap, bp, cp, k),
                            (false, true, false) => imp::block::<1, 2, false>(ap, bp, cp, k),
                            (false, false, false) => imp::block::<1, 1, false>(ap, bp, cp, k),
                            (true, true, true) => imp::block::<2, 2, true>(ap, bp, cp, k),
                            (true, false, true) => imp::block::<2, 1, true>(ap, bp, cp, k),
                            (false, true, true) => imp::block::<1, 2, true>(ap, bp, cp, k),
                            (false, false, true) => imp::block::<1, 1, true>(ap, bp, cp, k),
                        }
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (a, b, c, ktiles, first_row);
            unreachable!("Tiles cannot exist off x86-64");
        }
    }
}

/// What a tile product accumulates into, which also picks the instruction: f32 for bf16 pairs
/// (`tdpbf16ps`), i32 for u8 × s8 quads (`tdpbusd`: u8 rows of the left operand times s8 rows
/// of the right, exact in i32 without saturation, like `vpdpbusd`).
pub trait Accumulator: Copy + sealed::Sealed {
    const INT8: bool;
}

impl Accumulator for f32 {
    const INT8: bool = false;
}

impl Accumulator for i32 {
    const INT8: bool = true;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for i32 {}
}

/// Where an operand's tiles live, in words: row r of the tile with major index t (the row tile
/// of a left operand, the column tile of a right one) and reduction tile j starts at
/// t·major + j·ktile + r·row, and holds 16 words.
#[derive(Debug, Clone, Copy)]
pub struct TileLayout {
    pub row: usize,
    pub ktile: usize,
    pub major: usize,
}

impl TileLayout {
    /// A left operand stored as rows of `stride` words.
    pub fn left_rows(stride: usize) -> Self {
        TileLayout {
            row: stride,
            ktile: TILE,
            major: TILE * stride,
        }
    }

    /// A right operand stored as reduction steps of `stride` words (one per column).
    pub fn right_rows(stride: usize) -> Self {
        TileLayout {
            row: stride,
            ktile: TILE * stride,
            major: TILE,
        }
    }

    /// Tile after tile, 1 KB each: [major][reduction tile][16 rows][16 words]. Each tile load
    /// then reads 1 KB in a row, where a strided one spreads its 16 rows over as many pages (a
    /// power-of-two stride also puts them all in one L1 set).
    pub fn packed(ktiles: usize) -> Self {
        TileLayout {
            row: TILE,
            ktile: TILE * TILE,
            major: ktiles * TILE * TILE,
        }
    }

    /// Words an operand of `majors` × `ktiles` tiles spans from its first.
    pub fn extent(&self, majors: usize, ktiles: usize) -> usize {
        (majors - 1) * self.major + (ktiles - 1) * self.ktile + (TILE - 1) * self.row + TILE
    }
}

/// One matmul operand: its words, their layout and its tile count along the major dimension.
#[derive(Clone, Copy)]
pub struct Operand<'a> {
    pub words: &'a [u32],
    pub layout: TileLayout,
    pub tiles: usize,
}

thread_local! {
    // Whether this thread holds a `Tiles` (see `Tiles::new`).
    static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl Drop for Tiles {
    fn drop(&mut self) {
        HELD.with(|h| h.set(false));
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the tiles were configured by `new` on this thread; releasing them returns the
        // tile state to its initial (unconfigured) form and touches no memory.
        unsafe {
            std::arch::asm!("tilerelease", options(nostack, nomem));
        }
    }
}

/// The operand layouts of one matmul, c's row stride in values, and the reduction in tiles.
#[derive(Clone, Copy)]
struct Walk {
    a: TileLayout,
    b: TileLayout,
    c: usize,
    ktiles: usize,
    /// The start row of this block's first column tile (4-byte values), else zero.
    start_row: Option<*const u32>,
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{Walk, TILE};
    use std::arch::asm;

    /// One MR×NR block of 16×16 accumulators: tiles 0..4 accumulate (row-tile r, col-tile n at
    /// 2r + n), tiles 4, 5 hold the A row tiles and 6, 7 the B column tiles of a 32-value step.
    ///
    /// # Safety
    /// The tiles must be configured as 16 rows × 64 bytes; `a` readable for MR row tiles and `b`
    /// for NR column tiles of `k.ktiles` reduction tiles in their layouts; `c` writable for
    /// 16·MR rows of 16·NR 4-byte values at `k.c`; a start row readable for 16·NR values;
    /// AMX-INT8 present with `INT8`.
    #[inline(always)]
    pub unsafe fn block<const MR: usize, const NR: usize, const INT8: bool>(
        a: *const u32,
        b: *const u32,
        c: *mut u32,
        k: Walk,
    ) {
        let (sa, sb, sc) = (4 * k.a.row, 4 * k.b.row, 4 * k.c);
        // SAFETY (all blocks below): the caller's contract; offsets stay inside the tiles it
        // vouches for (row tile r at r·major of a, column tile n at n·major of b, reduction tile
        // j at j·ktile of both).
        unsafe {
            if let Some(r) = k.start_row {
                // Stride 0: the row's 64 bytes become all 16 rows of the tile.
                load::<0>(r.cast(), 0);
                if NR == 2 {
                    load::<1>(r.add(TILE).cast(), 0);
                }
                if MR == 2 {
                    load::<2>(r.cast(), 0);
                    if NR == 2 {
                        load::<3>(r.add(TILE).cast(), 0);
                    }
                }
            } else {
                zero::<0>();
                if NR == 2 {
                    zero::<1>();
                }
                if MR == 2 {
                    zero::<2>();
                    if NR == 2 {
                        zero::<3>();
                    }
                }
            }
            for j in 0..k.ktiles {
                let (aj, bj) = (a.add(j * k.a.ktile), b.add(j * k.b.ktile));
                load::<4>(aj.cast(), sa);
                load::<6>(bj.cast(), sb);
                dot::<0, 4, 6, INT8>();
                if NR == 2 {
                    load::<7>(bj.add(k.b.major).cast(), sb);
                    dot::<1, 4, 7, INT8>();
                }
                if MR == 2 {
                    load::<5>(aj.add(k.a.major).cast(), sa);
                    dot::<2, 5, 6, INT8>();
                    if NR == 2 {
                        dot::<3, 5, 7, INT8>();
                    }
                }
            }
            store::<0>(c.cast(), sc);
            if NR == 2 {
                store::<1>(c.add(TILE).cast(), sc);
            }
            if MR == 2 {
                let c1 = c.add(TILE * k.c);
                store::<2>(c1.cast(), sc);
                if NR == 2 {
                    store::<3>(c1.add(TILE).cast(), sc);
                }
            }
        }
    }

    /// # Safety
    /// Tiles configured.
    #[inline(always)]
    unsafe fn zero<const T: u8>() {
        // SAFETY: the caller configured tile T; zeroing touches no memory.
        unsafe { asm!("tilezero tmm{t}", t = const T, options(nostack, nomem, preserves_flags)) }
    }

    /// # Safety
    /// Tiles configured; 16 rows of 64 bytes at `p` + r·`stride` readable.
    #[inline(always)]
    unsafe fn load<const T: u8>(p: *const u8, stride: usize) {
        // SAFETY: the caller vouches for the 16 rows read.
        unsafe {
            asm!("tileloadd tmm{t}, [{p} + {s}*1]", t = const T, p = in(reg) p, s = in(reg) stride,
                options(nostack, readonly, preserves_flags))
        }
    }

    /// # Safety
    /// Tiles configured; 16 rows of 64 bytes at `p` + r·`stride` writable.
    #[inline(always)]
    unsafe fn store<const T: u8>(p: *mut u8, stride: usize) {
        // SAFETY: the caller vouches for the 16 rows written.
        unsafe {
            asm!("tilestored [{p} + {s}*1], tmm{t}", t = const T, p = in(reg) p, s = in(reg) stride,
                options(nostack, preserves_flags))
        }
    }

    /// tile C += tile A · tile B: bf16 pairs into f32 (`tdpbf16ps`) or, with `INT8`, u8 × s8
    /// quads into i32 (`tdpbusd`).
    ///
    /// # Safety
    /// Tiles configured and AMX-BF16 (AMX-INT8 with `INT8`) present.
    #[inline(always)]
    unsafe fn dot<const C: u8, const A: u8, const B: u8, const INT8: bool>() {
        // SAFETY: register-only; the caller established the instruction set and configuration.
        unsafe {
            if INT8 {
                asm!("tdpbusd tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
                    options(nostack, nomem, preserves_flags))
            } else {
                asm!("tdpbf16ps tmm{c}, tmm{a}, tmm{b}", c = const C, a = const A, b = const B,
                    options(nostack, nomem, preserves_flags))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bf(x: f32) -> u32 {
        crate::engine::kernels::bf16::round_bf16(x).to_bits() >> 16
    }

    /// Every block shape (2×2, 2×1, 1×2, 1×1) against a scalar loop over the same words.
    #[test]
    fn a_second_configuration_on_one_thread_is_refused() {
        let Some(_outer) = Tiles::new() else {
            return;
        };
        let nested = std::panic::catch_unwind(|| Tiles::new().map(drop));
        assert!(nested.is_err(), "nested Tiles must panic");
    }

    #[test]
    fn matmul_equals_a_scalar_loop() {
        let Some(tiles) = Tiles::new() else {
            println!("AMX-BF16 not available here; nothing to check");
            return;
        };
        for &(rows, steps, cols) in &[(16, 16, 16), (48, 32, 48), (32, 64, 80), (16, 48, 32)] {
            let (a_stride, b_stride, c_stride) = (steps + 3, cols + 16, cols + 5);
            let val = |i: usize| ((i * 37 % 101) as f32 - 50.0) / 16.0;
            let a: Vec<u32> = (0..rows * a_stride)
                .map(|i| bf(val(i)) | (bf(val(i + 7)) << 16))
                .collect();
            let b: Vec<u32> = (0..steps * b_stride)
                .map(|i| bf(val(i + 3)) | (bf(val(i * 5 + 1)) << 16))
                .collect();
            let mut c = vec![f32::NAN; rows * c_stride];
            tiles.matmul(
                &a, a_stride, rows, steps, &b, b_stride, cols, &mut c, c_stride,
            );
            let half =
                |w: u32, hi: bool| f32::from_bits(if hi { w & 0xffff_0000 } else { w << 16 });
            for i in 0..rows {
                for n in 0..cols {
                    let mut want = 0f64;
                    for j in 0..steps {
                        let (x, y) = (a[i * a_stride + j], b[j * b_stride + n]);
                        want += half(x, false) as f64 * half(y, false) as f64;
                        want += half(x, true) as f64 * half(y, true) as f64;
                    }
                    let got = c[i * c_stride + n] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{rows}x{steps}x{cols} at ({i},{n}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
