//! Deterministic pseudo-random values for unit tests: numbers for numeric kernels, and
//! separable labelled features for training.

/// `n` values in [-1, 1] from an xorshift stream seeded by `seed`.
pub fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// Three well-separated clusters in 16 dimensions, `per_class` rows each.
pub fn blobs(per_class: usize, seed: u64) -> crate::train::LabeledFeatures {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut data = crate::train::LabeledFeatures::new(16);
    for class in 0..3 {
        for _ in 0..per_class {
            let row: Vec<f32> = (0..16)
                .map(|d| if d % 3 == class { 3.0 } else { 0.0 } + rng.gen_range(-0.5..0.5))
                .collect();
            data.push(&row, class);
        }
    }
    data
}
