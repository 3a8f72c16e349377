//! How the head's matrices sit in memory: columns in blocks of 16 (one register tile's width),
//! each block with its own row stride. Row-major is one case of it; the other is the panel
//! layout the weights keep while they train, where a tile's 16 columns of successive rows are
//! adjacent.
//!
//! Why panels: a step reads every weight in 16-column strips, and in row-major order the rows
//! of a strip are a whole row apart (4 KiB in a 1024-wide layer). Each row is then a separate
//! page for the prefetcher, which does not cross pages, and all rows of a strip fall in the
//! same few L1 sets. Measured on the [1280, 1024] forward product at batch 16: 0.50-0.78 ms
//! with panels against 0.83-1.09 ms row-major.

/// Columns per block: the width of a register tile.
pub const BLOCK_COLS: usize = 16;

/// Where element (row, column) of a matrix is: `(column / 16) * block + row * stride +
/// column % 16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub stride: usize,
    pub block: usize,
}

impl Layout {
    /// Rows of `stride` elements one after another.
    pub fn row_major(stride: usize) -> Self {
        Layout {
            stride,
            block: BLOCK_COLS,
        }
    }

    /// Panels of 16 columns of all `rows` rows, one panel after another; the last is padded
    /// to 16 columns.
    pub fn panels(rows: usize) -> Self {
        Layout {
            stride: BLOCK_COLS,
            block: rows * BLOCK_COLS,
        }
    }

    pub fn offset(self, row: usize, column: usize) -> usize {
        (column / BLOCK_COLS) * self.block + row * self.stride + column % BLOCK_COLS
    }

    /// Whether the blocks are plain rows (panels have their own row stride).
    pub fn is_row_major(self) -> bool {
        self.block == BLOCK_COLS
    }

    /// Whether `len` elements hold every element of a `rows x columns` matrix: offsets grow
    /// with both the row and the column, so the last element is the furthest.
    pub fn fits(self, len: usize, rows: usize, columns: usize) -> bool {
        rows == 0 || columns == 0 || len > self.offset(rows - 1, columns - 1)
    }

    /// Whether a view may start at `column`: at a block's first column, or anywhere in a
    /// row-major matrix (whose blocks are just 16 columns further on).
    fn can_start_at(self, column: usize) -> bool {
        column.is_multiple_of(BLOCK_COLS) || self.is_row_major()
    }
}

/// The elements a `rows x columns` matrix in panels occupies (columns padded to whole panels).
pub fn panels_len(rows: usize, columns: usize) -> usize {
    columns.div_ceil(BLOCK_COLS) * rows * BLOCK_COLS
}

/// A read-only matrix view.
#[derive(Clone, Copy)]
pub struct Matrix<'a> {
    pub data: &'a [f32],
    pub layout: Layout,
}

impl<'a> Matrix<'a> {
    pub fn row_major(data: &'a [f32], stride: usize) -> Self {
        Matrix {
            data,
            layout: Layout::row_major(stride),
        }
    }

    /// The same matrix from element (row, column) on.
    pub fn view(self, row: usize, column: usize) -> Self {
        assert!(self.layout.can_start_at(column));
        Matrix {
            data: &self.data[self.layout.offset(row, column)..],
            layout: self.layout,
        }
    }
}

/// A `rows x columns` row-major matrix rearranged into panels (padding zero).
pub fn to_panels(row_major: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    assert_eq!(row_major.len(), rows * columns);
    let layout = Layout::panels(rows);
    let mut panels = vec![0.0; panels_len(rows, columns)];
    for (r, row) in row_major.chunks_exact(columns.max(1)).enumerate() {
        for (first, strip) in row.chunks(BLOCK_COLS).enumerate() {
            let at = layout.offset(r, first * BLOCK_COLS);
            panels[at..at + strip.len()].copy_from_slice(strip);
        }
    }
    panels
}

/// The `rows x columns` row-major matrix held in `panels`.
pub fn from_panels(panels: &[f32], rows: usize, columns: usize) -> Vec<f32> {
    assert_eq!(panels.len(), panels_len(rows, columns));
    let layout = Layout::panels(rows);
    let mut row_major = vec![0.0; rows * columns];
    for (r, row) in row_major.chunks_exact_mut(columns.max(1)).enumerate() {
        for (first, strip) in row.chunks_mut(BLOCK_COLS).enumerate() {
            let at = layout.offset(r, first * BLOCK_COLS);
            strip.copy_from_slice(&panels[at..at + strip.len()]);
        }
    }
    row_major
}

/// Column `column` of a `rows`-row matrix in `layout`, top to bottom, as indices into its data.
pub fn column_offsets(layout: Layout, rows: usize, column: usize) -> impl Iterator<Item = usize> {
    (0..rows).map(move |r| layout.offset(r, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panels_hold_sixteen_columns_of_every_row_then_the_next_sixteen() {
        let (rows, columns) = (3, 20);
        let m: Vec<f32> = (0..rows * columns).map(|i| i as f32).collect();
        let p = to_panels(&m, rows, columns);
        assert_eq!(p.len(), 2 * rows * 16);
        // Row 1's first 16 columns follow row 0's.
        assert_eq!(p[16..32], m[20..36]);
        // The second panel: columns 16..20 of row 0, then zero padding.
        assert_eq!(p[48..52], m[16..20]);
        assert!(p[52..64].iter().all(|&v| v == 0.0));
        assert_eq!(from_panels(&p, rows, columns), m);
        let layout = Layout::panels(rows);
        for r in 0..rows {
            for c in 0..columns {
                assert_eq!(p[layout.offset(r, c)], m[r * columns + c]);
            }
        }
    }

    #[test]
    fn row_major_offsets_are_plain() {
        let layout = Layout::row_major(37);
        assert_eq!(layout.offset(2, 35), 2 * 37 + 35);
        let col: Vec<usize> = column_offsets(layout, 3, 5).collect();
        assert_eq!(col, [5, 42, 79]);
    }
}
