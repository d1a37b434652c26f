//! The common shape, read without serde's field machinery: the payload `Builder` writes
//! for a new job with no extra fields —
//! `{"class":"C","args":[…],"jid":"J","queue":"Q","created_at":N,"enqueued_at":N,"retry_count":N}`
//! with no whitespace and no escapes in its strings. Most jobs a worker takes are this
//! shape, and serde's reading of it (a key compared with every field name, each value
//! skipped through the generic visitor) cost ~3,500 instructions a job, most of the
//! engine's parse.
//!
//! `read` answers only when the payload is exactly this shape, and then with what
//! `parse` would make of it; anything else (a retry's error fields, limits, a batch, a
//! Sidekiq client's order of keys, an escape, a space) is `None`, and `parse` reads it
//! the general way. It checks the JSON it reads: strings free of control characters,
//! numbers by JSON's grammar, arguments that are all plain scalars itself and any
//! others by serde_json.

use serde_json::Value;

use super::{Args, Parsed, Scalar};

/// A cursor over the payload's bytes.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over `expected`, which must come next.
    fn literal(&mut self, expected: &str) -> Option<()> {
        let end = self.at + expected.len();
        (self.text.as_bytes().get(self.at..end)? == expected.as_bytes()).then(|| self.at = end)
    }

    /// The rest of a string whose opening quote is behind: its text, up to the closing
    /// quote (stepped over). None at an escape or a control character.
    fn plain_string(&mut self) -> Option<&'a str> {
        let start = self.at;
        let rest = &self.text.as_bytes()[start..];
        let len = plain_run(rest)?;
        if rest[len] != b'"' {
            return None;
        }
        self.at = start + len + 1;
        // The payload is UTF-8 and a quote is one byte: the slice is at char boundaries.
        Some(&self.text[start..start + len])
    }

    /// A JSON number, `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`, as text.
    fn number(&mut self) -> Option<&'a str> {
        let b = &self.text.as_bytes()[self.at..];
        let mut i = usize::from(b.first() == Some(&b'-'));
        let whole = digits(b, i);
        if whole == 0 || (whole > 1 && b[i] == b'0') {
            return None;
        }
        i += whole;
        if b.get(i) == Some(&b'.') {
            let fraction = digits(b, i + 1);
            if fraction == 0 {
                return None;
            }
            i += 1 + fraction;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1 + usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
            let exponent = digits(b, i);
            if exponent == 0 {
                return None;
            }
            i += exponent;
        }
        let start = self.at;
        self.at += i;
        Some(&self.text[start..self.at])
    }

    /// The argument Array: read here when each argument is a plain scalar (an integer
    /// that fits an i64, a string without escapes, true, false, null) with no spaces —
    /// most jobs' — else by serde_json.
    fn args(&mut self) -> Option<Args> {
        let from = self.at;
        if let Some(args) = self.scalar_args() {
            return Some(args);
        }
        self.at = from;
        let mut values =
            serde_json::Deserializer::from_str(&self.text[self.at..]).into_iter::<Vec<Value>>();
        let args = values.next()?.ok()?;
        self.at += values.byte_offset();
        Some(Args::from(args))
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.at).copied()
    }

    fn skip_if(&mut self, b: u8) -> bool {
        let here = self.peek() == Some(b);
        self.at += usize::from(here);
        here
    }

    fn scalar_args(&mut self) -> Option<Args> {
        self.literal("[")?;
        let mut args = Args::new();
        if self.skip_if(b']') {
            return Some(args);
        }
        loop {
            args.push(match self.peek()? {
                b'"' => {
                    self.at += 1;
                    Scalar::Str(self.plain_string()?.into())
                }
                // serde_json reads -0 as a Float, and any fraction or exponent: its way
                b'-' if self.text.as_bytes().get(self.at + 1) == Some(&b'0') => return None,
                b'-' | b'0'..=b'9' => Scalar::Int(self.number()?.parse::<i64>().ok()?),
                b't' => self.literal("true").map(|()| Scalar::Bool(true))?,
                b'f' => self.literal("false").map(|()| Scalar::Bool(false))?,
                b'n' => self.literal("null").map(|()| Scalar::Null)?,
                _ => return None,
            });
            if !self.skip_if(b',') {
                self.literal("]")?;
                return Some(args);
            }
        }
    }
}

/// The bytes that end a run of a string's plain text: the closing quote, the start of
/// an escape, and the control characters JSON does not allow in a string.
static ENDS_PLAIN: [bool; 256] = {
    let mut ends = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        ends[b] = true;
        b += 1;
    }
    ends[b'"' as usize] = true;
    ends[b'\\' as usize] = true;
    ends
};

/// The scans below look at eight bytes at a time where eight are left (a payload's
/// strings and numbers are mostly longer than that), then byte by byte.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;

