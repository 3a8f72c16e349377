//! A small Python pickle reader: just the opcodes that torch's legacy (pre-1.6) `torch.save`
//! emits, evaluated into a [`Value`] tree without running any Python. Callables (`GLOBAL` +
//! `REDUCE`) are kept as data for the caller to interpret, so reading a file never executes it.
//!
//! The memo holds snapshots of values: torch's writer never refers back to a container after
//! filling it, so a snapshot taken at `BINPUT` time is enough for these files.

use std::collections::HashMap;

/// A pickled value, with callables left unevaluated.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    /// Wide enough for torch's 80-bit magic number.
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Key/value pairs in insertion order (pickled dicts and OrderedDicts alike).
    Dict(Vec<(Value, Value)>),
    /// `module.name`, as named by a `GLOBAL` opcode.
    Global(String, String),
    /// `func(*args)` from `REDUCE`. An `OrderedDict()` later filled by `SETITEMS` keeps its
    /// items here as a `Dict` in place of the empty argument tuple.
    Call(Box<Value>, Box<Value>),
    /// `obj.__setstate__(state)` from `BUILD`.
    Build(Box<Value>, Box<Value>),
    /// A persistent id (`BINPERSID`): torch names its storages this way.
    PersistentId(Box<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => i64::try_from(*i).ok(),
            _ => None,
        }
    }

    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(items) | Value::List(items) => Some(items),
            _ => None,
        }
    }
}

