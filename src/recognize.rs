//! Live recognition: frames -> faces (the Haar detector) -> crops made as capture makes
//! training crops (the face box, resized to 224x224) -> features (the run's backbone and
//! preprocessing; dlib aligns the detected face in the frame itself, see
//! `Backbone::face_input`) -> the run's head and threshold -> names, followed across frames as
//! tracks.
//!
//! Tracking: a face is matched to the track whose last box overlaps it most (IoU at least
//! [`MIN_IOU`], each track taking one face per frame); a track unseen for more than
//! [`MAX_MISSED`] frames ends. A track's shown name is a vote over its last [`WINDOW`] frames,
//! each frame voting for its name (or "unknown") with its confidence; the name with the largest
//! sum wins and its confidence is the mean of its votes. So one bad frame among five cannot
//! flip a name, while a real change of person wins within three frames.
//!
//! Features of a track are reused, not recomputed, when the new crop looks the same as the one
//! they came from: a 16x16 grey thumbnail of the crop differs from the last computed one by
//! less than [`SAME_CROP`] grey levels on average (a paused or static source; camera noise
//! alone stays under it, a moving face does not).

mod stream;

use std::collections::VecDeque;

use image::RgbImage;
use serde::Serialize;

use crate::backbone::Backbone;
use crate::capture::cascade::{to_gray, Cascade, DetectParams, Rect};
use crate::capture::quality::Thumbnail;
use crate::capture::session::crop_square;
use crate::error::Result;
use crate::model::TrainedHead;
use crate::train::head::{acceptance_of, HeadRunner};
use crate::train::l2_normalize_row;

pub use stream::{stream, StreamOptions};

/// Least overlap for a face to continue a track.
pub const MIN_IOU: f64 = 0.3;
/// Frames a track may go unseen before it ends.
pub const MAX_MISSED: usize = 5;
/// Frames a track's name is voted over.
pub const WINDOW: usize = 5;
/// Mean grey-level difference of crop thumbnails under which features are reused.
pub const SAME_CROP: f32 = 1.0;

/// One frame's faces, as `recognize --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameResult {
    pub frame: u64,
    /// Where the frame came from: an image's path, or `camera:N`.
    pub source: String,
    pub faces: Vec<FaceResult>,
}

/// One face in a frame, its name smoothed over its track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceResult {
    #[serde(rename = "box")]
    pub rect: [i32; 4],
    /// Class folder name; `None` when unknown.
    pub predicted: Option<String>,
    /// Display name; `None` when unknown.
    pub label: Option<String>,
    pub confidence: f64,
    pub unknown: bool,
    pub track: u64,
    /// Whether this frame's features were reused from the track's last computed ones.
    #[serde(skip)]
    pub reused_features: bool,
}

/// One frame's verdict on a face: a class index (`None`: unknown) and its confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vote {
    pub class: Option<usize>,
    pub confidence: f64,
}

/// A followed face.
#[derive(Debug, Clone)]
struct Track {
    id: u64,
    rect: Rect,
    votes: VecDeque<Vote>,
    missed: usize,
    /// The thumbnail and features of the last crop whose features were computed.
    memo: Option<(Thumbnail, Vec<f32>)>,
}

impl Track {
    /// The name with the largest summed confidence over the window, and its mean confidence.
    fn smoothed(&self) -> Vote {
        let mut tally: Vec<(Option<usize>, f64, usize)> = Vec::new();
        for vote in &self.votes {
            match tally.iter_mut().find(|(c, _, _)| *c == vote.class) {
                Some(entry) => {
                    entry.1 += vote.confidence;
                    entry.2 += 1;
                }
                None => tally.push((vote.class, vote.confidence, 1)),
            }
        }
        // Ties go to the most recent frame's name: `tally` is in first-seen order, so scan
        // for the strictly largest sum and fall back to the latest vote.
        let latest = self.votes.back().copied().unwrap_or(Vote {
            class: None,
            confidence: 0.0,
        });
        let best = tally.iter().max_by(|a, b| a.1.total_cmp(&b.1));
        match best {
            Some(&(class, sum, n)) if tally.iter().filter(|t| t.1 == sum).count() == 1 => Vote {
                class,
                confidence: sum / n as f64,
            },
            _ => latest,
        }
    }
}

