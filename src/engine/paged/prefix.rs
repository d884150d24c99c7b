//! Content hashes for prefix caching. Every prompt token gets a 64-bit key — its id for text, a
//! hash of (visual item content, index inside the item) for image/video pad tokens, so the same
//! image at the same place shares blocks and a different image never does — and every full
//! block gets a 128-bit hash chained over all keys before it.

/// Two independent multiply–xor lanes: 128 bits, fast enough for megabytes of pixels.
#[derive(Clone, Copy)]
pub struct Hasher128 {
    a: u64,
    b: u64,
}

const KA: u64 = 0x9E37_79B9_7F4A_7C15;
const KB: u64 = 0xC2B2_AE3D_27D4_EB4F;

impl Hasher128 {
    pub fn new(seed: u128) -> Self {
        Hasher128 {
            a: (seed as u64) ^ 0x243F_6A88_85A3_08D3,
            b: ((seed >> 64) as u64) ^ 0x1319_8A2E_0370_7344,
        }
    }

    #[inline]
    pub fn write(&mut self, w: u64) {
        self.a = (self.a ^ w).wrapping_mul(KA).rotate_left(29);
        self.b = (self.b.rotate_left(17) ^ w).wrapping_mul(KB);
    }

    pub fn finish(self) -> u128 {
        let mix = |mut x: u64| {
            x ^= x >> 33;
            x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
            x ^= x >> 33;
            x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
            x ^ (x >> 33)
        };
        ((mix(self.a ^ self.b.rotate_left(7)) as u128) << 64) | mix(self.b ^ self.a) as u128
    }
}

/// Hash of a visual item: its grid and every pixel value (bit pattern).
pub fn visual_content_hash(kind: u8, grid: [usize; 3], pixels: &[f32]) -> u128 {
    let mut h = Hasher128::new(kind as u128);
    for g in grid {
        h.write(g as u64);
    }
    h.write(pixels.len() as u64);
    let mut it = pixels.chunks_exact(2);
    for c in &mut it {
        h.write(c[0].to_bits() as u64 | (c[1].to_bits() as u64) << 32);
    }
    for x in it.remainder() {
        h.write(x.to_bits() as u64);
    }
    h.finish()
}

/// Key of the `index`-th pad token of a visual item.
pub fn visual_token_key(item: u128, index: usize) -> u64 {
    let mut h = Hasher128::new(item);
    h.write(index as u64);
    (h.finish() as u64) | 1 << 63
}

/// Key of a text token (never collides with visual keys: the top bit is clear).
#[inline]
pub fn text_token_key(id: u32) -> u64 {
    id as u64
}

/// Hash of block `keys` given the hash of everything before it (`prev`, 0 for the first block).
pub fn block_hash(prev: u128, keys: &[u64]) -> u128 {
    let mut h = Hasher128::new(prev);
    for &k in keys {
        h.write(k);
    }
    h.finish()
}
