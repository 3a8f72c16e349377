//! Reader for torch's legacy (pre-1.6) `torch.save` format, the one torchvision's
//! `mobilenet_v2-b0353104.pth` uses: five pickles (magic number, protocol version, system info,
//! the state dict, the storage keys) followed by each storage's raw little-endian data in key
//! order, each preceded by its int64 element count. Crates that read torch files handle the
//! newer zip format only, hence this small reader.

use std::collections::HashMap;
use std::path::Path;

use super::pickle::{self, Value};
use crate::error::{Error, Result};

const MAGIC_NUMBER: i128 = 0x1950a86a20f9469cfc6c;
const PROTOCOL_VERSION: i64 = 1001;

/// One tensor from a state dict, contiguous, in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: TensorData,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Tensor {
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            TensorData::F32(v) => Some(v),
            TensorData::I64(_) => None,
        }
    }
}

/// Tensors by their state-dict name (`features.0.0.weight`, ...).
pub type StateDict = HashMap<String, Tensor>;

/// Reads a legacy torch file from disk.
pub fn load(path: &Path) -> Result<StateDict> {
    let bytes = crate::fsutil::read_limited(path, super::weights::WEIGHTS_SIZE)?;
    parse(&bytes).map_err(|reason| Error::Pth {
        path: path.to_owned(),
        reason,
    })
}

/// Parses the bytes of a legacy torch file.
pub fn parse(bytes: &[u8]) -> Result<StateDict, String> {
    let mut pos = 0;
    let mut next_pickle = || -> Result<Value, String> {
        let (value, used) = pickle::read(&bytes[pos..])?;
        pos += used;
        Ok(value)
    };
    match next_pickle()? {
        Value::Int(m) if m == MAGIC_NUMBER => {}
        _ => {
            return Err("bad magic number (a zip-format or non-torch file?)".into());
        }
    }
    let version = next_pickle()?;
    if version.as_int() != Some(PROTOCOL_VERSION) {
        return Err(format!(
            "protocol version {version:?}, expected {PROTOCOL_VERSION}"
        ));
    }
    check_system_info(&next_pickle()?)?;
    let state = next_pickle()?;
    let keys = next_pickle()?;
    let keys: Vec<String> = keys
        .as_tuple()
        .ok_or("storage key list missing")?
        .iter()
        .map(|k| {
            k.as_str()
                .map(str::to_owned)
                .ok_or("storage key is not a string")
        })
        .collect::<Result<_, _>>()?;

    let entries = state_entries(&state)?;
    let refs: Vec<(String, TensorRef)> = entries
        .iter()
        .map(|(name, value)| {
            Ok((
                name.clone(),
                TensorRef::from_value(value).map_err(|e| format!("{name}: {e}"))?,
            ))
        })
        .collect::<Result<_, String>>()?;
    let storages = read_storages(&bytes[pos..], &keys, &refs)?;

    refs.into_iter()
        .map(|(name, r)| {
            let tensor = r
                .materialize(&storages)
                .map_err(|e| format!("{name}: {e}"))?;
            Ok((name, tensor))
        })
        .collect()
}

fn check_system_info(info: &Value) -> Result<(), String> {
    let Value::Dict(items) = info else {
        return Err("system info is not a dict".into());
    };
    let little_endian = items
        .iter()
        .find(|(k, _)| k.as_str() == Some("little_endian"))
        .map(|(_, v)| v);
    match little_endian {
        Some(Value::Bool(true)) => Ok(()),
        _ => Err("only little-endian files are supported".into()),
    }
}

