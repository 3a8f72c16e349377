//! A trained head on disk, `models/<run-id>/`: `head.safetensors` (the weights predictions use),
//! `best.safetensors` (ModelCheckpoint's pick, when checkpointing is on), `head.json` (classes,
//! display labels, preprocessing) and `config.yaml` (the resolved experiment). Every file is
//! written to a temporary file and renamed into place.

use crate::fsutil::{
    limits, read_limited, read_text_limited, write_atomically, write_atomically_via,
    AtomicWriteError,
};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView, View};
use serde::{Deserialize, Serialize};

use crate::backbone::{Backbone, BackboneKind, FEATURE_DIM};
use crate::error::{Error, Result};
use crate::image_prep::ResizeMode;
use crate::store::StoredHead;
use crate::train::head::{Dense, HeadParams, Output};

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
    /// The backbone whose features the head takes (heads from before the key: MobileNetV2).
    #[serde(default, skip_serializing_if = "BackboneKind::is_default")]
    pub backbone: BackboneKind,
    pub weights_sha256: String,
    /// Features are the mean of the image's and its mirror image's (`predict.flip_average`).
    #[serde(default)]
    pub flip_average: bool,
    /// The calibrated acceptance threshold: a face scoring below it is "unknown".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_set: Option<OpenSetThreshold>,
}

/// An acceptance threshold and the false-acceptance rate it was calibrated for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpenSetThreshold {
    pub threshold: f64,
    pub far: f64,
}

/// A loaded head ready to classify features.
#[derive(Debug, Clone)]
pub struct TrainedHead {
    pub params: HeadParams,
    pub meta: HeadMeta,
}

impl TrainedHead {
    /// A linear head over `classes` made-up people with random weights, for benchmarks that
    /// need a head but not its answers.
    pub fn random_for_bench(weights_sha256: &str, classes: usize) -> Self {
        TrainedHead {
            params: HeadParams::init(FEATURE_DIM, &[], classes, 7),
            meta: HeadMeta {
                classes: (1..=classes).map(|c| format!("s{c:02}")).collect(),
                labels: (1..=classes).map(|c| format!("s{c:02}")).collect(),
                resize: ResizeMode::Squash,
                l2_normalize: true,
                backbone: BackboneKind::MobilenetV2,
                weights_sha256: weights_sha256.to_owned(),
                flip_average: false,
                open_set: None,
            },
        }
    }

    /// Whether `backbone` makes the features this head was trained on.
    pub fn check_backbone(&self, backbone: &Backbone) -> Result<()> {
        if backbone.kind() != self.meta.backbone {
            return Err(Error::InvalidArgument(format!(
                "this head takes {} features but {} is loaded",
                self.meta.backbone.name(),
                backbone.kind().name()
            )));
        }
        if backbone.weights_sha256() != self.meta.weights_sha256 {
            return Err(Error::InvalidArgument(format!(
                "this head was trained on backbone weights {} but {} are loaded; use the same weights file",
                self.meta.weights_sha256,
                backbone.weights_sha256()
            )));
        }
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let meta_path = dir.join(META_FILE);
        let meta_text = read_text_limited(&meta_path, limits::TEXT)?;
        let meta: HeadMeta =
            serde_json::from_str(&meta_text).map_err(|e| head_error(&meta_path, e))?;
        let head_path = dir.join(HEAD_FILE);
        let params = load_params(&head_path)?;
        check_meta(&meta, &params).map_err(|why| head_error(&meta_path, why))?;
        let features = meta.backbone.feature_dim();
        if params.inputs() != features {
            return Err(head_error(
                &head_path,
                format!(
                    "the first layer takes {} inputs; the backbone {} gives {features}",
                    params.inputs(),
                    meta.backbone.name()
                ),
            ));
        }
        Ok(TrainedHead { params, meta })
    }
}

