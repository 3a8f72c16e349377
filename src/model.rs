//! A trained head on disk, `models/<run-id>/`: `head.safetensors` (the weights predictions use),
//! `best.safetensors` (ModelCheckpoint's pick, when checkpointing is on), `head.json` (classes,
//! display labels, preprocessing) and `config.yaml` (the resolved experiment). Every file is
//! written to a temporary file and renamed into place.

use crate::fsutil::write_atomically;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image_prep::ResizeMode;
use crate::train::head::{Dense, HeadParams};

pub const HEAD_FILE: &str = "head.safetensors";
pub const BEST_FILE: &str = "best.safetensors";
pub const META_FILE: &str = "head.json";
pub const CONFIG_FILE: &str = "config.yaml";

/// What a head needs besides its weights to turn an image into a name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadMeta {
    /// Class folder names, in output order.
    pub classes: Vec<String>,
    /// Display names, in the same order.
    pub labels: Vec<String>,
    pub resize: ResizeMode,
    pub l2_normalize: bool,
    pub weights_sha256: String,
}

/// A loaded head ready to classify features.
#[derive(Debug, Clone)]
pub struct TrainedHead {
    pub params: HeadParams,
    pub meta: HeadMeta,
}

impl TrainedHead {
    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let meta_text =
            std::fs::read_to_string(&meta_path).map_err(|e| Error::io(&meta_path, e))?;
        let meta: HeadMeta =
            serde_json::from_str(&meta_text).map_err(|e| head_error(&meta_path, e))?;
        let params = load_params(&dir.join(HEAD_FILE))?;
        if params.classes() != meta.classes.len() {
            return Err(head_error(
                &meta_path,
                "class list does not match the weights",
            ));
        }
        Ok(TrainedHead { params, meta })
    }
}

/// Writes `params` as safetensors: `layers.{i}.weight` `[inputs, outputs]` and `layers.{i}.bias`.
pub fn save_params(path: &Path, params: &HeadParams) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            [
                (
                    format!("layers.{i}.weight"),
                    vec![l.inputs, l.outputs],
                    le_bytes(&l.weight),
                ),
                (
                    format!("layers.{i}.bias"),
                    vec![l.outputs],
                    le_bytes(&l.bias),
                ),
            ]
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(name, shape, data)| {
            let view = TensorView::new(Dtype::F32, shape.clone(), data)
                .map_err(|e| head_error(path, e))?;
            Ok((name.clone(), view))
        })
        .collect::<Result<Vec<_>>>()?;
    let serialized = safetensors::serialize(views, None).map_err(|e| head_error(path, e))?;
    write_atomically(path, &serialized)
}

pub fn load_params(path: &Path) -> Result<HeadParams> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| head_error(path, e))?;
    let by_name: HashMap<String, TensorView> = tensors.tensors().into_iter().collect();
    let mut layers = Vec::new();
    for i in 0.. {
        let (Some(w), Some(b)) = (
            by_name.get(&format!("layers.{i}.weight")),
            by_name.get(&format!("layers.{i}.bias")),
        ) else {
            break;
        };
        let (&[inputs, outputs], &[bias_len]) = (w.shape(), b.shape()) else {
            return Err(head_error(path, format!("layer {i} has unexpected shapes")));
        };
        if w.dtype() != Dtype::F32 || b.dtype() != Dtype::F32 || bias_len != outputs {
            return Err(head_error(
                path,
                format!("layer {i} is not float32 [in, out] + [out]"),
            ));
        }
        layers.push(Dense {
            inputs,
            outputs,
            weight: f32s(w.data()),
            bias: f32s(b.data()),
        });
    }
    if layers.is_empty() || layers.windows(2).any(|p| p[0].outputs != p[1].inputs) {
        return Err(head_error(path, "no consistent chain of layers"));
    }
    Ok(HeadParams { layers })
}

pub fn save_meta(dir: &Path, meta: &HeadMeta) -> Result<()> {
    let text = serde_json::to_string_pretty(meta).expect("metadata serialises");
    write_atomically(&dir.join(META_FILE), text.as_bytes())
}

fn le_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4")))
        .collect()
}

fn head_error(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Head {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_meta_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let params = HeadParams::init(6, &[5, 4], 3, 9);
        save_params(&dir.path().join(HEAD_FILE), &params).unwrap();
        let meta = HeadMeta {
            classes: vec!["a".into(), "b".into(), "c".into()],
            labels: vec!["Ann".into(), "b".into(), "c".into()],
            resize: ResizeMode::Squash,
            l2_normalize: true,
            weights_sha256: "w".into(),
        };
        save_meta(dir.path(), &meta).unwrap();
        let loaded = TrainedHead::load(dir.path()).unwrap();
        assert_eq!(loaded.params, params);
        assert_eq!(loaded.meta, meta);
    }

    #[test]
    fn a_truncated_head_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HEAD_FILE);
        save_params(&path, &HeadParams::init(2, &[], 2, 1)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = load_params(&path).unwrap_err().to_string();
        assert!(err.contains(HEAD_FILE), "{err}");
    }
}
