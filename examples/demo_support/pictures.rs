//! The demo's pictures, drawn exactly as `scripts/train/tasks.py` draws the trained model's
//! training pictures (same colours, backgrounds, grid placement and integer geometry), so the
//! demo asks about images from the model's own distribution. `tests/demo_model.rs` checks the
//! drawing pixel for pixel against a picture drawn by the Python generator.
#![allow(dead_code)]

use image::{Rgb, RgbImage};
use rand::Rng;

/// Colour names (the model's answers) and their RGB values.
pub const COLOURS: [(&str, [u8; 3]); 6] = [
    ("red", [220, 30, 30]),
    ("green", [30, 160, 50]),
    ("blue", [30, 60, 220]),
    ("yellow", [230, 200, 20]),
    ("purple", [140, 40, 170]),
    ("orange", [240, 130, 20]),
];
pub const BACKGROUNDS: [[u8; 3]; 4] = [
    [255, 255, 255],
    [235, 235, 235],
    [245, 240, 225],
    [225, 235, 245],
];
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
/// Pictures are 64×64: a 2×2 grid of 32-pixel cells (one visual token each), one object per
/// cell at most.
pub const GRID: i32 = 2;
pub const SIZE: u32 = 32 * GRID as u32;

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub shape: &'static str,
    pub colour: &'static str,
    pub cx: i32,
    pub cy: i32,
    pub r: i32,
}

pub fn rgb(colour: &str) -> [u8; 3] {
    COLOURS
        .iter()
        .find(|(n, _)| *n == colour)
        .map(|(_, c)| *c)
        .unwrap_or_else(|| panic!("unknown colour {colour}"))
}

/// Fills `shape` of radius `r` centred on (cx, cy), testing pixel centres with integers:
/// circle `dx² + dy² ≤ r²`; square `|dx|, |dy| ≤ 7r/8`; triangle (apex up) `2|dx| ≤ dy + r`.
pub fn draw_shape(img: &mut RgbImage, shape: &str, colour: [u8; 3], cx: i32, cy: i32, r: i32) {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let s = r * 7 / 8;
    for y in (cy - r).max(0)..(cy + r + 1).min(h) {
        for x in (cx - r).max(0)..(cx + r + 1).min(w) {
            let (dx, dy) = (x - cx, y - cy);
            let inside = match shape {
                "circle" => dx * dx + dy * dy <= r * r,
                "square" => dx.abs() <= s && dy.abs() <= s,
                _ => 2 * dx.abs() <= dy + r,
            };
            if inside {
                img.put_pixel(x as u32, y as u32, Rgb(colour));
            }
        }
    }
}

pub fn picture(background: [u8; 3], objects: &[Object]) -> RgbImage {
    let mut img = RgbImage::from_pixel(SIZE, SIZE, Rgb(background));
    for o in objects {
        draw_shape(&mut img, o.shape, rgb(o.colour), o.cx, o.cy, o.r);
    }
    img
}

/// `n` random objects in distinct grid cells, sized and jittered as in training.
pub fn random_objects(rng: &mut impl Rng, n: usize) -> Vec<Object> {
    let mut cells: Vec<i32> = (0..GRID * GRID).collect();
    (0..n)
        .map(|_| {
            let cell = cells.swap_remove(rng.random_range(0..cells.len()));
            let (col, row) = (cell % GRID, cell / GRID);
            let r = rng.random_range(7..=12);
            let slack = 16 - r - 1;
            Object {
                shape: SHAPES[rng.random_range(0..SHAPES.len())],
                colour: COLOURS[rng.random_range(0..COLOURS.len())].0,
                cx: col * 32 + 16 + rng.random_range(-slack..=slack),
                cy: row * 32 + 16 + rng.random_range(-slack..=slack),
                r,
            }
        })
        .collect()
}

/// What the model was trained to answer to "What is in this picture?" for one object.
pub fn describe(o: &Object) -> String {
    let article = if o.colour.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {} {}", o.colour, o.shape)
}