/// Whether `head.json` describes the weights beside it: one class name and one label per
/// output.
fn check_meta(meta: &HeadMeta, params: &HeadParams) -> std::result::Result<(), String> {
    let outputs = params.classes();
    if meta.classes.len() != outputs || meta.labels.len() != outputs {
        return Err(format!(
            "lists {} classes and {} labels but the weights have {outputs} outputs; the run's folder was edited or mixed with another run's: train it again",
            meta.classes.len(),
            meta.labels.len()
        ));
    }
    Ok(())
}

/// Writes `params` as safetensors: `layers.{i}.weight` `[inputs, outputs]` and `layers.{i}.bias`.
/// The file is streamed from the weights in place (safetensors' buffered writer) rather than
/// built in memory first: a centroid head's 6.5 MB took 7.5 ms to build in fresh memory.
pub fn save_params(path: &Path, params: &HeadParams) -> Result<()> {
    let metadata = Some(output_metadata(params.output));
    write_atomically_via(path, |staging| {
        safetensors::serialize_to_file(tensor_views(params), metadata, staging)
    })
    .map_err(|why| match why {
        AtomicWriteError::Io(e) => e,
        AtomicWriteError::Fill(e) => head_error(path, e),
    })
}

/// `params` as the bytes of a safetensors file (`path` names it in errors).
fn params_bytes(path: &Path, params: &HeadParams) -> Result<Vec<u8>> {
    safetensors::serialize(tensor_views(params), Some(output_metadata(params.output)))
        .map_err(|e| head_error(path, e))
}

/// A head's tensors by their safetensors names.
fn tensor_views(params: &HeadParams) -> Vec<(String, F32View<'_>)> {
    params
        .layers
        .iter()
        .enumerate()
        .flat_map(|(i, l)| {
            [
                (
                    format!("layers.{i}.weight"),
                    F32View {
                        shape: vec![l.inputs, l.outputs],
                        values: &l.weight,
                    },
                ),
                (
                    format!("layers.{i}.bias"),
                    F32View {
                        shape: vec![l.outputs],
                        values: &l.bias,
                    },
                ),
            ]
        })
        .collect()
}

/// One of a head's tensors as safetensors writes it: float32 values, lent as their bytes where
/// the machine is little-endian (safetensors' byte order), copied into that order elsewhere.
struct F32View<'a> {
    shape: Vec<usize>,
    values: &'a [f32],
}

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            Cow::Borrowed(bytemuck::cast_slice(self.values))
        } else {
            Cow::Owned(self.values.iter().flat_map(|v| v.to_le_bytes()).collect())
        }
    }

    fn data_len(&self) -> usize {
        size_of_val(self.values)
    }
}

pub fn load_params(path: &Path) -> Result<HeadParams> {
    let bytes = read_limited(path, limits::HEAD)?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| head_error(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| head_error(path, e))?;
    let output =
        output_from_metadata(header.metadata().as_ref()).map_err(|m| head_error(path, m))?;
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
        let (weight, bias) = (f32s(w.data()), f32s(b.data()));
        if weight.iter().chain(&bias).any(|v| !v.is_finite()) {
            return Err(head_error(
                path,
                format!("layer {i} holds NaN or infinite weights (did training diverge?)"),
            ));
        }
        layers.push(Dense {
            inputs,
            outputs,
            weight,
            bias,
        });
    }
    if layers.is_empty() || layers.windows(2).any(|p| p[0].outputs != p[1].inputs) {
        return Err(head_error(path, "no consistent chain of layers"));
    }
    Ok(HeadParams { layers, output })
}

/// The safetensors header entries that say what the outputs mean.
fn output_metadata(output: Output) -> HashMap<String, String> {
    let mut entries = HashMap::new();
    match output {
        Output::Softmax => {
            entries.insert("output".into(), "softmax".into());
        }
        Output::Cosine { scale } => {
            entries.insert("output".into(), "cosine".into());
            entries.insert("scale".into(), scale.to_string());
        }
    }
    entries
}