/// Faces followed across frames.
#[derive(Debug, Default)]
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    /// For each face box: the index of the track it continues, or `None` for a new face.
    fn assign(&self, faces: &[Rect]) -> Vec<Option<usize>> {
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (f, face) in faces.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let iou = face.iou(&track.rect);
                if iou >= MIN_IOU {
                    pairs.push((iou, f, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut assigned = vec![None; faces.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, f, t) in pairs {
            if assigned[f].is_none() && !taken[t] {
                assigned[f] = Some(t);
                taken[t] = true;
            }
        }
        assigned
    }

    /// Features a face's track already has for a crop that looks like `thumb`.
    fn memo(&self, track: Option<usize>, thumb: &Thumbnail) -> Option<Vec<f32>> {
        let (seen, features) = self.tracks.get(track?)?.memo.as_ref()?;
        (seen.distance(thumb) < SAME_CROP).then(|| features.clone())
    }

    /// Records one frame: each face with its track (from [`Tracker::assign`]), vote and the
    /// memo to keep; ages the tracks that were not seen. Returns each face's track id and
    /// smoothed vote, in the order given.
    fn record(&mut self, faces: Vec<SeenFace>) -> Vec<(u64, Vote)> {
        let seen: Vec<Option<usize>> = faces.iter().map(|f| f.track).collect();
        for (t, track) in self.tracks.iter_mut().enumerate() {
            if !seen.contains(&Some(t)) {
                track.missed += 1;
            }
        }
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let index = match face.track {
                Some(t) => t,
                None => {
                    self.next_id += 1;
                    self.tracks.push(Track {
                        id: self.next_id,
                        rect: face.rect,
                        votes: VecDeque::new(),
                        missed: 0,
                        memo: None,
                    });
                    self.tracks.len() - 1
                }
            };
            let track = &mut self.tracks[index];
            track.rect = face.rect;
            track.missed = 0;
            track.votes.push_back(face.vote);
            if track.votes.len() > WINDOW {
                track.votes.pop_front();
            }
            if let Some(memo) = face.memo {
                track.memo = Some(memo);
            }
            out.push((track.id, track.smoothed()));
        }
        self.tracks.retain(|t| t.missed <= MAX_MISSED);
        out
    }

    /// Tracks alive now.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }
}

/// A face of this frame, ready for [`Tracker::record`].
struct SeenFace {
    rect: Rect,
    track: Option<usize>,
    vote: Vote,
    memo: Option<(Thumbnail, Vec<f32>)>,
}

/// Where one frame's time went, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FrameTiming {
    pub detect: f64,
    /// Cropping, thumbnails and the backbone.
    pub features: f64,
    /// The head, the votes and tracking.
    pub naming: f64,
}

/// Names faces in a stream of frames with one run's head.
pub struct Recognizer<'a> {
    cascade: Cascade,
    detect: DetectParams,
    backbone: &'a Backbone,
    head: TrainedHead,
    threshold: Option<f64>,
    runner: HeadRunner,
    tracker: Tracker,
    frames: u64,
    /// The last frame's timing.
    pub timing: FrameTiming,
}

impl<'a> Recognizer<'a> {
    /// `threshold` replaces the run's calibrated one when given; `min_size` is the smallest
    /// face side looked for (a capture session's 80 by default).
    pub fn new(
        cascade: Cascade,
        backbone: &'a Backbone,
        head: TrainedHead,
        threshold: Option<f64>,
        min_size: u32,
    ) -> Result<Self> {
        head.check_backbone(backbone)?;
        Ok(Recognizer {
            cascade,
            detect: DetectParams {
                min_size,
                ..DetectParams::default()
            },
            backbone,
            threshold: threshold.or(head.meta.open_set.map(|o| o.threshold)),
            head,
            runner: HeadRunner::new(0, 0.0),
            tracker: Tracker::default(),
            frames: 0,
            timing: FrameTiming::default(),
        })
    }

