//! Reading OpenCV's cascade XML (the format `opencv_traincascade` writes) into stages of weak
//! classifiers over HAAR features, with every value checked, so detection can trust it.

/// One rectangle of a HAAR feature, in window coordinates, and its weight.
#[derive(Debug, Clone, Copy)]
pub(super) struct WeightedRect {
    pub(super) x: u32,
    pub(super) y: u32,
    pub(super) w: u32,
    pub(super) h: u32,
    pub(super) weight: f32,
}

#[derive(Debug, Clone)]
pub(super) struct Feature {
    pub(super) rects: Vec<WeightedRect>,
}

/// A tree node: `value < threshold` goes left. A child `<= 0` is leaf `-child`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    pub(super) left: i32,
    pub(super) right: i32,
    pub(super) feature: usize,
    pub(super) threshold: f32,
}

#[derive(Debug, Clone)]
pub(super) struct WeakClassifier {
    pub(super) nodes: Vec<Node>,
    pub(super) leaves: Vec<f32>,
}

#[derive(Debug, Clone)]
pub(super) struct Stage {
    pub(super) threshold: f32,
    pub(super) weak: Vec<WeakClassifier>,
}

/// The window size, stages and features of a cascade file's text.
pub(super) fn parse_cascade(text: &str) -> Result<(u32, u32, Vec<Stage>, Vec<Feature>), String> {
    if element_depth(text) > MAX_DEPTH {
        return Err(format!(
            "elements nested more than {MAX_DEPTH} deep; OpenCV's cascades nest about 6"
        ));
    }
    let doc = roxmltree::Document::parse(text).map_err(|e| e.to_string())?;
    let cascade = doc
        .descendants()
        .find(|n| n.has_tag_name("cascade"))
        .ok_or(
        "no <cascade> element (old-format cascades are not supported; convert them with OpenCV)",
    )?;
    let child = |name: &str| cascade.children().find(|n| n.has_tag_name(name));
    let text_of = |name: &str| {
        child(name)
            .and_then(|n| n.text())
            .map(str::trim)
            .unwrap_or("")
    };
    if text_of("stageType") != "BOOST" || text_of("featureType") != "HAAR" {
        return Err(format!(
            "stage type {:?} / feature type {:?}: only BOOST + HAAR",
            text_of("stageType"),
            text_of("featureType")
        ));
    }
    let width: u32 = text_of("width").parse().map_err(|_| "bad <width>")?;
    let height: u32 = text_of("height").parse().map_err(|_| "bad <height>")?;
    let features = items(child("features").ok_or("no <features>")?)
        .map(parse_feature)
        .collect::<Result<Vec<_>, _>>()?;
    let stages = items(child("stages").ok_or("no <stages>")?)
        .map(|s| parse_stage(s, features.len()))
        .collect::<Result<Vec<_>, _>>()?;
    if stages.is_empty() {
        return Err("no stages".into());
    }
    // Detection reads the integral image unchecked: every rectangle must lie in the window.
    if let Some(r) = features
        .iter()
        .flat_map(|f| &f.rects)
        .find(|r| r.x + r.w > width || r.y + r.h > height)
    {
        return Err(format!(
            "feature rectangle {r:?} leaves the {width}x{height} window"
        ));
    }
    if width < 3 || height < 3 {
        return Err(format!("window {width}x{height} is too small"));
    }
    Ok((width, height, stages, features))
}

fn items<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> impl Iterator<Item = roxmltree::Node<'a, 'input>> {
    node.children().filter(|n| n.has_tag_name("_"))
}

fn numbers<T: std::str::FromStr>(
    node: Option<roxmltree::Node>,
    what: &str,
) -> Result<Vec<T>, String> {
    let text = node
        .and_then(|n| n.text())
        .ok_or_else(|| format!("missing <{what}>"))?;
    text.split_whitespace()
        .map(|t| {
            t.parse::<T>()
                .map_err(|_| format!("bad number {t:?} in <{what}>"))
        })
        .collect()
}

fn parse_feature(node: roxmltree::Node) -> Result<Feature, String> {
    if node
        .children()
        .any(|n| n.has_tag_name("tilted") && n.text().map(str::trim) == Some("1"))
    {
        return Err("tilted HAAR features are not supported".into());
    }
    let rects_node = node
        .children()
        .find(|n| n.has_tag_name("rects"))
        .ok_or("feature without <rects>")?;
    let rects = items(rects_node)
        .map(|r| {
            let v: Vec<f32> = numbers(Some(r), "rects")?;
            match v[..] {
                [x, y, w, h, weight] if x >= 0.0 && y >= 0.0 && w > 0.0 && h > 0.0 => {
                    Ok(WeightedRect {
                        x: x as u32,
                        y: y as u32,
                        w: w as u32,
                        h: h as u32,
                        weight,
                    })
                }
                _ => Err(format!("bad rectangle {v:?}")),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Feature { rects })
}

fn parse_stage(node: roxmltree::Node, feature_count: usize) -> Result<Stage, String> {
    let threshold: f32 = numbers(
        node.children().find(|n| n.has_tag_name("stageThreshold")),
        "stageThreshold",
    )?
    .first()
    .copied()
    .ok_or("empty <stageThreshold>")?;
    let weak_node = node
        .children()
        .find(|n| n.has_tag_name("weakClassifiers"))
        .ok_or("stage without <weakClassifiers>")?;
    let weak = items(weak_node)
        .map(|w| {
            let raw: Vec<f64> = numbers(
                w.children().find(|n| n.has_tag_name("internalNodes")),
                "internalNodes",
            )?;
            let leaves: Vec<f32> = numbers(
                w.children().find(|n| n.has_tag_name("leafValues")),
                "leafValues",
            )?;
            if raw.is_empty() || !raw.len().is_multiple_of(4) {
                return Err(format!("internalNodes of length {}", raw.len()));
            }
            let nodes: Vec<Node> = raw
                .chunks_exact(4)
                .map(|n| Node {
                    left: n[0] as i32,
                    right: n[1] as i32,
                    feature: n[2] as usize,
                    threshold: n[3] as f32,
                })
                .collect();
            let valid_child = |c: i32| {
                if c <= 0 {
                    ((-c) as usize) < leaves.len()
                } else {
                    (c as usize) < nodes.len()
                }
            };
            if nodes.iter().any(|n| {
                n.feature >= feature_count || !valid_child(n.left) || !valid_child(n.right)
            }) {
                return Err("a tree refers to a missing node, leaf or feature".into());
            }
            Ok(WeakClassifier { nodes, leaves })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Stage { threshold, weak })
}

/// Deepest element nesting a cascade file may have.
const MAX_DEPTH: usize = 64;

/// How deep `text`'s elements nest, counted without parsing (so a hostile file cannot
/// exhaust the parser's stack): `<name` opens, `</` and `/>` close.
fn element_depth(text: &str) -> usize {
    let bytes = text.as_bytes();
    let (mut depth, mut deepest) = (0usize, 0usize);
    for (i, &b) in bytes.iter().enumerate() {
        let next = bytes.get(i + 1).copied().unwrap_or(0);
        if b == b'<' && (next.is_ascii_alphabetic() || next == b'_') {
            depth += 1;
            deepest = deepest.max(depth);
        } else if (b == b'<' && next == b'/') || (b == b'/' && next == b'>') {
            depth = depth.saturating_sub(1);
        }
    }
    deepest
}
