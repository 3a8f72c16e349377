//! Overrides of single keys of an experiment (`--set train.optimizer.lr=0.01`): a dotted key
//! and a YAML value, applied to the parsed document before it becomes a config, so an
//! overridden value is checked exactly as one written in the file.

use serde_norway::{Mapping, Value};

/// One `KEY=VALUE`: a dotted key path and its new value.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub key: String,
    pub value: Value,
}

impl Override {
    /// Parses `key=value`; the value is YAML (`0.01`, `[512]`, `{name: adam}`, `true`), so a
    /// string needs no quotes unless it would read as another type.
    pub fn parse(text: &str) -> Result<Override, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(format!(
                "'{text}' is not KEY=VALUE; write e.g. --set train.optimizer.lr=0.01"
            ));
        };
        let key = key.trim();
        let well_formed = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !well_formed {
            return Err(format!(
                "'{key}' is not a dotted key such as train.optimizer.lr"
            ));
        }
        let value: Value = serde_norway::from_str(value.trim())
            .map_err(|e| format!("{key}: the value '{value}' is not YAML: {e}"))?;
        Ok(Override {
            key: key.to_owned(),
            value,
        })
    }

    /// Sets the key in `document` (a YAML mapping), making the mappings on its path as needed.
    /// Fails, naming the part, when the path runs through a value that is not a mapping.
    pub fn apply(&self, document: &mut Value) -> Result<(), String> {
        let mut node = document;
        let parts: Vec<&str> = self.key.split('.').collect();
        for (depth, part) in parts.iter().enumerate() {
            if node.is_null() {
                *node = Value::Mapping(Mapping::new());
            }
            let Value::Mapping(map) = node else {
                return Err(format!(
                    "{} is not a mapping, so it has no key {part}",
                    parts[..depth].join(".")
                ));
            };
            let slot = map
                .entry(Value::String((*part).to_owned()))
                .or_insert(Value::Null);
            if depth + 1 == parts.len() {
                *slot = self.value.clone();
                return Ok(());
            }
            node = slot;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Value {
        serde_norway::from_str(text).unwrap()
    }

    #[test]
    fn values_are_yaml_and_keys_are_dotted() {
        let o = Override::parse("head.hidden=[512, 128]").unwrap();
        assert_eq!(o.key, "head.hidden");
        assert_eq!(o.value, doc("[512, 128]"));
        assert_eq!(
            Override::parse("train.optimizer.lr = 0.01").unwrap().value,
            doc("0.01")
        );
        for bad in ["lr", "=3", "train..lr=1", "train.l r=1", "a=[1, 2"] {
            assert!(Override::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apply_replaces_a_value_and_makes_missing_mappings() {
        let mut d = doc("train: {optimizer: {name: rmsprop, lr: 0.001}, epochs: 3}");
        Override::parse("train.optimizer.lr=0.01")
            .unwrap()
            .apply(&mut d)
            .unwrap();
        Override::parse("augment.copies=2")
            .unwrap()
            .apply(&mut d)
            .unwrap();
        assert_eq!(
            d,
            doc("train: {optimizer: {name: rmsprop, lr: 0.01}, epochs: 3}\naugment: {copies: 2}")
        );
    }

    #[test]
    fn a_path_through_a_scalar_is_an_error_naming_it() {
        let mut d = doc("train: {epochs: 3}");
        let e = Override::parse("train.epochs.max=4")
            .unwrap()
            .apply(&mut d)
            .unwrap_err();
        assert!(e.contains("train.epochs is not a mapping"), "{e}");
    }
}
