//! The on-disk feature cache and the extraction that fills it. An entry is keyed by the image's
//! content hash, the backbone's identity (its weights' hash), the preprocessing (resize mode and
//! input size) and an augmentation variant (0 = the image as it is), so renaming or moving an image
//! still hits, editing it misses, and new weights or preprocessing never reuse stale features.
//!
//! Entry file: `FLF1`, dimension (u32 LE), blake3 of the payload (32 bytes), then the features as
//! f32 LE. A torn or corrupted entry fails the checksum and is recomputed, never trusted; entries
//! are written to a temporary file and renamed into place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use image::RgbImage;

use rayon::prelude::*;

use crate::augment::{self, Transform};
use crate::backbone::{Backbone, BackboneInput};
use crate::config::AugmentConfig;
use crate::error::{Error, Result};
use crate::fsutil::{limits, read_limited};
use crate::image_prep::{self, ResizeMode};
use crate::progress::Progress;

const MAGIC: &[u8; 4] = b"FLF1";
const HEADER_LEN: usize = 4 + 4 + 32;
/// No entry is larger than a header and this many features.
const ENTRY_LIMIT: u64 = (HEADER_LEN + 4 * crate::backbone::MAX_FEATURE_DIM) as u64;
/// Images run through the backbone together: enough to keep both cores busy.
const EXTRACT_BATCH: usize = 32;

/// Everything that determines an image's features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureKey {
    pub content: blake3::Hash,
    pub weights_sha256: String,
    pub resize: ResizeMode,
    pub input_size: usize,
    pub variant: u32,
}

impl FeatureKey {
    /// The key's own hash, which names its cache file.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.content.as_bytes());
        h.update(self.weights_sha256.as_bytes());
        h.update(self.resize.name().as_bytes());
        h.update(&(self.input_size as u64).to_le_bytes());
        h.update(&self.variant.to_le_bytes());
        h.update(&image_prep::DECODE_VERSION.to_le_bytes());
        h.finalize().to_hex().to_string()
    }
}

/// What a cache lookup found.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    Hit(Vec<f32>),
    Miss,
    /// An entry existed but failed its checks; it will be overwritten.
    Corrupt,
}

/// Feature files under one folder (the workspace's `models/cache/features`).
pub struct FeatureCache {
    dir: PathBuf,
}

impl FeatureCache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FeatureCache { dir: dir.into() }
    }

    fn path_of(&self, key: &FeatureKey) -> PathBuf {
        let digest = key.digest();
        self.dir.join(&digest[..2]).join(format!("{digest}.f32"))
    }

    /// An entry that is anything but a regular file of the right size (a FIFO, a link to a
    /// device, a folder, a torn write) is corrupt: recomputed and replaced, never read whole.
    pub fn get(&self, key: &FeatureKey) -> Lookup {
        let path = self.path_of(key);
        match std::fs::symlink_metadata(&path) {
            Err(_) => Lookup::Miss,
            Ok(_) => read_limited(&path, ENTRY_LIMIT)
                .ok()
                .and_then(|bytes| decode_entry(&bytes))
                .map_or(Lookup::Corrupt, Lookup::Hit),
        }
    }

    pub fn put(&self, key: &FeatureKey, features: &[f32]) -> Result<()> {
        let path = self.path_of(key);
        let dir = path.parent().expect("entry paths have a parent");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // A rename cannot replace a folder; whatever took the entry's name goes first.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        crate::fsutil::write_atomically(&path, &encode_entry(features))
    }
}

fn encode_entry(features: &[f32]) -> Vec<u8> {
    let payload: Vec<u8> = features.iter().flat_map(|f| f.to_le_bytes()).collect();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(features.len() as u32).to_le_bytes());
    out.extend_from_slice(blake3::hash(&payload).as_bytes());
    out.extend_from_slice(&payload);
    out
}

fn decode_entry(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return None;
    }
    let dim = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
    let payload = &bytes[HEADER_LEN..];
    if payload.len() != dim * 4 || blake3::hash(payload).as_bytes() != &bytes[8..40] {
        return None;
    }
    Some(
        payload
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("chunk of 4")))
            .collect(),
    )
}

/// Features for a list of requests, and how they were obtained.
#[derive(Debug, Default)]
pub struct Extraction {
    /// One entry per request, in request order; `None` where the file was skipped.
    pub features: Vec<Option<Vec<f32>>>,
    /// Each request's image content hash, where the file could be read.
    pub content: Vec<Option<blake3::Hash>>,
    pub computed: usize,
    pub cached: usize,
    /// Cache entries that failed their checks and were recomputed.
    pub repaired: usize,
    /// Files that could not be read or decoded, with the reason; the rest still ran.
    pub skipped: Vec<(PathBuf, String)>,
}

/// The features wanted for one image: as it is, or one augmented copy of it.
#[derive(Debug, Clone)]
pub struct FeatureRequest<'a> {
    pub path: PathBuf,
    pub augment: Option<AugmentCopy<'a>>,
    /// The image mirrored left to right (test-time flip averaging).
    pub mirror: bool,
}

