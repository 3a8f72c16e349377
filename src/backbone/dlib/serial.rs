//! dlib's serialization format, as far as its face-recognition ResNet file uses it (see dlib's
//! `serialize.h` and `dnn/tensor.h`):
//! - an integer is one byte `size | 0x80 if negative`, then `size` bytes of its magnitude,
//!   least significant first (so 0 is a lone `0x00`);
//! - a float is two such integers, a mantissa and a base-2 exponent (`m * 2^e`);
//! - a string is its length (an integer) and its bytes; a bool is the character `'0'` or `'1'`;
//! - a tensor (version 2) is the integers version, samples, k, rows, columns, then its floats
//!   as raw little-endian `f32`; an alias tensor (version 1) is its version and four dims.
//!
//! Every read is bounds-checked and every size is checked against the bytes left, so a
//! truncated or hostile file is an error naming the byte offset, never a panic or a huge
//! allocation.

use std::path::Path;

use crate::error::{Error, Result};

/// Reads dlib-serialized values from a byte buffer, front to back.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    path: &'a Path,
}

/// A tensor's shape (samples, k, rows, columns) and values.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: [usize; 4],
    pub data: Vec<f32>,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], path: &'a Path) -> Self {
        Reader { bytes, at: 0, path }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.at
    }

    /// An error at the current offset.
    pub fn error(&self, what: impl std::fmt::Display) -> Error {
        Error::DlibModel {
            path: self.path.to_owned(),
            reason: format!("at byte {}: {what}", self.at),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(format!("{n} more bytes expected, the file ends")));
        }
        let slice = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(slice)
    }

    pub fn int(&mut self) -> Result<i64> {
        let head = self.take(1)?[0];
        let size = usize::from(head & 0x0f);
        if size > 8 || head & 0x70 != 0 {
            return Err(self.error(format!("0x{head:02x} does not start an integer")));
        }
        let magnitude = self
            .take(size)?
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b));
        let magnitude = i64::try_from(magnitude).map_err(|_| self.error("integer out of range"))?;
        Ok(if head & 0x80 != 0 {
            -magnitude
        } else {
            magnitude
        })
    }

    /// A non-negative integer no larger than `max`.
    pub fn count(&mut self, what: &str, max: usize) -> Result<usize> {
        let v = self.int()?;
        usize::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| self.error(format!("{what} {v} is not between 0 and {max}")))
    }

    pub fn float(&mut self) -> Result<f64> {
        let mantissa = self.int()?;
        let exponent = self.int()?;
        if !(-1100..=1100).contains(&exponent) {
            return Err(self.error(format!("float exponent {exponent} out of range")));
        }
        Ok(mantissa as f64 * 2f64.powi(exponent as i32))
    }

    pub fn string(&mut self) -> Result<String> {
        let len = self.count("string length", 256)?;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error("a name that is not text"))
    }

    /// Reads a string that must be `expected`.
    pub fn expect(&mut self, expected: &str) -> Result<()> {
        let found = self.string()?;
        if found != expected {
            return Err(self.error(format!("expected '{expected}', found '{found}'")));
        }
        Ok(())
    }

    /// Whether the next value is the string `name` (nothing is consumed).
    pub fn next_is(&self, name: &str) -> bool {
        let rest = &self.bytes[self.at..];
        rest.len() > 1 + name.len()
            && usize::from(rest[0]) == 1
            && usize::from(rest[1]) == name.len()
            && &rest[2..2 + name.len()] == name.as_bytes()
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.take(1)?[0] {
            b'0' => Ok(false),
            b'1' => Ok(true),
            other => Err(self.error(format!("0x{other:02x} is not a bool"))),
        }
    }

    pub fn tensor(&mut self) -> Result<Tensor> {
        let version = self.int()?;
        if version != 2 {
            return Err(self.error(format!("tensor version {version}, expected 2")));
        }
        let mut shape = [0; 4];
        for dim in &mut shape {
            *dim = self.count("tensor dimension", 1 << 24)?;
        }
        let values = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        let values = values
            .filter(|&n| n <= self.remaining() / 4)
            .ok_or_else(|| {
                self.error(format!(
                    "a tensor of shape {shape:?} is larger than the file"
                ))
            })?;
        let data = self
            .take(values * 4)?
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Tensor { shape, data })
    }

    /// An alias tensor's dims (samples, k, rows, columns).
    pub fn alias(&mut self) -> Result<[usize; 4]> {
        let version = self.int()?;
        if version != 1 {
            return Err(self.error(format!("alias tensor version {version}, expected 1")));
        }
        let mut shape = [0; 4];
        for dim in &mut shape {
            *dim = self.count("alias dimension", 1 << 24)?;
        }
        Ok(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(bytes: &[u8]) -> Reader<'_> {
        Reader::new(bytes, Path::new("t.dat"))
    }

    #[test]
    fn integers_floats_strings_and_bools_read_as_dlib_writes_them() {
        // 1, 4736 (0x1280), -28, 0, then 0.04 as dlib writes it (0xa3d70a * 2^-28).
        let bytes = [
            0x01, 0x01, 0x02, 0x80, 0x12, 0x81, 0x1c, 0x00, 0x03, 0x0a, 0xd7, 0xa3, 0x81, 0x1c,
        ];
        let mut r = reader(&bytes);
        assert_eq!(r.int().unwrap(), 1);
        assert_eq!(r.int().unwrap(), 4736);
        assert_eq!(r.int().unwrap(), -28);
        assert_eq!(r.int().unwrap(), 0);
        assert!((r.float().unwrap() - 0.04).abs() < 1e-8);
        assert_eq!(r.remaining(), 0);
        let mut r = reader(b"\x01\x05con_4110");
        assert!(r.next_is("con_4"));
        r.expect("con_4").unwrap();
        assert!(r.bool().unwrap() && r.bool().unwrap() && !r.bool().unwrap());
    }

    #[test]
    fn a_tensor_reads_its_shape_and_raw_floats() {
        let mut bytes = vec![0x01, 0x02, 0x01, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01];
        bytes.extend(1.5f32.to_le_bytes());
        bytes.extend((-2.0f32).to_le_bytes());
        let t = reader(&bytes).tensor().unwrap();
        assert_eq!(t.shape, [2, 1, 1, 1]);
        assert_eq!(t.data, vec![1.5, -2.0]);
    }

    #[test]
    fn truncated_and_hostile_values_are_errors_with_the_offset() {
        for (bytes, needle) in [
            (&b"\x02\x80"[..], "file ends"),
            (&b"\x7f"[..], "does not start an integer"),
            (
                &b"\x01\x02\x04\xff\xff\xff\x00\x01\x01\x01\x01\x01\x01"[..],
                "larger than the file",
            ),
        ] {
            let mut r = reader(bytes);
            let e = r
                .int()
                .and_then(|_| r.tensor().map(|_| 0))
                .unwrap_err()
                .to_string();
            let e2 = reader(bytes).tensor().map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(needle) || e2.contains(needle), "{e} / {e2}");
            assert!(e2.contains("t.dat") && e2.contains("at byte"), "{e2}");
        }
    }
}