/// Reads [`output_metadata`]'s entries; a file without them (saved before heads had types) is
/// a softmax head.
fn output_from_metadata(
    entries: Option<&HashMap<String, String>>,
) -> std::result::Result<Output, String> {
    let get = |key: &str| entries.and_then(|e| e.get(key)).map(String::as_str);
    match get("output") {
        None | Some("softmax") => Ok(Output::Softmax),
        Some("cosine") => {
            let scale = get("scale")
                .and_then(|s| s.parse::<f32>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or("a cosine head without a positive 'scale' in its header")?;
            Ok(Output::Cosine { scale })
        }
        Some(other) => Err(format!(
            "output '{other}' is not a head facelab knows (softmax or cosine)"
        )),
    }
}

/// A head as the store keeps it: the bytes of the two files a run folder holds for it.
pub fn stored_head(params: &HeadParams, meta: &HeadMeta) -> Result<StoredHead> {
    Ok(StoredHead {
        safetensors: params_bytes(Path::new(HEAD_FILE), params)?,
        meta_json: meta_text(meta),
    })
}

/// Writes a head the store keeps into a run folder, each file atomically, so it loads (and is
/// checked) as any other.
pub fn restore_head(dir: &Path, head: &StoredHead) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomically(&dir.join(HEAD_FILE), &head.safetensors)?;
    write_atomically(&dir.join(META_FILE), head.meta_json.as_bytes())
}

pub fn save_meta(dir: &Path, meta: &HeadMeta) -> Result<()> {
    write_atomically(&dir.join(META_FILE), meta_text(meta).as_bytes())
}

fn meta_text(meta: &HeadMeta) -> String {
    serde_json::to_string_pretty(meta).expect("metadata serialises")
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

    fn three_class_meta() -> HeadMeta {
        HeadMeta {
            classes: vec!["a".into(), "b".into(), "c".into()],
            labels: vec!["Ann".into(), "b".into(), "c".into()],
            resize: ResizeMode::Squash,
            l2_normalize: true,
            backbone: BackboneKind::MobilenetV2,
            weights_sha256: "w".into(),
            flip_average: false,
            open_set: Some(OpenSetThreshold {
                threshold: 0.4,
                far: 0.05,
            }),
        }
    }

    /// A run folder with `params` and `meta` saved as training saves them.
    fn saved_head(params: &HeadParams, meta: &HeadMeta) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        save_params(&dir.path().join(HEAD_FILE), params).unwrap();
        save_meta(dir.path(), meta).unwrap();
        dir
    }

    #[test]
    fn params_and_meta_round_trip() {
        let params = HeadParams::init(FEATURE_DIM, &[5, 4], 3, 9);
        let dir = saved_head(&params, &three_class_meta());
        let loaded = TrainedHead::load(dir.path()).unwrap();
        assert_eq!(loaded.params, params);
        assert_eq!(loaded.meta, three_class_meta());
    }

    #[test]
    fn a_cosine_head_keeps_its_output_and_scale() {
        let params = HeadParams::init_cosine(FEATURE_DIM, 8, 3, 16.0, 2);
        let dir = saved_head(&params, &three_class_meta());
        let loaded = TrainedHead::load(dir.path()).unwrap();
        assert_eq!(loaded.params.output, Output::Cosine { scale: 16.0 });
        assert_eq!(loaded.params, params);
    }

    #[test]
    fn a_head_json_that_does_not_match_the_weights_is_refused_by_name() {
        let mut meta = three_class_meta();
        meta.labels.pop();
        let dir = saved_head(&HeadParams::init(FEATURE_DIM, &[], 3, 1), &meta);
        let e = TrainedHead::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(META_FILE) && e.contains("2 labels") && e.contains("3 outputs"),
            "{e}"
        );

        let dir = saved_head(&HeadParams::init(64, &[], 3, 1), &three_class_meta());
        let e = TrainedHead::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(HEAD_FILE) && e.contains("64 inputs"), "{e}");
    }

    #[test]
    fn a_head_with_nan_weights_is_refused() {
        let mut params = HeadParams::init(FEATURE_DIM, &[], 3, 1);
        params.layers[0].bias[1] = f32::NAN;
        let dir = saved_head(&params, &three_class_meta());
        let e = TrainedHead::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("NaN"), "{e}");
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