impl FeatureRequest<'_> {
    /// The image as it is.
    pub fn plain(path: &Path) -> Self {
        FeatureRequest {
            path: path.to_owned(),
            augment: None,
            mirror: false,
        }
    }

    /// The image mirrored left to right.
    pub fn mirrored(path: &Path) -> Self {
        FeatureRequest {
            mirror: true,
            ..FeatureRequest::plain(path)
        }
    }
}

/// The cache variant of a mirrored image; augmented copies' ids stay below it.
pub const MIRROR_VARIANT: u32 = u32::MAX;

/// Copy number `copy` of an image under `spec`, drawn with the training seed.
#[derive(Debug, Clone, Copy)]
pub struct AugmentCopy<'a> {
    pub spec: &'a AugmentConfig,
    pub seed: u64,
    pub copy: usize,
}

/// Features of each image file as it is (see [`extract_requests`]).
pub fn extract(
    backbone: &Backbone,
    cache: &FeatureCache,
    paths: &[PathBuf],
    resize: ResizeMode,
    progress: &dyn Progress,
) -> Result<Extraction> {
    let requests: Vec<FeatureRequest> = paths
        .iter()
        .map(|path| FeatureRequest::plain(path))
        .collect();
    extract_requests(backbone, cache, &requests, resize, progress)
}

/// Reads each image, takes its features from the cache or computes them (augmenting first
/// where asked), and fills the cache.
///
/// Requests are handled a batch at a time, so memory holds one batch of images however many
/// augmented copies are asked for; consecutive requests for one file (an image and its copies)
/// read and hash it once, and an unreadable file is reported once.
pub fn extract_requests(
    backbone: &Backbone,
    cache: &FeatureCache,
    requests: &[FeatureRequest],
    resize: ResizeMode,
    progress: &dyn Progress,
) -> Result<Extraction> {
    progress.start("features", Some(requests.len() as u64));
    let mut report = Extraction {
        features: vec![None; requests.len()],
        content: vec![None; requests.len()],
        ..Extraction::default()
    };
    let mut current: Option<(&Path, FileRead)> = None;
    for start in (0..requests.len()).step_by(EXTRACT_BATCH) {
        let mut misses = Vec::new();
        for (i, request) in requests.iter().enumerate().skip(start).take(EXTRACT_BATCH) {
            if current
                .as_ref()
                .is_none_or(|(path, _)| *path != request.path)
            {
                let read = read_limited(&request.path, limits::IMAGE)
                    .map(|bytes| {
                        let key = key_for(backbone, &bytes, resize);
                        Arc::new(SourceFile::new(bytes, key))
                    })
                    .map_err(|e| e.reason());
                if let Err(e) = &read {
                    report.skipped.push((request.path.clone(), e.clone()));
                }
                current = Some((&request.path, read));
            }
            let Some((_, Ok(file))) = &current else {
                progress.advance(1);
                continue;
            };
            let mut key = file.key.clone();
            if let Some(a) = &request.augment {
                key.variant = augment::variant_id(a.spec, a.seed, a.copy);
            } else if request.mirror {
                key.variant = MIRROR_VARIANT;
            }
            report.content[i] = Some(key.content);
            match cache.get(&key) {
                Lookup::Hit(f) if f.len() == backbone.feature_dim() => {
                    report.features[i] = Some(f);
                    report.cached += 1;
                    progress.advance(1);
                }
                lookup => {
                    report.repaired += usize::from(lookup == Lookup::Corrupt);
                    misses.push((i, key, Arc::clone(file)));
                }
            }
        }
        compute_misses(
            backbone,
            cache,
            requests,
            &misses,
            resize,
            &mut report,
            progress,
        )?;
    }
    progress.finish();
    Ok(report)
}

/// One image file, read and hashed once for all the requests of its copies, or why it could not
/// be read.
type FileRead = std::result::Result<Arc<SourceFile>, String>;

/// An image file's bytes, its unaugmented cache key, and (made on first use, by whichever
/// thread needs it first) the backbone's base image, which every copy starts from.
struct SourceFile {
    bytes: Vec<u8>,
    key: FeatureKey,
    base: OnceLock<std::result::Result<RgbImage, String>>,
}

impl SourceFile {
    fn new(bytes: Vec<u8>, key: FeatureKey) -> Self {
        SourceFile {
            bytes,
            key,
            base: OnceLock::new(),
        }
    }

