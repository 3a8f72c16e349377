//! The detector on generated images: a toy cascade, grouping, IoU, resizing.
use super::*;

/// A one-stage cascade over a 4x4 window whose only feature compares the left half with the
/// right half: it accepts windows that are dark on the left and bright on the right.
const TOY: &str = r#"<?xml version="1.0"?>
<opencv_storage><cascade type_id="opencv-cascade-classifier">
<stageType>BOOST</stageType><featureType>HAAR</featureType><height>4</height><width>4</width>
<stageNum>1</stageNum>
<stages><_><maxWeakCount>1</maxWeakCount><stageThreshold>0.5</stageThreshold>
<weakClassifiers><_><internalNodes>0 -1 0 0.05</internalNodes><leafValues>0. 1.</leafValues></_></weakClassifiers></_></stages>
<features><_><rects><_>0 0 2 4 -1.</_><_>2 0 2 4 1.</_></rects></_></features>
</cascade></opencv_storage>"#;

fn edge_image(width: u32, height: u32, edge_x: u32) -> GrayImage {
    GrayImage::from_fn(width, height, |x, _| {
        image::Luma([if x < edge_x { 20 } else { 220 }])
    })
}

#[test]
fn toy_cascade_fires_only_where_its_feature_says() {
    let cascade = Cascade::parse(TOY).unwrap();
    // The window skips ahead after first-stage rejections (x = 0, then 4, 8, ...), so put
    // the edge where a visited window straddles it.
    let image = edge_image(16, 8, 6);
    let hits = cascade.detect_ungrouped(
        &image,
        &DetectParams {
            scale_factor: 10.0,
            min_neighbors: 0,
            ..DetectParams::default()
        },
    );
    assert!(!hits.is_empty());
    // Windows straddle the edge: dark half on the left, bright half on the right.
    assert!(
        hits.iter().all(|r| r.x < 6 && r.x + r.width > 6),
        "{hits:?}"
    );
    let flat = GrayImage::from_pixel(16, 8, image::Luma([128]));
    assert!(cascade
        .detect_ungrouped(
            &flat,
            &DetectParams {
                min_neighbors: 0,
                ..DetectParams::default()
            }
        )
        .is_empty());
}

#[test]
fn unsupported_or_broken_files_say_why() {
    assert!(Cascade::parse("<opencv_storage/>")
        .unwrap_err()
        .contains("cascade"));
    assert!(Cascade::parse(&TOY.replace("HAAR", "LBP"))
        .unwrap_err()
        .contains("HAAR"));
    assert!(Cascade::parse(&TOY.replace("0 -1 0 0.05", "0 -1 7 0.05"))
        .unwrap_err()
        .contains("missing"));
}

#[test]
fn grouping_merges_neighbours_and_needs_more_than_min_neighbors() {
    let r = |x, y, s| Rect {
        x,
        y,
        width: s,
        height: s,
    };
    let rects = vec![
        r(100, 100, 50),
        r(102, 101, 50),
        r(98, 99, 52),
        r(101, 100, 49),
        r(300, 300, 40),
        r(301, 300, 40),
    ];
    let grouped = group_rectangles(rects.clone(), 3, GROUP_EPS);
    assert_eq!(grouped, vec![r(100, 100, 50)]);
    assert_eq!(group_rectangles(rects.clone(), 1, GROUP_EPS).len(), 2);
    assert_eq!(group_rectangles(rects, 4, GROUP_EPS).len(), 0);
}

#[test]
fn a_small_group_inside_a_stronger_one_is_dropped() {
    let r = |x, y, s| Rect {
        x,
        y,
        width: s,
        height: s,
    };
    let mut rects = vec![r(0, 0, 100); 6];
    rects.extend(vec![r(30, 30, 30); 2]);
    assert_eq!(group_rectangles(rects, 1, GROUP_EPS), vec![r(0, 0, 100)]);
}

#[test]
fn iou_of_boxes() {
    let a = Rect {
        x: 0,
        y: 0,
        width: 10,
        height: 10,
    };
    assert_eq!(a.iou(&a), 1.0);
    assert!(
        (a.iou(&Rect {
            x: 5,
            y: 0,
            width: 10,
            height: 10
        }) - 50.0 / 150.0)
            .abs()
            < 1e-12
    );
    assert_eq!(
        a.iou(&Rect {
            x: 20,
            y: 0,
            width: 5,
            height: 5
        }),
        0.0
    );
}

#[test]
fn bilinear_resize_keeps_flat_images_flat_and_halves_sizes() {
    let flat = GrayImage::from_pixel(40, 30, image::Luma([77]));
    let small = resize_bilinear(&flat, 20, 15);
    assert_eq!(small.dimensions(), (20, 15));
    assert!(small.pixels().all(|p| p.0[0] == 77));
}

#[test]
fn a_deeply_nested_file_is_refused_without_parsing_it() {
    let deep = format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000));
    let e = Cascade::parse(&deep).unwrap_err();
    assert!(e.contains("nested"), "{e}");
    assert!(Cascade::parse(TOY).is_ok());
}