fn word(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..i + 8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("eight bytes")))
}

/// The index of the first byte of the little-endian `mask` with a bit set.
fn first(mask: u64) -> usize {
    (mask.trailing_zeros() / 8) as usize
}

/// Where the first byte in `ENDS_PLAIN` is in `b`, if any. In a word, each byte's high
/// bit is set where it is a quote, a backslash or below 0x20 (the classic "has a zero
/// byte" test, which may also flag bytes after a flagged one, never before: the first
/// flag is exact). UTF-8 bytes (0x80 and up) are never flagged.
fn plain_run(b: &[u8]) -> Option<usize> {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH_BITS;
    let mut i = 0;
    while let Some(x) = word(b, i) {
        let ends = zero(x ^ (ONES * u64::from(b'"')))
            | zero(x ^ (ONES * u64::from(b'\\')))
            | (x.wrapping_sub(ONES * 0x20) & !x & HIGH_BITS);
        if ends != 0 {
            return Some(i + first(ends));
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| ENDS_PLAIN[usize::from(c)])
        .map(|n| i + n)
}

/// How many ASCII digits `b` has from `from` on. In a word, a byte is a digit when its
/// high nibble is 3 and still is with 6 added (0x30..=0x39); a byte of 0xFA or more
/// carries into the next one, which only ever follows the first non-digit.
fn digits(b: &[u8], from: usize) -> usize {
    let threes = ONES * 0x30;
    let mut i = from;
    while let Some(x) = word(b, i) {
        let other =
            ((x & HIGH_NIBBLES) ^ threes) | ((x.wrapping_add(ONES * 6) & HIGH_NIBBLES) ^ threes);
        if other != 0 {
            return i + first(other) - from;
        }
        i += 8;
    }
    while i < b.len() && b[i].wrapping_sub(b'0') < 10 {
        i += 1;
    }
    i - from
}

/// The payload read, when it is exactly the common shape.
pub(super) fn read(text: &str) -> Option<Parsed> {
    let mut c = Cursor { text, at: 0 };
    c.literal(r#"{"class":""#)?;
    let class = c.plain_string()?;
    if class.is_empty() {
        return None; // an error, which `parse` words
    }
    c.literal(r#","args":"#)?;
    let args = c.args()?;
    c.literal(r#","jid":""#)?;
    let jid = c.plain_string()?;
    c.literal(r#","queue":""#)?;
    c.plain_string()?;
    c.literal(r#","created_at":"#)?;
    c.number()?;
    c.literal(r#","enqueued_at":"#)?;
    c.number()?;
    c.literal(r#","retry_count":"#)?;
    // Digits that fit a u64; any other number (negative, fractional, huge, 1e400,
    // which serde refuses) is left to `parse`, which reads it its own way.
    let retry_count: u64 = c.number()?.parse().ok()?;
    c.literal("}")?;
    if c.at != text.len() {
        return None;
    }
    Some(Parsed {
        class: super::class_name(class),
        args,
        jid: super::Jid::new(jid),
        retry_count,
        expires_at: None,
        unique: None,
        limits: None,
        bid: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, parse_general, Builder};
    use super::read;

    /// `parse` of each payload, through `read` where it answers, equals the general
    /// reading.
    fn same(text: &str) -> bool {
        let fast = format!("{:?}", parse(text));
        let general = format!("{:?}", parse_general(text));
        assert_eq!(fast, general, "{text}");
        read(text).is_some()
    }

    /// `cargo test --release --lib common::tests::speed -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn speed() {
        let (_, p) = Builder::new("FiberBench", "default", 1_765_065_600.123_456_7)
            .payload("[123]", &serde_json::Map::new());
        for (name, f) in [
            ("common", parse as fn(&str) -> _),
            ("general", parse_general),
        ] {
            let t = std::time::Instant::now();
            for _ in 0..1_000_000 {
                std::hint::black_box(f(std::hint::black_box(&p)).is_ok());
            }
            println!("{name}: {:?} per parse", t.elapsed() / 1_000_000);
        }
    }

    /// Every byte value at every offset of a run, against a byte-by-byte scan.
    #[test]
    fn the_word_scans_agree_with_a_byte_scan() {
        use super::{digits, plain_run, ENDS_PLAIN};
        for len in 0..20 {
            for at in 0..=len {
                for b in 0..=255u8 {
                    let mut text = vec![b'7'; len];
                    text.extend_from_slice(b"9999999999");
                    if at < text.len() {
                        text[at] = b;
                    }
                    let want = text.iter().take_while(|c| c.is_ascii_digit()).count();
                    assert_eq!(digits(&text, 0), want, "{text:?}");
                    let mut text = vec![b'a'; len];
                    text.extend_from_slice("é€xxxxxxxx".as_bytes());
                    if at < text.len() {
                        text[at] = b;
                    }
                    let want = text.iter().position(|&c| ENDS_PLAIN[usize::from(c)]);
                    assert_eq!(plain_run(&text), want, "{text:?}");
                }
            }
        }
        assert_eq!(digits(b"x12", 1), 2);
        assert_eq!(digits(b"123456789012345678,", 0), 18);
        assert_eq!(plain_run(b"0123456789abcdef\\\""), Some(16));
    }

    /// Arguments read here or by serde_json come out the same, and what serde refuses
    /// is refused.
    #[test]
    fn reads_arguments_as_serde_does() {
        let tail = r#","jid":"j","queue":"q","created_at":1,"enqueued_at":1,"retry_count":0}"#;
        for args in [
            "[]",
            "[0]",
            "[-5]",
            "[123,\"hi\",true,false,null]",
            "[9223372036854775807]",
            "[-9223372036854775808]",
            "[9223372036854775808]",
            "[18446744073709551616]",
            "[-0]",
            "[-0.0]",
            "[1.5]",
            "[1e3]",
            "[\"a\\\"b\"]",
            "[\"é\"]",
            "[[1]]",
            "[{\"a\":1}]",
            "[ 1]",
            "[1 ]",
            "[1,]",
            "[,1]",
            "[01]",
            "[1x]",
            "[tru]",
            "[nul]",
            "[\"a]",
            "[1",
            "[",
            "[]]",
            "[+1]",
            "[-]",
            "[true,[false]]",
        ] {
            same(&format!(r#"{{"class":"A","args":{args}{tail}"#));
        }
    }

    #[test]
    fn reads_what_the_builder_writes() {
        let b = Builder::new("EmailJob", "default", 1_765_065_600.123_456_7);
        for args in [
            "[]",
            "[1]",
            r#"[123,"hi",{"a":[1.5,null,true]},-2e3]"#,
            r#"["a\"b"]"#,
        ] {
            let (_, p) = b.payload(args, &serde_json::Map::new());
            assert!(same(&p), "the common shape is read directly: {p}");
        }
    }

    #[test]
    fn leaves_every_other_shape_to_the_general_reading_with_the_same_result() {
        let j = r#""jid":"abc","queue":"q","created_at":1.5,"enqueued_at":2,"retry_count""#;
        for (text, direct) in [
            (format!(r#"{{"class":"A","args":[1],{j}:3}}"#), true),
            (format!(r#"{{"class":"A","args":[1],{j}:-3}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:1.5}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:1e2}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:1e400}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:18446744073709551615}}"#), true),
            (
                format!(r#"{{"class":"A","args":[1],{j}:99999999999999999999999}}"#),
                false,
            ),
            (
                format!(r#"{{"class":"A","args":[1],{j}:0,"bid":"b"}}"#),
                false,
            ),
            (
                format!(r#"{{"class":"A","args":[1],{j}:0,"class":"B"}}"#),
                false,
            ),
            (format!(r#"{{"class":"A","args":[1],{j}:0}} "#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:0}}x"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:01}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:1.}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:-}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:1e}}"#), false),
            (format!(r#"{{"class":"A","args":[1],{j}:"0"}}"#), false),
            (format!(r#"{{"class":"","args":[1],{j}:0}}"#), false),
            (format!(r#"{{"class":"A\u0042","args":[1],{j}:0}}"#), false),
            (format!("{{\"class\":\"A\tB\",\"args\":[1],{j}:0}}"), false),
            (format!(r#"{{"class":"A","args":{{}},{j}:0}}"#), false),
            (format!(r#"{{"class":"A","args":[1,],{j}:0}}"#), false),
            // serde_json reads the arguments, spaces included
            (format!(r#"{{"class":"A","args": [ 1 ],{j}:0}}"#), true),
            (format!(r#"{{"class":"A","args":[1] ,{j}:0}}"#), false),
            (format!(r#"{{"class":"A","args":[1]{j}:0}}"#), false),
            (format!(r#"{{"class":"Ä","args":["é"],{j}:0}}"#), true),
            (format!(r#"{{"class":"A","args":[1],{j}:0"#), false),
            (
                r#"{"class":"A","args":[1],"jid":"j","queue":"q","created_at":1e400,"enqueued_at":-0.5E-3,"retry_count":0}"#
                    .to_string(),
                true,
            ),
            (r#"{"class":"A","args":[1],"jid":"j"}"#.to_string(), false),
            (r#"{"class":"A","args":[1"#.to_string(), false),
            (r#"{"class":"A"#.to_string(), false),
        ] {
            assert_eq!(same(&text), direct, "{text}");
        }
    }
}