    /// The decoded image made the backbone's base image (see [`Backbone::base_image`]),
    /// decoded once however many copies ask.
    fn base(
        &self,
        backbone: &Backbone,
        path: &Path,
        resize: ResizeMode,
    ) -> std::result::Result<&RgbImage, String> {
        self.base
            .get_or_init(|| {
                image_prep::decode(path, &self.bytes)
                    .map(|image| backbone.base_image(image, resize))
                    .map_err(|e| e.reason())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Features of the cache misses of one batch, computed together and cached.
fn compute_misses(
    backbone: &Backbone,
    cache: &FeatureCache,
    requests: &[FeatureRequest],
    misses: &[(usize, FeatureKey, Arc<SourceFile>)],
    resize: ResizeMode,
    report: &mut Extraction,
    progress: &dyn Progress,
) -> Result<()> {
    // Spread over the cores: each file is decoded and resized once, then its copies transformed.
    let prepared: Vec<(
        usize,
        &FeatureKey,
        std::result::Result<BackboneInput, String>,
    )> = misses
        .par_iter()
        .map(|(i, key, file)| {
            let input = prepare_request(backbone, &requests[*i], file, resize);
            (*i, key, input)
        })
        .collect();
    let mut ok = Vec::new();
    for (i, key, image) in prepared {
        match image {
            Ok(im) => ok.push((i, key, im)),
            Err(reason) => {
                // A file that does not decode is reported once, not once per copy.
                if !report.skipped.iter().any(|(p, _)| *p == requests[i].path) {
                    report.skipped.push((requests[i].path.clone(), reason));
                }
                progress.advance(1);
            }
        }
    }
    let inputs: Vec<&BackboneInput> = ok.iter().map(|(_, _, im)| im).collect();
    for ((i, key, _), features) in ok.iter().zip(backbone.features(&inputs)) {
        cache.put(key, &features)?;
        report.features[*i] = Some(features);
        report.computed += 1;
        progress.advance(1);
    }
    Ok(())
}

/// The backbone input of one request: the file's base image (MobileNetV2's: at the input
/// size), transformed when the request is an augmented copy (Keras's order: resize, then
/// augment), then made the network's input.
fn prepare_request(
    backbone: &Backbone,
    request: &FeatureRequest,
    file: &SourceFile,
    resize: ResizeMode,
) -> std::result::Result<BackboneInput, String> {
    let base = file.base(backbone, &request.path, resize)?;
    Ok(match &request.augment {
        Some(a) => {
            let (width, height) = base.dimensions();
            let transform =
                Transform::draw(a.spec, a.seed, &file.key.content, a.copy, height, width);
            backbone.input(&transform.apply(base))
        }
        None if request.mirror => backbone.input(&image::imageops::flip_horizontal(base)),
        None => backbone.input(base),
    })
}

/// The cache key of an image's unaugmented features.
pub fn key_for(backbone: &Backbone, image_bytes: &[u8], resize: ResizeMode) -> FeatureKey {
    FeatureKey {
        content: blake3::hash(image_bytes),
        weights_sha256: backbone.weights_sha256().to_owned(),
        resize,
        input_size: backbone.input_size(),
        variant: 0,
    }
}

/// Where the cache lives inside a workspace's `models/` folder.
pub fn cache_dir(models_dir: &Path) -> PathBuf {
    models_dir.join("cache").join("features")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image_prep::INPUT_SIZE;

    fn key(content: &[u8], variant: u32) -> FeatureKey {
        FeatureKey {
            content: blake3::hash(content),
            weights_sha256: "w".into(),
            resize: ResizeMode::Squash,
            input_size: INPUT_SIZE,
            variant,
        }
    }

    #[test]
    fn key_depends_on_every_field() {
        let base = key(b"img", 0);
        let mut others = vec![key(b"img2", 0), key(b"img", 1)];
        let mut w = base.clone();
        w.weights_sha256 = "other".into();
        others.push(w);
        let mut r = base.clone();
        r.resize = ResizeMode::CenterCrop;
        others.push(r);
        let mut s = base.clone();
        s.input_size = 192;
        others.push(s);
        for other in others {
            assert_ne!(base.digest(), other.digest(), "{other:?}");
        }
        assert_eq!(base.digest(), key(b"img", 0).digest());
    }

    #[test]
    fn put_then_get_round_trips_and_corruption_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::new(dir.path());
        let k = key(b"face", 0);
        assert_eq!(cache.get(&k), Lookup::Miss);
        let features: Vec<f32> = (0..1280).map(|i| i as f32 * 0.5).collect();
        cache.put(&k, &features).unwrap();
        assert_eq!(cache.get(&k), Lookup::Hit(features.clone()));

        let path = cache.path_of(&k);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get(&k), Lookup::Corrupt);

        std::fs::write(&path, &bytes[..100]).unwrap();
        assert_eq!(cache.get(&k), Lookup::Corrupt);
    }

    #[test]
    fn an_entry_replaced_by_a_fifo_a_device_link_or_a_folder_is_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FeatureCache::new(dir.path());
        let k = key(b"face", 0);
        let features = vec![0.25f32; 1280];
        cache.put(&k, &features).unwrap();
        let path = cache.path_of(&k);
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        let replacements: [&dyn Fn(); 3] = [
            &|| {
                // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            },
            &|| std::os::unix::fs::symlink("/dev/zero", &path).unwrap(),
            &|| std::fs::create_dir(&path).unwrap(),
        ];
        for replace in replacements {
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
            replace();
            assert_eq!(cache.get(&k), Lookup::Corrupt);
            cache.put(&k, &features).unwrap();
            assert_eq!(cache.get(&k), Lookup::Hit(features.clone()));
        }
    }
}
