//! Tracking and name smoothing by value: boxes in, track ids and voted names out.
use super::*;

fn rect(x: i32, y: i32, side: i32) -> Rect {
    Rect {
        x,
        y,
        width: side,
        height: side,
    }
}

fn vote(class: Option<usize>, confidence: f64) -> Vote {
    Vote { class, confidence }
}

/// Feeds one frame of (box, vote) to the tracker; returns (track id, smoothed vote) per face.
fn frame(tracker: &mut Tracker, faces: &[(Rect, Vote)]) -> Vec<(u64, Vote)> {
    let rects: Vec<Rect> = faces.iter().map(|f| f.0).collect();
    let tracks = tracker.assign(&rects);
    let seen = faces
        .iter()
        .zip(tracks)
        .map(|(&(rect, vote), track)| SeenFace {
            rect,
            track,
            vote,
            memo: None,
        })
        .collect();
    tracker.record(seen)
}

#[test]
fn one_bad_frame_does_not_flip_a_tracks_name_but_a_real_change_wins() {
    let mut tracker = Tracker::default();
    let face = rect(100, 100, 120);
    for _ in 0..4 {
        frame(&mut tracker, &[(face, vote(Some(0), 0.9))]);
    }
    let bad = frame(&mut tracker, &[(face, vote(Some(1), 0.99))]);
    assert_eq!(bad[0].1.class, Some(0), "one frame of another name");
    let unknown = frame(&mut tracker, &[(face, vote(None, 0.4))]);
    assert_eq!(unknown[0].1.class, Some(0));
    let mut last = Vec::new();
    for _ in 0..3 {
        last = frame(&mut tracker, &[(face, vote(Some(1), 0.95))]);
    }
    assert_eq!(last[0].1.class, Some(1), "three frames of the new name win");
    // The window now holds B .99, unknown .4 and three B .95: B's mean is (0.99 + 3 x 0.95) / 4.
    assert!(
        (last[0].1.confidence - 0.96).abs() < 1e-9,
        "{:?}",
        last[0].1
    );
}

#[test]
fn faces_keep_their_track_while_they_overlap_and_new_faces_get_new_ones() {
    let mut tracker = Tracker::default();
    let first = frame(
        &mut tracker,
        &[
            (rect(10, 10, 100), vote(Some(0), 0.9)),
            (rect(300, 10, 100), vote(Some(1), 0.9)),
        ],
    );
    assert_ne!(first[0].0, first[1].0);
    // Both moved a little, listed in the other order.
    let moved = frame(
        &mut tracker,
        &[
            (rect(310, 14, 100), vote(Some(1), 0.9)),
            (rect(18, 12, 100), vote(Some(0), 0.9)),
        ],
    );
    assert_eq!((moved[0].0, moved[1].0), (first[1].0, first[0].0));
    let elsewhere = frame(&mut tracker, &[(rect(150, 300, 100), vote(Some(2), 0.9))]);
    assert!(elsewhere[0].0 > first[1].0, "a new id");
    assert_eq!(tracker.len(), 3);
    for _ in 0..MAX_MISSED {
        frame(&mut tracker, &[(rect(150, 300, 100), vote(Some(2), 0.9))]);
    }
    assert_eq!(
        tracker.len(),
        1,
        "tracks unseen for more than MAX_MISSED frames end"
    );
}

#[test]
fn a_tracks_features_are_reused_only_for_a_crop_that_looks_the_same() {
    let mut tracker = Tracker::default();
    let image = RgbImage::from_fn(224, 224, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let thumb = Thumbnail::of(&image);
    let face = rect(0, 0, 224);
    tracker.record(vec![SeenFace {
        rect: face,
        track: None,
        vote: vote(Some(0), 0.9),
        memo: Some((thumb.clone(), vec![1.0, 2.0])),
    }]);
    let track = tracker.assign(&[face])[0];
    assert_eq!(tracker.memo(track, &thumb), Some(vec![1.0, 2.0]));
    let brighter = RgbImage::from_fn(224, 224, |x, y| {
        image::Rgb([(x % 256) as u8 / 2 + 60, (y % 256) as u8 / 2 + 60, 160])
    });
    assert_eq!(tracker.memo(track, &Thumbnail::of(&brighter)), None);
    assert_eq!(
        tracker.memo(None, &thumb),
        None,
        "a new face has no features yet"
    );
}
