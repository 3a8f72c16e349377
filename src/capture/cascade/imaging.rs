//! The image operations whose exact results decide which windows the detector sees, written
//! to match OpenCV's: grey conversion (fixed-point BT.601) and `INTER_LINEAR` resizing.

use image::GrayImage;

/// Bilinear resize with OpenCV's pixel-centre alignment (`INTER_LINEAR`, no antialiasing).
pub fn resize_bilinear(image: &GrayImage, width: u32, height: u32) -> GrayImage {
    let (sw, sh) = image.dimensions();
    if (sw, sh) == (width, height) {
        return image.clone();
    }
    let (fx, fy) = (sw as f64 / width as f64, sh as f64 / height as f64);
    let src = image.as_raw();
    let taps = |dst: u32, scale: f64, size: u32| -> (usize, usize, f32) {
        let pos = ((dst as f64 + 0.5) * scale - 0.5).max(0.0);
        let i0 = (pos.floor() as u32).min(size - 1);
        let i1 = (i0 + 1).min(size - 1);
        (i0 as usize, i1 as usize, (pos - i0 as f64).min(1.0) as f32)
    };
    let cols: Vec<(usize, usize, f32)> = (0..width).map(|x| taps(x, fx, sw)).collect();
    let mut out = vec![0u8; (width * height) as usize];
    for y in 0..height {
        let (r0, r1, wy) = taps(y, fy, sh);
        let (row0, row1) = (&src[r0 * sw as usize..], &src[r1 * sw as usize..]);
        for (x, &(c0, c1, wx)) in cols.iter().enumerate() {
            let top = row0[c0] as f32 * (1.0 - wx) + row0[c1] as f32 * wx;
            let bottom = row1[c0] as f32 * (1.0 - wx) + row1[c1] as f32 * wx;
            out[y as usize * width as usize + x] = (top * (1.0 - wy) + bottom * wy).round() as u8;
        }
    }
    GrayImage::from_raw(width, height, out).expect("buffer matches size")
}

/// Grayscale as OpenCV's `cvtColor(..., COLOR_RGB2GRAY)` computes it (fixed-point BT.601), so
/// detections match OpenCV's on the same photo.
pub fn to_gray(image: &image::RgbImage) -> GrayImage {
    let (w, h) = image.dimensions();
    let gray = image
        .pixels()
        .map(|p| {
            let [r, g, b] = p.0.map(u32::from);
            ((r * 4899 + g * 9617 + b * 1868 + 8192) >> 14) as u8
        })
        .collect();
    GrayImage::from_raw(w, h, gray).expect("one byte per pixel")
}
