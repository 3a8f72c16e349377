//! Merging the detector's overlapping hits into one box per face, as OpenCV's
//! `groupRectangles` does.

use super::{round, Rect};

/// OpenCV's `groupRectangles`: clusters of similar rectangles averaged, clusters with at most
/// `min_neighbors` members dropped, and clusters lying inside a bigger, stronger one dropped.
pub fn group_rectangles(rects: Vec<Rect>, min_neighbors: u32, eps: f64) -> Vec<Rect> {
    if min_neighbors == 0 || rects.is_empty() {
        return rects;
    }
    let labels = partition(&rects, |a, b| similar(a, b, eps));
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut sums = vec![(0i64, 0i64, 0i64, 0i64); classes];
    let mut counts = vec![0u32; classes];
    for (r, &label) in rects.iter().zip(&labels) {
        let s = &mut sums[label];
        s.0 += r.x as i64;
        s.1 += r.y as i64;
        s.2 += r.width as i64;
        s.3 += r.height as i64;
        counts[label] += 1;
    }
    let averaged: Vec<Rect> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            let inv = 1.0 / n as f64;
            Rect {
                x: round(s.0 as f64 * inv),
                y: round(s.1 as f64 * inv),
                width: round(s.2 as f64 * inv),
                height: round(s.3 as f64 * inv),
            }
        })
        .collect();
    let mut out = Vec::new();
    for (i, r1) in averaged.iter().enumerate() {
        let n1 = counts[i];
        if n1 <= min_neighbors {
            continue;
        }
        let swallowed = averaged.iter().enumerate().any(|(j, r2)| {
            let n2 = counts[j];
            if j == i || n2 <= min_neighbors {
                return false;
            }
            let dx = round(r2.width as f64 * eps);
            let dy = round(r2.height as f64 * eps);
            r1.x >= r2.x - dx
                && r1.y >= r2.y - dy
                && r1.x + r1.width <= r2.x + r2.width + dx
                && r1.y + r1.height <= r2.y + r2.height + dy
                && (n2 > n1.max(3) || n1 < 3)
        });
        if !swallowed {
            out.push(*r1);
        }
    }
    out
}

fn similar(a: &Rect, b: &Rect, eps: f64) -> bool {
    let delta = eps * (a.width.min(b.width) + a.height.min(b.height)) as f64 * 0.5;
    let close = |u: i32, v: i32| ((u - v).abs() as f64) <= delta;
    close(a.x, b.x)
        && close(a.y, b.y)
        && close(a.x + a.width, b.x + b.width)
        && close(a.y + a.height, b.y + b.height)
}

/// Equivalence classes of `items` under `same` (its transitive closure), labelled from 0 in
/// order of first appearance.
fn partition<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..items.len()).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for i in 0..items.len() {
        for j in 0..i {
            if same(&items[i], &items[j]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, j));
                if a != b {
                    parent[a] = b;
                }
            }
        }
    }
    let mut by_root = std::collections::HashMap::new();
    (0..items.len())
        .map(|i| {
            let r = root(&mut parent, i);
            let next = by_root.len();
            *by_root.entry(r).or_insert(next)
        })
        .collect()
}
