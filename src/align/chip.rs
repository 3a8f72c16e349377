//! dlib's aligned face chip (`get_face_chip_details` + `extract_image_chip`, as
//! `face_recognition` calls them: 150x150, padding 0.25): the similarity transform (least
//! squares, rotation and uniform scale) from dlib's 5-point mean face, padded, to the
//! landmarks (rounded to whole pixels, as dlib's detections hold them) gives the chip's angle
//! and scale; the chip's rectangle is centred where the chip's centre lands; each chip pixel is
//! bilinearly interpolated from the image where the rotated rectangle's corners put it
//! (pixels whose 2x2 neighbourhood leaves the image are black).
//!
//! dlib first shrinks the image with a pyramid when the chip is less than half the size of its
//! rectangle (faces over about 300 px); facelab interpolates from the full image in every case,
//! which differs from dlib only for such large faces.

use image::RgbImage;

use super::{Point, Similarity};

/// dlib's mean face for the 5-point model, in `[0, 1]` face coordinates.
const MEAN_FACE: [(f64, f64); 5] = [
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
];

/// The `size`x`size` chip of the face whose 5 landmarks are `parts`, with `padding` around the
/// mean face (as a fraction of its size).
pub fn face_chip(image: &RgbImage, parts: &[Point], size: u32, padding: f64) -> RgbImage {
    assert_eq!(parts.len(), 5, "a 5-point shape");
    let side = f64::from(size);
    let from: Vec<(f64, f64)> = MEAN_FACE
        .iter()
        .map(|&(x, y)| {
            (
                (padding + x) / (2.0 * padding + 1.0) * side,
                (padding + y) / (2.0 * padding + 1.0) * side,
            )
        })
        .collect();
    let to: Vec<(f64, f64)> = parts
        .iter()
        .map(|p| ((p.x + 0.5).floor(), (p.y + 0.5).floor()))
        .collect();
    let Similarity { a, b, tx, ty } = Similarity::fit(&from, &to);
    let angle = b.atan2(a);
    let scale = a.hypot(b);
    // The chip's rectangle: centred on where the chip's centre maps, (size - 1) * scale wide
    // between its first and last pixel centres (dlib's `centered_drect`).
    let (cx, cy) = (
        a * side / 2.0 - b * side / 2.0 + tx,
        b * side / 2.0 + a * side / 2.0 + ty,
    );
    let half = (side * scale - 1.0) / 2.0;
    let (sin, cos) = angle.sin_cos();
    let rotate = |x: f64, y: f64| {
        let (dx, dy) = (x - cx, y - cy);
        (cx + dx * cos - dy * sin, cy + dx * sin + dy * cos)
    };
    let tl = rotate(cx - half, cy - half);
    let tr = rotate(cx + half, cy - half);
    let bl = rotate(cx - half, cy + half);
    let last = side - 1.0;
    // Chip pixel (c, r) to image point: tl + c * (tr - tl) / last + r * (bl - tl) / last.
    let step_x = ((tr.0 - tl.0) / last, (tr.1 - tl.1) / last);
    let step_y = ((bl.0 - tl.0) / last, (bl.1 - tl.1) / last);
    RgbImage::from_fn(size, size, |c, r| {
        let (c, r) = (f64::from(c), f64::from(r));
        let x = tl.0 + c * step_x.0 + r * step_y.0;
        let y = tl.1 + c * step_x.1 + r * step_y.1;
        bilinear(image, x, y)
    })
}

/// dlib's bilinear interpolation of an RGB image; black where the 2x2 neighbourhood leaves it.
fn bilinear(image: &RgbImage, x: f64, y: f64) -> image::Rgb<u8> {
    let (left, top) = (x.floor(), y.floor());
    if left < 0.0
        || top < 0.0
        || left + 1.0 >= f64::from(image.width())
        || top + 1.0 >= f64::from(image.height())
    {
        return image::Rgb([0, 0, 0]);
    }
    let (l, t) = (left as u32, top as u32);
    let (fx, fy) = (x - left, y - top);
    let px = |xx, yy| image.get_pixel(xx, yy).0;
    let (p00, p10, p01, p11) = (px(l, t), px(l + 1, t), px(l, t + 1), px(l + 1, t + 1));
    let mut out = [0u8; 3];
    for (k, o) in out.iter_mut().enumerate() {
        let top_row = (1.0 - fx) * f64::from(p00[k]) + fx * f64::from(p10[k]);
        let bottom_row = (1.0 - fx) * f64::from(p01[k]) + fx * f64::from(p11[k]);
        let v = (1.0 - fy) * top_row + fy * bottom_row;
        *o = v.clamp(0.0, 255.0) as u8;
    }
    image::Rgb(out)
}