/// Reads one pickle from the front of `data`; returns the value and the bytes it used.
pub fn read(data: &[u8]) -> Result<(Value, usize), String> {
    let mut machine = Machine {
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let value = machine.run()?;
    Ok((value, machine.pos))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
}

impl Machine<'_> {
    fn run(&mut self) -> Result<Value, String> {
        loop {
            let at = self.pos;
            let op = self.byte()?;
            match op {
                0x80 => {
                    self.byte()?; // PROTO: the version needs no action here
                }
                b'.' => return self.pop(), // STOP
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'K' => {
                    let v = self.byte()? as i128;
                    self.stack.push(Value::Int(v));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?) as i128;
                    self.stack.push(Value::Int(v));
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?) as i128;
                    self.stack.push(Value::Int(v));
                }
                0x8a => {
                    let len = self.byte()? as usize;
                    let v = long_from_le(self.take(len)?)?;
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let len = u32::from_le_bytes(self.array()?) as usize;
                    let s = std::str::from_utf8(self.take(len)?)
                        .map_err(|_| format!("invalid UTF-8 string at byte {at}"))?
                        .to_owned();
                    self.stack.push(Value::Str(s));
                }
                b'U' => {
                    let len = self.byte()? as usize;
                    let b = self.take(len)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'T' => {
                    let len = u32::from_le_bytes(self.array()?) as usize;
                    let b = self.take(len)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module, name));
                }
                b'}' => self.stack.push(Value::Dict(Vec::new())),
                b']' => self.stack.push(Value::List(Vec::new())),
                b')' => self.stack.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(pairs(items)?));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(format!("stack underflow at byte {at}"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                b'q' => {
                    let key = self.byte()? as u32;
                    self.memoize(key)?;
                }
                b'r' => {
                    let key = u32::from_le_bytes(self.array()?);
                    self.memoize(key)?;
                }
                b'h' => {
                    let key = self.byte()? as u32;
                    self.recall(key, at)?;
                }
                b'j' => {
                    let key = u32::from_le_bytes(self.array()?);
                    self.recall(key, at)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(Value::PersistentId(Box::new(pid)));
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    self.stack.push(Value::Call(Box::new(func), Box::new(args)));
                }
                b'b' => {
                    let state = self.pop()?;
                    let obj = self.pop()?;
                    self.stack
                        .push(Value::Build(Box::new(obj), Box::new(state)));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.extend_dict(vec![(key, value)], at)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.extend_dict(pairs(items)?, at)?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.extend_list(vec![item], at)?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.extend_list(items, at)?;
                }
                other => {
                    return Err(format!(
                        "unsupported pickle opcode 0x{other:02x} at byte {at}"
                    ))
                }
            }
        }
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes = self.take(N)?;
        Ok(bytes.try_into().expect("take returns exactly N bytes"))
    }

    fn take(&mut self, len: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| format!("truncated pickle at byte {}", self.pos))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn line(&mut self) -> Result<String, String> {
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| format!("unterminated GLOBAL name at byte {}", self.pos))?;
        let text = String::from_utf8_lossy(&rest[..len]).into_owned();
        self.pos += len + 1;
        Ok(text)
    }

    fn pop(&mut self) -> Result<Value, String> {
        self.stack
            .pop()
            .ok_or_else(|| format!("stack underflow at byte {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, String> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| format!("missing MARK before byte {}", self.pos))?;
        Ok(self.stack.split_off(mark))
    }

    fn memoize(&mut self, key: u32) -> Result<(), String> {
        let top = self.stack.last().ok_or("memo put on an empty stack")?;
        self.memo.insert(key, top.clone());
        Ok(())
    }

    fn recall(&mut self, key: u32, at: usize) -> Result<(), String> {
        let value = self
            .memo
            .get(&key)
            .ok_or_else(|| format!("memo key {key} unknown at byte {at}"))?
            .clone();
        self.stack.push(value);
        Ok(())
    }

    /// SETITEM(S) on either a plain dict or an OrderedDict built by `REDUCE`.
    fn extend_dict(&mut self, new: Vec<(Value, Value)>, at: usize) -> Result<(), String> {
        match self.stack.last_mut() {
            Some(Value::Dict(items)) => items.extend(new),
            Some(Value::Call(_, args)) if is_empty_tuple(args) => {
                let target = self.stack.pop().expect("checked above");
                self.stack.push(Value::Call(
                    match target {
                        Value::Call(func, _) => func,
                        _ => unreachable!("matched as Call"),
                    },
                    Box::new(Value::Dict(new)),
                ));
            }
            Some(Value::Call(_, args)) => match args.as_mut() {
                Value::Dict(items) => items.extend(new),
                _ => return Err(format!("SETITEMS on a non-dict at byte {at}")),
            },
            _ => return Err(format!("SETITEMS on a non-dict at byte {at}")),
        }
        Ok(())
    }

    fn extend_list(&mut self, new: Vec<Value>, at: usize) -> Result<(), String> {
        match self.stack.last_mut() {
            Some(Value::List(items)) => items.extend(new),
            _ => return Err(format!("APPENDS on a non-list at byte {at}")),
        }
        Ok(())
    }
}

fn is_empty_tuple(v: &Value) -> bool {
    matches!(v, Value::Tuple(items) if items.is_empty())
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

/// Python's LONG1 payload: little-endian two's complement, up to 16 bytes here.
fn long_from_le(bytes: &[u8]) -> Result<i128, String> {
    if bytes.len() > 16 {
        return Err(format!("integer of {} bytes is too large", bytes.len()));
    }
    if bytes.is_empty() {
        return Ok(0);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xff; 16] } else { [0; 16] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(i128::from_le_bytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_protocol_2_dict_with_memo_and_long() {
        // x = 'x'; pickle.dumps({'a': 1, 'b': (2, x), 'c': (2**40, (x,))}, protocol=2): x is
        // recalled from the memo.
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02K\x02X\x01\x00\x00\x00xq\x03\x86q\x04X\x01\x00\x00\x00cq\x05\x8a\x06\x00\x00\x00\x00\x00\x01h\x03\x85q\x06\x86q\x07u.";
        let (value, used) = read(data).unwrap();
        assert_eq!(used, data.len());
        let Value::Dict(items) = value else {
            panic!("expected a dict, got {value:?}")
        };
        assert_eq!(items.len(), 3);
        assert_eq!(items[0], (Value::Str("a".into()), Value::Int(1)));
        assert_eq!(
            items[1].1,
            Value::Tuple(vec![Value::Int(2), Value::Str("x".into())])
        );
        assert_eq!(
            items[2].1,
            Value::Tuple(vec![
                Value::Int(1 << 40),
                Value::Tuple(vec![Value::Str("x".into())])
            ])
        );
    }

    #[test]
    fn negative_long1_is_sign_extended() {
        assert_eq!(long_from_le(&[0xff]).unwrap(), -1);
        assert_eq!(long_from_le(&[0x00, 0x80]).unwrap(), -32768);
    }

    #[test]
    fn unknown_opcode_and_truncation_are_errors() {
        assert!(read(b"\x80\x02\xff").unwrap_err().contains("0xff"));
        assert!(read(b"\x80\x02X\x05\x00\x00\x00ab")
            .unwrap_err()
            .contains("truncated"));
    }
}
