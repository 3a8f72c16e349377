//! The checks a face crop must pass before it joins a dataset: sharp enough (variance of the
//! Laplacian, the usual blur measure) and not a near-copy of a crop already saved (mean
//! absolute difference of small, mean-normalised grayscale thumbnails).

use image::{GrayImage, RgbImage};

/// Variance of the 4-neighbour Laplacian over a grayscale image: low for blurred images.
pub fn laplacian_variance(gray: &GrayImage) -> f64 {
    let (w, h) = gray.dimensions();
    if w < 3 || h < 3 {
        return 0.0;
    }
    let p = |x: u32, y: u32| gray.get_pixel(x, y).0[0] as f64;
    let mut values = Vec::with_capacity(((w - 2) * (h - 2)) as usize);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            values.push(p(x - 1, y) + p(x + 1, y) + p(x, y - 1) + p(x, y + 1) - 4.0 * p(x, y));
        }
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64
}

/// Side of the thumbnails compared for near-duplicates.
const THUMB: u32 = 16;

/// A small grayscale summary of a crop, brightness-normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail(Vec<f32>);

impl Thumbnail {
    pub fn of(image: &RgbImage) -> Self {
        let small =
            image::imageops::resize(image, THUMB, THUMB, image::imageops::FilterType::Triangle);
        let gray: Vec<f32> = small
            .pixels()
            .map(|p| 0.299 * p.0[0] as f32 + 0.587 * p.0[1] as f32 + 0.114 * p.0[2] as f32)
            .collect();
        let mean = gray.iter().sum::<f32>() / gray.len() as f32;
        Thumbnail(gray.iter().map(|v| v - mean).collect())
    }

    /// Mean absolute difference in grey levels (0-255).
    pub fn distance(&self, other: &Thumbnail) -> f32 {
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / self.0.len() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharp_edges_have_high_laplacian_variance_and_flat_images_none() {
        let checker = GrayImage::from_fn(32, 32, |x, y| {
            image::Luma([if (x / 2 + y / 2) % 2 == 0 { 0 } else { 255 }])
        });
        let flat = GrayImage::from_pixel(32, 32, image::Luma([128]));
        let blurred = image::imageops::blur(&checker, 3.0);
        assert_eq!(laplacian_variance(&flat), 0.0);
        assert!(laplacian_variance(&checker) > 10.0 * laplacian_variance(&blurred));
    }

    #[test]
    fn near_copies_are_close_and_other_images_far() {
        let a = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 3) as u8, (y * 3) as u8, 50])
        });
        let brighter = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 3) as u8 + 10, (y * 3) as u8 + 10, 60])
        });
        let other = RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([200 - (y * 3) as u8, (x * 3) as u8, 50])
        });
        let ta = Thumbnail::of(&a);
        assert!(ta.distance(&Thumbnail::of(&brighter)) < 2.0);
        assert!(ta.distance(&Thumbnail::of(&other)) > 20.0);
    }
}
