//! The one text field of the TUI (filter, tags, notes, image path, person, source), with the
//! editing users expect from a line editor: a field opens showing its current value, marked
//! as such; typing replaces that value, while arrows, Home/End, Backspace and Delete edit it.

use ratatui::crossterm::event::{KeyCode, KeyEvent};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextInput {
    value: String,
    /// Cursor position, in characters.
    cursor: usize,
    /// The value is the field's old one, shown for editing; the first typed character replaces
    /// it.
    pristine: bool,
}

impl TextInput {
    /// A field showing `value`, the cursor at its end.
    pub fn with_value(value: &str) -> Self {
        TextInput {
            value: value.to_owned(),
            cursor: value.chars().count(),
            pristine: !value.is_empty(),
        }
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether typing will replace the whole value (the view marks it).
    pub fn is_pristine(&self) -> bool {
        self.pristine
    }

    /// The value split at the cursor, for drawing it there.
    pub fn split_at_cursor(&self) -> (&str, &str) {
        self.value.split_at(self.byte_index(self.cursor))
    }

    /// Applies an editing key; returns whether the value changed. Enter and Esc are the
    /// caller's.
    pub fn handle(&mut self, key: KeyEvent) -> bool {
        let len = self.value.chars().count();
        let before = self.value.clone();
        match key.code {
            KeyCode::Char(c) => {
                if self.pristine {
                    self.value.clear();
                    self.cursor = 0;
                }
                let at = self.byte_index(self.cursor);
                self.value.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let at = self.byte_index(self.cursor);
                self.value.remove(at);
            }
            KeyCode::Delete if self.cursor < len => {
                let at = self.byte_index(self.cursor);
                self.value.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(len),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = len,
            _ => return false,
        }
        self.pristine = false;
        self.value != before
    }

    fn byte_index(&self, chars: usize) -> usize {
        self.value
            .char_indices()
            .nth(chars)
            .map_or(self.value.len(), |(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;

    fn type_keys(input: &mut TextInput, keys: &[KeyCode]) {
        for &code in keys {
            input.handle(KeyEvent::new(code, KeyModifiers::NONE));
        }
    }

    fn chars(text: &str) -> Vec<KeyCode> {
        text.chars().map(KeyCode::Char).collect()
    }

    #[test]
    fn typing_replaces_the_value_shown() {
        let mut input = TextInput::with_value("camera:0");
        assert!(input.is_pristine());
        type_keys(&mut input, &chars("dir:/tmp/photos"));
        assert_eq!(input.value(), "dir:/tmp/photos");
    }

    #[test]
    fn backspace_and_arrows_edit_the_value_shown() {
        let mut input = TextInput::with_value("camera:0");
        type_keys(&mut input, &[KeyCode::Backspace]);
        type_keys(&mut input, &chars("1"));
        assert_eq!(input.value(), "camera:1");

        let mut input = TextInput::with_value("seed");
        type_keys(
            &mut input,
            &[KeyCode::Home, KeyCode::Right, KeyCode::Delete],
        );
        type_keys(&mut input, &chars("E"));
        assert_eq!(input.value(), "sEed");
        assert_eq!(input.split_at_cursor(), ("sE", "ed"));
    }

    #[test]
    fn editing_works_on_multibyte_characters() {
        let mut input = TextInput::with_value("José");
        type_keys(&mut input, &[KeyCode::Left, KeyCode::Backspace]);
        assert_eq!(input.value(), "Joé");
        type_keys(&mut input, &[KeyCode::End, KeyCode::Backspace]);
        assert_eq!(input.value(), "Jo");
    }

    #[test]
    fn an_empty_field_is_typed_into() {
        let mut input = TextInput::default();
        assert!(!input.is_pristine());
        type_keys(&mut input, &chars("ab"));
        assert_eq!(input.value(), "ab");
    }
}