    /// Detects, names and tracks the faces of one frame.
    pub fn recognize(&mut self, image: &RgbImage, source: &str) -> FrameResult {
        self.frames += 1;
        let clock = std::time::Instant::now();
        let mut rects = self.cascade.detect(&to_gray(image), &self.detect);
        rects.sort_by_key(|r| (r.x, r.y));
        let detected = clock.elapsed().as_secs_f64();
        let tracks = self.tracker.assign(&rects);
        let crops: Vec<RgbImage> = rects.iter().map(|r| crop_square(image, *r)).collect();
        let thumbs: Vec<Thumbnail> = crops.iter().map(Thumbnail::of).collect();
        let memos: Vec<Option<Vec<f32>>> = tracks
            .iter()
            .zip(&thumbs)
            .map(|(&t, thumb)| self.tracker.memo(t, thumb))
            .collect();
        let fresh: Vec<(Rect, &RgbImage)> = rects
            .iter()
            .zip(&crops)
            .zip(&memos)
            .filter(|(_, m)| m.is_none())
            .map(|((r, c), _)| (*r, c))
            .collect();
        let mut computed = self.features(image, &fresh).into_iter();
        let featured = clock.elapsed().as_secs_f64();
        let mut seen = Vec::with_capacity(rects.len());
        let mut reused = Vec::with_capacity(rects.len());
        for (((rect, track), thumb), memo) in rects.iter().zip(&tracks).zip(thumbs).zip(memos) {
            reused.push(memo.is_some());
            let (features, memo) = match memo {
                Some(features) => (features, None),
                None => {
                    let features = computed.next().expect("one feature row per fresh crop");
                    (features.clone(), Some((thumb, features)))
                }
            };
            seen.push(SeenFace {
                rect: *rect,
                track: *track,
                vote: self.vote(features),
                memo,
            });
        }
        let verdicts = self.tracker.record(seen);
        let faces = rects
            .iter()
            .zip(verdicts)
            .zip(reused)
            .map(|((rect, (track, vote)), reused_features)| {
                let meta = &self.head.meta;
                FaceResult {
                    rect: [rect.x, rect.y, rect.width, rect.height],
                    predicted: vote.class.map(|c| meta.classes[c].clone()),
                    label: vote.class.map(|c| meta.labels[c].clone()),
                    confidence: vote.confidence,
                    unknown: vote.class.is_none(),
                    track,
                    reused_features,
                }
            })
            .collect();
        let total = clock.elapsed().as_secs_f64();
        self.timing = FrameTiming {
            detect: detected,
            features: featured - detected,
            naming: total - featured,
        };
        FrameResult {
            frame: self.frames,
            source: source.to_owned(),
            faces,
        }
    }

    /// Backbone features of the frame's fresh faces (box and capture crop), prepared as the
    /// run's images were (with the mirror image averaged in when the run used
    /// `predict.flip_average`).
    fn features(&self, frame: &RgbImage, faces: &[(Rect, &RgbImage)]) -> Vec<Vec<f32>> {
        let resize = self.head.meta.resize;
        let features_of = |mirror: bool| {
            let inputs: Vec<_> = faces
                .iter()
                .map(|(face, crop)| self.backbone.face_input(frame, *face, crop, resize, mirror))
                .collect();
            self.backbone.features(&inputs.iter().collect::<Vec<_>>())
        };
        let mut rows = features_of(false);
        if self.head.meta.flip_average {
            for (row, other) in rows.iter_mut().zip(features_of(true)) {
                row.iter_mut()
                    .zip(other)
                    .for_each(|(a, b)| *a = (*a + b) / 2.0);
            }
        }
        rows
    }

    /// This frame's verdict from a face's features.
    fn vote(&self, mut features: Vec<f32>) -> Vote {
        if self.head.meta.l2_normalize {
            l2_normalize_row(&mut features);
        }
        let logits = self.runner.logits(&self.head.params, &features);
        let score = f64::from(acceptance_of(self.head.params.output, &logits));
        let probabilities = crate::train::softmax(&logits);
        let best = crate::train::head::argmax(&probabilities);
        let unknown = self.threshold.is_some_and(|t| score < t);
        Vote {
            class: (!unknown).then_some(best),
            confidence: f64::from(probabilities[best]),
        }
    }

    /// Faces followed now.
    pub fn tracks(&self) -> usize {
        self.tracker.len()
    }
}

#[cfg(test)]
mod tests;
