//! AMX-INT8 tiles for the W8A8 panels of [`super`]: `tdpbusd` multiplies a 16 × 64 tile of
//! u8 activations by a 64 × 16 tile of s8 weights into 16 × 16 i32 sums, exact and without
//! saturation like `vpdpbusd`, so every output bit equals the VNNI tiles' (same int32 sums, same
//! epilogue). Against the VNNI tiles on the AMX VM: 2B W8A8 prefill 236 → 379 tok/s, 16
//! streams 120 → 153 tok/s (one-row decode stays on VNNI, which streams as fast).
//!
//! No second copy of the weights: a panel (16 channels, groups of 4 reductions as 64-byte
//! `[channel][4]` lines) already is a column of AMX tiles — 16 consecutive groups are one 1 KB
//! tile whose row j is group j. The weight buffer is 64-byte aligned and ends in
//! [`SLACK_BYTES`] of zeros, so the last reduction tile of a panel whose group count is not a
//! multiple of 16 can be read whole; the activations are zero there (not the `q + 128` of the
//! padding inside K), so whatever those bytes are contributes nothing.

use super::{PANEL, STRIP_PANELS};
use crate::engine::kernels::runtime::aligned::AlignedBuf;
use crate::engine::kernels::runtime::amx::{self, Operand, TileLayout, Tiles, TILE};

/// Reductions per tile row (16 groups of 4).
const KTILE: usize = 64;
/// Zero bytes after the last panel (up to 15 groups of one reduction tile read past a panel).
pub const SLACK_BYTES: usize = 1024;
/// Fewest rows sent to the tiles: a tile product costs the same for 1 row as for 16, and
/// below this the VNNI tiles stream the weights as fast (see [`super`]'s strip).
pub const MIN_ROWS: usize = 2;

/// Whether AMX-INT8 tiles can run here ([`amx::available_int8`]); the kernel plan decides
/// whether they do.
pub fn available() -> bool {
    amx::available_int8()
}

/// Activations packed by [`pack_rows`]: `row_tiles` × `ktiles` tiles of 16 rows × 64 bytes.
#[derive(Clone, Copy)]
pub struct RowTiles<'a> {
    pub words: &'a [u32],
    pub row_tiles: usize,
    pub ktiles: usize,
}

/// The activations `xu` [m, kp] (kp a multiple of 4) as row tiles `[mt][kt][16 rows][64 bytes]`
/// in `out`, zero for rows ≥ m and reductions ≥ kp.
pub fn pack_rows<'a>(xu: &[u8], m: usize, kp: usize, out: &'a mut AlignedBuf<u8>) -> RowTiles<'a> {
    let (mt, kt) = (m.div_ceil(TILE), kp.div_ceil(KTILE));
    out.reset_zeroed(mt * kt * TILE * KTILE);
    for (r, row) in xu.chunks_exact(kp).take(m).enumerate() {
        let (i, rr) = (r / TILE, r % TILE);
        for (j, part) in row.chunks(KTILE).enumerate() {
            let at = ((i * kt + j) * TILE + rr) * KTILE;
            out[at..at + part.len()].copy_from_slice(part);
        }
    }
    RowTiles {
        words: out.as_words(),
        row_tiles: mt,
        ktiles: kt,
    }
}

/// `acc[r·64 + c] = Σ_k a[r][k] · w[c][k]` for the 16·a.row_tiles rows of `a` and the 16·np
/// channels of `np` ≤ 4 panels; `panels` the weight words from the strip's first panel to the
/// end of the buffer (slack included), `groups` per panel.
pub fn strip(
    tiles: &Tiles,
    a: RowTiles,
    panels: &[u32],
    np: usize,
    groups: usize,
    acc: &mut [i32],
) {
    let kt = a.ktiles;
    assert!((1..=STRIP_PANELS).contains(&np) && kt == groups.div_ceil(KTILE / 4));
    let left = Operand {
        words: a.words,
        layout: TileLayout::packed(kt),
        tiles: a.row_tiles,
    };
    let right = Operand {
        words: panels,
        layout: TileLayout {
            row: TILE,
            ktile: TILE * TILE,
            major: groups * PANEL,
        },
        tiles: np,
    };
    tiles.matmul_tiles(left, right, kt, acc, PANEL * STRIP_PANELS, None);
}