/// The (name, tensor) pairs of a state dict pickled as a dict or an `OrderedDict`.
fn state_entries(state: &Value) -> Result<Vec<(String, Value)>, String> {
    let items = match state {
        Value::Dict(items) => items,
        Value::Build(obj, _) => return state_entries(obj),
        Value::Call(_, args) => match args.as_ref() {
            Value::Dict(items) => items,
            _ => return Err("state dict has no items".into()),
        },
        _ => return Err("top-level object is not a state dict".into()),
    };
    items
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().ok_or("state dict key is not a string")?;
            Ok((name.to_owned(), v.clone()))
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ElementType {
    F32,
    I64,
}

impl ElementType {
    fn from_storage_class(name: &str) -> Result<Self, String> {
        match name {
            "FloatStorage" => Ok(ElementType::F32),
            "LongStorage" => Ok(ElementType::I64),
            other => Err(format!("unsupported storage type {other}")),
        }
    }

    fn size(self) -> usize {
        match self {
            ElementType::F32 => 4,
            ElementType::I64 => 8,
        }
    }
}

/// A `_rebuild_tensor_v2(storage, offset, size, stride, ...)` call, not yet resolved.
struct TensorRef {
    storage_key: String,
    element: ElementType,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl TensorRef {
    fn from_value(value: &Value) -> Result<Self, String> {
        let Value::Call(func, args) = value else {
            return Err("not a tensor".into());
        };
        if **func != Value::Global("torch._utils".into(), "_rebuild_tensor_v2".into()) {
            return Err(format!("unsupported tensor constructor {func:?}"));
        }
        let args = args.as_tuple().ok_or("tensor arguments are not a tuple")?;
        let [storage, offset, shape, stride, ..] = args else {
            return Err("too few tensor arguments".into());
        };
        let Value::PersistentId(pid) = storage else {
            return Err("tensor storage is not a persistent id".into());
        };
        let pid = pid.as_tuple().ok_or("storage id is not a tuple")?;
        let [tag, class, key, ..] = pid else {
            return Err("storage id is too short".into());
        };
        if tag.as_str() != Some("storage") {
            return Err("storage id does not start with 'storage'".into());
        }
        let Value::Global(_, class_name) = class else {
            return Err("storage type is not a class".into());
        };
        Ok(TensorRef {
            storage_key: key
                .as_str()
                .ok_or("storage key is not a string")?
                .to_owned(),
            element: ElementType::from_storage_class(class_name)?,
            offset: usize_of(offset)?,
            shape: usizes_of(shape)?,
            stride: usizes_of(stride)?,
        })
    }

    fn materialize(
        &self,
        storages: &HashMap<String, (ElementType, &[u8])>,
    ) -> Result<Tensor, String> {
        let (element, raw) = storages
            .get(&self.storage_key)
            .ok_or_else(|| format!("storage {} missing", self.storage_key))?;
        if *element != self.element {
            return Err("storage type differs between uses".into());
        }
        if self.stride != contiguous_strides(&self.shape) {
            return Err(format!("non-contiguous tensor (stride {:?})", self.stride));
        }
        let numel: usize = self.shape.iter().product();
        let size = element.size();
        let start = self.offset * size;
        let bytes = raw
            .get(start..start + numel * size)
            .ok_or("tensor extends past its storage")?;
        let data = match element {
            ElementType::F32 => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4")))
                    .collect(),
            ),
            ElementType::I64 => TensorData::I64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8")))
                    .collect(),
            ),
        };
        Ok(Tensor {
            shape: self.shape.clone(),
            data,
        })
    }
}

fn usize_of(v: &Value) -> Result<usize, String> {
    v.as_int()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| format!("expected a non-negative integer, found {v:?}"))
}

fn usizes_of(v: &Value) -> Result<Vec<usize>, String> {
    v.as_tuple()
        .ok_or_else(|| format!("expected a tuple, found {v:?}"))?
        .iter()
        .map(usize_of)
        .collect()
}

fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Splits the raw data after the pickles into one byte slice per storage key.
fn read_storages<'a>(
    mut data: &'a [u8],
    keys: &[String],
    refs: &[(String, TensorRef)],
) -> Result<HashMap<String, (ElementType, &'a [u8])>, String> {
    let element_of: HashMap<&str, ElementType> = refs
        .iter()
        .map(|(_, r)| (r.storage_key.as_str(), r.element))
        .collect();
    let mut storages = HashMap::new();
    for key in keys {
        let element = *element_of
            .get(key.as_str())
            .ok_or_else(|| format!("storage {key} is used by no tensor"))?;
        let count = data
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or_else(|| format!("truncated before storage {key}"))?;
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(element.size()))
            .ok_or_else(|| format!("storage {key} has an absurd size {count}"))?;
        let raw = data
            .get(8..8 + len)
            .ok_or_else(|| format!("truncated inside storage {key}"))?;
        storages.insert(key.clone(), (element, raw));
        data = &data[8 + len..];
    }
    Ok(storages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_strides_are_row_major() {
        assert_eq!(contiguous_strides(&[32, 3, 3, 3]), vec![27, 9, 3, 1]);
        assert_eq!(contiguous_strides(&[1280]), vec![1]);
        assert_eq!(contiguous_strides(&[]), Vec::<usize>::new());
    }

    #[test]
    fn zip_format_is_rejected_with_a_reason() {
        let err = parse(b"PK\x03\x04rest").unwrap_err();
        assert!(err.contains("opcode") || err.contains("magic"), "{err}");
    }
}
