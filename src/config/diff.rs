//! Comparing the resolved configs of runs: each YAML document flattened to dotted key paths,
//! and the keys whose values differ (what the compare screen shows).

use std::collections::BTreeMap;

/// A YAML document as dotted key paths (`train.optimizer.lr`) and their values, for comparing
/// the configs of runs. Sequences of scalars stay one value (`[1024, 512]`).
pub fn flatten_yaml(text: &str) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &serde_norway::Value, out: &mut BTreeMap<String, String>) {
        match value {
            serde_norway::Value::Mapping(map) => {
                for (k, v) in map {
                    let key = match k {
                        serde_norway::Value::String(s) => s.clone(),
                        other => serde_norway::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_owned(),
                    };
                    let path = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, v, out);
                }
            }
            serde_norway::Value::Tagged(tagged) => walk(prefix, &tagged.value, out),
            other => {
                let text = serde_json::to_string(other)
                    .unwrap_or_default()
                    .replace(',', ", ");
                out.insert(prefix.to_owned(), text.trim_matches('"').to_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(value) = serde_norway::from_str::<serde_norway::Value>(text) {
        walk("", &value, &mut out);
    }
    out
}

/// The keys whose values are not the same in every config (a missing key counts as a value).
pub fn differing_keys(configs: &[BTreeMap<String, String>]) -> Vec<String> {
    let all: std::collections::BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    all.into_iter()
        .filter(|k| {
            configs
                .windows(2)
                .any(|pair| pair[0].get(*k) != pair[1].get(*k))
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_and_diffing_configs() {
        let a = flatten_yaml("train:\n  optimizer: {name: adam, lr: 0.01}\n  epochs: 3\nhead:\n  hidden: [1024, 512]\n");
        assert_eq!(a["train.optimizer.lr"], "0.01");
        assert_eq!(a["head.hidden"], "[1024, 512]");
        let b = flatten_yaml("train:\n  optimizer: {name: adam, lr: 0.001}\n  epochs: 3\nhead:\n  hidden: [1024, 512]\nname: b\n");
        assert_eq!(
            differing_keys(&[a, b]),
            vec!["name".to_owned(), "train.optimizer.lr".to_owned()]
        );
    }
}
